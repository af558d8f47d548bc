/* The control protocol's framing, shared by the daemon and portfwdctl. */
#include <check.h>
#include <string.h>

#include "ctl_proto.h"
#include "check_run.h"

START_TEST(test_split)
{
	char line[] = "  status \t json  ";
	char many[] = "a b c d e";
	char *argv[4];

	ck_assert_int_eq(ctl_proto_split(line, argv, 4), 2);
	ck_assert_str_eq(argv[0], "status");
	ck_assert_str_eq(argv[1], "json");
	ck_assert_int_eq(ctl_proto_split(many, argv, 4), -1);
	line[0] = '\0';
	ck_assert_int_eq(ctl_proto_split(line, argv, 4), 0);
}
END_TEST

START_TEST(test_reply_lines)
{
	const char *text;

	ck_assert_int_eq(ctl_proto_parse_reply(".ok", &text), CTL_LINE_OK);
	ck_assert_int_eq(ctl_proto_parse_reply(".error unknown command", &text), CTL_LINE_ERROR);
	ck_assert_str_eq(text, "unknown command");
	ck_assert_int_eq(ctl_proto_parse_reply("rule ssh", &text), CTL_LINE_BODY);
	ck_assert_str_eq(text, "rule ssh");
	/* A stuffed body line that would otherwise read as an end line. */
	ck_assert_str_eq(ctl_proto_stuffing(".ok"), ".");
	ck_assert_str_eq(ctl_proto_stuffing("ok"), "");
	ck_assert_int_eq(ctl_proto_parse_reply("..ok", &text), CTL_LINE_BODY);
	ck_assert_str_eq(text, ".ok");
	ck_assert_int_eq(ctl_proto_parse_reply(".okay", &text), CTL_LINE_BODY);
}
END_TEST

START_TEST(test_command_table)
{
	const struct ctl_cmd *c = ctl_proto_find("status", NULL);
	int n = -1;

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->id, CTL_CMD_STATUS);
	ck_assert_int_eq(c->max_args, 1);
	ck_assert_ptr_null(ctl_proto_find("", &n));
	ck_assert_int_eq(n, 0);
	for (size_t i = 0; i < CTL_CMD_COUNT; i++) {
		ck_assert_int_eq(ctl_cmds[i].id, (int)i);
		ck_assert(strlen(ctl_cmds[i].help) > 0);
	}
	/* Every command that changes the daemon is marked, for the permission checks. */
	ck_assert(ctl_proto_find("reload", NULL)->mutating);
	ck_assert(ctl_proto_find("kill", NULL)->mutating);
	ck_assert(!ctl_proto_find("metrics", NULL)->mutating);
	ck_assert(ctl_proto_find("ban", NULL)->mutating);
	ck_assert(ctl_proto_find("unban", NULL)->mutating);
	/* ports, who and free run in portfwdctl; nothing else does. */
	for (size_t i = 0; i < CTL_CMD_COUNT; i++)
		ck_assert_msg(ctl_cmds[i].local == (i == CTL_CMD_PORTS || i == CTL_CMD_WHO || i == CTL_CMD_FREE),
			      "%s", ctl_cmds[i].name);
	ck_assert(ctl_proto_takes_option(ctl_proto_find("ports", NULL), "--udp"));
	ck_assert(ctl_proto_takes_option(ctl_proto_find("free", NULL), "--kill"));
	ck_assert(!ctl_proto_takes_option(ctl_proto_find("who", NULL), "--kill"));
	ck_assert(!ctl_proto_find("bans", NULL)->mutating);
	/* The options each command takes, for portfwdctl's checks. */
	ck_assert(ctl_proto_takes_option(ctl_proto_find("kill", NULL), "--rule"));
	ck_assert(ctl_proto_takes_option(ctl_proto_find("ban", NULL), "--rule"));
	ck_assert(ctl_proto_takes_option(ctl_proto_find("ban", NULL), "--for"));
	ck_assert(ctl_proto_takes_option(ctl_proto_find("ban", NULL), "--kill"));
	ck_assert(!ctl_proto_takes_option(ctl_proto_find("ban", NULL), "--ki"));
	ck_assert(!ctl_proto_takes_option(ctl_proto_find("ban", NULL), "--killer"));
	ck_assert(ctl_proto_takes_option(ctl_proto_find("unban", NULL), "--rule"));
	ck_assert(!ctl_proto_takes_option(ctl_proto_find("unban", NULL), "--for"));
	ck_assert(!ctl_proto_takes_option(ctl_proto_find("bans", NULL), "--rule"));
	ck_assert(!ctl_proto_takes_option(ctl_proto_find("status", NULL), "--rule"));
	ck_assert(!ctl_proto_find("sources", NULL)->mutating);
	ck_assert_int_eq(ctl_proto_find("so", NULL)->id, CTL_CMD_SOURCES);
}
END_TEST

