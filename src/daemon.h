/*
 * The daemon: the configuration in force, the main loop (control socket,
 * signals, binding), the workers that carry the traffic, one forward per
 * rule, and the rules that a reload removed while they drain.
 */
#ifndef PORTFWD_DAEMON_H
#define PORTFWD_DAEMON_H

#include <stdatomic.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "admit.h"
#include "config.h"
#include "exposure.h"

struct bans;
struct resolve;
struct router;
struct control;
struct http;
struct event;
struct event_base;
struct forward;
struct sources;
struct worker;

/* Seconds between looks at the draining rules. */
#define DAEMON_DRAIN_CHECK 0.2

struct daemon {
	struct config cfg;
	struct event_base *base; /* the main thread's loop */
	struct worker **workers;
	size_t nworkers;
	struct forward **rules; /* in the order of the file */
	size_t nrules;
	struct forward **draining; /* removed by a reload, connections still open */
	size_t ndraining;
	struct event *drain_timer;
	struct event *notify_timer; /* systemd: STATUS= and WATCHDOG=1 */
	_Atomic unsigned pongs;     /* workers that answered the last watchdog round */
	bool pinged;                /* a round is out */
	struct control *control;
	struct http *http; /* daemon.http, NULL when off */
	struct bans *bans; /* portfwdctl ban: kept across reloads */
	struct resolve *resolve; /* the named targets' resolver (daemon.resolvers fixed at start) */
	struct sources *sources; /* the per-source table the workers share */
	struct router *router;   /* the rules' mappings on the home router (router.h) */
	struct event *signals[4];
	bool log_level_fixed; /* -l given: a reload keeps it */
	bool socket_fixed;    /* -s given: the file's control_socket is not looked at */
	double started_mono;
	time_t started_wall;

	/* Reloads: the generation in force (1 at start, +1 per applied reload). */
	uint64_t generation;
	uint64_t reloads_ok, reloads_failed;
	time_t last_reload;        /* wall time of the last applied reload, 0 if none */
	double last_reload_seconds; /* how long it took */
	time_t last_failed;        /* wall time of the last refused reload, 0 if none */
	struct config_errors last_errors; /* why it was refused */
	bool last_refused;         /* the last reload tried was refused */

	/* The exposure warnings of the configuration in force (exposure.h),
	 * their rule indexes those of rules[]. */
	struct exposure_list exposure;
	/* Started as root, it became daemon.user (privs_drop). */
	bool gave_root_up;
	/* ... started as root without CAP_NET_BIND_SERVICE to keep (a container) */
	bool root_lacked_cap;
};

/* The outcome of a reload or a check, for the control reply. */
struct daemon_reload_result {
	int status;                 /* 0 in force, 1 in force but some rule failed, -1 refused */
	struct config_errors msgs;  /* config errors (refused) or failed rules */
	unsigned added, removed, changed, unchanged;
	unsigned not_listening;     /* rules in force with a socket that failed to bind */
	struct exposure_list warnings; /* of the valid file; free with exposure_list_free */
	/* check only: the valid file's rules, each {name, proto, listen,
	 * target, listen_port, target_port, line} (json_decref it; NULL after
	 * a reload, a refused file, or out of memory) */
	json_t *rules;
};

/*
 * Takes over CFG (left empty) and starts: the control socket first, so a
 * second daemon is refused before it binds anything, then the listeners,
 * then the worker threads. Returns 0, or -1 after logging why (the caller
 * exits non-zero).
 */
int daemon_start(struct daemon *d, struct config *cfg);

/* Runs the main loop until SIGTERM or SIGINT. Returns the exit code. */
int daemon_run(struct daemon *d);

/* Stops the workers, closes everything, removes the control socket. */
void daemon_stop(struct daemon *d);

/*
 * Reads the configuration file again and applies it. Nothing changes if the
 * file is invalid (status -1, the errors in RES). Otherwise rules are matched
 * to the running ones by (proto, listen address): a kept rule keeps its
 * sockets and connections and takes a changed target or limits for new
 * connections; a new rule is bound; a removed rule stops listening and
 * drains. Status 1 when a rule could not be bound (named in RES). WHY names
 * the trigger for the log. Free RES->msgs with config_errors_free and
 * RES->warnings (the exposure warnings, which change no status) with
 * exposure_list_free.
 */
void daemon_reload(struct daemon *d, const char *why, struct daemon_reload_result *res);

/* Validates a configuration as a reload would, without applying it: with
 * TEXT NULL the daemon's own file, else TEXT (LEN bytes and a NUL, from a
 * client: no @include) with NAME labelling its messages. RES gets the
 * errors, or what a reload would add, remove and change, and its rules. */
void daemon_check(struct daemon *d, const char *name, const char *text, size_t len,
		  struct daemon_reload_result *res);

/*
 * The file descriptors CFG's rules may need at once with NWORKERS workers:
 * per TCP connection 2 sockets, and 2 pipes more (4 descriptors) with
 * splice while bytes wait in both directions; per UDP session 1 socket;
 * per rule, protocol and worker a listening socket; per worker its loop
 * and its pool of spare pipes; the control socket and its clients; and a
 * margin for the rest.
 */
unsigned long long daemon_fd_budget(const struct config *cfg, size_t nworkers);

/* Rule I counting the rules in force, then the draining ones; NULL past
 * the last, so `for (i = 0; (fw = daemon_rule_at(d, i)); i++)` walks them all. */
struct forward *daemon_rule_at(const struct daemon *d, size_t i);

/* The rule in force named NAME, or NULL. */
struct forward *daemon_find_rule(struct daemon *d, const char *name);

/* Tells the router mapper which mappings the enabled rules want now:
 * after start, a reload, enable and disable. */
void daemon_router_sync(struct daemon *d);

#endif
