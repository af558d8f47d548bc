#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double h_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void h_sleep(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	nanosleep(&ts, NULL);
}

socklen_t h_sockaddr(const char *host, unsigned port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(host, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, host, &s6->sin6_addr);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, host, &s4->sin_addr);
	return sizeof(*s4);
}

/*
 * A port nothing holds now. The kernel picks it at random and, as the
 * socket is closed at once, may pick it again for the next call: a test
 * that asks for two ports must get two, so the last ones handed out in
 * this process are never handed out again.
 */
unsigned h_free_port(int socktype, bool v6)
{
	static unsigned recent[64];
	static size_t next;
	unsigned port = 0;

	for (int tries = 0; tries < 100; tries++) {
		struct sockaddr_storage ss;
		socklen_t len = h_sockaddr(v6 ? "::1" : "127.0.0.1", 0, &ss);
		int fd = socket(ss.ss_family, socktype, 0);
		bool seen = false;

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(bind(fd, (struct sockaddr *)&ss, len), 0);
		len = sizeof(ss);
		getsockname(fd, (struct sockaddr *)&ss, &len);
		port = v6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
			  : ntohs(((struct sockaddr_in *)&ss)->sin_port);
		close(fd);
		for (size_t i = 0; i < sizeof(recent) / sizeof(recent[0]); i++)
			seen |= recent[i] == port;
		if (!seen)
			break;
	}
	recent[next++ % (sizeof(recent) / sizeof(recent[0]))] = port;
	return port;
}

const char *h_daemon_extra;
unsigned h_dir_mode;
void (*h_child_hook)(void);
const char *h_daemon_netns;

void h_write_conf(struct hdaemon *d, const char *body)
{
	const char *workers = getenv("PORTFWD_TEST_WORKERS");
	const char *splice = getenv("PORTFWD_TEST_SPLICE");
	const char *defaults = strstr(body, "defaults: {");
	FILE *fp = fopen(d->conf, "w");

	ck_assert_msg(fp != NULL, "cannot write %s", d->conf);
	fprintf(fp, "daemon: { control_socket = \"%s\"; log_level = \"debug\"; log_connections = true;",
		d->sock);
	if (workers && *workers)
		fprintf(fp, " workers = %s;", workers);
	if (h_daemon_extra)
		fprintf(fp, " %s", h_daemon_extra);
	fprintf(fp, " };\n");
	/* The test matrix's splice setting goes into the defaults, the test's own or new ones. */
	if (splice && *splice) {
		if (defaults) {
			size_t head = (size_t)(defaults - body) + strlen("defaults: {");

			fprintf(fp, "%.*s splice = %s; %s\n", (int)head, body, splice, body + head);
		} else {
			fprintf(fp, "defaults: { splice = %s; };\n%s\n", splice, body);
		}
	} else {
		fprintf(fp, "%s\n", body);
	}
	fclose(fp);
}

static int h_cmp_ulong(const void *a, const void *b)
{
	unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;

	return x < y ? -1 : x > y;
}

int h_socket_inodes(unsigned port, bool udp, unsigned long *out, int max)
{
	const char *files[2] = { udp ? "/proc/net/udp" : "/proc/net/tcp",
				 udp ? "/proc/net/udp6" : "/proc/net/tcp6" };
	int n = 0;

	for (int f = 0; f < 2; f++) {
		FILE *fp = fopen(files[f], "r");
		char line[512];

		if (!fp)
			continue;
		while (fgets(line, sizeof(line), fp)) {
			char local[64], remote[64], *colon;
			unsigned st, lport;
			unsigned long inode;

			if (sscanf(line, " %*d: %63s %63s %x %*s %*s %*s %*s %*s %lu", local, remote, &st,
				   &inode) != 4)
				continue;
			colon = strrchr(local, ':');
			if (!colon || sscanf(colon + 1, "%x", &lport) != 1 || lport != port)
				continue;
			/* 0A: LISTEN for TCP; 07: a bound UDP socket. */
			if (st != (udp ? 0x07u : 0x0Au))
				continue;
			if (n < max)
				out[n] = inode;
			n++;
		}
		fclose(fp);
	}
	if (out && n > 0 && max > 0)
		qsort(out, (size_t)(n < max ? n : max), sizeof(*out), h_cmp_ulong);
	return n;
}

