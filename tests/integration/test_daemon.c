/*
 * The daemon as an operator meets it: -t, start-up refusals, failed binds
 * and their retry, the control socket under bad input, portfwdctl.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <time.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "check_run.h"
#include "version.h"

/* Fills a Unix socket address; the test paths are short by construction. */
static void set_path(struct sockaddr_un *sun, const char *path)
{
	ck_assert_uint_lt(strlen(path), sizeof(sun->sun_path));
	memcpy(sun->sun_path, path, strlen(path) + 1);
}

static const char *bin(const char *var, const char *fallback)
{
	const char *v = getenv(var);

	return v && *v ? v : fallback;
}

/* A client of D's control socket (FLAGS for socket(2): SOCK_NONBLOCK). */
static int ctl_connect(struct hdaemon *d, int flags)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | flags, 0);

	ck_assert_int_ge(fd, 0);
	set_path(&sun, d->sock);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

#define PORTFWD bin("PORTFWD_BIN", "build/default/portfwd")
#define PORTFWDCTL bin("PORTFWDCTL_BIN", "build/default/portfwdctl")

static int run_portfwd(char **out, const char *a1, const char *a2, const char *a3, const char *a4)
{
	char *argv[] = { (char *)PORTFWD, (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL };

	return h_run(argv, out);
}

static int run_ctl(char **out, const char *a1, const char *a2, const char *a3, const char *a4)
{
	char *argv[] = { (char *)PORTFWDCTL, (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL };

	return h_run(argv, out);
}

static void one_rule(char *buf, size_t len, const char *name, unsigned port, unsigned target)
{
	snprintf(buf, len,
		 "rules: ( { name = \"%s\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 name, port, target);
}

/* -t says how many rules a valid file has: the example none (a fresh
 * install forwards nothing). */
START_TEST(test_check_flag_valid)
{
	char *out;

	ck_assert_int_eq(run_portfwd(&out, "-t", "-c", "conf/portfwd.conf", NULL), 0);
	ck_assert_str_eq(out, "conf/portfwd.conf: configuration is valid, 0 rules\n");
	free(out);
	/* Its rule forwards every address's port 2222 to ssh: a warning, on
	 * stderr (see test_expose), which does not make the file invalid. */
	ck_assert_int_eq(run_portfwd(&out, "-t", "-c", "tests/conf/good/minimal.conf", NULL), 0);
	ck_assert_msg(strstr(out, "tests/conf/good/minimal.conf: configuration is valid, 1 rule, 1 warning\n"
				  "  ssh  tcp  0.0.0.0:2222 (registered) -> 192.168.0.2:22 (ssh, well-known)\n"),
		      "%s", out);
	ck_assert_msg(strstr(out, "tests/conf/good/minimal.conf:2: warning: rule \"ssh\": forwards to port 22 (ssh)"), "%s", out);
	free(out);
}
END_TEST

START_TEST(test_check_flag_errors)
{
	char *out;

	ck_assert_int_eq(run_portfwd(&out, "-t", "-c", "tests/conf/bad/mixed.conf", NULL), 1);
	ck_assert_msg(strstr(out, "tests/conf/bad/mixed.conf:2: defaults: buffer_size: 1 is out of range (4096-67108864)\n"), "%s", out);
	ck_assert_msg(strstr(out, "tests/conf/bad/mixed.conf:5: rule \"ok\": name: \"ok\" is already used by the rule at line 4\n"), "%s", out);
	ck_assert_msg(strstr(out, "tests/conf/bad/mixed.conf:7: rule \"broken\": listen: \"0.0.0.0:99999\": port 99999 is out of range (1-65535)\n"), "%s", out);
	free(out);
	ck_assert_int_eq(run_portfwd(&out, "-t", "-c", "/nonexistent.conf", NULL), 1);
	ck_assert_msg(strstr(out, "/nonexistent.conf: cannot open: No such file or directory"), "%s", out);
	free(out);
	ck_assert_int_eq(run_portfwd(&out, "-x", NULL, NULL, NULL), 2);
	ck_assert_msg(strstr(out, "usage: portfwd"), "%s", out);
	free(out);
	ck_assert_int_eq(run_portfwd(&out, "-l", "loud", "-t", NULL), 2);
	free(out);
}
END_TEST

/* An invalid file: exit 1 with the errors, nothing bound, no socket left. */
START_TEST(test_invalid_config_does_not_start)
{
	struct hdaemon d;
	struct stat st;
	char *out;

	h_prepare(&d, "rules: ( { name = \"x\"; proto = \"tcp\"; listen = \"127.0.0.1:1\"; } );");
	ck_assert_int_eq(run_portfwd(&out, "-c", d.conf, NULL, NULL), 1);
	ck_assert_msg(strstr(out, d.conf) && strstr(out, ": rule \"x\": target: required key is missing"), "%s", out);
	ck_assert_msg(strstr(out, "1 error in the configuration; not starting"), "%s", out);
	ck_assert(stat(d.sock, &st) != 0);
	free(out);
	h_cleanup(&d);
}
END_TEST

START_TEST(test_second_daemon_refused)
{
	struct hdaemon d;
	char conf[512], *out;
	double t0;

	one_rule(conf, sizeof(conf), "a", h_free_port(SOCK_STREAM, false), 9);
	h_start(&d, conf);
	t0 = h_now();
	ck_assert_int_eq(run_portfwd(&out, "-c", d.conf, NULL, NULL), 1);
	ck_assert_msg(h_now() - t0 < 5, "the second daemon took %.1fs to give up", h_now() - t0);
	ck_assert_msg(strstr(out, "another portfwd is already running on"), "%s", out);
	free(out);
	/* The first one is untouched and still answers. */
	ck_assert_int_eq(h_counter(&d, "a", "tcp", "accepted"), 0);
	h_stop(&d);
}
END_TEST

START_TEST(test_stale_socket_replaced)
{
	struct hdaemon d;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char conf[512], dir[] = "/tmp/portfwd-stale.XXXXXX", path[128];
	int fd;
	bool ok;
	char *r;

	/* A socket file nobody listens on, as a crashed daemon leaves behind. */
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ctl.sock", dir);
	set_path(&sun, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	one_rule(conf, sizeof(conf), "a", h_free_port(SOCK_STREAM, false), 9);
	h_start(&d, conf);
	/* h_start's socket is elsewhere; start a second daemon on the stale path. */
	{
		pid_t pid = fork();

		if (pid == 0) {
			int null = open("/dev/null", 1);

			dup2(null, 2);
			execl(PORTFWD, "portfwd", "-c", d.conf, "-s", path, (char *)NULL);
			_exit(127);
		}
		/* Its listener port is taken by the first daemon, which is fine: it starts anyway. */
		for (int i = 0; i < 500; i++) {
			r = h_ctl(path, "status", &ok);
			free(r);
			if (ok)
				break;
			usleep(10000);
		}
		ck_assert_msg(ok, "a daemon did not start on the stale socket %s", path);
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
	h_stop(&d);
	rmdir(dir);
}
END_TEST

/*
 * A rule whose port is taken: the others still work, status names the
 * reason and who holds the port, and the bind is retried until it works.
 */
START_TEST(test_bind_failure_and_retry)
{
	struct hdaemon d;
	struct h_backend b;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	unsigned busy = h_free_port(SOCK_STREAM, false), good = h_free_port(SOCK_STREAM, false);
	char conf[1024], *r;
	json_t *doc, *rule;
	int blocker, fd, one = 1;
	double deadline;
	bool ok;

	h_backend_start(&b, H_ECHO, false);
	blocker = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(blocker, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sin.sin_port = htons((uint16_t)busy);
	ck_assert_int_eq(bind(blocker, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(blocker, 1), 0);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"busy\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; },\n"
		 "         { name = \"good\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 busy, b.port, good, b.port);
	h_start(&d, conf);

	doc = h_status(&d);
	rule = json_array_get(json_object_get(doc, "rules"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(rule, "state")), "failed");
	ck_assert_msg(strstr(json_string_value(json_object_get(json_object_get(rule, "tcp"), "error")),
			     "address already in use: port"),
		      "%s", json_string_value(json_object_get(json_object_get(rule, "tcp"), "error")));
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(doc, "rules"), 1), "state")),
			 "listening");
	json_decref(doc);
	r = h_ctl(d.sock, "status", &ok);
	ck_assert(ok);
	ck_assert_msg(strstr(r, "tcp failed: address already in use"), "%s", r);
	/* Who holds it: this very test process. */
	{
		char pid[32];

		snprintf(pid, sizeof(pid), "held by pid %ld ", (long)getpid());
		ck_assert_msg(strstr(r, pid), "want %s in %s", pid, r);
	}
	free(r);
	ck_assert(h_log_contains(&d, "cannot listen on tcp 127.0.0.1:"));

	fd = h_connect("127.0.0.1", good);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(h_echo_exchange(fd, 4096, 1, 10), 0);
	close(fd);

	close(blocker);
	deadline = h_now() + 10;
	for (;;) {
		const char *state;

		doc = h_status(&d);
		rule = json_array_get(json_object_get(doc, "rules"), 0);
		state = json_string_value(json_object_get(rule, "state"));
		ok = strcmp(state, "listening") == 0;
		json_decref(doc);
		if (ok || h_now() > deadline)
			break;
		usleep(100000);
	}
	ck_assert_msg(ok, "the rule did not bind after its port was freed");
	fd = h_connect("127.0.0.1", busy);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(h_echo_exchange(fd, 4096, 2, 10), 0);
	close(fd);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* rules = ( ) is valid: the daemon starts, warns, forwards nothing, and a
 * reload brings rules in and takes them out again. */
START_TEST(test_no_rules)
{
	struct h_backend b;
	struct hdaemon d;
	char conf[512], *out;
	char *reload[] = { (char *)PORTFWDCTL, "-s", NULL, "reload", NULL };
	unsigned port = h_free_port(SOCK_STREAM, false);
	int fd;

	h_backend_start(&b, H_ECHO, false);
	h_start(&d, "rules = ( );");
	reload[2] = d.sock;
	ck_assert(h_log_contains(&d, "has no rules: nothing is forwarded until a reload brings some"));
	ck_assert_int_eq(run_ctl(&out, "-s", d.sock, "status", NULL), 0);
	ck_assert_msg(strstr(out, "generation 1, 0 rules: 0 listening"), "%s", out);
	free(out);

	one_rule(conf, sizeof(conf), "late", port, b.port);
	h_write_conf(&d, conf);
	ck_assert_int_eq(h_run(reload, &out), 0);
	ck_assert_msg(strstr(out, "1 added, 0 removed"), "%s", out);
	free(out);
	fd = h_connect("127.0.0.1", port);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(h_echo_exchange(fd, 4096, 5, 10), 0);
	close(fd);

	h_write_conf(&d, "rules = ( );");
	ck_assert_int_eq(h_run(reload, &out), 0);
	ck_assert_msg(strstr(out, "0 added, 1 removed"), "%s", out);
	free(out);
	ck_assert_int_eq(h_connect("127.0.0.1", port), -1);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* One version, in src/version.h: both programs, the protocol greeting, the
 * metrics and debian/changelog (the package's version) all say it. */
START_TEST(test_version)
{
	struct hdaemon d;
	char *out, *r;
	bool ok;

	ck_assert_int_eq(run_portfwd(&out, "-V", NULL, NULL, NULL), 0);
	ck_assert_str_eq(out, "portfwd " PORTFWD_VERSION "\n");
	free(out);
	ck_assert_int_eq(run_ctl(&out, "-V", NULL, NULL, NULL), 0);
#define WANT "portfwdctl " PORTFWD_VERSION " (protocol "
	ck_assert_msg(strncmp(out, WANT, sizeof(WANT) - 1) == 0, "%s", out);
#undef WANT
	free(out);
	ck_assert_int_eq(h_sh(&out, "head -n 1 debian/changelog"), 0);
#define WANT "portfwd (" PORTFWD_VERSION ") "
	ck_assert_msg(strncmp(out, WANT, sizeof(WANT) - 1) == 0,
		      "debian/changelog does not start at version %s: %s", PORTFWD_VERSION, out);
#undef WANT
	free(out);

	h_start(&d, "rules = ( );");
	r = h_ctl(d.sock, "metrics", &ok);
	ck_assert(ok);
	ck_assert_msg(strstr(r, "\nportfwd_info{version=\"" PORTFWD_VERSION "\"} 1\n"), "%s", r);
	free(r);
	h_stop(&d);
}
END_TEST

/* Sends raw bytes on a new control connection; returns what came back (malloc'd). */
static char *ctl_raw(const char *sock, const void *data, size_t len)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char *out = calloc(1, 65536);
	size_t got = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	set_path(&sun, sock);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
	shutdown(fd, SHUT_WR);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 5000) != 1)
			break;
		n = read(fd, out + got, 65535 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	return out;
}

static void expect_reply(const char *sock, const char *request, const char *reply)
{
	char *r = ctl_raw(sock, request, strlen(request));

	ck_assert_str_eq(r, reply);
	free(r);
}

START_TEST(test_control_bad_requests)
{
	struct hdaemon d;
	char conf[512], *big, *r;
	int fds[40];
	bool ok;

	one_rule(conf, sizeof(conf), "a", h_free_port(SOCK_STREAM, false), 9);
	h_start(&d, conf);

	expect_reply(d.sock, "bogus\n",
		     ".error unknown command \"bogus\" (commands: help, status, rules, connections, kill, disable, enable, reload, check, metrics, ban, unban, bans, sources, ports, who, free, health)\n");
	expect_reply(d.sock, "r\n", ".error ambiguous command \"r\" (commands: rules, reload)\n");
	expect_reply(d.sock, "status yaml\n",
		     ".error status: unknown argument \"yaml\" (usage: status [--json])\n");
	expect_reply(d.sock, "hello 2\n",
		     ".error unsupported protocol version \"2\" (this daemon speaks 1)\n");
	expect_reply(d.sock, "hello\n", ".error usage: hello VERSION\n");
	expect_reply(d.sock, "stat\x01us\n", ".error request contains control characters\n");
	r = ctl_raw(d.sock, "status\0json\n", 12);
	ck_assert_str_eq(r, ".error request contains a NUL byte\n");
	free(r);
	/* Several requests on one connection, answered in order; blank lines ignored. */
	r = ctl_raw(d.sock, "hello 1\n\nhelp\r\n", 15);
	ck_assert_msg(strncmp(r, "portfwd-ctl 1 portfwd ", 22) == 0, "%s", r);
	ck_assert_msg(strstr(r, "\n.ok\nhello VERSION\t") && strstr(r, "\nstatus\t") && strstr(r, "\nkill ID | --rule RULE\t"), "%s", r);
	free(r);

	/* A request larger than 4 KiB, with and without its newline. */
	big = malloc(100000);
	memset(big, 'a', 100000);
	r = ctl_raw(d.sock, big, 100000);
	ck_assert_str_eq(r, ".error request longer than 4096 bytes\n");
	free(r);
	big[5000] = '\n';
	r = ctl_raw(d.sock, big, 5001);
	ck_assert_str_eq(r, ".error request longer than 4096 bytes\n");
	free(r);
	/* The longest request, 4096 bytes, ending in CRLF with the daemon's
	 * read falling between the CR and the LF (fuzz_control found it
	 * refused as too long): answered. */
	{
		int fd = ctl_connect(&d, 0);
		char reply[65536];
		size_t got = 0;

		memset(big, ' ', 4096);
		memcpy(big, "help", 4);
		memcpy(big + 4096, "\r\n", 2);
		ck_assert_int_eq(send(fd, big, 4097, MSG_NOSIGNAL), 4097);
		usleep(300000);
		ck_assert_int_eq(send(fd, big + 4097, 1, MSG_NOSIGNAL), 1);
		shutdown(fd, SHUT_WR);
		for (;;) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			ssize_t n;

			if (poll(&p, 1, 5000) != 1 || (n = read(fd, reply + got, sizeof(reply) - 1 - got)) <= 0)
				break;
			got += (size_t)n;
		}
		reply[got] = '\0';
		close(fd);
		ck_assert_msg(strstr(reply, "\nstatus\t") && strstr(reply, "\n.ok\n"), "%s", reply);
	}
	free(big);

	/* More clients than allowed: the extra ones are told, the daemon carries on. */
	for (int i = 0; i < 40; i++) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		set_path(&sun, d.sock);
		fds[i] = socket(AF_UNIX, SOCK_STREAM, 0);
		ck_assert_int_eq(connect(fds[i], (struct sockaddr *)&sun, sizeof(sun)), 0);
	}
	{
		char buf[128] = "";
		struct pollfd p = { .fd = fds[39], .events = POLLIN };

		ck_assert_int_eq(poll(&p, 1, 5000), 1);
		ck_assert_int_gt(read(fds[39], buf, sizeof(buf) - 1), 0);
		ck_assert_str_eq(buf, ".error too many control clients, try again\n");
	}
	for (int i = 0; i < 40; i++)
		close(fds[i]);
	usleep(100000);
	r = h_ctl(d.sock, "status", &ok);
	ck_assert(ok);
	free(r);
	h_stop(&d);
}
END_TEST

/*
 * A client that pipelines thousands of requests and reads slowly gets
 * every reply, in order, and the daemon stays responsive meanwhile.
 */
START_TEST(test_control_pipelined_requests)
{
	enum { N = 3000 };
	struct hdaemon d;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char conf[512], buf[65536], tail[8] = "";
	size_t sent = 0, oks = 0;
	const char req[] = "status json\n";
	double deadline;
	int fd;

	one_rule(conf, sizeof(conf), "a", h_free_port(SOCK_STREAM, false), 9);
	h_start(&d, conf);
	set_path(&sun, d.sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	deadline = h_now() + 30;
	while (oks < N && h_now() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN | (sent < N ? POLLOUT : 0) };

		if (poll(&p, 1, 200) <= 0)
			continue;
		if ((p.revents & POLLOUT) && sent < N && send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) > 0) {
			sent++;
			if (sent == N)
				shutdown(fd, SHUT_WR);
		}
		/* Read slowly: a small chunk per turn. */
		if (p.revents & POLLIN) {
			ssize_t n = read(fd, buf, 512);

			if (n <= 0)
				break;
			for (ssize_t i = 0; i < n; i++) {
				memmove(tail, tail + 1, 3);
				tail[3] = buf[i];
				if (memcmp(tail, ".ok\n", 4) == 0)
					oks++;
			}
		}
	}
	close(fd);
	ck_assert_int_eq(sent, N);
	ck_assert_int_eq(oks, N);
	ck_assert_int_eq(h_counter(&d, "a", "tcp", "accepted"), 0);
	h_stop(&d);
}
END_TEST

START_TEST(test_portfwdctl)
{
	struct hdaemon d;
	char conf[512], *out, missing[400];
	json_t *doc;
	json_error_t err;

	one_rule(conf, sizeof(conf), "webapp", h_free_port(SOCK_STREAM, false), 9);
	h_start(&d, conf);

	ck_assert_int_eq(run_ctl(&out, "-s", d.sock, "status", NULL), 0);
	ck_assert_msg(strstr(out, "portfwd " PORTFWD_VERSION ", pid ") && strstr(out, "webapp  tcp  127.0.0.1:") &&
			      strstr(out, "listening") && strstr(out, d.conf),
		      "%s", out);
	free(out);

	ck_assert_int_eq(run_ctl(&out, "-s", d.sock, "status", "--json"), 0);
	doc = json_loads(out, 0, &err);
	ck_assert_msg(doc != NULL, "not JSON: %s\n%s", err.text, out);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "version")), PORTFWD_VERSION);
	ck_assert_int_eq(json_integer_value(json_object_get(doc, "pid")), d.pid);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(doc, "rules"), 0), "name")),
			 "webapp");
	json_decref(doc);
	free(out);

	/* PORTFWD_SOCKET is the default socket. */
	setenv("PORTFWD_SOCKET", d.sock, 1);
	ck_assert_int_eq(run_ctl(&out, "status", NULL, NULL, NULL), 0);
	free(out);
	unsetenv("PORTFWD_SOCKET");

	ck_assert_int_eq(run_ctl(&out, "frobnicate", NULL, NULL, NULL), 2);
	ck_assert_msg(strstr(out, "unknown command \"frobnicate\""), "%s", out);
	free(out);
	ck_assert_int_eq(run_ctl(&out, NULL, NULL, NULL, NULL), 2);
	free(out);
	ck_assert_int_eq(run_ctl(&out, "-s", d.sock, "status", "--yaml"), 2);
	free(out);

	snprintf(missing, sizeof(missing), "%s/nope.sock", d.dir);
	ck_assert_int_eq(run_ctl(&out, "-s", missing, "status", NULL), 3);
	ck_assert_msg(strstr(out, missing) && strstr(out, "does not exist"), "%s", out);
	free(out);
	h_stop(&d);
	/* A stale socket after the daemon is gone. */
	{
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		char dir[] = "/tmp/portfwd-stale.XXXXXX", path[64];
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);

		ck_assert_ptr_nonnull(mkdtemp(dir));
		snprintf(path, sizeof(path), "%s/ctl.sock", dir);
		set_path(&sun, path);
		ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
		close(fd);
		ck_assert_int_eq(run_ctl(&out, "-s", path, "status", NULL), 3);
		ck_assert_msg(strstr(out, "nobody is listening"), "%s", out);
		free(out);
		unlink(path);
		rmdir(dir);
	}
}
END_TEST

