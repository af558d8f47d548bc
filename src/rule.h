/*
 * The rule model: one forwarding rule's configuration as plain data that
 * can be copied and compared. Runtime state (sockets, sessions, counters)
 * lives elsewhere and points here.
 */
#ifndef PORTFWD_RULE_H
#define PORTFWD_RULE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <net/if.h>
#include <stddef.h>
#include <sys/socket.h>

#define RULE_NAME_MAX 64
/* "[" + IPv6 text + "]:" + port range ("27015-27030") + NUL */
#define RULE_ADDR_STRLEN 64
/* Most ports one rule's listen range may hold. */
#define RULE_RANGE_MAX 4096

struct access_policy;

enum rule_proto {
	RULE_PROTO_TCP = 1,
	RULE_PROTO_UDP = 2,
	RULE_PROTO_BOTH = RULE_PROTO_TCP | RULE_PROTO_UDP,
};

/*
 * Limits per source of one rule (per_source): a source is an IPv4 address,
 * or the first ipv6_prefix bits of an IPv6 address. 0 = no limit.
 */
struct rule_per_source {
	unsigned max_connections;          /* concurrent TCP connections */
	unsigned new_per_minute;           /* new TCP connections a minute */
	unsigned udp_sessions;             /* concurrent UDP sessions */
	unsigned udp_datagrams_per_second; /* to the target, and replies to the source */
	unsigned ipv6_prefix;              /* 1-128 */
};

/* The tunables that `defaults` sets and every rule may override. */
struct rule_settings {
	double connect_timeout;  /* seconds, > 0 */
	double idle_timeout;     /* seconds, 0 = never */
	double udp_idle_timeout; /* seconds, > 0 */
	unsigned max_connections;
	unsigned max_udp_sessions;
	size_t buffer_size;
	bool splice; /* move TCP bytes with splice(2) rather than copying */
	/* TCP keepalive on both sockets of a connection, so that a peer that
	 * vanished without FIN or RST is found and its connection freed. */
	bool keepalive;
	unsigned keepalive_idle;     /* seconds without traffic before the first probe */
	unsigned keepalive_interval; /* seconds between probes */
	unsigned keepalive_count;    /* unanswered probes before the connection is dead */
	/* seconds before a UDP session that its target never answered ends */
	double udp_unreplied_timeout;
	struct rule_per_source per_source;
	/* PROXYPROTO_NONE, _V1 or _V2 (proxyproto.h): the header sent to the
	 * target ahead of a client's bytes (TCP) or of every datagram (UDP, v2). */
	unsigned proxy_protocol;
	/* Targets given by host name (resolve.h): which families (enum
	 * resolve_family), and the bounds on how long an answer is used. */
	unsigned resolve;
	double resolve_min, resolve_max; /* seconds; 0 < min <= max */
	/* router = ...: how the home router is asked to forward the port
	 * (enum router_method, router.h; 0 off), and the lease asked for. */
	unsigned router;
	unsigned router_lease; /* seconds */
};

/* Room for a port's service name (portinfo.h's PORTINFO_NAME_MAX). */
#define RULE_SERVICE_MAX 64

/* targets = [ ... ]: at most this many (the relays keep a 64-bit mask of
 * the targets a connection tried). */
#define RULE_TARGETS_MAX 64
/* A target as written: "192.168.0.2:ssh", "nas.lan:445". */
#define RULE_TARGET_TEXT_MAX 320
/* A host name: at most 253 characters (RFC 1035), and the NUL. */
#define RULE_HOST_MAX 254

/* How a rule with several targets chooses one (targets.h). */
enum rule_balance {
	RULE_BALANCE_FAILOVER = 0, /* the first that is up */
	RULE_BALANCE_ROUND_ROBIN,
	RULE_BALANCE_SOURCE_HASH, /* by the client's address (not its port) */
	RULE_BALANCE_LEAST_CONN,  /* the fewest active connections and sessions */
};

/*
 * One target of a rule: the text as written and the address it stands
 * for now. Numeric only today; a host name would keep its text here and
 * get its addresses from a resolver, so nothing else reads the text.
 */
