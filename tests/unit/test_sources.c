/*
 * The per-source table (sources.c) and the rate-limited logger (ratelog.c):
 * counts and limits, IPv6 prefixes, the memory bound and eviction under a
 * flood of new sources, refusal when only live sources are left, and many
 * threads at once (run it under SANITIZE=thread too).
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "ratelog.h"
#include "sources.h"
#include "check_run.h"

static struct sockaddr_storage v4(uint32_t addr)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(addr);
	sin->sin_port = htons(40000);
	return ss;
}

static struct sockaddr_storage v6(const char *text)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	ck_assert_int_eq(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static struct rule_per_source limits(unsigned conns, unsigned rate, unsigned sessions,
				     unsigned dgrams)
{
	return (struct rule_per_source){ conns, rate, sessions, dgrams, 64 };
}

/* Opens and closes a TCP connection of SA for rule 1 at NOW: the verdict. */
static enum sources_verdict open_close(struct sources *t, const struct rule_per_source *lim,
				       const struct sockaddr_storage *sa, double now)
{
	uint32_t slot;
	enum sources_verdict v = sources_open(t, 1, lim, SOURCES_TCP, SA(*sa), now, &slot);

	sources_close(t, slot, SOURCES_TCP, now);
	return v;
}

/* The one entry of RULE (the test's sources are alone in the rule). */
static struct sources_entry only_entry(struct sources *t, uint32_t rule, double now)
{
	struct sources_entry e[2];
	struct sources_census c;

	ck_assert_int_eq(sources_top(t, rule, now, e, 2, &c), 1);
	ck_assert_int_eq(c.tracked, 1);
	return e[0];
}

START_TEST(test_connections_counted_and_limited)
{
	struct sources *t = sources_new(1024);
	struct rule_per_source lim = limits(3, 0, 0, 0);
	struct sockaddr_storage a = v4(0xcb007109), b = v4(0xcb00710a);
	double now = clock_now();
	uint32_t slot[4], other;

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(a), now, &slot[i]), SOURCES_OK);
	ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(a), now, &slot[3]),
			 SOURCES_CONNECTIONS);
	ck_assert_uint_eq(slot[3], SOURCES_NONE);
	/* Another source, and the same source for another rule, are apart. */
	ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(b), now, &other), SOURCES_OK);
	sources_close(t, other, SOURCES_TCP, now);
	ck_assert_int_eq(sources_open(t, 2, &lim, SOURCES_TCP, SA(a), now, &other), SOURCES_OK);
	sources_close(t, other, SOURCES_TCP, now);
	/* All three share one entry. */
	ck_assert_uint_eq(slot[0], slot[1]);
	ck_assert_uint_eq(slot[1], slot[2]);
	{
		struct sources_entry e = only_entry(t, 2, now);

		ck_assert_str_eq(e.name, "203.0.113.9");
		ck_assert_uint_eq(e.connections, 0);
	}
	{
		struct sources_entry e[3];
		struct sources_census c;

		ck_assert_int_eq(sources_top(t, 1, now, e, 3, &c), 2);
		ck_assert_int_eq(c.tracked, 2);
		ck_assert_int_eq(c.used, 3);
		ck_assert_str_eq(e[0].name, "203.0.113.9"); /* the busiest first */
		ck_assert_uint_eq(e[0].connections, 3);
		ck_assert_uint_eq(e[0].limited, 1);
		ck_assert_str_eq(e[1].name, "203.0.113.10");
	}
	/* One ends: room for one more. */
	sources_close(t, slot[0], SOURCES_TCP, now);
	ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(a), now, &slot[0]), SOURCES_OK);
	/* UDP sessions are counted apart from TCP connections. */
	lim = limits(3, 0, 1, 0);
	ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_UDP, SA(a), now, &slot[3]), SOURCES_OK);
	ck_assert_uint_eq(slot[3], slot[0]);
	ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_UDP, SA(a), now, &other), SOURCES_SESSIONS);
	sources_close(t, slot[3], SOURCES_UDP, now);
	for (int i = 0; i < 3; i++)
		sources_close(t, slot[i], SOURCES_TCP, now);
	sources_free(t);
}
END_TEST

