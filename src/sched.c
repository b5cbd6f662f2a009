/* sched: model states, queues and swap decisions.
 *
 * Every change (a request arrives or ends, a process becomes ready, fails or is reaped, a timer
 * fires) ends in sched__pump(), which re-derives what to do from the state alone:
 *   1. which running models a waiting model needs evicted (llama-swap's group rules);
 *   2. grants to ready models — not to one wanted for eviction, unless it is still serving the
 *      batch of requests that were queued when it became ready;
 *   3. stops of wanted-for-eviction models once they are idle (never a busy one);
 *   4. starts of waiting, stopped models whose victims are all reaped — one start per model
 *      however many requests wait (single flight).
 */
#include <string.h>

#include <cjson/cJSON.h>

#include "modelmux/backend.h"
#include "modelmux/config_peers.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/metrics.h"
#include "modelmux/config_compat.h"
#include "modelmux/peer.h"
#include "modelmux/props.h"
#include "modelmux/sched.h"
#include "modelmux/util.h"
#include "sched_int.h"


struct sched_state S;

static void ask_props(struct sched_model *m);

/* --- real effects: backends + loop --- */

static void
on_backend_event(void *arg, enum backend_event ev, int status, const char *msg)
{
	struct sched_model *m = arg;

	switch (ev) {
	case BACKEND_READY:
		sched_on_ready(m);
		ask_props(m);
		break;
	case BACKEND_START_FAILED:
		sched_on_start_failed(m, status, msg);
		break;
	case BACKEND_EXITED:
		sched_on_exited(m, msg);
		break;
	}
}

/* Which process a /props answer is about: the model by name (it may be gone by then) and its
 * start count. */
struct props_ctx {
	char    *id;
	unsigned starts;
};

static void
on_props(int slots, void *arg)
{
	struct props_ctx   *c = arg;
	struct sched_model *m = slots > 0 ? sched_model_get(c->id) : NULL;

	if (m != NULL && m->starts == c->starts && m->state == MODEL_READY)
		sched_model_set_slots(m, (unsigned)slots, "props");
	free(c->id);
	free(c);
}

/* A model without concurrencyLimit: ask its backend how many requests it serves at once.
 * Not one with checkEndpoint: none — modelmux sends such a backend no request of its own. */
static void
ask_props(struct sched_model *m)
{
	struct props_ctx *c;

	if (m->cfg->concurrency_limit != 0 || m->cfg->check_endpoint == NULL ||
	    m->state != MODEL_READY)
		return;
	c = xcalloc(1, sizeof(*c));
	c->id = xstrdup(m->cfg->id);
	c->starts = m->starts;
	props_ask(m->cfg->proxy, m->cfg->upstream_api_key, on_props, c);
}

static int
real_start(struct sched_model *m, char **err)
{
	m->backend = backend_start(S.cfg, m->cfg, on_backend_event, m, err);
	return m->backend ? 0 : -1;
}

static void
real_stop(struct sched_model *m, uint64_t grace_ms)
{
	if (m->backend != NULL)
		backend_stop(m->backend, grace_ms);
}

static const struct sched_effects real_fx = {
	.start = real_start,
	.stop = real_stop,
	.timer_add = loop_timer_add,
	.timer_cancel = loop_timer_cancel,
	.now_ms = loop_now_ms,
};

/* --- table --- */

struct sched_model *
sched__model_new(struct cfg *cfg, const struct cfg_model *c)
{
	struct sched_model *m = xcalloc(1, sizeof(*m));

	m->cfg = c;
	m->owner = cfg_ref(cfg);
	return m;
}

void
sched__model_free(struct sched_model *m)
{
	S.fx.timer_cancel(m->ttl_timer);
	S.fx.timer_cancel(m->spawn_failed_timer);
	cfg_unref(m->owner);
	cfg_unref(m->next_owner);
	free(m);
}

void
sched_init(struct cfg *cfg, const struct sched_effects *fx)
{
	S.fx = fx ? *fx : real_fx;
	S.cfg = cfg_ref(cfg);
	S.n = cfg->nmodels;
	S.models = xcalloc(S.n ? S.n : 1, sizeof(*S.models));
	for (size_t i = 0; i < S.n; i++)
		S.models[i] = sched__model_new(cfg, &cfg->models[i]);
}

