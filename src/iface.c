#include "iface.h"

#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>

bool iface_name_valid(const char *name)
{
	size_t n = strlen(name);

	/* The kernel's dev_valid_name, less non-ASCII bytes, which would only
	 * make the name hard to read in a log or a status line. */
	if (n == 0 || n >= IFNAMSIZ || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	for (const char *p = name; *p; p++)
		if (*p <= ' ' || *p > '~' || *p == '/' || *p == ':')
			return false;
	return true;
}

int iface_bind(int fd, const char *name)
{
	return setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, (socklen_t)strlen(name) + 1);
}

unsigned iface_index(const char *name)
{
	return if_nametoindex(name);
}

bool iface_bind_error(int err, const char *name, char *out, size_t outlen)
{
	if (err == ENODEV) {
		snprintf(out, outlen, "no such interface %s", name);
		return true;
	}
	if (err == EPERM) {
		if (iface_bind_needs_cap())
			snprintf(out, outlen, "permission denied: binding to interface %s needs CAP_NET_RAW before Linux 5.7",
				 name);
		else
			snprintf(out, outlen, "permission denied: binding to interface %s: %s", name,
				 strerror(err));
		return true;
	}
	return false;
}

bool iface_release_before(const char *release, int major, int minor)
{
	char *end;
	long ma = strtol(release, &end, 10), mi;

	if (end == release || *end != '.')
		return false;
	release = end + 1;
	mi = strtol(release, &end, 10);
	if (end == release)
		return false;
	return ma < major || (ma == major && mi < minor);
}

bool iface_bind_needs_cap(void)
{
	struct utsname u;

	/* Linux 5.7 ("net: core: enable SO_BINDTODEVICE for non-root
	 * users") let a process without CAP_NET_RAW bind a socket that has no
	 * device yet. */
	return uname(&u) == 0 && iface_release_before(u.release, 5, 7);
}
