#include "rulework.h"

#include <stdlib.h>

#include "access.h"
#include "listener.h"
#include "log.h"
#include "targets.h"
#include "worker.h"

struct rulework_snap *rulework_snap_new(const struct rule_config *rule)
{
	struct rulework_snap *snap = malloc(sizeof(*snap));

	if (!snap)
		return NULL;
	atomic_init(&snap->refs, 1);
	snap->rule = *rule;
	snap->targets = NULL; /* the rule's set: the caller gives it a reference */
	access_policy_ref(rule->access);
	rule_targets_ref(rule->targets);
	return snap;
}

struct rulework_snap *rulework_snap_ref(struct rulework_snap *snap)
{
	atomic_fetch_add_explicit(&snap->refs, 1, memory_order_relaxed);
	return snap;
}

void rulework_snap_unref(struct rulework_snap *snap)
{
	/* acq_rel: the last owner sees every other owner's reads done. */
	if (snap && atomic_fetch_sub_explicit(&snap->refs, 1, memory_order_acq_rel) == 1) {
		access_policy_unref(snap->rule.access);
		rule_targets_unref(snap->rule.targets);
		targets_unref(snap->targets);
		free(snap);
	}
}

int rulework_init(struct rulework *w, const char *name, struct worker **workers, size_t nworkers)
{
	w->name = name;
	w->workers = workers;
	w->nworkers = nworkers;
	atomic_init(&w->stopping, false);
	atomic_init(&w->draining, false);
	atomic_init(&w->max_tcp, 0);
	atomic_init(&w->max_udp, 0);
	atomic_init(&w->tcp_active, 0);
	atomic_init(&w->udp_active, 0);
	atomic_init(&w->held, 0);
	atomic_init(&w->inflight, 0);
	w->listeners = calloc(nworkers ? nworkers : 1, sizeof(*w->listeners));
	return w->listeners ? 0 : -1;
}

void rulework_fini(struct rulework *w)
{
	free(w->listeners);
	w->listeners = NULL;
}

void rulework_set_limits(struct rulework *w, unsigned max_tcp, unsigned max_udp)
{
	atomic_store(&w->max_tcp, max_tcp);
	atomic_store(&w->max_udp, max_udp);
}

void rulework_hold(struct rulework *w)
{
	atomic_fetch_add(&w->held, 1);
}

void rulework_unhold(struct rulework *w)
{
	atomic_fetch_sub(&w->held, 1);
}

/*
 * A call into one worker about its listener of the rule. Counted in
 * inflight until it has run, so a draining rule is never freed under a
 * queued call.
 */
struct rulework_call {
	struct rulework *w;
	struct listener *l;
	void (*fn)(struct listener *l, void *arg);
	void *arg;
	bool owned; /* free it after the call (posted, not waited for) */
	bool all;   /* FN for L and each of its siblings */
};

static void rulework_call_cb(void *p)
{
	struct rulework_call *c = p;
	struct rulework *w = c->w;
	struct listener *l = c->l, *next;

	if (!c->all) {
		c->fn(l, c->arg);
	} else {
		/* The next one first: FN may free L. */
		for (; l; l = next) {
			next = l->sibling;
			c->fn(l, c->arg);
		}
	}
	if (c->owned)
		free(c);
	atomic_fetch_sub(&w->inflight, 1);
}

static int rulework_post_call(struct rulework *w, size_t i, struct listener *l, bool all,
			      void (*fn)(struct listener *l, void *arg), void *arg)
{
	struct rulework_call *c = malloc(sizeof(*c));

	if (!c)
		return -1;
	*c = (struct rulework_call){ w, l, fn, arg, true, all };
	atomic_fetch_add(&w->inflight, 1);
	if (worker_call(w->workers[i], rulework_call_cb, c) < 0) {
		atomic_fetch_sub(&w->inflight, 1);
		free(c);
		return -1;
	}
	return 0;
}

int rulework_post(struct rulework *w, size_t i, void (*fn)(struct listener *l, void *arg),
		  void *arg)
{
	return rulework_post_call(w, i, w->listeners[i], true, fn, arg);
}

int rulework_post_one(struct rulework *w, size_t i, struct listener *l,
		      void (*fn)(struct listener *l, void *arg), void *arg)
{
	return rulework_post_call(w, i, l, false, fn, arg);
}

static void rulework_sync(struct rulework *w, bool all, void (*fn)(struct listener *l, void *arg),
			  void *arg)
{
	for (size_t i = 0; i < w->nworkers; i++) {
		struct rulework_call c = { w, w->listeners[i], fn, arg, false, all };

		atomic_fetch_add(&w->inflight, 1);
		if (worker_call_sync(w->workers[i], rulework_call_cb, &c) < 0) {
			atomic_fetch_sub(&w->inflight, 1);
			log_error("rule %s: worker %zu: out of memory; a change did not reach it",
				  w->name, i);
		}
	}
}

void rulework_each_sync(struct rulework *w, void (*fn)(struct listener *l, void *arg), void *arg)
{
	rulework_sync(w, true, fn, arg);
}

void rulework_heads_sync(struct rulework *w, void (*fn)(struct listener *l, void *arg), void *arg)
{
	rulework_sync(w, false, fn, arg);
}

bool rulework_drained(const struct rulework *w)
{
	/* held first: a connection's last act is to drop it, after it posted
	 * its calls (which raised inflight). */
	return atomic_load(&w->held) == 0 && atomic_load(&w->inflight) == 0;
}

static bool rulework_claim(_Atomic unsigned *count, unsigned max)
{
	unsigned cur = atomic_load_explicit(count, memory_order_relaxed);

	while (cur < max)
		if (atomic_compare_exchange_weak_explicit(count, &cur, cur + 1, memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	return false;
}

bool rulework_tcp_claim(struct rulework *w)
{
	return rulework_claim(&w->tcp_active, atomic_load_explicit(&w->max_tcp, memory_order_relaxed));
}

static void rulework_recheck_cb(struct listener *l, void *arg)
{
	(void)arg;
	listener_tcp_recheck(l);
}

void rulework_tcp_release(struct rulework *w)
{
	unsigned was = atomic_fetch_sub_explicit(&w->tcp_active, 1, memory_order_relaxed);

	/* From full to not full: every worker may have paused or queued. */
	if (was >= atomic_load_explicit(&w->max_tcp, memory_order_relaxed) &&
	    !atomic_load(&w->stopping))
		for (size_t i = 0; i < w->nworkers; i++)
			rulework_post(w, i, rulework_recheck_cb, NULL);
}

bool rulework_tcp_full(const struct rulework *w)
{
	return atomic_load_explicit(&w->tcp_active, memory_order_relaxed) >=
	       atomic_load_explicit(&w->max_tcp, memory_order_relaxed);
}

bool rulework_udp_claim(struct rulework *w)
{
	return rulework_claim(&w->udp_active, atomic_load_explicit(&w->max_udp, memory_order_relaxed));
}

void rulework_udp_release(struct rulework *w)
{
	atomic_fetch_sub_explicit(&w->udp_active, 1, memory_order_relaxed);
}
