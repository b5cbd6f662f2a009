/* api: management routes. */
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "modelmux/activity.h"
#include "modelmux/api.h"
#include "modelmux/config_peers.h"
#include "modelmux/config_compat.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/metrics.h"
#include "modelmux/peer.h"
#include "modelmux/sched.h"
#include "modelmux/status.h"
#include "modelmux/util.h"

static struct {
	uint64_t started_ms;
	char     bound[80];
	bool     exposed;
	unsigned generation;
} A = { .generation = 1 };

void
api_set_generation(unsigned gen)
{
	A.generation = gen;
}

void
api_set_listener(const char *bound, bool exposed_without_keys)
{
	A.started_ms = loop_now_ms();
	snprintf(A.bound, sizeof(A.bound), "%s", bound);
	A.exposed = exposed_without_keys;
}

static const char *
error_type(int status)
{
	switch (status) {
	case 401: return "authentication_error";
	case 403: return "permission_error";
	case 404: return "not_found_error";
	case 429: return "rate_limit_error";
	default:  return status >= 500 ? "server_error" : "invalid_request_error";
	}
}

char *
api_error_json(int status, const char *code, const char *message)
{
	cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
	char  *s;

	cJSON_AddStringToObject(e, "message", message);
	cJSON_AddStringToObject(e, "type", error_type(status));
	cJSON_AddStringToObject(e, "code", code);
	s = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (s == NULL)
		fatal("out of memory");
	/* Owned by the caller and freed with free(): cJSON uses malloc by default. */
	return s;
}

static void
reply_json(struct api_reply *out, int status, cJSON *doc)
{
	out->status = status;
	out->ctype = "application/json";
	out->body = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	if (out->body == NULL)
		fatal("out of memory");
}

/* Where a peer's model lives: "peer" (ours: name, proxy, state) and llama-swap's
 * meta.llamaswap {type: "peer", peerID}. */
static void
add_peer_fields(cJSON *o, const struct cfg_peer *p)
{
	cJSON *meta = cJSON_GetObjectItemCaseSensitive(o, "meta"), *ls, *po;

	po = cJSON_AddObjectToObject(o, "peer");
	cJSON_AddStringToObject(po, "name", p->name);
	cJSON_AddStringToObject(po, "proxy", p->proxy);
	cJSON_AddStringToObject(po, "state", peer_state_name(peer_state_of(p->name)));
	if (!cJSON_IsObject(meta)) {
		cJSON_DeleteItemFromObjectCaseSensitive(o, "meta");
		meta = cJSON_AddObjectToObject(o, "meta");
	}
	if (!cJSON_IsObject(ls = cJSON_GetObjectItemCaseSensitive(meta, "llamaswap")))
		ls = cJSON_AddObjectToObject(meta, "llamaswap");
	cJSON_DeleteItemFromObjectCaseSensitive(ls, "type");
	cJSON_DeleteItemFromObjectCaseSensitive(ls, "peerID");
	cJSON_AddStringToObject(ls, "type", "peer");
	cJSON_AddStringToObject(ls, "peerID", p->name);
}

static void
add_modalities(cJSON *o, const char *key, unsigned bits)
{
	cJSON *a = cJSON_AddArrayToObject(o, key);

	if (bits & COMPAT_MOD_TEXT)
		cJSON_AddItemToArray(a, cJSON_CreateString("text"));
	if (bits & COMPAT_MOD_IMAGE)
		cJSON_AddItemToArray(a, cJSON_CreateString("image"));
	if (bits & COMPAT_MOD_AUDIO)
		cJSON_AddItemToArray(a, cJSON_CreateString("audio"));
}

/* "text+image->text" */
static void
add_modality(cJSON *o, unsigned in, unsigned out)
{
	static const struct { unsigned bit; const char *name; } mods[] = {
		{ COMPAT_MOD_TEXT, "text" }, { COMPAT_MOD_IMAGE, "image" }, { COMPAT_MOD_AUDIO, "audio" },
	};
	char   s[64] = "";
	size_t n = 0;

	for (int side = 0; side < 2; side++) {
		unsigned bits = side == 0 ? in : out;
		bool     first = true;

		for (size_t i = 0; i < MM_ARRAY_LEN(mods); i++) {
			if ((bits & mods[i].bit) == 0)
				continue;
			n += (size_t)snprintf(s + n, sizeof(s) - n, "%s%s", first ? "" : "+", mods[i].name);
			first = false;
		}
		if (side == 0)
			n += (size_t)snprintf(s + n, sizeof(s) - n, "->");
	}
	cJSON_AddStringToObject(o, "modality", s);
}

