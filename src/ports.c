#include "ports.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "localaddr.h"
#include "privs.h"
#include "rule.h"
#include "sockets.h"
#include "sysports.h"

/* ---- arguments ---- */

/* LEN characters of S as a port: digits only, 1-65535. */
static int ports_parse_port(const char *s, size_t len, unsigned *port, char *err, size_t errlen)
{
	unsigned long v = 0;

	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i])) {
			snprintf(err, errlen, "\"%.*s\" is not a port number", (int)(len > 32 ? 32 : len), s);
			return -1;
		}
		if (v <= 65535)
			v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (len == 0) {
		snprintf(err, errlen, "a port number is missing");
		return -1;
	}
	if (v == 0 || v > 65535) {
		snprintf(err, errlen, "port %.*s%s is out of range: ports are 1-65535",
			 (int)(len > 20 ? 20 : len), s, len > 20 ? "..." : "");
		return -1;
	}
	*port = (unsigned)v;
	return 0;
}

static bool ports_all_digits(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return len > 0;
}

int ports_parse_spec(const char *text, bool range_ok, struct ports_spec *spec, char *err,
		     size_t errlen)
{
	const char *slash = strchr(text, '/'), *dash;
	size_t len = slash ? (size_t)(slash - text) : strlen(text);
	unsigned tcp, udp;

	memset(spec, 0, sizeof(*spec));
	snprintf(spec->text, sizeof(spec->text), "%s", text);
	spec->proto = RULE_PROTO_BOTH;
	if (slash) {
		if (strcmp(slash + 1, "tcp") == 0)
			spec->proto = RULE_PROTO_TCP;
		else if (strcmp(slash + 1, "udp") == 0)
			spec->proto = RULE_PROTO_UDP;
		else {
			snprintf(err, errlen, "\"%.32s\": the protocol after / is tcp or udp", slash + 1);
			return -1;
		}
	}
	if (len == 0) {
		snprintf(err, errlen, "a port, a range or a service name is missing");
		return -1;
	}
	dash = memchr(text, '-', len);
	if (ports_all_digits(text, len)) {
		if (ports_parse_port(text, len, &spec->lo[0], err, errlen) < 0)
			return -1;
		spec->hi[0] = spec->lo[0];
	} else if (dash && ports_all_digits(text, (size_t)(dash - text)) &&
		   ports_all_digits(dash + 1, len - (size_t)(dash - text) - 1)) {
		if (!range_ok) {
			snprintf(err, errlen, "\"%.32s\" is a range: give one port", text);
			return -1;
		}
		if (ports_parse_port(text, (size_t)(dash - text), &spec->lo[0], err, errlen) < 0 ||
		    ports_parse_port(dash + 1, len - (size_t)(dash - text) - 1, &spec->hi[0], err,
				     errlen) < 0)
			return -1;
		if (spec->lo[0] > spec->hi[0]) {
			snprintf(err, errlen, "range %u-%u runs backwards (the low port first)",
				 spec->lo[0], spec->hi[0]);
			return -1;
		}
	} else {
		char best[PORTINFO_NAME_MAX];

		for (size_t i = 0; i < len; i++)
			if (!isalnum((unsigned char)text[i]) && !strchr("-_.+", text[i])) {
				snprintf(err, errlen, "\"%.32s\" is not a port, a range (8000-8100) or a service name",
					 text);
				return -1;
			}
		if (len >= sizeof(spec->name)) {
			snprintf(err, errlen, "\"%.32s...\" is too long for a service name", text);
			return -1;
		}
		memcpy(spec->name, text, len);
		spec->name[len] = '\0';
		portinfo_service_port(spec->name, spec->proto, &tcp, &udp);
		if (!(spec->proto & RULE_PROTO_TCP))
			tcp = 0;
		if (!(spec->proto & RULE_PROTO_UDP))
			udp = 0;
		if (!tcp && !udp) {
			unsigned other_tcp, other_udp;

			portinfo_service_port(spec->name, RULE_PROTO_BOTH, &other_tcp, &other_udp);
			if (other_tcp || other_udp) {
				snprintf(err, errlen, "\"%s\" is a %s service (port %u), not %s", spec->name,
					 other_tcp ? "TCP" : "UDP", other_tcp ? other_tcp : other_udp,
					 other_tcp ? "UDP" : "TCP");
				return -1;
			}
			portinfo_service_suggest(spec->name, spec->proto, best, sizeof(best));
			snprintf(err, errlen, "unknown service name \"%s\"%s%s%s (names come from /etc/services and portfwd's own table)",
				 spec->name, best[0] ? " (did you mean \"" : "", best,
				 best[0] ? "\"?)" : "");
			return -1;
		}
		spec->proto = (tcp ? RULE_PROTO_TCP : 0) | (udp ? RULE_PROTO_UDP : 0);
		spec->lo[0] = spec->hi[0] = tcp;
		spec->lo[1] = spec->hi[1] = udp;
		return 0;
	}
	spec->lo[1] = spec->lo[0];
	spec->hi[1] = spec->hi[0];
	return 0;
}