/* As root: a daemon run as nobody is told why port 1 fails; portfwdctl run as
 * nobody is refused by the socket's permissions and says so. */
START_TEST(test_permissions)
{
	struct hdaemon d;
	struct stat st;
	char conf[512];
	unsigned low = 0;
	json_t *doc;
	const char *why;
	FILE *fp;

	if (geteuid() != 0) {
		fprintf(stderr, "test_permissions: skipped (needs root)\n");
		return;
	}
	fp = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "r");
	if (fp) {
		if (fscanf(fp, "%u", &low) != 1)
			low = 1024;
		fclose(fp);
	}
	one_rule(conf, sizeof(conf), "low", 1, 9);
	if (low > 1) {
		/* The daemon as nobody on port 1: told it is well-known and needs privilege. */
		h_start_as(&d, conf, 65534, 65534);
		doc = h_status(&d);
		why = json_string_value(json_object_get(
			json_object_get(json_array_get(json_object_get(doc, "rules"), 0), "tcp"), "error"));
		ck_assert_str_eq(why, "permission denied: port 1 is in the well-known range (0-1023) and needs root or CAP_NET_BIND_SERVICE");
		json_decref(doc);
		ck_assert_int_eq(stat(d.sock, &st), 0);
		ck_assert_int_eq(st.st_mode & 0777, 0660);
		h_stop(&d);
	}

	/* portfwdctl as another user: permission denied, exit 3. */
	one_rule(conf, sizeof(conf), "x", h_free_port(SOCK_STREAM, false), 9);
	h_start(&d, conf);
	chmod(d.dir, 0755);
	{
		char *argv[] = { (char *)PORTFWDCTL, "-s", d.sock, "status", NULL };
		int pipefd[2], status;
		pid_t pid;
		char buf[512] = "";

		ck_assert_int_eq(pipe(pipefd), 0);
		pid = fork();
		if (pid == 0) {
			dup2(pipefd[1], 2);
			if (setgid(65534) < 0 || setuid(65534) < 0)
				_exit(126);
			execv(argv[0], argv);
			_exit(127);
		}
		close(pipefd[1]);
		ck_assert_int_ge(read(pipefd[0], buf, sizeof(buf) - 1), 0);
		close(pipefd[0]);
		waitpid(pid, &status, 0);
		ck_assert_int_eq(WEXITSTATUS(status), 3);
		ck_assert_msg(strstr(buf, "permission denied"), "%s", buf);
	}
	h_stop(&d);
}
END_TEST

