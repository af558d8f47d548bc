/*
 * The configuration corpus: every file in tests/conf/good must load, and
 * every file in tests/conf/bad must fail with exactly the messages in its
 * .expected file (FILE standing for the path), in order.
 */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "daemon.h"
#include "worker.h"
#include "localaddr.h"
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
	config_free(&cfg);
}

/* The example, conf/portfwd.conf, has no rules; its examples are comments
 * ("  # { name = ..."). Writes it with them uncommented to a temporary
 * file, whose path goes in PATH (LEN bytes), to unlink after. */
static void example_uncommented(char *path, size_t len)
{
	char *text = read_file("conf/portfwd.conf");
	FILE *fp;
	int fd;

	snprintf(path, len, "/tmp/portfwd-example-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	fp = fdopen(fd, "w");
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
		fprintf(fp, "%s\n", strncmp(line, "  # {", 5) == 0 ? line + 4 : line);
	fclose(fp);
	free(text);
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
	struct config_errors errs = { 0 };
	struct config cfg;
	char path[64];

	expect_valid("conf/demo.conf");
	/* What a fresh install forwards: nothing. */
	ck_assert_int_eq(config_load("conf/portfwd.conf", &cfg, &errs), 0);
	ck_assert_int_eq(cfg.nrules, 0);
	config_free(&cfg);
	/* Its examples, once the "#" is taken off: five valid rules. */
	example_uncommented(path, sizeof(path));
	ck_assert_int_eq(config_load(path, &cfg, &errs), 0);
	ck_assert_int_eq(cfg.nrules, 5);
	ck_assert_str_eq(cfg.rules[3].interface, "wg0");
	config_free(&cfg);
	unlink(path);
	ck_assert_int_eq(config_load(CONF_DIR "/good/no_rules.conf", &cfg, &errs), 0);
	ck_assert_int_eq(cfg.nrules, 0);
	config_free(&cfg);
}
END_TEST

/* The example's values are the documented defaults, applied to every rule. */
START_TEST(test_defaults_and_overrides)
{
	struct config_errors errs = { 0 };
	struct config cfg;
	char path[64];

	example_uncommented(path, sizeof(path));
	ck_assert_int_eq(config_load(path, &cfg, &errs), 0);
	unlink(path);
	ck_assert_str_eq(cfg.control_socket, "/run/portfwd/portfwd.sock");
	ck_assert_int_eq(cfg.log_level, LOG_LVL_INFO);
	ck_assert(cfg.log_connections);
	ck_assert_int_eq(cfg.nrules, 5);
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
	ck_assert_int_eq(cfg.rules[4].proto, RULE_PROTO_BOTH);
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
	/* tcp_keepalive: a group in defaults, false in one rule, one value
	 * changed in another (the rest from defaults). */
	ck_assert(cfg.rules[0].set.keepalive);
	ck_assert_uint_eq(cfg.rules[0].set.keepalive_idle, 60);
	ck_assert_uint_eq(cfg.rules[0].set.keepalive_interval, 10);
	ck_assert_uint_eq(cfg.rules[0].set.keepalive_count, 3);
	ck_assert(!cfg.rules[1].set.keepalive);
	ck_assert(cfg.rules[2].set.keepalive);
	ck_assert_uint_eq(cfg.rules[2].set.keepalive_idle, 7200);
	ck_assert_uint_eq(cfg.rules[2].set.keepalive_interval, 10);
	config_free(&cfg);

	/* Built in: on, 300 s, 30 s, 4 probes. */
	ck_assert_int_eq(config_load(CONF_DIR "/good/minimal.conf", &cfg, &errs), 0);
	ck_assert(cfg.rules[0].set.keepalive);
	ck_assert_uint_eq(cfg.rules[0].set.keepalive_idle, 300);
	ck_assert_uint_eq(cfg.rules[0].set.keepalive_interval, 30);
	ck_assert_uint_eq(cfg.rules[0].set.keepalive_count, 4);
	config_free(&cfg);
}
END_TEST

/* A host whose only interface address, besides loopback, is 192.0.2.7. */
static int one_interface(struct ifaddrs **list)
{
	static struct sockaddr_in sin = { .sin_family = AF_INET };
	static struct ifaddrs eth0 = { .ifa_name = "eth0", .ifa_addr = (struct sockaddr *)&sin };

	inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
	*list = &eth0;
	return 0;
}

/* Loads TEXT from a temporary file; returns config_load's result, the
 * messages in ERRS with the path replaced by FILE. */
static int load_text(const char *text, struct config_errors *errs)
{
	char path[] = "/tmp/portfwd-test-config-XXXXXX";
	int fd = mkstemp(path);
	struct config cfg;
	size_t len = strlen(text);
	int rc;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	rc = config_load(path, &cfg, errs);
	unlink(path);
	if (rc == 0)
		config_free(&cfg);
	for (size_t i = 0; i < errs->count; i++) {
		char *m = errs->msgs[i];

		ck_assert(strncmp(m, path, strlen(path)) == 0);
		memcpy(m, "FILE", 4);
		memmove(m + 4, m + strlen(path), strlen(m + strlen(path)) + 1);
	}
	return rc;
}

/* A target at one of this host's interface addresses comes back to a
 * wildcard listener on its port; at another host's, it leaves. */
START_TEST(test_loop_through_interface)
{
	struct config_errors errs = { 0 };

	localaddr_set_source(one_interface, NULL);
	ck_assert_int_eq(load_text("rules = (\n"
				   "{ name = \"a\"; proto = \"tcp\"; listen = \"0.0.0.0:8000\"; target = \"192.0.2.8:8000\"; },\n"
				   "{ name = \"b\"; proto = \"tcp\"; listen = \"0.0.0.0:8001\"; target = \"192.0.2.7:8001\"; }\n"
				   ");\n", &errs), -1);
	ck_assert_int_eq(errs.count, 1);
	ck_assert_str_eq(errs.msgs[0], "FILE:3: rule \"b\": target: 192.0.2.7:8001 is covered by this rule's own listen address 0.0.0.0:8001 (tcp): it would forward to itself");
	config_errors_free(&errs);
}
END_TEST

/* A loop through thousands of rules: one message, within the 512 bytes a
 * message may have, naming the first rules and how many there are. */
START_TEST(test_long_loop)
{
	struct config_errors errs = { 0 };
	enum { N = 3000 };
	const char *start = "FILE:2: rule \"rule-0\": target: 127.0.0.1:20001 is the listen address of rule \"rule-1\" (line 3), whose target leads back to this rule (udp): a forwarding loop rule-0 -> rule-1 -> rule-2 -> ";
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);

	fprintf(mem, "rules = (\n");
	for (int i = 0; i < N; i++)
		fprintf(mem, "{ name = \"rule-%d\"; proto = \"udp\"; listen = \"127.0.0.1:%d\"; target = \"127.0.0.1:%d\"; }%s\n",
			i, 20000 + i, 20000 + (i + 1) % N, i + 1 < N ? "," : "");
	fprintf(mem, ");\n");
	fclose(mem);
	ck_assert_int_eq(load_text(text, &errs), -1);
	ck_assert_int_eq(errs.count, 1);
	ck_assert_msg(strncmp(errs.msgs[0], start, strlen(start)) == 0, "%s", errs.msgs[0]);
	ck_assert_msg(strstr(errs.msgs[0], " -> ... -> rule-0 (3000 rules)"), "%s", errs.msgs[0]);
	ck_assert_int_lt(strlen(errs.msgs[0]), 511);
	config_errors_free(&errs);
	free(text);
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

/* What the rules may hold open at once, for the file limit warning. */
START_TEST(test_fd_budget)
{
	struct rule_config rules[3];
	struct config cfg = { .rules = rules, .nrules = 3 };
	const unsigned long long base = 64 + CONTROL_MAX_CLIENTS + 1;

	for (int i = 0; i < 3; i++) {
		memset(&rules[i], 0, sizeof(rules[i]));
		rule_settings_init(&rules[i].set);
	}
	rules[0].proto = RULE_PROTO_TCP; /* splice: 2 sockets and 2 pipes */
	rules[0].set.max_connections = 1000;
	rules[1].proto = RULE_PROTO_BOTH; /* copying: 2 sockets */
	rules[1].set.splice = false;
	rules[1].set.max_connections = 100;
	rules[1].set.max_udp_sessions = 50;
	rules[2].proto = RULE_PROTO_UDP;
	rules[2].set.max_udp_sessions = 7;
	ck_assert_uint_eq(daemon_fd_budget(&cfg, 2),
			  base + 2 * 4 + (2 + 6000) + (2 + 200) + (2 + 50) + (2 + 7) +
				  2 * 2 * WORKER_PIPE_POOL);
	/* No rule splices: no pool of pipes. */
	rules[0].set.splice = false;
	ck_assert_uint_eq(daemon_fd_budget(&cfg, 1),
			  base + 4 + (1 + 2000) + (1 + 200) + (1 + 50) + (1 + 7));
}
END_TEST

/* Every test sees a host with loopback only, so the corpus means the same
 * on any machine (a target at this machine's address could be a loop). */
static int no_interfaces(struct ifaddrs **list)
{
	*list = NULL;
	return 0;
}

static void loopback_only(void)
{
	localaddr_set_source(no_interfaces, NULL);
}

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

	tcase_add_checked_fixture(tc, loopback_only, NULL);
	tcase_add_test(tc, test_good_corpus);
	tcase_add_test(tc, test_bad_corpus);
	tcase_add_test(tc, test_shipped_examples_are_valid);
	tcase_add_test(tc, test_defaults_and_overrides);
	tcase_add_test(tc, test_loop_through_interface);
	tcase_add_test(tc, test_long_loop);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_fd_budget);
	tcase_add_test(tc, test_text_refuses_include);
	tcase_add_test(tc, test_file_kinds);
	suite_add_tcase(s, tc);
	return check_run(s);
}
