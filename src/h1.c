/* h1: HTTP/1.1 wire formats for talking to backends (pure functions, see h1.h). */
#include <string.h>
#include <strings.h>

#include "modelmux/h1.h"
#include "modelmux/util.h"

int
h1_parse_url(const char *url, struct h1_url *u)
{
	const char *a, *z, *hz, *colon = NULL;
	size_t      hl;

	if (strncasecmp(url, "http://", 7) != 0)
		return -1;
	a = url + 7;
	z = a + strcspn(a, "/?#");
	if (memchr(a, '@', (size_t)(z - a)) != NULL)
		return -1;
	u->authority = a;
	u->alen = (size_t)(z - a);
	u->target = *z == '\0' ? "/" : z;
	if (*a == '[') {
		const char *rb = memchr(a, ']', (size_t)(z - a));

		if (rb == NULL)
			return -1;
		a++;
		hz = rb;
		if (rb + 1 < z && rb[1] != ':')
			return -1;
		colon = rb + 1 < z ? rb + 1 : NULL;
	} else {
		colon = memchr(a, ':', (size_t)(z - a));
		hz = colon ? colon : z;
	}
	hl = (size_t)(hz - a);
	if (hl == 0 || hl >= sizeof(u->host))
		return -1;
	memcpy(u->host, a, hl);
	u->host[hl] = '\0';
	if (colon == NULL || colon + 1 == z) {
		memcpy(u->port, "80", 3);
		return 0;
	}
	unsigned port = 0;

	for (const char *p = colon + 1; p < z; p++) {
		if (*p < '0' || *p > '9' || p - colon > 5)
			return -1;
		port = port * 10 + (unsigned)(*p - '0');
	}
	if (port == 0 || port > 65535)
		return -1;
	/* Canonical digits, leading zeros gone: a URL is parsed for every request, no printf. */
	char   digits[5];
	size_t nd = 0;

	for (; port > 0; port /= 10)
		digits[nd++] = (char)('0' + port % 10);
	for (size_t i = 0; i < nd; i++)
		u->port[i] = digits[nd - 1 - i];
	u->port[nd] = '\0';
	return 0;
}

bool
h1_target_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == '#')
			return false;
	return true;
}

bool
h1_field_is(const struct h1_field *f, const char *name)
{
	return strlen(name) == f->nlen && strncasecmp(f->name, name, f->nlen) == 0;
}

/* RFC 9110 tchar */
static bool
is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	switch (c) {
	case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
	case '-': case '.': case '^': case '_': case '`': case '|': case '~':
		return true;
	default:
		return false;
	}
}

/* True if the comma-separated list v[0..n) holds `tok` (case-insensitive); *last tells whether
 * it is the last element. */
static bool
list_has(const char *v, size_t n, const char *tok, bool *last)
{
	size_t tl = strlen(tok);
	bool   found = false;

	*last = false;
	while (n > 0) {
		const char *comma = memchr(v, ',', n);
		size_t      el = comma ? (size_t)(comma - v) : n, a = 0, z = el;

		while (a < z && (v[a] == ' ' || v[a] == '\t'))
			a++;
		while (z > a && (v[z - 1] == ' ' || v[z - 1] == '\t'))
			z--;
		if (z > a) { /* empty elements do not count (RFC 9110 5.6.1) */
			*last = z - a == tl && strncasecmp(v + a, tok, tl) == 0;
			found |= *last;
		}
		if (comma == NULL)
			break;
		n -= el + 1;
		v = comma + 1;
	}
	return found;
}

static int
field_semantics(struct h1_head *h, const struct h1_field *f, bool *keep_alive, const char **why)
{
	bool last;

	if (h1_field_is(f, "content-length")) {
		long long cl = 0;

		if (f->vlen == 0 || f->vlen > 18) {
			*why = "bad Content-Length";
			return -1;
		}
		for (size_t i = 0; i < f->vlen; i++) {
			if (f->value[i] < '0' || f->value[i] > '9') {
				*why = "bad Content-Length";
				return -1;
			}
			cl = cl * 10 + (f->value[i] - '0');
		}
		if (h->content_length >= 0 && h->content_length != cl) {
			*why = "conflicting Content-Length values";
			return -1;
		}
		h->content_length = cl;
	} else if (h1_field_is(f, "transfer-encoding")) {
		/* A later field may name further codings: only the last coding counts. */
		h->chunked = list_has(f->value, f->vlen, "chunked", &last) && last;
		if (!h->chunked)
			h->close = true; /* its end is the connection's end */
	} else if (h1_field_is(f, "connection")) {
		if (list_has(f->value, f->vlen, "close", &last))
			h->close = true;
		if (list_has(f->value, f->vlen, "keep-alive", &last))
			*keep_alive = true;
	}
	return 0;
}

