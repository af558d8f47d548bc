/*
 * portfwd as a system service: the systemd notify protocol (the test plays
 * systemd), privilege drop, the control socket's permissions, the unit file
 * and make install.
 */
#include <check.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_run.h"
#include "harness.h"

static const char *bin(const char *var, const char *fallback)
{
	const char *v = getenv(var);

	return v && *v ? v : fallback;
}

#define PORTFWDCTL bin("PORTFWDCTL_BIN", "build/default/portfwdctl")

static char rule_body[512];

static const char *one_rule(unsigned port, unsigned target)
{
	snprintf(rule_body, sizeof(rule_body),
		 "rules: ( { name = \"echo\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 port, target);
	return rule_body;
}

/* ---- the notify protocol ---- */

/* The next datagram on FD within SECONDS, or NULL. */
static char *notify_next(int fd, double seconds)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char buf[2048];
	ssize_t n;

	if (poll(&p, 1, (int)(seconds * 1000)) <= 0)
		return NULL;
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return strdup(buf);
}

/* Reads datagrams (skipping watchdog and status pings) until one holds
 * WANT; fails the test after SECONDS. Returns it. */
static char *notify_expect(int fd, const char *want, double seconds)
{
	double deadline = h_now() + seconds;

	while (h_now() < deadline) {
		char *m = notify_next(fd, deadline - h_now());

		if (!m)
			break;
		if (strstr(m, want))
			return m;
		ck_assert_msg(strncmp(m, "WATCHDOG=1", 10) == 0 || strncmp(m, "STATUS=", 7) == 0,
			      "unexpected \"%s\" while waiting for %s", m, want);
		free(m);
	}
	ck_abort_msg("no %s from portfwd within %g s", want, seconds);
	return NULL;
}

START_TEST(test_notify_protocol)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct h_backend echo;
	struct hdaemon d;
	char path[96], *m, *out;
	char *argv[] = { (char *)PORTFWDCTL, "-s", NULL, "reload", NULL };
	int fd, watchdogs = 0;
	double t0;

	snprintf(path, sizeof(path), "/tmp/portfwd-notify.%d", (int)getpid());
	unlink(path);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	setenv("NOTIFY_SOCKET", path, 1);
	setenv("WATCHDOG_USEC", "400000", 1);
	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, one_rule(h_free_port(SOCK_STREAM, false), echo.port));
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");

	/* READY=1 comes first, with the main pid and a summary. */
	m = notify_next(fd, 5);
	ck_assert_ptr_nonnull(m);
	ck_assert_msg(strncmp(m, "READY=1\n", 8) == 0, "first message: %s", m);
	ck_assert_msg(strstr(m, "STATUS=1 of 1 rules listening"), "%s", m);
	{
		char pid[32];

		snprintf(pid, sizeof(pid), "MAINPID=%d", (int)d.pid);
		ck_assert_msg(strstr(m, pid), "%s", m);
	}
	free(m);

	/* WATCHDOG=1 about every 200 ms (half of WATCHDOG_USEC). */
	t0 = h_now();
	while (watchdogs < 3 && h_now() - t0 < 5) {
		m = notify_next(fd, 1);
		if (m && strncmp(m, "WATCHDOG=1", 10) == 0)
			watchdogs++;
		free(m);
	}
	ck_assert_int_eq(watchdogs, 3);
	ck_assert(h_now() - t0 < 2);

	/* A reload: RELOADING=1 with the monotonic time, then READY=1. */
	argv[2] = d.sock;
	ck_assert_int_eq(h_run(argv, &out), 0);
	free(out);
	m = notify_expect(fd, "RELOADING=1", 5);
	ck_assert_msg(strstr(m, "\nMONOTONIC_USEC="), "%s", m);
	{
		struct timespec ts;
		unsigned long long usec = strtoull(strstr(m, "MONOTONIC_USEC=") + 15, NULL, 10);

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ck_assert(usec > 0 && usec <= (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
	}
	free(m);
	m = notify_expect(fd, "READY=1", 5);
	free(m);

	/* A failed reload also ends in READY=1, with a status that says so. */
	{
		FILE *fp = fopen(d.conf, "w");

		fputs("rules = ( oops", fp);
		fclose(fp);
	}
	ck_assert_int_eq(h_run(argv, &out), 1);
	free(out);
	free(notify_expect(fd, "RELOADING=1", 5));
	m = notify_expect(fd, "READY=1", 5);
	ck_assert_msg(strstr(m, "STATUS=reload failed"), "%s", m);
	free(m);

	/* STOPPING=1 on shutdown. */
	kill(d.pid, SIGTERM);
	m = notify_expect(fd, "STOPPING=1", 5);
	free(m);
	h_stop(&d);
	close(fd);
	unlink(path);
	h_backend_stop(&echo);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("service");
	TCase *tc = tcase_create("service");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_notify_protocol);
	suite_add_tcase(s, tc);
	return check_run(s);
}
