#include "relay_tcp.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "listener.h"
#include "log.h"
#include "worker.h"

/* Side indexes: the client we accepted and the target we connected to. */
enum { SIDE_CLIENT = 0, SIDE_TARGET = 1 };

struct relay_tcp_conn {
	LIST_ENTRY(relay_tcp_conn) link;
	struct listener *rule;
	uint64_t id;
	struct bufferevent *bev[2];
	struct event *timer; /* connect timeout, then idle timeout */
	struct sockaddr_storage client_addr;
	double started, last_active;
	uint64_t bytes[2]; /* bytes read from each side, i.e. sent to the other */
	bool connected;
	bool eof[2];    /* the side sent FIN: nothing more to read from it */
	bool shut[2];   /* we sent FIN to the side after flushing */
	bool paused[2]; /* reading the side stopped: its partner is full */
	int first_eof;  /* who closed first, for the log; -1 if nobody yet */
};

static const char *const side_name[2] = { "client", "target" };

static void relay_tcp_close(struct relay_tcp_conn *c, int level, const char *reason);

static int relay_tcp_side(const struct relay_tcp_conn *c, const struct bufferevent *bev)
{
	return bev == c->bev[SIDE_CLIENT] ? SIDE_CLIENT : SIDE_TARGET;
}

/* Ends the connection once both directions are flushed and shut down. */
static void relay_tcp_maybe_done(struct relay_tcp_conn *c)
{
	char why[32];

	if (c->eof[SIDE_CLIENT] && c->shut[SIDE_TARGET] && c->eof[SIDE_TARGET] &&
	    c->shut[SIDE_CLIENT]) {
		snprintf(why, sizeof(why), "%s closed", side_name[c->first_eof]);
		relay_tcp_close(c, LOG_LVL_INFO, why);
	}
}

/* Sends FIN to SIDE: everything its partner sent has been written. */
static void relay_tcp_shut(struct relay_tcp_conn *c, int side)
{
	shutdown(bufferevent_getfd(c->bev[side]), SHUT_WR);
	c->shut[side] = true;
}

static void relay_tcp_read_cb(struct bufferevent *bev, void *arg)
{
	struct relay_tcp_conn *c = arg;
	int side = relay_tcp_side(c, bev);
	struct bufferevent *dst = c->bev[!side];
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer *out = bufferevent_get_output(dst);
	size_t n = evbuffer_get_length(in);
	size_t limit = c->rule->cfg.set.buffer_size;

	if (n == 0)
		return;
	c->bytes[side] += n;
	if (side == SIDE_CLIENT)
		c->rule->stats.tcp_bytes_to_target += n;
	else
		c->rule->stats.tcp_bytes_to_client += n;
	c->last_active = clock_now();
	evbuffer_add_buffer(out, in);

	/* Back-pressure: stop reading until the partner drains to half. */
	if (evbuffer_get_length(out) >= limit) {
		bufferevent_disable(bev, EV_READ);
		c->paused[side] = true;
		bufferevent_setwatermark(dst, EV_WRITE, limit / 2, 0);
	}
}

/* Called when BEV's output fell to its low watermark. */
static void relay_tcp_write_cb(struct bufferevent *bev, void *arg)
{
	struct relay_tcp_conn *c = arg;
	int side = relay_tcp_side(c, bev);
	int src = !side;

	if (c->paused[src]) {
		c->paused[src] = false;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		if (!c->eof[src])
			bufferevent_enable(c->bev[src], EV_READ);
	}
	if (c->eof[src] && !c->shut[side] &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		relay_tcp_shut(c, side);
		relay_tcp_maybe_done(c);
	}
}

/* SIDE sent FIN: flush what it sent to its partner, then pass the FIN on. */
static void relay_tcp_eof(struct relay_tcp_conn *c, int side)
{
	int dst = !side;

	c->eof[side] = true;
	if (c->first_eof < 0)
		c->first_eof = side;
	relay_tcp_read_cb(c->bev[side], c);
	bufferevent_disable(c->bev[side], EV_READ);
	c->paused[side] = false;
	if (evbuffer_get_length(bufferevent_get_output(c->bev[dst])) == 0)
		relay_tcp_shut(c, dst);
	else
		bufferevent_setwatermark(c->bev[dst], EV_WRITE, 0, 0);
	relay_tcp_maybe_done(c);
}

static void relay_tcp_arm_idle(struct relay_tcp_conn *c, double after)
{
	struct timeval tv = clock_timeval(after);

	evtimer_add(c->timer, &tv);
}

static void relay_tcp_connect_failed(struct relay_tcp_conn *c, const char *why)
{
	char reason[256];

	c->rule->stats.tcp_connect_failed++;
	snprintf(reason, sizeof(reason), "connect failed: %s", why);
	relay_tcp_close(c, LOG_LVL_WARNING, reason);
}

static void relay_tcp_connected(struct relay_tcp_conn *c)
{
	evutil_socket_t fd = bufferevent_getfd(c->bev[SIDE_TARGET]);
	int one = 1;

	c->connected = true;
	c->last_active = clock_now();
	evtimer_del(c->timer);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	bufferevent_enable(c->bev[SIDE_CLIENT], EV_READ | EV_WRITE);
	bufferevent_enable(c->bev[SIDE_TARGET], EV_READ | EV_WRITE);
	if (c->rule->cfg.set.idle_timeout > 0)
		relay_tcp_arm_idle(c, c->rule->cfg.set.idle_timeout);
	log_debug("tcp %s: connection %llu connected to the target", c->rule->cfg.name,
		  (unsigned long long)c->id);
}

