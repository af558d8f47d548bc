#include "config_access.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* A list file's bad lines shown one by one; the rest are counted. */
#define CONFIG_ACCESS_FILE_ERRORS 20
/* The characters of a rule's entries kept to show (rules, status). */
#define CONFIG_ACCESS_TEXT_MAX 240

enum config_list_state {
	CONFIG_LIST_NEW,
	CONFIG_LIST_BUSY, /* being read: met again, it contains itself */
	CONFIG_LIST_DONE,
};

struct config_list {
	struct access_list info;
	const config_setting_t *s;
	enum config_list_state state;
};

/* A rule's entries read once: many rules naming the same lists share the set. */
struct config_memo {
	char *text;
	struct access_set *set;
};

struct config_access {
	const char *path;
	bool client;
	struct config_errors *errs;
	struct config_list *lists;
	size_t nlists;
	struct access_policy *defaults;
	struct config_memo *memo;
	size_t nmemo;
};

static void config_access_err(struct config_access *ca, const config_setting_t *s,
			      const char *scope, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* "FILE:LINE: SCOPE: message", the line being that of setting S. */
static void config_access_err(struct config_access *ca, const config_setting_t *s,
			      const char *scope, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	config_errors_add(ca->errs, "%s:%u: %s: %s", ca->path, s ? config_setting_source_line(s) : 0,
			  scope, msg);
}

struct config_access *config_access_new(const char *path, bool client, struct config_errors *errs)
{
	struct config_access *ca = calloc(1, sizeof(*ca));

	if (!ca) {
		config_errors_add(errs, "%s: out of memory", path);
		return NULL;
	}
	ca->path = path;
	ca->client = client;
	ca->errs = errs;
	return ca;
}

/* ", got a string" and the like, for a value of the wrong kind. */
static const char *config_access_got(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_STRING:
		return ", got a string";
	case CONFIG_TYPE_GROUP:
		return ", got a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
	case CONFIG_TYPE_FLOAT:
		return ", got a number";
	case CONFIG_TYPE_BOOL:
		return ", got a boolean";
	default:
		return "";
	}
}

static struct config_list *config_access_find(struct config_access *ca, const char *name)
{
	for (size_t i = 0; i < ca->nlists; i++)
		if (strcmp(ca->lists[i].info.name, name) == 0)
			return &ca->lists[i];
	return NULL;
}

/* "lan, vpn" for a message about an unknown list. */
static void config_access_names(struct config_access *ca, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < ca->nlists && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
					 ca->lists[i].info.name);
}

static void config_access_read_list(struct config_access *ca, struct config_list *l);

/*
 * Adds the addresses of "@NAME" (a built-in or a named list) to B; the
 * named list's set goes to *SET too. Returns 0, or -1 after saying why
 * (AT, SCOPE and KEY name the entry).
 */
static int config_access_ref(struct config_access *ca, const char *name, const config_setting_t *at,
			     const char *scope, const char *key, struct access_builder *b,
			     const struct access_set **set)
{
	struct config_list *l = config_access_find(ca, name);
	char names[256];

	*set = NULL;
	if (!l) {
		if (access_builtin_add(name, b) == 0)
			return 0;
		config_access_names(ca, names, sizeof(names));
		config_access_err(ca, at, scope, "%s\"@%s\": no list \"%s\" (lists: %s%sbuilt in: %s)",
				  key, name, name, names, names[0] ? "; " : "", ACCESS_BUILTINS);
		return -1;
	}
	if (l->state == CONFIG_LIST_BUSY) {
		config_access_err(ca, at, scope, "%s\"@%s\": a list may not contain itself, directly or through other lists",
				  key, name);
		return -1;
	}
	config_access_read_list(ca, l);
	access_builder_add_set(b, l->info.set);
	*set = l->info.set;
	return 0;
}

/*
 * Reads the entries of S, an array or list of strings (addresses, CIDRs,
 * @names), into B. SCOPE and KEY ("allow: ") name it in messages. *TEXT
 * gets the entries joined by ", " (malloc'd; NULL when out of memory), and
 * *ONLY the set of a named list that is the one entry (or NULL). Returns
 * the number of entries, or -1 if any was bad (each said).
 */
