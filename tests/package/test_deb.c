/*
 * The Debian package on this machine: install it with apt-get, check its
 * files, modes, version, user and conffile, run the installed portfwd on a
 * loopback rule as the package's user with the installed portfwdctl, upgrade
 * it (over itself, then to a newer version whose example changed, keeping
 * the edited conffile), remove it (the conffile stays) and purge it
 * (nothing stays but the portfwd user and group, as Debian policy has it).
 *
 * `make check-deb` builds the package and runs this as root, with the
 * package's path in PORTFWD_DEB. It changes the machine, so it is for CI and
 * throwaway machines, and refuses to start where portfwd is installed or
 * /etc/portfwd.conf exists. The tests run in order, each on what the
 * previous one left.
 */
#include <check.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_run.h"
#include "harness.h"
#include "version.h"

/* Where the list of paths that existed before the install is kept between
 * the tests (each runs in its own process). */
#define BEFORE "/tmp/portfwd-test-deb.before"
/* Made once the install succeeded: the later tests go on only with it, so
 * a failed install is never followed by an upgrade, removal or purge. */
#define INSTALLED "/tmp/portfwd-test-deb.installed"
/* The trees compared before the install and after the purge (dpkg's and
 * apt's records, caches and logs are theirs to keep). */
#define TREES "/etc /lib/systemd /usr/lib/systemd /usr/lib/sysusers.d /usr/lib/tmpfiles.d " \
	"/usr/sbin /usr/bin /usr/share/doc /usr/share/man /usr/share/bash-completion /var/lib/systemd"
/* What may be new after a purge: the account that policy keeps (and the
 * backups of the files that hold it), and the directory where
 * deb-systemd-helper keeps its records of enabled units. */
#define KEPT "/etc/(passwd|group|shadow|gshadow)-?|/var/lib/systemd/deb-systemd-helper-enabled"

static const char *deb(void)
{
	const char *p = getenv("PORTFWD_DEB");

	ck_assert_msg(p && *p, "PORTFWD_DEB must name the package (make check-deb sets it)");
	return p;
}

/* Runs a shell command line, fails the test unless it exits WANT; returns
 * its output (malloc'd). */
static char *sh_expect(int want, const char *cmd)
{
	char *out;
	int rc = h_sh(&out, "%s", cmd);

	ck_assert_msg(rc == want, "`%s` exited %d, not %d:\n%s", cmd, rc, want, out);
	return out;
}

static void sh_ok(const char *cmd)
{
	free(sh_expect(0, cmd));
}

/* The package's state and version, as dpkg-query says. */
static char *pkg_state(void)
{
	char *out;

	h_sh(&out, "dpkg-query -W -f='${db:Status-Status} ${Version}' portfwd 2>/dev/null");
	return out;
}

static void expect_mode(const char *path, unsigned mode, bool dir)
{
	struct stat sb;

	ck_assert_msg(stat(path, &sb) == 0, "%s is missing", path);
	ck_assert_msg((sb.st_mode & 07777) == mode && (S_ISDIR(sb.st_mode) != 0) == dir,
		      "%s: mode %o, expected %o", path, (unsigned)(sb.st_mode & 07777), mode);
}

static bool exists(const char *path)
{
	struct stat sb;

	return lstat(path, &sb) == 0;
}

static void require_installed(void)
{
	ck_assert_msg(exists(INSTALLED), "the install failed: nothing more is tried");
}

/* A sorted list of every path under TREES, in FILE. */
static void snapshot(const char *file)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "find %s -xdev 2>/dev/null | sort > %s", TREES, file);
	free(sh_expect(0, cmd));
}

START_TEST(test_install)
{
	char *out, cmd[1024];

	ck_assert_msg(geteuid() == 0, "the package test installs a package: run it as root");
	out = pkg_state();
	ck_assert_msg(out[0] == '\0' || strncmp(out, "not-installed", 13) == 0,
		      "portfwd is on this machine already (%s): the package test would remove it", out);
	free(out);
	ck_assert_msg(!exists("/etc/portfwd.conf"), "/etc/portfwd.conf exists: the package test would purge it");
	snapshot(BEFORE);

	/* The package asks for no -dev package, only libraries. */
	snprintf(cmd, sizeof(cmd), "dpkg-deb -f %s Depends", deb());
	out = sh_expect(0, cmd);
	ck_assert_msg(!strstr(out, "-dev"), "Depends: %s", out);
	ck_assert_msg(strstr(out, "libevent-2.1") && strstr(out, "libconfig") && strstr(out, "libjansson"),
		      "Depends: %s", out);
	free(out);

	snprintf(cmd, sizeof(cmd), "DEBIAN_FRONTEND=noninteractive apt-get install -y -q %s 2>&1", deb());
	sh_ok(cmd);
	out = pkg_state();
	ck_assert_str_eq(out, "installed " PORTFWD_VERSION);
	free(out);
	sh_ok("touch " INSTALLED);
}
END_TEST

