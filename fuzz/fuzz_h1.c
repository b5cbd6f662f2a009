/* Fuzzes h1 with each input three ways: as a response head (checks what a parsed head promises,
 * and that one byte less is still incomplete); as a chunked body fed in one piece, split in two
 * where the first byte says, and byte by byte (the same bytes out, the same count consumed and the
 * same end, or the same refusal); and as a URL (host, port, authority and target consistent). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modelmux/h1.h"
#include "modelmux/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void
check_head(const char *p, size_t n)
{
	static struct h1_head h, again;
	const char           *why = NULL;
	ssize_t               r = h1_parse_head(p, n, &h, &why);

	if (r == -1) {
		if (why == NULL)
			abort();
		return;
	}
	if (r < 0 || (size_t)r > n)
		abort();
	if (r == 0) {
		if (n >= H1_MAX_HEAD_BYTES)
			abort();
		return;
	}
	if (p[r - 1] != '\n' || h.status < 100 || h.status > 999 || (h.minor != 0 && h.minor != 1) ||
	    h.nfields > H1_MAX_FIELDS || (h.dropped > 0 && h.nfields != H1_MAX_FIELDS) ||
	    (h.chunked && h.content_length != -1) || h.content_length < -1)
		abort();
	for (size_t i = 0; i < h.nfields; i++) {
		const struct h1_field *f = &h.f[i];
		char                   name[64];

		if (f->nlen == 0 || f->name < p || f->name + f->nlen > p + r || f->value < p ||
		    f->value + f->vlen > p + r || f->value < f->name + f->nlen)
			abort();
		for (size_t k = 0; k < f->nlen; k++)
			if (!is_tchar((unsigned char)f->name[k]))
				abort();
		for (size_t k = 0; k < f->vlen; k++)
			if (f->value[k] == '\r' || f->value[k] == '\n' || f->value[k] == '\0')
				abort();
		if (f->vlen > 0 && (f->value[0] == ' ' || f->value[0] == '\t' ||
		    f->value[f->vlen - 1] == ' ' || f->value[f->vlen - 1] == '\t'))
			abort();
		if (f->nlen < sizeof(name)) {
			memcpy(name, f->name, f->nlen);
			name[f->nlen] = '\0';
			if (!h1_field_is(f, name))
				abort();
		}
	}
	/* The head is all that was read: the same result from it alone, and one byte less of it is
	 * still incomplete. */
	if (h1_parse_head(p, (size_t)r, &again, &why) != r || again.status != h.status ||
	    again.nfields != h.nfields || again.dropped != h.dropped ||
	    again.content_length != h.content_length || again.chunked != h.chunked ||
	    again.close != h.close)
		abort();
	if (h1_parse_head(p, (size_t)r - 1, &again, &why) != 0)
		abort();
}

struct run {
	char             *out;
	size_t            olen;
	size_t            used;
	int               rc;
	const char       *why;
	struct h1_chunked st;
};

/* Feeds in[0..n): a first piece of `cut` bytes, then pieces of `step` bytes, each from a heap copy
 * of its size; steps each piece until it is consumed, the body ends or the framing is refused. */
static void
decode(const char *in, size_t n, size_t cut, size_t step, struct run *r)
{
	size_t o = 0;
	bool   at_first = true;

	memset(r, 0, sizeof(*r));
	r->out = xmalloc(n + 1);
	while ((o < n || at_first) && r->st.state != H1_CH_DONE && r->rc == 0) {
		size_t len = at_first ? MM_MIN(cut, n) : MM_MIN(step, n - o), off = 0;
		char  *piece = xmalloc(len + 1);

		at_first = false;
		memcpy(piece, in + o, len);
		while (off < len && r->st.state != H1_CH_DONE) {
			const char *d = NULL;
			size_t      dlen = 0;
			ssize_t     c = h1_chunked_step(&r->st, piece + off, len - off, &d, &dlen, &r->why);

			if (c == -1) {
				if (r->why == NULL)
					abort();
				r->rc = -1;
				break;
			}
			/* Progress while there is input; a span lies inside what was consumed. */
			if (c <= 0 || (size_t)c > len - off || r->st.state > H1_CH_DONE)
				abort();
			if (dlen > 0) {
				if (d < piece + off || d + dlen > piece + off + c)
					abort();
				memcpy(r->out + r->olen, d, dlen);
				r->olen += dlen;
			}
			off += (size_t)c;
		}
		free(piece);
		r->used = o + off;
		o += len;
	}
	if (r->olen > r->used)
		abort();
	if (r->rc == 0 && r->st.state != H1_CH_DONE && r->used != n)
		abort();
}

static void
same(const struct run *a, const struct run *b)
{
	if (a->rc != b->rc || a->olen != b->olen || memcmp(a->out, b->out, a->olen) != 0)
		abort();
	if (a->rc == -1 && strcmp(a->why, b->why) != 0)
		abort();
	if (a->rc == 0 && (a->used != b->used || a->st.state != b->st.state ||
	    a->st.left != b->st.left || a->st.digits != b->st.digits || a->st.line != b->st.line ||
	    a->st.trailer != b->st.trailer || a->st.last != b->st.last))
		abort();
}

static void
check_chunked(const char *p, size_t n, uint8_t first)
{
	struct run one, split, bytes;

	decode(p, n, n, n, &one);
	decode(p, n, n * first / 255, n, &split);
	decode(p, n, 1, 1, &bytes);
	same(&one, &split);
	same(&one, &bytes);
	free(one.out);
	free(split.out);
	free(bytes.out);
}

static void
check_url(const uint8_t *data, size_t size)
{
	char         *url = xmalloc(size + 1);
	struct h1_url u;
	size_t        len, hl;

	memcpy(url, data, size);
	url[size] = '\0';
	len = strlen(url);
	if (h1_parse_url(url, &u) == 0) {
		char *end;
		long  port = strtol(u.port, &end, 10);

		hl = strnlen(u.host, sizeof(u.host));
		if (hl == 0 || hl >= sizeof(u.host) || strpbrk(u.host, "/?#@") != NULL ||
		    *end != '\0' || port < 1 || port > 65535)
			abort();
		if (u.authority != url + 7 || u.alen < hl || u.authority + u.alen > url + len ||
		    memchr(u.authority, '@', u.alen) != NULL)
			abort();
		if (strcmp(u.target, "/") != 0 && u.target != u.authority + u.alen)
			abort();
		if (u.target == u.authority + u.alen && u.target[0] == '\0')
			abort();
		(void)h1_target_ok(u.target);
	}
	free(url);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	check_head((const char *)data, size);
	check_chunked((const char *)data, size, data[0]);
	check_url(data, size);
	return 0;
}