static long config_access_entries(struct config_access *ca, const config_setting_t *s,
				  const char *scope, const char *key, struct access_builder *b,
				  char **text, const struct access_set **only)
{
	int n = config_setting_length(s);
	size_t len = 0;
	FILE *mem = open_memstream(text, &len);
	bool bad = false;

	*only = NULL;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *str = config_setting_get_string(e);
		const struct access_set *named = NULL;
		struct access_prefix p;
		char why[160];

		if (!str) {
			config_access_err(ca, e, scope, "%sentry %d: expected a string (an address, a CIDR or \"@list\")",
					  key, i + 1);
			bad = true;
			continue;
		}
		if (mem)
			fprintf(mem, "%s%s", i ? ", " : "", str);
		if (str[0] == '@') {
			bad |= config_access_ref(ca, str + 1, e, scope, key, b, &named) < 0;
		} else if (access_prefix_parse(str, &p, why, sizeof(why)) < 0) {
			config_access_err(ca, e, scope, "%s\"%.64s\": %s", key, str, why);
			bad = true;
		} else {
			access_builder_add(b, &p);
		}
		if (n == 1)
			*only = named;
	}
	if (mem)
		fclose(mem);
	else
		*text = NULL;
	return bad ? -1 : n;
}

/* Reports a list file's bad lines, the first CONFIG_ACCESS_FILE_ERRORS of them. */
struct config_access_file {
	struct config_access *ca;
	const char *path, *name;
	unsigned long bad;
	long at; /* the configuration's line that names the file */
};

static void config_access_file_err(void *arg, unsigned line, const char *msg)
{
	struct config_access_file *f = arg;

	if (++f->bad <= CONFIG_ACCESS_FILE_ERRORS)
		config_errors_add_at(f->ca->errs, f->at, "%s:%u: list \"%s\": %s", f->path, line,
				     f->name, msg);
}

/* name = { file = "PATH"; }: the file, relative to the configuration's directory. */
static void config_access_read_file(struct config_access *ca, struct config_list *l,
				    const char *scope, struct access_builder *b)
{
	const config_setting_t *f = config_setting_get_member(l->s, "file");
	const char *path, *slash = strrchr(ca->path, '/');
	struct config_access_file fe = { ca, NULL, l->info.name, 0, 0 };
	int len = config_setting_length(l->s);
	char *full = NULL;
	long bad;

	for (int i = 0; i < len; i++) {
		const config_setting_t *m = config_setting_get_elem(l->s, (unsigned)i);

		if (strcmp(config_setting_name(m), "file") != 0)
			config_access_err(ca, m, scope, "unknown key \"%s\" (a list file is { file = \"PATH\"; })",
					  config_setting_name(m));
	}
	if (!f) {
		config_access_err(ca, l->s, scope, "file: required key is missing (a list file is { file = \"PATH\"; })");
		return;
	}
	path = config_setting_get_string(f);
	if (!path || !*path) {
		config_access_err(ca, f, scope, "file: expected the path of a list file");
		return;
	}
	if (ca->client) {
		config_access_err(ca, f, scope, "file: \"%.200s\" is not read for a configuration sent through the control socket (the daemon opens no file a client names); check it with portfwd -t -c FILE",
				  path);
		return;
	}
	if (path[0] != '/' && slash && asprintf(&full, "%.*s/%s", (int)(slash - ca->path), ca->path, path) < 0)
		full = NULL;
	fe.path = full ? full : path;
	fe.at = config_setting_source_line(f);
	l->info.file = strdup(fe.path);
	bad = access_file_read(fe.path, b, &l->info.entries, config_access_file_err, &fe);
	if (bad < 0)
		config_access_err(ca, f, scope, "file: cannot read \"%.200s\": %s", path,
				  access_file_error(errno));
	else if (fe.bad > CONFIG_ACCESS_FILE_ERRORS)
		config_errors_add_at(ca->errs, fe.at, "%s: list \"%s\": %lu more bad lines not shown",
				     fe.path, l->info.name, fe.bad - CONFIG_ACCESS_FILE_ERRORS);
	free(full);
}