START_TEST(test_untracked_costs_nothing)
{
	struct sources *t = sources_new(1024);
	struct rule_per_source none = limits(0, 0, 0, 0), tcp_only = limits(5, 0, 0, 0);
	struct sockaddr_storage a = v4(0x0a000001);
	struct sources_census c;
	uint32_t slot;

	ck_assert_int_eq(sources_open(t, 1, &none, SOURCES_TCP, SA(a), clock_now(), &slot), SOURCES_OK);
	ck_assert_uint_eq(slot, SOURCES_NONE);
	/* Limits on TCP leave the rule's UDP untracked. */
	ck_assert_int_eq(sources_open(t, 1, &tcp_only, SOURCES_UDP, SA(a), clock_now(), &slot), SOURCES_OK);
	ck_assert_uint_eq(slot, SOURCES_NONE);
	ck_assert(sources_datagram(t, SOURCES_NONE, &tcp_only, SOURCES_IN, clock_now()));
	sources_close(t, SOURCES_NONE, SOURCES_TCP, clock_now());
	sources_census(t, &c);
	ck_assert_int_eq(c.used, 0);
	ck_assert_int_eq(c.capacity, 1024);
	/* No table at all (a unit of the data path without a daemon). */
	ck_assert_int_eq(sources_open(NULL, 1, &tcp_only, SOURCES_TCP, SA(a), clock_now(), &slot), SOURCES_OK);
	ck_assert_uint_eq(slot, SOURCES_NONE);
	sources_free(t);
}
END_TEST

/* new_per_minute: a sliding minute, estimated from two minute windows. */
START_TEST(test_new_per_minute)
{
	struct sources *t = sources_new(1024);
	struct rule_per_source lim = limits(0, 5, 0, 0);
	struct sockaddr_storage a = v4(0xc0000201);
	double t0 = clock_now();

	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(open_close(t, &lim, &a, t0), SOURCES_OK);
	ck_assert_int_eq(open_close(t, &lim, &a, t0 + 1), SOURCES_RATE);
	ck_assert_int_eq(open_close(t, &lim, &a, t0 + 59), SOURCES_RATE);
	ck_assert_double_eq_tol(only_entry(t, 1, t0 + 1).new_per_minute, 5, 0.01);
	ck_assert_uint_eq(only_entry(t, 1, t0 + 1).limited, 2);
	/* Half way through the next minute, half of the last one still counts:
	 * 2.5, so two more and then no more. */
	ck_assert_int_eq(open_close(t, &lim, &a, t0 + 90), SOURCES_OK);
	ck_assert_int_eq(open_close(t, &lim, &a, t0 + 90), SOURCES_OK);
	ck_assert_int_eq(open_close(t, &lim, &a, t0 + 90), SOURCES_RATE);
	/* A quiet minute later, a full minute's worth again. */
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(open_close(t, &lim, &a, t0 + 200), SOURCES_OK);
	sources_free(t);
}
END_TEST

START_TEST(test_datagrams_per_second_each_way)
{
	struct sources *t = sources_new(1024);
	struct rule_per_source lim = limits(0, 0, 0, 100);
	struct sockaddr_storage a = v4(0xc6336401);
	double t0 = clock_now();
	int in = 0, out = 0;
	uint32_t slot;

	ck_assert_int_eq(sources_open(t, 7, &lim, SOURCES_UDP, SA(a), t0, &slot), SOURCES_OK);
	for (int i = 0; i < 150; i++) {
		in += sources_datagram(t, slot, &lim, SOURCES_IN, t0);
		out += sources_datagram(t, slot, &lim, SOURCES_OUT, t0);
	}
	ck_assert_int_eq(in, 100);
	ck_assert_int_eq(out, 100);
	{
		struct sources_entry e = only_entry(t, 7, t0);

		ck_assert_uint_eq(e.sessions, 1);
		ck_assert_uint_eq(e.limited, 100);
		ck_assert_double_eq_tol(e.datagrams_in, 100, 0.01);
		ck_assert_double_eq_tol(e.datagrams_out, 100, 0.01);
	}
	/* Two seconds on, a second's worth again. */
	in = 0;
	for (int i = 0; i < 150; i++)
		in += sources_datagram(t, slot, &lim, SOURCES_IN, t0 + 2.5);
	ck_assert_int_eq(in, 100);
	sources_close(t, slot, SOURCES_UDP, t0 + 2.5);
	sources_free(t);
}
END_TEST

