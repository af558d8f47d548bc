#include "rule.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/util.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "access.h"
#include "portinfo.h"

void rule_settings_init(struct rule_settings *set)
{
	set->connect_timeout = 5.0;
	set->idle_timeout = 3600.0;
	set->udp_idle_timeout = 60.0;
	set->max_connections = 4096;
	set->max_udp_sessions = 4096;
	set->buffer_size = 65536;
	set->splice = true;
	/* A dead peer is found within 5 + 4 * 0.5 = 7 minutes; one small probe
	 * per idle connection every 5 minutes also keeps NAT mappings alive. */
	set->keepalive = true;
	set->keepalive_idle = 300;
	set->keepalive_interval = 30;
	set->keepalive_count = 4;
	/* As conntrack's unreplied UDP state: a spoofed source never answers,
	 * so its sessions free their slot long before udp_idle_timeout. */
	set->udp_unreplied_timeout = 5.0;
	set->per_source = (struct rule_per_source){ .ipv6_prefix = 64 };
	set->resolve = 0; /* RESOLVE_ANY */
	set->resolve_min = 5.0;
	set->resolve_max = 300.0;
	set->router = 0; /* ROUTER_OFF */
	set->router_lease = 3600;
}

unsigned rule_proto_parse(const char *text)
{
	if (strcmp(text, "tcp") == 0)
		return RULE_PROTO_TCP;
	if (strcmp(text, "udp") == 0)
		return RULE_PROTO_UDP;
	if (strcmp(text, "tcp+udp") == 0)
		return RULE_PROTO_BOTH;
	return 0;
}

const char *rule_proto_name(unsigned proto)
{
	switch (proto) {
	case RULE_PROTO_TCP:
		return "tcp";
	case RULE_PROTO_UDP:
		return "udp";
	case RULE_PROTO_BOTH:
		return "tcp+udp";
	default:
		return "none";
	}
}

bool rule_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > RULE_NAME_MAX)
		return false;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' &&
		    *p != '-')
			return false;
	return true;
}

/* Port text: 1-5 digits, value 1-65535. Returns the port or -1. */
static long rule_parse_port(const char *p)
{
	char *end;
	long v;

	if (*p == '\0' || strlen(p) > 9)
		return -1;
	for (const char *q = p; *q; q++)
		if (!isdigit((unsigned char)*q))
			return -1;
	v = strtol(p, &end, 10);
	return v;
}

int rule_parse_addr(const char *text, struct sockaddr_storage *ss,
		    socklen_t *len, char *err, size_t errlen)
{
	return rule_parse_addr_for(text, 0, ss, len, err, errlen);
}

/* A service name in the port's place, as PROTO has it: the number, or -1
 * with the error written. */
static long rule_parse_service(const char *text, const char *name, unsigned proto, char *err,
			       size_t errlen)
{
	unsigned tcp, udp;
	char near[64];
	long port;

	if (strlen(name) > 32) {
		snprintf(err, errlen, "\"%s\": port \"%.40s...\" is not a number or a service name", text, name);
		return -1;
	}
	if (proto == RULE_PROTO_ANY) {
		/* The rule's proto is bad (and said so): any use of the name will do. */
		portinfo_service_port(name, RULE_PROTO_TCP, &tcp, &udp);
		if (tcp || udp)
			return tcp ? tcp : udp;
		proto = RULE_PROTO_TCP | RULE_PROTO_UDP;
	}
	port = portinfo_service_port(name, proto, &tcp, &udp);
	if (port < 0) {
		snprintf(err, errlen, "\"%s\": service \"%s\" is port %u for TCP and %u for UDP: give the number",
			 text, name, tcp, udp);
		return -1;
	}
	if (port > 0)
		return port;
	if (tcp || udp) {
		snprintf(err, errlen, "\"%s\": service \"%s\" is %s only (port %u), and this rule is %s%s", text,
			 name, tcp ? "TCP" : "UDP", tcp ? tcp : udp, rule_proto_name(proto),
			 proto == (RULE_PROTO_TCP | RULE_PROTO_UDP) ? ": give the number" : "");
		return -1;
	}
	if (portinfo_services_empty()) {
		snprintf(err, errlen, "\"%s\": no service \"%s\" in portfwd's own table, and the services database is empty (no /etc/services: install netbase)",
			 text, name);
		return -1;
	}
	portinfo_service_suggest(name, proto, near, sizeof(near));
	if (isdigit((unsigned char)name[0]) && !near[0]) {
		/* "8o": a slip of a number more likely than a service. */
		snprintf(err, errlen, "\"%s\": port \"%s\" is not a number (nor a known service name)", text,
			 name);
		return -1;
	}
	snprintf(err, errlen, "\"%s\": no service \"%s\" for %s in the services database or portfwd's own table%s%s%s",
		 text, name, rule_proto_name(proto), near[0] ? " (did you mean \"" : "", near,
		 near[0] ? "\"?)" : "");
	return -1;
}

