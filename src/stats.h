/*
 * Counters of one rule in one worker. Only that worker writes them; the
 * main thread reads them for status. They are C11 atomics used with relaxed
 * ordering: a plain load and store on the data path (no locked
 * instructions), and reads from another thread that are never torn.
 */
#ifndef PORTFWD_STATS_H
#define PORTFWD_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#define STATS_FIELDS(X)                                                          \
	X(tcp_active)                                                            \
	X(tcp_accepted)                                                          \
	X(tcp_connect_failed)                                                    \
	X(tcp_failed_refused)     /* of those: the target refused */             \
	X(tcp_failed_timeout)     /* connect_timeout passed */                   \
	X(tcp_failed_unreachable) /* no route to the target's host or network */ \
	X(tcp_failed_other)                                                      \
	X(tcp_bytes_to_target)                                                   \
	X(tcp_bytes_to_client)                                                   \
	X(tcp_bytes_spliced) /* of those, moved kernel to kernel by splice */   \
	X(tcp_limited_connections) /* refused: the source's per_source max_connections */ \
	X(tcp_limited_rate)        /* refused: the source's per_source new_per_minute */ \
	X(tcp_limited_full)        /* refused: no room to track the source */          \
	X(udp_limited_sessions)    /* datagrams dropped: the source's udp_sessions */  \
	X(udp_limited_datagrams)   /* dropped, either way: udp_datagrams_per_second */ \
	X(udp_limited_full)        /* datagrams dropped: no room to track the source */ \
	X(udp_sessions_evicted)    /* unanswered sessions ended for a new client */    \
	X(udp_active)                                                            \
	X(udp_sessions_created)                                                  \
	X(udp_sessions_expired)                                                  \
	X(udp_datagrams_to_target)                                               \
	X(udp_datagrams_to_client)                                               \
	X(udp_bytes_to_target)                                                   \
	X(udp_bytes_to_client)                                                   \
	X(udp_dropped_limit) /* datagrams from new clients over max_udp_sessions */ \
	X(udp_dropped_error) /* datagrams a socket refused to send */           \
	X(udp_dropped_draining) /* from new clients of a rule a reload removed */ \
	X(udp_target_errors) /* ICMP errors back from the target (nothing listens) */ \
	X(tcp_denied_list)   /* connections refused: the client is on the deny list */ \
	X(tcp_denied_allow)  /* ... is not on the allow list */                  \
	X(tcp_denied_ban)    /* ... is banned (portfwdctl ban) */                \
	X(udp_denied_list)   /* datagrams dropped, from new clients, the same */ \
	X(udp_denied_allow)                                                      \
	X(udp_denied_ban)

/* The live counters, written by one worker. */
struct rule_counters {
#define STATS_ATOMIC(name) _Atomic uint64_t name;
	STATS_FIELDS(STATS_ATOMIC)
#undef STATS_ATOMIC
};

/* A plain copy, for sums and for showing. */
struct rule_stats {
#define STATS_PLAIN(name) uint64_t name;
	STATS_FIELDS(STATS_PLAIN)
#undef STATS_PLAIN
};

/* Only the owning worker may call these two. */
#define STAT_ADD(c, field, n)                                                         \
	atomic_store_explicit(&(c)->field,                                            \
			      atomic_load_explicit(&(c)->field, memory_order_relaxed) + \
				      (uint64_t)(n),                                  \
			      memory_order_relaxed)
#define STAT_SUB(c, field, n) STAT_ADD(c, field, -(uint64_t)(n))

/* Any thread. */
#define STAT_GET(c, field) atomic_load_explicit(&(c)->field, memory_order_relaxed)

/* Adds the counters of SRC (read from any thread) to DST. */
void stats_add(struct rule_stats *dst, const struct rule_counters *src);

/* Adds DST += SRC, for totals over rules. */
void stats_sum(struct rule_stats *dst, const struct rule_stats *src);

#endif
