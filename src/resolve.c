#include "resolve.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "clock.h"
#include "log.h"

/* evdns's per-server timeout and tries: a dead server fails a lookup in
 * about 4 s rather than evdns's 15. */
#define RESOLVE_TIMEOUT "2"
#define RESOLVE_ATTEMPTS "2"

struct resolve_query;

struct resolve_name {
	LIST_ENTRY(resolve_name) link;
	struct resolve *r;
	char *host;
	enum resolve_family family;
	double min, max;
	resolve_cb cb;
	void *arg;

	struct sockaddr_storage addrs[RESOLVE_MAX_ADDRS];
	size_t naddrs;
	char error[160];
	double good_at, stale_since, next_at, backoff;
	long ttl;
	struct event *timer;
	struct resolve_query *q; /* the lookup in flight, if any */
};

/* One lookup: the hosts file, then the DNS (one query per family). */
struct resolve_query {
	LIST_ENTRY(resolve_query) link; /* in r->queries */
	struct resolve *r;
	struct resolve_name *n; /* NULL once its name is unwatched: dropped at the end */
	enum resolve_family family;
	unsigned pending;       /* evdns callbacks still to come */
	bool in_hosts_call;     /* inside evdns_getaddrinfo (a callback now is the hosts file's) */
	bool from_hosts;
	struct sockaddr_storage a6[RESOLVE_MAX_ADDRS], a4[RESOLVE_MAX_ADDRS];
	size_t n6, n4;
	long ttl; /* the smallest of the answers', -1 none yet */
	int err6, err4; /* DNS_ERR_*; -1 not asked */
};

static void resolve_schedule(struct resolve_name *n, double in);

struct resolve {
	struct event_base *base;
	struct evdns_base *dns;   /* the name servers */
	struct evdns_base *hosts; /* the hosts file only: answers at once or not at all */
	LIST_HEAD(, resolve_name) names;
	LIST_HEAD(, resolve_query) queries;
	char hosts_path[256];
};

static void resolve_query_free(struct resolve_query *q)
{
	LIST_REMOVE(q, link);
	free(q);
}

/* "127.0.0.1:5353" or "[::1]:53" or "192.0.2.1": a name server, checked. */
static int resolve_add_server(struct evdns_base *dns, const char *text, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int len = (int)sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(text, (struct sockaddr *)&ss, &len) < 0) {
		snprintf(err, errlen, "resolver \"%s\" is not an IP address with an optional port (\"127.0.0.1:5353\", \"[::1]:53\")",
			 text);
		return -1;
	}
	if (ss.ss_family == AF_INET && ((struct sockaddr_in *)&ss)->sin_port == 0)
		((struct sockaddr_in *)&ss)->sin_port = htons(53);
	if (ss.ss_family == AF_INET6 && ((struct sockaddr_in6 *)&ss)->sin6_port == 0)
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(53);
	if (evdns_base_nameserver_sockaddr_add(dns, (struct sockaddr *)&ss, (ev_socklen_t)len, 0) != 0) {
		snprintf(err, errlen, "resolver \"%s\": cannot use it as a name server", text);
		return -1;
	}
	return 0;
}

/* evdns's own messages, into the daemon's log. */
static void resolve_evdns_log_cb(int is_warning, const char *msg)
{
	if (is_warning)
		log_warning("resolver: %s", msg);
	else
		log_debug("resolver: %s", msg);
}

