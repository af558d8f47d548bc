#include "sockets.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>

#include "rule.h"

/*
 * Why sock_diag first: it asks the kernel for the listening (TCP) and
 * unconnected (UDP) sockets only, in binary, where /proc/net/tcp prints
 * every socket of the namespace, established ones included, as text for
 * us to parse again. Measured with scripts/bench-ports (5,000 listening
 * TCP and 5,000 bound UDP sockets on loopback, 2-CPU AMD EPYC VM, medians
 * of 15 rounds): the tables alone (`ports 8080`, which matched nothing)
 * took 6.6 ms by sock_diag and 136 ms by /proc/net, the whole listing
 * 53 ms against 184 ms (ss -ltnup: 112 ms); and /proc/net grows with
 * established connections, which sock_diag leaves in the kernel. The rest
 * of the listing is the pass over /proc/PID/fd, a readlink per fd on the
 * machine, as ss does. /proc/net stays as
 * the fallback: a kernel without udp_diag, or a sandbox that refuses
 * AF_NETLINK.
 */

/* TCP's state numbers (include/net/tcp_states.h), which UDP reuses. */
enum { SOCKETS_TCP_LISTEN = 10, SOCKETS_TCP_CLOSE = 7 };

static bool sockets_wanted(const struct sockets_filter *f, unsigned proto, unsigned port)
{
	if (port == 0)
		return false; /* an unbound UDP socket */
	if (!f)
		return true;
	return (f->proto & proto) && port >= f->lo && port <= f->hi;
}

static int sockets_add(struct sockets_list *l, size_t *cap, const struct sockets_entry *e)
{
	if (l->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 256;
		struct sockets_entry *grown = realloc(l->e, ncap * sizeof(*grown));

		if (!grown)
			return -1;
		l->e = grown;
		*cap = ncap;
	}
	l->e[l->n++] = *e;
	return 0;
}

bool sockets_listening(const struct sockets_entry *e)
{
	return e->state == (e->proto == RULE_PROTO_TCP ? SOCKETS_TCP_LISTEN : SOCKETS_TCP_CLOSE);
}

/* The states a dump or a table read keeps (a bit per state number). */
static unsigned sockets_states(const struct sockets_filter *f, unsigned proto)
{
	if (f && f->all_states)
		return ~0u;
	return 1u << (proto == RULE_PROTO_TCP ? SOCKETS_TCP_LISTEN : SOCKETS_TCP_CLOSE);
}

/* The daemon asks this on its main loop (portinfo_holder): a kernel that
 * stops answering must not hold it, nor an endless dump. */
#define SOCKETS_DIAG_TIMEOUT 5
#define SOCKETS_DIAG_MAX_READS 100000

int sockets_diag_parse(const void *buf, size_t len, uint32_t seq, unsigned proto,
		       const struct sockets_filter *f, struct sockets_list *l, size_t *cap, bool *intr)
{
	size_t left = len;

	for (const struct nlmsghdr *h = buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
		const struct inet_diag_msg *m;
		struct sockets_entry s;

		if (h->nlmsg_seq != seq)
			continue;
		/* The kernel sets it on a message of a dump whose table
		 * changed under it: sockets may be missing or twice. */
		if (h->nlmsg_flags & NLM_F_DUMP_INTR)
			*intr = true;
		if (h->nlmsg_type == NLMSG_DONE) {
			int err = 0;

			/* Its payload is the dump's end: 0, or a negative errno
			 * when the dump failed part way. */
			if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(err)))
				memcpy(&err, NLMSG_DATA(h), sizeof(err));
			if (err < 0) {
				errno = -err;
				return -1;
			}
			if (*intr) {
				errno = EINTR;
				return -1;
			}
			return 1;
		}
		if (h->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *err = NLMSG_DATA(h);

			errno = h->nlmsg_len >= NLMSG_LENGTH(sizeof(*err)) && err->error < 0 ? -err->error
											   : EIO;
			return -1;
		}
		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
			continue;
		m = NLMSG_DATA(h);
		memset(&s, 0, sizeof(s));
		s.proto = proto;
		s.family = m->idiag_family;
		s.port = ntohs(m->id.idiag_sport);
		s.state = m->idiag_state;
		if (!sockets_wanted(f, proto, s.port) || (s.family != AF_INET && s.family != AF_INET6))
			continue;
		memcpy(&s.addr, m->id.idiag_src, s.family == AF_INET ? 4 : 16);
		s.inode = m->idiag_inode;
		s.uid = m->idiag_uid;
		if (sockets_add(l, cap, &s) < 0) {
			errno = ENOMEM;
			return -1;
		}
	}
	if (left > 0) {
		errno = EIO; /* bytes that are no whole message */
		return -1;
	}
	return 0;
}

