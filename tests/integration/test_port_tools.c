/*
 * portfwdctl's ports, who and free against real holders: the daemon's own
 * listeners, a backend it forwards to, TCP and UDP sockets held by
 * processes the test starts (as root, one of them as another user), on
 * free loopback ports. Every wait is bounded.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <pty.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_run.h"
#include "services_file.h"
#include "harness.h"
#include "portinfo.h"
#include "rule.h"

#define PORTFWDCTL h_bin("PORTFWDCTL_BIN", "build/default/portfwdctl")
#define NOBODY 65534
/* An ordinary user other than nobody, for "another user's process". */
#define OTHER 65533

/* ---- running portfwdctl ---- */

/*
 * Runs portfwdctl -s SOCK ARGS... (NULL-terminated) as UID (-1: as the
 * test), stdin /dev/null (no terminal), at most 30 s. Its stdout in *OUT
 * and stderr in *ERR (malloc'd; ERR may be NULL: then stderr goes to *OUT
 * too). Returns the exit status.
 */
/* ctl_as's group where it is not the user's own number ((gid_t)-1). */
static gid_t ctl_gid = (gid_t)-1;
/* If set, run in portfwdctl's process just before exec. */
static void (*ctl_child_hook)(void);

static int ctl_as(char **out, char **err, uid_t uid, const char *sock, ...)
{
	const char *argv[24] = { PORTFWDCTL, "-s", sock };
	int argc = 3, po[2], pe[2], st;
	char *text[2] = { NULL, NULL };
	size_t len[2] = { 0, 0 };
	FILE *mem[2];
	double deadline = h_now() + 30;
	pid_t pid;
	va_list ap;

	va_start(ap, sock);
	while (argc < 23 && (argv[argc] = va_arg(ap, const char *)))
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	ck_assert_int_eq(pipe(po), 0);
	ck_assert_int_eq(pipe(pe), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		dup2(null, 0);
		dup2(po[1], 1);
		dup2(err ? pe[1] : po[1], 2);
		close_range(3, ~0U, 0);
		if (uid != (uid_t)-1 &&
		    (setgroups(0, NULL) < 0 || setgid(ctl_gid != (gid_t)-1 ? ctl_gid : uid) < 0 ||
		     setuid(uid) < 0))
			_exit(126);
		alarm(30);
		if (ctl_child_hook)
			ctl_child_hook();
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	mem[0] = open_memstream(&text[0], &len[0]);
	mem[1] = open_memstream(&text[1], &len[1]);
	for (int open_fds = 2; open_fds > 0 && h_now() < deadline;) {
		struct pollfd p[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
		char buf[4096];

		if (poll(p, 2, 1000) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			ssize_t n;

			if (!(p[i].revents & (POLLIN | POLLHUP)))
				continue;
			n = read(p[i].fd, buf, sizeof(buf));
			if (n > 0)
				fwrite(buf, 1, (size_t)n, mem[i]);
			else {
				p[i].fd = -1;
				close(i ? pe[0] : po[0]);
				if (i)
					pe[0] = -1;
				else
					po[0] = -1;
				open_fds--;
			}
		}
		if (po[0] < 0 && pe[0] < 0)
			break;
	}
	if (po[0] >= 0)
		close(po[0]);
	if (pe[0] >= 0)
		close(pe[0]);
	fclose(mem[0]);
	fclose(mem[1]);
	ck_assert_msg(waitpid(pid, &st, 0) == pid, "portfwdctl did not end");
	*out = text[0];
	if (err)
		*err = text[1];
	else
		free(text[1]);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}


#define ctl(out, sock, ...) ctl_as(out, NULL, (uid_t)-1, sock, __VA_ARGS__, NULL)

/* Runs portfwdctl -s SOCK A [B [C]] --json and parses its stdout; *RC
 * gets the exit status. */
static json_t *ctl_json(int *rc, const char *sock, const char *a, const char *b, const char *c)
{
	char *out, *err;
	json_error_t jerr;
	json_t *doc;

	if (!b)
		*rc = ctl_as(&out, &err, (uid_t)-1, sock, a, "--json", NULL);
	else if (!c)
		*rc = ctl_as(&out, &err, (uid_t)-1, sock, a, b, "--json", NULL);
	else
		*rc = ctl_as(&out, &err, (uid_t)-1, sock, a, b, c, "--json", NULL);
	doc = json_loads(out, 0, &jerr);
	ck_assert_msg(doc != NULL, "not JSON (%s): %s\nstderr: %s", jerr.text, out, err);
	free(out);
	free(err);
	return doc;
}

/* ---- holders ---- */

struct holder {
	pid_t pid;
	unsigned port;
	pid_t kid; /* with holder_share: the child that shares the socket */
};

/* holder_start's options for the next holder: its name, SO_REUSEPORT,
 * and a forked child sharing the socket (through two fds). */
static const char *holder_name = "pf-holder";
static bool holder_reuseport, holder_share;
/* More options: the holder closes its socket on SIGUSR1; it binds as
 * root, then drops to this user (-1: it does not); the child sharing the
 * socket (holder_share) drops to this user (-1: it does not). */
static bool holder_close_on_usr1;
static uid_t holder_drop_to = (uid_t)-1, holder_kid_uid = (uid_t)-1;
static int holder_fd = -1;

static void holder_close_cb(int sig)
{
	(void)sig;
	close(holder_fd);
}

/*
 * Forks a process named pf-holder that binds a SOCKTYPE socket on
 * 127.0.0.1:PORT (0: a free one), listening if TCP, and waits (60 s at
 * most); as UID if not -1; ignoring SIGTERM if DEAF.
 */
static void holder_start(struct holder *h, int socktype, unsigned port, uid_t uid, bool deaf)
{
	struct pollfd p;
	int pipefd[2];
	unsigned got = 0;

	h->kid = 0;
	ck_assert_int_eq(pipe(pipefd), 0);
	h->pid = fork();
	ck_assert_int_ge(h->pid, 0);
	if (h->pid == 0) {
		struct sockaddr_storage ss;
		socklen_t len = h_sockaddr("127.0.0.1", port, &ss);
		int fd;

		int one = 1;
		pid_t kid = 0;

		close(pipefd[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		prctl(PR_SET_NAME, holder_name);
		if (uid != (uid_t)-1 && (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0))
			_exit(126);
		/* As a process its user started: its fds readable by that user. */
		prctl(PR_SET_DUMPABLE, 1);
		/* Check's handler, inherited, would stop the whole test's group. */
		signal(SIGTERM, deaf ? SIG_IGN : SIG_DFL);
		fd = socket(AF_INET, socktype, 0);
		if (holder_reuseport)
			setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
		if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0 ||
		    (socktype == SOCK_STREAM && listen(fd, 8) < 0))
			_exit(1);
		if (holder_close_on_usr1) {
			holder_fd = fd;
			signal(SIGUSR1, holder_close_cb);
		}
		/* A server that binds as root and runs as another user: the
		 * socket stays root's; the process is no longer dumpable, so
		 * its /proc directory is root's too. */
		if (holder_drop_to != (uid_t)-1 &&
		    (setgroups(0, NULL) < 0 || setresgid(holder_drop_to, holder_drop_to, holder_drop_to) < 0 ||
		     setresuid(holder_drop_to, holder_drop_to, holder_drop_to) < 0))
			_exit(126);
		len = sizeof(ss);
		getsockname(fd, (struct sockaddr *)&ss, &len);
		got = rule_addr_port((struct sockaddr *)&ss);
		if (holder_share) {
			/* Not killed with its parent: free must signal it too.
			 * Two fds on the socket: it is still one holder. It
			 * says when it is ready (its user changed). */
			int ready[2];
			char c = 0;

			if (pipe(ready) < 0)
				_exit(1);
			kid = fork();
			if (kid == 0) {
				if (dup(fd) < 0)
					_exit(1);
				if (holder_kid_uid != (uid_t)-1) {
					if (setgroups(0, NULL) < 0 || setgid(holder_kid_uid) < 0 ||
					    setuid(holder_kid_uid) < 0)
						_exit(126);
					prctl(PR_SET_DUMPABLE, 1);
				}
				if (write(ready[1], &c, 1) != 1)
					_exit(1);
				alarm(60);
				for (;;)
					pause();
			}
			if (kid < 0 || read(ready[0], &c, 1) != 1)
				_exit(1);
			close(ready[0]);
			close(ready[1]);
		}
		if (write(pipefd[1], &got, sizeof(got)) != sizeof(got) ||
		    write(pipefd[1], &kid, sizeof(kid)) != sizeof(kid))
			_exit(1);
		alarm(60);
		for (;;)
			pause();
	}
	close(pipefd[1]);
	p = (struct pollfd){ pipefd[0], POLLIN, 0 };
	ck_assert_msg(poll(&p, 1, 5000) == 1 && read(pipefd[0], &got, sizeof(got)) == sizeof(got) &&
			      read(pipefd[0], &h->kid, sizeof(h->kid)) == sizeof(h->kid),
		      "the holder did not start (port %u taken?)", port);
	close(pipefd[0]);
	h->port = got;
}

/* Reaps H within SECONDS; returns its wait status, or -1 if it lives on. */
static int holder_wait(struct holder *h, double seconds)
{
	double deadline = h_now() + seconds;
	int st;

	while (h_now() < deadline) {
		if (waitpid(h->pid, &st, WNOHANG) == h->pid) {
			h->pid = 0;
			return st;
		}
		usleep(20000);
	}
	return -1;
}

static void holder_stop(struct holder *h)
{
	if (h->kid > 0) {
		kill(h->kid, SIGKILL);
		h->kid = 0;
	}
	if (h->pid > 0) {
		kill(h->pid, SIGKILL);
		waitpid(h->pid, NULL, 0);
		h->pid = 0;
	}
}

/* True if a SOCKTYPE socket can be bound on 127.0.0.1:PORT now. */
static bool port_bindable(int socktype, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr("127.0.0.1", port, &ss);
	int fd = socket(AF_INET, socktype, 0), one = 1, ok;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
	close(fd);
	return ok;
}

/* The entry of `ports --json` for PROTO and PORT, or NULL. */
static json_t *find_socket(json_t *doc, const char *proto, unsigned port)
{
	json_t *s;
	size_t i;

	json_array_foreach(json_object_get(doc, "sockets"), i, s)
		if (strcmp(json_string_value(json_object_get(s, "proto")), proto) == 0 &&
		    json_integer_value(json_object_get(s, "port")) == (json_int_t)port)
			return s;
	return NULL;
}

/* The role ("listen", "target") of rule NAME in socket S's rules, or NULL. */
static const char *rule_role(json_t *s, const char *name)
{
	json_t *r;
	size_t i;

	json_array_foreach(json_object_get(s, "rules"), i, r)
		if (strcmp(json_string_value(json_object_get(r, "name")), name) == 0)
			return json_string_value(json_object_get(r, "role"));
	return NULL;
}

static const char *user_name(uid_t uid)
{
	static char name[64];
	struct passwd *pw = getpwuid(uid);

	if (pw)
		snprintf(name, sizeof(name), "%s", pw->pw_name);
	else
		snprintf(name, sizeof(name), "%u", (unsigned)uid);
	return name;
}

static bool need_root(void)
{
	if (geteuid() == 0)
		return true;
	fprintf(stderr, "needs root (processes of other users): skipped\n");
	return false;
}

static char conf[1024];

/* A tcp+udp rule "web" from a free port to TARGET on loopback. */
static const char *web_rule(unsigned listen, unsigned target)
{
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"web\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 listen, target);
	return conf;
}

/* ---- ports ---- */

/*
 * The daemon's listeners (pid, portfwd, rule web listening), the backend
 * it forwards to (the test's pid, rule web as target), a UDP socket and, as
 * root, a process of another user, with class, service and user; the text
 * table says the same.
 */
START_TEST(test_ports_lists_holders)
{
	struct h_backend echo;
	struct holder udp, other = { 0, 0, 0 };
	struct hdaemon d;
	unsigned listen = h_free_port(SOCK_STREAM, false);
	json_t *doc, *s;
	char *out, line[256];
	int rc, nw;

	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, web_rule(listen, echo.port));
	holder_start(&udp, SOCK_DGRAM, 0, (uid_t)-1, false);
	if (geteuid() == 0)
		holder_start(&other, SOCK_STREAM, 0, NOBODY, false);

	doc = ctl_json(&rc, d.sock, "ports", NULL, NULL);
	ck_assert_int_eq(rc, 0);
	ck_assert(json_is_true(json_object_get(doc, "daemon")));
	ck_assert_int_eq(json_integer_value(json_object_get(doc, "daemon_pid")), d.pid);

	s = find_socket(doc, "tcp", listen);
	ck_assert_msg(s, "the daemon's listener %u is missing", listen);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "pid")), d.pid);
	ck_assert_str_eq(json_string_value(json_object_get(s, "process")), "portfwd");
	ck_assert_str_eq(json_string_value(json_object_get(s, "address")), "127.0.0.1");
	ck_assert_str_eq(json_string_value(json_object_get(s, "class")), portinfo_range(listen));
	ck_assert_str_eq(json_string_value(json_object_get(s, "user")), user_name(geteuid()));
	ck_assert_pstr_eq(rule_role(s, "web"), "listen");
	s = find_socket(doc, "udp", listen);
	ck_assert_msg(s && rule_role(s, "web") && strcmp(rule_role(s, "web"), "listen") == 0,
		      "the daemon's UDP listener %u is missing or not rule web's", listen);

	s = find_socket(doc, "tcp", echo.port);
	ck_assert_msg(s, "the backend %u is missing", echo.port);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "pid")), getpid());
	ck_assert_pstr_eq(rule_role(s, "web"), "target");

	s = find_socket(doc, "udp", udp.port);
	ck_assert_msg(s, "the UDP holder %u is missing", udp.port);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "pid")), udp.pid);
	ck_assert_str_eq(json_string_value(json_object_get(s, "process")), "pf-holder");
	ck_assert_int_eq(json_array_size(json_object_get(s, "rules")), 0);
	ck_assert_ptr_null(find_socket(doc, "tcp", udp.port));
	if (other.pid) {
		s = find_socket(doc, "tcp", other.port);
		ck_assert_msg(s, "nobody's holder %u is missing", other.port);
		ck_assert_int_eq(json_integer_value(json_object_get(s, "pid")), other.pid);
		ck_assert_int_eq(json_integer_value(json_object_get(s, "uid")), NOBODY);
		ck_assert_str_eq(json_string_value(json_object_get(s, "user")), user_name(NOBODY));
	}
	json_decref(doc);

	/* The table: one line per socket (those alike but for their inode,
	 * portfwd's one per worker, one line with their number), its columns
	 * in order. */
	rc = ctl(&out, d.sock, "ports");
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(out, "PROTO") && strstr(out, "RULE"), "%s", out);
	snprintf(line, sizeof(line), "127.0.0.1 %5u %-10s", listen, portinfo_range(listen));
	ck_assert_msg(strstr(out, line), "no \"%s\" in:\n%s", line, out);
	snprintf(line, sizeof(line), "%7d portfwd", (int)d.pid);
	ck_assert_msg(strstr(out, line), "no \"%s\" in:\n%s", line, out);
	snprintf(line, sizeof(line), "%7d pf-holder", (int)udp.pid);
	ck_assert_msg(strstr(out, line), "no \"%s\" in:\n%s", line, out);
	doc = h_status(&d);
	nw = (int)json_integer_value(json_object_get(doc, "workers"));
	json_decref(doc);
	snprintf(line, sizeof(line), " web (%d sockets)\n", nw);
	ck_assert_msg(strstr(out, nw > 1 ? line : " web\n") && strstr(out, " web(target)\n"), "%s", out);
	ck_assert_msg(!strstr(out, "rule column empty"), "%s", out);
	free(out);

	holder_stop(&udp);
	holder_stop(&other);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