struct resolve *resolve_new(struct event_base *base, const char *const *servers, size_t nservers,
			    const char *hosts, char *err, size_t errlen)
{
	struct resolve *r = calloc(1, sizeof(*r));

	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	evdns_set_log_fn(resolve_evdns_log_cb);
	r->base = base;
	LIST_INIT(&r->names);
	LIST_INIT(&r->queries);
	r->dns = evdns_base_new(base, 0);
	r->hosts = evdns_base_new(base, 0);
	if (!r->dns || !r->hosts) {
		snprintf(err, errlen, "cannot set up the resolver: out of memory");
		goto fail;
	}
	if (nservers == 0) {
		/* As the C library: resolv.conf's servers, search list and options. */
		int rc = evdns_base_resolv_conf_parse(r->dns, DNS_OPTIONS_ALL & ~DNS_OPTION_HOSTSFILE,
						      "/etc/resolv.conf");

		if (rc != 0 && rc != 6) /* 6: no servers in it; evdns uses 127.0.0.1 */
			log_warning("resolver: cannot read /etc/resolv.conf (evdns error %d); using 127.0.0.1",
				    rc);
		if (evdns_base_count_nameservers(r->dns) == 0)
			evdns_base_nameserver_ip_add(r->dns, "127.0.0.1");
	} else {
		for (size_t i = 0; i < nservers; i++)
			if (resolve_add_server(r->dns, servers[i], err, errlen) < 0)
				goto fail;
	}
	evdns_base_set_option(r->dns, "timeout:", RESOLVE_TIMEOUT);
	evdns_base_set_option(r->dns, "attempts:", RESOLVE_ATTEMPTS);
	/* A missing hosts file is an empty one. */
	snprintf(r->hosts_path, sizeof(r->hosts_path), "%s", hosts ? hosts : "/etc/hosts");
	evdns_base_load_hosts(r->hosts, r->hosts_path);
	return r;
fail:
	if (r->dns)
		evdns_base_free(r->dns, 0);
	if (r->hosts)
		evdns_base_free(r->hosts, 0);
	free(r);
	return NULL;
}

void resolve_reread_hosts(struct resolve *r)
{
	if (!r)
		return;
	evdns_base_clear_host_addresses(r->hosts);
	evdns_base_load_hosts(r->hosts, r->hosts_path);
	/* Each name is asked again now, not when its answer runs out. */
	for (struct resolve_name *n = LIST_FIRST(&r->names); n; n = LIST_NEXT(n, link)) {
		/* A lookup under way read the old file: its answer is dropped. */
		if (n->q) {
			n->q->n = NULL;
			n->q = NULL;
		}
		resolve_schedule(n, 0);
	}
}

void resolve_free(struct resolve *r)
{
	if (!r)
		return;
	while (!LIST_EMPTY(&r->names))
		resolve_unwatch(LIST_FIRST(&r->names));
	/* Aborts the queries without calling back. */
	evdns_base_free(r->dns, 0);
	evdns_base_free(r->hosts, 0);
	while (!LIST_EMPTY(&r->queries))
		resolve_query_free(LIST_FIRST(&r->queries));
	free(r);
}

static void resolve_schedule(struct resolve_name *n, double in)
{
	struct timeval tv = clock_timeval(in);

	n->next_at = clock_now() + in;
	evtimer_add(n->timer, &tv);
}

static bool resolve_addrs_equal(const struct sockaddr_storage *a, size_t na,
				const struct sockaddr_storage *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		if (a[i].ss_family != b[i].ss_family)
			return false;
		if (a[i].ss_family == AF_INET
			    ? memcmp(&((const struct sockaddr_in *)&a[i])->sin_addr,
				     &((const struct sockaddr_in *)&b[i])->sin_addr, 4) != 0
			    : memcmp(&((const struct sockaddr_in6 *)&a[i])->sin6_addr,
				     &((const struct sockaddr_in6 *)&b[i])->sin6_addr, 16) != 0)
			return false;
	}
	return true;
}

/* Why a lookup found nothing, as a person reads it. */
static void resolve_describe_failure(const struct resolve_query *q, char *buf, size_t len)
{
	int e = q->err6 > 0 ? q->err6 : q->err4;

	if (q->err6 > 0 && q->err4 > 0 && q->err6 != q->err4)
		e = q->err4 == DNS_ERR_NOTEXIST || q->err6 == DNS_ERR_NOTEXIST ? DNS_ERR_NOTEXIST : q->err4;
	if (e == DNS_ERR_NOTEXIST)
		snprintf(buf, len, "no such name (NXDOMAIN)");
	else if (e == DNS_ERR_TIMEOUT)
		snprintf(buf, len, "the name servers did not answer");
	else if (e > 0)
		snprintf(buf, len, "%s", evdns_err_to_string(e));
	else
		snprintf(buf, len, "the name has no %s address",
			 q->family == RESOLVE_IPV4 ? "IPv4" : q->family == RESOLVE_IPV6 ? "IPv6" : "IPv4 or IPv6");
}

