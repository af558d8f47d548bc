/*
 * Reading /etc/portfwd.conf (libconfig syntax) into plain structs.
 * Every problem found is collected as "FILE:LINE: message"; nothing stops
 * at the first one.
 */
#ifndef PORTFWD_CONFIG_H
#define PORTFWD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "access.h"
#include "ctl_proto.h"
#include "rule.h"

#define CONFIG_DEFAULT_PATH "/etc/portfwd.conf"
#define CONFIG_DEFAULT_SOCKET CTL_DEFAULT_SOCKET
#define CONFIG_MAX_WORKERS 64 /* connection ids give the worker 6 bits (worker.h) */
/* daemon.max_tracked_sources: entries of the per-source table (sources.h),
 * 64 bytes each; `portfwdctl sources` reads all of them on the main loop. */
#define CONFIG_DEFAULT_TRACKED_SOURCES 65536
#define CONFIG_MIN_TRACKED_SOURCES 256
#define CONFIG_MAX_TRACKED_SOURCES 1048576

/* daemon.resolvers: at most this many. */
#define CONFIG_MAX_RESOLVERS 8

/*
 * daemon.http: the read-only HTTP endpoint (http.h), off unless enabled.
 * Its own allow and deny (defaults' do not apply: it is not a rule).
 */
#define CONFIG_HTTP_HOSTS 16
#define CONFIG_HTTP_HOST_MAX 253
struct config_http {
	bool enabled;
	/* Names the Host header may give besides addresses and localhost. */
	char hosts[CONFIG_HTTP_HOSTS][CONFIG_HTTP_HOST_MAX + 1];
	size_t nhosts;
	struct sockaddr_storage listen;
	socklen_t listen_len;
	unsigned line;                /* of its listen key, for messages */
	struct access_policy *access; /* NULL: everyone who can reach it */
};

struct config {
	char *path;
	char *control_socket;
	int log_level;
	bool log_connections;
	unsigned workers; /* 0: one per CPU */
	double drain_timeout; /* seconds a removed rule's connections may go on; 0 = no limit */
	/* Who to run as once the listeners are bound, when started as root. */
	char *user;           /* NULL: stay as started */
	char *group;          /* NULL: the user's primary group */
	uid_t uid;            /* resolved at load, valid when user is set */
	gid_t gid;
	char *admin_group;    /* may also change things through the control socket */
	gid_t admin_gid;
	bool allow_root;      /* false: refuse to run as root with no user */
	unsigned max_tracked_sources; /* entries of the per-source table; fixed at start */
	/* daemon.resolvers: name servers instead of /etc/resolv.conf's (fixed
	 * at start). */
	char *resolvers[CONFIG_MAX_RESOLVERS];
	size_t nresolvers;
	struct config_http http;
	struct rule_settings defaults;
	struct rule_config *rules;
	size_t nrules;
	struct access_list *lists; /* the named lists (access.h), for status */
	size_t nlists;
};

struct config_errors {
	char **msgs;
	size_t count;
	long *lines; /* per message, the configuration's line it sorts at; -1: the one it names */
};

/* True if sockets for the endpoint H and the TCP rule R would collide
 * (the same port, one of R's, at the same address or a wildcard). */
bool config_http_collides(const struct config_http *h, const struct rule_config *r);

/*
 * Reads and validates PATH, a regular file of at most CTL_CHECK_MAX bytes
 * (opened without blocking: a FIFO is refused, never waited on). Its
 * @include directives are followed. Returns 0 with CFG filled (free it
 * with config_free), or -1 with at least one message in ERRS and CFG empty.
 * Rules whose traffic would come back to them (forwarding loops) are
 * errors; finding those may read this host's addresses (getifaddrs(3)).
 */
int config_load(const char *path, struct config *cfg,
		struct config_errors *errs);

/*
 * The same for TEXT (LEN bytes and a NUL) that a control client sent,
 * LABEL naming it in the messages (LABEL:LINE: message). Opens nothing:
 * text with an @include directive (or a NUL byte) is refused with its line.
 */
int config_load_text(const char *label, const char *text, size_t len, struct config *cfg,
		     struct config_errors *errs);

void config_free(struct config *cfg);

/* A message, with its control characters and backslashes written as
 * libconfig reads them (a value quoted in it may hold any byte). */
void config_errors_add(struct config_errors *errs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends SRC's messages to DST as they are (written out already). */
void config_errors_copy(struct config_errors *dst, const struct config_errors *src);
/* A message about another file (a list file's "LISTFILE:LINE: ..."), which
 * sorts with the configuration's LINE that named that file. */
void config_errors_add_at(struct config_errors *errs, long line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void config_errors_free(struct config_errors *errs);

#endif
