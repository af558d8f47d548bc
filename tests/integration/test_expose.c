/*
 * Who may connect, as an operator sees it: exposure warnings from
 * `portfwd -t` (and --strict), in check and reload replies, in the log and
 * in status; rules bound to an interface, in two network namespaces the
 * test makes, with an interface that comes later, goes and comes back,
 * changes on reload, and after the daemon gave root up.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"
#include "check_run.h"
#include "iface.h"
#include "privs.h"

#define PORTFWD h_bin("PORTFWD_BIN", "build/default/portfwd")
#define PORTFWDCTL h_bin("PORTFWDCTL_BIN", "build/default/portfwdctl")

/* `portfwd -t [--strict] -c PATH`: the exit status, stdout and stderr in *OUT. */
static int check_file(char **out, const char *path, bool strict)
{
	char *argv[] = { (char *)PORTFWD, "-t", "-c", (char *)path, strict ? "--strict" : NULL, NULL };

	return h_run(argv, out);
}

/* portfwdctl -s D's socket with up to three arguments. */
static int run_ctl(struct hdaemon *d, char **out, const char *a1, const char *a2, const char *a3)
{
	char *argv[] = { (char *)PORTFWDCTL, "-s", d->sock, (char *)a1, (char *)a2, (char *)a3, NULL };

	return h_run(argv, out);
}

#define SSH_WARNING \
	"forwards to port 22 (ssh), which scanners hunt (password guessing), from 0.0.0.0:2222 (every address of this host) with no allow list that keeps anyone out: anyone who reaches this host can try it; add an allow list of the addresses that need it, or listen only on a VPN interface (interface = \"wg0\")"
#define OUT_NOTE \
	"target 198.51.100.7:443 is a public address (not private, link-local or loopback): the traffic goes out to the internet; check that this is the host you mean"

/* -t prints the warnings and notes (FILE:LINE) and says the file is valid;
 * --strict fails, with 3, only when there is a warning. Each file starts
 * with the harness's daemon line and "defaults", its rules at line 3. */
START_TEST(test_check_flag_warnings)
{
	struct hdaemon exposed, noted, quiet;
	char want[1024], *out;
	char *usage[] = { (char *)PORTFWD, "--strict", "-c", quiet.conf, NULL };

	h_prepare(&exposed,
		  "defaults: { };\n"
		  "rules = ( { name = \"ssh\"; proto = \"tcp\"; listen = \"0.0.0.0:2222\"; target = \"192.168.0.2:22\"; },\n"
		  "          { name = \"out\"; proto = \"tcp\"; listen = \"127.0.0.1:8443\"; target = \"198.51.100.7:443\"; } );");
	h_prepare(&noted, "defaults: { };\n"
		  "rules = ( { name = \"out\"; proto = \"tcp\"; listen = \"127.0.0.1:8443\"; target = \"198.51.100.7:443\"; } );");
	h_prepare(&quiet, "defaults: { };\n"
		  "rules = ( { name = \"vpn\"; proto = \"tcp\"; listen = \"0.0.0.0:2222\"; target = \"192.168.0.2:22\"; interface = \"pfnowhere0\"; } );"); /* no such interface here: quiet */

	ck_assert_int_eq(check_file(&out, exposed.conf, false), 0);
	snprintf(want, sizeof(want), "%s:3: warning: rule \"ssh\": " SSH_WARNING "\n", exposed.conf);
	ck_assert_msg(strstr(out, want), "%s", out);
	snprintf(want, sizeof(want), "%s:4: note: rule \"out\": " OUT_NOTE "\n", exposed.conf);
	ck_assert_msg(strstr(out, want), "%s", out);
	snprintf(want, sizeof(want), "%s: configuration is valid, 2 rules, 1 warning, 1 note\n", exposed.conf);
	ck_assert_msg(strstr(out, want), "%s", out);
	free(out);
	ck_assert_int_eq(check_file(&out, exposed.conf, true), 3);
	ck_assert_msg(strstr(out, want) && strstr(out, "portfwd: --strict: 1 warning\n"), "%s", out);
	free(out);

	/* Notes never fail. */
	ck_assert_int_eq(check_file(&out, noted.conf, true), 0);
	snprintf(want, sizeof(want), "%s: configuration is valid, 1 rule, 1 note\n", noted.conf);
	ck_assert_msg(strstr(out, want), "%s", out);
	free(out);

	/* A rule bound to an interface is not exposed. */
	ck_assert_int_eq(check_file(&out, quiet.conf, true), 0);
	snprintf(want, sizeof(want),
		 "%s: configuration is valid, 1 rule\n"
		 "  vpn  tcp  0.0.0.0:2222 (registered) -> 192.168.0.2:22 (ssh, well-known)\n",
		 quiet.conf);
	ck_assert_str_eq(out, want);
	free(out);

	/* An invalid file is still 1; --strict without -t is a usage error. */
	ck_assert_int_eq(check_file(&out, "tests/conf/bad/interfaces.conf", true), 1);
	free(out);
	ck_assert_int_eq(h_run(usage, &out), 2);
	ck_assert_msg(strstr(out, "--strict goes with -t"), "%s", out);
	free(out);
	h_cleanup(&exposed);
	h_cleanup(&noted);
	h_cleanup(&quiet);
}
END_TEST

/* ---- in network namespaces ---- */

/* The rule named NAME in D's status, NULL if none; *DOC to json_decref. */
static json_t *rule_status(struct hdaemon *d, const char *name, json_t **doc)
{
	json_t *r;
	size_t i;

	*doc = h_status(d);
	json_array_foreach(json_object_get(*doc, "rules"), i, r)
		if (strcmp(json_string_value(json_object_get(r, "name")), name) == 0)
			return r;
	return NULL;
}

/* Waits (SECONDS at most) until rule NAME's state is STATE. */
static bool wait_state(struct hdaemon *d, const char *name, const char *state, double seconds)
{
	double deadline = h_now() + seconds;

	for (;;) {
		json_t *doc, *r = rule_status(d, name, &doc);
		bool ok = r && strcmp(json_string_value(json_object_get(r, "state")), state) == 0;

		json_decref(doc);
		if (ok || h_now() > deadline)
			return ok;
		usleep(100000);
	}
}

/* A TCP connection from namespace NS to HOST:PORT: 0 and an echo through
 * it, or the connect's errno (3 s at most). */
