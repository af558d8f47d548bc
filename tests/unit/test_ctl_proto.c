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
	const struct ctl_cmd *c = ctl_proto_find("status");

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->id, CTL_CMD_STATUS);
	ck_assert_int_eq(c->max_args, 1);
	ck_assert_ptr_null(ctl_proto_find("stat"));
	ck_assert_ptr_null(ctl_proto_find(""));
	for (size_t i = 0; i < CTL_CMD_COUNT; i++) {
		ck_assert_int_eq(ctl_cmds[i].id, (int)i);
		ck_assert(strlen(ctl_cmds[i].help) > 0);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ctl_proto");
	TCase *tc = tcase_create("ctl_proto");

	tcase_add_test(tc, test_split);
	tcase_add_test(tc, test_reply_lines);
	tcase_add_test(tc, test_command_table);
	suite_add_tcase(s, tc);
	return check_run(s);
}
