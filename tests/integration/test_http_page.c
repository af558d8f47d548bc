/*
 * The status page (GET / of the HTTP endpoint) in a real browser: headless
 * Chromium loads it from the daemon, runs its script under the server's
 * Content-Security-Policy, and dumps the DOM it ends with; the page as
 * served, for a browser without script; then the page as screenshots, wide
 * and phone-sized. PORTFWD_SCREENSHOT_DIR, when
 * set, keeps them there (status-page.png, status-page-phone.png: docs/).
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "check_run.h"

#define CHROMIUM "/usr/bin/chromium"

/* The bytes pushed through each rule, to find again on the page. */
#define TCP_BYTES 300000
#define UDP_DATAGRAMS 10
#define UDP_SIZE 100

struct browser {
	char dir[64]; /* its profile and log, ours to remove */
};

static void browser_init(struct browser *b)
{
	snprintf(b->dir, sizeof(b->dir), "/tmp/portfwd-browser.XXXXXX");
	ck_assert_msg(mkdtemp(b->dir) != NULL, "mkdtemp: %s", strerror(errno));
}

static void browser_cleanup(struct browser *b)
{
	char *out = NULL;

	h_sh(&out, "rm -rf '%s'", b->dir);
	free(out);
}

/*
 * Runs headless Chromium on URL with ARGS (--dump-dom, --screenshot=...),
 * bounded by 60 s, giving the page 8 s of virtual time (its script's first
 * refresh runs at once, the next after 5 s). Its stdout in *OUT; its
 * stderr (D-Bus noise without a session bus) goes to a log in B's
 * directory. No traffic but the page's: the background services are off.
 */
static int browser_run(struct browser *b, const char *args, const char *url, char **out)
{
	return h_sh(out,
		    "timeout --kill-after=5 60 " CHROMIUM " --headless --no-sandbox --disable-gpu"
		    " --user-data-dir='%s/profile' --no-first-run --no-default-browser-check"
		    " --disable-background-networking --disable-component-update --disable-sync"
		    " --disable-default-apps --hide-scrollbars --virtual-time-budget=8000 %s '%s'"
		    " 2>>'%s/chromium.log'",
		    b->dir, args, url, b->dir);
}

/* The text of the element of DOM carrying data-k="KEY" (attributes and all
 * from the data-k on, up to its closing tag), malloc'd; fails if none. */
static char *element(const char *dom, const char *key)
{
	char attr[160];
	const char *p, *end;

	snprintf(attr, sizeof(attr), "data-k=\"%s\"", key);
	p = strstr(dom, attr);
	ck_assert_msg(p != NULL, "the page has no element for %s", key);
	end = strstr(p, "</");
	ck_assert_ptr_nonnull(end);
	return strndup(p, (size_t)(end - p));
}

/* The card of rule NAME on the page, malloc'd. */
static char *card(const char *dom, const char *name)
{
	char attr[96];
	const char *p, *end;

	snprintf(attr, sizeof(attr), "data-name=\"%s\"", name);
	p = strstr(dom, attr);
	ck_assert_msg(p != NULL, "no card for rule %s on the page", name);
	end = strstr(p, "</article>");
	ck_assert_ptr_nonnull(end);
	return strndup(p, (size_t)(end - p));
}

/* Asserts the element at KEY reads TEXT (its visible text). */
static void assert_value(const char *dom, const char *key, const char *text)
{
	char *e = element(dom, key);
	const char *v = strrchr(e, '>');

	ck_assert_msg(v && strcmp(v + 1, text) == 0, "%s: wanted \"%s\", the page has %s", key, text, e);
	free(e);
}

/* Asserts PATH is a PNG of more than MIN bytes; keeps a copy as NAME in
 * PORTFWD_SCREENSHOT_DIR when that is set. */
