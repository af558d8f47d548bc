#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/util.h>
#include <grp.h>
#include <libconfig.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_access.h"
#include "iface.h"
#include "localaddr.h"
#include "log.h"
#include "portinfo.h"
#include "resolve.h"
#include "proxyproto.h"
#include "router.h"
#include "suggest.h"

/* The context of one validation pass: where messages go and what they name. */
struct config_ctx {
	const char *path;
	struct config_errors *errs;
	const char *scope; /* "daemon", "defaults", "rule \"ssh\"", ... */
	struct config_access *access; /* lists, allow and deny (config_access.h) */
};

static void config_errors_vadd(struct config_errors *errs, long line, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/*
 * MSG as one line of text a terminal shows as it is: the messages quote the
 * file's values, and a value may hold any byte (libconfig's "\n", "\x1b").
 * Written out, a newline would forge a log line of its own and an escape
 * sequence would drive the operator's terminal; a control reply would end
 * early. Each C0 control, DEL and UTF-8-encoded C1 control is written as
 * libconfig would read it back (\n, \r, \t, \xHH), and so is the backslash
 * (\\). Other bytes, UTF-8 included, pass. A new string, or NULL.
 */
static char *config_errors_escape(const char *msg)
{
	size_t len = strlen(msg), o = 0;
	char *out = malloc(4 * len + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)msg[i];

		if (c == '\\' || c == '\n' || c == '\r' || c == '\t') {
			out[o++] = '\\';
			out[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : '\\';
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)sprintf(out + o, "\\x%02x", c);
		} else if (c == 0xc2 && i + 1 < len && (unsigned char)msg[i + 1] >= 0x80 &&
			   (unsigned char)msg[i + 1] <= 0x9f) {
			o += (size_t)sprintf(out + o, "\\x%02x\\x%02x", c, (unsigned char)msg[i + 1]);
			i++;
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
	return out;
}

/* Appends MSG (taken over: freed if it cannot be kept). */
static void config_errors_push(struct config_errors *errs, long line, char *msg)
{
	char **grown;
	long *lines;

	grown = realloc(errs->msgs, (errs->count + 1) * sizeof(*grown));
	if (!grown) {
		free(msg);
		return;
	}
	errs->msgs = grown;
	lines = realloc(errs->lines, (errs->count + 1) * sizeof(*lines));
	if (!lines) {
		free(msg);
		return;
	}
	errs->lines = lines;
	errs->lines[errs->count] = line;
	errs->msgs[errs->count++] = msg;
}

static void config_errors_vadd(struct config_errors *errs, long line, const char *fmt, va_list ap)
{
	char *raw = NULL, *msg;

	if (vasprintf(&raw, fmt, ap) < 0)
		raw = NULL;
	if (!raw)
		return;
	msg = config_errors_escape(raw);
	free(raw);
	if (msg)
		config_errors_push(errs, line, msg);
}

void config_errors_copy(struct config_errors *dst, const struct config_errors *src)
{
	for (size_t i = 0; i < src->count; i++) {
		char *msg = strdup(src->msgs[i]);

		if (msg)
			config_errors_push(dst, src->lines ? src->lines[i] : -1, msg);
	}
}

void config_errors_add(struct config_errors *errs, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_errors_vadd(errs, -1, fmt, ap);
	va_end(ap);
}

void config_errors_add_at(struct config_errors *errs, long line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_errors_vadd(errs, line, fmt, ap);
	va_end(ap);
}

void config_errors_free(struct config_errors *errs)
{
	for (size_t i = 0; i < errs->count; i++)
		free(errs->msgs[i]);
	free(errs->msgs);
	free(errs->lines);
	errs->msgs = NULL;
	errs->lines = NULL;
	errs->count = 0;
}

static void config_err(struct config_ctx *ctx, const config_setting_t *s,
		       const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Adds "FILE:LINE: SCOPE: message", the line being that of setting S. */
static void config_err(struct config_ctx *ctx, const config_setting_t *s,
		       const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ctx->scope)
		config_errors_add(ctx->errs, "%s:%u: %s: %s", ctx->path,
				  s ? config_setting_source_line(s) : 0,
				  ctx->scope, msg);
	else
		config_errors_add(ctx->errs, "%s:%u: %s", ctx->path,
				  s ? config_setting_source_line(s) : 0, msg);
}

static const char *config_type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a number";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_GROUP:
		return "a group";
	case CONFIG_TYPE_ARRAY:
		return "an array";
	case CONFIG_TYPE_LIST:
		return "a list";
	default:
		return "an unknown type";
	}
}

/* Reports every member of GROUP whose name is not in KNOWN (NULL-ended). */
static void config_check_keys(struct config_ctx *ctx,
			      const config_setting_t *group,
			      const char *const *known)
{
	int n = config_setting_length(group);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(s);
		const char *best = NULL;
		size_t best_d = 3; /* suggest only close matches */
		bool ok = false;

		if (!name)
			continue;
		for (const char *const *k = known; *k; k++) {
			size_t d;

			if (strcmp(name, *k) == 0) {
				ok = true;
				break;
			}
			d = suggest_distance(name, *k);
			if (d < best_d) {
				best_d = d;
				best = *k;
			}
		}
		if (ok)
			continue;
		if (best) {
			config_err(ctx, s, "unknown key \"%s\" (did you mean \"%s\"?)", name, best);
		} else {
			char list[512] = "";
			size_t used = 0;

			for (const char *const *k = known; *k; k++) {
				int w = snprintf(list + used, sizeof(list) - used, "%s%s",
						 k == known ? "" : ", ", *k);
				if (w < 0 || (size_t)w >= sizeof(list) - used)
					break;
				used += (size_t)w;
			}
			config_err(ctx, s, "unknown key \"%s\" (valid keys: %s)", name, list);
		}
	}
}

