/*
 * libFuzzer harness: one address entry, as a rule, a list or a command
 * names it. The first byte picks the parser and the protocol; the rest is
 * the text:
 *   0  an allow/deny entry (access_prefix_parse): "10.0.0.0/8", "fd00::/8"
 *   1  a listen or target address with a port range (rule_parse_range)
 *   2  a target address with a service name for the port (rule_parse_addr_for)
 *   3  a host-name target (rule_parse_named)
 * Whatever it parses must format back to text that parses to the same
 * thing; whatever it refuses must come with a sentence saying why.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "access.h"
#include "rule.h"

/* Far longer than any address, host name or CIDR. */
#define FUZZ_ADDR_MAX 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_prefix(const char *text)
{
	struct access_prefix p, q;
	char err[256] = "", buf[128];

	if (access_prefix_parse(text, &p, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();
		return;
	}
	if (p.family != AF_INET && p.family != AF_INET6)
		abort();
	if (p.len > (p.family == AF_INET ? 32u : 128u))
		abort();
	access_prefix_format(&p, buf, sizeof(buf));
	if (access_prefix_parse(buf, &q, err, sizeof(err)) < 0 || q.family != p.family ||
	    q.len != p.len || memcmp(q.addr, p.addr, sizeof(p.addr)) != 0)
		abort(); /* formatted, it reads back as something else */
}

static void check_range(const char *text, unsigned proto)
{
	struct sockaddr_storage ss, ss2;
	socklen_t len, len2;
	unsigned last = 0, last2 = 0;
	char err[256] = "", buf[RULE_ADDR_STRLEN];

	if (rule_parse_range(text, proto, &ss, &len, &last, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();
		return;
	}
	rule_format_addr((const struct sockaddr *)&ss, buf, sizeof(buf));
	if (last) {
		size_t n = strlen(buf);

		snprintf(buf + n, sizeof(buf) - n, "-%u", last);
	}
	if (rule_parse_range(buf, 0, &ss2, &len2, &last2, err, sizeof(err)) < 0 ||
	    !rule_addr_equal((struct sockaddr *)&ss, (struct sockaddr *)&ss2) || last != last2)
		abort();
}

static void check_addr_for(const char *text, unsigned proto)
{
	struct sockaddr_storage ss, ss2;
	socklen_t len, len2;
	char err[256] = "", buf[RULE_ADDR_STRLEN];

	if (rule_parse_addr_for(text, proto, &ss, &len, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();
		return;
	}
	rule_format_addr((const struct sockaddr *)&ss, buf, sizeof(buf));
	if (rule_parse_addr(buf, &ss2, &len2, err, sizeof(err)) < 0 ||
	    !rule_addr_equal((struct sockaddr *)&ss, (struct sockaddr *)&ss2))
		abort();
}

static void check_named(const char *text, unsigned proto)
{
	struct rule_target t;
	unsigned last = 0;
	char err[256] = "";

	memset(&t, 0, sizeof(t));
	if (rule_parse_named(text, proto, &t, &last, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();
		return;
	}
	if (!t.host[0] || !rule_host_name_valid(t.host) || memchr(t.text, '\0', sizeof(t.text)) == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned protos[] = { RULE_PROTO_TCP, RULE_PROTO_UDP, RULE_PROTO_BOTH,
					   RULE_PROTO_ANY };
	char text[FUZZ_ADDR_MAX + 1];
	unsigned proto;

	if (size < 1 || size > FUZZ_ADDR_MAX + 1)
		return -1;
	proto = protos[(data[0] >> 2) % 4];
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	switch (data[0] & 3) {
	case 0:
		check_prefix(text);
		break;
	case 1:
		check_range(text, proto);
		break;
	case 2:
		check_addr_for(text, proto);
		break;
	default:
		check_named(text, proto);
		break;
	}
	return 0;
}
