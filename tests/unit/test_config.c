/*
 * The configuration corpus: every file in tests/conf/good must load, and
 * every file in tests/conf/bad must fail with exactly the messages in its
 * .expected file (FILE standing for the path, DIR for its directory, as in
 * the messages about a list file beside it), in order.
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
#include "router.h"
#include "control.h"
#include "daemon.h"
#include "worker.h"
#include "localaddr.h"
#include "log.h"
#include "proxyproto.h"
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
		size_t dirlen = strlen(CONF_DIR "/bad/");

		if (strncmp(m, path, strlen(path)) == 0) {
			fprintf(mem, "FILE%s\n", m + strlen(path));
			continue;
		}
		ck_assert_msg(strncmp(m, CONF_DIR "/bad/", dirlen) == 0, "message does not name the file: %s", m);
		fprintf(mem, "DIR/%s\n", m + dirlen);
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
	/* Its examples, once the "#" is taken off: ten valid rules. */
	example_uncommented(path, sizeof(path));
	ck_assert_int_eq(config_load(path, &cfg, &errs), 0);
	ck_assert_int_eq(cfg.nrules, 10);
	ck_assert_str_eq(cfg.rules[3].interface, "wg0");
	ck_assert_uint_eq(rule_nports(&cfg.rules[7]), 31);
	ck_assert_str_eq(rule_target_host(&cfg.rules[8]), "jellyfin.lan");
	ck_assert_uint_eq(cfg.rules[4].set.proxy_protocol, PROXYPROTO_V2);
	ck_assert_uint_eq(cfg.rules[4].source_len, sizeof(struct sockaddr_in));
	ck_assert_uint_eq(rule_ntargets(&cfg.rules[6]), 2);
	ck_assert(cfg.rules[6].health.enabled);
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
	ck_assert_int_eq(cfg.nrules, 10);
	ck_assert_str_eq(cfg.rules[0].name, "ssh");
	/* The router maps only the rule that asks, from its external_port. */
	ck_assert_uint_eq(cfg.rules[0].set.router, ROUTER_OFF);
	ck_assert_uint_eq(cfg.rules[0].set.router_lease, ROUTER_LEASE_DEFAULT);
	ck_assert_str_eq(cfg.rules[9].name, "minecraft");
	ck_assert_uint_eq(cfg.rules[9].set.router, ROUTER_AUTO);
	ck_assert_uint_eq(cfg.rules[9].external_port, 25565);
	ck_assert_int_eq(cfg.rules[0].proto, RULE_PROTO_TCP);
	ck_assert_int_eq(cfg.rules[0].set.max_connections, 4096);
	ck_assert_int_eq(cfg.rules[0].set.buffer_size, 65536);
	ck_assert(cfg.rules[0].set.splice);
	ck_assert_int_eq(cfg.workers, 0);
	ck_assert(cfg.drain_timeout == 0);
	ck_assert(cfg.rules[0].set.idle_timeout == 3600.0);
	ck_assert(cfg.rules[1].set.idle_timeout == 600.0);
	ck_assert_int_eq(cfg.rules[2].proto, RULE_PROTO_UDP);
	ck_assert_int_eq(cfg.rules[5].proto, RULE_PROTO_BOTH);
	ck_assert_uint_eq(cfg.rules[0].set.proxy_protocol, PROXYPROTO_NONE);
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
	/* proxy_protocol: v2 from defaults (a udp rule too), v1 in a tcp rule;
	 * source: one per rule, of the target's family. */
	ck_assert_uint_eq(cfg.rules[0].set.proxy_protocol, PROXYPROTO_V1);
	ck_assert_uint_eq(cfg.rules[1].set.proxy_protocol, PROXYPROTO_V2);
	ck_assert_uint_eq(cfg.rules[2].set.proxy_protocol, PROXYPROTO_V2);
	{
		char a[RULE_ADDR_STRLEN];

		ck_assert_uint_eq(cfg.rules[0].source_len, sizeof(struct sockaddr_in));
		ck_assert_str_eq(rule_format_host((struct sockaddr *)&cfg.rules[0].source, a, sizeof(a)),
				 "192.168.0.10");
		ck_assert_uint_eq(cfg.rules[1].source_len, 0);
		ck_assert_uint_eq(cfg.rules[2].source_len, sizeof(struct sockaddr_in6));
		ck_assert_str_eq(rule_format_host((struct sockaddr *)&cfg.rules[2].source, a, sizeof(a)),
				 "fd00::10");
	}
	config_free(&cfg);

	/* Built in: on, 300 s, 30 s, 4 probes. */
	ck_assert_int_eq(config_load(CONF_DIR "/good/minimal.conf", &cfg, &errs), 0);
	ck_assert(cfg.rules[0].set.keepalive);
	ck_assert_uint_eq(cfg.rules[0].set.keepalive_idle, 300);
	ck_assert_uint_eq(cfg.rules[0].set.keepalive_interval, 30);
	ck_assert_uint_eq(cfg.rules[0].set.keepalive_count, 4);
	ck_assert_uint_eq(cfg.rules[0].set.proxy_protocol, PROXYPROTO_NONE);
	ck_assert_uint_eq(cfg.rules[0].source_len, 0);
	config_free(&cfg);
}
END_TEST

