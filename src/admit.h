/*
 * The data path's one question about a new client: may it in? Asked when a
 * TCP connection is accepted (before anything is connected to the target)
 * and when a datagram comes from a UDP client without a session (before
 * one exists); never on an established connection or session. The answer
 * comes from the rule's policy in its snapshot (allow and deny lists) and
 * from the worker's view of the runtime bans. A refusal is counted per
 * rule and reason, and logged at most once a minute per source (ratelog.h),
 * over all rules and workers.
 */
#ifndef PORTFWD_ADMIT_H
#define PORTFWD_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct ban_set;
struct listener;
struct worker;

/* What each worker keeps for it; its thread only. Zeroed is empty. */
struct admit_worker {
	struct ban_set *bans; /* the bans in force as this worker sees them (a reference), or NULL */
};

/* True if the client at SA may use L's rule over PROTO (RULE_PROTO_TCP or
 * RULE_PROTO_UDP). False: count it (COUNT: a connection, or the datagrams
 * of a coalesced UDP buffer), maybe log it; the caller drops it. */
bool admit_client(struct listener *l, const struct sockaddr *sa, unsigned proto, unsigned count);

/* Main thread: gives each of the N workers SET (takes the reference) and
 * returns once every one has it, so a ban is in force when it returns. */
void admit_publish_bans(struct worker **workers, size_t n, struct ban_set *set);

/* Frees what W's view holds. */
void admit_worker_free(struct admit_worker *w);

#endif
