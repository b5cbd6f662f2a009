/* util: allocation helpers, string buffers, small helpers shared by every module. */
#ifndef MODELMUX_UTIL_H
#define MODELMUX_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MM_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define MM_MAX(a, b)    ((a) > (b) ? (a) : (b))

/* Fixed-size state: abort with a message when memory is exhausted (tmux's xmalloc). */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t n);
void *xrealloc(void *p, size_t n);
void *xreallocarray(void *p, size_t nmemb, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a newly allocated formatted string; the caller frees it. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Request-sized buffers: NULL on failure, never abort. */
__attribute__((warn_unused_result)) void *try_realloc(void *p, size_t n);

/* Called when an x* allocation fails (n: the size asked, 0 if unknown); it must not return.
 * Without one, a message goes to stderr and the process aborts. */
void util_set_oom_handler(void (*h)(size_t n));

/* A growable byte buffer. `len` bytes are valid; `data` is NUL-terminated when non-NULL. */
struct buf {
	char  *data;
	size_t len;
	size_t cap;
};
/* Makes room for `extra` more bytes (a known total: no doubling slack past it); -1 if allocation
 * fails. */
int  buf_reserve(struct buf *b, size_t extra) __attribute__((warn_unused_result));
/* Appends n bytes; -1 (buffer unchanged) if the result would pass `limit` or allocation fails. */
int  buf_append(struct buf *b, const void *p, size_t n, size_t limit) __attribute__((warn_unused_result));
/* Appends formatted text; aborts on allocation failure (use for bounded, internal text only). */
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* buf_free for a buffer that held a secret: its whole allocation is wiped first. */
void buf_free_wiped(struct buf *b);

/* A ring of whole lines in a fixed buffer of `cap` bytes the owner provides: each line is
 * kept with its '\n', and a new line pushes out the oldest whole lines it needs room for.
 * Fixed, so that text that comes by the thousand (log lines, a backend's output) leaves no
 * allocation behind. */
struct lring {
	char  *buf;
	size_t cap;
	size_t head, used; /* next write position, bytes held */
};
#define LRING_END SIZE_MAX
/* Keeps the n bytes at p, a line that ends with '\n' (one added if not; a '\n' inside makes
 * more lines); a line longer than the ring is cut to fit it alone. */
void   lring_put(struct lring *r, const char *p, size_t n);
/* The line at byte offset *at from the oldest (start at 0): copies up to n of its bytes,
 * without the '\n', to dst (NULL: none), moves *at past it and returns that count;
 * LRING_END after the last line. */
size_t lring_next(const struct lring *r, size_t *at, char *dst, size_t n);

/* NULL-terminated string vectors (argv, envp, lists). */
void   strv_free(char **v);
size_t strv_len(char *const *v);
char **strv_dup(char *const *v);
bool   strv_contains(char *const *v, const char *s);

/* The value of a hex digit (either case), or -1. */
int  hex_digit(int c);
/* Case-insensitive ASCII prefix test. */
bool str_has_prefix_ci(const char *s, const char *prefix);
/* Parses a whole base-10 integer in [min, max]; -1 if not. */
int  parse_int(const char *s, long long min, long long max, long long *out);
/* Sets O_NONBLOCK on fd; -1 on failure. */
int  set_nonblock(int fd);

/* An address block: "192.0.2.7", "10.0.0.0/8", "::1", "2001:db8::/32". */
struct cidr {
	int           family;     /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned      prefix;     /* bits that must match */
};
/* Parses s into *c; 0, or -1 when it is not an address with an optional /prefix in range. */
int  cidr_parse(const char *s, struct cidr *c);
/* Is the textual address ip (v4, v6, or v4-mapped v6) inside c? False if ip does not parse. */
bool cidr_match(const struct cidr *c, const char *ip);

/* Functions the conventions forbid in this project. */
#pragma GCC poison sprintf strcpy strcat system popen atoi

#endif
