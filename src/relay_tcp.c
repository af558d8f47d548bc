#include "relay_tcp.h"

#include <errno.h>
#include <math.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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
#include "worker.h"

/*
 * Each side has a read and a write event; each direction holds the bytes
 * read from one side that the other has not taken yet, at most buffer_size
 * of them: a side is read only while its direction has room, so a slow
 * receiver stops its sender. What is read is written at once; only what the
 * receiver does not take waits for its write event.
 *
 * A direction moves bytes one of two ways. Splice: socket -> pipe ->
 * socket with splice(2), never through user space; the pipe comes from the
 * worker's pool on the first byte and goes back when it is empty, so an idle
 * connection holds none. Copy: read into reserved evbuffer space (libevent
 * 2.1's own socket reads stop at 4 KiB a call), write with evbuffer_write.
 * Where splice is refused (EINVAL, ENOSYS) the direction switches to copy,
 * taking along what the pipe holds.
 */

/* Side indexes: the client we accepted and the target we connected to. */
enum { SIDE_CLIENT = 0, SIDE_TARGET = 1 };

/* Most bytes one copy-mode read moves. */
#define RELAY_TCP_CHUNK 65536

/* Targets one connection tries, within its connect_timeout. */
#define RELAY_TCP_ATTEMPTS 4

struct relay_dir {
	struct worker_pipe pipe; /* splice: .r < 0 while none is held */
	size_t piped;            /* splice: bytes in the pipe */
	size_t last_read;        /* splice: bytes the last read moved */
	uint64_t tick_bytes;     /* splice: bytes read by the last look at a grown pipe */
	double tick_time;        /* splice: and when that look was */
	double grow_after;       /* splice: no growing before (slow receiver, refused) */
	struct evbuffer *buf;    /* copy: made on first use */
	unsigned fills;          /* splice: reads in a row that filled the pipe */
	/* The flags together: 16 bytes less per direction than each after
	 * its neighbour (idle memory, issue 16). */
	bool splice;
	bool pipe_full;          /* splice: the pipe took no more; wait for the writer */
	bool from_empty;         /* splice: the last read began with the pipe empty */
	bool slow;               /* splice: its receiver cannot use the grown pipe */
};

struct relay_tcp_conn {
	TAILQ_ENTRY(relay_tcp_conn) link; /* in the listener's conns or waiting */
	struct listener *rule;
	struct rulework_snap *snap;     /* the rule as it was when the connection came */
	const struct rule_config *cfg; /* &snap->rule */
	uint64_t id;
	int fd[2]; /* -1 when not open */
	struct event *rev[2], *wev[2];
	bool rev_on[2], wev_on[2]; /* kept here: event_pending() takes the base lock */
	struct relay_dir dir[2]; /* dir[s]: read from side s, for the other */
	struct event *timer;     /* connect timeout, then idle timeout */
	struct sockaddr_storage client_addr;
	/* The target connected to or tried last, at the port its listener's
	 * maps to (port ranges); taddr points here. */
	struct sockaddr_storage tss;
	double started, last_active;
	uint64_t bytes[2]; /* bytes read from each side */
	bool waiting;      /* accepted over max_connections, not relayed yet */
	bool connected;
	bool pipe_timer; /* the timer is armed for relay_tcp_trim_pipes */
	unsigned long outq; /* bytes the kernel held for both sides at the last idle check */
	bool eof[2];   /* the side sent FIN: nothing more to read from it */
	bool shut[2];  /* we sent FIN to the side, after everything for it */
	int first_eof; /* who closed first, for the log; -1 if nobody yet */
	uint32_t source; /* its source's entry (per_source limits), or SOURCES_NONE */
	/* The PROXY protocol header (proxy_protocol), made at accept from the
	 * connection's snapshot: the target gets all pp_len bytes before any
	 * of the client's. pp_len 0: none. */
	uint8_t pp[PROXYPROTO_MAX];
	uint8_t pp_len, pp_sent;
	/* The target (targets.h): its index in snap->targets, -1 while none
	 * is picked or once its failure is reported; those tried; the time
	 * the whole connect may take and this attempt's share of it. */
	int target;
	size_t addr_k; /* which of a named target's addresses (IPv6 first) */
	double target_deadline; /* when this target's share of connect_timeout ends */
	double target_slice;    /* that share */
	uint64_t tried;
	unsigned attempts;
	double deadline, attempt_timeout;
	const struct sockaddr *taddr; /* the one connected to, or tried last */
	const char *tservice;
};

static const char *const side_name[2] = { "client", "target" };

static void relay_tcp_end(struct relay_tcp_conn *c, bool orderly, int level, const char *reason);

/* Bytes moved: the idle clock starts again, and so does its look at what
 * the kernel holds (relay_tcp_timer_cb). */
static void relay_tcp_traffic(struct relay_tcp_conn *c)
{
	c->last_active = clock_now();
	c->outq = 0;
}

/*
 * Ends the connection anywhere but at its orderly end (an error on either
 * side, a failed connect, a timeout, kill, drain_timeout, shutdown): both
 * sides get a reset, so neither mistakes a cut-off stream for a complete
 * one (an HTTP/1.0 body, a file copy).
 */
static void relay_tcp_close(struct relay_tcp_conn *c, int level, const char *reason)
{
	relay_tcp_end(c, false, level, reason);
}

/* Out of memory for a connection: a line a minute per rule (ratelog.h),
 * not one per connection. */
static struct ratelog relay_tcp_ratelog;

static void relay_tcp_out_of_memory(struct listener *l)
{
	struct ratelog_note note;
	char more[128];

	if (ratelog_allow(&relay_tcp_ratelog, l->cfg->name, strlen(l->cfg->name), clock_now(), &note))
		log_error("tcp %s: out of memory; resetting connections%s", l->cfg->name,
			  ratelog_suffix(&note, more, sizeof(more)));
}