/* IPv6 before IPv4, then by address: an answer whose records come in
 * another order (round-robin DNS) is the same answer. */
static int resolve_addr_cmp(const void *a, const void *b)
{
	const struct sockaddr_storage *x = a, *y = b;

	if (x->ss_family != y->ss_family)
		return x->ss_family == AF_INET6 ? -1 : 1;
	if (x->ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)x)->sin_addr, &((const struct sockaddr_in *)y)->sin_addr, 4);
	return memcmp(&((const struct sockaddr_in6 *)x)->sin6_addr, &((const struct sockaddr_in6 *)y)->sin6_addr, 16);
}

static void resolve_finish(struct resolve_query *q)
{
	struct resolve_name *n = q->n;
	struct sockaddr_storage got[RESOLVE_MAX_ADDRS];
	size_t ngot = 0;
	bool changed;
	char err[sizeof(((struct resolve_name *)0)->error)];

	if (!n) {
		resolve_query_free(q);
		return;
	}
	n->q = NULL;
	for (size_t i = 0; i < q->n6 && ngot < RESOLVE_MAX_ADDRS; i++)
		got[ngot++] = q->a6[i];
	for (size_t i = 0; i < q->n4 && ngot < RESOLVE_MAX_ADDRS; i++)
		got[ngot++] = q->a4[i];
	qsort(got, ngot, sizeof(got[0]), resolve_addr_cmp);
	if (ngot > 0) {
		double in = q->from_hosts || q->ttl < 0 ? n->max : (double)q->ttl;

		changed = !resolve_addrs_equal(got, ngot, n->addrs, n->naddrs) || n->error[0] ||
			  n->good_at == 0;
		memcpy(n->addrs, got, ngot * sizeof(got[0]));
		n->naddrs = ngot;
		n->error[0] = '\0';
		n->good_at = clock_now();
		n->stale_since = 0;
		n->ttl = q->from_hosts ? -1 : q->ttl;
		n->backoff = 0;
		resolve_query_free(q);
		resolve_schedule(n, in < n->min ? n->min : in > n->max ? n->max : in);
	} else {
		resolve_describe_failure(q, err, sizeof(err));
		changed = strcmp(err, n->error) != 0;
		snprintf(n->error, sizeof(n->error), "%s", err);
		if (n->naddrs && n->stale_since == 0)
			n->stale_since = clock_now();
		/* Back-off: min, doubling, up to max. */
		n->backoff = n->backoff == 0 ? n->min : n->backoff * 2;
		if (n->backoff > n->max)
			n->backoff = n->max;
		/* The same failure again is news only at debug level. */
		log_msg(changed ? LOG_LVL_WARNING : LOG_LVL_DEBUG, "resolve %s: %s; %s, next try in %.1fs",
			n->host, n->error, n->naddrs ? "keeping its last addresses" : "no address yet",
			n->backoff);
		resolve_query_free(q);
		resolve_schedule(n, n->backoff);
	}
	if (changed)
		n->cb(n, n->arg);
}

/* At most how many records of one family an answer may bring (a DNS
 * message over UDP holds far fewer). */
#define RESOLVE_MAX_RECORDS 512

/*
 * Keeps the first RESOLVE_MAX_ADDRS of the COUNT addresses of FAMILY in
 * order (IPv6 first, then by address) into OUT: a name with more records
 * than that keeps the same ones, whatever order the server rotates them in.
 */
