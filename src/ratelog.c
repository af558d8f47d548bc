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

bool ratelog_allow(struct ratelog *r, const void *key, size_t len, double now,
		   struct ratelog_note *note)
{
	uint64_t h = ratelog_hash(key, len), ms = now > 0 ? (uint64_t)(now * 1000) : 0;
	struct ratelog_slot *s = &r->slots[h % RATELOG_SLOTS];
	uint64_t next = ms + RATELOG_INTERVAL * 1000ULL;
	uint64_t old;

	note->held = 0;
	if (atomic_load_explicit(&s->key, memory_order_relaxed) != h) {
		/* A new key (or another one's turn in this place). */
		atomic_store_explicit(&s->key, h, memory_order_relaxed);
		atomic_store_explicit(&s->state, next << 24, memory_order_relaxed);
	} else {
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
