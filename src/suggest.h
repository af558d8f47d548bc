/* "Did you mean ...?": the closest of several names to one misspelt. */
#ifndef PORTFWD_SUGGEST_H
#define PORTFWD_SUGGEST_H

#include <stddef.h>

/* The edit distance (Levenshtein) of A and B; (size_t)-1 past 63 characters. */
size_t suggest_distance(const char *a, const char *b);

/* Offer CANDIDATE for the misspelt WANT: keeps it in BEST (LEN bytes) when it
 * is closer than what BEST holds (at distance *D) and close enough to be a
 * slip (at most a third of its length, and at most 3). Start with *D = -1. */
void suggest_offer(const char *want, const char *candidate, char *best, size_t len, size_t *d);

#endif
