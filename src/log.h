/* Leveled logging to stderr, one line per event. */
#ifndef PORTFWD_LOG_H
#define PORTFWD_LOG_H

/* Values are syslog priorities so the journal can store them. */
enum log_level {
	LOG_LVL_ERROR = 3,
	LOG_LVL_WARNING = 4,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

void log_set_level(int level);
int log_get_level(void);

/* Parses "error", "warning", "info" or "debug"; returns the level or -1. */
int log_level_parse(const char *name);
const char *log_level_name(int level);

/*
 * Writes one line to stderr. Under systemd (JOURNAL_STREAM set) the line
 * starts with a "<N>" priority prefix that the journal turns into the
 * level; on a terminal it starts with a timestamp and the level name.
 */
void log_msg(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
