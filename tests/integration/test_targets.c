/* Several targets per rule through the real daemon: the balance policies,
 * failover and passive health, health checks, UDP, reload. Each target is
 * an echo backend of the test's on loopback; status says where the
 * connections went. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "check_run.h"

/* Target I of rule NAME in `status --json` (a new reference), or NULL. */
static json_t *target_json(struct hdaemon *d, const char *name, size_t i)
{
	json_t *st = h_status(d), *rules = json_object_get(st, "rules"), *r, *t = NULL;
	size_t k;

	json_array_foreach(rules, k, r)
		if (strcmp(json_string_value(json_object_get(r, "name")), name) == 0)
			t = json_incref(json_array_get(json_object_get(r, "targets"), i));
	json_decref(st);
	return t;
}

static long long target_num(struct hdaemon *d, const char *name, size_t i, const char *key)
{
	json_t *t = target_json(d, name, i);
	long long v;

	ck_assert_msg(t != NULL, "rule %s has no target %zu in status", name, i);
	v = json_integer_value(json_object_get(t, key));
	json_decref(t);
	return v;
}

/* True if target I's state is STATE ("up", "down") within SECONDS. */
static bool wait_state(struct hdaemon *d, const char *name, size_t i, const char *state,
		       double seconds)
{
	double end = h_now() + seconds;

	for (;;) {
		json_t *t = target_json(d, name, i);
		bool ok = t && strcmp(json_string_value(json_object_get(t, "state")), state) == 0;

		json_decref(t);
		if (ok)
			return true;
		if (h_now() > end)
			return false;
		usleep(20000);
	}
}

/* Waits until target I has WANT active connections (SECONDS at most). */
static long long wait_active(struct hdaemon *d, const char *name, size_t i, long long want,
			     double seconds)
{
	double end = h_now() + seconds;
	long long v;

	while ((v = target_num(d, name, i, "active")) != want && h_now() < end)
		usleep(20000);
	return v;
}

/* A TCP connection from SRC (NULL: any) to 127.0.0.1:PORT, or -1. */
static int connect_from(const char *src, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	if (!src)
		return h_connect("127.0.0.1", port);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	len = h_sockaddr(src, 0, &ss);
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	len = h_sockaddr("127.0.0.1", port, &ss);
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One whole echo through the rule from SRC: 0 if the bytes came back. */
static int echo_once_from(const char *src, unsigned port, uint64_t seed)
{
	int fd = connect_from(src, port), rc;

	if (fd < 0)
		return -1;
	rc = h_echo_exchange(fd, 2000, seed, 10);
	close(fd);
	return rc;
}

static int echo_once(unsigned port, uint64_t seed)
{
	return echo_once_from(NULL, port, seed);
}

/* Starts the daemon with one rule NAME (PROTO) listening on a free port,
 * to TARGETS (the inside of [ ]) and the rest of the rule in EXTRA. */
static unsigned start_rule(struct hdaemon *d, const char *proto, const char *targets,
			   const char *extra)
{
	unsigned port = h_free_port(strcmp(proto, "udp") == 0 ? SOCK_DGRAM : SOCK_STREAM, false);
	char *conf;

	ck_assert_int_ge(asprintf(&conf, "rules: ( { name = \"r\"; proto = \"%s\"; listen = \"127.0.0.1:%u\"; targets = [ %s ]; %s } );",
				  proto, port, targets, extra),
			 0);
	h_start(d, conf);
	free(conf);
	return port;
}

/* "\"127.0.0.1:P1\", \"127.0.0.1:P2\", ..." for the ports of N backends. */
static void target_list(char *buf, size_t len, const struct h_backend *b, int n)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; i < n; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s\"127.0.0.1:%u\"", i ? ", " : "",
					 b[i].port);
}

