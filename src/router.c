/* router: endpoint classification, model extraction and JSON body rewrites. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "modelmux/config_compat.h"
#include "modelmux/router.h"
#include "modelmux/ui.h"
#include "modelmux/util.h"
#include "router_int.h"

#define UPSTREAM_PREFIX "/upstream/"

/* How a table path meets a request path. */
enum route_match {
	MATCH_EXACT = 0, /* the same */
	MATCH_PREFIX,    /* starts with it and goes on (/api/models/load/<model>, /upstream/…) */
	MATCH_TREE,      /* the same, or it then "/<more>" (/logs/stream/<model>) */
	MATCH_START,     /* starts with it (/upstream/: what follows is checked later) */
};

#define GET_HEAD (ROUTE_GET | ROUTE_HEAD)
#define JSON(path, ep)      { path, MATCH_EXACT, { ROUTE_JSON_MODEL, ep, ROUTE_USER, BODY_JSON, OP_NONE, ROUTE_POST } }
#define QUERY(path, ep)     { path, MATCH_EXACT, { ROUTE_QUERY_MODEL, ep, ROUTE_USER, BODY_JSON, OP_NONE, GET_HEAD } }
#define MULTIPART(path, ep) { path, MATCH_EXACT, { ROUTE_MULTIPART_MODEL, ep, ROUTE_USER, BODY_SPOOL, OP_NONE, ROUTE_POST } }
#define API(path, m, op, scope, methods) { path, m, { ROUTE_API, "api", scope, BODY_NONE, op, methods } }
#define FEED(path, m, op)   { path, m, { ROUTE_FEED, "api", ROUTE_ADMIN, BODY_NONE, op, ROUTE_GET } }

static const struct {
	const char      *path;
	enum route_match match;
	struct route     r;
} routes[] = {
	/* Model routes: the JSON body's "model" names the model (llama-swap's list). */
	JSON("/v1/chat/completions", "chat"),
	JSON("/v1/completions", "completions"),
	JSON("/v1/embeddings", "embeddings"),
	JSON("/v1/responses", "responses"),
	JSON("/v1/messages", "messages"),
	JSON("/v1/messages/count_tokens", "count_tokens"),
	JSON("/v1/rerank", "rerank"),
	JSON("/v1/reranking", "rerank"),
	JSON("/rerank", "rerank"),
	JSON("/reranking", "rerank"),
	JSON("/infill", "infill"),
	JSON("/completion", "completion"),
	JSON("/v1/audio/speech", "speech"),
	JSON("/v1/images/generations", "images"),
	/* ?model= names the model (GET); a POST's JSON body does (llama-swap routes both). */
	QUERY("/v1/audio/voices", "voices"),
	JSON("/v1/audio/voices", "voices"),
	QUERY("/props", "props"),
	/* The multipart "model" field names the model. */
	MULTIPART("/v1/audio/transcriptions", "transcriptions"),
	MULTIPART("/v1/audio/translations", "translations"),
	MULTIPART("/v1/images/edits", "image_edits"),
	/* Raw passthrough: the path names the model. */
	{ UPSTREAM_PREFIX, MATCH_START,
	  { ROUTE_UPSTREAM, "upstream", ROUTE_USER, BODY_SPOOL, OP_NONE, ROUTE_ANY } },
	/* Management. */
	API("/health", MATCH_EXACT, OP_HEALTH, ROUTE_OPEN, GET_HEAD),
	API("/health/ready", MATCH_EXACT, OP_READY, ROUTE_ADMIN, GET_HEAD),
	API("/api/health", MATCH_EXACT, OP_API_HEALTH, ROUTE_ADMIN, GET_HEAD),
	API("/health/model/", MATCH_PREFIX, OP_MODEL_READY, ROUTE_USER, GET_HEAD),
	API("/api/version", MATCH_EXACT, OP_VERSION, ROUTE_ADMIN, GET_HEAD),
	API("/v1/models", MATCH_EXACT, OP_MODELS, ROUTE_USER, GET_HEAD),
	API("/models", MATCH_EXACT, OP_MODELS, ROUTE_USER, GET_HEAD),
	API("/running", MATCH_EXACT, OP_RUNNING, ROUTE_ADMIN, GET_HEAD),
	API("/metrics", MATCH_EXACT, OP_METRICS, ROUTE_ADMIN, GET_HEAD),
	API("/logs", MATCH_EXACT, OP_LOGS, ROUTE_ADMIN, GET_HEAD),
	API("/unload", MATCH_EXACT, OP_UNLOAD_ALL, ROUTE_ADMIN, ROUTE_GET | ROUTE_POST),
	API("/api/models/load/", MATCH_PREFIX, OP_LOAD, ROUTE_ADMIN, ROUTE_POST),
	API("/api/models/unload", MATCH_TREE, OP_UNLOAD, ROUTE_ADMIN, ROUTE_POST),
	API("/api/activity", MATCH_EXACT, OP_ACTIVITY, ROUTE_ADMIN, GET_HEAD),
	FEED("/logs/stream", MATCH_TREE, OP_LOG_FEED),
	FEED("/api/events", MATCH_EXACT, OP_EVENTS),
	/* The web page: its files need no key (they hold no data; what they fetch does). */
	{ "/", MATCH_EXACT, { ROUTE_STATIC, "ui", ROUTE_OPEN, BODY_NONE, OP_UI_ROOT, GET_HEAD } },
	{ "/ui", MATCH_EXACT, { ROUTE_STATIC, "ui", ROUTE_OPEN, BODY_NONE, OP_NONE, GET_HEAD } },
	{ "/ui/", MATCH_START, { ROUTE_STATIC, "ui", ROUTE_OPEN, BODY_NONE, OP_NONE, GET_HEAD } },
};

