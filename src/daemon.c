#include "daemon.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "admit.h"
#include "bans.h"
#include "clock.h"
#include "control.h"
#include "forward.h"
#include "http.h"
#include "iface.h"
#include "log.h"
#include "privs.h"
#include "resolve.h"
#include "router.h"
#include "sdnotify.h"
#include "sources.h"
#include "sysports.h"
#include "version.h"
#include "worker.h"

static void daemon_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	if (sig == SIGHUP) {
		struct daemon_reload_result res;

		daemon_reload(d, "SIGHUP", &res);
		config_errors_free(&res.msgs);
		exposure_list_free(&res.warnings);
		return;
	}
	log_info("%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	event_base_loopbreak(d->base);
}

unsigned long long daemon_fd_budget(const struct config *cfg, size_t nworkers)
{
	/* stdio, the log, the main loop, the notify socket, the bind probes */
	unsigned long long need = 64 + CONTROL_MAX_CLIENTS + 1;
	bool splice = false;

	/* Each worker's event loop: epoll and its wake-up pipe. */
	need += nworkers * 4;
	for (size_t i = 0; i < cfg->nrules; i++) {
		const struct rule_config *r = &cfg->rules[i];

		/* A listening socket per port of the range and worker. */
		if (r->proto & RULE_PROTO_TCP) {
			need += nworkers * rule_nports(r) +
				(r->set.splice ? 6ULL : 2ULL) * r->set.max_connections;
			splice |= r->set.splice;
		}
		if (r->proto & RULE_PROTO_UDP)
			need += nworkers * rule_nports(r) + r->set.max_udp_sessions;
	}
	/* Spliced connections give their pipes back to a pool per worker. */
	if (splice)
		need += nworkers * 2ULL * WORKER_PIPE_POOL;
	return need;
}

/*
 * The rules' limits need file descriptors (daemon_fd_budget): raise the
 * soft limit to the hard one, and warn when even that is short. Failing
 * here (a syscall filter may refuse setrlimit) is never fatal.
 */
static void daemon_check_fd_limit(const struct config *cfg, size_t nworkers)
{
	unsigned long long need = daemon_fd_budget(cfg, nworkers);
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max && rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warning("cannot raise the open file limit: %s", strerror(errno));
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < need)
		log_warning("the rules may need %llu file descriptors at once (a TCP connection takes 2, or 6 with splice while bytes wait both ways; a UDP session 1; each worker keeps up to %d in spare pipes) but the limit is %llu: beyond it new TCP connections wait and new UDP clients are dropped (raise LimitNOFILE or ulimit -n, or lower max_connections and max_udp_sessions)",
			    need, 2 * WORKER_PIPE_POOL, (unsigned long long)rl.rlim_cur);
}

_Static_assert(CONFIG_MAX_WORKERS <= (1 << WORKER_ID_BITS), "connection ids name the worker");

/* daemon.workers, with 0 meaning one per online CPU. */
static size_t daemon_worker_count(const struct config *cfg)
{
	long n = cfg->workers ? (long)cfg->workers : sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	if (n > CONFIG_MAX_WORKERS)
		n = CONFIG_MAX_WORKERS;
	return (size_t)n;
}

/*
 * The draining rules: end what is left when drain_timeout has passed, and
 * free a rule once nothing of it is left.
 */
static void daemon_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	double now = clock_now();
	size_t kept = 0;

	(void)fd;
	(void)what;
	for (size_t i = 0; i < d->ndraining; i++) {
		struct forward *fw = d->draining[i];

		if (d->cfg.drain_timeout > 0 && !fw->drain_forced &&
		    now - fw->drain_started >= d->cfg.drain_timeout) {
			unsigned n = forward_kill_all(fw, "drain_timeout reached");

			fw->drain_forced = true;
			log_info("rule %s: drain_timeout (%gs) reached: closed %u connection%s",
				 fw->cfg.name, d->cfg.drain_timeout, n, n == 1 ? "" : "s");
		}
		if (forward_drained(fw)) {
			log_info("rule %s: drained after %.1fs; removed", fw->cfg.name,
				 now - fw->drain_started);
			forward_destroy(fw);
			continue;
		}
		d->draining[kept++] = fw;
	}
	d->ndraining = kept;
	if (kept == 0)
		event_del(d->drain_timer);
}

static void daemon_drain_add(struct daemon *d, struct forward *fw)
{
	struct timeval tv = clock_timeval(DAEMON_DRAIN_CHECK);

	forward_drain(fw, clock_now());
	d->draining[d->ndraining++] = fw; /* room was made before */
	if (!event_pending(d->drain_timer, EV_TIMEOUT, NULL))
		event_add(d->drain_timer, &tv);
}

