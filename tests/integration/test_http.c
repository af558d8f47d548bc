/*
 * The HTTP endpoint (daemon.http) as its users meet it: /metrics as
 * `portfwdctl metrics` says it, /status.json as `status --json`, /health
 * with its status code, / with its security headers; nothing it answers
 * changes the daemon; its allow list; the caps that keep a slow or hostile
 * client from holding it, while the rules go on forwarding; reloads that
 * move, change or remove it, or cannot bind; the exposure warning.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "check_run.h"

#define PORTFWD h_bin("PORTFWD_BIN", "build/default/portfwd")
#define PORTFWDCTL h_bin("PORTFWDCTL_BIN", "build/default/portfwdctl")

static char extra[256];

/* daemon.http on 127.0.0.1:PORT, with the lists LISTS ("" for none). */
static void http_conf(unsigned port, const char *lists)
{
	snprintf(extra, sizeof(extra), "http = { listen = \"127.0.0.1:%u\"; %s };", port, lists);
	h_daemon_extra = extra;
}

static long long http_counter(struct hdaemon *d, const char *key)
{
	json_t *st = h_status(d);
	long long v = json_integer_value(json_object_get(json_object_get(st, "http"), key));

	json_decref(st);
	return v;
}

/* True if FD is closed by the other end (EOF or reset) within SECONDS. */
static bool closed_within(int fd, double seconds)
{
	double end = h_now() + seconds;
	char buf[256];

	while (h_now() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 100) > 0) {
			ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

			if (n == 0 || (n < 0 && errno != EAGAIN))
				return true;
		}
	}
	return false;
}

/* A keep-alive GET /health on FD, its answer read whole. 0 if it came. */
static int health_exchange(int fd)
{
	const char *req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	char answer[1024] = "";
	size_t got = 0;
	double end = h_now() + 5;

	if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
		return -1;
	while (!strstr(answer, "listening\n") && got < sizeof(answer) - 1 && h_now() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t k;

		if (poll(&p, 1, 100) <= 0)
			continue;
		k = recv(fd, answer + got, sizeof(answer) - 1 - got, 0);
		if (k <= 0)
			return -1;
		got += (size_t)k;
		answer[got] = '\0';
	}
	return strstr(answer, "HTTP/1.1 200 OK") && strstr(answer, "listening\n") ? 0 : -1;
}

/* The "# TYPE" lines of an exposition, sorted into one string. */
static char *type_lines(const char *text)
{
	char *copy = strdup(text), *save = NULL, *out = calloc(1, strlen(text) + 1);

	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (strncmp(l, "# TYPE ", 7) == 0) {
			strcat(out, l);
			strcat(out, "\n");
		}
	free(copy);
	return out;
}

