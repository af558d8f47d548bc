/* TCP forwarding through the real daemon, as a client and a backend see it. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "check_run.h"

static char *rule_conf(const char *extra_defaults, const char *name, const char *listen,
		       const char *target)
{
	char *s = NULL;

	if (asprintf(&s, "defaults: { %s };\nrules: ( { name = \"%s\"; proto = \"tcp\"; listen = \"%s\"; target = \"%s\"; } );",
		     extra_defaults, name, listen, target) < 0)
		ck_abort_msg("asprintf");
	return s;
}

/* Starts an ECHO-like backend and a daemon with one rule to it. Returns the listen port. */
static unsigned start_pair(struct hdaemon *d, struct h_backend *b, enum h_backend_mode mode,
			   const char *defaults)
{
	unsigned port = h_free_port(SOCK_STREAM, false);
	char lis[64], tgt[64];
	char *conf;

	h_backend_start(b, mode, false);
	snprintf(lis, sizeof(lis), "127.0.0.1:%u", port);
	snprintf(tgt, sizeof(tgt), "127.0.0.1:%u", b->port);
	conf = rule_conf(defaults, "t", lis, tgt);
	h_start(d, conf);
	free(conf);
	return port;
}

struct xfer {
	unsigned port;
	size_t len;
	uint64_t seed;
	int result;
};

static void *xfer_thread(void *p)
{
	struct xfer *x = p;
	int fd = h_connect("127.0.0.1", x->port);

	x->result = fd < 0 ? -10 : h_echo_exchange(fd, x->len, x->seed, 120);
	if (fd >= 0)
		close(fd);
	return NULL;
}

START_TEST(test_bulk_concurrent)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_pair(&d, &b, H_ECHO, "");
	enum { N = 4 };
	const size_t per = (32u << 20) / N;
	struct xfer x[N];
	pthread_t t[N];

	for (int i = 0; i < N; i++) {
		x[i] = (struct xfer){ port, per, (uint64_t)i + 1, -99 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, xfer_thread, &x[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		ck_assert_msg(x[i].result == 0, "connection %d: echo exchange failed (%d)", i, x[i].result);
	}
	/* The counters match what was sent, once every connection has ended. */
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "active", 0, 5), 0);
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "accepted"), N);
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "connect_failed"), 0);
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "bytes_to_target"), (long long)per * N);
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "bytes_to_client"), (long long)per * N);
	/* The data path the rule asks for is the one that moved the bytes. */
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "bytes_spliced"), h_splice() ? 2LL * per * N : 0);
	ck_assert(h_log_contains(&d, "bytes to target"));
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* The client half-closes; the reply from the target still arrives. */
START_TEST(test_half_close_from_client)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_pair(&d, &b, H_COUNT_REPLY, "");
	const size_t len = 1u << 20;
	unsigned char *buf = malloc(len);
	struct h_stream s;
	char reply[128], want[128];
	ssize_t n, got = 0;
	int fd;

	h_stream_init(&s, 7);
	h_stream_fill(&s, buf, len);
	snprintf(want, sizeof(want), "%zu %016llx\n", len,
		 (unsigned long long)h_hash(H_HASH_INIT, buf, len));
	fd = h_connect("127.0.0.1", port);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(h_write_stream(fd, len, 7, 30), 0);
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	while (got < (ssize_t)sizeof(reply) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		ck_assert_msg(poll(&p, 1, 10000) == 1, "no reply within 10 s after half-close");
		n = read(fd, reply + got, sizeof(reply) - 1 - (size_t)got);
		if (n <= 0)
			break;
		got += n;
	}
	reply[got] = '\0';
	ck_assert_str_eq(reply, want);
	close(fd);
	free(buf);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* The target half-closes after a greeting; the client's data still reaches it. */
