#include "control.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <grp.h>
#include <limits.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "acceptpause.h"
#include "commands.h"
#include "ctl_proto.h"
#include "daemon.h"
#include "log.h"
#include "version.h"

/* Supplementary groups of a peer we look at, at most. */
#define CONTROL_PEER_GROUPS 64

/* One request line, parsed and allowed. */
struct control_request {
	const struct ctl_cmd *cmd;
	int argc;
	char *argv[CTL_ARGS_MAX];
	bool json;
	bool has_payload;
	size_t payload_len; /* announced by --bytes */
};

struct control_client {
	LIST_ENTRY(control_client) link;
	struct control *ctl;
	struct bufferevent *bev;
	struct event *deadline;                /* the request under way must end by then */
	struct ucred cred;                     /* the peer, from SO_PEERCRED */
	gid_t groups[CONTROL_PEER_GROUPS];     /* its supplementary groups */
	int ngroups;
	bool closing;   /* free once the output is flushed */
	bool throttled; /* reading paused until the client takes its replies */
	bool peer_eof;  /* the client will send nothing more */
	char *waiting_line;               /* a request waiting for its payload */
	struct control_request waiting;   /* it, parsed (argv points into the line) */
};

struct control {
	struct daemon *daemon;
	struct evconnlistener *lev;
	struct acceptpause *pause; /* out of descriptors: accept again later */
	char *path;
	unsigned nclients;
	LIST_HEAD(, control_client) clients;
};

static int control_cmd_hello(int argc, char **argv, struct evbuffer *out, char *err,
			     size_t errlen)
{
	(void)argc;
	if (strcmp(argv[1], "1") != 0) {
		snprintf(err, errlen, "unsupported protocol version \"%.32s\" (this daemon speaks %d)",
			 argv[1], CTL_PROTO_VERSION);
		return -1;
	}
	evbuffer_add_printf(out, "portfwd-ctl %d portfwd %s\n", CTL_PROTO_VERSION, PORTFWD_VERSION);
	return 0;
}

static int control_cmd_help(bool json, struct evbuffer *out)
{
	json_t *cmds = json ? json_array() : NULL;

	for (size_t i = 0; i < CTL_CMD_COUNT; i++) {
		const struct ctl_cmd *c = &ctl_cmds[i];

		if (cmds)
			json_array_append_new(cmds, json_pack("{s:s, s:s, s:s, s:b, s:b}", "name", c->name,
							      "usage", c->usage, "help", c->help,
							      "changes_state", c->mutating,
							      "in_portfwdctl", c->local));
		else
			evbuffer_add_printf(out, "%s%s%s\t%s\n", c->name, c->usage[0] ? " " : "",
					    c->usage, c->help);
	}
	if (cmds) {
		char *text = json_dumps(cmds, JSON_COMPACT);

		json_decref(cmds);
		if (!text)
			return -1;
		evbuffer_add_printf(out, "%s\n", text);
		free(text);
	}
	return 0;
}

static bool control_peer_in_group(const struct control_client *c, gid_t gid)
{
	if (c->cred.gid == gid)
		return true;
	for (int i = 0; i < c->ngroups; i++)
		if (c->groups[i] == gid)
			return true;
	return false;
}

/* Root, the daemon's own user, or a member of daemon.admin_group. */
static bool control_privileged(const struct control_client *c)
{
	const struct daemon *d = c->ctl->daemon;

	return c->cred.uid == 0 || c->cred.uid == geteuid() ||
	       (d->cfg.admin_group && control_peer_in_group(c, d->cfg.admin_gid));
}

/*
 * Who may do what. Reading (status, rules, connections, metrics): the
 * privileged and the socket's group (the daemon's group), which the
 * socket's mode 0660 already limits connecting to. Changing anything
 * (reload, kill, enable, disable, and check, which quotes the daemon's file
 * and takes a payload): root, the daemon's user, and daemon.admin_group.
 */
static bool control_allowed(const struct control_client *c, const struct ctl_cmd *cmd)
{
	return control_privileged(c) || (!cmd->mutating && control_peer_in_group(c, getegid()));
}

/* Takes every --json out of ARGV. Returns the new ARGC; *JSON says if there was one. */
static int control_take_json(int argc, char **argv, bool *json)
{
	int n = 1;

	*json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], CTL_JSON_FLAG) == 0)
			*json = true;
		else
			argv[n++] = argv[i];
	}
	return n;
}

