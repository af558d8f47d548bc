#include "sources.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "clock.h"

/*
 * An entry's state word: who it is (its version: +1 each time it is
 * (re)placed, so a reader that saw an older version knows its entry is
 * gone), whether it is empty, being placed or live, and its live counts.
 * Counting on an entry and taking it over are both a CAS of this word, so
 * they cannot cross: an entry is only taken over with both counts at 0.
 */
#define ST_COUNT_BITS 20
#define ST_COUNT_MAX ((1ULL << ST_COUNT_BITS) - 1)
#define ST_SESS_SHIFT ST_COUNT_BITS
#define ST_KIND_SHIFT (2 * ST_COUNT_BITS)
#define ST_VER_SHIFT (ST_KIND_SHIFT + 2)

enum { KIND_EMPTY = 0, KIND_BUSY = 1, KIND_LIVE = 2 };

#define ST_CONNS(s) ((s) & ST_COUNT_MAX)
#define ST_SESS(s) (((s) >> ST_SESS_SHIFT) & ST_COUNT_MAX)
#define ST_KIND(s) ((unsigned)((s) >> ST_KIND_SHIFT) & 3)
#define ST_VER(s) ((s) >> ST_VER_SHIFT)

_Static_assert(1000000 <= ST_COUNT_MAX, "counts hold max_connections and max_udp_sessions");

/* Window counters: [window number: 24 bits | previous: 20 | current: 20]. */
#define WIN_COUNT_MAX ((1ULL << 20) - 1)
#define WIN_IDX(w) ((w) >> 40)
#define WIN_PREV(w) (((w) >> 20) & WIN_COUNT_MAX)
#define WIN_CUR(w) ((w) & WIN_COUNT_MAX)
#define WIN_IDX_MASK ((1ULL << 24) - 1)

#define SOURCES_STRIPES 256
/* `seen` counts in 1/64 s: 32 bits last two years before they wrap. */
#define TICKS_PER_SECOND 64

struct sources_slot {
	_Atomic uint64_t state;
	/* The source: its address (IPv4 in key[1]'s low half), then
	 * rule << 16 | prefix << 8 | family. */
	_Atomic uint64_t key[3];
	_Atomic uint64_t conn_win; /* new TCP connections, minute windows */
	_Atomic uint64_t dgram_win[2]; /* datagrams in and out, second windows */
	_Atomic uint32_t seen;     /* ticks */
	_Atomic uint32_t limited;
} __attribute__((aligned(SOURCES_ENTRY_SIZE)));

_Static_assert(sizeof(struct sources_slot) == SOURCES_ENTRY_SIZE, "one cache line per entry");

struct sources {
	struct sources_slot *slots;
	size_t size; /* bytes mapped */
	uint32_t n;
	uint32_t probe;
	double epoch;
	uint64_t k0, k1; /* the hash's secret key */
	_Atomic uint32_t used;
	_Atomic uint64_t evicted, full;
	pthread_mutex_t stripes[SOURCES_STRIPES];
};

struct sources_key {
	uint64_t w[3];
};

/* ---- SipHash-2-4 of the three key words ---- */

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                   \
	do {                                                                       \
		v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32);          \
		v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2;                             \
		v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0;                             \
		v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32);          \
	} while (0)

