#include "daemon.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "clock.h"
#include "control.h"
#include "forward.h"
#include "log.h"
#include "version.h"
#include "worker.h"

static void daemon_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	if (sig == SIGHUP) {
		log_warning("SIGHUP: live reload is not implemented yet; restart portfwd to apply a changed configuration");
		return;
	}
	log_info("%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	event_base_loopbreak(d->base);
}

/*
 * Every relayed connection holds two sockets and every UDP session one, so
 * the rules' limits need file descriptors: raise the soft limit to the hard
 * one, and warn when even that is short. Failing here (a syscall filter may
 * refuse setrlimit) is never fatal.
 */
static void daemon_check_fd_limit(const struct config *cfg)
{
	unsigned long long need = 64;
	struct rlimit rl;

	for (size_t i = 0; i < cfg->nrules; i++) {
		if (cfg->rules[i].proto & RULE_PROTO_TCP)
			need += 2ULL * cfg->rules[i].set.max_connections;
		if (cfg->rules[i].proto & RULE_PROTO_UDP)
			need += cfg->rules[i].set.max_udp_sessions;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max && rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warning("cannot raise the open file limit: %s", strerror(errno));
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < need)
		log_warning("the rules allow up to %llu open sockets but the file descriptor limit is %llu: beyond it new TCP connections wait and new UDP clients are dropped (raise LimitNOFILE or ulimit -n, or lower max_connections and max_udp_sessions)",
			    need, (unsigned long long)rl.rlim_cur);
}

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
	daemon_check_fd_limit(&d->cfg);

	/* Workers and the main thread call into each other's loops. */
	if (evthread_use_pthreads() < 0 || !(d->base = event_base_new())) {
		log_error("cannot create the event loop");
		return -1;
	}
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		d->signals[i] = evsignal_new(d->base, sigs[i], daemon_signal_cb, d);
		if (!d->signals[i] || evsignal_add(d->signals[i], NULL) < 0) {
			log_error("cannot install the signal handlers");
			return -1;
		}
	}

	d->control = control_open(d->base, d->cfg.control_socket, d, err, sizeof(err));
	if (!d->control) {
		log_error("%s", err);
		return -1;
	}

	n = daemon_worker_count(&d->cfg);
	d->workers = calloc(n, sizeof(*d->workers));
	d->rules = calloc(d->cfg.nrules, sizeof(*d->rules));
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
	}
	for (size_t i = 0; i < d->cfg.nrules; i++) {
		d->rules[i] = forward_new(d->base, d->workers, d->nworkers, &d->cfg.rules[i]);
		if (!d->rules[i]) {
			log_error("rule %s: out of memory", d->cfg.rules[i].name);
			return -1;
		}
		d->nrules++;
		ready += forward_ready(d->rules[i]);
	}
	for (size_t i = 0; i < d->nworkers; i++)
		if (worker_start(d->workers[i]) < 0)
			return -1;
	log_info("portfwd %s started: %zu of %zu rules listening, %zu worker%s, control socket %s",
		 PORTFWD_VERSION, ready, d->nrules, d->nworkers, d->nworkers == 1 ? "" : "s",
		 d->cfg.control_socket);
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
	control_close(d->control);
	d->control = NULL;
	/* Forwards first (no more binds or calls into workers), then the workers
	 * close their connections, then the forwards' memory, which they read. */
	for (size_t i = 0; i < d->nrules; i++)
		forward_stop(d->rules[i]);
	for (size_t i = 0; i < d->nworkers; i++)
		worker_stop(d->workers[i]);
	for (size_t i = 0; i < d->nrules; i++)
		forward_free(d->rules[i]);
	free(d->rules);
	d->rules = NULL;
	d->nrules = 0;
	for (size_t i = 0; i < d->nworkers; i++) {
		worker_free(d->workers[i]);
		free(d->workers[i]);
	}
	free(d->workers);
	d->workers = NULL;
	d->nworkers = 0;
	for (size_t i = 0; i < sizeof(d->signals) / sizeof(d->signals[0]); i++)
		if (d->signals[i])
			event_free(d->signals[i]);
	if (d->base)
		event_base_free(d->base);
	d->base = NULL;
	config_free(&d->cfg);
	log_info("portfwd stopped");
}
