/*
 * The machine's sockets (sockets.c): a listener and a bound UDP socket of
 * the test's own, on IPv4 and IPv6 loopback, found by netlink sock_diag
 * and by /proc/net alike, with the same inode and owner, and joined to
 * this process; a connected UDP socket and an unbound one are not listed.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
	ck_assert_int_eq(l.from_proc, proc);
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
		struct sockets_filter f = { RULE_PROTO_UDP, udp4, udp4 };

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

int main(void)
{
	Suite *s = suite_create("sockets");
	TCase *tc = tcase_create("sockets");

	tcase_add_test(tc, test_sock_diag);
	tcase_add_test(tc, test_proc_net);
	suite_add_tcase(s, tc);
	return check_run(s);
}
