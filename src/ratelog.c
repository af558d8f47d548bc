#include "ratelog.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* Slots looked at for one source: where it hashes and the next few. */
#define RATELOG_PROBE 4

struct ratelog_slot {
	unsigned char key[17]; /* family, then the address */
	bool used;
	double last;         /* when its last line was written */
	uint64_t suppressed; /* lines about it not written since */
};

static void ratelog_key(const struct sockaddr *sa, unsigned char *key)
{
	memset(key, 0, 17);
	key[0] = (unsigned char)sa->sa_family;
	if (sa->sa_family == AF_INET)
		memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	else if (sa->sa_family == AF_INET6)
		memcpy(key + 1, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
}

static size_t ratelog_hash(const unsigned char *key)
{
	uint64_t h = 1469598103934665603ULL;

	for (int i = 0; i < 17; i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	return (size_t)(h ^ h >> 32);
}

/*
 * The slot of KEY, or where it would go: a free slot among those probed,
 * else the one whose last line is oldest (*EVICT set). NULL without memory.
 */
static struct ratelog_slot *ratelog_slot(struct ratelog *rl, const unsigned char *key, bool *found,
					 bool *evict)
{
	size_t at = ratelog_hash(key) % RATELOG_SLOTS;
	struct ratelog_slot *free_slot = NULL, *oldest = NULL;

	*found = *evict = false;
	if (!rl->slots && !(rl->slots = calloc(RATELOG_SLOTS, sizeof(*rl->slots))))
		return NULL;
	for (size_t i = 0; i < RATELOG_PROBE; i++) {
		struct ratelog_slot *s = &rl->slots[(at + i) % RATELOG_SLOTS];

		if (!s->used) {
			if (!free_slot)
				free_slot = s;
			continue;
		}
		if (memcmp(s->key, key, sizeof(s->key)) == 0) {
			*found = true;
			return s;
		}
		if (!oldest || s->last < oldest->last)
			oldest = s;
	}
	if (free_slot)
		return free_slot;
	*evict = true;
	return oldest;
}

/* Takes one line from the budget over all sources, if there is one. */
static bool ratelog_budget(struct ratelog *rl, double now)
{
	if (!rl->started) {
		rl->started = true;
		rl->tokens = RATELOG_BURST;
	} else if (now > rl->stamp) {
		rl->tokens += (now - rl->stamp) * RATELOG_RATE;
		if (rl->tokens > RATELOG_BURST)
			rl->tokens = RATELOG_BURST;
	}
	rl->stamp = now;
	if (rl->tokens < 1)
		return false;
	rl->tokens -= 1;
	return true;
}

bool ratelog_allow(struct ratelog *rl, const struct sockaddr *sa, double now,
		   struct ratelog_missed *missed)
{
	unsigned char key[17];
	struct ratelog_slot *s;
	bool found, evict;

	ratelog_key(sa, key);
	s = ratelog_slot(rl, key, &found, &evict);
	if (found && now - s->last < RATELOG_INTERVAL) {
		s->suppressed++;
		return false;
	}
	if (!ratelog_budget(rl, now)) {
		if (found)
			s->suppressed++;
		else
			rl->others++;
		return false;
	}
	missed->same = found ? s->suppressed : 0;
	missed->others = rl->others;
	rl->others = 0;
	if (s) {
		/* A source pushed out takes what it had not logged along, into others. */
		if (evict)
			rl->others += s->suppressed;
		memcpy(s->key, key, sizeof(s->key));
		s->used = true;
		s->last = now;
		s->suppressed = 0;
	}
	return true;
}

void ratelog_free(struct ratelog *rl)
{
	free(rl->slots);
	memset(rl, 0, sizeof(*rl));
}
