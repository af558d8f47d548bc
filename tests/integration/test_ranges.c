/*
 * Port ranges against the real daemon: TCP and UDP through several ports of
 * a range, port N to target N and all to one, a port of the range held by
 * another socket, a reload to an overlapping range with connections open,
 * the 4096-port limit, and the per-port counters of status.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check_run.h"
#include "harness.h"

#define PORTFWD h_bin("PORTFWD_BIN", "build/default/portfwd")
#define PORTFWDCTL h_bin("PORTFWDCTL_BIN", "build/default/portfwdctl")

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	nanosleep(&ts, NULL);
}

/* True if PORT on 127.0.0.1 is free for TCP and UDP now. */
static bool port_free(unsigned port)
{
	static const int types[2] = { SOCK_STREAM, SOCK_DGRAM };
	bool ok = true;

	for (int k = 0; k < 2 && ok; k++) {
		struct sockaddr_storage ss;
		socklen_t len = h_sockaddr("127.0.0.1", port, &ss);
		int fd = socket(AF_INET, types[k], 0);

		ck_assert_int_ge(fd, 0);
		ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
		close(fd);
	}
	return ok;
}

/*
 * N consecutive ports free on 127.0.0.1 for TCP and UDP, below the
 * ephemeral range (so no outgoing connection takes one meanwhile), never
 * overlapping a range this process had before. Returns the first.
 */
static unsigned free_range(unsigned n)
{
	static unsigned next;

	if (!next)
		next = 20000 + (unsigned)(getpid() % 400) * 25;
	for (int tries = 0; tries < 400; tries++) {
		unsigned base = next, i;

		next += n + 1;
		if (next + n >= 32000)
			next = 10000;
		for (i = 0; i < n && port_free(base + i); i++)
			;
		if (i == n)
			return base;
	}
	ck_abort_msg("no %u consecutive free ports", n);
	return 0;
}

/* portfwdctl -s SOCK ARGS...: the exit status, the output in *OUT. */
static int ctl(struct hdaemon *d, char **out, const char *a1, const char *a2)
{
	char *argv[] = { (char *)PORTFWDCTL, "-s", d->sock, (char *)a1, (char *)a2, NULL };

	return h_run(argv, out);
}

static void reload(struct hdaemon *d, const char *body)
{
	char *out;
	int rc;

	h_write_conf(d, body);
	rc = ctl(d, &out, "reload", NULL);
	ck_assert_msg(rc == 0, "reload: exit %d: %s", rc, out);
	free(out);
}

/* Reads what H_SOURCE sends through PORT: returns the byte count, 0 if the
 * bytes are not the stream's (seed 42), -1 if the connection failed. */
static long long source_through(unsigned port)
{
	int fd = h_connect("127.0.0.1", port);
	uint64_t hash, want = H_HASH_INIT;
	long long n;
	unsigned char *buf;
	struct h_stream st;

	if (fd < 0)
		return -1;
	shutdown(fd, SHUT_WR);
	n = h_read_all(fd, &hash, 10);
	close(fd);
	if (n <= 0)
		return n < 0 ? -1 : 0;
	buf = malloc((size_t)n);
	h_stream_init(&st, 42);
	h_stream_fill(&st, buf, (size_t)n);
	want = h_hash(want, buf, (size_t)n);
	free(buf);
	return want == hash ? n : 0;
}

/* One echo of LEN stream bytes through PORT: 0 if they came back intact. */
static int echo_through(unsigned port, size_t len, uint64_t seed)
{
	int fd = h_connect("127.0.0.1", port), rc;

	if (fd < 0)
		return -1;
	rc = h_echo_exchange(fd, len, seed, 10);
	close(fd);
	return rc;
}