/* Reads named list L (and the lists it names), once. */
static void config_access_read_list(struct config_access *ca, struct config_list *l)
{
	struct access_builder b = { 0 };
	char scope[ACCESS_NAME_MAX + 32];

	if (l->state != CONFIG_LIST_NEW)
		return;
	l->state = CONFIG_LIST_BUSY;
	snprintf(scope, sizeof(scope), "lists: \"%s\"", l->info.name);
	if (config_setting_is_group(l->s)) {
		config_access_read_file(ca, l, scope, &b);
	} else if (config_setting_is_array(l->s) || config_setting_is_list(l->s)) {
		const struct access_set *only;
		char *text = NULL;
		long n = config_access_entries(ca, l->s, scope, "", &b, &text, &only);

		l->info.entries = n > 0 ? (size_t)n : 0;
		free(text);
	} else {
		config_access_err(ca, l->s, scope, "expected [ \"address or CIDR\", \"@list\", ... ] or { file = \"PATH\"; }%s",
				  config_access_got(l->s));
	}
	l->info.set = access_builder_finish(&b);
	if (!l->info.set)
		config_errors_add(ca->errs, "%s: out of memory", ca->path);
	l->state = CONFIG_LIST_DONE;
}

void config_access_lists(struct config_access *ca, const config_setting_t *lists)
{
	int n;

	if (!ca)
		return;
	if (!config_setting_is_group(lists)) {
		config_access_err(ca, lists, "lists", "expected a group { name = [ ... ]; ... }");
		return;
	}
	n = config_setting_length(lists);
	ca->lists = calloc((size_t)n + 1, sizeof(*ca->lists));
	if (!ca->lists) {
		config_errors_add(ca->errs, "%s: out of memory", ca->path);
		return;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(lists, (unsigned)i);
		const char *name = config_setting_name(s);
		struct access_builder probe = { 0 };
		struct config_list *l;

		if (!rule_name_valid(name)) {
			config_access_err(ca, s, "lists", "\"%.80s\": a list name is 1-%d characters of A-Z a-z 0-9 _ -, beginning with a letter",
					  name, ACCESS_NAME_MAX);
			continue;
		}
		if (access_builtin_add(name, &probe) == 0) {
			access_builder_free(&probe);
			config_access_err(ca, s, "lists", "\"%s\" is a built-in list (%s): choose another name",
					  name, ACCESS_BUILTINS);
			continue;
		}
		/* libconfig already refuses a name twice in one group. */
		l = &ca->lists[ca->nlists++];
		snprintf(l->info.name, sizeof(l->info.name), "%s", name);
		l->info.line = (int)config_setting_source_line(s);
		l->s = s;
	}
	/* In file order, so that messages come in order too. */
	for (size_t i = 0; i < ca->nlists; i++)
		config_access_read_list(ca, &ca->lists[i]);
}

/* The entries' text as people see it: at most CONFIG_ACCESS_TEXT_MAX characters. */
static void config_access_shorten(char *text, long entries)
{
	char tail[48];
	size_t cut;

	if (!text || strlen(text) <= CONFIG_ACCESS_TEXT_MAX)
		return;
	snprintf(tail, sizeof(tail), ", ... (%ld entries)", entries);
	cut = CONFIG_ACCESS_TEXT_MAX - strlen(tail);
	while (cut > 0 && strncmp(text + cut, ", ", 2) != 0)
		cut--;
	strcpy(text + cut, tail);
}

/*
 * KEY ("allow" or "deny") of GROUP, if it is there: *SET gets a reference
 * to its addresses (NULL for an empty list) and *TEXT its entries (malloc'd).
 * Returns true if the key is there (even with errors, said).
 */
