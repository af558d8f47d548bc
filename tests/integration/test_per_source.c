/*
 * Per-source limits through the real daemon. Loopback gives many source
 * addresses (a client binds 127.0.0.2, 127.0.0.3, ...; a spoofed flood
 * sends from 127.1.x.y with IP_PKTINFO); IPv6 prefixes need addresses in
 * network namespaces of the test's own. Each limit, TCP and UDP: the
 * limited source is refused, the others are not.
 */
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

/* ---- clients from a chosen source address ---- */

/* A connected socket (TCP or UDP) from SRC (port 0: any) to DST:PORT. */
static int sock_from(int type, const char *src, const char *dst, unsigned port)
{
	struct sockaddr_storage from, to;
	socklen_t flen = h_sockaddr(src, 0, &from), tlen = h_sockaddr(dst, port, &to);
	int fd = socket(from.ss_family, type, 0), big = 1 << 20;

	ck_assert_int_ge(fd, 0);
	if (type == SOCK_DGRAM)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	ck_assert_msg(bind(fd, (struct sockaddr *)&from, flen) == 0, "bind %s: %s", src, strerror(errno));
	/* A connection the daemon resets at once may be reset before connect()
	 * returns, when the client thread runs late (seen under TSan): that
	 * socket reads as reset, which is what the callers look for. */
	ck_assert_msg(connect(fd, (struct sockaddr *)&to, tlen) == 0 || (type == SOCK_STREAM && errno == ECONNRESET),
		      "connect %s:%u: %s", dst, port, strerror(errno));
	return fd;
}

static int tcp_from(const char *src, unsigned port)
{
	return sock_from(SOCK_STREAM, src, strchr(src, ':') ? "::1" : "127.0.0.1", port);
}

static int udp_from(const char *src, unsigned port)
{
	return sock_from(SOCK_DGRAM, src, strchr(src, ':') ? "::1" : "127.0.0.1", port);
}

/* One byte through an echo within MS. */
static bool echoes(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	if (send(fd, "x", 1, MSG_NOSIGNAL) != 1)
		return false;
	return poll(&p, 1, ms) == 1 && read(fd, &c, 1) == 1 && c == 'x';
}

/* The daemon reset the connection (or closed it) within MS. */
static bool reset_within(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	return poll(&p, 1, ms) == 1 && read(fd, &c, 1) <= 0;
}

/* N TCP connections from SRC to PORT in FDS, each checked to echo. */
static void hold(int *fds, int n, const char *src, unsigned port)
{
	for (int i = 0; i < n; i++) {
		fds[i] = tcp_from(src, port);
		ck_assert(echoes(fds[i], 5000));
	}
}

/* Sends MSG; true if an answer of the same length comes within MS. */
static bool udp_answered(int fd, const char *msg, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char buf[256];
	size_t len = strlen(msg);

	if (send(fd, msg, len, 0) != (ssize_t)len)
		return false;
	return poll(&p, 1, ms) == 1 && recv(fd, buf, sizeof(buf), 0) == (ssize_t)len;
}

/* Datagrams waiting on FD, read until MS pass without one. */
static int udp_drain(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char buf[256];
	int n = 0;

	while (poll(&p, 1, ms) == 1 && recv(fd, buf, sizeof(buf), 0) >= 0)
		n++;
	return n;
}

/* status: rule RULE's PROTO.limited.KEY */
static long long limited(struct hdaemon *d, const char *rule, const char *proto, const char *key)
{
	json_t *doc = h_status(d), *r;
	long long v = -1;
	size_t i;

	json_array_foreach(json_object_get(doc, "rules"), i, r)
		if (strcmp(json_string_value(json_object_get(r, "name")), rule) == 0)
			v = json_integer_value(json_object_get(
				json_object_get(json_object_get(r, proto), "limited"), key));
	json_decref(doc);
	return v;
}

static long long wait_limited(struct hdaemon *d, const char *rule, const char *proto,
			      const char *key, long long want, double seconds)
{
	double end = h_now() + seconds;
	long long v;

	while ((v = limited(d, rule, proto, key)) != want && h_now() < end)
		usleep(20000);
	return v;
}

/* `sources RULE --json` parsed. */
static json_t *sources_json(struct hdaemon *d, const char *rule)
{
	char req[128], *r;
	json_t *doc;
	bool ok;

	snprintf(req, sizeof(req), "sources %s --json", rule);
	r = h_ctl(d->sock, req, &ok);
	ck_assert_msg(r && ok, "%s: %s", req, r ? r : "(no reply)");
	doc = json_loads(r, 0, NULL);
	ck_assert_msg(doc != NULL, "not JSON: %s", r);
	free(r);
	return doc;
}

