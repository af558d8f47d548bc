#include "suggest.h"

#include <stdio.h>
#include <string.h>

size_t suggest_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[64];

	if (lb >= sizeof(row) / sizeof(row[0]) || la >= 64)
		return (size_t)-1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t prev = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cur = row[j];
			size_t best = prev + (a[i - 1] != b[j - 1]);

			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	return row[lb];
}

void suggest_offer(const char *want, const char *candidate, char *best, size_t len, size_t *d)
{
	size_t n = suggest_distance(want, candidate), limit = strlen(want) / 3;

	if (limit > 3)
		limit = 3;
	if (limit < 1)
		limit = 1;
	if (n <= limit && n < *d) {
		snprintf(best, len, "%s", candidate);
		*d = n;
	}
}
