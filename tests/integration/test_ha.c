/*
 * Two hosts, one address (part of issue 14): `portfwdctl health` as
 * keepalived's vrrp_script runs it (exit 0 only when every enabled rule
 * listens with a target to go to, else 1 and the reason; 3 when the daemon
 * does not answer), and freebind, which lets a rule listen on an address
 * this host does not have yet. Then both with the real keepalived: two
 * hosts and a client in network namespaces of the test's own.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <poll.h>
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

#define PORTFWDCTL h_bin("PORTFWDCTL_BIN", "build/default/portfwdctl")

static int health(struct hdaemon *d, bool json, char **out)
{
	char *argv[] = { (char *)PORTFWDCTL, "-s", d->sock, "health", json ? "--json" : NULL, NULL };

	return h_run(argv, out);
}

static int ctl(struct hdaemon *d, const char *a, const char *b)
{
	char *argv[] = { (char *)PORTFWDCTL, "-s", d->sock, (char *)a, (char *)b, NULL }, *out;
	int rc = h_run(argv, &out);

	free(out);
	return rc;
}

/* portfwdctl ARGS... on D: the exit status, the output in *OUT. */
static int ctl_out(struct hdaemon *d, char **out, const char *a, const char *b)
{
	char *argv[] = { (char *)PORTFWDCTL, "-s", d->sock, (char *)a, (char *)b, NULL };

	return h_run(argv, out);
}

/* Rule NAME of `status --json` (a reference into *DOC, which the caller frees). */
static json_t *rule_of(json_t *doc, const char *name)
{
	json_t *rules = json_object_get(doc, "rules"), *r;
	size_t i;

	json_array_foreach(rules, i, r)
		if (strcmp(json_string_value(json_object_get(r, "name")), name) == 0)
			return r;
	ck_abort_msg("no rule %s", name);
	return NULL;
}

/* Rule NAME's state now. */
static void assert_state(struct hdaemon *d, const char *name, const char *state)
{
	json_t *doc = h_status(d);

	ck_assert_str_eq(json_string_value(json_object_get(rule_of(doc, name), "state")), state);
	json_decref(doc);
}

/*
 * Where a freebind test runs its daemon: the test case's own namespace
 * (h_ns, as root), whose ip_nonlocal_bind is set to 0 there, so that a rule
 * without freebind cannot bind an address no interface has, whatever the
 * host's sysctl says. Not root: the test's own namespace, and false if its
 * ip_nonlocal_bind lets such a bind succeed (the caller skips).
 */
static bool freebind_ns(const char *test)
{
	char *out = NULL;
	bool strict = true;
	int rc;

	h_daemon_netns = NULL;
	if (h_ns.ok) {
		rc = h_sh(&out, "ip netns exec %s sh -c 'echo 0 > /proc/sys/net/ipv4/ip_nonlocal_bind &&"
			  " echo 0 > /proc/sys/net/ipv6/ip_nonlocal_bind'", h_ns.srv);
		ck_assert_msg(rc == 0, "cannot set ip_nonlocal_bind in %s: %s", h_ns.srv, out);
		free(out);
		h_daemon_netns = h_ns.srv;
		return true;
	}
	for (int v6 = 0; v6 < 2; v6++) {
		FILE *fp = fopen(v6 ? "/proc/sys/net/ipv6/ip_nonlocal_bind" : "/proc/sys/net/ipv4/ip_nonlocal_bind", "r");
		int v = 0;

		if (fp) {
			if (fscanf(fp, "%d", &v) != 1)
				v = 0;
			fclose(fp);
		}
		strict &= v == 0;
	}
	if (!strict)
		fprintf(stderr, "%s: skipped: net.ipv4/ipv6.ip_nonlocal_bind is 1 here, so any rule binds an absent address (run as root: the test sets it in a namespace of its own)\n",
			test);
	return strict;
}

START_TEST(test_health)
{
	struct hdaemon d;
	struct h_backend b;
	struct sockaddr_storage ss;
	unsigned busy = h_free_port(SOCK_STREAM, false), good = h_free_port(SOCK_STREAM, false);
	unsigned hc = h_free_port(SOCK_STREAM, false), dead1 = h_free_port(SOCK_STREAM, false),
		 dead2 = h_free_port(SOCK_STREAM, false);
	socklen_t len = h_sockaddr("127.0.0.1", busy, &ss);
	int blocker = socket(AF_INET, SOCK_STREAM, 0), one = 1, rc;
	char body[1024], *out;
	double end;

	h_backend_start(&b, H_ECHO, false);
	setsockopt(blocker, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ck_assert_int_eq(bind(blocker, (struct sockaddr *)&ss, len), 0);
	ck_assert_int_eq(listen(blocker, 1), 0);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"good\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; },\n"
		 "          { name = \"busy\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 good, b.port, busy, b.port);
	h_start(&d, body);
	/* A rule whose port another socket holds: unhealthy, and why. */
	rc = health(&d, false, &out);
	ck_assert_msg(rc == 1 && strstr(out, "unhealthy: rule busy is failed: tcp: ") &&
			      strstr(out, "address already in use"),
		      "exit %d: %s", rc, out);
	free(out);
	rc = health(&d, true, &out);
	ck_assert_msg(rc == 1 && strstr(out, "\"healthy\": false") && strstr(out, "\"enabled_rules\": 2") &&
			      strstr(out, "\"healthy_rules\": 1"),
		      "exit %d: %s", rc, out);
	free(out);
	/* Disabled by the operator: not a fault. */
	ck_assert_int_eq(ctl(&d, "disable", "busy"), 0);
	rc = health(&d, false, &out);
	ck_assert_msg(rc == 0 && strstr(out, "healthy: 1 of 1 enabled rule listening"), "exit %d: %s", rc, out);
	free(out);
	/* Enabled again once the port is free: healthy, both rules. */
	close(blocker);
	ck_assert_int_eq(ctl(&d, "enable", "busy"), 0);
	end = h_now() + 10;
	while ((rc = health(&d, false, &out)) != 0 && h_now() < end) {
		free(out);
		usleep(100000);
	}
	ck_assert_msg(rc == 0 && strstr(out, "healthy: 2 of 2 enabled rules listening"), "exit %d: %s", rc, out);
	free(out);

	/* Health-checked targets, all down: unhealthy. */
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"good\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; },\n"
		 "          { name = \"hc\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; targets = [ \"127.0.0.1:%u\", \"127.0.0.1:%u\" ];\n"
		 "            health_check = { interval = 0.3; timeout = 0.2; rise = 1; fall = 1; }; } );",
		 good, b.port, hc, dead1, dead2);
	h_write_conf(&d, body);
	ck_assert_int_eq(ctl(&d, "reload", NULL), 0);
	end = h_now() + 10;
	while ((rc = health(&d, false, &out)) == 0 && h_now() < end) {
		free(out);
		usleep(100000);
	}
	ck_assert_msg(rc == 1 && strstr(out, "unhealthy: rule hc: none of its 2 targets is up (health checks)"),
		      "exit %d: %s", rc, out);
	free(out);
	h_stop(&d);
	/* No daemon: portfwdctl cannot connect (3), never 0. */
	rc = health(&d, false, &out);
	ck_assert_msg(rc == 3, "exit %d: %s", rc, out);
	free(out);
	h_backend_stop(&b);
}
END_TEST

