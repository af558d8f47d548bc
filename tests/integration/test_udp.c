/* UDP forwarding through the real daemon: sessions, big datagrams, limits, expiry. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "check_run.h"

static unsigned start_udp(struct hdaemon *d, struct h_backend *b, const char *defaults)
{
	unsigned port = h_free_port(SOCK_DGRAM, false);
	char conf[1024];

	h_backend_start(b, H_UDP_ECHO, false);
	snprintf(conf, sizeof(conf),
		 "defaults: { %s };\nrules: ( { name = \"u\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 defaults, port, b->port);
	h_start(d, conf);
	return port;
}

static int udp_client(unsigned port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(0x7f000001) };
	int fd = socket(AF_INET, SOCK_DGRAM, 0), big = 1 << 20;

	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

/* Receives one datagram within MS; returns its length or -1. */
static ssize_t recv_within(int fd, void *buf, size_t len, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, ms) != 1)
		return -1;
	return recv(fd, buf, len, MSG_TRUNC);
}

START_TEST(test_datagram_sizes_pass_whole)
{
	static const size_t sizes[] = { 1, 64, 1472, 9000, 32768, 65507 };
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_udp(&d, &b, "");
	int fd = udp_client(port);
	unsigned char *out = malloc(65536), *in = malloc(65536);
	struct h_stream s;
	long long total = 0;

	h_stream_init(&s, 5);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		ssize_t n;

		h_stream_fill(&s, out, sizes[i]);
		ck_assert_int_eq(send(fd, out, sizes[i], 0), (ssize_t)sizes[i]);
		n = recv_within(fd, in, 65536, 5000);
		ck_assert_msg(n == (ssize_t)sizes[i], "sent %zu bytes, got back %zd", sizes[i], n);
		ck_assert(memcmp(in, out, sizes[i]) == 0);
		total += (long long)sizes[i];
	}
	/* (The worker counts a reply just after sending it: the client may
	 * read it first.) */
	ck_assert_int_eq(h_wait_counter(&d, "u", "udp", "datagrams_to_client", 6, 5), 6);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "datagrams_to_target"), 6);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "bytes_to_target"), total);
	ck_assert_int_eq(h_wait_counter(&d, "u", "udp", "bytes_to_client", total, 5), total);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "sessions_created"), 1);
	close(fd);
	free(out);
	free(in);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/*
 * Bursts of equal-size datagrams, then an empty one and a shorter one,
 * both ways: portfwd sends such runs in one UDP_SEGMENT call (relay_udp.c),
 * and each datagram must still arrive on its own, whole, in order (the
 * empty one too: in a run it would vanish). On a listener bound to one
 * address and on a wildcard one (whose replies also carry their source
 * address).
 */