void h_prepare(struct hdaemon *d, const char *body)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/portfwd-test.XXXXXX");
	ck_assert_msg(mkdtemp(d->dir) != NULL, "mkdtemp: %s", strerror(errno));
	snprintf(d->conf, sizeof(d->conf), "%s/portfwd.conf", d->dir);
	snprintf(d->sock, sizeof(d->sock), "%s/ctl.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/portfwd.log", d->dir);
	h_write_conf(d, body);
}

const char *h_bin(const char *var, const char *fallback)
{
	const char *v = getenv(var);

	return v && *v ? v : fallback;
}

/* Forks and executes portfwd on D's configuration, its stderr to D's log. */
static void h_exec(struct hdaemon *d, uid_t uid, gid_t gid, rlim_t nofile)
{
	const char *bin = h_bin("PORTFWD_BIN", "build/default/portfwd");
	pid_t parent = getpid();
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(fd, 2);
		close(fd);
		/* The daemon must not inherit the test's sockets (backends, blockers). */
		close_range(3, ~0U, 0);
		if (nofile) {
			struct rlimit rl = { nofile, nofile };

			if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
				_exit(125);
		}
		if (uid != 0 && (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0))
			_exit(126);
		/* A failed assertion ends the test's process without h_stop: the
		 * daemon goes with it rather than hold its ports (and its router
		 * mappings) into the next test. Set after setuid, which clears it;
		 * the daemon's own privilege drop (user = ...) clears it too. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(123);
		if (h_daemon_netns) {
			char ns[128];
			int nsfd;

			snprintf(ns, sizeof(ns), "/run/netns/%s", h_daemon_netns);
			nsfd = open(ns, O_RDONLY | O_CLOEXEC);
			if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0)
				_exit(124);
			close(nsfd);
		}
		if (h_child_hook)
			h_child_hook();
		execl(bin, "portfwd", "-c", d->conf, (char *)NULL);
		_exit(127);
	}
	d->pid = pid;
}

void h_spawn(struct hdaemon *d)
{
	h_exec(d, 0, 0, 0);
}

bool h_wait_log(struct hdaemon *d, const char *text, double seconds)
{
	double deadline = h_now() + seconds;

	while (h_now() < deadline) {
		if (h_log_contains(d, text))
			return true;
		if (d->pid > 0 && waitpid(d->pid, &d->status, WNOHANG) == d->pid) {
			d->pid = 0;
			return h_log_contains(d, text);
		}
		h_sleep(0.02);
	}
	return h_log_contains(d, text);
}

int h_kill(struct hdaemon *d)
{
	double deadline = h_now() + 10;
	int st = -1;

	if (d->pid <= 0)
		return d->status; /* already reaped by h_wait_log */
	kill(d->pid, SIGTERM);
	while (h_now() < deadline && waitpid(d->pid, &st, WNOHANG) != d->pid)
		h_sleep(0.01);
	if (h_now() >= deadline) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, &st, 0);
	}
	d->pid = 0;
	return st;
}

/*
 * Copies the end of the daemon's log to stderr under WHY: a CI run keeps
 * the test's output, not its temporary directory.
 */
static void h_log_dump(struct hdaemon *d, const char *why)
{
	char buf[8192];
	FILE *fp = fopen(d->log, "r");
	size_t n = 0;
	long size;

	fprintf(stderr, "---- %s: the last lines of %s ----\n", why, d->log);
	if (fp && fseek(fp, 0, SEEK_END) == 0 && (size = ftell(fp)) >= 0) {
		fseek(fp, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
		n = fread(buf, 1, sizeof(buf) - 1, fp);
	}
	buf[n] = '\0';
	fprintf(stderr, "%s%s---- end of %s ----\n", buf, n && buf[n - 1] != '\n' ? "\n" : "", d->log);
	if (fp)
		fclose(fp);
}

static void h_launch(struct hdaemon *d, const char *body, uid_t uid, gid_t gid, rlim_t nofile)
{
	double deadline;

	h_prepare(d, body);
	if (h_dir_mode)
		chmod(d->dir, h_dir_mode);
	if (uid != 0) {
		chmod(d->dir, 0777);
		chmod(d->conf, 0644);
	}
	h_exec(d, uid, gid, nofile);
	deadline = h_now() + 10;
	while (h_now() < deadline) {
		bool ok = false;
		char *r = h_ctl(d->sock, "status", &ok);
		int st;

		free(r);
		if (ok)
			return;
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			d->pid = 0;
			h_log_dump(d, "portfwd exited during start-up");
			ck_abort_msg("portfwd exited during start-up (status %d); its log is above and in %s",
				     st, d->log);
		}
		h_sleep(0.02);
	}
	h_log_dump(d, "portfwd did not answer");
	ck_abort_msg("portfwd did not answer on %s within 10 s; its log is above and in %s", d->sock, d->log);
}