START_TEST(test_round_robin_even)
{
	struct hdaemon d;
	struct h_backend b[3];
	char list[256];
	unsigned port;

	for (int i = 0; i < 3; i++)
		h_backend_start(&b[i], H_ECHO, false);
	target_list(list, sizeof(list), b, 3);
	port = start_rule(&d, "tcp", list, "balance = \"round-robin\";");
	for (int k = 0; k < 30; k++)
		ck_assert_msg(echo_once(port, (uint64_t)k + 1) == 0, "connection %d failed", k);
	for (size_t i = 0; i < 3; i++) {
		ck_assert_int_eq(target_num(&d, "r", i, "connections"), 10);
		ck_assert_int_eq(target_num(&d, "r", i, "failures"), 0);
	}
	h_stop(&d);
	for (int i = 0; i < 3; i++)
		h_backend_stop(&b[i]);
}
END_TEST

START_TEST(test_failover_policy)
{
	struct hdaemon d;
	struct h_backend b[3];
	char list[256];
	unsigned port;

	for (int i = 0; i < 3; i++)
		h_backend_start(&b[i], H_ECHO, false);
	target_list(list, sizeof(list), b, 3);
	port = start_rule(&d, "tcp", list, ""); /* failover is the default */
	for (int k = 0; k < 6; k++)
		ck_assert(echo_once(port, (uint64_t)k + 1) == 0);
	ck_assert_int_eq(target_num(&d, "r", 0, "connections"), 6);
	ck_assert_int_eq(target_num(&d, "r", 1, "connections"), 0);
	ck_assert_int_eq(target_num(&d, "r", 2, "connections"), 0);
	h_stop(&d);
	for (int i = 0; i < 3; i++)
		h_backend_stop(&b[i]);
}
END_TEST

/* Two held connections, one on each target; the one on target 1 ends: the
 * next goes to target 1, the one with fewer (round-robin would pick 0). */
START_TEST(test_least_connections)
{
	struct hdaemon d;
	struct h_backend b[2];
	char list[256];
	unsigned port;
	int c0, c1, c2;

	for (int i = 0; i < 2; i++)
		h_backend_start(&b[i], H_ECHO, false);
	target_list(list, sizeof(list), b, 2);
	port = start_rule(&d, "tcp", list, "balance = \"least-connections\";");
	c0 = h_connect("127.0.0.1", port);
	ck_assert_int_eq(wait_active(&d, "r", 0, 1, 5), 1);
	c1 = h_connect("127.0.0.1", port);
	ck_assert_int_eq(wait_active(&d, "r", 1, 1, 5), 1);
	close(c1);
	ck_assert_int_eq(wait_active(&d, "r", 1, 0, 5), 0);
	c2 = h_connect("127.0.0.1", port);
	ck_assert_int_ge(c2, 0);
	ck_assert_int_eq(wait_active(&d, "r", 1, 1, 5), 1);
	ck_assert_int_eq(target_num(&d, "r", 0, "active"), 1);
	ck_assert_int_eq(h_echo_exchange(c2, 1000, 7, 10), 0);
	close(c0);
	close(c2);
	h_stop(&d);
	for (int i = 0; i < 2; i++)
		h_backend_stop(&b[i]);
}
END_TEST

/* A client's address picks its target, whatever its port; different
 * clients spread over the targets. */
START_TEST(test_source_hash_tcp)
{
	struct hdaemon d;
	struct h_backend b[3];
	char list[256], src[32];
	unsigned port;
	int used = 0;

	for (int i = 0; i < 3; i++)
		h_backend_start(&b[i], H_ECHO, false);
	target_list(list, sizeof(list), b, 3);
	port = start_rule(&d, "tcp", list, "balance = \"source-hash\";");
	for (int c = 1; c <= 12; c++) {
		long long before[3], grew = 0;

		for (size_t i = 0; i < 3; i++)
			before[i] = target_num(&d, "r", i, "connections");
		snprintf(src, sizeof(src), "127.0.0.%d", c);
		for (int k = 0; k < 4; k++)
			ck_assert_msg(echo_once_from(src, port, (uint64_t)k + 1) == 0, "%s: failed", src);
		/* All four of this client's on one target. */
		for (int i = 0; i < 3; i++) {
			long long n = target_num(&d, "r", (size_t)i, "connections") - before[i];

			ck_assert_msg(n == 0 || n == 4, "client %s: %lld of 4 connections on target %d", src, n, i);
			if (n == 4 && !(used & (1 << i)))
				used |= 1 << i;
			grew += n;
		}
		ck_assert_int_eq(grew, 4);
	}
	ck_assert_msg(used != 1 && used != 2 && used != 4, "12 clients all on one target");
	h_stop(&d);
	for (int i = 0; i < 3; i++)
		h_backend_stop(&b[i]);
}
END_TEST

