/* config: models (their fields, defaults, macros, ports, aliases), groups and hooks. */
#include <ctype.h>
#include <limits.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "modelmux/config.h"
#include "modelmux/config_compat.h"
#include "modelmux/util.h"
#include "config_int.h"

#define DEFAULT_GROUP    "(default)"

/* ---- model fields ------------------------------------------------------------------------ */

static const char *
check_id(const char *s)
{
	size_t len = strlen(s);

	if (len == 0)
		return "must not be empty";
	if (len > CFG_MAX_ID_BYTES)
		return "longer than 256 bytes";
	for (const char *p = s; *p != '\0'; p++)
		if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
			return "must not contain whitespace or control characters";
	return NULL;
}

static void
model_cmd(struct ld *ld, struct node *v, const char *path, void *obj, bool stop)
{
	struct cfg_model *m = obj;
	const char       *why;
	char            **argv;

	if (v->kind != NODE_SCALAR) {
		cfg__ld_err(ld, v, path, "expected a string");
		return;
	}
	if (stop && cfg__node_is_null(v))
		return;
	argv = cfg_split_command(v->str, &why);
	if (argv == NULL) {
		cfg__ld_err(ld, v, path, "%s", why);
		return;
	}
	if (stop) {
		strv_free(m->stop_argv);
		free(m->stop_exe);
		m->stop_argv = argv;
		m->stop_exe = cfg__command_check(ld, v, path, argv, 0);
	} else {
		strv_free(m->argv);
		free(m->exe);
		m->argv = argv;
		m->exe = cfg__command_check(ld, v, path, argv, 0);
	}
}

static void
model_start(struct ld *ld, struct node *v, const char *path, void *obj)
{
	model_cmd(ld, v, path, obj, false);
}

static void
model_stop(struct ld *ld, struct node *v, const char *path, void *obj)
{
	model_cmd(ld, v, path, obj, true);
}

static void
model_proxy(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_model *m = obj;
	char             *s = NULL;
	size_t            len;

	if (cfg__get_str(ld, v, path, &s) == -1)
		return;
	if (s == NULL || (!str_has_prefix_ci(s, "http://") && !str_has_prefix_ci(s, "https://"))) {
		cfg__ld_err(ld, v, path, "expected an http:// or https:// URL");
		free(s);
		return;
	}
	for (len = strlen(s); len > 0 && s[len - 1] == '/'; len--)
		s[len - 1] = '\0';
	free(m->proxy);
	m->proxy = s;
}

static void
model_aliases(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_model *m = obj;
	size_t            k = 0;

	strv_free(m->aliases);
	m->aliases = cfg__get_strv(ld, v, path, check_id);
	if (v->kind != NODE_SEQ)
		return;
	for (size_t i = 0; i < v->nkids; i++) {
		struct name_ref *r;

		if (m->aliases[k] == NULL || v->kids[i]->kind != NODE_SCALAR ||
		    strcmp(m->aliases[k], v->kids[i]->str) != 0)
			continue;
		if (ld->nnames == ld->cap_names) {
			ld->cap_names = ld->cap_names ? ld->cap_names * 2 : 64;
			ld->names = xreallocarray(ld->names, ld->cap_names, sizeof(*ld->names));
		}
		r = &ld->names[ld->nnames];
		*r = (struct name_ref){ m->aliases[k], v->kids[i]->file, v->kids[i]->line, v->kids[i]->col,
		    ld->cur_model, i, ld->nnames, false };
		ld->nnames++;
		k++;
	}
}

static const char *
check_env(const char *s)
{
	const char *eq = strchr(s, '=');

	if (eq == NULL || !cfg__env_name_ok(s, (size_t)(eq - s)))
		return "expected NAME=VALUE with a valid variable name";
	return NULL;
}

static void
model_env(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_model *m = obj;

	strv_free(m->env);
	m->env = cfg__get_strv(ld, v, path, check_env);
}

