#include "http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <netinet/tcp.h>
#include <unistd.h>
#include <utlist.h>

#include "acceptpause.h"
#include "access.h"
#include "clock.h"
#include "commands.h"
#include "ctl_proto.h"
#include "daemon.h"
#include "http_page.h"
#include "log.h"
#include "metrics.h"
#include "portinfo.h"
#include "ratelog.h"
#include "rule.h"
#include "status.h"

/*
 * One accepted connection, from the moment evhttp asks for its bufferevent
 * (http_bev_cb) until evhttp closes it (http_conn_close_cb). In between,
 * until the connection is adopted (http_conn_adopt), this holds a
 * reference to the bufferevent, so that it is still there to look at even
 * if evhttp let the connection go first. A connection outlives its
 * endpoint when a reload closes it (h NULL then).
 */
struct http_conn {
	struct http *h;
	struct bufferevent *bev;
	struct evhttp_connection *evcon; /* set when adopted */
	struct event *timer; /* adoption at once, then each request's deadline */
	struct sockaddr_storage peer;
	bool refused; /* shut down, evhttp is closing it */
	struct http_conn *prev, *next;
};

struct http {
	struct daemon *d;
	struct evhttp *eh;
	struct evconnlistener *lev;
	struct acceptpause *pause; /* out of descriptors: accept again later */
	struct config_http cfg; /* what it serves (its own reference to the lists) */
	struct http_conn *conns;
	size_t nconns;
	bool paused; /* the listener is off: HTTP_MAX_CONNECTIONS are open */
	uint64_t requests, denied, busy, slow;
	struct ratelog ratelog;
};

/*
 * Ends an adopted connection. From a timer (NOW), outside evhttp's
 * callbacks, it is freed at once (C with it, by the close callback): a
 * connection whose reading is suspended (a line longer than the read
 * watermark, which evhttp's chunk parser waits on) would never see the end
 * of a shut-down stream. From a request callback, evhttp is answering
 * (403 and close); the socket is shut down so nothing more comes in.
 */
static void http_conn_refuse(struct http_conn *c, bool now)
{
	evutil_socket_t fd = bufferevent_getfd(c->bev);

	c->refused = true;
	if (now) {
		evhttp_connection_free(c->evcon);
		return;
	}
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
}

#define HTTP_STR_(x) #x
#define HTTP_STR(x) HTTP_STR_(x)

/* Logs a refused client, at most once a minute per address (ratelog.h). */
static void http_log_refused(struct http *h, const struct sockaddr *sa, const char *why)
{
	char client[RULE_CLIENT_STRLEN], held[128];
	struct ratelog_note note;
	const void *key = sa->sa_family == AF_INET
				  ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
				  : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;

	if (!ratelog_allow(&h->ratelog, key, sa->sa_family == AF_INET ? 4 : 16, clock_now(), &note))
		return;
	log_info("daemon.http: refused %s: %s%s", rule_format_client(sa, client, sizeof(client)), why,
		 ratelog_suffix(&note, held, sizeof(held)));
}

static bool http_same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

/* The connection is gone (evhttp's close callback, or never adopted). */
static void http_conn_gone(struct http_conn *c)
{
	struct http *h = c->h;

	event_free(c->timer);
	if (h) {
		DL_DELETE(h->conns, c);
		h->nconns--;
		if (h->paused && h->nconns < HTTP_MAX_CONNECTIONS) {
			h->paused = false;
			acceptpause_hold(h->pause, false);
		}
	}
	free(c);
}

static void http_conn_close_cb(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	http_conn_gone(arg);
}

/*
 * Takes the connection over from the accept: its evhttp connection (the
 * argument evhttp gives its bufferevent's callbacks: libevent 2.1 and 2.2
 * both pass the evhttp_connection), a close callback on it, and the
 * checks: the lists, and the per-source cap. Returns false when the
 * connection is refused or gone (C is freed then when NOW: from a timer,
 * see http_conn_refuse).
 */
