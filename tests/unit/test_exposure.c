/*
 * Exposure warnings (what a rule opens to the internet) and interface
 * names: the rules of src/exposure.c and src/iface.c, case by case.
 */
#include <arpa/inet.h>
#include <check.h>
#include <ifaddrs.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "exposure.h"
#include "iface.h"
#include "sysports.h"
#include "check_run.h"

static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256];

	ck_assert_msg(rule_parse_addr(text, &ss, &len, err, sizeof(err)) == 0, "%s: %s", text, err);
	return ss;
}

static enum exposure_addr class_of(const char *text)
{
	struct sockaddr_storage ss = addr(text);

	return exposure_addr_class((const struct sockaddr *)&ss);
}

START_TEST(test_address_classes)
{
	static const struct {
		const char *addr;
		enum exposure_addr class;
	} cases[] = {
		{ "0.0.0.0:1", EXPOSURE_ADDR_WILDCARD },
		{ "[::]:1", EXPOSURE_ADDR_WILDCARD },
		{ "127.0.0.1:1", EXPOSURE_ADDR_LOOPBACK },
		{ "127.255.0.9:1", EXPOSURE_ADDR_LOOPBACK },
		{ "[::1]:1", EXPOSURE_ADDR_LOOPBACK },
		{ "10.0.0.1:1", EXPOSURE_ADDR_PRIVATE },
		{ "10.255.255.255:1", EXPOSURE_ADDR_PRIVATE },
		{ "172.16.0.1:1", EXPOSURE_ADDR_PRIVATE },
		{ "172.31.255.254:1", EXPOSURE_ADDR_PRIVATE },
		{ "172.15.255.255:1", EXPOSURE_ADDR_PUBLIC },
		{ "172.32.0.0:1", EXPOSURE_ADDR_PUBLIC },
		{ "192.168.1.1:1", EXPOSURE_ADDR_PRIVATE },
		{ "192.169.0.1:1", EXPOSURE_ADDR_PUBLIC },
		{ "100.64.0.1:1", EXPOSURE_ADDR_PRIVATE },
		{ "100.127.255.255:1", EXPOSURE_ADDR_PRIVATE },
		{ "100.63.255.255:1", EXPOSURE_ADDR_PUBLIC },
		{ "100.128.0.0:1", EXPOSURE_ADDR_PUBLIC },
		{ "169.254.3.4:1", EXPOSURE_ADDR_LINK_LOCAL },
		{ "8.8.8.8:1", EXPOSURE_ADDR_PUBLIC },
		{ "198.51.100.7:1", EXPOSURE_ADDR_PUBLIC },
		{ "[fd12:3456::1]:1", EXPOSURE_ADDR_PRIVATE },
		{ "[fc00::1]:1", EXPOSURE_ADDR_PRIVATE },
		{ "[fe80::1]:1", EXPOSURE_ADDR_LINK_LOCAL },
		{ "[2001:db8::1]:1", EXPOSURE_ADDR_PUBLIC },
		{ "[fe00::1]:1", EXPOSURE_ADDR_PUBLIC },
		/* IPv4-mapped: as the IPv4 address. */
		{ "[::ffff:192.168.0.1]:1", EXPOSURE_ADDR_PRIVATE },
		{ "[::ffff:203.0.113.1]:1", EXPOSURE_ADDR_PUBLIC },
		{ "[::ffff:0.0.0.0]:1", EXPOSURE_ADDR_WILDCARD },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(class_of(cases[i].addr) == cases[i].class, "%s: class %d, want %d",
			      cases[i].addr, class_of(cases[i].addr), cases[i].class);
}
END_TEST

/* CFG with N rules, each "NAME PROTO LISTEN TARGET [INTERFACE]", on lines
 * 1 to N of FILE, as config_load would give them. */
static void make_config(struct config *cfg, const char *const *rules, size_t n)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->path = strdup("FILE");
	cfg->rules = calloc(n, sizeof(*cfg->rules));
	cfg->nrules = n;
	for (size_t i = 0; i < n; i++) {
		struct rule_config *r = &cfg->rules[i];
		char name[65], proto[16], listen[64], target[64], ifname[32] = "";

		ck_assert_int_ge(sscanf(rules[i], "%64s %15s %63s %63s %31s", name, proto, listen, target, ifname), 4);
		snprintf(r->name, sizeof(r->name), "%s", name);
		r->proto = rule_proto_parse(proto);
		r->listen = addr(listen);
		r->target = addr(target);
		snprintf(r->interface, sizeof(r->interface), "%s", ifname);
		rule_settings_init(&r->set);
		r->line = (int)i + 1;
	}
}

/* Checks CFG into L, for a portfwd that may bind any port; returns how
 * many items there are. */
static size_t items_of(const struct config *cfg, struct exposure_list *l)
{
	struct exposure_privs root = { .can_bind_low = true };

	ck_assert_int_eq(exposure_check(cfg, &root, l), 0);
	return l->count;
}

/* Every hunted service, from a wildcard: a warning naming it; the port
 * after it, unless hunted too: nothing. */