/* A client that resets while the target streams at it: the daemon gets
 * EPIPE/ECONNRESET, survives, and cleans the connection up. */
START_TEST(test_client_reset_mid_stream)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = h_free_port(SOCK_STREAM, false);
	char conf[512], buf[65536];
	struct linger lg = { 1, 0 };
	int fd;

	b.source_len = 512u << 20;
	h_backend_start(&b, H_SOURCE, false);
	one_rule(conf, sizeof(conf), "t", port, b.port);
	h_start(&d, conf);
	for (int i = 0; i < 5; i++) {
		fd = h_connect("127.0.0.1", port);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_gt(read(fd, buf, sizeof(buf)), 0);
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
	}
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "active", 0, 10), 0);
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "accepted"), 5);
	ck_assert(h_log_contains(&d, "client reset the connection") || h_log_contains(&d, "client error"));
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/*
 * The file limit warning counts what a spliced connection really holds
 * (2 sockets and up to 2 pipes) and each worker's spare pipes: 150
 * connections need far more than 300 descriptors, which would pass if
 * only the sockets were counted.
 */
START_TEST(test_fd_limit_counts_pipes)
{
	struct hdaemon d;
	unsigned port = h_free_port(SOCK_STREAM, false);
	char conf[512];

	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"t\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; max_connections = 150; splice = true; } );",
		 port);
	h_start_nofile(&d, conf, 700);
	ck_assert(h_log_contains(&d, "file descriptors at once (a TCP connection takes 2, or 6 with splice"));
	ck_assert(h_log_contains(&d, "but the limit is 700"));
	h_stop(&d);
}
END_TEST

