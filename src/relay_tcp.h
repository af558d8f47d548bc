/*
 * A relayed TCP connection: non-blocking connect to the target with
 * connect_timeout, then bytes both ways with at most buffer_size buffered
 * per direction, half-close passed on, idle_timeout, and one log line with
 * its totals when it ends.
 */
#ifndef PORTFWD_RELAY_TCP_H
#define PORTFWD_RELAY_TCP_H

#include <event2/util.h>
#include <sys/socket.h>

struct listener;

/* Takes over the accepted socket FD of client SA on rule L. */
void relay_tcp_accept(struct listener *l, evutil_socket_t fd,
		      const struct sockaddr *sa, int salen);

/* Ends every connection of L, logging REASON for each. */
void relay_tcp_close_all(struct listener *l, const char *reason);

#endif
