/*
 * Live operations against the real daemon: reload under load, refused
 * reloads (forwarding loops among them), draining, disable/enable, kill,
 * check and metrics.
 */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check_run.h"
#include "harness.h"

static const char *bin(const char *var, const char *fallback)
{
	const char *v = getenv(var);

	return v && *v ? v : fallback;
}

#define PORTFWD bin("PORTFWD_BIN", "build/default/portfwd")
#define PORTFWDCTL bin("PORTFWDCTL_BIN", "build/default/portfwdctl")

/* portfwdctl -s SOCK A1 [A2 [A3]]: the exit status, the output in *OUT. */
static int ctl(struct hdaemon *d, char **out, const char *a1, const char *a2, const char *a3)
{
	char *argv[] = { (char *)PORTFWDCTL, "-s", d->sock, (char *)a1, (char *)a2, (char *)a3, NULL };

	return h_run(argv, out);
}

/* portfwdctl that must succeed; returns nothing. */
static void ctl_ok(struct hdaemon *d, const char *a1, const char *a2, const char *a3)
{
	char *out;
	int rc = ctl(d, &out, a1, a2, a3);

	ck_assert_msg(rc == 0, "portfwdctl %s %s: exit %d: %s", a1, a2 ? a2 : "", rc, out);
	free(out);
}

static long long generation(struct hdaemon *d)
{
	json_t *doc = h_status(d);
	long long g = json_integer_value(json_object_get(doc, "generation"));

	json_decref(doc);
	return g;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	nanosleep(&ts, NULL);
}

/* One short echo exchange through PORT: connect, send, read it back. */
static int echo_once(unsigned port, uint64_t seed)
{
	int fd = h_connect("127.0.0.1", port);
	int rc;

	if (fd < 0)
		return -1;
	rc = h_echo_exchange(fd, 1000, seed, 10);
	close(fd);
	return rc;
}

/* One UDP datagram through PORT and its echo, within 3 seconds. */
static int udp_once(int fd, unsigned port, unsigned seq)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char msg[64], got[64];
	/* 3 s: a loaded machine (sanitizers, parallel builds) was seen to take
	 * more than 1 s for the first datagram of a session. */
	double deadline = h_now() + 3;
	int len = snprintf(msg, sizeof(msg), "datagram %u", seq);

	if (sendto(fd, msg, (size_t)len, 0, (struct sockaddr *)&sa, sizeof(sa)) != len)
		return -1;
	while (h_now() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = recv(fd, got, sizeof(got), 0);
		if (n == len && memcmp(got, msg, (size_t)len) == 0)
			return 0;
		/* A late echo of an earlier datagram: keep waiting for ours. */
	}
	return -1;
}

/* ---- reload under load ---- */

struct load {
	unsigned tcp_port, udp_port;
	atomic_bool stop;
	atomic_long tcp_tries, tcp_failed, udp_tries, udp_failed;
};

static void *tcp_loop(void *p)
{
	struct load *ld = p;

	for (uint64_t i = 0; !ld->stop && i < 1000000; i++) {
		ld->tcp_tries++;
		if (echo_once(ld->tcp_port, i) != 0)
			ld->tcp_failed++;
	}
	return NULL;
}

static void *udp_loop(void *p)
{
	struct load *ld = p;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	for (unsigned i = 0; !ld->stop && i < 1000000; i++) {
		ld->udp_tries++;
		if (udp_once(fd, ld->udp_port, i) != 0)
			ld->udp_failed++;
	}
	close(fd);
	return NULL;
}

/* 1 GiB to a backend that answers with the count and hash of what it got. */
struct bulk {
	unsigned port;
	size_t len;
	atomic_llong sent;
	uint64_t hash;
	char reply[128];
	int rc;
};

static void *bulk_thread(void *p)
{
	struct bulk *b = p;
	static unsigned char buf[1 << 16];
	struct h_stream s;
	int fd = h_connect("127.0.0.1", b->port);
	double deadline = h_now() + 240;
	ssize_t n;
	size_t got = 0;

	b->rc = -1;
	if (fd < 0)
		return NULL;
	h_stream_init(&s, 7);
	b->hash = H_HASH_INIT;
	while ((size_t)b->sent < b->len && h_now() < deadline) {
		size_t chunk = b->len - (size_t)b->sent < sizeof(buf) ? b->len - (size_t)b->sent : sizeof(buf);
		size_t off = 0;

		h_stream_fill(&s, buf, chunk);
		b->hash = h_hash(b->hash, buf, chunk);
		while (off < chunk && h_now() < deadline) {
			n = send(fd, buf + off, chunk - off, MSG_NOSIGNAL);
			if (n <= 0)
				goto out;
			off += (size_t)n;
		}
		b->sent += (long long)off;
	}
	shutdown(fd, SHUT_WR);
	while (got < sizeof(b->reply) - 1 && h_now() < deadline) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };

		if (poll(&pf, 1, 200) <= 0)
			continue;
		n = read(fd, b->reply + got, sizeof(b->reply) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	b->reply[got] = '\0';
	b->rc = 0;
out:
	close(fd);
	return NULL;
}

static char rules_body[4096];

/* The rules of the reload test into rules_body; the extra rule if EXTRA_PORT. */
static void make_rules(unsigned echo_port, unsigned echo_target, unsigned bulk_port,
		       unsigned bulk_target, unsigned extra_port)
{
	int n = snprintf(rules_body, sizeof(rules_body),
			 "rules: (\n"
			 "  { name = \"echo\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; },\n"
			 "  { name = \"bulk\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; }",
			 echo_port, echo_target, bulk_port, bulk_target);

	if (extra_port)
		snprintf(rules_body + n, sizeof(rules_body) - (size_t)n,
			 ",\n  { name = \"extra\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; }\n);",
			 extra_port, echo_target);
	else
		snprintf(rules_body + n, sizeof(rules_body) - (size_t)n, "\n);");
}

