/*
 * The home router maps the ports (router = pcp | natpmp | upnp | auto),
 * against a real router: miniupnpd on nftables in a namespace between a
 * WAN client and the LAN host that runs portfwd (tests/routerns.h).
 *
 * For each protocol: the WAN client cannot reach the service before
 * portfwd starts; it can (bytes checked, TCP and UDP) once portfwd mapped
 * the ports; status shows the mapping; it is renewed; it goes when the
 * rule is disabled and comes back when enabled; a router restart that
 * forgot it is noticed and the mapping comes back; a reload that removes
 * a rule removes its mapping; and nothing is left when portfwd stops.
 * Then: auto's order and memory, a range with external_port, the work
 * after the privilege drop, and the carrier-grade NAT warning.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check_run.h"
#include "harness.h"
#include "routerns.h"

/* The listen ports (the LAN namespace is the tests' own). */
/*
 * Below the kernel's ephemeral range (32768-60999): while rule t is
 * disabled, a connection of the test's own (the UPnP client's SOAP
 * requests) could otherwise take 40022 as its local port and its
 * TIME_WAIT keep "enable t" from binding for a minute (seen under TSan).
 */
#define TCP_PORT 20022
#define UDP_PORT 20053
#define STR_(x) #x
#define STR(x) STR_(x)

/* Echo backends on the LAN host's loopback: reachable through portfwd only. */
static void lan_backends(struct h_backend *tcp, struct h_backend *udp)
{
	h_netns_enter(h_rt.lan);
	h_backend_start_at(tcp, H_ECHO, "127.0.0.1", 0);
	h_backend_start_at(udp, H_UDP_ECHO, "127.0.0.1", 0);
	h_netns_enter(NULL);
}

/* portfwd on the LAN host with BODY (rules = ...). */
static void lan_portfwd(struct hdaemon *d, const char *body)
{
	h_daemon_netns = h_rt.lan;
	h_start(d, body);
	h_daemon_netns = NULL;
}

/* The rule NAME's "router" object in status --json (a new reference). */
static json_t *router_of(struct hdaemon *d, const char *name)
{
	json_t *doc = h_status(d), *rules = json_object_get(doc, "rules"), *r, *out = NULL;
	size_t i;

	json_array_foreach(rules, i, r)
		if (strcmp(json_string_value(json_object_get(r, "name")), name) == 0)
			out = json_incref(json_object_get(r, "router"));
	json_decref(doc);
	ck_assert_msg(out != NULL, "no rule %s in status", name);
	return out;
}

static long long router_num(struct hdaemon *d, const char *name, const char *key)
{
	json_t *o = router_of(d, name);
	long long v = json_integer_value(json_object_get(o, key));

	json_decref(o);
	return v;
}

/* Waits (bounded) until rule NAME's router state is WANT. */
static bool wait_state(struct hdaemon *d, const char *name, const char *want, double seconds)
{
	double end = h_now() + seconds;

	for (;;) {
		json_t *o = router_of(d, name);
		bool ok = json_string_value(json_object_get(o, "state")) &&
			  strcmp(json_string_value(json_object_get(o, "state")), want) == 0;

		json_decref(o);
		if (ok)
			return true;
		if (h_now() > end)
			return false;
		usleep(100000);
	}
}

static void assert_closed(const char *proto, unsigned port)
{
	ck_assert_msg(!h_router_wan_exchange(&h_rt, proto, port, 2), "%s %u reached the LAN unmapped", proto, port);
	ck_assert_msg(!h_router_has_mapping(&h_rt, proto, port), "%s %u mapped", proto, port);
}

