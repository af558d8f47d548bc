#include "status.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "bans.h"
#include "clock.h"
#include "daemon.h"
#include "forward.h"
#include "http.h"
#include "privs.h"
#include "sources.h"
#include "router.h"
#include "targets.h"
#include "version.h"

static const char *status_state_name(enum forward_state s)
{
	switch (s) {
	case FORWARD_LISTENING:
		return "listening";
	case FORWARD_FAILED:
		return "failed";
	case FORWARD_CLOSED:
		return "closed";
	default:
		return "off";
	}
}

/* Seconds since the epoch, or null for "never". */
static json_t *status_time(time_t t)
{
	return t ? json_integer((json_int_t)t) : json_null();
}

static json_t *status_reload_json(const struct daemon *d)
{
	json_t *errs = json_array();

	for (size_t i = 0; i < d->last_errors.count; i++)
		json_array_append_new(errs, json_string(d->last_errors.msgs[i]));
	return json_pack("{s:I, s:I, s:b, s:o, s:f, s:o, s:o}",
			 "ok", (json_int_t)d->reloads_ok,
			 "failed", (json_int_t)d->reloads_failed,
			 "last_refused", d->last_refused,
			 "last", status_time(d->last_reload),
			 "last_seconds", d->last_reload_seconds,
			 "last_failed", status_time(d->last_failed),
			 "last_failed_errors", errs);
}

static json_t *status_draining_json(const struct daemon *d, double now)
{
	json_t *a = json_array();

	for (size_t i = 0; i < d->ndraining; i++) {
		const struct forward *fw = d->draining[i];
		char listen[RULE_ADDR_STRLEN];
		json_t *r = json_pack("{s:s, s:s, s:s, s:i, s:i, s:f}", "name", fw->cfg.name,
				      "proto", rule_proto_name(fw->cfg.proto),
				      "listen", rule_format_listen(&fw->cfg, listen, sizeof(listen)),
				      "tcp_active", (int)atomic_load(&fw->work.tcp_active),
				      "udp_active", (int)atomic_load(&fw->work.udp_active),
				      "draining_for", now - fw->drain_started);

		if (r)
			json_object_set_new(r, "listen_port", rule_port_json((const struct sockaddr *)&fw->cfg.listen, fw->cfg.listen_service));
		json_array_append_new(a, r);
	}
	return a;
}

static json_t *status_tcp_json(const struct forward *fw, const struct rule_stats *st)
{
	return json_pack("{s:s, s:s?, s:b, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "state", status_state_name(fw->tcp.state),
			 "error", fw->tcp.state == FORWARD_FAILED ? fw->tcp.error : NULL,
			 "paused", rulework_tcp_full(&fw->work),
			 "active", (json_int_t)st->tcp_active,
			 "accepted", (json_int_t)st->tcp_accepted,
			 "connect_failed", (json_int_t)st->tcp_connect_failed,
			 "bytes_to_target", (json_int_t)st->tcp_bytes_to_target,
			 "bytes_to_client", (json_int_t)st->tcp_bytes_to_client,
			 "bytes_spliced", (json_int_t)st->tcp_bytes_spliced);
}

static json_t *status_udp_json(const struct forward *fw, const struct rule_stats *st)
{
	return json_pack("{s:s, s:s?, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "state", status_state_name(fw->udp.state),
			 "error", fw->udp.state == FORWARD_FAILED ? fw->udp.error : NULL,
			 "active", (json_int_t)st->udp_active,
			 "sessions_created", (json_int_t)st->udp_sessions_created,
			 "sessions_expired", (json_int_t)st->udp_sessions_expired,
			 "datagrams_to_target", (json_int_t)st->udp_datagrams_to_target,
			 "datagrams_to_client", (json_int_t)st->udp_datagrams_to_client,
			 "bytes_to_target", (json_int_t)st->udp_bytes_to_target,
			 "bytes_to_client", (json_int_t)st->udp_bytes_to_client,
			 "dropped_limit", (json_int_t)st->udp_dropped_limit,
			 "dropped_error", (json_int_t)st->udp_dropped_error,
			 "target_errors", (json_int_t)st->udp_target_errors);
}

