#include "http_page.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "status.h"

/*
 * Every value that changes while the page is open is written once, by
 * http_page_live(), as an element carrying the value's path in the status
 * document (data-k="rules.2.tcp.active", or a sum "a+b+c") and its format
 * (data-f). The server looks the path up to render the value and the
 * script looks the same path up in /status.json to refresh it, so the two
 * cannot disagree on where a value comes from; the formats below exist
 * twice, in C and in the script, and must stay alike.
 *
 *   num    a count, digits grouped by commas ("1,234")
 *   bytes  "1.2 MiB" (status_bytes()), the exact count in the title
 *   dur    seconds as "3h 2m 1s"
 *   time   seconds since the epoch as local "YYYY-MM-DD HH:MM:SS"
 *   text   a string as it is, a number without commas (a port)
 *   msg    a message: null is empty (the CSS hides an empty one)
 *   state  a string, also copied into data-s for the CSS's colours
 *   mark   data-s only, no text (a card's coloured edge)
 *
 * A null value reads as an en dash, except in msg.
 */

struct http_page {
	const json_t *doc;
	struct evbuffer *out;
};

/* The few lines of script. Only textContent and setAttribute touch the
 * page: nothing from the document is ever parsed as HTML. The page is
 * reloaded instead when what the server chose to show changed (another
 * generation, a rule more or less, a refused reload, other warnings). */
static const char http_page_script[] =
	"(function () {\n"
	"'use strict';\n"
	"var body = document.body, upd = document.getElementById('updated');\n"
	"var refreshes = 0, reloading = false;\n"
	"function get(o, k) {\n"
	"  var p = k.split('.');\n"
	"  for (var i = 0; i < p.length && o !== undefined && o !== null; i++) o = o[p[i]];\n"
	"  return o;\n"
	"}\n"
	"function value(d, k) {\n"
	"  var p = k.split('+'), s = 0;\n"
	"  if (p.length === 1) return get(d, k);\n"
	"  for (var i = 0; i < p.length; i++) {\n"
	"    var v = get(d, p[i]);\n"
	"    if (typeof v !== 'number') return undefined;\n"
	"    s += v;\n"
	"  }\n"
	"  return s;\n"
	"}\n"
	"function group(n) { return String(Math.round(n)).replace(/\\B(?=(\\d{3})+(?!\\d))/g, ','); }\n"
	"function bytes(n) {\n"
	"  var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0, v = n;\n"
	"  while (v >= 1024 && i < 4) { v /= 1024; i++; }\n"
	"  return i ? v.toFixed(1) + ' ' + u[i] : n + ' B';\n"
	"}\n"
	"function dur(s) {\n"
	"  s = Math.floor(s);\n"
	"  var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);\n"
	"  if (d) return d + 'd ' + h + 'h ' + m + 'm';\n"
	"  if (h) return h + 'h ' + m + 'm ' + s % 60 + 's';\n"
	"  if (m) return m + 'm ' + s % 60 + 's';\n"
	"  return s + 's';\n"
	"}\n"
	"function two(n) { return (n < 10 ? '0' : '') + n; }\n"
	"function clock(t) { return two(t.getHours()) + ':' + two(t.getMinutes()) + ':' + two(t.getSeconds()); }\n"
	"function when(s) {\n"
	"  var t = new Date(s * 1000);\n"
	"  return t.getFullYear() + '-' + two(t.getMonth() + 1) + '-' + two(t.getDate()) + ' ' + clock(t);\n"
	"}\n"
	"function text(f, v) {\n"
	"  if (v === null) return f === 'msg' ? '' : '\\u2013';\n"
	"  if (f === 'bytes') return bytes(v);\n"
	"  if (f === 'num') return group(v);\n"
	"  if (f === 'dur') return dur(v);\n"
	"  if (f === 'time') return when(v);\n"
	"  return String(v);\n"
	"}\n"
	"function len(a) { return String(a ? a.length : 0); }\n"
	"function changed(d) {\n"
	"  var cards = document.querySelectorAll('[data-name]');\n"
	"  if (String(d.generation || 0) !== body.getAttribute('data-generation') ||\n"
	"      String((d.reload && d.reload.failed) || 0) !== body.getAttribute('data-refused') ||\n"
	"      cards.length !== d.rules.length) return true;\n"
	"  for (var i = 0; i < cards.length; i++) {\n"
	"    var c = cards[i], r = d.rules[i];\n"
	"    if (r.name !== c.getAttribute('data-name') || len(r.warnings) !== c.getAttribute('data-warnings') ||\n"
	"        len(r.targets) !== c.getAttribute('data-targets') ||\n"
	"        (r.router ? '1' : '0') !== c.getAttribute('data-router')) return true;\n"
	"  }\n"
	"  return false;\n"
	"}\n"
	"function apply(d) {\n"
	"  if (changed(d)) { reloading = true; location.reload(); return; }\n"
	"  var els = document.querySelectorAll('[data-k]');\n"
	"  for (var i = 0; i < els.length; i++) {\n"
	"    var e = els[i], f = e.getAttribute('data-f'), v = value(d, e.getAttribute('data-k'));\n"
	"    if (v === undefined) continue;\n"
	"    if (f === 'state' || f === 'mark') e.setAttribute('data-s', v === null ? '' : String(v));\n"
	"    if (f === 'mark') continue;\n"
	"    e.textContent = text(f, v);\n"
	"    if (f === 'bytes' && v !== null) e.setAttribute('title', group(v) + ' bytes');\n"
	"  }\n"
	"  body.setAttribute('data-refreshes', String(++refreshes));\n"
	"  upd.textContent = 'updated ' + clock(new Date());\n"
	"  upd.className = 'live';\n"
	"}\n"
	"function fail() {\n"
	"  upd.textContent = 'cannot reach portfwd';\n"
	"  upd.className = 'down';\n"
	"}\n"
	"function tick() {\n"
	"  fetch('status.json', { cache: 'no-store', credentials: 'same-origin' })\n"
	"    .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })\n"
	"    .then(apply)\n"
	"    .catch(fail)\n"
	"    .then(function () { if (!reloading) setTimeout(tick, 5000); });\n"
	"}\n"
	"tick();\n"
	"})();\n";

