/* router: method + path → endpoint kind; the model a request names; the model's body rewrites.
 * Pure functions (no I/O, no global state): unit-tested and fuzzed. */
#ifndef MODELMUX_ROUTER_H
#define MODELMUX_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "modelmux/config.h"
#include "modelmux/util.h"

struct cJSON;

#define ROUTER_MAX_JSON_DEPTH 64 /* nesting accepted in a request body */
#define ROUTER_MAX_TOKEN_COUNT 1e15 /* larger (or negative) usage counts are ignored */

/* What a route is; http answers each kind its own way. */
enum route_kind {
	ROUTE_NONE = 0,        /* no such route: 404, before any body is read */
	ROUTE_API,             /* management: answered by api (route.op) */
	ROUTE_FEED,            /* a live feed (/logs/stream[/<model>], /api/events): http streams it */
	ROUTE_JSON_MODEL,      /* POST, JSON body with a "model" field */
	ROUTE_UPSTREAM,        /* /upstream/<model>/<path>: any method, raw passthrough */
	ROUTE_QUERY_MODEL,     /* GET, the model in the ?model= query parameter */
	ROUTE_MULTIPART_MODEL, /* POST multipart/form-data, the model in its "model" field */
	ROUTE_STATIC,          /* the web page's files (ui.h), and "/" for a browser */
};

/* The key a route needs when keys are configured. */
enum route_scope {
	ROUTE_OPEN = 0, /* none (/health) */
	ROUTE_USER,     /* a plain key: model routes and the model list */
	ROUTE_ADMIN,    /* an admin key: management routes (and unknown paths) */
};

/* What happens to a request body. */
enum route_body {
	BODY_NONE = 0,  /* none taken: a few bytes are tolerated and dropped, more is 413 */
	BODY_JSON,      /* kept in memory up to limits.maxJsonBodyBytes */
	BODY_SPOOL,     /* spooled as it streams (memory, then an unlinked file) and sent on */
};

/* Management operations, for api. */
enum route_op {
	OP_NONE = 0,
	OP_HEALTH,        /* GET /health */
	OP_READY,         /* GET /health/ready */
	OP_LOGS,          /* GET /logs */
	OP_METRICS,       /* GET /metrics */
	OP_API_HEALTH,    /* GET /api/health */
	OP_MODELS,        /* GET /v1/models, /models */
	OP_RUNNING,       /* GET /running */
	OP_UNLOAD_ALL,    /* GET /unload: llama-swap's; unloads every model, answers "OK" */
	OP_VERSION,       /* GET /api/version */
	OP_LOAD,          /* POST /api/models/load/<model> */
	OP_UNLOAD,        /* POST /api/models/unload[/<model>] */
	OP_LOG_FEED,      /* GET /logs/stream[/<model>] */
	OP_EVENTS,        /* GET /api/events */
	OP_ACTIVITY,      /* GET /api/activity: the last requests (activity.h) */
	OP_UI_ROOT,       /* GET / from a browser: to /ui/ */
	OP_MODEL_READY,   /* GET /health/model/<model>: is it loaded here (for load balancers) */
};

#define ROUTE_GET  (1u << 0)
#define ROUTE_HEAD (1u << 1)
#define ROUTE_POST (1u << 2)
#define ROUTE_ANY  0u

/* One row of the route table: every path modelmux answers, in one place (router.c). */
struct route {
	enum route_kind  kind;
	const char      *endpoint; /* label for logs and metrics, e.g. "chat"; "api" for the rest */
	enum route_scope scope;
	enum route_body  body;
	enum route_op    op;
	unsigned         methods;  /* ROUTE_GET | …; ROUTE_ANY = every method */
};

/* Classifies a request path (without the query string). Never fails: an unknown path is
 * ROUTE_NONE (scope admin, no body). *method_ok is false when the path is known but the method
 * is not one of its own. */
struct route router_match(const char *method, const char *path, bool *method_ok);

/* router_match, then "/" is a route only for a browser's GET or HEAD (an Accept that prefers
 * text/html): it is sent to the web page; anyone else meets ROUTE_NONE there, as before. */
struct route router_match_head(const char *method, const char *path, const char *accept,
    bool *method_ok);

/* The method a route wants, for a 405's Allow header and message ("POST"). */
const char *router_allow(const struct route *r);

/* Splits "/upstream/<model>/<rest>" (raw path): finds the longest model id or alias that the
 * path continues with (ids may hold '/'), sets *m and *rest (pointing into path, after the
 * model, starting with '/' or empty). Returns 0, or -1 when no model matches. *rest == "" means
 * "/upstream/<model>" without a trailing slash: the caller redirects. */