void
sched_free(void)
{
	props_cancel_all();
	S.fx.timer_cancel(S.unload_timer);
	S.fx.timer_cancel(S.shutdown_timer);
	for (struct sched_unload *u = S.unloads; u; u = u->next) {
		free(u->need);
		u->need = NULL;
	}
	for (size_t i = 0; i < S.n; i++)
		sched__model_free(S.models[i]);
	free(S.models);
	cfg_unref(S.cfg);
	memset(&S, 0, sizeof(S));
}

static struct sched_model *
model_of(const struct cfg_model *c)
{
	for (size_t i = 0; i < S.n; i++)
		if (!S.models[i]->retired &&
		    (S.models[i]->cfg == c || strcmp(S.models[i]->cfg->id, c->id) == 0))
			return S.models[i];
	return NULL;
}

struct sched_model *
sched_model_get(const char *id)
{
	const struct cfg_model *c = S.cfg ? cfg_find_model(S.cfg, id) : NULL;

	return c ? model_of(c) : NULL;
}

const struct cfg_model *sched_model_cfg(const struct sched_model *m) { return m->cfg; }
enum model_state sched_model_state(const struct sched_model *m) { return m->state; }
size_t sched_model_inflight(const struct sched_model *m) { return m->inflight; }
size_t sched_model_queued(const struct sched_model *m) { return m->queued; }
unsigned sched_model_starts(const struct sched_model *m) { return m->starts; }

void
sched_model_probe(struct sched_model *m)
{
	if (m->state == MODEL_READY && m->backend != NULL)
		backend_probe(m->backend);
}

bool
sched_model_reachable(const struct sched_model *m, bool *reachable, uint64_t *age_ms)
{
	return m->state == MODEL_READY && m->backend != NULL &&
	    backend_reachable(m->backend, reachable, age_ms);
}

const char *
sched_state_name(enum model_state s)
{
	static const char *const names[] = { "stopped", "starting", "ready", "stopping" };

	return (size_t)s < MM_ARRAY_LEN(names) ? names[s] : "unknown";
}

size_t sched_queued_total(void) { return S.queued_total; }
bool sched_is_stopping(void) { return S.shutting_down; }

bool
sched_model_held(const struct sched_model *m)
{
	return m->hold_until > S.fx.now_ms();
}

uint64_t
sched_model_held_left_ms(const struct sched_model *m)
{
	uint64_t now = S.fx.now_ms();

	return m->hold_until > now ? m->hold_until - now : 0;
}

uint64_t
sched_model_state_age_ms(const struct sched_model *m)
{
	uint64_t now = S.fx.now_ms();

	return m->state_ms && now > m->state_ms ? now - m->state_ms : 0;
}

long long
sched_model_ttl_left_ms(const struct sched_model *m)
{
	uint64_t now = S.fx.now_ms();

	if (m->ttl_timer == 0)
		return -1;
	return m->ttl_at > now ? (long long)(m->ttl_at - now) : 0;
}

const char *
sched_model_last_error(const struct sched_model *m)
{
	return m->last_error;
}

const char *
sched_ticket_proxy(const struct sched_ticket *t)
{
	return t->model->cfg->proxy;
}

/* A state change, for /api/events subscribers. */
static void
publish_state(const struct sched_model *m)
{
	cJSON *o = cJSON_CreateObject();
	char  *json;

	cJSON_AddStringToObject(o, "type", "modelStatus");
	cJSON_AddStringToObject(o, "model", m->cfg->id);
	cJSON_AddStringToObject(o, "state", sched_state_name(m->state));
	if (m->last_error[0])
		cJSON_AddStringToObject(o, "last_error", m->last_error);
	if ((json = cJSON_PrintUnformatted(o)) != NULL)
		log_event(json);
	cJSON_free(json);
	cJSON_Delete(o);
}

void
sched_publish_states(void)
{
	for (size_t i = 0; i < S.n; i++)
		if (!S.models[i]->retired)
			publish_state(S.models[i]);
}

static void
set_state(struct sched_model *m, enum model_state s)
{
	if (m->state == s)
		return;
	log_info("sched", "model=%s state=%s from=%s", m->cfg->id, sched_state_name(s),
	    sched_state_name(m->state));
	m->state = s;
	m->state_ms = S.fx.now_ms();
	publish_state(m);
}

/* --- queue --- */