/* Light and dark by the reader's preference; one column of cards on a
 * phone, as many as fit on a wide screen; nothing wider than the screen
 * (long addresses and messages wrap anywhere). */
static const char http_page_style[] =
	":root{color-scheme:light dark;--bg:#f3f4f6;--card:#fff;--fg:#1f2328;--mute:#57606a;"
	"--line:#d0d7de;--ok:#1a7f37;--bad:#cf222e;--off:#6e7781;--warn:#9a6700}\n"
	"@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#161b22;--fg:#e6edf3;"
	"--mute:#9198a1;--line:#30363d;--ok:#238636;--bad:#da3633;--off:#6e7681;--warn:#9e6a03}}\n"
	"*{box-sizing:border-box}\n"
	"body{margin:0;padding:16px;background:var(--bg);color:var(--fg);"
	"font:16px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans',sans-serif}\n"
	"header,main,footer{max-width:1200px;margin:0 auto}\n"
	"h1{font-size:1.6rem;margin:0}\n"
	"h1 small{font-size:1rem;font-weight:400;color:var(--mute)}\n"
	".daemon{margin:.25rem 0;color:var(--mute);overflow-wrap:anywhere}\n"
	".daemon b{color:var(--fg);font-weight:600}\n"
	"#updated{margin:.25rem 0;font-size:.9rem;color:var(--mute)}\n"
	"#updated.live::before{content:'\\25CF  ';color:var(--ok)}\n"
	"#updated.down{color:var(--bad);font-weight:600}\n"
	".alert{border:1px solid var(--bad);border-radius:8px;padding:8px 12px;margin:8px 0;"
	"background:var(--card)}\n"
	".alert ul{margin:.25rem 0;padding-left:1.25rem}\n"
	"main{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,440px),1fr));"
	"gap:16px;margin-top:16px}\n"
	".card{min-width:0;background:var(--card);border:1px solid var(--line);"
	"border-left:6px solid var(--off);border-radius:8px;padding:10px 16px 12px}\n"
	".card[data-s=listening]{border-left-color:var(--ok)}\n"
	".card[data-s=failed]{border-left-color:var(--bad)}\n"
	".card[data-s='waiting for DNS'],.card[data-s=draining]{border-left-color:var(--warn)}\n"
	".head{display:flex;flex-wrap:wrap;align-items:center;gap:6px 10px}\n"
	"h2{font-size:1.25rem;margin:0;overflow-wrap:anywhere}\n"
	".proto{font-size:.8rem;font-weight:600;text-transform:uppercase;color:var(--mute);"
	"border:1px solid var(--line);border-radius:4px;padding:0 6px}\n"
	".st{display:inline-block;font-size:.85rem;font-weight:600;color:#fff;background:var(--off);"
	"border-radius:999px;padding:0 10px}\n"
	".st[data-s=listening],.st[data-s=up],.st[data-s=mapped],.st[data-s=resolved]"
	"{background:var(--ok)}\n"
	".st[data-s=failed],.st[data-s=down]{background:var(--bad)}\n"
	".st[data-s='waiting for DNS'],.st[data-s=draining],.st[data-s=mapping],"
	".st[data-s='partly mapped'],.st[data-s=waiting],.st[data-s=stale]{background:var(--warn)}\n"
	".route{margin:.35rem 0;overflow-wrap:anywhere}\n"
	".addr{font-family:ui-monospace,'SFMono-Regular',Menlo,Consolas,monospace;font-size:.95rem}\n"
	".port{color:var(--mute);font-size:.85rem}\n"
	"h3{margin:.6rem 0 .15rem;font-size:.8rem;text-transform:uppercase;color:var(--mute);"
	"letter-spacing:.04em}\n"
	"h3 small{text-transform:none;font-weight:400;letter-spacing:0}\n"
	"dl{display:grid;grid-template-columns:repeat(auto-fill,minmax(5.75rem,1fr));gap:4px 12px;"
	"margin:0}\n"
	"dt{font-size:.78rem;line-height:1.3;color:var(--mute)}\n"
	"dd{margin:0 0 2px;font-size:1rem;font-weight:500;font-variant-numeric:tabular-nums;"
	"overflow-wrap:anywhere}\n"
	"ul{margin:.25rem 0;padding:0;list-style:none}\n"
	"li{margin:.2rem 0;overflow-wrap:anywhere}\n"
	".err,.warn,.why{overflow-wrap:anywhere}\n"
	".err{color:var(--bad);margin:.4rem 0}\n"
	".err::before{content:attr(data-p);font-weight:600}\n"
	".warn{color:var(--warn);margin:.4rem 0}\n"
	".why{display:block;color:var(--mute);font-size:.85rem}\n"
	".err:empty,.warn:empty,.why:empty{display:none}\n"
	".warnings li{padding-left:.5rem;border-left:3px solid var(--warn)}\n"
	".warnings li.note{border-left-color:var(--line);color:var(--mute)}\n"
	"footer{margin-top:16px;font-size:.85rem;color:var(--mute)}\n"
	"a{color:inherit}\n";

