/*
 * libFuzzer harness: the UDP session table (udp_table.c), the per-source
 * table (sources.c) and the IP_PKTINFO / IPV6_PKTINFO control messages,
 * each driven by a sequence of operations and checked against a model
 * kept here.
 *
 * The input is a run of operations: an opcode byte (its value modulo 12)
 * and the bytes its arguments take; an input that runs out mid-operation
 * reads zeros for the rest. One clock, in milliseconds, serves both
 * tables; it only moves forward.
 *
 *   0 udp add C P L     a datagram of client C (address and port, junk
 *                       P in the bytes the key must ignore: flow label,
 *                       scope, sin_zero) to local address L: the session
 *                       found, or a new one added
 *   1 udp find C P L    only the lookup
 *   2 udp remove I      ends the model's session I (modulo their count)
 *   3 udp expire T      ends the sessions idle for more than T/2 seconds
 *   4 udp walk          HASH_ITER over the table
 *   5 src open K C X Y  a TCP connection or UDP session (K's low bit) of
 *                       client C for rule 1..3 (K), under per-source
 *                       limits X and Y (max_connections, new_per_minute,
 *                       udp_sessions, udp_datagrams_per_second, ipv6_prefix)
 *   6 src close H       ends the model's handle H
 *   7 src datagram H D  one datagram in or out (D's low bit) on handle H,
 *                       limited to D >> 1 & 7 a second
 *   8 src top R         sources_top of rule R, at most R >> 2 % 40 entries
 *   9 time A            moves the clock on by one of 16 steps (1 ms .. 1 h)
 *  10 cmsg ...          udp_local_from_msg on a control buffer built from
 *                       the bytes: 0-3 messages, each of a level and type
 *                       (IP_PKTINFO, IPV6_PKTINFO, crossed, others, any),
 *                       a data length (exact, short, long) and data, then
 *                       0-15 bytes of junk; the buffer is malloc'd to its
 *                       exact length
 *  11 pktinfo F A I     udp_local_to_cmsg for family F, 16 address bytes
 *                       A, interface I, read back with udp_local_from_msg
 *
 * Clients come from a small space so that repeats and near-misses happen:
 * two IPv4 addresses, one of them again as IPv4-mapped IPv6, IPv6
 * addresses in the same /64, the same /48 and link-local, 32 more IPv4
 * addresses, one non-IP family, and four ports. Local addresses: none,
 * two IPv4, three IPv6 (one link-local, one a group) and family 0.
 *
 * Checked (abort() on any disagreement):
 *  - udp_table_find returns the model's session for (client family, port,
 *    address; local address), or NULL; udp_table_count and a HASH_ITER
 *    walk agree with the model after every operation; a removed session
 *    is not found; a non-IP client has no key.
 *  - sources_open's verdict and slot are exactly the model's: a source's
 *    connections and sessions against max_connections / udp_sessions,
 *    new_per_minute and udp_datagrams_per_second as the two-window
 *    estimate sources.h documents, IPv6 sources cut to ipv6_prefix, a new
 *    source placed while there is room, else in place of the idle source
 *    seen longest ago (the model knows which; its slot must be that one),
 *    else refused (SOURCES_FULL); untracked kinds cost nothing.
 *    sources_top and its census agree with the model: counts, limited,
 *    rates, idle time, names, the order, the busiest ones first.
 *  - udp_local_from_msg finds the first IP_PKTINFO or IPV6_PKTINFO message
 *    long enough to hold one, and reads nothing outside the buffer;
 *    udp_local_to_cmsg's message reads back as the address it was made
 *    from (the interface kept only for link-local and group addresses;
 *    a group answered from "::").
 * Everything is freed at the end of each input (LeakSanitizer runs).
 *
 * The table's capacity is SOURCES_PROBE, so one window is the whole table
 * and where a source lands does not depend on the table's random hash
 * key; every operation on it moves the clock 16 ms on, so that no two
 * sources were last seen in the same tick and the eviction is determined.
 * The clock of sources.c starts at sources_new: the harness reads the time
 * just before and after, and retries until they are within 0.8 ms of each
 * other, so that its milliseconds are the table's exactly.
 *
 * The control buffers are the shapes the kernel writes (put_cmsg: every
 * message within msg_controllen, truncated if need be); build with
 * -DFUZZ_TABLES_RAW_CMSG to let the lengths claim anything and check only
 * that nothing is read outside the buffer.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "clock.h"
#include "sources.h"
#include "udp_table.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_TABLES_MAX_INPUT 4096
#define UDP_MODEL_MAX 64
#define SRC_CAPACITY SOURCES_PROBE
#define SRC_HANDLES 128
#define TOP_ROOM 40
/* Far enough for every window index and tick to stay in range. */
#define CLOCK_LIMIT_MS 1000000000ULL

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "fuzz_tables: %s:%d: check failed: %s\n",     \
				__FILE__, __LINE__, #cond);                            \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* ---- reading the input ---- */