struct client_loop {
	unsigned port;
	atomic_bool stop;
	int ok, failed;
};

static void *client_loop_thread(void *p)
{
	struct client_loop *cl = p;

	for (uint64_t k = 1; !cl->stop; k++) {
		if (echo_once(cl->port, k) == 0)
			cl->ok++;
		else
			cl->failed++;
		usleep(5000);
	}
	return NULL;
}

/* The first target is stopped while clients keep coming: none of them
 * fails, the second takes over, status says why the first is down. */
START_TEST(test_failover_target_killed)
{
	struct hdaemon d;
	struct h_backend b[2];
	struct client_loop cl = { 0 };
	char list[256];
	pthread_t t;
	json_t *t0;

	for (int i = 0; i < 2; i++)
		h_backend_start(&b[i], H_ECHO, false);
	target_list(list, sizeof(list), b, 2);
	cl.port = start_rule(&d, "tcp", list, "balance = \"failover\";");
	ck_assert_int_eq(pthread_create(&t, NULL, client_loop_thread, &cl), 0);
	usleep(500000);
	h_backend_stop(&b[0]);
	usleep(1500000);
	cl.stop = true;
	pthread_join(t, NULL);
	ck_assert_int_gt(cl.ok, 10);
	ck_assert_msg(cl.failed == 0, "%d of %d clients failed", cl.failed, cl.ok + cl.failed);
	ck_assert_int_gt(target_num(&d, "r", 0, "connections"), 0);
	ck_assert_int_gt(target_num(&d, "r", 1, "connections"), 0);
	ck_assert_int_ge(target_num(&d, "r", 0, "failures"), 1);
	t0 = target_json(&d, "r", 0);
	ck_assert_str_eq(json_string_value(json_object_get(t0, "state")), "down");
	ck_assert_msg(strstr(json_string_value(json_object_get(t0, "reason")), "refused") != NULL,
		      "reason: %s", json_string_value(json_object_get(t0, "reason")));
	json_decref(t0);
	ck_assert_int_eq(h_counter(&d, "r", "tcp", "connect_failed"), 0);
	h_stop(&d);
	h_backend_stop(&b[1]);
}
END_TEST