START_TEST(test_ipv6_prefix)
{
	struct sources *t = sources_new(1024);
	struct rule_per_source lim = limits(1, 0, 0, 0);
	struct sockaddr_storage a = v6("2001:db8:1:2::1"), b = v6("2001:db8:1:2:ffff:ffff:ffff:ffff");
	struct sockaddr_storage c = v6("2001:db8:1:3::1");
	double now = clock_now();
	uint32_t sa, sc, x;
	char name[64];

	/* One /64 is one source. */
	ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(a), now, &sa), SOURCES_OK);
	ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(b), now, &x), SOURCES_CONNECTIONS);
	ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(c), now, &sc), SOURCES_OK);
	ck_assert_str_eq(sources_name(SA(b), 64, name, sizeof(name)), "2001:db8:1:2::/64");
	ck_assert_str_eq(sources_name(SA(b), 56, name, sizeof(name)), "2001:db8:1::/56");
	ck_assert_str_eq(sources_name(SA(b), 128, name, sizeof(name)),
			 "2001:db8:1:2:ffff:ffff:ffff:ffff/128");
	{
		struct sockaddr_storage q = v4(0x7f000002);

		ck_assert_str_eq(sources_name(SA(q), 64, name, sizeof(name)), "127.0.0.2");
	}
	/* With 128 bits each address is its own source; 56 puts all three together. */
	lim.ipv6_prefix = 128;
	ck_assert_int_eq(open_close(t, &lim, &b, now), SOURCES_OK);
	lim.ipv6_prefix = 56;
	ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(a), now, &x), SOURCES_OK);
	ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(c), now, &x), SOURCES_CONNECTIONS);
	{
		struct sources_entry e[8];
		struct sources_census census;
		size_t n = sources_top(t, 1, now, e, 8, &census);
		bool seen56 = false;

		ck_assert_int_eq(n, 4);
		for (size_t i = 0; i < n; i++)
			seen56 |= strcmp(e[i].name, "2001:db8:1::/56") == 0 && e[i].connections == 1;
		ck_assert(seen56);
	}
	sources_free(t);
}
END_TEST

/*
 * A flood of new sources in a small table: memory never grows (the table
 * is all there is), every new source is placed by forgetting an idle one,
 * and the sources that hold something are never forgotten.
 */
START_TEST(test_flood_evicts_only_idle)
{
	enum { CAP = 256, FLOOD = 100000, HOLDERS = 64 };
	struct sources *t = sources_new(CAP);
	struct rule_per_source lim = limits(1, 0, 1, 0);
	uint32_t held[HOLDERS], x;
	struct sources_census c;
	double now = clock_now();

	for (int i = 0; i < HOLDERS; i++) {
		struct sockaddr_storage a = v4(0x0a000000u + (uint32_t)i);

		ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(a), now, &held[i]), SOURCES_OK);
	}
	for (int i = 0; i < FLOOD; i++) {
		struct sockaddr_storage a = v4(0x64000000u + (uint32_t)i);
		uint32_t s;

		now += 0.001;
		ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_UDP, SA(a), now, &s), SOURCES_OK);
		sources_close(t, s, SOURCES_UDP, now);
	}
	sources_census(t, &c);
	ck_assert_int_eq(c.used, CAP);
	ck_assert_uint_ge(c.evicted, FLOOD - CAP);
	ck_assert_uint_eq(c.full, 0);
	/* Every holder is still known: its one connection still counts. */
	for (int i = 0; i < HOLDERS; i++) {
		struct sockaddr_storage a = v4(0x0a000000u + (uint32_t)i);

		ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(a), now, &x), SOURCES_CONNECTIONS);
		sources_close(t, held[i], SOURCES_TCP, now);
	}
	/* The most recent idle ones are still there; the first ones are forgotten. */
	{
		struct sources_entry *e = calloc(CAP, sizeof(*e));
		size_t n = sources_top(t, 1, now, e, CAP, &c);
		bool first = false, last = false;

		ck_assert_int_eq(n, CAP);
		for (size_t i = 0; i < n; i++) {
			first |= strcmp(e[i].name, "100.0.0.0") == 0;
			last |= strcmp(e[i].name, "100.1.134.159") == 0; /* 0x64000000 + 99999 */
		}
		ck_assert(!first);
		ck_assert(last);
		free(e);
	}
	sources_free(t);
}
END_TEST