/* The one-line summary systemd shows (STATUS=). */
static void daemon_summary(struct daemon *d, char *buf, size_t len)
{
	unsigned long long tcp = 0, udp = 0;
	size_t ok = 0;

	for (size_t i = 0; i < d->nrules; i++) {
		ok += forward_ready(d->rules[i]);
		tcp += atomic_load(&d->rules[i]->work.tcp_active);
		udp += atomic_load(&d->rules[i]->work.udp_active);
	}
	snprintf(buf, len, "%zu of %zu rules listening, %llu TCP connections, %llu UDP sessions, generation %llu%s",
		 ok, d->nrules, tcp, udp, (unsigned long long)d->generation,
		 d->ndraining ? ", some rules draining" : "");
}

static void daemon_pong_cb(void *arg)
{
	struct daemon *d = arg;

	atomic_fetch_add(&d->pongs, 1);
}

/*
 * Every tick: STATUS=, and WATCHDOG=1 only if every worker answered the
 * previous round, so a stuck worker loop gets the service restarted just
 * as a stuck main loop does.
 */
static void daemon_notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	char summary[256];

	(void)fd;
	(void)what;
	daemon_summary(d, summary, sizeof(summary));
	if (sdnotify_watchdog_usec() == 0) {
		sdnotify_send("STATUS=%s", summary);
		return;
	}
	if (!d->pinged || atomic_load(&d->pongs) == d->nworkers)
		sdnotify_send("WATCHDOG=1\nSTATUS=%s", summary);
	else
		log_error("watchdog: %zu of %zu workers did not answer; not telling systemd we are alive",
			  d->nworkers - atomic_load(&d->pongs), d->nworkers);
	atomic_store(&d->pongs, 0);
	for (size_t i = 0; i < d->nworkers; i++)
		worker_call(d->workers[i], daemon_pong_cb, d);
	d->pinged = true;
}

/* READY=1 with the summary; also ends a reload for systemd. */
static void daemon_notify_ready(struct daemon *d, const char *prefix)
{
	char summary[256];

	daemon_summary(d, summary, sizeof(summary));
	sdnotify_send("READY=1\nMAINPID=%ld\nSTATUS=%s%s", (long)getpid(), prefix, summary);
}

struct forward *daemon_rule_at(const struct daemon *d, size_t i)
{
	if (i < d->nrules)
		return d->rules[i];
	return i - d->nrules < d->ndraining ? d->draining[i - d->nrules] : NULL;
}

struct forward *daemon_find_rule(struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->nrules; i++)
		if (strcmp(d->rules[i]->cfg.name, name) == 0)
			return d->rules[i];
	return NULL;
}

/*
 * The running rule that NEW takes over on reload, or -1: the one with the
 * same proto and listen address (ports included), whatever its name; with
 * RANGED, one whose range NEW changed: the same name, proto and address
 * and a port in common (rule_same_range_rule).
 */
static ssize_t daemon_match(struct daemon *d, const struct rule_config *new, const bool *taken,
			    bool ranged)
{
	for (size_t j = 0; j < d->nrules; j++)
		if (!taken[j] && (ranged ? rule_same_range_rule(&d->rules[j]->cfg, new)
					 : rule_same_listener(&d->rules[j]->cfg, new)))
			return (ssize_t)j;
	return -1;
}

