/*
 * The UDP session table: a hash (uthash) from a client's address to its
 * session, so a datagram finds its session in constant time.
 */
#ifndef PORTFWD_UDP_TABLE_H
#define PORTFWD_UDP_TABLE_H

#include <stdint.h>
#include <sys/socket.h>
#include <uthash.h>

struct event;
struct forward_snap;
struct listener;
struct rule_config;

/* Family, port and address bytes; zero padded so it hashes as raw bytes. */
struct udp_key {
	uint16_t family;
	uint16_t port;
	uint8_t addr[16];
};

struct udp_session {
	struct udp_key key;
	UT_hash_handle hh;

	struct listener *rule;
	struct forward_snap *snap;     /* the rule as it was when the session began */
	const struct rule_config *cfg; /* &snap->rule */
	uint64_t id;
	struct sockaddr_storage client;
	socklen_t client_len;
	int fd;             /* connected to the target */
	struct event *ev;   /* readable: replies from the target */
	struct event *idle; /* fires to check udp_idle_timeout */
	double started;     /* monotonic seconds */
	double last_active;
	uint64_t dgrams_to_target, dgrams_to_client;
	uint64_t bytes_to_target, bytes_to_client;
};

/* Builds the key of an AF_INET or AF_INET6 address. Returns 0 or -1. */
int udp_table_key(const struct sockaddr *sa, struct udp_key *key);

/* The session of client SA in table HEAD, or NULL. */
struct udp_session *udp_table_find(struct udp_session *head, const struct sockaddr *sa);

/* Adds S (its key already set) to table *HEAD. Returns 0, or -1 when out of memory. */
int udp_table_add(struct udp_session **head, struct udp_session *s);

/* Removes S from table *HEAD; does not free it. */
void udp_table_remove(struct udp_session **head, struct udp_session *s);

unsigned udp_table_count(const struct udp_session *head);

#endif
