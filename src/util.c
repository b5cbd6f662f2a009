/* util: allocation helpers, byte buffers, string vectors. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "modelmux/util.h"

/* Out of memory for fixed-size state: the registered handler (main's logs the batch first),
 * else a message and abort. The handler must not return. */
static void (*oom_handler)(size_t n);

void
util_set_oom_handler(void (*h)(size_t n))
{
	oom_handler = h;
}

static void __attribute__((noreturn))
oom(size_t n)
{
	if (oom_handler != NULL)
		oom_handler(n);
	fprintf(stderr, "modelmux: fatal: out of memory (%zu bytes)\n", n);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		oom(n);
	return p;
}

void *
xcalloc(size_t nmemb, size_t n)
{
	void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);

	if (p == NULL)
		oom(nmemb * n);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		oom(n);
	return q;
}

void *
xreallocarray(void *p, size_t nmemb, size_t n)
{
	void *q = reallocarray(p, nmemb ? nmemb : 1, n ? n : 1);

	if (q == NULL)
		oom(nmemb * n);
	return q;
}

char *
xstrdup(const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		oom(0);
	return d;
}

char *
xstrndup(const char *s, size_t n)
{
	char *d = strndup(s, n);

	if (d == NULL)
		oom(0);
	return d;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char   *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		oom(0);
	va_end(ap);
	return s;
}

void *
try_realloc(void *p, size_t n)
{
	return realloc(p, n ? n : 1);
}

int
buf_reserve(struct buf *b, size_t extra)
{
	size_t need, cap;
	char  *p;

	if (extra > SIZE_MAX - b->len - 1)
		return -1;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if ((p = try_realloc(b->data, cap)) == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n, size_t limit)
{
	if (n > limit || b->len > limit - n)
		return -1;
	if (buf_reserve(b, n) == -1)
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int     n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n) == -1)
		oom(n < 0 ? 0 : (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		if (b->data)
			b->data[0] = '\0';
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* The length of the line at ring position `at`, its '\n' included, within the n bytes held
 * from there (n if it has none). */
static size_t
lring_line_len(const struct lring *r, size_t at, size_t n)
{
	size_t      first = MM_MIN(n, r->cap - at); /* up to the end, then wrapped */
	const char *nl = memchr(r->buf + at, '\n', first);

	if (nl != NULL)
		return (size_t)(nl - (r->buf + at)) + 1;
	if (first < n && (nl = memchr(r->buf, '\n', n - first)) != NULL)
		return first + (size_t)(nl - r->buf) + 1;
	return n;
}

static void
lring_write(struct lring *r, const char *p, size_t n)
{
	size_t first = MM_MIN(n, r->cap - r->head);

	memcpy(r->buf + r->head, p, first);
	memcpy(r->buf, p + first, n - first);
	r->head = (r->head + n) % r->cap;
	r->used += n;
}

void
lring_put(struct lring *r, const char *p, size_t n)
{
	bool nl = n == 0 || p[n - 1] != '\n'; /* one to add */

	if (r->cap < 2)
		return;
	if (n + nl > r->cap) { /* longer than the ring: its start, cut */
		n = r->cap - 1;
		nl = true;
	}
	while (r->used + n + nl > r->cap)
		r->used -= lring_line_len(r, (r->head + r->cap - r->used) % r->cap, r->used);
	lring_write(r, p, n);
	if (nl)
		lring_write(r, "\n", 1);
}

size_t
lring_next(const struct lring *r, size_t *at, char *dst, size_t n)
{
	size_t pos, len, k, first;

	if (*at >= r->used)
		return LRING_END;
	pos = (r->head + r->cap - r->used + *at) % r->cap;
	len = lring_line_len(r, pos, r->used - *at);
	*at += len;
	k = MM_MIN(len - 1, n); /* every line held ends with its '\n' */
	if (dst != NULL) {
		first = MM_MIN(k, r->cap - pos);
		memcpy(dst, r->buf + pos, first);
		memcpy(dst + first, r->buf, k - first);
	}
	return k;
}

void
buf_free_wiped(struct buf *b)
{
	if (b->data != NULL)
		OPENSSL_cleanse(b->data, b->cap);
	buf_free(b);
}

void
strv_free(char **v)
{
	if (v == NULL)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

size_t
strv_len(char *const *v)
{
	size_t n = 0;

	while (v && v[n])
		n++;
	return n;
}

char **
strv_dup(char *const *v)
{
	size_t n = strv_len(v);
	char **d;

	if (v == NULL)
		return NULL;
	d = xcalloc(n + 1, sizeof(*d));
	for (size_t i = 0; i < n; i++)
		d[i] = xstrdup(v[i]);
	return d;
}

bool
strv_contains(char *const *v, const char *s)
{
	for (size_t i = 0; v && v[i]; i++)
		if (strcmp(v[i], s) == 0)
			return true;
	return false;
}

bool
str_has_prefix_ci(const char *s, const char *prefix)
{
	return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

int
parse_int(const char *s, long long min, long long max, long long *out)
{
	char     *end;
	long long v;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return -1;
	return 0;
}

int
hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
cidr_parse(const char *s, struct cidr *c)
{
	char        host[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t      hl = slash ? (size_t)(slash - s) : strlen(s);
	long long   bits;

	memset(c, 0, sizeof(*c));
	if (hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (inet_pton(AF_INET, host, c->addr) == 1)
		c->family = AF_INET;
	else if (inet_pton(AF_INET6, host, c->addr) == 1)
		c->family = AF_INET6;
	else
		return -1;
	c->prefix = c->family == AF_INET ? 32 : 128;
	if (slash != NULL) {
		if (parse_int(slash + 1, 0, c->prefix, &bits) == -1)
			return -1;
		c->prefix = (unsigned)bits;
	}
	return 0;
}

bool
cidr_match(const struct cidr *c, const char *ip)
{
	unsigned char a[16];
	const unsigned char *p = a;
	int           fam;

	if (inet_pton(AF_INET, ip, a) == 1) {
		fam = AF_INET;
	} else if (inet_pton(AF_INET6, ip, a) == 1) {
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

		fam = AF_INET6;
		if (c->family == AF_INET && memcmp(a, mapped, sizeof(mapped)) == 0) {
			fam = AF_INET;
			p = a + 12;
		}
	} else {
		return false;
	}
	if (fam != c->family)
		return false;
	for (unsigned bit = 0; bit < c->prefix; bit += 8) {
		unsigned      left = c->prefix - bit;
		unsigned char mask = left >= 8 ? 0xff : (unsigned char)(0xff << (8 - left));

		if ((p[bit / 8] & mask) != (c->addr[bit / 8] & mask))
			return false;
	}
	return true;
}