static void
model_check(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_model *m = obj;
	char             *s = NULL;

	if (cfg__get_str(ld, v, path, &s) == -1)
		return;
	free(m->check_endpoint);
	m->check_endpoint = NULL;
	if (s != NULL && strcmp(s, "none") == 0) {
		free(s);
		return;
	}
	if (s == NULL || s[0] != '/') {
		cfg__ld_err(ld, v, path, "must be \"none\" or a path starting with '/'");
		free(s);
		m->check_endpoint = xstrdup(CFG_DEF_CHECK_ENDPOINT);
		return;
	}
	m->check_endpoint = s;
}

static void
model_metadata(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_model *m = obj;

	(void)ld;
	(void)path;
	cJSON_Delete(m->metadata);
	m->metadata = cfg__node_is_null(v) ? NULL : cfg__node_json(v);
}

static void
model_loading(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_model *m = obj;
	bool              b;

	if (cfg__get_bool(ld, v, path, &b) == 0)
		m->send_loading_state = b;
}

static void
filters_strip(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_model *m = obj;
	char             *s = NULL, *tok, *save = NULL;
	size_t            n = strv_len(m->strip_params);

	if (cfg__get_str(ld, v, path, &s) == -1 || s == NULL)
		return;
	for (tok = strtok_r(s, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char *e;

		while (cfg__is_trim_space(*tok))
			tok++;
		for (e = tok + strlen(tok); e > tok && cfg__is_trim_space(e[-1]); e--)
			e[-1] = '\0';
		if (*tok == '\0' || strcmp(tok, "model") == 0 || strv_contains(m->strip_params, tok))
			continue;
		m->strip_params = xreallocarray(m->strip_params, n + 2, sizeof(char *));
		m->strip_params[n++] = xstrdup(tok);
		m->strip_params[n] = NULL;
	}
	free(s);
}

static void
filters_set(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_model *m = obj;

	if (cfg__node_is_null(v))
		return;
	if (v->kind != NODE_MAP) {
		cfg__ld_err(ld, v, path, "expected a map");
		return;
	}
	cJSON_Delete(m->set_params);
	m->set_params = cfg__node_json(v);
}

static const struct field filters_fields[] = {
	FLD_FN("stripParams", filters_strip),
	FLD_FN("strip_params", filters_strip),
	FLD_FN("setParams", filters_set),
	FLD_FN("setParamsByID", cfg__compat_model_key),
	FLD_END,
};

static const struct field timeouts_fields[] = {
	FLD_INT("connect", struct cfg_model, timeouts.connect_s, 0, INT_MAX),
	FLD_INT("keepalive", struct cfg_model, timeouts.keepalive_s, 0, INT_MAX),
	FLD_INT("responseHeader", struct cfg_model, timeouts.response_header_s, 0, INT_MAX),
	FLD_INT("tlsHandshake", struct cfg_model, timeouts.tls_handshake_s, 0, INT_MAX),
	FLD_INT("expectContinue", struct cfg_model, timeouts.expect_continue_s, 0, INT_MAX),
	FLD_INT("idleConn", struct cfg_model, timeouts.idle_conn_s, 0, INT_MAX),
	FLD_END,
};

static const struct field compat_fields[] = {
	FLD_BOOL("ignoreWebsockets", struct cfg_model, ignore_websockets),
	FLD_END,
};

static const struct field model_fields[] = {
	FLD_REQ("cmd", model_start),
	FLD_FN("cmdStop", model_stop),
	FLD_FN("proxy", model_proxy),
	FLD_FN("aliases", model_aliases),
	FLD_FN("env", model_env),
	FLD_FN("checkEndpoint", model_check),
	FLD_INT("ttl", struct cfg_model, ttl_s, -1, INT_MAX),
	FLD_INT("unloadTimeout", struct cfg_model, unload_timeout_s, 0, INT_MAX),
	FLD_INT("healthCheckTimeout", struct cfg_model, health_check_timeout_s, 0, INT_MAX),
	FLD_INT("concurrencyLimit", struct cfg_model, concurrency_limit, 0, INT_MAX),
	FLD_INT("loadStallTimeout", struct cfg_model, load_stall_timeout_s, -1, INT_MAX),
	FLD_BOOL("unlisted", struct cfg_model, unlisted),
	FLD_STR("useModelName", struct cfg_model, use_model_name),
	FLD_STR("upstreamApiKey", struct cfg_model, upstream_api_key),
	FLD_STR("name", struct cfg_model, name),
	FLD_STR("description", struct cfg_model, description),
	FLD_LATER("macros"),
	FLD_FN("metadata", model_metadata),
	FLD_FN("sendLoadingState", model_loading),
	FLD_SUB("filters", filters_fields),
	FLD_SUB("timeouts", timeouts_fields),
	FLD_SUB("compat", compat_fields),
	FLD_FN("capabilities", cfg__compat_model_key),
	FLD_END,
};

/* ---- models ------------------------------------------------------------------------------ */

static void
model_defaults(struct cfg_model *m, const struct node *key)
{
	m->id = xstrdup(key->str);
	m->file = key->file;
	m->line = key->line;
	m->col = key->col;
	m->aliases = xcalloc(1, sizeof(char *));
	m->env = xcalloc(1, sizeof(char *));
	m->check_endpoint = xstrdup(CFG_DEF_CHECK_ENDPOINT);
	m->ttl_s = -1;
	m->load_stall_timeout_s = -1;
	m->send_loading_state = -1;
	m->timeouts.connect_s = 30;
	m->timeouts.keepalive_s = 30;
	m->timeouts.response_header_s = 0;
	m->timeouts.tls_handshake_s = 10;
	m->timeouts.expect_continue_s = 1;
	m->timeouts.idle_conn_s = CFG_DEF_IDLE_CONN_S;
}

/* Applies macros, then ${PORT}, to every value of the model but `macros`. */
static void
model_subst(struct ld *ld, struct node *v, const struct mlist *ml)
{
	struct node *f = cfg__map_get(v, "filters"), *byid;

	for (size_t i = 0; i < cfg__map_len(v); i++)
		if (strcmp(cfg__map_key(v, i)->str, "macros") != 0)
			cfg__subst_values(ld, cfg__map_val(v, i), ml);
	/* setParamsByID's keys name models ("${MODEL_ID}:high"): macros apply to them too. */
	if (f != NULL && f->kind == NODE_MAP && (byid = cfg__map_get(f, "setParamsByID")) != NULL &&
	    byid->kind == NODE_MAP && ml->n > 0)
		for (size_t i = 0; i < cfg__map_len(byid); i++)
			cfg__subst_scalar(ld, cfg__map_key(byid, i), ml);
}

/* Allocates ${PORT} when the command uses it and resolves the default proxy. */
static void
model_port(struct ld *ld, struct node *v, const char *path, struct cfg_model *m, int *next_port,
    bool *proxy_bad)
{
	struct node *cmd = cfg__map_get(v, "cmd"), *proxy = cfg__map_get(v, "proxy");
	char         port[16], *pp;
	struct macro pm = { "PORT", port, false };
	struct mlist ml = { &pm, 1 };

	*proxy_bad = false;
	if (cmd != NULL && cmd->kind == NODE_SCALAR && strstr(cmd->str, "${PORT}") != NULL) {
		if (*next_port > 65535) {
			pp = cfg__path_join(path, "cmd");
			cfg__ld_err(ld, cmd, pp, "no port left for ${PORT} (startPort too high)");
			free(pp);
			*next_port = 1;
		}
		m->port = (*next_port)++;
		snprintf(port, sizeof(port), "%d", m->port);
		model_subst(ld, v, &ml);
		if (proxy == NULL) {
			struct node tmp = { .kind = NODE_SCALAR, .str = xstrdup(CFG_DEF_PROXY) };

			cfg__subst_scalar(ld, &tmp, &ml);
			m->proxy = tmp.str;
		}
		return;
	}
	pp = cfg__path_join(path, "proxy");
	if (proxy == NULL) {
		if (cmd != NULL)
			cfg__ld_err(ld, v, pp, "missing required key (cmd does not use ${PORT})");
	} else if (proxy->kind == NODE_SCALAR && strstr(proxy->str, "${PORT}") != NULL) {
		cfg__ld_err(ld, proxy, pp, "uses ${PORT} but cmd does not");
		*proxy_bad = true;
	}
	free(pp);
}

static void
model_load(struct ld *ld, const struct node *key, struct node *v, const struct mlist *globals,
    int *next_port)
{
	struct cfg_model *m = &ld->c->models[ld->cur_model];
	struct mlist      own = { 0 }, merged = { 0 };
	char             *path = cfg__path_join("models", key->str), *mp, *kp;
	const char       *why;
	bool              proxy_bad;

	model_defaults(m, key);
	if ((why = check_id(key->str)) != NULL)
		cfg__ld_err(ld, key, path, "invalid model id: %s", why);
	if (v->kind != NODE_MAP) {
		cfg__ld_err(ld, v, path, "expected a map");
		goto out;
	}
	mp = cfg__path_join(path, "macros");
	cfg__macros_parse(ld, cfg__map_get(v, "macros"), mp, &own);
	free(mp);
	cfg__mlist_merge(&merged, key->str, globals, &own);
	for (size_t i = 0; i < cfg__map_len(v); i++) {
		struct node *val = cfg__map_val(v, i);
		const char  *k = cfg__map_key(v, i)->str;

		if ((strcmp(k, "cmd") == 0 || strcmp(k, "cmdStop") == 0) &&
		    val->kind == NODE_SCALAR) {
			char *s = cfg__prep_lines(val->str, false);

			free(val->str);
			val->str = s;
		}
	}
	model_subst(ld, v, &merged);
	model_port(ld, v, path, m, next_port, &proxy_bad);
	for (size_t i = 0; i < cfg__map_len(v); i++) {
		const char *k = cfg__map_key(v, i)->str;

		if (strcmp(k, "macros") == 0 || (proxy_bad && strcmp(k, "proxy") == 0))
			continue;
		kp = cfg__path_join(path, k);
		cfg__check_unresolved(ld, cfg__map_val(v, i), kp, strcmp(k, "cmdStop") == 0);
		free(kp);
	}
	cfg__decode_fields(ld, v, path, model_fields, m);
out:
	free(own.v);
	free(merged.v);
	free(path);
}

static int
pair_key_cmp(const void *a, const void *b)
{
	const struct node *const *x = a, *const *y = b;

	return strcmp(x[0]->str, y[0]->str);
}

static int
name_ref_cmp(const void *a, const void *b)
{
	const struct name_ref *x = a, *y = b;
	int                    r = strcmp(x->name, y->name);

	if (r != 0)
		return r;
	if (x->is_id != y->is_id)
		return x->is_id ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Aliases are unique across models and never another model's id. */
static void
aliases_check(struct ld *ld)
{
	struct cfg *c = ld->c;

	for (size_t i = 0; i < c->nmodels; i++) {
		if (ld->nnames == ld->cap_names) {
			ld->cap_names = ld->cap_names ? ld->cap_names * 2 : 64;
			ld->names = xreallocarray(ld->names, ld->cap_names, sizeof(*ld->names));
		}
		ld->names[ld->nnames] = (struct name_ref){ c->models[i].id, c->models[i].file, c->models[i].line,
		    c->models[i].col, i, 0, ld->nnames, true };
		ld->nnames++;
	}
	qsort(ld->names, ld->nnames, sizeof(*ld->names), name_ref_cmp);
	for (size_t i = 1; i < ld->nnames; i++) {
		const struct name_ref *r = &ld->names[i], *first;
		size_t                 j = i;
		char                  *path;

		while (j > 0 && strcmp(ld->names[j - 1].name, r->name) == 0)
			j--;
		if (j == i)
			continue;
		first = &ld->names[j];
		if (first->is_id && first->model == r->model && j + 1 == i)
			continue; /* an alias equal to its own model's id is harmless */
		path = xasprintf("models.%s.aliases[%zu]", c->models[r->model].id, r->idx);
		if (first->is_id)
			cfg__ld_err_at(ld, r->file, r->line, r->col, path, "alias \"%s\" is the id of model %s",
			    r->name, c->models[first->model].id);
		else
			cfg__ld_err_at(ld, r->file, r->line, r->col, path, "alias \"%s\" is already used by model %s",
			    r->name, c->models[first->model].id);
		free(path);
	}
}

void
cfg__models_load(struct ld *ld, struct node *root, const struct mlist *globals)
{
	struct node       *mm = cfg__map_get(root, "models");
	struct node      **pairs;
	size_t             n;
	int                next_port = ld->c->start_port;

	if (mm == NULL) {
		cfg__ld_err(ld, root, "models", "missing required key");
		return;
	}
	if (mm->kind != NODE_MAP || cfg__map_len(mm) == 0) {
		cfg__ld_err(ld, mm, "models", "expected a map of at least one model");
		return;
	}
	n = cfg__map_len(mm);
	if (n > CFG_MAX_MODELS) {
		cfg__ld_err(ld, mm, "models", "more than %d models", CFG_MAX_MODELS);
		return;
	}
	pairs = xmalloc(mm->nkids * sizeof(*pairs));
	memcpy(pairs, mm->kids, mm->nkids * sizeof(*pairs));
	qsort(pairs, n, 2 * sizeof(*pairs), pair_key_cmp);
	ld->c->models = xcalloc(n, sizeof(*ld->c->models));
	for (size_t i = 0; i < n; i++) {
		ld->cur_model = i;
		ld->c->nmodels = i + 1;
		model_load(ld, pairs[2 * i], pairs[2 * i + 1], globals, &next_port);
	}
	free(pairs);
	aliases_check(ld);
}

/* ---- groups and hooks -------------------------------------------------------------------- */

static struct cfg_model *
model_by_id(const struct cfg *c, const char *id)
{
	for (size_t lo = 0, hi = c->nmodels; lo < hi;) {
		size_t mid = lo + (hi - lo) / 2;
		int    r = strcmp(id, c->models[mid].id);

		if (r == 0)
			return &c->models[mid];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const struct cfg_model *
cfg_find_model(const struct cfg *c, const char *name)
{
	const struct cfg_model *m = model_by_id(c, name);

	if (m != NULL)
		return m;
	for (size_t i = 0; i < c->nmodels; i++)
		if (strv_contains(c->models[i].aliases, name))
			return &c->models[i];
	return NULL;
}
static void
group_members(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_group *g = obj;
	char            **ids = cfg__get_strv(ld, v, path, NULL);
	size_t            n = 0, k = 0;

	g->members = xreallocarray(g->members, strv_len(ids) + 1, sizeof(char *));
	for (size_t i = 0; ids[i] != NULL; i++, k++) {
		struct cfg_model *m;
		char             *ip;

		while (v->kids[k]->kind != NODE_SCALAR)
			k++;
		ip = cfg__path_index(path, k);
		m = model_by_id(ld->c, ids[i]);
		if (m == NULL)
			cfg__ld_err(ld, v->kids[k], ip, "unknown model \"%s\"", ids[i]);
		else if (m->group != NULL)
			cfg__ld_err(ld, v->kids[k], ip, "model \"%s\" is already in group \"%s\"", ids[i],
			    m->group->name);
		else {
			m->group = g;
			g->members[n++] = ids[i];
			ids[i] = NULL;
		}
		free(ip);
		free(ids[i]);
	}
	g->members[n] = NULL;
	free(ids);
}

static const struct field group_fields[] = {
	FLD_BOOL("swap", struct cfg_group, swap),
	FLD_BOOL("exclusive", struct cfg_group, exclusive),
	FLD_BOOL("persistent", struct cfg_group, persistent),
	FLD_FN("members", group_members),
	FLD_END,
};

void
cfg__groups_load(struct ld *ld, struct node *root)
{
	struct cfg  *c = ld->c;
	struct node *gm = cfg__map_get(root, "groups"), *rg = root;
	size_t       n = 0, nfree = 0, k = 0;
	char        *gp;
	const char  *gname = "groups";

	/* llama-swap's routing.router.settings.groups: the same groups, kept there now. */
	for (const char *const *p = cfg_compat_routing_groups; *p && rg != NULL; p++)
		rg = rg->kind == NODE_MAP ? cfg__map_get(rg, *p) : NULL;
	if (rg != NULL && gm != NULL) {
		cfg__ld_err(ld, rg, "routing.router.settings.groups", "groups is given at the top "
		    "level too; keep one");
	} else if (rg != NULL) {
		gm = rg;
		gname = "routing.router.settings.groups";
	}
	if (gm != NULL && !cfg__node_is_null(gm) && gm->kind != NODE_MAP)
		cfg__ld_err(ld, gm, gname, "expected a map");
	else if (gm != NULL)
		n = cfg__map_len(gm);
	c->groups = xcalloc(n + 1, sizeof(*c->groups));
	for (size_t i = 0; i < n; i++) {
		struct cfg_group *g = &c->groups[c->ngroups++];
		const struct node *key = cfg__map_key(gm, i);

		g->name = xstrdup(key->str);
		g->swap = g->exclusive = true;
		g->members = xcalloc(1, sizeof(char *));
		gp = cfg__path_join(gname, key->str);
		if (strcmp(key->str, DEFAULT_GROUP) == 0 || key->str[0] == '\0')
			cfg__ld_err(ld, key, gp, "invalid group name");
		cfg__decode_fields(ld, cfg__map_val(gm, i), gp, group_fields, g);
		free(gp);
	}
	for (size_t i = 0; i < c->nmodels; i++)
		nfree += c->models[i].group == NULL;
	if (nfree == 0)
		return;
	c->groups[c->ngroups] = (struct cfg_group){ xstrdup(DEFAULT_GROUP), true, true, false,
	    xcalloc(nfree + 1, sizeof(char *)) };
	for (size_t i = 0; i < c->nmodels; i++) {
		if (c->models[i].group != NULL)
			continue;
		c->models[i].group = &c->groups[c->ngroups];
		c->groups[c->ngroups].members[k++] = xstrdup(c->models[i].id);
	}
	c->ngroups++;
}

static void
hooks_preload(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;
	char      **names = cfg__get_strv(ld, v, path, NULL);
	size_t      n = 0, k = 0;

	strv_free(c->preload);
	c->preload = xcalloc(strv_len(names) + 1, sizeof(char *));
	for (size_t i = 0; names[i] != NULL; i++, k++) {
		const struct cfg_model *m = cfg_find_model(c, names[i]);
		char                   *ip;

		while (v->kids[k]->kind != NODE_SCALAR)
			k++;
		if (m == NULL) {
			ip = cfg__path_index(path, k);
			cfg__ld_err(ld, v->kids[k], ip, "unknown model \"%s\"", names[i]);
			free(ip);
		} else if (!strv_contains(c->preload, m->id)) {
			c->preload[n++] = xstrdup(m->id);
		}
	}
	strv_free(names);
}

static const struct field startup_fields[] = {
	FLD_FN("preload", hooks_preload),
	FLD_END,
};

const struct field cfg__hooks_fields[] = {
	FLD_SUB("on_startup", startup_fields),
	FLD_END,
};

/* ---- for config_peers.c ------------------------------------------------------------------ */

const char *
cfg__check_id(const char *s)
{
	return check_id(s);
}

void
cfg__model_defaults(struct cfg_model *m, const struct node *key)
{
	model_defaults(m, key);
}

void
cfg__model_filters(struct ld *ld, struct node *v, const char *path, struct cfg_model *m)
{
	cfg__decode_fields(ld, v, path, filters_fields, m);
}

void
cfg__model_timeouts(struct ld *ld, struct node *v, const char *path, struct cfg_model *m)
{
	cfg__decode_fields(ld, v, path, timeouts_fields, m);
}