/* An address no interface has (TEST-NET-1): refused without freebind,
 * bound with it; rules and status say which rule has it. */
START_TEST(test_freebind)
{
	struct hdaemon d;
	unsigned p1 = h_free_port(SOCK_STREAM, false), p2 = h_free_port(SOCK_STREAM, false);
	char body[640], *out, *plain, *free_;
	json_t *doc, *rules;

	if (!freebind_ns("test_freebind"))
		return;
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"plain\"; proto = \"tcp+udp\"; listen = \"192.0.2.77:%u\"; target = \"127.0.0.1:9\"; },\n"
		 "          { name = \"free\"; proto = \"tcp+udp\"; listen = \"192.0.2.77:%u\"; target = \"127.0.0.1:9\"; freebind = true; } );",
		 p1, p2);
	h_start(&d, body);
	h_daemon_netns = NULL;
	doc = h_status(&d);
	rules = json_object_get(doc, "rules");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rules, 0), "state")), "failed");
	ck_assert_msg(strstr(json_string_value(json_object_get(json_object_get(json_array_get(rules, 0), "tcp"), "error")),
			     "address not available"),
		      "%s", json_string_value(json_object_get(json_object_get(json_array_get(rules, 0), "tcp"), "error")));
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rules, 1), "state")), "listening");
	ck_assert(json_is_false(json_object_get(json_array_get(rules, 0), "freebind")));
	ck_assert(json_is_true(json_object_get(json_array_get(rules, 1), "freebind")));
	json_decref(doc);
	ck_assert_int_eq(health(&d, false, &out), 1);
	ck_assert_msg(strstr(out, "rule plain is failed"), "%s", out);
	free(out);

	/* rules: a line under the rule that has it, a key in every rule's JSON. */
	ck_assert_int_eq(ctl_out(&d, &out, "rules", NULL), 0);
	plain = strstr(out, "\nplain  tcp+udp  ");
	free_ = strstr(out, "\nfree  tcp+udp  ");
	ck_assert_msg(plain && free_ && plain < free_, "%s", out);
	ck_assert_msg(strstr(free_, ")\n  freebind true\n"), "%s", out);
	*free_ = '\0';
	ck_assert_msg(!strstr(plain, "freebind"), "%s", plain);
	free(out);
	ck_assert_int_eq(ctl_out(&d, &out, "rules", "--json"), 0);
	doc = json_loads(out, 0, NULL);
	ck_assert_msg(doc, "%s", out);
	free(out);
	rules = json_object_get(doc, "rules");
	ck_assert(json_is_false(json_object_get(json_array_get(rules, 0), "freebind")));
	ck_assert(json_is_true(json_object_get(json_array_get(rules, 1), "freebind")));
	json_decref(doc);
	h_stop(&d);
}
END_TEST

/*
 * freebind turned off by a reload while the address is absent: the rule
 * fails at once, as it would after a restart, with the reason, and the
 * reload says so; turned on again, it listens at once.
 */
