/* Port knowledge: IANA ranges, service names, and who holds a port. */
#ifndef PORTFWD_PORTINFO_H
#define PORTFWD_PORTINFO_H

#include <stddef.h>
#include <sys/socket.h>

/* "well-known", "registered" or "dynamic" (IANA, RFC 6335). */
const char *portinfo_range(unsigned port);

/*
 * Finds the process holding PORT for SOCKTYPE (SOCK_STREAM: a listening
 * socket; SOCK_DGRAM: a bound one) from /proc. Writes "pid 123 (nginx)"
 * or, when the socket is visible but its process is not (another user's),
 * "a process of uid 0". Returns 0 if found, -1 if not.
 */
int portinfo_holder(int socktype, unsigned port, char *out, size_t outlen);

/*
 * Explains why binding ADDR for SOCKTYPE failed with errno ERR, in words a
 * user can act on: the port range and privilege for EACCES, the holder of
 * the port for EADDRINUSE.
 */
void portinfo_bind_error(int err, int socktype, const struct sockaddr *addr,
			 char *out, size_t outlen);

/*
 * Service names. The system's services database comes first (netbase's
 * /etc/services, through getservbyname_r(3): local, never DNS), then
 * portinfo's own table of ports that home labs use and the database lacks
 * (portinfo.c says where each comes from).
 */

/*
 * The port of service NAME for PROTO (RULE_PROTO_TCP, RULE_PROTO_UDP or
 * both). Returns the port; 0 when there is no such service for PROTO,
 * with the closest known name in SUGGEST ("" when none is close); -1 when
 * NAME is a different port for TCP than for UDP.
 */
long portinfo_service_port(const char *name, unsigned proto, char *suggest, size_t len);

#endif