/* The router forwards EXT to the LAN host's PORT, and the echo comes back whole. */
static void assert_open(const char *proto, unsigned ext, unsigned port)
{
	char to[64], want[64];

	double end = h_now() + 15;

	/* miniupnpd puts a mapping it is asked for again back in its ruleset,
	 * which takes it away for a moment: looked at until it is there. */
	while (h_router_mapping(&h_rt, proto, ext, to, sizeof(to)) != 1) {
		ck_assert_msg(h_now() < end, "%s %u never mapped: %s", proto, ext, h_rt.why);
		usleep(50000);
	}
	snprintf(want, sizeof(want), "%s:%u", h_rt.lan_addr, port);
	ck_assert_str_eq(to, want);
	ck_assert_msg(h_router_wan_exchange(&h_rt, proto, ext, 10), "%s %u: %s", proto, ext, h_rt.why);
}

/* portfwd stops and leaves nothing on the router; the rest stops too. */
static void lan_finish(struct hdaemon *d, struct h_backend *tcp, struct h_backend *udp)
{
	h_stop(d);
	ck_assert_int_eq(h_router_mapping_count(&h_rt), 0);
	h_backend_stop(tcp);
	h_backend_stop(udp);
	h_router_stop(&h_rt, false);
}

static void start_router(void)
{
	ck_assert_msg(h_router_start(&h_rt), "%s", h_rt.why);
}

static int ctl(struct hdaemon *d, const char *cmd)
{
	bool ok;
	char *out = h_ctl(d->sock, cmd, &ok);

	if (!ok)
		fprintf(stderr, "portfwdctl %s: %s", cmd, out ? out : "(no answer)\n");
	free(out);
	return ok ? 0 : 1;
}

/*
 * The whole life of a mapping with METHOD ("pcp", "natpmp", "upnp"); the
 * log line a router restart leaves is RESTART.
 */
