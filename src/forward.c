#include "forward.h"

#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
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
static int forward_socket(const struct forward *fw, const struct sockaddr *sa, int socktype,
			  bool reuseport, bool listening)
{
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
	/* freebind: an address this host does not have yet (a VRRP address
	 * the standby takes over), bound now, live the moment it arrives.
	 * IP_FREEBIND on IPv6 sockets too: it covers both families on every
	 * kernel, where IPV6_FREEBIND came only with Linux 4.15. */
	if (fw->cfg.freebind && setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) < 0)
		goto fail;
	if (socktype == SOCK_DGRAM)
		forward_grow_buffers(fd);
	/* UDP_GRO (Linux 5.0): a run of datagrams from one client may come as
	 * one buffer (relay_udp.c), the network card's GRO merging them, and
	 * go on to the target in one send. Without it, one at a time. */
	if (socktype == SOCK_DGRAM &&
	    setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) < 0)
		log_debug("rule %s: no UDP_GRO: %s", fw->cfg.name, strerror(errno));
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
	/* A relay adds no delay of its own: the endpoints decide about Nagle.
	 * Set here, accepted sockets inherit it (issue 16: one setsockopt
	 * fewer per connection, strace). */
	if (socktype == SOCK_STREAM && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
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
	int fd;
	int socktype;
};

