/*
 * proxy_protocol and source through the real daemon: nginx and haproxy
 * (both real, on loopback, on configurations of the test's own) read the
 * PROXY header portfwd sends and report the client they see, which must
 * be the client socket's own address and port; receivers of the test's
 * own check the header byte by byte, the bytes behind it, the UDP v2
 * header on every datagram and the replies without one, and the address
 * a rule's source makes the target see.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "check_run.h"

#define NGINX "/usr/sbin/nginx"
#define HAPROXY "/usr/sbin/haproxy"

static const uint8_t v2sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	nanosleep(&ts, NULL);
}

/* ---- servers the test starts: nginx, haproxy ---- */

/* Runs ARGV in the background, its output to LOG. Returns the pid. */
static pid_t spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		setpgid(0, 0);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* True once a TCP connection to HOST:PORT succeeds; false if PID exits or
 * SECONDS pass first. */
static bool wait_listening(pid_t pid, const char *host, unsigned port, double seconds)
{
	double deadline = h_now() + seconds;

	while (h_now() < deadline) {
		int fd = h_connect(host, port);

		if (fd >= 0) {
			close(fd);
			return true;
		}
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return false;
		sleep_s(0.02);
	}
	return false;
}

/* SIGTERM to PID's process group (nginx's workers go with it), then
 * SIGKILL after 5 s; reaps it. */
static void stop_pid(pid_t pid)
{
	double deadline = h_now() + 5;

	if (pid <= 0)
		return;
	kill(-pid, SIGTERM);
	while (h_now() < deadline) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return;
		sleep_s(0.01);
	}
	kill(-pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	ck_assert_msg(fp != NULL, "cannot write %s", path);
	fputs(text, fp);
	fclose(fp);
}

/* nginx in DIR/nginx, answering on 127.0.0.1:PORT4 and [::1]:PORT6 with
 * the client the PROXY header names. Returns its pid. */
static pid_t nginx_start(const char *dir, unsigned port4, unsigned port6)
{
	char conf[8192], path[512], prefix[400], log[512];
	char *argv[] = { NGINX, "-p", prefix, "-c", path, "-g", "daemon off;", NULL };
	pid_t pid;

	snprintf(prefix, sizeof(prefix), "%s/nginx", dir);
	ck_assert_int_eq(mkdir(prefix, 0755), 0);
	snprintf(path, sizeof(path), "%s/nginx.conf", prefix);
	snprintf(log, sizeof(log), "%s/out.log", prefix);
	snprintf(conf, sizeof(conf),
		 "pid %1$s/nginx.pid;\n"
		 "error_log %1$s/error.log;\n"
		 "worker_processes 1;\n"
		 "events { worker_connections 64; }\n"
		 "http {\n"
		 "  access_log off;\n"
		 "  client_body_temp_path %1$s/body; proxy_temp_path %1$s/proxy;\n"
		 "  fastcgi_temp_path %1$s/fastcgi; uwsgi_temp_path %1$s/uwsgi; scgi_temp_path %1$s/scgi;\n"
		 "  server {\n"
		 "    listen 127.0.0.1:%2$u proxy_protocol;\n"
		 "    listen [::1]:%3$u proxy_protocol;\n"
		 "    return 200 \"$proxy_protocol_addr $proxy_protocol_port\\n\";\n"
		 "  }\n"
		 "}\n",
		 prefix, port4, port6);
	write_file(path, conf);
	pid = spawn(argv, log);
	if (!wait_listening(pid, "127.0.0.1", port4, 10) || !wait_listening(pid, "::1", port6, 10)) {
		stop_pid(pid);
		ck_abort_msg("nginx did not start; see %s and %s/error.log", log, prefix);
	}
	return pid;
}

/* haproxy, mode http, on 127.0.0.1:PORT4 and [::1]:PORT6 with
 * accept-proxy, answering with the client it sees. Returns its pid. */
static pid_t haproxy_start(const char *dir, unsigned port4, unsigned port6)
{
	char conf[4096], path[512], log[512];
	char *argv[] = { HAPROXY, "-f", path, "-db", NULL };
	pid_t pid;

	snprintf(path, sizeof(path), "%s/haproxy.cfg", dir);
	snprintf(log, sizeof(log), "%s/haproxy.log", dir);
	snprintf(conf, sizeof(conf),
		 "global\n"
		 "  maxconn 64\n"
		 "defaults\n"
		 "  mode http\n"
		 "  timeout connect 5s\n"
		 "  timeout client 5s\n"
		 "  timeout server 5s\n"
		 "frontend fe\n"
		 "  bind 127.0.0.1:%u accept-proxy\n"
		 "  bind [::1]:%u accept-proxy\n"
		 "  http-request return status 200 content-type text/plain lf-string \"%%[src] %%[src_port]\\n\"\n",
		 port4, port6);
	write_file(path, conf);
	pid = spawn(argv, log);
	if (!wait_listening(pid, "127.0.0.1", port4, 10) || !wait_listening(pid, "::1", port6, 10)) {
		stop_pid(pid);
		ck_abort_msg("haproxy did not start; see %s", log);
	}
	return pid;
}

