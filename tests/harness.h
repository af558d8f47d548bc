/*
 * Test harness for the integration suites: starts the real portfwd on a
 * temporary configuration with free loopback ports, talks to its control
 * socket, and plays clients and backends (echo, source, sink) on loopback.
 * Every wait here is bounded.
 */
#ifndef PORTFWD_TEST_HARNESS_H
#define PORTFWD_TEST_HARNESS_H

#include <check.h>
#include <jansson.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

struct hdaemon {
	pid_t pid;
	int status; /* the wait status, once h_wait_log saw it exit */
	char dir[256];
	char conf[300];
	char sock[300];
	char log[300];
};

/* The numeric address HOST (IPv4, or IPv6 if it has a colon) and PORT in
 * SS; returns its length. */
socklen_t h_sockaddr(const char *host, unsigned port, struct sockaddr_storage *ss);

/* A free port on 127.0.0.1 (or ::1 if V6) for SOCKTYPE. */
unsigned h_free_port(int socktype, bool v6);

/* Writes a configuration file: the daemon block (control socket in D's
 * directory, log_connections on, then h_daemon_extra if set) followed by
 * BODY (defaults and rules). */
void h_write_conf(struct hdaemon *d, const char *body);

/* More daemon keys for h_write_conf, e.g. "drain_timeout = 1.0;". */
extern const char *h_daemon_extra;

/* If set, the mode of the daemon's temporary directory (e.g. 0777 when the
 * daemon gives up root and must still read its file and remove its socket). */
extern unsigned h_dir_mode;

/*
 * The inodes of the sockets bound to PORT on loopback and listening (TCP)
 * or bound (UDP), from /proc/net: the same inodes before and after a
 * reload mean the sockets were never closed or re-bound. Fills up to MAX
 * in ascending order; returns how many there are.
 */
int h_socket_inodes(unsigned port, bool udp, unsigned long *out, int max);

/* The program in environment variable VAR (PORTFWD_BIN, PORTFWDCTL_BIN),
 * or FALLBACK where it is unset or empty. */
const char *h_bin(const char *var, const char *fallback);

/* Makes a temporary directory for D and writes BODY as its configuration. */
void h_prepare(struct hdaemon *d, const char *body);

/* Starts portfwd on D's configuration and waits (10 s at most) until its
 * control socket answers. Fails the test if it does not. */
void h_start(struct hdaemon *d, const char *body);

/* As h_start, the daemon in network namespace NS (h_daemon_netns). */
void h_start_in(struct hdaemon *d, const char *body, const char *ns);

/* A TCP socket listening on HOST (numeric), any port, with BACKLOG, in the
 * calling thread's network namespace; *PORT gets its port. */
int h_listen(const char *host, unsigned *port, int backlog);

/* As h_start, but the daemon runs as UID/GID (the test must be root). */
void h_start_as(struct hdaemon *d, const char *body, uid_t uid, gid_t gid);

/* As h_start, with the daemon's open file limit (soft and hard) at NOFILE. */
void h_start_nofile(struct hdaemon *d, const char *body, unsigned nofile);

/* If set, run in the daemon's process just before it is executed (after
 * the file limit), e.g. to install a seccomp filter. */
extern void (*h_child_hook)(void);

/* ---- network namespaces the tests make for themselves (root only) ---- */

/*
 * Two namespaces joined by a veth pair, on a network of the test's own:
 * the server side has 10.77.0.1/24 and 10.77.0.3/24, fd77::1/64 and
 * fd77::3/64 (two addresses on one interface, as a host with a secondary
 * address or a virtual IP) and loopback up; the client side 10.77.0.2/24
 * and fd77::2/64.
 */
struct h_netns {
	bool ok; /* made; false when not root or `ip` is missing */
	char srv[32], cli[32];
	char srv_if[16], cli_if[16];
};

/* Makes N (names from the calling process's pid). Returns N->ok; why not on stderr. */
bool h_netns_make(struct h_netns *n);

/* In a test: true if N is there to use. False, and the test is skipped
 * (said on stderr), when not root; as root, a namespace that could not be
 * made fails the test rather than skipping what it covers. */
bool h_netns_ready(const struct h_netns *n);

/* Deletes N's namespaces (their interfaces go with them). */
void h_netns_destroy(struct h_netns *n);