START_TEST(test_reload_under_load)
{
	struct h_backend tcp_echo, udp_echo, counter;
	struct hdaemon d;
	struct load ld = { 0 };
	struct bulk bk = { .len = (size_t)1 << 30 };
	unsigned long before[4][64], after[4][64];
	int nbefore[4], nafter[4];
	unsigned ports[4];
	pthread_t t1, t2, t3;
	unsigned echo_port = h_free_port(SOCK_STREAM, false);
	unsigned bulk_port = h_free_port(SOCK_STREAM, false);
	unsigned extra_port = h_free_port(SOCK_STREAM, false);
	char expect[128];
	int during = 0;
	double t0;

	h_backend_start(&tcp_echo, H_ECHO, false);
	h_backend_start_on(&udp_echo, H_UDP_ECHO, false, tcp_echo.port);
	h_backend_start(&counter, H_COUNT_REPLY, false);
	make_rules(echo_port, tcp_echo.port, bulk_port, counter.port, 0);
	h_start(&d, rules_body);

	ports[0] = echo_port;
	ports[1] = echo_port;
	ports[2] = bulk_port;
	for (int k = 0; k < 3; k++)
		nbefore[k] = h_socket_inodes(ports[k], k == 1, before[k], 64);
	/* TCP and UDP of "echo" and TCP of "bulk": every one is there to compare. */
	for (int k = 0; k < 3; k++)
		ck_assert_int_gt(nbefore[k], 0);

	bk.port = bulk_port;
	ld.tcp_port = echo_port;
	ld.udp_port = echo_port;
	ck_assert_int_eq(pthread_create(&t3, NULL, bulk_thread, &bk), 0);
	/* The transfer is under way before the first reload. */
	t0 = h_now();
	while (bk.sent == 0 && h_now() - t0 < 10)
		sleep_s(0.01);
	ck_assert_int_gt(bk.sent, 0);
	ck_assert_int_eq(pthread_create(&t1, NULL, tcp_loop, &ld), 0);
	ck_assert_int_eq(pthread_create(&t2, NULL, udp_loop, &ld), 0);
	sleep_s(0.2);

	for (int i = 1; i <= 50; i++) {
		make_rules(echo_port, tcp_echo.port, bulk_port, counter.port, i % 2 ? extra_port : 0);
		h_write_conf(&d, rules_body);
		ctl_ok(&d, "reload", NULL, NULL);
		ck_assert_int_eq(generation(&d), 1 + i);
		during += bk.sent < (long long)bk.len;
		/* The unrelated rule comes and goes: it answers only while it is there. */
		if (i % 2) {
			ck_assert_int_eq(echo_once(extra_port, (uint64_t)i), 0);
		} else {
			int fd = h_connect("127.0.0.1", extra_port);

			ck_assert_msg(fd < 0, "reload %d removed the extra rule, yet its port accepts", i);
		}
		sleep_s(0.02);
	}
	sleep_s(0.2);
	ld.stop = true;
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	pthread_join(t3, NULL);

	printf("reload under load: 50 reloads (%d of them during the 1 GiB transfer); TCP connections attempted %ld, failed or refused %ld; UDP datagrams %ld, lost %ld\n",
	       during, (long)ld.tcp_tries, (long)ld.tcp_failed, (long)ld.udp_tries,
	       (long)ld.udp_failed);
	ck_assert_int_gt(ld.tcp_tries, 50);
	ck_assert_int_gt(ld.udp_tries, 50);
	ck_assert_int_eq(ld.tcp_failed, 0);
	ck_assert_int_eq(ld.udp_failed, 0);
	/* Every byte of the gigabyte arrived, in order. */
	ck_assert_int_eq(bk.rc, 0);
	snprintf(expect, sizeof(expect), "%zu %016llx\n", bk.len, (unsigned long long)bk.hash);
	ck_assert_str_eq(bk.reply, expect);
	/* The kept rules' sockets are the very same ones. */
	for (int k = 0; k < 3; k++) {
		nafter[k] = h_socket_inodes(ports[k], k == 1, after[k], 64);
		ck_assert_int_eq(nafter[k], nbefore[k]);
		for (int j = 0; j < nbefore[k] && j < 64; j++)
			ck_assert_uint_eq(after[k][j], before[k][j]);
	}
	/* The extra rule ended removed (50 is even), and its port is free. */
	ck_assert_int_eq(h_socket_inodes(extra_port, false, after[3], 64), 0);
	h_stop(&d);
	h_backend_stop(&tcp_echo);
	h_backend_stop(&udp_echo);
	h_backend_stop(&counter);
}
END_TEST


/* ---- refused reloads ---- */

static char *slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	size_t n;

	ck_assert_msg(fp != NULL, "%s: %s", path, strerror(errno));
	buf = calloc(1, 1 << 16);
	n = fread(buf, 1, (1 << 16) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

static void put_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	ck_assert_msg(fp != NULL, "%s: %s", path, strerror(errno));
	fputs(text, fp);
	fclose(fp);
}

static char one_body[1024];

