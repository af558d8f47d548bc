#ifndef PORTFWD_ALLOC_H
#define PORTFWD_ALLOC_H

#include <stddef.h>

/*
 * The data path's own allocations (a TCP connection, a UDP session):
 * calloc(1, SIZE), NULL with errno ENOMEM when memory ran out. Every caller
 * must survive NULL. The test daemon portfwd-faults links tests/faults.c
 * in place of alloc.c, which fails these (and libevent's allocations) on
 * demand, to prove it.
 */
void *alloc_zeroed(size_t size);

#endif
