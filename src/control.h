/*
 * The control socket server: a Unix stream socket speaking ctl_proto.h.
 * Bounded requests, bounded clients, an idle timeout; a bad request gets
 * an error reply and never disturbs forwarding.
 */
#ifndef PORTFWD_CONTROL_H
#define PORTFWD_CONTROL_H

#include <stddef.h>
#include <sys/types.h>

struct daemon;
struct event_base;

#define CONTROL_MAX_CLIENTS 32
/* Of those, the last ones only root, the daemon's user and daemon.admin_group
 * may take, so that they always get in (systemctl reload). */
#define CONTROL_RESERVED 8
/* Connections one uid may hold at once, root's and the daemon's aside. */
#define CONTROL_PER_UID 4
/* A client that sends nothing for this long is closed. */
#define CONTROL_IDLE_SECONDS 5
/* A request must be complete this long after its first byte arrived, or the
 * client is told so and closed: bytes trickling in do not keep a slot. */
#define CONTROL_REQUEST_SECONDS 5
/* Reply bytes a client may leave unread before the daemon stops reading it. */
#define CONTROL_MAX_PENDING (256 * 1024)

/*
 * Creates the socket at PATH (mode 0660). A stale socket file is replaced;
 * if a daemon answers on it, or PATH is something else, fails. Started as
 * root, UID:GID (unless uid is -1) is the user the daemon will become: the
 * socket (and a directory made for it) is created owned by that user, every
 * step on the path done with its filesystem identity, and no name is ever
 * chowned (see control.c). Call before any other thread exists. Returns
 * NULL with the reason in ERR.
 */
struct control *control_open(struct event_base *base, const char *path, uid_t uid, gid_t gid,
			     struct daemon *d, char *err, size_t errlen);

/* Closes every client and the socket, and removes the socket file. */
void control_close(struct control *ctl);

#endif
