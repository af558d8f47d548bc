/* Choosing a target (targets.c): the policies, down and up, back-off,
 * source-hash stability, least-connections, health check results, reload. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rule.h"
#include "targets.h"
#include "check_run.h"

/* The set's clock, moved by hand. */
static double fake_now = 1000.0;

static double fake_clock(void)
{
	return fake_now;
}

/* A rule with N targets 10.0.0.1:80 ... 10.0.0.N:80 and policy B. */
static struct rule_config make_rule(size_t n, enum rule_balance b)
{
	struct rule_config r;

	memset(&r, 0, sizeof(r));
	snprintf(r.name, sizeof(r.name), "test");
	r.proto = RULE_PROTO_TCP;
	r.balance = b;
	r.targets = rule_targets_new(n);
	ck_assert_ptr_nonnull(r.targets);
	for (size_t i = 0; i < n; i++) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&r.targets->t[i].addr;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(80);
		sin->sin_addr.s_addr = htonl(0x0a000001u + (uint32_t)i);
		r.targets->t[i].addr_len = sizeof(*sin);
		snprintf(r.targets->t[i].text, sizeof(r.targets->t[i].text), "10.0.0.%zu:80", i + 1);
	}
	r.target = r.targets->t[0].addr;
	r.target_len = r.targets->t[0].addr_len;
	return r;
}

#define CLIENT(a, p)                                                                   \
	((const struct sockaddr *)&(struct sockaddr_in){ .sin_family = AF_INET,          \
							 .sin_port = htons(p),            \
							 .sin_addr.s_addr = htonl(a) })

static void setup(void)
{
	log_set_level(LOG_LVL_ERROR); /* not a line per target going up and down */
	targets_clock = fake_clock;
	fake_now = 1000.0;
}

/* A pick that ends at once, as a connection that came and went. */
static int pick_done(struct targets *t, const struct sockaddr *c)
{
	int i = targets_pick(t, c, 0);

	ck_assert_int_ge(i, 0);
	targets_connected(t, i);
	targets_closed(t, i);
	return i;
}

START_TEST(test_failover)
{
	struct rule_config r = make_rule(3, RULE_BALANCE_FAILOVER);
	struct targets *t = targets_new(&r, NULL);

	for (int k = 0; k < 5; k++)
		ck_assert_int_eq(pick_done(t, CLIENT(0x01020304, 1000 + k)), 0);
	/* The first fails: the next one takes over, the client tries it. */
	ck_assert_int_eq(targets_pick(t, CLIENT(1, 1), 0), 0);
	targets_failed(t, 0, ECONNREFUSED, "connection refused");
	ck_assert(!targets_up(t, 0));
	ck_assert_int_eq(targets_pick(t, CLIENT(1, 1), 1), 1);
	targets_connected(t, 1);
	targets_closed(t, 1);
	for (int k = 0; k < 5; k++)
		ck_assert_int_eq(pick_done(t, CLIENT(0x01020304, 2000 + k)), 1);
	/* All of them excluded: none. */
	ck_assert_int_eq(targets_pick(t, CLIENT(1, 1), 7), -1);
	targets_unref(t);
	rule_targets_unref(r.targets);
}
END_TEST

START_TEST(test_round_robin_even)
{
	struct rule_config r = make_rule(3, RULE_BALANCE_ROUND_ROBIN);
	struct targets *t = targets_new(&r, NULL);
	int count[3] = { 0 };

	for (int k = 0; k < 300; k++)
		count[pick_done(t, CLIENT(0x01020304, 1))]++;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(count[i], 100);
	/* A target that is down is skipped, the others share. */
	targets_failed(t, targets_pick(t, CLIENT(1, 1), 6), ETIMEDOUT, "timed out"); /* target 0 */
	memset(count, 0, sizeof(count));
	for (int k = 0; k < 100; k++)
		count[pick_done(t, CLIENT(0x01020304, 1))]++;
	ck_assert_int_eq(count[0], 0);
	ck_assert_int_eq(count[1], 50);
	ck_assert_int_eq(count[2], 50);
	targets_unref(t);
	rule_targets_unref(r.targets);
}
END_TEST