static json_t *status_totals_json(const struct rule_stats *t)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "tcp_active", (json_int_t)t->tcp_active,
			 "tcp_accepted", (json_int_t)t->tcp_accepted,
			 "tcp_connect_failed", (json_int_t)t->tcp_connect_failed,
			 "tcp_bytes_to_target", (json_int_t)t->tcp_bytes_to_target,
			 "tcp_bytes_to_client", (json_int_t)t->tcp_bytes_to_client,
			 "udp_active", (json_int_t)t->udp_active,
			 "udp_datagrams_to_target", (json_int_t)t->udp_datagrams_to_target,
			 "udp_datagrams_to_client", (json_int_t)t->udp_datagrams_to_client,
			 "udp_bytes_to_target", (json_int_t)t->udp_bytes_to_target,
			 "udp_bytes_to_client", (json_int_t)t->udp_bytes_to_client,
			 "udp_dropped", (json_int_t)(t->udp_dropped_limit + t->udp_dropped_error));
}

static int status_port_cmp(const void *a, const void *b)
{
	const struct forward_port *x = *(const struct forward_port *const *)a;
	const struct forward_port *y = *(const struct forward_port *const *)b;

	return (x->port > y->port) - (x->port < y->port);
}

/* Protocol K (0 TCP, 1 UDP) of port P: its state, why it failed, its counters. */
static json_t *status_port_proto_json(const struct forward_port *p, int k, const struct rule_stats *st)
{
	const struct forward_port_proto *pp = &p->p[k];
	json_t *o;

	if (k == 0)
		o = json_pack("{s:s, s:I, s:I, s:I, s:I}", "state", status_state_name(pp->state),
			      "accepted", (json_int_t)st->tcp_accepted, "active", (json_int_t)st->tcp_active,
			      "bytes_to_target", (json_int_t)st->tcp_bytes_to_target, "bytes_to_client",
			      (json_int_t)st->tcp_bytes_to_client);
	else
		o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "state", status_state_name(pp->state),
			      "active", (json_int_t)st->udp_active, "sessions_created",
			      (json_int_t)st->udp_sessions_created, "datagrams_to_target",
			      (json_int_t)st->udp_datagrams_to_target, "datagrams_to_client",
			      (json_int_t)st->udp_datagrams_to_client, "bytes_to_target",
			      (json_int_t)st->udp_bytes_to_target, "bytes_to_client",
			      (json_int_t)st->udp_bytes_to_client);
	if (o && pp->state == FORWARD_FAILED)
		json_object_set_new(o, "error", json_string(pp->why ? pp->why : ""));
	return o;
}

/* A range's ports, in order: each with its target port and, per protocol,
 * its state and counters summed over the workers. */
static json_t *status_ports_json(const struct forward *fw)
{
	const struct forward_port **order = calloc(fw->nports + 1, sizeof(*order));
	json_t *a = json_array();
	size_t n = 0;

	if (!order)
		return a;
	for (size_t i = 0; i < fw->nports; i++)
		if (fw->ports[i].active)
			order[n++] = &fw->ports[i];
	qsort(order, n, sizeof(*order), status_port_cmp);
	for (size_t i = 0; a && i < n; i++) {
		struct rule_stats st;
		json_t *o = json_pack("{s:i, s:i}", "port", (int)order[i]->port, "target_port",
				      (int)rule_target_port(&fw->cfg, order[i]->port));

		memset(&st, 0, sizeof(st));
		forward_port_stats(fw, order[i], &st);
		if (o && (fw->cfg.proto & RULE_PROTO_TCP))
			json_object_set_new(o, "tcp", status_port_proto_json(order[i], 0, &st));
		if (o && (fw->cfg.proto & RULE_PROTO_UDP))
			json_object_set_new(o, "udp", status_port_proto_json(order[i], 1, &st));
		json_array_append_new(a, o);
	}
	free(order);
	return a;
}

/* ---- who may connect: lists, bans, refusals ---- */

static json_t *status_set_json(const struct access_set *set, const char *text)
{
	if (!set)
		return json_null();
	return json_pack("{s:s, s:I, s:I}", "entries", text ? text : "", "ranges_v4",
			 (json_int_t)access_set_ranges4(set), "ranges_v6",
			 (json_int_t)access_set_ranges6(set));
}

