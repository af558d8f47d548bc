/*
 * portfwd as a system service: the systemd notify protocol (the test plays
 * systemd), privilege drop, the control socket's permissions, the unit file
 * and make install.
 */
#include <check.h>
#include <dirent.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
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
#include "version.h"

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

/*
 * Starts D (one rule to the echo backend ECHO, started here) as systemd
 * would with a watchdog of 400 ms, its notify socket at PATH (LEN bytes
 * for it). Returns the socket the messages come to.
 */
static int notify_start(struct hdaemon *d, struct h_backend *echo, char *path, size_t len)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	snprintf(path, len, "/tmp/portfwd-notify.%d", (int)getpid());
	unlink(path);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	setenv("NOTIFY_SOCKET", path, 1);
	setenv("WATCHDOG_USEC", "400000", 1);
	h_backend_start(echo, H_ECHO, false);
	h_start(d, one_rule(h_free_port(SOCK_STREAM, false), echo->port));
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	return fd;
}

START_TEST(test_notify_protocol)
{
	struct h_backend echo;
	struct hdaemon d;
	char path[96], *m, *out;
	char *argv[] = { (char *)PORTFWDCTL, "-s", NULL, "reload", NULL };
	int fd, watchdogs = 0;
	double t0;

	fd = notify_start(&d, &echo, path, sizeof(path));

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

	/* STOPPING=1 on shutdown. One SIGTERM only (h_stop's), the message
	 * read once the daemon has exited: a second SIGTERM, sent while the
	 * daemon shut down after the first, found its handler already gone
	 * (slow under AddressSanitizer) and ended it by the signal. */
	h_stop(&d);
	m = notify_expect(fd, "STOPPING=1", 5);
	free(m);
	close(fd);
	unlink(path);
	h_backend_stop(&echo);
}
END_TEST


/* The thread ids of PID's workers (named portfwd-wN); returns how many. */
static int worker_tids(pid_t pid, pid_t *tids, int max)
{
	char path[64];
	DIR *dir;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	ck_assert_ptr_nonnull(dir);
	while ((e = readdir(dir)) && n < max) {
		char comm[64] = "", cpath[sizeof(path) + 300];
		FILE *fp;

		if (e->d_name[0] == '.')
			continue;
		snprintf(cpath, sizeof(cpath), "%s/%s/comm", path, e->d_name);
		fp = fopen(cpath, "r");
		if (fp && fgets(comm, sizeof(comm), fp) && strncmp(comm, "portfwd-w", 9) == 0)
			tids[n++] = (pid_t)atoi(e->d_name);
		if (fp)
			fclose(fp);
	}
	closedir(dir);
	return n;
}

/* How many WATCHDOG=1 come on FD within SECONDS. */
static int notify_count_watchdogs(int fd, double seconds)
{
	double deadline = h_now() + seconds;
	int n = 0;

	while (h_now() < deadline) {
		char *m = notify_next(fd, deadline - h_now());

		if (m && strncmp(m, "WATCHDOG=1", 10) == 0)
			n++;
		free(m);
	}
	return n;
}

/*
 * A worker whose loop is stuck (here: stopped by ptrace, the rest of the
 * process running on) no longer answers the main loop's pings: WATCHDOG=1
 * stops, so that systemd restarts the service, and the log says how many
 * workers did not answer. Once it runs again, WATCHDOG=1 comes back.
 */
START_TEST(test_stalled_worker_stops_watchdog)
{
	struct h_backend echo;
	struct hdaemon d;
	char path[96], *m, want[96];
	pid_t tids[8], tid;
	int fd, status, nworkers;

	fd = notify_start(&d, &echo, path, sizeof(path));
	m = notify_expect(fd, "READY=1", 5);
	free(m);
	ck_assert_int_ge(notify_count_watchdogs(fd, 1), 2);

	nworkers = worker_tids(d.pid, tids, 8);
	ck_assert_int_ge(nworkers, 1);
	tid = tids[0];
	ck_assert_int_eq(ptrace(PTRACE_SEIZE, tid, NULL, NULL), 0);
	ck_assert_int_eq(ptrace(PTRACE_INTERRUPT, tid, NULL, NULL), 0);
	ck_assert_int_eq(waitpid(tid, &status, __WALL), tid);
	ck_assert(WIFSTOPPED(status));

	snprintf(want, sizeof(want), "watchdog: 1 of %d workers did not answer", nworkers);
	ck_assert_msg(h_wait_log(&d, want, 5), "no \"%s\" in the log", want);
	/* (A WATCHDOG=1 sent before the line may still be queued.) */
	notify_count_watchdogs(fd, 0.3);
	ck_assert_int_eq(notify_count_watchdogs(fd, 1.5), 0);

	ck_assert_int_eq(ptrace(PTRACE_DETACH, tid, NULL, NULL), 0);
	ck_assert_int_ge(notify_count_watchdogs(fd, 2), 2);
	h_stop(&d);
	h_backend_stop(&echo);
	close(fd);
	unlink(path);
}
END_TEST

/* ---- privilege drop ---- */

/* A free TCP port below BELOW (and 1024) on 127.0.0.1; the test runs as root. */
static unsigned low_port_below(unsigned below)
{
	for (unsigned p = below - 1; p > 600; p--) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)p),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		int ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

		close(fd);
		if (ok)
			return p;
	}
	ck_abort_msg("no free port below %u", below);
	return 0;
}

static unsigned low_port(void)
{
	return low_port_below(1001);
}

/* The rule "echo" on PORT and the rule NAME on PORT2, both to TARGET. */
static const char *two_rules(char *buf, size_t len, unsigned port, const char *name,
			     unsigned port2, unsigned target)
{
	snprintf(buf, len,
		 "rules: ( { name = \"echo\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; },\n"
		 "         { name = \"%s\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 port, target, name, port2, target);
	return buf;
}

/* The value of FIELD ("CapEff") in /proc/PID/status. */
static void proc_field(pid_t pid, const char *field, char *out, size_t len)
{
	char path[64], line[512];
	size_t flen = strlen(field);
	FILE *fp;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fp = fopen(path, "r");
	ck_assert_ptr_nonnull(fp);
	while (fgets(line, sizeof(line), fp))
		if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
			char *v = line + flen + 1;

			while (*v == ' ' || *v == '\t')
				v++;
			v[strcspn(v, "\n")] = '\0';
			snprintf(out, len, "%s", v);
		}
	fclose(fp);
}

static int echo_through(unsigned port)
{
	int fd = h_connect("127.0.0.1", port);
	int rc;

	if (fd < 0)
		return -1;
	rc = h_echo_exchange(fd, 5000, 3, 10);
	close(fd);
	return rc;
}

