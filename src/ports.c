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
#include <strings.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "localaddr.h"
#include "privs.h"
#include "rule.h"
#include "sockets.h"
#include "sysports.h"

/* TEXT as a JSON string; never NULL for text that is not UTF-8 (a
 * service name from /etc/services): then as sockets_text renders it. */
static json_t *ports_json_text(const char *text)
{
	char safe[256];
	json_t *j;

	if (!text)
		return json_null();
	j = json_string(text);
	return j ? j : json_string(sockets_text(text, strlen(text), safe, sizeof(safe)));
}

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
	memset(f, 0, sizeof(*f)); /* listeners only, unless the caller says */
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
	bool up[2];     /* its TCP [0] and UDP [1] listeners are open */
	unsigned proto;
	struct sockaddr_storage listen, target;
	unsigned listen_last, target_last; /* a range's last port; 0: one port */
};

struct ports_daemon {
	bool up;
	char why[300];  /* when not up */
	long pid;
	bool pid_seen;  /* PID holds one of the sockets read (ports_daemon_see) */
	struct ports_rule *r;
	size_t n;
	struct localaddr la;
};

/* Notes whether the daemon's pid holds one of L's sockets (this user sees
 * the daemon's process). */
static void ports_daemon_see(struct ports_daemon *d, const struct sockets_list *l)
{
	d->pid_seen = false;
	for (size_t i = 0; d->pid > 0 && i < l->n && !d->pid_seen; i++)
		for (unsigned k = 0; k < l->e[i].nprocs && !d->pid_seen; k++)
			d->pid_seen = l->e[i].pids[k] == (pid_t)d->pid;
}

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
		const char *sock = ctl ? ctl->socket : "?";
		char prefix[128];

		/* "cannot connect to PATH: " says again what the sentence says. */
		snprintf(prefix, sizeof(prefix), "cannot connect to %s: ", sock);
		if (strncmp(why, prefix, strlen(prefix)) == 0)
			why += strlen(prefix);
		if (rc == -1 && strncmp(why, "permission denied", 17) == 0)
			snprintf(d->why, sizeof(d->why),
				 "cannot ask the daemon at %s: permission denied (root or the socket's group)",
				 sock);
		else if (rc == 1)
			snprintf(d->why, sizeof(d->why), "the portfwd daemon at %s refused status (%s)",
				 sock, why);
		else
			/* Without its hint in brackets, which is for daemon commands. */
			snprintf(d->why, sizeof(d->why), "%s portfwd daemon at %s (%.*s)",
				 rc == -2 ? "no answer from the" : "no", sock,
				 (int)(strstr(why, " (") ? (size_t)(strstr(why, " (") - why) : strlen(why)),
				 why);
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
	if (!d->r) {
		snprintf(d->why, sizeof(d->why), "out of memory for the daemon's rules");
		d->up = false;
		json_decref(doc);
		return;
	}
	json_array_foreach(rules, i, r) {
		struct ports_rule *pr = &d->r[d->n];
		const char *name = json_string_value(json_object_get(r, "name"));
		const char *proto = json_string_value(json_object_get(r, "proto"));
		const char *listen = json_string_value(json_object_get(r, "listen"));
		const char *target = json_string_value(json_object_get(r, "target"));
		const char *state = json_string_value(json_object_get(r, "state"));
		socklen_t len;
		char e[128];

		if (!name || !proto || !listen || !target)
			continue;
		snprintf(pr->name, sizeof(pr->name), "%s", name);
		snprintf(pr->state, sizeof(pr->state), "%s", state ? state : "");
		pr->proto = rule_proto_parse(proto);
		/* Each protocol's own state: a tcp+udp rule may listen on one
		 * and have failed on the other. */
		for (int k = 0; k < 2; k++) {
			json_t *p = json_object_get(r, k ? "udp" : "tcp");
			const char *ps = json_string_value(json_object_get(p, "state"));

			pr->up[k] = strcmp(ps ? ps : pr->state, "listening") == 0;
		}
		/* "127.0.0.1:27015-27030" for a range. */
		if (rule_parse_range(listen, 0, &pr->listen, &len, &pr->listen_last, e, sizeof(e)) < 0)
			memset(&pr->listen, 0, sizeof(pr->listen));
		if (rule_parse_range(target, 0, &pr->target, &len, &pr->target_last, e, sizeof(e)) < 0)
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
 * True if S is one of the daemon's own sockets: a process holding it is
 * the daemon (by pid, or by name: the daemon did not say its pid, or said
 * the one it has in a PID namespace of its own), or no holder is visible
 * to this user (the daemon is root's).
 */
static bool ports_daemon_holds(const struct ports_daemon *d, const struct sockets_entry *s)
{
	if (s->nprocs == 0)
		return true;
	for (unsigned i = 0; i < s->nprocs; i++)
		if (d->pid > 0 && s->pids[i] == (pid_t)d->pid)
			return true;
	/* By name only where the daemon's own pid shows on none of the
	 * sockets (it said none, or one of a PID namespace of its own): a
	 * second portfwd, or a process that calls itself so, beside a
	 * daemon this user sees is not the daemon. */
	return !d->pid_seen && strcmp(s->comm, "portfwd") == 0;
}

/*
 * What rule R is to socket S: its listener (same protocol, address and
 * port, the rule listening on that protocol and S the daemon's: a rule
 * that failed because another process holds its address is not that
 * process's socket), or its target (same protocol and port, the target an address of
 * this host that S answers on: the same one, or S on the wildcard).
 */
static enum ports_role ports_rule_role(struct ports_daemon *d, const struct ports_rule *r,
				       const struct sockets_entry *s)
{
	struct sockaddr_storage sa, dest, at;
	unsigned lfirst = r->listen.ss_family ? rule_addr_port((struct sockaddr *)&r->listen) : 0;
	unsigned tfirst = r->target.ss_family ? rule_addr_port((struct sockaddr *)&r->target) : 0;

	if (!(r->proto & s->proto))
		return PORTS_ROLE_NONE;
	ports_entry_sa(s, &sa);
	/* A range: the rule's address on any port of it. A range whose
	 * ports did not all bind is not "listening" (failed): the ports it
	 * holds are still its sockets when the daemon holds them. */
	if (r->listen.ss_family && s->port >= lfirst && s->port <= (r->listen_last ? r->listen_last : lfirst)) {
		rule_addr_set_port((struct sockaddr *)&r->listen, s->port, &at);
		if (rule_addr_equal((struct sockaddr *)&at, (struct sockaddr *)&sa) &&
		    (r->up[s->proto == RULE_PROTO_TCP ? 0 : 1] || r->listen_last) && ports_daemon_holds(d, s))
			return PORTS_ROLE_LISTEN;
	}
	if (!r->target.ss_family || s->port < tfirst || s->port > (r->target_last ? r->target_last : tfirst))
		return PORTS_ROLE_NONE;
	rule_addr_set_port((struct sockaddr *)&r->target, s->port, &at);
	localaddr_destination((struct sockaddr *)&at, &dest);
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
		if (arr) {
			json_t *o = json_object();

			json_object_set_new(o, "name", ports_json_text(d->r[i].name));
			json_object_set_new(o, "role", json_string(role == PORTS_ROLE_LISTEN ? "listen" : "target"));
			json_object_set_new(o, "state", ports_json_text(d->r[i].state));
			json_array_append_new(arr, o);
		}
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
	/* As printable text, like a process name: the passwd database is
	 * not ours to trust with a terminal or a JSON string. */
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res)
		sockets_text(res->pw_name, strlen(res->pw_name), cache[slot].name,
			     sizeof(cache[slot].name));
	else
		snprintf(cache[slot].name, sizeof(cache[slot].name), "%u", (unsigned)uid);
	return cache[slot].name;
}

/* The user S's process runs as (its real uid); the socket's owner when no
 * process is seen. */
static uid_t ports_entry_uid(const struct sockets_entry *s)
{
	return s->pid && s->have_puid ? s->puid : s->uid;
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
	/* Never ourselves: free must not see portfwdctl as a holder. */
	l->skip_pid = getpid();
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

/* S as a JSON object; its fields set one by one, so that no value that
 * jansson refuses makes the whole entry vanish. */
static json_t *ports_entry_json(struct ports_daemon *d, const struct sockets_entry *s)
{
	char addr[64], service[PORTINFO_NAME_MAX], names[256];
	json_t *rules = json_array(), *pids = json_array();
	json_t *o = json_object();

	sockets_addr_text(s, addr, sizeof(addr));
	ports_rules_of(d, s, names, sizeof(names), rules);
	portinfo_service_name(s->port, s->proto, service, sizeof(service));
	for (unsigned i = 0; i < s->nprocs; i++)
		json_array_append_new(pids, json_integer(s->pids[i]));
	json_object_set_new(o, "proto", json_string(ports_proto_name(s->proto)));
	json_object_set_new(o, "address", json_string(addr));
	json_object_set_new(o, "port", json_integer(s->port));
	json_object_set_new(o, "class", json_string(portinfo_range(s->port)));
	json_object_set_new(o, "service", ports_json_text(service[0] ? service : NULL));
	/* The process's user; the socket's owner (who created it: a server
	 * that binds as root and then drops to www-data) apart. */
	json_object_set_new(o, "uid", json_integer((json_int_t)ports_entry_uid(s)));
	json_object_set_new(o, "user", ports_json_text(ports_user(ports_entry_uid(s))));
	json_object_set_new(o, "socket_uid", json_integer((json_int_t)s->uid));
	json_object_set_new(o, "rules", rules);
	json_object_set_new(o, "pid", s->pid ? json_integer(s->pid) : json_null());
	/* comm as sockets_text wrote it: ASCII, a valid JSON string. */
	json_object_set_new(o, "process", ports_json_text(s->pid ? s->comm : NULL));
	json_object_set_new(o, "processes", json_integer(s->nprocs));
	json_object_set_new(o, "pids", pids);
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
	       ports_entry_uid(a) == ports_entry_uid(b) &&
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
		return PORTS_EXIT_TABLES;
	ports_daemon_load(ctl, &d);
	ports_daemon_see(&d, &l);
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
		       proc, ports_user(ports_entry_uid(s)), rules);
	}
	ports_unseen_note(unseen, note, sizeof(note));
	if (json) {
		json_t *doc = json_pack("{s:o, s:s, s:b}", "sockets", arr, "source",
					l.from_proc ? "/proc/net" : "sock_diag", "daemon", d.up);
		json_t *notes = json_array();

		/* Processes whose fds this user could not read (root: 0). */
		json_object_set_new(doc, "processes_hidden", json_integer(l.procs_hidden));
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
		snprintf(buf, len, "pid %ld (%s, user %s)%s", (long)s->pid, s->comm,
			 ports_user(ports_entry_uid(s)),
			 s->nprocs > 1 ? " and other processes" : "");
	else if (geteuid() != 0)
		snprintf(buf, len, "a process of uid %u (%s) that you cannot see (root can)",
			 (unsigned)s->uid, ports_user(s->uid));
	else
		snprintf(buf, len, "no visible process (uid %u: the kernel, or another PID namespace)",
			 (unsigned)s->uid);
	return buf;
}

/* What binding PORT takes on this machine, as text and flags. */
static void ports_bind_facts(const struct sysports *k, unsigned port, bool *priv, bool *eph,
			     char *privtext, size_t privlen, char *ephtext, size_t ephlen)
{
	unsigned first;

	*priv = sysports_port_privileged(k, port);
	/* Reserved ports (ip_local_reserved_ports) are not handed out. */
	*eph = sysports_ephemeral_overlap(k, port, port, &first) > 0;
	if (!*priv)
		snprintf(privtext, privlen, "binding it needs no privilege");
	else
		snprintf(privtext, privlen,
			 "binding it needs root or CAP_NET_BIND_SERVICE (ports below %u)%s",
			 k->unpriv_start, privs_can_bind_low() ? ", which you have" : ", which you lack");
	if (!k->have_range)
		snprintf(ephtext, ephlen, "the ephemeral range is unknown (no /proc/sys/net/ipv4/ip_local_port_range)");
	else if (*eph)
		snprintf(ephtext, ephlen, "inside the ephemeral range %u-%u (outgoing connections may take it)",
			 k->eph_lo, k->eph_hi);
	else
		snprintf(ephtext, ephlen, "outside the ephemeral range %u-%u%s", k->eph_lo, k->eph_hi,
			 sysports_reserved(k, port) ? " (reserved)" : "");
}

/* True if any socket of L has PROTO's PORT as its local port. */
static bool ports_who_used(const struct sockets_list *l, unsigned proto, unsigned port)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->e[i].proto == proto && l->e[i].port == port)
			return true;
	return false;
}

