/*
 * The data path's questions to the per-source table (sources.h), with what
 * goes with the answer: the rule's `limited` counters, a rate-limited log
 * line (ratelog.h) and, for a refused TCP client, the reset. The relays
 * call these at accept, at a UDP session's start, per datagram of a
 * tracked rule, and when a connection or session ends; never on an
 * established TCP connection.
 */
#ifndef PORTFWD_RELAY_SOURCES_H
#define PORTFWD_RELAY_SOURCES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sources.h"

struct listener;
struct rule_config;

/* May client SA, just accepted on FD, be relayed? 0 with *SLOT to give back
 * at the end (relay_sources_close); or -1: over a per_source limit,
 * counted, logged, and FD reset and closed. */
int relay_sources_tcp_open(struct listener *l, int fd, const struct sockaddr *sa, uint32_t *slot);

/* May client SA start a UDP session? 0 with *SLOT, or -1 (counted COUNT
 * times, the datagrams of its buffer, and logged: they are dropped). */
int relay_sources_udp_open(struct listener *l, const struct sockaddr *sa, unsigned count,
			   uint32_t *slot);

/* The connection (KIND TCP) or session that held SLOT ended. */
void relay_sources_close(struct listener *l, uint32_t slot, enum sources_kind kind);

/* May one datagram of the session holding SLOT (CFG its rule, CLIENT its
 * address) pass in DIR now? False: dropped, counted, logged. */
bool relay_sources_datagram(struct listener *l, const struct rule_config *cfg, uint32_t slot,
			    const struct sockaddr *client, enum sources_dir dir, double now);

#endif