static const struct route no_route = { ROUTE_NONE, "api", ROUTE_ADMIN, BODY_NONE, OP_NONE, ROUTE_ANY };

static bool
path_matches(const char *path, const char *want, enum route_match m)
{
	size_t n = strlen(want);

	switch (m) {
	case MATCH_EXACT:
		return strcmp(path, want) == 0;
	case MATCH_PREFIX:
		return strncmp(path, want, n) == 0 && path[n] != '\0';
	case MATCH_TREE:
		return strncmp(path, want, n) == 0 &&
		    (path[n] == '\0' || (path[n] == '/' && path[n + 1] != '\0'));
	case MATCH_START:
		return strncmp(path, want, n) == 0;
	}
	return false;
}

static unsigned
method_bit(const char *method)
{
	if (strcmp(method, "GET") == 0)
		return ROUTE_GET;
	if (strcmp(method, "HEAD") == 0)
		return ROUTE_HEAD;
	if (strcmp(method, "POST") == 0)
		return ROUTE_POST;
	return 1u << 31; /* any other: only ROUTE_ANY routes take it */
}

/* The first row of the path whose methods take this one; else the path's first row, with
 * *method_ok false (a path may have a row per method: /v1/audio/voices). */
struct route
router_match(const char *method, const char *path, bool *method_ok)
{
	const struct route *first = NULL;

	for (size_t i = 0; i < MM_ARRAY_LEN(routes); i++) {
		if (!path_matches(path, routes[i].path, routes[i].match))
			continue;
		if (routes[i].r.methods == ROUTE_ANY || (routes[i].r.methods & method_bit(method)) != 0) {
			*method_ok = true;
			return routes[i].r;
		}
		if (first == NULL)
			first = &routes[i].r;
	}
	*method_ok = first == NULL;
	return first ? *first : no_route;
}

struct route
router_match_head(const char *method, const char *path, const char *accept, bool *method_ok)
{
	struct route r = router_match(method, path, method_ok);

	if (r.op == OP_UI_ROOT && (!*method_ok || !ui_prefers_html(accept))) {
		*method_ok = true;
		return no_route;
	}
	return r;
}

const char *
router_allow(const struct route *r)
{
	return (r->methods & ROUTE_POST) ? "POST" : "GET";
}

int
router_query_param(const char *query, const char *name, char *out, size_t n)
{
	size_t nl = strlen(name);

	for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		size_t o = 0;

		if (strncmp(p, name, nl) != 0 || p[nl] != '=')
			continue;
		for (p += nl + 1; *p && *p != '&'; p++) {
			int c = (unsigned char)*p;

			if (c == '%') {
				int hi = hex_digit((unsigned char)p[1]);
				int lo = hi < 0 ? -1 : hex_digit((unsigned char)p[2]);

				if (hi < 0 || lo < 0)
					return -1;
				c = hi * 16 + lo;
				p += 2;
			} else if (c == '+') {
				c = ' ';
			}
			if (c == 0 || o + 1 >= n)
				return -1;
			out[o++] = (char)c;
		}
		out[o] = '\0';
		return (int)o;
	}
	return -1;
}

