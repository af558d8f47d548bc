/*
 * A worker: one event loop and what the data path needs beside it. Every
 * relay reaches its state through its rule's worker, never through globals,
 * so several workers can run side by side.
 */
#ifndef PORTFWD_WORKER_H
#define PORTFWD_WORKER_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;

/* Large enough for any UDP payload (65507 over IPv4, 65527 over IPv6). */
#define WORKER_DGRAM_MAX 65536

struct worker {
	struct event_base *base;
	bool log_connections;
	uint64_t next_conn_id;
	/* Scratch space for one datagram, so relaying allocates nothing. */
	unsigned char dgram[WORKER_DGRAM_MAX];
};

#endif