/* per_source: the defaults' group, a rule's group changing some of its keys;
 * udp_unreplied_timeout; daemon.max_tracked_sources; the built-in values. */
START_TEST(test_per_source_settings)
{
	struct config_errors errs = { 0 };
	struct config cfg;
	const struct rule_per_source *ssh, *game, *dns;

	ck_assert_int_eq(config_load(CONF_DIR "/good/per_source.conf", &cfg, &errs), 0);
	ck_assert_uint_eq(cfg.max_tracked_sources, 1024);
	ssh = &cfg.rules[0].set.per_source;
	game = &cfg.rules[1].set.per_source;
	dns = &cfg.rules[2].set.per_source;
	ck_assert_uint_eq(ssh->max_connections, 4);
	ck_assert_uint_eq(ssh->new_per_minute, 0); /* turned off for this rule */
	ck_assert_uint_eq(ssh->udp_sessions, 4);   /* from defaults */
	ck_assert_uint_eq(ssh->ipv6_prefix, 64);
	ck_assert_uint_eq(game->ipv6_prefix, 56);
	ck_assert_uint_eq(game->max_connections, 16);
	ck_assert_uint_eq(game->udp_datagrams_per_second, 2000);
	ck_assert_uint_eq(dns->new_per_minute, 120);
	ck_assert(cfg.rules[0].set.udp_unreplied_timeout == 2.0);
	ck_assert(cfg.rules[1].set.udp_unreplied_timeout == 0.5);
	/* The same rule with other limits is a changed rule for a reload. */
	ck_assert(!rule_settings_equal(&cfg.rules[0].set, &cfg.rules[2].set));
	config_free(&cfg);

	ck_assert_int_eq(config_load(CONF_DIR "/good/minimal.conf", &cfg, &errs), 0);
	ck_assert_uint_eq(cfg.max_tracked_sources, 65536);
	ck_assert(cfg.rules[0].set.udp_unreplied_timeout == 5.0);
	ck_assert_uint_eq(cfg.rules[0].set.per_source.max_connections, 0);
	ck_assert_uint_eq(cfg.rules[0].set.per_source.udp_datagrams_per_second, 0);
	ck_assert_uint_eq(cfg.rules[0].set.per_source.ipv6_prefix, 64);
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

static bool set_has(const struct access_set *s, const char *host)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(host, ':')) {
		s6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, host, &s6->sin6_addr), 1);
	} else {
		s4->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, host, &s4->sin_addr), 1);
	}
	return access_set_contains(s, (struct sockaddr *)&ss);
}

/* Lists: shared by the rules that name them, never copied; a rule's own
 * key replaces the defaults' one; the same file loaded twice is the same
 * rules for a reload. */