START_TEST(test_bursts_keep_datagram_boundaries)
{
	enum { BURST = 60, SIZE = 1200, LAST = 300, ROUNDS = 3 };
#define BURST_LEN(i) ((i) == BURST - 2 ? 0 : (i) == BURST - 1 ? LAST : SIZE)
	struct hdaemon d;
	struct h_backend b;
	unsigned ports[2] = { h_free_port(SOCK_DGRAM, false), 0 };
	unsigned char out[BURST][SIZE], in[SIZE + 1];
	char conf[1024];
	struct h_stream st;

	do
		ports[1] = h_free_port(SOCK_DGRAM, false);
	while (ports[1] == ports[0]);
	h_backend_start(&b, H_UDP_ECHO, false);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"one\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; },\n"
		 "         { name = \"any\"; proto = \"udp\"; listen = \"0.0.0.0:%u\"; target = \"127.0.0.1:%u\"; } );",
		 ports[0], b.port, ports[1], b.port);
	h_start(&d, conf);
	h_stream_init(&st, 11);
	for (int r = 0; r < 2; r++) {
		int fd = udp_client(ports[r]);

		for (int round = 0; round < ROUNDS; round++) {
			for (int i = 0; i < BURST; i++) {
				size_t len = BURST_LEN(i);

				h_stream_fill(&st, out[i], len);
				ck_assert_int_eq(send(fd, out[i], len, 0), (ssize_t)len);
			}
			for (int i = 0; i < BURST; i++) {
				size_t len = BURST_LEN(i);
				ssize_t n = recv_within(fd, in, sizeof(in), 5000);

				ck_assert_msg(n == (ssize_t)len, "rule %d, round %d, datagram %d: %zd bytes, sent %zu",
					      r, round, i, n, len);
				ck_assert_msg(memcmp(in, out[i], len) == 0, "rule %d, round %d, datagram %d differs",
					      r, round, i);
			}
		}
		close(fd);
	}
	for (int r = 0; r < 2; r++) {
		const char *name = r ? "any" : "one";

		ck_assert_int_eq(h_counter(&d, name, "udp", "datagrams_to_target"), BURST * ROUNDS);
		/* The worker counts a reply just after sending it: wait for it. */
		ck_assert_int_eq(h_wait_counter(&d, name, "udp", "datagrams_to_client", BURST * ROUNDS, 5),
				 BURST * ROUNDS);
		ck_assert_int_eq(h_wait_counter(&d, name, "udp", "bytes_to_client",
						ROUNDS * ((BURST - 2) * SIZE + LAST), 5),
				 ROUNDS * ((BURST - 2) * SIZE + LAST));
		ck_assert_int_eq(h_counter(&d, name, "udp", "dropped_error"), 0);
	}
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/*
 * A client that sends with UDP_SEGMENT (a QUIC stack, another portfwd):
 * the listener, with UDP_GRO, gets each run as one buffer. The target
 * must still get every datagram on its own, and the counters count
 * datagrams, not buffers.
 */
START_TEST(test_coalesced_client_runs_split_again)
{
	enum { SEG = 1000, SEGS = 20, LAST = 300, ROUNDS = 3 };
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_udp(&d, &b, "");
	int fd = udp_client(port);
	unsigned char out[SEG * SEGS + LAST], in[sizeof(out)];
	struct h_stream st;

	h_stream_init(&st, 21);
	for (int round = 0; round < ROUNDS; round++) {
		h_stream_fill(&st, out, sizeof(out));
		ck_assert_int_eq(h_udp_send_gso(fd, out, sizeof(out), SEG), (ssize_t)sizeof(out));
		for (int i = 0; i <= SEGS; i++) {
			size_t len = i == SEGS ? LAST : SEG;
			ssize_t n = recv_within(fd, in, sizeof(in), 5000);

			ck_assert_msg(n == (ssize_t)len, "round %d, datagram %d: %zd bytes, sent %zu", round, i, n, len);
			ck_assert_msg(memcmp(in, out + (size_t)i * SEG, len) == 0, "round %d, datagram %d differs",
				      round, i);
		}
	}
	ck_assert_int_eq(h_counter(&d, "u", "udp", "datagrams_to_target"), (SEGS + 1) * ROUNDS);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "bytes_to_target"), (long long)sizeof(out) * ROUNDS);
	/* The worker counts a reply just after sending it: wait for it. */
	ck_assert_int_eq(h_wait_counter(&d, "u", "udp", "datagrams_to_client", (SEGS + 1) * ROUNDS, 5),
			 (SEGS + 1) * ROUNDS);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "dropped_error"), 0);
	/* The offloads were at work, not the kernel splitting the runs for a
	 * listener without UDP_GRO (the datagrams would come out the same):
	 * each round came in as one buffer and went on in one send. */
	ck_assert_double_ge(h_metric(&d, "portfwd_udp_gro_receives_total"), ROUNDS);
	ck_assert_double_ge(h_metric(&d, "portfwd_udp_gso_sends_total"), ROUNDS);
	close(fd);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* 200 clients at once, each must get exactly its own replies. */