char *
router_query_set(const char *query, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t            nl = strlen(name);
	struct buf        b = { 0 };

	for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		const char *end;

		if (strncmp(p, name, nl) != 0 || p[nl] != '=')
			continue;
		end = p + nl + 1 + strcspn(p + nl + 1, "&");
		buf_printf(&b, "%.*s", (int)(p + nl + 1 - query), query);
		for (const unsigned char *v = (const unsigned char *)value; *v; v++) {
			if ((*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') || (*v >= '0' && *v <= '9') ||
			    *v == '-' || *v == '.' || *v == '_' || *v == '~')
				buf_printf(&b, "%c", *v);
			else
				buf_printf(&b, "%%%c%c", hex[*v >> 4], hex[*v & 15]);
		}
		buf_printf(&b, "%s", end);
		return b.data;
	}
	return NULL;
}

/* Does `s` continue with `name` followed by '/' or its end? */
static bool
name_prefix(const char *s, const char *name, size_t *len)
{
	size_t n = strlen(name);

	if (strncmp(s, name, n) != 0 || (s[n] != '/' && s[n] != '\0'))
		return false;
	*len = n;
	return true;
}

int
router_upstream(const struct cfg *c, const char *path, const struct cfg_model **m,
    const char **rest)
{
	const char *s = path + sizeof(UPSTREAM_PREFIX) - 1;
	size_t      best = 0, n;

	*m = NULL;
	if (strncmp(path, UPSTREAM_PREFIX, sizeof(UPSTREAM_PREFIX) - 1) != 0)
		return -1;
	for (size_t i = 0; i < c->nmodels; i++) {
		const struct cfg_model *cm = &c->models[i];

		if (name_prefix(s, cm->id, &n) && n > best) {
			best = n;
			*m = cm;
		}
		for (char **a = cm->aliases; a && *a; a++) {
			if (name_prefix(s, *a, &n) && n > best) {
				best = n;
				*m = cm;
			}
		}
	}
	if (*m == NULL)
		return -1;
	*rest = s + best;
	return 0;
}

/* Is the nesting of a JSON text within the limit? Counts brackets outside strings, so the
 * check runs before any allocation. */
bool
router__depth_ok(const char *s, size_t len, int max)
{
	int  depth = 0;
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
		} else if (c == '"') {
			in_str = true;
		} else if (c == '{' || c == '[') {
			if (++depth > max)
				return false;
		} else if (c == '}' || c == ']') {
			depth--;
		}
	}
	return true;
}

struct key_scratch {
	const char **v;
	size_t       cap;
};

static int
key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Finds a key repeated within one object anywhere in the tree (cJSON reads the first, most
 * backends the last, so the backend would not see the model and rewrites we saw). Returns 1
 * and sets *dup, 0 when there is none, -1 when out of memory. */
static int
repeated_key(const cJSON *node, struct key_scratch *ks, const char **dup)
{
	const cJSON *it;
	size_t       n = 0;
	int          r;

	if (cJSON_IsObject(node)) {
		cJSON_ArrayForEach(it, node) {
			if (n == ks->cap) {
				size_t       cap = ks->cap ? 2 * ks->cap : 16;
				const char **v = try_realloc(ks->v, cap * sizeof(*v));

				if (v == NULL)
					return -1;
				ks->v = v;
				ks->cap = cap;
			}
			ks->v[n++] = it->string;
		}
		if (n > 1)
			qsort(ks->v, n, sizeof(*ks->v), key_cmp);
		for (size_t i = 1; i < n; i++) {
			if (strcmp(ks->v[i - 1], ks->v[i]) == 0) {
				*dup = ks->v[i];
				return 1;
			}
		}
	}
	cJSON_ArrayForEach(it, node) {
		if ((r = repeated_key(it, ks, dup)) != 0)
			return r;
	}
	return 0;
}