START_TEST(test_lists_shared)
{
	struct config_errors errs = { 0 };
	struct config a, b;
	const struct access_list *bad = NULL;

	ck_assert_int_eq(config_load(CONF_DIR "/good/lists.conf", &a, &errs), 0);
	ck_assert_uint_eq(a.nlists, 5);
	for (size_t i = 0; i < a.nlists; i++)
		if (strcmp(a.lists[i].name, "bad") == 0)
			bad = &a.lists[i];
	ck_assert_ptr_nonnull(bad);
	ck_assert_str_eq(bad->file, CONF_DIR "/good/lists.txt");
	ck_assert_uint_eq(bad->entries, 3);
	ck_assert_int_eq(bad->line, 7);
	/* ssh: its allow, the defaults' deny: the list's own set. */
	ck_assert(access_policy_has_allow(a.rules[0].access));
	ck_assert_ptr_eq(a.rules[0].access->deny, bad->set);
	ck_assert(set_has(a.rules[0].access->allow, "192.168.3.4") && set_has(a.rules[0].access->allow, "10.8.0.9") &&
		  set_has(a.rules[0].access->allow, "203.0.113.7") && set_has(a.rules[0].access->allow, "198.51.100.77") &&
		  set_has(a.rules[0].access->allow, "fd00::1") && !set_has(a.rules[0].access->allow, "10.8.1.1"));
	ck_assert_str_eq(a.rules[0].access->allow_text,
			 "@lan, @vpn, 203.0.113.7, 2001:db8::/32, ::ffff:198.51.100.0/120");
	ck_assert_str_eq(a.rules[0].access->deny_text, "@bad");
	/* web: its own deny replaces the defaults'. */
	ck_assert_ptr_ne(a.rules[1].access->deny, bad->set);
	ck_assert(set_has(a.rules[1].access->deny, "192.168.66.1") && set_has(a.rules[1].access->deny, "203.0.113.66"));
	ck_assert(set_has(a.rules[1].access->allow, "169.254.1.1") && set_has(a.rules[1].access->allow, "172.20.0.1"));
	/* dns: nothing of its own, the defaults' policy itself. */
	ck_assert(!access_policy_has_allow(a.rules[2].access));
	ck_assert_ptr_eq(a.rules[2].access->deny, bad->set);
	/* open: [] is no list: everyone. */
	ck_assert_ptr_null(a.rules[3].access);
	/* home: a list of lists, built-in ones too. */
	ck_assert(set_has(a.rules[4].access->allow, "127.0.0.1") && set_has(a.rules[4].access->allow, "::1") &&
		  set_has(a.rules[4].access->allow, "192.168.0.1") && !set_has(a.rules[4].access->allow, "8.8.8.8"));

	ck_assert_int_eq(config_load(CONF_DIR "/good/lists.conf", &b, &errs), 0);
	for (size_t i = 0; i < a.nrules; i++)
		ck_assert_msg(rule_config_equal(&a.rules[i], &b.rules[i]), "rule %zu", i);
	ck_assert_ptr_eq(b.rules[0].access->deny, bad->set);
	config_free(&b);
	config_free(&a);
}
END_TEST

/* A changed list is a changed rule for a reload; the same addresses
 * written otherwise are not. */
START_TEST(test_lists_change)
{
	static const char *texts[] = {
		"lists: { l = [ \"10.0.0.0/8\" ]; };\nrules = ( { name = \"a\"; proto = \"tcp\"; listen = \"127.0.0.1:1\"; target = \"127.0.0.1:2\"; allow = [ \"@l\" ]; } );\n",
		"lists: { l = [ \"10.0.0.0/9\", \"10.128.0.0/9\" ]; };\nrules = ( { name = \"a\"; proto = \"tcp\"; listen = \"127.0.0.1:1\"; target = \"127.0.0.1:2\"; allow = [ \"@l\" ]; } );\n",
		"lists: { l = [ \"10.0.0.0/8\", \"10.0.0.1\" ]; };\nrules = ( { name = \"a\"; proto = \"tcp\"; listen = \"127.0.0.1:1\"; target = \"127.0.0.1:2\"; allow = [ \"@l\" ]; } );\n",
		"lists: { l = [ \"11.0.0.0/8\" ]; };\nrules = ( { name = \"a\"; proto = \"tcp\"; listen = \"127.0.0.1:1\"; target = \"127.0.0.1:2\"; allow = [ \"@l\" ]; } );\n",
		"lists: { l = [ \"10.0.0.0/8\" ]; };\nrules = ( { name = \"a\"; proto = \"tcp\"; listen = \"127.0.0.1:1\"; target = \"127.0.0.1:2\"; deny = [ \"@l\" ]; } );\n",
	};
	struct config c[5];
	struct config_errors errs = { 0 };

	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(config_load_text("t", texts[i], strlen(texts[i]), &c[i], &errs), 0);
	ck_assert(rule_config_equal(&c[0].rules[0], &c[1].rules[0]));
	ck_assert(rule_config_equal(&c[0].rules[0], &c[2].rules[0]));
	ck_assert(!rule_config_equal(&c[0].rules[0], &c[3].rules[0]));
	ck_assert(!rule_config_equal(&c[0].rules[0], &c[4].rules[0]));
	for (int i = 0; i < 5; i++)
		config_free(&c[i]);
}
END_TEST

