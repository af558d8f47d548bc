#include "acceptpause.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* How long a listener rests after running out of descriptors. */
#define ACCEPTPAUSE_SECONDS 1

struct acceptpause {
	struct evconnlistener *lev;
	struct event *retry;
	const char *what;
	bool paused;  /* resting after a failed accept */
	bool held;    /* the owner keeps it disabled (its own limit) */
	bool warned;  /* this episode was logged */
	struct acceptpause *next;
};

/*
 * libevent gives the error callback the argument of the accept callback,
 * which is the owner's (evhttp's, for the HTTP endpoint), so the pause is
 * found by its listener. The main thread's few listeners only.
 */
static struct acceptpause *acceptpause_all;

static struct acceptpause *acceptpause_find(const struct evconnlistener *lev)
{
	for (struct acceptpause *ap = acceptpause_all; ap; ap = ap->next)
		if (ap->lev == lev)
			return ap;
	return NULL;
}

static void acceptpause_update(struct acceptpause *ap)
{
	if (ap->paused || ap->held)
		evconnlistener_disable(ap->lev);
	else
		evconnlistener_enable(ap->lev);
}

static void acceptpause_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct acceptpause *ap = arg;

	(void)fd;
	(void)what;
	ap->paused = false;
	acceptpause_update(ap);
	/* A shortage that lasts is logged once; the next one after an accept
	 * that worked is logged again (acceptpause_accepted). */
}

static void acceptpause_error_cb(struct evconnlistener *lev, void *arg)
{
	struct acceptpause *ap = acceptpause_find(lev);
	struct timeval tv = { ACCEPTPAUSE_SECONDS, 0 };
	int err = EVUTIL_SOCKET_ERROR();

	(void)arg;
	if (!ap)
		return;
	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
		/* Transient (the peer gave up, a protocol error): the next
		 * accept is a new one. */
		log_debug("%s: accept: %s", ap->what, strerror(err));
		return;
	}
	if (!ap->warned)
		log_warning("%s: out of %s (%s); pausing accepts for %ds at a time until they are back",
			    ap->what, err == EMFILE || err == ENFILE ? "file descriptors" : "memory",
			    strerror(err), ACCEPTPAUSE_SECONDS);
	ap->warned = true;
	ap->paused = true;
	acceptpause_update(ap);
	if (evtimer_add(ap->retry, &tv) < 0) {
		/* No timer: accept again at once rather than never. */
		ap->paused = false;
		acceptpause_update(ap);
	}
}

struct acceptpause *acceptpause_new(struct evconnlistener *lev, const char *what)
{
	struct acceptpause *ap = calloc(1, sizeof(*ap));

	if (!ap)
		return NULL;
	ap->lev = lev;
	ap->what = what;
	ap->retry = evtimer_new(evconnlistener_get_base(lev), acceptpause_retry_cb, ap);
	if (!ap->retry) {
		free(ap);
		return NULL;
	}
	evconnlistener_set_error_cb(lev, acceptpause_error_cb);
	ap->next = acceptpause_all;
	acceptpause_all = ap;
	return ap;
}

bool acceptpause_active(const struct acceptpause *ap)
{
	return ap && ap->paused;
}

void acceptpause_hold(struct acceptpause *ap, bool held)
{
	if (!ap)
		return;
	ap->held = held;
	acceptpause_update(ap);
}

void acceptpause_accepted(struct acceptpause *ap)
{
	if (ap)
		ap->warned = false;
}

void acceptpause_free(struct acceptpause *ap)
{
	if (!ap)
		return;
	for (struct acceptpause **pp = &acceptpause_all; *pp; pp = &(*pp)->next)
		if (*pp == ap) {
			*pp = ap->next;
			break;
		}
	/* libevent's own handling again (the listener may outlive this). */
	evconnlistener_set_error_cb(ap->lev, NULL);
	event_free(ap->retry);
	free(ap);
}
