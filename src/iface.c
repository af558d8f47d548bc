#include "iface.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>

#include "access.h"

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

/* ---- does the internet come in through it? ---- */

static const char *iface_proc_net = "/proc/net";
static int (*iface_getifaddrs)(struct ifaddrs **) = getifaddrs;
static void (*iface_freeifaddrs)(struct ifaddrs *) = freeifaddrs;

void iface_set_sources(const char *proc_net, int (*get)(struct ifaddrs **),
		       void (*release)(struct ifaddrs *))
{
	iface_proc_net = proc_net ? proc_net : "/proc/net";
	iface_getifaddrs = get ? get : getifaddrs;
	iface_freeifaddrs = get ? release : freeifaddrs;
}

/* True if FILE (route or ipv6_route under iface_proc_net) has a default
 * route that is up, not a reject route, through NAME. */
static bool iface_default_route(const char *file, const char *name)
{
	char path[256], line[512];
	bool found = false;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", iface_proc_net, file);
	fp = fopen(path, "re");
	if (!fp)
		return false;
	while (!found && fgets(line, sizeof(line), fp)) {
		char dev[IFNAMSIZ + 1], dst[33], mask[9];
		unsigned flags, plen;

		if (strcmp(file, "route") == 0) {
			/* Iface Destination Gateway Flags RefCnt Use Metric Mask ... */
			if (sscanf(line, "%16s %8s %*s %x %*s %*s %*s %8s", dev, dst, &flags, mask) == 4)
				found = strcmp(dev, name) == 0 && strcmp(dst, "00000000") == 0 &&
					strcmp(mask, "00000000") == 0 && (flags & 0x1);
		} else {
			/* dst plen src splen nexthop metric refcnt use flags dev */
			if (sscanf(line, "%32s %x %*s %*s %*s %*s %*s %*s %x %16s", dst, &plen, &flags, dev) == 4)
				found = strcmp(dev, name) == 0 && plen == 0 &&
					strspn(dst, "0") == 32 && (flags & 0x1) && !(flags & 0x200);
		}
	}
	fclose(fp);
	return found;
}

bool iface_faces_internet(const char *name, char *why, size_t len)
{
	struct ifaddrs *list = NULL;
	bool found = false;

	if (iface_default_route("route", name) || iface_default_route("ipv6_route", name)) {
		snprintf(why, len, "carries the default route (what the router forwards from the internet arrives there)");
		return true;
	}
	if (iface_getifaddrs(&list) < 0)
		return false;
	for (struct ifaddrs *a = list; a && !found; a = a->ifa_next) {
		char host[INET6_ADDRSTRLEN];

		if (!a->ifa_addr || strcmp(a->ifa_name, name) != 0 ||
		    (a->ifa_addr->sa_family != AF_INET && a->ifa_addr->sa_family != AF_INET6) ||
		    access_builtin_of(a->ifa_addr))
			continue;
		inet_ntop(a->ifa_addr->sa_family,
			  a->ifa_addr->sa_family == AF_INET
				  ? (const void *)&((const struct sockaddr_in *)a->ifa_addr)->sin_addr
				  : (const void *)&((const struct sockaddr_in6 *)a->ifa_addr)->sin6_addr,
			  host, sizeof(host));
		snprintf(why, len, "has the public address %s", host);
		found = true;
	}
	if (iface_freeifaddrs)
		iface_freeifaddrs(list);
	return found;
}
