#include "ctl_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Ordered as `help` lists them. */
const struct ctl_cmd ctl_cmds[CTL_CMD_COUNT] = {
	{ CTL_CMD_HELLO, "hello", "VERSION",
	  "check that the daemon speaks protocol VERSION", 1, 1, false, true, false, false },
	{ CTL_CMD_HELP, "help", "", "list the commands", 0, 0, false, false, false, false },
	{ CTL_CMD_STATUS, "status", "",
	  "daemon, reloads and per-rule state and counters", 0, 1, false, false, false, false },
	{ CTL_CMD_RULES, "rules", "",
	  "the rules in force with every setting, defaults applied", 0, 0, false, false, false, false },
	{ CTL_CMD_CONNECTIONS, "connections", "[RULE]",
	  "live TCP connections and UDP sessions, of every rule or of RULE", 0, 1, false, false, false, false },
	{ CTL_CMD_KILL, "kill", "ID | --rule RULE",
	  "close connection or UDP session ID, or all of RULE's", 1, 2, true, false, false, false },
	{ CTL_CMD_DISABLE, "disable", "RULE",
	  "stop listening for RULE and free its port; its connections carry on (until reload)", 1, 1, true, false, false, false },
	{ CTL_CMD_ENABLE, "enable", "RULE", "listen for RULE again", 1, 1, true, false, false, false },
	{ CTL_CMD_RELOAD, "reload", "",
	  "read the configuration file again and apply it; nothing changes if it is invalid", 0, 0, true, false, false, false },
	/* Quotes the daemon's own file in errors, and takes up to CTL_CHECK_MAX
	 * bytes of the daemon's memory: privileged. */
	{ CTL_CMD_CHECK, "check", "[FILE | -]",
	  "validate FILE (read as you; - for stdin; default: the daemon's own) as reload would, without applying it",
	  0, 1, true, false, true, false },
	{ CTL_CMD_METRICS, "metrics", "",
	  "every counter in the Prometheus text exposition format", 0, 0, false, false, false, false },
	{ CTL_CMD_BAN, "ban", "ADDRESS|CIDR [--rule RULE] [--for DURATION] [--kill]",
	  "refuse ADDRESS or CIDR on every rule (or RULE) until unban, or for DURATION (90s, 10m, 1h30m, 2d); --kill also closes its connections and sessions",
	  1, 6, true, false, false, false },
	{ CTL_CMD_UNBAN, "unban", "ADDRESS|CIDR [--rule RULE]",
	  "lift the ban of ADDRESS or CIDR (on RULE, if it was banned on RULE only)", 1, 3, true, false, false, false },
	{ CTL_CMD_BANS, "bans", "", "the bans in force, with the time each has left", 0, 0, false, false,
	  false, false },
	{ CTL_CMD_SOURCES, "sources", "RULE",
	  "the busiest sources of RULE now (per_source limits): connections, sessions, rates, times limited",
	  1, 1, false, false, false, false },
	{ CTL_CMD_PORTS, "ports", "[PORT|SERVICE|RANGE] [--tcp|--udp]",
	  "this machine's listening TCP and bound UDP sockets: class, service, process, portfwd rule",
	  0, 3, false, false, false, true },
	{ CTL_CMD_WHO, "who", "PORT[/tcp|/udp]",
	  "who holds PORT (a number or service name), or whether it is free", 1, 1, false, false,
	  false, true },
	{ CTL_CMD_FREE, "free", "PORT[/tcp|/udp] [--kill [--force]] [--yes]",
	  "free PORT: disable the portfwd rule on it, or with --kill stop the process holding it",
	  1, 4, false, false, false, true },
	{ CTL_CMD_HEALTH, "health", "",
	  "exit 0 if a rule is enabled and every enabled rule is listening (and has a target up, where health_check runs), else 1 with the reason, 3 if no daemon answered: for keepalived's vrrp_script and monitoring",
	  0, 0, false, false, false, false },
};

/* The options a command takes, beside --json and --bytes. */
static const struct {
	enum ctl_cmd_id id;
	const char *options;
} ctl_options[] = {
	{ CTL_CMD_KILL, "--rule" },
	{ CTL_CMD_BAN, "--rule --for --kill" },
	{ CTL_CMD_UNBAN, "--rule" },
	{ CTL_CMD_PORTS, "--tcp --udp" },
	{ CTL_CMD_FREE, "--kill --force --yes" },
};