struct cJSON *
router_json_model(const char *body, size_t len, int max_depth, const char **model, char *err,
    size_t errlen)
{
	struct key_scratch ks = { 0 };
	cJSON             *doc;
	const cJSON       *m;
	const char        *dup = NULL, *end = NULL;
	int                r;

	*model = NULL;
	if (len == 0) {
		snprintf(err, errlen, "request body is empty; expected a JSON object with a \"model\" field");
		return NULL;
	}
	if (!router__depth_ok(body, len, max_depth)) {
		snprintf(err, errlen, "request body nests deeper than %d levels", max_depth);
		return NULL;
	}
	if ((doc = cJSON_ParseWithLengthOpts(body, len, &end, false)) == NULL) {
		snprintf(err, errlen, "request body is not valid JSON");
		return NULL;
	}
	/* cJSON stops after the first value: anything but white space after it is not JSON. */
	for (; end < body + len; end++)
		if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
			snprintf(err, errlen, "request body is not valid JSON");
			goto fail;
		}
	if (!cJSON_IsObject(doc)) {
		snprintf(err, errlen, "request body must be a JSON object");
		goto fail;
	}
	if ((r = repeated_key(doc, &ks, &dup)) != 0) {
		if (r == 1)
			snprintf(err, errlen, "request body repeats the key \"%.64s\" in one object", dup);
		else
			snprintf(err, errlen, "request body is too large to check");
		goto fail;
	}
	m = cJSON_GetObjectItemCaseSensitive(doc, "model");
	if (m == NULL) {
		snprintf(err, errlen, "missing \"model\" field");
		goto fail;
	}
	if (!cJSON_IsString(m) || m->valuestring[0] == '\0') {
		snprintf(err, errlen, "\"model\" must be a non-empty string");
		goto fail;
	}
	*model = m->valuestring;
	free(ks.v);
	return doc;
fail:
	free(ks.v);
	cJSON_Delete(doc);
	return NULL;
}

/* --- router_json_peek: a strict JSON scanner that keeps nothing but the top-level model --- */

#define PEEK_MAX_DEPTH 1024 /* the config's maxJsonDepth bound */

struct peek {
	const char *s;
	size_t      n, i;
};

static void
peek_ws(struct peek *p)
{
	while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
	    p->s[p->i] == '\r'))
		p->i++;
}

