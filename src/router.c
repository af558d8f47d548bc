/*
 * Port mappings on the home router (router.h): one thread that talks PCP,
 * NAT-PMP and UPnP-IGD to the default gateway.
 *
 * The main thread adds entries and marks them unwanted; only the thread
 * frees them, so a pointer it holds stays good while it works unlocked.
 * Everything an entry's view shows is written under the mutex.
 */
#define ENABLE_STRNATPMPERR 1
#include "router.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <natpmp.h>
#include <miniupnpc/miniupnpc.h>
#include <miniupnpc/upnpcommands.h>
#include <miniupnpc/upnperrors.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define PCP_PORT 5351
#define PCP_VERSION 2
#define PCP_OP_MAP 1
#define PCP_REQUEST_LEN 60
#define PCP_RESPONSE_MIN 60
/* A request is sent again after 250, 500 and 1000 ms: an answer within 1.75 s. */
#define ROUTER_UDP_TRIES 3
#define ROUTER_UDP_FIRST_MS 250
/* SSDP: how long to listen for routers. */
#define ROUTER_SSDP_MS 2000
/* After a failure: 2 s, doubling up to two minutes. */
#define ROUTER_RETRY_MIN 2.0
#define ROUTER_RETRY_MAX 120.0

/* What a request gives back. */
struct router_result {
	unsigned port;        /* the external port given */
	unsigned lifetime;    /* seconds; 0: no expiry (a permanent UPnP mapping) */
	struct in_addr external; /* INADDR_ANY: not said */
	char error[200];
};

/* One port of one protocol of one rule. */
struct rmap {
	struct router_want w;
	int proto;            /* IPPROTO_TCP or IPPROTO_UDP */
	unsigned iport, eport; /* asked */
	bool wanted;          /* false: delete it, then forget it */
	bool mapped;
	bool tried;           /* a request was made for it */
	unsigned method;      /* what mapped it (ROUTER_PCP, _NATPMP, _UPNP) */
	unsigned got_port;
	struct in_addr client; /* the internal address it maps to */
	struct in_addr mapped_client; /* the one it was last mapped to */
	double next;          /* monotonic: when to act */
	double until;         /* monotonic: when the lease ends; 0 none */
	time_t expires;       /* the same, wall time */
	double backoff;
	uint64_t renewals, failures;
	char error[200];
	uint8_t nonce[12];    /* PCP: the same for renewals and the deletion */
};

struct router {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	pthread_t thread;
	bool started, stop;
	bool done;      /* the thread is past its last use of the router's sockets */
	bool busy_mapped; /* the thread is deleting a mapping, out of the table */
	double stop_by; /* monotonic: no new deletion after it (set by router_free) */
	double probe_at; /* monotonic: the last look at why mapping fails */
	struct rmap **m;
	size_t n, cap;

	/* The thread's own; external and warning also read under mu. */
	natpmp_t np;
	bool np_open;
	struct in_addr gw, local;
	struct UPNPUrls urls;
	struct IGDdatas igd;
	bool have_igd;
	char igd_lan[64];
	unsigned auto_method; /* what worked for "auto"; ROUTER_OFF before */
	bool epoch_known[2];  /* 0 PCP, 1 NAT-PMP */
	uint32_t epoch[2];
	double epoch_at[2];
	char external[INET_ADDRSTRLEN];
	char warning[256];
};

static const char *const router_names[] = { "off", "auto", "upnp", "natpmp", "pcp" };

int router_method_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(router_names) / sizeof(router_names[0]); i++)
		if (strcmp(name, router_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *router_method_name(unsigned method)
{
	return method < sizeof(router_names) / sizeof(router_names[0]) ? router_names[method] : "?";
}

static const char *router_method_label(unsigned method)
{
	return method == ROUTER_PCP ? "PCP" : method == ROUTER_NATPMP ? "NAT-PMP" : "UPnP-IGD";
}

bool router_want_of(const struct rule_config *r, struct router_want *w)
{
	memset(w, 0, sizeof(*w));
	if (r->set.router == ROUTER_OFF)
		return false;
	snprintf(w->rule, sizeof(w->rule), "%s", r->name);
	w->method = r->set.router;
	w->tcp = (r->proto & RULE_PROTO_TCP) != 0;
	w->udp = (r->proto & RULE_PROTO_UDP) != 0;
	if (r->listen.ss_family == AF_INET)
		w->internal = ((const struct sockaddr_in *)&r->listen)->sin_addr;
	w->port = rule_port_first(r);
	w->port_last = rule_port_last(r);
	w->external = r->external_port ? r->external_port : w->port;
	w->lease = r->set.router_lease;
	return true;
}

const char *router_private_reason(struct in_addr addr)
{
	uint32_t a = ntohl(addr.s_addr);

	if (a == 0)
		return "no external address (is the router connected?)";
	if ((a >> 24) == 10 || (a >> 20) == (172u << 4 | 1) || (a >> 16) == (192u << 8 | 168))
		return "a private address (RFC 1918)";
	if ((a >> 22) == (100u << 2 | 1)) /* 100.64.0.0/10 */
		return "in 100.64.0.0/10, the carrier-grade NAT range (RFC 6598)";
	if ((a >> 16) == (169u << 8 | 254))
		return "a link-local address";
	return NULL;
}

/* ---- the thread's side ---- */

static void rmap_fmt(const struct rmap *m, char *buf, size_t len)
{
	snprintf(buf, len, "rule %s: %s port %u", m->w.rule, m->proto == IPPROTO_TCP ? "tcp" : "udp",
		 m->eport);
}

static void router_upnp_forget(struct router *r);

/* The gateway and this host's address towards it: libnatpmp finds the
 * default route's gateway (and opens its socket to it). */
static int router_gateway(struct router *r, char *err, size_t errlen)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(PCP_PORT) };
	socklen_t len = sizeof(sin);
	int rc, fd;

	if (r->np_open)
		return 0;
	r->np.s = -1;
	rc = initnatpmp(&r->np, 0, 0);
	if (rc < 0) {
		/* libnatpmp opens its socket first and leaves it open when it
		 * finds no gateway or cannot connect. */
		if (r->np.s >= 0)
			close(r->np.s);
		r->np.s = -1;
		snprintf(err, errlen, "cannot find the router: %s",
			 rc == NATPMP_ERR_CANNOTGETGATEWAY ? "no IPv4 default route" : strnatpmperr(rc));
		return -1;
	}
	r->np_open = true;
	/* Another gateway: the UPnP device found is not its. */
	if (r->gw.s_addr != r->np.gateway)
		router_upnp_forget(r);
	r->gw.s_addr = r->np.gateway;
	sin.sin_addr = r->gw;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		snprintf(err, errlen, "cannot find this host's address towards the router: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		closenatpmp(&r->np);
		r->np_open = false;
		return -1;
	}
	close(fd);
	r->local = sin.sin_addr;
	return 0;
}