static const char *echo_rule(const char *name, unsigned port, unsigned target)
{
	snprintf(one_body, sizeof(one_body),
		 "rules: ( { name = \"%s\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 name, port, target);
	return one_body;
}

START_TEST(test_bad_reload_changes_nothing)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned port = h_free_port(SOCK_STREAM, false);
	unsigned long before[2][64], after[2][64];
	int nb[2], files = 0, live;
	char *good;
	DIR *dir;
	struct dirent *e;

	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, echo_rule("echo", port, echo.port));
	good = slurp(d.conf);
	for (int k = 0; k < 2; k++) {
		nb[k] = h_socket_inodes(port, k, before[k], 64);
		ck_assert_int_gt(nb[k], 0); /* the tcp+udp rule's TCP and UDP sockets */
	}
	/* A connection open across all the refused reloads. */
	live = h_connect("127.0.0.1", port);
	ck_assert_int_ge(live, 0);
	ck_assert_int_eq(send(live, "ping", 4, 0), 4);

	dir = opendir("tests/conf/bad");
	ck_assert_ptr_nonnull(dir);
	while ((e = readdir(dir))) {
		char path[512], exp_path[512], *text, *expected, *out, *line, *save;
		size_t len = strlen(e->d_name);

		if (len < 6 || strcmp(e->d_name + len - 5, ".conf") != 0)
			continue;
		snprintf(path, sizeof(path), "tests/conf/bad/%s", e->d_name);
		snprintf(exp_path, sizeof(exp_path), "tests/conf/bad/%.*s.expected", (int)(len - 5), e->d_name);
		text = slurp(path);
		put_file(d.conf, text);
		ck_assert_msg(ctl(&d, &out, "reload", NULL, NULL) == 1, "%s: reload did not fail: %s",
			      e->d_name, out);
		/* Every message the corpus expects, naming the daemon's file and line. */
		expected = slurp(exp_path);
		for (line = strtok_r(expected, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			char want[1024];

			/* About a list file beside the corpus file, not beside the copy. */
			if (strncmp(line, "DIR/", 4) == 0)
				continue;
			ck_assert(strncmp(line, "FILE", 4) == 0);
			snprintf(want, sizeof(want), "%s%s\n", d.conf, line + 4);
			ck_assert_msg(strstr(out, want), "%s: missing \"%s\" in:\n%s", e->d_name, want, out);
		}
		ck_assert_msg(strstr(out, "generation 1 stays in force"), "%s", out);
		free(expected);
		free(text);
		free(out);
		/* Nothing changed: generation, sockets, traffic. */
		ck_assert_int_eq(generation(&d), 1);
		for (int k = 0; k < 2; k++) {
			ck_assert_int_eq(h_socket_inodes(port, k, after[k], 64), nb[k]);
			for (int j = 0; j < nb[k]; j++)
				ck_assert_uint_eq(after[k][j], before[k][j]);
		}
		ck_assert_int_eq(echo_once(port, (uint64_t)files), 0);
		files++;
	}
	closedir(dir);
	ck_assert_int_ge(files, 15);
	/* Only the live one is left (the echo checks' closes may still be on their way). */
	ck_assert_int_eq(h_wait_counter(&d, "echo", "tcp", "active", 1, 5), 1);
	{
		char buf[8];

		ck_assert_int_eq(recv(live, buf, 4, MSG_WAITALL), 4);
		ck_assert_int_eq(memcmp(buf, "ping", 4), 0);
	}
	/* status keeps the count and the last refusal's errors. */
	{
		json_t *doc = h_status(&d), *rl = json_object_get(doc, "reload");

		ck_assert_int_eq(json_integer_value(json_object_get(rl, "failed")), files);
		ck_assert_int_eq(json_integer_value(json_object_get(rl, "ok")), 0);
		ck_assert_int_gt(json_array_size(json_object_get(rl, "last_failed_errors")), 0);
		json_decref(doc);
	}
	/* A value with a backslash and an escape character: written out once
	 * as libconfig reads it, the same in the reply and in status. */
	{
		json_t *doc;
		const char *kept;
		char *out;

		put_file(d.conf, "rules = ( { name = \"a\\\\b\\x1b\"; proto = \"tcp\"; listen = \"127.0.0.1:1\"; target = \"127.0.0.1:2\"; } );\n");
		ck_assert_int_eq(ctl(&d, &out, "reload", NULL, NULL), 1);
		doc = h_status(&d);
		kept = json_string_value(json_array_get(
			json_object_get(json_object_get(doc, "reload"), "last_failed_errors"), 0));
		ck_assert_msg(kept && strstr(kept, "name: \"a\\\\b\\x1b\" must be"), "%s", kept ? kept : "(none)");
		ck_assert_msg(strstr(out, kept), "status: %s\nreply: %s", kept, out);
		json_decref(doc);
		free(out);
	}
	/* The good file again: the next reload applies. */
	put_file(d.conf, good);
	ctl_ok(&d, "reload", NULL, NULL);
	ck_assert_int_eq(generation(&d), 2);
	close(live);
	free(good);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

/* ---- draining ---- */

static char two_body[2048];

static const char *two_rules(unsigned keep_port, unsigned gone_port, unsigned target)
{
	int n = snprintf(two_body, sizeof(two_body),
			 "rules: ( { name = \"keep\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; }",
			 keep_port, target);

	if (gone_port)
		snprintf(two_body + n, sizeof(two_body) - (size_t)n,
			 ", { name = \"gone\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
			 gone_port, target);
	else
		snprintf(two_body + n, sizeof(two_body) - (size_t)n, " );");
	return two_body;
}

/* Sends TEXT on FD and expects it echoed. */
static void echo_check(int fd, const char *text)
{
	char buf[256];
	size_t len = strlen(text);
	struct timeval tv = { 5, 0 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_int_eq(send(fd, text, len, MSG_NOSIGNAL), (ssize_t)len);
	ck_assert_int_eq(recv(fd, buf, len, MSG_WAITALL), (ssize_t)len);
	ck_assert_int_eq(memcmp(buf, text, len), 0);
}

/* True if FD sees EOF or a reset within SECONDS. */
static bool closed_within(int fd, double seconds)
{
	double deadline = h_now() + seconds;
	char buf[256];

	while (h_now() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			return true;
	}
	return false;
}

static json_t *draining(struct hdaemon *d)
{
	json_t *doc = h_status(d), *a = json_incref(json_object_get(doc, "draining"));

	json_decref(doc);
	return a;
}

/* Waits (5 s at most) until no rule is draining, and asserts it. */
static void wait_no_draining(struct hdaemon *d)
{
	double t0 = h_now();
	size_t n;

	for (;;) {
		json_t *dr = draining(d);

		n = json_array_size(dr);
		json_decref(dr);
		if (n == 0 || h_now() - t0 > 5)
			break;
		sleep_s(0.05);
	}
	ck_assert_int_eq(n, 0);
}

START_TEST(test_removed_rule_drains)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned keep = h_free_port(SOCK_STREAM, false), gone = h_free_port(SOCK_STREAM, false);
	json_t *dr;
	char *out;
	int fd;

	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, two_rules(keep, gone, echo.port));
	fd = h_connect("127.0.0.1", gone);
	ck_assert_int_ge(fd, 0);
	echo_check(fd, "before the reload");

	h_write_conf(&d, two_rules(keep, 0, echo.port));
	ctl_ok(&d, "reload", NULL, NULL);
	/* The removed rule stopped listening at once... */
	ck_assert_int_eq(h_connect("127.0.0.1", gone), -1);
	ck_assert_int_eq(h_socket_inodes(gone, false, NULL, 0), 0);
	ck_assert_int_eq(h_socket_inodes(gone, true, NULL, 0), 0);
	/* ...and its connection carries on, shown apart as draining. */
	echo_check(fd, "after the reload, still relayed");
	dr = draining(&d);
	ck_assert_int_eq(json_array_size(dr), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(dr, 0), "name")), "gone");
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(dr, 0), "tcp_active")), 1);
	json_decref(dr);
	ck_assert_int_eq(ctl(&d, &out, "connections", "gone", "--json"), 0);
	ck_assert_msg(strstr(out, "\"draining\": true"), "%s", out);
	free(out);
	ck_assert_int_eq(ctl(&d, &out, "status", NULL, NULL), 0);
	ck_assert_msg(strstr(out, "draining (removed) gone"), "%s", out);
	free(out);
	/* The kept rule was not disturbed. */
	ck_assert_int_eq(echo_once(keep, 1), 0);

	/* When the connection ends, the rule is gone for good. */
	close(fd);
	wait_no_draining(&d);
	ck_assert(h_log_contains(&d, "rule gone: drained"));
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

START_TEST(test_drain_timeout)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned keep = h_free_port(SOCK_STREAM, false), gone = h_free_port(SOCK_STREAM, false);
	int fd;

	h_daemon_extra = "drain_timeout = 0.5;";
	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, two_rules(keep, gone, echo.port));
	fd = h_connect("127.0.0.1", gone);
	ck_assert_int_ge(fd, 0);
	echo_check(fd, "hello");
	h_write_conf(&d, two_rules(keep, 0, echo.port));
	ctl_ok(&d, "reload", NULL, NULL);
	echo_check(fd, "still here within the timeout");
	/* Past drain_timeout the daemon closes it. */
	ck_assert(closed_within(fd, 5));
	close(fd);
	ck_assert(h_log_contains(&d, "drain_timeout reached"));
	h_stop(&d);
	h_daemon_extra = NULL;
	h_backend_stop(&echo);
}
END_TEST

