/* Address parsing and formatting, names, protocols, port ranges. */
#include <arpa/inet.h>
#include <check.h>
#include <jansson.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "portinfo.h"
#include "rule.h"
#include "check_run.h"
#include "services_file.h"

static const struct {
	const char *text;
	const char *formatted; /* NULL: must be rejected */
	const char *error;     /* part of the message for a rejected one */
} addrs[] = {
	{ "0.0.0.0:2222", "0.0.0.0:2222", NULL },
	{ "192.168.0.2:22", "192.168.0.2:22", NULL },
	{ "127.0.0.1:1", "127.0.0.1:1", NULL },
	{ "127.0.0.1:65535", "127.0.0.1:65535", NULL },
	{ "[::]:8080", "[::]:8080", NULL },
	{ "[::1]:53", "[::1]:53", NULL },
	{ "[2001:DB8:0:0::1]:443", "[2001:db8::1]:443", NULL },
	{ "[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.1]:80", NULL },
	{ "127.0.0.1:0", NULL, "port 0 is out of range (1-65535)" },
	{ "127.0.0.1:65536", NULL, "port 65536 is out of range (1-65535)" },
	{ "127.0.0.1:99999999", NULL, "port 99999999 is out of range" },
	{ "127.0.0.1:99999999999", NULL, "is not a number" },
	{ "127.0.0.1:", NULL, "port \"\" is not a number" },
	{ "127.0.0.1:8o", NULL, "port \"8o\" is not a number" },
	{ "127.0.0.1:-1", NULL, "is not a number" },
	{ "127.0.0.1", NULL, "missing port" },
	{ "localhost:80", NULL, "host names are not resolved" },
	{ "example.com:80", NULL, "host names are not resolved" },
	{ "1.2.3:80", NULL, "not a numeric IPv4 address" },
	{ "::1:80", NULL, "must be in brackets" },
	{ "[::1]", NULL, "missing port" },
	{ "[::1:80", NULL, "missing \"]\"" },
	{ "[1.2.3.4]:80", NULL, "not a numeric IPv6 address" },
	{ "[fe80::1%eth0]:80", NULL, "not a numeric IPv6 address" },
	{ "", NULL, "missing port" },
	{ ":80", NULL, "not a numeric IPv4 address" },
};

START_TEST(test_parse_addr)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256], out[RULE_ADDR_STRLEN];
	int rc = rule_parse_addr(addrs[_i].text, &ss, &len, err, sizeof(err));

	if (addrs[_i].formatted) {
		ck_assert_msg(rc == 0, "\"%s\" rejected: %s", addrs[_i].text, err);
		ck_assert_str_eq(rule_format_addr((struct sockaddr *)&ss, out, sizeof(out)),
				 addrs[_i].formatted);
		ck_assert_int_eq(len, ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
							      : sizeof(struct sockaddr_in6));
	} else {
		ck_assert_msg(rc == -1, "\"%s\" accepted", addrs[_i].text);
		ck_assert_msg(strstr(err, addrs[_i].error) != NULL, "\"%s\": message \"%s\" lacks \"%s\"",
			      addrs[_i].text, err, addrs[_i].error);
	}
}
END_TEST

/* TEXT parsed for PROTO: the port, or 0 with the error in ERR. */
static unsigned port_of(const char *text, unsigned proto, char *err, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl;

	if (rule_parse_addr_for(text, proto, &ss, &sl, err, len) < 0)
		return 0;
	return rule_addr_port((struct sockaddr *)&ss);
}

#define TCP RULE_PROTO_TCP
#define UDP RULE_PROTO_UDP
#define BOTH (RULE_PROTO_TCP | RULE_PROTO_UDP)

/* The test services file (NULL: an empty one) over /etc/services, read
 * again by portinfo. */
static bool services_file(const char *file)
{
	if (!test_services_file(file))
		return false;
	portinfo_set_services_path(NULL);
	return true;
}

