#include "commands.h"

#include <errno.h>
#include <event2/buffer.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "bans.h"
#include "clock.h"
#include "daemon.h"
#include "forward.h"
#include "metrics.h"
#include "proxyproto.h"
#include "resolve.h"
#include "router.h"
#include "sources.h"
#include "status.h"
#include "targets.h"
#include "version.h"

/* Appends DOC as one compact line and frees it. Returns 0, or -1 (ERR). */
static int commands_json_out(json_t *doc, struct evbuffer *out, char *err, size_t errlen)
{
	char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;

	json_decref(doc);
	if (!text) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	evbuffer_add_printf(out, "%s\n", text);
	free(text);
	return 0;
}

static json_t *commands_errors_json(const struct config_errors *errs)
{
	json_t *a = json_array();

	for (size_t i = 0; i < errs->count; i++)
		json_array_append_new(a, json_string(errs->msgs[i]));
	return a;
}

/* Every rule name, for "no rule X (rules: a, b)". */
static void commands_no_rule(struct daemon *d, const char *name, char *err, size_t errlen)
{
	size_t used;

	used = (size_t)snprintf(err, errlen, "no rule \"%.64s\" (rules:", name);
	for (size_t i = 0; i < d->nrules && used < errlen; i++)
		used += (size_t)snprintf(err + used, errlen - used, "%s %s", i ? "," : "",
					 d->rules[i]->cfg.name);
	if (used < errlen)
		snprintf(err + used, errlen - used, ")");
}

static int commands_status(struct daemon *d, int argc, char **argv, bool json,
			   struct evbuffer *out, char *err, size_t errlen)
{
	/* "status json" is the protocol's first spelling of --json. */
	if (argc == 2 && strcmp(argv[1], "json") != 0) {
		snprintf(err, errlen, "status: unknown argument \"%.64s\" (usage: status [--json])",
			 argv[1]);
		return -1;
	}
	if (json || argc == 2)
		return commands_json_out(status_json(d), out, err, errlen);
	status_text(d, out);
	return 0;
}

static json_t *commands_per_source_json(const struct rule_per_source *ps)
{
	return json_pack("{s:i, s:i, s:i, s:i, s:i}", "max_connections", (int)ps->max_connections,
			 "new_per_minute", (int)ps->new_per_minute, "udp_sessions", (int)ps->udp_sessions,
			 "udp_datagrams_per_second", (int)ps->udp_datagrams_per_second,
			 "ipv6_prefix", (int)ps->ipv6_prefix);
}

static json_t *commands_rule_json(const struct daemon *d, const struct forward *fw)
{
	const struct rule_config *r = &fw->cfg;
	char listen[RULE_ADDR_STRLEN], target[RULE_ADDR_STRLEN], src[RULE_ADDR_STRLEN];
	json_t *keepalive = r->set.keepalive
				    ? json_pack("{s:i, s:i, s:i}", "idle", (int)r->set.keepalive_idle,
						"interval", (int)r->set.keepalive_interval,
						"count", (int)r->set.keepalive_count)
				    : json_false();
	json_t *doc;

	doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:f, s:f, s:f, s:i, s:i, s:I, s:b, s:o}",
			 "name", r->name, "proto", rule_proto_name(r->proto),
			 "listen", rule_format_listen(r, listen, sizeof(listen)),
			 "target", rule_format_target(r, target, sizeof(target)),
			 "state", forward_state_name(fw), "line", r->line,
			 "connect_timeout", r->set.connect_timeout,
			 "idle_timeout", r->set.idle_timeout,
			 "udp_idle_timeout", r->set.udp_idle_timeout,
			 "max_connections", (int)r->set.max_connections,
			 "max_udp_sessions", (int)r->set.max_udp_sessions,
			 "buffer_size", (json_int_t)r->set.buffer_size,
			 "splice", r->set.splice, "tcp_keepalive", keepalive);
	if (doc) {
		json_object_set_new(doc, "listen_port", rule_port_json((const struct sockaddr *)&r->listen, r->listen_service));
		json_object_set_new(doc, "target_port", rule_port_json((const struct sockaddr *)&r->target, r->target_service));
		rule_range_json(r, doc);
		json_object_set_new(doc, "interface", r->interface[0] ? json_string(r->interface) : json_null());
		json_object_set_new(doc, "freebind", json_boolean(r->freebind));
		json_object_set_new(doc, "udp_unreplied_timeout", json_real(r->set.udp_unreplied_timeout));
		json_object_set_new(doc, "per_source", commands_per_source_json(&r->set.per_source));
		json_object_set_new(doc, "proxy_protocol", json_string(proxyproto_name((int)r->set.proxy_protocol)));
		json_object_set_new(doc, "source", r->source_len ? json_string(rule_format_host((const struct sockaddr *)&r->source, src, sizeof(src))) : json_null());
		json_object_update_missing_new(doc, status_access_json(r->access));
		json_object_set_new(doc, "balance", json_string(rule_balance_name(r->balance)));
		json_object_set_new(doc, "resolve",
				    json_pack("{s:s, s:f, s:f}", "family",
					      resolve_family_name((enum resolve_family)r->set.resolve), "min",
					      r->set.resolve_min, "max", r->set.resolve_max));
		json_object_set_new(doc, "health_check",
				    r->health.enabled
					    ? json_pack("{s:f, s:f, s:i, s:i}", "interval", r->health.interval,
							"timeout", r->health.timeout, "rise", (int)r->health.rise,
							"fall", (int)r->health.fall)
					    : json_false());
		if (fw->targets)
			json_object_set_new(doc, "targets", targets_json(fw->targets));
		json_object_set_new(doc, "router", status_router_json(d, fw));
	}
	return doc;
}

