/* sched_ops: what an operator asks of the scheduler, apart from requests — a reload (each
 * model adopts its new definition: at once when its process would be the same, else once its
 * process has stopped; removed models are retired once idle), preloading, unloading (all or
 * some models, answered when they have stopped) and the shutdown (stop everything, busy
 * models after the grace). */
#include <string.h>

#include "modelmux/backend.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/sched.h"
#include "modelmux/util.h"
#include "sched_int.h"

/* --- reload --- */

static bool
str_eq(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool
strv_eq(char *const *a, char *const *b)
{
	size_t n = strv_len(a);

	if (n != strv_len(b))
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

/* Would the two definitions run the same process? Then a reload keeps it running. */
static bool
same_process(const struct cfg_model *a, const struct cfg_model *b)
{
	return strv_eq(a->argv, b->argv) && str_eq(a->exe, b->exe) && strv_eq(a->env, b->env) &&
	    str_eq(a->proxy, b->proxy) && str_eq(a->check_endpoint, b->check_endpoint) &&
	    strv_eq(a->stop_argv, b->stop_argv);
}

static void
adopt(struct sched_model *m, struct cfg *cfg, const struct cfg_model *c)
{
	cfg_unref(m->next_owner);
	m->next_owner = NULL;
	m->next_cfg = NULL;
	cfg_unref(m->owner);
	m->owner = cfg_ref(cfg);
	m->cfg = c;
}

void
sched_reload(struct cfg *cfg)
{
	struct sched_model **nm = xcalloc(cfg->nmodels + S.n + 1, sizeof(*nm));
	bool                *kept = xcalloc(S.n + 1, sizeof(*kept));
	size_t               n = 0;

	for (size_t k = 0; k < cfg->nmodels; k++) {
		const struct cfg_model *c = &cfg->models[k];
		struct sched_model     *old = NULL;

		for (size_t j = 0; j < S.n && old == NULL; j++) {
			if (!S.models[j]->retired && strcmp(S.models[j]->cfg->id, c->id) == 0) {
				old = S.models[j];
				kept[j] = true;
			}
		}
		if (old == NULL) {
			log_info("sched", "model=%s msg=\"added by reload\"", c->id);
			nm[n++] = sched__model_new(cfg, c);
			continue;
		}
		if (same_process(old->cfg, c) || old->state == MODEL_STOPPED) {
			adopt(old, cfg, c);
		} else {
			/* Requests in flight finish on the old process; then it restarts as defined now. */
			log_info("sched", "model=%s msg=\"changed by reload, restarting when idle\"", c->id);
			cfg_unref(old->next_owner);
			old->next_cfg = c;
			old->next_owner = cfg_ref(cfg);
		}
		nm[n++] = old;
	}
	for (size_t j = 0; j < S.n; j++) {
		struct sched_model *m = S.models[j];

		if (!kept[j] && !m->retired) {
			log_info("sched", "model=%s msg=\"removed by reload\"", m->cfg->id);
			m->retired = true;
			while (m->head)
				sched__ticket_fail(m->head, 503, "model removed from the configuration", 0);
			m->unload_wanted = m->state != MODEL_STOPPED;
		}
		if (m->retired)
			nm[n++] = m;
	}
	free(kept);
	free(S.models);
	S.models = nm;
	S.n = n;
	cfg_unref(S.cfg);
	S.cfg = cfg_ref(cfg);
	sched__pump();
}

/* Frees retired models once nothing refers to them any more. */
void
sched__reap_retired(void)
{
	for (size_t i = 0; i < S.n;) {
		struct sched_model *m = S.models[i];

		if (!m->retired || m->state != MODEL_STOPPED || m->inflight > 0 || m->head != NULL) {
			i++;
			continue;
		}
		for (struct sched_unload *u = S.unloads; u; u = u->next)
			for (size_t k = 0; k < u->nneed; k++)
				if (u->need[k].m == m)
					u->need[k].m = NULL;
		memmove(&S.models[i], &S.models[i + 1], (S.n - i - 1) * sizeof(*S.models));
		S.n--;
		sched__model_free(m);
	}
}

/* --- preload --- */

static void
on_preloaded(struct sched_ticket *t, int status, const char *msg, void *arg)
{
	char *id = arg;

	if (status == 0) {
		log_info("sched", "model=%s msg=preloaded", id);
		sched_release(t);
	} else {
		log_warn("sched", "model=%s msg=\"preload failed\" status=%d reason=\"%s\"", id, status, msg);
	}
	free(t);
}

void
sched_preload(void)
{
	for (char **p = S.cfg->preload; p && *p; p++) {
		struct sched_ticket *t = xcalloc(1, sizeof(*t));
		char                 msg[SCHED_MSG_MAX];
		int                  status = 0;

		switch (sched_acquire(t, cfg_find_model(S.cfg, *p), on_preloaded, *p, &status, msg,
		    sizeof(msg))) {
		case 1:
			sched_release(t);
			free(t);
			break;
		case 0:
			break; /* on_preloaded frees it */
		default:
			log_warn("sched", "model=%s msg=\"preload refused\" reason=\"%s\"", *p, msg);
			free(t);
		}
	}
}

/* --- unload --- */

/* Done once every model that was running when it was asked has exited at least once — even
 * if a later request has started it again since. */
static bool
unload_finished(const struct sched_unload *u)
{
	for (size_t i = 0; i < u->nneed; i++)
		if (u->need[i].m != NULL && u->need[i].m->exits < u->need[i].exits)
			return false;
	return true;
}

void
sched__check_unloads(void *arg)
{
	(void)arg;
	S.unload_timer = 0;
	for (struct sched_unload **pu = &S.unloads; *pu;) {
		struct sched_unload *u = *pu;

		if (unload_finished(u)) {
			*pu = u->next;
			u->next = NULL;
			free(u->need);
			u->need = NULL;
			u->done(u, u->arg);
		} else {
			pu = &u->next;
		}
	}
}

static void
mark_unload(struct sched_model *m)
{
	if (m->state == MODEL_STOPPED && m->head == NULL)
		return;
	m->unload_wanted = m->state != MODEL_STOPPED;
	while (m->head)
		sched__ticket_fail(m->head, 503, "model unloaded", 1);
}

void
sched_unload(struct sched_unload *u, struct sched_model *m,
    void (*done)(struct sched_unload *, void *), void *arg, const char *reason)
{
	log_info("sched", "model=%s msg=\"unload requested\" reason=%s", m ? m->cfg->id : "*", reason);
	u->model = m;
	u->done = done;
	u->arg = arg;
	u->need = xcalloc(S.n ? S.n : 1, sizeof(*u->need));
	u->nneed = 0;
	for (size_t i = 0; i < S.n; i++)
		if ((m == NULL || m == S.models[i]) && S.models[i]->state != MODEL_STOPPED)
			u->need[u->nneed++] = (struct sched_need){ S.models[i], S.models[i]->exits + 1 };
	u->next = S.unloads;
	S.unloads = u;
	if (m != NULL)
		mark_unload(m);
	else
		for (size_t i = 0; i < S.n; i++)
			mark_unload(S.models[i]);
	sched__pump();
	/* Completion is reported from the loop, never from inside this call. */
	if (S.unload_timer == 0)
		S.unload_timer = S.fx.timer_add(0, sched__check_unloads, NULL);
}

void
sched_unload_cancel(struct sched_unload *u)
{
	for (struct sched_unload **pu = &S.unloads; *pu; pu = &(*pu)->next) {
		if (*pu == u) {
			*pu = u->next;
			u->next = NULL;
			free(u->need);
			u->need = NULL;
			return;
		}
	}
}

static void
on_shutdown_grace(void *arg)
{
	(void)arg;
	S.shutdown_timer = 0;
	log_warn("sched", "msg=\"shutdown grace over, stopping busy backends\"");
	S.shutdown_force = true;
	sched__pump();
}

void
sched_shutdown(uint64_t grace_ms, void (*done)(void))
{
	S.shutting_down = true;
	S.shutdown_done = done;
	for (size_t i = 0; i < S.n; i++) {
		struct sched_model *m = S.models[i];

		while (m->head)
			sched__ticket_fail(m->head, 503, "modelmux is shutting down", 5);
	}
	if (grace_ms == 0)
		S.shutdown_force = true;
	else
		S.shutdown_timer = S.fx.timer_add(grace_ms, on_shutdown_grace, NULL);
	sched__pump();
}
