/*
 * Every counter of the daemon in the Prometheus text exposition format
 * (version 0.0.4): one family per counter with HELP and TYPE lines, rules
 * told apart by a "rule" label, directions and reasons by labels of their
 * own. `portfwdctl metrics > /var/lib/node_exporter/portfwd.prom` feeds
 * node_exporter's textfile collector.
 */
#ifndef PORTFWD_METRICS_H
#define PORTFWD_METRICS_H

#include <jansson.h>

struct daemon;
struct evbuffer;

/* Appends the exposition text to OUT. */
void metrics_text(const struct daemon *d, struct evbuffer *out);

/* The same samples as JSON: [{"name": ..., "labels": {...}, "value": ...}]. */
json_t *metrics_json(const struct daemon *d);

#endif
