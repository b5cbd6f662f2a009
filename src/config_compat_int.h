/* config_compat's private helpers, shared by config_compat.c and config_matrix.c. */
#ifndef MODELMUX_CONFIG_COMPAT_INT_H
#define MODELMUX_CONFIG_COMPAT_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "modelmux/config_compat.h"

struct cJSON;

/* Reports one message through r (formatted). */
void cfg_compat__rep(const struct cfg_compat_report *r, const struct cfg_compat_at *at, bool warn,
    const char *path, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* v is a number that is an integer within [min, max]: true with *out set. */
bool cfg_compat__is_int(const struct cJSON *v, long long min, long long max, long long *out);
/* parent.key when it is a map; NULL when absent or null; an error and NULL when not a map. */
const struct cJSON *cfg_compat__map_at(const struct cJSON *parent, const char *key,
    const char *path, const struct cfg_compat_at *at, const struct cfg_compat_report *r);
/* m's index in c->models. */
size_t cfg_compat__model_index(const struct cfg *c, const struct cfg_model *m);
/* Builds c->compat's matrix from the block at `path` (matrix or
 * routing.router.settings.matrix); errors through r. */
void cfg_compat__matrix_build(struct cfg *c, const struct cJSON *mtx,
    const struct cfg_compat_at *at, const char *path, const struct cfg_compat_report *r);

#endif
