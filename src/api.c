/* api: management routes. */
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "modelmux/api.h"
#include "modelmux/sched.h"
#include "modelmux/util.h"

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
	if (m->metadata)
		cJSON_AddItemToObject(o, "meta", cJSON_Duplicate(m->metadata, true));
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
	reply_json(out, 200, root);
}

static void
list_running(const struct cfg *cfg, struct api_reply *out)
{
	cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "running");

	for (size_t i = 0; i < cfg->nmodels; i++) {
		const struct cfg_model   *m = &cfg->models[i];
		const struct sched_model *sm = sched_model_get(m->id);
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
		if (m->name)
			cJSON_AddStringToObject(o, "name", m->name);
		if (m->description)
			cJSON_AddStringToObject(o, "description", m->description);
		cJSON_AddItemToArray(arr, o);
	}
	reply_json(out, 200, root);
}

static bool
method_is(const char *method, const char *want, struct api_reply *out)
{
	char msg[96];

	if (strcmp(method, want) == 0 || (strcmp(want, "GET") == 0 && strcmp(method, "HEAD") == 0))
		return true;
	snprintf(msg, sizeof(msg), "method %s is not allowed here; use %s", method, want);
	out->status = 405;
	out->ctype = "application/json";
	out->allow = want;
	out->body = api_error_json(405, "method_not_allowed", msg);
	return false;
}

bool
api_handle(const struct cfg *cfg, const char *method, const char *path, struct api_reply *out)
{
	memset(out, 0, sizeof(*out));
	if (strcmp(path, "/health") == 0) {
		if (method_is(method, "GET", out)) {
			out->status = 200;
			out->ctype = "text/plain";
			out->body = xstrdup("OK");
		}
		return true;
	}
	if (strcmp(path, "/v1/models") == 0 || strcmp(path, "/models") == 0) {
		if (method_is(method, "GET", out))
			list_models(cfg, out);
		return true;
	}
	if (strcmp(path, "/running") == 0) {
		if (method_is(method, "GET", out))
			list_running(cfg, out);
		return true;
	}
	return false;
}
