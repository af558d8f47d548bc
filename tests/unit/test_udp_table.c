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

	ck_assert_int_eq(udp_table_key(sa, &s->key), 0);
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
	ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&x), a);
	ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&y), b);
	/* Same port, other address: another client. */
	ck_assert_ptr_null(udp_table_find(head, (struct sockaddr *)&z));
	c = session_for((struct sockaddr *)&z);
	ck_assert_int_eq(udp_table_add(&head, c), 0);
	ck_assert_uint_eq(udp_table_count(head), 3);
	udp_table_remove(&head, a);
	ck_assert_ptr_null(udp_table_find(head, (struct sockaddr *)&x));
	ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&z), c);
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
	ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&q), a);
	/* ::ffff:127.0.0.1 over IPv6 is not 127.0.0.1 over IPv4. */
	{
		struct sockaddr_in x = v4(0x7f000001, 53);

		ck_assert_ptr_null(udp_table_find(head, (struct sockaddr *)&x));
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

		ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&sin), all[i]);
	}
	for (int i = 0; i < N; i += 2)
		udp_table_remove(&head, all[i]);
	ck_assert_uint_eq(udp_table_count(head), N / 2);
	for (int i = 0; i < N; i++) {
		struct sockaddr_in sin = v4(0x0a000000u + (uint32_t)(i / 100), (uint16_t)(1024 + i % 100));

		ck_assert_ptr_eq(udp_table_find(head, (struct sockaddr *)&sin), i % 2 ? all[i] : NULL);
	}
	for (int i = 1; i < N; i += 2)
		udp_table_remove(&head, all[i]);
	ck_assert_ptr_null(head);
	for (int i = 0; i < N; i++)
		free(all[i]);
	free(all);
	/* Not an IP address: no key, and never found. */
	ck_assert_int_eq(udp_table_key((struct sockaddr *)&bad, &k), -1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("udp_table");
	TCase *tc = tcase_create("udp_table");

	tcase_add_test(tc, test_add_find_remove);
	tcase_add_test(tc, test_key_ignores_padding);
	tcase_add_test(tc, test_many_clients);
	suite_add_tcase(s, tc);
	return check_run(s);
}
