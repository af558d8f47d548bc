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
#include "ports.h"
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
	fprintf(out, "usage: portfwdctl [-s SOCKET] COMMAND [ARGUMENTS] [--json]\ncommands:\n");
	for (size_t i = 0; i < CTL_CMD_COUNT; i++) {
		const struct ctl_cmd *c = &ctl_cmds[i];
		char head[64];

		if (c->internal)
			continue;
		snprintf(head, sizeof(head), "%s%s%s", c->name, c->usage[0] ? " " : "", c->usage);
		fprintf(out, "  %-24s %s\n", head, c->help);
	}
	fprintf(out,
		"A command may be shortened to a unique prefix (con = connections).\n"
		"options:\n"
		"  -s SOCKET  control socket (default: $PORTFWD_SOCKET, else %s)\n"
		"  --json     print the reply as JSON (any command)\n"
		"  -V         print the version and exit\n"
		"  -h         print this help and exit\n"
		"exit status: 0 ok, 1 error reply (or a reload/check that failed, or the reply was cut short),\n"
		"2 usage, 3 cannot connect (no socket, refused, permission denied),\n"
		"4 the socket tables cannot be read (ports, who, free)\n"
		"(ports: 1 when its filter matched nothing; who: 0 held, 1 free; free: 0 free, 1 still held;\n"
		"health: 0 healthy, 1 unhealthy, 3 no daemon answered: cannot connect, or no whole reply within %ds)\n"
		"See portfwdctl(8).\n",
		CTL_DEFAULT_SOCKET, CTL_TIMEOUT_SECONDS);
}

/* Connects to the control socket PATH. Returns the fd, or -1 with what a
 * person should know in ERR. */
static int ctl_connect(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { CTL_TIMEOUT_SECONDS, 0 };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "socket path too long: %s", path);
		return -1;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;

		close(fd);
		if (e == ENOENT)
			snprintf(err, errlen, "cannot connect to %s: the socket does not exist (is portfwd running? set -s or PORTFWD_SOCKET)", path);
		else if (e == EACCES || e == EPERM)
			snprintf(err, errlen, "cannot connect to %s: permission denied (run as root or as a member of the socket's group)", path);
		else if (e == ECONNREFUSED)
			snprintf(err, errlen, "cannot connect to %s: nobody is listening (a stale socket: portfwd is not running)", path);
		else
			snprintf(err, errlen, "cannot connect to %s: %s", path, strerror(e));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

/*
 * Reads one reply. Body lines go to BODY (may be NULL to discard); with
 * ERRBODY set they go there instead when the reply ends in an error (the
 * body of a refused reload is its list of errors). Returns 0 for ".ok", 1
 * for ".error", -1 if the connection failed before the end line; the
 * message is printed, or written to ERR when ERR is not NULL.
 */
static int ctl_read_reply(FILE *in, FILE *body, FILE *errbody, const char *path, char *err,
			  size_t errlen)
{
	char *line = NULL, *held = NULL;
	size_t cap = 0, held_len = 0;
	FILE *mem = errbody ? open_memstream(&held, &held_len) : NULL;
	ssize_t n;
	int rc = -1;

	while ((n = getline(&line, &cap, in)) >= 0) {
		const char *text;

		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		switch (ctl_proto_parse_reply(line, &text)) {
		case CTL_LINE_BODY:
			if (mem)
				fprintf(mem, "%s\n", text);
			else if (body)
				fprintf(body, "%s\n", text);
			continue;
		case CTL_LINE_OK:
			rc = 0;
			break;
		case CTL_LINE_ERROR:
			rc = 1;
			break;
		}
		if (mem) {
			fclose(mem);
			mem = NULL;
			fputs(held ? held : "", rc == 0 ? body : errbody);
		}
		if (rc == 1 && err)
			snprintf(err, errlen, "%s", text);
		else if (rc == 1)
			fprintf(stderr, "portfwdctl: %s\n", text);
		break;
	}
	if (mem)
		fclose(mem);
	free(held);
	if (rc < 0) {
		const char *why = ferror(in) && errno == EAGAIN ? "no reply within the time limit"
								: "connection closed before the reply ended";

		if (err)
			snprintf(err, errlen, "%s: %s", path, why);
		else
			fprintf(stderr, "portfwdctl: %s: %s\n", path, why);
	}
	free(line);
	return rc;
}