static uint64_t sources_hash(const struct sources *t, const struct sources_key *k)
{
	uint64_t v0 = t->k0 ^ 0x736f6d6570736575ULL, v1 = t->k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = t->k0 ^ 0x6c7967656e657261ULL, v3 = t->k1 ^ 0x7465646279746573ULL;
	uint64_t last = (uint64_t)sizeof(k->w) << 56;

	for (int i = 0; i < 3; i++) {
		v3 ^= k->w[i];
		SIPROUND;
		SIPROUND;
		v0 ^= k->w[i];
	}
	v3 ^= last;
	SIPROUND;
	SIPROUND;
	v0 ^= last;
	v2 ^= 0xff;
	for (int i = 0; i < 4; i++)
		SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- keys ---- */

/* The key of SA for RULE: IPv6 cut to PREFIX bits. Returns 0 or -1. */
static int sources_key(const struct sockaddr *sa, uint32_t rule, unsigned prefix,
		       struct sources_key *k)
{
	uint8_t a[16] = { 0 };

	if (sa->sa_family == AF_INET) {
		memcpy(a + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		prefix = 32;
	} else if (sa->sa_family == AF_INET6) {
		memcpy(a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		if (prefix < 1 || prefix > 128)
			prefix = 128;
		for (unsigned bit = prefix; bit < 128; bit++)
			a[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
	} else {
		return -1;
	}
	memcpy(&k->w[0], a, 8);
	memcpy(&k->w[1], a + 8, 8);
	k->w[2] = (uint64_t)rule << 16 | (uint64_t)prefix << 8 | (uint64_t)sa->sa_family;
	return 0;
}

const char *sources_name(const struct sockaddr *sa, unsigned prefix, char *buf, size_t len)
{
	struct sources_key k;
	char host[INET6_ADDRSTRLEN];
	uint8_t a[16];

	if (sources_key(sa, 0, prefix, &k) < 0) {
		snprintf(buf, len, "(family %d)", sa->sa_family);
		return buf;
	}
	memcpy(a, &k.w[0], 8);
	memcpy(a + 8, &k.w[1], 8);
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, a + 12, host, sizeof(host));
		snprintf(buf, len, "%s", host);
	} else {
		inet_ntop(AF_INET6, a, host, sizeof(host));
		snprintf(buf, len, "%s/%u", host, (unsigned)(k.w[2] >> 8 & 0xff));
	}
	return buf;
}

/* ---- the table ---- */

struct sources *sources_new(unsigned capacity)
{
	struct sources *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	if (capacity < SOURCES_PROBE)
		capacity = SOURCES_PROBE;
	t->n = capacity;
	t->probe = SOURCES_PROBE;
	t->epoch = clock_now();
	/* Zero pages from the kernel: an entry costs memory once a source uses it. */
	t->size = (size_t)capacity * sizeof(struct sources_slot);
	t->slots = mmap(NULL, t->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t->slots == MAP_FAILED ||
	    getrandom(&t->k0, sizeof(t->k0), 0) != sizeof(t->k0) ||
	    getrandom(&t->k1, sizeof(t->k1), 0) != sizeof(t->k1)) {
		if (t->slots != MAP_FAILED)
			munmap(t->slots, t->size);
		free(t);
		return NULL;
	}
	for (int i = 0; i < SOURCES_STRIPES; i++)
		pthread_mutex_init(&t->stripes[i], NULL);
	return t;
}

void sources_free(struct sources *t)
{
	if (!t)
		return;
	for (int i = 0; i < SOURCES_STRIPES; i++)
		pthread_mutex_destroy(&t->stripes[i]);
	munmap(t->slots, t->size);
	free(t);
}

bool sources_tracks(const struct rule_per_source *lim, enum sources_kind kind)
{
	if (kind == SOURCES_TCP)
		return lim->max_connections || lim->new_per_minute;
	return lim->udp_sessions || lim->udp_datagrams_per_second;
}

const char *sources_verdict_key(enum sources_verdict v)
{
	switch (v) {
	case SOURCES_CONNECTIONS:
		return "max_connections";
	case SOURCES_RATE:
		return "new_per_minute";
	case SOURCES_SESSIONS:
		return "udp_sessions";
	case SOURCES_DATAGRAMS:
		return "udp_datagrams_per_second";
	case SOURCES_FULL:
		return "max_tracked_sources";
	default:
		return "none";
	}
}

static uint64_t sources_ms(const struct sources *t, double now)
{
	return now > t->epoch ? (uint64_t)((now - t->epoch) * 1000) : 0;
}

static uint32_t sources_tick(const struct sources *t, double now)
{
	return (uint32_t)(sources_ms(t, now) * TICKS_PER_SECOND / 1000);
}

/* How far ahead of a caller's clock another worker's may be: a moment
 * (the time between reading the clock and getting here), never more. */
#define SOURCES_LEAD_TICKS (60 * TICKS_PER_SECOND)

/* True if SEEN is a little later than TICK: stamped by a worker whose
 * clock was read a moment after this caller's. */
static bool sources_ahead(uint32_t tick, uint32_t seen)
{
	uint32_t lead = seen - tick;

	return lead != 0 && lead <= SOURCES_LEAD_TICKS;
}

/* Ticks from SEEN to TICK; 0 when SEEN is a moment later: a source seen
 * just now is never old. */
static uint32_t sources_age(uint32_t tick, uint32_t seen)
{
	return sources_ahead(tick, seen) ? 0 : tick - seen;
}

static void sources_seen(struct sources_slot *s, uint32_t tick)
{
	uint32_t seen = atomic_load_explicit(&s->seen, memory_order_relaxed);

	/* Most calls come within the same tick: no write then; and never
	 * backwards, for a caller whose clock is a moment behind. */
	while (seen != tick && !sources_ahead(tick, seen) &&
	       !atomic_compare_exchange_weak_explicit(&s->seen, &seen, tick, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

static uint64_t st_make(uint64_t ver, unsigned kind, uint64_t conns, uint64_t sess)
{
	return ver << ST_VER_SHIFT | (uint64_t)kind << ST_KIND_SHIFT | sess << ST_SESS_SHIFT | conns;
}

/* ---- window counters: "at most LIMIT in any WIDTH", estimated the usual
 * way (the current window, plus the previous one weighted by how much of
 * it the last WIDTH still covers) ---- */

/*
 * W rolled forward to the window of NOW_MS; *INTO is how far into that
 * window NOW_MS is. Workers read the clock at different moments before they
 * get here, so NOW_MS may be a little behind the window W is in (another
 * worker's later reading rolled it first): that counts as the start of W's
 * window, never as a roll backwards, which would forget both counts.
 */
static uint64_t win_roll(uint64_t w, uint64_t now_ms, unsigned width_ms, uint64_t *into)
{
	uint64_t idx = (now_ms / width_ms) & WIN_IDX_MASK;

	*into = now_ms % width_ms;
	if (WIN_IDX(w) == idx)
		return w;
	if (((idx + 1) & WIN_IDX_MASK) == WIN_IDX(w)) {
		*into = 0;
		return w;
	}
	if (((WIN_IDX(w) + 1) & WIN_IDX_MASK) == idx)
		return idx << 40 | WIN_CUR(w) << 20;
	return idx << 40;
}

/* Events in the last WIDTH as estimated from rolled W, INTO its window,
 * times WIDTH (exact integers). */
static uint64_t win_scaled(uint64_t w, uint64_t into, unsigned width_ms)
{
	return WIN_PREV(w) * (width_ms - into) + WIN_CUR(w) * width_ms;
}

static double win_rate(const _Atomic uint64_t *win, uint64_t now_ms, unsigned width_ms)
{
	uint64_t into;
	uint64_t w = win_roll(atomic_load_explicit(win, memory_order_relaxed), now_ms, width_ms, &into);

	return (double)win_scaled(w, into, width_ms) / width_ms;
}

/* Counts one event if that keeps the last WIDTH within LIMIT (0: no
 * limit, count only). Returns true if it was counted. */
static bool win_take(_Atomic uint64_t *win, uint64_t now_ms, unsigned width_ms, unsigned limit)
{
	uint64_t old = atomic_load_explicit(win, memory_order_relaxed);

	for (;;) {
		uint64_t into;
		uint64_t w = win_roll(old, now_ms, width_ms, &into);

		if (limit && win_scaled(w, into, width_ms) + width_ms > (uint64_t)limit * width_ms)
			return false;
		if (WIN_CUR(w) < WIN_COUNT_MAX)
			w++;
		if (atomic_compare_exchange_weak_explicit(win, &old, w, memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	}
}

/* ---- finding and placing ---- */

static uint32_t sources_next(const struct sources *t, uint32_t i)
{
	return i + 1 == t->n ? 0 : i + 1;
}

/*
 * The live entry of K in its window from HOME, its state in *ST; or
 * SOURCES_NONE. Lock-free: the key read is trusted only if the entry's
 * version did not move meanwhile. A new source takes the first empty entry
 * of its window and entries never become empty again, so the search stops
 * at the first empty one.
 */
static uint32_t sources_find(struct sources *t, const struct sources_key *k, uint32_t home,
			     uint64_t *st)
{
	uint32_t i = home;

	for (uint32_t p = 0; p < t->probe; p++, i = sources_next(t, i)) {
		struct sources_slot *s = &t->slots[i];
		uint64_t a = atomic_load_explicit(&s->state, memory_order_acquire), b;

		if (ST_KIND(a) == KIND_EMPTY)
			return SOURCES_NONE;
		if (ST_KIND(a) != KIND_LIVE)
			continue;
		if (atomic_load_explicit(&s->key[2], memory_order_acquire) != k->w[2] ||
		    atomic_load_explicit(&s->key[1], memory_order_acquire) != k->w[1] ||
		    atomic_load_explicit(&s->key[0], memory_order_acquire) != k->w[0])
			continue;
		b = atomic_load_explicit(&s->state, memory_order_acquire);
		if (ST_VER(b) != ST_VER(a) || ST_KIND(b) != KIND_LIVE)
			continue;
		*st = b;
		return i;
	}
	return SOURCES_NONE;
}

/*
 * Takes an entry of the window from HOME for a new source: the first empty
 * one, else the idle one (no live count) seen longest ago. It is left BUSY,
 * its state (new version) in *ST. Caller holds the stripe lock of the new
 * key. Returns SOURCES_NONE when every entry is live and counting.
 */
static uint32_t sources_claim(struct sources *t, uint32_t home, uint32_t tick, uint64_t *st)
{
	for (int attempt = 0; attempt < 8; attempt++) {
		uint32_t i = home, best = SOURCES_NONE, best_age = 0;
		uint64_t best_st = 0;
		bool empty = false;

		for (uint32_t p = 0; p < t->probe; p++, i = sources_next(t, i)) {
			struct sources_slot *s = &t->slots[i];
			uint64_t a = atomic_load_explicit(&s->state, memory_order_acquire);
			uint32_t age;

			if (ST_KIND(a) == KIND_EMPTY) {
				best = i;
				best_st = a;
				empty = true;
				break;
			}
			if (ST_KIND(a) != KIND_LIVE || ST_CONNS(a) || ST_SESS(a))
				continue;
			age = sources_age(tick, atomic_load_explicit(&s->seen, memory_order_relaxed));
			if (best == SOURCES_NONE || age > best_age) {
				best = i;
				best_age = age;
				best_st = a;
			}
		}
		if (best == SOURCES_NONE)
			return SOURCES_NONE;
		*st = st_make(ST_VER(best_st) + 1, KIND_BUSY, 0, 0);
		if (atomic_compare_exchange_strong_explicit(&t->slots[best].state, &best_st, *st,
							    memory_order_acq_rel,
							    memory_order_relaxed)) {
			if (empty)
				atomic_fetch_add_explicit(&t->used, 1, memory_order_relaxed);
			else
				atomic_fetch_add_explicit(&t->evicted, 1, memory_order_relaxed);
			return best;
		}
		/* Another worker took or counted on it meanwhile: look again. */
	}
	return SOURCES_NONE;
}

/* Outcome of counting one more on a found entry. */
enum sources_take { TAKE_OK, TAKE_OVER, TAKE_GONE };

/* One more connection (or session) on entry I, whose state was ST, if
 * fewer than MAX (0: no limit). TAKE_GONE: the entry went to another source. */
static enum sources_take sources_take(struct sources *t, uint32_t i, uint64_t st,
				      enum sources_kind kind, unsigned max)
{
	struct sources_slot *s = &t->slots[i];
	unsigned shift = kind == SOURCES_TCP ? 0 : ST_SESS_SHIFT;
	uint64_t ver = ST_VER(st);

	for (;;) {
		uint64_t count = st >> shift & ST_COUNT_MAX;

		if (ST_VER(st) != ver || ST_KIND(st) != KIND_LIVE)
			return TAKE_GONE;
		if ((max && count >= max) || count == ST_COUNT_MAX)
			return TAKE_OVER;
		if (atomic_compare_exchange_weak_explicit(&s->state, &st, st + (1ULL << shift),
							  memory_order_acq_rel,
							  memory_order_acquire))
			return TAKE_OK;
	}
}

/* Admits one more of KIND on the live entry I (state ST) under LIM. */
static enum sources_verdict sources_admit(struct sources *t, uint32_t i, uint64_t st,
					  enum sources_kind kind,
					  const struct rule_per_source *lim, uint64_t ms,
					  bool *gone)
{
	struct sources_slot *s = &t->slots[i];
	unsigned max = kind == SOURCES_TCP ? lim->max_connections : lim->udp_sessions;
	enum sources_take r = sources_take(t, i, st, kind, max);

	*gone = r == TAKE_GONE;
	if (r == TAKE_GONE)
		return SOURCES_FULL;
	if (r == TAKE_OK && kind == SOURCES_TCP &&
	    !win_take(&s->conn_win, ms, 60000, lim->new_per_minute)) {
		/* Held by us since the take: it cannot change hands until the
		 * give-back, so the count goes to this source. */
		atomic_fetch_add_explicit(&s->limited, 1, memory_order_relaxed);
		atomic_fetch_sub_explicit(&s->state, 1, memory_order_acq_rel);
		return SOURCES_RATE;
	}
	if (r == TAKE_OVER) {
		/* Others hold it (its count is at the limit); should they all close
		 * and the entry go to a new source meanwhile, this count (shown by
		 * portfwdctl sources, never a limit) lands there: harmless. */
		atomic_fetch_add_explicit(&s->limited, 1, memory_order_relaxed);
		return kind == SOURCES_TCP ? SOURCES_CONNECTIONS : SOURCES_SESSIONS;
	}
	return SOURCES_OK;
}

/* Fills claimed entry I (BUSY, version of ST) with K holding one KIND, and publishes it. */
static void sources_fill(struct sources *t, uint32_t i, uint64_t st, const struct sources_key *k,
			 enum sources_kind kind, uint64_t ms, uint32_t tick)
{
	struct sources_slot *s = &t->slots[i];

	for (int w = 0; w < 3; w++)
		atomic_store_explicit(&s->key[w], k->w[w], memory_order_relaxed);
	atomic_store_explicit(&s->conn_win, ((ms / 60000) & WIN_IDX_MASK) << 40 | (kind == SOURCES_TCP),
			      memory_order_relaxed);
	atomic_store_explicit(&s->dgram_win[SOURCES_IN], 0, memory_order_relaxed);
	atomic_store_explicit(&s->dgram_win[SOURCES_OUT], 0, memory_order_relaxed);
	atomic_store_explicit(&s->seen, tick, memory_order_relaxed);
	atomic_store_explicit(&s->limited, 0, memory_order_relaxed);
	/* Release: whoever sees it live sees all of the above. */
	atomic_store_explicit(&s->state,
			      st_make(ST_VER(st), KIND_LIVE, kind == SOURCES_TCP, kind == SOURCES_UDP),
			      memory_order_release);
}

enum sources_verdict sources_open(struct sources *t, uint32_t rule,
				  const struct rule_per_source *lim, enum sources_kind kind,
				  const struct sockaddr *sa, double now, uint32_t *slot)
{
	uint64_t ms, h, st;
	uint32_t home, tick, i;
	enum sources_verdict v = SOURCES_OK;
	pthread_mutex_t *lock;
	struct sources_key k;
	bool gone;

	*slot = SOURCES_NONE;
	if (!t || !sources_tracks(lim, kind) || sources_key(sa, rule, lim->ipv6_prefix, &k) < 0)
		return SOURCES_OK;
	ms = sources_ms(t, now);
	tick = sources_tick(t, now);
	h = sources_hash(t, &k);
	home = (uint32_t)(((h >> 32) * t->n) >> 32);
	/* A source seen before: no lock. */
	for (int attempt = 0; attempt < 4; attempt++) {
		if ((i = sources_find(t, &k, home, &st)) == SOURCES_NONE)
			break;
		v = sources_admit(t, i, st, kind, lim, ms, &gone);
		if (!gone)
			goto found;
	}
	/* A new one (or one that moved): placed under its stripe's lock, so
	 * two workers never make two entries for it. */
	lock = &t->stripes[h % SOURCES_STRIPES];
	pthread_mutex_lock(lock);
	for (;;) {
		if ((i = sources_find(t, &k, home, &st)) != SOURCES_NONE) {
			v = sources_admit(t, i, st, kind, lim, ms, &gone);
			if (gone)
				continue;
			pthread_mutex_unlock(lock);
			goto found;
		}
		if ((i = sources_claim(t, home, tick, &st)) == SOURCES_NONE) {
			pthread_mutex_unlock(lock);
			atomic_fetch_add_explicit(&t->full, 1, memory_order_relaxed);
			return SOURCES_FULL;
		}
		sources_fill(t, i, st, &k, kind, ms, tick);
		pthread_mutex_unlock(lock);
		*slot = i;
		return SOURCES_OK;
	}
found:
	sources_seen(&t->slots[i], tick);
	if (v == SOURCES_OK)
		*slot = i;
	return v;
}

void sources_close(struct sources *t, uint32_t slot, enum sources_kind kind, double now)
{
	struct sources_slot *s;

	if (!t || slot == SOURCES_NONE)
		return;
	s = &t->slots[slot];
	/* Seen first: the moment it becomes idle, its age starts from now. */
	sources_seen(s, sources_tick(t, now));
	atomic_fetch_sub_explicit(&s->state, kind == SOURCES_TCP ? 1 : 1ULL << ST_SESS_SHIFT,
				  memory_order_acq_rel);
}

bool sources_datagram(struct sources *t, uint32_t slot, const struct rule_per_source *lim,
		      enum sources_dir dir, double now)
{
	struct sources_slot *s;

	if (!t || slot == SOURCES_NONE)
		return true;
	s = &t->slots[slot];
	if (dir == SOURCES_IN)
		sources_seen(s, sources_tick(t, now));
	if (win_take(&s->dgram_win[dir], sources_ms(t, now), 1000, lim->udp_datagrams_per_second))
		return true;
	atomic_fetch_add_explicit(&s->limited, 1, memory_order_relaxed);
	return false;
}

/* ---- what `portfwdctl sources` shows ---- */

static double sources_score(const struct sources_entry *e)
{
	return (double)(e->connections + e->sessions) * 1e12 +
	       (e->new_per_minute + e->datagrams_in + e->datagrams_out) * 1e3 + (double)e->limited;
}

void sources_census(struct sources *t, struct sources_census *census)
{
	memset(census, 0, sizeof(*census));
	if (!t)
		return;
	census->capacity = t->n;
	census->used = atomic_load_explicit(&t->used, memory_order_relaxed);
	census->evicted = atomic_load_explicit(&t->evicted, memory_order_relaxed);
	census->full = atomic_load_explicit(&t->full, memory_order_relaxed);
}

/* Reads live entry S (state A) into E; false if it changed hands meanwhile. */
static bool sources_read(struct sources_slot *s, uint64_t a, uint64_t ms, uint32_t tick,
			 struct sources_entry *e)
{
	struct sockaddr_storage ss = { 0 };
	uint64_t key[3], b;
	unsigned family;
	uint8_t addr[16];

	for (int w = 0; w < 3; w++)
		key[w] = atomic_load_explicit(&s->key[w], memory_order_acquire);
	memset(e, 0, sizeof(*e));
	e->new_per_minute = win_rate(&s->conn_win, ms, 60000);
	e->datagrams_in = win_rate(&s->dgram_win[SOURCES_IN], ms, 1000);
	e->datagrams_out = win_rate(&s->dgram_win[SOURCES_OUT], ms, 1000);
	e->limited = atomic_load_explicit(&s->limited, memory_order_relaxed);
	e->idle = (double)sources_age(tick, atomic_load_explicit(&s->seen, memory_order_relaxed)) /
		  TICKS_PER_SECOND;
	/* As a seqlock's reader, the loads above must come before the state's
	 * second look: a read-modify-write that changes nothing, with release
	 * order (a fence would do, but ThreadSanitizer does not model fences).
	 * Only portfwdctl sources reads this way, never the data path. */
	b = atomic_fetch_add_explicit(&s->state, 0, memory_order_acq_rel);
	if (ST_VER(b) != ST_VER(a) || ST_KIND(b) != KIND_LIVE)
		return false;
	e->connections = (unsigned)ST_CONNS(b);
	e->sessions = (unsigned)ST_SESS(b);
	memcpy(addr, &key[0], 8);
	memcpy(addr + 8, &key[1], 8);
	family = (unsigned)(key[2] & 0xff);
	ss.ss_family = (sa_family_t)family;
	if (family == AF_INET)
		memcpy(&((struct sockaddr_in *)&ss)->sin_addr, addr + 12, 4);
	else
		memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, addr, 16);
	sources_name((struct sockaddr *)&ss, (unsigned)(key[2] >> 8 & 0xff), e->name, sizeof(e->name));
	return true;
}

size_t sources_top(struct sources *t, uint32_t rule, double now, struct sources_entry *top,
		   size_t max, struct sources_census *census)
{
	uint64_t ms;
	uint32_t tick;
	size_t n = 0;

	sources_census(t, census);
	if (!t)
		return 0;
	ms = sources_ms(t, now);
	tick = sources_tick(t, now);
	for (uint32_t i = 0; i < t->n; i++) {
		struct sources_slot *s = &t->slots[i];
		uint64_t a = atomic_load_explicit(&s->state, memory_order_acquire);
		struct sources_entry e;
		size_t at;

		if (ST_KIND(a) != KIND_LIVE ||
		    atomic_load_explicit(&s->key[2], memory_order_relaxed) >> 16 != rule ||
		    !sources_read(s, a, ms, tick, &e))
			continue;
		census->tracked++;
		/* Insertion into the sorted few. */
		for (at = n; at > 0 && sources_score(&top[at - 1]) < sources_score(&e); at--)
			;
		if (at >= max)
			continue;
		if (n < max)
			n++;
		memmove(&top[at + 1], &top[at], (n - 1 - at) * sizeof(*top));
		top[at] = e;
	}
	return n;
}
