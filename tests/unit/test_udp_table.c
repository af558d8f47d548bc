/* The UDP session table: one session per client address, found by hash. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "udp_table.h"
#include "check_run.h"

static struct sockaddr_in v4(uint32_t addr, uint16_t port)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(addr);
	sin.sin_port = htons(port);
	return sin;
}

static struct udp_session *session_for(const struct sockaddr *sa)
{
	struct udp_session *s = calloc(1, sizeof(*s));

	ck_assert_int_eq(udp_table_key(sa, NULL, &s->key), 0);
	return s;
}

START_TEST(test_add_find_remove)
{
	struct udp_session *head = NULL, *a, *b, *c, *tmp;
	struct sockaddr_in x = v4(0x7f000001, 5000), y = v4(0x7f000001, 5001), z = v4(0x7f000002, 5000);

	a = session_for((struct sockaddr *)&x);
	b = session_for((struct sockaddr *)&y);
	ck_assert_int_eq(udp_table_add(&head, a), 0);
	ck_assert_int_eq(udp_table_add(&head, b), 0);
	ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&x, NULL), a);
	ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&y, NULL), b);
	/* Same port, other address: another client. */
	ck_assert_ptr_null(udp_table_find(head, (struct sockaddr *)&z, NULL));
	c = session_for((struct sockaddr *)&z);
	ck_assert_int_eq(udp_table_add(&head, c), 0);
	ck_assert_uint_eq(udp_table_count(head), 3);
	udp_table_remove(&head, a);
	ck_assert_ptr_null(udp_table_find(head, (struct sockaddr *)&x, NULL));
	ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&z, NULL), c);
	ck_assert_uint_eq(udp_table_count(head), 2);
	free(a);
	HASH_ITER(hh, head, a, tmp) {
		udp_table_remove(&head, a);
		free(a);
	}
	ck_assert_ptr_null(head);
}
END_TEST

/* The key ignores everything but family, address and port. */
START_TEST(test_key_ignores_padding)
{
	struct udp_session *head = NULL, *a;
	struct sockaddr_in6 p, q;

	memset(&p, 0, sizeof(p));
	p.sin6_family = AF_INET6;
	p.sin6_port = htons(53);
	inet_pton(AF_INET6, "::1", &p.sin6_addr);
	memset(&q, 0xff, sizeof(q));
	q.sin6_family = AF_INET6;
	q.sin6_port = htons(53);
	q.sin6_flowinfo = 12345;
	inet_pton(AF_INET6, "::1", &q.sin6_addr);
	a = session_for((struct sockaddr *)&p);
	ck_assert_int_eq(udp_table_add(&head, a), 0);
	ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&q, NULL), a);
	/* ::ffff:127.0.0.1 over IPv6 is not 127.0.0.1 over IPv4. */
	{
		struct sockaddr_in x = v4(0x7f000001, 53);

		ck_assert_ptr_null(udp_table_find(head, (struct sockaddr *)&x, NULL));
	}
	udp_table_remove(&head, a);
	free(a);
}
END_TEST

START_TEST(test_many_clients)
{
	enum { N = 20000 };
	struct udp_session **all = calloc(N, sizeof(*all)), *head = NULL;
	struct sockaddr_un_like { sa_family_t f; } bad = { AF_UNIX };
	struct udp_key k;

	for (int i = 0; i < N; i++) {
		struct sockaddr_in sin = v4(0x0a000000u + (uint32_t)(i / 100), (uint16_t)(1024 + i % 100));

		all[i] = session_for((struct sockaddr *)&sin);
		ck_assert_int_eq(udp_table_add(&head, all[i]), 0);
	}
	ck_assert_uint_eq(udp_table_count(head), N);
	for (int i = 0; i < N; i++) {
		struct sockaddr_in sin = v4(0x0a000000u + (uint32_t)(i / 100), (uint16_t)(1024 + i % 100));

		ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&sin, NULL), all[i]);
	}
	for (int i = 0; i < N; i += 2)
		udp_table_remove(&head, all[i]);
	ck_assert_uint_eq(udp_table_count(head), N / 2);
	for (int i = 0; i < N; i++) {
		struct sockaddr_in sin = v4(0x0a000000u + (uint32_t)(i / 100), (uint16_t)(1024 + i % 100));

		ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&sin, NULL), i % 2 ? all[i] : NULL);
	}
	for (int i = 1; i < N; i += 2)
		udp_table_remove(&head, all[i]);
	ck_assert_ptr_null(head);
	for (int i = 0; i < N; i++)
		free(all[i]);
	free(all);
	/* Not an IP address: no key, and never found. */
	ck_assert_int_eq(udp_table_key((struct sockaddr *)&bad, NULL, &k), -1);
}
END_TEST