static bool
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The 4 hex digits at s[at], or a value past 0xffff when they are not there. */
static unsigned
hex4(const struct peek *p, size_t at)
{
	unsigned v = 0;

	if (p->n < at || p->n - at < 4)
		return 0x10000;
	for (size_t k = 0; k < 4; k++) {
		char c = p->s[at + k];

		if (!is_hex(c))
			return 0x10000;
		v = v << 4 | (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
	}
	return v;
}

/* A string at p->i (on its opening quote). Sets [*a, *z) to its raw contents and *esc when it
 * holds an escape. */
static bool
peek_string(struct peek *p, size_t *a, size_t *z, bool *esc)
{
	*esc = false;
	*a = ++p->i;
	while (p->i < p->n) {
		unsigned char c = (unsigned char)p->s[p->i];

		if (c == '"') {
			*z = p->i++;
			return true;
		}
		if (c < 0x20)
			return false;
		if (c == '\\') {
			*esc = true;
			if (++p->i >= p->n)
				return false;
			c = (unsigned char)p->s[p->i];
			if (c == 'u') {
				unsigned u = hex4(p, p->i + 1);

				/* As cJSON decodes: a high surrogate needs a low one after it, and a low
				 * one alone is an error. */
				if (u > 0xffff || (u >= 0xdc00 && u <= 0xdfff))
					return false;
				p->i += 4;
				if (u >= 0xd800 && u <= 0xdbff) {
					unsigned lo;

					if (p->n - p->i < 3 || p->s[p->i + 1] != '\\' || p->s[p->i + 2] != 'u' ||
					    (lo = hex4(p, p->i + 3)) < 0xdc00 || lo > 0xdfff)
						return false;
					p->i += 6;
				}
			} else if (strchr("\"\\/bfnrt", c) == NULL || c == '\0') {
				return false;
			}
		}
		p->i++;
	}
	return false;
}

static bool
peek_digits(struct peek *p)
{
	size_t start = p->i;

	while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
		p->i++;
	return p->i > start;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool
peek_number(struct peek *p)
{
	if (p->s[p->i] == '-')
		p->i++;
	if (p->i < p->n && p->s[p->i] == '0')
		p->i++;
	else if (!peek_digits(p))
		return false;
	if (p->i < p->n && p->s[p->i] == '.') {
		p->i++;
		if (!peek_digits(p))
			return false;
	}
	if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
		p->i++;
		if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
			p->i++;
		if (!peek_digits(p))
			return false;
	}
	return true;
}

static bool
peek_literal(struct peek *p, const char *lit)
{
	size_t k = strlen(lit);

	if (p->n - p->i < k || memcmp(p->s + p->i, lit, k) != 0)
		return false;
	p->i += k;
	return true;
}

int
router_json_peek(const char *body, size_t len, int max_depth, struct router_peek *out, char *err,
    size_t errlen)
{
	/* The open containers: '{' or '['. */
	char        stack[PEEK_MAX_DEPTH];
	int         depth = 0;
	struct peek p = { body, len, 0 };
	enum { V_VALUE, V_AFTER, V_KEY, V_FIRST_KEY, V_FIRST_ITEM } st = V_VALUE;
	enum { K_OTHER, K_MODEL, K_STREAM } key = K_OTHER; /* the top-level key whose value is next */
	bool        have_model = false, have_stream = false, undecided = false;

	memset(out, 0, sizeof(*out));
	if (len == 0) {
		snprintf(err, errlen, "request body is empty; expected a JSON object with a \"model\" field");
		return -1;
	}
	if (max_depth > PEEK_MAX_DEPTH)
		max_depth = PEEK_MAX_DEPTH;
	peek_ws(&p);
	if (p.i >= p.n || p.s[p.i] != '{')
		goto not_object;
	for (;;) {
		size_t a, z;
		bool   esc;
		char   c;

		peek_ws(&p);
		if (p.i >= p.n)
			goto invalid;
		c = p.s[p.i];
		switch (st) {
		case V_FIRST_KEY:
			if (c == '}') {
				p.i++;
				depth--;
				st = V_AFTER;
				break;
			}
			/* FALLTHROUGH */
		case V_KEY:
			if (c != '"' || !peek_string(&p, &a, &z, &esc))
				goto invalid;
			key = K_OTHER;
			if (depth == 1) {
				if (esc) /* a key cJSON would decode: maybe an escaped "model" */
					undecided = true;
				else if (z - a == 5 && memcmp(body + a, "model", 5) == 0)
					key = K_MODEL;
				else if (z - a == 6 && memcmp(body + a, "stream", 6) == 0)
					key = K_STREAM;
			}
			peek_ws(&p);
			if (p.i >= p.n || p.s[p.i] != ':')
				goto invalid;
			p.i++;
			st = V_VALUE;
			break;
		case V_FIRST_ITEM:
			if (c == ']') {
				p.i++;
				depth--;
				st = V_AFTER;
				break;
			}
			/* FALLTHROUGH */
		case V_VALUE:
			if (key == K_MODEL && have_model)
				undecided = true;
			if (key == K_STREAM && have_stream)
				undecided = true;
			if (c == '{' || c == '[') {
				if (depth >= max_depth) {
					snprintf(err, errlen, "request body nests deeper than %d levels", max_depth);
					return -1;
				}
				stack[depth++] = c;
				p.i++;
				if (key == K_MODEL)
					goto bad_model;
				st = c == '{' ? V_FIRST_KEY : V_FIRST_ITEM;
				key = K_OTHER;
				break;
			}
			if (c == '"') {
				if (!peek_string(&p, &a, &z, &esc))
					goto invalid;
				if (key == K_MODEL) {
					if (z == a)
						goto bad_model;
					if (esc || z - a >= sizeof(out->model))
						undecided = true;
					else
						memcpy(out->model, body + a, z - a);
					have_model = true;
				}
			} else if (c == '-' || (c >= '0' && c <= '9')) {
				if (!peek_number(&p))
					goto invalid;
			} else if (c == 't') {
				if (!peek_literal(&p, "true"))
					goto invalid;
				if (key == K_STREAM)
					out->stream = true;
			} else if ((c == 'f' && !peek_literal(&p, "false")) ||
			    (c == 'n' && !peek_literal(&p, "null")) || (c != 'f' && c != 'n')) {
				goto invalid;
			}
			if (key == K_MODEL && c != '"')
				goto bad_model;
			if (key == K_STREAM)
				have_stream = true;
			key = K_OTHER;
			st = V_AFTER;
			break;
		case V_AFTER:
			if (depth == 0) {
				/* One object, then only white space. */
				peek_ws(&p);
				if (p.i != p.n)
					goto invalid;
				goto done;
			}
			if (c == ',') {
				p.i++;
				st = stack[depth - 1] == '{' ? V_KEY : V_VALUE;
			} else if (c == (stack[depth - 1] == '{' ? '}' : ']')) {
				p.i++;
				depth--;
			} else {
				goto invalid;
			}
			break;
		}
		if (st == V_AFTER && depth == 0) {
			peek_ws(&p);
			if (p.i != p.n)
				goto invalid;
			goto done;
		}
	}
done:
	if (undecided)
		return 0;
	if (!have_model) {
		snprintf(err, errlen, "missing \"model\" field");
		return -1;
	}
	return 1;
bad_model:
	snprintf(err, errlen, "\"model\" must be a non-empty string");
	return -1;
not_object:
	/* Not an object at the top: valid JSON of another kind, or not JSON at all. */
	snprintf(err, errlen, "request body must be a JSON object");
	return 0; /* the full parse tells which, with its own words */
invalid:
	snprintf(err, errlen, "request body is not valid JSON");
	return -1;
}

bool
router_rewrites(const struct cfg_model *m)
{
	return m->use_model_name != NULL || (m->strip_params != NULL && m->strip_params[0] != NULL) ||
	    m->set_params != NULL || (m->compat != NULL && m->compat->params_by_id != NULL);
}

/* Walks a dotted path ("a.b.c") to the object holding its last segment. Returns that object
 * and sets *last to the segment (within the caller's copy), or NULL. */
static cJSON *
walk_path(cJSON *doc, char *path, char **last, bool create)
{
	cJSON *obj = doc;
	char  *seg = path, *dot;

	while ((dot = strchr(seg, '.')) != NULL) {
		cJSON *next;

		*dot = '\0';
		next = cJSON_GetObjectItemCaseSensitive(obj, seg);
		if (next == NULL && create)
			next = cJSON_AddObjectToObject(obj, seg);
		if (!cJSON_IsObject(next))
			return NULL;
		obj = next;
		seg = dot + 1;
	}
	*last = seg;
	return obj;
}

bool
router_rewrite_json(struct cJSON *doc, const struct cfg_model *m)
{
	const cJSON *req = cJSON_GetObjectItemCaseSensitive(doc, "model");
	/* setParamsByID is keyed by the name the client used (before useModelName). */
	const cJSON *by_id = cJSON_IsString(req) ? cfg_compat_params_by_id(m, req->valuestring) : NULL;
	bool         changed = false;

	if (m->use_model_name != NULL) {
		cJSON_ReplaceItemInObjectCaseSensitive(doc, "model", cJSON_CreateString(m->use_model_name));
		changed = true;
	}
	for (char **p = m->strip_params; p && *p; p++) {
		char  *path = xstrdup(*p), *last;
		cJSON *obj;

		if (strcmp(path, "model") != 0 && (obj = walk_path(doc, path, &last, false)) != NULL &&
		    cJSON_GetObjectItemCaseSensitive(obj, last) != NULL) {
			cJSON_DeleteItemFromObjectCaseSensitive(obj, last);
			changed = true;
		}
		free(path);
	}
	/* setParams, then setParamsByID over it (llama-swap's order). */
	for (int pass = 0; pass < 2; pass++) {
		const cJSON *set = pass == 0 ? m->set_params : by_id;
		/* Sorted key order, so overlapping paths resolve the same way every time. */
		size_t       n, k = 0;
		const cJSON **items;
		const cJSON *it;

		if (set == NULL)
			continue;
		n = (size_t)cJSON_GetArraySize(set);
		items = xcalloc(n ? n : 1, sizeof(*items));
		cJSON_ArrayForEach(it, set)
			items[k++] = it;
		for (size_t i = 1; i < k; i++)
			for (size_t j = i; j > 0 && strcmp(items[j - 1]->string, items[j]->string) > 0; j--) {
				const cJSON *t = items[j];

				items[j] = items[j - 1];
				items[j - 1] = t;
			}
		for (size_t i = 0; i < k; i++) {
			char  *path = xstrdup(items[i]->string), *last;
			cJSON *obj;

			if (strcmp(path, "model") != 0 && (obj = walk_path(doc, path, &last, true)) != NULL) {
				cJSON *v = cJSON_Duplicate(items[i], true);

				if (cJSON_GetObjectItemCaseSensitive(obj, last) != NULL)
					cJSON_ReplaceItemInObjectCaseSensitive(obj, last, v);
				else
					cJSON_AddItemToObject(obj, last, v);
				changed = true;
			}
			free(path);
		}
		free(items);
	}
	return changed;
}