/*
 * A control client that sends requests and never reads the replies: the
 * daemon stops reading it once a few replies wait (its memory stays flat,
 * however many requests come), answers everyone else meanwhile, and
 * closes it when its write timeout ends.
 */
START_TEST(test_control_client_never_reads)
{
	struct hdaemon d;
	char conf[512], req[4096];
	unsigned port = h_free_port(SOCK_STREAM, false);
	int fd, small = 4096, sent = 0;
	long rss0, rss1;
	double deadline;
	json_t *st;

	one_rule(conf, sizeof(conf), "t", port, 9);
	h_start(&d, conf);
	rss0 = h_rss_kib(d.pid);
	fd = ctl_connect(&d, SOCK_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	/* Requests for large replies (metrics), as fast as the daemon takes
	 * them, for 3 s. */
	for (size_t o = 0; o + 8 <= sizeof(req); o += 8)
		memcpy(req + o, "metrics\n", 8);
	deadline = h_now() + 3;
	while (h_now() < deadline) {
		ssize_t n = send(fd, req, sizeof(req), MSG_NOSIGNAL);

		if (n > 0)
			sent += (int)n / 8;
		else
			usleep(10000);
	}
	rss1 = h_rss_kib(d.pid);
	ck_assert_msg(rss1 - rss0 < 8 * 1024, "the daemon grew by %ld KiB for a client that never reads (%d requests sent)",
		      rss1 - rss0, sent);
	/* Everyone else is answered meanwhile. */
	st = h_status(&d);
	ck_assert_ptr_nonnull(st);
	json_decref(st);
	/* And the client is closed after its write timeout (5 s), still
	 * unread: its end hangs up. */
	{
		struct pollfd p = { .fd = fd, .events = POLLRDHUP };

		ck_assert_msg(poll(&p, 1, 20000) == 1 && (p.revents & (POLLHUP | POLLRDHUP)),
			      "the client that never read was never closed");
	}
	close(fd);
	h_stop(&d);
}
END_TEST

/*
 * Writing into a socket whose peer is gone raises SIGPIPE, which would end
 * the daemon: clients that reset in the middle of a download (the daemon
 * splicing or copying to them) and control clients that leave before
 * their reply must cost nothing but themselves.
 */
START_TEST(test_sigpipe_never_kills)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = h_free_port(SOCK_STREAM, false);
	char conf[512], c;
	json_t *st;

	b.source_len = 64u << 20;
	h_backend_start(&b, H_SOURCE, false);
	one_rule(conf, sizeof(conf), "t", port, b.port);
	h_start(&d, conf);
	for (int i = 0; i < 20; i++) {
		int fd = h_connect("127.0.0.1", port);
		struct pollfd p = { .fd = fd, .events = POLLIN };

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(poll(&p, 1, 10000), 1);
		ck_assert_int_eq(recv(fd, &c, 1, 0), 1);
		usleep(20000);
		/* Unread bytes: the close is a reset, and the daemon's next
		 * write to it fails with EPIPE. */
		close(fd);
	}
	for (int i = 0; i < 20; i++) {
		int fd = ctl_connect(&d, 0);

		ck_assert_int_eq(send(fd, "metrics\n", 8, MSG_NOSIGNAL), 8);
		close(fd);
	}
	/* Still running (not a zombie a signal left). */
	ck_assert_int_eq(waitpid(d.pid, NULL, WNOHANG), 0);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "active", 0, 10), 0);
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "accepted"), 20);
	st = h_status(&d);
	ck_assert_ptr_nonnull(st);
	json_decref(st);
	h_stop(&d); /* exits 0: no signal ended it */
	h_backend_stop(&b);
}
END_TEST

