/*
 * Choosing a target: a rule's set of targets, whether each is up, and the
 * balance policy that picks one for a new connection or UDP session. It
 * knows nothing of connections: the relays ask targets_pick for an index,
 * then report what became of it.
 *
 * Shared by every worker and the main thread: one mutex per set guards the
 * state and counters (a pick is a few dozen instructions under it). The
 * addresses never change once the set is made, so they are read without it.
 *
 * Health, passive: a refused, unreachable or timed-out connect marks the
 * target down until a retry time, with back-off (TARGETS_RETRY_MIN doubling
 * to TARGETS_RETRY_MAX); after that one client is let through to try it,
 * and a connect that succeeds brings it up. Active (health_check, off by
 * default): a TCP connect to each target every interval, from the main
 * loop; rise successes in a row bring a target up, fall failures take it
 * down.
 *
 * Life: the rule (forward.c) owns the set and each snapshot of the rule
 * holds a reference, so a connection that outlives a reload reports to the
 * set it picked from. A reload that keeps the targets keeps the set; one
 * that changes them makes a new set, which takes over the state of the
 * addresses it still has.
 */
#ifndef PORTFWD_TARGETS_H
#define PORTFWD_TARGETS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "resolve.h"
#include "rule.h"

struct evbuffer;
struct event_base;
struct targets;

/* Passive back-off: the first retry after a failure, and the longest wait. */
#define TARGETS_RETRY_MIN 1.0
#define TARGETS_RETRY_MAX 30.0

/* The monotonic clock the set reads (clock_now); tests may replace it. */
extern double (*targets_clock)(void);

/* A set for R's targets, balance and health_check; with OLD (NULL: none),
 * the state of each address OLD has too is taken over. NULL when out of
 * memory. Any thread; health checks start only with targets_health_start. */
struct targets *targets_new(const struct rule_config *r, struct targets *old);
struct targets *targets_ref(struct targets *t);

/*
 * At a reload that replaced OLD with NEW (made by targets_new(r, OLD)):
 * each target NEW has too is handed over, its connections still counted
 * (NEW's active count takes OLD's), and what OLD's connections report from
 * then on (closed, failed, connected) goes to NEW. Call before NEW is
 * published to the workers. Main thread.
 */
void targets_hand_over(struct targets *old, struct targets *nw);
/* The last reference frees it; its health checks must be stopped already. */
void targets_unref(struct targets *t);

/* True if T was made for the same targets (and their ports' names),
 * balance and health_check as R: a reload may keep it. */
bool targets_same_config(const struct targets *t, const struct rule_config *r);

size_t targets_count(const struct targets *t);
/* Target I's address (fixed for the set's life; a named target's is a
 * placeholder, see targets_addr_copy), its length in *LEN. */
const struct sockaddr *targets_addr(const struct targets *t, size_t i, socklen_t *len);
const char *targets_service(const struct targets *t, size_t i);
/* Target I as written ("nas.lan:445", "192.168.0.2:ssh"), and its host
 * name (NULL for an address). */
const char *targets_text_of(const struct targets *t, size_t i);
const char *targets_host(const struct targets *t, size_t i);

/*
 * Address K of target I, with its port, into OUT: a numeric target has one
 * (K 0); a named one those its name resolves to now, IPv6 first. FAMILY
 * (AF_INET, AF_INET6; AF_UNSPEC: any) counts only the addresses of that
 * family (a rule's source address has one). Returns the address's length,
 * 0 when there is no address K. Any thread.
 */
socklen_t targets_addr_copy(struct targets *t, size_t i, size_t k, int family,
			    struct sockaddr_storage *out);

/* True if a target is up (and, a name, has an address). Any thread. */
bool targets_any_up(struct targets *t);

/* True if every target is a name that has no address yet. Any thread. */
bool targets_waiting_dns(struct targets *t);

/*
 * Keeps the named targets resolved with R (resolve.h), on the main loop:
 * each answer replaces the addresses new connections and sessions use.
 * Returns 0 or -1 (out of memory: logged). targets_resolve_stop ends it
 * (before the set's last reference goes). Main thread; R NULL: nothing.
 */
int targets_resolve_start(struct targets *t, struct resolve *r);
void targets_resolve_stop(struct targets *t);

/*
 * Picks a target for a new connection or session from CLIENT (its address
 * only counts, for source-hash), never one whose bit is set in EXCLUDE
 * (bit I: target I, tried already). Only targets that are up, or whose
 * retry time has come, are chosen, by the set's policy; when none is, the
 * others are tried anyway rather than refusing everyone. Returns the
 * index, or -1 when every target is excluded.
 *
 * A pick counts as active on the target until the caller reports
 * targets_failed or targets_closed for it (exactly one of them);
 * targets_connected in between says it worked.
 */
int targets_pick(struct targets *t, const struct sockaddr *client, uint64_t exclude);
void targets_connected(struct targets *t, int i);
/* A UDP session began on target I: counted, with no word on its health. */
void targets_started(struct targets *t, int i);
/* The connect failed (ERR: its errno, ETIMEDOUT for a timeout; REASON says
 * it): counted, and the target is down until its retry time. */
void targets_failed(struct targets *t, int i, int err, const char *reason);
/* The connection or session ended (or was never started: no blame). */
void targets_closed(struct targets *t, int i);

/* True if target I is up now. */
bool targets_up(struct targets *t, size_t i);

/*
 * Health checks: a result for target I, as a check would report it (OK, or
 * not with WHY). The checks themselves call it; tests may too.
 */
void targets_health_result(struct targets *t, size_t i, bool ok, const char *why);

/* Starts the rule's health checks on the main loop BASE (nothing without
 * health_check). Returns 0 or -1 (out of memory: logged, none run). Main thread. */
int targets_health_start(struct targets *t, struct event_base *base, const char *rule);
/* Stops them; a check under way is abandoned. Main thread; idempotent. */
void targets_health_stop(struct targets *t);

/* [{"address", "service", "state": "up"|"down", "since", "reason", "active",
 * "connections", "failures", "retry_in"}...] (since: seconds since the epoch). */
json_t *targets_json(struct targets *t);
/* One line per target for status: "  target 192.168.0.2:22  up since ..." */
void targets_text(struct targets *t, struct evbuffer *out);

/* Counters and state of target I, for metrics. */
struct targets_stats {
	bool up;
	unsigned active;
	uint64_t connections, failures;
};
void targets_stats(struct targets *t, size_t i, struct targets_stats *out);

#endif