/*
 * A service name for the port, as the rule's protocol has it, from a
 * services file of the test's own (tests/conf/services.test) and
 * portinfo's table: aliases, any case, a name that starts with a digit, an
 * entry after a line longer than the first buffer; a tcp+udp rule needs
 * the name for both protocols, and one that is two ports must be a number;
 * an unknown name suggests the closest (within a budget); without a
 * protocol only numbers.
 */
START_TEST(test_service_names)
{
	static const struct {
		const char *text;
		unsigned proto, port; /* 0: refused */
		const char *error;
	} cases[] = {
		{ "192.168.0.2:ssh", TCP, 22, NULL },
		{ "192.168.0.2:SSH", TCP, 22, NULL },
		{ "[fd00::2]:webcache", TCP, 8080, NULL },
		{ "[::]:domain", BOTH, 53, NULL },
		{ "0.0.0.0:9pfs", TCP, 564, NULL },
		{ "0.0.0.0:after-long", TCP, 4002, NULL },
		{ "0.0.0.0:split", TCP, 1000, NULL },
		{ "0.0.0.0:split", UDP, 1001, NULL },
		{ "0.0.0.0:minecraft", BOTH, 25565, NULL },
		{ "0.0.0.0:wireguard", UDP, 51820, NULL },
		{ "0.0.0.0:Home-Assistant", TCP, 8123, NULL },
		{ "0.0.0.0:split", BOTH, 0, "\"0.0.0.0:split\": service \"split\" is port 1000 for TCP and 1001 for UDP: give the number" },
		{ "0.0.0.0:ssh", BOTH, 0, "\"0.0.0.0:ssh\": service \"ssh\" is TCP only (port 22), and this rule is tcp+udp: give the number" },
		{ "0.0.0.0:wireguard", TCP, 0, "\"0.0.0.0:wireguard\": service \"wireguard\" is UDP only (port 51820), and this rule is tcp" },
		{ "192.168.0.2:shh", TCP, 0,
		  "\"192.168.0.2:shh\": no service \"shh\" for tcp in the services database or portfwd's own table (did you mean \"ssh\"?)" },
		{ "192.168.0.2:Shh", TCP, 0, "(did you mean \"ssh\"?)" },
		{ "192.168.0.2:plexx", TCP, 0, "(did you mean \"plex\"?)" },
		{ "192.168.0.2:zzzzzzzzzz", TCP, 0, "no service \"zzzzzzzzzz\" for tcp in the services database or portfwd's own table" },
		{ "0.0.0.0:8o", TCP, 0, "\"0.0.0.0:8o\": port \"8o\" is not a number (nor a known service name)" },
		{ "0.0.0.0:+80", TCP, 0, "port \"+80\" is not a number" },
	};
	char err[512];

	if (!services_file("tests/conf/services.test"))
		return;
	portinfo_suggest_budget(100);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned port = port_of(cases[i].text, cases[i].proto, err, sizeof(err));

		if (cases[i].port) {
			ck_assert_msg(port == cases[i].port, "%s (proto %u): %u, %s", cases[i].text,
				      cases[i].proto, port, port ? "" : err);
		} else {
			ck_assert_msg(port == 0, "%s accepted", cases[i].text);
			ck_assert_msg(strstr(err, cases[i].error), "%s: %s", cases[i].text, err);
			if (!strstr(cases[i].error, "did you mean"))
				ck_assert_msg(!strstr(err, "did you mean"), "%s: %s", cases[i].text, err);
		}
	}
	/* A rule with a bad proto: a name of either protocol, no second error. */
	ck_assert_uint_eq(port_of("0.0.0.0:ssh", RULE_PROTO_ANY, err, sizeof(err)), 22);
	/* Numbers only where no protocol says how to look a name up. */
	ck_assert_uint_eq(port_of("192.168.0.2:ssh", 0, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "port \"ssh\" is not a number"), "%s", err);
	/* Suggestions within their budget only: a file of typos stays cheap. */
	portinfo_suggest_budget(1);
	ck_assert_uint_eq(port_of("0.0.0.0:shh", TCP, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "did you mean"), "%s", err);
	ck_assert_uint_eq(port_of("0.0.0.0:shh", TCP, err, sizeof(err)), 0);
	ck_assert_msg(!strstr(err, "did you mean"), "%s", err);
}
END_TEST