/* True if PORT may be a service name: not all digits, with a letter. */
static bool rule_port_is_name(const char *port)
{
	bool letter = false;

	for (const char *p = port; *p; p++)
		letter |= isalpha((unsigned char)*p) != 0;
	return letter;
}

int rule_parse_addr_for(const char *text, unsigned proto, struct sockaddr_storage *ss,
			socklen_t *len, char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port;
	size_t hostlen;
	long pnum;
	int slen = (int)sizeof(*ss);
	unsigned char probe[sizeof(struct in6_addr)];
	bool v6 = text[0] == '[';

	if (v6) {
		const char *close = strchr(text, ']');

		if (!close) {
			snprintf(err, errlen, "\"%s\": missing \"]\" after the IPv6 address", text);
			return -1;
		}
		if (close[1] != ':') {
			snprintf(err, errlen, "\"%s\": missing port (expected [IPv6]:port)", text);
			return -1;
		}
		hostlen = (size_t)(close - text - 1);
		if (hostlen >= sizeof(host)) {
			snprintf(err, errlen, "\"%s\": not a numeric IPv6 address", text);
			return -1;
		}
		memcpy(host, text + 1, hostlen);
		host[hostlen] = '\0';
		port = close + 2;
	} else {
		const char *colon = strchr(text, ':');

		if (!colon) {
			snprintf(err, errlen, "\"%s\": missing port (expected IPv4:port or [IPv6]:port)", text);
			return -1;
		}
		if (strchr(colon + 1, ':')) {
			snprintf(err, errlen, "\"%s\": IPv6 addresses must be in brackets, as in [::1]:8080", text);
			return -1;
		}
		hostlen = (size_t)(colon - text);
		if (hostlen >= sizeof(host)) {
			snprintf(err, errlen, "\"%s\": not a numeric IPv4 address (host names are not resolved)", text);
			return -1;
		}
		memcpy(host, text, hostlen);
		host[hostlen] = '\0';
		port = colon + 1;
	}

	if (evutil_inet_pton(v6 ? AF_INET6 : AF_INET, host, probe) != 1) {
		snprintf(err, errlen, "\"%s\": \"%s\" is not a numeric %s address%s",
			 text, host, v6 ? "IPv6" : "IPv4",
			 v6 ? "" : " (host names are not resolved)");
		return -1;
	}
	pnum = rule_parse_port(port);
	if (pnum < 0 && proto && rule_port_is_name(port)) {
		pnum = rule_parse_service(text, port, proto, err, errlen);
		if (pnum < 0)
			return -1;
	} else if (pnum < 0) {
		snprintf(err, errlen, "\"%s\": port \"%s\" is not a number", text, port);
		return -1;
	}
	if (pnum < 1 || pnum > 65535) {
		snprintf(err, errlen, "\"%s\": port %ld is out of range (1-65535)", text, pnum);
		return -1;
	}

	{
		/* The address with the port as a number (a service name's). */
		char numeric[INET6_ADDRSTRLEN + 16];

		snprintf(numeric, sizeof(numeric), v6 ? "[%s]:%ld" : "%s:%ld", host, pnum);
		memset(ss, 0, sizeof(*ss));
		if (evutil_parse_sockaddr_port(numeric, (struct sockaddr *)ss, &slen) != 0) {
			snprintf(err, errlen, "\"%s\": not a valid address", text);
			return -1;
		}
	}
	*len = (socklen_t)slen;
	return 0;
}