/* A datagram through PORT on FD and its echo within SECONDS: 0, or -1. */
static int udp_echo(int fd, unsigned port, unsigned seq, double seconds)
{
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr("127.0.0.1", port, &ss);
	char msg[64], got[64];
	double deadline = h_now() + seconds;
	int n = snprintf(msg, sizeof(msg), "datagram %u to %u", seq, port);

	if (sendto(fd, msg, (size_t)n, 0, (struct sockaddr *)&ss, len) != n)
		return -1;
	while (h_now() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 100) <= 0)
			continue;
		r = recv(fd, got, sizeof(got), 0);
		if (r == n && memcmp(got, msg, (size_t)n) == 0)
			return 0;
	}
	return -1;
}

static int udp_socket(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	ck_assert_int_ge(fd, 0);
	return fd;
}

/* A message over an open connection FD through an echo, and back. */
static int ping(int fd, const char *msg)
{
	size_t len = strlen(msg), got = 0;
	char buf[128];
	double deadline = h_now() + 5;

	if (write(fd, msg, len) != (ssize_t)len)
		return -1;
	while (got < len && h_now() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 100) <= 0)
			continue;
		r = read(fd, buf + got, sizeof(buf) - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return got == len && memcmp(buf, msg, len) == 0 ? 0 : -1;
}

/* The status object of rule NAME (a new reference), or NULL. */
static json_t *rule_status(struct hdaemon *d, const char *name)
{
	json_t *doc = h_status(d), *rules = json_object_get(doc, "rules"), *r, *found = NULL;
	size_t i;

	json_array_foreach(rules, i, r)
		if (strcmp(json_string_value(json_object_get(r, "name")), name) == 0)
			found = json_incref(r);
	json_decref(doc);
	return found;
}

/* Port PORT's object in rule R's "ports", or NULL. */
static json_t *port_status(json_t *r, unsigned port)
{
	json_t *p;
	size_t i;

	json_array_foreach(json_object_get(r, "ports"), i, p)
		if (json_integer_value(json_object_get(p, "port")) == (json_int_t)port)
			return p;
	return NULL;
}

static long long port_counter(json_t *r, unsigned port, const char *proto, const char *key)
{
	return json_integer_value(json_object_get(json_object_get(port_status(r, port), proto), key));
}

/* How many workers the daemon runs: each binds its own socket per port. */
static int workers(struct hdaemon *d)
{
	json_t *doc = h_status(d);
	int n = (int)json_integer_value(json_object_get(doc, "workers"));

	json_decref(doc);
	return n;
}

