#include "relay_tcp.h"

#include <errno.h>
#include <event2/buffer.h>
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

/*
 * The copy path. Each side has a read and a write event and each direction
 * an evbuffer that holds at most buffer_size bytes: a side is read only
 * while the bytes it sent are below that, so a slow receiver stops its
 * sender. Reads go straight into reserved buffer space (libevent 2.1's own
 * socket reads stop at 4 KiB a call), and what is read is written at once;
 * only what the receiver does not take waits for its write event.
 */

/* Side indexes: the client we accepted and the target we connected to. */
enum { SIDE_CLIENT = 0, SIDE_TARGET = 1 };

/* Most bytes moved by one read call. */
#define RELAY_TCP_CHUNK 65536

struct relay_tcp_conn {
	LIST_ENTRY(relay_tcp_conn) link;
	struct listener *rule;
	uint64_t id;
	int fd[2]; /* -1 when closed */
	struct event *rev[2], *wev[2];
	bool rev_on[2], wev_on[2];
	struct evbuffer *buf[2]; /* buf[s]: read from side s, not yet written to the other */
	struct event *timer;     /* connect timeout, then idle timeout */
	struct sockaddr_storage client_addr;
	double started, last_active;
	uint64_t bytes[2]; /* bytes read from each side */
	bool connected;
	bool eof[2];   /* the side sent FIN: nothing more to read from it */
	bool shut[2];  /* we sent FIN to the side, after everything for it */
	int first_eof; /* who closed first, for the log; -1 if nobody yet */
};

static const char *const side_name[2] = { "client", "target" };

static void relay_tcp_close(struct relay_tcp_conn *c, int level, const char *reason);

static void relay_tcp_want(struct event *ev, bool *on, bool want)
{
	if (want == *on)
		return;
	if (want)
		event_add(ev, NULL);
	else
		event_del(ev);
	*on = want;
}

/* Sets each socket's read and write interest from the connection's state. */
static void relay_tcp_update(struct relay_tcp_conn *c)
{
	size_t limit = c->rule->cfg.set.buffer_size;

	for (int s = 0; s < 2; s++) {
		bool r = c->connected && !c->eof[s] && evbuffer_get_length(c->buf[s]) < limit;
		bool w = c->connected ? !c->shut[s] && evbuffer_get_length(c->buf[!s]) > 0
				      : s == SIDE_TARGET;

		relay_tcp_want(c->rev[s], &c->rev_on[s], r);
		relay_tcp_want(c->wev[s], &c->wev_on[s], w);
	}
}

/* Ends the connection once both directions are flushed and shut down. */
static bool relay_tcp_maybe_done(struct relay_tcp_conn *c)
{
	char why[32];

	if (!(c->eof[SIDE_CLIENT] && c->shut[SIDE_TARGET] && c->eof[SIDE_TARGET] &&
	      c->shut[SIDE_CLIENT]))
		return false;
	snprintf(why, sizeof(why), "%s closed", side_name[c->first_eof]);
	relay_tcp_close(c, LOG_LVL_INFO, why);
	return true;
}

/* An error on side S ends the connection; a reset is passed on as a reset. */
static void relay_tcp_fail(struct relay_tcp_conn *c, int s, int err)
{
	char reason[160];

	if (err == ECONNRESET || err == EPIPE) {
		struct linger lg = { 1, 0 };

		setsockopt(c->fd[!s], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		snprintf(reason, sizeof(reason), "%s reset the connection", side_name[s]);
	} else {
		snprintf(reason, sizeof(reason), "%s error: %s", side_name[s], strerror(err));
	}
	relay_tcp_close(c, LOG_LVL_INFO, reason);
}

/*
 * Writes what is queued for side D. Sends FIN to D once its partner has
 * sent FIN and everything is written. Returns -1 if the connection ended.
 */
static int relay_tcp_flush(struct relay_tcp_conn *c, int d)
{
	struct evbuffer *b = c->buf[!d];

	if (evbuffer_get_length(b) > 0 && evbuffer_write(b, c->fd[d]) < 0 &&
	    errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		relay_tcp_fail(c, d, errno);
		return -1;
	}
	if (c->eof[!d] && !c->shut[d] && evbuffer_get_length(b) == 0) {
		shutdown(c->fd[d], SHUT_WR);
		c->shut[d] = true;
		if (relay_tcp_maybe_done(c))
			return -1;
	}
	return 0;
}

static void relay_tcp_read(struct relay_tcp_conn *c, int s)
{
	size_t room = c->rule->cfg.set.buffer_size - evbuffer_get_length(c->buf[s]);
	struct evbuffer_iovec vec;
	size_t want = room < RELAY_TCP_CHUNK ? room : RELAY_TCP_CHUNK;
	ssize_t n;

	/* One contiguous region: simpler to commit, and one read fills it. */
	if (evbuffer_reserve_space(c->buf[s], (ev_ssize_t)want, &vec, 1) != 1) {
		relay_tcp_close(c, LOG_LVL_ERROR, "out of memory");
		return;
	}
	n = read(c->fd[s], vec.iov_base, want);
	if (n < 0) {
		evbuffer_commit_space(c->buf[s], NULL, 0);
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			relay_tcp_fail(c, s, errno);
		return;
	}
	vec.iov_len = (size_t)n;
	evbuffer_commit_space(c->buf[s], &vec, n > 0);
	if (n == 0) {
		c->eof[s] = true;
		if (c->first_eof < 0)
			c->first_eof = s;
	} else {
		c->bytes[s] += (uint64_t)n;
		if (s == SIDE_CLIENT)
			c->rule->stats.tcp_bytes_to_target += (uint64_t)n;
		else
			c->rule->stats.tcp_bytes_to_client += (uint64_t)n;
		c->last_active = clock_now();
	}
	if (relay_tcp_flush(c, !s) < 0)
		return;
	relay_tcp_update(c);
}

static void relay_tcp_connect_failed(struct relay_tcp_conn *c, const char *why)
{
	char reason[256];

	c->rule->stats.tcp_connect_failed++;
	snprintf(reason, sizeof(reason), "connect failed: %s", why);
	relay_tcp_close(c, LOG_LVL_WARNING, reason);
}

static void relay_tcp_arm_timer(struct relay_tcp_conn *c, double after)
{
	struct timeval tv = clock_timeval(after);

	evtimer_add(c->timer, &tv);
}

static void relay_tcp_connected(struct relay_tcp_conn *c)
{
	c->connected = true;
	c->last_active = clock_now();
	evtimer_del(c->timer);
	if (c->rule->cfg.set.idle_timeout > 0)
		relay_tcp_arm_timer(c, c->rule->cfg.set.idle_timeout);
	log_debug("tcp %s: connection %llu connected to the target", c->rule->cfg.name,
		  (unsigned long long)c->id);
	relay_tcp_update(c);
}

static void relay_tcp_write(struct relay_tcp_conn *c, int s)
{
	if (!c->connected) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd[SIDE_TARGET], SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			relay_tcp_connect_failed(c, strerror(err));
			return;
		}
		relay_tcp_connected(c);
		return;
	}
	if (relay_tcp_flush(c, s) < 0)
		return;
	relay_tcp_update(c);
}