static void control_client_free(struct control_client *c)
{
	LIST_REMOVE(c, link);
	c->ctl->nclients--;
	bufferevent_free(c->bev);
	event_free(c->deadline);
	free(c->waiting_line);
	free(c);
}

/* Frames BODY (the handler's output) and the end line into OUT. */
static void control_reply(struct evbuffer *out, struct evbuffer *body, const char *error)
{
	char *line;
	size_t len;

	while (body && (line = evbuffer_readln(body, &len, EVBUFFER_EOL_LF))) {
		evbuffer_add_printf(out, "%s%s\n", ctl_proto_stuffing(line), line);
		free(line);
	}
	if (error)
		evbuffer_add_printf(out, "%s %s\n", CTL_END_ERROR, error);
	else
		evbuffer_add_printf(out, "%s\n", CTL_END_OK);
}

/*
 * Takes "--bytes N" out of ARGV. Returns the new ARGC, *HAS and *LEN saying
 * whether it was there and N; -1 with ERR if it is there but not "--bytes N"
 * with N a number.
 */
static int control_take_bytes(int argc, char **argv, bool *has, size_t *len, char *err,
			      size_t errlen)
{
	int n = 1;

	*has = false;
	*len = 0;
	for (int i = 1; i < argc; i++) {
		unsigned long long v;
		char *end;

		if (strcmp(argv[i], CTL_BYTES_FLAG) != 0) {
			argv[n++] = argv[i];
			continue;
		}
		errno = 0;
		v = i + 1 < argc ? strtoull(argv[i + 1], &end, 10) : 0;
		if (*has || i + 1 >= argc || errno || *end || !isdigit((unsigned char)argv[i + 1][0])) {
			snprintf(err, errlen, "%s takes one byte count: %s N", CTL_BYTES_FLAG, CTL_BYTES_FLAG);
			return -1;
		}
		*has = true;
		*len = v > CTL_CHECK_MAX ? (size_t)CTL_CHECK_MAX + 1 : (size_t)v;
		i++;
	}
	return n;
}

/*
 * Parses and judges LINE (split in place) into R. Returns 0 if it is to
 * run, 1 for an empty line (nothing asked, nothing answered), -1 with the
 * refusal in ERR.
 */
static int control_parse(struct control_client *c, char *line, struct control_request *r,
			 char *err, size_t errlen)
{
	const struct daemon *d = c->ctl->daemon;
	int matches;

	memset(r, 0, sizeof(*r));
	for (char *p = line; *p; p++) {
		if ((unsigned char)*p < 0x20 && *p != '\t') {
			snprintf(err, errlen, "request contains control characters");
			return -1;
		}
	}
	r->argc = ctl_proto_split(line, r->argv, CTL_ARGS_MAX);
	if (r->argc == 0)
		return 1;
	if (r->argc < 0) {
		snprintf(err, errlen, "too many arguments (at most %d)", CTL_ARGS_MAX - 1);
		return -1;
	}
	r->cmd = ctl_proto_find(r->argv[0], &matches);
	if (!r->cmd) {
		char names[256];

		snprintf(err, errlen, "%s command \"%.64s\" (commands: %s)",
			 matches > 1 ? "ambiguous" : "unknown", r->argv[0],
			 ctl_proto_names(matches > 1 ? r->argv[0] : "", names, sizeof(names)));
		return -1;
	}
	if (!control_allowed(c, r->cmd)) {
		log_warning("control: refused \"%s\" from uid %u pid %d", r->cmd->name,
			    (unsigned)c->cred.uid, (int)c->cred.pid);
		snprintf(err, errlen, "permission denied: \"%s\" changes the daemon; it is allowed to root, the daemon's user%s%s",
			 r->cmd->name, d->cfg.admin_group ? " and the group " : "",
			 d->cfg.admin_group ? d->cfg.admin_group : "");
		return -1;
	}
	r->argc = control_take_json(r->argc, r->argv, &r->json);
	r->argc = control_take_bytes(r->argc, r->argv, &r->has_payload, &r->payload_len, err, errlen);
	if (r->argc < 0)
		return -1;
	if (r->has_payload && !r->cmd->payload) {
		snprintf(err, errlen, "%s takes no %s", r->cmd->name, CTL_BYTES_FLAG);
		return -1;
	}
	if (r->payload_len > CTL_CHECK_MAX) {
		snprintf(err, errlen, "%s: the text is larger than %d bytes", r->cmd->name, CTL_CHECK_MAX);
		return -1;
	}
	if (r->argc - 1 < r->cmd->min_args || r->argc - 1 > r->cmd->max_args) {
		snprintf(err, errlen, "usage: %s%s%s", r->cmd->name, r->cmd->usage[0] ? " " : "",
			 r->cmd->usage);
		return -1;
	}
	return 0;
}