/* Moves the calling thread into namespace NAME, NULL for the test's own:
 * sockets made afterwards belong to it, and stay there. */
void h_netns_enter(const char *name);

/* If set, h_start runs the daemon inside this namespace. */
extern const char *h_daemon_netns;

/* The namespaces of a suite's test case made by h_netns_tcase. */
extern struct h_netns h_ns;

/* A test case whose tests use h_ns: the namespaces are made before its
 * first test and deleted after its last (in the parent, so also when a
 * test fails). */
TCase *h_netns_tcase(void);

/* Runs a shell command line; returns its exit status, output in *OUT (malloc'd). */
int h_sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Starts portfwd on D's configuration (see h_prepare) and returns at once,
 * for a test that watches the start-up itself. Stop it with h_kill. */
void h_spawn(struct hdaemon *d);

/* Waits until D's log contains TEXT: true, or false once the daemon has
 * exited or SECONDS have passed without it. */
bool h_wait_log(struct hdaemon *d, const char *text, double seconds);

/* SIGTERM (SIGKILL after 10 s) and reap, asserting nothing, so a test can
 * stop the daemon before it checks what it saw. Returns the wait status. */
int h_kill(struct hdaemon *d);

/* SIGTERM, wait (10 s at most), assert exit 0, the socket gone and no
 * sanitizer report in the log. */
void h_stop(struct hdaemon *d);

/* Removes D's temporary directory (h_stop does it after a clean stop; a
 * failed test leaves it, log included, for a look). */
void h_cleanup(struct hdaemon *d);

/* Sends one request; returns the reply body (malloc'd) and sets *OK to
 * whether it ended with ".ok". NULL if the exchange failed. */
char *h_ctl(const char *sock, const char *request, bool *ok);
/* A sample of the daemon's metrics with no labels (portfwdctl metrics); -1 if absent. */
double h_metric(struct hdaemon *d, const char *name);

/* `status json` parsed. */
json_t *h_status(struct hdaemon *d);

/* A counter of rule NAME: e.g. h_counter(d, "echo", "tcp", "accepted"). */
long long h_counter(struct hdaemon *d, const char *rule, const char *proto, const char *key);

/* True when the test matrix runs the daemon with splice = true. */
bool h_splice(void);

/* Polls until the counter equals WANT or SECONDS pass; returns the last value. */
long long h_wait_counter(struct hdaemon *d, const char *rule, const char *proto,
			 const char *key, long long want, double seconds);

/* Runs ARGV, captures stdout+stderr (malloc'd) and returns the exit status. */
int h_run(char *const argv[], char **output);

/* The same as UID/GID with no supplementary groups (the test must be root). */
int h_run_as(char *const argv[], uid_t uid, gid_t gid, char **output);

/* True if the daemon's log contains TEXT. */
bool h_log_contains(struct hdaemon *d, const char *text);

/* Fails the test if D's process takes more than a tenth of a CPU over the
 * next SECONDS (a loop spinning on an event takes all of one); WHAT says
 * what it was doing. */
void h_assert_quiet(struct hdaemon *d, double seconds, const char *what);

/* How many times TEXT is in D's log (its first 4 MiB). */
int h_log_count(struct hdaemon *d, const char *text);

/* Clients of rule RULE on 127.0.0.1:PORT, each sending a byte and held
 * open in FDS (at most MAX), until the daemon logs that the rule is out of
 * file descriptors (start it with h_start_nofile); returns how many. */
int h_exhaust_descriptors(struct hdaemon *d, const char *rule, unsigned port, int *fds, int max);

/* VmRSS of PID in KiB. */
long h_rss_kib(pid_t pid);

/* CPU time PID has used, user and system, in clock ticks (sysconf(_SC_CLK_TCK)). */
long long h_cpu_ticks(pid_t pid);

double h_now(void);

/* Deterministic bytes and a hash, to compare both ends of a transfer. */
struct h_stream {
	uint64_t state;
	uint64_t pos;
};
void h_stream_init(struct h_stream *s, uint64_t seed);
void h_stream_fill(struct h_stream *s, unsigned char *buf, size_t len);
uint64_t h_hash(uint64_t h, const unsigned char *buf, size_t len);
#define H_HASH_INIT 1469598103934665603ULL

