/* hdrcheck: is a request head one that every backend will read the way modelmux did? Checks
 * each header field as libmicrohttpd hands it over (it is lenient: a name may keep the blanks
 * before its colon, a value may hold a bare CR, an obs-fold may become a field of its own) and
 * the framing of the whole head (RFC 9112). Pure functions: unit-tested and fuzzed. */
#ifndef MODELMUX_HDRCHECK_H
#define MODELMUX_HDRCHECK_H

#include <stdbool.h>
#include <stddef.h>

/* What a head's fields add up to; zero-initialise, feed every field, then ask hdr_verdict. */
struct hdr_scan {
	unsigned    hosts, lengths, encodings;
	const char *te;       /* the Transfer-Encoding value (the caller's memory) */
	size_t      te_len;
	const char *bad;      /* the first fault found (static text), NULL if none */
};

/* A field name is a token (RFC 9110 5.6.2): no blank, no CTL, no separator. */
bool hdr_is_token(const char *s, size_t n);
/* A field value holds no CR, LF or NUL (and no other CTL but HTAB). */
bool hdr_value_ok(const char *s, size_t n);

/* One header field, with its exact length (a NUL inside shows as strlen < n). */
void hdr_scan_field(struct hdr_scan *s, const char *name, size_t nlen, const char *value,
    size_t vlen);

/* The verdict on the whole head: 0 when it may go on, else the status to refuse it with —
 * 400 (a bad field, Content-Length with Transfer-Encoding, a Transfer-Encoding list, no Host
 * or more than one in HTTP/1.1) or 501 (a transfer coding other than chunked) — and *why. */
int hdr_verdict(const struct hdr_scan *s, bool http11, const char **why);

#endif
