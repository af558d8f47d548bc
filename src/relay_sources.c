#include "relay_sources.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "listener.h"
#include "log.h"
#include "ratelog.h"
#include "rulework.h"
#include "worker.h"

/* One throttle for every line about a limited client, whatever the rule. */
static struct ratelog relay_sources_log;

/* The limit's value, for the line that names it. */
static unsigned relay_sources_limit(const struct rule_per_source *lim, enum sources_verdict v)
{
	switch (v) {
	case SOURCES_CONNECTIONS:
		return lim->max_connections;
	case SOURCES_RATE:
		return lim->new_per_minute;
	case SOURCES_SESSIONS:
		return lim->udp_sessions;
	case SOURCES_DATAGRAMS:
		return lim->udp_datagrams_per_second;
	default:
		return 0;
	}
}

/* Counts V on L and logs it, at most once a minute per source (ratelog). */
static void relay_sources_limited(struct listener *l, const struct rule_config *cfg,
				  const struct sockaddr *sa, enum sources_verdict v,
				  enum sources_kind kind, enum sources_dir dir, unsigned count,
				  double now)
{
	struct rule_counters *st = &l->stats;
	char client[RULE_CLIENT_STRLEN], source[64], key[96], why[256], more[128];
	const char *proto = kind == SOURCES_TCP ? "tcp" : "udp";
	struct ratelog_note note;
	int keylen;

	switch (v) {
	case SOURCES_CONNECTIONS:
		STAT_ADD(st, tcp_limited_connections, count);
		break;
	case SOURCES_RATE:
		STAT_ADD(st, tcp_limited_rate, count);
		break;
	case SOURCES_SESSIONS:
		STAT_ADD(st, udp_limited_sessions, count);
		break;
	case SOURCES_DATAGRAMS:
		STAT_ADD(st, udp_limited_datagrams, count);
		break;
	default:
		if (kind == SOURCES_TCP)
			STAT_ADD(st, tcp_limited_full, count);
		else
			STAT_ADD(st, udp_limited_full, count);
		break;
	}
	sources_name(sa, cfg->set.per_source.ipv6_prefix, source, sizeof(source));
	keylen = snprintf(key, sizeof(key), "%u %s %s", l->work->source_id, proto, source);
	if (!ratelog_allow(&relay_sources_log, key, (size_t)keylen, now, &note))
		return;
	if (v == SOURCES_FULL)
		snprintf(why, sizeof(why), "no room to track source %s (daemon.max_tracked_sources: every entry near its place holds a connected source)",
			 source);
	else
		snprintf(why, sizeof(why), "source %s is at per_source %s (%u)%s", source,
			 sources_verdict_key(v), relay_sources_limit(&cfg->set.per_source, v),
			 dir == SOURCES_OUT ? ", the reflection guard" : "");
	/* "limited ADDRESS port PORT" as admit.c's "denied" lines, for fail2ban;
	 * replies dropped by the reflection guard are no sign against the source. */
	log_info("%s %s: %s %s: %s%s", proto, cfg->name,
		 dir == SOURCES_OUT ? "limited replies to" : "limited",
		 rule_format_client(sa, client, sizeof(client)), why,
		 ratelog_suffix(&note, more, sizeof(more)));
}

/* Asks the table for one more KIND of source SA on L; -1 (counted COUNT
 * times, logged) if not. */
static int relay_sources_open(struct listener *l, enum sources_kind kind, const struct sockaddr *sa,
			      unsigned count, uint32_t *slot)
{
	double now = clock_now();
	enum sources_verdict v = sources_open(l->worker->sources, l->work->source_id,
					      &l->cfg->set.per_source, kind, sa, now, slot);

	if (v == SOURCES_OK)
		return 0;
	relay_sources_limited(l, l->cfg, sa, v, kind, SOURCES_IN, count, now);
	return -1;
}

int relay_sources_tcp_open(struct listener *l, int fd, const struct sockaddr *sa, uint32_t *slot)
{
	static const struct linger reset = { 1, 0 };

	if (relay_sources_open(l, SOURCES_TCP, sa, 1, slot) == 0)
		return 0;
	/* A reset, so the client knows at once rather than after a timeout. */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
	close(fd);
	return -1;
}

int relay_sources_udp_open(struct listener *l, const struct sockaddr *sa, unsigned count,
			   uint32_t *slot)
{
	return relay_sources_open(l, SOURCES_UDP, sa, count, slot);
}

void relay_sources_close(struct listener *l, uint32_t slot, enum sources_kind kind)
{
	if (slot != SOURCES_NONE)
		sources_close(l->worker->sources, slot, kind, clock_now());
}

bool relay_sources_datagram(struct listener *l, const struct rule_config *cfg, uint32_t slot,
			    const struct sockaddr *client, enum sources_dir dir, double now)
{
	if (slot == SOURCES_NONE ||
	    sources_datagram(l->worker->sources, slot, &cfg->set.per_source, dir, now))
		return true;
	relay_sources_limited(l, cfg, client, SOURCES_DATAGRAMS, SOURCES_UDP, dir, 1, now);
	return false;
}
