/*
 * Exposure: what a valid configuration opens to the internet, said as
 * warnings that never stop anything. One function (exposure_check) makes
 * the list; `portfwd -t` prints it (and fails with --strict), the daemon
 * logs it at start and after each reload, `check` and `reload` replies
 * carry it, and `status` shows each rule's next to the rule.
 *
 *  - warning: a TCP rule listening on a wildcard (0.0.0.0, [::]) or public
 *    address, not bound to an interface or bound to one the internet comes
 *    in by (iface_faces_internet), with no allow list that keeps anyone of
 *    its family out, whose target port or listen port is a service that
 *    scanners hunt (ssh, telnet, smb, rdp, vnc, databases, docker;
 *    exposure_hunted).
 *  - warning: a listen port in the kernel's ephemeral range
 *    (ip_local_port_range, less ip_local_reserved_ports; sysports.h): an
 *    outgoing connection may hold it when portfwd binds.
 *  - warning: a listen port that needs privilege (below the kernel's
 *    ip_unprivileged_port_start) when portfwd will not have it
 *    (struct exposure_privs says).
 *  - warning: a target on a public address (not private, link-local or
 *    loopback) and not on a network of this host's interfaces, from a rule
 *    that others reach; a note when the rule listens on loopback only (a
 *    local tunnel, not router-style forwarding).
 * A target that leads back to portfwd's own listeners is an error, not a
 * warning: config.c refuses it (forwarding loops).
 */
#ifndef PORTFWD_EXPOSURE_H
#define PORTFWD_EXPOSURE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "rule.h"

struct config;

/* Where an address is, as exposure sees it. */
enum exposure_addr {
	EXPOSURE_ADDR_WILDCARD,   /* 0.0.0.0, :: : every address of this host */
	EXPOSURE_ADDR_LOOPBACK,   /* 127.0.0.0/8, ::1 */
	EXPOSURE_ADDR_PRIVATE,    /* 10/8, 172.16/12, 192.168/16, 100.64/10 (CGNAT), fc00::/7 */
	EXPOSURE_ADDR_LINK_LOCAL, /* 169.254/16, fe80::/10 */
	EXPOSURE_ADDR_PUBLIC,     /* anything else */
};

/* The class of SA's address (AF_INET or AF_INET6; an IPv4-mapped IPv6
 * address counts as its IPv4 address). */
enum exposure_addr exposure_addr_class(const struct sockaddr *sa);

/* A service that scanners hunt, by port. */
struct exposure_service {
	unsigned port;
	const char *name; /* "ssh" */
	const char *risk; /* what they hunt it for, "password guessing" */
};

/* The hunted service on PORT, or NULL. */
const struct exposure_service *exposure_hunted(unsigned port);

/* True if R has an allow list that keeps someone out (not 0.0.0.0/0 or
 * ::/0): only the addresses on it may connect. */
bool exposure_rule_has_allow(const struct rule_config *r);

enum exposure_level {
	EXPOSURE_NOTE,
	EXPOSURE_WARNING,
};

/* The rule index of items about daemon.http, not a rule. */
#define EXPOSURE_HTTP (SIZE_MAX - 1)

struct exposure_item {
	size_t rule; /* index in the configuration's rules, or EXPOSURE_HTTP */
	char name[RULE_NAME_MAX + 1];
	int line;
	enum exposure_level level;
	char *message; /* what and why, without file, line or rule */
	char *text;    /* "FILE:LINE: warning: rule \"NAME\": MESSAGE" */
};

struct exposure_list {
	struct exposure_item *items;
	size_t count;
};

/*
 * Whether portfwd may bind a listen port that needs privilege (root or
 * CAP_NET_BIND_SERVICE), for the warning about one.
 */
struct exposure_privs {
	bool can_bind_low; /* root, or the capability, when it binds */
	bool running;      /* the running daemon's own: "does not have", not "will not have" */
	char who[160];     /* who it runs as: "running as nobody, uid 65534" */
	char fix[320];     /* what gives it the privilege: "run it as root with daemon.user set, ..." */
	/* NULL, or one per rule of the configuration checked: true when the
	 * running daemon holds that rule's sockets already (a reload keeps
	 * them, and binds nothing). */
	const bool *bound;
};

/* As portfwd would be if started as this process is, with CFG: root binds
 * every listener before it becomes daemon.user, and keeps the capability
 * when a rule needs it; anyone else has what this process has. For -t and
 * for the daemon's start. */
void exposure_privs_at_start(const struct config *cfg, struct exposure_privs *p);

/* As the running daemon is now (check, reload): its own privileges.
 * GAVE_ROOT_UP: it started as root and became daemon.user; ROOT_LACKED_CAP:
 * that root had no CAP_NET_BIND_SERVICE to keep (a container, a unit's
 * bounding set), so a restart would not bring it back. */
void exposure_privs_now(bool gave_root_up, bool root_lacked_cap, struct exposure_privs *p);

/*
 * Replaces OUT (free it first, or start from { 0 }) with the warnings and
 * notes for CFG's rules, in rule order, FILE being CFG->path; PRIVS (NULL:
 * no warning about privilege) says what portfwd may bind. Reads the
 * kernel's port settings (sysports.h) and this host's interfaces.
 * Returns 0, or -1 when out of memory (OUT has what fitted).
 */
int exposure_check(const struct config *cfg, const struct exposure_privs *privs,
		   struct exposure_list *out);

void exposure_list_free(struct exposure_list *l);

/* How many items of LEVEL L has. */
size_t exposure_count(const struct exposure_list *l, enum exposure_level level);

/* "warning" or "note". */
const char *exposure_level_name(enum exposure_level level);

/* { "rule", "line", "level", "message" } for one item. */
json_t *exposure_item_json(const struct exposure_item *it);

/* The items of L as a JSON array: all of them, or with RULE not SIZE_MAX
 * those of rule index RULE. */
json_t *exposure_json(const struct exposure_list *l, size_t rule);

/* Logs every item as its text: warnings as warnings, notes as info. */
void exposure_log(const struct exposure_list *l);

#endif
