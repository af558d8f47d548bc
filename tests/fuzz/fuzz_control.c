/*
 * libFuzzer harness: the control protocol end to end, against a daemon
 * built in-process once: the input is the byte stream one client sends on
 * the control socket (request lines, "--bytes N" payloads, anything), and
 * it reaches the real control server (control.c: framing, the length and
 * NUL limits, control characters, --json and --bytes, permission, usage),
 * the command table (ctl_proto.c) and every handler (commands.c) over a
 * real Unix socket, after which the harness reads every reply until the
 * daemon closes the connection.
 *
 * The daemon (daemon_start on a small configuration: four rules on
 * loopback, TCP, UDP, both and a port range, one worker, per-source limits
 * on two of them) runs in a private network namespace that the harness
 * enters at start (as root, or in a user namespace of its own), so that
 * it binds and connects only there; it exits with a message if it cannot.
 * Its one worker thread runs as in the daemon (kill, ban and disable wait
 * for it); the main loop runs only while an input is answered. The
 * configuration file and the control socket live in a temporary
 * directory, removed at exit, or by a small child process if the harness
 * dies. Inputs over 8 KiB are not run (the slowest requests, reload and
 * check, stay far under -timeout). FUZZ_CONTROL_VERBOSE=1 prints every
 * reply, to look at an input. Before each
 * input the harness keeps one TCP connection and one UDP session going
 * through the daemon (to backends of its own), so that connections, kill,
 * ban --kill and sources have something to show and end. After each input
 * it lifts every ban and enables every rule again: the state evolves
 * (generations, counters, the per-source table) but never grows without
 * bound.
 *
 * Checked (abort() on any failure):
 *  - the reply stream is well-formed per ctl_proto.h: lines ending in LF,
 *    no NUL, every body line starting with "." stuffed, end lines exactly
 *    ".ok" or ".error MESSAGE" with a message, nothing after the last
 *    end line;
 *  - the replies are the requests' in number: a model of the framing
 *    written here from ctl_proto.h and control.c's comments (LF or CRLF,
 *    CTL_REQUEST_MAX, empty lines answer nothing, payload bytes are not
 *    requests, a refused request that announced --bytes ends the
 *    connection, as does a line too long or with a NUL) says how many
 *    replies there must be and which ones are refusals: an unknown or
 *    ambiguous command, control characters, too many words, a bad
 *    --bytes, a payload where none is taken, the wrong number of
 *    arguments: each gets an error end line and no body;
 *  - a command the daemon never runs (ports, who, free) and "hello" with
 *    another version get an error, "help" and "hello 1" get ".ok"; with
 *    --json, the body of every command but hello is empty or one line
 *    that parses as JSON;
 *  - and nothing crashes, hangs or leaks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "bans.h"
#include "clock.h"
#include "config.h"
#include "control.h"
#include "ctl_proto.h"
#include "daemon.h"
#include "forward.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Room for a request over CTL_REQUEST_MAX and a payload; small enough
 * that an input of the slowest requests (reload, check) stays well under
 * libFuzzer's -timeout. */
#define FUZZ_CONTROL_MAX_INPUT 8192
/* The replies to one input, at most (a runaway is a finding). */
#define FUZZ_CONTROL_MAX_OUTPUT (64 * 1024 * 1024)
/* How long the traffic set-up waits for the daemon, each step. */
#define TRAFFIC_WAIT_MS 200

#define PORT_TCP 20001
#define PORT_UDP 20002
#define PORT_TCP_TARGET 20101
#define PORT_UDP_TARGET 20102

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "fuzz_control: %s:%d: check failed: %s\n",  \
				__FILE__, __LINE__, #cond);                           \
			abort();                                                      \
		}                                                                     \
	} while (0)

