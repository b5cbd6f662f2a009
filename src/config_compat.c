/* config_compat: llama-swap's newer config keys and flags. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "modelmux/config_compat.h"
#include "config_compat_int.h"
#include "config_int.h"
#include "modelmux/log.h"
#include "modelmux/util.h"

const char *const cfg_compat_routing_groups[] = { "routing", "router", "settings", "groups", NULL };

static void errs_add(struct cfg_errs *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
errs_add(struct cfg_errs *e, const char *fmt, ...)
{
	va_list ap;
	char    msg[1024];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e->msgs = xreallocarray(e->msgs, e->n + 2, sizeof(*e->msgs));
	e->msgs[e->n++] = xstrdup(msg);
	e->msgs[e->n] = NULL;
}

void
cfg_compat__rep(const struct cfg_compat_report *r, const struct cfg_compat_at *at, bool warn,
    const char *path, const char *fmt, ...)
{
	va_list ap;
	char    msg[1024];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->fn(r->arg, at, warn, path, msg);
}

static struct cfg_compat *
compat_of(struct cfg *c)
{
	if (c->compat == NULL) {
		c->compat = xcalloc(1, sizeof(*c->compat));
		c->compat->log_to = COMPAT_LOG_BOTH; /* ours when logToStdout is not given */
	}
	return c->compat;
}

static struct cfg_model_compat *
mcompat_of(struct cfg_model *m)
{
	if (m->compat == NULL)
		m->compat = xcalloc(1, sizeof(*m->compat));
	return m->compat;
}

static const char *
last_key(const char *path)
{
	const char *k = strrchr(path, '.');

	return k ? k + 1 : path;
}

bool
cfg_compat__is_int(const cJSON *v, long long min, long long max, long long *out)
{
	double d;

	if (!cJSON_IsNumber(v))
		return false;
	d = v->valuedouble;
	/* The range first: converting a huge value (or inf, NaN) to long long is undefined. */
	if (!(d >= (double)min && d <= (double)max) || d != (double)(long long)d)
		return false;
	*out = (long long)d;
	return true;
}

size_t
cfg_compat__model_index(const struct cfg *c, const struct cfg_model *m)
{
	return (size_t)(m - c->models);
}

/* ---- top level and per model: shapes ------------------------------------------------------ */

void
cfg_compat_top(struct cfg *c, const char *key, const cJSON *v, const struct cfg_compat_at *at,
    const struct cfg_compat_report *r)
{
	struct cfg_compat *cc = compat_of(c);
	static const char *const log_to[] = { "proxy", "upstream", "both", "none", NULL };

	if (strcmp(key, "logToStdout") == 0) {
		for (size_t i = 0; log_to[i]; i++) {
			if (cJSON_IsString(v) && strcmp(v->valuestring, log_to[i]) == 0) {
				cc->log_to = (enum compat_log_to)i;
				return;
			}
		}
		cfg_compat__rep(r, at, false, key, "expected proxy, upstream, both or none");
		return;
	}
	if (cJSON_IsNull(v))
		return;
	if (!cJSON_IsObject(v)) {
		cfg_compat__rep(r, at, false, key, "expected a map");
		return;
	}
	if (strcmp(key, "routing") == 0) {
		cc->routing = cJSON_Duplicate(v, true);
		cc->routing_at = *at;
	} else if (strcmp(key, "matrix") == 0) {
		cc->matrix = cJSON_Duplicate(v, true);
		cc->matrix_at = *at;
	} else if (strcmp(key, "selectors") == 0) {
		cc->selectors = cJSON_Duplicate(v, true);
		cc->selectors_at = *at;
	} else if (strcmp(key, "upstream") == 0) {
		cc->upstream = cJSON_Duplicate(v, true);
		cc->upstream_at = *at;
	}
}