/* Reads a number (integer or float) in [MIN, MAX]. Returns 0 or -1. */
static int config_get_number(struct config_ctx *ctx, const config_setting_t *s,
			     double min, double max, double *out)
{
	int type = config_setting_type(s);
	double v;

	if (type == CONFIG_TYPE_FLOAT)
		v = config_setting_get_float(s);
	else if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64)
		v = (double)config_setting_get_int64(s);
	else {
		config_err(ctx, s, "%s: expected a number of seconds, got %s",
			   config_setting_name(s), config_type_name(type));
		return -1;
	}
	if (!isfinite(v) || v < min || v > max) {
		config_err(ctx, s, "%s: %.15g is out of range (%.15g-%.15g)",
			   config_setting_name(s), v, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int config_get_integer(struct config_ctx *ctx, const config_setting_t *s,
			      long long min, long long max, long long *out)
{
	int type = config_setting_type(s);
	long long v;

	if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
		config_err(ctx, s, "%s: expected an integer, got %s",
			   config_setting_name(s), config_type_name(type));
		return -1;
	}
	v = config_setting_get_int64(s);
	if (v < min || v > max) {
		config_err(ctx, s, "%s: %lld is out of range (%lld-%lld)",
			   config_setting_name(s), v, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int config_get_bool(struct config_ctx *ctx, const config_setting_t *s, bool *out)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		config_err(ctx, s, "%s: expected a boolean (true or false), got %s",
			   config_setting_name(s), config_type_name(config_setting_type(s)));
		return -1;
	}
	*out = config_setting_get_bool(s);
	return 0;
}

static const char *config_get_string(struct config_ctx *ctx,
				     const config_setting_t *s)
{
	int type = config_setting_type(s);

	if (type != CONFIG_TYPE_STRING) {
		config_err(ctx, s, "%s: expected a string, got %s",
			   config_setting_name(s), config_type_name(type));
		return NULL;
	}
	return config_setting_get_string(s);
}

#define SETTINGS_KEYS                                                      \
	"connect_timeout", "idle_timeout", "udp_idle_timeout",             \
		"max_connections", "max_udp_sessions", "buffer_size", "splice", \
		"tcp_keepalive", "proxy_protocol", "resolve", "resolve_min", "resolve_max", \
		"router", "router_lease", \
		SOURCES_SETTINGS_KEYS, CONFIG_ACCESS_KEYS
/* Per-source limits (config_read_per_source). */
#define SOURCES_SETTINGS_KEYS "udp_unreplied_timeout", "per_source"

/* An unsigned member of a group setting, at OFFSET in the struct read into. */
struct config_field {
	const char *name;
	long long min, max;
	size_t offset;
};

/*
 * Reads the members of group S that FIELDS (N of them) name into the
 * unsigned fields of BASE; any other member is an error. Messages name
 * WHAT after the scope ("rule \"ssh\": tcp_keepalive: idle: ...").
 */
static void config_read_fields(struct config_ctx *ctx, const config_setting_t *s, const char *what,
			       const struct config_field *fields, size_t n, void *base)
{
	const char *keys[8];
	const char *scope = ctx->scope;
	char sub[RULE_NAME_MAX + 64];
	long long iv;

	for (size_t i = 0; i < n && i < 7; i++)
		keys[i] = fields[i].name;
	keys[n < 7 ? n : 7] = NULL;
	snprintf(sub, sizeof(sub), "%s%s%s", scope ? scope : "", scope ? ": " : "", what);
	ctx->scope = sub;
	config_check_keys(ctx, s, keys);
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *f = config_setting_get_member(s, fields[i].name);

		if (f && config_get_integer(ctx, f, fields[i].min, fields[i].max, &iv) == 0)
			*(unsigned *)((char *)base + fields[i].offset) = (unsigned)iv;
	}
	ctx->scope = scope;
}

/*
 * tcp_keepalive = true | false | { idle = S; interval = S; count = N; }:
 * a group turns keepalive on and changes the values it names, the others
 * staying as the defaults (or the built-in values) have them. The ranges
 * are the kernel's (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT).
 */
static void config_read_keepalive(struct config_ctx *ctx, const config_setting_t *s,
				  struct rule_settings *set)
{
	static const struct config_field fields[] = {
		{ "idle", 1, 32767, offsetof(struct rule_settings, keepalive_idle) },
		{ "interval", 1, 32767, offsetof(struct rule_settings, keepalive_interval) },
		{ "count", 1, 127, offsetof(struct rule_settings, keepalive_count) },
	};

	if (config_setting_type(s) == CONFIG_TYPE_BOOL) {
		set->keepalive = config_setting_get_bool(s);
		return;
	}
	if (!config_setting_is_group(s)) {
		config_err(ctx, s, "tcp_keepalive: expected true, false or a group { idle = 300; interval = 30; count = 4; }, got %s",
			   config_type_name(config_setting_type(s)));
		return;
	}
	set->keepalive = true;
	config_read_fields(ctx, s, "tcp_keepalive", fields, sizeof(fields) / sizeof(fields[0]), set);
}

/*
 * per_source = { max_connections = N; new_per_minute = N; udp_sessions = N;
 * udp_datagrams_per_second = N; ipv6_prefix = BITS; }: a group changes the
 * keys it names, the others staying as the defaults have them (so a rule's
 * group adds to the defaults' one); 0 turns a limit off. And
 * udp_unreplied_timeout, which goes with them.
 */
static void config_read_per_source(struct config_ctx *ctx, const config_setting_t *group,
				   struct rule_settings *set)
{
	static const struct config_field fields[] = {
		{ "max_connections", 0, 1000000, offsetof(struct rule_per_source, max_connections) },
		{ "new_per_minute", 0, 1000000, offsetof(struct rule_per_source, new_per_minute) },
		{ "udp_sessions", 0, 1000000, offsetof(struct rule_per_source, udp_sessions) },
		{ "udp_datagrams_per_second", 0, 1000000,
		  offsetof(struct rule_per_source, udp_datagrams_per_second) },
		{ "ipv6_prefix", 1, 128, offsetof(struct rule_per_source, ipv6_prefix) },
	};
	const config_setting_t *s;
	double dv;

	if ((s = config_setting_get_member(group, "udp_unreplied_timeout")) &&
	    config_get_number(ctx, s, 0.001, 86400, &dv) == 0)
		set->udp_unreplied_timeout = dv;
	if (!(s = config_setting_get_member(group, "per_source")))
		return;
	if (!config_setting_is_group(s)) {
		config_err(ctx, s, "per_source: expected a group { max_connections = 16; new_per_minute = 120; udp_sessions = 4; udp_datagrams_per_second = 2000; ipv6_prefix = 64; }, got %s",
			   config_type_name(config_setting_type(s)));
		return;
	}
	config_read_fields(ctx, s, "per_source", fields, sizeof(fields) / sizeof(fields[0]),
			   &set->per_source);
}

/* Applies the members of GROUP that are rule settings on top of SET. */
static void config_read_settings(struct config_ctx *ctx,
				 const config_setting_t *group,
				 struct rule_settings *set)
{
	const config_setting_t *s;
	const char *str;
	long long iv;
	double dv;

	if ((s = config_setting_get_member(group, "connect_timeout")) &&
	    config_get_number(ctx, s, 0.001, 3600, &dv) == 0)
		set->connect_timeout = dv;
	if ((s = config_setting_get_member(group, "idle_timeout")) &&
	    config_get_number(ctx, s, 0, 31536000, &dv) == 0)
		set->idle_timeout = dv;
	if ((s = config_setting_get_member(group, "udp_idle_timeout")) &&
	    config_get_number(ctx, s, 0.001, 86400, &dv) == 0)
		set->udp_idle_timeout = dv;
	if ((s = config_setting_get_member(group, "max_connections")) &&
	    config_get_integer(ctx, s, 1, 1000000, &iv) == 0)
		set->max_connections = (unsigned)iv;
	if ((s = config_setting_get_member(group, "max_udp_sessions")) &&
	    config_get_integer(ctx, s, 1, 1000000, &iv) == 0)
		set->max_udp_sessions = (unsigned)iv;
	if ((s = config_setting_get_member(group, "buffer_size")) &&
	    config_get_integer(ctx, s, 4096, 64 << 20, &iv) == 0)
		set->buffer_size = (size_t)iv;
	if ((s = config_setting_get_member(group, "splice")))
		config_get_bool(ctx, s, &set->splice);
	if ((s = config_setting_get_member(group, "tcp_keepalive")))
		config_read_keepalive(ctx, s, set);
	if ((s = config_setting_get_member(group, "proxy_protocol")) &&
	    (str = config_get_string(ctx, s))) {
		int v = proxyproto_parse(str);

		if (v < 0)
			config_err(ctx, s, "proxy_protocol: \"%.64s\" is not one of \"v1\", \"v2\" or \"none\"",
				   str);
		else
			set->proxy_protocol = (unsigned)v;
	}
	if ((s = config_setting_get_member(group, "resolve")) && (str = config_get_string(ctx, s))) {
		int f = resolve_family_parse(str);

		if (f < 0)
			config_err(ctx, s, "resolve: \"%.64s\" is not one of \"any\", \"ipv4\" or \"ipv6\"", str);
		else
			set->resolve = (unsigned)f;
	}
	if ((s = config_setting_get_member(group, "resolve_min")) &&
	    config_get_number(ctx, s, 0.1, 86400, &dv) == 0)
		set->resolve_min = dv;
	if ((s = config_setting_get_member(group, "resolve_max")) &&
	    config_get_number(ctx, s, 0.1, 86400, &dv) == 0)
		set->resolve_max = dv;
	/* Checked where the group sets either; a max alone below the default
	 * min takes the min down with it. */
	if (set->resolve_min > set->resolve_max) {
		const config_setting_t *mn = config_setting_get_member(group, "resolve_min");
		const config_setting_t *mx = config_setting_get_member(group, "resolve_max");

		if (mx && !mn)
			set->resolve_min = set->resolve_max;
		else if (mn)
			config_err(ctx, mn, "resolve_min (%g s) is longer than resolve_max (%g s)",
				   set->resolve_min, set->resolve_max);
	}
	if ((s = config_setting_get_member(group, "router")) && (str = config_get_string(ctx, s))) {
		int m = router_method_parse(str);

		if (m < 0)
			config_err(ctx, s, "router: \"%.64s\" is not one of \"off\", \"auto\", \"upnp\", \"natpmp\" or \"pcp\"",
				   str);
		else
			set->router = (unsigned)m;
	}
	if ((s = config_setting_get_member(group, "router_lease")) &&
	    config_get_integer(ctx, s, ROUTER_LEASE_MIN, ROUTER_LEASE_MAX, &iv) == 0)
		set->router_lease = (unsigned)iv;
	config_read_per_source(ctx, group, set);
}

/* external_port, and what a mapping on the router needs of the rule: an
 * IPv4 (or any) listen address and at most ROUTER_PORTS_MAX ports. */
static void config_read_router(struct config_ctx *ctx, const config_setting_t *group,
			       struct rule_config *rule)
{
	const config_setting_t *s = config_setting_get_member(group, "external_port");
	const config_setting_t *at = config_setting_get_member(group, "router");
	unsigned first = rule_port_first(rule), last = rule_port_last(rule);
	const char *from;
	long long iv;

	if (!at)
		at = group;
	if (s && config_get_integer(ctx, s, 1, 65535, &iv) == 0) {
		if (rule->set.router == ROUTER_OFF)
			config_err(ctx, s, "external_port: the rule does not map its port on the router (router = \"off\"); set router, or remove external_port");
		else if (iv + (last - first) > 65535)
			config_err(ctx, s, "external_port: %lld + the range's %u more ports passes 65535", iv,
				   last - first);
		else
			rule->external_port = (unsigned)iv;
	}
	if (rule->set.router == ROUTER_OFF || !first)
		return;
	/* From defaults: the rule may say router = "off" for itself. */
	from = config_setting_get_member(group, "router") ? "" : " (router from defaults: set router = \"off\" in this rule)";
	if (last - first + 1 > ROUTER_PORTS_MAX)
		config_err(ctx, at, "router: the rule's range has %u ports; a router maps at most %d for a rule%s",
			   last - first + 1, ROUTER_PORTS_MAX, from);
	if (rule->listen.ss_family == AF_INET6 &&
	    !IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&rule->listen)->sin6_addr))
		config_err(ctx, at, "router: a router maps IPv4 ports to this host; the rule listens on an IPv6 address only (listen on 0.0.0.0, :: or an IPv4 address)%s",
			   from);
	if (rule->listen.ss_family == AF_INET &&
	    (ntohl(((const struct sockaddr_in *)&rule->listen)->sin_addr.s_addr) >> 24) == 127)
		config_err(ctx, at, "router: the rule listens on loopback, which the router cannot reach%s", from);
}

