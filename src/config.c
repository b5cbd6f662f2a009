/* config: YAML file → immutable, reference-counted snapshot. See include/modelmux/config.h.
 *
 * Stages: parse (libyaml events → node tree, ${env.X} applied to every scalar, anchors, depth
 * and duplicate keys rejected) → macros (global, per model, ${PORT}) on the tree → unresolved
 * ${...} check → tables of fields decode the tree into struct cfg. Errors are collected in
 * `struct ld` and never stop the walk.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <yaml.h>

#include "modelmux/cmdcheck.h"
#include "modelmux/config.h"
#include "modelmux/config_compat.h"
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
	const char    *file;      /* the file it came from (one of cfg->files) */
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
	const char *file;
	int         line, col;
	size_t      model, idx, seq;
	bool        is_id;
};

/* Load state. */
struct ld {
	const char       *file;      /* the file being parsed; the first one once merged */
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
	F_SUB,     /* a map decoded with its own table, into the same object */
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
	const struct field *sub;
};

#define FLD_INT(k, st, m, lo, hi) { k, F_INT, offsetof(st, m), lo, hi, NULL, false, NULL }
#define FLD_BOOL(k, st, m)        { k, F_BOOL, offsetof(st, m), 0, 0, NULL, false, NULL }
#define FLD_STR(k, st, m)         { k, F_STR, offsetof(st, m), 0, 0, NULL, false, NULL }
#define FLD_FN(k, f)              { k, F_FN, 0, 0, 0, f, false, NULL }
#define FLD_REQ(k, f)             { k, F_FN, 0, 0, 0, f, true, NULL }
#define FLD_SUB(k, tab)           { k, F_SUB, 0, 0, 0, NULL, false, tab }
#define FLD_SUB_AT(k, st, m, tab) { k, F_SUB, offsetof(st, m), 0, 0, NULL, false, tab }
#define FLD_LATER(k)              { k, F_LATER, 0, 0, 0, NULL, false, NULL }
#define FLD_UNSUP(k)              { k, F_UNSUP, 0, 0, 0, NULL, false, NULL }
#define FLD_END                   { NULL, F_LATER, 0, 0, 0, NULL, false, NULL }

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

static void ld_msg(struct ld *, bool, const char *, int, int, const char *, const char *, va_list)
    __attribute__((format(printf, 7, 0)));

static void
ld_msg(struct ld *ld, bool warn, const char *file, int line, int col, const char *path,
    const char *fmt, va_list ap)
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
	errs_push(warn ? &ld->warns : ld->errs, xasprintf("%s:%d:%d: %s: %s",
	    file != NULL ? file : ld->file, line, col,
	    path == NULL || *path == '\0' ? "(root)" : path, reason));
	free(reason);
}

static void ld_err_at(struct ld *, const char *, int, int, const char *, const char *, ...)
    __attribute__((format(printf, 6, 7)));
static void ld_err(struct ld *, const struct node *, const char *, const char *, ...)
    __attribute__((format(printf, 4, 5)));
static void ld_warn(struct ld *, const struct node *, const char *, const char *, ...)
    __attribute__((format(printf, 4, 5)));

static void
ld_err_at(struct ld *ld, const char *file, int line, int col, const char *path, const char *fmt,
    ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_msg(ld, false, file, line, col, path, fmt, ap);
	va_end(ap);
}

static void
ld_err(struct ld *ld, const struct node *n, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_msg(ld, false, n ? n->file : NULL, n ? n->line : 1, n ? n->col : 1, path, fmt, ap);
	va_end(ap);
}