static int commands_rules(struct daemon *d, int argc, char **argv, bool json,
			  struct evbuffer *out, char *err, size_t errlen)
{
	json_t *rules = json_array();

	(void)argc;
	(void)argv;
	for (size_t i = 0; i < d->nrules; i++)
		json_array_append_new(rules, commands_rule_json(d, d->rules[i]));
	if (json)
		return commands_json_out(json_pack("{s:I, s:s, s:o}", "generation",
						   (json_int_t)d->generation, "config", d->cfg.path,
						   "rules", rules),
					 out, err, errlen);
	evbuffer_add_printf(out, "%s, generation %llu, %zu rule%s\n", d->cfg.path,
			    (unsigned long long)d->generation, d->nrules, d->nrules == 1 ? "" : "s");
	for (size_t i = 0; i < d->nrules; i++) {
		const struct rule_config *r = &d->rules[i]->cfg;
		char route[RULE_ROUTE_STRLEN];

		evbuffer_add_printf(out, "\n%s  %s  %s  %s  (line %d)\n", r->name,
				    rule_proto_name(r->proto), rule_format_route(r, route, sizeof(route)),
				    forward_state_name(d->rules[i]), r->line);
		if (r->interface[0])
			evbuffer_add_printf(out, "  interface %s\n", r->interface);
		if (r->freebind)
			evbuffer_add_printf(out, "  freebind true\n");
		if (r->source_len || r->set.proxy_protocol != PROXYPROTO_NONE) {
			char src[RULE_ADDR_STRLEN] = "(any)";

			if (r->source_len)
				rule_format_host((const struct sockaddr *)&r->source, src, sizeof(src));
			evbuffer_add_printf(out, "  source %s, proxy_protocol %s\n", src,
					    proxyproto_name((int)r->set.proxy_protocol));
		}
		if (rule_ntargets(r) > 1 || r->health.enabled) {
			evbuffer_add_printf(out, "  balance %s", rule_balance_name(r->balance));
			if (r->health.enabled)
				evbuffer_add_printf(out, "; health_check interval %g, timeout %g, rise %u, fall %u",
						    r->health.interval, r->health.timeout, r->health.rise,
						    r->health.fall);
			evbuffer_add_printf(out, "\n");
		}
		if (d->rules[i]->targets && (rule_ntargets(r) > 1 || r->health.enabled || rule_target_host(r)))
			targets_text(d->rules[i]->targets, out);
		if (r->set.router != ROUTER_OFF)
			evbuffer_add_printf(out, "  router %s, router_lease %u, external_port %u\n",
					    router_method_name(r->set.router), r->set.router_lease,
					    r->external_port ? r->external_port : rule_port_first(r));
		status_router_text(d, d->rules[i], out);
		if (rule_has_names(r))
			evbuffer_add_printf(out, "  resolve %s, resolve_min %g, resolve_max %g\n",
					    resolve_family_name((enum resolve_family)r->set.resolve),
					    r->set.resolve_min, r->set.resolve_max);
		evbuffer_add_printf(out, "  connect_timeout %g, idle_timeout %g, udp_idle_timeout %g\n",
				    r->set.connect_timeout, r->set.idle_timeout, r->set.udp_idle_timeout);
		evbuffer_add_printf(out, "  max_connections %u, max_udp_sessions %u, buffer_size %zu, splice %s\n",
				    r->set.max_connections, r->set.max_udp_sessions, r->set.buffer_size,
				    r->set.splice ? "true" : "false");
		if (r->set.keepalive)
			evbuffer_add_printf(out, "  tcp_keepalive idle %u, interval %u, count %u\n",
					    r->set.keepalive_idle, r->set.keepalive_interval,
					    r->set.keepalive_count);
		else
			evbuffer_add_printf(out, "  tcp_keepalive false\n");
		status_access_text(r->access, out);
		evbuffer_add_printf(out, "  udp_unreplied_timeout %g; per_source max_connections %u, new_per_minute %u, udp_sessions %u, udp_datagrams_per_second %u, ipv6_prefix %u\n",
				    r->set.udp_unreplied_timeout, r->set.per_source.max_connections,
				    r->set.per_source.new_per_minute, r->set.per_source.udp_sessions,
				    r->set.per_source.udp_datagrams_per_second,
				    r->set.per_source.ipv6_prefix);
	}
	json_decref(rules);
	return 0;
}