START_TEST(test_http_endpoints)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned hp = h_free_port(SOCK_STREAM, false), lp = h_free_port(SOCK_STREAM, false);
	char conf[512], *head, *body, *out, *t1, *t2;
	char *metrics[] = { (char *)PORTFWDCTL, "-s", d.sock, "metrics", NULL };
	json_t *doc, *st;
	int fd;

	h_backend_start(&b, H_ECHO, false);
	http_conf(hp, "");
	snprintf(conf, sizeof(conf),
		 "rules = ( { name = \"web\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 lp, b.port);
	h_start(&d, conf);
	fd = h_connect("127.0.0.1", lp);
	ck_assert_int_eq(h_echo_exchange(fd, 100000, 7, 10), 0);
	close(fd);
	ck_assert_int_ge(h_wait_counter(&d, "web", "tcp", "bytes_to_target", 100000, 5), 100000);

	/* /metrics: Prometheus's content type, the families portfwdctl prints. */
	ck_assert_int_eq(h_http("127.0.0.1", hp, "GET", "/metrics", NULL, &head, &body, 10), 200);
	ck_assert_msg(strstr(head, "\r\nContent-Type: text/plain; version=0.0.4"), "%s", head);
	ck_assert_msg(strstr(body, "portfwd_info{version=\""), "%s", body);
	ck_assert_msg(strstr(body, "rule=\"web\""), "%s", body);
	ck_assert_int_eq(h_run(metrics, &out), 0);
	t1 = type_lines(body);
	t2 = type_lines(out);
	ck_assert_str_eq(t1, t2);
	ck_assert_msg(strstr(t1, "# TYPE portfwd_http_requests_total counter"), "%s", t1);
	free(t1);
	free(t2);
	free(out);
	free(head);
	free(body);

	/* /status.json: the document of status --json, the endpoint in it. */
	ck_assert_int_eq(h_http("127.0.0.1", hp, "GET", "/status.json", NULL, &head, &body, 10), 200);
	ck_assert_msg(strstr(head, "\r\nContent-Type: application/json"), "%s", head);
	doc = json_loads(body, 0, NULL);
	ck_assert_ptr_nonnull(doc);
	st = h_status(&d);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(doc, "rules"), 0), "name")), "web");
	ck_assert_int_eq(json_integer_value(json_object_get(doc, "pid")), json_integer_value(json_object_get(st, "pid")));
	ck_assert_int_ge(json_integer_value(json_object_get(json_object_get(json_array_get(json_object_get(doc, "rules"), 0), "tcp"), "bytes_to_target")), 100000);
	{
		char want[64];

		snprintf(want, sizeof(want), "127.0.0.1:%u", hp);
		ck_assert_str_eq(json_string_value(json_object_get(json_object_get(st, "http"), "listen")), want);
	}
	json_decref(doc);
	json_decref(st);
	free(head);
	free(body);

	/* /: HTML, the rule in it, its script held to a nonce, no framing. */
	ck_assert_int_eq(h_http("127.0.0.1", hp, "GET", "/", NULL, &head, &body, 10), 200);
	ck_assert_msg(strstr(head, "\r\nContent-Type: text/html; charset=utf-8"), "%s", head);
	ck_assert_msg(strstr(head, "\r\nContent-Security-Policy: default-src 'none'; script-src 'nonce-"), "%s", head);
	ck_assert_msg(strstr(head, "\r\nX-Frame-Options: DENY") && strstr(head, "\r\nX-Content-Type-Options: nosniff") &&
			      strstr(head, "\r\nCache-Control: no-store"),
		      "%s", head);
	ck_assert_msg(strstr(body, "web"), "%s", body);
	free(head);
	free(body);

	/* HEAD: the headers alone. */
	ck_assert_int_eq(h_http("127.0.0.1", hp, "HEAD", "/metrics", NULL, &head, &body, 10), 200);
	ck_assert_str_eq(body, "");
	free(head);
	free(body);

	/* Host: an address or localhost; a name only from daemon.http.hosts
	 * (a page that rebinds its own name to this address reads nothing). */
	ck_assert_int_eq(h_http("127.0.0.1", hp, "GET", "/status.json", "Host: evil.example:80\r\n", &head, &body, 10), 421);
	ck_assert_msg(!strstr(body, "\"rules\""), "%s", body);
	free(head);
	free(body);
	ck_assert_int_eq(h_http("127.0.0.1", hp, "GET", "/health", "Host: LocalHost\r\n", &head, &body, 10), 200);
	free(head);
	free(body);
	ck_assert_int_eq(h_http("127.0.0.1", hp, "GET", "/health", "Host: [::1]:9\r\n", &head, &body, 10), 200);
	free(head);
	free(body);
	ck_assert_int_eq(h_http("127.0.0.1", hp, "GET", "/health", "Host: nas.lan\r\n", &head, &body, 10), 421);
	free(head);
	free(body);

	/* /health: 200 with the words of portfwdctl health; 503 once no rule is on. */
	ck_assert_int_eq(h_http("127.0.0.1", hp, "GET", "/health", NULL, &head, &body, 10), 200);
	ck_assert_str_eq(body, "healthy: 1 of 1 enabled rule listening\n");
	free(head);
	free(body);
	{
		char *dis[] = { (char *)PORTFWDCTL, "-s", d.sock, "disable", "web", NULL };

		ck_assert_int_eq(h_run(dis, &out), 0);
		free(out);
	}
	ck_assert_int_eq(h_http("127.0.0.1", hp, "GET", "/health", NULL, &head, &body, 10), 503);
	ck_assert_str_eq(body, "unhealthy: no rule is enabled (1 rule disabled)\n");
	free(head);
	free(body);

	/* Read-only: other methods are refused and change nothing; an unknown
	 * path is a 404 that says what there is. */
	ck_assert_int_eq(h_http("127.0.0.1", hp, "POST", "/", "Content-Length: 0\r\n", &head, &body, 10), 501);
	free(head);
	free(body);
	ck_assert_int_eq(h_http("127.0.0.1", hp, "DELETE", "/status.json", NULL, &head, &body, 10), 501);
	free(head);
	free(body);
	ck_assert_int_eq(h_http("127.0.0.1", hp, "POST", "/", "Content-Length: 5\r\n\r\nhello", &head, &body, 10), 413);
	free(head);
	free(body);
	ck_assert_int_eq(h_http("127.0.0.1", hp, "GET", "/reload", NULL, &head, &body, 10), 404);
	ck_assert_msg(strstr(body, "/status.json, /metrics and /health"), "%s", body);
	free(head);
	free(body);
	st = h_status(&d);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "generation")), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(st, "rules"), 0), "state")), "disabled");
	/* Every request it served counted (9: evhttp itself refuses the
	 * other methods and the body; the two unknown Hosts are denied). */
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(st, "http"), "requests")), 9);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(st, "http"), "denied")), 2);
	json_decref(st);
	ck_assert_msg(h_wait_log(&d, "daemon.http: serving /, /status.json, /metrics and /health on http://127.0.0.1:", 1), "no start line");
	h_stop(&d);
	h_backend_stop(&b);
	h_daemon_extra = NULL;
}
END_TEST