/* llama-swap's fields of a /v1/models record: architecture, capabilities and
 * supported_parameters from the model's capabilities: block, context_length where known, and
 * meta.llamaswap (its metadata plus type and aliases) beside our own meta keys. */
static void
add_llamaswap_fields(cJSON *o, const struct cfg_model *m, const char *type)
{
	const struct cfg_caps *caps = m->compat ? &m->compat->caps : NULL;
	long long              ctx = cfg_compat_context(m);
	cJSON                 *meta, *ls, *a;

	if (caps != NULL && caps->set) {
		bool text_out = (caps->out & COMPAT_MOD_TEXT) != 0 || caps->out == 0;

		if (caps->in != 0 || caps->out != 0) {
			a = cJSON_AddObjectToObject(o, "architecture");
			add_modalities(a, "input_modalities", caps->in ? caps->in : COMPAT_MOD_TEXT);
			add_modalities(a, "output_modalities", caps->out ? caps->out : COMPAT_MOD_TEXT);
			add_modality(a, caps->in ? caps->in : COMPAT_MOD_TEXT,
			    caps->out ? caps->out : COMPAT_MOD_TEXT);
		}
		a = cJSON_AddObjectToObject(o, "capabilities");
		cJSON_AddBoolToObject(a, "vision", (caps->in & COMPAT_MOD_IMAGE) && text_out);
		cJSON_AddBoolToObject(a, "audio_transcriptions", (caps->in & COMPAT_MOD_AUDIO) && text_out);
		cJSON_AddBoolToObject(a, "audio_speech", (caps->out & COMPAT_MOD_AUDIO) != 0);
		cJSON_AddBoolToObject(a, "image_generation", (caps->out & COMPAT_MOD_IMAGE) != 0);
		cJSON_AddBoolToObject(a, "image_to_image", (caps->in & COMPAT_MOD_IMAGE) &&
		    (caps->out & COMPAT_MOD_IMAGE));
		cJSON_AddBoolToObject(a, "function_calling", caps->tools);
		cJSON_AddBoolToObject(a, "reranker", caps->reranker);
		if (caps->tools) {
			a = cJSON_AddArrayToObject(o, "supported_parameters");
			cJSON_AddItemToArray(a, cJSON_CreateString("tools"));
			cJSON_AddItemToArray(a, cJSON_CreateString("tool_choice"));
		}
	}
	if (ctx > 0)
		cJSON_AddNumberToObject(o, "context_length", (double)ctx);
	meta = m->metadata && cJSON_IsObject(m->metadata) ? cJSON_Duplicate(m->metadata, true) :
	    cJSON_CreateObject();
	ls = m->metadata && cJSON_IsObject(m->metadata) ? cJSON_Duplicate(m->metadata, true) :
	    cJSON_CreateObject();
	cJSON_DeleteItemFromObjectCaseSensitive(meta, "llamaswap");
	cJSON_AddStringToObject(ls, "type", type);
	if (m->aliases && m->aliases[0]) {
		a = cJSON_AddArrayToObject(ls, "aliases");
		for (char **p = m->aliases; *p; p++)
			cJSON_AddItemToArray(a, cJSON_CreateString(*p));
	}
	cJSON_AddItemToObject(meta, "llamaswap", ls);
	if (ctx > 0)
		cJSON_AddNumberToObject(meta, "n_ctx", (double)ctx);
	cJSON_AddItemToObject(o, "meta", meta);
}