bool ports_spec_match(const struct ports_spec *spec, unsigned proto, unsigned port)
{
	int i = proto == RULE_PROTO_TCP ? 0 : 1;

	return (spec->proto & proto) && spec->lo[i] && port >= spec->lo[i] && port <= spec->hi[i];
}

/* The ports a spec covers, for one read of the tables: the span of both. */
static void ports_spec_filter(const struct ports_spec *spec, struct sockets_filter *f)
{
	f->proto = spec->proto;
	f->lo = 65535;
	f->hi = 0;
	for (int i = 0; i < 2; i++)
		if ((spec->proto & (i ? RULE_PROTO_UDP : RULE_PROTO_TCP)) && spec->lo[i]) {
			if (spec->lo[i] < f->lo)
				f->lo = spec->lo[i];
			if (spec->hi[i] > f->hi)
				f->hi = spec->hi[i];
		}
}

/* "8080" or "8000-8100" with "/tcp" or "/udp" when it covers one protocol. */
static const char *ports_spec_name(const struct ports_spec *spec, char *buf, size_t len)
{
	int i = spec->proto == RULE_PROTO_UDP ? 1 : 0;
	const char *p = spec->proto == RULE_PROTO_TCP ? "/tcp" : spec->proto == RULE_PROTO_UDP ? "/udp" : "";

	if (spec->lo[i] == spec->hi[i])
		snprintf(buf, len, "%u%s", spec->lo[i], p);
	else
		snprintf(buf, len, "%u-%u%s", spec->lo[i], spec->hi[i], p);
	return buf;
}

/* ---- the daemon's rules ---- */

struct ports_rule {
	char name[RULE_NAME_MAX + 1];
	char state[16];
	unsigned proto;
	struct sockaddr_storage listen, target;
};

struct ports_daemon {
	bool up;
	char why[300];  /* when not up */
	long pid;
	struct ports_rule *r;
	size_t n;
	struct localaddr la;
};

/* Asks the daemon for its rules (status --json). Without one, D->why says
 * why not. */
static void ports_daemon_load(const struct ports_ctl *ctl, struct ports_daemon *d)
{
	char err[256] = "", *body = NULL;
	json_error_t jerr;
	json_t *doc, *rules, *r;
	size_t i;
	int rc;

	memset(d, 0, sizeof(*d));
	rc = ctl && ctl->request ? ctl->request(ctl->socket, "status --json", &body, err, sizeof(err)) : -1;
	if (rc != 0) {
		const char *why = err[0] ? err : "not asked";
		char prefix[128];

		/* "cannot connect to PATH: " says again what the sentence says. */
		snprintf(prefix, sizeof(prefix), "cannot connect to %s: ", ctl ? ctl->socket : "");
		if (strncmp(why, prefix, strlen(prefix)) == 0)
			why += strlen(prefix);
		/* Without its hint in brackets, which is for daemon commands. */
		snprintf(d->why, sizeof(d->why), "%s portfwd daemon at %s (%.*s)",
			 rc > 0 ? "no answer from the" : "no", ctl ? ctl->socket : "?",
			 (int)(strstr(why, " (") ? (size_t)(strstr(why, " (") - why) : strlen(why)), why);
		free(body);
		return;
	}
	doc = json_loads(body ? body : "", 0, &jerr);
	free(body);
	if (!doc || !json_is_object(doc)) {
		snprintf(d->why, sizeof(d->why), "the portfwd daemon at %s sent no status (%s)",
			 ctl->socket, doc ? "not an object" : jerr.text);
		json_decref(doc);
		return;
	}
	d->up = true;
	d->pid = (long)json_integer_value(json_object_get(doc, "pid"));
	rules = json_object_get(doc, "rules");
	d->r = calloc(json_array_size(rules) + 1, sizeof(*d->r));
	json_array_foreach(rules, i, r) {
		struct ports_rule *pr = &d->r[d->n];
		const char *name = json_string_value(json_object_get(r, "name"));
		const char *proto = json_string_value(json_object_get(r, "proto"));
		const char *listen = json_string_value(json_object_get(r, "listen"));
		const char *target = json_string_value(json_object_get(r, "target"));
		const char *state = json_string_value(json_object_get(r, "state"));
		socklen_t len;
		char e[128];

		if (!d->r || !name || !proto || !listen || !target)
			continue;
		snprintf(pr->name, sizeof(pr->name), "%s", name);
		snprintf(pr->state, sizeof(pr->state), "%s", state ? state : "");
		pr->proto = rule_proto_parse(proto);
		if (rule_parse_addr(listen, &pr->listen, &len, e, sizeof(e)) < 0)
			memset(&pr->listen, 0, sizeof(pr->listen));
		if (rule_parse_addr(target, &pr->target, &len, e, sizeof(e)) < 0)
			memset(&pr->target, 0, sizeof(pr->target));
		d->n++;
	}
	json_decref(doc);
}

