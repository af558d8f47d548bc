#include "sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

static int sdnotify_fd = -1;
static struct sockaddr_un sdnotify_addr;
static socklen_t sdnotify_len;
static uint64_t sdnotify_watchdog;

int sdnotify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	const char *wd = getenv("WATCHDOG_USEC"), *wpid = getenv("WATCHDOG_PID");
	size_t len;

	if (wd && *wd && (!wpid || !*wpid || strtol(wpid, NULL, 10) == (long)getpid()))
		sdnotify_watchdog = strtoull(wd, NULL, 10);
	if (!path || !*path)
		return 0;
	len = strlen(path);
	/* "@name" is Linux's abstract namespace: a leading NUL byte. */
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sdnotify_addr.sun_path)) {
		log_warning("NOTIFY_SOCKET \"%s\" is not a usable socket path; not notifying systemd", path);
		return -1;
	}
	memset(&sdnotify_addr, 0, sizeof(sdnotify_addr));
	sdnotify_addr.sun_family = AF_UNIX;
	memcpy(sdnotify_addr.sun_path, path, len);
	if (path[0] == '@')
		sdnotify_addr.sun_path[0] = '\0';
	sdnotify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	sdnotify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sdnotify_fd < 0) {
		log_warning("cannot notify systemd: socket: %s", strerror(errno));
		return -1;
	}
	return 0;
}

bool sdnotify_enabled(void)
{
	return sdnotify_fd >= 0;
}

uint64_t sdnotify_watchdog_usec(void)
{
	return sdnotify_fd >= 0 ? sdnotify_watchdog : 0;
}

void sdnotify_send(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int n;

	if (sdnotify_fd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	if (sendto(sdnotify_fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT,
		   (struct sockaddr *)&sdnotify_addr, sdnotify_len) < 0)
		log_debug("notify systemd: %s", strerror(errno));
}

void sdnotify_close(void)
{
	if (sdnotify_fd >= 0)
		close(sdnotify_fd);
	sdnotify_fd = -1;
}