/* What cannot change without a restart keeps its running value in NC. */
static void daemon_keep_fixed(struct daemon *d, struct config *nc)
{
	const char *ru = d->cfg.user ? d->cfg.user : "", *nu = nc->user ? nc->user : "";
	const char *rg = d->cfg.group ? d->cfg.group : "", *ng = nc->group ? nc->group : "";

	if (strcmp(ru, nu) != 0 || strcmp(rg, ng) != 0) {
		char *t;

		log_warning("reload: daemon.user or daemon.group changed; that takes a restart, keeping the running ones");
		t = nc->user, nc->user = d->cfg.user, d->cfg.user = t;
		t = nc->group, nc->group = d->cfg.group, d->cfg.group = t;
		nc->uid = d->cfg.uid;
		nc->gid = d->cfg.gid;
	}
	if (nc->max_tracked_sources != d->cfg.max_tracked_sources) {
		log_warning("reload: daemon.max_tracked_sources changed from %u to %u; that takes a restart, keeping %u",
			    d->cfg.max_tracked_sources, nc->max_tracked_sources, d->cfg.max_tracked_sources);
		nc->max_tracked_sources = d->cfg.max_tracked_sources;
	}
	{
		bool same = nc->nresolvers == d->cfg.nresolvers;

		for (size_t i = 0; same && i < nc->nresolvers; i++)
			same = strcmp(nc->resolvers[i], d->cfg.resolvers[i]) == 0;
		if (!same) {
			log_warning("reload: daemon.resolvers changed; that takes a restart, keeping the running ones");
			for (size_t i = 0; i < CONFIG_MAX_RESOLVERS; i++) {
				char *t = nc->resolvers[i];

				nc->resolvers[i] = d->cfg.resolvers[i];
				d->cfg.resolvers[i] = t;
			}
			{
				size_t n = nc->nresolvers;

				nc->nresolvers = d->cfg.nresolvers;
				d->cfg.nresolvers = n;
			}
		}
	}
	if (nc->workers != d->cfg.workers) {
		log_warning("reload: daemon.workers changed from %u to %u; that takes a restart, keeping %u",
			    d->cfg.workers, nc->workers, d->cfg.workers);
		nc->workers = d->cfg.workers;
	}
	if (strcmp(nc->control_socket, d->cfg.control_socket) != 0) {
		char *tmp = nc->control_socket;

		/* The socket in use may come from -s; it stays while the daemon runs. */
		if (!d->socket_fixed)
			log_warning("reload: daemon.control_socket \"%s\" differs from the socket in use; that takes a restart, keeping %s",
				    tmp, d->cfg.control_socket);
		nc->control_socket = d->cfg.control_socket;
		d->cfg.control_socket = tmp;
	}
}

static void daemon_result_init(struct daemon_reload_result *res)
{
	memset(res, 0, sizeof(*res));
}

/* Loads PATH, or with TEXT set that text labelled PATH, into NC; or fills
 * RES with the errors and returns -1. */
static int daemon_load(const char *path, const char *text, size_t len, struct config *nc,
		       struct daemon_reload_result *res)
{
	if ((text ? config_load_text(path, text, len, nc, &res->msgs)
		  : config_load(path, nc, &res->msgs)) < 0) {
		res->status = -1;
		return -1;
	}
	return 0;
}

/*
 * Matches NC's rules to the running ones (by proto and listen address) and
 * counts what applying NC would do. MATCH[i] is the running rule that new
 * rule i keeps, or NULL; TAKEN[j] says running rule j is kept (both sized by
 * the caller). Reload and check share it, so check says what reload does.
 */
static void daemon_plan(struct daemon *d, const struct config *nc, struct forward **match,
			bool *taken, struct daemon_reload_result *res)
{
	/* The same ports first, then ranges that changed. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < nc->nrules; i++) {
			ssize_t j;

			if (match[i])
				continue;
			j = daemon_match(d, &nc->rules[i], taken, pass == 1);
			if (j < 0)
				continue;
			match[i] = d->rules[j];
			taken[j] = true;
			if (rule_config_equal(&d->rules[j]->cfg, &nc->rules[i]))
				res->unchanged++;
			else
				res->changed++;
		}
	for (size_t i = 0; i < nc->nrules; i++)
		res->added += !match[i];
	for (size_t j = 0; j < d->nrules; j++)
		res->removed += !taken[j];
}

/* True if FW, running, holds the sockets that RC needs: a reload that
 * gives it RC binds nothing (another interface, or freebind turned off,
 * binds again: forward_update). */
static bool daemon_holds(const struct forward *fw, const struct rule_config *rc)
{
	if (!fw || strcmp(fw->cfg.interface, rc->interface) != 0 ||
	    (fw->cfg.freebind && !rc->freebind) ||
	    rule_port_first(&fw->cfg) != rule_port_first(rc) ||
	    rule_port_last(&fw->cfg) != rule_port_last(rc))
		return false;
	if ((rc->proto & RULE_PROTO_TCP) && fw->tcp.state != FORWARD_LISTENING)
		return false;
	if ((rc->proto & RULE_PROTO_UDP) && fw->udp.state != FORWARD_LISTENING)
		return false;
	return true;
}

/*
 * The exposure warnings of CFG into OUT, as the running daemon D would
 * bind it: with its own privileges now, FWS[i] (NULL, or one per rule of
 * CFG, each NULL or the running rule that keeps its sockets) binding
 * nothing. Out of memory, logged and fewer.
 */
static void daemon_exposure(const struct daemon *d, const struct config *cfg,
			    struct forward *const *fws, struct exposure_list *out)
{
	struct exposure_privs privs;
	bool *bound = calloc(cfg->nrules + 1, sizeof(*bound));

	exposure_privs_now(d->gave_root_up, d->root_lacked_cap, &privs);
	for (size_t i = 0; bound && fws && i < cfg->nrules; i++)
		bound[i] = daemon_holds(fws[i], &cfg->rules[i]);
	privs.bound = bound;
	if (!bound || exposure_check(cfg, &privs, out) < 0)
		log_error("out of memory: not every exposure warning is shown");
	free(bound);
}

/* CFG's rules as check shows them: each with its ports' names and classes. */
static json_t *daemon_rules_json(const struct config *cfg)
{
	json_t *rules = json_array();
	char listen[RULE_ADDR_STRLEN], target[RULE_ADDR_STRLEN];

	for (size_t i = 0; rules && i < cfg->nrules; i++) {
		const struct rule_config *r = &cfg->rules[i];

		json_t *o =
			json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:i}", "name", r->name, "proto",
				  rule_proto_name(r->proto), "listen",
				  rule_format_listen(r, listen, sizeof(listen)),
				  "target",
				  rule_format_target(r, target, sizeof(target)),
				  "listen_port", rule_port_json((const struct sockaddr *)&r->listen, r->listen_service),
				  "target_port", rule_port_json((const struct sockaddr *)&r->target, r->target_service),
				  "line", r->line);

		rule_range_json(r, o);
		json_array_append_new(rules, o);
	}
	return rules;
}

