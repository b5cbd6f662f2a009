/* backend: one interface over the kinds of backend a model can have (backend.h). */
#include <stdlib.h>
#include <string.h>

#include "modelmux/backend.h"
#include "modelmux/log.h"
#include "modelmux/config_peers.h"
#include "modelmux/loop.h"
#include "modelmux/peer.h"
#include "modelmux/probe.h"
#include "modelmux/supervisor.h"
#include "modelmux/util.h"

struct backend_ops {
	const char *kind;
	int       (*start)(struct backend *b, const struct cfg *top, char **err);
	void      (*stop)(struct backend *b, uint64_t grace_ms);
	void      (*probe)(struct backend *b);
	bool      (*reachable)(const struct backend *b, bool *reachable, uint64_t *age_ms);
};

struct backend {
	const struct backend_ops *ops;
	const struct cfg_model   *m;
	backend_cb                cb;
	void                     *arg;
	/* a process */
	struct sup_proc          *proc;
	/* a remote server */
	char                     *health_url; /* NULL: ready at once (checkEndpoint: none) */
	char                     *reach_url;
	struct probe              probe;
	uint64_t                  timer;      /* next poll, or the EXITED report */
	uint64_t                  deadline_ms;
	uint64_t                  started_ms, last_probe_ms;
	bool                      ready, stopping;
	bool                      reach_known, reach_ok;
	uint64_t                  reach_ms;
	/* What outlives a reload: the model's snapshot (m) may be freed while this runs. */
	char                     *id;
	char                     *peer_name;  /* a peer's model: its peer */
	/* a peer's model: in the list of them */
	struct backend           *next_peer, *prev_peer;
};

static struct backend *peer_backends; /* every peer model's backend, for peer state changes */

static void peer_unlink(struct backend *b);

static uint64_t
health_timeout_ms(const struct cfg *top, const struct cfg_model *m)
{
	int s = m->health_check_timeout_s ? m->health_check_timeout_s : top->health_check_timeout_s;

	return (uint64_t)s * 1000u;
}

static char *
health_url(const struct cfg_model *m)
{
	return m->check_endpoint ? xasprintf("%s%s", m->proxy, m->check_endpoint) : NULL;
}

/* Reports an event; frees the record after EXITED. */
static void
report(struct backend *b, enum backend_event ev, int status, const char *msg)
{
	b->cb(b->arg, ev, status, msg);
	if (ev != BACKEND_EXITED)
		return;
	probe_cancel(&b->probe);
	loop_timer_cancel(b->timer);
	peer_unlink(b);
	free(b->id);
	free(b->peer_name);
	free(b->health_url);
	free(b->reach_url);
	free(b);
}

/* --- a local process, under the supervisor --- */

static void
on_proc_event(struct sup_proc *p, enum sup_event ev, const char *reason, void *arg)
{
	struct backend *b = arg;
	char            tail[2048], *msg;

	switch (ev) {
	case SUP_READY:
		report(b, BACKEND_READY, 0, NULL);
		break;
	case SUP_START_FAILED:
	case SUP_START_TIMEOUT:
		sup_tail(p, 8, tail, sizeof(tail));
		msg = xasprintf("model %s failed to start: %s%s%s", b->id, reason,
		    *tail ? "; last output: " : "", tail);
		report(b, BACKEND_START_FAILED, ev == SUP_START_TIMEOUT ? 504 : 502, msg);
		free(msg);
		break;
	case SUP_EXITED:
		report(b, BACKEND_EXITED, 0, reason);
		break;
	}
}

static int
proc_start(struct backend *b, const struct cfg *top, char **err)
{
	const struct cfg_model *c = b->m;
	char                   *url = health_url(c);
	int                     stall = c->load_stall_timeout_s >= 0 ? c->load_stall_timeout_s
	                                                             : top->load_stall_timeout_s;
	struct sup_spec         spec = {
		.name = c->id,
		.exe = c->exe,
		.argv = c->argv,
		.env = c->env,
		.health_url = url,
		.reach_url = url ? NULL : c->proxy, /* checkEndpoint: none — any answer at all */
		.health_timeout_ms = health_timeout_ms(top, c),
		.stall_timeout_ms = (uint64_t)stall * 1000u,
		.stop_argv = c->stop_argv,
		.stop_exe = c->stop_exe,
	};

	b->proc = sup_start(&spec, on_proc_event, b, err);
	free(url);
	return b->proc ? 0 : -1;
}

static void
proc_stop(struct backend *b, uint64_t grace_ms)
{
	sup_stop(b->proc, grace_ms);
}