/* Without a daemon: the sockets, the rule column empty and why. */
START_TEST(test_ports_without_daemon)
{
	struct holder tcp;
	json_t *doc, *s, *note;
	char *out;
	int rc;

	holder_start(&tcp, SOCK_STREAM, 0, (uid_t)-1, false);
	rc = ctl(&out, "/nonexistent/portfwd.sock", "ports");
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(out, "pf-holder"), "%s", out);
	ck_assert_msg(strstr(out, "no portfwd daemon at /nonexistent/portfwd.sock (the socket does not exist"),
		      "%s", out);
	ck_assert_msg(strstr(out, "rule column empty"), "%s", out);
	free(out);
	doc = ctl_json(&rc, "/nonexistent/portfwd.sock", "ports", NULL, NULL);
	ck_assert_int_eq(rc, 0);
	ck_assert(json_is_false(json_object_get(doc, "daemon")));
	s = find_socket(doc, "tcp", tcp.port);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "pid")), tcp.pid);
	note = json_array_get(json_object_get(doc, "notes"), 0);
	ck_assert_msg(note && strstr(json_string_value(note), "rule column empty"), "no note");
	json_decref(doc);
	holder_stop(&tcp);
}
END_TEST

/* As an ordinary user: it runs, shows root's sockets without their
 * process, its own with, and says that root sees every process. */
START_TEST(test_ports_as_user)
{
	struct holder mine, roots;
	char *out, *err, line[128];
	int rc;

	if (!need_root())
		return;
	holder_start(&mine, SOCK_STREAM, 0, NOBODY, false);
	holder_start(&roots, SOCK_STREAM, 0, (uid_t)-1, false);
	rc = ctl_as(&out, &err, NOBODY, "/nonexistent/portfwd.sock", "ports", NULL);
	ck_assert_msg(rc == 0, "exit %d: %s%s", rc, out, err);
	snprintf(line, sizeof(line), "%5u %-10s", roots.port, portinfo_range(roots.port));
	ck_assert_msg(strstr(out, line), "root's socket %u missing:\n%s", roots.port, out);
	snprintf(line, sizeof(line), "%7d pf-holder", (int)roots.pid);
	ck_assert_msg(!strstr(out, line), "root's process shown to nobody:\n%s", out);
	snprintf(line, sizeof(line), "%7d pf-holder", (int)mine.pid);
	ck_assert_msg(strstr(out, line), "nobody's own process missing:\n%s", out);
	ck_assert_msg(strstr(err, "root sees every process"), "%s", err);
	free(out);
	free(err);
	holder_stop(&mine);
	holder_stop(&roots);
}
END_TEST