const char *rule_format_addr(const struct sockaddr *sa, char *buf,
			     size_t buflen)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		evutil_inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, buflen, "%s:%u", host, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		evutil_inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, buflen, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else {
		snprintf(buf, buflen, "(family %d)", sa->sa_family);
	}
	return buf;
}

const char *rule_format_host(const struct sockaddr *sa, char *buf, size_t buflen)
{
	if (sa->sa_family == AF_INET)
		evutil_inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, buflen);
	else if (sa->sa_family == AF_INET6)
		evutil_inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, buflen);
	else
		snprintf(buf, buflen, "(family %d)", sa->sa_family);
	return buf;
}

const char *rule_format_client(const struct sockaddr *sa, char *buf, size_t buflen)
{
	char addr[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6))
			inet_ntop(AF_INET, &a6->s6_addr[12], addr, sizeof(addr));
		else
			inet_ntop(AF_INET6, a6, addr, sizeof(addr));
	}
	snprintf(buf, buflen, "%s port %u", addr, rule_addr_port(sa));
	return buf;
}

unsigned rule_addr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}

bool rule_addr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)a;
		const struct sockaddr_in *y = (const struct sockaddr_in *)b;

		return x->sin_port == y->sin_port &&
		       x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
		const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;

		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr,
			      sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

bool rule_addr_is_wildcard(const struct sockaddr *a)
{
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (a->sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)a)->sin6_addr);
	return false;
}

bool rule_addr_collide(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family || rule_addr_port(a) != rule_addr_port(b))
		return false;
	return rule_addr_is_wildcard(a) || rule_addr_is_wildcard(b) || rule_addr_equal(a, b);
}

bool rule_settings_equal(const struct rule_settings *a, const struct rule_settings *b)
{
	return a->connect_timeout == b->connect_timeout && a->idle_timeout == b->idle_timeout &&
	       a->udp_idle_timeout == b->udp_idle_timeout &&
	       a->max_connections == b->max_connections &&
	       a->max_udp_sessions == b->max_udp_sessions && a->buffer_size == b->buffer_size &&
	       a->splice == b->splice && a->keepalive == b->keepalive &&
	       a->keepalive_idle == b->keepalive_idle &&
	       a->keepalive_interval == b->keepalive_interval &&
	       a->keepalive_count == b->keepalive_count &&
	       a->udp_unreplied_timeout == b->udp_unreplied_timeout &&
	       memcmp(&a->per_source, &b->per_source, sizeof(a->per_source)) == 0 &&
	       a->proxy_protocol == b->proxy_protocol && a->resolve == b->resolve &&
	       a->resolve_min == b->resolve_min && a->resolve_max == b->resolve_max &&
	       a->router == b->router && a->router_lease == b->router_lease;
}

