/*
 * A rule bound to one network interface (`interface = "wg0"`): its sockets
 * take only what arrives through that interface (SO_BINDTODEVICE), so a
 * rule on 0.0.0.0 answers through the VPN or the LAN and nowhere else.
 *
 * Privilege: since Linux 5.7 any process may bind a socket that is not
 * bound to a device yet (portfwd binds each new socket once, before
 * bind(2)); only changing a device binding needs CAP_NET_RAW. Before 5.7
 * every SO_BINDTODEVICE needed CAP_NET_RAW (see iface_bind_needs_cap).
 *
 * The binding is to the interface's index: an interface deleted and made
 * again (wg-quick down and up) is another index, and the sockets must be
 * bound anew (iface_index tells).
 */
#ifndef PORTFWD_IFACE_H
#define PORTFWD_IFACE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* True if NAME can be a Linux interface name: 1-15 printable ASCII
 * characters without "/" or ":", and not "." or "..". */
bool iface_name_valid(const char *name);

/* Binds socket FD to interface NAME; call before bind(2). Returns 0, or -1
 * with errno: ENODEV when there is no such interface (yet), EPERM where the
 * kernel wants CAP_NET_RAW. */
int iface_bind(int fd, const char *name);

/* The index of interface NAME now, 0 if there is none. */
unsigned iface_index(const char *name);

/*
 * If ERR, from binding a socket of a rule on interface NAME, is about the
 * interface (ENODEV, or EPERM: bind(2) says EACCES for a port), writes why
 * to OUT and returns true; otherwise false (portinfo_bind_error explains).
 */
bool iface_bind_error(int err, const char *name, char *out, size_t outlen);

/* True if RELEASE, as uname(2) gives it ("5.4.0-150-generic"), is a Linux
 * older than MAJOR.MINOR. An unreadable release counts as not older. */
bool iface_release_before(const char *release, int major, int minor);

/* True if this kernel wants CAP_NET_RAW for SO_BINDTODEVICE (before 5.7). */
bool iface_bind_needs_cap(void);

/*
 * True if traffic of FAMILY (AF_INET or AF_INET6) from the internet may
 * come in through interface NAME, with why in WHY: it carries the main
 * table's default route of that family (behind a home router, the ports it
 * forwards arrive there) or has a public address of that family. False
 * when it has neither, or is not there now (a VPN that comes up later).
 */
bool iface_faces_internet(const char *name, int family, char *why, size_t len);

/*
 * True if address SA (AF_INET or AF_INET6) is on a network of one of this
 * host's interfaces (within an address's netmask: a LAN, whatever its
 * addresses), with that interface's name in IFNAME. A /0 netmask counts
 * for nothing.
 */
bool iface_on_link(const struct sockaddr *sa, char *ifname, size_t len);

/*
 * True if the kernel routes address SA (AF_INET or AF_INET6) by a route
 * more specific than a default one (a VPN's, a LAN router's, a
 * point-to-point peer's), with that route's interface in IFNAME: the
 * address is reached through a network this host knows, not the internet.
 * False for the default route or no route.
 */
bool iface_routed(const struct sockaddr *sa, char *ifname, size_t len);

/* For tests: the route lookup iface_routed makes (NULL: ask the kernel). */
void iface_set_routes(bool (*routed)(const struct sockaddr *sa, char *ifname, size_t len));

/* For tests: whether NAME carries a default route of FAMILY (NULL: ask
 * the kernel) and the interfaces' addresses as getifaddrs(3) gives them
 * (NULL: getifaddrs and freeifaddrs). */
struct ifaddrs;
void iface_set_sources(bool (*default_route)(const char *name, int family),
		       int (*get)(struct ifaddrs **), void (*release)(struct ifaddrs *));

#endif
