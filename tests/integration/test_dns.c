/*
 * Host-name targets against the real daemon and a real DNS server
 * (dnsmasq on a loopback port, as daemon.resolvers): a name that changes
 * its address while a connection is open (the connection keeps its
 * address, new ones take the new), a name that disappears (its last
 * addresses stay, status says stale), one that never resolved (the rule
 * waits for DNS, clients are refused, until it appears), IPv6 first then
 * IPv4, resolve = "ipv4" / "ipv6", UDP through a name, and the
 * configuration's errors.
 *
 * The backends tell the addresses apart: 127.0.0.1 and ::1 on one port.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check_run.h"
#include "dnsmasq.h"
#include "harness.h"

#define PORTFWD h_bin("PORTFWD_BIN", "build/default/portfwd")

static char extra[128];

/* The daemon section names D as its only name server. */
static void use_dns(const struct dns *d)
{
	snprintf(extra, sizeof(extra), "resolvers = [ \"127.0.0.1:%u\" ];", d->port);
	h_daemon_extra = extra;
}

/* The status JSON of rule NAME's first target (a new reference), or NULL. */
static json_t *target_status(struct hdaemon *d, const char *name)
{
	json_t *doc = h_status(d), *rules = json_object_get(doc, "rules"), *t = NULL;

	for (size_t i = 0; i < json_array_size(rules); i++) {
		json_t *r = json_array_get(rules, i);

		if (strcmp(json_string_value(json_object_get(r, "name")), name) == 0) {
			t = json_array_get(json_object_get(r, "targets"), 0);
			json_incref(t);
			break;
		}
	}
	json_decref(doc);
	return t;
}

/* Rule NAME's state in status --json. */
static char *rule_state(struct hdaemon *d, const char *name)
{
	json_t *doc = h_status(d), *rules = json_object_get(doc, "rules");
	char *state = NULL;

	for (size_t i = 0; i < json_array_size(rules); i++) {
		json_t *r = json_array_get(rules, i);

		if (strcmp(json_string_value(json_object_get(r, "name")), name) == 0)
			state = strdup(json_string_value(json_object_get(r, "state")));
	}
	json_decref(doc);
	return state;
}

/* The DNS state ("resolved", "stale", "waiting") of rule NAME's first target. */
static char *dns_state(struct hdaemon *d, const char *name)
{
	json_t *t = target_status(d, name);
	char *s = strdup(t ? json_string_value(json_object_get(json_object_get(t, "dns"), "state")) : "?");

	json_decref(t);
	return s;
}

/* Waits up to SECONDS for rule NAME's DNS state to be WANT. */
static bool wait_dns_state(struct hdaemon *d, const char *name, const char *want, double seconds)
{
	double end = h_now() + seconds;

	for (;;) {
		char *s = dns_state(d, name);
		bool ok = strcmp(s, want) == 0;

		free(s);
		if (ok || h_now() > end)
			return ok;
		usleep(50000);
	}
}

/* How many bytes an H_SOURCE backend sent through PORT (-1: refused or reset). */
static long long bytes_through(unsigned port)
{
	int fd = h_connect("127.0.0.1", port);
	uint64_t hash;
	long long n;

	if (fd < 0)
		return -1;
	shutdown(fd, SHUT_WR);
	n = h_read_all(fd, &hash, 10);
	close(fd);
	return n;
}

/* Waits up to SECONDS for a connection through PORT to get WANT bytes. */
static bool wait_bytes(unsigned port, long long want, double seconds)
{
	double end = h_now() + seconds;

	while (bytes_through(port) != want)
		if (h_now() > end)
			return false;
		else
			usleep(100000);
	return true;
}