static void
queue_remove(struct sched_ticket *t)
{
	struct sched_model *m = t->model;

	if (t->prev)
		t->prev->next = t->next;
	else
		m->head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	else
		m->tail = t->prev;
	t->next = t->prev = NULL;
	m->queued--;
	S.queued_total--;
	S.fx.timer_cancel(t->deadline_timer);
	t->deadline_timer = 0;
}

/* Ends a queued ticket with a refusal and tells its owner. */
void
sched__ticket_fail(struct sched_ticket *t, int status, const char *msg, int retry_after_s)
{
	queue_remove(t);
	t->state = TICKET_IDLE;
	t->retry_after_s = retry_after_s;
	t->model = NULL;
	t->cb(t, status, msg, t->arg);
}

static void
ticket_grant(struct sched_ticket *t)
{
	struct sched_model *m = t->model;

	queue_remove(t);
	t->state = TICKET_ACTIVE;
	m->inflight++;
	metrics_queue_wait(m->cfg->id, (double)(S.fx.now_ms() - t->enqueued_ms) / 1000.0);
	t->cb(t, 0, NULL, t->arg);
}

static void
on_deadline(void *arg)
{
	struct sched_ticket *t = arg;
	char                 msg[160];

	t->deadline_timer = 0;
	snprintf(msg, sizeof(msg), "timed out after %d s waiting for model %s",
	    S.cfg->queue.max_wait_s, t->model->cfg->id);
	log_warn("sched", "model=%s msg=\"queue wait deadline passed\"", t->model->cfg->id);
	sched__ticket_fail(t, 503, msg, 5);
	sched__pump();
}

static void
cancel_ttl(struct sched_model *m)
{
	S.fx.timer_cancel(m->ttl_timer);
	m->ttl_timer = 0;
}

/* --- decisions --- */

static bool
is_running(const struct sched_model *m)
{
	return m->state != MODEL_STOPPED;
}

/* The index of m's model in the current snapshot, or (size_t)-1 (a retired model). */
static size_t
cfg_index(const struct sched_model *m)
{
	const struct cfg_model *c = cfg_find_model(S.cfg, m->cfg->id);

	return c != NULL && strcmp(c->id, m->cfg->id) == 0 ? (size_t)(c - S.cfg->models) : (size_t)-1;
}

/* llama-swap's matrix rule (config_compat.h): loading `x` evicts the running models outside the
 * cheapest matrix set that holds it; a model in no set runs alone. */
static bool
matrix_evicts(const struct sched_model *x, const struct sched_model *v)
{
	size_t *run = xcalloc(S.n ? S.n : 1, sizeof(*run)), n = 0, xi = cfg_index(x), vi = cfg_index(v);
	bool    keep;

	if (xi == (size_t)-1 || vi == (size_t)-1) {
		free(run);
		return xi != (size_t)-1; /* a retired model never stays in the way */
	}
	for (size_t i = 0; i < S.n; i++)
		if (is_running(S.models[i]) && cfg_index(S.models[i]) != (size_t)-1)
			run[n++] = cfg_index(S.models[i]);
	keep = cfg_compat_matrix_keeps(S.cfg, xi, run, n, vi);
	free(run);
	return !keep;
}

/* Would loading `x` evict `v`? llama-swap's group rule: a swapping group swaps its own
 * members; an exclusive group evicts other groups' members, except persistent ones. */
static bool
evicts(const struct sched_model *x, const struct sched_model *v)
{
	const struct cfg_group *gx = x->cfg->group, *gv = v->cfg->group;

	if (x == v)
		return false;
	if (cfg_compat_uses_matrix(S.cfg))
		return matrix_evicts(x, v);
	/* By name: after a reload, running models may still hold the old snapshot's groups. */
	if (strcmp(gx->name, gv->name) == 0)
		return gx->swap;
	return gx->exclusive && !gv->persistent;
}

/* The eviction policy: the models that must stop before `w` may start are marked
 * evict_wanted. FIFO across models: a victim first serves its own requests that are older. */
static void
mark_victims(const struct sched_model *w)
{
	for (size_t i = 0; i < S.n; i++) {
		struct sched_model *v = S.models[i];

		if (is_running(v) && evicts(w, v) && (v->head == NULL || v->head->seq > w->head->seq))
			v->evict_wanted = true;
	}
}

