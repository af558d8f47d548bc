/*
 * pfbench: the small load tools and backends of scripts/bench, loopback only.
 *
 *   pfbench udp-echo PORT                 UDP echo server (until killed)
 *   pfbench tcp-echo PORT                 TCP echo server; FIN after the peer's FIN
 *   pfbench udp-rtt PORT SECONDS SIZE     one client, ping-pong: rate, p50, p99
 *   pfbench udp-many PORT CLIENTS         each client must get its own reply
 *   pfbench tcp-hash PORT MIB             MIB through an echo, compared byte for byte
 *   pfbench tcp-halfclose PORT            send, half-close, expect all back, then EOF
 *   pfbench tcp-idle PORT N SECONDS       hold N idle connections open
 *   pfbench tcp-conns PORT SECONDS THREADS  new connections a second: connect, a byte
 *                                         there and back, close; THREADS at once
 *   pfbench udp-sessions PORT SECONDS     new UDP clients a second: each a new socket,
 *                                         one datagram there and back
 *
 * Results are one JSON object on stdout. Every wait is bounded.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

static int bound(int type, int port)
{
	struct sockaddr_in sin = loopback(port);
	int fd = socket(AF_INET, type, 0), one = 1, big = 4 << 20;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (type == SOCK_DGRAM) {
		setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
		setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
	}
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		perror("bind");
		exit(2);
	}
	if (type == SOCK_STREAM)
		listen(fd, 4096);
	return fd;
}

static int connected(int type, int port)
{
	struct sockaddr_in sin = loopback(port);
	int fd = socket(AF_INET, type, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static __attribute__((noreturn)) void udp_echo(int port)
{
	enum { B = 32 };
	static unsigned char buf[B][65536];
	int fd = bound(SOCK_DGRAM, port);
	struct mmsghdr m[B];
	struct iovec iov[B];
	struct sockaddr_in from[B];

	for (;;) {
		int n;

		for (int i = 0; i < B; i++) {
			iov[i] = (struct iovec){ buf[i], sizeof(buf[i]) };
			memset(&m[i], 0, sizeof(m[i]));
			m[i].msg_hdr.msg_iov = &iov[i];
			m[i].msg_hdr.msg_iovlen = 1;
			m[i].msg_hdr.msg_name = &from[i];
			m[i].msg_hdr.msg_namelen = sizeof(from[i]);
		}
		n = recvmmsg(fd, m, B, MSG_WAITFORONE, NULL);
		if (n <= 0)
			continue;
		for (int i = 0; i < n; i++)
			iov[i].iov_len = m[i].msg_len;
		sendmmsg(fd, m, (unsigned)n, 0);
	}
}

static void *tcp_echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[65536];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t off = 0; off < n;) {
			ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);

			if (w <= 0)
				goto out;
			off += w;
		}
	shutdown(fd, SHUT_WR);
out:
	close(fd);
	return NULL;
}

static __attribute__((noreturn)) void tcp_echo(int port)
{
	int fd = bound(SOCK_STREAM, port);

	for (;;) {
		int c = accept(fd, NULL, NULL);
		pthread_t t;
		pthread_attr_t a;

		if (c < 0)
			continue;
		pthread_attr_init(&a);
		pthread_attr_setstacksize(&a, 256 << 10);
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &a, tcp_echo_conn, (void *)(intptr_t)c) != 0)
			close(c);
		pthread_attr_destroy(&a);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int udp_rtt(int port, double seconds, int size)
{
	int fd = connected(SOCK_DGRAM, port);
	size_t cap = 1 << 22, n = 0, lost = 0;
	double *rtt = malloc(cap * sizeof(*rtt)), end = now() + seconds, t0 = now();
	unsigned char out[65536], in[65536];

	memset(out, 'p', sizeof(out));
	while (now() < end && n < cap) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		double t = now();

		if (send(fd, out, (size_t)size, 0) != size) {
			lost++;
			continue;
		}
		if (poll(&p, 1, 200) == 1 && recv(fd, in, sizeof(in), 0) == size)
			rtt[n++] = (now() - t) * 1e6;
		else
			lost++;
	}
	qsort(rtt, n, sizeof(*rtt), cmp_double);
	printf("{\"round_trips_per_s\": %.0f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"lost\": %zu}\n",
	       (double)n / (now() - t0), n ? rtt[n / 2] : 0, n ? rtt[n * 99 / 100] : 0, lost);
	return 0;
}

static int udp_many(int port, int clients)
{
	int *fds = calloc((size_t)clients, sizeof(*fds)), answered = 0, wrong = 0, opened = 0;
	struct pollfd *p = calloc((size_t)clients, sizeof(*p));
	char *got = calloc((size_t)clients, 1);
	double end = now() + 10;

	for (int i = 0; i < clients; i++) {
		char msg[32];
		int len = snprintf(msg, sizeof(msg), "client %d", i);

		fds[i] = connected(SOCK_DGRAM, port);
		p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
		if (fds[i] < 0)
			continue;
		opened++;
		send(fds[i], msg, (size_t)len, 0);
		if (i % 50 == 49)
			usleep(1000); /* pace: the test is routing, not buffer overflow */
	}
	while (answered + wrong < opened && now() < end) {
		if (poll(p, (nfds_t)clients, 200) <= 0)
			continue;
		for (int i = 0; i < clients; i++) {
			char buf[64], want[32];
			ssize_t n;

			if (fds[i] < 0 || !(p[i].revents & POLLIN))
				continue;
			n = recv(fds[i], buf, sizeof(buf) - 1, 0);
			if (n <= 0)
				continue;
			buf[n] = '\0';
			snprintf(want, sizeof(want), "client %d", i);
			if (strcmp(buf, want) == 0 && !got[i]) {
				got[i] = 1;
				answered++;
			} else {
				wrong++;
			}
		}
	}
	printf("{\"clients\": %d, \"opened\": %d, \"answered\": %d, \"wrong\": %d}\n", clients, opened,
	       answered, wrong);
	return 0;
}