/* Only the allow list's addresses get an answer; the others' connections
 * are closed unanswered, counted and logged; a reload changes the list. */
START_TEST(test_http_allow_list)
{
	struct hdaemon d;
	unsigned hp = h_free_port(SOCK_STREAM, false);
	char *head, *body;
	int fd;

	http_conf(hp, "allow = [ \"127.0.0.2\", \"127.0.0.3\" ]; hosts = [ \"NAS.lan.\" ];");
	h_start(&d, "rules = ();");
	ck_assert_int_eq(h_http_from("127.0.0.2", "127.0.0.1", hp, "GET", "/health", NULL, &head, &body, 10), 503);
	free(head);
	free(body);
	/* A name of hosts (any case, with or without the root's dot). */
	ck_assert_int_eq(h_http_from("127.0.0.2", "127.0.0.1", hp, "GET", "/health", "Host: nas.LAN:9180\r\n", &head, &body, 10), 503);
	free(head);
	free(body);
	ck_assert_int_eq(h_http_from("127.0.0.2", "127.0.0.1", hp, "GET", "/health", "Host: other.lan\r\n", &head, &body, 10), 421);
	free(head);
	free(body);
	/* 127.0.0.1 is not on it: closed before anything is read. */
	fd = h_connect_from("127.0.0.1", "127.0.0.1", hp);
	ck_assert_int_ge(fd, 0);
	ck_assert_msg(closed_within(fd, 3), "a refused client's connection stayed open");
	close(fd);
	ck_assert_int_eq(h_http_from("127.0.0.1", "127.0.0.1", hp, "GET", "/metrics", NULL, &head, &body, 5), -1);
	ck_assert_int_eq(http_counter(&d, "denied"), 3); /* the two here, and other.lan's 421 */
	ck_assert_msg(h_wait_log(&d, "daemon.http: refused 127.0.0.1 port ", 2), "no log line");

	/* The list as the file says after a reload: now 127.0.0.1 and not .2. */
	http_conf(hp, "allow = [ \"127.0.0.1\" ];");
	h_write_conf(&d, "rules = ();");
	{
		bool ok;
		char *r = h_ctl(d.sock, "reload", &ok);

		ck_assert_msg(ok, "%s", r);
		free(r);
	}
	ck_assert_int_eq(h_http_from("127.0.0.1", "127.0.0.1", hp, "GET", "/health", NULL, &head, &body, 10), 503);
	free(head);
	free(body);
	ck_assert_int_eq(h_http_from("127.0.0.2", "127.0.0.1", hp, "GET", "/health", NULL, &head, &body, 5), -1);
	h_stop(&d);
	h_daemon_extra = NULL;
}
END_TEST