static void resolve_keep(struct sockaddr_storage *out, size_t *n, int family, const void *addresses,
			 int count)
{
	size_t len = family == AF_INET ? 4 : 16, want;
	struct sockaddr_storage *all;

	if (count <= 0)
		return;
	if (count > RESOLVE_MAX_RECORDS)
		count = RESOLVE_MAX_RECORDS;
	all = calloc((size_t)count, sizeof(*all));
	if (!all)
		return;
	for (int i = 0; i < count; i++) {
		all[i].ss_family = (sa_family_t)family;
		if (family == AF_INET)
			memcpy(&((struct sockaddr_in *)&all[i])->sin_addr, (const char *)addresses + len * (size_t)i, len);
		else
			memcpy(&((struct sockaddr_in6 *)&all[i])->sin6_addr, (const char *)addresses + len * (size_t)i, len);
	}
	qsort(all, (size_t)count, sizeof(*all), resolve_addr_cmp);
	want = (size_t)count < RESOLVE_MAX_ADDRS - *n ? (size_t)count : RESOLVE_MAX_ADDRS - *n;
	memcpy(out + *n, all, want * sizeof(*all));
	*n += want;
	free(all);
}

static void resolve_dns_cb(int result, char type, int count, int ttl, void *addresses, void *arg)
{
	struct resolve_query *q = arg;

	q->pending--;
	if (type == DNS_IPv4_A) {
		q->err4 = result;
		if (result == DNS_ERR_NONE)
			resolve_keep(q->a4, &q->n4, AF_INET, addresses, count);
	} else if (type == DNS_IPv6_AAAA) {
		q->err6 = result;
		if (result == DNS_ERR_NONE)
			resolve_keep(q->a6, &q->n6, AF_INET6, addresses, count);
	} else if (type == 0) {
		/* No type: a request that failed before it had one (shutdown, cancel). */
		if (q->err4 < 0)
			q->err4 = result;
		else
			q->err6 = result;
	}
	if (result == DNS_ERR_NONE && count > 0 && (q->ttl < 0 || ttl < q->ttl))
		q->ttl = ttl;
	if (q->pending == 0)
		resolve_finish(q);
}

static void resolve_dns(struct resolve_query *q, const char *host)
{
	struct resolve *r = q->r;

	q->err4 = q->err6 = -1;
	if (q->family != RESOLVE_IPV4) {
		q->pending++;
		if (!evdns_base_resolve_ipv6(r->dns, host, 0, resolve_dns_cb, q)) {
			q->pending--;
			q->err6 = DNS_ERR_UNKNOWN;
		}
	}
	if (q->family != RESOLVE_IPV6) {
		q->pending++;
		if (!evdns_base_resolve_ipv4(r->dns, host, 0, resolve_dns_cb, q)) {
			q->pending--;
			q->err4 = DNS_ERR_UNKNOWN;
		}
	}
	if (q->pending == 0)
		resolve_finish(q); /* nothing could be sent: a failure, retried */
}

static void resolve_hosts_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct resolve_query *q = arg;

	q->pending--;
	if (q->in_hosts_call && result == 0) {
		for (struct evutil_addrinfo *ai = res; ai; ai = ai->ai_next) {
			if (ai->ai_family == AF_INET6 && q->n6 < RESOLVE_MAX_ADDRS &&
			    ai->ai_addrlen <= sizeof(q->a6[0])) {
				memset(&q->a6[q->n6], 0, sizeof(q->a6[0]));
				memcpy(&q->a6[q->n6++], ai->ai_addr, ai->ai_addrlen);
			} else if (ai->ai_family == AF_INET && q->n4 < RESOLVE_MAX_ADDRS &&
				   ai->ai_addrlen <= sizeof(q->a4[0])) {
				memset(&q->a4[q->n4], 0, sizeof(q->a4[0]));
				memcpy(&q->a4[q->n4++], ai->ai_addr, ai->ai_addrlen);
			}
		}
		q->from_hosts = q->n4 + q->n6 > 0;
	}
	if (res)
		evutil_freeaddrinfo(res);
	if (q->in_hosts_call)
		return; /* resolve_start goes on */
	/* The cancelled lookup of a name the hosts file does not have: on to the DNS. */
	if (!q->n)
		resolve_query_free(q);
	else
		resolve_dns(q, q->n->host);
}