static void ports_daemon_free(struct ports_daemon *d)
{
	free(d->r);
	localaddr_free(&d->la);
	memset(d, 0, sizeof(*d));
}

/* The socket's address and port as a sockaddr. */
static void ports_entry_sa(const struct sockets_entry *s, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (s->family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, &s->addr, 4);
		in->sin_port = htons((uint16_t)s->port);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_addr = s->addr;
		in6->sin6_port = htons((uint16_t)s->port);
	}
}

enum ports_role { PORTS_ROLE_NONE, PORTS_ROLE_LISTEN, PORTS_ROLE_TARGET };

/*
 * What rule R is to socket S: its listener (same protocol, address and
 * port), or its target (same protocol and port, the target an address of
 * this host that S answers on: the same one, or S on the wildcard).
 */
static enum ports_role ports_rule_role(struct ports_daemon *d, const struct ports_rule *r,
				       const struct sockets_entry *s)
{
	struct sockaddr_storage sa, dest;

	if (!(r->proto & s->proto))
		return PORTS_ROLE_NONE;
	ports_entry_sa(s, &sa);
	if (r->listen.ss_family && rule_addr_equal((struct sockaddr *)&r->listen, (struct sockaddr *)&sa))
		return PORTS_ROLE_LISTEN;
	if (!r->target.ss_family || rule_addr_port((struct sockaddr *)&r->target) != s->port)
		return PORTS_ROLE_NONE;
	localaddr_destination((struct sockaddr *)&r->target, &dest);
	if (rule_addr_equal((struct sockaddr *)&dest, (struct sockaddr *)&sa))
		return PORTS_ROLE_TARGET;
	/* A wildcard socket takes its family's connections (an IPv6 one
	 * IPv4's too unless it is IPV6_V6ONLY, which the tables do not say). */
	if (sockets_addr_wildcard(s) && (dest.ss_family == s->family || s->family == AF_INET6) &&
	    localaddr_is_local(&d->la, (struct sockaddr *)&dest))
		return PORTS_ROLE_TARGET;
	return PORTS_ROLE_NONE;
}

/* The rules of S as text ("web", "web (target)", joined by ",") and JSON. */
static void ports_rules_of(struct ports_daemon *d, const struct sockets_entry *s, char *buf,
			   size_t len, json_t *arr)
{
	size_t used = 0;

	if (len)
		buf[0] = '\0';
	for (size_t i = 0; i < d->n; i++) {
		enum ports_role role = ports_rule_role(d, &d->r[i], s);
		int w;

		if (role == PORTS_ROLE_NONE)
			continue;
		if (arr)
			json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "name", d->r[i].name, "role",
							     role == PORTS_ROLE_LISTEN ? "listen" : "target",
							     "state", d->r[i].state));
		w = snprintf(buf + used, len - used, "%s%s%s", used ? "," : "", d->r[i].name,
			     role == PORTS_ROLE_TARGET ? "(target)" : "");
		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
	}
}

/* ---- users ---- */

/* The name of UID, from a small cache (sockets mostly share a few owners). */
static const char *ports_user(uid_t uid)
{
	static struct {
		uid_t uid;
		char name[64];
	} cache[32];
	static unsigned used, next;
	struct passwd pw, *res = NULL;
	char buf[4096];
	unsigned slot;

	for (unsigned i = 0; i < used; i++)
		if (cache[i].uid == uid)
			return cache[i].name;
	slot = used < 32 ? used++ : next++ % 32;
	cache[slot].uid = uid;
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res)
		snprintf(cache[slot].name, sizeof(cache[slot].name), "%s", res->pw_name);
	else
		snprintf(cache[slot].name, sizeof(cache[slot].name), "%u", (unsigned)uid);
	return cache[slot].name;
}

static const char *ports_proto_name(unsigned proto)
{
	return proto == RULE_PROTO_TCP ? "tcp" : "udp";
}

/* ---- reading the sockets ---- */

static int ports_read(const struct sockets_filter *f, struct sockets_list *l, bool join)
{
	if (sockets_read(f, l) < 0) {
		fprintf(stderr, "portfwdctl: cannot read this machine's socket tables (sock_diag and /proc/net): %s\n",
			strerror(errno));
		return -1;
	}
	if (join && sockets_join(l) < 0)
		fprintf(stderr, "portfwdctl: cannot read /proc: %s; processes are not shown\n",
			strerror(errno));
	return 0;
}

/* The note on sockets without a visible process, or NULL. */
static const char *ports_unseen_note(size_t unseen, char *buf, size_t len)
{
	if (!unseen)
		return NULL;
	if (geteuid() != 0)
		snprintf(buf, len, "%zu socket%s no process: other users' processes are hidden from you; root sees every process (sudo portfwdctl ...)",
			 unseen, unseen == 1 ? " shows" : "s show");
	else
		snprintf(buf, len, "%zu socket%s no process: held by the kernel or by a process in another PID namespace",
			 unseen, unseen == 1 ? " shows" : "s show");
	return buf;
}

