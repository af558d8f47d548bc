#include "forward.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "iface.h"
#include "listener.h"
#include "log.h"
#include "portinfo.h"
#include "relay_tcp.h"
#include "relay_udp.h"
#include "targets.h"
#include "worker.h"

#define FORWARD_BACKLOG 511

/* Each rule's number in the per-source table, never reused, so a new rule
 * never inherits the counts of a removed one. */
static _Atomic uint32_t forward_source_ids;
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
	if (fw->cfg.interface[0] && iface_bind(fd, fw->cfg.interface) < 0)
		goto fail;
	if (socktype == SOCK_DGRAM)
		forward_grow_buffers(fd);
	/* On a wildcard address, each datagram says where it was sent, so the
	 * replies can leave from there (relay_udp.c). */
	if (socktype == SOCK_DGRAM && rule_addr_is_wildcard(sa) &&
	    (sa->sa_family == AF_INET
		     ? setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one))
		     : setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one))) < 0)
		goto fail;
	if (bind(fd, sa, fw->cfg.listen_len) < 0)
		goto fail;
	/* Accepted sockets inherit it: no system call per connection. Not
	 * worth refusing the rule for, as a reload would not either. */
	if (socktype == SOCK_STREAM && relay_tcp_keepalive(fd, &fw->cfg.set) < 0)
		log_warning("rule %s: cannot set tcp_keepalive: %s", fw->cfg.name, strerror(errno));
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
	int fd;
	int socktype;
};