static void
proc_probe(struct backend *b)
{
	sup_probe_reach(b->proc);
}

static bool
proc_reachable(const struct backend *b, bool *reachable, uint64_t *age_ms)
{
	return sup_reachability(b->proc, reachable, age_ms);
}

static const struct backend_ops process_ops = {
	.kind = "process",
	.start = proc_start,
	.stop = proc_stop,
	.probe = proc_probe,
	.reachable = proc_reachable,
};

/* --- a remote server: nothing to run, only its health to wait for --- */

static void remote_poll(void *arg);

static void
remote_exited(void *arg)
{
	struct backend *b = arg;

	b->timer = 0;
	report(b, BACKEND_EXITED, 0, "released");
}

/* Ends the start with a failure; EXITED follows from the loop. */
static void
remote_fail(struct backend *b, const char *why)
{
	char *msg = xasprintf("model %s failed to start: %s", b->id, why);

	b->stopping = true;
	report(b, BACKEND_START_FAILED, 504, msg);
	free(msg);
	b->timer = loop_timer_add(0, remote_exited, b);
}

static void
remote_ready(struct backend *b)
{
	b->ready = true;
	b->reach_known = b->reach_ok = true;
	b->reach_ms = loop_now_ms();
	log_info("backend", "model=%s msg=ready kind=%s ms=%llu", b->id, b->ops->kind,
	    (unsigned long long)(loop_now_ms() - b->started_ms));
	report(b, BACKEND_READY, 0, NULL);
}

static void
remote_probed(void *arg, int status)
{
	struct backend *b = arg;

	if (b->stopping)
		return;
	if (b->ready) { /* a reachability probe */
		if (b->reach_known && b->reach_ok != (status > 0))
			log_warn("backend", "model=%s msg=\"%s\"", b->id,
			    status > 0 ? "backend answers again" : "backend does not answer");
		b->reach_known = true;
		b->reach_ok = status > 0;
		b->reach_ms = loop_now_ms();
		return;
	}
	if (status == 200) {
		remote_ready(b);
		return;
	}
	b->timer = loop_timer_add(BACKEND_REMOTE_POLL_MS, remote_poll, b);
}

static void
remote_poll(void *arg)
{
	struct backend *b = arg;
	uint64_t        now = loop_now_ms();

	b->timer = 0;
	if (b->health_url == NULL) { /* checkEndpoint: none */
		remote_ready(b);
		return;
	}
	if (now >= b->deadline_ms) {
		char *why = xasprintf("health check of %s did not pass in %llu s", b->health_url,
		    (unsigned long long)((b->deadline_ms - b->started_ms + 999) / 1000));

		remote_fail(b, why);
		free(why);
		return;
	}
	b->last_probe_ms = now;
	if (!probe_send(&b->probe, b->health_url,
	    MM_MIN(b->deadline_ms - now, (uint64_t)SUP_PROBE_TIMEOUT_MS), remote_probed, b))
		b->timer = loop_timer_add(BACKEND_REMOTE_POLL_MS, remote_poll, b);
}

static int
remote_start(struct backend *b, const struct cfg *top, char **err)
{
	(void)err;
	b->health_url = health_url(b->m);
	b->reach_url = xstrdup(b->health_url ? b->health_url : b->m->proxy);
	b->started_ms = loop_now_ms();
	b->deadline_ms = b->started_ms + health_timeout_ms(top, b->m);
	log_info("backend", "model=%s msg=\"waiting for remote server\" proxy=%s", b->id,
	    b->m->proxy);
	b->timer = loop_timer_add(0, remote_poll, b);
	return 0;
}

static void
remote_stop(struct backend *b, uint64_t grace_ms)
{
	(void)grace_ms;
	if (b->stopping)
		return;
	b->stopping = true;
	probe_cancel(&b->probe);
	loop_timer_cancel(b->timer);
	b->timer = loop_timer_add(0, remote_exited, b);
}

static void
remote_probe(struct backend *b)
{
	uint64_t now = loop_now_ms();

	if (!b->ready || b->stopping || probe_busy(&b->probe) ||
	    now - b->last_probe_ms < SUP_REACH_INTERVAL_MS)
		return;
	b->last_probe_ms = now;
	(void)probe_send(&b->probe, b->reach_url, SUP_REACH_TIMEOUT_MS, remote_probed, b);
}

static bool
remote_reachable(const struct backend *b, bool *reachable, uint64_t *age_ms)
{
	if (!b->ready || !b->reach_known)
		return false;
	*reachable = b->reach_ok;
	*age_ms = loop_now_ms() - b->reach_ms;
	return true;
}

