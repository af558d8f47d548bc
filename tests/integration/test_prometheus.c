/*
 * The HTTP endpoint (daemon.http) with what reads it: a real Prometheus
 * (Debian's) scrapes /metrics and answers queries on what it stored, and
 * the Grafana dashboard (conf/grafana/portfwd.json) names only metrics
 * /metrics serves (tests/grafana-check.py, which must also be able to fail).
 * Everything listens on loopback; Prometheus is killed with the test.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "check_run.h"

/* Paths from the top of the tree, where the tests run. */
#define DASHBOARD "conf/grafana/portfwd.json"
#define CHECKER "tests/grafana-check.py"

/* The text format's type, by which Prometheus knows it. */
#define EXPOSITION_TYPE "text/plain; version=0.0.4"

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	nanosleep(&ts, NULL);
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	ck_assert_msg(fp != NULL, "cannot write %s: %s", path, strerror(errno));
	fputs(text, fp);
	ck_assert_msg(fclose(fp) == 0, "cannot write %s", path);
}

/* Removes what the tests write in D's directory, so that h_stop, which
 * removes the daemon's own files, can remove the directory. Only on
 * success: a failed test leaves it all for a look. */
static void remove_test_files(const struct hdaemon *d)
{
	char *out = NULL;
	int rc = h_sh(&out, "cd '%s' && rm -rf data prometheus.yml prometheus.log metrics.txt made-up.json no-name.json",
		      d->dir);

	ck_assert_msg(rc == 0, "cannot clean %s: %s", d->dir, out);
	free(out);
}

/* Starts D with the HTTP endpoint on a free port of 127.0.0.1 (returned). */
static unsigned start_with_http(struct hdaemon *d, const char *body)
{
	static char extra[128];
	unsigned port = h_free_port(SOCK_STREAM, false);

	snprintf(extra, sizeof(extra), "http = { listen = \"127.0.0.1:%u\"; };", port);
	h_daemon_extra = extra;
	h_start(d, body);
	h_daemon_extra = NULL;
	return port;
}

/* The value of header NAME in HEAD (up to the line's end, malloc'd), or NULL. */
static char *header(const char *head, const char *name)
{
	size_t len = strlen(name);

	for (const char *l = strstr(head, "\r\n"); l; l = strstr(l, "\r\n")) {
		l += 2;
		if (strncasecmp(l, name, len) == 0 && l[len] == ':') {
			const char *v = l + len + 1, *end;

			v += strspn(v, " \t");
			end = strstr(v, "\r\n");
			return strndup(v, end ? (size_t)(end - v) : strlen(v));
		}
	}
	return NULL;
}

/* GET /metrics from the endpoint on PORT; asserts 200 and the exposition's
 * Content-Type. Returns the body (malloc'd). */
static char *get_metrics(unsigned port)
{
	char *head = NULL, *body = NULL, *type;
	int code = h_http("127.0.0.1", port, "GET", "/metrics", NULL, &head, &body, 10);

	ck_assert_msg(code == 200, "GET /metrics: %d\n%s", code, head ? head : "(no answer)");
	type = header(head, "Content-Type");
	/* A charset may follow. */
	ck_assert_msg(type && (strcmp(type, EXPOSITION_TYPE) == 0 ||
			       strncasecmp(type, EXPOSITION_TYPE "; charset=", strlen(EXPOSITION_TYPE "; charset=")) == 0),
		      "GET /metrics: Content-Type %s\n%s", type ? type : "missing", head);
	free(type);
	free(head);
	return body;
}

/* ---- Prometheus ---- */

struct prom {
	pid_t pid;
	unsigned port;
	char log[512];
};

/* Starts Prometheus in DIR scraping 127.0.0.1:TARGET/metrics every second
 * as job "portfwd", its API on a free port; waits (20 s at most) until it
 * is ready. It dies with the test's process (PR_SET_PDEATHSIG), so a failed
 * assertion or the suite's timeout leaves none behind. */