START_TEST(test_many_clients_get_their_own_replies)
{
	enum { N = 200, PER = 3 };
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_udp(&d, &b, "");
	int fds[N], got[N] = { 0 }, total = 0;
	struct pollfd p[N];
	double deadline;

	for (int i = 0; i < N; i++) {
		fds[i] = udp_client(port);
		p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	}
	for (int k = 0; k < PER; k++)
		for (int i = 0; i < N; i++) {
			char msg[64];
			int len = snprintf(msg, sizeof(msg), "client %d message %d", i, k);

			ck_assert_int_eq(send(fds[i], msg, (size_t)len, 0), len);
			/* Pace the burst: loss in a full socket buffer is not what this tests. */
			if (i % 20 == 19)
				usleep(2000);
		}
	deadline = h_now() + 10;
	while (total < N * PER && h_now() < deadline) {
		if (poll(p, N, 200) <= 0)
			continue;
		for (int i = 0; i < N; i++) {
			char buf[128], want[32];
			ssize_t n;

			if (!(p[i].revents & POLLIN))
				continue;
			n = recv(fds[i], buf, sizeof(buf) - 1, 0);
			ck_assert_int_gt(n, 0);
			buf[n] = '\0';
			snprintf(want, sizeof(want), "client %d message ", i);
			ck_assert_msg(strncmp(buf, want, strlen(want)) == 0,
				      "client %d received \"%s\", meant for another client", i, buf);
			got[i]++;
			total++;
		}
	}
	for (int i = 0; i < N; i++)
		ck_assert_msg(got[i] == PER, "client %d got %d of %d replies", i, got[i], PER);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "sessions_created"), N);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "active"), N);
	ck_assert_int_eq(h_wait_counter(&d, "u", "udp", "datagrams_to_client", N * PER, 5), N * PER);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

START_TEST(test_session_expiry)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_udp(&d, &b, "udp_idle_timeout = 0.3;");
	int fd = udp_client(port);
	char buf[16];

	ck_assert_int_eq(send(fd, "ping", 4, 0), 4);
	ck_assert_int_eq(recv_within(fd, buf, sizeof(buf), 5000), 4);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "active"), 1);
	ck_assert_int_eq(h_wait_counter(&d, "u", "udp", "active", 0, 5), 0);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "sessions_expired"), 1);
	ck_assert(h_log_contains(&d, "session ended after"));
	/* The same client comes back: a new session, and it still works. */
	ck_assert_int_eq(send(fd, "ping", 4, 0), 4);
	ck_assert_int_eq(recv_within(fd, buf, sizeof(buf), 5000), 4);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "sessions_created"), 2);
	close(fd);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* A session that keeps talking does not expire. */
START_TEST(test_active_session_kept)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_udp(&d, &b, "udp_idle_timeout = 0.4;");
	int fd = udp_client(port);
	char buf[16];

	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(send(fd, "ping", 4, 0), 4);
		ck_assert_int_eq(recv_within(fd, buf, sizeof(buf), 5000), 4);
		usleep(100000);
	}
	ck_assert_int_eq(h_counter(&d, "u", "udp", "sessions_created"), 1);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "sessions_expired"), 0);
	close(fd);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

START_TEST(test_max_udp_sessions_drops_new_clients)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_udp(&d, &b, "max_udp_sessions = 2;");
	int a = udp_client(port), c = udp_client(port), x = udp_client(port);
	char buf[16];

	ck_assert_int_eq(send(a, "a", 1, 0), 1);
	ck_assert_int_eq(recv_within(a, buf, sizeof(buf), 5000), 1);
	ck_assert_int_eq(send(c, "c", 1, 0), 1);
	ck_assert_int_eq(recv_within(c, buf, sizeof(buf), 5000), 1);
	ck_assert_int_eq(send(x, "x", 1, 0), 1);
	ck_assert_int_eq(recv_within(x, buf, sizeof(buf), 500), -1);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "dropped_limit"), 1);
	/* Existing sessions carry on. */
	ck_assert_int_eq(send(a, "a", 1, 0), 1);
	ck_assert_int_eq(recv_within(a, buf, sizeof(buf), 5000), 1);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "active"), 2);
	close(a);
	close(c);
	close(x);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* A tcp+udp rule forwards both protocols on the same port. */