/* A target whose port is closed: every client still gets through. */
START_TEST(test_passive_closed_port)
{
	struct hdaemon d;
	struct h_backend b;
	char list[256], *text;
	unsigned port, closed = h_free_port(SOCK_STREAM, false);
	bool ok;

	h_backend_start(&b, H_ECHO, false);
	snprintf(list, sizeof(list), "\"127.0.0.1:%u\", \"127.0.0.1:%u\"", closed, b.port);
	port = start_rule(&d, "tcp", list, "balance = \"round-robin\";");
	for (int k = 0; k < 20; k++)
		ck_assert_msg(echo_once(port, (uint64_t)k + 1) == 0, "connection %d failed", k);
	ck_assert_int_eq(target_num(&d, "r", 1, "connections"), 20);
	ck_assert_int_eq(target_num(&d, "r", 0, "connections"), 0);
	ck_assert_int_ge(target_num(&d, "r", 0, "failures"), 1);
	/* Down with back-off: far fewer tries than clients. */
	ck_assert_int_le(target_num(&d, "r", 0, "failures"), 3);
	ck_assert(wait_state(&d, "r", 0, "down", 0));
	ck_assert_int_eq(h_counter(&d, "r", "tcp", "connect_failed"), 0);
	/* The text status and metrics show it too. */
	text = h_ctl(d.sock, "status", &ok);
	ck_assert(ok && text);
	ck_assert_msg(strstr(text, "DOWN since") && strstr(text, "Connection refused"), "%s", text);
	free(text);
	text = h_ctl(d.sock, "metrics", &ok);
	ck_assert(ok && text);
	{
		char want[128];

		snprintf(want, sizeof(want), "portfwd_target_up{rule=\"r\",target=\"127.0.0.1:%u\"} 0", closed);
		ck_assert_msg(strstr(text, want), "no %s in metrics", want);
		snprintf(want, sizeof(want), "portfwd_target_connections_total{rule=\"r\",target=\"127.0.0.1:%u\"} 20", b.port);
		ck_assert_msg(strstr(text, want), "no %s in metrics", want);
	}
	free(text);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* Health checks with no traffic at all: a stopped target falls, back on
 * its port it rises; status --json shows each. */
START_TEST(test_health_checks)
{
	struct hdaemon d;
	struct h_backend b[2], again;
	char list[256];
	json_t *t0;
	unsigned p0;

	for (int i = 0; i < 2; i++)
		h_backend_start(&b[i], H_ECHO, false);
	p0 = b[0].port;
	target_list(list, sizeof(list), b, 2);
	start_rule(&d, "tcp", list,
		   "health_check = { interval = 0.2; timeout = 0.1; rise = 2; fall = 2; };");
	ck_assert(wait_state(&d, "r", 0, "up", 0));
	h_backend_stop(&b[0]);
	ck_assert_msg(wait_state(&d, "r", 0, "down", 5), "target 0 did not fall");
	t0 = target_json(&d, "r", 0);
	ck_assert_msg(strstr(json_string_value(json_object_get(t0, "reason")), "health check") != NULL,
		      "reason: %s", json_string_value(json_object_get(t0, "reason")));
	ck_assert_int_eq(json_integer_value(json_object_get(t0, "connections")), 0);
	json_decref(t0);
	ck_assert(wait_state(&d, "r", 1, "up", 0));
	/* Another struct: the stopped one's connection threads may still read it. */
	h_backend_start_on(&again, H_ECHO, false, p0);
	ck_assert_msg(wait_state(&d, "r", 0, "up", 5), "target 0 did not rise");
	h_stop(&d);
	h_backend_stop(&again);
	h_backend_stop(&b[1]);
}
END_TEST

/* A UDP exchange from SRC on a socket of its own (a new session each). The
 * socket stays open (returned): closed, its port could come back for a later
 * exchange from the same address while the first session lives, and that
 * exchange would join it instead of starting a session. */
static int udp_session_from(const char *src, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char buf[16];
	struct pollfd pf;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	ck_assert_int_ge(fd, 0);
	len = h_sockaddr(src, 0, &ss);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&ss, len), 0);
	len = h_sockaddr("127.0.0.1", port, &ss);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&ss, len), 0);
	ck_assert_int_eq(send(fd, "ping", 4, 0), 4);
	pf = (struct pollfd){ .fd = fd, .events = POLLIN };
	ck_assert_msg(poll(&pf, 1, 5000) == 1, "no echo for %s", src);
	ck_assert_int_eq(recv(fd, buf, sizeof(buf), 0), 4);
	return fd;
}

/* source-hash for UDP: each session of a client address lands on the same
 * target, session after session; the addresses spread. */
