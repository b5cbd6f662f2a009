/* config: YAML file → immutable, reference-counted snapshot. See include/modelmux/config.h.
 *
 * Stages: parse (libyaml events → node tree, ${env.X} applied to every scalar, anchors, depth
 * and duplicate keys rejected) → macros (global, per model, ${PORT}) on the tree → unresolved
 * ${...} check → tables of fields decode the tree into struct cfg. Errors are collected in
 * `struct ld` and never stop the walk.
 *
 * Files: config.c (error messages, typed values and the field-table walk, the top level, the
 * snapshot's life), config_yaml.c (node tree, parsing), config_macros.c, config_command.c
 * (command lines), config_security.c (keys, CORS, rates, limits, commands, TLS),
 * config_models.c (model fields, models, groups and hooks), config_merge.c (several files,
 * --config-dir, loading); config_int.h holds what they share.
 */
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "modelmux/activity.h"
#include "modelmux/config.h"
#include "modelmux/config_compat.h"
#include "modelmux/log.h"
#include "modelmux/util.h"
#include "config_int.h"

/* ---- messages ---------------------------------------------------------------------------- */

static char *xvformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static char *
xvformat(const char *fmt, va_list ap)
{
	va_list cp;
	char   *s;
	int     len;

	va_copy(cp, ap);
	len = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (len < 0)
		fatal("config: cannot format a message");
	s = xmalloc((size_t)len + 1);
	vsnprintf(s, (size_t)len + 1, fmt, ap);
	return s;
}

void
cfg__errs_push(struct cfg_errs *e, char *msg)
{
	e->msgs = xreallocarray(e->msgs, e->n + 2, sizeof(*e->msgs));
	e->msgs[e->n++] = msg;
	e->msgs[e->n] = NULL;
}

void
cfg_errs_free(struct cfg_errs *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->n; i++)
		free(e->msgs[i]);
	free(e->msgs);
	e->msgs = NULL;
	e->n = 0;
}

void
cfg__ld_msg(struct ld *ld, bool warn, const char *file, int line, int col, const char *path,
    const char *fmt, va_list ap)
{
	char *reason;

	if (!warn && ld->nerr++ >= CFG_MAX_ERRORS) {
		if (ld->nerr == CFG_MAX_ERRORS + 1)
			cfg__errs_push(ld->errs, xasprintf("%s: too many errors, the rest are not shown",
			    ld->file));
		return;
	}
	if (line < 1)
		line = col = 1;
	reason = xvformat(fmt, ap);
	cfg__errs_push(warn ? &ld->warns : ld->errs, xasprintf("%s:%d:%d: %s: %s",
	    file != NULL ? file : ld->file, line, col,
	    path == NULL || *path == '\0' ? "(root)" : path, reason));
	free(reason);
}

static void ld_warn(struct ld *, const struct node *, const char *, const char *, ...)
    __attribute__((format(printf, 4, 5)));

void
cfg__ld_err_at(struct ld *ld, const char *file, int line, int col, const char *path,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg__ld_msg(ld, false, file, line, col, path, fmt, ap);
	va_end(ap);
}

void
cfg__ld_err(struct ld *ld, const struct node *n, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg__ld_msg(ld, false, n ? n->file : NULL, n ? n->line : 1, n ? n->col : 1, path, fmt, ap);
	va_end(ap);
}

static void
ld_warn(struct ld *ld, const struct node *n, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg__ld_msg(ld, true, n ? n->file : NULL, n ? n->line : 1, n ? n->col : 1, path, fmt, ap);
	va_end(ap);
}

/* Takes `bytes` from the expansion budget; false (one error) once it is spent. */
bool
cfg__ld_charge(struct ld *ld, const struct node *n, size_t bytes)
{
	if (bytes <= ld->budget) {
		ld->budget -= bytes;
		return true;
	}
	if (!ld->budget_hit)
		cfg__ld_err(ld, n, "(expansion)", "${...} expansion produces more than %u bytes",
		    CFG_MAX_EXPANSION_BYTES);
	ld->budget_hit = true;
	return false;
}

