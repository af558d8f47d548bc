#include "targets.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

static double targets_clock_default(void)
{
	return clock_now();
}

double (*targets_clock)(void) = targets_clock_default;

/* A health check under way (main thread only). */
struct targets_check {
	struct targets *set;
	size_t i;
	size_t k; /* which address of a named target */
	int fd;
	struct event *ev;
};

struct targets_entry {
	struct rule_target cfg; /* address and text: fixed for the set's life */
	struct targets *set;
	/* A named target (cfg.host): its addresses now (port 0), IPv6 first,
	 * from the resolver; under the set's lock. */
	struct sockaddr_storage addrs[RESOLVE_MAX_ADDRS];
	size_t naddrs;
	char dns_error[160]; /* the last lookup's error, "" after a good one */
	time_t resolved_at;  /* wall clock of the last good answer, 0: never */
	time_t stale_since;  /* lookups fail while the addresses stay; 0: fresh */
	long ttl;
	struct resolve_name *rn; /* main thread */
	/* The set that took this target over at a reload (one reference),
	 * and its place there: the counters and the health of the target live
	 * there from then on, and what connections of this set report goes
	 * there. Set once, under the lock. */
	struct targets *succ;
	size_t succ_i;
	/* Under the set's lock: */
	bool up;
	time_t since;     /* wall clock of the last change of up (or of the set's start) */
	char reason[160]; /* the last error, "" if none yet */
	double retry_at;  /* down: when a client may try it again (monotonic) */
	double backoff;   /* the wait after the last failure */
	unsigned active;  /* picked and not yet failed or closed */
	uint64_t connections, failures;
	unsigned ok_run, fail_run; /* health checks in a row */
	/* Main thread only. */
	struct targets_check *check;
};

struct targets {
	_Atomic unsigned refs;
	pthread_mutex_t lock;
	enum rule_balance balance;
	struct rule_health health;
	unsigned rr; /* round-robin: where the next pick starts (under the lock) */
	char rule[RULE_NAME_MAX + 1];
	struct event *timer; /* health checks; main thread */
	struct resolve *resolver; /* the names' resolver while resolving; main thread */
	enum resolve_family family;
	double resolve_min, resolve_max;
	/* The rule's listen side, for the answers that would lead back to it. */
	struct sockaddr_storage listen;
	unsigned listen_first, listen_last;
	bool target_range;
	int source_family; /* the rule's source's (AF_UNSPEC: none): the addresses it can use */
	struct event_base *base;
	size_t n;
	struct targets_entry e[];
};

static bool targets_entry_up(const struct targets_entry *e);

static void targets_lock(struct targets *t)
{
	pthread_mutex_lock(&t->lock);
}

static void targets_unlock(struct targets *t)
{
	pthread_mutex_unlock(&t->lock);
}

struct targets *targets_new(const struct rule_config *r, struct targets *old)
{
	size_t n = rule_ntargets(r);
	struct targets *t = calloc(1, sizeof(*t) + n * sizeof(t->e[0]));
	time_t now = time(NULL);