/*
 * Keepalive probes go out only while nothing waits to be acknowledged: a
 * peer that vanishes in the middle of a transfer is found when the
 * retransmissions give up (tcp_retries2: about 15 minutes), or by
 * idle_timeout. TCP_USER_TIMEOUT would find it sooner, but since Linux
 * 5.11 it also ends a live receiver that keeps its window closed (a paused
 * download), and it shortens the connect to the target: not used.
 */
int relay_tcp_keepalive(int fd, const struct rule_settings *set)
{
	int on = set->keepalive, idle = (int)set->keepalive_idle;
	int intvl = (int)set->keepalive_interval, cnt = (int)set->keepalive_count;

	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) < 0)
		return -1;
	if (!on)
		return 0;
	if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0)
		return -1;
	return 0;
}

static size_t relay_dir_queued(const struct relay_dir *d)
{
	if (d->splice)
		return d->piped;
	return d->buf ? evbuffer_get_length(d->buf) : 0;
}

/* How much the direction may hold: buffer_size, or less if its pipe is
 * smaller; a grown pipe, all of it, or nothing more once its receiver is
 * found slow (relay_tcp_trim_pipes), until it is empty and given back. */
static size_t relay_dir_cap(const struct relay_dir *d, size_t limit)
{
	if (d->splice && d->pipe.r >= 0 && d->pipe.grown)
		return d->slow ? 0 : d->pipe.size;
	if (d->splice && d->pipe.r >= 0 && d->pipe.size < limit)
		return d->pipe.size;
	return limit;
}

static void relay_tcp_arm_timer(struct relay_tcp_conn *c, double after);

/* Gives D's empty pipe back to the worker (shrunk, if it grew). */
static void relay_dir_release(struct relay_tcp_conn *c, struct relay_dir *d)
{
	/* A grown pipe given back: growing again takes fills anew, and after
	 * a slow receiver, 10 s (bursts of room downstream look like speed). */
	if (d->pipe.grown)
		d->fills = 0;
	if (d->slow)
		d->grow_after = clock_now() + 10;
	d->slow = false;
	worker_pipe_put(c->rule->worker, &d->pipe);
}

/* Makes sure the connection's timer looks at its grown pipes within a second. */
static void relay_tcp_pipe_timer(struct relay_tcp_conn *c)
{
	double idle = c->cfg->set.idle_timeout;

	if (c->pipe_timer)
		return;
	c->pipe_timer = true;
	relay_tcp_arm_timer(c, idle > 0 && idle < 1 ? idle : 1);
}

/*
 * Gives an empty pipe back to the worker. A grown one stays with its
 * direction, unless that side has sent its FIN, until a look a second
 * later finds the direction moved less than the pipe holds in that second
 * (the timer, relay_tcp_trim_pipes): an idle connection holds no pipe,
 * and neither does one that only trickles. Given back at the first small
 * read instead, pipes were grown again and again: 934 grows in three
 * 256 MiB echo transfers (pfbench tcp-hash).
 */
static void relay_dir_put(struct relay_tcp_conn *c, struct relay_dir *d)
{
	if (d->pipe.grown && !c->eof[d - c->dir] && !d->slow) {
		relay_tcp_pipe_timer(c);
		return;
	}
	relay_dir_release(c, d);
}

/*
 * The look, about once a second, at the grown pipes (relay_dir_put). One
 * whose direction moved less than it holds in the time since the last look
 * is not needed: given back if empty, shrunk in place if what it holds fits
 * its first size; otherwise its receiver is slow, and it takes nothing more
 * until it is empty and given back (the bytes already on their way to the
 * receiver keep it fed meanwhile). Without this, a receiver that slowed
 * down kept a full grown pipe, and its share of the budget, to itself.
 * True while one is still held.
 */
static bool relay_tcp_trim_pipes(struct relay_tcp_conn *c)
{
	double now = clock_now();
	bool held = false;

	for (int s = 0; s < 2; s++) {
		struct relay_dir *d = &c->dir[s];
		uint64_t moved = c->bytes[s] - d->tick_bytes;
		double took = now - d->tick_time;

		if (d->pipe.r < 0 || !d->pipe.grown)
			continue;
		/* Judged over a second or so: the other direction's look may
		 * come sooner. */
		if (took >= 0.9) {
			log_debug("tcp %s: connection %llu: pipe of %zu KiB, %zu bytes in it, moved %llu bytes in %.2fs",
				  c->cfg->name, (unsigned long long)c->id, d->pipe.size >> 10, d->piped,
				  (unsigned long long)moved, took);
			d->tick_bytes = c->bytes[s];
			d->tick_time = now;
			if (!c->eof[s] && (double)moved >= (double)d->pipe.size * took)
				d->slow = false;
			else if (d->piped == 0)
				relay_dir_release(c, d);
			else
				d->slow = !worker_pipe_shrink(&d->pipe);
		}
		held |= d->pipe.r >= 0 && d->pipe.grown;
	}
	return held;
}

/*
 * Pipes that grow with the traffic. A direction whose reads fill its pipe
 * twice in a row, each from empty and each taken whole by its receiver,
 * grows it fourfold, to 1 MiB at most (or buffer_size if larger): each
 * wake-up then moves more, and the CPU per byte falls with the number of
 * wake-ups (issue 16: a 1 MiB pipe took
 * forwarding from 0.58-0.90 to 0.35-0.40 ns/B on a 2-vCPU Xeon, iperf3 1
 * stream). From empty: the receiver kept up and the sender had more, so a
 * larger pipe moves more per turn; a pipe topped up behind a slow receiver
 * would only hold more of its backlog. A quiet direction gives the growth
 * back (relay_dir_put); an idle connection holds no pipe at all.
 */
