/*
 * The UDP session table: a hash (uthash) from a client's address, and the
 * local address it sent to, to its session, so a datagram finds its
 * session in constant time.
 */
#ifndef PORTFWD_UDP_TABLE_H
#define PORTFWD_UDP_TABLE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <uthash.h>

#include "proxyproto.h"

struct event;
struct rulework_snap;
struct listener;
struct rule_config;

/*
 * Where a client's datagram arrived, on a listener bound to a wildcard
 * address (from IP_PKTINFO / IPV6_PKTINFO): replies must leave from that
 * address, or the client drops them. Family 0 when the listener is bound
 * to one address, which is then the only one.
 */
struct udp_local {
	sa_family_t family;
	unsigned ifindex; /* the interface it arrived on (IPv6 link-local replies need it) */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} addr;
};

/* The client's family, port and address, and the local address it sent
 * to; zero padded so it hashes as raw bytes. */
struct udp_key {
	uint16_t family;
	uint16_t port;
	uint8_t addr[16];
	uint8_t local[16];
};

/* Room for the IP_PKTINFO or IPV6_PKTINFO control message of one datagram. */
#define UDP_PKTINFO_SPACE CMSG_SPACE(sizeof(struct in6_pktinfo))

/* Aligned as a struct cmsghdr (its cmsg_len is a size_t); not holding one,
 * whose flexible array would make this a variable-sized type for clang. */
union udp_cmsg {
	char buf[UDP_PKTINFO_SPACE];
	size_t align;
};

struct udp_session {
	struct udp_key key;
	UT_hash_handle hh;

	struct listener *rule;
	struct rulework_snap *snap;     /* the rule as it was when the session began */
	const struct rule_config *cfg; /* &snap->rule */
	uint64_t id;
	struct sockaddr_storage client;
	socklen_t client_len;
	/* Its target, at the port its listener's maps to (port ranges); taddr points here. */
	struct sockaddr_storage tss;
	struct udp_local local;  /* the address the client sent to; family 0 if the listener's */
	union udp_cmsg reply_ctl; /* replies: the control message that sets their source */
	size_t reply_ctl_len;     /* 0: none needed */
	int fd;             /* connected to the target */
	struct event *ev;   /* readable: replies from the target */
	struct event *idle; /* fires to check udp_idle_timeout */
	double started;     /* monotonic seconds */
	double last_active;
	uint64_t dgrams_to_target, dgrams_to_client;
	uint64_t bytes_to_target, bytes_to_client;
	bool replied; /* the target answered: udp_idle_timeout applies, not udp_unreplied_timeout */
	bool gso, gso_replies; /* UDP_SEGMENT still worth trying each way (relay_udp.c) */
	TAILQ_ENTRY(udp_session) unreplied_link; /* in the listener's unreplied list until then */
	uint32_t source; /* its entry in the per-source table, or SOURCES_NONE */
	/* The PROXY protocol v2 header that goes in front of every datagram
	 * to the target (the same for the whole session); pp_len 0: none. */
	uint8_t pp[PROXYPROTO_V2_MAX];
	uint8_t pp_len;
	int target;      /* its target's index in snap->targets, picked at the start; -1: none */
	const struct sockaddr *taddr; /* that target's address */
	const char *tservice;
};

/* Builds the key of client SA (AF_INET or AF_INET6) sending to LOCAL (NULL
 * or family 0: the listener's one address). Returns 0 or -1. */
int udp_table_key(const struct sockaddr *sa, const struct udp_local *local, struct udp_key *key);

/* The session of client SA sending to LOCAL in table HEAD, or NULL. */
struct udp_session *udp_table_find(struct udp_session *head, const struct sockaddr *sa,
				   const struct udp_local *local);

/*
 * True if the control message C, found in MSG's buffer, lies wholly within
 * it. The kernel never writes one that does not (it truncates and sets
 * MSG_CTRUNC), but neither CMSG_FIRSTHDR nor CMSG_NXTHDR checks the length
 * of the message it returns: readers check it before reading its data.
 */
bool udp_cmsg_fits(const struct msghdr *msg, const struct cmsghdr *c);

/*
 * Reads the destination of a received datagram from the IP_PKTINFO or
 * IPV6_PKTINFO control message in MSG into LOCAL. Returns 0, or -1 (LOCAL
 * zeroed) when MSG has none, or one that runs past the buffer.
 */
int udp_local_from_msg(const struct msghdr *msg, struct udp_local *local);

/*
 * Writes into CTL the control message that makes a reply leave from
 * LOCAL. Returns its length (for msg_controllen), 0 when LOCAL is unset.
 */
size_t udp_local_to_cmsg(const struct udp_local *local, union udp_cmsg *ctl);

/* Adds S (its key already set) to table *HEAD. Returns 0, or -1 when out of memory. */
int udp_table_add(struct udp_session **head, struct udp_session *s);

/* Removes S from table *HEAD; does not free it. */
void udp_table_remove(struct udp_session **head, struct udp_session *s);

unsigned udp_table_count(const struct udp_session *head);

#endif
