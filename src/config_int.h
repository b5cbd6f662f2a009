/* config_int.h: what the files of the config module share (not a public header). config.c
 * owns the node tree and the load state; the other files reach them through these accessors.
 * Names are cfg__ (module-internal, docs/CONVENTIONS.md). */
#ifndef MODELMUX_CONFIG_INT_H
#define MODELMUX_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "modelmux/config.h"

struct ld;
struct node;

/* Errors and warnings, as "file:line:col: path: reason" (n may be NULL: line 1). */
void cfg__err(struct ld *ld, const struct node *n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void cfg__warn(struct ld *ld, const struct node *n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The config being built. */
struct cfg *cfg__cfg(struct ld *ld);

/* The tree (read only). A key is a scalar node. */
bool               cfg__is_map(const struct node *n);
bool               cfg__is_seq(const struct node *n);
bool               cfg__is_null(const struct node *n);
size_t             cfg__len(const struct node *n);   /* pairs of a map, items of a list */
const struct node *cfg__key(const struct node *m, size_t i);
struct node       *cfg__val(const struct node *m, size_t i);
struct node       *cfg__item(const struct node *seq, size_t i);
struct node       *cfg__get(const struct node *m, const char *key); /* NULL if absent */
const char        *cfg__str(const struct node *n);   /* a scalar's text, else NULL */

/* Typed values (errors reported; -1 on one). *out is replaced; a null scalar gives NULL. */
int   cfg__get_str(struct ld *ld, const struct node *n, const char *path, char **out);
int   cfg__get_int(struct ld *ld, const struct node *n, const char *path, long long min,
    long long max, int *out);
/* "path.key" and "path[i]"; the caller frees. */
char *cfg__path_join(const char *path, const char *key);
char *cfg__path_index(const char *path, size_t i);
/* Why s is no good as a model id or alias, or NULL. */
const char *cfg__check_id(const char *s);

/* Model parts: defaults (id and place from `key`), and the filters / timeouts maps decoded
 * with the models' own tables. */
void cfg__model_defaults(struct cfg_model *m, const struct node *key);
void cfg__model_filters(struct ld *ld, struct node *v, const char *path, struct cfg_model *m);
void cfg__model_timeouts(struct ld *ld, struct node *v, const char *path, struct cfg_model *m);

/* config_peers.c: the top-level `peers` map, after models and groups (peer models join the
 * config's models), and freeing what it built. */
void cfg__peers_load(struct ld *ld, struct node *root);
void cfg__peers_free(struct cfg *c);

#endif