struct rd {
	const uint8_t *p;
	size_t n;
};

static uint8_t rd_u8(struct rd *r)
{
	if (!r->n)
		return 0;
	r->n--;
	return *r->p++;
}

static void rd_bytes(struct rd *r, void *out, size_t len)
{
	uint8_t *o = out;

	for (size_t i = 0; i < len; i++)
		o[i] = rd_u8(r);
}

/* ---- the clock ---- */

static uint64_t now_ms;
static double clock_base; /* clock_now() just after sources_new */

/* The table's time for NOW_MS: a tenth of a millisecond past it, so
 * that the unknown moment sources_new read (under 0.8 ms before
 * clock_base) never moves it to another millisecond. */
static double clock_at(void)
{
	return clock_base + (double)now_ms / 1000.0 + 0.0001;
}

static void clock_advance(uint64_t ms)
{
	if (now_ms + ms <= CLOCK_LIMIT_MS)
		now_ms += ms;
}

/* ---- the address space ---- */

static const uint8_t mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* A client from selector C and junk byte J. Returns its family. */
static int client_addr(uint8_t c, uint8_t j, struct sockaddr_storage *ss)
{
	static const uint16_t ports[4] = { 53, 5000, 5001, 0 };
	static const char *const v6[] = { "2001:db8::1", "2001:db8::2", "2001:db8:0:1::1",
					  "fe80::1" };
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	unsigned a = c & 7, hi = c >> 3;

	memset(ss, 0, sizeof(*ss));
	/* The bytes that are not family, port or address: whatever they hold. */
	memset(ss, j, sizeof(*ss));
	if (a == 7 && hi == 31) {
		struct sockaddr_un *sun = (struct sockaddr_un *)ss;

		sun->sun_family = AF_UNIX;
		return AF_UNIX;
	}
	if (a <= 1 || a == 7) {
		memset(sin, 0, sizeof(*sin));
		memset(sin->sin_zero, j, sizeof(sin->sin_zero));
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = a == 7 ? htonl(0x0a000000u + hi) : htonl(0xc0000201u + a);
		sin->sin_port = htons(a == 7 ? 7000 : ports[hi & 3]);
		return AF_INET;
	}
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(ports[hi & 3]);
	sin6->sin6_flowinfo = (uint32_t)j * 0x01010101u;
	sin6->sin6_scope_id = (uint32_t)(j & 3);
	if (a == 2) {
		memcpy(&sin6->sin6_addr, mapped_prefix, 12);
		sin6->sin6_addr.s6_addr[12] = 192;
		sin6->sin6_addr.s6_addr[13] = 0;
		sin6->sin6_addr.s6_addr[14] = 2;
		sin6->sin6_addr.s6_addr[15] = 1;
	} else {
		inet_pton(AF_INET6, v6[a - 3], &sin6->sin6_addr);
	}
	return AF_INET6;
}

/* A client as the model sees it: family, port, 16 address bytes. */
struct model_addr {
	int family;
	uint16_t port;
	uint8_t addr[16];
};

static void model_addr_of(const struct sockaddr_storage *ss, struct model_addr *m)
{
	memset(m, 0, sizeof(*m));
	m->family = ss->ss_family;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		m->port = sin->sin_port;
		memcpy(m->addr, &sin->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		m->port = sin6->sin6_port;
		memcpy(m->addr, &sin6->sin6_addr, 16);
	}
}

/* A local address from selector L; *PTR NULL for "none". */
static void local_addr(uint8_t l, struct udp_local *local, const struct udp_local **ptr)
{
	static const char *const v6[] = { "2001:db8:ff::1", "fe80::aa", "ff02::1", "2001:db8:ff::2" };
	unsigned a = l & 7;

	memset(local, 0, sizeof(*local));
	local->ifindex = l >> 3;
	*ptr = local;
	switch (a) {
	case 0:
		*ptr = NULL;
		break;
	case 1:
		break; /* family 0: the listener's one address */
	case 2:
	case 3:
		local->family = AF_INET;
		local->addr.v4.s_addr = htonl(0xc6336401u + (a - 2));
		break;
	default:
		local->family = AF_INET6;
		inet_pton(AF_INET6, v6[a - 4], &local->addr.v6);
		break;
	}
}

