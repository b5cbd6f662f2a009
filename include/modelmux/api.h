/* api: management routes (/health, /v1/models, /running, …). Reads state from sched; changes
 * it only through sched's interface. */
#ifndef MODELMUX_API_H
#define MODELMUX_API_H

#include <stdbool.h>

#include "modelmux/config.h"

struct api_reply {
	int         status;
	char       *body;   /* owned by the caller after api_handle; NUL-terminated */
	const char *ctype;  /* static */
	const char *allow;  /* static; for 405 answers, the allowed method */
};

/* Answers a management request. Returns false when the path is not a management route
 * (the caller answers 404). */
bool api_handle(const struct cfg *cfg, const char *method, const char *path, struct api_reply *out);

/* Builds an OpenAI-style error body {"error":{"message","type","code"}}; caller frees. */
char *api_error_json(int status, const char *code, const char *message);

#endif
