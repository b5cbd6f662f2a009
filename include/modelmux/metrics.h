/* metrics: counters and histograms, rendered in Prometheus text format. A leaf module: the
 * others report to it; it knows nothing of them. Series are bounded: per model, and per
 * (model, route, status) up to METRICS_MAX_ROUTE_SERIES — past it, further combinations are
 * counted under route="other". */
#ifndef MODELMUX_METRICS_H
#define MODELMUX_METRICS_H

#include <stddef.h>

#include "modelmux/util.h"

#define METRICS_MAX_MODELS        1024
#define METRICS_MAX_ROUTE_SERIES  256   /* (route, status) pairs per model */

/* Registers the models that get series (ids are copied). Call again after a reload. */
void metrics_init(char *const *model_ids, size_t n);
void metrics_free(void);

void metrics_model_start(const char *model);
void metrics_model_loaded(const char *model, double seconds);
/* reason: ttl, swap, api, crash, shutdown. */
void metrics_model_unload(const char *model, const char *reason);
void metrics_model_crash(const char *model);
void metrics_queue_wait(const char *model, double seconds);
/* One finished request; model may be NULL (no model involved); ttfb < 0 when none. route is
 * a static label (the router's endpoint names): kept by pointer. */
void metrics_request(const char *model, const char *route, int status, double ttfb_seconds);
void metrics_tokens(const char *model, long long prompt, long long completion);
/* reason: auth, cors, rate, size, path, timeout (408), malformed (a 400 libmicrohttpd made). */
void metrics_refusal(const char *reason);
void metrics_set_connections(size_t n);
void metrics_set_websockets(size_t n);
/* Upload spool: bytes held now, and the budget. */
void metrics_set_spool(unsigned long long used, unsigned long long budget);

/* Appends s escaped as a label value (\\, \", \n). */
void metrics_label(struct buf *b, const char *s);

/* Appends every series in Prometheus text format (version 0.0.4). */
void metrics_render(struct buf *out);

#endif