/* One sock_diag dump: FAMILY's PROTO sockets in the states F selects.
 * Returns 0, or -1 with errno (the entries it added are taken back):
 * EOPNOTSUPP-like errors (ENOENT, EOPNOTSUPP, EINVAL, EPROTONOSUPPORT) when
 * the kernel has no dump for it, EAGAIN when it did not answer in time,
 * EINTR when the kernel marked the dump interrupted (NLM_F_DUMP_INTR),
 * the kernel's errno when the dump ended in an error, EMSGSIZE for a cut
 * message, EIO for a malformed one, ENOMEM. */
static int sockets_diag_dump(int fd, int family, unsigned proto, const struct sockets_filter *f,
			     struct sockets_list *l, size_t *cap, const struct timespec *deadline)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 r;
	} req;
	struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
	static uint32_t seq;
	size_t start = l->n;
	/* The kernel fills dump messages up to the reader's buffer (32 KiB at most). */
	long buf[65536 / sizeof(long)];
	bool intr = false;
	int e = 0;

	memset(&req, 0, sizeof(req));
	req.nlh.nlmsg_len = sizeof(req);
	req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nlh.nlmsg_seq = ++seq;
	req.r.sdiag_family = (uint8_t)family;
	req.r.sdiag_protocol = proto == RULE_PROTO_TCP ? IPPROTO_TCP : IPPROTO_UDP;
	req.r.idiag_states = sockets_states(f, proto);
	if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&nl, sizeof(nl)) < 0)
		return -1;
	for (unsigned reads = 0;; reads++) {
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;
		int rc;

		if (reads >= SOCKETS_DIAG_MAX_READS) {
			e = EIO; /* a dump that does not end */
			break;
		}
		/* The time left until DEADLINE bounds each read, so the dump
		 * as a whole ends by then, however the kernel trickles. */
		{
			struct timespec now;
			long left_us;
			struct timeval tv;

			clock_gettime(CLOCK_MONOTONIC, &now);
			left_us = (deadline->tv_sec - now.tv_sec) * 1000000L +
				  (deadline->tv_nsec - now.tv_nsec) / 1000;
			if (left_us <= 0) {
				e = EAGAIN;
				break;
			}
			tv.tv_sec = left_us / 1000000;
			tv.tv_usec = left_us % 1000000;
			if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
				e = EIO; /* unbounded reads: not at all */
				break;
			}
		}
		n = recvmsg(fd, &mh, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			e = n < 0 ? (errno == EWOULDBLOCK ? EAGAIN : errno) : EIO;
			break;
		}
		if (mh.msg_flags & MSG_TRUNC) {
			e = EMSGSIZE;
			break;
		}
		rc = sockets_diag_parse(buf, (size_t)n, req.nlh.nlmsg_seq, proto, f, l, cap, &intr);
		if (rc > 0)
			return 0;
		if (rc < 0) {
			e = errno;
			break;
		}
	}
	l->n = start;
	errno = e;
	return -1;
}

/* True for a dump error that means "this kernel has no such dump" (no
 * udp_diag, no IPv6), where the /proc/net table may still answer. */
static bool sockets_diag_unsupported(int e)
{
	return e == ENOENT || e == EOPNOTSUPP || e == EINVAL || e == EPROTONOSUPPORT ||
	       e == EAFNOSUPPORT;
}