/*
 * who: per protocol, the listeners (TCP LISTEN, unconnected UDP) of its
 * port (a service name may have different ports for TCP and UDP), or, when
 * none, whether sockets that do not listen still use the port as their
 * local one: connections, bound TCP, connected UDP. Those are not "free":
 * bind() may refuse the port while they have it, so who says so and
 * exits 0 ("in use") rather than 1. TIME_WAIT does not count (only in
 * JSON): servers set SO_REUSEADDR, which binds over it, and it ends
 * within a minute; on a busy machine nearly every ephemeral port has one.
 */
static int ports_who(int argc, char **argv, bool json, const struct ports_ctl *ctl)
{
	struct ports_spec spec;
	struct sockets_filter f;
	struct sockets_list l;
	struct ports_daemon d;
	struct sysports k;
	char err[300], desc[PORTINFO_NAME_MAX + 32], name[PORTINFO_NAME_MAX];
	char privtext[160], ephtext[160];
	json_t *held = json ? json_array() : NULL, *protos = json ? json_array() : NULL;
	bool any = false, used_any = false, priv, eph;
	unsigned port;

	if (argc != 1 || argv[0][0] == '-') {
		fprintf(stderr, "portfwdctl: usage: portfwdctl who %s [--json]\n", "PORT[/tcp|/udp]");
		json_decref(held);
		json_decref(protos);
		return PORTS_EXIT_USAGE;
	}
	if (ports_parse_spec(argv[0], false, &spec, err, sizeof(err)) < 0) {
		fprintf(stderr, "portfwdctl: who: %s\n", err);
		json_decref(held);
		json_decref(protos);
		return PORTS_EXIT_USAGE;
	}
	ports_spec_filter(&spec, &f);
	f.all_states = true;
	if (ports_read(&f, &l, true) < 0) {
		json_decref(held);
		json_decref(protos);
		return PORTS_EXIT_TABLES;
	}
	ports_daemon_load(ctl, &d);
	ports_daemon_see(&d, &l);
	sysports_read(&k);
	for (unsigned p = RULE_PROTO_TCP; p <= RULE_PROTO_UDP; p <<= 1) {
		char line[1024] = "", holder[200], addr[64], rules[256];
		size_t used = 0, nconn = 0, ntw = 0;
		const struct sockets_entry *first = NULL;
		json_t *mine;

		if (!(spec.proto & p))
			continue;
		mine = json ? json_array() : NULL;
		port = spec.lo[p == RULE_PROTO_TCP ? 0 : 1];
		for (size_t i = 0; i < l.n; i++) {
			const struct sockets_entry *s = &l.e[i];
			bool dup = false;

			if (s->proto != p || s->port != port)
				continue;
			if (!sockets_listening(s)) {
				if (s->state == SOCKETS_TCP_TIME_WAIT)
					ntw++;
				else
					nconn++;
				continue;
			}
			if (json) {
				json_array_append_new(held, ports_entry_json(&d, s));
				json_array_append_new(mine, ports_entry_json(&d, s));
			}
			if (!first || (!first->pid && s->pid))
				first = s;
			/* Each address once (SO_REUSEPORT sockets share one). */
			for (size_t j = 0; j < i && !dup; j++)
				dup = l.e[j].proto == p && l.e[j].port == port && sockets_listening(&l.e[j]) &&
				      l.e[j].family == s->family &&
				      memcmp(&l.e[j].addr, &s->addr, sizeof(s->addr)) == 0;
			if (dup || used >= sizeof(line) - 80)
				continue;
			used += (size_t)snprintf(line + used, sizeof(line) - used, "%s%s", used ? ", " : "",
						 sockets_addr_text(s, addr, sizeof(addr)));
		}
		ports_bind_facts(&k, port, &priv, &eph, privtext, sizeof(privtext), ephtext,
				 sizeof(ephtext));
		any |= first != NULL;
		used_any |= first != NULL || nconn > 0;
		if (json) {
			json_t *o = json_object();

			json_object_set_new(o, "proto", json_string(ports_proto_name(p)));
			json_object_set_new(o, "port", json_integer(port));
			json_object_set_new(o, "held", json_boolean(first != NULL));
			json_object_set_new(o, "holders", mine);
			json_object_set_new(o, "connections", json_integer((json_int_t)nconn));
			json_object_set_new(o, "time_wait", json_integer((json_int_t)ntw));
			json_object_set_new(o, "class", json_string(portinfo_range(port)));
			json_object_set_new(o, "service",
					    ports_json_text(portinfo_service_name(port, p, name, sizeof(name))
								    ? name : NULL));
			json_object_set_new(o, "needs_privilege", json_boolean(priv));
			json_object_set_new(o, "ephemeral", json_boolean(eph));
			json_array_append_new(protos, o);
			continue;
		}
		portinfo_describe(port, p, desc, sizeof(desc));
		if (first) {
			ports_rules_of(&d, first, rules, sizeof(rules), NULL);
			printf("%u/%s is held by %s on %s; %s%s%s\n", port, ports_proto_name(p),
			       ports_holder_text(first, holder, sizeof(holder)), line, desc,
			       rules[0] ? "; portfwd rule " : "", rules);
		} else if (nconn) {
			printf("%u/%s has no listener, but %zu socket%s use%s it as local port (connections or bound, not listening): binding it may fail with \"address already in use\"; %s; %s; %s\n",
			       port, ports_proto_name(p), nconn, nconn == 1 ? "" : "s",
			       nconn == 1 ? "s" : "", desc, privtext, ephtext);
		} else if (p == RULE_PROTO_TCP && (spec.proto & RULE_PROTO_UDP) &&
			   spec.lo[1] == port && !ports_who_used(&l, RULE_PROTO_UDP, port)) {
			/* Both protocols free on one port: one line, as before. */
			printf("%u/tcp+udp is free; %s; %s; %s\n", port,
			       portinfo_describe(port, RULE_PROTO_BOTH, desc, sizeof(desc)), privtext,
			       ephtext);
			break;
		} else {
			printf("%u/%s is free; %s; %s; %s\n", port, ports_proto_name(p), desc, privtext,
			       ephtext);
		}
	}
	if (json) {
		json_t *doc = json_object();

		port = spec.lo[spec.proto & RULE_PROTO_TCP ? 0 : 1];
		ports_bind_facts(&k, port, &priv, &eph, privtext, sizeof(privtext), ephtext,
				 sizeof(ephtext));
		/* The first protocol's port, as before; "protocols" has each
		 * one's own (a service's TCP and UDP ports may differ). */
		json_object_set_new(doc, "port", json_integer(port));
		json_object_set_new(doc, "proto", json_string(rule_proto_name(spec.proto)));
		json_object_set_new(doc, "held", json_boolean(any));
		json_object_set_new(doc, "in_use", json_boolean(used_any));
		json_object_set_new(doc, "holders", held);
		json_object_set_new(doc, "protocols", protos);
		json_object_set_new(doc, "class", json_string(portinfo_range(port)));
		json_object_set_new(doc, "service",
				    ports_json_text(portinfo_service_name(port, spec.proto, name, sizeof(name))
							    ? name : NULL));
		json_object_set_new(doc, "needs_privilege", json_boolean(priv));
		json_object_set_new(doc, "ephemeral", json_boolean(eph));
		json_object_set_new(doc, "ephemeral_range",
				    k.have_range ? json_pack("[ii]", (int)k.eph_lo, (int)k.eph_hi) : json_null());
		json_object_set_new(doc, "unprivileged_port_start", json_integer(k.unpriv_start));
		json_object_set_new(doc, "daemon", json_boolean(d.up));
		if (!d.up)
			json_object_set_new(doc, "notes", json_pack("[s]", d.why));
		ports_json_print(doc);
	}
	if (!json && any && !d.up)
		fprintf(stderr, "%s: portfwd rules not shown\n", d.why);
	ports_daemon_free(&d);
	sockets_free(&l);
	return used_any ? PORTS_EXIT_OK : PORTS_EXIT_NO;
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
		json_array_append_new(r->lines, ports_json_text(buf));
	else {
		printf("%s\n", buf);
		fflush(stdout);
	}
}