START_TEST(test_each_hunted_port)
{
	static const struct {
		unsigned port;
		const char *name;
	} hunted[] = {
		{ 22, "ssh" },      { 23, "telnet" },  { 445, "smb" },	{ 3389, "rdp" },
		{ 5900, "vnc" },    { 3306, "mysql" }, { 5432, "postgres" }, { 6379, "redis" },
		{ 27017, "mongodb" }, { 9200, "elasticsearch" }, { 2375, "docker" }, { 2376, "docker" },
	};

	for (size_t i = 0; i < sizeof(hunted) / sizeof(hunted[0]); i++) {
		struct exposure_list l = { 0 };
		struct config cfg;
		char rule[128], want[64];
		const char *rules[1] = { rule };

		ck_assert_ptr_nonnull(exposure_hunted(hunted[i].port));
		ck_assert_str_eq(exposure_hunted(hunted[i].port)->name, hunted[i].name);
		snprintf(rule, sizeof(rule), "r tcp 0.0.0.0:40000 192.168.0.2:%u", hunted[i].port);
		make_config(&cfg, rules, 1);
		ck_assert_int_eq(items_of(&cfg, &l), 1);
		ck_assert_int_eq(l.items[0].level, EXPOSURE_WARNING);
		snprintf(want, sizeof(want), "forwards to port %u (%s), which scanners hunt", hunted[i].port,
			 hunted[i].name);
		ck_assert_msg(strncmp(l.items[0].message, want, strlen(want)) == 0, "%s", l.items[0].message);
		exposure_list_free(&l);
		config_free(&cfg);

		if (exposure_hunted(hunted[i].port + 1))
			continue; /* telnet after ssh, docker's two */
		snprintf(rule, sizeof(rule), "r tcp 0.0.0.0:40000 192.168.0.2:%u", hunted[i].port + 1);
		make_config(&cfg, rules, 1);
		ck_assert_int_eq(items_of(&cfg, &l), 0);
		config_free(&cfg);
	}
	ck_assert_ptr_null(exposure_hunted(80));
	ck_assert_ptr_null(exposure_hunted(443));
}
END_TEST

/* Where the rule listens, whether it is bound to an interface, and its
 * protocol decide; the texts are exact. */
START_TEST(test_which_rules_warn)
{
	static const char *const rules[] = {
		"any4 tcp 0.0.0.0:2222 192.168.0.2:22",
		"any6 tcp+udp [::]:2222 192.168.0.2:22",
		"public tcp 203.0.113.5:3390 192.168.0.2:3389",
		"public6 tcp [2001:db8::1]:2222 [fd00::2]:22",
		"lan tcp 192.168.0.10:2222 192.168.0.2:22",
		"cgnat tcp 100.64.0.1:2222 192.168.0.2:22",
		"ula tcp [fd00::1]:2222 [fd00::2]:22",
		"link tcp [fe80::1]:2222 [fd00::2]:22",
		"loop tcp 127.0.0.1:2222 192.168.0.2:22",
		"vpn tcp 0.0.0.0:2223 192.168.0.2:22 wg0",
		"udp udp 0.0.0.0:2224 192.168.0.2:22",
		"web tcp 0.0.0.0:8080 192.168.0.2:80",
	};
	struct exposure_list l = { 0 };
	struct config cfg;

	make_config(&cfg, rules, sizeof(rules) / sizeof(rules[0]));
	ck_assert_int_eq(items_of(&cfg, &l), 4);
	ck_assert_str_eq(l.items[0].text,
			 "FILE:1: warning: rule \"any4\": forwards to port 22 (ssh), which scanners hunt (password guessing), from 0.0.0.0:2222 (every address of this host) with no allow list that keeps anyone out: anyone who reaches this host can try it; add an allow list of the addresses that need it, or listen only on a VPN interface (interface = \"wg0\")");
	ck_assert_str_eq(l.items[0].name, "any4");
	ck_assert_int_eq(l.items[0].rule, 0);
	ck_assert_int_eq(l.items[0].line, 1);
	ck_assert_str_eq(l.items[1].name, "any6");
	ck_assert_msg(strstr(l.items[1].message, "from [::]:2222 (every address of this host)"), "%s", l.items[1].message);
	ck_assert_str_eq(l.items[2].text,
			 "FILE:3: warning: rule \"public\": forwards to port 3389 (rdp), which scanners hunt (password guessing and remote desktop exploits), from 203.0.113.5:3390 (a public address) with no allow list that keeps anyone out: anyone who reaches this host can try it; add an allow list of the addresses that need it, or listen only on a VPN interface (interface = \"wg0\")");
	ck_assert_str_eq(l.items[3].name, "public6");
	ck_assert_int_eq(l.items[3].rule, 3);
	ck_assert_int_eq(exposure_count(&l, EXPOSURE_WARNING), 4);
	ck_assert_int_eq(exposure_count(&l, EXPOSURE_NOTE), 0);
	exposure_list_free(&l);
	config_free(&cfg);
}
END_TEST

/* A public target: a note from a rule on loopback (a local tunnel), a
 * warning from any other, also one that is otherwise quiet (an interface);
 * a private, loopback or link-local one: none. */
START_TEST(test_public_target_note)
{
	static const char *const rules[] = {
		"out tcp 127.0.0.1:8443 198.51.100.7:443",
		"vpn tcp+udp 0.0.0.0:2222 203.0.113.9:22 wg0",
		"out6 udp [::1]:5353 [2001:db8::53]:53",
		"mapped tcp 127.0.0.1:8444 [::ffff:198.51.100.8]:443",
		"lan tcp 127.0.0.1:8445 10.1.2.3:443",
		"local tcp 127.0.0.1:8446 127.0.0.1:443",
		"ll tcp 127.0.0.1:8447 [fe80::2]:443",
		"cgnat tcp 127.0.0.1:8448 100.100.1.1:443",
	};
	struct exposure_list l = { 0 };
	struct config cfg;
	json_t *j;

	make_config(&cfg, rules, sizeof(rules) / sizeof(rules[0]));
	ck_assert_int_eq(items_of(&cfg, &l), 4);
	ck_assert_str_eq(l.items[0].text,
			 "FILE:1: note: rule \"out\": target 198.51.100.7:443 is a public address (not private, link-local or loopback): the traffic goes out to the internet; check that this is the host you mean");
	ck_assert_str_eq(l.items[1].name, "vpn");
	ck_assert_int_eq(l.items[1].level, EXPOSURE_WARNING);
	ck_assert_str_eq(l.items[2].name, "out6");
	ck_assert_int_eq(l.items[2].level, EXPOSURE_NOTE);
	ck_assert_str_eq(l.items[3].name, "mapped");
	ck_assert_int_eq(l.items[3].level, EXPOSURE_NOTE);
	ck_assert_int_eq(exposure_count(&l, EXPOSURE_WARNING), 1);
	/* JSON: all, or one rule's. */
	j = exposure_json(&l, SIZE_MAX);
	ck_assert_int_eq(json_array_size(j), 4);
	json_decref(j);
	j = exposure_json(&l, 1);
	ck_assert_int_eq(json_array_size(j), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "rule")), "vpn");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "level")), "warning");
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(j, 0), "line")), 2);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "message")),
			 l.items[1].message);
	json_decref(j);
	j = exposure_json(&l, 4);
	ck_assert_int_eq(json_array_size(j), 0);
	json_decref(j);
	exposure_list_free(&l);
	config_free(&cfg);
}
END_TEST