/* S with & < > " ' as character references: safe in text and in quoted
 * attribute values. NULL writes nothing. */
static void http_page_esc(struct evbuffer *out, const char *s)
{
	const char *run = s;

	if (!s)
		return;
	for (; *s; s++) {
		const char *rep;

		switch (*s) {
		case '&':
			rep = "&amp;";
			break;
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\'':
			rep = "&#39;";
			break;
		default:
			continue;
		}
		evbuffer_add(out, run, (size_t)(s - run));
		evbuffer_add(out, rep, strlen(rep));
		run = s + 1;
	}
	evbuffer_add(out, run, (size_t)(s - run));
}

/* The value at PATH ("rules.2.tcp.active": object keys, array indexes) of
 * DOC, borrowed; NULL where the path leads nowhere. */
static const json_t *http_page_get(const json_t *doc, const char *path, size_t len)
{
	const json_t *v = doc;
	char part[64];

	while (v && len) {
		size_t n = strcspn(path, ".");

		if (n > len)
			n = len;
		if (n >= sizeof(part))
			return NULL;
		memcpy(part, path, n);
		part[n] = '\0';
		if (json_is_array(v)) {
			char *end;
			unsigned long i = strtoul(part, &end, 10);

			v = n && !*end ? json_array_get(v, i) : NULL;
		} else {
			v = json_object_get(v, part);
		}
		path += n;
		len -= n;
		if (len) {
			path++;
			len--;
		}
	}
	return v;
}

/* The value at KEY, a path or a sum of paths joined by '+' (then every one
 * must be a number), as a new reference; NULL where there is none. */
static json_t *http_page_value(const json_t *doc, const char *key)
{
	json_int_t sum = 0;

	if (!strchr(key, '+')) {
		const json_t *v = http_page_get(doc, key, strlen(key));

		return v ? json_incref((json_t *)v) : NULL;
	}
	for (const char *p = key;;) {
		size_t n = strcspn(p, "+");
		const json_t *v = http_page_get(doc, p, n);

		if (!json_is_integer(v))
			return NULL;
		sum += json_integer_value(v);
		if (!p[n])
			break;
		p += n + 1;
	}
	return json_integer(sum);
}