static void assert_png(const char *path, long min, const char *name)
{
	static const unsigned char sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	const char *keep = getenv("PORTFWD_SCREENSHOT_DIR");
	unsigned char head[8];
	struct stat st;
	FILE *fp = fopen(path, "rb");

	ck_assert_msg(fp != NULL, "no screenshot at %s", path);
	ck_assert_int_eq(fread(head, 1, sizeof(head), fp), sizeof(head));
	fclose(fp);
	ck_assert_msg(memcmp(head, sig, sizeof(sig)) == 0, "%s is not a PNG", path);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_msg(st.st_size > min, "%s: %lld bytes, a blank page? (more than %ld wanted)", path,
		      (long long)st.st_size, min);
	if (keep && *keep) {
		char *out = NULL;

		ck_assert_msg(h_sh(&out, "cp '%s' '%s/%s'", path, keep, name) == 0, "cannot keep %s in %s: %s",
			      name, keep, out);
		free(out);
	}
}

/* Sends UDP_DATAGRAMS datagrams through PORT and reads each echo back. */
static void udp_traffic(unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr("127.0.0.1", port, &ss);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	char buf[UDP_SIZE], in[UDP_SIZE + 1];

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&ss, len), 0);
	memset(buf, 'u', sizeof(buf));
	for (int i = 0; i < UDP_DATAGRAMS; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		ck_assert_int_eq(send(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
		ck_assert_msg(poll(&p, 1, 5000) == 1, "no echo for datagram %d", i);
		ck_assert_int_eq(recv(fd, in, sizeof(in), 0), UDP_SIZE);
	}
	close(fd);
}

static bool port_free(int socktype, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len = h_sockaddr("127.0.0.1", port, &ss);
	int fd = socket(AF_INET, socktype, 0);
	bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&ss, len) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
}

/* A free port for TCP and UDP: PREFERRED, when screenshots are kept for
 * the documentation and it is free (a port a reader knows, outside the
 * ephemeral range that has status warn about every other one); any free
 * one otherwise, as parallel runs of the suites need. */
static unsigned pick_port(unsigned preferred)
{
	const char *keep = getenv("PORTFWD_SCREENSHOT_DIR");

	if (keep && *keep && port_free(SOCK_STREAM, preferred) && port_free(SOCK_DGRAM, preferred))
		return preferred;
	return h_free_port(SOCK_STREAM, false);
}

/* Waits (SECONDS at most) until target I of rule "web" (the first rule)
 * is in STATE ("up", "down"). */
static bool wait_target(struct hdaemon *d, size_t i, const char *state, double seconds)
{
	double end = h_now() + seconds;

	do {
		json_t *st = h_status(d);
		const char *s = json_string_value(json_object_get(
		    json_array_get(json_object_get(json_array_get(json_object_get(st, "rules"), 0), "targets"), i),
		    "state"));
		bool ok = s && strcmp(s, state) == 0;

		json_decref(st);
		if (ok)
			return true;
		usleep(100 * 1000);
	} while (h_now() < end);
	return false;
}

/*
 * Three rules, one of each kind: "web" (TCP, two health-checked targets, one
 * of them nobody's), "dns" (UDP) and "game" (TCP and UDP, disabled). Bytes
 * go through web and dns; then the browser must show every rule with its
 * state and the exact counters, and the script must have refreshed the page.
 */