/* Loads TEXT through the real reader (lists, allow, deny), as a client's check would. */
static void load_config(const char *text, struct config *cfg)
{
	struct config_errors errs = { 0 };

	ck_assert_msg(config_load_text("FILE", text, strlen(text), cfg, &errs) == 0, "%s",
		      errs.count ? errs.msgs[0] : "?");
	config_errors_free(&errs);
}

/* An allow list that keeps someone out silences the warning; one that lets
 * everyone in (0.0.0.0/0, ::/0, or halves that add up to it), a deny list
 * alone, or allow = [] does not. Defaults' lists count as the rule's own. */
START_TEST(test_allow_silences)
{
	static const char text[] =
		"lists: { lan = [ \"192.168.0.0/16\" ]; };\n"
		"rules: (\n"
		" { name = \"lan\"; proto = \"tcp\"; listen = \"0.0.0.0:2201\"; target = \"192.168.0.2:22\"; allow = [ \"@lan\" ]; },\n"
		" { name = \"one\"; proto = \"tcp\"; listen = \"0.0.0.0:2202\"; target = \"192.168.0.2:22\"; allow = [ \"203.0.113.7\" ]; },\n"
		" { name = \"all4\"; proto = \"tcp\"; listen = \"0.0.0.0:2203\"; target = \"192.168.0.2:22\"; allow = [ \"0.0.0.0/0\" ]; },\n"
		" { name = \"halves\"; proto = \"tcp\"; listen = \"0.0.0.0:2204\"; target = \"192.168.0.2:22\"; allow = [ \"0.0.0.0/1\", \"128.0.0.0/1\" ]; },\n"
		" { name = \"all6\"; proto = \"tcp\"; listen = \"[::]:2205\"; target = \"192.168.0.2:22\"; allow = [ \"::/0\" ]; },\n"
		" { name = \"denyonly\"; proto = \"tcp\"; listen = \"0.0.0.0:2206\"; target = \"192.168.0.2:22\"; deny = [ \"203.0.113.0/24\" ]; },\n"
		" { name = \"empty\"; proto = \"tcp\"; listen = \"0.0.0.0:2207\"; target = \"192.168.0.2:22\"; allow = [ ]; },\n"
		" { name = \"v6only\"; proto = \"tcp\"; listen = \"0.0.0.0:2208\"; target = \"192.168.0.2:22\"; allow = [ \"::/0\" ]; },\n"
		" { name = \"v4only\"; proto = \"tcp\"; listen = \"[::]:2209\"; target = \"192.168.0.2:22\"; allow = [ \"0.0.0.0/0\" ]; }\n"
		");\n";
	static const char *const warned[] = { "all4", "halves", "all6", "denyonly", "empty" };
	struct exposure_list l = { 0 };
	struct config cfg;

	load_config(text, &cfg);
	ck_assert(exposure_rule_has_allow(&cfg.rules[0]));
	ck_assert(exposure_rule_has_allow(&cfg.rules[1]));
	for (size_t i = 2; i < 7; i++)
		ck_assert_msg(!exposure_rule_has_allow(&cfg.rules[i]), "%s", cfg.rules[i].name);
	/* An allow list of the other family only lets nobody of the rule's in. */
	ck_assert(exposure_rule_has_allow(&cfg.rules[7]));
	ck_assert(exposure_rule_has_allow(&cfg.rules[8]));
	ck_assert_int_eq(items_of(&cfg, &l), 5);
	for (size_t i = 0; i < 5; i++) {
		ck_assert_str_eq(l.items[i].name, warned[i]);
		ck_assert_int_eq(l.items[i].level, EXPOSURE_WARNING);
	}
	exposure_list_free(&l);
	config_free(&cfg);

	/* The defaults' allow list is the rule's. */
	load_config("defaults: { allow = [ \"10.8.0.0/24\" ]; };\n"
		    "rules: ( { name = \"ssh\"; proto = \"tcp\"; listen = \"0.0.0.0:2222\"; target = \"192.168.0.2:22\"; } );\n",
		    &cfg);
	ck_assert(exposure_rule_has_allow(&cfg.rules[0]));
	ck_assert_int_eq(items_of(&cfg, &l), 0);
	exposure_list_free(&l);
	config_free(&cfg);
}
END_TEST

/* A rule that asks the home router to map its port says so in its
 * warning, or in a note of its own; an allow list silences both. */
