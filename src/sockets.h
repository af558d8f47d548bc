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
#include <stdint.h>
#include <sys/types.h>

/* /proc/PID/comm is at most 16 bytes with its NUL; as text (sockets_text)
 * each of its 15 bytes may take 4 characters. */
#define SOCKETS_COMM_MAX 64

struct sockets_entry {
	unsigned proto;      /* RULE_PROTO_TCP or RULE_PROTO_UDP */
	int family;          /* AF_INET or AF_INET6 */
	struct in6_addr addr; /* the local address; IPv4 in the first 4 bytes */
	unsigned port;
	unsigned long inode;
	uid_t uid;           /* the socket's owner, as the kernel has it */
	unsigned state;      /* the kernel's TCP state number (UDP: 7 unconnected, 1 connected) */
	pid_t pid;           /* a process with an fd on it; 0 when none is visible */
	unsigned nprocs;     /* how many processes have it (forked servers share one) */
	pid_t *pids;         /* all NPROCS of them, each once, PID first (malloc'd) */
	char comm[SOCKETS_COMM_MAX]; /* PID's name as sockets_text renders it */
	bool have_puid;      /* PUID was read */
	uid_t puid;          /* PID's real user (/proc/PID/status Uid), not the socket's */
};

struct sockets_list {
	struct sockets_entry *e;
	size_t n;
	bool from_proc;      /* read from /proc/net (sock_diag was not available) */
	/* Which tables came from /proc/net: a bit each for TCP/IPv4 (1),
	 * TCP/IPv6 (2), UDP/IPv4 (4), UDP/IPv6 (8). */
	unsigned proc_tables;
	unsigned procs_hidden; /* processes whose fds this user could not read */
	pid_t skip_pid;      /* sockets_join leaves this process out (0: none) */
};

/* Which sockets to read: a protocol (RULE_PROTO_* bits) and ports LO-HI. */
struct sockets_filter {
	unsigned proto;
	unsigned lo, hi;
	/* Also the sockets that hold a port without listening: TCP in any
	 * other state (bound, connected, TIME_WAIT), connected UDP. */
	bool all_states;
};

/* TCP's TIME_WAIT state number, for sockets_entry.state. */
#define SOCKETS_TCP_TIME_WAIT 6

/* The listening state of ENTRY's protocol: TCP LISTEN, UDP unconnected. */
bool sockets_listening(const struct sockets_entry *e);

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
 * One buffer of a sock_diag dump (LEN bytes of BUF, as recvmsg got it) for
 * request SEQ of PROTO: adds the sockets F selects to L (CAP: its room),
 * and sets *INTR when a message says the dump was interrupted
 * (NLM_F_DUMP_INTR). Returns 0 when more is to come; 1 at the dump's end
 * (NLMSG_DONE); -1 with errno: the kernel's, when the dump ended in an
 * error (NLMSG_DONE's payload, NLMSG_ERROR), EINTR when it ended but was
 * interrupted, EIO for bytes that are no message, ENOMEM. sockets_read's
 * part, apart for the tests.
 */
int sockets_diag_parse(const void *buf, size_t len, uint32_t seq, unsigned proto,
		       const struct sockets_filter *f, struct sockets_list *l, size_t *cap, bool *intr);

/*
 * Writes the LEN bytes of IN as printable ASCII into OUT (OUTLEN bytes, at
 * least 1): bytes 0x20-0x7e but '\' as they are, every other byte (and
 * '\') as "\xNN", so a process name can neither move a terminal's cursor
 * nor break a JSON string. Cut at a whole escape when OUT is short.
 * Returns OUT.
 */
char *sockets_text(const char *in, size_t len, char *out, size_t outlen);

/* Reads PID's name (/proc/PID/comm) as sockets_text renders it into COMM
 * (SOCKETS_COMM_MAX bytes); "" when it cannot be read. Returns 0 or -1. */
int sockets_proc_comm(pid_t pid, char *comm, size_t len);

/* Reads the value of KEY ("Uid", "PPid", "NSpid") in /proc/PID/status, as
 * the kernel wrote it, into VAL. Returns 0, or -1 (no such process or
 * field). */
int sockets_proc_status(pid_t pid, const char *key, char *val, size_t len);

/* PID's real user (the first of /proc/PID/status "Uid:", which a
 * non-dumpable process's /proc directory owner is not). Returns 0 or -1. */
int sockets_proc_uid(pid_t pid, uid_t *uid);

/* True if PID has an fd on the socket INODE now (/proc/PID/fd). */
bool sockets_proc_holds(pid_t pid, unsigned long inode);

/*
 * Finds the processes holding L's sockets with one pass over /proc/PID/fd,
 * and their names (/proc/PID/comm). A process whose fds this user may not
 * read (another user's, without root) is counted in L->procs_hidden and
 * its sockets keep pid 0. Every process with an fd on a socket is in its
 * PIDS, once. Returns 0, or -1 with errno if /proc cannot be read or
 * memory runs out.
 */
int sockets_join(struct sockets_list *l);

void sockets_free(struct sockets_list *l);

/* Writes the entry's address as text: "0.0.0.0", "127.0.0.1", "::", "::1". */
const char *sockets_addr_text(const struct sockets_entry *e, char *buf, size_t len);

/* True if the entry's address is 0.0.0.0 or ::. */
bool sockets_addr_wildcard(const struct sockets_entry *e);

#endif
