/*
 * A services database of the test's own: FILE (NULL: an empty one, as
 * without netbase) bind-mounted over /etc/services in a mount namespace of
 * the test's process, so that names come out the same on every machine.
 * Check runs each test in a process of its own, and the namespace ends
 * with it; programs the test starts inherit it. Header-only: unit and
 * integration suites both use it.
 */
#ifndef PORTFWD_TEST_SERVICES_FILE_H
#define PORTFWD_TEST_SERVICES_FILE_H

#include <check.h>
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

/* True once FILE is /etc/services; false, having said why, where it
 * cannot be (not root, or CK_FORK=no, which would keep the namespace for
 * the tests after this one). A unit test then makes portinfo read it
 * again (portinfo_set_services_path(NULL)). */
static inline bool test_services_file(const char *file)
{
	char empty[] = "/tmp/portfwd-test-services-XXXXXX";
	const char *fork_mode = getenv("CK_FORK");
	bool made = false;
	int fd;

	if (fork_mode && strcmp(fork_mode, "no") == 0) {
		fprintf(stderr, "service names from a test file need CK_FORK=yes: skipped\n");
		return false;
	}
	if (geteuid() != 0 || unshare(CLONE_NEWNS) < 0 ||
	    mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		fprintf(stderr, "service names from a test file need root (a mount namespace): skipped\n");
		return false;
	}
	if (!file) {
		fd = mkstemp(empty);
		ck_assert_int_ge(fd, 0);
		close(fd);
		file = empty;
		made = true;
	}
	ck_assert_msg(mount(file, "/etc/services", NULL, MS_BIND, NULL) == 0, "bind %s: %s", file,
		      strerror(errno));
	if (made)
		unlink(empty); /* the mount holds it */
	return true;
}

#endif