/* One message there and back on open connection FD; 0 if it echoed. */
static int echo_keep(int fd, const char *msg)
{
	size_t len = strlen(msg), got = 0;
	char buf[64];
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (send(fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len)
		return -1;
	while (got < len) {
		ssize_t n;

		if (poll(&p, 1, 5000) != 1)
			return -1;
		n = recv(fd, buf + got, len - got, 0);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return memcmp(buf, msg, len) == 0 ? 0 : -1;
}

/* ---- port N to target N, TCP and UDP, and the counters ---- */

#define NPORTS 4

START_TEST(test_range_same_length)
{
	struct hdaemon d;
	struct h_backend src[NPORTS], udp[NPORTS];
	unsigned listen = free_range(NPORTS), target = free_range(NPORTS);
	char body[512], *out;
	json_t *r;
	int fd = udp_socket();

	/* TCP: each target port sends a stream of its own length, so the
	 * client knows which one it reached. UDP: echoes on target ports 1 and 3
	 * only, so that a shifted mapping shows. */
	for (int i = 0; i < NPORTS; i++) {
		src[i].source_len = 1000 * (size_t)(i + 1);
		h_backend_start_on(&src[i], H_SOURCE, false, target + (unsigned)i);
		if (i % 2)
			h_backend_start_on(&udp[i], H_UDP_ECHO, false, target + (unsigned)i);
	}
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"game\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:%u-%u\"; } );",
		 listen, listen + NPORTS - 1, target, target + NPORTS - 1);
	h_start(&d, body);

	for (int i = NPORTS - 1; i >= 0; i--)
		ck_assert_int_eq(source_through(listen + (unsigned)i), 1000 * (i + 1));
	ck_assert_int_eq(source_through(listen + 2), 3000); /* again: the mapping holds */
	for (int i = 0; i < NPORTS; i++) {
		int rc = udp_echo(fd, listen + (unsigned)i, (unsigned)i, i % 2 ? 3 : 0.5);

		ck_assert_msg(i % 2 ? rc == 0 : rc < 0, "udp through %u: %d", listen + (unsigned)i, rc);
	}

	/* Status: one rule showing the range, the ranges and every port's counters. */
	ck_assert_int_eq(ctl(&d, &out, "status", NULL), 0);
	{
		char route[128];

		snprintf(route, sizeof(route), "127.0.0.1:%u-%u (registered) -> 127.0.0.1:%u-%u (registered)",
			 listen, listen + NPORTS - 1, target, target + NPORTS - 1);
		ck_assert_msg(strstr(out, route), "%s", out);
	}
	free(out);
	r = rule_status(&d, "game");
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "listening");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "listen_range"), "first")), listen);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "listen_range"), "last")), listen + NPORTS - 1);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "target_range"), "first")), target);
	ck_assert(json_is_object(json_object_get(r, "listen_port")));
	ck_assert_int_eq(json_array_size(json_object_get(r, "ports")), NPORTS);
	ck_assert_int_eq(port_counter(r, listen + 2, "tcp", "accepted"), 2);
	ck_assert_int_eq(port_counter(r, listen + 2, "tcp", "bytes_to_client"), 6000);
	ck_assert_int_eq(port_counter(r, listen + 0, "tcp", "accepted"), 1);
	ck_assert_int_eq(port_counter(r, listen + 0, "tcp", "bytes_to_client"), 1000);
	ck_assert_int_eq(json_integer_value(json_object_get(port_status(r, listen + 1), "target_port")), target + 1);
	ck_assert_int_eq(port_counter(r, listen + 3, "udp", "datagrams_to_target"), 1);
	ck_assert_int_eq(port_counter(r, listen + 3, "udp", "datagrams_to_client"), 1);
	ck_assert_int_eq(port_counter(r, listen + 0, "udp", "datagrams_to_client"), 0);
	/* The rule's totals are the ports' sums. */
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "tcp"), "accepted")), 5);
	json_decref(r);

	/* The counters move. */
	ck_assert_int_eq(source_through(listen + 0), 1000);
	ck_assert_int_eq(udp_echo(fd, listen + 3, 9, 3), 0);
	r = rule_status(&d, "game");
	ck_assert_int_eq(port_counter(r, listen + 0, "tcp", "accepted"), 2);
	ck_assert_int_eq(port_counter(r, listen + 0, "tcp", "bytes_to_client"), 2000);
	ck_assert_int_eq(port_counter(r, listen + 3, "udp", "datagrams_to_target"), 2);
	json_decref(r);

	close(fd);
	h_stop(&d);
	for (int i = 0; i < NPORTS; i++) {
		h_backend_stop(&src[i]);
		if (i % 2)
			h_backend_stop(&udp[i]);
	}
}
END_TEST

/* ---- all to one ---- */