/* A port, a range, --tcp and --udp select; nothing matched is exit 1;
 * bad filters are usage errors. */
START_TEST(test_ports_filters)
{
	struct holder tcp, udp;
	char arg[64], *out;
	unsigned lo, hi;
	int rc;

	holder_start(&tcp, SOCK_STREAM, 0, (uid_t)-1, false);
	holder_start(&udp, SOCK_DGRAM, 0, (uid_t)-1, false);
	lo = tcp.port < udp.port ? tcp.port : udp.port;
	hi = tcp.port < udp.port ? udp.port : tcp.port;

	snprintf(arg, sizeof(arg), "%u", tcp.port);
	rc = ctl(&out, "/nonexistent", "ports", arg);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(out, "\ntcp ") && !strstr(out, "\nudp "), "%s", out);
	free(out);
	rc = ctl(&out, "/nonexistent", "ports", arg, "--udp");
	ck_assert_msg(rc == (port_bindable(SOCK_DGRAM, tcp.port) ? 1 : 0), "exit %d: %s", rc, out);
	if (rc == 1)
		ck_assert_msg(strstr(out, "nothing listens on"), "%s", out);
	free(out);
	snprintf(arg, sizeof(arg), "%u/udp", udp.port);
	rc = ctl(&out, "/nonexistent", "ports", arg);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(out, "\nudp ") && strstr(out, "pf-holder"), "%s", out);
	free(out);
	snprintf(arg, sizeof(arg), "%u-%u", lo, hi);
	rc = ctl(&out, "/nonexistent", "ports", arg);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(out, "\ntcp ") && strstr(out, "\nudp "), "%s", out);
	free(out);
	rc = ctl(&out, "/nonexistent", "ports", arg, "--tcp");
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(out, "\ntcp ") && !strstr(out, "\nudp "), "%s", out);
	free(out);
	/* Everything, and only the protocol asked for. */
	rc = ctl(&out, "/nonexistent", "ports", "--udp");
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(!strstr(out, "\ntcp ") && strstr(out, "pf-holder"), "%s", out);
	free(out);

	rc = ctl(&out, "/nonexistent", "ports", "99999");
	ck_assert_int_eq(rc, 2);
	ck_assert_msg(strstr(out, "port 99999 is out of range"), "%s", out);
	free(out);
	rc = ctl(&out, "/nonexistent", "ports", "9000-8000");
	ck_assert_int_eq(rc, 2);
	free(out);
	rc = ctl(&out, "/nonexistent", "ports", "80", "81");
	ck_assert_int_eq(rc, 2);
	free(out);
	rc = ctl(&out, "/nonexistent", "ports", "--bogus");
	ck_assert_int_eq(rc, 2);
	free(out);
	rc = ctl(&out, "/nonexistent", "ports", "nosuchservicename");
	ck_assert_int_eq(rc, 2);
	ck_assert_msg(strstr(out, "unknown service name"), "%s", out);
	free(out);
	holder_stop(&tcp);
	holder_stop(&udp);
}
END_TEST

/* ---- who ---- */

START_TEST(test_who)
{
	struct holder tcp, udp;
	struct h_backend echo;
	struct hdaemon d;
	unsigned listen = h_free_port(SOCK_STREAM, false), freep;
	char arg[64], want[256], *out;
	json_t *doc;
	int rc;

	holder_start(&tcp, SOCK_STREAM, 0, (uid_t)-1, false);
	holder_start(&udp, SOCK_DGRAM, 0, (uid_t)-1, false);
	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, web_rule(listen, echo.port));

	/* Held: exit 0, one line with the holder. */
	snprintf(arg, sizeof(arg), "%u", tcp.port);
	rc = ctl(&out, d.sock, "who", arg);
	ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
	snprintf(want, sizeof(want), "%u/tcp is held by pid %d (pf-holder, user %s) on 127.0.0.1; %s",
		 tcp.port, (int)tcp.pid, user_name(geteuid()), portinfo_range(tcp.port));
	ck_assert_msg(strstr(out, want), "no \"%s\" in %s", want, out);
	free(out);
	snprintf(arg, sizeof(arg), "%u/udp", udp.port);
	rc = ctl(&out, d.sock, "who", arg);
	ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
	snprintf(want, sizeof(want), "%u/udp is held by pid %d (pf-holder", udp.port, (int)udp.pid);
	ck_assert_msg(strstr(out, want), "no \"%s\" in %s", want, out);
	free(out);
	/* The daemon's listener names its rule; the backend is its target. */
	snprintf(arg, sizeof(arg), "%u/tcp", listen);
	rc = ctl(&out, d.sock, "who", arg);
	ck_assert_msg(rc == 0 && strstr(out, "(portfwd, user") && strstr(out, "portfwd rule web\n"),
		      "exit %d: %s", rc, out);
	free(out);
	snprintf(arg, sizeof(arg), "%u/tcp", echo.port);
	rc = ctl(&out, d.sock, "who", arg);
	ck_assert_msg(rc == 0 && strstr(out, "portfwd rule web(target)"), "exit %d: %s", rc, out);
	free(out);

	/* Free: exit 1, with the class, privilege and ephemeral range. */
	freep = h_free_port(SOCK_STREAM, false);
	if (port_bindable(SOCK_DGRAM, freep)) {
		struct ports_kernel_facts { unsigned lo, hi; } k = { 32768, 60999 };
		FILE *fp = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");

		ck_assert(fp && fscanf(fp, "%u %u", &k.lo, &k.hi) == 2);
		fclose(fp);
		snprintf(arg, sizeof(arg), "%u", freep);
		rc = ctl(&out, d.sock, "who", arg);
		ck_assert_msg(rc == 1, "exit %d: %s", rc, out);
		snprintf(want, sizeof(want), "%u/tcp+udp is free; %s; binding it needs no privilege; %s the ephemeral range %u-%u",
			 freep, portinfo_range(freep), freep >= k.lo && freep <= k.hi ? "inside" : "outside",
			 k.lo, k.hi);
		ck_assert_msg(strstr(out, want), "no \"%s\" in %s", want, out);
		free(out);
	}
	snprintf(arg, sizeof(arg), "%u/udp", tcp.port);
	if (port_bindable(SOCK_DGRAM, tcp.port)) {
		rc = ctl(&out, d.sock, "who", arg);
		ck_assert_msg(rc == 1 && strstr(out, "/udp is free"), "exit %d: %s", rc, out);
		free(out);
	}
	/* A port below 1024, free or not, says it is well-known. */
	rc = ctl(&out, d.sock, "who", "1/udp");
	ck_assert_msg(rc <= 1 && strstr(out, "well-known"), "exit %d: %s", rc, out);
	if (rc == 1)
		ck_assert_msg(strstr(out, "needs root or CAP_NET_BIND_SERVICE"), "%s", out);
	free(out);

	/* JSON. */
	snprintf(arg, sizeof(arg), "%u", tcp.port);
	doc = ctl_json(&rc, d.sock, "who", arg, NULL);
	ck_assert_int_eq(rc, 0);
	ck_assert(json_is_true(json_object_get(doc, "held")));
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(json_object_get(doc, "holders"), 0), "pid")),
			 tcp.pid);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "class")), portinfo_range(tcp.port));
	json_decref(doc);

	/* Usage errors: exit 2 and a sentence, never a crash. */
	{
		static const char *const bad[] = { "99999", "0", "-5", "8000-8100", "ab!c", "", "22/sctp",
						   "65536/udp", "nosuchservicename" };

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			rc = ctl(&out, d.sock, "who", bad[i]);
			ck_assert_msg(rc == 2 && strstr(out, "portfwdctl: "), "who \"%s\": exit %d: %s",
				      bad[i], rc, out);
			free(out);
		}
		rc = ctl(&out, d.sock, "who");
		ck_assert_int_eq(rc, 2);
		free(out);
	}
	holder_stop(&tcp);
	holder_stop(&udp);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

/* Service names, from the test's services file: who NAME, who NAME/udp,
 * and the SERVICE column of ports; a name's port for each protocol. */