/* Forgets the gateway: the next request looks for it again (the route may have changed). */
static void router_gateway_forget(struct router *r)
{
	if (r->np_open)
		closenatpmp(&r->np);
	r->np_open = false;
}

/* The router's external address, as it said it: the warning if it cannot
 * be reached from the internet (logged when it changes). */
static void router_external(struct router *r, struct in_addr ext)
{
	char addr[INET_ADDRSTRLEN], warning[256] = "";
	const char *why = router_private_reason(ext);
	bool changed;

	inet_ntop(AF_INET, &ext, addr, sizeof(addr));
	if (why)
		snprintf(warning, sizeof(warning),
			 "the router's external address %s is %s: your router is behind another NAT (carrier-grade NAT): forwarding cannot reach you from the internet; use a VPN or a relay",
			 addr, why);
	pthread_mutex_lock(&r->mu);
	changed = strcmp(r->external, addr) != 0;
	snprintf(r->external, sizeof(r->external), "%s", addr);
	snprintf(r->warning, sizeof(r->warning), "%s", warning);
	pthread_mutex_unlock(&r->mu);
	if (changed && why)
		log_warning("router: %s", warning);
	else if (changed)
		log_info("router: external address %s", addr);
}

/* The router refused for want of a public address of its own (miniupnpd
 * does so when its WAN address is private or reserved): the warning, as
 * for an address it reports. */
static void router_no_public_address(struct router *r, const char *said)
{
	char warning[256];
	bool changed;

	snprintf(warning, sizeof(warning),
		 "the router has no public address (%s): your router is behind another NAT (carrier-grade NAT): forwarding cannot reach you from the internet; use a VPN or a relay",
		 said);
	pthread_mutex_lock(&r->mu);
	changed = strcmp(r->warning, warning) != 0;
	snprintf(r->warning, sizeof(r->warning), "%s", warning);
	r->external[0] = '\0';
	pthread_mutex_unlock(&r->mu);
	if (changed)
		log_warning("router: %s", warning);
}

/* PCP and NAT-PMP say when the router started (its epoch): an epoch out
 * of step with this host's clock means it restarted and forgot its
 * mappings. True then. WHICH: 0 PCP (RFC 6887 8.5: back by more than a
 * second, or either clock ahead of the other by 2 s and 1/16), 1 NAT-PMP
 * (RFC 6886 3.6: less than 7/8 of the time that passed, 2 s of slack). */
static bool router_epoch(struct router *r, int which, uint32_t epoch)
{
	double now = clock_now();
	bool reset = false;

	if (r->epoch_known[which]) {
		double c = now - r->epoch_at[which], s = (double)epoch - (double)r->epoch[which];

		if (which == 0)
			reset = (double)epoch + 1 < (double)r->epoch[which] || c + 2 < s - s / 16 ||
				s + 2 < c - c / 16;
		else
			reset = (double)epoch < (double)r->epoch[which] + c * 7 / 8 - 2;
	}
	r->epoch_known[which] = true;
	r->epoch[which] = epoch;
	r->epoch_at[which] = now;
	return reset;
}

/* A datagram exchange with the gateway on FD (connected): sends REQ and
 * waits for an answer that ACCEPT takes, sending again after 250, 500 and
 * 1000 ms. Returns the answer's length, 0 on no answer, -1 on an error. */
