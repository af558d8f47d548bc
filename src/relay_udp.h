/*
 * UDP relay: one session per client address, each with its own socket
 * connected to the target so replies go back to the right client. A
 * session ends after udp_idle_timeout without datagrams either way.
 */
#ifndef PORTFWD_RELAY_UDP_H
#define PORTFWD_RELAY_UDP_H

#include <event2/util.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct listener;

/* Event callback for a rule's UDP listening socket; ARG is the listener. */
void relay_udp_listener_cb(evutil_socket_t fd, short what, void *arg);

/* Daemon-wide: UDP_SEGMENT sends made, and buffers of several datagrams
 * received coalesced (UDP_GRO) from clients. Any thread. */
void relay_udp_offload_stats(unsigned long long *gso_sends, unsigned long long *gro_receives);

/* Ends every session of L, logging REASON. Returns how many. */
unsigned relay_udp_close_all(struct listener *l, const char *reason);

/* Ends every session of L whose client MATCH(client, ARG) says, logging
 * REASON. Returns how many. */
unsigned relay_udp_close_if(struct listener *l,
			    bool (*match)(const struct sockaddr *client, const void *arg),
			    const void *arg, const char *reason);

/* Ends session ID of L, if it is there. Returns true if it was. */
bool relay_udp_close_id(struct listener *l, uint64_t id, const char *reason);

/* Appends an object per session of L to OUT: id, rule, proto, client,
 * target, age, idle, datagrams and bytes each way, state, draining. */
void relay_udp_describe(struct listener *l, json_t *out, double now);

#endif
