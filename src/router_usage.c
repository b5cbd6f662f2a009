/* router_usage: token counts (usage.prompt_tokens, usage.completion_tokens and their other
 * spellings) read from a backend's answer as it streams past: a fast scan of a whole JSON
 * body, the last SSE events of a stream, without keeping more than a bounded tail. See
 * include/modelmux/router.h. */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "modelmux/config_compat.h"
#include "modelmux/router.h"
#include "modelmux/ui.h"
#include "modelmux/util.h"
#include "router_int.h"

/* A token count: a number within [0, ROUTER_MAX_TOKEN_COUNT] (a backend's 1e300 or -5 is no
 * count, and converting it to long long would be undefined). */
static bool
token_count(const cJSON *v, long long *n)
{
	*n = 0;
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= ROUTER_MAX_TOKEN_COUNT))
		return false;
	*n = (long long)v->valuedouble;
	return true;
}

static bool
usage_counts(const cJSON *u, long long *prompt, long long *completion)
{
	const cJSON *p, *c;
	long long    pn, cn;
	bool         pok, cok;

	if (!cJSON_IsObject(u))
		return false;
	p = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens");
	if (p == NULL)
		p = cJSON_GetObjectItemCaseSensitive(u, "input_tokens");
	c = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens");
	if (c == NULL)
		c = cJSON_GetObjectItemCaseSensitive(u, "output_tokens");
	pok = token_count(p, &pn);
	cok = token_count(c, &cn);
	if (!pok && !cok)
		return false;
	*prompt = pn;
	*completion = cn;
	return true;
}

/* The usage object as backends write it, read without cJSON (a body's usage is read for every
 * request): keys without escapes, values that are digit strings or such objects. */
enum { U_PROMPT, U_INPUT, U_COMPLETION, U_OUTPUT, U_KEYS };

struct usage_fast {
	const char *p, *end;
	int         kind[U_KEYS]; /* 0 absent, 1 a count in val, 2 present but no number */
	long long   val[U_KEYS];
};

static void
fast_ws(struct usage_fast *f)
{
	while (f->p < f->end && (unsigned char)*f->p <= 32) /* cJSON's whitespace */
		f->p++;
}

/* The object at f->p (its keys counted at depth 0): 0, or -1 when it is not that simple. */
static int
fast_object(struct usage_fast *f, int depth)
{
	static const char *const keys[U_KEYS] = { "prompt_tokens", "input_tokens", "completion_tokens",
		"output_tokens" };

	if (depth > 8 || f->p >= f->end || *f->p != '{')
		return -1;
	f->p++;
	fast_ws(f);
	if (f->p < f->end && *f->p == '}') {
		f->p++;
		return 0;
	}
	for (;;) {
		const char *k;
		size_t      kl, nd = 0;
		int         slot = -1;
		long long   v = 0;

		if (f->p >= f->end || *f->p != '"')
			return -1;
		k = ++f->p;
		while (f->p < f->end && *f->p != '"' && *f->p != '\\' && *f->p != '\0') /* cJSON cuts at NUL */
			f->p++;
		if (f->p >= f->end || *f->p != '"')
			return -1;
		kl = (size_t)(f->p++ - k);
		for (int i = 0; i < U_KEYS && depth == 0; i++)
			if (strlen(keys[i]) == kl && memcmp(keys[i], k, kl) == 0)
				slot = i;
		fast_ws(f);
		if (f->p >= f->end || *f->p != ':')
			return -1;
		f->p++;
		fast_ws(f);
		if (f->p < f->end && *f->p == '{') {
			if (fast_object(f, depth + 1) == -1)
				return -1;
			if (slot >= 0 && f->kind[slot] == 0)
				f->kind[slot] = 2;
		} else {
			for (; f->p < f->end && *f->p >= '0' && *f->p <= '9'; f->p++, nd++) {
				if (nd == 15) /* past ROUTER_MAX_TOKEN_COUNT's digits: cJSON decides */
					return -1;
				v = v * 10 + (*f->p - '0');
			}
			/* A fraction, an exponent, a sign: cJSON's number, not this one. */
			if (nd == 0 || (f->p < f->end && (*f->p == '.' || *f->p == 'e' || *f->p == 'E' ||
			    *f->p == '+' || *f->p == '-')))
				return -1;
			if (slot >= 0 && f->kind[slot] == 0) {
				f->kind[slot] = 1;
				f->val[slot] = v;
			}
		}
		fast_ws(f);
		if (f->p >= f->end)
			return -1;
		if (*f->p == '}') {
			f->p++;
			return 0;
		}
		if (*f->p++ != ',')
			return -1;
		fast_ws(f);
	}
}