void daemon_check(struct daemon *d, const char *name, const char *text, size_t len,
		  struct daemon_reload_result *res)
{
	const char *path = text ? name : d->cfg.path;
	struct forward **match;
	struct config nc;
	bool *taken;

	daemon_result_init(res);
	if (daemon_load(path, text, len, &nc, res) < 0)
		return;
	match = calloc(nc.nrules + 1, sizeof(*match));
	taken = calloc(d->nrules + 1, sizeof(*taken));
	if (match && taken) {
		daemon_plan(d, &nc, match, taken, res);
		daemon_exposure(d, &nc, match, &res->warnings);
		res->rules = daemon_rules_json(&nc);
	} else {
		config_errors_add(&res->msgs, "%s: out of memory", path);
		res->status = -1;
	}
	free(match);
	free(taken);
	config_free(&nc);
}

void daemon_reload(struct daemon *d, const char *why, struct daemon_reload_result *res)
{
	double t0 = clock_now();
	struct forward **rules = NULL, **draining = NULL;
	bool *taken = NULL;
	struct config nc;

	daemon_result_init(res);
	sdnotify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
		      (unsigned long long)(t0 * 1e6), d->cfg.path);
	log_info("reload (%s): reading %s", why, d->cfg.path);
	if (daemon_load(d->cfg.path, NULL, 0, &nc, res) < 0) {
		for (size_t i = 0; i < res->msgs.count; i++)
			log_error("reload: %s", res->msgs.msgs[i]);
		log_error("reload failed: the configuration is not valid; generation %llu stays in force, nothing changed",
			  (unsigned long long)d->generation);
		goto refused;
	}
	rules = calloc(nc.nrules + 1, sizeof(*rules));
	taken = calloc(d->nrules + 1, sizeof(*taken));
	draining = realloc(d->draining, (d->ndraining + d->nrules + 1) * sizeof(*draining));
	if (!rules || !taken || !draining) {
		if (draining)
			d->draining = draining;
		config_errors_add(&res->msgs, "%s: out of memory", d->cfg.path);
		log_error("reload failed: out of memory; nothing changed");
		config_free(&nc);
		res->status = -1;
		goto refused;
	}
	d->draining = draining;
	daemon_keep_fixed(d, &nc);
	/* /etc/hosts may have changed with the file: names are asked again. */
	resolve_reread_hosts(d->resolve);
	daemon_check_fd_limit(&nc, d->nworkers);

	daemon_plan(d, &nc, rules, taken, res);
	/* The warnings before anything is bound: one about a port the daemon
	 * may not bind comes before the failed bind, as check said it. */
	daemon_exposure(d, &nc, rules, &res->warnings);
	exposure_log(&res->warnings);
	/* A new TCP rule that wants the endpoint's address has it: the endpoint
	 * lets it go now, and http_apply opens it where the file says after. */
	for (size_t i = 0; d->http && i < nc.nrules; i++)
		if (config_http_collides(http_config(d->http), &nc.rules[i])) {
			log_info("reload: daemon.http: closing the endpoint's address for rule %s, which listens there now",
				 nc.rules[i].name);
			http_close(d->http);
			d->http = NULL;
		}
	/* The removed ones first: a new rule may want an address they free. */
	for (size_t j = 0; j < d->nrules; j++)
		if (!taken[j])
			daemon_drain_add(d, d->rules[j]);
	/* What the removed rules' UDP sockets hold goes to the rules that want it. */
	for (size_t i = 0; i < nc.nrules; i++)
		for (size_t j = 0; j < d->ndraining; j++)
			forward_udp_takeover(d->draining[j], &nc.rules[i]);
	/* Every kept range that shrinks lets its ports go before any rule
	 * binds: one kept rule may take a port another kept rule leaves. */
	for (size_t i = 0; i < nc.nrules; i++)
		if (rules[i])
			forward_retire_outside(rules[i], &nc.rules[i]);
	/* The kept rules first: a range that shrinks frees ports a new rule may want. */
	for (size_t i = 0; i < nc.nrules; i++) {
		const struct rule_config *rc = &nc.rules[i];
		bool same;

		if (!rules[i])
			continue;
		/* A range that grows takes the UDP addresses of ports other kept
		 * rules left (their sessions end, as for a new rule). */
		if (rule_port_first(&rules[i]->cfg) != rule_port_first(rc) ||
		    rule_port_last(&rules[i]->cfg) != rule_port_last(rc))
			for (size_t j = 0; j < nc.nrules; j++)
				if (rules[j] && j != i)
					forward_udp_takeover(rules[j], rc);
		same = rule_config_equal(&rules[i]->cfg, rc);
		if (!same && strcmp(rules[i]->cfg.name, rc->name) != 0)
			log_info("rule %s: renamed to %s", rules[i]->cfg.name, rc->name);
		if (forward_update(rules[i], rc) < 0)
			config_errors_add(&res->msgs, "rule %s: out of memory; its old settings stay",
					  rc->name);
		else if (!same)
			log_info("rule %s: changed; new connections use the new settings", rc->name);
	}
	for (size_t i = 0; i < nc.nrules; i++) {
		const struct rule_config *rc = &nc.rules[i];

		if (rules[i])
			continue;
		/* The ports that left a kept rule's range still serve their UDP sessions. */
		for (size_t j = 0; j < nc.nrules; j++)
			if (rules[j] && j != i)
				forward_udp_takeover(rules[j], rc);
		rules[i] = forward_new(d->base, d->workers, d->nworkers, rc, d->resolve);
		/* Cannot fail short of memory; the rest still applies. */
		if (!rules[i])
			config_errors_add(&res->msgs, "rule %s: out of memory; not added", rc->name);
	}
	/* Drop the rules that could not be created (out of memory). */
	{
		size_t n = 0;

		for (size_t i = 0; i < nc.nrules; i++)
			if (rules[i]) {
				rules[n] = rules[i];
				nc.rules[n] = nc.rules[i];
				n++;
			} else {
				access_policy_unref(nc.rules[i].access);
				rule_targets_unref(nc.rules[i].targets);
			}
		nc.nrules = n;
	}
	for (size_t i = 0; i < nc.nrules; i++) {
		const struct forward *fw = rules[i];
		const struct forward_proto *p[2] = { &fw->tcp, &fw->udp };

		for (int k = 0; k < 2; k++)
			if (p[k]->state == FORWARD_FAILED)
				config_errors_add(&res->msgs, "rule %s: cannot listen on %s: %s",
						  fw->cfg.name, k == 0 ? "tcp" : "udp", p[k]->error);
		/* A tcp+udp rule is one rule, however many of its sockets failed. */
		res->not_listening += p[0]->state == FORWARD_FAILED || p[1]->state == FORWARD_FAILED;
	}
	free(d->rules);
	d->rules = rules;
	d->nrules = nc.nrules;
	free(taken);
	config_free(&d->cfg);
	d->cfg = nc;
	{
		char err[512];

		/* Its socket kept, or bound anew; a failure leaves what served before. */
		if (http_apply(&d->http, d, &d->cfg.http, err, sizeof(err)) < 0) {
			config_errors_add(&res->msgs, "%s (%s)", err,
					  d->http ? "the endpoint stays where it was" : "the endpoint is off");
			log_error("reload: %s", err);
			/* The configuration in force says where it serves, for
			 * status and the exposure check. */
			d->cfg.http.enabled = d->http != NULL;
			if (d->http) {
				d->cfg.http.listen = http_config(d->http)->listen;
				d->cfg.http.listen_len = http_config(d->http)->listen_len;
			}
		}
	}
	/* What status shows: as things are now, the sockets bound. */
	daemon_exposure(d, &d->cfg, d->rules, &d->exposure);
	if (!d->log_level_fixed)
		log_set_level(d->cfg.log_level);
	for (size_t i = 0; i < d->nworkers; i++)
		atomic_store(&d->workers[i]->log_connections, d->cfg.log_connections);
	d->generation++;
	d->reloads_ok++;
	d->last_refused = false;
	d->last_reload = time(NULL);
	d->last_reload_seconds = clock_now() - t0;
	res->status = res->msgs.count ? 1 : 0;
	log_info("reload (%s): generation %llu in force after %.3fs: %u added, %u removed, %u changed, %u unchanged%s",
		 why, (unsigned long long)d->generation, d->last_reload_seconds, res->added,
		 res->removed, res->changed, res->unchanged,
		 res->status ? "; some rules are not listening" : "");
	daemon_router_sync(d);
	daemon_notify_ready(d, res->status ? "reloaded, some rules failed: " : "");
	return;
