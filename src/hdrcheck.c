/* hdrcheck: request head checks (hdrcheck.h). */
#include <stdint.h>
#include <stdio.h>
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
hdr_scan_layout(struct hdr_scan *s, const char *line_end, const char *head_end)
{
	if (line_end == NULL || head_end == NULL || (uintptr_t)head_end < (uintptr_t)line_end)
		return;
	s->end = line_end;
	s->head_end = head_end;
}

bool
hdr_layout_known(const char *v)
{
	unsigned a = 0, b = 0, c = 0;

	if (v == NULL || sscanf(v, "%u.%u.%u", &a, &b, &c) != 3)
		return false;
	return a == 0 && (b < 9 || (b == 9 && c <= 75));
}

/* Bytes from a to b, when b lies at most max bytes after a, else SIZE_MAX. Compared as integers:
 * a folded name lies in another block. */
static size_t
span(const char *a, const char *b, size_t max)
{
	uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;

	return y >= x && y - x <= max ? (size_t)(y - x) : SIZE_MAX;
}

/* Does "name:value" lie where one line right after the line before puts it? The line before
 * ended with CRLF or LF (one or two NULs now); "name" then its colon (a NUL now), blanks, the
 * value; all of it inside the head. Moves s->end past the value. */
static bool
layout_ok(struct hdr_scan *s, const char *name, size_t nlen, const char *value, size_t vlen)
{
	size_t room = span(s->end, s->head_end, SIZE_MAX - 1), gap, at, v;

	gap = span(s->end, name, 2);
	if (value == NULL || gap == SIZE_MAX || gap == 0 || gap > room || s->end[0] != '\0' ||
	    s->end[gap - 1] != '\0')
		return false;
	/* name, colon, value: within the head, in that order */
	at = gap + nlen; /* the colon, from s->end */
	if (at >= room || (v = span(s->end, value, room)) == SIZE_MAX || v <= at || vlen > room - v)
		return false;
	if (name[nlen] != '\0')
		return false;
	for (size_t i = at + 1; i < v; i++)
		if (s->end[i] != ' ' && s->end[i] != '\t')
			return false;
	s->end = value + vlen;
	return true;
}

void
hdr_scan_field(struct hdr_scan *s, const char *name, size_t nlen, const char *value, size_t vlen)
{
	if (s->end != NULL && s->bad == NULL && !layout_ok(s, name, nlen, value, vlen))
		s->bad = "a folded header line (obs-fold), or a NUL cutting a line";
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

bool
hdr_proxy_only(const char *name)
{
	static const char *const only[] = { "x-forwarded-proto", "x-forwarded-host",
		"x-forwarded-port", "x-forwarded-server", "x-forwarded-ssl", "x-real-ip", "x-client-ip",
		"true-client-ip" };

	for (size_t i = 0; i < sizeof(only) / sizeof(only[0]); i++)
		if (strcasecmp(name, only[i]) == 0)
			return true;
	return false;
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

/* After the last line (or the request line): its line end, then the blank line's (MHD takes
 * any line that starts with a NUL for it) — NULs only, two to four of them. */
static bool
tail_ok(const struct hdr_scan *s)
{
	size_t tail = span(s->end, s->head_end, 4);

	if (tail == SIZE_MAX || tail < 2)
		return false;
	for (size_t i = 0; i < tail; i++)
		if (s->end[i] != '\0')
			return false;
	return true;
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
	if (s->end != NULL && !tail_ok(s)) {
		*why = "a NUL cutting the last header line";
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