/* May `w` start now: is nothing running that it would evict? */
static bool
has_room(const struct sched_model *w)
{
	for (size_t i = 0; i < S.n; i++)
		if (is_running(S.models[i]) && evicts(w, S.models[i]))
			return false;
	return true;
}

static uint64_t
grace_ms(const struct sched_model *m)
{
	int s = m->cfg->unload_timeout_s ? m->cfg->unload_timeout_s : S.cfg->unload_timeout_s;

	return (uint64_t)(s ? s : CFG_DEF_UNLOAD_TIMEOUT_S) * 1000u;
}

/* concurrencyLimit when set; else what the running backend said (/props) or its argv says
 * (-np); else the default. */
static unsigned
concurrency(const struct sched_model *m)
{
	if (m->cfg->concurrency_limit)
		return (unsigned)m->cfg->concurrency_limit;
	return m->slots ? m->slots : CFG_DEF_CONCURRENCY;
}

unsigned sched_model_concurrency(const struct sched_model *m) { return concurrency(m); }

const char *
sched_model_concurrency_source(const struct sched_model *m)
{
	if (m->cfg->concurrency_limit)
		return "config";
	return m->slots ? m->slots_from : "default";
}

/* The value of llama-server's -np / --parallel in argv (either "-np N" or "-np=N"); 0 when
 * absent or not a number in 1..SCHED_MAX_SLOTS. The last one wins, as in its parser. */
unsigned
sched_argv_parallel(char *const *argv)
{
	unsigned n = 0;

	for (size_t i = 1; argv != NULL && argv[i] != NULL; i++) {
		const char *a = argv[i], *v = NULL;
		long long   x;

		if (strcmp(a, "-np") == 0 || strcmp(a, "--parallel") == 0)
			v = argv[i + 1];
		else if (strncmp(a, "-np=", 4) == 0)
			v = a + 4;
		else if (strncmp(a, "--parallel=", 11) == 0)
			v = a + 11;
		if (v != NULL && parse_int(v, 1, SCHED_MAX_SLOTS, &x) == 0)
			n = (unsigned)x;
	}
	return n;
}

void
sched_model_set_slots(struct sched_model *m, unsigned slots, const char *from)
{
	if (slots == 0 || slots > SCHED_MAX_SLOTS || (m->slots == slots && m->slots_from == from))
		return;
	m->slots = slots;
	m->slots_from = from;
	log_info("sched", "model=%s msg=\"backend concurrency\" slots=%u from=%s%s", m->cfg->id, slots,
	    from, m->cfg->concurrency_limit ? " used=no reason=concurrencyLimit" : "");
	sched__pump();
}

/* May a waiting request be given m now? The one grant rule, for the fast path and the queue:
 * ready, below its limit, not being unloaded, reloaded, or swapped out (unless its batch of
 * queued requests is still being served). */
static bool
can_grant(const struct sched_model *m)
{
	return m->state == MODEL_READY && m->inflight < concurrency(m) && !m->unload_wanted &&
	       m->next_cfg == NULL && (!m->evict_wanted || m->batch_left > 0);
}

/* A grant uses up one place of the batch being served before a swap, and stops the TTL. */
static void
note_grant(struct sched_model *m)
{
	if (m->batch_left > 0)
		m->batch_left--;
	cancel_ttl(m);
}

static void
stop_model(struct sched_model *m, const char *why)
{
	if (m->stop_sent || m->state == MODEL_STOPPED)
		return;
	log_info("sched", "model=%s msg=\"unloading\" reason=%s", m->cfg->id, why);
	metrics_model_unload(m->cfg->id, why);
	cancel_ttl(m);
	m->stop_sent = true;
	m->batch_left = 0;
	set_state(m, MODEL_STOPPING);
	S.fx.stop(m, grace_ms(m));
}

static void
on_ttl(void *arg)
{
	struct sched_model *m = arg;

	m->ttl_timer = 0;
	if (m->state == MODEL_READY && m->inflight == 0 && m->queued == 0)
		stop_model(m, "ttl");
	sched__pump();
}

static void
arm_ttl(struct sched_model *m)
{
	int ttl = m->cfg->ttl_s < 0 ? S.cfg->global_ttl_s : m->cfg->ttl_s;

	cancel_ttl(m);
	if (ttl > 0 && m->state == MODEL_READY && m->inflight == 0 && m->queued == 0) {
		m->ttl_timer = S.fx.timer_add((uint64_t)ttl * 1000u, on_ttl, m);
		m->ttl_at = S.fx.now_ms() + (uint64_t)ttl * 1000u;
	}
}