refused:
	free(rules);
	free(taken);
	d->reloads_failed++;
	d->last_refused = true;
	d->last_failed = time(NULL);
	config_errors_free(&d->last_errors);
	config_errors_copy(&d->last_errors, &res->msgs);
	daemon_notify_ready(d, "reload failed, the previous configuration stays: ");
}

void daemon_router_sync(struct daemon *d)
{
	struct router_want *w = calloc(d->nrules + 1, sizeof(*w));
	size_t n = 0;

	if (!w || !d->router) {
		if (d->router)
			log_error("router: out of memory: the mappings stay as they were");
		free(w);
		return;
	}
	for (size_t i = 0; i < d->nrules; i++)
		if (!d->rules[i]->disabled && router_want_of(&d->rules[i]->cfg, &w[n]))
			n++;
	router_want(d->router, w, n);
	free(w);
}

/* A ban, an unban or an expiry: every worker gets the new set before it returns. */
static void daemon_publish_bans(void *arg, struct ban_set *set)
{
	struct daemon *d = arg;

	admit_publish_bans(d->workers, d->nworkers, set);
}

/* True if a rule listens on a port that needs privilege (below the
 * kernel's ip_unprivileged_port_start, 1024 by default), or there is no
 * rule yet. */
static bool daemon_needs_low_ports(const struct config *cfg)
{
	struct sysports *sp;
	bool low = false;

	/* No rules yet (a fresh install): the ones a reload brings may. */
	if (cfg->nrules == 0)
		return true;
	if (cfg->http.enabled && rule_addr_port((const struct sockaddr *)&cfg->http.listen) < 1024)
		return true;
	sp = malloc(sizeof(*sp));
	if (!sp)
		return true; /* keeping it is the safe side */
	sysports_read(sp);
	/* Below 1024 as well: the sysctl may be raised again while the daemon
	 * runs, and a port it holds must stay one it can bind again (a retry,
	 * enable, an interface made again). */
	for (size_t i = 0; i < cfg->nrules && !low; i++) {
		unsigned port = rule_addr_port((const struct sockaddr *)&cfg->rules[i].listen);

		low = port < 1024 || sysports_port_privileged(sp, port);
	}
	free(sp);
	return low;
}