START_TEST(test_udp_source_hash)
{
	struct hdaemon d;
	struct h_backend b[2];
	char list[256], src[32], *text;
	unsigned port;
	json_t *doc, *conns, *c;
	size_t k;
	int first[11], fds[30];
	bool ok;

	for (int i = 0; i < 2; i++)
		h_backend_start(&b[i], H_UDP_ECHO, false);
	target_list(list, sizeof(list), b, 2);
	port = start_rule(&d, "udp", list, "balance = \"source-hash\";");
	for (int round = 0; round < 3; round++)
		for (int a = 1; a <= 10; a++) {
			snprintf(src, sizeof(src), "127.0.0.%d", a);
			fds[round * 10 + a - 1] = udp_session_from(src, port);
		}
	ck_assert_int_eq(target_num(&d, "r", 0, "connections") + target_num(&d, "r", 1, "connections"), 30);
	/* Which target each session went to, by client address. */
	text = h_ctl(d.sock, "connections --json", &ok);
	ck_assert(ok && text);
	doc = json_loads(text, 0, NULL);
	free(text);
	conns = json_object_get(doc, "connections");
	ck_assert_int_eq(json_array_size(conns), 30);
	memset(first, 0, sizeof(first));
	json_array_foreach(conns, k, c) {
		const char *client = json_string_value(json_object_get(c, "client"));
		const char *target = json_string_value(json_object_get(c, "target"));
		unsigned tport = (unsigned)atoi(strrchr(target, ':') + 1);
		int a = atoi(client + strlen("127.0.0."));
		int which = tport == b[0].port ? 1 : 2;

		ck_assert(a >= 1 && a <= 10);
		ck_assert_msg(first[a] == 0 || first[a] == which, "client %s: sessions on two targets", client);
		first[a] = which;
	}
	json_decref(doc);
	{
		bool one = false, two = false;

		for (int a = 1; a <= 10; a++) {
			one |= first[a] == 1;
			two |= first[a] == 2;
		}
		ck_assert_msg(one && two, "10 client addresses all on one target");
	}
	for (int i = 0; i < 30; i++)
		close(fds[i]);
	h_stop(&d);
	for (int i = 0; i < 2; i++)
		h_backend_stop(&b[i]);
}
END_TEST

/* A reload that changes the list: new connections use the new targets, a
 * kept target keeps its counters, a connection open across it carries on.
 * A reload that keeps the list keeps its state. */