START_TEST(test_command_prefixes)
{
	char names[256];
	int n = -1;

	/* A unique prefix names its command. */
	ck_assert_int_eq(ctl_proto_find("stat", &n)->id, CTL_CMD_STATUS);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(ctl_proto_find("con", NULL)->id, CTL_CMD_CONNECTIONS);
	ck_assert_int_eq(ctl_proto_find("rel", NULL)->id, CTL_CMD_RELOAD);
	ck_assert_int_eq(ctl_proto_find("m", NULL)->id, CTL_CMD_METRICS);
	/* An ambiguous one names nothing and says how many it fits. */
	ck_assert_ptr_null(ctl_proto_find("r", &n));
	ck_assert_int_eq(n, 2);
	ck_assert_str_eq(ctl_proto_names("r", names, sizeof(names)), "rules, reload");
	ck_assert_ptr_null(ctl_proto_find("c", &n));
	ck_assert_int_eq(n, 2);
	/* "ban" is a command of its own, though "bans" starts with it. */
	ck_assert_int_eq(ctl_proto_find("ban", &n)->id, CTL_CMD_BAN);
	ck_assert_int_eq(ctl_proto_find("bans", NULL)->id, CTL_CMD_BANS);
	ck_assert_int_eq(ctl_proto_find("unb", NULL)->id, CTL_CMD_UNBAN);
	ck_assert_ptr_null(ctl_proto_find("b", &n));
	ck_assert_int_eq(n, 2);
	ck_assert_ptr_null(ctl_proto_find("nope", &n));
	ck_assert_int_eq(n, 0);
	/* Protocol plumbing answers only to its whole name and is not listed. */
	ck_assert_int_eq(ctl_proto_find("hel", &n)->id, CTL_CMD_HELP);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(ctl_proto_find("hello", NULL)->id, CTL_CMD_HELLO);
	ck_assert_ptr_null(strstr(ctl_proto_names("", names, sizeof(names)), "hello"));
	/* free signals processes: never by a prefix ("f" is no typo away). */
	ck_assert_ptr_null(ctl_proto_find("f", &n));
	ck_assert_int_eq(n, 0);
	ck_assert_ptr_null(ctl_proto_find("fre", &n));
	ck_assert_int_eq(ctl_proto_find("free", &n)->id, CTL_CMD_FREE);
	ck_assert_int_eq(ctl_proto_find("w", NULL)->id, CTL_CMD_WHO);
	ck_assert_int_eq(ctl_proto_find("po", NULL)->id, CTL_CMD_PORTS);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ctl_proto");
	TCase *tc = tcase_create("ctl_proto");

	tcase_add_test(tc, test_split);
	tcase_add_test(tc, test_reply_lines);
	tcase_add_test(tc, test_command_table);
	tcase_add_test(tc, test_command_prefixes);
	suite_add_tcase(s, tc);
	return check_run(s);
}