START_TEST(test_half_close_from_target)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_pair(&d, &b, H_GREET_READ, "");
	const size_t len = 1u << 20;
	unsigned char *buf = malloc(len);
	struct h_stream s;
	char greet[16] = "";
	uint64_t want;
	int fd;

	h_stream_init(&s, 9);
	h_stream_fill(&s, buf, len);
	want = h_hash(H_HASH_INIT, buf, len);
	fd = h_connect("127.0.0.1", port);
	ck_assert_int_ge(fd, 0);
	{
		uint64_t gh;
		/* The greeting, then EOF: the target's FIN came through. */
		long long n = 0;
		struct pollfd p = { .fd = fd, .events = POLLIN };

		ck_assert_int_eq(poll(&p, 1, 10000), 1);
		n = read(fd, greet, 6);
		ck_assert_int_eq(n, 6);
		ck_assert_int_eq(h_read_all(fd, &gh, 10), 0);
	}
	ck_assert_str_eq(greet, "hello\n");
	ck_assert_int_eq(h_write_stream(fd, len, 9, 30), 0);
	shutdown(fd, SHUT_WR);
	ck_assert_msg(h_backend_wait_finished(&b, 1, 10) == 1, "the target never saw the client's EOF");
	ck_assert_int_eq(b.got_bytes, (long long)len);
	ck_assert(b.got_hash == want);
	close(fd);
	free(buf);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "active", 0, 5), 0);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* Expects FD to be closed by the daemon within SECONDS. */
/*
 * FD is reset within SECONDS: what a client must see when portfwd ends its
 * connection abnormally (target refused or timed out, idle_timeout,
 * shutdown), never an orderly end that looks like a complete stream.
 */
static void assert_reset_within(int fd, double seconds)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;
	ssize_t n;

	ck_assert_msg(poll(&p, 1, (int)(seconds * 1000)) == 1, "not closed within %gs", seconds);
	n = read(fd, &c, 1);
	ck_assert_msg(n < 0 && errno == ECONNRESET, "ended by %s, not by a reset",
		      n == 0 ? "an orderly close" : n > 0 ? "more data" : strerror(errno));
}

START_TEST(test_refused_target)
{
	struct hdaemon d;
	unsigned port = h_free_port(SOCK_STREAM, false);
	unsigned dead = h_free_port(SOCK_STREAM, false);
	char lis[64], tgt[64], *conf;
	double t0;
	int fd;

	snprintf(lis, sizeof(lis), "127.0.0.1:%u", port);
	snprintf(tgt, sizeof(tgt), "127.0.0.1:%u", dead);
	conf = rule_conf("", "t", lis, tgt);
	h_start(&d, conf);
	free(conf);
	t0 = h_now();
	fd = h_connect("127.0.0.1", port);
	ck_assert_int_ge(fd, 0);
	assert_reset_within(fd, 3);
	ck_assert_msg(h_now() - t0 < 2, "a refused target took %.2fs to close the client", h_now() - t0);
	close(fd);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "connect_failed", 1, 3), 1);
	ck_assert(h_log_contains(&d, "connect failed: Connection refused"));
	h_stop(&d);
}
END_TEST

/*
 * A black hole on loopback: a listener whose accept queue is full drops
 * new SYNs, so connecting to it hangs like a host that never answers.
 */
START_TEST(test_connect_timeout)
{
	struct hdaemon d;
	unsigned port = h_free_port(SOCK_STREAM, false);
	struct h_backend hole;
	char lis[64], tgt[64], *conf;
	int fillers[4], fd;

	/* A listener that never accepts, with the smallest queue, filled up. */
	h_backend_start(&hole, H_ECHO, false);
	hole.stop = true;
	pthread_join(hole.thread, NULL);
	ck_assert_int_eq(listen(hole.fd, 0), 0);
	for (int i = 0; i < 4; i++) {
		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)hole.port),
					   .sin_addr.s_addr = htonl(0x7f000001) };
		connect(fillers[i], (struct sockaddr *)&sin, sizeof(sin));
	}
	usleep(100000);

	snprintf(lis, sizeof(lis), "127.0.0.1:%u", port);
	snprintf(tgt, sizeof(tgt), "127.0.0.1:%u", hole.port);
	conf = rule_conf("connect_timeout = 0.5;", "t", lis, tgt);
	h_start(&d, conf);
	free(conf);
	fd = h_connect("127.0.0.1", port);
	ck_assert_int_ge(fd, 0);
	assert_reset_within(fd, 5);
	close(fd);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "connect_failed", 1, 3), 1);
	ck_assert(h_log_contains(&d, "connect failed: timed out after 0.5s"));
	h_stop(&d);
	for (int i = 0; i < 4; i++)
		close(fillers[i]);
	close(hole.fd);
}
END_TEST