static void
ld_warn(struct ld *ld, const struct node *n, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_msg(ld, true, n ? n->file : NULL, n ? n->line : 1, n ? n->col : 1, path, fmt, ap);
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
	ld_msg(ps->ld, false, n->file, n->line, n->col, path, fmt, ap);
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

	n->file = ps->ld->file;
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
			ld_err_at(ps->ld, NULL, line, col, "(root)", "only one YAML document is allowed");
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
			ld_err_at(ld, NULL, (int)parser.problem_mark.line + 1,
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
		if (ev.type == YAML_SCALAR_EVENT) /* may be an API key */
			OPENSSL_cleanse(ev.data.scalar.value, ev.data.scalar.length);
		yaml_event_delete(&ev);
	}
	if (parser.buffer.start != NULL)
		OPENSSL_cleanse(parser.buffer.start, (size_t)(parser.buffer.end - parser.buffer.start));
	if (parser.raw_buffer.start != NULL)
		OPENSSL_cleanse(parser.raw_buffer.start,
		    (size_t)(parser.raw_buffer.end - parser.raw_buffer.start));
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
		else if (f->kind == F_SUB)
			decode_fields(ld, v, kp, f->sub, (char *)obj + f->off);
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

/* ---- security: keys, CORS, rate limits, limits, commands, TLS ----------------------------- */

static void
top_log_format(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;
	char       *f = NULL;

	if (get_str(ld, v, path, &f) == -1 || f == NULL)
		return;
	if (strcmp(f, "json") == 0)
		c->log_json = true;
	else if (strcmp(f, "text") != 0)
		ld_err(ld, v, path, "expected text or json");
	free(f);
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

/* Turns one key text ("sha256:<64 hex>" or a plain key) into a digest; a static reason if bad. */
static const char *
key_digest(const char *s, unsigned char out[32])
{
	const char  *why;
	unsigned int n = 0;

	if (strncmp(s, "sha256:", 7) == 0) {
		s += 7;
		if (strlen(s) != 64)
			return "expected sha256: followed by 64 hex digits";
		for (size_t i = 0; i < 32; i++) {
			int hi = hex_digit((unsigned char)s[2 * i]), lo = hex_digit((unsigned char)s[2 * i + 1]);

			if (hi == -1 || lo == -1)
				return "expected sha256: followed by 64 hex digits";
			out[i] = (unsigned char)(hi << 4 | lo);
		}
		return NULL;
	}
	if ((why = check_api_key(s)) != NULL)
		return why;
	if (EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL) != 1 || n != 32)
		fatal("config: SHA-256 failed");
	return NULL;
}

/* Adds one key; wipes the text. */
static void
key_add(struct ld *ld, const struct node *n, const char *path, char *text, bool admin,
    const char *where)
{
	struct cfg    *c = ld->c;
	unsigned char  d[32];
	const char    *why = key_digest(text, d);

	OPENSSL_cleanse(text, strlen(text));
	if (why == NULL && c->nkeys >= CFG_MAX_KEYS)
		why = "too many API keys";
	if (why != NULL) {
		ld_err(ld, n, path, "%s%s", where ? where : "", why);
		return;
	}
	c->keys = xreallocarray(c->keys, c->nkeys + 1, sizeof(*c->keys));
	memcpy(c->keys[c->nkeys].sha256, d, sizeof(d));
	c->keys[c->nkeys++].admin = admin;
	OPENSSL_cleanse(d, sizeof(d));
}

/* One apiKeys entry written as a map: {key: K, admin: bool}. */
static void
key_map(struct ld *ld, struct node *m, const char *path)
{
	struct node *key = NULL;
	bool         admin = false;
	char        *kp;

	for (size_t i = 0; i < map_len(m); i++) {
		const char *k = map_key(m, i)->str;

		kp = path_join(path, k);
		if (strcmp(k, "key") == 0) {
			key = map_val(m, i);
			if (key->kind != NODE_SCALAR) {
				ld_err(ld, key, kp, "expected a string");
				key = NULL;
			}
		} else if (strcmp(k, "admin") == 0) {
			get_bool(ld, map_val(m, i), kp, &admin);
		} else {
			ld_err(ld, map_key(m, i), kp, "unknown key");
		}
		free(kp);
	}
	kp = path_join(path, "key");
	if (key == NULL && map_get(m, "key") == NULL)
		ld_err(ld, m, kp, "missing required key");
	else if (key != NULL)
		key_add(ld, key, kp, key->str, admin, NULL);
	free(kp);
}

static void
top_api_keys(struct ld *ld, struct node *v, const char *path, void *obj)
{
	(void)obj;
	if (node_is_null(v))
		return;
	if (v->kind != NODE_SEQ) {
		ld_err(ld, v, path, "expected a list");
		return;
	}
	for (size_t i = 0; i < v->nkids; i++) {
		struct node *it = v->kids[i];
		char        *ip = path_index(path, i);

		if (it->kind == NODE_SCALAR)
			key_add(ld, it, ip, it->str, false, NULL);
		else if (it->kind == NODE_MAP)
			key_map(ld, it, ip);
		else
			ld_err(ld, it, ip, "expected a key or {key: K, admin: true}");
		free(ip);
	}
}

/* Reads a whole file of at most `limit` bytes; NULL with errno set (EFBIG when too large). */
static char *
read_small_file(const char *path, size_t limit, size_t *lenp)
{
	struct buf b = { 0 };
	char       chunk[4096];
	ssize_t    r;
	int        fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	for (;;) {
		r = read(fd, chunk, sizeof(chunk));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1 || (r > 0 && buf_append(&b, chunk, (size_t)r, limit) == -1)) {
			saved = r == -1 ? errno : EFBIG;
			OPENSSL_cleanse(chunk, sizeof(chunk));
			buf_free_wiped(&b);
			close(fd);
			errno = saved;
			return NULL;
		}
		if (r == 0)
			break;
	}
	OPENSSL_cleanse(chunk, sizeof(chunk));
	close(fd);
	*lenp = b.len;
	return b.data ? b.data : xstrdup("");
}

static void
top_api_keys_file(struct ld *ld, struct node *v, const char *path, void *obj)
{
	char   *file = NULL, *text, *line, *save = NULL, *where;
	size_t  len = 0, before = ((struct cfg *)obj)->nkeys;
	int     lineno = 0;

	if (get_str(ld, v, path, &file) == -1 || file == NULL) {
		if (file == NULL && v->kind == NODE_SCALAR)
			ld_err(ld, v, path, "expected a file name");
		return;
	}
	if ((text = read_small_file(file, CFG_MAX_KEYS_FILE_BYTES, &len)) == NULL) {
		if (errno == EFBIG)
			ld_err(ld, v, path, "%s: larger than %u bytes", file, CFG_MAX_KEYS_FILE_BYTES);
		else
			ld_err(ld, v, path, "cannot read %s: %s", file, strerror(errno));
		free(file);
		return;
	}
	if (memchr(text, '\0', len) != NULL) {
		ld_err(ld, v, path, "%s: contains a NUL byte", file);
		goto out;
	}
	/* strtok_r would merge blank lines and shift the numbers: split by hand. */
	for (line = text; line != NULL; line = save) {
		char *nl = strchr(line, '\n'), *tok[3] = { NULL }, *ts = NULL, *t;
		int   nt = 0;

		save = nl ? nl + 1 : NULL;
		if (nl != NULL)
			*nl = '\0';
		lineno++;
		for (t = strtok_r(line, " \t\r", &ts); t != NULL; t = strtok_r(NULL, " \t\r", &ts)) {
			if (*t == '#')
				break;
			if (nt < 3)
				tok[nt] = t;
			nt++;
		}
		if (nt == 0)
			continue;
		where = xasprintf("%s line %d: ", file, lineno);
		if (nt > 2 || (nt == 2 && strcmp(tok[1], "admin") != 0))
			ld_err(ld, v, path, "%sexpected \"<key or sha256:hex> [admin]\"", where);
		else
			key_add(ld, v, path, tok[0], nt == 2, where);
		free(where);
	}
	/* A key file meant to turn authentication on must not leave everything open. */
	if (((struct cfg *)obj)->nkeys == before)
		ld_err(ld, v, path, "%s holds no key", file);
out:
	OPENSSL_cleanse(text, len);
	free(text);
	free(file);
}