/* One message there and back on open connection FD: true if it echoed. */
static bool echo_once(int fd, const char *msg)
{
	size_t len = strlen(msg), got = 0;
	char buf[64];
	struct timeval tv = { 5, 0 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (send(fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len)
		return false;
	while (got < len) {
		ssize_t n = recv(fd, buf + got, len - got, 0);

		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	return memcmp(buf, msg, len) == 0;
}

/*
 * svc.lan moves from 127.0.0.1 to ::1 (the TTL is 1 s): a connection open
 * before keeps echoing through the old address; new ones reach the new.
 */
START_TEST(test_name_changes_address)
{
	struct dns dns;
	struct hdaemon d;
	struct h_backend echo4, src6;
	unsigned port = h_free_port(SOCK_STREAM, false), listen = h_free_port(SOCK_STREAM, false);
	char body[512];
	json_t *t;
	int fd;

	h_backend_start_on(&echo4, H_ECHO, false, port);
	src6.source_len = 2000;
	h_backend_start_on(&src6, H_SOURCE, true, port);
	dns_start(&dns, "127.0.0.1 svc.lan\n", 1);
	use_dns(&dns);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"svc\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"svc.lan:%u\"; resolve_min = 0.5; } );",
		 listen, port);
	h_start(&d, body);
	ck_assert_msg(wait_dns_state(&d, "svc", "resolved", 10), "svc.lan did not resolve");
	t = target_status(&d, "svc");
	ck_assert_str_eq(json_string_value(json_object_get(t, "address")), "127.0.0.1");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(t, "dns"), "ttl")), 1);
	json_decref(t);

	fd = h_connect("127.0.0.1", listen);
	ck_assert_int_ge(fd, 0);
	ck_assert(echo_once(fd, "before the change"));

	dns_set(&dns, "::1 svc.lan\n");
	/* After the TTL, new connections go to ::1, which sends 2000 bytes. */
	ck_assert_msg(wait_bytes(listen, 2000, 10), "new connections did not move to the new address");
	/* The one open before still goes to 127.0.0.1. */
	ck_assert(echo_once(fd, "after the change"));
	ck_assert_int_eq(h_echo_exchange(fd, 65536, 2, 10), 0);
	close(fd);
	t = target_status(&d, "svc");
	ck_assert_str_eq(json_string_value(json_object_get(t, "address")), "::1");
	json_decref(t);
	ck_assert(h_log_contains(&d, "target svc.lan:"));
	ck_assert(h_log_contains(&d, "resolves to ::1"));
	h_stop(&d);
	dns_stop(&dns);
	h_backend_stop(&echo4);
	h_backend_stop(&src6);
	h_daemon_extra = NULL;
}
END_TEST

/* The name goes away: its last address stays in use, status says stale
 * with the error; it comes back fresh. */
START_TEST(test_name_disappears_stays_stale)
{
	struct dns dns;
	struct hdaemon d;
	struct h_backend src;
	unsigned listen = h_free_port(SOCK_STREAM, false);
	char body[512], *out;
	char *argv[] = { (char *)h_bin("PORTFWDCTL_BIN", "build/default/portfwdctl"), "-s", NULL, "status", NULL };
	json_t *t;

	src.source_len = 1234;
	h_backend_start(&src, H_SOURCE, false);
	dns_start(&dns, "127.0.0.1 gone.lan\n", 1);
	use_dns(&dns);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"gone\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"gone.lan:%u\"; resolve_min = 0.3; } );",
		 listen, src.port);
	h_start(&d, body);
	ck_assert(wait_dns_state(&d, "gone", "resolved", 10));
	ck_assert_int_eq(bytes_through(listen), 1234);
	dns_set(&dns, "127.0.0.1 other.lan\n");
	ck_assert_msg(wait_dns_state(&d, "gone", "stale", 10), "the name's loss was not seen");
	t = target_status(&d, "gone");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(t, "dns"), "error")),
			 "no such name (NXDOMAIN)");
	ck_assert(json_is_integer(json_object_get(json_object_get(t, "dns"), "stale_since")));
	json_decref(t);
	/* Still forwarded, to the last address it had. */
	ck_assert_int_eq(bytes_through(listen), 1234);
	argv[2] = d.sock;
	ck_assert_int_eq(h_run(argv, &out), 0);
	ck_assert_msg(strstr(out, "= 127.0.0.1, stale since ") &&
		      strstr(out, "(the name does not resolve now: no such name (NXDOMAIN))"), "%s", out);
	free(out);
	dns_set(&dns, "127.0.0.1 gone.lan\n");
	ck_assert(wait_dns_state(&d, "gone", "resolved", 10));
	h_stop(&d);
	dns_stop(&dns);
	h_backend_stop(&src);
	h_daemon_extra = NULL;
}
END_TEST