/*
 * Names by port, as status, rules and the log show them: the first entry
 * of the file for the protocol (not an alias, not a later entry), then
 * portinfo's table, which the database overrides; a tcp+udp rule's port
 * with two names shows both; the class always.
 */
START_TEST(test_service_names_by_port)
{
	static const struct {
		unsigned port, proto;
		const char *describe;
	} cases[] = {
		{ 22, TCP, "ssh, well-known" },
		{ 22, UDP, "well-known" }, /* ssh is TCP only in this file */
		{ 22, BOTH, "ssh, well-known" },
		{ 53, BOTH, "domain, well-known" },
		{ 8080, TCP, "http-alt, registered" },
		{ 7000, TCP, "first, registered" },
		{ 7001, TCP, "registered" },
		{ 7001, UDP, "udponly, registered" },
		{ 7001, BOTH, "udponly, registered" },
		{ 7002, BOTH, "tcpside/udpside, registered" },
		{ 32400, TCP, "myplex, registered" },
		{ 25565, UDP, "minecraft, registered" },
		{ 51820, UDP, "wireguard, dynamic" },
		{ 51820, TCP, "dynamic" },
		{ 8123, TCP, "home-assistant, registered" },
		{ 40000, TCP, "registered" },
		{ 60000, BOTH, "dynamic" },
		{ 1023, TCP, "well-known" },
		/* The table only where the database names neither protocol. */
		{ 3389, BOTH, "ms-wbt-server, registered" },
		{ 3389, TCP, "ms-wbt-server, registered" },
		{ 3389, UDP, "rdp, registered" },
		/* Names that are not plain ASCII of a sane length are skipped. */
		{ 7003, TCP, "registered" },
		{ 7004, TCP, "registered" },
	};
	struct sockaddr_storage ss;
	struct rule_config r;
	socklen_t sl;
	json_t *j;
	char buf[128];

	if (!services_file("tests/conf/services.test"))
		return;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(strcmp(portinfo_describe(cases[i].port, cases[i].proto, buf, sizeof(buf)),
				     cases[i].describe) == 0,
			      "%u/%u: \"%s\", want \"%s\"", cases[i].port, cases[i].proto, buf,
			      cases[i].describe);
	ck_assert(!portinfo_service_name(0, TCP, buf, sizeof(buf)));
	ck_assert_str_eq(buf, "");
	ck_assert(!portinfo_service_name(70000, TCP, buf, sizeof(buf)));
	/* A short buffer gets a cut name, never an overrun. */
	ck_assert(portinfo_service_name(8123, TCP, buf, 5));
	ck_assert_str_eq(buf, "home");

	/* A rule's ports as status, rules, check and the log show them. */
	memset(&r, 0, sizeof(r));
	r.proto = TCP;
	ck_assert_int_eq(rule_parse_addr_for("0.0.0.0:7000", TCP, &r.listen, &sl, buf, sizeof(buf)), 0);
	ck_assert_int_eq(rule_parse_addr_for("[fd00::2]:webcache", TCP, &r.target, &sl, buf, sizeof(buf)), 0);
	rule_name_ports(&r);
	ck_assert_str_eq(r.listen_service, "first");
	ck_assert_str_eq(r.target_service, "http-alt");
	{
		char route[RULE_ROUTE_STRLEN];

		ck_assert_str_eq(rule_format_route(&r, route, sizeof(route)),
				 "0.0.0.0:7000 (first, registered) -> [fd00::2]:8080 (http-alt, registered)");
	}
	j = rule_port_json((struct sockaddr *)&r.target, r.target_service);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "port")), 8080);
	ck_assert_str_eq(json_string_value(json_object_get(j, "service")), "http-alt");
	ck_assert_str_eq(json_string_value(json_object_get(j, "class")), "registered");
	json_decref(j);
	ck_assert_int_eq(rule_parse_addr("127.0.0.1:60000", &ss, &sl, buf, sizeof(buf)), 0);
	j = rule_port_json((struct sockaddr *)&ss, "");
	ck_assert(json_is_null(json_object_get(j, "service")));
	ck_assert_str_eq(json_string_value(json_object_get(j, "class")), "dynamic");
	json_decref(j);
	ck_assert_str_eq(rule_format_port((struct sockaddr *)&ss, "", buf, sizeof(buf)),
			 "127.0.0.1:60000 (dynamic)");
}
END_TEST

