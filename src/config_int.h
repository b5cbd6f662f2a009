/* config's private parts: what its files (config.c, config_yaml.c, config_macros.c,
 * config_command.c, config_security.c, config_models.c, config_merge.c) share: the node tree,
 * the load state, the field tables, and the functions one file calls in another. Included by
 * those files only; the interface is include/modelmux/config.h. */
#ifndef MODELMUX_CONFIG_INT_H
#define MODELMUX_CONFIG_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "modelmux/config.h"

struct cJSON;

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

/* config.c: messages (collected, never stopping the walk), typed values, the top level. */
void cfg__errs_push(struct cfg_errs *e, char *msg);
void cfg__ld_msg(struct ld *ld, bool warn, const char *file, int line, int col, const char *path,
    const char *fmt, va_list ap)
    __attribute__((format(printf, 7, 0)));
void cfg__ld_err_at(struct ld *ld, const char *file, int line, int col, const char *path,
    const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
void cfg__ld_err(struct ld *ld, const struct node *n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
bool cfg__ld_charge(struct ld *ld, const struct node *n, size_t bytes);
char *cfg__path_join(const char *path, const char *key);
char *cfg__path_index(const char *path, size_t i);
bool cfg__is_int_text(const char *s);
bool cfg__is_float_text(const char *s);
struct cJSON *cfg__node_json(const struct node *n);
/* llama-swap's newer keys, decoded by config_compat.c: its messages as load errors/warnings,
 * and a model key's decoder (capabilities, filters.setParamsByID). */
struct cfg_compat_at;
void cfg__compat_report(void *arg, const struct cfg_compat_at *at, bool warn, const char *path,
    const char *msg);
void cfg__compat_model_key(struct ld *ld, struct node *v, const char *path, void *obj);
int cfg__get_bool(struct ld *ld, const struct node *n, const char *path, bool *out);
int cfg__get_str(struct ld *ld, const struct node *n, const char *path, char **out);
char **cfg__get_strv(struct ld *ld, const struct node *n, const char *path,
    const char *(*check)(const char *));
/* Walks a map through a field table; `obj` is the struct the offsets point into. */
void cfg__decode_fields(struct ld *ld, struct node *m, const char *path, const struct field *tab,
    void *obj);
void cfg__free(struct cfg *c);
struct cfg *cfg__new(const char *name);
void cfg__load_tree(struct ld *ld, struct node *root);

/* config_yaml.c: the node tree and the parser. */
void cfg__node_free(struct node *n);
void cfg__node_add(struct node *parent, struct node *kid);
size_t cfg__map_len(const struct node *m);
struct node *cfg__map_key(const struct node *m, size_t i);
struct node *cfg__map_val(const struct node *m, size_t i);
struct node *cfg__map_get(const struct node *m, const char *key);
bool cfg__node_is_null(const struct node *n);
bool cfg__env_name_ok(const char *s, size_t len);
struct node *cfg__parse_yaml(struct ld *ld, const char *text, size_t len, bool *failed);

/* config_macros.c: macros. */
void cfg__macros_parse(struct ld *ld, const struct node *m, const char *path, struct mlist *out);
void cfg__mlist_merge(struct mlist *out, const char *id, const struct mlist *g,
    const struct mlist *own);
void cfg__subst_scalar(struct ld *ld, struct node *n, const struct mlist *ml);
void cfg__subst_values(struct ld *ld, struct node *n, const struct mlist *ml);
void cfg__check_unresolved(struct ld *ld, const struct node *n, const char *path, bool allow_pid);

/* config_command.c: command lines. */
bool cfg__is_trim_space(char c);
char *cfg__prep_lines(const char *s, bool join);

/* config_security.c: security keys (field functions and tables of the top level). */
void cfg__top_log_format(struct ld *ld, struct node *v, const char *path, void *obj);
void cfg__top_api_keys(struct ld *ld, struct node *v, const char *path, void *obj);
void cfg__top_api_keys_file(struct ld *ld, struct node *v, const char *path, void *obj);
void cfg__top_cors(struct ld *ld, struct node *v, const char *path, void *obj);
extern const struct field cfg__rate_fields[];
extern const struct field cfg__limits_fields[];
void cfg__top_allowed(struct ld *ld, struct node *v, const char *path, void *obj);
void cfg__top_trusted(struct ld *ld, struct node *v, const char *path, void *obj);
char *cfg__command_check(struct ld *ld, const struct node *n, const char *path, char *const *argv,
    int depth);
void cfg__top_tls(struct ld *ld, struct node *v, const char *path, void *obj);

/* config_models.c: models, groups and hooks. */
void cfg__models_load(struct ld *ld, struct node *root, const struct mlist *globals);
void cfg__groups_load(struct ld *ld, struct node *root);
extern const struct field cfg__hooks_fields[];

/* For config_peers.c: config.c and config_models.c. */
void         cfg__warn(struct ld *ld, const struct node *n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
struct cfg  *cfg__cfg(struct ld *ld);                 /* the config being built (ld->c) */
bool         cfg__is_map(const struct node *n);
bool         cfg__is_seq(const struct node *n);
size_t       cfg__seq_len(const struct node *n);      /* items of a list */
struct node *cfg__item(const struct node *seq, size_t i);
const char  *cfg__str(const struct node *n);          /* a scalar's text, else NULL */
int          cfg__get_int(struct ld *ld, const struct node *n, const char *path, long long min,
    long long max, int *out);
const char  *cfg__check_id(const char *s);            /* why s is no good as a model id, or NULL */
void         cfg__model_defaults(struct cfg_model *m, const struct node *key);
void         cfg__model_filters(struct ld *ld, struct node *v, const char *path, struct cfg_model *m);
void         cfg__model_timeouts(struct ld *ld, struct node *v, const char *path, struct cfg_model *m);

/* config_peers.c: the top-level `peers` map, after models and groups (peer models join the
 * config's models), and freeing what it built. */
void         cfg__peers_load(struct ld *ld, struct node *root);
void         cfg__peers_free(struct cfg *c);

/* config_security.c: a whole file of at most `limit` bytes, read with its buffers wiped (it may
 * hold a key); NULL with errno set (EFBIG when too large). */
char *cfg__read_small_file(const char *path, size_t limit, size_t *lenp);
/* A PEM certificate / private key (no passphrase) from text[len]; NULL when it does not parse. */
struct x509_st;
struct evp_pkey_st;
struct x509_st *cfg__pem_cert(const char *text, size_t len);
struct evp_pkey_st *cfg__pem_key(const char *text, size_t len);
/* A checked certificate and key (PEM texts) become c's, the old key wiped; *cert and *key are
 * taken (set to NULL). */
void cfg__tls_keep(struct cfg *c, char **cert, char **key);

#endif