static int tcp_echo_via(const char *ns, const char *host, unsigned port)
{
	struct timeval tv = { 3, 0 };
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr(host, port, &ss);
	int fd, rc;

	h_netns_enter(ns);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	h_netns_enter(NULL);
	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		rc = errno;
		close(fd);
		return rc;
	}
	rc = h_echo_exchange(fd, 4000, port, 5) == 0 ? 0 : -1;
	close(fd);
	return rc;
}

/* True if a datagram from namespace NS to HOST:PORT comes back within 1 s. */
static bool udp_echo_via(const char *ns, const char *host, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr(host, port, &ss);
	struct pollfd p;
	char buf[16];
	bool ok;
	int fd;

	h_netns_enter(ns);
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	h_netns_enter(NULL);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&ss, len), 0);
	ck_assert_int_eq(send(fd, "ping", 4, 0), 4);
	p = (struct pollfd){ .fd = fd, .events = POLLIN };
	ok = poll(&p, 1, 1000) == 1 && recv(fd, buf, sizeof(buf), 0) == 4 && memcmp(buf, "ping", 4) == 0;
	close(fd);
	return ok;
}

/*
 * A second link between the namespaces that a test makes and deletes while
 * the daemon runs, as a VPN interface comes and goes: the server's end,
 * late_if, has 10.78.0.1/24, the client's 10.78.0.2/24. The harness's link
 * (10.77.0.1) is the other way in.
 */
static char late_if[16], late_peer[16];

/* Names the link (for this test's process) without making it. */
static void late_names(void)
{
	snprintf(late_if, sizeof(late_if), "pf%dv", (int)getpid());
	snprintf(late_peer, sizeof(late_peer), "pf%dw", (int)getpid());
}

static void late_link(bool make)
{
	char *out = NULL;
	int rc;

	late_names();
	if (make)
		rc = h_sh(&out, "set -e; ip link add %1$s netns %3$s type veth peer name %2$s netns %4$s;"
			  " ip -n %3$s addr add 10.78.0.1/24 dev %1$s; ip -n %4$s addr add 10.78.0.2/24 dev %2$s;"
			  " ip -n %3$s link set %1$s up; ip -n %4$s link set %2$s up",
			  late_if, late_peer, h_ns.srv, h_ns.cli);
	else
		rc = h_sh(&out, "ip -n %s link del %s", h_ns.srv, late_if);
	ck_assert_msg(rc == 0, "%s", out);
	free(out);
}

/* Echo backends in the server's namespace, TCP and UDP on one port of 127.0.0.1. */
static unsigned backends_start(struct h_backend *tcp, struct h_backend *udp)
{
	h_netns_enter(h_ns.srv);
	h_backend_start(tcp, H_ECHO, false);
	h_backend_start_on(udp, H_UDP_ECHO, false, tcp->port);
	h_netns_enter(NULL);
	return tcp->port;
}

/* D's configuration: the rule "vpn", tcp+udp on 0.0.0.0:2600 to TARGET,
 * bound to IFNAME unless it is NULL, and "plain" on 0.0.0.0:2601. */
static const char *vpn_conf(char *buf, size_t len, unsigned target, const char *ifname)
{
	char key[64] = "";

	if (ifname)
		snprintf(key, sizeof(key), " interface = \"%s\";", ifname);
	snprintf(buf, len,
		 "defaults: { };\n"
		 "rules: ( { name = \"vpn\"; proto = \"tcp+udp\"; listen = \"0.0.0.0:2600\"; target = \"127.0.0.1:%u\";%s },\n"
		 "         { name = \"plain\"; proto = \"tcp\"; listen = \"0.0.0.0:2601\"; target = \"127.0.0.1:%u\"; } );",
		 target, key, target);
	return buf;
}

/* Only the way in through IFNAME's address reaches "vpn"; the other is
 * refused (TCP) or unanswered (UDP). */
static void assert_only_via(const char *addr, const char *other)
{
	ck_assert_int_eq(tcp_echo_via(h_ns.cli, addr, 2600), 0);
	ck_assert(udp_echo_via(h_ns.cli, addr, 2600));
	ck_assert_int_eq(tcp_echo_via(h_ns.cli, other, 2600), ECONNREFUSED);
	ck_assert(!udp_echo_via(h_ns.cli, other, 2600));
}

/* The late link comes: "vpn" binds and answers through it only; it goes
 * and is made again (a VPN restarted, another index): "vpn" fails, then
 * binds to the new one. */
static void late_cycle(struct hdaemon *d)
{
	late_link(true);
	ck_assert_msg(wait_state(d, "vpn", "listening", 10), "the rule did not bind once its interface came");
	assert_only_via("10.78.0.1", "10.77.0.1");
	late_link(false);
	ck_assert(wait_state(d, "vpn", "failed", 10));
	late_link(true);
	ck_assert(wait_state(d, "vpn", "listening", 10));
	assert_only_via("10.78.0.1", "10.77.0.1");
	late_link(false);
}

/*
 * A rule bound to an interface that is not there yet: a failed bind that
 * says so, retried until the interface comes; then it answers through that
 * interface only. The interface deleted and made again (a VPN restarted)
 * is another index: the rule fails, then binds to the new one.
 */
START_TEST(test_interface_comes_later)
{
	struct h_backend bt, bu;
	struct hdaemon d;
	char conf[1024], want[128], *out;
	json_t *doc, *r;

	if (!h_netns_ready(&h_ns))
		return;
	late_names();
	backends_start(&bt, &bu);
	h_daemon_netns = h_ns.srv;
	h_start(&d, vpn_conf(conf, sizeof(conf), bt.port, late_if));
	h_daemon_netns = NULL;

	r = rule_status(&d, "vpn", &doc);
	ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "failed");
	ck_assert_str_eq(json_string_value(json_object_get(r, "interface")), late_if);
	snprintf(want, sizeof(want), "no such interface %s", late_if);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "tcp"), "error")), want);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "udp"), "error")), want);
	json_decref(doc);
	ck_assert_int_eq(run_ctl(&d, &out, "status", NULL, NULL), 0);
	snprintf(want, sizeof(want), "  interface %s\n  tcp failed: no such interface %s\n", late_if, late_if);
	ck_assert_msg(strstr(out, want), "%s", out);
	free(out);
	snprintf(want, sizeof(want), ": no such interface %s (retrying every 3s)", late_if);
	ck_assert(h_log_contains(&d, want));
	/* The other rule is unaffected. */
	ck_assert_int_eq(tcp_echo_via(h_ns.cli, "10.77.0.1", 2601), 0);
	/* A reload meanwhile: one rule (tcp+udp, both failed) not listening. */
	ck_assert_int_eq(run_ctl(&d, &out, "reload", NULL, NULL), 1);
	ck_assert_msg(strstr(out, "is in force, but 1 rule is not listening (retried every 3s)"), "%s", out);
	free(out);

	late_cycle(&d);
	snprintf(want, sizeof(want), "rule vpn: interface %s went away or was made again: binding its sockets again", late_if);
	ck_assert(h_log_contains(&d, want));
	h_stop(&d);
	h_backend_stop(&bt);
	h_backend_stop(&bu);
}
END_TEST