START_TEST(test_source_hash_stable)
{
	struct rule_config r = make_rule(4, RULE_BALANCE_SOURCE_HASH);
	struct targets *t = targets_new(&r, NULL), *again;
	int first[64], count[4] = { 0 };

	/* The address decides, not the port, and again and again. */
	for (uint32_t c = 0; c < 64; c++) {
		first[c] = pick_done(t, CLIENT(0xc0a80000u + c, 1000));
		count[first[c]]++;
		for (int k = 0; k < 5; k++)
			ck_assert_int_eq(pick_done(t, CLIENT(0xc0a80000u + c, (uint16_t)(2000 + k))), first[c]);
	}
	/* 64 clients spread over all four. */
	for (int i = 0; i < 4; i++)
		ck_assert_msg(count[i] > 4, "target %d has %d of 64 clients", i, count[i]);
	/* Another set for the same targets (a restart) sends them the same way. */
	again = targets_new(&r, NULL);
	for (uint32_t c = 0; c < 64; c++)
		ck_assert_int_eq(pick_done(again, CLIENT(0xc0a80000u + c, 9)), first[c]);
	/* A target going down moves only its own clients. */
	targets_failed(t, targets_pick(t, CLIENT(1, 1), 0xe), ECONNREFUSED, "refused"); /* target 0 */
	for (uint32_t c = 0; c < 64; c++) {
		int i = pick_done(t, CLIENT(0xc0a80000u + c, 9));

		if (first[c] != 0)
			ck_assert_int_eq(i, first[c]);
		else
			ck_assert_int_ne(i, 0);
	}
	targets_unref(again);
	targets_unref(t);
	rule_targets_unref(r.targets);
}
END_TEST

START_TEST(test_least_connections)
{
	struct rule_config r = make_rule(3, RULE_BALANCE_LEAST_CONN);
	struct targets *t = targets_new(&r, NULL);
	int held[6], count[3] = { 0 };

	/* Six long connections: two each. */
	for (int k = 0; k < 6; k++) {
		held[k] = targets_pick(t, CLIENT(1, 1), 0);
		targets_connected(t, held[k]);
		count[held[k]]++;
	}
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(count[i], 2);
	/* Target 1's two end: the next two go there. */
	for (int k = 0; k < 6; k++)
		if (held[k] == 1) {
			targets_closed(t, 1);
			held[k] = -1;
		}
	for (int k = 0; k < 6; k++)
		if (held[k] < 0) {
			held[k] = targets_pick(t, CLIENT(1, 1), 0);
			ck_assert_int_eq(held[k], 1);
			targets_connected(t, held[k]);
		}
	/* A pick counts before it connects: a burst spreads. */
	memset(count, 0, sizeof(count));
	for (int k = 0; k < 3; k++)
		count[targets_pick(t, CLIENT(1, 1), 0)]++;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(count[i], 1);
	targets_unref(t);
	rule_targets_unref(r.targets);
}
END_TEST

START_TEST(test_backoff_and_retry)
{
	struct rule_config r = make_rule(2, RULE_BALANCE_FAILOVER);
	struct targets *t = targets_new(&r, NULL);
	json_t *j;

	targets_failed(t, targets_pick(t, CLIENT(1, 1), 0), ECONNREFUSED, "connection refused");
	ck_assert(!targets_up(t, 0));
	/* Down for TARGETS_RETRY_MIN: the others get the clients. */
	fake_now += TARGETS_RETRY_MIN / 2;
	ck_assert_int_eq(pick_done(t, CLIENT(1, 1)), 1);
	/* Its retry time: one client tries it; the next goes elsewhere meanwhile. */
	fake_now += TARGETS_RETRY_MIN;
	ck_assert_int_eq(targets_pick(t, CLIENT(1, 1), 0), 0);
	ck_assert_int_eq(pick_done(t, CLIENT(1, 2)), 1);
	/* It fails again: twice as long. */
	targets_failed(t, 0, ECONNREFUSED, "connection refused");
	fake_now += TARGETS_RETRY_MIN * 1.5;
	ck_assert_int_eq(pick_done(t, CLIENT(1, 1)), 1);
	fake_now += TARGETS_RETRY_MIN;
	ck_assert_int_eq(targets_pick(t, CLIENT(1, 1), 0), 0);
	/* The wait stops growing at TARGETS_RETRY_MAX. */
	for (int k = 0; k < 20; k++)
		targets_failed(t, 0, ECONNREFUSED, "connection refused"), targets_pick(t, CLIENT(1, 1), 2);
	j = targets_json(t);
	ck_assert_double_le(json_real_value(json_object_get(json_array_get(j, 0), "retry_in")),
			    TARGETS_RETRY_MAX);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "state")), "down");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "reason")),
			 "connection refused");
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(j, 0), "failures")), 22);
	json_decref(j);
	/* A connection that works brings it up, and the wait starts again from the least. */
	fake_now += TARGETS_RETRY_MAX + 1;
	ck_assert_int_eq(targets_pick(t, CLIENT(1, 1), 0), 0);
	targets_connected(t, 0);
	ck_assert(targets_up(t, 0));
	targets_closed(t, 0);
	targets_unref(t);
	rule_targets_unref(r.targets);
}
END_TEST