static const char config_fmt[] =
	"daemon: {\n"
	"  control_socket = \"%s/ctl.sock\";\n"
	"  log_level = \"error\";\n"
	"  log_connections = false;\n"
	"  workers = 1;\n"
	"  max_tracked_sources = 256;\n"
	"};\n"
	"lists: { lan = [ \"10.0.0.0/8\", \"fd00::/8\" ]; };\n"
	"rules = (\n"
	"  { name = \"tcp1\"; proto = \"tcp\"; listen = \"127.0.0.1:20001\";\n"
	"    target = \"127.0.0.1:20101\"; per_source: { max_connections = 100; }; },\n"
	"  { name = \"udp1\"; proto = \"udp\"; listen = \"127.0.0.1:20002\";\n"
	"    target = \"127.0.0.1:20102\"; per_source: { udp_sessions = 4; udp_datagrams_per_second = 1000; }; },\n"
	"  { name = \"both\"; proto = \"tcp+udp\"; listen = \"[::1]:20003\";\n"
	"    targets = [ \"[::1]:20103\", \"127.0.0.1:20104\" ]; balance = \"round-robin\";\n"
	"    deny = [ \"@lan\" ]; },\n"
	"  { name = \"range\"; proto = \"tcp\"; listen = \"127.0.0.1:20010-20012\";\n"
	"    target = \"127.0.0.1:20110-20112\"; proxy_protocol = \"v2\"; }\n"
	");\n";

static struct daemon d;
static bool started, verbose;
static char dir[64], conf_path[128], sock_path[128];

/* The traffic kept through the daemon. */
static int tcp_backend = -1, tcp_accepted = -1, tcp_client = -1;
static int udp_backend = -1, udp_client = -1;

/* ---- set-up: a network of our own, a directory, the daemon ---- */

static void __attribute__((noreturn)) fail_setup(const char *what)
{
	fprintf(stderr,
		"fuzz_control: %s: %s\n"
		"fuzz_control: the harness runs the daemon in a network namespace of its own "
		"(it binds loopback ports 20001-20112 there) and needs root, or unprivileged "
		"user namespaces, for it; not running.\n",
		what, strerror(errno));
	exit(1);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) < 0)
		fail_setup(path);
}

/* A network namespace with only lo, up: as root, or inside a user
 * namespace (uid 0 there) when unprivileged ones are allowed. */
static void enter_netns(void)
{
	struct ifreq ifr;
	int fd;

	if (geteuid() != 0) {
		uid_t uid = geteuid();
		gid_t gid = getegid();
		char map[64];

		if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
			fail_setup("unshare(CLONE_NEWUSER | CLONE_NEWNET)");
		write_file("/proc/self/setgroups", "deny");
		snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
		write_file("/proc/self/uid_map", map);
		snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
		write_file("/proc/self/gid_map", map);
	} else if (unshare(CLONE_NEWNET) < 0) {
		fail_setup("unshare(CLONE_NEWNET)");
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		fail_setup("lo");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		fail_setup("bringing lo up");
	close(fd);
}

/* Removes the directory's files and the directory. */
static void remove_dir(void)
{
	if (conf_path[0])
		unlink(conf_path);
	if (sock_path[0])
		unlink(sock_path);
	if (dir[0])
		rmdir(dir);
}

/*
 * A crash ends the process with no atexit: a child that outlives it
 * removes the directory then. It waits for the end of a pipe that only
 * this process holds, and touches nothing else.
 */
static void start_cleaner(void)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0)
		fail_setup("the clean-up process");
	if (pid == 0) {
		char c;

		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		close(p[1]);
		while (read(p[0], &c, 1) < 0 && errno == EINTR)
			;
		remove_dir();
		_exit(0);
	}
	close(p[0]); /* p[1] stays open until this process ends */
}

static void cleanup(void)
{
	if (started)
		daemon_stop(&d);
	started = false;
	remove_dir();
	/* The traffic sockets go with the process. */
}

static struct sockaddr_in loopback(unsigned port)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	return sin;
}