START_TEST(test_range_all_to_one)
{
	struct hdaemon d;
	struct h_backend tcp, count, udp;
	unsigned listen = free_range(NPORTS), clisten = free_range(2);
	char body[768];
	int fd = udp_socket();

	h_backend_start(&tcp, H_ECHO, false);
	h_backend_start_on(&udp, H_UDP_ECHO, false, tcp.port);
	h_backend_start(&count, H_COUNT_REPLY, false);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"fan\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:%u\"; },\n"
		 "{ name = \"count\"; proto = \"tcp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:%u\"; } );",
		 listen, listen + NPORTS - 1, tcp.port, clisten, clisten + 1, count.port);
	h_start(&d, body);
	for (unsigned i = 0; i < NPORTS; i++) {
		ck_assert_int_eq(echo_through(listen + i, 100000 + i, i), 0);
		ck_assert_int_eq(udp_echo(fd, listen + i, i, 3), 0);
	}
	/* What the target got, counted and hashed there. */
	for (unsigned i = 0; i < 2; i++) {
		int c = h_connect("127.0.0.1", clisten + i);
		unsigned char *buf = malloc(300000);
		struct h_stream st;
		char reply[128] = "", want[128];
		uint64_t hash = H_HASH_INIT;
		ssize_t n, got = 0;

		ck_assert_int_ge(c, 0);
		ck_assert_int_eq(h_write_stream(c, 300000, 7 + i, 10), 0);
		shutdown(c, SHUT_WR);
		while (got < (ssize_t)sizeof(reply) - 1 &&
		       (n = read(c, reply + got, sizeof(reply) - 1 - (size_t)got)) > 0)
			got += n;
		close(c);
		h_stream_init(&st, 7 + i);
		h_stream_fill(&st, buf, 300000);
		hash = h_hash(hash, buf, 300000);
		free(buf);
		snprintf(want, sizeof(want), "300000 %016llx", (unsigned long long)hash);
		ck_assert_msg(strncmp(reply, want, strlen(want)) == 0, "got \"%s\", want \"%s\"", reply, want);
	}
	close(fd);
	h_stop(&d);
	h_backend_stop(&tcp);
	h_backend_stop(&udp);
	h_backend_stop(&count);
}
END_TEST

/* ---- a port of the range held by another socket ---- */

START_TEST(test_range_port_held)
{
	struct hdaemon d;
	struct h_backend echo;
	unsigned first = free_range(NPORTS);
	unsigned held = first + 2;
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr("127.0.0.1", held, &ss);
	int holder = socket(AF_INET, SOCK_STREAM, 0);
	char body[512], want[64], *out;
	json_t *r;
	double deadline;
	bool bound = false;

	ck_assert_int_eq(bind(holder, (struct sockaddr *)&ss, len), 0);
	ck_assert_int_eq(listen(holder, 1), 0);
	h_backend_start(&echo, H_ECHO, false);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"game\"; proto = \"tcp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:%u\"; } );",
		 first, first + NPORTS - 1, echo.port);
	h_start(&d, body);

	/* The other ports work. */
	for (unsigned i = 0; i < NPORTS; i++)
		if (first + i != held)
			ck_assert_int_eq(echo_through(first + i, 5000, i), 0);
	/* Status names the port and why; the rule is failed. */
	r = rule_status(&d, "game");
	ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "failed");
	snprintf(want, sizeof(want), "%u/tcp: address already in use", held);
	ck_assert_msg(strstr(json_string_value(json_object_get(json_object_get(r, "tcp"), "error")), want),
		      "%s", json_string_value(json_object_get(json_object_get(r, "tcp"), "error")));
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(port_status(r, held), "tcp"), "state")), "failed");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(port_status(r, first), "tcp"), "state")), "listening");
	json_decref(r);
	ck_assert_int_eq(ctl(&d, &out, "status", NULL), 0);
	ck_assert_msg(strstr(out, "FAILED") && strstr(out, want), "%s", out);
	free(out);

	/* Freed, the retry binds it (every 3 seconds), and only it. */
	close(holder);
	deadline = h_now() + 10;
	while (!bound && h_now() < deadline) {
		r = rule_status(&d, "game");
		bound = strcmp(json_string_value(json_object_get(r, "state")), "listening") == 0;
		json_decref(r);
		if (!bound)
			sleep_s(0.2);
	}
	ck_assert_msg(bound, "port %u not bound again", held);
	ck_assert_int_eq(echo_through(held, 5000, 99), 0);
	ck_assert(!h_log_contains(&d, "more ports of"));
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

/* ---- reload to an overlapping range ---- */