START_TEST(test_freebind_reload_off)
{
	struct hdaemon d;
	unsigned p = h_free_port(SOCK_STREAM, false);
	char body[640], *out;
	json_t *doc;
	int rc;

	if (!freebind_ns("test_freebind_reload_off"))
		return;
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"free\"; proto = \"tcp+udp\"; listen = \"192.0.2.77:%u\"; target = \"127.0.0.1:9\"; freebind = true; } );", p);
	h_start(&d, body);
	h_daemon_netns = NULL;
	assert_state(&d, "free", "listening");
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"free\"; proto = \"tcp+udp\"; listen = \"192.0.2.77:%u\"; target = \"127.0.0.1:9\"; } );", p);
	h_write_conf(&d, body);
	rc = ctl_out(&d, &out, "reload", NULL);
	ck_assert_msg(rc == 1 && strstr(out, "rule free: cannot listen on tcp: address not available") &&
			      strstr(out, "rule free: cannot listen on udp: address not available"),
		      "exit %d: %s", rc, out);
	free(out);
	doc = h_status(&d);
	ck_assert_str_eq(json_string_value(json_object_get(rule_of(doc, "free"), "state")), "failed");
	ck_assert_msg(strstr(json_string_value(json_object_get(json_object_get(rule_of(doc, "free"), "tcp"), "error")),
			     "address not available: no local interface has the address of 192.0.2.77"),
		      "%s", json_string_value(json_object_get(json_object_get(rule_of(doc, "free"), "tcp"), "error")));
	json_decref(doc);
	rc = health(&d, false, &out);
	ck_assert_msg(rc == 1 && strstr(out, "unhealthy: rule free is failed: tcp: address not available"),
		      "freebind = false in force, address absent, yet: exit %d: %s", rc, out);
	free(out);
	ck_assert(h_log_contains(&d, "rule free: freebind was turned off: binding its sockets again"));

	/* And on again: bound at once, no retry to wait for. */
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"free\"; proto = \"tcp+udp\"; listen = \"192.0.2.77:%u\"; target = \"127.0.0.1:9\"; freebind = true; } );", p);
	h_write_conf(&d, body);
	rc = ctl_out(&d, &out, "reload", NULL);
	ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
	free(out);
	assert_state(&d, "free", "listening");
	h_stop(&d);
}
END_TEST

/*
 * freebind turned on by a reload for a rule that failed for want of the
 * address: the reload binds it at once and succeeds. A listening rule that
 * turns it on keeps its sockets (a bound socket needs it no more).
 */
START_TEST(test_freebind_reload_on)
{
	struct hdaemon d;
	unsigned p = h_free_port(SOCK_STREAM, false), q = h_free_port(SOCK_STREAM, false);
	char body[800], *out;
	unsigned long before[4], after[4];
	int rc, n;

	if (!freebind_ns("test_freebind_reload_on"))
		return;
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"free\"; proto = \"tcp\"; listen = \"192.0.2.77:%u\"; target = \"127.0.0.1:9\"; },\n"
		 "          { name = \"lo\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );",
		 p, q);
	h_start(&d, body);
	assert_state(&d, "free", "failed");
	assert_state(&d, "lo", "listening");
	if (h_daemon_netns)
		h_netns_enter(h_daemon_netns);
	n = h_socket_inodes(q, false, before, 4);
	ck_assert_int_gt(n, 0);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"free\"; proto = \"tcp\"; listen = \"192.0.2.77:%u\"; target = \"127.0.0.1:9\"; freebind = true; },\n"
		 "          { name = \"lo\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; freebind = true; } );",
		 p, q);
	h_write_conf(&d, body);
	rc = ctl_out(&d, &out, "reload", NULL);
	ck_assert_msg(rc == 0 && !strstr(out, "cannot listen"), "exit %d: %s", rc, out);
	free(out);
	ck_assert_int_eq(h_socket_inodes(q, false, after, 4), n);
	ck_assert_msg(memcmp(before, after, (size_t)n * sizeof(*after)) == 0, "rule lo was bound again");
	if (h_daemon_netns)
		h_netns_enter(NULL);
	h_daemon_netns = NULL;
	assert_state(&d, "free", "listening");
	assert_state(&d, "lo", "listening");
	rc = health(&d, false, &out);
	ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
	free(out);
	h_stop(&d);
}
END_TEST

/* IPv6: an address no interface has (2001:db8::/32, documentation) is
 * refused without freebind and bound with it; given to the host, it
 * forwards. */
START_TEST(test_freebind_ipv6)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned p1 = h_free_port(SOCK_STREAM, true), p2 = h_free_port(SOCK_STREAM, true);
	char body[800], *out;
	json_t *doc;
	int fd, rc;

	if (!freebind_ns("test_freebind_ipv6"))
		return;
	if (h_daemon_netns)
		h_netns_enter(h_daemon_netns);
	h_backend_start(&b, H_ECHO, false);
	if (h_daemon_netns)
		h_netns_enter(NULL);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"plain\"; proto = \"tcp+udp\"; listen = \"[2001:db8::77]:%u\"; target = \"127.0.0.1:%u\"; },\n"
		 "          { name = \"free\"; proto = \"tcp+udp\"; listen = \"[2001:db8::77]:%u\"; target = \"127.0.0.1:%u\"; freebind = true; } );",
		 p1, b.port, p2, b.port);
	h_start(&d, body);
	doc = h_status(&d);
	ck_assert_str_eq(json_string_value(json_object_get(rule_of(doc, "plain"), "state")), "failed");
	ck_assert_msg(strstr(json_string_value(json_object_get(json_object_get(rule_of(doc, "plain"), "udp"), "error")),
			     "address not available"),
		      "%s", json_string_value(json_object_get(json_object_get(rule_of(doc, "plain"), "udp"), "error")));
	ck_assert_str_eq(json_string_value(json_object_get(rule_of(doc, "free"), "state")), "listening");
	json_decref(doc);
	if (h_daemon_netns) {
		/* The address arrives (as VRRP brings it): traffic flows. */
		rc = h_sh(&out, "ip -n %s addr add 2001:db8::77/128 dev lo nodad", h_daemon_netns);
		ck_assert_msg(rc == 0, "%s", out);
		free(out);
		h_netns_enter(h_daemon_netns);
		fd = h_connect("2001:db8::77", p2);
		h_netns_enter(NULL);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(h_echo_exchange(fd, 4000, 7, 5), 0);
		close(fd);
		h_sh(&out, "ip -n %s addr del 2001:db8::77/128 dev lo", h_daemon_netns);
		free(out);
	}
	h_daemon_netns = NULL;
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* No rule enabled (all disabled, as `portfwdctl free PORT` does, or none
 * in the file): nothing is forwarded, so unhealthy, and why. */
