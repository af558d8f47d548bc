/*
 * libFuzzer harness: the PROXY protocol header writer (proxyproto.c),
 * checked against a reader of its own written from haproxy's
 * proxy-protocol.txt. The input gives the version, the socket type, the
 * two families (IPv4, IPv6, IPv4-mapped IPv6), the addresses and the
 * ports, and a buffer length. A header must be written or refused (-1),
 * never overrun its buffer, and read back as the same client and
 * destination: the mapped IPv4 as IPv4, mixed families as IPv6.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What a header says: the family (4 or 6), two 16-byte addresses (IPv4 in
 * the last 4 bytes of an IPv4-mapped one), two ports. */
struct said {
	int family;
	uint8_t src[16], dst[16];
	unsigned sport, dport;
};

static const uint8_t mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* SA as it ought to be sent: FAMILY 4 or 6 and a mapped 16-byte form. */
static void expect(const struct sockaddr_storage *ss, int *family, uint8_t out[16], unsigned *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		memcpy(out, mapped_prefix, 12);
		memcpy(out + 12, &in->sin_addr, 4);
		*family = 4;
		*port = ntohs(in->sin_port);
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		memcpy(out, &in6->sin6_addr, 16);
		*family = memcmp(out, mapped_prefix, 12) == 0 ? 4 : 6;
		*port = ntohs(in6->sin6_port);
	}
}

static int read_v1(const uint8_t *h, int n, struct said *s)
{
	char line[PROXYPROTO_V1_MAX + 1], proto[8], a[64], b[64];
	int used = 0;

	if (n < 8 || n > PROXYPROTO_V1_MAX || h[n - 2] != '\r' || h[n - 1] != '\n')
		return -1;
	memcpy(line, h, (size_t)n - 2);
	line[n - 2] = '\0';
	if (memchr(line, '\r', (size_t)n - 2) || memchr(line, '\n', (size_t)n - 2))
		return -1;
	if (sscanf(line, "PROXY %7s %63s %63s %u %u%n", proto, a, b, &s->sport, &s->dport, &used) != 5 ||
	    used != n - 2 || s->sport > 65535 || s->dport > 65535)
		return -1;
	if (strcmp(proto, "TCP4") == 0) {
		s->family = 4;
		memcpy(s->src, mapped_prefix, 12);
		memcpy(s->dst, mapped_prefix, 12);
		return inet_pton(AF_INET, a, s->src + 12) == 1 && inet_pton(AF_INET, b, s->dst + 12) == 1 ? 0 : -1;
	}
	if (strcmp(proto, "TCP6") == 0) {
		s->family = 6;
		return inet_pton(AF_INET6, a, s->src) == 1 && inet_pton(AF_INET6, b, s->dst) == 1 ? 0 : -1;
	}
	return -1;
}

static int read_v2(const uint8_t *h, int n, int socktype, struct said *s)
{
	unsigned len;

	if (n < 16 || memcmp(h, proxyproto_v2_sig, 12) != 0 || h[12] != 0x21)
		return -1; /* version 2, PROXY command */
	len = (unsigned)h[14] << 8 | h[15];
	if ((int)len != n - 16)
		return -1;
	if (h[13] == (socktype == SOCK_STREAM ? 0x11 : 0x12) && len == 12) {
		s->family = 4;
		memcpy(s->src, mapped_prefix, 12);
		memcpy(s->dst, mapped_prefix, 12);
		memcpy(s->src + 12, h + 16, 4);
		memcpy(s->dst + 12, h + 20, 4);
		s->sport = (unsigned)h[24] << 8 | h[25];
		s->dport = (unsigned)h[26] << 8 | h[27];
		return 0;
	}
	if (h[13] == (socktype == SOCK_STREAM ? 0x21 : 0x22) && len == 36) {
		s->family = 6;
		memcpy(s->src, h + 16, 16);
		memcpy(s->dst, h + 32, 16);
		s->sport = (unsigned)h[48] << 8 | h[49];
		s->dport = (unsigned)h[50] << 8 | h[51];
		return 0;
	}
	return -1;
}

/* An address from 19 bytes: its kind (IPv4, IPv6, IPv4-mapped IPv6), 16
 * address bytes, 2 port bytes. */
static void address(const uint8_t *d, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (d[0] % 3 == 0) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, d + 1, 4);
		in->sin_port = htons((uint16_t)(d[17] << 8 | d[18]));
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, d + 1, 16);
		if (d[0] % 3 == 2)
			memcpy(&in6->sin6_addr, mapped_prefix, 12);
		in6->sin6_port = htons((uint16_t)(d[17] << 8 | d[18]));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage src, dst;
	uint8_t buf[PROXYPROTO_MAX + 16];
	struct said got = { 0 }, want = { 0 };
	int version, socktype, n, wf_src, wf_dst;
	size_t len;

	if (size != 2 + 19 * 2)
		return -1;
	version = data[0] % 4;
	socktype = data[0] & 4 ? SOCK_DGRAM : SOCK_STREAM;
	len = data[1] % (PROXYPROTO_MAX + 1);
	address(data + 2, &src);
	address(data + 21, &dst);
	/* Bytes past LEN must stay as they were: no overrun. */
	memset(buf, 0xa5, sizeof(buf));
	n = proxyproto_build(version, socktype, (struct sockaddr *)&src, (struct sockaddr *)&dst, buf, len);
	for (size_t i = len; i < sizeof(buf); i++)
		if (buf[i] != 0xa5)
			abort();
	if (n < 0)
		return 0;
	if (n == 0 || (size_t)n > len || (version != PROXYPROTO_V1 && version != PROXYPROTO_V2) ||
	    (version == PROXYPROTO_V1 && socktype != SOCK_STREAM))
		abort(); /* a header where the protocol has none, or past the buffer */
	if ((version == PROXYPROTO_V1 ? read_v1(buf, n, &got) : read_v2(buf, n, socktype, &got)) < 0)
		abort(); /* not a header a receiver would read */
	expect(&src, &wf_src, want.src, &want.sport);
	expect(&dst, &wf_dst, want.dst, &want.dport);
	/* Both IPv4 (mapped or not): sent as IPv4; otherwise as IPv6. */
	want.family = wf_src == 4 && wf_dst == 4 ? 4 : 6;
	if (got.family != want.family || memcmp(got.src, want.src, 16) != 0 ||
	    memcmp(got.dst, want.dst, 16) != 0 || got.sport != want.sport || got.dport != want.dport)
		abort(); /* the header says someone else */
	return 0;
}
