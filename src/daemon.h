/*
 * The daemon: the configuration in force, the main loop (control socket,
 * signals, binding), the workers that carry the traffic, and one forward
 * per rule.
 */
#ifndef PORTFWD_DAEMON_H
#define PORTFWD_DAEMON_H

#include <stddef.h>
#include <time.h>

#include "config.h"

struct control;
struct event;
struct event_base;
struct forward;
struct worker;

struct daemon {
	struct config cfg;
	struct event_base *base; /* the main thread's loop */
	struct worker **workers;
	size_t nworkers;
	struct forward **rules;
	size_t nrules;
	struct control *control;
	struct event *signals[4];
	double started_mono;
	time_t started_wall;
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

#endif