/* The H_GREET_READ results, read under the backend's lock. */
static void greet_result(struct h_backend *b, int *finished, long long *bytes)
{
	pthread_mutex_lock(&b->lock);
	*finished = b->finished;
	*bytes = b->got_bytes;
	pthread_mutex_unlock(&b->lock);
}

/* A changed target: new connections go to it, the open one stays. */
START_TEST(test_changed_target)
{
	struct h_backend b1, b2;
	struct hdaemon d;
	unsigned port = h_free_port(SOCK_STREAM, false);
	char buf[16], *out;
	int c1, c2, f1 = 0, f2 = 0;
	long long n1 = 0, n2 = 0;
	double t0;

	h_backend_start(&b1, H_GREET_READ, false);
	h_backend_start(&b2, H_GREET_READ, false);
	h_start(&d, echo_rule("r", port, b1.port));
	c1 = h_connect("127.0.0.1", port);
	ck_assert_int_eq(recv(c1, buf, 6, MSG_WAITALL), 6);

	h_write_conf(&d, echo_rule("r", port, b2.port));
	ctl_ok(&d, "reload", NULL, NULL);
	c2 = h_connect("127.0.0.1", port);
	ck_assert_int_eq(recv(c2, buf, 6, MSG_WAITALL), 6);
	ck_assert_int_eq(send(c1, "one", 3, 0), 3);
	ck_assert_int_eq(send(c2, "twotwo", 6, 0), 6);
	shutdown(c1, SHUT_WR);
	shutdown(c2, SHUT_WR);
	t0 = h_now();
	for (;;) {
		greet_result(&b1, &f1, &n1);
		greet_result(&b2, &f2, &n2);
		if ((f1 >= 1 && f2 >= 1) || h_now() - t0 > 5)
			break;
		sleep_s(0.02);
	}
	/* The old connection reached the old target, the new one the new target. */
	ck_assert_int_eq(f1, 1);
	ck_assert_int_eq(n1, 3);
	ck_assert_int_eq(f2, 1);
	ck_assert_int_eq(n2, 6);
	close(c1);
	close(c2);
	snprintf(buf, sizeof(buf), "%u", b2.port);
	ck_assert_int_eq(ctl(&d, &out, "rules", "--json", NULL), 0);
	ck_assert_msg(strstr(out, buf), "%s", out);
	free(out);
	h_stop(&d);
	h_backend_stop(&b1);
	h_backend_stop(&b2);
}
END_TEST


/* The keepalive timer of the daemon's socket for the client on local port
 * CPORT, as ss(8) shows it ("timer:(keepalive,49min59sec,0)"); "" if none. */
static char *keepalive_timer(unsigned port, unsigned cport)
{
	char *out = NULL, *t;

	h_sh(&out, "ss -tnoH state established '( sport = :%u and dport = :%u )'", port, cport);
	t = strstr(out, "timer:(keepalive,");
	if (t)
		memmove(out, t, strlen(t) + 1);
	else
		out[0] = '\0';
	return out;
}

static unsigned local_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

/* A reload that changes tcp_keepalive reaches the kept listening socket:
 * clients accepted after it get the new timing (the old ones keep theirs). */
START_TEST(test_keepalive_reload)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned port = h_free_port(SOCK_STREAM, false);
	char body[2048], *t1, *t2, *t3;
	int c1, c2, c3;

	h_backend_start(&echo, H_ECHO, false);
	snprintf(body, sizeof(body), "defaults: { tcp_keepalive = { idle = 3000; }; };\n%s",
		 echo_rule("r", port, echo.port));
	h_start(&d, body);
	c1 = h_connect("127.0.0.1", port);
	echo_check(c1, "one");
	t1 = keepalive_timer(port, local_port(c1));
	ck_assert_msg(strstr(t1, "min"), "with idle = 3000: %s", t1);

	snprintf(body, sizeof(body), "defaults: { tcp_keepalive = { idle = 7; }; };\n%s",
		 echo_rule("r", port, echo.port));
	h_write_conf(&d, body);
	ctl_ok(&d, "reload", NULL, NULL);
	c2 = h_connect("127.0.0.1", port);
	echo_check(c2, "two");
	t2 = keepalive_timer(port, local_port(c2));
	ck_assert_msg(strstr(t2, "keepalive") && !strstr(t2, "min"), "with idle = 7: %s", t2);

	snprintf(body, sizeof(body), "defaults: { tcp_keepalive = false; };\n%s",
		 echo_rule("r", port, echo.port));
	h_write_conf(&d, body);
	ctl_ok(&d, "reload", NULL, NULL);
	c3 = h_connect("127.0.0.1", port);
	echo_check(c3, "three");
	t3 = keepalive_timer(port, local_port(c3));
	ck_assert_msg(t3[0] == '\0', "with tcp_keepalive = false: %s", t3);
	free(t1);
	free(t2);
	free(t3);
	close(c1);
	close(c2);
	close(c3);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

static const char *rule_state(struct hdaemon *d, const char *name);
static int bind_plain(unsigned port, int type);

/* A port free on 127.0.0.1 for TCP and for UDP, for a tcp+udp rule. */
static unsigned free_port_both(void)
{
	for (int i = 0; i < 100; i++) {
		unsigned port = h_free_port(SOCK_STREAM, false);
		int fd = bind_plain(port, SOCK_DGRAM);

		if (fd >= 0) {
			close(fd);
			return port;
		}
	}
	ck_abort_msg("no port free for both TCP and UDP");
	return 0;
}