static unsigned
modalities(const cJSON *v, const char *path, const struct cfg_compat_at *at,
    const struct cfg_compat_report *r)
{
	unsigned    bits = 0;
	const cJSON *it;

	if (!cJSON_IsArray(v)) {
		cfg_compat__rep(r, at, false, path, "expected a list of text, audio or image");
		return 0;
	}
	cJSON_ArrayForEach(it, v) {
		if (cJSON_IsString(it) && strcmp(it->valuestring, "text") == 0)
			bits |= COMPAT_MOD_TEXT;
		else if (cJSON_IsString(it) && strcmp(it->valuestring, "audio") == 0)
			bits |= COMPAT_MOD_AUDIO;
		else if (cJSON_IsString(it) && strcmp(it->valuestring, "image") == 0)
			bits |= COMPAT_MOD_IMAGE;
		else
			cfg_compat__rep(r, at, false, path, "unknown modality (text, audio or image)");
	}
	return bits;
}

static void
model_caps(struct cfg_model *m, const char *path, const cJSON *v, const struct cfg_compat_at *at,
    const struct cfg_compat_report *r)
{
	struct cfg_caps *caps = &mcompat_of(m)->caps;
	const cJSON     *it;
	char             kp[512];
	long long        n;

	if (cJSON_IsNull(v))
		return;
	if (!cJSON_IsObject(v)) {
		cfg_compat__rep(r, at, false, path, "expected a map");
		return;
	}
	caps->set = true;
	cJSON_ArrayForEach(it, v) {
		snprintf(kp, sizeof(kp), "%s.%s", path, it->string);
		if (strcmp(it->string, "in") == 0)
			caps->in = modalities(it, kp, at, r);
		else if (strcmp(it->string, "out") == 0)
			caps->out = modalities(it, kp, at, r);
		else if (strcmp(it->string, "tools") == 0 && cJSON_IsBool(it))
			caps->tools = cJSON_IsTrue(it);
		else if (strcmp(it->string, "reranker") == 0 && cJSON_IsBool(it))
			caps->reranker = cJSON_IsTrue(it);
		else if (strcmp(it->string, "disableAuto") == 0 && cJSON_IsBool(it))
			; /* nothing is discovered, so there is nothing to turn off */
		else if (strcmp(it->string, "context") == 0 && cfg_compat__is_int(it, 0, LLONG_MAX / 2, &n))
			caps->context = n;
		else if (strcmp(it->string, "context") == 0)
			cfg_compat__rep(r, at, false, kp, "expected an integer >= 0");
		else if (strcmp(it->string, "tools") == 0 || strcmp(it->string, "reranker") == 0 ||
		    strcmp(it->string, "disableAuto") == 0)
			cfg_compat__rep(r, at, false, kp, "expected a boolean (true or false)");
		else
			cfg_compat__rep(r, at, false, kp, "unknown key");
	}
}

static void
model_params_by_id(struct cfg_model *m, const char *path, const cJSON *v,
    const struct cfg_compat_at *at, const struct cfg_compat_report *r)
{
	struct cfg_model_compat *mc = mcompat_of(m);
	const cJSON             *it;
	char                     kp[512];

	if (cJSON_IsNull(v))
		return;
	if (!cJSON_IsObject(v)) {
		cfg_compat__rep(r, at, false, path, "expected a map of model names to parameters");
		return;
	}
	cJSON_Delete(mc->params_by_id);
	mc->params_by_id = cJSON_CreateObject();
	cJSON_ArrayForEach(it, v) {
		cJSON *p;

		snprintf(kp, sizeof(kp), "%s.%s", path, it->string);
		if (it->string[0] == '\0' || strlen(it->string) > CFG_MAX_ID_BYTES ||
		    strpbrk(it->string, " \t\r\n") != NULL) {
			cfg_compat__rep(r, at, false, kp, "invalid model name");
			continue;
		}
		if (!cJSON_IsObject(it)) {
			cfg_compat__rep(r, at, false, kp, "expected a map of parameters");
			continue;
		}
		p = cJSON_Duplicate(it, true);
		cJSON_DeleteItemFromObjectCaseSensitive(p, "model"); /* protected, as in setParams */
		cJSON_AddItemToObject(mc->params_by_id, it->string, p);
	}
}