	if (!t)
		return NULL;
	if (pthread_mutex_init(&t->lock, NULL) != 0) {
		free(t);
		return NULL;
	}
	atomic_init(&t->refs, 1);
	t->family = (enum resolve_family)r->set.resolve;
	t->listen = r->listen;
	t->listen_first = rule_port_first(r);
	t->listen_last = rule_port_last(r);
	t->target_range = r->target_range;
	t->source_family = r->source_len ? r->source.ss_family : AF_UNSPEC;
	t->resolve_min = r->set.resolve_min;
	t->resolve_max = r->set.resolve_max;
	t->balance = r->balance;
	t->health = r->health;
	t->n = n;
	snprintf(t->rule, sizeof(t->rule), "%s", r->name);
	for (size_t i = 0; i < n; i++) {
		struct targets_entry *e = &t->e[i];
		socklen_t len;
		const struct sockaddr *sa = rule_target_addr(r, i, &len);

		if (r->targets)
			e->cfg = r->targets->t[i];
		else
			rule_format_addr(sa, e->cfg.text, sizeof(e->cfg.text));
		memcpy(&e->cfg.addr, sa, len);
		e->cfg.addr_len = len;
		snprintf(e->cfg.service, sizeof(e->cfg.service), "%s", rule_target_service(r, i));
		e->set = t;
		e->up = true;
		e->since = now;
		e->ttl = -1;
		if (e->cfg.host[0])
			snprintf(e->dns_error, sizeof(e->dns_error), "not resolved yet");
		for (size_t j = 0; old && j < old->n; j++) {
			const struct targets_entry *o = &old->e[j];

			if (!rule_addr_equal(sa, (const struct sockaddr *)&o->cfg.addr) ||
			    strcasecmp(e->cfg.host, o->cfg.host) != 0)
				continue;
			targets_lock(old);
			/* The same name: its addresses, until the new set's own lookup. */
			memcpy(e->addrs, o->addrs, sizeof(e->addrs));
			e->naddrs = o->naddrs;
			memcpy(e->dns_error, o->dns_error, sizeof(e->dns_error));
			e->resolved_at = o->resolved_at;
			e->stale_since = o->stale_since;
			e->ttl = o->ttl;
			e->up = o->up;
			e->since = o->since;
			memcpy(e->reason, o->reason, sizeof(e->reason));
			e->retry_at = o->retry_at;
			e->backoff = o->backoff;
			e->connections = o->connections;
			e->failures = o->failures;
			e->ok_run = o->ok_run;
			e->fail_run = o->fail_run;
			targets_unlock(old);
			/* Down for good only while checks were there to bring it up. */
			if (!e->up && !r->health.enabled && isinf(e->retry_at))
				e->retry_at = 0;
			break;
		}
	}
	return t;
}

struct targets *targets_ref(struct targets *t)
{
	if (t)
		atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
	return t;
}

void targets_unref(struct targets *t)
{
	if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < t->n; i++)
		targets_unref(t->e[i].succ);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/*
 * Locks the set where target *I of T lives now: T, or the set a reload
 * handed it to (and on, along the chain), *I becoming its place there.
 * The caller's reference to T keeps each set of the chain alive (each
 * holds one on its successor). Returns the locked set.
 */
static struct targets *targets_lock_live(struct targets *t, size_t *i)
{
	targets_lock(t);
	while (t->e[*i].succ) {
		struct targets *n = t->e[*i].succ;
		size_t j = t->e[*i].succ_i;

		targets_unlock(t);
		t = n;
		*i = j;
		targets_lock(t);
	}
	return t;
}

void targets_hand_over(struct targets *old, struct targets *nw)
{
	if (!old || !nw || old == nw)
		return;
	for (size_t j = 0; j < nw->n; j++)
		for (size_t i = 0; i < old->n; i++) {
			struct targets_entry *o = &old->e[i], *e = &nw->e[j];

			if (!rule_addr_equal((const struct sockaddr *)&o->cfg.addr,
					     (const struct sockaddr *)&e->cfg.addr) ||
			    strcasecmp(o->cfg.host, e->cfg.host) != 0)
				continue;
			/* Old before new, always: the chain only goes forward. */
			targets_lock(old);
			if (!o->succ) {
				targets_lock(nw);
				e->active += o->active;
				targets_unlock(nw);
				o->active = 0;
				o->succ = targets_ref(nw);
				o->succ_i = j;
			}
			targets_unlock(old);
			break;
		}
}

bool targets_same_config(const struct targets *t, const struct rule_config *r)
{
	if (!t || t->n != rule_ntargets(r) || t->balance != r->balance ||
	    t->health.enabled != r->health.enabled)
		return false;
	/* What answers are judged by (a loop back to the listen side) and
	 * which addresses are used (the source's family). */
	if (t->listen.ss_family != r->listen.ss_family ||
	    (t->listen.ss_family && !rule_addr_equal((const struct sockaddr *)&t->listen,
						     (const struct sockaddr *)&r->listen)) ||
	    t->listen_first != rule_port_first(r) || t->listen_last != rule_port_last(r) ||
	    t->target_range != r->target_range ||
	    t->source_family != (r->source_len ? r->source.ss_family : AF_UNSPEC))
		return false;
	if (t->health.enabled &&
	    (t->health.interval != r->health.interval || t->health.timeout != r->health.timeout ||
	     t->health.rise != r->health.rise || t->health.fall != r->health.fall))
		return false;
	/* A port's name (an edit of /etc/services) is shown by the set too. */
	for (size_t i = 0; i < t->n; i++)
		if (!rule_addr_equal((const struct sockaddr *)&t->e[i].cfg.addr,
		                     rule_target_addr(r, i, NULL)) ||
		    strcasecmp(t->e[i].cfg.host, r->targets ? r->targets->t[i].host : "") != 0 ||
		    (t->e[i].cfg.host[0] &&
		     (t->family != (enum resolve_family)r->set.resolve ||
		      t->resolve_min != r->set.resolve_min || t->resolve_max != r->set.resolve_max)) ||
		    strcmp(t->e[i].cfg.service, rule_target_service(r, i)) != 0)
			return false;
	return true;
}

