/* backend: where a model's requests go, and how it is brought up and down. The scheduler
 * starts, probes and stops every model through this one interface; the kinds are
 *   - a local process (cmd), run by the supervisor: spawned, health-checked, stopped, reaped;
 *   - a remote server (proxy only, no cmd): already running elsewhere; "starting" it is waiting
 *     for its health check, "stopping" it only stops sending it requests;
 *   - a peer's model (config_peers.h): ready at once while the peer answers its periodic health
 *     probe (peer.h), a start fails at once with 503 while it does not, and a ready one leaves
 *     (EXITED) when the peer stops answering.
 * A new kind (a peer, a sleeping server) is one more `struct backend_ops` in backend.c. */
#ifndef MODELMUX_BACKEND_H
#define MODELMUX_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "modelmux/config.h"

#define BACKEND_REMOTE_POLL_MS 250 /* health poll period of a remote server while starting */
#define BACKEND_PEER_WATCH_MS  100 /* how often a peer model looks at its peer's state */

struct backend;

enum backend_event {
	BACKEND_READY = 0,    /* healthy: requests may go to the model's proxy URL */
	BACKEND_START_FAILED, /* status 502 (it died or could not run) or 504 (health check timed
	                       * out); BACKEND_EXITED follows */
	BACKEND_EXITED,       /* gone (reaped, or a remote one let go); the record is freed when
	                       * the callback returns */
};

/* Reports from a backend, always from the loop (never from inside a backend_* call). `msg` is a
 * sentence for START_FAILED ("model x failed to start: …", with the last output lines when
 * there are some) and EXITED (the exit reason), NULL for READY. */
typedef void (*backend_cb)(void *arg, enum backend_event ev, int status, const char *msg);

/* Brings up model `m` of config `top` (whose global timeouts apply). Returns the backend, or
 * NULL with *err (caller frees) when it could not even begin ("command not found: x"). */
struct backend *backend_start(const struct cfg *top, const struct cfg_model *m, backend_cb cb,
    void *arg, char **err);
/* Takes it down within grace_ms; BACKEND_EXITED follows. Again shortens nothing. */
void backend_stop(struct backend *b, uint64_t grace_ms);
/* Asks for a fresh reachability probe of a ready backend (rate-limited, never blocking). */
void backend_probe(struct backend *b);
/* The last reachability result of a ready backend: true with *reachable and its age, false
 * when nothing is known yet. */
bool backend_reachable(const struct backend *b, bool *reachable, uint64_t *age_ms);
/* "process", "remote" or "peer". */
const char *backend_kind(const struct backend *b);

#endif
