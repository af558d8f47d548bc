/* Runs one Check suite and turns its result into an exit status. */
#ifndef PORTFWD_TEST_CHECK_RUN_H
#define PORTFWD_TEST_CHECK_RUN_H

#include <check.h>
#include <stdlib.h>
#include <string.h>

/*
 * PORTFWD_TEST_ONLY="test_a test_b" runs only the named tests of a suite
 * (by hand, while working on one); unset or empty, every test runs.
 */
static inline void check_add_test(TCase *tc, const TTest *t)
{
	const char *only = getenv("PORTFWD_TEST_ONLY");

	if (only && *only) {
		size_t len = strlen(t->name);
		const char *w = only;

		/* One of the space-separated words is the name. */
		while (*w && !(strncmp(w, t->name, len) == 0 && (w[len] == ' ' || !w[len]))) {
			w += strcspn(w, " ");
			w += strspn(w, " ");
		}
		if (!*w)
			return;
	}
	_tcase_add_test(tc, t, 0, 0, 0, 1);
}
#undef tcase_add_test
#define tcase_add_test(tc, tf) check_add_test((tc), (tf))

static inline int check_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

#endif
