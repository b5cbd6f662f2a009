/* config_matrix: llama-swap's matrix (part of config_compat): vars, evict_costs and sets
 * expanded to bitsets over the models, and the rule that picks what stays running. */
#include <string.h>

#include <cjson/cJSON.h>

#include "modelmux/config_compat.h"
#include "modelmux/util.h"
#include "config_compat_int.h"

/* ---- matrix: vars, evict_costs, sets ------------------------------------------------------ */

struct bitsets {
	unsigned char **v;
	size_t          n;
};

struct mx {
	struct cfg                     *c;
	const cJSON                    *vars, *sets;
	const struct cfg_compat_report *r;
	const struct cfg_compat_at     *at;
	const char                     *path;      /* "matrix" or "routing.router.settings.matrix" */
	size_t                          nbytes;    /* bytes of one bitset */
	size_t                          total;     /* alternatives made so far (bounded) */
	bool                            failed;
	int                             depth;
};

static bool
name_char(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	    ch == '.' || ch == '-' || ch == '_';
}

static void
bs_free(struct bitsets *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->v[i]);
	free(b->v);
	b->v = NULL;
	b->n = 0;
}

static bool
bs_push(struct mx *x, struct bitsets *b, unsigned char *set)
{
	if (++x->total > COMPAT_MAX_SET_ALTS) {
		if (!x->failed)
			cfg_compat__rep(x->r, x->at, false, x->path, "sets expand to more than %d combinations",
			    COMPAT_MAX_SET_ALTS);
		x->failed = true;
		free(set);
		return false;
	}
	b->v = xreallocarray(b->v, b->n + 1, sizeof(*b->v));
	b->v[b->n++] = set;
	return true;
}

static bool mx_expr(struct mx *x, const char **p, const char *setname, struct bitsets *out);

static void
skip_ws(const char **p)
{
	while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
		(*p)++;
}

static bool
mx_fail(struct mx *x, const char *setname, const char *why)
{
	char kp[512];

	snprintf(kp, sizeof(kp), "%s.sets.%s", x->path, setname);
	if (!x->failed)
		cfg_compat__rep(x->r, x->at, false, kp, "%s", why);
	x->failed = true;
	return false;
}

/* factor := NAME | '(' expr ')' | '+' SET */
static bool
mx_factor(struct mx *x, const char **p, const char *setname, struct bitsets *out)
{
	char         name[COMPAT_MAX_VAR_BYTES * 2 + 1], why[200];
	size_t       n = 0;
	bool         ref;
	const cJSON *v;

	skip_ws(p);
	if (**p == '(') {
		(*p)++;
		if (!mx_expr(x, p, setname, out))
			return false;
		skip_ws(p);
		if (**p != ')')
			return mx_fail(x, setname, "missing )");
		(*p)++;
		return true;
	}
	ref = **p == '+';
	if (ref)
		(*p)++;
	while (name_char((unsigned char)**p) && n + 1 < sizeof(name))
		name[n++] = *(*p)++;
	name[n] = '\0';
	if (n == 0) {
		snprintf(why, sizeof(why), "expected a name at \"%.20s\"", *p);
		return mx_fail(x, setname, why);
	}
	if (ref) {
		const char *sub;

		if ((v = cJSON_GetObjectItemCaseSensitive(x->sets, name)) == NULL || !cJSON_IsString(v)) {
			snprintf(why, sizeof(why), "+%s: no such set", name);
			return mx_fail(x, setname, why);
		}
		if (++x->depth > COMPAT_MAX_SET_DEPTH)
			return mx_fail(x, setname, "nested too deeply, or sets refer to each other in a loop");
		sub = v->valuestring;
		if (!mx_expr(x, &sub, setname, out))
			return false;
		x->depth--;
		skip_ws(&sub);
		if (*sub != '\0') {
			snprintf(why, sizeof(why), "+%s: unexpected \"%.20s\"", name, sub);
			return mx_fail(x, setname, why);
		}
		return true;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(x->vars, name)) == NULL) {
		snprintf(why, sizeof(why), "\"%s\" is not in vars", name);
		return mx_fail(x, setname, why);
	}
	{
		const struct cfg_model *m = cfg_find_model(x->c, v->valuestring);
		unsigned char          *set = xcalloc(1, x->nbytes);
		size_t                  i = cfg_compat__model_index(x->c, m);

		set[i / 8] |= (unsigned char)(1u << (i % 8));
		return bs_push(x, out, set);
	}
}