/* A selector's record: a virtual model id (llama-swap lists them). */
static void
add_selector_record(cJSON *data, const struct cfg_selector *s, time_t now)
{
	cJSON *o = cJSON_CreateObject(), *meta, *ls, *t;

	cJSON_AddStringToObject(o, "id", s->id);
	cJSON_AddStringToObject(o, "object", "model");
	cJSON_AddNumberToObject(o, "created", (double)now);
	cJSON_AddStringToObject(o, "owned_by", "modelmux");
	if (s->name)
		cJSON_AddStringToObject(o, "name", s->name);
	if (s->description)
		cJSON_AddStringToObject(o, "description", s->description);
	cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "status"), "value", "unloaded");
	meta = s->metadata ? cJSON_Duplicate(s->metadata, true) : cJSON_CreateObject();
	ls = s->metadata ? cJSON_Duplicate(s->metadata, true) : cJSON_CreateObject();
	cJSON_AddStringToObject(ls, "type", "selector");
	cJSON_AddStringToObject(ls, "strategy", s->strategy == COMPAT_SEL_PIN ? "pin" :
	    s->strategy == COMPAT_SEL_WARM ? "warm" : "spillover");
	t = cJSON_AddArrayToObject(ls, "targets");
	for (char **p = s->targets; *p; p++)
		cJSON_AddItemToArray(t, cJSON_CreateString(*p));
	cJSON_AddItemToObject(meta, "llamaswap", ls);
	cJSON_AddItemToObject(o, "meta", meta);
	cJSON_AddItemToArray(data, o);
}

static void
add_model_record(cJSON *data, const struct cfg_model *m, const char *id, time_t now)
{
	const struct sched_model *sm = sched_model_get(m->id);
	enum model_state          st = sm ? sched_model_state(sm) : MODEL_STOPPED;
	cJSON                    *o = cJSON_CreateObject(), *status, *aliases;

	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddStringToObject(o, "object", "model");
	cJSON_AddNumberToObject(o, "created", (double)now);
	cJSON_AddStringToObject(o, "owned_by", "modelmux");
	if (m->name)
		cJSON_AddStringToObject(o, "name", m->name);
	if (m->description)
		cJSON_AddStringToObject(o, "description", m->description);
	status = cJSON_AddObjectToObject(o, "status");
	cJSON_AddStringToObject(status, "value", st == MODEL_READY ? "loaded" : "unloaded");
	cJSON_AddStringToObject(o, "state", sched_state_name(st));
	if (m->aliases && m->aliases[0]) {
		aliases = cJSON_AddArrayToObject(o, "aliases");
		for (char **a = m->aliases; *a; a++)
			cJSON_AddItemToArray(aliases, cJSON_CreateString(*a));
	}
	add_llamaswap_fields(o, m, strcmp(id, m->id) == 0 ? "model" : "alias");
	if (m->peer != NULL)
		add_peer_fields(o, m->peer);
	cJSON_AddItemToArray(data, o);
}

static void
list_models(const struct cfg *cfg, struct api_reply *out)
{
	cJSON *root = cJSON_CreateObject(), *data;
	time_t now = time(NULL);

	cJSON_AddStringToObject(root, "object", "list");
	data = cJSON_AddArrayToObject(root, "data");
	for (size_t i = 0; i < cfg->nmodels; i++) {
		const struct cfg_model *m = &cfg->models[i];

		if (m->unlisted)
			continue;
		add_model_record(data, m, m->id, now);
		for (char **a = m->aliases; cfg->include_aliases_in_list && a && *a; a++)
			add_model_record(data, m, *a, now);
	}
	for (size_t i = 0; cfg->compat && i < cfg->compat->nsel; i++)
		if (!cfg->compat->sel[i].unlisted)
			add_selector_record(data, &cfg->compat->sel[i], now);
	reply_json(out, 200, root);
}

/* What a model's backend gets at once, and where that number comes from. */
static void
add_concurrency(cJSON *o, const struct sched_model *sm)
{
	cJSON_AddNumberToObject(o, "concurrency", sched_model_concurrency(sm));
	cJSON_AddStringToObject(o, "concurrency_from", sched_model_concurrency_source(sm));
}

/* /running's "cmd" (llama-swap's): the command line as resolved, words with blanks quoted. */
static void
add_cmd(cJSON *o, const struct cfg_model *m)
{
	struct buf b = { 0 };

	for (char **a = m->argv; a && *a; a++) {
		bool quote = **a == '\0' || strpbrk(*a, " \t\n\"'\\$") != NULL;

		if (a != m->argv)
			buf_printf(&b, " ");
		if (!quote) {
			buf_printf(&b, "%s", *a);
			continue;
		}
		buf_printf(&b, "'");
		for (const char *p = *a; *p; p++)
			buf_printf(&b, *p == '\'' ? "'\\''" : "%c", *p);
		buf_printf(&b, "'");
	}
	cJSON_AddStringToObject(o, "cmd", b.data ? b.data : "");
	buf_free(&b);
}