size_t targets_count(const struct targets *t)
{
	return t->n;
}

const struct sockaddr *targets_addr(const struct targets *t, size_t i, socklen_t *len)
{
	if (len)
		*len = t->e[i].cfg.addr_len;
	return (const struct sockaddr *)&t->e[i].cfg.addr;
}

socklen_t targets_addr_copy(struct targets *t, size_t i, size_t k, int family,
                            struct sockaddr_storage *out)
{
	struct targets_entry *e = &t->e[i];
	socklen_t len = 0;

	if (!e->cfg.host[0]) {
		if (k > 0 || (family != AF_UNSPEC && e->cfg.addr.ss_family != family))
			return 0;
		memcpy(out, &e->cfg.addr, sizeof(*out));
		return e->cfg.addr_len;
	}
	targets_lock(t);
	for (size_t a = 0; a < e->naddrs; a++) {
		if (family != AF_UNSPEC && e->addrs[a].ss_family != family)
			continue;
		if (k-- > 0)
			continue;
		rule_addr_set_port((const struct sockaddr *)&e->addrs[a],
		                   rule_addr_port((const struct sockaddr *)&e->cfg.addr), out);
		len = out->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
		break;
	}
	targets_unlock(t);
	return len;
}

const char *targets_text_of(const struct targets *t, size_t i)
{
	return t->e[i].cfg.text;
}

const char *targets_host(const struct targets *t, size_t i)
{
	return t->e[i].cfg.host[0] ? t->e[i].cfg.host : NULL;
}

bool targets_any_up(struct targets *t)
{
	bool up = false;

	targets_lock(t);
	for (size_t i = 0; i < t->n && !up; i++)
		up = targets_entry_up(&t->e[i]);
	targets_unlock(t);
	return up;
}

bool targets_waiting_dns(struct targets *t)
{
	bool waiting = true;

	targets_lock(t);
	for (size_t i = 0; i < t->n && waiting; i++)
		waiting = t->e[i].cfg.host[0] && t->e[i].naddrs == 0;
	targets_unlock(t);
	return waiting;
}

const char *targets_service(const struct targets *t, size_t i)
{
	return t->e[i].cfg.service;
}

/* A 64-bit mix (splitmix64's finaliser). */
static uint64_t targets_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

/* FNV-1a over LEN bytes, continuing from H. */
static uint64_t targets_fnv(uint64_t h, const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* The client's address without its port; an IPv4-mapped IPv6 address as
 * IPv4, so a client is one whichever socket it came by. */
static uint64_t targets_client_hash(const struct sockaddr *sa)
{
	uint64_t h = 1469598103934665603ULL;

	if (!sa)
		return h;
	if (sa->sa_family == AF_INET)
		return targets_fnv(h, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a))
			return targets_fnv(h, &a->s6_addr[12], 4);
		return targets_fnv(h, a, 16);
	}
	return h;
}

/* The target's address and port, for rendezvous hashing. */
static uint64_t targets_entry_hash(const struct targets_entry *e)
{
	const struct sockaddr *sa = (const struct sockaddr *)&e->cfg.addr;
	uint64_t h = 1469598103934665603ULL;

	/* A name is its name (its placeholder address is every name's). */
	if (e->cfg.host[0]) {
		for (const char *c = e->cfg.host; *c; c++) {
			unsigned char l = (unsigned char)tolower((unsigned char)*c);

			h = targets_fnv(h, &l, 1);
		}
		return targets_fnv(h, &((const struct sockaddr_in *)sa)->sin_port, 2);
	}

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		h = targets_fnv(h, &in->sin_addr, 4);
		return targets_fnv(h, &in->sin_port, 2);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		h = targets_fnv(h, &in6->sin6_addr, 16);
		return targets_fnv(h, &in6->sin6_port, 2);
	}
	return h;
}

