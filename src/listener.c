#include "listener.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "portinfo.h"
#include "relay_tcp.h"
#include "relay_udp.h"
#include "worker.h"

#define LISTENER_BACKLOG 511
#define LISTENER_UDP_BUFFER (4 << 20)

/*
 * A UDP listener takes every client's datagrams on one socket: give it room
 * for bursts. Beyond net.core.rmem_max only a privileged process may go
 * (SO_RCVBUFFORCE); otherwise the kernel caps the size, which is fine.
 */
static void listener_grow_buffers(int fd)
{
	int size = LISTENER_UDP_BUFFER;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

/*
 * Creates a non-blocking socket bound to the rule's listen address.
 * Returns the fd, or -1 with errno set by the call that failed.
 */
static int listener_bind(const struct listener *l, int socktype)
{
	const struct sockaddr *sa = (const struct sockaddr *)&l->cfg.listen;
	int fd, one = 1, saved;

	fd = socket(sa->sa_family, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/*
	 * TCP: rebind at once after a restart despite TIME_WAIT. Not for UDP,
	 * where SO_REUSEADDR would let two daemons share a port silently.
	 */
	if (socktype == SOCK_STREAM &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	/* [::] means IPv6 only, so a 0.0.0.0 rule on the same port can coexist. */
	if (sa->sa_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (socktype == SOCK_DGRAM)
		listener_grow_buffers(fd);
	if (bind(fd, sa, l->cfg.listen_len) < 0)
		goto fail;
	if (socktype == SOCK_STREAM && listen(fd, LISTENER_BACKLOG) < 0)
		goto fail;
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

static void listener_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
			       struct sockaddr *sa, int salen, void *arg)
{
	(void)lev;
	relay_tcp_accept(arg, fd, sa, salen);
}

static void listener_update_tcp(struct listener *l)
{
	if (!l->tcp)
		return;
	if (l->tcp_paused_limit || l->tcp_paused_emfile)
		evconnlistener_disable(l->tcp);
	else
		evconnlistener_enable(l->tcp);
}

static void listener_accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	(void)fd;
	(void)what;
	l->tcp_paused_emfile = false;
	listener_update_tcp(l);
}

void listener_tcp_out_of_fds(struct listener *l, int err)
{
	struct timeval tv = { 1, 0 };

	if (l->tcp_paused_emfile)
		return;
	log_warning("rule %s: out of file descriptors (%s); pausing accepts for 1s",
		    l->cfg.name, strerror(err));
	l->tcp_paused_emfile = true;
	listener_update_tcp(l);
	evtimer_add(l->accept_retry, &tv);
}

/*
 * accept() failed. Out of descriptors: stop accepting for a second instead
 * of spinning on a socket that stays readable. Anything else is transient.
 */
static void listener_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct listener *l = arg;
	int err = EVUTIL_SOCKET_ERROR();

	(void)lev;
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
		listener_tcp_out_of_fds(l, err);
	else
		log_debug("rule %s: accept: %s", l->cfg.name, strerror(err));
}

static int listener_start_tcp(struct listener *l)
{
	char addr[RULE_ADDR_STRLEN];
	int fd = listener_bind(l, SOCK_STREAM);

	rule_format_addr((struct sockaddr *)&l->cfg.listen, addr, sizeof(addr));
	if (fd < 0) {
		/* Explained (and logged) once per cause: finding who holds a
		 * port reads all of /proc, too much to repeat every retry. */
		if (l->tcp_state != LISTENER_FAILED || errno != l->tcp_errno) {
			l->tcp_errno = errno;
			portinfo_bind_error(errno, SOCK_STREAM, (struct sockaddr *)&l->cfg.listen,
					    l->tcp_error, sizeof(l->tcp_error));
			log_error("rule %s: cannot listen on tcp %s: %s (retrying every %ds)",
				  l->cfg.name, addr, l->tcp_error, LISTENER_RETRY_SECONDS);
		}
		l->tcp_state = LISTENER_FAILED;
		return -1;
	}
	l->tcp = evconnlistener_new(l->worker->base, listener_accept_cb, l,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (!l->tcp) {
		close(fd);
		snprintf(l->tcp_error, sizeof(l->tcp_error), "out of memory");
		l->tcp_state = LISTENER_FAILED;
		return -1;
	}
	evconnlistener_set_error_cb(l->tcp, listener_accept_error_cb);
	l->tcp_state = LISTENER_LISTENING;
	l->tcp_error[0] = '\0';
	listener_update_tcp(l);
	log_info("rule %s: listening on tcp %s", l->cfg.name, addr);
	return 0;
}

static int listener_start_udp(struct listener *l)
{
	char addr[RULE_ADDR_STRLEN];
	int fd = listener_bind(l, SOCK_DGRAM);

	rule_format_addr((struct sockaddr *)&l->cfg.listen, addr, sizeof(addr));
	if (fd < 0) {
		/* Explained (and logged) once per cause: finding who holds a
		 * port reads all of /proc, too much to repeat every retry. */
		if (l->udp_state != LISTENER_FAILED || errno != l->udp_errno) {
			l->udp_errno = errno;
			portinfo_bind_error(errno, SOCK_DGRAM, (struct sockaddr *)&l->cfg.listen,
					    l->udp_error, sizeof(l->udp_error));
			log_error("rule %s: cannot listen on udp %s: %s (retrying every %ds)",
				  l->cfg.name, addr, l->udp_error, LISTENER_RETRY_SECONDS);
		}
		l->udp_state = LISTENER_FAILED;
		return -1;
	}
	l->udp_ev = event_new(l->worker->base, fd, EV_READ | EV_PERSIST,
			      relay_udp_listener_cb, l);
	if (!l->udp_ev || event_add(l->udp_ev, NULL) < 0) {
		if (l->udp_ev)
			event_free(l->udp_ev);
		l->udp_ev = NULL;
		close(fd);
		snprintf(l->udp_error, sizeof(l->udp_error), "out of memory");
		l->udp_state = LISTENER_FAILED;
		return -1;
	}
	l->udp_fd = fd;
	l->udp_state = LISTENER_LISTENING;
	l->udp_error[0] = '\0';
	log_info("rule %s: listening on udp %s", l->cfg.name, addr);
	return 0;
}

/* Binds whatever is not bound yet; arms the retry timer if anything failed. */
static void listener_start(struct listener *l)
{
	struct timeval tv = { LISTENER_RETRY_SECONDS, 0 };
	bool failed = false;

	if ((l->cfg.proto & RULE_PROTO_TCP) && l->tcp_state != LISTENER_LISTENING)
		failed |= listener_start_tcp(l) < 0;
	if ((l->cfg.proto & RULE_PROTO_UDP) && l->udp_state != LISTENER_LISTENING)
		failed |= listener_start_udp(l) < 0;
	if (failed)
		evtimer_add(l->bind_retry, &tv);
}

static void listener_bind_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	listener_start(arg);
}

struct listener *listener_new(struct worker *worker, const struct rule_config *cfg)
{
	struct listener *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->cfg = *cfg;
	l->worker = worker;
	l->udp_fd = -1;
	LIST_INIT(&l->conns);
	l->bind_retry = evtimer_new(worker->base, listener_bind_retry_cb, l);
	l->accept_retry = evtimer_new(worker->base, listener_accept_retry_cb, l);
	if (!l->bind_retry || !l->accept_retry) {
		listener_free(l);
		return NULL;
	}
	listener_start(l);
	return l;
}

void listener_free(struct listener *l)
{
	if (!l)
		return;
	if (l->tcp)
		evconnlistener_free(l->tcp);
	l->tcp = NULL;
	if (l->udp_ev) {
		event_free(l->udp_ev);
		close(l->udp_fd);
	}
	l->udp_ev = NULL;
	relay_tcp_close_all(l, "shutdown");
	relay_udp_close_all(l);
	if (l->bind_retry)
		event_free(l->bind_retry);
	if (l->accept_retry)
		event_free(l->accept_retry);
	free(l);
}

bool listener_ready(const struct listener *l)
{
	return (!(l->cfg.proto & RULE_PROTO_TCP) || l->tcp_state == LISTENER_LISTENING) &&
	       (!(l->cfg.proto & RULE_PROTO_UDP) || l->udp_state == LISTENER_LISTENING);
}

void listener_tcp_conn_added(struct listener *l)
{
	if (l->stats.tcp_active >= l->cfg.set.max_connections && !l->tcp_paused_limit) {
		log_warning("rule %s: %u connections, the max_connections limit; pausing accepts until one ends",
			    l->cfg.name, l->cfg.set.max_connections);
		l->tcp_paused_limit = true;
		listener_update_tcp(l);
	}
}

void listener_tcp_conn_done(struct listener *l)
{
	if (l->tcp_paused_limit && l->stats.tcp_active < l->cfg.set.max_connections) {
		l->tcp_paused_limit = false;
		listener_update_tcp(l);
	}
}
