/*
 * The home router maps a rule's public port to this host: PCP (RFC 6887,
 * written here over its UDP format), NAT-PMP (RFC 6886, libnatpmp) or
 * UPnP-IGD (miniupnpc), per rule `router = "auto" | "pcp" | "natpmp" |
 * "upnp"`.
 *
 * Every request to the router runs on a thread of this module's own
 * (miniupnpc blocks, each call bounded by its timeouts), never on the main
 * loop or a worker's. The main thread says which mappings it wants
 * (router_want, after start, a reload, disable or enable); the thread
 * makes them, renews them at half their lease and at least every
 * ROUTER_CHECK_SECONDS (which is how a router that restarted and forgot
 * them is noticed), re-creates what the router forgot, and deletes what is
 * no longer wanted, and every mapping when the daemon stops.
 */
#ifndef PORTFWD_ROUTER_H
#define PORTFWD_ROUTER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "rule.h"

/* A rule maps at most this many ports (a range) on the router. */
#define ROUTER_PORTS_MAX 64
#define ROUTER_LEASE_DEFAULT 3600
#define ROUTER_LEASE_MIN 2
#define ROUTER_LEASE_MAX 604800
/* A mapping is renewed at least this often, lease or not. */
#define ROUTER_CHECK_SECONDS 60.0
/* At stop, the deletions get this long in all. */
#define ROUTER_STOP_SECONDS 5.0

enum router_method {
	ROUTER_OFF = 0,
	ROUTER_AUTO, /* PCP, then NAT-PMP, then UPnP-IGD; remembers what worked */
	ROUTER_UPNP,
	ROUTER_NATPMP,
	ROUTER_PCP,
};

/* "off", "auto", "upnp", "natpmp", "pcp" -> enum router_method; -1 if none. */
int router_method_parse(const char *name);
const char *router_method_name(unsigned method);

/* What a rule asks of the router. */
struct router_want {
	char rule[RULE_NAME_MAX + 1];
	unsigned method;       /* not ROUTER_OFF */
	bool tcp, udp;
	struct in_addr internal; /* INADDR_ANY: this host's address towards the router */
	unsigned port, port_last; /* the listen ports; port_last == port for one */
	unsigned external;       /* the external port of `port` */
	unsigned lease;          /* seconds */
};

/* Fills W from rule R; false if R does not ask for a mapping. */
bool router_want_of(const struct rule_config *r, struct router_want *w);

/* One rule's mappings, as status shows them. */
struct router_view {
	unsigned method;    /* ROUTER_* that mapped them; the configured one before */
	unsigned wanted_method; /* the configured one (router = ...) */
	unsigned mapped, total; /* ports x protocols */
	char external_addr[INET_ADDRSTRLEN]; /* as the router reports it; "" unknown */
	unsigned external_port, external_last; /* what the router gave (first and last) */
	char internal_addr[INET_ADDRSTRLEN];  /* what it maps to */
	time_t expires;     /* the earliest lease end of those mapped (wall time); 0 none */
	uint64_t renewals;  /* successful requests after the first */
	uint64_t failures;  /* failed requests */
	char error[256];    /* the last failure, "" since a success */
	char warning[256];  /* the external address is private or CGNAT, "" if not */
};

struct router;

/* A router mapper, its thread not started until a mapping is wanted.
 * NULL when out of memory. */
struct router *router_new(void);

/* The mappings wanted now, all of them (N wishes, W may be NULL for none):
 * what is no longer among them is deleted, what is new is made. Main thread. */
int router_want(struct router *r, const struct router_want *w, size_t n);

/* RULE's mappings now; false if it has none. */
bool router_view(struct router *r, const char *rule, struct router_view *out);

/* "mapped", "partly mapped", "mapping" (not yet, no failure), "failed". */
const char *router_view_state(const struct router_view *v);

/* Deletes every mapping (for at most ROUTER_STOP_SECONDS), ends the thread, frees R. */
void router_free(struct router *r);

/* Why ADDR (network order) cannot be reached from the internet as a
 * router's external address: a phrase, or NULL for a public address. */
const char *router_private_reason(struct in_addr addr);

#endif
