#include "exposure.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <unistd.h>

#include "access.h"
#include "config.h"
#include "iface.h"
#include "router.h"
#include "localaddr.h"
#include "log.h"
#include "portinfo.h"
#include "privs.h"
#include "sysports.h"

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
	const struct rule_config *r = rule == EXPOSURE_HTTP ? NULL : &cfg->rules[rule];
	const char *name = r ? r->name : "daemon.http";
	int line = r ? r->line : (int)cfg->http.line;
	struct exposure_item *grown, *it;
	char *msg = NULL, *text = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((r ? asprintf(&text, "%s:%d: %s: rule \"%s\": %s", cfg->path, line,
			  exposure_level_name(level), name, msg)
	       : asprintf(&text, "%s:%d: %s: %s: %s", cfg->path, line, exposure_level_name(level),
			  name, msg)) < 0) {
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
	snprintf(it->name, sizeof(it->name), "%s", name);
	it->line = line;
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
	const struct exposure_service *to = NULL, *at = NULL;
	char addr[RULE_ADDR_STRLEN], taddr[RULE_ADDR_STRLEN], what[320], facing[200] = "", how[128];
	char mapped[128] = "";
	struct sockaddr_storage tport;
	/* router = ...: the internet knocks at the router's external ports. */
	bool routed = r->set.router != ROUTER_OFF;
	unsigned first = rule_port_first(r), ext0 = routed && r->external_port ? r->external_port : first;
	unsigned at_listen = 0;

	/* Every port of a range: the first hunted one, behind or in front. */
	for (unsigned p = first; p <= rule_port_last(r) && !to; p++)
		to = exposure_hunted(rule_target_port(r, p));
	for (unsigned p = first; p <= rule_port_last(r) && !at; p++)
		if ((at = exposure_hunted(ext0 + (p - first))))
			at_listen = p;
	if (at && !to) {
		rule_addr_set_port(target, rule_target_port(r, at_listen), &tport);
		target = (const struct sockaddr *)&tport;
	}

	/* Scanners hunt these over TCP, on the port they knock at (this rule's
	 * listen port, or the router's) for the service behind it (the
	 * target's). A rule the router maps faces the internet whatever its
	 * address or interface. */
	if ((!to && !at) || !(r->proto & RULE_PROTO_TCP) || exposure_rule_has_allow(r) ||
	    (where != EXPOSURE_ADDR_WILDCARD && where != EXPOSURE_ADDR_PUBLIC && !routed))
		return 0;
	/* A rule bound to an interface answers only there: a VPN or the LAN
	 * is no exposure; the interface the internet comes in by is. */
	if (r->interface[0] && !routed) {
		if (!iface_faces_internet(r->interface, exposure_family(r), how, sizeof(how)))
			return 0;
		snprintf(facing, sizeof(facing), " through interface %s, which %s", r->interface, how);
	}
	if (to)
		snprintf(what, sizeof(what), "forwards to port %u (%s), which scanners hunt (%s),",
			 to->port, to->name, to->risk);
	else
		snprintf(what, sizeof(what), "%s port %u (%s), which scanners hunt (%s), and forwards it to %s,",
			 routed ? "gets from the home router" : "listens on", at->port, at->name, at->risk,
			 rule_target_host(r) ? rule_format_target(r, taddr, sizeof(taddr))
					     : rule_format_addr(target, taddr, sizeof(taddr)));
	/* router = ...: the home router is asked to open it to the internet. */
	if (r->set.router != ROUTER_OFF)
		snprintf(mapped, sizeof(mapped), ", and router = \"%s\" opens it on the home router to the whole internet,",
			 router_method_name(r->set.router));
	return exposure_add(out, cfg, i, EXPOSURE_WARNING,
			    "%s from %s (%s)%s%s with no allow list that keeps anyone out: anyone who reaches this host can try it; add an allow list of the addresses that need it, or listen only on a VPN interface (interface = \"wg0\")",
			    what, rule_format_listen(r, addr, sizeof(addr)),
			    where == EXPOSURE_ADDR_WILDCARD ? "every address of this host"
			    : where == EXPOSURE_ADDR_PUBLIC ? "a public address"
							    : "an address of this host",
			    facing, mapped);
}

/* "running as nobody, uid 65534" (or "running as uid 1000" without a
 * name) in BUF; root that lacks CAP_NET_BIND_SERVICE (a container) says so. */
