/*
 * The daemon: the configuration in force, the worker that carries the
 * traffic, one listener per rule, the control socket and the signals.
 */
#ifndef PORTFWD_DAEMON_H
#define PORTFWD_DAEMON_H

#include <stddef.h>
#include <time.h>

#include "config.h"

struct control;
struct event;
struct listener;
struct worker;

struct daemon {
	struct config cfg;
	struct worker *worker;
	struct listener **rules;
	size_t nrules;
	struct control *control;
	struct event *signals[4];
	double started_mono;
	time_t started_wall;
};

/*
 * Takes over CFG (left empty) and starts: the control socket first, so a
 * second daemon is refused before it binds anything, then the listeners.
 * Returns 0, or -1 after logging why (the caller exits non-zero).
 */
int daemon_start(struct daemon *d, struct config *cfg);

/* Runs the event loop until SIGTERM or SIGINT. Returns the exit code. */
int daemon_run(struct daemon *d);

/* Closes everything, removes the control socket and frees D's members. */
void daemon_stop(struct daemon *d);

#endif
