/*
 * The arguments of portfwdctl's ports, who and free: a port, a service
 * name (from a services file of the test's own, bind-mounted over
 * /etc/services in a mount namespace, and portinfo's table), a range, and
 * /tcp or /udp; the nasty ones refused with a sentence.
 */
#include <check.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "ports.h"
#include "sysports.h"
#include "rule.h"
#include "check_run.h"
#include "services_file.h"

#define TCP RULE_PROTO_TCP
#define UDP RULE_PROTO_UDP
#define BOTH RULE_PROTO_BOTH

static const struct {
	const char *text;
	bool range_ok;
	unsigned proto;       /* 0: refused */
	unsigned tcp_lo, tcp_hi, udp_lo, udp_hi;
	const char *error;    /* part of the message for a refused one */
} specs[] = {
	{ "8080", false, BOTH, 8080, 8080, 8080, 8080, NULL },
	{ "1", false, BOTH, 1, 1, 1, 1, NULL },
	{ "65535", false, BOTH, 65535, 65535, 65535, 65535, NULL },
	{ "8080/udp", false, UDP, 0, 0, 8080, 8080, NULL },
	{ "8080/tcp", false, TCP, 8080, 8080, 0, 0, NULL },
	{ "8000-8100", true, BOTH, 8000, 8100, 8000, 8100, NULL },
	{ "8000-8100/udp", true, UDP, 0, 0, 8000, 8100, NULL },
	{ "22-22", true, BOTH, 22, 22, 22, 22, NULL },
	{ "ssh", false, TCP, 22, 22, 0, 0, NULL },
	{ "SSH", false, TCP, 22, 22, 0, 0, NULL },
	{ "http-alt", false, TCP, 8080, 8080, 0, 0, NULL },
	{ "webcache", false, TCP, 8080, 8080, 0, 0, NULL },
	{ "domain", false, BOTH, 53, 53, 53, 53, NULL },
	{ "domain/udp", false, UDP, 0, 0, 53, 53, NULL },
	{ "split", false, BOTH, 1000, 1000, 1001, 1001, NULL },
	{ "minecraft", false, BOTH, 25565, 25565, 25565, 25565, NULL },
	{ "wireguard", false, UDP, 0, 0, 51820, 51820, NULL },
	{ "9pfs", false, TCP, 564, 564, 0, 0, NULL },
	{ "0", false, 0, 0, 0, 0, 0, "port 0 is out of range: ports are 1-65535" },
	{ "65536", false, 0, 0, 0, 0, 0, "port 65536 is out of range" },
	{ "99999", false, 0, 0, 0, 0, 0, "port 99999 is out of range" },
	{ "123456789012345678901234567890", false, 0, 0, 0, 0, 0, "is out of range" },
	{ "8000-8100", false, 0, 0, 0, 0, 0, "is a range: give one port" },
	{ "8100-8000", true, 0, 0, 0, 0, 0, "range 8100-8000 runs backwards" },
	{ "0-10", true, 0, 0, 0, 0, 0, "port 0 is out of range" },
	{ "1-99999", true, 0, 0, 0, 0, 0, "port 99999 is out of range" },
	{ "8080/sctp", false, 0, 0, 0, 0, 0, "the protocol after / is tcp or udp" },
	{ "8080/", false, 0, 0, 0, 0, 0, "tcp or udp" },
	{ "/udp", false, 0, 0, 0, 0, 0, "is missing" },
	{ "", false, 0, 0, 0, 0, 0, "is missing" },
	{ "-1", false, 0, 0, 0, 0, 0, "unknown service name" },
	{ "+80", false, 0, 0, 0, 0, 0, "unknown service name \"+80\"" },
	{ "80 ", false, 0, 0, 0, 0, 0, "is not a port, a range" },
	{ "a;b", false, 0, 0, 0, 0, 0, "is not a port, a range" },
	{ "shh", false, 0, 0, 0, 0, 0, "unknown service name \"shh\" (did you mean \"ssh\"?)" },
	{ "ssh/udp", false, 0, 0, 0, 0, 0, "\"ssh\" is a TCP service (port 22), not UDP" },
	{ "wireguard/tcp", false, 0, 0, 0, 0, 0, "\"wireguard\" is a UDP service (port 51820), not TCP" },
	{ "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", false, 0, 0, 0, 0, 0,
	  "too long for a service name" },
};