static void
list_running(const struct cfg *cfg, struct api_reply *out)
{
	cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "running");

	for (size_t i = 0; i < cfg->nmodels; i++) {
		const struct cfg_model   *m = &cfg->models[i];
		struct sched_model       *sm = sched_model_get(m->id);
		cJSON                    *o;

		if (sm == NULL || sched_model_state(sm) == MODEL_STOPPED)
			continue;
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "model", m->id);
		cJSON_AddStringToObject(o, "state", sched_state_name(sched_model_state(sm)));
		cJSON_AddStringToObject(o, "proxy", m->proxy);
		cJSON_AddNumberToObject(o, "ttl", m->ttl_s < 0 ? cfg->global_ttl_s : m->ttl_s);
		cJSON_AddNumberToObject(o, "inflight", (double)sched_model_inflight(sm));
		cJSON_AddNumberToObject(o, "queued", (double)sched_model_queued(sm));
		add_concurrency(o, sm);
		add_cmd(o, m);
		/* llama-swap always has these two, "" when unset. */
		cJSON_AddStringToObject(o, "name", m->name ? m->name : "");
		cJSON_AddStringToObject(o, "description", m->description ? m->description : "");
		cJSON_AddItemToArray(arr, o);
	}
	reply_json(out, 200, root);
}

/* GET /metrics: the metrics module's series plus the scheduler's gauges. */
static void
render_metrics(const struct cfg *cfg, struct api_reply *out)
{
	static const enum model_state states[] = { MODEL_STOPPED, MODEL_STARTING, MODEL_READY,
		                                   MODEL_STOPPING };
	struct buf b = { 0 };

	metrics_render(&b);
	peer_metrics(&b);
	buf_printf(&b, "# HELP modelmux_model_state 1 for the state each model is in.\n"
	    "# TYPE modelmux_model_state gauge\n");
	for (size_t i = 0; i < cfg->nmodels; i++) {
		const struct sched_model *sm = sched_model_get(cfg->models[i].id);

		for (size_t k = 0; sm && k < MM_ARRAY_LEN(states); k++) {
			buf_printf(&b, "modelmux_model_state{model=\"");
			metrics_label(&b, cfg->models[i].id);
			buf_printf(&b, "\",state=\"%s\"} %d\n", sched_state_name(states[k]),
			    sched_model_state(sm) == states[k]);
		}
	}
	buf_printf(&b, "# HELP modelmux_queue_depth Requests waiting for each model.\n"
	    "# TYPE modelmux_queue_depth gauge\n");
	for (size_t i = 0; i < cfg->nmodels; i++) {
		const struct sched_model *sm = sched_model_get(cfg->models[i].id);

		if (sm) {
			buf_printf(&b, "modelmux_queue_depth{model=\"");
			metrics_label(&b, cfg->models[i].id);
			buf_printf(&b, "\"} %zu\n", sched_model_queued(sm));
		}
	}
	buf_printf(&b, "# HELP modelmux_requests_in_flight Requests each model is serving.\n"
	    "# TYPE modelmux_requests_in_flight gauge\n");
	for (size_t i = 0; i < cfg->nmodels; i++) {
		const struct sched_model *sm = sched_model_get(cfg->models[i].id);

		if (sm) {
			buf_printf(&b, "modelmux_requests_in_flight{model=\"");
			metrics_label(&b, cfg->models[i].id);
			buf_printf(&b, "\"} %zu\n", sched_model_inflight(sm));
		}
	}
	out->status = 200;
	out->ctype = "text/plain; version=0.0.4; charset=utf-8";
	out->body = b.data;
}