json_t *status_access_json(const struct access_policy *p)
{
	return json_pack("{s:o, s:o}", "allow", status_set_json(p ? p->allow : NULL, p ? p->allow_text : NULL),
			 "deny", status_set_json(p ? p->deny : NULL, p ? p->deny_text : NULL));
}

static void status_set_text(const char *key, const struct access_set *set, const char *text,
			    struct evbuffer *out)
{
	size_t n4 = access_set_ranges4(set), n6 = access_set_ranges6(set);

	if (!set)
		return;
	evbuffer_add_printf(out, "  %-6s %s  (ranges: %zu IPv4, %zu IPv6)\n", key, text ? text : "", n4, n6);
}

void status_access_text(const struct access_policy *p, struct evbuffer *out)
{
	if (!p)
		return;
	status_set_text("allow", p->allow, p->allow_text, out);
	status_set_text("deny", p->deny, p->deny_text, out);
}

/* "denied": all refusals, "denied_by": per reason, into O (a tcp or udp object). */
static void status_denied_json(json_t *o, uint64_t list, uint64_t allow, uint64_t ban)
{
	json_object_set_new(o, "denied", json_integer((json_int_t)(list + allow + ban)));
	json_object_set_new(o, "denied_by", json_pack("{s:I, s:I, s:I}", "deny_list", (json_int_t)list,
						      "not_allowed", (json_int_t)allow, "banned",
						      (json_int_t)ban));
}

static json_t *status_lists_json(const struct daemon *d)
{
	json_t *a = json_array();

	for (size_t i = 0; i < d->cfg.nlists; i++) {
		const struct access_list *l = &d->cfg.lists[i];

		json_array_append_new(a, json_pack("{s:s, s:s?, s:I, s:I, s:I, s:i}", "name", l->name,
						   "file", l->file, "entries", (json_int_t)l->entries,
						   "ranges_v4", (json_int_t)access_set_ranges4(l->set),
						   "ranges_v6", (json_int_t)access_set_ranges6(l->set),
						   "line", l->line));
	}
	return a;
}

/* The daemon's lists and bans, a line each list. */
static void status_lists_text(const struct daemon *d, struct evbuffer *out)
{
	for (size_t i = 0; i < d->cfg.nlists; i++) {
		const struct access_list *l = &d->cfg.lists[i];

		evbuffer_add_printf(out, "list %s: %s%s%zu entr%s, %zu IPv4 and %zu IPv6 ranges\n", l->name,
				    l->file ? l->file : "", l->file ? ", " : "", l->entries,
				    l->entries == 1 ? "y" : "ies", access_set_ranges4(l->set),
				    access_set_ranges6(l->set));
	}
	if (d->bans && d->bans->n)
		evbuffer_add_printf(out, "%zu ban%s in force (portfwdctl bans)\n", d->bans->n,
				    d->bans->n == 1 ? "" : "s");
}

/* A rule's lists and, when it has any or refused anyone, its refusals. */
static void status_rule_access_text(const struct forward *fw, const struct rule_stats *st,
				    struct evbuffer *out)
{
	const uint64_t tcp = st->tcp_denied_list + st->tcp_denied_allow + st->tcp_denied_ban;
	const uint64_t udp = st->udp_denied_list + st->udp_denied_allow + st->udp_denied_ban;

	char what[96] = "";
	unsigned proto = fw->cfg.proto;

	status_access_text(fw->cfg.access, out);
	if (!fw->cfg.access && !tcp && !udp)
		return;
	if (proto & RULE_PROTO_TCP)
		snprintf(what, sizeof(what), "%llu TCP connection%s", (unsigned long long)tcp, tcp == 1 ? "" : "s");
	if (proto & RULE_PROTO_UDP)
		snprintf(what + strlen(what), sizeof(what) - strlen(what), "%s%llu UDP datagram%s",
			 proto & RULE_PROTO_TCP ? ", " : "", (unsigned long long)udp, udp == 1 ? "" : "s");
	evbuffer_add_printf(out, "  denied %s: %llu on the deny list, %llu not on the allow list, %llu banned\n",
			    what,
			    (unsigned long long)(st->tcp_denied_list + st->udp_denied_list),
			    (unsigned long long)(st->tcp_denied_allow + st->udp_denied_allow),
			    (unsigned long long)(st->tcp_denied_ban + st->udp_denied_ban));
}

