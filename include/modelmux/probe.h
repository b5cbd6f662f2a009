/* probe: one health or reachability GET of a backend, on a connection of its own, with a
 * deadline. The answer's body is dropped as it comes. Used by the supervisor (a process's
 * health check) and by remote backends; what a status means is the caller's business. */
#ifndef MODELMUX_PROBE_H
#define MODELMUX_PROBE_H

#include <stdbool.h>
#include <stdint.h>

struct up_xfer;

/* The probe ended: the HTTP status, or 0 when nothing answered (refused, reset, deadline). */
typedef void (*probe_cb)(void *arg, int status);

/* Embedded in its owner; zero-initialise. */
struct probe {
	struct up_xfer *x;
	uint64_t        timer;  /* the deadline */
	int             status; /* of the head, once it came */
	probe_cb        cb;
	void           *arg;
};

/* Sends a GET of url that must end within timeout_ms; cb reports once, from the loop. Returns
 * false (and never calls cb) when it could not be started or one is already in flight. */
bool probe_send(struct probe *pr, const char *url, uint64_t timeout_ms, probe_cb cb, void *arg);
/* The same with request headers ("Name: value", NULL-terminated, borrowed until cb): a peer's
 * key. */
bool probe_send_hdrs(struct probe *pr, const char *url, char *const *headers, uint64_t timeout_ms,
    probe_cb cb, void *arg);
/* Is one in flight? */
bool probe_busy(const struct probe *pr);
/* Abandons the one in flight, if any, without calling cb. */
void probe_cancel(struct probe *pr);

#endif