/* Only live sources left near a new one's place: it is refused, and gets
 * in once one of them ends. */
START_TEST(test_full_refuses_new_sources)
{
	struct sources *t = sources_new(SOURCES_PROBE); /* one window: the whole table */
	struct rule_per_source lim = limits(4, 0, 0, 0);
	uint32_t held[SOURCES_PROBE], x;
	struct sockaddr_storage late = v4(0x0b000000);
	struct sources_census c;
	double now = clock_now();

	for (int i = 0; i < SOURCES_PROBE; i++) {
		struct sockaddr_storage a = v4(0x0a000000u + (uint32_t)i);

		ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(a), now, &held[i]), SOURCES_OK);
	}
	ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(late), now, &x), SOURCES_FULL);
	ck_assert_uint_eq(x, SOURCES_NONE);
	/* The known ones still get their own answers. */
	{
		struct sockaddr_storage a = v4(0x0a000003);

		ck_assert_int_eq(open_close(t, &lim, &a, now), SOURCES_OK);
	}
	sources_close(t, held[5], SOURCES_TCP, now + 1);
	ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(late), now + 1, &x), SOURCES_OK);
	sources_census(t, &c);
	ck_assert_uint_eq(c.full, 1);
	ck_assert_uint_eq(c.evicted, 1);
	sources_free(t);
}
END_TEST

START_TEST(test_top_is_bounded_and_sorted)
{
	struct sources *t = sources_new(4096);
	struct rule_per_source lim = limits(100, 0, 0, 0);
	struct sources_entry e[SOURCES_TOP_MAX];
	struct sources_census c;
	double now = clock_now();
	size_t n;

	/* Source i holds i % 50 connections. */
	for (uint32_t i = 0; i < 500; i++) {
		struct sockaddr_storage a = v4(0xac100000u + i);
		uint32_t s;

		for (uint32_t k = 0; k < i % 50; k++)
			ck_assert_int_eq(sources_open(t, 3, &lim, SOURCES_TCP, SA(a), now, &s), SOURCES_OK);
		if (i % 50 == 0) {
			ck_assert_int_eq(sources_open(t, 3, &lim, SOURCES_TCP, SA(a), now, &s), SOURCES_OK);
			sources_close(t, s, SOURCES_TCP, now);
		}
	}
	n = sources_top(t, 3, now, e, SOURCES_TOP_MAX, &c);
	ck_assert_int_eq(n, SOURCES_TOP_MAX);
	ck_assert_int_eq(c.tracked, 500);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(e[i].connections, i < 10 ? 49 : 48);
	ck_assert_int_eq(sources_top(t, 4, now, e, SOURCES_TOP_MAX, &c), 0);
	sources_free(t);
}
END_TEST

/* ---- threads ---- */

enum { T_THREADS = 4, T_SOURCES = 16, T_MAX = 3, T_ROUNDS = 20000 };

struct t_shared {
	struct sources *t;
	struct rule_per_source lim;
	_Atomic int holding[T_SOURCES]; /* what the test threads hold, per source */
	_Atomic int over;               /* times a source held more than T_MAX */
	_Atomic int admitted;
};

struct t_arg {
	struct t_shared *sh;
	unsigned seed;
	int id;
};

