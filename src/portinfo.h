/* Port knowledge: IANA ranges, service names, and who holds a port. */
#ifndef PORTFWD_PORTINFO_H
#define PORTFWD_PORTINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* "well-known", "registered" or "dynamic" (IANA, RFC 6335). */
const char *portinfo_range(unsigned port);

/*
 * Finds the process holding PORT for SOCKTYPE (SOCK_STREAM: a listening
 * socket; SOCK_DGRAM: a bound one) through sockets.h. Writes "pid 123 (nginx)"
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
 * /etc/services, read through getservent_r(3) as nsswitch says, once and
 * again when the file changes; with "services: files" it is local, never
 * DNS), then portinfo's own table of ports that home labs use and the
 * database lacks (portinfo.c says where each comes from). Names compare
 * without regard to case. Main thread only.
 */

/*
 * The port of service NAME for PROTO (RULE_PROTO_TCP, RULE_PROTO_UDP or
 * both: then the name must be known for both). Returns the port; 0 when
 * it is not known for PROTO; -1 when it is one port for TCP and another
 * for UDP. *TCP and *UDP (either may be NULL) get its port for each
 * protocol, 0 where it has none.
 */
long portinfo_service_port(const char *name, unsigned proto, unsigned *tcp, unsigned *udp);

/* The known name closest to NAME for PROTO, in BEST ("" when none is
 * close: a slip of a character or three). */
void portinfo_service_suggest(const char *name, unsigned proto, char *best, size_t len);

/* How many more suggestions portinfo_service_suggest may look for (each
 * compares the name with every known one): a file full of bad names must
 * not keep the daemon's loop busy. The configuration's reader sets it. */
void portinfo_suggest_budget(unsigned n);

/* Room for a port's name from portinfo_service_name (a name, or two
 * joined by '/'); longer names are cut. */
#define PORTINFO_NAME_MAX 64

/*
 * The service name of PORT for PROTO (RULE_PROTO_TCP, RULE_PROTO_UDP or
 * both), in BUF: the database's first name for the port (as
 * getservbyport(3) answers), else portinfo's table. For both protocols,
 * TCP's name, or "tcpname/udpname" when they differ. Returns false, with
 * BUF empty, when the port has no name. Main thread only.
 */
bool portinfo_service_name(unsigned port, unsigned proto, char *buf, size_t len);

/* "ssh, well-known" or, for a port without a name, "registered": how
 * status, rules and the log describe a port. Returns BUF. */
const char *portinfo_describe(unsigned port, unsigned proto, char *buf, size_t len);

/* True if the services database holds nothing (no /etc/services: netbase
 * is missing). */
bool portinfo_services_empty(void);

/* With PIN, the database is read now if the file changed, and then lookups
 * stop asking (a stat(2) each) until unpinned: for a client naming
 * thousands of ports at once, and for reading a configuration's rules. */
void portinfo_services_pin(bool pin);

/* For tests: the file whose changes make the database be read again
 * (NULL: /etc/services); the database itself is what nsswitch reads. */
void portinfo_set_services_path(const char *path);

#endif
