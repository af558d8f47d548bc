#include "ratelog.h"

#include <stdio.h>

#define RATELOG_HELD_MAX ((1ULL << 24) - 1)

/* FNV-1a: the key only spreads lines over places; never 0 (unused). */
static uint64_t ratelog_hash(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h | 1;
}

/* The hash's low bit is always 1: the home comes from the others. */
static size_t ratelog_home_of(uint64_t h)
{
	return (size_t)((h >> 1) % RATELOG_SLOTS);
}

size_t ratelog_home(const void *key, size_t len)
{
	return ratelog_home_of(ratelog_hash(key, len));
}

/* The overall budget, as a GCRA: RATELOG_PER_SECOND, bursts of RATELOG_BURST. */
static bool ratelog_budget(struct ratelog *r, uint64_t ms)
{
	const uint64_t step = 1000 / RATELOG_PER_SECOND, slack = step * (RATELOG_BURST - 1);
	uint64_t tat = atomic_load_explicit(&r->budget_tat, memory_order_relaxed);

	for (;;) {
		uint64_t from = tat > ms ? tat : ms;

		if (from - ms > slack)
			return false;
		if (atomic_compare_exchange_weak_explicit(&r->budget_tat, &tat, from + step,
							  memory_order_relaxed, memory_order_relaxed))
			return true;
	}
}

/*
 * The place of key hash H: one of RATELOG_WAYS neighbours of its home. Its
 * own if it has one; else an unused one, or one whose key's next line is
 * due anyway (that key is not being held back: losing its place loses at
 * most the count of its held lines); else NULL, and the key goes by the
 * overall budget alone, so that keys that collide never reset each other's
 * minute.
 */
static struct ratelog_slot *ratelog_place(struct ratelog *r, uint64_t h, uint64_t ms, bool *own,
					  uint64_t *seen)
{
	struct ratelog_slot *spare = NULL;
	size_t home = ratelog_home_of(h);

	*own = false;
	for (unsigned w = 0; w < RATELOG_WAYS; w++) {
		struct ratelog_slot *c = &r->slots[(home + w) % RATELOG_SLOTS];
		uint64_t k = atomic_load_explicit(&c->key, memory_order_relaxed);
		uint64_t st = atomic_load_explicit(&c->state, memory_order_relaxed);

		if (k == h) {
			*own = true;
			return c;
		}
		if (!spare && (k == 0 || ms >= st >> 24)) {
			spare = c;
			*seen = st;
		}
	}
	return spare;
}

bool ratelog_allow(struct ratelog *r, const void *key, size_t len, double now,
		   struct ratelog_note *note)
{
	uint64_t h = ratelog_hash(key, len), ms = now > 0 ? (uint64_t)(now * 1000) : 0;
	uint64_t next = ms + RATELOG_INTERVAL * 1000ULL;
	bool own;
	uint64_t old = 0;
	struct ratelog_slot *s = ratelog_place(r, h, ms, &own, &old);

	note->held = 0;
	if (s && !own) {
		/* A new key (or one back after its place was given up): the place
		 * is taken only as it was seen, spare; another thread that took it
		 * or held a line back meanwhile keeps it, and this key goes by the
		 * overall budget. */
		if (atomic_compare_exchange_strong_explicit(&s->state, &old, next << 24,
							    memory_order_relaxed,
							    memory_order_relaxed))
			atomic_store_explicit(&s->key, h, memory_order_relaxed);
	} else if (s) {
		old = atomic_load_explicit(&s->state, memory_order_relaxed);
		for (;;) {
			uint64_t held = old & RATELOG_HELD_MAX, want;
			bool due = ms >= old >> 24;

			want = due ? next << 24 : (old & ~RATELOG_HELD_MAX) | (held < RATELOG_HELD_MAX ? held + 1 : held);
			if (atomic_compare_exchange_weak_explicit(&s->state, &old, want,
								  memory_order_relaxed,
								  memory_order_relaxed)) {
				if (!due)
					return false;
				note->held = held;
				break;
			}
		}
	}
	if (!ratelog_budget(r, ms)) {
		atomic_fetch_add_explicit(&r->held_overall, 1 + note->held, memory_order_relaxed);
		return false;
	}
	note->held_overall = atomic_exchange_explicit(&r->held_overall, 0, memory_order_relaxed);
	return true;
}

const char *ratelog_suffix(const struct ratelog_note *note, char *buf, size_t len)
{
	if (note->held && note->held_overall)
		snprintf(buf, len, " (%llu more since the last such line; %llu lines about others held back)",
			 (unsigned long long)note->held, (unsigned long long)note->held_overall);
	else if (note->held)
		snprintf(buf, len, " (%llu more since the last such line)",
			 (unsigned long long)note->held);
	else if (note->held_overall)
		snprintf(buf, len, " (%llu lines about others held back)",
			 (unsigned long long)note->held_overall);
	else if (len)
		buf[0] = '\0';
	return buf;
}