/*
 * The target sends 256 MiB to a client that does not read: the daemon
 * stops reading the target (back-pressure) and its memory stays bounded;
 * the client later receives every byte.
 */
START_TEST(test_slow_reader)
{
	struct hdaemon d;
	struct h_backend b;
	const size_t len = 256u << 20;
	unsigned port;
	long rss0, rss1;
	uint64_t hash, want = H_HASH_INIT;
	unsigned char *buf = malloc(1 << 20);
	struct h_stream s;
	int fd, small = 65536;

	b.source_len = len;
	port = start_pair(&d, &b, H_SOURCE, "");
	rss0 = h_rss_kib(d.pid);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	{
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					   .sin_addr.s_addr = htonl(0x7f000001) };
		ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	}
	/* Let the target push as hard as it can against a stalled client. */
	sleep(2);
	rss1 = h_rss_kib(d.pid);
	ck_assert_msg(rss1 - rss0 < 16 * 1024,
		      "daemon RSS grew by %ld KiB while the client was stalled (from %ld to %ld KiB)",
		      rss1 - rss0, rss0, rss1);
	ck_assert_int_lt(h_counter(&d, "t", "tcp", "bytes_to_client"), 64 << 20);
	fprintf(stderr, "slow reader: daemon RSS %ld KiB before, %ld KiB while stalled\n", rss0, rss1);

	h_stream_init(&s, 42);
	for (size_t done = 0; done < len; done += 1 << 20) {
		h_stream_fill(&s, buf, 1 << 20);
		want = h_hash(want, buf, 1 << 20);
	}
	ck_assert_int_eq(h_read_all(fd, &hash, 120), (long long)len);
	ck_assert(hash == want);
	close(fd);
	free(buf);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "bytes_to_client", (long long)len, 5), (long long)len);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* Reads up to LEN bytes from FD within 5 s into the running hash *H. */
static ssize_t read_hashed(int fd, unsigned char *buf, size_t len, uint64_t *h)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, 5000) != 1)
		return -1;
	n = read(fd, buf, len);
	if (n > 0)
		*h = h_hash(*h, buf, (size_t)n);
	return n;
}

/*
 * A download whose client reads fast, then slowly (20 KiB every 50 ms),
 * then fast again: the pipes it grew while fast are given back while it is
 * slow (taking no more than buffer_size until they fit their first size),
 * and every byte arrives intact.
 */