static json_t *ports_entry_json(struct ports_daemon *d, const struct sockets_entry *s)
{
	char addr[64], service[PORTINFO_NAME_MAX], names[256];
	json_t *rules = json_array();
	json_t *o;

	sockets_addr_text(s, addr, sizeof(addr));
	ports_rules_of(d, s, names, sizeof(names), rules);
	portinfo_service_name(s->port, s->proto, service, sizeof(service));
	o = json_pack("{s:s, s:s, s:i, s:s, s:s?, s:I, s:s, s:o}", "proto", ports_proto_name(s->proto),
		      "address", addr, "port", (int)s->port, "class", portinfo_range(s->port), "service",
		      service[0] ? service : NULL, "uid", (json_int_t)s->uid, "user", ports_user(s->uid),
		      "rules", rules);
	json_object_set_new(o, "pid", s->pid ? json_integer(s->pid) : json_null());
	json_object_set_new(o, "process", s->pid ? json_string(s->comm) : json_null());
	json_object_set_new(o, "processes", json_integer(s->nprocs));
	json_object_set_new(o, "inode", json_integer((json_int_t)s->inode));
	return o;
}

static void ports_json_print(json_t *doc)
{
	json_dumpf(doc, stdout, JSON_INDENT(2));
	putchar('\n');
	json_decref(doc);
}

/* ---- ports ---- */

/* True if A and B differ in their inode only: one line of ports' table. */
static bool ports_alike(const struct sockets_entry *a, const struct sockets_entry *b)
{
	return a->proto == b->proto && a->family == b->family && a->port == b->port &&
	       memcmp(&a->addr, &b->addr, sizeof(a->addr)) == 0 && a->uid == b->uid &&
	       a->pid == b->pid && a->nprocs == b->nprocs && strcmp(a->comm, b->comm) == 0;
}

static int ports_list(int argc, char **argv, bool json, const struct ports_ctl *ctl)
{
	struct ports_spec spec;
	struct sockets_filter f = { .proto = RULE_PROTO_BOTH, .lo = 1, .hi = 65535 };
	struct sockets_list l;
	struct ports_daemon d;
	const char *filter = NULL;
	unsigned want = 0;
	size_t shown = 0, unseen = 0;
	char err[300], note[256];
	json_t *arr = NULL;
	int addrw = 7;

	memset(&spec, 0, sizeof(spec));
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--tcp") == 0)
			want |= RULE_PROTO_TCP;
		else if (strcmp(argv[i], "--udp") == 0)
			want |= RULE_PROTO_UDP;
		else if (filter) {
			fprintf(stderr, "portfwdctl: ports: one PORT, SERVICE or RANGE at most (\"%s\" and \"%s\")\n",
				filter, argv[i]);
			return PORTS_EXIT_USAGE;
		} else
			filter = argv[i];
	}
	if (!want)
		want = RULE_PROTO_BOTH;
	if (filter) {
		if (ports_parse_spec(filter, true, &spec, err, sizeof(err)) < 0) {
			fprintf(stderr, "portfwdctl: ports: %s\n", err);
			return PORTS_EXIT_USAGE;
		}
		spec.proto &= want;
		if (!spec.proto) {
			fprintf(stderr, "portfwdctl: ports: %s is not a %s port\n", filter,
				want == RULE_PROTO_TCP ? "TCP" : "UDP");
			return PORTS_EXIT_USAGE;
		}
		ports_spec_filter(&spec, &f);
	} else {
		spec.proto = want;
		spec.lo[0] = spec.lo[1] = 1;
		spec.hi[0] = spec.hi[1] = 65535;
		f.proto = want;
	}
	if (ports_read(&f, &l, true) < 0)
		return PORTS_EXIT_NO;
	ports_daemon_load(ctl, &d);
	if (json)
		arr = json_array();
	for (size_t i = 0; i < l.n; i++) {
		char addr[64];
		int w;

		if (!ports_spec_match(&spec, l.e[i].proto, l.e[i].port))
			continue;
		w = (int)strlen(sockets_addr_text(&l.e[i], addr, sizeof(addr)));
		if (w > addrw)
			addrw = w;
	}
	if (!json)
		printf("%-5s %-*s %5s %-10s %-16s %7s %-16s %-12s %s\n", "PROTO", addrw, "ADDRESS", "PORT",
		       "CLASS", "SERVICE", "PID", "PROCESS", "USER", "RULE");
	for (size_t i = 0; i < l.n; i++) {
		const struct sockets_entry *s = &l.e[i];
		char addr[64], service[PORTINFO_NAME_MAX], rules[256], pid[16], proc[SOCKETS_COMM_MAX + 16];
		unsigned same = 1;

		if (!ports_spec_match(&spec, s->proto, s->port))
			continue;
		shown++;
		if (!s->pid)
			unseen++;
		if (json) {
			json_array_append_new(arr, ports_entry_json(&d, s));
			continue;
		}
		/* Sockets alike but for their inode (SO_REUSEPORT: one per
		 * worker of portfwd, nginx, ...) are one line, with their number;
		 * the list is sorted, so they are neighbours. */
		while (i + 1 < l.n && ports_alike(s, &l.e[i + 1])) {
			i++;
			same++;
			shown++;
			if (!l.e[i].pid)
				unseen++;
		}
		sockets_addr_text(s, addr, sizeof(addr));
		portinfo_service_name(s->port, s->proto, service, sizeof(service));
		ports_rules_of(&d, s, rules, sizeof(rules), NULL);
		if (same > 1) {
			size_t used = strlen(rules);

			snprintf(rules + used, sizeof(rules) - used, "%s(%u sockets)", used ? " " : "", same);
		}
		snprintf(pid, sizeof(pid), s->pid ? "%ld" : "-", (long)s->pid);
		if (s->nprocs > 1)
			snprintf(proc, sizeof(proc), "%s(+%u)", s->comm, s->nprocs - 1);
		else
			snprintf(proc, sizeof(proc), "%s", s->pid ? s->comm : "-");
		printf("%-5s %-*s %5u %-10s %-16s %7s %-16s %-12s %s\n", ports_proto_name(s->proto),
		       addrw, addr, s->port, portinfo_range(s->port), service[0] ? service : "-", pid,
		       proc, ports_user(s->uid), rules);
	}
	ports_unseen_note(unseen, note, sizeof(note));
	if (json) {
		json_t *doc = json_pack("{s:o, s:s, s:b}", "sockets", arr, "source",
					l.from_proc ? "/proc/net" : "sock_diag", "daemon", d.up);
		json_t *notes = json_array();

		if (d.up)
			json_object_set_new(doc, "daemon_pid", json_integer(d.pid));
		else
			json_array_append_new(notes, json_sprintf("%s: rule column empty", d.why));
		if (unseen)
			json_array_append_new(notes, json_string(note));
		if (filter && !shown)
			json_array_append_new(notes, json_sprintf("nothing listens on %s", filter));
		json_object_set_new(doc, "notes", notes);
		ports_json_print(doc);
	} else {
		fflush(stdout);
		if (!d.up)
			fprintf(stderr, "%s: rule column empty\n", d.why);
		if (unseen)
			fprintf(stderr, "%s\n", note);
		if (filter && !shown)
			fprintf(stderr, "nothing listens on %s\n", filter);
	}
	ports_daemon_free(&d);
	sockets_free(&l);
	return filter && !shown ? PORTS_EXIT_NO : PORTS_EXIT_OK;
}