static void *t_worker(void *p)
{
	struct t_arg *a = p;
	struct t_shared *sh = a->sh;
	uint32_t mine[T_SOURCES][T_MAX];
	int n[T_SOURCES] = { 0 };

	for (int r = 0; r < T_ROUNDS; r++) {
		int i = (int)(rand_r(&a->seed) % T_SOURCES);
		struct sockaddr_storage src = v4(0xc0a80000u + (uint32_t)i);
		double now = clock_now();
		uint32_t s;

		if (n[i] > 0 && rand_r(&a->seed) % 2) {
			atomic_fetch_sub(&sh->holding[i], 1);
			sources_close(sh->t, mine[i][--n[i]], SOURCES_TCP, now);
		} else if (n[i] < T_MAX &&
			   sources_open(sh->t, 1, &sh->lim, SOURCES_TCP, SA(src), now, &s) == SOURCES_OK) {
			if (atomic_fetch_add(&sh->holding[i], 1) + 1 > T_MAX)
				atomic_fetch_add(&sh->over, 1);
			mine[i][n[i]++] = s;
			atomic_fetch_add(&sh->admitted, 1);
		}
		/* And sources that come once, to make the table evict meanwhile. */
		if (r % 4 == 0) {
			struct sockaddr_storage once = v4(0x0a000000u + (uint32_t)(a->id << 20) + (uint32_t)r);

			if (sources_open(sh->t, 1, &sh->lim, SOURCES_UDP, SA(once), now, &s) == SOURCES_OK) {
				sources_datagram(sh->t, s, &sh->lim, SOURCES_IN, now);
				sources_close(sh->t, s, SOURCES_UDP, now);
			}
		}
	}
	for (int i = 0; i < T_SOURCES; i++)
		while (n[i] > 0) {
			atomic_fetch_sub(&sh->holding[i], 1);
			sources_close(sh->t, mine[i][--n[i]], SOURCES_TCP, clock_now());
		}
	return NULL;
}

/* Several workers at once: a source never holds more than its limit, and
 * when everyone is done every count is back to 0. */
START_TEST(test_threads)
{
	static struct t_shared sh;
	struct t_arg args[T_THREADS];
	pthread_t th[T_THREADS];
	static struct sources_entry e[512];
	struct sources_census c;
	size_t n;

	memset(&sh, 0, sizeof(sh));
	sh.t = sources_new(512);
	sh.lim = limits(T_MAX, 0, 1000, 1000000);
	for (int i = 0; i < T_THREADS; i++) {
		args[i] = (struct t_arg){ &sh, 1234u + (unsigned)i, i };
		ck_assert_int_eq(pthread_create(&th[i], NULL, t_worker, &args[i]), 0);
	}
	for (int i = 0; i < T_THREADS; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(atomic_load(&sh.over), 0);
	ck_assert_int_gt(atomic_load(&sh.admitted), T_ROUNDS / 4);
	n = sources_top(sh.t, 1, clock_now(), e, 512, &c);
	ck_assert_uint_eq(c.used, 512);
	ck_assert_uint_eq(n, 512);
	ck_assert_int_gt(c.evicted, 0);
	/* Every count back to 0, and never two entries for one source. */
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_eq(e[i].connections, 0);
		ck_assert_uint_eq(e[i].sessions, 0);
		for (size_t j = 0; j < i; j++)
			ck_assert_msg(strcmp(e[i].name, e[j].name) != 0, "%s twice", e[i].name);
	}
	sources_free(sh.t);
}
END_TEST

/*
 * Workers read the clock at different moments: a call a moment behind the
 * window another worker rolled to must count in that window, not roll it
 * back (which forgot both counts: a stale datagram each second let about
 * 166 a second through a limit of 100).
 */
START_TEST(test_clock_a_moment_behind)
{
	struct sources *t = sources_new(1024);
	struct rule_per_source lim = limits(0, 0, 0, 100);
	struct sockaddr_storage a = v4(0xc6336402);
	double t0 = clock_now(); /* the table's epoch, within microseconds */
	uint32_t slot;
	int passed = 0;

	ck_assert_int_eq(sources_open(t, 7, &lim, SOURCES_UDP, SA(a), t0, &slot), SOURCES_OK);
	for (int k = 1; k <= 20; k++) {
		for (int i = 0; i < 150; i++)
			passed += sources_datagram(t, slot, &lim, SOURCES_IN, t0 + k + 0.5);
		/* Another worker's datagram, its clock read 0.9 s earlier. */
		passed += sources_datagram(t, slot, &lim, SOURCES_IN, t0 + k - 0.4);
		for (int i = 0; i < 150; i++)
			passed += sources_datagram(t, slot, &lim, SOURCES_IN, t0 + k + 0.6);
	}
	/* Any 1 s holds at most 100: over 20 s at most 2,100 (the first window
	 * full, then the sliding estimate). */
	ck_assert_msg(passed <= 2100, "%d datagrams passed a limit of 100/s in 20 s", passed);
	ck_assert_int_ge(passed, 1300);
	sources_close(t, slot, SOURCES_UDP, t0 + 21);
	sources_free(t);
}
END_TEST

