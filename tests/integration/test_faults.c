/*
 * Memory running out in the data path. The test daemon portfwd-faults
 * (tests/faults.c linked in place of src/alloc.c) fails allocations while
 * a file names them: "alloc" the data path's own (a TCP connection, a UDP
 * session), "event" libevent's (events, buffers). New clients are turned
 * away plainly, what is open goes on, nothing hangs or leaks (the
 * sanitizer builds check the exit), and all is served again after.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <libgen.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check_run.h"
#include "harness.h"

static char faults_file[128];

/* Fails the allocations KINDS names ("alloc", "event alloc"), or none. */
static void faults_set(const char *kinds)
{
	FILE *fp;

	if (!kinds) {
		unlink(faults_file);
		return;
	}
	fp = fopen(faults_file, "w");
	ck_assert_ptr_nonnull(fp);
	fprintf(fp, "%s\n", kinds);
	fclose(fp);
}

/* Starts portfwd-faults (PORTFWD_FAULTS_BIN, or tests/portfwd-faults
 * beside PORTFWD_BIN) on BODY, with no fault yet. */
static void start_faulty(struct hdaemon *d, const char *body)
{
	char bin[512], *copy = strdup(h_bin("PORTFWD_BIN", "build/default/portfwd"));
	const char *set = getenv("PORTFWD_FAULTS_BIN");
	char *saved = strdup(h_bin("PORTFWD_BIN", "build/default/portfwd"));

	if (set && *set)
		snprintf(bin, sizeof(bin), "%s", set);
	else
		snprintf(bin, sizeof(bin), "%s/tests/portfwd-faults", dirname(copy));
	free(copy);
	ck_assert_msg(access(bin, X_OK) == 0, "%s: not built (make tests)", bin);
	faults_set(NULL);
	setenv("PORTFWD_BIN", bin, 1);
	setenv("PORTFWD_FAULTS", faults_file, 1);
	h_start(d, body);
	setenv("PORTFWD_BIN", saved, 1);
	unsetenv("PORTFWD_FAULTS");
	free(saved);
}

/* How a new client of PORT ends within SECONDS: 1 served (its byte echoed),
 * 0 closed (EOF), -ECONNRESET and the like when reset, -ETIMEDOUT if
 * nothing happened. SILENT: it sends nothing (a byte the daemon did not
 * read would make any close a reset), and is never served. */
static int client_fate(unsigned port, double seconds, bool silent)
{
	int fd = h_connect("127.0.0.1", port), fate = -ETIMEDOUT;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c = 'f';

	/* A connect that fails says how (-ECONNREFUSED: no listener). */
	if (fd < 0)
		return -errno;
	if (!silent && send(fd, &c, 1, MSG_NOSIGNAL) != 1) {
		fate = -errno;
	} else if (poll(&p, 1, (int)(seconds * 1000)) == 1) {
		ssize_t n = recv(fd, &c, 1, 0);

		fate = n == 1 ? 1 : n == 0 ? 0 : -errno;
	}
	close(fd);
	return fate;
}

static unsigned start_tcp(struct hdaemon *d, struct h_backend *b)
{
	unsigned port = h_free_port(SOCK_STREAM, false);
	char conf[512];

	h_backend_start(b, H_ECHO, false);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"t\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 port, b->port);
	start_faulty(d, conf);
	return port;
}

/*
 * No memory for a new connection: the client is reset at once (a FIN
 * would look like an answer), the line says why, the connection open
 * before goes on, and new clients are served once memory is back.
 */
START_TEST(test_tcp_connection_without_memory)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_tcp(&d, &b);
	int open_fd = h_connect("127.0.0.1", port);

	ck_assert_int_eq(h_echo_exchange_open(open_fd, 10000, 1, 5, true), 0);
	faults_set("alloc");
	for (int i = 0; i < 5; i++) {
		int fate = client_fate(port, 5, true);

		ck_assert_msg(fate == -ECONNRESET, "client %d: %s", i,
			      fate == 1 ? "served" : fate == 0 ? "closed, not reset" : strerror(-fate));
	}
	ck_assert_int_eq(h_echo_exchange_open(open_fd, 100000, 2, 5, true), 0);
	faults_set(NULL);
	ck_assert_int_eq(client_fate(port, 5, false), 1);
	ck_assert_int_eq(h_log_count(&d, "tcp t: out of memory; resetting connections"), 1);
	close(open_fd);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "active", 0, 10), 0);
	ck_assert_int_eq(h_counter(&d, "t", "tcp", "accepted"), 2);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/*
 * No memory for libevent (events, buffers) while clients come: none of
 * them hangs (each is served or ended within the wait), the daemon stays
 * up, and once memory is back every connection is accounted for and new
 * ones are served. Leaks on these paths fail the sanitizer builds' exit.
 */