/* One /proc/net table (PATH, of FAMILY). Returns 0, or -1 with errno. */
static int sockets_proc_table(const char *path, int family, unsigned proto,
			      const struct sockets_filter *f, struct sockets_list *l, size_t *cap)
{
	unsigned want = sockets_states(f, proto);
	char line[512], hex[40];
	FILE *fp = fopen(path, "re");

	if (!fp)
		return -1;
	if (!fgets(line, sizeof(line), fp)) { /* the header */
		fclose(fp);
		return 0;
	}
	while (fgets(line, sizeof(line), fp)) {
		struct sockets_entry s;
		unsigned state, uid;
		unsigned long ino;
		size_t words = family == AF_INET ? 1 : 4;

		memset(&s, 0, sizeof(s));
		if (sscanf(line, " %*d: %39[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x %*x:%*x %*x:%*x %*x %u %*d %lu",
			   hex, &s.port, &state, &uid, &ino) != 5 ||
		    strlen(hex) != words * 8 || state > 31 || !(want & (1u << state)) || !sockets_wanted(f, proto, s.port))
			continue;
		/* Each 32-bit word is printed as the host reads it from memory. */
		for (size_t w = 0; w < words; w++) {
			char part[9];
			uint32_t v;

			memcpy(part, hex + w * 8, 8);
			part[8] = '\0';
			v = (uint32_t)strtoul(part, NULL, 16);
			memcpy((unsigned char *)&s.addr + w * 4, &v, 4);
		}
		s.proto = proto;
		s.family = family;
		s.inode = ino;
		s.uid = uid;
		s.state = state;
		if (sockets_add(l, cap, &s) < 0) {
			fclose(fp);
			errno = ENOMEM;
			return -1;
		}
	}
	fclose(fp);
	return 0;
}

static int sockets_cmp(const void *a, const void *b)
{
	const struct sockets_entry *x = a, *y = b;
	int c;

	if (x->proto != y->proto)
		return x->proto < y->proto ? -1 : 1;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	if (x->family != y->family)
		return x->family == AF_INET ? -1 : 1;
	c = memcmp(&x->addr, &y->addr, sizeof(x->addr));
	if (c)
		return c;
	return x->inode < y->inode ? -1 : x->inode > y->inode;
}

int sockets_read(const struct sockets_filter *filter, struct sockets_list *l)
{
	static const struct {
		unsigned proto;
		int family;
		const char *path;
	} tables[] = {
		{ RULE_PROTO_TCP, AF_INET, "/proc/net/tcp" },
		{ RULE_PROTO_TCP, AF_INET6, "/proc/net/tcp6" },
		{ RULE_PROTO_UDP, AF_INET, "/proc/net/udp" },
		{ RULE_PROTO_UDP, AF_INET6, "/proc/net/udp6" },
	};
	const char *how = getenv("PORTFWD_SOCKETS");
	bool proc_only = how && strcmp(how, "proc") == 0;
	int fd = -1, read_any = 0, e = 0;
	size_t cap = 0;
	struct timespec deadline;

	memset(l, 0, sizeof(*l));
	/* SOCKETS_DIAG_TIMEOUT bounds all the dumps together, not each read:
	 * once it is spent, /proc/net answers. */
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += SOCKETS_DIAG_TIMEOUT;
	if (!proc_only)
		fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]) && e != ENOMEM; i++) {
		if (filter && !(filter->proto & tables[i].proto))
			continue;
		if (fd >= 0) {
			int rc = sockets_diag_dump(fd, tables[i].family, tables[i].proto, filter, l, &cap,
						   &deadline);

			/* An interrupted dump (the table changed while the
			 * kernel walked it) is asked once more. */
			if (rc < 0 && errno == EINTR)
				rc = sockets_diag_dump(fd, tables[i].family, tables[i].proto, filter, l,
						       &cap, &deadline);
			if (rc == 0) {
				read_any = 1;
				continue;
			}
			if (errno == ENOMEM) {
				e = ENOMEM;
				break;
			}
			/* A kernel without this dump, a sandbox, a timeout or a
			 * garbled reply, a dump that ended in an error or was
			 * interrupted twice: /proc/net says the same, slower. After
			 * a timeout or a cut message the socket may still carry
			 * the rest of that dump: the next ones need a fresh one. */
			if (!sockets_diag_unsupported(errno) && errno != EINTR) {
				close(fd);
				fd = -1;
			}
		}
		if (sockets_proc_table(tables[i].path, tables[i].family, tables[i].proto, filter, l,
				       &cap) == 0) {
			l->from_proc = true;
			l->proc_tables |= 1u << i;
			read_any = 1;
		} else if (errno == ENOENT && tables[i].family == AF_INET6) {
			/* No IPv6 in this kernel: nothing to read, but no
			 * proof that the tables can be read either. */
		} else {
			e = errno;
		}
	}
	if (fd >= 0)
		close(fd);
	if (!read_any || e == ENOMEM) {
		sockets_free(l);
		errno = e ? e : ENOENT;
		return -1;
	}
	if (l->n > 1)
		qsort(l->e, l->n, sizeof(l->e[0]), sockets_cmp);
	return 0;
}