struct rule_target {
	char text[RULE_TARGET_TEXT_MAX];
	/* A host name ("nas.lan"), "" for a numeric address. A named target's
	 * addr is a placeholder (0.0.0.0 with the port), which only its port
	 * is read from: its addresses come from the resolver (targets.c). */
	char host[RULE_HOST_MAX];
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char service[RULE_SERVICE_MAX]; /* the port's service name, "" for none */
	int line;
};

/* targets = [ ... ] of a rule: immutable once read, shared (reference
 * counted) by every copy of the rule, as its access policy is. */
struct rule_targets {
	_Atomic unsigned refs;
	size_t n; /* 1 - RULE_TARGETS_MAX */
	struct rule_target t[];
};

/* health_check = { ... }: a TCP connect to each target every interval. */
struct rule_health {
	bool enabled; /* off unless the rule has health_check */
	double interval, timeout; /* seconds; 0 < timeout < interval */
	unsigned rise, fall;      /* consecutive successes to go up, failures to go down */
};

struct rule_targets *rule_targets_new(size_t n);
struct rule_targets *rule_targets_ref(struct rule_targets *t);
void rule_targets_unref(struct rule_targets *t);

/* "failover", "round-robin", "source-hash", "least-connections"; parse: -1 if none. */
const char *rule_balance_name(enum rule_balance b);
int rule_balance_parse(const char *text);
/* The names, for messages: "failover, round-robin, ...". */
#define RULE_BALANCE_NAMES "failover, round-robin, source-hash, least-connections"

struct rule_config {
	char name[RULE_NAME_MAX + 1];
	unsigned proto; /* enum rule_proto bits */
	struct sockaddr_storage listen;
	socklen_t listen_len;
	struct sockaddr_storage target;
	socklen_t target_len;
	struct rule_settings set;
	/* Who may connect (access.h): NULL lets everyone in. Each holder of a
	 * copy of the rule (its config, its forward, a snapshot) owns a reference. */
	struct access_policy *access;
	int line; /* where the rule starts in its file, for messages */
	/* The interface its sockets are bound to (SO_BINDTODEVICE, see
	 * iface.h); "" for none. Not part of the listener's identity: a
	 * changed interface rebinds the rule's sockets on reload. */
	char interface[IFNAMSIZ];
	/* source = "192.168.0.10": the local address the sockets towards the
	 * target are bound to (port 0, IP_BIND_ADDRESS_NO_PORT), of the
	 * target's family; source_len 0 for none (the kernel chooses). */
	struct sockaddr_storage source;
	socklen_t source_len;
	/* The service names of the listen and target ports for the rule's
	 * protocol ("" for none), looked up when the rule is read (the
	 * workers show them without touching the services database). Only
	 * for display: not compared on reload, so an edit of /etc/services
	 * never restarts a rule. */
	char listen_service[RULE_SERVICE_MAX];
	char target_service[RULE_SERVICE_MAX];
	/* targets = [ ... ]: NULL for a rule with one `target` (the list is
	 * then that one). With a list, target/target_len/target_service are
	 * its first entry, for what shows one target. Each holder of a copy
	 * owns a reference, as for access. */
	struct rule_targets *targets;
	enum rule_balance balance;
	struct rule_health health;
	/* A port range ("0.0.0.0:27015-27030"): listen's port is the first,
	 * listen_last the last; 0 for a single port. target_range: the target
	 * is a range as long, port N going to the target's port + (N - first);
	 * otherwise every listen port goes to the target's one port. */
	unsigned listen_last;
	bool target_range;
	/* freebind = true: the listening sockets may bind an address this host
	 * does not have (yet), as a VRRP standby does (IP_FREEBIND). */
	bool freebind;
	/* external_port: the router's port for the (first) listen port; 0
	 * for the listen port itself. Only with router (rule_settings). */
	unsigned external_port;
};

/* True if NAME is a host name portfwd resolves: 1-253 characters of
 * dot-separated labels of 1-63 letters, digits and hyphens (none first or
 * last), a final dot allowed, and not all digits and dots (an address). */
bool rule_host_name_valid(const char *name);

