/*
 * A real DNS server for tests: dnsmasq on a free loopback port, answering
 * the .lan names of a hosts file of the test's own (and NXDOMAIN for any
 * other .lan name), with a TTL the test chooses. dns_set rewrites the file
 * and has dnsmasq read it again (SIGHUP). Static functions: include it in
 * one test program.
 */
#ifndef PORTFWD_TEST_DNSMASQ_H
#define PORTFWD_TEST_DNSMASQ_H

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double dns_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct dns {
	char dir[64], hosts[96], pidfile[96];
	unsigned port;
	pid_t pid;
};

/* A loopback port free for UDP and TCP alike (dnsmasq takes both). */
static unsigned dns_free_port(void)
{
	for (int tries = 0; tries < 100; tries++) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(sin);
		int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
		bool ok;

		ck_assert_int_ge(u, 0);
		ck_assert_int_ge(t, 0);
		ck_assert_int_eq(bind(u, (struct sockaddr *)&sin, sizeof(sin)), 0);
		getsockname(u, (struct sockaddr *)&sin, &len);
		ok = bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		close(u);
		close(t);
		if (ok)
			return ntohs(sin.sin_port);
	}
	ck_abort_msg("no loopback port free for both UDP and TCP");
	return 0;
}

static void dns_write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	fclose(fp);
	chmod(path, 0644);
}

/* Asks dnsmasq whether it answers yet: any reply to a query will do. */
static bool dns_answers(unsigned port)
{
	/* A query for "a.lan" A, id 0x1234, recursion desired. */
	static const unsigned char q[] = { 0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
					   1,    'a',  3, 'l', 'a', 'n', 0, 0, 1, 0, 1 };
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { 0, 200000 };
	unsigned char buf[512];
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	ssize_t n;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	sendto(fd, q, sizeof(q), 0, (struct sockaddr *)&sin, sizeof(sin));
	n = recv(fd, buf, sizeof(buf), 0);
	close(fd);
	return n >= 12 && buf[0] == 0x12 && buf[1] == 0x34;
}

/* dnsmasq on 127.0.0.1:PORT answering the .lan names of HOSTS with TTL. */
static void dns_start(struct dns *d, const char *hosts, unsigned ttl)
{
	char port[32], addn[128], pidf[128], lttl[32];
	double deadline;

	snprintf(d->dir, sizeof(d->dir), "/tmp/portfwd-resolve.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(d->dir));
	chmod(d->dir, 0755); /* dnsmasq reads it again as its own user on SIGHUP */
	snprintf(d->hosts, sizeof(d->hosts), "%s/hosts", d->dir);
	snprintf(d->pidfile, sizeof(d->pidfile), "%s/pid", d->dir);
	dns_write_file(d->hosts, hosts);
	d->port = dns_free_port();
	snprintf(port, sizeof(port), "--port=%u", d->port);
	snprintf(addn, sizeof(addn), "--addn-hosts=%s", d->hosts);
	snprintf(pidf, sizeof(pidf), "--pid-file=%s", d->pidfile);
	snprintf(lttl, sizeof(lttl), "--local-ttl=%u", ttl);
	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		execl("/usr/sbin/dnsmasq", "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
		      port, "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
		      "--no-hosts", addn, lttl, "--local=/lan/", pidf, "--user=root", "--log-facility=/dev/null",
		      (char *)NULL);
		_exit(127);
	}
	deadline = dns_now() + 10;
	while (!dns_answers(d->port)) {
		ck_assert_msg(dns_now() < deadline, "dnsmasq did not answer on port %u within 10 s", d->port);
		ck_assert_int_eq(waitpid(d->pid, NULL, WNOHANG), 0);
	}
}

/* New contents for the hosts file; dnsmasq reads it again. */
static void dns_set(struct dns *d, const char *hosts)
{
	dns_write_file(d->hosts, hosts);
	ck_assert_int_eq(kill(d->pid, SIGHUP), 0);
}

static void dns_stop(struct dns *d)
{
	double deadline = dns_now() + 10;

	kill(d->pid, SIGTERM);
	while (waitpid(d->pid, NULL, WNOHANG) != d->pid) {
		if (dns_now() > deadline) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, NULL, 0);
			break;
		}
		usleep(10000);
	}
	unlink(d->hosts);
	unlink(d->pidfile);
	rmdir(d->dir);
}

#endif
