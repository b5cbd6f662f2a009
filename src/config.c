/* config: YAML file → immutable, reference-counted snapshot. See include/modelmux/config.h.
 *
 * Stages: parse (libyaml events → node tree, ${env.X} applied to every scalar, anchors, depth
 * and duplicate keys rejected) → macros (global, per model, ${PORT}) on the tree → unresolved
 * ${...} check → tables of fields decode the tree into struct cfg. Errors are collected in
 * `struct ld` and never stop the walk.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <yaml.h>

#include "modelmux/config.h"
#include "modelmux/log.h"
#include "modelmux/util.h"

#define MACRO_NAME_MAX   63  /* names are shorter than 64 characters */
#define DEFAULT_GROUP    "(default)"

enum node_kind {
	NODE_SCALAR = 0,
	NODE_MAP,
	NODE_SEQ,
};

/* A YAML node. A map keeps its pairs flat: key, value, key, value… */
struct node {
	enum node_kind kind;
	int            line, col; /* 1-based; a map value carries its key's position */
	bool           quoted;    /* scalar is a string: quoted, !!str, or built by interpolation */
	char          *str;       /* scalar text */
	struct node  **kids;
	size_t         nkids, cap;
};

struct macro {
	const char *name;
	const char *value;
	bool        quoted;
};

struct mlist {
	struct macro *v;
	size_t        n;
};

/* An id or alias, for the global uniqueness check. */
struct name_ref {
	const char *name;
	int         line, col;
	size_t      model, idx, seq;
	bool        is_id;
};

/* Load state. */
struct ld {
	const char       *file;
	struct cfg_errs  *errs;
	struct cfg_errs   warns;
	size_t            nerr;
	size_t            budget;    /* bytes expansion may still produce */
	bool              budget_hit;
	struct cfg       *c;
	size_t            cur_model; /* index in c->models while decoding one */
	struct cfg_group *cur_group;
	struct name_ref  *names;
	size_t            nnames, cap_names;
};

typedef void field_fn(struct ld *, struct node *, const char *, void *);

enum field_kind {
	F_INT = 0,
	F_BOOL,
	F_STR,
	F_FN,
	F_LATER,   /* handled by the caller */
	F_UNSUP,   /* llama-swap key modelmux does not implement */
};

struct field {
	const char     *key;
	enum field_kind kind;
	size_t          off;
	long long       min, max;
	field_fn       *fn;
	bool            required;
};

#define FLD_INT(k, st, m, lo, hi) { k, F_INT, offsetof(st, m), lo, hi, NULL, false }
#define FLD_BOOL(k, st, m)        { k, F_BOOL, offsetof(st, m), 0, 0, NULL, false }
#define FLD_STR(k, st, m)         { k, F_STR, offsetof(st, m), 0, 0, NULL, false }
#define FLD_FN(k, f)              { k, F_FN, 0, 0, 0, f, false }
#define FLD_REQ(k, f)             { k, F_FN, 0, 0, 0, f, true }
#define FLD_LATER(k)              { k, F_LATER, 0, 0, 0, NULL, false }
#define FLD_UNSUP(k)              { k, F_UNSUP, 0, 0, 0, NULL, false }
#define FLD_END                   { NULL, F_LATER, 0, 0, 0, NULL, false }

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

static void
errs_push(struct cfg_errs *e, char *msg)
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

static void ld_msg(struct ld *, bool, int, int, const char *, const char *, va_list)
    __attribute__((format(printf, 6, 0)));

static void
ld_msg(struct ld *ld, bool warn, int line, int col, const char *path, const char *fmt,
    va_list ap)
{
	char *reason;

	if (!warn && ld->nerr++ >= CFG_MAX_ERRORS) {
		if (ld->nerr == CFG_MAX_ERRORS + 1)
			errs_push(ld->errs, xasprintf("%s: too many errors, the rest are not shown",
			    ld->file));
		return;
	}
	if (line < 1)
		line = col = 1;
	reason = xvformat(fmt, ap);
	errs_push(warn ? &ld->warns : ld->errs, xasprintf("%s:%d:%d: %s: %s", ld->file, line, col,
	    path == NULL || *path == '\0' ? "(root)" : path, reason));
	free(reason);
}

static void ld_err_at(struct ld *, int, int, const char *, const char *, ...)
    __attribute__((format(printf, 5, 6)));
static void ld_err(struct ld *, const struct node *, const char *, const char *, ...)
    __attribute__((format(printf, 4, 5)));
static void ld_warn(struct ld *, const struct node *, const char *, const char *, ...)
    __attribute__((format(printf, 4, 5)));

static void
ld_err_at(struct ld *ld, int line, int col, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_msg(ld, false, line, col, path, fmt, ap);
	va_end(ap);
}

static void
ld_err(struct ld *ld, const struct node *n, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_msg(ld, false, n ? n->line : 1, n ? n->col : 1, path, fmt, ap);
	va_end(ap);
}

static void
ld_warn(struct ld *ld, const struct node *n, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_msg(ld, true, n ? n->line : 1, n ? n->col : 1, path, fmt, ap);
	va_end(ap);
}

/* Takes `bytes` from the expansion budget; false (one error) once it is spent. */
static bool
ld_charge(struct ld *ld, const struct node *n, size_t bytes)
{
	if (bytes <= ld->budget) {
		ld->budget -= bytes;
		return true;
	}
	if (!ld->budget_hit)
		ld_err(ld, n, "(expansion)", "${...} expansion produces more than %u bytes",
		    CFG_MAX_EXPANSION_BYTES);
	ld->budget_hit = true;
	return false;
}

static char *
path_join(const char *path, const char *key)
{
	if (path == NULL || *path == '\0')
		return xstrdup(key);
	return xasprintf("%s.%s", path, key);
}

static char *
path_index(const char *path, size_t i)
{
	return xasprintf("%s[%zu]", path ? path : "", i);
}

/* ---- node tree --------------------------------------------------------------------------- */

static struct node *
node_new(enum node_kind kind, int line, int col)
{
	struct node *n = xcalloc(1, sizeof(*n));

	n->kind = kind;
	n->line = line;
	n->col = col;
	return n;
}

