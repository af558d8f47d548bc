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
struct resolve;
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

/* A protocol of the rule as a whole: failed while any port of it fails. */
struct forward_proto {
	enum forward_state state;
	char error[512]; /* why, for a range: the ports that fail, the first few with why */
	int err; /* errno of the last failed bind (of a single port) */
};

/* A protocol on one port of the rule's range. */
struct forward_port_proto {
	enum forward_state state;
	int err;   /* errno of the last failed bind */
	char *why; /* its explanation (malloc'd), or NULL */
};

/* One port the rule listens on, or did before a reload took it out of the
 * range (its listeners stay, closed, while the rule lives: their
 * connections go on). Main thread. */
struct forward_port {
	unsigned port;
	bool active; /* in the range in force */
	struct forward_port_proto p[2]; /* TCP, UDP */
	struct listener **ls; /* [nworkers]: its listener in each worker */
};

/* How many failed ports of a range status names, with why. */
#define FORWARD_PORTS_SHOWN 4

struct forward {
	struct rule_config cfg;    /* main thread only: what status shows, what binds */
	struct rulework_snap *snap; /* the snapshot given to the listeners (one reference) */
	struct rulework work;      /* the rule as the workers hold it */
	struct event_base *base;
	struct forward_proto tcp, udp; /* the sum of the ports' states */
	struct forward_port *ports;    /* every port it has had, by port order of arrival */
	size_t nports;
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
	/* The daemon's resolver for its named targets (resolve.h); may be NULL. */
	struct resolve *resolver;
};

/*
 * Creates the rule's runtime on the main loop BASE and its listener in each
 * of the NWORKERS workers (running or not), and binds. A bind failure is
 * logged, shown in the state and retried every FORWARD_RETRY_SECONDS; it is
 * not an error. Returns NULL only when out of memory.
 */
struct forward *forward_new(struct event_base *base, struct worker **workers,
			    size_t nworkers, const struct rule_config *cfg, struct resolve *resolver);

/*
 * Applies a changed configuration of the same rule (the same proto and
 * listen address; for a range, the same ports, or the same name with a port
 * in common: rule_same_range_rule): new connections and sessions use it,
 * existing ones keep what they started with. A changed range keeps the
 * listeners of the ports that stay, their connections and sessions
 * untouched; the ports that leave stop listening and drain as a removed
 * rule does; the new ones are bound. The listening sockets are not
 * touched otherwise, unless the interface changed or freebind was turned
 * off: then they are bound anew (TCP connections carry on, UDP sessions
 * end, as in forward_disable), and a bind that fails leaves the rule failed
 * with why. freebind turned on binds the ports that failed at once.
 * Re-enables a disabled rule.
 * Returns 0, or -1 when out of memory (the old settings stay); a failed
 * bind is in the rule's state, not the return value.
 */
int forward_update(struct forward *fw, const struct rule_config *cfg);

/* Before a reload's forward_update: the ports of FW's range that CFG's
 * range leaves stop listening now (their connections carry on), so that
 * another rule of the same reload may bind them. */
void forward_retire_outside(struct forward *fw, const struct rule_config *cfg);

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

/* A rule BY wants UDP addresses that draining FW's sockets, or those of
 * ports a reload took out of FW's range, would keep it from binding (the
 * same address, or either one a wildcard, on a port of BY's): those
 * sessions end and their sockets close, now. */
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

/* "listening", "failed", "disabled", "draining", or "waiting for DNS" (bound,
 * and every target a name with no address yet). */
const char *forward_state_name(const struct forward *fw);

/* The counters of every worker for this rule, summed. */
void forward_stats(const struct forward *fw, struct rule_stats *out);

/* Adds the counters of every worker for port P of the rule to OUT. */
void forward_port_stats(const struct forward *fw, const struct forward_port *p,
			struct rule_stats *out);

/* True if the rule was removed by a reload and is draining. */
bool forward_draining(const struct forward *fw);

#endif