static void forward_attach_cb(struct listener *l, void *arg)
{
	struct forward_attach *a = arg;

	if (l->closed)
		close(a->fd); /* disabled or removed since the bind */
	else if (a->socktype == SOCK_STREAM)
		listener_attach_tcp(l, a->fd);
	else
		listener_attach_udp(l, a->fd);
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
	int *fds = calloc(fw->work.nworkers, sizeof(*fds));
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
	for (n = 0; n < fw->work.nworkers; n++) {
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
	for (size_t i = 0; i < fw->work.nworkers; i++) {
		struct forward_attach *a = malloc(sizeof(*a));

		if (a) {
			a->fd = fds[i];
			a->socktype = socktype;
		}
		if (!a || rulework_post(&fw->work, i, forward_attach_cb, a) < 0) {
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
	char addr[RULE_ADDR_STRLEN], listen[RULE_PORT_STRLEN], target[RULE_PORT_STRLEN];
	/* The index before the sockets are bound (by name): should the
	 * interface be made again meanwhile, the watch sees another index and
	 * binds them anew, never believing dead sockets are on the new one. */
	unsigned ifindex = fw->cfg.interface[0] ? iface_index(fw->cfg.interface) : 0;
	int err = forward_bind(fw, socktype);

	rule_format_addr((const struct sockaddr *)&fw->cfg.listen, addr, sizeof(addr));
	if (err) {
		/* Explained (and logged) once per cause: finding who holds a
		 * port reads all of /proc, too much to repeat every retry. */
		if (p->state != FORWARD_FAILED || err != p->err) {
			p->err = err;
			if (!fw->cfg.interface[0] ||
			    !iface_bind_error(err, fw->cfg.interface, p->error, sizeof(p->error)))
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
	if (fw->cfg.interface[0]) {
		/* The index before and after the bind: the same one, or the
		 * interface came or was made again meanwhile and which one the
		 * sockets are on is not known (-1: the watch binds them anew).
		 * Both protocols' sockets must be on the one recorded first. */
		unsigned after = iface_index(fw->cfg.interface);
		unsigned on = ifindex && ifindex == after ? ifindex : (unsigned)-1;

		fw->ifindex = !fw->ifindex || fw->ifindex == on ? on : (unsigned)-1;
	}
	/* The ports with their names and classes, as status shows them. */
	char more[64] = "";

	if (rule_ntargets(&fw->cfg) > 1)
		snprintf(more, sizeof(more), " and %zu more target%s (%s)", rule_ntargets(&fw->cfg) - 1,
			 rule_ntargets(&fw->cfg) == 2 ? "" : "s", rule_balance_name(fw->cfg.balance));
	log_info("rule %s: listening on %s %s%s%s, forwarding to %s%s", fw->cfg.name, name,
		 rule_format_port((const struct sockaddr *)&fw->cfg.listen, fw->cfg.listen_service,
				  listen, sizeof(listen)),
		 fw->cfg.interface[0] ? ", interface " : "", fw->cfg.interface,
		 rule_format_port((const struct sockaddr *)&fw->cfg.target, fw->cfg.target_service,
				  target, sizeof(target)), more);
	return 0;
}

/* Binds whatever is not bound yet; arms the retry timer if anything failed.
 * Returns 0, or -1 if a bind failed. */
static int forward_start(struct forward *fw)
{
	struct timeval tv = { FORWARD_RETRY_SECONDS, 0 };
	bool failed = false;

	if ((fw->cfg.proto & RULE_PROTO_TCP) && fw->tcp.state != FORWARD_LISTENING)
		failed |= forward_start_proto(fw, SOCK_STREAM) < 0;
	if ((fw->cfg.proto & RULE_PROTO_UDP) && fw->udp.state != FORWARD_LISTENING)
		failed |= forward_start_proto(fw, SOCK_DGRAM) < 0;
	if ((failed || fw->cfg.interface[0]) && fw->bind_retry)
		evtimer_add(fw->bind_retry, &tv);
	return failed ? -1 : 0;
}

static void forward_rebind(struct forward *fw, const char *reason);

static void forward_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct forward *fw = arg;
	char why[96];

	(void)fd;
	(void)what;
	/* The sockets are bound to an index: an interface deleted and made
	 * again (wg-quick down and up) is another one, or none for a while. */
	if (fw->ifindex && iface_index(fw->cfg.interface) != fw->ifindex) {
		snprintf(why, sizeof(why), "interface %s went away or was made again", fw->cfg.interface);
		forward_rebind(fw, why);
		return;
	}
	forward_start(fw);
}

/* fw->cfg = *CFG, with the reference to its policy that the copy owns. */
static void forward_set_cfg(struct forward *fw, const struct rule_config *cfg)
{
	struct access_policy *old = fw->cfg.access;
	struct rule_targets *old_targets = fw->cfg.targets;

	fw->cfg = *cfg;
	access_policy_ref(fw->cfg.access);
	access_policy_unref(old);
	rule_targets_ref(fw->cfg.targets);
	rule_targets_unref(old_targets);
}

static void forward_insert_cb(struct listener *l, void *arg)
{
	(void)arg;
	listener_insert(l);
}

struct forward *forward_new(struct event_base *base, struct worker **workers,
			    size_t nworkers, const struct rule_config *cfg)
{
	struct forward *fw = calloc(1, sizeof(*fw));
	size_t made = 0;

	if (!fw)
		return NULL;
	forward_set_cfg(fw, cfg);
	fw->base = base;
	fw->snap = rulework_snap_new(cfg);
	fw->targets = targets_new(cfg, NULL);
	if (rulework_init(&fw->work, fw->cfg.name, workers, nworkers) < 0)
		goto fail;
	fw->work.source_id = atomic_fetch_add(&forward_source_ids, 1) + 1;
	rulework_set_limits(&fw->work, cfg->set.max_connections, cfg->set.max_udp_sessions);
	fw->bind_retry = evtimer_new(base, forward_retry_cb, fw);
	if (!fw->snap || !fw->targets || !fw->bind_retry)
		goto fail;
	fw->snap->targets = targets_ref(fw->targets);
	targets_health_start(fw->targets, base, cfg->name);
	for (made = 0; made < nworkers; made++) {
		fw->work.listeners[made] = listener_new(workers[made], &fw->work, fw->snap);
		if (!fw->work.listeners[made])
			goto fail;
	}
	/* Into each worker's list on its own thread: a running worker walks it. */
	rulework_each_sync(&fw->work, forward_insert_cb, NULL);
	forward_start(fw);
	return fw;
fail:
	while (made > 0)
		listener_free(fw->work.listeners[--made]);
	if (fw->bind_retry)
		event_free(fw->bind_retry);
	rulework_snap_unref(fw->snap);
	targets_health_stop(fw->targets);
	targets_unref(fw->targets);
	access_policy_unref(fw->cfg.access);
	rule_targets_unref(fw->cfg.targets);
	rulework_fini(&fw->work);
	free(fw);
	return NULL;
}

static void forward_set_snap_cb(struct listener *l, void *arg)
{
	listener_set_snap(l, rulework_snap_ref(arg));
}

static void forward_close_cb(struct listener *l, void *arg);
static void forward_close(struct forward *fw, void (*fn)(struct listener *l, void *arg),
			  void *arg);
static void forward_reopen_cb(struct listener *l, void *arg);

int forward_update(struct forward *fw, const struct rule_config *cfg)
{
	bool rebind = strcmp(fw->cfg.interface, cfg->interface) != 0;
	bool reopen = rebind || fw->disabled;
	struct rulework_snap *snap = NULL;

	/* A name of a port that /etc/services now spells otherwise is a new
	 * snapshot too (nothing rebinds): connections show what status does. */
	struct targets *targets = NULL;

	if (!rule_config_equal(&fw->snap->rule, cfg) ||
	    strcmp(fw->snap->rule.listen_service, cfg->listen_service) != 0 ||
	    strcmp(fw->snap->rule.target_service, cfg->target_service) != 0) {
		snap = rulework_snap_new(cfg);
		if (!snap)
			return -1;
		/* Other targets (or policy, or checks): a new set, which keeps
		 * the state of the addresses it shares with the old one. The
		 * old set lives on with the connections that picked from it. */
		if (!targets_same_config(fw->targets, cfg)) {
			targets = targets_new(cfg, fw->targets);
			if (!targets) {
				rulework_snap_unref(snap);
				return -1;
			}
		}
		snap->targets = targets_ref(targets ? targets : fw->targets);
	}
	if (targets) {
		targets_health_stop(fw->targets);
		targets_unref(fw->targets);
		fw->targets = targets;
		targets_health_start(targets, fw->base, cfg->name);
	}
	/* Sockets bound the old way close before the new settings are in
	 * force, and a disabled rule opens only with them: nothing is accepted
	 * through another interface than the one the file now names. */
	if (rebind && !fw->disabled) {
		log_info("rule %s: its interface changed: binding its sockets again", cfg->name);
		forward_close(fw, forward_close_cb, "its interface changed");
	}
	if (snap) {
		/* The limits first: each listener re-checks them (and starts
		 * clients that waited for room) when the snapshot arrives. */
		rulework_set_limits(&fw->work, cfg->set.max_connections, cfg->set.max_udp_sessions);
		rulework_each_sync(&fw->work, forward_set_snap_cb, snap);
		rulework_snap_unref(fw->snap);
		fw->snap = snap;
	}
	/* Else at most its line (or its lists' spelling) moved. */
	forward_set_cfg(fw, cfg);
	if (reopen) {
		if (fw->disabled)
			log_info("rule %s: enabled", fw->cfg.name);
		rulework_each_sync(&fw->work, forward_reopen_cb, NULL);
		fw->disabled = false;
		fw->ifindex = 0;
		forward_start(fw);
	}
	return 0;
}

static void forward_close_cb(struct listener *l, void *arg)
{
	listener_close(l, arg);
}

/* Runs FN (which closes the listening sockets) in every worker, stops the
 * bind retries, and marks the protocols closed. */
static void forward_close(struct forward *fw, void (*fn)(struct listener *l, void *arg),
			  void *arg)
{
	rulework_each_sync(&fw->work, fn, arg);
	fw->ifindex = 0; /* no socket is bound to any */
	if (fw->bind_retry)
		evtimer_del(fw->bind_retry);
	if (fw->cfg.proto & RULE_PROTO_TCP)
		fw->tcp.state = FORWARD_CLOSED;
	if (fw->cfg.proto & RULE_PROTO_UDP)
		fw->udp.state = FORWARD_CLOSED;
}

void forward_disable(struct forward *fw)
{
	if (fw->disabled || forward_draining(fw))
		return;
	forward_close(fw, forward_close_cb, "rule disabled");
	fw->disabled = true;
	log_info("rule %s: disabled: not listening; its connections carry on", fw->cfg.name);
}

static void forward_reopen_cb(struct listener *l, void *arg)
{
	(void)arg;
	listener_reopen(l);
}

int forward_enable(struct forward *fw)
{
	if (forward_draining(fw))
		return -1;
	if (!fw->disabled && forward_ready(fw))
		return 0;
	rulework_each_sync(&fw->work, forward_reopen_cb, NULL);
	fw->disabled = false;
	log_info("rule %s: enabled", fw->cfg.name);
	return forward_start(fw);
}

/* Closes the listening sockets and binds them again, with fw->cfg's
 * interface: TCP connections carry on, UDP sessions end (forward_disable). */
static void forward_rebind(struct forward *fw, const char *reason)
{
	log_info("rule %s: %s: binding its sockets again", fw->cfg.name, reason);
	forward_close(fw, forward_close_cb, (void *)reason);
	rulework_each_sync(&fw->work, forward_reopen_cb, NULL);
	fw->ifindex = 0;
	forward_start(fw);
}

static void forward_drain_cb(struct listener *l, void *arg)
{
	(void)arg;
	listener_drain(l);
}

void forward_drain(struct forward *fw, double now)
{
	if (forward_draining(fw))
		return;
	targets_health_stop(fw->targets); /* nothing new will pick from them */
	forward_close(fw, forward_drain_cb, NULL);
	fw->disabled = false;
	atomic_store(&fw->work.draining, true);
	fw->drain_started = now;
	log_info("rule %s: removed: not accepting; draining %u connection%s and %u UDP session%s",
		 fw->cfg.name, atomic_load(&fw->work.tcp_active),
		 atomic_load(&fw->work.tcp_active) == 1 ? "" : "s", atomic_load(&fw->work.udp_active),
		 atomic_load(&fw->work.udp_active) == 1 ? "" : "s");
}

static void forward_udp_end_cb(struct listener *l, void *arg)
{
	listener_udp_end(l, arg);
}

void forward_udp_takeover(struct forward *fw, const struct rule_config *by)
{
	if (!forward_draining(fw) || !(fw->cfg.proto & RULE_PROTO_UDP) || !(by->proto & RULE_PROTO_UDP) ||
	    !rule_addr_collide((const struct sockaddr *)&fw->cfg.listen,
			       (const struct sockaddr *)&by->listen))
		return;
	log_info("rule %s: its UDP address goes to the new rule %s; its sessions end",
		 fw->cfg.name, by->name);
	rulework_each_sync(&fw->work, forward_udp_end_cb, "the address was taken by a new rule");
}

struct forward_kill {
	const char *reason;
	uint64_t id;
	unsigned closed;
};

static void forward_kill_all_cb(struct listener *l, void *arg)
{
	struct forward_kill *k = arg;

	k->closed += relay_tcp_close_all(l, k->reason);
	k->closed += relay_udp_close_all(l, k->reason);
}

unsigned forward_kill_all(struct forward *fw, const char *reason)
{
	struct forward_kill k = { .reason = reason };

	rulework_each_sync(&fw->work, forward_kill_all_cb, &k);
	return k.closed;
}

static void forward_kill_id_cb(struct listener *l, void *arg)
{
	struct forward_kill *k = arg;

	if (!k->closed)
		k->closed = relay_tcp_close_id(l, k->id, k->reason) ||
			    relay_udp_close_id(l, k->id, k->reason);
}

bool forward_kill_id(struct forward *fw, uint64_t id)
{
	struct forward_kill k = { .reason = "killed by portfwdctl", .id = id };

	rulework_each_sync(&fw->work, forward_kill_id_cb, &k);
	return k.closed > 0;
}

struct forward_kill_if {
	bool (*match)(const struct sockaddr *client, const void *arg);
	const void *arg;
	const char *reason;
	unsigned closed;
};

static void forward_kill_if_cb(struct listener *l, void *arg)
{
	struct forward_kill_if *k = arg;

	k->closed += relay_tcp_close_if(l, k->match, k->arg, k->reason);
	k->closed += relay_udp_close_if(l, k->match, k->arg, k->reason);
}

unsigned forward_kill_if(struct forward *fw, bool (*match)(const struct sockaddr *client, const void *arg),
			 const void *arg, const char *reason)
{
	struct forward_kill_if k = { match, arg, reason, 0 };

	rulework_each_sync(&fw->work, forward_kill_if_cb, &k);
	return k.closed;
}

bool forward_drained(const struct forward *fw)
{
	return rulework_drained(&fw->work);
}

bool forward_draining(const struct forward *fw)
{
	return atomic_load(&fw->work.draining);
}

struct forward_collect {
	json_t *conns;
	double now;
};

static void forward_collect_cb(struct listener *l, void *arg)
{
	struct forward_collect *c = arg;

	relay_tcp_describe(l, c->conns, c->now);
	relay_udp_describe(l, c->conns, c->now);
}

void forward_collect(struct forward *fw, json_t *conns, double now)
{
	struct forward_collect c = { conns, now };

	rulework_each_sync(&fw->work, forward_collect_cb, &c);
}

void forward_stop(struct forward *fw)
{
	if (!fw)
		return;
	atomic_store(&fw->work.stopping, true);
	targets_health_stop(fw->targets);
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
	rulework_snap_unref(fw->snap);
	targets_unref(fw->targets);
	access_policy_unref(fw->cfg.access);
	rule_targets_unref(fw->cfg.targets);
	rulework_fini(&fw->work);
	free(fw);
}

static void forward_free_listener_cb(struct listener *l, void *arg)
{
	(void)arg;
	listener_free(l);
}

void forward_destroy(struct forward *fw)
{
	forward_stop(fw);
	rulework_each_sync(&fw->work, forward_free_listener_cb, NULL);
	forward_free(fw);
}

bool forward_ready(const struct forward *fw)
{
	return (!(fw->cfg.proto & RULE_PROTO_TCP) || fw->tcp.state == FORWARD_LISTENING) &&
	       (!(fw->cfg.proto & RULE_PROTO_UDP) || fw->udp.state == FORWARD_LISTENING);
}

const char *forward_state_name(const struct forward *fw)
{
	if (forward_draining(fw))
		return "draining";
	if (fw->disabled)
		return "disabled";
	return forward_ready(fw) ? "listening" : "failed";
}

void forward_stats(const struct forward *fw, struct rule_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < fw->work.nworkers; i++)
		stats_add(out, &fw->work.listeners[i]->stats);
}