START_TEST(test_who_service_names)
{
	struct holder first = { 0, 0, 0 }, udpside = { 0, 0, 0 };
	json_t *doc, *s;
	char *out;
	int rc;

	if (!test_services_file("tests/conf/services.test"))
		return;
	/* Fixed ports, so in a network namespace of the test's own (loopback
	 * up), where no other test run holds them. */
	ck_assert_msg(unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET): %s", strerror(errno));
	{
		struct ifreq ifr = { .ifr_name = "lo" };
		int fd = socket(AF_INET, SOCK_DGRAM, 0);

		ck_assert_int_eq(ioctl(fd, SIOCGIFFLAGS, &ifr), 0);
		ifr.ifr_flags |= IFF_UP;
		ck_assert_int_eq(ioctl(fd, SIOCSIFFLAGS, &ifr), 0);
		close(fd);
	}
	/* 7000/tcp is "first", 7002/udp "udpside" (7002/tcp "tcpside"). */
	holder_start(&first, SOCK_STREAM, 7000, (uid_t)-1, false);
	holder_start(&udpside, SOCK_DGRAM, 7002, (uid_t)-1, false);

	rc = ctl(&out, "/nonexistent", "who", "first");
	ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
	ck_assert_msg(strstr(out, "7000/tcp is held by pid") && strstr(out, "; first, registered"), "%s",
		      out);
	free(out);
	rc = ctl(&out, "/nonexistent", "who", "firstalias");
	ck_assert_msg(rc == 0 && strstr(out, "7000/tcp is held"), "exit %d: %s", rc, out);
	free(out);
	rc = ctl(&out, "/nonexistent", "who", "udpside/udp");
	ck_assert_msg(rc == 0 && strstr(out, "7002/udp is held") && strstr(out, "udpside, registered"),
		      "exit %d: %s", rc, out);
	free(out);
	rc = ctl(&out, "/nonexistent", "who", "tcpside");
	ck_assert_msg(rc == 1 && strstr(out, "7002/tcp is free; tcpside, registered"), "exit %d: %s",
		      rc, out);
	free(out);
	/* split: 1000/tcp, 1001/udp: each protocol its own port. */
	rc = ctl(&out, "/nonexistent", "who", "split");
	ck_assert_msg(rc == 1 && strstr(out, "1000/tcp is free") && strstr(out, "1001/udp is free"),
		      "exit %d: %s", rc, out);
	free(out);
	doc = ctl_json(&rc, "/nonexistent", "who", "split", NULL);
	ck_assert_int_eq(rc, 1);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(json_object_get(doc, "protocols"), 1),
							    "port")),
			 1001);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(doc, "protocols"), 1),
							   "proto")),
			 "udp");
	json_decref(doc);
	rc = ctl(&out, "/nonexistent", "who", "udponly/tcp");
	ck_assert_msg(rc == 2 && strstr(out, "\"udponly\" is a UDP service (port 7001), not TCP"),
		      "exit %d: %s", rc, out);
	free(out);
	rc = ctl(&out, "/nonexistent", "who", "firsst");
	ck_assert_msg(rc == 2 && strstr(out, "did you mean \"first\""), "exit %d: %s", rc, out);
	free(out);

	doc = ctl_json(&rc, "/nonexistent", "ports", "7000-7002", NULL);
	ck_assert_int_eq(rc, 0);
	s = find_socket(doc, "tcp", 7000);
	ck_assert_msg(s, "7000/tcp missing");
	ck_assert_str_eq(json_string_value(json_object_get(s, "service")), "first");
	s = find_socket(doc, "udp", 7002);
	ck_assert_msg(s, "7002/udp missing");
	ck_assert_str_eq(json_string_value(json_object_get(s, "service")), "udpside");
	json_decref(doc);
	rc = ctl(&out, "/nonexistent", "ports", "first");
	ck_assert_msg(rc == 0 && strstr(out, " 7000 registered first "), "exit %d: %s", rc, out);
	free(out);
	holder_stop(&first);
	holder_stop(&udpside);
}
END_TEST

/* ---- free ---- */

/* A portfwd rule holds the port: free disables it through the control
 * socket, and the port can be bound. */
START_TEST(test_free_rule)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned listen = h_free_port(SOCK_STREAM, false);
	json_t *doc;
	char arg[32], *out;
	int rc;

	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, web_rule(listen, echo.port));
	ck_assert(!port_bindable(SOCK_STREAM, listen));
	snprintf(arg, sizeof(arg), "%u", listen);
	rc = ctl(&out, d.sock, "free", arg);
	ck_assert_msg(rc == 1 && strstr(out, "add --yes"), "without --yes: exit %d: %s", rc, out);
	free(out);
	ck_assert(!port_bindable(SOCK_STREAM, listen));

	rc = ctl(&out, d.sock, "free", arg, "--yes");
	ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
	ck_assert_msg(strstr(out, "disabled portfwd rule web"), "%s", out);
	snprintf(arg, sizeof(arg), "%u is now free", listen);
	ck_assert_msg(strstr(out, arg), "%s", out);
	free(out);
	ck_assert(port_bindable(SOCK_STREAM, listen));
	ck_assert(port_bindable(SOCK_DGRAM, listen));
	doc = h_status(&d);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(doc, "rules"), 0), "state")),
			 "disabled");
	json_decref(doc);
	/* Free already: exit 0, nothing to do. */
	snprintf(arg, sizeof(arg), "%u", listen);
	rc = ctl(&out, d.sock, "free", arg);
	ck_assert_msg(rc == 0 && strstr(out, "is free: nothing holds it"), "exit %d: %s", rc, out);
	free(out);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

/* The daemon refuses to disable for a client it does not trust (one of
 * its socket's group, not an admin): free reports the refusal and the port
 * stays held. */
START_TEST(test_free_rule_refused)
{
	struct h_backend echo;
	struct hdaemon d;
	unsigned listen = h_free_port(SOCK_STREAM, false);
	char arg[32], *out, *err;
	int rc;

	if (!need_root())
		return;
	h_dir_mode = 0777;
	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, web_rule(listen, echo.port));
	h_dir_mode = 0;
	snprintf(arg, sizeof(arg), "%u", listen);
	ctl_gid = getegid(); /* the socket's group: status yes, disable no */
	rc = ctl_as(&out, &err, NOBODY, d.sock, "free", arg, "--yes", NULL);
	ctl_gid = (gid_t)-1;
	ck_assert_msg(rc == 1, "exit %d: %s%s", rc, out, err);
	ck_assert_msg(strstr(out, "the daemon refused to disable rule web: permission denied"), "%s%s",
		      out, err);
	ck_assert_msg(strstr(out, "is still held"), "%s", out);
	ck_assert(!port_bindable(SOCK_STREAM, listen));
	free(out);
	free(err);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

/* A process the test started holds the port: --kill --yes sends SIGTERM
 * and the port comes free. */
START_TEST(test_free_kill)
{
	struct holder h;
	char arg[32], want[64], *out;
	int rc, st;

	holder_start(&h, SOCK_STREAM, 0, (uid_t)-1, false);
	snprintf(arg, sizeof(arg), "%u", h.port);
	rc = ctl(&out, "/nonexistent", "free", arg);
	ck_assert_msg(rc == 1 && strstr(out, "--kill sends it SIGTERM"), "exit %d: %s", rc, out);
	free(out);
	ck_assert_int_eq(kill(h.pid, 0), 0);
	rc = ctl(&out, "/nonexistent", "free", arg, "--kill");
	ck_assert_msg(rc == 1 && strstr(out, "no terminal") && strstr(out, "add --yes"), "exit %d: %s", rc,
		      out);
	free(out);
	ck_assert_int_eq(kill(h.pid, 0), 0);

	rc = ctl(&out, "/nonexistent", "free", arg, "--kill", "--yes");
	ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
	snprintf(want, sizeof(want), "sent SIGTERM to pid %d", (int)h.pid);
	ck_assert_msg(strstr(out, want), "%s", out);
	snprintf(want, sizeof(want), "%u is now free", h.port);
	ck_assert_msg(strstr(out, want), "%s", out);
	free(out);
	st = holder_wait(&h, 5);
	ck_assert_msg(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %d", st);
	ck_assert(port_bindable(SOCK_STREAM, h.port));
}
END_TEST

/* In a PID namespace of its own whose /proc is still the parent's (unshare
 * -p without --mount-proc), the pids /proc shows are not this process's:
 * free --kill refuses and signals no one. */
START_TEST(test_free_refuses_foreign_proc)
{
	struct holder h;
	char arg[32], *out = NULL;
	int rc;

	if (geteuid() != 0 || access("/usr/bin/unshare", X_OK) != 0) {
		fprintf(stderr, "test_free_refuses_foreign_proc: skipped (needs root and unshare)\n");
		return;
	}
	holder_start(&h, SOCK_STREAM, 0, (uid_t)-1, false);
	snprintf(arg, sizeof(arg), "%u", h.port);
	{
		char *argv[] = { "/usr/bin/unshare", "--pid", "--fork", (char *)PORTFWDCTL, "-s",
				 "/nonexistent", "free", arg, "--kill", "--yes", NULL };

		rc = h_run(argv, &out);
	}
	ck_assert_msg(rc == 1 && strstr(out, "/proc is not of this process's PID namespace"), "exit %d: %s",
		      rc, out);
	free(out);
	ck_assert_int_eq(kill(h.pid, 0), 0);
	holder_stop(&h);
}
END_TEST

/* A holder that ignores SIGTERM: --kill alone leaves it (exit 1 after the
 * bounded wait), --force follows with SIGKILL. JSON reports the steps. */
START_TEST(test_free_force)
{
	struct holder h;
	char arg[32], *out;
	json_t *doc;
	double t0;
	int rc, st;

	holder_start(&h, SOCK_DGRAM, 0, (uid_t)-1, true);
	snprintf(arg, sizeof(arg), "%u/udp", h.port);
	t0 = h_now();
	rc = ctl(&out, "/nonexistent", "free", arg, "--kill", "--yes");
	ck_assert_msg(rc == 1 && strstr(out, "still held by pid") && strstr(out, "--force sends SIGKILL"),
		      "exit %d: %s", rc, out);
	ck_assert_msg(h_now() - t0 >= 4.5 && h_now() - t0 < 15, "waited %.1f s", h_now() - t0);
	free(out);
	ck_assert_int_eq(kill(h.pid, 0), 0);
	doc = ctl_json(&rc, "/nonexistent", "free", arg, "--kill");
	json_decref(doc);
	ck_assert_int_eq(rc, 1); /* no terminal, no --yes */
	{
		char *o, *e;

		rc = ctl_as(&o, &e, (uid_t)-1, "/nonexistent", "free", arg, "--kill", "--force", "--yes",
			    "--json", NULL);
		doc = json_loads(o, 0, NULL);
		ck_assert_msg(doc, "not JSON: %s %s", o, e);
		free(o);
		free(e);
	}
	ck_assert_msg(rc == 0, "exit %d", rc);
	ck_assert(json_is_true(json_object_get(doc, "free")));
	{
		char *text = json_dumps(doc, 0);

		ck_assert_msg(strstr(text, "sent SIGKILL"), "no SIGKILL step: %s", text);
		free(text);
	}
	json_decref(doc);
	st = holder_wait(&h, 5);
	ck_assert_msg(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %d", st);
	rc = ctl(&out, "/nonexistent", "free", "--force", arg);
	ck_assert_msg(rc == 2 && strstr(out, "--force goes with --kill"), "exit %d: %s", rc, out);
	free(out);
}
END_TEST

/* free refuses: another user's process, for an ordinary user; the daemon
 * itself (known by its name when it cannot be asked); bad ports. */
START_TEST(test_free_refusals)
{
	struct holder h;
	struct h_backend echo;
	struct hdaemon d;
	unsigned listen = h_free_port(SOCK_STREAM, false);
	char arg[32], *out, *err;
	int rc;

	if (need_root()) {
		holder_start(&h, SOCK_STREAM, 0, NOBODY, false);
		snprintf(arg, sizeof(arg), "%u", h.port);
		rc = ctl_as(&out, &err, OTHER, "/nonexistent", "free", arg, "--kill", "--force", "--yes",
			    NULL);
		ck_assert_msg(rc == 1 && strstr(out, "refused:") && strstr(out, "that you cannot see") &&
				      strstr(out, "nothing done"),
			      "exit %d: %s%s", rc, out, err);
		free(out);
		free(err);
		ck_assert_int_eq(kill(h.pid, 0), 0);
		ck_assert(!port_bindable(SOCK_STREAM, h.port));
		holder_stop(&h);
	}

	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, web_rule(listen, echo.port));
	snprintf(arg, sizeof(arg), "%u", listen);
	rc = ctl(&out, "/nonexistent", "free", arg, "--kill", "--force", "--yes");
	ck_assert_msg(rc == 1 && strstr(out, "refused:") && strstr(out, "held by the portfwd daemon"),
		      "exit %d: %s", rc, out);
	free(out);
	ck_assert_int_eq(kill(d.pid, 0), 0);
	ck_assert(!port_bindable(SOCK_STREAM, listen));
	h_stop(&d);
	h_backend_stop(&echo);

	{
		static const char *const bad[] = { "0", "99999", "-1", "1-2", "x y" };

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			rc = ctl(&out, "/nonexistent", "free", bad[i], "--yes");
			ck_assert_msg(rc == 2, "free \"%s\": exit %d: %s", bad[i], rc, out);
			free(out);
		}
	}
}
END_TEST