/* ---- clients ---- */

/* A TCP connection from HOST (port 0) to HOST:PORT; ME gets the
 * client's own address as text and its port. -1 on failure. */
static int connect_from(const char *host, unsigned port, char *me, size_t melen,
			unsigned *me_port)
{
	struct sockaddr_storage ss, local;
	socklen_t len = h_sockaddr(host, 0, &ss), llen = sizeof(local);
	int fd = socket(ss.ss_family, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		goto fail;
	len = h_sockaddr(host, port, &ss);
	if (connect(fd, (struct sockaddr *)&ss, len) < 0)
		goto fail;
	getsockname(fd, (struct sockaddr *)&local, &llen);
	if (local.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&local)->sin_addr, me, (socklen_t)melen);
		*me_port = ntohs(((struct sockaddr_in *)&local)->sin_port);
	} else {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&local)->sin6_addr, me, (socklen_t)melen);
		*me_port = ntohs(((struct sockaddr_in6 *)&local)->sin6_port);
	}
	return fd;
fail:
	close(fd);
	return -1;
}

/* Reads FD to EOF into BUF (NUL-ended); bounded by SECONDS. Returns bytes. */
static ssize_t read_to_eof(int fd, char *buf, size_t len, double seconds)
{
	double deadline = h_now() + seconds;
	size_t got = 0;

	while (got < len - 1 && h_now() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(fd, buf + got, len - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	return (ssize_t)got;
}

/*
 * An HTTP request from CLIENT_HOST through portfwd on PORT: the body of
 * the answer must be the client socket's own address and port, as the
 * server behind read them from the PROXY header.
 */
static void http_check(const char *what, const char *client_host, unsigned port)
{
	static const char req[] = "GET / HTTP/1.0\r\nHost: test\r\n\r\n";
	char me[INET6_ADDRSTRLEN], reply[4096], want[128];
	unsigned me_port = 0;
	const char *body;
	int fd = connect_from(client_host, port, me, sizeof(me), &me_port);

	ck_assert_msg(fd >= 0, "%s: cannot connect to port %u from %s: %s", what, port, client_host,
		      strerror(errno));
	ck_assert_int_eq(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	read_to_eof(fd, reply, sizeof(reply), 10);
	close(fd);
	ck_assert_msg(strncmp(reply, "HTTP/1.1 200", 12) == 0, "%s: no 200 answer: \"%s\"", what, reply);
	body = strstr(reply, "\r\n\r\n");
	ck_assert_msg(body != NULL, "%s: no body in \"%s\"", what, reply);
	snprintf(want, sizeof(want), "%s %u\n", me, me_port);
	ck_assert_msg(strcmp(body + 4, want) == 0, "%s: the server saw \"%s\", the client is \"%s\"", what,
		      body + 4, want);
}

/* Four rules to a server on PORT4 / PORT6: v1 and v2, from IPv4 and
 * IPv6 clients (an IPv6 client to the server's IPv6 side). L holds the
 * four listen ports: v1 IPv4, v2 IPv4, v1 IPv6, v2 IPv6. */
static char *four_rules(const unsigned l[4], unsigned port4, unsigned port6)
{
	char *s = NULL;

	if (asprintf(&s,
		     "rules: (\n"
		     " { name = \"v1-4\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; proxy_protocol = \"v1\"; },\n"
		     " { name = \"v2-4\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; proxy_protocol = \"v2\"; },\n"
		     " { name = \"v1-6\"; proto = \"tcp\"; listen = \"[::1]:%u\"; target = \"[::1]:%u\"; proxy_protocol = \"v1\"; },\n"
		     " { name = \"v2-6\"; proto = \"tcp\"; listen = \"[::1]:%u\"; target = \"127.0.0.1:%u\"; proxy_protocol = \"v2\"; }\n"
		     ");",
		     l[0], port4, l[1], port4, l[2], port6, l[3], port4) < 0)
		ck_abort_msg("asprintf");
	return s;
}

static void server_test(bool haproxy)
{
	struct hdaemon d;
	unsigned port4 = h_free_port(SOCK_STREAM, false), port6 = h_free_port(SOCK_STREAM, true);
	unsigned l[4] = { h_free_port(SOCK_STREAM, false), h_free_port(SOCK_STREAM, false),
			  h_free_port(SOCK_STREAM, true), h_free_port(SOCK_STREAM, true) };
	char *conf = four_rules(l, port4, port6);
	const char *name = haproxy ? "haproxy" : "nginx";
	char what[64];
	pid_t server;

	h_start(&d, conf);
	free(conf);
	server = haproxy ? haproxy_start(d.dir, port4, port6) : nginx_start(d.dir, port4, port6);
	/* Twice each, so a second connection gets its own header too. */
	for (int round = 0; round < 2; round++) {
		snprintf(what, sizeof(what), "%s v1 IPv4", name);
		http_check(what, "127.0.0.1", l[0]);
		snprintf(what, sizeof(what), "%s v2 IPv4", name);
		http_check(what, "127.0.0.1", l[1]);
		snprintf(what, sizeof(what), "%s v1 IPv6", name);
		http_check(what, "::1", l[2]);
		snprintf(what, sizeof(what), "%s v2 IPv6 (to its IPv4 side)", name);
		http_check(what, "::1", l[3]);
	}
	stop_pid(server);
	ck_assert_int_eq(h_counter(&d, "v1-4", "tcp", "connect_failed"), 0);
	h_stop(&d);
}

START_TEST(test_nginx)
{
	server_test(false);
}
END_TEST

START_TEST(test_haproxy)
{
	server_test(true);
}
END_TEST

/* The next connection on LFD within SECONDS, PEER its address; -1 if none. */
static int accept_within(int lfd, double seconds, struct sockaddr_storage *peer)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	socklen_t len = sizeof(*peer);

	if (poll(&p, 1, (int)(seconds * 1000)) != 1)
		return -1;
	return accept(lfd, (struct sockaddr *)peer, &len);
}

/* Exactly N bytes from FD within SECONDS. Returns 0, or -1. */
static int read_exact(int fd, void *buf, size_t n, double seconds)
{
	double deadline = h_now() + seconds;
	size_t got = 0;

	while (got < n && h_now() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 100) <= 0)
			continue;
		r = read(fd, (char *)buf + got, n - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return got == n ? 0 : -1;
}

/* The v2 header (STREAM or DGRAM) of an IPv4 client CLIENT:CPORT that sent to DST:DPORT. */
static void v2_expect4(uint8_t *out, uint8_t famtrans, const char *client, unsigned cport,
		       const char *dst, unsigned dport)
{
	memcpy(out, v2sig, 12);
	out[12] = 0x21;
	out[13] = famtrans;
	out[14] = 0;
	out[15] = 12;
	inet_pton(AF_INET, client, out + 16);
	inet_pton(AF_INET, dst, out + 20);
	out[24] = (uint8_t)(cport >> 8);
	out[25] = (uint8_t)cport;
	out[26] = (uint8_t)(dport >> 8);
	out[27] = (uint8_t)dport;
}

struct writer {
	int fd;
	size_t len;
	uint64_t seed;
	int result;
};

static void *writer_thread(void *p)
{
	struct writer *w = p;

	w->result = h_write_stream(w->fd, w->len, w->seed, 60);
	shutdown(w->fd, SHUT_WR);
	return NULL;
}

static char *one_rule(const char *proto, const char *listen, const char *target, const char *extra)
{
	char *s = NULL;

	if (asprintf(&s, "rules: ( { name = \"r\"; proto = \"%s\"; listen = \"%s\"; target = \"%s\"; %s } );",
		     proto, listen, target, extra) < 0)
		ck_abort_msg("asprintf");
	return s;
}

/*
 * A client that writes 8 MiB at once, before the target is even
 * connected: the target gets the v2 header, then exactly those bytes in
 * order, whatever the data path (the test matrix runs splice on and off).
 */
START_TEST(test_large_first_write)
{
	struct hdaemon d;
	unsigned tport, lport = h_free_port(SOCK_STREAM, false), me_port;
	int lfd = h_listen("127.0.0.1", &tport, 16), cfd, tfd;
	char lis[64], tgt[64], me[INET6_ADDRSTRLEN], *conf;
	struct sockaddr_storage peer;
	uint8_t hdr[28], want[28];
	const size_t len = 8u << 20;
	struct writer w;
	pthread_t t;
	uint64_t hash, want_hash;
	unsigned char *buf = malloc(len);
	struct h_stream s;

	snprintf(lis, sizeof(lis), "127.0.0.1:%u", lport);
	snprintf(tgt, sizeof(tgt), "127.0.0.1:%u", tport);
	conf = one_rule("tcp", lis, tgt, "proxy_protocol = \"v2\";");
	h_start(&d, conf);
	free(conf);
	cfd = connect_from("127.0.0.1", lport, me, sizeof(me), &me_port);
	ck_assert_int_ge(cfd, 0);
	w = (struct writer){ cfd, len, 11, -99 };
	ck_assert_int_eq(pthread_create(&t, NULL, writer_thread, &w), 0);
	/* The writer runs ahead while the target is not accepted yet. */
	sleep_s(0.2);
	tfd = accept_within(lfd, 10, &peer);
	ck_assert_int_ge(tfd, 0);
	ck_assert_int_eq(read_exact(tfd, hdr, sizeof(hdr), 10), 0);
	v2_expect4(want, 0x11, me, me_port, "127.0.0.1", lport);
	ck_assert_msg(memcmp(hdr, want, sizeof(want)) == 0, "the header is not the v2 one for %s:%u", me,
		      me_port);
	ck_assert_int_eq(h_read_all(tfd, &hash, 60), (long long)len);
	pthread_join(t, NULL);
	ck_assert_int_eq(w.result, 0);
	h_stream_init(&s, 11);
	h_stream_fill(&s, buf, len);
	want_hash = h_hash(H_HASH_INIT, buf, len);
	ck_assert_msg(hash == want_hash, "the client's bytes behind the header differ");
	close(tfd);
	close(cfd);
	close(lfd);
	free(buf);
	/* The counter is the client's bytes: the header is not among them. */
	ck_assert_int_eq(h_wait_counter(&d, "r", "tcp", "bytes_to_target", (long long)len, 5), (long long)len);
	h_stop(&d);
}
END_TEST

/*
 * A client that sends nothing: the v1 header reaches the target all the
 * same (a server that speaks first, SMTP or SSH, needs it before it
 * greets), and the client's close after it is passed on as an EOF.
 */
START_TEST(test_silent_client)
{
	struct hdaemon d;
	unsigned tport, lport = h_free_port(SOCK_STREAM, false), me_port;
	int lfd = h_listen("127.0.0.1", &tport, 16), cfd, tfd;
	char lis[64], tgt[64], me[INET6_ADDRSTRLEN], want[128], got[256], *conf;
	struct sockaddr_storage peer;

	snprintf(lis, sizeof(lis), "127.0.0.1:%u", lport);
	snprintf(tgt, sizeof(tgt), "127.0.0.1:%u", tport);
	conf = one_rule("tcp", lis, tgt, "proxy_protocol = \"v1\";");
	h_start(&d, conf);
	free(conf);
	cfd = connect_from("127.0.0.1", lport, me, sizeof(me), &me_port);
	ck_assert_int_ge(cfd, 0);
	tfd = accept_within(lfd, 10, &peer);
	ck_assert_int_ge(tfd, 0);
	snprintf(want, sizeof(want), "PROXY TCP4 %s 127.0.0.1 %u %u\r\n", me, me_port, lport);
	ck_assert_int_eq(read_exact(tfd, got, strlen(want), 5), 0);
	got[strlen(want)] = '\0';
	ck_assert_str_eq(got, want);
	/* Nothing more while the client is silent; its close comes as EOF. */
	ck_assert_int_eq(poll(&(struct pollfd){ .fd = tfd, .events = POLLIN }, 1, 300), 0);
	shutdown(cfd, SHUT_WR);
	ck_assert_int_eq(read_to_eof(tfd, got, sizeof(got), 5), 0);
	/* And the target's answer still reaches the client. */
	ck_assert_int_eq(write(tfd, "bye\n", 4), 4);
	close(tfd);
	ck_assert_int_eq(read_to_eof(cfd, got, sizeof(got), 5), 4);
	ck_assert_str_eq(got, "bye\n");
	close(cfd);
	close(lfd);
	h_stop(&d);
}
END_TEST

/* A reload that changes proxy_protocol: new connections get the new
 * header, one open before keeps the one it had (and gets no other). */
START_TEST(test_reload_changes_new_connections_only)
{
	struct hdaemon d;
	unsigned tport, lport = h_free_port(SOCK_STREAM, false), p1, p2;
	int lfd = h_listen("127.0.0.1", &tport, 16), c1, c2, t1, t2;
	char lis[64], tgt[64], me[INET6_ADDRSTRLEN], want[128], got[256], *conf;
	struct sockaddr_storage peer;
	uint8_t hdr[28], want2[28];
	bool ok;
	char *r;

	snprintf(lis, sizeof(lis), "127.0.0.1:%u", lport);
	snprintf(tgt, sizeof(tgt), "127.0.0.1:%u", tport);
	conf = one_rule("tcp", lis, tgt, "proxy_protocol = \"v1\";");
	h_start(&d, conf);
	free(conf);
	c1 = connect_from("127.0.0.1", lport, me, sizeof(me), &p1);
	ck_assert_int_ge(c1, 0);
	t1 = accept_within(lfd, 10, &peer);
	ck_assert_int_ge(t1, 0);
	snprintf(want, sizeof(want), "PROXY TCP4 %s 127.0.0.1 %u %u\r\n", me, p1, lport);
	ck_assert_int_eq(read_exact(t1, got, strlen(want), 5), 0);
	ck_assert(memcmp(got, want, strlen(want)) == 0);

	conf = one_rule("tcp", lis, tgt, "proxy_protocol = \"v2\";");
	h_write_conf(&d, conf);
	free(conf);
	r = h_ctl(d.sock, "reload", &ok);
	ck_assert_msg(r && ok, "reload: %s", r ? r : "(no reply)");
	free(r);

	c2 = connect_from("127.0.0.1", lport, me, sizeof(me), &p2);
	ck_assert_int_ge(c2, 0);
	t2 = accept_within(lfd, 10, &peer);
	ck_assert_int_ge(t2, 0);
	ck_assert_int_eq(read_exact(t2, hdr, sizeof(hdr), 5), 0);
	v2_expect4(want2, 0x11, me, p2, "127.0.0.1", lport);
	ck_assert(memcmp(hdr, want2, sizeof(want2)) == 0);
	/* The first connection carries on as it began: its bytes, no header. */
	ck_assert_int_eq(write(c1, "more", 4), 4);
	ck_assert_int_eq(read_exact(t1, got, 4, 5), 0);
	ck_assert(memcmp(got, "more", 4) == 0);
	close(c1);
	close(c2);
	close(t1);
	close(t2);
	close(lfd);
	h_stop(&d);
}
END_TEST

/* ---- UDP ---- */

static int udp_bound(const char *host, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr(host, port, &ss);
	int fd = socket(ss.ss_family, SOCK_DGRAM, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_msg(bind(fd, (struct sockaddr *)&ss, len) == 0, "bind %s:%u: %s", host, port,
		      strerror(errno));
	return fd;
}

static unsigned sock_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	getsockname(fd, (struct sockaddr *)&ss, &len);
	return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					     : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* One datagram on FD within SECONDS: its length, FROM its sender; -1 if none. */
static ssize_t recv_within(int fd, void *buf, size_t len, double seconds,
			   struct sockaddr_storage *from)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	socklen_t flen = sizeof(*from);

	if (poll(&p, 1, (int)(seconds * 1000)) != 1)
		return -1;
	return recvfrom(fd, buf, len, 0, (struct sockaddr *)from, &flen);
}

static void send_to(int fd, const char *host, unsigned port, const void *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = h_sockaddr(host, port, &ss);

	ck_assert_int_eq(sendto(fd, buf, len, 0, (struct sockaddr *)&ss, sl), (ssize_t)len);
}

/*
 * UDP, v2: every datagram to the target starts with the DGRAM header
 * (0x12 for IPv4, 0x22 for IPv6) naming the client and the address and
 * port it sent to, then its payload whole; the target's replies reach
 * the client as they were sent, with no header. On a rule bound to
 * 0.0.0.0 the destination is the address the datagram came to.
 */
START_TEST(test_udp_v2)
{
	struct hdaemon d;
	unsigned l4 = h_free_port(SOCK_DGRAM, false), l6 = h_free_port(SOCK_DGRAM, true);
	unsigned lw = h_free_port(SOCK_DGRAM, false);
	int t4 = udp_bound("127.0.0.1", 0), t6 = udp_bound("::1", 0);
	int c4 = udp_bound("127.0.0.1", 0), c6 = udp_bound("::1", 0), cw = udp_bound("127.0.0.1", 0);
	unsigned tp4 = sock_port(t4), tp6 = sock_port(t6);
	uint8_t buf[2048], want[64];
	struct sockaddr_storage from;
	char *conf = NULL;

	if (asprintf(&conf,
		     "defaults: { proxy_protocol = \"v2\"; };\n"
		     "rules: (\n"
		     " { name = \"u4\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; },\n"
		     " { name = \"u6\"; proto = \"udp\"; listen = \"[::1]:%u\"; target = \"[::1]:%u\"; },\n"
		     " { name = \"uw\"; proto = \"tcp+udp\"; listen = \"0.0.0.0:%u\"; target = \"127.0.0.1:%u\"; }\n"
		     ");",
		     l4, tp4, l6, tp6, lw, tp4) < 0)
		ck_abort_msg("asprintf");
	h_start(&d, conf);
	free(conf);

	/* IPv4: two datagrams, each with its header. */
	for (int i = 0; i < 2; i++) {
		const char *payload = i ? "second datagram" : "first";
		size_t plen = strlen(payload);
		ssize_t n;

		send_to(c4, "127.0.0.1", l4, payload, plen);
		n = recv_within(t4, buf, sizeof(buf), 5, &from);
		ck_assert_int_eq(n, (ssize_t)(28 + plen));
		v2_expect4(want, 0x12, "127.0.0.1", sock_port(c4), "127.0.0.1", l4);
		ck_assert_msg(memcmp(buf, want, 28) == 0, "IPv4 datagram %d: not the v2 DGRAM header", i);
		ck_assert(memcmp(buf + 28, payload, plen) == 0);
	}
	/* Three datagrams sent coalesced (UDP_SEGMENT, the listener has
	 * UDP_GRO): each gets its own header. */
	{
		int g4 = udp_bound("127.0.0.1", 0);
		struct sockaddr_storage ss;
		socklen_t sl = h_sockaddr("127.0.0.1", l4, &ss);

		ck_assert_int_eq(connect(g4, (struct sockaddr *)&ss, sl), 0);
		ck_assert_int_eq(h_udp_send_gso(g4, "aaaabbbbcc", 10, 4), 10);
		for (int i = 0; i < 3; i++) {
			ssize_t n = recv_within(t4, buf, sizeof(buf), 5, &from);

			ck_assert_int_eq(n, 28 + (i == 2 ? 2 : 4));
			v2_expect4(want, 0x12, "127.0.0.1", sock_port(g4), "127.0.0.1", l4);
			ck_assert_msg(memcmp(buf, want, 28) == 0, "coalesced datagram %d: not the v2 header", i);
			ck_assert(memcmp(buf + 28, &"aaaabbbbcc"[4 * i], (size_t)(n - 28)) == 0);
		}
		close(g4);
	}
	/* A reply comes back bare (to the first client). */
	{
		ssize_t n;

		send_to(c4, "127.0.0.1", l4, "again", 5);
		n = recv_within(t4, buf, sizeof(buf), 5, &from);
		ck_assert_int_eq(n, 28 + 5);
	}
	ck_assert_int_eq(sendto(t4, "reply4", 6, 0, (struct sockaddr *)&from,
				from.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)), 6);
	ck_assert_int_eq(recv_within(c4, buf, sizeof(buf), 5, &from), 6);
	ck_assert(memcmp(buf, "reply4", 6) == 0);

	/* IPv6: 0x22, 36 bytes of addresses. */
	{
		struct in6_addr lo = IN6ADDR_LOOPBACK_INIT;
		unsigned cp = sock_port(c6);
		ssize_t n;

		send_to(c6, "::1", l6, "six", 3);
		n = recv_within(t6, buf, sizeof(buf), 5, &from);
		ck_assert_int_eq(n, 52 + 3);
		ck_assert(memcmp(buf, v2sig, 12) == 0);
		ck_assert_uint_eq(buf[12], 0x21);
		ck_assert_uint_eq(buf[13], 0x22);
		ck_assert_uint_eq(buf[14], 0);
		ck_assert_uint_eq(buf[15], 36);
		ck_assert(memcmp(buf + 16, &lo, 16) == 0);
		ck_assert(memcmp(buf + 32, &lo, 16) == 0);
		ck_assert_uint_eq(buf[48], cp >> 8);
		ck_assert_uint_eq(buf[49], cp & 0xff);
		ck_assert_uint_eq(buf[50], l6 >> 8);
		ck_assert_uint_eq(buf[51], l6 & 0xff);
		ck_assert(memcmp(buf + 52, "six", 3) == 0);
		ck_assert_int_eq(sendto(t6, "reply6", 6, 0, (struct sockaddr *)&from, sizeof(struct sockaddr_in6)), 6);
		ck_assert_int_eq(recv_within(c6, buf, sizeof(buf), 5, &from), 6);
		ck_assert(memcmp(buf, "reply6", 6) == 0);
	}

	/* The wildcard rule: sent to 127.0.0.2, the header says 127.0.0.2. */
	{
		ssize_t n;

		send_to(cw, "127.0.0.2", lw, "wild", 4);
		n = recv_within(t4, buf, sizeof(buf), 5, &from);
		ck_assert_int_eq(n, 28 + 4);
		v2_expect4(want, 0x12, "127.0.0.1", sock_port(cw), "127.0.0.2", lw);
		ck_assert_msg(memcmp(buf, want, 28) == 0, "wildcard rule: the destination is not 127.0.0.2:%u", lw);
		ck_assert(memcmp(buf + 28, "wild", 4) == 0);
	}
	/* The counters count the clients' bytes, not the headers. */
	ck_assert_int_eq(h_counter(&d, "u4", "udp", "bytes_to_target"), 5 + 15 + 10 + 5);
	ck_assert_int_eq(h_counter(&d, "u4", "udp", "bytes_to_client"), 6);
	close(c4);
	close(c6);
	close(cw);
	close(t4);
	close(t6);
	h_stop(&d);
}
END_TEST

/* ---- source ---- */

/* source = "127.0.0.2": the target sees its TCP connections and UDP
 * datagrams come from 127.0.0.2 (without it, from 127.0.0.1). */
/*
 * A UDP port range with v2: each datagram's header names the port of the
 * range it was sent to, not the range's first.
 */
START_TEST(test_udp_v2_range)
{
	struct hdaemon d;
	int t = udp_bound("127.0.0.1", 0), c = udp_bound("127.0.0.1", 0);
	unsigned base = 0, tp = sock_port(t);
	uint8_t buf[256], want[28];
	struct sockaddr_storage from;
	char *conf = NULL;

	/* Three consecutive ports free for UDP, below the ephemeral range. */
	for (unsigned p = 21000 + (unsigned)(getpid() % 500) * 8; !base && p < 31000; p += 3) {
		int fds[3], k;

		for (k = 0; k < 3; k++) {
			struct sockaddr_storage ss;
			socklen_t len = h_sockaddr("127.0.0.1", p + (unsigned)k, &ss);

			fds[k] = socket(AF_INET, SOCK_DGRAM, 0);
			if (fds[k] < 0 || bind(fds[k], (struct sockaddr *)&ss, len) < 0) {
				if (fds[k] >= 0)
					close(fds[k]);
				break;
			}
		}
		if (k == 3)
			base = p;
		while (k-- > 0)
			close(fds[k]);
	}
	ck_assert_uint_ne(base, 0);
	if (asprintf(&conf,
		     "rules: ( { name = \"ur\"; proto = \"udp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:%u\"; proxy_protocol = \"v2\"; } );",
		     base, base + 2, tp) < 0)
		ck_abort_msg("asprintf");
	h_start(&d, conf);
	free(conf);
	for (unsigned k = 0; k < 3; k += 2) {
		send_to(c, "127.0.0.1", base + k, "x", 1);
		ck_assert_int_eq(recv_within(t, buf, sizeof(buf), 5, &from), 29);
		v2_expect4(want, 0x12, "127.0.0.1", sock_port(c), "127.0.0.1", base + k);
		ck_assert_msg(memcmp(buf, want, 28) == 0, "the header of a datagram to %u names port %u",
			      base + k, (unsigned)buf[26] << 8 | buf[27]);
	}
	h_stop(&d);
	close(t);
	close(c);
}
END_TEST

START_TEST(test_source_address)
{
	struct hdaemon d;
	unsigned tport, lport = h_free_port(SOCK_STREAM, false), uport = h_free_port(SOCK_DGRAM, false);
	unsigned plain = h_free_port(SOCK_STREAM, false);
	int lfd = h_listen("127.0.0.1", &tport, 16), ut = udp_bound("127.0.0.1", 0), uc = udp_bound("127.0.0.1", 0);
	int cfd, tfd;
	char *conf = NULL, addr[INET6_ADDRSTRLEN], me[INET6_ADDRSTRLEN];
	struct sockaddr_storage peer;
	uint8_t buf[64];
	unsigned me_port;

	if (asprintf(&conf,
		     "rules: (\n"
		     " { name = \"t\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; source = \"127.0.0.2\"; },\n"
		     " { name = \"u\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; source = \"127.0.0.2\"; },\n"
		     " { name = \"plain\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; }\n"
		     ");",
		     lport, tport, uport, sock_port(ut), plain, tport) < 0)
		ck_abort_msg("asprintf");
	h_start(&d, conf);
	free(conf);

	for (int i = 0; i < 2; i++) {
		cfd = connect_from("127.0.0.1", i ? plain : lport, me, sizeof(me), &me_port);
		ck_assert_int_ge(cfd, 0);
		tfd = accept_within(lfd, 10, &peer);
		ck_assert_int_ge(tfd, 0);
		inet_ntop(AF_INET, &((struct sockaddr_in *)&peer)->sin_addr, addr, sizeof(addr));
		ck_assert_str_eq(addr, i ? "127.0.0.1" : "127.0.0.2");
		/* And bytes flow. */
		ck_assert_int_eq(write(cfd, "x", 1), 1);
		ck_assert_int_eq(read_exact(tfd, buf, 1, 5), 0);
		close(tfd);
		close(cfd);
	}

	send_to(uc, "127.0.0.1", uport, "dgram", 5);
	ck_assert_int_eq(recv_within(ut, buf, sizeof(buf), 5, &peer), 5);
	inet_ntop(AF_INET, &((struct sockaddr_in *)&peer)->sin_addr, addr, sizeof(addr));
	ck_assert_str_eq(addr, "127.0.0.2");
	ck_assert_int_eq(sendto(ut, "back", 4, 0, (struct sockaddr *)&peer, sizeof(struct sockaddr_in)), 4);
	ck_assert_int_eq(recv_within(uc, buf, sizeof(buf), 5, &peer), 4);
	close(uc);
	close(ut);
	close(lfd);
	h_stop(&d);
}
END_TEST

/*
 * A source this host does not have: `portfwd -t` and the start-up warn;
 * a connection is closed (reset) with the reason in the log, as a failed
 * connect is, and a datagram is dropped with its reason.
 */
START_TEST(test_source_not_local)
{
	struct hdaemon d;
	unsigned tport, lport = h_free_port(SOCK_STREAM, false), uport = h_free_port(SOCK_DGRAM, false);
	int lfd = h_listen("127.0.0.1", &tport, 16), uc = udp_bound("127.0.0.1", 0), cfd;
	char *conf = NULL, *out = NULL, c;
	struct sockaddr_storage peer;
	const char *bin = h_bin("PORTFWD_BIN", "build/default/portfwd");
	ssize_t n;

	if (asprintf(&conf,
		     "rules: (\n"
		     " { name = \"t\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; source = \"192.0.2.77\"; },\n"
		     " { name = \"u\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; source = \"192.0.2.77\"; }\n"
		     ");",
		     lport, tport, uport, tport) < 0)
		ck_abort_msg("asprintf");
	h_start(&d, conf);
	free(conf);
	{
		char *argv[] = { (char *)bin, "-t", "-c", d.conf, NULL };
		int st = h_run(argv, &out);

		ck_assert_msg(st == 0, "portfwd -t: %d: %s", st, out);
		ck_assert_msg(strstr(out, "warning: rule \"t\": source 192.0.2.77 is not an address of this host"),
			      "%s", out);
		free(out);
	}
	ck_assert(h_log_contains(&d, "rule \"u\": source 192.0.2.77 is not an address of this host"));

	cfd = h_connect("127.0.0.1", lport);
	ck_assert_int_ge(cfd, 0);
	ck_assert_int_eq(poll(&(struct pollfd){ .fd = cfd, .events = POLLIN }, 1, 5000), 1);
	n = read(cfd, &c, 1);
	ck_assert_msg(n < 0 && errno == ECONNRESET, "not reset: %zd %s", n, strerror(errno));
	close(cfd);
	ck_assert_int_lt(accept_within(lfd, 0.2, &peer), 0);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "connect_failed", 1, 3), 1);
	ck_assert(h_wait_log(&d, "connect failed: cannot bind the source address 192.0.2.77: Cannot assign requested address", 3));

	send_to(uc, "127.0.0.1", uport, "dgram", 5);
	ck_assert(h_wait_log(&d, "udp u: cannot bind the source address 192.0.2.77: Cannot assign requested address", 3));
	ck_assert_int_eq(h_counter(&d, "u", "udp", "sessions_created"), 0);
	close(uc);
	close(lfd);
	h_stop(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("proxy");
	TCase *tc = tcase_create("proxy");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_nginx);
	tcase_add_test(tc, test_haproxy);
	tcase_add_test(tc, test_large_first_write);
	tcase_add_test(tc, test_silent_client);
	tcase_add_test(tc, test_reload_changes_new_connections_only);
	tcase_add_test(tc, test_udp_v2);
	tcase_add_test(tc, test_udp_v2_range);
	tcase_add_test(tc, test_source_address);
	tcase_add_test(tc, test_source_not_local);
	suite_add_tcase(s, tc);
	return check_run(s);
}
