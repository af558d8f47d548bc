/*
 * Host names kept resolved, on the main loop, with libevent's evdns: no
 * blocking getaddrinfo, no lookups on a worker's loop.
 *
 * A watched name is looked up in /etc/hosts first (evdns_getaddrinfo on a
 * base of its own that has the hosts file and no name servers, so it
 * answers at once or not at all), then in the DNS with
 * evdns_base_resolve_ipv6 and _ipv4, whose answers carry a TTL (evdns's
 * getaddrinfo drops it). It is looked up again when the answer's TTL runs
 * out, clamped to [min, max]; a name from /etc/hosts after max.
 *
 * When a lookup fails the last good addresses stay (the name is "stale"
 * since then) and it is tried again with back-off; a name that never
 * resolved has no addresses and its error. The owner's callback runs on
 * the main loop whenever the addresses or the error change.
 *
 * Lookups in flight when a name is unwatched run to their end and are then
 * dropped (evdns forbids cancelling a request whose callback has run, and
 * a cancelled one calls back later anyway); resolve_free aborts the rest
 * (evdns_base_free without callbacks) and frees everything.
 */
#ifndef PORTFWD_RESOLVE_H
#define PORTFWD_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct resolve;
struct resolve_name;

/* At most this many addresses are kept per name (the first ones of each family). */
#define RESOLVE_MAX_ADDRS 16

/* Which families a name is resolved to. */
enum resolve_family {
	RESOLVE_ANY = 0, /* IPv6 and IPv4, IPv6 first */
	RESOLVE_IPV4,
	RESOLVE_IPV6,
};

/*
 * A resolver on BASE. SERVERS ("127.0.0.1:5353", "[::1]:53", "192.0.2.1")
 * replace /etc/resolv.conf's name servers when NSERVERS > 0; /etc/hosts is
 * read either way (HOSTS overrides its path, for tests; NULL: /etc/hosts).
 * Returns NULL with a sentence in ERR.
 */
struct resolve *resolve_new(struct event_base *base, const char *const *servers, size_t nservers,
			    const char *hosts, char *err, size_t errlen);

/* Reads the hosts file again (a reload: an edit of /etc/hosts shows) and
 * looks every watched name up again now. */
void resolve_reread_hosts(struct resolve *r);

/* Aborts every lookup, frees every watched name and R. */
void resolve_free(struct resolve *r);

/* Called on the main loop when N's addresses or error change. */
typedef void (*resolve_cb)(struct resolve_name *n, void *arg);

/*
 * Keeps HOST resolved to FAMILY's addresses, re-resolving after the TTL
 * clamped to [MIN, MAX] seconds. The first lookup starts at once; CB runs
 * when it ends (never from inside resolve_watch). NULL when out of memory.
 */
struct resolve_name *resolve_watch(struct resolve *r, const char *host, enum resolve_family family,
				   double min, double max, resolve_cb cb, void *arg);

/* Stops watching N and frees it; its callback never runs again. */
void resolve_unwatch(struct resolve_name *n);

/* N's current addresses (port 0), IPv6 first for RESOLVE_ANY; at most MAX
 * copied to OUT. Returns how many there are. */
size_t resolve_addrs(const struct resolve_name *n, struct sockaddr_storage *out, size_t max);

/* The error of N's last lookup ("" after a good one). */
const char *resolve_error(const struct resolve_name *n);

/* When N's last good answer came (clock_now), 0 if never; and since when
 * lookups have failed while the old addresses stay (0 if not stale). */
double resolve_good_at(const struct resolve_name *n);
double resolve_stale_since(const struct resolve_name *n);

/* When N is looked up next (clock_now). */
double resolve_next_at(const struct resolve_name *n);

/* The TTL of N's last good answer, before clamping; -1 for /etc/hosts. */
long resolve_ttl(const struct resolve_name *n);

/* "any", "ipv4", "ipv6" to the family; -1 for anything else. */
int resolve_family_parse(const char *text);
const char *resolve_family_name(enum resolve_family f);

#endif
