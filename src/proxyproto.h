/*
 * The PROXY protocol (haproxy's proxy-protocol.txt, versions 1 and 2):
 * the header a relay sends its target ahead of a client's bytes, saying
 * who the client is (its address and port) and where it connected to.
 * Pure functions that fill a buffer from two addresses: no sockets, no
 * libevent, so the bytes can be checked one by one in a unit test.
 */
#ifndef PORTFWD_PROXYPROTO_H
#define PORTFWD_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A rule's proxy_protocol setting; NONE sends no header. */
enum proxyproto_version {
	PROXYPROTO_NONE = 0,
	PROXYPROTO_V1 = 1, /* text, one line; TCP only */
	PROXYPROTO_V2 = 2, /* binary; TCP, and UDP with a header on every datagram */
};

/* The longest version 1 header as the specification bounds it (an UNKNOWN
 * line with two IPv6 addresses); portfwd's longest, TCP6, is 104 bytes. */
#define PROXYPROTO_V1_MAX 107
/* The longest version 2 header portfwd sends: 16 bytes, then two IPv6
 * addresses and two ports (no TLVs). */
#define PROXYPROTO_V2_MAX (16 + 36)
/* Room for either. */
#define PROXYPROTO_MAX PROXYPROTO_V1_MAX

/* The v2 signature, the header's first 12 bytes. */
extern const uint8_t proxyproto_v2_sig[12];

/* "none", "v1", "v2" -> the version; -1 for anything else. */
int proxyproto_parse(const char *text);
/* The setting's spelling: "none", "v1" or "v2". */
const char *proxyproto_name(int version);

/*
 * Writes into BUF (LEN bytes, PROXYPROTO_MAX is always enough) the header
 * of VERSION for a client at SRC that connected (or sent) to DST, over
 * SOCKTYPE (SOCK_STREAM, or SOCK_DGRAM for version 2 only). SRC and DST
 * are AF_INET or AF_INET6; an IPv4-mapped IPv6 address (::ffff:a.b.c.d, a
 * client of an IPv6 socket that takes IPv4) is sent as IPv4. Should the
 * two still differ in family, both are sent as IPv6 (an IPv4 address
 * mapped). Returns the header's length, or -1: a version or socket type
 * the protocol has no header for (v1 over SOCK_DGRAM), an address of
 * another family, or LEN too short.
 */
int proxyproto_build(int version, int socktype, const struct sockaddr *src,
		     const struct sockaddr *dst, uint8_t *buf, size_t len);

#endif
