#include "admit.h"

#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "bans.h"
#include "clock.h"
#include "listener.h"
#include "log.h"
#include "ratelog.h"
#include "worker.h"

/* Why a client was refused: the log's words, and its counter per protocol. */
enum admit_reason {
	ADMIT_DENY_LIST,
	ADMIT_NOT_ALLOWED,
	ADMIT_BANNED,
};

static const char *const admit_reason_text[] = {
	[ADMIT_DENY_LIST] = "on the deny list",
	[ADMIT_NOT_ALLOWED] = "not on the allow list",
	[ADMIT_BANNED] = "banned",
};

static void admit_count(struct listener *l, unsigned proto, enum admit_reason why, unsigned count)
{
	struct rule_counters *c = &l->stats;
	_Atomic uint64_t *const counters[2][3] = {
		{ &c->tcp_denied_list, &c->tcp_denied_allow, &c->tcp_denied_ban },
		{ &c->udp_denied_list, &c->udp_denied_allow, &c->udp_denied_ban },
	};
	_Atomic uint64_t *n = counters[proto == RULE_PROTO_TCP ? 0 : 1][why];

	/* As STAT_ADD: only this worker writes it. */
	atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + count, memory_order_relaxed);
}

/*
 * "tcp ssh: denied 203.0.113.9 port 51234: not on the allow list": the
 * address apart from the port, as sshd writes it, so that fail2ban's
 * <HOST> takes IPv4 and IPv6 alike (conf/fail2ban/filter.d/portfwd.conf).
 * At most one line a minute per source address, whichever rule and worker
 * (ratelog.h, lock-free).
 */
static struct ratelog admit_ratelog;

static void admit_log(struct listener *l, const struct sockaddr *sa, unsigned proto,
		      enum admit_reason why)
{
	struct ratelog_note note;
	char client[RULE_CLIENT_STRLEN], more[128];
	const void *a = sa->sa_family == AF_INET
				? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
				: (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
	size_t alen = sa->sa_family == AF_INET ? sizeof(struct in_addr) : sizeof(struct in6_addr);

	if (LOG_LVL_INFO > log_get_level())
		return;
	if (!ratelog_allow(&admit_ratelog, a, alen, clock_now(), &note))
		return;
	log_info("%s %s: denied %s: %s%s", rule_proto_name(proto), l->cfg->name,
		 rule_format_client(sa, client, sizeof(client)), admit_reason_text[why],
		 ratelog_suffix(&note, more, sizeof(more)));
}

bool admit_client(struct listener *l, const struct sockaddr *sa, unsigned proto, unsigned count)
{
	enum admit_reason why;

	switch (access_policy_check(l->cfg->access, sa)) {
	case ACCESS_DENIED_LIST:
		why = ADMIT_DENY_LIST;
		break;
	case ACCESS_NOT_ALLOWED:
		why = ADMIT_NOT_ALLOWED;
		break;
	default:
		if (!ban_set_match(l->worker->admit.bans, l->cfg->name, sa))
			return true;
		why = ADMIT_BANNED;
		break;
	}
	admit_count(l, proto, why, count);
	admit_log(l, sa, proto, why);
	return false;
}

struct admit_swap {
	struct worker *w;
	struct ban_set *set;
};

static void admit_swap_cb(void *arg)
{
	struct admit_swap *s = arg;

	ban_set_unref(s->w->admit.bans);
	s->w->admit.bans = s->set;
}

void admit_publish_bans(struct worker **workers, size_t n, struct ban_set *set)
{
	for (size_t i = 0; i < n; i++) {
		/* One reference per worker; the caller's goes to the last. */
		struct admit_swap s = { workers[i], i + 1 < n ? ban_set_ref(set) : set };

		if (worker_call_sync(workers[i], admit_swap_cb, &s) < 0) {
			log_error("worker %d: out of memory; it keeps the bans it had", workers[i]->id);
			ban_set_unref(s.set);
		}
	}
	if (n == 0)
		ban_set_unref(set);
}

void admit_worker_free(struct admit_worker *w)
{
	ban_set_unref(w->bans);
	w->bans = NULL;
}
