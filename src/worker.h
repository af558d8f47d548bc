/*
 * A worker: one thread running one event loop, with everything the data
 * path needs beside it. Each worker has its own listening sockets
 * (SO_REUSEPORT) and owns the connections and sessions it accepts; a relay
 * reaches its state through its listener's worker, never through globals.
 * Configuration, the control socket and signals stay on the main thread,
 * which talks to a worker only through worker_call().
 */
#ifndef PORTFWD_WORKER_H
#define PORTFWD_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "admit.h"

struct event_base;
struct listener;
struct sources;

/* Large enough for any UDP payload (65507 over IPv4, 65527 over IPv6). */
#define WORKER_DGRAM_MAX 65536
/* Datagrams moved per recvmmsg/sendmmsg call. */
#define WORKER_BATCH 32

/* Empty pipes a worker keeps for reuse (splice). */
#define WORKER_PIPE_POOL 64

/* The most a pipe grows to under sustained traffic (a rule's buffer_size
 * if larger), within the daemon-wide budget (worker_pipe_grow). */
#define WORKER_PIPE_GROW_MAX (1 << 20)

/* Only rules whose buffer_size is at least the kernel's default pipe grow
 * theirs: one that asks for less wants less memory per connection. */
#define WORKER_PIPE_GROW_FROM (64 << 10)

/* A pipe kept for splice(): the read and write ends and its capacity, of
 * which GROWN bytes came from worker_pipe_grow (the budget's share). */
struct worker_pipe {
	int r, w;
	size_t size;
	size_t grown;
};

struct worker {
	int id;
	struct event_base *base;
	pthread_t thread;
	bool running;
	_Atomic bool log_connections; /* set by the main thread on reload */
	uint64_t next_id;             /* see worker_next_id */
	LIST_HEAD(, listener) listeners;

	/* Pipes returned by connections, ready for the next one (splice). */
	struct worker_pipe *pipes;
	size_t npipes;

	/* Scratch space for a batch of datagrams: relaying allocates nothing. */
	unsigned char (*dgram)[WORKER_DGRAM_MAX];

	/* Who may connect, as this worker sees it: the bans the main thread
	 * posts (admit.h). */
	struct admit_worker admit;
	/* The per-source table that every worker shares (sources.h), set
	 * before the thread starts; NULL: no per-source limits. */
	struct sources *sources;
};

/* Sets W up with its own event loop. Returns 0, or -1 after logging why. */
int worker_init(struct worker *w, int id, bool log_connections);

/* Starts W's thread. Returns 0, or -1 after logging why. */
int worker_start(struct worker *w);

/*
 * Runs FN(ARG) on W's thread, soon; from any thread, also before the worker
 * started (it then runs first thing). Returns 0 or -1 (out of memory).
 */
int worker_call(struct worker *w, void (*fn)(void *arg), void *arg);

/*
 * Runs FN(ARG) on W's thread and returns when it has run (at once, on the
 * calling thread, if W is not running). Main thread only: workers never
 * wait for each other. Calls to one worker run in the order they were made.
 * Returns 0, or -1 when out of memory (FN did not run).
 */
int worker_call_sync(struct worker *w, void (*fn)(void *arg), void *arg);

/* Bits of a connection id that name its worker: CONFIG_MAX_WORKERS <= 64. */
#define WORKER_ID_BITS 6

/* A new id for a connection or UDP session of W, unique across the workers
 * without a counter they share: W's own count, then W's number. W's thread. */
uint64_t worker_next_id(struct worker *w);

/* Frees every listener of W on its thread, ends the loop, joins the thread. */
void worker_stop(struct worker *w);

/* Frees what worker_init made. The thread must be stopped. */
void worker_free(struct worker *w);

/* A pipe of at least WANT bytes if the kernel allows it (capacity in ->size). */
int worker_pipe_get(struct worker *w, size_t want, struct worker_pipe *p);

/*
 * Grows P, a pipe its direction keeps filling, fourfold up to MOST bytes.
 * Returns 1 if it grew, 0 if not now (at MOST, or the daemon-wide budget is
 * spent), -1 if the kernel refused (pipe-max-size, the user's pipe limit).
 * The budget
 * keeps every worker's grown pipes together within a quarter of
 * fs.pipe-user-pages-soft: past that limit the kernel gives the daemon's
 * user 2-slot pipes, and every connection would crawl.
 */
int worker_pipe_grow(struct worker_pipe *p, size_t most);

/* Gives P's growth back, in place: false if the kernel would not (what P
 * holds does not fit the smaller size yet). */
bool worker_pipe_shrink(struct worker_pipe *p);

/* Closes the pooled pipes: called when out of file descriptors. */
void worker_pipe_trim(struct worker *w);

/* Gives an empty pipe back for reuse (a grown one shrunk back first), or
 * closes it when the pool is full. */
void worker_pipe_put(struct worker *w, struct worker_pipe *p);

/* Closes P (one that may hold bytes) and returns its share of the budget. */
void worker_pipe_close(struct worker_pipe *p);

/* The grown pipes of every worker: their bytes beyond the first size, the
 * most there may be, and how many times a pipe grew since the start. */
struct worker_pipe_stats {
	long grown_bytes, budget_bytes;
	unsigned long long grows;
};
void worker_pipe_stats(struct worker_pipe_stats *st);

#endif