/* "scheme://host[:port]" with scheme http or https and nothing after; lowercased in place. */
static const char *
check_origin(const char *s)
{
	const char *p;
	size_t      hl;

	if (strcmp(s, "*") == 0)
		return NULL;
	if (str_has_prefix_ci(s, "http://"))
		p = s + 7;
	else if (str_has_prefix_ci(s, "https://"))
		p = s + 8;
	else
		return "expected \"*\" or http(s)://host[:port]";
	if (*p == '[') {
		hl = strspn(p + 1, "0123456789abcdefABCDEF:.");
		if (hl == 0 || p[1 + hl] != ']')
			return "invalid host in origin";
		p += hl + 2;
	} else {
		hl = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
		if (hl == 0 || p[0] == '.' || p[0] == '-')
			return "invalid host in origin";
		p += hl;
	}
	if (*p == ':') {
		long long port;
		size_t    dl = strspn(p + 1, "0123456789");

		if (dl == 0 || dl > 5 || p[1 + dl] != '\0' || parse_int(p + 1, 1, 65535, &port) == -1)
			return "invalid port in origin";
		p += 1 + dl;
	}
	if (*p != '\0')
		return "an origin is scheme://host[:port] with no path";
	return NULL;
}

static const char *
check_token(const char *s)
{
	if (*s == '\0')
		return "must not be empty";
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("!#$%&'*+-.^_`|~", *s) == NULL)
			return "expected an HTTP token (letters, digits, -)";
	return NULL;
}

