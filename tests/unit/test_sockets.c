/*
 * The machine's sockets (sockets.c): a listener and a bound UDP socket of
 * the test's own, on IPv4 and IPv6 loopback, found by netlink sock_diag
 * and by /proc/net alike, with the same inode and owner, and joined to
 * this process; a connected UDP socket and an unbound one are not listed.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rule.h"
#include "sockets.h"
#include "check_run.h"

/* A socket of TYPE bound on HOST (port 0: the kernel's pick); *PORT gets it. */
static int bound(int family, int type, const char *host, unsigned *port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = socket(family, type, 0);

	memset(&ss, 0, sizeof(ss));
	ck_assert_int_ge(fd, 0);
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		inet_pton(AF_INET, host, &in->sin_addr);
		len = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, host, &in6->sin6_addr);
		len = sizeof(*in6);
	}
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&ss, len), 0);
	if (type == SOCK_STREAM)
		ck_assert_int_eq(listen(fd, 4), 0);
	len = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	*port = rule_addr_port((struct sockaddr *)&ss);
	return fd;
}

static unsigned long inode_of(int fd)
{
	struct stat st;

	ck_assert_int_eq(fstat(fd, &st), 0);
	return (unsigned long)st.st_ino;
}

/* The entry for PROTO and PORT in L, or NULL. */
static const struct sockets_entry *find(const struct sockets_list *l, unsigned proto, unsigned port)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->e[i].proto == proto && l->e[i].port == port)
			return &l->e[i];
	return NULL;
}

static void check_read(bool proc)
{
	unsigned tcp4, udp4, tcp6, udp6, conn;
	int fds[5];
	struct sockets_list l;
	const struct sockets_entry *e;
	char addr[64];
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9) };

	if (proc)
		setenv("PORTFWD_SOCKETS", "proc", 1);
	else
		unsetenv("PORTFWD_SOCKETS");
	fds[0] = bound(AF_INET, SOCK_STREAM, "127.0.0.1", &tcp4);
	fds[1] = bound(AF_INET, SOCK_DGRAM, "127.0.0.1", &udp4);
	fds[2] = bound(AF_INET6, SOCK_STREAM, "::1", &tcp6);
	fds[3] = bound(AF_INET6, SOCK_DGRAM, "::1", &udp6);
	/* A connected UDP socket is not one that waits for datagrams. */
	fds[4] = bound(AF_INET, SOCK_DGRAM, "127.0.0.1", &conn);
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	ck_assert_int_eq(connect(fds[4], (struct sockaddr *)&to, sizeof(to)), 0);

	ck_assert_int_eq(sockets_read(NULL, &l), 0);
	if (proc)
		ck_assert_uint_eq(l.proc_tables, 15);
	else {
		/* TCP has had sock_diag on every kernel since 3.x: its tables
		 * must not fall back. UDP may (a kernel without udp_diag):
		 * the documented fallback reads those from /proc/net. */
		ck_assert_msg(!(l.proc_tables & 3), "TCP read from /proc/net (tables %#x)", l.proc_tables);
		if (l.proc_tables)
			fprintf(stderr, "test_sock_diag: UDP tables %#x from /proc/net (no udp_diag?): the rest still checked\n",
				l.proc_tables);
		ck_assert_int_eq(l.from_proc, l.proc_tables != 0);
	}
	ck_assert_int_eq(sockets_join(&l), 0);
	e = find(&l, RULE_PROTO_TCP, tcp4);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->family, AF_INET);
	ck_assert_str_eq(sockets_addr_text(e, addr, sizeof(addr)), "127.0.0.1");
	ck_assert_uint_eq(e->inode, inode_of(fds[0]));
	ck_assert_uint_eq(e->uid, geteuid());
	ck_assert_int_eq(e->pid, getpid());
	ck_assert_uint_eq(e->nprocs, 1);
	e = find(&l, RULE_PROTO_UDP, udp4);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->inode, inode_of(fds[1]));
	ck_assert_int_eq(e->pid, getpid());
	e = find(&l, RULE_PROTO_TCP, tcp6);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(sockets_addr_text(e, addr, sizeof(addr)), "::1");
	ck_assert(!sockets_addr_wildcard(e));
	e = find(&l, RULE_PROTO_UDP, udp6);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->inode, inode_of(fds[3]));
	ck_assert_ptr_null(find(&l, RULE_PROTO_UDP, conn));
	/* Sorted by protocol, then port. */
	for (size_t i = 1; i < l.n; i++)
		ck_assert(l.e[i - 1].proto < l.e[i].proto ||
			  (l.e[i - 1].proto == l.e[i].proto && l.e[i - 1].port <= l.e[i].port));
	sockets_free(&l);

	/* A filter: one protocol, one port. */
	{
		struct sockets_filter f = { .proto = RULE_PROTO_UDP, .lo = udp4, .hi = udp4 };

		ck_assert_int_eq(sockets_read(&f, &l), 0);
		ck_assert_uint_eq(l.n, 1);
		ck_assert_uint_eq(l.e[0].port, udp4);
		ck_assert_uint_eq(l.e[0].proto, RULE_PROTO_UDP);
		sockets_free(&l);
	}
	for (int i = 0; i < 5; i++)
		close(fds[i]);
	unsetenv("PORTFWD_SOCKETS");
}