static void
on_spawn_failed(void *arg)
{
	struct sched_model *m = arg;
	char                why[SCHED_ERR_MAX];

	m->spawn_failed_timer = 0;
	snprintf(why, sizeof(why), "%s", m->last_error);
	set_state(m, MODEL_STOPPED);
	sched_on_start_failed(m, 502, why);
}

static void
start_model(struct sched_model *m)
{
	char *err = NULL;

	m->starts++;
	m->start_ms = S.fx.now_ms();
	metrics_model_start(m->cfg->id);
	m->stop_sent = false;
	m->last_error[0] = '\0';
	m->slots = sched_argv_parallel(m->cfg->argv);
	m->slots_from = m->slots ? "argv" : NULL;
	set_state(m, MODEL_STARTING);
	if (S.fx.start(m, &err) == 0) {
		free(err);
		return;
	}
	/* Could not even spawn. Its waiters are told from the loop (never from inside the
	 * sched_acquire that got here); the next request retries. */
	snprintf(m->last_error, sizeof(m->last_error), "model %s failed to start: %s", m->cfg->id,
	    err ? err : "cannot start");
	free(err);
	m->spawn_failed_timer = S.fx.timer_add(0, on_spawn_failed, m);
}

/* Where next_waiting is in its walk. */
struct wait_cursor {
	bool     started;
	int      prio;
	uint64_t seq;
};

/* Does (prio a, seq a) come before (prio b, seq b)? Higher routing.scheduler priority first
 * (llama-swap's FIFO priority, 0 unless configured), then the older oldest ticket. */
static bool
wait_before(int pa, uint64_t sa, int pb, uint64_t sb)
{
	return pa != pb ? pa > pb : sa < sb;
}

static int
wait_prio(const struct sched_model *m)
{
	size_t i = cfg_index(m);

	return i == (size_t)-1 ? 0 : cfg_compat_priority(S.cfg, i);
}

/* The next waiting model after the cursor, in priority then FIFO order of oldest tickets. */
static struct sched_model *
next_waiting(struct wait_cursor *cur)
{
	struct sched_model *best = NULL;
	int                 best_prio = 0;

	for (size_t i = 0; i < S.n; i++) {
		struct sched_model *m = S.models[i];
		int                 p;

		if (m->head == NULL)
			continue;
		p = wait_prio(m);
		if (cur->started && !wait_before(cur->prio, cur->seq, p, m->head->seq))
			continue;
		if (best == NULL || wait_before(p, m->head->seq, best_prio, best->head->seq)) {
			best = m;
			best_prio = p;
		}
	}
	if (best) {
		cur->started = true;
		cur->prio = best_prio;
		cur->seq = best->head->seq;
	}
	return best;
}

static void
pump_once(void)
{
	struct wait_cursor  cur = { 0 };
	struct sched_model *w;

	/* 1. Which running models do waiting, not-yet-running models need gone? */
	for (size_t i = 0; i < S.n; i++)
		S.models[i]->evict_wanted = false;
	while ((w = next_waiting(&cur)) != NULL) {
		if (w->state != MODEL_STOPPED || w->hold_until > S.fx.now_ms())
			continue;
		mark_victims(w);
	}
	/* 2. Grants. */
	for (size_t i = 0; i < S.n; i++) {
		struct sched_model *m = S.models[i];

		while (m->head && can_grant(m)) {
			note_grant(m);
			ticket_grant(m->head);
		}
	}
	/* 3. Stops of idle models in the way; holders of a busy one that never end on their own
	 * are asked to (once per episode). */
	for (size_t i = 0; i < S.n; i++) {
		struct sched_model *m = S.models[i];
		bool                draining = (m->evict_wanted && m->batch_left == 0) ||
		                               m->unload_wanted || m->next_cfg != NULL;

		if (!draining || m->inflight == 0) {
			m->drain_told = false;
		} else if (!m->drain_told && S.drain_cb != NULL) {
			m->drain_told = true;
			S.drain_cb(m->cfg->id);
		}

		if (m->evict_wanted && m->state == MODEL_READY && m->inflight == 0 && m->batch_left == 0)
			stop_model(m, "swap");
		if (m->unload_wanted && m->inflight == 0 &&
		    (m->state == MODEL_READY || m->state == MODEL_STARTING))
			stop_model(m, m->retired ? "reload" : "api");
		if (m->next_cfg != NULL && m->inflight == 0 &&
		    (m->state == MODEL_READY || m->state == MODEL_STARTING))
			stop_model(m, "reload");
		if (S.shutting_down && (m->inflight == 0 || S.shutdown_force) &&
		    (m->state == MODEL_READY || m->state == MODEL_STARTING))
			stop_model(m, "shutdown");
	}
	/* 4. Starts, oldest waiter first (by priority first); a start makes later candidates wait
	 * for it. */
	cur = (struct wait_cursor){ 0 };
	while ((w = next_waiting(&cur)) != NULL) {
		if (w->state != MODEL_STOPPED || S.shutting_down || w->hold_until > S.fx.now_ms())
			continue;
		if (has_room(w))
			start_model(w);
	}
}

