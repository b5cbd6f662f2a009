/* compat: the runtime side of llama-swap compatibility — what depends on which models run
 * (config_compat.h holds what the config says): a selector's target for this request, and the
 * one loaded model that /props without ?model= answers for. Reads scheduler state only. */
#ifndef MODELMUX_COMPAT_H
#define MODELMUX_COMPAT_H

#include <stddef.h>

#include "modelmux/config.h"

/* If `name` is a selector of c, the target this request goes to (one of its targets as
 * written, owned by c): pin → the first; warm → the first ready, else the first starting, else
 * the first; spillover → the least busy running target while one has fewer than `spillover`
 * requests (in flight + queued), else the first stopped target, else the least busy. NULL
 * when `name` is no selector. */
const char *compat_select(const struct cfg *c, const char *name);

/* The only model that is ready (as llama.cpp's router answers /props without a model), or
 * NULL; *nready says how many are. */
const struct cfg_model *compat_single_ready(const struct cfg *c, size_t *nready);

#endif