/* PROTO's "limited" object: refusals by limit (K1, K2) and for want of room. */
static void status_limited_set(json_t *proto, const char *k1, uint64_t v1, const char *k2,
			       uint64_t v2, uint64_t full)
{
	if (proto)
		json_object_set_new(proto, "limited",
				    json_pack("{s:I, s:I, s:I}", k1, (json_int_t)v1, k2, (json_int_t)v2,
					      "table_full", (json_int_t)full));
}

/* What the per-source limits refused, by limit, into the rule's tcp and
 * udp objects of R (status --json). */
static void status_limited_json(const struct rule_stats *st, json_t *r)
{
	json_t *udp = json_object_get(r, "udp");

	status_limited_set(json_object_get(r, "tcp"), "connections", st->tcp_limited_connections,
			   "rate", st->tcp_limited_rate, st->tcp_limited_full);
	status_limited_set(udp, "sessions", st->udp_limited_sessions, "datagrams",
			   st->udp_limited_datagrams, st->udp_limited_full);
	if (udp)
		json_object_set_new(udp, "sessions_evicted", json_integer((json_int_t)st->udp_sessions_evicted));
}

/* The per-source line of a rule (status text), when it has limits or was limited. */
static void status_limited_text(const struct forward *fw, const struct rule_stats *st,
				struct evbuffer *out)
{
	const struct rule_per_source *ps = &fw->cfg.set.per_source;
	static const struct {
		unsigned proto;
		enum sources_kind kind;
		const char *name, *unit, *limits[2];
	} lines[2] = {
		{ RULE_PROTO_TCP, SOURCES_TCP, "tcp", "", { "max_connections", "new_per_minute" } },
		{ RULE_PROTO_UDP, SOURCES_UDP, "udp", " datagrams",
		  { "udp_sessions", "udp_datagrams_per_second" } },
	};
	const uint64_t counts[2][3] = {
		{ st->tcp_limited_connections, st->tcp_limited_rate, st->tcp_limited_full },
		{ st->udp_limited_sessions, st->udp_limited_datagrams, st->udp_limited_full },
	};

	for (int k = 0; k < 2; k++) {
		uint64_t sum = counts[k][0] + counts[k][1] + counts[k][2];

		if ((fw->cfg.proto & lines[k].proto) && (sum || sources_tracks(ps, lines[k].kind)))
			evbuffer_add_printf(out, "  %s  limited per source: %llu%s (%llu at %s, %llu at %s, %llu table full)\n",
					    lines[k].name, (unsigned long long)sum, lines[k].unit,
					    (unsigned long long)counts[k][0], lines[k].limits[0],
					    (unsigned long long)counts[k][1], lines[k].limits[1],
					    (unsigned long long)counts[k][2]);
	}
	if ((fw->cfg.proto & RULE_PROTO_UDP) && st->udp_sessions_evicted)
		evbuffer_add_printf(out, "  udp  %llu unanswered sessions gave their place to new clients (max_udp_sessions)\n",
				    (unsigned long long)st->udp_sessions_evicted);
}

/* The user the daemon runs as, by name where it has one. */
static const char *status_user(char *buf, size_t len)
{
	struct passwd *pw = getpwuid(geteuid());

	if (pw)
		snprintf(buf, len, "%s", pw->pw_name);
	else
		snprintf(buf, len, "%u", (unsigned)geteuid());
	return buf;
}

/* Rule I's interface (null: none), freebind and exposure warnings, into its object R. */
static void status_exposure_json(const struct daemon *d, size_t i, json_t *r)
{
	const char *ifname = d->rules[i]->cfg.interface;

	json_object_set_new(r, "interface", ifname[0] ? json_string(ifname) : json_null());
	json_object_set_new(r, "freebind", json_boolean(d->rules[i]->cfg.freebind));
	json_object_set_new(r, "warnings", exposure_json(&d->exposure, i));
}