/* Every target down: they are tried anyway, nobody is refused. */
START_TEST(test_all_down_still_tried)
{
	struct rule_config r = make_rule(2, RULE_BALANCE_ROUND_ROBIN);
	struct targets *t = targets_new(&r, NULL);

	targets_failed(t, targets_pick(t, CLIENT(1, 1), 2), ECONNREFUSED, "refused");
	targets_failed(t, targets_pick(t, CLIENT(1, 1), 1), ECONNREFUSED, "refused");
	ck_assert(!targets_up(t, 0) && !targets_up(t, 1));
	ck_assert_int_ge(targets_pick(t, CLIENT(1, 1), 0), 0);
	ck_assert_int_eq(targets_pick(t, CLIENT(1, 1), 1), 1);
	ck_assert_int_eq(targets_pick(t, CLIENT(1, 1), 2), 0);
	ck_assert_int_eq(targets_pick(t, CLIENT(1, 1), 3), -1);
	targets_unref(t);
	rule_targets_unref(r.targets);
}
END_TEST

START_TEST(test_health_rise_fall)
{
	struct rule_config r = make_rule(2, RULE_BALANCE_FAILOVER);
	struct targets *t;

	r.health = (struct rule_health){ true, 1.0, 0.5, 2, 3 };
	t = targets_new(&r, NULL);
	targets_health_result(t, 0, false, "connect: Connection refused");
	targets_health_result(t, 0, false, "connect: Connection refused");
	ck_assert(targets_up(t, 0)); /* fall = 3 */
	targets_health_result(t, 0, true, NULL); /* the run is broken */
	targets_health_result(t, 0, false, "x");
	targets_health_result(t, 0, false, "x");
	ck_assert(targets_up(t, 0));
	targets_health_result(t, 0, false, "x");
	ck_assert(!targets_up(t, 0));
	/* Down by the checks: no client tries it however long it waits. */
	fake_now += 1000;
	for (int k = 0; k < 5; k++)
		ck_assert_int_eq(pick_done(t, CLIENT(1, 1)), 1);
	targets_health_result(t, 0, true, NULL);
	ck_assert(!targets_up(t, 0)); /* rise = 2 */
	targets_health_result(t, 0, true, NULL);
	ck_assert(targets_up(t, 0));
	ck_assert_int_eq(pick_done(t, CLIENT(1, 1)), 0);
	targets_unref(t);
	rule_targets_unref(r.targets);
}
END_TEST

/* A reload: the same targets keep the set; a changed list keeps the state
 * of the addresses it still has. */
START_TEST(test_reload_keeps_state)
{
	struct rule_config r = make_rule(3, RULE_BALANCE_FAILOVER), r2 = make_rule(4, RULE_BALANCE_FAILOVER);
	struct rule_config r3 = make_rule(3, RULE_BALANCE_ROUND_ROBIN);
	struct targets *t = targets_new(&r, NULL), *t2;
	struct targets_stats st;

	ck_assert(targets_same_config(t, &r));
	ck_assert(!targets_same_config(t, &r2));
	ck_assert(!targets_same_config(t, &r3));
	pick_done(t, CLIENT(1, 1));
	targets_failed(t, targets_pick(t, CLIENT(1, 1), 0), ECONNREFUSED, "refused");
	t2 = targets_new(&r2, t);
	ck_assert_uint_eq(targets_count(t2), 4);
	ck_assert(!targets_up(t2, 0));
	ck_assert(targets_up(t2, 3));
	targets_stats(t2, 0, &st);
	ck_assert_uint_eq(st.connections, 1);
	ck_assert_uint_eq(st.failures, 1);
	ck_assert_uint_eq(st.active, 0);
	targets_unref(t2);
	targets_unref(t);
	rule_targets_unref(r.targets);
	rule_targets_unref(r2.targets);
	rule_targets_unref(r3.targets);
}
END_TEST

/* A reload that replaces the set hands its targets over: the new set
 * counts the connections still open from before, and their ends (and a
 * client that waited from before and picks from the old set) count
 * there. */