START_TEST(test_health_no_rule_enabled)
{
	struct hdaemon d;
	unsigned p = h_free_port(SOCK_STREAM, false);
	char body[640], *out;
	int rc;

	snprintf(body, sizeof(body),
		 "rules = ( { name = \"a\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );", p);
	h_start(&d, body);
	ck_assert_int_eq(ctl(&d, "disable", "a"), 0);
	rc = health(&d, false, &out);
	ck_assert_msg(rc == 1 && strcmp(out, "portfwdctl: unhealthy: no rule is enabled (1 rule disabled)\n") == 0,
		      "no rule serving, yet: exit %d: %s", rc, out);
	free(out);
	rc = health(&d, true, &out);
	ck_assert_msg(rc == 1 && strstr(out, "\"healthy\": false") && strstr(out, "\"enabled_rules\": 0") &&
			      strstr(out, "\"healthy_rules\": 0") &&
			      strstr(out, "\"reason\": \"no rule is enabled (1 rule disabled)\""),
		      "exit %d: %s", rc, out);
	free(out);
	ck_assert_int_eq(ctl(&d, "enable", "a"), 0);
	ck_assert_int_eq(health(&d, false, &out), 0);
	free(out);
	h_write_conf(&d, "rules = ( );");
	ck_assert_int_eq(ctl(&d, "reload", NULL), 0);
	rc = health(&d, false, &out);
	ck_assert_msg(rc == 1 && strcmp(out, "portfwdctl: unhealthy: no rule is enabled (the configuration has none)\n") == 0,
		      "exit %d: %s", rc, out);
	free(out);
	h_stop(&d);
}
END_TEST

/*
 * Holds N consecutive TCP ports on 127.0.0.1 (listening sockets in FDS),
 * below the ephemeral range. Returns the first.
 */
static unsigned hold_ports(unsigned n, int *fds)
{
	unsigned base = 20000 + (unsigned)(getpid() % 400) * 25;

	for (int tries = 0; tries < 400; tries++, base += n + 1) {
		unsigned i;

		if (base + n >= 32000)
			base = 10000;
		for (i = 0; i < n; i++) {
			struct sockaddr_storage ss;
			socklen_t len = h_sockaddr("127.0.0.1", base + i, &ss);

			fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			ck_assert_int_ge(fds[i], 0);
			if (bind(fds[i], (struct sockaddr *)&ss, len) < 0 || listen(fds[i], 1) < 0) {
				close(fds[i]);
				break;
			}
		}
		if (i == n)
			return base;
		while (i > 0)
			close(fds[--i]);
	}
	ck_abort_msg("no %u consecutive free ports", n);
	return 0;
}

/*
 * A range rule whose ports another program holds, and a second failed
 * rule: the reason is one line, whole (the range's error to its last word,
 * then the other rules counted), text and JSON alike.
 */
START_TEST(test_health_long_reason)
{
	struct hdaemon d;
	int fds[17];
	unsigned base = hold_ports(17, fds);
	char body[800], want[128], *out, *json;
	json_t *doc;
	json_error_t jerr;
	const char *reason;
	int rc;

	snprintf(body, sizeof(body),
		 "rules = ( { name = \"range\"; proto = \"tcp\"; listen = \"127.0.0.1:%u-%u\"; target = \"127.0.0.1:9\"; },\n"
		 "          { name = \"one\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );",
		 base, base + 15, base + 16);
	h_start(&d, body);
	rc = health(&d, false, &out);
	snprintf(want, sizeof(want), "%u/tcp: address already in use: ", base);
	ck_assert_msg(rc == 1 && strncmp(out, "portfwdctl: unhealthy: rule range is failed: tcp: ", 50) == 0 &&
			      strstr(out, want) && strchr(out, '\n') == out + strlen(out) - 1 &&
			      strstr(out, "; and 12 more of 16 ports (and 1 more rule)\n"),
		      "exit %d: %s", rc, out);
	rc = health(&d, true, &json);
	/* The JSON on stdout; the error line on stderr, before it. */
	doc = strchr(json, '{') ? json_loads(strchr(json, '{'), JSON_DISABLE_EOF_CHECK, &jerr) : NULL;
	ck_assert_msg(rc == 1 && doc, "exit %d: %s", rc, json);
	reason = json_string_value(json_object_get(doc, "reason"));
	ck_assert_msg(reason && strncmp(out + strlen("portfwdctl: unhealthy: "), reason, strlen(reason)) == 0 &&
			      strlen(out) == strlen("portfwdctl: unhealthy: ") + strlen(reason) + 1,
		      "text: %s\njson: %s", out, json);
	json_decref(doc);
	free(json);
	free(out);
	h_stop(&d);
	for (int i = 0; i < 17; i++)
		close(fds[i]);
}
END_TEST

/* A thread that accepts one connection on its listening socket and closes it. */
static void *accept_close(void *arg)
{
	int fd = accept(*(int *)arg, NULL, NULL);

	if (fd >= 0)
		close(fd);
	return NULL;
}

/*
 * health exits 3 whenever no daemon answered: a socket that takes the
 * connection and closes it, one that never replies (10 s), and a caller
 * the socket's permissions refuse.
 */