/* The same pseudo-random stream on both ends; the position carries over. */
struct stream {
	uint64_t s, pos;
};

static void stream_fill(struct stream *st, unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++, st->pos++) {
		if ((st->pos & 7) == 0) {
			st->s ^= st->s >> 12;
			st->s ^= st->s << 25;
			st->s ^= st->s >> 27;
		}
		b[i] = (unsigned char)((st->s * 0x2545F4914F6CDD1DULL) >> (8 * (st->pos & 7)));
	}
}

/* Sends LEN bytes and expects them back, then EOF. 0 if intact. */
static int echo_check(int fd, size_t len, double seconds)
{
	struct stream tx = { 88172645463325252ULL, 0 }, rx = tx;
	static unsigned char out[65536], in[65536], want[65536];
	size_t sent = 0, got = 0, olen = 0, ooff = 0;
	double end = now() + seconds;
	int shut = 0;

	fcntl(fd, F_SETFL, O_NONBLOCK);
	while (now() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN | (shut ? 0 : POLLOUT) };
		ssize_t n;

		if (poll(&p, 1, 200) <= 0)
			continue;
		if (p.revents & POLLOUT) {
			if (ooff == olen && sent < len) {
				olen = len - sent < sizeof(out) ? len - sent : sizeof(out);
				stream_fill(&tx, out, olen);
				ooff = 0;
				sent += olen;
			}
			if (ooff < olen && (n = send(fd, out + ooff, olen - ooff, MSG_NOSIGNAL)) > 0)
				ooff += (size_t)n;
			if (sent == len && ooff == olen) {
				shutdown(fd, SHUT_WR);
				shut = 1;
			}
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(fd, in, sizeof(in));
			if (n == 0)
				return got == len && shut ? 0 : 1;
			if (n < 0)
				continue;
			stream_fill(&rx, want, (size_t)n);
			if (memcmp(in, want, (size_t)n) != 0)
				return 2;
			got += (size_t)n;
		}
	}
	return 3;
}

static int tcp_hash(int port, int mib)
{
	int fd = connected(SOCK_STREAM, port);
	double t0 = now();
	int r = fd < 0 ? 4 : echo_check(fd, (size_t)mib << 20, 120);

	printf("{\"ok\": %s, \"mib\": %d, \"seconds\": %.3f, \"code\": %d}\n", r ? "false" : "true", mib,
	       now() - t0, r);
	return 0;
}