START_TEST(test_tcp_libevent_without_memory)
{
	struct hdaemon d;
	struct h_backend b;
	unsigned port = start_tcp(&d, &b);
	int served = 0, ended = 0, refused = 0;

	faults_set("event");
	for (int i = 0; i < 10; i++) {
		int fate = client_fate(port, 5, false);

		ck_assert_msg(fate != -ETIMEDOUT, "client %d neither served nor ended in 5 s", i);
		if (fate == 1)
			served++;
		else if (fate == -ECONNREFUSED)
			refused++; /* (its connect, not the daemon: counted apart) */
		else
			ended++;
	}
	faults_set(NULL);
	if (refused)
		fprintf(stderr, "libevent without memory: %d connects refused\n", refused);
	ck_assert_int_eq(served + ended + refused, 10);
	/* The out-of-memory paths ran: connections ended by the daemon. */
	ck_assert_int_gt(ended, 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(client_fate(port, 5, false), 1);
	ck_assert_int_eq(h_wait_counter(&d, "t", "tcp", "active", 0, 10), 0);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/*
 * No memory for a new UDP session: the client's datagrams are dropped and
 * counted, a session made before goes on, and new clients are served once
 * memory is back.
 */
START_TEST(test_udp_session_without_memory)
{
	enum { CLIENTS = 5 };
	struct hdaemon d;
	struct h_backend b;
	unsigned port = h_free_port(SOCK_DGRAM, false);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(0x7f000001) };
	char conf[512], buf[16];
	int old, fds[CLIENTS + 1];

	h_backend_start(&b, H_UDP_ECHO, false);
	snprintf(conf, sizeof(conf),
		 "rules: ( { name = \"u\"; proto = \"udp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 port, b.port);
	start_faulty(&d, conf);
	for (int i = 0; i <= CLIENTS; i++) {
		fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
		ck_assert_int_eq(connect(fds[i], (struct sockaddr *)&sin, sizeof(sin)), 0);
	}
	old = fds[CLIENTS];
	{
		struct pollfd p = { .fd = old, .events = POLLIN };

		ck_assert_int_eq(send(old, "o", 1, 0), 1);
		ck_assert_int_eq(poll(&p, 1, 5000), 1);
		ck_assert_int_eq(recv(old, buf, sizeof(buf), 0), 1);
	}
	faults_set("alloc");
	for (int i = 0; i < CLIENTS; i++) {
		struct pollfd p = { .fd = fds[i], .events = POLLIN };

		ck_assert_int_eq(send(fds[i], "n", 1, 0), 1);
		ck_assert_msg(poll(&p, 1, 300) == 0, "client %d was answered without a session", i);
	}
	{
		struct pollfd p = { .fd = old, .events = POLLIN };

		ck_assert_int_eq(send(old, "p", 1, 0), 1);
		ck_assert_int_eq(poll(&p, 1, 5000), 1);
		ck_assert_int_eq(recv(old, buf, sizeof(buf), 0), 1);
		ck_assert_int_eq(buf[0], 'p');
	}
	faults_set(NULL);
	ck_assert_int_eq(h_counter(&d, "u", "udp", "dropped_error"), CLIENTS);
	/* One line for them all (a minute's worth). */
	ck_assert_int_eq(h_log_count(&d, "udp u: cannot make a session for"), 1);
	ck_assert(h_log_contains(&d, "Cannot allocate memory; dropping new clients' datagrams"));
	ck_assert_int_eq(h_counter(&d, "u", "udp", "sessions_created"), 1);
	{
		struct pollfd p = { .fd = fds[0], .events = POLLIN };

		ck_assert_int_eq(send(fds[0], "q", 1, 0), 1);
		ck_assert_int_eq(poll(&p, 1, 5000), 1);
		ck_assert_int_eq(recv(fds[0], buf, sizeof(buf), 0), 1);
		ck_assert_int_eq(buf[0], 'q');
	}
	ck_assert_int_eq(h_counter(&d, "u", "udp", "sessions_created"), 2);
	for (int i = 0; i <= CLIENTS; i++)
		close(fds[i]);
	h_stop(&d);
	h_backend_stop(&b);
}
END_TEST

/* The file is named once, in the runner, and removed there after the
 * tests, whatever became of them (a failed test ends before its unlink). */
static void faults_name(void)
{
	snprintf(faults_file, sizeof(faults_file), "/tmp/portfwd-faults.%d", (int)getpid());
}

static void faults_remove(void)
{
	unlink(faults_file);
}

int main(void)
{
	Suite *s = suite_create("faults");
	TCase *tc = tcase_create("memory");

	tcase_add_unchecked_fixture(tc, faults_name, faults_remove);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_tcp_connection_without_memory);
	tcase_add_test(tc, test_tcp_libevent_without_memory);
	tcase_add_test(tc, test_udp_session_without_memory);
	suite_add_tcase(s, tc);
	return check_run(s);
}