/*
 * Out of descriptors, a control client waiting to be accepted must not
 * make the main loop spin (accept failing with EMFILE at once, again and
 * again, as libevent does without an error callback): the control socket
 * rests a second at a time, says so once, and answers again as soon as
 * descriptors are back.
 */
START_TEST(test_control_out_of_descriptors)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = h_free_port(SOCK_STREAM, false);
	int fds[64], ctl_fds[16], n, nctl = 0, waiting;
	char conf[512];
	json_t *st;

	h_backend_start(&b, H_ECHO, false);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"t\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 port, b.port);
	h_start_nofile(&d, conf, 40);
	n = h_exhaust_descriptors(&d, "t", port, fds, 64);

	/* Control clients until one is not answered: the daemon cannot accept
	 * it, so it waits in the backlog and the listening socket stays
	 * readable. (The ones answered hold the last descriptors.) */
	for (;;) {
		struct pollfd p = { .events = POLLIN };

		ck_assert_int_lt(nctl, 16);
		waiting = ctl_connect(&d, 0);
		ck_assert_int_eq(write(waiting, "hello 1\n", 8), 8);
		p.fd = waiting;
		if (poll(&p, 1, 1500) == 0)
			break;
		ctl_fds[nctl++] = waiting;
	}
	ck_assert_msg(h_wait_log(&d, "control: out of file descriptors", 10),
		      "the control socket never met the shortage");
	h_assert_quiet(&d, 2, "while out of descriptors");

	/* Descriptors back: the waiting client is served, and new ones too. */
	for (int i = 0; i < n; i++)
		close(fds[i]);
	for (int i = 0; i < nctl; i++)
		close(ctl_fds[i]);
	{
		struct pollfd p = { .fd = waiting, .events = POLLIN };
		char buf[256];

		ck_assert_int_eq(poll(&p, 1, 10000), 1);
		ck_assert_int_gt(read(waiting, buf, sizeof(buf)), 0);
		ck_assert_msg(strncmp(buf, "portfwd-ctl 1 ", 14) == 0, "hello answered \"%.40s\"", buf);
	}
	close(waiting);
	st = h_status(&d);
	ck_assert(st);
	json_decref(st);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "active", 0, 10), 0);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* libfaketime, for the daemon only (NULL where it is not installed). */
