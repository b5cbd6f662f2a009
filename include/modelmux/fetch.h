/* fetch: libcurl's multi socket interface driven by the loop, for upstream's exchanges that
 * its own HTTP/1.1 client does not take (https, host names). */
#ifndef MODELMUX_FETCH_H
#define MODELMUX_FETCH_H

#include <curl/curl.h>

#define FETCH_MAX_IDLE_CONNS 256 /* idle backend connections kept for reuse */

/* Called once when a transfer ends (success or not). The easy handle is already removed from
 * the multi handle; the callback owns it (usually curl_easy_cleanup). */
typedef void (*fetch_done_cb)(CURL *easy, CURLcode result, void *arg);

/* Hooks fetch into the loop; libcurl itself is set up on first use. */
void fetch_init(void);
/* Sets up libcurl and the multi handle if not yet done: before any curl_easy_init. fatal() on
 * failure. */
void fetch_ready(void);
void fetch_free(void);

/* Starts a configured easy handle. -1 on failure (the caller still owns `easy`). */
int  fetch_start(CURL *easy, fetch_done_cb done, void *arg);
/* Stops a running transfer without calling its done callback; the caller owns `easy` again. */
void fetch_cancel(CURL *easy);
/* Resumes a paused transfer's receive and send directions. */
void fetch_unpause(CURL *easy);

#endif
