/*
 * portfwdctl's ports, who and free: this machine's listening and bound
 * sockets (sockets.h) joined with their processes, their port's class and
 * service name (portinfo.h) and the daemon's rules (asked over the control
 * socket). They run in the client with the caller's rights, never in the
 * daemon. Output goes to stdout, messages to stderr.
 */
#ifndef PORTFWD_PORTS_H
#define PORTFWD_PORTS_H

#include <stdbool.h>
#include <stddef.h>

#include "portinfo.h"

/* What PORT, SERVICE, RANGE or PORT/PROTO names. */
struct ports_spec {
	unsigned proto;        /* RULE_PROTO_* bits it covers */
	unsigned lo[2], hi[2]; /* the ports for TCP [0] and UDP [1] (0-0: none) */
	char name[PORTINFO_NAME_MAX]; /* the service name given, or "" */
	char text[PORTINFO_NAME_MAX + 16]; /* as given, for messages */
};

/*
 * Parses "8080", "8080/udp", "http-alt", "ssh/tcp" or, with RANGE_OK,
 * "8000-8100" (and "8000-8100/tcp"). Ports are 1-65535. A name is looked
 * up in the services database and portinfo's table (never DNS) for the
 * protocol given, or each protocol when none is; the spec then covers the
 * protocols the name is known for. Returns 0, or -1 with a sentence in
 * ERR (an unknown name suggests the closest known one).
 */
int ports_parse_spec(const char *text, bool range_ok, struct ports_spec *spec, char *err,
		     size_t errlen);

/* True if SPEC covers PORT for PROTO (one RULE_PROTO_* bit). */
bool ports_spec_match(const struct ports_spec *spec, unsigned proto, unsigned port);

/* How portfwdctl talks to the daemon for these commands. */
struct ports_ctl {
	const char *socket;
	/*
	 * Sends REQUEST (one line, without the hello). Returns 0 with the
	 * reply body in *BODY (malloc'd); otherwise *BODY is NULL and ERR
	 * has a sentence: 1 when the daemon answered with an error (its
	 * message), -1 when it could not be reached (connect failed: no
	 * socket, nobody listening, permission denied), -2 when the exchange
	 * broke after connecting (request too long, send failed, the reply
	 * cut short or not within the time limit). Prints nothing.
	 */
	int (*request)(const char *socket, const char *request, char **body, char *err,
		       size_t errlen);
};

/* Exit codes, as portfwdctl's. */
enum {
	PORTS_EXIT_OK = 0,
	PORTS_EXIT_NO = 1,    /* nothing matched, free, still held, refused */
	PORTS_EXIT_USAGE = 2,
	/* 3 is portfwdctl's "cannot connect to the daemon" */
	PORTS_EXIT_TABLES = 4, /* the socket tables could not be read */
};

/*
 * Runs `ports`, `who` or `free` (NAME) with ARGC words of ARGV (arguments
 * and their options), JSON for --json. Returns an exit code:
 *   ports: 0 listed (also an empty list without a filter), 1 the filter
 *          matched nothing, 2 usage;
 *   who:   0 held, 1 free, 2 usage;
 *   free:  0 the port is free (now or already), 1 still held, refused or
 *          not confirmed, 2 usage;
 * and all three 4 when the socket tables cannot be read.
 */
int ports_command(const char *name, int argc, char **argv, bool json, const struct ports_ctl *ctl);


#endif