/* Runs R with its PAYLOAD (or NULL) and queues the reply. */
static void control_run(struct control_client *c, struct control_request *r, const char *payload,
			size_t len)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct evbuffer *body = evbuffer_new();
	char err[COMMANDS_ERROR_MAX] = "";

	if (!body) {
		control_reply(out, NULL, "out of memory");
		return;
	}
	if (r->cmd->mutating)
		log_info("control: %s from uid %u pid %d", r->cmd->name, (unsigned)c->cred.uid,
			 (int)c->cred.pid);
	else
		log_debug("control: %s", r->cmd->name);
	if (r->cmd->id == CTL_CMD_HELLO)
		control_cmd_hello(r->argc, r->argv, body, err, sizeof(err));
	else if (r->cmd->id == CTL_CMD_HELP) {
		if (control_cmd_help(r->json, body) < 0)
			snprintf(err, sizeof(err), "out of memory");
	} else
		commands_run(c->ctl->daemon, r->cmd->id, r->argc, r->argv, r->json, payload, len, body,
			     err, sizeof(err));
	control_reply(out, body, err[0] ? err : NULL);
	evbuffer_free(body);
}

/*
 * Answers the request LINE, or keeps it (returns true: the caller must not
 * free it) until its payload has arrived. A refused request that announced
 * a payload closes the connection: its bytes cannot be told from requests.
 */
static bool control_request(struct control_client *c, char *line)
{
	bool announced = strstr(line, CTL_BYTES_FLAG) != NULL;
	char err[256] = "";
	int rc;

	rc = control_parse(c, line, &c->waiting, err, sizeof(err));
	if (rc > 0)
		return false;
	if (rc < 0) {
		control_reply(bufferevent_get_output(c->bev), NULL, err);
		if (announced)
			c->closing = true;
		return false;
	}
	if (c->waiting.has_payload) {
		c->waiting_line = line;
		return true;
	}
	control_run(c, &c->waiting, NULL, 0);
	return false;
}

/* The payload of the waiting request, if it has all arrived: runs it. */
static void control_payload(struct control_client *c, struct evbuffer *in)
{
	size_t len = c->waiting.payload_len;
	char *text;

	if (evbuffer_get_length(in) < len)
		return;
	text = malloc(len + 1);
	if (!text) {
		control_reply(bufferevent_get_output(c->bev), NULL, "out of memory");
		c->closing = true;
		return;
	}
	evbuffer_remove(in, text, len);
	text[len] = '\0';
	evtimer_del(c->deadline);
	control_run(c, &c->waiting, text, len);
	free(text);
	free(c->waiting_line);
	c->waiting_line = NULL;
}

static void control_read_cb(struct bufferevent *bev, void *arg)
{
	struct control_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while (!c->closing) {
		/* A client that sends requests but does not read the replies
		 * is not read either: its replies never pile up in the daemon. */
		if (evbuffer_get_length(bufferevent_get_output(bev)) > CONTROL_MAX_PENDING) {
			c->throttled = true;
			bufferevent_disable(bev, EV_READ);
			/* Not the client's delay: the write timeout covers a client
			 * that does not read. */
			evtimer_del(c->deadline);
			return;
		}
		if (c->waiting_line) {
			control_payload(c, in);
			if (c->waiting_line)
				break; /* more to come */
			continue;
		}
		line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
		if (!line)
			break;
		if (len > CTL_REQUEST_MAX || strlen(line) != len) {
			control_reply(bufferevent_get_output(bev), NULL,
				      strlen(line) != len ? "request contains a NUL byte"
							  : "request longer than 4096 bytes");
			c->closing = true;
		} else if (control_request(c, line)) {
			continue; /* kept, waiting for its payload */
		}
		/* A request is complete: what follows is the next one's deadline. */
		evtimer_del(c->deadline);
		free(line);
	}
	/* A line with no end yet: refuse it before it grows without bound.
	 * (Room for the CR of a CRLF: a read may end between the two.) */
	if (!c->closing && !c->waiting_line && evbuffer_get_length(in) > CTL_REQUEST_MAX + 1) {
		control_reply(bufferevent_get_output(bev), NULL, "request longer than 4096 bytes");
		c->closing = true;
	}
	/* Every request the client sent before its EOF has been answered. */
	if (c->peer_eof && !c->closing) {
		if (c->waiting_line) {
			char msg[128];

			snprintf(msg, sizeof(msg), "%s: the connection ended after %zu of %zu bytes",
				 c->waiting.cmd->name, evbuffer_get_length(in), c->waiting.payload_len);
			control_reply(bufferevent_get_output(bev), NULL, msg);
		}
		c->closing = true;
	}
	if (!c->closing && (evbuffer_get_length(in) > 0 || c->waiting_line) &&
	    !evtimer_pending(c->deadline, NULL)) {
		struct timeval tv = { CONTROL_REQUEST_SECONDS, 0 };

		evtimer_add(c->deadline, &tv);
	}
	if (c->closing) {
		bufferevent_disable(bev, EV_READ);
		evtimer_del(c->deadline);
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			control_client_free(c);
	}
}

