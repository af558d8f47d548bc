#include "relay_udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admit.h"
#include "alloc.h"
#include "clock.h"
#include "listener.h"
#include "log.h"
#include "proxyproto.h"
#include "ratelog.h"
#include "relay_sources.h"
#include "rulework.h"
#include "targets.h"
#include "udp_table.h"
#include "worker.h"

/*
 * Datagrams move in batches: recvmmsg fills up to WORKER_BATCH of the
 * worker's preallocated buffers, sendmmsg sends a run of them, so a busy
 * socket costs two system calls per batch and no allocation per datagram.
 *
 * A listener on a wildcard address (0.0.0.0, [::]) serves every address
 * of the host, and a reply must leave from the address its client sent
 * to: a client behind NAT, on a connected socket or a VPN drops a reply
 * from another address of the same host. Such a listener reads each
 * datagram's destination (IP_PKTINFO / IPV6_PKTINFO), a session is keyed
 * by client and destination, and its replies carry that destination as
 * their source. A listener bound to one address needs none of it.
 */

/* Batches read per readiness event, so one busy socket cannot starve the rest. */
#define RELAY_UDP_ROUNDS 4

/*
 * A session its target never answered ends after udp_unreplied_timeout
 * (when that is the shorter): a spoofed source never answers, so a flood
 * of them holds session slots for seconds, not for udp_idle_timeout.
 */
static double relay_udp_timeout(const struct udp_session *s)
{
	const struct rule_settings *set = &s->cfg->set;

	if (!s->replied && set->udp_unreplied_timeout < set->udp_idle_timeout)
		return set->udp_unreplied_timeout;
	return set->udp_idle_timeout;
}

static void relay_udp_session_end(struct udp_session *s, const char *reason)
{
	struct listener *l = s->rule;
	char client[RULE_ADDR_STRLEN], target[RULE_ADDR_STRLEN];

	/* Unanswered sessions at debug level: a flood of spoofed sources
	 * would otherwise write a line for each. */
	if (atomic_load_explicit(&l->worker->log_connections, memory_order_relaxed))
		log_msg(s->replied ? LOG_LVL_INFO : LOG_LVL_DEBUG,
			"udp %s: %s -> %s session ended after %.3fs, %llu datagrams (%llu bytes) to target, %llu datagrams (%llu bytes) to client: %s",
			s->cfg->name,
			rule_format_addr((struct sockaddr *)&s->client, client, sizeof(client)),
			rule_format_addr(s->taddr, target, sizeof(target)),
			clock_now() - s->started, (unsigned long long)s->dgrams_to_target,
			(unsigned long long)s->bytes_to_target,
			(unsigned long long)s->dgrams_to_client,
			(unsigned long long)s->bytes_to_client, reason);
	udp_table_remove(&l->sessions, s);
	if (!s->replied)
		TAILQ_REMOVE(&l->unreplied, s, unreplied_link);
	relay_sources_close(l, s->source, SOURCES_UDP);
	if (s->ev)
		event_free(s->ev);
	if (s->idle)
		event_free(s->idle);
	if (s->fd >= 0)
		close(s->fd);
	if (s->snap->targets && s->target >= 0)
		targets_closed(s->snap->targets, s->target);
	rulework_snap_unref(s->snap);
	free(s);
	STAT_SUB(&l->stats, udp_active, 1);
	rulework_udp_release(l->work);
	listener_udp_drained(l);
	rulework_unhold(l->work); /* last: a draining rule may be freed from here on */
}

static void relay_udp_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct udp_session *s = arg;
	double limit = relay_udp_timeout(s);
	double idle = clock_now() - s->last_active;
	struct timeval tv;

	(void)fd;
	(void)what;
	if (idle + 0.001 >= limit) {
		char why[64];

		STAT_ADD(&s->rule->stats, udp_sessions_expired, 1);
		snprintf(why, sizeof(why), "%s for %gs", s->replied ? "idle" : "unanswered", limit);
		relay_udp_session_end(s, why);
		return;
	}
	/* Traffic only stamps a time; re-arm for what remains. */
	tv = clock_timeval(limit - idle);
	evtimer_add(s->idle, &tv);
}

/* Points MSGS at the worker's buffers, ready for a recvmmsg of N. */
static void relay_udp_prepare(struct worker *w, struct mmsghdr *msgs, struct iovec *iov,
			      struct sockaddr_storage *from, int n)
{
	for (int i = 0; i < n; i++) {
		iov[i].iov_base = w->dgram[i];
		iov[i].iov_len = WORKER_DGRAM_MAX;
		memset(&msgs[i], 0, sizeof(msgs[i]));
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
		if (from) {
			msgs[i].msg_hdr.msg_name = &from[i];
			msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
		}
	}
}