bool rule_host_name_valid(const char *name)
{
	size_t len = strlen(name), label = 0;
	bool letter = false;

	if (len == 0 || len > 253 || name[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (c == '.') {
			if (label == 0 || name[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)c) && c != '-')
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
		letter |= !isdigit((unsigned char)c);
	}
	return letter && name[len - 1] != '-';
}

int rule_parse_named(const char *text, unsigned proto, struct rule_target *t, unsigned *last,
		     char *err, size_t errlen)
{
	const char *colon = strrchr(text, ':');
	char host[RULE_HOST_MAX], numeric[64];
	size_t hlen;

	if (!colon || colon == text || strchr(text, '[') || memchr(text, ':', (size_t)(colon - text))) {
		snprintf(err, errlen, "\"%.64s\" is not \"host:port\"", text);
		return -1;
	}
	hlen = (size_t)(colon - text);
	if (hlen >= sizeof(host)) {
		snprintf(err, errlen, "the host name of \"%.64s...\" is longer than 253 characters", text);
		return -1;
	}
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	if (!rule_host_name_valid(host)) {
		snprintf(err, errlen, "\"%.64s\" is neither an IP address nor a host name (letters, digits, hyphens and dots, each label 1-63 characters)",
			 host);
		return -1;
	}
	/* The port as an address's would be read: numbers, a range, a service. */
	snprintf(numeric, sizeof(numeric), "0.0.0.0:%.40s", colon + 1);
	memset(t->host, 0, sizeof(t->host));
	if (rule_parse_range(numeric, proto, &t->addr, &t->addr_len, last, err, errlen) < 0) {
		/* The message quotes what it read: the text as written. */
		char *at = strstr(err, numeric), copy[512];

		if (at) {
			snprintf(copy, sizeof(copy), "%.*s%s%s", (int)(at - err), err, text, at + strlen(numeric));
			snprintf(err, errlen, "%s", copy);
		}
		return -1;
	}
	snprintf(t->host, sizeof(t->host), "%s", host);
	snprintf(t->text, sizeof(t->text), "%s", text);
	return 0;
}

bool rule_has_names(const struct rule_config *r)
{
	for (size_t i = 0; r->targets && i < r->targets->n; i++)
		if (r->targets->t[i].host[0])
			return true;
	return false;
}

const char *rule_target_host(const struct rule_config *r)
{
	return r->targets && r->targets->t[0].host[0] ? r->targets->t[0].host : NULL;
}

struct rule_targets *rule_targets_new(size_t n)
{
	struct rule_targets *t = calloc(1, sizeof(*t) + n * sizeof(t->t[0]));

	if (!t)
		return NULL;
	atomic_init(&t->refs, 1);
	t->n = n;
	return t;
}

struct rule_targets *rule_targets_ref(struct rule_targets *t)
{
	if (t)
		atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
	return t;
}

void rule_targets_unref(struct rule_targets *t)
{
	if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
		free(t);
}

static const char *const rule_balance_names[] = {
	[RULE_BALANCE_FAILOVER] = "failover",
	[RULE_BALANCE_ROUND_ROBIN] = "round-robin",
	[RULE_BALANCE_SOURCE_HASH] = "source-hash",
	[RULE_BALANCE_LEAST_CONN] = "least-connections",
};

const char *rule_balance_name(enum rule_balance b)
{
	return (unsigned)b < sizeof(rule_balance_names) / sizeof(rule_balance_names[0])
		       ? rule_balance_names[b]
		       : "?";
}

int rule_balance_parse(const char *text)
{
	for (size_t i = 0; i < sizeof(rule_balance_names) / sizeof(rule_balance_names[0]); i++)
		if (strcmp(text, rule_balance_names[i]) == 0)
			return (int)i;
	return -1;
}

size_t rule_ntargets(const struct rule_config *r)
{
	return r->targets ? r->targets->n : 1;
}

const struct sockaddr *rule_target_addr(const struct rule_config *r, size_t i, socklen_t *len)
{
	if (!r->targets) {
		if (len)
			*len = r->target_len;
		return (const struct sockaddr *)&r->target;
	}
	if (len)
		*len = r->targets->t[i].addr_len;
	return (const struct sockaddr *)&r->targets->t[i].addr;
}

const char *rule_target_service(const struct rule_config *r, size_t i)
{
	return r->targets ? r->targets->t[i].service : r->target_service;
}

/* The same targets in the same order (a list of one is its `target`). */
static bool rule_targets_equal(const struct rule_config *a, const struct rule_config *b)
{
	size_t n = rule_ntargets(a);

	if (n != rule_ntargets(b))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!rule_addr_equal(rule_target_addr(a, i, NULL), rule_target_addr(b, i, NULL)) ||
		    strcasecmp(a->targets ? a->targets->t[i].host : "", b->targets ? b->targets->t[i].host : "") != 0)
			return false;
	return true;
}

static bool rule_health_equal(const struct rule_health *a, const struct rule_health *b)
{
	if (a->enabled != b->enabled)
		return false;
	return !a->enabled || (a->interval == b->interval && a->timeout == b->timeout &&
			       a->rise == b->rise && a->fall == b->fall);
}

bool rule_config_equal(const struct rule_config *a, const struct rule_config *b)
{
	return strcmp(a->name, b->name) == 0 && a->proto == b->proto &&
	       rule_addr_equal((const struct sockaddr *)&a->listen,
			       (const struct sockaddr *)&b->listen) &&
	       rule_addr_equal((const struct sockaddr *)&a->target,
			       (const struct sockaddr *)&b->target) &&
	       rule_targets_equal(a, b) && a->balance == b->balance &&
	       rule_health_equal(&a->health, &b->health) &&
	       a->listen_last == b->listen_last && a->target_range == b->target_range &&
	       a->freebind == b->freebind && a->external_port == b->external_port &&
	       rule_settings_equal(&a->set, &b->set) && access_policy_equal(a->access, b->access) &&
	       strcmp(a->interface, b->interface) == 0 && a->source_len == b->source_len &&
	       (a->source_len == 0 || rule_addr_equal((const struct sockaddr *)&a->source,
						      (const struct sockaddr *)&b->source));
}