ssize_t
h1_parse_head(const char *p, size_t n, struct h1_head *h, const char **why)
{
	size_t      lim = n < H1_MAX_HEAD_BYTES ? n : H1_MAX_HEAD_BYTES, end = 0, i;
	bool        keep_alive = false, te = false;
	const char *line, *eol;

	/* Find the blank line first: nothing is parsed twice while a head trickles in. */
	for (i = 0; i < lim; i++) {
		if (p[i] == '\n' && ((i >= 1 && p[i - 1] == '\n') ||
		    (i >= 2 && p[i - 1] == '\r' && p[i - 2] == '\n'))) {
			end = i + 1;
			break;
		}
	}
	if (end == 0) {
		if (n >= H1_MAX_HEAD_BYTES) {
			*why = "response head too large";
			return -1;
		}
		return 0;
	}
	memset(h, 0, offsetof(struct h1_head, f));
	h->content_length = -1;
	/* status line: HTTP/1.x SP 3DIGIT [SP reason] */
	if (end < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
	    p[8] != ' ' || p[9] < '1' || p[9] > '9' || p[10] < '0' || p[10] > '9' ||
	    p[11] < '0' || p[11] > '9' || (p[12] != ' ' && p[12] != '\r' && p[12] != '\n')) {
		*why = "bad status line";
		return -1;
	}
	h->minor = p[7] - '0';
	h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	line = memchr(p, '\n', end);
	for (const char *q = p + 12; q < line; q++) {
		if ((unsigned char)*q < 0x20 && *q != '\t' && !(*q == '\r' && q + 1 == line)) {
			*why = "bad status line";
			return -1;
		}
	}
	for (line++; line < p + end; line = eol + 1) {
		struct h1_field f;
		const char     *colon, *z;

		eol = memchr(line, '\n', (size_t)(p + end - line));
		z = eol > line && eol[-1] == '\r' ? eol - 1 : eol;
		if (z == line)
			break; /* the blank line */
		if (*line == ' ' || *line == '\t') {
			*why = "folded header line";
			return -1;
		}
		for (colon = line; colon < z && is_tchar((unsigned char)*colon); colon++)
			;
		if (colon == line || colon == z || *colon != ':') {
			*why = "bad header line";
			return -1;
		}
		f.name = line;
		f.nlen = (size_t)(colon - line);
		f.value = colon + 1;
		while (f.value < z && (*f.value == ' ' || *f.value == '\t'))
			f.value++;
		while (z > f.value && (z[-1] == ' ' || z[-1] == '\t'))
			z--;
		f.vlen = (size_t)(z - f.value);
		for (size_t k = 0; k < f.vlen; k++) {
			unsigned char c = (unsigned char)f.value[k];

			if ((c < 0x20 && c != '\t') || c == 0x7f) {
				*why = "control character in a header value";
				return -1;
			}
		}
		if (h1_field_is(&f, "transfer-encoding"))
			te = true;
		if (field_semantics(h, &f, &keep_alive, why) == -1)
			return -1;
		if (h->nfields < H1_MAX_FIELDS)
			h->f[h->nfields++] = f;
		else
			h->dropped++;
	}
	if (te) {
		/* Transfer-Encoding frames the body; with a Content-Length beside it the sender is
		 * confused, so the connection carries nothing after (RFC 9112 6.3). */
		if (h->content_length >= 0)
			h->close = true;
		h->content_length = -1;
	}
	/* HTTP/1.0 closes unless it says keep-alive; with Transfer-Encoding its framing is not to
	 * be trusted for another exchange (RFC 9112 6.1). */
	if (h->minor == 0 && (!keep_alive || te))
		h->close = true;
	return (ssize_t)end;
}

static ssize_t
chunk_fail(const char **why, const char *reason)
{
	*why = reason;
	return -1;
}

ssize_t
h1_chunked_step(struct h1_chunked *st, const char *in, size_t n, const char **data, size_t *dlen,
    const char **why)
{
	size_t i = 0;

	*data = NULL;
	*dlen = 0;
	while (i < n && st->state != H1_CH_DONE) {
		char c = in[i];
		int  v;

		switch (st->state) {
		case H1_CH_SIZE:
			if ((v = hex_digit((unsigned char)c)) >= 0) {
				if (st->digits == 15)
					return chunk_fail(why, "chunk size too large");
				st->left = st->left * 16 + (uint64_t)v;
				st->digits++;
				st->line++;
				i++;
				break;
			}
			if (st->digits == 0 || (c != ';' && c != ' ' && c != '\t' && c != '\r' && c != '\n'))
				return chunk_fail(why, "bad chunk size");
			st->state = H1_CH_EXT;
			break;
		case H1_CH_EXT:
			/* [BWS] then `;` extensions (skipped), then CRLF or LF */
			i++;
			if (c == '\n') {
				st->line = 0;
				st->digits = 0;
				st->ext = st->cr = false;
				st->last = st->left == 0;
				st->state = st->last ? H1_CH_TRAILER : H1_CH_DATA;
				break;
			}
			if (++st->line > H1_MAX_CHUNK_LINE)
				return chunk_fail(why, "chunk size line too long");
			if (st->cr || (c != '\r' && c != '\t' && ((unsigned char)c < 0x20 || c == 0x7f)))
				return chunk_fail(why, "bad chunk size line");
			if (c == '\r')
				st->cr = true;
			else if (c == ';')
				st->ext = true;
			else if (!st->ext && c != ' ' && c != '\t')
				return chunk_fail(why, "bad chunk size line");
			break;
		case H1_CH_DATA: {
			size_t take = n - i < st->left ? n - i : (size_t)st->left;

			*data = in + i;
			*dlen = take;
			st->left -= take;
			i += take;
			if (st->left == 0)
				st->state = H1_CH_DATA_CR;
			return (ssize_t)i;
		}
		case H1_CH_DATA_CR:
			if (c != '\r' && c != '\n')
				return chunk_fail(why, "no line end after chunk data");
			st->state = c == '\r' ? H1_CH_DATA_LF : H1_CH_SIZE;
			i++;
			break;
		case H1_CH_DATA_LF:
			if (c != '\n')
				return chunk_fail(why, "no line end after chunk data");
			st->state = H1_CH_SIZE;
			i++;
			break;
		case H1_CH_TRAILER:
			i++;
			if (++st->trailer > H1_MAX_TRAILER)
				return chunk_fail(why, "trailer too large");
			if (c == '\n') {
				if (st->line == 0)
					st->state = H1_CH_DONE;
				st->line = 0;
			} else if (c != '\r' || st->line > 0) {
				st->line++;
			}
			break;
		case H1_CH_DONE:
			break;
		}
	}
	return (ssize_t)i;
}