void h_start(struct hdaemon *d, const char *body)
{
	h_launch(d, body, 0, 0, 0);
}

void h_start_in(struct hdaemon *d, const char *body, const char *ns)
{
	h_daemon_netns = ns;
	h_start(d, body);
	h_daemon_netns = NULL;
}

int h_listen(const char *host, unsigned *port, int backlog)
{
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr(host, 0, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM, 0), one = 1;

	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&ss, len), 0);
	ck_assert_int_eq(listen(fd, backlog), 0);
	len = sizeof(ss);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	*port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
					 : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

void h_start_nofile(struct hdaemon *d, const char *body, unsigned nofile)
{
	h_launch(d, body, 0, 0, nofile);
}

void h_start_as(struct hdaemon *d, const char *body, uid_t uid, gid_t gid)
{
	h_launch(d, body, uid, gid, 0);
}

/* The first 4 MiB of D's log, NUL-terminated (NULL if there is none). */
static char *h_log_read(struct hdaemon *d)
{
	FILE *fp = fopen(d->log, "r");
	char *buf;
	size_t n;

	if (!fp)
		return NULL;
	buf = calloc(1, 1 << 22);
	n = buf ? fread(buf, 1, (1 << 22) - 1, fp) : 0;
	fclose(fp);
	if (buf)
		buf[n] = '\0';
	return buf;
}

bool h_log_contains(struct hdaemon *d, const char *text)
{
	return h_log_count(d, text) > 0;
}

int h_log_count(struct hdaemon *d, const char *text)
{
	char *buf = h_log_read(d);
	int n = 0;

	for (const char *p = buf; p && (p = strstr(p, text)); p += strlen(text))
		n++;
	free(buf);
	return n;
}

void h_assert_quiet(struct hdaemon *d, double seconds, const char *what)
{
	long long t0 = h_cpu_ticks(d->pid), ticks;

	h_sleep(seconds);
	ticks = h_cpu_ticks(d->pid) - t0;
	ck_assert_msg((double)ticks * 10 < seconds * (double)sysconf(_SC_CLK_TCK),
		      "the daemon took %lld ticks in %g s %s", ticks, seconds, what);
}

int h_exhaust_descriptors(struct hdaemon *d, const char *rule, unsigned port, int *fds, int max)
{
	char text[128];
	int n = 0;
	double deadline = h_now() + 30;

	snprintf(text, sizeof(text), "rule %s: out of file descriptors", rule);
	while (n < max && !h_log_contains(d, text) && h_now() < deadline) {
		fds[n] = h_connect("127.0.0.1", port);
		ck_assert_int_ge(fds[n], 0);
		ck_assert_int_eq(send(fds[n], "x", 1, MSG_NOSIGNAL), 1);
		n++;
		usleep(20000);
	}
	ck_assert_msg(h_wait_log(d, text, 10), "the daemon never ran out of descriptors with %d clients", n);
	return n;
}

void h_stop(struct hdaemon *d)
{
	double deadline = h_now() + 10;
	int st = -1;
	struct stat sb;

	if (d->pid <= 0)
		return;
	kill(d->pid, SIGTERM);
	while (h_now() < deadline) {
		if (waitpid(d->pid, &st, WNOHANG) == d->pid)
			break;
		h_sleep(0.01);
	}
	if (h_now() >= deadline) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, &st, 0);
		ck_abort_msg("portfwd did not exit within 10 s of SIGTERM");
	}
	d->pid = 0;
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "portfwd did not exit 0 after SIGTERM (status %d); see %s", st, d->log);
	ck_assert_msg(stat(d->sock, &sb) != 0, "the control socket %s is still there", d->sock);
	ck_assert_msg(!h_log_contains(d, "AddressSanitizer") && !h_log_contains(d, "runtime error") &&
			      !h_log_contains(d, "LeakSanitizer") && !h_log_contains(d, "ThreadSanitizer"),
		      "sanitizer report in %s", d->log);
	h_cleanup(d);
}

