/*
 * The configuration corpus: every file in tests/conf/good must load, and
 * every file in tests/conf/bad must fail with exactly the messages in its
 * .expected file (FILE standing for the path), in order.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "check_run.h"

#define CONF_DIR "tests/conf"

static char *read_file(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	long n;

	ck_assert_msg(fp != NULL, "cannot open %s", path);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	buf = calloc(1, (size_t)n + 1);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	return buf;
}

/* Calls FN for every *.conf in DIR; returns how many. */
static int each_conf(const char *dir, void (*fn)(const char *path))
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	ck_assert_msg(d != NULL, "cannot open %s (run the tests from the top of the tree)", dir);
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		char path[512];

		if (len < 6 || strcmp(de->d_name + len - 5, ".conf") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fn(path);
		n++;
	}
	closedir(d);
	return n;
}

static void expect_valid(const char *path)
{
	struct config_errors errs = { 0 };
	struct config cfg;
	int rc = config_load(path, &cfg, &errs);

	ck_assert_msg(rc == 0, "%s: rejected: %s", path, errs.count ? errs.msgs[0] : "?");
	ck_assert_int_eq(errs.count, 0);
	ck_assert_int_gt(cfg.nrules, 0);
	config_free(&cfg);
}

static void expect_errors(const char *path)
{
	struct config_errors errs = { 0 };
	struct config cfg;
	char expected_path[512], *expected, *got = NULL;
	size_t got_len = 0;
	FILE *mem;

	snprintf(expected_path, sizeof(expected_path), "%.*s.expected",
		 (int)(strlen(path) - 5), path);
	expected = read_file(expected_path);
	ck_assert_int_eq(config_load(path, &cfg, &errs), -1);
	ck_assert_int_gt(errs.count, 0);
	mem = open_memstream(&got, &got_len);
	for (size_t i = 0; i < errs.count; i++) {
		const char *m = errs.msgs[i];

		ck_assert_msg(strncmp(m, path, strlen(path)) == 0, "message does not name the file: %s", m);
		fprintf(mem, "FILE%s\n", m + strlen(path));
	}
	fclose(mem);
	ck_assert_msg(strcmp(got, expected) == 0, "%s:\n--- expected\n%s--- got\n%s", path, expected, got);
	free(got);
	free(expected);
	config_errors_free(&errs);
}

START_TEST(test_good_corpus)
{
	ck_assert_int_ge(each_conf(CONF_DIR "/good", expect_valid), 3);
}
END_TEST

START_TEST(test_bad_corpus)
{
	ck_assert_int_ge(each_conf(CONF_DIR "/bad", expect_errors), 15);
}
END_TEST

START_TEST(test_shipped_examples_are_valid)
{
	expect_valid("conf/portfwd.conf");
	expect_valid("conf/demo.conf");
}
END_TEST

/* The example's values are the documented defaults, applied to every rule. */
START_TEST(test_defaults_and_overrides)
{
	struct config_errors errs = { 0 };
	struct config cfg;

	ck_assert_int_eq(config_load("conf/portfwd.conf", &cfg, &errs), 0);
	ck_assert_str_eq(cfg.control_socket, "/run/portfwd/portfwd.sock");
	ck_assert_int_eq(cfg.log_level, LOG_LVL_INFO);
	ck_assert(cfg.log_connections);
	ck_assert_int_eq(cfg.nrules, 4);
	ck_assert_str_eq(cfg.rules[0].name, "ssh");
	ck_assert_int_eq(cfg.rules[0].proto, RULE_PROTO_TCP);
	ck_assert_int_eq(cfg.rules[0].set.max_connections, 4096);
	ck_assert_int_eq(cfg.rules[0].set.buffer_size, 65536);
	ck_assert(cfg.rules[0].set.splice);
	ck_assert_int_eq(cfg.workers, 0);
	ck_assert(cfg.drain_timeout == 0);
	ck_assert(cfg.rules[0].set.idle_timeout == 3600.0);
	ck_assert(cfg.rules[1].set.idle_timeout == 600.0);
	ck_assert_int_eq(cfg.rules[2].proto, RULE_PROTO_UDP);
	ck_assert_int_eq(cfg.rules[3].proto, RULE_PROTO_BOTH);
	config_free(&cfg);

	ck_assert_int_eq(config_load(CONF_DIR "/good/full.conf", &cfg, &errs), 0);
	ck_assert_int_eq(cfg.log_level, LOG_LVL_DEBUG);
	ck_assert(!cfg.log_connections);
	ck_assert(cfg.rules[0].set.connect_timeout == 1.0);    /* rule override */
	ck_assert(cfg.rules[1].set.connect_timeout == 2.5);    /* from defaults */
	ck_assert(cfg.rules[0].set.idle_timeout == 7200.0);
	ck_assert(cfg.rules[1].set.idle_timeout == 0.0);
	ck_assert(cfg.rules[1].set.udp_idle_timeout == 5.5);
	ck_assert(cfg.rules[2].set.udp_idle_timeout == 30.0);   /* integer accepted */
	ck_assert_int_eq(cfg.rules[0].set.buffer_size, 4096);
	ck_assert_int_eq(cfg.rules[2].set.buffer_size, 16384);
	ck_assert_int_eq(cfg.rules[1].set.max_udp_sessions, 1000000);
	ck_assert_int_eq(cfg.rules[2].set.max_connections, 100);
	ck_assert_int_eq(cfg.workers, 3);
	ck_assert(cfg.drain_timeout == 30);
	ck_assert(cfg.rules[0].set.splice);   /* rule override */
	ck_assert(!cfg.rules[1].set.splice);  /* from defaults */
	config_free(&cfg);
}
END_TEST