/* A name that never resolved: the rule waits for DNS and refuses clients;
 * once the name appears (retried with back-off), it forwards. */
START_TEST(test_never_resolved_waits)
{
	struct dns dns;
	struct hdaemon d;
	struct h_backend src;
	unsigned listen = h_free_port(SOCK_STREAM, false);
	char body[512], *state;
	json_t *t;

	src.source_len = 777;
	h_backend_start(&src, H_SOURCE, false);
	dns_start(&dns, "127.0.0.1 unrelated.lan\n", 1);
	use_dns(&dns);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"late\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u\"; target = \"late.lan:%u\"; resolve_min = 0.3; resolve_max = 1.0; } );",
		 listen, src.port);
	h_start(&d, body);
	ck_assert(h_wait_log(&d, "late.lan", 10));
	state = rule_state(&d, "late");
	ck_assert_str_eq(state, "waiting for DNS");
	free(state);
	t = target_status(&d, "late");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(t, "dns"), "state")), "waiting");
	ck_assert_str_eq(json_string_value(json_object_get(t, "state")), "down");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(t, "dns"), "error")),
			 "no such name (NXDOMAIN)");
	json_decref(t);
	/* Refused, at once, not held. */
	{
		double t0 = h_now();

		ck_assert_int_lt(bytes_through(listen), 1);
		ck_assert_msg(h_now() - t0 < 3, "the client was held %.1fs", h_now() - t0);
	}
	ck_assert(h_log_contains(&d, "waiting for DNS"));
	dns_set(&dns, "127.0.0.1 late.lan\n");
	ck_assert_msg(wait_bytes(listen, 777, 10), "the name's arrival was not seen");
	state = rule_state(&d, "late");
	ck_assert_str_eq(state, "listening");
	free(state);
	h_stop(&d);
	dns_stop(&dns);
	h_backend_stop(&src);
	h_daemon_extra = NULL;
}
END_TEST

/* both.lan has ::1 and 127.0.0.1 and only 127.0.0.1 listens: "any" tries
 * IPv6 first, then IPv4, and the client never sees the refusal; "ipv6"
 * alone fails; "ipv4" goes straight there. */
START_TEST(test_ipv6_first_then_ipv4)
{
	struct dns dns;
	struct hdaemon d;
	struct h_backend src;
	unsigned l_any = h_free_port(SOCK_STREAM, false), l_v6 = h_free_port(SOCK_STREAM, false),
		 l_v4 = h_free_port(SOCK_STREAM, false);
	char body[1024];
	json_t *t;

	src.source_len = 4321;
	h_backend_start(&src, H_SOURCE, false);
	dns_start(&dns, "::1 both.lan\n127.0.0.1 both.lan\n", 60);
	use_dns(&dns);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"any\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"both.lan:%u\"; },\n"
		 "          { name = \"v6\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"both.lan:%u\"; resolve = \"ipv6\"; },\n"
		 "          { name = \"v4\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"both.lan:%u\"; resolve = \"ipv4\"; } );",
		 l_any, src.port, l_v6, src.port, l_v4, src.port);
	h_start(&d, body);
	ck_assert(wait_dns_state(&d, "any", "resolved", 10));
	ck_assert(wait_dns_state(&d, "v6", "resolved", 10));
	ck_assert(wait_dns_state(&d, "v4", "resolved", 10));
	t = target_status(&d, "any");
	ck_assert_int_eq(json_array_size(json_object_get(json_object_get(t, "dns"), "addresses")), 2);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(json_object_get(t, "dns"), "addresses"), 0)), "::1");
	json_decref(t);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(bytes_through(l_any), 4321);
	ck_assert(h_log_contains(&d, "trying its next address"));
	ck_assert_int_lt(bytes_through(l_v6), 1);
	ck_assert_int_eq(bytes_through(l_v4), 4321);
	h_stop(&d);
	dns_stop(&dns);
	h_backend_stop(&src);
	h_daemon_extra = NULL;
}
END_TEST