START_TEST(test_pipes_given_back_by_a_slow_reader)
{
	struct hdaemon d;
	struct h_backend b;
	const size_t len = 128u << 20;
	unsigned char *buf = malloc(1 << 20);
	uint64_t hash = H_HASH_INIT, want = H_HASH_INIT;
	struct h_stream st;
	size_t got = 0;
	double deadline, grown = -1;
	unsigned port;
	int fd;

	b.source_len = len;
	port = start_pair(&d, &b, H_SOURCE, "");
	fd = h_connect("127.0.0.1", port);
	ck_assert_int_ge(fd, 0);
	while (got < (32u << 20)) {
		ssize_t n = read_hashed(fd, buf, 1 << 20, &hash);

		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
	if (h_splice())
		ck_assert_msg(h_metric(&d, "portfwd_splice_pipe_grows_total") > 0, "a fast download grew no pipe");
	deadline = h_now() + 20;
	do {
		ssize_t n = read_hashed(fd, buf, 20 << 10, &hash);

		ck_assert_int_gt(n, 0);
		got += (size_t)n;
		usleep(50000);
		grown = h_metric(&d, "portfwd_splice_pipe_grown_bytes");
	} while (grown != 0 && h_now() < deadline);
	ck_assert_msg(grown == 0, "a slow reader still holds %.0f bytes of grown pipe", grown);
	while (got < len) {
		ssize_t n = read_hashed(fd, buf, 1 << 20, &hash);

		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
	ck_assert_int_eq(got, len);
	h_stream_init(&st, 42);
	for (size_t done = 0; done < len; done += 1 << 20) {
		h_stream_fill(&st, buf, 1 << 20);
		want = h_hash(want, buf, 1 << 20);
	}
	ck_assert(hash == want);
	close(fd);
	free(buf);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/*
 * A target that sends 100-byte segments to a client that stopped reading
 * (its receive buffer 4 KiB). Each segment takes a slot of the splice
 * pipe, so the pipe is full long before buffer_size bytes: the daemon must
 * then wait for the client, not retry the read at once and spin. Its CPU
 * time over 3 s of the stall stays near zero (a spin takes a whole CPU).
 */
START_TEST(test_stalled_reader_small_segments_no_spin)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_pair(&d, &b, H_TRICKLE, "");
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(0x7f000001) };
	long long before, after, bytes = -1, last, hz = sysconf(_SC_CLK_TCK);
	double deadline = h_now() + 20;
	int fd = socket(AF_INET, SOCK_STREAM, 0), small = 4096;
	char buf[4096];

	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	/* Until every buffer on the way is full: the count stops moving. */
	do {
		last = bytes;
		usleep(500000);
		bytes = h_counter(&d, "t", "tcp", "bytes_to_client");
	} while ((bytes != last || bytes <= 0) && h_now() < deadline);
	ck_assert_msg(bytes == last && bytes > 0, "the transfer never stalled (%lld bytes)", bytes);
	before = h_cpu_ticks(d.pid);
	sleep(3);
	after = h_cpu_ticks(d.pid);
	ck_assert_msg(after - before < hz * 3 / 10,
		      "the daemon used %lld of %lld CPU ticks in 3 s with a stalled reader",
		      after - before, hz * 3);
	fprintf(stderr, "stalled reader: %lld bytes relayed, daemon used %lld of %lld ticks\n", bytes,
		after - before, hz * 3);
	/* The connection still carries bytes once the client reads. */
	ck_assert_int_gt(read(fd, buf, sizeof(buf)), 0);
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "active"), 1);
	close(fd);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/*
 * Splice pipes grow with the traffic: a bulk exchange on one connection
 * grows them (the counter moves), every byte comes back intact, and once
 * the traffic is down to a trickle (100 bytes each way every 100 ms) the
 * growth is given back while the connection still carries it. With
 * splice off nothing grows.
 */
START_TEST(test_pipes_grow_and_give_back)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_pair(&d, &b, H_ECHO, "");
	double deadline, grown = -1;
	int fd = h_connect("127.0.0.1", port), trickles = 0;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(h_echo_exchange_open(fd, 64u << 20, 7, 120, true), 0);
	if (h_splice()) {
		ck_assert_msg(h_metric(&d, "portfwd_splice_pipe_grows_total") > 0,
			      "64 MiB through one connection grew no pipe");
		ck_assert_double_gt(h_metric(&d, "portfwd_splice_pipe_grow_budget_bytes"), 0);
	} else {
		ck_assert_double_eq(h_metric(&d, "portfwd_splice_pipe_grows_total"), 0);
	}
	deadline = h_now() + 10;
	do {
		ck_assert_int_eq(h_echo_exchange_open(fd, 100, (uint64_t)++trickles, 5, true), 0);
		usleep(100000);
		grown = h_metric(&d, "portfwd_splice_pipe_grown_bytes");
	} while (grown != 0 && h_now() < deadline);
	ck_assert_msg(grown == 0, "grown pipes still held by a trickling connection: %.0f bytes", grown);
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "active"), 1);
	ck_assert_int_eq(h_echo_exchange(fd, 4096, 8, 10), 0);
	close(fd);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "active", 0, 5), 0);
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "bytes_to_target"), (64 << 20) + 100LL * trickles + 4096);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/*
 * A buffer_size the kernel rounds up (100000 makes a 131072-byte pipe) is
 * still a pipe that fills: a bulk exchange grows it. Judged against the
 * pipe's own size, such a direction never counted a fill and never grew.
 */