START_TEST(test_files)
{
	static const struct {
		const char *path;
		unsigned mode;
	} files[] = {
		{ "/usr/sbin/portfwd", 0755 },
		{ "/usr/bin/portfwdctl", 0755 },
		{ "/lib/systemd/system/portfwd.service", 0644 },
		{ "/usr/lib/sysusers.d/portfwd.conf", 0644 },
		{ "/usr/lib/tmpfiles.d/portfwd.conf", 0644 },
		{ "/usr/share/man/man8/portfwd.8.gz", 0644 },
		{ "/usr/share/man/man8/portfwdctl.8.gz", 0644 },
		{ "/usr/share/man/man5/portfwd.conf.5.gz", 0644 },
		{ "/usr/share/bash-completion/completions/portfwdctl", 0644 },
		{ "/usr/share/doc/portfwd/copyright", 0644 },
		{ "/usr/share/doc/portfwd/changelog.gz", 0644 },
		{ "/usr/share/doc/portfwd/examples/fail2ban/filter.d/portfwd.conf", 0644 },
		{ "/usr/share/doc/portfwd/examples/fail2ban/action.d/portfwd.conf", 0644 },
		{ "/usr/share/doc/portfwd/examples/fail2ban/jail.d/portfwd.conf", 0644 },
		{ "/usr/share/doc/portfwd/examples/grafana/portfwd.json", 0644 },
		{ "/etc/portfwd.conf", 0644 },
	};
	struct passwd *pw;
	struct group *gr;
	struct stat sb;
	char *out;

	require_installed();

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		expect_mode(files[i].path, files[i].mode, false);

	/* Every file the package holds is root's. */
	out = sh_expect(0, "dpkg -L portfwd | while read -r f; do [ -e \"$f\" ] && stat -c '%U:%G %n' \"$f\"; done | grep -v '^root:root ' || true");
	ck_assert_msg(out[0] == '\0', "not root's: %s", out);
	free(out);

	/* The one version: the package, both programs and the man pages. */
	out = sh_expect(0, "/usr/sbin/portfwd -V && /usr/bin/portfwdctl -V");
	ck_assert_msg(strncmp(out, "portfwd " PORTFWD_VERSION "\nportfwdctl " PORTFWD_VERSION " ",
			      sizeof("portfwd " PORTFWD_VERSION "\nportfwdctl " PORTFWD_VERSION " ") - 1) == 0,
		      "%s", out);
	free(out);
	out = sh_expect(0, "zcat /usr/share/man/man8/portfwd.8.gz /usr/share/man/man8/portfwdctl.8.gz "
			   "/usr/share/man/man5/portfwd.conf.5.gz | grep -c '^\\.Os portfwd " PORTFWD_VERSION "$'");
	ck_assert_str_eq(out, "3\n");
	free(out);

	/* The unit runs what the package installed; debhelper enabled it. */
	out = sh_expect(0, "grep -E '^Exec' /lib/systemd/system/portfwd.service");
	ck_assert_msg(strstr(out, "ExecStartPre=/usr/sbin/portfwd -t -c /etc/portfwd.conf\n") &&
			      strstr(out, "ExecStart=/usr/sbin/portfwd -c /etc/portfwd.conf\n") &&
			      strstr(out, "ExecReload=/usr/bin/portfwdctl reload\n"),
		      "%s", out);
	free(out);
	ck_assert(exists("/etc/systemd/system/multi-user.target.wants/portfwd.service"));

	/* /etc/portfwd.conf is a conffile with no rules, and valid. */
	out = sh_expect(0, "dpkg-query -W -f='${Conffiles}' portfwd");
	ck_assert_msg(strstr(out, " /etc/portfwd.conf "), "%s", out);
	free(out);
	out = sh_expect(0, "portfwd -t -c /etc/portfwd.conf");
	ck_assert_str_eq(out, "/etc/portfwd.conf: configuration is valid, 0 rules\n");
	free(out);

	/* The system user and group from the sysusers file, and the runtime
	 * directory from the tmpfiles one. */
	pw = getpwnam("portfwd");
	gr = getgrnam("portfwd");
	ck_assert_msg(pw && gr, "no portfwd user or group");
	ck_assert_uint_lt(pw->pw_uid, 1000);
	ck_assert_uint_eq(pw->pw_gid, gr->gr_gid);
	ck_assert_str_eq(pw->pw_shell, "/usr/sbin/nologin");
	expect_mode("/run/portfwd", 0750, true);
	ck_assert_int_eq(stat("/run/portfwd", &sb), 0);
	ck_assert_uint_eq(sb.st_uid, pw->pw_uid);
	ck_assert_uint_eq(sb.st_gid, gr->gr_gid);
	ck_assert(!exists("/run/portfwd.dpkg-install"));
}
END_TEST