/* The test services file (NULL: an empty one) over /etc/services, read
 * again by portinfo. */
static bool services_file(const char *file)
{
	if (!test_services_file(file))
		return false;
	portinfo_set_services_path(NULL);
	return true;
}

START_TEST(test_parse_spec)
{
	struct ports_spec spec;
	char err[512];

	if (!services_file("tests/conf/services.test"))
		return;
	portinfo_suggest_budget(100);
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		int rc = ports_parse_spec(specs[i].text, specs[i].range_ok, &spec, err, sizeof(err));

		if (!specs[i].proto) {
			ck_assert_msg(rc == -1, "\"%s\" accepted", specs[i].text);
			ck_assert_msg(strstr(err, specs[i].error), "\"%s\": \"%s\" lacks \"%s\"",
				      specs[i].text, err, specs[i].error);
			continue;
		}
		ck_assert_msg(rc == 0, "\"%s\" refused: %s", specs[i].text, err);
		ck_assert_msg(spec.proto == specs[i].proto, "\"%s\": proto %u", specs[i].text, spec.proto);
		if (spec.proto & TCP)
			ck_assert_msg(spec.lo[0] == specs[i].tcp_lo && spec.hi[0] == specs[i].tcp_hi,
				      "\"%s\": tcp %u-%u", specs[i].text, spec.lo[0], spec.hi[0]);
		if (spec.proto & UDP)
			ck_assert_msg(spec.lo[1] == specs[i].udp_lo && spec.hi[1] == specs[i].udp_hi,
				      "\"%s\": udp %u-%u", specs[i].text, spec.lo[1], spec.hi[1]);
	}
}
END_TEST

/* What a spec covers: its protocols and ports, no more. */
START_TEST(test_spec_match)
{
	struct ports_spec spec;
	char err[256];

	ck_assert_int_eq(ports_parse_spec("8000-8100/tcp", true, &spec, err, sizeof(err)), 0);
	ck_assert(ports_spec_match(&spec, TCP, 8000));
	ck_assert(ports_spec_match(&spec, TCP, 8100));
	ck_assert(!ports_spec_match(&spec, TCP, 7999));
	ck_assert(!ports_spec_match(&spec, TCP, 8101));
	ck_assert(!ports_spec_match(&spec, UDP, 8050));
	ck_assert_int_eq(ports_parse_spec("53", false, &spec, err, sizeof(err)), 0);
	ck_assert(ports_spec_match(&spec, TCP, 53));
	ck_assert(ports_spec_match(&spec, UDP, 53));
	ck_assert(!ports_spec_match(&spec, UDP, 54));
	/* A name with another port for each protocol matches each on its own. */
	if (!services_file("tests/conf/services.test"))
		return;
	ck_assert_int_eq(ports_parse_spec("split", false, &spec, err, sizeof(err)), 0);
	ck_assert(ports_spec_match(&spec, TCP, 1000));
	ck_assert(ports_spec_match(&spec, UDP, 1001));
	ck_assert(!ports_spec_match(&spec, TCP, 1001));
	ck_assert(!ports_spec_match(&spec, UDP, 1000));
}
END_TEST

/* The kernel's numbers as who reads them (sysports), as /proc/sys has them. */
START_TEST(test_kernel_ranges)
{
	struct sysports k;
	unsigned lo = 0, hi = 0, start = 0;
	FILE *fp;

	sysports_read(&k);
	fp = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	ck_assert_ptr_nonnull(fp);
	ck_assert_int_eq(fscanf(fp, "%u %u", &lo, &hi), 2);
	fclose(fp);
	fp = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "r");
	ck_assert_ptr_nonnull(fp);
	ck_assert_int_eq(fscanf(fp, "%u", &start), 1);
	fclose(fp);
	ck_assert(k.have_range);
	ck_assert_uint_eq(k.eph_lo, lo);
	ck_assert_uint_eq(k.eph_hi, hi);
	ck_assert_uint_eq(k.unpriv_start, start);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ports");
	TCase *tc = tcase_create("ports");

	tcase_add_test(tc, test_parse_spec);
	tcase_add_test(tc, test_spec_match);
	tcase_add_test(tc, test_kernel_ranges);
	suite_add_tcase(s, tc);
	return check_run(s);
}