/* "3m 12s"-style durations for tables. */
static const char *commands_secs(double s, char *buf, size_t len)
{
	if (s < 60)
		snprintf(buf, len, "%.1fs", s);
	else if (s < 3600)
		snprintf(buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
	else
		snprintf(buf, len, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
	return buf;
}

/*
 * "192.168.0.2:22 (ssh, well-known)" from a document's KEY ("target") and
 * KEY_port ({port, service, class}), as rule_format_port writes it. BUF:
 * RULE_PORT_STRLEN bytes.
 */
static const char *commands_port_text(json_t *doc, const char *key, char *buf, size_t len)
{
	char which[32];
	json_t *port;
	const char *service;

	const char *addr = json_string_value(json_object_get(doc, key)), *class;

	snprintf(which, sizeof(which), "%s_port", key);
	port = json_object_get(doc, which);
	service = json_string_value(json_object_get(port, "service"));
	class = json_string_value(json_object_get(port, "class"));
	if (!class) /* no memory for the port's object: the address alone */
		snprintf(buf, len, "%s", addr ? addr : "?");
	else if (service)
		snprintf(buf, len, "%s (%s, %s)", addr ? addr : "?", service, class);
	else
		snprintf(buf, len, "%s (%s)", addr ? addr : "?", class);
	return buf;
}

static int commands_connections(struct daemon *d, int argc, char **argv, bool json,
				struct evbuffer *out, char *err, size_t errlen)
{
	const char *only = argc > 1 ? argv[1] : NULL;
	double now = clock_now();
	json_t *conns = json_array(), *c;
	bool found = only == NULL;
	struct forward *fw;
	size_t i;

	if (!conns) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; (fw = daemon_rule_at(d, i)); i++) {
		if (only && strcmp(fw->cfg.name, only) != 0)
			continue;
		found = true;
		forward_collect(fw, conns, now);
	}
	if (!found) {
		json_decref(conns);
		commands_no_rule(d, only, err, errlen);
		return -1;
	}
	if (json)
		return commands_json_out(json_pack("{s:o}", "connections", conns), out, err, errlen);
	evbuffer_add_printf(out, "%-8s %-16s %-5s %-24s %-42s %8s %8s %11s %11s %s\n", "ID", "RULE",
			    "PROTO", "CLIENT", "TARGET", "AGE", "IDLE", "TO TARGET", "TO CLIENT",
			    "STATE");
	json_array_foreach(conns, i, c) {
		char age[16], idle[16], up[48], down[48], target[RULE_PORT_STRLEN];
		bool udp = strcmp(json_string_value(json_object_get(c, "proto")), "udp") == 0;

		status_bytes((uint64_t)json_integer_value(json_object_get(c, "bytes_to_target")), up, sizeof(up));
		status_bytes((uint64_t)json_integer_value(json_object_get(c, "bytes_to_client")), down, sizeof(down));
		if (udp) {
			/* UDP: datagrams too, "12 dg/1.2 KiB". */
			char tmp[48];

			snprintf(tmp, sizeof(tmp), "%lldd/%.20s",
				 (long long)json_integer_value(json_object_get(c, "datagrams_to_target")), up);
			snprintf(up, sizeof(up), "%s", tmp);
			snprintf(tmp, sizeof(tmp), "%lldd/%.20s",
				 (long long)json_integer_value(json_object_get(c, "datagrams_to_client")), down);
			snprintf(down, sizeof(down), "%s", tmp);
		}
		evbuffer_add_printf(out, "%-8lld %-16s %-5s %-24s %-42s %8s %8s %11s %11s %s%s\n",
				    (long long)json_integer_value(json_object_get(c, "id")),
				    json_string_value(json_object_get(c, "rule")),
				    json_string_value(json_object_get(c, "proto")),
				    json_string_value(json_object_get(c, "client")),
				    commands_port_text(c, "target", target, sizeof(target)),
				    commands_secs(json_real_value(json_object_get(c, "age")), age, sizeof(age)),
				    commands_secs(json_real_value(json_object_get(c, "idle")), idle, sizeof(idle)),
				    up, down, json_string_value(json_object_get(c, "state")),
				    json_is_true(json_object_get(c, "draining")) ? " (draining)" : "");
	}
	evbuffer_add_printf(out, "%zu connection%s and session%s\n", json_array_size(conns),
			    json_array_size(conns) == 1 ? "" : "s", json_array_size(conns) == 1 ? "" : "s");
	json_decref(conns);
	return 0;
}

static int commands_kill(struct daemon *d, int argc, char **argv, bool json,
			 struct evbuffer *out, char *err, size_t errlen)
{
	struct forward *fw;
	unsigned closed = 0;
	char *end;

	if (strcmp(argv[1], "--rule") == 0) {
		bool found = false;

		if (argc != 3) {
			snprintf(err, errlen, "usage: kill ID | kill --rule RULE");
			return -1;
		}
		for (size_t i = 0; (fw = daemon_rule_at(d, i)); i++) {
			if (strcmp(fw->cfg.name, argv[2]) == 0) {
				found = true;
				closed += forward_kill_all(fw, "killed by portfwdctl");
			}
		}
		if (!found) {
			commands_no_rule(d, argv[2], err, errlen);
			return -1;
		}
	} else {
		unsigned long long id;

		errno = 0;
		id = strtoull(argv[1], &end, 10);
		if (argc != 2 || errno || *end || end == argv[1] || argv[1][0] == '-') {
			snprintf(err, errlen, "kill: \"%.64s\" is not a connection id (usage: kill ID | kill --rule RULE)",
				 argv[1]);
			return -1;
		}
		for (size_t i = 0; !closed && (fw = daemon_rule_at(d, i)); i++)
			closed = forward_kill_id(fw, id);
		if (!closed) {
			snprintf(err, errlen, "no connection or session with id %llu (see portfwdctl connections)", id);
			return -1;
		}
	}
	if (json)
		return commands_json_out(json_pack("{s:i}", "closed", (int)closed), out, err, errlen);
	evbuffer_add_printf(out, "closed %u connection%s or session%s\n", closed,
			    closed == 1 ? "" : "s", closed == 1 ? "" : "s");
	return 0;
}

static int commands_enable(struct daemon *d, int argc, char **argv, bool json, bool enable,
			   struct evbuffer *out, char *err, size_t errlen)
{
	struct forward *fw = daemon_find_rule(d, argv[1]);
	int rc = 0;

	(void)argc;
	if (!fw) {
		commands_no_rule(d, argv[1], err, errlen);
		return -1;
	}
	if (enable) {
		if (forward_enable(fw) < 0) {
			snprintf(err, errlen, "rule %s: enabled, but cannot listen: %s (retrying every %ds)",
				 fw->cfg.name, fw->tcp.state == FORWARD_FAILED ? fw->tcp.error : fw->udp.error,
				 FORWARD_RETRY_SECONDS);
			rc = -1;
		}
	} else {
		forward_disable(fw);
	}
	/* A disabled rule's mapping on the router goes; enabled, it comes back. */
	daemon_router_sync(d);
	if (json)
		return commands_json_out(json_pack("{s:s, s:s}", "rule", fw->cfg.name, "state",
						   forward_state_name(fw)),
					 out, err, errlen) < 0 ? -1 : rc;
	evbuffer_add_printf(out, "rule %s: %s\n", fw->cfg.name, forward_state_name(fw));
	return rc;
}

/* The body of a reload or check reply, and its end line. */
static int commands_result(struct daemon *d, const struct daemon_reload_result *res,
			   const char *what, bool json, struct evbuffer *out, char *err, size_t errlen)
{
	if (json) {
		json_t *doc = json_pack("{s:s, s:I, s:o, s:i, s:i, s:i, s:i}",
					"result", res->status < 0 ? "refused" : res->status ? "partial" : "ok",
					"generation", (json_int_t)d->generation,
					"errors", commands_errors_json(&res->msgs),
					"added", (int)res->added, "removed", (int)res->removed,
					"changed", (int)res->changed, "unchanged", (int)res->unchanged);

		if (doc)
			json_object_set_new(doc, "warnings", exposure_json(&res->warnings, SIZE_MAX));
		if (doc && res->rules)
			json_object_set(doc, "rules", res->rules);
		if (commands_json_out(doc, out, err, errlen) < 0)
			return -1;
	} else {
		for (size_t i = 0; i < res->msgs.count; i++)
			evbuffer_add_printf(out, "%s\n", res->msgs.msgs[i]);
		for (size_t i = 0; i < res->warnings.count; i++)
			evbuffer_add_printf(out, "%s\n", res->warnings.items[i].text);
	}
	if (res->status < 0) {
		snprintf(err, errlen, "%s: the configuration is not valid (%zu error%s); generation %llu stays in force",
			 what, res->msgs.count, res->msgs.count == 1 ? "" : "s",
			 (unsigned long long)d->generation);
		return -1;
	}
	if (res->status > 0) {
		if (res->not_listening)
			snprintf(err, errlen, "%s: generation %llu is in force, but %u rule%s not listening (retried every %ds)",
				 what, (unsigned long long)d->generation, res->not_listening,
				 res->not_listening == 1 ? " is" : "s are", FORWARD_RETRY_SECONDS);
		else
			snprintf(err, errlen, "%s: generation %llu is in force, but %zu change%s could not be made",
				 what, (unsigned long long)d->generation, res->msgs.count,
				 res->msgs.count == 1 ? "" : "s");
		return -1;
	}
	if (!json)
		evbuffer_add_printf(out, "%s: %u added, %u removed, %u changed, %u unchanged%s\n", what,
				    res->added, res->removed, res->changed, res->unchanged,
				    strcmp(what, "reload") == 0 ? "" : " (not applied)");
	return 0;
}

static int commands_reload(struct daemon *d, bool json, struct evbuffer *out, char *err,
			   size_t errlen)
{
	struct daemon_reload_result res;
	int rc;

	daemon_reload(d, "portfwdctl", &res);
	if (!json && res.status >= 0)
		evbuffer_add_printf(out, "generation %llu in force, after %.1f ms\n",
				    (unsigned long long)d->generation, d->last_reload_seconds * 1000);
	rc = commands_result(d, &res, "reload", json, out, err, errlen);
	config_errors_free(&res.msgs);
	exposure_list_free(&res.warnings);
	return rc;
}

/*
 * check: the daemon's own file, or the text a client sent (portfwdctl reads
 * FILE with the caller's rights), NAME only its label. A bare path is the
 * protocol's old form, in which the daemon opened it: never again.
 */
static int commands_check(struct daemon *d, int argc, char **argv, bool json, const char *text,
			  size_t len, struct evbuffer *out, char *err, size_t errlen)
{
	struct daemon_reload_result res;
	char lport[RULE_PORT_STRLEN], tport[RULE_PORT_STRLEN];
	int rc;

	if (argc > 1 && !text) {
		snprintf(err, errlen, "check: the daemon does not open files for clients; portfwdctl check FILE reads FILE as you and sends its text (update portfwdctl, or send \"check NAME --bytes N\" and the N bytes)");
		return -1;
	}
	if (argc == 1 && text) {
		snprintf(err, errlen, "usage: check NAME --bytes N (NAME labels the text's messages)");
		return -1;
	}
	daemon_check(d, argc > 1 ? argv[1] : NULL, text, len, &res);
	if (!json && res.status == 0) {
		size_t i;
		json_t *r;

		evbuffer_add_printf(out, "%s: configuration is valid\n", text ? argv[1] : d->cfg.path);
		/* Each rule, its ports named and classed (as status shows them). */
		if (!res.rules || json_array_size(res.rules) != res.added + res.changed + res.unchanged)
			evbuffer_add_printf(out, "  (out of memory: the rules are not all listed)\n");
		json_array_foreach(res.rules, i, r)
			evbuffer_add_printf(out, "  %s  %s  %s -> %s\n",
					    json_string_value(json_object_get(r, "name")),
					    json_string_value(json_object_get(r, "proto")),
					    commands_port_text(r, "listen", lport, sizeof(lport)),
					    commands_port_text(r, "target", tport, sizeof(tport)));
	}
	rc = commands_result(d, &res, "check", json, out, err, errlen);
	json_decref(res.rules);
	config_errors_free(&res.msgs);
	exposure_list_free(&res.warnings);
	return rc;
}

/* ---- ban, unban, bans ---- */

/* What ban and unban were asked: ADDRESS|CIDR [--rule RULE] [--for DURATION] [--kill]. */
struct commands_ban_req {
	struct access_prefix prefix;
	const char *rule; /* "" for every rule */
	double seconds;   /* 0: until unban or restart */
	bool kill;
};

static int commands_ban_parse(struct daemon *d, int argc, char **argv, bool ban,
			      struct commands_ban_req *r, char *err, size_t errlen)
{
	const char *addr = NULL;
	char why[160];

	memset(r, 0, sizeof(*r));
	r->rule = "";
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--rule") == 0 && i + 1 < argc) {
			r->rule = argv[++i];
		} else if (ban && strcmp(argv[i], "--for") == 0 && i + 1 < argc) {
			if (bans_parse_duration(argv[++i], &r->seconds, why, sizeof(why)) < 0) {
				snprintf(err, errlen, "%s: --for: %s", argv[0], why);
				return -1;
			}
		} else if (ban && strcmp(argv[i], "--kill") == 0) {
			r->kill = true;
		} else if (!addr && argv[i][0] != '-') {
			addr = argv[i];
		} else {
			snprintf(err, errlen, "usage: %s %s", argv[0], ctl_cmds[ban ? CTL_CMD_BAN : CTL_CMD_UNBAN].usage);
			return -1;
		}
	}
	if (!addr) {
		snprintf(err, errlen, "usage: %s %s", argv[0], ctl_cmds[ban ? CTL_CMD_BAN : CTL_CMD_UNBAN].usage);
		return -1;
	}
	if (access_prefix_parse(addr, &r->prefix, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: \"%.64s\": %s", argv[0], addr, why);
		return -1;
	}
	/* A new ban names a rule in force (a typo would ban nothing); an old
	 * one may outlive its rule. */
	if (ban && r->rule[0] && !daemon_find_rule(d, r->rule)) {
		commands_no_rule(d, r->rule, err, errlen);
		return -1;
	}
	return 0;
}

