/*
 * The read-only HTTP endpoint (daemon.http): GET /metrics (what
 * `portfwdctl metrics` prints), /status.json (what `status --json` prints),
 * /health (what `portfwdctl health` says, 200 or 503) and / (the status
 * page, http_page.h). Served with libevent's evhttp on the main loop, which
 * also runs the control socket: the workers never wait for it. Nothing it
 * answers changes the daemon.
 *
 * Who may ask: the endpoint's own allow and deny lists, checked as soon as
 * a connection is accepted (a refused client's connection is closed before
 * anything is read) and again for each request (a reload may have changed
 * them). A slow or hostile client cannot hold it: HTTP_MAX_CONNECTIONS in
 * all and HTTP_MAX_PER_SOURCE from one address, each request whole within
 * HTTP_REQUEST_SECONDS of the accept or of the answer before,
 * HTTP_TIMEOUT_SECONDS of silence at most, requests of at most
 * HTTP_MAX_HEADERS bytes of headers and no body, and nothing read beyond
 * that while an answer is written. The Host header must name the endpoint
 * by address, "localhost" or a name of daemon.http.hosts: a web page that
 * points its own name at the endpoint's address (DNS rebinding) reads
 * nothing.
 */
#ifndef PORTFWD_HTTP_H
#define PORTFWD_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define HTTP_MAX_CONNECTIONS 64
#define HTTP_MAX_PER_SOURCE 8
#define HTTP_REQUEST_SECONDS 15
#define HTTP_TIMEOUT_SECONDS 10
#define HTTP_MAX_HEADERS 8192

struct daemon;
struct http;

/*
 * Listens on CFG's address for D (its base, and what the answers read).
 * Returns the endpoint, or NULL with ERR saying why (the bind's error, and
 * who holds the port when it is in use).
 */
struct http *http_open(struct daemon *d, const struct config_http *cfg, char *err, size_t errlen);

/*
 * Makes *HP serve CFG after a reload: the same listen address keeps its
 * socket and takes CFG's lists; another one is bound anew (and the old one
 * closed); !CFG->enabled closes it. Returns 0, or -1 with ERR saying why
 * the new address could not be bound, in which case what served before
 * (if anything) serves on.
 */
int http_apply(struct http **hp, struct daemon *d, const struct config_http *cfg, char *err,
	       size_t errlen);

/* What H serves: its address, lists and names (NULL for NULL). */
const struct config_http *http_config(const struct http *h);

/* Stops listening and closes every connection. NULL is fine. */
void http_close(struct http *h);

/* What status shows: the address, its lists and the counters; JSON null for NULL. */
json_t *http_json(const struct http *h);

/* The counters, for metrics. */
struct http_stats {
	uint64_t requests, denied, busy, slow;
	size_t connections;
};
void http_stats(const struct http *h, struct http_stats *st);

#endif