/* How many lines of D's log have TEXT and not WITHOUT. */
static int log_lines_without(struct hdaemon *d, const char *text, const char *without)
{
	char *buf = NULL, *line, *save = NULL;
	int n = 0;

	ck_assert_int_eq(h_sh(&buf, "cat %s", d->log), 0);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		n += strstr(line, text) && !strstr(line, without);
	free(buf);
	return n;
}

/* A reload that changes, removes and adds a rule's interface rebinds it. */
START_TEST(test_interface_reload)
{
	struct h_backend bt, bu;
	struct hdaemon d;
	char conf[1024], *out;
	int unbound;
	json_t *doc, *r;

	if (!h_netns_ready(&h_ns))
		return;
	late_link(true);
	backends_start(&bt, &bu);
	h_daemon_netns = h_ns.srv;
	h_start(&d, vpn_conf(conf, sizeof(conf), bt.port, late_if));
	h_daemon_netns = NULL;
	ck_assert(wait_state(&d, "vpn", "listening", 5));
	assert_only_via("10.78.0.1", "10.77.0.1");

	/* To the harness's link: a changed rule, bound again there. */
	h_write_conf(&d, vpn_conf(conf, sizeof(conf), bt.port, h_ns.srv_if));
	ck_assert_int_eq(run_ctl(&d, &out, "reload", NULL, NULL), 0);
	ck_assert_msg(strstr(out, "0 added, 0 removed, 1 changed, 1 unchanged"), "%s", out);
	free(out);
	r = rule_status(&d, "vpn", &doc);
	ck_assert_str_eq(json_string_value(json_object_get(r, "interface")), h_ns.srv_if);
	ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "listening");
	json_decref(doc);
	assert_only_via("10.77.0.1", "10.78.0.1");
	ck_assert(h_log_contains(&d, "rule vpn: its interface changed: binding its sockets again"));

	/* None: every interface. */
	h_write_conf(&d, vpn_conf(conf, sizeof(conf), bt.port, NULL));
	ck_assert_int_eq(run_ctl(&d, &out, "reload", NULL, NULL), 0);
	free(out);
	r = rule_status(&d, "vpn", &doc);
	ck_assert(json_is_null(json_object_get(r, "interface")));
	json_decref(doc);
	ck_assert_int_eq(tcp_echo_via(h_ns.cli, "10.77.0.1", 2600), 0);
	ck_assert_int_eq(tcp_echo_via(h_ns.cli, "10.78.0.1", 2600), 0);
	ck_assert(udp_echo_via(h_ns.cli, "10.77.0.1", 2600));
	ck_assert(udp_echo_via(h_ns.cli, "10.78.0.1", 2600));

	/* And back, on a disabled rule (a reload enables it): it opens bound
	 * to the new interface only, never for a moment on every interface
	 * as it was before it was disabled. `rules` shows it. */
	ck_assert_int_eq(run_ctl(&d, &out, "disable", "vpn", NULL), 0);
	free(out);
	unbound = log_lines_without(&d, "rule vpn: listening on tcp 0.0.0.0:2600 (", ", interface ");
	ck_assert_int_ge(unbound, 1);
	h_write_conf(&d, vpn_conf(conf, sizeof(conf), bt.port, late_if));
	ck_assert_int_eq(run_ctl(&d, &out, "reload", NULL, NULL), 0);
	free(out);
	assert_only_via("10.78.0.1", "10.77.0.1");
	ck_assert_int_eq(log_lines_without(&d, "rule vpn: listening on tcp 0.0.0.0:2600 (", ", interface "), unbound);
	ck_assert_int_eq(log_lines_without(&d, "rule vpn: listening on udp 0.0.0.0:2600 (", ", interface "), unbound);
	ck_assert_int_eq(run_ctl(&d, &out, "rules", NULL, NULL), 0);
	ck_assert_msg(strstr(out, "  interface pf"), "%s", out);
	free(out);
	late_link(false);
	h_stop(&d);
	h_backend_stop(&bt);
	h_backend_stop(&bu);
}
END_TEST

/* `portfwdctl check` of rules "v4" (0.0.0.0) and "v6" ([::]) to ssh, both
 * bound to the server's link: the names of the rules warned about. */
static void warned_rules(struct hdaemon *d, char *names, size_t len)
{
	char path[320], *out = NULL;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/check.conf", d->dir);
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fprintf(fp, "rules: ( { name = \"v4\"; proto = \"tcp\"; listen = \"0.0.0.0:2610\"; target = \"192.168.0.2:22\"; interface = \"%s\"; },\n"
		    "         { name = \"v6\"; proto = \"tcp\"; listen = \"[::]:2611\"; target = \"192.168.0.2:22\"; interface = \"%s\"; } );\n",
		h_ns.srv_if, h_ns.srv_if);
	fclose(fp);
	ck_assert_int_eq(run_ctl(d, &out, "check", path, NULL), 0);
	names[0] = '\0';
	if (strstr(out, "rule \"v4\": forwards to port 22"))
		snprintf(names + strlen(names), len - strlen(names), "v4 ");
	if (strstr(out, "rule \"v6\": forwards to port 22"))
		snprintf(names + strlen(names), len - strlen(names), "v6 ");
	if (names[0])
		ck_assert_msg(strstr(out, "which carries the"), "%s", out);
	free(out);
}

/*
 * The daemon asks the kernel (rtnetlink) which interface carries the
 * default route, per family and in the main table only: the server's link
 * with no default route is a LAN (quiet); given the IPv4 default route, the
 * IPv4 rule bound to it is warned about, the IPv6 one not; an IPv6 default
 * route in a table of its own (wg-quick's full tunnel) changes nothing; in
 * the main table it does.
 */
