/*
 * The PROXY protocol header, byte by byte against haproxy's
 * proxy-protocol.txt: version 1's line (section 2.1) and version 2's
 * binary form (section 2.2): the 12-byte signature, version and command
 * 0x21, family and transport, the big-endian length of the address
 * block, then source address, destination address, source port,
 * destination port, all in network order.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "proxyproto.h"
#include "rule.h"
#include "check_run.h"

static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256];

	ck_assert_msg(rule_parse_addr(text, &ss, &len, err, sizeof(err)) == 0, "%s: %s", text, err);
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

/* The signature, written out from the specification rather than taken
 * from the module under test. */
static const uint8_t sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

START_TEST(test_v2_tcp4)
{
	struct sockaddr_storage src = addr("192.0.2.10:51234"), dst = addr("198.51.100.1:443");
	static const uint8_t want[] = {
		0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, /* signature */
		0x21,                   /* version 2, PROXY */
		0x11,                   /* AF_INET, STREAM */
		0x00, 0x0C,             /* 12 bytes of addresses follow */
		192, 0, 2, 10,          /* source address */
		198, 51, 100, 1,        /* destination address */
		0xC8, 0x22,             /* source port 51234 */
		0x01, 0xBB,             /* destination port 443 */
	};
	uint8_t buf[PROXYPROTO_MAX];
	int n = proxyproto_build(PROXYPROTO_V2, SOCK_STREAM, SA(src), SA(dst), buf, sizeof(buf));

	ck_assert_int_eq(n, (int)sizeof(want));
	ck_assert_int_eq(n, 16 + 12);
	ck_assert(memcmp(buf, want, sizeof(want)) == 0);
	ck_assert(memcmp(proxyproto_v2_sig, sig, sizeof(sig)) == 0);
}
END_TEST

START_TEST(test_v2_tcp6_and_udp6)
{
	struct sockaddr_storage src = addr("[2001:db8::1]:1"), dst = addr("[2001:db8:0:1::ff]:65535");
	uint8_t buf[PROXYPROTO_MAX];

	for (int dgram = 0; dgram < 2; dgram++) {
		int n = proxyproto_build(PROXYPROTO_V2, dgram ? SOCK_DGRAM : SOCK_STREAM, SA(src), SA(dst),
					 buf, sizeof(buf));

		ck_assert_int_eq(n, 16 + 36);
		ck_assert(memcmp(buf, sig, 12) == 0);
		ck_assert_uint_eq(buf[12], 0x21);
		ck_assert_uint_eq(buf[13], dgram ? 0x22 : 0x21); /* AF_INET6, DGRAM or STREAM */
		ck_assert_uint_eq(buf[14], 0x00);
		ck_assert_uint_eq(buf[15], 36);
		/* 2001:0db8:0000:...:0001, then 2001:0db8:0000:0001:...:00ff */
		ck_assert_uint_eq(buf[16], 0x20);
		ck_assert_uint_eq(buf[17], 0x01);
		ck_assert_uint_eq(buf[18], 0x0d);
		ck_assert_uint_eq(buf[19], 0xb8);
		for (int i = 20; i < 31; i++)
			ck_assert_uint_eq(buf[i], 0);
		ck_assert_uint_eq(buf[31], 0x01);
		ck_assert_uint_eq(buf[32], 0x20);
		ck_assert_uint_eq(buf[33], 0x01);
		ck_assert_uint_eq(buf[39], 0x01);
		ck_assert_uint_eq(buf[47], 0xff);
		/* Ports, big-endian: 1 and 65535. */
		ck_assert_uint_eq(buf[48], 0x00);
		ck_assert_uint_eq(buf[49], 0x01);
		ck_assert_uint_eq(buf[50], 0xff);
		ck_assert_uint_eq(buf[51], 0xff);
	}
}
END_TEST

START_TEST(test_v2_udp4)
{
	struct sockaddr_storage src = addr("127.0.0.1:258"), dst = addr("10.0.0.1:53");
	uint8_t buf[PROXYPROTO_MAX];
	int n = proxyproto_build(PROXYPROTO_V2, SOCK_DGRAM, SA(src), SA(dst), buf, sizeof(buf));

	ck_assert_int_eq(n, 28);
	ck_assert_uint_eq(buf[13], 0x12); /* AF_INET, DGRAM */
	ck_assert_uint_eq(buf[15], 12);
	ck_assert_uint_eq(buf[24], 0x01); /* 258 = 0x0102 */
	ck_assert_uint_eq(buf[25], 0x02);
	ck_assert_uint_eq(buf[26], 0x00);
	ck_assert_uint_eq(buf[27], 53);
}
END_TEST

START_TEST(test_v1_lines)
{
	struct sockaddr_storage s4 = addr("192.0.2.10:51234"), d4 = addr("198.51.100.1:443");
	struct sockaddr_storage s6 = addr("[2001:db8::1]:1"), d6 = addr("[::1]:8080");
	uint8_t buf[PROXYPROTO_MAX];
	int n;

	n = proxyproto_build(PROXYPROTO_V1, SOCK_STREAM, SA(s4), SA(d4), buf, sizeof(buf));
	ck_assert_int_eq(n, (int)strlen("PROXY TCP4 192.0.2.10 198.51.100.1 51234 443\r\n"));
	ck_assert(memcmp(buf, "PROXY TCP4 192.0.2.10 198.51.100.1 51234 443\r\n", (size_t)n) == 0);
	n = proxyproto_build(PROXYPROTO_V1, SOCK_STREAM, SA(s6), SA(d6), buf, sizeof(buf));
	ck_assert_int_eq(n, (int)strlen("PROXY TCP6 2001:db8::1 ::1 1 8080\r\n"));
	ck_assert(memcmp(buf, "PROXY TCP6 2001:db8::1 ::1 1 8080\r\n", (size_t)n) == 0);
}
END_TEST