/* Index of the lowest set bit of M at or after START, going round; M != 0. */
static size_t targets_next_in(uint64_t m, size_t n, size_t start)
{
	for (size_t k = 0; k < n; k++) {
		size_t i = (start + k) % n;

		if (m & (1ULL << i))
			return i;
	}
	return 0; /* not reached: M has a bit below N */
}

/* The policy's choice among the targets in M (not empty). Under the lock. */
static size_t targets_choose(struct targets *t, uint64_t m, const struct sockaddr *client)
{
	size_t best = 0;

	switch (t->balance) {
	case RULE_BALANCE_ROUND_ROBIN:
		best = targets_next_in(m, t->n, t->rr % t->n);
		t->rr = (unsigned)(best + 1);
		return best;
	case RULE_BALANCE_SOURCE_HASH: {
		/* Rendezvous (highest random weight) hashing: a client keeps its
		 * target while it is up, and only the clients of a target that
		 * goes away move, whatever the order of the list. */
		uint64_t c = targets_client_hash(client), top = 0;
		bool any = false;

		for (size_t i = 0; i < t->n; i++) {
			uint64_t w;

			if (!(m & (1ULL << i)))
				continue;
			w = targets_mix(c ^ targets_mix(targets_entry_hash(&t->e[i])));
			if (!any || w > top) {
				top = w;
				best = i;
				any = true;
			}
		}
		return best;
	}
	case RULE_BALANCE_LEAST_CONN: {
		/* Ties go round, so an idle set spreads like round-robin. */
		size_t start = t->rr % t->n;
		bool any = false;

		for (size_t k = 0; k < t->n; k++) {
			size_t i = (start + k) % t->n;

			if ((m & (1ULL << i)) && (!any || t->e[i].active < t->e[best].active)) {
				best = i;
				any = true;
			}
		}
		t->rr = (unsigned)(best + 1);
		return best;
	}
	case RULE_BALANCE_FAILOVER:
	default:
		return targets_next_in(m, t->n, 0);
	}
}

int targets_pick(struct targets *t, const struct sockaddr *client, uint64_t exclude)
{
	uint64_t all = t->n >= 64 ? ~0ULL : (1ULL << t->n) - 1;
	uint64_t open = all & ~exclude, ready = 0;
	double now = targets_clock();
	size_t i;

	if (!open)
		return -1;
	targets_lock(t);
	/* A name with no address yet cannot be tried at all. */
	for (i = 0; i < t->n; i++)
		if (t->e[i].cfg.host[0] && t->e[i].naddrs == 0)
			open &= ~(1ULL << i);
	if (!open) {
		targets_unlock(t);
		return -1;
	}
	for (i = 0; i < t->n; i++)
		if ((open & (1ULL << i)) && (t->e[i].up || now >= t->e[i].retry_at))
			ready |= 1ULL << i;
	/* Every target left is down: try them anyway, one may be back. */
	i = targets_choose(t, ready ? ready : open, client);
	if (!t->e[i].up && now >= t->e[i].retry_at)
		/* One client tries it; the others wait for what it finds. */
		t->e[i].retry_at =
		    now + (t->e[i].backoff > 0 ? t->e[i].backoff : TARGETS_RETRY_MIN);
	if (t->e[i].succ) {
		/* Handed over at a reload (a client that waited from before it):
		 * counted where the target lives now. */
		size_t k = i;
		struct targets *o;

		targets_unlock(t);
		o = targets_lock_live(t, &k);
		o->e[k].active++;
		targets_unlock(o);
		return (int)i;
	}
	t->e[i].active++;
	targets_unlock(t);
	return (int)i;
}

/* Marks E up or down, logging the change. Under the lock. */
static void targets_set_up(struct targets *t, struct targets_entry *e, bool up, const char *why)
{
	if (e->up == up)
		return;
	e->up = up;
	e->since = time(NULL);
	if (up) {
		e->backoff = 0;
		e->retry_at = 0;
		log_info("rule %s: target %s is up%s%s", t->rule, e->cfg.text, why ? ": " : "",
		         why ? why : "");
	} else {
		log_warning("rule %s: target %s is down: %s", t->rule, e->cfg.text, why);
	}
}

void targets_connected(struct targets *t, int i)
{
	size_t k = (size_t)i;
	struct targets *o = targets_lock_live(t, &k);
	struct targets_entry *e = &o->e[k];

	e->connections++;
	e->fail_run = 0;
	targets_set_up(o, e, true, "a connection to it succeeded");
	targets_unlock(o);
}