/* Asks QUESTION on the terminal (stdin and stderr both one); --yes
 * answers for the caller. Only "y" or "yes" (any case) is a yes. */
static bool ports_confirm(bool yes, const char *question)
{
	char answer[16];
	size_t n;

	if (yes)
		return true;
	if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO)) {
		fprintf(stderr, "portfwdctl: free: no terminal to ask \"%s\" on: add --yes to do it\n",
			question);
		return false;
	}
	fprintf(stderr, "%s [y/N] ", question);
	fflush(stderr);
	if (!fgets(answer, sizeof(answer), stdin))
		return false;
	n = strcspn(answer, "\r\n");
	answer[n] = '\0';
	return strcasecmp(answer, "y") == 0 || strcasecmp(answer, "yes") == 0;
}

/* How many of L's sockets SPEC covers. */
static size_t ports_count(const struct ports_spec *spec, const struct sockets_list *l)
{
	size_t n = 0;

	for (size_t i = 0; i < l->n; i++)
		n += ports_spec_match(spec, l->e[i].proto, l->e[i].port);
	return n;
}

/* A process free signals: pinned by a pidfd when the kernel has them, so
 * that a pid reused during the question and the wait is never hit. */
struct ports_victim {
	pid_t pid;
	int pidfd;            /* -1: no pidfd (ENOSYS): kill() alone */
	unsigned long *inodes; /* the sockets of the port it holds (malloc'd) */
	size_t ninodes;
	char comm[SOCKETS_COMM_MAX];
	char user[64];
	bool gone;            /* exited, or no longer holds the port: not signalled again */
	bool released;        /* alive, but holds none of INODES any more */
};

