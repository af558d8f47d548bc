#include "worker.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"

struct worker_call_arg {
	void (*fn)(void *arg);
	void *arg;
};

/* A call the main thread waits for. */
struct worker_sync_arg {
	void (*fn)(void *arg);
	void *arg;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
};

uint64_t worker_next_id(struct worker *w)
{
	return (++w->next_id << WORKER_ID_BITS) | (uint64_t)w->id;
}

/*
 * The worker's event loop is not given libevent's epoll changelist (issue
 * 16 tried it: one epoll_ctl fewer per connection). Its changes wait for
 * the next epoll_wait, so a connection's descriptor, closed by then and
 * reused by another thread (the main thread reading /proc during a
 * reload), got this worker's late EPOLL_CTL_DEL: harmless (ENOENT), but a
 * race on the descriptor that ThreadSanitizer rightly reported
 * (test_reload, reload under load).
 */
int worker_init(struct worker *w, int id, bool log_connections)
{
	memset(w, 0, sizeof(*w));
	w->id = id;
	atomic_store(&w->log_connections, log_connections);
	LIST_INIT(&w->listeners);
	w->base = event_base_new();
	w->dgram = calloc(WORKER_BATCH, sizeof(*w->dgram));
	w->pipes = calloc(WORKER_PIPE_POOL, sizeof(*w->pipes));
	if (!w->base || !w->dgram || !w->pipes) {
		log_error("worker %d: cannot create its event loop", id);
		return -1;
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	if (event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY) < 0)
		log_error("worker %d: the event loop failed", w->id);
	return NULL;
}

int worker_start(struct worker *w)
{
	int err = pthread_create(&w->thread, NULL, worker_main, w);

	if (err) {
		log_error("worker %d: cannot start its thread: %s", w->id, strerror(err));
		return -1;
	}
	w->running = true;
	/* "portfwd-w0", ...: top -H, ps -L and gdb tell the workers apart
	 * (at most 15 characters; a failure changes nothing). */
	{
		char name[16];

		snprintf(name, sizeof(name), "portfwd-w%d", w->id);
		pthread_setname_np(w->thread, name);
	}
	return 0;
}

static void worker_call_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_call_arg *c = arg;

	(void)fd;
	(void)what;
	c->fn(c->arg);
	free(c);
}

int worker_call(struct worker *w, void (*fn)(void *arg), void *arg)
{
	struct worker_call_arg *c = malloc(sizeof(*c));
	struct timeval now = { 0, 0 };

	if (!c)
		return -1;
	c->fn = fn;
	c->arg = arg;
	/* With evthread_use_pthreads() this is safe from any thread and wakes the loop. */
	if (event_base_once(w->base, -1, EV_TIMEOUT, worker_call_cb, c, &now) < 0) {
		free(c);
		return -1;
	}
	return 0;
}