/* The listen address with port P. */
static const struct sockaddr *forward_port_addr(const struct forward *fw,
						const struct forward_port *p,
						struct sockaddr_storage *ss)
{
	rule_addr_set_port((const struct sockaddr *)&fw->cfg.listen, p->port, ss);
	return (const struct sockaddr *)ss;
}

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
static int forward_bind(struct forward *fw, struct forward_port *port, int socktype)
{
	int *fds = calloc(fw->work.nworkers, sizeof(*fds));
	struct sockaddr_storage ss;
	const struct sockaddr *sa = forward_port_addr(fw, port, &ss);
	int probe, err = 0;
	size_t n = 0;

	if (!fds)
		return ENOMEM;
	probe = forward_socket(fw, sa, socktype, false, false);
	if (probe < 0) {
		err = errno;
		goto out;
	}
	close(probe);
	for (n = 0; n < fw->work.nworkers; n++) {
		fds[n] = forward_socket(fw, sa, socktype, true, socktype == SOCK_STREAM);
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
		if (!a || rulework_post_one(&fw->work, i, port->ls[i], forward_attach_cb, a) < 0) {
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

/* The interface index check after a bind (see forward_start_port). */
static void forward_note_ifindex(struct forward *fw, unsigned ifindex)
{
	/* The index before and after the bind: the same one, or the
	 * interface came or was made again meanwhile and which one the
	 * sockets are on is not known (-1: the watch binds them anew).
	 * Every socket must be on the one recorded first. */
	unsigned after = iface_index(fw->cfg.interface);
	unsigned on = ifindex && ifindex == after ? ifindex : (unsigned)-1;

	fw->ifindex = !fw->ifindex || fw->ifindex == on ? on : (unsigned)-1;
}

/*
 * Binds SOCKTYPE on PORT. EXPLAIN: a failure may be explained in full
 * (finding who holds a port reads all of /proc: for a few ports a round,
 * not thousands) and logged. Returns 0, or -1 if the bind failed.
 */
static int forward_start_port(struct forward *fw, struct forward_port *port, int socktype,
			      bool explain)
{
	struct forward_port_proto *p = &port->p[socktype == SOCK_STREAM ? 0 : 1];
	const char *name = socktype == SOCK_STREAM ? "tcp" : "udp";
	char addr[RULE_ADDR_STRLEN], why[256];
	struct sockaddr_storage ss;
	const struct sockaddr *sa = forward_port_addr(fw, port, &ss);
	/* The index before the sockets are bound (by name): should the
	 * interface be made again meanwhile, the watch sees another index and
	 * binds them anew, never believing dead sockets are on the new one. */
	unsigned ifindex = fw->cfg.interface[0] ? iface_index(fw->cfg.interface) : 0;
	int err = forward_bind(fw, port, socktype);

	if (err) {
		/* Explained (and logged) once per cause. */
		if (p->state != FORWARD_FAILED || err != p->err || !p->why) {
			p->err = err;
			rule_format_addr(sa, addr, sizeof(addr));
			if (!explain) {
				snprintf(why, sizeof(why), "%s", strerror(err));
				why[0] = (char)tolower((unsigned char)why[0]);
			} else if (!fw->cfg.interface[0] ||
				   !iface_bind_error(err, fw->cfg.interface, why, sizeof(why))) {
				portinfo_bind_error(err, socktype, sa, why, sizeof(why));
			}
			free(p->why);
			p->why = strdup(why);
			if (explain)
				log_error("rule %s: cannot listen on %s %s: %s (retrying every %ds)",
					  fw->cfg.name, name, addr, why, FORWARD_RETRY_SECONDS);
		}
		p->state = FORWARD_FAILED;
		return -1;
	}
	p->state = FORWARD_LISTENING;
	p->err = 0;
	free(p->why);
	p->why = NULL;
	if (fw->cfg.interface[0])
		forward_note_ifindex(fw, ifindex);
	return 0;
}

/*
 * FW's state of protocol K (0 TCP, 1 UDP) from its ports': failed while any
 * active port fails, its error the port's (a single port) or the failed
 * ports, the first FORWARD_PORTS_SHOWN with why ("27020/tcp: address
 * already in use: ...; 27021/tcp: ...; and 3 more of 16 ports"). A port's
 * why is shown whole or not at all, and the count of the rest always fits:
 * the error is never cut in the middle of a word.
 */
static void forward_sum_proto(struct forward *fw, int k)
{
	/* Kept for "; and N more of M ports". */
	enum { MORE_ROOM = 40 };
	struct forward_proto *sum = k == 0 ? &fw->tcp : &fw->udp;
	const char *name = k == 0 ? "tcp" : "udp";
	size_t failed = 0, shown = 0, active = 0, used = 0;
	bool listening = true;

	sum->error[0] = '\0';
	sum->err = 0;
	for (size_t i = 0; i < fw->nports; i++) {
		const struct forward_port_proto *p = &fw->ports[i].p[k];

		if (!fw->ports[i].active)
			continue;
		active++;
		listening &= p->state == FORWARD_LISTENING;
		if (p->state != FORWARD_FAILED)
			continue;
		if (!rule_is_range(&fw->cfg)) {
			snprintf(sum->error, sizeof(sum->error), "%s", p->why ? p->why : "");
			sum->err = p->err;
		} else if (shown == failed && shown < FORWARD_PORTS_SHOWN) {
			int w = snprintf(sum->error + used, sizeof(sum->error) - used, "%s%u/%s: %s",
					 shown ? "; " : "", fw->ports[i].port, name, p->why ? p->why : "");

			if (w >= 0 && used + (size_t)w < sizeof(sum->error) - MORE_ROOM) {
				used += (size_t)w;
				shown++;
			} else {
				sum->error[used] = '\0'; /* counted with the rest */
			}
			sum->err = sum->err ? sum->err : p->err;
		}
		failed++;
	}
	if (rule_is_range(&fw->cfg) && failed > shown)
		snprintf(sum->error + used, sizeof(sum->error) - used, "%sand %zu more of %zu ports",
			 shown ? "; " : "", failed - shown, active);
	if (failed)
		sum->state = FORWARD_FAILED;
	else if (listening && active)
		sum->state = FORWARD_LISTENING;
	else if (sum->state == FORWARD_LISTENING)
		sum->state = FORWARD_CLOSED; /* new ports, about to be bound */
}

/* Binds the active ports not bound yet for SOCKTYPE. Returns 0, or -1 if a bind failed. */
static int forward_start_proto(struct forward *fw, int socktype)
{
	int k = socktype == SOCK_STREAM ? 0 : 1;
	const char *name = k == 0 ? "tcp" : "udp";
	char listen[RULE_PORT_STRLEN], target[RULE_HOST_MAX + RULE_PORT_STRLEN], route[RULE_ROUTE_STRLEN],
		more[64] = "";
	size_t bound = 0, failed = 0, explained = 0, quiet = 0;

	for (size_t i = 0; i < fw->nports; i++) {
		struct forward_port *port = &fw->ports[i];
		bool was = port->p[k].state == FORWARD_FAILED && port->p[k].why;

		if (!port->active || port->p[k].state == FORWARD_LISTENING)
			continue;
		if (forward_start_port(fw, port, socktype, was || explained < FORWARD_PORTS_SHOWN) < 0) {
			failed++;
			/* A port that fails for the first time, explained or not. */
			if (was)
				continue;
			if (explained < FORWARD_PORTS_SHOWN)
				explained++;
			else
				quiet++;
		} else {
			bound++;
		}
	}
	if (quiet)
		log_error("rule %s: cannot listen on %s on %zu more ports of %s (retrying every %ds)",
			  fw->cfg.name, name, quiet, rule_format_listen(&fw->cfg, listen, sizeof(listen)),
			  FORWARD_RETRY_SECONDS);
	forward_sum_proto(fw, k);
	if (!bound)
		return failed ? -1 : 0;
	/* The ports with their names and classes, as status shows them. */
	if (rule_ntargets(&fw->cfg) > 1)
		snprintf(more, sizeof(more), " and %zu more target%s (%s)", rule_ntargets(&fw->cfg) - 1,
			 rule_ntargets(&fw->cfg) == 2 ? "" : "s", rule_balance_name(fw->cfg.balance));
	if (!rule_is_range(&fw->cfg)) {
		log_info("rule %s: listening on %s %s%s%s, forwarding to %s%s", fw->cfg.name, name,
			 rule_format_port((const struct sockaddr *)&fw->cfg.listen, fw->cfg.listen_service,
					  listen, sizeof(listen)),
			 fw->cfg.interface[0] ? ", interface " : "", fw->cfg.interface,
			 rule_format_target_port(&fw->cfg, target, sizeof(target)), more);
	} else {
		log_info("rule %s: listening on %s on %zu of %u ports: %s%s%s%s", fw->cfg.name, name,
			 bound, rule_nports(&fw->cfg), rule_format_route(&fw->cfg, route, sizeof(route)),
			 fw->cfg.interface[0] ? ", interface " : "", fw->cfg.interface, more);
	}
	return failed ? -1 : 0;
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

/* The slot of PORT among FW's ports, or NULL. */
static struct forward_port *forward_port_find(struct forward *fw, unsigned port)
{
	/* Slots are added in runs of ascending ports: a range changed by a
	 * reload adds a run; search them all (at most 65535). */
	for (size_t i = 0; i < fw->nports; i++)
		if (fw->ports[i].port == port)
			return &fw->ports[i];
	return NULL;
}

/* The ports [FROM, TO) of fw->ports, whose listeners a worker links. */
struct forward_link {
	struct forward *fw;
	size_t from, to;
};

/* On worker I's thread: the new ports' listeners into its list and into
 * the rule's chain there (after the first, which never moves). */
static void forward_link_cb(struct listener *head, void *arg)
{
	struct forward_link *k = arg;
	size_t w = (size_t)head->worker->id;

	for (size_t i = k->from; i < k->to; i++) {
		struct listener *l = k->fw->ports[i].ls[w];

		listener_insert(l);
		if (l != head) {
			l->sibling = head->sibling;
			head->sibling = l;
		}
	}
}

/* Frees what forward_add_ports made of slot P before it was linked. */
static void forward_port_unmake(struct forward *fw, struct forward_port *p)
{
	for (size_t w = 0; p->ls && w < fw->work.nworkers; w++)
		listener_free(p->ls[w]);
	free(p->ls);
	p->ls = NULL;
}

/*
 * Adds a slot, with a listener in each worker holding SNAP, for each port
 * of CFG's range that FW has none for, and links them in the workers.
 * Returns 0, or -1 when out of memory (nothing added).
 */
static int forward_add_ports(struct forward *fw, const struct rule_config *cfg,
			     struct rulework_snap *snap)
{
	size_t nw = fw->work.nworkers, from = fw->nports, n = from;
	struct forward_port *grown;
	struct forward_link link;

	grown = realloc(fw->ports, (fw->nports + rule_nports(cfg)) * sizeof(*grown));
	if (!grown)
		return -1;
	fw->ports = grown;
	for (unsigned port = rule_port_first(cfg); port <= rule_port_last(cfg); port++) {
		struct forward_port *p = &fw->ports[n];

		if (forward_port_find(fw, port))
			continue;
		memset(p, 0, sizeof(*p));
		p->port = port;
		p->active = true;
		p->ls = calloc(nw ? nw : 1, sizeof(*p->ls));
		for (size_t w = 0; p->ls && w < nw; w++)
			if (!(p->ls[w] = listener_new(fw->work.workers[w], &fw->work, snap, port))) {
				forward_port_unmake(fw, p);
				break;
			}
		if (!p->ls) {
			while (n > from)
				forward_port_unmake(fw, &fw->ports[--n]);
			fw->nports = from;
			return -1;
		}
		n++;
		fw->nports = n; /* forward_port_find sees it */
	}
	fw->nports = n;
	if (n == from)
		return 0;
	/* The first port's listeners are the rule's first, for its life. */
	for (size_t w = 0; w < nw && !fw->work.listeners[w]; w++)
		fw->work.listeners[w] = fw->ports[0].ls[w];
	/* Into each worker's list on its own thread: a running worker walks it. */
	link = (struct forward_link){ fw, from, n };
	rulework_heads_sync(&fw->work, forward_link_cb, &link);
	return 0;
}

struct forward *forward_new(struct event_base *base, struct worker **workers,
			    size_t nworkers, const struct rule_config *cfg, struct resolve *resolver)
{
	struct forward *fw = calloc(1, sizeof(*fw));

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
	if (forward_add_ports(fw, cfg, fw->snap) < 0)
		goto fail;
	targets_health_start(fw->targets, base, cfg->name);
	fw->resolver = resolver;
	targets_resolve_start(fw->targets, resolver);
	forward_start(fw);
	return fw;
fail:
	free(fw->ports);
	if (fw->bind_retry)
		event_free(fw->bind_retry);
	rulework_snap_unref(fw->snap);
	targets_health_stop(fw->targets);
	targets_resolve_stop(fw->targets);
	targets_unref(fw->targets);
	access_policy_unref(fw->cfg.access);
	rule_targets_unref(fw->cfg.targets);
	rulework_fini(&fw->work);
	free(fw);
	return NULL;
}

/* Which ports a range change takes out of the rule, or brings back. */
struct forward_retire {
	unsigned first, last; /* the new range */
};

static void forward_retire_cb(struct listener *l, void *arg)
{
	const struct forward_retire *r = arg;
	bool in = l->port >= r->first && l->port <= r->last;

	if (in == l->retired)
		listener_retire(l, !in);
}

/*
 * The range changes to CFG's: the ports that leave it are closed (their
 * connections drain), the ones that come back to it are opened to binding.
 */
static void forward_set_range(struct forward *fw, const struct rule_config *cfg);

void forward_retire_outside(struct forward *fw, const struct rule_config *cfg)
{
	if (rule_port_first(&fw->cfg) != rule_port_first(cfg) ||
	    rule_port_last(&fw->cfg) != rule_port_last(cfg))
		forward_set_range(fw, cfg);
}

static void forward_set_range(struct forward *fw, const struct rule_config *cfg)
{
	struct forward_retire r = { rule_port_first(cfg), rule_port_last(cfg) };
	unsigned left = 0, back = 0;

	for (size_t i = 0; i < fw->nports; i++) {
		struct forward_port *p = &fw->ports[i];
		bool in = p->port >= r.first && p->port <= r.last;

		if (in == p->active)
			continue;
		left += !in;
		back += in;
		p->active = in;
		for (int k = 0; k < 2; k++) {
			p->p[k].state = FORWARD_CLOSED;
			free(p->p[k].why);
			p->p[k].why = NULL;
		}
	}
	if (left || back)
		rulework_each_sync(&fw->work, forward_retire_cb, &r);
	if (left)
		log_info("rule %s: %u port%s left its range: not accepting there; their connections carry on",
			 cfg->name, left, left == 1 ? "" : "s");
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
	/*
	 * Sockets bound the old way that the new settings would not bind:
	 * another interface, or an address bound with freebind that the rule
	 * may no longer bind without (a restart would fail on it). freebind
	 * turned on keeps the sockets bound (they need it no more), and the
	 * ports that failed are bound at once with it (bind_now).
	 */
	const char *why = strcmp(fw->cfg.interface, cfg->interface) != 0 ? "its interface changed"
			  : fw->cfg.freebind && !cfg->freebind	    ? "freebind was turned off"
								    : NULL;
	bool rebind = why != NULL;
	bool reopen = rebind || fw->disabled;
	bool bind_now = !fw->cfg.freebind && cfg->freebind;
	bool ranged = rule_port_first(&fw->cfg) != rule_port_first(cfg) ||
		      rule_port_last(&fw->cfg) != rule_port_last(cfg);
	struct rulework_snap *snap = NULL;

	/* A name of a port that /etc/services now spells otherwise is a new
	 * snapshot too (nothing rebinds): connections show what status does. */
	struct targets *targets = NULL;

	if (!rule_config_equal(&fw->snap->rule, cfg) ||
	    strcmp(fw->snap->rule.listen_service, cfg->listen_service) != 0 ||
	    strcmp(fw->snap->rule.target_service, cfg->target_service) != 0) {
		snap = rulework_snap_new(cfg);
		if (!snap)
			goto fail;
		/* Other targets (or policy, or checks): a new set, which keeps
		 * the state of the addresses it shares with the old one. The
		 * old set lives on with the connections that picked from it. */
		if (!targets_same_config(fw->targets, cfg)) {
			targets = targets_new(cfg, fw->targets);
			if (!targets)
				goto fail;
		}
		snap->targets = targets_ref(targets ? targets : fw->targets);
	}
	/* The new ports' listeners, unbound yet, with the new snapshot (a
	 * changed range is a changed rule). Before anything is swapped: a
	 * failure leaves the rule as it was. */
	if (ranged && forward_add_ports(fw, cfg, snap ? snap : fw->snap) < 0)
		goto fail;
	if (targets) {
		targets_health_stop(fw->targets);
		targets_resolve_stop(fw->targets);
		targets_hand_over(fw->targets, targets);
		targets_unref(fw->targets);
		fw->targets = targets;
		targets_health_start(targets, fw->base, cfg->name);
		targets_resolve_start(targets, fw->resolver);
	}
	/* Sockets bound the old way close before the new settings are in
	 * force, and a disabled rule opens only with them: nothing is accepted
	 * through another interface than the one the file now names, nor on an
	 * address bound by a freebind the file no longer gives. */
	if (rebind && !fw->disabled) {
		log_info("rule %s: %s: binding its sockets again", cfg->name, why);
		forward_close(fw, forward_close_cb, (void *)why);
	}
	if (ranged)
		forward_set_range(fw, cfg);
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
	} else if (ranged || bind_now) {
		forward_sum_proto(fw, 0);
		forward_sum_proto(fw, 1);
		forward_start(fw);
	}
	return 0;
fail:
	/* Out of memory: the old settings stay, and so do the ports the old
	 * range has (forward_retire_outside may have closed some already). */
	targets_unref(targets);
	rulework_snap_unref(snap);
	forward_set_range(fw, &fw->cfg);
	if (!fw->disabled && !forward_draining(fw))
		forward_start(fw);
	return -1;
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
	for (size_t i = 0; i < fw->nports; i++)
		for (int k = 0; k < 2; k++) {
			fw->ports[i].p[k].state = FORWARD_CLOSED;
			free(fw->ports[i].p[k].why);
			fw->ports[i].p[k].why = NULL;
		}
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
	/* Nothing new will pick from them. */
	targets_health_stop(fw->targets);
	targets_resolve_stop(fw->targets);
	forward_close(fw, forward_drain_cb, NULL);
	fw->disabled = false;
	atomic_store(&fw->work.draining, true);
	fw->drain_started = now;
	log_info("rule %s: removed: not accepting; draining %u connection%s and %u UDP session%s",
		 fw->cfg.name, atomic_load(&fw->work.tcp_active),
		 atomic_load(&fw->work.tcp_active) == 1 ? "" : "s", atomic_load(&fw->work.udp_active),
		 atomic_load(&fw->work.udp_active) == 1 ? "" : "s");
}

/* The listeners whose UDP sockets BY wants. */
struct forward_takeover {
	const struct forward *fw;
	const struct rule_config *by;
};

/* True if a socket of FW on PORT keeps rule BY from binding its UDP. */
static bool forward_port_blocks(const struct forward *fw, unsigned port, const struct rule_config *by)
{
	struct sockaddr_storage mine, theirs;

	if (port < rule_port_first(by) || port > rule_port_last(by))
		return false;
	rule_addr_set_port((const struct sockaddr *)&fw->cfg.listen, port, &mine);
	rule_addr_set_port((const struct sockaddr *)&by->listen, port, &theirs);
	return rule_addr_collide((const struct sockaddr *)&mine, (const struct sockaddr *)&theirs);
}

static void forward_takeover_cb(struct listener *l, void *arg)
{
	const struct forward_takeover *t = arg;

	if ((l->retired || forward_draining(t->fw)) && forward_port_blocks(t->fw, l->port, t->by))
		listener_udp_end(l, "the address was taken by another rule");
}

void forward_udp_takeover(struct forward *fw, const struct rule_config *by)
{
	struct forward_takeover t = { fw, by };
	bool any = false;

	if (!fw || !(fw->cfg.proto & RULE_PROTO_UDP) || !(by->proto & RULE_PROTO_UDP))
		return;
	for (size_t i = 0; i < fw->nports && !any; i++)
		any = (!fw->ports[i].active || forward_draining(fw)) &&
		      forward_port_blocks(fw, fw->ports[i].port, by);
	if (!any)
		return;
	if (!forward_draining(fw))
		log_info("rule %s: the UDP addresses of ports that left its range go to rule %s; their sessions end",
			 fw->cfg.name, by->name);
	else if (rule_is_range(&fw->cfg))
		log_info("rule %s: its UDP addresses go to the new rule %s; their sessions end",
			 fw->cfg.name, by->name);
	else
		log_info("rule %s: its UDP address goes to the new rule %s; its sessions end",
			 fw->cfg.name, by->name);
	rulework_each_sync(&fw->work, forward_takeover_cb, &t);
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
	targets_resolve_stop(fw->targets);
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
	for (size_t i = 0; i < fw->nports; i++) {
		free(fw->ports[i].ls);
		for (int k = 0; k < 2; k++)
			free(fw->ports[i].p[k].why);
	}
	free(fw->ports);
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
	if (!forward_ready(fw))
		return "failed";
	/* Bound, but no target has an address yet: a client would be refused. */
	return fw->targets && targets_waiting_dns(fw->targets) ? "waiting for DNS" : "listening";
}

void forward_stats(const struct forward *fw, struct rule_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < fw->nports; i++)
		forward_port_stats(fw, &fw->ports[i], out);
}

void forward_port_stats(const struct forward *fw, const struct forward_port *p,
			struct rule_stats *out)
{
	for (size_t w = 0; w < fw->work.nworkers; w++)
		stats_add(out, &p->ls[w]->stats);
}