/* The socket error behind an error event (SO_ERROR first: errno may be stale). */
static int relay_tcp_error(struct bufferevent *bev)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	int err = 0;
	socklen_t len = sizeof(err);

	if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err)
		return err;
	err = EVUTIL_SOCKET_ERROR();
	return err ? err : ECONNREFUSED;
}

static void relay_tcp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct relay_tcp_conn *c = arg;
	int side = relay_tcp_side(c, bev);
	char reason[256];

	if (!c->connected && side == SIDE_TARGET) {
		if (what & BEV_EVENT_CONNECTED)
			relay_tcp_connected(c);
		else if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))
			relay_tcp_connect_failed(c, strerror(relay_tcp_error(bev)));
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		int err = relay_tcp_error(bev);
		struct linger lg = { 1, 0 };

		if (err == ECONNRESET) {
			/* Pass the reset on, so the other peer also knows it failed. */
			setsockopt(bufferevent_getfd(c->bev[!side]), SOL_SOCKET, SO_LINGER,
				   &lg, sizeof(lg));
			snprintf(reason, sizeof(reason), "%s reset the connection", side_name[side]);
		} else {
			snprintf(reason, sizeof(reason), "%s error: %s", side_name[side],
				 strerror(err));
		}
		relay_tcp_close(c, LOG_LVL_INFO, reason);
		return;
	}
	if (what & BEV_EVENT_EOF)
		relay_tcp_eof(c, side);
}

static void relay_tcp_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay_tcp_conn *c = arg;
	double idle, limit;
	char why[64];

	(void)fd;
	(void)what;
	if (!c->connected) {
		snprintf(why, sizeof(why), "timed out after %gs", c->rule->cfg.set.connect_timeout);
		relay_tcp_connect_failed(c, why);
		return;
	}
	/* Activity only stamps a time; the timer re-arms for what remains. */
	limit = c->rule->cfg.set.idle_timeout;
	idle = clock_now() - c->last_active;
	if (idle + 0.001 >= limit) {
		snprintf(why, sizeof(why), "idle for %gs", limit);
		relay_tcp_close(c, LOG_LVL_INFO, why);
		return;
	}
	relay_tcp_arm_idle(c, limit - idle);
}

static void relay_tcp_close(struct relay_tcp_conn *c, int level, const char *reason)
{
	struct listener *l = c->rule;
	char client[RULE_ADDR_STRLEN], target[RULE_ADDR_STRLEN];

	if (level <= LOG_LVL_WARNING || l->worker->log_connections)
		log_msg(level, "tcp %s: %s -> %s closed after %.3fs, %llu bytes to target, %llu bytes to client: %s",
			l->cfg.name,
			rule_format_addr((struct sockaddr *)&c->client_addr, client, sizeof(client)),
			rule_format_addr((struct sockaddr *)&l->cfg.target, target, sizeof(target)),
			clock_now() - c->started, (unsigned long long)c->bytes[SIDE_CLIENT],
			(unsigned long long)c->bytes[SIDE_TARGET], reason);
	LIST_REMOVE(c, link);
	for (int i = 0; i < 2; i++)
		if (c->bev[i])
			bufferevent_free(c->bev[i]);
	if (c->timer)
		event_free(c->timer);
	free(c);
	l->stats.tcp_active--;
	listener_tcp_conn_done(l);
}

void relay_tcp_accept(struct listener *l, evutil_socket_t fd,
		      const struct sockaddr *sa, int salen)
{
	struct event_base *base = l->worker->base;
	struct relay_tcp_conn *c = calloc(1, sizeof(*c));
	struct timeval tv = clock_timeval(l->cfg.set.connect_timeout);
	size_t io = l->cfg.set.buffer_size < 262144 ? l->cfg.set.buffer_size : 262144;
	int one = 1;

	if (!c) {
		log_error("tcp %s: out of memory; dropping a new connection", l->cfg.name);
		evutil_closesocket(fd);
		return;
	}
	c->rule = l;
	c->id = ++l->worker->next_conn_id;
	c->first_eof = -1;
	c->started = clock_now();
	memcpy(&c->client_addr, sa, (size_t)salen < sizeof(c->client_addr) ? (size_t)salen : sizeof(c->client_addr));
	LIST_INSERT_HEAD(&l->conns, c, link);
	l->stats.tcp_active++;
	l->stats.tcp_accepted++;
	listener_tcp_conn_added(l);

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->bev[SIDE_CLIENT] = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev[SIDE_CLIENT])
		evutil_closesocket(fd);
	c->bev[SIDE_TARGET] = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(base, relay_tcp_timer_cb, c);
	if (!c->bev[SIDE_CLIENT] || !c->bev[SIDE_TARGET] || !c->timer) {
		relay_tcp_close(c, LOG_LVL_ERROR, "out of memory");
		return;
	}
	for (int i = 0; i < 2; i++) {
		bufferevent_setcb(c->bev[i], relay_tcp_read_cb, relay_tcp_write_cb,
				  relay_tcp_event_cb, c);
		bufferevent_set_max_single_read(c->bev[i], io);
		bufferevent_set_max_single_write(c->bev[i], io);
	}
	/* Read nothing from the client until the target is there. */
	bufferevent_disable(c->bev[SIDE_CLIENT], EV_READ);
	evtimer_add(c->timer, &tv);
	if (bufferevent_socket_connect(c->bev[SIDE_TARGET], (struct sockaddr *)&l->cfg.target,
				       (int)l->cfg.target_len) < 0) {
		relay_tcp_connect_failed(c, strerror(errno ? errno : ECONNREFUSED));
		return;
	}
}

void relay_tcp_close_all(struct listener *l, const char *reason)
{
	while (!LIST_EMPTY(&l->conns))
		relay_tcp_close(LIST_FIRST(&l->conns), LOG_LVL_INFO, reason);
}
