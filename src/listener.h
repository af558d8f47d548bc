/*
 * The runtime of one rule: its listening sockets, the TCP connections and
 * UDP sessions they accepted, and their counters. It points to a private
 * copy of the rule's configuration, which it never changes.
 */
#ifndef PORTFWD_LISTENER_H
#define PORTFWD_LISTENER_H

#include <stdbool.h>
#include <sys/queue.h>

#include "rule.h"
#include "stats.h"

struct event;
struct evconnlistener;
struct worker;
struct relay_tcp_conn;
struct udp_session;

/* Seconds between attempts to bind a listener that failed. */
#define LISTENER_RETRY_SECONDS 3

enum listener_state {
	LISTENER_OFF = 0,   /* the rule does not use this protocol */
	LISTENER_FAILED,    /* bind failed; retried from a timer */
	LISTENER_LISTENING,
};

struct listener {
	struct rule_config cfg;
	struct worker *worker;
	struct rule_stats stats;

	/* TCP */
	enum listener_state tcp_state;
	char tcp_error[256];
	int tcp_errno; /* of the last failed bind */
	struct evconnlistener *tcp;
	bool tcp_paused_limit;  /* max_connections reached */
	bool tcp_paused_emfile; /* out of file descriptors; see accept_retry */
	struct event *accept_retry;
	LIST_HEAD(, relay_tcp_conn) conns;

	/* UDP */
	enum listener_state udp_state;
	char udp_error[256];
	int udp_errno;
	int udp_fd;
	struct event *udp_ev;
	struct udp_session *sessions; /* uthash head, keyed by client address */

	struct event *bind_retry;
};

/*
 * Creates the runtime of rule CFG on WORKER and tries to bind its
 * listeners. A bind failure is not an error here: it is logged, shown in
 * the state, and retried every LISTENER_RETRY_SECONDS. Returns NULL only
 * when out of memory.
 */
struct listener *listener_new(struct worker *worker, const struct rule_config *cfg);

/* Closes the listeners, every connection and session, and frees L. */
void listener_free(struct listener *l);

/* True if every protocol of the rule is listening. */
bool listener_ready(const struct listener *l);

/* Called by the TCP relay when a connection ends: resumes a paused accept. */
void listener_tcp_conn_done(struct listener *l);

/*
 * Out of file descriptors (ERR) while accepting or opening a connection to
 * the target: stop accepting for a second, so the clients still queued wait
 * in the kernel instead of being accepted and dropped one after another.
 */
void listener_tcp_out_of_fds(struct listener *l, int err);

/* Called by the TCP relay after an accept: pauses at max_connections. */
void listener_tcp_conn_added(struct listener *l);

#endif