/* N with its digits grouped by commas, as the script's group(). */
static const char *http_page_group(long long n, char *buf, size_t len)
{
	char digits[32];
	int nd = snprintf(digits, sizeof(digits), "%lld", n < 0 ? -n : n);
	size_t o = 0;

	if (n < 0 && o + 1 < len)
		buf[o++] = '-';
	for (int i = 0; i < nd && o + 1 < len; i++) {
		if (i && (nd - i) % 3 == 0 && o + 2 < len)
			buf[o++] = ',';
		buf[o++] = digits[i];
	}
	buf[o] = '\0';
	return buf;
}

static const char *http_page_when(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (!localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "%lld", (long long)t);
	return buf;
}

/* V in format F (see the top of the file) into BUF; the text returned may
 * also be one of V's own strings. */
static const char *http_page_format(const json_t *v, const char *f, char *buf, size_t len)
{
	double x = json_number_value(v);

	if (!v || json_is_null(v))
		return strcmp(f, "msg") == 0 ? "" : "\xe2\x80\x93";
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_boolean(v))
		return json_is_true(v) ? "true" : "false";
	if (!json_is_number(v))
		return "?";
	if (strcmp(f, "bytes") == 0)
		return status_bytes(x > 0 ? (uint64_t)x : 0, buf, len);
	if (strcmp(f, "dur") == 0)
		return status_duration(x, buf, len);
	if (strcmp(f, "time") == 0)
		return http_page_when((time_t)x, buf, len);
	if (json_is_integer(v) && strcmp(f, "num") != 0) {
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	}
	if (json_is_integer(v))
		return http_page_group((long long)json_integer_value(v), buf, len);
	return http_page_group((long long)(x + (x < 0 ? -0.5 : 0.5)), buf, len);
}

/*
 * <TAG class="CLS" data-k="KEY" data-f="F" ...>value</TAG>: the value at
 * KEY (a printf format, then its arguments) of the document, rendered now
 * and refreshed by the script. ATTRS, when not NULL, is more attributes
 * written as they are (ours, never the document's).
 */
static void http_page_live(struct http_page *pg, const char *tag, const char *cls, const char *attrs,
			   const char *f, const char *keyfmt, ...) __attribute__((format(printf, 6, 7)));

static void http_page_live(struct http_page *pg, const char *tag, const char *cls, const char *attrs,
			   const char *f, const char *keyfmt, ...)
{
	char key[256], buf[64];
	json_t *v;
	va_list ap;

	va_start(ap, keyfmt);
	vsnprintf(key, sizeof(key), keyfmt, ap);
	va_end(ap);
	v = http_page_value(pg->doc, key);
	evbuffer_add_printf(pg->out, "<%s", tag);
	if (cls)
		evbuffer_add_printf(pg->out, " class=\"%s\"", cls);
	if (attrs)
		evbuffer_add_printf(pg->out, " %s", attrs);
	evbuffer_add_printf(pg->out, " data-k=\"");
	http_page_esc(pg->out, key);
	evbuffer_add_printf(pg->out, "\" data-f=\"%s\"", f);
	if (strcmp(f, "state") == 0) {
		evbuffer_add_printf(pg->out, " data-s=\"");
		http_page_esc(pg->out, json_string_value(v));
		evbuffer_add_printf(pg->out, "\"");
	}
	if (strcmp(f, "bytes") == 0 && json_is_integer(v))
		evbuffer_add_printf(pg->out, " title=\"%s bytes\"",
				    http_page_group((long long)json_integer_value(v), buf, sizeof(buf)));
	evbuffer_add_printf(pg->out, ">");
	http_page_esc(pg->out, http_page_format(v, f, buf, sizeof(buf)));
	evbuffer_add_printf(pg->out, "</%s>", tag);
	json_decref(v);
}

/* One label and live value of a <dl> grid. */
static void http_page_stat(struct http_page *pg, const char *label, const char *f, const char *keyfmt,
			   ...) __attribute__((format(printf, 4, 5)));

static void http_page_stat(struct http_page *pg, const char *label, const char *f, const char *keyfmt,
			   ...)
{
	char key[256];
	va_list ap;

	va_start(ap, keyfmt);
	vsnprintf(key, sizeof(key), keyfmt, ap);
	va_end(ap);
	evbuffer_add_printf(pg->out, "<div><dt>%s</dt>", label);
	http_page_live(pg, "dd", NULL, NULL, f, "%s", key);
	evbuffer_add_printf(pg->out, "</div>");
}

