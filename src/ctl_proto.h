/*
 * The control protocol, shared by the daemon and portfwdctl. It has no
 * libevent and no daemon types, so the CLI includes it alone.
 *
 * Version 1, line framed, usable by hand (socat - UNIX-CONNECT:PATH):
 *
 *   request  = command *(" " argument) LF        at most CTL_REQUEST_MAX bytes
 *   reply    = *(body-line LF) end-line LF
 *   end-line = ".ok" / ".error " message
 *
 * A body line that starts with "." is sent with one more "." in front
 * (as in SMTP), so no body line can look like an end line. Several
 * requests may be sent on one connection; replies come in order.
 * "hello VERSION" checks that both sides speak the same protocol.
 *
 * A request may carry a payload (version 1 as well; only "check" takes one):
 *
 *   request = command *(" " argument) " --bytes " N LF  N*OCTET
 *
 * the N raw bytes following the line at once, 0 <= N <= CTL_CHECK_MAX. The
 * request line and its payload must be complete within the daemon's
 * deadline (5 s) from the first byte; a payload request that is refused
 * (permission, size, syntax) is answered and the connection closed, as the
 * bytes that follow cannot be told from requests.
 *
 *   check                       validate the daemon's own configuration file
 *   check NAME --bytes N TEXT   validate TEXT, a configuration; NAME only
 *                               labels its messages (NAME:LINE: message)
 *
 * The daemon never opens a path a client names: portfwdctl reads FILE with
 * the caller's rights and sends its text. TEXT with an @include directive
 * is refused. "check PATH" without --bytes (protocol 1 before payloads,
 * where the daemon opened PATH) is refused with what to do instead.
 */
#ifndef PORTFWD_CTL_PROTO_H
#define PORTFWD_CTL_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#define CTL_PROTO_VERSION 1
#define CTL_DEFAULT_SOCKET "/run/portfwd/portfwd.sock"
#define CTL_REQUEST_MAX 4096
#define CTL_ARGS_MAX 16
#define CTL_END_OK ".ok"
#define CTL_END_ERROR ".error"
/* The payload flag, and the most a payload (a configuration's text) may be;
 * the daemon's own configuration file has the same bound, so whatever it
 * loads can also be checked. */
#define CTL_BYTES_FLAG "--bytes"
#define CTL_CHECK_MAX (1 << 20)

enum ctl_cmd_id {
	CTL_CMD_HELLO,
	CTL_CMD_HELP,
	CTL_CMD_STATUS,
	CTL_CMD_RULES,
	CTL_CMD_CONNECTIONS,
	CTL_CMD_KILL,
	CTL_CMD_DISABLE,
	CTL_CMD_ENABLE,
	CTL_CMD_RELOAD,
	CTL_CMD_CHECK,
	CTL_CMD_METRICS,
	CTL_CMD_BAN,
	CTL_CMD_UNBAN,
	CTL_CMD_BANS,
	CTL_CMD_SOURCES,
	CTL_CMD_PORTS,
	CTL_CMD_WHO,
	CTL_CMD_FREE,
	CTL_CMD_HEALTH,
	CTL_CMD_COUNT,
};

/* Any request may carry this word (anywhere after the command): the reply
 * body is then one JSON document. "status json" is also accepted. */
#define CTL_JSON_FLAG "--json"

struct ctl_cmd {
	enum ctl_cmd_id id;
	const char *name;
	const char *usage; /* arguments, for help and usage errors */
	const char *help;  /* one line */
	int min_args, max_args;
	bool mutating;     /* changes the daemon's state (or quotes the daemon's file) */
	bool internal;     /* protocol plumbing, not a portfwdctl command */
	bool payload;      /* may carry --bytes N and N bytes */
	/* Runs in portfwdctl, never sent: it reads this machine's sockets and
	 * processes with the caller's rights (the daemon's sandbox cannot see
	 * them and should not); the daemon answers it with an error. */
	bool local;
};

extern const struct ctl_cmd ctl_cmds[CTL_CMD_COUNT];

/*
 * The command named NAME or, failing that, the one command NAME is a prefix
 * of ("con" for "connections"). NULL if none or several match; *MATCHES
 * (may be NULL) gets how many matched. Internal commands and free (it
 * signals processes) match only whole.
 */
const struct ctl_cmd *ctl_proto_find(const char *name, int *matches);

/* True if command C takes the option OPT ("--rule"). */
bool ctl_proto_takes_option(const struct ctl_cmd *c, const char *opt);

/*
 * Writes the names of the commands starting with PREFIX ("" for all, no
 * internal ones) into BUF as "a, b, c". Returns BUF.
 */
char *ctl_proto_names(const char *prefix, char *buf, size_t len);

/*
 * Splits LINE in place at spaces and tabs into at most MAX words.
 * Returns the number of words, or -1 if there are more than MAX.
 */
int ctl_proto_split(char *line, char **argv, int max);

enum ctl_line {
	CTL_LINE_BODY,
	CTL_LINE_OK,
	CTL_LINE_ERROR,
};

/*
 * Classifies one reply line (without its LF). *TEXT gets the body text
 * with the stuffed "." removed, or the error message.
 */
enum ctl_line ctl_proto_parse_reply(const char *line, const char **text);

/* The prefix that a body line needs: "." if LINE starts with ".". */
const char *ctl_proto_stuffing(const char *line);

/*
 * Reads the regular file PATH (or, with PATH NULL, all of standard input,
 * whatever it is) into a malloc'd NUL-terminated buffer of *LEN bytes. It
 * opens with O_NONBLOCK, so a FIFO or a device never makes it wait, and
 * refuses anything but a regular file (errno EINVAL) and more than
 * CTL_CHECK_MAX bytes (EFBIG). Returns NULL with errno on failure.
 */
char *ctl_proto_read_file(const char *path, size_t *len);

/* What ctl_proto_read_file's errno E means, for a message. */
const char *ctl_proto_file_error(int e);

#endif