static void
node_free(struct node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->str);
	free(n);
}

static void
node_add(struct node *parent, struct node *kid)
{
	if (parent->nkids == parent->cap) {
		parent->cap = parent->cap ? parent->cap * 2 : 8;
		parent->kids = xreallocarray(parent->kids, parent->cap, sizeof(*parent->kids));
	}
	parent->kids[parent->nkids++] = kid;
}

static size_t
map_len(const struct node *m)
{
	return m->kind == NODE_MAP ? m->nkids / 2 : 0;
}

static struct node *
map_key(const struct node *m, size_t i)
{
	return m->kids[2 * i];
}

static struct node *
map_val(const struct node *m, size_t i)
{
	return m->kids[2 * i + 1];
}

static struct node *
map_get(const struct node *m, const char *key)
{
	if (m == NULL || m->kind != NODE_MAP)
		return NULL;
	for (size_t i = 0; i < map_len(m); i++)
		if (strcmp(map_key(m, i)->str, key) == 0)
			return map_val(m, i);
	return NULL;
}

/* A plain empty, "~" or "null" scalar. */
static bool
node_is_null(const struct node *n)
{
	if (n->kind != NODE_SCALAR || n->quoted)
		return false;
	return n->str[0] == '\0' || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
	    strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0;
}

/* ---- parsing ----------------------------------------------------------------------------- */

struct pstate {
	struct ld   *ld;
	struct node *root;
	struct node *stack[CFG_MAX_DEPTH];
	size_t       depth;
};

/* Dotted path of the last node attached under the innermost open container. */
static char *
ps_path(const struct pstate *ps)
{
	struct buf b = { 0 };
	char      *s;

	for (size_t i = 0; i < ps->depth; i++) {
		const struct node *p = ps->stack[i];
		size_t             idx;

		if (p->nkids == 0)
			break;
		idx = p->nkids - 1;
		if (p->kind == NODE_SEQ)
			buf_printf(&b, "[%zu]", idx);
		else
			buf_printf(&b, "%s%s", b.len ? "." : "",
			    p->kids[idx & ~(size_t)1]->kind == NODE_SCALAR ?
			    p->kids[idx & ~(size_t)1]->str : "?");
	}
	s = xstrdup(b.data ? b.data : "");
	buf_free(&b);
	return s;
}

static void ps_err(struct pstate *, const struct node *, const char *, ...)
    __attribute__((format(printf, 3, 4)));

static void
ps_err(struct pstate *ps, const struct node *n, const char *fmt, ...)
{
	va_list ap;
	char   *path = ps_path(ps);

	va_start(ap, fmt);
	ld_msg(ps->ld, false, n->line, n->col, path, fmt, ap);
	va_end(ap);
	free(path);
}

