#include "portinfo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ctype.h>
#include <stdbool.h>
#include <strings.h>
#include <sys/stat.h>

#include "rule.h"
#include "sockets.h"
#include "suggest.h"

const char *portinfo_range(unsigned port)
{
	if (port < 1024)
		return "well-known";
	if (port < 49152)
		return "registered";
	return "dynamic";
}

int portinfo_holder(int socktype, unsigned port, char *out, size_t outlen)
{
	struct sockets_filter f = { socktype == SOCK_STREAM ? RULE_PROTO_TCP : RULE_PROTO_UDP, port, port, false };
	struct sockets_list l;
	const struct sockets_entry *e;

	if (sockets_read(&f, &l) < 0)
		return -1;
	if (l.n == 0) {
		sockets_free(&l);
		return -1;
	}
	sockets_join(&l);
	e = &l.e[0];
	for (size_t i = 0; i < l.n; i++)
		if (l.e[i].pid > 0) { /* one whose process shows, if any does */
			e = &l.e[i];
			break;
		}
	if (e->pid > 0)
		snprintf(out, outlen, "pid %ld (%s)", (long)e->pid, e->comm[0] ? e->comm : "?");
	else
		snprintf(out, outlen, "a process of uid %u", (unsigned)e->uid);
	sockets_free(&l);
	return 0;
}

void portinfo_bind_error(int err, int socktype, const struct sockaddr *addr,
			 char *out, size_t outlen)
{
	unsigned port = rule_addr_port(addr);
	char holder[128], host[RULE_ADDR_STRLEN];

	switch (err) {
	case EACCES:
	case EPERM:
		if (port < 1024)
			snprintf(out, outlen,
				 "permission denied: port %u is in the well-known range (0-1023) and needs root or CAP_NET_BIND_SERVICE",
				 port);
		else
			snprintf(out, outlen, "permission denied: %s", strerror(err));
		break;
	case EADDRINUSE:
		if (portinfo_holder(socktype, port, holder, sizeof(holder)) == 0)
			snprintf(out, outlen, "address already in use: port %u/%s is held by %s",
				 port, socktype == SOCK_STREAM ? "tcp" : "udp", holder);
		else
			snprintf(out, outlen, "address already in use: port %u/%s is held by another socket (as root, `ss -%slnp 'sport = :%u'` shows which)",
				 port, socktype == SOCK_STREAM ? "tcp" : "udp",
				 socktype == SOCK_STREAM ? "t" : "u", port);
		break;
	case EADDRNOTAVAIL:
		rule_format_addr(addr, host, sizeof(host));
		snprintf(out, outlen, "address not available: no local interface has the address of %s", host);
		break;
	default:
		snprintf(out, outlen, "%s", strerror(err));
		break;
	}
}

/* ---- service names ---- */

/*
 * Ports that home labs forward and netbase's /etc/services (Debian 12)
 * does not name, each with where its number comes from. The database wins
 * where it names a port too.
 */
static const struct portinfo_service {
	const char *name;
	unsigned port;
	unsigned proto;
} portinfo_builtin[] = {
	{ "rdp", 3389, RULE_PROTO_TCP | RULE_PROTO_UDP },      /* IANA ms-wbt-server; the usual name */
	{ "home-assistant", 8123, RULE_PROTO_TCP },            /* Home Assistant's default web port */
	{ "jellyfin", 8096, RULE_PROTO_TCP },                  /* Jellyfin's default HTTP port */
	{ "syncthing", 22000, RULE_PROTO_TCP | RULE_PROTO_UDP }, /* Syncthing's sync protocol */
	{ "minecraft", 25565, RULE_PROTO_TCP | RULE_PROTO_UDP }, /* IANA minecraft */
	{ "plex", 32400, RULE_PROTO_TCP },                     /* Plex Media Server */
	{ "wireguard", 51820, RULE_PROTO_UDP },                /* wg-quick's customary ListenPort */
};

/*
 * The services database, read once through getservent_r(3) (nsswitch: the
 * system's parser of /etc/services) into memory, and again when the file
 * changes: lookups and suggestions then cost no file scan, however many
 * names a configuration holds. Main thread only (the configuration's).
 */