void
sched__pump(void)
{
	if (S.pumping) {
		S.pump_again = true;
		return;
	}
	S.pumping = true;
	do {
		S.pump_again = false;
		pump_once();
	} while (S.pump_again);
	S.pumping = false;
	sched__reap_retired();
	if (S.unloads != NULL && S.unload_timer == 0)
		S.unload_timer = S.fx.timer_add(0, sched__check_unloads, NULL);
	if (S.shutting_down && S.shutdown_done) {
		for (size_t i = 0; i < S.n; i++)
			if (S.models[i]->state != MODEL_STOPPED)
				return;
		void (*done)(void) = S.shutdown_done;

		S.shutdown_done = NULL;
		done();
	}
}

void
sched_set_drain_cb(sched_drain_cb cb)
{
	S.drain_cb = cb;
}

/* --- requests --- */

int
sched_acquire(struct sched_ticket *t, const struct cfg_model *c, sched_grant_cb cb, void *arg,
    int *status, char *msg, size_t msgn)
{
	struct sched_model *m = model_of(c);

	t->retry_after_s = 0;
	if (m == NULL) {
		*status = 404;
		snprintf(msg, msgn, "model not found");
		return -1;
	}
	if (S.shutting_down) {
		*status = 503;
		snprintf(msg, msgn, "modelmux is shutting down");
		t->retry_after_s = 5;
		return -1;
	}
	t->model = m;
	t->cb = cb;
	t->arg = arg;
	/* Fast path: ready, below its limit, nobody waiting ahead, not being swapped out. */
	if (m->hold_until > S.fx.now_ms()) {
		uint64_t left = m->hold_until - S.fx.now_ms();

		snprintf(msg, msgn, "model %s crashed %d times in %d s; held back for %llu s "
		    "(last error: %s)", c->id, S.cfg->crash.max_crashes, S.cfg->crash.window_s,
		    (unsigned long long)((left + 999) / 1000), m->last_error);
		t->model = NULL;
		t->retry_after_s = (int)((left + 999) / 1000);
		*status = 503;
		return -1;
	}
	if (m->head == NULL && can_grant(m)) {
		note_grant(m);
		t->state = TICKET_ACTIVE;
		m->inflight++;
		metrics_queue_wait(c->id, 0);
		return 1;
	}
	if (m->queued >= (size_t)S.cfg->queue.per_model ||
	    S.queued_total >= (size_t)S.cfg->queue.total) {
		snprintf(msg, msgn, "too many requests waiting for model %s (%zu queued)",
		    c->id, m->queued);
		log_warn("sched", "model=%s msg=\"queue full\" queued=%zu total=%zu", c->id, m->queued,
		    S.queued_total);
		t->model = NULL;
		t->retry_after_s = 1;
		*status = 429;
		return -1;
	}
	t->state = TICKET_QUEUED;
	t->seq = ++S.seq;
	t->enqueued_ms = S.fx.now_ms();
	t->next = NULL;
	t->prev = m->tail;
	if (m->tail)
		m->tail->next = t;
	else
		m->head = t;
	m->tail = t;
	m->queued++;
	S.queued_total++;
	cancel_ttl(m);
	t->deadline_timer = S.fx.timer_add((uint64_t)S.cfg->queue.max_wait_s * 1000u, on_deadline, t);
	sched__pump();
	return 0;
}

