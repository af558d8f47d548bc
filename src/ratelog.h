/*
 * Rate-limited log lines about clients that the data path refuses (over a
 * per-source limit, or denied): a flood of them must neither fill the
 * journal nor hide what happened. At most one line per key (a source and
 * its rule, as the caller makes it) per RATELOG_INTERVAL seconds, and at
 * most RATELOG_BURST lines at once overall (then RATELOG_PER_SECOND a
 * second); each line that is written says how many were held back since
 * the last one, for its key and overall.
 *
 * Lock-free (atomics), for any thread; a zeroed struct ratelog is ready.
 * Keys share RATELOG_SLOTS places, each key one of RATELOG_WAYS next to its
 * hash's; a key does not take the place of another that is holding lines
 * back (two threads placing keys at the same instant may cost a line).
 * When all of its places are held that way (more than RATELOG_WAYS keys of
 * one neighbourhood within the interval: likely with a few hundred keys
 * logging at once), the key's lines go by the overall budget alone.
 */
#ifndef PORTFWD_RATELOG_H
#define PORTFWD_RATELOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RATELOG_SLOTS 1024
#define RATELOG_WAYS 4
#define RATELOG_INTERVAL 60
#define RATELOG_BURST 20
#define RATELOG_PER_SECOND 2

struct ratelog {
	struct ratelog_slot {
		_Atomic uint64_t key;   /* the key's hash, 0: unused */
		_Atomic uint64_t state; /* next line allowed (ms, 40 bits) | held back (24 bits) */
	} slots[RATELOG_SLOTS];
	_Atomic uint64_t budget_tat; /* the overall budget: theoretical arrival time (ms) */
	_Atomic uint64_t held_overall;
};

/* The home place of KEY (LEN bytes): for tests of keys that share one. */
size_t ratelog_home(const void *key, size_t len);

/* What the line to be written should add. */
struct ratelog_note {
	uint64_t held;         /* lines about this key held back since its last one */
	uint64_t held_overall; /* lines about any key held back by the overall budget */
};

/* May a line about KEY (LEN bytes) be written at NOW (clock_now seconds)?
 * True with NOTE filled; false when it is held back (and counted). */
bool ratelog_allow(struct ratelog *r, const void *key, size_t len, double now,
		   struct ratelog_note *note);

/* Writes into BUF the end of a line for NOTE: "" when nothing was held
 * back, else " (N more ... held back)". Returns BUF. */
const char *ratelog_suffix(const struct ratelog_note *note, char *buf, size_t len);

#endif