static struct {
	struct portinfo_entry {
		char *name;
		unsigned port;
		unsigned proto; /* RULE_PROTO_TCP or RULE_PROTO_UDP */
	} *e;
	size_t n, cap;
	/* The first entry of each (protocol, port), in that order: the name
	 * of a port is its first entry's, found by bsearch(3). */
	size_t *by_port;
	size_t nports;
	struct timespec mtime;
	off_t size;
	ino_t ino;
	bool read;
} portinfo_db;

static const char *portinfo_services_path = "/etc/services";

/* While pinned, the database is not looked at again for changes. */
static bool portinfo_pinned;

static void portinfo_db_load(void);

void portinfo_services_pin(bool pin)
{
	portinfo_pinned = false;
	if (pin) {
		portinfo_db_load(); /* as the file is now */
		portinfo_pinned = true;
	}
}

void portinfo_set_services_path(const char *path)
{
	portinfo_services_path = path ? path : "/etc/services";
	portinfo_db.read = false;
}

/* True for a name as RFC 6335 has them (letters, digits, '-', and the
 * '_', '.', '+', '/' that old entries use), at most PORTINFO_NAME_MAX - 1
 * bytes: what is shown, in text and JSON, is plain ASCII and never cut. */
static bool portinfo_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= PORTINFO_NAME_MAX)
		return false;
	for (; *name; name++)
		if (!isalnum((unsigned char)*name) && !strchr("-_.+/", *name))
			return false;
	return true;
}

/* Adds an entry; false when out of memory (the read is then not whole). */
static bool portinfo_db_add(const char *name, unsigned port, unsigned proto)
{
	struct portinfo_entry *grown;
	char *copy;

	if (!portinfo_name_ok(name))
		return true; /* skipped: a name no one could write in a rule either */
	if (portinfo_db.n == portinfo_db.cap) { /* doubling: a file of thousands of lines */
		size_t cap = portinfo_db.cap ? portinfo_db.cap * 2 : 512;

		grown = realloc(portinfo_db.e, cap * sizeof(*grown));
		if (!grown)
			return false;
		portinfo_db.e = grown;
		portinfo_db.cap = cap;
	}
	copy = strdup(name);
	if (!copy)
		return false;
	portinfo_db.e[portinfo_db.n++] = (struct portinfo_entry){ copy, port, proto };
	return true;
}

static int portinfo_by_port_cmp(const void *a, const void *b)
{
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	const struct portinfo_entry *x = &portinfo_db.e[i], *y = &portinfo_db.e[j];

	if (x->proto != y->proto)
		return x->proto < y->proto ? -1 : 1;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	return i < j ? -1 : i > j; /* the file's order: its first name wins */
}

/* Builds the index by port. Returns 0, or -1 when out of memory (lookups
 * by port then find nothing in the database). */
static int portinfo_db_index(void)
{
	if (!portinfo_db.n)
		return 0;
	if (!(portinfo_db.by_port = malloc(portinfo_db.n * sizeof(size_t))))
		return -1;
	for (size_t i = 0; i < portinfo_db.n; i++)
		portinfo_db.by_port[i] = i;
	qsort(portinfo_db.by_port, portinfo_db.n, sizeof(size_t), portinfo_by_port_cmp);
	/* Keep each (protocol, port)'s first entry only: the rest are its
	 * aliases and later lines, which never name the port. */
	portinfo_db.nports = 0;
	for (size_t i = 0; i < portinfo_db.n; i++) {
		const struct portinfo_entry *e = &portinfo_db.e[portinfo_db.by_port[i]];
		const struct portinfo_entry *last =
			portinfo_db.nports ? &portinfo_db.e[portinfo_db.by_port[portinfo_db.nports - 1]] : NULL;

		if (!last || last->proto != e->proto || last->port != e->port)
			portinfo_db.by_port[portinfo_db.nports++] = portinfo_db.by_port[i];
	}
	return 0;
}