static bool http_conn_adopt(struct http_conn *c, bool now)
{
	struct http *h = c->h;
	bufferevent_event_cb eventcb = NULL;
	void *arg = NULL;
	socklen_t len = sizeof(c->peer);
	size_t same = 0;

	bufferevent_getcb(c->bev, NULL, NULL, &eventcb, &arg);
	if (!eventcb || !arg || !h) {
		/* evhttp let it go already (bufferevent_free clears the
		 * callbacks), or the endpoint closed: ours is the last reference. */
		bufferevent_decref(c->bev);
		http_conn_gone(c);
		return false;
	}
	c->evcon = arg;
	evhttp_connection_set_closecb(c->evcon, http_conn_close_cb, c);
	bufferevent_decref(c->bev); /* evhttp's alone from now on */
	if (getpeername(bufferevent_getfd(c->bev), (struct sockaddr *)&c->peer, &len) < 0) {
		http_conn_refuse(c, now);
		return false;
	}
	if (access_policy_check(h->cfg.access, (const struct sockaddr *)&c->peer) != ACCESS_ALLOWED) {
		h->denied++;
		http_log_refused(h, (const struct sockaddr *)&c->peer,
				 "not on daemon.http's allow list, or on its deny list");
		http_conn_refuse(c, now);
		return false;
	}
	for (struct http_conn *o = h->conns; o; o = o->next)
		same += o != c && o->evcon && !o->refused && http_same_host(&o->peer, &c->peer);
	if (same >= HTTP_MAX_PER_SOURCE) {
		h->busy++;
		http_log_refused(h, (const struct sockaddr *)&c->peer,
				 "it has " HTTP_STR(HTTP_MAX_PER_SOURCE) " connections open already");
		http_conn_refuse(c, now);
		return false;
	}
	return true;
}

/*
 * Just after the accept (or at the first request, which may come first):
 * adoption. Then the deadline: a whole request within HTTP_REQUEST_SECONDS
 * of the accept and of each answer's end (http_conn_answered_cb sets it
 * again; none runs while an answer is written, which evhttp's write
 * timeout bounds), so a client that drips its requests, first or later,
 * keeps no place.
 */
static void http_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	struct timeval tv = { HTTP_REQUEST_SECONDS, 0 };

	(void)fd;
	(void)what;
	if (!c->evcon) {
		if (http_conn_adopt(c, true))
			evtimer_add(c->timer, &tv);
		return;
	}
	if (c->h)
		c->h->slow += !c->refused;
	http_conn_refuse(c, true);
}

/* An answer was written whole: the next request's deadline. */
static void http_conn_answered_cb(struct evhttp_request *req, void *arg)
{
	struct http_conn *c = arg;
	struct timeval tv = { HTTP_REQUEST_SECONDS, 0 };

	(void)req;
	evtimer_add(c->timer, &tv);
}

/*
 * evhttp's bufferevent for each accepted connection, made here so that
 * the connection is counted (and, once adopted, told when it closes). At
 * HTTP_MAX_CONNECTIONS the listener stops accepting (libevent's accept
 * loop looks after each connection). Returning NULL makes evhttp use one
 * of its own, unchecked: so when memory runs out here, the request's check
 * refuses the connection.
 */
static struct bufferevent *http_bev_cb(struct event_base *base, void *arg)
{
	struct http *h = arg;
	struct http_conn *c = calloc(1, sizeof(*c));
	struct timeval now = { 0, 0 };

