/* http: the front end — libmicrohttpd in external-epoll mode on the loop. Owns the listening
 * socket and every request's state (`struct mm_req`, from the first callback to MHD's
 * completion callback), and drives each request down the data path: router → sched →
 * upstream, streaming the answer back. */
#ifndef MODELMUX_HTTP_H
#define MODELMUX_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "modelmux/config.h"

#define HTTP_SEND_BLOCK        (16u << 10) /* response bytes MHD asks the stream for at once */
#define HTTP_SSE_BLOCK         (4u << 10)  /* the same for an event stream: held open by the
                                              * thousand, its events are small */
#define HTTP_POOL_SLACK        (4u << 10)  /* connection memory past the header limit: the
                                              * answer head, MHD bookkeeping */
#define HTTP_SPOOL_SHARE       2          /* one client address, or one API key, holds at most 1/this of the spool budget */
#define HTTP_SPOOL_RETRY_S     5          /* Retry-After of a 507 for a full spool */
#define HTTP_SPOOL_FALLBACK    (1ull << 30) /* the budget when the spool's free space is unknown */
#define HTTP_MP_MEMORY         (64u << 10) /* multipart bytes kept in memory before spooling */
#define HTTP_XFF_MAX           4096 /* a trusted proxy's X-Forwarded-For chain believed */
#define HTTP_API_BODY_MAX      (64u << 10) /* body bytes a management route tolerates */
#define HTTP_SUB_WINDOW        (256u << 10) /* bytes a live log/event reader may lag behind */
#define HTTP_LOADING_TICK_MS   750          /* sendLoadingState progress period */
#define HTTP_413_DRAIN         (64u << 20) /* body bytes read and dropped after a 413 ... */
#define HTTP_LINGER_MS         2000        /* ... and for at least this long */
#define HTTP_URL_STACK         512          /* a backend URL up to this is built on the stack */
#define HTTP_HDR_STACK         24           /* forwarded fields gathered without an allocation */
#define HTTP_STREAM_WINDOW     (256u << 10) /* response bytes buffered per request before the
                                              * upstream transfer is paused */
#define HTTP_WS_HEAD_S         30           /* wait for a backend's upgrade answer, when
                                             * timeouts.responseHeader is 0 */
#define HTTP_WHOLE_MAX         (64u << 10) /* a known-length answer up to this is sent in one
                                              * write, once all in */
#define HTTP_TRIM_QUIET_MS     2000         /* no request ended for this long: free heap pages
                                              * go back to the system */
#define HTTP_TRIM_BURST        64           /* ... or this many requests at once, now down to a
                                              * quarter */
#define HTTP_STOP_DRAIN_MS     500          /* at exit, feeds ended by the stop may send
                                              * what they hold for this long */
#define HTTP_HUP_WATCH_MS      10           /* a suspended client is watched for hang-ups
                                              * from this long on */
#define HTTP_CONN_LIMIT        4096
#define HTTP_PEER_END_MS       20           /* a client gone while its request was incomplete:
                                             * its connection is closed this soon, once
                                             * libmicrohttpd has read what it sent */
#define HTTP_FD_WARN_MS        10000        /* at most one "out of file descriptors" per this */

/* Binds `listen` ("host:port", "[v6]:port"; port 0 = any) and serves `cfg`. Returns 0, or -1
 * with *err (caller frees). */
int  http_start(const char *listen, struct cfg *cfg, char **err);
/* New requests use `cfg` from now on (a reload); the rate-limit table starts afresh. The
 * listener, TLS and connection limits stay as they were started. */
void http_set_config(struct cfg *cfg);
/* The address actually bound, e.g. "127.0.0.1:43121". */
const char *http_bound(void);
/* Is the listener on a loopback address? */
bool http_bound_loopback(void);
/* Stops accepting new connections (shutdown); connections in progress go on. */
void http_stop_accepting(void);
/* Number of open client connections. */
size_t http_connections(void);
/* Closes every connection and frees the server. */
void http_free(void);

#endif
