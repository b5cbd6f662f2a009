/* props: asks a ready backend how many requests it serves at once — llama-server's GET /props
 * `total_slots` — with one bounded request on the upstream client. Knows nothing of models:
 * the owner gets a number (or nothing) through its callback. */
#ifndef MODELMUX_PROPS_H
#define MODELMUX_PROPS_H

#define PROPS_MAX_BYTES  (256u << 10) /* a /props answer read at most (chat templates are big) */
#define PROPS_TIMEOUT_S  3            /* connect and answer-head timeout of the one request */
#define PROPS_MAX_SLOTS  1024         /* a larger total_slots is not believed */

/* Called once per props_ask: slots >= 1 when the backend said so, 0 when it did not (no
 * /props, not JSON, no total_slots, an error), -1 when cancelled by props_cancel_all.
 * `arg` is the owner's; free it here. */
typedef void (*props_cb)(int slots, void *arg);

/* GETs base_url + "/props" on a connection of its own (never pooled: an idle kept connection
 * would hold one of the backend's few HTTP threads). api_key, if not NULL, goes as a Bearer
 * token. The callback is called later, never from inside this call. */
void props_ask(const char *base_url, const char *api_key, props_cb cb, void *arg);
/* Cancels every request in flight; each callback hears -1 (at exit). */
void props_cancel_all(void);
/* The total_slots of a /props body: 1..PROPS_MAX_SLOTS, or 0. Pure, for tests. */
int  props_parse(const char *body, size_t len);

#endif