/* The peers' part of /api/health; true when one of them does not answer. */
static bool
add_peers_health(cJSON *root, cJSON *warn)
{
	struct peer_info pi;
	cJSON           *arr;
	bool             down = false;

	if (peer_count() == 0)
		return false;
	arr = cJSON_AddArrayToObject(root, "peers");
	for (size_t i = 0; peer_info(i, &pi); i++) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "name", pi.name);
		cJSON_AddStringToObject(o, "proxy", pi.proxy);
		cJSON_AddStringToObject(o, "state", peer_state_name(pi.state));
		cJSON_AddNumberToObject(o, "last_status", pi.last_status);
		cJSON_AddNumberToObject(o, "state_age_ms", (double)(loop_now_ms() - pi.since_ms));
		cJSON_AddNumberToObject(o, "check_interval_s", pi.interval_s);
		cJSON_AddItemToArray(arr, o);
		if (pi.state == PEER_DOWN) {
			char *w = xasprintf("peer %s does not answer", pi.name);

			down = true;
			cJSON_AddItemToArray(warn, cJSON_CreateString(w));
			free(w);
		}
	}
	return down;
}

/* GET /api/health: the detailed view. healthy, degraded (a model held back after crashes, a
 * ready model whose backend does not answer, a queue over 80 % full, or exposed without keys)
 * or unhealthy (stopping). */
static void
health_detail(const struct cfg *cfg, struct api_reply *out)
{
	cJSON      *root = cJSON_CreateObject(), *models, *q, *warn;
	size_t      queued = sched_queued_total();
	bool        degraded = A.exposed;
	const char *status;

	warn = cJSON_CreateArray();
	if (A.exposed)
		cJSON_AddItemToArray(warn, cJSON_CreateString(
		    "listening beyond loopback without apiKeys: anyone who can reach it can use it"));
	models = cJSON_CreateArray();
	for (size_t i = 0; i < cfg->nmodels; i++) {
		const struct cfg_model   *m = &cfg->models[i];
		struct sched_model       *sm = sched_model_get(m->id);
		cJSON                    *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "id", m->id);
		if (sm != NULL) {
			cJSON_AddStringToObject(o, "state", sched_state_name(sched_model_state(sm)));
			cJSON_AddNumberToObject(o, "inflight", (double)sched_model_inflight(sm));
			cJSON_AddNumberToObject(o, "queued", (double)sched_model_queued(sm));
			cJSON_AddNumberToObject(o, "starts", sched_model_starts(sm));
			cJSON_AddBoolToObject(o, "held_back", sched_model_held(sm));
			if (sched_model_last_error(sm)[0])
				cJSON_AddStringToObject(o, "last_error", sched_model_last_error(sm));
			if (sched_model_held(sm)) {
				degraded = true;
				cJSON_AddItemToArray(warn, cJSON_CreateString("a model is held back after repeated crashes"));
			}
			/* A ready model's backend: the last probe's answer (this request may start the
			 * next one, bounded per model; the answer shows in a later request). */
			if (sched_model_state(sm) == MODEL_READY) {
				bool     reachable;
				uint64_t age_ms;

				sched_model_probe(sm);
				if (sched_model_reachable(sm, &reachable, &age_ms)) {
					cJSON_AddBoolToObject(o, "reachable", reachable);
					cJSON_AddNumberToObject(o, "probe_age_ms", (double)age_ms);
					if (!reachable) {
						char *w = xasprintf("the backend of ready model %s does not answer",
						    m->id);

						degraded = true;
						cJSON_AddItemToArray(warn, cJSON_CreateString(w));
						free(w);
					}
				}
			}
		}
		cJSON_AddItemToArray(models, o);
	}
	if (add_peers_health(root, warn))
		degraded = true;
	if (queued * 5 > (size_t)cfg->queue.total * 4) {
		degraded = true;
		cJSON_AddItemToArray(warn, cJSON_CreateString("request queue over 80% full"));
	}
	status = sched_is_stopping() ? "unhealthy" : degraded ? "degraded" : "healthy";
	cJSON_AddStringToObject(root, "status", status);
	cJSON_AddStringToObject(root, "version", MM_VERSION);
	cJSON_AddNumberToObject(root, "uptime_seconds", (double)(loop_now_ms() - A.started_ms) / 1000.0);
	cJSON_AddNumberToObject(root, "config_generation", A.generation);
	cJSON_AddStringToObject(root, "listen", A.bound);
	q = cJSON_AddObjectToObject(root, "queue");
	cJSON_AddNumberToObject(q, "queued", (double)queued);
	cJSON_AddNumberToObject(q, "limit", cfg->queue.total);
	status_annotate(models, cfg); /* the web page's detail */
	cJSON_AddItemToObject(root, "models", models);
	cJSON_AddItemToObject(root, "warnings", warn);
	reply_json(out, strcmp(status, "unhealthy") == 0 ? 503 : 200, root);
}