/*
 * targets = [ a name whose two addresses refuse, an address that serves ]:
 * the client tries both of the name's addresses, then the next target,
 * within connect_timeout; and a rule with source = 127.0.0.1 uses only the
 * name's IPv4 addresses.
 */
START_TEST(test_name_then_next_target)
{
	struct dns dns;
	struct hdaemon d;
	struct h_backend src;
	unsigned l1 = h_free_port(SOCK_STREAM, false), l2 = h_free_port(SOCK_STREAM, false);
	unsigned l3 = h_free_port(SOCK_STREAM, false), dead = h_free_port(SOCK_STREAM, false);
	char body[1400];

	src.source_len = 999;
	h_backend_start(&src, H_SOURCE, false);
	dns_start(&dns, "::1 dead.lan\n127.0.0.2 dead.lan\n::1 mixed.lan\n127.0.0.1 mixed.lan\n::1 v6a.lan\n::1 v6b.lan\n::1 v6c.lan\n::1 v6d.lan\n", 60);
	use_dns(&dns);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"fall\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; targets = [ \"dead.lan:%u\", \"127.0.0.1:%u\" ]; },\n"
		 "          { name = \"src\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"mixed.lan:%u\"; source = \"127.0.0.1\"; },\n"
		 "          { name = \"skip\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; source = \"127.0.0.1\";\n"
		 "            targets = [ \"v6a.lan:%u\", \"v6b.lan:%u\", \"v6c.lan:%u\", \"v6d.lan:%u\", \"127.0.0.1:%u\" ]; } );",
		 l1, dead, src.port, l2, src.port, l3, dead, dead, dead, dead, src.port);
	h_start(&d, body);
	ck_assert(wait_dns_state(&d, "fall", "resolved", 10));
	ck_assert(wait_dns_state(&d, "src", "resolved", 10));
	ck_assert_int_eq(bytes_through(l1), 999);
	ck_assert(h_log_contains(&d, "trying its next address"));
	ck_assert(h_log_contains(&d, "trying another"));
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(bytes_through(l2), 999);
	/* Four names with no IPv4 address are skipped without using up the
	 * connection's tries: the fifth target serves. */
	ck_assert(wait_dns_state(&d, "skip", "resolved", 10));
	ck_assert_int_eq(bytes_through(l3), 999);
	h_stop(&d);
	dns_stop(&dns);
	h_backend_stop(&src);
	h_daemon_extra = NULL;
}
END_TEST

/* A reload that changes only the name: the new name is looked up and
 * used (a.lan is 127.0.0.1, b.lan ::1, on one port). */