static const char *faketime_lib(char *buf, size_t len)
{
	glob_t g;
	const char *found = NULL;

	if (glob("/usr/lib/*/faketime/libfaketimeMT.so.1", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
		snprintf(buf, len, "%s", g.gl_pathv[0]);
		found = buf;
	}
	globfree(&g);
	return found;
}

/* Sets the daemon's wall clock OFFSET from the real one ("+1d", "-2d"). */
static void faketime_set(const char *file, const char *offset)
{
	FILE *fp = fopen(file, "w");

	ck_assert_ptr_nonnull(fp);
	fprintf(fp, "%s\n", offset);
	fclose(fp);
}

/* True if the log has a line dated DAYS from today (the daemon's clock). */
static bool log_dated(struct hdaemon *d, int days)
{
	char date[32];
	time_t t = time(NULL) + (time_t)days * 86400;
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(date, sizeof(date), "\n%Y-%m-%d ", &tm);
	return h_log_contains(d, date);
}

/*
 * The wall clock jumps a day ahead, then a day back (NTP after a long
 * suspend, an operator's date -s), each time while a connection and a UDP
 * session sit idle: nothing that portfwd times may notice, as every timer
 * and deadline runs on the monotonic clock. Ahead, they must not be taken
 * for a day idle (ended at once); back, they must not be taken for never
 * idle (kept for a day): idle_timeout and udp_idle_timeout (6 s) still end
 * them on time. A ban for a minute holds throughout. libfaketime moves the
 * daemon's wall clock only (DONT_FAKE_MONOTONIC): its log's dates show the
 * jumps took.
 */
START_TEST(test_wall_clock_jumps)
{
	struct hdaemon d;
	struct h_backend b, bu;
	unsigned port = h_free_port(SOCK_STREAM, false), uport = h_free_port(SOCK_DGRAM, false);
	char conf[768], lib[256], file[128], asan[512], buf[16], *r;
	const char *was = getenv("ASAN_OPTIONS");
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)uport),
				   .sin_addr.s_addr = htonl(0x7f000001) };
	int fd, ufd;
	bool ok;
	double quiet;

	if (!faketime_lib(lib, sizeof(lib))) {
		/* make check installs it: as root, missing is a failure. */
		ck_assert_msg(geteuid() != 0, "libfaketime is not installed (scripts/install-deps test)");
		fprintf(stderr, "test_wall_clock_jumps: skipped: libfaketime is not installed\n");
		return;
	}
	snprintf(file, sizeof(file), "/tmp/portfwd-faketime.%d", (int)getpid());
	faketime_set(file, "+0");
	h_backend_start(&b, H_ECHO, false);
	h_backend_start(&bu, H_UDP_ECHO, false);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"t\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; idle_timeout = 6; },"
		 " { name = \"u\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; udp_idle_timeout = 6; } );",
		 port, b.port, uport, bu.port);
	setenv("LD_PRELOAD", lib, 1);
	setenv("FAKETIME_TIMESTAMP_FILE", file, 1);
	setenv("FAKETIME_CACHE_DURATION", "1", 1);
	setenv("DONT_FAKE_MONOTONIC", "1", 1);
	/* The sanitizers' runtimes want to come first; libfaketime only wraps
	 * the clock calls. */
	snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0", was ? was : "", was ? ":" : "");
	setenv("ASAN_OPTIONS", asan, 1);
	h_start(&d, conf);
	unsetenv("LD_PRELOAD");
	unsetenv("FAKETIME_TIMESTAMP_FILE");
	unsetenv("FAKETIME_CACHE_DURATION");
	unsetenv("DONT_FAKE_MONOTONIC");
	if (was)
		setenv("ASAN_OPTIONS", was, 1);
	else
		unsetenv("ASAN_OPTIONS");
	r = h_ctl(d.sock, "ban 127.0.0.9 --for 60s", &ok);
	ck_assert_msg(r && ok, "ban: %s", r ? r : "(no reply)");
	free(r);
	fd = h_connect("127.0.0.1", port);
	ufd = socket(AF_INET, SOCK_DGRAM, 0);
	ck_assert_int_eq(connect(ufd, (struct sockaddr *)&sin, sizeof(sin)), 0);

	for (int step = 0; step < 2; step++) {
		const char *offset = step == 0 ? "+1d" : "-1d";
		int days = step == 0 ? 1 : -1;
		double t0;

		/* Traffic on both, then nothing while the clock jumps. */
		ck_assert_int_eq(h_echo_exchange_open(fd, 1000, 1 + (uint64_t)step, 5, true), 0);
		ck_assert_int_eq(send(ufd, "u", 1, 0), 1);
		{
			struct pollfd p = { .fd = ufd, .events = POLLIN };

			ck_assert_int_eq(poll(&p, 1, 5000), 1);
			ck_assert_int_eq(recv(ufd, buf, sizeof(buf), 0), 1);
		}
		t0 = h_now();
		faketime_set(file, offset);
		/* The daemon's clock took the jump: a line logged after it is
		 * dated that day (control requests are logged). */
		while (!log_dated(&d, days) && h_now() - t0 < 5) {
			free(h_ctl(d.sock, "status", &ok));
			usleep(200000);
		}
		ck_assert_msg(log_dated(&d, days), "the daemon's clock did not move %s", offset);
		/* Its timers have looked since (they tick every second). */
		if (h_now() - t0 < 2.5)
			usleep((useconds_t)((2.5 - (h_now() - t0)) * 1e6));
		ck_assert_msg(h_now() - t0 < 5.5, "too slow to tell (%.1f s of the 6 s idle)", h_now() - t0);
		/* Idle 2.5-5.5 s of their 6: both still there. */
		ck_assert_int_eq(h_counter(&d, "t", "tcp", "active"), 1);
		ck_assert_int_eq(h_counter(&d, "u", "udp", "active"), 1);
		ck_assert_int_eq(h_counter(&d, "u", "udp", "sessions_expired"), 0);
		{
			int banned = h_connect_from("127.0.0.9", "127.0.0.1", port);
			struct pollfd p = { .fd = banned, .events = POLLIN };

			ck_assert_int_ge(banned, 0);
			ck_assert_msg(poll(&p, 1, 5000) == 1 && recv(banned, buf, sizeof(buf), 0) <= 0,
				      "the ban did not hold after the clock moved %s", offset);
			close(banned);
		}
	}

	/* A day back, still idle: both end on time (6 s after their last
	 * traffic), not in a day. */
	quiet = h_now();
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };

		ck_assert_msg(poll(&p, 1, 15000) == 1 && recv(fd, buf, sizeof(buf), 0) <= 0,
			      "idle_timeout 6 did not end the connection after the clock went back");
	}
	ck_assert_int_eq(h_wait_counter(&d, "u", "udp", "sessions_expired", 1, 10), 1);
	fprintf(stderr, "clock jumps: the connection ended %.1f s after the check\n", h_now() - quiet);
	close(fd);
	close(ufd);
	h_stop(&d);
	h_backend_stop(&b);
	h_backend_stop(&bu);
	unlink(file);
}
END_TEST