/*
 * Sends N prepared messages on FD. A datagram the socket refuses (full
 * buffer, an ICMP error from the peer) is dropped: UDP may lose it. After
 * the call msg_len is the bytes sent, 0 for a dropped one. Returns how many
 * were sent.
 */
static int relay_udp_send(int fd, struct mmsghdr *msgs, int n)
{
	int sent = 0, i = 0;

	while (i < n) {
		int r = sendmmsg(fd, msgs + i, (unsigned)(n - i), MSG_DONTWAIT);

		if (r > 0) {
			sent += r;
			i += r;
		} else if (r < 0 && errno == EINTR) {
			continue;
		} else {
			msgs[i++].msg_len = 0;
		}
	}
	return sent;
}

/* Datagrams one UDP_SEGMENT send carries at most (the kernel's
 * UDP_MAX_SEGMENTS), and their bytes at most (one IPv4 datagram's worth). */
#define RELAY_UDP_GSO_SEGMENTS 64
#define RELAY_UDP_GSO_BYTES 65000

static bool relay_udp_gso;
static pthread_once_t relay_udp_gso_once = PTHREAD_ONCE_INIT;

/* The offloads at work, daemon-wide (portfwdctl metrics): sends that
 * carried several datagrams, buffers from clients that held several. One
 * relaxed add per such send or buffer, not per datagram. */
static _Atomic unsigned long long relay_udp_gso_sends, relay_udp_gro_receives;

void relay_udp_offload_stats(unsigned long long *gso_sends, unsigned long long *gro_receives)
{
	*gso_sends = atomic_load_explicit(&relay_udp_gso_sends, memory_order_relaxed);
	*gro_receives = atomic_load_explicit(&relay_udp_gro_receives, memory_order_relaxed);
}

/* UDP_SEGMENT came with Linux 4.18. An older kernel would ignore the
 * control message and send the run as one datagram: ask first. */
static void relay_udp_gso_probe(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), v = 0;
	socklen_t len = sizeof(v);

	relay_udp_gso = fd >= 0 && getsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, &len) == 0;
	if (fd >= 0)
		close(fd);
}

static bool relay_udp_gso_ok(void)
{
	pthread_once(&relay_udp_gso_once, relay_udp_gso_probe);
	return relay_udp_gso;
}

/*
 * How many of MSGS, from the first, make a run one UDP_SEGMENT send can
 * carry: datagrams of the first one's size, the last of them perhaps
 * shorter, each one buffer.
 */
static int relay_udp_gso_run(const struct mmsghdr *msgs, int n)
{
	size_t g = msgs[0].msg_hdr.msg_iov[0].iov_len, total = 0;
	int k = 0;

	if (g == 0)
		return 0;
	while (k < n && k < RELAY_UDP_GSO_SEGMENTS && msgs[k].msg_hdr.msg_iovlen == 1) {
		size_t len = msgs[k].msg_hdr.msg_iov[0].iov_len;

		/* An empty datagram would vanish into the run: it goes alone. */
		if (len == 0 || len > g || total + len > RELAY_UDP_GSO_BYTES)
			break;
		total += len;
		k++;
		if (len < g)
			break;
	}
	return k;
}

/*
 * Sends the NIOV buffers at IOV, as in MH (its address and control
 * message, if any), in one sendmsg with UDP_SEGMENT: the kernel (or the
 * network card) cuts them into datagrams of G bytes, the last perhaps
 * shorter. Returns 0, or -1 with errno.
 */