/*
 * A hostile client cannot hold it: 8 connections from one address, then
 * the next is closed while another address is still answered; a client
 * that drips its request is cut at the first request's deadline; headers
 * past 8 KiB are refused; at 64 connections the endpoint waits, and
 * answers again once one closes. All the while the rule forwards.
 */
START_TEST(test_http_limits)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned hp = h_free_port(SOCK_STREAM, false), lp = h_free_port(SOCK_STREAM, false);
	char conf[512], src[32], *head, *body, big[10000];
	int held[64], n = 0, fd, drip, polite, chunked, waiting;
	double t0;

	h_backend_start(&b, H_ECHO, false);
	http_conf(hp, "");
	snprintf(conf, sizeof(conf),
		 "rules = ( { name = \"web\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 lp, b.port);
	h_start(&d, conf);

	/* Per source: the ninth from 127.0.0.5 is closed; .6 still answered. */
	for (int i = 0; i < 8; i++) {
		held[n] = h_connect_from("127.0.0.5", "127.0.0.1", hp);
		ck_assert_int_ge(held[n], 0);
		n++;
	}
	usleep(300000);
	fd = h_connect_from("127.0.0.5", "127.0.0.1", hp);
	ck_assert_msg(closed_within(fd, 3), "a ninth connection from one address stayed open");
	close(fd);
	ck_assert_int_eq(http_counter(&d, "busy"), 1);
	ck_assert_int_eq(h_http_from("127.0.0.6", "127.0.0.1", hp, "GET", "/health", NULL, &head, &body, 10), 200);
	free(head);
	free(body);

	/* Headers past the limit. */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	{
		char *hdr = NULL;

		ck_assert_int_ge(asprintf(&hdr, "X-Big: %s\r\n", big), 0);
		ck_assert_int_eq(h_http_from("127.0.0.6", "127.0.0.1", hp, "GET", "/", hdr, &head, &body, 10) / 100, 4);
		free(hdr);
		free(head);
		free(body);
	}

	/* The cap in all: 56 more from 7 other addresses make 64. */
	for (int a = 0; n < 64; a++) {
		snprintf(src, sizeof(src), "127.0.0.%d", 10 + n / 8);
		held[n] = h_connect_from(src, "127.0.0.1", hp);
		ck_assert_int_ge(held[n], 0);
		n++;
		(void)a;
	}
	usleep(300000);
	/* The 65th waits in the kernel's queue, unanswered... */
	waiting = h_connect_from("127.0.0.30", "127.0.0.1", hp);
	ck_assert_int_ge(waiting, 0);
	ck_assert_int_eq(write(waiting, "GET /health HTTP/1.0\r\n\r\n", 24), 24);
	{
		struct pollfd p = { .fd = waiting, .events = POLLIN };

		ck_assert_int_eq(poll(&p, 1, 1000), 0);
	}
	/* ...the rule forwards all the while... */
	fd = h_connect("127.0.0.1", lp);
	ck_assert_int_eq(h_echo_exchange(fd, 200000, 3, 10), 0);
	close(fd);
	/* ...and is answered once one of the 64 closes. */
	close(held[--n]);
	{
		uint64_t hash;
		long long got = h_read_all(waiting, &hash, 5);

		ck_assert_int_gt(got, 0);
	}
	close(waiting);
	ck_assert_msg(h_log_contains(&d, "daemon.http: 64 connections open, the most it takes"), "no log line");
	while (n > 0)
		close(held[--n]);

	/* A keep-alive client whose second request is dripped a byte a second
	 * is cut 15 s after its first answer, though it never goes quiet for
	 * the idle timeout (10 s). */
	drip = h_connect_from("127.0.0.7", "127.0.0.1", hp);
	ck_assert_int_ge(drip, 0);
	/* Beside it: a keep-alive client that asks every 4 s is never cut (the
	 * deadline runs from each answer), and a chunked request whose size
	 * line outgrows what the endpoint reads (its reading suspended, it
	 * would never see a shut-down stream) is cut at the deadline too. */
	polite = h_connect_from("127.0.0.8", "127.0.0.1", hp);
	chunked = h_connect_from("127.0.0.9", "127.0.0.1", hp);
	ck_assert_int_ge(polite, 0);
	ck_assert_int_ge(chunked, 0);
	{
		const char *head_c = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n";
		static char digits[20000];

		memset(digits, 'f', sizeof(digits));
		ck_assert_int_eq(write(chunked, head_c, strlen(head_c)), (ssize_t)strlen(head_c));
		ck_assert_int_eq(send(chunked, digits, sizeof(digits), MSG_NOSIGNAL), (ssize_t)sizeof(digits));
	}
	t0 = h_now();
	ck_assert_int_eq(health_exchange(polite), 0);
	{
		const char *req = "GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
		double last = h_now();
		bool cut = false;

		ck_assert_int_eq(health_exchange(drip), 0);
		for (size_t i = 0; req[i] && h_now() - t0 < 25 && !cut; i++) {
			if (send(drip, &req[i], 1, MSG_NOSIGNAL) != 1)
				cut = true;
			else
				cut = closed_within(drip, 1);
			if (h_now() - last >= 4) {
				ck_assert_msg(health_exchange(polite) == 0, "a polite keep-alive client was cut after %.1f s", h_now() - t0);
				last = h_now();
			}
		}
		ck_assert_msg(cut, "a dripping client was not cut");
		ck_assert_msg(h_now() - t0 > 14 && h_now() - t0 < 20, "cut after %.1f s", h_now() - t0);
		ck_assert_msg(closed_within(chunked, 5), "a stalled chunked request was not cut");
		/* Past 20 s since its first request, the polite one still answered. */
		while (h_now() - t0 < 21) {
			usleep(100000);
			if (h_now() - last >= 4) {
				ck_assert_int_eq(health_exchange(polite), 0);
				last = h_now();
			}
		}
		ck_assert_int_eq(health_exchange(polite), 0);
	}
	ck_assert_int_eq(http_counter(&d, "slow"), 2);
	close(polite);
	close(chunked);
	close(drip);
	/* Still answering, and every connection accounted for. */
	ck_assert_int_eq(h_http("127.0.0.1", hp, "GET", "/health", NULL, &head, &body, 10), 200);
	free(head);
	free(body);
	ck_assert_int_le(http_counter(&d, "connections"), 1);
	h_stop(&d);
	h_backend_stop(&b);
	h_daemon_extra = NULL;
}
END_TEST