static void reply_error(struct api_reply *out, int status, const char *code, const char *msg);

/* GET /health/model/<model>, for a load balancer's health check (contrib/haproxy): 200 when
 * the model (by id or alias) is loaded and ready here, 202 when this host serves it but a
 * request would have to load it first (stopped, starting, stopping), 503 when a request for
 * it would be refused now (the daemon is stopping, the model is held back after crashes, its
 * peer does not answer), 404 when this host does not serve it. */
static void
model_readiness(const struct cfg *cfg, const char *name, struct api_reply *out)
{
	const struct cfg_model   *m = cfg_find_model(cfg, name);
	const struct sched_model *sm = m ? sched_model_get(m->id) : NULL;
	enum model_state          st;
	const char               *why = NULL;
	cJSON                    *o;
	int                       status;

	if (m == NULL || sm == NULL) {
		reply_error(out, 404, "model_not_found", "model not served here");
		return;
	}
	st = sched_model_state(sm);
	if (sched_is_stopping())
		why = "shutting down";
	else if (sched_model_held(sm))
		why = "held back after repeated crashes";
	else if (m->peer != NULL && peer_state_of(m->peer->name) == PEER_DOWN)
		why = "its peer does not answer";
	status = why ? 503 : st == MODEL_READY ? 200 : 202;
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "model", m->id);
	cJSON_AddStringToObject(o, "state", sched_state_name(st));
	cJSON_AddBoolToObject(o, "loaded", st == MODEL_READY);
	if (why != NULL)
		cJSON_AddStringToObject(o, "unavailable", why);
	reply_json(out, status, o);
}

static void
reply_error(struct api_reply *out, int status, const char *code, const char *msg)
{
	out->status = status;
	out->ctype = "application/json";
	out->body = api_error_json(status, code, msg);
}

/* GET /api/activity[?after=<id>&limit=<n>]: the last requests, oldest first. */
static void
list_activity(const struct api_call *c, struct api_reply *out)
{
	char      v[24];
	long long after = 0, limit = ACTIVITY_PAGE_MAX;

	if (router_query_param(c->query, "after", v, sizeof(v)) >= 0 &&
	    parse_int(v, 0, INT64_MAX, &after) == -1) {
		reply_error(out, 400, "invalid_request", "after: expected an entry id");
		return;
	}
	if (router_query_param(c->query, "limit", v, sizeof(v)) >= 0 &&
	    parse_int(v, 1, ACTIVITY_PAGE_MAX, &limit) == -1) {
		snprintf(v, sizeof(v), "limit: 1 .. %d", ACTIVITY_PAGE_MAX);
		reply_error(out, 400, "invalid_request", v);
		return;
	}
	out->status = 200;
	out->ctype = "application/json";
	out->body = activity_json((uint64_t)after, (size_t)limit, (size_t)c->cfg->activity_max);
}

static void
reply_load_ok(struct api_call *c)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "model", c->model->id);
	cJSON_AddStringToObject(o, "state", "ready");
	reply_json(&c->reply, 200, o);
}

static void
on_load_granted(struct sched_ticket *t, int status, const char *msg, void *arg)
{
	struct api_call *c = arg;

	if (status == 0) {
		sched_release(t);
		reply_load_ok(c);
	} else {
		reply_error(&c->reply, status, status == 504 ? "backend_timeout" : "load_failed", msg);
		c->reply.retry_after_s = t->retry_after_s;
	}
	c->done(c);
}

/* POST /api/models/load/<model>: starts it with the usual swap rules; answers when it is
 * ready or failed. */
