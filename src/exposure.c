#include "exposure.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "config.h"
#include "iface.h"
#include "log.h"

/* Private, loopback and link-local are access.c's built-in lists
 * (@private, @loopback, @link-local): one table of what is not the internet. */
enum exposure_addr exposure_addr_class(const struct sockaddr *sa)
{
	const char *builtin;
	struct sockaddr_in v4;

	if (sa->sa_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr)) {
		memset(&v4, 0, sizeof(v4));
		v4.sin_family = AF_INET;
		memcpy(&v4.sin_addr, &((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr[12], 4);
		sa = (const struct sockaddr *)&v4;
	}
	if (rule_addr_is_wildcard(sa))
		return EXPOSURE_ADDR_WILDCARD;
	builtin = access_builtin_of(sa);
	if (!builtin)
		return EXPOSURE_ADDR_PUBLIC;
	if (strcmp(builtin, "loopback") == 0)
		return EXPOSURE_ADDR_LOOPBACK;
	if (strcmp(builtin, "link-local") == 0)
		return EXPOSURE_ADDR_LINK_LOCAL;
	return EXPOSURE_ADDR_PRIVATE;
}

/* The services that internet-wide scanners look for first. */
static const struct exposure_service exposure_services[] = {
	{ 22, "ssh", "password guessing" },
	{ 23, "telnet", "password guessing; logins cross the network in clear text" },
	{ 445, "smb", "file shares and worms that spread through SMB" },
	{ 2375, "docker", "the Docker API, which is root on the host" },
	{ 2376, "docker", "the Docker API, which is root on the host" },
	{ 3306, "mysql", "database password guessing and data theft" },
	{ 3389, "rdp", "password guessing and remote desktop exploits" },
	{ 5432, "postgres", "database password guessing and data theft" },
	{ 5900, "vnc", "desktops behind a weak password or none" },
	{ 6379, "redis", "databases without a password, taken over to run commands" },
	{ 9200, "elasticsearch", "indexes without a password, copied and wiped for ransom" },
	{ 27017, "mongodb", "databases without a password, copied and wiped for ransom" },
};

const struct exposure_service *exposure_hunted(unsigned port)
{
	for (size_t i = 0; i < sizeof(exposure_services) / sizeof(exposure_services[0]); i++)
		if (exposure_services[i].port == port)
			return &exposure_services[i];
	return NULL;
}

/* Who reaches rule R: its listen address's family (IPv6 sockets take IPv6
 * only; an IPv4-mapped listen address takes IPv4). */
static int exposure_family(const struct rule_config *r)
{
	const struct sockaddr *listen = (const struct sockaddr *)&r->listen;

	if (listen->sa_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)listen)->sin6_addr))
		return AF_INET;
	return listen->sa_family;
}

bool exposure_rule_has_allow(const struct rule_config *r)
{
	return access_policy_has_allow(r->access) &&
	       !access_set_covers_family(r->access->allow, exposure_family(r));
}