void
cfg_compat_model(struct cfg_model *m, const char *path, const cJSON *v,
    const struct cfg_compat_at *at, const struct cfg_compat_report *r)
{
	const char *key = last_key(path);

	if (strcmp(key, "capabilities") == 0)
		model_caps(m, path, v, at, r);
	else if (strcmp(key, "setParamsByID") == 0)
		model_params_by_id(m, path, v, at, r);
}

/* ---- -tls-cert-file / -tls-key-file ------------------------------------------------------ */

int
cfg_compat_tls_files(struct cfg *c, const char *cert_file, const char *key_file,
    struct cfg_errs *errs)
{
	char     *cert = NULL, *key = NULL;
	size_t    clen = 0, klen = 0;
	X509     *x = NULL;
	EVP_PKEY *pk = NULL;
	int       rc = -1;

	if ((cert = cfg__read_small_file(cert_file, CFG_MAX_PEM_BYTES, &clen)) == NULL) {
		errs_add(errs, "-tls-cert-file: cannot read %s: %s", cert_file,
		    errno == EFBIG ? "too large" : strerror(errno));
		goto out;
	}
	if ((key = cfg__read_small_file(key_file, CFG_MAX_PEM_BYTES, &klen)) == NULL) {
		errs_add(errs, "-tls-key-file: cannot read %s: %s", key_file,
		    errno == EFBIG ? "too large" : strerror(errno));
		goto out;
	}
	if ((x = cfg__pem_cert(cert, clen)) == NULL) {
		errs_add(errs, "-tls-cert-file: %s: not a PEM certificate", cert_file);
		goto out;
	}
	if ((pk = cfg__pem_key(key, klen)) == NULL) {
		errs_add(errs, "-tls-key-file: %s: not a PEM private key (or it has a passphrase)",
		    key_file);
		goto out;
	}
	if (X509_check_private_key(x, pk) != 1) {
		errs_add(errs, "-tls-key-file: %s does not match the certificate %s", key_file,
		    cert_file);
		goto out;
	}
	cfg__tls_keep(c, &cert, &key);
	rc = 0;
out:
	ERR_clear_error();
	X509_free(x);
	EVP_PKEY_free(pk);
	free(cert);
	if (key != NULL)
		OPENSSL_cleanse(key, klen);
	free(key);
	return rc;
}

/* parent.key when it is a map; NULL when absent or null; an error and NULL when it is not a
 * map (so no caller walks a list's members as if they had names). */
const cJSON *
cfg_compat__map_at(const cJSON *parent, const char *key, const char *path, const struct cfg_compat_at *at,
    const struct cfg_compat_report *r)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(parent, key);

	if (v == NULL || cJSON_IsNull(v))
		return NULL;
	if (!cJSON_IsObject(v)) {
		cfg_compat__rep(r, at, false, path, "expected a map");
		return NULL;
	}
	return v;
}

/* ---- routing ------------------------------------------------------------------------------ */