START_TEST(test_pipes_grow_at_any_buffer_size)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_pair(&d, &b, H_ECHO, "buffer_size = 100000;");
	int fd = h_connect("127.0.0.1", port), rounds = 0;
	double deadline = h_now() + 60;

	ck_assert_int_ge(fd, 0);
	/* Growing takes two reads in a row that fill the pipe from empty,
	 * which a busy machine may not offer in the first transfer: more, up
	 * to a minute (before the fix, none ever grew). */
	do
		ck_assert_int_eq(h_echo_exchange_open(fd, 16u << 20, (uint64_t)++rounds, 60, true), 0);
	while (h_splice() && h_metric(&d, "portfwd_splice_pipe_grows_total") <= 0 && h_now() < deadline);
#if defined(__SANITIZE_THREAD__)
#define TCP_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TCP_TEST_TSAN 1
#endif
#endif
#ifdef TCP_TEST_TSAN
	/* Growing also takes a receiver that drains each full pipe at once;
	 * under ThreadSanitizer this test's own echo backend is too slow for
	 * that (1168 MiB in a minute, no pipe grown): the bytes are checked,
	 * the growth is left to the other builds. */
	fprintf(stderr, "ThreadSanitizer: %d MiB, %.0f pipes grown (not asserted)\n", rounds * 16,
		h_metric(&d, "portfwd_splice_pipe_grows_total"));
#else
	if (h_splice())
		ck_assert_msg(h_metric(&d, "portfwd_splice_pipe_grows_total") > 0,
			      "%d MiB through one connection with buffer_size 100000 grew no pipe", rounds * 16);
#endif
	close(fd);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "active", 0, 5), 0);
	ck_assert_double_eq(h_metric(&d, "portfwd_splice_pipe_grown_bytes"), 0);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* A rule that asks for less than the default pipe (buffer_size 4096)
 * wants less memory per connection: a bulk exchange grows nothing, and
 * every byte still comes back. */
START_TEST(test_small_buffer_size_pipes_stay_small)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_pair(&d, &b, H_ECHO, "buffer_size = 4096;");
	int fd = h_connect("127.0.0.1", port);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(h_echo_exchange_open(fd, 16u << 20, 11, 120, true), 0);
	ck_assert_double_eq(h_metric(&d, "portfwd_splice_pipe_grows_total"), 0);
	close(fd);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

START_TEST(test_ipv6_and_mixed)
{
	struct hdaemon d;
	struct h_backend b4, b6;
	unsigned p6 = h_free_port(SOCK_STREAM, true), p46 = h_free_port(SOCK_STREAM, false);
	char conf[1024];
	int fd;

	h_backend_start(&b6, H_ECHO, true);
	h_backend_start(&b4, H_ECHO, false);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"six\"; proto = \"tcp\"; listen = \"[::1]:%u\"; target = \"[::1]:%u\"; },\n"
		 "         { name = \"mixed\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"[::1]:%u\"; } );",
		 p6, b6.port, p46, b6.port);
	h_start(&d, conf);
	fd = h_connect("::1", p6);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(h_echo_exchange(fd, 1 << 20, 3, 30), 0);
	close(fd);
	fd = h_connect("127.0.0.1", p46);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(h_echo_exchange(fd, 1 << 20, 4, 30), 0);
	close(fd);
	ck_assert_int_eq(h_wait_counter(&d, "six", "tcp", "bytes_to_client", 1 << 20, 5), 1 << 20);
	ck_assert(h_log_contains(&d, "[::1]:"));
	h_stop(&d);
	h_backend_stop(&b4);
	h_backend_stop(&b6);
}
END_TEST

/* True if FD gets the byte back within MS milliseconds. */
static bool echoes(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	if (send(fd, "x", 1, MSG_NOSIGNAL) != 1)
		return false;
	return poll(&p, 1, ms) == 1 && read(fd, &c, 1) == 1 && c == 'x';
}

START_TEST(test_max_connections_pauses_accept)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_pair(&d, &b, H_ECHO, "max_connections = 2;");
	int a = h_connect("127.0.0.1", port), c = h_connect("127.0.0.1", port), x;
	struct pollfd p;
	char ch;

	ck_assert(echoes(a, 5000));
	ck_assert(echoes(c, 5000));
	/* The third waits in the kernel's queue: not accepted, not served. */
	x = h_connect("127.0.0.1", port);
	ck_assert_int_ge(x, 0);
	ck_assert(!echoes(x, 500));
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "accepted"), 2);
	close(a);
	/* One ended: the waiting one is accepted and its byte comes back. */
	p = (struct pollfd){ .fd = x, .events = POLLIN };
	ck_assert_int_eq(poll(&p, 1, 5000), 1);
	ck_assert_int_eq(read(x, &ch, 1), 1);
	ck_assert_int_eq(ch, 'x');
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "accepted"), 3);
	close(c);
	close(x);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