START_TEST(test_health_no_answer)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct hdaemon d;
	pthread_t t;
	char dir[] = "/tmp/portfwd-test.XXXXXX", *out;
	int fd, rc;
	double t0;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/fake.sock", dir);
	snprintf(d.sock, sizeof(d.sock), "%s", sun.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	/* Taken and closed without a reply. */
	ck_assert_int_eq(pthread_create(&t, NULL, accept_close, &fd), 0);
	rc = health(&d, false, &out);
	pthread_join(t, NULL);
	ck_assert_msg(rc == 3 && strstr(out, "connection closed before the reply ended"), "exit %d: %s", rc, out);
	free(out);
	/* Taken (by the kernel) and never answered. */
	t0 = h_now();
	rc = health(&d, true, &out);
	ck_assert_msg(rc == 3 && strstr(out, "no reply within the time limit") && h_now() - t0 < 15,
		      "exit %d after %.1fs: %s", rc, h_now() - t0, out);
	free(out);
	close(fd);
	unlink(sun.sun_path);
	rmdir(dir);

	if (geteuid() != 0) {
		fprintf(stderr, "test_health_no_answer: the permission case is skipped (needs root)\n");
		return;
	}
	{
		char body[320];
		char *argv[] = { (char *)PORTFWDCTL, "-s", d.sock, "health", NULL };

		snprintf(body, sizeof(body),
			 "rules = ( { name = \"a\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );",
			 h_free_port(SOCK_STREAM, false));
		h_start(&d, body);
		chmod(d.dir, 0755);
		rc = h_run_as(argv, 65534, 65534, &out);
		ck_assert_msg(rc == 3 && strstr(out, "permission denied"), "exit %d: %s", rc, out);
		free(out);
		h_stop(&d);
	}
}
END_TEST

static void ha_netns_make(void)
{
	h_netns_make(&h_ns);
}

static void ha_netns_destroy(void)
{
	h_netns_destroy(&h_ns);
}

/* ---- keepalived: two hosts share one address ---- */

/*
 * A bridge in a namespace of its own joins three more: host A (10.78.0.11),
 * host B (10.78.0.12) and a client (10.78.0.20). Each host runs an echo
 * backend that says which host it is, portfwd forwarding the shared address
 * KA_VIP to it (freebind), and keepalived tracking `portfwdctl health`.
 */
#define KA_KEEPALIVED "/usr/sbin/keepalived"
#define KA_VIP "10.78.0.50"
#define KA_PORT 7000
#define KA_TRIES 8192

enum { KA_BR, KA_A, KA_B, KA_CLI, KA_NS };

/* The namespaces' names, from the pid of the suite's process: set by the
 * fixture there, so the test (in a process of its own) and the clean-up
 * (back in the suite's) use the same. */
static char ka_ns[KA_NS][32];
static int ka_pid;

static void ka_names(void)
{
	static const char *const suffix[KA_NS] = { "kbr", "ka", "kb", "kc" };

	ka_pid = (int)getpid();
	for (int i = 0; i < KA_NS; i++)
		snprintf(ka_ns[i], sizeof(ka_ns[i]), "pf%d-%s", ka_pid, suffix[i]);
}

/*
 * Ends what still runs in the namespaces (keepalived and portfwd, when a
 * test failed half-way and left them) and deletes them. Nothing to do when
 * they are gone already.
 */
static void ka_clean(void)
{
	char *out = NULL;

	h_sh(&out,
	     "nss='%s %s %s %s'; pids() { for ns in $nss; do ip netns pids $ns 2>/dev/null; done; };"
	     " p=$(pids); [ -z \"$p\" ] || kill $p 2>/dev/null;"
	     " i=0; while [ -n \"$(pids)\" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done;"
	     " p=$(pids); [ -z \"$p\" ] || kill -9 $p 2>/dev/null;"
	     " for ns in $nss; do ip netns del $ns 2>/dev/null; done; true",
	     ka_ns[KA_BR], ka_ns[KA_A], ka_ns[KA_B], ka_ns[KA_CLI]);
	free(out);
}

/* The temporary directory of keepalived's files (configurations, logs). */
static char ka_dir[64];

/* One connection of the client: when it began and ended, and which host's
 * backend answered ('A', 'B'; 0 when none did). */
struct ka_try {
	double start, end;
	char host;
};

static struct {
	pthread_t thread;
	atomic_bool stop;
	pthread_mutex_t lock;
	int n;
	struct ka_try tries[KA_TRIES];
} ka_cli = { .lock = PTHREAD_MUTEX_INITIALIZER };

/*
 * Connects to the shared address, sends "ping\\n" and reads the answer,
 * "A:ping\\n" or "B:ping\\n" (the backend's tag, then the echo): 0.3 s for
 * the connection and 0.3 s for the answer. Returns the host, 0 on failure.
 */
static char ka_attempt(void)
{
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr(KA_VIP, KA_PORT, &ss), elen = sizeof(int);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), err = 0;
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	char buf[16], host = 0;
	size_t got = 0;
	double deadline;

	if (fd < 0)
		return 0;
	if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS)
		goto out;
	if (poll(&p, 1, 300) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err)
		goto out;
	if (send(fd, "ping\n", 5, MSG_NOSIGNAL) != 5)
		goto out;
	p.events = POLLIN;
	deadline = h_now() + 0.3;
	while (got < 7 && h_now() < deadline) {
		ssize_t n;

		if (poll(&p, 1, 50) <= 0)
			continue;
		n = read(fd, buf + got, sizeof(buf) - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got == 7 && (memcmp(buf, "A:ping\n", 7) == 0 || memcmp(buf, "B:ping\n", 7) == 0))
		host = buf[0];
out:
	close(fd);
	return host;
}

/* An attempt every 50 ms (after the last one ended) until told to stop. */
static void *ka_client_thread(void *arg)
{
	(void)arg;
	while (!ka_cli.stop) {
		struct ka_try t = { .start = h_now() };

		t.host = ka_attempt();
		t.end = h_now();
		pthread_mutex_lock(&ka_cli.lock);
		if (ka_cli.n < KA_TRIES)
			ka_cli.tries[ka_cli.n++] = t;
		pthread_mutex_unlock(&ka_cli.lock);
		usleep(50000);
	}
	return NULL;
}