START_TEST(test_interface_warning_follows_the_default_route)
{
	struct hdaemon d;
	char names[16], *out = NULL;

	if (!h_netns_ready(&h_ns))
		return;
	h_daemon_netns = h_ns.srv;
	h_start(&d, "rules: ( );");
	h_daemon_netns = NULL;
	warned_rules(&d, names, sizeof(names));
	ck_assert_str_eq(names, "");
	ck_assert_int_eq(h_sh(&out, "ip -n %s route add default via 10.77.0.2 dev %s", h_ns.srv, h_ns.srv_if), 0);
	free(out);
	warned_rules(&d, names, sizeof(names));
	ck_assert_str_eq(names, "v4 ");
	ck_assert_int_eq(h_sh(&out, "ip -n %s -6 route add default dev %s table 51820", h_ns.srv, h_ns.srv_if), 0);
	free(out);
	warned_rules(&d, names, sizeof(names));
	ck_assert_str_eq(names, "v4 ");
	ck_assert_int_eq(h_sh(&out, "ip -n %s -6 route add default via fd77::2 dev %s", h_ns.srv, h_ns.srv_if), 0);
	free(out);
	warned_rules(&d, names, sizeof(names));
	ck_assert_str_eq(names, "v4 v6 ");
	h_sh(&out, "ip -n %1$s route del default; ip -n %1$s -6 route del default; ip -n %1$s -6 route del default table 51820",
	     h_ns.srv);
	free(out);
	h_stop(&d);
}
END_TEST

/* The value of CapEff for PID, from /proc. */
static char *cap_eff(pid_t pid)
{
	char *out = NULL;

	ck_assert_int_eq(h_sh(&out, "sed -n 's/^CapEff:\\t//p' /proc/%d/status", (int)pid), 0);
	out[strcspn(out, "\n")] = '\0';
	return out;
}

/*
 * Started as root with daemon.user: binding to an interface needs no
 * capability on this kernel (5.7 and later; CAP_NET_RAW alone before), so
 * the daemon keeps none, and the binds retried after the drop, when the
 * interface comes and when it is made again, work.
 */
START_TEST(test_interface_after_privilege_drop)
{
	struct h_backend bt, bu;
	struct hdaemon d;
	char conf[1024], *caps;

	if (!h_netns_ready(&h_ns))
		return;
	ck_assert_ptr_nonnull(getpwnam("nobody"));
	late_names();
	backends_start(&bt, &bu);
	h_daemon_extra = "user = \"nobody\";";
	h_dir_mode = 0777;
	h_daemon_netns = h_ns.srv;
	h_start(&d, vpn_conf(conf, sizeof(conf), bt.port, late_if));
	h_daemon_netns = NULL;
	caps = cap_eff(d.pid);
	ck_assert_str_eq(caps, iface_bind_needs_cap() ? "0000000000002000" : "0000000000000000");
	free(caps);
	ck_assert(h_log_contains(&d, iface_bind_needs_cap() ? "keeping only CAP_NET_RAW" : "with no capabilities"));

	late_cycle(&d);
	h_stop(&d);
	h_daemon_extra = NULL;
	h_dir_mode = 0;
	h_backend_stop(&bt);
	h_backend_stop(&bu);
}
END_TEST

/* The warnings of `check FILE --json` of D's own file, in *DOC (json_decref
 * it), after asserting the reply is JSON. */
static json_t *check_warnings(struct hdaemon *d, json_t **doc)
{
	char *out;

	ck_assert_int_eq(run_ctl(d, &out, "check", d->conf, "--json"), 0);
	*doc = json_loads(out, 0, NULL);
	ck_assert_msg(*doc != NULL, "%s", out);
	free(out);
	return json_object_get(*doc, "warnings");
}

/* The warnings logged at start and after a reload, in check and reload
 * replies (text and JSON), and in status next to their rule. */
START_TEST(test_warnings_in_replies_log_and_status)
{
	static const char *const body =
		"defaults: { };\n"
		"rules: ( { name = \"ssh\"; proto = \"tcp\"; listen = \"0.0.0.0:2222\"; target = \"127.0.0.1:22\"; },\n"
		"         { name = \"web\"; proto = \"tcp\"; listen = \"127.0.0.1:8080\"; target = \"127.0.0.1:80\"; }%s );";
	struct hdaemon d;
	char conf[1024], want[2048], *out;
	json_t *doc, *r, *w;

	if (!h_netns_ready(&h_ns))
		return;
	snprintf(conf, sizeof(conf), body, "");
	h_daemon_netns = h_ns.srv;
	h_start(&d, conf);
	h_daemon_netns = NULL;
	snprintf(want, sizeof(want), "%s:3: warning: rule \"ssh\": " SSH_WARNING, d.conf);
	ck_assert(h_log_contains(&d, want));

	/* status: under the rule, and in its JSON. */
	ck_assert_int_eq(run_ctl(&d, &out, "status", NULL, NULL), 0);
	ck_assert_msg(strstr(out, "\nssh  tcp  0.0.0.0:2222 (registered) -> 127.0.0.1:22 (ssh, well-known)  listening\n  warning: " SSH_WARNING "\n"), "%s", out);
	ck_assert_msg(!strstr(out, "\n  interface "), "%s", out);
	free(out);
	r = rule_status(&d, "ssh", &doc);
	w = json_object_get(r, "warnings");
	ck_assert_int_eq(json_array_size(w), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 0), "level")), "warning");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 0), "rule")), "ssh");
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(w, 0), "line")), 3);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 0), "message")), SSH_WARNING);
	ck_assert(json_is_null(json_object_get(r, "interface")));
	json_decref(doc);
	r = rule_status(&d, "web", &doc);
	ck_assert_int_eq(json_array_size(json_object_get(r, "warnings")), 0);
	json_decref(doc);

	/* A rule with a public target comes: check says so, not applying it. */
	snprintf(conf, sizeof(conf), body,
		 ",\n         { name = \"out\"; proto = \"tcp\"; listen = \"127.0.0.1:8443\"; target = \"198.51.100.7:443\"; }");
	h_write_conf(&d, conf);
	ck_assert_int_eq(run_ctl(&d, &out, "check", NULL, NULL), 0);
	snprintf(want, sizeof(want), "%s:3: warning: rule \"ssh\": " SSH_WARNING "\n%s:5: note: rule \"out\": " OUT_NOTE
		 "\ncheck: 1 added, 0 removed, 0 changed, 2 unchanged (not applied)\n", d.conf, d.conf);
	ck_assert_msg(strstr(out, want), "%s", out);
	free(out);
	/* A file the client sends: named as the client gave it. */
	w = check_warnings(&d, &doc);
	ck_assert_int_eq(json_array_size(w), 2);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 1), "level")), "note");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 1), "rule")), "out");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 1), "message")), OUT_NOTE);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "result")), "ok");
	json_decref(doc);

	/* reload: the warnings in the reply and the log; still a success. */
	ck_assert_int_eq(run_ctl(&d, &out, "reload", NULL, NULL), 0);
	snprintf(want, sizeof(want), "%s:5: note: rule \"out\": " OUT_NOTE "\nreload: 1 added", d.conf);
	ck_assert_msg(strstr(out, want), "%s", out);
	free(out);
	snprintf(want, sizeof(want), "%s:5: note: rule \"out\": " OUT_NOTE, d.conf);
	ck_assert(h_wait_log(&d, want, 5));
	ck_assert_int_eq(run_ctl(&d, &out, "reload", "--json", NULL), 0);
	doc = json_loads(out, 0, NULL);
	ck_assert_int_eq(json_array_size(json_object_get(doc, "warnings")), 2);
	json_decref(doc);
	free(out);
	ck_assert_int_eq(run_ctl(&d, &out, "status", NULL, NULL), 0);
	ck_assert_msg(strstr(out, " -> 198.51.100.7:443 (https, well-known)  listening\n  note: " OUT_NOTE "\n"), "%s", out);
	free(out);
	h_stop(&d);
}
END_TEST