START_TEST(test_tcp_and_udp_rule)
{
	struct hdaemon d;
	struct h_backend bt, bu;
	unsigned port;
	char conf[512], buf[16];
	int fd, u;

	/* One port number free for both protocols. */
	for (int tries = 0;; tries++) {
		int s;
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };

		port = h_free_port(SOCK_STREAM, false);
		sin.sin_port = htons((uint16_t)port);
		s = socket(AF_INET, SOCK_DGRAM, 0);
		if (bind(s, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
			close(s);
			break;
		}
		close(s);
		ck_assert_int_lt(tries, 50);
	}
	h_backend_start(&bt, H_ECHO, false);
	h_backend_start(&bu, H_UDP_ECHO, false);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"tcp\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; },\n"
		 "         { name = \"both\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 h_free_port(SOCK_STREAM, false), bt.port, port, bu.port);
	h_start(&d, conf);
	u = udp_client(port);
	ck_assert_int_eq(send(u, "dgram", 5, 0), 5);
	ck_assert_int_eq(recv_within(u, buf, sizeof(buf), 5000), 5);
	close(u);
	/* TCP on the same port is accepted too; the target has no TCP listener
	 * on that port, so the connect fails and is counted. */
	fd = h_connect("127.0.0.1", port);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(h_wait_counter(&d, "both", "tcp", "connect_failed", 1, 5), 1);
	ck_assert_int_eq(h_counter(&d, "both", "tcp", "accepted"), 1);
	ck_assert_int_eq(h_wait_counter(&d, "both", "udp", "datagrams_to_client", 1, 5), 1);
	h_stop(&d);
	h_backend_stop(&bt);
	h_backend_stop(&bu);
}
END_TEST

/* An IPv6 client, through an IPv6 listener, to an IPv4 target. */
START_TEST(test_ipv6_client)
{
	struct hdaemon d;
	struct h_backend b;
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	unsigned port = h_free_port(SOCK_DGRAM, true);
	char conf[512], buf[64];
	int fd;

	h_backend_start(&b, H_UDP_ECHO, false);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"u6\"; proto = \"udp\"; listen = \"[::1]:%u\"; target = \"127.0.0.1:%u\"; } );",
		 port, b.port);
	h_start(&d, conf);
	sin6.sin6_port = htons((uint16_t)port);
	fd = socket(AF_INET6, SOCK_DGRAM, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin6, sizeof(sin6)), 0);
	ck_assert_int_eq(send(fd, "over six", 8, 0), 8);
	ck_assert_int_eq(recv_within(fd, buf, sizeof(buf), 5000), 8);
	ck_assert(memcmp(buf, "over six", 8) == 0);
	close(fd);
	ck_assert(h_log_contains(&d, "new session for [::1]:"));
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/*
 * A rule on 0.0.0.0 and a client that sends to 127.0.0.2 (any of 127/8 is
 * this host's): the reply comes from 127.0.0.2, not from the address the
 * kernel would pick for the client (127.0.0.1). Needs no root.
 */
START_TEST(test_reply_from_loopback_alias)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = h_free_port(SOCK_DGRAM, false);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(0x7f000002) }, from;
	socklen_t fromlen = sizeof(from);
	char conf[512], buf[16];
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct pollfd p = { .fd = fd, .events = POLLIN };

	h_backend_start(&b, H_UDP_ECHO, false);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"u\"; proto = \"udp\"; listen = \"0.0.0.0:%u\"; target = \"127.0.0.1:%u\"; } );",
		 port, b.port);
	h_start(&d, conf);
	ck_assert_int_eq(sendto(fd, "alias", 5, 0, (struct sockaddr *)&to, sizeof(to)), 5);
	ck_assert_int_eq(poll(&p, 1, 5000), 1);
	ck_assert_int_eq(recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fromlen), 5);
	ck_assert_msg(from.sin_addr.s_addr == htonl(0x7f000002) && from.sin_port == to.sin_port,
		      "sent to 127.0.0.2:%u, the reply came from %s:%u", port, inet_ntoa(from.sin_addr),
		      ntohs(from.sin_port));
	close(fd);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* ---- in network namespaces: a host with two addresses on one interface ---- */