/* The entry of SOURCE in a `sources --json` reply, or NULL. */
static json_t *source_entry(json_t *doc, const char *source)
{
	json_t *e;
	size_t i;

	json_array_foreach(json_object_get(doc, "sources"), i, e)
		if (strcmp(json_string_value(json_object_get(e, "source")), source) == 0)
			return e;
	return NULL;
}

/* ---- UDP backends: echo only some datagrams, or answer each many times ---- */

struct ubackend {
	int fd;
	unsigned port;
	int copies;         /* replies per datagram */
	const char *prefix; /* answer only datagrams starting so; NULL: all */
	pthread_t thread;
	atomic_bool stop;
	atomic_llong received;
};

static void *ubackend_main(void *p)
{
	struct ubackend *b = p;
	char buf[2048];

	while (!atomic_load(&b->stop)) {
		struct pollfd pf = { .fd = b->fd, .events = POLLIN };
		struct sockaddr_storage from;
		socklen_t flen = sizeof(from);
		ssize_t n;

		if (poll(&pf, 1, 50) != 1)
			continue;
		n = recvfrom(b->fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
		if (n < 0)
			continue;
		atomic_fetch_add(&b->received, 1);
		if (b->prefix && strncmp(buf, b->prefix, strlen(b->prefix)) != 0)
			continue;
		for (int i = 0; i < b->copies; i++)
			sendto(b->fd, buf, (size_t)n, 0, (struct sockaddr *)&from, flen);
	}
	return NULL;
}

static void ubackend_start(struct ubackend *b, int copies, const char *prefix)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int big = 4 << 20;

	memset(b, 0, sizeof(*b));
	b->copies = copies;
	b->prefix = prefix;
	b->port = h_free_port(SOCK_DGRAM, false);
	len = h_sockaddr("127.0.0.1", b->port, &ss);
	b->fd = socket(AF_INET, SOCK_DGRAM, 0);
	setsockopt(b->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	ck_assert_int_eq(bind(b->fd, (struct sockaddr *)&ss, len), 0);
	ck_assert_int_eq(pthread_create(&b->thread, NULL, ubackend_main, b), 0);
}

static void ubackend_stop(struct ubackend *b)
{
	atomic_store(&b->stop, true);
	pthread_join(b->thread, NULL);
	close(b->fd);
}

/* One rule RULE of PROTO from 127.0.0.1:PORT to 127.0.0.1:TARGET, with SETTINGS. */
static unsigned start_rule(struct hdaemon *d, const char *proto, unsigned target,
			   const char *settings)
{
	unsigned port = h_free_port(strcmp(proto, "udp") == 0 ? SOCK_DGRAM : SOCK_STREAM, false);
	char conf[1024];

	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"r\"; proto = \"%s\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; %s } );",
		 proto, port, target, settings);
	h_start(d, conf);
	return port;
}

/* ---- TCP ---- */

START_TEST(test_tcp_max_connections_per_source)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port;
	int a[2], x, other, again;

	h_backend_start(&b, H_ECHO, false);
	port = start_rule(&d, "tcp", b.port, "per_source: { max_connections = 2; };");
	hold(a, 2, "127.0.0.2", port);
	/* The third from the same address is reset; another address is served. */
	x = tcp_from("127.0.0.2", port);
	ck_assert_msg(reset_within(x, 5000), "a third connection from 127.0.0.2 was not reset");
	other = tcp_from("127.0.0.3", port);
	ck_assert(echoes(other, 5000));
	ck_assert(echoes(a[0], 5000)); /* the limited source's own connections carry on */
	ck_assert_int_eq(wait_limited(&d, "r", "tcp", "connections", 1, 5), 1);
	ck_assert_int_eq(h_counter(&d, "r", "tcp", "accepted"), 3);
	ck_assert(h_log_contains(&d, "tcp r: limited 127.0.0.2 port "));
	ck_assert(h_log_contains(&d, "source 127.0.0.2 is at per_source max_connections (2)"));
	/* One ends: the source may open one again. */
	close(a[1]);
	ck_assert_int_eq(h_wait_counter(&d, "r", "tcp", "active", 2, 5), 2);
	again = tcp_from("127.0.0.2", port);
	ck_assert(echoes(again, 5000));
	close(x);
	close(a[0]);
	close(other);
	close(again);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

START_TEST(test_tcp_new_per_minute)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port;
	int x, other;

	h_backend_start(&b, H_ECHO, false);
	port = start_rule(&d, "tcp", b.port, "per_source: { new_per_minute = 3; };");
	for (int i = 0; i < 3; i++) {
		int fd = tcp_from("127.0.0.2", port);

		ck_assert(echoes(fd, 5000));
		close(fd);
	}
	x = tcp_from("127.0.0.2", port);
	ck_assert_msg(reset_within(x, 5000), "a fourth connection within a minute was not reset");
	other = tcp_from("127.0.0.3", port);
	ck_assert(echoes(other, 5000));
	ck_assert_int_eq(wait_limited(&d, "r", "tcp", "rate", 1, 5), 1);
	ck_assert_int_eq(limited(&d, "r", "tcp", "connections"), 0);
	ck_assert(h_log_contains(&d, "source 127.0.0.2 is at per_source new_per_minute (3)"));
	close(x);
	close(other);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* A flood of refusals from one source writes one line, not one per refusal. */