/* A request begun CONTROL_REQUEST_SECONDS ago is still not complete: a
 * client trickling bytes must not hold a slot, whatever the idle timeout. */
static void control_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control_client *c = arg;
	char msg[128];

	(void)fd;
	(void)what;
	if (c->closing)
		return; /* already said why */
	snprintf(msg, sizeof(msg), "request not complete within %d seconds", CONTROL_REQUEST_SECONDS);
	control_reply(bufferevent_get_output(c->bev), NULL, msg);
	c->closing = true;
	bufferevent_disable(c->bev, EV_READ);
}

static void control_write_cb(struct bufferevent *bev, void *arg)
{
	struct control_client *c = arg;

	if (c->closing) {
		control_client_free(c);
		return;
	}
	if (c->throttled) {
		c->throttled = false;
		bufferevent_enable(bev, EV_READ);
		control_read_cb(bev, c); /* requests already buffered */
	}
}

static void control_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct control_client *c = arg;

	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
		/* Done asking: answer what is buffered, send it, then close. */
		c->peer_eof = true;
		control_read_cb(bev, c);
		return;
	}
	/* Silent with a request under way: the idle timer and the deadline
	 * end the same way, with the reason. */
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && !c->closing &&
	    evtimer_pending(c->deadline, NULL)) {
		evtimer_del(c->deadline);
		control_deadline_cb(-1, 0, c);
		return;
	}
	control_client_free(c);
}

/*
 * Who is connecting: SO_PEERCRED, and SO_PEERGROUPS for the supplementary
 * groups (a peer in more than CONTROL_PEER_GROUPS is judged by its primary
 * group alone). An unknown peer gets uid -1, nobody's: no rights.
 */
static void control_peer(struct control_client *c, int fd)
{
	socklen_t len = sizeof(c->cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0)
		c->cred = (struct ucred){ .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
	len = sizeof(c->groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) == 0)
		c->ngroups = (int)(len / sizeof(c->groups[0]));
}

/*
 * Whether C (not yet counted) may take a slot; if not, the refusal in ERR.
 * The last CONTROL_RESERVED slots are kept for the privileged, and a uid
 * other than root's and the daemon's holds at most CONTROL_PER_UID, so one
 * local user cannot keep `systemctl reload` (or anyone else) out.
 */
static bool control_slot_free(const struct control_client *c, char *err, size_t errlen)
{
	const struct control *ctl = c->ctl;
	const struct control_client *o;
	unsigned mine = 0;

	if (ctl->nclients >= CONTROL_MAX_CLIENTS) {
		snprintf(err, errlen, "too many control clients, try again");
		return false;
	}
	if (!control_privileged(c) && ctl->nclients >= CONTROL_MAX_CLIENTS - CONTROL_RESERVED) {
		snprintf(err, errlen, "too many control clients: the last %d of %d are kept for root, the daemon's user and daemon.admin_group; try again",
			 CONTROL_RESERVED, CONTROL_MAX_CLIENTS);
		return false;
	}
	if (c->cred.uid == 0 || c->cred.uid == geteuid())
		return true;
	LIST_FOREACH(o, &ctl->clients, link)
		mine += o->cred.uid == c->cred.uid;
	if (mine >= CONTROL_PER_UID) {
		snprintf(err, errlen, "too many control connections from uid %u (at most %d per user); close one and try again",
			 (unsigned)c->cred.uid, CONTROL_PER_UID);
		return false;
	}
	return true;
}

static void control_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
			      struct sockaddr *sa, int salen, void *arg)
{
	struct event_base *base = evconnlistener_get_base(lev);
	struct control *ctl = arg;
	struct control_client *c;
	struct timeval idle = { CONTROL_IDLE_SECONDS, 0 };
	char err[256];