/* daemon.user, group and admin_group: names that must exist on this system. */
static void config_read_identity(struct config_ctx *ctx, const config_setting_t *daemon,
				 struct config *cfg)
{
	const config_setting_t *s;
	const char *str;

	if ((s = config_setting_get_member(daemon, "user")) && (str = config_get_string(ctx, s))) {
		struct passwd *pw = getpwnam(str);

		if (!pw) {
			config_err(ctx, s, "user: no user \"%s\" on this system", str);
		} else if (pw->pw_uid == 0) {
			config_err(ctx, s, "user: \"%s\" is root; name an unprivileged user, or leave user out", str);
		} else {
			cfg->user = strdup(str);
			cfg->uid = pw->pw_uid;
			cfg->gid = pw->pw_gid;
		}
	}
	if ((s = config_setting_get_member(daemon, "group")) && (str = config_get_string(ctx, s))) {
		struct group *gr = getgrnam(str);

		if (!gr)
			config_err(ctx, s, "group: no group \"%s\" on this system", str);
		else if (!config_setting_get_member(daemon, "user"))
			config_err(ctx, s, "group: goes with user (the group to run as once started)");
		else {
			cfg->group = strdup(str);
			cfg->gid = gr->gr_gid;
		}
	}
	if ((s = config_setting_get_member(daemon, "admin_group")) &&
	    (str = config_get_string(ctx, s))) {
		struct group *gr = getgrnam(str);

		if (!gr) {
			config_err(ctx, s, "admin_group: no group \"%s\" on this system", str);
		} else {
			cfg->admin_group = strdup(str);
			cfg->admin_gid = gr->gr_gid;
		}
	}
}

/* daemon.resolvers = [ "127.0.0.1:5353", ... ]: name servers instead of
 * /etc/resolv.conf's, each an IP address with an optional port. */
static void config_read_resolvers(struct config_ctx *ctx, const config_setting_t *s,
				  struct config *cfg)
{
	int n = config_setting_length(s);

	if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
		config_err(ctx, s, "resolvers: expected a list of addresses [ \"127.0.0.1:53\", ... ], got %s",
			   config_type_name(config_setting_type(s)));
		return;
	}
	if (n > CONFIG_MAX_RESOLVERS) {
		config_err(ctx, s, "resolvers: %d servers, at most %d", n, CONFIG_MAX_RESOLVERS);
		return;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		struct sockaddr_storage ss;
		int len = (int)sizeof(ss);
		const char *str;

		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			config_err(ctx, e, "resolvers[%d]: expected a string \"IP[:port]\", got %s", i + 1,
				   config_type_name(config_setting_type(e)));
			continue;
		}
		str = config_setting_get_string(e);
		if (evutil_parse_sockaddr_port(str, (struct sockaddr *)&ss, &len) < 0) {
			config_err(ctx, e, "resolvers[%d]: \"%.64s\" is not an IP address with an optional port (\"127.0.0.1:5353\", \"[::1]:53\", \"192.168.0.1\")",
				   i + 1, str);
			continue;
		}
		cfg->resolvers[cfg->nresolvers] = strdup(str);
		if (cfg->resolvers[cfg->nresolvers])
			cfg->nresolvers++;
	}
}

static void config_read_daemon(struct config_ctx *ctx,
			       const config_setting_t *group,
			       struct config *cfg)
{
	static const char *const keys[] = { "control_socket", "log_level", "log_connections",
					    "workers", "drain_timeout", "user", "group",
					    "admin_group", "allow_root", "max_tracked_sources", "resolvers",
					    "http", NULL };
	long long iv;
	double dv;
	const config_setting_t *s;
	const char *str;

	ctx->scope = "daemon";
	if (!config_setting_is_group(group)) {
		config_err(ctx, group, "expected a group { ... }, got %s",
			   config_type_name(config_setting_type(group)));
		return;
	}
	config_check_keys(ctx, group, keys);
	if ((s = config_setting_get_member(group, "control_socket")) &&
	    (str = config_get_string(ctx, s))) {
		/* sun_path holds 108 bytes including the NUL */
		if (str[0] == '\0' || strlen(str) > 107)
			config_err(ctx, s, "control_socket: path must be 1-107 characters");
		else {
			free(cfg->control_socket);
			cfg->control_socket = strdup(str);
		}
	}
	if ((s = config_setting_get_member(group, "log_level")) &&
	    (str = config_get_string(ctx, s))) {
		int lvl = log_level_parse(str);

		if (lvl < 0)
			config_err(ctx, s, "log_level: \"%s\" is not one of error, warning, info, debug", str);
		else
			cfg->log_level = lvl;
	}
	if ((s = config_setting_get_member(group, "log_connections")))
		config_get_bool(ctx, s, &cfg->log_connections);
	if ((s = config_setting_get_member(group, "workers")) &&
	    config_get_integer(ctx, s, 0, CONFIG_MAX_WORKERS, &iv) == 0)
		cfg->workers = (unsigned)iv;
	if ((s = config_setting_get_member(group, "drain_timeout")) &&
	    config_get_number(ctx, s, 0, 31536000, &dv) == 0)
		cfg->drain_timeout = dv;
	if ((s = config_setting_get_member(group, "allow_root")))
		config_get_bool(ctx, s, &cfg->allow_root);
	if ((s = config_setting_get_member(group, "max_tracked_sources")) &&
	    config_get_integer(ctx, s, CONFIG_MIN_TRACKED_SOURCES, CONFIG_MAX_TRACKED_SOURCES, &iv) == 0)
		cfg->max_tracked_sources = (unsigned)iv;
	if ((s = config_setting_get_member(group, "resolvers")))
		config_read_resolvers(ctx, s, cfg);
	config_read_identity(ctx, group, cfg);
}

/* daemon.http.hosts = [ "nas.lan", ... ]: host names, letters, digits, dots and dashes. */
static void config_read_http_hosts(struct config_ctx *ctx, const config_setting_t *s,
				   struct config_http *h)
{
	int n = config_setting_is_array(s) || config_setting_is_list(s) ? config_setting_length(s) : -1;

	if (n < 0) {
		config_err(ctx, s, "hosts: expected a list of host names [ \"nas.lan\", ... ], got %s",
			   config_type_name(config_setting_type(s)));
		return;
	}
	if (n > CONFIG_HTTP_HOSTS) {
		config_err(ctx, s, "hosts: %d names, at most %d", n, CONFIG_HTTP_HOSTS);
		return;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *str = config_setting_type(e) == CONFIG_TYPE_STRING ? config_setting_get_string(e) : NULL;
		size_t len = str ? strlen(str) : 0;

		/* "nas.lan." is "nas.lan", as the Host header's is. */
		if (len > 1 && str[len - 1] == '.')
			len--;
		if (!str || len == 0 || len > CONFIG_HTTP_HOST_MAX ||
		    strspn(str, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") < len ||
		    strcspn(str, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") >= len) {
			config_err(ctx, e, "hosts[%d]: expected a host name (letters, digits, dots and dashes, 1-%d characters), as a browser's address bar has it",
				   i + 1, CONFIG_HTTP_HOST_MAX);
			continue;
		}
		snprintf(h->hosts[h->nhosts++], sizeof(h->hosts[0]), "%.*s", (int)len, str);
	}
}

/*
 * daemon.http = { listen = "127.0.0.1:9180"; allow = [ ... ]; deny = [ ... ]; }:
 * read after the lists, which its allow and deny may name.
 */
static void config_read_http(struct config_ctx *ctx, const config_setting_t *group,
			     struct config *cfg)
{
	static const char *const keys[] = { "listen", "hosts", CONFIG_ACCESS_KEYS, NULL };
	struct config_http *h = &cfg->http;
	const config_setting_t *s;
	const char *str;
	int len = sizeof(h->listen);

	ctx->scope = "daemon.http";
	if (!config_setting_is_group(group)) {
		config_err(ctx, group, "expected a group { listen = \"127.0.0.1:9180\"; }, got %s",
			   config_type_name(config_setting_type(group)));
		return;
	}
	config_check_keys(ctx, group, keys);
	s = config_setting_get_member(group, "listen");
	if (!s) {
		config_err(ctx, group, "listen is missing: add listen = \"127.0.0.1:9180\"; (an address and port)");
		return;
	}
	if (!(str = config_get_string(ctx, s)))
		return;
	memset(&h->listen, 0, sizeof(h->listen));
	if (evutil_parse_sockaddr_port(str, (struct sockaddr *)&h->listen, &len) < 0 ||
	    rule_addr_port((const struct sockaddr *)&h->listen) == 0) {
		config_err(ctx, s, "listen: \"%.64s\" is not an IP address and port (\"127.0.0.1:9180\", \"[::1]:9180\", \"0.0.0.0:9180\")",
			   str);
		return;
	}
	h->listen_len = (socklen_t)len;
	h->line = config_setting_source_line(s);
	if ((s = config_setting_get_member(group, "hosts")))
		config_read_http_hosts(ctx, s, h);
	h->access = config_access_group(ctx->access, group, "daemon.http");
	h->enabled = true;
}

bool config_http_collides(const struct config_http *h, const struct rule_config *r)
{
	const struct sockaddr *ha = (const struct sockaddr *)&h->listen;
	unsigned port = rule_addr_port(ha);
	struct sockaddr_storage ra = r->listen;

	/* A range's every port: the rule's address at the endpoint's port. */
	if (!h->enabled || !(r->proto & RULE_PROTO_TCP) || port < rule_port_first(r) ||
	    port > rule_port_last(r))
		return false;
	if (ra.ss_family == AF_INET)
		((struct sockaddr_in *)&ra)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)&ra)->sin6_port = htons((uint16_t)port);
	return rule_addr_collide((const struct sockaddr *)&ra, ha);
}