static bool commands_ban_match(const struct sockaddr *client, const void *prefix)
{
	return access_prefix_contains(prefix, client);
}

static void commands_wall(time_t t, char *buf, size_t len)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static json_t *commands_ban_json(const struct ban *b, double now)
{
	char addr[ACCESS_PREFIX_STRLEN];

	return json_pack("{s:s, s:s?, s:I, s:o, s:o}", "address",
			 access_prefix_format(&b->prefix, addr, sizeof(addr)), "rule",
			 b->rule[0] ? b->rule : NULL, "added", (json_int_t)b->added, "until",
			 b->until ? json_integer((json_int_t)b->until) : json_null(), "left",
			 b->expires > 0 ? json_real(b->expires - now) : json_null());
}

static int commands_ban(struct daemon *d, int argc, char **argv, bool json, struct evbuffer *out,
			char *err, size_t errlen)
{
	struct commands_ban_req r;
	unsigned closed = 0;
	char addr[ACCESS_PREFIX_STRLEN], until[64] = "";
	struct forward *fw;
	int rc;

	if (commands_ban_parse(d, argc, argv, true, &r, err, errlen) < 0)
		return -1;
	/* In force in every worker when this returns: nothing gets in after. */
	rc = bans_add(d->bans, &r.prefix, r.rule, r.seconds, err, errlen);
	if (rc < 0)
		return -1;
	for (size_t i = 0; r.kill && (fw = daemon_rule_at(d, i)); i++)
		if (!r.rule[0] || strcmp(fw->cfg.name, r.rule) == 0)
			closed += forward_kill_if(fw, commands_ban_match, &r.prefix, "banned by portfwdctl");
	if (json) {
		const struct ban *b = NULL;

		for (size_t i = 0; i < d->bans->n; i++)
			if (memcmp(&d->bans->list[i].prefix, &r.prefix, sizeof(r.prefix)) == 0 &&
			    strcmp(d->bans->list[i].rule, r.rule) == 0)
				b = &d->bans->list[i];
		return commands_json_out(json_pack("{s:o, s:b, s:i}", "ban", commands_ban_json(b, clock_now()),
						   "renewed", rc == 1, "closed", (int)closed),
					 out, err, errlen);
	}
	if (r.seconds > 0)
		commands_wall(time(NULL) + (time_t)r.seconds, until, sizeof(until));
	evbuffer_add_printf(out, "%s %s on %s%s, %s%s%s",
			    rc == 1 ? "renewed the ban of" : "banned",
			    access_prefix_format(&r.prefix, addr, sizeof(addr)),
			    r.rule[0] ? "rule " : "every rule", r.rule,
			    r.seconds > 0 ? "until " : "until unban or restart", until,
			    r.kill ? "" : "\n");
	if (r.kill)
		evbuffer_add_printf(out, "; closed %u connection%s and session%s\n", closed,
				    closed == 1 ? "" : "s", closed == 1 ? "" : "s");
	return 0;
}