/* The local address as the model keys it: family (0: none) and bytes. */
struct model_local {
	int family;
	uint8_t addr[16];
};

static void model_local_of(const struct udp_local *local, struct model_local *m)
{
	memset(m, 0, sizeof(*m));
	if (!local)
		return;
	if (local->family == AF_INET) {
		m->family = AF_INET;
		memcpy(m->addr, &local->addr.v4, 4);
	} else if (local->family == AF_INET6) {
		m->family = AF_INET6;
		memcpy(m->addr, &local->addr.v6, 16);
	}
}

/* ---- the UDP session table and its model ---- */

struct udp_model {
	struct udp_session *s;
	struct model_addr client;
	struct model_local local;
	uint64_t last; /* ms */
};

static struct udp_session *udp_head;
static struct udp_model udp_m[UDP_MODEL_MAX];
static size_t udp_n;

static bool udp_same(const struct udp_model *m, const struct model_addr *c,
		     const struct model_local *l)
{
	return m->client.family == c->family && m->client.port == c->port &&
	       memcmp(m->client.addr, c->addr, 16) == 0 && m->local.family == l->family &&
	       memcmp(m->local.addr, l->addr, 16) == 0;
}

static struct udp_model *udp_model_find(const struct model_addr *c, const struct model_local *l)
{
	for (size_t i = 0; i < udp_n; i++)
		if (udp_same(&udp_m[i], c, l))
			return &udp_m[i];
	return NULL;
}

static void udp_check_count(void)
{
	CHECK(udp_table_count(udp_head) == udp_n);
}

static void udp_op_lookup(struct rd *r, bool add)
{
	struct sockaddr_storage ss;
	struct udp_local local;
	const struct udp_local *lp;
	struct model_addr mc;
	struct model_local ml;
	struct udp_model *m;
	struct udp_session *found;
	uint8_t c = rd_u8(r), j = rd_u8(r), l = rd_u8(r);
	int family = client_addr(c, j, &ss);

	local_addr(l, &local, &lp);
	found = udp_table_find(udp_head, (struct sockaddr *)&ss, lp);
	if (family != AF_INET && family != AF_INET6) {
		struct udp_key key;

		CHECK(found == NULL);
		CHECK(udp_table_key((struct sockaddr *)&ss, lp, &key) < 0);
		return;
	}
	model_addr_of(&ss, &mc);
	model_local_of(lp, &ml);
	m = udp_model_find(&mc, &ml);
	CHECK(found == (m ? m->s : NULL));
	if (!add)
		return;
	if (m) {
		m->last = now_ms;
		return;
	}
	if (udp_n == UDP_MODEL_MAX)
		return; /* the daemon's max_udp_sessions */
	{
		struct udp_session *s = calloc(1, sizeof(*s));

		CHECK(s != NULL);
		CHECK(udp_table_key((struct sockaddr *)&ss, lp, &s->key) == 0);
		CHECK(s->key.family == family);
		CHECK(udp_table_add(&udp_head, s) == 0);
		udp_m[udp_n] = (struct udp_model){ s, mc, ml, now_ms };
		udp_n++;
		CHECK(udp_table_find(udp_head, (struct sockaddr *)&ss, lp) == s);
	}
}

/* Ends the model's session I: out of the table and freed. */
static void udp_end(size_t i)
{
	struct udp_session *s = udp_m[i].s;

	udp_table_remove(&udp_head, s);
	free(s);
	udp_m[i] = udp_m[--udp_n];
}

static void udp_op_remove(struct rd *r)
{
	uint8_t i = rd_u8(r);

	if (udp_n)
		udp_end(i % udp_n);
}

static void udp_op_expire(struct rd *r)
{
	uint64_t idle = (uint64_t)(rd_u8(r) % 64) * 500;

	for (size_t i = 0; i < udp_n;)
		if (now_ms - udp_m[i].last > idle)
			udp_end(i);
		else
			i++;
}

static void udp_op_walk(void)
{
	struct udp_session *s, *tmp;
	size_t n = 0;

	HASH_ITER(hh, udp_head, s, tmp) {
		size_t i;

		for (i = 0; i < udp_n && udp_m[i].s != s; i++)
			;
		CHECK(i < udp_n); /* a session the model does not have */
		n++;
	}
	CHECK(n == udp_n);
}

static void udp_free_all(void)
{
	while (udp_n)
		udp_end(udp_n - 1);
	CHECK(udp_head == NULL);
}

/* ---- the per-source table and its model ---- */

/* A window counter as sources.h describes it: the current window and the
 * one before, the last WIDTH estimated as the current one plus the
 * previous one weighted by how much of it the last WIDTH still covers. */
