/*
 * UDP relay: one session per client address, each with its own socket
 * connected to the target so replies go back to the right client. A
 * session ends after udp_idle_timeout without datagrams either way.
 */
#ifndef PORTFWD_RELAY_UDP_H
#define PORTFWD_RELAY_UDP_H

#include <event2/util.h>

struct listener;

/* Event callback for a rule's UDP listening socket; ARG is the listener. */
void relay_udp_listener_cb(evutil_socket_t fd, short what, void *arg);

/* Ends every session of L. */
void relay_udp_close_all(struct listener *l);

#endif