static int commands_unban(struct daemon *d, int argc, char **argv, bool json, struct evbuffer *out,
			  char *err, size_t errlen)
{
	struct commands_ban_req r;
	char addr[ACCESS_PREFIX_STRLEN];
	int rc;

	if (commands_ban_parse(d, argc, argv, false, &r, err, errlen) < 0)
		return -1;
	access_prefix_format(&r.prefix, addr, sizeof(addr));
	rc = bans_remove(d->bans, &r.prefix, r.rule);
	if (rc == -2) {
		snprintf(err, errlen, "out of memory: the ban of %s stays in force; try again", addr);
		return -1;
	}
	if (rc < 0) {
		snprintf(err, errlen, "no ban of %s on %s%s (see portfwdctl bans)", addr,
			 r.rule[0] ? "rule " : "every rule", r.rule);
		return -1;
	}
	if (json)
		return commands_json_out(json_pack("{s:s, s:s?}", "unbanned", addr, "rule",
						   r.rule[0] ? r.rule : NULL),
					 out, err, errlen);
	evbuffer_add_printf(out, "unbanned %s on %s%s\n", addr, r.rule[0] ? "rule " : "every rule",
			    r.rule);
	return 0;
}

static int commands_bans(struct daemon *d, bool json, struct evbuffer *out, char *err, size_t errlen)
{
	double now = clock_now();
	json_t *list;

	if (json) {
		list = json_array();
		for (size_t i = 0; list && i < d->bans->n; i++)
			json_array_append_new(list, commands_ban_json(&d->bans->list[i], now));
		return commands_json_out(json_pack("{s:o}", "bans", list), out, err, errlen);
	}
	evbuffer_add_printf(out, "%-43s %-16s %-9s %s\n", "ADDRESS", "RULE", "LEFT", "UNTIL");
	for (size_t i = 0; i < d->bans->n; i++) {
		const struct ban *b = &d->bans->list[i];
		char addr[ACCESS_PREFIX_STRLEN], left[16] = "-", until[64] = "unban or restart";

		if (b->expires > 0) {
			commands_secs(b->expires - now, left, sizeof(left));
			commands_wall(b->until, until, sizeof(until));
		}
		evbuffer_add_printf(out, "%-43s %-16s %-9s %s\n",
				    access_prefix_format(&b->prefix, addr, sizeof(addr)),
				    b->rule[0] ? b->rule : "(every rule)", left, until);
	}
	evbuffer_add_printf(out, "%zu ban%s\n", d->bans->n, d->bans->n == 1 ? "" : "s");
	return 0;
}

