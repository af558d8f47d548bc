/* The status page (http_page.c) rendered from a status document of the
 * daemon's own shape, with hostile text where the document carries text. */
#include <check.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "http_page.h"
#include "check_run.h"

/*
 * Three rules as `portfwdctl status --json` shows them (trimmed of keys the
 * page does not use): a TCP rule with traffic and two health-checked
 * targets, a UDP rule that failed, a disabled tcp+udp rule that the home
 * router maps. Rule names cannot hold such text (config.c), but errors,
 * warnings and reasons can, and the page must not rely on either.
 */
static const char *const doc_text =
	"{\"version\": \"0.1.0\", \"protocol\": 1, \"pid\": 4242, \"uptime\": 93784.2,"
	" \"config\": \"/etc/portfwd.conf\", \"workers\": 2, \"user\": \"portfwd\", \"generation\": 7,"
	" \"reload\": {\"ok\": 5, \"failed\": 2, \"last_refused\": true, \"last\": 1795987000,"
	"   \"last_failed\": 1795987803,"
	"   \"last_failed_errors\": [\"/etc/portfwd.conf:9: </ul><script>alert(4)</script>\"]},"
	" \"rules\": ["
	"  {\"name\": \"<script>alert(1)</script>\", \"proto\": \"tcp\", \"listen\": \"127.0.0.1:8080\","
	"   \"target\": \"127.0.0.1:18081\", \"state\": \"listening\","
	"   \"listen_port\": {\"port\": 8080, \"service\": \"http-alt\", \"class\": \"registered\"},"
	"   \"target_port\": {\"port\": 18081, \"service\": null, \"class\": \"registered\"},"
	"   \"interface\": null, \"warnings\": [{\"rule\": \"x\", \"line\": 3, \"level\": \"warning\","
	"     \"message\": \"open to all: <img src=x onerror=alert(2)>\"}],"
	"   \"balance\": \"failover\", \"health_check\": true,"
	"   \"targets\": ["
	"    {\"address\": \"127.0.0.1:18081\", \"text\": \"127.0.0.1:18081\", \"state\": \"up\","
	"     \"reason\": null, \"active\": 3, \"connections\": 1500, \"failures\": 0,"
	"     \"port\": {\"port\": 18081, \"service\": null, \"class\": \"registered\"}},"
	"    {\"address\": \"127.0.0.1:18082\", \"text\": \"127.0.0.1:18082\", \"state\": \"down\","
	"     \"reason\": \"health check: <b>refused</b>\", \"active\": 0, \"connections\": 0,"
	"     \"failures\": 4, \"port\": {\"port\": 18082, \"service\": null, \"class\": \"registered\"},"
	"     \"retry_in\": null}],"
	"   \"router\": null,"
	"   \"tcp\": {\"state\": \"listening\", \"error\": null, \"active\": 3, \"accepted\": 1523,"
	"     \"connect_failed\": 2, \"bytes_to_target\": 1258291, \"bytes_to_client\": 1234567890,"
	"     \"denied\": 17, \"limited\": {\"connections\": 1, \"rate\": 2, \"table_full\": 3}}},"
	"  {\"name\": \"x\\\"onmouseover=alert(3) '\", \"proto\": \"udp\", \"listen\": \"127.0.0.1:5353\","
	"   \"target\": \"127.0.0.1:53\", \"state\": \"failed\","
	"   \"listen_port\": {\"port\": 5353, \"service\": \"mdns\", \"class\": \"registered\"},"
	"   \"target_port\": {\"port\": 53, \"service\": \"domain\", \"class\": \"well-known\"},"
	"   \"interface\": null, \"warnings\": [], \"balance\": \"failover\", \"health_check\": false,"
	"   \"targets\": [{\"address\": \"127.0.0.1:53\", \"text\": \"127.0.0.1:53\", \"state\": \"up\","
	"     \"reason\": null, \"active\": 0, \"connections\": 0, \"failures\": 0,"
	"     \"port\": {\"port\": 53, \"service\": \"domain\", \"class\": \"well-known\"}}],"
	"   \"router\": null,"
	"   \"udp\": {\"state\": \"failed\", \"error\": \"bind: <denied> & \\\"gone\\\"\", \"active\": 0,"
	"     \"sessions_created\": 0, \"bytes_to_target\": 0, \"bytes_to_client\": 0,"
	"     \"dropped_limit\": 0, \"dropped_error\": 0, \"denied\": 0,"
	"     \"limited\": {\"sessions\": 0, \"datagrams\": 0, \"table_full\": 0}}},"
	"  {\"name\": \"game\", \"proto\": \"tcp+udp\", \"listen\": \"127.0.0.1:27015\","
	"   \"target\": \"127.0.0.1:27016\", \"state\": \"disabled\","
	"   \"listen_port\": {\"port\": 27015, \"service\": null, \"class\": \"registered\"},"
	"   \"target_port\": {\"port\": 27016, \"service\": null, \"class\": \"registered\"},"
	"   \"interface\": \"wg0\", \"warnings\": [], \"balance\": \"failover\", \"health_check\": false,"
	"   \"router\": {\"method\": \"auto\", \"lease\": 3600, \"external_port_asked\": 27015,"
	"     \"state\": \"mapped\", \"used\": \"pcp\", \"mapped\": 1, \"total\": 1,"
	"     \"external_address\": \"203.0.113.9\", \"external_port\": 27015,"
	"     \"internal_address\": \"192.168.1.20\", \"expires\": 1795991403, \"renewals\": 4,"
	"     \"failures\": 0, \"error\": null, \"warning\": \"the router is behind <CGNAT>\"},"
	"   \"tcp\": {\"state\": \"closed\", \"error\": null, \"active\": 0, \"accepted\": 12,"
	"     \"connect_failed\": 0, \"bytes_to_target\": 5000, \"bytes_to_client\": 2048, \"denied\": 0,"
	"     \"limited\": {\"connections\": 0, \"rate\": 0, \"table_full\": 0}},"
	"   \"udp\": {\"state\": \"closed\", \"error\": null, \"active\": 0, \"sessions_created\": 7,"
	"     \"bytes_to_target\": 913, \"bytes_to_client\": 4096000, \"dropped_limit\": 1,"
	"     \"dropped_error\": 1, \"denied\": 0,"
	"     \"limited\": {\"sessions\": 0, \"datagrams\": 0, \"table_full\": 0}}}"
	" ]}";