START_TEST(test_privilege_drop)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned low = low_port();
	char v[128], *out;
	struct passwd *nobody = getpwnam("nobody");
	struct group *nogroup = getgrnam("nogroup");
	json_t *st;

	if (geteuid() != 0) {
		fprintf(stderr, "test_privilege_drop: not root, skipped\n");
		return;
	}
	ck_assert_ptr_nonnull(nobody);
	ck_assert_ptr_nonnull(nogroup);
	h_backend_start(&echo, H_ECHO, false);
	h_daemon_extra = "user = \"nobody\"; group = \"nogroup\";";
	h_dir_mode = 0777;
	h_start(&d, one_rule(low, echo.port));

	/* Every uid and gid is nobody's, no supplementary group, only the bind
	 * capability (bit 10), an empty bounding set, no_new_privs. */
	proc_field(d.pid, "Uid", v, sizeof(v));
	snprintf(rule_body, sizeof(rule_body), "%u\t%u\t%u\t%u", (unsigned)nobody->pw_uid,
		 (unsigned)nobody->pw_uid, (unsigned)nobody->pw_uid, (unsigned)nobody->pw_uid);
	ck_assert_str_eq(v, rule_body);
	proc_field(d.pid, "Gid", v, sizeof(v));
	snprintf(rule_body, sizeof(rule_body), "%u\t%u\t%u\t%u", (unsigned)nogroup->gr_gid,
		 (unsigned)nogroup->gr_gid, (unsigned)nogroup->gr_gid, (unsigned)nogroup->gr_gid);
	ck_assert_str_eq(v, rule_body);
	proc_field(d.pid, "Groups", v, sizeof(v));
	ck_assert_str_eq(v, "");
	proc_field(d.pid, "CapEff", v, sizeof(v));
	ck_assert_str_eq(v, "0000000000000400");
	proc_field(d.pid, "CapPrm", v, sizeof(v));
	ck_assert_str_eq(v, "0000000000000400");
	proc_field(d.pid, "CapBnd", v, sizeof(v));
	ck_assert_str_eq(v, "0000000000000000");
	proc_field(d.pid, "NoNewPrivs", v, sizeof(v));
	ck_assert_str_eq(v, "1");
	/* Every thread, the workers too: capabilities belong to each thread. */
	{
		char dir[64], path[512], line[256];
		struct dirent *e;
		int threads = 0;
		DIR *dp;

		snprintf(dir, sizeof(dir), "/proc/%d/task", (int)d.pid);
		dp = opendir(dir);
		ck_assert_ptr_nonnull(dp);
		while ((e = readdir(dp))) {
			FILE *fp;

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s/status", dir, e->d_name);
			fp = fopen(path, "r");
			if (!fp)
				continue;
			while (fgets(line, sizeof(line), fp))
				if (strncmp(line, "CapEff:", 7) == 0)
					ck_assert_msg(strstr(line, "0000000000000400"), "thread %s: %s", e->d_name, line);
			fclose(fp);
			threads++;
		}
		closedir(dp);
		ck_assert_int_ge(threads, 2); /* the main thread and at least one worker */
	}
	/* The rule below 1024 forwards. */
	ck_assert_int_eq(echo_through(low), 0);
	st = h_status(&d);
	ck_assert_str_eq(json_string_value(json_object_get(st, "user")), "nobody");
	ck_assert(json_is_true(json_object_get(st, "can_bind_below_1024")));
	json_decref(st);
	ck_assert(h_log_contains(&d, "keeping only CAP_NET_BIND_SERVICE"));
	/* With the capability kept, a reload may add another low port. */
	{
		char body[1024];
		unsigned low2;
		char *argv[] = { (char *)PORTFWDCTL, "-s", d.sock, "reload", NULL };

		low2 = low_port_below(low);
		h_write_conf(&d, two_rules(body, sizeof(body), low, "low2", low2, echo.port));
		ck_assert_int_eq(h_run(argv, &out), 0);
		free(out);
		ck_assert_int_eq(echo_through(low2), 0);
	}
	h_stop(&d);
	h_daemon_extra = NULL;
	h_dir_mode = 0;
	h_backend_stop(&echo);
}
END_TEST

/* Started with no rules (as a fresh install is): the capability stays, and
 * the first reload may bring a rule below 1024. */
START_TEST(test_privilege_drop_no_rules)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned low = low_port();
	char body[512], *out;
	char *argv[] = { (char *)PORTFWDCTL, "-s", NULL, "reload", NULL };

	if (geteuid() != 0) {
		fprintf(stderr, "test_privilege_drop_no_rules: not root, skipped\n");
		return;
	}
	h_backend_start(&echo, H_ECHO, false);
	h_daemon_extra = "user = \"nobody\";";
	h_dir_mode = 0777;
	h_start(&d, "rules = ( );");
	ck_assert(h_log_contains(&d, "keeping only CAP_NET_BIND_SERVICE"));
	snprintf(body, sizeof(body), "rules: ( { name = \"low\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 low, echo.port);
	h_write_conf(&d, body);
	argv[2] = d.sock;
	ck_assert_int_eq(h_run(argv, &out), 0);
	free(out);
	ck_assert_int_eq(echo_through(low), 0);
	h_stop(&d);
	h_daemon_extra = NULL;
	h_dir_mode = 0;
	h_backend_stop(&echo);
}
END_TEST

/* No rule below 1024: no capability at all, and a reload cannot add one. */
START_TEST(test_privilege_drop_no_caps)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned port = h_free_port(SOCK_STREAM, false), low = low_port();
	char v[128], body[1024], *out;
	char *argv[] = { (char *)PORTFWDCTL, "-s", NULL, "reload", NULL };

	if (geteuid() != 0) {
		fprintf(stderr, "test_privilege_drop_no_caps: not root, skipped\n");
		return;
	}
	h_backend_start(&echo, H_ECHO, false);
	h_daemon_extra = "user = \"nobody\";";
	h_dir_mode = 0777;
	h_start(&d, one_rule(port, echo.port));
	proc_field(d.pid, "CapEff", v, sizeof(v));
	ck_assert_str_eq(v, "0000000000000000");
	proc_field(d.pid, "CapPrm", v, sizeof(v));
	ck_assert_str_eq(v, "0000000000000000");
	proc_field(d.pid, "NoNewPrivs", v, sizeof(v));
	ck_assert_str_eq(v, "1");
	ck_assert_int_eq(echo_through(port), 0);
	h_write_conf(&d, two_rules(body, sizeof(body), port, "low", low, echo.port));
	argv[2] = d.sock;
	ck_assert_int_eq(h_run(argv, &out), 1);
	ck_assert_msg(strstr(out, "rule low: cannot listen on tcp") && strstr(out, "CAP_NET_BIND_SERVICE"), "%s", out);
	free(out);
	ck_assert_int_eq(echo_through(port), 0);
	h_stop(&d);
	h_daemon_extra = NULL;
	h_dir_mode = 0;
	h_backend_stop(&echo);
}
END_TEST

START_TEST(test_refuse_root)
{
	struct hdaemon d;
	char *out;
	char *argv[] = { (char *)bin("PORTFWD_BIN", "build/default/portfwd"), "-c", NULL, NULL };

	if (geteuid() != 0) {
		fprintf(stderr, "test_refuse_root: not root, skipped\n");
		return;
	}
	h_daemon_extra = "allow_root = false;";
	h_prepare(&d, one_rule(h_free_port(SOCK_STREAM, false), 9));
	h_daemon_extra = NULL;
	argv[2] = d.conf;
	ck_assert_int_eq(h_run(argv, &out), 1);
	ck_assert_msg(strstr(out, "daemon.allow_root is false"), "%s", out);
	free(out);
	h_cleanup(&d);
}
END_TEST

/* ---- the control socket as a boundary ---- */

/* portfwdctl as UID/GID (no supplementary groups): exit status, output. */
static int ctl_as(uid_t uid, gid_t gid, const char *sock, const char *cmd, char **out)
{
	char *argv[] = { (char *)PORTFWDCTL, "-s", (char *)sock, (char *)cmd, NULL };

	return h_run_as(argv, uid, gid, out);
}