/* Sends a datagram from FD to ADDR:PORT; the echo must come back whole and
 * from ADDR:PORT, the address it was sent to. */
static void assert_reply_from(int fd, const char *addr, unsigned port)
{
	struct sockaddr_storage to, from;
	socklen_t tolen = h_sockaddr(addr, port, &to), fromlen = sizeof(from);
	char msg[64], buf[64], host[INET6_ADDRSTRLEN] = "?";
	int len = snprintf(msg, sizeof(msg), "to %s", addr);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	ck_assert_int_eq(sendto(fd, msg, (size_t)len, 0, (struct sockaddr *)&to, tolen), len);
	ck_assert_msg(poll(&p, 1, 5000) == 1, "no reply to a datagram sent to %s", addr);
	n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fromlen);
	ck_assert_int_eq(n, len);
	ck_assert(memcmp(buf, msg, (size_t)len) == 0);
	if (from.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&from)->sin_addr, host, sizeof(host));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&from)->sin6_addr, host, sizeof(host));
	ck_assert_msg(fromlen == tolen && memcmp(&from, &to, tolen) == 0,
		      "sent to %s:%u, the reply came from %s", addr, port, host);
}

/*
 * Rules on 0.0.0.0 and [::], on a host with two addresses of each family
 * on one interface: every reply leaves from the address its client sent
 * to, also when one client port talks to both; a connected client socket
 * (what NAT, VPN and game clients amount to) gets its replies.
 */
