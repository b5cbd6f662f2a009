/* loop: the one event loop — epoll for fds, timers by id, a signalfd for signals.
 * Single-threaded; every callback runs on the loop thread. */
#ifndef MODELMUX_LOOP_H
#define MODELMUX_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#define LOOP_MAX_TIMERS 65536 /* live timers; past it loop_timer_add fails */

typedef void (*loop_fd_cb)(int fd, uint32_t events, void *arg);
typedef void (*loop_timer_cb)(void *arg);
typedef void (*loop_signal_cb)(int signo, void *arg);
typedef void (*loop_hook_cb)(void *arg);

/* Creates the epoll instance. Signals in `sigs` (terminated by 0) must already be blocked;
 * they are delivered to `sig_cb` through a signalfd. fatal() on failure. */
void loop_init(const int *sigs, loop_signal_cb sig_cb, void *arg);
/* Closes the loop's own fds. Watchers and timers left are dropped. */
void loop_free(void);

/* Watches fd for `events` (EPOLLIN/EPOLLOUT/…). One watcher per fd. -1 on failure. */
int  loop_fd_add(int fd, uint32_t events, loop_fd_cb cb, void *arg);
int  loop_fd_mod(int fd, uint32_t events);
/* Hands a watched fd to another callback without touching its events (no syscall). -1 if fd
 * is not watched. */
int  loop_fd_rebind(int fd, loop_fd_cb cb, void *arg);
/* Stops watching fd (does not close it). Safe from inside the fd's own callback. */
void loop_fd_del(int fd);

/* Calls cb(arg) once, `ms` from now. Returns a non-zero timer id, 0 if the table is full. */
uint64_t loop_timer_add(uint64_t ms, loop_timer_cb cb, void *arg);
/* Cancels a pending timer; 0 and ids already fired are no-ops. */
void loop_timer_cancel(uint64_t id);

/* Calls cb(arg) after every round of events (used to drive libraries that need a
 * "run pending work" call). At most LOOP_MAX_HOOKS hooks. */
#define LOOP_MAX_HOOKS 4
void loop_hook_add(loop_hook_cb cb, void *arg);
/* Upper bound for the next wait in ms (-1 = none), asked of each hook owner before sleeping. */
typedef long (*loop_timeout_cb)(void *arg);
void loop_timeout_add(loop_timeout_cb cb, void *arg);

/* Monotonic milliseconds. */
uint64_t loop_now_ms(void);

/* Runs until loop_stop(). */
void loop_run(void);
void loop_stop(void);

#endif