static void
cors_origins(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;

	strv_free(c->cors.origins);
	c->cors.origins = get_strv(ld, v, path, check_origin);
	for (char **o = c->cors.origins; *o != NULL; o++)
		for (char *p = *o; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
}

static void
cors_methods(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;

	strv_free(c->cors.methods);
	c->cors.methods = get_strv(ld, v, path, check_token);
}

static void
cors_headers(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;

	strv_free(c->cors.headers);
	c->cors.headers = get_strv(ld, v, path, check_token);
}

static const struct field cors_fields[] = {
	FLD_FN("allowedOrigins", cors_origins),
	FLD_BOOL("allowCredentials", struct cfg, cors.allow_credentials),
	FLD_FN("allowedMethods", cors_methods),
	FLD_FN("allowedHeaders", cors_headers),
	FLD_INT("maxAge", struct cfg, cors.max_age_s, 0, 86400),
	FLD_END,
};

static void
top_cors(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg  *c = obj;
	struct node *cred;
	char        *kp;

	decode_fields(ld, v, path, cors_fields, obj);
	if (c->cors.allow_credentials && strv_contains(c->cors.origins, "*")) {
		cred = map_get(v, "allowCredentials");
		kp = path_join(path, "allowCredentials");
		ld_err(ld, cred ? cred : v, kp,
		    "cannot be true when allowedOrigins has \"*\" (list the origins)");
		free(kp);
	}
}

static void
rate_rate(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_rate *r = obj;
	char            *end;
	double           d;

	if (v->kind != NODE_SCALAR || v->quoted || !(is_int_text(v->str) || is_float_text(v->str))) {
		ld_err(ld, v, path, "expected a number (requests per second)");
		return;
	}
	d = strtod(v->str, &end);
	if (!(d >= 0 && d <= CFG_MAX_RATE)) {
		ld_err(ld, v, path, "must be between 0 and %g", CFG_MAX_RATE);
		return;
	}
	r->rate = d;
}

static const struct field bucket_fields[] = {
	FLD_FN("rate", rate_rate),
	FLD_INT("burst", struct cfg_rate, burst, 1, 1000000),
	FLD_END,
};

static const struct field rate_fields[] = {
	FLD_SUB_AT("perIP", struct cfg, rate.per_ip, bucket_fields),
	FLD_SUB_AT("perKey", struct cfg, rate.per_key, bucket_fields),
	FLD_SUB_AT("global", struct cfg, rate.global, bucket_fields),
	FLD_SUB_AT("authFailures", struct cfg, rate.auth_failures, bucket_fields),
	FLD_INT("tableSize", struct cfg, rate.table_size, CFG_MIN_RATE_TABLE_SIZE,
	    CFG_MAX_RATE_TABLE_SIZE),
	FLD_END,
};

/* limits.maxSpoolBytes: a byte count past int's range. */
static void
limits_spool_bytes(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;
	long long   x;

	if (v->kind != NODE_SCALAR || parse_int(v->str, 0, 1LL << 50, &x) == -1) {
		ld_err(ld, v, path, "expected a byte count, 0 .. 2^50 (0 = half the free space)");
		return;
	}
	c->limits.max_spool_bytes = x;
}

static const struct field limits_fields[] = {
	FLD_INT("maxHeaderBytes", struct cfg, limits.max_header_bytes, 1024, 1 << 20),
	FLD_INT("maxUrlBytes", struct cfg, limits.max_url_bytes, 256, 1 << 20),
	FLD_INT("maxJsonBodyBytes", struct cfg, limits.max_json_body_bytes, 1024, 1 << 30),
	FLD_INT("maxMultipartBodyBytes", struct cfg, limits.max_multipart_body_bytes, 1024, INT_MAX),
	FLD_INT("maxJsonDepth", struct cfg, limits.max_json_depth, 1, 1024),
	FLD_INT("headerTimeoutSeconds", struct cfg, limits.header_timeout_s, 1, 3600),
	FLD_INT("bodyIdleTimeoutSeconds", struct cfg, limits.body_idle_timeout_s, 1, 86400),
	FLD_INT("maxConnectionsPerIP", struct cfg, limits.max_conns_per_ip, 1, 1 << 16),
	FLD_FN("maxSpoolBytes", limits_spool_bytes),
	FLD_STR("spoolDir", struct cfg, limits.spool_dir),
	FLD_END,
};

/* allowedCommands: each entry resolved (realpath), a directory keeping its trailing '/'. */
static void
top_allowed(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;
	char      **v0;
	size_t      n = 0;

	if (node_is_null(v))
		return;
	v0 = get_strv(ld, v, path, NULL);
	strv_free(c->allowed_commands);
	c->allowed_commands = xcalloc(strv_len(v0) + 1, sizeof(char *));
	for (size_t i = 0, k = 0; v0[i] != NULL; i++, k++) {
		const char *e = v0[i];
		size_t      len = strlen(e);
		bool        dir = len > 0 && e[len - 1] == '/';
		char       *real, *ip;

		while (v->kids[k]->kind != NODE_SCALAR)
			k++;
		ip = path_index(path, k);
		if (e[0] != '/')
			ld_err(ld, v->kids[k], ip, "expected an absolute path");
		else if ((real = realpath(e, NULL)) == NULL)
			ld_err(ld, v->kids[k], ip, "%s: %s", e, strerror(errno));
		else {
			c->allowed_commands[n++] = dir && strcmp(real, "/") != 0 ?
			    xasprintf("%s/", real) : xstrdup(real);
			free(real);
		}
		free(ip);
	}
	strv_free(v0);
}

/* trustedProxies: addresses or blocks ("10.0.0.0/8", "::1") of front proxies. */
static void
top_trusted(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;
	char      **v0;
	size_t      k = 0;

	if (node_is_null(v))
		return;
	v0 = get_strv(ld, v, path, NULL);
	free(c->trusted_proxies);
	c->trusted_proxies = NULL;
	c->ntrusted_proxies = 0;
	if (strv_len(v0) > CFG_MAX_TRUSTED_PROXIES) {
		ld_err(ld, v, path, "more than %d entries", CFG_MAX_TRUSTED_PROXIES);
		strv_free(v0);
		return;
	}
	c->trusted_proxies = xcalloc(strv_len(v0) + 1, sizeof(*c->trusted_proxies));
	for (size_t i = 0; v0[i] != NULL; i++, k++) {
		char *ip;

		while (v->kids[k]->kind != NODE_SCALAR)
			k++;
		if (cidr_parse(v0[i], &c->trusted_proxies[c->ntrusted_proxies]) == 0) {
			c->ntrusted_proxies++;
			continue;
		}
		ip = path_index(path, k);
		ld_err(ld, v->kids[k], ip, "%s: not an IP address or address/prefix", v0[i]);
		free(ip);
	}
	strv_free(v0);
}

/* Resolves name like execvp would (PATH, or as written when it has a '/') to a real path of an
 * executable regular file; NULL if none. */
static char *
resolve_exe(const char *name, const char *cfg_file)
{
	const char *path = getenv("PATH");
	char       *copy, *dir, *save = NULL, *real = NULL;
	struct stat st;

	if (*name == '\0')
		return NULL;
	if (name[0] != '/' && strchr(name, '/') != NULL && cfg_file != NULL &&
	    strchr(cfg_file, '/') != NULL) {
		/* build/x: beside the config file that says so, wherever modelmux runs from. */
		const char *slash = strrchr(cfg_file, '/');
		char       *rel = xasprintf("%.*s/%s", (int)(slash - cfg_file), cfg_file, name);

		real = realpath(rel, NULL);
		free(rel);
	} else if (strchr(name, '/') != NULL) {
		real = realpath(name, NULL);
	} else {
		if (path == NULL || *path == '\0')
			path = "/usr/local/bin:/usr/bin:/bin";
		copy = xstrdup(path);
		for (dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
			char *cand = xasprintf("%s/%s", dir, name);

			if (access(cand, X_OK) == 0 && stat(cand, &st) == 0 && S_ISREG(st.st_mode))
				real = realpath(cand, NULL);
			free(cand);
			if (real != NULL)
				break;
		}
		free(copy);
	}
	if (real != NULL && (stat(real, &st) == -1 || !S_ISREG(st.st_mode) ||
	    access(real, X_OK) == -1)) {
		free(real);
		real = NULL;
	}
	return real;
}

static const char *
base_name(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

static bool
is_shell_name(const char *p)
{
	static const char *const shells[] = { "sh", "bash", "dash", "zsh", "ksh", "mksh", "fish",
	    "csh", "tcsh", "busybox", "ash", "rbash", "pdksh", "yash", "posh" };
	const char *b = base_name(p);

	for (size_t i = 0; i < MM_ARRAY_LEN(shells); i++)
		if (strcmp(b, shells[i]) == 0)
			return true;
	return false;
}

/* The program `env` runs (argv index), or 0 if none; *split when -S / --split-string is used. */
static size_t
env_target(char *const *argv, bool *split)
{
	size_t i;

	*split = false;
	for (i = 1; argv[i] != NULL; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strncmp(a, "--split-string", 14) == 0 ||
		    (a[0] == '-' && a[1] != '-' && strchr(a, 'S') != NULL)) {
			*split = true;
			return 0;
		}
		if (strcmp(a, "--unset") == 0 || strcmp(a, "--chdir") == 0) {
			if (argv[++i] == NULL)
				return 0;
			continue;
		}
		if (a[0] == '-' && a[1] != '-' && a[1] != '\0') {
			/* A cluster such as -iu NAME: -u and -C take the rest of the word, or the next. */
			const char *arg = strpbrk(a + 1, "uC");

			if (arg != NULL && arg[1] == '\0' && argv[++i] == NULL)
				return 0;
			continue;
		}
		if (a[0] == '-' && a[1] != '\0')
			continue;
		if (strchr(a, '=') != NULL)
			continue;
		break;
	}
	return argv[i] != NULL ? i : 0;
}

/* Programs that exec a program named in their arguments (env is looked through exactly). */
static bool
is_wrapper(const char *exe)
{
	static const char *const wrappers[] = { "nice", "timeout", "setsid", "nohup", "stdbuf",
		"chrt", "taskset", "ionice", "numactl", "sudo", "doas", "xargs", "flock", "unbuffer",
		"time", "chroot", "runuser", "su", "setpriv", "prlimit", "unshare", "nsenter",
		"systemd-run", "sg", "script", "watch", "strace", "ltrace", "valgrind", "gdb" };
	const char *b = base_name(exe);

	for (size_t i = 0; i < MM_ARRAY_LEN(wrappers); i++)
		if (strcmp(b, wrappers[i]) == 0)
			return true;
	return false;
}

#define SHELL_REFUSED \
	"shell interpreters are not allowed as commands; list it in allowedCommands to allow it"

/* Checks argv's program against allowedCommands and the shell rule; env's program too. Returns
 * the resolved program (caller frees) or NULL after one error. */
static char *
command_check(struct ld *ld, const struct node *n, const char *path, char *const *argv, int depth)
{
	char *const *allowed = ld->c->allowed_commands;
	char        *exe = resolve_exe(argv[0], n->file), *inner;
	const char  *inline_code;
	bool         listed = false, exact = false, split;
	size_t       t;

	if (exe == NULL) {
		ld_err(ld, n, path, "command not found: %s", argv[0]);
		return NULL;
	}
	for (size_t i = 0; allowed != NULL && allowed[i] != NULL; i++) {
		size_t len = strlen(allowed[i]);

		if (strcmp(allowed[i], exe) == 0)
			listed = exact = true;
		else if (len > 0 && allowed[i][len - 1] == '/' && strncmp(allowed[i], exe, len) == 0)
			listed = true;
	}
	if (ld->c->strict_commands && !exact) {
		ld_err(ld, n, path, "%s (%s): strictCommands is on: only the executables allowedCommands "
		    "lists by exact path may run", argv[0], exe);
		goto fail;
	}
	/* A shell by its name, or by the file itself (a renamed copy of dash is still dash). */
	if ((is_shell_name(exe) || is_shell_name(argv[0]) || cmd_is_shell_file(exe)) && !exact) {
		ld_err(ld, n, path, "%s: " SHELL_REFUSED, argv[0]);
		goto fail;
	}
	if (!exact && (inline_code = cmd_inline_code(exe, argv)) != NULL) {
		ld_err(ld, n, path, "%s: an interpreter given its program inline (%s); list %s in "
		    "allowedCommands to allow it", argv[0], inline_code, exe);
		goto fail;
	}
	if (allowed != NULL && !listed) {
		ld_err(ld, n, path, "%s (%s) is not under allowedCommands", argv[0], exe);
		goto fail;
	}
	if (!exact && allowed != NULL && is_wrapper(exe)) {
		/* Under an allowlist, a program that runs other programs must be listed by name. */
		ld_err(ld, n, path, "%s runs other programs; list %s itself in allowedCommands to allow it",
		    argv[0], exe);
		goto fail;
	}
	if (!exact && is_wrapper(exe)) {
		/* Programs that run another program: any shell word among their arguments counts. */
		for (size_t i = 1; argv[i] != NULL; i++) {
			if (is_shell_name(argv[i])) {
				ld_err(ld, n, path, "%s runs %s: " SHELL_REFUSED, argv[0], argv[i]);
				goto fail;
			}
		}
	}
	if (!exact && (strcmp(base_name(exe), "env") == 0 || strcmp(base_name(argv[0]), "env") == 0)) {
		t = env_target(argv, &split);
		if (split) {
			ld_err(ld, n, path, "%s -S: " SHELL_REFUSED, argv[0]);
			goto fail;
		}
		if (t > 0) {
			if (depth >= 4) {
				ld_err(ld, n, path, "env runs env too many times");
				goto fail;
			}
			if ((inner = command_check(ld, n, path, argv + t, depth + 1)) == NULL)
				goto fail;
			free(inner);
		}
	}
	return exe;
fail:
	free(exe);
	return NULL;
}

/* tls.cert / tls.key as written. */
struct tls_paths {
	char *cert, *key;
};

static const struct field tls_fields[] = {
	FLD_STR("cert", struct tls_paths, cert),
	FLD_STR("key", struct tls_paths, key),
	FLD_END,
};

static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Reads a PEM file for tls.<what>; NULL after one error. */
static char *
tls_read(struct ld *ld, const struct node *n, const char *path, const char *file, size_t *len)
{
	char *text = read_small_file(file, CFG_MAX_PEM_BYTES, len);

	if (text == NULL) {
		if (errno == EFBIG)
			ld_err(ld, n, path, "%s: larger than %u bytes", file, CFG_MAX_PEM_BYTES);
		else
			ld_err(ld, n, path, "cannot read %s: %s", file, strerror(errno));
	}
	return text;
}

static void
top_tls(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg      *c = obj;
	struct tls_paths tp = { 0 };
	struct node     *cn, *kn;
	char            *cp = path_join(path, "cert"), *kp = path_join(path, "key");
	char            *cert = NULL, *key = NULL;
	size_t           clen = 0, klen = 0;
	BIO             *bio = NULL;
	X509            *x = NULL;
	EVP_PKEY        *pk = NULL;

	decode_fields(ld, v, path, tls_fields, &tp);
	if (v->kind != NODE_MAP)
		goto out;
	cn = map_get(v, "cert");
	kn = map_get(v, "key");
	if ((tp.cert == NULL) != (tp.key == NULL)) {
		if (tp.cert == NULL)
			ld_err(ld, cn ? cn : v, cp, "required with tls.key");
		else
			ld_err(ld, kn ? kn : v, kp, "required with tls.cert");
		goto out;
	}
	if (tp.cert == NULL)
		goto out;
	if ((cert = tls_read(ld, cn, cp, tp.cert, &clen)) != NULL) {
		if ((bio = BIO_new_mem_buf(cert, (int)clen)) == NULL)
			fatal("config: out of memory");
		if ((x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) == NULL)
			ld_err(ld, cn, cp, "%s: not a PEM certificate", tp.cert);
		BIO_free(bio);
	}
	if ((key = tls_read(ld, kn, kp, tp.key, &klen)) != NULL) {
		if ((bio = BIO_new_mem_buf(key, (int)klen)) == NULL)
			fatal("config: out of memory");
		if ((pk = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)) == NULL)
			ld_err(ld, kn, kp, "%s: not a PEM private key (or it has a passphrase)", tp.key);
		BIO_free(bio);
	}
	if (x != NULL && pk != NULL && X509_check_private_key(x, pk) != 1)
		ld_err(ld, kn, kp, "%s does not match the certificate %s", tp.key, tp.cert);
	else if (x != NULL && pk != NULL) {
		free(c->tls_cert_pem);
		if (c->tls_key_pem != NULL)
			OPENSSL_cleanse(c->tls_key_pem, strlen(c->tls_key_pem));
		free(c->tls_key_pem);
		c->tls_cert_pem = cert;
		c->tls_key_pem = key;
		cert = key = NULL;
	}
	ERR_clear_error();
out:
	X509_free(x);
	EVP_PKEY_free(pk);
	free(cert);
	if (key != NULL)
		OPENSSL_cleanse(key, klen);
	free(key);
	free(tp.cert);
	free(tp.key);
	free(cp);
	free(kp);
}