/*
 * A client that asks for a large answer, reads none of it and sends on is
 * not read from while the answer waits: the daemon holds at most a
 * request's headers of it, not all it sends. In a network namespace of
 * the test's own, whose small TCP send buffers keep the answer waiting.
 */
START_TEST(test_http_unread_answer)
{
	struct hdaemon d;
	unsigned hp;
	char conf[512], junk[65536];
	const char *req = "GET /status.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	long long sent = 0;
	long rss0, rss1;
	int fd, small = 4096;
	FILE *fp;
	double end;

	if (geteuid() != 0) {
		fprintf(stderr, "test_http_unread_answer: skipped (needs root for a network namespace)\n");
		return;
	}
	ck_assert_int_eq(unshare(CLONE_NEWNET), 0);
	ck_assert_int_eq(system("ip link set lo up"), 0);
	fp = fopen("/proc/sys/net/ipv4/tcp_wmem", "w");
	ck_assert_ptr_nonnull(fp);
	fprintf(fp, "4096 16384 65536\n");
	fclose(fp);
	hp = h_free_port(SOCK_STREAM, false);
	http_conf(hp, "");
	/* A range whose every port is in status: an answer of some 110 KB. */
	snprintf(conf, sizeof(conf),
		 "rules = ( { name = \"big\"; proto = \"udp\"; listen = \"127.0.0.1:31000-31599\"; target = \"127.0.0.1:53\"; } );");
	h_start(&d, conf);
	rss0 = h_rss_kib(d.pid);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	{
		struct sockaddr_storage ss;
		socklen_t len = h_sockaddr("127.0.0.1", hp, &ss);

		ck_assert_int_eq(connect(fd, (struct sockaddr *)&ss, len), 0);
	}
	ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	usleep(300000);
	memset(junk, 'x', sizeof(junk));
	fcntl(fd, F_SETFL, O_NONBLOCK);
	end = h_now() + 4;
	while (h_now() < end && sent < (256LL << 20)) {
		ssize_t n = send(fd, junk, sizeof(junk), MSG_NOSIGNAL);

		if (n > 0)
			sent += n;
		else if (n < 0 && errno != EAGAIN)
			break;
		else
			usleep(10000);
	}
	rss1 = h_rss_kib(d.pid);
	/* Kernel buffers take some megabytes; the daemon stopped reading. */
	ck_assert_msg(sent < (32LL << 20), "the daemon read %lld bytes while its answer waited", sent);
	ck_assert_msg(rss1 - rss0 < 16 * 1024, "the daemon grew by %ld KiB", rss1 - rss0);
	/*
	 * The answer was still being written all along: it is larger than the
	 * kernel could hold for it (this namespace's send buffers of at most
	 * 64 KiB, and the client's receive buffer, 4 KiB set, 8 KiB given).
	 * What comes of it starts as it should; its end may be lost, as the
	 * daemon closes the connection with the client's junk unread.
	 */
	{
		static char answer[1 << 20];
		size_t got = 0;
		long want = -1;
		char *cl;

		end = h_now() + 10;
		while (got < 4096 && h_now() < end) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			ssize_t k;

			if (poll(&p, 1, 100) <= 0)
				continue;
			k = recv(fd, answer + got, sizeof(answer) - 1 - got, 0);
			if (k <= 0)
				break;
			got += (size_t)k;
			answer[got] = '\0';
		}
		ck_assert_msg(strncmp(answer, "HTTP/1.1 200 OK", 15) == 0, "%.200s", answer);
		cl = strstr(answer, "Content-Length: ");
		ck_assert_ptr_nonnull(cl);
		want = atol(cl + 16);
		ck_assert_msg(want > 65536 + 8192 + 16384, "an answer of %ld bytes fits in the buffers", want);
	}
	close(fd);
	h_stop(&d);
	h_daemon_extra = NULL;
}
END_TEST