/* UDP of a removed rule: its sessions go on, new clients are not taken. */
START_TEST(test_udp_session_drains)
{
	struct h_backend echo, uecho;
	struct hdaemon d;
	unsigned keep = h_free_port(SOCK_STREAM, false), gone = free_port_both();
	char body[4096];
	int a, b;
	json_t *dr;
	double t0;

	h_backend_start(&echo, H_ECHO, false);
	h_backend_start_on(&uecho, H_UDP_ECHO, false, echo.port);
	snprintf(body, sizeof(body), "defaults: { udp_idle_timeout = 1.5; };\n%s",
		 two_rules(keep, gone, echo.port));
	h_start(&d, body);
	a = socket(AF_INET, SOCK_DGRAM, 0);
	b = socket(AF_INET, SOCK_DGRAM, 0);
	ck_assert_int_eq(udp_once(a, gone, 1), 0);

	snprintf(body, sizeof(body), "defaults: { udp_idle_timeout = 1.5; };\n%s",
		 two_rules(keep, 0, echo.port));
	h_write_conf(&d, body);
	ctl_ok(&d, "reload", NULL, NULL);
	/* The session still relays both ways, through the socket kept for it. */
	ck_assert_int_eq(udp_once(a, gone, 2), 0);
	ck_assert_int_gt(h_socket_inodes(gone, true, NULL, 0), 0);
	dr = draining(&d);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(dr, 0), "udp_active")), 1);
	json_decref(dr);
	/* A new client gets nothing from a removed rule. */
	ck_assert_int_eq(udp_once(b, gone, 3), -1);
	/* Once the session ends (udp_idle_timeout) the port is free. */
	t0 = h_now();
	while (h_socket_inodes(gone, true, NULL, 0) > 0 && h_now() - t0 < 10)
		sleep_s(0.05);
	ck_assert_int_eq(h_socket_inodes(gone, true, NULL, 0), 0);
	wait_no_draining(&d);

	/* Removed, then added again while a session drains: the new rule takes
	 * the address at once and serves new clients. */
	snprintf(body, sizeof(body), "defaults: { udp_idle_timeout = 30; };\n%s",
		 two_rules(keep, gone, echo.port));
	h_write_conf(&d, body);
	ctl_ok(&d, "reload", NULL, NULL);
	ck_assert_int_eq(udp_once(a, gone, 4), 0);
	h_write_conf(&d, two_rules(keep, 0, echo.port));
	ctl_ok(&d, "reload", NULL, NULL);
	ck_assert_int_eq(udp_once(a, gone, 5), 0);
	h_write_conf(&d, two_rules(keep, gone, echo.port));
	ctl_ok(&d, "reload", NULL, NULL);
	ck_assert_str_eq(rule_state(&d, "gone"), "listening");
	ck_assert_int_eq(udp_once(b, gone, 6), 0);
	ck_assert(h_log_contains(&d, "its UDP address goes to the new rule gone"));
	close(a);
	close(b);
	h_stop(&d);
	h_backend_stop(&echo);
	h_backend_stop(&uecho);
}
END_TEST

/* A UDP rule on ADDR:PORT to the echo backend on TARGET. */
static const char *udp_rule(const char *name, const char *addr, unsigned port, unsigned target)
{
	snprintf(two_body, sizeof(two_body),
		 "defaults: { udp_idle_timeout = 30; };\nrules: ( { name = \"%s\"; proto = \"udp\"; listen = \"%s:%u\"; target = \"127.0.0.1:%u\"; } );",
		 name, addr, port, target);
	return two_body;
}

/*
 * A draining UDP socket that would block a new rule's bind is taken over,
 * wildcard or not: 0.0.0.0:P removed for 127.0.0.1:P (and back) while a
 * client keeps the old session alive, which drain_timeout = 0 lets go on
 * for ever.
 */
START_TEST(test_udp_takeover_wildcard)
{
	struct h_backend uecho;
	struct hdaemon d;
	unsigned port = free_port_both();
	int a = socket(AF_INET, SOCK_DGRAM, 0), b = socket(AF_INET, SOCK_DGRAM, 0);

	h_backend_start(&uecho, H_UDP_ECHO, false);
	h_start(&d, udp_rule("wild", "0.0.0.0", port, uecho.port));
	ck_assert_int_eq(udp_once(a, port, 1), 0);

	h_write_conf(&d, udp_rule("one", "127.0.0.1", port, uecho.port));
	ctl_ok(&d, "reload", NULL, NULL);
	ck_assert_str_eq(rule_state(&d, "one"), "listening");
	ck_assert(h_log_contains(&d, "rule wild: its UDP address goes to the new rule one"));
	ck_assert_int_eq(udp_once(b, port, 2), 0);
	ck_assert_int_eq(h_counter(&d, "one", "udp", "sessions_created"), 1);

	/* And back: a specific address draining, a wildcard rule coming. */
	ck_assert_int_eq(udp_once(a, port, 3), 0);
	h_write_conf(&d, udp_rule("wild2", "0.0.0.0", port, uecho.port));
	ctl_ok(&d, "reload", NULL, NULL);
	ck_assert_str_eq(rule_state(&d, "wild2"), "listening");
	ck_assert_int_eq(udp_once(b, port, 4), 0);
	wait_no_draining(&d);
	close(a);
	close(b);
	h_stop(&d);
	h_backend_stop(&uecho);
}
END_TEST

/* ---- disable / enable ---- */

static int bind_plain(unsigned port, int type)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, type, 0);

	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	if (type == SOCK_STREAM)
		listen(fd, 4);
	return fd;
}

static const char *rule_state(struct hdaemon *d, const char *name)
{
	static char state[32];
	json_t *doc = h_status(d), *r;
	size_t i;

	state[0] = '\0';
	json_array_foreach(json_object_get(doc, "rules"), i, r)
		if (strcmp(json_string_value(json_object_get(r, "name")), name) == 0)
			snprintf(state, sizeof(state), "%s", json_string_value(json_object_get(r, "state")));
	json_decref(doc);
	return state;
}

START_TEST(test_disable_enable)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned port = h_free_port(SOCK_STREAM, false);
	char *out;
	int t, u, fd;
	double t0;

	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, echo_rule("echo", port, echo.port));
	ck_assert_int_eq(ctl(&d, &out, "disable", "echo", NULL), 0);
	ck_assert_msg(strstr(out, "rule echo: disabled"), "%s", out);
	free(out);
	ck_assert_str_eq(rule_state(&d, "echo"), "disabled");
	/* The port is free: another program can bind it, TCP and UDP. */
	t = bind_plain(port, SOCK_STREAM);
	u = bind_plain(port, SOCK_DGRAM);
	ck_assert_int_ge(t, 0);
	ck_assert_int_ge(u, 0);
	/* Enabling while it is held fails, says why, and keeps trying. */
	ck_assert_int_eq(ctl(&d, &out, "enable", "echo", NULL), 1);
	ck_assert_msg(strstr(out, "address already in use"), "%s", out);
	free(out);
	close(t);
	close(u);
	t0 = h_now();
	while (strcmp(rule_state(&d, "echo"), "listening") != 0 && h_now() - t0 < 10)
		sleep_s(0.1);
	ck_assert_str_eq(rule_state(&d, "echo"), "listening");
	ck_assert_int_eq(echo_once(port, 3), 0);

	/* Disable with a connection open: it carries on; enable takes the port back. */
	fd = h_connect("127.0.0.1", port);
	echo_check(fd, "first");
	ctl_ok(&d, "dis", "echo", NULL); /* a unique prefix */
	ck_assert_int_eq(h_connect("127.0.0.1", port), -1);
	echo_check(fd, "still relayed while disabled");
	ctl_ok(&d, "enable", "echo", NULL);
	ck_assert_str_eq(rule_state(&d, "echo"), "listening");
	ck_assert_int_eq(echo_once(port, 4), 0);
	echo_check(fd, "and after");
	close(fd);
	/* Unknown rules are named as such, with the valid ones. */
	ck_assert_int_eq(ctl(&d, &out, "disable", "nope", NULL), 1);
	ck_assert_msg(strstr(out, "no rule \"nope\" (rules: echo)"), "%s", out);
	free(out);
	/* A reload ends the disabling. */
	ctl_ok(&d, "disable", "echo", NULL);
	ctl_ok(&d, "reload", NULL, NULL);
	ck_assert_str_eq(rule_state(&d, "echo"), "listening");
	ck_assert_int_eq(echo_once(port, 5), 0);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