/* A string member of O, or NULL. */
static const char *http_page_str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* A port object's service name and class, after an address:
 * "domain · well-known". */
static void http_page_port(struct evbuffer *out, const json_t *port)
{
	const char *service = http_page_str(port, "service"), *cls = http_page_str(port, "class");

	if (!service && !cls)
		return;
	evbuffer_add_printf(out, " <span class=\"port\">");
	http_page_esc(out, service);
	if (service && cls)
		evbuffer_add_printf(out, " \xc2\xb7 ");
	http_page_esc(out, cls);
	evbuffer_add_printf(out, "</span>");
}

static void http_page_daemon(struct http_page *pg)
{
	const json_t *doc = pg->doc, *reload = json_object_get(doc, "reload");
	json_int_t workers = json_integer_value(json_object_get(doc, "workers"));
	char buf[64];

	evbuffer_add_printf(pg->out, "<header>\n<h1>portfwd <small>");
	http_page_esc(pg->out, http_page_str(doc, "version"));
	evbuffer_add_printf(pg->out, "</small></h1>\n<p class=\"daemon\">up ");
	http_page_live(pg, "b", NULL, NULL, "dur", "uptime");
	evbuffer_add_printf(pg->out, " \xc2\xb7 generation <b>%" JSON_INTEGER_FORMAT "</b> \xc2\xb7 "
				     "<b>%" JSON_INTEGER_FORMAT "</b> worker%s \xc2\xb7 pid %" JSON_INTEGER_FORMAT
				     " \xc2\xb7 user ",
			    json_integer_value(json_object_get(doc, "generation")), workers,
			    workers == 1 ? "" : "s", json_integer_value(json_object_get(doc, "pid")));
	http_page_esc(pg->out, http_page_str(doc, "user"));
	evbuffer_add_printf(pg->out, " \xc2\xb7 config <span class=\"addr\">");
	http_page_esc(pg->out, http_page_str(doc, "config"));
	evbuffer_add_printf(pg->out, "</span> \xc2\xb7 reloads ");
	http_page_live(pg, "b", NULL, NULL, "num", "reload.ok");
	evbuffer_add_printf(pg->out, " applied, ");
	http_page_live(pg, "b", NULL, NULL, "num", "reload.failed");
	evbuffer_add_printf(pg->out, " refused</p>\n");
	/* The time of the server's rendering; the script's first refresh
	 * replaces it with its own. */
	evbuffer_add_printf(pg->out, "<p id=\"updated\">as of %s</p>\n",
			    http_page_when(time(NULL), buf, sizeof(buf)));
	if (json_is_true(json_object_get(reload, "last_refused"))) {
		const json_t *errs = json_object_get(reload, "last_failed_errors"), *e;
		size_t k;

		evbuffer_add_printf(pg->out, "<div class=\"alert\"><b>The last reload was refused</b>");
		if (json_is_integer(json_object_get(reload, "last_failed")))
			evbuffer_add_printf(pg->out, " (%s)",
					    http_page_when((time_t)json_integer_value(json_object_get(reload, "last_failed")),
							   buf, sizeof(buf)));
		evbuffer_add_printf(pg->out, ": the configuration before it stays in force.<ul>");
		json_array_foreach(errs, k, e) {
			evbuffer_add_printf(pg->out, "<li>");
			http_page_esc(pg->out, json_string_value(e));
			evbuffer_add_printf(pg->out, "</li>");
		}
		evbuffer_add_printf(pg->out, "</ul></div>\n");
	}
	evbuffer_add_printf(pg->out, "</header>\n");
}

/* The exposure warnings and notes of rule R. */
static void http_page_warnings(struct http_page *pg, const json_t *r)
{
	const json_t *ws = json_object_get(r, "warnings"), *w;
	size_t k;

	if (!json_array_size(ws))
		return;
	evbuffer_add_printf(pg->out, "<ul class=\"warnings\">");
	json_array_foreach(ws, k, w) {
		const char *level = http_page_str(w, "level");
		bool warning = level && strcmp(level, "warning") == 0;

		evbuffer_add_printf(pg->out, "<li class=\"%s\"><b>%s:</b> ", warning ? "warning" : "note",
				    warning ? "warning" : "note");
		http_page_esc(pg->out, http_page_str(w, "message"));
		evbuffer_add_printf(pg->out, "</li>");
	}
	evbuffer_add_printf(pg->out, "</ul>\n");
}