struct sockets_ino {
	unsigned long inode;
	size_t entry; /* a socket is one entry (a dual-stack one is in the IPv6 table only) */
	UT_hash_handle hh;
};

char *sockets_text(const char *in, size_t len, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c >= 0x20 && c <= 0x7e && c != '\\') {
			if (o + 1 >= outlen)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 4 >= outlen)
				break;
			snprintf(out + o, 5, "\\x%02x", c);
			o += 4;
		}
	}
	out[o] = '\0';
	return out;
}

/* Reads /proc/PID/comm (relative to PROCFD) into COMM, as text. */
static int sockets_comm(int pidfd, char *comm, size_t len)
{
	char raw[SOCKETS_COMM_MAX];
	int fd = openat(pidfd, "comm", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, raw, sizeof(raw) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n < 0)
		n = 0;
	/* The kernel ends it with a newline, which the name cannot hold. */
	if (n > 0 && raw[n - 1] == '\n')
		n--;
	sockets_text(raw, (size_t)n, comm, len);
	return fd >= 0 ? 0 : -1;
}

int sockets_proc_comm(pid_t pid, char *comm, size_t len)
{
	char path[32];
	int dfd, rc;

	snprintf(path, sizeof(path), "/proc/%ld", (long)pid);
	dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		comm[0] = '\0';
		return -1;
	}
	rc = sockets_comm(dfd, comm, len);
	close(dfd);
	return rc;
}

/* Reads the value of KEY ("Uid", "PPid", "NSpid") in the status file of
 * the /proc/PID directory DIRFD into VAL. Returns 0, or -1 when there is
 * none. */
static int sockets_status_at(int dirfd, const char *key, char *val, size_t len)
{
	char line[512];
	size_t klen = strlen(key);
	int fd = openat(dirfd, "status", O_RDONLY | O_CLOEXEC);
	FILE *fp = fd >= 0 ? fdopen(fd, "r") : NULL;
	int rc = -1;

	if (!fp) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while (fgets(line, sizeof(line), fp))
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			const char *v = line + klen + 1;

			v += strspn(v, " \t");
			snprintf(val, len, "%.*s", (int)strcspn(v, "\n"), v);
			rc = 0;
			break;
		}
	fclose(fp);
	return rc;
}

int sockets_proc_status(pid_t pid, const char *key, char *val, size_t len)
{
	char path[32];
	int dfd, rc;

	snprintf(path, sizeof(path), "/proc/%ld", (long)pid);
	dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	rc = sockets_status_at(dfd, key, val, len);
	close(dfd);
	return rc;
}

/* The real uid on a "Uid:" line (real, effective, saved, fs). */
static int sockets_uid_of(const char *val, uid_t *uid)
{
	char *end;
	unsigned long u = strtoul(val, &end, 10);

	if (end == val)
		return -1;
	*uid = (uid_t)u;
	return 0;
}

int sockets_proc_uid(pid_t pid, uid_t *uid)
{
	char val[128];

	if (sockets_proc_status(pid, "Uid", val, sizeof(val)) < 0)
		return -1;
	return sockets_uid_of(val, uid);
}

/* The inode of the socket a /proc/PID/fd link names ("socket:[123]"), or 0. */
static unsigned long sockets_link_inode(int dirfd, const char *name)
{
	char link[64], *end;
	unsigned long ino;
	ssize_t n = readlinkat(dirfd, name, link, sizeof(link) - 1);

	if (n < 9 || memcmp(link, "socket:[", 8) != 0)
		return 0;
	link[n] = '\0';
	ino = strtoul(link + 8, &end, 10);
	return *end == ']' ? ino : 0;
}

bool sockets_proc_holds(pid_t pid, unsigned long inode)
{
	char path[40];
	struct dirent *fe;
	bool held = false;
	DIR *fds;

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	fds = opendir(path);
	if (!fds)
		return false;
	while (!held && (fe = readdir(fds)))
		held = fe->d_name[0] != '.' && sockets_link_inode(dirfd(fds), fe->d_name) == inode;
	closedir(fds);
	return held;
}