START_TEST(test_missing_file)
{
	struct config_errors errs = { 0 };
	struct config cfg;

	ck_assert_int_eq(config_load("/nonexistent/portfwd.conf", &cfg, &errs), -1);
	ck_assert_int_eq(errs.count, 1);
	ck_assert_str_eq(errs.msgs[0], "/nonexistent/portfwd.conf: cannot open: No such file or directory");
	config_errors_free(&errs);
}
END_TEST

/* Text from a client: never an @include (libconfig 1.5 takes a line
 * ^[ \t]*@include[ \t]+" for one), never a NUL, messages named by the label. */
START_TEST(test_text_refuses_include)
{
	static const struct {
		const char *text;
		size_t len;
		const char *msg; /* NULL: past the screening (libconfig judges it) */
	} cases[] = {
		{ "@include \"/etc/passwd\"\n", 0, "label:1: @include is not allowed" },
		{ "# c\n \t@include \"/etc/passwd\"\n", 0, "label:2: @include is not allowed" },
		{ "a = \"x\n@include \\\"y\\\"\";\n", 0, "label:2: @include is not allowed" },
		{ "/* c\n@include \"y\" */\n", 0, "label:2: @include is not allowed" },
		{ "a = 1;\r@include \"y\"\n", 0, "label:1: @include is not allowed" },
		{ "@include\"y\"\n", 0, "label:1: @include is not allowed" },
		{ "rules = ();\n\0@include \"y\"\n", 25, "label:2: the file contains a NUL byte" },
		{ "a = 1; @include \"/etc/passwd\"\n", 0, "label:1: syntax error" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config_errors errs = { 0 };
		struct config cfg;
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);

		ck_assert_int_eq(config_load_text("label", cases[i].text, len, &cfg, &errs), -1);
		ck_assert_int_ge(errs.count, 1);
		ck_assert_msg(strncmp(errs.msgs[0], cases[i].msg, strlen(cases[i].msg)) == 0,
			      "case %zu: %s", i, errs.msgs[0]);
		for (size_t j = 0; j < errs.count; j++)
			ck_assert_msg(!strstr(errs.msgs[j], "root:"), "case %zu quotes a file: %s", i, errs.msgs[j]);
		config_errors_free(&errs);
	}
}
END_TEST

/* The daemon's own file: a regular file of at most CTL_CHECK_MAX bytes,
 * never waited on; its @include directives are followed. */
START_TEST(test_file_kinds)
{
	char dir[] = "/tmp/portfwd-config.XXXXXX", path[128], inc[128], *big;
	struct config_errors errs = { 0 };
	struct config cfg;
	FILE *fp;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_int_eq(config_load(path, &cfg, &errs), -1);
	ck_assert_int_eq(errs.count, 1);
	ck_assert_msg(strstr(errs.msgs[0], "/fifo: not a regular file"), "%s", errs.msgs[0]);
	config_errors_free(&errs);
	unlink(path);

	ck_assert_int_eq(config_load(dir, &cfg, &errs), -1);
	ck_assert_msg(strstr(errs.msgs[0], ": not a regular file"), "%s", errs.msgs[0]);
	config_errors_free(&errs);

	snprintf(path, sizeof(path), "%s/big.conf", dir);
	big = malloc(CTL_CHECK_MAX + 1);
	memset(big, '#', CTL_CHECK_MAX + 1);
	fp = fopen(path, "w");
	ck_assert_int_eq(fwrite(big, 1, CTL_CHECK_MAX + 1, fp), CTL_CHECK_MAX + 1);
	fclose(fp);
	free(big);
	ck_assert_int_eq(config_load(path, &cfg, &errs), -1);
	ck_assert_msg(strstr(errs.msgs[0], "/big.conf: larger than 1048576 bytes"), "%s", errs.msgs[0]);
	config_errors_free(&errs);
	unlink(path);

	snprintf(inc, sizeof(inc), "%s/rules.inc", dir);
	fp = fopen(inc, "w");
	fputs("rules = ( { name = \"a\"; proto = \"tcp\"; listen = \"127.0.0.1:1\"; target = \"127.0.0.1:2\"; } );\n", fp);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/main.conf", dir);
	fp = fopen(path, "w");
	fprintf(fp, "@include \"%s\"\n", inc);
	fclose(fp);
	ck_assert_int_eq(config_load(path, &cfg, &errs), 0);
	ck_assert_int_eq(cfg.nrules, 1);
	config_free(&cfg);
	unlink(inc);
	unlink(path);
	rmdir(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_test(tc, test_good_corpus);
	tcase_add_test(tc, test_bad_corpus);
	tcase_add_test(tc, test_shipped_examples_are_valid);
	tcase_add_test(tc, test_defaults_and_overrides);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_text_refuses_include);
	tcase_add_test(tc, test_file_kinds);
	suite_add_tcase(s, tc);
	return check_run(s);
}