/* The installed portfwd, started as root with daemon.user = portfwd as it
 * would be without systemd, forwards a loopback rule, and the installed
 * portfwdctl reports it. */
START_TEST(test_runs)
{
	struct h_backend echo;
	struct hdaemon d;
	char body[512], *out;
	char *status[] = { "/usr/bin/portfwdctl", "-s", NULL, "status", NULL };
	unsigned port = h_free_port(SOCK_STREAM, false);
	int fd;

	require_installed();

	setenv("PORTFWD_BIN", "/usr/sbin/portfwd", 1);
	h_backend_start(&echo, H_ECHO, false);
	snprintf(body, sizeof(body),
		 "rules: ( { name = \"lan\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:%u\"; } );",
		 port, echo.port);
	h_daemon_extra = "user = \"portfwd\";";
	h_dir_mode = 0777;
	h_start(&d, body);
	fd = h_connect("127.0.0.1", port);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(h_echo_exchange(fd, 65536, 7, 10), 0);
	close(fd);
	status[2] = d.sock;
	ck_assert_int_eq(h_run(status, &out), 0);
	ck_assert_msg(strstr(out, "portfwd " PORTFWD_VERSION ", pid ") && strstr(out, "user portfwd") &&
			      strstr(out, "lan  tcp  127.0.0.1:") && strstr(out, "listening") &&
			      strstr(out, "1 accepted"),
		      "%s", out);
	free(out);
	h_stop(&d);
	h_backend_stop(&echo);
}
END_TEST

/* Over itself, then to a newer version whose example changed: the edited
 * /etc/portfwd.conf is never replaced (dpkg asks; told to keep it, it puts
 * the new example beside it as .dpkg-dist). */
START_TEST(test_upgrade)
{
	char cmd[2048], *out;

	require_installed();

	sh_ok("printf '# edited by the operator\\n' >> /etc/portfwd.conf");
	snprintf(cmd, sizeof(cmd), "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall %s 2>&1", deb());
	sh_ok(cmd);
	out = sh_expect(0, "tail -n 1 /etc/portfwd.conf");
	ck_assert_str_eq(out, "# edited by the operator\n");
	free(out);
	ck_assert(!exists("/etc/portfwd.conf.dpkg-dist") && !exists("/etc/portfwd.conf.dpkg-new"));

	/* The same package as version VERSION+test1, with one more line in the
	 * shipped example. */
	snprintf(cmd, sizeof(cmd),
		 "set -e; t=$(mktemp -d); dpkg-deb -R %s $t/p; "
		 "sed -i 's/^Version: .*/Version: " PORTFWD_VERSION "+test1/' $t/p/DEBIAN/control; "
		 "echo '# new in the next version' >> $t/p/etc/portfwd.conf; "
		 "dpkg-deb -b $t/p $t/next.deb >/dev/null; "
		 "dpkg --force-confold -i $t/next.deb 2>&1; rm -rf $t",
		 deb());
	out = sh_expect(0, cmd);
	ck_assert_msg(strstr(out, "/etc/portfwd.conf"), "dpkg said nothing of the conffile: %s", out);
	free(out);
	out = pkg_state();
	ck_assert_str_eq(out, "installed " PORTFWD_VERSION "+test1");
	free(out);
	out = sh_expect(0, "tail -n 1 /etc/portfwd.conf; tail -n 1 /etc/portfwd.conf.dpkg-dist");
	ck_assert_str_eq(out, "# edited by the operator\n# new in the next version\n");
	free(out);
	sh_ok("/usr/sbin/portfwd -t -c /etc/portfwd.conf");
}
END_TEST