START_TEST(test_router_mapping_warns)
{
	struct exposure_list l = { 0 };
	struct config cfg;

	load_config("rules: (\n"
		    " { name = \"ssh\"; proto = \"tcp\"; listen = \"0.0.0.0:2222\"; target = \"192.168.0.2:22\"; router = \"natpmp\"; },\n"
		    " { name = \"kept\"; proto = \"tcp\"; listen = \"0.0.0.0:2223\"; target = \"192.168.0.2:22\"; router = \"auto\"; allow = [ \"203.0.113.7\" ]; },\n"
		    " { name = \"plain\"; proto = \"tcp\"; listen = \"0.0.0.0:2224\"; target = \"192.168.0.2:22\"; },\n"
		    " { name = \"game\"; proto = \"udp\"; listen = \"0.0.0.0:27015-27016\"; target = \"192.168.0.3:27015-27016\"; router = \"upnp\"; external_port = 37015; },\n"
		    " { name = \"lan\"; proto = \"tcp\"; listen = \"192.168.1.5:2225\"; target = \"192.168.0.2:22\"; router = \"pcp\"; interface = \"lo\"; },\n"
		    " { name = \"rdp\"; proto = \"tcp\"; listen = \"0.0.0.0:8443\"; target = \"192.168.0.4:8443\"; router = \"auto\"; external_port = 3389; }\n"
		    ");\n",
		    &cfg);
	ck_assert_int_eq(items_of(&cfg, &l), 5);
	ck_assert_str_eq(l.items[0].name, "ssh");
	ck_assert_msg(strstr(l.items[0].message, "router = \"natpmp\" opens it on the home router to the whole internet"),
		      "%s", l.items[0].message);
	ck_assert_str_eq(l.items[1].name, "plain");
	ck_assert_msg(!strstr(l.items[1].message, "router"), "%s", l.items[1].message);
	/* No hunted service: a note that the router opens it to anyone. */
	ck_assert_str_eq(l.items[2].name, "game");
	ck_assert_int_eq(l.items[2].level, EXPOSURE_NOTE);
	ck_assert_str_eq(l.items[2].message,
			 "router = \"upnp\" opens ports 37015-37016 on the home router to the whole internet, with no allow list: anyone can connect; give the rule an allow list where you can");
	/* A LAN address, an interface: the router brings the internet to it all the same. */
	ck_assert_str_eq(l.items[3].name, "lan");
	ck_assert_int_eq(l.items[3].level, EXPOSURE_WARNING);
	ck_assert_msg(strstr(l.items[3].message, "from 192.168.1.5:2225 (an address of this host), and router = \"pcp\" opens it"),
		      "%s", l.items[3].message);
	/* The port the internet knocks at is the router's: 3389, not 8443. */
	ck_assert_str_eq(l.items[4].name, "rdp");
	ck_assert_int_eq(l.items[4].level, EXPOSURE_WARNING);
	ck_assert_msg(strstr(l.items[4].message, "gets from the home router port 3389 (rdp), which scanners hunt"), "%s",
		      l.items[4].message);
	exposure_list_free(&l);
	config_free(&cfg);
}
END_TEST

/* Scanners knock at the listen port: a hunted one warns whatever the
 * target's port, naming where it goes. */
START_TEST(test_hunted_listen_port)
{
	static const char *const rules[] = {
		"ssh22 tcp 0.0.0.0:22 192.168.0.2:2222",
		"rdp tcp [::]:3389 192.168.0.2:13389",
		"both tcp 0.0.0.0:2222 192.168.0.2:22",
		"web tcp 0.0.0.0:8080 192.168.0.2:8081",
	};
	struct exposure_list l = { 0 };
	struct config cfg;

	make_config(&cfg, rules, sizeof(rules) / sizeof(rules[0]));
	ck_assert_int_eq(items_of(&cfg, &l), 3);
	ck_assert_str_eq(l.items[0].message,
			 "listens on port 22 (ssh), which scanners hunt (password guessing), and forwards it to 192.168.0.2:2222, from 0.0.0.0:22 (every address of this host) with no allow list that keeps anyone out: anyone who reaches this host can try it; add an allow list of the addresses that need it, or listen only on a VPN interface (interface = \"wg0\")");
	ck_assert_msg(strstr(l.items[1].message, "listens on port 3389 (rdp)"), "%s", l.items[1].message);
	ck_assert_msg(strstr(l.items[2].message, "forwards to port 22 (ssh)"), "%s", l.items[2].message);
	exposure_list_free(&l);
	config_free(&cfg);
}
END_TEST

/* The machine as the tests describe it: eth0 with a private address and
 * the IPv4 default route (a home lab behind a router), wan with a public
 * IPv4 address, lan with a private IPv4 and a public IPv6 address (prefix
 * delegation), he6 the IPv6 default route, wg0 nothing of the kind. */
static int fake_ifaddrs(struct ifaddrs **list)
{
	static struct sockaddr_in eth0_a = { .sin_family = AF_INET }, wan_a = { .sin_family = AF_INET },
				  wg0_a = { .sin_family = AF_INET }, lan_a = { .sin_family = AF_INET };
	static struct sockaddr_in6 lan_6 = { .sin6_family = AF_INET6 };
	static struct ifaddrs lan6 = { .ifa_name = "lan", .ifa_addr = (struct sockaddr *)&lan_6 };
	static struct ifaddrs lan = { .ifa_next = &lan6, .ifa_name = "lan", .ifa_addr = (struct sockaddr *)&lan_a };
	static struct ifaddrs wg0 = { .ifa_next = &lan, .ifa_name = "wg0", .ifa_addr = (struct sockaddr *)&wg0_a };
	static struct ifaddrs wan = { .ifa_next = &wg0, .ifa_name = "wan", .ifa_addr = (struct sockaddr *)&wan_a };
	static struct ifaddrs eth0 = { .ifa_next = &wan, .ifa_name = "eth0", .ifa_addr = (struct sockaddr *)&eth0_a };

	inet_pton(AF_INET, "192.168.1.10", &eth0_a.sin_addr);
	inet_pton(AF_INET, "203.0.113.5", &wan_a.sin_addr);
	inet_pton(AF_INET, "10.8.0.1", &wg0_a.sin_addr);
	inet_pton(AF_INET, "192.168.2.1", &lan_a.sin_addr);
	inet_pton(AF_INET6, "2001:db8:5::1", &lan_6.sin6_addr);
	*list = &eth0;
	return 0;
}

static bool fake_default_route(const char *name, int family)
{
	return (family == AF_INET && strcmp(name, "eth0") == 0) ||
	       (family == AF_INET6 && strcmp(name, "he6") == 0);
}

/* Nothing faces the internet: the other tests never read this host's routes. */
static bool no_default_route(const char *name, int family)
{
	(void)name;
	(void)family;
	return false;
}

static int no_ifaddrs(struct ifaddrs **list)
{
	*list = NULL;
	return 0;
}

/* No port settings to read (no ephemeral range, ports below 1024 need
 * privilege): the tests of other warnings never see this host's. */
static bool no_route(const struct sockaddr *sa, char *ifname, size_t len)
{
	(void)sa;
	(void)ifname;
	(void)len;
	return false;
}

static void quiet_host(void)
{
	iface_set_sources(no_default_route, no_ifaddrs, NULL);
	iface_set_routes(no_route);
	sysports_set_paths("/nonexistent/range", "/nonexistent/reserved", "/nonexistent/unpriv");
}

