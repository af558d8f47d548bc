/*
 * Giving up root: when started as root with daemon.user set, portfwd binds
 * its listeners, then becomes that user and group (supplementary groups
 * cleared), keeps CAP_NET_BIND_SERVICE only if some rule needs a port below
 * 1024 (and CAP_NET_RAW only where the kernel wants it to bind a socket to
 * an interface, iface.h), clears the capability bounding set and sets
 * no_new_privs. Done on
 * the main thread before the workers start, as capabilities are per thread.
 */
#ifndef PORTFWD_PRIVS_H
#define PORTFWD_PRIVS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Becomes UID/GID, keeping CAP_NET_BIND_SERVICE if KEEP_BIND and
 * CAP_NET_RAW if KEEP_RAW. Returns 0, or -1 with the reason in ERR (the
 * caller must not go on as root). */
int privs_drop(uid_t uid, gid_t gid, bool keep_bind, bool keep_raw, char *err, size_t errlen);

/* True if this process may bind ports below the kernel's
 * ip_unprivileged_port_start: CAP_NET_BIND_SERVICE is in effect (as it is
 * for root, unless a container or the capability bounding set took it
 * away). Root, when the capabilities cannot be read. */
bool privs_can_bind_low(void);

#endif
