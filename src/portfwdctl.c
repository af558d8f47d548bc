/* portfwdctl: the command-line client of portfwd's control socket. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl_proto.h"
#include "version.h"

enum {
	EXIT_OK = 0,
	EXIT_REPLY_ERROR = 1,
	EXIT_USAGE = 2,
	EXIT_CONNECT = 3,
};

#define CTL_TIMEOUT_SECONDS 10

static void usage(FILE *out)
{
	fprintf(out,
		"usage: portfwdctl [-s SOCKET] COMMAND [--json]\n"
		"commands:\n"
		"  status [--json]   daemon and rules: state, connections, sessions, counters\n"
		"  help              list the daemon's control commands\n"
		"options:\n"
		"  -s SOCKET  control socket (default: $PORTFWD_SOCKET, else %s)\n"
		"  -V         print the version and exit\n"
		"  -h         print this help and exit\n"
		"exit status: 0 ok, 1 error reply, 2 usage, 3 cannot connect\n",
		CTL_DEFAULT_SOCKET);
}

static int ctl_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { CTL_TIMEOUT_SECONDS, 0 };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "portfwdctl: socket path too long: %s\n", path);
		return -1;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "portfwdctl: socket: %s\n", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;

		close(fd);
		if (e == ENOENT)
			fprintf(stderr, "portfwdctl: cannot connect to %s: the socket does not exist (is portfwd running? set -s or PORTFWD_SOCKET)\n", path);
		else if (e == EACCES || e == EPERM)
			fprintf(stderr, "portfwdctl: cannot connect to %s: permission denied (run as root or as a member of the socket's group)\n", path);
		else if (e == ECONNREFUSED)
			fprintf(stderr, "portfwdctl: cannot connect to %s: nobody is listening (a stale socket: portfwd is not running)\n", path);
		else
			fprintf(stderr, "portfwdctl: cannot connect to %s: %s\n", path, strerror(e));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

/*
 * Reads one reply. Body lines go to BODY (may be NULL to discard).
 * Returns 0 for ".ok", 1 for ".error" (message printed), -1 if the
 * connection failed before the end line (message printed).
 */
static int ctl_read_reply(FILE *in, FILE *body, const char *path)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = -1;

	while ((n = getline(&line, &cap, in)) >= 0) {
		const char *text;

		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		switch (ctl_proto_parse_reply(line, &text)) {
		case CTL_LINE_BODY:
			if (body)
				fprintf(body, "%s\n", text);
			continue;
		case CTL_LINE_OK:
			rc = 0;
			break;
		case CTL_LINE_ERROR:
			fprintf(stderr, "portfwdctl: %s\n", text);
			rc = 1;
			break;
		}
		break;
	}
	if (rc < 0)
		fprintf(stderr, "portfwdctl: %s: %s\n", path,
			ferror(in) && errno == EAGAIN ? "no reply within 10 seconds"
						      : "connection closed before the reply ended");
	free(line);
	return rc;
}

/* Sends the hello and REQUEST, and prints the reply to OUT. Returns an exit code. */
static int ctl_run(const char *path, const char *request, FILE *out)
{
	char buf[CTL_REQUEST_MAX + 32];
	int fd, rc, len;
	FILE *in;

	fd = ctl_connect(path);
	if (fd < 0)
		return EXIT_CONNECT;
	len = snprintf(buf, sizeof(buf), "hello %d\n%s\n", CTL_PROTO_VERSION, request);
	if (send(fd, buf, (size_t)len, MSG_NOSIGNAL) != len) {
		fprintf(stderr, "portfwdctl: %s: cannot send the request: %s\n", path, strerror(errno));
		close(fd);
		return EXIT_CONNECT;
	}
	shutdown(fd, SHUT_WR);
	in = fdopen(fd, "r");
	if (!in) {
		close(fd);
		return EXIT_REPLY_ERROR;
	}
	rc = ctl_read_reply(in, NULL, path);
	if (rc == 0)
		rc = ctl_read_reply(in, out, path);
	fclose(in);
	return rc == 0 ? EXIT_OK : EXIT_REPLY_ERROR;
}

static int ctl_status(const char *path, bool json)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem;
	json_t *doc;
	json_error_t jerr;
	int rc;

	if (!json)
		return ctl_run(path, "status", stdout);

	mem = open_memstream(&text, &len);
	if (!mem)
		return EXIT_REPLY_ERROR;
	rc = ctl_run(path, "status json", mem);
	fclose(mem);
	if (rc != EXIT_OK) {
		free(text);
		return rc;
	}
	doc = json_loadb(text, len, 0, &jerr);
	free(text);
	if (!doc) {
		fprintf(stderr, "portfwdctl: the daemon's reply is not JSON: %s\n", jerr.text);
		return EXIT_REPLY_ERROR;
	}
	json_dumpf(doc, stdout, JSON_INDENT(2));
	putchar('\n');
	json_decref(doc);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	const char *path = getenv("PORTFWD_SOCKET");
	bool json = false;
	const char *cmd;
	int opt;

	if (!path || !*path)
		path = CTL_DEFAULT_SOCKET;
	while ((opt = getopt(argc, argv, "+s:Vh")) != -1) {
		switch (opt) {
		case 's':
			path = optarg;
			break;
		case 'V':
			printf("portfwdctl %s (protocol %d)\n", PORTFWD_VERSION, CTL_PROTO_VERSION);
			return EXIT_OK;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "portfwdctl: a command is required\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = argv[optind++];
	for (int i = optind; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0) {
			json = true;
		} else {
			fprintf(stderr, "portfwdctl: %s: unexpected argument \"%s\"\n", cmd, argv[i]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (strcmp(cmd, "status") == 0)
		return ctl_status(path, json);
	if (strcmp(cmd, "help") == 0 && !json)
		return ctl_run(path, "help", stdout);
	fprintf(stderr, "portfwdctl: unknown command \"%s\" (commands: status, help)\n", cmd);
	usage(stderr);
	return EXIT_USAGE;
}
