/* hdrcheck: request head checks (hdrcheck.h). */
#include <string.h>
#include <strings.h>

#include "modelmux/hdrcheck.h"

bool
hdr_is_token(const char *s, size_t n)
{
	static const char seps[] = "\"(),/:;<=>?@[\\]{}";

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f || strchr(seps, c) != NULL)
			return false;
	}
	return true;
}

bool
hdr_value_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

static bool
name_is(const char *name, size_t nlen, const char *want)
{
	return strlen(want) == nlen && strncasecmp(name, want, nlen) == 0;
}

void
hdr_scan_field(struct hdr_scan *s, const char *name, size_t nlen, const char *value, size_t vlen)
{
	if (value == NULL)
		vlen = 0;
	if (s->bad == NULL && !hdr_is_token(name, nlen))
		s->bad = "a header name that is not a token (a blank before the colon, a folded line, "
		         "a control character)";
	if (s->bad == NULL && vlen > 0 && !hdr_value_ok(value, vlen))
		s->bad = "a header value with a CR, LF, NUL or other control character";
	if (name_is(name, nlen, "Host"))
		s->hosts++;
	else if (name_is(name, nlen, "Content-Length"))
		s->lengths++;
	else if (name_is(name, nlen, "Transfer-Encoding")) {
		s->encodings++;
		s->te = value;
		s->te_len = vlen;
	}
}

/* Blanks around a value are not part of it (RFC 9110 5.5). */
static void
trim(const char **p, size_t *n)
{
	while (*n > 0 && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*n)--;
	}
	while (*n > 0 && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

int
hdr_verdict(const struct hdr_scan *s, bool http11, const char **why)
{
	const char *te = s->te;
	size_t      n = s->te_len;

	if (s->bad != NULL) {
		*why = s->bad;
		return 400;
	}
	if (http11 && s->hosts != 1) {
		*why = s->hosts ? "more than one Host header" : "no Host header";
		return 400;
	}
	if (s->encodings == 0)
		return 0;
	if (s->lengths > 0) {
		*why = "both Content-Length and Transfer-Encoding";
		return 400;
	}
	if (s->encodings > 1 || te == NULL || memchr(te, ',', n) != NULL) {
		*why = "a Transfer-Encoding list (only chunked alone is accepted)";
		return 400;
	}
	trim(&te, &n);
	if (n != 7 || strncasecmp(te, "chunked", 7) != 0) {
		*why = "a transfer coding other than chunked";
		return 501;
	}
	if (!http11) {
		*why = "Transfer-Encoding in an HTTP/1.0 request";
		return 400;
	}
	return 0;
}