static void write_file(const char *path, const char *text, mode_t mode);

START_TEST(test_control_permissions)
{
	struct h_backend echo;
	struct hdaemon d;
	struct group *nogroup = getgrnam("nogroup");
	unsigned port = h_free_port(SOCK_STREAM, false);
	const uid_t other = 12345;
	char *out;
	struct stat sb;

	if (geteuid() != 0) {
		fprintf(stderr, "test_control_permissions: not root, skipped\n");
		return;
	}
	h_backend_start(&echo, H_ECHO, false);
	h_daemon_extra = "user = \"nobody\"; group = \"nogroup\";";
	h_dir_mode = 0777;
	h_start(&d, one_rule(port, echo.port));
	/* The socket belongs to the daemon's user and group, mode 0660. */
	ck_assert_int_eq(stat(d.sock, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0660);
	ck_assert_uint_eq(sb.st_uid, getpwnam("nobody")->pw_uid);
	ck_assert_uint_eq(sb.st_gid, nogroup->gr_gid);

	/* A member of the socket's group reads, but may not change anything. */
	ck_assert_int_eq(ctl_as(other, nogroup->gr_gid, d.sock, "status", &out), 0);
	ck_assert_msg(strstr(out, "1 rule"), "%s", out);
	free(out);
	ck_assert_int_eq(ctl_as(other, nogroup->gr_gid, d.sock, "metrics", &out), 0);
	free(out);
	ck_assert_int_eq(ctl_as(other, nogroup->gr_gid, d.sock, "reload", &out), 1);
	ck_assert_msg(strstr(out, "permission denied"), "%s", out);
	free(out);
	ck_assert(h_log_contains(&d, "control: refused \"reload\" from uid 12345"));
	/* The same for a check whose text is larger than the socket takes at
	 * once: the daemon refuses before it has read it all, and portfwdctl
	 * still shows the refusal (not "Broken pipe"). */
	{
		char big[400], *text = malloc(900 * 1024);
		char *argv[] = { (char *)PORTFWDCTL, "-s", d.sock, "check", big, NULL };

		snprintf(big, sizeof(big), "%s/big.conf", d.dir);
		memset(text, '#', 900 * 1024 - 1);
		text[900 * 1024 - 1] = '\0';
		write_file(big, text, 0644);
		free(text);
		ck_assert_int_eq(h_run_as(argv, other, nogroup->gr_gid, &out), 1);
		ck_assert_msg(strstr(out, "permission denied"), "%s", out);
		free(out);
		unlink(big);
	}
	/* Someone outside the group cannot even connect. */
	ck_assert_int_eq(ctl_as(other, other, d.sock, "status", &out), 3);
	ck_assert_msg(strstr(out, "permission denied"), "%s", out);
	free(out);
	/* Root may; the change is logged with who asked. */
	ck_assert_int_eq(ctl_as(0, 0, d.sock, "reload", &out), 0);
	free(out);
	ck_assert(h_log_contains(&d, "control: reload from uid 0"));

	/* daemon.admin_group lets its members change things (applies on reload). */
	h_daemon_extra = "user = \"nobody\"; group = \"nogroup\"; admin_group = \"nogroup\";";
	h_write_conf(&d, one_rule(port, echo.port));
	ck_assert_int_eq(ctl_as(0, 0, d.sock, "reload", &out), 0);
	free(out);
	ck_assert_int_eq(ctl_as(other, nogroup->gr_gid, d.sock, "reload", &out), 0);
	free(out);
	ck_assert_int_eq(echo_through(port), 0);
	h_stop(&d);
	h_daemon_extra = NULL;
	h_dir_mode = 0;
	h_backend_stop(&echo);
}
END_TEST


/* ---- the control socket's path, as root ---- */

/* A root-owned 0600 file in D's directory, and a symlink to it named LINK. */
static void make_bait(struct hdaemon *d, char *secret, char *link, size_t len)
{
	FILE *fp;

	snprintf(secret, len, "%s/secret", d->dir);
	snprintf(link, len, "%s/link.tmp", d->dir);
	fp = fopen(secret, "w");
	ck_assert_ptr_nonnull(fp);
	fputs("root:secret\n", fp);
	fclose(fp);
	ck_assert_int_eq(chown(secret, 0, 0), 0);
	ck_assert_int_eq(chmod(secret, 0600), 0);
	ck_assert_int_eq(symlink(secret, link), 0);
}

/* N rules on consecutive ports from a free one (some may fail to bind: the
 * point is the time binding them takes). malloc'd. */
static char *many_rules(int n)
{
	unsigned base = h_free_port(SOCK_STREAM, false);
	size_t cap = (size_t)n * 160 + 64, used;
	char *body = malloc(cap);

	if (base > 65535 - (unsigned)n)
		base = 20000;
	used = (size_t)snprintf(body, cap, "rules: (");
	for (int i = 0; i < n; i++)
		used += (size_t)snprintf(body + used, cap - used,
					 "%s{ name = \"r%d\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; }",
					 i ? ",\n" : "", i, base + (unsigned)i);
	snprintf(body + used, cap - used, " );");
	return body;
}

/*
 * Started as root with daemon.user, the daemon never follows a link at the
 * socket's path: not one already there, and not one swapped in for the
 * socket the moment bind creates it (inotify tells the test when), while
 * start-up binds 200 rules.
 */
START_TEST(test_control_socket_no_follow)
{
	char secret[400], link[400], *out, *body;
	char *argv[] = { (char *)bin("PORTFWD_BIN", "build/default/portfwd"), "-c", NULL, NULL };
	struct passwd *nobody = getpwnam("nobody");
	struct group *nogroup = getgrnam("nogroup");
	struct hdaemon d;
	struct stat sb;

	if (geteuid() != 0) {
		fprintf(stderr, "test_control_socket_no_follow: not root, skipped\n");
		return;
	}
	ck_assert_ptr_nonnull(nobody);
	ck_assert_ptr_nonnull(nogroup);
	h_daemon_extra = "user = \"nobody\"; group = \"nogroup\";";

	/* A link already in place: refused, the file untouched. */
	h_prepare(&d, one_rule(h_free_port(SOCK_STREAM, false), 9));
	chmod(d.dir, 0777);
	make_bait(&d, secret, link, sizeof(secret));
	ck_assert_int_eq(rename(link, d.sock), 0);
	argv[2] = d.conf;
	ck_assert_int_eq(h_run(argv, &out), 1);
	ck_assert_msg(strstr(out, "exists and is not a socket"), "%s", out);
	free(out);
	ck_assert_int_eq(stat(secret, &sb), 0);
	ck_assert_msg(sb.st_uid == 0 && sb.st_gid == 0 && (sb.st_mode & 07777) == 0600,
		      "the daemon changed %s: uid %u gid %u mode %o", secret, (unsigned)sb.st_uid,
		      (unsigned)sb.st_gid, (unsigned)(sb.st_mode & 07777));
	unlink(secret);
	h_cleanup(&d);

	/* The race, a few times. */
	body = many_rules(200);
	for (int round = 0; round < 3; round++) {
		char evbuf[4096] __attribute__((aligned(8)));
		bool swapped = false, started;
		double deadline;
		int in, st;

		h_prepare(&d, body);
		chmod(d.dir, 0777);
		make_bait(&d, secret, link, sizeof(secret));
		in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
		ck_assert_int_ge(in, 0);
		ck_assert_int_ge(inotify_add_watch(in, d.dir, IN_CREATE), 0);
		h_spawn(&d);
		deadline = h_now() + 10;
		while (!swapped && h_now() < deadline) {
			struct pollfd p = { .fd = in, .events = POLLIN };
			ssize_t n;

			if (poll(&p, 1, 100) <= 0)
				continue;
			n = read(in, evbuf, sizeof(evbuf));
			for (char *e = evbuf; n > 0 && e < evbuf + n;) {
				struct inotify_event *ev = (struct inotify_event *)e;

				if (ev->len && strcmp(ev->name, "ctl.sock") == 0 && !swapped)
					swapped = rename(link, d.sock) == 0;
				e += sizeof(*ev) + ev->len;
			}
		}
		close(in);
		started = h_wait_log(&d, "started:", 10);
		/* Stop it before asserting anything, so no daemon outlives a failure. */
		st = h_kill(&d);
		ck_assert_msg(swapped, "round %d: the socket never appeared", round);
		ck_assert_int_eq(stat(secret, &sb), 0);
		ck_assert_msg(sb.st_uid == 0 && sb.st_gid == 0 && (sb.st_mode & 07777) == 0600,
			      "round %d: the daemon followed the link to %s: uid %u gid %u mode %o", round,
			      secret, (unsigned)sb.st_uid, (unsigned)sb.st_gid, (unsigned)(sb.st_mode & 07777));
		ck_assert_msg(started && WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "round %d: status %d; see %s", round, st, d.log);
		unlink(secret);
		unlink(link);
		h_cleanup(&d);
	}
	free(body);

	/* A missing directory is made by root and given to the user; the socket
	 * in it is the user's, 0660. */
	{
		char sub[280];

		h_prepare(&d, one_rule(h_free_port(SOCK_STREAM, false), 9));
		chmod(d.dir, 0755);
		snprintf(sub, sizeof(sub), "%s/run", d.dir);
		snprintf(d.sock, sizeof(d.sock), "%s/ctl.sock", sub);
		h_write_conf(&d, one_rule(h_free_port(SOCK_STREAM, false), 9));
		chmod(d.conf, 0644);
		h_spawn(&d);
		ck_assert_msg(h_wait_log(&d, "started:", 10), "see %s", d.log);
		ck_assert_int_eq(lstat(sub, &sb), 0);
		ck_assert(S_ISDIR(sb.st_mode));
		ck_assert_uint_eq(sb.st_uid, nobody->pw_uid);
		ck_assert_uint_eq(sb.st_gid, nogroup->gr_gid);
		ck_assert_uint_eq(sb.st_mode & 07777, 0755);
		ck_assert_int_eq(lstat(d.sock, &sb), 0);
		ck_assert(S_ISSOCK(sb.st_mode));
		ck_assert_uint_eq(sb.st_uid, nobody->pw_uid);
		ck_assert_uint_eq(sb.st_gid, nogroup->gr_gid);
		ck_assert_uint_eq(sb.st_mode & 0777, 0660);
		h_stop(&d);
		rmdir(sub);
		rmdir(d.dir);
	}
	h_daemon_extra = NULL;
}
END_TEST

/*
 * Root acts on the socket's path only where it is root's alone from "/"
 * down. A root-only directory the user may not write: root binds and gives
 * the socket away. A link in a directory the user owns, to a root-only
 * directory: nothing is made through it, the daemon refuses to start.
 */
START_TEST(test_control_socket_root_paths)
{
	struct passwd *nobody = getpwnam("nobody");
	struct group *nogroup = getgrnam("nogroup");
	char rootdir[270], userdir[270], link[280], *out;
	/* Bounded: a daemon that did start must not hang the test. */
	char *argv[] = { "/usr/bin/timeout", "10", (char *)bin("PORTFWD_BIN", "build/default/portfwd"),
			 "-c", NULL, NULL };
	struct hdaemon d;
	struct stat sb;
	int st;

	if (geteuid() != 0) {
		fprintf(stderr, "test_control_socket_root_paths: not root, skipped\n");
		return;
	}
	h_daemon_extra = "user = \"nobody\"; group = \"nogroup\";";

	/* The socket in a root-only directory (0755): made there by root for the user. */
	h_prepare(&d, one_rule(h_free_port(SOCK_STREAM, false), 9));
	chmod(d.dir, 0755);
	chmod(d.conf, 0644);
	h_spawn(&d);
	ck_assert_msg(h_wait_log(&d, "started:", 10), "see %s", d.log);
	ck_assert_int_eq(lstat(d.sock, &sb), 0);
	ck_assert(S_ISSOCK(sb.st_mode));
	ck_assert_uint_eq(sb.st_uid, nobody->pw_uid);
	ck_assert_uint_eq(sb.st_gid, nogroup->gr_gid);
	ck_assert_uint_eq(sb.st_mode & 0777, 0660);
	st = h_kill(&d);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d; see %s", st, d.log);
	/* The user could not remove it from root's directory; the next start
	 * replaces it. */
	h_spawn(&d);
	ck_assert_msg(h_wait_log(&d, "replacing the stale socket", 10), "see %s", d.log);
	ck_assert_msg(h_wait_log(&d, "started:", 10), "see %s", d.log);
	h_kill(&d);
	unlink(d.sock);
	h_cleanup(&d);

	/* Root's own links are followed (/var/run is /run): a missing
	 * directory there is made and given to the user, the socket is the user's. */
	{
		char run[128];

		snprintf(run, sizeof(run), "/var/run/portfwd-test-%d", (int)getpid());
		h_prepare(&d, one_rule(h_free_port(SOCK_STREAM, false), 9));
		chmod(d.dir, 0755);
		chmod(d.conf, 0644);
		snprintf(d.sock, sizeof(d.sock), "%s//ctl.sock", run);
		h_write_conf(&d, one_rule(h_free_port(SOCK_STREAM, false), 9));
		h_spawn(&d);
		ck_assert_msg(h_wait_log(&d, "started:", 10), "see %s", d.log);
		ck_assert_int_eq(stat(run, &sb), 0);
		ck_assert_uint_eq(sb.st_uid, nobody->pw_uid);
		ck_assert_int_eq(lstat(d.sock, &sb), 0);
		ck_assert_uint_eq(sb.st_uid, nobody->pw_uid);
		st = h_kill(&d);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d; see %s", st, d.log);
		rmdir(run);
		h_cleanup(&d);
	}

	/* A directory of the user's with a link to a root-only one. */
	h_prepare(&d, one_rule(h_free_port(SOCK_STREAM, false), 9));
	chmod(d.dir, 0755);
	chmod(d.conf, 0644);
	snprintf(rootdir, sizeof(rootdir), "%s/rootdir", d.dir);
	snprintf(userdir, sizeof(userdir), "%s/userdir", d.dir);
	snprintf(link, sizeof(link), "%s/x", userdir);
	ck_assert_int_eq(mkdir(rootdir, 0755), 0);
	ck_assert_int_eq(mkdir(userdir, 0755), 0);
	ck_assert_int_eq(chown(userdir, nobody->pw_uid, nogroup->gr_gid), 0);
	ck_assert_int_eq(symlink(rootdir, link), 0);
	for (int sub = 0; sub < 2; sub++) {
		ck_assert_uint_lt((size_t)snprintf(d.sock, sizeof(d.sock), "%.280s%s/ctl.sock", link,
						   sub ? "/sub" : ""), sizeof(d.sock));
		h_write_conf(&d, one_rule(h_free_port(SOCK_STREAM, false), 9));
		argv[4] = d.conf;
		ck_assert_int_eq(h_run(argv, &out), 1);
		ck_assert_msg(strstr(out, "root's alone"), "%s", out);
		free(out);
	}
	/* A missing directory under the user's own: made as the user. */
	ck_assert_uint_lt((size_t)snprintf(d.sock, sizeof(d.sock), "%.270s/run/ctl.sock", userdir),
			  sizeof(d.sock));
	h_write_conf(&d, one_rule(h_free_port(SOCK_STREAM, false), 9));
	h_spawn(&d);
	ck_assert_msg(h_wait_log(&d, "started:", 10), "see %s", d.log);
	{
		char run[300];

		snprintf(run, sizeof(run), "%.270s/run", userdir);
		ck_assert_int_eq(stat(run, &sb), 0);
		ck_assert_uint_eq(sb.st_uid, nobody->pw_uid);
		st = h_kill(&d);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d; see %s", st, d.log);
		rmdir(run);
	}
	{
		char made[360];

		snprintf(made, sizeof(made), "%s/ctl.sock", rootdir);
		ck_assert_msg(lstat(made, &sb) != 0, "root made %s through the user's link", made);
		snprintf(made, sizeof(made), "%s/sub", rootdir);
		ck_assert_msg(lstat(made, &sb) != 0, "root made %s through the user's link", made);
	}
	unlink(link);
	rmdir(userdir);
	rmdir(rootdir);
	h_cleanup(&d);
	h_daemon_extra = NULL;
}
END_TEST

/* ---- the unit and make install ---- */

static char *read_text(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf = calloc(1, 65536);

	ck_assert_msg(fp != NULL, "%s: %s", path, strerror(errno));
	buf[fread(buf, 1, 65535, fp)] = '\0';
	fclose(fp);
	return buf;
}

START_TEST(test_install_and_unit)
{
	static const char *const files[] = {
		"sbin/portfwd", "bin/portfwdctl", "lib/systemd/system/portfwd.service",
		"lib/sysusers.d/portfwd.conf", "lib/tmpfiles.d/portfwd.conf",
		"share/man/man8/portfwd.8", "share/man/man8/portfwdctl.8",
		"share/man/man5/portfwd.conf.5", "share/bash-completion/completions/portfwdctl",
		"etc/portfwd.conf", NULL,
	};
	char dir[] = "/tmp/portfwd-install.XXXXXX", path[512], want[1024], *out, *unit, *text;
	struct stat sb;
	struct h_backend echo;
	struct hdaemon d;
	unsigned lport;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	/* A real prefix (no DESTDIR), so the unit's paths exist for verify. */
	ck_assert_msg(h_sh(&out, "make -s install PREFIX=%s SYSCONFDIR=%s/etc SYSTEMD_SETUP=no", dir, dir) == 0, "%s", out);
	ck_assert_msg(strstr(out, "is the example: edit its rules"), "%s", out);
	free(out);
	for (int i = 0; files[i]; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		ck_assert_msg(stat(path, &sb) == 0, "%s was not installed", path);
		ck_assert_uint_eq(sb.st_mode & 0777, strstr(files[i], "bin/") ? 0755u : 0644u);
	}
	/* The unit runs what was installed, as the user sysusers.d creates. */
	snprintf(path, sizeof(path), "%s/lib/systemd/system/portfwd.service", dir);
	unit = read_text(path);
	snprintf(want, sizeof(want), "\nExecStart=%s/sbin/portfwd -c %s/etc/portfwd.conf\n", dir, dir);
	ck_assert_msg(strstr(unit, want), "%s", unit);
	snprintf(want, sizeof(want), "\nExecStartPre=%s/sbin/portfwd -t -c %s/etc/portfwd.conf\n", dir, dir);
	ck_assert_msg(strstr(unit, want), "%s", unit);
	snprintf(want, sizeof(want), "\nExecReload=%s/bin/portfwdctl reload\n", dir);
	ck_assert_msg(strstr(unit, want), "%s", unit);
	ck_assert(strstr(unit, "\nType=notify\n") && strstr(unit, "\nUser=portfwd\n") &&
		  strstr(unit, "\nRuntimeDirectory=portfwd\n"));
	/* No placeholder left unfilled. */
	ck_assert(!strstr(unit, "@SBINDIR@") && !strstr(unit, "@BINDIR@") && !strstr(unit, "@SYSCONFDIR@"));
	free(unit);
	snprintf(path, sizeof(path), "%s/lib/sysusers.d/portfwd.conf", dir);
	text = read_text(path);
	ck_assert_msg(strstr(text, "\nu     portfwd "), "%s", text);
	free(text);
	/* The installed daemon accepts the installed example. */
	ck_assert_msg(h_sh(&out, "%s/sbin/portfwd -t -c %s/etc/portfwd.conf", dir, dir) == 0, "%s", out);
	free(out);
	/* The installed man pages name the version in their footer. */
	ck_assert_int_eq(h_sh(&out, "cd %s/share/man && grep -c '^\\.Os portfwd " PORTFWD_VERSION "$' "
			      "man8/portfwd.8 man8/portfwdctl.8 man5/portfwd.conf.5", dir), 0);
	ck_assert_str_eq(out, "man8/portfwd.8:1\nman8/portfwdctl.8:1\nman5/portfwd.conf.5:1\n");
	free(out);

	/* systemd's own checks: verify says nothing, exposure at most 1.5. */
	snprintf(path, sizeof(path), "%s/lib/systemd/system/portfwd.service", dir);
	ck_assert_msg(h_sh(&out, "MANPATH=%s/share/man systemd-analyze verify %s", dir, path) == 0, "%s", out);
	ck_assert_msg(out[0] == '\0', "systemd-analyze verify: %s", out);
	free(out);
	ck_assert_msg(h_sh(&out, "systemd-analyze security --offline=yes --threshold=15 %s", path) == 0, "%s", out);
	ck_assert_msg(strstr(out, "Overall exposure level for portfwd.service: 1."), "%s", out);
	free(out);

	/* Bash completion: commands, rule names from the running daemon, and
	 * the ports in use for who (the rule's listen port among them). */
	h_backend_start(&echo, H_ECHO, false);
	lport = h_free_port(SOCK_STREAM, false);
	h_start(&d, one_rule(lport, echo.port));
	snprintf(want, sizeof(want), "%u", lport);
	ck_assert_int_eq(h_sh(&out, "PATH=%s/bin:$PATH bash -c '. %s/share/bash-completion/completions/portfwdctl; "
			      "COMP_WORDS=(portfwdctl rel); COMP_CWORD=1; _portfwdctl; echo \"${COMPREPLY[*]}\"; "
			      "COMP_WORDS=(portfwdctl -s %s disable e); COMP_CWORD=4; _portfwdctl; echo \"${COMPREPLY[*]}\"; "
			      "COMP_WORDS=(portfwdctl -s %s who %s); COMP_CWORD=4; _portfwdctl; echo \"${COMPREPLY[*]}\"'",
			      dir, dir, d.sock, d.sock, want), 0);
	snprintf(want, sizeof(want), "reload\necho\n%u\n", lport);
	ck_assert_msg(strcmp(out, want) == 0, "completion gave: %s", out);
	free(out);
	h_stop(&d);
	h_backend_stop(&echo);

	/* A second install keeps the edited configuration. */
	snprintf(path, sizeof(path), "%s/etc/portfwd.conf", dir);
	{
		FILE *fp = fopen(path, "a");

		fputs("# edited by the operator\n", fp);
		fclose(fp);
	}
	ck_assert_msg(h_sh(&out, "make -s install PREFIX=%s SYSCONFDIR=%s/etc SYSTEMD_SETUP=no", dir, dir) == 0, "%s", out);
	ck_assert_msg(strstr(out, "keeping the existing"), "%s", out);
	free(out);
	text = read_text(path);
	ck_assert(strstr(text, "# edited by the operator\n"));
	free(text);

	/* Uninstall removes all but the configuration. */
	ck_assert_msg(h_sh(&out, "make -s uninstall PREFIX=%s SYSCONFDIR=%s/etc", dir, dir) == 0, "%s", out);
	free(out);
	for (int i = 0; files[i]; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		ck_assert_msg((stat(path, &sb) == 0) == (strcmp(files[i], "etc/portfwd.conf") == 0),
			      "after uninstall: %s", path);
	}
	ck_assert_int_eq(h_sh(&out, "rm -rf %s", dir), 0);
	free(out);
}
END_TEST


/* With DESTDIR, every path the unit names is there under DESTDIR. */
START_TEST(test_install_destdir)
{
	char dir[] = "/tmp/portfwd-destdir.XXXXXX", path[1024], *out, *unit;
	static const char *const keys[] = { "\nExecStart=", "\nExecStartPre=", "\nExecReload=", NULL };
	struct stat sb;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_msg(h_sh(&out, "make -s install DESTDIR=%s SYSTEMD_SETUP=no", dir) == 0, "%s", out);
	free(out);
	snprintf(path, sizeof(path), "%s/usr/local/lib/systemd/system/portfwd.service", dir);
	unit = read_text(path);
	for (int i = 0; keys[i]; i++) {
		const char *cmd = strstr(unit, keys[i]);
		char exe[256];

		ck_assert_msg(cmd != NULL, "no %s in the unit", keys[i] + 1);
		ck_assert_int_eq(sscanf(cmd + strlen(keys[i]), "%255s", exe), 1);
		ck_assert_msg(exe[0] == '/', "%s is not absolute", exe);
		snprintf(path, sizeof(path), "%s%s", dir, exe);
		ck_assert_msg(stat(path, &sb) == 0 && (sb.st_mode & 0111), "%s: not installed as an executable", path);
	}
	/* The configuration the unit names, and the account it runs as. */
	ck_assert_ptr_nonnull(strstr(unit, " -c /etc/portfwd.conf\n"));
	snprintf(path, sizeof(path), "%s/etc/portfwd.conf", dir);
	ck_assert_int_eq(stat(path, &sb), 0);
	snprintf(path, sizeof(path), "%s/usr/local/lib/sysusers.d/portfwd.conf", dir);
	ck_assert_int_eq(stat(path, &sb), 0);
	free(unit);
	ck_assert_int_eq(h_sh(&out, "rm -rf %s", dir), 0);
	free(out);
}
END_TEST

/* A control client that sends nothing is closed after 5 seconds. */
START_TEST(test_control_read_timeout)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct h_backend echo;
	struct hdaemon d;
	double t0;
	char c;
	int fd;

	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, one_rule(h_free_port(SOCK_STREAM, false), echo.port));
	ck_assert_uint_lt(strlen(d.sock), sizeof(sun.sun_path));
	memcpy(sun.sun_path, d.sock, strlen(d.sock) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	t0 = h_now();
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };

		ck_assert_int_eq(poll(&p, 1, 10000), 1);
	}
	ck_assert_int_eq(read(fd, &c, 1), 0);
	ck_assert(h_now() - t0 > 4 && h_now() - t0 < 8);
	close(fd);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST


