/* upstream: one HTTP exchange with a backend, streamed both ways: our own HTTP/1.1 client for
 * http:// backends at an IP address, libcurl's multi interface for the rest. Knows nothing of
 * models: it gets a URL, a method, headers and a body, and reports the response head, body
 * pieces and the end to its owner (http for requests, supervisor for health probes). */
#ifndef MODELMUX_UPSTREAM_H
#define MODELMUX_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#define UP_MAX_HEADERS      128      /* response headers kept */
#define UP_MAX_HEADER_BYTES (64u << 10)

struct up_xfer;

struct up_header {
	char *name;
	char *value;
};

struct up_callbacks {
	/* The response head arrived (final status, headers minus hop-by-hop ones;
	 * content_length -1 when unknown). Called once, before any body. */
	void   (*head)(void *arg, int status, const struct up_header *h, size_t n, long long content_length);
	/* A piece of the body. Return how many bytes were taken: all of them, or 0 to pause the
	 * transfer (the same bytes come again after up_resume). */
	size_t (*body)(void *arg, const char *p, size_t n);
	/* The exchange ended: ok, or a reason (static text). The transfer is already freed. */
	void   (*done)(void *arg, bool ok, const char *reason);
};

struct up_request {
	const char  *url;
	const char  *method;
	char *const *headers;      /* "Name: value" lines, NULL-terminated */
	const char  *body;         /* borrowed until done; NULL for none */
	size_t       body_len;
	/* Or a body pulled in pieces: read() fills up to n bytes at buf and returns how many;
	 * body_len is then its total size. */
	size_t     (*read)(void *arg, char *buf, size_t n);
	void        *read_arg;
	/* Optional: starts the pulled body again from its first byte, so a request that met a
	 * kept-alive connection the backend had just closed can go again on a new one. */
	void       (*rewind)(void *arg);
	long         connect_timeout_s;  /* 0 = none */
	long         header_timeout_s;   /* time to the response head; 0 = none */
	long         tls_handshake_s;    /* added to the connect timeout for https; 0 = none */
	long         keepalive_s;        /* TCP keepalive probe period; 0 = off */
	long         idle_conn_s;        /* a kept connection idle this long is closed (the curl
	                                  * path: not reused); 0 = kept */
	unsigned     idle_max;           /* connections kept idle to this backend at most (the
	                                  * direct path; 0 = only the pool's own limit) */
	bool         fresh;              /* a connection of its own, closed after (probes) */
};

/* Starts an exchange. Returns the transfer, or NULL with a reason in *err (static). */
struct up_xfer *up_start(const struct up_request *r, const struct up_callbacks *cb, void *arg,
    const char **err);
/* Resumes a transfer paused by the body callback. */
void up_resume(struct up_xfer *x);
/* Frees the idle transfer handles kept for reuse (at exit). */
/* Frees the response buffers kept for reuse (the daemon is quiet). */
void up_trim(void);
void up_free_pool(void);
/* Aborts a transfer without calling done; frees it. NULL is a no-op. */
void up_cancel(struct up_xfer *x);

#endif
