/* Out of memory in the table must fail one session, never exit the daemon. */
#define HASH_NONFATAL_OOM 1

#include "udp_table.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>

int udp_table_key(const struct sockaddr *sa, const struct udp_local *local, struct udp_key *key)
{
	memset(key, 0, sizeof(*key));
	if (local && local->family == AF_INET)
		memcpy(key->local, &local->addr.v4, sizeof(local->addr.v4));
	else if (local && local->family == AF_INET6)
		memcpy(key->local, &local->addr.v6, sizeof(local->addr.v6));
	key->family = sa->sa_family;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		key->port = sin->sin_port;
		memcpy(key->addr, &sin->sin_addr, sizeof(sin->sin_addr));
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		key->port = sin6->sin6_port;
		memcpy(key->addr, &sin6->sin6_addr, sizeof(sin6->sin6_addr));
		return 0;
	}
	return -1;
}

struct udp_session *udp_table_find(struct udp_session *head, const struct sockaddr *sa,
				   const struct udp_local *local)
{
	struct udp_session *s = NULL;
	struct udp_key key;

	if (udp_table_key(sa, local, &key) < 0)
		return NULL;
	HASH_FIND(hh, head, &key, sizeof(key), s);
	return s;
}

int udp_table_add(struct udp_session **head, struct udp_session *s)
{
	struct udp_session *found = NULL;

	HASH_ADD(hh, *head, key, sizeof(s->key), s);
	/* With HASH_NONFATAL_OOM a failed allocation leaves S out. */
	HASH_FIND(hh, *head, &s->key, sizeof(s->key), found);
	return found == s ? 0 : -1;
}

void udp_table_remove(struct udp_session **head, struct udp_session *s)
{
	HASH_DELETE(hh, *head, s);
}

unsigned udp_table_count(const struct udp_session *head)
{
	return HASH_COUNT(head);
}

bool udp_cmsg_fits(const struct msghdr *msg, const struct cmsghdr *c)
{
	const char *end = (const char *)msg->msg_control + msg->msg_controllen;

	return c->cmsg_len <= (size_t)(end - (const char *)c);
}

int udp_local_from_msg(const struct msghdr *msg, struct udp_local *local)
{
	memset(local, 0, sizeof(*local));
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
		if (!udp_cmsg_fits(msg, c))
			return -1;
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
		    c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
			struct in_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			/* spec_dst, not addr: for a broadcast it is the local
			 * address that answers, where addr is the broadcast. */
			local->family = AF_INET;
			local->ifindex = (unsigned)pi.ipi_ifindex;
			local->addr.v4 = pi.ipi_spec_dst;
			return 0;
		}
		if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
		    c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
			struct in6_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			local->family = AF_INET6;
			local->ifindex = pi.ipi6_ifindex;
			local->addr.v6 = pi.ipi6_addr;
			return 0;
		}
	}
	return -1;
}

size_t udp_local_to_cmsg(const struct udp_local *local, union udp_cmsg *ctl)
{
	struct cmsghdr *c = (struct cmsghdr *)ctl->buf;

	memset(ctl, 0, sizeof(*ctl));
	if (local->family == AF_INET) {
		/* ifindex 0: the route decides the interface; spec_dst the source. */
		struct in_pktinfo pi = { .ipi_spec_dst = local->addr.v4 };

		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		return CMSG_SPACE(sizeof(pi));
	}
	if (local->family == AF_INET6) {
		/* A link-local source is only meaningful with its interface. A
		 * datagram sent to a group (ff02::1) is answered from the
		 * interface's own address: the kernel picks it for "::". */
		bool group = IN6_IS_ADDR_MULTICAST(&local->addr.v6);
		struct in6_pktinfo pi = {
			.ipi6_addr = group ? in6addr_any : local->addr.v6,
			.ipi6_ifindex = group || IN6_IS_ADDR_LINKLOCAL(&local->addr.v6) ? local->ifindex
											  : 0,
		};

		c->cmsg_level = IPPROTO_IPV6;
		c->cmsg_type = IPV6_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		return CMSG_SPACE(sizeof(pi));
	}
	return 0;
}