/* True if a rule is bound to an interface on a kernel that wants
 * CAP_NET_RAW for it (before Linux 5.7, iface.h): a bind retried after the
 * privilege drop (the interface comes up later) needs it still. */
static bool daemon_needs_raw(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nrules; i++)
		if (cfg->rules[i].interface[0])
			return iface_bind_needs_cap();
	return false;
}

/*
 * Started as root: with daemon.user, become it now that the listeners are
 * bound (keeping only what binding below 1024 needs); without, refuse or
 * warn as daemon.allow_root says. Returns 0, or -1 after logging why.
 */
static int daemon_drop_privileges(struct daemon *d)
{
	const struct config *c = &d->cfg;
	char err[256];
	bool low, raw;

	if (geteuid() != 0) {
		if (c->user && geteuid() != c->uid)
			log_warning("daemon.user is %s but portfwd was started as uid %u, not root; staying uid %u",
				    c->user, (unsigned)geteuid(), (unsigned)geteuid());
		return 0;
	}
	if (!c->user) {
		if (!c->allow_root) {
			log_error("running as root with no daemon.user, and daemon.allow_root is false: set daemon.user (and group) to an unprivileged account");
			return -1;
		}
		log_warning("running as root: set daemon.user in %s so that portfwd gives root up once its ports are bound",
			    c->path);
		return 0;
	}
	/* Root without the capability (a container, a unit's bounding set)
	 * cannot keep what it has not got: the drop would fail. */
	low = daemon_needs_low_ports(c);
	if (low && !privs_can_bind_low()) {
		log_warning("started as root without CAP_NET_BIND_SERVICE: it cannot be kept for user %s, and ports below %s need it",
			    c->user, "ip_unprivileged_port_start");
		low = false;
		d->root_lacked_cap = true;
	}
	raw = daemon_needs_raw(c);
	if (privs_drop(c->uid, c->gid, low, raw, err, sizeof(err)) < 0) {
		log_error("cannot give up root: %s", err);
		return -1;
	}
	d->gave_root_up = true;
	log_info("running as user %s, group %s, %s%s%s%s; no_new_privs set", c->user,
		 c->group ? c->group : "(the user's)",
		 low || raw ? "keeping only " : "with no capabilities",
		 !low ? ""
		 : c->nrules ? "CAP_NET_BIND_SERVICE (a rule listens on a port that needs it)"
			     : "CAP_NET_BIND_SERVICE (no rules yet: a reload may bring one below 1024)",
		 low && raw ? " and " : "",
		 raw ? "CAP_NET_RAW (a rule is bound to an interface, which needs it before Linux 5.7)" : "");
	return 0;
}