/* sources RULE: the rule's busiest sources now, at most SOURCES_TOP_MAX. */
static int commands_sources(struct daemon *d, char **argv, bool json, struct evbuffer *out,
			    char *err, size_t errlen)
{
	struct sources_entry top[SOURCES_TOP_MAX];
	struct forward *fw = daemon_find_rule(d, argv[1]);
	const struct rule_per_source *ps;
	struct sources_census c;
	bool tracked;
	size_t n;

	if (!fw) {
		commands_no_rule(d, argv[1], err, errlen);
		return -1;
	}
	ps = &fw->cfg.set.per_source;
	tracked = ((fw->cfg.proto & RULE_PROTO_TCP) && sources_tracks(ps, SOURCES_TCP)) ||
		  ((fw->cfg.proto & RULE_PROTO_UDP) && sources_tracks(ps, SOURCES_UDP));
	n = sources_top(d->sources, fw->work.source_id, clock_now(), top, SOURCES_TOP_MAX, &c);
	if (json) {
		json_t *a = json_array();

		for (size_t i = 0; i < n; i++)
			json_array_append_new(
				a, json_pack("{s:s, s:i, s:i, s:f, s:f, s:f, s:I, s:f}", "source", top[i].name,
					     "connections", (int)top[i].connections,
					     "sessions", (int)top[i].sessions,
					     "new_per_minute", top[i].new_per_minute,
					     "datagrams_per_second", top[i].datagrams_in,
					     "replies_per_second", top[i].datagrams_out,
					     "limited", (json_int_t)top[i].limited, "idle", top[i].idle));
		return commands_json_out(json_pack("{s:s, s:b, s:o, s:i, s:{s:i, s:i, s:I, s:I}, s:o}",
						   "rule", fw->cfg.name, "tracked", tracked,
						   "per_source", commands_per_source_json(ps),
						   "sources_tracked", (int)c.tracked,
						   "table", "capacity", (int)c.capacity, "used", (int)c.used,
						   "evicted", (json_int_t)c.evicted,
						   "full", (json_int_t)c.full, "sources", a),
					 out, err, errlen);
	}
	if (!tracked)
		evbuffer_add_printf(out, "rule %s has no per_source limits: its sources are not tracked\n",
				    fw->cfg.name);
	evbuffer_add_printf(out, "rule %s: %u source%s tracked; table %u of %u entries in use, %llu evicted, %llu refused for want of room\n",
			    fw->cfg.name, c.tracked, c.tracked == 1 ? "" : "s", c.used, c.capacity,
			    (unsigned long long)c.evicted, (unsigned long long)c.full);
	if (n == 0)
		return 0;
	evbuffer_add_printf(out, "%-43s %5s %8s %7s %9s %9s %7s %8s\n", "SOURCE", "CONNS", "SESSIONS",
			    "NEW/MIN", "DGRAMS/S", "REPLIES/S", "LIMITED", "IDLE");
	for (size_t i = 0; i < n; i++) {
		char idle[16];

		evbuffer_add_printf(out, "%-43s %5u %8u %7.0f %9.0f %9.0f %7lu %8s\n", top[i].name,
				    top[i].connections, top[i].sessions, top[i].new_per_minute,
				    top[i].datagrams_in, top[i].datagrams_out,
				    (unsigned long)top[i].limited,
				    commands_secs(top[i].idle, idle, sizeof(idle)));
	}
	if (c.tracked > n)
		evbuffer_add_printf(out, "(the %zu busiest of %u)\n", n, c.tracked);
	return 0;
}