static void mapping_life(const char *method, const char *restart)
{
	struct hdaemon d;
	struct h_backend tcp, udp;
	char body[1024], *text;
	json_t *o;
	double t0, took;
	long long renewals, expires;
	bool ok;

	if (!h_router_ready(&h_rt))
		return;
	start_router();
	lan_backends(&tcp, &udp);
	/* Nothing reaches the LAN before portfwd. */
	assert_closed("tcp", TCP_PORT);
	assert_closed("udp", UDP_PORT);

	snprintf(body, sizeof(body),
		 "rules = ( { name = \"t\"; proto = \"tcp\"; listen = \"0.0.0.0:%u\"; target = \"127.0.0.1:%u\"; router = \"%s\"; router_lease = 6; },\n"
		 "          { name = \"u\"; proto = \"udp\"; listen = \"0.0.0.0:%u\"; target = \"127.0.0.1:%u\"; router = \"%s\"; router_lease = 6; } );",
		 TCP_PORT, tcp.port, method, UDP_PORT, udp.port, method);
	t0 = h_now();
	lan_portfwd(&d, body);
	ck_assert_msg(h_router_wait_mapping(&h_rt, "tcp", TCP_PORT, true, 15), "tcp never mapped: %s", h_rt.why);
	took = h_now() - t0;
	assert_open("tcp", TCP_PORT, TCP_PORT);
	assert_open("udp", UDP_PORT, UDP_PORT);
	printf("router %s: mapping on the router %.2f s after portfwd started\n", method, took);

	/* What status says. */
	ck_assert(wait_state(&d, "t", "mapped", 5));
	o = router_of(&d, "t");
	ck_assert_str_eq(json_string_value(json_object_get(o, "method")), method);
	ck_assert_str_eq(json_string_value(json_object_get(o, "used")), method);
	ck_assert_str_eq(json_string_value(json_object_get(o, "external_address")), h_rt.wan_addr);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "external_port")), TCP_PORT);
	ck_assert_str_eq(json_string_value(json_object_get(o, "internal_address")), h_rt.lan_addr);
	ck_assert(json_is_null(json_object_get(o, "warning")));
	expires = json_integer_value(json_object_get(o, "expires"));
	ck_assert_msg(expires > time(NULL) && expires <= time(NULL) + 7, "expires %lld", expires);
	json_decref(o);
	text = h_ctl(d.sock, "status", &ok);
	ck_assert_msg(ok && strstr(text, "router ") && strstr(text, ": mapped by "), "%s", text);
	free(text);
	text = h_ctl(d.sock, "metrics", &ok);
	{
		char want[128];

		snprintf(want, sizeof(want), "portfwd_router_mapped{rule=\"t\",method=\"%s\"} 1", method);
		ck_assert_msg(ok && strstr(text, want), "no %s in %s", want, text);
		snprintf(want, sizeof(want), "portfwd_router_protocol{rule=\"t\",protocol=\"%s\"} 1", method);
		ck_assert_msg(strstr(text, want), "no %s in %s", want, text);
	}
	free(text);

	/* Renewed at half the 6 s lease, before it ends: the mapping stays. */
	{
		double end = h_now() + 10;

		while ((renewals = router_num(&d, "t", "renewals")) < 2 && h_now() < end)
			usleep(200000);
	}
	ck_assert_msg(renewals >= 2, "renewals %lld", renewals);
	ck_assert_msg(router_num(&d, "t", "expires") > expires, "the lease did not move");
	ck_assert_msg(h_router_wan_exchange(&h_rt, "tcp", TCP_PORT, 10), "after the renewals: %s", h_rt.why);

	/* Disabled: the mapping goes (the UDP rule's stays); enabled: back. */
	ck_assert_int_eq(ctl(&d, "disable t"), 0);
	ck_assert_msg(h_router_wait_mapping(&h_rt, "tcp", TCP_PORT, false, 10), "still mapped after disable");
	ck_assert(!h_router_wan_exchange(&h_rt, "tcp", TCP_PORT, 1));
	ck_assert(h_router_has_mapping(&h_rt, "udp", UDP_PORT));
	ck_assert(h_log_contains(&d, "router: rule t: tcp port " STR(TCP_PORT) ": mapping deleted"));
	ck_assert_int_eq(ctl(&d, "enable t"), 0);
	assert_open("tcp", TCP_PORT, TCP_PORT);

	/* The router restarts and forgets everything: noticed, mapped again. */
	h_router_stop(&h_rt, true);
	start_router();
	ck_assert(!h_router_has_mapping(&h_rt, "tcp", TCP_PORT));
	t0 = h_now();
	assert_open("tcp", TCP_PORT, TCP_PORT);
	assert_open("udp", UDP_PORT, UDP_PORT);
	printf("router %s: mapped again %.2f s after the router restarted\n", method, h_now() - t0);
	ck_assert_msg(h_wait_log(&d, restart, 5), "no \"%s\" in the log", restart);

	/* A reload without rule u: its mapping is deleted (not left to its
	 * lease), t's stays, its lease now 10 minutes. */
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"t\"; proto = \"tcp\"; listen = \"0.0.0.0:%u\"; target = \"127.0.0.1:%u\"; router = \"%s\"; router_lease = 600; } );",
		 TCP_PORT, tcp.port, method);
	h_write_conf(&d, body);
	ck_assert_int_eq(ctl(&d, "reload"), 0);
	ck_assert_msg(h_wait_log(&d, "router: rule u: udp port " STR(UDP_PORT) ": mapping deleted", 5), "u's mapping not deleted");
	ck_assert(!h_router_has_mapping(&h_rt, "udp", UDP_PORT));
	ck_assert(h_router_wait_mapping(&h_rt, "tcp", TCP_PORT, true, 10));
	ck_assert(wait_state(&d, "t", "mapped", 10));
	ck_assert_int_eq(router_num(&d, "t", "lease"), 600);

	/* portfwd stops: nothing left on the router (a 10-minute lease: deleted). */
	h_stop(&d);
	ck_assert_int_eq(h_router_mapping_count(&h_rt), 0);
	assert_closed("tcp", TCP_PORT);
	h_backend_stop(&tcp);
	h_backend_stop(&udp);
	h_router_stop(&h_rt, false);
}