static enum api_result
load_model(struct api_call *c, const char *name)
{
	char        msg[SCHED_MSG_MAX];
	char        why[300];
	int         status = 0;

	if ((c->model = cfg_find_model(c->cfg, name)) == NULL) {
		snprintf(why, sizeof(why), "model %.200s not found", name);
		reply_error(&c->reply, 404, "model_not_found", why);
		return API_DONE;
	}
	switch (sched_acquire(&c->ticket, c->model, on_load_granted, c, &status, msg,
	    sizeof(msg))) {
	case 1:
		sched_release(&c->ticket);
		reply_load_ok(c);
		return API_DONE;
	case 0:
		return API_PENDING;
	default:
		reply_error(&c->reply, status, "load_failed", msg);
		c->reply.retry_after_s = c->ticket.retry_after_s;
		return API_DONE;
	}
}

static void
on_unloaded(struct sched_unload *u, void *arg)
{
	struct api_call *c = arg;
	cJSON           *o;

	(void)u;
	c->unloading = false;
	if (c->model != NULL || c->unload_all_text) {
		c->reply.status = 200;
		c->reply.ctype = "text/plain";
		c->reply.body = xstrdup("OK");
	} else {
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "msg", "ok");
		reply_json(&c->reply, 200, o);
	}
	c->done(c);
}

/* POST /api/models/unload[/<model>]: in-flight requests finish first; answers once stopped. */
static enum api_result
unload_models(struct api_call *c, const char *name)
{
	struct sched_model *m = NULL;
	char                why[300];

	if (name != NULL) {
		if ((c->model = cfg_find_model(c->cfg, name)) == NULL ||
		    (m = sched_model_get(c->model->id)) == NULL) {
			snprintf(why, sizeof(why), "model %.200s not found", name);
			reply_error(&c->reply, 404, "model_not_found", why);
			return API_DONE;
		}
	}
	c->unloading = true;
	sched_unload(&c->unload, m, on_unloaded, c, "api");
	return API_PENDING;
}

enum api_result
api_handle(struct api_call *c)
{
	static const char load_prefix[] = "/api/models/load/", unload_prefix[] = "/api/models/unload";
	static const char model_prefix[] = "/health/model/";
	struct api_reply *out = &c->reply;
	struct buf        b = { 0 };
	cJSON            *o;

	memset(out, 0, sizeof(*out));
	switch (c->op) {
	case OP_HEALTH:
		out->status = 200;
		out->ctype = "text/plain";
		out->body = xstrdup("OK"); /* llama-swap's answer; the warning rides in a header */
		if (A.exposed)
			out->warning = "listening beyond loopback without apiKeys";
		break;
	case OP_READY:
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "status", sched_is_stopping() ? "stopping" : "ready");
		reply_json(out, sched_is_stopping() ? 503 : 200, o);
		break;
	case OP_LOGS:
		log_history(&b, NULL);
		out->status = 200;
		out->ctype = "text/plain; charset=utf-8";
		out->body = b.data ? b.data : xstrdup("");
		break;
	case OP_METRICS:
		render_metrics(c->cfg, out);
		break;
	case OP_API_HEALTH:
		health_detail(c->cfg, out);
		break;
	case OP_MODEL_READY:
		model_readiness(c->cfg, c->path + sizeof(model_prefix) - 1, out);
		break;
	case OP_MODELS:
		list_models(c->cfg, out);
		break;
	case OP_RUNNING:
		list_running(c->cfg, out);
		break;
	case OP_ACTIVITY:
		list_activity(c, out);
		break;
	case OP_UNLOAD_ALL: /* llama-swap's GET /unload: every model, then "OK" */
		c->unload_all_text = true;
		return unload_models(c, NULL);
	case OP_VERSION:
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "version", MM_VERSION);
		cJSON_AddStringToObject(o, "commit", "");
		cJSON_AddStringToObject(o, "build_date", "");
		reply_json(out, 200, o);
		break;
	case OP_LOAD:
		return load_model(c, c->path + sizeof(load_prefix) - 1);
	case OP_UNLOAD: {
		const char *rest = c->path + sizeof(unload_prefix) - 1;

		return unload_models(c, *rest ? rest + 1 : NULL);
	}
	default: /* not ours: a bug in the caller */
		reply_error(out, 404, "not_found", "no such route");
		break;
	}
	return API_DONE;
}

void
api_cancel(struct api_call *c)
{
	sched_release(&c->ticket);
	if (c->unloading)
		sched_unload_cancel(&c->unload);
	c->unloading = false;
}