/* The endpoint may not take a port that a TCP rule of the file listens on. */
static void config_check_http(struct config_ctx *ctx, const struct config *cfg, const bool *valid)
{
	char addr[RULE_ADDR_STRLEN];

	for (size_t i = 0; i < cfg->nrules; i++) {
		const struct rule_config *r = &cfg->rules[i];

		if (!valid[i] || !config_http_collides(&cfg->http, r))
			continue;
		config_errors_add(ctx->errs, "%s:%u: daemon.http: listen %s is also where rule \"%s\" (line %d) listens for TCP: give the endpoint another port",
				  ctx->path, cfg->http.line,
				  rule_format_addr((const struct sockaddr *)&cfg->http.listen, addr, sizeof(addr)),
				  r->name, r->line);
		return;
	}
}

/* interface = "wg0": the rule's sockets take only what comes through it. */
static void config_read_interface(struct config_ctx *ctx, const config_setting_t *group,
				  struct rule_config *rule)
{
	const config_setting_t *s = config_setting_get_member(group, "interface");
	const char *str;

	if (!s || !(str = config_get_string(ctx, s)))
		return;
	if (!iface_name_valid(str))
		config_err(ctx, s, "interface: \"%.64s\" is not an interface name (1-15 printable characters, no spaces, \"/\" or \":\")",
			   str);
	else
		snprintf(rule->interface, sizeof(rule->interface), "%s", str);
}

/*
 * source = "192.168.0.10": a numeric address (no port, no name) of the
 * target's family, which the sockets towards the target are bound to.
 * Whether this host has it is a warning (exposure.c), not an error: an
 * address may come up after portfwd starts.
 */
static void config_read_source(struct config_ctx *ctx, const config_setting_t *group,
			       struct rule_config *rule)
{
	const config_setting_t *s = config_setting_get_member(group, "source");
	const struct sockaddr *target = (const struct sockaddr *)&rule->target;
	struct sockaddr_in *in = (struct sockaddr_in *)&rule->source;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&rule->source;
	char taddr[RULE_ADDR_STRLEN];
	const char *str;

	if (!s || !(str = config_get_string(ctx, s)))
		return;
	memset(&rule->source, 0, sizeof(rule->source));
	if (inet_pton(AF_INET, str, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		rule->source_len = sizeof(*in);
	} else if (inet_pton(AF_INET6, str, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		rule->source_len = sizeof(*in6);
	} else {
		config_err(ctx, s, "source: \"%.64s\" is not an IPv4 or IPv6 address (a numeric address, without a port: source = \"192.168.0.10\";)",
			   str);
		return;
	}
	if (rule_addr_is_wildcard((const struct sockaddr *)&rule->source)) {
		config_err(ctx, s, "source: %s is the wildcard, which leaves the choice to the kernel: name one address of this host, or leave source out",
			   str);
		rule->source_len = 0;
		return;
	}
	/* A target that did not parse has been reported already; a name's
	 * addresses of the source's family are the ones it uses. */
	if (target->sa_family && !rule_target_host(rule) && target->sa_family != rule->source.ss_family) {
		config_err(ctx, s, "source: %s is an %s address and the target %s is %s: a connection leaves from an address of its target's family",
			   str, rule->source.ss_family == AF_INET ? "IPv4" : "IPv6",
			   rule_format_addr(target, taddr, sizeof(taddr)),
			   target->sa_family == AF_INET ? "IPv4" : "IPv6");
		rule->source_len = 0;
		return;
	}
	/* Names resolved to the other family only can never be reached from it. */
	if (rule_has_names(rule) &&
	    rule->set.resolve == (rule->source.ss_family == AF_INET ? (unsigned)RESOLVE_IPV6 : (unsigned)RESOLVE_IPV4)) {
		config_err(ctx, s, "source: %s is an %s address and resolve = \"%s\" gives the host names only %s addresses: a connection leaves from an address of its target's family",
			   str, rule->source.ss_family == AF_INET ? "IPv4" : "IPv6",
			   resolve_family_name((enum resolve_family)rule->set.resolve),
			   rule->source.ss_family == AF_INET ? "IPv6" : "IPv4");
		rule->source_len = 0;
		return;
	}
	for (size_t i = 1; rule->targets && i < rule->targets->n; i++) {
		const struct sockaddr *t = (const struct sockaddr *)&rule->targets->t[i].addr;

		if (t->sa_family && !rule->targets->t[i].host[0] && t->sa_family != rule->source.ss_family) {
			config_err(ctx, s, "source: %s is an %s address and targets[%zu] %s is %s: a connection leaves from an address of its target's family",
				   str, rule->source.ss_family == AF_INET ? "IPv4" : "IPv6", i + 1,
				   rule_format_addr(t, taddr, sizeof(taddr)), t->sa_family == AF_INET ? "IPv4" : "IPv6");
			rule->source_len = 0;
			return;
		}
	}
}

/*
 * proxy_protocol = "v1" on a rule that carries UDP: version 1 is a line of
 * text for streams and has no datagram form. The message points at the
 * rule's own setting, or at its proto when the setting is the defaults'.
 */
static void config_check_proxy_protocol(struct config_ctx *ctx, const config_setting_t *group,
					struct rule_config *rule)
{
	const config_setting_t *own = config_setting_get_member(group, "proxy_protocol");

	if (rule->set.proxy_protocol != PROXYPROTO_V1 || !(rule->proto & RULE_PROTO_UDP))
		return;
	if (own)
		config_err(ctx, own, "proxy_protocol: \"v1\" has no datagram form, and this rule is %s: use \"v2\", whose header goes in front of every datagram",
			   rule_proto_name(rule->proto));
	else
		config_err(ctx, config_setting_get_member(group, "proto"),
			   "proxy_protocol: \"v1\" (from defaults) has no datagram form, and this rule is %s: set proxy_protocol = \"v2\" (or \"none\") in this rule, or use \"v2\" in defaults",
			   rule_proto_name(rule->proto));
}

/*
 * One target: "IP:port" (or a range), else "host.name:port", resolved at run
 * time (the text is kept in T). Returns 0, or -1 with what is wrong in WHY:
 * the message about a name when TEXT's host has a letter in it and is not
 * bracketed (it was meant as a name), else the one about an address.
 */
static int config_parse_target(const char *text, const struct rule_config *rule,
			       struct rule_target *t, unsigned *last, char *why, size_t len)
{
	unsigned proto = rule->proto ? rule->proto : RULE_PROTO_ANY;
	const char *colon = strrchr(text, ':');
	char named[256];
	bool letters = false;

	memset(t->host, 0, sizeof(t->host));
	if (rule_parse_range(text, proto, &t->addr, &t->addr_len, last, why, len) == 0)
		return 0;
	/* A target may be a name: an address's message must not say otherwise. */
	{
		char *note = strstr(why, " (host names are not resolved)");

		if (note)
			memmove(note, note + strlen(" (host names are not resolved)"),
				strlen(note + strlen(" (host names are not resolved)")) + 1);
	}
	for (const char *p = text; colon && p < colon; p++)
		letters |= isalpha((unsigned char)*p) != 0;
	if (!letters || text[0] == '[' || memchr(text, ':', colon ? (size_t)(colon - text) : 0))
		return -1;
	if (rule_parse_named(text, proto, t, last, named, sizeof(named)) < 0) {
		snprintf(why, len, "%s", named);
		return -1;
	}
	return 0;
}

/* target = "...": an address into rule->target; a host name becomes a
 * target list of one (the set resolves it), its placeholder in target. */
static int config_read_target(struct config_ctx *ctx, const config_setting_t *s, const char *str,
			      struct rule_config *rule, unsigned *last, char *why, size_t len)
{
	struct rule_target t;
	struct rule_targets *list;

	memset(&t, 0, sizeof(t));
	if (config_parse_target(str, rule, &t, last, why, len) < 0)
		return -1;
	rule->target = t.addr;
	rule->target_len = t.addr_len;
	if (!t.host[0])
		return 0;
	list = rule_targets_new(1);
	if (!list) {
		snprintf(why, len, "out of memory");
		return -1;
	}
	snprintf(t.text, sizeof(t.text), "%s", str);
	t.line = (int)config_setting_source_line(s);
	list->t[0] = t;
	rule_targets_unref(rule->targets);
	rule->targets = list;
	(void)ctx;
	return 0;
}

/*
 * targets = [ "192.168.0.2:22", ... ]: 1 to RULE_TARGETS_MAX addresses,
 * each checked as `target` is, its errors naming which entry (from 1). On
 * a port range, every entry is one port or every entry a range as long as
 * listen's. The first also fills rule->target, for what shows one target.
 */
static void config_read_targets(struct config_ctx *ctx, const config_setting_t *s,
				struct rule_config *rule, bool listen_ok)
{
	int n = config_setting_length(s), ranges = 0;
	unsigned last;
	struct rule_targets *list;
	char why[256];
	bool ok = true;

	if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
		config_err(ctx, s, "targets: expected a list of addresses [ \"IP:port\", ... ], got %s",
			   config_type_name(config_setting_type(s)));
		return;
	}
	if (n == 0) {
		config_err(ctx, s, "targets: the list is empty: give at least one address");
		return;
	}
	if (n > RULE_TARGETS_MAX) {
		config_err(ctx, s, "targets: %d addresses, at most %d", n, RULE_TARGETS_MAX);
		return;
	}
	list = rule_targets_new((size_t)n);
	if (!list) {
		config_err(ctx, s, "targets: out of memory");
		return;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		struct rule_target *t = &list->t[i];
		const char *str;

		t->line = (int)config_setting_source_line(e);
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			config_err(ctx, e, "targets[%d]: expected a string \"IP:port\", got %s", i + 1,
				   config_type_name(config_setting_type(e)));
			ok = false;
			continue;
		}
		str = config_setting_get_string(e);
		snprintf(t->text, sizeof(t->text), "%s", str);
		if (config_parse_target(str, rule, t, &last, why, sizeof(why)) < 0) {
			config_err(ctx, e, "targets[%d]: %s", i + 1, why);
			ok = false;
			continue;
		}
		/* A port range: every entry one as long as the listen range. */
		if (last) {
			unsigned first = rule_addr_port((const struct sockaddr *)&t->addr);

			ranges++;
			if (listen_ok && !rule_is_range(rule)) {
				config_err(ctx, e, "targets[%d]: \"%s\": a range of %u ports needs a listen range as long, and listen is one port (give each target one port)",
					   i + 1, str, last - first + 1);
				ok = false;
				continue;
			}
			if (listen_ok && last - first + 1 != rule_nports(rule)) {
				config_err(ctx, e, "targets[%d]: \"%s\": the range has %u ports and the listen range %u-%u has %u: they must be the same length",
					   i + 1, str, last - first + 1, rule_port_first(rule),
					   rule_port_last(rule), rule_nports(rule));
				ok = false;
				continue;
			}
		}
		for (int j = 0; j < i; j++)
			if (list->t[j].addr_len && strcasecmp(list->t[j].host, t->host) == 0 &&
			    rule_addr_equal((const struct sockaddr *)&list->t[j].addr,
					    (const struct sockaddr *)&t->addr)) {
				config_err(ctx, e, "targets[%d]: \"%s\" is already targets[%d]", i + 1, str,
					   j + 1);
				ok = false;
				break;
			}
	}
	if (ok && ranges && (ranges != n || (listen_ok && !rule_is_range(rule)))) {
		config_err(ctx, s, ranges != n
				   ? "targets: some entries are port ranges and some are single ports: give every target a range as long as listen's, or every target one port"
				   : "targets: port ranges need a listen range as long, and listen is one port (give each target one port)");
		ok = false;
	}
	if (!ok) {
		rule_targets_unref(list);
		return;
	}
	rule->target_range = ranges > 0;
	rule->target = list->t[0].addr;
	rule->target_len = list->t[0].addr_len;
	rule->targets = list;
}