/* ---- names and classes of ports, everywhere a port is shown ---- */

/* The IANA class of PORT, written here apart from portinfo's. */
static const char *port_class(unsigned port)
{
	return port <= 1023 ? "well-known" : port <= 49151 ? "registered" : "dynamic";
}

/* The services file the daemon of test_port_names reads. */
static char names_services[300];

/* In the daemon's process: names_services over /etc/services, in a mount
 * namespace of its own (the test's own /etc/services is untouched). */
static void names_child_hook(void)
{
	if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount(names_services, "/etc/services", NULL, MS_BIND, NULL) < 0)
		_exit(99);
}

/* Port's entry in a services document {port, service, class}. */
static void assert_port_json(json_t *port, unsigned want, const char *service)
{
	ck_assert_msg(json_is_object(port), "no port object");
	ck_assert_int_eq(json_integer_value(json_object_get(port, "port")), want);
	if (service)
		ck_assert_str_eq(json_string_value(json_object_get(port, "service")), service);
	else
		ck_assert(json_is_null(json_object_get(port, "service")));
	ck_assert_str_eq(json_string_value(json_object_get(port, "class")), port_class(want));
}

/* Replaces the services file open on FD with TEXT (the same file: the
 * daemon's bind mount sees it). */
static void names_rewrite(int fd, const char *text)
{
	ck_assert_int_eq(ftruncate(fd, 0), 0);
	ck_assert_int_eq(pwrite(fd, text, strlen(text), 0), (ssize_t)strlen(text));
}

/* A connection through PORT that is up at both ends (one byte echoed). */
static int names_connect(unsigned port)
{
	struct pollfd pfd = { .fd = h_connect("127.0.0.1", port), .events = POLLIN };
	char c = 'x';

	ck_assert_int_ge(pfd.fd, 0);
	ck_assert_int_eq(write(pfd.fd, &c, 1), 1);
	ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
	ck_assert_int_eq(read(pfd.fd, &c, 1), 1);
	return pfd.fd;
}

/* The connection of DOC (connections --json) whose client is FD's end. */
static json_t *names_conn_of(json_t *doc, int fd)
{
	struct sockaddr_in me;
	socklen_t len = sizeof(me);
	char client[64];
	json_t *c;
	size_t i;

	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&me, &len), 0);
	snprintf(client, sizeof(client), "127.0.0.1:%u", ntohs(me.sin_port));
	json_array_foreach(json_object_get(doc, "connections"), i, c)
		if (strcmp(json_string_value(json_object_get(c, "client")), client) == 0)
			return c;
	ck_abort_msg("no connection from %s", client);
	return NULL;
}

/* A free port of SOCKTYPE that portinfo's own table does not name (it would
 * name it whatever the services file says). */
static unsigned names_free_port(int socktype)
{
	static const unsigned builtin[] = { 3389, 8096, 8123, 22000, 25565, 32400, 51820 };

	for (;;) {
		unsigned p = h_free_port(socktype, false);
		bool named = false;

		for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
			named |= builtin[i] == p;
		if (!named)
			return p;
	}
}

/* REQUEST's reply from D, which must be ok and hold WANT. */
static void names_ctl_has(struct hdaemon *d, const char *request, const char *want)
{
	bool ok;
	char *out = h_ctl(d->sock, request, &ok);

	ck_assert_msg(ok && out && strstr(out, want), "%s: want %s in %s", request, want,
		      out ? out : "no reply");
	free(out);
}

/* REQUEST's reply from D, which must be ok, as JSON. */
static json_t *names_ctl_json(struct hdaemon *d, const char *request)
{
	bool ok;
	char *out = h_ctl(d->sock, request, &ok);
	json_t *doc;

	ck_assert_msg(ok, "%s: %s", request, out ? out : "no reply");
	doc = json_loads(out, 0, NULL);
	ck_assert_msg(doc, "%s: not JSON: %s", request, out);
	free(out);
	return doc;
}

/*
 * Ports with their service names (from a services file of the test's own,
 * put over /etc/services in the daemon's mount namespace) and classes in
 * status, rules, connections, check and the log, text and JSON; a name in
 * the configuration stands for its port; a port without a name shows its
 * class only; names the services file changes show after a reload, in
 * status and for new connections, without restarting the rule.
 */