static void exposure_who(char *buf, size_t len)
{
	uid_t uid = geteuid();
	struct passwd *pw = getpwuid(uid);

	if (pw)
		snprintf(buf, len, "running as %s, uid %u%s", pw->pw_name, (unsigned)uid,
			 uid == 0 ? ", without the capability" : "");
	else
		snprintf(buf, len, "running as uid %u%s", (unsigned)uid,
			 uid == 0 ? ", without the capability" : "");
}

/* Root without CAP_NET_BIND_SERVICE: something above it took it away. */
#define EXPOSURE_FIX_ROOT \
	"give the capability back to the container or the unit (its capability bounding set leaves it out)"

void exposure_privs_at_start(const struct config *cfg, struct exposure_privs *p)
{
	(void)cfg; /* daemon.user: root binds before the drop and keeps what a rule needs */
	memset(p, 0, sizeof(*p));
	p->can_bind_low = privs_can_bind_low();
	exposure_who(p->who, sizeof(p->who));
	if (geteuid() == 0)
		snprintf(p->fix, sizeof(p->fix), "%s", EXPOSURE_FIX_ROOT);
	else
		snprintf(p->fix, sizeof(p->fix),
			 "start it as root with daemon.user set (it binds its ports, then gives root up) or with the capability (the shipped unit's AmbientCapabilities=CAP_NET_BIND_SERVICE)");
}

void exposure_privs_now(bool gave_root_up, bool root_lacked_cap, struct exposure_privs *p)
{
	memset(p, 0, sizeof(*p));
	p->can_bind_low = privs_can_bind_low();
	p->running = true;
	exposure_who(p->who, sizeof(p->who));
	if (gave_root_up && root_lacked_cap)
		snprintf(p->who + strlen(p->who), sizeof(p->who) - strlen(p->who),
			 ", since it started as root without the capability");
	else if (gave_root_up)
		snprintf(p->who + strlen(p->who), sizeof(p->who) - strlen(p->who),
			 ", since it gave root up at start with no rule that needed the capability");
	if (geteuid() == 0 || root_lacked_cap)
		snprintf(p->fix, sizeof(p->fix), "%s", EXPOSURE_FIX_ROOT);
	else
		snprintf(p->fix, sizeof(p->fix), "restart it %s",
			 gave_root_up ? "(as root, it binds this port before giving root up)"
				      : "as root with daemon.user set, or with the capability");
}

/* The warning for rule I if its listen port is in the ephemeral range. */
static int exposure_check_ephemeral(const struct config *cfg, size_t i, const struct sysports *sp,
				    struct exposure_list *out)
{
	const struct rule_config *r = &cfg->rules[i];
	unsigned port = rule_port_first(r), last = rule_port_last(r), first, n;
	char reserve[SYSPORTS_RESERVED_TEXT_MAX + 128], span[16];

	if (!(n = sysports_ephemeral_overlap(sp, port, last, &first)))
		return 0;
	if (port != last) {
		/* A range: the ports of it in the ephemeral range, not reserved. */
		snprintf(span, sizeof(span), "%u-%u", port, last);
		if (sp->reserved_long)
			snprintf(reserve, sizeof(reserve),
				 "reserve them by adding %s to net.ipv4.ip_local_reserved_ports (sysctl -w replaces that list)",
				 span);
		else
			snprintf(reserve, sizeof(reserve), "reserve them with `sysctl -w net.ipv4.ip_local_reserved_ports=%s%s%s`",
				 sp->reserved_text, sp->reserved_text[0] ? "," : "", span);
		return exposure_add(out, cfg, i, EXPOSURE_WARNING,
				    "listen ports %s: %u of them, from %u, may collide with outgoing connections (the kernel hands ports %u-%u to them, net.ipv4.ip_local_port_range): if one holds a port when portfwd binds, at start or reload, that port fails; pick ports outside that range, or %s (and in /etc/sysctl.d to keep it)",
				    span, n, first, sp->eph_lo, sp->eph_hi, reserve);
	}
	/* sysctl -w replaces the list: keep what is on it. */
	if (sp->reserved_long)
		snprintf(reserve, sizeof(reserve),
			 "reserve it by adding it to net.ipv4.ip_local_reserved_ports (sysctl -w replaces that list)");
	else
		snprintf(reserve, sizeof(reserve), "reserve it with `sysctl -w net.ipv4.ip_local_reserved_ports=%s%s%u`",
			 sp->reserved_text, sp->reserved_text[0] ? "," : "", port);
	return exposure_add(out, cfg, i, EXPOSURE_WARNING,
			    "listen port %u may collide with outgoing connections (the kernel hands ports %u-%u to them, net.ipv4.ip_local_port_range): if one holds it when portfwd binds, at start or reload, the bind fails; pick a port outside that range, or %s (and in /etc/sysctl.d to keep it)",
			    port, sp->eph_lo, sp->eph_hi, reserve);
}