/* Connects to the control socket at PATH; fails the test if it cannot. */
static int ctl_socket(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	ck_assert_uint_lt(strlen(path), sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

/* Sends DATA a byte a second until the daemon closes FD or SECONDS pass;
 * returns how long it kept FD open, and what it said in REPLY. */
static double trickle(int fd, const char *data, double seconds, char *reply, size_t len)
{
	double t0 = h_now();
	size_t sent = 0, got = 0;

	reply[0] = '\0';
	while (h_now() - t0 < seconds) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 1000) == 1) {
			n = read(fd, reply + got, len - 1 - got);
			if (n <= 0)
				break;
			got += (size_t)n;
			reply[got] = '\0';
			continue;
		}
		if (send(fd, data + sent % strlen(data), 1, MSG_NOSIGNAL) != 1)
			break;
		sent++;
	}
	return h_now() - t0;
}

/* A client that sends a byte a second (never a whole request) is closed
 * once its request has taken 5 seconds: it cannot hold a slot for ever. */
START_TEST(test_control_request_deadline)
{
	struct hdaemon d;
	char reply[512];
	double held;
	int fd;

	h_start(&d, one_rule(h_free_port(SOCK_STREAM, false), 9));
	fd = ctl_socket(d.sock);
	held = trickle(fd, "status", 20, reply, sizeof(reply));
	close(fd);
	ck_assert_msg(held > 4 && held < 8, "the trickling client was held %.1f s", held);
	ck_assert_msg(strstr(reply, ".error request not complete within 5 seconds"), "%s", reply);
	/* The same for a payload sent a byte a second after a whole request line. */
	fd = ctl_socket(d.sock);
	ck_assert_int_eq(send(fd, "check t --bytes 100\n", 20, MSG_NOSIGNAL), 20);
	held = trickle(fd, "#", 20, reply, sizeof(reply));
	close(fd);
	ck_assert_msg(held > 4 && held < 8, "the client trickling a payload was held %.1f s", held);
	ck_assert_msg(strstr(reply, ".error request not complete within 5 seconds"), "%s", reply);
	h_stop(&d);
}
END_TEST

