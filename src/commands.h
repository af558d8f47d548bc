/*
 * The control commands' handlers, one per ctl_proto command: each reads
 * its arguments, acts on the daemon, and writes the reply body as text for
 * a person or, with --json, as one JSON document. control.c frames it.
 */
#ifndef PORTFWD_COMMANDS_H
#define PORTFWD_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>

#include "ctl_proto.h"

struct daemon;
struct evbuffer;

/* The room ERR should have: the longest end-line message a command gives
 * (health's reason, with a range rule's error and the rule's name) fits. */
#define COMMANDS_ERROR_MAX 1024

/*
 * Runs command ID with ARGV[1..ARGC-1] (ARGV[0] is its name, the --json
 * and --bytes flags already taken out) and PAYLOAD, the LEN bytes (and a
 * NUL) sent after the request, or NULL. Writes the body to OUT. Returns 0,
 * or -1 with the end-line message in ERR, ERRLEN bytes (COMMANDS_ERROR_MAX;
 * the body may still say more, e.g. the configuration errors of a refused
 * reload).
 */
int commands_run(struct daemon *d, enum ctl_cmd_id id, int argc, char **argv, bool json,
		 const char *payload, size_t len, struct evbuffer *out, char *err, size_t errlen);

#endif
