/*
 * How often to log about a client (denied, limited): at most one line per
 * source address per RATELOG_INTERVAL, telling how many were not logged
 * since; and over all sources at most RATELOG_BURST lines at once and
 * RATELOG_RATE a second, so that a scan from many addresses cannot flood
 * the journal either. Not thread-safe: its owner locks it (admit.h). It
 * remembers RATELOG_SLOTS sources; a source pushed out by others is logged
 * again as if new.
 */
#ifndef PORTFWD_RATELOG_H
#define PORTFWD_RATELOG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define RATELOG_INTERVAL 60.0
#define RATELOG_BURST 20.0
#define RATELOG_RATE 5.0
#define RATELOG_SLOTS 1024

struct ratelog_slot;

/* Zero it to start; ratelog_free when done. */
struct ratelog {
	struct ratelog_slot *slots; /* made on first use */
	double tokens, stamp;       /* the budget over all sources */
	bool started;
	uint64_t others;            /* lines not written for lack of budget, not counted in a slot */
};

/* What a line that is written says about the ones that were not. */
struct ratelog_missed {
	uint64_t same;   /* about this source, since its last line */
	uint64_t others; /* about other sources, for the budget over all */
};

/*
 * A line about the source address of SA is due at NOW (seconds, any
 * steady clock): true if it may be written, with *MISSED saying what was
 * left out; false if it is left out (and counted).
 */
bool ratelog_allow(struct ratelog *rl, const struct sockaddr *sa, double now,
		   struct ratelog_missed *missed);

void ratelog_free(struct ratelog *rl);

#endif