void h_cleanup(struct hdaemon *d)
{
	unlink(d->conf);
	unlink(d->log);
	unlink(d->sock);
	rmdir(d->dir);
}

char *h_ctl(const char *sock, const char *request, bool *ok)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { 10, 0 };
	char *body = NULL, *line = NULL;
	size_t blen = 0, cap = 0;
	FILE *mem, *in;
	ssize_t n;
	int fd;

	*ok = false;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return NULL;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		return NULL;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write(fd, request, strlen(request)) < 0 || write(fd, "\n", 1) != 1) {
		close(fd);
		return NULL;
	}
	in = fdopen(fd, "r");
	mem = open_memstream(&body, &blen);
	while ((n = getline(&line, &cap, in)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (strcmp(line, ".ok") == 0) {
			*ok = true;
			break;
		}
		if (strncmp(line, ".error", 6) == 0) {
			fprintf(mem, "%s\n", line);
			break;
		}
		fprintf(mem, "%s\n", line[0] == '.' ? line + 1 : line);
	}
	free(line);
	fclose(mem);
	fclose(in);
	return body;
}

json_t *h_status(struct hdaemon *d)
{
	bool ok;
	char *r = h_ctl(d->sock, "status json", &ok);
	json_error_t err;
	json_t *doc;

	ck_assert_msg(r && ok, "status json failed: %s", r ? r : "(no reply)");
	doc = json_loads(r, 0, &err);
	ck_assert_msg(doc != NULL, "status json is not JSON: %s", err.text);
	free(r);
	return doc;
}

long long h_counter(struct hdaemon *d, const char *rule, const char *proto, const char *key)
{
	json_t *doc = h_status(d), *rules = json_object_get(doc, "rules"), *r;
	size_t i;
	long long v = -1;

	json_array_foreach(rules, i, r) {
		if (strcmp(json_string_value(json_object_get(r, "name")), rule) == 0) {
			json_t *p = proto ? json_object_get(r, proto) : r;
			json_t *x = p ? json_object_get(p, key) : NULL;

			ck_assert_msg(x != NULL, "no %s.%s in rule %s", proto ? proto : "", key, rule);
			v = json_integer_value(x);
		}
	}
	json_decref(doc);
	ck_assert_msg(v >= 0, "no rule %s in status", rule);
	return v;
}

bool h_splice(void)
{
	const char *v = getenv("PORTFWD_TEST_SPLICE");

	/* The daemon's default is splice on. */
	return !v || !*v || strcmp(v, "true") == 0;
}

long long h_wait_counter(struct hdaemon *d, const char *rule, const char *proto,
			 const char *key, long long want, double seconds)
{
	double deadline = h_now() + seconds;
	long long v;

	for (;;) {
		v = h_counter(d, rule, proto, key);
		if (v == want || h_now() >= deadline)
			return v;
		h_sleep(0.02);
	}
}

int h_run(char *const argv[], char **output)
{
	return h_run_as(argv, (uid_t)-1, (gid_t)-1, output);
}