START_TEST(test_pcp)
{
	mapping_life("pcp", "the router restarted (its PCP epoch went back)");
}
END_TEST

START_TEST(test_natpmp)
{
	mapping_life("natpmp", "the router restarted (its NAT-PMP epoch went back)");
}
END_TEST

START_TEST(test_upnp)
{
	mapping_life("upnp", "the router forgot the mapping");
}
END_TEST

/* auto: PCP first; on a router without NAT-PMP and PCP, UPnP-IGD, which it
 * keeps to for the next mapping. */
START_TEST(test_auto)
{
	struct hdaemon d;
	struct h_backend tcp, udp;
	char body[1024];
	json_t *o;

	if (!h_router_ready(&h_rt))
		return;
	start_router();
	lan_backends(&tcp, &udp);
	snprintf(body, sizeof(body),
		 "defaults: { router = \"auto\"; };\n"
		 "rules = ( { name = \"t\"; proto = \"tcp\"; listen = \"0.0.0.0:%u\"; target = \"127.0.0.1:%u\"; } );",
		 TCP_PORT, tcp.port);
	lan_portfwd(&d, body);
	assert_open("tcp", TCP_PORT, TCP_PORT);
	ck_assert(wait_state(&d, "t", "mapped", 5));
	o = router_of(&d, "t");
	ck_assert_str_eq(json_string_value(json_object_get(o, "method")), "auto");
	ck_assert_str_eq(json_string_value(json_object_get(o, "used")), "pcp");
	json_decref(o);
	h_stop(&d);
	ck_assert_int_eq(h_router_mapping_count(&h_rt), 0);

	/* A router that speaks UPnP-IGD only. */
	h_router_stop(&h_rt, true);
	h_rt.no_natpmp = true;
	start_router();
	snprintf(body, sizeof(body),
		 "defaults: { router = \"auto\"; };\n"
		 "rules = ( { name = \"t\"; proto = \"tcp\"; listen = \"0.0.0.0:%u\"; target = \"127.0.0.1:%u\"; },\n"
		 "          { name = \"u\"; proto = \"udp\"; listen = \"0.0.0.0:%u\"; target = \"127.0.0.1:%u\"; } );",
		 TCP_PORT, tcp.port, UDP_PORT, udp.port);
	lan_portfwd(&d, body);
	assert_open("tcp", TCP_PORT, TCP_PORT);
	assert_open("udp", UDP_PORT, UDP_PORT);
	ck_assert(wait_state(&d, "t", "mapped", 5));
	ck_assert(wait_state(&d, "u", "mapped", 5));
	o = router_of(&d, "u");
	ck_assert_str_eq(json_string_value(json_object_get(o, "used")), "upnp");
	json_decref(o);
	lan_finish(&d, &tcp, &udp);
}
END_TEST

/* A range maps its range, from external_port; and it all works after the
 * daemon gave root up (daemon.user). */
START_TEST(test_range_external_port_unprivileged)
{
	struct hdaemon d;
	struct h_backend tcp, udp;
	char body[1024];
	json_t *o;

	if (!h_router_ready(&h_rt))
		return;
	ck_assert_ptr_nonnull(getpwnam("nobody"));
	start_router();
	lan_backends(&tcp, &udp);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"r\"; proto = \"tcp\"; listen = \"0.0.0.0:21000-21002\"; target = \"127.0.0.1:%u\";\n"
		 "            router = \"natpmp\"; external_port = 51000; } );",
		 tcp.port);
	h_daemon_extra = "user = \"nobody\"; group = \"nogroup\";";
	h_dir_mode = 0777;
	lan_portfwd(&d, body);
	h_daemon_extra = NULL;
	for (unsigned k = 0; k < 3; k++)
		assert_open("tcp", 51000 + k, 21000 + k);
	ck_assert(!h_router_has_mapping(&h_rt, "tcp", 21000));
	ck_assert(wait_state(&d, "r", "mapped", 5));
	o = router_of(&d, "r");
	ck_assert_int_eq(json_integer_value(json_object_get(o, "mapped")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "external_port")), 51000);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "external_port_last")), 51002);
	json_decref(o);
	ck_assert(h_log_contains(&d, "running as user nobody"));
	lan_finish(&d, &tcp, &udp);
}
END_TEST

