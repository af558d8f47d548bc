/* Which addresses are this host's own, and where a connect(2) really goes. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <string.h>

#include "localaddr.h"
#include "rule.h"
#include "check_run.h"

/* A made-up interface list: 192.0.2.7, 2001:db8::7, a link-layer entry
 * (AF_PACKET, as getifaddrs lists) and one without an address. */
static struct sockaddr_in fake_v4 = { .sin_family = AF_INET };
static struct sockaddr_in6 fake_v6 = { .sin6_family = AF_INET6 };
static struct sockaddr fake_packet = { .sa_family = AF_PACKET };
static struct ifaddrs fake_list[4];
static int gets, releases;

static int fake_get(struct ifaddrs **list)
{
	inet_pton(AF_INET, "192.0.2.7", &fake_v4.sin_addr);
	inet_pton(AF_INET6, "2001:db8::7", &fake_v6.sin6_addr);
	fake_list[0] = (struct ifaddrs){ .ifa_name = "eth0", .ifa_addr = &fake_packet, .ifa_next = &fake_list[1] };
	fake_list[1] = (struct ifaddrs){ .ifa_name = "eth0", .ifa_addr = (struct sockaddr *)&fake_v4, .ifa_next = &fake_list[2] };
	fake_list[2] = (struct ifaddrs){ .ifa_name = "tun0", .ifa_addr = NULL, .ifa_next = &fake_list[3] };
	fake_list[3] = (struct ifaddrs){ .ifa_name = "eth0", .ifa_addr = (struct sockaddr *)&fake_v6 };
	gets++;
	*list = fake_list;
	return 0;
}

static void fake_release(struct ifaddrs *list)
{
	ck_assert_ptr_eq(list, fake_list);
	releases++;
}

/* As getifaddrs fails where netlink sockets are not allowed. */
static int failing_get(struct ifaddrs **list)
{
	(void)list;
	gets++;
	errno = EAFNOSUPPORT;
	return -1;
}

static bool is_local(struct localaddr *la, const char *text)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256];

	ck_assert_msg(rule_parse_addr(text, &ss, &len, err, sizeof(err)) == 0, "%s: %s", text, err);
	return localaddr_is_local(la, (struct sockaddr *)&ss);
}

static const struct {
	const char *addr;
	bool local;          /* with the fake list */
	bool without_list;   /* when the list cannot be read */
} cases[] = {
	{ "127.0.0.1:80", true, true },
	{ "127.255.255.254:80", true, true },
	{ "126.255.255.255:80", false, false },
	{ "128.0.0.1:80", false, false },
	{ "0.0.0.0:80", true, true },
	{ "[::1]:80", true, true },
	{ "[::]:80", true, true },
	{ "[::2]:80", false, false },
	{ "[::ffff:127.0.0.53]:80", true, true },
	{ "[::ffff:0.0.0.0]:80", true, true },
	{ "192.0.2.7:80", true, false },
	{ "192.0.2.8:80", false, false },
	{ "[::ffff:192.0.2.7]:80", true, false },
	{ "[2001:db8::7]:80", true, false },
	{ "[2001:db8::8]:80", false, false },
	/* 7.2.0.192 is not 192.0.2.7 in the other byte order. */
	{ "7.2.0.192:80", false, false },
	/* The IPv4-compatible form is not the mapped one. */
	{ "[::192.0.2.7]:80", false, false },
};

START_TEST(test_is_local)
{
	struct localaddr la = { 0 };

	gets = releases = 0;
	localaddr_set_source(fake_get, fake_release);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(is_local(&la, cases[i].addr) == cases[i].local, "%s", cases[i].addr);
	/* Read once, freed at once. */
	ck_assert_int_eq(gets, 1);
	ck_assert_int_eq(releases, 1);
	localaddr_free(&la);

	gets = 0;
	localaddr_set_source(failing_get, NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(is_local(&la, cases[i].addr) == cases[i].without_list, "%s", cases[i].addr);
	ck_assert_int_eq(gets, 1); /* not asked again on every call */
	localaddr_free(&la);
	localaddr_set_source(NULL, NULL);
}
END_TEST

/* Loopback is never looked up: no interface list is read for it. */
START_TEST(test_loopback_needs_no_list)
{
	struct localaddr la = { 0 };

	gets = 0;
	localaddr_set_source(failing_get, NULL);
	ck_assert(is_local(&la, "127.0.0.1:1"));
	ck_assert(is_local(&la, "[::1]:1"));
	ck_assert(is_local(&la, "0.0.0.0:1"));
	ck_assert_int_eq(gets, 0);
	localaddr_free(&la);
	localaddr_set_source(NULL, NULL);
}
END_TEST

/* The real getifaddrs(3): whatever else this host has, loopback is local. */
START_TEST(test_real_interfaces)
{
	struct localaddr la = { 0 };

	localaddr_set_source(NULL, NULL);
	ck_assert(is_local(&la, "127.0.0.1:1"));
	ck_assert(!is_local(&la, "[::2]:1"));
	ck_assert(la.loaded);
	localaddr_free(&la);
}
END_TEST

static const struct {
	const char *addr, *dest;
} dests[] = {
	{ "0.0.0.0:80", "127.0.0.1:80" },
	{ "[::]:53", "[::1]:53" },
	{ "[::ffff:10.1.2.3]:8080", "10.1.2.3:8080" },
	{ "[::ffff:0.0.0.0]:9", "127.0.0.1:9" },
	{ "10.1.2.3:8080", "10.1.2.3:8080" },
	{ "[2001:db8::1]:443", "[2001:db8::1]:443" },
	{ "127.0.0.2:1", "127.0.0.2:1" },
};

START_TEST(test_destination)
{
	struct sockaddr_storage ss, out;
	socklen_t len;
	char err[256], text[RULE_ADDR_STRLEN];

	ck_assert_int_eq(rule_parse_addr(dests[_i].addr, &ss, &len, err, sizeof(err)), 0);
	localaddr_destination((struct sockaddr *)&ss, &out);
	ck_assert_str_eq(rule_format_addr((struct sockaddr *)&out, text, sizeof(text)), dests[_i].dest);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("localaddr");
	TCase *tc = tcase_create("localaddr");

	tcase_add_test(tc, test_is_local);
	tcase_add_test(tc, test_loopback_needs_no_list);
	tcase_add_test(tc, test_real_interfaces);
	tcase_add_loop_test(tc, test_destination, 0, (int)(sizeof(dests) / sizeof(dests[0])));
	suite_add_tcase(s, tc);
	return check_run(s);
}
