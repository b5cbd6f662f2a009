/* sched: owns every model's state (STOPPED → STARTING → READY → STOPPING) and every swap
 * decision. A request acquires a ready model through a ticket — at once, or later from a bounded
 * FIFO — and releases it when done. The decisions are free of I/O: processes and timers go
 * through `struct sched_effects`, so unit tests drive the scheduler with fakes. */
#ifndef MODELMUX_SCHED_H
#define MODELMUX_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modelmux/config.h"

#define SCHED_ERR_MAX             1024  /* bytes of a model's last error kept */
#define SCHED_MSG_MAX             (SCHED_ERR_MAX + 512) /* a refusal's message, with its error */
#define SCHED_MAX_SLOTS           1024  /* a learned backend concurrency past this is not believed */
#define SCHED_CRASH_HISTORY       16    /* crash times kept per model (bounds crashBackoff.maxCrashes) */

enum model_state {
	MODEL_STOPPED = 0,
	MODEL_STARTING,
	MODEL_READY,
	MODEL_STOPPING,
};

struct sched_model;
struct sched_ticket;

/* Outcome of an acquire that had to wait: status 0 = the model is ready (the ticket is active,
 * release it when done); otherwise the HTTP status to answer with and a message (the ticket is
 * back to idle). Called from the loop, never from inside sched_acquire. */
typedef void (*sched_grant_cb)(struct sched_ticket *t, int status, const char *msg, void *arg);

enum ticket_state {
	TICKET_IDLE = 0,
	TICKET_QUEUED,
	TICKET_ACTIVE,
};

/* Embedded in the caller's request; zero-initialise it. */
struct sched_ticket {
	struct sched_ticket *next, *prev; /* in the model's queue */
	struct sched_model  *model;
	enum ticket_state    state;
	uint64_t             seq;
	uint64_t             enqueued_ms;
	uint64_t             deadline_timer;
	int                  retry_after_s; /* set with a refusal that has one (429, 503) */
	sched_grant_cb       cb;
	void                *arg;
};

/* What the scheduler does to the world. The defaults start backends (backend.h) on the loop. */
struct sched_effects {
	/* Start m's process; 0, or -1 with *err (caller frees). Later, exactly one of
	 * sched_on_ready / sched_on_start_failed, then sched_on_exited, is reported. */
	int      (*start)(struct sched_model *m, char **err);
	/* Stop m's process within grace_ms; sched_on_exited follows. */
	void     (*stop)(struct sched_model *m, uint64_t grace_ms);
	uint64_t (*timer_add)(uint64_t ms, void (*cb)(void *), void *arg);
	void     (*timer_cancel)(uint64_t id);
	uint64_t (*now_ms)(void);
};

/* Builds the model table for `cfg` (the scheduler keeps a reference); limits come from the
 * config (queue.*, crashBackoff.*). `fx` NULL = the real effects (supervisor + loop). */
void sched_init(struct cfg *cfg, const struct sched_effects *fx);
/* Frees the table; every process must already be reaped. */
void sched_free(void);

/* Asks for model `m` (a model of the current config). Returns 1 when granted at once (ticket
 * active), 0 when queued (cb reports later), or -1 when refused now: *status and the caller's
 * msg[msgn] (SCHED_MSG_MAX holds any) say why; t->retry_after_s is set when there is one. */
int  sched_acquire(struct sched_ticket *t, const struct cfg_model *m, sched_grant_cb cb, void *arg,
    int *status, char *msg, size_t msgn);
/* Ends a ticket: an active one releases the model, a queued one leaves the queue, an idle one
 * is a no-op. Never calls the ticket's callback. */
void sched_release(struct sched_ticket *t);

/* The base URL of the model a ticket holds (valid while active). */
const char *sched_ticket_proxy(const struct sched_ticket *t);

/* An unload request in flight; embedded in the caller's state, zero-initialised. */
struct sched_need {
	struct sched_model *m;      /* NULL once the model is gone */
	unsigned            exits;  /* its exit count that means "stopped since asked" */
};

struct sched_unload {
	struct sched_unload *next;
	struct sched_model  *model; /* NULL = every model */
	struct sched_need   *need;
	size_t               nneed;
	void               (*done)(struct sched_unload *u, void *arg);
	void                *arg;
};

