#include "bans.h"

#include <ctype.h>
#include <event2/event.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

struct ban_rule {
	char name[RULE_NAME_MAX + 1];
	struct access_set *set;
};

struct ban_set {
	_Atomic unsigned refs;
	struct access_set *all; /* bans on every rule */
	size_t nrules;
	struct ban_rule rules[]; /* sorted by name */
};

static int ban_rule_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ban_rule *)a)->name, ((const struct ban_rule *)b)->name);
}

bool ban_set_match(const struct ban_set *bs, const char *rule, const struct sockaddr *sa)
{
	struct ban_rule key;
	const struct ban_rule *r;

	if (!bs)
		return false;
	if (access_set_contains(bs->all, sa))
		return true;
	if (bs->nrules == 0)
		return false;
	snprintf(key.name, sizeof(key.name), "%s", rule);
	r = bsearch(&key, bs->rules, bs->nrules, sizeof(*r), ban_rule_cmp);
	return r && access_set_contains(r->set, sa);
}

struct ban_set *ban_set_ref(struct ban_set *bs)
{
	if (bs)
		atomic_fetch_add_explicit(&bs->refs, 1, memory_order_relaxed);
	return bs;
}

void ban_set_unref(struct ban_set *bs)
{
	if (!bs || atomic_fetch_sub_explicit(&bs->refs, 1, memory_order_acq_rel) != 1)
		return;
	access_set_unref(bs->all);
	for (size_t i = 0; i < bs->nrules; i++)
		access_set_unref(bs->rules[i].set);
	free(bs);
}

static int ban_cmp_rule(const void *a, const void *b)
{
	return strcmp((*(const struct ban *const *)a)->rule, (*(const struct ban *const *)b)->rule);
}

struct ban_set *ban_set_build(const struct ban *bans, size_t n, bool *oom)
{
	const struct ban **order;
	struct ban_set *bs;
	size_t groups = 0;

	*oom = false;
	if (n == 0)
		return NULL;
	order = malloc(n * sizeof(*order));
	bs = calloc(1, sizeof(*bs) + n * sizeof(bs->rules[0]));
	if (!order || !bs)
		goto oom;
	atomic_init(&bs->refs, 1);
	for (size_t i = 0; i < n; i++)
		order[i] = &bans[i];
	/* "" (every rule) sorts first; then one set per rule name. */
	qsort(order, n, sizeof(*order), ban_cmp_rule);
	for (size_t i = 0; i < n;) {
		struct access_builder b = { 0 };
		struct access_set *set;
		size_t j = i;

		for (; j < n && strcmp(order[j]->rule, order[i]->rule) == 0; j++)
			access_builder_add(&b, &order[j]->prefix);
		set = access_builder_finish(&b);
		if (!set)
			goto oom;
		if (!order[i]->rule[0]) {
			bs->all = set;
		} else {
			snprintf(bs->rules[groups].name, sizeof(bs->rules[groups].name), "%s",
				 order[i]->rule);
			bs->rules[groups++].set = set;
			bs->nrules = groups;
		}
		i = j;
	}
	free(order);
	return bs;
oom:
	*oom = true;
	free(order);
	if (bs)
		ban_set_unref(bs);
	return NULL;
}

/* What a ban covers, for the log: "203.0.113.7 on every rule". */
static const char *bans_describe(const struct ban *ban, char *buf, size_t len)
{
	char p[ACCESS_PREFIX_STRLEN];

	access_prefix_format(&ban->prefix, p, sizeof(p));
	if (ban->rule[0])
		snprintf(buf, len, "%s on rule %s", p, ban->rule);
	else
		snprintf(buf, len, "%s on every rule", p);
	return buf;
}

/* Builds and publishes the set of the list as it is. Returns 0 or -1 (out of memory). */
/* Gives the workers the set of the N bans of LIST (in force when it
 * returns). -1 when out of memory: they keep the set they have. */
static int bans_publish_list(struct bans *b, const struct ban *list, size_t n)
{
	bool oom;
	struct ban_set *bs = ban_set_build(list, n, &oom);

	if (oom)
		return -1;
	b->publish(b->arg, bs);
	return 0;
}

static int bans_publish(struct bans *b)
{
	return bans_publish_list(b, b->list, b->n);
}

/* Sets the timer to the first expiry, if any ban has one. */
static void bans_arm(struct bans *b)
{
	double first = 0;

	for (size_t i = 0; i < b->n; i++)
		if (b->list[i].expires > 0 && (first == 0 || b->list[i].expires < first))
			first = b->list[i].expires;
	if (first > 0) {
		struct timeval tv = clock_timeval(first - clock_now());

		evtimer_add(b->timer, &tv);
	} else {
		evtimer_del(b->timer);
	}
}

static void bans_expire_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bans *b = arg;
	/* A timer may fire a little early: what ends within a millisecond goes now. */
	double now = clock_now() + 0.001;
	char what_s[ACCESS_PREFIX_STRLEN + RULE_NAME_MAX + 32];
	size_t kept = 0;

	struct ban *left = b->n ? malloc(b->n * sizeof(*left)) : NULL;

	(void)fd;
	(void)what;
	for (size_t i = 0; left && i < b->n; i++)
		if (!(b->list[i].expires > 0 && b->list[i].expires <= now))
			left[kept++] = b->list[i];
	/* The list changes only once the workers have the set without the
	 * expired bans: what bans shows is what is enforced. */
	if ((b->n && !left) || (kept != b->n && bans_publish_list(b, left, kept) < 0)) {
		struct timeval again = { 1, 0 };

		log_error("bans: out of memory; expired bans stay in force, trying again in a second");
		free(left);
		evtimer_add(b->timer, &again);
		return;
	}
	for (size_t i = 0; i < b->n; i++)
		if (b->list[i].expires > 0 && b->list[i].expires <= now)
			log_info("ban of %s expired", bans_describe(&b->list[i], what_s, sizeof(what_s)));
	if (kept != b->n) {
		memcpy(b->list, left, kept * sizeof(*left));
		b->n = kept;
	}
	free(left);
	bans_arm(b);
}