static int ports_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

static int ports_pidfd_send_signal(int pidfd, int sig)
{
#ifdef SYS_pidfd_send_signal
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#else
	(void)pidfd;
	(void)sig;
	errno = ENOSYS;
	return -1;
#endif
}

/* True if PID has an fd on one of the INODES of V now. */
static bool ports_victim_holds(const struct ports_victim *v)
{
	for (size_t i = 0; i < v->ninodes; i++)
		if (sockets_proc_holds(v->pid, v->inodes[i]))
			return true;
	return false;
}

/*
 * Sends SIG to V right after checking that it still has a socket of the
 * port open: a process that closed it (or exited, and its pid was reused)
 * since the plan and the question is not hit, pidfd or not. The pidfd,
 * when there is one, makes sure the check and the signal are about the
 * same process. Returns 0, or -1 with errno: ESRCH when it is gone or no
 * longer holds the port (V->released tells which).
 */
static int ports_victim_signal(struct ports_victim *v, int sig)
{
	int rc;

	if (!ports_victim_holds(v)) {
		v->released = kill(v->pid, 0) == 0 || errno == EPERM;
		errno = ESRCH;
		rc = -1;
	} else if (v->pidfd >= 0)
		rc = ports_pidfd_send_signal(v->pidfd, sig);
	else
		rc = kill(v->pid, sig);
	if (rc < 0 && errno == ESRCH)
		v->gone = true;
	return rc;
}

