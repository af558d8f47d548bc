#include "metrics.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "bans.h"
#include "clock.h"
#include "daemon.h"
#include "forward.h"
#include "http.h"
#include "relay_udp.h"
#include "router.h"
#include "sources.h"
#include "targets.h"
#include "version.h"
#include "worker.h"

/*
 * One writer for both outputs, so the text and the JSON always hold the
 * same samples. Rule names are [A-Za-z0-9._-] (config.c), so label values
 * need no escaping; the version is ours.
 */
struct metrics_out {
	struct evbuffer *text;
	json_t *json;
};

static void metrics_family(struct metrics_out *m, const char *name, const char *type,
			   const char *help)
{
	if (m->text)
		evbuffer_add_printf(m->text, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A sample with NLABELS pairs of (name, value) strings after VALUE. */
static void metrics_sample(struct metrics_out *m, const char *name, double value, int nlabels,
			   ...)
{
	json_t *labels = m->json ? json_object() : NULL;
	va_list ap;

	if (m->text)
		evbuffer_add_printf(m->text, "%s", name);
	va_start(ap, nlabels);
	for (int i = 0; i < nlabels; i++) {
		const char *k = va_arg(ap, const char *);
		const char *v = va_arg(ap, const char *);

		if (m->text)
			evbuffer_add_printf(m->text, "%s%s=\"%s\"", i ? "," : "{", k, v);
		if (labels)
			json_object_set_new(labels, k, json_string(v));
	}
	va_end(ap);
	if (m->text)
		evbuffer_add_printf(m->text, "%s %.17g\n", nlabels ? "}" : "", value);
	if (m->json)
		json_array_append_new(m->json, json_pack("{s:s, s:o, s:f}", "name", name, "labels",
							 labels, "value", value));
}

/* A family of one sample without labels. */
static void metrics_one(struct metrics_out *m, const char *name, const char *type,
			const char *help, double value)
{
	metrics_family(m, name, type, help);
	metrics_sample(m, name, value, 0);
}

/* The per-rule families: one field of struct rule_stats each. */
struct metrics_rule_family {
	const char *name, *type, *help;
	const char *label, *label_value; /* an extra label, or NULL */
	size_t offset;                   /* into struct rule_stats */
	unsigned proto;                  /* the rules it applies to */
};

#define MF(field) offsetof(struct rule_stats, field)
static const struct metrics_rule_family metrics_rule_families[] = {
	{ "portfwd_tcp_connections_accepted_total", "counter",
	  "TCP connections accepted and relayed.", NULL, NULL, MF(tcp_accepted), RULE_PROTO_TCP },
	{ "portfwd_tcp_connections_active", "gauge", "TCP connections being relayed now.", NULL,
	  NULL, MF(tcp_active), RULE_PROTO_TCP },
	{ "portfwd_tcp_connections_failed_total", "counter",
	  "TCP connections whose target could not be reached, by reason.", "reason", "refused",
	  MF(tcp_failed_refused), RULE_PROTO_TCP },
	{ NULL, NULL, NULL, "reason", "timeout", MF(tcp_failed_timeout), RULE_PROTO_TCP },
	{ NULL, NULL, NULL, "reason", "unreachable", MF(tcp_failed_unreachable), RULE_PROTO_TCP },
	{ NULL, NULL, NULL, "reason", "other", MF(tcp_failed_other), RULE_PROTO_TCP },
	{ "portfwd_tcp_bytes_total", "counter", "TCP bytes relayed, by direction.", "direction",
	  "to_target", MF(tcp_bytes_to_target), RULE_PROTO_TCP },
	{ NULL, NULL, NULL, "direction", "to_client", MF(tcp_bytes_to_client), RULE_PROTO_TCP },
	{ "portfwd_tcp_bytes_spliced_total", "counter",
	  "Of the TCP bytes, those moved kernel to kernel by splice(2).", NULL, NULL,
	  MF(tcp_bytes_spliced), RULE_PROTO_TCP },
	{ "portfwd_udp_sessions_active", "gauge", "UDP sessions (client addresses) open now.", NULL,
	  NULL, MF(udp_active), RULE_PROTO_UDP },
	{ "portfwd_udp_sessions_created_total", "counter", "UDP sessions created.", NULL, NULL,
	  MF(udp_sessions_created), RULE_PROTO_UDP },
	{ "portfwd_udp_sessions_expired_total", "counter",
	  "UDP sessions ended by udp_idle_timeout.", NULL, NULL, MF(udp_sessions_expired),
	  RULE_PROTO_UDP },
	{ "portfwd_udp_datagrams_total", "counter", "UDP datagrams relayed, by direction.",
	  "direction", "to_target", MF(udp_datagrams_to_target), RULE_PROTO_UDP },
	{ NULL, NULL, NULL, "direction", "to_client", MF(udp_datagrams_to_client), RULE_PROTO_UDP },
	{ "portfwd_udp_bytes_total", "counter", "UDP payload bytes relayed, by direction.",
	  "direction", "to_target", MF(udp_bytes_to_target), RULE_PROTO_UDP },
	{ NULL, NULL, NULL, "direction", "to_client", MF(udp_bytes_to_client), RULE_PROTO_UDP },
	{ "portfwd_udp_datagrams_dropped_total", "counter",
	  "UDP datagrams dropped: from new clients over max_udp_sessions (limit), or refused by a socket (error).",
	  "reason", "limit", MF(udp_dropped_limit), RULE_PROTO_UDP },
	{ NULL, NULL, NULL, "reason", "error", MF(udp_dropped_error), RULE_PROTO_UDP },
	{ "portfwd_udp_target_errors_total", "counter",
	  "ICMP errors the UDP targets' hosts sent back (port unreachable: nothing listens), as the sessions' sockets report them (one at a time: a burst counts once).",
	  NULL, NULL, MF(udp_target_errors), RULE_PROTO_UDP },
	{ "portfwd_tcp_connections_denied_total", "counter",
	  "TCP connections reset at once, by reason: on a deny list, not on the allow list, banned.",
	  "reason", "deny_list", MF(tcp_denied_list), RULE_PROTO_TCP },
	{ NULL, NULL, NULL, "reason", "not_allowed", MF(tcp_denied_allow), RULE_PROTO_TCP },
	{ NULL, NULL, NULL, "reason", "banned", MF(tcp_denied_ban), RULE_PROTO_TCP },
	{ "portfwd_udp_datagrams_denied_total", "counter",
	  "UDP datagrams dropped from clients without a session, by reason: on a deny list, not on the allow list, banned.",
	  "reason", "deny_list", MF(udp_denied_list), RULE_PROTO_UDP },
	{ NULL, NULL, NULL, "reason", "not_allowed", MF(udp_denied_allow), RULE_PROTO_UDP },
	{ NULL, NULL, NULL, "reason", "banned", MF(udp_denied_ban), RULE_PROTO_UDP },
	{ "portfwd_tcp_connections_limited_total", "counter",
	  "TCP connections refused (reset) by a per_source limit, by limit; table_full: no room to track a new source.",
	  "limit", "max_connections", MF(tcp_limited_connections), RULE_PROTO_TCP },
	{ NULL, NULL, NULL, "limit", "new_per_minute", MF(tcp_limited_rate), RULE_PROTO_TCP },
	{ NULL, NULL, NULL, "limit", "table_full", MF(tcp_limited_full), RULE_PROTO_TCP },
	{ "portfwd_udp_datagrams_limited_total", "counter",
	  "UDP datagrams dropped by a per_source limit, by limit (udp_datagrams_per_second counts replies too); table_full: no room to track a new source.",
	  "limit", "udp_sessions", MF(udp_limited_sessions), RULE_PROTO_UDP },
	{ NULL, NULL, NULL, "limit", "udp_datagrams_per_second", MF(udp_limited_datagrams), RULE_PROTO_UDP },
	{ NULL, NULL, NULL, "limit", "table_full", MF(udp_limited_full), RULE_PROTO_UDP },
	{ "portfwd_udp_sessions_evicted_total", "counter",
	  "UDP sessions their target never answered, ended at max_udp_sessions to make room for a new client.",
	  NULL, NULL, MF(udp_sessions_evicted), RULE_PROTO_UDP },
};
#undef MF

/* The lists in force and the bans: sizes, never the entries. */
static void metrics_access(const struct daemon *d, struct metrics_out *m)
{
	metrics_family(m, "portfwd_list_entries", "gauge",
		       "Entries of each named list, as written (a list file: its lines with an address).");
	for (size_t i = 0; i < d->cfg.nlists; i++)
		metrics_sample(m, "portfwd_list_entries", (double)d->cfg.lists[i].entries, 1, "list",
			       d->cfg.lists[i].name);
	metrics_family(m, "portfwd_list_ranges", "gauge",
		       "Address ranges of each named list once merged, by family.");
	for (size_t i = 0; i < d->cfg.nlists; i++) {
		metrics_sample(m, "portfwd_list_ranges", (double)access_set_ranges4(d->cfg.lists[i].set), 2,
			       "list", d->cfg.lists[i].name, "family", "ipv4");
		metrics_sample(m, "portfwd_list_ranges", (double)access_set_ranges6(d->cfg.lists[i].set), 2,
			       "list", d->cfg.lists[i].name, "family", "ipv6");
	}
	metrics_family(m, "portfwd_rule_list_ranges", "gauge",
		       "Address ranges of each rule's allow and deny list (absent: the rule has none).");
	for (size_t i = 0; i < d->nrules; i++) {
		const struct access_policy *p = d->rules[i]->cfg.access;
		const struct access_set *sets[2] = { p ? p->allow : NULL, p ? p->deny : NULL };
		static const char *const kind[2] = { "allow", "deny" };

		for (int k = 0; k < 2; k++)
			if (sets[k])
				metrics_sample(m, "portfwd_rule_list_ranges",
					       (double)(access_set_ranges4(sets[k]) + access_set_ranges6(sets[k])),
					       2, "rule", d->rules[i]->cfg.name, "list", kind[k]);
	}
	metrics_family(m, "portfwd_bans", "gauge", "Bans in force (portfwdctl ban).");
	metrics_sample(m, "portfwd_bans", d->bans ? (double)d->bans->n : 0, 0);
}

/* The per-source table: its size, what it holds, what it had to forget or refuse. */
static void metrics_sources(const struct daemon *d, struct metrics_out *m)
{
	struct sources_census c;

	sources_census(d->sources, &c);
	metrics_one(m, "portfwd_sources_tracked", "gauge",
		    "Entries of the per-source table that hold a source (of any rule).",
		    c.used);
	metrics_one(m, "portfwd_sources_capacity", "gauge",
		    "Entries of the per-source table (daemon.max_tracked_sources).",
		    c.capacity);
	metrics_one(m, "portfwd_sources_evicted_total", "counter",
		    "Idle sources forgotten to make room for new ones.",
		    (double)c.evicted);
	metrics_one(m, "portfwd_sources_full_total", "counter",
		    "New sources refused because every entry near their place held a connected source (table_full); refusals start well before every entry is in use.",
		    (double)c.full);
}

/* Each rule's targets: up or down, connections, failures. */
static void metrics_targets(const struct daemon *d, struct metrics_out *m)
{
	static const struct {
		const char *name, *type, *help;
	} fam[4] = {
		{ "portfwd_target_up", "gauge", "1 if the target is up (taken by new connections first), 0 if down." },
		{ "portfwd_target_connections_active", "gauge",
		  "TCP connections and UDP sessions on the target now (connecting ones too)." },
		{ "portfwd_target_connections_total", "counter",
		  "TCP connections to the target that connected, and UDP sessions started." },
		{ "portfwd_target_failures_total", "counter",
		  "Connects to the target that failed (refused, unreachable, timed out)." },
	};

	for (int f = 0; f < 4; f++) {
		metrics_family(m, fam[f].name, fam[f].type, fam[f].help);
		for (size_t i = 0; i < d->nrules; i++) {
			struct targets *t = d->rules[i]->targets;

			for (size_t k = 0; t && k < targets_count(t); k++) {
				struct targets_stats ts;
				char addr[RULE_ADDR_STRLEN];
				double v;

				targets_stats(t, k, &ts);
				v = f == 0 ? ts.up : f == 1 ? ts.active : f == 2 ? (double)ts.connections : (double)ts.failures;
				/* A named target by its name, which stays as its addresses change. */
				metrics_sample(m, fam[f].name, v, 2, "rule", d->rules[i]->cfg.name, "target",
					       targets_host(t, k) ? targets_text_of(t, k)
								  : rule_format_addr(targets_addr(t, k, NULL), addr, sizeof(addr)));
			}
		}
	}
}

/* Each rule's mapping on the home router (rules with router = ...). */
static void metrics_router(const struct daemon *d, struct metrics_out *m)
{
	static const struct {
		const char *name, *type, *help;
	} fam[7] = {
		{ "portfwd_router_mappings", "gauge",
		  "Ports (per protocol) the rule asks the router to forward to this host." },
		{ "portfwd_router_mapped", "gauge", "Of those, the ones the router forwards now." },
		{ "portfwd_router_lease_expiry_seconds", "gauge",
		  "When the earliest lease of the rule's mappings ends, in seconds since the Unix epoch (absent: no expiry)." },
		{ "portfwd_router_renewals_total", "counter", "Mappings renewed on the router." },
		{ "portfwd_router_failures_total", "counter", "Requests to the router that failed." },
		{ "portfwd_router_external_unreachable", "gauge",
		  "1 if the router's external address is private or carrier-grade NAT: the internet cannot reach the port." },
		{ "portfwd_router_protocol", "gauge",
		  "1 for the protocol that maps the rule's ports now (absent while none does)." },
	};

	for (int f = 0; f < 7; f++) {
		metrics_family(m, fam[f].name, fam[f].type, fam[f].help);
		for (size_t i = 0; i < d->nrules; i++) {
			struct router_view v;
			double x;

			if (!router_view(d->router, d->rules[i]->cfg.name, &v))
				continue;
			if ((f == 2 && !v.expires) || (f == 6 && !v.mapped))
				continue;
			if (f == 6) {
				metrics_sample(m, fam[f].name, 1, 2, "rule", d->rules[i]->cfg.name, "protocol",
					       router_method_name(v.method));
				continue;
			}
			x = f == 0 ? v.total : f == 1 ? v.mapped : f == 2 ? (double)v.expires
			    : f == 3 ? (double)v.renewals : f == 4 ? (double)v.failures : v.warning[0] != '\0';
			/* The configured method: a series stays one series. */
			metrics_sample(m, fam[f].name, x, 2, "rule", d->rules[i]->cfg.name, "method",
				       router_method_name(v.wanted_method));
		}
	}
}

/* The splice pipes that grew for busy connections (relay_tcp.c). */
static void metrics_pipes(struct metrics_out *m)
{
	struct worker_pipe_stats st;

	worker_pipe_stats(&st);
	metrics_one(m, "portfwd_splice_pipe_grown_bytes", "gauge",
		    "Capacity that busy connections' splice pipes hold beyond their first size.",
		    (double)st.grown_bytes);
	metrics_one(m, "portfwd_splice_pipe_grow_budget_bytes", "gauge",
		    "The most that grown pipes may hold: a quarter of fs.pipe-user-pages-soft.",
		    (double)st.budget_bytes);
	metrics_one(m, "portfwd_splice_pipe_grows_total", "counter",
		    "Times a connection's splice pipe grew because its reads kept filling it.",
		    (double)st.grows);
}

/* The UDP offloads (relay_udp.c): whether they are at work on this kernel. */
static void metrics_udp_offloads(struct metrics_out *m)
{
	unsigned long long gso, gro;

	relay_udp_offload_stats(&gso, &gro);
	metrics_one(m, "portfwd_udp_gso_sends_total", "counter",
		    "UDP sends that carried several datagrams in one system call (UDP_SEGMENT).",
		    (double)gso);
	metrics_one(m, "portfwd_udp_gro_receives_total", "counter",
		    "Buffers from UDP clients that held several datagrams the kernel merged (UDP_GRO).",
		    (double)gro);
}

static void metrics_write(const struct daemon *d, struct metrics_out *m)
{
	const size_t nfam = sizeof(metrics_rule_families) / sizeof(metrics_rule_families[0]);
	struct rule_stats *st = calloc(d->nrules + 1, sizeof(*st));
	unsigned draining_conns = 0;

	for (size_t i = 0; st && i < d->nrules; i++)
		forward_stats(d->rules[i], &st[i]);
	for (size_t i = 0; i < d->ndraining; i++)
		draining_conns += atomic_load(&d->draining[i]->work.held);

	metrics_family(m, "portfwd_info", "gauge", "Always 1; the labels say which portfwd runs.");
	metrics_sample(m, "portfwd_info", 1, 1, "version", PORTFWD_VERSION);
	metrics_one(m, "portfwd_start_time_seconds", "gauge",
		    "When the daemon started, in seconds since the Unix epoch.",
		    (double)d->started_wall);
	metrics_family(m, "portfwd_uptime_seconds", "gauge", "Seconds since the daemon started.");
	metrics_sample(m, "portfwd_uptime_seconds", clock_now() - d->started_mono, 0);
	metrics_family(m, "portfwd_workers", "gauge", "Worker threads carrying the traffic.");
	metrics_sample(m, "portfwd_workers", (double)d->nworkers, 0);
	metrics_one(m, "portfwd_config_generation", "gauge",
		    "The configuration in force: 1 at start, one more per applied reload.",
		    (double)d->generation);
	metrics_family(m, "portfwd_reloads_total", "counter",
		       "Reloads, applied (ok) or refused because the file was invalid (failed).");
	metrics_sample(m, "portfwd_reloads_total", (double)d->reloads_ok, 1, "result", "ok");
	metrics_sample(m, "portfwd_reloads_total", (double)d->reloads_failed, 1, "result", "failed");
	metrics_one(m, "portfwd_config_last_reload_successful", "gauge",
		    "1 if the last reload was applied (or none was tried), 0 if it was refused.",
		    d->last_refused ? 0 : 1);
	metrics_pipes(m);
	metrics_udp_offloads(m);
	metrics_family(m, "portfwd_rules", "gauge", "Rules in the configuration in force.");
	metrics_sample(m, "portfwd_rules", (double)d->nrules, 0);
	metrics_one(m, "portfwd_draining_rules", "gauge",
		    "Rules removed by a reload whose connections have not ended yet.",
		    (double)d->ndraining);
	metrics_one(m, "portfwd_draining_connections", "gauge",
		    "TCP connections and UDP sessions of removed rules, still open.",
		    draining_conns);

	if (d->http) {
		struct http_stats hs;

		http_stats(d->http, &hs);
		metrics_family(m, "portfwd_http_requests_total", "counter",
			       "Requests the HTTP endpoint (daemon.http) answered for clients it admits.");
		metrics_sample(m, "portfwd_http_requests_total", (double)hs.requests, 0);
		metrics_family(m, "portfwd_http_refused_total", "counter",
			       "Connections and requests the HTTP endpoint refused: not allowed by its lists or Host names (denied), more than 8 at once from one address (busy), no whole request within 15 s (slow).");
		metrics_sample(m, "portfwd_http_refused_total", (double)hs.denied, 1, "reason", "denied");
		metrics_sample(m, "portfwd_http_refused_total", (double)hs.busy, 1, "reason", "busy");
		metrics_sample(m, "portfwd_http_refused_total", (double)hs.slow, 1, "reason", "slow");
		metrics_family(m, "portfwd_http_connections", "gauge",
			       "Connections open to the HTTP endpoint.");
		metrics_sample(m, "portfwd_http_connections", (double)hs.connections, 0);
	}

	metrics_sources(d, m);

	metrics_family(m, "portfwd_rule_up", "gauge",
		       "1 if the rule is listening for the protocol, 0 if its bind failed or it is disabled.");
	for (size_t i = 0; i < d->nrules; i++) {
		const struct forward *fw = d->rules[i];
		const struct forward_proto *p[2] = { &fw->tcp, &fw->udp };
		static const unsigned bit[2] = { RULE_PROTO_TCP, RULE_PROTO_UDP };

		for (int k = 0; k < 2; k++)
			if (fw->cfg.proto & bit[k])
				metrics_sample(m, "portfwd_rule_up", p[k]->state == FORWARD_LISTENING, 2,
					       "rule", fw->cfg.name, "proto", rule_proto_name(bit[k]));
	}
	for (size_t f = 0; st && f < nfam; f++) {
		const struct metrics_rule_family *mf = &metrics_rule_families[f];
		const char *name = mf->name;

		/* A row without a name continues the family above it. */
		for (size_t k = f; !name; k--)
			name = metrics_rule_families[k - 1].name;
		if (mf->name)
			metrics_family(m, mf->name, mf->type, mf->help);
		for (size_t i = 0; i < d->nrules; i++) {
			double v = (double)*(const uint64_t *)((const char *)&st[i] + mf->offset);

			if (!(d->rules[i]->cfg.proto & mf->proto))
				continue;
			if (mf->label)
				metrics_sample(m, name, v, 2, "rule", d->rules[i]->cfg.name, mf->label,
					       mf->label_value);
			else
				metrics_sample(m, name, v, 1, "rule", d->rules[i]->cfg.name);
		}
	}
	metrics_targets(d, m);
	metrics_router(d, m);
	metrics_access(d, m);
	free(st);
}

void metrics_text(const struct daemon *d, struct evbuffer *out)
{
	struct metrics_out m = { .text = out };

	metrics_write(d, &m);
}

json_t *metrics_json(const struct daemon *d)
{
	struct metrics_out m = { .json = json_array() };

	if (m.json)
		metrics_write(d, &m);
	return m.json;
}