/* A range's size, and the ports of it that failed (the first few). */
static void http_page_ports(struct http_page *pg, const json_t *r)
{
	const json_t *ports = json_object_get(r, "ports"), *p;
	const char *protos[] = { "tcp", "udp" };
	size_t k, failed = 0;

	if (!json_is_array(ports))
		return;
	evbuffer_add_printf(pg->out, "<p class=\"port\">%zu port%s</p>", json_array_size(ports),
			    json_array_size(ports) == 1 ? "" : "s");
	json_array_foreach(ports, k, p) {
		for (int j = 0; j < 2; j++) {
			const json_t *pp = json_object_get(p, protos[j]);
			const char *state = http_page_str(pp, "state");

			if (!state || strcmp(state, "failed") != 0)
				continue;
			if (++failed <= 5) {
				evbuffer_add_printf(pg->out, "<p class=\"err\">port %" JSON_INTEGER_FORMAT "/%s: ",
						    json_integer_value(json_object_get(p, "port")), protos[j]);
				http_page_esc(pg->out, http_page_str(pp, "error"));
				evbuffer_add_printf(pg->out, "</p>");
			}
		}
	}
	if (failed > 5)
		evbuffer_add_printf(pg->out, "<p class=\"err\">and %zu more failed ports</p>", failed - 5);
	evbuffer_add_printf(pg->out, "\n");
}

/* Rule I's counters for PROTO ("tcp" or "udp"), when it has that protocol. */
static void http_page_proto(struct http_page *pg, size_t i, const json_t *r, const char *proto)
{
	bool tcp = strcmp(proto, "tcp") == 0;
	char attr[32];

	if (!json_is_object(json_object_get(r, proto)))
		return;
	snprintf(attr, sizeof(attr), "data-p=\"%s: \"", proto);
	http_page_live(pg, "p", "err", attr, "msg", "rules.%zu.%s.error", i, proto);
	evbuffer_add_printf(pg->out, "\n<h3>%s</h3>\n<dl>", tcp ? "TCP" : "UDP");
	if (tcp) {
		http_page_stat(pg, "active", "num", "rules.%zu.tcp.active", i);
		http_page_stat(pg, "accepted", "num", "rules.%zu.tcp.accepted", i);
		http_page_stat(pg, "to target", "bytes", "rules.%zu.tcp.bytes_to_target", i);
		http_page_stat(pg, "to client", "bytes", "rules.%zu.tcp.bytes_to_client", i);
		http_page_stat(pg, "connect failed", "num", "rules.%zu.tcp.connect_failed", i);
		http_page_stat(pg, "denied", "num", "rules.%zu.tcp.denied", i);
		http_page_stat(pg, "limited", "num",
			       "rules.%1$zu.tcp.limited.connections+rules.%1$zu.tcp.limited.rate"
			       "+rules.%1$zu.tcp.limited.table_full",
			       i);
	} else {
		http_page_stat(pg, "sessions", "num", "rules.%zu.udp.active", i);
		http_page_stat(pg, "created", "num", "rules.%zu.udp.sessions_created", i);
		http_page_stat(pg, "to target", "bytes", "rules.%zu.udp.bytes_to_target", i);
		http_page_stat(pg, "to client", "bytes", "rules.%zu.udp.bytes_to_client", i);
		http_page_stat(pg, "dropped", "num",
			       "rules.%1$zu.udp.dropped_limit+rules.%1$zu.udp.dropped_error", i);
		http_page_stat(pg, "denied", "num", "rules.%zu.udp.denied", i);
		http_page_stat(pg, "limited", "num",
			       "rules.%1$zu.udp.limited.sessions+rules.%1$zu.udp.limited.datagrams"
			       "+rules.%1$zu.udp.limited.table_full",
			       i);
	}
	evbuffer_add_printf(pg->out, "</dl>\n");
}

/* Whether rule R's targets are worth a section: several, health-checked,
 * or found by name. One plain address is on the rule's route already. */
static bool http_page_targets_shown(const json_t *r)
{
	const json_t *ts = json_object_get(r, "targets"), *t;
	size_t k;

	if (json_array_size(ts) > 1 || json_is_true(json_object_get(r, "health_check")))
		return true;
	json_array_foreach(ts, k, t)
		if (json_object_get(t, "dns"))
			return true;
	return false;
}