/* Reads FD into BUF (LEN bytes with the NUL) until the daemon closes it,
 * SECONDS pass, or with ONE_LINE a line has come. */
static void read_reply(int fd, double seconds, bool one_line, char *buf, size_t len)
{
	double t0 = h_now();
	size_t got = 0;

	buf[0] = '\0';
	while (h_now() - t0 < seconds && !(one_line && strchr(buf, '\n'))) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) != 1)
			continue;
		n = read(fd, buf + got, len - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
	}
}

/* Sends LEN bytes of DATA on a new connection to SOCK (keeping it open for
 * writing) and reads the reply into REPLY until the daemon closes it or
 * SECONDS pass. */
static void ctl_exchange(const char *sock, const void *data, size_t len, double seconds,
			 char *reply, size_t rlen)
{
	int fd = ctl_socket(sock);

	ck_assert_int_eq(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
	read_reply(fd, seconds, false, reply, rlen);
	close(fd);
}

/* Writes TEXT to PATH with MODE. */
static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *fp = fopen(path, "w");

	ck_assert_msg(fp != NULL, "%s: %s", path, strerror(errno));
	fputs(text, fp);
	fclose(fp);
	ck_assert_int_eq(chmod(path, mode), 0);
}

/*
 * portfwdctl check FILE reads FILE itself and sends its text: the daemon
 * opens no path a client names and never waits on one; a FIFO, text with
 * @include, too much text, or a payload that never ends are refused while
 * the daemon answers everyone else.
 */
