/*
 * A rule in force, on the main thread: its configuration, whether its
 * addresses are bound (and why not), and one listener per worker. Binding
 * happens here: for each protocol one socket per worker, all with
 * SO_REUSEPORT, handed to the workers; a failure is retried from a timer.
 * The limits that span workers (max_connections, max_udp_sessions) are
 * shared counters here.
 */
#ifndef PORTFWD_FORWARD_H
#define PORTFWD_FORWARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "rule.h"
#include "stats.h"

struct event;
struct event_base;
struct listener;
struct worker;

/* Seconds between attempts to bind a listener that failed. */
#define FORWARD_RETRY_SECONDS 3

enum forward_state {
	FORWARD_OFF = 0, /* the rule does not use this protocol */
	FORWARD_FAILED,  /* bind failed; retried from a timer */
	FORWARD_LISTENING,
};

struct forward_proto {
	enum forward_state state;
	char error[256];
	int err; /* errno of the last failed bind */
};

struct forward {
	struct rule_config cfg; /* read-only once created; workers read it too */
	struct event_base *base;
	struct worker **workers;
	size_t nworkers;
	struct listener **listeners; /* [nworkers] */
	struct forward_proto tcp, udp;
	struct event *bind_retry;

	_Atomic bool stopping; /* no more calls into the workers */
	/* Across workers: connections being relayed, and UDP sessions. */
	_Atomic unsigned tcp_active;
	_Atomic unsigned udp_active;
};

/*
 * Creates the rule's runtime on the main loop BASE and its listener in each
 * of the NWORKERS workers, and binds. A bind failure is logged, shown in
 * the state and retried every FORWARD_RETRY_SECONDS; it is not an error.
 * Returns NULL only when out of memory.
 */
struct forward *forward_new(struct event_base *base, struct worker **workers,
			    size_t nworkers, const struct rule_config *cfg);

/* Stops the bind retries and calls into workers. Call before the workers stop. */
void forward_stop(struct forward *fw);

/* Frees FW. Its listeners must be gone already (worker_stop). */
void forward_free(struct forward *fw);

/* True if every protocol of the rule is listening. */
bool forward_ready(const struct forward *fw);

/* The counters of every worker for this rule, summed. */
void forward_stats(const struct forward *fw, struct rule_stats *out);

/*
 * Claims a slot for a new TCP connection under max_connections (any
 * thread). Returns true if the connection may be relayed now.
 */
bool forward_tcp_claim(struct forward *fw);

/* Gives a slot back; when the rule was full, every worker re-checks. */
void forward_tcp_release(struct forward *fw);

/* True if the rule is at max_connections. */
bool forward_tcp_full(const struct forward *fw);

/* The same for UDP sessions; a new client over the limit is dropped. */
bool forward_udp_claim(struct forward *fw);
void forward_udp_release(struct forward *fw);

#endif