/* No services database (netbase missing): names of portinfo's table still
 * work; any other says what is missing. */
START_TEST(test_service_names_without_netbase)
{
	char err[512];

	if (!services_file(NULL))
		return;
	ck_assert_uint_eq(port_of("0.0.0.0:plex", TCP, err, sizeof(err)), 32400);
	ck_assert_uint_eq(port_of("0.0.0.0:ssh", TCP, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "\"0.0.0.0:ssh\": no service \"ssh\" in portfwd's own table, and the services database is empty (no /etc/services: install netbase)");
	ck_assert_str_eq(portinfo_describe(22, TCP, err, sizeof(err)), "well-known");
	ck_assert_str_eq(portinfo_describe(32400, TCP, err, sizeof(err)), "plex, registered");
}
END_TEST

START_TEST(test_addr_equal_and_port)
{
	struct sockaddr_storage a, b;
	socklen_t len;
	char err[128];

	ck_assert_int_eq(rule_parse_addr("[::]:53", &a, &len, err, sizeof(err)), 0);
	ck_assert_int_eq(rule_parse_addr("[0:0::0]:53", &b, &len, err, sizeof(err)), 0);
	ck_assert(rule_addr_equal((struct sockaddr *)&a, (struct sockaddr *)&b));
	ck_assert_int_eq(rule_addr_port((struct sockaddr *)&a), 53);
	ck_assert_int_eq(rule_parse_addr("0.0.0.0:53", &b, &len, err, sizeof(err)), 0);
	ck_assert(!rule_addr_equal((struct sockaddr *)&a, (struct sockaddr *)&b));
	ck_assert_int_eq(rule_parse_addr("0.0.0.0:54", &a, &len, err, sizeof(err)), 0);
	ck_assert(!rule_addr_equal((struct sockaddr *)&a, (struct sockaddr *)&b));
}
END_TEST

START_TEST(test_names_and_protos)
{
	char longest[65], too_long[66];

	memset(longest, 'a', 64);
	longest[64] = '\0';
	memset(too_long, 'a', 65);
	too_long[65] = '\0';
	ck_assert(rule_name_valid("ssh"));
	ck_assert(rule_name_valid("game.1_x-Y"));
	ck_assert(rule_name_valid(longest));
	ck_assert(!rule_name_valid(too_long));
	ck_assert(!rule_name_valid(""));
	ck_assert(!rule_name_valid("my rule"));
	ck_assert(!rule_name_valid("a/b"));
	ck_assert(!rule_name_valid("ü"));
	ck_assert_int_eq(rule_proto_parse("tcp"), RULE_PROTO_TCP);
	ck_assert_int_eq(rule_proto_parse("udp"), RULE_PROTO_UDP);
	ck_assert_int_eq(rule_proto_parse("tcp+udp"), RULE_PROTO_BOTH);
	ck_assert_int_eq(rule_proto_parse("udp+tcp"), 0);
	ck_assert_int_eq(rule_proto_parse("TCP"), 0);
	ck_assert_str_eq(rule_proto_name(RULE_PROTO_BOTH), "tcp+udp");
}
END_TEST

/* Which bound addresses keep each other out: what a UDP takeover looks for. */
START_TEST(test_addr_collide)
{
	static const struct {
		const char *a, *b;
		bool collide;
	} cases[] = {
		{ "0.0.0.0:53", "192.168.1.1:53", true },
		{ "192.168.1.1:53", "0.0.0.0:53", true },
		{ "127.0.0.1:53", "127.0.0.1:53", true },
		{ "127.0.0.1:53", "127.0.0.2:53", false },
		{ "0.0.0.0:53", "0.0.0.0:54", false },
		{ "[::]:53", "[fd00::1]:53", true },
		{ "[::]:53", "0.0.0.0:53", false }, /* IPV6_V6ONLY */
		{ "[::]:53", "127.0.0.1:53", false },
		{ "[::1]:53", "[::2]:53", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage a, b;
		socklen_t la, lb;
		char why[256];

		ck_assert_int_eq(rule_parse_addr(cases[i].a, &a, &la, why, sizeof(why)), 0);
		ck_assert_int_eq(rule_parse_addr(cases[i].b, &b, &lb, why, sizeof(why)), 0);
		ck_assert_msg(rule_addr_collide((struct sockaddr *)&a, (struct sockaddr *)&b) ==
				      cases[i].collide,
			      "%s and %s: expected %s", cases[i].a, cases[i].b,
			      cases[i].collide ? "a collision" : "none");
	}
}
END_TEST

START_TEST(test_port_ranges)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(80) };
	char why[256];

	ck_assert_str_eq(portinfo_range(0), "well-known");
	ck_assert_str_eq(portinfo_range(1023), "well-known");
	ck_assert_str_eq(portinfo_range(1024), "registered");
	ck_assert_str_eq(portinfo_range(49151), "registered");
	ck_assert_str_eq(portinfo_range(49152), "dynamic");
	ck_assert_str_eq(portinfo_range(65535), "dynamic");
	portinfo_bind_error(EACCES, SOCK_STREAM, (struct sockaddr *)&sin, why, sizeof(why));
	ck_assert_str_eq(why, "permission denied: port 80 is in the well-known range (0-1023) and needs root or CAP_NET_BIND_SERVICE");
}
END_TEST

