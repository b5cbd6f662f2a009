/* upstream's private parts: what the dispatcher (upstream.c) and its two clients, the direct
 * HTTP/1.1 one (upstream_direct.c) and the libcurl one (upstream_curl.c), share. Included by
 * those three files only; the interface is include/modelmux/upstream.h. */
#ifndef MODELMUX_UPSTREAM_INT_H
#define MODELMUX_UPSTREAM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "modelmux/upstream.h"

struct up_direct; /* upstream_direct.c */

/* One exchange, whichever client carries it. */
struct up_xfer {
	const struct up_callbacks *cb;
	void                      *arg;
	int                        status;
	size_t                     nh, hbytes;
	long long                  content_length;
	bool                       head_sent;
	bool                       header_overflow;
	bool                       h_owned;   /* h[] strings are ours (curl path) */
	uint64_t                   header_timer;
	size_t                   (*read)(void *arg, char *buf, size_t n);
	void                      *read_arg;
	struct up_direct          *d;         /* NULL on the curl path */
	CURL                      *easy;
	struct curl_slist         *hdrs;
	/* Not zeroed at start (a few KB per request): valid up to nh, or once curl writes it. */
	struct up_header           h[UP_MAX_HEADERS];
	char                       errbuf[CURL_ERROR_SIZE];
};

/* Blocks of one size kept for the next exchanges: a transfer, its direct part and its
 * response buffer are made for every request, and would otherwise go to malloc and back
 * (the larger ones by malloc's slow path). The quiet trim empties them. */
#define UP_KEEP 64
#if defined(__SANITIZE_ADDRESS__) /* gcc */
#define UP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) /* clang */
#define UP_ASAN 1
#endif
#endif
#ifdef UP_ASAN
#define UP_KEEP_ON false /* every block goes back to malloc, where a use after free is caught */
#else
#define UP_KEEP_ON true
#endif
struct keep {
	size_t size;
	size_t n;
	void  *v[UP_KEEP];
};

/* upstream.c: what both clients use. */
void *up__keep_get(struct keep *k);        /* a kept block, or a new one (aborts on OOM) */
void  up__keep_put(struct keep *k, void *p); /* keeps p for the next get, or frees it */
void  up__keep_trim(struct keep *k);
bool  up__is_hop_by_hop(const char *name, size_t len);
void  up__headers_clear(struct up_xfer *x);
/* Frees x and what either client holds for it (cancels nothing: see up__curl_cancel). */
void  up__xfer_free(struct up_xfer *x);
/* Hands the response head to the owner, once. */
void  up__send_head(struct up_xfer *x);

/* upstream_direct.c: our own HTTP/1.1 client. */
/* Starts x when r's URL is one the direct client takes (http:// at an IP address); false,
 * with nothing done, when it is not. */
bool  up__direct_start(struct up_xfer *x, const struct up_request *r);
void  up__direct_resume(struct up_xfer *x);
void  up__direct_free(struct up_direct *d); /* NULL is a no-op */
void  up__direct_free_pool(void);           /* closes the idle connections (at exit) */
void  up__direct_trim(void);                /* frees the blocks kept for reuse */

/* upstream_curl.c: libcurl's multi interface, through fetch. */
int   up__curl_start(struct up_xfer *x, const struct up_request *r, const char **err);
void  up__curl_cancel(struct up_xfer *x);   /* takes x's transfer off the multi, if any */
void  up__curl_resume(struct up_xfer *x);
void  up__curl_free(struct up_xfer *x);     /* x's header list (wiped) and handle, if any */
void  up__curl_free_pool(void);             /* the idle easy handles (at exit) */

#endif
