#include "localaddr.h"

#include <errno.h>
#include <ifaddrs.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static int (*localaddr_get)(struct ifaddrs **) = getifaddrs;
static void (*localaddr_release)(struct ifaddrs *) = freeifaddrs;

void localaddr_set_source(int (*get)(struct ifaddrs **), void (*release)(struct ifaddrs *))
{
	localaddr_get = get ? get : getifaddrs;
	localaddr_release = get ? release : freeifaddrs;
}

void localaddr_destination(const struct sockaddr *sa, struct sockaddr_storage *out)
{
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
	struct sockaddr_in6 *o6 = (struct sockaddr_in6 *)out;
	struct sockaddr_in *o4 = (struct sockaddr_in *)out;

	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
		*o6 = *in6;
		if (IN6_IS_ADDR_UNSPECIFIED(&o6->sin6_addr))
			o6->sin6_addr = in6addr_loopback;
		return;
	}
	if (sa->sa_family == AF_INET6) {
		/* An AF_INET6 socket sends IPv4 to a mapped address. */
		o4->sin_family = AF_INET;
		o4->sin_port = in6->sin6_port;
		memcpy(&o4->sin_addr, &in6->sin6_addr.s6_addr[12], sizeof(o4->sin_addr));
	} else if (sa->sa_family == AF_INET) {
		*o4 = *(const struct sockaddr_in *)sa;
	} else {
		out->ss_family = sa->sa_family;
		return;
	}
	if (o4->sin_addr.s_addr == htonl(INADDR_ANY))
		o4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* Reads the interface list into LA. Returns 0 or -1 (LA stays empty). */
static int localaddr_load(struct localaddr *la)
{
	struct ifaddrs *list = NULL;
	size_t n4 = 0, n6 = 0;

	if (localaddr_get(&list) < 0)
		return -1;
	for (const struct ifaddrs *i = list; i; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		n4 += i->ifa_addr->sa_family == AF_INET;
		n6 += i->ifa_addr->sa_family == AF_INET6;
	}
	la->v4 = n4 ? calloc(n4, sizeof(*la->v4)) : NULL;
	la->v6 = n6 ? calloc(n6, sizeof(*la->v6)) : NULL;
	if ((n4 && !la->v4) || (n6 && !la->v6)) {
		localaddr_free(la);
		if (localaddr_release)
			localaddr_release(list);
		errno = ENOMEM;
		return -1;
	}
	for (const struct ifaddrs *i = list; i; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		if (i->ifa_addr->sa_family == AF_INET)
			la->v4[la->n4++] = ((const struct sockaddr_in *)i->ifa_addr)->sin_addr;
		else if (i->ifa_addr->sa_family == AF_INET6)
			la->v6[la->n6++] = ((const struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
	}
	if (localaddr_release)
		localaddr_release(list);
	return 0;
}

bool localaddr_is_local(struct localaddr *la, const struct sockaddr *sa)
{
	struct sockaddr_storage dest;

	/* 0.0.0.0, :: and mapped addresses become what they connect to. */
	localaddr_destination(sa, &dest);
	if (dest.ss_family == AF_INET) {
		if ((ntohl(((struct sockaddr_in *)&dest)->sin_addr.s_addr) >> 24) == 127)
			return true;
	} else if (dest.ss_family == AF_INET6) {
		if (IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&dest)->sin6_addr))
			return true;
	} else {
		return false;
	}

	if (!la->loaded) {
		la->loaded = true;
		if (localaddr_load(la) < 0)
			log_warning("cannot list this host's addresses (getifaddrs: %s): a rule "
			            "forwarding to one of them is not checked for loops",
			            strerror(errno));
	}
	if (dest.ss_family == AF_INET) {
		const struct in_addr *a = &((struct sockaddr_in *)&dest)->sin_addr;

		for (size_t i = 0; i < la->n4; i++)
			if (la->v4[i].s_addr == a->s_addr)
				return true;
	} else {
		const struct in6_addr *a = &((struct sockaddr_in6 *)&dest)->sin6_addr;

		for (size_t i = 0; i < la->n6; i++)
			if (IN6_ARE_ADDR_EQUAL(&la->v6[i], a))
				return true;
	}
	return false;
}

void localaddr_free(struct localaddr *la)
{
	free(la->v4);
	free(la->v6);
	memset(la, 0, sizeof(*la));
}