/* The index of the first attempt begun at SINCE or later, ka_cli.n if none. */
static int ka_index(double since)
{
	int i;

	pthread_mutex_lock(&ka_cli.lock);
	for (i = 0; i < ka_cli.n && ka_cli.tries[i].start < since; i++)
		;
	pthread_mutex_unlock(&ka_cli.lock);
	return i;
}

/* Waits (SECONDS at most) until HOST answers an attempt from index FROM
 * on; returns that attempt's index, -1 if none did. */
static int ka_wait_host(char host, int from, double seconds)
{
	double deadline = h_now() + seconds;
	int i = from, n;

	for (;;) {
		pthread_mutex_lock(&ka_cli.lock);
		n = ka_cli.n;
		for (; i < n; i++)
			if (ka_cli.tries[i].host == host)
				break;
		pthread_mutex_unlock(&ka_cli.lock);
		if (i < n)
			return i;
		if (n == KA_TRIES || h_now() >= deadline)
			return -1;
		usleep(20000);
	}
}

/* Waits (SECONDS at most) for the COUNT attempts after index I; true if
 * HOST answered each of them. */
static bool ka_wait_row(int i, char host, int count, double seconds)
{
	double deadline = h_now() + seconds;
	bool all = true;
	int n;

	for (;;) {
		pthread_mutex_lock(&ka_cli.lock);
		n = ka_cli.n;
		pthread_mutex_unlock(&ka_cli.lock);
		if (n > i + count || h_now() >= deadline)
			break;
		usleep(20000);
	}
	pthread_mutex_lock(&ka_cli.lock);
	for (int k = i + 1; k <= i + count; k++)
		all &= k < ka_cli.n && ka_cli.tries[k].host == host;
	pthread_mutex_unlock(&ka_cli.lock);
	return all;
}

/* When attempt I ended. */
static double ka_end(int i)
{
	double t;

	pthread_mutex_lock(&ka_cli.lock);
	t = ka_cli.tries[i].end;
	pthread_mutex_unlock(&ka_cli.lock);
	return t;
}

/* How many attempts from FROM to TO (both included) failed. */
static int ka_failed(int from, int to)
{
	int n = 0;

	pthread_mutex_lock(&ka_cli.lock);
	for (int i = from; i <= to && i < ka_cli.n; i++)
		n += ka_cli.tries[i].host == 0;
	pthread_mutex_unlock(&ka_cli.lock);
	return n;
}

/* The end of keepalived's log of host H ('a', 'b') and the client's
 * attempts as runs ("+3.20 s A x12"), on stderr: what a failure needs. */