int h_run_as(char *const argv[], uid_t uid, gid_t gid, char **output)
{
	int pipefd[2];
	FILE *mem;
	size_t len = 0;
	char buf[4096];
	ssize_t n;
	int st;
	pid_t pid;

	ck_assert_int_eq(pipe(pipefd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		close_range(3, ~0U, 0);
		if (uid != (uid_t)-1 && (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0))
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pipefd[1]);
	*output = NULL;
	mem = open_memstream(output, &len);
	while ((n = read(pipefd[0], buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, mem);
	fclose(mem);
	close(pipefd[0]);
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int h_sh(char **out, const char *fmt, ...)
{
	char cmd[4096];
	char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return h_run(argv, out);
}

bool h_netns_make(struct h_netns *n)
{
	int pid = (int)getpid();
	char *out = NULL;
	int rc;

	memset(n, 0, sizeof(*n));
	if (geteuid() != 0) {
		fprintf(stderr, "network namespace tests need root: skipped\n");
		return false;
	}
	snprintf(n->srv, sizeof(n->srv), "pf%d-srv", pid);
	snprintf(n->cli, sizeof(n->cli), "pf%d-cli", pid);
	snprintf(n->srv_if, sizeof(n->srv_if), "pf%ds", pid);
	snprintf(n->cli_if, sizeof(n->cli_if), "pf%dc", pid);
	/* nodad: IPv6 addresses usable at once, not "tentative" for a second. */
	rc = h_sh(&out,
		  "set -e; ip netns add %1$s; ip netns add %2$s;"
		  " ip link add %3$s netns %1$s type veth peer name %4$s netns %2$s;"
		  " ip -n %1$s link set lo up; ip -n %2$s link set lo up;"
		  " ip -n %1$s addr add 10.77.0.1/24 dev %3$s; ip -n %1$s addr add 10.77.0.3/24 dev %3$s;"
		  " ip -n %1$s addr add fd77::1/64 dev %3$s nodad; ip -n %1$s addr add fd77::3/64 dev %3$s nodad;"
		  " ip -n %2$s addr add 10.77.0.2/24 dev %4$s; ip -n %2$s addr add fd77::2/64 dev %4$s nodad;"
		  " ip -n %1$s link set %3$s up; ip -n %2$s link set %4$s up",
		  n->srv, n->cli, n->srv_if, n->cli_if);
	if (rc != 0)
		fprintf(stderr, "cannot make network namespaces (exit %d): %s\n", rc, out ? out : "");
	free(out);
	out = NULL;
	/* IPv6 on a link that just came up: the link-local address and the
	 * multicast route come a moment later. Wait for them (bounded). */
	for (double end = h_now() + 10; rc == 0;) {
		rc = h_sh(&out, "for ns in %s %s; do ip -n $ns -6 route show table local | grep -q '^multicast ff00::/8' || exit 1;"
			  " ip -n $ns -6 addr | grep -q tentative && exit 1; done; exit 0", n->srv, n->cli);
		free(out);
		out = NULL;
		if (rc == 0)
			break;
		if (h_now() > end)
			break;
		rc = 0;
		h_sleep(0.05);
	}
	if (rc != 0) {
		fprintf(stderr, "cannot make network namespaces (exit %d)\n", rc);
		h_netns_destroy(n);
		return false;
	}
	n->ok = true;
	return true;
}

bool h_netns_ready(const struct h_netns *n)
{
	if (n->ok)
		return true;
	ck_assert_msg(geteuid() != 0, "running as root, but the network namespaces could not be made (see above)");
	fprintf(stderr, "not root: a network namespace test is skipped\n");
	return false;
}

struct h_netns h_ns;

static void h_netns_setup(void)
{
	h_netns_make(&h_ns);
}

static void h_netns_teardown(void)
{
	h_netns_destroy(&h_ns);
}

TCase *h_netns_tcase(void)
{
	TCase *tc = tcase_create("netns");

	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, h_netns_setup, h_netns_teardown);
	return tc;
}

void h_netns_destroy(struct h_netns *n)
{
	char *out = NULL;

	if (n->srv[0])
		h_sh(&out, "ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null; true", n->srv, n->cli);
	free(out);
	n->ok = false;
}

void h_netns_enter(const char *name)
{
	static int own = -1;
	char path[128];
	int fd;

	if (own < 0)
		own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	ck_assert_msg(own >= 0, "cannot open the test's own network namespace: %s", strerror(errno));
	if (!name) {
		ck_assert_msg(setns(own, CLONE_NEWNET) == 0, "setns back: %s", strerror(errno));
		return;
	}
	snprintf(path, sizeof(path), "/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	ck_assert_msg(setns(fd, CLONE_NEWNET) == 0, "setns %s: %s", name, strerror(errno));
	close(fd);
}

long h_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fp = fopen(path, "r");
	if (!fp)
		return -1;
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(fp);
	return kib;
}

long long h_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *end;
	unsigned long long ut, st;
	FILE *fp;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fp = fopen(path, "r");
	if (!fp)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	/* The name in parentheses may hold spaces: fields count from its end. */
	end = strrchr(buf, ')');
	if (!end || sscanf(end + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

void h_stream_init(struct h_stream *s, uint64_t seed)
{
	s->state = seed * 0x9E3779B97F4A7C15ULL + 1;
	s->pos = 0;
}

void h_stream_fill(struct h_stream *s, unsigned char *buf, size_t len)
{
	/* xorshift64*: fast, deterministic, not compressible. The position
	 * carries over, so any split of the stream into calls gives the same bytes. */
	for (size_t i = 0; i < len; i++, s->pos++) {
		if ((s->pos & 7) == 0) {
			s->state ^= s->state >> 12;
			s->state ^= s->state << 25;
			s->state ^= s->state >> 27;
		}
		buf[i] = (unsigned char)((s->state * 0x2545F4914F6CDD1DULL) >> (8 * (s->pos & 7)));
	}
}

uint64_t h_hash(uint64_t h, const unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		h ^= buf[i];
		h *= 1099511628211ULL;
	}
	return h;
}

int h_connect(const char *host, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr(host, port, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int h_connect_from(const char *src, const char *host, unsigned port)
{
	struct sockaddr_storage ss, from;
	socklen_t len = h_sockaddr(host, port, &ss), flen;
	int fd = socket(ss.ss_family, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	if (src) {
		flen = h_sockaddr(src, 0, &from);
		if (bind(fd, (struct sockaddr *)&from, flen) < 0) {
			close(fd);
			return -1;
		}
	}
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int h_http(const char *host, unsigned port, const char *method, const char *path,
	   const char *extra, char **head, char **body, double seconds)
{
	return h_http_from(NULL, host, port, method, path, extra, head, body, seconds);
}

int h_http_from(const char *src, const char *host, unsigned port, const char *method,
		const char *path, const char *extra, char **head, char **body, double seconds)
{
	double deadline = h_now() + seconds;
	char *req = NULL, *buf = NULL, *sep;
	size_t len = 0, cap = 0;
	int fd = h_connect_from(src, host, port), code = -1;
	bool eof = false;

	if (head)
		*head = NULL;
	if (body)
		*body = NULL;
	if (fd < 0)
		return -1;
	/* EXTRA's own Host header stands for the usual one. */
	if ((extra && strncasecmp(extra, "Host:", 5) == 0
		     ? asprintf(&req, "%s %s HTTP/1.0\r\n%s\r\n", method, path, extra)
		     : asprintf(&req, "%s %s HTTP/1.0\r\nHost: %s:%u\r\n%s\r\n", method, path, host,
				port, extra ? extra : "")) < 0)
		goto out;
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		goto out;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	while (!eof && h_now() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		if (cap - len < 65537) {
			char *nb = realloc(buf, cap + 65537 * 2);

			if (!nb)
				goto out;
			buf = nb;
			cap += 65537 * 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n > 0)
			len += (size_t)n;
		else if (n == 0 || errno != EAGAIN)
			eof = true;
	}
	if (!eof || !buf)
		goto out;
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1 || !(sep = strstr(buf, "\r\n\r\n"))) {
		code = -1;
		goto out;
	}
	*sep = '\0';
	if (head)
		*head = strdup(buf);
	if (body)
		*body = strdup(sep + 4);
out:
	free(req);
	free(buf);
	close(fd);
	return code;
}

double h_metric(struct hdaemon *d, const char *name)
{
	bool ok;
	char *text = h_ctl(d->sock, "metrics", &ok), *at;
	char want[128];
	double v = -1;

	snprintf(want, sizeof(want), "\n%s ", name);
	if (ok && text && (at = strstr(text, want)))
		v = strtod(at + strlen(want), NULL);
	free(text);
	return v;
}

ssize_t h_udp_send_gso(int fd, const void *buf, size_t len, uint16_t g)
{
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { (void *)buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	memset(&ctl, 0, sizeof(ctl));
	cm->cmsg_level = SOL_UDP;
	cm->cmsg_type = UDP_SEGMENT;
	cm->cmsg_len = CMSG_LEN(sizeof(g));
	memcpy(CMSG_DATA(cm), &g, sizeof(g));
	return sendmsg(fd, &mh, 0);
}

int h_echo_exchange(int fd, size_t len, uint64_t seed, double seconds)
{
	return h_echo_exchange_open(fd, len, seed, seconds, false);
}

int h_echo_exchange_open(int fd, size_t len, uint64_t seed, double seconds, bool keep_open)
{
	struct h_stream tx, rx;
	unsigned char out[65536], in[65536], want[65536];
	size_t sent = 0, got = 0, out_len = 0, out_off = 0;
	double deadline = h_now() + seconds;
	bool shut = false;

	h_stream_init(&tx, seed);
	h_stream_init(&rx, seed);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	while (h_now() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (sent < len || out_off < out_len)
			p.events |= POLLOUT;
		if (poll(&p, 1, 200) < 0)
			return -1;
		if (p.revents & POLLOUT) {
			if (out_off == out_len) {
				out_len = len - sent < sizeof(out) ? len - sent : sizeof(out);
				h_stream_fill(&tx, out, out_len);
				out_off = 0;
				sent += out_len;
			}
			n = write(fd, out + out_off, out_len - out_off);
			if (n > 0)
				out_off += (size_t)n;
			else if (n < 0 && errno != EAGAIN)
				return -1;
		}
		if (keep_open && got == len && sent == len && out_off == out_len)
			return 0;
		if (!keep_open && !shut && sent == len && out_off == out_len) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(fd, in, sizeof(in));
			if (n == 0)
				return got == len && shut ? 0 : -1;
			if (n < 0) {
				if (errno == EAGAIN)
					continue;
				return -1;
			}
			h_stream_fill(&rx, want, (size_t)n);
			if (memcmp(in, want, (size_t)n) != 0)
				return -2; /* corrupted or reordered */
			got += (size_t)n;
			if (got > len)
				return -3;
			if (keep_open && got == len && sent == len && out_off == out_len)
				return 0;
		}
	}
	return -4; /* out of time */
}

long long h_read_all(int fd, uint64_t *hash, double seconds)
{
	unsigned char buf[65536];
	double deadline = h_now() + seconds;
	long long total = 0;

	*hash = H_HASH_INIT;
	while (h_now() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 200) <= 0)
			continue;
		n = read(fd, buf, sizeof(buf));
		if (n == 0)
			return total;
		if (n < 0)
			return errno == EAGAIN ? total : -1;
		*hash = h_hash(*hash, buf, (size_t)n);
		total += n;
	}
	return -2;
}

int h_write_stream(int fd, size_t len, uint64_t seed, double seconds)
{
	unsigned char buf[65536];
	struct h_stream s;
	double deadline = h_now() + seconds;
	size_t done = 0;

	h_stream_init(&s, seed);
	while (done < len && h_now() < deadline) {
		size_t chunk = len - done < sizeof(buf) ? len - done : sizeof(buf);
		size_t off = 0;

		h_stream_fill(&s, buf, chunk);
		while (off < chunk && h_now() < deadline) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			ssize_t n;

			if (poll(&p, 1, 200) <= 0)
				continue;
			n = send(fd, buf + off, chunk - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno != EAGAIN)
				return -1;
			if (n > 0)
				off += (size_t)n;
		}
		done += off;
	}
	return done == len ? 0 : -1;
}

/* ---- backends ---- */

struct h_conn_arg {
	struct h_backend *b;
	int fd;
};

/* Sends back what FD reads until EOF, then half-closes. */
static void h_echo_loop(int fd)
{
	unsigned char buf[65536];

	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		size_t off = 0;

		if (r <= 0)
			break;
		while (off < (size_t)r) {
			ssize_t w = send(fd, buf + off, (size_t)r - off, MSG_NOSIGNAL);

			if (w <= 0)
				return;
			off += (size_t)w;
		}
	}
	shutdown(fd, SHUT_WR);
}

static void *h_conn_thread(void *p)
{
	struct h_conn_arg *a = p;
	struct h_backend *b = a->b;
	int fd = a->fd;
	unsigned char buf[65536];
	uint64_t hash;
	long long n;

	free(a);
	switch (b->mode) {
	case H_ECHO:
		h_echo_loop(fd);
		break;
	case H_TAG_ECHO:
		if (send(fd, b->tag, strlen(b->tag), MSG_NOSIGNAL) == (ssize_t)strlen(b->tag))
			h_echo_loop(fd);
		break;
	case H_COUNT_REPLY: {
		char reply[64];
		int len;

		/* As long as the longest transfer a test makes may take (a
		 * gigabyte under ThreadSanitizer on a busy machine). */
		n = h_read_all(fd, &hash, 240);
		len = snprintf(reply, sizeof(reply), "%lld %016llx\n", n, (unsigned long long)hash);
		if (send(fd, reply, (size_t)len, MSG_NOSIGNAL) < 0)
			break;
		break;
	}
	case H_GREET_READ:
	case H_GREET_HOLD:
		if (send(fd, "hello\n", 6, MSG_NOSIGNAL) != 6)
			break;
		if (b->mode == H_GREET_READ)
			shutdown(fd, SHUT_WR);
		n = h_read_all(fd, &hash, 60);
		pthread_mutex_lock(&b->lock);
		b->got_bytes = n;
		b->got_hash = hash;
		b->finished++;
		pthread_mutex_unlock(&b->lock);
		break;
	case H_SOURCE:
		h_write_stream(fd, b->source_len, 42, 120);
		break;
	case H_TRICKLE: {
		/* Small segments, each its own skb: what SSH or a game sends. */
		int one = 1;

		memset(buf, 'x', 100);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		while (!b->stop) {
			struct pollfd pw = { .fd = fd, .events = POLLOUT };

			if (poll(&pw, 1, 100) <= 0)
				continue;
			if (send(fd, buf, 100, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN)
				break;
		}
		break;
	}
	default:
		break;
	}
	close(fd);
	return NULL;
}

static void *h_accept_thread(void *p)
{
	struct h_backend *b = p;

	while (!b->stop) {
		struct pollfd pf = { .fd = b->fd, .events = POLLIN };
		struct h_conn_arg *a;
		pthread_t t;
		int c;

		if (poll(&pf, 1, 100) <= 0)
			continue;
		c = accept(b->fd, NULL, NULL);
		if (c < 0)
			continue;
		a = malloc(sizeof(*a));
		a->b = b;
		a->fd = c;
		if (pthread_create(&t, NULL, h_conn_thread, a) != 0) {
			close(c);
			free(a);
			continue;
		}
		pthread_detach(t);
	}
	return NULL;
}

static void *h_udp_thread(void *p)
{
	struct h_backend *b = p;
	unsigned char buf[65536];

	while (!b->stop) {
		struct pollfd pf = { .fd = b->fd, .events = POLLIN };
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t n;

		if (poll(&pf, 1, 100) <= 0)
			continue;
		n = recvfrom(b->fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (n >= 0)
			sendto(b->fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl);
	}
	return NULL;
}

void h_backend_start(struct h_backend *b, enum h_backend_mode mode, bool v6)
{
	h_backend_start_on(b, mode, v6, 0);
}

void h_backend_start_on(struct h_backend *b, enum h_backend_mode mode, bool v6, unsigned port)
{
	h_backend_start_at(b, mode, v6 ? "::1" : "127.0.0.1", port);
}

void h_backend_start_at(struct h_backend *b, enum h_backend_mode mode, const char *host, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr(host, port, &ss);
	bool v6 = ss.ss_family == AF_INET6;
	int socktype = mode == H_UDP_ECHO ? SOCK_DGRAM : SOCK_STREAM;
	int one = 1, big = 4 << 20;

	b->mode = mode;
	b->stop = false;
	b->finished = 0;
	pthread_mutex_init(&b->lock, NULL);
	b->fd = socket(ss.ss_family, socktype, 0);
	ck_assert_int_ge(b->fd, 0);
	setsockopt(b->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (mode == H_UDP_ECHO) {
		setsockopt(b->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
		setsockopt(b->fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	}
	ck_assert_int_eq(bind(b->fd, (struct sockaddr *)&ss, len), 0);
	if (socktype == SOCK_STREAM)
		ck_assert_int_eq(listen(b->fd, 128), 0);
	len = sizeof(ss);
	getsockname(b->fd, (struct sockaddr *)&ss, &len);
	b->port = v6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
		     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	ck_assert_int_eq(pthread_create(&b->thread, NULL,
					mode == H_UDP_ECHO ? h_udp_thread : h_accept_thread, b), 0);
}

int h_backend_wait_finished(struct h_backend *b, int want, double seconds)
{
	double deadline = h_now() + seconds;
	int finished;

	for (;;) {
		pthread_mutex_lock(&b->lock);
		finished = b->finished;
		pthread_mutex_unlock(&b->lock);
		if (finished >= want || h_now() >= deadline)
			return finished;
		h_sleep(0.01);
	}
}

void h_backend_stop(struct h_backend *b)
{
	b->stop = true;
	pthread_join(b->thread, NULL);
	close(b->fd);
}