/* term := factor ('&' factor)*: every combination of the operands' alternatives, joined. */
static bool
mx_term(struct mx *x, const char **p, const char *setname, struct bitsets *out)
{
	struct bitsets acc = { 0 };

	if (!mx_factor(x, p, setname, &acc))
		goto fail;
	for (;;) {
		struct bitsets rhs = { 0 }, next = { 0 };

		skip_ws(p);
		if (**p != '&')
			break;
		(*p)++;
		if (!mx_factor(x, p, setname, &rhs)) {
			bs_free(&rhs);
			goto fail;
		}
		for (size_t i = 0; i < acc.n && !x->failed; i++) {
			for (size_t j = 0; j < rhs.n; j++) {
				unsigned char *set = xmalloc(x->nbytes);

				for (size_t k = 0; k < x->nbytes; k++)
					set[k] = acc.v[i][k] | rhs.v[j][k];
				if (!bs_push(x, &next, set))
					break;
			}
		}
		bs_free(&acc);
		bs_free(&rhs);
		acc = next;
		if (x->failed)
			goto fail;
	}
	/* Moved, not made: not counted again. */
	if (acc.n > 0) {
		out->v = xreallocarray(out->v, out->n + acc.n, sizeof(*out->v));
		memcpy(out->v + out->n, acc.v, acc.n * sizeof(*acc.v));
		out->n += acc.n;
	}
	free(acc.v);
	return true;
fail:
	bs_free(&acc);
	return false;
}

/* expr := term ('|' term)* */
static bool
mx_expr(struct mx *x, const char **p, const char *setname, struct bitsets *out)
{
	if (++x->depth > COMPAT_MAX_SET_DEPTH)
		return mx_fail(x, setname, "nested too deeply, or sets refer to each other in a loop");
	for (;;) {
		if (!mx_term(x, p, setname, out))
			return false;
		skip_ws(p);
		if (**p != '|')
			break;
		(*p)++;
	}
	x->depth--;
	return true;
}

/* matrix.vars: short names, each a model id; a wrong one is told and fails x. */
static void
mx_vars(struct mx *x, const char *path)
{
	const cJSON *it;
	char         kp[512];

	cJSON_ArrayForEach(it, x->vars) {
		const struct cfg_model *m;
		size_t                  n = strlen(it->string);
		bool                    ok = n >= 1 && n <= COMPAT_MAX_VAR_BYTES;

		for (size_t i = 0; ok && i < n; i++)
			ok = name_char((unsigned char)it->string[i]) && it->string[i] != '_';
		snprintf(kp, sizeof(kp), "%s.vars.%s", path, it->string);
		if (!ok)
			cfg_compat__rep(x->r, x->at, false, kp, "invalid name ([A-Za-z0-9.-], 1 to %d "
			    "characters)", COMPAT_MAX_VAR_BYTES);
		else if (!cJSON_IsString(it))
			cfg_compat__rep(x->r, x->at, false, kp, "expected a model id");
		else if ((m = cfg_find_model(x->c, it->valuestring)) == NULL)
			cfg_compat__rep(x->r, x->at, false, kp, "unknown model \"%s\"", it->valuestring);
		else if (strcmp(m->id, it->valuestring) != 0)
			cfg_compat__rep(x->r, x->at, false, kp, "\"%s\" is an alias; name the model id %s",
			    it->valuestring, m->id);
		else
			continue;
		x->failed = true;
	}
}

/* matrix.evict_costs: a cost per var, default 1. */
static void
mx_costs(struct mx *x, const cJSON *mtx, const char *path)
{
	const cJSON *it, *costs;
	char         kp[512];
	int         *cost = x->c->compat->evict_cost;

	snprintf(kp, sizeof(kp), "%s.evict_costs", path);
	if ((costs = cfg_compat__map_at(mtx, "evict_costs", kp, x->at, x->r)) == NULL)
		return;
	cJSON_ArrayForEach(it, costs) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(x->vars, it->string);
		long long    n;

		snprintf(kp, sizeof(kp), "%s.evict_costs.%s", path, it->string);
		if (v == NULL || !cJSON_IsString(v) || cfg_find_model(x->c, v->valuestring) == NULL)
			cfg_compat__rep(x->r, x->at, false, kp, "\"%s\" is not in vars", it->string);
		else if (!cfg_compat__is_int(it, 1, 1000000000, &n))
			cfg_compat__rep(x->r, x->at, false, kp, "expected an integer >= 1");
		else
			cost[cfg_compat__model_index(x->c, cfg_find_model(x->c, v->valuestring))] = (int)n;
	}
}