static void http_page_targets(struct http_page *pg, size_t i, const json_t *r)
{
	const json_t *ts = json_object_get(r, "targets"), *t;
	size_t k;

	if (!json_is_array(ts) || !http_page_targets_shown(r))
		return;
	evbuffer_add_printf(pg->out, "<div class=\"targets\"><h3>targets <small>");
	http_page_esc(pg->out, http_page_str(r, "balance"));
	if (json_is_true(json_object_get(r, "health_check")))
		evbuffer_add_printf(pg->out, ", health checks");
	evbuffer_add_printf(pg->out, "</small></h3>\n<ul>");
	json_array_foreach(ts, k, t) {
		evbuffer_add_printf(pg->out, "<li>");
		http_page_live(pg, "span", "st", NULL, "state", "rules.%zu.targets.%zu.state", i, k);
		evbuffer_add_printf(pg->out, " <span class=\"addr\">");
		http_page_esc(pg->out, http_page_str(t, "text"));
		evbuffer_add_printf(pg->out, "</span>");
		http_page_port(pg->out, json_object_get(t, "port"));
		if (json_object_get(t, "dns")) {
			evbuffer_add_printf(pg->out, " <span class=\"port\">DNS ");
			http_page_live(pg, "span", "st", NULL, "state", "rules.%zu.targets.%zu.dns.state", i, k);
			evbuffer_add_printf(pg->out, " \xe2\x86\x92 ");
			http_page_live(pg, "span", "addr", NULL, "text", "rules.%zu.targets.%zu.address", i, k);
			evbuffer_add_printf(pg->out, "</span>");
		}
		evbuffer_add_printf(pg->out, "<br>");
		http_page_live(pg, "b", NULL, NULL, "num", "rules.%zu.targets.%zu.active", i, k);
		evbuffer_add_printf(pg->out, " active \xc2\xb7 ");
		http_page_live(pg, "b", NULL, NULL, "num", "rules.%zu.targets.%zu.connections", i, k);
		evbuffer_add_printf(pg->out, " connections \xc2\xb7 ");
		http_page_live(pg, "b", NULL, NULL, "num", "rules.%zu.targets.%zu.failures", i, k);
		evbuffer_add_printf(pg->out, " failures");
		http_page_live(pg, "span", "why", NULL, "msg", "rules.%zu.targets.%zu.reason", i, k);
		if (json_object_get(t, "dns"))
			http_page_live(pg, "span", "why", NULL, "msg", "rules.%zu.targets.%zu.dns.error", i, k);
		evbuffer_add_printf(pg->out, "</li>");
	}
	evbuffer_add_printf(pg->out, "</ul></div>\n");
}

/* Rule I's mapping on the home router, when it asks for one. */
static void http_page_router(struct http_page *pg, size_t i, const json_t *r)
{
	const json_t *router = json_object_get(r, "router");

	if (!json_is_object(router))
		return;
	evbuffer_add_printf(pg->out, "<div class=\"router\"><h3>router <small>");
	http_page_esc(pg->out, http_page_str(router, "method"));
	evbuffer_add_printf(pg->out, ", external port %" JSON_INTEGER_FORMAT " asked",
			    json_integer_value(json_object_get(router, "external_port_asked")));
	evbuffer_add_printf(pg->out, "</small></h3>\n<p>");
	http_page_live(pg, "span", "st", NULL, "state", "rules.%zu.router.state", i);
	evbuffer_add_printf(pg->out, " by ");
	http_page_live(pg, "b", NULL, NULL, "text", "rules.%zu.router.used", i);
	evbuffer_add_printf(pg->out, ": <span class=\"addr\">");
	http_page_live(pg, "span", NULL, NULL, "text", "rules.%zu.router.external_address", i);
	evbuffer_add_printf(pg->out, ":");
	http_page_live(pg, "span", NULL, NULL, "text", "rules.%zu.router.external_port", i);
	evbuffer_add_printf(pg->out, "</span> \xe2\x86\x92 ");
	http_page_live(pg, "span", "addr", NULL, "text", "rules.%zu.router.internal_address", i);
	evbuffer_add_printf(pg->out, "<br>lease until ");
	http_page_live(pg, "b", NULL, NULL, "time", "rules.%zu.router.expires", i);
	evbuffer_add_printf(pg->out, " \xc2\xb7 ");
	http_page_live(pg, "b", NULL, NULL, "num", "rules.%zu.router.renewals", i);
	evbuffer_add_printf(pg->out, " renewals \xc2\xb7 ");
	http_page_live(pg, "b", NULL, NULL, "num", "rules.%zu.router.failures", i);
	evbuffer_add_printf(pg->out, " failures</p>");
	http_page_live(pg, "p", "err", NULL, "msg", "rules.%zu.router.error", i);
	http_page_live(pg, "p", "warn", NULL, "msg", "rules.%zu.router.warning", i);
	evbuffer_add_printf(pg->out, "</div>\n");
}

