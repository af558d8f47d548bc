#include "iface.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

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

/* The main table's default route of FAMILY out of interface NAME, asked of
 * the kernel over rtnetlink (the table the host's own traffic takes; a
 * VPN's full-tunnel route in a table of its own is not the way in). */
static bool iface_netlink_default_route(const char *name, int family)
{
	struct {
		struct nlmsghdr nh;
		struct rtmsg rt;
	} req;
	unsigned index = if_nametoindex(name);
	struct timeval tv = { 1, 0 };
	bool found = false, done = false;
	char buf[16384];
	int fd;

	if (!index)
		return false;
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return false;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = sizeof(req);
	req.nh.nlmsg_type = RTM_GETROUTE;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nh.nlmsg_seq = 1;
	req.rt.rtm_family = (unsigned char)family;
	if (send(fd, &req, sizeof(req), 0) < 0) {
		close(fd);
		return false;
	}
	while (!done) {
		ssize_t got = recv(fd, buf, sizeof(buf), 0);
		unsigned int n = (unsigned int)got;

		if (got < 0 && errno == EINTR)
			continue; /* a signal, not the end of the dump */
		if (got <= 0)
			break;
		/* The aligned length within what is left: the unsigned N never wraps. */
		for (struct nlmsghdr *nh = (struct nlmsghdr *)buf;
		     NLMSG_OK(nh, n) && NLMSG_ALIGN(nh->nlmsg_len) <= n; nh = NLMSG_NEXT(nh, n)) {
			struct rtmsg *rt = NLMSG_DATA(nh);
			unsigned table, oif = 0;
			bool via = false;
			int len;

			if (nh->nlmsg_type == NLMSG_DONE || nh->nlmsg_type == NLMSG_ERROR) {
				done = true;
				break;
			}
			if (nh->nlmsg_type != RTM_NEWROUTE || nh->nlmsg_len < NLMSG_LENGTH(sizeof(*rt)) ||
			    (rt->rtm_flags & (RTNH_F_DEAD | RTNH_F_LINKDOWN)))
				continue;
			table = rt->rtm_table;
			len = (int)RTM_PAYLOAD(nh);
			for (struct rtattr *at = RTM_RTA(rt); RTA_OK(at, len); at = RTA_NEXT(at, len)) {
				if (at->rta_type == RTA_TABLE && RTA_PAYLOAD(at) >= sizeof(uint32_t)) {
					memcpy(&table, RTA_DATA(at), sizeof(uint32_t));
				} else if (at->rta_type == RTA_OIF && RTA_PAYLOAD(at) >= sizeof(uint32_t)) {
					memcpy(&oif, RTA_DATA(at), sizeof(uint32_t));
				} else if (at->rta_type == RTA_MULTIPATH) {
					int left = (int)RTA_PAYLOAD(at);

					for (struct rtnexthop *hop = RTA_DATA(at); RTNH_OK(hop, left);
					     left -= (int)RTNH_ALIGN(hop->rtnh_len), hop = RTNH_NEXT(hop))
						via |= (unsigned)hop->rtnh_ifindex == index &&
						       !(hop->rtnh_flags & (RTNH_F_DEAD | RTNH_F_LINKDOWN));
				}
			}
			if (rt->rtm_dst_len == 0 && table == RT_TABLE_MAIN && rt->rtm_type == RTN_UNICAST &&
			    (oif == index || via))
				found = true;
		}
	}
	close(fd);
	return found;
}

/*
 * True if the kernel routes SA (AF_INET or AF_INET6) by a route of the main
 * tables more specific than a default route (a connected network, a VPN's
 * or a LAN router's route), with its interface in IFNAME: asked as
 * `ip route get fibmatch` does (RTM_GETROUTE with RTM_F_FIB_MATCH, Linux
 * 4.13), which answers with the route that matched rather than a host
 * route. False for a default route (or one split to take everything), no
 * route, or a kernel that cannot say.
 */