/* A text from a client names no list file for the daemon to open. */
START_TEST(test_text_refuses_list_file)
{
	static const char text[] = "lists: { bad = { file = \"/etc/shadow\"; }; };\nrules = ( );\n";
	struct config_errors errs = { 0 };
	struct config cfg;

	ck_assert_int_eq(config_load_text("label", text, strlen(text), &cfg, &errs), -1);
	ck_assert_int_eq(errs.count, 1);
	ck_assert_str_eq(errs.msgs[0], "label:1: lists: \"bad\": file: \"/etc/shadow\" is not read for a configuration sent through the control socket (the daemon opens no file a client names); check it with portfwd -t -c FILE");
	config_errors_free(&errs);
}
END_TEST

/* A configuration in a new directory DIR (a mkdtemp template) whose list
 * "l" is the file list.txt holding TEXT; loads it into CFG, which must
 * fail, with ERRS. PATH and LIST get the two files' names. */
static void load_with_list(char *dir, char *path, size_t plen, char *list, size_t llen, const char *text,
			   struct config *cfg, struct config_errors *errs)
{
	FILE *fp;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(list, llen, "%s/list.txt", dir);
	fp = fopen(list, "w");
	fputs(text, fp);
	fclose(fp);
	snprintf(path, plen, "%s/portfwd.conf", dir);
	fp = fopen(path, "w");
	fprintf(fp, "lists: { l = { file = \"list.txt\"; }; };\nrules = ( );\n");
	fclose(fp);
	ck_assert_int_eq(config_load(path, cfg, errs), -1);
}

/* More than 20 bad lines in a list file: the first 20, then how many more. */
START_TEST(test_list_file_many_errors)
{
	char dir[] = "/tmp/portfwd-lists.XXXXXX", path[128], list[128];
	struct config_errors errs = { 0 };
	struct config cfg;

	{
		char *text = malloc(500 * 40);
		size_t n = 0;

		for (int i = 0; i < 500; i++)
			n += (size_t)sprintf(text + n, "root:x:%d:0::/root:/bin/bash\n", i);
		load_with_list(dir, path, sizeof(path), list, sizeof(list), text, &cfg, &errs);
		free(text);
	}
	ck_assert_int_eq(errs.count, 21);
	ck_assert_msg(strstr(errs.msgs[0], "/list.txt:1: list \"l\": \"root:x:0:0::/root:/bin/bash\": not an IPv4 or IPv6 address"), "%s", errs.msgs[0]);
	ck_assert_msg(strstr(errs.msgs[20], "/list.txt: list \"l\": 480 more bad lines not shown"), "%s", errs.msgs[20]);
	config_errors_free(&errs);
	unlink(list);
	unlink(path);
	rmdir(dir);
}
END_TEST

/*
 * Values are quoted in the messages, and a value may hold any byte: a
 * newline would forge a log line, an escape sequence would drive the
 * operator's terminal, a control reply would end early. They are written
 * as libconfig reads them (and a list file's bytes likewise).
 */
START_TEST(test_hostile_values_escaped)
{
	static const char text[] =
		"rules = ( { name = \"evil\\n2026-11-30 00:00:00.000 info: forged\\x1b[31m\"; proto = \"tcp\";"
		" listen = \"127.0.0.1:1\"; target = \"C:\\\\x\\xc2\\x9b2J\\x7f\"; } );\n";
	char dir[] = "/tmp/portfwd-escape.XXXXXX", path[128], list[128];
	struct config_errors errs = { 0 };
	struct config cfg;

	ck_assert_int_eq(config_load_text("t", text, strlen(text), &cfg, &errs), -1);
	ck_assert_uint_ge(errs.count, 2);
	for (size_t i = 0; i < errs.count; i++)
		for (const unsigned char *p = (const unsigned char *)errs.msgs[i]; *p; p++)
			ck_assert_msg(*p >= 0x20 && *p != 0x7f && !(p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f),
				      "message %zu holds byte 0x%02x: %s", i, *p, errs.msgs[i]);
	ck_assert_msg(strstr(errs.msgs[0], "\"evil\\n2026-11-30 00:00:00.000 info: forged\\x1b[31m\""), "%s", errs.msgs[0]);
	ck_assert_msg(strstr(errs.msgs[1], "\"C:\\\\x\\xc2\\x9b2J\\x7f\""), "%s", errs.msgs[1]);
	config_errors_free(&errs);

	load_with_list(dir, path, sizeof(path), list, sizeof(list), "10.0.0.1\r\n\x1b]0;owned\a\n", &cfg, &errs);
	ck_assert_uint_ge(errs.count, 1);
	for (size_t i = 0; i < errs.count; i++) {
		ck_assert_msg(!strchr(errs.msgs[i], '\x1b') && !strchr(errs.msgs[i], '\a') && !strchr(errs.msgs[i], '\r'),
			      "%s", errs.msgs[i]);
	}
	/* (A list file's line is shown with its unprintable bytes as '?'.) */
	ck_assert_msg(strstr(errs.msgs[errs.count - 1], "list.txt:2: list \"l\": \"?]0;owned?\""), "%s",
		      errs.msgs[errs.count - 1]);
	config_errors_free(&errs);
	unlink(list);
	unlink(path);
	rmdir(dir);
}
END_TEST