/* Rule I's interface and exposure warnings, one line each, under its name. */
static void status_exposure_text(const struct daemon *d, size_t i, struct evbuffer *out)
{
	if (d->rules[i]->cfg.interface[0])
		evbuffer_add_printf(out, "  interface %s\n", d->rules[i]->cfg.interface);
	for (size_t k = 0; k < d->exposure.count; k++) {
		const struct exposure_item *it = &d->exposure.items[k];

		if (it->rule == i)
			evbuffer_add_printf(out, "  %s: %s\n", exposure_level_name(it->level), it->message);
	}
}

static void status_when(time_t t, char *buf, size_t len);

json_t *status_router_json(const struct daemon *d, const struct forward *fw)
{
	const struct rule_config *r = &fw->cfg;
	struct router_view v;
	json_t *o;

	if (r->set.router == ROUTER_OFF)
		return json_null();
	o = json_pack("{s:s, s:i, s:i}", "method", router_method_name(r->set.router), "lease",
		      (int)r->set.router_lease, "external_port_asked",
		      (int)(r->external_port ? r->external_port : rule_port_first(r)));
	if (!o)
		return NULL;
	if (!router_view(d->router, r->name, &v)) {
		json_object_set_new(o, "state", json_string(fw->disabled ? "off (rule disabled)" : "off"));
		return o;
	}
	json_object_set_new(o, "state", json_string(router_view_state(&v)));
	json_object_set_new(o, "used", v.mapped ? json_string(router_method_name(v.method)) : json_null());
	json_object_set_new(o, "mapped", json_integer(v.mapped));
	json_object_set_new(o, "total", json_integer(v.total));
	json_object_set_new(o, "external_address", v.external_addr[0] ? json_string(v.external_addr) : json_null());
	json_object_set_new(o, "external_port", v.mapped ? json_integer(v.external_port) : json_null());
	if (v.mapped && v.external_last != v.external_port)
		json_object_set_new(o, "external_port_last", json_integer(v.external_last));
	json_object_set_new(o, "internal_address", v.internal_addr[0] ? json_string(v.internal_addr) : json_null());
	json_object_set_new(o, "expires", status_time(v.expires));
	json_object_set_new(o, "renewals", json_integer((json_int_t)v.renewals));
	json_object_set_new(o, "failures", json_integer((json_int_t)v.failures));
	json_object_set_new(o, "error", v.error[0] ? json_string(v.error) : json_null());
	json_object_set_new(o, "warning", v.warning[0] ? json_string(v.warning) : json_null());
	return o;
}

void status_router_text(const struct daemon *d, const struct forward *fw, struct evbuffer *out)
{
	const struct rule_config *r = &fw->cfg;
	struct router_view v;
	char when[32], ports[16];

	if (r->set.router == ROUTER_OFF)
		return;
	if (!router_view(d->router, r->name, &v)) {
		evbuffer_add_printf(out, "  router %s: off%s\n", router_method_name(r->set.router),
				    fw->disabled ? " (rule disabled)" : "");
		return;
	}
	if (v.mapped) {
		if (v.external_last != v.external_port)
			snprintf(ports, sizeof(ports), "%u-%u", v.external_port, v.external_last);
		else
			snprintf(ports, sizeof(ports), "%u", v.external_port);
		if (v.expires)
			status_when(v.expires, when, sizeof(when));
		evbuffer_add_printf(out, "  router %s: %s by %s, %s:%s -> %s, lease until %s, %llu renewals\n",
				    router_method_name(r->set.router), router_view_state(&v),
				    router_method_name(v.method),
				    v.external_addr[0] ? v.external_addr : "(external address unknown)", ports,
				    v.internal_addr, v.expires ? when : "(no expiry)",
				    (unsigned long long)v.renewals);
	} else {
		evbuffer_add_printf(out, "  router %s: %s\n", router_method_name(r->set.router),
				    router_view_state(&v));
	}
	if (v.error[0])
		evbuffer_add_printf(out, "  router error: %s\n", v.error);
	if (v.warning[0])
		evbuffer_add_printf(out, "  WARNING: %s\n", v.warning);
}