/* Reload moves the endpoint, keeps it where a port cannot be bound (and
 * says who holds it), and removes it. */
START_TEST(test_http_reload)
{
	struct hdaemon d;
	unsigned p1 = h_free_port(SOCK_STREAM, false), p2 = h_free_port(SOCK_STREAM, false);
	unsigned p3 = h_free_port(SOCK_STREAM, false);
	char *head, *body, *r;
	bool ok;
	int holder, one = 1;
	struct sockaddr_storage ss;
	socklen_t len;
	json_t *st;

	http_conf(p1, "");
	h_start(&d, "rules = ();");
	ck_assert_int_eq(h_http("127.0.0.1", p1, "GET", "/health", NULL, &head, &body, 10), 503);
	free(head);
	free(body);

	/* Moved: the new port answers, the old one is closed. */
	http_conf(p2, "");
	h_write_conf(&d, "rules = ();");
	r = h_ctl(d.sock, "reload", &ok);
	ck_assert_msg(ok, "%s", r);
	free(r);
	ck_assert_int_eq(h_http("127.0.0.1", p2, "GET", "/health", NULL, &head, &body, 10), 503);
	free(head);
	free(body);
	ck_assert_int_lt(h_connect("127.0.0.1", p1), 0);

	/* A port held by someone else: the reload says so, and p2 serves on. */
	holder = socket(AF_INET, SOCK_STREAM, 0);
	len = h_sockaddr("127.0.0.1", p3, &ss);
	setsockopt(holder, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ck_assert_int_eq(bind(holder, (struct sockaddr *)&ss, len), 0);
	ck_assert_int_eq(listen(holder, 1), 0);
	/* ...and with a stricter list, which applies where it stays. */
	http_conf(p3, "allow = [ \"127.0.0.2\" ];");
	h_write_conf(&d, "rules = ();");
	r = h_ctl(d.sock, "reload", &ok);
	ck_assert_msg(!ok, "%s", r);
	ck_assert_msg(strstr(r, "daemon.http: cannot listen on 127.0.0.1:") &&
			      strstr(r, "address already in use: port ") &&
			      strstr(r, "(the endpoint stays where it was)"),
		      "%s", r);
	free(r);
	ck_assert_int_eq(h_http_from("127.0.0.2", "127.0.0.1", p2, "GET", "/metrics", NULL, &head, &body, 10), 200);
	free(head);
	free(body);
	ck_assert_int_eq(h_http_from("127.0.0.1", "127.0.0.1", p2, "GET", "/metrics", NULL, &head, &body, 5), -1);
	st = h_status(&d);
	ck_assert_int_eq(json_integer_value(json_object_get(st, "generation")), 3);
	{
		char want[64];

		/* status says where it serves, not where the file asked. */
		snprintf(want, sizeof(want), "127.0.0.1:%u", p2);
		ck_assert_str_eq(json_string_value(json_object_get(json_object_get(st, "http"), "listen")), want);
	}
	json_decref(st);
	r = h_ctl(d.sock, "status", &ok);
	{
		char want[96];

		snprintf(want, sizeof(want), "http: http://127.0.0.1:%u/ ", p2);
		ck_assert_msg(strstr(r, want), "%s", r);
	}
	free(r);
	close(holder);

	/* A new TCP rule takes the endpoint's port; the endpoint moves to p3
	 * in the same reload. Both work. */
	{
		char conf[256];

		http_conf(p3, "");
		snprintf(conf, sizeof(conf),
			 "rules = ( { name = \"took\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );",
			 p2);
		h_write_conf(&d, conf);
		r = h_ctl(d.sock, "reload", &ok);
		ck_assert_msg(ok, "%s", r);
		free(r);
		st = h_status(&d);
		ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(st, "rules"), 0), "state")), "listening");
		json_decref(st);
		ck_assert_int_eq(h_http("127.0.0.1", p3, "GET", "/health", NULL, &head, &body, 10), 200);
		free(head);
		free(body);
	}

	/* Removed. */
	h_daemon_extra = NULL;
	h_write_conf(&d, "rules = ();");
	r = h_ctl(d.sock, "reload", &ok);
	ck_assert_msg(ok, "%s", r);
	free(r);
	ck_assert_int_lt(h_connect("127.0.0.1", p3), 0);
	st = h_status(&d);
	ck_assert(json_is_null(json_object_get(st, "http")));
	json_decref(st);
	ck_assert_msg(h_log_contains(&d, "daemon.http: removed; the endpoint is closed"), "no log line");
	h_stop(&d);
}
END_TEST

