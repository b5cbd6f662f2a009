/* h1: HTTP/1.1 wire formats for talking to backends: their addresses, response heads and
 * chunked bodies. Pure functions over the caller's buffers (no allocation, no I/O), unit-tested
 * and fuzzed; upstream and tunnel do the I/O. */
#ifndef MODELMUX_H1_H
#define MODELMUX_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define H1_MAX_HEAD_BYTES  (64u << 10) /* a response head past this is refused */
#define H1_MAX_FIELDS      128         /* header fields kept; more are counted, not kept */
#define H1_MAX_CHUNK_LINE  4096        /* a chunk-size line with its extensions */
#define H1_MAX_TRAILER     (64u << 10) /* trailer fields after the last chunk, in all */

/* An http:// URL split in place. host is a copy without brackets; authority and target point
 * into the URL. */
struct h1_url {
	char        host[256];
	char        port[8];     /* "80" when the URL has none */
	const char *authority;   /* host[:port] as written, for the Host header */
	size_t      alen;
	const char *target;      /* the rest from the first '/', '?' or '#' ("/" when none); a
	                          * caller sending it checks it begins with '/' (h1_target_ok) */
};

/* Splits an http:// URL. 0, or -1 when it is not one we can reach (other scheme, empty or too
 * long host, bad port). */
int h1_parse_url(const char *url, struct h1_url *u);
/* True if every byte of s can go in a request line's target as it is (no space, no control,
 * no fragment). */
bool h1_target_ok(const char *s);

struct h1_field {
	const char *name;  /* into the parsed buffer, not NUL-terminated */
	size_t      nlen;
	const char *value; /* without surrounding blanks */
	size_t      vlen;
};

struct h1_head {
	int             minor;          /* HTTP/1.<minor> */
	int             status;         /* 100..999 */
	long long       content_length; /* -1 when there is none */
	bool            chunked;        /* Transfer-Encoding ends in chunked */
	bool            close;          /* the connection cannot carry another exchange */
	size_t          nfields;
	size_t          dropped;        /* fields past H1_MAX_FIELDS */
	struct h1_field f[H1_MAX_FIELDS];
};

/* Parses one response head at p[0..n): its length through the blank line, 0 while it is not
 * complete, or -1 with a static reason in *why when it is malformed. Lines may end in CRLF or
 * LF. Field pointers point into p. A head not complete within H1_MAX_HEAD_BYTES is malformed. */
ssize_t h1_parse_head(const char *p, size_t n, struct h1_head *h, const char **why);

/* True if the field's name is `name` (ASCII, case-insensitive). */
bool h1_field_is(const struct h1_field *f, const char *name);

enum h1_chunk_state {
	H1_CH_SIZE = 0, /* hex digits of the chunk size */
	H1_CH_EXT,      /* the rest of the size line */
	H1_CH_DATA,
	H1_CH_DATA_CR,  /* the CRLF after the data */
	H1_CH_DATA_LF,
	H1_CH_TRAILER,  /* trailer lines after the last chunk */
	H1_CH_DONE,
};

/* A chunked decoder: zero it to start. A copy of it is a checkpoint. */
struct h1_chunked {
	enum h1_chunk_state state;
	uint64_t            left;    /* data bytes left in this chunk, or the size being read */
	unsigned            digits;
	size_t              line;    /* bytes of the current size or trailer line */
	size_t              trailer; /* trailer bytes so far */
	bool                last;    /* the size line read was the last chunk's (0) */
	bool                ext;     /* in the size line's extensions */
	bool                cr;      /* the size line's CR came */
};

/* Decodes in[0..n): returns the bytes consumed, and sets *data and *dlen to the body bytes found (a
 * span inside `in`; *dlen 0 when none). It stops after each span, so the caller can hand it on
 * before going further. -1 with a static reason in *why when the framing is malformed. When
 * st->state becomes H1_CH_DONE the body has ended; bytes after it are not consumed. */
ssize_t h1_chunked_step(struct h1_chunked *st, const char *in, size_t n, const char **data,
    size_t *dlen, const char **why);

#endif
