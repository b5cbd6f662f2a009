/* status: what an operator's view (the web page) shows of each model beyond /api/health's
 * basics — how long it has been in its state, TTL left, hold left, group, aliases, and its
 * backend's last output lines. Additive fields only. */
#ifndef MODELMUX_STATUS_H
#define MODELMUX_STATUS_H

#include "modelmux/config.h"

struct cJSON;

#define STATUS_OUTPUT_LINES 8 /* a model's last backend output lines shown */

/* Adds the fields to each object of `models` (an array of {"id": …} in cfg's model order, as
 * /api/health builds it); objects whose id is not cfg's model at that place are left alone. */
void status_annotate(struct cJSON *models, const struct cfg *cfg);

#endif