enum ports_wait { PORTS_WAIT_FREE, PORTS_WAIT_HELD, PORTS_WAIT_UNKNOWN };

/*
 * Waits for SPEC's port to come free, reading the tables every 50 ms for
 * SECONDS at most; between reads it sleeps in poll on the victims'
 * pidfds, which wake it when one exits. A read that fails is no answer:
 * it reads again until the time is up. Returns FREE as soon as a read
 * finds nothing on the port; else what the last read said: HELD, or
 * UNKNOWN when it failed (its errno in *ERR).
 */
static enum ports_wait ports_wait_free(const struct ports_spec *spec,
				       const struct sockets_filter *f, double seconds,
				       const struct ports_victim *v, size_t nv, int *err)
{
	struct pollfd *pfd = nv ? calloc(nv, sizeof(*pfd)) : NULL;
	struct timespec t0, now;
	enum ports_wait state = PORTS_WAIT_UNKNOWN;

	*err = 0;

	for (size_t i = 0; pfd && i < nv; i++)
		pfd[i] = (struct pollfd){ v[i].gone ? -1 : v[i].pidfd, POLLIN, 0 };
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct sockets_list l;

		if (sockets_read(f, &l) < 0) {
			state = PORTS_WAIT_UNKNOWN;
			*err = errno;
		} else {
			state = ports_count(spec, &l) == 0 ? PORTS_WAIT_FREE : PORTS_WAIT_HELD;
			sockets_free(&l);
			if (state == PORTS_WAIT_FREE)
				break;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9 >= seconds)
			break;
		if (pfd && poll(pfd, (nfds_t)nv, 50) > 0) {
			/* An exit: its sockets close with it; read again now,
			 * and stop watching it. */
			for (size_t i = 0; i < nv; i++)
				if (pfd[i].revents)
					pfd[i].fd = -1;
		} else if (!pfd)
			poll(NULL, 0, 50);
	}
	free(pfd);
	return state;
}