static void ka_dump(void)
{
	char path[128], buf[6144];
	struct ka_try *t = ka_cli.tries;

	for (const char *h = "ab"; *h; h++) {
		FILE *fp;
		size_t n = 0;
		long size;

		snprintf(path, sizeof(path), "%s/%c.log", ka_dir, *h);
		fp = fopen(path, "r");
		if (fp && fseek(fp, 0, SEEK_END) == 0 && (size = ftell(fp)) >= 0) {
			fseek(fp, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
			n = fread(buf, 1, sizeof(buf) - 1, fp);
		}
		buf[n] = '\0';
		fprintf(stderr, "---- the end of %s ----\n%s---- end of %s ----\n", path, buf, path);
		if (fp)
			fclose(fp);
	}
	pthread_mutex_lock(&ka_cli.lock);
	fprintf(stderr, "---- the client's attempts: from (s), who answered (- none), how many ----\n");
	for (int i = 0, j; i < ka_cli.n; i = j) {
		for (j = i; j < ka_cli.n && t[j].host == t[i].host; j++)
			;
		fprintf(stderr, "+%.2f %c x%d\n", t[i].start - t[0].start, t[i].host ? t[i].host : '-', j - i);
	}
	pthread_mutex_unlock(&ka_cli.lock);
}

#define ka_assert(cond, ...)                     \
	do {                                     \
		if (!(cond)) {                   \
			ka_dump();               \
			ck_abort_msg(__VA_ARGS__); \
		}                                \
	} while (0)

/* True once the file at PATH contains TEXT, false after SECONDS. */
static bool ka_wait_file(const char *path, const char *text, double seconds)
{
	double deadline = h_now() + seconds;
	char buf[65536];

	for (;;) {
		FILE *fp = fopen(path, "r");
		size_t n = fp ? fread(buf, 1, sizeof(buf) - 1, fp) : 0;

		if (fp)
			fclose(fp);
		buf[n] = '\0';
		if (strstr(buf, text))
			return true;
		if (h_now() >= deadline)
			return false;
		usleep(50000);
	}
}

/*
 * keepalived's configuration for host H ('a', 'b'): the shipped example,
 * conf/keepalived/keepalived.conf, as a user adapts it: the script's path
 * and socket, the shared address, and the second host's priority.
 */
static char *ka_replace(char *text, const char *from, const char *to)
{
	char *at = strstr(text, from), *out;
	size_t n;

	ck_assert_msg(at != NULL, "the keepalived example no longer has \"%s\"", from);
	n = strlen(text) - strlen(from) + strlen(to) + 1;
	out = malloc(n);
	ck_assert_ptr_nonnull(out);
	snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
	free(text);
	return out;
}

static void ka_write_conf(char h, const char *ctl, const char *sock, int priority)
{
	char path[128], script[PATH_MAX + 160], prio[32], *text;
	size_t len;
	FILE *fp;

	fp = fopen("conf/keepalived/keepalived.conf", "r");
	ck_assert_msg(fp != NULL, "conf/keepalived/keepalived.conf: %s", strerror(errno));
	text = calloc(1, 65536);
	ck_assert_ptr_nonnull(text);
	len = fread(text, 1, 65535, fp);
	fclose(fp);
	ck_assert_uint_gt(len, 0);
	snprintf(script, sizeof(script), "script \"%s -s %s health\"", ctl, sock);
	snprintf(prio, sizeof(prio), "priority %d ", priority);
	text = ka_replace(text, "script \"/usr/bin/portfwdctl health\"", script);
	text = ka_replace(text, "192.168.0.50/24", KA_VIP "/24");
	text = ka_replace(text, "priority 150 ", prio);
	snprintf(path, sizeof(path), "%s/%c.conf", ka_dir, h);
	fp = fopen(path, "w");
	ck_assert_msg(fp != NULL, "%s: %s", path, strerror(errno));
	fputs(text, fp);
	fclose(fp);
	free(text);
}

/* Starts keepalived for host H in namespace NS: in the foreground, VRRP
 * only (no checkers process), logging to its file in ka_dir and not to
 * syslog, its pid files in ka_dir: nothing of the system's. Returns its pid. */
static pid_t ka_keepalived_start(char h, const char *ns)
{
	char conf[128], log[128], pid[128], vrrp[128];
	pid_t p;

	snprintf(conf, sizeof(conf), "%s/%c.conf", ka_dir, h);
	snprintf(log, sizeof(log), "%s/%c.log", ka_dir, h);
	snprintf(pid, sizeof(pid), "%s/%c.pid", ka_dir, h);
	snprintf(vrrp, sizeof(vrrp), "%s/%c-vrrp.pid", ka_dir, h);
	p = fork();
	ck_assert_int_ge(p, 0);
	if (p == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644), null = open("/dev/null", O_RDONLY);

		dup2(null, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		close_range(3, ~0U, 0);
		/* ip execs keepalived (the pid stays), with /sys of the namespace. */
		execlp("ip", "ip", "netns", "exec", ns, KA_KEEPALIVED, "--dont-fork", "--log-console",
		       "--log-detail", "--no-syslog", "--vrrp", "-f", conf, "-p", pid, "-r", vrrp, (char *)NULL);
		_exit(127);
	}
	return p;
}

/* SIGTERM (keepalived gives the address up and stops its child), SIGKILL
 * after 10 s. */
static void ka_keepalived_stop(pid_t p)
{
	double deadline = h_now() + 10;
	int st;

	if (p <= 0)
		return;
	kill(p, SIGTERM);
	while (waitpid(p, &st, WNOHANG) != p) {
		if (h_now() >= deadline) {
			kill(p, SIGKILL);
			waitpid(p, &st, 0);
			break;
		}
		usleep(20000);
	}
}

/* Starts portfwd in namespace NS: the shared address (freebind: B listens
 * on it before it has it) to the backend on BACKEND_PORT of its loopback. */
static void ka_portfwd_start(struct hdaemon *d, const char *ns, unsigned backend_port)
{
	char body[256];

	snprintf(body, sizeof(body),
		 "rules = ( { name = \"vip\"; proto = \"tcp\"; listen = \"" KA_VIP ":%u\";"
		 " target = \"127.0.0.1:%u\"; freebind = true; } );",
		 KA_PORT, backend_port);
	h_daemon_netns = ns;
	h_start(d, body);
}

/* Waits (10 s at most) until D's control socket answers. */
static bool ka_wait_ctl(struct hdaemon *d)
{
	double deadline = h_now() + 10;

	while (h_now() < deadline) {
		bool ok = false;

		free(h_ctl(d->sock, "status", &ok));
		if (ok)
			return true;
		usleep(20000);
	}
	return false;
}

/*
 * The pair, end to end: A has the address; its portfwd stops, `portfwdctl
 * health` fails twice, keepalived gives the address up and B takes it;
 * A's portfwd starts again and, healthy again, A takes it back.
 * Measured from the client: how long each move took, how many of its
 * attempts (one every 50 ms) failed meanwhile.
 */
START_TEST(test_keepalived_pair)
{
	struct hdaemon a, b;
	struct h_backend ba = { .tag = "A:" }, bb = { .tag = "B:" };
	char ctl[PATH_MAX], path[160], *out = NULL;
	pid_t ka_a = 0, ka_b = 0;
	double t_stop, t_start, to_b, to_a;
	int rc, i, i_b, i_a, fail_b, fail_a, tries_b, tries_a;

	if (geteuid() != 0) {
		fprintf(stderr, "not root: test_keepalived_pair (network namespaces) skipped\n");
		return;
	}
	if (access(KA_KEEPALIVED, X_OK) != 0) {
		fprintf(stderr, "no %s (Debian package keepalived): test_keepalived_pair skipped\n",
			KA_KEEPALIVED);
		return;
	}
	ck_assert_msg(realpath(PORTFWDCTL, ctl) != NULL, "%s: %s", PORTFWDCTL, strerror(errno));
	snprintf(ka_dir, sizeof(ka_dir), "/tmp/portfwd-test.XXXXXX");
	ck_assert_msg(mkdtemp(ka_dir) != NULL, "mkdtemp: %s", strerror(errno));

	/* The network: a bridge, and a veth pair from it to each of the others. */
	rc = h_sh(&out,
		  "set -e; for ns in %1$s %2$s %3$s %4$s; do ip netns add $ns; ip -n $ns link set lo up; done;"
		  " ip -n %1$s link add br0 type bridge; ip -n %1$s link set br0 up;"
		  " ip link add pf%5$da netns %1$s type veth peer name eth0 netns %2$s;"
		  " ip link add pf%5$db netns %1$s type veth peer name eth0 netns %3$s;"
		  " ip link add pf%5$dc netns %1$s type veth peer name eth0 netns %4$s;"
		  " for p in a b c; do ip -n %1$s link set pf%5$d$p master br0 up; done;"
		  " ip -n %2$s addr add 10.78.0.11/24 dev eth0; ip -n %3$s addr add 10.78.0.12/24 dev eth0;"
		  " ip -n %4$s addr add 10.78.0.20/24 dev eth0;"
		  " for ns in %2$s %3$s %4$s; do ip -n $ns link set eth0 up; done",
		  ka_ns[KA_BR], ka_ns[KA_A], ka_ns[KA_B], ka_ns[KA_CLI], ka_pid);
	ck_assert_msg(rc == 0, "cannot make the namespaces (exit %d): %s", rc, out);
	free(out);

	/* On each host, its backend (on its loopback) and portfwd. */
	h_netns_enter(ka_ns[KA_A]);
	h_backend_start(&ba, H_TAG_ECHO, false);
	h_netns_enter(ka_ns[KA_B]);
	h_backend_start(&bb, H_TAG_ECHO, false);
	h_netns_enter(NULL);
	ka_portfwd_start(&a, ka_ns[KA_A], ba.port);
	ka_portfwd_start(&b, ka_ns[KA_B], bb.port);

	/* keepalived on each; the client, its thread made in the client's
	 * namespace (a thread starts in its creator's). */
	ka_write_conf('a', ctl, a.sock, 150);
	ka_write_conf('b', ctl, b.sock, 100);
	ka_a = ka_keepalived_start('a', ka_ns[KA_A]);
	ka_b = ka_keepalived_start('b', ka_ns[KA_B]);
	h_netns_enter(ka_ns[KA_CLI]);
	ck_assert_int_eq(pthread_create(&ka_cli.thread, NULL, ka_client_thread, NULL), 0);
	h_netns_enter(NULL);

	/* A has the address, steadily; B stands by. */
	i = ka_wait_host('A', 0, 20);
	ka_assert(i >= 0, "the address did not answer from A within 20 s");
	ka_assert(ka_wait_row(i, 'A', 10, 10), "A answered, but not the 10 attempts after");
	snprintf(path, sizeof(path), "%s/b.log", ka_dir);
	ka_assert(ka_wait_file(path, "(portfwd) Entering BACKUP STATE", 10), "B's keepalived is not BACKUP");

	/* A's portfwd stops: its health fails and B takes the address. */
	t_stop = h_now();
	rc = h_kill(&a);
	ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "A's portfwd: status %d; see %s", rc, a.log);
	i = ka_index(t_stop);
	i_b = ka_wait_host('B', i, 15);
	ka_assert(i_b >= 0, "B did not answer within 15 s of A's portfwd stopping");
	to_b = ka_end(i_b) - t_stop;
	fail_b = ka_failed(i, i_b);
	tries_b = i_b - i + 1;
	ka_assert(ka_wait_row(i_b, 'B', 10, 10), "B answered, but not the 10 attempts after");

	/* A's portfwd again: healthy twice, A takes it back. */
	h_daemon_netns = ka_ns[KA_A];
	t_start = h_now();
	h_spawn(&a);
	ka_assert(ka_wait_ctl(&a), "A's portfwd did not answer again within 10 s; see %s", a.log);
	i = ka_index(t_start);
	i_a = ka_wait_host('A', i, 30);
	ka_assert(i_a >= 0, "A did not answer again within 30 s of its portfwd starting");
	to_a = ka_end(i_a) - t_start;
	fail_a = ka_failed(i, i_a);
	tries_a = i_a - i + 1;
	ka_assert(ka_wait_row(i_a, 'A', 10, 10), "A answered again, but not the 10 attempts after");

	printf("keepalived pair: VIP moved to B in %.2f s, %d of %d attempts failed;"
	       " back to A in %.2f s, %d of %d failed\n",
	       to_b, fail_b, tries_b, to_a, fail_a, tries_a);

	ka_cli.stop = true;
	pthread_join(ka_cli.thread, NULL);
	ka_keepalived_stop(ka_b);
	ka_keepalived_stop(ka_a);
	h_daemon_netns = NULL;
	h_stop(&a);
	h_stop(&b);
	h_backend_stop(&ba);
	h_backend_stop(&bb);
	ka_clean();
	/* keepalived removed its pid files on the way out. */
	for (const char *h = "ab"; *h; h++) {
		snprintf(path, sizeof(path), "%s/%c.conf", ka_dir, *h);
		unlink(path);
		snprintf(path, sizeof(path), "%s/%c.log", ka_dir, *h);
		unlink(path);
	}
	ck_assert_msg(rmdir(ka_dir) == 0, "rmdir %s: %s", ka_dir, strerror(errno));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ha");
	TCase *tc = tcase_create("ha");

	tcase_set_timeout(tc, 60);
	/* The freebind tests run their daemon in a namespace of their own. */
	tcase_add_unchecked_fixture(tc, ha_netns_make, ha_netns_destroy);
	tcase_add_test(tc, test_health);
	tcase_add_test(tc, test_freebind);
	tcase_add_test(tc, test_freebind_reload_off);
	tcase_add_test(tc, test_freebind_reload_on);
	tcase_add_test(tc, test_freebind_ipv6);
	tcase_add_test(tc, test_health_no_rule_enabled);
	tcase_add_test(tc, test_health_long_reason);
	tcase_add_test(tc, test_health_no_answer);
	suite_add_tcase(s, tc);
	/* About 20 s when all goes well; room for its longest waits (20, 15
	 * and 30 s) when keepalived is slow, and for a sanitizer build. */
	tc = tcase_create("keepalived");
	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, ka_names, ka_clean);
	tcase_add_test(tc, test_keepalived_pair);
	suite_add_tcase(s, tc);
	return check_run(s);
}