void exposure_list_free(struct exposure_list *l)
{
	for (size_t i = 0; i < l->count; i++) {
		free(l->items[i].message);
		free(l->items[i].text);
	}
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

const char *exposure_level_name(enum exposure_level level)
{
	return level == EXPOSURE_WARNING ? "warning" : "note";
}

static int exposure_add(struct exposure_list *l, const struct config *cfg, size_t rule,
			enum exposure_level level, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Appends one item about rule index RULE of CFG. Returns 0 or -1. */
static int exposure_add(struct exposure_list *l, const struct config *cfg, size_t rule,
			enum exposure_level level, const char *fmt, ...)
{
	const struct rule_config *r = &cfg->rules[rule];
	struct exposure_item *grown, *it;
	char *msg = NULL, *text = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if (asprintf(&text, "%s:%d: %s: rule \"%s\": %s", cfg->path, r->line,
		     exposure_level_name(level), r->name, msg) < 0) {
		free(msg);
		return -1;
	}
	grown = realloc(l->items, (l->count + 1) * sizeof(*grown));
	if (!grown) {
		free(msg);
		free(text);
		return -1;
	}
	l->items = grown;
	it = &l->items[l->count++];
	memset(it, 0, sizeof(*it));
	it->rule = rule;
	snprintf(it->name, sizeof(it->name), "%s", r->name);
	it->line = r->line;
	it->level = level;
	it->message = msg;
	it->text = text;
	return 0;
}

/* The warning for rule I if scanners can find a hunted service through it. */
static int exposure_check_listen(const struct config *cfg, size_t i, struct exposure_list *out)
{
	const struct rule_config *r = &cfg->rules[i];
	const struct sockaddr *listen = (const struct sockaddr *)&r->listen;
	const struct sockaddr *target = (const struct sockaddr *)&r->target;
	enum exposure_addr where = exposure_addr_class(listen);
	const struct exposure_service *to = exposure_hunted(rule_addr_port(target));
	const struct exposure_service *at = exposure_hunted(rule_addr_port(listen));
	char addr[RULE_ADDR_STRLEN], taddr[RULE_ADDR_STRLEN], what[320], facing[200] = "", how[128];

	/* Scanners hunt these over TCP, on the port they knock at (this rule's
	 * listen port) for the service behind it (the target's). */
	if ((!to && !at) || !(r->proto & RULE_PROTO_TCP) || exposure_rule_has_allow(r) ||
	    (where != EXPOSURE_ADDR_WILDCARD && where != EXPOSURE_ADDR_PUBLIC))
		return 0;
	/* A rule bound to an interface answers only there: a VPN or the LAN
	 * is no exposure; the interface the internet comes in by is. */
	if (r->interface[0]) {
		if (!iface_faces_internet(r->interface, exposure_family(r), how, sizeof(how)))
			return 0;
		snprintf(facing, sizeof(facing), " through interface %s, which %s", r->interface, how);
	}
	if (to)
		snprintf(what, sizeof(what), "forwards to port %u (%s), which scanners hunt (%s),",
			 to->port, to->name, to->risk);
	else
		snprintf(what, sizeof(what), "listens on port %u (%s), which scanners hunt (%s), and forwards it to %s,",
			 at->port, at->name, at->risk, rule_format_addr(target, taddr, sizeof(taddr)));
	return exposure_add(out, cfg, i, EXPOSURE_WARNING,
			    "%s from %s (%s)%s with no allow list that keeps anyone out: anyone who reaches this host can try it; add an allow list of the addresses that need it, or listen only on a VPN interface (interface = \"wg0\")",
			    what, rule_format_addr(listen, addr, sizeof(addr)),
			    where == EXPOSURE_ADDR_WILDCARD ? "every address of this host" : "a public address",
			    facing);
}

int exposure_check(const struct config *cfg, struct exposure_list *out)
{
	char addr[RULE_ADDR_STRLEN];

	exposure_list_free(out);
	for (size_t i = 0; i < cfg->nrules; i++) {
		const struct rule_config *r = &cfg->rules[i];
		const struct sockaddr *target = (const struct sockaddr *)&r->target;

		if (exposure_check_listen(cfg, i, out) < 0)
			return -1;
		if (exposure_addr_class(target) == EXPOSURE_ADDR_PUBLIC &&
		    exposure_add(out, cfg, i, EXPOSURE_NOTE,
				 "target %s is a public address (not private, link-local or loopback): the traffic goes out to the internet; check that this is the host you mean",
				 rule_format_addr(target, addr, sizeof(addr))) < 0)
			return -1;
	}
	return 0;
}

size_t exposure_count(const struct exposure_list *l, enum exposure_level level)
{
	size_t n = 0;

	for (size_t i = 0; i < l->count; i++)
		n += l->items[i].level == level;
	return n;
}

json_t *exposure_item_json(const struct exposure_item *it)
{
	return json_pack("{s:s, s:i, s:s, s:s}", "rule", it->name, "line", it->line, "level",
			 exposure_level_name(it->level), "message", it->message);
}

json_t *exposure_json(const struct exposure_list *l, size_t rule)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < l->count; i++)
		if (rule == SIZE_MAX || l->items[i].rule == rule)
			json_array_append_new(a, exposure_item_json(&l->items[i]));
	return a;
}

void exposure_log(const struct exposure_list *l)
{
	for (size_t i = 0; i < l->count; i++) {
		if (l->items[i].level == EXPOSURE_WARNING)
			log_warning("%s", l->items[i].text);
		else
			log_info("%s", l->items[i].text);
	}
}