static bool iface_netlink_routed(const struct sockaddr *sa, char *ifname, size_t len)
{
	struct {
		struct nlmsghdr nh;
		struct rtmsg rt;
		struct rtattr at;
		uint8_t addr[16];
	} req;
	size_t alen = sa->sa_family == AF_INET ? 4 : 16;
	struct timeval tv = { 1, 0 };
	bool found = false;
	char buf[8192];
	ssize_t got;
	int fd;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return false;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = (uint32_t)(NLMSG_LENGTH(sizeof(req.rt)) + RTA_LENGTH(alen));
	req.nh.nlmsg_type = RTM_GETROUTE;
	req.nh.nlmsg_flags = NLM_F_REQUEST;
	req.nh.nlmsg_seq = 1;
	req.rt.rtm_family = (unsigned char)sa->sa_family;
	req.rt.rtm_dst_len = (unsigned char)(alen * 8);
	req.rt.rtm_flags = RTM_F_FIB_MATCH;
	req.at.rta_type = RTA_DST;
	req.at.rta_len = (unsigned short)RTA_LENGTH(alen);
	memcpy(req.addr,
	       sa->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
					: (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr,
	       alen);
	if (send(fd, &req, req.nh.nlmsg_len, 0) < 0) {
		close(fd);
		return false;
	}
	do
		got = recv(fd, buf, sizeof(buf), 0);
	while (got < 0 && errno == EINTR);
	if (got > 0) {
		struct nlmsghdr *nh = (struct nlmsghdr *)buf;
		unsigned int n = (unsigned int)got;

		/* One answer: the route, or NLMSG_ERROR (no route: ENETUNREACH). */
		if (NLMSG_OK(nh, n) && nh->nlmsg_type == RTM_NEWROUTE &&
		    nh->nlmsg_len >= NLMSG_LENGTH(sizeof(struct rtmsg))) {
			struct rtmsg *rt = NLMSG_DATA(nh);
			int alen_left = (int)RTM_PAYLOAD(nh);
			uint32_t oif = 0;

			for (struct rtattr *at = RTM_RTA(rt); RTA_OK(at, alen_left); at = RTA_NEXT(at, alen_left))
				if (at->rta_type == RTA_OIF && RTA_PAYLOAD(at) >= sizeof(uint32_t))
					memcpy(&oif, RTA_DATA(at), sizeof(uint32_t));
			char name[IF_NAMESIZE];

			/* Not a default route, nor one split in halves or
			 * sixteenths as VPN clients install to take everything
			 * (0.0.0.0/1 and 128.0.0.0/1; 2000::/4 and 3000::/4):
			 * a network's route is /8 or longer, /16 for IPv6. A
			 * cloned host route is a kernel before 4.13, which
			 * ignores RTM_F_FIB_MATCH and cannot say which matched;
			 * its IPv6 answer is a /128 without that flag, so an
			 * IPv6 host route never counts. */
			found = rt->rtm_type == RTN_UNICAST && !(rt->rtm_flags & RTM_F_CLONED) &&
				rt->rtm_dst_len >= (sa->sa_family == AF_INET ? 8 : 16) &&
				!(sa->sa_family == AF_INET6 && rt->rtm_dst_len == 128);
			if (found)
				snprintf(ifname, len, "%s", oif && if_indextoname(oif, name) ? name : "?");
		}
	}
	close(fd);
	return found;
}

static bool (*iface_default_route)(const char *, int) = iface_netlink_default_route;
static bool (*iface_routed_by)(const struct sockaddr *, char *, size_t) = iface_netlink_routed;

void iface_set_routes(bool (*routed)(const struct sockaddr *sa, char *ifname, size_t len))
{
	iface_routed_by = routed ? routed : iface_netlink_routed;
}

bool iface_routed(const struct sockaddr *sa, char *ifname, size_t len)
{
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return false;
	return iface_routed_by(sa, ifname, len);
}
static int (*iface_getifaddrs)(struct ifaddrs **) = getifaddrs;
static void (*iface_freeifaddrs)(struct ifaddrs *) = freeifaddrs;

void iface_set_sources(bool (*default_route)(const char *name, int family),
		       int (*get)(struct ifaddrs **), void (*release)(struct ifaddrs *))
{
	iface_default_route = default_route ? default_route : iface_netlink_default_route;
	iface_getifaddrs = get ? get : getifaddrs;
	iface_freeifaddrs = get ? release : freeifaddrs;
}

bool iface_faces_internet(const char *name, int family, char *why, size_t len)
{
	struct ifaddrs *list = NULL;
	bool found = false;

	if (iface_default_route(name, family)) {
		snprintf(why, len, "carries the %s default route (what the router forwards from the internet arrives there)",
			 family == AF_INET ? "IPv4" : "IPv6");
		return true;
	}
	if (iface_getifaddrs(&list) < 0)
		return false;
	for (struct ifaddrs *a = list; a && !found; a = a->ifa_next) {
		char host[INET6_ADDRSTRLEN];

		if (!a->ifa_addr || strcmp(a->ifa_name, name) != 0 || a->ifa_addr->sa_family != family ||
		    access_builtin_of(a->ifa_addr))
			continue;
		inet_ntop(family,
			  family == AF_INET
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

/* True if A and B agree on the bits that MASK sets (N bytes), and MASK
 * sets some. */
static bool iface_masked_equal(const uint8_t *a, const uint8_t *b, const uint8_t *mask, size_t n)
{
	bool some = false;

	for (size_t i = 0; i < n; i++) {
		if ((a[i] ^ b[i]) & mask[i])
			return false;
		some |= mask[i] != 0;
	}
	return some;
}

bool iface_on_link(const struct sockaddr *sa, char *ifname, size_t len)
{
	struct ifaddrs *list = NULL;
	bool found = false;

	if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) || iface_getifaddrs(&list) < 0)
		return false;
	for (struct ifaddrs *a = list; a && !found; a = a->ifa_next) {
		if (!a->ifa_addr || !a->ifa_netmask || a->ifa_addr->sa_family != sa->sa_family)
			continue;
		if (sa->sa_family == AF_INET)
			found = iface_masked_equal(
				(const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr,
				(const uint8_t *)&((const struct sockaddr_in *)a->ifa_addr)->sin_addr,
				(const uint8_t *)&((const struct sockaddr_in *)a->ifa_netmask)->sin_addr, 4);
		else
			found = iface_masked_equal(
				((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr,
				((const struct sockaddr_in6 *)a->ifa_addr)->sin6_addr.s6_addr,
				((const struct sockaddr_in6 *)a->ifa_netmask)->sin6_addr.s6_addr, 16);
		if (found)
			snprintf(ifname, len, "%s", a->ifa_name);
	}
	if (iface_freeifaddrs)
		iface_freeifaddrs(list);
	return found;
}