static void
routing_finish(struct cfg *c, const struct cfg_compat_report *r)
{
	struct cfg_compat *cc = c->compat;
	const cJSON       *router, *use, *settings, *sched, *it;
	const struct cfg_compat_at *at = &cc->routing_at;
	bool               want_matrix = false;

	cJSON_ArrayForEach(it, cc->routing) {
		if (strcmp(it->string, "router") != 0 && strcmp(it->string, "scheduler") != 0) {
			char kp[256];

			snprintf(kp, sizeof(kp), "routing.%s", it->string);
			cfg_compat__rep(r, at, false, kp, "unknown key");
		}
	}
	router = cfg_compat__map_at(cc->routing, "router", "routing.router", at, r);
	use = cJSON_GetObjectItemCaseSensitive(router, "use");
	settings = cfg_compat__map_at(router, "settings", "routing.router.settings", at, r);
	if (use != NULL && !(cJSON_IsString(use) && (strcmp(use->valuestring, "group") == 0 ||
	    strcmp(use->valuestring, "matrix") == 0)))
		cfg_compat__rep(r, at, false, "routing.router.use", "expected group or matrix");
	else if (use != NULL)
		want_matrix = strcmp(use->valuestring, "matrix") == 0;
	cJSON_ArrayForEach(it, settings) {
		if (strcmp(it->string, "groups") != 0 && strcmp(it->string, "matrix") != 0) {
			char kp[256];

			snprintf(kp, sizeof(kp), "routing.router.settings.%s", it->string);
			cfg_compat__rep(r, at, false, kp, "unknown key");
		}
	}
	it = cfg_compat__map_at(settings, "matrix", "routing.router.settings.matrix", at, r);
	if (it != NULL) {
		if (cc->matrix != NULL)
			cfg_compat__rep(r, at, false, "routing.router.settings.matrix",
			    "matrix is given at the top level too; keep one");
		else if (use != NULL && !want_matrix)
			cfg_compat__rep(r, at, false, "routing.router.settings.matrix",
			    "routing.router.use is group; use: matrix to use it");
		else
			cfg_compat__matrix_build(c, it, at, "routing.router.settings.matrix", r);
	} else if (want_matrix && cc->matrix == NULL) {
		cfg_compat__rep(r, at, false, "routing.router.use", "matrix, but no routing.router.settings.matrix");
	}
	if (want_matrix && cJSON_GetObjectItemCaseSensitive(settings, "groups") != NULL)
		cfg_compat__rep(r, at, false, "routing.router.settings.groups",
		    "routing.router.use is matrix; groups would not be used");

	sched = cfg_compat__map_at(cc->routing, "scheduler", "routing.scheduler", at, r);
	use = cJSON_GetObjectItemCaseSensitive(sched, "use");
	if (use != NULL && !(cJSON_IsString(use) && strcmp(use->valuestring, "fifo") == 0))
		cfg_compat__rep(r, at, false, "routing.scheduler.use", "expected fifo (the only scheduler)");
	it = cfg_compat__map_at(sched, "settings", "routing.scheduler.settings", at, r);
	it = cfg_compat__map_at(it, "fifo", "routing.scheduler.settings.fifo", at, r);
	it = cJSON_GetObjectItemCaseSensitive(it, "priority");
	if (it != NULL && !cJSON_IsNull(it)) {
		const cJSON *p;

		if (!cJSON_IsObject(it)) {
			cfg_compat__rep(r, at, false, "routing.scheduler.settings.fifo.priority",
			    "expected a map of model ids to integers");
			return;
		}
		cc->priority = xcalloc(c->nmodels ? c->nmodels : 1, sizeof(int));
		cJSON_ArrayForEach(p, it) {
			const struct cfg_model *m = cfg_find_model(c, p->string);
			long long               n;
			char                    kp[512];

			snprintf(kp, sizeof(kp), "routing.scheduler.settings.fifo.priority.%s", p->string);
			if (m == NULL)
				cfg_compat__rep(r, at, false, kp, "unknown model \"%s\"", p->string);
			else if (!cfg_compat__is_int(p, INT_MIN / 2, INT_MAX / 2, &n))
				cfg_compat__rep(r, at, false, kp, "expected an integer");
			else
				cc->priority[cfg_compat__model_index(c, m)] = (int)n;
		}
	}
}

/* ---- selectors ---------------------------------------------------------------------------- */

/* Can these models (indices) run at once: one swap:false group holds them all, or one matrix
 * combination does? */
