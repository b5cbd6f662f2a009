/* api: management routes (/health, /v1/models, /running, …). Reads state from sched; changes
 * it only through sched's interface. */
#ifndef MODELMUX_API_H
#define MODELMUX_API_H

#include <stdbool.h>

#include "modelmux/config.h"
#include "modelmux/router.h"
#include "modelmux/sched.h"

struct api_reply {
	int         status;
	char       *body;   /* owned by the caller after api_handle; NUL-terminated */
	const char *ctype;  /* static */
	const char *allow;  /* static; for 405 answers, the allowed method */
	int         retry_after_s; /* > 0: send Retry-After */
	const char *warning; /* static; sent as X-Modelmux-Warning */
};

/* One management request, of a route the router classed ROUTE_API with its method allowed. The
 * caller (http) fills cfg, op, method, path and done, and keeps the struct alive until the
 * reply is delivered or api_cancel is called. */
struct api_call {
	const struct cfg   *cfg;
	enum route_op       op;
	const char         *method;
	const char         *path;
	const char         *query;  /* raw, after '?'; NULL if none */
	void              (*done)(struct api_call *c); /* an API_PENDING reply is ready in `reply` */
	void               *arg;
	struct api_reply    reply;
	/* private */
	const struct cfg_model *model;
	struct sched_ticket ticket;
	struct sched_unload unload;
	bool                unloading;
	bool                unload_all_text; /* GET /unload: answer "OK" as text */
};

enum api_result {
	API_DONE = 0,      /* c->reply is ready */
	API_PENDING,       /* c->done will be called (from the loop) */
};

/* Records what /api/health reports about the daemon itself: the bound address and whether
 * it is exposed beyond loopback without API keys. */
void api_set_listener(const char *bound, bool exposed_without_keys);

/* The number of configurations loaded so far (1 at start, +1 per successful reload). */
void api_set_generation(unsigned gen);

/* Answers a management request, at once or later. */
enum api_result api_handle(struct api_call *c);
/* The client went away: drop any pending work. The reply is freed by the caller. */
void api_cancel(struct api_call *c);

/* Builds an OpenAI-style error body {"error":{"message","type","code"}}; caller frees. */
char *api_error_json(int status, const char *code, const char *message);

#endif