/* daemon.http as it serves (null: off), with its exposure warnings. */
static json_t *status_http_json(const struct daemon *d)
{
	json_t *o = http_json(d->http);

	if (json_is_object(o))
		json_object_set_new(o, "warnings", exposure_json(&d->exposure, EXPOSURE_HTTP));
	return o;
}

static void status_http_text(const struct daemon *d, struct evbuffer *out)
{
	char addr[RULE_ADDR_STRLEN];
	struct http_stats st;

	if (!d->http)
		return;
	http_stats(d->http, &st);
	rule_format_addr((const struct sockaddr *)&http_config(d->http)->listen, addr, sizeof(addr));
	evbuffer_add_printf(out, "http: http://%s/ (/metrics, /status.json, /health): %llu requests, %llu refused, %zu connection%s open\n",
			    addr, (unsigned long long)st.requests,
			    (unsigned long long)(st.denied + st.busy + st.slow), st.connections,
			    st.connections == 1 ? "" : "s");
	for (size_t k = 0; k < d->exposure.count; k++)
		if (d->exposure.items[k].rule == EXPOSURE_HTTP)
			evbuffer_add_printf(out, "  %s: %s\n", exposure_level_name(d->exposure.items[k].level),
					    d->exposure.items[k].message);
}

json_t *status_json(const struct daemon *d)
{
	char user[64];
	json_t *root, *rules = json_array();
	struct rule_stats total;
	char listen[RULE_ADDR_STRLEN], target[RULE_ADDR_STRLEN];

	memset(&total, 0, sizeof(total));
	for (size_t i = 0; i < d->nrules; i++) {
		const struct forward *fw = d->rules[i];
		struct rule_stats st;
		json_t *r = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}",
				      "name", fw->cfg.name,
				      "proto", rule_proto_name(fw->cfg.proto),
				      "listen", rule_format_listen(&fw->cfg, listen, sizeof(listen)),
				      "target", rule_format_target(&fw->cfg, target, sizeof(target)),
				      "state", forward_state_name(fw),
				      "splice", fw->cfg.set.splice);

		forward_stats(fw, &st);
		json_object_set_new(r, "listen_port", rule_port_json((const struct sockaddr *)&fw->cfg.listen, fw->cfg.listen_service));
		json_object_set_new(r, "target_port", rule_port_json((const struct sockaddr *)&fw->cfg.target, fw->cfg.target_service));
		if (rule_is_range(&fw->cfg)) {
			rule_range_json(&fw->cfg, r);
			json_object_set_new(r, "ports", status_ports_json(fw));
		}
		status_exposure_json(d, i, r);
		json_object_set_new(r, "balance", json_string(rule_balance_name(fw->cfg.balance)));
		json_object_set_new(r, "health_check", json_boolean(fw->cfg.health.enabled));
		if (fw->targets)
			json_object_set_new(r, "targets", targets_json(fw->targets));
		json_object_set_new(r, "router", status_router_json(d, fw));
		if (fw->cfg.proto & RULE_PROTO_TCP) {
			json_object_set_new(r, "tcp", status_tcp_json(fw, &st));
			status_denied_json(json_object_get(r, "tcp"), st.tcp_denied_list,
					   st.tcp_denied_allow, st.tcp_denied_ban);
		}
		if (fw->cfg.proto & RULE_PROTO_UDP) {
			json_object_set_new(r, "udp", status_udp_json(fw, &st));
			status_denied_json(json_object_get(r, "udp"), st.udp_denied_list,
					   st.udp_denied_allow, st.udp_denied_ban);
		}
		json_object_update_missing_new(r, status_access_json(fw->cfg.access));
		status_limited_json(&st, r);
		json_array_append_new(rules, r);
		stats_sum(&total, &st);
	}
	root = json_pack("{s:s, s:i, s:I, s:f, s:I, s:s, s:s, s:I, s:s, s:I, s:I, s:b, s:I, s:o, s:f, s:o, s:o, s:o}",
			 "version", PORTFWD_VERSION,
			 "protocol", 1,
			 "pid", (json_int_t)getpid(),
			 "uptime", clock_now() - d->started_mono,
			 "started", (json_int_t)d->started_wall,
			 "config", d->cfg.path,
			 "control_socket", d->cfg.control_socket,
			 "workers", (json_int_t)d->nworkers,
			 "user", status_user(user, sizeof(user)),
			 "uid", (json_int_t)geteuid(),
			 "gid", (json_int_t)getegid(),
			 "can_bind_below_1024", privs_can_bind_low(),
			 "generation", (json_int_t)d->generation,
			 "reload", status_reload_json(d),
			 "drain_timeout", d->cfg.drain_timeout,
			 "draining", status_draining_json(d, clock_now()),
			 "rules", rules,
			 "totals", status_totals_json(&total));
	json_object_set_new(root, "lists", status_lists_json(d));
	json_object_set_new(root, "http", status_http_json(d));
	json_object_set_new(root, "bans", json_integer(d->bans ? (json_int_t)d->bans->n : 0));
	status_denied_json(json_object_get(root, "totals"),
			   total.tcp_denied_list + total.udp_denied_list,
			   total.tcp_denied_allow + total.udp_denied_allow,
			   total.tcp_denied_ban + total.udp_denied_ban);
	json_object_set_new(json_object_get(root, "totals"), "tcp_limited",
			    json_integer((json_int_t)(total.tcp_limited_connections + total.tcp_limited_rate +
						      total.tcp_limited_full)));
	json_object_set_new(json_object_get(root, "totals"), "udp_limited",
			    json_integer((json_int_t)(total.udp_limited_sessions +
						      total.udp_limited_datagrams + total.udp_limited_full)));
	return root;
}