static void relay_dir_filled(struct relay_tcp_conn *c, struct relay_dir *d, bool full)
{
	size_t most = c->cfg->set.buffer_size > WORKER_PIPE_GROW_MAX ? c->cfg->set.buffer_size
								      : WORKER_PIPE_GROW_MAX;

	/* buffer_size 4096 counted a fill at every 4 KiB read and grew its
	 * 64 KiB pipe to 256 KiB (review of issue 16). */
	if (c->cfg->set.buffer_size < WORKER_PIPE_GROW_FROM)
		return;
	/* A read that found little: the traffic is not waiting on the pipe.
	 * (One that fills it by slots, small segments, counts in
	 * relay_tcp_read when the next read is refused.) */
	if (!full) {
		if (d->last_read < d->pipe.size / 4)
			d->fills = 0;
		return;
	}
	if (++d->fills < 2 || d->pipe.size >= most || clock_now() < d->grow_after)
		return;
	d->fills = 0;
	switch (worker_pipe_grow(&d->pipe, most)) {
	case 1:
		d->tick_bytes = c->bytes[d - c->dir];
		d->tick_time = clock_now();
		d->slow = false;
		relay_tcp_pipe_timer(c);
		log_debug("tcp %s: connection %llu: pipe grown to %zu KiB", c->cfg->name,
			  (unsigned long long)c->id, d->pipe.size >> 10);
		break;
	case -1: /* refused (pipe-max-size, the user's pipe pages, memory):
		  * not asked again for 10 s, as that may pass */
		d->grow_after = clock_now() + 10;
		break;
	}
}

/* Switches a direction from splice to copy, taking along what its pipe holds. */
static int relay_dir_to_copy(struct relay_tcp_conn *c, struct relay_dir *d)
{
	if (!d->buf && !(d->buf = evbuffer_new()))
		return -1;
	while (d->piped > 0) {
		int n = evbuffer_read(d->buf, d->pipe.r, (int)d->piped);

		if (n <= 0)
			return -1;
		d->piped -= (size_t)n;
	}
	if (d->pipe.r >= 0)
		worker_pipe_put(c->rule->worker, &d->pipe);
	d->splice = false;
	d->pipe_full = false;
	log_debug("tcp %s: connection %llu: splice refused, copying instead", c->cfg->name,
		  (unsigned long long)c->id);
	return 0;
}

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

/* True while the PROXY protocol header is not all with the target. */
static bool relay_tcp_pp_pending(const struct relay_tcp_conn *c)
{
	return c->pp_sent < c->pp_len;
}