static ssize_t router_exchange(int fd, const uint8_t *req, size_t len, uint8_t *resp, size_t cap,
			       bool (*accept)(const uint8_t *resp, size_t n, const uint8_t *req),
			       char *err, size_t errlen)
{
	int wait = ROUTER_UDP_FIRST_MS;

	for (int t = 0; t < ROUTER_UDP_TRIES; t++, wait *= 2) {
		double end = clock_now() + wait / 1000.0;

		if (send(fd, req, len, 0) < 0) {
			snprintf(err, errlen, "cannot send to the router: %s", strerror(errno));
			return -1;
		}
		for (;;) {
			struct pollfd pf = { .fd = fd, .events = POLLIN };
			int left = (int)((end - clock_now()) * 1000);
			ssize_t n;

			if (left <= 0 || poll(&pf, 1, left) <= 0)
				break;
			n = recv(fd, resp, cap, 0);
			if (n < 0 && errno == ECONNREFUSED) {
				snprintf(err, errlen, "the router refused (nothing listens on its port %d)", PCP_PORT);
				return 0;
			}
			if (n < 0) {
				snprintf(err, errlen, "cannot read the router's answer: %s", strerror(errno));
				return -1;
			}
			if (accept(resp, (size_t)n, req))
				return n;
		}
	}
	snprintf(err, errlen, "no answer from the router");
	return 0;
}

static bool pcp_accept(const uint8_t *resp, size_t n, const uint8_t *req)
{
	/* A NAT-PMP-only router answers version 0 "unsupported version". */
	if (n >= 4 && resp[0] == 0)
		return true;
	return n >= PCP_RESPONSE_MIN && resp[0] == PCP_VERSION && resp[1] == (0x80 | PCP_OP_MAP) &&
	       memcmp(resp + 24, req + 24, 12) == 0;
}

static const char *pcp_result_name(unsigned code)
{
	static const char *const names[] = {
		"success", "unsupported version", "not authorized", "malformed request",
		"unsupported opcode", "unsupported option", "malformed option", "network failure",
		"no resources", "unsupported protocol", "user exceeded quota",
		"cannot provide the external port", "address mismatch", "excessive remote peers",
	};

	return code < sizeof(names) / sizeof(names[0]) ? names[code] : "unknown result";
}