/* ---- kill ---- */

static long long conn_id_of(struct hdaemon *d, int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	char client[64], *out;
	json_t *doc, *c;
	json_error_t jerr;
	long long id = -1;
	size_t i;

	getsockname(fd, (struct sockaddr *)&sa, &len);
	snprintf(client, sizeof(client), "127.0.0.1:%u", ntohs(sa.sin_port));
	ck_assert_int_eq(ctl(d, &out, "connections", "--json", NULL), 0);
	doc = json_loads(out, 0, &jerr);
	ck_assert_msg(doc != NULL, "%s", out);
	json_array_foreach(json_object_get(doc, "connections"), i, c)
		if (strcmp(json_string_value(json_object_get(c, "client")), client) == 0)
			id = json_integer_value(json_object_get(c, "id"));
	json_decref(doc);
	free(out);
	return id;
}

START_TEST(test_kill)
{
	struct h_backend echo, uecho;
	struct hdaemon d;
	unsigned port = h_free_port(SOCK_STREAM, false);
	char idtext[32], *out;
	int fd[3], u;
	long long id;

	h_backend_start(&echo, H_ECHO, false);
	h_backend_start_on(&uecho, H_UDP_ECHO, false, echo.port);
	h_start(&d, echo_rule("echo", port, echo.port));
	for (int i = 0; i < 3; i++) {
		fd[i] = h_connect("127.0.0.1", port);
		echo_check(fd[i], "x");
	}
	id = conn_id_of(&d, fd[1]);
	ck_assert_int_gt(id, 0);
	snprintf(idtext, sizeof(idtext), "%lld", id);
	ck_assert_int_eq(ctl(&d, &out, "kill", idtext, NULL), 0);
	ck_assert_msg(strstr(out, "closed 1 connection"), "%s", out);
	free(out);
	/* Exactly that one closed. */
	ck_assert(closed_within(fd[1], 5));
	echo_check(fd[0], "zero lives");
	echo_check(fd[2], "two lives");
	ck_assert_int_eq(ctl(&d, &out, "kill", idtext, NULL), 1);
	ck_assert_msg(strstr(out, "no connection or session with id"), "%s", out);
	free(out);
	ck_assert_int_eq(ctl(&d, &out, "kill", "12abc", NULL), 1);
	free(out);

	/* A UDP session is listed and can be killed too. */
	u = socket(AF_INET, SOCK_DGRAM, 0);
	ck_assert_int_eq(udp_once(u, port, 1), 0);
	ck_assert_int_eq(ctl(&d, &out, "connections", "echo", NULL), 0);
	ck_assert_msg(strstr(out, " udp ") && strstr(out, "3 connections and sessions"), "%s", out);
	free(out);

	/* --rule closes all of the rule's. */
	ck_assert_int_eq(ctl(&d, &out, "kill", "--rule", "echo"), 0);
	ck_assert_msg(strstr(out, "closed 3 connections"), "%s", out);
	free(out);
	ck_assert(closed_within(fd[0], 5));
	ck_assert(closed_within(fd[2], 5));
	ck_assert_int_eq(h_wait_counter(&d, "echo", "udp", "active", 0, 5), 0);
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	close(u);
	/* The rule still serves. */
	ck_assert_int_eq(echo_once(port, 9), 0);
	h_stop(&d);
	h_backend_stop(&echo);
	h_backend_stop(&uecho);
}
END_TEST

/* ---- metrics ---- */

/* Value of the sample whose line starts with KEY ("name{labels}"), or -1. */
static double metric(const char *text, const char *key)
{
	const char *p = text;
	size_t len = strlen(key);

	while ((p = strstr(p, key))) {
		if ((p == text || p[-1] == '\n') && p[len] == ' ')
			return strtod(p + len + 1, NULL);
		p += len;
	}
	return -1;
}