static int relay_udp_sendmsg_gso(int fd, const struct msghdr *mh, struct iovec *iov, size_t niov,
				 uint16_t g)
{
	union {
		char buf[UDP_PKTINFO_SPACE + CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} ctl;
	struct msghdr m = { .msg_name = mh->msg_name, .msg_namelen = mh->msg_namelen,
			    .msg_iov = iov, .msg_iovlen = niov, .msg_control = ctl.buf };
	struct cmsghdr *cm;

	/* A reply's source address (wildcard listeners) goes first. */
	memset(&ctl, 0, sizeof(ctl));
	if (mh->msg_controllen)
		memcpy(ctl.buf, mh->msg_control, mh->msg_controllen);
	m.msg_controllen = mh->msg_controllen + CMSG_SPACE(sizeof(g));
	cm = (struct cmsghdr *)(ctl.buf + mh->msg_controllen);
	cm->cmsg_level = SOL_UDP;
	cm->cmsg_type = UDP_SEGMENT;
	cm->cmsg_len = CMSG_LEN(sizeof(g));
	memcpy(CMSG_DATA(cm), &g, sizeof(g));
	for (;;) {
		if (sendmsg(fd, &m, MSG_DONTWAIT) >= 0) {
			atomic_fetch_add_explicit(&relay_udp_gso_sends, 1, memory_order_relaxed);
			return 0;
		}
		if (errno != EINTR)
			return -1;
	}
}

/* The run of K datagrams at MSGS, each one buffer, in one UDP_SEGMENT send. */
static int relay_udp_send_gso(int fd, struct mmsghdr *msgs, int k)
{
	struct iovec iov[RELAY_UDP_GSO_SEGMENTS];

	for (int i = 0; i < k; i++)
		iov[i] = msgs[i].msg_hdr.msg_iov[0];
	return relay_udp_sendmsg_gso(fd, &msgs[0].msg_hdr, iov, (size_t)k,
				     (uint16_t)msgs[0].msg_hdr.msg_iov[0].iov_len);
}

/* The kernel refused UDP_SEGMENT for this socket: not worth asking again. */
static bool relay_udp_gso_refused(int err)
{
	return err == EIO || err == EINVAL || err == ENOPROTOOPT || err == EOPNOTSUPP;
}

/*
 * Sends N prepared datagrams as relay_udp_send does, runs of equal size in
 * one UDP_SEGMENT call each (issue 16: iperf3's 1400-byte datagrams then
 * cost one system call and one trip through the stack per run, not per
 * datagram). *GSO false: not for this socket (the kernel refused it, e.g.
 * a path through IPsec, or a segment larger than the path's MTU); it is
 * set false when the kernel refuses, and the run goes one by one.
 */
static int relay_udp_send_runs(int fd, struct mmsghdr *msgs, int n, bool *gso)
{
	int sent = 0, i = 0, plain = 0;

	while (i < n) {
		int k = *gso && relay_udp_gso_ok() ? relay_udp_gso_run(msgs + i, n - i) : 0;

		if (k < 2) {
			i++;
			continue;
		}
		if (i > plain)
			sent += relay_udp_send(fd, msgs + plain, i - plain);
		if (relay_udp_send_gso(fd, msgs + i, k) == 0) {
			sent += k;
		} else {
			if (relay_udp_gso_refused(errno))
				*gso = false;
			sent += relay_udp_send(fd, msgs + i, k);
		}
		i += k;
		plain = i;
	}
	if (n > plain)
		sent += relay_udp_send(fd, msgs + plain, n - plain);
	return sent;
}

/*
 * The reflection guard: replies to a tracked source count against its
 * udp_datagrams_per_second too, so whatever the target sends for one
 * datagram, a (possibly spoofed) source gets no more than that. Keeps
 * the first N of MSGS that pass, in order; returns how many.
 */
static int relay_udp_reply_limit(struct udp_session *s, struct mmsghdr *msgs, struct iovec *iov,
				 int n)
{
	double now = s->last_active;
	int kept = 0;

	for (int i = 0; i < n; i++) {
		if (!relay_sources_datagram(s->rule, s->cfg, s->source,
					    (const struct sockaddr *)&s->client, SOURCES_OUT, now))
			continue;
		if (kept != i) {
			iov[kept] = iov[i];
			msgs[kept] = msgs[i];
			msgs[kept].msg_hdr.msg_iov = &iov[kept];
		}
		kept++;
	}
	return kept;
}

/* Replies from the target: back to the session's client, through the listener. */
static void relay_udp_session_cb(evutil_socket_t fd, short what, void *arg)
{
	struct udp_session *s = arg;
	struct listener *l = s->rule;
	struct mmsghdr msgs[WORKER_BATCH];
	struct iovec iov[WORKER_BATCH];

	(void)what;
	for (int round = 0; round < RELAY_UDP_ROUNDS; round++) {
		uint64_t bytes = 0;
		int n, sent;

		relay_udp_prepare(l->worker, msgs, iov, NULL, WORKER_BATCH);
		n = recvmmsg(fd, msgs, WORKER_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0) {
			/* ECONNREFUSED and the like: an ICMP error from the
			 * target's host (the socket is connected, so the kernel
			 * hands it over). It keeps one at a time: a burst of
			 * them counts once, and one that a send meets first
			 * makes that datagram a drop (udp_dropped_error).
			 * Nothing to send; the session lives on, and the
			 * target may listen later. */
			if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				STAT_ADD(&l->stats, udp_target_errors, 1);
				log_debug("udp %s: from target: %s", l->cfg->name, strerror(errno));
			}
			return;
		}
		s->last_active = clock_now();
		if (!s->replied) {
			s->replied = true;
			TAILQ_REMOVE(&l->unreplied, s, unreplied_link);
		}
		if (s->source != SOURCES_NONE)
			n = relay_udp_reply_limit(s, msgs, iov, n);
		for (int i = 0; i < n; i++) {
			iov[i].iov_len = msgs[i].msg_len;
			msgs[i].msg_hdr.msg_name = &s->client;
			msgs[i].msg_hdr.msg_namelen = s->client_len;
			/* From the address the client sent to (wildcard listeners). */
			if (s->reply_ctl_len) {
				msgs[i].msg_hdr.msg_control = s->reply_ctl.buf;
				msgs[i].msg_hdr.msg_controllen = s->reply_ctl_len;
			}
		}
		sent = l->udp_fd >= 0 ? relay_udp_send_runs(l->udp_fd, msgs, n, &s->gso_replies) : 0;
		if (sent < n)
			STAT_ADD(&l->stats, udp_dropped_error, n - sent);
		for (int i = 0; i < n && sent > 0; i++)
			bytes += msgs[i].msg_len;
		s->dgrams_to_client += (uint64_t)sent;
		s->bytes_to_client += bytes;
		STAT_ADD(&l->stats, udp_datagrams_to_client, sent);
		STAT_ADD(&l->stats, udp_bytes_to_client, bytes);
		if (n < WORKER_BATCH)
			return;
	}
}