const char *status_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

const char *status_duration(double secs, char *buf, size_t len)
{
	unsigned long s = secs > 0 ? (unsigned long)secs : 0;

	if (s >= 86400)
		snprintf(buf, len, "%lud %luh %lum", s / 86400, s % 86400 / 3600, s % 3600 / 60);
	else if (s >= 3600)
		snprintf(buf, len, "%luh %lum %lus", s / 3600, s % 3600 / 60, s % 60);
	else if (s >= 60)
		snprintf(buf, len, "%lum %lus", s / 60, s % 60);
	else
		snprintf(buf, len, "%lus", s);
	return buf;
}

static void status_when(time_t t, char *buf, size_t len)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

/* The reload lines: last applied, last refused with its errors, draining rules. */
static void status_text_reloads(const struct daemon *d, struct evbuffer *out)
{
	char when[64];

	if (d->last_reload) {
		status_when(d->last_reload, when, sizeof(when));
		evbuffer_add_printf(out, "last reload %s (%.1f ms), %llu applied, %llu refused\n", when,
				    d->last_reload_seconds * 1000, (unsigned long long)d->reloads_ok,
				    (unsigned long long)d->reloads_failed);
	}
	if (d->last_failed) {
		status_when(d->last_failed, when, sizeof(when));
		evbuffer_add_printf(out, "last refused reload %s:\n", when);
		for (size_t i = 0; i < d->last_errors.count; i++)
			evbuffer_add_printf(out, "  %s\n", d->last_errors.msgs[i]);
	}
	for (size_t i = 0; i < d->ndraining; i++) {
		const struct forward *fw = d->draining[i];
		char listen[RULE_PORT_STRLEN];

		evbuffer_add_printf(out, "draining (removed) %s  %s  %s: %u connection%s, %u UDP session%s, for %.0fs\n",
				    fw->cfg.name, rule_proto_name(fw->cfg.proto),
				    rule_is_range(&fw->cfg) ? rule_format_listen(&fw->cfg, listen, sizeof(listen))
							    : rule_format_port((const struct sockaddr *)&fw->cfg.listen, fw->cfg.listen_service, listen, sizeof(listen)),
				    atomic_load(&fw->work.tcp_active), atomic_load(&fw->work.tcp_active) == 1 ? "" : "s",
				    atomic_load(&fw->work.udp_active), atomic_load(&fw->work.udp_active) == 1 ? "" : "s",
				    clock_now() - fw->drain_started);
	}
}