/* bsearch(3)'s order for a (protocol, port) KEY against an index entry. */
static int portinfo_port_key_cmp(const void *key, const void *elem)
{
	const struct portinfo_entry *k = key, *e = &portinfo_db.e[*(const size_t *)elem];

	if (k->proto != e->proto)
		return k->proto < e->proto ? -1 : 1;
	return k->port < e->port ? -1 : k->port > e->port;
}

static void portinfo_db_load(void)
{
	struct stat st;
	struct servent se, *res;
	size_t cap = 1024;
	char *buf;

	if (portinfo_pinned && portinfo_db.read)
		return;
	if (stat(portinfo_services_path, &st) < 0)
		memset(&st, 0, sizeof(st));
	if (portinfo_db.read && st.st_mtim.tv_sec == portinfo_db.mtime.tv_sec &&
	    st.st_mtim.tv_nsec == portinfo_db.mtime.tv_nsec && st.st_size == portinfo_db.size &&
	    st.st_ino == portinfo_db.ino)
		return;
	for (size_t i = 0; i < portinfo_db.n; i++)
		free(portinfo_db.e[i].name);
	free(portinfo_db.e);
	free(portinfo_db.by_port);
	portinfo_db.e = NULL;
	portinfo_db.by_port = NULL;
	portinfo_db.nports = 0;
	portinfo_db.n = 0;
	portinfo_db.cap = 0;
	portinfo_db.read = false;
	portinfo_db.mtime = st.st_mtim;
	portinfo_db.size = st.st_size;
	portinfo_db.ino = st.st_ino;
	buf = malloc(cap);
	setservent(0);
	while (buf) {
		int rc = getservent_r(&se, buf, cap, &res);
		unsigned proto;

		if (rc == ERANGE && cap < (1 << 20)) {
			/* A long line: again, with room (glibc keeps its place). */
			char *bigger = realloc(buf, cap * 2);

			if (!bigger)
				break;
			buf = bigger;
			cap *= 2;
			continue;
		}
		if (rc != 0 || !res) {
			/* The end (ENOENT), or a read that failed: kept only if whole. */
			portinfo_db.read = rc == 0 || rc == ENOENT;
			break;
		}
		proto = strcmp(res->s_proto, "tcp") == 0 ? RULE_PROTO_TCP
			: strcmp(res->s_proto, "udp") == 0 ? RULE_PROTO_UDP : 0;
		if (!proto)
			continue;
		if (!portinfo_db_add(res->s_name, ntohs((uint16_t)res->s_port), proto))
			break; /* out of memory: not whole, read again next time */
		for (char **alias = res->s_aliases; alias && *alias; alias++)
			if (!portinfo_db_add(*alias, ntohs((uint16_t)res->s_port), proto))
				break;
	}
	endservent();
	free(buf);
	if (portinfo_db_index() < 0)
		portinfo_db.read = false; /* no index: read again next time */
}

/* NAME's port for one protocol P: the database's first entry, else the
 * table's; 0 if neither has it. Names compare without regard to case. */
static unsigned portinfo_one_port(const char *name, unsigned p)
{
	for (size_t i = 0; i < portinfo_db.n; i++)
		if (portinfo_db.e[i].proto == p && strcasecmp(portinfo_db.e[i].name, name) == 0)
			return portinfo_db.e[i].port;
	for (size_t i = 0; i < sizeof(portinfo_builtin) / sizeof(portinfo_builtin[0]); i++)
		if ((portinfo_builtin[i].proto & p) && strcasecmp(portinfo_builtin[i].name, name) == 0)
			return portinfo_builtin[i].port;
	return 0;
}

long portinfo_service_port(const char *name, unsigned proto, unsigned *tcp, unsigned *udp)
{
	unsigned t, u;

	portinfo_db_load();
	t = proto & RULE_PROTO_TCP ? portinfo_one_port(name, RULE_PROTO_TCP) : 0;
	u = proto & RULE_PROTO_UDP ? portinfo_one_port(name, RULE_PROTO_UDP) : 0;
	if (tcp)
		*tcp = portinfo_one_port(name, RULE_PROTO_TCP);
	if (udp)
		*udp = portinfo_one_port(name, RULE_PROTO_UDP);
	if ((proto & RULE_PROTO_TCP) && (proto & RULE_PROTO_UDP)) {
		if (t && u && t != u)
			return -1;
		return t && u ? t : 0; /* a tcp+udp rule needs the name for both */
	}
	return t ? t : u;
}

