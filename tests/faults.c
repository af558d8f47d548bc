/*
 * Allocation failures on demand, for the test daemon portfwd-faults (the
 * Makefile links this in place of src/alloc.c; the daemon people run has no
 * such hook). PORTFWD_FAULTS names a file; while it exists, each word in it
 * fails a kind of allocation:
 *   alloc  the data path's own (alloc_zeroed: a TCP connection, a UDP session)
 *   event  libevent's (events, buffers, bufferevents: event_set_mem_functions)
 * The file is read at each allocation: slow, and only for tests.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"

static const char *faults_file;

/* True while the file exists and names KIND. */
static bool faults_on(const char *kind)
{
	char buf[128];
	ssize_t n;
	int fd;

	if (!faults_file || (fd = open(faults_file, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return strstr(buf, kind) != NULL;
}

void *alloc_zeroed(size_t size)
{
	int e = errno;

	if (faults_on("alloc")) {
		errno = ENOMEM;
		return NULL;
	}
	errno = e;
	return calloc(1, size);
}

static void *faults_malloc(size_t size)
{
	int e = errno;

	if (faults_on("event")) {
		errno = ENOMEM;
		return NULL;
	}
	errno = e;
	return malloc(size);
}

static void *faults_realloc(void *p, size_t size)
{
	int e = errno;

	if (faults_on("event")) {
		errno = ENOMEM;
		return NULL;
	}
	errno = e;
	return realloc(p, size);
}

/* Before main: libevent takes its allocator before its first allocation. */
__attribute__((constructor)) static void faults_init(void)
{
	faults_file = getenv("PORTFWD_FAULTS");
	if (faults_file)
		event_set_mem_functions(faults_malloc, faults_realloc, free);
}