/*
 * A source seen a moment after the caller read its clock is the newest, not
 * the oldest: placing a new source evicts the idle one seen longest ago,
 * and sources shows the fresh one idle for no time (it showed 777 days).
 */
START_TEST(test_seen_a_moment_ahead)
{
	enum { CAP = 32 }; /* one window: every source competes for it */
	struct sources *t = sources_new(CAP);
	struct rule_per_source lim = limits(0, 5, 0, 0);
	struct sources_entry e[CAP + 1];
	struct sources_census c;
	double t0 = clock_now();
	bool oldest = false, fresh = false;
	uint32_t slot;

	for (int i = 0; i < CAP; i++) {
		struct sockaddr_storage a = v4(0x0a000000u + (uint32_t)i);

		ck_assert_int_eq(open_close(t, &lim, &a, t0 + i * 0.05), SOURCES_OK);
	}
	/* 10.0.0.5 seen again at t0 + 3, by a worker whose clock is ahead. */
	{
		struct sockaddr_storage a = v4(0x0a000005u);

		ck_assert_int_eq(open_close(t, &lim, &a, t0 + 3), SOURCES_OK);
	}
	/* A new source placed by a worker whose clock read t0 + 2.9. */
	{
		struct sockaddr_storage n = v4(0x0b000000u);

		ck_assert_int_eq(sources_open(t, 1, &lim, SOURCES_TCP, SA(n), t0 + 2.9, &slot), SOURCES_OK);
		sources_close(t, slot, SOURCES_TCP, t0 + 2.9);
	}
	ck_assert_int_eq(sources_top(t, 1, t0 + 2.9, e, CAP + 1, &c), CAP);
	for (int i = 0; i < CAP; i++) {
		oldest |= strcmp(e[i].name, "10.0.0.0") == 0;
		if (strcmp(e[i].name, "10.0.0.5") == 0) {
			fresh = true;
			ck_assert_msg(e[i].idle < 1, "idle %.0f s", e[i].idle);
		}
	}
	ck_assert_msg(!oldest, "10.0.0.0, the oldest idle source, is still there");
	ck_assert_msg(fresh, "10.0.0.5, seen last, was evicted");
	sources_free(t);
}
END_TEST

/* After 400 days of uptime (past 2^31 ticks) an idle source is still old:
 * its age is the time since it was seen, not taken for a clock ahead. */
START_TEST(test_idle_for_a_year)
{
	struct sources *t = sources_new(1024);
	struct rule_per_source lim = limits(0, 5, 0, 0);
	struct sockaddr_storage a = v4(0x0a000007u), b = v4(0x0a000008u);
	double t0 = clock_now(), later = t0 + 400 * 86400.0;
	struct sources_entry e[4];
	struct sources_census c;
	size_t n;

	ck_assert_int_eq(open_close(t, &lim, &a, t0), SOURCES_OK);
	ck_assert_int_eq(open_close(t, &lim, &b, later), SOURCES_OK);
	n = sources_top(t, 1, later, e, 4, &c);
	ck_assert_int_eq(n, 2);
	for (size_t i = 0; i < n; i++)
		if (strcmp(e[i].name, "10.0.0.7") == 0)
			ck_assert_msg(e[i].idle > 399 * 86400.0, "idle %.0f s", e[i].idle);
		else
			ck_assert_msg(e[i].idle < 1, "idle %.0f s", e[i].idle);
	sources_free(t);
}
END_TEST

/* ---- ratelog ---- */