START_TEST(test_reply_from_the_address_sent_to)
{
	static const char *const v4[] = { "10.77.0.3", "10.77.0.1", "10.77.0.3" };
	static const char *const v6[] = { "fd77::3", "fd77::1", "fd77::3" };
	struct hdaemon d;
	struct h_backend b;
	struct sockaddr_storage ss;
	char conf[512], buf[16];
	int u4, u6, c4, c6;

	if (!h_netns_ready(&h_ns))
		return;
	h_netns_enter(h_ns.srv);
	h_backend_start(&b, H_UDP_ECHO, false);
	h_netns_enter(NULL);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"v4\"; proto = \"udp\"; listen = \"0.0.0.0:27001\"; target = \"127.0.0.1:%u\"; },\n"
		 "         { name = \"v6\"; proto = \"udp\"; listen = \"[::]:27001\"; target = \"127.0.0.1:%u\"; } );",
		 b.port, b.port);
	h_start_in(&d, conf, h_ns.srv);

	h_netns_enter(h_ns.cli);
	u4 = socket(AF_INET, SOCK_DGRAM, 0);
	u6 = socket(AF_INET6, SOCK_DGRAM, 0);
	for (int i = 0; i < 3; i++) {
		assert_reply_from(u4, v4[i], 27001);
		assert_reply_from(u6, v6[i], 27001);
	}
	c4 = socket(AF_INET, SOCK_DGRAM, 0);
	ck_assert_int_eq(connect(c4, (struct sockaddr *)&ss, h_sockaddr("10.77.0.3", 27001, &ss)), 0);
	c6 = socket(AF_INET6, SOCK_DGRAM, 0);
	ck_assert_int_eq(connect(c6, (struct sockaddr *)&ss, h_sockaddr("fd77::3", 27001, &ss)), 0);
	h_netns_enter(NULL);
	ck_assert_int_eq(send(c4, "nat", 3, 0), 3);
	ck_assert_int_eq(recv_within(c4, buf, sizeof(buf), 5000), 3);
	ck_assert_int_eq(send(c6, "vpn", 3, 0), 3);
	ck_assert_int_eq(recv_within(c6, buf, sizeof(buf), 5000), 3);
	/* One session per client and address it sent to. */
	ck_assert_int_eq(h_counter(&d, "v4", "udp", "sessions_created"), 3);
	ck_assert_int_eq(h_counter(&d, "v6", "udp", "sessions_created"), 3);
	ck_assert_int_eq(h_wait_counter(&d, "v4", "udp", "datagrams_to_client", 4, 5), 4);
	ck_assert_int_eq(h_counter(&d, "v6", "udp", "dropped_error"), 0);

	/* connections shows each session's local address. */
	{
		bool ok;
		char *r = h_ctl(d.sock, "connections v4 --json", &ok);

		ck_assert_msg(r && ok && strstr(r, "\"local\":\"10.77.0.3\"") && strstr(r, "\"local\":\"10.77.0.1\""),
			      "%s", r ? r : "(no reply)");
		free(r);
	}

	/* To the IPv4 broadcast and the IPv6 all-nodes group: answered from an
	 * address of the host's interface (each worker's socket gets a copy, so
	 * one reply or more). */
	h_netns_enter(h_ns.cli);
	{
		struct sockaddr_in6 all = { .sin6_family = AF_INET6, .sin6_port = htons(27001),
					    .sin6_scope_id = if_nametoindex(h_ns.cli_if) };
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		int one = 1;

		inet_pton(AF_INET6, "ff02::1", &all.sin6_addr);
		ck_assert_msg(sendto(u6, "group", 5, 0, (struct sockaddr *)&all, sizeof(all)) == 5, "sendto ff02::1%%%s (%u): %s", h_ns.cli_if, all.sin6_scope_id, strerror(errno));
		ck_assert_msg(recv_within(u6, buf, sizeof(buf), 5000) == 5,
			      "no reply to a datagram sent to ff02::1");
		setsockopt(u4, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one));
		h_sockaddr("10.77.0.255", 27001, &ss);
		ck_assert_int_eq(sendto(u4, "bcast", 5, 0, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)), 5);
		ck_assert_msg(poll(&(struct pollfd){ .fd = u4, .events = POLLIN }, 1, 5000) == 1,
			      "no reply to a datagram sent to 10.77.0.255");
		ck_assert_int_eq(recvfrom(u4, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fromlen), 5);
		ck_assert_uint_eq(((struct sockaddr_in *)&from)->sin_addr.s_addr, htonl(0x0a4d0001));
	}
	h_netns_enter(NULL);
	close(u4);
	close(u6);
	close(c4);
	close(c6);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/*
 * Out of descriptors, a new UDP client cannot have its session (a socket
 * to the target): its datagrams are dropped and counted, the line saying
 * why is written once, not once per datagram (a flood of new sources
 * would fill the journal), and clients are served again once descriptors
 * are back.
 */