#define PORTS_KILL_WAIT 5.0
/* How far up free looks for the processes portfwdctl runs under. */
#define PORTS_ANCESTORS_MAX 64

/* The user PID runs as (its real uid: /proc/PID's owner is root for a
 * process that is not dumpable), else the socket's UID. */
static void ports_proc_user(pid_t pid, uid_t uid, char *buf, size_t len)
{
	uid_t puid;

	snprintf(buf, len, "%s", ports_user(sockets_proc_uid(pid, &puid) == 0 ? puid : uid));
}

/* Appends to a growing array (*A with *N items of SIZE); aborts the
 * command on ENOMEM like any allocation the kernel refuses. */
static void *ports_grow(void *a, size_t n, size_t size)
{
	void *grown = realloc(a, (n + 1) * size);

	if (!grown) {
		fprintf(stderr, "portfwdctl: out of memory\n");
		exit(PORTS_EXIT_NO);
	}
	return grown;
}

/* "pid 12 (nginx, user www-data)" for V. */
static const char *ports_victim_text(const struct ports_victim *v, char *buf, size_t len)
{
	snprintf(buf, len, "pid %ld (%s, user %s)", (long)v->pid, v->comm[0] ? v->comm : "?", v->user);
	return buf;
}

/* What free will do: the processes it signals, the ones it refused (each
 * said once), the processes portfwdctl runs under. */
struct ports_plan {
	struct ports_victim *v;
	size_t nv;
	pid_t *refused;
	size_t nrefused;
	pid_t ancestors[PORTS_ANCESTORS_MAX];
	size_t nancestors;
};

/* Fills P's ancestors: portfwdctl's parent, its parent, ... (through
 * /proc/PID/status PPid), up to init, at most PORTS_ANCESTORS_MAX. */
static void ports_plan_ancestors(struct ports_plan *p)
{
	pid_t pid = getppid();

	while (pid > 1 && p->nancestors < PORTS_ANCESTORS_MAX) {
		char val[32];

		p->ancestors[p->nancestors++] = pid;
		if (sockets_proc_status(pid, "PPid", val, sizeof(val)) < 0)
			break;
		pid = (pid_t)strtol(val, NULL, 10);
	}
}

/* True if PID is the init (pid 1) of a PID namespace below ours: the
 * last of its /proc/PID/status NSpid numbers, its pid in its own
 * namespace, is 1. */
static bool ports_container_init(pid_t pid)
{
	char val[256], *last;

	if (sockets_proc_status(pid, "NSpid", val, sizeof(val)) < 0)
		return false;
	val[strcspn(val, "\n")] = '\0';
	last = strrchr(val, '\t');
	return last && strcmp(last + 1, "1") == 0;
}

static bool ports_plan_refuse(struct ports_plan *p, pid_t pid)
{
	p->refused = ports_grow(p->refused, p->nrefused, sizeof(*p->refused));
	p->refused[p->nrefused++] = pid;
	return false;
}

/*
 * Checks one holder PID of socket S for free's plan: refused (pid 1, a
 * container's init, the daemon, portfwdctl's parent or one above it, one
 * the caller may not signal; said once per process), gone, or added to
 * P's victims (once, with every socket of the port it holds, pinned by a
 * pidfd). Returns false if refused.
 */
