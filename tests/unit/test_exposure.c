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

#include "config.h"
#include "exposure.h"
#include "iface.h"
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

/* Checks CFG into L; returns how many items there are. */
static size_t items_of(const struct config *cfg, struct exposure_list *l)
{
	ck_assert_int_eq(exposure_check(cfg, l), 0);
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

/* A public target: a note, also on a rule that is otherwise quiet (an
 * interface, loopback); a private, loopback or link-local one: none. */
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
	ck_assert_int_eq(l.items[1].level, EXPOSURE_NOTE);
	ck_assert_str_eq(l.items[2].name, "out6");
	ck_assert_str_eq(l.items[3].name, "mapped");
	ck_assert_int_eq(exposure_count(&l, EXPOSURE_WARNING), 0);
	/* JSON: all, or one rule's. */
	j = exposure_json(&l, SIZE_MAX);
	ck_assert_int_eq(json_array_size(j), 4);
	json_decref(j);
	j = exposure_json(&l, 1);
	ck_assert_int_eq(json_array_size(j), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "rule")), "vpn");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "level")), "note");
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

static void quiet_host(void)
{
	iface_set_sources(no_default_route, no_ifaddrs, NULL);
}

static void real_host(void)
{
	iface_set_sources(NULL, NULL, NULL);
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
	tcase_add_test(tc, test_interface_facing_the_internet);
	tcase_add_test(tc, test_interface_names);
	tcase_add_test(tc, test_kernel_release);
	tcase_add_test(tc, test_bind_errors);
	tcase_add_test(tc, test_interface_in_reload_identity);
	suite_add_tcase(s, tc);
	return check_run(s);
}