	(void)sa;
	(void)salen;
	acceptpause_accepted(ctl->pause);
	c = calloc(1, sizeof(*c));
	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	c->ctl = ctl;
	control_peer(c, fd);
	if (!control_slot_free(c, err, sizeof(err))) {
		char line[300];
		int len = snprintf(line, sizeof(line), "%s %s\n", CTL_END_ERROR, err);

		log_debug("control: refused a connection from uid %u pid %d: %s",
			  (unsigned)c->cred.uid, (int)c->cred.pid, err);
		if (send(fd, line, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			log_debug("control: %s", strerror(errno));
		evutil_closesocket(fd);
		free(c);
		return;
	}
	if (!(c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE)) ||
	    !(c->deadline = evtimer_new(base, control_deadline_cb, c))) {
		if (c->bev)
			bufferevent_free(c->bev);
		else
			evutil_closesocket(fd);
		free(c);
		return;
	}
	LIST_INSERT_HEAD(&ctl->clients, c, link);
	ctl->nclients++;
	bufferevent_setcb(c->bev, control_read_cb, control_write_cb, control_event_cb, c);
	bufferevent_set_timeouts(c->bev, &idle, &idle);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/*
 * Decides what to do with an existing PATH: 0 if it is absent or a stale
 * socket (removed), -1 with ERR and errno if a daemon answers (EADDRINUSE),
 * it is not a socket (EEXIST), or a step fails.
 */
static int control_claim_path(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, r, e;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		errno = e;
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket; remove it or choose another control_socket", path);
		errno = EEXIST;
		return -1;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		e = errno;
		snprintf(err, errlen, "socket: %s", strerror(e));
		errno = e;
		return -1;
	}
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	e = errno;
	close(fd);
	if (r == 0) {
		snprintf(err, errlen, "another portfwd is already running on %s (stop it first, or use another control socket with -s)", path);
		errno = EADDRINUSE;
		return -1;
	}
	if (e != ECONNREFUSED) {
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		errno = e;
		return -1;
	}
	log_info("control: replacing the stale socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT) {
		e = errno;
		snprintf(err, errlen, "cannot remove the stale socket %s: %s", path, strerror(e));
		errno = e;
		return -1;
	}
	return 0;
}

/* Claims PATH and binds FD to it: the node is created by bind, with the
 * filesystem identity in force, mode 0660. Returns 0, or -1 with ERR and
 * errno. */
static int control_bind(int fd, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	mode_t old;
	int r, e;

	if (control_claim_path(path, err, errlen) < 0)
		return -1;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	old = umask(0117);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	e = errno;
	umask(old);
	if (r < 0) {
		snprintf(err, errlen, "cannot create the control socket %s: %s%s", path, strerror(e),
			 e == ENOENT ? " (its directory does not exist)" : "");
		errno = e;
	}
	return r;
}

/* PATH's directory into DIR ("." for a bare name) and, if BASE, its last
 * component into BASE; trailing slashes do not count ("/run/x/" is "/run/x"). */
static void control_split(const char *path, char *dir, size_t len, char *base, size_t baselen)
{
	char p[PATH_MAX];
	size_t n;
	char *slash;

	snprintf(p, sizeof(p), "%s", path);
	for (n = strlen(p); n > 1 && p[n - 1] == '/'; n--)
		p[n - 1] = '\0';
	slash = strrchr(p, '/');
	if (base)
		snprintf(base, baselen, "%s", slash ? slash + 1 : p);
	if (!slash)
		snprintf(dir, len, ".");
	else if (slash == p)
		snprintf(dir, len, "/");
	else
		snprintf(dir, len, "%.*s", (int)(slash - p), p);
}

/*
 * Takes the filesystem identity UID:GID for the path operations that
 * follow (the euid is still root; effective file capabilities go while it
 * is not 0). Per thread: control_open runs before the workers exist.
 * Returns 0, or -1: then call control_fsid_restore all the same.
 */
static int control_fsid(uid_t uid, gid_t gid)
{
	setfsgid(gid);
	setfsuid(uid);
	/* Neither call reports failure: an invalid id asks for the current one. */
	if ((uid_t)setfsuid((uid_t)-1) != uid || (gid_t)setfsgid((gid_t)-1) != gid)
		return -1;
	return 0;
}

/* Back to root's filesystem identity; going on with another would be
 * wrong everywhere, so a failure ends the daemon. */
static void control_fsid_restore(void)
{
	if (control_fsid(0, 0) < 0) {
		log_error("control: cannot take root's filesystem identity back");
		abort();
	}
}

/* True if only root can change which names DIR holds: it is root's, and
 * writable by root alone, or sticky (others may add names, not replace
 * root's). A POSIX ACL granting writes shows in the group bits (its mask). */
static bool control_root_only(const struct stat *st)
{
	return S_ISDIR(st->st_mode) && st->st_uid == 0 &&
	       (!(st->st_mode & (S_IWGRP | S_IWOTH)) || (st->st_mode & S_ISVTX));
}

/* Links followed while resolving a socket's directory, at most. */
#define CONTROL_MAX_LINKS 40

/*
 * Opens DIR (O_PATH) for root to act in, and writes its path without
 * links into RESOLVED (LEN bytes). DIR (relative to the working directory
 * if not absolute) is resolved from "/" one component at a time, never
 * letting the kernel follow a link, and taken only if no one but root can
 * change where any name on the way leads: "/" and every directory passed
 * are root's alone (control_root_only), and a link is followed only if it
 * is root's (in a directory root's alone, so no one else can swap it; as
 * /var/run -> /run). Returns the descriptor, or -1 with errno: EPERM when
 * the path is not root's alone, ENOENT when a directory is missing.
 */
static int control_root_dir(const char *dir, char *resolved, size_t len)
{
	char rem[2 * PATH_MAX], cur[PATH_MAX] = "";
	struct stat st;
	int fd, links = 0;

	if (dir[0] == '/') {
		snprintf(rem, sizeof(rem), "%s", dir);
	} else {
		char cwd[PATH_MAX];

		if (!getcwd(cwd, sizeof(cwd)))
			return -1;
		if ((size_t)snprintf(rem, sizeof(rem), "%s/%s", cwd, dir) >= sizeof(rem)) {
			errno = ENAMETOOLONG;
			return -1;
		}
	}
	fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		goto fail;
	if (!control_root_only(&st))
		goto perm;
	for (char *p = rem;;) {
		char comp[NAME_MAX + 1], target[PATH_MAX], rest[2 * PATH_MAX];
		size_t n;
		ssize_t tl;
		int next;

		p += strspn(p, "/");
		if (!*p)
			break;
		n = strcspn(p, "/");
		if (n > NAME_MAX) {
			errno = ENAMETOOLONG;
			goto fail;
		}
		memcpy(comp, p, n);
		comp[n] = '\0';
		p += n;
		if (strcmp(comp, ".") == 0)
			continue;
		/* Up: every directory above this one was checked on the way down. */
		next = openat(fd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 || fstat(next, &st) < 0) {
			if (next >= 0)
				close(next);
			goto fail;
		}
		if (S_ISLNK(st.st_mode)) {
			close(next);
			if (st.st_uid != 0 || ++links > CONTROL_MAX_LINKS)
				goto perm;
			tl = readlinkat(fd, comp, target, sizeof(target) - 1);
			if (tl < 0)
				goto fail;
			target[tl] = '\0';
			snprintf(rest, sizeof(rest), "%s", p);
			if ((size_t)snprintf(rem, sizeof(rem), "%s/%s", target, rest) >= sizeof(rem)) {
				errno = ENAMETOOLONG;
				goto fail;
			}
			p = rem;
			if (target[0] == '/') {
				close(fd);
				cur[0] = '\0';
				fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
				if (fd < 0)
					goto fail;
			}
			continue;
		}
		close(fd);
		fd = next;
		if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			goto fail;
		}
		if (!control_root_only(&st))
			goto perm;
		if (strcmp(comp, "..") == 0) {
			char *slash = strrchr(cur, '/');

			if (slash)
				*slash = '\0';
		} else if (strlen(cur) + 1 + n < sizeof(cur)) {
			strcat(cur, "/");
			strcat(cur, comp);
		} else {
			errno = ENAMETOOLONG;
			goto fail;
		}
	}
	if (strlen(cur[0] ? cur : "/") >= len) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	snprintf(resolved, len, "%s", cur[0] ? cur : "/");
	return fd;
perm:
	errno = EPERM;
fail:
	if (fd >= 0) {
		int e = errno;

		close(fd);
		errno = e;
	}
	return -1;
}