/* Sends LEN bytes on the connected UDP socket FD as datagrams of G bytes
 * (the last perhaps shorter) in one call, with UDP_SEGMENT: what a QUIC
 * stack or portfwd itself sends, and a UDP_GRO socket on this host
 * receives as one buffer. Returns what send returns. */
ssize_t h_udp_send_gso(int fd, const void *buf, size_t len, uint16_t g);

/* Connects a TCP socket (blocking) to HOST:PORT. -1 on failure. */
int h_connect(const char *host, unsigned port);

/* Sends LEN stream bytes from SEED through FD while reading what comes
 * back (an echo), then half-closes and reads to EOF. Returns 0 if exactly
 * the bytes sent came back, in order. Bounded by SECONDS. */
int h_echo_exchange(int fd, size_t len, uint64_t seed, double seconds);
/* As h_echo_exchange; KEEP_OPEN: no half-close, done once all LEN came back
 * (the connection stays open for more). */
int h_echo_exchange_open(int fd, size_t len, uint64_t seed, double seconds, bool keep_open);

/*
 * One HTTP/1.0 request "METHOD PATH" to HOST:PORT (EXTRA: more header lines,
 * each ending in \r\n, or NULL; a Host header first in it replaces the
 * usual "Host: HOST:PORT"), read to EOF within SECONDS. Returns the
 * status code (or -1: no connection, no whole answer in time); *HEAD (the
 * status line and headers) and *BODY, when given, are NUL-terminated copies
 * the caller frees (NULL when -1).
 */
int h_http(const char *host, unsigned port, const char *method, const char *path,
	   const char *extra, char **head, char **body, double seconds);
/* The same from the local address SRC (a loopback address: 127.0.0.2). */
int h_http_from(const char *src, const char *host, unsigned port, const char *method,
		const char *path, const char *extra, char **head, char **body, double seconds);
/* A TCP socket bound to SRC (port 0) and connected to HOST:PORT; -1 on failure. */
int h_connect_from(const char *src, const char *host, unsigned port);

/* Reads until EOF (or SECONDS); returns the byte count, *HASH their hash. */
long long h_read_all(int fd, uint64_t *hash, double seconds);

/* Writes LEN stream bytes from SEED; returns 0 if all were written. */
int h_write_stream(int fd, size_t len, uint64_t seed, double seconds);

enum h_backend_mode {
	H_ECHO,        /* echo until EOF, then close */
	H_COUNT_REPLY, /* read to EOF, then reply "N HASH\n" and close */
	H_GREET_READ,  /* send "hello\n", half-close, read to EOF, record */
	H_GREET_HOLD,  /* send "hello\n", read to EOF or error (got_bytes -1: reset), record */
	H_SOURCE,      /* send `source_len` stream bytes (seed 42), then close */
	H_UDP_ECHO,    /* UDP: send every datagram back to its sender */
	H_TRICKLE,     /* send 100-byte chunks (TCP_NODELAY) until stopped or the peer goes */
	H_TAG_ECHO,    /* send `tag`, then echo until EOF: tells one backend from another */
};

struct h_backend {
	enum h_backend_mode mode;
	int fd;
	unsigned port;
	size_t source_len;
	const char *tag; /* H_TAG_ECHO: set before h_backend_start */
	pthread_t thread;
	atomic_bool stop;
	/* H_GREET_READ results */
	pthread_mutex_t lock;
	long long got_bytes;
	uint64_t got_hash;
	int finished;
};

/* Starts a backend on 127.0.0.1 (or ::1) on a free port. */
void h_backend_start(struct h_backend *b, enum h_backend_mode mode, bool v6);
/* The same on PORT (0: any free one). */
void h_backend_start_on(struct h_backend *b, enum h_backend_mode mode, bool v6, unsigned port);
/* The same on HOST (a numeric address: "0.0.0.0" for every address of the
 * namespace the calling thread is in, e.g. a LAN host behind a router). */
void h_backend_start_at(struct h_backend *b, enum h_backend_mode mode, const char *host, unsigned port);
void h_backend_stop(struct h_backend *b);

/* Waits (SECONDS at most) until B has recorded WANT finished connections
 * (H_GREET_READ, H_GREET_HOLD); returns how many it has. */
int h_backend_wait_finished(struct h_backend *b, int want, double seconds);

#endif