static bool ports_free_check(struct ports_report *rep, const struct ports_daemon *d,
			     const struct sockets_entry *s, pid_t pid, struct ports_plan *p)
{
	struct ports_victim c = { .pid = pid, .pidfd = -1 };
	char who[200];

	for (size_t i = 0; i < p->nrefused; i++)
		if (p->refused[i] == pid)
			return false;
	for (size_t i = 0; i < p->nv; i++)
		if (p->v[i].pid == pid) {
			struct ports_victim *o = &p->v[i];

			o->inodes = ports_grow(o->inodes, o->ninodes, sizeof(*o->inodes));
			o->inodes[o->ninodes++] = s->inode;
			return true;
		}
	if (pid == s->pid)
		snprintf(c.comm, sizeof(c.comm), "%s", s->comm);
	else
		sockets_proc_comm(pid, c.comm, sizeof(c.comm));
	ports_proc_user(pid, s->uid, c.user, sizeof(c.user));
	ports_victim_text(&c, who, sizeof(who));
	if (pid == 1) {
		ports_say(rep, "refused: %u/%s is held by pid 1 (%s), the init system: stop the service that owns the socket instead",
			  s->port, ports_proto_name(s->proto), c.comm);
		return ports_plan_refuse(p, pid);
	}
	if (ports_container_init(pid)) {
		ports_say(rep, "refused: %u/%s is held by %s, the init of a container (pid 1 of its own PID namespace): stop the container instead",
			  s->port, ports_proto_name(s->proto), who);
		return ports_plan_refuse(p, pid);
	}
	if ((d->up && d->pid > 0 && pid == (pid_t)d->pid) || strcmp(c.comm, "portfwd") == 0) {
		ports_say(rep, "refused: %u/%s is held by the portfwd daemon (pid %ld) itself: `portfwdctl disable RULE` frees a rule's port, `systemctl stop portfwd` stops the daemon",
			  s->port, ports_proto_name(s->proto), (long)pid);
		return ports_plan_refuse(p, pid);
	}
	for (size_t i = 0; i < p->nancestors; i++)
		if (pid == p->ancestors[i]) {
			ports_say(rep, "refused: %u/%s is held by %s, %s: it would end the caller",
				  s->port, ports_proto_name(s->proto), who,
				  i == 0 ? "the process that ran portfwdctl (your shell or script)"
					 : "a process that portfwdctl runs under (your shell, sudo or a script above it)");
			return ports_plan_refuse(p, pid);
		}
	if (kill(pid, 0) < 0) {
		if (errno == ESRCH)
			return true; /* gone since the tables were read */
		ports_say(rep, "refused: %u/%s is held by %s, which you may not signal (run as root or as %s)",
			  s->port, ports_proto_name(s->proto), who, c.user);
		return ports_plan_refuse(p, pid);
	}
	/* Pin the process, then make sure the pinned one is the holder: the
	 * pid may have been reused since /proc/PID/fd was read. */
	c.pidfd = ports_pidfd_open(pid);
	if (c.pidfd < 0 && errno == ESRCH)
		return true;
	if (!sockets_proc_holds(pid, s->inode)) {
		if (c.pidfd >= 0)
			close(c.pidfd);
		return true; /* it closed the socket or exited */
	}
	c.inodes = ports_grow(NULL, 0, sizeof(*c.inodes));
	c.inodes[c.ninodes++] = s->inode;
	p->v = ports_grow(p->v, p->nv, sizeof(*p->v));
	p->v[p->nv++] = c;
	return true;
}

/* Says what a signal SIG to V did. */
static void ports_signal_report(struct ports_report *rep, struct ports_victim *v, int sig,
				const char *what, const char *prefix)
{
	char holder[200];

	ports_victim_text(v, holder, sizeof(holder));
	if (ports_victim_signal(v, sig) == 0)
		ports_say(rep, "%ssent %s to %s", prefix, sig == SIGKILL ? "SIGKILL" : "SIGTERM", holder);
	else if (errno == ESRCH && v->released)
		ports_say(rep, "%s no longer holds %s: not signalled", holder, what);
	else if (errno == ESRCH)
		ports_say(rep, "%s has exited: not signalled", holder);
	else
		ports_say(rep, "cannot signal %s: %s", holder, strerror(errno));
}

/* True if /proc is this process's PID namespace's: /proc/self is our pid. */
static bool ports_proc_is_ours(void)
{
	char link[32];
	ssize_t n = readlink("/proc/self", link, sizeof(link) - 1);

	if (n <= 0)
		return false;
	link[n] = '\0';
	return strtol(link, NULL, 10) == (long)getpid();
}

