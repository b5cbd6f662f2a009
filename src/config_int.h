/* config_int.h: what the files of the config module share (not a public header). config.c
 * owns the node tree and the load state; the other files reach them through these accessors.
 * Names are cfg__ (module-internal, docs/CONVENTIONS.md). The first group has the names and
 * signatures main's own split of config.c gives them (src/config_int.h there), so that merge
 * keeps those and drops these definitions. */
#ifndef MODELMUX_CONFIG_INT_H
#define MODELMUX_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "modelmux/config.h"

struct ld;
struct node;

/* As in main's config_int.h. */
void         cfg__ld_err(struct ld *ld, const struct node *n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
size_t       cfg__map_len(const struct node *m);
struct node *cfg__map_key(const struct node *m, size_t i);
struct node *cfg__map_val(const struct node *m, size_t i);
struct node *cfg__map_get(const struct node *m, const char *key); /* NULL if absent */
bool         cfg__node_is_null(const struct node *n);
int          cfg__get_str(struct ld *ld, const struct node *n, const char *path, char **out);
char        *cfg__path_join(const char *path, const char *key);     /* "path.key"; caller frees */
char        *cfg__path_index(const char *path, size_t i);           /* "path[i]"; caller frees */

/* Not (yet) there: config_peers.c's own needs. */
void         cfg__warn(struct ld *ld, const struct node *n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
struct cfg  *cfg__cfg(struct ld *ld);                 /* the config being built (ld->c) */
bool         cfg__is_map(const struct node *n);
bool         cfg__is_seq(const struct node *n);
size_t       cfg__seq_len(const struct node *n);      /* items of a list */
struct node *cfg__item(const struct node *seq, size_t i);
const char  *cfg__str(const struct node *n);          /* a scalar's text, else NULL */
/* An integer in [min, max] (the error reported; -1 on one). */
int          cfg__get_int(struct ld *ld, const struct node *n, const char *path, long long min,
    long long max, int *out);
/* Why s is no good as a model id or alias, or NULL. */
const char  *cfg__check_id(const char *s);
/* Model parts: defaults (id and place from `key`), and the filters / timeouts maps decoded
 * with the models' own tables. */
void         cfg__model_defaults(struct cfg_model *m, const struct node *key);
void         cfg__model_filters(struct ld *ld, struct node *v, const char *path, struct cfg_model *m);
void         cfg__model_timeouts(struct ld *ld, struct node *v, const char *path, struct cfg_model *m);

/* config_peers.c: the top-level `peers` map, after models and groups (peer models join the
 * config's models), and freeing what it built. */
void         cfg__peers_load(struct ld *ld, struct node *root);
void         cfg__peers_free(struct cfg *c);

#endif