/*
 * Makes S's PROXY protocol v2 header (DGRAM): from its client to the
 * address the client sent to, which on a wildcard listener is the
 * datagram's destination (pktinfo), else the listen address. Returns 0 or -1.
 */
static int relay_udp_pp_make(struct udp_session *s, const struct listener *l)
{
	struct sockaddr_storage dst;
	int n;

	/* The port the client sent to: its listener's, in a range. */
	rule_addr_set_port((const struct sockaddr *)&s->cfg->listen, l->port, &dst);
	if (s->local.family == AF_INET && dst.ss_family == AF_INET) {
		((struct sockaddr_in *)&dst)->sin_addr = s->local.addr.v4;
	} else if (s->local.family == AF_INET6 && dst.ss_family == AF_INET6) {
		((struct sockaddr_in6 *)&dst)->sin6_addr = s->local.addr.v6;
	}
	n = proxyproto_build((int)s->cfg->set.proxy_protocol, SOCK_DGRAM,
			     (const struct sockaddr *)&s->client, (const struct sockaddr *)&dst, s->pp,
			     sizeof(s->pp));
	if (n <= 0)
		return -1;
	s->pp_len = (uint8_t)n;
	return 0;
}

/*
 * A session that cannot be made drops its client's datagram (counted as
 * udp_dropped_error). The line saying why comes at most once a minute per
 * rule and failure (ratelog.h): out of descriptors, a flood of new
 * sources would otherwise write a line per datagram.
 */
static struct ratelog relay_udp_ratelog;

static void relay_udp_session_failed(struct listener *l, const char *what, const char *addr, int err)
{
	struct ratelog_note note;
	char key[RULE_NAME_MAX + 48], more[128];
	int len = snprintf(key, sizeof(key), "%s/%s/%d", l->cfg->name, what, err);

	if (!ratelog_allow(&relay_udp_ratelog, key, (size_t)len < sizeof(key) ? (size_t)len : sizeof(key) - 1,
			   clock_now(), &note))
		return;
	log_warning("udp %s: cannot %s %s: %s; dropping new clients' datagrams%s", l->cfg->name, what, addr,
		    strerror(err), ratelog_suffix(&note, more, sizeof(more)));
}

/* Binds FD to R's source address with IP_BIND_ADDRESS_NO_PORT, as
 * relay_tcp does: the port comes with connect. Returns 0 or -1 with errno. */
static int relay_udp_bind_source(int fd, const struct rule_config *r)
{
	int one = 1;

	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	return bind(fd, (const struct sockaddr *)&r->source, r->source_len);
}