/* Adds PID to S's processes unless it is there. Returns 0, or -1 (ENOMEM). */
static int sockets_add_pid(struct sockets_entry *s, pid_t pid)
{
	pid_t *grown;

	for (unsigned i = 0; i < s->nprocs; i++)
		if (s->pids[i] == pid)
			return 0; /* the same socket through a second fd */
	grown = realloc(s->pids, (s->nprocs + 1) * sizeof(*grown));
	if (!grown)
		return -1;
	s->pids = grown;
	s->pids[s->nprocs++] = pid;
	return 0;
}

int sockets_join(struct sockets_list *l)
{
	struct sockets_ino *map = NULL, *items, *it;
	struct dirent *de;
	DIR *proc;
	int rc = 0, e = 0;

	l->procs_hidden = 0;
	for (size_t i = 0; i < l->n; i++) {
		free(l->e[i].pids);
		l->e[i].pids = NULL;
		l->e[i].nprocs = 0;
		l->e[i].pid = 0;
		l->e[i].comm[0] = '\0';
		l->e[i].have_puid = false;
	}
	if (l->n == 0)
		return 0;
	items = calloc(l->n, sizeof(*items));
	if (!items)
		return -1;
	for (size_t i = 0; i < l->n; i++) {
		HASH_FIND(hh, map, &l->e[i].inode, sizeof(unsigned long), it);
		if (it || l->e[i].inode == 0)
			continue;
		items[i].inode = l->e[i].inode;
		items[i].entry = i;
		HASH_ADD(hh, map, inode, sizeof(unsigned long), &items[i]);
	}
	proc = opendir("/proc");
	if (!proc) {
		rc = -1;
		e = errno;
		goto out;
	}
	while (rc == 0 && (de = readdir(proc))) {
		char comm[SOCKETS_COMM_MAX] = "", uidtext[128];
		bool have_comm = false, have_uid = false;
		uid_t puid = 0;
		struct dirent *fe;
		int pidfd, fdfd;
		DIR *fds;
		long pid;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		pid = strtol(de->d_name, NULL, 10);
		if (l->skip_pid && pid == (long)l->skip_pid)
			continue;
		pidfd = openat(dirfd(proc), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pidfd < 0)
			continue; /* gone since readdir */
		fdfd = openat(pidfd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fdfd < 0) {
			if (errno == EACCES || errno == EPERM)
				l->procs_hidden++;
			close(pidfd);
			continue;
		}
		fds = fdopendir(fdfd);
		if (!fds) {
			close(fdfd);
			close(pidfd);
			continue;
		}
		while ((fe = readdir(fds))) {
			struct sockets_entry *s;
			unsigned long ino;

			if (fe->d_name[0] == '.')
				continue;
			ino = sockets_link_inode(fdfd, fe->d_name);
			if (!ino)
				continue;
			HASH_FIND(hh, map, &ino, sizeof(ino), it);
			if (!it)
				continue;
			if (!have_comm) {
				sockets_comm(pidfd, comm, sizeof(comm));
				have_uid = sockets_status_at(pidfd, "Uid", uidtext, sizeof(uidtext)) == 0 &&
					   sockets_uid_of(uidtext, &puid) == 0;
				have_comm = true;
			}
			s = &l->e[it->entry];
			if (sockets_add_pid(s, (pid_t)pid) < 0) {
				rc = -1;
				e = ENOMEM;
				break;
			}
			if (s->pid == 0) {
				s->pid = (pid_t)pid;
				snprintf(s->comm, sizeof(s->comm), "%s", comm);
				s->have_puid = have_uid;
				s->puid = puid;
			}
		}
		closedir(fds);
		close(pidfd);
	}
	closedir(proc);
out:
	HASH_CLEAR(hh, map);
	free(items);
	if (rc < 0)
		errno = e;
	return rc;
}

void sockets_free(struct sockets_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->e[i].pids);
	free(l->e);
	memset(l, 0, sizeof(*l));
}

const char *sockets_addr_text(const struct sockets_entry *e, char *buf, size_t len)
{
	if (!inet_ntop(e->family, &e->addr, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

bool sockets_addr_wildcard(const struct sockets_entry *e)
{
	static const struct in6_addr any;

	return memcmp(&e->addr, &any, e->family == AF_INET ? 4 : 16) == 0;
}