/* A reload compares proxy_protocol and source: a change makes a new
 * snapshot for new connections (rule_config_equal false). */
START_TEST(test_equal_proxy_and_source)
{
	struct rule_config a, b;
	char err[128];

	memset(&a, 0, sizeof(a));
	snprintf(a.name, sizeof(a.name), "web");
	a.proto = RULE_PROTO_TCP;
	rule_settings_init(&a.set);
	ck_assert_int_eq(rule_parse_addr("127.0.0.1:8080", &a.listen, &a.listen_len, err, sizeof(err)), 0);
	ck_assert_int_eq(rule_parse_addr("127.0.0.1:80", &a.target, &a.target_len, err, sizeof(err)), 0);
	b = a;
	ck_assert(rule_config_equal(&a, &b));
	b.set.proxy_protocol = 2;
	ck_assert(!rule_settings_equal(&a.set, &b.set));
	ck_assert(!rule_config_equal(&a, &b));
	b = a;
	b.source_len = sizeof(struct sockaddr_in);
	((struct sockaddr_in *)&b.source)->sin_family = AF_INET;
	inet_pton(AF_INET, "127.0.0.2", &((struct sockaddr_in *)&b.source)->sin_addr);
	ck_assert(!rule_config_equal(&a, &b));
	a.source = b.source;
	a.source_len = b.source_len;
	ck_assert(rule_config_equal(&a, &b));
	inet_pton(AF_INET, "127.0.0.3", &((struct sockaddr_in *)&b.source)->sin_addr);
	ck_assert(!rule_config_equal(&a, &b));
	{
		char host[RULE_ADDR_STRLEN];

		ck_assert_str_eq(rule_format_host((struct sockaddr *)&b.source, host, sizeof(host)), "127.0.0.3");
	}
}
END_TEST

/* "addr:first-last": parsed, formatted, mapped port by port; every bad
 * range refused with what is wrong. */
