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
struct cfg_compat;       /* config_compat.h: llama-swap's newer keys */
struct cfg_model_compat;

/* Limits on the config file itself (untrusted enough to bound). */
#define CFG_MAX_FILE_BYTES   (4u << 20) /* 4 MiB, each file */
#define CFG_MAX_FILES        256        /* -c file plus --config-dir files merged into one config */
#define CFG_MAX_TOTAL_BYTES  (16u << 20) /* 16 MiB, all those files together */
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
#define CFG_MAX_TRUSTED_PROXIES      256 /* trustedProxies entries */
#define CFG_DEF_START_PORT           5800
#define CFG_DEF_UNLOAD_TIMEOUT_S     10
#define CFG_DEF_CONCURRENCY          10
#define CFG_DEF_IDLE_CONN_S          4  /* under llama-server's (and uvicorn's) 5 s keep-alive */
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
/* Ours: security (cors.*, rateLimit.*, limits.*). */
#define CFG_MAX_KEYS                 4096       /* apiKeys + apiKeysFile entries */
#define CFG_MAX_KEYS_FILE_BYTES      (1u << 20) /* apiKeysFile */
#define CFG_MAX_PEM_BYTES            (1u << 20) /* tls.cert, tls.key */
#define CFG_DEF_CORS_MAX_AGE_S       600
#define CFG_DEF_RATE_PER_IP          50.0
#define CFG_DEF_BURST_PER_IP         100
#define CFG_DEF_RATE_PER_KEY         50.0
#define CFG_DEF_BURST_PER_KEY        100
#define CFG_DEF_RATE_AUTH_FAIL       0.2
#define CFG_DEF_BURST_AUTH_FAIL      10
#define CFG_DEF_RATE_TABLE_SIZE      4096
#define CFG_MIN_RATE_TABLE_SIZE      16
#define CFG_MAX_RATE_TABLE_SIZE      (1 << 22)
#define CFG_MAX_RATE                 1e6        /* tokens per second */
#define CFG_DEF_MAX_HEADER_BYTES     16384
#define CFG_DEF_MAX_URL_BYTES        8192
#define CFG_DEF_MAX_JSON_BODY_BYTES  33554432   /* 32 MiB */
#define CFG_DEF_MAX_MULTIPART_BYTES  1073741824 /* 1 GiB */
#define CFG_DEF_MAX_JSON_DEPTH       64
#define CFG_DEF_HEADER_TIMEOUT_S     30
#define CFG_DEF_BODY_IDLE_TIMEOUT_S  60
#define CFG_DEF_MAX_CONNS_PER_IP     256

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

struct cfg_peer;

struct cfg_model {
	char  *id;
	char **argv;            /* cmd split as llama-swap does, macros resolved; NULL-terminated, argc >= 1 */
	char  *exe;             /* argv[0] resolved against PATH at load (realpath): what to execve */
	char **stop_argv;       /* cmdStop split the same way, "${PID}" kept literally; NULL if unset */
	char  *stop_exe;        /* stop_argv[0] resolved the same way; NULL if cmdStop is unset */
	char  *proxy;           /* base URL without trailing '/' */
	int    port;            /* the ${PORT} allocated to this model, 0 if none */
	char **aliases;         /* NULL-terminated (possibly empty) */
	char **env;             /* "K=V" entries, NULL-terminated; appended to the daemon's environment */
	char  *check_endpoint;  /* path starting with '/'; NULL when the config says "none" */
	char  *name;            /* may be NULL */
	char  *description;     /* may be NULL */
	char  *use_model_name;  /* may be NULL */
	char  *upstream_api_key; /* upstreamApiKey (ours): sent to the backend as Bearer and
	                          * X-API-Key in place of the client's; may be NULL */
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
		    idle_conn_s;        /* timeouts.*: defaults 30, 30, 0, 10, 1, 4; 0 = none */
	} timeouts;
	bool   ignore_websockets;       /* compat.ignoreWebsockets */
	struct cfg_group *group;        /* the model's group (explicit or the implicit one); never NULL */
	const char *file;               /* the file the model's key is in (one of cfg->files) */
	int    line, col;               /* where the model's key is in that file */
	const struct cfg_peer *peer;    /* peers.<name>.models[i] made this model (id "name/model",
	                                 * no argv): served by that peer; NULL for a model of ours */
	struct cfg_model_compat *compat; /* capabilities, setParamsByID (config_compat.h); or NULL */
};

/* An API key: only its SHA-256 is kept; the plain text is wiped once hashed. */
struct cfg_key {
	unsigned char sha256[32];
	bool          admin;   /* may use management routes; plain keys only model routes */
};

/* A token bucket's settings: `rate` tokens per second (0 = bucket off), at most `burst`. */
struct cfg_rate {
	double rate;
	int    burst;
};