/* The warning for rule I if binding its listen port needs a privilege
 * that portfwd will not have. */
static int exposure_check_privileged(const struct config *cfg, size_t i, const struct sysports *sp,
				     const struct exposure_privs *privs, struct exposure_list *out)
{
	/* A range's lowest port is its first. */
	unsigned port = rule_port_first(&cfg->rules[i]), last = rule_port_last(&cfg->rules[i]);
	char below[128], ports[32];

	if (!privs || privs->can_bind_low || (privs->bound && privs->bound[i]) ||
	    !sysports_port_privileged(sp, port))
		return 0;
	if (port != last) {
		snprintf(ports, sizeof(ports), "%u-%u", port, last);
		return exposure_add(out, cfg, i, EXPOSURE_WARNING,
				    "listen ports %s start below %u (this kernel's net.ipv4.ip_unprivileged_port_start): binding those needs root or CAP_NET_BIND_SERVICE, which portfwd %s (%s); %s, or listen on ports %u and above",
				    ports, sp->unpriv_start, privs->running ? "does not have" : "will not have",
				    privs->who, privs->fix, sp->unpriv_start);
	}
	if (sp->unpriv_start == 1024)
		snprintf(below, sizeof(below), "%s (below 1024)", portinfo_range(port));
	else
		snprintf(below, sizeof(below), "below %u (this kernel's net.ipv4.ip_unprivileged_port_start)",
			 sp->unpriv_start);
	return exposure_add(out, cfg, i, EXPOSURE_WARNING,
			    "listen port %u is %s: binding it needs root or CAP_NET_BIND_SERVICE, which portfwd %s (%s); %s, or listen on port %u or above",
			    port, below, privs->running ? "does not have" : "will not have", privs->who,
			    privs->fix, sp->unpriv_start);
}

/* The warning (a note for a rule on loopback only) for rule I if its
 * target is on the internet: neither private, link-local nor loopback, nor
 * on a network of this host's interfaces. */
static int exposure_check_target(const struct config *cfg, size_t i, struct exposure_list *out)
{
	const struct rule_config *r = &cfg->rules[i];
	const struct sockaddr *target = (const struct sockaddr *)&r->target;
	const struct sockaddr *listen = (const struct sockaddr *)&r->listen;
	char addr[RULE_ADDR_STRLEN], laddr[RULE_ADDR_STRLEN], ifname[IFNAMSIZ];
	const struct sockaddr *plain = target;
	struct sockaddr_in v4;

	/* A host name: its address is known only once it resolves. */
	if (rule_target_host(r) || exposure_addr_class(target) != EXPOSURE_ADDR_PUBLIC)
		return 0;
	if (target->sa_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)target)->sin6_addr)) {
		memset(&v4, 0, sizeof(v4));
		v4.sin_family = AF_INET;
		memcpy(&v4.sin_addr, &((const struct sockaddr_in6 *)target)->sin6_addr.s6_addr[12], 4);
		plain = (const struct sockaddr *)&v4;
	}
	/* A LAN with public addresses (IPv6 has no NAT) is still the LAN, and
	 * so is a network this host has a route of its own to (a sibling
	 * VLAN behind the LAN router, a VPN, an address given as /128 by
	 * DHCPv6 with the /64 on-link from the router's advertisements). */
	if (iface_on_link(plain, ifname, sizeof(ifname)) || iface_routed(plain, ifname, sizeof(ifname)))
		return 0;
	rule_format_addr(target, addr, sizeof(addr));
	if (exposure_addr_class(listen) == EXPOSURE_ADDR_LOOPBACK)
		return exposure_add(out, cfg, i, EXPOSURE_NOTE,
				    "target %s is a public address (not private, link-local or loopback): the traffic goes out to the internet; check that this is the host you mean",
				    addr);
	return exposure_add(out, cfg, i, EXPOSURE_WARNING,
			    "target %s is a public address, on none of this host's networks: what reaches %s goes out to the internet, and whoever reaches this host reaches that one through it; router-style forwarding goes to a machine on the LAN, whose address is private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7): check the address for a slip (loopback, private and link-local targets, and those on this host's networks or routes of their own, are fine)",
			    addr, rule_format_addr(listen, laddr, sizeof(laddr)));
}

