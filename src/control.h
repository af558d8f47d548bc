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
/* A client that sends nothing for this long is closed. */
#define CONTROL_IDLE_SECONDS 5
/* Reply bytes a client may leave unread before the daemon stops reading it. */
#define CONTROL_MAX_PENDING (256 * 1024)

/*
 * Creates the socket at PATH (mode 0660). A stale socket file is replaced;
 * if a daemon answers on it, or PATH is something else, fails. Returns
 * NULL with the reason in ERR.
 */
struct control *control_open(struct event_base *base, const char *path,
			     struct daemon *d, char *err, size_t errlen);

/* Gives the socket file (and its directory, if portfwd made it) to
 * UID:GID, before the daemon becomes that user. Returns 0, or -1 with ERR. */
int control_chown(struct control *ctl, uid_t uid, gid_t gid, char *err, size_t errlen);

/* Closes every client and the socket, and removes the socket file. */
void control_close(struct control *ctl);

#endif