START_TEST(test_limited_log_lines_are_rate_limited)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port;
	int held, lines = 0;
	char *out = NULL;

	h_backend_start(&b, H_ECHO, false);
	port = start_rule(&d, "tcp", b.port, "per_source: { max_connections = 1; };");
	held = tcp_from("127.0.0.2", port);
	ck_assert(echoes(held, 5000));
	for (int i = 0; i < 50; i++) {
		int fd = tcp_from("127.0.0.2", port);

		ck_assert(reset_within(fd, 5000));
		close(fd);
	}
	ck_assert_int_eq(wait_limited(&d, "r", "tcp", "connections", 50, 5), 50);
	ck_assert_int_eq(h_sh(&out, "grep -c 'at per_source max_connections' %s", d.log), 0);
	lines = atoi(out);
	free(out);
	ck_assert_int_eq(lines, 1);
	close(held);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* ---- UDP ---- */

START_TEST(test_udp_sessions_per_source)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port;
	int a, c, x, other;

	h_backend_start(&b, H_UDP_ECHO, false);
	port = start_rule(&d, "udp", b.port, "per_source: { udp_sessions = 2; };");
	a = udp_from("127.0.0.2", port);
	c = udp_from("127.0.0.2", port);
	x = udp_from("127.0.0.2", port);
	other = udp_from("127.0.0.3", port);
	ck_assert(udp_answered(a, "a", 5000));
	ck_assert(udp_answered(c, "c", 5000));
	/* A third port of the same address is a third session: dropped. */
	ck_assert(!udp_answered(x, "x", 500));
	ck_assert(udp_answered(other, "o", 5000));
	ck_assert(udp_answered(a, "a", 5000)); /* its sessions carry on */
	ck_assert_int_eq(wait_limited(&d, "r", "udp", "sessions", 1, 5), 1);
	ck_assert_int_eq(h_counter(&d, "r", "udp", "active"), 3);
	ck_assert(h_log_contains(&d, "udp r: limited 127.0.0.2 port "));
	close(a);
	close(c);
	close(x);
	close(other);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

START_TEST(test_udp_datagrams_per_second)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port;
	int a, other, got;
	long long dropped;

	h_backend_start(&b, H_UDP_ECHO, false);
	port = start_rule(&d, "udp", b.port, "per_source: { udp_datagrams_per_second = 20; };");
	a = udp_from("127.0.0.2", port);
	other = udp_from("127.0.0.3", port);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(send(a, "burst", 5, 0), 5);
	got = udp_drain(a, 300);
	/* A second's worth passes (the sliding estimate may let one more by). */
	ck_assert_msg(got >= 18 && got <= 22, "%d of 100 datagrams came back", got);
	for (int i = 0; i < 10; i++)
		ck_assert(udp_answered(other, "other", 5000));
	dropped = limited(&d, "r", "udp", "datagrams");
	ck_assert_msg(dropped >= 78 && dropped <= 82, "%lld dropped", dropped);
	ck_assert(h_log_contains(&d, "is at per_source udp_datagrams_per_second (20)"));
	close(a);
	close(other);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* The same limit when the client's datagrams come coalesced (it sends with
 * UDP_SEGMENT, the listener has UDP_GRO): counted one by one. */
START_TEST(test_udp_datagrams_per_second_coalesced)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port;
	char buf[50 * 5];
	int a, got;
	long long dropped;

	h_backend_start(&b, H_UDP_ECHO, false);
	port = start_rule(&d, "udp", b.port, "per_source: { udp_datagrams_per_second = 20; };");
	a = udp_from("127.0.0.2", port);
	memset(buf, 'g', sizeof(buf));
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(h_udp_send_gso(a, buf, sizeof(buf), 5), (ssize_t)sizeof(buf));
	got = udp_drain(a, 300);
	ck_assert_msg(got >= 18 && got <= 22, "%d of 100 datagrams came back", got);
	dropped = limited(&d, "r", "udp", "datagrams");
	ck_assert_msg(dropped >= 78 && dropped <= 82, "%lld dropped", dropped);
	ck_assert_int_eq(h_counter(&d, "r", "udp", "datagrams_to_target"), got);
	/* Both came in coalesced (the first cut to what the source may send),
	 * not split by the kernel before the daemon saw them. */
	ck_assert_double_ge(h_metric(&d, "portfwd_udp_gro_receives_total"), 2);
	close(a);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* A target that answers each datagram ten times: a source gets no more
 * replies a second than udp_datagrams_per_second, however much the target
 * sends (the guard against reflection with a spoofed source). */