static int bound_socket(int type, unsigned port)
{
	struct sockaddr_in sin = loopback(port);
	int one = 1, fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    (type == SOCK_STREAM && listen(fd, 64) < 0))
		fail_setup("the backends");
	return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct config_errors errs = { 0 };
	struct config cfg;
	char text[sizeof(config_fmt) + 128];

	(void)argc;
	(void)argv;
	/* Never a systemd notification from here, nor a SIGPIPE. */
	verbose = getenv("FUZZ_CONTROL_VERBOSE") != NULL;
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	signal(SIGPIPE, SIG_IGN);
	enter_netns();
	snprintf(dir, sizeof(dir), "/tmp/fuzz_control.XXXXXX");
	if (!mkdtemp(dir))
		fail_setup("mkdtemp");
	snprintf(conf_path, sizeof(conf_path), "%s/portfwd.conf", dir);
	snprintf(sock_path, sizeof(sock_path), "%s/ctl.sock", dir);
	start_cleaner();
	atexit(cleanup);
	snprintf(text, sizeof(text), config_fmt, dir);
	write_file(conf_path, text);
	if (config_load(conf_path, &cfg, &errs) < 0) {
		for (size_t i = 0; i < errs.count; i++)
			fprintf(stderr, "fuzz_control: %s\n", errs.msgs[i]);
		fprintf(stderr, "fuzz_control: the harness's configuration is not valid\n");
		exit(1);
	}
	log_set_level(cfg.log_level);
	if (daemon_start(&d, &cfg) < 0) {
		fprintf(stderr, "fuzz_control: the daemon did not start\n");
		exit(1);
	}
	started = true;
	/* SIGINT and SIGTERM are libFuzzer's again (libevent restores them). */
	for (size_t i = 0; i < sizeof(d.signals) / sizeof(d.signals[0]); i++)
		if (d.signals[i])
			event_del(d.signals[i]);
	tcp_backend = bound_socket(SOCK_STREAM, PORT_TCP_TARGET);
	udp_backend = bound_socket(SOCK_DGRAM, PORT_UDP_TARGET);
	udp_client = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	{
		struct sockaddr_in sin = loopback(PORT_UDP);

		if (udp_client < 0 || connect(udp_client, (struct sockaddr *)&sin, sizeof(sin)) < 0)
			fail_setup("the UDP client");
	}
	return 0;
}

/* ---- traffic through the daemon ---- */

static bool wait_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1;
}

/* One TCP connection through rule tcp1, made again if it was closed. */
static void traffic_tcp(void)
{
	if (tcp_client >= 0) {
		struct pollfd p = { .fd = tcp_client, .events = POLLIN | POLLRDHUP };
		char b[256];

		/* The backend never writes: anything readable is the end. */
		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) &&
		    recv(tcp_client, b, sizeof(b), MSG_DONTWAIT) <= 0) {
			close(tcp_client);
			tcp_client = -1;
		}
	}
	if (tcp_client < 0) {
		struct sockaddr_in sin = loopback(PORT_TCP);

		struct pollfd p;
		socklen_t elen = sizeof(int);
		int e = 0;

		tcp_client = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		CHECK(tcp_client >= 0);
		p = (struct pollfd){ .fd = tcp_client, .events = POLLOUT };
		if ((connect(tcp_client, (struct sockaddr *)&sin, sizeof(sin)) < 0 && errno != EINPROGRESS) ||
		    poll(&p, 1, TRAFFIC_WAIT_MS) != 1 ||
		    getsockopt(tcp_client, SOL_SOCKET, SO_ERROR, &e, &elen) < 0 || e) {
			close(tcp_client); /* rule tcp1 failed to bind: it retries */
			tcp_client = -1;
			return;
		}
		wait_readable(tcp_backend, TRAFFIC_WAIT_MS);
	}
	/* The daemon's connection to the target: keep the newest one. */
	for (int fd; (fd = accept4(tcp_backend, NULL, NULL, SOCK_CLOEXEC)) >= 0;) {
		if (tcp_accepted >= 0)
			close(tcp_accepted);
		tcp_accepted = fd;
	}
}

/* A datagram through rule udp1 now and then (half a second apart): its
 * session made again if it ended. The backend answers, so the session
 * lasts udp_idle_timeout, not udp_unreplied_timeout. */