static void real_host(void)
{
	iface_set_sources(NULL, NULL, NULL);
	iface_set_routes(NULL);
	sysports_set_paths(NULL, NULL, NULL);
}

/*
 * A rule bound to an interface is quiet when the interface is a VPN or the
 * LAN, and warned about when the internet comes in by it for the rule's
 * family: the default route's interface (behind a home router, the
 * forwarded ports arrive there) or one with a public address.
 */
START_TEST(test_interface_facing_the_internet)
{
	static const char *const rules[] = {
		"eth0 tcp 0.0.0.0:2201 192.168.0.2:22 eth0",
		"wan tcp 0.0.0.0:2202 192.168.0.2:22 wan",
		"wg0 tcp 0.0.0.0:2203 192.168.0.2:22 wg0",
		"he6 tcp [::]:2204 192.168.0.2:22 he6",
		"he6v4 tcp 0.0.0.0:2205 192.168.0.2:22 he6",
		"eth0v6 tcp [::]:2206 192.168.0.2:22 eth0",
		"lan4 tcp 0.0.0.0:2207 192.168.0.2:22 lan",
		"lan6 tcp [::]:2208 192.168.0.2:22 lan",
		"gone tcp 0.0.0.0:2209 192.168.0.2:22 gone0",
	};
	static const char *const warned[] = { "eth0", "wan", "he6", "lan6" };
	struct exposure_list l = { 0 };
	struct config cfg;

	iface_set_sources(fake_default_route, fake_ifaddrs, NULL);
	make_config(&cfg, rules, sizeof(rules) / sizeof(rules[0]));
	ck_assert_int_eq(items_of(&cfg, &l), 4);
	for (int i = 0; i < 4; i++)
		ck_assert_str_eq(l.items[i].name, warned[i]);
	ck_assert_msg(strstr(l.items[0].message, "from 0.0.0.0:2201 (every address of this host) through interface eth0, which carries the IPv4 default route (what the router forwards from the internet arrives there) with no allow list"),
		      "%s", l.items[0].message);
	ck_assert_msg(strstr(l.items[1].message, "through interface wan, which has the public address 203.0.113.5 with no allow list"),
		      "%s", l.items[1].message);
	ck_assert_msg(strstr(l.items[2].message, "which carries the IPv6 default route"), "%s", l.items[2].message);
	ck_assert_msg(strstr(l.items[3].message, "which has the public address 2001:db8:5::1"), "%s", l.items[3].message);
	exposure_list_free(&l);
	config_free(&cfg);
	quiet_host();
}
END_TEST

/* ---- the kernel's port settings (sysports), from files of the test's own ---- */

static char port_dir[64];

/* Writes the three settings' files (NULL: none) and points sysports at them. */
static void port_files(const char *range, const char *reserved, const char *unpriv)
{
	static const char *const names[] = { "range", "reserved", "unpriv" };
	const char *texts[] = { range, reserved, unpriv };
	static char paths[3][128]; /* sysports keeps the pointers */

	if (!port_dir[0]) {
		snprintf(port_dir, sizeof(port_dir), "/tmp/test_exposure.XXXXXX");
		ck_assert_ptr_nonnull(mkdtemp(port_dir));
	}
	for (int i = 0; i < 3; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/%s", port_dir, names[i]);
		unlink(paths[i]);
		if (texts[i]) {
			FILE *fp = fopen(paths[i], "w");

			ck_assert_ptr_nonnull(fp);
			fputs(texts[i], fp);
			fclose(fp);
		}
	}
	sysports_set_paths(paths[0], paths[1], paths[2]);
}

static void port_files_remove(void)
{
	char path[128];

	if (!port_dir[0])
		return;
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", port_dir, (const char *[]){ "range", "reserved", "unpriv" }[i]);
		unlink(path);
	}
	rmdir(port_dir);
	port_dir[0] = '\0';
}

/* The names of the rules of L's items whose message has TEXT, "a b ". */
static void warned_with(const struct exposure_list *l, const char *text, char *out, size_t len)
{
	out[0] = '\0';
	for (size_t i = 0; i < l->count; i++)
		if (strstr(l->items[i].message, text))
			snprintf(out + strlen(out), len - strlen(out), "%s ", l->items[i].name);
}

/* The range's ends warn, the ports just outside do not, nor a reserved
 * one; a range of listen ports warns when any of it overlaps. */