/*
 * The messages are sorted by the line they name after the file's path,
 * which they write out escaped: a path with a backslash or a newline must
 * sort as any other (it sorted every message to line 0).
 */
START_TEST(test_errors_sorted_under_any_path)
{
	static const char text[] = "daemon: { http = { port = 1; }; };\n"
				   "rules = ( { name = \"a b\"; proto = \"tcp\"; listen = \"127.0.0.1:1\"; target = \"127.0.0.1:2\"; } );\n"
				   "oops = 1;\n";
	char dir[] = "/tmp/portfwd-sort\\\n.XXXXXX", path[128];
	struct config_errors plain = { 0 }, odd = { 0 };
	struct config cfg;
	FILE *fp;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/portfwd.conf", dir);
	fp = fopen(path, "w");
	fputs(text, fp);
	fclose(fp);
	ck_assert_int_eq(config_load(path, &cfg, &odd), -1);
	ck_assert_int_eq(config_load_text("t", text, strlen(text), &cfg, &plain), -1);
	ck_assert_uint_ge(plain.count, 3);
	ck_assert_uint_eq(odd.count, plain.count);
	for (size_t i = 0; i < plain.count; i++) {
		const char *a = strchr(plain.msgs[i], ':'), *b = strstr(odd.msgs[i], "portfwd.conf:");

		ck_assert_msg(a && b && strcmp(a, b + strlen("portfwd.conf")) == 0, "message %zu: %s / %s", i,
			      plain.msgs[i], odd.msgs[i]);
	}
	ck_assert_msg(strstr(odd.msgs[0], "/tmp/portfwd-sort\\\\\\n."), "%s", odd.msgs[0]);
	config_errors_free(&plain);
	config_errors_free(&odd);
	unlink(path);
	rmdir(dir);
}
END_TEST

/* targets = [ ... ]: the list, its first entry as `target`, balance, health_check. */
START_TEST(test_targets_settings)
{
	struct config_errors errs = { 0 };
	struct config cfg;
	char addr[RULE_ADDR_STRLEN];

	ck_assert_int_eq(config_load(CONF_DIR "/good/targets.conf", &cfg, &errs), 0);
	ck_assert_uint_eq(cfg.nrules, 4);
	ck_assert_ptr_nonnull(cfg.rules[0].targets);
	ck_assert_uint_eq(rule_ntargets(&cfg.rules[0]), 3);
	ck_assert_str_eq(cfg.rules[0].targets->t[1].text, "192.168.0.3:ssh");
	ck_assert_str_eq(rule_format_addr(rule_target_addr(&cfg.rules[0], 1, NULL), addr, sizeof(addr)),
			 "192.168.0.3:22");
	ck_assert_str_eq(rule_format_addr(rule_target_addr(&cfg.rules[0], 2, NULL), addr, sizeof(addr)),
			 "[fd00::4]:22");
	ck_assert_str_eq(rule_target_service(&cfg.rules[0], 2), "ssh");
	/* The first is `target`, for what shows one. */
	ck_assert_str_eq(rule_format_addr((struct sockaddr *)&cfg.rules[0].target, addr, sizeof(addr)),
			 "192.168.0.2:22");
	ck_assert_int_eq(cfg.rules[0].balance, RULE_BALANCE_FAILOVER);
	ck_assert(cfg.rules[0].health.enabled);
	ck_assert(cfg.rules[0].health.interval == 5.0 && cfg.rules[0].health.timeout == 2.0);
	ck_assert_uint_eq(cfg.rules[0].health.rise, 2);
	ck_assert_uint_eq(cfg.rules[0].health.fall, 3);
	ck_assert_int_eq(cfg.rules[1].balance, RULE_BALANCE_ROUND_ROBIN);
	ck_assert(!cfg.rules[1].health.enabled);
	ck_assert_int_eq(cfg.rules[2].balance, RULE_BALANCE_SOURCE_HASH);
	ck_assert_int_eq(cfg.rules[3].balance, RULE_BALANCE_LEAST_CONN);
	ck_assert_uint_eq(rule_ntargets(&cfg.rules[3]), 1);
	config_free(&cfg);

	/* One `target` is a list of one, and no list is made for it. */
	ck_assert_int_eq(config_load(CONF_DIR "/good/minimal.conf", &cfg, &errs), 0);
	ck_assert_ptr_null(cfg.rules[0].targets);
	ck_assert_uint_eq(rule_ntargets(&cfg.rules[0]), 1);
	ck_assert_int_eq(cfg.rules[0].balance, RULE_BALANCE_FAILOVER);
	ck_assert(!cfg.rules[0].health.enabled);
	config_free(&cfg);
}
END_TEST

