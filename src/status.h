/* The daemon's state for `portfwdctl status`, as JSON or as text. */
#ifndef PORTFWD_STATUS_H
#define PORTFWD_STATUS_H

#include <jansson.h>

struct daemon;
struct evbuffer;

/* One JSON document: daemon facts, every rule with its counters, totals. */
json_t *status_json(const struct daemon *d);

/* The same facts as aligned text for a person, appended to OUT. */
void status_text(const struct daemon *d, struct evbuffer *out);

#endif
