/*
 * The part of a rule that lives in one worker: its listening sockets in
 * that worker, the TCP connections and UDP sessions they accepted, and
 * their counters. Only the worker's thread touches it (the counters are
 * read by the main thread, see stats.h).
 */
#ifndef PORTFWD_LISTENER_H
#define PORTFWD_LISTENER_H

#include <stdbool.h>
#include <sys/queue.h>

#include "rule.h"
#include "stats.h"

struct event;
struct evconnlistener;
struct rulework;
struct rulework_snap;
struct worker;
struct relay_tcp_conn;
struct udp_session;

TAILQ_HEAD(relay_tcp_list, relay_tcp_conn);

struct listener {
	LIST_ENTRY(listener) link; /* in the worker's list */
	struct rulework_snap *snap;     /* the rule as new connections see it (a reference) */
	const struct rule_config *cfg; /* &snap->rule */
	struct rulework *work;         /* the rule as the workers hold it */
	struct worker *worker;
	struct rule_counters stats;
	unsigned port; /* the port of the rule's range it listens on */
	/* The rule's next listener in this worker (another port); this
	 * worker's thread only (rulework.h). */
	struct listener *sibling;
	bool retired;  /* its port left the rule's range: closed for good */
	bool closed;   /* disabled or draining: sockets handed over are closed */
	bool udp_draining; /* removed rule: the UDP socket serves existing sessions only */
	bool inserted; /* in the worker's list */

	/* TCP */
	struct evconnlistener *tcp;
	bool tcp_paused_limit;  /* the rule is at max_connections */
	bool tcp_paused_emfile; /* out of file descriptors; see accept_retry */
	struct event *accept_retry;
	struct relay_tcp_list conns;
	struct relay_tcp_list waiting; /* accepted over a limit, not relayed yet; oldest first */

	/* UDP */
	int udp_fd;
	bool udp_pktinfo; /* bound to a wildcard: datagrams carry their destination */
	struct event *udp_ev;
	struct udp_session *sessions; /* uthash head, keyed by client address */
	/* Sessions the target has not answered yet, oldest first: the ones
	 * that end first (udp_unreplied_timeout) or make room for a new client. */
	TAILQ_HEAD(udp_session_list, udp_session) unreplied;
};

/* Creates WORK's listener on port PORT for worker W (no sockets yet)
 * holding a reference to SNAP; listener_insert puts it in W's list. NULL
 * when out of memory. */
struct listener *listener_new(struct worker *w, struct rulework *work, struct rulework_snap *snap,
			      unsigned port);

/* Where a client of L goes to on TARGET (of LEN bytes: the rule's target,
 * or the one its target set picked), by CFG (the snapshot it came with):
 * TARGET with the port that L's port maps to in a port range. Into OUT;
 * returns the address's length. */
socklen_t listener_target(const struct listener *l, const struct rule_config *cfg,
			  const struct sockaddr *target, socklen_t len, struct sockaddr_storage *out);

/* L's port left the rule's range: it drains (listener_drain) and stays
 * closed, or (RETIRED false) came back to it: its UDP sessions of the old
 * socket end and it may be bound again. L's thread. */
void listener_retire(struct listener *l, bool retired);
void listener_insert(struct listener *l);

/* Takes SNAP (a reference) for new connections and drops the old one;
 * re-checks the limits, which may have changed. W's thread. */
void listener_set_snap(struct listener *l, struct rulework_snap *snap);

/* Closes the listening sockets (the port is free when it returns) and ends
 * the UDP sessions, which cannot reach their clients without the socket.
 * TCP connections carry on. L's thread. */
void listener_close(struct listener *l, const char *reason);

/* For a removed rule: closes the TCP listening socket; the UDP one stays
 * for the sessions there are (new clients are dropped) and closes with the
 * last of them (listener_udp_drained). L's thread. */
void listener_drain(struct listener *l);

/* Ends the UDP sessions and closes the UDP socket, logging REASON. L's thread. */
void listener_udp_end(struct listener *l, const char *reason);

/* A session of a draining listener ended: closes the socket after the last. */
void listener_udp_drained(struct listener *l);

/* Opens L to sockets again after listener_close (not a retired one). L's thread. */
void listener_reopen(struct listener *l);

/* Closes the sockets, every connection and session, and frees L (W's thread). */
void listener_free(struct listener *l);

/*
 * Hands a bound socket to L: a listening TCP socket or a bound UDP socket.
 * Runs on L's worker thread (through worker_call once the worker runs).
 */
void listener_attach_tcp(struct listener *l, int fd);
void listener_attach_udp(struct listener *l, int fd);

/* Re-reads the rule's shared limit: relays waiting connections while there
 * is room, pauses or resumes accepting. Runs on L's worker thread. */
void listener_tcp_recheck(struct listener *l);

/*
 * Out of file descriptors (ERR) while accepting or opening a connection to
 * the target: stop accepting for a second, so the clients still queued wait
 * in the kernel instead of being accepted and dropped one after another.
 */
void listener_tcp_out_of_fds(struct listener *l, int err);

#endif