/*
 * pid 1: in a PID namespace of the test's own (with its own /proc), the
 * namespace's init holds a port and portfwdctl, inside, refuses to signal
 * it; outside, on the host, the same process is a container's init
 * (NSpid ends in 1), which it refuses too.
 */
START_TEST(test_free_refuses_pid1)
{
	int pipefd[2], portpipe[2], gopipe[2], st;
	pid_t init;
	char out[4096];
	ssize_t n, got = 0;

	if (!need_root())
		return;
	ck_assert_int_eq(pipe(pipefd), 0);
	ck_assert_int_eq(pipe(portpipe), 0);
	ck_assert_int_eq(pipe(gopipe), 0);
	/* The namespaces are made by a child of the test's (after
	 * unshare(CLONE_NEWPID) a process cannot make threads, which the
	 * sanitizers' leak check at exit needs); its child is their pid 1. */
	init = fork();
	ck_assert_int_ge(init, 0);
	if (init == 0) {
		pid_t inner;

		signal(SIGTERM, SIG_DFL);
		alarm(30);
		if (unshare(CLONE_NEWPID | CLONE_NEWNS) < 0)
			_exit(99);
		inner = fork();
		if (inner < 0)
			_exit(103);
		if (inner > 0) {
			close(pipefd[1]);
			if (waitpid(inner, &st, 0) != inner)
				_exit(104);
			_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 105);
		}
		/* pid 1 here. */
		{
			struct sockaddr_storage ss;
			socklen_t len = h_sockaddr("127.0.0.1", 0, &ss);
			int fd = socket(AF_INET, SOCK_STREAM, 0);
			char port[16];
			pid_t ctlpid;

			alarm(30);
			if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
			    mount("proc", "/proc", "proc", 0, NULL) < 0 || fd < 0 ||
			    bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1) < 0)
				_exit(100);
			len = sizeof(ss);
			getsockname(fd, (struct sockaddr *)&ss, &len);
			snprintf(port, sizeof(port), "%u", rule_addr_port((struct sockaddr *)&ss));
			/* The host's turn first. */
			if (write(portpipe[1], port, sizeof(port)) != (ssize_t)sizeof(port) ||
			    read(gopipe[0], port + sizeof(port) - 1, 1) != 1)
				_exit(106);
			port[sizeof(port) - 1] = '\0';
			ctlpid = fork();
			if (ctlpid == 0) {
				dup2(pipefd[1], 1);
				dup2(pipefd[1], 2);
				close_range(3, ~0U, 0);
				execl(PORTFWDCTL, PORTFWDCTL, "-s", "/nonexistent", "free", port, "--kill",
				      "--force", "--yes", (char *)NULL);
				_exit(127);
			}
			close(pipefd[1]);
			if (ctlpid < 0 || waitpid(ctlpid, &st, 0) != ctlpid)
				_exit(101);
			_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 102);
		}
	}
	close(pipefd[1]);
	close(portpipe[1]);
	close(gopipe[0]);
	{
		struct pollfd p = { portpipe[0], POLLIN, 0 };
		char port[16], *hout;
		int rc;

		if (poll(&p, 1, 10000) == 1 && read(portpipe[0], port, sizeof(port)) == (ssize_t)sizeof(port)) {
			rc = ctl(&hout, "/nonexistent", "free", port, "--kill", "--force", "--yes");
			ck_assert_int_eq(write(gopipe[1], "\0", 1), 1);
			ck_assert_msg(rc == 1 && strstr(hout, "refused:") &&
					      strstr(hout, "the init of a container") &&
					      !strstr(hout, "sent SIG"),
				      "on the host: exit %d: %s", rc, hout);
			free(hout);
		}
		close(portpipe[0]);
		close(gopipe[1]);
	}
	{
		double deadline = h_now() + 30;
		struct pollfd p = { pipefd[0], POLLIN, 0 };

		while (h_now() < deadline && got < (ssize_t)sizeof(out) - 1 && poll(&p, 1, 1000) >= 0) {
			if (!(p.revents & (POLLIN | POLLHUP)))
				continue;
			n = read(pipefd[0], out + got, sizeof(out) - 1 - (size_t)got);
			if (n <= 0)
				break;
			got += n;
		}
	}
	out[got] = '\0';
	close(pipefd[0]);
	{
		struct holder h = { init, 0, 0 };

		st = holder_wait(&h, 10);
		if (st == -1)
			holder_stop(&h); /* killing the namespace's init ends it all */
		ck_assert_msg(st != -1, "the namespace did not end: %s", out);
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 99) {
		fprintf(stderr, "no PID namespace here: skipped\n");
		return;
	}
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d: %s", st, out);
	ck_assert_msg(strstr(out, "refused:") && strstr(out, "held by pid 1"), "%s", out);
}
END_TEST

/* The daemon never runs them: a client that sends one anyway is told. */
START_TEST(test_daemon_answers_local_commands)
{
	static const char *const cmds[] = { "ports", "who 22", "free 22 --kill" };
	struct h_backend echo;
	struct hdaemon d;
	bool ok;

	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, web_rule(h_free_port(SOCK_STREAM, false), echo.port));
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char *r = h_ctl(d.sock, cmds[i], &ok);

		ck_assert_msg(r && !ok && strstr(r, "runs in portfwdctl, not in the daemon"), "%s: %s",
			      cmds[i], r ? r : "(no reply)");
		free(r);
	}
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST


/* True once PID (not a child of the test) has exited, within SECONDS. */
static bool pid_gone(pid_t pid, double seconds)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct pollfd p = { pfd, POLLIN, 0 };
	bool gone;

	if (pfd < 0)
		return errno == ESRCH;
	gone = poll(&p, 1, (int)(seconds * 1000)) == 1;
	close(pfd);
	return gone;
}

/*
 * A rule that failed because another process holds its port: that
 * process's socket is not the rule's (ports shows no rule listening on it,
 * nor the rule's state as its), and free kills the process instead of
 * disabling the rule. The daemon's own "address already in use" message
 * names the holder with its name made printable.
 */