static bool
coexist(const struct cfg *c, const size_t *idx, size_t n)
{
	const struct cfg_compat *cc = c->compat;

	if (n <= 1)
		return true;
	if (cc->use_matrix) {
		for (size_t a = 0; a < cc->nalts; a++) {
			size_t k = 0;

			while (k < n && (cc->alts[a][idx[k] / 8] & (1u << (idx[k] % 8))) != 0)
				k++;
			if (k == n)
				return true;
		}
		return false;
	}
	for (size_t k = 1; k < n; k++)
		if (strcmp(c->models[idx[k]].group->name, c->models[idx[0]].group->name) != 0)
			return false;
	return !c->models[idx[0]].group->swap;
}

/* A selector's plain keys (name, description, unlisted, metadata, settings/balance). */
static void
selector_fields(struct cfg_selector *s, const cJSON *v, const char *base,
    const struct cfg_compat_at *at, const struct cfg_compat_report *r)
{
	const cJSON *it, *st;
	char         kp[512];

	cJSON_ArrayForEach(it, v) {
		snprintf(kp, sizeof(kp), "%s.%s", base, it->string);
		if (strcmp(it->string, "strategy") == 0 || strcmp(it->string, "targets") == 0)
			continue;
		if (strcmp(it->string, "name") == 0 && cJSON_IsString(it))
			s->name = xstrdup(it->valuestring);
		else if (strcmp(it->string, "description") == 0 && cJSON_IsString(it))
			s->description = xstrdup(it->valuestring);
		else if (strcmp(it->string, "unlisted") == 0 && cJSON_IsBool(it))
			s->unlisted = cJSON_IsTrue(it);
		else if (strcmp(it->string, "metadata") == 0 && cJSON_IsObject(it))
			s->metadata = cJSON_Duplicate(it, true);
		else if ((strcmp(it->string, "settings") == 0 || strcmp(it->string, "balance") == 0) &&
		    cJSON_IsObject(it)) {
			long long sp;

			cJSON_ArrayForEach(st, it) {
				snprintf(kp, sizeof(kp), "%s.%s.%s", base, it->string, st->string);
				if (strcmp(st->string, "spillover") != 0)
					cfg_compat__rep(r, at, false, kp, "unknown key");
				else if (!cfg_compat__is_int(st, 1, INT_MAX, &sp))
					cfg_compat__rep(r, at, false, kp, "must be >= 1");
				else
					s->spillover = (int)sp;
			}
		} else if (strcmp(it->string, "name") == 0 || strcmp(it->string, "description") == 0 ||
		    strcmp(it->string, "unlisted") == 0 || strcmp(it->string, "metadata") == 0 ||
		    strcmp(it->string, "settings") == 0 || strcmp(it->string, "balance") == 0)
			cfg_compat__rep(r, at, false, kp, "wrong type");
		else
			cfg_compat__rep(r, at, false, kp, "unknown key");
	}
}

/* A selector's strategy: pin, warm or spillover (balance). */
static void
selector_strategy(struct cfg_selector *s, const cJSON *v, const char *base,
    const struct cfg_compat_at *at, const struct cfg_compat_report *r)
{
	const cJSON *it;
	char         kp[512];

	snprintf(kp, sizeof(kp), "%s.strategy", base);
	it = cJSON_GetObjectItemCaseSensitive(v, "strategy");
	if (it == NULL)
		cfg_compat__rep(r, at, false, kp, "missing required key");
	else if (cJSON_IsString(it) && strcmp(it->valuestring, "pin") == 0)
		s->strategy = COMPAT_SEL_PIN;
	else if (cJSON_IsString(it) && strcmp(it->valuestring, "warm") == 0)
		s->strategy = COMPAT_SEL_WARM;
	else if (cJSON_IsString(it) && (strcmp(it->valuestring, "spillover") == 0 ||
	    strcmp(it->valuestring, "balance") == 0))
		s->strategy = COMPAT_SEL_SPILLOVER;
	else
		cfg_compat__rep(r, at, false, kp, "unknown strategy (warm, pin or spillover)");
}