/* Unloads one model (or all when m is NULL): requests waiting for it get 503, requests in
 * flight finish, then it is stopped. `u->done` is called once it is stopped (maybe at once,
 * never from inside this call). Cancel with sched_unload_cancel if the caller goes away. */
void sched_unload(struct sched_unload *u, struct sched_model *m,
    void (*done)(struct sched_unload *, void *), void *arg, const char *reason);
void sched_unload_cancel(struct sched_unload *u);

/* Switches to a new config snapshot (the scheduler takes a reference): models whose process
 * would be the same keep running and serving; changed ones finish what they serve and restart
 * with the new definition when next needed; removed ones refuse their queue (503) and stop once
 * idle; new ones start stopped. */
void sched_reload(struct cfg *cfg);

/* A model in use must be emptied (a swap, an unload, a reload) while tickets are active: the
 * callback hears its id once per such episode, from inside the scheduler — it must not call
 * back into it, only arrange for holders that would never end on their own (WebSockets) to
 * end soon. NULL = none. */
typedef void (*sched_drain_cb)(const char *model_id);
void sched_set_drain_cb(sched_drain_cb cb);

/* Loads the config's hooks.on_startup.preload models, in order, with the usual swap rules. */
void sched_preload(void);

/* Refuses new work and fails queued requests (503); requests in flight may finish for up to
 * grace_ms, each model stopping once idle, then the rest are stopped anyway. `done` is called
 * once nothing runs any more. */
void sched_shutdown(uint64_t grace_ms, void (*done)(void));

/* Publishes every model's state as an event (a new /api/events subscriber's snapshot). */
void sched_publish_states(void);

/* Reports from the process layer (called by the real effects, or by tests). */
void sched_on_ready(struct sched_model *m);
void sched_on_start_failed(struct sched_model *m, int status, const char *reason);
void sched_on_exited(struct sched_model *m, const char *reason);

/* Introspection, for management routes and tests. */
struct sched_model *sched_model_get(const char *id);
const struct cfg_model *sched_model_cfg(const struct sched_model *m);
enum model_state sched_model_state(const struct sched_model *m);
const char *sched_state_name(enum model_state s);
/* The last start failure or crash of a model ("" if none); owned by the scheduler. */
const char *sched_model_last_error(const struct sched_model *m);
size_t sched_model_inflight(const struct sched_model *m);
/* Requests m's backend gets at once: concurrencyLimit if set, else what its running process
 * said on /props (total_slots) or its argv (-np/--parallel), else CFG_DEF_CONCURRENCY. The
 * source is "config", "props", "argv" or "default" (static). */
unsigned sched_model_concurrency(const struct sched_model *m);
const char *sched_model_concurrency_source(const struct sched_model *m);
/* Sets what m's running process serves at once (from: static "props" or "argv"); waiting
 * requests are granted up to it. Ignored past SCHED_MAX_SLOTS or 0. */
void sched_model_set_slots(struct sched_model *m, unsigned slots, const char *from);
/* llama-server's -np/--parallel value in argv ("-np N", "-np=N"), 0 when absent or bad. */
unsigned sched_argv_parallel(char *const *argv);
size_t sched_model_queued(const struct sched_model *m);
unsigned sched_model_starts(const struct sched_model *m);
/* Asks for a fresh reachability probe of a ready model's backend (at most one per
 * SUP_REACH_INTERVAL_MS, never blocking); a no-op in any other state. */
void sched_model_probe(struct sched_model *m);
/* Whether a ready model's backend answered its last probe: true with *reachable and the
 * result's age in ms, false when the model is not ready or nothing is known yet. */
bool sched_model_reachable(const struct sched_model *m, bool *reachable, uint64_t *age_ms);
/* Whole-scheduler figures, for health and metrics. */
size_t sched_queued_total(void);
bool   sched_is_stopping(void);
/* Is the model held back after a crash loop? For how much longer (ms, 0 = not held)? */
bool   sched_model_held(const struct sched_model *m);
uint64_t sched_model_held_left_ms(const struct sched_model *m);
/* How long the model has been in its present state (ms; 0 for a model never started). */
uint64_t sched_model_state_age_ms(const struct sched_model *m);
/* When an idle ready model will be unloaded by its ttl: ms left, or -1 when no ttl runs. */
long long sched_model_ttl_left_ms(const struct sched_model *m);

#endif