START_TEST(test_ephemeral_range)
{
	static const char *const rules[] = {
		"below tcp 127.0.0.1:32767 127.0.0.1:1",
		"first tcp 127.0.0.1:32768 127.0.0.1:1",
		"last udp 127.0.0.1:60999 127.0.0.1:1",
		"above tcp 127.0.0.1:61000 127.0.0.1:1",
		"reserved tcp 127.0.0.1:45001 127.0.0.1:1",
		"next tcp+udp [::1]:45003 127.0.0.1:1",
	};
	struct sysports *sp = malloc(sizeof(*sp));
	struct exposure_list l = { 0 };
	struct config cfg;
	unsigned first;
	char names[128];

	port_files("32768\t60999\n", "8080,45000-45002\n", "1024\n");
	sysports_read(sp);
	ck_assert(sp->have_range);
	ck_assert_uint_eq(sp->eph_lo, 32768);
	ck_assert_uint_eq(sp->eph_hi, 60999);
	ck_assert_str_eq(sp->reserved_text, "8080,45000-45002");
	ck_assert(sysports_reserved(sp, 8080) && sysports_reserved(sp, 45000) && sysports_reserved(sp, 45002));
	ck_assert(!sysports_reserved(sp, 8081) && !sysports_reserved(sp, 44999) && !sysports_reserved(sp, 45003));
	/* Listen port ranges: partly in, at either end; all reserved; all out. */
	ck_assert_uint_eq(sysports_ephemeral_overlap(sp, 32760, 32770, &first), 3);
	ck_assert_uint_eq(first, 32768);
	ck_assert_uint_eq(sysports_ephemeral_overlap(sp, 60990, 61010, &first), 10);
	ck_assert_uint_eq(first, 60990);
	ck_assert_uint_eq(sysports_ephemeral_overlap(sp, 44998, 45004, &first), 4);
	ck_assert_uint_eq(first, 44998);
	ck_assert_uint_eq(sysports_ephemeral_overlap(sp, 45000, 45004, &first), 2);
	ck_assert_uint_eq(first, 45003);
	ck_assert_uint_eq(sysports_ephemeral_overlap(sp, 45000, 45002, &first), 0);
	ck_assert_uint_eq(first, 0);
	ck_assert_uint_eq(sysports_ephemeral_overlap(sp, 1, 32767, &first), 0);
	ck_assert_uint_eq(sysports_ephemeral_overlap(sp, 61000, 65535, &first), 0);
	ck_assert_uint_eq(sysports_ephemeral_overlap(sp, 1, 65535, &first), 60999 - 32768 + 1 - 3);

	make_config(&cfg, rules, sizeof(rules) / sizeof(rules[0]));
	items_of(&cfg, &l);
	warned_with(&l, "may collide with outgoing connections", names, sizeof(names));
	ck_assert_str_eq(names, "first last next ");
	ck_assert_str_eq(l.items[0].text,
			 "FILE:2: warning: rule \"first\": listen port 32768 may collide with outgoing connections (the kernel hands ports 32768-60999 to them, net.ipv4.ip_local_port_range): if one holds it when portfwd binds, at start or reload, the bind fails; pick a port outside that range, or reserve it with `sysctl -w net.ipv4.ip_local_reserved_ports=8080,45000-45002,32768` (and in /etc/sysctl.d to keep it)");
	ck_assert_int_eq(exposure_count(&l, EXPOSURE_WARNING), 3);
	exposure_list_free(&l);

	/* Another range, nothing reserved: the suggestion is the port alone. */
	port_files("1024 1100\n", "\n", NULL);
	items_of(&cfg, &l);
	ck_assert_int_eq(l.count, 0);
	cfg.rules[0].listen = addr("127.0.0.1:1024");
	cfg.rules[1].listen = addr("127.0.0.1:1100");
	items_of(&cfg, &l);
	warned_with(&l, "the kernel hands ports 1024-1100 to them", names, sizeof(names));
	ck_assert_str_eq(names, "below first ");
	ck_assert_msg(strstr(l.items[0].message, "reserve it with `sysctl -w net.ipv4.ip_local_reserved_ports=1024`"),
		      "%s", l.items[0].message);
	exposure_list_free(&l);

	/* No range to read, or one that makes no sense: no warning. */
	port_files(NULL, NULL, NULL);
	items_of(&cfg, &l);
	ck_assert_int_eq(l.count, 0);
	for (const char *const *bad = (const char *const[]){ "", "junk", "60999 32768", "0 100", "1 65536", "5", NULL };
	     *bad; bad++) {
		port_files(*bad, NULL, NULL);
		sysports_read(sp);
		ck_assert_msg(!sp->have_range, "\"%s\" read as %u-%u", *bad, sp->eph_lo, sp->eph_hi);
	}
	config_free(&cfg);
	free(sp);
	port_files_remove();
}
END_TEST

/* The reserved list as the kernel writes it, and what it makes of a bad one. */
START_TEST(test_reserved_list)
{
	struct sysports *sp = malloc(sizeof(*sp));
	char *big;
	size_t n = 0;

	port_files("32768 60999", "1,3-5,65535", NULL);
	sysports_read(sp);
	ck_assert(sysports_reserved(sp, 1) && sysports_reserved(sp, 3) && sysports_reserved(sp, 5) &&
		  sysports_reserved(sp, 65535));
	ck_assert(!sysports_reserved(sp, 2) && !sysports_reserved(sp, 6) && !sysports_reserved(sp, 0) &&
		  !sysports_reserved(sp, 65536));
	/* What it does not understand ends the list; what came before stays. */
	for (const char *const *bad = (const char *const[]){ "7,x,9", "7,9-8", "7,65536", "7,9-", "7;9", "7,123456", NULL };
	     *bad; bad++) {
		port_files("32768 60999", *bad, NULL);
		sysports_read(sp);
		ck_assert_msg(sysports_reserved(sp, 7) && !sysports_reserved(sp, 9) && !sysports_reserved(sp, 8),
			      "%s", *bad);
	}
	/* Every other port: too long to repeat in a suggestion. */
	big = malloc(65536 * 4);
	ck_assert_ptr_nonnull(big);
	for (unsigned p = 1; p <= 65535; p += 2)
		n += (size_t)sprintf(big + n, "%s%u", p > 1 ? "," : "", p);
	port_files("32768 60999", big, NULL);
	sysports_read(sp);
	ck_assert(sp->reserved_long);
	ck_assert_str_eq(sp->reserved_text, "");
	ck_assert(sysports_reserved(sp, 65535) && sysports_reserved(sp, 32769) && !sysports_reserved(sp, 32768));
	{
		static const char *const rules[] = { "r tcp 127.0.0.1:32768 127.0.0.1:1" };
		struct exposure_list l = { 0 };
		struct config cfg;

		make_config(&cfg, rules, 1);
		ck_assert_int_eq(items_of(&cfg, &l), 1);
		ck_assert_msg(strstr(l.items[0].message, "pick a port outside that range, or reserve it by adding it to net.ipv4.ip_local_reserved_ports (sysctl -w replaces that list) (and in /etc/sysctl.d to keep it)"),
			      "%s", l.items[0].message);
		exposure_list_free(&l);
		config_free(&cfg);
	}
	free(big);
	free(sp);
	port_files_remove();
}
END_TEST

/* A port that needs privilege warns only when portfwd will not have it,
 * and the threshold is the kernel's, not 1024. */