/* The longest TCP6 line, 104 bytes (the specification's 107 is UNKNOWN's,
 * which portfwd never sends), fits; one byte less does not. */
START_TEST(test_v1_longest)
{
	struct sockaddr_storage s = addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
	uint8_t buf[PROXYPROTO_V1_MAX];
	int n = proxyproto_build(PROXYPROTO_V1, SOCK_STREAM, SA(s), SA(s), buf, sizeof(buf));

	ck_assert_int_eq(n, 104);
	ck_assert(memcmp(buf, "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ", 51) == 0);
	ck_assert(memcmp(buf + 90, " 65535 65535\r\n", 14) == 0);
	ck_assert_int_eq(proxyproto_build(PROXYPROTO_V1, SOCK_STREAM, SA(s), SA(s), buf, 103), -1);
}
END_TEST

/* An IPv4 client of an IPv6 socket (::ffff:a.b.c.d) is sent as IPv4. */
START_TEST(test_mapped_is_ipv4)
{
	struct sockaddr_storage src = addr("[::ffff:192.0.2.10]:51234");
	struct sockaddr_storage dst = addr("[::ffff:127.0.0.1]:80");
	struct sockaddr_storage d6 = addr("[2001:db8::2]:80");
	uint8_t buf[PROXYPROTO_MAX];
	int n;

	n = proxyproto_build(PROXYPROTO_V1, SOCK_STREAM, SA(src), SA(dst), buf, sizeof(buf));
	ck_assert_int_eq(n, (int)strlen("PROXY TCP4 192.0.2.10 127.0.0.1 51234 80\r\n"));
	ck_assert(memcmp(buf, "PROXY TCP4 192.0.2.10 127.0.0.1 51234 80\r\n", (size_t)n) == 0);
	n = proxyproto_build(PROXYPROTO_V2, SOCK_STREAM, SA(src), SA(dst), buf, sizeof(buf));
	ck_assert_int_eq(n, 28);
	ck_assert_uint_eq(buf[13], 0x11);
	ck_assert_uint_eq(buf[16], 192);
	ck_assert_uint_eq(buf[19], 10);
	ck_assert_uint_eq(buf[20], 127);
	/* Families that still differ: both as IPv6, the IPv4 one mapped. */
	n = proxyproto_build(PROXYPROTO_V2, SOCK_STREAM, SA(src), SA(d6), buf, sizeof(buf));
	ck_assert_int_eq(n, 52);
	ck_assert_uint_eq(buf[13], 0x21);
	ck_assert_uint_eq(buf[26], 0xff);
	ck_assert_uint_eq(buf[27], 0xff);
	ck_assert_uint_eq(buf[28], 192);
}
END_TEST

START_TEST(test_refusals)
{
	struct sockaddr_storage s = addr("127.0.0.1:1"), d = addr("127.0.0.1:2");
	struct sockaddr_storage un = { .ss_family = AF_UNIX };
	uint8_t buf[PROXYPROTO_MAX];

	/* Version 1 has no datagram form. */
	ck_assert_int_eq(proxyproto_build(PROXYPROTO_V1, SOCK_DGRAM, SA(s), SA(d), buf, sizeof(buf)), -1);
	ck_assert_int_eq(proxyproto_build(PROXYPROTO_NONE, SOCK_STREAM, SA(s), SA(d), buf, sizeof(buf)), -1);
	ck_assert_int_eq(proxyproto_build(PROXYPROTO_V2, SOCK_STREAM, SA(un), SA(d), buf, sizeof(buf)), -1);
	ck_assert_int_eq(proxyproto_build(PROXYPROTO_V2, SOCK_STREAM, SA(s), SA(d), buf, 27), -1);
	ck_assert_int_eq(proxyproto_parse("v1"), PROXYPROTO_V1);
	ck_assert_int_eq(proxyproto_parse("v2"), PROXYPROTO_V2);
	ck_assert_int_eq(proxyproto_parse("none"), PROXYPROTO_NONE);
	ck_assert_int_eq(proxyproto_parse("V2"), -1);
	ck_assert_int_eq(proxyproto_parse(""), -1);
	ck_assert_str_eq(proxyproto_name(PROXYPROTO_V2), "v2");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("proxyproto");
	TCase *tc = tcase_create("proxyproto");

	tcase_add_test(tc, test_v2_tcp4);
	tcase_add_test(tc, test_v2_tcp6_and_udp6);
	tcase_add_test(tc, test_v2_udp4);
	tcase_add_test(tc, test_v1_lines);
	tcase_add_test(tc, test_v1_longest);
	tcase_add_test(tc, test_mapped_is_ipv4);
	tcase_add_test(tc, test_refusals);
	suite_add_tcase(s, tc);
	return check_run(s);
}