/* ---- advice about ports and targets ---- */

/* The first unsigned number in PATH, or DFLT when it cannot be read. */
static unsigned read_setting(const char *path, unsigned dflt, unsigned *second)
{
	FILE *fp = fopen(path, "r");
	unsigned a = dflt, b = dflt;

	if (fp) {
		if (fscanf(fp, "%u %u", &a, &b) < 1)
			a = dflt;
		fclose(fp);
	}
	if (second)
		*second = b;
	return a;
}

/* True if PORT is in this machine's ip_local_reserved_ports. */
static bool reserved_here(unsigned port)
{
	char *out = NULL;
	bool yes = false;

	/* The list as the kernel writes it: "8080,9148-9150". */
	ck_assert_int_eq(h_sh(&out, "cat /proc/sys/net/ipv4/ip_local_reserved_ports"), 0);
	for (char *p = out; *p && *p != '\n';) {
		unsigned lo = (unsigned)strtoul(p, &p, 10), hi = lo;

		if (*p == '-')
			hi = (unsigned)strtoul(p + 1, &p, 10);
		yes |= port >= lo && port <= hi;
		if (*p != ',')
			break;
		p++;
	}
	free(out);
	return yes;
}

/*
 * `portfwd -t` against this machine's real ephemeral range, read here: a
 * port inside it (not reserved) is warned about, naming the range; one just
 * outside is not; --strict fails on it.
 */
START_TEST(test_ephemeral_port_real_range)
{
	unsigned lo, hi, inside, outside, unpriv = read_setting("/proc/sys/net/ipv4/ip_unprivileged_port_start", 1024, NULL);
	struct hdaemon d;
	char body[1024], want[512], *out;

	lo = read_setting("/proc/sys/net/ipv4/ip_local_port_range", 0, &hi);
	ck_assert_msg(lo >= 1 && lo <= hi && hi <= 65535, "cannot read ip_local_port_range");
	for (inside = lo + (hi - lo) / 2; inside <= hi && reserved_here(inside); inside++)
		;
	ck_assert_msg(inside <= hi, "every port of %u-%u is reserved", lo, hi);
	/* Just outside, on whichever side leaves a port that needs no privilege. */
	outside = lo - 1 >= unpriv && lo > 1 ? lo - 1 : hi + 1;
	if (outside > 65535 || outside < unpriv) {
		fprintf(stderr, "test_ephemeral_port_real_range: skipped (no unprivileged port outside %u-%u)\n",
			lo, hi);
		return;
	}
	snprintf(body, sizeof(body),
		 "defaults: { };\n"
		 "rules: ( { name = \"inside\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; },\n"
		 "         { name = \"outside\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );",
		 inside, outside);
	h_prepare(&d, body);
	ck_assert_int_eq(check_file(&out, d.conf, false), 0);
	snprintf(want, sizeof(want),
		 "%s:3: warning: rule \"inside\": listen port %u may collide with outgoing connections (the kernel hands ports %u-%u to them, net.ipv4.ip_local_port_range)",
		 d.conf, inside, lo, hi);
	ck_assert_msg(strstr(out, want), "%s", out);
	ck_assert_msg(!strstr(out, "rule \"outside\""), "%s", out);
	snprintf(want, sizeof(want), "%s: configuration is valid, 2 rules, 1 warning\n", d.conf);
	ck_assert_msg(strstr(out, want), "%s", out);
	free(out);
	ck_assert_int_eq(check_file(&out, d.conf, true), 3);
	free(out);
	h_cleanup(&d);
}
END_TEST

/* How many times TEXT is in OUT. */
static int log_count_in(const char *out, const char *text)
{
	int n = 0;

	for (const char *p = out; (p = strstr(p, text)); p += strlen(text))
		n++;
	return n;
}

/*
 * A port the kernel handed out itself (h_free_port binds port 0) is in its
 * ephemeral range: the daemon's start log, status and check (text and
 * JSON) carry the warning, as -t does.
 */