/*
 * Out of descriptors, a client of the HTTP endpoint waiting to be accepted
 * must not make the main loop spin on accept (EMFILE again and again): the
 * endpoint rests a second at a time, says so once, and answers again once
 * descriptors are back.
 */
START_TEST(test_http_out_of_descriptors)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned hp = h_free_port(SOCK_STREAM, false), lp = h_free_port(SOCK_STREAM, false);
	int fds[64], held[16], n, nheld = 0, waiting;
	char conf[512], src[32], *head, *body;

	h_backend_start(&b, H_ECHO, false);
	http_conf(hp, "");
	snprintf(conf, sizeof(conf),
		 "rules = ( { name = \"t\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 lp, b.port);
	h_start_nofile(&d, conf, 40);
	n = h_exhaust_descriptors(&d, "t", lp, fds, 64);

	/* HTTP clients (one per address: the endpoint limits each) until one
	 * is not answered: the daemon cannot accept it, and the listening
	 * socket stays readable. The ones answered hold the last descriptors. */
	for (;;) {
		ck_assert_int_lt(nheld, 16);
		snprintf(src, sizeof(src), "127.0.0.%d", 10 + nheld);
		waiting = h_connect_from(src, "127.0.0.1", hp);
		ck_assert_int_ge(waiting, 0);
		if (health_exchange(waiting) < 0)
			break;
		held[nheld++] = waiting;
	}
	ck_assert_msg(h_wait_log(&d, "daemon.http: out of file descriptors", 10),
		      "the HTTP endpoint never met the shortage");
	h_assert_quiet(&d, 2, "while out of descriptors");
	ck_assert_int_eq(h_log_count(&d, "daemon.http: out of file descriptors"), 1);

	for (int i = 0; i < n; i++)
		close(fds[i]);
	for (int i = 0; i < nheld; i++)
		close(held[i]);
	close(waiting);
	ck_assert_int_eq(h_http("127.0.0.1", hp, "GET", "/health", NULL, &head, &body, 10), 200);
	free(head);
	free(body);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "active", 0, 10), 0);
	h_stop(&d);
	h_backend_stop(&b);
	h_daemon_extra = NULL;
}
END_TEST