static void
selector_load(struct cfg *c, struct cfg_selector *s, const cJSON *v,
    const struct cfg_compat_at *at, const struct cfg_compat_report *r)
{
	const cJSON *it, *t;
	char         kp[512], base[300];
	size_t       n = 0, *idx;

	snprintf(base, sizeof(base), "selectors.%s", s->id);
	s->spillover = 1;
	s->targets = xcalloc(1, sizeof(char *)); /* never NULL, even when refused */
	if (cfg_find_model(c, s->id) != NULL)
		cfg_compat__rep(r, at, false, base, "the name is already a model id or alias");
	if (!cJSON_IsObject(v)) {
		cfg_compat__rep(r, at, false, base, "expected a map");
		return;
	}
	selector_fields(s, v, base, at, r);
	selector_strategy(s, v, base, at, r);
	snprintf(kp, sizeof(kp), "%s.targets", base);
	t = cJSON_GetObjectItemCaseSensitive(v, "targets");
	if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) == 0) {
		cfg_compat__rep(r, at, false, kp, "expected a list of at least one model");
		return;
	}
	free(s->targets);
	s->targets = xcalloc((size_t)cJSON_GetArraySize(t) + 1, sizeof(char *));
	idx = xcalloc((size_t)cJSON_GetArraySize(t), sizeof(*idx));
	cJSON_ArrayForEach(it, t) {
		const struct cfg_model *m;
		char                    ip[600];

		snprintf(ip, sizeof(ip), "%s[%zu]", kp, n);
		if (!cJSON_IsString(it)) {
			cfg_compat__rep(r, at, false, ip, "expected a model id or alias");
			continue;
		}
		if (cJSON_GetObjectItemCaseSensitive(c->compat->selectors, it->valuestring) != NULL) {
			cfg_compat__rep(r, at, false, ip, "\"%s\" is a selector; selectors do not chain",
			    it->valuestring);
			continue;
		}
		if ((m = cfg_find_model(c, it->valuestring)) == NULL) {
			cfg_compat__rep(r, at, false, ip, "unknown model \"%s\"", it->valuestring);
			continue;
		}
		for (size_t k = 0; k < n && s->strategy == COMPAT_SEL_SPILLOVER; k++)
			if (idx[k] == cfg_compat__model_index(c, m))
				cfg_compat__rep(r, at, false, ip, "model %s is a target twice", m->id);
		idx[n] = cfg_compat__model_index(c, m);
		s->targets[n++] = xstrdup(it->valuestring);
	}
	if (s->strategy == COMPAT_SEL_SPILLOVER && !coexist(c, idx, n))
		cfg_compat__rep(r, at, false, kp, "spillover targets must be able to run together (one group "
		    "with swap: false, or one matrix set)");
	free(idx);
}

static void
selectors_finish(struct cfg *c, const struct cfg_compat_report *r)
{
	struct cfg_compat *cc = c->compat;
	const cJSON       *it;

	cc->sel = xcalloc((size_t)cJSON_GetArraySize(cc->selectors) + 1, sizeof(*cc->sel));
	cJSON_ArrayForEach(it, cc->selectors) {
		struct cfg_selector *s = &cc->sel[cc->nsel++];

		s->id = xstrdup(it->string);
		selector_load(c, s, it, &cc->selectors_at, r);
	}
}

/* ---- upstream.ignorePaths ----------------------------------------------------------------- */