START_TEST(test_udp_reflection_guard)
{
	struct hdaemon d;
	struct ubackend b;
	unsigned port;
	int a, got;

	ubackend_start(&b, 10, NULL);
	port = start_rule(&d, "udp", b.port, "per_source: { udp_datagrams_per_second = 20; };");
	a = udp_from("127.0.0.2", port);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(send(a, "amplify me", 10, 0), 10);
	got = udp_drain(a, 500);
	ck_assert_msg(got >= 18 && got <= 22, "%d of 50 replies reached the source", got);
	ck_assert_int_eq(atomic_load(&b.received), 5);
	ck_assert_int_ge(limited(&d, "r", "udp", "datagrams"), 28);
	ck_assert(h_log_contains(&d, "udp r: limited replies to 127.0.0.2 port "));
	ck_assert(h_log_contains(&d, "the reflection guard"));
	close(a);
	h_stop(&d);
	ubackend_stop(&b);
}
END_TEST

/* A session the target never answered ends after udp_unreplied_timeout;
 * an answered one lives on to udp_idle_timeout. */
START_TEST(test_udp_unreplied_timeout)
{
	struct hdaemon d;
	struct ubackend b;
	unsigned port;
	int real, spoof;
	char *r;
	bool ok;

	ubackend_start(&b, 1, "real");
	port = start_rule(&d, "udp", b.port, "udp_unreplied_timeout = 0.3; udp_idle_timeout = 60;");
	real = udp_from("127.0.0.2", port);
	spoof = udp_from("127.0.0.3", port);
	ck_assert(udp_answered(real, "real 1", 5000));
	ck_assert_int_eq(send(spoof, "spoof", 5, 0), 5);
	ck_assert_int_eq(h_wait_counter(&d, "r", "udp", "sessions_created", 2, 5), 2);
	ck_assert_int_eq(h_wait_counter(&d, "r", "udp", "active", 1, 5), 1);
	ck_assert_int_eq(h_counter(&d, "r", "udp", "sessions_expired"), 1);
	usleep(600000);
	ck_assert_int_eq(h_counter(&d, "r", "udp", "active"), 1);
	r = h_ctl(d.sock, "connections r --json", &ok);
	ck_assert_msg(r && ok && strstr(r, "\"client\":\"127.0.0.2:") && strstr(r, "\"answered\":true"),
		      "%s", r ? r : "(no reply)");
	free(r);
	ck_assert(udp_answered(real, "real 2", 5000));
	ck_assert_int_eq(h_counter(&d, "r", "udp", "sessions_created"), 2);
	ck_assert(h_log_contains(&d, "unanswered for 0.3s"));
	close(real);
	close(spoof);
	h_stop(&d);
	ubackend_stop(&b);
}
END_TEST

/*
 * At max_udp_sessions, a new client takes the place of the oldest session
 * that the target never answered (of the worker that reads its datagram);
 * an answered session is never ended for it. Rule "full" has only answered
 * sessions; rule "room" has unanswered ones too.
 */
START_TEST(test_udp_unanswered_make_room)
{
	struct hdaemon d;
	struct ubackend b;
	unsigned full = h_free_port(SOCK_DGRAM, false), room = h_free_port(SOCK_DGRAM, false);
	int real[2], kept, silent[3], tries;
	char conf[1024];

	ubackend_start(&b, 1, "real");
	snprintf(conf, sizeof(conf),
		 "defaults: { udp_unreplied_timeout = 60; };\n"
		 "rules: ( { name = \"full\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; max_udp_sessions = 2; },\n"
		 "         { name = \"room\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; max_udp_sessions = 4; } );",
		 full, b.port, room, b.port);
	h_start(&d, conf);
	for (int i = 0; i < 2; i++) {
		real[i] = udp_from("127.0.0.2", full);
		ck_assert(udp_answered(real[i], "real", 5000));
	}
	/* Newcomers, from ten ports (so from both workers, if there are two). */
	for (int i = 0; i < 10; i++) {
		int fd = udp_from("127.0.0.3", full);

		ck_assert(!udp_answered(fd, "real newcomer", 200));
		close(fd);
	}
	ck_assert_int_eq(h_counter(&d, "full", "udp", "sessions_evicted"), 0);
	ck_assert_int_eq(h_counter(&d, "full", "udp", "dropped_limit"), 10);
	for (int i = 0; i < 2; i++)
		ck_assert(udp_answered(real[i], "real", 5000));

	kept = udp_from("127.0.0.2", room);
	ck_assert(udp_answered(kept, "real", 5000));
	for (int i = 0; i < 3; i++) {
		silent[i] = udp_from("127.0.0.4", room);
		ck_assert_int_eq(send(silent[i], "silent", 6, 0), 6);
	}
	ck_assert_int_eq(h_wait_counter(&d, "room", "udp", "active", 4, 5), 4);
	for (tries = 1; tries <= 20; tries++) {
		int fd = udp_from("127.0.0.5", room);
		bool ok = udp_answered(fd, "real newcomer", 300);

		close(fd);
		if (ok)
			break;
	}
	ck_assert_msg(tries <= 20, "no newcomer got the place of an unanswered session");
	ck_assert_int_eq(h_counter(&d, "room", "udp", "sessions_evicted"), 1);
	ck_assert_int_eq(h_counter(&d, "room", "udp", "active"), 4);
	ck_assert(udp_answered(kept, "real", 5000));
	ck_assert(h_log_contains(&d, "new clients take the places of sessions their target never answered"));
	close(real[0]);
	close(real[1]);
	close(kept);
	for (int i = 0; i < 3; i++)
		close(silent[i]);
	h_stop(&d);
	ubackend_stop(&b);
}
END_TEST