START_TEST(test_reload_changes_name)
{
	struct dns dns;
	struct hdaemon d;
	struct h_backend s4, s6;
	unsigned port = h_free_port(SOCK_STREAM, false), listen = h_free_port(SOCK_STREAM, false);
	char body[512], *out;
	char *argv[] = { (char *)h_bin("PORTFWDCTL_BIN", "build/default/portfwdctl"), "-s", NULL, "reload", NULL };

	s4.source_len = 111;
	s6.source_len = 222;
	h_backend_start_on(&s4, H_SOURCE, false, port);
	h_backend_start_on(&s6, H_SOURCE, true, port);
	dns_start(&dns, "127.0.0.1 a.lan\n::1 b.lan\n", 60);
	use_dns(&dns);
	snprintf(body, sizeof(body), "rules = ( { name = \"n\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"a.lan:%u\"; } );",
		 listen, port);
	h_start(&d, body);
	ck_assert(wait_dns_state(&d, "n", "resolved", 10));
	ck_assert_int_eq(bytes_through(listen), 111);
	snprintf(body, sizeof(body), "rules = ( { name = \"n\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"b.lan:%u\"; } );",
		 listen, port);
	h_write_conf(&d, body);
	argv[2] = d.sock;
	ck_assert_int_eq(h_run(argv, &out), 0);
	ck_assert_msg(strstr(out, "1 changed"), "%s", out);
	free(out);
	ck_assert_msg(wait_bytes(listen, 222, 10), "the new name is not used");
	h_stop(&d);
	dns_stop(&dns);
	h_backend_stop(&s4);
	h_backend_stop(&s6);
	h_daemon_extra = NULL;
}
END_TEST

/* source-hash over two names spreads the clients (a name is hashed by
 * its name, not by a placeholder address every name shares). */
START_TEST(test_names_source_hash)
{
	struct dns dns;
	struct hdaemon d;
	struct h_backend s4, s6;
	unsigned port = h_free_port(SOCK_STREAM, false), listen = h_free_port(SOCK_STREAM, false);
	char body[512];
	int got[2] = { 0, 0 };

	s4.source_len = 111;
	s6.source_len = 222;
	h_backend_start_on(&s4, H_SOURCE, false, port);
	h_backend_start_on(&s6, H_SOURCE, true, port);
	dns_start(&dns, "127.0.0.1 a.lan\n::1 b.lan\n", 60);
	use_dns(&dns);
	snprintf(body, sizeof(body), "rules = ( { name = \"h\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; targets = [ \"a.lan:%u\", \"b.lan:%u\" ]; balance = \"source-hash\"; } );",
		 listen, port, port);
	h_start(&d, body);
	ck_assert(wait_dns_state(&d, "h", "resolved", 10));
	for (int i = 1; i <= 24; i++) {
		char src[32];
		struct sockaddr_storage ss;
		socklen_t len;
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		uint64_t hash;
		long long n;

		snprintf(src, sizeof(src), "127.0.%d.%d", i / 200, 2 + i % 200);
		len = h_sockaddr(src, 0, &ss);
		ck_assert_int_eq(bind(fd, (struct sockaddr *)&ss, len), 0);
		len = h_sockaddr("127.0.0.1", listen, &ss);
		ck_assert_int_eq(connect(fd, (struct sockaddr *)&ss, len), 0);
		shutdown(fd, SHUT_WR);
		n = h_read_all(fd, &hash, 10);
		close(fd);
		ck_assert_msg(n == 111 || n == 222, "client %s got %lld bytes", src, n);
		got[n == 222]++;
	}
	ck_assert_msg(got[0] > 0 && got[1] > 0, "24 sources: %d to a.lan, %d to b.lan", got[0], got[1]);
	h_stop(&d);
	dns_stop(&dns);
	h_backend_stop(&s4);
	h_backend_stop(&s6);
	h_daemon_extra = NULL;
}
END_TEST

/* Health checks on a name try its addresses: ::1 refuses, 127.0.0.1
 * answers, and the target stays up. */