int daemon_start(struct daemon *d, struct config *cfg)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	char err[512];
	size_t ready = 0, n;

	memset(d, 0, sizeof(*d));
	d->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	d->started_mono = clock_now();
	d->started_wall = time(NULL);
	d->generation = 1;
	sdnotify_init();
	daemon_check_fd_limit(&d->cfg, daemon_worker_count(&d->cfg));
	{
		struct exposure_privs privs;

		/* Before anything is bound or given up: as -t says. */
		exposure_privs_at_start(&d->cfg, &privs);
		if (exposure_check(&d->cfg, &privs, &d->exposure) < 0)
			log_error("out of memory: not every exposure warning is shown");
	}
	exposure_log(&d->exposure);

	/* Workers and the main thread call into each other's loops. */
	if (evthread_use_pthreads() < 0 || !(d->base = event_base_new())) {
		log_error("cannot create the event loop");
		return -1;
	}
	d->drain_timer = event_new(d->base, -1, EV_PERSIST, daemon_drain_cb, d);
	if (!d->drain_timer) {
		log_error("out of memory");
		return -1;
	}
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		d->signals[i] = evsignal_new(d->base, sigs[i], daemon_signal_cb, d);
		if (!d->signals[i] || evsignal_add(d->signals[i], NULL) < 0) {
			log_error("cannot install the signal handlers");
			return -1;
		}
	}

	/* The socket is made the user's from the start (see control_open). */
	d->control = control_open(d->base, d->cfg.control_socket,
				  d->cfg.user ? d->cfg.uid : (uid_t)-1, d->cfg.gid, d, err, sizeof(err));
	if (!d->control) {
		log_error("%s", err);
		return -1;
	}
	/* Before the privilege drop: its port may be below 1024. */
	if (d->cfg.http.enabled && !(d->http = http_open(d, &d->cfg.http, err, sizeof(err)))) {
		log_error("%s", err);
		return -1;
	}

	/* Before the workers, which all share it; its size is for the daemon's life. */
	d->sources = sources_new(d->cfg.max_tracked_sources);
	if (!d->sources) {
		log_error("cannot map the per-source table (%u entries): %s", d->cfg.max_tracked_sources,
			  strerror(errno));
		return -1;
	}
	n = daemon_worker_count(&d->cfg);
	d->workers = calloc(n, sizeof(*d->workers));
	d->rules = calloc(d->cfg.nrules + 1, sizeof(*d->rules));
	if (!d->workers || !d->rules) {
		log_error("out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		d->workers[i] = malloc(sizeof(*d->workers[i]));
		if (!d->workers[i])
			return -1;
		d->nworkers++;
		if (worker_init(d->workers[i], (int)i, d->cfg.log_connections) < 0)
			return -1;
		d->workers[i]->sources = d->sources;
	}
	{
		char why[256];

		d->resolve = resolve_new(d->base, (const char *const *)d->cfg.resolvers, d->cfg.nresolvers,
					 NULL, why, sizeof(why));
		if (!d->resolve) {
			log_error("%s", why);
			return -1;
		}
	}
	d->router = router_new();
	if (!d->router) {
		log_error("out of memory");
		return -1;
	}
	d->bans = bans_new(d->base, daemon_publish_bans, d);
	if (!d->bans) {
		log_error("out of memory");
		return -1;
	}
	for (size_t i = 0; i < d->cfg.nrules; i++) {
		d->rules[i] = forward_new(d->base, d->workers, d->nworkers, &d->cfg.rules[i], d->resolve);
		if (!d->rules[i]) {
			log_error("rule %s: out of memory", d->cfg.rules[i].name);
			return -1;
		}
		d->nrules++;
		ready += forward_ready(d->rules[i]);
	}
	/* Before the worker threads: capabilities belong to each thread. */
	if (daemon_drop_privileges(d) < 0)
		return -1;
	for (size_t i = 0; i < d->nworkers; i++)
		if (worker_start(d->workers[i]) < 0)
			return -1;
	/* Its thread too starts after the privilege drop. */
	daemon_router_sync(d);
	daemon_notify_ready(d, "");
	if (sdnotify_enabled()) {
		uint64_t wd = sdnotify_watchdog_usec();
		/* Half the watchdog interval, as systemd advises; STATUS every 10 s at most. */
		struct timeval tv = clock_timeval(wd && wd / 2 < 10000000 ? (double)wd / 2e6 : 10);

		d->notify_timer = event_new(d->base, -1, EV_PERSIST, daemon_notify_cb, d);
		if (!d->notify_timer || event_add(d->notify_timer, &tv) < 0)
			log_warning("cannot start the systemd status timer");
		if (wd)
			daemon_notify_cb(-1, 0, d);
	}
	log_info("portfwd %s started: %zu of %zu rules listening, %zu worker%s, control socket %s",
		 PORTFWD_VERSION, ready, d->nrules, d->nworkers, d->nworkers == 1 ? "" : "s",
		 d->cfg.control_socket);
	if (d->nrules == 0)
		log_warning("%s has no rules: nothing is forwarded until a reload brings some", d->cfg.path);
	return 0;
}

