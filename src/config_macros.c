/* config: macros (global, per model, ${PORT}) substituted in the tree, and the check that no
 * ${...} is left unresolved. */
#include <ctype.h>
#include <limits.h>
#include <stddef.h>

#include "modelmux/config.h"
#include "modelmux/log.h"
#include "modelmux/util.h"
#include "config_int.h"

#define MACRO_NAME_MAX   63  /* names are shorter than 64 characters */

/* ---- macros ------------------------------------------------------------------------------ */

static bool
macro_name_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > MACRO_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

static bool
macro_refers_to(const char *value, const char *name)
{
	char ref[MACRO_NAME_MAX + 4];

	snprintf(ref, sizeof(ref), "${%s}", name);
	return strstr(value, ref) != NULL;
}

void
cfg__macros_parse(struct ld *ld, const struct node *m, const char *path, struct mlist *out)
{
	if (m == NULL || cfg__node_is_null(m))
		return;
	if (m->kind != NODE_MAP) {
		cfg__ld_err(ld, m, path, "expected a map of name: value");
		return;
	}
	out->v = xcalloc(cfg__map_len(m), sizeof(*out->v));
	for (size_t i = 0; i < cfg__map_len(m); i++) {
		const struct node *k = cfg__map_key(m, i), *v = cfg__map_val(m, i);
		char              *kp = cfg__path_join(path, k->str);

		if (!macro_name_ok(k->str)) {
			cfg__ld_err(ld, k, kp, "invalid macro name (want [a-zA-Z0-9_-], under 64 characters)");
		} else if (strcmp(k->str, "PID") == 0 || strcmp(k->str, "PORT") == 0 ||
		    strcmp(k->str, "MODEL_ID") == 0) {
			cfg__ld_err(ld, k, kp, "macro name is reserved");
		} else if (v->kind != NODE_SCALAR) {
			cfg__ld_err(ld, v, kp, "macro values must be scalars");
		} else if (macro_refers_to(v->str, k->str)) {
			cfg__ld_err(ld, v, kp, "macro refers to itself");
		} else if (out->n == CFG_MAX_MACROS) {
			cfg__ld_err(ld, k, kp, "more than %d macros", CFG_MAX_MACROS);
		} else {
			out->v[out->n].name = k->str;
			out->v[out->n].value = v->str;
			out->v[out->n++].quoted = v->quoted;
		}
		free(kp);
	}
}

/* MODEL_ID, then the globals, then the model's own overriding by name. */
void
cfg__mlist_merge(struct mlist *out, const char *id, const struct mlist *g, const struct mlist *own)
{
	out->v = xcalloc(1 + g->n + own->n, sizeof(*out->v));
	out->v[0] = (struct macro){ "MODEL_ID", id, true };
	out->n = 1;
	for (size_t i = 0; i < g->n; i++)
		out->v[out->n++] = g->v[i];
	for (size_t i = 0; i < own->n; i++) {
		size_t j;

		for (j = 1; j < out->n; j++)
			if (strcmp(out->v[j].name, own->v[i].name) == 0)
				break;
		out->v[j] = own->v[i];
		if (j == out->n)
			out->n++;
	}
}

/* memmem without a sanitizer interceptor that rescans the whole haystack on every call. */
static const char *
find_pat(const char *p, const char *end, const char *pat, size_t plen)
{
	for (; (size_t)(end - p) >= plen; p++)
		if (*p == *pat && memcmp(p, pat, plen) == 0)
			return p;
	return NULL;
}

/* Replaces every `pat` in the scalar by `rep`. */
static void
replace_all(struct ld *ld, struct node *n, const char *pat, const char *rep)
{
	size_t      plen = strlen(pat), rlen = strlen(rep), len = strlen(n->str), count = 0;
	const char *p, *q, *end = n->str + len;
	struct buf  out = { 0 };

	for (p = n->str; (q = find_pat(p, end, pat, plen)) != NULL; p = q + plen)
		count++;
	if (rlen > plen && !cfg__ld_charge(ld, n, count * (rlen - plen)))
		return;
	for (p = n->str; (q = find_pat(p, end, pat, plen)) != NULL; p = q + plen) {
		if (buf_append(&out, p, (size_t)(q - p), SIZE_MAX / 2) == -1 ||
		    buf_append(&out, rep, rlen, SIZE_MAX / 2) == -1)
			fatal("config: out of memory");
	}
	if (buf_append(&out, p, (size_t)(end - p) + 1, SIZE_MAX / 2) == -1)
		fatal("config: out of memory");
	free(n->str);
	n->str = out.data;
}

/* Applies the list in reverse declaration order; an exact "${name}" takes the macro's type. */
void
cfg__subst_scalar(struct ld *ld, struct node *n, const struct mlist *ml)
{
	char ref[MACRO_NAME_MAX + 4];

	for (size_t i = ml->n; i-- > 0;) {
		snprintf(ref, sizeof(ref), "${%s}", ml->v[i].name);
		if (strstr(n->str, ref) == NULL)
			continue;
		if (strcmp(n->str, ref) == 0) {
			if (!cfg__ld_charge(ld, n, strlen(ml->v[i].value)))
				return;
			free(n->str);
			n->str = xstrdup(ml->v[i].value);
			n->quoted = ml->v[i].quoted;
		} else {
			replace_all(ld, n, ref, ml->v[i].value);
			n->quoted = true;
		}
	}
}

/* Substitutes into every value (never a map key) under n. */
void
cfg__subst_values(struct ld *ld, struct node *n, const struct mlist *ml)
{
	if (ml->n == 0)
		return;
	switch (n->kind) {
	case NODE_SCALAR:
		cfg__subst_scalar(ld, n, ml);
		break;
	case NODE_MAP:
		for (size_t i = 0; i < cfg__map_len(n); i++)
			cfg__subst_values(ld, cfg__map_val(n, i), ml);
		break;
	case NODE_SEQ:
		for (size_t i = 0; i < n->nkids; i++)
			cfg__subst_values(ld, n->kids[i], ml);
		break;
	}
}

/* Reports the first ${...} left in a scalar; ${PID} passes when allow_pid. */
static void
check_scalar(struct ld *ld, const struct node *n, const char *path, bool allow_pid)
{
	const char *p;

	for (p = n->str; (p = strstr(p, "${")) != NULL; p += 2) {
		size_t len = strcspn(p, "}");

		if (allow_pid && strncmp(p, "${PID}", 6) == 0)
			continue;
		cfg__ld_err(ld, n, path, "unresolved macro %.*s%s", (int)MM_MIN(len, 72), p,
		    len <= 72 && p[len] == '}' ? "}" : "...");
		return;
	}
}

/* Reports any ${...} left in a value or in a key below it. */
void
cfg__check_unresolved(struct ld *ld, const struct node *n, const char *path, bool allow_pid)
{
	char *kp;

	switch (n->kind) {
	case NODE_SCALAR:
		check_scalar(ld, n, path, allow_pid);
		break;
	case NODE_MAP:
		for (size_t i = 0; i < cfg__map_len(n); i++) {
			kp = cfg__path_join(path, cfg__map_key(n, i)->str);
			check_scalar(ld, cfg__map_key(n, i), kp, false);
			cfg__check_unresolved(ld, cfg__map_val(n, i), kp, allow_pid);
			free(kp);
		}
		break;
	case NODE_SEQ:
		for (size_t i = 0; i < n->nkids; i++) {
			kp = cfg__path_index(path, i);
			cfg__check_unresolved(ld, n->kids[i], kp, allow_pid);
			free(kp);
		}
		break;
	}
}