static const struct backend_ops remote_ops = {
	.kind = "remote",
	.start = remote_start,
	.stop = remote_stop,
	.probe = remote_probe,
	.reachable = remote_reachable,
};

/* --- a peer's model: ready while its peer answers (peer.h) --- */

static void
peer_unlink(struct backend *b)
{
	if (b->peer_name == NULL)
		return;
	if (b->prev_peer != NULL)
		b->prev_peer->next_peer = b->next_peer;
	else if (peer_backends == b)
		peer_backends = b->next_peer;
	if (b->next_peer != NULL)
		b->next_peer->prev_peer = b->prev_peer;
	b->next_peer = b->prev_peer = NULL;
}

static void peer_watch(void *arg);

/* A peer changed state: its backends look now rather than at their next watch. */
static void
on_peer_change(const char *name, enum peer_state st)
{
	struct backend *b, *next;

	(void)st;
	for (b = peer_backends; b != NULL; b = next) {
		next = b->next_peer;
		if (b->stopping || strcmp(b->peer_name, name) != 0)
			continue;
		loop_timer_cancel(b->timer);
		peer_watch(b); /* may free b: `next` was taken first */
	}
}

static void
peer_watch(void *arg)
{
	struct backend *b = arg;
	const char     *name = b->peer_name;
	enum peer_state st = peer_state_of(name);
	uint64_t        now = loop_now_ms();
	char           *msg;

	b->timer = 0;
	if (b->ready && st == PEER_DOWN) {
		/* Let go: the next request meets a start that fails at once with 503. */
		b->stopping = true;
		msg = xasprintf("peer %s stopped answering", name);
		report(b, BACKEND_EXITED, 0, msg);
		free(msg);
		return;
	}
	if (!b->ready && st == PEER_UP) {
		remote_ready(b);
	} else if (!b->ready && (st == PEER_DOWN || now >= b->deadline_ms)) {
		msg = xasprintf("model %s is unavailable: peer %s %s", b->id, name,
		    st == PEER_DOWN ? "does not answer" : "has not answered its health check yet");
		b->stopping = true;
		report(b, BACKEND_START_FAILED, 503, msg);
		free(msg);
		b->timer = loop_timer_add(0, remote_exited, b);
		return;
	}
	b->timer = loop_timer_add(BACKEND_PEER_WATCH_MS, peer_watch, b);
}

static int
peer_start(struct backend *b, const struct cfg *top, char **err)
{
	(void)top;
	(void)err;
	peer_set_change_cb(on_peer_change);
	b->peer_name = xstrdup(b->m->peer->name);
	b->next_peer = peer_backends;
	if (peer_backends != NULL)
		peer_backends->prev_peer = b;
	peer_backends = b;
	b->started_ms = loop_now_ms();
	b->deadline_ms = b->started_ms + (uint64_t)b->m->peer->check_timeout_s * 1000u +
	    BACKEND_PEER_WATCH_MS;
	b->timer = loop_timer_add(0, peer_watch, b);
	return 0;
}

static void
peer_probe(struct backend *b)
{
	(void)b; /* the peer module probes on its own schedule */
}

static bool
peer_reachable(const struct backend *b, bool *reachable, uint64_t *age_ms)
{
	enum peer_state st = peer_state_of(b->peer_name);

	if (!b->ready || st == PEER_UNKNOWN)
		return false;
	*reachable = st == PEER_UP;
	*age_ms = 0;
	return true;
}

static const struct backend_ops peer_ops = {
	.kind = "peer",
	.start = peer_start,
	.stop = remote_stop,
	.probe = peer_probe,
	.reachable = peer_reachable,
};

/* --- the interface --- */

struct backend *
backend_start(const struct cfg *top, const struct cfg_model *m, backend_cb cb, void *arg,
    char **err)
{
	struct backend *b = xcalloc(1, sizeof(*b));

	b->ops = m->peer != NULL ? &peer_ops : m->argv != NULL ? &process_ops : &remote_ops;
	b->m = m;
	b->id = xstrdup(m->id);
	b->cb = cb;
	b->arg = arg;
	if (b->ops->start(b, top, err) == -1) {
		free(b->id);
		free(b);
		return NULL;
	}
	return b;
}

void
backend_stop(struct backend *b, uint64_t grace_ms)
{
	b->ops->stop(b, grace_ms);
}

void
backend_probe(struct backend *b)
{
	b->ops->probe(b);
}

bool
backend_reachable(const struct backend *b, bool *reachable, uint64_t *age_ms)
{
	return b->ops->reachable(b, reachable, age_ms);
}

const char *
backend_kind(const struct backend *b)
{
	return b->ops->kind;
}