START_TEST(test_sock_diag)
{
	check_read(false);
}
END_TEST

START_TEST(test_proc_net)
{
	check_read(true);
}
END_TEST

/* Names are shown as printable ASCII: control bytes, bytes above 0x7e
 * (a UTF-8 sequence the kernel cut at 15 bytes) and the backslash escaped. */
START_TEST(test_text)
{
	char out[SOCKETS_COMM_MAX], small[8];

	ck_assert_str_eq(sockets_text("nginx", 5, out, sizeof(out)), "nginx");
	ck_assert_str_eq(sockets_text("a\x1b[2Jb\rc", 8, out, sizeof(out)), "a\\x1b[2Jb\\x0dc");
	ck_assert_str_eq(sockets_text("caf\xc3", 4, out, sizeof(out)), "caf\\xc3");
	ck_assert_str_eq(sockets_text("a\\b", 3, out, sizeof(out)), "a\\x5cb");
	ck_assert_str_eq(sockets_text("x\0y", 3, out, sizeof(out)), "x\\x00y");
	/* Cut at a whole escape, never inside one. */
	ck_assert_str_eq(sockets_text("abcd\x01", 5, small, sizeof(small)), "abcd");
	/* The longest name fits SOCKETS_COMM_MAX. */
	ck_assert_uint_eq(strlen(sockets_text("\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e",
					      15, out, sizeof(out))), 60);
}
END_TEST

/* A socket shared by a forked child: both processes are its holders, each
 * once (a second fd in one process does not count twice), with the
 * child's name read through /proc as text; skip_pid leaves one out. */
START_TEST(test_join_all_holders)
{
	unsigned port;
	int fd = bound(AF_INET, SOCK_STREAM, "127.0.0.1", &port), dup_fd = dup(fd), ready[2];
	struct sockets_filter f = { .proto = RULE_PROTO_TCP, .lo = port, .hi = port };
	struct sockets_list l;
	const struct sockets_entry *e;
	char comm[SOCKETS_COMM_MAX], c;
	bool child_seen = false;
	pid_t child;

	ck_assert_int_eq(pipe(ready), 0);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		prctl(PR_SET_NAME, "pf\x1b[31m\r\xc3");
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		alarm(30);
		pause();
		_exit(0);
	}
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	ck_assert_int_eq(sockets_read(&f, &l), 0);
	ck_assert_int_eq(sockets_join(&l), 0);
	e = find(&l, RULE_PROTO_TCP, port);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->nprocs, 2);
	for (unsigned i = 0; i < e->nprocs; i++)
		child_seen |= e->pids[i] == child;
	ck_assert(child_seen);
	ck_assert(e->pids[0] == getpid() || e->pids[1] == getpid());
	ck_assert(sockets_proc_holds(child, e->inode));
	ck_assert_int_eq(sockets_proc_comm(child, comm, sizeof(comm)), 0);
	ck_assert_str_eq(comm, "pf\\x1b[31m\\x0d\\xc3");
	sockets_free(&l);

	ck_assert_int_eq(sockets_read(&f, &l), 0);
	l.skip_pid = getpid();
	ck_assert_int_eq(sockets_join(&l), 0);
	ck_assert_uint_eq(l.e[0].nprocs, 1);
	ck_assert_int_eq(l.e[0].pid, child);
	ck_assert_str_eq(l.e[0].comm, "pf\\x1b[31m\\x0d\\xc3");
	sockets_free(&l);

	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	ck_assert(!sockets_proc_holds(child, inode_of(fd)));
	close(fd);
	close(dup_fd);
	close(ready[0]);
	close(ready[1]);
}
END_TEST