START_TEST(test_free_foreign_holder_of_failed_rule)
{
	struct h_backend echo;
	struct holder h;
	struct hdaemon d;
	json_t *doc, *s, *r;
	char arg[32], want[128], *out;
	int rc, st;

	holder_name = "pf-\x1bhold";
	holder_start(&h, SOCK_STREAM, 0, (uid_t)-1, false);
	holder_name = "pf-holder";
	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, web_rule(h.port, echo.port));
	doc = h_status(&d);
	r = json_array_get(json_object_get(doc, "rules"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "tcp"), "state")), "failed");
	{
		const char *e = json_string_value(json_object_get(json_object_get(r, "tcp"), "error"));

		snprintf(want, sizeof(want), "pid %d (pf-\\x1bhold)", (int)h.pid);
		ck_assert_msg(e && strstr(e, want), "no \"%s\" in the rule's error: %s", want, e);
	}
	json_decref(doc);

	snprintf(arg, sizeof(arg), "%u", h.port);
	doc = ctl_json(&rc, d.sock, "ports", arg, NULL);
	ck_assert_int_eq(rc, 0);
	s = find_socket(doc, "tcp", h.port);
	ck_assert_msg(s, "%u/tcp missing", h.port);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "pid")), h.pid);
	ck_assert_msg(!rule_role(s, "web"), "the holder's socket credited to rule web as %s",
		      rule_role(s, "web"));
	json_decref(doc);
	/* UDP listens: that socket is the rule's. */
	snprintf(arg, sizeof(arg), "%u/udp", h.port);
	doc = ctl_json(&rc, d.sock, "ports", arg, NULL);
	s = find_socket(doc, "udp", h.port);
	ck_assert_msg(s && rule_role(s, "web") && strcmp(rule_role(s, "web"), "listen") == 0,
		      "rule web's UDP listener not shown as its");
	json_decref(doc);

	snprintf(arg, sizeof(arg), "%u/tcp", h.port);
	rc = ctl(&out, d.sock, "free", arg, "--kill", "--yes");
	ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
	snprintf(want, sizeof(want), "sent SIGTERM to pid %d (pf-\\x1bhold, user ", (int)h.pid);
	ck_assert_msg(strstr(out, want), "no \"%s\" in %s", want, out);
	ck_assert_msg(!strstr(out, "disable"), "free disabled the rule: %s", out);
	free(out);
	st = holder_wait(&h, 5);
	ck_assert_msg(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %d", st);
	doc = h_status(&d);
	ck_assert_str_ne(json_string_value(json_object_get(json_array_get(json_object_get(doc, "rules"), 0),
							   "state")),
			 "disabled");
	json_decref(doc);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

/* A process whose name holds a terminal escape, a carriage return and a
 * UTF-8 sequence the kernel cut: ports, who and free show it as \xNN,
 * never the raw bytes, and JSON keeps the entry and its name. */
START_TEST(test_hostile_process_name)
{
	struct holder h;
	json_t *doc, *s;
	char arg[32], *out;
	const char *shown = "pf\\x1b[2J\\x0d\\xc3";
	int rc;

	holder_name = "pf\x1b[2J\r\xc3";
	holder_start(&h, SOCK_STREAM, 0, (uid_t)-1, false);
	holder_name = "pf-holder";
	snprintf(arg, sizeof(arg), "%u", h.port);
	{
		const char *const cmds[][2] = { { "ports", NULL }, { "who", NULL }, { "free", NULL } };

		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
			rc = ctl(&out, "/nonexistent", cmds[i][0], arg);
			ck_assert_msg(rc <= 1, "%s: exit %d: %s", cmds[i][0], rc, out);
			ck_assert_msg(strstr(out, shown), "%s: no \"%s\" in %s", cmds[i][0], shown, out);
			ck_assert_msg(!strchr(out, '\x1b') && !strchr(out, '\r') && !strchr(out, '\xc3'),
				      "%s: raw bytes of the name in %s", cmds[i][0], out);
			free(out);
		}
	}
	doc = ctl_json(&rc, "/nonexistent", "ports", arg, NULL);
	ck_assert_int_eq(rc, 0);
	s = find_socket(doc, "tcp", h.port);
	ck_assert_msg(s, "the entry of %u/tcp vanished from JSON", h.port);
	ck_assert_msg(json_string_value(json_object_get(s, "process")) &&
			      strcmp(json_string_value(json_object_get(s, "process")), shown) == 0,
		      "process: %s", json_string_value(json_object_get(s, "process")));
	json_decref(doc);
	doc = ctl_json(&rc, "/nonexistent", "who", arg, NULL);
	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(doc, "holders"), 0),
							   "process")),
			 shown);
	json_decref(doc);
	holder_stop(&h);
}
END_TEST

/* A forked server: parent and child share the listening socket (the child
 * through two fds). ports counts the child once (+1); free --kill signals
 * both, names each, and the port comes free. */
START_TEST(test_free_kill_shared_socket)
{
	struct holder h;
	json_t *doc, *s;
	char arg[32], want[128], *out;
	int rc, st;

	holder_share = true;
	holder_start(&h, SOCK_STREAM, 0, (uid_t)-1, false);
	holder_share = false;
	ck_assert(h.kid > 0);
	snprintf(arg, sizeof(arg), "%u", h.port);
	rc = ctl(&out, "/nonexistent", "ports", arg);
	ck_assert_msg(rc == 0 && strstr(out, "pf-holder(+1)"), "exit %d: %s", rc, out);
	free(out);
	doc = ctl_json(&rc, "/nonexistent", "ports", arg, NULL);
	s = find_socket(doc, "tcp", h.port);
	ck_assert_msg(s, "%u/tcp missing", h.port);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "processes")), 2);
	ck_assert_int_eq(json_array_size(json_object_get(s, "pids")), 2);
	json_decref(doc);

	rc = ctl(&out, "/nonexistent", "free", arg, "--kill", "--yes");
	ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
	snprintf(want, sizeof(want), "sent SIGTERM to pid %d (pf-holder, user", (int)h.pid);
	ck_assert_msg(strstr(out, want), "no \"%s\" in %s", want, out);
	snprintf(want, sizeof(want), "sent SIGTERM to pid %d (pf-holder, user", (int)h.kid);
	ck_assert_msg(strstr(out, want), "no \"%s\" in %s", want, out);
	free(out);
	st = holder_wait(&h, 5);
	ck_assert_msg(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %d", st);
	ck_assert_msg(pid_gone(h.kid, 5), "the child sharing the socket lives on");
	h.kid = 0;
	ck_assert(port_bindable(SOCK_STREAM, h.port));
}
END_TEST

/* More holders than the old fixed plan (16): 20 processes with
 * SO_REUSEPORT sockets on one port; free --kill ends them all. */
START_TEST(test_free_kill_many_holders)
{
	enum { N = 20 };
	struct holder h[N];
	char arg[32], *out;
	int rc;

	holder_reuseport = true;
	holder_start(&h[0], SOCK_STREAM, 0, (uid_t)-1, false);
	for (int i = 1; i < N; i++)
		holder_start(&h[i], SOCK_STREAM, h[0].port, (uid_t)-1, false);
	holder_reuseport = false;
	snprintf(arg, sizeof(arg), "%u", h[0].port);
	rc = ctl(&out, "/nonexistent", "free", arg, "--kill", "--yes");
	ck_assert_msg(rc == 0 && strstr(out, "is now free"), "exit %d: %s", rc, out);
	for (int i = 0; i < N; i++) {
		char want[64];

		snprintf(want, sizeof(want), "sent SIGTERM to pid %d ", (int)h[i].pid);
		ck_assert_msg(strstr(out, want), "holder %d (pid %d) not signalled: %s", i, (int)h[i].pid,
			      out);
	}
	free(out);
	for (int i = 0; i < N; i++)
		ck_assert_msg(holder_wait(&h[i], 5) != -1, "holder %d lives on", i);
}
END_TEST

/* In portfwdctl's process: a fork, so that portfwdctl runs below an
 * intermediate process (as below sudo) that waits for it. */
static void run_below_intermediate(void)
{
	pid_t kid = fork();
	int st;

	if (kid < 0)
		_exit(124);
	if (kid > 0)
		_exit(waitpid(kid, &st, 0) == kid && WIFEXITED(st) ? WEXITSTATUS(st) : 124);
}

/* free never signals the process that ran it nor one above that: a socket
 * of the test's own (the parent of portfwdctl, then its grandparent) is
 * refused, saying why. */
