/* config: YAML file → immutable, reference-counted snapshot (llama-swap's keys and semantics).
 *
 * Pipeline: libyaml events → node tree with line/column → ${env.X} → macros/${PORT}/${MODEL_ID}
 * → typed tables with defaults and validation. Every error is collected as
 * "file:line:col: key: reason" (key is the dotted path, e.g. models.demo.cmd); nothing stops at
 * the first one. Keys llama-swap has but modelmux does not implement load with a warning naming
 * them; a key neither knows is an error.
 */
#ifndef MODELMUX_CONFIG_H
#define MODELMUX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct cJSON;

/* Limits on the config file itself (untrusted enough to bound). */
#define CFG_MAX_FILE_BYTES   (4u << 20) /* 4 MiB */
#define CFG_MAX_DEPTH        32         /* YAML nesting */
#define CFG_MAX_MODELS       1024
#define CFG_MAX_MACROS       256
#define CFG_MAX_ARGV         4096       /* words in one cmd */
#define CFG_MAX_ID_BYTES     256        /* model id or alias */
#define CFG_MAX_ERRORS       100        /* messages kept; then one "too many errors" */
#define CFG_MAX_EXPANSION_BYTES (4u << 20)  /* bytes ${env.X} and macros may produce in one load */

/* Defaults (llama-swap's unless said). */
#define CFG_DEF_LISTEN               "127.0.0.1:8080" /* ours: loopback, not all interfaces */
#define CFG_DEF_HEALTH_TIMEOUT_S     120
#define CFG_DEF_START_PORT           5800
#define CFG_DEF_UNLOAD_TIMEOUT_S     10
#define CFG_DEF_CONCURRENCY          10
#define CFG_DEF_CHECK_ENDPOINT       "/health"
#define CFG_DEF_PROXY                "http://127.0.0.1:${PORT}"
/* Ours: the scheduler's bounds (queue.*, crashBackoff.*). */
#define CFG_DEF_QUEUE_PER_MODEL      256
#define CFG_DEF_QUEUE_TOTAL          4096
#define CFG_DEF_QUEUE_MAX_WAIT_S     600
#define CFG_DEF_SWAP_BATCH           8
#define CFG_DEF_CRASH_MAX            3
#define CFG_DEF_CRASH_WINDOW_S       60
#define CFG_DEF_CRASH_HOLD_S         30

/* A collected list of messages ("file:line:col: key: reason"). */
struct cfg_errs {
	char  **msgs; /* owned, NULL-terminated once n > 0 */
	size_t  n;
};
void cfg_errs_free(struct cfg_errs *e);

struct cfg_group {
	char  *name;
	bool   swap;       /* default true */
	bool   exclusive;  /* default true */
	bool   persistent; /* default false */
	char **members;    /* model ids, NULL-terminated */
};

struct cfg_model {
	char  *id;
	char **argv;            /* cmd split as llama-swap does, macros resolved; NULL-terminated, argc >= 1 */
	char **stop_argv;       /* cmdStop split the same way, "${PID}" kept literally; NULL if unset */
	char  *proxy;           /* base URL without trailing '/' */
	int    port;            /* the ${PORT} allocated to this model, 0 if none */
	char **aliases;         /* NULL-terminated (possibly empty) */
	char **env;             /* "K=V" entries, NULL-terminated; appended to the daemon's environment */
	char  *check_endpoint;  /* path starting with '/'; NULL when the config says "none" */
	char  *name;            /* may be NULL */
	char  *description;     /* may be NULL */
	char  *use_model_name;  /* may be NULL */
	bool   unlisted;
	int    ttl_s;           /* -1 = use globalTTL, 0 = never, > 0 idle seconds */
	int    unload_timeout_s;        /* 0 = use the global value */
	int    health_check_timeout_s;  /* 0 = use the global value (ours: per model) */
	int    concurrency_limit;       /* 0 = CFG_DEF_CONCURRENCY */
	int    load_stall_timeout_s;    /* loadStallTimeout: -1 = use global, 0 = off */
	int    send_loading_state;      /* -1 = inherit global, 0 false, 1 true */
	char **strip_params;            /* filters.stripParams split on ',' and trimmed; never "model" */
	struct cJSON *set_params;       /* filters.setParams as a JSON object, or NULL */
	struct cJSON *metadata;         /* metadata as JSON (types kept), or NULL */
	struct {
		int connect_s, keepalive_s, response_header_s, tls_handshake_s, expect_continue_s,
		    idle_conn_s;        /* timeouts.*: defaults 30, 30, 0, 10, 1, 90; 0 = none */
	} timeouts;
	bool   ignore_websockets;       /* compat.ignoreWebsockets */
	struct cfg_group *group;        /* the model's group (explicit or the implicit one); never NULL */
	int    line, col;               /* where the model's key is in the file */
};

struct cfg {
	int    refs;
	char  *path;
	char  *listen;                  /* "host:port", "[v6]:port" or ":port"; default CFG_DEF_LISTEN */
	char  *log_level;               /* as written, NULL if unset */
	int    health_check_timeout_s;  /* default 120; >= 1 (llama-swap clamps to >= 15; we don't) */
	int    start_port;              /* default 5800, >= 1 */
	int    global_ttl_s;            /* default 0 (never), >= 0 */
	int    unload_timeout_s;        /* default 10; 0 means 10 */
	bool   send_loading_state;
	bool   include_aliases_in_list;
	int    load_stall_timeout_s;    /* ours: a load with no output and no health answer for
	                                 * this long fails early; 0 = off (default) */
	struct {
		int per_model, total, max_wait_s, swap_batch; /* queue.* */
	} queue;
	struct {
		int max_crashes, window_s, hold_s; /* crashBackoff.*; max_crashes 0 = off */
	} crash;
	char **api_keys;                /* as written after ${env.X}; NULL-terminated, possibly empty */
	char **preload;                 /* hooks.on_startup.preload, resolved to model ids */
	struct cfg_model *models;       /* sorted by id */
	size_t nmodels;
	struct cfg_group *groups;       /* explicit groups in file order, then the implicit "(default)" */
	size_t ngroups;
	struct cfg_errs warnings;       /* non-fatal notes (unsupported llama-swap keys, …) */
};

/* Loads and validates `path`. On success returns a snapshot with one reference; on failure NULL,
 * with every error appended to `errs` (which the caller frees with cfg_errs_free). */
struct cfg *cfg_load(const char *path, struct cfg_errs *errs);
/* Same from memory; `name` is used in messages in place of the file name. */
struct cfg *cfg_load_buf(const char *name, const char *text, size_t len, struct cfg_errs *errs);

struct cfg *cfg_ref(struct cfg *c);
/* Drops a reference; frees the snapshot at zero. NULL is a no-op. */
void cfg_unref(struct cfg *c);

/* Finds a model by id or alias; NULL if none. The result lives as long as the snapshot. */
const struct cfg_model *cfg_find_model(const struct cfg *c, const char *name);

/* Splits a command line into argv as llama-swap does: whole lines whose trimmed text starts with
 * '#' are dropped, a trailing '\' joins lines, then POSIX shell-word splitting (space, tab and
 * newline separate; '…' and "…" quote; backslash escapes outside quotes, and inside "…" only
 * before $ ` " \). No $VAR, globbing, pipes or redirects. Returns a NULL-terminated vector the
 * caller frees with strv_free, or NULL with *err set to a static reason ("empty command",
 * "unterminated quote", "too many words"). */
char **cfg_split_command(const char *cmd, const char **err);

#endif