START_TEST(test_privileged_port)
{
	static const char *const rules[] = {
		"http tcp 0.0.0.0:80 192.168.0.2:8080",
		"top tcp 127.0.0.1:1023 127.0.0.1:1",
		"free udp 127.0.0.1:1024 127.0.0.1:1",
		"mid tcp 127.0.0.1:1500 127.0.0.1:1",
	};
	struct exposure_privs user = { .can_bind_low = false, .who = "running as uid 1000", .fix = "FIX" };
	struct exposure_privs root = { .can_bind_low = true };
	struct exposure_list l = { 0 };
	struct config cfg;
	char names[128];
	bool bound[4] = { true, false, false, false };

	make_config(&cfg, rules, sizeof(rules) / sizeof(rules[0]));
	port_files(NULL, NULL, "1024\n");
	ck_assert_int_eq(exposure_check(&cfg, &user, &l), 0);
	warned_with(&l, "needs root or CAP_NET_BIND_SERVICE", names, sizeof(names));
	ck_assert_str_eq(names, "http top ");
	ck_assert_str_eq(l.items[0].text,
			 "FILE:1: warning: rule \"http\": listen port 80 is well-known (below 1024): binding it needs root or CAP_NET_BIND_SERVICE, which portfwd will not have (running as uid 1000); FIX, or listen on port 1024 or above");
	/* The running daemon's own: it does not have it; a port it holds already is fine. */
	user.running = true;
	user.bound = bound;
	ck_assert_int_eq(exposure_check(&cfg, &user, &l), 0);
	warned_with(&l, "which portfwd does not have (running as uid 1000)", names, sizeof(names));
	ck_assert_str_eq(names, "top ");
	user.bound = NULL;
	user.running = false;
	/* Root, or the capability: nothing. No privilege check asked: nothing. */
	ck_assert_int_eq(exposure_check(&cfg, &root, &l), 0);
	ck_assert_int_eq(l.count, 0);
	ck_assert_int_eq(exposure_check(&cfg, NULL, &l), 0);
	ck_assert_int_eq(l.count, 0);

	/* The kernel's threshold: lower, higher, none at all; unreadable is 1024. */
	port_files(NULL, NULL, "500\n");
	ck_assert_int_eq(exposure_check(&cfg, &user, &l), 0);
	warned_with(&l, "needs root", names, sizeof(names));
	ck_assert_str_eq(names, "http ");
	ck_assert_msg(strstr(l.items[0].message, "listen port 80 is below 500 (this kernel's net.ipv4.ip_unprivileged_port_start): binding it needs root"),
		      "%s", l.items[0].message);
	ck_assert_msg(strstr(l.items[0].message, "or listen on port 500 or above"), "%s", l.items[0].message);
	port_files(NULL, NULL, "2000\n");
	ck_assert_int_eq(exposure_check(&cfg, &user, &l), 0);
	warned_with(&l, "needs root", names, sizeof(names));
	ck_assert_str_eq(names, "http top free mid ");
	port_files(NULL, NULL, "0\n");
	ck_assert_int_eq(exposure_check(&cfg, &user, &l), 0);
	ck_assert_int_eq(l.count, 0);
	port_files(NULL, NULL, "many\n");
	ck_assert_int_eq(exposure_check(&cfg, &user, &l), 0);
	warned_with(&l, "is well-known (below 1024)", names, sizeof(names));
	ck_assert_str_eq(names, "http top ");
	exposure_list_free(&l);
	config_free(&cfg);
	port_files_remove();
}
END_TEST

/* This host on a LAN with public addresses: 2001:db8:5::1/64 on lan and
 * 198.51.100.1/29 on eth1 (no netmask: 203.0.113.5 on wan counts for nothing). */
static int lan_ifaddrs(struct ifaddrs **list)
{
	static struct sockaddr_in6 lan_a = { .sin6_family = AF_INET6 }, lan_m = { .sin6_family = AF_INET6 };
	static struct sockaddr_in eth1_a = { .sin_family = AF_INET }, eth1_m = { .sin_family = AF_INET },
				  wan_a = { .sin_family = AF_INET };
	static struct ifaddrs wan = { .ifa_name = "wan", .ifa_addr = (struct sockaddr *)&wan_a };
	static struct ifaddrs eth1 = { .ifa_next = &wan, .ifa_name = "eth1", .ifa_addr = (struct sockaddr *)&eth1_a,
				       .ifa_netmask = (struct sockaddr *)&eth1_m };
	static struct ifaddrs lan = { .ifa_next = &eth1, .ifa_name = "lan", .ifa_addr = (struct sockaddr *)&lan_a,
				      .ifa_netmask = (struct sockaddr *)&lan_m };

	inet_pton(AF_INET6, "2001:db8:5::1", &lan_a.sin6_addr);
	inet_pton(AF_INET6, "ffff:ffff:ffff:ffff::", &lan_m.sin6_addr);
	inet_pton(AF_INET, "198.51.100.1", &eth1_a.sin_addr);
	inet_pton(AF_INET, "255.255.255.248", &eth1_m.sin_addr);
	inet_pton(AF_INET, "203.0.113.5", &wan_a.sin_addr);
	*list = &lan;
	return 0;
}

/* The kernel's routes, as the test has them: 2001:db8:7::/48 by a route
 * of its own (a sibling VLAN behind the LAN router), the rest by default. */
static bool vlan_routed(const struct sockaddr *sa, char *ifname, size_t len)
{
	static const uint8_t prefix[6] = { 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x07 };

	if (sa->sa_family != AF_INET6 ||
	    memcmp(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, prefix, sizeof(prefix)) != 0)
		return false;
	snprintf(ifname, len, "lan");
	return true;
}

/* Router-style forwarding to a public address: the warning's text; a
 * public address on one of this host's networks is the LAN (IPv6 has no
 * NAT), and so is one it has a route of its own to: nothing. */