/*
 * Makes directory NAME in PFD, mode 0755, owned by OWNER_UID (the identity
 * in force) and then given to GIVE_UID:GIVE_GID through its descriptor if
 * GIVE_UID is not -1, never by name. On failure it is removed again.
 * Returns 0, or -1 (errno).
 */
static int control_mkdir_in(int pfd, const char *name, uid_t owner_uid, uid_t give_uid,
			    gid_t give_gid)
{
	struct stat st;
	int dfd, e;

	if (mkdirat(pfd, name, 0700) < 0)
		return -1;
	dfd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		goto fail;
	/* fchmod: the umask would strip the bits others need to reach the socket. */
	if (fstat(dfd, &st) < 0)
		goto fail;
	if (st.st_uid != owner_uid) {
		errno = EPERM; /* not the directory just made */
		goto fail;
	}
	if ((give_uid != (uid_t)-1 && fchown(dfd, give_uid, give_gid) < 0) || fchmod(dfd, 0755) < 0)
		goto fail;
	close(dfd);
	return 0;
fail:
	e = errno;
	if (dfd >= 0)
		close(dfd);
	unlinkat(pfd, name, AT_REMOVEDIR);
	errno = e;
	return -1;
}

/*
 * Creates PATH's missing directory, as systemd's RuntimeDirectory= would.
 * With OWNER (root, for the user UID:GID): by root under a parent that is
 * root's alone (control_root_dir), relative to it, then given to the user
 * through its descriptor; under any other parent, by the user's own
 * filesystem identity, as the user could. Returns 0, or -1 (errno).
 */
