/*
 * Address sets, policies, list files, the log's rate limit and the ban
 * set: the pure logic of who may connect, with the nasty cases, and a set
 * of 200,000 random entries checked against a plain scan.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "access.h"
#include "bans.h"
#include "check_run.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SLOW_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SLOW_BUILD 1
#endif
#endif
#ifndef SLOW_BUILD
#define SLOW_BUILD 0
#endif

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A socket address for the numeric HOST (port 1234). */
static struct sockaddr_storage sa_of(const char *host)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(host, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(1234);
		ck_assert_int_eq(inet_pton(AF_INET6, host, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(1234);
		ck_assert_int_eq(inet_pton(AF_INET, host, &s4->sin_addr), 1);
	}
	return ss;
}

static bool has(const struct access_set *s, const char *host)
{
	struct sockaddr_storage ss = sa_of(host);

	return access_set_contains(s, (struct sockaddr *)&ss);
}

/* A set of the ENTRIES (NULL-ended), each of which must parse. */
static struct access_set *set_of(const char *const *entries)
{
	struct access_builder b = { 0 };
	struct access_set *s;

	for (; *entries; entries++) {
		struct access_prefix p;
		char err[160];

		ck_assert_msg(access_prefix_parse(*entries, &p, err, sizeof(err)) == 0, "%s: %s",
			      *entries, err);
		access_builder_add(&b, &p);
	}
	s = access_builder_finish(&b);
	ck_assert_ptr_nonnull(s);
	return s;
}

START_TEST(test_prefix_parse_good)
{
	static const struct {
		const char *in, *out;
		int family;
		unsigned len;
	} cases[] = {
		{ "192.0.2.7", "192.0.2.7", AF_INET, 32 },
		{ "192.0.2.7/32", "192.0.2.7", AF_INET, 32 },
		{ "10.0.0.0/8", "10.0.0.0/8", AF_INET, 8 },
		{ "0.0.0.0/0", "0.0.0.0/0", AF_INET, 0 },
		{ "255.255.255.255", "255.255.255.255", AF_INET, 32 },
		{ "::/0", "::/0", AF_INET6, 0 },
		{ "::1", "::1", AF_INET6, 128 },
		{ "2001:db8::/32", "2001:db8::/32", AF_INET6, 32 },
		{ "fe80::/10", "fe80::/10", AF_INET6, 10 },
		{ "2001:db8::1/128", "2001:db8::1", AF_INET6, 128 },
		{ "2001:db8:0:0:8000::/65", "2001:db8:0:0:8000::/65", AF_INET6, 65 },
		/* IPv4-mapped: the IPv4 prefix it maps. */
		{ "::ffff:192.0.2.0/120", "192.0.2.0/24", AF_INET, 24 },
		{ "::ffff:192.0.2.7", "192.0.2.7", AF_INET, 32 },
		{ "::ffff:0.0.0.0/96", "0.0.0.0/0", AF_INET, 0 },
		/* Shorter than /96 it covers more than IPv4: stays IPv6. */
		{ "::fffe:0:0/95", "::fffe:0:0/95", AF_INET6, 95 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct access_prefix p;
		char err[160], out[ACCESS_PREFIX_STRLEN];
		int rc = access_prefix_parse(cases[i].in, &p, err, sizeof(err));

		ck_assert_msg(rc == 0, "%s: %s", cases[i].in, err);
		ck_assert_int_eq(p.family, cases[i].family);
		ck_assert_uint_eq(p.len, cases[i].len);
		ck_assert_str_eq(access_prefix_format(&p, out, sizeof(out)), cases[i].out);
	}
}
END_TEST

START_TEST(test_prefix_parse_bad)
{
	char longer[200];
	static const struct {
		const char *in, *why;
	} cases[] = {
		{ "", "an empty entry" },
		{ "10.0.0.0/", "the prefix length after \"/\" is missing" },
		{ "10.0.0.0/33", "prefix length 33 is out of range for IPv4 (0-32)" },
		{ "::/129", "prefix length 129 is out of range for IPv6 (0-128)" },
		{ "10.0.0.1/8", "bits are set past the /8 prefix (the network is 10.0.0.0/8)" },
		{ "192.168.1.1/16", "bits are set past the /16 prefix (the network is 192.168.0.0/16)" },
		{ "2001:db8::1/32", "bits are set past the /32 prefix (the network is 2001:db8::/32)" },
		{ "10.0.0", "not an IPv4 or IPv6 address or CIDR (address/length)" },
		{ "10.0.0.256", "not an IPv4 or IPv6 address" },
		{ "010.0.0.1", "not an IPv4 or IPv6 address" },
		{ "1.2.3.4/abc", "prefix length \"abc\" is not a number of bits (0-32)" },
		{ "1.2.3.4/0008", "prefix length \"0008\" is not a number of bits (0-32)" },
		{ "1.2.3.4/-1", "is not a number of bits" },
		{ "1.2.3.4/+8", "is not a number of bits" },
		{ " 1.2.3.4", "not an IPv4 or IPv6 address" },
		{ "1.2.3.4 ", "not an IPv4 or IPv6 address" },
		{ "[::1]", "not an IPv4 or IPv6 address" },
		{ "host.example", "not an IPv4 or IPv6 address" },
		{ "1.2.3.4/8/8", "is not a number of bits" },
		{ "fe80::1%eth0", "not an IPv4 or IPv6 address" },
		{ "1.2.3.4:80", "not an IPv4 or IPv6 address" },
		{ "::ffff:0:0/95", "bits are set past the /95 prefix (the network is ::fffe:0:0/95)" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct access_prefix p;
		char err[160];

		ck_assert_msg(access_prefix_parse(cases[i].in, &p, err, sizeof(err)) == -1, "%s accepted",
			      cases[i].in);
		ck_assert_msg(strstr(err, cases[i].why), "%s: %s", cases[i].in, err);
	}
	memset(longer, '1', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	{
		struct access_prefix p;
		char err[160];

		ck_assert_int_eq(access_prefix_parse(longer, &p, err, sizeof(err)), -1);
		ck_assert_str_eq(err, "longer than 128 characters");
	}
}
END_TEST

START_TEST(test_set_edges)
{
	static const char *const all4[] = { "0.0.0.0/0", NULL };
	static const char *const all6[] = { "::/0", NULL };
	static const char *const hosts[] = { "192.0.2.7", "2001:db8::7", NULL };
	static const char *const adjacent[] = { "10.0.0.128/25", "10.0.0.0/25", "10.0.1.0/24", NULL };
	static const char *const overlapping[] = { "10.1.0.0/16", "10.0.0.0/8", "10.200.3.4", NULL };
	static const char *const top4[] = { "255.255.255.255", "255.255.255.254", "0.0.0.0", NULL };
	static const char *const top6[] = { "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
					   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "::", NULL };
	static const char *const across64[] = { "2001:db8::/64", "2001:db8:0:1::/64", NULL };
	struct access_set *s;

	s = set_of(all4);
	ck_assert(has(s, "0.0.0.0") && has(s, "255.255.255.255") && has(s, "10.1.2.3"));
	ck_assert(!has(s, "::") && !has(s, "2001:db8::1"));
	ck_assert(has(s, "::ffff:203.0.113.9")); /* a mapped client is IPv4 */
	access_set_unref(s);

	s = set_of(all6);
	ck_assert(has(s, "::") && has(s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") && has(s, "::1"));
	ck_assert(!has(s, "1.2.3.4"));
	ck_assert(!has(s, "::ffff:1.2.3.4")); /* matched as IPv4 */
	access_set_unref(s);

	s = set_of(hosts);
	ck_assert(has(s, "192.0.2.7") && !has(s, "192.0.2.6") && !has(s, "192.0.2.8"));
	ck_assert(has(s, "2001:db8::7") && !has(s, "2001:db8::6") && !has(s, "2001:db8::8"));
	ck_assert(has(s, "::ffff:192.0.2.7"));
	access_set_unref(s);

	s = set_of(adjacent);
	ck_assert_uint_eq(access_set_ranges4(s), 1);
	ck_assert(has(s, "10.0.0.0") && has(s, "10.0.1.255") && !has(s, "10.0.2.0") && !has(s, "9.255.255.255"));
	access_set_unref(s);

	s = set_of(overlapping);
	ck_assert_uint_eq(access_set_ranges4(s), 1);
	ck_assert(has(s, "10.255.255.255") && !has(s, "11.0.0.0"));
	access_set_unref(s);

	s = set_of(top4);
	ck_assert_uint_eq(access_set_ranges4(s), 2);
	ck_assert(has(s, "255.255.255.255") && has(s, "255.255.255.254") && has(s, "0.0.0.0"));
	ck_assert(!has(s, "255.255.255.253") && !has(s, "0.0.0.1"));
	access_set_unref(s);

	s = set_of(top6);
	ck_assert_uint_eq(access_set_ranges6(s), 2);
	ck_assert(has(s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") && has(s, "::"));
	ck_assert(!has(s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd") && !has(s, "::1"));
	access_set_unref(s);

	/* Adjacent across the 64-bit halves: one range. */
	s = set_of(across64);
	ck_assert_uint_eq(access_set_ranges6(s), 1);
	ck_assert(has(s, "2001:db8::ffff:ffff:ffff:ffff") && has(s, "2001:db8:0:1::"));
	ck_assert(!has(s, "2001:db8:0:2::"));
	access_set_unref(s);

	/* The empty set and NULL hold nothing. */
	{
		struct access_builder b = { 0 };

		s = access_builder_finish(&b);
		ck_assert(!has(s, "1.2.3.4") && !has(s, "::1"));
		ck_assert(!has(NULL, "1.2.3.4"));
		access_set_unref(s);
	}
}
END_TEST

/* Sets with the same addresses, however written, are one set. */
START_TEST(test_interning)
{
	static const char *const a[] = { "10.0.0.0/9", "10.128.0.0/9", "fd00::/8", NULL };
	static const char *const b[] = { "fd00::/8", "10.0.0.0/8", NULL };
	static const char *const c[] = { "10.0.0.0/8", NULL };
	struct access_set *x = set_of(a), *y = set_of(b), *z = set_of(c);
	struct access_builder bl = { 0 };
	struct access_set *w;

	ck_assert_ptr_eq(x, y);
	ck_assert_ptr_ne(x, z);
	access_builder_add_set(&bl, x);
	w = access_builder_finish(&bl);
	ck_assert_ptr_eq(w, x);
	access_set_unref(w);
	access_set_unref(x);
	access_set_unref(y);
	access_set_unref(z);
}
END_TEST

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A random prefix: mostly IPv4 of length 8-32, some IPv6, a few short ones. */
static void random_prefix(struct access_prefix *p)
{
	unsigned bits;

	/* Sparse enough that a probe next to a prefix is often outside every
	 * one, dense enough that prefixes overlap and touch. */
	memset(p, 0, sizeof(*p));
	if (rng() % 8 == 0) {
		uint64_t h = rng(), l = rng();

		p->family = AF_INET6;
		/* Concentrated in 2001:db8::/32, so that prefixes overlap. */
		h = (0x20010db8ULL << 32) | (h & 0xffffffffULL);
		for (int i = 0; i < 8; i++) {
			p->addr[i] = (unsigned char)(h >> (56 - 8 * i));
			p->addr[8 + i] = (unsigned char)(l >> (56 - 8 * i));
		}
		p->len = 48 + (unsigned)(rng() % 81);
		bits = 128;
	} else {
		uint32_t a = (uint32_t)rng();

		p->family = AF_INET;
		/* Half of them in 10.0.0.0/8, 24 to 32 bits long. */
		if (rng() % 2) {
			a = 0x0a000000u | (a & 0x00ffffffu);
			p->len = 24 + (unsigned)(rng() % 9);
		} else {
			p->len = rng() % 5000 == 0 ? 12 : 16 + (unsigned)(rng() % 17);
		}
		for (int i = 0; i < 4; i++)
			p->addr[i] = (unsigned char)(a >> (24 - 8 * i));
		bits = 32;
	}
	/* Clear the host bits. */
	for (unsigned i = 0; i < bits / 8; i++) {
		unsigned keep = p->len >= (i + 1) * 8 ? 8 : p->len > i * 8 ? p->len - i * 8 : 0;

		p->addr[i] &= (unsigned char)(keep ? 0xff << (8 - keep) : 0);
	}
}

/* A probe address: random, or at or next to the edge of prefix P. */
static void probe_near(const struct access_prefix *p, struct sockaddr_storage *ss)
{
	unsigned char a[16];
	unsigned bits = p->family == AF_INET ? 32 : 128;
	int how = (int)(rng() % 4);

	memcpy(a, p->addr, 16);
	if (how == 1 || how == 3) {
		/* The last address of the prefix. */
		for (unsigned i = p->len; i < bits; i++)
			a[i / 8] |= (unsigned char)(0x80 >> (i % 8));
	}
	if (how == 2 || how == 3) {
		/* One before the first, or one past the last. */
		int step = how == 2 ? -1 : 1;

		for (int i = (int)bits / 8 - 1; i >= 0; i--) {
			unsigned v = (unsigned)a[i] + (unsigned)(step < 0 ? 255 : 1);

			a[i] = (unsigned char)v;
			if (step < 0 ? a[i] != 0xff : a[i] != 0)
				break;
		}
	}
	memset(ss, 0, sizeof(*ss));
	if (p->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, a, 4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, a, 16);
	}
}

START_TEST(test_random_against_scan)
{
	enum { N = 200000, PROBES = 1500 };
	struct access_prefix *ps = malloc(N * sizeof(*ps));
	struct access_builder b = { 0 };
	struct access_set *s;
	double t0;
	size_t hits = 0;

	for (size_t i = 0; i < N; i++) {
		random_prefix(&ps[i]);
		access_builder_add(&b, &ps[i]);
	}
	t0 = now_s();
	s = access_builder_finish(&b);
	ck_assert_ptr_nonnull(s);
	ck_assert_msg(now_s() - t0 < (SLOW_BUILD ? 10.0 : 1.0), "building took %.3fs", now_s() - t0);
	for (int k = 0; k < PROBES; k++) {
		struct sockaddr_storage ss;
		bool want = false;

		probe_near(&ps[rng() % N], &ss);
		for (size_t i = 0; i < N && !want; i++)
			want = access_prefix_contains(&ps[i], (struct sockaddr *)&ss);
		ck_assert_int_eq(access_set_contains(s, (struct sockaddr *)&ss), want);
		hits += want;
	}
	/* Both answers were asked for many times. */
	ck_assert_uint_gt(hits, PROBES / 4);
	ck_assert_uint_lt(hits, PROBES - PROBES / 20);
	access_set_unref(s);
	free(ps);
}
END_TEST

/* ns per lookup of a random IPv4 address in S. */
static double lookup_ns(const struct access_set *s, int n)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	volatile int found = 0;
	double t0 = now_s();

	for (int i = 0; i < n; i++) {
		sin.sin_addr.s_addr = (uint32_t)rng();
		found += access_set_contains(s, (struct sockaddr *)&sin);
	}
	(void)found;
	return (now_s() - t0) * 1e9 / n;
}

/* A lookup in 200,000 entries costs about what one in 10 does (a search by
 * halves: 18 steps against 4), and far less than a connection. */
START_TEST(test_lookup_cost)
{
	struct access_builder b = { 0 };
	struct access_set *small, *big;
	struct access_prefix p;
	double ns_small, ns_big;

	for (int i = 0; i < 10; i++) {
		random_prefix(&p);
		access_builder_add(&b, &p);
	}
	small = access_builder_finish(&b);
	for (int i = 0; i < 200000; i++) {
		random_prefix(&p);
		access_builder_add(&b, &p);
	}
	big = access_builder_finish(&b);
	ns_small = lookup_ns(small, 1000000);
	ns_big = lookup_ns(big, 1000000);
	fprintf(stderr, "lookup: %.0f ns with %zu ranges, %.0f ns with %zu ranges\n", ns_small,
		access_set_ranges4(small) + access_set_ranges6(small), ns_big,
		access_set_ranges4(big) + access_set_ranges6(big));
	if (!SLOW_BUILD)
		ck_assert_msg(ns_big < 1000, "%.0f ns a lookup", ns_big);
	access_set_unref(small);
	access_set_unref(big);
}
END_TEST

START_TEST(test_builtins)
{
	struct access_builder b = { 0 };
	struct access_set *s;

	ck_assert_int_eq(access_builtin_add("private", &b), 0);
	s = access_builder_finish(&b);
	ck_assert(has(s, "10.1.2.3") && has(s, "172.16.0.1") && has(s, "172.31.255.255") &&
		  has(s, "192.168.200.1") && has(s, "100.64.0.1") && has(s, "100.127.255.255") &&
		  has(s, "fd12:3456::1") && has(s, "fc00::1"));
	ck_assert(!has(s, "172.32.0.0") && !has(s, "8.8.8.8") && !has(s, "100.128.0.0") &&
		  !has(s, "fe80::1") && !has(s, "127.0.0.1") && !has(s, "2001:db8::1"));
	access_set_unref(s);
	ck_assert_int_eq(access_builtin_add("loopback", &b), 0);
	s = access_builder_finish(&b);
	ck_assert(has(s, "127.0.0.1") && has(s, "127.255.0.3") && has(s, "::1") && has(s, "::ffff:127.0.0.2"));
	ck_assert(!has(s, "::2") && !has(s, "128.0.0.1"));
	access_set_unref(s);
	ck_assert_int_eq(access_builtin_add("link-local", &b), 0);
	s = access_builder_finish(&b);
	ck_assert(has(s, "169.254.3.4") && has(s, "fe80::1") && has(s, "febf::1"));
	ck_assert(!has(s, "fec0::1") && !has(s, "169.255.0.1"));
	access_set_unref(s);
	ck_assert_int_eq(access_builtin_add("lan", &b), -1);
	access_builder_free(&b);
}
END_TEST

START_TEST(test_policy)
{
	static const char *const lan[] = { "192.168.0.0/16", "fd00::/8", NULL };
	static const char *const bad[] = { "192.168.66.0/24", NULL };
	struct access_set *allow = set_of(lan), *deny = set_of(bad);
	bool oom = false;
	struct access_policy *p = access_policy_new(allow, "@lan", deny, "@bad", &oom);
	struct access_policy *only_deny = access_policy_new(NULL, NULL, deny, "192.168.66.0/24", &oom);
	struct sockaddr_storage in = sa_of("192.168.1.1"), denied = sa_of("192.168.66.9"),
				out = sa_of("203.0.113.1"), v6 = sa_of("fd00::1");

	ck_assert(!oom);
	ck_assert_int_eq(access_policy_check(p, (struct sockaddr *)&in), ACCESS_ALLOWED);
	ck_assert_int_eq(access_policy_check(p, (struct sockaddr *)&v6), ACCESS_ALLOWED);
	/* Deny wins over allow. */
	ck_assert_int_eq(access_policy_check(p, (struct sockaddr *)&denied), ACCESS_DENIED_LIST);
	ck_assert_int_eq(access_policy_check(p, (struct sockaddr *)&out), ACCESS_NOT_ALLOWED);
	ck_assert_int_eq(access_policy_check(only_deny, (struct sockaddr *)&out), ACCESS_ALLOWED);
	ck_assert_int_eq(access_policy_check(only_deny, (struct sockaddr *)&denied), ACCESS_DENIED_LIST);
	ck_assert_int_eq(access_policy_check(NULL, (struct sockaddr *)&denied), ACCESS_ALLOWED);
	ck_assert(access_policy_has_allow(p) && !access_policy_has_allow(only_deny) &&
		  !access_policy_has_allow(NULL));
	ck_assert_ptr_null(access_policy_new(NULL, "x", NULL, "y", &oom));
	ck_assert(!oom);
	/* Equal by their sets, whatever their texts. */
	{
		struct access_policy *q = access_policy_new(allow, "192.168.0.0/16, fd00::/8", deny, "@bad", &oom);

		ck_assert(access_policy_equal(p, q));
		ck_assert(!access_policy_equal(p, only_deny));
		ck_assert(!access_policy_equal(p, NULL));
		ck_assert(access_policy_equal(NULL, NULL));
		access_policy_unref(q);
	}
	access_set_unref(allow);
	access_set_unref(deny);
	access_policy_unref(p);
	access_policy_unref(only_deny);
}
END_TEST

struct file_errs {
	char msgs[64][320];
	unsigned lines[64];
	int n;
};

static void collect(void *arg, unsigned line, const char *msg)
{
	struct file_errs *e = arg;

	if (e->n < 64) {
		e->lines[e->n] = line;
		snprintf(e->msgs[e->n++], sizeof(e->msgs[0]), "%s", msg);
	}
}

START_TEST(test_file)
{
	char dir[] = "/tmp/portfwd-access.XXXXXX", path[128];
	struct access_builder b = { 0 };
	struct file_errs e = { .n = 0 };
	struct access_set *s;
	size_t entries = 0;
	FILE *fp;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/list.txt", dir);
	fp = fopen(path, "w");
	fputs("# blocklist\n"
	      "10.1.2.3\n"
	      "  10.9.0.0/16   # a network\r\n"
	      "\n"
	      "\t\n"
	      "not-an-address\n"
	      "192.168.1.1/16\n"
	      "2001:db8::/32\n"
	      "1.2.3.4 5.6.7.8\n",
	      fp);
	fwrite("9.9.9.9\0x\n", 1, 10, fp);
	fputs("203.0.113.7", fp); /* no newline at the end */
	fclose(fp);
	ck_assert_int_eq(access_file_read(path, &b, &entries, collect, &e), 4);
	ck_assert_uint_eq(entries, 4);
	ck_assert_int_eq(e.n, 4);
	ck_assert_uint_eq(e.lines[0], 6);
	ck_assert_str_eq(e.msgs[0], "\"not-an-address\": not an IPv4 or IPv6 address or CIDR (address/length)");
	ck_assert_uint_eq(e.lines[1], 7);
	ck_assert_str_eq(e.msgs[1], "\"192.168.1.1/16\": bits are set past the /16 prefix (the network is 192.168.0.0/16)");
	ck_assert_uint_eq(e.lines[2], 9);
	ck_assert_uint_eq(e.lines[3], 10);
	ck_assert_str_eq(e.msgs[3], "the line contains a NUL byte");
	s = access_builder_finish(&b);
	ck_assert(has(s, "10.1.2.3") && has(s, "10.9.255.1") && has(s, "2001:db8:1::") && has(s, "203.0.113.7"));
	ck_assert(!has(s, "9.9.9.9") && !has(s, "192.168.1.1") && !has(s, "1.2.3.4"));
	access_set_unref(s);

	/* Garbage is quoted in part, and never as raw bytes. */
	fp = fopen(path, "w");
	fputs("\x1b[31mred\x07 and far too long to be quoted whole, as it goes on and on and on and on\n", fp);
	fclose(fp);
	e.n = 0;
	ck_assert_int_eq(access_file_read(path, &b, &entries, collect, &e), 1);
	ck_assert_msg(strncmp(e.msgs[0], "\"?[31mred? and far too long", 27) == 0, "%s", e.msgs[0]);
	ck_assert_msg(strstr(e.msgs[0], "...\": not an IPv4"), "%s", e.msgs[0]);
	access_builder_free(&b);

	/* Not a regular file, missing. */
	ck_assert_int_eq(access_file_read(dir, &b, &entries, collect, &e), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_str_eq(access_file_error(EINVAL), "not a regular file");
	snprintf(path, sizeof(path), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_int_eq(access_file_read(path, &b, &entries, collect, &e), -1);
	ck_assert_int_eq(errno, EINVAL);
	unlink(path);
	snprintf(path, sizeof(path), "%s/missing", dir);
	ck_assert_int_eq(access_file_read(path, &b, &entries, collect, &e), -1);
	ck_assert_int_eq(errno, ENOENT);
	snprintf(path, sizeof(path), "%s/list.txt", dir);
	unlink(path);
	rmdir(dir);
	access_builder_free(&b);
}
END_TEST

/* A blocklist of 200,000 lines loads in well under a second. */
START_TEST(test_file_200k)
{
	char path[] = "/tmp/portfwd-access-big-XXXXXX";
	int fd = mkstemp(path);
	FILE *fp = fdopen(fd, "w");
	struct access_builder b = { 0 };
	struct file_errs e = { .n = 0 };
	struct access_set *s;
	size_t entries = 0;
	double t0, took;

	for (int i = 0; i < 200000; i++) {
		struct access_prefix p;
		char text[ACCESS_PREFIX_STRLEN];

		random_prefix(&p);
		fprintf(fp, "%s%s\n", access_prefix_format(&p, text, sizeof(text)),
			i % 1000 == 0 ? "  # a comment" : "");
	}
	fclose(fp);
	t0 = now_s();
	ck_assert_int_eq(access_file_read(path, &b, &entries, collect, &e), 0);
	s = access_builder_finish(&b);
	took = now_s() - t0;
	unlink(path);
	ck_assert_uint_eq(entries, 200000);
	ck_assert_ptr_nonnull(s);
	fprintf(stderr, "200,000-line list file read and built in %.3fs\n", took);
	ck_assert_msg(took < (SLOW_BUILD ? 10.0 : 1.0), "%.3fs", took);
	access_set_unref(s);
}
END_TEST

START_TEST(test_ban_set)
{
	struct ban bans[3];
	struct ban_set *bs;
	bool oom;
	char err[160];
	struct sockaddr_storage a = sa_of("203.0.113.7"), b = sa_of("10.1.2.3"), c = sa_of("2001:db8::5");

	memset(bans, 0, sizeof(bans));
	ck_assert_int_eq(access_prefix_parse("203.0.113.7", &bans[0].prefix, err, sizeof(err)), 0);
	ck_assert_int_eq(access_prefix_parse("10.0.0.0/8", &bans[1].prefix, err, sizeof(err)), 0);
	snprintf(bans[1].rule, sizeof(bans[1].rule), "ssh");
	ck_assert_int_eq(access_prefix_parse("2001:db8::/64", &bans[2].prefix, err, sizeof(err)), 0);
	snprintf(bans[2].rule, sizeof(bans[2].rule), "web");
	ck_assert_ptr_null(ban_set_build(bans, 0, &oom));
	ck_assert(!ban_set_match(NULL, "ssh", (struct sockaddr *)&a));
	bs = ban_set_build(bans, 3, &oom);
	ck_assert_ptr_nonnull(bs);
	ck_assert(ban_set_match(bs, "ssh", (struct sockaddr *)&a));
	ck_assert(ban_set_match(bs, "other", (struct sockaddr *)&a));
	ck_assert(ban_set_match(bs, "ssh", (struct sockaddr *)&b));
	ck_assert(!ban_set_match(bs, "web", (struct sockaddr *)&b));
	ck_assert(ban_set_match(bs, "web", (struct sockaddr *)&c));
	ck_assert(!ban_set_match(bs, "ssh", (struct sockaddr *)&c));
	ban_set_unref(bs);
}
END_TEST

/* realloc that fails once FAIL_AFTER more calls have succeeded. */
static int fail_after;

static void *failing_realloc(void *p, size_t n)
{
	if (fail_after-- <= 0)
		return NULL;
	return realloc(p, n);
}

static void take_set(void *arg, struct ban_set *set)
{
	struct ban_set **in_force = arg;

	ban_set_unref(*in_force);
	*in_force = set;
}

/*
 * Out of memory while a set is built: the builder takes nothing more (it
 * wrote past its array, seen under AddressSanitizer), finish says so, and
 * an unban that cannot build the smaller set keeps the ban listed, as the
 * workers keep enforcing it.
 */
START_TEST(test_out_of_memory)
{
	struct access_builder b = { 0 };
	struct event_base *base = event_base_new();
	struct ban_set *in_force = NULL;
	struct bans *bans = bans_new(base, take_set, &in_force);
	struct access_prefix p;
	struct sockaddr_storage a = sa_of("198.51.100.3");
	char err[160];

	ck_assert_ptr_nonnull(bans);
	fail_after = 1; /* room for 16, then no more */
	access_set_realloc(failing_realloc);
	for (unsigned i = 0; i < 40; i++) {
		char text[32];

		snprintf(text, sizeof(text), "10.0.%u.0/24", i * 2);
		ck_assert_int_eq(access_prefix_parse(text, &p, err, sizeof(err)), 0);
		access_builder_add(&b, &p);
		ck_assert_int_eq(access_prefix_parse("2001:db8::/32", &p, err, sizeof(err)), 0);
		access_builder_add(&b, &p);
	}
	ck_assert(b.oom);
	ck_assert_uint_le(b.n4, b.cap4);
	ck_assert_uint_le(b.n6, b.cap6);
	ck_assert_ptr_null(access_builder_finish(&b));
	access_builder_free(&b);

	/* Two bans in force; lifting one cannot build the set of the other. */
	access_set_realloc(NULL);
	ck_assert_int_eq(access_prefix_parse("198.51.100.0/24", &p, err, sizeof(err)), 0);
	ck_assert_int_eq(bans_add(bans, &p, "", 0, err, sizeof(err)), 0);
	ck_assert_int_eq(access_prefix_parse("203.0.113.0/24", &p, err, sizeof(err)), 0);
	ck_assert_int_eq(bans_add(bans, &p, "", 0, err, sizeof(err)), 0);
	fail_after = 0;
	access_set_realloc(failing_realloc);
	ck_assert_int_eq(access_prefix_parse("198.51.100.0/24", &p, err, sizeof(err)), 0);
	ck_assert_int_eq(bans_remove(bans, &p, ""), -2);
	access_set_realloc(NULL);
	ck_assert_uint_eq(bans->n, 2);
	ck_assert(ban_set_match(in_force, "ssh", (struct sockaddr *)&a));
	/* With memory again it goes, from the list and the workers' set. */
	ck_assert_int_eq(bans_remove(bans, &p, ""), 0);
	ck_assert_uint_eq(bans->n, 1);
	ck_assert(!ban_set_match(in_force, "ssh", (struct sockaddr *)&a));
	bans_free(bans);
	ban_set_unref(in_force);
	event_base_free(base);
}
END_TEST

START_TEST(test_durations)
{
	static const struct {
		const char *in;
		double secs;
	} good[] = { { "1", 1 },       { "90", 90 },        { "90s", 90 }, { "10m", 600 },
		     { "1h30m", 5400 }, { "2d", 172800 }, { "1w", 604800 }, { "1h0m5s", 3605 } };
	static const char *const bad[] = { "", "0", "0s", "-5", "1.5h", "h", "10x", "1h30", "5 m",
					   "99999999999999w", "3700d" };
	char err[160];
	double v;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ck_assert_msg(bans_parse_duration(good[i].in, &v, err, sizeof(err)) == 0, "%s: %s",
			      good[i].in, err);
		ck_assert(v == good[i].secs);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(bans_parse_duration(bad[i], &v, err, sizeof(err)) == -1, "%s accepted", bad[i]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("access");
	TCase *tc = tcase_create("access");

	tcase_set_timeout(tc, SLOW_BUILD ? 300 : 60);
	tcase_add_test(tc, test_prefix_parse_good);
	tcase_add_test(tc, test_prefix_parse_bad);
	tcase_add_test(tc, test_set_edges);
	tcase_add_test(tc, test_interning);
	tcase_add_test(tc, test_random_against_scan);
	tcase_add_test(tc, test_lookup_cost);
	tcase_add_test(tc, test_builtins);
	tcase_add_test(tc, test_policy);
	tcase_add_test(tc, test_file);
	tcase_add_test(tc, test_file_200k);
	tcase_add_test(tc, test_ban_set);
	tcase_add_test(tc, test_out_of_memory);
	tcase_add_test(tc, test_durations);
	suite_add_tcase(s, tc);
	return check_run(s);
}