START_TEST(test_idle_timeout)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_pair(&d, &b, H_ECHO, "idle_timeout = 0.5;");
	int fd = h_connect("127.0.0.1", port);
	double t0;

	ck_assert(echoes(fd, 5000));
	t0 = h_now();
	assert_reset_within(fd, 5);
	ck_assert_msg(h_now() - t0 >= 0.4, "closed after %.2fs, before the idle timeout", h_now() - t0);
	close(fd);
	ck_assert(h_log_contains(&d, "idle for 0.5s"));
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/*
 * A download slower than idle_timeout per buffer: the target has sent all
 * 1 MiB and closed, the kernel holds most of it for a client that reads
 * 16 KiB every 50 ms (4 s in all, idle_timeout 1 s). Bytes still reaching
 * the client are traffic: the download completes, intact, in order.
 */
START_TEST(test_idle_timeout_slow_download)
{
	struct hdaemon d;
	struct h_backend b;
	const size_t len = 1u << 20;
	unsigned port;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	unsigned char buf[16384], want[16384];
	struct h_stream s;
	size_t got = 0;
	double deadline;
	int fd, small = 16384;
	ssize_t n = 1;

	b.source_len = len;
	port = start_pair(&d, &b, H_SOURCE, "idle_timeout = 1.0;");
	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	sin.sin_port = htons((uint16_t)port);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	h_stream_init(&s, 42);
	deadline = h_now() + 30;
	while (n > 0 && h_now() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		usleep(50000);
		if (poll(&p, 1, 1000) != 1)
			continue;
		n = read(fd, buf, sizeof(buf));
		if (n > 0) {
			h_stream_fill(&s, want, (size_t)n);
			ck_assert_msg(memcmp(buf, want, (size_t)n) == 0, "corrupted at byte %zu", got);
			got += (size_t)n;
		}
	}
	ck_assert_msg(n == 0 && got == len, "got %zu of %zu bytes, then %s", got, len,
		      n == 0 ? "the end" : n < 0 ? strerror(errno) : "nothing (time out)");
	ck_assert(!h_log_contains(&d, "idle for 1s"));
	close(fd);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/*
 * Out of file descriptors: clients wait in the queue instead of being
 * dropped, none hangs for good, the daemon stays up, and once descriptors
 * are free again every client is served.
 */
START_TEST(test_out_of_descriptors)
{
	enum { N = 16 };
	struct hdaemon d;
	struct h_backend b;
	int fds[N], served = 0;
	unsigned port;
	char conf[512];

	h_backend_start(&b, H_ECHO, false);
	port = h_free_port(SOCK_STREAM, false);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"t\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 port, b.port);
	h_start_nofile(&d, conf, 24);

	for (int i = 0; i < N; i++) {
		fds[i] = h_connect("127.0.0.1", port);
		ck_assert_int_ge(fds[i], 0);
	}
	/* Every client asks at once; each closes as soon as it is answered,
	 * which frees descriptors in the daemon for the others. */
	{
		struct pollfd p[N];
		double deadline = h_now() + 60;

		for (int i = 0; i < N; i++) {
			ck_assert_int_eq(send(fds[i], "x", 1, MSG_NOSIGNAL), 1);
			p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
		}
		while (served < N && h_now() < deadline) {
			if (poll(p, N, 200) <= 0)
				continue;
			for (int i = 0; i < N; i++) {
				char c;

				if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				ck_assert_msg(read(fds[i], &c, 1) == 1 && c == 'x',
					      "client %d was closed instead of served", i);
				close(fds[i]);
				p[i].fd = -1;
				served++;
			}
		}
	}
	ck_assert_int_eq(served, N);
	ck_assert(h_log_contains(&d, "out of file descriptors (Too many open files); pausing accepts for 1s"));
	ck_assert(!h_log_contains(&d, "connect failed"));
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "active", 0, 10), 0);
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "accepted"), N);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* Connections still open at SIGTERM are closed, and the daemon exits 0. */
START_TEST(test_sigterm_with_open_connections)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_pair(&d, &b, H_ECHO, "");
	int fd = h_connect("127.0.0.1", port);

	ck_assert(echoes(fd, 5000));
	h_stop(&d);
	assert_reset_within(fd, 2);
	close(fd);
	h_backend_stop(&b);
}
END_TEST