START_TEST(test_listen_ranges)
{
	static const struct {
		const char *text;
		unsigned first, last; /* last 0: a single port */
		const char *error;    /* part of the message, for a refused one */
	} cases[] = {
		{ "0.0.0.0:27015-27030", 27015, 27030, NULL },
		{ "[::]:6000-6010", 6000, 6010, NULL },
		{ "127.0.0.1:7000-7000", 7000, 0, NULL },
		{ "127.0.0.1:1-4096", 1, 4096, NULL },
		{ "127.0.0.1:1-4097", 0, 0, "has 4097 ports; a rule may have at most 4096" },
		{ "127.0.0.1:3000-2000", 0, 0, "runs backwards" },
		{ "127.0.0.1:0-10", 0, 0, "port 0 is out of range (1-65535)" },
		{ "127.0.0.1:65530-65536", 0, 0, "port 65536 is out of range" },
		{ "127.0.0.1:80-http", 0, 0, "is not two numbers as in 27015-27030 (no service names" },
		{ "127.0.0.1:80--90", 0, 0, "is not two numbers" },
		{ "127.0.0.1:80-", 0, 0, "is not two numbers" },
		{ "localhost:80-90", 0, 0, "\"localhost:80-90\": \"localhost\" is not a numeric IPv4 address" },
	};
	struct sockaddr_storage ss;
	socklen_t len;
	unsigned last;
	char why[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = rule_parse_range(cases[i].text, 0, &ss, &len, &last, why, sizeof(why));

		if (cases[i].error) {
			ck_assert_msg(rc < 0, "%s accepted", cases[i].text);
			ck_assert_msg(strstr(why, cases[i].error), "%s: %s", cases[i].text, why);
			continue;
		}
		ck_assert_msg(rc == 0, "%s: %s", cases[i].text, why);
		ck_assert_uint_eq(rule_addr_port((struct sockaddr *)&ss), cases[i].first);
		ck_assert_uint_eq(last, cases[i].last);
	}
	/* A service name still stands for a single port. */
	ck_assert_int_eq(rule_parse_range("127.0.0.1:ssh", RULE_PROTO_TCP, &ss, &len, &last, why, sizeof(why)), 0);
	ck_assert_uint_eq(rule_addr_port((struct sockaddr *)&ss), 22);
	ck_assert_uint_eq(last, 0);
}
END_TEST

/* A rule from its listen and target texts (ranges allowed). */
static void range_rule(struct rule_config *r, const char *name, unsigned proto, const char *listen,
		       const char *target)
{
	unsigned tlast;
	char why[256];

	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->proto = proto;
	ck_assert_int_eq(rule_parse_range(listen, 0, &r->listen, &r->listen_len, &r->listen_last, why, sizeof(why)), 0);
	ck_assert_int_eq(rule_parse_range(target, 0, &r->target, &r->target_len, &tlast, why, sizeof(why)), 0);
	r->target_range = tlast != 0;
}