START_TEST(test_ephemeral_port_in_log_status_check)
{
	unsigned port = h_free_port(SOCK_STREAM, false), lo, hi;
	struct hdaemon d;
	char body[512], want[512], *out;
	json_t *doc, *r, *w;

	lo = read_setting("/proc/sys/net/ipv4/ip_local_port_range", 0, &hi);
	ck_assert_msg(port >= lo && port <= hi, "port %u from bind(0) is outside %u-%u", port, lo, hi);
	snprintf(body, sizeof(body),
		 "defaults: { };\n"
		 "rules: ( { name = \"eph\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );",
		 port);
	h_start(&d, body);
	snprintf(want, sizeof(want),
		 "listen port %u may collide with outgoing connections (the kernel hands ports %u-%u to them, net.ipv4.ip_local_port_range)",
		 port, lo, hi);
	ck_assert(h_log_contains(&d, want));
	r = rule_status(&d, "eph", &doc);
	w = json_object_get(r, "warnings");
	ck_assert_int_eq(json_array_size(w), 1);
	ck_assert_msg(strstr(json_string_value(json_object_get(json_array_get(w, 0), "message")), want), "%s", want);
	json_decref(doc);
	ck_assert_int_eq(run_ctl(&d, &out, "status", NULL, NULL), 0);
	ck_assert_msg(strstr(out, "\n  warning: ") && strstr(out, want), "%s", out);
	free(out);
	ck_assert_int_eq(run_ctl(&d, &out, "check", NULL, NULL), 0);
	ck_assert_msg(strstr(out, want), "%s", out);
	free(out);
	w = check_warnings(&d, &doc);
	ck_assert_int_eq(json_array_size(w), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 0), "level")), "warning");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 0), "rule")), "eph");
	json_decref(doc);
	h_stop(&d);
}
END_TEST

/* portfwd -t -c PATH as UID (and its group). */
static int check_file_as(char **out, const char *path, uid_t uid, gid_t gid)
{
	char *argv[] = { (char *)PORTFWD, "-t", "-c", (char *)path, NULL };

	return h_run_as(argv, uid, gid, out);
}

/* A port below ip_unprivileged_port_start, or 0 when none needs privilege here. */
static unsigned privileged_port(void)
{
	unsigned start = read_setting("/proc/sys/net/ipv4/ip_unprivileged_port_start", 1024, NULL);

	return start > 80 ? 80 : start > 1 ? start - 1 : 0;
}

#define LOW_WARNING "binding it needs root or CAP_NET_BIND_SERVICE, which portfwd"

/*
 * A well-known listen port: root may bind it (no warning from -t), unless
 * its bounding set leaves CAP_NET_BIND_SERVICE out; nobody may not (-t says
 * so before any bind fails, naming the user); started as
 * nobody, the daemon logs it at start, shows it in status under the rule,
 * and its check of another file says it does not have the privilege.
 */
START_TEST(test_privileged_port_unprivileged_user)
{
	unsigned port = privileged_port();
	struct passwd *pw = getpwuid(65534);
	struct hdaemon d;
	char body[1024], want[512], who[96], path[320], *out;
	json_t *doc, *r, *w;
	FILE *fp;

	if (geteuid() != 0) {
		fprintf(stderr, "test_privileged_port_unprivileged_user: skipped (needs root)\n");
		return;
	}
	if (!port) {
		fprintf(stderr, "test_privileged_port_unprivileged_user: skipped (ip_unprivileged_port_start lets anyone bind)\n");
		return;
	}
	if (pw)
		snprintf(who, sizeof(who), "running as %s, uid 65534", pw->pw_name);
	else
		snprintf(who, sizeof(who), "running as uid 65534");
	snprintf(body, sizeof(body),
		 "defaults: { };\n"
		 "rules: ( { name = \"web\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );",
		 port);
	h_prepare(&d, body);
	chmod(d.dir, 0755);
	chmod(d.conf, 0644);
	ck_assert_int_eq(check_file(&out, d.conf, false), 0);
	/* Root: no warning, unless this root lacks the capability itself (CI in
	 * a container). */
	if (privs_can_bind_low())
		ck_assert_msg(!strstr(out, LOW_WARNING), "%s", out);
	free(out);
	/* Root whose bounding set leaves the capability out (a container): warned. */
	if (access("/usr/bin/setpriv", X_OK) == 0) {
		char *argv[] = { "/usr/bin/setpriv", "--bounding-set", "-net_bind_service", (char *)PORTFWD,
				 "-t", "-c", d.conf, NULL };

		ck_assert_int_eq(h_run(argv, &out), 0);
		ck_assert_msg(strstr(out, LOW_WARNING " will not have (running as root, uid 0, without the capability); give the capability back"),
			      "%s", out);
		free(out);
	}
	ck_assert_int_eq(check_file_as(&out, d.conf, 65534, 65534), 0);
	snprintf(want, sizeof(want), "%s:3: warning: rule \"web\": listen port %u is ", d.conf, port);
	ck_assert_msg(strstr(out, want), "%s", out);
	snprintf(want, sizeof(want), LOW_WARNING " will not have (%s); start it as root with daemon.user set", who);
	ck_assert_msg(strstr(out, want), "%s", out);
	if (port == 80)
		ck_assert_msg(strstr(out, "listen port 80 is well-known (below 1024): "), "%s", out);
	free(out);
	h_cleanup(&d);

	/* The daemon as nobody: the warning in the log and in status; its rule failed. */
	h_start_as(&d, body, 65534, 65534);
	ck_assert(h_log_contains(&d, want));
	r = rule_status(&d, "web", &doc);
	ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "failed");
	w = json_object_get(r, "warnings");
	ck_assert_int_eq(json_array_size(w), 1);
	ck_assert_msg(strstr(json_string_value(json_object_get(json_array_get(w, 0), "message")), want),
		      "%s", json_string_value(json_object_get(json_array_get(w, 0), "message")));
	json_decref(doc);
	/* Its check of a file: its own privileges now ("does not have"). */
	snprintf(path, sizeof(path), "%s/check.conf", d.dir);
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fprintf(fp, "rules: ( { name = \"low\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );\n", port);
	fclose(fp);
	ck_assert_int_eq(run_ctl(&d, &out, "check", path, "--json"), 0);
	doc = json_loads(out, 0, NULL);
	ck_assert_msg(doc != NULL, "%s", out);
	w = json_object_get(doc, "warnings");
	ck_assert_int_eq(json_array_size(w), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 0), "rule")), "low");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 0), "level")), "warning");
	snprintf(want, sizeof(want), LOW_WARNING " does not have (%s); restart it as root", who);
	ck_assert_msg(strstr(json_string_value(json_object_get(json_array_get(w, 0), "message")), want), "%s", out);
	json_decref(doc);
	free(out);
	/* Reloaded with that rule too: the warning in the reply and the log,
	 * beside the bind that failed. */
	snprintf(body, sizeof(body),
		 "defaults: { };\n"
		 "rules: ( { name = \"web\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; },\n"
		 "         { name = \"low\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );",
		 port, port);
	h_write_conf(&d, body);
	ck_assert_int_eq(run_ctl(&d, &out, "reload", NULL, NULL), 1);
	ck_assert_msg(strstr(out, "rule \"low\": listen port") && strstr(out, want), "%s", out);
	ck_assert_msg(strstr(out, "rule low: cannot listen on udp: permission denied"), "%s", out);
	free(out);
	snprintf(want, sizeof(want), "%s:4: warning: rule \"low\": listen port %u is ", d.conf, port);
	ck_assert(h_wait_log(&d, want, 5));
	h_stop(&d);
}
END_TEST