/* ---- who ---- */

/* "pid 12 (nginx, user www-data)" or "a process of uid 33 (www-data) that you cannot see". */
static const char *ports_holder_text(const struct sockets_entry *s, char *buf, size_t len)
{
	if (s->pid)
		snprintf(buf, len, "pid %ld (%s, user %s)%s", (long)s->pid, s->comm, ports_user(s->uid),
			 s->nprocs > 1 ? " and other processes" : "");
	else if (geteuid() != 0)
		snprintf(buf, len, "a process of uid %u (%s) that you cannot see (root can)",
			 (unsigned)s->uid, ports_user(s->uid));
	else
		snprintf(buf, len, "no visible process (uid %u: the kernel, or another PID namespace)",
			 (unsigned)s->uid);
	return buf;
}

static int ports_who(int argc, char **argv, bool json, const struct ports_ctl *ctl)
{
	struct ports_spec spec;
	struct sockets_filter f;
	struct sockets_list l;
	struct ports_daemon d;
	struct sysports k;
	char err[300], desc[PORTINFO_NAME_MAX + 32], name[PORTINFO_NAME_MAX];
	json_t *held = json ? json_array() : NULL;
	bool any = false;
	unsigned port;

	if (argc != 1 || argv[0][0] == '-') {
		fprintf(stderr, "portfwdctl: usage: portfwdctl who %s [--json]\n", "PORT[/tcp|/udp]");
		json_decref(held);
		return PORTS_EXIT_USAGE;
	}
	if (ports_parse_spec(argv[0], false, &spec, err, sizeof(err)) < 0) {
		fprintf(stderr, "portfwdctl: who: %s\n", err);
		json_decref(held);
		return PORTS_EXIT_USAGE;
	}
	ports_spec_filter(&spec, &f);
	if (ports_read(&f, &l, true) < 0) {
		json_decref(held);
		return PORTS_EXIT_USAGE;
	}
	ports_daemon_load(ctl, &d);
	sysports_read(&k);
	for (unsigned p = RULE_PROTO_TCP; p <= RULE_PROTO_UDP; p <<= 1) {
		char line[1024] = "", holder[200], addr[64], rules[256];
		size_t used = 0, naddr = 0;
		const struct sockets_entry *first = NULL;

		if (!(spec.proto & p))
			continue;
		port = spec.lo[p == RULE_PROTO_TCP ? 0 : 1];
		for (size_t i = 0; i < l.n; i++) {
			const struct sockets_entry *s = &l.e[i];

			if (s->proto != p || s->port != port)
				continue;
			if (held)
				json_array_append_new(held, ports_entry_json(&d, s));
			if (!first || (!first->pid && s->pid))
				first = s;
			sockets_addr_text(s, addr, sizeof(addr));
			if (!strstr(line, addr) && used < sizeof(line) - 80)
				used += (size_t)snprintf(line + used, sizeof(line) - used, "%s%s",
							 naddr++ ? ", " : "", addr);
		}
		if (!first)
			continue;
		any = true;
		if (json)
			continue;
		ports_rules_of(&d, first, rules, sizeof(rules), NULL);
		printf("%u/%s is held by %s on %s; %s%s%s\n", port, ports_proto_name(p),
		       ports_holder_text(first, holder, sizeof(holder)), line,
		       portinfo_describe(port, p, desc, sizeof(desc)), rules[0] ? "; portfwd rule " : "",
		       rules);
	}
	port = spec.lo[spec.proto & RULE_PROTO_TCP ? 0 : 1];
	{
		bool priv = sysports_port_privileged(&k, port);
		/* Reserved ports (ip_local_reserved_ports) are not handed out. */
		unsigned first;
		bool eph = sysports_ephemeral_overlap(&k, port, port, &first) > 0;
		char privtext[160], ephtext[160];

		if (!priv)
			snprintf(privtext, sizeof(privtext), "binding it needs no privilege");
		else
			snprintf(privtext, sizeof(privtext),
				 "binding it needs root or CAP_NET_BIND_SERVICE (ports below %u)%s",
				 k.unpriv_start, privs_can_bind_low() ? ", which you have" : ", which you lack");
		if (!k.have_range)
			snprintf(ephtext, sizeof(ephtext), "the ephemeral range is unknown (no /proc/sys/net/ipv4/ip_local_port_range)");
		else if (eph)
			snprintf(ephtext, sizeof(ephtext), "inside the ephemeral range %u-%u (outgoing connections may take it)",
				 k.eph_lo, k.eph_hi);
		else
			snprintf(ephtext, sizeof(ephtext), "outside the ephemeral range %u-%u%s", k.eph_lo,
				 k.eph_hi, sysports_reserved(&k, port) ? " (reserved)" : "");
		if (json) {
			json_t *doc = json_pack("{s:i, s:s, s:b, s:o, s:s, s:s?, s:b, s:b, s:[ii], s:i, s:b}",
						"port", (int)port, "proto", rule_proto_name(spec.proto),
						"held", any, "holders", held, "class",
						portinfo_range(port), "service",
						portinfo_service_name(port, spec.proto, name, sizeof(name)) ? name : NULL,
						"needs_privilege", priv, "ephemeral", eph,
						"ephemeral_range", (int)k.eph_lo, (int)k.eph_hi,
						"unprivileged_port_start", (int)k.unpriv_start, "daemon", d.up);

			if (!d.up)
				json_object_set_new(doc, "notes", json_pack("[s]", d.why));
			ports_json_print(doc);
		} else if (!any) {
			printf("%u/%s is free; %s; %s; %s\n", port,
			       spec.proto == RULE_PROTO_BOTH ? "tcp+udp" : ports_proto_name(spec.proto),
			       portinfo_describe(port, spec.proto, desc, sizeof(desc)), privtext, ephtext);
		}
	}
	if (!json && any && !d.up)
		fprintf(stderr, "%s: portfwd rules not shown\n", d.why);
	ports_daemon_free(&d);
	sockets_free(&l);
	return any ? PORTS_EXIT_OK : PORTS_EXIT_NO;
}

