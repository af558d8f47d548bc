/*
 * The systemd notification protocol (sd_notify(3)), written against the
 * documented datagram interface rather than libsystemd: one datagram of
 * "KEY=VALUE" lines to the socket named by $NOTIFY_SOCKET. Outside systemd
 * (no $NOTIFY_SOCKET) every call does nothing.
 */
#ifndef PORTFWD_SDNOTIFY_H
#define PORTFWD_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Reads $NOTIFY_SOCKET and $WATCHDOG_USEC (if $WATCHDOG_PID, when set, is
 * this process). Returns 0, or -1 after logging why the socket is unusable. */
int sdnotify_init(void);

/* True when there is a socket to notify. */
bool sdnotify_enabled(void);

/* The watchdog interval systemd asked for, in microseconds; 0 if none. */
uint64_t sdnotify_watchdog_usec(void);

/* Sends one message (lines "KEY=VALUE", joined by newlines). Failures are
 * logged at debug level: systemd going away must not stop forwarding. */
void sdnotify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Closes the socket. */
void sdnotify_close(void);

#endif