START_TEST(test_range_reload_overlap)
{
	struct hdaemon d;
	struct h_backend echo, uecho;
	unsigned base = free_range(12);
	unsigned stay = base + 5, leave = base + 1, added = base + 10;
	unsigned long before[4], after[4];
	char body[512];
	int keep_fd, gone_fd, ufd = udp_socket(), refused;
	json_t *r;

	h_backend_start(&echo, H_ECHO, false);
	h_backend_start_on(&uecho, H_UDP_ECHO, false, echo.port);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"game\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:%u\"; } );",
		 base, base + 7, echo.port);
	h_start(&d, body);
	keep_fd = h_connect("127.0.0.1", stay);
	gone_fd = h_connect("127.0.0.1", leave);
	ck_assert_int_ge(keep_fd, 0);
	ck_assert_int_ge(gone_fd, 0);
	ck_assert_int_eq(ping(keep_fd, "before, staying"), 0);
	ck_assert_int_eq(ping(gone_fd, "before, leaving"), 0);
	ck_assert_int_eq(udp_echo(ufd, stay, 1, 3), 0);
	ck_assert_int_eq(h_socket_inodes(stay, false, before, 4), workers(&d));
	ck_assert_int_lt(echo_through(added, 100, 1), 0); /* not in the range yet */

	snprintf(body, sizeof(body),
		 "rules = ( { name = \"game\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:%u\"; } );",
		 base + 4, base + 11, echo.port);
	reload(&d, body);

	/* Both connections carry on; the port that stays kept its sockets. */
	ck_assert_int_eq(ping(keep_fd, "after, staying"), 0);
	ck_assert_int_eq(ping(gone_fd, "after, leaving"), 0);
	ck_assert_int_eq(h_socket_inodes(stay, false, after, 4), workers(&d));
	ck_assert_mem_eq(before, after, sizeof(before[0]) * (size_t)workers(&d));
	/* The UDP session of the port that stays is the same one. */
	ck_assert_int_eq(udp_echo(ufd, stay, 2, 3), 0);
	r = rule_status(&d, "game");
	ck_assert_int_eq(port_counter(r, stay, "udp", "sessions_created"), 1);
	ck_assert_int_eq(port_counter(r, stay, "udp", "datagrams_to_target"), 2);
	ck_assert_ptr_null(port_status(r, leave));
	ck_assert_int_eq(json_array_size(json_object_get(r, "ports")), 8);
	ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "listening");
	json_decref(r);
	/* New ports accept; removed ones refuse. */
	ck_assert_int_eq(echo_through(added, 20000, 3), 0);
	ck_assert_int_eq(echo_through(base + 11, 20000, 4), 0);
	ck_assert_int_eq(echo_through(stay, 20000, 5), 0);
	errno = 0;
	refused = h_connect("127.0.0.1", leave);
	ck_assert_int_lt(refused, 0);
	ck_assert_int_eq(h_connect("127.0.0.1", base), -1);
	ck_assert_int_eq(h_socket_inodes(leave, false, after, 4), 0);
	/* The leaving port's connection still ends cleanly. */
	ck_assert_int_eq(ping(gone_fd, "last words"), 0);
	close(gone_fd);
	close(keep_fd);
	/* And back: a port that left comes back and is bound again. */
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"game\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:%u\"; } );",
		 base, base + 7, echo.port);
	reload(&d, body);
	ck_assert_int_eq(echo_through(leave, 20000, 6), 0);
	ck_assert_int_eq(udp_echo(ufd, leave, 7, 3), 0);
	ck_assert_int_lt(echo_through(added, 100, 8), 0);
	close(ufd);
	h_stop(&d);
	h_backend_stop(&echo);
	h_backend_stop(&uecho);
}
END_TEST

/* ---- the 4096-port limit ---- */