void targets_started(struct targets *t, int i)
{
	size_t k = (size_t)i;
	struct targets *o = targets_lock_live(t, &k);

	o->e[k].connections++;
	targets_unlock(o);
}

void targets_failed(struct targets *t, int i, int err, const char *reason)
{
	size_t k = (size_t)i;
	double now = targets_clock();
	struct targets_entry *e;

	(void)err;
	t = targets_lock_live(t, &k);
	e = &t->e[k];
	if (e->active > 0)
		e->active--;
	e->failures++;
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
	e->backoff =
	    e->up || e->backoff <= 0 ? TARGETS_RETRY_MIN : fmin(e->backoff * 2, TARGETS_RETRY_MAX);
	e->retry_at = now + e->backoff;
	targets_set_up(t, e, false, reason);
	targets_unlock(t);
}

void targets_closed(struct targets *t, int i)
{
	size_t k = (size_t)i;
	struct targets *o = targets_lock_live(t, &k);

	if (o->e[k].active > 0)
		o->e[k].active--;
	targets_unlock(o);
}

bool targets_up(struct targets *t, size_t i)
{
	bool up;

	targets_lock(t);
	up = t->e[i].up;
	targets_unlock(t);
	return up;
}

void targets_health_result(struct targets *t, size_t i, bool ok, const char *why)
{
	struct targets_entry *e = &t->e[i];
	char msg[200];

	targets_lock(t);
	if (ok) {
		e->fail_run = 0;
		if (e->ok_run < UINT32_MAX)
			e->ok_run++;
		if (!e->up && e->ok_run >= t->health.rise) {
			snprintf(msg, sizeof(msg), "%u health checks in a row passed", e->ok_run);
			targets_set_up(t, e, true, msg);
		}
	} else {
		e->ok_run = 0;
		if (e->fail_run < UINT32_MAX)
			e->fail_run++;
		snprintf(e->reason, sizeof(e->reason), "health check: %s", why);
		if (e->up && e->fail_run >= t->health.fall) {
			snprintf(msg, sizeof(msg), "%u health checks in a row failed, the last: %s",
			         e->fail_run, why);
			targets_set_up(t, e, false, msg);
			/* Only the checks bring it back (or a client that tried
			 * it when every target was down). */
			e->retry_at = INFINITY;
		}
	}
	targets_unlock(t);
}

/* ---- active health checks, on the main loop ---- */

static void targets_check_start_at(struct targets *t, size_t i, size_t k);

static void targets_check_end(struct targets_check *c, bool ok, const char *why)
{
	struct targets *t = c->set;
	size_t i = c->i, k = c->k;
	struct sockaddr_storage next;

	if (c->ev)
		event_free(c->ev);
	if (c->fd >= 0)
		close(c->fd);
	t->e[i].check = NULL;
	free(c);
	/* A name passes if any of its addresses answers, as a client's
	 * connection tries them in turn. */
	if (!ok && targets_addr_copy(t, i, k + 1, t->source_family, &next)) {
		targets_check_start_at(t, i, k + 1);
		return;
	}
	targets_health_result(t, i, ok, why);
}

static void targets_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct targets_check *c = arg;
	int err = 0;
	socklen_t len = sizeof(err);
	char why[96];

	if (what & EV_TIMEOUT) {
		snprintf(why, sizeof(why), "connect timed out after %gs", c->set->health.timeout);
		targets_check_end(c, false, why);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err)
		snprintf(why, sizeof(why), "connect: %s", strerror(err));
	targets_check_end(c, err == 0, err ? why : NULL);
}

/* Starts a check of target I, unless one is under way. */
static void targets_check_start(struct targets *t, size_t i)
{
	targets_check_start_at(t, i, 0);
}