struct win {
	uint64_t idx, prev, cur;
};

static void win_roll(struct win *w, uint64_t ms, unsigned width)
{
	uint64_t idx = ms / width;

	if (idx == w->idx)
		return;
	w->prev = idx == w->idx + 1 ? w->cur : 0;
	w->cur = 0;
	w->idx = idx;
}

/* The estimate of the last WIDTH, times WIDTH. */
static uint64_t win_scaled(const struct win *w, uint64_t ms, unsigned width)
{
	uint64_t into = ms % width;

	return w->prev * (width - into) + w->cur * width;
}

/* One more event if that keeps the estimate within LIMIT (0: none). */
static bool win_take(struct win *w, uint64_t ms, unsigned width, unsigned limit)
{
	win_roll(w, ms, width);
	if (limit && win_scaled(w, ms, width) + width > (uint64_t)limit * width)
		return false;
	w->cur++;
	return true;
}

static double win_rate(struct win w, uint64_t ms, unsigned width)
{
	win_roll(&w, ms, width);
	return (double)win_scaled(&w, ms, width) / width;
}

struct src_key {
	uint32_t rule;
	int family;
	unsigned prefix;
	uint8_t addr[16];
};

struct src_entry {
	bool used;
	struct src_key key;
	uint32_t slot;
	unsigned conns, sess;
	struct win conn_win, dgram_win[2];
	uint32_t seen; /* tick */
	uint32_t limited;
};

struct src_handle {
	uint32_t slot;
	enum sources_kind kind;
	int e; /* its entry in src_e */
};

static struct sources *src_t;
static struct src_entry src_e[SRC_CAPACITY];
static unsigned src_used;
static uint64_t src_evicted, src_full;
static struct src_handle src_h[SRC_HANDLES];
static size_t src_nh;

static uint32_t src_tick(void)
{
	return (uint32_t)(now_ms * 64 / 1000);
}