START_TEST(test_page_in_browser)
{
	struct hdaemon d;
	struct h_backend echo, uecho;
	struct browser b;
	unsigned http = h_free_port(SOCK_STREAM, false), web = pick_port(8080), dns = pick_port(5353);
	unsigned game = pick_port(27015), nobody = pick_port(8082);
	char extra[96], conf[1024], url[64], args[512], *dom = NULL, *out = NULL, *head = NULL, *c, *e;
	const char *nonce;
	int fd, refreshes = -1;

	ck_assert_msg(access(CHROMIUM, X_OK) == 0, "no %s: scripts/install-deps test installs it", CHROMIUM);
	h_backend_start(&echo, H_ECHO, false);
	h_backend_start(&uecho, H_UDP_ECHO, false);
	snprintf(extra, sizeof(extra), "http = { listen = \"127.0.0.1:%u\"; };", http);
	h_daemon_extra = extra;
	snprintf(conf, sizeof(conf),
		 "rules: (\n"
		 " { name = \"web\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\";"
		 "   targets = [ \"127.0.0.1:%u\", \"127.0.0.1:%u\" ];"
		 "   health_check = { interval = 1.0; timeout = 0.5; rise = 1; fall = 1; }; },\n"
		 " { name = \"dns\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; },\n"
		 " { name = \"game\"; proto = \"tcp+udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; }\n"
		 ");",
		 web, echo.port, nobody, dns, uecho.port, game, nobody);
	h_start(&d, conf);
	{
		char *const disable[] = { (char *)h_bin("PORTFWDCTL_BIN", "build/default/portfwdctl"), "-s",
					  d.sock, "disable", "game", NULL };

		ck_assert_msg(h_run(disable, &out) == 0, "portfwdctl disable game: %s", out);
		free(out);
	}
	/* The health checks find the echo backend up and the other target down. */
	ck_assert_msg(wait_target(&d, 0, "up", 5.0), "web's first target never came up");
	ck_assert_msg(wait_target(&d, 1, "down", 5.0), "web's second target never went down");

	fd = h_connect("127.0.0.1", web);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(h_echo_exchange(fd, TCP_BYTES, 7, 10.0), 0);
	close(fd);
	udp_traffic(dns);
	/* The counters are the page's: wait until the daemon has them all. */
	ck_assert_int_eq(h_wait_counter(&d, "web", "tcp", "bytes_to_client", TCP_BYTES, 5.0), TCP_BYTES);
	ck_assert_int_eq(h_wait_counter(&d, "web", "tcp", "bytes_to_target", TCP_BYTES, 5.0), TCP_BYTES);
	ck_assert_int_eq(h_wait_counter(&d, "dns", "udp", "bytes_to_client", UDP_DATAGRAMS * UDP_SIZE, 5.0),
			 UDP_DATAGRAMS * UDP_SIZE);

	browser_init(&b);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/", http);
	ck_assert_msg(browser_run(&b, "--dump-dom", url, &dom) == 0, "chromium --dump-dom failed: %s", dom);

	/* Every rule, with its state, as a person reads it and as the CSS colours it. */
	c = card(dom, "web");
	ck_assert_ptr_nonnull(strstr(c, "<h2>web</h2>"));
	ck_assert_ptr_nonnull(strstr(c, "data-s=\"listening\">listening</span>"));
	ck_assert_ptr_nonnull(strstr(c, "failover, health checks"));
	free(c);
	c = card(dom, "dns");
	ck_assert_ptr_nonnull(strstr(c, "<h2>dns</h2>"));
	ck_assert_ptr_nonnull(strstr(c, "data-s=\"listening\">listening</span>"));
	free(c);
	c = card(dom, "game");
	ck_assert_ptr_nonnull(strstr(c, "<h2>game</h2>"));
	ck_assert_ptr_nonnull(strstr(c, "data-s=\"disabled\">disabled</span>"));
	ck_assert_ptr_nonnull(strstr(c, "<h3>TCP</h3>"));
	ck_assert_ptr_nonnull(strstr(c, "<h3>UDP</h3>"));
	free(c);
	/* The counters, exact in the title and for a person in the text. */
	assert_value(dom, "rules.0.tcp.bytes_to_target", "293.0 KiB");
	assert_value(dom, "rules.0.tcp.bytes_to_client", "293.0 KiB");
	e = element(dom, "rules.0.tcp.bytes_to_client");
	ck_assert_msg(strstr(e, "title=\"300,000 bytes\"") != NULL, "%s", e);
	free(e);
	assert_value(dom, "rules.0.tcp.accepted", "1");
	assert_value(dom, "rules.1.udp.bytes_to_target", "1000 B");
	assert_value(dom, "rules.1.udp.bytes_to_client", "1000 B");
	assert_value(dom, "rules.1.udp.sessions_created", "1");
	assert_value(dom, "rules.2.tcp.bytes_to_target", "0 B");
	assert_value(dom, "rules.0.targets.0.state", "up");
	assert_value(dom, "rules.0.targets.1.state", "down");
	/* The script ran (under the server's policy: its nonce matched) and
	 * refreshed the page from status.json. */
	ck_assert_msg(sscanf(strstr(dom, "data-refreshes=\"") ? strstr(dom, "data-refreshes=\"") : "",
			     "data-refreshes=\"%d\"", &refreshes) == 1 && refreshes >= 1,
		      "the script never refreshed the page (data-refreshes %d)", refreshes);
	ck_assert_msg(strstr(dom, "<p id=\"updated\" class=\"live\">updated ") != NULL,
		      "no \"updated\" mark from the script");
	ck_assert_ptr_null(strstr(dom, "<p id=\"updated\" class=\"down\">"));
	free(dom);

	/* Without script, the page as served says the same (Chromium cannot
	 * dump the DOM with script off): the values are the server's, and the
	 * policy's nonce is the one on the page's style and script. */
	ck_assert_int_eq(h_http("127.0.0.1", http, "GET", "/", NULL, &head, &dom, 5.0), 200);
	nonce = strstr(head, "script-src 'nonce-");
	ck_assert_msg(nonce != NULL, "no script nonce in the policy: %s", head);
	nonce += strlen("script-src 'nonce-");
	snprintf(args, sizeof(args), "<script nonce=\"%.*s\">", (int)strcspn(nonce, "'"), nonce);
	ck_assert_msg(strstr(dom, args) != NULL, "the page's script has not the nonce of the policy %s", head);
	snprintf(args, sizeof(args), "<style nonce=\"%.*s\">", (int)strcspn(nonce, "'"), nonce);
	ck_assert_ptr_nonnull(strstr(dom, args));
	ck_assert_ptr_nonnull(strstr(dom, "<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>"));
	ck_assert_ptr_nonnull(strstr(dom, "data-refreshes=\"0\""));
	ck_assert_ptr_nonnull(strstr(dom, "<p id=\"updated\">as of "));
	c = card(dom, "game");
	ck_assert_ptr_nonnull(strstr(c, "data-s=\"disabled\">disabled</span>"));
	free(c);
	assert_value(dom, "rules.0.tcp.bytes_to_client", "293.0 KiB");
	assert_value(dom, "rules.1.udp.bytes_to_target", "1000 B");
	free(head);
	free(dom);

	/* Screenshots: the page drawn, wide and on a phone. */
	snprintf(args, sizeof(args), "--window-size=1000,900 --screenshot='%s/wide.png'", b.dir);
	ck_assert_msg(browser_run(&b, args, url, &out) == 0, "chromium --screenshot failed: %s", out);
	free(out);
	snprintf(args, sizeof(args), "%s/wide.png", b.dir);
	assert_png(args, 20000, "status-page.png");
	snprintf(args, sizeof(args), "--window-size=412,915 --screenshot='%s/phone.png'", b.dir);
	ck_assert_msg(browser_run(&b, args, url, &out) == 0, "chromium --screenshot failed: %s", out);
	free(out);
	snprintf(args, sizeof(args), "%s/phone.png", b.dir);
	assert_png(args, 10000, "status-page-phone.png");

	browser_cleanup(&b);
	h_stop(&d);
	h_backend_stop(&echo);
	h_backend_stop(&uecho);
	h_daemon_extra = NULL;
}
END_TEST

int main(void)
{
	Suite *s = suite_create("http_page");
	TCase *tc = tcase_create("http_page");

	/* Three runs of Chromium at 65 s each at most, and the daemon's start and stop. */
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, test_page_in_browser);
	suite_add_tcase(s, tc);
	return check_run(s);
}