static struct udp_session *relay_udp_session_new(struct listener *l,
						 const struct sockaddr_storage *client,
						 socklen_t client_len,
						 const struct udp_local *local, uint32_t source)
{
	const struct sockaddr *target = (const struct sockaddr *)&l->cfg->target;
	socklen_t target_len = l->cfg->target_len;
	struct targets *set = l->snap->targets;
	struct udp_session *s = alloc_zeroed(sizeof(*s));
	struct sockaddr_storage picked;
	struct timeval tv;
	char addr[RULE_ADDR_STRLEN];

	if (!s) {
		relay_udp_session_failed(l, "make a session for",
					 rule_format_addr((const struct sockaddr *)client, addr, sizeof(addr)),
					 ENOMEM);
		return NULL;
	}
	s->target = -1;
	s->tservice = l->cfg->target_service;
	/* The session keeps the target it starts with; source-hash gives a
	 * client the same one, session after session. */
	if (set) {
		int fam = l->cfg->source_len ? l->cfg->source.ss_family : AF_UNSPEC;
		uint64_t tried = 0;

		/* The first target with an address (of the source's family):
		 * a name may have none yet, or none of that family. */
		target_len = 0;
		while (!target_len && (s->target = targets_pick(set, (const struct sockaddr *)client, tried)) >= 0) {
			target_len = targets_addr_copy(set, (size_t)s->target, 0, fam, &picked);
			if (!target_len) {
				targets_closed(set, s->target);
				tried |= 1ULL << s->target;
			}
		}
		if (!target_len) {
			log_debug("udp %s: no target has an address%s yet (waiting for DNS); dropping the datagram of %s",
				  l->cfg->name, fam != AF_UNSPEC ? " of the source's family" : "",
				  rule_format_addr((const struct sockaddr *)client, addr, sizeof(addr)));
			free(s);
			return NULL;
		}
		target = (const struct sockaddr *)&picked;
		s->tservice = targets_service(set, (size_t)s->target);
	}
	/* A port range: the target's port for the one the client came to. */
	target_len = listener_target(l, l->cfg, target, target_len, &s->tss);
	target = (const struct sockaddr *)&s->tss;
	s->taddr = target;
	s->source = source;
	s->rule = l;
	s->snap = l->snap;
	s->cfg = l->cfg;
	s->id = worker_next_id(l->worker);
	s->fd = -1;
	s->gso = s->gso_replies = true;
	memcpy(&s->client, client, sizeof(s->client));
	s->client_len = client_len;
	s->local = *local;
	s->reply_ctl_len = udp_local_to_cmsg(local, &s->reply_ctl);
	s->started = s->last_active = clock_now();
	if (udp_table_key((struct sockaddr *)client, local, &s->key) < 0)
		goto fail;
	if (s->cfg->set.proxy_protocol != PROXYPROTO_NONE && relay_udp_pp_make(s, l) < 0) {
		log_error("udp %s: cannot make the PROXY protocol header", l->cfg->name);
		goto fail;
	}
	s->fd = socket(target->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd >= 0 && l->cfg->source_len && relay_udp_bind_source(s->fd, l->cfg) < 0) {
		int e = errno; /* before the formatting */

		relay_udp_session_failed(l, "bind the source address",
					 rule_format_host((const struct sockaddr *)&l->cfg->source, addr,
							  sizeof(addr)),
					 e);
		goto fail;
	}
	if (s->fd < 0 || connect(s->fd, target, target_len) < 0) {
		int e = errno;

		relay_udp_session_failed(l, "open a socket to the target",
					 rule_format_addr(target, addr, sizeof(addr)), e);
		goto fail;
	}
	s->ev = event_new(l->worker->base, s->fd, EV_READ | EV_PERSIST, relay_udp_session_cb, s);
	s->idle = evtimer_new(l->worker->base, relay_udp_idle_cb, s);
	tv = clock_timeval(relay_udp_timeout(s));
	if (!s->ev || !s->idle || event_add(s->ev, NULL) < 0 || evtimer_add(s->idle, &tv) < 0 ||
	    udp_table_add(&l->sessions, s) < 0) {
		relay_udp_session_failed(l, "make a session for",
					 rule_format_addr((const struct sockaddr *)client, addr, sizeof(addr)),
					 ENOMEM);
		goto fail;
	}
	TAILQ_INSERT_TAIL(&l->unreplied, s, unreplied_link);
	/* Counted, but no proof of life: a UDP target answers or not later,
	 * and a new client (maybe spoofed) must not mark it up. */
	if (set && s->target >= 0)
		targets_started(set, s->target);
	rulework_snap_ref(s->snap);
	rulework_hold(l->work);
	STAT_ADD(&l->stats, udp_active, 1);
	STAT_ADD(&l->stats, udp_sessions_created, 1);
	log_debug("udp %s: new session for %s", l->cfg->name,
		  rule_format_addr((struct sockaddr *)client, addr, sizeof(addr)));
	return s;
fail:
	if (s->ev)
		event_free(s->ev);
	if (s->idle)
		event_free(s->idle);
	if (s->fd >= 0)
		close(s->fd);
	if (set && s->target >= 0)
		targets_closed(set, s->target);
	free(s);
	return NULL;
}

static unsigned relay_udp_count(size_t len, uint16_t g);

/*
 * At max_udp_sessions: ends this worker's oldest session that its target
 * never answered, to make room for a new client, and takes its slot. An
 * answered session is never ended for this. Datagrams of the batch being
 * read (BATCH, N) that were meant for it are dropped. Returns true with
 * the slot claimed.
 */
