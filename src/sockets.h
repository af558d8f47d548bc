/*
 * The machine's sockets: the listening TCP sockets and bound (unconnected)
 * UDP sockets of this network namespace, read from the kernel's tables,
 * and the processes that hold them, found through /proc. portfwdctl's
 * ports, who and free ask this, as does the daemon's "address already in
 * use" message (portinfo_holder). Nothing here resolves a name.
 */
#ifndef PORTFWD_SOCKETS_H
#define PORTFWD_SOCKETS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* /proc/PID/comm is at most 16 bytes with its NUL. */
#define SOCKETS_COMM_MAX 16

struct sockets_entry {
	unsigned proto;      /* RULE_PROTO_TCP or RULE_PROTO_UDP */
	int family;          /* AF_INET or AF_INET6 */
	struct in6_addr addr; /* the local address; IPv4 in the first 4 bytes */
	unsigned port;
	unsigned long inode;
	uid_t uid;           /* the socket's owner, as the kernel has it */
	pid_t pid;           /* a process with an fd on it; 0 when none is visible */
	unsigned nprocs;     /* how many processes have it (forked servers share one) */
	char comm[SOCKETS_COMM_MAX];
};

struct sockets_list {
	struct sockets_entry *e;
	size_t n;
	bool from_proc;      /* read from /proc/net (sock_diag was not available) */
	unsigned procs_hidden; /* processes whose fds this user could not read */
};

/* Which sockets to read: a protocol (RULE_PROTO_* bits) and ports LO-HI. */
struct sockets_filter {
	unsigned proto;
	unsigned lo, hi;
};

/*
 * Reads the sockets that FILTER (NULL: all of them) selects into L (start
 * from { 0 }; free with sockets_free), sorted by protocol, port, family
 * and address, and without their processes. It asks netlink sock_diag, as
 * ss(8) does, and reads /proc/net/{tcp,udp}{,6} for a protocol or family
 * whose dump the kernel refuses (or when the environment has
 * PORTFWD_SOCKETS=proc, for comparing the two). Returns 0, or -1 with
 * errno when neither can be read.
 */
int sockets_read(const struct sockets_filter *filter, struct sockets_list *l);

/*
 * Finds the processes holding L's sockets with one pass over /proc/PID/fd,
 * and their names (/proc/PID/comm). A process whose fds this user may not
 * read (another user's, without root) is counted in L->procs_hidden and
 * its sockets keep pid 0. Returns 0, or -1 if /proc cannot be read.
 */
int sockets_join(struct sockets_list *l);

void sockets_free(struct sockets_list *l);

/* Writes the entry's address as text: "0.0.0.0", "127.0.0.1", "::", "::1". */
const char *sockets_addr_text(const struct sockets_entry *e, char *buf, size_t len);

/* True if the entry's address is 0.0.0.0 or ::. */
bool sockets_addr_wildcard(const struct sockets_entry *e);

#endif