static void resolve_start(struct resolve_name *n)
{
	struct resolve_query *q = calloc(1, sizeof(*q));
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;

	if (!q) {
		log_error("resolve %s: out of memory; trying again in %.0fs", n->host, n->min);
		resolve_schedule(n, n->min);
		return;
	}
	q->r = n->r;
	q->n = n;
	q->family = n->family;
	q->ttl = -1;
	q->err4 = q->err6 = -1;
	LIST_INSERT_HEAD(&n->r->queries, q, link);
	n->q = q;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = n->family == RESOLVE_IPV4 ? AF_INET : n->family == RESOLVE_IPV6 ? AF_INET6 : AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM; /* one entry per address */
	q->pending = 1;
	q->in_hosts_call = true;
	req = evdns_getaddrinfo(n->r->hosts, n->host, NULL, &hints, resolve_hosts_cb, q);
	q->in_hosts_call = false;
	if (req) {
		/* Not in the hosts file: that base has no servers, so the
		 * query waits; cancel it (its callback has not run, so it may
		 * be) and go on to the DNS when it calls back. */
		evdns_getaddrinfo_cancel(req);
		return;
	}
	if (q->from_hosts)
		resolve_finish(q);
	else
		resolve_dns(q, n->host);
}

static void resolve_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct resolve_name *n = arg;

	(void)fd;
	(void)what;
	if (!n->q)
		resolve_start(n);
}

struct resolve_name *resolve_watch(struct resolve *r, const char *host, enum resolve_family family,
				   double min, double max, resolve_cb cb, void *arg)
{
	struct resolve_name *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->r = r;
	n->host = strdup(host);
	n->timer = evtimer_new(r->base, resolve_timer_cb, n);
	if (!n->host || !n->timer) {
		free(n->host);
		if (n->timer)
			event_free(n->timer);
		free(n);
		return NULL;
	}
	n->family = family;
	n->min = min;
	n->max = max < min ? min : max;
	n->cb = cb;
	n->arg = arg;
	n->ttl = -1;
	snprintf(n->error, sizeof(n->error), "not resolved yet");
	LIST_INSERT_HEAD(&r->names, n, link);
	resolve_schedule(n, 0);
	return n;
}

void resolve_unwatch(struct resolve_name *n)
{
	if (!n)
		return;
	if (n->q)
		n->q->n = NULL; /* dropped when its answers come */
	LIST_REMOVE(n, link);
	event_free(n->timer);
	free(n->host);
	free(n);
}

size_t resolve_addrs(const struct resolve_name *n, struct sockaddr_storage *out, size_t max)
{
	for (size_t i = 0; i < n->naddrs && i < max; i++)
		out[i] = n->addrs[i];
	return n->naddrs;
}

const char *resolve_error(const struct resolve_name *n)
{
	return n->error;
}

double resolve_good_at(const struct resolve_name *n)
{
	return n->good_at;
}

double resolve_stale_since(const struct resolve_name *n)
{
	return n->stale_since;
}

double resolve_next_at(const struct resolve_name *n)
{
	return n->next_at;
}

long resolve_ttl(const struct resolve_name *n)
{
	return n->ttl;
}

int resolve_family_parse(const char *text)
{
	if (strcmp(text, "any") == 0)
		return RESOLVE_ANY;
	if (strcmp(text, "ipv4") == 0)
		return RESOLVE_IPV4;
	if (strcmp(text, "ipv6") == 0)
		return RESOLVE_IPV6;
	return -1;
}

const char *resolve_family_name(enum resolve_family f)
{
	return f == RESOLVE_IPV4 ? "ipv4" : f == RESOLVE_IPV6 ? "ipv6" : "any";
}