/* dpkg -r leaves the conffile (and the user); the programs, the unit and
 * the runtime directory go. */
START_TEST(test_remove)
{
	char *out;

	require_installed();

	sh_ok("dpkg -r portfwd 2>&1");
	out = pkg_state();
	ck_assert_msg(strncmp(out, "config-files ", 13) == 0, "%s", out);
	free(out);
	ck_assert(exists("/etc/portfwd.conf"));
	ck_assert(!exists("/usr/sbin/portfwd") && !exists("/usr/bin/portfwdctl") &&
		  !exists("/lib/systemd/system/portfwd.service") && !exists("/run/portfwd"));
	ck_assert_ptr_nonnull(getpwnam("portfwd"));
}
END_TEST

/* dpkg -P removes the conffile (and the .dpkg-dist beside it) and every
 * trace of the unit: the trees are as before the install, but for the
 * portfwd user and group that Debian policy keeps. */
START_TEST(test_purge)
{
	char cmd[1024], *out;

	require_installed();

	sh_ok("dpkg -P portfwd 2>&1");
	out = pkg_state();
	ck_assert_msg(out[0] == '\0' || strncmp(out, "not-installed", 13) == 0, "%s", out);
	free(out);
	ck_assert(!exists("/etc/portfwd.conf") && !exists("/etc/portfwd.conf.dpkg-dist"));
	ck_assert(!exists("/run/portfwd") && !exists("/run/portfwd.dpkg-install"));
	snapshot(BEFORE ".after");
	snprintf(cmd, sizeof(cmd), "diff " BEFORE " " BEFORE ".after | grep '^[<>]' | grep -Ev '^> (%s)$' || true", KEPT);
	out = sh_expect(0, cmd);
	ck_assert_msg(out[0] == '\0', "the purge left these different from before the install:\n%s", out);
	free(out);
	ck_assert_ptr_nonnull(getpwnam("portfwd"));
	unlink(BEFORE);
	unlink(BEFORE ".after");
	unlink(INSTALLED);
}
END_TEST

/* ---- starting and stopping, as on a machine that runs systemd ---- */

/* What the maintainer scripts asked of systemd, a line each. */
#define CALLS "/tmp/portfwd-test-deb.calls"
#define STUB_DIR "/usr/local/sbin"
/* apt runs dpkg with PATH=/usr/sbin:/usr/bin:/sbin:/bin (DPkg::Path): put
 * the stubs first. */
#define APT_STUBS "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Path=" STUB_DIR ":/usr/sbin:/usr/bin:/sbin:/bin"

static bool fake_systemd;

/*
 * Where systemd is not PID 1 (CI, containers), the scripts skip every
 * start and stop. To see what they would do, make it look as if it ran:
 * /run/systemd/system, and systemctl and deb-systemd-invoke that only
 * write down how they were called, found first on the scripts' PATH
 * (APT_STUBS; dpkg itself keeps the caller's). In the parent, before the test case and after it, also
 * when it fails. Where systemd does run, nothing is faked.
 */
static void fake_systemd_setup(void)
{
	static const char stub[] = "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> " CALLS "\n";
	static const char *const tools[] = { STUB_DIR "/systemctl", STUB_DIR "/deb-systemd-invoke" };
	FILE *fp;

	if (exists("/run/systemd/system") || exists(tools[0]) || exists(tools[1]))
		return;
	if (mkdir("/run/systemd", 0755) < 0 && !exists("/run/systemd"))
		return;
	if (mkdir("/run/systemd/system", 0755) < 0)
		return;
	fake_systemd = true;
	for (int i = 0; i < 2; i++) {
		fp = fopen(tools[i], "w");
		if (!fp)
			continue;
		fputs(stub, fp);
		fclose(fp);
		chmod(tools[i], 0755);
	}
}

static void fake_systemd_teardown(void)
{
	if (!fake_systemd)
		return;
	/* A failed test leaves the package: it was not here before (main). */
	if (system("dpkg -P portfwd >/dev/null 2>&1") != 0)
		fprintf(stderr, "test_deb: dpkg -P portfwd failed\n");
	unlink(STUB_DIR "/systemctl");
	unlink(STUB_DIR "/deb-systemd-invoke");
	rmdir("/run/systemd/system");
	rmdir("/run/systemd");
	unlink(CALLS);
}