/* ---- a flood of spoofed sources ---- */

/* Sends N datagrams to 127.0.0.1:PORT from FD, the Kth from 127.1.0.0 + FIRST + K
 * (IP_PKTINFO chooses the source address: any of 127/8 is this host's). */
static void flood(int fd, unsigned port, uint32_t first, int n)
{
	enum { BATCH = 64 };
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(0x7f000001) };
	struct mmsghdr msgs[BATCH];
	struct iovec iov = { .iov_base = "spoofed", .iov_len = 7 };
	union {
		char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
		struct cmsghdr align;
	} ctl[BATCH];

	for (int done = 0; done < n;) {
		int k = n - done < BATCH ? n - done : BATCH, sent;

		for (int i = 0; i < k; i++) {
			struct cmsghdr *c = (struct cmsghdr *)ctl[i].buf;
			struct in_pktinfo pi = { 0 };

			pi.ipi_spec_dst.s_addr = htonl(0x7f010000u + first + (uint32_t)(done + i));
			memset(&msgs[i], 0, sizeof(msgs[i]));
			msgs[i].msg_hdr.msg_name = &to;
			msgs[i].msg_hdr.msg_namelen = sizeof(to);
			msgs[i].msg_hdr.msg_iov = &iov;
			msgs[i].msg_hdr.msg_iovlen = 1;
			msgs[i].msg_hdr.msg_control = ctl[i].buf;
			msgs[i].msg_hdr.msg_controllen = sizeof(ctl[i].buf);
			c->cmsg_level = IPPROTO_IP;
			c->cmsg_type = IP_PKTINFO;
			c->cmsg_len = CMSG_LEN(sizeof(pi));
			memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		}
		sent = sendmmsg(fd, msgs, (unsigned)k, 0);
		ck_assert_msg(sent > 0, "sendmmsg: %s", strerror(errno));
		done += sent;
	}
}

/* What the second half of the flood may add to the daemon's RSS: a few
 * KiB in fact; the sanitizers' allocators keep freed memory for a while. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FLOOD_GROWTH_KIB 8192
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define FLOOD_GROWTH_KIB 8192
#endif
#endif
#ifndef FLOOD_GROWTH_KIB
#define FLOOD_GROWTH_KIB 1024
#endif

/* A datagram from FD answered within 1 s, trying up to 5 times (a datagram
 * may be lost in a flood); returns the tries it took, 0 if none worked. */
static int answered_in_flood(int fd, const char *msg)
{
	for (int tries = 1; tries <= 5; tries++) {
		if (udp_answered(fd, msg, 1000))
			return tries;
	}
	return 0;
}

/*
 * 100,000 spoofed sources (by hand, more: PORTFWD_FLOOD_SOURCES=1000000; and
 * PORTFWD_FLOOD_TABLE, PORTFWD_FLOOD_SESSIONS for max_tracked_sources and
 * max_udp_sessions, 4096 and 256 here), each sending one datagram that the
 * target never answers: at most
 * max_udp_sessions sessions at any time, ended after udp_unreplied_timeout
 * or for a newcomer; the table stays at its size; the daemon's memory
 * stops growing; a client with an answered session keeps it throughout,
 * and new real clients get in during the flood.
 */