START_TEST(test_range_mapping_and_collisions)
{
	struct rule_config a, b;
	char buf[RULE_ADDR_STRLEN], route[RULE_ROUTE_STRLEN];

	range_rule(&a, "game", RULE_PROTO_TCP, "0.0.0.0:27015-27030", "192.168.0.5:37015-37030");
	ck_assert(rule_is_range(&a));
	ck_assert_uint_eq(rule_nports(&a), 16);
	ck_assert_uint_eq(rule_target_port(&a, 27015), 37015);
	ck_assert_uint_eq(rule_target_port(&a, 27030), 37030);
	ck_assert_str_eq(rule_format_listen(&a, buf, sizeof(buf)), "0.0.0.0:27015-27030");
	ck_assert_str_eq(rule_format_target(&a, buf, sizeof(buf)), "192.168.0.5:37015-37030");
	ck_assert_str_eq(rule_format_route(&a, route, sizeof(route)),
			 "0.0.0.0:27015-27030 (registered) -> 192.168.0.5:37015-37030 (registered)");
	/* All to one. */
	range_rule(&b, "game", RULE_PROTO_TCP, "[::]:6000-6010", "[::1]:7000");
	ck_assert(!b.target_range);
	ck_assert_uint_eq(rule_target_port(&b, 6000), 7000);
	ck_assert_uint_eq(rule_target_port(&b, 6010), 7000);
	ck_assert_str_eq(rule_format_listen(&b, buf, sizeof(buf)), "[::]:6000-6010");
	ck_assert_str_eq(rule_format_target(&b, buf, sizeof(buf)), "[::1]:7000");
	/* A 4096-port IPv6 range fits the buffer. */
	range_rule(&b, "x", RULE_PROTO_TCP, "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:60000-64095",
		   "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:10000-14095");
	ck_assert_str_eq(rule_format_listen(&b, buf, sizeof(buf)),
			 "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:60000-64095");

	/* Collisions: a port in common, the same address or a wildcard. */
	range_rule(&b, "other", RULE_PROTO_TCP, "127.0.0.1:27030-27040", "192.168.0.5:1");
	ck_assert(rule_listen_collide(&a, &b));
	range_rule(&b, "other", RULE_PROTO_TCP, "127.0.0.1:27031-27040", "192.168.0.5:1");
	ck_assert(!rule_listen_collide(&a, &b));
	range_rule(&b, "other", RULE_PROTO_TCP, "[::]:27015-27030", "192.168.0.5:1");
	ck_assert(!rule_listen_collide(&a, &b)); /* IPv6 only */
	range_rule(&a, "game", RULE_PROTO_TCP, "127.0.0.1:27015-27030", "192.168.0.5:1");
	range_rule(&b, "other", RULE_PROTO_TCP, "127.0.0.2:27015-27030", "192.168.0.5:1");
	ck_assert(!rule_listen_collide(&a, &b));

	/* Across a reload: the same name, proto and address with a port in
	 * common is the same rule, its range changed. */
	range_rule(&a, "game", RULE_PROTO_TCP, "0.0.0.0:27015-27030", "192.168.0.5:27015-27030");
	range_rule(&b, "game", RULE_PROTO_TCP, "0.0.0.0:27020-27040", "192.168.0.5:27020-27040");
	ck_assert(!rule_same_listener(&a, &b));
	ck_assert(rule_same_range_rule(&a, &b));
	ck_assert(!rule_config_equal(&a, &b));
	range_rule(&b, "game", RULE_PROTO_TCP, "0.0.0.0:27031-27040", "192.168.0.5:27031-27040");
	ck_assert(!rule_same_range_rule(&a, &b));
	range_rule(&b, "other", RULE_PROTO_TCP, "0.0.0.0:27020-27040", "192.168.0.5:27020-27040");
	ck_assert(!rule_same_range_rule(&a, &b));
	range_rule(&b, "game", RULE_PROTO_UDP, "0.0.0.0:27020-27040", "192.168.0.5:27020-27040");
	ck_assert(!rule_same_range_rule(&a, &b));
	range_rule(&b, "game", RULE_PROTO_TCP, "0.0.0.0:27015-27030", "192.168.0.5:27015-27030");
	ck_assert(rule_same_listener(&a, &b));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("rule");
	TCase *tc = tcase_create("rule");

	tcase_add_loop_test(tc, test_parse_addr, 0, (int)(sizeof(addrs) / sizeof(addrs[0])));
	tcase_add_test(tc, test_service_names);
	tcase_add_test(tc, test_service_names_by_port);
	tcase_add_test(tc, test_service_names_without_netbase);
	tcase_add_test(tc, test_addr_equal_and_port);
	tcase_add_test(tc, test_names_and_protos);
	tcase_add_test(tc, test_addr_collide);
	tcase_add_test(tc, test_port_ranges);
	tcase_add_test(tc, test_equal_proxy_and_source);
	tcase_add_test(tc, test_listen_ranges);
	tcase_add_test(tc, test_range_mapping_and_collisions);
	suite_add_tcase(s, tc);
	return check_run(s);
}
