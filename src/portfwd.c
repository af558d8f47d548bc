/* portfwd: the daemon's main. Options, start-up order, exit codes. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "exposure.h"
#include "log.h"
#include "version.h"

/* -t --strict: the configuration is valid but has exposure warnings. */
#define PORTFWD_EXIT_WARNINGS 3

static void usage(FILE *out)
{
	fprintf(out,
		"usage: portfwd [-c FILE] [-t [--strict]] [-s SOCKET] [-l LEVEL] [-V] [-h]\n"
		"  -c FILE    configuration file (default %s)\n"
		"  -t         check the configuration and exit: 0 if valid, 1 if not;\n"
		"             exposure warnings are printed and do not count\n"
		"  --strict   with -t: exit %d if the valid configuration has warnings\n"
		"  -s SOCKET  control socket path, overriding daemon.control_socket\n"
		"  -l LEVEL   log level: error, warning, info or debug\n"
		"  -V         print the version and exit\n"
		"  -h         print this help and exit\n"
		"portfwd stays in the foreground and logs to stderr. See portfwd(8).\n",
		CONFIG_DEFAULT_PATH, PORTFWD_EXIT_WARNINGS);
}

/*
 * -t: the exposure warnings and notes of the valid CFG on stderr, then the
 * verdict on stdout. Returns the exit status: 0, or with STRICT
 * PORTFWD_EXIT_WARNINGS if there is a warning (notes never count).
 */
static int check_exposure(const struct config *cfg, bool strict)
{
	struct exposure_list l = { 0 };
	char route[RULE_ROUTE_STRLEN];
	struct exposure_privs privs;
	size_t warnings, notes;

	/* The privileges that count are those portfwd started this way would have. */
	exposure_privs_at_start(cfg, &privs);
	if (exposure_check(cfg, &privs, &l) < 0) {
		fprintf(stderr, "portfwd: out of memory\n");
		exposure_list_free(&l);
		return 1;
	}
	for (size_t i = 0; i < l.count; i++)
		fprintf(stderr, "%s\n", l.items[i].text);
	warnings = exposure_count(&l, EXPOSURE_WARNING);
	notes = exposure_count(&l, EXPOSURE_NOTE);
	printf("%s: configuration is valid, %zu rule%s", cfg->path, cfg->nrules, cfg->nrules == 1 ? "" : "s");
	if (warnings)
		printf(", %zu warning%s", warnings, warnings == 1 ? "" : "s");
	if (notes)
		printf(", %zu note%s", notes, notes == 1 ? "" : "s");
	printf("\n");
	/* Each rule, its ports named and classed (as status shows them). */
	for (size_t i = 0; i < cfg->nrules; i++)
		printf("  %s  %s  %s\n", cfg->rules[i].name, rule_proto_name(cfg->rules[i].proto),
		       rule_format_route(&cfg->rules[i], route, sizeof(route)));
	exposure_list_free(&l);
	if (strict && warnings) {
		fprintf(stderr, "portfwd: --strict: %zu warning%s\n", warnings, warnings == 1 ? "" : "s");
		return PORTFWD_EXIT_WARNINGS;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH, *sock = NULL, *level = NULL;
	struct config_errors errs = { 0 };
	struct config cfg;
	struct daemon d;
	static const struct option longopts[] = { { "strict", no_argument, NULL, 'S' },
						   { NULL, 0, NULL, 0 } };
	bool test = false, strict = false;
	char *abs_path = NULL;
	int opt, rc, lvl = -1;

	while ((opt = getopt_long(argc, argv, "c:ts:l:Vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'S':
			strict = true;
			break;
		case 'c':
			path = optarg;
			break;
		case 't':
			test = true;
			break;
		case 's':
			sock = optarg;
			break;
		case 'l':
			level = optarg;
			break;
		case 'V':
			printf("portfwd %s\n", PORTFWD_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "portfwd: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (strict && !test) {
		fprintf(stderr, "portfwd: --strict goes with -t\n");
		usage(stderr);
		return 2;
	}
	if (level && (lvl = log_level_parse(level)) < 0) {
		fprintf(stderr, "portfwd: -l: \"%s\" is not one of error, warning, info, debug\n", level);
		return 2;
	}
	if (sock && (sock[0] == '\0' || strlen(sock) > 107)) {
		fprintf(stderr, "portfwd: -s: the socket path must be 1-107 characters\n");
		return 2;
	}

	/* The daemon reads the file again at each reload, whatever its working
	 * directory: an absolute name from the start, with symbolic links left
	 * alone, so that the file and the list files it names relative to its
	 * directory are the same ones at the start and at every reload (and a
	 * link pointed elsewhere is followed anew). -t names it as given. */
	if (!test && path[0] != '/') {
		char *cwd = getcwd(NULL, 0);

		if (!cwd || asprintf(&abs_path, "%s/%s", cwd, path) < 0) {
			fprintf(stderr, "portfwd: cannot name %s from the working directory: %s\n", path,
				strerror(errno));
			free(cwd);
			return 1;
		}
		free(cwd);
		path = abs_path;
	}
	rc = config_load(path, &cfg, &errs);
	free(abs_path); /* cfg.path has its own copy */
	if (rc < 0) {
		for (size_t i = 0; i < errs.count; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		if (!test)
			fprintf(stderr, "portfwd: %zu error%s in the configuration; not starting\n",
				errs.count, errs.count == 1 ? "" : "s");
		config_errors_free(&errs);
		return 1;
	}
	if (test) {
		rc = check_exposure(&cfg, strict);
		config_free(&cfg);
		return rc;
	}
	if (sock) {
		free(cfg.control_socket);
		cfg.control_socket = strdup(sock);
		if (!cfg.control_socket) {
			fprintf(stderr, "portfwd: out of memory\n");
			config_free(&cfg);
			return 1;
		}
	}
	log_set_level(lvl >= 0 ? lvl : cfg.log_level);

	/* A peer closing mid-write must give EPIPE, never kill the daemon. */
	signal(SIGPIPE, SIG_IGN);

	if (daemon_start(&d, &cfg) < 0) {
		daemon_stop(&d);
		return 1;
	}
	d.log_level_fixed = lvl >= 0;
	d.socket_fixed = sock != NULL;
	rc = daemon_run(&d);
	daemon_stop(&d);
	return rc;
}
