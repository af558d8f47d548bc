/*
 * Per-source limits: a table shared by every worker that answers "may this
 * source open one more TCP connection / UDP session, or pass one more
 * datagram, now?" and hears "its connection (session) ended". It knows
 * sources, rules (by number) and counts, never connections or sockets.
 *
 * A source is an IPv4 address, or an IPv6 prefix of the rule's ipv6_prefix
 * bits (one customer owns a /64). Each (rule, source) has one entry of 64
 * bytes (one cache line): its live connections and sessions, a window
 * counter of its new connections (a minute) and of its datagrams each way
 * (a second), when it was last seen and how often it was limited.
 *
 * Memory is fixed at sources_new: CAPACITY entries, whatever the traffic.
 * A source is placed in a window of SOURCES_PROBE entries from a keyed
 * hash of it (SipHash with a secret key, so a sender cannot aim sources at
 * one window). A new source takes the first empty entry of its window, else
 * the least recently seen idle one (no live connection or session: its
 * counts are simply forgotten). When every entry of its window has live
 * connections or sessions, the new source is refused (SOURCES_FULL): the
 * table never forgets a source that holds something, so a flood of new
 * sources cannot make room for itself by erasing the counts of those that
 * are connected.
 *
 * Threads: lookups, counts and rates are lock-free (atomics; an entry's
 * counts and its identity change together in one 64-bit word, so an entry
 * is never taken over while someone counts on it). Only placing a new
 * source takes a lock, one of SOURCES_STRIPES by hash, so that two workers
 * seeing the same new source at once make one entry. An established TCP
 * connection never touches the table; a UDP datagram does one atomic
 * update of its session's entry.
 */
#ifndef PORTFWD_SOURCES_H
#define PORTFWD_SOURCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "rule.h"

/* No entry: the rule does not track this protocol, or there is no table. */
#define SOURCES_NONE UINT32_MAX
/* Entries a source may occupy, from its hash on. */
#define SOURCES_PROBE 32
/* Entries `sources_top` returns at most. */
#define SOURCES_TOP_MAX 20
/* Bytes per entry. */
#define SOURCES_ENTRY_SIZE 64

struct sources;

enum sources_kind { SOURCES_TCP, SOURCES_UDP };

/* Datagrams to the target (from the source), or replies to the source. */
enum sources_dir { SOURCES_IN, SOURCES_OUT };

enum sources_verdict {
	SOURCES_OK = 0,
	SOURCES_CONNECTIONS, /* at per_source max_connections */
	SOURCES_RATE,        /* at per_source new_per_minute */
	SOURCES_SESSIONS,    /* at per_source udp_sessions */
	SOURCES_DATAGRAMS,   /* at per_source udp_datagrams_per_second */
	SOURCES_FULL,        /* no entry free for a new source near its place */
};

/* Makes a table of CAPACITY entries (at least SOURCES_PROBE), all empty;
 * the memory is mapped at once and used as sources come. NULL on failure. */
struct sources *sources_new(unsigned capacity);
void sources_free(struct sources *t);

/* True if LIM limits KIND at all: only then are the rule's sources of that
 * protocol tracked (a rule without limits costs nothing here). */
bool sources_tracks(const struct rule_per_source *lim, enum sources_kind kind);

/*
 * May source SA open one more connection (KIND TCP) or session (UDP) of
 * rule RULE, under LIM, at NOW (clock_now seconds)? On SOURCES_OK *SLOT
 * holds it until sources_close; otherwise *SLOT is SOURCES_NONE and the
 * source's limited count grew. With T NULL, or LIM not tracking KIND,
 * always SOURCES_OK with *SLOT SOURCES_NONE. Any thread.
 */
enum sources_verdict sources_open(struct sources *t, uint32_t rule,
				  const struct rule_per_source *lim, enum sources_kind kind,
				  const struct sockaddr *sa, double now, uint32_t *slot);

/* The connection or session that SLOT (from sources_open) held ended. */
void sources_close(struct sources *t, uint32_t slot, enum sources_kind kind, double now);

/*
 * May the source of SLOT pass one more datagram in DIR now, under LIM's
 * udp_datagrams_per_second (counted either way)? True for SOURCES_NONE.
 */
bool sources_datagram(struct sources *t, uint32_t slot, const struct rule_per_source *lim,
		      enum sources_dir dir, double now);

/* "max_connections", "new_per_minute", ... for V: the per_source key (or
 * "max_tracked_sources" for SOURCES_FULL). */
const char *sources_verdict_key(enum sources_verdict v);

/* The source SA stands for under PREFIX: "203.0.113.9" or "2001:db8:1:2::/64". */
const char *sources_name(const struct sockaddr *sa, unsigned prefix, char *buf, size_t len);

/* One source of a rule, as `portfwdctl sources` shows it. */
struct sources_entry {
	char name[64];          /* as sources_name */
	unsigned connections;   /* live TCP connections */
	unsigned sessions;      /* live UDP sessions */
	double new_per_minute;  /* new TCP connections in the last minute (sliding) */
	double datagrams_in;    /* datagrams from it in the last second (sliding) */
	double datagrams_out;   /* replies to it in the last second */
	uint32_t limited;       /* times it was refused or dropped since it was placed */
	double idle;            /* seconds since it was last seen */
};

/* The whole table and one rule's share of it. */
struct sources_census {
	unsigned capacity;
	unsigned used;     /* entries holding a source (of any rule) */
	unsigned tracked;  /* of those, the rule's */
	uint64_t evicted;  /* idle sources forgotten to make room, since the start */
	uint64_t full;     /* new sources refused for want of room, since the start */
};

/*
 * The busiest sources of RULE now, most active first (live connections and
 * sessions, then recent rate, then times limited), at most MAX of them in
 * TOP; fills CENSUS. Reads every entry: main thread, on demand. Returns how
 * many it wrote.
 */
size_t sources_top(struct sources *t, uint32_t rule, double now, struct sources_entry *top,
		   size_t max, struct sources_census *census);

/* The counts of the whole table only (no scan). */
void sources_census(struct sources *t, struct sources_census *census);

#endif
