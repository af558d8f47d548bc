/*
 * A relayed TCP connection: non-blocking connect to the target with
 * connect_timeout, then bytes both ways with at most buffer_size queued per
 * direction, half-close passed on, idle_timeout, and one log line with its
 * totals when it ends. Bytes move by splice() through a pipe where the rule
 * allows it, by copying through an evbuffer otherwise.
 */
#ifndef PORTFWD_RELAY_TCP_H
#define PORTFWD_RELAY_TCP_H

#include <event2/util.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct listener;
struct rule_settings;

/*
 * Sets FD's TCP keepalive as SET says (on with its idle, interval and
 * count, or off). On a listening socket it is inherited by every accepted
 * one. Returns 0, or -1 with errno from the call that failed.
 */
int relay_tcp_keepalive(int fd, const struct rule_settings *set);

/* Takes over the accepted socket FD of client SA on L. If the rule is at
 * max_connections the client waits, unread, until a slot frees. */
void relay_tcp_accept(struct listener *l, evutil_socket_t fd,
		      const struct sockaddr *sa, int salen);

/* Starts relaying waiting clients of L while the rule has room. */
void relay_tcp_start_waiting(struct listener *l);

/* Ends every connection of L (waiting ones too), logging REASON for each.
 * Returns how many. */
unsigned relay_tcp_close_all(struct listener *l, const char *reason);

/* Ends every connection of L whose client MATCH(client, ARG) says, logging
 * REASON. Returns how many. */
unsigned relay_tcp_close_if(struct listener *l,
			    bool (*match)(const struct sockaddr *client, const void *arg),
			    const void *arg, const char *reason);

/* Ends connection ID of L, if it is there. Returns true if it was. */
bool relay_tcp_close_id(struct listener *l, uint64_t id, const char *reason);

/* Appends an object per connection of L to OUT: id, rule, proto, client,
 * target, age, idle (seconds), bytes_to_target, bytes_to_client, state
 * (waiting, connecting, established, client-closed, target-closed,
 * closing) and draining. */
void relay_tcp_describe(struct listener *l, json_t *out, double now);

#endif