START_TEST(test_ratelog_per_key)
{
	static struct ratelog r;
	struct ratelog_note note;
	char buf[128];
	double t0 = 1000;

	memset(&r, 0, sizeof(r));
	ck_assert(ratelog_allow(&r, "a", 1, t0, &note));
	ck_assert_uint_eq(note.held, 0);
	ck_assert_str_eq(ratelog_suffix(&note, buf, sizeof(buf)), "");
	for (int i = 0; i < 5; i++)
		ck_assert(!ratelog_allow(&r, "a", 1, t0 + 1 + i, &note));
	ck_assert(ratelog_allow(&r, "b", 1, t0 + 2, &note)); /* another key: its own line */
	ck_assert(ratelog_allow(&r, "a", 1, t0 + RATELOG_INTERVAL, &note));
	ck_assert_uint_eq(note.held, 5);
	ck_assert_str_eq(ratelog_suffix(&note, buf, sizeof(buf)), " (5 more since the last such line)");
	ck_assert(!ratelog_allow(&r, "a", 1, t0 + RATELOG_INTERVAL + 1, &note));
}
END_TEST

/*
 * Keys that share a neighbourhood of places never reset each other's
 * minute: four keep theirs, a fifth (no place left) goes by the overall
 * budget. Before, two keys in one place took turns and each got a line
 * every time.
 */
START_TEST(test_ratelog_colliding_keys)
{
	static struct ratelog r;
	struct ratelog_note note;
	char keys[6][32];
	int n = 0, lines[6] = { 0 };
	size_t home = SIZE_MAX;
	double t0 = 9000;

	memset(&r, 0, sizeof(r));
	/* Six keys with the same home place. */
	for (unsigned i = 0; n < 6 && i < 10000000; i++) {
		char k[32];

		snprintf(k, sizeof(k), "1 tcp 10.%u.%u.%u", i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff);
		if (home == SIZE_MAX)
			home = ratelog_home(k, strlen(k));
		if (ratelog_home(k, strlen(k)) == home)
			snprintf(keys[n++], sizeof(keys[0]), "%s", k);
	}
	ck_assert_int_eq(n, 6);
	for (int sec = 0; sec < 59; sec++)
		for (int k = 0; k < 6; k++)
			lines[k] += ratelog_allow(&r, keys[k], strlen(keys[k]), t0 + sec, &note);
	for (int k = 0; k < RATELOG_WAYS; k++)
		ck_assert_msg(lines[k] == 1, "key %d: %d lines in a minute", k, lines[k]);
	/* A minute on, each of them again, saying what was held back. */
	ck_assert(ratelog_allow(&r, keys[0], strlen(keys[0]), t0 + RATELOG_INTERVAL, &note));
	ck_assert_uint_eq(note.held, 58);
}
END_TEST

/* A flood of keys: RATELOG_BURST lines, then RATELOG_PER_SECOND a second,
 * and the next line says how many were held back. */
START_TEST(test_ratelog_overall_budget)
{
	static struct ratelog r;
	struct ratelog_note note;
	char key[32], buf[128];
	int allowed = 0;
	double t0 = 5000;

	memset(&r, 0, sizeof(r));
	for (int i = 0; i < 1000; i++) {
		int len = snprintf(key, sizeof(key), "source %d", i);

		allowed += ratelog_allow(&r, key, (size_t)len, t0, &note);
	}
	ck_assert_int_eq(allowed, RATELOG_BURST);
	ck_assert(ratelog_allow(&r, "late", 4, t0 + 1, &note));
	ck_assert_uint_eq(note.held_overall, 1000 - RATELOG_BURST);
	ck_assert_str_eq(ratelog_suffix(&note, buf, sizeof(buf)), " (980 lines about others held back)");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sources");
	TCase *tc = tcase_create("sources");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_connections_counted_and_limited);
	tcase_add_test(tc, test_untracked_costs_nothing);
	tcase_add_test(tc, test_new_per_minute);
	tcase_add_test(tc, test_datagrams_per_second_each_way);
	tcase_add_test(tc, test_ipv6_prefix);
	tcase_add_test(tc, test_flood_evicts_only_idle);
	tcase_add_test(tc, test_full_refuses_new_sources);
	tcase_add_test(tc, test_top_is_bounded_and_sorted);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_clock_a_moment_behind);
	tcase_add_test(tc, test_seen_a_moment_ahead);
	tcase_add_test(tc, test_idle_for_a_year);
	tcase_add_test(tc, test_ratelog_per_key);
	tcase_add_test(tc, test_ratelog_colliding_keys);
	tcase_add_test(tc, test_ratelog_overall_budget);
	suite_add_tcase(s, tc);
	return check_run(s);
}