bool ctl_proto_takes_option(const struct ctl_cmd *c, const char *opt)
{
	size_t len = strlen(opt);
	const char *o = NULL;

	for (size_t i = 0; i < sizeof(ctl_options) / sizeof(ctl_options[0]); i++)
		if (ctl_options[i].id == c->id)
			o = ctl_options[i].options;
	for (; o && *o; o += strcspn(o, " "), o += strspn(o, " "))
		if (strncmp(o, opt, len) == 0 && (o[len] == ' ' || o[len] == '\0'))
			return true;
	return false;
}

const struct ctl_cmd *ctl_proto_find(const char *name, int *matches)
{
	const struct ctl_cmd *found = NULL;
	size_t len = strlen(name);
	int n = 0;

	for (size_t i = 0; i < CTL_CMD_COUNT; i++)
		if (strcmp(ctl_cmds[i].name, name) == 0) {
			if (matches)
				*matches = 1;
			return &ctl_cmds[i];
		}
	/* free signals processes: a typo ("f") must not run it, so it
	 * answers to its whole name only, like the plumbing. */
	for (size_t i = 0; len > 0 && i < CTL_CMD_COUNT; i++)
		if (!ctl_cmds[i].internal && ctl_cmds[i].id != CTL_CMD_FREE &&
		    strncmp(ctl_cmds[i].name, name, len) == 0) {
			found = &ctl_cmds[i];
			n++;
		}
	if (matches)
		*matches = n;
	return n == 1 ? found : NULL;
}

char *ctl_proto_names(const char *prefix, char *buf, size_t len)
{
	size_t used = 0;

	if (len)
		buf[0] = '\0';
	for (size_t i = 0; i < CTL_CMD_COUNT; i++) {
		int w;

		if (ctl_cmds[i].internal || strncmp(ctl_cmds[i].name, prefix, strlen(prefix)) != 0)
			continue;
		w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", ctl_cmds[i].name);
		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
	}
	return buf;
}

int ctl_proto_split(char *line, char **argv, int max)
{
	int argc = 0;
	char *p = line;

	for (;;) {
		while (*p == ' ' || *p == '\t')
			*p++ = '\0';
		if (*p == '\0')
			return argc;
		if (argc == max)
			return -1;
		argv[argc++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
	}
}

enum ctl_line ctl_proto_parse_reply(const char *line, const char **text)
{
	if (line[0] == '.' && line[1] == '.') {
		*text = line + 1;
		return CTL_LINE_BODY;
	}
	if (strcmp(line, CTL_END_OK) == 0) {
		*text = "";
		return CTL_LINE_OK;
	}
	if (strncmp(line, CTL_END_ERROR, strlen(CTL_END_ERROR)) == 0) {
		const char *msg = line + strlen(CTL_END_ERROR);

		*text = *msg == ' ' ? msg + 1 : msg;
		return CTL_LINE_ERROR;
	}
	*text = line;
	return CTL_LINE_BODY;
}

const char *ctl_proto_stuffing(const char *line)
{
	return line[0] == '.' ? "." : "";
}

char *ctl_proto_read_file(const char *path, size_t *len)
{
	size_t cap = 0, used = 0;
	char *buf = NULL, *grown;
	struct stat st;
	int fd, e;
	ssize_t n;

	fd = path ? open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) : STDIN_FILENO;
	if (fd < 0)
		return NULL;
	if (path && fstat(fd, &st) < 0) {
		e = errno;
		goto fail;
	}
	if (path && !S_ISREG(st.st_mode)) {
		e = EINVAL;
		goto fail;
	}
	for (;;) {
		/* Room for one byte past the limit (that tells a file too large) and the NUL. */
		if (cap - used < 2) {
			cap = cap ? cap * 2 : 65536;
			if (cap > (size_t)CTL_CHECK_MAX + 2)
				cap = (size_t)CTL_CHECK_MAX + 2;
			grown = realloc(buf, cap);
			if (!grown) {
				e = ENOMEM;
				goto fail;
			}
			buf = grown;
		}
		n = read(fd, buf + used, cap - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e = errno;
			goto fail;
		}
		if (n == 0)
			break;
		used += (size_t)n;
		if (used > CTL_CHECK_MAX) {
			e = EFBIG;
			goto fail;
		}
	}
	if (path)
		close(fd);
	buf[used] = '\0';
	*len = used;
	return buf;
fail:
	if (path)
		close(fd);
	free(buf);
	errno = e;
	return NULL;
}

_Static_assert(CTL_CHECK_MAX == 1048576, "ctl_proto_file_error names the limit");

const char *ctl_proto_file_error(int e)
{
	if (e == EINVAL)
		return "not a regular file";
	if (e == EFBIG)
		return "larger than 1048576 bytes";
	return strerror(e);
}