/* The warning for rule I if its source is none of this host's addresses:
 * every connection and session towards its target would fail to bind. */
static int exposure_check_source(const struct config *cfg, size_t i, struct localaddr *la,
				 struct exposure_list *out)
{
	const struct rule_config *r = &cfg->rules[i];
	char addr[RULE_ADDR_STRLEN];

	if (!r->source_len || localaddr_is_local(la, (const struct sockaddr *)&r->source))
		return 0;
	rule_format_host((const struct sockaddr *)&r->source, addr, sizeof(addr));
	return exposure_add(out, cfg, i, EXPOSURE_WARNING,
			    "source %s is not an address of this host: until an interface has it, nothing can leave from it, so every TCP client is closed and every UDP client's datagrams are dropped; check the address (`ip address` lists this host's)",
			    addr);
}

/* A rule that asks the home router to open its port to the internet,
 * with no allow list, and not warned of above (no hunted service): a note
 * that anyone can now connect. */
static int exposure_check_router(const struct config *cfg, size_t i, const struct exposure_list *out,
				 struct exposure_list *add)
{
	const struct rule_config *r = &cfg->rules[i];
	char ports[16];

	if (r->set.router == ROUTER_OFF || exposure_rule_has_allow(r))
		return 0;
	for (size_t k = 0; k < out->count; k++)
		if (out->items[k].rule == i && out->items[k].level == EXPOSURE_WARNING &&
		    strstr(out->items[k].message, "opens it on the home router"))
			return 0;
	unsigned ext = r->external_port ? r->external_port : rule_port_first(r);

	if (rule_is_range(r))
		snprintf(ports, sizeof(ports), "s %u-%u", ext, ext + (rule_port_last(r) - rule_port_first(r)));
	else
		snprintf(ports, sizeof(ports), " %u", ext);
	return exposure_add(add, cfg, i, EXPOSURE_NOTE,
			    "router = \"%s\" opens port%s on the home router to the whole internet, with no allow list: anyone can connect; give the rule an allow list where you can",
			    router_method_name(r->set.router), ports);
}

/*
 * daemon.http anywhere but loopback with no allow list: whoever reaches the
 * address reads the rules, their addresses and counters.
 */
static int exposure_check_http(const struct config *cfg, struct exposure_list *out)
{
	const struct sockaddr *sa = (const struct sockaddr *)&cfg->http.listen;
	const struct access_policy *p = cfg->http.access;
	char addr[RULE_ADDR_STRLEN];

	if (!cfg->http.enabled || exposure_addr_class(sa) == EXPOSURE_ADDR_LOOPBACK ||
	    (access_policy_has_allow(p) && !access_set_covers_family(p->allow, sa->sa_family)))
		return 0;
	return exposure_add(out, cfg, EXPOSURE_HTTP, EXPOSURE_WARNING,
			    "listens on %s with no allow list: anyone who reaches it reads every rule, its addresses and counters; add allow = [ \"private\" ] (or your LAN's prefix), or listen on 127.0.0.1",
			    rule_format_addr(sa, addr, sizeof(addr)));
}

int exposure_check(const struct config *cfg, const struct exposure_privs *privs,
		   struct exposure_list *out)
{
	struct sysports *sp = malloc(sizeof(*sp));
	struct localaddr la = { 0 };
	int rc = 0;

	exposure_list_free(out);
	if (!sp)
		return -1;
	sysports_read(sp);
	for (size_t i = 0; i < cfg->nrules; i++) {
		if (exposure_check_listen(cfg, i, out) < 0 ||
		    exposure_check_ephemeral(cfg, i, sp, out) < 0 ||
		    exposure_check_privileged(cfg, i, sp, privs, out) < 0 ||
		    exposure_check_target(cfg, i, out) < 0 ||
		    exposure_check_source(cfg, i, &la, out) < 0 ||
		    exposure_check_router(cfg, i, out, out) < 0) {
			rc = -1;
			break;
		}
	}
	if (rc == 0 && exposure_check_http(cfg, out) < 0)
		rc = -1;
	localaddr_free(&la);
	free(sp);
	return rc;
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