START_TEST(test_hand_over_counts)
{
	struct rule_config r = make_rule(3, RULE_BALANCE_LEAST_CONN), r2 = make_rule(4, RULE_BALANCE_LEAST_CONN);
	struct targets *t = targets_new(&r, NULL), *t2;
	struct targets_stats st;
	int a = targets_pick(t, CLIENT(1, 1), 0), b = targets_pick(t, CLIENT(1, 2), 0), c;

	targets_connected(t, a);
	targets_connected(t, b);
	t2 = targets_new(&r2, t);
	targets_hand_over(t, t2);
	targets_stats(t2, (size_t)a, &st);
	ck_assert_uint_eq(st.active, 1);
	targets_stats(t2, (size_t)b, &st);
	ck_assert_uint_eq(st.active, 1);
	/* least-connections on the new set sees them: a third client goes
	 * to a target with none. */
	c = targets_pick(t2, CLIENT(1, 3), 0);
	ck_assert_int_ne(c, a);
	ck_assert_int_ne(c, b);
	/* An old connection ends: counted in the new set. */
	targets_closed(t, a);
	targets_stats(t2, (size_t)a, &st);
	ck_assert_uint_eq(st.active, 0);
	/* A client that waited picks from the old set: counted in the new. */
	{
		int w = targets_pick(t, CLIENT(1, 4), 1ULL << b | 1ULL << c);

		ck_assert_int_ge(w, 0);
		targets_stats(t2, (size_t)w, &st);
		ck_assert_uint_eq(st.active, 1);
		targets_failed(t, w, ECONNREFUSED, "refused");
		ck_assert(!targets_up(t2, (size_t)w));
	}
	targets_closed(t, b);
	targets_closed(t2, c);
	for (size_t i = 0; i < 4; i++) {
		targets_stats(t2, i, &st);
		ck_assert_uint_eq(st.active, 0);
	}
	targets_unref(t);
	targets_unref(t2);
	rule_targets_unref(r.targets);
	rule_targets_unref(r2.targets);
}
END_TEST

/* A rule with one `target` and no list is a set of one. */
START_TEST(test_single_target)
{
	struct rule_config r;
	struct sockaddr_in *sin = (struct sockaddr_in *)&r.target;
	struct targets *t;
	char addr[RULE_ADDR_STRLEN];

	memset(&r, 0, sizeof(r));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(22);
	sin->sin_addr.s_addr = htonl(0xc0a80002);
	r.target_len = sizeof(*sin);
	t = targets_new(&r, NULL);
	ck_assert_uint_eq(targets_count(t), 1);
	ck_assert_str_eq(rule_format_addr(targets_addr(t, 0, NULL), addr, sizeof(addr)), "192.168.0.2:22");
	targets_failed(t, targets_pick(t, CLIENT(1, 1), 0), ECONNREFUSED, "refused");
	ck_assert_int_eq(targets_pick(t, CLIENT(1, 1), 0), 0); /* down, and still tried */
	targets_unref(t);
}
END_TEST

/* Workers pick and report at once while the main thread reads: under
 * ThreadSanitizer this finds an unguarded counter. */
struct hammer {
	struct targets *t;
	int id;
};

static void *hammer_thread(void *p)
{
	struct hammer *h = p;

	for (int k = 0; k < 20000; k++) {
		int i = targets_pick(h->t, CLIENT((uint32_t)(k * 7 + h->id), 1), 0);

		if (k % 5 == 0)
			targets_failed(h->t, i, ECONNREFUSED, "refused");
		else {
			targets_connected(h->t, i);
			targets_closed(h->t, i);
		}
	}
	return NULL;
}

START_TEST(test_threads)
{
	struct rule_config r = make_rule(5, RULE_BALANCE_LEAST_CONN);
	struct targets *t = targets_new(&r, NULL);
	struct hammer h[3];
	pthread_t th[3];
	uint64_t total = 0;

	for (int k = 0; k < 3; k++) {
		h[k] = (struct hammer){ t, k };
		ck_assert_int_eq(pthread_create(&th[k], NULL, hammer_thread, &h[k]), 0);
	}
	for (int k = 0; k < 50; k++)
		json_decref(targets_json(t));
	for (int k = 0; k < 3; k++)
		pthread_join(th[k], NULL);
	for (size_t i = 0; i < 5; i++) {
		struct targets_stats st;

		targets_stats(t, i, &st);
		ck_assert_uint_eq(st.active, 0);
		total += st.connections + st.failures;
	}
	ck_assert_uint_eq(total, 3 * 20000);
	targets_unref(t);
	rule_targets_unref(r.targets);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("targets");
	TCase *tc = tcase_create("targets");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_failover);
	tcase_add_test(tc, test_round_robin_even);
	tcase_add_test(tc, test_source_hash_stable);
	tcase_add_test(tc, test_least_connections);
	tcase_add_test(tc, test_backoff_and_retry);
	tcase_add_test(tc, test_all_down_still_tried);
	tcase_add_test(tc, test_health_rise_fall);
	tcase_add_test(tc, test_reload_keeps_state);
	tcase_add_test(tc, test_hand_over_counts);
	tcase_add_test(tc, test_single_target);
	tcase_add_test(tc, test_threads);
	suite_add_tcase(s, tc);
	return check_run(s);
}