START_TEST(test_free_refuses_caller)
{
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr("127.0.0.1", 0, &ss);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char arg[32], *out;
	int rc;

	ck_assert_int_eq(bind(fd, (struct sockaddr *)&ss, len), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	len = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	snprintf(arg, sizeof(arg), "%u", rule_addr_port((struct sockaddr *)&ss));
	rc = ctl(&out, "/nonexistent", "free", arg, "--kill", "--yes");
	ck_assert_msg(rc == 1 && strstr(out, "refused") && strstr(out, "the process that ran portfwdctl"),
		      "exit %d: %s", rc, out);
	free(out);
	/* Two levels up (the shell above sudo): refused too. */
	ctl_child_hook = run_below_intermediate;
	rc = ctl(&out, "/nonexistent", "free", arg, "--kill", "--yes");
	ctl_child_hook = NULL;
	ck_assert_msg(rc == 1 && strstr(out, "refused") &&
			      strstr(out, "a process that portfwdctl runs under"),
		      "exit %d: %s", rc, out);
	free(out);
	close(fd);
}
END_TEST

/* In portfwdctl's process: /proc/net hidden under an empty tmpfs in a
 * mount namespace of its own, and sock_diag not asked. */
static void hide_proc_net(void)
{
	setenv("PORTFWD_SOCKETS", "proc", 1);
	if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", "/proc/self/net", "tmpfs", 0, NULL) < 0)
		_exit(125);
}

/* Socket tables that cannot be read: exit 4 for ports, who and free, not
 * 1 (nothing matched / free / still held) or 2 (usage). */
START_TEST(test_tables_unreadable_exit)
{
	static const char *const cmds[] = { "ports", "who", "free" };
	char *out;
	int rc;

	if (!need_root())
		return;
	ctl_child_hook = hide_proc_net;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		rc = ctl(&out, "/nonexistent", cmds[i], "8080");
		ck_assert_msg(rc != 125, "no mount namespace for the test");
		ck_assert_msg(rc == 4 && strstr(out, "cannot read this machine's socket tables"),
			      "%s: exit %d: %s", cmds[i], rc, out);
		free(out);
	}
	ctl_child_hook = NULL;
}
END_TEST

/* The daemon's socket refuses this user: ports says so in those words,
 * not "no daemon". */
START_TEST(test_ports_daemon_permission_denied)
{
	struct h_backend echo;
	struct hdaemon d;
	char *out, *err, want[512];
	int rc;

	if (!need_root())
		return;
	h_backend_start(&echo, H_ECHO, false);
	h_start(&d, web_rule(h_free_port(SOCK_STREAM, false), echo.port));
	rc = ctl_as(&out, &err, NOBODY, d.sock, "ports", NULL);
	ck_assert_msg(rc == 0, "exit %d: %s%s", rc, out, err);
	snprintf(want, sizeof(want), "cannot ask the daemon at %s: permission denied (root or the socket's group)",
		 d.sock);
	ck_assert_msg(strstr(err, want), "no \"%s\" in %s", want, err);
	free(out);
	free(err);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

/* A port only connections use (no listener): who does not call it free. */
START_TEST(test_who_connections_only)
{
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr("127.0.0.1", 0, &ss);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), cfd = socket(AF_INET, SOCK_STREAM, 0), afd;
	char arg[32], *out;
	unsigned port;
	json_t *doc;
	int rc;

	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&ss, len), 0);
	ck_assert_int_eq(listen(lfd, 4), 0);
	len = sizeof(ss);
	getsockname(lfd, (struct sockaddr *)&ss, &len);
	port = rule_addr_port((struct sockaddr *)&ss);
	ck_assert_int_eq(connect(cfd, (struct sockaddr *)&ss, len), 0);
	afd = accept(lfd, NULL, NULL);
	ck_assert_int_ge(afd, 0);
	close(lfd); /* the accepted end keeps PORT as its local port */
	snprintf(arg, sizeof(arg), "%u/tcp", port);
	rc = ctl(&out, "/nonexistent", "who", arg);
	ck_assert_msg(rc == 0 && strstr(out, "has no listener, but 1 socket uses it") &&
			      strstr(out, "address already in use") && !strstr(out, "is free"),
		      "exit %d: %s", rc, out);
	free(out);
	doc = ctl_json(&rc, "/nonexistent", "who", arg, NULL);
	ck_assert_int_eq(rc, 0);
	ck_assert(json_is_false(json_object_get(doc, "held")));
	ck_assert(json_is_true(json_object_get(doc, "in_use")));
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(json_object_get(doc, "protocols"), 0),
							    "connections")),
			 1);
	json_decref(doc);
	close(afd);
	close(cfd);
}
END_TEST

/* In portfwdctl's process: pidfd_open fails with ENOSYS, as on a kernel
 * older than 5.3. */
static void no_pidfd(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		_exit(125);
}

/* Without pidfds free still works: it checks that the pid still has the
 * socket right before kill(). */