int daemon_run(struct daemon *d)
{
	if (event_base_dispatch(d->base) < 0) {
		log_error("the event loop failed");
		return 1;
	}
	return 0;
}

void daemon_stop(struct daemon *d)
{
	sdnotify_send("STOPPING=1\nSTATUS=stopping");
	if (d->notify_timer)
		event_free(d->notify_timer);
	d->notify_timer = NULL;
	control_close(d->control);
	d->control = NULL;
	http_close(d->http);
	d->http = NULL;
	/* The router forwards nothing more here (bounded: ROUTER_STOP_SECONDS). */
	router_free(d->router);
	d->router = NULL;
	/* Forwards first (no more binds or calls into workers), then the workers
	 * close their connections, then the forwards' memory, which they read. */
	for (size_t i = 0; i < d->nrules; i++)
		forward_stop(d->rules[i]);
	for (size_t i = 0; i < d->ndraining; i++)
		forward_stop(d->draining[i]);
	for (size_t i = 0; i < d->nworkers; i++)
		worker_stop(d->workers[i]);
	for (size_t i = 0; i < d->nrules; i++)
		forward_free(d->rules[i]);
	for (size_t i = 0; i < d->ndraining; i++)
		forward_free(d->draining[i]);
	free(d->rules);
	d->rules = NULL;
	d->nrules = 0;
	free(d->draining);
	d->draining = NULL;
	d->ndraining = 0;
	if (d->drain_timer)
		event_free(d->drain_timer);
	d->drain_timer = NULL;
	bans_free(d->bans);
	d->bans = NULL;
	config_errors_free(&d->last_errors);
	exposure_list_free(&d->exposure);
	for (size_t i = 0; i < d->nworkers; i++) {
		worker_free(d->workers[i]);
		free(d->workers[i]);
	}
	free(d->workers);
	d->workers = NULL;
	d->nworkers = 0;
	/* After every rule stopped watching its names. */
	resolve_free(d->resolve);
	d->resolve = NULL;
	sources_free(d->sources);
	d->sources = NULL;
	for (size_t i = 0; i < sizeof(d->signals) / sizeof(d->signals[0]); i++)
		if (d->signals[i])
			event_free(d->signals[i]);
	if (d->base)
		event_base_free(d->base);
	d->base = NULL;
	config_free(&d->cfg);
	sdnotify_close();
	log_info("portfwd stopped");
}