/*
 * Parses "host.name:port" or "host.name:first-last" (a port range), the
 * port as for rule_parse_range (a service name may stand for it) into T:
 * its host, its text, and a placeholder address 0.0.0.0 with the port.
 * LAST as rule_parse_range's. Returns 0, or -1 with a sentence in ERR (then
 * TEXT is no host name either: the caller's message about an address
 * stands).
 */
int rule_parse_named(const char *text, unsigned proto, struct rule_target *t, unsigned *last,
		     char *err, size_t errlen);

/* True if any of R's targets is a host name. */
bool rule_has_names(const struct rule_config *r);

/* The host name of R's first target, or NULL when it is an address. */
const char *rule_target_host(const struct rule_config *r);

/* How many targets R has (1 without a list), and target I's address. */
size_t rule_ntargets(const struct rule_config *r);
const struct sockaddr *rule_target_addr(const struct rule_config *r, size_t i, socklen_t *len);
const char *rule_target_service(const struct rule_config *r, size_t i);

/* The first and last port of R's listen range (the same for one port),
 * and how many ports it has. */
unsigned rule_port_first(const struct rule_config *r);
unsigned rule_port_last(const struct rule_config *r);
unsigned rule_nports(const struct rule_config *r);
/* True if R listens on more than one port. */
bool rule_is_range(const struct rule_config *r);

/* The target port for a client that came to listen port PORT of R: the
 * same offset into the target range, or the target's one port. A PORT
 * outside the range (a port a reload took out) keeps the offset when it
 * fits in 1-65535, else the target's first port. */
unsigned rule_target_port(const struct rule_config *r, unsigned port);
/* The same from a target port BASE (one of the rule's targets'). */
unsigned rule_target_port_of(const struct rule_config *r, unsigned base, unsigned port);

/* SA with its port set to PORT, into OUT. */
void rule_addr_set_port(const struct sockaddr *sa, unsigned port, struct sockaddr_storage *out);

/* True if the listen ranges of A and B, on the same protocol, would collide
 * (rule_addr_collide for some port they have in common). */
bool rule_listen_collide(const struct rule_config *a, const struct rule_config *b);

/* Writes R's listen or target ("0.0.0.0:27015-27030", or as rule_format_addr
 * for a single port) into BUF (RULE_ADDR_STRLEN bytes). Returns BUF. */
const char *rule_format_listen(const struct rule_config *r, char *buf, size_t len);
const char *rule_format_target(const struct rule_config *r, char *buf, size_t len);

/*
 * Parses "IPv4:port", "[IPv6]:port", or with a range of ports
 * "IPv4:first-last" (numbers only, first <= last, at most RULE_RANGE_MAX
 * ports). LAST gets the last port, or 0 for a single port (a range of one
 * is a single port). PROTO as rule_parse_addr_for, for a single port.
 * Returns 0, or -1 with a sentence in ERR.
 */
int rule_parse_range(const char *text, unsigned proto, struct sockaddr_storage *ss, socklen_t *len,
		     unsigned *last, char *err, size_t errlen);

/* Fills R's listen_service and target_service from the services database
 * and portinfo's table. Main thread only (portinfo's). */
void rule_name_ports(struct rule_config *r);

/*
 * Writes "0.0.0.0:2222 (registered)" or "192.168.0.2:22 (ssh, well-known)":
 * the address SA, then its port's service name (SERVICE, "" for none) and
 * IANA class. BUF: RULE_PORT_STRLEN bytes. Returns BUF. Any thread.
 */
#define RULE_PORT_STRLEN (RULE_ADDR_STRLEN + RULE_SERVICE_MAX + 16)
const char *rule_format_port(const struct sockaddr *sa, const char *service, char *buf,
			     size_t len);

/* {"port": 22, "service": "ssh" or null, "class": "well-known"}: a port as
 * --json documents show it. NULL when out of memory. Any thread. */
struct json_t;
struct json_t *rule_port_json(const struct sockaddr *sa, const char *service);

/* For a range, sets listen_range {first, last} in OBJ, and target_range
 * {first, last} where the target is one; nothing for a single port. */
void rule_range_json(const struct rule_config *r, struct json_t *obj);

/* R's (first) target as rule_format_port writes it, a host name or a port
 * range too ("nas.lan:445 (microsoft-ds, well-known)"). BUF:
 * RULE_HOST_MAX + RULE_PORT_STRLEN bytes. Returns BUF. Any thread. */
