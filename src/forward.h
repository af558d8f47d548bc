/*
 * A rule in force, on the main thread: its configuration, whether its
 * addresses are bound (and why not), and one listener per worker. Binding
 * happens here: for each protocol one socket per worker, all with
 * SO_REUSEPORT, handed to the workers; a failure is retried from a timer.
 * What the workers need of the rule (its snapshots, the limits that span
 * workers, what of it is still alive, its listeners) is its rulework
 * (rulework.h), which the rule owns and the relays use.
 *
 * Reload: the workers never read a configuration that the main thread
 * changes. Each listener holds a reference to an immutable snapshot of its
 * rule, and each connection and UDP session holds the snapshot it started
 * with. A changed rule gets a new snapshot, which each worker swaps in on its
 * own thread; the old one is freed when its last connection ends.
 *
 * Teardown of a rule that is removed: it stops listening at once and
 * drains. Its listeners stay in their workers (so their connections keep
 * running) until nothing of the rule is left: no connection, no session,
 * no call on its way to a worker. Only then is it freed.
 */
#ifndef PORTFWD_FORWARD_H
#define PORTFWD_FORWARD_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rule.h"
#include "rulework.h"
#include "stats.h"

struct event;
struct event_base;
struct listener;
struct targets;
struct worker;

/* Seconds between attempts to bind a listener that failed. */
#define FORWARD_RETRY_SECONDS 3

enum forward_state {
	FORWARD_OFF = 0, /* the rule does not use this protocol */
	FORWARD_FAILED,  /* bind failed; retried from a timer */
	FORWARD_LISTENING,
	FORWARD_CLOSED,  /* disabled by portfwdctl, or the rule is draining */
};

struct forward_proto {
	enum forward_state state;
	char error[256];
	int err; /* errno of the last failed bind */
};

struct forward {
	struct rule_config cfg;    /* main thread only: what status shows, what binds */
	struct rulework_snap *snap; /* the snapshot given to the listeners (one reference) */
	struct rulework work;      /* the rule as the workers hold it */
	struct event_base *base;
	struct forward_proto tcp, udp;
	/* Retries failed binds; on a rule with an interface it also runs while
	 * listening, to bind anew when the interface is made again. */
	struct event *bind_retry;
	unsigned ifindex; /* the interface the sockets are bound to; 0: none */

	bool disabled;       /* by portfwdctl disable, until enable or reload */
	bool drain_forced;   /* drain_timeout passed: everything was closed */
	double drain_started;
	/* The targets, their health and balance (targets.h): kept by a reload
	 * that keeps them; each snapshot holds a reference. Main thread. */
	struct targets *targets;
};

/*
 * Creates the rule's runtime on the main loop BASE and its listener in each
 * of the NWORKERS workers (running or not), and binds. A bind failure is
 * logged, shown in the state and retried every FORWARD_RETRY_SECONDS; it is
 * not an error. Returns NULL only when out of memory.
 */
struct forward *forward_new(struct event_base *base, struct worker **workers,
			    size_t nworkers, const struct rule_config *cfg);

/*
 * Applies a changed configuration of the same (proto, listen) rule: new
 * connections and sessions use it, existing ones keep what they started
 * with. The listening sockets are not touched, unless the interface changed:
 * then they are bound anew (TCP connections carry on, UDP sessions end, as
 * in forward_disable). Re-enables a disabled rule.
 * Returns 0, or -1 when out of memory (the old settings stay).
 */
int forward_update(struct forward *fw, const struct rule_config *cfg);

/* Closes the listening sockets (the ports are free when it returns); TCP
 * connections carry on, UDP sessions end (they live on the listening
 * socket). Stays so until forward_enable. */
void forward_disable(struct forward *fw);

/* Binds again after forward_disable. Returns 0, or -1 if a bind failed
 * (the reason is in the state; it is retried). */
int forward_enable(struct forward *fw);

/* For a rule that a reload removed: stops accepting at once and marks it
 * draining. TCP connections carry on; the UDP socket stays for the sessions
 * there are (datagrams from new clients are dropped) and closes after the
 * last one. */
void forward_drain(struct forward *fw, double now);

/* A new rule BY wants a UDP address that draining FW's socket would keep
 * it from binding (the same address, or either one a wildcard on the same
 * port): FW's sessions end and its socket closes, now. */
void forward_udp_takeover(struct forward *fw, const struct rule_config *by);

/* Closes every connection and session of the rule, logging REASON.
 * Returns how many were closed. */
unsigned forward_kill_all(struct forward *fw, const char *reason);

/* Closes connection or session ID if it belongs to this rule. Returns true
 * if it did. */
bool forward_kill_id(struct forward *fw, uint64_t id);

/* Closes every connection and session of the rule whose client MATCH(client,
 * ARG) says, logging REASON. Returns how many were closed. */
unsigned forward_kill_if(struct forward *fw, bool (*match)(const struct sockaddr *client, const void *arg),
			 const void *arg, const char *reason);

/* True when a draining rule has nothing left and can be freed. */
bool forward_drained(const struct forward *fw);

/* Appends one JSON object per connection and per UDP session of the rule to
 * CONNS (see relay_tcp_describe, relay_udp_describe). */
void forward_collect(struct forward *fw, json_t *conns, double now);

/* Stops the bind retries and calls into workers. Call before the workers stop. */
void forward_stop(struct forward *fw);

/* Frees FW. Its listeners must be gone already (worker_stop). */
void forward_free(struct forward *fw);

/* Frees a drained rule while the workers run: its listeners on their
 * threads, then FW. */
void forward_destroy(struct forward *fw);

/* True if every protocol of the rule is listening. */
bool forward_ready(const struct forward *fw);

/* "listening", "failed", "disabled" or "draining". */
const char *forward_state_name(const struct forward *fw);

/* The counters of every worker for this rule, summed. */
void forward_stats(const struct forward *fw, struct rule_stats *out);

/* True if the rule was removed by a reload and is draining. */
bool forward_draining(const struct forward *fw);

#endif