/* (The ranges of these two tests listen below the ephemeral range: a
 * backend's port inside the range, 41003 once under TSan, made the rule
 * forward to itself and the configuration refused.) */

/* NAT-PMP answers that come late or twice (a router slow to answer, which
 * libnatpmp asks again after 250 ms) do not pass for the next request's:
 * each port of the range gets its own external port. */
START_TEST(test_natpmp_slow_router)
{
	struct hdaemon d;
	struct h_backend tcp, udp;
	char body[1024];
	json_t *o;

	if (!h_router_ready(&h_rt))
		return;
	start_router();
	lan_backends(&tcp, &udp);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"r\"; proto = \"tcp\"; listen = \"0.0.0.0:21000-21003\"; target = \"127.0.0.1:%u\";\n"
		 "            router = \"natpmp\"; external_port = 51000; router_lease = 600; } );",
		 tcp.port);
	/* The router answers nothing for 0.9 s, then everything it was asked. */
	kill(h_rt.miniupnpd, SIGSTOP);
	lan_portfwd(&d, body);
	usleep(900000);
	kill(h_rt.miniupnpd, SIGCONT);
	for (unsigned k = 0; k < 4; k++)
		assert_open("tcp", 51000 + k, 21000 + k);
	ck_assert(wait_state(&d, "r", "mapped", 15));
	o = router_of(&d, "r");
	ck_assert_int_eq(json_integer_value(json_object_get(o, "external_port")), 51000);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "external_port_last")), 51003);
	ck_assert_str_eq(json_string_value(json_object_get(o, "external_address")), h_rt.wan_addr);
	json_decref(o);
	ck_assert(!h_log_contains(&d, "instead"));
	lan_finish(&d, &tcp, &udp);
}
END_TEST

/* A router that stops answering in the middle of a request does not hold
 * portfwd's stop past its bound (5 s for the deletions, 1 more). */
START_TEST(test_stop_with_hung_router)
{
	struct hdaemon d;
	struct h_backend tcp, udp;
	char body[1024];
	double t0, took;

	if (!h_router_ready(&h_rt))
		return;
	start_router();
	lan_backends(&tcp, &udp);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"t\"; proto = \"tcp+udp\"; listen = \"0.0.0.0:%u\"; target = \"127.0.0.1:%u\"; router = \"upnp\"; router_lease = 4; } );",
		 TCP_PORT, tcp.port);
	lan_portfwd(&d, body);
	assert_open("tcp", TCP_PORT, TCP_PORT);
	ck_assert(wait_state(&d, "t", "mapped", 10));
	/* Frozen: the next renewal (at 2 s) waits on its HTTP answer. */
	kill(h_rt.miniupnpd, SIGSTOP);
	usleep(3000000);
	t0 = h_now();
	h_stop(&d);
	took = h_now() - t0;
	kill(h_rt.miniupnpd, SIGCONT);
	printf("router: portfwd stopped in %.2f s with the router not answering\n", took);
	/* 6 s and the rest of the stop: 6.0 s here, 7.0 s under TSan; unbounded
	 * it took over 10 s (h_stop gives up at 10). */
	ck_assert_msg(took < 9.5, "stopping took %.2f s", took);
	h_backend_stop(&tcp);
	h_backend_stop(&udp);
	h_router_stop(&h_rt, true);
}
END_TEST

/* No default route (a laptop offline): the rule says why, retries less
 * and less often, and no descriptor is lost per try. */