static void prom_start(struct prom *p, const char *dir, unsigned target)
{
	const char *bin = h_bin("PROMETHEUS_BIN", "/usr/bin/prometheus");
	char yml[512], data[512], text[1024], cfg_arg[600], data_arg[600], listen_arg[128];
	char *argv[] = { (char *)bin, cfg_arg, data_arg, listen_arg, "--log.level=warn", NULL };
	pid_t parent = getpid();
	double deadline;

	ck_assert_msg(access(bin, X_OK) == 0, "%s: %s (Debian's prometheus package)", bin, strerror(errno));
	p->port = h_free_port(SOCK_STREAM, false);
	snprintf(yml, sizeof(yml), "%s/prometheus.yml", dir);
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(p->log, sizeof(p->log), "%s/prometheus.log", dir);
	snprintf(text, sizeof(text),
		 "global:\n"
		 "  scrape_interval: 1s\n"
		 "  scrape_timeout: 1s\n"
		 "scrape_configs:\n"
		 "  - job_name: portfwd\n"
		 "    metrics_path: /metrics\n"
		 "    scrape_interval: 1s\n"
		 "    static_configs:\n"
		 "      - targets: [ \"127.0.0.1:%u\" ]\n",
		 target);
	write_file(yml, text);
	snprintf(cfg_arg, sizeof(cfg_arg), "--config.file=%s", yml);
	snprintf(data_arg, sizeof(data_arg), "--storage.tsdb.path=%s", data);
	snprintf(listen_arg, sizeof(listen_arg), "--web.listen-address=127.0.0.1:%u", p->port);

	p->pid = fork();
	ck_assert_int_ge(p->pid, 0);
	if (p->pid == 0) {
		int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(126);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		close_range(3, ~0U, 0);
		execv(bin, argv);
		_exit(127);
	}
	deadline = h_now() + 20;
	while (h_now() < deadline) {
		int code = h_http("127.0.0.1", p->port, "GET", "/-/ready", NULL, NULL, NULL, 2);
		int st;

		if (code == 200)
			return;
		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			p->pid = 0;
			ck_abort_msg("prometheus exited during start-up (status %d); see %s", st, p->log);
		}
		sleep_s(0.1);
	}
	ck_abort_msg("prometheus was not ready within 20 s; see %s", p->log);
}

/* SIGTERM, SIGKILL after 10 s; reaps it. Before the daemon's h_stop, which
 * removes the directory Prometheus writes in. */
static void prom_stop(struct prom *p)
{
	double deadline = h_now() + 10;

	if (p->pid <= 0)
		return;
	kill(p->pid, SIGTERM);
	while (h_now() < deadline && waitpid(p->pid, NULL, WNOHANG) != p->pid)
		sleep_s(0.02);
	if (h_now() >= deadline) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
	}
	p->pid = 0;
}

/* QUERY as a URL's query component value. */
static void url_encode(const char *s, char *out, size_t size)
{
	size_t n = 0;

	for (; *s && n + 4 < size; s++) {
		unsigned char c = (unsigned char)*s;

		if (isalnum(c) || strchr("-_.~", c))
			out[n++] = (char)c;
		else
			n += (size_t)snprintf(out + n, size - n, "%%%02X", c);
	}
	out[n] = '\0';
}

/* The result vector of instant query QUERY (a new reference), or NULL if
 * Prometheus did not answer with success. */
static json_t *prom_query(const struct prom *p, const char *query)
{
	char enc[1024], path[1100], *body = NULL;
	json_t *answer, *result = NULL;
	int code;

	url_encode(query, enc, sizeof(enc));
	snprintf(path, sizeof(path), "/api/v1/query?query=%s", enc);
	code = h_http("127.0.0.1", p->port, "GET", path, NULL, NULL, &body, 5);
	if (code != 200 || !body) {
		free(body);
		return NULL;
	}
	answer = json_loads(body, 0, NULL);
	free(body);
	if (answer && json_is_string(json_object_get(answer, "status")) &&
	    strcmp(json_string_value(json_object_get(answer, "status")), "success") == 0)
		result = json_incref(json_object_get(json_object_get(answer, "data"), "result"));
	json_decref(answer);
	return result;
}

/* A sample's value ([time, "value"]), or -1 where there is none. */
static double sample_value(json_t *sample)
{
	const char *v = json_string_value(json_array_get(json_object_get(sample, "value"), 1));

	return v ? strtod(v, NULL) : -1;
}

/* Waits (SECONDS at most) until QUERY has a sample and every sample's value
 * is above MIN; returns the last result (a new reference, NULL if none). */
static json_t *prom_wait(const struct prom *p, const char *query, double min, double seconds)
{
	double deadline = h_now() + seconds;
	json_t *r = NULL;

	for (;;) {
		size_t i, above = 0;
		json_t *s;

		json_decref(r);
		r = prom_query(p, query);
		json_array_foreach(r, i, s)
			above += sample_value(s) > min;
		if ((r && json_array_size(r) > 0 && above == json_array_size(r)) || h_now() > deadline)
			return r;
		sleep_s(0.2);
	}
}

static const char *label(json_t *sample, const char *name)
{
	const char *v = json_string_value(json_object_get(json_object_get(sample, "metric"), name));

	return v ? v : "";
}