/* Ranges: a target range that comes back into the rule's own range, on
 * any of its ports, is a loop; a range whose target leaves is not. */
START_TEST(test_range_loops)
{
	struct config_errors errs = { 0 };

	ck_assert_int_eq(load_text("rules = (\n"
				   "{ name = \"a\"; proto = \"tcp\"; listen = \"127.0.0.1:21000-21010\"; target = \"127.0.0.1:20990-21000\"; }\n"
				   ");\n", &errs), -1);
	ck_assert_int_eq(errs.count, 1);
	ck_assert_msg(strstr(errs.msgs[0], "FILE:2: rule \"a\": target: 127.0.0.1:20990-21000 ") &&
			      strstr(errs.msgs[0], "it would forward to itself"),
		      "%s", errs.msgs[0]);
	config_errors_free(&errs);
	/* All to one, the one port inside the range. */
	ck_assert_int_eq(load_text("rules = (\n"
				   "{ name = \"b\"; proto = \"udp\"; listen = \"0.0.0.0:21000-21010\"; target = \"127.0.0.1:21005\"; }\n"
				   ");\n", &errs), -1);
	ck_assert_int_eq(errs.count, 1);
	ck_assert_msg(strstr(errs.msgs[0], "it would forward to itself"), "%s", errs.msgs[0]);
	config_errors_free(&errs);
	/* Through another rule's range. */
	ck_assert_int_eq(load_text("rules = (\n"
				   "{ name = \"c\"; proto = \"tcp\"; listen = \"127.0.0.1:21000-21010\"; target = \"127.0.0.1:22000-22010\"; },\n"
				   "{ name = \"d\"; proto = \"tcp\"; listen = \"127.0.0.1:22005\"; target = \"127.0.0.1:21003\"; }\n"
				   ");\n", &errs), -1);
	ck_assert_int_eq(errs.count, 1);
	ck_assert_msg(strstr(errs.msgs[0], "a forwarding loop c -> d -> c"), "%s", errs.msgs[0]);
	config_errors_free(&errs);
	ck_assert_int_eq(load_text("rules = (\n"
				   "{ name = \"e\"; proto = \"tcp\"; listen = \"127.0.0.1:21000-21010\"; target = \"192.0.2.9:21000-21010\"; }\n"
				   ");\n", &errs), 0);
	config_errors_free(&errs);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_checked_fixture(tc, loopback_only, NULL);
	tcase_add_test(tc, test_good_corpus);
	tcase_add_test(tc, test_per_source_settings);
	tcase_add_test(tc, test_bad_corpus);
	tcase_add_test(tc, test_shipped_examples_are_valid);
	tcase_add_test(tc, test_defaults_and_overrides);
	tcase_add_test(tc, test_loop_through_interface);
	tcase_add_test(tc, test_long_loop);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_fd_budget);
	tcase_add_test(tc, test_text_refuses_include);
	tcase_add_test(tc, test_file_kinds);
	tcase_add_test(tc, test_lists_shared);
	tcase_add_test(tc, test_lists_change);
	tcase_add_test(tc, test_text_refuses_list_file);
	tcase_add_test(tc, test_list_file_many_errors);
	tcase_add_test(tc, test_hostile_values_escaped);
	tcase_add_test(tc, test_errors_sorted_under_any_path);
	tcase_add_test(tc, test_targets_settings);
	tcase_add_test(tc, test_range_loops);
	suite_add_tcase(s, tc);
	return check_run(s);
}
