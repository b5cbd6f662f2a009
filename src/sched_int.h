/* sched_int: what sched.c and sched_ops.c share — a model's runtime state, the scheduler's
 * state, and the steps one file offers the other. Private to src/sched*.c. */
#ifndef MODELMUX_SCHED_INT_H
#define MODELMUX_SCHED_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modelmux/sched.h"

struct sched_model {
	const struct cfg_model *cfg;
	struct cfg             *owner;       /* the snapshot cfg points into (a reference) */
	const struct cfg_model *next_cfg;    /* reload: the new definition, once this process exits */
	struct cfg             *next_owner;
	bool                    retired;     /* reload removed it: freed once stopped and idle */
	enum model_state        state;
	struct backend         *backend;     /* NULL unless the real effects started one */
	struct sched_ticket    *head, *tail; /* FIFO of waiting tickets */
	size_t                  queued;
	size_t                  inflight;
	unsigned                batch_left;  /* grants owed despite a wanted eviction */
	bool                    evict_wanted;
	bool                    unload_wanted;
	bool                    stop_sent;
	bool                    drain_told;  /* the drain callback heard of this episode */
	uint64_t                ttl_timer;
	uint64_t                ttl_at;      /* when ttl_timer fires (loop ms) */
	uint64_t                state_ms;    /* when the model entered its state */
	uint64_t                spawn_failed_timer;
	uint64_t                start_ms;
	unsigned                starts;
	unsigned                exits;       /* processes reaped, for unload completion */
	uint64_t                crashes[SCHED_CRASH_HISTORY]; /* ring of crash times */
	size_t                  ncrashes;
	uint64_t                hold_until;  /* crash loop: refuse starts until then */
	char                    last_error[SCHED_ERR_MAX];
	unsigned                slots;       /* learned concurrency of this process; 0 = none */
	const char             *slots_from;  /* "props" or "argv" (static) */
};

struct sched_state {
	struct cfg           *cfg;
	struct sched_model  **models; /* cfg->models' runtime state, then retired ones; each
	                               * allocated alone so tickets and processes can point at it */
	size_t                n;
	struct sched_effects  fx;
	size_t                queued_total;
	struct sched_unload  *unloads;
	uint64_t              unload_timer;
	uint64_t              seq;
	bool                  pumping, pump_again;
	bool                  shutting_down;
	sched_drain_cb        drain_cb;
	bool                  shutdown_force;  /* the grace is over: stop even busy models */
	uint64_t              shutdown_timer;
	void                (*shutdown_done)(void);
};

/* The scheduler's one state, defined in sched.c. */
extern struct sched_state S;

/* sched.c */
struct sched_model *sched__model_new(struct cfg *cfg, const struct cfg_model *c);
void sched__model_free(struct sched_model *m);
void sched__ticket_fail(struct sched_ticket *t, int status, const char *msg, int retry_after_s);
/* Re-derives what to do from the state alone (see sched.c's head); every change ends here. */
void sched__pump(void);

/* sched_ops.c */
void sched__reap_retired(void);
void sched__check_unloads(void *arg);

#endif