static bool
env_name_ok(const char *s, size_t len)
{
	if (len == 0 || isdigit((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

/* Replaces ${env.NAME} in a scalar. */
static void
env_subst(struct pstate *ps, struct node *n)
{
	struct buf  out = { 0 };
	const char *p = n->str, *q, *end, *val;
	char       *name;

	if (strstr(p, "${env.") == NULL)
		return;
	while ((q = strstr(p, "${env.")) != NULL) {
		buf_printf(&out, "%.*s", (int)(q - p), p);
		end = strchr(q + 6, '}');
		if (end == NULL || !env_name_ok(q + 6, (size_t)(end - q - 6))) {
			buf_printf(&out, "${env.");
			p = q + 6;
			continue;
		}
		name = xstrndup(q + 6, (size_t)(end - q - 6));
		val = getenv(name);
		if (val == NULL)
			ps_err(ps, n, "environment variable %s is not set", name);
		else if (strchr(val, '\n') != NULL)
			ps_err(ps, n, "environment variable %s contains a newline", name);
		else if (ld_charge(ps->ld, n, strlen(val)))
			buf_printf(&out, "%s", val);
		free(name);
		p = end + 1;
	}
	buf_printf(&out, "%s", p);
	free(n->str);
	n->str = out.data;
}

static void
ps_attach(struct pstate *ps, struct node *n)
{
	struct node *parent;

	if (ps->depth == 0) {
		if (ps->root == NULL)
			ps->root = n;
		else
			node_free(n);
		return;
	}
	parent = ps->stack[ps->depth - 1];
	if (parent->kind == NODE_MAP && parent->nkids % 2 == 1) {
		n->line = parent->kids[parent->nkids - 1]->line;
		n->col = parent->kids[parent->nkids - 1]->col;
	}
	node_add(parent, n);
}

struct keyref {
	const char *key;
	size_t      pair;
};

static int
keyref_cmp(const void *a, const void *b)
{
	const struct keyref *x = a, *y = b;
	int                  r = strcmp(x->key, y->key);

	if (r != 0)
		return r;
	return x->pair < y->pair ? -1 : x->pair > y->pair;
}

/* At the end of a map: drops pairs whose key is not a scalar or repeats an earlier key. */
static void
map_finish(struct pstate *ps, struct node *m)
{
	struct keyref *refs;
	bool          *drop;
	size_t         n = m->nkids / 2, nref = 0, out = 0;
	char          *path = NULL;

	if (n == 0)
		return;
	refs = xcalloc(n, sizeof(*refs));
	drop = xcalloc(n, sizeof(*drop));
	for (size_t i = 0; i < n; i++) {
		if (map_key(m, i)->kind != NODE_SCALAR) {
			if (path == NULL)
				path = ps_path(ps);
			ld_err(ps->ld, map_key(m, i), path, "map keys must be scalars");
			drop[i] = true;
			continue;
		}
		refs[nref].key = map_key(m, i)->str;
		refs[nref++].pair = i;
	}
	qsort(refs, nref, sizeof(*refs), keyref_cmp);
	for (size_t i = 1; i < nref; i++) {
		char *kp;

		if (strcmp(refs[i].key, refs[i - 1].key) != 0)
			continue;
		if (path == NULL)
			path = ps_path(ps);
		kp = path_join(path, refs[i].key);
		ld_err(ps->ld, map_key(m, refs[i].pair), kp, "duplicate key");
		free(kp);
		drop[refs[i].pair] = true;
	}
	for (size_t i = 0; i < n; i++) {
		if (drop[i]) {
			node_free(m->kids[2 * i]);
			node_free(m->kids[2 * i + 1]);
			continue;
		}
		m->kids[2 * out] = m->kids[2 * i];
		m->kids[2 * out + 1] = m->kids[2 * i + 1];
		out++;
	}
	m->nkids = 2 * out;
	free(refs);
	free(drop);
	free(path);
}

static struct node *
scalar_from_event(struct pstate *ps, const yaml_event_t *ev, int line, int col)
{
	struct node *n = node_new(NODE_SCALAR, line, col);
	const char  *tag = (const char *)ev->data.scalar.tag;
	size_t       len = ev->data.scalar.length;

	n->str = xstrndup((const char *)ev->data.scalar.value, len);
	n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
	    (tag != NULL && strcmp(tag, YAML_STR_TAG) == 0);
	ps_attach(ps, n);
	if (memchr(ev->data.scalar.value, '\0', len) != NULL)
		ps_err(ps, n, "value contains a NUL byte");
	env_subst(ps, n);
	return n;
}

/* Handles one event; -1 stops the parse. */
static int
parse_event(struct pstate *ps, const yaml_event_t *ev, int *ndocs)
{
	int          line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
	struct node *n;

	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (++*ndocs > 1) {
			ld_err_at(ps->ld, line, col, "(root)", "only one YAML document is allowed");
			return -1;
		}
		break;
	case YAML_ALIAS_EVENT:
		n = node_new(NODE_SCALAR, line, col);
		n->str = xstrdup("");
		ps_attach(ps, n);
		ps_err(ps, n, "anchors and aliases are not supported");
		break;
	case YAML_SCALAR_EVENT:
		n = scalar_from_event(ps, ev, line, col);
		if (ev->data.scalar.anchor != NULL)
			ps_err(ps, n, "anchors and aliases are not supported");
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		n = node_new(ev->type == YAML_SEQUENCE_START_EVENT ? NODE_SEQ : NODE_MAP, line, col);
		ps_attach(ps, n);
		if ((ev->type == YAML_SEQUENCE_START_EVENT ? ev->data.sequence_start.anchor :
		    ev->data.mapping_start.anchor) != NULL)
			ps_err(ps, n, "anchors and aliases are not supported");
		if (ps->depth == CFG_MAX_DEPTH) {
			ps_err(ps, n, "nesting deeper than %d levels", CFG_MAX_DEPTH);
			return -1;
		}
		ps->stack[ps->depth++] = n;
		break;
	case YAML_SEQUENCE_END_EVENT:
		if (ps->depth == 0)
			return -1; /* libyaml pairs events; never here */
		ps->depth--;
		break;
	case YAML_MAPPING_END_EVENT:
		if (ps->depth == 0 || (n = ps->stack[--ps->depth]) == NULL)
			return -1;
		map_finish(ps, n);
		break;
	default:
		break;
	}
	return 0;
}

/* Parses text into a tree; NULL (errors recorded) on a syntax error or an empty document. */
static struct node *
parse_yaml(struct ld *ld, const char *text, size_t len, bool *failed)
{
	yaml_parser_t parser;
	yaml_event_t  ev;
	struct pstate ps = { .ld = ld };
	int           ndocs = 0;
	bool          done = false;

	*failed = false;
	if (!yaml_parser_initialize(&parser))
		fatal("config: cannot initialise the YAML parser");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			ld_err_at(ld, (int)parser.problem_mark.line + 1,
			    (int)parser.problem_mark.column + 1, "syntax error", "%s%s%s",
			    parser.problem ? parser.problem : "invalid YAML",
			    parser.context ? " " : "", parser.context ? parser.context : "");
			*failed = true;
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		if (parse_event(&ps, &ev, &ndocs) == -1) {
			*failed = true;
			done = true;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	if (*failed) {
		node_free(ps.root);
		return NULL;
	}
	return ps.root;
}

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

static void
macros_parse(struct ld *ld, const struct node *m, const char *path, struct mlist *out)
{
	if (m == NULL || node_is_null(m))
		return;
	if (m->kind != NODE_MAP) {
		ld_err(ld, m, path, "expected a map of name: value");
		return;
	}
	out->v = xcalloc(map_len(m), sizeof(*out->v));
	for (size_t i = 0; i < map_len(m); i++) {
		const struct node *k = map_key(m, i), *v = map_val(m, i);
		char              *kp = path_join(path, k->str);

		if (!macro_name_ok(k->str)) {
			ld_err(ld, k, kp, "invalid macro name (want [a-zA-Z0-9_-], under 64 characters)");
		} else if (strcmp(k->str, "PID") == 0 || strcmp(k->str, "PORT") == 0 ||
		    strcmp(k->str, "MODEL_ID") == 0) {
			ld_err(ld, k, kp, "macro name is reserved");
		} else if (v->kind != NODE_SCALAR) {
			ld_err(ld, v, kp, "macro values must be scalars");
		} else if (macro_refers_to(v->str, k->str)) {
			ld_err(ld, v, kp, "macro refers to itself");
		} else if (out->n == CFG_MAX_MACROS) {
			ld_err(ld, k, kp, "more than %d macros", CFG_MAX_MACROS);
		} else {
			out->v[out->n].name = k->str;
			out->v[out->n].value = v->str;
			out->v[out->n++].quoted = v->quoted;
		}
		free(kp);
	}
}

/* MODEL_ID, then the globals, then the model's own overriding by name. */
static void
mlist_merge(struct mlist *out, const char *id, const struct mlist *g, const struct mlist *own)
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
	if (rlen > plen && !ld_charge(ld, n, count * (rlen - plen)))
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
static void
subst_scalar(struct ld *ld, struct node *n, const struct mlist *ml)
{
	char ref[MACRO_NAME_MAX + 4];

	for (size_t i = ml->n; i-- > 0;) {
		snprintf(ref, sizeof(ref), "${%s}", ml->v[i].name);
		if (strstr(n->str, ref) == NULL)
			continue;
		if (strcmp(n->str, ref) == 0) {
			if (!ld_charge(ld, n, strlen(ml->v[i].value)))
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
static void
subst_values(struct ld *ld, struct node *n, const struct mlist *ml)
{
	if (ml->n == 0)
		return;
	switch (n->kind) {
	case NODE_SCALAR:
		subst_scalar(ld, n, ml);
		break;
	case NODE_MAP:
		for (size_t i = 0; i < map_len(n); i++)
			subst_values(ld, map_val(n, i), ml);
		break;
	case NODE_SEQ:
		for (size_t i = 0; i < n->nkids; i++)
			subst_values(ld, n->kids[i], ml);
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
		ld_err(ld, n, path, "unresolved macro %.*s%s", (int)MM_MIN(len, 72), p,
		    len <= 72 && p[len] == '}' ? "}" : "...");
		return;
	}
}

/* Reports any ${...} left in a value or in a key below it. */
static void
check_unresolved(struct ld *ld, const struct node *n, const char *path, bool allow_pid)
{
	char *kp;

	switch (n->kind) {
	case NODE_SCALAR:
		check_scalar(ld, n, path, allow_pid);
		break;
	case NODE_MAP:
		for (size_t i = 0; i < map_len(n); i++) {
			kp = path_join(path, map_key(n, i)->str);
			check_scalar(ld, map_key(n, i), kp, false);
			check_unresolved(ld, map_val(n, i), kp, allow_pid);
			free(kp);
		}
		break;
	case NODE_SEQ:
		for (size_t i = 0; i < n->nkids; i++) {
			kp = path_index(path, i);
			check_unresolved(ld, n->kids[i], kp, allow_pid);
			free(kp);
		}
		break;
	}
}

/* ---- command lines ----------------------------------------------------------------------- */

static bool
is_trim_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Drops lines whose trimmed text starts with '#'; with `join`, a trailing '\' becomes a space. */
static char *
prep_lines(const char *s, bool join)
{
	struct buf  out = { 0 };
	const char *line = s, *nl, *b, *e;
	bool        first = true;

	for (;;) {
		nl = strchr(line, '\n');
		e = nl ? nl : line + strlen(line);
		for (b = line; b < e && is_trim_space(*b); b++)
			;
		while (e > b && is_trim_space(e[-1]))
			e--;
		if (b == e || *b != '#') {
			if (!first)
				buf_printf(&out, "\n");
			first = false;
			if (join && e > b && e[-1] == '\\')
				buf_printf(&out, "%.*s ", (int)(e - b - 1), b);
			else
				buf_printf(&out, "%.*s", (int)((nl ? nl : line + strlen(line)) - line),
				    line);
		}
		if (nl == NULL)
			break;
		line = nl + 1;
	}
	return out.data ? out.data : xstrdup("");
}

struct words {
	char     **v;
	size_t     n, cap;
	struct buf w;
	bool       inword;
};

static void
word_putc(struct words *ws, char c)
{
	if (buf_append(&ws->w, &c, 1, SIZE_MAX / 2) == -1)
		fatal("config: out of memory");
	ws->inword = true;
}

static int
word_end(struct words *ws)
{
	if (!ws->inword)
		return 0;
	if (ws->n == CFG_MAX_ARGV)
		return -1;
	if (ws->n + 1 >= ws->cap) {
		ws->cap = ws->cap ? ws->cap * 2 : 8;
		ws->v = xreallocarray(ws->v, ws->cap, sizeof(*ws->v));
	}
	ws->v[ws->n++] = ws->w.data ? ws->w.data : xstrdup("");
	ws->v[ws->n] = NULL;
	ws->w = (struct buf){ 0 };
	ws->inword = false;
	return 0;
}

char **
cfg_split_command(const char *cmd, const char **err)
{
	struct words ws = { 0 };
	char        *s = prep_lines(cmd, true), **res = NULL;
	const char  *p;
	char         quote = 0;

	*err = NULL;
	for (p = s; *p != '\0'; p++) {
		if (quote == '\'') {
			if (*p == '\'')
				quote = 0;
			else
				word_putc(&ws, *p);
		} else if (quote == '"') {
			if (*p == '"')
				quote = 0;
			else if (*p == '\\' && p[1] != '\0' && strchr("$`\"\\", p[1]) != NULL)
				word_putc(&ws, *++p);
			else
				word_putc(&ws, *p);
		} else if (*p == ' ' || *p == '\t' || *p == '\n') {
			if (word_end(&ws) == -1) {
				*err = "too many words";
				goto out;
			}
		} else if (*p == '\'' || *p == '"') {
			quote = *p;
			ws.inword = true;
		} else if (*p == '\\' && p[1] != '\0') {
			word_putc(&ws, *++p);
		} else {
			word_putc(&ws, *p);
		}
	}
	if (quote != 0) {
		*err = "unterminated quote";
		goto out;
	}
	if (word_end(&ws) == -1) {
		*err = "too many words";
		goto out;
	}
	if (ws.n == 0) {
		*err = "empty command";
		goto out;
	}
	res = ws.v;
	ws.v = NULL;
out:
	strv_free(ws.v);
	buf_free(&ws.w);
	free(s);
	return res;
}

/* ---- typed values ------------------------------------------------------------------------ */

static bool
is_int_text(const char *s)
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
static bool
is_float_text(const char *s)
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

static struct cJSON *
node_json(const struct node *n)
{
	struct cJSON *j;
	char         *kp;

	switch (n->kind) {
	case NODE_MAP:
		j = cJSON_CreateObject();
		for (size_t i = 0; i < map_len(n); i++)
			cJSON_AddItemToObject(j, map_key(n, i)->str, node_json(map_val(n, i)));
		return j;
	case NODE_SEQ:
		j = cJSON_CreateArray();
		for (size_t i = 0; i < n->nkids; i++)
			cJSON_AddItemToArray(j, node_json(n->kids[i]));
		return j;
	case NODE_SCALAR:
		break;
	}
	if (n->quoted)
		return cJSON_CreateString(n->str);
	if (node_is_null(n))
		return cJSON_CreateNull();
	if (strcmp(n->str, "true") == 0 || strcmp(n->str, "True") == 0 ||
	    strcmp(n->str, "TRUE") == 0)
		return cJSON_CreateTrue();
	if (strcmp(n->str, "false") == 0 || strcmp(n->str, "False") == 0 ||
	    strcmp(n->str, "FALSE") == 0)
		return cJSON_CreateFalse();
	if (is_int_text(n->str) || is_float_text(n->str))
		return cJSON_CreateNumber(strtod(n->str, &kp));
	return cJSON_CreateString(n->str);
}

static int
get_int(struct ld *ld, const struct node *n, const char *path, long long min, long long max,
    int *out)
{
	long long v;

	if (n->kind != NODE_SCALAR || n->quoted || !is_int_text(n->str)) {
		ld_err(ld, n, path, "expected an integer");
		return -1;
	}
	if (parse_int(n->str, min, max, &v) == -1) {
		if (max >= INT_MAX)
			ld_err(ld, n, path, "must be >= %lld", min);
		else
			ld_err(ld, n, path, "must be between %lld and %lld", min, max);
		return -1;
	}
	*out = (int)v;
	return 0;
}

static int
get_bool(struct ld *ld, const struct node *n, const char *path, bool *out)
{
	if (n->kind != NODE_SCALAR || parse_bool_text(n->str, out) == -1) {
		ld_err(ld, n, path, "expected a boolean (true or false)");
		return -1;
	}
	return 0;
}

/* A scalar as a string; a null scalar gives NULL. */
static int
get_str(struct ld *ld, const struct node *n, const char *path, char **out)
{
	if (n->kind != NODE_SCALAR) {
		ld_err(ld, n, path, "expected a string");
		return -1;
	}
	free(*out);
	*out = node_is_null(n) ? NULL : xstrdup(n->str);
	return 0;
}

/* A sequence of scalars; fn validates each (NULL accepts all). Returns the vector. */
static char **
get_strv(struct ld *ld, const struct node *n, const char *path,
    const char *(*check)(const char *))
{
	char      **v;
	size_t      k = 0;
	const char *why;

	if (node_is_null(n))
		return xcalloc(1, sizeof(char *));
	if (n->kind != NODE_SEQ) {
		ld_err(ld, n, path, "expected a list");
		return xcalloc(1, sizeof(char *));
	}
	v = xcalloc(n->nkids + 1, sizeof(*v));
	for (size_t i = 0; i < n->nkids; i++) {
		const struct node *it = n->kids[i];
		char              *ip;

		why = it->kind != NODE_SCALAR ? "expected a string" :
		    check != NULL ? check(it->str) : NULL;
		if (why != NULL) {
			ip = path_index(path, i);
			ld_err(ld, it, ip, "%s", why);
			free(ip);
			continue;
		}
		v[k++] = xstrdup(it->str);
	}
	return v;
}

/* Walks a map through a field table; `obj` is the struct the offsets point into. */
static void
decode_fields(struct ld *ld, struct node *m, const char *path, const struct field *tab, void *obj)
{
	char *kp;

	if (node_is_null(m))
		goto required;
	if (m->kind != NODE_MAP) {
		ld_err(ld, m, path, "expected a map");
		return;
	}
	for (size_t i = 0; i < map_len(m); i++) {
		const struct node  *k = map_key(m, i);
		struct node        *v = map_val(m, i);
		const struct field *f;

		for (f = tab; f->key != NULL; f++)
			if (strcmp(f->key, k->str) == 0)
				break;
		kp = path_join(path, k->str);
		if (f->key == NULL)
			ld_err(ld, k, kp, "unknown key");
		else if (f->kind == F_UNSUP)
			ld_warn(ld, k, kp, "not supported by modelmux, ignored");
		else if (f->kind == F_INT)
			get_int(ld, v, kp, f->min, f->max, (int *)(void *)((char *)obj + f->off));
		else if (f->kind == F_BOOL)
			get_bool(ld, v, kp, (bool *)(void *)((char *)obj + f->off));
		else if (f->kind == F_STR)
			get_str(ld, v, kp, (char **)(void *)((char *)obj + f->off));
		else if (f->kind == F_FN)
			f->fn(ld, v, kp, obj);
		free(kp);
	}
required:
	for (const struct field *f = tab; f->key != NULL; f++) {
		if (f->required && (m->kind != NODE_MAP || map_get(m, f->key) == NULL)) {
			kp = path_join(path, f->key);
			ld_err(ld, m, kp, "missing required key");
			free(kp);
		}
	}
}

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
		ld_err(ld, v, path, "expected a string");
		return;
	}
	if (stop && node_is_null(v))
		return;
	argv = cfg_split_command(v->str, &why);
	if (argv == NULL) {
		ld_err(ld, v, path, "%s", why);
		return;
	}
	if (stop)
		m->stop_argv = argv;
	else
		m->argv = argv;
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

	if (get_str(ld, v, path, &s) == -1)
		return;
	if (s == NULL || (!str_has_prefix_ci(s, "http://") && !str_has_prefix_ci(s, "https://"))) {
		ld_err(ld, v, path, "expected an http:// or https:// URL");
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
	m->aliases = get_strv(ld, v, path, check_id);
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
		*r = (struct name_ref){ m->aliases[k], v->kids[i]->line, v->kids[i]->col,
		    ld->cur_model, i, ld->nnames, false };
		ld->nnames++;
		k++;
	}
}

static const char *
check_env(const char *s)
{
	const char *eq = strchr(s, '=');

	if (eq == NULL || !env_name_ok(s, (size_t)(eq - s)))
		return "expected NAME=VALUE with a valid variable name";
	return NULL;
}

static void
model_env(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_model *m = obj;

	strv_free(m->env);
	m->env = get_strv(ld, v, path, check_env);
}

static void
model_check(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_model *m = obj;
	char             *s = NULL;

	if (get_str(ld, v, path, &s) == -1)
		return;
	free(m->check_endpoint);
	m->check_endpoint = NULL;
	if (s != NULL && strcmp(s, "none") == 0) {
		free(s);
		return;
	}
	if (s == NULL || s[0] != '/') {
		ld_err(ld, v, path, "must be \"none\" or a path starting with '/'");
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
	m->metadata = node_is_null(v) ? NULL : node_json(v);
}

static void
model_loading(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_model *m = obj;
	bool              b;

	if (get_bool(ld, v, path, &b) == 0)
		m->send_loading_state = b;
}

static void
filters_strip(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_model *m = obj;
	char             *s = NULL, *tok, *save = NULL;
	size_t            n = strv_len(m->strip_params);

	if (get_str(ld, v, path, &s) == -1 || s == NULL)
		return;
	for (tok = strtok_r(s, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char *e;

		while (is_trim_space(*tok))
			tok++;
		for (e = tok + strlen(tok); e > tok && is_trim_space(e[-1]); e--)
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

	if (node_is_null(v))
		return;
	if (v->kind != NODE_MAP) {
		ld_err(ld, v, path, "expected a map");
		return;
	}
	cJSON_Delete(m->set_params);
	m->set_params = node_json(v);
}

static const struct field filters_fields[] = {
	FLD_FN("stripParams", filters_strip),
	FLD_FN("strip_params", filters_strip),
	FLD_FN("setParams", filters_set),
	FLD_UNSUP("setParamsByID"),
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

static void
model_filters(struct ld *ld, struct node *v, const char *path, void *obj)
{
	decode_fields(ld, v, path, filters_fields, obj);
}

static void
model_timeouts(struct ld *ld, struct node *v, const char *path, void *obj)
{
	decode_fields(ld, v, path, timeouts_fields, obj);
}

static void
model_compat(struct ld *ld, struct node *v, const char *path, void *obj)
{
	decode_fields(ld, v, path, compat_fields, obj);
}

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
	FLD_STR("name", struct cfg_model, name),
	FLD_STR("description", struct cfg_model, description),
	FLD_LATER("macros"),
	FLD_FN("metadata", model_metadata),
	FLD_FN("sendLoadingState", model_loading),
	FLD_FN("filters", model_filters),
	FLD_FN("timeouts", model_timeouts),
	FLD_FN("compat", model_compat),
	FLD_UNSUP("capabilities"),
	FLD_END,
};

/* ---- models ------------------------------------------------------------------------------ */

static void
model_defaults(struct cfg_model *m, const struct node *key)
{
	m->id = xstrdup(key->str);
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
	m->timeouts.idle_conn_s = 90;
}

/* Applies macros, then ${PORT}, to every value of the model but `macros`. */
static void
model_subst(struct ld *ld, struct node *v, const struct mlist *ml)
{
	for (size_t i = 0; i < map_len(v); i++)
		if (strcmp(map_key(v, i)->str, "macros") != 0)
			subst_values(ld, map_val(v, i), ml);
}

/* Allocates ${PORT} when the command uses it and resolves the default proxy. */
static void
model_port(struct ld *ld, struct node *v, const char *path, struct cfg_model *m, int *next_port,
    bool *proxy_bad)
{
	struct node *cmd = map_get(v, "cmd"), *proxy = map_get(v, "proxy");
	char         port[16], *pp;
	struct macro pm = { "PORT", port, false };
	struct mlist ml = { &pm, 1 };

	*proxy_bad = false;
	if (cmd != NULL && cmd->kind == NODE_SCALAR && strstr(cmd->str, "${PORT}") != NULL) {
		if (*next_port > 65535) {
			pp = path_join(path, "cmd");
			ld_err(ld, cmd, pp, "no port left for ${PORT} (startPort too high)");
			free(pp);
			*next_port = 1;
		}
		m->port = (*next_port)++;
		snprintf(port, sizeof(port), "%d", m->port);
		model_subst(ld, v, &ml);
		if (proxy == NULL) {
			struct node tmp = { .kind = NODE_SCALAR, .str = xstrdup(CFG_DEF_PROXY) };

			subst_scalar(ld, &tmp, &ml);
			m->proxy = tmp.str;
		}
		return;
	}
	pp = path_join(path, "proxy");
	if (proxy == NULL) {
		if (cmd != NULL)
			ld_err(ld, v, pp, "missing required key (cmd does not use ${PORT})");
	} else if (proxy->kind == NODE_SCALAR && strstr(proxy->str, "${PORT}") != NULL) {
		ld_err(ld, proxy, pp, "uses ${PORT} but cmd does not");
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
	char             *path = path_join("models", key->str), *mp, *kp;
	const char       *why;
	bool              proxy_bad;

	model_defaults(m, key);
	if ((why = check_id(key->str)) != NULL)
		ld_err(ld, key, path, "invalid model id: %s", why);
	if (v->kind != NODE_MAP) {
		ld_err(ld, v, path, "expected a map");
		goto out;
	}
	mp = path_join(path, "macros");
	macros_parse(ld, map_get(v, "macros"), mp, &own);
	free(mp);
	mlist_merge(&merged, key->str, globals, &own);
	for (size_t i = 0; i < map_len(v); i++) {
		struct node *val = map_val(v, i);
		const char  *k = map_key(v, i)->str;

		if ((strcmp(k, "cmd") == 0 || strcmp(k, "cmdStop") == 0) &&
		    val->kind == NODE_SCALAR) {
			char *s = prep_lines(val->str, false);

			free(val->str);
			val->str = s;
		}
	}
	model_subst(ld, v, &merged);
	model_port(ld, v, path, m, next_port, &proxy_bad);
	for (size_t i = 0; i < map_len(v); i++) {
		const char *k = map_key(v, i)->str;

		if (strcmp(k, "macros") == 0 || (proxy_bad && strcmp(k, "proxy") == 0))
			continue;
		kp = path_join(path, k);
		check_unresolved(ld, map_val(v, i), kp, strcmp(k, "cmdStop") == 0);
		free(kp);
	}
	decode_fields(ld, v, path, model_fields, m);
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
		ld->names[ld->nnames] = (struct name_ref){ c->models[i].id, c->models[i].line,
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
			ld_err_at(ld, r->line, r->col, path, "alias \"%s\" is the id of model %s",
			    r->name, c->models[first->model].id);
		else
			ld_err_at(ld, r->line, r->col, path, "alias \"%s\" is already used by model %s",
			    r->name, c->models[first->model].id);
		free(path);
	}
}

static void
models_load(struct ld *ld, struct node *root, const struct mlist *globals)
{
	struct node       *mm = map_get(root, "models");
	struct node      **pairs;
	size_t             n;
	int                next_port = ld->c->start_port;

	if (mm == NULL) {
		ld_err(ld, root, "models", "missing required key");
		return;
	}
	if (mm->kind != NODE_MAP || map_len(mm) == 0) {
		ld_err(ld, mm, "models", "expected a map of at least one model");
		return;
	}
	n = map_len(mm);
	if (n > CFG_MAX_MODELS) {
		ld_err(ld, mm, "models", "more than %d models", CFG_MAX_MODELS);
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

static void
group_members(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_group *g = obj;
	char            **ids = get_strv(ld, v, path, NULL);
	size_t            n = 0, k = 0;

	g->members = xreallocarray(g->members, strv_len(ids) + 1, sizeof(char *));
	for (size_t i = 0; ids[i] != NULL; i++, k++) {
		struct cfg_model *m;
		char             *ip;

		while (v->kids[k]->kind != NODE_SCALAR)
			k++;
		ip = path_index(path, k);
		m = model_by_id(ld->c, ids[i]);
		if (m == NULL)
			ld_err(ld, v->kids[k], ip, "unknown model \"%s\"", ids[i]);
		else if (m->group != NULL)
			ld_err(ld, v->kids[k], ip, "model \"%s\" is already in group \"%s\"", ids[i],
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

static void
groups_load(struct ld *ld, struct node *root)
{
	struct cfg  *c = ld->c;
	struct node *gm = map_get(root, "groups");
	size_t       n = 0, nfree = 0, k = 0;
	char        *gp;

	if (gm != NULL && !node_is_null(gm) && gm->kind != NODE_MAP)
		ld_err(ld, gm, "groups", "expected a map");
	else if (gm != NULL)
		n = map_len(gm);
	c->groups = xcalloc(n + 1, sizeof(*c->groups));
	for (size_t i = 0; i < n; i++) {
		struct cfg_group *g = &c->groups[c->ngroups++];
		const struct node *key = map_key(gm, i);

		g->name = xstrdup(key->str);
		g->swap = g->exclusive = true;
		g->members = xcalloc(1, sizeof(char *));
		gp = path_join("groups", key->str);
		if (strcmp(key->str, DEFAULT_GROUP) == 0 || key->str[0] == '\0')
			ld_err(ld, key, gp, "invalid group name");
		decode_fields(ld, map_val(gm, i), gp, group_fields, g);
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
	char      **names = get_strv(ld, v, path, NULL);
	size_t      n = 0, k = 0;

	strv_free(c->preload);
	c->preload = xcalloc(strv_len(names) + 1, sizeof(char *));
	for (size_t i = 0; names[i] != NULL; i++, k++) {
		const struct cfg_model *m = cfg_find_model(c, names[i]);
		char                   *ip;

		while (v->kids[k]->kind != NODE_SCALAR)
			k++;
		if (m == NULL) {
			ip = path_index(path, k);
			ld_err(ld, v->kids[k], ip, "unknown model \"%s\"", names[i]);
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

static void
hooks_startup(struct ld *ld, struct node *v, const char *path, void *obj)
{
	decode_fields(ld, v, path, startup_fields, obj);
}

static const struct field hooks_fields[] = {
	FLD_FN("on_startup", hooks_startup),
	FLD_END,
};

/* ---- top level --------------------------------------------------------------------------- */

static void
top_log_level(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg    *c = obj;
	enum log_level lvl;

	if (get_str(ld, v, path, &c->log_level) == -1 || c->log_level == NULL)
		return;
	if (log_parse_level(c->log_level, &lvl) == -1)
		ld_err(ld, v, path, "unknown level \"%s\" (debug, info, warn or error)",
		    c->log_level);
}

static const char *
check_api_key(const char *s)
{
	if (*s == '\0')
		return "must not be empty";
	for (; *s != '\0'; s++)
		if (isspace((unsigned char)*s))
			return "must not contain spaces";
	return NULL;
}

static void
top_api_keys(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;

	strv_free(c->api_keys);
	c->api_keys = get_strv(ld, v, path, check_api_key);
}

static void
top_listen(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;
	char       *s = NULL;

	if (get_str(ld, v, path, &s) == -1)
		return;
	if (s == NULL || strchr(s, ':') == NULL) {
		ld_err(ld, v, path, "expected host:port");
		free(s);
		return;
	}
	free(c->listen);
	c->listen = s;
}

static const struct field queue_fields[] = {
	FLD_INT("maxPerModel", struct cfg, queue.per_model, 0, 1000000),
	FLD_INT("maxTotal", struct cfg, queue.total, 0, 1000000),
	FLD_INT("maxWaitSeconds", struct cfg, queue.max_wait_s, 1, 86400),
	FLD_INT("swapBatch", struct cfg, queue.swap_batch, 0, 100000),
	FLD_END,
};

static void
top_queue(struct ld *ld, struct node *v, const char *path, void *obj)
{
	decode_fields(ld, v, path, queue_fields, obj);
}

static const struct field crash_fields[] = {
	FLD_INT("maxCrashes", struct cfg, crash.max_crashes, 0, 1000),
	FLD_INT("windowSeconds", struct cfg, crash.window_s, 1, 86400),
	FLD_INT("holdSeconds", struct cfg, crash.hold_s, 1, 86400),
	FLD_END,
};

static void
top_crash(struct ld *ld, struct node *v, const char *path, void *obj)
{
	decode_fields(ld, v, path, crash_fields, obj);
}

static const struct field top_fields[] = {
	FLD_FN("queue", top_queue),
	FLD_FN("crashBackoff", top_crash),
	FLD_INT("loadStallTimeout", struct cfg, load_stall_timeout_s, 0, INT_MAX),
	FLD_LATER("models"),
	FLD_LATER("groups"),
	FLD_LATER("hooks"),
	FLD_LATER("macros"),
	FLD_INT("healthCheckTimeout", struct cfg, health_check_timeout_s, 1, INT_MAX),
	FLD_FN("logLevel", top_log_level),
	FLD_INT("startPort", struct cfg, start_port, 1, 65535),
	FLD_INT("globalTTL", struct cfg, global_ttl_s, 0, INT_MAX),
	FLD_INT("unloadTimeout", struct cfg, unload_timeout_s, 0, INT_MAX),
	FLD_BOOL("sendLoadingState", struct cfg, send_loading_state),
	FLD_BOOL("includeAliasesInList", struct cfg, include_aliases_in_list),
	FLD_FN("apiKeys", top_api_keys),
	FLD_FN("listen", top_listen),
	FLD_UNSUP("logTimeFormat"),
	FLD_UNSUP("logToStdout"),
	FLD_UNSUP("logRequests"),
	FLD_UNSUP("metricsMaxInMemory"),
	FLD_UNSUP("captureBuffer"),
	FLD_UNSUP("store"),
	FLD_UNSUP("ui"),
	FLD_UNSUP("performance"),
	FLD_UNSUP("upstream"),
	FLD_UNSUP("profiles"),
	FLD_UNSUP("selectors"),
	FLD_UNSUP("routing"),
	FLD_UNSUP("matrix"),
	FLD_UNSUP("peers"),
	FLD_END,
};

static void
model_free(struct cfg_model *m)
{
	free(m->id);
	strv_free(m->argv);
	strv_free(m->stop_argv);
	free(m->proxy);
	strv_free(m->aliases);
	strv_free(m->env);
	free(m->check_endpoint);
	free(m->name);
	free(m->description);
	free(m->use_model_name);
	strv_free(m->strip_params);
	cJSON_Delete(m->set_params);
	cJSON_Delete(m->metadata);
}

static void
cfg_free(struct cfg *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->listen);
	free(c->log_level);
	strv_free(c->api_keys);
	strv_free(c->preload);
	for (size_t i = 0; i < c->nmodels; i++)
		model_free(&c->models[i]);
	free(c->models);
	for (size_t i = 0; i < c->ngroups; i++) {
		free(c->groups[i].name);
		strv_free(c->groups[i].members);
	}
	free(c->groups);
	cfg_errs_free(&c->warnings);
	free(c);
}

static struct cfg *
cfg_new(const char *name)
{
	struct cfg *c = xcalloc(1, sizeof(*c));

	c->refs = 1;
	c->path = xstrdup(name);
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
	c->api_keys = xcalloc(1, sizeof(char *));
	c->preload = xcalloc(1, sizeof(char *));
	return c;
}

/* Decodes a parsed tree into ld->c. */
static void
load_tree(struct ld *ld, struct node *root)
{
	struct mlist globals = { 0 };
	struct node *hooks;

	if (root == NULL || node_is_null(root)) {
		ld_err_at(ld, 1, 1, "models", "missing required key");
		return;
	}
	if (root->kind != NODE_MAP) {
		ld_err(ld, root, "(root)", "expected a map");
		return;
	}
	macros_parse(ld, map_get(root, "macros"), "macros", &globals);
	for (size_t i = 0; i < map_len(root); i++) {
		const char *k = map_key(root, i)->str;

		if (strcmp(k, "models") == 0 || strcmp(k, "macros") == 0)
			continue;
		subst_values(ld, map_val(root, i), &globals);
		check_unresolved(ld, map_val(root, i), k, false);
	}
	decode_fields(ld, root, "", top_fields, ld->c);
	if (ld->c->unload_timeout_s == 0)
		ld->c->unload_timeout_s = CFG_DEF_UNLOAD_TIMEOUT_S;
	models_load(ld, root, &globals);
	groups_load(ld, root);
	if ((hooks = map_get(root, "hooks")) != NULL)
		decode_fields(ld, hooks, "hooks", hooks_fields, ld->c);
	free(globals.v);
}

struct cfg *
cfg_load_buf(const char *name, const char *text, size_t len, struct cfg_errs *errs)
{
	struct ld    ld = { .file = name, .errs = errs, .budget = CFG_MAX_EXPANSION_BYTES };
	struct node *root = NULL;
	struct cfg  *c = NULL;
	bool         failed;

	if (len > CFG_MAX_FILE_BYTES) {
		ld_err_at(&ld, 1, 1, "(file)", "larger than %u bytes", CFG_MAX_FILE_BYTES);
		return NULL;
	}
	root = parse_yaml(&ld, text ? text : "", len, &failed);
	if (failed)
		goto out;
	ld.c = cfg_new(name);
	load_tree(&ld, root);
	if (ld.nerr == 0) {
		c = ld.c;
		ld.c = NULL;
		c->warnings = ld.warns;
		ld.warns = (struct cfg_errs){ 0 };
	}
out:
	cfg_free(ld.c);
	cfg_errs_free(&ld.warns);
	free(ld.names);
	node_free(root);
	return c;
}

struct cfg *
cfg_load(const char *path, struct cfg_errs *errs)
{
	struct buf  b = { 0 };
	struct cfg *c = NULL;
	char        chunk[65536];
	ssize_t     r;
	int         fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		errs_push(errs, xasprintf("%s: %s", path, strerror(errno)));
		return NULL;
	}
	for (;;) {
		r = read(fd, chunk, sizeof(chunk));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			errs_push(errs, xasprintf("%s: %s", path, strerror(errno)));
			goto out;
		}
		if (r == 0)
			break;
		if (buf_append(&b, chunk, (size_t)r, CFG_MAX_FILE_BYTES) == -1) {
			errs_push(errs, xasprintf("%s:1:1: (file): larger than %u bytes", path,
			    CFG_MAX_FILE_BYTES));
			goto out;
		}
	}
	c = cfg_load_buf(path, b.data ? b.data : "", b.len, errs);
out:
	close(fd);
	buf_free(&b);
	return c;
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
		cfg_free(c);
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