static bool relay_udp_make_room(struct listener *l, struct udp_session **batch,
				const uint16_t *gro, const struct mmsghdr *msgs, int n)
{
	struct udp_session *old = TAILQ_FIRST(&l->unreplied);

	if (!old)
		return false;
	for (int i = 0; i < n; i++)
		if (batch[i] == old) {
			batch[i] = NULL;
			STAT_ADD(&l->stats, udp_dropped_limit, relay_udp_count(msgs[i].msg_len, gro[i]));
		}
	if (STAT_GET(&l->stats, udp_sessions_evicted) == 0)
		log_warning("udp %s: %u sessions, the max_udp_sessions limit; new clients take the places of sessions their target never answered",
			    l->cfg->name, l->cfg->set.max_udp_sessions);
	STAT_ADD(&l->stats, udp_sessions_evicted, 1);
	relay_udp_session_end(old, "unanswered, its place taken by a new client");
	return rulework_udp_claim(l->work);
}

/* The session of message N of a batch (MSGS, GRO: relay_udp_gro_size)
 * from FROM to LOCAL, made if there is room; NULL drops it. BATCH holds the
 * sessions of the N messages before it. */
static struct udp_session *relay_udp_session_for(struct listener *l,
						 const struct sockaddr_storage *from,
						 const struct udp_local *local,
						 struct udp_session **batch, const uint16_t *gro,
						 const struct mmsghdr *msgs, int n)
{
	unsigned count = relay_udp_count(msgs[n].msg_len, gro[n]);
	struct udp_session *s = udp_table_find(l->sessions, (const struct sockaddr *)from, local);
	uint32_t source;

	if (s)
		return s;
	/* Not admitted (lists, bans): dropped before a session exists. */
	if (!admit_client(l, (const struct sockaddr *)from, RULE_PROTO_UDP, count))
		return NULL;
	if (l->udp_draining) {
		/* A removed rule serves the sessions it has, and no new client. */
		STAT_ADD(&l->stats, udp_dropped_draining, count);
		return NULL;
	}
	if (relay_sources_udp_open(l, (const struct sockaddr *)from, count, &source) < 0)
		return NULL;
	if (!rulework_udp_claim(l->work) && !relay_udp_make_room(l, batch, gro, msgs, n)) {
		relay_sources_close(l, source, SOURCES_UDP);
		if (STAT_GET(&l->stats, udp_dropped_limit) == 0)
			log_warning("udp %s: %u sessions, the max_udp_sessions limit; dropping datagrams from new clients",
				    l->cfg->name, l->cfg->set.max_udp_sessions);
		STAT_ADD(&l->stats, udp_dropped_limit, count);
		return NULL;
	}
	s = relay_udp_session_new(l, from, msgs[n].msg_hdr.msg_namelen, local, source);
	if (!s) {
		rulework_udp_release(l->work);
		relay_sources_close(l, source, SOURCES_UDP);
		STAT_ADD(&l->stats, udp_dropped_error, count);
	}
	return s;
}

/*
 * UDP_GRO (set on listening sockets, forward.c): the kernel may hand over a
 * run of datagrams from one client as one buffer, with the size of each
 * (the last perhaps shorter). Returns that size for such a buffer of LEN
 * bytes, 0 for a single datagram.
 */
static uint16_t relay_udp_gro_size(struct msghdr *mh, size_t len)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		int g;

		if (!udp_cmsg_fits(mh, c))
			return 0;
		if (c->cmsg_level != SOL_UDP || c->cmsg_type != UDP_GRO ||
		    c->cmsg_len < CMSG_LEN(sizeof(g)))
			continue;
		memcpy(&g, CMSG_DATA(c), sizeof(g));
		return g > 0 && g <= UINT16_MAX && (size_t)g < len ? (uint16_t)g : 0;
	}
	return 0;
}

/* Datagrams in a buffer of LEN bytes whose datagrams are G bytes (0: one). */
static unsigned relay_udp_count(size_t len, uint16_t g)
{
	return g ? (unsigned)((len + g - 1) / g) : 1;
}

/*
 * A coalesced buffer (relay_udp_gro_size), DATA, to S's target: in one
 * UDP_SEGMENT send if it can, else datagram by datagram (each with the
 * session's PROXY header). Returns the datagrams sent; adds their client
 * bytes to *BYTES.
 */