#define NONCE "q7Zk-3_xYw"

/* The page for doc_text (or TEXT), NUL-terminated; the caller frees it. */
static char *render(const char *text)
{
	json_error_t err;
	json_t *doc = json_loads(text ? text : doc_text, 0, &err);
	struct evbuffer *out = evbuffer_new();
	size_t len;
	char *page;

	ck_assert_msg(doc != NULL, "test document: %s (line %d)", err.text, err.line);
	ck_assert_ptr_nonnull(out);
	http_page_render(doc, NONCE, out);
	len = evbuffer_get_length(out);
	page = malloc(len + 1);
	ck_assert_ptr_nonnull(page);
	evbuffer_remove(out, page, len);
	page[len] = '\0';
	evbuffer_free(out);
	json_decref(doc);
	return page;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* The text of rule card I (0-based): from its <article to the next. */
static char *card(const char *page, int i)
{
	const char *p = page, *end;

	for (int k = 0; k <= i; k++) {
		p = strstr(p, "<article");
		ck_assert_msg(p != NULL, "no card %d", i);
		if (k < i)
			p++;
	}
	end = strstr(p, "</article>");
	ck_assert_ptr_nonnull(end);
	return strndup(p, (size_t)(end - p));
}

START_TEST(test_hostile_text_escaped)
{
	char *page = render(NULL);

	/* The only script element is the page's own, with its nonce. */
	ck_assert_ptr_null(strstr(page, "<script>"));
	ck_assert_int_eq(count(page, "<script"), 1);
	ck_assert_ptr_null(strstr(page, "alert(1)</script>"));
	ck_assert_ptr_null(strstr(page, "<img"));
	ck_assert_ptr_null(strstr(page, "<b>refused"));
	ck_assert_ptr_null(strstr(page, "<CGNAT>"));
	ck_assert_ptr_null(strstr(page, "<denied>"));
	ck_assert_ptr_null(strstr(page, "\"onmouseover"));
	ck_assert_ptr_null(strstr(page, "</ul><script"));
	/* ... and each is there, escaped, for the reader. */
	ck_assert_ptr_nonnull(strstr(page, "<h2>&lt;script&gt;alert(1)&lt;/script&gt;</h2>"));
	ck_assert_ptr_nonnull(strstr(page, "<h2>x&quot;onmouseover=alert(3) &#39;</h2>"));
	ck_assert_ptr_nonnull(strstr(page, "data-name=\"x&quot;onmouseover=alert(3) &#39;\""));
	ck_assert_ptr_nonnull(strstr(page, "open to all: &lt;img src=x onerror=alert(2)&gt;"));
	ck_assert_ptr_nonnull(strstr(page, "health check: &lt;b&gt;refused&lt;/b&gt;"));
	ck_assert_ptr_nonnull(strstr(page, "bind: &lt;denied&gt; &amp; &quot;gone&quot;"));
	ck_assert_ptr_nonnull(strstr(page, "the router is behind &lt;CGNAT&gt;"));
	ck_assert_ptr_nonnull(strstr(page, "/etc/portfwd.conf:9: &lt;/ul&gt;&lt;script&gt;alert(4)&lt;/script&gt;"));
	free(page);
}
END_TEST

START_TEST(test_nonce_and_script)
{
	char *page = render(NULL);
	char *script;

	ck_assert_int_eq(count(page, "<style"), 1);
	ck_assert_ptr_nonnull(strstr(page, "<style nonce=\"" NONCE "\">"));
	ck_assert_ptr_nonnull(strstr(page, "<script nonce=\"" NONCE "\">"));
	/* No inline style attribute or handler, which the policy would block. */
	ck_assert_ptr_null(strstr(page, " style="));
	ck_assert_ptr_null(strstr(page, " onload="));
	/* The script only ever sets text, never markup. */
	script = strstr(page, "<script");
	ck_assert_ptr_null(strstr(script, "innerHTML"));
	ck_assert_ptr_null(strstr(script, "outerHTML"));
	ck_assert_ptr_null(strstr(script, "document.write"));
	ck_assert_ptr_null(strstr(script, "eval("));
	ck_assert_ptr_nonnull(strstr(script, "textContent"));
	ck_assert_ptr_nonnull(strstr(script, "status.json"));
	ck_assert_ptr_nonnull(strstr(script, "cannot reach portfwd"));
	/* Readable on a phone, fresh without script, a place for the script's mark. */
	ck_assert_ptr_nonnull(strstr(page, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"));
	ck_assert_ptr_nonnull(strstr(page, "<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>"));
	ck_assert_ptr_nonnull(strstr(page, "<p id=\"updated\">"));
	ck_assert_ptr_nonnull(strstr(page, "data-refreshes=\"0\""));
	ck_assert_ptr_nonnull(strstr(page, "data-generation=\"7\""));
	free(page);
}
END_TEST

START_TEST(test_daemon_line)
{
	char *page = render(NULL);

	ck_assert_ptr_nonnull(strstr(page, "portfwd <small>0.1.0</small>"));
	ck_assert_ptr_nonnull(strstr(page, "up <b data-k=\"uptime\" data-f=\"dur\">1d 2h 3m</b>"));
	ck_assert_ptr_nonnull(strstr(page, "generation <b>7</b>"));
	ck_assert_ptr_nonnull(strstr(page, "<b>2</b> workers"));
	ck_assert_ptr_nonnull(strstr(page, "/etc/portfwd.conf</span>"));
	ck_assert_ptr_nonnull(strstr(page, "data-k=\"reload.ok\" data-f=\"num\">5</b> applied"));
	ck_assert_ptr_nonnull(strstr(page, "data-k=\"reload.failed\" data-f=\"num\">2</b> refused"));
	ck_assert_ptr_nonnull(strstr(page, "The last reload was refused"));
	free(page);
}
END_TEST

START_TEST(test_counters_formatted)
{
	char *page = render(NULL), *web = card(page, 0), *game = card(page, 2);

	ck_assert_ptr_nonnull(strstr(web, "data-k=\"rules.0.tcp.accepted\" data-f=\"num\">1,523<"));
	ck_assert_ptr_nonnull(strstr(web, "data-k=\"rules.0.tcp.bytes_to_target\" data-f=\"bytes\" title=\"1,258,291 bytes\">1.2 MiB<"));
	ck_assert_ptr_nonnull(strstr(web, "title=\"1,234,567,890 bytes\">1.1 GiB<"));
	ck_assert_ptr_nonnull(strstr(web, "data-f=\"num\">17<"));
	/* limited: the three limits' sum, which the script adds up alike. */
	ck_assert_ptr_nonnull(strstr(web, "data-k=\"rules.0.tcp.limited.connections+rules.0.tcp.limited.rate"
					  "+rules.0.tcp.limited.table_full\" data-f=\"num\">6<"));
	ck_assert_ptr_nonnull(strstr(game, "title=\"4,096,000 bytes\">3.9 MiB<"));
	ck_assert_ptr_nonnull(strstr(game, ">913 B<"));
	ck_assert_ptr_nonnull(strstr(game, "data-k=\"rules.2.udp.dropped_limit+rules.2.udp.dropped_error\" data-f=\"num\">2<"));
	ck_assert_ptr_nonnull(strstr(game, "<h3>TCP</h3>"));
	ck_assert_ptr_nonnull(strstr(game, "<h3>UDP</h3>"));
	/* The UDP rule has no TCP counters. */
	free(game);
	game = card(page, 1);
	ck_assert_ptr_null(strstr(game, "<h3>TCP</h3>"));
	ck_assert_ptr_nonnull(strstr(game, "<h3>UDP</h3>"));
	free(game);
	free(web);
	free(page);
}
END_TEST

START_TEST(test_states_and_routes)
{
	char *page = render(NULL);
	char *web = card(page, 0), *udp = card(page, 1), *game = card(page, 2);

	ck_assert_ptr_nonnull(strstr(web, "data-f=\"state\" data-s=\"listening\">listening</span>"));
	ck_assert_ptr_nonnull(strstr(web, "data-f=\"mark\" data-s=\"listening\""));
	ck_assert_ptr_nonnull(strstr(udp, "data-f=\"state\" data-s=\"failed\">failed</span>"));
	ck_assert_ptr_nonnull(strstr(udp, "data-f=\"mark\" data-s=\"failed\""));
	ck_assert_ptr_nonnull(strstr(udp, "data-p=\"udp: \" data-k=\"rules.1.udp.error\" data-f=\"msg\">bind: "));
	ck_assert_ptr_nonnull(strstr(game, "data-f=\"state\" data-s=\"disabled\">disabled</span>"));
	/* Routes with each port's service and class. */
	ck_assert_ptr_nonnull(strstr(udp, "127.0.0.1:5353</span> <span class=\"port\">mdns \xc2\xb7 registered</span>"));
	ck_assert_ptr_nonnull(strstr(udp, "127.0.0.1:53</span> <span class=\"port\">domain \xc2\xb7 well-known</span>"));
	ck_assert_ptr_nonnull(strstr(web, "127.0.0.1:18081</span> <span class=\"port\">registered</span>"));
	ck_assert_ptr_nonnull(strstr(game, "on wg0"));
	/* The CSS colours states by data-s. */
	ck_assert_ptr_nonnull(strstr(page, ".st[data-s=listening]"));
	ck_assert_ptr_nonnull(strstr(page, ".st[data-s=failed]"));
	free(web);
	free(udp);
	free(game);
	free(page);
}
END_TEST

START_TEST(test_sections_where_present)
{
	char *page = render(NULL);
	char *web = card(page, 0), *udp = card(page, 1), *game = card(page, 2);

	/* Targets: the health-checked pair only; one plain target is on the route. */
	ck_assert_int_eq(count(page, "class=\"targets\""), 1);
	ck_assert_ptr_nonnull(strstr(web, "class=\"targets\""));
	ck_assert_ptr_nonnull(strstr(web, "failover, health checks"));
	ck_assert_ptr_nonnull(strstr(web, "data-k=\"rules.0.targets.1.state\" data-f=\"state\" data-s=\"down\">down<"));
	ck_assert_ptr_nonnull(strstr(web, "data-k=\"rules.0.targets.0.connections\" data-f=\"num\">1,500<"));
	ck_assert_ptr_null(strstr(udp, "class=\"targets\""));
	ck_assert_ptr_null(strstr(game, "class=\"targets\""));
	/* Router: the rule that asks for one. */
	ck_assert_int_eq(count(page, "class=\"router\""), 1);
	ck_assert_ptr_nonnull(strstr(game, "class=\"router\""));
	ck_assert_ptr_nonnull(strstr(game, "data-s=\"mapped\">mapped<"));
	ck_assert_ptr_nonnull(strstr(game, ">203.0.113.9<"));
	ck_assert_ptr_nonnull(strstr(game, "data-k=\"rules.2.router.external_port\" data-f=\"text\">27015<"));
	ck_assert_ptr_nonnull(strstr(game, "data-k=\"rules.2.router.renewals\" data-f=\"num\">4<"));
	/* Warnings: the first rule's, shown as a warning. */
	ck_assert_int_eq(count(page, "class=\"warnings\""), 1);
	ck_assert_ptr_nonnull(strstr(web, "<li class=\"warning\"><b>warning:</b> open to all"));
	free(web);
	free(udp);
	free(game);
	free(page);
}
END_TEST

START_TEST(test_no_rules)
{
	char *page = render("{\"version\": \"0.1.0\", \"generation\": 1, \"reload\": {\"failed\": 0},"
			    " \"rules\": []}");

	ck_assert_ptr_nonnull(strstr(page, "No rules"));
	ck_assert_ptr_null(strstr(page, "<article"));
	ck_assert_ptr_null(strstr(page, "The last reload was refused"));
	ck_assert_ptr_nonnull(strstr(page, "</html>"));
	free(page);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("http_page");
	TCase *tc = tcase_create("http_page");

	tcase_add_test(tc, test_hostile_text_escaped);
	tcase_add_test(tc, test_nonce_and_script);
	tcase_add_test(tc, test_daemon_line);
	tcase_add_test(tc, test_counters_formatted);
	tcase_add_test(tc, test_states_and_routes);
	tcase_add_test(tc, test_sections_where_present);
	tcase_add_test(tc, test_no_rules);
	suite_add_tcase(s, tc);
	return check_run(s);
}
