/* config_compat: llama-swap's newer config keys and flags, taken as llama-swap means them:
 * capabilities, filters.setParamsByID, routing (groups, matrix, FIFO priority), matrix,
 * selectors, logToStdout, upstream.ignorePaths, and -tls-cert-file/-tls-key-file.
 *
 * config.c stays the loader: it hands each of these blocks over as JSON with the place it was
 * written (after env and macro expansion) and calls cfg_compat_finish once the models and
 * groups are loaded. What they mean is kept in cfg->compat and cfg_model->compat, and asked
 * through the functions below (pure: no I/O, no global state; unit-tested). */
#ifndef MODELMUX_CONFIG_COMPAT_H
#define MODELMUX_CONFIG_COMPAT_H

#include <stdbool.h>
#include <stddef.h>

#include "modelmux/config.h"

struct cJSON;

#define COMPAT_MAX_SET_EXPR      4096 /* bytes of one matrix set's expression */
#define COMPAT_MAX_SET_ALTS      4096 /* combinations all sets expand to together */
#define COMPAT_MAX_SET_DEPTH     16   /* ( ) nesting and +ref inlining in one expression */
#define COMPAT_MAX_VAR_BYTES     32   /* a matrix var's name: [A-Za-z0-9.-]{1,32} */
#define COMPAT_MAX_IGNORE_PATHS  64   /* upstream.ignorePaths entries */
#define COMPAT_DEF_IGNORE_PATH   ".*\\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$"

/* Where a block was written, so messages read "file:line:col: key: reason". */
struct cfg_compat_at {
	const char *file;
	int         line, col;
};

/* How this module reports: `path` is the dotted key; warn false is an error. */
struct cfg_compat_report {
	void (*fn)(void *arg, const struct cfg_compat_at *at, bool warn, const char *path,
	    const char *msg);
	void  *arg;
};

enum { COMPAT_MOD_TEXT = 1, COMPAT_MOD_AUDIO = 2, COMPAT_MOD_IMAGE = 4 };

/* A model's capabilities: block (llama-swap renders it into /v1/models). */
struct cfg_caps {
	bool      set;            /* the block was given */
	unsigned  in, out;        /* COMPAT_MOD_* */
	bool      tools, reranker;
	long long context;        /* tokens; 0 = not given */
};

struct cfg_model_compat {
	struct cfg_caps caps;
	struct cJSON   *params_by_id; /* filters.setParamsByID: requested name → object; or NULL */
};

enum compat_log_to {
	COMPAT_LOG_PROXY = 0,     /* the daemon's own lines only (llama-swap's default) */
	COMPAT_LOG_UPSTREAM,      /* the models' output only */
	COMPAT_LOG_BOTH,
	COMPAT_LOG_NONE,
};

enum compat_strategy {
	COMPAT_SEL_PIN = 0,       /* always the first target */
	COMPAT_SEL_WARM,          /* a target already ready (then starting), else the first */
	COMPAT_SEL_SPILLOVER,     /* the least busy running target until each has `spillover`
	                           * requests, then the next cold one */
};

struct cfg_selector {
	char                  *id;
	enum compat_strategy   strategy;
	char                 **targets;     /* as written (ids or aliases), NULL-terminated */
	int                    spillover;   /* >= 1 (default 1) */
	char                  *name, *description;
	bool                   unlisted;
	struct cJSON          *metadata;    /* or NULL */
};

struct cfg_compat {
	enum compat_log_to     log_to;
	struct cJSON          *routing, *matrix, *selectors, *upstream; /* as given, until finish */
	struct cfg_compat_at   routing_at, matrix_at, selectors_at, upstream_at;
	bool                   use_matrix;   /* eviction by matrix sets instead of groups */
	size_t                 nalts;        /* matrix: expanded combinations, in definition order */
	unsigned char        **alts;         /* each a bitset over cfg->models (by index) */
	int                   *evict_cost;   /* per model index; default 1 */
	int                   *priority;     /* per model index: FIFO priority (default 0) */
	struct cfg_selector   *sel;
	size_t                 nsel;
	void                  *ignore;       /* compiled upstream.ignorePaths (regex_t[]) */
	size_t                 nignore;
};

/* Top-level `key` (routing, matrix, selectors, logToStdout, upstream) as JSON (borrowed). */
void cfg_compat_top(struct cfg *c, const char *key, const struct cJSON *v,
    const struct cfg_compat_at *at, const struct cfg_compat_report *r);
/* A model's `capabilities` or `filters.setParamsByID` (`path` ends with the key). Keys of
 * setParamsByID become aliases of the model (appended to m->aliases). */
void cfg_compat_model(struct cfg_model *m, const char *path, const struct cJSON *v,
    const struct cfg_compat_at *at, const struct cfg_compat_report *r);
/* Once models and groups are loaded: names are checked against them; matrix, selectors,
 * priorities and ignorePaths are built. */
void cfg_compat_finish(struct cfg *c, const struct cfg_compat_report *r);
/* Where routing keeps groups: the key path config.c uses in place of top-level `groups`
 * when that is absent ({"routing","router","settings","groups",NULL}). */
extern const char *const cfg_compat_routing_groups[];

void cfg_compat_free(struct cfg *c);
void cfg_compat_model_free(struct cfg_model *m);

/* --- questions the daemon asks --- */

/* logToStdout: are the daemon's own lines / the models' output lines written? */
bool cfg_compat_log_proxy(const struct cfg *c);
bool cfg_compat_log_upstream(const struct cfg *c);

/* The parameters filters.setParamsByID sets when a request names the model `requested`
 * (borrowed), or NULL. */
const struct cJSON *cfg_compat_params_by_id(const struct cfg_model *m, const char *requested);

/* A selector by id, or NULL. */
const struct cfg_selector *cfg_compat_selector(const struct cfg *c, const char *id);

/* matrix: loading `x` while the models `running` (indices into c->models) run: may `v` stay?
 * The cheapest expanded set holding x wins (cost: evict_costs of running models outside it;
 * ties by definition order); x in no set runs alone. Without a matrix: true. */
bool cfg_compat_matrix_keeps(const struct cfg *c, size_t x, const size_t *running, size_t n,
    size_t v);
bool cfg_compat_uses_matrix(const struct cfg *c);

/* routing.scheduler.settings.fifo.priority of model index i (0 if none). */
int cfg_compat_priority(const struct cfg *c, size_t i);

/* upstream.ignorePaths: does /upstream/<m><path> match one (so it never starts a model)? */
bool cfg_compat_ignored_path(const struct cfg *c, const char *path);

/* Context length known for m: capabilities.context, else -c/--ctx-size in its cmd; 0. */
long long cfg_compat_context(const struct cfg_model *m);

/* -tls-cert-file/-tls-key-file: reads and checks the PEM files as tls.cert/tls.key are checked
 * (a certificate, a key without passphrase, the two matching) and puts them in place of the
 * config's tls: block. 0, or -1 with one message in `errs` (the caller frees it). */
int cfg_compat_tls_files(struct cfg *c, const char *cert, const char *key, struct cfg_errs *errs);

#endif