START_TEST(test_check_payload)
{
	struct hdaemon d;
	char path[400], file[400], req[512], reply[4096], *out, *big;
	unsigned port = h_free_port(SOCK_STREAM, false);
	double t;
	bool ok;

	h_start(&d, one_rule(port, 9));
	snprintf(file, sizeof(file), "%s/other.conf", d.dir);

	/* A FIFO: portfwdctl refuses it at once; the daemon never sees it. */
	snprintf(path, sizeof(path), "%s/fifo", d.dir);
	ck_assert_int_eq(mkfifo(path, 0666), 0);
	t = h_now();
	ck_assert_int_eq(h_sh(&out, "timeout -s KILL 5 %s -s %s check %s", PORTFWDCTL, d.sock, path), 1);
	ck_assert_msg(h_now() - t < 2, "check of a FIFO took %.1f s", h_now() - t);
	ck_assert_msg(strstr(out, path) && strstr(out, "not a regular file"), "%s", out);
	free(out);
	t = h_now();
	free(h_ctl(d.sock, "status", &ok));
	ck_assert_msg(ok && h_now() - t < 1, "status after the FIFO: %s in %.1f s", ok ? "ok" : "failed", h_now() - t);
	/* Nor does portfwd -t wait on one. */
	t = h_now();
	ck_assert_int_eq(h_sh(&out, "timeout -s KILL 5 %s -t -c %s", bin("PORTFWD_BIN", "build/default/portfwd"), path), 1);
	ck_assert_msg(h_now() - t < 2 && strstr(out, "not a regular file"), "%.1f s: %s", h_now() - t, out);
	free(out);
	unlink(path);

	/* Through stdin, named "stdin" in the messages. */
	write_file(file, "rules = ( { name = \"x\"; proto = \"tcp\"; listen = \"127.0.0.1:1\"; } );\n", 0600);
	ck_assert_int_eq(h_sh(&out, "%s -s %s check - < %s", PORTFWDCTL, d.sock, file), 1);
	ck_assert_msg(strstr(out, "stdin:1: rule \"x\": target: required key is missing"), "%s", out);
	free(out);
	snprintf(req, sizeof(req), "rules = ( { name = \"x\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );\n", port);
	write_file(file, req, 0600);
	ck_assert_int_eq(h_sh(&out, "%s -s %s check - < %s", PORTFWDCTL, d.sock, file), 0);
	ck_assert_msg(strstr(out, "stdin: configuration is valid") && strstr(out, "(not applied)"), "%s", out);
	free(out);

	/* @include would make the daemon open a path: refused, with its line,
	 * however it is indented. */
	write_file(file, "# a comment\n \t@include \"/etc/passwd\"\nrules = ();\n", 0600);
	ck_assert_int_eq(h_sh(&out, "%s -s %s check %s", PORTFWDCTL, d.sock, file), 1);
	snprintf(req, sizeof(req), "%s:2: @include is not allowed", file);
	ck_assert_msg(strstr(out, req) && !strstr(out, "root:"), "%s", out);
	free(out);

	/* More than the limit: portfwdctl does not send it, the daemon would not take it. */
	big = malloc((1 << 20) + 2);
	memset(big, '#', (1 << 20) + 1);
	big[(1 << 20) + 1] = '\0';
	write_file(file, big, 0600);
	free(big);
	ck_assert_int_eq(h_sh(&out, "%s -s %s check %s", PORTFWDCTL, d.sock, file), 1);
	ck_assert_msg(strstr(out, "larger than 1048576 bytes"), "%s", out);
	free(out);
	snprintf(req, sizeof(req), "check big.conf --bytes %d\n", (1 << 20) + 1);
	ctl_exchange(d.sock, req, strlen(req), 5, reply, sizeof(reply));
	ck_assert_msg(strstr(reply, ".error check: the text is larger than 1048576 bytes"), "%s", reply);

	/* The old form, a path for the daemon to open: refused, with what to do. */
	ctl_exchange(d.sock, "check /etc/passwd\n", 18, 5, reply, sizeof(reply));
	ck_assert_msg(strstr(reply, ".error check: the daemon does not open files for clients"), "%s", reply);

	/* A payload that never ends: cut off at the deadline, and meanwhile
	 * the daemon answers another client at once. */
	{
		const char part[] = "check slow.conf --bytes 100\nrules = (";
		int fd = ctl_socket(d.sock);

		t = h_now();
		ck_assert_int_eq(send(fd, part, sizeof(part) - 1, MSG_NOSIGNAL), (ssize_t)(sizeof(part) - 1));
		usleep(200000);
		free(h_ctl(d.sock, "status", &ok));
		ck_assert_msg(ok && h_now() - t < 1.5, "status during a short payload took %.1f s", h_now() - t);
		read_reply(fd, 10, false, reply, sizeof(reply));
		close(fd);
		ck_assert_msg(h_now() - t > 4 && h_now() - t < 8, "the short payload was held %.1f s", h_now() - t);
		ck_assert_msg(strstr(reply, ".error request not complete within 5 seconds"), "%s", reply);
	}
	unlink(file);
	h_stop(&d);
}
END_TEST