/* PCP MAP (RFC 6887 11.1) for M with LIFETIME (0 deletes), from M's client address. */
static int router_pcp(struct router *r, struct rmap *m, unsigned lifetime, struct router_result *res)
{
	struct sockaddr_in gw = { .sin_family = AF_INET, .sin_port = htons(PCP_PORT), .sin_addr = r->gw };
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_addr = m->client };
	uint8_t req[PCP_REQUEST_LEN] = { 0 }, resp[1100];
	uint32_t v;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof(me)) < 0 ||
	    connect(fd, (struct sockaddr *)&gw, sizeof(gw)) < 0) {
		snprintf(res->error, sizeof(res->error), "cannot open a socket to the router: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	req[0] = PCP_VERSION;
	req[1] = PCP_OP_MAP;
	v = htonl(lifetime);
	memcpy(req + 4, &v, 4);
	/* The client's address, IPv4-mapped. */
	req[18] = req[19] = 0xff;
	memcpy(req + 20, &m->client, 4);
	memcpy(req + 24, m->nonce, 12);
	req[36] = m->proto == IPPROTO_TCP ? 6 : 17;
	req[40] = (uint8_t)(m->iport >> 8);
	req[41] = (uint8_t)m->iport;
	req[42] = (uint8_t)(m->eport >> 8);
	req[43] = (uint8_t)m->eport;
	/* Suggested external address: none (::ffff:0.0.0.0). */
	req[54] = req[55] = 0xff;
	n = router_exchange(fd, req, sizeof(req), resp, sizeof(resp), pcp_accept, res->error,
			    sizeof(res->error));
	close(fd);
	if (n <= 0)
		return -1;
	if (resp[0] != PCP_VERSION || resp[3] == 1) {
		snprintf(res->error, sizeof(res->error), "the router does not speak PCP");
		return -1;
	}
	memcpy(&v, resp + 8, 4);
	if (router_epoch(r, 0, ntohl(v)) && lifetime) {
		char what[96];

		rmap_fmt(m, what, sizeof(what));
		log_warning("router: %s: the router restarted (its PCP epoch went back): mapping every port again", what);
		/* This one is made by this request; the others are made again. */
		pthread_mutex_lock(&r->mu);
		for (size_t i = 0; i < r->n; i++)
			if (r->m[i] != m && r->m[i]->mapped && r->m[i]->method == ROUTER_PCP)
				r->m[i]->next = 0;
		pthread_mutex_unlock(&r->mu);
	}
	if (resp[3] != 0) {
		snprintf(res->error, sizeof(res->error), "the router said: %s (PCP result %u)",
			 pcp_result_name(resp[3]), resp[3]);
		return -1;
	}
	memcpy(&v, resp + 4, 4);
	res->lifetime = ntohl(v);
	res->port = (unsigned)resp[42] << 8 | resp[43];
	memcpy(&res->external, resp + 56, 4);
	return 0;
}

/* Drops what waits on libnatpmp's socket: a late or repeated answer to an
 * earlier request (libnatpmp sends again after 250 ms, and matches an
 * answer to nothing) must not pass for the next one's. */
static void router_natpmp_drain(struct router *r)
{
	uint8_t buf[64];

	/* An error a refused datagram left is read (and so cleared) too. */
	for (int k = 0; k < 256; k++)
		if (recv(r->np.s, buf, sizeof(buf), MSG_DONTWAIT) < 0 && errno != ECONNREFUSED)
			break;
}

/* Waits for libnatpmp's answer to the request it sent, of TYPE (a
 * NATPMP_RESPTYPE_) and, for a mapping, for private port PORT, within
 * about 2 s. libnatpmp (20150609) takes any answer for the one it waits
 * for: one of another type or port (late, or to a request it sent again
 * after 250 ms) is skipped, and the request is waited for still. */
static int router_natpmp_wait(struct router *r, natpmpresp_t *resp, unsigned type, unsigned port)
{
	double end = clock_now() + 2.0;
	int rc;

	do {
		struct timeval tv;
		struct pollfd pf = { .fd = r->np.s, .events = POLLIN };
		int ms;

		if (getnatpmprequesttimeout(&r->np, &tv) < 0)
			tv = (struct timeval){ 0, 250000 };
		ms = (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
		if (ms > (int)((end - clock_now()) * 1000))
			ms = (int)((end - clock_now()) * 1000);
		if (ms > 0)
			poll(&pf, 1, ms);
		rc = readnatpmpresponseorretry(&r->np, resp);
		if (rc >= 0 && (resp->type != type ||
				(type != NATPMP_RESPTYPE_PUBLICADDRESS && resp->pnu.newportmapping.privateport != port))) {
			r->np.has_pending_request = 1;
			rc = NATPMP_TRYAGAIN;
		}
	} while (rc == NATPMP_TRYAGAIN && clock_now() < end);
	return rc;
}

static void router_natpmp_error(int rc, struct router_result *res)
{
	snprintf(res->error, sizeof(res->error), "%s",
		 rc == NATPMP_TRYAGAIN ? "no answer from the router" : strnatpmperr(rc));
}

/* NAT-PMP (RFC 6886) for M with LIFETIME (0 deletes); the mapping goes to
 * the address the request comes from. */
static int router_natpmp(struct router *r, struct rmap *m, unsigned lifetime, struct router_result *res)
{
	natpmpresp_t resp;
	int rc;

	if (m->client.s_addr != r->local.s_addr) {
		char a[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &m->client, a, sizeof(a));
		snprintf(res->error, sizeof(res->error),
			 "NAT-PMP maps to the address a request comes from, not %s: use PCP or UPnP for it", a);
		return -1;
	}
	router_natpmp_drain(r);
	/* A deletion's external port is 0 (RFC 6886 3.4). */
	rc = sendnewportmappingrequest(&r->np, m->proto == IPPROTO_TCP ? NATPMP_PROTOCOL_TCP : NATPMP_PROTOCOL_UDP,
				       (uint16_t)m->iport, lifetime ? (uint16_t)m->eport : 0, lifetime);
	if (rc < 0) {
		router_natpmp_error(rc, res);
		return -1;
	}
	rc = router_natpmp_wait(r, &resp,
				m->proto == IPPROTO_TCP ? NATPMP_RESPTYPE_TCPPORTMAPPING : NATPMP_RESPTYPE_UDPPORTMAPPING,
				m->iport);
	if (rc < 0) {
		router_natpmp_error(rc, res);
		return -1;
	}
	if (router_epoch(r, 1, resp.epoch) && lifetime) {
		char what[96];

		rmap_fmt(m, what, sizeof(what));
		log_warning("router: %s: the router restarted (its NAT-PMP epoch went back): mapping every port again", what);
		pthread_mutex_lock(&r->mu);
		for (size_t i = 0; i < r->n; i++)
			if (r->m[i] != m && r->m[i]->mapped && r->m[i]->method == ROUTER_NATPMP)
				r->m[i]->next = 0;
		pthread_mutex_unlock(&r->mu);
	}
	res->port = resp.pnu.newportmapping.mappedpublicport;
	res->lifetime = resp.pnu.newportmapping.lifetime;
	if (!lifetime)
		return 0;
	/* The external address is a request of its own. */
	router_natpmp_drain(r);
	if (sendpublicaddressrequest(&r->np) >= 0 &&
	    router_natpmp_wait(r, &resp, NATPMP_RESPTYPE_PUBLICADDRESS, 0) == 0)
		res->external = resp.pnu.publicaddress.addr;
	return 0;
}

static void router_upnp_forget(struct router *r)
{
	if (r->have_igd)
		FreeUPNPUrls(&r->urls);
	r->have_igd = false;
}

/* Keeps of DEVS (an SSDP answer) the devices the gateway describes: any
 * host of the LAN can answer a search, and none but the router may take
 * the mappings (or be asked for its description). */
static struct UPNPDev *router_upnp_gateway_only(struct router *r, struct UPNPDev *devs)
{
	struct UPNPDev *keep = NULL, **tail = &keep;
	char prefix[32];
	size_t len;

	inet_ntop(AF_INET, &r->gw, prefix + 7, sizeof(prefix) - 7);
	memcpy(prefix, "http://", 7);
	len = strlen(prefix);
	while (devs) {
		struct UPNPDev *d = devs;

		devs = d->pNext;
		d->pNext = NULL;
		if (d->descURL && strncmp(d->descURL, prefix, len) == 0 &&
		    (d->descURL[len] == ':' || d->descURL[len] == '/')) {
			*tail = d;
			tail = &d->pNext;
		} else {
			log_debug("router: a UPnP answer from %s, not the gateway: ignored",
				  d->descURL ? d->descURL : "?");
			freeUPNPDevlist(d);
		}
	}
	return keep;
}

/* Finds the UPnP router (SSDP) unless known. */
static int router_upnp_find(struct router *r, struct router_result *res)
{
	struct UPNPDev *devs;
	int err = 0, rc;

	if (r->have_igd)
		return 0;
	devs = upnpDiscover(ROUTER_SSDP_MS, NULL, NULL, 0, 0, 2, &err);
	devs = router_upnp_gateway_only(r, devs);
	if (!devs) {
		snprintf(res->error, sizeof(res->error), "the router (the default gateway) did not answer the UPnP search (SSDP)");
		return -1;
	}
	memset(&r->urls, 0, sizeof(r->urls));
	memset(&r->igd, 0, sizeof(r->igd));
	rc = UPNP_GetValidIGD(devs, &r->urls, &r->igd, r->igd_lan, sizeof(r->igd_lan));
	freeUPNPDevlist(devs);
	if (rc != 1 && rc != 2) {
		if (rc != 0)
			FreeUPNPUrls(&r->urls);
		snprintf(res->error, sizeof(res->error), "no UPnP Internet Gateway Device answered");
		return -1;
	}
	if (rc == 2)
		log_warning("router: the UPnP router says it is not connected to the internet");
	r->have_igd = true;
	return 0;
}

static void router_upnp_error(struct router *r, const char *what, int rc, struct router_result *res)
{
	const char *s = strupnperror(rc);

	snprintf(res->error, sizeof(res->error), "UPnP %s: %s (%d)", what, s ? s : "error", rc);
	/* Not an answer at all: look for the router again next time. */
	if (rc < 0)
		router_upnp_forget(r);
}

/* UPnP-IGD AddPortMapping (or DeletePortMapping with LIFETIME 0) for M. */
static int router_upnp(struct router *r, struct rmap *m, unsigned lifetime, struct router_result *res)
{
	char ext[8], in[8], client[INET_ADDRSTRLEN], lease[16], desc[RULE_NAME_MAX + 16];
	char got_client[64] = "", got_port[8] = "", got_desc[80] = "", got_en[8] = "", got_lease[16] = "";
	const char *proto = m->proto == IPPROTO_TCP ? "TCP" : "UDP";
	char extip[64] = "";
	struct in_addr got;
	int rc;

	if (router_upnp_find(r, res) < 0)
		return -1;
	snprintf(ext, sizeof(ext), "%u", m->eport);
	snprintf(in, sizeof(in), "%u", m->iport);
	inet_ntop(AF_INET, &m->client, client, sizeof(client));
	/* Is it there, and ours? A router that restarted forgot it, and may
	 * have given the port to another host since. */
	rc = UPNP_GetSpecificPortMappingEntry(r->urls.controlURL, r->igd.first.servicetype, ext, proto, NULL,
					      got_client, got_port, got_desc, got_en, got_lease);
	if (rc < 0) {
		router_upnp_error(r, "GetSpecificPortMappingEntry", rc, res);
		return -1;
	}
	if (rc == UPNPCOMMAND_SUCCESS && inet_pton(AF_INET, got_client, &got) == 1 &&
	    got.s_addr != m->client.s_addr) {
		/* Ours, to this host's address before it changed: made anew. */
		bool old = m->mapped && got.s_addr == m->mapped_client.s_addr;

		if (!old) {
			snprintf(res->error, sizeof(res->error), "the router maps external %s port %s to another host, %s",
				 proto, ext, got_client);
			/* Deleting: not ours to delete, and ours is gone. */
			return lifetime ? -1 : 1;
		}
		if (lifetime) {
			rc = UPNP_DeletePortMapping(r->urls.controlURL, r->igd.first.servicetype, ext, proto, NULL);
			if (rc != UPNPCOMMAND_SUCCESS && rc != 714) {
				router_upnp_error(r, "DeletePortMapping", rc, res);
				return -1;
			}
		}
	}
	if (!lifetime) {
		if (rc == 714)
			return 1;
		rc = UPNP_DeletePortMapping(r->urls.controlURL, r->igd.first.servicetype, ext, proto, NULL);
		if (rc != UPNPCOMMAND_SUCCESS && rc != 714) {
			router_upnp_error(r, "DeletePortMapping", rc, res);
			return -1;
		}
		return 0;
	}
	if (rc == 714 && m->mapped) {
		char what[96];

		rmap_fmt(m, what, sizeof(what));
		log_warning("router: %s: the router forgot the mapping (restarted?): mapping it again", what);
	}
	snprintf(lease, sizeof(lease), "%u", lifetime);
	/* A description the router shows: the rule's name. */
	snprintf(desc, sizeof(desc), "portfwd %s", m->w.rule);
	for (char *p = desc; *p; p++)
		if (*p == '<' || *p == '>' || *p == '&' || *p == '"' || *p == '\'')
			*p = '_';
	rc = UPNP_AddPortMapping(r->urls.controlURL, r->igd.first.servicetype, ext, in, client, desc, proto, NULL,
				 lease);
	if (rc == 725) { /* OnlyPermanentLeasesSupported */
		rc = UPNP_AddPortMapping(r->urls.controlURL, r->igd.first.servicetype, ext, in, client, desc, proto,
					 NULL, "0");
		lifetime = 0;
	}
	if (rc != UPNPCOMMAND_SUCCESS) {
		router_upnp_error(r, "AddPortMapping", rc, res);
		return -1;
	}
	res->port = m->eport;
	res->lifetime = lifetime;
	if (UPNP_GetExternalIPAddress(r->urls.controlURL, r->igd.first.servicetype, extip) == UPNPCOMMAND_SUCCESS)
		inet_pton(AF_INET, extip, &res->external);
	return 0;
}

static int router_call(struct router *r, unsigned method, struct rmap *m, unsigned lifetime,
		       struct router_result *res)
{
	memset(res, 0, sizeof(*res));
	switch (method) {
	case ROUTER_PCP:
		return router_pcp(r, m, lifetime, res);
	case ROUTER_NATPMP:
		return router_natpmp(r, m, lifetime, res);
	default:
		return router_upnp(r, m, lifetime, res);
	}
}

/* Every protocol failed: asks the router for its external address, with
 * NAT-PMP and then UPnP, for the one reason no mapping can help. */
static void router_probe_external(struct router *r)
{
	natpmpresp_t resp;
	char extip[64] = "";
	struct in_addr a;
	struct router_result res;
	int rc;

	bool upnp = false;

	if (!r->np_open)
		return;
	router_natpmp_drain(r);
	if (sendpublicaddressrequest(&r->np) >= 0) {
		rc = router_natpmp_wait(r, &resp, NATPMP_RESPTYPE_PUBLICADDRESS, 0);
		if (rc == 0) {
			router_external(r, resp.pnu.publicaddress.addr);
			return;
		}
		if (rc == NATPMP_ERR_NETWORKFAILURE) {
			router_no_public_address(r, "NAT-PMP: network failure");
			return;
		}
	}
	/* UPnP's search takes seconds: only for a router asked with UPnP. */
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->n; i++)
		upnp |= r->m[i]->wanted && (r->m[i]->w.method == ROUTER_UPNP || r->m[i]->w.method == ROUTER_AUTO);
	pthread_mutex_unlock(&r->mu);
	if (!upnp)
		return;
	memset(&res, 0, sizeof(res));
	if (router_upnp_find(r, &res) < 0)
		return;
	rc = UPNP_GetExternalIPAddress(r->urls.controlURL, r->igd.first.servicetype, extip);
	if (rc == UPNPCOMMAND_SUCCESS && inet_pton(AF_INET, extip, &a) == 1)
		router_external(r, a);
	else if (!UPNPIGD_IsConnected(&r->urls, &r->igd))
		router_no_public_address(r, "UPnP: not connected");
}

static bool router_stopping(struct router *r)
{
	bool stop;

	pthread_mutex_lock(&r->mu);
	stop = r->stop;
	pthread_mutex_unlock(&r->mu);
	return stop;
}

/* Maps M (or renews it). Unlocked; M stays (only this thread frees it). */
static void router_map(struct router *r, struct rmap *m)
{
	static const unsigned order[] = { ROUTER_PCP, ROUTER_NATPMP, ROUTER_UPNP };
	struct router_result res;
	char errs[600] = "", what[96];
	unsigned used = ROUTER_OFF;
	double now;
	bool was = m->mapped;
	int rc = -1;

	if (router_gateway(r, res.error, sizeof(res.error)) < 0) {
		snprintf(errs, sizeof(errs), "%s", res.error);
		goto failed;
	}
	pthread_mutex_lock(&r->mu);
	m->client = m->w.internal.s_addr ? m->w.internal : r->local;
	pthread_mutex_unlock(&r->mu);
	if (m->mapped || m->w.method != ROUTER_AUTO) {
		used = m->mapped ? m->method : m->w.method;
		rc = router_call(r, used, m, m->w.lease, &res);
		if (rc < 0)
			snprintf(errs, sizeof(errs), "%s", res.error);
	} else {
		/* auto: what worked before first, then PCP, NAT-PMP, UPnP-IGD. */
		for (int k = -1; k < 3 && rc < 0 && !router_stopping(r); k++) {
			unsigned meth = k < 0 ? r->auto_method : order[k];
			size_t l = strlen(errs);

			if (meth == ROUTER_OFF || (k >= 0 && meth == r->auto_method))
				continue;
			used = meth;
			rc = router_call(r, meth, m, m->w.lease, &res);
			if (rc < 0)
				snprintf(errs + l, sizeof(errs) - l, "%s%s: %s", l ? "; " : "",
					 router_method_label(meth), res.error);
		}
		if (rc == 0)
			r->auto_method = used;
	}
	if (rc == 0) {
		if (res.external.s_addr)
			router_external(r, res.external);
		now = clock_now();
		pthread_mutex_lock(&r->mu);
		if (m->mapped)
			m->renewals++;
		m->mapped = true;
		m->method = used;
		m->mapped_client = m->client;
		m->got_port = res.port ? res.port : m->eport;
		m->until = res.lifetime ? now + res.lifetime : 0;
		m->expires = res.lifetime ? time(NULL) + (time_t)res.lifetime : 0;
		m->next = now + fmax(1.0, fmin(res.lifetime ? res.lifetime / 2.0 : ROUTER_CHECK_SECONDS,
					       ROUTER_CHECK_SECONDS));
		m->backoff = 0;
		m->error[0] = '\0';
		pthread_mutex_unlock(&r->mu);
		if (!was) {
			char ext[INET_ADDRSTRLEN];

			pthread_mutex_lock(&r->mu);
			snprintf(ext, sizeof(ext), "%s", r->external[0] ? r->external : "?");
			pthread_mutex_unlock(&r->mu);
			rmap_fmt(m, what, sizeof(what));
			if (res.port && res.port != m->eport)
				log_warning("router: %s: the router gave external port %u instead (%s, lease %u s)", what,
					    res.port, router_method_label(used), res.lifetime);
			else
				log_info("router: %s mapped by %s: %s:%u -> this host's port %u, lease %u s", what,
					 router_method_label(used), ext, m->got_port, m->iport, res.lifetime);
		}
		return;
	}
failed:
	/* Why (at most once a minute, not when stopping): the router may have
	 * no public address at all. */
	if (clock_now() >= r->probe_at + ROUTER_CHECK_SECONDS && !router_stopping(r)) {
		r->probe_at = clock_now();
		router_probe_external(r);
	}
	/* Another path (a new gateway, a router found again) next time. */
	router_gateway_forget(r);
	now = clock_now();
	pthread_mutex_lock(&r->mu);
	m->failures++;
	m->backoff = m->backoff <= 0 ? ROUTER_RETRY_MIN : fmin(m->backoff * 2, ROUTER_RETRY_MAX);
	m->next = now + m->backoff;
	if (m->mapped && m->until && now >= m->until)
		m->mapped = false;
	snprintf(m->error, sizeof(m->error), "%s", errs);
	pthread_mutex_unlock(&r->mu);
	rmap_fmt(m, what, sizeof(what));
	/* The first failure and then every eighth: a router that is away is not a flood. */
	if (m->failures == 1 || m->failures % 8 == 0)
		log_warning("router: %s: cannot map it%s: %s (again in %.0f s)", what,
			    m->tried ? " again" : "", errs, m->backoff);
	m->tried = true;
}

/* Deletes M's mapping on the router. Unlocked. */
static void router_unmap(struct router *r, struct rmap *m)
{
	struct router_result res;
	char what[96];
	int rc = -1;

	rmap_fmt(m, what, sizeof(what));
	if (router_gateway(r, res.error, sizeof(res.error)) < 0 || (rc = router_call(r, m->method, m, 0, &res)) < 0) {
		log_warning("router: %s: cannot delete the mapping (%s); the router drops it when its lease ends",
			    what, res.error);
		return;
	}
	if (rc > 0)
		log_info("router: %s: nothing to delete: %s", what,
			 res.error[0] ? res.error : "the router has no such mapping any more");
	else
		log_info("router: %s: mapping deleted", what);
}

static double router_next(struct router *r)
{
	double next = INFINITY;

	for (size_t i = 0; i < r->n; i++)
		next = fmin(next, r->m[i]->wanted ? r->m[i]->next : 0);
	return next;
}

static void *router_thread(void *arg)
{
	struct router *r = arg;

	pthread_mutex_lock(&r->mu);
	for (;;) {
		struct rmap *job = NULL;
		double now = clock_now(), next;
		size_t i;

		/* Deletions first: a new wish may want the port an old one holds. */
		for (i = 0; i < r->n && !job; i++)
			if (!r->m[i]->wanted)
				job = r->m[i];
		if (job) {
			/* Out of the table before it is worked on: a view never sees it. */
			r->m[--i] = r->m[--r->n];
			if (job->mapped && (!r->stop || now < r->stop_by)) {
				r->busy_mapped = true;
				pthread_mutex_unlock(&r->mu);
				router_unmap(r, job);
				pthread_mutex_lock(&r->mu);
				r->busy_mapped = false;
			}
			free(job);
			continue;
		}
		if (r->stop)
			break;
		for (i = 0; i < r->n && !job; i++)
			if (r->m[i]->next <= now)
				job = r->m[i];
		if (job) {
			pthread_mutex_unlock(&r->mu);
			router_map(r, job);
			pthread_mutex_lock(&r->mu);
			continue;
		}
		next = router_next(r);
		if (isinf(next)) {
			pthread_cond_wait(&r->cond, &r->mu);
		} else {
			/* The condition variable waits on the monotonic clock too. */
			struct timespec ts;

			ts.tv_sec = (time_t)next;
			ts.tv_nsec = (long)((next - (double)ts.tv_sec) * 1e9);
			pthread_cond_timedwait(&r->cond, &r->mu, &ts);
		}
	}
	pthread_mutex_unlock(&r->mu);
	router_upnp_forget(r);
	router_gateway_forget(r);
	pthread_mutex_lock(&r->mu);
	r->done = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* ---- the main thread's side ---- */

struct router *router_new(void)
{
	struct router *r = calloc(1, sizeof(*r));
	pthread_condattr_t ca;

	if (!r)
		return NULL;

	pthread_mutex_init(&r->mu, NULL);
	r->probe_at = -ROUTER_CHECK_SECONDS;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	return r;
}

static bool rmap_same(const struct rmap *m, const struct router_want *w, int proto, unsigned iport,
		      unsigned eport)
{
	return m->wanted && m->proto == proto && m->iport == iport && m->eport == eport &&
	       strcmp(m->w.rule, w->rule) == 0 && m->w.method == w->method && m->w.lease == w->lease &&
	       m->w.internal.s_addr == w->internal.s_addr;
}

int router_want(struct router *r, const struct router_want *w, size_t n)
{
	bool *keep;
	size_t before;
	int rc = 0;

	pthread_mutex_lock(&r->mu);
	before = r->n;
	keep = calloc(before + 1, sizeof(*keep));
	if (!keep) {
		pthread_mutex_unlock(&r->mu);
		return -1;
	}
	for (size_t k = 0; k < n; k++)
		for (unsigned p = w[k].port; p <= w[k].port_last; p++)
			for (int t = 0; t < 2; t++) {
				int proto = t == 0 ? IPPROTO_TCP : IPPROTO_UDP;
				unsigned e = w[k].external + (p - w[k].port);
				size_t i;
				struct rmap *m;

				if (!(t == 0 ? w[k].tcp : w[k].udp))
					continue;
				for (i = 0; i < before; i++)
					if (!keep[i] && rmap_same(r->m[i], &w[k], proto, p, e))
						break;
				if (i < before) {
					keep[i] = true;
					continue;
				}
				if (r->n == r->cap) {
					size_t cap = r->cap ? r->cap * 2 : 16;
					struct rmap **nm = realloc(r->m, cap * sizeof(*nm));

					if (!nm) {
						rc = -1;
						continue;
					}
					r->m = nm;
					r->cap = cap;
				}
				m = calloc(1, sizeof(*m));
				if (!m) {
					rc = -1;
					continue;
				}
				m->w = w[k];
				m->proto = proto;
				m->iport = p;
				m->eport = e;
				m->wanted = true;
				if (getrandom(m->nonce, sizeof(m->nonce), 0) != (ssize_t)sizeof(m->nonce))
					for (size_t b = 0; b < sizeof(m->nonce); b++)
						m->nonce[b] = (uint8_t)(rand() ^ (int)(p * 31 + b));
				r->m[r->n++] = m;
			}
	for (size_t i = 0; i < before; i++)
		if (!keep[i])
			r->m[i]->wanted = false;
	free(keep);
	if (r->n && !r->started && !r->stop) {
		if (pthread_create(&r->thread, NULL, router_thread, r) == 0)
			r->started = true;
		else
			rc = -1;
	}
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->mu);
	if (rc < 0)
		log_error("router: out of resources: not every mapping is asked for");
	return rc;
}

bool router_view(struct router *r, const char *rule, struct router_view *v)
{
	bool any = false;

	memset(v, 0, sizeof(*v));
	if (!r)
		return false;
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->n; i++) {
		const struct rmap *m = r->m[i];

		if (!m->wanted || strcmp(m->w.rule, rule) != 0)
			continue;
		if (!any)
			v->method = v->wanted_method = m->w.method;
		any = true;
		v->total++;
		v->renewals += m->renewals;
		v->failures += m->failures;
		if (m->error[0])
			snprintf(v->error, sizeof(v->error), "%s", m->error);
		/* A lease that ended unrenewed: the router forgot it by now. */
		if (!m->mapped || (m->until && clock_now() >= m->until))
			continue;
		v->method = m->method;
		if (!v->mapped++ || m->got_port < v->external_port)
			v->external_port = m->got_port;
		if (m->got_port > v->external_last)
			v->external_last = m->got_port;
		inet_ntop(AF_INET, &m->client, v->internal_addr, sizeof(v->internal_addr));
		if (m->expires && (!v->expires || m->expires < v->expires))
			v->expires = m->expires;
	}
	if (any) {
		snprintf(v->external_addr, sizeof(v->external_addr), "%s", r->external);
		snprintf(v->warning, sizeof(v->warning), "%s", r->warning);
	}
	pthread_mutex_unlock(&r->mu);
	return any;
}