START_TEST(test_no_default_route)
{
	struct hdaemon d;
	char ns[64], body[1024], path[64], *out;
	int rc;
	unsigned fds[2];
	json_t *o;

	if (geteuid() != 0) {
		fprintf(stderr, "test_no_default_route: not root, skipped\n");
		return;
	}
	snprintf(ns, sizeof(ns), "pf%d-noroute", (int)getpid());
	rc = h_sh(&out, "ip netns add %1$s && ip -n %1$s link set lo up", ns);
	ck_assert_msg(rc == 0, "%s", out);
	free(out);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"r\"; proto = \"tcp+udp\"; listen = \"0.0.0.0:42000-42007\"; target = \"192.0.2.1:42000-42007\";\n"
		 "            router = \"natpmp\"; } );");
	h_daemon_netns = ns;
	h_start(&d, body);
	h_daemon_netns = NULL;
	for (int k = 0; k < 2; k++) {
		/* After the first tries (0 s, 2 s), then after the next two (6 s, 14 s). */
		usleep(k == 0 ? 3000000 : 12000000);
		fds[k] = 0;
		snprintf(path, sizeof(path), "/proc/%d/fd", (int)d.pid);
		rc = h_sh(&out, "ls %s | wc -l", path);
		ck_assert_int_eq(rc, 0);
		fds[k] = (unsigned)atoi(out);
		free(out);
	}
	ck_assert_msg(fds[1] <= fds[0] + 1, "descriptors %u, then %u", fds[0], fds[1]);
	ck_assert(wait_state(&d, "r", "failed", 1));
	o = router_of(&d, "r");
	ck_assert_msg(strstr(json_string_value(json_object_get(o, "error")), "no IPv4 default route"), "%s",
		      json_string_value(json_object_get(o, "error")));
	ck_assert_int_ge(json_integer_value(json_object_get(o, "failures")), 16 * 3);
	json_decref(o);
	h_stop(&d);
	h_sh(&out, "ip netns del %s", ns);
	free(out);
}
END_TEST

/*
 * A NAT-PMP gateway of the test's own on the router's LAN address, for what
 * miniupnpd does not do: it answers every datagram 300 ms late, so
 * libnatpmp has sent each request again before the first answer comes, and
 * the repeated answers arrive while the next request waits. It keeps the
 * mappings it was asked for, to see what is left at the end.
 */
struct fake_pmp {
	int fd;
	pthread_t thread;
	atomic_bool stop;
	pthread_mutex_t mu;
	bool mapped[2][65536];            /* [0 udp, 1 tcp][private port] */
	unsigned ext[2][65536];
	unsigned answers;
};

static struct fake_pmp fake;