START_TEST(test_udp_spoofed_flood)
{
	const char *env = getenv("PORTFWD_FLOOD_SOURCES");
	const char *table = getenv("PORTFWD_FLOOD_TABLE"), *sessions = getenv("PORTFWD_FLOOD_SESSIONS");
	int total = env && atoi(env) > 0 ? atoi(env) : 100000, burst = 1000, newcomers = 0;
	int cap = table && atoi(table) > 0 ? atoi(table) : 4096;
	int max = sessions && atoi(sessions) > 0 ? atoi(sessions) : 256;
	char extra[64], settings[256];
	struct hdaemon d;
	struct ubackend b;
	unsigned port;
	int real, spoofer, worst = 1;
	long rss_start, rss_half = 0, rss_end;
	long long cpu0;
	double t0;
	json_t *doc;

	ubackend_start(&b, 1, "real");
	snprintf(extra, sizeof(extra), "max_tracked_sources = %d;", cap);
	snprintf(settings, sizeof(settings),
		 "max_udp_sessions = %d; udp_unreplied_timeout = 1; per_source: { udp_sessions = 4; };", max);
	h_daemon_extra = extra;
	port = start_rule(&d, "udp", b.port, settings);
	h_daemon_extra = NULL;
	real = udp_from("127.0.0.2", port);
	ck_assert(udp_answered(real, "real", 5000));
	spoofer = socket(AF_INET, SOCK_DGRAM, 0);
	rss_start = h_rss_kib(d.pid);
	cpu0 = h_cpu_ticks(d.pid);
	t0 = h_now();
	for (int sent = 0; sent < total; sent += burst) {
		int tries;

		flood(spoofer, port, (uint32_t)sent, burst);
		/* The real client's answer also paces the flood to what the
		 * daemon takes, so the socket's queue does not simply overflow. */
		tries = answered_in_flood(real, "real");
		ck_assert_msg(tries > 0, "the answered client lost its service after %d spoofed sources", sent);
		worst = tries > worst ? tries : worst;
		if (sent % (10 * burst) == 0) {
			char src[32];
			int fd;

			snprintf(src, sizeof(src), "127.0.3.%d", 1 + newcomers % 250);
			fd = udp_from(src, port);
			ck_assert_msg(answered_in_flood(fd, "real newcomer"),
				      "a new client from %s got no answer during the flood", src);
			close(fd);
			newcomers++;
		}
		if (!rss_half && sent >= total / 2)
			rss_half = h_rss_kib(d.pid);
		ck_assert_int_le(h_counter(&d, "r", "udp", "active"), max);
	}
	rss_end = h_rss_kib(d.pid);
	fprintf(stderr, "flood: %d spoofed sources in %.1fs (daemon CPU %.1fs); RSS %ld KiB at the start, %ld at half, %ld at the end; worst %d tries for the answered client; %d newcomers served\n",
		total, h_now() - t0, (double)(h_cpu_ticks(d.pid) - cpu0) / (double)sysconf(_SC_CLK_TCK),
		rss_start, rss_half, rss_end, worst, newcomers);
	doc = sources_json(&d, "r");
	ck_assert_int_le(json_integer_value(json_object_get(json_object_get(doc, "table"), "used")), cap);
	ck_assert_int_gt(json_integer_value(json_object_get(json_object_get(doc, "table"), "evicted")), 0);
	ck_assert_ptr_nonnull(source_entry(doc, "127.0.0.2"));
	json_decref(doc);
	ck_assert_int_gt(h_counter(&d, "r", "udp", "sessions_evicted") +
				 h_counter(&d, "r", "udp", "sessions_expired"),
			 total / 2);
	/* Bounded: the second half of the flood adds (next to) nothing. */
	ck_assert_msg(rss_end - rss_half < FLOOD_GROWTH_KIB,
		      "RSS grew by %ld KiB in the second half of the flood", rss_end - rss_half);
	/* The answered session is the one it had before the flood. */
	{
		char *r;
		bool ok;

		r = h_ctl(d.sock, "connections r --json", &ok);
		ck_assert_msg(r && ok && strstr(r, "\"client\":\"127.0.0.2:") && strstr(r, "\"answered\":true"),
			      "%s", r ? r : "(no reply)");
		free(r);
	}
	/* After it: the unanswered sessions go within udp_unreplied_timeout;
	 * the answered ones (the real client's, the newcomers') stay. */
	ck_assert_int_eq(h_wait_counter(&d, "r", "udp", "active", 1 + newcomers, 10), 1 + newcomers);
	close(real);
	close(spoofer);
	h_stop(&d);
	ubackend_stop(&b);
}
END_TEST

/* ---- portfwdctl sources, status, metrics ---- */