/* ---- free ---- */

/* What free says, as text lines or into the JSON document's list. */
struct ports_report {
	json_t *lines; /* NULL: text */
};

static void ports_say(struct ports_report *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void ports_say(struct ports_report *r, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (r->lines)
		json_array_append_new(r->lines, json_string(buf));
	else {
		printf("%s\n", buf);
		fflush(stdout);
	}
}

/* Asks QUESTION on the terminal; --yes answers for the caller. */
static bool ports_confirm(bool yes, const char *question)
{
	char answer[16];

	if (yes)
		return true;
	if (!isatty(STDIN_FILENO)) {
		fprintf(stderr, "portfwdctl: free: no terminal to ask \"%s\" on: add --yes to do it\n",
			question);
		return false;
	}
	fprintf(stderr, "%s [y/N] ", question);
	fflush(stderr);
	if (!fgets(answer, sizeof(answer), stdin))
		return false;
	return answer[0] == 'y' || answer[0] == 'Y';
}

/* How many of L's sockets SPEC covers. */
static size_t ports_count(const struct ports_spec *spec, const struct sockets_list *l)
{
	size_t n = 0;

	for (size_t i = 0; i < l->n; i++)
		n += ports_spec_match(spec, l->e[i].proto, l->e[i].port);
	return n;
}

/* True once nothing holds SPEC's port, reading the tables every 50 ms for
 * SECONDS at most. */
static bool ports_wait_free(const struct ports_spec *spec, const struct sockets_filter *f,
			    double seconds)
{
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct sockets_list l;
		bool free_now;

		if (sockets_read(f, &l) < 0)
			return false;
		free_now = ports_count(spec, &l) == 0;
		sockets_free(&l);
		if (free_now)
			return true;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9 >= seconds)
			return false;
		poll(NULL, 0, 50);
	}
}