/* balance = "..." and health_check = { interval; timeout; rise; fall; }. */
static void config_read_balance(struct config_ctx *ctx, const config_setting_t *group,
				struct rule_config *rule)
{
	static const char *const hc_keys[] = { "interval", "timeout", "rise", "fall", NULL };
	static const char *const names[] = { "failover", "round-robin", "source-hash",
					     "least-connections" };
	const config_setting_t *s = config_setting_get_member(group, "balance");
	const char *scope = ctx->scope;
	char sub[RULE_NAME_MAX + 64];
	const char *str;
	long long iv;
	double dv;

	rule->balance = RULE_BALANCE_FAILOVER;
	if (s && (str = config_get_string(ctx, s))) {
		int b = rule_balance_parse(str);

		if (b < 0) {
			char best[32] = "";
			size_t d = (size_t)-1;

			for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
				suggest_offer(str, names[i], best, sizeof(best), &d);
			config_err(ctx, s, "balance: \"%.64s\" is not one of %s%s%s%s", str,
				   RULE_BALANCE_NAMES, best[0] ? " (did you mean \"" : "", best,
				   best[0] ? "\"?)" : "");
		} else {
			rule->balance = (enum rule_balance)b;
		}
	}
	s = config_setting_get_member(group, "health_check");
	if (!s)
		return;
	if (!config_setting_is_group(s)) {
		config_err(ctx, s, "health_check: expected a group { interval = ...; timeout = ...; rise = ...; fall = ...; }, got %s",
			   config_type_name(config_setting_type(s)));
		return;
	}
	if (rule->proto == RULE_PROTO_UDP) {
		config_err(ctx, s, "health_check: the checks connect over TCP, which says nothing of a udp rule's targets (give it to a tcp or tcp+udp rule)");
		return;
	}
	rule->health = (struct rule_health){ true, 5.0, 2.0, 2, 3 };
	/* A short interval alone: the timeout's default shrinks with it. */
	{
		const config_setting_t *iv_s = config_setting_get_member(s, "interval");

		if (iv_s && !config_setting_get_member(s, "timeout") &&
		    (config_setting_type(iv_s) == CONFIG_TYPE_FLOAT || config_setting_type(iv_s) == CONFIG_TYPE_INT) &&
		    config_setting_get_float(iv_s) + (double)config_setting_get_int(iv_s) < 4.0)
			rule->health.timeout = (config_setting_get_float(iv_s) + (double)config_setting_get_int(iv_s)) / 2;
	}
	snprintf(sub, sizeof(sub), "%s%shealth_check", scope ? scope : "", scope ? ": " : "");
	ctx->scope = sub;
	config_check_keys(ctx, s, hc_keys);
	if ((group = config_setting_get_member(s, "interval")) &&
	    config_get_number(ctx, group, 0.01, 86400, &dv) == 0)
		rule->health.interval = dv;
	if ((group = config_setting_get_member(s, "timeout")) &&
	    config_get_number(ctx, group, 0.01, 86400, &dv) == 0)
		rule->health.timeout = dv;
	if ((group = config_setting_get_member(s, "rise")) &&
	    config_get_integer(ctx, group, 1, 1000, &iv) == 0)
		rule->health.rise = (unsigned)iv;
	if ((group = config_setting_get_member(s, "fall")) &&
	    config_get_integer(ctx, group, 1, 1000, &iv) == 0)
		rule->health.fall = (unsigned)iv;
	if (rule->health.timeout >= rule->health.interval)
		config_err(ctx, config_setting_get_member(s, "timeout") ? config_setting_get_member(s, "timeout") : s,
			   "timeout: %g must be shorter than interval (%g)", rule->health.timeout,
			   rule->health.interval);
	ctx->scope = scope;
}

/*
 * A target range (TEXT, at setting S, ending at port LAST) must be as long
 * as the listen range: port N goes to the target's first + (N - first).
 * Sets the rule's target_range. LISTEN_OK: the listen address was read.
 */
static void config_check_target_range(struct config_ctx *ctx, const config_setting_t *s,
				      const char *text, struct rule_config *rule, bool listen_ok,
				      unsigned last)
{
	unsigned first = rule_addr_port((const struct sockaddr *)&rule->target);
	unsigned n = last - first + 1;

	if (!listen_ok)
		return;
	if (!rule_is_range(rule)) {
		config_err(ctx, s, "target: \"%s\": a range of %u ports needs a listen range as long, and listen is one port (give the target one port)",
			   text, n);
		return;
	}
	if (n != rule_nports(rule)) {
		config_err(ctx, s, "target: \"%s\": the target range has %u ports and the listen range %u-%u has %u: they must be the same length (or give the target one port)",
			   text, n, rule_port_first(rule), rule_port_last(rule), rule_nports(rule));
		return;
	}
	rule->target_range = true;
}

/* Reads one rule. Returns 0 if it is complete and valid, -1 otherwise. */
static int config_read_rule(struct config_ctx *ctx, const config_setting_t *group,
			    int index, const struct rule_settings *defaults,
			    struct rule_config *rule)
{
	static const char *const keys[] = { "name", "proto", "listen", "target", "targets",
					    "balance", "health_check", "interface", "source", "freebind", "external_port",
					    SETTINGS_KEYS, NULL };
	size_t before = ctx->errs->count;
	const config_setting_t *s;
	const char *str;
	char scope[RULE_NAME_MAX + 32];
	char why[256];
	unsigned target_last = 0;
	bool listen_ok = false;

	memset(rule, 0, sizeof(*rule));
	rule->set = *defaults;
	rule->line = (int)config_setting_source_line(group);

	snprintf(scope, sizeof(scope), "rule #%d", index + 1);
	ctx->scope = scope;
	if (!config_setting_is_group(group)) {
		config_err(ctx, group, "expected a group { name = ...; ... }, got %s",
			   config_type_name(config_setting_type(group)));
		return -1;
	}

	s = config_setting_get_member(group, "name");
	if (!s) {
		config_err(ctx, group, "name: required key is missing");
	} else if ((str = config_get_string(ctx, s))) {
		if (!rule_name_valid(str))
			config_err(ctx, s, "name: \"%s\" must be 1-%d characters of A-Z a-z 0-9 . _ -",
				   str, RULE_NAME_MAX);
		else {
			snprintf(rule->name, sizeof(rule->name), "%s", str);
			snprintf(scope, sizeof(scope), "rule \"%s\"", str);
		}
	}

