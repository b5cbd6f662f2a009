/* notify: systemd's service notification protocol (sd_notify), spoken directly on the
 * NOTIFY_SOCKET datagram socket — READY=1, RELOADING=1, STOPPING=1, WATCHDOG=1. Does nothing
 * when the daemon does not run under systemd. */
#ifndef MODELMUX_NOTIFY_H
#define MODELMUX_NOTIFY_H

#include <stdint.h>

/* Sends one state string ("READY=1\nSTATUS=…"); silently does nothing without NOTIFY_SOCKET. */
void notify_send(const char *state);
/* The watchdog period asked for by the unit (WATCHDOG_USEC, for this pid), in ms; 0 if none. */
uint64_t notify_watchdog_ms(void);

#endif