/*
 * As root, the daemon running as nobody: a file the caller may read and
 * the daemon's user may not is checked; a file the caller may not read is
 * refused by portfwdctl, and the daemon never hears of it.
 */
START_TEST(test_check_reads_as_caller)
{
	struct group *nogroup = getgrnam("nogroup");
	struct hdaemon d;
	char file[400], text[512], want[512], *out;
	char *argv[] = { (char *)PORTFWDCTL, "-s", NULL, "check", file, NULL };
	unsigned port = h_free_port(SOCK_STREAM, false);

	if (geteuid() != 0) {
		fprintf(stderr, "test_check_reads_as_caller: not root, skipped\n");
		return;
	}
	h_daemon_extra = "user = \"nobody\"; group = \"nogroup\"; admin_group = \"nogroup\";";
	h_dir_mode = 0777;
	h_start(&d, one_rule(port, 9));
	argv[2] = d.sock;
	snprintf(file, sizeof(file), "%s/root-only.conf", d.dir);
	snprintf(text, sizeof(text), "rules = ( { name = \"x\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; },\n"
		 "  { name = \"y\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:99999\"; } );\n", port, port + 1);
	write_file(file, text, 0600);
	ck_assert_int_eq(chown(file, 0, 0), 0);
	/* Root reads it; the errors name the file and line as root gave it. */
	ck_assert_int_eq(h_run(argv, &out), 1);
	snprintf(want, sizeof(want), "%s:2: rule \"y\": target: \"127.0.0.1:99999\": port 99999 is out of range", file);
	ck_assert_msg(strstr(out, want), "%s", out);
	free(out);
	/* An admin_group member who may not read it: refused before connecting. */
	ck_assert_int_eq(h_run_as(argv, 12345, nogroup->gr_gid, &out), 1);
	snprintf(want, sizeof(want), "portfwdctl: check: %s: Permission denied", file);
	ck_assert_msg(strstr(out, want), "%s", out);
	free(out);
	ck_assert(!h_log_contains(&d, "control: check from uid 12345"));
	/* Made readable to that member, it is checked. */
	ck_assert_int_eq(chown(file, 0, nogroup->gr_gid), 0);
	ck_assert_int_eq(chmod(file, 0640), 0);
	ck_assert_int_eq(h_run_as(argv, 12345, nogroup->gr_gid, &out), 1);
	ck_assert_msg(strstr(out, "port 99999 is out of range"), "%s", out);
	free(out);
	ck_assert(h_log_contains(&d, "control: check from uid 12345"));
	unlink(file);
	h_stop(&d);
	h_daemon_extra = NULL;
	h_dir_mode = 0;
}
END_TEST