START_TEST(test_range_limit)
{
	char dir[] = "/tmp/portfwd-test-ranges-XXXXXX", path[128], *out = NULL;
	char *argv[] = { (char *)PORTFWD, "-t", "-c", path, NULL };
	FILE *fp;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/portfwd.conf", dir);
	fp = fopen(path, "w");
	fprintf(fp, "rules = (\n{ name = \"big\"; proto = \"udp\"; listen = \"127.0.0.1:10000-14095\"; target = \"127.0.0.1:53\"; }\n);\n");
	fclose(fp);
	ck_assert_msg(h_run(argv, &out) == 0, "%s", out);
	ck_assert_msg(strstr(out, "127.0.0.1:10000-14095"), "%s", out);
	free(out);
	fp = fopen(path, "w");
	fprintf(fp, "rules = (\n{ name = \"big\"; proto = \"udp\"; listen = \"127.0.0.1:10000-14096\"; target = \"127.0.0.1:53\"; }\n);\n");
	fclose(fp);
	ck_assert_int_ne(h_run(argv, &out), 0);
	{
		char want[256];

		snprintf(want, sizeof(want), "%s:2: rule \"big\": listen: \"127.0.0.1:10000-14096\": port range 10000-14096 has 4097 ports; a rule may have at most 4096", path);
		ck_assert_msg(strstr(out, want), "%s", out);
	}
	free(out);
	unlink(path);
	rmdir(dir);
}
END_TEST

/* A range of 4096 ports binds and serves its last port. */
START_TEST(test_range_4096_ports)
{
	struct hdaemon d;
	struct h_backend echo;
	unsigned base = 0;
	char body[512];
	json_t *r;

	/* The backend first: its port, which the kernel picks, must not fall
	 * in the range (a rule forwarding to itself is refused). */
	h_backend_start(&echo, H_ECHO, false);
	for (int tries = 0; tries < 20 && (!base || (echo.port >= base && echo.port <= base + 4095)); tries++)
		base = free_range(4096);
	ck_assert_msg(echo.port < base || echo.port > base + 4095, "no free range of 4096 ports without %u",
		      echo.port);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"big\"; proto = \"tcp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:%u\"; } );",
		 base, base + 4095, echo.port);
	h_start(&d, body);
	ck_assert_int_eq(echo_through(base + 4095, 1000, 1), 0);
	ck_assert_int_eq(echo_through(base, 1000, 2), 0);
	r = rule_status(&d, "big");
	ck_assert_int_eq(json_array_size(json_object_get(r, "ports")), 4096);
	json_decref(r);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

/* ---- a range with several targets ---- */

/*
 * targets = [ two ranges ] with failover: port N of the listen range goes to
 * port N of the first target's range; when that one port refuses, the
 * client is taken to port N of the second's, never to another offset.
 */
START_TEST(test_range_with_targets)
{
	struct hdaemon d;
	struct h_backend a[3], b[3];
	unsigned listen = free_range(3), ta = free_range(3), tb = free_range(3);
	char body[640];

	for (int i = 0; i < 3; i++) {
		a[i].source_len = 1000 * (size_t)(i + 1);
		b[i].source_len = 5000 * (size_t)(i + 1);
		h_backend_start_on(&a[i], H_SOURCE, false, ta + (unsigned)i);
		h_backend_start_on(&b[i], H_SOURCE, false, tb + (unsigned)i);
	}
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"game\"; proto = \"tcp\"; listen = \"127.0.0.1:%u-%u\"; targets = [ \"127.0.0.1:%u-%u\", \"127.0.0.1:%u-%u\" ]; balance = \"failover\"; } );",
		 listen, listen + 2, ta, ta + 2, tb, tb + 2);
	h_start(&d, body);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(source_through(listen + (unsigned)i), 1000 * (i + 1));
	/* The first target's second port goes away: that client lands on
	 * the second target's second port. */
	h_backend_stop(&a[1]);
	ck_assert_int_eq(source_through(listen + 1), 10000);
	/* One unserved port does not take the first target down for the
	 * others: its ports 0 and 2 still get the clients. */
	ck_assert_int_eq(source_through(listen + 0), 1000);
	ck_assert_int_eq(source_through(listen + 2), 3000);
	h_stop(&d);
	for (int i = 0; i < 3; i++) {
		if (i != 1)
			h_backend_stop(&a[i]);
		h_backend_stop(&b[i]);
	}
}
END_TEST

/* A range target list that mixes ranges and single ports, or ranges of
 * another length, is refused with the line. */