START_TEST(test_reload_changes_list)
{
	struct hdaemon d;
	struct h_backend b[3];
	char conf[512];
	unsigned port = h_free_port(SOCK_STREAM, false);
	int held;
	char *out;
	bool ok;

	for (int i = 0; i < 3; i++)
		h_backend_start(&b[i], H_ECHO, false);
	snprintf(conf, sizeof(conf), "rules: ( { name = \"r\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; targets = [ \"127.0.0.1:%u\", \"127.0.0.1:%u\" ]; balance = \"round-robin\"; } );",
		 port, b[0].port, b[1].port);
	h_start(&d, conf);
	held = h_connect("127.0.0.1", port); /* to b[0] */
	ck_assert_int_ge(held, 0);
	ck_assert_int_eq(wait_active(&d, "r", 0, 1, 5), 1);
	ck_assert(echo_once(port, 1) == 0); /* to b[1] */
	ck_assert_int_eq(target_num(&d, "r", 1, "connections"), 1);

	snprintf(conf, sizeof(conf), "rules: ( { name = \"r\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; targets = [ \"127.0.0.1:%u\", \"127.0.0.1:%u\" ]; balance = \"round-robin\"; } );",
		 port, b[1].port, b[2].port);
	h_write_conf(&d, conf);
	out = h_ctl(d.sock, "reload", &ok);
	ck_assert_msg(ok, "reload: %s", out);
	free(out);
	for (int k = 0; k < 4; k++)
		ck_assert(echo_once(port, (uint64_t)k + 10) == 0);
	/* b[1], now first, kept its connection; b[0] is gone from the list. */
	ck_assert_int_eq(target_num(&d, "r", 0, "connections"), 1 + 2);
	ck_assert_int_eq(target_num(&d, "r", 1, "connections"), 2);
	{
		json_t *t = target_json(&d, "r", 2);

		ck_assert_ptr_null(t);
	}
	/* The connection from before the reload carries on to b[0]. */
	ck_assert_int_eq(h_echo_exchange(held, 5000, 99, 10), 0);
	close(held);

	/* Another setting changes, not the targets: their state stays. */
	snprintf(conf, sizeof(conf), "rules: ( { name = \"r\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; targets = [ \"127.0.0.1:%u\", \"127.0.0.1:%u\" ]; balance = \"round-robin\"; idle_timeout = 100.0; } );",
		 port, b[1].port, b[2].port);
	h_write_conf(&d, conf);
	out = h_ctl(d.sock, "reload", &ok);
	ck_assert_msg(ok, "reload: %s", out);
	free(out);
	ck_assert_int_eq(target_num(&d, "r", 0, "connections"), 3);
	ck_assert_int_eq(target_num(&d, "r", 1, "connections"), 2);
	/* And back to one target. */
	snprintf(conf, sizeof(conf), "rules: ( { name = \"r\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 port, b[2].port);
	h_write_conf(&d, conf);
	out = h_ctl(d.sock, "reload", &ok);
	ck_assert_msg(ok, "reload: %s", out);
	free(out);
	ck_assert(echo_once(port, 77) == 0);
	ck_assert_int_eq(target_num(&d, "r", 0, "connections"), 3);
	h_stop(&d);
	for (int i = 0; i < 3; i++)
		h_backend_stop(&b[i]);
}
END_TEST

/*
 * tcp+udp: a target TCP found down stays down when new UDP clients are
 * sent to it after its retry time (a datagram out proves nothing, and a
 * spoofed client must not revive it for the TCP clients).
 */
START_TEST(test_udp_does_not_revive)
{
	struct hdaemon d;
	struct h_backend tcp, udp;
	char list[256];
	unsigned port, closed = h_free_port(SOCK_STREAM, false);

	h_backend_start(&tcp, H_ECHO, false);
	h_backend_start_on(&udp, H_UDP_ECHO, false, tcp.port);
	snprintf(list, sizeof(list), "\"127.0.0.1:%u\", \"127.0.0.1:%u\"", closed, tcp.port);
	port = start_rule(&d, "tcp+udp", list, "balance = \"failover\";");
	ck_assert_int_eq(echo_once(port, 1), 0); /* target 0 refuses: down, served by 1 */
	ck_assert(wait_state(&d, "r", 0, "down", 5));
	usleep(1300000); /* past its first retry time */
	for (int k = 0; k < 4; k++) {
		struct sockaddr_storage ss;
		socklen_t len = h_sockaddr("127.0.0.1", port, &ss);
		int fd = socket(AF_INET, SOCK_DGRAM, 0);

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(sendto(fd, "ping", 4, 0, (struct sockaddr *)&ss, len), 4);
		close(fd);
	}
	/* The datagrams reached the dead target (its retry time had come)... */
	{
		double end = h_now() + 5;

		while (target_num(&d, "r", 0, "connections") < 1 && h_now() < end)
			usleep(20000);
		ck_assert_int_ge(target_num(&d, "r", 0, "connections"), 1);
	}
	/* ...and it is still down. */
	ck_assert_msg(wait_state(&d, "r", 0, "down", 0), "new UDP clients marked a dead target up");
	h_stop(&d);
	h_backend_stop(&udp);
	h_backend_stop(&tcp);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("targets");
	TCase *tc = tcase_create("targets");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_round_robin_even);
	tcase_add_test(tc, test_failover_policy);
	tcase_add_test(tc, test_least_connections);
	tcase_add_test(tc, test_source_hash_tcp);
	tcase_add_test(tc, test_failover_target_killed);
	tcase_add_test(tc, test_passive_closed_port);
	tcase_add_test(tc, test_health_checks);
	tcase_add_test(tc, test_udp_source_hash);
	tcase_add_test(tc, test_reload_changes_list);
	tcase_add_test(tc, test_udp_does_not_revive);
	suite_add_tcase(s, tc);
	return check_run(s);
}