START_TEST(test_health_check_name)
{
	struct dns dns;
	struct hdaemon d;
	struct h_backend src, other;
	unsigned listen = h_free_port(SOCK_STREAM, false);
	char body[640];
	json_t *t;

	src.source_len = 5;
	h_backend_start(&src, H_SOURCE, false);
	other.source_len = 6;
	h_backend_start(&other, H_SOURCE, false);
	dns_start(&dns, "::1 mixed.lan\n127.0.0.1 mixed.lan\n", 60);
	use_dns(&dns);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"c\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; targets = [ \"mixed.lan:%u\", \"127.0.0.1:%u\" ];\n"
		 "  health_check = { interval = 0.3; timeout = 0.2; rise = 1; fall = 1; }; } );",
		 listen, src.port, other.port);
	h_start(&d, body);
	ck_assert(wait_dns_state(&d, "c", "resolved", 10));
	usleep(1500000); /* several checks */
	t = target_status(&d, "c");
	ck_assert_msg(strcmp(json_string_value(json_object_get(t, "state")), "up") == 0, "down: %s",
		      json_string_value(json_object_get(t, "reason")));
	json_decref(t);
	ck_assert_int_eq(bytes_through(listen), 5);
	h_stop(&d);
	dns_stop(&dns);
	h_backend_stop(&src);
	h_backend_stop(&other);
	h_daemon_extra = NULL;
}
END_TEST

/* Answers that cannot be used are dropped and said: one that leads back
 * to the rule itself, 0.0.0.0, and an IPv4 address in an AAAA record. */
START_TEST(test_unusable_answers)
{
	struct dns dns;
	struct hdaemon d;
	unsigned listen = h_free_port(SOCK_STREAM, false), l2 = h_free_port(SOCK_STREAM, false);
	char body[640], *state;
	json_t *t;

	dns_start(&dns, "127.0.0.1 loop.lan\n0.0.0.0 zero.lan\n::ffff:127.0.0.1 mapped.lan\n", 60);
	use_dns(&dns);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"loop\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"loop.lan:%u\"; },\n"
		 "          { name = \"odd\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; targets = [ \"zero.lan:80\", \"mapped.lan:80\" ]; } );",
		 listen, listen, l2);
	h_start(&d, body);
	ck_assert(h_wait_log(&d, "which is not used: this rule's own listen address", 10));
	ck_assert(h_wait_log(&d, "resolves to 0.0.0.0, which is not used", 10));
	ck_assert(h_wait_log(&d, "which is not used: an IPv4 address in an IPv6 record", 10));
	state = rule_state(&d, "loop");
	ck_assert_str_eq(state, "waiting for DNS");
	free(state);
	state = rule_state(&d, "odd");
	ck_assert_str_eq(state, "waiting for DNS");
	free(state);
	t = target_status(&d, "loop");
	ck_assert_msg(strstr(json_string_value(json_object_get(json_object_get(t, "dns"), "error")), "cannot be used"),
		      "%s", json_string_value(json_object_get(json_object_get(t, "dns"), "error")));
	json_decref(t);
	/* The client is refused at once, not looped. */
	ck_assert_int_lt(bytes_through(listen), 1);
	ck_assert(!h_log_contains(&d, "connected to the target"));
	h_stop(&d);
	dns_stop(&dns);
	h_daemon_extra = NULL;
}
END_TEST

/* N consecutive ports free on 127.0.0.1 for TCP, below the ephemeral range. */
static unsigned free_ports(unsigned n)
{
	for (unsigned p = 22000 + (unsigned)(getpid() % 400) * 16; p < 32000; p += n) {
		unsigned k;

		for (k = 0; k < n; k++) {
			struct sockaddr_storage ss;
			socklen_t len = h_sockaddr("127.0.0.1", p + k, &ss);
			int fd = socket(AF_INET, SOCK_STREAM, 0);
			bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&ss, len) == 0;

			if (fd >= 0)
				close(fd);
			if (!ok)
				break;
		}
		if (k == n)
			return p;
	}
	ck_abort_msg("no %u consecutive free ports", n);
	return 0;
}

/* A reload that grows the range over the port a name points at: the
 * answer is judged again, and dropped as a loop. */