static void worker_sync_cb(void *arg)
{
	struct worker_sync_arg *s = arg;

	s->fn(s->arg);
	pthread_mutex_lock(&s->lock);
	s->done = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

int worker_call_sync(struct worker *w, void (*fn)(void *arg), void *arg)
{
	struct worker_sync_arg s = { .fn = fn, .arg = arg };
	int rc;

	if (!w->running) {
		fn(arg);
		return 0;
	}
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	rc = worker_call(w, worker_sync_cb, &s);
	if (rc == 0) {
		pthread_mutex_lock(&s.lock);
		while (!s.done)
			pthread_cond_wait(&s.cond, &s.lock);
		pthread_mutex_unlock(&s.lock);
	}
	pthread_cond_destroy(&s.cond);
	pthread_mutex_destroy(&s.lock);
	return rc;
}

static void worker_stop_cb(void *arg)
{
	struct worker *w = arg;

	while (!LIST_EMPTY(&w->listeners))
		listener_free(LIST_FIRST(&w->listeners));
	event_base_loopbreak(w->base);
}

void worker_stop(struct worker *w)
{
	if (!w->base)
		return;
	if (!w->running) {
		worker_stop_cb(w);
		return;
	}
	if (worker_call(w, worker_stop_cb, w) < 0)
		event_base_loopbreak(w->base);
	pthread_join(w->thread, NULL);
	w->running = false;
}

void worker_pipe_trim(struct worker *w)
{
	for (size_t i = 0; i < w->npipes; i++)
		worker_pipe_close(&w->pipes[i]);
	w->npipes = 0;
}

void worker_free(struct worker *w)
{
	worker_pipe_trim(w);
	admit_worker_free(&w->admit);
	free(w->pipes);
	free(w->dgram);
	if (w->base)
		event_base_free(w->base);
	memset(w, 0, sizeof(*w));
}

/* Bytes of grown pipes in every worker, and the most there may be. */
static _Atomic long pipe_grown_bytes;
static _Atomic unsigned long long pipe_grows;
static long pipe_grow_budget;
static pthread_once_t pipe_budget_once = PTHREAD_ONCE_INIT;

static void pipe_budget_init(void)
{
	FILE *f = fopen("/proc/sys/fs/pipe-user-pages-soft", "re");
	long pages = 16384; /* the kernel's default */

	if (f) {
		if (fscanf(f, "%ld", &pages) != 1)
			pages = 16384;
		fclose(f);
	}
	/* 0: no limit; still bounded, at what the default would allow. */
	if (pages <= 0)
		pages = 16384;
	pipe_grow_budget = pages / 4 * sysconf(_SC_PAGESIZE);
}

int worker_pipe_get(struct worker *w, size_t want, struct worker_pipe *p)
{
	int fds[2];
	int size;

	if (w->npipes > 0) {
		*p = w->pipes[--w->npipes];
	} else {
		if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
			return -1;
		p->r = fds[0];
		p->w = fds[1];
		size = fcntl(p->w, F_GETPIPE_SZ);
		p->size = size > 0 ? (size_t)size : 65536;
		p->grown = 0;
	}
	/* Larger pipes mean fewer splice calls; the kernel may refuse (pipe-max-size). */
	if (p->size < want) {
		size = fcntl(p->w, F_SETPIPE_SZ, (int)want);
		if (size > 0 && (size_t)size > p->size)
			p->size = (size_t)size;
	}
	return 0;
}

int worker_pipe_grow(struct worker_pipe *p, size_t most)
{
	size_t want = p->size * 4 < most ? p->size * 4 : most;
	long more = (long)(want - p->size);
	int got;

	pthread_once(&pipe_budget_once, pipe_budget_init);
	if (want <= p->size)
		return 0;
	if (atomic_fetch_add(&pipe_grown_bytes, more) + more > pipe_grow_budget) {
		atomic_fetch_sub(&pipe_grown_bytes, more);
		return 0;
	}
	got = fcntl(p->w, F_SETPIPE_SZ, (int)want);
	if (got <= 0 || (size_t)got <= p->size) {
		atomic_fetch_sub(&pipe_grown_bytes, more);
		return -1;
	}
	/* The kernel rounds to a power of two pages: count what it gave. */
	atomic_fetch_add(&pipe_grown_bytes, (long)((size_t)got - p->size) - more);
	p->grown += (size_t)got - p->size;
	p->size = (size_t)got;
	atomic_fetch_add(&pipe_grows, 1);
	return 1;
}

void worker_pipe_stats(struct worker_pipe_stats *st)
{
	pthread_once(&pipe_budget_once, pipe_budget_init);
	st->grown_bytes = atomic_load(&pipe_grown_bytes);
	st->budget_bytes = pipe_grow_budget;
	st->grows = atomic_load(&pipe_grows);
}

bool worker_pipe_shrink(struct worker_pipe *p)
{
	int got = fcntl(p->w, F_SETPIPE_SZ, (int)(p->size - p->grown));

	if (got <= 0 || (size_t)got > p->size - p->grown)
		return false;
	atomic_fetch_sub(&pipe_grown_bytes, (long)p->grown);
	p->size = (size_t)got;
	p->grown = 0;
	return true;
}

void worker_pipe_close(struct worker_pipe *p)
{
	if (p->r < 0)
		return;
	close(p->r);
	close(p->w);
	atomic_fetch_sub(&pipe_grown_bytes, (long)p->grown);
	p->r = p->w = -1;
	p->grown = 0;
}

void worker_pipe_put(struct worker *w, struct worker_pipe *p)
{
	if (p->grown && !worker_pipe_shrink(p))
		worker_pipe_close(p);
	else if (w->npipes < WORKER_PIPE_POOL)
		w->pipes[w->npipes++] = *p;
	else
		worker_pipe_close(p);
	p->r = p->w = -1;
	p->grown = 0;
}