/*
 * TEXT then TAIL into BUF (LEN bytes). Where both do not fit, TEXT ends at
 * the end of a word, with " ...", and TAIL is kept whole: the line a person
 * or keepalived's log reads never has a word cut in two.
 */
static void commands_fit(char *buf, size_t len, const char *text, const char *tail)
{
	static const char cut[] = " ...";
	size_t n = strlen(text), tl = strlen(tail), c = 0;

	if (n + tl >= len) {
		if (len < tl + sizeof(cut)) {
			snprintf(buf, len, "%s", ""); /* no room to say anything whole */
			return;
		}
		/* TEXT's first N bytes, CUT, TAIL and the NUL fill LEN; back to
		 * where a space follows. */
		n = len - tl - sizeof(cut);
		while (n > 0 && text[n] != ' ')
			n--;
		c = sizeof(cut) - 1;
	}
	memcpy(buf, text, n);
	memcpy(buf + n, cut, c);
	memcpy(buf + n + c, tail, tl);
	buf[n + c + tl] = '\0';
}

/*
 * health: healthy when at least one rule is enabled and every enabled rule
 * is listening with a target to go to (one up, where health_check runs).
 * Otherwise the reply is an error (portfwdctl exits 1) whose message is
 * "unhealthy: " and the reason: the first rule at fault, and how many more
 * there are, or that no rule is enabled. That is what keepalived's
 * vrrp_script and a monitor want: a host with no rule enabled (all
 * disabled, as `portfwdctl free` does, or none configured) forwards
 * nothing and must not keep the shared address. A disabled rule is the
 * operator's choice, not a fault, as long as another one serves. With
 * --json the body says the same, its reason the same words.
 */