static const char *rule_format_span(const struct sockaddr *sa, unsigned last, char *buf,
				    size_t len);

void rule_name_ports(struct rule_config *r)
{
	_Static_assert(RULE_SERVICE_MAX == PORTINFO_NAME_MAX, "one size for service names");
	r->listen_service[0] = r->target_service[0] = '\0';
	/* A range has no one name; the target's one port of a range has. */
	if (!rule_is_range(r))
		portinfo_service_name(rule_addr_port((const struct sockaddr *)&r->listen), r->proto,
			      r->listen_service, sizeof(r->listen_service));
	if (!r->target_range)
		portinfo_service_name(rule_addr_port((const struct sockaddr *)&r->target), r->proto,
			      r->target_service, sizeof(r->target_service));
	/* Still the reader's own list: nobody shares it yet. */
	for (size_t i = 0; r->targets && i < r->targets->n; i++)
		portinfo_service_name(rule_addr_port((const struct sockaddr *)&r->targets->t[i].addr),
				      r->proto, r->targets->t[i].service,
				      sizeof(r->targets->t[i].service));
}

const char *rule_format_port(const struct sockaddr *sa, const char *service, char *buf,
			     size_t len)
{
	char addr[RULE_ADDR_STRLEN];
	const char *range = portinfo_range(rule_addr_port(sa));

	rule_format_addr(sa, addr, sizeof(addr));
	if (service && service[0])
		snprintf(buf, len, "%s (%s, %s)", addr, service, range);
	else
		snprintf(buf, len, "%s (%s)", addr, range);
	return buf;
}

json_t *rule_port_json(const struct sockaddr *sa, const char *service)
{
	unsigned port = rule_addr_port(sa);

	json_t *name = service && service[0] ? json_string(service) : NULL;

	return json_pack("{s:i, s:o, s:s}", "port", (int)port, "service", name ? name : json_null(),
			 "class", portinfo_range(port));
}

/* As rule_format_port, for the ports FIRST-LAST of SA ("0.0.0.0:27015-27030
 * (registered)", "(well-known to registered)" when it spans classes). */
static const char *rule_format_ports(const struct sockaddr *sa, unsigned last, const char *service,
				     char *buf, size_t len)
{
	char addr[RULE_ADDR_STRLEN];
	const char *lo = portinfo_range(rule_addr_port(sa)), *hi;

	if (!last || last == rule_addr_port(sa))
		return rule_format_port(sa, service, buf, len);
	hi = portinfo_range(last);
	rule_format_span(sa, last, addr, sizeof(addr));
	if (strcmp(lo, hi) == 0)
		snprintf(buf, len, "%s (%s)", addr, lo);
	else
		snprintf(buf, len, "%s (%s to %s)", addr, lo, hi);
	return buf;
}

void rule_range_json(const struct rule_config *r, json_t *obj)
{
	unsigned tfirst = rule_addr_port((const struct sockaddr *)&r->target);

	if (!obj || !rule_is_range(r))
		return;
	json_object_set_new(obj, "listen_range", json_pack("{s:i, s:i}", "first", (int)rule_port_first(r),
							   "last", (int)rule_port_last(r)));
	if (r->target_range)
		json_object_set_new(obj, "target_range",
				    json_pack("{s:i, s:i}", "first", (int)tfirst, "last",
					      (int)(tfirst + rule_nports(r) - 1)));
}

/* "nas.lan:445 (microsoft-ds, well-known)": a named target as
 * rule_format_ports writes an address. */
static const char *rule_format_named(const char *host, unsigned first, unsigned last,
				     const char *service, char *buf, size_t len)
{
	const char *lo = portinfo_range(first), *hi = portinfo_range(last ? last : first);

	if (last && last != first)
		snprintf(buf, len, "%s:%u-%u (%s%s%s)", host, first, last, lo,
			 strcmp(lo, hi) ? " to " : "", strcmp(lo, hi) ? hi : "");
	else if (service && service[0])
		snprintf(buf, len, "%s:%u (%s, %s)", host, first, service, lo);
	else
		snprintf(buf, len, "%s:%u (%s)", host, first, lo);
	return buf;
}

