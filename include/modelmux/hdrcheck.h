/* hdrcheck: is a request head one that every backend will read the way modelmux did? Checks
 * each header field as libmicrohttpd hands it over (it is lenient: a name may keep the blanks
 * before its colon, a value may hold a bare CR, an obs-fold may be merged into a name) and
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
	/* Layout checks (hdr_scan_layout): where the line before ended, and the head's end. */
	const char *end, *head_end;
};

/* A field name is a token (RFC 9110 5.6.2): no blank, no CTL, no separator. */
bool hdr_is_token(const char *s, size_t n);
/* A field value holds no CR, LF or NUL (and no other CTL but HTAB). */
bool hdr_value_ok(const char *s, size_t n);

/* One header field, with its exact length (a NUL inside shows as strlen < n). */
void hdr_scan_field(struct hdr_scan *s, const char *name, size_t nlen, const char *value,
    size_t vlen);

/* libmicrohttpd 0.9.75 and earlier parse a head in place: each line's end (CRLF or LF) becomes
 * NULs, a field's colon a NUL, the blanks after it are skipped, and an obs-fold continuation is
 * appended to the field's *name* in another block — so " tail" after "X-A: v" hands over
 * "X-Atail: v", a plain field. What they hand over still shows it in the layout: each name lies
 * right after the line before, its value right after its colon and blanks, the last line right
 * before the blank one. hdr_scan_layout turns these checks on, given the request line's end
 * (its version's NUL) and the head's end (the method plus MHD's header size); a field elsewhere
 * (folded), or bytes other than line ends where lines meet (a NUL cut a line), is a fault.
 * Later versions refuse folds themselves and may keep the head elsewhere, so the caller asks
 * hdr_layout_known about the version running. */
void hdr_scan_layout(struct hdr_scan *s, const char *line_end, const char *head_end);
/* True for a libmicrohttpd version string ("0.9.75") whose layout hdr_scan_layout knows. */
bool hdr_layout_known(const char *mhd_version);

/* Is `name` a field only a front proxy may state about the client's connection — its scheme,
 * host, port or address (X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Port,
 * X-Forwarded-Server, X-Forwarded-Ssl, X-Real-IP, X-Client-IP, True-Client-IP)? From a peer
 * not in trustedProxies such a field is a claim nobody checked: it does not reach a backend.
 * (X-Forwarded-For and Forwarded are rewritten by modelmux, not dropped.) */
bool hdr_proxy_only(const char *name);

/* The verdict on the whole head: 0 when it may go on, else the status to refuse it with —
 * 400 (a bad field, Content-Length with Transfer-Encoding, a Transfer-Encoding list, no Host
 * or more than one in HTTP/1.1, with layout checks a folded line or a NUL where lines meet) or
 * 501 (a transfer coding other than chunked) — and *why. */
int hdr_verdict(const struct hdr_scan *s, bool http11, const char **why);

#endif