/* With all_states, sockets that hold a port without listening are read
 * too (a connection's both ends), each with its state; without, not. */
START_TEST(test_all_states)
{
	unsigned port;
	int lfd = bound(AF_INET, SOCK_STREAM, "127.0.0.1", &port), cfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct sockets_filter f = { .proto = RULE_PROTO_TCP, .lo = port, .hi = port, .all_states = true };
	struct sockets_list l;
	size_t listening = 0, other = 0;

	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	ck_assert_int_eq(connect(cfd, (struct sockaddr *)&to, sizeof(to)), 0);
	for (int proc = 0; proc < 2; proc++) {
		if (proc)
			setenv("PORTFWD_SOCKETS", "proc", 1);
		listening = other = 0;
		ck_assert_int_eq(sockets_read(&f, &l), 0);
		for (size_t i = 0; i < l.n; i++) {
			if (sockets_listening(&l.e[i]))
				listening++;
			else
				other++;
		}
		/* The listener, and the accepted end (local port PORT). */
		ck_assert_uint_eq(listening, 1);
		ck_assert_uint_ge(other, 1);
		sockets_free(&l);
	}
	unsetenv("PORTFWD_SOCKETS");
	f.all_states = false;
	ck_assert_int_eq(sockets_read(&f, &l), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert(sockets_listening(&l.e[0]));
	sockets_free(&l);
	close(cfd);
	close(lfd);
}
END_TEST

/* A dump's end: NLMSG_DONE's payload is its error (a negative errno) and
 * NLM_F_DUMP_INTR on any message means the walk was interrupted; neither is
 * taken for a complete table. */
START_TEST(test_diag_done)
{
	struct {
		struct nlmsghdr h;
		int err;
	} done = { { NLMSG_LENGTH(sizeof(int)), NLMSG_DONE, NLM_F_MULTI, 7, 0 }, 0 };
	struct {
		struct nlmsghdr h;
		struct inet_diag_msg m;
		struct nlmsghdr h2;
		int err;
	} intr;
	struct sockets_list l;
	size_t cap = 0;
	bool flag = false;

	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(sockets_diag_parse(&done, sizeof(done), 7, RULE_PROTO_TCP, NULL, &l, &cap, &flag), 1);
	ck_assert(!flag);
	/* Another request's message is not this one's end. */
	ck_assert_int_eq(sockets_diag_parse(&done, sizeof(done), 8, RULE_PROTO_TCP, NULL, &l, &cap, &flag), 0);
	done.err = -EPERM;
	errno = 0;
	ck_assert_int_eq(sockets_diag_parse(&done, sizeof(done), 7, RULE_PROTO_TCP, NULL, &l, &cap, &flag), -1);
	ck_assert_int_eq(errno, EPERM);

	memset(&intr, 0, sizeof(intr));
	intr.h = (struct nlmsghdr){ NLMSG_LENGTH(sizeof(intr.m)), SOCK_DIAG_BY_FAMILY,
				    NLM_F_MULTI | NLM_F_DUMP_INTR, 7, 0 };
	intr.m.idiag_family = AF_INET;
	intr.m.idiag_state = 10;
	intr.m.id.idiag_sport = htons(8080);
	intr.m.idiag_inode = 1234;
	intr.h2 = (struct nlmsghdr){ NLMSG_LENGTH(sizeof(int)), NLMSG_DONE, NLM_F_MULTI, 7, 0 };
	ck_assert_uint_eq(sizeof(intr), NLMSG_ALIGN(intr.h.nlmsg_len) + intr.h2.nlmsg_len);
	errno = 0;
	ck_assert_int_eq(sockets_diag_parse(&intr, sizeof(intr), 7, RULE_PROTO_TCP, NULL, &l, &cap, &flag), -1);
	ck_assert_int_eq(errno, EINTR);
	ck_assert(flag);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_uint_eq(l.e[0].port, 8080);
	sockets_free(&l);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sockets");
	TCase *tc = tcase_create("sockets");

	tcase_add_test(tc, test_sock_diag);
	tcase_add_test(tc, test_proc_net);
	tcase_add_test(tc, test_text);
	tcase_add_test(tc, test_join_all_holders);
	tcase_add_test(tc, test_all_states);
	tcase_add_test(tc, test_diag_done);
	suite_add_tcase(s, tc);
	return check_run(s);
}