static int tcp_halfclose(int port)
{
	int fd = connected(SOCK_STREAM, port);
	int r = fd < 0 ? 4 : echo_check(fd, 100000, 10);

	printf("{\"ok\": %s, \"code\": %d}\n", r ? "false" : "true", r);
	return 0;
}

static int tcp_idle(int port, int n, double seconds)
{
	int opened = 0;
	double end;

	for (int i = 0; i < n; i++) {
		int fd = connected(SOCK_STREAM, port);

		if (fd < 0)
			break;
		opened++;
	}
	printf("{\"opened\": %d}\n", opened);
	fflush(stdout);
	end = now() + seconds;
	/* Hold them until told (stdin closes) or the time is up. */
	while (now() < end) {
		struct pollfd p = { .fd = 0, .events = POLLIN };
		char c;

		if (poll(&p, 1, 100) == 1 && read(0, &c, 1) <= 0)
			break;
	}
	return 0;
}

struct conns {
	int port;
	double end;
	long ok, failed;
};

static void *tcp_conns_thread(void *arg)
{
	struct conns *c = arg;
	char b = 'x';

	while (now() < c->end) {
		int fd = connected(SOCK_STREAM, c->port);

		if (fd >= 0 && send(fd, &b, 1, MSG_NOSIGNAL) == 1 && recv(fd, &b, 1, 0) == 1)
			c->ok++;
		else
			c->failed++;
		if (fd >= 0)
			close(fd);
	}
	return NULL;
}

static int tcp_conns(int port, double seconds, int threads)
{
	struct conns *c = calloc((size_t)threads, sizeof(*c));
	pthread_t *t = calloc((size_t)threads, sizeof(*t));
	double t0 = now();
	long ok = 0, failed = 0;

	for (int i = 0; i < threads; i++) {
		c[i] = (struct conns){ port, t0 + seconds, 0, 0 };
		pthread_create(&t[i], NULL, tcp_conns_thread, &c[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		ok += c[i].ok;
		failed += c[i].failed;
	}
	printf("{\"conns_per_s\": %.0f, \"failed\": %ld}\n", (double)ok / (now() - t0), failed);
	return 0;
}

static int udp_sessions(int port, double seconds)
{
	double t0 = now(), end = t0 + seconds;
	long ok = 0, lost = 0;
	char b[8];

	while (now() < end) {
		int fd = connected(SOCK_DGRAM, port);
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (fd >= 0 && send(fd, "s", 1, 0) == 1 && poll(&p, 1, 200) == 1 && recv(fd, b, sizeof(b), 0) == 1)
			ok++;
		else
			lost++;
		if (fd >= 0)
			close(fd);
	}
	printf("{\"sessions_per_s\": %.0f, \"lost\": %ld}\n", (double)ok / (now() - t0), lost);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 3 && strcmp(argv[1], "udp-echo") == 0)
		udp_echo(atoi(argv[2]));
	if (argc >= 3 && strcmp(argv[1], "tcp-echo") == 0)
		tcp_echo(atoi(argv[2]));
	if (argc >= 5 && strcmp(argv[1], "udp-rtt") == 0)
		return udp_rtt(atoi(argv[2]), atof(argv[3]), atoi(argv[4]));
	if (argc >= 4 && strcmp(argv[1], "udp-many") == 0)
		return udp_many(atoi(argv[2]), atoi(argv[3]));
	if (argc >= 4 && strcmp(argv[1], "tcp-hash") == 0)
		return tcp_hash(atoi(argv[2]), atoi(argv[3]));
	if (argc >= 3 && strcmp(argv[1], "tcp-halfclose") == 0)
		return tcp_halfclose(atoi(argv[2]));
	if (argc >= 5 && strcmp(argv[1], "tcp-idle") == 0)
		return tcp_idle(atoi(argv[2]), atoi(argv[3]), atof(argv[4]));
	if (argc >= 5 && strcmp(argv[1], "tcp-conns") == 0)
		return tcp_conns(atoi(argv[2]), atof(argv[3]), atoi(argv[4]));
	if (argc >= 4 && strcmp(argv[1], "udp-sessions") == 0)
		return udp_sessions(atoi(argv[2]), atof(argv[3]));
	fprintf(stderr, "usage: see the comment at the top of bench/pfbench.c\n");
	return 2;
}