/* matrix.sets: each expression expanded into `all`. False when one is wrong. */
static bool
mx_sets(struct mx *x, const char *path, struct bitsets *all)
{
	const cJSON *it;
	char         kp[512];

	if (x->sets != NULL && !cJSON_IsObject(x->sets)) {
		snprintf(kp, sizeof(kp), "%s.sets", path);
		cfg_compat__rep(x->r, x->at, false, kp, "expected a map of set names to expressions");
		return false;
	}
	cJSON_ArrayForEach(it, x->sets) {
		const char *p;

		snprintf(kp, sizeof(kp), "%s.sets.%s", path, it->string);
		if (!cJSON_IsString(it) || strlen(it->valuestring) > COMPAT_MAX_SET_EXPR) {
			cfg_compat__rep(x->r, x->at, false, kp, "expected an expression of at most %d bytes",
			    COMPAT_MAX_SET_EXPR);
			return false;
		}
		p = it->valuestring;
		x->depth = 0;
		if (!mx_expr(x, &p, it->string, all))
			return false;
		skip_ws(&p);
		if (*p != '\0') {
			char why[64];

			snprintf(why, sizeof(why), "unexpected \"%.20s\"", p);
			mx_fail(x, it->string, why);
			return false;
		}
	}
	return !x->failed;
}

void
cfg_compat__matrix_build(struct cfg *c, const cJSON *mtx, const struct cfg_compat_at *at,
    const char *path, const struct cfg_compat_report *r)
{
	struct cfg_compat *cc = c->compat;
	struct mx          x = { c, NULL, NULL, r, at, path, (c->nmodels + 7) / 8, 0, false, 0 };
	struct bitsets     all = { 0 };
	const cJSON       *it;
	char               kp[512];

	cc->use_matrix = true;
	cc->evict_cost = xcalloc(c->nmodels ? c->nmodels : 1, sizeof(int));
	for (size_t i = 0; i < c->nmodels; i++)
		cc->evict_cost[i] = 1;
	cJSON_ArrayForEach(it, mtx) {
		if (strcmp(it->string, "vars") != 0 && strcmp(it->string, "evict_costs") != 0 &&
		    strcmp(it->string, "sets") != 0) {
			snprintf(kp, sizeof(kp), "%s.%s", path, it->string);
			cfg_compat__rep(r, at, false, kp, "unknown key");
		}
	}
	x.vars = cJSON_GetObjectItemCaseSensitive(mtx, "vars");
	x.sets = cJSON_GetObjectItemCaseSensitive(mtx, "sets");
	if (x.vars != NULL && !cJSON_IsObject(x.vars)) {
		snprintf(kp, sizeof(kp), "%s.vars", path);
		cfg_compat__rep(r, at, false, kp, "expected a map of short names to model ids");
		return;
	}
	mx_vars(&x, path);
	mx_costs(&x, mtx, path); /* its faults are told even when a var was wrong */
	if (x.failed)
		return;
	if (!mx_sets(&x, path, &all)) {
		bs_free(&all);
		return;
	}
	cc->alts = all.v;
	cc->nalts = all.n;
}

bool
cfg_compat_uses_matrix(const struct cfg *c)
{
	return c->compat != NULL && c->compat->use_matrix;
}

static bool
alt_has(const unsigned char *alt, size_t i)
{
	return (alt[i / 8] & (1u << (i % 8))) != 0;
}

bool
cfg_compat_matrix_keeps(const struct cfg *c, size_t x, const size_t *running, size_t n, size_t v)
{
	const struct cfg_compat *cc = c->compat;
	const unsigned char     *best = NULL;
	long long                best_cost = 0;

	if (!cfg_compat_uses_matrix(c) || x >= c->nmodels || v >= c->nmodels)
		return true;
	if (v == x)
		return true;
	for (size_t a = 0; a < cc->nalts; a++) {
		long long cost = 0;

		if (!alt_has(cc->alts[a], x))
			continue;
		for (size_t k = 0; k < n; k++)
			if (running[k] < c->nmodels && running[k] != x && !alt_has(cc->alts[a], running[k]))
				cost += cc->evict_cost[running[k]];
		if (best == NULL || cost < best_cost) {
			best = cc->alts[a];
			best_cost = cost;
		}
	}
	return best != NULL && alt_has(best, v); /* in no set: x runs alone */
}