static void traffic_udp(void)
{
	static double last;
	double now = clock_now();
	struct sockaddr_storage from;
	socklen_t fromlen;
	char b[2048];
	ssize_t n;

	if (now - last < 0.5)
		return;
	last = now;
	if (send(udp_client, "x", 1, MSG_DONTWAIT) == 1)
		wait_readable(udp_backend, TRAFFIC_WAIT_MS);
	for (int i = 0; i < 64; i++) {
		fromlen = sizeof(from);
		n = recvfrom(udp_backend, b, sizeof(b), MSG_DONTWAIT, (struct sockaddr *)&from, &fromlen);
		if (n < 0)
			break;
		sendto(udp_backend, b, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&from, fromlen);
	}
	for (int i = 0; i < 64 && (recv(udp_client, b, sizeof(b), MSG_DONTWAIT) >= 0 || errno == ECONNREFUSED); i++)
		;
}

/* ---- the expected replies: a model of the framing ---- */

enum expect {
	EXPECT_REFUSAL, /* an error end line, no body */
	EXPECT_ERROR,   /* an error end line, whatever the body */
	EXPECT_OK,      /* ".ok" (help, hello 1: nothing can make them fail) */
	EXPECT_ANY,     /* the handler's to say */
};

struct expectation {
	enum expect kind;
	bool json;
	bool hello;
};

struct model {
	struct expectation *e;
	size_t n, cap;
};

static void expect(struct model *m, enum expect kind, bool json, bool hello)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 16;
		m->e = realloc(m->e, m->cap * sizeof(*m->e));
		CHECK(m->e != NULL);
	}
	m->e[m->n++] = (struct expectation){ kind, json, hello };
}

/* "--bytes N" in ARGV[1..]: -1 malformed, 0 absent, 1 present with *LEN. */
static int model_bytes(int argc, char **argv, unsigned long long *len)
{
	int found = 0;

	for (int i = 1; i < argc; i++) {
		unsigned long long v;
		char *end;

		if (strcmp(argv[i], CTL_BYTES_FLAG) != 0)
			continue;
		if (found || i + 1 >= argc || argv[i + 1][0] < '0' || argv[i + 1][0] > '9')
			return -1;
		errno = 0;
		v = strtoull(argv[i + 1], &end, 10);
		if (errno || *end)
			return -1;
		found = 1;
		*len = v;
		i++;
	}
	return found;
}

/*
 * What the daemon must answer to the byte stream DATA, sent whole and then
 * ended: one expectation per reply. A line ends at LF (a CR before it is
 * not part of it); a line without its LF at the end is no request.
 */
static void model_replies(const uint8_t *data, size_t size, struct model *m)
{
	size_t pos = 0;

	while (pos < size) {
		const uint8_t *lf = memchr(data + pos, '\n', size - pos);
		size_t len, next;
		char *line, *argv[CTL_ARGS_MAX + 1];
		const struct ctl_cmd *cmd;
		unsigned long long plen = 0;
		int argc, nargs = 0, bytes = 0, matches;
		bool announced, json = false, bad = false;

		if (!lf) {
			/* No end: refused once it is longer than a request may be. */
			if (size - pos > CTL_REQUEST_MAX)
				expect(m, EXPECT_REFUSAL, false, false);
			return;
		}
		len = (size_t)(lf - (data + pos));
		next = pos + len + 1;
		if (len && data[pos + len - 1] == '\r')
			len--;
		if (len > CTL_REQUEST_MAX || memchr(data + pos, '\0', len)) {
			expect(m, EXPECT_REFUSAL, false, false);
			return; /* and the connection ends */
		}
		line = strndup((const char *)data + pos, len);
		CHECK(line != NULL);
		pos = next;
		announced = strstr(line, CTL_BYTES_FLAG) != NULL;
		for (size_t i = 0; i < len; i++)
			bad |= (unsigned char)line[i] < 0x20 && line[i] != '\t';
		if (bad) {
			expect(m, EXPECT_REFUSAL, false, false);
			free(line);
			if (announced)
				return;
			continue;
		}
		/* Words: split at spaces and tabs. */
		argc = 0;
		for (char *p = strtok(line, " \t"); p && argc <= CTL_ARGS_MAX; p = strtok(NULL, " \t"))
			argv[argc++] = p;
		if (argc == 0) {
			free(line);
			continue; /* nothing asked, nothing answered */
		}
		cmd = argc <= CTL_ARGS_MAX ? ctl_proto_find(argv[0], &matches) : NULL;
		if (cmd) {
			nargs = 1;
			for (int i = 1; i < argc; i++)
				if (strcmp(argv[i], CTL_JSON_FLAG) == 0)
					json = true;
				else
					argv[nargs++] = argv[i];
			argc = nargs;
			bytes = model_bytes(argc, argv, &plen);
			/* The arguments without --bytes N. */
			nargs = argc - 1 - (bytes > 0 ? 2 : 0);
		}
		if (!cmd || bytes < 0 || (bytes > 0 && !cmd->payload) || plen > CTL_CHECK_MAX ||
		    nargs < cmd->min_args || nargs > cmd->max_args) {
			expect(m, EXPECT_REFUSAL, false, false);
			free(line);
			if (announced)
				return;
			continue;
		}
		if (bytes > 0) {
			if (size - pos < plen) {
				/* "the connection ended after ... bytes" */
				expect(m, EXPECT_REFUSAL, false, false);
				free(line);
				return;
			}
			pos += (size_t)plen;
		}
		if (cmd->local || (cmd->id == CTL_CMD_HELLO && strcmp(argv[1], "1") != 0))
			expect(m, EXPECT_ERROR, json, cmd->id == CTL_CMD_HELLO);
		else if (cmd->id == CTL_CMD_HELP || cmd->id == CTL_CMD_HELLO)
			expect(m, EXPECT_OK, json, cmd->id == CTL_CMD_HELLO);
		else
			expect(m, EXPECT_ANY, json, cmd->id == CTL_CMD_HELLO);
		free(line);
	}
}

