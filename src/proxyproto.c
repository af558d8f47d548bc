#include "proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

const uint8_t proxyproto_v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

/* Version 2, command PROXY (the high nibble the version, the low the command). */
#define PROXYPROTO_V2_PROXY 0x21
/* Family (high nibble) and transport (low nibble). */
#define PROXYPROTO_AF_INET 0x10
#define PROXYPROTO_AF_INET6 0x20
#define PROXYPROTO_STREAM 0x01
#define PROXYPROTO_DGRAM 0x02

int proxyproto_parse(const char *text)
{
	if (strcmp(text, "none") == 0)
		return PROXYPROTO_NONE;
	if (strcmp(text, "v1") == 0)
		return PROXYPROTO_V1;
	if (strcmp(text, "v2") == 0)
		return PROXYPROTO_V2;
	return -1;
}

const char *proxyproto_name(int version)
{
	switch (version) {
	case PROXYPROTO_V1:
		return "v1";
	case PROXYPROTO_V2:
		return "v2";
	default:
		return "none";
	}
}

/* One end of the connection, as the header carries it. */
struct proxyproto_end {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* 4 bytes for AF_INET */
	uint16_t port;    /* host order */
};

/* SA as an end; an IPv4-mapped address as IPv4. False for another family. */
static bool proxyproto_end(const struct sockaddr *sa, struct proxyproto_end *e)
{
	memset(e, 0, sizeof(*e));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		e->family = AF_INET;
		memcpy(e->addr, &in->sin_addr, 4);
		e->port = ntohs(in->sin_port);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		e->port = ntohs(in6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			e->family = AF_INET;
			memcpy(e->addr, &in6->sin6_addr.s6_addr[12], 4);
		} else {
			e->family = AF_INET6;
			memcpy(e->addr, &in6->sin6_addr, 16);
		}
		return true;
	}
	return false;
}

/* An IPv4 end as its IPv4-mapped IPv6 address. */
static void proxyproto_map6(struct proxyproto_end *e)
{
	if (e->family != AF_INET)
		return;
	memmove(e->addr + 12, e->addr, 4);
	memset(e->addr, 0, 10);
	e->addr[10] = e->addr[11] = 0xff;
	e->family = AF_INET6;
}

static int proxyproto_v1(const struct proxyproto_end *src, const struct proxyproto_end *dst,
			 uint8_t *buf, size_t len)
{
	char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
	/* snprintf writes a NUL, which the header does not have: format
	 * into a buffer with room for it, then copy the line alone. */
	char line[PROXYPROTO_V1_MAX + 1];
	int n;

	inet_ntop(src->family, src->addr, s, sizeof(s));
	inet_ntop(dst->family, dst->addr, d, sizeof(d));
	n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
		     src->family == AF_INET ? "TCP4" : "TCP6", s, d, src->port, dst->port);
	if (n < 0 || (size_t)n >= sizeof(line) || (size_t)n > len)
		return -1;
	memcpy(buf, line, (size_t)n);
	return n;
}

static int proxyproto_v2(int socktype, const struct proxyproto_end *src,
			 const struct proxyproto_end *dst, uint8_t *buf, size_t len)
{
	size_t alen = src->family == AF_INET ? 4 : 16;
	size_t block = 2 * alen + 4;
	uint8_t *p = buf + 16;

	if (len < 16 + block)
		return -1;
	memcpy(buf, proxyproto_v2_sig, sizeof(proxyproto_v2_sig));
	buf[12] = PROXYPROTO_V2_PROXY;
	buf[13] = (uint8_t)((src->family == AF_INET ? PROXYPROTO_AF_INET : PROXYPROTO_AF_INET6) |
			   (socktype == SOCK_DGRAM ? PROXYPROTO_DGRAM : PROXYPROTO_STREAM));
	buf[14] = (uint8_t)(block >> 8);
	buf[15] = (uint8_t)(block & 0xff);
	memcpy(p, src->addr, alen);
	memcpy(p + alen, dst->addr, alen);
	p += 2 * alen;
	p[0] = (uint8_t)(src->port >> 8);
	p[1] = (uint8_t)(src->port & 0xff);
	p[2] = (uint8_t)(dst->port >> 8);
	p[3] = (uint8_t)(dst->port & 0xff);
	return (int)(16 + block);
}

int proxyproto_build(int version, int socktype, const struct sockaddr *src,
		     const struct sockaddr *dst, uint8_t *buf, size_t len)
{
	struct proxyproto_end s, d;

	if (socktype != SOCK_STREAM && socktype != SOCK_DGRAM)
		return -1;
	if (!proxyproto_end(src, &s) || !proxyproto_end(dst, &d))
		return -1;
	if (s.family != d.family) {
		proxyproto_map6(&s);
		proxyproto_map6(&d);
	}
	switch (version) {
	case PROXYPROTO_V1:
		/* Version 1 has TCP4 and TCP6, and no datagram form. */
		return socktype == SOCK_STREAM ? proxyproto_v1(&s, &d, buf, len) : -1;
	case PROXYPROTO_V2:
		return proxyproto_v2(socktype, &s, &d, buf, len);
	default:
		return -1;
	}
}