START_TEST(test_port_names)
{
	struct hdaemon d;
	struct h_backend be;
	unsigned lport = names_free_port(SOCK_STREAM), uport = names_free_port(SOCK_DGRAM);
	char conf[1024], want[512], text[512], *out, lw[128], tw[128];
	json_t *doc, *r;
	bool ok;
	int fd, sfd, c2;

	if (geteuid() != 0) {
		fprintf(stderr, "test_port_names needs root (a mount namespace): skipped\n");
		return;
	}
	h_backend_start(&be, H_ECHO, false);
	snprintf(names_services, sizeof(names_services), "/tmp/portfwd-names-XXXXXX");
	sfd = mkstemp(names_services);
	ck_assert_int_ge(sfd, 0);
	/* The target port named for UDP too, so portinfo's table never names it. */
	snprintf(text, sizeof(text),
		 "pf-front\t%u/tcp\t\t# the listen port\npf-back\t\t%u/tcp\tpf-alias\npf-back-u\t%u/udp\n",
		 lport, be.port, be.port);
	names_rewrite(sfd, text);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"web\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:pf-alias\"; },\n"
		 "         { name = \"plain\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 lport, uport, be.port);
	h_child_hook = names_child_hook;
	h_start(&d, conf);
	h_child_hook = NULL;
	unlink(names_services); /* the daemon's mount and SFD hold it */

	snprintf(lw, sizeof(lw), "127.0.0.1:%u (pf-front, %s)", lport, port_class(lport));
	snprintf(tw, sizeof(tw), "127.0.0.1:%u (pf-back, %s)", be.port, port_class(be.port));
	/* status */
	out = h_ctl(d.sock, "status", &ok);
	ck_assert(ok);
	snprintf(want, sizeof(want), "\nweb  tcp  %s -> %s  listening\n", lw, tw);
	ck_assert_msg(strstr(out, want), "want %s in %s", want, out);
	snprintf(want, sizeof(want), "\nplain  udp  127.0.0.1:%u (%s) -> 127.0.0.1:%u (pf-back-u, %s)  listening\n",
		 uport, port_class(uport), be.port, port_class(be.port));
	ck_assert_msg(strstr(out, want), "want %s in %s", want, out);
	free(out);
	doc = h_status(&d);
	r = json_array_get(json_object_get(doc, "rules"), 0);
	assert_port_json(json_object_get(r, "listen_port"), lport, "pf-front");
	assert_port_json(json_object_get(r, "target_port"), be.port, "pf-back");
	r = json_array_get(json_object_get(doc, "rules"), 1);
	assert_port_json(json_object_get(r, "listen_port"), uport, NULL); /* no name */
	assert_port_json(json_object_get(r, "target_port"), be.port, "pf-back-u"); /* its udp name */
	json_decref(doc);
	/* rules */
	snprintf(want, sizeof(want), "\nweb  tcp  %s -> %s  listening  (line ", lw, tw);
	names_ctl_has(&d, "rules", want);
	doc = names_ctl_json(&d, "rules --json");
	r = json_array_get(json_object_get(doc, "rules"), 0);
	assert_port_json(json_object_get(r, "target_port"), be.port, "pf-back");
	json_decref(doc);
	/* check */
	snprintf(want, sizeof(want), "configuration is valid\n  web  tcp  %s -> %s\n", lw, tw);
	names_ctl_has(&d, "check", want);
	doc = names_ctl_json(&d, "check --json");
	r = json_array_get(json_object_get(doc, "rules"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(r, "name")), "web");
	assert_port_json(json_object_get(r, "listen_port"), lport, "pf-front");
	json_decref(doc);
	/* connections: a live one, to the named target */
	fd = names_connect(lport);
	out = h_ctl(d.sock, "connections", &ok);
	ck_assert(ok);
	snprintf(want, sizeof(want), " %s ", tw);
	ck_assert_msg(strstr(out, want), "want %s in %s", want, out);
	free(out);
	doc = names_ctl_json(&d, "connections --json");
	assert_port_json(json_object_get(names_conn_of(doc, fd), "target_port"), be.port, "pf-back");
	json_decref(doc);
	/* the log */
	snprintf(want, sizeof(want), "rule web: listening on tcp %s, forwarding to %s\n", lw, tw);
	ck_assert_msg(h_log_contains(&d, want), "want %s in %s", want, d.log);

	/* The services file renames the target: after a reload, status and a
	 * new connection show the new name; the rule is unchanged (not
	 * rebound) and its connection carries on. */
	snprintf(text, sizeof(text), "pf-front\t%u/tcp\npf-renamed\t%u/tcp\tpf-alias\n", lport, be.port);
	names_rewrite(sfd, text);
	out = h_ctl(d.sock, "reload", &ok);
	ck_assert_msg(ok && strstr(out, "0 added, 0 removed, 0 changed, 2 unchanged"), "%s", out);
	free(out);
	doc = h_status(&d);
	assert_port_json(json_object_get(json_array_get(json_object_get(doc, "rules"), 0), "target_port"),
			 be.port, "pf-renamed");
	json_decref(doc);
	c2 = names_connect(lport);
	doc = names_ctl_json(&d, "connections --json");
	assert_port_json(json_object_get(names_conn_of(doc, c2), "target_port"), be.port, "pf-renamed");
	ck_assert_int_eq(json_array_size(json_object_get(doc, "connections")), 2);
	json_decref(doc);
	close(c2);
	close(fd);
	close(sfd);
	h_stop(&d);
	h_backend_stop(&be);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("daemon");
	TCase *tc = tcase_create("daemon");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_check_flag_valid);
	tcase_add_test(tc, test_check_flag_errors);
	tcase_add_test(tc, test_port_names);
	tcase_add_test(tc, test_invalid_config_does_not_start);
	tcase_add_test(tc, test_second_daemon_refused);
	tcase_add_test(tc, test_stale_socket_replaced);
	tcase_add_test(tc, test_bind_failure_and_retry);
	tcase_add_test(tc, test_control_bad_requests);
	tcase_add_test(tc, test_control_pipelined_requests);
	tcase_add_test(tc, test_portfwdctl);
	tcase_add_test(tc, test_no_rules);
	tcase_add_test(tc, test_version);
	tcase_add_test(tc, test_permissions);
	tcase_add_test(tc, test_client_reset_mid_stream);
	tcase_add_test(tc, test_fd_limit_counts_pipes);
	tcase_add_test(tc, test_control_out_of_descriptors);
	tcase_add_test(tc, test_control_client_never_reads);
	tcase_add_test(tc, test_sigpipe_never_kills);
	tcase_add_test(tc, test_wall_clock_jumps);
	suite_add_tcase(s, tc);
	return check_run(s);
}