START_TEST(test_udp_out_of_descriptors)
{
	enum { CLIENTS = 200 };
	struct hdaemon d;
	struct h_backend b, bt;
	unsigned port = h_free_port(SOCK_DGRAM, false), tport = h_free_port(SOCK_STREAM, false);
	int fds[64], n, fd;
	char conf[1024], buf[16];

	h_backend_start(&b, H_UDP_ECHO, false);
	h_backend_start(&bt, H_ECHO, false);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"u\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; },"
		 " { name = \"t\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 port, b.port, tport, bt.port);
	h_start_nofile(&d, conf, 40);
	n = h_exhaust_descriptors(&d, "t", tport, fds, 64);
	/* The last descriptor may still be free (the TCP listener rests
	 * after it failed once): one client may take it. */
	fd = udp_client(port);
	ck_assert_int_eq(send(fd, "x", 1, 0), 1);
	recv_within(fd, buf, sizeof(buf), 500);

	for (int i = 0; i < CLIENTS; i++) {
		int c = udp_client(port);

		ck_assert_int_eq(send(c, "y", 1, 0), 1);
		close(c);
	}
	ck_assert(h_wait_log(&d, "Too many open files; dropping new clients' datagrams", 10));
	/* (The control socket cannot take a client now: the counters are
	 * read once descriptors are back. The datagrams are all read well
	 * within the wait.) */
	usleep(2000000);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	close(fd);
	/* (A descriptor the daemon gives back meanwhile, a spare pipe, may
	 * serve a few: nearly all are dropped.) */
	ck_assert_msg(h_wait_counter(&d, "u", "udp", "dropped_error", CLIENTS, 5) >= CLIENTS * 9 / 10,
		      "dropped_error %lld, %d new clients", h_counter(&d, "u", "udp", "dropped_error"), CLIENTS);
	ck_assert_int_eq(h_log_count(&d, "udp u: cannot open a socket to the target"), 1);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "active", 0, 10), 0);
	{
		double deadline = h_now() + 10;
		bool served = false;

		fd = udp_client(port);
		while (!served && h_now() < deadline) {
			ck_assert_int_eq(send(fd, "z", 1, 0), 1);
			served = recv_within(fd, buf, sizeof(buf), 500) == 1 && buf[0] == 'z';
		}
		ck_assert_msg(served, "no UDP client served once descriptors were back");
		close(fd);
	}
	h_stop(&d);
	h_backend_stop(&b);
	h_backend_stop(&bt);
}
END_TEST

/*
 * The target answers with ICMP port unreachable (nothing listens yet): the
 * session's socket gets ECONNREFUSED. Every datagram is counted (sent or
 * dropped) and so are the errors, the client gets nothing back, the daemon
 * lives on, and once the target listens the same session is served.
 */
START_TEST(test_udp_target_refuses)
{
	enum { N = 20 };
	struct hdaemon d;
	struct h_backend b;
	unsigned port = h_free_port(SOCK_DGRAM, false), tport = h_free_port(SOCK_DGRAM, false);
	char conf[512], buf[16];
	bool served = false;
	double deadline;
	int fd;

	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"u\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 port, tport);
	h_start(&d, conf);
	fd = udp_client(port);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(send(fd, "r", 1, 0), 1);
		ck_assert_int_eq(recv_within(fd, buf, sizeof(buf), 50), -1);
	}
	{
		double until = h_now() + 10;
		long long seen = 0;

		while (h_now() < until &&
		       (seen = h_counter(&d, "u", "udp", "datagrams_to_target") +
			       h_counter(&d, "u", "udp", "dropped_error")) < N)
			usleep(50000);
		ck_assert_int_eq(seen, N);
		/* The ICMP errors came back and were counted (the kernel keeps
		 * one at a time: some, not N). */
		while (h_now() < until && h_counter(&d, "u", "udp", "target_errors") == 0)
			usleep(50000);
		ck_assert_int_gt(h_counter(&d, "u", "udp", "target_errors"), 0);
	}
	ck_assert_int_eq(h_counter(&d, "u", "udp", "datagrams_to_client"), 0);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "sessions_created"), 1);

	h_backend_start_on(&b, H_UDP_ECHO, false, tport);
	deadline = h_now() + 10;
	while (!served && h_now() < deadline) {
		ck_assert_int_eq(send(fd, "s", 1, 0), 1);
		served = recv_within(fd, buf, sizeof(buf), 200) == 1 && buf[0] == 's';
	}
	ck_assert_msg(served, "the session was not served once the target listened");
	ck_assert_int_eq(h_counter(&d, "u", "udp", "sessions_created"), 1);
	close(fd);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/*
 * The target's link is slower than the client sends (an upload over a
 * slow line; here a token bucket of 1 Mbit/s with a deep queue on the
 * daemon's way out): the session socket's buffer fills and sends fail
 * with EAGAIN. Every datagram is accounted for, sent or dropped and
 * counted; the daemon keeps serving and the session answers once the
 * line drains. (ENOBUFS from a full queue is another matter: Linux hides
 * it from UDP senders without IP_RECVERR, and counts it in
 * /proc/net/snmp's SndbufErrors.)
 */