/* Starts a check of address K of target I, unless one is under way. */
static void targets_check_start_at(struct targets *t, size_t i, size_t k)
{
	struct sockaddr_storage ss;
	const struct sockaddr *sa = (const struct sockaddr *)&ss;
	socklen_t len;
	struct timeval tv = clock_timeval(t->health.timeout);
	struct targets_check *c;
	char why[96];

	if (t->e[i].check)
		return;
	/* A name: its first address now; none yet is a failed check. */
	len = targets_addr_copy(t, i, k, t->source_family, &ss);
	if (!len) {
		targets_health_result(t, i, false, "no address (waiting for DNS)");
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->set = t;
	c->i = i;
	c->k = k;
	t->e[i].check = c;
	c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		/* Our own shortage says nothing of the target: no result. */
		t->e[i].check = NULL;
		free(c);
		return;
	}
	if (connect(c->fd, sa, len) == 0) {
		targets_check_end(c, true, NULL);
		return;
	}
	if (errno != EINPROGRESS) {
		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		targets_check_end(c, false, why);
		return;
	}
	c->ev = event_new(t->base, c->fd, EV_WRITE, targets_check_cb, c);
	if (!c->ev || event_add(c->ev, &tv) < 0) {
		close(c->fd);
		if (c->ev)
			event_free(c->ev);
		t->e[i].check = NULL;
		free(c);
	}
}

static void targets_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct targets *t = arg;

	(void)fd;
	(void)what;
	for (size_t i = 0; i < t->n; i++)
		targets_check_start(t, i);
}

int targets_health_start(struct targets *t, struct event_base *base, const char *rule)
{
	struct timeval tv = clock_timeval(t->health.interval);

	if (!t->health.enabled || t->timer)
		return 0;
	t->base = base;
	t->timer = event_new(base, -1, EV_PERSIST, targets_tick_cb, t);
	if (!t->timer || event_add(t->timer, &tv) < 0) {
		log_error("rule %s: out of memory: no health checks", rule);
		if (t->timer)
			event_free(t->timer);
		t->timer = NULL;
		return -1;
	}
	targets_tick_cb(-1, 0, t); /* the first round now */
	return 0;
}

void targets_health_stop(struct targets *t)
{
	if (!t || !t->timer)
		return;
	event_free(t->timer);
	t->timer = NULL;
	for (size_t i = 0; i < t->n; i++) {
		struct targets_check *c = t->e[i].check;

		if (!c)
			continue;
		if (c->ev)
			event_free(c->ev);
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		t->e[i].check = NULL;
	}
}

/* ---- host names, on the main loop ---- */

/* Whether E can be reached, as status and metrics say it: a name with no
 * address yet cannot. Under the lock. */
static bool targets_entry_up(const struct targets_entry *e)
{
	return e->up && !(e->cfg.host[0] && e->naddrs == 0);
}

/*
 * Why an address a name resolved to is not used, or NULL: an answer is
 * input from the network. The unspecified, multicast and broadcast
 * addresses reach no one (or this host); an IPv4 address dressed as IPv6
 * (mapped or compatible) is one the name's A records should give; and an
 * address that is this rule's own listen address (or loopback, when it
 * listens on the wildcard or loopback), on its port, would loop.
 */
static const char *targets_bad_answer(const struct targets *t, const struct targets_entry *e,
				      const struct sockaddr_storage *a)
{
	unsigned port = rule_addr_port((const struct sockaddr *)&e->cfg.addr);
	const struct sockaddr *l = (const struct sockaddr *)&t->listen;
	bool loopback = false, same = false, on_port;

	if (a->ss_family == AF_INET) {
		uint32_t v = ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr);

		if (v == 0 || v == 0xffffffffu || (v >> 28) == 0xe)
			return "unspecified, broadcast or multicast";
		loopback = (v >> 24) == 127;
		same = l->sa_family == AF_INET &&
		       ((const struct sockaddr_in *)l)->sin_addr.s_addr == ((const struct sockaddr_in *)a)->sin_addr.s_addr;
	} else {
		const struct in6_addr *v6 = &((const struct sockaddr_in6 *)a)->sin6_addr;

		if (IN6_IS_ADDR_UNSPECIFIED(v6) || IN6_IS_ADDR_MULTICAST(v6))
			return "unspecified or multicast";
		if (IN6_IS_ADDR_V4MAPPED(v6) || IN6_IS_ADDR_V4COMPAT(v6))
			return "an IPv4 address in an IPv6 record";
		loopback = IN6_IS_ADDR_LOOPBACK(v6);
		same = l->sa_family == AF_INET6 &&
		       memcmp(&((const struct sockaddr_in6 *)l)->sin6_addr, v6, 16) == 0;
	}
	on_port = t->target_range ? port == t->listen_first
				  : port >= t->listen_first && port <= t->listen_last;
	if (on_port && l->sa_family == a->ss_family &&
	    (same || (loopback && (rule_addr_is_wildcard(l) || (a->ss_family == AF_INET
				? (ntohl(((const struct sockaddr_in *)l)->sin_addr.s_addr) >> 24) == 127
				: IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)l)->sin6_addr))))))
		return "this rule's own listen address: it would forward to itself";
	return NULL;
}