/* Checks every line against the Prometheus text format (0.0.4). */
static void check_exposition(const char *text)
{
	regex_t help, type, sample;
	char *copy = strdup(text), *line, *save;
	char typed[128][96], current[96] = "";
	int ntyped = 0, lines = 0;

	ck_assert_int_eq(regcomp(&help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* [^\n]*$", REG_EXTENDED | REG_NOSUB), 0);
	ck_assert_int_eq(regcomp(&type, "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$", REG_EXTENDED), 0);
	ck_assert_int_eq(regcomp(&sample,
				 "^([a-zA-Z_:][a-zA-Z0-9_:]*)"
				 "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\"(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\")*\\})?"
				 " [-+]?(([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+)?|NaN|Inf)( -?[0-9]+)?$",
				 REG_EXTENDED), 0);
	ck_assert_msg(text[strlen(text) - 1] == '\n', "the exposition must end with a newline");
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		regmatch_t m[2];

		lines++;
		if (strncmp(line, "# HELP ", 7) == 0) {
			ck_assert_msg(regexec(&help, line, 0, NULL, 0) == 0, "bad HELP line: %s", line);
		} else if (strncmp(line, "# TYPE ", 7) == 0) {
			ck_assert_msg(regexec(&type, line, 2, m, 0) == 0, "bad TYPE line: %s", line);
			snprintf(current, sizeof(current), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
			for (int i = 0; i < ntyped; i++)
				ck_assert_msg(strcmp(typed[i], current) != 0, "%s typed twice", current);
			ck_assert_int_lt(ntyped, 128);
			snprintf(typed[ntyped++], sizeof(typed[0]), "%s", current);
		} else {
			char name[96];

			ck_assert_msg(line[0] != '#', "unknown comment: %s", line);
			ck_assert_msg(regexec(&sample, line, 2, m, 0) == 0, "bad sample line: %s", line);
			snprintf(name, sizeof(name), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
			/* Each sample belongs to the family whose TYPE came last. */
			ck_assert_msg(strcmp(name, current) == 0, "sample %s outside its family (%s)", name, current);
		}
	}
	ck_assert_int_gt(lines, 40);
	regfree(&help);
	regfree(&type);
	regfree(&sample);
	free(copy);
}

START_TEST(test_metrics)
{
	struct h_backend echo, uecho;
	struct hdaemon d;
	unsigned port = h_free_port(SOCK_STREAM, false), dead = h_free_port(SOCK_STREAM, false);
	char body[1024], *out, key[256];
	int u;

	h_backend_start(&echo, H_ECHO, false);
	h_backend_start_on(&uecho, H_UDP_ECHO, false, echo.port);
	snprintf(body, sizeof(body),
		 "rules: ( { name = \"echo\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; },\n"
		 "         { name = \"dead\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 port, echo.port, dead, h_free_port(SOCK_STREAM, false));
	h_start(&d, body);
	for (int i = 0; i < 3; i++) {
		int fd = h_connect("127.0.0.1", port);

		ck_assert_int_eq(h_echo_exchange(fd, 10000, (uint64_t)i, 10), 0);
		close(fd);
	}
	u = socket(AF_INET, SOCK_DGRAM, 0);
	for (unsigned i = 0; i < 5; i++)
		ck_assert_int_eq(udp_once(u, port, 100 + i), 0); /* "datagram 10N": 12 bytes */
	close(u);
	for (int i = 0; i < 2; i++) {
		int fd = h_connect("127.0.0.1", dead);

		ck_assert(closed_within(fd, 5));
		close(fd);
	}
	/* A reply can reach the client a moment before its counter moves. */
	ck_assert_int_eq(h_wait_counter(&d, "echo", "tcp", "active", 0, 5), 0);
	ck_assert_int_eq(h_wait_counter(&d, "echo", "udp", "datagrams_to_target", 5, 5), 5);
	ck_assert_int_eq(h_wait_counter(&d, "echo", "udp", "datagrams_to_client", 5, 5), 5);
	ck_assert_int_eq(h_wait_counter(&d, "dead", "tcp", "connect_failed", 2, 5), 2);

	ck_assert_int_eq(ctl(&d, &out, "metrics", NULL, NULL), 0);
	check_exposition(out);
#define M(k, v) ck_assert_msg(metric(out, k) == (v), "%s = %g, want %g", k, metric(out, k), (double)(v))
	M("portfwd_tcp_connections_accepted_total{rule=\"echo\"}", 3);
	M("portfwd_tcp_connections_active{rule=\"echo\"}", 0);
	M("portfwd_tcp_bytes_total{rule=\"echo\",direction=\"to_target\"}", 30000);
	M("portfwd_tcp_bytes_total{rule=\"echo\",direction=\"to_client\"}", 30000);
	M("portfwd_udp_datagrams_total{rule=\"echo\",direction=\"to_target\"}", 5);
	M("portfwd_udp_datagrams_total{rule=\"echo\",direction=\"to_client\"}", 5);
	M("portfwd_udp_bytes_total{rule=\"echo\",direction=\"to_target\"}", 60);
	M("portfwd_udp_sessions_created_total{rule=\"echo\"}", 1);
	M("portfwd_udp_sessions_active{rule=\"echo\"}", 1);
	M("portfwd_tcp_connections_failed_total{rule=\"dead\",reason=\"refused\"}", 2);
	M("portfwd_tcp_connections_failed_total{rule=\"dead\",reason=\"timeout\"}", 0);
	M("portfwd_rule_up{rule=\"echo\",proto=\"udp\"}", 1);
	M("portfwd_config_generation", 1);
	M("portfwd_reloads_total{result=\"ok\"}", 0);
	/* A dead rule has no UDP series. */
	ck_assert_ptr_null(strstr(out, "portfwd_udp_sessions_active{rule=\"dead\"}"));
	ck_assert(metric(out, "portfwd_uptime_seconds") >= 0);
	free(out);

	/* Reloads are counted; a refused one too. */
	ctl_ok(&d, "reload", NULL, NULL);
	put_file(d.conf, "rules = ( oops");
	ck_assert_int_eq(ctl(&d, &out, "reload", NULL, NULL), 1);
	free(out);
	ck_assert_int_eq(ctl(&d, &out, "metrics", NULL, NULL), 0);
	check_exposition(out);
	M("portfwd_reloads_total{result=\"ok\"}", 1);
	M("portfwd_reloads_total{result=\"failed\"}", 1);
	M("portfwd_config_generation", 2);
	M("portfwd_config_last_reload_successful", 0);
	snprintf(key, sizeof(key), "portfwd_tcp_connections_accepted_total{rule=\"echo\"}");
	M(key, 3); /* counters of kept rules survive reloads */
#undef M
	free(out);
	ck_assert_int_eq(ctl(&d, &out, "metrics", "--json", NULL), 0);
	ck_assert_msg(strstr(out, "\"portfwd_tcp_bytes_total\""), "%s", out);
	free(out);
	h_stop(&d);
	h_backend_stop(&echo);
	h_backend_stop(&uecho);
}
END_TEST

/* ---- check, SIGHUP, a rule that cannot bind ---- */

START_TEST(test_check)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned port = h_free_port(SOCK_STREAM, false);
	char *out;

	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, echo_rule("echo", port, echo.port));
	ck_assert_int_eq(ctl(&d, &out, "check", NULL, NULL), 0);
	ck_assert_msg(strstr(out, "configuration is valid") && strstr(out, "0 added, 0 removed, 0 changed, 1 unchanged"), "%s", out);
	free(out);
	/* portfwdctl reads FILE (relative to the caller) and the messages name
	 * it as the caller gave it. */
	ck_assert_int_eq(ctl(&d, &out, "check", "tests/conf/bad/mixed.conf", NULL), 1);
	{
		const char *at = strstr(out, "tests/conf/bad/mixed.conf:2: defaults: buffer_size: 1 is out of range (4096-67108864)\n");

		ck_assert_msg(at && (at == out || at[-1] == '\n'), "%s", out);
	}
	free(out);
	ck_assert_int_eq(ctl(&d, &out, "check", "conf/portfwd.conf", "--json"), 0);
	ck_assert_msg(strstr(out, "\"added\": 0") && strstr(out, "\"removed\": 1"), "%s", out);
	free(out);
	ck_assert_int_eq(ctl(&d, &out, "check", "no/such/file.conf", NULL), 1);
	ck_assert_msg(strstr(out, "portfwdctl: check: no/such/file.conf: No such file or directory"), "%s", out);
	free(out);
	/* Checking applies nothing. */
	ck_assert_int_eq(generation(&d), 1);
	ck_assert_int_eq(echo_once(port, 1), 0);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

/* ---- forwarding loops ---- */

/* The line of D's configuration that holds TEXT. */
static int conf_line_of(struct hdaemon *d, const char *text)
{
	char *conf = slurp(d->conf), *at = strstr(conf, text);
	int line = 1;

	ck_assert_msg(at != NULL, "no \"%s\" in %s", text, d->conf);
	for (const char *p = conf; p < at; p++)
		line += *p == '\n';
	free(conf);
	return line;
}

/* reload, check and `portfwd -t` all refuse D's file with "FILE:LINE: MSG",
 * the line being the target's, and generation 1 forwards on PORT as before. */
static void assert_loop_refused(struct hdaemon *d, unsigned port, const char *msg)
{
	char want[1024], *out;
	char *argv[] = { (char *)PORTFWD, "-t", "-c", d->conf, NULL };

	snprintf(want, sizeof(want), "%s:%d: %s\n", d->conf, conf_line_of(d, "target ="), msg);
	ck_assert_int_eq(ctl(d, &out, "reload", NULL, NULL), 1);
	ck_assert_msg(strstr(out, want) && strstr(out, "generation 1 stays in force"),
		      "reload: want \"%s\" in:\n%s", want, out);
	free(out);
	ck_assert_int_eq(ctl(d, &out, "check", NULL, NULL), 1);
	ck_assert_msg(strstr(out, want), "check: want \"%s\" in:\n%s", want, out);
	free(out);
	ck_assert_int_eq(h_run(argv, &out), 1);
	ck_assert_msg(strstr(out, want), "portfwd -t: want \"%s\" in:\n%s", want, out);
	free(out);
	ck_assert_int_eq(generation(d), 1);
	ck_assert_int_eq(echo_once(port, 9), 0);
}

/* An IPv4 address of this host other than loopback, if it has one. */
static bool host_ipv4(char *buf, size_t len)
{
	struct ifaddrs *list, *i;
	bool found = false;

	if (getifaddrs(&list) < 0)
		return false;
	for (i = list; i && !found; i = i->ifa_next) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)i->ifa_addr;

		if (sin && sin->sin_family == AF_INET && (ntohl(sin->sin_addr.s_addr) >> 24) != 127)
			found = inet_ntop(AF_INET, &sin->sin_addr, buf, (socklen_t)len) != NULL;
	}
	freeifaddrs(list);
	return found;
}

/* Issue 9: a rule forwarding to itself made portfwd connect to itself
 * until thousands of connections and sessions were open. Now no way of
 * loading such a file lets it in. */
START_TEST(test_loop_refused)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned port = h_free_port(SOCK_STREAM, false);
	char msg[512], body[512], addr[INET_ADDRSTRLEN];

	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, echo_rule("echo", port, echo.port));
	h_write_conf(&d, echo_rule("echo", port, port));
	snprintf(msg, sizeof(msg),
		 "rule \"echo\": target: 127.0.0.1:%u is this rule's own listen address (tcp+udp): it would forward to itself",
		 port);
	assert_loop_refused(&d, port, msg);
	/* A wildcard listener takes this host's other addresses as well: the
	 * daemon knows them (the file is refused, so 0.0.0.0 is never bound). */
	if (host_ipv4(addr, sizeof(addr))) {
		snprintf(body, sizeof(body),
			 "rules: ( { name = \"echo\"; proto = \"tcp\"; listen = \"0.0.0.0:%u\"; target = \"%s:%u\"; } );",
			 port, addr, port);
		h_write_conf(&d, body);
		snprintf(msg, sizeof(msg),
			 "rule \"echo\": target: %s:%u is covered by this rule's own listen address 0.0.0.0:%u (tcp): it would forward to itself",
			 addr, port, port);
		assert_loop_refused(&d, port, msg);
	}
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

