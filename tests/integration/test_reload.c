/*
 * Live operations against the real daemon: reload under load, refused
 * reloads, draining, disable/enable, kill, check and metrics.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

/* One UDP datagram through PORT and its echo, within a second. */
static int udp_once(int fd, unsigned port, unsigned seq)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char msg[64], got[64];
	double deadline = h_now() + 1;
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
	ck_assert_int_gt(nbefore[0], 0);
	ck_assert_int_gt(nbefore[2], 0);

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
		if (i % 2)
			ck_assert_int_eq(echo_once(extra_port, (uint64_t)i), 0);
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

int main(void)
{
	Suite *s = suite_create("reload");
	TCase *tc = tcase_create("reload");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_reload_under_load);
	suite_add_tcase(s, tc);
	return check_run(s);
}