START_TEST(test_udp_target_link_congested)
{
	enum { N = 3000, SIZE = 1200 };
	struct hdaemon d;
	struct h_backend b;
	struct sockaddr_storage ss;
	char conf[512], *out = NULL, buf[SIZE];
	long long to_target, dropped;
	bool answered = false;
	double deadline;
	int fd;

	if (!h_netns_ready(&h_ns))
		return;
	h_netns_enter(h_ns.cli);
	h_backend_start_at(&b, H_UDP_ECHO, "10.77.0.2", 0);
	h_netns_enter(NULL);
	ck_assert_int_eq(h_sh(&out, "tc -n %s qdisc add dev %s root tbf rate 1mbit burst 4kb limit 20mb",
			      h_ns.srv, h_ns.srv_if),
			 0);
	free(out);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"u\"; proto = \"udp\"; listen = \"127.0.0.1:27002\"; target = \"10.77.0.2:%u\"; } );",
		 b.port);
	h_start_in(&d, conf, h_ns.srv);

	h_netns_enter(h_ns.srv);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	h_netns_enter(NULL);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&ss, h_sockaddr("127.0.0.1", 27002, &ss)), 0);
	memset(buf, 'c', sizeof(buf));
	for (int i = 0; i < N; i++) {
		/* Loopback to the daemon is fast; pace a little so that its
		 * listening socket's buffer is not what overflows. */
		ck_assert_int_eq(send(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
		if (i % 50 == 49)
			usleep(2000);
	}
	/* All read by the daemon: each sent or dropped. */
	deadline = h_now() + 20;
	do {
		to_target = h_counter(&d, "u", "udp", "datagrams_to_target");
		dropped = h_counter(&d, "u", "udp", "dropped_error");
		if (to_target + dropped >= N)
			break;
		usleep(100000);
	} while (h_now() < deadline);
	fprintf(stderr, "congested target link: %lld of %d sent, %lld dropped as the socket's buffer was full\n",
		to_target, N, dropped);
	ck_assert_int_eq(to_target + dropped, N);
	ck_assert_int_gt(dropped, 0);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "sessions_created"), 1);

	/* The line drains (about 3.6 MB at 1 Mbit/s is too long to wait:
	 * lift the limit), and the session answers. */
	ck_assert_int_eq(h_sh(&out, "tc -n %s qdisc del dev %s root", h_ns.srv, h_ns.srv_if), 0);
	free(out);
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	deadline = h_now() + 10;
	while (!answered && h_now() < deadline) {
		ck_assert_int_eq(send(fd, "late", 4, 0), 4);
		while (recv_within(fd, buf, sizeof(buf), 200) > 0)
			if (memcmp(buf, "late", 4) == 0)
				answered = true;
	}
	ck_assert_msg(answered, "the session did not answer once the line drained");
	close(fd);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("udp");
	TCase *tc = tcase_create("udp");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_datagram_sizes_pass_whole);
	tcase_add_test(tc, test_bursts_keep_datagram_boundaries);
	tcase_add_test(tc, test_coalesced_client_runs_split_again);
	tcase_add_test(tc, test_many_clients_get_their_own_replies);
	tcase_add_test(tc, test_session_expiry);
	tcase_add_test(tc, test_active_session_kept);
	tcase_add_test(tc, test_max_udp_sessions_drops_new_clients);
	tcase_add_test(tc, test_tcp_and_udp_rule);
	tcase_add_test(tc, test_ipv6_client);
	tcase_add_test(tc, test_reply_from_loopback_alias);
	tcase_add_test(tc, test_udp_out_of_descriptors);
	tcase_add_test(tc, test_udp_target_refuses);
	suite_add_tcase(s, tc);

	tc = h_netns_tcase();
	tcase_add_test(tc, test_reply_from_the_address_sent_to);
	tcase_add_test(tc, test_udp_target_link_congested);
	suite_add_tcase(s, tc);
	return check_run(s);
}