static bool config_access_key(struct config_access *ca, const config_setting_t *group,
			      const char *key, const char *scope, struct access_set **set,
			      char **text)
{
	const config_setting_t *s = config_setting_get_member(group, key);
	struct access_builder b = { 0 };
	const struct access_set *only;
	char prefix[16];
	long n;

	*set = NULL;
	*text = NULL;
	if (!s)
		return false;
	if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
		config_access_err(ca, s, scope, "%s: expected [ \"address or CIDR\", \"@list\", ... ]%s", key,
				  config_access_got(s));
		return true;
	}
	snprintf(prefix, sizeof(prefix), "%s: ", key);
	n = config_access_entries(ca, s, scope, prefix, &b, text, &only);
	if (n <= 0) {
		/* [] is no list at all: allow = [] lets everyone in. */
		access_builder_free(&b);
		return true;
	}
	for (size_t i = 0; *text && i < ca->nmemo; i++)
		if (strcmp(ca->memo[i].text, *text) == 0) {
			access_builder_free(&b);
			*set = access_set_ref(ca->memo[i].set);
			goto done;
		}
	if (only) {
		/* One named list: its own set, not a copy. */
		access_builder_free(&b);
		*set = access_set_ref((struct access_set *)only);
	} else {
		*set = access_builder_finish(&b);
	}
	if (*set && *text) {
		struct config_memo *grown = realloc(ca->memo, (ca->nmemo + 1) * sizeof(*grown));
		char *copy = strdup(*text);

		if (grown && copy) {
			ca->memo = grown;
			ca->memo[ca->nmemo++] = (struct config_memo){ copy, access_set_ref(*set) };
		} else {
			if (grown)
				ca->memo = grown;
			free(copy);
		}
	}
done:
	if (!*set) {
		config_errors_add(ca->errs, "%s: out of memory", ca->path);
		return true;
	}
	if (strcmp(key, "allow") == 0 && !access_set_ranges4(*set) && !access_set_ranges6(*set))
		log_warning("%s:%u: %s: allow: its lists hold no address: nobody may connect",
			    ca->path, config_setting_source_line(s), scope);
	config_access_shorten(*text, n);
	return true;
}

/* The policy of GROUP (SCOPE in messages), each key it lacks taken from BASE. */
static struct access_policy *config_access_policy(struct config_access *ca,
						  const config_setting_t *group, const char *scope,
						  struct access_policy *base)
{
	struct access_set *allow, *deny;
	char *allow_text, *deny_text;
	bool has_allow = config_access_key(ca, group, "allow", scope, &allow, &allow_text);
	bool has_deny = config_access_key(ca, group, "deny", scope, &deny, &deny_text);
	struct access_policy *p;
	bool oom = false;

	if (!has_allow && !has_deny) {
		p = access_policy_ref(base);
	} else {
		p = access_policy_new(has_allow ? allow : base ? base->allow : NULL,
				      has_allow ? allow_text : base ? base->allow_text : NULL,
				      has_deny ? deny : base ? base->deny : NULL,
				      has_deny ? deny_text : base ? base->deny_text : NULL, &oom);
		if (oom)
			config_errors_add(ca->errs, "%s: out of memory", ca->path);
	}
	access_set_unref(allow);
	access_set_unref(deny);
	free(allow_text);
	free(deny_text);
	return p;
}

void config_access_defaults(struct config_access *ca, const config_setting_t *group)
{
	if (!ca)
		return;
	access_policy_unref(ca->defaults);
	ca->defaults = config_access_policy(ca, group, "defaults", NULL);
}

struct access_policy *config_access_rule(struct config_access *ca, const config_setting_t *group,
					 const char *scope)
{
	return ca ? config_access_policy(ca, group, scope, ca->defaults) : NULL;
}

struct access_policy *config_access_group(struct config_access *ca, const config_setting_t *group,
					  const char *scope)
{
	return ca ? config_access_policy(ca, group, scope, NULL) : NULL;
}

void config_access_finish(struct config_access *ca, struct config *cfg)
{
	if (!ca)
		return;
	cfg->lists = calloc(ca->nlists + 1, sizeof(*cfg->lists));
	if (cfg->lists) {
		for (size_t i = 0; i < ca->nlists; i++)
			cfg->lists[i] = ca->lists[i].info;
		cfg->nlists = ca->nlists;
	} else {
		config_errors_add(ca->errs, "%s: out of memory", ca->path);
		for (size_t i = 0; i < ca->nlists; i++) {
			free(ca->lists[i].info.file);
			access_set_unref(ca->lists[i].info.set);
		}
	}
	for (size_t i = 0; i < ca->nmemo; i++) {
		free(ca->memo[i].text);
		access_set_unref(ca->memo[i].set);
	}
	free(ca->memo);
	free(ca->lists);
	access_policy_unref(ca->defaults);
	free(ca);
}