/* Sends LEN bytes of BUF on FD. Returns 0, or -1 with errno. */
static int ctl_send(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* How the last ctl_exchange ended, for ctl_request, which must tell "no
 * daemon" from "it answered with an error" from "the exchange broke". */
static enum { CTL_LAST_OK, CTL_LAST_CONNECT, CTL_LAST_BROKEN, CTL_LAST_REPLY_ERROR } ctl_last;

/* Sends the hello, REQUEST and its PAYLOAD (PLEN bytes, or NULL), and
 * prints the reply to OUT (errors' bodies to ERRBODY if set). Returns an
 * exit code; the error is printed, or written to ERR if it is not NULL;
 * ctl_last says how it ended. */
static int ctl_exchange(const char *path, const char *request, const char *payload, size_t plen,
			FILE *out, FILE *errbody, char *err, size_t errlen)
{
	char buf[CTL_REQUEST_MAX + 32], why[512];
	int fd, rc, len;
	FILE *in;

	ctl_last = CTL_LAST_CONNECT;
	fd = ctl_connect(path, why, sizeof(why));
	if (fd < 0) {
		if (err)
			snprintf(err, errlen, "%s", why);
		else
			fprintf(stderr, "portfwdctl: %s\n", why);
		return EXIT_CONNECT;
	}
	len = snprintf(buf, sizeof(buf), "hello %d\n%s\n", CTL_PROTO_VERSION, request);
	ctl_last = CTL_LAST_BROKEN;
	if (len < 0 || (size_t)len >= sizeof(buf)) {
		if (err)
			snprintf(err, errlen, "the request is too long");
		else
			fprintf(stderr, "portfwdctl: the request is too long\n");
		close(fd);
		return EXIT_USAGE;
	}
	if ((ctl_send(fd, buf, (size_t)len) < 0 || (payload && ctl_send(fd, payload, plen) < 0)) &&
	    errno != EPIPE && errno != ECONNRESET) {
		if (err)
			snprintf(err, errlen, "%s: cannot send the request: %s", path, strerror(errno));
		else
			fprintf(stderr, "portfwdctl: %s: cannot send the request: %s\n", path,
				strerror(errno));
		close(fd);
		return EXIT_CONNECT;
	}
	/* EPIPE: the daemon answered before it took everything (it refused a
	 * payload it will not read) and closed; its reply, already here, says why. */
	shutdown(fd, SHUT_WR);
	in = fdopen(fd, "r");
	if (!in) {
		if (err)
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		else
			fprintf(stderr, "portfwdctl: %s: %s\n", path, strerror(errno));
		close(fd);
		return EXIT_REPLY_ERROR;
	}
	rc = ctl_read_reply(in, NULL, NULL, path, err, errlen);
	if (rc == 0)
		rc = ctl_read_reply(in, out, errbody, path, err, errlen);
	fclose(in);
	ctl_last = rc == 0 ? CTL_LAST_OK : rc == 1 ? CTL_LAST_REPLY_ERROR : CTL_LAST_BROKEN;
	return rc == 0 ? EXIT_OK : EXIT_REPLY_ERROR;
}

static int ctl_run(const char *path, const char *request, const char *payload, size_t plen,
		   FILE *out, FILE *errbody)
{
	return ctl_exchange(path, request, payload, plen, out, errbody, NULL, 0);
}

/* ports_ctl's request (its contract is in ports.h): REQUEST's reply body
 * in *BODY, every failure in ERR, nothing printed. */
static int ctl_request(const char *path, const char *request, char **body, char *err,
		       size_t errlen)
{
	size_t len = 0;
	FILE *mem = open_memstream(body, &len);
	int rc;

	if (!mem) {
		*body = NULL;
		snprintf(err, errlen, "out of memory");
		return -2;
	}
	err[0] = '\0';
	rc = ctl_exchange(path, request, NULL, 0, mem, NULL, err, errlen);
	fclose(mem);
	if (rc == EXIT_OK)
		return 0;
	free(*body);
	*body = NULL;
	switch (ctl_last) {
	case CTL_LAST_REPLY_ERROR:
		return 1;
	case CTL_LAST_CONNECT:
		return -1;
	default:
		return -2;
	}
}

/* Runs REQUEST (which asks for JSON) with its PAYLOAD and pretty-prints the
 * document, also when the reply is an error (a refused reload's errors are
 * in it). */
static int ctl_run_json(const char *path, const char *request, const char *payload, size_t plen)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem;
	json_t *doc;
	json_error_t jerr;
	int rc;

	mem = open_memstream(&text, &len);
	if (!mem)
		return EXIT_REPLY_ERROR;
	rc = ctl_run(path, request, payload, plen, mem, mem);
	fclose(mem);
	if (rc != EXIT_OK && rc != EXIT_REPLY_ERROR) {
		free(text);
		return rc;
	}
	if (len == 0) {
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
	return rc;
}

/* Appends WORD to the request in BUF. Returns -1 if it does not fit or
 * cannot be sent as one word. */
static int ctl_add_word(char *buf, size_t len, const char *word)
{
	size_t used = strlen(buf);
	int w;

	if (!*word || strpbrk(word, " \t\r\n")) {
		fprintf(stderr, "portfwdctl: \"%s\": arguments cannot be empty or contain spaces\n", word);
		return -1;
	}
	w = snprintf(buf + used, len - used, "%s%s", used ? " " : "", word);
	if (w < 0 || (size_t)w >= len - used) {
		fprintf(stderr, "portfwdctl: the request is too long\n");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = getenv("PORTFWD_SOCKET");
	char request[CTL_REQUEST_MAX + 1] = "";
	const struct ctl_cmd *cmd;
	char *args[CTL_ARGS_MAX];
	char names[256], *payload = NULL;
	size_t plen = 0;
	bool json = false;
	int opt, nargs = 0, matches, rc;

	if (!path || !*path)
		path = CTL_DEFAULT_SOCKET;
	while ((opt = getopt(argc, argv, "+s:Vhj")) != -1) {
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
		case 'j':
			json = true;
			break;
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
	cmd = ctl_proto_find(argv[optind], &matches);
	if (!cmd || cmd->internal) {
		fprintf(stderr, "portfwdctl: %s command \"%s\"; the commands are: %s\n",
			matches > 1 ? "ambiguous" : "unknown", argv[optind],
			ctl_proto_names(matches > 1 ? argv[optind] : "", names, sizeof(names)));
		return EXIT_USAGE;
	}
	for (int i = optind + 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0)
			json = true;
		else if (argv[i][0] == '-' && argv[i][1] != '\0' && !ctl_proto_takes_option(cmd, argv[i])) {
			fprintf(stderr, "portfwdctl: %s: unknown option \"%s\"\n", cmd->name, argv[i]);
			usage(stderr);
			return EXIT_USAGE;
		} else if (nargs == CTL_ARGS_MAX - 2) {
			fprintf(stderr, "portfwdctl: too many arguments\n");
			return EXIT_USAGE;
		} else
			args[nargs++] = argv[i];
	}
	if (nargs < cmd->min_args || nargs > cmd->max_args) {
		fprintf(stderr, "portfwdctl: usage: portfwdctl %s%s%s [--json]\n", cmd->name,
			cmd->usage[0] ? " " : "", cmd->usage);
		return EXIT_USAGE;
	}
	if (cmd->id == CTL_CMD_HELP && !json) {
		usage(stdout);
		return EXIT_OK;
	}
	/* ports, who, free: here, with the caller's rights (ports.h). */
	if (cmd->local) {
		struct ports_ctl ctl = { path, ctl_request };

		return ports_command(cmd->name, nargs, args, json, &ctl);
	}
	if (ctl_add_word(request, sizeof(request), cmd->name) < 0)
		return EXIT_USAGE;
	/* check FILE: read here, with the caller's rights, and sent as text;
	 * the daemon never opens a path a client names. */
	if (cmd->id == CTL_CMD_CHECK && nargs == 1) {
		bool in = strcmp(args[0], "-") == 0;
		char bytes[32];

		payload = ctl_proto_read_file(in ? NULL : args[0], &plen);
		if (!payload) {
			fprintf(stderr, "portfwdctl: check: %s: %s\n", in ? "standard input" : args[0],
				ctl_proto_file_error(errno));
			return EXIT_REPLY_ERROR;
		}
		snprintf(bytes, sizeof(bytes), "%zu", plen);
		if (ctl_add_word(request, sizeof(request), in ? "stdin" : args[0]) < 0 ||
		    ctl_add_word(request, sizeof(request), CTL_BYTES_FLAG) < 0 ||
		    ctl_add_word(request, sizeof(request), bytes) < 0) {
			free(payload);
			return EXIT_USAGE;
		}
		nargs = 0;
	}
	for (int i = 0; i < nargs; i++)
		if (ctl_add_word(request, sizeof(request), args[i]) < 0)
			return EXIT_USAGE;
	if (json)
		rc = ctl_add_word(request, sizeof(request), CTL_JSON_FLAG) < 0
			     ? EXIT_USAGE
			     : ctl_run_json(path, request, payload, plen);
	else
		rc = ctl_run(path, request, payload, plen, stdout, stderr);
	free(payload);
	/* health: 1 is the daemon's word that this host cannot forward; a
	 * daemon that took the connection but gave no whole reply (hung, or
	 * gone meanwhile) did not answer, as one that cannot be reached. */
	if (cmd->id == CTL_CMD_HEALTH && rc == EXIT_REPLY_ERROR && ctl_last == CTL_LAST_BROKEN)
		rc = EXIT_CONNECT;
	return rc;
}