START_TEST(test_sighup)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned keep = h_free_port(SOCK_STREAM, false), added = h_free_port(SOCK_STREAM, false);
	double t0;

	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, two_rules(keep, 0, echo.port));
	h_write_conf(&d, two_rules(keep, added, echo.port));
	kill(d.pid, SIGHUP);
	t0 = h_now();
	while (generation(&d) != 2 && h_now() - t0 < 5)
		sleep_s(0.02);
	ck_assert_int_eq(generation(&d), 2);
	ck_assert_int_eq(echo_once(added, 1), 0);
	ck_assert(h_log_contains(&d, "reload (SIGHUP)"));
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

START_TEST(test_reload_bind_failure)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned keep = h_free_port(SOCK_STREAM, false), held = h_free_port(SOCK_STREAM, false);
	char *out;
	int blocker;

	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, two_rules(keep, 0, echo.port));
	blocker = bind_plain(held, SOCK_STREAM);
	ck_assert_int_ge(blocker, 0);
	h_write_conf(&d, two_rules(keep, held, echo.port));
	ck_assert_int_eq(ctl(&d, &out, "reload", NULL, NULL), 1);
	ck_assert_msg(strstr(out, "rule gone: cannot listen on tcp: address already in use"), "%s", out);
	ck_assert_msg(strstr(out, "generation 2 is in force, but 1 rule is not listening (retried every 3s)"), "%s", out);
	free(out);
	/* The rest of the file applied. */
	ck_assert_int_eq(generation(&d), 2);
	ck_assert_str_eq(rule_state(&d, "gone"), "failed");
	ck_assert_int_eq(echo_once(keep, 2), 0);
	/* Once the port is free the retry binds it. */
	close(blocker);
	{
		double t0 = h_now();

		while (strcmp(rule_state(&d, "gone"), "listening") != 0 && h_now() - t0 < 10)
			sleep_s(0.1);
	}
	ck_assert_int_eq(echo_once(held, 3), 0);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("reload");
	TCase *tc = tcase_create("reload");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_reload_under_load);
	tcase_add_test(tc, test_bad_reload_changes_nothing);
	tcase_add_test(tc, test_removed_rule_drains);
	tcase_add_test(tc, test_drain_timeout);
	tcase_add_test(tc, test_udp_session_drains);
	tcase_add_test(tc, test_udp_takeover_wildcard);
	tcase_add_test(tc, test_changed_target);
	tcase_add_test(tc, test_keepalive_reload);
	tcase_add_test(tc, test_disable_enable);
	tcase_add_test(tc, test_kill);
	tcase_add_test(tc, test_metrics);
	tcase_add_test(tc, test_check);
	tcase_add_test(tc, test_loop_refused);
	tcase_add_test(tc, test_sighup);
	tcase_add_test(tc, test_reload_bind_failure);
	suite_add_tcase(s, tc);
	return check_run(s);
}