#define PORTS_KILL_WAIT 5.0
#define PORTS_MAX_PLAN 16

static int ports_free(int argc, char **argv, bool json, const struct ports_ctl *ctl)
{
	struct ports_report rep = { json ? json_array() : NULL };
	struct ports_spec spec;
	struct sockets_filter f;
	struct sockets_list l;
	struct ports_daemon d;
	const char *arg = NULL;
	bool kill_opt = false, force = false, yes = false, refused = false, now_free;
	size_t disable[PORTS_MAX_PLAN], ndisable = 0;
	pid_t pids[PORTS_MAX_PLAN];
	size_t npids = 0;
	char err[300], what[64], holder[200], question[600];
	int rc = PORTS_EXIT_NO;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--kill") == 0)
			kill_opt = true;
		else if (strcmp(argv[i], "--force") == 0)
			force = true;
		else if (strcmp(argv[i], "--yes") == 0)
			yes = true;
		else if (arg) {
			fprintf(stderr, "portfwdctl: free: one port at a time (\"%s\" and \"%s\")\n", arg,
				argv[i]);
			json_decref(rep.lines);
			return PORTS_EXIT_USAGE;
		} else
			arg = argv[i];
	}
	if (!arg || (force && !kill_opt)) {
		fprintf(stderr, "portfwdctl: %s\nusage: portfwdctl free PORT[/tcp|/udp] [--kill [--force]] [--yes] [--json]\n",
			!arg ? "free: a port is required" : "free: --force goes with --kill (SIGKILL after SIGTERM)");
		json_decref(rep.lines);
		return PORTS_EXIT_USAGE;
	}
	if (ports_parse_spec(arg, false, &spec, err, sizeof(err)) < 0) {
		fprintf(stderr, "portfwdctl: free: %s\n", err);
		json_decref(rep.lines);
		return PORTS_EXIT_USAGE;
	}
	ports_spec_filter(&spec, &f);
	ports_spec_name(&spec, what, sizeof(what));
	if (ports_read(&f, &l, true) < 0) {
		json_decref(rep.lines);
		return PORTS_EXIT_NO;
	}
	ports_daemon_load(ctl, &d);

	/* The plan: the rules listening there, then the other holders. */
	for (size_t i = 0; i < d.n; i++)
		for (size_t j = 0; j < l.n; j++)
			if (ports_spec_match(&spec, l.e[j].proto, l.e[j].port) &&
			    ports_rule_role(&d, &d.r[i], &l.e[j]) == PORTS_ROLE_LISTEN &&
			    ndisable < PORTS_MAX_PLAN) {
				disable[ndisable++] = i;
				break;
			}
	for (size_t j = 0; j < l.n; j++) {
		const struct sockets_entry *s = &l.e[j];
		bool ruled = false, seen = false;
		char addr[64];

		if (!ports_spec_match(&spec, s->proto, s->port))
			continue;
		for (size_t i = 0; i < ndisable; i++)
			if (ports_rule_role(&d, &d.r[disable[i]], s) == PORTS_ROLE_LISTEN)
				ruled = true;
		if (ruled)
			continue;
		sockets_addr_text(s, addr, sizeof(addr));
		ports_holder_text(s, holder, sizeof(holder));
		if (!s->pid) {
			ports_say(&rep, "refused: %u/%s on %s is held by %s", s->port,
				  ports_proto_name(s->proto), addr, holder);
			refused = true;
			continue;
		}
		if (s->pid == 1) {
			ports_say(&rep, "refused: %u/%s is held by pid 1 (%s), the init system: stop the service that owns the socket instead",
				  s->port, ports_proto_name(s->proto), s->comm);
			refused = true;
			continue;
		}
		if ((d.up && s->pid == d.pid) || strcmp(s->comm, "portfwd") == 0) {
			ports_say(&rep, "refused: %u/%s is held by the portfwd daemon (pid %ld) itself: `portfwdctl disable RULE` frees a rule's port, `systemctl stop portfwd` stops the daemon",
				  s->port, ports_proto_name(s->proto), (long)s->pid);
			refused = true;
			continue;
		}
		if (kill(s->pid, 0) < 0 && errno == EPERM) {
			ports_say(&rep, "refused: %u/%s is held by %s, which you may not signal (run as root or as %s)",
				  s->port, ports_proto_name(s->proto), holder, ports_user(s->uid));
			refused = true;
			continue;
		}
		for (size_t i = 0; i < npids; i++)
			if (pids[i] == s->pid)
				seen = true;
		if (!seen && npids < PORTS_MAX_PLAN)
			pids[npids++] = s->pid;
		if (!seen && !kill_opt) {
			ports_say(&rep, "%u/%s is held by %s on %s: --kill sends it SIGTERM",
				  s->port, ports_proto_name(s->proto), holder, addr);
			refused = true;
		}
	}
	if (ports_count(&spec, &l) == 0) {
		ports_say(&rep, "%s is free: nothing holds it", what);
		rc = PORTS_EXIT_OK;
		goto out;
	}
	if (refused) {
		ports_say(&rep, "nothing done: %s is still held", what);
		goto out;
	}

	/* One question for all of it. */
	{
		size_t used = (size_t)snprintf(question, sizeof(question), "Free %s:", what);

		for (size_t i = 0; i < ndisable && used < sizeof(question); i++)
			used += (size_t)snprintf(question + used, sizeof(question) - used, " disable rule %s;",
						 d.r[disable[i]].name);
		for (size_t i = 0; i < npids && used < sizeof(question); i++)
			used += (size_t)snprintf(question + used, sizeof(question) - used,
						 " SIGTERM%s pid %ld;", force ? " (then SIGKILL)" : "",
						 (long)pids[i]);
		if (used < sizeof(question))
			question[used - 1] = '?';
	}
	if (!ports_confirm(yes, question)) {
		ports_say(&rep, "nothing done: not confirmed");
		goto out;
	}
	for (size_t i = 0; i < ndisable; i++) {
		char req[RULE_NAME_MAX + 16], *body = NULL;
		int r;

		snprintf(req, sizeof(req), "disable %s", d.r[disable[i]].name);
		r = ctl->request(ctl->socket, req, &body, err, sizeof(err));
		free(body);
		if (r == 0)
			ports_say(&rep, "disabled portfwd rule %s (`portfwdctl enable %s` listens again)",
				  d.r[disable[i]].name, d.r[disable[i]].name);
		else
			ports_say(&rep, "the daemon refused to disable rule %s: %s", d.r[disable[i]].name,
				  err);
	}
	for (size_t i = 0; i < npids; i++) {
		if (kill(pids[i], SIGTERM) == 0)
			ports_say(&rep, "sent SIGTERM to pid %ld", (long)pids[i]);
		else
			ports_say(&rep, "cannot signal pid %ld: %s", (long)pids[i], strerror(errno));
	}
	now_free = ports_wait_free(&spec, &f, PORTS_KILL_WAIT);
	if (!now_free && force && npids) {
		for (size_t i = 0; i < npids; i++) {
			if (kill(pids[i], SIGKILL) == 0)
				ports_say(&rep, "still held after %g s: sent SIGKILL to pid %ld",
					  PORTS_KILL_WAIT, (long)pids[i]);
			else if (errno == ESRCH)
				ports_say(&rep, "pid %ld has exited", (long)pids[i]);
			else
				ports_say(&rep, "cannot signal pid %ld: %s", (long)pids[i], strerror(errno));
		}
		now_free = ports_wait_free(&spec, &f, PORTS_KILL_WAIT);
	}
	if (now_free) {
		ports_say(&rep, "%s is now free", what);
		rc = PORTS_EXIT_OK;
	} else {
		struct sockets_list after;

		const struct sockets_entry *s = NULL;

		if (ports_read(&f, &after, true) == 0)
			for (size_t i = 0; i < after.n && !s; i++)
				if (ports_spec_match(&spec, after.e[i].proto, after.e[i].port))
					s = &after.e[i];
		if (s)
			ports_say(&rep, "%s is still held by %s%s", what,
				  ports_holder_text(s, holder, sizeof(holder)),
				  npids && !force ? " (--force sends SIGKILL)" : "");
		else
			ports_say(&rep, "%s is still held", what);
		sockets_free(&after);
	}
out:
	if (rep.lines) {
		json_t *doc = json_pack("{s:s, s:o, s:b, s:b}", "port", what, "report", rep.lines, "free",
					rc == PORTS_EXIT_OK, "daemon", d.up);

		ports_json_print(doc);
	}
	ports_daemon_free(&d);
	sockets_free(&l);
	return rc;
}

int ports_command(const char *name, int argc, char **argv, bool json, const struct ports_ctl *ctl)
{
	int rc = PORTS_EXIT_USAGE;

	/* One look at /etc/services for the whole listing. */
	portinfo_services_pin(true);
	if (strcmp(name, "ports") == 0)
		rc = ports_list(argc, argv, json, ctl);
	else if (strcmp(name, "who") == 0)
		rc = ports_who(argc, argv, json, ctl);
	else if (strcmp(name, "free") == 0)
		rc = ports_free(argc, argv, json, ctl);
	else
		fprintf(stderr, "portfwdctl: %s is not a port command\n", name);
	portinfo_services_pin(false);
	return rc;
}