START_TEST(test_free_kill_without_pidfd)
{
	struct holder h;
	char arg[32], want[64], *out;
	int rc, st;

	holder_start(&h, SOCK_STREAM, 0, (uid_t)-1, false);
	snprintf(arg, sizeof(arg), "%u", h.port);
	ctl_child_hook = no_pidfd;
	rc = ctl(&out, "/nonexistent", "free", arg, "--kill", "--yes");
	ctl_child_hook = NULL;
	ck_assert_msg(rc != 125, "no seccomp filter for the test");
	ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
	snprintf(want, sizeof(want), "sent SIGTERM to pid %d ", (int)h.pid);
	ck_assert_msg(strstr(out, want), "%s", out);
	free(out);
	st = holder_wait(&h, 5);
	ck_assert_msg(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %d", st);
}
END_TEST

/*
 * Runs portfwdctl -s SOCK free ARG --kill on a terminal of its own (a pty
 * for stdin and stderr), waits for the question (10 s at most), puts it in
 * QUESTION, answers ANSWER, and returns the exit status; everything it
 * wrote after the question in *OUT.
 */
/* If set, free_on_terminal runs it after the question, before the answer. */
static void (*answer_hook)(void);

static int free_on_terminal(const char *sock, const char *arg, const char *answer, char *question,
			    size_t qlen, char **out)
{
	char buf[8192];
	size_t used = 0;
	double deadline = h_now() + 20;
	bool asked = false;
	int master, st;
	pid_t pid = forkpty(&master, NULL, NULL, NULL);

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		alarm(30);
		execl(PORTFWDCTL, PORTFWDCTL, "-s", sock, "free", arg, "--kill", (char *)NULL);
		_exit(127);
	}
	question[0] = '\0';
	while (h_now() < deadline && used < sizeof(buf) - 1) {
		struct pollfd p = { master, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, 500) <= 0)
			continue;
		n = read(master, buf + used, sizeof(buf) - 1 - used);
		if (n <= 0)
			break; /* EIO: the child closed the terminal */
		used += (size_t)n;
		buf[used] = '\0';
		if (!asked && strstr(buf, "[y/N] ")) {
			size_t q = used < qlen - 1 ? used : qlen - 1;

			memcpy(question, buf, q);
			question[q] = '\0';
			used = 0;
			asked = true;
			if (answer_hook)
				answer_hook();
			ck_assert_int_eq(write(master, answer, strlen(answer)), (ssize_t)strlen(answer));
		}
	}
	buf[used] = '\0';
	close(master);
	ck_assert_msg(waitpid(pid, &st, 0) == pid, "portfwdctl did not end");
	ck_assert_msg(asked, "no question asked: %s", buf);
	*out = strdup(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* On a terminal free asks first, naming the process and its user; only
 * "y" or "yes" is a yes ("yep" is not). */
START_TEST(test_free_asks_on_terminal)
{
	struct holder h;
	char arg[32], want[128], question[1024], *out;
	int rc, st;

	holder_start(&h, SOCK_STREAM, 0, (uid_t)-1, false);
	snprintf(arg, sizeof(arg), "%u", h.port);
	snprintf(want, sizeof(want), "SIGTERM pid %d (pf-holder, user %s)? [y/N]", (int)h.pid,
		 user_name(geteuid()));
	rc = free_on_terminal("/nonexistent", arg, "yep\n", question, sizeof(question), &out);
	ck_assert_msg(strstr(question, want), "no \"%s\" in the question: %s", want, question);
	ck_assert_msg(rc == 1 && strstr(out, "not confirmed"), "\"yep\": exit %d: %s", rc, out);
	free(out);
	ck_assert_int_eq(kill(h.pid, 0), 0);
	rc = free_on_terminal("/nonexistent", arg, "yes\n", question, sizeof(question), &out);
	ck_assert_msg(rc == 0 && strstr(out, "is now free"), "\"yes\": exit %d: %s", rc, out);
	free(out);
	st = holder_wait(&h, 5);
	ck_assert_msg(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %d", st);
}
END_TEST

/* The holder of test_free_skips_released_holder: told to close its
 * socket, and the port bindable again (2 s at most). */
static struct holder *released;

static void release_holder(void)
{
	double deadline = h_now() + 2;

	ck_assert_int_eq(kill(released->pid, SIGUSR1), 0);
	while (h_now() < deadline && !port_bindable(SOCK_STREAM, released->port))
		usleep(20000);
	ck_assert_msg(port_bindable(SOCK_STREAM, released->port), "the holder kept its socket");
}

/* A holder that closes its socket while free asks (after the plan, with
 * its pidfd open) is not signalled: free checks right before the signal,
 * says so, and finds the port free. */
START_TEST(test_free_skips_released_holder)
{
	struct holder h;
	char arg[32], want[128], question[1024], *out;
	int rc;

	holder_close_on_usr1 = true;
	holder_start(&h, SOCK_STREAM, 0, (uid_t)-1, false);
	holder_close_on_usr1 = false;
	snprintf(arg, sizeof(arg), "%u", h.port);
	released = &h;
	answer_hook = release_holder;
	rc = free_on_terminal("/nonexistent", arg, "yes\n", question, sizeof(question), &out);
	answer_hook = NULL;
	snprintf(want, sizeof(want), "SIGTERM pid %d (pf-holder", (int)h.pid);
	ck_assert_msg(strstr(question, want), "no \"%s\" in the question: %s", want, question);
	snprintf(want, sizeof(want), "pid %d (pf-holder, user %s) no longer holds %u: not signalled",
		 (int)h.pid, user_name(geteuid()), h.port);
	ck_assert_msg(strstr(out, want), "no \"%s\" in: %s", want, out);
	ck_assert_msg(!strstr(out, "sent SIGTERM"), "%s", out);
	ck_assert_msg(rc == 0 && strstr(out, "is now free"), "exit %d: %s", rc, out);
	free(out);
	ck_assert_msg(holder_wait(&h, 0.5) == -1, "the holder was signalled");
	holder_stop(&h);
}
END_TEST

/* In portfwdctl's process: the tables from /proc/net (sock_diag not
 * asked), in a mount namespace of its own that the test hides them in. */
static void own_mount_ns(void)
{
	setenv("PORTFWD_SOCKETS", "proc", 1);
	if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		_exit(125);
}

/* Hides /proc/PID/net under an empty tmpfs in PID's mount namespace, by
 * nsenter: a process of its own, for setns(CLONE_NEWNS) wants a
 * single-threaded caller, which a sanitizer's runtime may not leave. */
static void hide_net_of(pid_t pid)
{
	char *out = NULL;
	int rc = h_sh(&out, "nsenter -t %d -m mount -t tmpfs tmpfs /proc/%d/net", (int)pid, (int)pid);

	ck_assert_msg(rc == 0, "cannot hide /proc/%d/net: %s", (int)pid, out ? out : "");
	free(out);
}

/*
 * The tables cannot be read while free waits for the port (after SIGTERM
 * to a holder that ignores it): --force still waits the whole 5 s before
 * SIGKILL, and free says that whether the port is free is unknown (exit
 * 4), not that it is still held.
 */
START_TEST(test_free_force_waits_when_tables_fail)
{
	struct holder h;
	char arg[32], out[8192];
	size_t used = 0;
	int pipefd[2], st;
	double deadline, t_term = 0, t_dead;
	pid_t pid;

	if (!need_root())
		return;
	holder_start(&h, SOCK_STREAM, 0, (uid_t)-1, true);
	snprintf(arg, sizeof(arg), "%u", h.port);
	ck_assert_int_eq(pipe(pipefd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		dup2(null, 0);
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		close_range(3, ~0U, 0);
		alarm(30);
		own_mount_ns();
		execl(PORTFWDCTL, PORTFWDCTL, "-s", "/nonexistent", "free", arg, "--kill", "--force",
		      "--yes", (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	deadline = h_now() + 30;
	while (h_now() < deadline && used < sizeof(out) - 1) {
		struct pollfd p = { pipefd[0], POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, 200) <= 0)
			continue;
		n = read(pipefd[0], out + used, sizeof(out) - 1 - used);
		if (n <= 0)
			break;
		used += (size_t)n;
		out[used] = '\0';
		if (!t_term && strstr(out, "sent SIGTERM")) {
			t_term = h_now();
			hide_net_of(pid);
		}
	}
	out[used] = '\0';
	close(pipefd[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 125, "no mount namespace for the test");
	ck_assert_msg(t_term, "no SIGTERM: %s", out);
	ck_assert_msg(holder_wait(&h, 15) != -1, "the holder lives on: %s", out);
	t_dead = h_now();
	ck_assert_msg(t_dead - t_term >= 4.5, "SIGKILL %.1f s after SIGTERM: %s", t_dead - t_term, out);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 4, "status %d: %s", st, out);
	ck_assert_msg(strstr(out, "not known to be free after 5 s: sent SIGKILL") &&
			      strstr(out, "is unknown") && !strstr(out, "still held"),
		      "%s", out);
}
END_TEST

/* A server that binds as root and drops to nobody: ports and free show
 * its user, nobody, not the socket's owner (root) nor its /proc
 * directory's (root: it is not dumpable); JSON keeps the socket's. */
START_TEST(test_user_of_process_not_socket)
{
	struct holder h;
	char arg[32], want[128], *out;
	json_t *doc, *s;
	int rc;

	if (!need_root())
		return;
	holder_drop_to = NOBODY;
	holder_start(&h, SOCK_STREAM, 0, (uid_t)-1, false);
	holder_drop_to = (uid_t)-1;
	snprintf(arg, sizeof(arg), "%u", h.port);
	doc = ctl_json(&rc, "/nonexistent", "ports", arg, NULL);
	ck_assert_int_eq(rc, 0);
	s = find_socket(doc, "tcp", h.port);
	ck_assert_msg(s, "%u/tcp missing", h.port);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "pid")), h.pid);
	ck_assert_str_eq(json_string_value(json_object_get(s, "user")), user_name(NOBODY));
	ck_assert_int_eq(json_integer_value(json_object_get(s, "uid")), NOBODY);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "socket_uid")), 0);
	json_decref(doc);
	rc = ctl(&out, "/nonexistent", "ports", arg);
	snprintf(want, sizeof(want), "%7d %-16s %-12s", (int)h.pid, "pf-holder", user_name(NOBODY));
	ck_assert_msg(rc == 0 && strstr(out, want), "no \"%s\" in: %s", want, out);
	free(out);
	rc = ctl(&out, "/nonexistent", "who", arg);
	snprintf(want, sizeof(want), "pid %d (pf-holder, user %s)", (int)h.pid, user_name(NOBODY));
	ck_assert_msg(rc == 0 && strstr(out, want), "no \"%s\" in: %s", want, out);
	free(out);
	rc = ctl(&out, "/nonexistent", "free", arg, "--kill", "--yes");
	snprintf(want, sizeof(want), "sent SIGTERM to pid %d (pf-holder, user %s)", (int)h.pid,
		 user_name(NOBODY));
	ck_assert_msg(rc == 0 && strstr(out, want), "exit %d: no \"%s\" in: %s", rc, want, out);
	free(out);
	ck_assert(holder_wait(&h, 5) != -1);
}
END_TEST

/* As an ordinary user, a socket root opened and shares with a process of
 * that user (a master and its worker): free --kill says before acting
 * that holders it cannot see may keep the port, signals the one it sees,
 * and reports the port still held. */
START_TEST(test_free_hidden_coholders)
{
	struct holder h;
	char arg[32], want[128], *out, *err;
	int rc;

	if (!need_root())
		return;
	holder_share = true;
	holder_kid_uid = NOBODY;
	holder_start(&h, SOCK_STREAM, 0, (uid_t)-1, false);
	holder_share = false;
	holder_kid_uid = (uid_t)-1;
	snprintf(arg, sizeof(arg), "%u", h.port);
	rc = ctl_as(&out, &err, NOBODY, "/nonexistent", "free", arg, "--kill", "--yes", NULL);
	ck_assert_msg(strstr(out, "processes of other users that you cannot see may hold it too"),
		      "exit %d: %s%s", rc, out, err);
	snprintf(want, sizeof(want), "sent SIGTERM to pid %d ", (int)h.kid);
	ck_assert_msg(strstr(out, want), "%s", out);
	ck_assert_msg(strstr(out, "cannot see") < strstr(out, want), "said after acting: %s", out);
	ck_assert_msg(rc == 1 && strstr(out, "is still held"), "exit %d: %s", rc, out);
	free(out);
	free(err);
	ck_assert_msg(pid_gone(h.kid, 5), "the worker lives on");
	h.kid = 0;
	ck_assert_int_eq(kill(h.pid, 0), 0);
	holder_stop(&h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("port_tools");
	TCase *tc = tcase_create("port_tools");

	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, test_ports_lists_holders);
	tcase_add_test(tc, test_ports_without_daemon);
	tcase_add_test(tc, test_ports_as_user);
	tcase_add_test(tc, test_ports_filters);
	tcase_add_test(tc, test_who);
	tcase_add_test(tc, test_who_service_names);
	tcase_add_test(tc, test_free_rule);
	tcase_add_test(tc, test_free_rule_refused);
	tcase_add_test(tc, test_free_kill);
	tcase_add_test(tc, test_free_refuses_foreign_proc);
	tcase_add_test(tc, test_free_force);
	tcase_add_test(tc, test_free_refusals);
	tcase_add_test(tc, test_free_refuses_pid1);
	tcase_add_test(tc, test_daemon_answers_local_commands);
	tcase_add_test(tc, test_free_foreign_holder_of_failed_rule);
	tcase_add_test(tc, test_hostile_process_name);
	tcase_add_test(tc, test_free_kill_shared_socket);
	tcase_add_test(tc, test_free_kill_many_holders);
	tcase_add_test(tc, test_free_refuses_caller);
	tcase_add_test(tc, test_tables_unreadable_exit);
	tcase_add_test(tc, test_ports_daemon_permission_denied);
	tcase_add_test(tc, test_who_connections_only);
	tcase_add_test(tc, test_free_kill_without_pidfd);
	tcase_add_test(tc, test_free_asks_on_terminal);
	tcase_add_test(tc, test_user_of_process_not_socket);
	tcase_add_test(tc, test_free_skips_released_holder);
	tcase_add_test(tc, test_free_force_waits_when_tables_fail);
	tcase_add_test(tc, test_free_hidden_coholders);
	suite_add_tcase(s, tc);
	return check_run(s);
}