struct cfg {
	int    refs;
	char  *path;                    /* the -c file, else the --config-dir directory */
	char **files;                   /* every file merged, in merge order; NULL-terminated */
	char  *listen;                  /* "host:port", "[v6]:port" or ":port"; default CFG_DEF_LISTEN */
	char  *log_level;               /* as written, NULL if unset */
	bool   log_json;                /* logFormat: json (default text) */
	int    health_check_timeout_s;  /* default 120; >= 1 (llama-swap clamps to >= 15; we don't) */
	int    start_port;              /* default 5800, >= 1 */
	int    global_ttl_s;            /* default 0 (never), >= 0 */
	int    unload_timeout_s;        /* default 10; 0 means 10 */
	bool   send_loading_state;
	bool   include_aliases_in_list;
	int    activity_max;            /* metricsMaxInMemory: requests kept for /api/activity */
	int    load_stall_timeout_s;    /* ours: a load with no output and no health answer for
	                                 * this long fails early; 0 = off (default) */
	struct {
		int per_model, total, max_wait_s, swap_batch; /* queue.* */
	} queue;
	struct {
		int max_crashes, window_s, hold_s; /* crashBackoff.*; max_crashes 0 = off */
	} crash;
	struct cfg_key *keys;           /* apiKeys then apiKeysFile entries, as digests; may be empty */
	size_t nkeys;
	struct {
		char **origins;         /* exact "scheme://host[:port]" (lowercased) or "*"; NULL-terminated,
		                         * empty = CORS off */
		bool   allow_credentials;
		char **methods;         /* default GET, POST, OPTIONS */
		char **headers;         /* default Authorization, Content-Type, X-API-Key, X-Request-ID */
		int    max_age_s;       /* default 600 */
	} cors;
	struct {
		struct cfg_rate per_ip, per_key, global, auth_failures; /* rateLimit.* */
		int    table_size;      /* buckets kept, default 4096, >= 16 */
	} rate;
	struct {
		int max_header_bytes, max_url_bytes, max_json_body_bytes, max_multipart_body_bytes;
		int max_json_depth, header_timeout_s, body_idle_timeout_s;     /* limits.* */
		int max_conns_per_ip;           /* limits.maxConnectionsPerIP */
		long long max_spool_bytes;      /* limits.maxSpoolBytes: 0 = half the spool's free space */
		char     *spool_dir;            /* limits.spoolDir: NULL = $TMPDIR, else /tmp */
	} limits;
	char **allowed_commands;        /* absolute paths or "dir/" prefixes; NULL when the key is absent */
	bool   strict_commands;         /* strictCommands: only allowedCommands' exact paths may run */
	struct cidr *trusted_proxies;   /* trustedProxies: front proxies whose X-Forwarded-For is
	                                 * believed; NULL when none */
	size_t ntrusted_proxies;
	char  *tls_cert_pem;            /* tls.cert contents (PEM), NULL when TLS is off */
	char  *tls_key_pem;             /* tls.key contents (PEM); wiped when freed */
	char **preload;                 /* hooks.on_startup.preload, resolved to model ids */
	struct cfg_model *models;       /* sorted by id */
	size_t nmodels;
	struct cfg_group *groups;       /* explicit groups in file order, then the implicit "(default)" */
	size_t ngroups;
	struct cfg_peer *peers;         /* peers (config_peers.h), in file order */
	size_t npeers;
	struct cfg_errs warnings;       /* non-fatal notes (unsupported llama-swap keys, …) */
	struct cfg_compat *compat;      /* routing, matrix, selectors, logToStdout,
	                                 * upstream.ignorePaths (config_compat.h); never NULL once
	                                 * loaded */
};

/* Loads and validates `path`. On success returns a snapshot with one reference; on failure NULL,
 * with every error appended to `errs` (which the caller frees with cfg_errs_free). */
struct cfg *cfg_load(const char *path, struct cfg_errs *errs);
/* Same from memory; `name` is used in messages in place of the file name. */
struct cfg *cfg_load_buf(const char *name, const char *text, size_t len, struct cfg_errs *errs);

/* One YAML text to merge: `name` is what messages call it. */
struct cfg_src {
	const char *name;
	const char *text;
	size_t      len;
};

/* Parses every source, merges them in order into one tree as llama-swap's -config-dir does,
 * then loads it as cfg_load_buf. Merge rules: maps merge key by key; sequences concatenate;
 * null yields to the other side; equal scalars are fine; two different scalars, or a map
 * against a list, are an error naming both places; a key repeated directly under an identity
 * map (models, groups, profiles, selectors, peers, matrix,
 * routing.router.settings.{groups,matrix}) is an error naming both places. Each message names
 * the file its node came from. 1 ≤ n ≤ CFG_MAX_FILES. Result and errors as cfg_load. */
struct cfg *cfg_load_srcs(const struct cfg_src *srcs, size_t n, struct cfg_errs *errs);

/* Loads `file` (may be NULL) then, if `dir` is not NULL, every regular *.yml and *.yaml file
 * directly in `dir` (not hidden ones, not recursively) in bytewise order of name, merged as
 * cfg_load_srcs. At least one of the two is given. Result and errors as cfg_load. */
struct cfg *cfg_load_set(const char *file, const char *dir, struct cfg_errs *errs);

/* The config files of `dir` as cfg_load_set picks them: a NULL-terminated vector of paths
 * ("dir/name") the caller frees with strv_free, or NULL with one error in `errs` (cannot be
 * read, more than CFG_MAX_FILES). */
char **cfg_dir_files(const char *dir, struct cfg_errs *errs);

/* A fingerprint of what cfg_load_set(file, dir) would read: name, inode, size and mtime of
 * `file` and of each file of `dir`. 0 with *out set, or -1 when `file` or `dir` cannot be
 * looked at just now (a caller polling for changes then waits for the next round). */
int cfg_stamp(const char *file, const char *dir, unsigned long long *out);

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