/*
 * Started as root with daemon.user: a rule on a well-known port is bound
 * before the drop and the capability kept (no warning anywhere); started
 * with none, it keeps no capability, and its check of a file that adds one
 * says that a restart is what binds it.
 */
START_TEST(test_privileged_port_after_drop)
{
	unsigned port = privileged_port(), free_port = h_free_port(SOCK_STREAM, false);
	struct hdaemon d;
	char body[1024], path[320], *out;
	FILE *fp;

	if (geteuid() != 0 || !port) {
		fprintf(stderr, "test_privileged_port_after_drop: skipped (needs root and a port that needs privilege)\n");
		return;
	}
	ck_assert_ptr_nonnull(getpwnam("nobody"));
	h_daemon_extra = "user = \"nobody\";";
	h_dir_mode = 0777;
	/* A free port of its own below the threshold is not to be had: bind
	 * port's UDP, which tests rarely hold. */
	snprintf(body, sizeof(body),
		 "defaults: { };\n"
		 "rules: ( { name = \"low\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );",
		 port);
	h_prepare(&d, body);
	ck_assert_int_eq(check_file(&out, d.conf, false), 0);
	ck_assert_msg(!strstr(out, LOW_WARNING), "%s", out);
	free(out);
	h_cleanup(&d);
	h_start(&d, body);
	ck_assert(h_log_contains(&d, "keeping only CAP_NET_BIND_SERVICE"));
	ck_assert(!h_log_contains(&d, LOW_WARNING));
	snprintf(path, sizeof(path), "%s/check.conf", d.dir);
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fprintf(fp, "rules: ( { name = \"low\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; },\n"
		    "         { name = \"low2\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );\n",
		port, port);
	fclose(fp);
	ck_assert_int_eq(run_ctl(&d, &out, "check", path, NULL), 0);
	ck_assert_msg(!strstr(out, LOW_WARNING), "%s", out);
	free(out);
	h_stop(&d);

	/* No rule that needs it at start: given up with root. */
	snprintf(body, sizeof(body),
		 "defaults: { };\n"
		 "rules: ( { name = \"high\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );",
		 free_port);
	h_start(&d, body);
	ck_assert(h_log_contains(&d, "with no capabilities"));
	snprintf(path, sizeof(path), "%s/check.conf", d.dir);
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fprintf(fp, "rules: ( { name = \"high\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; },\n"
		    "         { name = \"low\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );\n",
		free_port, port);
	fclose(fp);
	ck_assert_int_eq(run_ctl(&d, &out, "check", path, NULL), 0);
	ck_assert_msg(strstr(out, LOW_WARNING " does not have (running as nobody, uid 65534, since it gave root up at start with no rule that needed the capability); restart it (as root, it binds this port before giving root up)"),
		      "%s", out);
	ck_assert_msg(strstr(out, "rule \"low\": listen port"), "%s", out);
	/* (high's port, from the ephemeral range, may have a warning of its own.) */
	ck_assert_int_eq(log_count_in(out, LOW_WARNING), 1);
	free(out);
	h_stop(&d);
	h_daemon_extra = NULL;
	h_dir_mode = 0;
}
END_TEST

#define PUBLIC_WARNING \
	"target 198.51.100.8:443 is a public address, on none of this host's networks: what reaches 0.0.0.0:8444 goes out to the internet, and whoever reaches this host reaches that one through it; router-style forwarding goes to a machine on the LAN, whose address is private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7): check the address for a slip (loopback, private and link-local targets, and those on this host's networks or routes of their own, are fine)"

/*
 * In the test's namespace (its own networks only): `portfwdctl check` of a
 * file with a rule that forwards every address's port to a public address
 * says so (text and JSON), a rule to a LAN address or on loopback does not
 * warn; after the reload, the log and status carry it.
 */