	config_check_keys(ctx, group, keys);

	s = config_setting_get_member(group, "proto");
	if (!s)
		config_err(ctx, group, "proto: required key is missing");
	else if ((str = config_get_string(ctx, s)) &&
		 !(rule->proto = rule_proto_parse(str)))
		config_err(ctx, s, "proto: \"%s\" is not one of tcp, udp, tcp+udp", str);

	s = config_setting_get_member(group, "listen");
	if (!s)
		config_err(ctx, group, "listen: required key is missing");
	else if ((str = config_get_string(ctx, s)) &&
		 rule_parse_range(str, rule->proto ? rule->proto : RULE_PROTO_ANY, &rule->listen,
				  &rule->listen_len, &rule->listen_last, why, sizeof(why)) < 0)
		config_err(ctx, s, "listen: %s", why);
	else if (str)
		listen_ok = true;

	s = config_setting_get_member(group, "target");
	if (s && config_setting_get_member(group, "targets"))
		config_err(ctx, config_setting_get_member(group, "targets"),
			   "targets: the rule has a target already (line %u): give either target or targets",
			   config_setting_source_line(s));
	else if (!s && !config_setting_get_member(group, "targets"))
		config_err(ctx, group, "target: required key is missing");
	else if (!s)
		config_read_targets(ctx, config_setting_get_member(group, "targets"), rule, listen_ok);
	else if ((str = config_get_string(ctx, s)) &&
		 config_read_target(ctx, s, str, rule, &target_last, why, sizeof(why)) < 0)
		config_err(ctx, s, "target: %s", why);
	else if (str && target_last)
		config_check_target_range(ctx, s, str, rule, listen_ok, target_last);
	config_read_balance(ctx, group, rule);

	rule_name_ports(rule);
	config_read_interface(ctx, group, rule);
	if ((s = config_setting_get_member(group, "freebind")))
		config_get_bool(ctx, s, &rule->freebind);
	config_read_settings(ctx, group, &rule->set);
	config_read_router(ctx, group, rule);
	config_read_source(ctx, group, rule); /* after resolve, which it checks */
	config_check_proxy_protocol(ctx, group, rule);
	rule->access = config_access_rule(ctx->access, group, ctx->scope);
	return ctx->errs->count == before ? 0 : -1;
}

/* Two rules that ask the router for one external port (of a protocol they
 * share) would take it from each other at every renewal. */
static void config_check_external(struct config_ctx *ctx, const config_setting_t *g,
				  const struct rule_config *r, const struct rule_config *o, unsigned shared)
{
	unsigned r1, r2, o1, o2;
	const config_setting_t *at;
	char span[24];

	if (r->set.router == ROUTER_OFF || o->set.router == ROUTER_OFF)
		return;
	r1 = r->external_port ? r->external_port : rule_port_first(r);
	r2 = r1 + (rule_port_last(r) - rule_port_first(r));
	o1 = o->external_port ? o->external_port : rule_port_first(o);
	o2 = o1 + (rule_port_last(o) - rule_port_first(o));
	if (r2 < o1 || o2 < r1)
		return;
	at = config_setting_get_member(g, "external_port");
	if (!at)
		at = config_setting_get_member(g, "router");
	if (!at)
		at = g;
	/* The ports in common. */
	if (o1 > r1)
		r1 = o1;
	if (o2 < r2)
		r2 = o2;
	if (r1 == r2)
		snprintf(span, sizeof(span), " %u", r1);
	else
		snprintf(span, sizeof(span), "s %u-%u", r1, r2);
	config_err(ctx, at,
		   "router: %s external port%s already asked of the router by rule \"%s\" (line %d): give one of them another external_port%s",
		   rule_proto_name(shared), span, o->name, o->line,
		   config_setting_get_member(g, "router") ? "" : ", or router = \"off\" (router from defaults)");
}

/* Cross-rule checks: unique names, one rule per protocol and address. */
static void config_check_rules(struct config_ctx *ctx, const config_setting_t *list,
			       struct config *cfg, const bool *valid)
{
	char addr[RULE_ADDR_STRLEN], oaddr[RULE_ADDR_STRLEN], span[16];
	char scope[RULE_NAME_MAX + 32];

	for (size_t i = 0; i < cfg->nrules; i++) {
		const struct rule_config *r = &cfg->rules[i];
		const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);

		if (!valid[i])
			continue;
		snprintf(scope, sizeof(scope), "rule \"%s\"", r->name);
		ctx->scope = scope;
		for (size_t j = 0; j < i; j++) {
			const struct rule_config *o = &cfg->rules[j];
			unsigned shared = r->proto & o->proto;

			if (!valid[j])
				continue;
			if (strcmp(r->name, o->name) == 0) {
				config_err(ctx, config_setting_get_member(g, "name"),
					   "name: \"%s\" is already used by the rule at line %d",
					   r->name, o->line);
				continue;
			}
			if (!shared)
				continue;
			config_check_external(ctx, g, r, o, shared);
			if (!rule_is_range(r) && !rule_is_range(o)) {
				/* Two single ports: only the very same address is refused. */
				if (rule_addr_equal((const struct sockaddr *)&r->listen,
						    (const struct sockaddr *)&o->listen))
					config_err(ctx, config_setting_get_member(g, "listen"),
						   "listen: %s %s is already used by rule \"%s\" (line %d)",
						   rule_proto_name(shared),
						   rule_format_addr((const struct sockaddr *)&r->listen,
								    addr, sizeof(addr)),
						   o->name, o->line);
			} else if (rule_listen_collide(r, o)) {
				/* A range takes every port of it: any port in common, on
				 * the same address or either one a wildcard, collides. */
				unsigned lo = rule_port_first(r) > rule_port_first(o) ? rule_port_first(r)
										   : rule_port_first(o);
				unsigned hi = rule_port_last(r) < rule_port_last(o) ? rule_port_last(r)
										 : rule_port_last(o);

				if (lo == hi)
					snprintf(span, sizeof(span), " %u", lo);
				else
					snprintf(span, sizeof(span), "s %u-%u", lo, hi);
				config_err(ctx, config_setting_get_member(g, "listen"),
					   "listen: %s %s overlaps rule \"%s\" (line %d), which listens on %s: port%s in common",
					   rule_proto_name(shared), rule_format_listen(r, addr, sizeof(addr)),
					   o->name, o->line, rule_format_listen(o, oaddr, sizeof(oaddr)), span);
			}
		}
	}
}

/*
 * Forwarding loops. A rule's target reaches, per protocol, at most one
 * rule's listener: the one bound to exactly the address it connects to, or
 * else a wildcard (0.0.0.0, or [::], IPv6 only) on its port if the address
 * is this host's, as the kernel prefers the most specific socket. Following
 * those hops from rule to rule either leaves the host or comes back: the
 * loop every connection or datagram would go round, opening another each time.
 */

#define CONFIG_NO_RULE SIZE_MAX

/* The two protocols, in the order of config_hop.next. */
static const unsigned config_protos[2] = { RULE_PROTO_TCP, RULE_PROTO_UDP };

/* A listening socket of a valid rule, as the kernel tells sockets apart. */
struct config_sock {
	struct config_sock_key {
		uint8_t proto; /* RULE_PROTO_TCP or RULE_PROTO_UDP */
		uint8_t family;
		uint16_t port;
		uint8_t addr[16]; /* all zero: the wildcard */
	} key;
	size_t rule;
};

struct config_hop {
	size_t next[2]; /* per config_protos: whose listener takes the target, or CONFIG_NO_RULE */
	size_t walk;    /* 1 + where the loop search that passed here started; 0: not yet */
	unsigned heads; /* protocols for which this rule is the first, in the file, of a loop */
};

static struct config_sock_key config_sock_key(unsigned proto, const struct sockaddr *sa)
{
	struct config_sock_key k;