/* ---- talking to the daemon ---- */

struct exchange {
	const uint8_t *in;
	size_t in_len, sent;
	char *out;
	size_t out_len, out_cap;
	struct event *rd, *wr;
	bool done;
};

static void exchange_cb(evutil_socket_t fd, short what, void *arg)
{
	struct exchange *x = arg;

	if (what & EV_WRITE) {
		while (x->sent < x->in_len) {
			ssize_t n = send(fd, x->in + x->sent, x->in_len - x->sent, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (n <= 0)
				break;
			x->sent += (size_t)n;
		}
		/* All sent, or the daemon stopped reading (it closes after a refusal). */
		if (x->sent == x->in_len || (errno != EAGAIN && errno != EINTR)) {
			x->sent = x->in_len;
			shutdown(fd, SHUT_WR);
			event_del(x->wr);
		}
	}
	if (what & EV_READ) {
		for (;;) {
			ssize_t n;

			if (x->out_cap - x->out_len < 65536) {
				CHECK(x->out_cap < FUZZ_CONTROL_MAX_OUTPUT); /* replies without end */
				x->out_cap = x->out_cap ? 2 * x->out_cap : 262144;
				x->out = realloc(x->out, x->out_cap);
				CHECK(x->out != NULL);
			}
			n = recv(fd, x->out + x->out_len, x->out_cap - x->out_len, MSG_DONTWAIT);
			if (n > 0) {
				x->out_len += (size_t)n;
				continue;
			}
			if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				x->done = true;
				event_base_loopbreak(event_get_base(x->rd));
			}
			break;
		}
	}
}

/* Sends DATA on a new control connection and reads every reply until the
 * daemon closes it; the replies in X. */
static void exchange(const uint8_t *data, size_t size, struct exchange *x)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	CHECK(connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0);
	memset(x, 0, sizeof(*x));
	x->in = data;
	x->in_len = size;
	x->rd = event_new(d.base, fd, EV_READ | EV_PERSIST, exchange_cb, x);
	x->wr = event_new(d.base, fd, EV_WRITE | EV_PERSIST, exchange_cb, x);
	CHECK(x->rd != NULL && x->wr != NULL);
	event_add(x->rd, NULL);
	event_add(x->wr, NULL);
	while (!x->done)
		CHECK(event_base_loop(d.base, EVLOOP_ONCE) == 0);
	event_free(x->rd);
	event_free(x->wr);
	close(fd);
}