/* Connects to SOCK with the effective UID and GID (the test is root):
 * SO_PEERCRED records them for the daemon. */
static int ctl_socket_as(const char *sock, uid_t uid, gid_t gid)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

	ck_assert_int_ge(fd, 0);
	memcpy(sun.sun_path, sock, strlen(sock) + 1);
	ck_assert_int_eq(setegid(gid), 0);
	ck_assert_int_eq(seteuid(uid), 0);
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	/* Back to root before anything can fail. */
	ck_assert_int_eq(seteuid(0), 0);
	ck_assert_int_eq(setegid(0), 0);
	ck_assert_msg(r == 0, "connect as uid %u: %s", (unsigned)uid, strerror(errno));
	return fd;
}

/* Says hello on FD and returns the first reply line (or the refusal the
 * daemon sent on accepting, before closing). */
static char *slot_reply(int fd)
{
	char buf[512];

	if (send(fd, "hello 1\n", 8, MSG_NOSIGNAL) < 0 && errno != EPIPE && errno != ECONNRESET)
		ck_abort_msg("send: %s", strerror(errno));
	read_reply(fd, 5, true, buf, sizeof(buf));
	buf[strcspn(buf, "\n")] = '\0';
	return strdup(buf);
}

/* Opens four connections to SOCK as UID:GID into FDS, each answered.
 * Returns 4. */
static int hold_slots(const char *sock, uid_t uid, gid_t gid, int *fds)
{
	for (int i = 0; i < 4; i++) {
		char *r;

		fds[i] = ctl_socket_as(sock, uid, gid);
		r = slot_reply(fds[i]);
		ck_assert_msg(strncmp(r, "portfwd-ctl 1 ", 14) == 0, "uid %u, connection %d: %s",
			      (unsigned)uid, i, r);
		free(r);
	}
	return 4;
}

/* What the daemon says to one more connection as UID:GID (closed). */
static char *refused_slot(const char *sock, uid_t uid, gid_t gid)
{
	int fd = ctl_socket_as(sock, uid, gid);
	char *r = slot_reply(fd);

	close(fd);
	return r;
}

/*
 * One local user cannot hold every control slot: at most 4 connections per
 * uid (root and the daemon's user aside), and the last 8 of the 32 slots are
 * kept for root, the daemon's user and admin_group, so with every other slot
 * held root still gets status and reload (systemctl reload works).
 */
START_TEST(test_control_slots)
{
	struct group *nogroup = getgrnam("nogroup");
	struct hdaemon d;
	int fds[40], n = 0;
	char *r, *out;

	if (geteuid() != 0) {
		fprintf(stderr, "test_control_slots: not root, skipped\n");
		return;
	}
	h_daemon_extra = "user = \"nobody\"; group = \"nogroup\";";
	h_dir_mode = 0777;
	h_start(&d, one_rule(h_free_port(SOCK_STREAM, false), 9));

	/* A member of the socket's group: four connections, not a fifth. */
	n += hold_slots(d.sock, 20001, nogroup->gr_gid, fds + n);
	r = refused_slot(d.sock, 20001, nogroup->gr_gid);
	ck_assert_str_eq(r, ".error too many control connections from uid 20001 (at most 4 per user); close one and try again");
	free(r);

	/* Five more users take the rest of the 24 unreserved slots; the next is refused. */
	for (uid_t uid = 20002; uid <= 20006; uid++)
		n += hold_slots(d.sock, uid, nogroup->gr_gid, fds + n);
	r = refused_slot(d.sock, 20007, nogroup->gr_gid);
	ck_assert_str_eq(r, ".error too many control clients: the last 8 of 32 are kept for root, the daemon's user and daemon.admin_group; try again");
	free(r);

	/* Root still gets in, to read and to change. */
	ck_assert_int_eq(ctl_as(0, 0, d.sock, "status", &out), 0);
	free(out);
	ck_assert_int_eq(ctl_as(0, 0, d.sock, "reload", &out), 0);
	free(out);
	ck_assert(h_log_contains(&d, "control: reload from uid 0"));
	for (int i = 0; i < n; i++)
		close(fds[i]);
	h_stop(&d);
	h_daemon_extra = NULL;
	h_dir_mode = 0;
}
END_TEST

/* ---- a syscall filter that says EPERM ---- */

/*
 * What SystemCallFilter=~@resources with SystemCallErrorNumber=EPERM does
 * to setrlimit: prlimit64 with a new limit, and setrlimit, fail with EPERM.
 * Reading a limit (prlimit64 with no new one) still works, as the
 * sanitizers' runtimes need it.
 */
static void seccomp_no_setrlimit(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_setrlimit, 5, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_prlimit64, 0, 5),
		/* prlimit64(pid, resource, new_limit, old_limit): new_limit != NULL? */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2]) + 4),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	struct rlimit rl = { 256, 4096 };
	static const char *const vars[] = { "ASAN_OPTIONS", "TSAN_OPTIONS" };

	/* The sanitizers' runtimes call setrlimit themselves to turn core dumps
	 * off, and die if it fails: not the daemon's doing, so not under test. */
	for (int i = 0; i < 2; i++) {
		const char *old = getenv(vars[i]);
		char opts[1024];

		snprintf(opts, sizeof(opts), "%s%sdisable_coredump=0", old ? old : "", old && *old ? ":" : "");
		setenv(vars[i], opts, 1);
	}

	/* A soft limit below the hard one, so the daemon tries to raise it. */
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		_exit(124);
}

START_TEST(test_setrlimit_refused_is_a_warning)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned port = h_free_port(SOCK_STREAM, false);

	h_backend_start(&echo, H_ECHO, false);
	h_child_hook = seccomp_no_setrlimit;
	h_start(&d, one_rule(port, echo.port));
	h_child_hook = NULL;
	ck_assert(h_log_contains(&d, "cannot raise the open file limit: Operation not permitted"));
	ck_assert_int_eq(echo_through(port), 0);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("service");
	TCase *tc = tcase_create("service");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_notify_protocol);
	tcase_add_test(tc, test_stalled_worker_stops_watchdog);
	tcase_add_test(tc, test_privilege_drop);
	tcase_add_test(tc, test_privilege_drop_no_caps);
	tcase_add_test(tc, test_privilege_drop_no_rules);
	tcase_add_test(tc, test_refuse_root);
	tcase_add_test(tc, test_control_permissions);
	tcase_add_test(tc, test_install_and_unit);
	tcase_add_test(tc, test_install_destdir);
	tcase_add_test(tc, test_setrlimit_refused_is_a_warning);
	suite_add_tcase(s, tc);
	/* The control socket's limits, to run alone: CK_RUN_CASE=control. */
	tc = tcase_create("control");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_control_read_timeout);
	tcase_add_test(tc, test_control_request_deadline);
	tcase_add_test(tc, test_check_payload);
	tcase_add_test(tc, test_check_reads_as_caller);
	tcase_add_test(tc, test_control_slots);
	suite_add_tcase(s, tc);
	/* Its own case, to run alone: CK_RUN_CASE=socket_path. */
	tc = tcase_create("socket_path");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_control_socket_no_follow);
	tcase_add_test(tc, test_control_socket_root_paths);
	suite_add_tcase(s, tc);
	return check_run(s);
}