static int ports_free(int argc, char **argv, bool json, const struct ports_ctl *ctl)
{
	struct ports_report rep = { json ? json_array() : NULL };
	struct ports_spec spec;
	struct sockets_filter f;
	struct sockets_list l;
	struct ports_daemon d;
	const char *arg = NULL;
	bool kill_opt = false, force = false, yes = false, refused = false, hidden_said = false;
	size_t *disable = NULL, ndisable = 0;
	struct ports_plan plan;
	struct ports_victim *v;
	size_t nv;
	enum ports_wait state;
	int wait_err;
	char err[300], what[64], holder[200], *question = NULL;
	size_t qlen = 0;
	FILE *q;
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
	/* The pids /proc shows must be this process's: with a /proc of
	 * another PID namespace (unshare -p without --mount-proc, a container
	 * that sees the host's) a pid read there names another process here. */
	if (kill_opt && !ports_proc_is_ours()) {
		fprintf(stderr, "portfwdctl: free: /proc is not of this process's PID namespace (/proc/self is not pid %ld): --kill would signal by pids that name other processes here; run it where /proc is mounted for this namespace\n",
			(long)getpid());
		json_decref(rep.lines);
		return PORTS_EXIT_NO;
	}
	ports_spec_filter(&spec, &f);
	ports_spec_name(&spec, what, sizeof(what));
	if (ports_read(&f, &l, true) < 0) {
		json_decref(rep.lines);
		return PORTS_EXIT_TABLES;
	}
	ports_daemon_load(ctl, &d);
	ports_daemon_see(&d, &l);
	memset(&plan, 0, sizeof(plan));
	ports_plan_ancestors(&plan);

	/* The plan: the rules listening there, then the other holders. */
	for (size_t i = 0; i < d.n; i++)
		for (size_t j = 0; j < l.n; j++)
			if (ports_spec_match(&spec, l.e[j].proto, l.e[j].port) &&
			    ports_rule_role(&d, &d.r[i], &l.e[j]) == PORTS_ROLE_LISTEN) {
				disable = ports_grow(disable, ndisable, sizeof(*disable));
				disable[ndisable++] = i;
				break;
			}
	for (size_t j = 0; j < l.n; j++) {
		const struct sockets_entry *s = &l.e[j];
		bool ruled = false;
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
		/* Every process with the socket: a forked server's children
		 * keep the port after its parent ends. */
		for (unsigned k = 0; k < s->nprocs; k++)
			if (!ports_free_check(&rep, &d, s, s->pids[k], &plan))
				refused = true;
		/* A socket another user opened may have holders among the
		 * processes this user cannot see (a root server's master
		 * beside its workers): say so before acting, not after. */
		if (kill_opt && !hidden_said && geteuid() != 0 && l.procs_hidden &&
		    s->uid != geteuid()) {
			ports_say(&rep, "%u/%s on %s was opened by user %s, and processes of other users that you cannot see may hold it too: then it will stay held after those you can see end (root sees every holder: sudo portfwdctl free %s --kill)",
				  s->port, ports_proto_name(s->proto), addr, ports_user(s->uid), arg);
			hidden_said = true;
		}
		if (!kill_opt) {
			ports_say(&rep, "%u/%s is held by %s on %s: --kill sends %s SIGTERM", s->port,
				  ports_proto_name(s->proto), holder, addr,
				  s->nprocs > 1 ? "them" : "it");
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
	v = plan.v;
	nv = plan.nv;

	/* One question for all of it, naming every process. */
	q = open_memstream(&question, &qlen);
	if (!q) {
		ports_say(&rep, "nothing done: out of memory");
		goto out;
	}
	fprintf(q, "Free %s:", what);
	for (size_t i = 0; i < ndisable; i++)
		fprintf(q, " disable rule %s;", d.r[disable[i]].name);
	for (size_t i = 0; i < nv; i++)
		fprintf(q, " SIGTERM%s %s;", force ? " (then SIGKILL)" : "",
			ports_victim_text(&v[i], holder, sizeof(holder)));
	fclose(q);
	if (qlen)
		question[qlen - 1] = '?';
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
		else if (r == 1)
			ports_say(&rep, "the daemon refused to disable rule %s: %s", d.r[disable[i]].name,
				  err);
		else
			ports_say(&rep, "cannot ask the daemon to disable rule %s: %s",
				  d.r[disable[i]].name, err);
	}
	for (size_t i = 0; i < nv; i++)
		ports_signal_report(&rep, &v[i], SIGTERM, what, "");
	/* SIGKILL only after the whole wait: a read of the tables that fails
	 * is no reason to cut the grace short. */
	state = ports_wait_free(&spec, &f, PORTS_KILL_WAIT, v, nv, &wait_err);
	if (state != PORTS_WAIT_FREE && force && nv) {
		char prefix[64];

		snprintf(prefix, sizeof(prefix), "%s after %g s: ",
			 state == PORTS_WAIT_HELD ? "still held" : "not known to be free", PORTS_KILL_WAIT);
		for (size_t i = 0; i < nv; i++)
			if (!v[i].gone)
				ports_signal_report(&rep, &v[i], SIGKILL, what, prefix);
		state = ports_wait_free(&spec, &f, PORTS_KILL_WAIT, v, nv, &wait_err);
	}
	if (state == PORTS_WAIT_FREE) {
		ports_say(&rep, "%s is now free", what);
		rc = PORTS_EXIT_OK;
	} else if (state == PORTS_WAIT_UNKNOWN) {
		ports_say(&rep, "whether %s is free now is unknown: the socket tables could not be read (%s)",
			  what, strerror(wait_err));
		rc = PORTS_EXIT_TABLES;
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
				  nv && !force ? " (--force sends SIGKILL)" : "");
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
	for (size_t i = 0; i < plan.nv; i++) {
		if (plan.v[i].pidfd >= 0)
			close(plan.v[i].pidfd);
		free(plan.v[i].inodes);
	}
	free(plan.v);
	free(plan.refused);
	free(disable);
	free(question);
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