static void
ignore_add(struct cfg_compat *cc, const char *re, const struct cfg_compat_at *at, const char *path,
    const struct cfg_compat_report *r)
{
	regex_t *v = cc->ignore;
	int      e;

	if (cc->nignore >= COMPAT_MAX_IGNORE_PATHS) {
		cfg_compat__rep(r, at, false, path, "more than %d patterns", COMPAT_MAX_IGNORE_PATHS);
		return;
	}
	v = xreallocarray(v, cc->nignore + 1, sizeof(*v));
	cc->ignore = v;
	if ((e = regcomp(&v[cc->nignore], re, REG_EXTENDED | REG_NOSUB)) != 0) {
		char why[200];

		regerror(e, &v[cc->nignore], why, sizeof(why));
		regfree(&v[cc->nignore]);
		cfg_compat__rep(r, at, false, path, "bad regular expression \"%s\": %s", re, why);
		return;
	}
	cc->nignore++;
}

static void
upstream_finish(struct cfg *c, const struct cfg_compat_report *r)
{
	struct cfg_compat *cc = c->compat;
	const cJSON       *it, *ip = NULL;
	const struct cfg_compat_at none = { NULL, 1, 1 };

	cJSON_ArrayForEach(it, cc->upstream) {
		if (strcmp(it->string, "ignorePaths") == 0)
			ip = it;
		else {
			char kp[256];

			snprintf(kp, sizeof(kp), "upstream.%s", it->string);
			cfg_compat__rep(r, &cc->upstream_at, false, kp, "unknown key");
		}
	}
	if (ip == NULL || cJSON_IsNull(ip)) {
		ignore_add(cc, COMPAT_DEF_IGNORE_PATH, &none, "upstream.ignorePaths", r);
		return;
	}
	if (!cJSON_IsArray(ip)) {
		cfg_compat__rep(r, &cc->upstream_at, false, "upstream.ignorePaths", "expected a list of patterns");
		return;
	}
	cJSON_ArrayForEach(it, ip) {
		if (!cJSON_IsString(it))
			cfg_compat__rep(r, &cc->upstream_at, false, "upstream.ignorePaths", "expected a string");
		else
			ignore_add(cc, it->valuestring, &cc->upstream_at, "upstream.ignorePaths", r);
	}
}

/* ---- setParamsByID: the names become aliases --------------------------------------------- */

static void
params_aliases(struct cfg *c, const struct cfg_compat_report *r)
{
	for (size_t i = 0; i < c->nmodels; i++) {
		struct cfg_model *m = &c->models[i];
		const cJSON      *it;

		if (m->compat == NULL)
			continue;
		cJSON_ArrayForEach(it, m->compat->params_by_id) {
			const struct cfg_model *o = cfg_find_model(c, it->string);
			size_t                  n;
			char                    kp[600];
			struct cfg_compat_at    at = { m->file, m->line, m->col };

			if (o == m)
				continue;
			if (o != NULL) {
				snprintf(kp, sizeof(kp), "models.%s.filters.setParamsByID.%s", m->id,
				    it->string);
				cfg_compat__rep(r, &at, false, kp, "\"%s\" already names model %s", it->string, o->id);
				continue;
			}
			n = strv_len(m->aliases);
			m->aliases = xreallocarray(m->aliases, n + 2, sizeof(char *));
			m->aliases[n] = xstrdup(it->string);
			m->aliases[n + 1] = NULL;
		}
	}
}

void
cfg_compat_finish(struct cfg *c, const struct cfg_compat_report *r)
{
	struct cfg_compat *cc = compat_of(c);

	params_aliases(c, r);
	if (cc->matrix != NULL)
		cfg_compat__matrix_build(c, cc->matrix, &cc->matrix_at, "matrix", r);
	if (cc->routing != NULL)
		routing_finish(c, r);
	if (cc->use_matrix) {
		for (size_t i = 0; i < c->ngroups; i++) {
			struct cfg_compat_at at = { NULL, 1, 1 };

			if (strcmp(c->groups[i].name, "(default)") != 0) {
				cfg_compat__rep(r, &at, false, "groups", "groups and a matrix cannot both be used");
				break;
			}
		}
	}
	if (cc->selectors != NULL)
		selectors_finish(c, r);
	upstream_finish(c, r);
	cJSON_Delete(cc->routing);
	cJSON_Delete(cc->matrix);
	cJSON_Delete(cc->selectors);
	cJSON_Delete(cc->upstream);
	cc->routing = cc->matrix = cc->selectors = cc->upstream = NULL;
}