const char *rule_format_target_port(const struct rule_config *r, char *buf, size_t len);

/* R's listen and target as "LISTEN (...) -> TARGET (...)". BUF:
 * 2 * RULE_PORT_STRLEN + 4 bytes. Returns BUF. Any thread. */
#define RULE_ROUTE_STRLEN (2 * RULE_PORT_STRLEN + RULE_HOST_MAX + 4)
const char *rule_format_route(const struct rule_config *r, char *buf, size_t len);

/* The built-in defaults, used where the file says nothing. */
void rule_settings_init(struct rule_settings *set);

/* "tcp", "udp" or "tcp+udp"; returns the proto bits or 0. */
unsigned rule_proto_parse(const char *text);
const char *rule_proto_name(unsigned proto);

/* True if NAME is 1-64 characters of [A-Za-z0-9._-]. */
bool rule_name_valid(const char *name);

/*
 * Parses a numeric "IPv4:port" or "[IPv6]:port" with port 1-65535.
 * Returns 0 and fills SS/LEN, or -1 with a sentence in ERR saying what is
 * wrong (no host names: they are never resolved).
 */
int rule_parse_addr(const char *text, struct sockaddr_storage *ss,
		    socklen_t *len, char *err, size_t errlen);

/* The same, where a service name may stand for the port ("192.168.0.2:ssh"),
 * looked up for PROTO (RULE_PROTO_*; RULE_PROTO_ANY: either will do, for a
 * rule whose proto is bad; 0: numbers only) in the services database and
 * portinfo's table (portinfo_service_port). */
#define RULE_PROTO_ANY 0x100u
int rule_parse_addr_for(const char *text, unsigned proto, struct sockaddr_storage *ss,
			socklen_t *len, char *err, size_t errlen);

/* Writes "1.2.3.4:80" or "[::1]:80" into BUF (RULE_ADDR_STRLEN bytes). */
const char *rule_format_addr(const struct sockaddr *sa, char *buf,
			     size_t buflen);

/* Writes the address alone, "1.2.3.4" or "::1", into BUF (RULE_ADDR_STRLEN bytes). */
const char *rule_format_host(const struct sockaddr *sa, char *buf, size_t buflen);

/*
 * Writes a client as log lines about refused clients name it, the address
 * apart from the port as sshd does ("203.0.113.9 port 51234", "2001:db8::7
 * port 5353"), so that fail2ban's <ADDR> takes both families; an IPv4
 * client on an IPv6 socket is written as IPv4. BUF: RULE_ADDR_STRLEN + 8.
 */
#define RULE_CLIENT_STRLEN (RULE_ADDR_STRLEN + 8)
const char *rule_format_client(const struct sockaddr *sa, char *buf, size_t buflen);

/* The port of an AF_INET or AF_INET6 address, in host order. */
unsigned rule_addr_port(const struct sockaddr *sa);

/* True if A and B are the same family, address and port. */
bool rule_addr_equal(const struct sockaddr *a, const struct sockaddr *b);

/* True if A is 0.0.0.0 or [::]. */
bool rule_addr_is_wildcard(const struct sockaddr *a);

/*
 * True if sockets bound to A and to B (same protocol) would collide: the
 * same family and port, and the same address or either one the wildcard.
 * IPv4 and IPv6 never collide: portfwd's IPv6 sockets are IPV6_V6ONLY.
 */
bool rule_addr_collide(const struct sockaddr *a, const struct sockaddr *b);

/* Same settings; same rule apart from where it stands in its file (and
 * how its lists are spelt: the same addresses allowed and denied). */
bool rule_settings_equal(const struct rule_settings *a, const struct rule_settings *b);
bool rule_config_equal(const struct rule_config *a, const struct rule_config *b);

/* True if A and B are the same listener for a reload: same proto and listen
 * address, and the same ports. */
bool rule_same_listener(const struct rule_config *a, const struct rule_config *b);

/* True if B is A with its port range changed, for a reload: the same name,
 * proto and listen address (apart from the ports), and ranges with a port
 * in common. */
bool rule_same_range_rule(const struct rule_config *a, const struct rule_config *b);

#endif
