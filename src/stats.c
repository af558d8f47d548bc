#include "stats.h"

void stats_add(struct rule_stats *dst, const struct rule_stats *src)
{
	dst->tcp_active += src->tcp_active;
	dst->tcp_accepted += src->tcp_accepted;
	dst->tcp_connect_failed += src->tcp_connect_failed;
	dst->tcp_bytes_to_target += src->tcp_bytes_to_target;
	dst->tcp_bytes_to_client += src->tcp_bytes_to_client;
	dst->udp_active += src->udp_active;
	dst->udp_sessions_created += src->udp_sessions_created;
	dst->udp_sessions_expired += src->udp_sessions_expired;
	dst->udp_datagrams_to_target += src->udp_datagrams_to_target;
	dst->udp_datagrams_to_client += src->udp_datagrams_to_client;
	dst->udp_bytes_to_target += src->udp_bytes_to_target;
	dst->udp_bytes_to_client += src->udp_bytes_to_client;
	dst->udp_dropped_limit += src->udp_dropped_limit;
	dst->udp_dropped_error += src->udp_dropped_error;
}