static unsigned relay_udp_send_coalesced(struct udp_session *s, const struct iovec *data, uint16_t g,
					 uint64_t *bytes)
{
	struct msghdr none = { 0 };
	struct iovec one = *data;
	unsigned sent = 0;

	/* One datagram left (relay_udp_admit cut the rest): a plain send. */
	if (!s->pp_len && s->gso && data->iov_len > g && relay_udp_gso_ok()) {
		if (relay_udp_sendmsg_gso(s->fd, &none, &one, 1, g) == 0) {
			*bytes += data->iov_len;
			return relay_udp_count(data->iov_len, g);
		}
		if (relay_udp_gso_refused(errno))
			s->gso = false;
	}
	for (size_t off = 0; off < data->iov_len; off += g) {
		struct iovec v[2] = { { s->pp, s->pp_len },
				      { (char *)data->iov_base + off,
					data->iov_len - off < g ? data->iov_len - off : g } };
		struct msghdr mh = { .msg_iov = s->pp_len ? v : v + 1, .msg_iovlen = s->pp_len ? 2 : 1 };
		ssize_t r;

		do
			r = sendmsg(s->fd, &mh, MSG_DONTWAIT);
		while (r < 0 && errno == EINTR);
		if (r >= 0) {
			sent++;
			*bytes += v[1].iov_len;
		}
	}
	return sent;
}

/*
 * Sends N messages of S's, in order, to its target; a message with GRO[i]
 * set is a coalesced buffer. Returns the datagrams sent; adds the client's
 * bytes in them (not the PROXY headers) to *BYTES.
 */
static unsigned relay_udp_to_target(struct udp_session *s, struct mmsghdr *msgs,
				    const uint16_t *gro, int n, uint64_t *bytes)
{
	unsigned sent = 0;

	for (int k = 0; k < n;) {
		int m = k;

		if (gro[k]) {
			const struct msghdr *mh = &msgs[k].msg_hdr;

			sent += relay_udp_send_coalesced(s, &mh->msg_iov[mh->msg_iovlen - 1], gro[k], bytes);
			k++;
			continue;
		}
		while (m < n && !gro[m])
			m++;
		sent += (unsigned)relay_udp_send_runs(s->fd, msgs + k, m - k, &s->gso);
		for (; k < m; k++)
			if (msgs[k].msg_len >= s->pp_len)
				*bytes += msgs[k].msg_len - s->pp_len;
	}
	return sent;
}

/*
 * Per source (relay_udp_reply_limit): of message M from S's client (a
 * coalesced one of datagrams of G bytes), the datagrams its source may
 * send now, M cut to those; false if none.
 */
static bool relay_udp_admit(struct listener *l, struct udp_session *s,
			    const struct sockaddr_storage *from, struct mmsghdr *m, uint16_t g,
			    double now)
{
	size_t len = m->msg_len;
	unsigned ok = 0, count = relay_udp_count(len, g);

	if (s->source == SOURCES_NONE)
		return true;
	for (unsigned k = 0; k < count; k++)
		if (relay_sources_datagram(l, s->cfg, s->source, (const struct sockaddr *)from,
					   SOURCES_IN, now))
			ok++;
	if (ok < count && g)
		m->msg_len = (unsigned)(ok * g < len ? ok * g : len);
	return ok > 0;
}