START_TEST(test_range_targets_refused)
{
	static const struct {
		const char *targets, *want;
	} cases[] = {
		{ "\"127.0.0.1:9000-9002\", \"127.0.0.1:9100\"", "some entries are port ranges and some are single ports" },
		{ "\"127.0.0.1:9000-9001\"", "targets[1]: \"127.0.0.1:9000-9001\": the range has 2 ports and the listen range 8000-8002 has 3" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[512], *out;
		char *argv[] = { (char *)PORTFWD, "-t", "-c", NULL, NULL };
		char path[] = "/tmp/portfwd-range-XXXXXX";
		int fd = mkstemp(path);
		FILE *fp = fdopen(fd, "w");

		snprintf(body, sizeof(body),
			 "rules = ( { name = \"g\"; proto = \"tcp\"; listen = \"127.0.0.1:8000-8002\";\n  targets = [ %s ]; } );\n",
			 cases[i].targets);
		fputs(body, fp);
		fclose(fp);
		argv[3] = path;
		ck_assert_int_ne(h_run(argv, &out), 0);
		ck_assert_msg(strstr(out, cases[i].want), "want \"%s\" in:\n%s", cases[i].want, out);
		ck_assert_msg(strstr(out, ":2:"), "no line 2 in:\n%s", out);
		free(out);
		unlink(path);
	}
}
END_TEST

/*
 * Two kept rules trade ports in one reload: a shrinks from 10 ports to 5,
 * b (listed first) grows over the 5 a leaves, with a TCP connection and a
 * UDP session open on one of them. The reload succeeds at once, b listens
 * on every port for TCP and UDP, a's open connection carries on.
 */
START_TEST(test_range_ports_move_between_rules)
{
	struct hdaemon d;
	struct h_backend ea, ua, sb, ub;
	unsigned base = free_range(15);
	char body[1024], *out;
	int live, u = udp_socket();
	json_t *r;

	h_backend_start(&ea, H_ECHO, false);
	h_backend_start_on(&ua, H_UDP_ECHO, false, ea.port);
	sb.source_len = 2000;
	h_backend_start(&sb, H_SOURCE, false);
	h_backend_start_on(&ub, H_UDP_ECHO, false, sb.port);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"a\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:%u\"; },\n"
		 "          { name = \"b\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:%u\"; } );",
		 base, base + 9, ea.port, base + 10, base + 14, sb.port);
	h_start(&d, body);
	live = h_connect("127.0.0.1", base + 7);
	ck_assert_int_ge(live, 0);
	ck_assert_int_eq(echo_keep(live, "before"), 0);
	ck_assert_int_eq(udp_echo(u, base + 7, 1, 3), 0);

	snprintf(body, sizeof(body),
		 "rules = ( { name = \"b\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:%u\"; },\n"
		 "          { name = \"a\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:%u\"; } );",
		 base + 5, base + 14, sb.port, base, base + 4, ea.port);
	h_write_conf(&d, body);
	ck_assert_msg(ctl(&d, &out, "reload", NULL) == 0, "reload: %s", out);
	free(out);
	r = rule_status(&d, "b");
	ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "listening");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(port_status(r, base + 7), "udp"), "state")),
			 "listening");
	json_decref(r);
	/* New clients of the moved port reach b's target; a's connection goes on. */
	ck_assert_int_eq(source_through(base + 7), 2000);
	ck_assert_int_eq(echo_keep(live, "after"), 0);
	close(live);
	close(u);
	h_stop(&d);
	h_backend_stop(&ea);
	h_backend_stop(&ua);
	h_backend_stop(&sb);
	h_backend_stop(&ub);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ranges");
	TCase *tc = tcase_create("ranges");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_range_same_length);
	tcase_add_test(tc, test_range_all_to_one);
	tcase_add_test(tc, test_range_port_held);
	tcase_add_test(tc, test_range_reload_overlap);
	tcase_add_test(tc, test_range_limit);
	tcase_add_test(tc, test_range_4096_ports);
	tcase_add_test(tc, test_range_with_targets);
	tcase_add_test(tc, test_range_targets_refused);
	tcase_add_test(tc, test_range_ports_move_between_rules);
	suite_add_tcase(s, tc);
	return check_run(s);
}