bool portinfo_services_empty(void)
{
	portinfo_db_load();
	return portinfo_db.n == 0;
}

static unsigned portinfo_suggest_left = 20;

void portinfo_suggest_budget(unsigned n)
{
	portinfo_suggest_left = n;
}

void portinfo_service_suggest(const char *name, unsigned proto, char *best, size_t len)
{
	char lower[64];
	size_t d = (size_t)-1, n = 0;

	if (len)
		best[0] = '\0';
	if (!portinfo_suggest_left)
		return;
	portinfo_suggest_left--;
	for (; name[n] && n + 1 < sizeof(lower); n++)
		lower[n] = (char)tolower((unsigned char)name[n]);
	lower[n] = '\0';
	portinfo_db_load();
	for (size_t i = 0; i < sizeof(portinfo_builtin) / sizeof(portinfo_builtin[0]); i++)
		if (portinfo_builtin[i].proto & proto)
			suggest_offer(lower, portinfo_builtin[i].name, best, len, &d);
	for (size_t i = 0; i < portinfo_db.n; i++)
		if (portinfo_db.e[i].proto & proto)
			suggest_offer(lower, portinfo_db.e[i].name, best, len, &d);
}

/* The database's first name for PORT and one protocol P, or NULL. */
static const char *portinfo_db_name(unsigned port, unsigned p)
{
	struct portinfo_entry key = { NULL, port, p };
	const size_t *at;

	if (!portinfo_db.by_port)
		return NULL;
	at = bsearch(&key, portinfo_db.by_port, portinfo_db.nports, sizeof(size_t),
		     portinfo_port_key_cmp);
	return at ? portinfo_db.e[*at].name : NULL;
}

/* PORT's name in portinfo's table for one protocol P, or NULL. */
static const char *portinfo_builtin_name(unsigned port, unsigned p)
{
	for (size_t i = 0; i < sizeof(portinfo_builtin) / sizeof(portinfo_builtin[0]); i++)
		if ((portinfo_builtin[i].proto & p) && portinfo_builtin[i].port == port)
			return portinfo_builtin[i].name;
	return NULL;
}

bool portinfo_service_name(unsigned port, unsigned proto, char *buf, size_t len)
{
	const char *tcp = NULL, *udp = NULL;

	if (len)
		buf[0] = '\0';
	if (port == 0 || port > 65535)
		return false;
	portinfo_db_load();
	if (proto & RULE_PROTO_TCP)
		tcp = portinfo_db_name(port, RULE_PROTO_TCP);
	if (proto & RULE_PROTO_UDP)
		udp = portinfo_db_name(port, RULE_PROTO_UDP);
	/* The table only where the database names the port for neither of
	 * the rule's protocols: 3389 is ms-wbt-server for tcp in netbase, and
	 * a tcp+udp rule on it is that, not "ms-wbt-server/rdp". */
	if (!tcp && !udp) {
		if (proto & RULE_PROTO_TCP)
			tcp = portinfo_builtin_name(port, RULE_PROTO_TCP);
		if (proto & RULE_PROTO_UDP)
			udp = portinfo_builtin_name(port, RULE_PROTO_UDP);
	}
	if (tcp && udp && strcasecmp(tcp, udp) != 0 && strlen(tcp) + strlen(udp) + 2 <= len)
		snprintf(buf, len, "%s/%s", tcp, udp); /* one port, two services */
	else if (tcp || udp)
		snprintf(buf, len, "%s", tcp ? tcp : udp);
	else
		return false;
	return true;
}

const char *portinfo_describe(unsigned port, unsigned proto, char *buf, size_t len)
{
	char name[PORTINFO_NAME_MAX];

	if (portinfo_service_name(port, proto, name, sizeof(name)))
		snprintf(buf, len, "%s, %s", name, portinfo_range(port));
	else
		snprintf(buf, len, "%s", portinfo_range(port));
	return buf;
}