	memset(&k, 0, sizeof(k)); /* compared as bytes */
	k.proto = (uint8_t)proto;
	k.family = (uint8_t)sa->sa_family;
	k.port = (uint16_t)rule_addr_port(sa);
	if (sa->sa_family == AF_INET)
		memcpy(k.addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	else
		memcpy(k.addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	return k;
}

/* By key, then file order, so a lookup finds the first rule of a duplicate. */
static int config_sock_cmp(const void *a, const void *b)
{
	const struct config_sock *x = a, *y = b;
	int c = memcmp(&x->key, &y->key, sizeof(x->key));

	if (c)
		return c;
	return x->rule < y->rule ? -1 : x->rule > y->rule;
}

/* The first rule listening on KEY in the sorted SOCKS, or CONFIG_NO_RULE. */
static size_t config_sock_find(const struct config_sock *socks, size_t n,
			       const struct config_sock_key *key)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (memcmp(&socks[mid].key, key, sizeof(*key)) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < n && memcmp(&socks[lo].key, key, sizeof(*key)) == 0)
		return socks[lo].rule;
	return CONFIG_NO_RULE;
}

/* The rule whose PROTO listener a connection to R's target, on port PORT,
 * reaches. */
static size_t config_next_hop_port(const struct config_sock *socks, size_t n,
				   struct localaddr *local, const struct rule_config *r,
				   unsigned proto, unsigned port)
{
	struct sockaddr_storage dest, target;
	struct config_sock_key key;
	size_t s;

	rule_addr_set_port((const struct sockaddr *)&r->target, port, &target);
	localaddr_destination((const struct sockaddr *)&target, &dest);
	key = config_sock_key(proto, (const struct sockaddr *)&dest);
	s = config_sock_find(socks, n, &key);
	if (s != CONFIG_NO_RULE)
		return s;
	memset(key.addr, 0, sizeof(key.addr)); /* the wildcard of its family */
	s = config_sock_find(socks, n, &key);
	if (s != CONFIG_NO_RULE && localaddr_is_local(local, (const struct sockaddr *)&dest))
		return s;
	return CONFIG_NO_RULE;
}

/* The rule whose PROTO listener a connection to R's target reaches; for a
 * target range, the first port of it that reaches one (each port of a range
 * goes somewhere of its own: one is enough for a loop). */
static size_t config_next_hop(const struct config_sock *socks, size_t n, struct localaddr *local,
			      const struct rule_config *r, unsigned proto)
{
	unsigned count = r->target_range ? rule_nports(r) : 1;

	if (rule_target_host(r))
		return CONFIG_NO_RULE; /* a name: where it leads is known when it resolves */
	for (unsigned i = 0; i < count; i++) {
		size_t s = config_next_hop_port(socks, n, local, r, proto,
						rule_target_port(r, rule_port_first(r) + i));

		if (s != CONFIG_NO_RULE)
			return s;
	}
	return CONFIG_NO_RULE;
}

/* Marks in HOPS the first rule (in file order) of every loop over next[K]. */
static void config_find_loops(struct config_hop *hops, size_t n, int k)
{
	for (size_t i = 0; i < n; i++)
		hops[i].walk = 0;
	/* Each rule has one successor: walk from each rule not yet seen until
	 * the walk leaves, meets an earlier walk, or meets itself (a new loop). */
	for (size_t start = 0; start < n; start++) {
		size_t i = start, head;

		while (i != CONFIG_NO_RULE && !hops[i].walk) {
			hops[i].walk = start + 1;
			i = hops[i].next[k];
		}
		if (i == CONFIG_NO_RULE || hops[i].walk != start + 1)
			continue;
		head = i;
		for (size_t j = hops[i].next[k]; j != i; j = hops[j].next[k])
			if (j < head)
				head = j;
		hops[head].heads |= config_protos[k];
	}
}

/* True if the loop through HEAD is the same for TCP and UDP. */
static bool config_same_loop(const struct config_hop *hops, size_t head)
{
	size_t i = head;

	do {
		if (hops[i].next[0] != hops[i].next[1])
			return false;
		i = hops[i].next[0];
	} while (i != head);
	return true;
}

/* "a -> b -> c -> a", shortened in the middle if it does not fit LEN bytes. */
static void config_loop_path(const struct config *cfg, const struct config_hop *hops,
			     size_t head, int k, char *buf, size_t len)
{
	const char *first = cfg->rules[head].name;
	/* What the end needs: " -> ... -> FIRST (N rules)". */
	size_t reserve = strlen(" -> ... -> ") + strlen(first) + sizeof(" (18446744073709551615 rules)");
	size_t used, count = 1;

	for (size_t i = hops[head].next[k]; i != head; i = hops[i].next[k])
		count++;
	used = (size_t)snprintf(buf, len, "%s", first);
	for (size_t i = hops[head].next[k]; i != head; i = hops[i].next[k]) {
		const char *name = cfg->rules[i].name;

		if (used + strlen(" -> ") + strlen(name) + reserve > len) {
			snprintf(buf + used, len - used, " -> ... -> %s (%zu rules)", first, count);
			return;
		}
		used += (size_t)snprintf(buf + used, len - used, " -> %s", name);
	}
	snprintf(buf + used, len - used, " -> %s", first);
}

/* Reports the loop through HEAD over next[K], as PROTOS, at HEAD's target. */
static void config_report_loop(struct config_ctx *ctx, const config_setting_t *list,
			       const struct config *cfg, const struct config_hop *hops,
			       size_t head, int k, unsigned protos)
{
	const struct rule_config *r = &cfg->rules[head];
	size_t next = hops[head].next[k];
	const struct rule_config *s = &cfg->rules[next];
	const struct sockaddr *target = (const struct sockaddr *)&r->target;
	const struct sockaddr *listen = (const struct sockaddr *)&s->listen;
	const config_setting_t *g = config_setting_get_elem(list, (unsigned)head);
	const config_setting_t *at = config_setting_get_member(g, "target")
					     ? config_setting_get_member(g, "target")
					     : config_setting_get_elem(config_setting_get_member(g, "targets"), 0);
	char taddr[RULE_ADDR_STRLEN], laddr[RULE_ADDR_STRLEN] = "", scope[RULE_NAME_MAX + 32];
	char path[192]; /* with the rest, fits config_err's 512 bytes */
	const char *how;

	/* How the target gets there; the listen address is named unless it is the target. */
	if (rule_addr_equal(target, listen)) {
		how = "is";
	} else {
		/* A wildcard takes it, or Linux rewrote a 0.0.0.0 or mapped target. */
		how = rule_addr_is_wildcard(listen) ? "is covered by" : "reaches";
		laddr[0] = ' ';
		rule_format_addr(listen, laddr + 1, sizeof(laddr) - 1);
	}
	if (laddr[0])
		rule_format_listen(s, laddr + 1, sizeof(laddr) - 1);
	rule_format_target(r, taddr, sizeof(taddr));
	snprintf(scope, sizeof(scope), "rule \"%s\"", r->name);
	ctx->scope = scope;
	if (next == head) {
		config_err(ctx, at, "target: %s %s this rule's own listen address%s (%s): it would forward to itself",
			   taddr, how, laddr, rule_proto_name(protos));
		return;
	}
	config_loop_path(cfg, hops, head, k, path, sizeof(path));
	config_err(ctx, at,
		   "target: %s %s the listen address%s of rule \"%s\" (line %d), whose target leads back to this rule (%s): a forwarding loop %s",
		   taddr, how, laddr, s->name, s->line, rule_proto_name(protos), path);
}

/* Refuses rules whose traffic would come back to them (see above). */
static void config_check_loops(struct config_ctx *ctx, const config_setting_t *list,
			       struct config *cfg, const bool *valid)
{
	size_t n = cfg->nrules, nsocks = 0, room = 0;
	struct config_sock *socks;

	/* A socket per port of every range. */
	for (size_t i = 0; i < n; i++)
		room += 2 * (size_t)(valid[i] ? rule_nports(&cfg->rules[i]) : 0);
	socks = calloc(room + 1, sizeof(*socks));
	struct config_hop *hops = calloc(n, sizeof(*hops));
	struct localaddr local = { 0 };

	if (!socks || !hops) {
		config_errors_add(ctx->errs, "%s: out of memory", ctx->path);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < 2; k++)
			for (unsigned p = 0; valid[i] && (cfg->rules[i].proto & config_protos[k]) &&
					     p < rule_nports(&cfg->rules[i]);
			     p++) {
				struct sockaddr_storage at;

				rule_addr_set_port((const struct sockaddr *)&cfg->rules[i].listen,
						   rule_port_first(&cfg->rules[i]) + p, &at);
				socks[nsocks].key = config_sock_key(config_protos[k],
								    (const struct sockaddr *)&at);
				socks[nsocks++].rule = i;
			}
	qsort(socks, nsocks, sizeof(*socks), config_sock_cmp);
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < 2; k++)
			hops[i].next[k] = valid[i] && (cfg->rules[i].proto & config_protos[k])
						  ? config_next_hop(socks, nsocks, &local, &cfg->rules[i],
								    config_protos[k])
						  : CONFIG_NO_RULE;
	for (int k = 0; k < 2; k++)
		config_find_loops(hops, n, k);
	/* The first of a rule's targets takes part in the loop search above;
	 * the others are checked for the plainest loop, back to the rule itself. */
	for (size_t i = 0; i < n; i++)
		for (size_t t = 1; valid[i] && t < rule_ntargets(&cfg->rules[i]); t++)
			for (int k = 0; k < 2; k++) {
				struct rule_config one = cfg->rules[i];
				char taddr[RULE_ADDR_STRLEN], scope[RULE_NAME_MAX + 32];

				if (!(one.proto & config_protos[k]) || one.targets->t[t].host[0])
					continue; /* a name leads where it resolves to */
				one.target = one.targets->t[t].addr;
				one.targets = NULL; /* this entry alone, an address */
				if (config_next_hop(socks, nsocks, &local, &one, config_protos[k]) != i)
					continue;
				snprintf(scope, sizeof(scope), "rule \"%s\"", one.name);
				ctx->scope = scope;
				config_err(ctx,
					   config_setting_get_elem(config_setting_get_member(
									   config_setting_get_elem(list, (unsigned)i), "targets"),
								   (unsigned)t),
					   "targets[%zu]: %s reaches this rule's own listen address (%s): it would forward to itself",
					   t + 1, rule_format_addr((const struct sockaddr *)&one.target, taddr, sizeof(taddr)),
					   rule_proto_name(config_protos[k]));
				break;
			}
	for (size_t i = 0; i < n; i++) {
		if (hops[i].heads == RULE_PROTO_BOTH && config_same_loop(hops, i)) {
			config_report_loop(ctx, list, cfg, hops, i, 0, RULE_PROTO_BOTH);
			continue;
		}
		for (int k = 0; k < 2; k++)
			if (hops[i].heads & config_protos[k])
				config_report_loop(ctx, list, cfg, hops, i, k, config_protos[k]);
	}
out:
	localaddr_free(&local);
	free(hops);
	free(socks);
}