START_TEST(test_reload_range_makes_loop)
{
	struct dns dns;
	struct hdaemon d;
	unsigned p = free_ports(3);
	char body[512], *out, *state;
	char *argv[] = { (char *)h_bin("PORTFWDCTL_BIN", "build/default/portfwdctl"), "-s", NULL, "reload", NULL };

	dns_start(&dns, "127.0.0.1 vm.lan\n", 60);
	use_dns(&dns);
	snprintf(body, sizeof(body), "rules = ( { name = \"g\"; proto = \"tcp\"; listen = \"127.0.0.1:%u-%u\"; target = \"vm.lan:%u\"; max_connections = 8; } );",
		 p, p + 1, p + 2);
	h_start(&d, body);
	ck_assert(wait_dns_state(&d, "g", "resolved", 10));
	snprintf(body, sizeof(body), "rules = ( { name = \"g\"; proto = \"tcp\"; listen = \"127.0.0.1:%u-%u\"; target = \"vm.lan:%u\"; max_connections = 8; } );",
		 p, p + 2, p + 2);
	h_write_conf(&d, body);
	argv[2] = d.sock;
	ck_assert_int_eq(h_run(argv, &out), 0);
	free(out);
	ck_assert(h_wait_log(&d, "which is not used: this rule's own listen address", 10));
	state = rule_state(&d, "g");
	ck_assert_str_eq(state, "waiting for DNS");
	free(state);
	ck_assert_int_lt(bytes_through(p), 1);
	ck_assert(!h_log_contains(&d, "connected to the target"));
	h_stop(&d);
	dns_stop(&dns);
	h_daemon_extra = NULL;
}
END_TEST

/* UDP through a name: the session goes to what it resolves to. */
START_TEST(test_udp_through_name)
{
	struct dns dns;
	struct hdaemon d;
	struct h_backend echo;
	unsigned listen = h_free_port(SOCK_DGRAM, false);
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr("127.0.0.1", listen, &ss);
	char body[512], buf[64];
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct timeval tv = { 0, 300000 };
	bool ok = false;

	h_backend_start(&echo, H_UDP_ECHO, false);
	dns_start(&dns, "127.0.0.1 dns.lan\n", 60);
	use_dns(&dns);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"dns\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"dns.lan:%u\"; } );",
		 listen, echo.port);
	h_start(&d, body);
	ck_assert(wait_dns_state(&d, "dns", "resolved", 10));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&ss, len), 0);
	for (int i = 0; i < 20 && !ok; i++) {
		ck_assert_int_eq(send(fd, "ping", 4, 0), 4);
		ok = recv(fd, buf, sizeof(buf), 0) == 4 && memcmp(buf, "ping", 4) == 0;
	}
	ck_assert_msg(ok, "no echo through the name");
	close(fd);
	h_stop(&d);
	dns_stop(&dns);
	h_backend_stop(&echo);
	h_daemon_extra = NULL;
}
END_TEST

