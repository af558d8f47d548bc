/*
 * A rule as its workers hold it: what the listeners, connections and UDP
 * sessions need of their rule, apart from the main thread's side of it
 * (forward.h: its configuration in force, binding, reload). forward owns
 * one per rule; the relays and listeners use it and never reach up into
 * forward.c.
 *
 * - The snapshot: an immutable, reference-counted copy of the rule's
 *   configuration. Each listener holds the one new connections see, and
 *   each connection and session the one it started with.
 * - The limits that span workers (max_connections, max_udp_sessions):
 *   slots claimed and given back from any thread.
 * - What of the rule is still alive in the workers: connections and
 *   sessions (held), and calls posted to a worker that have not run yet
 *   (inflight). A removed rule is freed when both are 0.
 * - The rule's listeners in each worker, one per port of its range, and
 *   the calls into them. listeners[i] is the rule's first listener in
 *   worker i, for the rule's life; the others hang from it (listener.h's
 *   sibling), a chain that only worker i's thread walks and changes, so a
 *   call reaches every port's listener however the range changes.
 */
#ifndef PORTFWD_RULEWORK_H
#define PORTFWD_RULEWORK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rule.h"

struct listener;
struct targets;
struct worker;

/* An immutable, reference-counted copy of a rule's configuration. */
struct rulework_snap {
	_Atomic unsigned refs;
	struct rule_config rule;
	/* The rule's targets (targets.h) when the snapshot was made, one
	 * reference: what its connections pick from and report to. */
	struct targets *targets;
};

struct rulework {
	const char *name;            /* the rule's, for messages (its owner's storage) */
	struct worker **workers;     /* [nworkers], not owned */
	struct listener **listeners; /* [nworkers]: the rule's first listener in each worker (fixed) */
	size_t nworkers;

	_Atomic bool stopping; /* no more calls into the workers */
	_Atomic bool draining; /* removed by a reload: no new clients */
	_Atomic unsigned max_tcp, max_udp; /* the limits in force (change on reload) */
	/* Across workers: connections being relayed, and UDP sessions. */
	_Atomic unsigned tcp_active;
	_Atomic unsigned udp_active;
	_Atomic unsigned held;
	_Atomic unsigned inflight;
	uint32_t source_id; /* the rule in the per-source table (sources.h); for its life */
};

/* A copy of RULE with one reference (and one on its access policy and its
 * target list); its targets are NULL for the caller to give a reference.
 * NULL when out of memory. */
struct rulework_snap *rulework_snap_new(const struct rule_config *rule);
struct rulework_snap *rulework_snap_ref(struct rulework_snap *snap);
/* Drops a reference; the last one frees SNAP. NULL is allowed. Any thread. */
void rulework_snap_unref(struct rulework_snap *snap);

/*
 * Sets W up for the NWORKERS workers WORKERS, with no limit room until
 * rulework_set_limits; its listeners array is allocated (all NULL) for the
 * owner to fill. NAME must outlive W. Returns 0, or -1 when out of memory.
 */
int rulework_init(struct rulework *w, const char *name, struct worker **workers, size_t nworkers);

/* Frees what rulework_init allocated (not the listeners). */
void rulework_fini(struct rulework *w);

/* Sets the limits in force (a reload). Main thread. */
void rulework_set_limits(struct rulework *w, unsigned max_tcp, unsigned max_udp);

/* A connection or session of the rule begins or ends (any worker). */
void rulework_hold(struct rulework *w);
void rulework_unhold(struct rulework *w);

/*
 * Claims a slot for a new TCP connection under max_connections (any
 * thread). Returns true if the connection may be relayed now.
 */
bool rulework_tcp_claim(struct rulework *w);

/* Gives a slot back; when the rule was full, every worker re-checks
 * (listener_tcp_recheck, posted). */
void rulework_tcp_release(struct rulework *w);

/* True if the rule is at max_connections. */
bool rulework_tcp_full(const struct rulework *w);

/* The same for UDP sessions; a new client over the limit is dropped. */
bool rulework_udp_claim(struct rulework *w);
void rulework_udp_release(struct rulework *w);

/* Posts FN(listener, ARG), for each of the rule's listeners in worker I,
 * to worker I without waiting, counted in inflight until it has run.
 * Returns 0, or -1 (nothing posted). */
int rulework_post(struct rulework *w, size_t i, void (*fn)(struct listener *l, void *arg),
		  void *arg);

/* The same for the one listener L of worker I. */
int rulework_post_one(struct rulework *w, size_t i, struct listener *l,
		      void (*fn)(struct listener *l, void *arg), void *arg);

/* Runs FN(listener, ARG) for each of the rule's listeners on every worker's
 * thread, waiting for each worker. FN may free the listener. Main thread. */
void rulework_each_sync(struct rulework *w, void (*fn)(struct listener *l, void *arg), void *arg);

/* Runs FN(first listener, ARG) once on each worker's thread, waiting for
 * each: what changes the chain of the rule's listeners there. Main thread. */
void rulework_heads_sync(struct rulework *w, void (*fn)(struct listener *l, void *arg), void *arg);

/* True when nothing of the rule is left in the workers. */
bool rulework_drained(const struct rulework *w);

#endif
