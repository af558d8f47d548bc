/*
 * Two hosts, one address (part of issue 14): `portfwdctl health` as
 * keepalived's vrrp_script runs it (exit 0 only when every enabled rule
 * listens with a target to go to, else 1 and the reason; 3 when the daemon
 * does not answer), and freebind, which lets a rule listen on an address
 * this host does not have yet.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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
	return check_run(s);
}