/* ---- in network namespaces: a client on another host ---- */


/*
 * A client on another host vanishes (its link goes down: no FIN, no RST
 * ever comes) while idle_timeout is 0. TCP keepalive finds it dead, the
 * connection is freed, and the target learns of it by a reset, not by an
 * end that would look like a complete transfer.
 */
START_TEST(test_vanished_client_found_by_keepalive_and_reset)
{
	struct hdaemon d;
	struct h_backend b;
	char conf[512], buf[16], *out = NULL;
	int fd;

	if (!h_netns_ready(&h_ns))
		return;
	h_netns_enter(h_ns.srv);
	h_backend_start(&b, H_GREET_HOLD, false);
	h_netns_enter(NULL);
	snprintf(conf, sizeof(conf),
		 "defaults: { idle_timeout = 0; tcp_keepalive = { idle = 1; interval = 1; count = 2; }; };\n"
		 "rules: ( { name = \"t\"; proto = \"tcp\"; listen = \"10.77.0.1:2200\"; target = \"127.0.0.1:%u\"; } );",
		 b.port);
	h_daemon_netns = h_ns.srv;
	h_start(&d, conf);
	h_daemon_netns = NULL;
	h_netns_enter(h_ns.cli);
	fd = h_connect("10.77.0.1", 2200);
	h_netns_enter(NULL);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(recv(fd, buf, 6, MSG_WAITALL), 6);
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "active"), 1);

	/* Gone without a word: the client's host drops everything for it from
	 * now on (its address removed, forwarding off: no RST, no ICMP). */
	ck_assert_int_eq(h_sh(&out, "ip netns exec %s sysctl -qw net.ipv4.conf.all.forwarding=0 && ip -n %s addr flush dev %s",
			      h_ns.cli, h_ns.cli, h_ns.cli_if), 0);
	free(out);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "active", 0, 15), 0);
	ck_assert(h_log_contains(&d, "client error: Connection timed out"));
	ck_assert_int_eq(h_backend_wait_finished(&b, 1, 5), 1);
	ck_assert_msg(b.got_bytes == -1, "the target saw an orderly end (%lld bytes), not a reset",
		      b.got_bytes);
	close(fd);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("tcp");
	TCase *tc = tcase_create("tcp");

	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, test_bulk_concurrent);
	tcase_add_test(tc, test_half_close_from_client);
	tcase_add_test(tc, test_half_close_from_target);
	tcase_add_test(tc, test_refused_target);
	tcase_add_test(tc, test_connect_timeout);
	tcase_add_test(tc, test_slow_reader);
	tcase_add_test(tc, test_stalled_reader_small_segments_no_spin);
	tcase_add_test(tc, test_pipes_grow_and_give_back);
	tcase_add_test(tc, test_pipes_grow_at_any_buffer_size);
	tcase_add_test(tc, test_small_buffer_size_pipes_stay_small);
	tcase_add_test(tc, test_pipes_given_back_by_a_slow_reader);
	tcase_add_test(tc, test_ipv6_and_mixed);
	tcase_add_test(tc, test_max_connections_pauses_accept);
	tcase_add_test(tc, test_idle_timeout);
	tcase_add_test(tc, test_idle_timeout_slow_download);
	tcase_add_test(tc, test_out_of_descriptors);
	tcase_add_test(tc, test_sigterm_with_open_connections);
	suite_add_tcase(s, tc);

	tc = h_netns_tcase();
	tcase_add_test(tc, test_vanished_client_found_by_keepalive_and_reset);
	suite_add_tcase(s, tc);
	return check_run(s);
}