/* Prometheus scrapes the endpoint and stores what the daemon counted. */
START_TEST(test_prometheus_scrapes)
{
	struct hdaemon d;
	struct h_backend echo;
	struct prom p = { 0 };
	unsigned listen = h_free_port(SOCK_STREAM, false), http;
	char body[256], *metrics, *dump, *out = NULL, path[512];
	json_t *r, *s;
	size_t i;
	int fd, rc;

	h_backend_start(&echo, H_ECHO, false);
	snprintf(body, sizeof(body),
		 "rules = ( { name = \"web\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 listen, echo.port);
	http = start_with_http(&d, body);
	/* Bytes through the rule, both ways, counted once the connection ends. */
	fd = h_connect("127.0.0.1", listen);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(h_echo_exchange(fd, 100000, 7, 10), 0);
	close(fd);
	ck_assert_int_eq(h_wait_counter(&d, "web", "tcp", "active", 0, 5), 0);

	metrics = get_metrics(http);
	snprintf(path, sizeof(path), "%s/metrics.txt", d.dir);
	write_file(path, metrics);
	free(metrics);

	prom_start(&p, d.dir, http);
	r = prom_wait(&p, "up{job=\"portfwd\"}", 0, 30);
	dump = json_dumps(r, JSON_COMPACT);
	ck_assert_msg(json_array_size(r) == 1 && sample_value(json_array_get(r, 0)) == 1,
		      "up{job=\"portfwd\"} is not 1 after 30 s: %s; see %s", dump ? dump : "no answer", p.log);
	free(dump);
	json_decref(r);

	r = prom_query(&p, "portfwd_info");
	dump = json_dumps(r, JSON_COMPACT);
	ck_assert_msg(json_array_size(r) == 1 && sample_value(json_array_get(r, 0)) == 1 &&
			      *label(json_array_get(r, 0), "version"),
		      "portfwd_info: %s", dump ? dump : "no answer");
	free(dump);
	json_decref(r);

	/* The per-rule byte counter, each way (an echo sends back what it got). */
	r = prom_wait(&p, "portfwd_tcp_bytes_total{rule=\"web\"}", 0, 10);
	dump = json_dumps(r, JSON_COMPACT);
	ck_assert_msg(json_array_size(r) == 2, "portfwd_tcp_bytes_total{rule=\"web\"}: %s", dump ? dump : "no answer");
	json_array_foreach(r, i, s)
		ck_assert_msg(sample_value(s) == 100000 && (strcmp(label(s, "direction"), "to_target") == 0 ||
							    strcmp(label(s, "direction"), "to_client") == 0),
			      "portfwd_tcp_bytes_total{rule=\"web\"}: %s", dump);
	free(dump);
	json_decref(r);

	/* Every query of the dashboard is one Prometheus parses and runs. */
	rc = h_sh(&out, "python3 " CHECKER " " DASHBOARD " %s --prometheus http://127.0.0.1:%u 2>&1", path,
		  p.port);
	ck_assert_msg(rc == 0, "grafana-check --prometheus: exit %d\n%s", rc, out);
	free(out);

	prom_stop(&p);
	remove_test_files(&d);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

/* A daemon on which every family the dashboard reads has samples: TCP,
 * UDP and TCP+UDP rules, several health-checked targets, an allow list and
 * per_source limits. Writes its /metrics to DIR/metrics.txt (PATH). */
static void dashboard_daemon(struct hdaemon *d, unsigned *http, char *path, size_t size)
{
	struct h_backend echo;
	unsigned l[3] = { h_free_port(SOCK_STREAM, false), h_free_port(SOCK_DGRAM, false),
			  h_free_port(SOCK_STREAM, false) };
	unsigned down = h_free_port(SOCK_STREAM, false);
	char body[1400], *metrics;
	int fd;

	h_backend_start(&echo, H_ECHO, false);
	snprintf(body, sizeof(body),
		 "lists: { lan = [ \"127.0.0.0/8\", \"::1\" ]; };\n"
		 "defaults: { per_source: { max_connections = 64; udp_sessions = 16; }; };\n"
		 "rules = (\n"
		 "  { name = \"web\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; allow = [ \"@lan\" ]; },\n"
		 "  { name = \"dns\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; },\n"
		 "  { name = \"game\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u\"; targets = [ \"127.0.0.1:%u\", \"127.0.0.1:%u\" ];\n"
		 "    health_check = { interval = 0.3; timeout = 0.2; rise = 1; fall = 1; }; }\n"
		 ");",
		 l[0], echo.port, l[1], echo.port, l[2], down, echo.port);
	*http = start_with_http(d, body);
	fd = h_connect("127.0.0.1", l[0]);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(h_echo_exchange(fd, 1000, 3, 10), 0);
	close(fd);
	h_backend_stop(&echo);

	metrics = get_metrics(*http);
	/* Families with samples, not only their # TYPE lines. */
	ck_assert_msg(strstr(metrics, "\nportfwd_udp_bytes_total{rule=\"dns\"") &&
			      strstr(metrics, "\nportfwd_target_up{rule=\"game\"") &&
			      strstr(metrics, "\nportfwd_tcp_connections_limited_total{rule=\"web\""),
		      "/metrics lacks a family:\n%s", metrics);
	snprintf(path, size, "%s/metrics.txt", d->dir);
	write_file(path, metrics);
	free(metrics);
}

/* The dashboard names only what /metrics serves. */
START_TEST(test_grafana_dashboard_metrics)
{
	struct hdaemon d;
	unsigned http;
	char path[512], *out = NULL;
	int rc;

	dashboard_daemon(&d, &http, path, sizeof(path));
	rc = h_sh(&out, "python3 " CHECKER " " DASHBOARD " %s 2>&1", path);
	ck_assert_msg(rc == 0, "grafana-check: exit %d\n%s", rc, out);
	free(out);
	remove_test_files(&d);
	h_stop(&d);
}
END_TEST

/* A copy of the dashboard whose first query is EXPR, in DIR/NAME (PATH).
 * Returns the title of the panel changed (malloc'd). */
static char *dashboard_with(const char *dir, const char *name, const char *expr, char *path, size_t size)
{
	json_error_t err;
	json_t *dash = json_load_file(DASHBOARD, 0, &err), *panels, *p, *inner, *target = NULL;
	char *title = NULL;
	size_t i, k;

	ck_assert_msg(dash != NULL, "%s:%d: %s", DASHBOARD, err.line, err.text);
	panels = json_object_get(dash, "panels");
	/* The first panel with a query: rows hold none, a collapsed row holds panels. */
	json_array_foreach(panels, i, p) {
		json_t *set[2] = { p, NULL };

		json_array_foreach(json_object_get(p, "panels"), k, inner)
			if (!set[1])
				set[1] = inner;
		for (k = 0; k < 2 && !target; k++)
			if (set[k] && json_array_size(json_object_get(set[k], "targets")) > 0) {
				target = json_array_get(json_object_get(set[k], "targets"), 0);
				title = strdup(json_string_value(json_object_get(set[k], "title")));
			}
		if (target)
			break;
	}
	ck_assert_msg(target != NULL, "%s: no panel has a query", DASHBOARD);
	json_object_set_new(target, "expr", json_string(expr));
	snprintf(path, size, "%s/%s", dir, name);
	ck_assert_int_eq(json_dump_file(dash, path, JSON_INDENT(2)), 0);
	json_decref(dash);
	return title;
}

/* The checker fails a dashboard that names a metric /metrics does not
 * serve, or none at all: it cannot pass whatever it is given. */
START_TEST(test_grafana_check_fails)
{
	struct hdaemon d;
	unsigned http;
	char metrics[512], bad[512], *out = NULL, *title;
	int rc;

	dashboard_daemon(&d, &http, metrics, sizeof(metrics));

	title = dashboard_with(d.dir, "made-up.json", "sum by (rule) (rate(portfwd_tcp_octets_total[5m]))", bad,
			       sizeof(bad));
	rc = h_sh(&out, "python3 " CHECKER " %s %s 2>&1", bad, metrics);
	ck_assert_msg(rc == 1 && strstr(out, "portfwd_tcp_octets_total is not served") && strstr(out, title),
		      "a made-up metric: exit %d\n%s", rc, out);
	free(out);
	free(title);

	title = dashboard_with(d.dir, "no-name.json", "vector(1)", bad, sizeof(bad));
	rc = h_sh(&out, "python3 " CHECKER " %s %s 2>&1", bad, metrics);
	ck_assert_msg(rc == 1 && strstr(out, "names no portfwd_ metric") && strstr(out, title),
		      "a query without a portfwd_ name: exit %d\n%s", rc, out);
	free(out);
	free(title);

	write_file(bad, "{ \"panels\": [ ");
	rc = h_sh(&out, "python3 " CHECKER " %s %s 2>&1", bad, metrics);
	ck_assert_msg(rc == 1 && strstr(out, "not a valid JSON dashboard"), "invalid JSON: exit %d\n%s", rc, out);
	free(out);
	remove_test_files(&d);
	h_stop(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("prometheus");
	TCase *tc = tcase_create("prometheus");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_prometheus_scrapes);
	tcase_add_test(tc, test_grafana_dashboard_metrics);
	tcase_add_test(tc, test_grafana_check_fails);
	suite_add_tcase(s, tc);
	return check_run(s);
}
