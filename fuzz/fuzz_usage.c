/* libFuzzer harness: a backend's response body → the usage scanner (router_usage_feed/_end) as
 * it streams. The first byte picks an event stream or a JSON body, the size of the chunks it
 * arrives in, and how many times the rest repeats (so lines and bodies pass the scanner's
 * limits); the rest is the body. router_usage also reads the rest whole, as one event and as
 * a body's tail; the tail's reading (which skips cJSON when it can) must agree with cJSON's. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "modelmux/router.h"

static bool
ref_count(const cJSON *u, const char *a, const char *b, long long *n)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(u, a);

	if (v == NULL)
		v = cJSON_GetObjectItemCaseSensitive(u, b);
	*n = 0;
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= ROUTER_MAX_TOKEN_COUNT))
		return false;
	*n = (long long)v->valuedouble;
	return true;
}

/* The tail's usage read by cJSON alone: the last "usage" key, the object after it. */
static bool
ref_tail(const char *text, size_t len, long long *prompt, long long *completion)
{
	const char *at = NULL, *brace;
	cJSON      *doc;
	long long   pn, cn;
	bool        pok, cok;

	for (const char *p = text; (p = memmem(p, len - (size_t)(p - text), "\"usage\"", 7)) != NULL; p += 7)
		at = p;
	if (at == NULL || (brace = memchr(at, '{', len - (size_t)(at - text))) == NULL)
		return false;
	doc = cJSON_ParseWithLengthOpts(brace, len - (size_t)(brace - text), NULL, false);
	pok = cJSON_IsObject(doc) && ref_count(doc, "prompt_tokens", "input_tokens", &pn);
	cok = cJSON_IsObject(doc) && ref_count(doc, "completion_tokens", "output_tokens", &cn);
	cJSON_Delete(doc);
	if (!pok && !cok)
		return false;
	*prompt = pn;
	*completion = cn;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t      steps[8] = { 1, 2, 3, 7, 64, 1000, 4096, 65536 };
	static const size_t      repeats[8] = { 1, 1, 1, 1, 1, 2, 8, 64 };
	struct router_usage_scan s = { 0 };
	const char              *body = (const char *)data + 1;
	size_t                   n, step, repeat;
	long long                p, c;

	if (size < 1)
		return 0;
	n = size - 1;
	s.sse = data[0] & 1;
	step = steps[(data[0] >> 1) & 7];
	repeat = repeats[(data[0] >> 4) & 7];
	for (size_t r = 0; r < repeat; r++)
		for (size_t o = 0; o < n; o += step)
			router_usage_feed(&s, body + o, n - o < step ? n - o : step);
	if (router_usage_end(&s) != s.found)
		abort();
	buf_free(&s.keep);
	if (!s.sse && repeat == 1) { /* held whole: the same answer as fed */
		struct router_usage_scan w = { 0 };

		router_usage_body(&w, body, n);
		if (w.found != s.found || (s.found && (w.prompt != s.prompt || w.completion != s.completion)))
			abort();
	}
	(void)router_usage(body, n, false, &p, &c);
	{
		long long rp = -7, rc = -7, fp = -7, fc = -7;
		bool      ref = ref_tail(body, n, &rp, &rc), got = router_usage(body, n, true, &fp, &fc);

		if (ref != got || rp != fp || rc != fc)
			abort();
	}
	return 0;
}
