#include "sysports.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYSPORTS_RANGE "/proc/sys/net/ipv4/ip_local_port_range"
#define SYSPORTS_RESERVED "/proc/sys/net/ipv4/ip_local_reserved_ports"
#define SYSPORTS_UNPRIV "/proc/sys/net/ipv4/ip_unprivileged_port_start"

/* The longest reserved list the kernel can write: every other port,
 * "1,3,5,...,65535", is under 200 KB. */
#define SYSPORTS_FILE_MAX (256 * 1024)

static const char *sysports_range_path = SYSPORTS_RANGE;
static const char *sysports_reserved_path = SYSPORTS_RESERVED;
static const char *sysports_unpriv_path = SYSPORTS_UNPRIV;

void sysports_set_paths(const char *range, const char *reserved, const char *unpriv)
{
	sysports_range_path = range ? range : SYSPORTS_RANGE;
	sysports_reserved_path = reserved ? reserved : SYSPORTS_RESERVED;
	sysports_unpriv_path = unpriv ? unpriv : SYSPORTS_UNPRIV;
}

/* PATH's text (at most SYSPORTS_FILE_MAX bytes, NUL-terminated; free it),
 * or NULL when it cannot be read. */
static char *sysports_slurp(const char *path)
{
	FILE *fp = fopen(path, "re");
	char *buf;
	size_t n;

	if (!fp)
		return NULL;
	buf = malloc(SYSPORTS_FILE_MAX + 1);
	if (!buf) {
		fclose(fp);
		return NULL;
	}
	n = fread(buf, 1, SYSPORTS_FILE_MAX, fp);
	if (ferror(fp)) {
		free(buf);
		fclose(fp);
		return NULL;
	}
	fclose(fp);
	buf[n] = '\0';
	return buf;
}

/* A port number at *P (1-5 digits, at most 65535), advancing *P past it.
 * Returns it, or -1. */
static long sysports_number(const char **p)
{
	long v = 0;
	int digits = 0;

	while (isdigit((unsigned char)**p) && digits < 6) {
		v = v * 10 + (**p - '0');
		(*p)++;
		digits++;
	}
	return digits == 0 || digits > 5 || v > 65535 ? -1 : v;
}

/* Marks the ports of TEXT ("8080,9148-9150\n", as the kernel writes
 * ip_local_reserved_ports) in SP; stops at the first thing it does not
 * understand, keeping what came before. */
static void sysports_parse_reserved(struct sysports *sp, const char *text)
{
	const char *p = text;
	size_t len;

	while (*p == ' ' || *p == '\t')
		p++;
	len = strcspn(p, "\n");
	while (len && isspace((unsigned char)p[len - 1]))
		len--;
	if (len < sizeof(sp->reserved_text)) {
		memcpy(sp->reserved_text, p, len);
		sp->reserved_text[len] = '\0';
	} else {
		sp->reserved_long = true;
	}
	while (*p && *p != '\n') {
		long lo = sysports_number(&p), hi = lo;

		if (lo < 0)
			return;
		if (*p == '-') {
			p++;
			hi = sysports_number(&p);
			if (hi < lo)
				return;
		}
		for (long port = lo; port <= hi; port++)
			sp->reserved[port / 8] |= (uint8_t)(1u << (port % 8));
		if (*p != ',')
			return;
		p++;
	}
}

void sysports_read(struct sysports *sp)
{
	unsigned lo, hi, start;
	char *text;

	memset(sp, 0, sizeof(*sp));
	sp->unpriv_start = 1024;
	text = sysports_slurp(sysports_range_path);
	if (text && sscanf(text, "%u %u", &lo, &hi) == 2 && lo >= 1 && lo <= hi && hi <= 65535) {
		sp->have_range = true;
		sp->eph_lo = lo;
		sp->eph_hi = hi;
	}
	free(text);
	text = sysports_slurp(sysports_reserved_path);
	if (text)
		sysports_parse_reserved(sp, text);
	free(text);
	text = sysports_slurp(sysports_unpriv_path);
	if (text && sscanf(text, "%u", &start) == 1 && start <= 65535)
		sp->unpriv_start = start;
	free(text);
}

bool sysports_reserved(const struct sysports *sp, unsigned port)
{
	return port <= 65535 && (sp->reserved[port / 8] >> (port % 8)) & 1u;
}

unsigned sysports_ephemeral_overlap(const struct sysports *sp, unsigned lo, unsigned hi,
				    unsigned *first)
{
	unsigned n = 0;

	*first = 0;
	if (!sp->have_range || hi < sp->eph_lo || lo > sp->eph_hi)
		return 0;
	if (lo < sp->eph_lo)
		lo = sp->eph_lo;
	if (hi > sp->eph_hi)
		hi = sp->eph_hi;
	for (unsigned port = lo; port <= hi; port++) {
		if (sysports_reserved(sp, port))
			continue;
		if (!n++)
			*first = port;
	}
	return n;
}

bool sysports_port_privileged(const struct sysports *sp, unsigned port)
{
	return port < sp->unpriv_start;
}