/* The calls so far, then forgotten. */
static char *calls(void)
{
	char *out = sh_expect(0, "cat " CALLS " 2>/dev/null; rm -f " CALLS);

	return out;
}

static bool called(const char *all, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = all; (p = strstr(p, line)); p += n)
		if ((p == all || p[-1] == '\n') && (p[n] == '\n' || !p[n]))
			return true;
	return false;
}

/*
 * A first install starts nothing (the shipped file has no rules); an
 * upgrade try-restarts; a removal stops; an install over a kept file with
 * rules starts the service.
 */
START_TEST(test_start_and_stop)
{
	char cmd[1024], *out;
	unsigned port = h_free_port(SOCK_STREAM, false);

	if (!fake_systemd) {
		fprintf(stderr, "test_start_and_stop: systemd runs here (or its tools are in " STUB_DIR "): not faked, skipped\n");
		return;
	}
	ck_assert_msg(!exists("/etc/portfwd.conf"), "a purge before this test left /etc/portfwd.conf");
	snprintf(cmd, sizeof(cmd), APT_STUBS " install -y -q %s 2>&1", deb());
	sh_ok(cmd);
	out = calls();
	ck_assert_msg(!called(out, "deb-systemd-invoke start portfwd.service"),
		      "a first install, with no rules, started the service:\n%s", out);
	free(out);

	snprintf(cmd, sizeof(cmd),
		 "printf 'rules = ( { name = \"a\"; proto = \"tcp\"; listen = \"127.0.0.1:%u\"; target = \"127.0.0.1:9\"; } );\n' > /etc/portfwd.conf",
		 port);
	sh_ok(cmd);
	snprintf(cmd, sizeof(cmd), APT_STUBS " install -y -q --reinstall -o Dpkg::Options::=--force-confold %s 2>&1", deb());
	sh_ok(cmd);
	out = calls();
	ck_assert_msg(called(out, "deb-systemd-invoke try-restart portfwd.service") &&
			      !called(out, "deb-systemd-invoke start portfwd.service"),
		      "an upgrade must try-restart, not start:\n%s", out);
	free(out);

	sh_ok("dpkg -r portfwd 2>&1");
	out = calls();
	ck_assert_msg(called(out, "deb-systemd-invoke stop portfwd.service"), "a removal must stop:\n%s", out);
	free(out);

	snprintf(cmd, sizeof(cmd), APT_STUBS " install -y -q -o Dpkg::Options::=--force-confold %s 2>&1", deb());
	sh_ok(cmd);
	out = calls();
	ck_assert_msg(called(out, "deb-systemd-invoke start portfwd.service"),
		      "an install over a file with rules must start the service:\n%s", out);
	free(out);
	sh_ok("dpkg -P portfwd 2>&1");
	free(calls());
}
END_TEST

int main(void)
{
	Suite *s = suite_create("deb");
	TCase *tc = tcase_create("deb");
	struct stat sb;

	/* Refused before any test runs: a failing test would not stop the
	 * next ones from removing and purging what is here. */
	if (geteuid() != 0) {
		fprintf(stderr, "test_deb: the package test installs a package: run it as root\n");
		return 1;
	}
	if (lstat("/etc/portfwd.conf", &sb) == 0 ||
	    system("dpkg-query -W -f='${db:Status-Status}\\n' portfwd 2>/dev/null | grep -qv '^not-installed$'") == 0) {
		fprintf(stderr, "test_deb: portfwd or /etc/portfwd.conf is on this machine already: the package test would remove or purge it; it runs only where neither is\n");
		return 1;
	}
	unlink(INSTALLED);

	/* apt-get and the man-db trigger take their time on a busy machine. */
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_install);
	tcase_add_test(tc, test_files);
	tcase_add_test(tc, test_runs);
	tcase_add_test(tc, test_upgrade);
	tcase_add_test(tc, test_remove);
	tcase_add_test(tc, test_purge);
	suite_add_tcase(s, tc);

	tc = tcase_create("start_and_stop");
	tcase_set_timeout(tc, 300);
	tcase_add_unchecked_fixture(tc, fake_systemd_setup, fake_systemd_teardown);
	tcase_add_test(tc, test_start_and_stop);
	suite_add_tcase(s, tc);
	return check_run(s);
}