void status_text(const struct daemon *d, struct evbuffer *out)
{
	char up[64], route[RULE_ROUTE_STRLEN], user[64];
	char b1[16], b2[16];
	size_t ok = 0, off = 0;

	for (size_t i = 0; i < d->nrules; i++) {
		ok += forward_ready(d->rules[i]);
		off += d->rules[i]->disabled;
	}
	status_duration(clock_now() - d->started_mono, up, sizeof(up));
	evbuffer_add_printf(out, "portfwd %s, pid %ld, up %s, %zu worker%s, user %s\n", PORTFWD_VERSION,
			    (long)getpid(), up, d->nworkers, d->nworkers == 1 ? "" : "s",
			    status_user(user, sizeof(user)));
	evbuffer_add_printf(out, "config %s, generation %llu, %zu rule%s: %zu listening, %zu failed, %zu disabled\n",
			    d->cfg.path, (unsigned long long)d->generation, d->nrules,
			    d->nrules == 1 ? "" : "s", ok, d->nrules - ok - off, off);
	status_text_reloads(d, out);
	status_http_text(d, out);
	status_lists_text(d, out);
	for (size_t i = 0; i < d->nrules; i++) {
		const struct forward *fw = d->rules[i];
		struct rule_stats stats, *st = &stats;

		forward_stats(fw, st);
		evbuffer_add_printf(out, "\n%s  %s  %s  %s\n", fw->cfg.name,
				    rule_proto_name(fw->cfg.proto),
				    rule_format_route(&fw->cfg, route, sizeof(route)),
				    fw->disabled		       ? "disabled"
				    : !forward_ready(fw)	       ? "FAILED"
				    : targets_waiting_dns(fw->targets) ? "WAITING FOR DNS"
								       : "listening");
		status_exposure_text(d, i, out);
		/* One target is on the rule's line; several, a line each; a name
		 * has its addresses or its error on a line of its own. */
		if (fw->targets && (targets_count(fw->targets) > 1 || fw->cfg.health.enabled))
			evbuffer_add_printf(out, "  balance %s%s\n", rule_balance_name(fw->cfg.balance),
					    fw->cfg.health.enabled ? ", health checks" : "");
		if (fw->targets && (targets_count(fw->targets) > 1 || fw->cfg.health.enabled ||
				    rule_target_host(&fw->cfg)))
			targets_text(fw->targets, out);
		status_router_text(d, fw, out);
		if (fw->cfg.proto & RULE_PROTO_TCP) {
			if (fw->tcp.state == FORWARD_FAILED)
				evbuffer_add_printf(out, "  tcp failed: %s\n", fw->tcp.error);
			evbuffer_add_printf(out, "  tcp  %llu active%s, %llu accepted, %llu connect failures, %s to target, %s to client\n",
					    (unsigned long long)st->tcp_active,
					    rulework_tcp_full(&fw->work) ? " (max_connections reached, accepting paused)" : "",
					    (unsigned long long)st->tcp_accepted,
					    (unsigned long long)st->tcp_connect_failed,
					    status_bytes(st->tcp_bytes_to_target, b1, sizeof(b1)),
					    status_bytes(st->tcp_bytes_to_client, b2, sizeof(b2)));
		}
		if (fw->cfg.proto & RULE_PROTO_UDP) {
			if (fw->udp.state == FORWARD_FAILED)
				evbuffer_add_printf(out, "  udp failed: %s\n", fw->udp.error);
			evbuffer_add_printf(out, "  udp  %llu sessions, %llu created, %llu datagrams (%s) to target, %llu datagrams (%s) to client, %llu dropped\n",
					    (unsigned long long)st->udp_active,
					    (unsigned long long)st->udp_sessions_created,
					    (unsigned long long)st->udp_datagrams_to_target,
					    status_bytes(st->udp_bytes_to_target, b1, sizeof(b1)),
					    (unsigned long long)st->udp_datagrams_to_client,
					    status_bytes(st->udp_bytes_to_client, b2, sizeof(b2)),
					    (unsigned long long)(st->udp_dropped_limit + st->udp_dropped_error));
		}
		status_rule_access_text(fw, st, out);
		status_limited_text(fw, st, out);
	}
}