char *
cfg__path_join(const char *path, const char *key)
{
	if (path == NULL || *path == '\0')
		return xstrdup(key);
	return xasprintf("%s.%s", path, key);
}

char *
cfg__path_index(const char *path, size_t i)
{
	return xasprintf("%s[%zu]", path ? path : "", i);
}

/* ---- typed values ------------------------------------------------------------------------ */

bool
cfg__is_int_text(const char *s)
{
	if (*s == '-' || *s == '+')
		s++;
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* YAML 1.2 core float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
bool
cfg__is_float_text(const char *s)
{
	bool digits = false;

	if (*s == '-' || *s == '+')
		s++;
	for (; isdigit((unsigned char)*s); s++)
		digits = true;
	if (*s == '.')
		for (s++; isdigit((unsigned char)*s); s++)
			digits = true;
	if (!digits)
		return false;
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '-' || *s == '+')
			s++;
		if (!isdigit((unsigned char)*s))
			return false;
		while (isdigit((unsigned char)*s))
			s++;
	}
	return *s == '\0';
}

static int
parse_bool_text(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };

	for (size_t i = 0; i < MM_ARRAY_LEN(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

struct cJSON *
cfg__node_json(const struct node *n)
{
	struct cJSON *j;
	char         *kp;

	switch (n->kind) {
	case NODE_MAP:
		j = cJSON_CreateObject();
		for (size_t i = 0; i < cfg__map_len(n); i++)
			cJSON_AddItemToObject(j, cfg__map_key(n, i)->str, cfg__node_json(cfg__map_val(n, i)));
		return j;
	case NODE_SEQ:
		j = cJSON_CreateArray();
		for (size_t i = 0; i < n->nkids; i++)
			cJSON_AddItemToArray(j, cfg__node_json(n->kids[i]));
		return j;
	case NODE_SCALAR:
		break;
	}
	if (n->quoted)
		return cJSON_CreateString(n->str);
	if (cfg__node_is_null(n))
		return cJSON_CreateNull();
	if (strcmp(n->str, "true") == 0 || strcmp(n->str, "True") == 0 ||
	    strcmp(n->str, "TRUE") == 0)
		return cJSON_CreateTrue();
	if (strcmp(n->str, "false") == 0 || strcmp(n->str, "False") == 0 ||
	    strcmp(n->str, "FALSE") == 0)
		return cJSON_CreateFalse();
	if (cfg__is_int_text(n->str) || cfg__is_float_text(n->str))
		return cJSON_CreateNumber(strtod(n->str, &kp));
	return cJSON_CreateString(n->str);
}

static int
get_int(struct ld *ld, const struct node *n, const char *path, long long min, long long max,
    int *out)
{
	long long v;

	if (n->kind != NODE_SCALAR || n->quoted || !cfg__is_int_text(n->str)) {
		cfg__ld_err(ld, n, path, "expected an integer");
		return -1;
	}
	if (parse_int(n->str, min, max, &v) == -1) {
		if (max >= INT_MAX)
			cfg__ld_err(ld, n, path, "must be >= %lld", min);
		else
			cfg__ld_err(ld, n, path, "must be between %lld and %lld", min, max);
		return -1;
	}
	*out = (int)v;
	return 0;
}

int
cfg__get_bool(struct ld *ld, const struct node *n, const char *path, bool *out)
{
	if (n->kind != NODE_SCALAR || parse_bool_text(n->str, out) == -1) {
		cfg__ld_err(ld, n, path, "expected a boolean (true or false)");
		return -1;
	}
	return 0;
}

/* A scalar as a string; a null scalar gives NULL. */
int
cfg__get_str(struct ld *ld, const struct node *n, const char *path, char **out)
{
	if (n->kind != NODE_SCALAR) {
		cfg__ld_err(ld, n, path, "expected a string");
		return -1;
	}
	free(*out);
	*out = cfg__node_is_null(n) ? NULL : xstrdup(n->str);
	return 0;
}

/* A sequence of scalars; fn validates each (NULL accepts all). Returns the vector. */
char **
cfg__get_strv(struct ld *ld, const struct node *n, const char *path,
    const char *(*check)(const char *))
{
	char      **v;
	size_t      k = 0;
	const char *why;

	if (cfg__node_is_null(n))
		return xcalloc(1, sizeof(char *));
	if (n->kind != NODE_SEQ) {
		cfg__ld_err(ld, n, path, "expected a list");
		return xcalloc(1, sizeof(char *));
	}
	v = xcalloc(n->nkids + 1, sizeof(*v));
	for (size_t i = 0; i < n->nkids; i++) {
		const struct node *it = n->kids[i];
		char              *ip;

		why = it->kind != NODE_SCALAR ? "expected a string" :
		    check != NULL ? check(it->str) : NULL;
		if (why != NULL) {
			ip = cfg__path_index(path, i);
			cfg__ld_err(ld, it, ip, "%s", why);
			free(ip);
			continue;
		}
		v[k++] = xstrdup(it->str);
	}
	return v;
}

/* Walks a map through a field table; `obj` is the struct the offsets point into. */
void
cfg__decode_fields(struct ld *ld, struct node *m, const char *path, const struct field *tab,
    void *obj)
{
	char *kp;

	if (cfg__node_is_null(m))
		goto required;
	if (m->kind != NODE_MAP) {
		cfg__ld_err(ld, m, path, "expected a map");
		return;
	}
	for (size_t i = 0; i < cfg__map_len(m); i++) {
		const struct node  *k = cfg__map_key(m, i);
		struct node        *v = cfg__map_val(m, i);
		const struct field *f;

		for (f = tab; f->key != NULL; f++)
			if (strcmp(f->key, k->str) == 0)
				break;
		kp = cfg__path_join(path, k->str);
		if (f->key == NULL)
			cfg__ld_err(ld, k, kp, "unknown key");
		else if (f->kind == F_UNSUP)
			ld_warn(ld, k, kp, "not supported by modelmux, ignored");
		else if (f->kind == F_INT)
			get_int(ld, v, kp, f->min, f->max, (int *)(void *)((char *)obj + f->off));
		else if (f->kind == F_BOOL)
			cfg__get_bool(ld, v, kp, (bool *)(void *)((char *)obj + f->off));
		else if (f->kind == F_STR)
			cfg__get_str(ld, v, kp, (char **)(void *)((char *)obj + f->off));
		else if (f->kind == F_FN)
			f->fn(ld, v, kp, obj);
		else if (f->kind == F_SUB)
			cfg__decode_fields(ld, v, kp, f->sub, (char *)obj + f->off);
		free(kp);
	}
required:
	for (const struct field *f = tab; f->key != NULL; f++) {
		if (f->required && (m->kind != NODE_MAP || cfg__map_get(m, f->key) == NULL)) {
			kp = cfg__path_join(path, f->key);
			cfg__ld_err(ld, m, kp, "missing required key");
			free(kp);
		}
	}
}

/* ---- top level --------------------------------------------------------------------------- */

static void
top_log_level(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg    *c = obj;
	enum log_level lvl;

	if (cfg__get_str(ld, v, path, &c->log_level) == -1 || c->log_level == NULL)
		return;
	if (log_parse_level(c->log_level, &lvl) == -1)
		cfg__ld_err(ld, v, path, "unknown level \"%s\" (debug, info, warn or error)",
		    c->log_level);
}

static void
top_listen(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;
	char       *s = NULL;

	if (cfg__get_str(ld, v, path, &s) == -1)
		return;
	if (s == NULL || strchr(s, ':') == NULL) {
		cfg__ld_err(ld, v, path, "expected host:port");
		free(s);
		return;
	}
	free(c->listen);
	c->listen = s;
}

static const struct field queue_fields[] = {
	FLD_INT("maxPerModel", struct cfg, queue.per_model, 1, 1000000),
	FLD_INT("maxTotal", struct cfg, queue.total, 1, 1000000),
	FLD_INT("maxWaitSeconds", struct cfg, queue.max_wait_s, 1, 86400),
	FLD_INT("swapBatch", struct cfg, queue.swap_batch, 1, 100000),
	FLD_END,
};

static const struct field crash_fields[] = {
	FLD_INT("maxCrashes", struct cfg, crash.max_crashes, 0, 1000),
	FLD_INT("windowSeconds", struct cfg, crash.window_s, 1, 86400),
	FLD_INT("holdSeconds", struct cfg, crash.hold_s, 1, 86400),
	FLD_END,
};

/* ---- llama-swap's newer keys: decoded by config_compat.c ---------------------------------- */

void
cfg__compat_report(void *arg, const struct cfg_compat_at *at, bool warn, const char *path,
    const char *msg)
{
	struct ld  *ld = arg;
	struct node n = { .file = at->file, .line = at->line, .col = at->col };

	if (warn)
		ld_warn(ld, &n, path, "%s", msg);
	else
		cfg__ld_err(ld, &n, path, "%s", msg);
}

static void
compat_key(struct ld *ld, struct node *v, const char *path, void *obj, bool model)
{
	struct cJSON            *j = cfg__node_json(v);
	struct cfg_compat_at     at = { v->file, v->line, v->col };
	struct cfg_compat_report r = { cfg__compat_report, ld };

	if (model)
		cfg_compat_model(obj, path, j, &at, &r);
	else
		cfg_compat_top(obj, path, j, &at, &r);
	cJSON_Delete(j);
}

void
cfg__compat_model_key(struct ld *ld, struct node *v, const char *path, void *obj)
{
	compat_key(ld, v, path, obj, true);
}

static void
compat_top_key(struct ld *ld, struct node *v, const char *path, void *obj)
{
	compat_key(ld, v, path, obj, false);
}

static const struct field top_fields[] = {
	FLD_SUB("queue", queue_fields),
	FLD_SUB("crashBackoff", crash_fields),
	FLD_INT("loadStallTimeout", struct cfg, load_stall_timeout_s, 0, INT_MAX),
	FLD_LATER("models"),
	FLD_LATER("groups"),
	FLD_LATER("hooks"),
	FLD_LATER("macros"),
	FLD_INT("healthCheckTimeout", struct cfg, health_check_timeout_s, 1, INT_MAX),
	FLD_FN("logLevel", top_log_level),
	FLD_FN("logFormat", cfg__top_log_format),
	FLD_INT("startPort", struct cfg, start_port, 1, 65535),
	FLD_INT("globalTTL", struct cfg, global_ttl_s, 0, INT_MAX),
	FLD_INT("unloadTimeout", struct cfg, unload_timeout_s, 0, INT_MAX),
	FLD_BOOL("sendLoadingState", struct cfg, send_loading_state),
	FLD_BOOL("includeAliasesInList", struct cfg, include_aliases_in_list),
	FLD_INT("metricsMaxInMemory", struct cfg, activity_max, 0, ACTIVITY_MAX_ENTRIES),
	FLD_FN("apiKeys", cfg__top_api_keys),
	FLD_FN("apiKeysFile", cfg__top_api_keys_file),
	FLD_FN("cors", cfg__top_cors),
	FLD_SUB("rateLimit", cfg__rate_fields),
	FLD_SUB("limits", cfg__limits_fields),
	FLD_FN("allowedCommands", cfg__top_allowed),
	FLD_FN("trustedProxies", cfg__top_trusted),
	FLD_BOOL("strictCommands", struct cfg, strict_commands),
	FLD_FN("tls", cfg__top_tls),
	FLD_FN("listen", top_listen),
	FLD_UNSUP("logTimeFormat"),
	FLD_FN("logToStdout", compat_top_key),
	FLD_UNSUP("logRequests"),
	FLD_UNSUP("captureBuffer"),
	FLD_UNSUP("store"),
	FLD_UNSUP("ui"),
	FLD_UNSUP("performance"),
	FLD_FN("upstream", compat_top_key),
	FLD_UNSUP("profiles"),
	FLD_FN("selectors", compat_top_key),
	FLD_FN("routing", compat_top_key),
	FLD_FN("matrix", compat_top_key),
	FLD_LATER("peers"),     /* config_peers.c */
	FLD_END,
};

static void
model_free(struct cfg_model *m)
{
	free(m->id);
	strv_free(m->argv);
	free(m->exe);
	strv_free(m->stop_argv);
	free(m->stop_exe);
	free(m->proxy);
	strv_free(m->aliases);
	strv_free(m->env);
	free(m->check_endpoint);
	free(m->name);
	free(m->description);
	free(m->use_model_name);
	if (m->upstream_api_key != NULL)
		OPENSSL_cleanse(m->upstream_api_key, strlen(m->upstream_api_key));
	free(m->upstream_api_key);
	strv_free(m->strip_params);
	cJSON_Delete(m->set_params);
	cJSON_Delete(m->metadata);
	cfg_compat_model_free(m);
}

void
cfg__free(struct cfg *c)
{
	if (c == NULL)
		return;
	free(c->path);
	strv_free(c->files);
	free(c->listen);
	free(c->log_level);
	if (c->keys != NULL)
		OPENSSL_cleanse(c->keys, c->nkeys * sizeof(*c->keys));
	free(c->keys);
	strv_free(c->cors.origins);
	strv_free(c->cors.methods);
	strv_free(c->cors.headers);
	strv_free(c->allowed_commands);
	free(c->trusted_proxies);
	free(c->limits.spool_dir);
	free(c->tls_cert_pem);
	if (c->tls_key_pem != NULL)
		OPENSSL_cleanse(c->tls_key_pem, strlen(c->tls_key_pem));
	free(c->tls_key_pem);
	strv_free(c->preload);
	for (size_t i = 0; i < c->nmodels; i++)
		model_free(&c->models[i]);
	free(c->models);
	for (size_t i = 0; i < c->ngroups; i++) {
		free(c->groups[i].name);
		strv_free(c->groups[i].members);
	}
	free(c->groups);
	cfg__peers_free(c);
	cfg_errs_free(&c->warnings);
	cfg_compat_free(c);
	free(c);
}

struct cfg *
cfg__new(const char *name)
{
	struct cfg *c = xcalloc(1, sizeof(*c));

	c->refs = 1;
	c->path = xstrdup(name);
	c->files = xcalloc(1, sizeof(char *));
	c->listen = xstrdup(CFG_DEF_LISTEN);
	c->health_check_timeout_s = CFG_DEF_HEALTH_TIMEOUT_S;
	c->start_port = CFG_DEF_START_PORT;
	c->unload_timeout_s = CFG_DEF_UNLOAD_TIMEOUT_S;
	c->queue.per_model = CFG_DEF_QUEUE_PER_MODEL;
	c->queue.total = CFG_DEF_QUEUE_TOTAL;
	c->queue.max_wait_s = CFG_DEF_QUEUE_MAX_WAIT_S;
	c->queue.swap_batch = CFG_DEF_SWAP_BATCH;
	c->crash.max_crashes = CFG_DEF_CRASH_MAX;
	c->crash.window_s = CFG_DEF_CRASH_WINDOW_S;
	c->crash.hold_s = CFG_DEF_CRASH_HOLD_S;
	c->cors.origins = xcalloc(1, sizeof(char *));
	c->cors.methods = xcalloc(4, sizeof(char *));
	c->cors.methods[0] = xstrdup("GET");
	c->cors.methods[1] = xstrdup("POST");
	c->cors.methods[2] = xstrdup("OPTIONS");
	c->cors.headers = xcalloc(5, sizeof(char *));
	c->cors.headers[0] = xstrdup("Authorization");
	c->cors.headers[1] = xstrdup("Content-Type");
	c->cors.headers[2] = xstrdup("X-API-Key");
	c->cors.headers[3] = xstrdup("X-Request-ID");
	c->cors.max_age_s = CFG_DEF_CORS_MAX_AGE_S;
	c->rate.per_ip = (struct cfg_rate){ CFG_DEF_RATE_PER_IP, CFG_DEF_BURST_PER_IP };
	c->rate.per_key = (struct cfg_rate){ CFG_DEF_RATE_PER_KEY, CFG_DEF_BURST_PER_KEY };
	c->rate.global = (struct cfg_rate){ 0, 1 };
	c->rate.auth_failures = (struct cfg_rate){ CFG_DEF_RATE_AUTH_FAIL, CFG_DEF_BURST_AUTH_FAIL };
	c->rate.table_size = CFG_DEF_RATE_TABLE_SIZE;
	c->limits.max_header_bytes = CFG_DEF_MAX_HEADER_BYTES;
	c->limits.max_url_bytes = CFG_DEF_MAX_URL_BYTES;
	c->limits.max_json_body_bytes = CFG_DEF_MAX_JSON_BODY_BYTES;
	c->limits.max_multipart_body_bytes = CFG_DEF_MAX_MULTIPART_BYTES;
	c->limits.max_json_depth = CFG_DEF_MAX_JSON_DEPTH;
	c->limits.header_timeout_s = CFG_DEF_HEADER_TIMEOUT_S;
	c->limits.body_idle_timeout_s = CFG_DEF_BODY_IDLE_TIMEOUT_S;
	c->limits.max_conns_per_ip = CFG_DEF_MAX_CONNS_PER_IP;
	c->activity_max = ACTIVITY_DEF_ENTRIES;
	c->preload = xcalloc(1, sizeof(char *));
	return c;
}

/* Decodes a parsed tree into ld->c. */
void
cfg__load_tree(struct ld *ld, struct node *root)
{
	struct mlist globals = { 0 };
	struct node *hooks;

	if (root == NULL || cfg__node_is_null(root)) {
		cfg__ld_err_at(ld, NULL, 1, 1, "models", "missing required key");
		return;
	}
	if (root->kind != NODE_MAP) {
		cfg__ld_err(ld, root, "(root)", "expected a map");
		return;
	}
	cfg__macros_parse(ld, cfg__map_get(root, "macros"), "macros", &globals);
	for (size_t i = 0; i < cfg__map_len(root); i++) {
		const char *k = cfg__map_key(root, i)->str;

		if (strcmp(k, "models") == 0 || strcmp(k, "macros") == 0)
			continue;
		cfg__subst_values(ld, cfg__map_val(root, i), &globals);
		cfg__check_unresolved(ld, cfg__map_val(root, i), k, false);
	}
	cfg__decode_fields(ld, root, "", top_fields, ld->c);
	if (ld->c->unload_timeout_s == 0)
		ld->c->unload_timeout_s = CFG_DEF_UNLOAD_TIMEOUT_S;
	cfg__models_load(ld, root, &globals);
	cfg__groups_load(ld, root);
	cfg__peers_load(ld, root);
	{
		struct cfg_compat_report r = { cfg__compat_report, ld };

		cfg_compat_finish(ld->c, &r);
	}
	if ((hooks = cfg__map_get(root, "hooks")) != NULL)
		cfg__decode_fields(ld, hooks, "hooks", cfg__hooks_fields, ld->c);
	free(globals.v);
}

struct cfg *
cfg_ref(struct cfg *c)
{
	if (c != NULL)
		c->refs++;
	return c;
}

void
cfg_unref(struct cfg *c)
{
	if (c != NULL && --c->refs == 0)
		cfg__free(c);
}

/* ---- for config_peers.c ------------------------------------------------------------------ */

void
cfg__warn(struct ld *ld, const struct node *n, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg__ld_msg(ld, true, n ? n->file : NULL, n ? n->line : 1, n ? n->col : 1, path, fmt, ap);
	va_end(ap);
}

struct cfg *
cfg__cfg(struct ld *ld)
{
	return ld->c;
}

bool
cfg__is_map(const struct node *n)
{
	return n->kind == NODE_MAP;
}

bool
cfg__is_seq(const struct node *n)
{
	return n->kind == NODE_SEQ;
}

size_t
cfg__seq_len(const struct node *n)
{
	return n->kind == NODE_SEQ ? n->nkids : 0;
}

struct node *
cfg__item(const struct node *seq, size_t i)
{
	return seq->kids[i];
}

const char *
cfg__str(const struct node *n)
{
	return n->kind == NODE_SCALAR ? n->str : NULL;
}

int
cfg__get_int(struct ld *ld, const struct node *n, const char *path, long long min, long long max,
    int *out)
{
	return get_int(ld, n, path, min, max, out);
}
