/*
 * The configuration's part about who may connect: the named lists
 * (lists = { lan = [ ... ]; bad = { file = "..."; }; }) and the allow and
 * deny keys of defaults and rules, read into access sets and policies
 * (access.h). config.c calls these while it reads a file; every problem is
 * a "FILE:LINE: message" in the same list of errors, a list file's own
 * problems naming that file and its line.
 */
#ifndef PORTFWD_CONFIG_ACCESS_H
#define PORTFWD_CONFIG_ACCESS_H

#include <libconfig.h>
#include <stdbool.h>

#include "config.h"

/* The keys that defaults and rules take for it. */
#define CONFIG_ACCESS_KEYS "allow", "deny"

struct config_access;

/*
 * Starts reading the configuration PATH (the label of a client's text when
 * CLIENT: such a text may name no list file, which the daemon would open
 * for the client). Errors go to ERRS. NULL when out of memory (said in ERRS).
 */
struct config_access *config_access_new(const char *path, bool client, struct config_errors *errs);

/* The top-level lists group. */
void config_access_lists(struct config_access *ca, const config_setting_t *lists);

/* allow and deny of the defaults GROUP, which every rule starts from. */
void config_access_defaults(struct config_access *ca, const config_setting_t *group);

/* The policy of the rule GROUP (a reference, or NULL: everyone allowed):
 * its own allow and deny, each replacing the defaults' one. SCOPE names
 * the rule in messages ("rule \"ssh\""). */
struct access_policy *config_access_rule(struct config_access *ca, const config_setting_t *group,
					 const char *scope);

/* The policy of GROUP from its own allow and deny alone (no defaults):
 * daemon.http's. */
struct access_policy *config_access_group(struct config_access *ca, const config_setting_t *group,
					  const char *scope);

/* Hands the named lists over to CFG (lists, nlists) and frees CA. */
void config_access_finish(struct config_access *ca, struct config *cfg);

#endif
