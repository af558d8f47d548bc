/* The daemon's state for `portfwdctl status`, as JSON or as text. */
#ifndef PORTFWD_STATUS_H
#define PORTFWD_STATUS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct access_policy;
struct daemon;
struct forward;
struct evbuffer;

/* One JSON document: daemon facts, every rule with its counters, totals. */
json_t *status_json(const struct daemon *d);

/* The same facts as aligned text for a person, appended to OUT. */
void status_text(const struct daemon *d, struct evbuffer *out);

/* A rule's allow and deny lists, sizes not entries: {"allow": {"entries":
 * "@lan, 203.0.113.7", "ranges_v4": 2, "ranges_v6": 1} or null, "deny": ...}. */
json_t *status_access_json(const struct access_policy *p);

/* The same as "  allow  @lan, 203.0.113.7  (2 IPv4 and 1 IPv6 ranges)"
 * lines, none for a rule that lets everyone in. */
void status_access_text(const struct access_policy *p, struct evbuffer *out);

/* N bytes as "512 B" or "1.5 MiB" into BUF (16 bytes are enough). */
/* A rule's mapping on the home router (router.h): null when the rule asks
 * for none; its state when it does. */
json_t *status_router_json(const struct daemon *d, const struct forward *fw);
/* The same as lines of text ("  router ..."), nothing when none. */
void status_router_text(const struct daemon *d, const struct forward *fw, struct evbuffer *out);

const char *status_bytes(uint64_t n, char *buf, size_t len);

/* SECS as status says an uptime: "5s", "2m 5s", "1h 2m 5s", "3d 1h 2m". */
const char *status_duration(double secs, char *buf, size_t len);

#endif