/* One client sending to two addresses of the host: two sessions. */
START_TEST(test_local_address_in_key)
{
	struct udp_session *head = NULL, *a, *b;
	struct sockaddr_in x = v4(0x0a4d0002, 5000);
	struct udp_local one = { .family = AF_INET }, three = { .family = AF_INET };

	one.addr.v4.s_addr = htonl(0x0a4d0001);
	three.addr.v4.s_addr = htonl(0x0a4d0003);
	a = calloc(1, sizeof(*a));
	b = calloc(1, sizeof(*b));
	ck_assert_int_eq(udp_table_key((struct sockaddr *)&x, &one, &a->key), 0);
	ck_assert_int_eq(udp_table_key((struct sockaddr *)&x, &three, &b->key), 0);
	ck_assert_int_eq(udp_table_add(&head, a), 0);
	ck_assert_ptr_null(udp_table_find(head, (struct sockaddr *)&x, &three));
	ck_assert_ptr_null(udp_table_find(head, (struct sockaddr *)&x, NULL));
	ck_assert_int_eq(udp_table_add(&head, b), 0);
	ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&x, &one), a);
	ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&x, &three), b);
	udp_table_remove(&head, a);
	udp_table_remove(&head, b);
	free(a);
	free(b);
}
END_TEST

/* What a reply's control message says is what a received one said. */
START_TEST(test_pktinfo_round_trip)
{
	union udp_cmsg ctl;
	struct msghdr msg = { 0 };
	struct udp_local in = { .family = AF_INET6, .ifindex = 7 }, out;
	struct in6_pktinfo pi;

	inet_pton(AF_INET6, "fd77::3", &in.addr.v6);
	msg.msg_control = ctl.buf;
	msg.msg_controllen = udp_local_to_cmsg(&in, &ctl);
	ck_assert_uint_gt(msg.msg_controllen, 0);
	ck_assert_int_eq(udp_local_from_msg(&msg, &out), 0);
	ck_assert_int_eq(out.family, AF_INET6);
	ck_assert_int_eq(memcmp(&out.addr.v6, &in.addr.v6, sizeof(in.addr.v6)), 0);
	/* A global address leaves the interface to the route... */
	memcpy(&pi, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(pi));
	ck_assert_uint_eq(pi.ipi6_ifindex, 0);
	/* ...a link-local one is bound to the interface it came in on. */
	inet_pton(AF_INET6, "fe80::3", &in.addr.v6);
	msg.msg_controllen = udp_local_to_cmsg(&in, &ctl);
	memcpy(&pi, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(pi));
	ck_assert_uint_eq(pi.ipi6_ifindex, 7);

	/* To a group: from the interface's own address ("::" and the interface). */
	inet_pton(AF_INET6, "ff02::1", &in.addr.v6);
	msg.msg_controllen = udp_local_to_cmsg(&in, &ctl);
	memcpy(&pi, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(pi));
	ck_assert(IN6_IS_ADDR_UNSPECIFIED(&pi.ipi6_addr));
	ck_assert_uint_eq(pi.ipi6_ifindex, 7);

	in = (struct udp_local){ .family = AF_INET };
	in.addr.v4.s_addr = htonl(0x0a4d0003);
	msg.msg_controllen = udp_local_to_cmsg(&in, &ctl);
	ck_assert_int_eq(udp_local_from_msg(&msg, &out), 0);
	ck_assert_int_eq(out.family, AF_INET);
	ck_assert_uint_eq(out.addr.v4.s_addr, htonl(0x0a4d0003));
	/* Nothing to say for a listener bound to one address. */
	in.family = 0;
	ck_assert_uint_eq(udp_local_to_cmsg(&in, &ctl), 0);
	msg.msg_controllen = 0;
	ck_assert_int_eq(udp_local_from_msg(&msg, &out), -1);
}
END_TEST

/*
 * A control message whose length runs past the buffer (fuzz_tables found
 * it read past the end: CMSG_NXTHDR does not check the length it is given).
 * The kernel never writes one; the buffer is refused, not read past.
 */
START_TEST(test_pktinfo_length_past_buffer)
{
	/* Exactly the header and nothing more, on the heap: AddressSanitizer
	 * sees any read past it. */
	size_t len = CMSG_LEN(0);
	struct cmsghdr *c = calloc(1, len);
	struct msghdr msg = { .msg_control = c, .msg_controllen = len };
	struct udp_local out;

	c->cmsg_level = IPPROTO_IP;
	c->cmsg_type = IP_PKTINFO;
	c->cmsg_len = 768;
	ck_assert_int_eq(udp_local_from_msg(&msg, &out), -1);
	c->cmsg_level = IPPROTO_IPV6;
	c->cmsg_type = IPV6_PKTINFO;
	ck_assert_int_eq(udp_local_from_msg(&msg, &out), -1);
	free(c);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("udp_table");
	TCase *tc = tcase_create("udp_table");

	tcase_add_test(tc, test_add_find_remove);
	tcase_add_test(tc, test_key_ignores_padding);
	tcase_add_test(tc, test_many_clients);
	tcase_add_test(tc, test_local_address_in_key);
	tcase_add_test(tc, test_pktinfo_round_trip);
	tcase_add_test(tc, test_pktinfo_length_past_buffer);
	suite_add_tcase(s, tc);
	return check_run(s);
}
