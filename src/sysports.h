/*
 * The kernel's port settings, as /proc/sys/net/ipv4 has them now (sysctl
 * changes them at any time, so they are read whenever they are asked for):
 *  - ip_local_port_range: the ephemeral range, whose ports the kernel hands
 *    out as the local port of outgoing connections (32768-60999 by default);
 *  - ip_local_reserved_ports: ports it never hands out, though in that range;
 *  - ip_unprivileged_port_start: binding a port below it needs root or
 *    CAP_NET_BIND_SERVICE (1024 by default; 0 in many containers).
 * Port knowledge that portfwd's warnings use (exposure.h); no daemon types.
 */
#ifndef PORTFWD_SYSPORTS_H
#define PORTFWD_SYSPORTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for the reserved list as the kernel writes it, for a suggestion
 * that adds a port to it; a longer list is not repeated. */
#define SYSPORTS_RESERVED_TEXT_MAX 128

struct sysports {
	bool have_range; /* ip_local_port_range was read */
	unsigned eph_lo; /* the ephemeral range, when have_range */
	unsigned eph_hi;
	uint8_t reserved[65536 / 8]; /* bit N: port N is reserved */
	/* The list as read ("8080,9148-9150", "" for none), or "" with
	 * reserved_long set when it does not fit. */
	char reserved_text[SYSPORTS_RESERVED_TEXT_MAX];
	bool reserved_long;
	unsigned unpriv_start; /* ip_unprivileged_port_start; 1024 when unreadable */
};

/* Reads the three settings into SP. What cannot be read is left out: no
 * range (have_range false), no reserved port, and 1024 as the start. */
void sysports_read(struct sysports *sp);

/* True if PORT is in SP's reserved list. */
bool sysports_reserved(const struct sysports *sp, unsigned port);

/*
 * The ports of LO-HI (a listen port, or a range of them) that SP's kernel
 * may hand to outgoing connections: in the ephemeral range and not
 * reserved. Returns how many, and the first in *FIRST (0 when none).
 */
unsigned sysports_ephemeral_overlap(const struct sysports *sp, unsigned lo, unsigned hi,
				    unsigned *first);

/* True if binding PORT needs root or CAP_NET_BIND_SERVICE on SP's kernel. */
bool sysports_port_privileged(const struct sysports *sp, unsigned port);

/* For tests: the files to read instead of /proc/sys/net/ipv4's
 * ip_local_port_range, ip_local_reserved_ports and
 * ip_unprivileged_port_start (NULL: the real one). */
void sysports_set_paths(const char *range, const char *reserved, const char *unpriv);

#endif