const char *router_view_state(const struct router_view *v)
{
	if (v->mapped == v->total)
		return "mapped";
	if (v->mapped)
		return "partly mapped";
	return v->error[0] ? "failed" : "mapping";
}

void router_free(struct router *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	r->stop_by = clock_now() + ROUTER_STOP_SECONDS;
	for (size_t i = 0; i < r->n; i++)
		r->m[i]->wanted = false;
	pthread_cond_broadcast(&r->cond);
	/* A request under way cannot be cut short (miniupnpc's calls wait on
	 * their own timeouts): after the deletions' time and one second more,
	 * the thread is left to the process's exit, and R with it. */
	while (r->started && !r->done) {
		double at = r->stop_by + 1;
		struct timespec ts = { .tv_sec = (time_t)at, .tv_nsec = (long)((at - (double)(time_t)at) * 1e9) };

		if (pthread_cond_timedwait(&r->cond, &r->mu, &ts) != 0 && !r->done) {
			size_t left = r->busy_mapped;

			for (size_t i = 0; i < r->n; i++)
				left += r->m[i]->mapped;
			pthread_mutex_unlock(&r->mu);
			pthread_detach(r->thread);
			log_warning("router: the router did not answer in time: %zu mapping%s stay%s on it until %s lease ends",
				    left, left == 1 ? "" : "s", left == 1 ? "s" : "", left == 1 ? "its" : "their");
			return;
		}
	}
	pthread_mutex_unlock(&r->mu);
	if (r->started)
		pthread_join(r->thread, NULL);
	for (size_t i = 0; i < r->n; i++)
		free(r->m[i]);
	free(r->m);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->mu);
	free(r);
}
