/*
 * Runtime bans (portfwdctl ban, unban, bans): addresses or CIDRs refused
 * on every rule or on one rule by name, until unbanned, until the daemon
 * stops, or for a duration. Not part of the configuration: a reload keeps
 * them. Owned by the main thread, which keeps the list and expires it from
 * a timer; each change is published as an immutable, reference-counted
 * ban set, which the workers look up when a client comes (see admit.h).
 */
#ifndef PORTFWD_BANS_H
#define PORTFWD_BANS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include "access.h"
#include "rule.h"

struct event_base;
struct event;

/* The most bans at once: each change rebuilds the set, O(n log n). */
#define BANS_MAX 100000
/* The longest ban with an end: ten years. */
#define BANS_MAX_SECONDS (10 * 366 * 86400.0)

/* What the workers look up: immutable; references may be dropped anywhere. */
struct ban_set;

/* True if a ban covers SA on rule RULE. BS may be NULL (no bans). */
bool ban_set_match(const struct ban_set *bs, const char *rule, const struct sockaddr *sa);
struct ban_set *ban_set_ref(struct ban_set *bs);
void ban_set_unref(struct ban_set *bs);

struct ban {
	struct access_prefix prefix;
	char rule[RULE_NAME_MAX + 1]; /* "" for every rule */
	double expires;               /* clock_now() seconds; 0: until unban or restart */
	time_t added, until;          /* wall clock; until 0 with no end */
};

/* The ban set of BANS (N of them); NULL with none or out of memory (*OOM). */
struct ban_set *ban_set_build(const struct ban *bans, size_t n, bool *oom);

struct bans {
	struct ban *list; /* in the order they were made */
	size_t n, cap;
	struct event *timer; /* at the first expiry */
	void (*publish)(void *arg, struct ban_set *set);
	void *arg;
};

/*
 * Makes the (empty) list on the main loop BASE. Each change calls
 * PUBLISH(ARG, SET) with a new reference to the set in force (NULL for
 * none) before the change returns. NULL when out of memory.
 */
struct bans *bans_new(struct event_base *base, void (*publish)(void *arg, struct ban_set *set),
		      void *arg);
void bans_free(struct bans *b);

/*
 * Bans PREFIX on RULE ("" for every rule) for SECONDS (0: until unban or
 * restart); the same prefix and rule banned again gets the new duration.
 * Returns 0 for a new ban, 1 for one renewed, -1 with a sentence in ERR.
 */
int bans_add(struct bans *b, const struct access_prefix *prefix, const char *rule, double seconds,
	     char *err, size_t errlen);

/* Lifts the ban of exactly PREFIX on RULE. Returns 0, -1 if there is none,
 * or -2 when out of memory (the ban stays, in force and listed). */
int bans_remove(struct bans *b, const struct access_prefix *prefix, const char *rule);

/*
 * A duration: a number of seconds, or numbers with units s, m, h, d, w run
 * together ("90", "10m", "1h30m", "2d"), at least 1 second and at most
 * BANS_MAX_SECONDS. Returns 0, or -1 with a sentence in ERR.
 */
int bans_parse_duration(const char *text, double *seconds, char *err, size_t errlen);

#endif