START_TEST(test_sources_command)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port;
	int two[3], three, x;
	json_t *doc, *e;
	char *r;
	bool ok;

	h_backend_start(&b, H_ECHO, false);
	port = start_rule(&d, "tcp", b.port, "per_source: { max_connections = 3; };");
	hold(two, 3, "127.0.0.2", port);
	hold(&three, 1, "127.0.0.3", port);
	x = tcp_from("127.0.0.2", port);
	ck_assert(reset_within(x, 5000));
	ck_assert_int_eq(wait_limited(&d, "r", "tcp", "connections", 1, 5), 1);

	doc = sources_json(&d, "r");
	ck_assert(json_is_true(json_object_get(doc, "tracked")));
	ck_assert_int_eq(json_integer_value(json_object_get(doc, "sources_tracked")), 2);
	e = json_array_get(json_object_get(doc, "sources"), 0); /* the busiest first */
	ck_assert_str_eq(json_string_value(json_object_get(e, "source")), "127.0.0.2");
	ck_assert_int_eq(json_integer_value(json_object_get(e, "connections")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(e, "limited")), 1);
	ck_assert(json_real_value(json_object_get(e, "new_per_minute")) >= 3.0);
	e = source_entry(doc, "127.0.0.3");
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(json_integer_value(json_object_get(e, "connections")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(doc, "per_source"), "max_connections")), 3);
	json_decref(doc);

	r = h_ctl(d.sock, "sources r", &ok);
	ck_assert_msg(r && ok && strstr(r, "rule r: 2 sources tracked") && strstr(r, "SOURCE") &&
			      strstr(r, "127.0.0.2 "),
		      "%s", r ? r : "(no reply)");
	free(r);
	r = h_ctl(d.sock, "sources nosuch", &ok);
	ck_assert_msg(r && !ok && strstr(r, "no rule \"nosuch\""), "%s", r ? r : "(no reply)");
	free(r);
	r = h_ctl(d.sock, "status", &ok);
	ck_assert_msg(r && ok && strstr(r, "tcp  limited per source: 1 (1 at max_connections"), "%s", r);
	free(r);
	r = h_ctl(d.sock, "rules", &ok);
	ck_assert_msg(r && ok && strstr(r, "per_source max_connections 3, new_per_minute 0"), "%s", r);
	free(r);
	r = h_ctl(d.sock, "metrics", &ok);
	ck_assert_msg(r && ok &&
			      strstr(r, "portfwd_tcp_connections_limited_total{rule=\"r\",limit=\"max_connections\"} 1\n") &&
			      strstr(r, "portfwd_sources_capacity 65536\n") &&
			      strstr(r, "portfwd_sources_full_total 0\n"),
		      "%s", r);
	free(r);
	/* The connections end: the sources are idle, still known. */
	for (int i = 0; i < 3; i++)
		close(two[i]);
	close(three);
	close(x);
	ck_assert_int_eq(h_wait_counter(&d, "r", "tcp", "active", 0, 5), 0);
	doc = sources_json(&d, "r");
	e = source_entry(doc, "127.0.0.2");
	ck_assert_int_eq(json_integer_value(json_object_get(e, "connections")), 0);
	json_decref(doc);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* A rule without limits tracks nothing, and says so. */
START_TEST(test_sources_untracked_rule)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port;
	int fd;
	char *r;
	bool ok;

	h_backend_start(&b, H_ECHO, false);
	port = start_rule(&d, "tcp", b.port, "");
	fd = tcp_from("127.0.0.2", port);
	ck_assert(echoes(fd, 5000));
	r = h_ctl(d.sock, "sources r", &ok);
	ck_assert_msg(r && ok && strstr(r, "rule r has no per_source limits: its sources are not tracked") &&
			      strstr(r, "0 sources tracked"),
		      "%s", r ? r : "(no reply)");
	free(r);
	close(fd);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* A reload changes the limits; the counts of the sources go on. */
START_TEST(test_reload_changes_limits)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port;
	int a, c, x;
	char conf[1024], *r;
	bool ok;

	h_backend_start(&b, H_ECHO, false);
	port = start_rule(&d, "tcp", b.port, "per_source: { max_connections = 1; };");
	a = tcp_from("127.0.0.2", port);
	ck_assert(echoes(a, 5000));
	x = tcp_from("127.0.0.2", port);
	ck_assert(reset_within(x, 5000));
	close(x);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"r\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; per_source: { max_connections = 2; }; } );",
		 port, b.port);
	h_write_conf(&d, conf);
	r = h_ctl(d.sock, "reload", &ok);
	ck_assert_msg(r && ok, "%s", r ? r : "(no reply)");
	free(r);
	/* The connection from before counts: one more, not two. */
	c = tcp_from("127.0.0.2", port);
	ck_assert(echoes(c, 5000));
	x = tcp_from("127.0.0.2", port);
	ck_assert(reset_within(x, 5000));
	ck_assert_int_eq(wait_limited(&d, "r", "tcp", "connections", 2, 5), 2);
	close(a);
	close(c);
	close(x);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* ---- IPv6: a source is a prefix ---- */

/*
 * In the namespaces: the client has fd77::2 and fd77::5 (one /64) and
 * fd77:0:0:1::2 (another /64, which the server side has too). With
 * ipv6_prefix 64 the first two are one source.
 */