static void relay_tcp_client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	relay_tcp_read(arg, SIDE_CLIENT);
}

static void relay_tcp_target_read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	relay_tcp_read(arg, SIDE_TARGET);
}

static void relay_tcp_client_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	relay_tcp_write(arg, SIDE_CLIENT);
}

static void relay_tcp_target_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	relay_tcp_write(arg, SIDE_TARGET);
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
	/* Traffic only stamps a time; the timer re-arms for what remains. */
	limit = c->rule->cfg.set.idle_timeout;
	idle = clock_now() - c->last_active;
	if (idle + 0.001 >= limit) {
		snprintf(why, sizeof(why), "idle for %gs", limit);
		relay_tcp_close(c, LOG_LVL_INFO, why);
		return;
	}
	relay_tcp_arm_timer(c, limit - idle);
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
	for (int s = 0; s < 2; s++) {
		if (c->rev[s])
			event_free(c->rev[s]);
		if (c->wev[s])
			event_free(c->wev[s]);
		if (c->buf[s])
			evbuffer_free(c->buf[s]);
		if (c->fd[s] >= 0)
			close(c->fd[s]);
	}
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
	const struct sockaddr *target = (const struct sockaddr *)&l->cfg.target;
	struct relay_tcp_conn *c = calloc(1, sizeof(*c));
	struct timeval tv = clock_timeval(l->cfg.set.connect_timeout);
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
	c->fd[SIDE_CLIENT] = fd;
	c->fd[SIDE_TARGET] = -1;
	memcpy(&c->client_addr, sa,
	       (size_t)salen < sizeof(c->client_addr) ? (size_t)salen : sizeof(c->client_addr));
	LIST_INSERT_HEAD(&l->conns, c, link);
	l->stats.tcp_active++;
	l->stats.tcp_accepted++;
	listener_tcp_conn_added(l);

	/* A relay adds no delay of its own: the endpoints decide about Nagle. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd[SIDE_TARGET] = socket(target->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd[SIDE_TARGET] < 0) {
		int err = errno;

		if (err == EMFILE || err == ENFILE)
			listener_tcp_out_of_fds(l, err);
		relay_tcp_connect_failed(c, strerror(err));
		return;
	}
	setsockopt(c->fd[SIDE_TARGET], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	c->rev[SIDE_CLIENT] = event_new(base, fd, EV_READ | EV_PERSIST, relay_tcp_client_read_cb, c);
	c->wev[SIDE_CLIENT] = event_new(base, fd, EV_WRITE | EV_PERSIST, relay_tcp_client_write_cb, c);
	c->rev[SIDE_TARGET] = event_new(base, c->fd[SIDE_TARGET], EV_READ | EV_PERSIST,
					relay_tcp_target_read_cb, c);
	c->wev[SIDE_TARGET] = event_new(base, c->fd[SIDE_TARGET], EV_WRITE | EV_PERSIST,
					relay_tcp_target_write_cb, c);
	c->buf[SIDE_CLIENT] = evbuffer_new();
	c->buf[SIDE_TARGET] = evbuffer_new();
	c->timer = evtimer_new(base, relay_tcp_timer_cb, c);
	if (!c->rev[0] || !c->wev[0] || !c->rev[1] || !c->wev[1] || !c->buf[0] || !c->buf[1] ||
	    !c->timer) {
		relay_tcp_close(c, LOG_LVL_ERROR, "out of memory");
		return;
	}

	if (connect(c->fd[SIDE_TARGET], target, l->cfg.target_len) == 0) {
		relay_tcp_connected(c);
		return;
	}
	if (errno != EINPROGRESS) {
		relay_tcp_connect_failed(c, strerror(errno));
		return;
	}
	/* The client is not read until the target is there; the kernel holds its bytes. */
	evtimer_add(c->timer, &tv);
	relay_tcp_update(c);
}

void relay_tcp_close_all(struct listener *l, const char *reason)
{
	while (!LIST_EMPTY(&l->conns))
		relay_tcp_close(LIST_FIRST(&l->conns), LOG_LVL_INFO, reason);
}
