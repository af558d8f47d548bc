#include "forward.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "portinfo.h"
#include "worker.h"

#define FORWARD_BACKLOG 511
#define FORWARD_UDP_BUFFER (4 << 20)

/*
 * A UDP listener takes every client's datagrams on one socket: give it room
 * for bursts. Beyond net.core.rmem_max only a privileged process may go
 * (SO_RCVBUFFORCE); otherwise the kernel caps the size, which is fine.
 */
static void forward_grow_buffers(int fd)
{
	int size = FORWARD_UDP_BUFFER;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

/*
 * A non-blocking socket bound to the rule's listen address (listening, for
 * TCP). REUSEPORT lets each worker have its own. Returns the fd, or -1 with
 * errno set by the call that failed.
 */
static int forward_socket(const struct forward *fw, int socktype, bool reuseport, bool listening)
{
	const struct sockaddr *sa = (const struct sockaddr *)&fw->cfg.listen;
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
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	/* [::] means IPv6 only, so a 0.0.0.0 rule on the same port can coexist. */
	if (sa->sa_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (socktype == SOCK_DGRAM)
		forward_grow_buffers(fd);
	if (bind(fd, sa, fw->cfg.listen_len) < 0)
		goto fail;
	if (listening && listen(fd, FORWARD_BACKLOG) < 0)
		goto fail;
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

struct forward_attach {
	struct listener *l;
	int fd;
	int socktype;
};

static void forward_attach_cb(void *arg)
{
	struct forward_attach *a = arg;

	if (a->socktype == SOCK_STREAM)
		listener_attach_tcp(a->l, a->fd);
	else
		listener_attach_udp(a->l, a->fd);
	free(a);
}

/*
 * Binds one socket per worker for SOCKTYPE and hands them over. First a
 * plain bind without SO_REUSEPORT: it collides with anyone holding the
 * address, with SO_REUSEPORT or not, so a port taken by another program
 * (or another portfwd) is reported instead of silently shared.
 */
static int forward_bind(struct forward *fw, int socktype)
{
	int *fds = calloc(fw->nworkers, sizeof(*fds));
	int probe, err = 0;
	size_t n = 0;

	if (!fds)
		return ENOMEM;
	probe = forward_socket(fw, socktype, false, false);
	if (probe < 0) {
		err = errno;
		goto out;
	}
	close(probe);
	for (n = 0; n < fw->nworkers; n++) {
		fds[n] = forward_socket(fw, socktype, true, socktype == SOCK_STREAM);
		if (fds[n] < 0) {
			err = errno;
			break;
		}
	}
	if (err) {
		while (n > 0)
			close(fds[--n]);
		goto out;
	}
	for (size_t i = 0; i < fw->nworkers; i++) {
		struct forward_attach *a = malloc(sizeof(*a));

		/* Filled in before the call: a running worker may take it at once. */
		if (a) {
			a->l = fw->listeners[i];
			a->fd = fds[i];
			a->socktype = socktype;
		}
		if (!a || worker_call(fw->workers[i], forward_attach_cb, a) < 0) {
			/* Out of memory: this worker goes without; the others serve. */
			log_error("rule %s: worker %zu: out of memory; it will not serve this rule",
				  fw->cfg.name, i);
			free(a);
			close(fds[i]);
		}
	}
out:
	free(fds);
	return err;
}

static int forward_start_proto(struct forward *fw, int socktype)
{
	struct forward_proto *p = socktype == SOCK_STREAM ? &fw->tcp : &fw->udp;
	const char *name = socktype == SOCK_STREAM ? "tcp" : "udp";
	char addr[RULE_ADDR_STRLEN];
	int err = forward_bind(fw, socktype);

	rule_format_addr((const struct sockaddr *)&fw->cfg.listen, addr, sizeof(addr));
	if (err) {
		/* Explained (and logged) once per cause: finding who holds a
		 * port reads all of /proc, too much to repeat every retry. */
		if (p->state != FORWARD_FAILED || err != p->err) {
			p->err = err;
			portinfo_bind_error(err, socktype, (const struct sockaddr *)&fw->cfg.listen,
					    p->error, sizeof(p->error));
			log_error("rule %s: cannot listen on %s %s: %s (retrying every %ds)",
				  fw->cfg.name, name, addr, p->error, FORWARD_RETRY_SECONDS);
		}
		p->state = FORWARD_FAILED;
		return -1;
	}
	p->state = FORWARD_LISTENING;
	p->error[0] = '\0';
	p->err = 0;
	log_info("rule %s: listening on %s %s", fw->cfg.name, name, addr);
	return 0;
}

/* Binds whatever is not bound yet; arms the retry timer if anything failed. */
static void forward_start(struct forward *fw)
{
	struct timeval tv = { FORWARD_RETRY_SECONDS, 0 };
	bool failed = false;

	if ((fw->cfg.proto & RULE_PROTO_TCP) && fw->tcp.state != FORWARD_LISTENING)
		failed |= forward_start_proto(fw, SOCK_STREAM) < 0;
	if ((fw->cfg.proto & RULE_PROTO_UDP) && fw->udp.state != FORWARD_LISTENING)
		failed |= forward_start_proto(fw, SOCK_DGRAM) < 0;
	if (failed)
		evtimer_add(fw->bind_retry, &tv);
}

static void forward_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	forward_start(arg);
}

struct forward *forward_new(struct event_base *base, struct worker **workers,
			    size_t nworkers, const struct rule_config *cfg)
{
	struct forward *fw = calloc(1, sizeof(*fw));

	if (!fw)
		return NULL;
	fw->cfg = *cfg;
	fw->base = base;
	fw->workers = workers;
	fw->nworkers = nworkers;
	fw->listeners = calloc(nworkers, sizeof(*fw->listeners));
	fw->bind_retry = evtimer_new(base, forward_retry_cb, fw);
	if (!fw->listeners || !fw->bind_retry)
		goto fail;
	for (size_t i = 0; i < nworkers; i++) {
		fw->listeners[i] = listener_new(workers[i], fw);
		if (!fw->listeners[i])
			goto fail;
	}
	forward_start(fw);
	return fw;
fail:
	/* Listeners made so far are in their workers' lists; worker_stop frees them. */
	if (fw->bind_retry)
		event_free(fw->bind_retry);
	free(fw->listeners);
	free(fw);
	return NULL;
}

void forward_stop(struct forward *fw)
{
	if (!fw)
		return;
	atomic_store(&fw->stopping, true);
	if (fw->bind_retry) {
		event_free(fw->bind_retry);
		fw->bind_retry = NULL;
	}
}

void forward_free(struct forward *fw)
{
	if (!fw)
		return;
	forward_stop(fw);
	free(fw->listeners);
	free(fw);
}

bool forward_ready(const struct forward *fw)
{
	return (!(fw->cfg.proto & RULE_PROTO_TCP) || fw->tcp.state == FORWARD_LISTENING) &&
	       (!(fw->cfg.proto & RULE_PROTO_UDP) || fw->udp.state == FORWARD_LISTENING);
}

void forward_stats(const struct forward *fw, struct rule_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < fw->nworkers; i++)
		stats_add(out, &fw->listeners[i]->stats);
}

static bool forward_claim(_Atomic unsigned *count, unsigned max)
{
	unsigned cur = atomic_load_explicit(count, memory_order_relaxed);

	while (cur < max)
		if (atomic_compare_exchange_weak_explicit(count, &cur, cur + 1, memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	return false;
}

bool forward_tcp_claim(struct forward *fw)
{
	return forward_claim(&fw->tcp_active, fw->cfg.set.max_connections);
}

static void forward_recheck_cb(void *arg)
{
	listener_tcp_recheck(arg);
}

void forward_tcp_release(struct forward *fw)
{
	unsigned was = atomic_fetch_sub_explicit(&fw->tcp_active, 1, memory_order_relaxed);

	/* From full to not full: every worker may have paused or queued. */
	if (was == fw->cfg.set.max_connections && !atomic_load(&fw->stopping))
		for (size_t i = 0; i < fw->nworkers; i++)
			worker_call(fw->workers[i], forward_recheck_cb, fw->listeners[i]);
}

bool forward_tcp_full(const struct forward *fw)
{
	return atomic_load_explicit(&fw->tcp_active, memory_order_relaxed) >=
	       fw->cfg.set.max_connections;
}

bool forward_udp_claim(struct forward *fw)
{
	return forward_claim(&fw->udp_active, fw->cfg.set.max_udp_sessions);
}

void forward_udp_release(struct forward *fw)
{
	atomic_fetch_sub_explicit(&fw->udp_active, 1, memory_order_relaxed);
}
