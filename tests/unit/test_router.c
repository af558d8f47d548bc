/*
 * The router mapper's pure parts: the method names the configuration
 * takes, and which external addresses the internet cannot reach (the
 * carrier-grade NAT warning). The mapping itself is tested against a real
 * router (miniupnpd) in tests/integration/test_router.c.
 */
#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "router.h"
#include "check_run.h"

static const char *why(const char *text)
{
	struct in_addr a;

	ck_assert_int_eq(inet_pton(AF_INET, text, &a), 1);
	return router_private_reason(a);
}

START_TEST(test_private_reason)
{
	/* Carrier-grade NAT, RFC 6598: 100.64.0.0/10 and only that. */
	ck_assert_ptr_nonnull(strstr(why("100.64.0.1"), "carrier-grade"));
	ck_assert_ptr_nonnull(strstr(why("100.127.255.254"), "carrier-grade"));
	ck_assert_ptr_null(why("100.63.255.255"));
	ck_assert_ptr_null(why("100.128.0.1"));
	/* RFC 1918, at the edges of each block. */
	ck_assert_ptr_nonnull(strstr(why("10.0.0.1"), "RFC 1918"));
	ck_assert_ptr_nonnull(strstr(why("10.255.255.255"), "RFC 1918"));
	ck_assert_ptr_nonnull(strstr(why("172.16.0.1"), "RFC 1918"));
	ck_assert_ptr_nonnull(strstr(why("172.31.255.255"), "RFC 1918"));
	ck_assert_ptr_null(why("172.15.255.255"));
	ck_assert_ptr_null(why("172.32.0.0"));
	ck_assert_ptr_nonnull(strstr(why("192.168.1.1"), "RFC 1918"));
	ck_assert_ptr_null(why("192.169.0.1"));
	ck_assert_ptr_nonnull(strstr(why("169.254.3.4"), "link-local"));
	ck_assert_ptr_nonnull(strstr(why("0.0.0.0"), "no external address"));
	/* Public ones (the test router's WAN among them). */
	ck_assert_ptr_null(why("11.0.0.1"));
	ck_assert_ptr_null(why("203.0.113.7"));
	ck_assert_ptr_null(why("8.8.8.8"));
}
END_TEST

START_TEST(test_method_names)
{
	static const char *const names[] = { "off", "auto", "upnp", "natpmp", "pcp" };

	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(router_method_parse(names[i]), i);
		ck_assert_str_eq(router_method_name((unsigned)i), names[i]);
	}
	ck_assert_int_eq(router_method_parse("UPNP"), -1);
	ck_assert_int_eq(router_method_parse("nat-pmp"), -1);
	ck_assert_int_eq(router_method_parse(""), -1);
	ck_assert_int_eq(ROUTER_OFF, 0); /* a rule's default */
}
END_TEST

/* What a rule asks for: its ports, protocols, address and external port. */
START_TEST(test_want_of)
{
	struct rule_config r;
	struct router_want w;
	char err[256];

	memset(&r, 0, sizeof(r));
	rule_settings_init(&r.set);
	snprintf(r.name, sizeof(r.name), "game");
	r.proto = RULE_PROTO_BOTH;
	ck_assert_int_eq(rule_parse_range("192.168.0.10:27015-27030", RULE_PROTO_BOTH, &r.listen, &r.listen_len,
					  &r.listen_last, err, sizeof(err)), 0);
	ck_assert(!router_want_of(&r, &w)); /* off by default */
	r.set.router = ROUTER_UPNP;
	r.external_port = 37015;
	ck_assert(router_want_of(&r, &w));
	ck_assert_str_eq(w.rule, "game");
	ck_assert(w.tcp && w.udp);
	ck_assert_uint_eq(w.port, 27015);
	ck_assert_uint_eq(w.port_last, 27030);
	ck_assert_uint_eq(w.external, 37015);
	ck_assert_uint_eq(w.lease, ROUTER_LEASE_DEFAULT);
	ck_assert_uint_eq(ntohl(w.internal.s_addr), 0xc0a8000a);
	/* 0.0.0.0: this host's address towards the router, found then. */
	ck_assert_int_eq(rule_parse_range("0.0.0.0:2222", RULE_PROTO_TCP, &r.listen, &r.listen_len, &r.listen_last,
					  err, sizeof(err)), 0);
	r.proto = RULE_PROTO_TCP;
	r.external_port = 0;
	ck_assert(router_want_of(&r, &w));
	ck_assert(w.tcp && !w.udp);
	ck_assert_uint_eq(w.port_last, 2222);
	ck_assert_uint_eq(w.external, 2222);
	ck_assert_uint_eq(w.internal.s_addr, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("router");
	TCase *tc = tcase_create("router");

	tcase_add_test(tc, test_private_reason);
	tcase_add_test(tc, test_method_names);
	tcase_add_test(tc, test_want_of);
	suite_add_tcase(s, tc);
	return check_run(s);
}