static int control_make_dir(const char *path, bool owner, uid_t uid, gid_t gid)
{
	char dir[PATH_MAX], parent[PATH_MAX], name[PATH_MAX], real[PATH_MAX];
	int pfd, r, e;

	control_split(path, dir, sizeof(dir), NULL, 0);
	control_split(dir, parent, sizeof(parent), name, sizeof(name));
	if (!owner) {
		pfd = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
		r = pfd < 0 ? -1 : control_mkdir_in(pfd, name, geteuid(), (uid_t)-1, (gid_t)-1);
	} else if ((pfd = control_root_dir(parent, real, sizeof(real))) >= 0) {
		r = control_mkdir_in(pfd, name, 0, uid, gid);
	} else if (errno == EPERM) {
		/* Not root's alone: the user's to make, so made as the user. */
		if (control_fsid(uid, gid) == 0) {
			pfd = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
			r = pfd < 0 ? -1 : control_mkdir_in(pfd, name, uid, (uid_t)-1, (gid_t)-1);
		} else {
			r = -1;
		}
		e = errno;
		control_fsid_restore();
		errno = e;
	} else {
		r = -1;
	}
	e = errno;
	if (pfd >= 0)
		close(pfd);
	errno = e;
	if (r == 0)
		log_info("control: created the directory %s", dir);
	return r;
}

/* Claims PATH and binds FD there with the identity UID:GID (OWNER) or
 * root's. Returns 0, or -1 with ERR and errno. */
static int control_bind_as(int fd, const char *path, bool owner, uid_t uid, gid_t gid, char *err,
			   size_t errlen)
{
	int r, e;

	if (owner && control_fsid(uid, gid) < 0) {
		control_fsid_restore();
		snprintf(err, errlen, "cannot take uid %u's filesystem identity", (unsigned)uid);
		return -1;
	}
	r = control_bind(fd, path, err, errlen);
	e = errno;
	if (owner)
		control_fsid_restore();
	errno = e;
	return r;
}

/*
 * Binds FD at PATH, making its directory if missing. With OWNER (started
 * as root, the daemon will become UID:GID), see control_open for why every
 * step on the path runs as that user unless the path is root's alone.
 */