const char *rule_format_target_port(const struct rule_config *r, char *buf, size_t len)
{
	unsigned tfirst = rule_addr_port((const struct sockaddr *)&r->target);
	unsigned tlast = r->target_range ? tfirst + rule_nports(r) - 1 : 0;
	const char *host = rule_target_host(r);

	if (host)
		return rule_format_named(host, tfirst, tlast, r->target_service, buf, len);
	return rule_format_ports((const struct sockaddr *)&r->target, tlast, r->target_service, buf,
				 len);
}

const char *rule_format_route(const struct rule_config *r, char *buf, size_t len)
{
	char listen[RULE_PORT_STRLEN], target[RULE_HOST_MAX + RULE_PORT_STRLEN];

	rule_format_target_port(r, target, sizeof(target));
	snprintf(buf, len, "%s -> %s",
		 rule_format_ports((const struct sockaddr *)&r->listen, r->listen_last,
				   r->listen_service, listen, sizeof(listen)),
		 target);
	return buf;
}

bool rule_same_listener(const struct rule_config *a, const struct rule_config *b)
{
	return a->proto == b->proto && a->listen_last == b->listen_last &&
	       rule_addr_equal((const struct sockaddr *)&a->listen,
			       (const struct sockaddr *)&b->listen);
}

/* True if A and B are the same family and address, whatever their ports. */
static bool rule_same_host(const struct sockaddr *a, const struct sockaddr *b)
{
	struct sockaddr_storage x;

	rule_addr_set_port(a, rule_addr_port(b), &x);
	return rule_addr_equal((const struct sockaddr *)&x, b);
}

/* True if the listen ranges of A and B have a port in common. */
static bool rule_ranges_overlap(const struct rule_config *a, const struct rule_config *b)
{
	return rule_port_first(a) <= rule_port_last(b) && rule_port_first(b) <= rule_port_last(a);
}

bool rule_same_range_rule(const struct rule_config *a, const struct rule_config *b)
{
	return a->proto == b->proto && strcmp(a->name, b->name) == 0 &&
	       rule_same_host((const struct sockaddr *)&a->listen, (const struct sockaddr *)&b->listen) &&
	       rule_ranges_overlap(a, b);
}

bool rule_listen_collide(const struct rule_config *a, const struct rule_config *b)
{
	const struct sockaddr *x = (const struct sockaddr *)&a->listen;
	const struct sockaddr *y = (const struct sockaddr *)&b->listen;

	if (x->sa_family != y->sa_family || !rule_ranges_overlap(a, b))
		return false;
	return rule_addr_is_wildcard(x) || rule_addr_is_wildcard(y) || rule_same_host(x, y);
}

unsigned rule_port_first(const struct rule_config *r)
{
	return rule_addr_port((const struct sockaddr *)&r->listen);
}

unsigned rule_port_last(const struct rule_config *r)
{
	return r->listen_last ? r->listen_last : rule_port_first(r);
}

unsigned rule_nports(const struct rule_config *r)
{
	return rule_port_last(r) - rule_port_first(r) + 1;
}

bool rule_is_range(const struct rule_config *r)
{
	return r->listen_last != 0 && r->listen_last != rule_port_first(r);
}

unsigned rule_target_port(const struct rule_config *r, unsigned port)
{
	return rule_target_port_of(r, rule_addr_port((const struct sockaddr *)&r->target), port);
}

unsigned rule_target_port_of(const struct rule_config *r, unsigned base, unsigned port)
{
	long mapped = (long)base + (long)port - (long)rule_port_first(r);

	if (!r->target_range)
		return base;
	return mapped >= 1 && mapped <= 65535 ? (unsigned)mapped : base;
}

