#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Set by the main thread (start, reload), read by every thread. */
static _Atomic int log_level = LOG_LVL_INFO;
static int log_journal = -1;

void log_set_level(int level)
{
	atomic_store_explicit(&log_level, level, memory_order_relaxed);
}

int log_get_level(void)
{
	return atomic_load_explicit(&log_level, memory_order_relaxed);
}

static const struct {
	const char *name;
	int level;
} log_levels[] = {
	{ "error", LOG_LVL_ERROR },
	{ "warning", LOG_LVL_WARNING },
	{ "info", LOG_LVL_INFO },
	{ "debug", LOG_LVL_DEBUG },
};

int log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++)
		if (strcmp(name, log_levels[i].name) == 0)
			return log_levels[i].level;
	return -1;
}

const char *log_level_name(int level)
{
	for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++)
		if (log_levels[i].level == level)
			return log_levels[i].name;
	return "unknown";
}

void log_msg(int level, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	if (level > log_get_level())
		return;
	if (log_journal < 0)
		log_journal = getenv("JOURNAL_STREAM") != NULL;

	if (log_journal) {
		n = snprintf(line, sizeof(line), "<%d>", level);
	} else {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		n = (int)strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
		n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03ld %s: ",
			      ts.tv_nsec / 1000000L, log_level_name(level));
	}
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One write per line so lines of concurrent writers never interleave. */
	fprintf(stderr, "%s\n", line);
}
