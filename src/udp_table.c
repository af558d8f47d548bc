/* Out of memory in the table must fail one session, never exit the daemon. */
#define HASH_NONFATAL_OOM 1

#include "udp_table.h"

#include <netinet/in.h>
#include <string.h>

int udp_table_key(const struct sockaddr *sa, struct udp_key *key)
{
	memset(key, 0, sizeof(*key));
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

struct udp_session *udp_table_find(struct udp_session *head, const struct sockaddr *sa)
{
	struct udp_session *s = NULL;
	struct udp_key key;

	if (udp_table_key(sa, &key) < 0)
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
