/*
 * Names kept resolved (resolve.c) against a real DNS server: dnsmasq on a
 * loopback port, answering from a hosts file of the test's that the test
 * edits and dnsmasq re-reads on SIGHUP. TTLs honoured and clamped, a name
 * that changes its address, one that disappears (its last addresses stay,
 * stale), one that never resolves (back-off), the hosts file before the
 * DNS, a server that never answers, and a lookup in flight when its name
 * is dropped or the resolver is freed (run it under SANITIZE=1: nothing
 * may leak).
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "resolve.h"
#include "check_run.h"
#include "dnsmasq.h"

struct seen {
	unsigned calls;
	char first[INET6_ADDRSTRLEN];
	size_t naddrs;
};

static void seen_cb(struct resolve_name *n, void *arg)
{
	struct seen *s = arg;
	struct sockaddr_storage a[RESOLVE_MAX_ADDRS];

	s->calls++;
	s->naddrs = resolve_addrs(n, a, RESOLVE_MAX_ADDRS);
	s->first[0] = '\0';
	if (s->naddrs)
		inet_ntop(a[0].ss_family,
			  a[0].ss_family == AF_INET ? (void *)&((struct sockaddr_in *)&a[0])->sin_addr
						    : (void *)&((struct sockaddr_in6 *)&a[0])->sin6_addr,
			  s->first, sizeof(s->first));
}

/* Runs BASE until *CALLS reaches WANT or SECONDS pass. Returns the time taken. */
static double run_until(struct event_base *base, const unsigned *calls, unsigned want, double seconds)
{
	double t0 = clock_now();

	while (*calls < want && clock_now() - t0 < seconds) {
		struct timeval tv = { 0, 50000 };

		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	return clock_now() - t0;
}

static struct resolve *new_resolver(struct event_base *base, const struct dns *d, const char *hosts)
{
	char server[32], err[256] = "";
	const char *servers[1] = { server };
	struct resolve *r;

	snprintf(server, sizeof(server), "127.0.0.1:%u", d ? d->port : 9);
	r = resolve_new(base, servers, 1, hosts ? hosts : "/dev/null", err, sizeof(err));
	ck_assert_msg(r != NULL, "%s", err);
	return r;
}

/* The answer's TTL decides when the name is asked again; a changed
 * address reaches the owner; both families, IPv6 first. */
START_TEST(test_ttl_and_change)
{
	struct event_base *base = event_base_new();
	struct dns d;
	struct seen s = { 0 };
	struct resolve *r;
	struct resolve_name *n;

	dns_start(&d, "192.0.2.10 nas.lan\n2001:db8::10 nas.lan\n", 1);
	r = new_resolver(base, &d, NULL);
	n = resolve_watch(r, "nas.lan", RESOLVE_ANY, 0.2, 60, seen_cb, &s);
	ck_assert_ptr_nonnull(n);
	ck_assert_uint_eq(s.calls, 0); /* never from inside resolve_watch */
	run_until(base, &s.calls, 1, 10);
	ck_assert_uint_eq(s.calls, 1);
	ck_assert_uint_eq(s.naddrs, 2);
	ck_assert_str_eq(s.first, "2001:db8::10");
	ck_assert_str_eq(resolve_error(n), "");
	ck_assert_int_eq(resolve_ttl(n), 1);
	/* Asked again after the TTL: 1 s, not the 60 s maximum. */
	ck_assert_msg(resolve_next_at(n) - resolve_good_at(n) < 1.5, "next lookup in %.1fs",
		      resolve_next_at(n) - resolve_good_at(n));

	dns_set(&d, "192.0.2.11 nas.lan\n");
	run_until(base, &s.calls, 2, 10);
	ck_assert_uint_eq(s.calls, 2);
	ck_assert_uint_eq(s.naddrs, 1);
	ck_assert_str_eq(s.first, "192.0.2.11");
	resolve_unwatch(n);
	resolve_free(r);
	dns_stop(&d);
	event_base_free(base);
}
END_TEST

/* A long TTL is cut to max, a short one raised to min. */
START_TEST(test_ttl_clamped)
{
	struct event_base *base = event_base_new();
	struct dns d;
	struct seen s1 = { 0 }, s2 = { 0 };
	struct resolve *r;
	struct resolve_name *a, *b;

	dns_start(&d, "192.0.2.20 long.lan\n", 3600);
	r = new_resolver(base, &d, NULL);
	a = resolve_watch(r, "long.lan", RESOLVE_IPV4, 1, 2, seen_cb, &s1);
	b = resolve_watch(r, "long.lan", RESOLVE_IPV4, 30, 300, seen_cb, &s2);
	run_until(base, &s1.calls, 1, 10);
	run_until(base, &s2.calls, 1, 10);
	ck_assert_int_eq(resolve_ttl(a), 3600);
	ck_assert_msg(resolve_next_at(a) - resolve_good_at(a) < 2.5, "max not applied: %.1fs",
		      resolve_next_at(a) - resolve_good_at(a));
	ck_assert_msg(resolve_next_at(b) - resolve_good_at(b) > 250, "max not applied: %.1fs",
		      resolve_next_at(b) - resolve_good_at(b));
	resolve_free(r); /* frees the watched names too */
	dns_stop(&d);

	dns_start(&d, "192.0.2.21 short.lan\n", 0);
	r = new_resolver(base, &d, NULL);
	a = resolve_watch(r, "short.lan", RESOLVE_IPV4, 5, 300, seen_cb, &s1);
	s1.calls = 0;
	run_until(base, &s1.calls, 1, 10);
	ck_assert_str_eq(s1.first, "192.0.2.21");
	ck_assert_msg(resolve_next_at(a) - resolve_good_at(a) > 4.5, "min not applied: %.1fs",
		      resolve_next_at(a) - resolve_good_at(a));
	resolve_free(r);
	dns_stop(&d);
	event_base_free(base);
}
END_TEST

/* A name that goes away: its last addresses stay, marked stale, with the error. */
START_TEST(test_disappears_stays_stale)
{
	struct event_base *base = event_base_new();
	struct dns d;
	struct seen s = { 0 };
	struct resolve *r;
	struct resolve_name *n;
	struct sockaddr_storage a[4];

	dns_start(&d, "192.0.2.30 gone.lan\n", 1);
	r = new_resolver(base, &d, NULL);
	n = resolve_watch(r, "gone.lan", RESOLVE_IPV4, 0.2, 60, seen_cb, &s);
	run_until(base, &s.calls, 1, 10);
	ck_assert_str_eq(s.first, "192.0.2.30");
	ck_assert(resolve_stale_since(n) == 0);
	dns_set(&d, "192.0.2.31 other.lan\n");
	run_until(base, &s.calls, 2, 10);
	ck_assert_uint_eq(s.calls, 2);
	ck_assert_str_eq(resolve_error(n), "no such name (NXDOMAIN)");
	ck_assert(resolve_stale_since(n) > 0);
	ck_assert_uint_eq(resolve_addrs(n, a, 4), 1); /* kept */
	ck_assert_str_eq(s.first, "192.0.2.30");
	/* It comes back: fresh again. */
	dns_set(&d, "192.0.2.32 gone.lan\n");
	run_until(base, &s.calls, 3, 15);
	ck_assert_uint_eq(s.calls, 3);
	ck_assert_str_eq(s.first, "192.0.2.32");
	ck_assert(resolve_stale_since(n) == 0);
	ck_assert_str_eq(resolve_error(n), "");
	resolve_free(r);
	dns_stop(&d);
	event_base_free(base);
}
END_TEST

/* Never resolved: no address, the error, and tries further and further apart. */
START_TEST(test_never_resolves_backs_off)
{
	struct event_base *base = event_base_new();
	struct dns d;
	struct seen s = { 0 };
	struct resolve *r;
	struct resolve_name *n;
	double gap1, gap2;

	dns_start(&d, "192.0.2.40 some.lan\n", 1);
	r = new_resolver(base, &d, NULL);
	n = resolve_watch(r, "missing.lan", RESOLVE_ANY, 0.3, 60, seen_cb, &s);
	run_until(base, &s.calls, 1, 10);
	ck_assert_uint_eq(s.naddrs, 0);
	ck_assert_str_eq(resolve_error(n), "no such name (NXDOMAIN)");
	/* Each failed try sets the next one further away: the waits, as
	 * seen right after each try. */
	{
		double waits[3], last = resolve_next_at(n), deadline = clock_now() + 10;
		int k = 0;

		waits[k++] = last - clock_now();
		while (k < 3 && clock_now() < deadline) {
			struct timeval tv = { 0, 10000 };

			event_base_loopexit(base, &tv);
			event_base_dispatch(base);
			if (resolve_next_at(n) != last) {
				last = resolve_next_at(n);
				waits[k++] = last - clock_now();
			}
		}
		ck_assert_int_eq(k, 3);
		gap1 = waits[1];
		gap2 = waits[2];
		ck_assert_msg(waits[0] > 0.2 && waits[0] < 0.4, "first wait %.2fs, not min", waits[0]);
		ck_assert_msg(gap1 > 0.5 && gap2 > gap1 * 1.7, "no back-off: %.2fs, %.2fs, %.2fs", waits[0],
			      gap1, gap2);
	}
	ck_assert_uint_eq(s.calls, 1);
	resolve_free(r);
	dns_stop(&d);
	event_base_free(base);
}
END_TEST

/* The hosts file answers first, with no DNS server at all. */
START_TEST(test_hosts_file_first)
{
	struct event_base *base = event_base_new();
	char dir[] = "/tmp/portfwd-hosts.XXXXXX", hosts[64];
	struct seen s = { 0 };
	struct resolve *r;
	struct resolve_name *n;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(hosts, sizeof(hosts), "%s/hosts", dir);
	dns_write_file(hosts, "# a comment\n198.51.100.7 printer.home printer\n");
	r = new_resolver(base, NULL, hosts); /* the DNS server is the discard port */
	n = resolve_watch(r, "printer", RESOLVE_ANY, 1, 30, seen_cb, &s);
	run_until(base, &s.calls, 1, 5);
	ck_assert_uint_eq(s.calls, 1);
	ck_assert_str_eq(s.first, "198.51.100.7");
	ck_assert_int_eq(resolve_ttl(n), -1);
	ck_assert_msg(resolve_next_at(n) - resolve_good_at(n) > 25, "a hosts entry is asked again after max");
	/* The file changes and is read again (a reload): the name follows now. */
	dns_write_file(hosts, "198.51.100.8 printer.home printer\n");
	resolve_reread_hosts(r);
	run_until(base, &s.calls, 2, 5);
	ck_assert_uint_eq(s.calls, 2);
	ck_assert_str_eq(s.first, "198.51.100.8");
	resolve_free(r);
	unlink(hosts);
	rmdir(dir);
	event_base_free(base);
}
END_TEST

/* A server that never answers: the lookup fails in bounded time with a
 * clear error; dropping the name while it is in flight, or freeing the
 * resolver, neither calls back nor leaks (ASan). */
START_TEST(test_silent_server_and_shutdown)
{
	struct event_base *base = event_base_new();
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int sink = socket(AF_INET, SOCK_DGRAM, 0);
	char server[32], err[128];
	const char *servers[1] = { server };
	struct seen s = { 0 }, dropped = { 0 }, inflight = { 0 };
	struct resolve *r;
	struct resolve_name *n, *m;
	double took;

	ck_assert_int_eq(bind(sink, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(sink, (struct sockaddr *)&sin, &len);
	snprintf(server, sizeof(server), "127.0.0.1:%u", ntohs(sin.sin_port));
	r = resolve_new(base, servers, 1, "/dev/null", err, sizeof(err));
	ck_assert_ptr_nonnull(r);
	n = resolve_watch(r, "silent.lan", RESOLVE_IPV4, 1, 60, seen_cb, &s);
	m = resolve_watch(r, "dropped.lan", RESOLVE_IPV4, 1, 60, seen_cb, &dropped);
	{
		unsigned never = 0;

		run_until(base, &never, 1, 0.3); /* both queries are out */
	}
	resolve_unwatch(m);
	took = run_until(base, &s.calls, 1, 15);
	ck_assert_uint_eq(s.calls, 1);
	ck_assert_msg(took < 10, "a silent server held the lookup %.1fs", took);
	ck_assert_str_eq(resolve_error(n), "the name servers did not answer");
	ck_assert_uint_eq(dropped.calls, 0);
	/* A name whose lookup is under way at the silent server when the
	 * hosts file gains it (a reload): the file's answer comes now, not
	 * when the lookup gives up. */
	{
		char dir[] = "/tmp/portfwd-hosts.XXXXXX", hosts[64];
		struct resolve *r2;
		struct seen h = { 0 };
		unsigned never = 0;
		double t0;

		ck_assert_ptr_nonnull(mkdtemp(dir));
		snprintf(hosts, sizeof(hosts), "%s/hosts", dir);
		dns_write_file(hosts, "# nothing yet\n");
		r2 = resolve_new(base, servers, 1, hosts, err, sizeof(err));
		ck_assert_ptr_nonnull(r2);
		resolve_watch(r2, "nas.home", RESOLVE_IPV4, 1, 300, seen_cb, &h);
		run_until(base, &never, 1, 0.3); /* its query is out */
		dns_write_file(hosts, "192.0.2.77 nas.home\n");
		resolve_reread_hosts(r2);
		t0 = clock_now();
		run_until(base, &h.calls, 1, 5);
		ck_assert_uint_eq(h.calls, 1);
		ck_assert_str_eq(h.first, "192.0.2.77");
		ck_assert_msg(clock_now() - t0 < 1, "the hosts file's answer took %.1fs", clock_now() - t0);
		resolve_free(r2);
		unlink(hosts);
		rmdir(dir);
	}
	/* One more in flight when the resolver goes. */
	resolve_watch(r, "late.lan", RESOLVE_ANY, 1, 60, seen_cb, &inflight);
	{
		unsigned never = 0;

		run_until(base, &never, 1, 0.3);
	}
	resolve_free(r);
	ck_assert_uint_eq(inflight.calls, 0);
	close(sink);
	event_base_free(base);
}
END_TEST

START_TEST(test_bad_servers_and_families)
{
	struct event_base *base = event_base_new();
	const char *bad[] = { "nas.lan:53" };
	char err[256] = "";

	ck_assert_ptr_null(resolve_new(base, bad, 1, NULL, err, sizeof(err)));
	ck_assert_msg(strstr(err, "resolver \"nas.lan:53\" is not an IP address"), "%s", err);
	ck_assert_int_eq(resolve_family_parse("any"), RESOLVE_ANY);
	ck_assert_int_eq(resolve_family_parse("ipv4"), RESOLVE_IPV4);
	ck_assert_int_eq(resolve_family_parse("ipv6"), RESOLVE_IPV6);
	ck_assert_int_eq(resolve_family_parse("IPv5"), -1);
	ck_assert_str_eq(resolve_family_name(RESOLVE_IPV6), "ipv6");
	event_base_free(base);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("resolve");
	TCase *tc = tcase_create("resolve");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_ttl_and_change);
	tcase_add_test(tc, test_ttl_clamped);
	tcase_add_test(tc, test_disappears_stays_stale);
	tcase_add_test(tc, test_never_resolves_backs_off);
	tcase_add_test(tc, test_hosts_file_first);
	tcase_add_test(tc, test_silent_server_and_shutdown);
	tcase_add_test(tc, test_bad_servers_and_families);
	suite_add_tcase(s, tc);
	return check_run(s);
}