START_TEST(test_ipv6_prefix_is_one_source)
{
	struct hdaemon d;
	struct h_backend b, ub;
	char conf[1024], *out = NULL;
	int t2, t5, t5b, other, u2, u5;
	json_t *doc, *e;

	if (!h_netns_ready(&h_ns))
		return;
	ck_assert_int_eq(h_sh(&out, "ip -n %s addr add fd77::5/64 dev %s nodad && ip -n %s addr add fd77:0:0:1::2/64 dev %s nodad && ip -n %s addr add fd77:0:0:1::1/64 dev %s nodad",
			      h_ns.cli, h_ns.cli_if, h_ns.cli, h_ns.cli_if, h_ns.srv, h_ns.srv_if), 0);
	free(out);
	h_netns_enter(h_ns.srv);
	h_backend_start(&b, H_ECHO, false);
	h_backend_start(&ub, H_UDP_ECHO, false);
	h_netns_enter(NULL);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"v6\"; proto = \"tcp\"; listen = \"[::]:27002\"; target = \"127.0.0.1:%u\";\n"
		 "           per_source: { max_connections = 2; ipv6_prefix = 64; }; },\n"
		 "         { name = \"u6\"; proto = \"udp\"; listen = \"[::]:27003\"; target = \"127.0.0.1:%u\";\n"
		 "           per_source: { udp_sessions = 1; }; } );",
		 b.port, ub.port);
	h_daemon_netns = h_ns.srv;
	h_start(&d, conf);
	h_daemon_netns = NULL;

	/* The third connection only once the first two are in: with two
	 * workers, connections made together are accepted in any order. */
	h_netns_enter(h_ns.cli);
	t2 = sock_from(SOCK_STREAM, "fd77::2", "fd77::1", 27002);
	t5 = sock_from(SOCK_STREAM, "fd77::5", "fd77::1", 27002);
	h_netns_enter(NULL);
	ck_assert(echoes(t2, 5000));
	ck_assert(echoes(t5, 5000));
	h_netns_enter(h_ns.cli);
	t5b = sock_from(SOCK_STREAM, "fd77::5", "fd77::1", 27002);
	other = sock_from(SOCK_STREAM, "fd77:0:0:1::2", "fd77:0:0:1::1", 27002);
	u2 = sock_from(SOCK_DGRAM, "fd77::2", "fd77::1", 27003);
	u5 = sock_from(SOCK_DGRAM, "fd77::5", "fd77::1", 27003);
	h_netns_enter(NULL);
	ck_assert_msg(reset_within(t5b, 5000), "a third connection from fd77::/64 was not reset");
	ck_assert(echoes(other, 5000));
	ck_assert(udp_answered(u2, "u2", 5000));
	ck_assert(!udp_answered(u5, "u5", 500)); /* the /64's one session is taken */
	ck_assert_int_eq(wait_limited(&d, "v6", "tcp", "connections", 1, 5), 1);
	ck_assert_int_eq(wait_limited(&d, "u6", "udp", "sessions", 1, 5), 1);
	ck_assert(h_log_contains(&d, "source fd77::/64 is at per_source max_connections (2)"));
	doc = sources_json(&d, "v6");
	e = source_entry(doc, "fd77::/64");
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(json_integer_value(json_object_get(e, "connections")), 2);
	e = source_entry(doc, "fd77:0:0:1::/64");
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(json_integer_value(json_object_get(e, "connections")), 1);
	json_decref(doc);
	close(t2);
	close(t5);
	close(t5b);
	close(other);
	close(u2);
	close(u5);
	h_stop(&d);
	h_backend_stop(&b);
	h_backend_stop(&ub);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("per_source");
	TCase *tc = tcase_create("per_source");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_tcp_max_connections_per_source);
	tcase_add_test(tc, test_tcp_new_per_minute);
	tcase_add_test(tc, test_limited_log_lines_are_rate_limited);
	tcase_add_test(tc, test_udp_sessions_per_source);
	tcase_add_test(tc, test_udp_datagrams_per_second);
	tcase_add_test(tc, test_udp_datagrams_per_second_coalesced);
	tcase_add_test(tc, test_udp_reflection_guard);
	tcase_add_test(tc, test_udp_unreplied_timeout);
	tcase_add_test(tc, test_udp_unanswered_make_room);
	tcase_add_test(tc, test_udp_spoofed_flood);
	tcase_add_test(tc, test_sources_command);
	tcase_add_test(tc, test_sources_untracked_rule);
	tcase_add_test(tc, test_reload_changes_limits);
	suite_add_tcase(s, tc);

	tc = h_netns_tcase();
	tcase_add_test(tc, test_ipv6_prefix_is_one_source);
	suite_add_tcase(s, tc);
	return check_run(s);
}