void rule_addr_set_port(const struct sockaddr *sa, unsigned port, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET) {
		memcpy(out, sa, sizeof(struct sockaddr_in));
		((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(out, sa, sizeof(struct sockaddr_in6));
		((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
	}
}

/* SA as "host:first-last" when LAST is another port than SA's. */
static const char *rule_format_span(const struct sockaddr *sa, unsigned last, char *buf, size_t len)
{
	size_t n;

	rule_format_addr(sa, buf, len);
	n = strlen(buf);
	if (last && last != rule_addr_port(sa))
		snprintf(buf + n, len > n ? len - n : 0, "-%u", last);
	return buf;
}

const char *rule_format_listen(const struct rule_config *r, char *buf, size_t len)
{
	return rule_format_span((const struct sockaddr *)&r->listen, r->listen_last, buf, len);
}

const char *rule_format_target(const struct rule_config *r, char *buf, size_t len)
{
	unsigned first = rule_addr_port((const struct sockaddr *)&r->target);

	if (rule_target_host(r)) {
		if (r->target_range)
			snprintf(buf, len, "%s:%u-%u", rule_target_host(r), first, first + rule_nports(r) - 1);
		else
			snprintf(buf, len, "%s:%u", rule_target_host(r), first);
		return buf;
	}

	return rule_format_span((const struct sockaddr *)&r->target,
				r->target_range ? first + rule_nports(r) - 1 : 0, buf, len);
}

/* Where the port of "IPv4:port" or "[IPv6]:port" starts, or NULL. */
static const char *rule_port_text(const char *text)
{
	const char *p;

	if (text[0] == '[') {
		p = strchr(text, ']');
		return p && p[1] == ':' ? p + 2 : NULL;
	}
	p = strchr(text, ':');
	return p && !strchr(p + 1, ':') ? p + 1 : NULL;
}

int rule_parse_range(const char *text, unsigned proto, struct sockaddr_storage *ss, socklen_t *len,
		     unsigned *last, char *err, size_t errlen)
{
	const char *port = rule_port_text(text), *dash;
	char first[RULE_ADDR_STRLEN + 16];
	long lo, hi;

	*last = 0;
	/* A range starts with a digit (a service name may hold a '-': "http-alt"). */
	if (!port || !isdigit((unsigned char)port[0]) || !(dash = strchr(port, '-')))
		return rule_parse_addr_for(text, proto, ss, len, err, errlen);
	if ((size_t)(dash - text) >= sizeof(first)) {
		snprintf(err, errlen, "\"%.80s...\": not an address", text);
		return -1;
	}
	memcpy(first, text, (size_t)(dash - text));
	first[dash - text] = '\0';
	hi = rule_parse_port(dash + 1);
	if (hi < 0) {
		snprintf(err, errlen, "\"%s\": port range \"%s\" is not two numbers as in 27015-27030 (no service names in a range)",
			 text, port);
		return -1;
	}
	lo = rule_parse_port(first + (port - text));
	if (lo < 0 || hi < 0) {
		snprintf(err, errlen, "\"%s\": port range \"%s\" is not two numbers as in 27015-27030 (no service names in a range)",
			 text, port);
		return -1;
	}
	if (lo < 1 || lo > 65535 || hi < 1 || hi > 65535) {
		snprintf(err, errlen, "\"%s\": port %ld is out of range (1-65535)", text,
			 lo < 1 || lo > 65535 ? lo : hi);
		return -1;
	}
	/* The address, with the first port. */
	if (rule_parse_addr_for(first, 0, ss, len, err, errlen) < 0) {
		size_t flen = strlen(first);
		char rest[256];

		/* The message quotes the text as written, not the part checked. */
		if (err[0] == '"' && strncmp(err + 1, first, flen) == 0 && err[flen + 1] == '"') {
			snprintf(rest, sizeof(rest), "%s", err + flen + 2);
			snprintf(err, errlen, "\"%s\"%s", text, rest);
		}
		return -1;
	}
	if (lo > hi) {
		snprintf(err, errlen, "\"%s\": port range %ld-%ld runs backwards (the first port is above the last)",
			 text, lo, hi);
		return -1;
	}
	if (hi - lo + 1 > RULE_RANGE_MAX) {
		snprintf(err, errlen, "\"%s\": port range %ld-%ld has %ld ports; a rule may have at most %d",
			 text, lo, hi, hi - lo + 1, RULE_RANGE_MAX);
		return -1;
	}
	*last = hi == lo ? 0 : (unsigned)hi;
	return 0;
}