int router_upstream(const struct cfg *c, const char *path, const struct cfg_model **m,
    const char **rest);

/* Finds the value of `name` in a raw query string ("a=1&model=x%2Fy"), percent-decoded (and
 * '+' as space) into out[n]. Returns its length, or -1 when absent, malformed or too long. */
int router_query_param(const char *query, const char *name, char *out, size_t n);
/* A copy of the raw query with the value of the first `name` parameter replaced by `value`
 * (percent-encoded), the rest as it was; the caller frees it. NULL when `name` is absent. */
char *router_query_set(const char *query, const char *name, const char *value);

/* Parses a JSON request body and finds its model. Returns the document (caller frees with
 * cJSON_Delete) and sets *model (owned by the document), or NULL with a client-facing reason
 * in err: not JSON, not an object, too deep, a key repeated within one object (the backend
 * might read the other one), no "model" string. */
struct cJSON *router_json_model(const char *body, size_t len, int max_depth, const char **model,
    char *err, size_t errlen);

#define ROUTER_PEEK_MODEL_MAX 256 /* bytes of a model name router_json_peek returns */

/* What router_json_peek finds at a JSON body's top level. */
struct router_peek {
	char model[ROUTER_PEEK_MODEL_MAX];
	bool stream; /* "stream": true */
};

/* Checks a JSON request body (strict RFC 8259 syntax, nesting up to max_depth, one object at the
 * top) and finds its top-level "model" string and "stream" flag without building a tree, so a
 * body the model does not rewrite is forwarded as it came. Returns 1 (found: out is set), 0 when
 * only a full parse can tell (an escape in the model value or in a top-level key, a repeated
 * "model" or "stream", a name too long: use router_json_model), or -1 with the same
 * client-facing reasons as router_json_model. Keys repeated elsewhere are not looked for: a body
 * sent on as it came means to the backend what it meant to the client; a model that rewrites
 * bodies goes through router_json_model, which refuses them. */
int router_json_peek(const char *body, size_t len, int max_depth, struct router_peek *out,
    char *err, size_t errlen);

/* Does the model rewrite request bodies (useModelName, filters)? */
bool router_rewrites(const struct cfg_model *m);

/* Applies the model's rewrites (useModelName, filters.stripParams, filters.setParams, then
 * filters.setParamsByID of the name the document's "model" had on entry) to the document. Returns true when it changed anything (the caller then re-serialises once). */
bool router_rewrite_json(struct cJSON *doc, const struct cfg_model *m);

/* Token counts from a response's "usage" object (OpenAI's prompt_tokens/completion_tokens,
 * or input_tokens/output_tokens; also under "response" or "message" as the Responses and
 * Messages APIs nest it; a count that is negative, not a number or above ROUTER_MAX_TOKEN_COUNT
 * is ignored). `text` is one JSON document (an SSE event's data), or — with
 * tail set — the last bytes of a JSON body, searched for its last "usage" object. Returns
 * true when counts were found. */
bool router_usage(const char *text, size_t len, bool tail, long long *prompt, long long *completion);

#define ROUTER_USAGE_LINE_MAX (64u << 10) /* longest SSE line scanned for usage */
#define ROUTER_USAGE_TAIL     (16u << 10) /* end of a JSON body kept to find its usage */

/* Token usage read out of a response as it streams, keeping at most one SSE line or the end
 * of a JSON body (up to 2 * ROUTER_USAGE_TAIL bytes, of which the last ROUTER_USAGE_TAIL are
 * searched), never the body. Zero-initialise, set `sse`, feed the
 * body with router_usage_feed, call router_usage_end once, free `keep` with buf_free. */
struct router_usage_scan {
	bool       sse;     /* an event stream: every "data:" line is scanned */
	bool       skip;    /* an SSE line too long to keep: skip to its end */
	bool       found;   /* prompt and completion hold counts */
	long long  prompt, completion;
	struct buf keep;    /* the SSE line in progress, or the end of a JSON body */
};

/* Scans the next n bytes of the response body. */
void router_usage_feed(struct router_usage_scan *s, const char *p, size_t n);

/* After the whole body: looks for usage in a JSON body's tail. Returns s->found. */
bool router_usage_end(struct router_usage_scan *s);
/* In place of feeding: a JSON body held whole in p, searched where router_usage_end would
 * search, without a copy. */
void router_usage_body(struct router_usage_scan *s, const char *p, size_t n);

#endif
