#include "ctl_proto.h"

#include <string.h>

const struct ctl_cmd ctl_cmds[CTL_CMD_COUNT] = {
	{ CTL_CMD_HELLO, "hello", "VERSION",
	  "check that the daemon speaks protocol VERSION", 1, 1, false },
	{ CTL_CMD_HELP, "help", "", "list the commands", 0, 0, false },
	{ CTL_CMD_STATUS, "status", "[json]",
	  "daemon and per-rule state and counters, as text or one JSON document", 0, 1, false },
};

const struct ctl_cmd *ctl_proto_find(const char *name)
{
	for (size_t i = 0; i < CTL_CMD_COUNT; i++)
		if (strcmp(ctl_cmds[i].name, name) == 0)
			return &ctl_cmds[i];
	return NULL;
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