/* Off loopback with no allow list: a warning in -t and status; an allow
 * list that keeps someone out silences it. */
START_TEST(test_http_exposure)
{
	struct hdaemon d;
	unsigned hp = h_free_port(SOCK_STREAM, false);
	char *out, want[512];
	char *check[] = { (char *)PORTFWD, "-t", "-c", d.conf, NULL };
	json_t *st, *w;

	/* 0.0.0.0 of a network namespace of the test's own, not the host's. */
	if (geteuid() != 0) {
		fprintf(stderr, "test_http_exposure: skipped (needs root for a network namespace)\n");
		return;
	}
	ck_assert_int_eq(unshare(CLONE_NEWNET), 0);
	ck_assert_int_eq(system("ip link set lo up"), 0);
	snprintf(extra, sizeof(extra), "http = { listen = \"0.0.0.0:%u\"; };", hp);
	h_daemon_extra = extra;
	h_start(&d, "rules = ();");
	ck_assert_int_eq(h_run(check, &out), 0);
	snprintf(want, sizeof(want),
		 "%s:1: warning: daemon.http: listens on 0.0.0.0:%u with no allow list: anyone who reaches it reads every rule",
		 d.conf, hp);
	ck_assert_msg(strstr(out, want), "%s", out);
	free(out);
	st = h_status(&d);
	w = json_object_get(json_object_get(st, "http"), "warnings");
	ck_assert_int_eq(json_array_size(w), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 0), "level")), "warning");
	json_decref(st);
	h_stop(&d);

	snprintf(extra, sizeof(extra), "http = { listen = \"0.0.0.0:%u\"; allow = [ \"@private\" ]; };", hp);
	h_prepare(&d, "rules = ();");
	ck_assert_int_eq(h_run(check, &out), 0);
	ck_assert_msg(!strstr(out, "daemon.http"), "%s", out);
	free(out);
	h_cleanup(&d);
	h_daemon_extra = NULL;
}
END_TEST

int main(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("http");

	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, test_http_endpoints);
	tcase_add_test(tc, test_http_allow_list);
	tcase_add_test(tc, test_http_limits);
	tcase_add_test(tc, test_http_unread_answer);
	tcase_add_test(tc, test_http_reload);
	tcase_add_test(tc, test_http_exposure);
	tcase_add_test(tc, test_http_out_of_descriptors);
	suite_add_tcase(s, tc);
	return check_run(s);
}
