#include "relay_udp.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "listener.h"
#include "log.h"
#include "udp_table.h"
#include "worker.h"

/* Datagrams read per readiness event, so one busy socket cannot starve the rest. */
#define RELAY_UDP_BATCH 64

static void relay_udp_session_end(struct udp_session *s, const char *reason)
{
	struct listener *l = s->rule;
	char client[RULE_ADDR_STRLEN], target[RULE_ADDR_STRLEN];

	if (l->worker->log_connections)
		log_info("udp %s: %s -> %s session ended after %.3fs, %llu datagrams (%llu bytes) to target, %llu datagrams (%llu bytes) to client: %s",
			 l->cfg.name,
			 rule_format_addr((struct sockaddr *)&s->client, client, sizeof(client)),
			 rule_format_addr((struct sockaddr *)&l->cfg.target, target, sizeof(target)),
			 clock_now() - s->started, (unsigned long long)s->dgrams_to_target,
			 (unsigned long long)s->bytes_to_target,
			 (unsigned long long)s->dgrams_to_client,
			 (unsigned long long)s->bytes_to_client, reason);
	udp_table_remove(&l->sessions, s);
	if (s->ev)
		event_free(s->ev);
	if (s->idle)
		event_free(s->idle);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
	l->stats.udp_active--;
}

static void relay_udp_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct udp_session *s = arg;
	double limit = s->rule->cfg.set.udp_idle_timeout;
	double idle = clock_now() - s->last_active;
	struct timeval tv;

	(void)fd;
	(void)what;
	if (idle + 0.001 >= limit) {
		char why[64];

		s->rule->stats.udp_sessions_expired++;
		snprintf(why, sizeof(why), "idle for %gs", limit);
		relay_udp_session_end(s, why);
		return;
	}
	/* Traffic only stamps a time; re-arm for what remains. */
	tv = clock_timeval(limit - idle);
	evtimer_add(s->idle, &tv);
}

/* Replies from the target: send each back to the session's client. */
static void relay_udp_session_cb(evutil_socket_t fd, short what, void *arg)
{
	struct udp_session *s = arg;
	struct listener *l = s->rule;
	unsigned char *buf = l->worker->dgram;

	(void)what;
	for (int i = 0; i < RELAY_UDP_BATCH; i++) {
		ssize_t n = recv(fd, buf, WORKER_DGRAM_MAX, 0);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			/* ECONNREFUSED: ICMP port unreachable from the target. */
			log_debug("udp %s: from target: %s", l->cfg.name, strerror(errno));
			continue;
		}
		s->last_active = clock_now();
		if (l->udp_fd < 0 ||
		    sendto(l->udp_fd, buf, (size_t)n, 0, (struct sockaddr *)&s->client,
			   s->client_len) < 0) {
			l->stats.udp_dropped_error++;
			continue;
		}
		s->dgrams_to_client++;
		s->bytes_to_client += (uint64_t)n;
		l->stats.udp_datagrams_to_client++;
		l->stats.udp_bytes_to_client += (uint64_t)n;
	}
}

static struct udp_session *relay_udp_session_new(struct listener *l,
						 const struct sockaddr_storage *client,
						 socklen_t client_len)
{
	const struct sockaddr *target = (const struct sockaddr *)&l->cfg.target;
	struct udp_session *s = calloc(1, sizeof(*s));
	struct timeval tv = clock_timeval(l->cfg.set.udp_idle_timeout);
	char addr[RULE_ADDR_STRLEN];

	if (!s)
		return NULL;
	s->rule = l;
	s->fd = -1;
	memcpy(&s->client, client, sizeof(s->client));
	s->client_len = client_len;
	s->started = s->last_active = clock_now();
	if (udp_table_key((struct sockaddr *)client, &s->key) < 0)
		goto fail;
	s->fd = socket(target->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || connect(s->fd, target, l->cfg.target_len) < 0) {
		log_warning("udp %s: cannot open a socket to the target %s: %s", l->cfg.name,
			    rule_format_addr(target, addr, sizeof(addr)), strerror(errno));
		goto fail;
	}
	s->ev = event_new(l->worker->base, s->fd, EV_READ | EV_PERSIST, relay_udp_session_cb, s);
	s->idle = evtimer_new(l->worker->base, relay_udp_idle_cb, s);
	if (!s->ev || !s->idle || event_add(s->ev, NULL) < 0 || evtimer_add(s->idle, &tv) < 0)
		goto fail;
	if (udp_table_add(&l->sessions, s) < 0)
		goto fail;
	l->stats.udp_active++;
	l->stats.udp_sessions_created++;
	log_debug("udp %s: new session for %s", l->cfg.name,
		  rule_format_addr((struct sockaddr *)client, addr, sizeof(addr)));
	return s;
fail:
	if (s->ev)
		event_free(s->ev);
	if (s->idle)
		event_free(s->idle);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
	return NULL;
}

void relay_udp_listener_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	unsigned char *buf = l->worker->dgram;

	(void)what;
	for (int i = 0; i < RELAY_UDP_BATCH; i++) {
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		struct udp_session *s;
		ssize_t n = recvfrom(fd, buf, WORKER_DGRAM_MAX, 0, (struct sockaddr *)&from, &fromlen);

		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_debug("udp %s: recvfrom: %s", l->cfg.name, strerror(errno));
			return;
		}
		s = udp_table_find(l->sessions, (struct sockaddr *)&from);
		if (!s) {
			if (l->stats.udp_active >= l->cfg.set.max_udp_sessions) {
				if (l->stats.udp_dropped_limit++ == 0)
					log_warning("udp %s: %u sessions, the max_udp_sessions limit; dropping datagrams from new clients",
						    l->cfg.name, l->cfg.set.max_udp_sessions);
				continue;
			}
			s = relay_udp_session_new(l, &from, fromlen);
			if (!s) {
				l->stats.udp_dropped_error++;
				continue;
			}
		}
		s->last_active = clock_now();
		if (send(s->fd, buf, (size_t)n, 0) < 0) {
			/* UDP may lose datagrams; count it and carry on. */
			l->stats.udp_dropped_error++;
			log_debug("udp %s: to target: %s", l->cfg.name, strerror(errno));
			continue;
		}
		s->dgrams_to_target++;
		s->bytes_to_target += (uint64_t)n;
		l->stats.udp_datagrams_to_target++;
		l->stats.udp_bytes_to_target += (uint64_t)n;
	}
}

void relay_udp_close_all(struct listener *l)
{
	struct udp_session *s, *tmp;

	HASH_ITER(hh, l->sessions, s, tmp)
		relay_udp_session_end(s, "shutdown");
}