/* Sets each socket's read and write interest from the connection's state. */
static void relay_tcp_update(struct relay_tcp_conn *c)
{
	size_t limit = c->cfg->set.buffer_size;

	for (int s = 0; s < 2; s++) {
		bool r = c->connected && !c->eof[s] && !c->dir[s].pipe_full &&
			 relay_dir_queued(&c->dir[s]) < relay_dir_cap(&c->dir[s], limit);
		bool w = c->connected ? !c->shut[s] && (relay_dir_queued(&c->dir[!s]) > 0 ||
							(s == SIDE_TARGET && relay_tcp_pp_pending(c)))
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
	relay_tcp_end(c, true, LOG_LVL_INFO, why);
	return true;
}

/* An error on side S (a reset, a keepalive or retransmission timeout, an
 * unreachable host...) ends the connection, and the other side gets a reset. */
static void relay_tcp_fail(struct relay_tcp_conn *c, int s, int err)
{
	char reason[160];

	if (err == ECONNRESET || err == EPIPE)
		snprintf(reason, sizeof(reason), "%s reset the connection", side_name[s]);
	else
		snprintf(reason, sizeof(reason), "%s error: %s", side_name[s], strerror(err));
	relay_tcp_close(c, LOG_LVL_INFO, reason);
}

static bool relay_again(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

/*
 * Writes what is left of the PROXY protocol header to the target. Returns
 * 1 once it is all sent, 0 while the socket takes no more (the client's
 * bytes wait behind it, in the pipe or the buffer, whichever path they
 * take), -1 if the connection ended.
 */
static int relay_tcp_pp_flush(struct relay_tcp_conn *c)
{
	while (relay_tcp_pp_pending(c)) {
		ssize_t n = send(c->fd[SIDE_TARGET], c->pp + c->pp_sent,
				 (size_t)(c->pp_len - c->pp_sent), MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			c->pp_sent = (uint8_t)(c->pp_sent + n);
			relay_tcp_traffic(c);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && relay_again(errno))
			return 0;
		relay_tcp_fail(c, SIDE_TARGET, n < 0 ? errno : EIO);
		return -1;
	}
	return 1;
}

/*
 * Writes what is queued for side D. Sends FIN to D once its partner has
 * sent FIN and everything is written. Returns -1 if the connection ended.
 */
static int relay_tcp_flush(struct relay_tcp_conn *c, int d)
{
	struct relay_dir *dir = &c->dir[!d];

	/* Nothing of the client's, not even its FIN, before the header. */
	if (d == SIDE_TARGET && relay_tcp_pp_pending(c)) {
		int r = relay_tcp_pp_flush(c);

		if (r <= 0)
			return r;
	}
	if (dir->splice && dir->piped > 0) {
		ssize_t n = splice(dir->pipe.r, NULL, c->fd[d], NULL, dir->piped,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

		if (n > 0) {
			relay_tcp_traffic(c);
			dir->piped -= (size_t)n;
			dir->pipe_full = false; /* slots freed: the reader may go on */
			/* The receiver did not take it all: a larger pipe would only
			 * hold more of its backlog (relay_dir_filled). */
			if (dir->piped > 0)
				dir->fills = 0;
			if (dir->piped == 0)
				relay_dir_put(c, dir);
		} else if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
			if (relay_dir_to_copy(c, dir) < 0) {
				relay_tcp_close(c, LOG_LVL_ERROR, "cannot switch from splice to copy");
				return -1;
			}
		} else if (n < 0 && !relay_again(errno)) {
			relay_tcp_fail(c, d, errno);
			return -1;
		}
	}
	if (!dir->splice && dir->buf && evbuffer_get_length(dir->buf) > 0) {
		int n = evbuffer_write(dir->buf, c->fd[d]);

		if (n > 0)
			relay_tcp_traffic(c);
		else if (n < 0 && !relay_again(errno)) {
			relay_tcp_fail(c, d, errno);
			return -1;
		}
	}
	if (c->eof[!d] && !c->shut[d] && relay_dir_queued(dir) == 0) {
		shutdown(c->fd[d], SHUT_WR);
		c->shut[d] = true;
		if (relay_tcp_maybe_done(c))
			return -1;
	}
	return 0;
}

/*
 * Whether D's pipe holds all it may: its cap (relay_dir_cap), which is
 * buffer_size while that is less than the pipe. The kernel rounds a pipe up
 * to a power of two pages (buffer_size 100000 makes 131072), and a pooled
 * pipe may be larger than this rule asks: judged against the pipe's size,
 * such a direction never counted a fill and never grew (review of issue 16).
 */
static bool relay_dir_full(const struct relay_tcp_conn *c, const struct relay_dir *d)
{
	size_t cap = relay_dir_cap(d, c->cfg->set.buffer_size);

	return cap > 0 && d->piped >= cap;
}

/* One read from side S into its direction. Returns bytes, 0 at EOF, -1 with errno. */
static ssize_t relay_tcp_read_some(struct relay_tcp_conn *c, int s, size_t room)
{
	struct relay_dir *dir = &c->dir[s];
	struct evbuffer_iovec vec;
	bool from_empty;
	ssize_t n;

	if (dir->splice) {
		if (dir->pipe.r < 0 &&
		    worker_pipe_get(c->rule->worker, c->cfg->set.buffer_size, &dir->pipe) < 0) {
			dir->pipe.r = dir->pipe.w = -1;
			if (relay_dir_to_copy(c, dir) < 0)
				return errno = ENOMEM, -1;
		} else {
			if (room > dir->pipe.size - dir->piped)
				room = dir->pipe.size - dir->piped;
			from_empty = dir->piped == 0;
			n = splice(c->fd[s], NULL, dir->pipe.w, NULL, room,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				dir->piped += (size_t)n;
				dir->last_read = (size_t)n;
				dir->from_empty = from_empty;
				STAT_ADD(&c->rule->stats, tcp_bytes_spliced, n);
				relay_dir_filled(c, dir, from_empty && relay_dir_full(c, dir));
			} else if (dir->piped == 0 && (n == 0 || relay_again(errno))) {
				/* The end, or nothing after all: an empty pipe goes
				 * back, not held by a half-closed connection. */
				int saved = errno;

				relay_dir_release(c, dir);
				errno = saved;
			}
			if (n >= 0 || (errno != EINVAL && errno != ENOSYS))
				return n;
			if (relay_dir_to_copy(c, dir) < 0)
				return errno = ENOMEM, -1;
		}
	}
	if (!dir->buf && !(dir->buf = evbuffer_new()))
		return errno = ENOMEM, -1;
	if (room > RELAY_TCP_CHUNK)
		room = RELAY_TCP_CHUNK;
	/* One contiguous region: simpler to commit, and one read fills it. */
	if (evbuffer_reserve_space(dir->buf, (ev_ssize_t)room, &vec, 1) != 1)
		return errno = ENOMEM, -1;
	n = read(c->fd[s], vec.iov_base, room);
	vec.iov_len = n > 0 ? (size_t)n : 0;
	evbuffer_commit_space(dir->buf, &vec, n > 0);
	return n;
}

static void relay_tcp_read(struct relay_tcp_conn *c, int s)
{
	struct relay_dir *dir = &c->dir[s];
	size_t cap = relay_dir_cap(dir, c->cfg->set.buffer_size);
	size_t queued = relay_dir_queued(dir);
	ssize_t n = relay_tcp_read_some(c, s, cap > queued ? cap - queued : 1);

	if (n < 0) {
		if (errno == ENOMEM) {
			relay_tcp_out_of_memory(c->rule);
			relay_tcp_close(c, LOG_LVL_DEBUG, "out of memory");
		} else if (!relay_again(errno)) {
			relay_tcp_fail(c, s, errno);
		} else if (dir->splice && dir->piped > 0) {
			/*
			 * The kernel fills a pipe by slots, one per received
			 * segment (16 in a 64 KiB pipe), so small segments fill
			 * it long before `piped` reaches its size. Reading again
			 * would fail again at once while the socket stays
			 * readable: stop reading until the writer frees a slot.
			 */
			dir->pipe_full = true;
			relay_dir_filled(c, dir, dir->from_empty);
			relay_tcp_update(c);
		}
		return;
	}
	if (n == 0) {
		c->eof[s] = true;
		if (c->first_eof < 0)
			c->first_eof = s;
	} else {
		c->bytes[s] += (uint64_t)n;
		if (s == SIDE_CLIENT)
			STAT_ADD(&c->rule->stats, tcp_bytes_to_target, n);
		else
			STAT_ADD(&c->rule->stats, tcp_bytes_to_client, n);
		relay_tcp_traffic(c);
	}
	if (relay_tcp_flush(c, !s) < 0)
		return;
	relay_tcp_update(c);
}

/* ERR is the errno of the failure (ETIMEDOUT for connect_timeout); WHY says it. */
static void relay_tcp_connect_failed(struct relay_tcp_conn *c, int err, const char *why)
{
	struct rule_counters *st = &c->rule->stats;
	char reason[256];

	STAT_ADD(st, tcp_connect_failed, 1);
	if (err == ECONNREFUSED)
		STAT_ADD(st, tcp_failed_refused, 1);
	else if (err == ETIMEDOUT)
		STAT_ADD(st, tcp_failed_timeout, 1);
	else if (err == EHOSTUNREACH || err == ENETUNREACH)
		STAT_ADD(st, tcp_failed_unreachable, 1);
	else
		STAT_ADD(st, tcp_failed_other, 1);
	snprintf(reason, sizeof(reason), "connect failed: %s", why);
	relay_tcp_close(c, LOG_LVL_WARNING, reason);
}

static void relay_tcp_target_failed(struct relay_tcp_conn *c, int err, const char *why);

static void relay_tcp_arm_timer(struct relay_tcp_conn *c, double after)
{
	struct timeval tv = clock_timeval(after);

	evtimer_add(c->timer, &tv);
}

static void relay_tcp_connected(struct relay_tcp_conn *c)
{
	if (c->snap->targets && c->target >= 0)
		targets_connected(c->snap->targets, c->target);
	c->connected = true;
	c->last_active = clock_now();
	evtimer_del(c->timer);
	if (c->cfg->set.idle_timeout > 0)
		relay_tcp_arm_timer(c, c->cfg->set.idle_timeout);
	log_debug("tcp %s: connection %llu connected to the target", c->cfg->name,
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
			relay_tcp_target_failed(c, err, strerror(err));
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

/* Bytes both sockets still hold to send, or sent and not yet acknowledged. */
static unsigned long relay_tcp_outq(const struct relay_tcp_conn *c)
{
	unsigned long total = 0;

	for (int s = 0; s < 2; s++) {
		int n = 0;

		if (c->fd[s] >= 0 && ioctl(c->fd[s], SIOCOUTQ, &n) == 0 && n > 0)
			total += (unsigned long)n;
	}
	return total;
}

static void relay_tcp_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay_tcp_conn *c = arg;
	double idle, limit, next;
	char why[64];

	(void)fd;
	(void)what;
	if (!c->connected) {
		snprintf(why, sizeof(why), "timed out after %gs", c->attempt_timeout);
		relay_tcp_target_failed(c, ETIMEDOUT, why);
		return;
	}
	next = relay_tcp_trim_pipes(c) ? 1 : HUGE_VAL;
	c->pipe_timer = next < HUGE_VAL;
	relay_tcp_update(c); /* a slow direction now takes less */
	/* Traffic only stamps a time; the timer re-arms for what remains. */
	limit = c->cfg->set.idle_timeout;
	idle = clock_now() - c->last_active;
	if (limit > 0 && idle + 0.001 >= limit) {
		/* Everything may be in the kernel's hands, a slow reader still
		 * taking it: while what the sockets hold goes down, it is not idle. */
		unsigned long outq = relay_tcp_outq(c);

		if (outq > 0 && outq != c->outq) {
			c->outq = outq;
			c->last_active = clock_now();
			relay_tcp_arm_timer(c, fmin(limit, next));
			return;
		}
		snprintf(why, sizeof(why), "idle for %gs", limit);
		relay_tcp_close(c, LOG_LVL_INFO, why);
		return;
	}
	if (limit > 0)
		next = fmin(next, limit - idle);
	if (next < HUGE_VAL)
		relay_tcp_arm_timer(c, next);
}

static void relay_dir_free(struct relay_tcp_conn *c, struct relay_dir *d)
{
	if (d->pipe.r >= 0) {
		if (d->piped == 0)
			worker_pipe_put(c->rule->worker, &d->pipe);
		else
			worker_pipe_close(&d->pipe);
	}
	if (d->buf)
		evbuffer_free(d->buf);
}

/* Frees the connection; ORDERLY when both sides ended it with FIN, else
 * each open socket is reset (SO_LINGER 0: close sends RST, drops unsent data). */
static void relay_tcp_end(struct relay_tcp_conn *c, bool orderly, int level, const char *reason)
{
	static const struct linger reset = { 1, 0 };
	struct listener *l = c->rule;
	char client[RULE_ADDR_STRLEN], target[RULE_ADDR_STRLEN];

	if (level <= LOG_LVL_WARNING || atomic_load_explicit(&l->worker->log_connections, memory_order_relaxed))
		log_msg(level, "tcp %s: %s -> %s closed after %.3fs, %llu bytes to target, %llu bytes to client: %s",
			c->cfg->name,
			rule_format_addr((struct sockaddr *)&c->client_addr, client, sizeof(client)),
			rule_format_addr(c->taddr, target, sizeof(target)),
			clock_now() - c->started, (unsigned long long)c->bytes[SIDE_CLIENT],
			(unsigned long long)c->bytes[SIDE_TARGET], reason);
	TAILQ_REMOVE(c->waiting ? &l->waiting : &l->conns, c, link);
	for (int s = 0; s < 2; s++) {
		if (c->rev[s])
			event_free(c->rev[s]);
		if (c->wev[s])
			event_free(c->wev[s]);
		relay_dir_free(c, &c->dir[s]);
		if (c->fd[s] >= 0) {
			if (!orderly)
				setsockopt(c->fd[s], SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
			close(c->fd[s]);
		}
	}
	if (c->timer)
		event_free(c->timer);
	if (!c->waiting) {
		STAT_SUB(&l->stats, tcp_active, 1);
		rulework_tcp_release(l->work);
	}
	relay_sources_close(l, c->source, SOURCES_TCP);
	if (c->snap->targets && c->target >= 0)
		targets_closed(c->snap->targets, c->target);
	rulework_snap_unref(c->snap);
	free(c);
	/* Last: a draining rule may be freed from here on. */
	rulework_unhold(l->work);
}

/*
 * Binds FD, a socket towards the target, to R's source address, port 0,
 * with IP_BIND_ADDRESS_NO_PORT: the port is chosen at connect, for the
 * pair of addresses, so the bind holds no port of its own. Returns 0, or
 * -1 with errno (EADDRNOTAVAIL: this host has no such address).
 */
static int relay_tcp_bind_source(int fd, const struct rule_config *r)
{
	int one = 1;

	/* Without it (a kernel older than 4.2) the bind takes a port at once:
	 * slower to run out of, not wrong. */
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	return bind(fd, (const struct sockaddr *)&r->source, r->source_len);
}

/*
 * Picks a target (one not tried yet) and opens a connection to it, with
 * this attempt's share of what is left of connect_timeout. No target left:
 * the connection fails with ERR and WHY, the last attempt's failure.
 */
static void relay_tcp_connect_target(struct relay_tcp_conn *c, int err, const char *why)
{
	struct listener *l = c->rule;
	struct event_base *base = l->worker->base;
	struct targets *set = c->snap->targets;
	const struct sockaddr *target = (const struct sockaddr *)&c->cfg->target;
	socklen_t target_len = c->cfg->target_len;
	unsigned max = 1;
	int one = 1, fd, i = -1;
	bool named_more = false;
	struct sockaddr_storage picked;

	if (set) {
		size_t n = targets_count(set);
		struct sockaddr_storage more;
		int fam = c->cfg->source_len ? c->cfg->source.ss_family : AF_UNSPEC;

		max = n < RELAY_TCP_ATTEMPTS ? (unsigned)n : RELAY_TCP_ATTEMPTS;
		/* c->target set: a name's next address (relay_tcp_target_failed). */
		for (;;) {
			if (c->target < 0) {
				c->addr_k = 0;
				i = c->attempts < max ? targets_pick(set, (struct sockaddr *)&c->client_addr, c->tried)
						      : -1;
				if (i < 0) {
					if (!err)
						relay_tcp_connect_failed(c, EHOSTUNREACH,
									 fam != AF_UNSPEC
										 ? "no target has an address of the source's family (waiting for DNS?)"
										 : "no target has an address yet (waiting for DNS)");
					else
						relay_tcp_connect_failed(c, err, why);
					return;
				}
				c->tservice = targets_service(set, (size_t)i);
				c->target = i;
				c->tried |= 1ULL << i;
				c->attempts++;
				/* This target's share of the time left (the first:
				 * of connect_timeout): all of its addresses are tried
				 * within it. */
				c->target_slice = (c->attempts == 1 ? c->cfg->set.connect_timeout
								    : c->deadline - clock_now()) /
						  (max >= c->attempts ? max - c->attempts + 1 : 1);
				c->target_deadline = clock_now() + c->target_slice;
			}
			i = c->target;
			target_len = targets_addr_copy(set, (size_t)i, c->addr_k, fam, &picked);
			if (target_len)
				break;
			/* No address (of the source's family), or its name lost
			 * that one since: no blame, and no attempt spent; the next
			 * target, if any (it stays in tried). */
			targets_closed(set, i);
			if (c->addr_k == 0)
				c->attempts--;
			c->target = -1;
		}
		target = (const struct sockaddr *)&picked;
		/* A name with another address after this one (IPv6, then IPv4):
		 * this one gets half the time left, the rest is for the next. */
		named_more = targets_addr_copy(set, (size_t)i, c->addr_k + 1, fam, &more) > 0;
	} else {
		c->attempts++;
		c->target_slice = c->cfg->set.connect_timeout;
		c->target_deadline = c->deadline;
	}
	/* A port range: the target's port for the one the client came to. */
	target_len = listener_target(l, c->cfg, target, target_len, &c->tss);
	target = (const struct sockaddr *)&c->tss;
	c->taddr = target;
	/* Each target has its share of what is left of connect_timeout (the
	 * first has it all when there is no other); a name's addresses share
	 * their target's: one with another after it takes half of what is left. */
	/* A target's first address has the whole slice (the time it says in
	 * the log is the one configured); a later one what is left of it. */
	c->attempt_timeout = c->addr_k == 0 ? c->target_slice : c->target_deadline - clock_now();
	if (named_more)
		c->attempt_timeout /= 2;
	if (c->attempt_timeout < 0.001)
		c->attempt_timeout = 0.001;

	fd = socket(target->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 && (errno == EMFILE || errno == ENFILE) && c->attempts == 1) {
		/* Out of descriptors: the client waits (unread) and is tried again
		 * when accepting resumes, rather than being dropped. */
		int e = errno;

		if (set)
			targets_closed(set, c->target); /* not the target's fault */
		c->target = -1;
		c->tried = 0;
		c->attempts = 0;
		STAT_SUB(&l->stats, tcp_active, 1);
		STAT_SUB(&l->stats, tcp_accepted, 1);
		c->waiting = true;
		TAILQ_REMOVE(&l->conns, c, link);
		TAILQ_INSERT_HEAD(&l->waiting, c, link);
		listener_tcp_out_of_fds(l, e);
		rulework_tcp_release(l->work);
		return;
	}
	if (fd < 0) {
		int e = errno;

		if (set)
			targets_closed(set, c->target); /* ours, not the target's */
		c->target = -1;
		relay_tcp_connect_failed(c, e, strerror(e));
		return;
	}
	c->fd[SIDE_TARGET] = fd;
	if (c->cfg->source_len && relay_tcp_bind_source(fd, c->cfg) < 0) {
		char reason[RULE_ADDR_STRLEN + 128], src[RULE_ADDR_STRLEN];
		int e = errno;

		snprintf(reason, sizeof(reason), "cannot bind the source address %s: %s",
			 rule_format_host((const struct sockaddr *)&c->cfg->source, src, sizeof(src)),
			 strerror(e));
		relay_tcp_connect_failed(c, e, reason); /* ours, not the target's */
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* The client's socket inherited it from the listening one. */
	relay_tcp_keepalive(fd, &c->cfg->set);
	c->rev[SIDE_TARGET] = event_new(base, fd, EV_READ | EV_PERSIST, relay_tcp_target_read_cb, c);
	c->wev[SIDE_TARGET] = event_new(base, fd, EV_WRITE | EV_PERSIST, relay_tcp_target_write_cb, c);
	if (!c->rev[SIDE_TARGET] || !c->wev[SIDE_TARGET]) {
		relay_tcp_out_of_memory(c->rule);
		relay_tcp_close(c, LOG_LVL_DEBUG, "out of memory");
		return;
	}
	if (connect(fd, target, target_len) == 0) {
		relay_tcp_connected(c);
		return;
	}
	if (errno != EINPROGRESS) {
		relay_tcp_target_failed(c, errno, strerror(errno));
		return;
	}
	/* The client is not read until the target is there; the kernel holds its bytes. */
	relay_tcp_arm_timer(c, c->attempt_timeout);
	relay_tcp_update(c);
}

/* Makes C's PROXY protocol header: the client's address, and the one it
 * connected to (its socket's own, which on a wildcard listener is the
 * address the client chose). Returns 0 or -1. */
static int relay_tcp_pp_make(struct relay_tcp_conn *c)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	int n;

	if (getsockname(c->fd[SIDE_CLIENT], (struct sockaddr *)&local, &len) < 0)
		return -1;
	n = proxyproto_build((int)c->cfg->set.proxy_protocol, SOCK_STREAM,
			     (const struct sockaddr *)&c->client_addr, (const struct sockaddr *)&local,
			     c->pp, sizeof(c->pp));
	if (n <= 0)
		return -1;
	c->pp_len = (uint8_t)n;
	return 0;
}

/*
 * The connect to the current target failed (ERR, WHY): the target hears of
 * it, and the client is tried on another while there is one and time left,
 * so it never sees the failure of one target while another is up.
 */
/*
 * True if a failed connect says nothing against the target as a whole:
 * this host's own shortage (no local port or buffer left), or a refusal
 * by one port of a port range, where the target's other ports may well
 * serve (one client at an unserved port must not take the range down).
 */
static bool relay_tcp_blameless(const struct relay_tcp_conn *c, int err)
{
	switch (err) {
	case EADDRNOTAVAIL:
	case ENOBUFS:
	case ENOMEM:
	case EAGAIN:
		return true;
	case ECONNREFUSED:
		return c->cfg->target_range;
	default:
		return false;
	}
}

static void relay_tcp_target_failed(struct relay_tcp_conn *c, int err, const char *why)
{
	struct targets *set = c->snap->targets;
	char addr[RULE_ADDR_STRLEN];

	struct sockaddr_storage next;
	bool same;

	if (!set || c->target < 0) {
		relay_tcp_connect_failed(c, err, why);
		return;
	}
	/* A name's next address, while there is time: the same target. */
	same = c->target_deadline - clock_now() >= 0.001 &&
	       targets_addr_copy(set, (size_t)c->target, c->addr_k + 1,
				 c->cfg->source_len ? c->cfg->source.ss_family : AF_UNSPEC, &next) > 0;
	if (same) {
		c->addr_k++;
	} else {
		if (relay_tcp_blameless(c, err))
			targets_closed(set, c->target);
		else
			targets_failed(set, c->target, err, why);
		c->target = -1;
		if (targets_count(set) == 1 || c->deadline - clock_now() < 0.001) {
			relay_tcp_connect_failed(c, err, why);
			return;
		}
	}
	/* Start afresh on the next one: the socket was never connected. */
	evtimer_del(c->timer);
	relay_tcp_want(c->rev[SIDE_TARGET], &c->rev_on[SIDE_TARGET], false);
	relay_tcp_want(c->wev[SIDE_TARGET], &c->wev_on[SIDE_TARGET], false);
	event_free(c->rev[SIDE_TARGET]);
	event_free(c->wev[SIDE_TARGET]);
	c->rev[SIDE_TARGET] = c->wev[SIDE_TARGET] = NULL;
	close(c->fd[SIDE_TARGET]);
	c->fd[SIDE_TARGET] = -1;
	log_debug("tcp %s: connection %llu: target %s failed (%s); trying %s", c->cfg->name,
		  (unsigned long long)c->id, rule_format_addr(c->taddr, addr, sizeof(addr)), why,
		  same ? "its next address" : "another");
	relay_tcp_connect_target(c, err, why);
}

/* Opens the connection to the target of a connection that holds a slot. */
static void relay_tcp_begin(struct relay_tcp_conn *c)
{
	struct listener *l = c->rule;

	c->waiting = false;
	TAILQ_REMOVE(&l->waiting, c, link);
	TAILQ_INSERT_TAIL(&l->conns, c, link);
	STAT_ADD(&l->stats, tcp_active, 1);
	STAT_ADD(&l->stats, tcp_accepted, 1);
	c->deadline = clock_now() + c->cfg->set.connect_timeout;
	relay_tcp_connect_target(c, 0, "");
}

void relay_tcp_accept(struct listener *l, evutil_socket_t fd,
		      const struct sockaddr *sa, int salen)
{
	static const struct linger reset = { 1, 0 };
	struct event_base *base = l->worker->base;
	struct relay_tcp_conn *c;
	uint32_t source;

	/* Not admitted (lists, bans): a reset at once, nothing opened to the target. */
	if (!admit_client(l, sa, RULE_PROTO_TCP, 1)) {
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
		evutil_closesocket(fd);
		return;
	}
	/* Before anything is spent on it: a source over its limits is reset. */
	if (relay_sources_tcp_open(l, fd, sa, &source) < 0)
		return;
	c = alloc_zeroed(sizeof(*c));
	if (!c) {
		/* A reset: the client must not take this for an answer. */
		relay_tcp_out_of_memory(l);
		relay_sources_close(l, source, SOURCES_TCP);
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
		evutil_closesocket(fd);
		return;
	}
	c->source = source;
	c->rule = l;
	c->snap = rulework_snap_ref(l->snap);
	c->cfg = &c->snap->rule;
	c->target = -1;
	listener_target(l, c->cfg, (const struct sockaddr *)&c->cfg->target, c->cfg->target_len, &c->tss);
	c->taddr = (const struct sockaddr *)&c->tss;
	c->tservice = c->cfg->target_service;
	c->id = worker_next_id(l->worker);
	rulework_hold(l->work);
	c->first_eof = -1;
	c->started = clock_now();
	c->fd[SIDE_CLIENT] = fd;
	c->fd[SIDE_TARGET] = -1;
	for (int s = 0; s < 2; s++) {
		c->dir[s].splice = c->cfg->set.splice;
		c->dir[s].pipe.r = c->dir[s].pipe.w = -1;
	}
	memcpy(&c->client_addr, sa,
	       (size_t)salen < sizeof(c->client_addr) ? (size_t)salen : sizeof(c->client_addr));
	c->waiting = true;
	TAILQ_INSERT_TAIL(&l->waiting, c, link);
	if (c->cfg->set.proxy_protocol != PROXYPROTO_NONE && relay_tcp_pp_make(c) < 0) {
		relay_tcp_close(c, LOG_LVL_ERROR, "cannot make the PROXY protocol header");
		return;
	}

	/* TCP_NODELAY: inherited from the listening socket (forward.c). */
	c->rev[SIDE_CLIENT] = event_new(base, fd, EV_READ | EV_PERSIST, relay_tcp_client_read_cb, c);
	c->wev[SIDE_CLIENT] = event_new(base, fd, EV_WRITE | EV_PERSIST, relay_tcp_client_write_cb, c);
	c->timer = evtimer_new(base, relay_tcp_timer_cb, c);
	if (!c->rev[SIDE_CLIENT] || !c->wev[SIDE_CLIENT] || !c->timer) {
		relay_tcp_out_of_memory(l);
		relay_tcp_close(c, LOG_LVL_DEBUG, "out of memory");
		return;
	}
	if (rulework_tcp_claim(l->work)) {
		relay_tcp_begin(c);
		if (rulework_tcp_full(l->work))
			listener_tcp_recheck(l);
		return;
	}
	/* Over max_connections (another worker took the last slot): wait. */
	listener_tcp_recheck(l);
}

void relay_tcp_start_waiting(struct listener *l)
{
	while (!l->tcp_paused_emfile && !TAILQ_EMPTY(&l->waiting) && rulework_tcp_claim(l->work))
		relay_tcp_begin(TAILQ_FIRST(&l->waiting));
}

unsigned relay_tcp_close_all(struct listener *l, const char *reason)
{
	unsigned n = 0;

	/* The waiting ones first, or closing a relayed one would start them. */
	for (; !TAILQ_EMPTY(&l->waiting); n++)
		relay_tcp_close(TAILQ_FIRST(&l->waiting), LOG_LVL_INFO, reason);
	for (; !TAILQ_EMPTY(&l->conns); n++)
		relay_tcp_close(TAILQ_FIRST(&l->conns), LOG_LVL_INFO, reason);
	return n;
}

unsigned relay_tcp_close_if(struct listener *l,
			    bool (*match)(const struct sockaddr *client, const void *arg),
			    const void *arg, const char *reason)
{
	struct relay_tcp_list *lists[2] = { &l->waiting, &l->conns };
	struct relay_tcp_conn *c, *next;
	unsigned n = 0;

	/* The waiting ones first, as in relay_tcp_close_all. */
	for (int i = 0; i < 2; i++)
		for (c = TAILQ_FIRST(lists[i]); c; c = next) {
			next = TAILQ_NEXT(c, link);
			if (match((const struct sockaddr *)&c->client_addr, arg)) {
				relay_tcp_close(c, LOG_LVL_INFO, reason);
				n++;
			}
		}
	return n;
}

bool relay_tcp_close_id(struct listener *l, uint64_t id, const char *reason)
{
	struct relay_tcp_list *lists[2] = { &l->waiting, &l->conns };
	struct relay_tcp_conn *c;

	for (int i = 0; i < 2; i++)
		TAILQ_FOREACH(c, lists[i], link)
			if (c->id == id) {
				relay_tcp_close(c, LOG_LVL_INFO, reason);
				return true;
			}
	return false;
}

/* What a person sees of a connection: where it is in its life. */
static const char *relay_tcp_state(const struct relay_tcp_conn *c)
{
	if (c->waiting)
		return "waiting";
	if (!c->connected)
		return "connecting";
	if (c->eof[SIDE_CLIENT] && c->eof[SIDE_TARGET])
		return "closing";
	if (c->eof[SIDE_CLIENT])
		return "client-closed";
	if (c->eof[SIDE_TARGET])
		return "target-closed";
	return "established";
}

static void relay_tcp_describe_list(struct listener *l, struct relay_tcp_list *list,
				    json_t *out, double now)
{
	char client[RULE_ADDR_STRLEN], target[RULE_ADDR_STRLEN];
	struct relay_tcp_conn *c;

	TAILQ_FOREACH(c, list, link) {
		double last = c->connected ? c->last_active : c->started;
		json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:f, s:f, s:I, s:I, s:s, s:b}",
				       "id", (json_int_t)c->id,
				       "rule", c->cfg->name,
				       "proto", "tcp",
				       "client", rule_format_addr((struct sockaddr *)&c->client_addr, client, sizeof(client)),
				       "target", rule_format_addr(c->taddr, target, sizeof(target)),
				       "age", now - c->started,
				       "idle", now - last,
				       "bytes_to_target", (json_int_t)c->bytes[SIDE_CLIENT],
				       "bytes_to_client", (json_int_t)c->bytes[SIDE_TARGET],
				       "state", relay_tcp_state(c),
				       "draining", atomic_load(&l->work->draining));

		if (o)
			json_object_set_new(o, "target_port", rule_port_json(c->taddr, c->tservice));
		json_array_append_new(out, o);
	}
}

void relay_tcp_describe(struct listener *l, json_t *out, double now)
{
	relay_tcp_describe_list(l, &l->conns, out, now);
	relay_tcp_describe_list(l, &l->waiting, out, now);
}