/* Datagrams from clients: each to its session's target. */
void relay_udp_listener_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	struct mmsghdr msgs[WORKER_BATCH];
	struct iovec iov[WORKER_BATCH];
	struct iovec ppiov[WORKER_BATCH][2]; /* a session's PROXY header, then the datagram */
	struct sockaddr_storage from[WORKER_BATCH];
	struct udp_session *sess[WORKER_BATCH];
	uint16_t gro[WORKER_BATCH];
	union {
		char buf[UDP_PKTINFO_SPACE + CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl[WORKER_BATCH];
	struct udp_local local = { 0 };

	(void)what;
	for (int round = 0; round < RELAY_UDP_ROUNDS; round++) {
		double now;
		int n;

		relay_udp_prepare(l->worker, msgs, iov, from, WORKER_BATCH);
		for (int i = 0; i < WORKER_BATCH; i++) {
			msgs[i].msg_hdr.msg_control = ctl[i].buf;
			msgs[i].msg_hdr.msg_controllen = sizeof(ctl[i].buf);
		}
		n = recvmmsg(fd, msgs, WORKER_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0) {
			if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_debug("udp %s: recvmmsg: %s", l->cfg->name, strerror(errno));
			return;
		}
		now = clock_now();
		for (int i = 0; i < n; i++) {
			gro[i] = relay_udp_gro_size(&msgs[i].msg_hdr, msgs[i].msg_len);
			if (relay_udp_count(msgs[i].msg_len, gro[i]) > 1)
				atomic_fetch_add_explicit(&relay_udp_gro_receives, 1, memory_order_relaxed);
			if (l->udp_pktinfo && udp_local_from_msg(&msgs[i].msg_hdr, &local) < 0) {
				/* Cannot happen with IP_PKTINFO set; never guess a source. */
				sess[i] = NULL;
				STAT_ADD(&l->stats, udp_dropped_error, relay_udp_count(msgs[i].msg_len, gro[i]));
			} else {
				sess[i] = relay_udp_session_for(l, &from[i], &local, sess, gro, msgs, i);
				if (sess[i] && !relay_udp_admit(l, sess[i], &from[i], &msgs[i], gro[i], now))
					sess[i] = NULL;
			}
			iov[i].iov_len = msgs[i].msg_len;
			/* proxy_protocol: the header and the datagram leave as one, from
			 * two places, with no copy. */
			if (sess[i] && sess[i]->pp_len) {
				ppiov[i][0].iov_base = sess[i]->pp;
				ppiov[i][0].iov_len = sess[i]->pp_len;
				ppiov[i][1] = iov[i];
				msgs[i].msg_hdr.msg_iov = ppiov[i];
				msgs[i].msg_hdr.msg_iovlen = 2;
			}
			/* The session socket is connected: no address on the way out. */
			msgs[i].msg_hdr.msg_name = NULL;
			msgs[i].msg_hdr.msg_namelen = 0;
			msgs[i].msg_hdr.msg_control = NULL;
			msgs[i].msg_hdr.msg_controllen = 0;
		}
		/* Send each run of datagrams that share a session in one call. */
		for (int i = 0; i < n;) {
			struct udp_session *s = sess[i];
			uint64_t bytes = 0;
			unsigned want = 0, sent;
			int j = i;

			while (j < n && sess[j] == s)
				want += relay_udp_count(msgs[j].msg_len, gro[j]), j++;
			if (!s) {
				i = j;
				continue;
			}
			s->last_active = now;
			sent = relay_udp_to_target(s, msgs + i, gro + i, j - i, &bytes);
			if (sent < want)
				STAT_ADD(&l->stats, udp_dropped_error, want - sent);
			s->dgrams_to_target += sent;
			s->bytes_to_target += bytes;
			STAT_ADD(&l->stats, udp_datagrams_to_target, sent);
			STAT_ADD(&l->stats, udp_bytes_to_target, bytes);
			i = j;
		}
		if (n < WORKER_BATCH)
			return;
	}
}

unsigned relay_udp_close_all(struct listener *l, const char *reason)
{
	struct udp_session *s, *tmp;
	unsigned n = 0;

	HASH_ITER(hh, l->sessions, s, tmp) {
		relay_udp_session_end(s, reason);
		n++;
	}
	return n;
}

unsigned relay_udp_close_if(struct listener *l,
			    bool (*match)(const struct sockaddr *client, const void *arg),
			    const void *arg, const char *reason)
{
	struct udp_session *s, *tmp;
	unsigned n = 0;

	HASH_ITER(hh, l->sessions, s, tmp)
		if (match((const struct sockaddr *)&s->client, arg)) {
			relay_udp_session_end(s, reason);
			n++;
		}
	return n;
}

bool relay_udp_close_id(struct listener *l, uint64_t id, const char *reason)
{
	struct udp_session *s, *tmp;

	HASH_ITER(hh, l->sessions, s, tmp)
		if (s->id == id) {
			relay_udp_session_end(s, reason);
			return true;
		}
	return false;
}

void relay_udp_describe(struct listener *l, json_t *out, double now)
{
	char client[RULE_ADDR_STRLEN], target[RULE_ADDR_STRLEN], local[INET6_ADDRSTRLEN];
	struct udp_session *s, *tmp;

	HASH_ITER(hh, l->sessions, s, tmp) {
		json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:f, s:f, s:I, s:I, s:I, s:I, s:s, s:b}",
				       "id", (json_int_t)s->id,
				       "rule", s->cfg->name,
				       "proto", "udp",
				       "client", rule_format_addr((struct sockaddr *)&s->client, client, sizeof(client)),
				       "target", rule_format_addr(s->taddr, target, sizeof(target)),
				       "age", now - s->started,
				       "idle", now - s->last_active,
				       "datagrams_to_target", (json_int_t)s->dgrams_to_target,
				       "datagrams_to_client", (json_int_t)s->dgrams_to_client,
				       "bytes_to_target", (json_int_t)s->bytes_to_target,
				       "bytes_to_client", (json_int_t)s->bytes_to_client,
				       "state", "active",
				       "draining", atomic_load(&l->work->draining));

		if (o) {
			json_object_set_new(o, "answered", json_boolean(s->replied));
			json_object_set_new(o, "target_port", rule_port_json(s->taddr, s->tservice));
		}
		/* On a wildcard rule: the address the client sent to, which its
		 * replies come from (one client may have a session per address). */
		if (o && s->local.family &&
		    inet_ntop(s->local.family, &s->local.addr, local, sizeof(local)))
			json_object_set_new(o, "local", json_string(local));
		json_array_append_new(out, o);
	}
}