START_TEST(test_public_target_through_check)
{
	struct hdaemon d;
	char body[1024], want[1024], *out;
	json_t *doc, *r, *w;

	if (!h_netns_ready(&h_ns))
		return;
	h_daemon_netns = h_ns.srv;
	h_start(&d, "defaults: { };\nrules: ( { name = \"lan\"; proto = \"tcp\"; listen = \"0.0.0.0:8445\"; target = \"10.77.0.9:443\"; } );");
	h_daemon_netns = NULL;
	ck_assert(!h_log_contains(&d, "public address"));
	snprintf(body, sizeof(body),
		 "defaults: { };\n"
		 "rules: ( { name = \"lan\"; proto = \"tcp\"; listen = \"0.0.0.0:8445\"; target = \"10.77.0.9:443\"; },\n"
		 "         { name = \"relay\"; proto = \"tcp\"; listen = \"0.0.0.0:8444\"; target = \"198.51.100.8:443\"; },\n"
		 "         { name = \"onlink\"; proto = \"tcp\"; listen = \"0.0.0.0:8446\"; target = \"[fd77::9]:443\"; },\n"
		 "         { name = \"pubnet\"; proto = \"tcp\"; listen = \"0.0.0.0:8447\"; target = \"192.0.2.9:443\"; },\n"
		 "         { name = \"routed\"; proto = \"tcp\"; listen = \"0.0.0.0:8448\"; target = \"203.0.113.7:443\"; } );");
	h_write_conf(&d, body);
	/* A public network on the daemon's own link, and one it has a route
	 * of its own to (through the other namespace): the LAN, no warning. */
	ck_assert_int_eq(h_sh(&out, "ip -n %1$s addr add 192.0.2.1/24 dev %2$s && ip -n %1$s route add 203.0.113.0/24 via 10.77.0.2",
			      h_ns.srv, h_ns.srv_if), 0);
	free(out);
	/* The internet by a default route, and by the halves a VPN client
	 * installs to take everything: neither makes "relay" the LAN. */
	ck_assert_int_eq(h_sh(&out, "ip -n %1$s route add default via 10.77.0.2 && ip -n %1$s route add 0.0.0.0/1 via 10.77.0.2 && ip -n %1$s route add 128.0.0.0/1 via 10.77.0.2",
			      h_ns.srv), 0);
	free(out);
	ck_assert_int_eq(run_ctl(&d, &out, "check", NULL, NULL), 0);
	snprintf(want, sizeof(want), "%s:4: warning: rule \"relay\": " PUBLIC_WARNING "\n", d.conf);
	ck_assert_msg(strstr(out, want), "%s", out);
	ck_assert_msg(!strstr(out, "rule \"lan\"") && !strstr(out, "rule \"onlink\"") &&
			      !strstr(out, "rule \"pubnet\"") && !strstr(out, "rule \"routed\""),
		      "%s", out);
	free(out);
	w = check_warnings(&d, &doc);
	ck_assert_int_eq(json_array_size(w), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 0), "rule")), "relay");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 0), "level")), "warning");
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(w, 0), "line")), 4);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 0), "message")), PUBLIC_WARNING);
	json_decref(doc);
	/* Applied: the log and status. */
	ck_assert_int_eq(run_ctl(&d, &out, "reload", NULL, NULL), 0);
	free(out);
	snprintf(want, sizeof(want), "%s:4: warning: rule \"relay\": " PUBLIC_WARNING, d.conf);
	ck_assert(h_wait_log(&d, want, 5));
	r = rule_status(&d, "relay", &doc);
	w = json_object_get(r, "warnings");
	ck_assert_int_eq(json_array_size(w), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(w, 0), "message")), PUBLIC_WARNING);
	json_decref(doc);
	ck_assert_int_eq(run_ctl(&d, &out, "status", NULL, NULL), 0);
	ck_assert_msg(strstr(out, " -> 198.51.100.8:443 (https, well-known)  listening\n  warning: " PUBLIC_WARNING "\n"), "%s", out);
	free(out);
	/* Without the route, the routed target is warned about too. */
	ck_assert_int_eq(h_sh(&out, "ip -n %s route del 203.0.113.0/24", h_ns.srv), 0);
	free(out);
	ck_assert_int_eq(run_ctl(&d, &out, "check", NULL, NULL), 0);
	ck_assert_msg(strstr(out, "rule \"routed\": target 203.0.113.7:443 is a public address"), "%s", out);
	ck_assert_msg(!strstr(out, "rule \"pubnet\""), "%s", out);
	free(out);
	ck_assert_int_eq(h_sh(&out, "ip -n %1$s addr del 192.0.2.1/24 dev %2$s && ip -n %1$s route del default && ip -n %1$s route del 0.0.0.0/1 && ip -n %1$s route del 128.0.0.0/1",
			      h_ns.srv, h_ns.srv_if), 0);
	free(out);
	h_stop(&d);
}
END_TEST

/*
 * Root whose bounding set leaves CAP_NET_BIND_SERVICE out, with
 * daemon.user: the daemon starts all the same (it cannot keep what it has
 * not got), says so, and its rule on a well-known port fails while the
 * others listen.
 */
START_TEST(test_root_without_capability_drops)
{
	unsigned port = privileged_port(), high = h_free_port(SOCK_STREAM, false);
	char wrapper[] = "/tmp/portfwd-setpriv-XXXXXX", body[512], *saved;
	struct hdaemon d;
	FILE *fp;
	int fd;

	if (geteuid() != 0 || !port || access("/usr/bin/setpriv", X_OK) != 0) {
		fprintf(stderr, "test_root_without_capability_drops: skipped (needs root, a privileged port and setpriv)\n");
		return;
	}
	fd = mkstemp(wrapper);
	ck_assert_int_ge(fd, 0);
	fp = fdopen(fd, "w");
	ck_assert_ptr_nonnull(fp);
	fprintf(fp, "#!/bin/sh\nexec /usr/bin/setpriv --bounding-set -net_bind_service '%s' \"$@\"\n", PORTFWD);
	fclose(fp);
	chmod(wrapper, 0755);
	saved = strdup(PORTFWD);
	setenv("PORTFWD_BIN", wrapper, 1);
	snprintf(body, sizeof(body),
		 "defaults: { };\n"
		 "rules: ( { name = \"low\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; },\n"
		 "         { name = \"high\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );",
		 port, high);
	h_daemon_extra = "user = \"nobody\";";
	h_dir_mode = 0777;
	h_start(&d, body);
	h_daemon_extra = NULL;
	h_dir_mode = 0;
	setenv("PORTFWD_BIN", saved, 1);
	free(saved);
	unlink(wrapper);
	ck_assert(h_log_contains(&d, "started as root without CAP_NET_BIND_SERVICE: it cannot be kept for user nobody"));
	ck_assert(h_log_contains(&d, "running as user nobody"));
	ck_assert(wait_state(&d, "high", "listening", 5));
	ck_assert(wait_state(&d, "low", "failed", 5));
	/* Its check says why, and that a restart would not help. */
	{
		char *out;

		ck_assert_int_eq(run_ctl(&d, &out, "check", NULL, NULL), 0);
		ck_assert_msg(strstr(out, "which portfwd does not have (running as nobody, uid 65534, since it started as root without the capability); give the capability back"),
			      "%s", out);
		free(out);
	}
	h_stop(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("expose");
	TCase *tc = tcase_create("expose");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_check_flag_warnings);
	tcase_add_test(tc, test_ephemeral_port_real_range);
	tcase_add_test(tc, test_ephemeral_port_in_log_status_check);
	tcase_add_test(tc, test_privileged_port_unprivileged_user);
	tcase_add_test(tc, test_privileged_port_after_drop);
	suite_add_tcase(s, tc);

	tc = h_netns_tcase();
	tcase_add_test(tc, test_warnings_in_replies_log_and_status);
	tcase_add_test(tc, test_interface_comes_later);
	tcase_add_test(tc, test_interface_reload);
	tcase_add_test(tc, test_interface_warning_follows_the_default_route);
	tcase_add_test(tc, test_interface_after_privilege_drop);
	tcase_add_test(tc, test_public_target_through_check);
	tcase_add_test(tc, test_root_without_capability_drops);
	suite_add_tcase(s, tc);
	return check_run(s);
}