static int commands_health(struct daemon *d, bool json, struct evbuffer *out, char *err,
			   size_t errlen)
{
	static const char prefix[] = "unhealthy: ";
	char first[COMMANDS_ERROR_MAX] = "", more[64] = "", reason[COMMANDS_ERROR_MAX] = "";
	size_t enabled = 0, good = 0;
	bool healthy;

	for (size_t i = 0; i < d->nrules; i++) {
		struct forward *fw = d->rules[i];
		const char *state = forward_state_name(fw);
		const struct forward_proto *bad = fw->tcp.state == FORWARD_FAILED   ? &fw->tcp
						  : fw->udp.state == FORWARD_FAILED ? &fw->udp
										    : NULL;

		if (fw->disabled)
			continue;
		enabled++;
		if (strcmp(state, "listening") != 0) {
			/* The rule's error is whole (forward_sum_proto) and fits. */
			if (!first[0])
				snprintf(first, sizeof(first), "rule %s is %s%s%s", fw->cfg.name, state,
					 !bad ? "" : bad == &fw->tcp ? ": tcp: " : ": udp: ",
					 bad ? bad->error : "");
			continue;
		}
		if (fw->cfg.health.enabled && fw->targets && !targets_any_up(fw->targets)) {
			if (!first[0])
				snprintf(first, sizeof(first), "rule %s: none of its %zu targets is up (health checks)",
					 fw->cfg.name, rule_ntargets(&fw->cfg));
			continue;
		}
		good++;
	}
	healthy = enabled > 0 && good == enabled;
	if (!enabled && !d->nrules)
		snprintf(first, sizeof(first), "no rule is enabled (the configuration has none)");
	else if (!enabled)
		snprintf(first, sizeof(first), "no rule is enabled (%zu rule%s disabled)", d->nrules,
			 d->nrules == 1 ? "" : "s");
	else if (enabled - good > 1)
		snprintf(more, sizeof(more), " (and %zu more rule%s)", enabled - good - 1,
			 enabled - good == 2 ? "" : "s");
	if (!healthy) {
		/* As much as ERR has room for after the prefix. */
		size_t room = errlen > sizeof(prefix) ? errlen - (sizeof(prefix) - 1) : 1;

		commands_fit(reason, room < sizeof(reason) ? room : sizeof(reason), first, more);
	}
	if (json) {
		if (commands_json_out(json_pack("{s:b, s:i, s:i, s:s?}", "healthy", healthy,
						"enabled_rules", (int)enabled, "healthy_rules", (int)good,
						"reason", healthy ? NULL : reason),
				      out, err, errlen) < 0)
			return -1;
	} else if (healthy) {
		evbuffer_add_printf(out, "healthy: %zu of %zu enabled rule%s listening\n", good, enabled,
				    enabled == 1 ? "" : "s");
	}
	if (healthy)
		return 0;
	snprintf(err, errlen, "%s%s", prefix, reason);
	return -1;
}

int commands_run(struct daemon *d, enum ctl_cmd_id id, int argc, char **argv, bool json,
		 const char *payload, size_t len, struct evbuffer *out, char *err, size_t errlen)
{
	switch (id) {
	case CTL_CMD_STATUS:
		return commands_status(d, argc, argv, json, out, err, errlen);
	case CTL_CMD_RULES:
		return commands_rules(d, argc, argv, json, out, err, errlen);
	case CTL_CMD_CONNECTIONS:
		return commands_connections(d, argc, argv, json, out, err, errlen);
	case CTL_CMD_KILL:
		return commands_kill(d, argc, argv, json, out, err, errlen);
	case CTL_CMD_DISABLE:
		return commands_enable(d, argc, argv, json, false, out, err, errlen);
	case CTL_CMD_ENABLE:
		return commands_enable(d, argc, argv, json, true, out, err, errlen);
	case CTL_CMD_RELOAD:
		return commands_reload(d, json, out, err, errlen);
	case CTL_CMD_CHECK:
		return commands_check(d, argc, argv, json, payload, len, out, err, errlen);
	case CTL_CMD_METRICS:
		if (json)
			return commands_json_out(json_pack("{s:o}", "metrics", metrics_json(d)), out,
						 err, errlen);
		metrics_text(d, out);
		return 0;
	case CTL_CMD_BAN:
		return commands_ban(d, argc, argv, json, out, err, errlen);
	case CTL_CMD_UNBAN:
		return commands_unban(d, argc, argv, json, out, err, errlen);
	case CTL_CMD_BANS:
		return commands_bans(d, json, out, err, errlen);
	case CTL_CMD_SOURCES:
		return commands_sources(d, argv, json, out, err, errlen);
	case CTL_CMD_HEALTH:
		return commands_health(d, json, out, err, errlen);
	case CTL_CMD_PORTS:
	case CTL_CMD_WHO:
	case CTL_CMD_FREE:
		/* The daemon's sandbox cannot see other processes, and a
		 * client's question about them must not run with its rights. */
		snprintf(err, errlen, "%s runs in portfwdctl, not in the daemon: run `portfwdctl %s`",
			 ctl_cmds[id].name, ctl_cmds[id].name);
		return -1;
	default:
		snprintf(err, errlen, "not a daemon command");
		return -1;
	}
}