/* ---- checking the replies ---- */

static void check_replies(const struct exchange *x, const struct model *m)
{
	size_t pos = 0, body = 0, replies = 0;
	const char *first_body = NULL;
	size_t first_len = 0;

	CHECK(memchr(x->out, '\0', x->out_len) == NULL);
	CHECK(x->out_len == 0 || x->out[x->out_len - 1] == '\n');
	while (pos < x->out_len) {
		char *lf = memchr(x->out + pos, '\n', x->out_len - pos);
		size_t len = (size_t)(lf - (x->out + pos));
		char *line = strndup(x->out + pos, len);
		const char *text;
		enum ctl_line kind;

		CHECK(line != NULL);
		kind = ctl_proto_parse_reply(line, &text);
		if (kind == CTL_LINE_BODY) {
			/* A body line that starts with "." is stuffed. */
			CHECK(line[0] != '.' || line[1] == '.');
			if (!body++) {
				first_body = x->out + pos;
				first_len = len;
			}
		} else {
			const struct expectation *e;

			CHECK(kind == CTL_LINE_OK ? strcmp(line, CTL_END_OK) == 0
						   : strncmp(line, CTL_END_ERROR " ", 7) == 0 && text[0]);
			if (replies >= m->n) {
				fprintf(stderr, "fuzz_control: more replies than requests: \"%s\"\n", line);
				abort();
			}
			e = &m->e[replies++];
			if (e->kind == EXPECT_REFUSAL && (kind != CTL_LINE_ERROR || body)) {
				fprintf(stderr, "fuzz_control: reply %zu: a refusal expected, got \"%s\" after %zu body lines\n",
					replies, line, body);
				abort();
			}
			if (e->kind == EXPECT_ERROR && kind != CTL_LINE_ERROR) {
				fprintf(stderr, "fuzz_control: reply %zu: an error expected, got \"%s\"\n",
					replies, line);
				abort();
			}
			if (e->kind == EXPECT_OK && kind != CTL_LINE_OK) {
				fprintf(stderr, "fuzz_control: reply %zu: \".ok\" expected, got \"%s\"\n",
					replies, line);
				abort();
			}
			if (e->json && !e->hello && body) {
				char *doc = strndup(first_body, first_len);
				json_error_t jerr;
				json_t *j;

				CHECK(doc != NULL);
				j = json_loads(doc, 0, &jerr);
				if (body != 1 || !j) {
					fprintf(stderr, "fuzz_control: reply %zu: --json, but %zu body lines: %.200s\n",
						replies, body, doc);
					abort();
				}
				json_decref(j);
				free(doc);
			}
			body = 0;
		}
		free(line);
		pos += len + 1;
	}
	/* Nothing after the last end line, and every request answered. */
	CHECK(body == 0);
	if (replies != m->n) {
		fprintf(stderr, "fuzz_control: %zu replies, %zu expected\n", replies, m->n);
		abort();
	}
}

/* ---- the state between inputs ---- */

/* No ban and no rule disabled: as the daemon started. */
static void reset_state(void)
{
	bool changed = false;

	while (d.bans->n > 0) {
		struct ban b = d.bans->list[0];

		CHECK(bans_remove(d.bans, &b.prefix, b.rule) == 0);
	}
	for (size_t i = 0; i < d.nrules; i++)
		if (d.rules[i]->disabled) {
			forward_enable(d.rules[i]); /* a failed bind is retried */
			changed = true;
		}
	if (changed)
		daemon_router_sync(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model m = { 0 };
	struct exchange x;

	if (size > FUZZ_CONTROL_MAX_INPUT)
		return -1;
	traffic_tcp();
	traffic_udp();
	model_replies(data, size, &m);
	exchange(data, size, &x);
	/* FUZZ_CONTROL_VERBOSE=1: what the daemon said, to look at an input. */
	if (verbose)
		fprintf(stderr, "---- %zu replies expected:\n%.*s", m.n, (int)x.out_len, x.out ? x.out : "");
	check_replies(&x, &m);
	free(x.out);
	free(m.e);
	reset_state();
	return 0;
}