START_TEST(test_public_target_warning)
{
	static const char *const rules[] = {
		"web tcp 0.0.0.0:8080 198.51.100.77:80",
		"lan6 tcp [::]:8081 [2001:db8:5::20]:80",
		"far6 tcp [::]:8082 [2001:db8:6::20]:80",
		"lan4 tcp 0.0.0.0:8083 198.51.100.6:80",
		"mapped tcp 0.0.0.0:8084 [::ffff:198.51.100.5]:80",
		"wan tcp 0.0.0.0:8085 203.0.113.6:80",
		"loop tcp 127.0.0.1:8086 198.51.100.9:80",
		"vlan6 tcp [::]:8087 [2001:db8:7::20]:80",
	};
	struct exposure_list l = { 0 };
	struct config cfg;
	char names[128];

	iface_set_sources(no_default_route, lan_ifaddrs, NULL);
	iface_set_routes(vlan_routed);
	make_config(&cfg, rules, sizeof(rules) / sizeof(rules[0]));
	items_of(&cfg, &l);
	warned_with(&l, "is a public address", names, sizeof(names));
	ck_assert_str_eq(names, "web far6 wan loop ");
	ck_assert_str_eq(l.items[0].text,
			 "FILE:1: warning: rule \"web\": target 198.51.100.77:80 is a public address, on none of this host's networks: what reaches 0.0.0.0:8080 goes out to the internet, and whoever reaches this host reaches that one through it; router-style forwarding goes to a machine on the LAN, whose address is private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7): check the address for a slip (loopback, private and link-local targets, and those on this host's networks or routes of their own, are fine)");
	ck_assert_int_eq(exposure_count(&l, EXPOSURE_WARNING), 3);
	ck_assert_int_eq(l.items[3].level, EXPOSURE_NOTE);
	ck_assert_str_eq(l.items[3].name, "loop");
	exposure_list_free(&l);
	config_free(&cfg);
}
END_TEST

START_TEST(test_interface_names)
{
	static const char *const good[] = { "wg0", "eth0.100", "br-lan_2", "enp3s0f1np1x234", "a", "tun+", "..a", NULL };
	static const char *const bad[] = { "", "enp3s0f1np1x2345", "wg 0", "wg/0", "eth0:1", ".", "..",
					   "tab\there", "nl\n", "\xc3\xa9th0", "del\x7f", NULL };

	for (int i = 0; good[i]; i++)
		ck_assert_msg(iface_name_valid(good[i]), "%s refused", good[i]);
	for (int i = 0; bad[i]; i++)
		ck_assert_msg(!iface_name_valid(bad[i]), "%s accepted", bad[i]);
}
END_TEST

START_TEST(test_kernel_release)
{
	ck_assert(iface_release_before("5.4.0-150-generic", 5, 7));
	ck_assert(iface_release_before("4.19.0-27-amd64", 5, 7));
	ck_assert(iface_release_before("5.6.19", 5, 7));
	ck_assert(!iface_release_before("5.7.0", 5, 7));
	ck_assert(!iface_release_before("5.10.0-30-amd64", 5, 7));
	ck_assert(!iface_release_before("6.1.0-18-amd64", 5, 7));
	ck_assert(!iface_release_before("6.18.44-fc-v595", 5, 7));
	/* Unreadable: assume a kernel that needs nothing. */
	ck_assert(!iface_release_before("", 5, 7));
	ck_assert(!iface_release_before("linux", 5, 7));
	ck_assert(!iface_release_before("5", 5, 7));
	ck_assert(!iface_release_before("5.", 5, 7));
}
END_TEST

START_TEST(test_bind_errors)
{
	char out[256];

	ck_assert(iface_bind_error(ENODEV, "wg0", out, sizeof(out)));
	ck_assert_str_eq(out, "no such interface wg0");
	ck_assert(iface_bind_error(EPERM, "wg0", out, sizeof(out)));
	ck_assert_msg(strncmp(out, "permission denied: binding to interface wg0", 43) == 0, "%s", out);
	if (iface_bind_needs_cap())
		ck_assert_str_eq(out, "permission denied: binding to interface wg0 needs CAP_NET_RAW before Linux 5.7");
	/* The rest is portinfo's (the port, its holder). */
	ck_assert(!iface_bind_error(EADDRINUSE, "wg0", out, sizeof(out)));
	ck_assert(!iface_bind_error(EACCES, "wg0", out, sizeof(out)));
	ck_assert(!iface_bind_error(EADDRNOTAVAIL, "wg0", out, sizeof(out)));
}
END_TEST

/* For a reload: another interface is a changed rule (rebound), not
 * another listener. */
START_TEST(test_interface_in_reload_identity)
{
	static const char *const rules[] = {
		"a tcp 0.0.0.0:2222 192.168.0.2:22 wg0",
		"a tcp 0.0.0.0:2222 192.168.0.2:22 wg1",
		"a tcp 0.0.0.0:2222 192.168.0.2:22",
	};
	struct config cfg;

	make_config(&cfg, rules, 3);
	ck_assert(rule_same_listener(&cfg.rules[0], &cfg.rules[1]));
	ck_assert(rule_same_listener(&cfg.rules[0], &cfg.rules[2]));
	ck_assert(!rule_config_equal(&cfg.rules[0], &cfg.rules[1]));
	ck_assert(!rule_config_equal(&cfg.rules[0], &cfg.rules[2]));
	cfg.rules[1] = cfg.rules[0];
	ck_assert(rule_config_equal(&cfg.rules[0], &cfg.rules[1]));
	config_free(&cfg);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("exposure");
	TCase *tc = tcase_create("exposure");

	tcase_add_checked_fixture(tc, quiet_host, real_host);
	tcase_add_test(tc, test_address_classes);
	tcase_add_test(tc, test_each_hunted_port);
	tcase_add_test(tc, test_which_rules_warn);
	tcase_add_test(tc, test_public_target_note);
	tcase_add_test(tc, test_allow_silences);
	tcase_add_test(tc, test_hunted_listen_port);
	tcase_add_test(tc, test_router_mapping_warns);
	tcase_add_test(tc, test_interface_facing_the_internet);
	tcase_add_test(tc, test_interface_names);
	tcase_add_test(tc, test_kernel_release);
	tcase_add_test(tc, test_bind_errors);
	tcase_add_test(tc, test_interface_in_reload_identity);
	tcase_add_test(tc, test_ephemeral_range);
	tcase_add_test(tc, test_reserved_list);
	tcase_add_test(tc, test_privileged_port);
	tcase_add_test(tc, test_public_target_warning);
	suite_add_tcase(s, tc);
	return check_run(s);
}