struct bans *bans_new(struct event_base *base, void (*publish)(void *arg, struct ban_set *set),
		      void *arg)
{
	struct bans *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->publish = publish;
	b->arg = arg;
	b->timer = evtimer_new(base, bans_expire_cb, b);
	if (!b->timer) {
		free(b);
		return NULL;
	}
	return b;
}

void bans_free(struct bans *b)
{
	if (!b)
		return;
	event_free(b->timer);
	free(b->list);
	free(b);
}

static struct ban *bans_find(struct bans *b, const struct access_prefix *prefix, const char *rule)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->list[i].prefix.family == prefix->family &&
		    b->list[i].prefix.len == prefix->len &&
		    memcmp(b->list[i].prefix.addr, prefix->addr, sizeof(prefix->addr)) == 0 &&
		    strcmp(b->list[i].rule, rule) == 0)
			return &b->list[i];
	return NULL;
}

int bans_add(struct bans *b, const struct access_prefix *prefix, const char *rule, double seconds,
	     char *err, size_t errlen)
{
	struct ban *ban = bans_find(b, prefix, rule), old;
	bool renewed = ban != NULL;
	char what[ACCESS_PREFIX_STRLEN + RULE_NAME_MAX + 32];

	if (!ban) {
		if (b->n >= BANS_MAX) {
			snprintf(err, errlen, "there are %d bans already, the most there may be; unban some first",
				 BANS_MAX);
			return -1;
		}
		if (b->n == b->cap) {
			size_t cap = b->cap ? b->cap * 2 : 16;
			struct ban *grown = realloc(b->list, cap * sizeof(*grown));

			if (!grown) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			b->list = grown;
			b->cap = cap;
		}
		ban = &b->list[b->n++];
		memset(ban, 0, sizeof(*ban));
		ban->prefix = *prefix;
		snprintf(ban->rule, sizeof(ban->rule), "%s", rule);
	}
	old = *ban;
	ban->added = time(NULL);
	ban->expires = seconds > 0 ? clock_now() + seconds : 0;
	ban->until = seconds > 0 ? ban->added + (time_t)ceil(seconds) : 0;
	if (bans_publish(b) < 0) {
		if (renewed)
			*ban = old;
		else
			b->n--;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	bans_arm(b);
	if (seconds > 0)
		log_info("ban%s: %s for %gs", renewed ? " renewed" : "",
			 bans_describe(ban, what, sizeof(what)), seconds);
	else
		log_info("ban%s: %s until unban or restart", renewed ? " renewed" : "",
			 bans_describe(ban, what, sizeof(what)));
	return renewed ? 1 : 0;
}

int bans_remove(struct bans *b, const struct access_prefix *prefix, const char *rule)
{
	struct ban *ban = bans_find(b, prefix, rule);
	char what[ACCESS_PREFIX_STRLEN + RULE_NAME_MAX + 32];

	struct ban saved;
	size_t at;

	if (!ban)
		return -1;
	saved = *ban;
	at = (size_t)(ban - b->list);
	memmove(ban, ban + 1, (b->n - at - 1) * sizeof(*ban));
	b->n--;
	/* Out of memory: the workers keep the set with the ban, so the list
	 * keeps it too (bans shows what is enforced) and unban says so. */
	if (bans_publish(b) < 0) {
		memmove(b->list + at + 1, b->list + at, (b->n - at) * sizeof(*ban));
		b->list[at] = saved;
		b->n++;
		return -2;
	}
	log_info("unban: %s", bans_describe(&saved, what, sizeof(what)));
	bans_arm(b);
	return 0;
}

int bans_parse_duration(const char *text, double *seconds, char *err, size_t errlen)
{
	static const struct {
		char unit;
		double secs;
	} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 }, { 'w', 604800 } };
	const char *p = text;
	double total = 0;

	if (!*p)
		goto bad;
	while (*p) {
		double v = 0, mult = 0;
		int digits = 0;

		for (; isdigit((unsigned char)*p) && digits < 12; p++, digits++)
			v = v * 10 + (*p - '0');
		if (!digits)
			goto bad;
		if (!*p && p == text + digits) {
			mult = 1; /* a plain number: seconds */
		} else {
			for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
				if (*p == units[i].unit)
					mult = units[i].secs;
			if (!mult)
				goto bad;
			p++;
		}
		total += v * mult;
	}
	if (total < 1 || total > BANS_MAX_SECONDS) {
		snprintf(err, errlen, "duration \"%.32s\" is out of range (1s to %.0fd)", text,
			 BANS_MAX_SECONDS / 86400);
		return -1;
	}
	*seconds = total;
	return 0;
bad:
	snprintf(err, errlen, "\"%.32s\" is not a duration (seconds, or e.g. 90s, 10m, 1h30m, 2d, 1w)",
		 text);
	return -1;
}