static void http_page_rule(struct http_page *pg, size_t i, const json_t *r)
{
	const char *state = http_page_str(r, "state");

	/* What the script compares to decide the page must be made anew. */
	evbuffer_add_printf(pg->out, "<article class=\"card\" data-name=\"");
	http_page_esc(pg->out, http_page_str(r, "name"));
	evbuffer_add_printf(pg->out, "\" data-warnings=\"%zu\" data-targets=\"%zu\" data-router=\"%d\" "
				     "data-k=\"rules.%zu.state\" data-f=\"mark\" data-s=\"",
			    json_array_size(json_object_get(r, "warnings")),
			    json_array_size(json_object_get(r, "targets")),
			    json_is_object(json_object_get(r, "router")), i);
	http_page_esc(pg->out, state);
	evbuffer_add_printf(pg->out, "\">\n<div class=\"head\"><h2>");
	http_page_esc(pg->out, http_page_str(r, "name"));
	evbuffer_add_printf(pg->out, "</h2><span class=\"proto\">");
	http_page_esc(pg->out, http_page_str(r, "proto"));
	evbuffer_add_printf(pg->out, "</span>");
	http_page_live(pg, "span", "st", NULL, "state", "rules.%zu.state", i);
	evbuffer_add_printf(pg->out, "</div>\n<p class=\"route\"><span class=\"addr\">");
	http_page_esc(pg->out, http_page_str(r, "listen"));
	evbuffer_add_printf(pg->out, "</span>");
	http_page_port(pg->out, json_object_get(r, "listen_port"));
	evbuffer_add_printf(pg->out, " \xe2\x86\x92 <span class=\"addr\">");
	http_page_esc(pg->out, http_page_str(r, "target"));
	evbuffer_add_printf(pg->out, "</span>");
	http_page_port(pg->out, json_object_get(r, "target_port"));
	if (json_is_string(json_object_get(r, "interface"))) {
		evbuffer_add_printf(pg->out, " <span class=\"port\">on ");
		http_page_esc(pg->out, http_page_str(r, "interface"));
		evbuffer_add_printf(pg->out, "</span>");
	}
	evbuffer_add_printf(pg->out, "</p>\n");
	http_page_ports(pg, r);
	http_page_warnings(pg, r);
	http_page_proto(pg, i, r, "tcp");
	http_page_proto(pg, i, r, "udp");
	http_page_targets(pg, i, r);
	http_page_router(pg, i, r);
	evbuffer_add_printf(pg->out, "</article>\n");
}

void http_page_render(const json_t *doc, const char *nonce, struct evbuffer *out)
{
	struct http_page pg = { .doc = doc, .out = out };
	const json_t *rules = json_object_get(doc, "rules"), *r;
	size_t i;

	evbuffer_add_printf(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
				 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
				 "<title>portfwd status</title>\n"
				 /* Without script, the browser asks for the page again. */
				 "<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>\n"
				 "<style nonce=\"");
	http_page_esc(out, nonce);
	evbuffer_add_printf(out, "\">\n%s</style>\n</head>\n", http_page_style);
	evbuffer_add_printf(out, "<body data-generation=\"%" JSON_INTEGER_FORMAT "\" data-refused=\"%" JSON_INTEGER_FORMAT
				 "\" data-refreshes=\"0\">\n",
			    json_integer_value(json_object_get(doc, "generation")),
			    json_integer_value(json_object_get(json_object_get(doc, "reload"), "failed")));
	http_page_daemon(&pg);
	evbuffer_add_printf(out, "<main>\n");
	json_array_foreach(rules, i, r)
		http_page_rule(&pg, i, r);
	if (!json_array_size(rules))
		evbuffer_add_printf(out, "<p>No rules: the configuration has none.</p>\n");
	evbuffer_add_printf(out, "</main>\n<footer>Refreshed every 5 seconds from "
				 "<a href=\"status.json\">status.json</a> \xc2\xb7 "
				 "<a href=\"metrics\">metrics</a> \xc2\xb7 <a href=\"health\">health</a></footer>\n"
				 "<script nonce=\"");
	http_page_esc(out, nonce);
	evbuffer_add_printf(out, "\">\n%s</script>\n</body>\n</html>\n", http_page_script);
}