/* What the file may say, and the errors with their lines. */
START_TEST(test_config_errors)
{
	static const struct {
		const char *rule, *want;
	} cases[] = {
		{ "target = \"-nas.lan:445\";", ":2: rule \"r\": target: \"-nas.lan\" is neither an IP address nor a host name" },
		{ "target = \"nas..lan:445\";", "is neither an IP address nor a host name" },
		{ "target = \"nas.lan:99999\";", "nas.lan:99999" },
		{ "target = \"nas.lan:445\"; resolve = \"ipv5\";", ":2: rule \"r\": resolve: \"ipv5\" is not one of \"any\", \"ipv4\" or \"ipv6\"" },
		{ "target = \"nas.lan:445\"; resolve_min = 60.0; resolve_max = 10.0;", "resolve_min (60 s) is longer than resolve_max (10 s)" },
		{ "targets = [ \"nas.lan:445\", \"NAS.lan:445\" ];", "targets[2]: \"NAS.lan:445\" is already targets[1]" },
	};
	char path[] = "/tmp/portfwd-dns-XXXXXX";
	int fd = mkstemp(path);
	char *argv[] = { (char *)PORTFWD, "-t", "-c", path, NULL }, *out;

	ck_assert_int_ge(fd, 0);
	close(fd);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		FILE *fp = fopen(path, "w");

		fprintf(fp, "rules = (\n  { name = \"r\"; proto = \"tcp\"; listen = \"127.0.0.1:8000\"; %s } );\n",
			cases[i].rule);
		fclose(fp);
		ck_assert_int_ne(h_run(argv, &out), 0);
		ck_assert_msg(strstr(out, cases[i].want), "want \"%s\" in:\n%s", cases[i].want, out);
		free(out);
	}
	/* A defaults error is said once, at its own line; a max alone takes
	 * the min down with it. */
	{
		FILE *fp = fopen(path, "w");

		fprintf(fp, "defaults: {\n resolve_min = 10.0;\n resolve_max = 2.0; };\nrules = (\n  { name = \"r\"; proto = \"tcp\"; listen = \"127.0.0.1:8000\"; target = \"nas.lan:445\"; } );\n");
		fclose(fp);
		ck_assert_int_ne(h_run(argv, &out), 0);
		ck_assert_msg(strstr(out, ":2: defaults: resolve_min (10 s) is longer than resolve_max (2 s)"), "%s", out);
		ck_assert_msg(!strstr(out, ":5:"), "reported at the rule too:\n%s", out);
		free(out);
		fp = fopen(path, "w");
		fprintf(fp, "defaults: { resolve_max = 2.0; };\nrules = ( { name = \"r\"; proto = \"tcp\"; listen = \"127.0.0.1:8000\"; target = \"nas.lan:445\"; } );\n");
		fclose(fp);
		ck_assert_msg(h_run(argv, &out) == 0, "%s", out);
		free(out);
		fp = fopen(path, "w");
		fprintf(fp, "rules = ( { name = \"r\"; proto = \"tcp\"; listen = \"127.0.0.1:8000\"; target = \"nas.lan:445\";\n  source = \"::1\"; resolve = \"ipv4\"; } );\n");
		fclose(fp);
		ck_assert_int_ne(h_run(argv, &out), 0);
		ck_assert_msg(strstr(out, ":2: rule \"r\": source: ::1 is an IPv6 address and resolve = \"ipv4\""), "%s", out);
		free(out);
	}
	/* A resolver that is no address. */
	{
		FILE *fp = fopen(path, "w");

		fprintf(fp, "daemon: { resolvers = [ \"dns.lan\" ]; };\nrules = ( );\n");
		fclose(fp);
		ck_assert_int_ne(h_run(argv, &out), 0);
		ck_assert_msg(strstr(out, ":1: daemon: resolvers[1]: \"dns.lan\" is not an IP address"), "%s", out);
		free(out);
	}
	/* A good one: names shown as written, with the port's class. */
	{
		FILE *fp = fopen(path, "w");

		fprintf(fp, "rules = ( { name = \"r\"; proto = \"tcp\"; listen = \"127.0.0.1:8000\"; target = \"nas.lan:445\"; } );\n");
		fclose(fp);
		ck_assert_int_eq(h_run(argv, &out), 0);
		ck_assert_msg(strstr(out, "-> nas.lan:445 (microsoft-ds, well-known)"), "%s", out);
		free(out);
	}
	unlink(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dns");
	TCase *tc = tcase_create("dns");

	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, test_name_changes_address);
	tcase_add_test(tc, test_name_disappears_stays_stale);
	tcase_add_test(tc, test_never_resolved_waits);
	tcase_add_test(tc, test_ipv6_first_then_ipv4);
	tcase_add_test(tc, test_name_then_next_target);
	tcase_add_test(tc, test_udp_through_name);
	tcase_add_test(tc, test_reload_changes_name);
	tcase_add_test(tc, test_names_source_hash);
	tcase_add_test(tc, test_health_check_name);
	tcase_add_test(tc, test_unusable_answers);
	tcase_add_test(tc, test_reload_range_makes_loop);
	tcase_add_test(tc, test_config_errors);
	suite_add_tcase(s, tc);
	return check_run(s);
}
