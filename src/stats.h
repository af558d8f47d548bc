/* Counters of one rule. Owned by the rule's worker; only it writes them. */
#ifndef PORTFWD_STATS_H
#define PORTFWD_STATS_H

#include <stdint.h>

struct rule_stats {
	/* TCP */
	uint64_t tcp_active;
	uint64_t tcp_accepted;
	uint64_t tcp_connect_failed;
	uint64_t tcp_bytes_to_target;
	uint64_t tcp_bytes_to_client;
	/* UDP */
	uint64_t udp_active;
	uint64_t udp_sessions_created;
	uint64_t udp_sessions_expired;
	uint64_t udp_datagrams_to_target;
	uint64_t udp_datagrams_to_client;
	uint64_t udp_bytes_to_target;
	uint64_t udp_bytes_to_client;
	uint64_t udp_dropped_limit;  /* new clients over max_udp_sessions */
	uint64_t udp_dropped_error;  /* datagrams a socket refused to send */
};

/* Adds every counter of SRC to DST (summing workers, or rules to a total). */
void stats_add(struct rule_stats *dst, const struct rule_stats *src);

#endif