void
sched_release(struct sched_ticket *t)
{
	struct sched_model *m = t->model;

	switch (t->state) {
	case TICKET_IDLE:
		return;
	case TICKET_QUEUED:
		queue_remove(t);
		break;
	case TICKET_ACTIVE:
		m->inflight--;
		break;
	}
	t->state = TICKET_IDLE;
	t->model = NULL;
	arm_ttl(m);
	sched__pump();
}

/* --- process reports --- */

void
sched_on_ready(struct sched_model *m)
{
	if (m->state != MODEL_STARTING)
		return;
	set_state(m, MODEL_READY);
	metrics_model_loaded(m->cfg->id, (double)(S.fx.now_ms() - m->start_ms) / 1000.0);
	m->batch_left = (unsigned)MM_MIN(m->queued, (size_t)S.cfg->queue.swap_batch);
	arm_ttl(m);
	sched__pump();
}

/* A start refused with 503 (a peer that does not answer) says when to come back. */
static int
retry_after(const struct sched_model *m, int status)
{
	if (status != 503)
		return 0;
	return m->cfg->peer != NULL ? peer_retry_after_s(m->cfg->peer->name) : 1;
}

void
sched_on_start_failed(struct sched_model *m, int status, const char *reason)
{
	log_warn("sched", "model=%s msg=\"start failed\" waiters=%zu reason=\"%s\"", m->cfg->id,
	    m->queued, reason);
	snprintf(m->last_error, sizeof(m->last_error), "%s", reason);
	/* Everyone waiting for this load gets the same outcome; the process is being stopped. */
	while (m->head)
		sched__ticket_fail(m->head, status, reason, retry_after(m, status));
	if (m->state == MODEL_STARTING) {
		m->stop_sent = true;
		set_state(m, MODEL_STOPPING);
	}
	sched__pump();
}

/* A ready model died by itself. Past crashBackoff.maxCrashes in windowSeconds, it is held
 * back for holdSeconds: requests get 503 with Retry-After instead of a restart loop. */
static void
note_crash(struct sched_model *m, const char *reason)
{
	const struct cfg *c = S.cfg;
	uint64_t          now = S.fx.now_ms();
	size_t            recent = 0, keep = MM_MIN((size_t)c->crash.max_crashes, SCHED_CRASH_HISTORY);

	log_warn("sched", "model=%s msg=\"backend exited unexpectedly\" status=\"%s\" inflight=%zu",
	    m->cfg->id, reason, m->inflight);
	snprintf(m->last_error, sizeof(m->last_error), "backend %s", reason);
	metrics_model_crash(m->cfg->id);
	metrics_model_unload(m->cfg->id, "crash");
	m->crashes[m->ncrashes++ % SCHED_CRASH_HISTORY] = now;
	for (size_t i = 0; i < MM_MIN(m->ncrashes, SCHED_CRASH_HISTORY); i++)
		if (now - m->crashes[i] <= (uint64_t)c->crash.window_s * 1000u)
			recent++;
	if (keep == 0 || recent < keep)
		return;
	m->hold_until = now + (uint64_t)c->crash.hold_s * 1000u;
	m->ncrashes = 0;
	log_error("sched", "model=%s msg=\"crash loop: holding back\" crashes=%zu window_s=%d hold_s=%d",
	    m->cfg->id, recent, c->crash.window_s, c->crash.hold_s);
	while (m->head)
		sched__ticket_fail(m->head, 503, m->last_error, c->crash.hold_s);
}

void
sched_on_exited(struct sched_model *m, const char *reason)
{
	if (m->state == MODEL_READY && m->cfg->peer != NULL)
		log_warn("sched", "model=%s msg=\"peer model let go\" reason=\"%s\"", m->cfg->id, reason);
	else if (m->state == MODEL_READY)
		note_crash(m, reason);
	m->backend = NULL;
	m->exits++;
	if (m->next_cfg != NULL) {
		/* Reloaded with a new definition: the next start uses it. */
		cfg_unref(m->owner);
		m->cfg = m->next_cfg;
		m->owner = m->next_owner;
		m->next_cfg = NULL;
		m->next_owner = NULL;
	}
	m->stop_sent = false;
	m->batch_left = 0;
	m->unload_wanted = false;
	cancel_ttl(m);
	set_state(m, MODEL_STOPPED);
	sched__pump();
}