static int control_bind_path(int fd, const char *path, bool owner, uid_t uid, gid_t gid,
			     char *err, size_t errlen)
{
	char dir[PATH_MAX], base[PATH_MAX], real[PATH_MAX];
	char full[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int r, dfd;

	/* The daemon gives its supplementary groups up with root anyway
	 * (privs_drop); without them the identity below is the user's. */
	if (owner && setgroups(0, NULL) < 0) {
		snprintf(err, errlen, "setgroups: %s", strerror(errno));
		return -1;
	}
	r = control_bind_as(fd, path, owner, uid, gid, err, errlen);
	if (r < 0 && errno == ENOENT) {
		if (control_make_dir(path, owner, uid, gid) < 0) {
			int e = errno;

			control_split(path, dir, sizeof(dir), NULL, 0);
			snprintf(err, errlen, "cannot create the control socket %s: cannot make its directory %s: %s%s",
				 path, dir, strerror(e),
				 owner && (e == EPERM || e == EACCES)
					 ? " (root makes it only where every directory above is root's alone, else the daemon's user must be able to)"
					 : "");
			return -1;
		}
		r = control_bind_as(fd, path, owner, uid, gid, err, errlen);
	}
	if (r == 0 || !owner || (errno != EACCES && errno != EPERM))
		return r;
	/*
	 * The user may not create the socket there. Root does it only where no
	 * one but root can change what the names on the way lead to; then it
	 * binds and gives the node away, never following a link.
	 */
	control_split(path, dir, sizeof(dir), base, sizeof(base));
	dfd = control_root_dir(dir, real, sizeof(real));
	if (dfd < 0) {
		snprintf(err + strlen(err), errlen - strlen(err),
			 " (as uid %u, the daemon's user; root does not act there either, as %s or a directory above it is not root's alone)",
			 (unsigned)uid, dir);
		return -1;
	}
	/* By the resolved name: every directory on it is root's alone. */
	if ((size_t)snprintf(full, sizeof(full), "%s/%s", strcmp(real, "/") ? real : "", base) >=
	    sizeof(full)) {
		snprintf(err, errlen, "control socket path too long once resolved: %s/%s", real, base);
		close(dfd);
		return -1;
	}
	r = control_bind(fd, full, err, errlen);
	if (r == 0 && fchownat(dfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
		snprintf(err, errlen, "cannot give the control socket %s to uid %u: %s", path,
			 (unsigned)uid, strerror(errno));
		unlinkat(dfd, base, 0);
		r = -1;
	}
	close(dfd);
	return r;
}

/* Removes the socket just made when start-up fails after all: as the user
 * when it is the user's (a socket left in root's directory is replaced by
 * the next start). */
static void control_unlink(const char *path, bool owner, uid_t uid, gid_t gid)
{
	if (owner && control_fsid(uid, gid) < 0) {
		control_fsid_restore();
		return;
	}
	unlink(path);
	if (owner)
		control_fsid_restore();
}

/*
 * Who owns the socket, and why no path is ever chowned by name.
 *
 * Started as root with daemon.user, the daemon becomes that user once
 * bound, so the socket must be the user's (its group may connect, 0660;
 * the user removes it at exit). Its directory is often the user's
 * (RuntimeDirectory=, or made here), and root must never act on a name
 * the user can change: between bind and a chown(PATH), the user could put
 * a symlink or a hard link to /etc/shadow or docker.sock in its place, in
 * the socket's directory or in any directory above it. So the stale-socket
 * check, its removal and the bind run with the user's filesystem identity,
 * and bind creates the node already the user's. Root acts itself only on
 * a path that is root's alone from "/" down (control_root_dir): it creates
 * a missing directory there (and gives it through a descriptor), and if
 * the user may not create the socket in such a directory, root binds and
 * gives the node with fchownat(AT_SYMLINK_NOFOLLOW).
 */
struct control *control_open(struct event_base *base, const char *path, uid_t uid, gid_t gid,
			     struct daemon *d, char *err, size_t errlen)
{
	bool owner = geteuid() == 0 && uid != (uid_t)-1;
	struct sockaddr_un sun;
	struct control *ctl;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "control socket path too long: %s", path);
		return NULL;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return NULL;
	}
	if (control_bind_path(fd, path, owner, uid, gid, err, errlen) < 0) {
		close(fd);
		return NULL;
	}
	if (listen(fd, 16) < 0) {
		snprintf(err, errlen, "listen on %s: %s", path, strerror(errno));
		close(fd);
		control_unlink(path, owner, uid, gid);
		return NULL;
	}
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl || !(ctl->path = strdup(path))) {
		free(ctl);
		close(fd);
		control_unlink(path, owner, uid, gid);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ctl->daemon = d;
	LIST_INIT(&ctl->clients);
	ctl->lev = evconnlistener_new(base, control_accept_cb, ctl,
				      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (!ctl->lev || !(ctl->pause = acceptpause_new(ctl->lev, "control"))) {
		if (!ctl->lev)
			close(fd);
		control_close(ctl);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	log_info("control: listening on %s", path);
	return ctl;
}

void control_close(struct control *ctl)
{
	if (!ctl)
		return;
	while (!LIST_EMPTY(&ctl->clients))
		control_client_free(LIST_FIRST(&ctl->clients));
	acceptpause_free(ctl->pause);
	if (ctl->lev)
		evconnlistener_free(ctl->lev);
	unlink(ctl->path);
	free(ctl->path);
	free(ctl);
}
