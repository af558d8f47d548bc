/*
 * This host's own addresses: a connection to one of them never leaves the
 * machine, so a listener here may take it. The configuration check asks
 * this to find rules that would forward to themselves. Only local calls
 * (getifaddrs(3)), never DNS.
 */
#ifndef PORTFWD_LOCALADDR_H
#define PORTFWD_LOCALADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct ifaddrs;

/* The interface addresses, read on first need. Start from { 0 }. */
struct localaddr {
	bool loaded;
	struct in_addr *v4;
	size_t n4;
	struct in6_addr *v6;
	size_t n6;
};

/*
 * Writes to OUT the address that connect(2) to SA (AF_INET or AF_INET6)
 * really reaches, port kept: an IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * becomes that IPv4 address, and 0.0.0.0 and :: become 127.0.0.1 and ::1,
 * as Linux connects to them. Any other address is copied as it is.
 */
void localaddr_destination(const struct sockaddr *sa, struct sockaddr_storage *out);

/*
 * True if a connection to SA's address (the port does not matter) stays on
 * this host: 127.0.0.0/8, ::1, 0.0.0.0, ::, those as IPv4-mapped
 * addresses, and the addresses of this host's interfaces. The interface
 * list is read into LA by the first call that needs it and kept until
 * localaddr_free; if it cannot be read, a warning is logged (once per LA)
 * and only the fixed addresses above count.
 */
bool localaddr_is_local(struct localaddr *la, const struct sockaddr *sa);

/* Frees the list in LA and leaves it as { 0 }. */
void localaddr_free(struct localaddr *la);

/*
 * For tests, so they do not depend on this machine's addresses: GET fills
 * the interface list as getifaddrs(3) does and RELEASE (may be NULL) frees
 * it. NULL for GET restores getifaddrs(3) and freeifaddrs(3).
 */
void localaddr_set_source(int (*get)(struct ifaddrs **), void (*release)(struct ifaddrs *));

#endif