static void config_read_root(struct config_ctx *ctx, const config_t *lc,
			     struct config *cfg)
{
	static const char *const keys[] = { "daemon", "lists", "defaults", "rules", NULL };
	static const char *const default_keys[] = { SETTINGS_KEYS, NULL };
	const config_setting_t *root = config_root_setting(lc);
	const config_setting_t *s, *list;
	bool *valid;
	int n;

	config_check_keys(ctx, root, keys);

	if ((s = config_setting_get_member(root, "daemon")))
		config_read_daemon(ctx, s, cfg);
	if ((s = config_setting_get_member(root, "lists")))
		config_access_lists(ctx->access, s);
	if ((s = config_setting_get_member(root, "daemon")) && config_setting_is_group(s) &&
	    (s = config_setting_get_member(s, "http")))
		config_read_http(ctx, s, cfg);

	if ((s = config_setting_get_member(root, "defaults"))) {
		ctx->scope = "defaults";
		if (!config_setting_is_group(s)) {
			config_err(ctx, s, "expected a group { ... }, got %s",
				   config_type_name(config_setting_type(s)));
		} else {
			config_check_keys(ctx, s, default_keys);
			config_read_settings(ctx, s, &cfg->defaults);
			config_access_defaults(ctx->access, s);
		}
	}

	ctx->scope = NULL;
	list = config_setting_get_member(root, "rules");
	if (!list) {
		config_errors_add(ctx->errs,
				  "%s: \"rules\" is missing: add a list rules = ( { name = ...; proto = ...; listen = ...; target = ...; } );",
				  ctx->path);
		return;
	}
	if (!config_setting_is_list(list)) {
		config_err(ctx, list, "rules: expected a list ( { ... }, ... ), got %s",
			   config_type_name(config_setting_type(list)));
		return;
	}
	n = config_setting_length(list);
	/* An empty list is valid: the daemon runs and forwards nothing until a
	 * reload brings rules (the packaged /etc/portfwd.conf starts so). */
	if (n == 0)
		return;
	cfg->rules = calloc((size_t)n, sizeof(*cfg->rules));
	if (!cfg->rules) {
		config_errors_add(ctx->errs, "%s: out of memory", ctx->path);
		return;
	}
	valid = calloc((size_t)n, sizeof(*valid));
	if (!valid) {
		config_errors_add(ctx->errs, "%s: out of memory", ctx->path);
		return;
	}
	for (int i = 0; i < n; i++)
		valid[i] = config_read_rule(ctx, config_setting_get_elem(list, (unsigned)i), i,
					    &cfg->defaults, &cfg->rules[i]) == 0;
	cfg->nrules = (size_t)n;
	ctx->scope = NULL;
	/* Cross-checks compare the rules that are complete on their own. */
	config_check_rules(ctx, list, cfg, valid);
	config_check_loops(ctx, list, cfg, valid);
	config_check_http(ctx, cfg, valid);
	free(valid);
}

/* The line number in "PATH:LINE: ...", or 0 for a file-wide message. */
static long config_error_line_of(const struct config_errors *errs, size_t i, const char *path,
				 size_t plen)
{
	const char *msg = errs->msgs[i];

	if (errs->lines && errs->lines[i] >= 0)
		return errs->lines[i];
	if (strncmp(msg, path, plen) != 0 || msg[plen] != ':')
		return 0;
	return (long)strtoul(msg + plen + 1, NULL, 10);
}

/* Orders the messages from FIRST on by the configuration's line, keeping
 * equal lines in order; a list file's go with the line that names it. */
static void config_sort_errors(struct config_errors *errs, size_t first, const char *path)
{
	/* The messages hold the path as they write it out (escaped). */
	char *epath = config_errors_escape(path);
	size_t plen;

	if (!errs->lines || !epath) {
		free(epath);
		return;
	}
	plen = strlen(epath);
	for (size_t i = first; i < errs->count; i++)
		errs->lines[i] = config_error_line_of(errs, i, epath, plen);
	free(epath);
	for (size_t i = first + 1; i < errs->count; i++) {
		char *m = errs->msgs[i];
		long line = errs->lines[i];
		size_t j = i;

		while (j > first && errs->lines[j - 1] > line) {
			errs->msgs[j] = errs->msgs[j - 1];
			errs->lines[j] = errs->lines[j - 1];
			j--;
		}
		errs->msgs[j] = m;
		errs->lines[j] = line;
	}
}

void config_free(struct config *cfg)
{
	free(cfg->path);
	free(cfg->control_socket);
	free(cfg->user);
	free(cfg->group);
	free(cfg->admin_group);
	for (size_t i = 0; i < cfg->nresolvers; i++)
		free(cfg->resolvers[i]);
	for (size_t i = 0; i < cfg->nrules; i++) {
		access_policy_unref(cfg->rules[i].access);
		rule_targets_unref(cfg->rules[i].targets);
	}
	free(cfg->rules);
	access_policy_unref(cfg->http.access);
	access_lists_free(cfg->lists, cfg->nlists);
	memset(cfg, 0, sizeof(*cfg));
}

/*
 * What the text itself may not hold, found before libconfig sees it: a NUL
 * (libconfig would stop reading there), and in a client's text a line
 * that libconfig 1.5's scanner takes for a directive, ^[ \t]*@include
 * (it would open the named path as the daemon, and quote it in errors).
 * Any line starting so is refused, in a string or a comment too. Returns
 * the number of messages added.
 */
static size_t config_screen_text(const char *label, const char *text, size_t len, bool client,
				 struct config_errors *errs)
{
	unsigned line = 1;
	bool bol = true;

	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\0') {
			config_errors_add(errs, "%s:%u: the file contains a NUL byte", label, line);
			return 1;
		}
		if (bol && client) {
			size_t j = i;

			while (j < len && (text[j] == ' ' || text[j] == '\t'))
				j++;
			if (len - j >= 8 && memcmp(text + j, "@include", 8) == 0) {
				config_errors_add(errs, "%s:%u: @include is not allowed in a file checked through the control socket (the daemon opens no file for a client): check each file on its own",
						  label, line);
				return 1;
			}
		}
		bol = text[i] == '\n' || text[i] == '\r' || text[i] == '\f';
		line += text[i] == '\n';
	}
	return 0;
}

/* Validates TEXT (LEN bytes, NUL-terminated) into CFG, naming LABEL in the
 * messages: config_load and config_load_text are both this. */
static int config_parse(const char *label, const char *text, size_t len, bool client,
			struct config *cfg, struct config_errors *errs)
{
	struct config_ctx ctx = { .path = label, .errs = errs };
	size_t before = errs->count;
	config_t lc;

	memset(cfg, 0, sizeof(*cfg));
	portinfo_suggest_budget(20); /* "did you mean" for the first 20 unknown service names */
	cfg->path = strdup(label);
	cfg->control_socket = strdup(CONFIG_DEFAULT_SOCKET);
	cfg->log_level = LOG_LVL_INFO;
	cfg->log_connections = true;
	cfg->allow_root = true;
	cfg->max_tracked_sources = CONFIG_DEFAULT_TRACKED_SOURCES;
	rule_settings_init(&cfg->defaults);
	if (!cfg->path || !cfg->control_socket) {
		config_errors_add(errs, "%s: out of memory", label);
		config_free(cfg);
		return -1;
	}
	if (config_screen_text(label, text, len, client, errs)) {
		config_free(cfg);
		return -1;
	}
	config_init(&lc);
	if (config_read_string(&lc, text) != CONFIG_TRUE) {
		config_errors_add(errs, "%s:%d: %s", label, config_error_line(&lc),
				  config_error_text(&lc));
	} else {
		ctx.access = config_access_new(label, client, errs);
		config_read_root(&ctx, &lc, cfg);
		config_access_finish(ctx.access, cfg);
	}
	config_destroy(&lc);

	if (errs->count != before) {
		config_sort_errors(errs, before, label);
		config_free(cfg);
		return -1;
	}
	return 0;
}

int config_load(const char *path, struct config *cfg, struct config_errors *errs)
{
	size_t len;
	char *text;
	int rc;

	/* Read it ourselves: an unreadable file says why, and a FIFO or a
	 * device never makes the main loop wait. */
	text = ctl_proto_read_file(path, &len);
	if (!text) {
		int e = errno;

		memset(cfg, 0, sizeof(*cfg));
		config_errors_add(errs, "%s: %s%s", path, e == EINVAL || e == EFBIG ? "" : "cannot open: ",
				  ctl_proto_file_error(e));
		return -1;
	}
	portinfo_services_pin(true); /* one stat of /etc/services per file, not per port */
	rc = config_parse(path, text, len, false, cfg, errs);
	portinfo_services_pin(false);
	free(text);
	return rc;
}

int config_load_text(const char *label, const char *text, size_t len, struct config *cfg,
		     struct config_errors *errs)
{
	int rc;

	portinfo_services_pin(true);
	rc = config_parse(label, text, len, true, cfg, errs);
	portinfo_services_pin(false);
	return rc;
}
