#ifndef PORTFWD_ACCEPTPAUSE_H
#define PORTFWD_ACCEPTPAUSE_H

#include <stdbool.h>

struct evconnlistener;

/*
 * Out of descriptors, a listener whose accept() fails stays readable: left
 * alone, libevent calls accept() again at once, and the main loop spins at
 * full CPU while nothing is served (memcached's lesson). An acceptpause
 * watches one listener of the main loop (the control socket, the HTTP
 * endpoint; the rules' listeners have their own, in listener.c): on EMFILE,
 * ENFILE, ENOBUFS or ENOMEM it disables the listener and enables it again a
 * second later, as long as the failures last, with one warning per episode.
 */
struct acceptpause;

/* Watches LEV (its error callback is taken). WHAT names the listener in
 * the log ("control", "daemon.http"). NULL when memory ran out. */
struct acceptpause *acceptpause_new(struct evconnlistener *lev, const char *what);

/* True while the listener rests after a failure. */
bool acceptpause_active(const struct acceptpause *ap);

/* An owner that disables the listener for its own reasons (a connection
 * limit) does it with acceptpause_hold(ap, true), and calls
 * acceptpause_hold(ap, false) when it may accept again: the listener is
 * enabled then unless a pause is under way. NULL is fine. */
void acceptpause_hold(struct acceptpause *ap, bool held);

/* An accept worked: the next shortage is logged again. NULL is fine. */
void acceptpause_accepted(struct acceptpause *ap);

/* Stops watching (before the listener is freed). NULL is fine. */
void acceptpause_free(struct acceptpause *ap);

#endif