/* ---- llama-swap's newer keys: decoded by config_compat.c ---------------------------------- */

static void
compat_report(void *arg, const struct cfg_compat_at *at, bool warn, const char *path,
    const char *msg)
{
	struct ld *ld = arg;
	struct node n = { .file = at->file, .line = at->line, .col = at->col };

	if (warn)
		ld_warn(ld, &n, path, "%s", msg);
	else
		ld_err(ld, &n, path, "%s", msg);
}

static void
compat_key(struct ld *ld, struct node *v, const char *path, void *obj, bool model)
{
	struct cJSON            *j = node_json(v);
	struct cfg_compat_at     at = { v->file, v->line, v->col };
	struct cfg_compat_report r = { compat_report, ld };

	if (model)
		cfg_compat_model(obj, path, j, &at, &r);
	else
		cfg_compat_top(obj, path, j, &at, &r);
	cJSON_Delete(j);
}

static void
compat_model_key(struct ld *ld, struct node *v, const char *path, void *obj)
{
	compat_key(ld, v, path, obj, true);
}

static void
compat_top_key(struct ld *ld, struct node *v, const char *path, void *obj)
{
	compat_key(ld, v, path, obj, false);
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
	if (stop) {
		strv_free(m->stop_argv);
		free(m->stop_exe);
		m->stop_argv = argv;
		m->stop_exe = command_check(ld, v, path, argv, 0);
	} else {
		strv_free(m->argv);
		free(m->exe);
		m->argv = argv;
		m->exe = command_check(ld, v, path, argv, 0);
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
	FLD_FN("setParamsByID", compat_model_key),
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
	FLD_FN("capabilities", compat_model_key),
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
	struct node *f = map_get(v, "filters"), *byid;

	for (size_t i = 0; i < map_len(v); i++)
		if (strcmp(map_key(v, i)->str, "macros") != 0)
			subst_values(ld, map_val(v, i), ml);
	/* setParamsByID's keys name models ("${MODEL_ID}:high"): macros apply to them too. */
	if (f != NULL && f->kind == NODE_MAP && (byid = map_get(f, "setParamsByID")) != NULL &&
	    byid->kind == NODE_MAP && ml->n > 0)
		for (size_t i = 0; i < map_len(byid); i++)
			subst_scalar(ld, map_key(byid, i), ml);
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
			ld_err_at(ld, r->file, r->line, r->col, path, "alias \"%s\" is the id of model %s",
			    r->name, c->models[first->model].id);
		else
			ld_err_at(ld, r->file, r->line, r->col, path, "alias \"%s\" is already used by model %s",
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
	struct node *gm = map_get(root, "groups"), *rg = root;
	size_t       n = 0, nfree = 0, k = 0;
	char        *gp;
	const char  *gname = "groups";

	/* llama-swap's routing.router.settings.groups: the same groups, kept there now. */
	for (const char *const *p = cfg_compat_routing_groups; *p && rg != NULL; p++)
		rg = rg->kind == NODE_MAP ? map_get(rg, *p) : NULL;
	if (rg != NULL && gm != NULL)
		ld_err(ld, rg, "routing.router.settings.groups", "groups is given at the top level too; "
		    "keep one");
	else if (rg != NULL) {
		gm = rg;
		gname = "routing.router.settings.groups";
	}
	if (gm != NULL && !node_is_null(gm) && gm->kind != NODE_MAP)
		ld_err(ld, gm, gname, "expected a map");
	else if (gm != NULL)
		n = map_len(gm);
	c->groups = xcalloc(n + 1, sizeof(*c->groups));
	for (size_t i = 0; i < n; i++) {
		struct cfg_group *g = &c->groups[c->ngroups++];
		const struct node *key = map_key(gm, i);

		g->name = xstrdup(key->str);
		g->swap = g->exclusive = true;
		g->members = xcalloc(1, sizeof(char *));
		gp = path_join(gname, key->str);
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

static const struct field hooks_fields[] = {
	FLD_SUB("on_startup", startup_fields),
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
	FLD_FN("logFormat", top_log_format),
	FLD_INT("startPort", struct cfg, start_port, 1, 65535),
	FLD_INT("globalTTL", struct cfg, global_ttl_s, 0, INT_MAX),
	FLD_INT("unloadTimeout", struct cfg, unload_timeout_s, 0, INT_MAX),
	FLD_BOOL("sendLoadingState", struct cfg, send_loading_state),
	FLD_BOOL("includeAliasesInList", struct cfg, include_aliases_in_list),
	FLD_FN("apiKeys", top_api_keys),
	FLD_FN("apiKeysFile", top_api_keys_file),
	FLD_FN("cors", top_cors),
	FLD_SUB("rateLimit", rate_fields),
	FLD_SUB("limits", limits_fields),
	FLD_FN("allowedCommands", top_allowed),
	FLD_FN("trustedProxies", top_trusted),
	FLD_BOOL("strictCommands", struct cfg, strict_commands),
	FLD_FN("tls", top_tls),
	FLD_FN("listen", top_listen),
	FLD_UNSUP("logTimeFormat"),
	FLD_FN("logToStdout", compat_top_key),
	FLD_UNSUP("logRequests"),
	FLD_UNSUP("metricsMaxInMemory"),
	FLD_UNSUP("captureBuffer"),
	FLD_UNSUP("store"),
	FLD_UNSUP("ui"),
	FLD_UNSUP("performance"),
	FLD_FN("upstream", compat_top_key),
	FLD_UNSUP("profiles"),
	FLD_FN("selectors", compat_top_key),
	FLD_FN("routing", compat_top_key),
	FLD_FN("matrix", compat_top_key),
	FLD_UNSUP("peers"),
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

static void
cfg_free(struct cfg *c)
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
	cfg_errs_free(&c->warnings);
	cfg_compat_free(c);
	free(c);
}

static struct cfg *
cfg_new(const char *name)
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
		ld_err_at(ld, NULL, 1, 1, "models", "missing required key");
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
	{
		struct cfg_compat_report r = { compat_report, ld };

		cfg_compat_finish(ld->c, &r);
	}
	if ((hooks = map_get(root, "hooks")) != NULL)
		decode_fields(ld, hooks, "hooks", hooks_fields, ld->c);
	free(globals.v);
}

/* ---- merging files (--config-dir) -------------------------------------------------------- */

/* Maps whose keys name things (a model, a group…): a key defined by two files is an error,
 * not a merge. llama-swap's list. */
static const char *const identity_maps[] = {
	"models", "groups", "profiles", "selectors", "peers", "matrix",
	"routing.router.settings.groups", "routing.router.settings.matrix", NULL,
};

static bool
is_identity_map(const char *path)
{
	for (const char *const *p = identity_maps; *p != NULL; p++)
		if (strcmp(*p, path) == 0)
			return true;
	return false;
}

static const char *
kind_name(const struct node *n)
{
	return n->kind == NODE_MAP ? "a map" : n->kind == NODE_SEQ ? "a list" : "a value";
}

/* Frees a container whose kids were moved elsewhere. */
static void
node_free_shell(struct node *n)
{
	free(n->kids);
	free(n->str);
	free(n);
}

/* Merges `src` (owned; consumed) into *dstp at `path`. Messages point at src's node and name
 * dst's place. */
static void
merge_node(struct ld *ld, struct node **dstp, struct node *src, const char *path)
{
	struct node *dst = *dstp;
	const char  *p = *path ? path : "(root)";

	if (src == NULL)
		return;
	if (dst == NULL || node_is_null(dst)) {
		node_free(dst);
		*dstp = src;
		return;
	}
	if (node_is_null(src)) {
		node_free(src);
		return;
	}
	if (dst->kind != src->kind) {
		ld_err(ld, src, p, "is %s here but %s in %s:%d:%d", kind_name(src), kind_name(dst),
		    dst->file, dst->line, dst->col);
		node_free(src);
		return;
	}
	switch (src->kind) {
	case NODE_SCALAR:
		/* The values are not shown: one may be an API key. */
		if (strcmp(dst->str, src->str) != 0)
			ld_err(ld, src, p, "conflicts with a different value at %s:%d:%d", dst->file,
			    dst->line, dst->col);
		node_free(src);
		return;
	case NODE_SEQ:
		for (size_t i = 0; i < src->nkids; i++)
			node_add(dst, src->kids[i]);
		node_free_shell(src);
		return;
	case NODE_MAP:
		break;
	}
	for (size_t i = 0; i < map_len(src); i++) {
		struct node *k = map_key(src, i), *v = map_val(src, i);
		size_t       j;
		char        *kp;

		for (j = 0; j < map_len(dst); j++)
			if (strcmp(map_key(dst, j)->str, k->str) == 0)
				break;
		if (j == map_len(dst)) {
			node_add(dst, k);
			node_add(dst, v);
			continue;
		}
		kp = path_join(path, k->str);
		if (is_identity_map(path)) {
			ld_err(ld, k, kp, "defined again; first defined at %s:%d:%d",
			    map_key(dst, j)->file, map_key(dst, j)->line, map_key(dst, j)->col);
			node_free(v);
		} else {
			merge_node(ld, &dst->kids[2 * j + 1], v, kp);
		}
		free(kp);
		node_free(k);
	}
	node_free_shell(src);
}

static void
strv_push(char ***v, char *s)
{
	size_t n = strv_len(*v);

	*v = xreallocarray(*v, n + 2, sizeof(**v));
	(*v)[n] = s;
	(*v)[n + 1] = NULL;
}

struct cfg *
cfg_load_srcs(const struct cfg_src *srcs, size_t n, struct cfg_errs *errs)
{
	struct ld    ld = { .errs = errs, .budget = CFG_MAX_EXPANSION_BYTES };
	struct node *root = NULL;
	struct cfg  *c = NULL;
	size_t       total = 0;
	bool         failed = false;

	if (n == 0 || n > CFG_MAX_FILES) {
		errs_push(errs, xasprintf("%s: %zu configuration files (at least 1, at most %d)",
		    n ? srcs[0].name : "(none)", n, CFG_MAX_FILES));
		return NULL;
	}
	ld.c = cfg_new(srcs[0].name);
	for (size_t i = 0; i < n; i++) {
		struct node *tree;
		bool         bad;

		strv_push(&ld.c->files, xstrdup(srcs[i].name));
		ld.file = ld.c->files[i];
		if (srcs[i].len > CFG_MAX_FILE_BYTES) {
			ld_err_at(&ld, NULL, 1, 1, "(file)", "larger than %u bytes", CFG_MAX_FILE_BYTES);
			failed = true;
			continue;
		}
		if ((total += srcs[i].len) > CFG_MAX_TOTAL_BYTES) {
			ld_err_at(&ld, NULL, 1, 1, "(file)", "the configuration files together are larger "
			    "than %u bytes", CFG_MAX_TOTAL_BYTES);
			failed = true;
			break;
		}
		tree = parse_yaml(&ld, srcs[i].text ? srcs[i].text : "", srcs[i].len, &bad);
		if (bad) {
			failed = true;
			continue;
		}
		merge_node(&ld, &root, tree, "");
	}
	if (failed)
		goto out;
	ld.file = ld.c->files[0];
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
cfg_load_buf(const char *name, const char *text, size_t len, struct cfg_errs *errs)
{
	const struct cfg_src src = { name, text, len };

	return cfg_load_srcs(&src, 1, errs);
}

/* Reads a whole config file into `b` (at most CFG_MAX_FILE_BYTES); -1 with one error. */
static int
read_config_file(const char *path, struct buf *b, struct cfg_errs *errs)
{
	char    chunk[65536];
	ssize_t r;
	int     fd, rc = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		errs_push(errs, xasprintf("%s: %s", path, strerror(errno)));
		return -1;
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
		if (buf_append(b, chunk, (size_t)r, CFG_MAX_FILE_BYTES) == -1) {
			errs_push(errs, xasprintf("%s:1:1: (file): larger than %u bytes", path,
			    CFG_MAX_FILE_BYTES));
			goto out;
		}
	}
	rc = 0;
out:
	close(fd);
	OPENSSL_cleanse(chunk, sizeof(chunk));
	return rc;
}

static bool
is_config_name(const char *name)
{
	size_t len = strlen(name);

	if (name[0] == '.')
		return false;
	return (len > 4 && strcmp(name + len - 4, ".yml") == 0) ||
	    (len > 5 && strcmp(name + len - 5, ".yaml") == 0);
}

static int
str_ptr_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char **
cfg_dir_files(const char *dir, struct cfg_errs *errs)
{
	DIR           *d;
	struct dirent *de;
	char         **names = xcalloc(1, sizeof(*names));
	size_t         n = 0, dlen = strlen(dir);
	const char    *sep = dlen > 0 && dir[dlen - 1] == '/' ? "" : "/";

	if ((d = opendir(dir)) == NULL) {
		errs_push(errs, xasprintf("%s: %s", dir, strerror(errno)));
		free(names);
		return NULL;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		char       *p;

		if (!is_config_name(de->d_name))
			continue;
		p = xasprintf("%s%s%s", dir, sep, de->d_name);
		/* Symbolic links are followed; a directory or a file that just went is skipped. */
		if (stat(p, &st) == -1 || !S_ISREG(st.st_mode)) {
			free(p);
			continue;
		}
		if (n == CFG_MAX_FILES) {
			errs_push(errs, xasprintf("%s: more than %d *.yml/*.yaml files", dir,
			    CFG_MAX_FILES));
			free(p);
			strv_free(names);
			closedir(d);
			return NULL;
		}
		strv_push(&names, p);
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), str_ptr_cmp);
	return names;
}

struct cfg *
cfg_load_set(const char *file, const char *dir, struct cfg_errs *errs)
{
	char          **paths = xcalloc(1, sizeof(*paths)), **more = NULL;
	struct buf     *bufs = NULL;
	struct cfg_src *srcs = NULL;
	struct cfg     *c = NULL;
	size_t          n;

	if (file != NULL)
		strv_push(&paths, xstrdup(file));
	if (dir != NULL) {
		if ((more = cfg_dir_files(dir, errs)) == NULL)
			goto out;
		for (char **p = more; *p != NULL; p++)
			strv_push(&paths, xstrdup(*p));
	}
	if ((n = strv_len(paths)) == 0) {
		errs_push(errs, xasprintf("%s: no *.yml or *.yaml files", dir ? dir : "(none)"));
		goto out;
	}
	if (n > CFG_MAX_FILES) {
		errs_push(errs, xasprintf("%s: more than %d configuration files", dir ? dir : file,
		    CFG_MAX_FILES));
		goto out;
	}
	bufs = xcalloc(n, sizeof(*bufs));
	srcs = xcalloc(n, sizeof(*srcs));
	for (size_t i = 0; i < n; i++) {
		if (read_config_file(paths[i], &bufs[i], errs) == -1)
			goto out;
		srcs[i] = (struct cfg_src){ paths[i], bufs[i].data ? bufs[i].data : "", bufs[i].len };
	}
	c = cfg_load_srcs(srcs, n, errs);
	if (c != NULL && file == NULL) {
		free(c->path);
		c->path = xstrdup(dir);
	}
out:
	for (size_t i = 0; bufs != NULL && i < strv_len(paths); i++)
		buf_free_wiped(&bufs[i]);
	free(bufs);
	free(srcs);
	strv_free(more);
	strv_free(paths);
	return c;
}

struct cfg *
cfg_load(const char *path, struct cfg_errs *errs)
{
	return cfg_load_set(path, NULL, errs);
}

static void
stamp_add(unsigned long long *h, const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++) {
		*h ^= b[i];
		*h *= 1099511628211ull; /* FNV-1a */
	}
}

static void
stamp_file(unsigned long long *h, const char *name, const struct stat *st)
{
	stamp_add(h, name, strlen(name) + 1);
	stamp_add(h, &st->st_ino, sizeof(st->st_ino));
	stamp_add(h, &st->st_size, sizeof(st->st_size));
	stamp_add(h, &st->st_mtim.tv_sec, sizeof(st->st_mtim.tv_sec));
	stamp_add(h, &st->st_mtim.tv_nsec, sizeof(st->st_mtim.tv_nsec));
}

int
cfg_stamp(const char *file, const char *dir, unsigned long long *out)
{
	unsigned long long h = 14695981039346656037ull;
	struct cfg_errs    errs = { 0 };
	struct stat        st;
	char             **files;

	if (file != NULL) {
		if (stat(file, &st) == -1)
			return -1;
		stamp_file(&h, file, &st);
	}
	if (dir != NULL) {
		if ((files = cfg_dir_files(dir, &errs)) == NULL) {
			cfg_errs_free(&errs);
			return -1;
		}
		for (char **p = files; *p != NULL; p++)
			if (stat(*p, &st) == 0)
				stamp_file(&h, *p, &st);
		strv_free(files);
	}
	*out = h;
	return 0;
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