static void *fake_pmp_run(void *arg)
{
	struct {
		double due;
		struct sockaddr_in to;
		uint8_t msg[16];
		size_t len;
	} q[512];
	size_t nq = 0;

	(void)arg;
	while (!atomic_load(&fake.stop)) {
		struct pollfd pf = { .fd = fake.fd, .events = POLLIN };
		double now = h_now();
		int wait = 50;

		for (size_t i = 0; i < nq;) {
			if (q[i].due <= now) {
				sendto(fake.fd, q[i].msg, q[i].len, 0, (struct sockaddr *)&q[i].to, sizeof(q[i].to));
				q[i] = q[--nq];
				pthread_mutex_lock(&fake.mu);
				fake.answers++;
				pthread_mutex_unlock(&fake.mu);
			} else {
				i++;
			}
		}
		if (poll(&pf, 1, wait) == 1) {
			uint8_t in[64];
			struct sockaddr_in from;
			socklen_t fl = sizeof(from);
			ssize_t n = recvfrom(fake.fd, in, sizeof(in), 0, (struct sockaddr *)&from, &fl);
			uint32_t epoch = htonl((uint32_t)(h_now() - 0) + 1000), v;

			if (n < 2 || in[0] != 0 || nq == sizeof(q) / sizeof(q[0]))
				continue;
			memset(&q[nq], 0, sizeof(q[nq]));
			q[nq].due = h_now() + 0.3;
			q[nq].to = from;
			q[nq].msg[1] = (uint8_t)(128 + in[1]);
			memcpy(q[nq].msg + 4, &epoch, 4);
			if (in[1] == 0) {
				inet_pton(AF_INET, "11.0.0.1", q[nq].msg + 8);
				q[nq].len = 12;
			} else if ((in[1] == 1 || in[1] == 2) && n >= 12) {
				unsigned priv = (unsigned)in[4] << 8 | in[5], pub = (unsigned)in[6] << 8 | in[7];
				uint32_t life;
				int t = in[1] - 1;

				memcpy(&life, in + 8, 4);
				life = ntohl(life);
				pthread_mutex_lock(&fake.mu);
				fake.mapped[t][priv] = life != 0;
				if (life)
					fake.ext[t][priv] = pub ? pub : priv;
				pub = life ? fake.ext[t][priv] : 0;
				pthread_mutex_unlock(&fake.mu);
				q[nq].msg[8] = in[4];
				q[nq].msg[9] = in[5];
				q[nq].msg[10] = (uint8_t)(pub >> 8);
				q[nq].msg[11] = (uint8_t)pub;
				v = htonl(life);
				memcpy(q[nq].msg + 12, &v, 4);
				q[nq].len = 16;
			} else {
				continue;
			}
			nq++;
		}
	}
	return NULL;
}

static void fake_pmp_start(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(5351) };

	memset(&fake, 0, sizeof(fake));
	pthread_mutex_init(&fake.mu, NULL);
	inet_pton(AF_INET, h_rt.gw_addr, &sin.sin_addr);
	h_netns_enter(h_rt.rtr);
	fake.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	h_netns_enter(NULL);
	ck_assert_int_ge(fake.fd, 0);
	ck_assert_msg(bind(fake.fd, (struct sockaddr *)&sin, sizeof(sin)) == 0, "bind %s:5351: %s", h_rt.gw_addr,
		      strerror(errno));
	ck_assert_int_eq(pthread_create(&fake.thread, NULL, fake_pmp_run, NULL), 0);
}

static void fake_pmp_stop(void)
{
	atomic_store(&fake.stop, true);
	pthread_join(fake.thread, NULL);
	close(fake.fd);
}

/* The fake gateway's mapping of tcp private port PORT: its external port, 0 for none. */
static unsigned fake_pmp_tcp(unsigned port)
{
	unsigned ext;

	pthread_mutex_lock(&fake.mu);
	ext = fake.mapped[1][port] ? fake.ext[1][port] : 0;
	pthread_mutex_unlock(&fake.mu);
	return ext;
}

/* A NAT-PMP router slow to answer (300 ms, so every request is answered
 * twice or more, late): each port gets its own mapping, the external
 * address is known, and the stop deletes every one. */
START_TEST(test_natpmp_late_answers)
{
	struct hdaemon d;
	char body[1024];
	json_t *o;
	double end;

	if (!h_router_ready(&h_rt))
		return;
	fake_pmp_start();
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"r\"; proto = \"tcp\"; listen = \"0.0.0.0:41000-41003\"; target = \"127.0.0.1:9\";\n"
		 "            router = \"natpmp\"; external_port = 51000; router_lease = 600; } );");
	lan_portfwd(&d, body);
	ck_assert_msg(wait_state(&d, "r", "mapped", 20), "not mapped");
	for (unsigned k = 0; k < 4; k++)
		ck_assert_uint_eq(fake_pmp_tcp(41000 + k), 51000 + k);
	o = router_of(&d, "r");
	ck_assert_int_eq(json_integer_value(json_object_get(o, "external_port")), 51000);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "external_port_last")), 51003);
	ck_assert_str_eq(json_string_value(json_object_get(o, "external_address")), "11.0.0.1");
	json_decref(o);
	ck_assert(!h_log_contains(&d, "cannot map it"));
	ck_assert(!h_log_contains(&d, "instead"));
	h_stop(&d);
	/* Every deletion was answered (late too) before the stop ended. */
	end = h_now() + 2;
	for (unsigned k = 0; k < 4; k++) {
		while (fake_pmp_tcp(41000 + k) && h_now() < end)
			usleep(50000);
		ck_assert_msg(fake_pmp_tcp(41000 + k) == 0, "tcp %u still mapped after the stop", 41000 + k);
	}
	fake_pmp_stop();
}
END_TEST