void
cfg_compat_free(struct cfg *c)
{
	struct cfg_compat *cc = c->compat;

	if (cc == NULL)
		return;
	cJSON_Delete(cc->routing);
	cJSON_Delete(cc->matrix);
	cJSON_Delete(cc->selectors);
	cJSON_Delete(cc->upstream);
	for (size_t i = 0; i < cc->nalts; i++)
		free(cc->alts[i]);
	free(cc->alts);
	free(cc->evict_cost);
	free(cc->priority);
	for (size_t i = 0; i < cc->nsel; i++) {
		free(cc->sel[i].id);
		strv_free(cc->sel[i].targets);
		free(cc->sel[i].name);
		free(cc->sel[i].description);
		cJSON_Delete(cc->sel[i].metadata);
	}
	free(cc->sel);
	for (size_t i = 0; i < cc->nignore; i++)
		regfree(&((regex_t *)cc->ignore)[i]);
	free(cc->ignore);
	free(cc);
	c->compat = NULL;
}

void
cfg_compat_model_free(struct cfg_model *m)
{
	if (m->compat == NULL)
		return;
	cJSON_Delete(m->compat->params_by_id);
	free(m->compat);
	m->compat = NULL;
}

/* ---- questions ---------------------------------------------------------------------------- */

bool
cfg_compat_log_proxy(const struct cfg *c)
{
	enum compat_log_to t = c->compat ? c->compat->log_to : COMPAT_LOG_BOTH;

	return t == COMPAT_LOG_PROXY || t == COMPAT_LOG_BOTH;
}

bool
cfg_compat_log_upstream(const struct cfg *c)
{
	enum compat_log_to t = c->compat ? c->compat->log_to : COMPAT_LOG_BOTH;

	return t == COMPAT_LOG_UPSTREAM || t == COMPAT_LOG_BOTH;
}

const cJSON *
cfg_compat_params_by_id(const struct cfg_model *m, const char *requested)
{
	if (m->compat == NULL || m->compat->params_by_id == NULL || requested == NULL)
		return NULL;
	return cJSON_GetObjectItemCaseSensitive(m->compat->params_by_id, requested);
}

const struct cfg_selector *
cfg_compat_selector(const struct cfg *c, const char *id)
{
	if (c->compat == NULL || id == NULL)
		return NULL;
	for (size_t i = 0; i < c->compat->nsel; i++)
		if (strcmp(c->compat->sel[i].id, id) == 0)
			return &c->compat->sel[i];
	return NULL;
}

int
cfg_compat_priority(const struct cfg *c, size_t i)
{
	if (c->compat == NULL || c->compat->priority == NULL || i >= c->nmodels)
		return 0;
	return c->compat->priority[i];
}

bool
cfg_compat_ignored_path(const struct cfg *c, const char *path)
{
	const regex_t *v;

	if (c->compat == NULL)
		return false;
	v = c->compat->ignore;
	for (size_t i = 0; i < c->compat->nignore; i++)
		if (regexec(&v[i], path, 0, NULL, 0) == 0)
			return true;
	return false;
}

long long
cfg_compat_context(const struct cfg_model *m)
{
	long long n;

	if (m->compat != NULL && m->compat->caps.context > 0)
		return m->compat->caps.context;
	for (char **a = m->argv; a && *a; a++) {
		const char *v = NULL;

		if ((strcmp(*a, "-c") == 0 || strcmp(*a, "--ctx-size") == 0) && a[1] != NULL)
			v = a[1];
		else if (strncmp(*a, "--ctx-size=", 11) == 0)
			v = *a + 11;
		if (v != NULL && parse_int(v, 1, LLONG_MAX / 2, &n) == 0)
			return n;
	}
	return 0;
}