/* The resolver's news about entry E's name: its addresses go in under the
 * lock, for the workers' next picks (connections keep what they have). */
static void targets_resolved_cb(struct resolve_name *n, void *arg)
{
	struct targets_entry *e = arg;
	struct targets *t = e->set;
	struct sockaddr_storage a[RESOLVE_MAX_ADDRS];
	size_t na = resolve_addrs(n, a, RESOLVE_MAX_ADDRS);
	const char *err = resolve_error(n);
	char first[RULE_ADDR_STRLEN] = "";
	bool changed;

	if (na > RESOLVE_MAX_ADDRS)
		na = RESOLVE_MAX_ADDRS;
	/* Keep what can be used; say what cannot. */
	{
		size_t kept = 0;

		for (size_t k = 0; k < na; k++) {
			const char *why = targets_bad_answer(t, e, &a[k]);
			char bad[RULE_ADDR_STRLEN];

			if (!why) {
				a[kept++] = a[k];
				continue;
			}
			log_warning("rule %s: target %s resolves to %s, which is not used: %s", t->rule,
				    e->cfg.text, rule_format_host((const struct sockaddr *)&a[k], bad, sizeof(bad)),
				    why);
		}
		if (na && !kept && !err[0])
			err = "it resolves only to addresses that cannot be used (see the log)";
		na = kept;
	}
	if (na)
		rule_format_host((const struct sockaddr *)&a[0], first, sizeof(first));
	targets_lock(t);
	changed = na != e->naddrs || memcmp(a, e->addrs, na * sizeof(a[0])) != 0;
	memcpy(e->addrs, a, na * sizeof(a[0]));
	e->naddrs = na;
	snprintf(e->dns_error, sizeof(e->dns_error), "%s", err);
	if (!err[0]) {
		e->resolved_at = time(NULL);
		e->stale_since = 0;
		e->ttl = resolve_ttl(n);
	} else if (na && !e->stale_since) {
		e->stale_since = time(NULL);
	}
	targets_unlock(t);
	if (!err[0] && changed)
		log_info("rule %s: target %s resolves to %s%s (%zu address%s)", t->rule, e->cfg.text, first,
			 na > 1 ? " and more" : "", na, na == 1 ? "" : "es");
	else if (err[0] && na)
		log_warning("rule %s: target %s: %s; still using %s", t->rule, e->cfg.text, err, first);
	else if (err[0])
		log_warning("rule %s: target %s: %s; waiting for DNS", t->rule, e->cfg.text, err);
}

int targets_resolve_start(struct targets *t, struct resolve *r)
{
	int rc = 0;

	if (!r)
		return 0;
	t->resolver = r;
	for (size_t i = 0; i < t->n; i++) {
		struct targets_entry *e = &t->e[i];

		if (!e->cfg.host[0] || e->rn)
			continue;
		e->rn = resolve_watch(r, e->cfg.host, t->family, t->resolve_min, t->resolve_max,
				      targets_resolved_cb, e);
		if (!e->rn) {
			log_error("rule %s: target %s: out of memory; not resolved", t->rule, e->cfg.text);
			rc = -1;
		}
	}
	return rc;
}

void targets_resolve_stop(struct targets *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		resolve_unwatch(t->e[i].rn);
		t->e[i].rn = NULL;
	}
	t->resolver = NULL;
}

/* Adds what status shows of named entry E to O. Under the lock. */
static void targets_dns_json(const struct targets_entry *e, json_t *o)
{
	json_t *addrs = json_array(), *dns;
	char a[RULE_ADDR_STRLEN];

	for (size_t k = 0; k < e->naddrs; k++)
		json_array_append_new(addrs, json_string(rule_format_host((const struct sockaddr *)&e->addrs[k], a, sizeof(a))));
	dns = json_pack("{s:s, s:s, s:o, s:o, s:o, s:o}", "name", e->cfg.host, "state",
			e->naddrs == 0 ? "waiting" : e->stale_since ? "stale" : "resolved", "addresses",
			addrs, "error", e->dns_error[0] ? json_string(e->dns_error) : json_null(),
			"resolved_at", e->resolved_at ? json_integer((json_int_t)e->resolved_at) : json_null(),
			"stale_since", e->stale_since ? json_integer((json_int_t)e->stale_since) : json_null());
	if (dns && e->ttl >= 0)
		json_object_set_new(dns, "ttl", json_integer(e->ttl));
	json_object_set_new(o, "dns", dns);
}

