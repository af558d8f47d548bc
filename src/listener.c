#include "listener.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "relay_tcp.h"
#include "relay_udp.h"
#include "rulework.h"
#include "worker.h"

static void listener_update_tcp(struct listener *l)
{
	if (!l->tcp)
		return;
	if (l->tcp_paused_limit || l->tcp_paused_emfile)
		evconnlistener_disable(l->tcp);
	else
		evconnlistener_enable(l->tcp);
}

static void listener_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
			       struct sockaddr *sa, int salen, void *arg)
{
	(void)lev;
	relay_tcp_accept(arg, fd, sa, salen);
}

static void listener_accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	(void)fd;
	(void)what;
	l->tcp_paused_emfile = false;
	listener_tcp_recheck(l); /* clients waiting for a descriptor go first */
}

void listener_tcp_out_of_fds(struct listener *l, int err)
{
	struct timeval tv = { 1, 0 };

	/* Pooled pipes hold descriptors too: give them back first. */
	worker_pipe_trim(l->worker);
	if (l->tcp_paused_emfile)
		return;
	log_warning("rule %s: out of file descriptors (%s); pausing accepts for 1s",
		    l->cfg->name, strerror(err));
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
		log_debug("rule %s: accept: %s", l->cfg->name, strerror(err));
}

void listener_attach_tcp(struct listener *l, int fd)
{
	l->tcp = evconnlistener_new(l->worker->base, listener_accept_cb, l,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (!l->tcp) {
		log_error("rule %s: worker %d: out of memory; it will not accept", l->cfg->name,
			  l->worker->id);
		close(fd);
		return;
	}
	evconnlistener_set_error_cb(l->tcp, listener_accept_error_cb);
	listener_tcp_recheck(l);
}

void listener_attach_udp(struct listener *l, int fd)
{
	l->udp_ev = event_new(l->worker->base, fd, EV_READ | EV_PERSIST, relay_udp_listener_cb, l);
	if (!l->udp_ev || event_add(l->udp_ev, NULL) < 0) {
		log_error("rule %s: worker %d: out of memory; it will not relay UDP", l->cfg->name,
			  l->worker->id);
		if (l->udp_ev)
			event_free(l->udp_ev);
		l->udp_ev = NULL;
		close(fd);
		return;
	}
	l->udp_fd = fd;
	l->udp_pktinfo = rule_addr_is_wildcard((const struct sockaddr *)&l->cfg->listen);
}

void listener_tcp_recheck(struct listener *l)
{
	bool full;

	relay_tcp_start_waiting(l);
	full = rulework_tcp_full(l->work);
	/* Said once per worker, not per port of a range. */
	if (full && !l->tcp_paused_limit && (size_t)l->worker->id < l->work->nworkers &&
	    l->work->listeners[l->worker->id] == l)
		log_warning("rule %s: %u connections, the max_connections limit; worker %d pauses accepting until one ends",
			    l->cfg->name, l->cfg->set.max_connections, l->worker->id);
	l->tcp_paused_limit = full;
	listener_update_tcp(l);
}

struct listener *listener_new(struct worker *w, struct rulework *work, struct rulework_snap *snap,
			      unsigned port)
{
	struct listener *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->port = port;
	l->snap = rulework_snap_ref(snap);
	l->cfg = &snap->rule;
	l->work = work;
	l->worker = w;
	l->udp_fd = -1;
	TAILQ_INIT(&l->conns);
	TAILQ_INIT(&l->waiting);
	TAILQ_INIT(&l->unreplied);
	l->accept_retry = evtimer_new(w->base, listener_accept_retry_cb, l);
	if (!l->accept_retry) {
		rulework_snap_unref(l->snap);
		free(l);
		return NULL;
	}
	return l;
}

void listener_insert(struct listener *l)
{
	LIST_INSERT_HEAD(&l->worker->listeners, l, link);
	l->inserted = true;
}

void listener_set_snap(struct listener *l, struct rulework_snap *snap)
{
	/* The listening socket passes keepalive on to the clients it accepts. */
	if (l->tcp && relay_tcp_keepalive(evconnlistener_get_fd(l->tcp), &snap->rule.set) < 0)
		log_warning("rule %s: cannot change tcp_keepalive: %s", snap->rule.name,
			    strerror(errno));
	rulework_snap_unref(l->snap);
	l->snap = snap;
	l->cfg = &snap->rule;
	listener_tcp_recheck(l);
}

static void listener_close_udp(struct listener *l)
{
	if (l->udp_ev) {
		event_free(l->udp_ev);
		close(l->udp_fd);
	}
	l->udp_ev = NULL;
	l->udp_fd = -1;
	l->udp_draining = false;
}

/* Closes the listening sockets only. */
static void listener_close_sockets(struct listener *l)
{
	if (l->tcp)
		evconnlistener_free(l->tcp);
	l->tcp = NULL;
	listener_close_udp(l);
}

/* Stops accepting TCP clients for good (disabled or removed). */
static void listener_stop_accepting(struct listener *l)
{
	if (l->tcp)
		evconnlistener_free(l->tcp);
	l->tcp = NULL;
	l->closed = true;
	/* No accept to retry; waiting clients start when a slot frees. */
	evtimer_del(l->accept_retry);
	l->tcp_paused_emfile = false;
}

void listener_drain(struct listener *l)
{
	listener_stop_accepting(l);
	/* The sessions' replies go out through this socket: it stays while they do. */
	if (l->sessions)
		l->udp_draining = true;
	else
		listener_close_udp(l);
}

void listener_udp_end(struct listener *l, const char *reason)
{
	relay_udp_close_all(l, reason);
	listener_close_udp(l);
}

void listener_udp_drained(struct listener *l)
{
	if (l->udp_draining && !l->sessions)
		listener_close_udp(l);
}

void listener_close(struct listener *l, const char *reason)
{
	listener_stop_accepting(l);
	listener_udp_end(l, reason);
}

void listener_reopen(struct listener *l)
{
	if (!l->retired)
		l->closed = false;
}

void listener_retire(struct listener *l, bool retired)
{
	if (retired) {
		listener_drain(l);
	} else {
		/* The socket that serves the old sessions holds the port. */
		listener_udp_end(l, "its port came back to the rule: bound anew");
		l->closed = false;
	}
	l->retired = retired;
}

socklen_t listener_target(const struct listener *l, const struct rule_config *cfg,
			  const struct sockaddr *target, socklen_t len, struct sockaddr_storage *out)
{
	rule_addr_set_port(target, rule_target_port_of(cfg, rule_addr_port(target), l->port), out);
	return len;
}

void listener_free(struct listener *l)
{
	if (!l)
		return;
	if (l->inserted)
		LIST_REMOVE(l, link);
	listener_close_sockets(l);
	relay_tcp_close_all(l, "shutdown");
	relay_udp_close_all(l, "shutdown");
	event_free(l->accept_retry);
	rulework_snap_unref(l->snap);
	free(l);
}