	acceptpause_accepted(h->pause);
	if (!c)
		return NULL;
	c->timer = evtimer_new(base, http_conn_timer_cb, c);
	/* Not BEV_OPT_CLOSE_ON_FREE: evhttp closes the descriptor itself
	 * then. (One failure path of libevent 2.1, a bufferevent_setfd or
	 * enable that fails, closes it twice either way.) */
	c->bev = c->timer ? bufferevent_socket_new(base, -1, 0) : NULL;
	if (!c->bev || evtimer_add(c->timer, &now) < 0) {
		if (c->bev)
			bufferevent_free(c->bev);
		if (c->timer)
			event_free(c->timer);
		free(c);
		return NULL;
	}
	bufferevent_incref(c->bev);
	/* evhttp leaves reading on while it writes an answer, with no limit:
	 * a client that does not read a large answer and sends on would have
	 * it all buffered here. It never needs more than a request's headers. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, 2 * HTTP_MAX_HEADERS);
	c->h = h;
	DL_APPEND(h->conns, c);
	if (++h->nconns >= HTTP_MAX_CONNECTIONS && !h->paused) {
		h->paused = true;
		acceptpause_hold(h->pause, true);
		log_warning("daemon.http: %d connections open, the most it takes; accepting again when one closes",
			    HTTP_MAX_CONNECTIONS);
	}
	return c->bev;
}

/* The connection of REQ, adopted now if it was not yet (NULL: not known,
 * when memory ran out at its accept). */
static struct http_conn *http_conn_of(struct http *h, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;

	for (struct http_conn *c = h->conns; c; c = c->next) {
		if (c->evcon == evcon && evcon)
			return c;
		/* Its request came before the timer: adopt it now (refused,
		 * it is marked so, and counted). */
		if (!c->evcon && c->bev == bev && bev) {
			http_conn_adopt(c, false);
			return c;
		}
	}
	return NULL;
}

static void http_headers(struct evhttp_request *req, const char *type)
{
	struct evkeyvalq *hd = evhttp_request_get_output_headers(req);

	evhttp_add_header(hd, "Content-Type", type);
	evhttp_add_header(hd, "Cache-Control", "no-store");
	evhttp_add_header(hd, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(hd, "Referrer-Policy", "no-referrer");
	evhttp_add_header(hd, "X-Frame-Options", "DENY");
}

/*
 * Sends OUT as the answer. To HEAD, the headers of the answer to GET alone:
 * libevent 2.1 would send the body too.
 */
static void http_reply(struct evhttp_request *req, int code, const char *reason, const char *type,
		       struct evbuffer *out)
{
	http_headers(req, type);
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		char len[32];

		snprintf(len, sizeof(len), "%zu", evbuffer_get_length(out));
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", len);
		evbuffer_drain(out, evbuffer_get_length(out));
	}
	evhttp_send_reply(req, code, reason, out);
}

static void http_reply_text(struct evhttp_request *req, int code, const char *reason,
			    const char *text)
{
	struct evbuffer *out = evbuffer_new();

	if (!out) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add_printf(out, "%s\n", text);
	http_reply(req, code, reason, "text/plain; charset=utf-8", out);
	evbuffer_free(out);
}

/* /health: the control command's own words, 200 healthy, 503 not. */
static void http_health(struct http *h, struct evhttp_request *req, struct evbuffer *out)
{
	char err[COMMANDS_ERROR_MAX] = "", *argv[] = { (char *)"health", NULL };

	if (commands_run(h->d, CTL_CMD_HEALTH, 1, argv, false, NULL, 0, out, err, sizeof(err)) == 0) {
		http_reply(req, HTTP_OK, "OK", "text/plain; charset=utf-8", out);
		return;
	}
	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_add_printf(out, "%s\n", err);
	http_reply(req, 503, "Service Unavailable", "text/plain; charset=utf-8", out);
}

/* /: the page, its script and style allowed by a nonce of this answer's. */
static void http_page(struct http *h, struct evhttp_request *req, struct evbuffer *out)
{
	unsigned char rnd[16];
	char nonce[33], csp[512];
	json_t *doc;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		http_reply_text(req, HTTP_INTERNAL, "Internal Server Error", "no random bytes for the page's nonce");
		return;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(nonce + 2 * i, 3, "%02x", rnd[i]);
	doc = status_json(h->d);
	if (!doc) {
		http_reply_text(req, HTTP_INTERNAL, "Internal Server Error", "out of memory");
		return;
	}
	http_page_render(doc, nonce, out);
	json_decref(doc);
	snprintf(csp, sizeof(csp),
		 "default-src 'none'; script-src 'nonce-%s'; style-src 'nonce-%s'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
		 nonce, nonce);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Security-Policy", csp);
	http_reply(req, HTTP_OK, "OK", "text/html; charset=utf-8", out);
}

static void http_status_json(struct http *h, struct evhttp_request *req, struct evbuffer *out)
{
	json_t *doc = status_json(h->d);
	char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;

	json_decref(doc);
	if (!text) {
		http_reply_text(req, HTTP_INTERNAL, "Internal Server Error", "out of memory");
		return;
	}
	evbuffer_add_printf(out, "%s\n", text);
	free(text);
	http_reply(req, HTTP_OK, "OK", "application/json", out);
}

/*
 * The Host header (HOST; NULL without one, as HTTP/1.0 may) names the
 * endpoint by an address, "localhost" or a name of daemon.http.hosts,
 * with any port. A browser always sends it: a page that rebinds its own
 * name to this address cannot read the answers.
 */
static bool http_host_ok(const struct http *h, const char *host)
{
	char name[CONFIG_HTTP_HOST_MAX + 2];
	const char *colon;
	struct in6_addr a6;
	size_t len;

	if (!host)
		return true;
	if (host[0] == '[') {
		const char *end = strchr(host, ']');

		len = end ? (size_t)(end - host - 1) : 0;
		if (!end || len >= sizeof(name) || (end[1] && end[1] != ':'))
			return false;
		memcpy(name, host + 1, len);
		name[len] = '\0';
		return inet_pton(AF_INET6, name, &a6) == 1;
	}
	colon = strchr(host, ':');
	len = colon ? (size_t)(colon - host) : strlen(host);
	if (len == 0 || len >= sizeof(name))
		return false;
	memcpy(name, host, len);
	name[len] = '\0';
	if (len > 1 && name[len - 1] == '.')
		name[--len] = '\0';
	if (inet_pton(AF_INET, name, &a6) == 1 || strcasecmp(name, "localhost") == 0)
		return true;
	for (size_t i = 0; i < h->cfg.nhosts; i++)
		if (strcasecmp(name, h->cfg.hosts[i]) == 0)
			return true;
	return false;
}

/* Every request, GET or HEAD (evhttp answers other methods itself). */
static void http_request_cb(struct evhttp_request *req, void *arg)
{
	struct http *h = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	const struct sockaddr *peer = evcon ? evhttp_connection_get_addr(evcon) : NULL;
	struct http_conn *c = http_conn_of(h, req);
	struct evbuffer *out;

	/* Again here: a reload may have changed the lists since the accept,
	 * and a connection that memory ran out for was never checked. One
	 * refused at its adoption was counted then, and is closing. */
	if ((c && c->refused) || !peer || access_policy_check(h->cfg.access, peer) != ACCESS_ALLOWED) {
		if (!c || !c->refused) {
			h->denied++;
			if (peer)
				http_log_refused(h, peer, "not on daemon.http's allow list, or on its deny list");
		}
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		http_reply_text(req, 403, "Forbidden", "forbidden");
		return;
	}
	if (c) {
		evtimer_del(c->timer);
		evhttp_request_set_on_complete_cb(req, http_conn_answered_cb, c);
	}
	if (!http_host_ok(h, evhttp_find_header(evhttp_request_get_input_headers(req), "Host"))) {
		h->denied++;
		http_reply_text(req, 421, "Misdirected Request",
				"portfwd answers requests for its address, localhost, or a name of daemon.http.hosts: add the name you use there");
		return;
	}
	h->requests++;
	out = evbuffer_new();
	if (!out) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	if (!path || !path[0] || strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0)
		http_page(h, req, out);
	else if (strcmp(path, "/metrics") == 0) {
		metrics_text(h->d, out);
		http_reply(req, HTTP_OK, "OK", "text/plain; version=0.0.4; charset=utf-8", out);
	} else if (strcmp(path, "/status.json") == 0)
		http_status_json(h, req, out);
	else if (strcmp(path, "/health") == 0)
		http_health(h, req, out);
	else
		http_reply_text(req, HTTP_NOTFOUND, "Not Found",
				"not found: portfwd serves / (the status page), /status.json, /metrics and /health");
	evbuffer_free(out);
}

/* A listening socket on SA, or -1 with errno set. */
static int http_socket(const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, saved;

	if (fd < 0)
		return -1;
	/* TCP_NODELAY, which accepted sockets inherit: an answer's last segment
	 * waited for the client's delayed ACK, 40 ms an answer
	 * (scripts/bench-http: 46 requests a second, p50 44 ms, before). */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    (sa->sa_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, sa, len) < 0 || listen(fd, 64) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

struct http *http_open(struct daemon *d, const struct config_http *cfg, char *err, size_t errlen)
{
	const struct sockaddr *sa = (const struct sockaddr *)&cfg->listen;
	struct http *h = calloc(1, sizeof(*h));
	char addr[RULE_ADDR_STRLEN], why[384];
	int fd;

	rule_format_addr(sa, addr, sizeof(addr));
	if (!h) {
		snprintf(err, errlen, "daemon.http: out of memory");
		return NULL;
	}
	fd = http_socket(sa, cfg->listen_len);
	if (fd < 0) {
		int e = errno;

		portinfo_bind_error(e, SOCK_STREAM, sa, why, sizeof(why));
		snprintf(err, errlen, "daemon.http: cannot listen on %s: %s", addr, why);
		free(h);
		errno = e; /* for http_apply */
		return NULL;
	}
	h->d = d;
	h->cfg = *cfg;
	h->cfg.access = access_policy_ref(cfg->access);
	h->eh = evhttp_new(d->base);
	h->lev = evconnlistener_new(d->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (!h->eh || !h->lev || !evhttp_bind_listener(h->eh, h->lev)) {
		snprintf(err, errlen, "daemon.http: out of memory");
		if (h->lev)
			evconnlistener_free(h->lev);
		else
			close(fd);
		h->lev = NULL;
		http_close(h);
		return NULL;
	}
	if (!(h->pause = acceptpause_new(h->lev, "daemon.http"))) {
		snprintf(err, errlen, "daemon.http: out of memory");
		http_close(h);
		return NULL;
	}
	evhttp_set_allowed_methods(h->eh, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(h->eh, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(h->eh, 0);
	evhttp_set_timeout(h->eh, HTTP_TIMEOUT_SECONDS);
	evhttp_set_bevcb(h->eh, http_bev_cb, h);
	evhttp_set_gencb(h->eh, http_request_cb, h);
	log_info("daemon.http: serving /, /status.json, /metrics and /health on http://%s/%s", addr,
		 access_policy_has_allow(cfg->access) ? " (to its allow list)" : "");
	return h;
}

const struct config_http *http_config(const struct http *h)
{
	return h ? &h->cfg : NULL;
}

void http_close(struct http *h)
{
	if (!h)
		return;
	/* The connections' bufferevents are freed after this returns. */
	for (struct http_conn *c = h->conns; c; c = c->next)
		c->h = NULL;
	acceptpause_free(h->pause);
	if (h->eh)
		evhttp_free(h->eh); /* its listener too */
	else if (h->lev)
		evconnlistener_free(h->lev);
	access_policy_unref(h->cfg.access);
	free(h);
}

int http_apply(struct http **hp, struct daemon *d, const struct config_http *cfg, char *err,
	       size_t errlen)
{
	struct http *old = *hp, *h;

	if (!cfg->enabled) {
		if (old)
			log_info("daemon.http: removed; the endpoint is closed");
		http_close(old);
		*hp = NULL;
		return 0;
	}
	if (old && rule_addr_equal((const struct sockaddr *)&old->cfg.listen,
				   (const struct sockaddr *)&cfg->listen)) {
		/* The same socket; the lists as the file says now. Open
		 * connections are checked again at their next request. */
		access_policy_unref(old->cfg.access);
		old->cfg = *cfg;
		old->cfg.access = access_policy_ref(cfg->access);
		return 0;
	}
	h = http_open(d, cfg, err, errlen);
	if (!h && old && errno == EADDRINUSE &&
	    rule_addr_collide((const struct sockaddr *)&old->cfg.listen,
			      (const struct sockaddr *)&cfg->listen)) {
		/* The old socket is in the way of the new (the same port, one of
		 * them a wildcard): let it go, and take it back if the new fails. */
		struct config_http was = old->cfg;
		char again[256];

		was.access = access_policy_ref(old->cfg.access);
		http_close(old);
		old = NULL;
		h = http_open(d, cfg, err, errlen);
		if (!h && !(old = http_open(d, &was, again, sizeof(again))))
			log_error("%s; the endpoint is off until a reload", again);
		access_policy_unref(was.access);
	}
	if (!h) {
		/* Where it was, but as strict as the file says now. */
		if (old) {
			access_policy_unref(old->cfg.access);
			old->cfg.access = access_policy_ref(cfg->access);
			old->cfg.nhosts = cfg->nhosts;
			memcpy(old->cfg.hosts, cfg->hosts, sizeof(cfg->hosts));
		}
		*hp = old;
		return -1;
	}
	http_close(old);
	*hp = h;
	return 0;
}

json_t *http_json(const struct http *h)
{
	char addr[RULE_ADDR_STRLEN];
	json_t *o;

	if (!h)
		return json_null();
	o = json_pack("{s:s, s:I, s:I, s:I, s:I}", "listen",
		      rule_format_addr((const struct sockaddr *)&h->cfg.listen, addr, sizeof(addr)),
		      "connections", (json_int_t)h->nconns, "requests", (json_int_t)h->requests,
		      "denied", (json_int_t)h->denied, "busy", (json_int_t)h->busy);
	if (o)
		json_object_set_new(o, "slow", json_integer((json_int_t)h->slow));
	if (o)
		json_object_update_missing_new(o, status_access_json(h->cfg.access));
	return o;
}

void http_stats(const struct http *h, struct http_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!h)
		return;
	st->requests = h->requests;
	st->denied = h->denied;
	st->busy = h->busy;
	st->slow = h->slow;
	st->connections = h->nconns;
}