/* ---- what status and metrics show ---- */

json_t *targets_json(struct targets *t)
{
	json_t *a = json_array();
	double now = targets_clock();
	char addr[RULE_ADDR_STRLEN];

	if (!a)
		return NULL;
	targets_lock(t);
	for (size_t i = 0; i < t->n; i++) {
		const struct targets_entry *e = &t->e[i];
		json_t *o = json_pack(
		    "{s:s, s:s, s:s, s:I, s:s?, s:i, s:I, s:I}", "address",
		    rule_format_addr((const struct sockaddr *)&e->cfg.addr, addr, sizeof(addr)),
		    "text", e->cfg.text, "state", targets_entry_up(e) ? "up" : "down", "since",
		    (json_int_t)e->since, "reason", e->reason[0] ? e->reason : NULL, "active",
		    (int)e->active, "connections", (json_int_t)e->connections, "failures",
		    (json_int_t)e->failures);

		if (o) {
			json_object_set_new(
			    o, "port",
			    rule_port_json((const struct sockaddr *)&e->cfg.addr, e->cfg.service));
			if (e->cfg.host[0]) {
				/* "address": the one new connections use first. */
				json_object_set_new(o, "address", e->naddrs
				                    ? json_string(rule_format_host((const struct sockaddr *)&e->addrs[0], addr, sizeof(addr)))
				                    : json_null());
				targets_dns_json(e, o);
			}
			if (!e->up)
				json_object_set_new(o, "retry_in",
				                    isinf(e->retry_at)
				                        ? json_null()
				                        : json_real(fmax(0, e->retry_at - now)));
		}
		json_array_append_new(a, o);
	}
	targets_unlock(t);
	return a;
}

void targets_text(struct targets *t, struct evbuffer *out)
{
	char addr[RULE_PORT_STRLEN], when[32];

	targets_lock(t);
	for (size_t i = 0; i < t->n; i++) {
		const struct targets_entry *e = &t->e[i];
		struct tm tm;

		localtime_r(&e->since, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		if (e->cfg.host[0]) {
			char first[RULE_ADDR_STRLEN] = "", stale[32] = "";

			if (e->naddrs)
				rule_format_host((const struct sockaddr *)&e->addrs[0], first, sizeof(first));
			if (e->stale_since) {
				struct tm st;

				localtime_r(&e->stale_since, &st);
				strftime(stale, sizeof(stale), "%Y-%m-%d %H:%M:%S", &st);
			}
			if (!e->naddrs)
				evbuffer_add_printf(out, "  target %s  waiting for DNS: %s\n", e->cfg.text,
				                    e->dns_error);
			else
				evbuffer_add_printf(out, "  target %s = %s%s%s%s%s%s%s\n", e->cfg.text, first,
				                    e->naddrs > 1 ? " (and more)" : "",
				                    e->stale_since ? ", stale since " : "", stale,
				                    e->stale_since ? " (the name does not resolve now: " : "",
				                    e->stale_since ? e->dns_error : "", e->stale_since ? ")" : "");
		}
		evbuffer_add_printf(
		    out,
		    "  target %s  %s since %s, %u active, %llu connections, %llu failures%s%s\n",
		    e->cfg.host[0] ? e->cfg.text
		                   : rule_format_port((const struct sockaddr *)&e->cfg.addr, e->cfg.service,
		                                      addr, sizeof(addr)),
		    targets_entry_up(e) ? "up" : "DOWN", when, e->active, (unsigned long long)e->connections,
		    (unsigned long long)e->failures, e->reason[0] ? "; last error: " : "",
		    e->reason);
	}
	targets_unlock(t);
}

void targets_stats(struct targets *t, size_t i, struct targets_stats *out)
{
	targets_lock(t);
	out->up = targets_entry_up(&t->e[i]);
	out->active = t->e[i].active;
	out->connections = t->e[i].connections;
	out->failures = t->e[i].failures;
	targets_unlock(t);
}