/* The counts of the usage object at text, as usage_counts would read them from cJSON's parse:
 * 1 found, 0 not, -1 not simple enough to tell without cJSON. */
static int
usage_fast(const char *text, size_t len, long long *prompt, long long *completion)
{
	struct usage_fast f = { .p = text, .end = text + len };
	int               p, c;

	if (fast_object(&f, 0) == -1)
		return -1;
	p = f.kind[U_PROMPT] != 0 ? U_PROMPT : U_INPUT;
	c = f.kind[U_COMPLETION] != 0 ? U_COMPLETION : U_OUTPUT;
	if (f.kind[p] != 1 && f.kind[c] != 1)
		return 0;
	*prompt = f.kind[p] == 1 ? f.val[p] : 0;
	*completion = f.kind[c] == 1 ? f.val[c] : 0;
	return 1;
}

bool
router_usage(const char *text, size_t len, bool tail, long long *prompt, long long *completion)
{
	static const char key[] = "\"usage\"";
	const char       *at = NULL, *brace;
	cJSON            *doc;
	bool              found = false;
	int               simple;

	if (tail) {
		/* The last "usage" key, searched from the end (where a body has it), then its object. */
		for (size_t n = len; n >= sizeof(key) - 1;) {
			const char *q = memrchr(text, '"', n - (sizeof(key) - 1) + 1); /* a key's first byte */

			if (q == NULL)
				break;
			if (memcmp(q, key, sizeof(key) - 1) == 0) {
				at = q;
				break;
			}
			n = (size_t)(q - text) + sizeof(key) - 2; /* keys that start before q */
		}
		if (at == NULL || (brace = memchr(at, '{', len - (size_t)(at - text))) == NULL)
			return false;
		if ((simple = usage_fast(brace, len - (size_t)(brace - text), prompt, completion)) != -1)
			return simple == 1;
		doc = cJSON_ParseWithLengthOpts(brace, len - (size_t)(brace - text), NULL, false);
		found = usage_counts(doc, prompt, completion);
		cJSON_Delete(doc);
		return found;
	}
	if (memmem(text, len, key, sizeof(key) - 1) == NULL || !router__depth_ok(text, len, ROUTER_MAX_JSON_DEPTH))
		return false;
	if ((doc = cJSON_ParseWithLength(text, len)) == NULL)
		return false;
	found = usage_counts(cJSON_GetObjectItemCaseSensitive(doc, "usage"), prompt, completion);
	for (const char *const *k = (const char *const[]){ "response", "message", NULL }; !found && *k; k++)
		found = usage_counts(cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(doc, *k), "usage"), prompt, completion);
	cJSON_Delete(doc);
	return found;
}

static void
usage_sse_line(struct router_usage_scan *s)
{
	const char *d = s->keep.data;
	size_t      n = s->keep.len;

	if (n > 5 && strncmp(d, "data:", 5) == 0 &&
	    router_usage(d + 5, n - 5, false, &s->prompt, &s->completion))
		s->found = true;
}

void
router_usage_feed(struct router_usage_scan *s, const char *p, size_t n)
{
	if (!s->sse) {
		if (n >= ROUTER_USAGE_TAIL) {
			buf_reset(&s->keep);
			p += n - ROUTER_USAGE_TAIL;
			n = ROUTER_USAGE_TAIL;
		} else if (s->keep.len + n > 2 * ROUTER_USAGE_TAIL) {
			/* Trimmed once per ROUTER_USAGE_TAIL bytes, not per chunk: a body trickling
			 * in byte by byte must not cost a ROUTER_USAGE_TAIL move for each. */
			buf_consume(&s->keep, s->keep.len + n - ROUTER_USAGE_TAIL);
		}
		if (buf_append(&s->keep, p, n, 2 * ROUTER_USAGE_TAIL) == -1)
			buf_reset(&s->keep);
		return;
	}
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t      k = nl ? (size_t)(nl - p) : n;

		if (!s->skip && buf_append(&s->keep, p, k, ROUTER_USAGE_LINE_MAX) == -1) {
			s->skip = true;
			buf_reset(&s->keep);
		}
		if (nl == NULL)
			return;
		if (!s->skip)
			usage_sse_line(s);
		s->skip = false;
		buf_reset(&s->keep);
		p += k + 1;
		n -= k + 1;
	}
}

void
router_usage_body(struct router_usage_scan *s, const char *p, size_t n)
{
	size_t off = n > ROUTER_USAGE_TAIL ? n - ROUTER_USAGE_TAIL : 0;

	if (!s->sse && n > 0 && router_usage(p + off, n - off, true, &s->prompt, &s->completion))
		s->found = true;
}

bool
router_usage_end(struct router_usage_scan *s)
{
	router_usage_body(s, s->keep.data, s->keep.len);
	return s->found;
}