/* The key of SS for RULE under PREFIX; false for a non-IP family. */
static bool src_key_of(const struct sockaddr_storage *ss, uint32_t rule, unsigned prefix,
		       struct src_key *k)
{
	memset(k, 0, sizeof(*k));
	k->rule = rule;
	k->family = ss->ss_family;
	if (ss->ss_family == AF_INET) {
		memcpy(k->addr + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		k->prefix = 32;
		return true;
	}
	if (ss->ss_family != AF_INET6)
		return false;
	memcpy(k->addr, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	k->prefix = prefix >= 1 && prefix <= 128 ? prefix : 128;
	for (unsigned bit = k->prefix; bit < 128; bit++)
		k->addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
	return true;
}

static bool src_key_eq(const struct src_key *a, const struct src_key *b)
{
	return a->rule == b->rule && a->family == b->family && a->prefix == b->prefix &&
	       memcmp(a->addr, b->addr, 16) == 0;
}

static void src_name(const struct src_key *k, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (k->family == AF_INET) {
		inet_ntop(AF_INET, k->addr + 12, host, sizeof(host));
		snprintf(buf, len, "%s", host);
	} else {
		inet_ntop(AF_INET6, k->addr, host, sizeof(host));
		snprintf(buf, len, "%s/%u", host, k->prefix);
	}
}

static bool src_tracks(const struct rule_per_source *lim, enum sources_kind kind)
{
	return kind == SOURCES_TCP ? lim->max_connections || lim->new_per_minute
				   : lim->udp_sessions || lim->udp_datagrams_per_second;
}

/* A new table whose clock the harness knows to the millisecond. */
static void src_begin(void)
{
	for (int attempt = 0;; attempt++) {
		double t0 = clock_now();

		src_t = sources_new(SRC_CAPACITY);
		CHECK(src_t != NULL);
		clock_base = clock_now();
		if (clock_base - t0 < 0.0008)
			break;
		/* Preempted in between: the table's epoch is not known well enough. */
		sources_free(src_t);
		CHECK(attempt < 1000);
	}
	memset(src_e, 0, sizeof(src_e));
	src_used = 0;
	src_evicted = src_full = 0;
	src_nh = 0;
}

/* The model's verdict for opening KIND of key K under LIM, and the entry it
 * goes to (-1: none), the slot it must have (SOURCES_NONE: any free one). */
static enum sources_verdict src_model_open(const struct src_key *k,
					   const struct rule_per_source *lim,
					   enum sources_kind kind, int *entry, uint32_t *want_slot)
{
	uint32_t tick = src_tick();
	int victim = -1;

	*entry = -1;
	*want_slot = SOURCES_NONE;
	for (int i = 0; i < SRC_CAPACITY; i++) {
		struct src_entry *e = &src_e[i];
		unsigned max = kind == SOURCES_TCP ? lim->max_connections : lim->udp_sessions;
		unsigned *count = kind == SOURCES_TCP ? &e->conns : &e->sess;
		enum sources_verdict v = SOURCES_OK;

		if (!e->used || !src_key_eq(&e->key, k))
			continue;
		*entry = i;
		*want_slot = e->slot;
		e->seen = tick;
		if (max && *count >= max) {
			e->limited++;
			v = kind == SOURCES_TCP ? SOURCES_CONNECTIONS : SOURCES_SESSIONS;
		} else if (kind == SOURCES_TCP &&
			   !win_take(&e->conn_win, now_ms, 60000, lim->new_per_minute)) {
			e->limited++;
			v = SOURCES_RATE;
		} else {
			(*count)++;
		}
		return v;
	}
	/* A new source: an empty entry, else the idle one seen longest ago. */
	for (int i = 0; i < SRC_CAPACITY; i++) {
		struct src_entry *e = &src_e[i];

		if (!e->used) {
			victim = i;
			break;
		}
		if (e->conns || e->sess)
			continue;
		if (victim < 0 || tick - e->seen > tick - src_e[victim].seen)
			victim = i;
	}
	if (victim < 0) {
		src_full++;
		return SOURCES_FULL;
	}
	if (src_e[victim].used) {
		src_evicted++;
		*want_slot = src_e[victim].slot;
	} else {
		src_used++;
	}
	src_e[victim] = (struct src_entry){
		.used = true,
		.key = *k,
		.slot = *want_slot,
		.conns = kind == SOURCES_TCP,
		.sess = kind == SOURCES_UDP,
		.conn_win = { now_ms / 60000, 0, kind == SOURCES_TCP },
		.seen = tick,
	};
	*entry = victim;
	return SOURCES_OK;
}

static void src_close_handle(size_t h)
{
	struct src_handle *x = &src_h[h];
	struct src_entry *e = &src_e[x->e];

	sources_close(src_t, x->slot, x->kind, clock_at());
	e->seen = src_tick();
	if (x->kind == SOURCES_TCP) {
		CHECK(e->conns > 0);
		e->conns--;
	} else {
		CHECK(e->sess > 0);
		e->sess--;
	}
	src_h[h] = src_h[--src_nh];
}

static void src_limits(uint8_t x, uint8_t y, struct rule_per_source *lim)
{
	static const unsigned prefixes[8] = { 64, 128, 48, 0, 1, 127, 56, 200 };

	lim->max_connections = x & 3;
	lim->new_per_minute = (x >> 2) & 7;
	lim->ipv6_prefix = prefixes[x >> 5];
	lim->udp_sessions = y & 3;
	lim->udp_datagrams_per_second = (y >> 2) & 7;
}

static void src_op_open(struct rd *r)
{
	uint8_t kr = rd_u8(r), c = rd_u8(r), x = rd_u8(r), y = rd_u8(r);
	enum sources_kind kind = kr & 1 ? SOURCES_UDP : SOURCES_TCP;
	uint32_t rule = 1 + (uint32_t)(kr >> 1) % 3, slot, want;
	struct rule_per_source lim;
	struct sockaddr_storage ss;
	enum sources_verdict v, mv;
	struct src_key k;
	int entry;

	src_limits(x, y, &lim);
	client_addr(c, (uint8_t)(kr >> 4), &ss);
	v = sources_open(src_t, rule, &lim, kind, (struct sockaddr *)&ss, clock_at(), &slot);
	if (!src_tracks(&lim, kind) || !src_key_of(&ss, rule, lim.ipv6_prefix, &k)) {
		CHECK(v == SOURCES_OK && slot == SOURCES_NONE);
		return;
	}
	mv = src_model_open(&k, &lim, kind, &entry, &want);
	if (v != mv)
		fprintf(stderr, "fuzz_tables: sources_open said %s, the model %s\n",
			sources_verdict_key(v), sources_verdict_key(mv));
	CHECK(v == mv);
	if (v != SOURCES_OK) {
		CHECK(slot == SOURCES_NONE);
		return;
	}
	CHECK(slot < SRC_CAPACITY);
	if (want != SOURCES_NONE) {
		CHECK(slot == want); /* the source's own entry, or the one evicted */
	} else {
		/* A new entry: no other source's. */
		for (int i = 0; i < SRC_CAPACITY; i++)
			CHECK(i == entry || !src_e[i].used || src_e[i].slot != slot);
		src_e[entry].slot = slot;
	}
	src_h[src_nh++] = (struct src_handle){ slot, kind, entry };
	if (src_nh == SRC_HANDLES)
		src_close_handle(src_nh - 1);
}

static void src_op_close(struct rd *r)
{
	uint8_t h = rd_u8(r);

	if (src_nh)
		src_close_handle(h % src_nh);
}

static void src_op_datagram(struct rd *r)
{
	uint8_t h = rd_u8(r), d = rd_u8(r);
	enum sources_dir dir = d & 1 ? SOURCES_OUT : SOURCES_IN;
	struct rule_per_source lim = { .udp_datagrams_per_second = (d >> 1) & 7, .ipv6_prefix = 64 };
	struct src_handle *x;
	struct src_entry *e;
	bool ok, want;

	if (!src_nh) {
		CHECK(sources_datagram(src_t, SOURCES_NONE, &lim, dir, clock_at()));
		return;
	}
	x = &src_h[h % src_nh];
	e = &src_e[x->e];
	ok = sources_datagram(src_t, x->slot, &lim, dir, clock_at());
	if (dir == SOURCES_IN)
		e->seen = src_tick();
	want = win_take(&e->dgram_win[dir], now_ms, 1000, lim.udp_datagrams_per_second);
	if (!want)
		e->limited++;
	CHECK(ok == want);
}

static double src_score(unsigned conns, unsigned sess, double npm, double din, double dout,
			uint32_t limited)
{
	return (double)(conns + sess) * 1e12 + (npm + din + dout) * 1e3 + (double)limited;
}

static bool near(double a, double b)
{
	double d = a > b ? a - b : b - a;

	return d <= 1e-6 * (1 + (a > b ? a : b));
}

static void src_op_top(struct rd *r)
{
	uint8_t b = rd_u8(r);
	uint32_t rule = 1 + (uint32_t)(b & 3) % 3;
	size_t max = (size_t)(b >> 2) % TOP_ROOM, n, tracked = 0;
	struct sources_entry top[TOP_ROOM];
	struct sources_census c;
	bool shown[SRC_CAPACITY] = { false };
	uint32_t tick = src_tick();
	double last = 0;

	n = sources_top(src_t, rule, clock_at(), top, max, &c);
	CHECK(c.capacity == SRC_CAPACITY && c.used == src_used && c.evicted == src_evicted &&
	      c.full == src_full);
	for (int i = 0; i < SRC_CAPACITY; i++)
		tracked += src_e[i].used && src_e[i].key.rule == rule;
	CHECK(c.tracked == tracked);
	CHECK(n == (tracked < max ? tracked : max));
	for (size_t i = 0; i < n; i++) {
		const struct sources_entry *t = &top[i];
		double score = src_score(t->connections, t->sessions, t->new_per_minute,
					 t->datagrams_in, t->datagrams_out, t->limited);
		int at = -1;

		for (int k = 0; k < SRC_CAPACITY && at < 0; k++) {
			char name[64];

			if (!src_e[k].used || src_e[k].key.rule != rule)
				continue;
			src_name(&src_e[k].key, name, sizeof(name));
			if (strcmp(name, t->name) == 0)
				at = k;
		}
		CHECK(at >= 0 && !shown[at]); /* a source the model has, once */
		shown[at] = true;
		{
			struct src_entry *e = &src_e[at];

			CHECK(t->connections == e->conns && t->sessions == e->sess);
			CHECK(t->limited == e->limited);
			CHECK(near(t->new_per_minute, win_rate(e->conn_win, now_ms, 60000)));
			CHECK(near(t->datagrams_in, win_rate(e->dgram_win[SOURCES_IN], now_ms, 1000)));
			CHECK(near(t->datagrams_out, win_rate(e->dgram_win[SOURCES_OUT], now_ms, 1000)));
			CHECK(near(t->idle, (double)(tick - e->seen) / 64));
		}
		CHECK(i == 0 || score <= last * (1 + 1e-12)); /* the busiest first */
		last = score;
	}
	/* Those left out are no busier than the last one shown. */
	for (int k = 0; n == max && n > 0 && k < SRC_CAPACITY; k++) {
		struct src_entry *e = &src_e[k];

		if (!e->used || e->key.rule != rule || shown[k])
			continue;
		CHECK(src_score(e->conns, e->sess, win_rate(e->conn_win, now_ms, 60000),
				win_rate(e->dgram_win[SOURCES_IN], now_ms, 1000),
				win_rate(e->dgram_win[SOURCES_OUT], now_ms, 1000),
				e->limited) <= last * (1 + 1e-9) + 1e-6);
	}
}

static void src_end(void)
{
	while (src_nh)
		src_close_handle(src_nh - 1);
	sources_free(src_t);
	src_t = NULL;
}

/* ---- control messages ---- */

/* One message's level and type from selector S (and two more bytes for "any"). */
static void cmsg_kind(struct rd *r, uint8_t s, int *level, int *type, size_t *natural)
{
	switch (s & 7) {
	case 0:
		*level = IPPROTO_IP, *type = IP_PKTINFO, *natural = sizeof(struct in_pktinfo);
		break;
	case 1:
		*level = IPPROTO_IPV6, *type = IPV6_PKTINFO, *natural = sizeof(struct in6_pktinfo);
		break;
	case 2:
		*level = IPPROTO_IP, *type = IPV6_PKTINFO, *natural = sizeof(struct in6_pktinfo);
		break;
	case 3:
		*level = IPPROTO_IPV6, *type = IP_PKTINFO, *natural = sizeof(struct in_pktinfo);
		break;
	case 4:
		*level = SOL_SOCKET, *type = SCM_RIGHTS, *natural = sizeof(int);
		break;
	case 5:
		*level = SOL_UDP, *type = UDP_GRO, *natural = sizeof(int);
		break;
	case 6:
		*level = IPPROTO_IP, *type = IP_TOS, *natural = 1;
		break;
	default:
		*level = (int8_t)rd_u8(r);
		*type = rd_u8(r);
		*natural = sizeof(struct in6_pktinfo);
		break;
	}
}

#define CMSG_MAX 3

static void cmsg_op_parse(struct rd *r)
{
	uint8_t head = rd_u8(r);
	unsigned count = head & 3, junk = (head >> 2) & 15;
	size_t len = 0, off[CMSG_MAX] = { 0 }, dlen[CMSG_MAX] = { 0 };
	int level[CMSG_MAX] = { 0 }, type[CMSG_MAX] = { 0 };
	uint8_t data[CMSG_MAX][64];
	struct udp_local got, want;
	int want_rc = -1;
	struct msghdr msg = { 0 };
	uint8_t *buf;
	int rc;

	memset(&want, 0, sizeof(want));
	for (unsigned i = 0; i < count; i++) {
		uint8_t s = rd_u8(r), l = rd_u8(r);
		size_t natural;

		cmsg_kind(r, s, &level[i], &type[i], &natural);
		/* Exact, short by up to 15, or long by up to 31 bytes. */
		if ((l >> 6) == 1)
			dlen[i] = natural > (l & 15u) ? natural - (l & 15u) : 0;
		else if ((l >> 6) == 2)
			dlen[i] = natural + (l & 31u);
		else
			dlen[i] = natural;
		rd_bytes(r, data[i], dlen[i]);
		off[i] = len;
		len += CMSG_SPACE(dlen[i]);
	}
	/* The last message's padding may be cut: the kernel counts it only
	 * when another message follows. */
	if (count && (head & 0x40))
		len = off[count - 1] + CMSG_LEN(dlen[count - 1]);
	len += junk;
	buf = len ? malloc(len) : NULL;
	CHECK(len == 0 || buf != NULL);
	/* Junk wherever no message is written: the padding, and the tail from the input. */
	for (size_t i = 0; i < len; i++)
		buf[i] = i + junk < len ? (uint8_t)(0xa5 ^ i) : rd_u8(r);
	for (unsigned i = 0; i < count; i++) {
		struct cmsghdr h = { .cmsg_len = CMSG_LEN(dlen[i]), .cmsg_level = level[i],
				     .cmsg_type = type[i] };

#ifdef FUZZ_TABLES_RAW_CMSG
		/* Any length at all, as no kernel writes it. */
		h.cmsg_len = (size_t)rd_u8(r) << 8 | rd_u8(r);
#endif
		memcpy(buf + off[i], &h, sizeof(h));
		memcpy(buf + off[i] + CMSG_LEN(0), data[i], dlen[i]);
		/* The expected result: the first one that holds a whole pktinfo. */
		if (want_rc == 0)
			continue;
		if (level[i] == IPPROTO_IP && type[i] == IP_PKTINFO &&
		    dlen[i] >= sizeof(struct in_pktinfo)) {
			struct in_pktinfo pi;

			memcpy(&pi, data[i], sizeof(pi));
			want.family = AF_INET;
			want.ifindex = (unsigned)pi.ipi_ifindex;
			want.addr.v4 = pi.ipi_spec_dst;
			want_rc = 0;
		} else if (level[i] == IPPROTO_IPV6 && type[i] == IPV6_PKTINFO &&
			   dlen[i] >= sizeof(struct in6_pktinfo)) {
			struct in6_pktinfo pi;

			memcpy(&pi, data[i], sizeof(pi));
			want.family = AF_INET6;
			want.ifindex = pi.ipi6_ifindex;
			want.addr.v6 = pi.ipi6_addr;
			want_rc = 0;
		}
	}
	msg.msg_control = buf;
	msg.msg_controllen = len;
	memset(&got, 0x5a, sizeof(got));
	rc = udp_local_from_msg(&msg, &got);
#ifdef FUZZ_TABLES_RAW_CMSG
	CHECK(rc == -1 || got.family == AF_INET || got.family == AF_INET6);
	(void)want_rc;
#else
	CHECK(rc == want_rc);
	CHECK(memcmp(&got, &want, sizeof(got)) == 0);
#endif
	free(buf);
}

static void cmsg_op_round_trip(struct rd *r)
{
	uint8_t f = rd_u8(r);
	struct udp_local in, out;
	union udp_cmsg *ctl = malloc(sizeof(*ctl)); /* exactly: ASan sees an overrun */
	struct msghdr msg = { 0 };
	size_t len;
	int fam = f % 4 == 0 ? AF_INET : f % 4 == 1 ? AF_INET6 : f % 4 == 2 ? 0 : f;

	CHECK(ctl != NULL);
	memset(&in, 0, sizeof(in));
	in.family = (sa_family_t)fam;
	rd_bytes(r, &in.addr, sizeof(in.addr));
	in.ifindex = (unsigned)rd_u8(r) << 8 | rd_u8(r);
	if (fam == AF_INET)
		memset((uint8_t *)&in.addr + 4, 0, sizeof(in.addr) - 4);
	len = udp_local_to_cmsg(&in, ctl);
	msg.msg_control = ctl->buf;
	msg.msg_controllen = len;
	CHECK(len <= sizeof(ctl->buf));
	if (fam != AF_INET && fam != AF_INET6) {
		CHECK(len == 0);
		CHECK(udp_local_from_msg(&msg, &out) == -1);
		free(ctl);
		return;
	}
	CHECK(len == (fam == AF_INET ? CMSG_SPACE(sizeof(struct in_pktinfo))
				     : CMSG_SPACE(sizeof(struct in6_pktinfo))));
	CHECK(udp_local_from_msg(&msg, &out) == 0);
	CHECK(out.family == fam);
	if (fam == AF_INET) {
		CHECK(out.addr.v4.s_addr == in.addr.v4.s_addr);
		CHECK(out.ifindex == 0); /* the route decides */
	} else {
		const uint8_t *a = in.addr.v6.s6_addr;
		bool group = a[0] == 0xff, link = a[0] == 0xfe && (a[1] & 0xc0) == 0x80;

		if (group)
			CHECK(IN6_IS_ADDR_UNSPECIFIED(&out.addr.v6));
		else
			CHECK(memcmp(&out.addr.v6, &in.addr.v6, 16) == 0);
		CHECK(out.ifindex == (group || link ? in.ifindex : 0));
	}
	free(ctl);
}

/* ---- the run ---- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t steps[16] = { 1,    16,    250,   500,   999,   1000,  1001,  1500,
					    2000, 10000, 30000, 59999, 60000, 60001, 90000, 3600000 };
	struct rd r = { data, size };

	if (size > FUZZ_TABLES_MAX_INPUT)
		return -1;
	now_ms = 0;
	src_begin();
	while (r.n) {
		uint8_t op = rd_u8(&r) % 12;

		switch (op) {
		case 0:
		case 1:
			udp_op_lookup(&r, op == 0);
			break;
		case 2:
			udp_op_remove(&r);
			break;
		case 3:
			udp_op_expire(&r);
			break;
		case 4:
			udp_op_walk();
			break;
		case 5:
			src_op_open(&r);
			break;
		case 6:
			src_op_close(&r);
			break;
		case 7:
			src_op_datagram(&r);
			break;
		case 8:
			src_op_top(&r);
			break;
		case 9:
			clock_advance(steps[rd_u8(&r) & 15]);
			break;
		case 10:
			cmsg_op_parse(&r);
			break;
		default:
			cmsg_op_round_trip(&r);
			break;
		}
		/* No two operations on the sources in one tick (1/64 s). */
		if (op >= 5 && op <= 8)
			clock_advance(16);
		udp_check_count();
	}
	udp_op_walk();
	udp_free_all();
	src_end();
	return 0;
}