/* Behind carrier-grade NAT (the router's WAN is 100.64.0.1): refused for
 * want of a public address, or mapped with 100.64.0.1 reported; either
 * way status and the log say that the internet cannot reach the port. */
static void cgnat(bool reports)
{
	struct hdaemon d;
	struct h_backend tcp, udp;
	char body[1024], *text;
	json_t *o;
	bool ok;

	if (!h_router_ready(&h_rt))
		return;
	h_rt.report_private = reports;
	start_router();
	lan_backends(&tcp, &udp);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"t\"; proto = \"tcp\"; listen = \"0.0.0.0:%u\"; target = \"127.0.0.1:%u\"; router = \"auto\"; } );",
		 TCP_PORT, tcp.port);
	lan_portfwd(&d, body);
	ck_assert_msg(h_wait_log(&d, "carrier-grade NAT", 20), "no carrier-grade NAT warning in the log");
	ck_assert(wait_state(&d, "t", reports ? "mapped" : "failed", 10));
	o = router_of(&d, "t");
	ck_assert_msg(json_string_value(json_object_get(o, "warning")) &&
			      strstr(json_string_value(json_object_get(o, "warning")),
				     "your router is behind another NAT (carrier-grade NAT): forwarding cannot reach you from the internet; use a VPN or a relay"),
		      "warning: %s", json_string_value(json_object_get(o, "warning")));
	if (reports)
		ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(o, "warning")), "100.64.0.1"));
	else
		ck_assert(json_string_value(json_object_get(o, "error")) != NULL);
	json_decref(o);
	text = h_ctl(d.sock, "status", &ok);
	ck_assert_msg(ok && strstr(text, "WARNING: ") && strstr(text, "carrier-grade NAT"), "%s", text);
	free(text);
	text = h_ctl(d.sock, "metrics", &ok);
	ck_assert_msg(ok && strstr(text, "portfwd_router_external_unreachable{rule=\"t\""), "%s", text);
	ck_assert_msg(strstr(text, "portfwd_router_external_unreachable{rule=\"t\",method=\"auto\"} 1"), "%s", text);
	ck_assert_msg(!reports == !strstr(text, "portfwd_router_protocol{rule=\"t\",protocol=\"pcp\"} 1"), "%s", text);
	free(text);
	lan_finish(&d, &tcp, &udp);
}

START_TEST(test_cgnat_refused)
{
	cgnat(false);
}
END_TEST

START_TEST(test_cgnat_reported)
{
	cgnat(true);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("router");
	TCase *tc = h_router_tcase("router");
	TCase *cg = h_router_cgnat_tcase("cgnat");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_pcp);
	tcase_add_test(tc, test_natpmp);
	tcase_add_test(tc, test_upnp);
	tcase_add_test(tc, test_auto);
	tcase_add_test(tc, test_range_external_port_unprivileged);
	tcase_add_test(tc, test_natpmp_slow_router);
	tcase_add_test(tc, test_natpmp_late_answers);
	tcase_add_test(tc, test_stop_with_hung_router);
	tcase_add_test(tc, test_no_default_route);
	suite_add_tcase(s, tc);
	tcase_set_timeout(cg, 60);
	tcase_add_test(cg, test_cgnat_refused);
	tcase_add_test(cg, test_cgnat_reported);
	suite_add_tcase(s, cg);
	return check_run(s);
}
