/* config: the YAML side — a node tree that keeps line and column, and libyaml events turned
 * into it (${env.X} applied to every scalar, anchors, depth and duplicate keys rejected). */
#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>

#include <openssl/crypto.h>
#include <yaml.h>

#include "modelmux/config.h"
#include "modelmux/log.h"
#include "modelmux/util.h"
#include "config_int.h"

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

void
cfg__node_free(struct node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		cfg__node_free(n->kids[i]);
	free(n->kids);
	free(n->str);
	free(n);
}

void
cfg__node_add(struct node *parent, struct node *kid)
{
	if (parent->nkids == parent->cap) {
		parent->cap = parent->cap ? parent->cap * 2 : 8;
		parent->kids = xreallocarray(parent->kids, parent->cap, sizeof(*parent->kids));
	}
	parent->kids[parent->nkids++] = kid;
}

size_t
cfg__map_len(const struct node *m)
{
	return m->kind == NODE_MAP ? m->nkids / 2 : 0;
}

struct node *
cfg__map_key(const struct node *m, size_t i)
{
	return m->kids[2 * i];
}

struct node *
cfg__map_val(const struct node *m, size_t i)
{
	return m->kids[2 * i + 1];
}

struct node *
cfg__map_get(const struct node *m, const char *key)
{
	if (m == NULL || m->kind != NODE_MAP)
		return NULL;
	for (size_t i = 0; i < cfg__map_len(m); i++)
		if (strcmp(cfg__map_key(m, i)->str, key) == 0)
			return cfg__map_val(m, i);
	return NULL;
}

/* A plain empty, "~" or "null" scalar. */
bool
cfg__node_is_null(const struct node *n)
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
	cfg__ld_msg(ps->ld, false, n->file, n->line, n->col, path, fmt, ap);
	va_end(ap);
	free(path);
}

bool
cfg__env_name_ok(const char *s, size_t len)
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
		if (end == NULL || !cfg__env_name_ok(q + 6, (size_t)(end - q - 6))) {
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
		else if (cfg__ld_charge(ps->ld, n, strlen(val)))
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
			cfg__node_free(n);
		return;
	}
	parent = ps->stack[ps->depth - 1];
	if (parent->kind == NODE_MAP && parent->nkids % 2 == 1) {
		n->line = parent->kids[parent->nkids - 1]->line;
		n->col = parent->kids[parent->nkids - 1]->col;
	}
	cfg__node_add(parent, n);
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
		if (cfg__map_key(m, i)->kind != NODE_SCALAR) {
			if (path == NULL)
				path = ps_path(ps);
			cfg__ld_err(ps->ld, cfg__map_key(m, i), path, "map keys must be scalars");
			drop[i] = true;
			continue;
		}
		refs[nref].key = cfg__map_key(m, i)->str;
		refs[nref++].pair = i;
	}
	qsort(refs, nref, sizeof(*refs), keyref_cmp);
	for (size_t i = 1; i < nref; i++) {
		char *kp;

		if (strcmp(refs[i].key, refs[i - 1].key) != 0)
			continue;
		if (path == NULL)
			path = ps_path(ps);
		kp = cfg__path_join(path, refs[i].key);
		cfg__ld_err(ps->ld, cfg__map_key(m, refs[i].pair), kp, "duplicate key");
		free(kp);
		drop[refs[i].pair] = true;
	}
	for (size_t i = 0; i < n; i++) {
		if (drop[i]) {
			cfg__node_free(m->kids[2 * i]);
			cfg__node_free(m->kids[2 * i + 1]);
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
			cfg__ld_err_at(ps->ld, NULL, line, col, "(root)", "only one YAML document is allowed");
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
struct node *
cfg__parse_yaml(struct ld *ld, const char *text, size_t len, bool *failed)
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
			cfg__ld_err_at(ld, NULL, (int)parser.problem_mark.line + 1,
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
		cfg__node_free(ps.root);
		return NULL;
	}
	return ps.root;
}
