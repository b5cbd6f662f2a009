/* Fuzzes hdrcheck. The first byte picks the mode and the HTTP version:
 *   bit 1 clear: the rest is a head's fields, one "name:value" per line (bit 0: HTTP/1.1).
 *     Checks that a head it accepts holds only token names and clean values, at most one
 *     framing, and one Host in HTTP/1.1.
 *   bit 1 set: the rest is a raw request head, parsed in place as libmicrohttpd 0.9.75 does
 *     (re-enacted by tests/unit/mhd_head.h), then checked with the layout checks on. The oracle
 *     is a strict reading of the same bytes: a head accepted must be clean (no fold, no NUL in
 *     its fields or version but right before a line end, where it cuts nothing; token names,
 *     values without CTLs), and on a clean head the layout checks change nothing (the verdict
 *     is the one without them). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../tests/unit/mhd_head.h"
#include "modelmux/hdrcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
tchar(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("\"(),/:;<=>?@[\\]{}", c) == NULL;
}

/* The next line of p[*i..n): [*a, *z) up to LF, a CR right before it left out. Loose: NULs
 * right before the line end are left out too — they cut nothing (what is handed over is the
 * same without them), and after libmicrohttpd's parse they look like the line end's own. */
static bool
raw_line(const uint8_t *p, size_t n, size_t *i, size_t *a, size_t *z, bool loose)
{
	for (size_t k = *i; k < n; k++)
		if (p[k] == '\n') {
			*a = *i;
			*z = k > *i && p[k - 1] == '\r' ? k - 1 : k;
			while (loose && *z > *a && p[*z - 1] == '\0')
				(*z)--;
			*i = k + 1;
			return true;
		}
	return false;
}

/* The strict reading: after empty lines, a request line with no NUL in its version,
 * then "token:value" lines (value: no CTL but HTAB, no DEL), then an empty line. */
static bool
raw_clean(const uint8_t *p, size_t n, bool loose)
{
	size_t i = 0, a, z, k;

	do {
		if (!raw_line(p, n, &i, &a, &z, false))
			return false;
	} while (a == z);
	if (loose) {
		while (z > a && p[z - 1] == '\0')
			z--;
	}
	/* The version follows the last space but trailing ones, as libmicrohttpd reads it. */
	for (k = z; k > a && p[k - 1] == ' '; k--)
		;
	while (k > a && p[k - 1] != ' ')
		k--;
	if (memchr(p + k, '\0', z - k) != NULL)
		return false;
	for (;;) {
		if (!raw_line(p, n, &i, &a, &z, loose))
			return false;
		if (a == z)
			return true;
		for (k = a; k < z && tchar(p[k]); k++)
			;
		if (k == a || k == z || p[k] != ':')
			return false;
		for (k++; k < z; k++)
			if ((p[k] < 0x20 && p[k] != '\t') || p[k] == 0x7f)
				return false;
	}
}

static void
raw_head(const uint8_t *data, size_t size)
{
	static char     buf[16384];
	struct mhd_head h;
	struct hdr_scan s = { 0 }, plain = { 0 };
	const char     *why = NULL, *why_plain = NULL;
	bool            http11;
	int             v, v_plain;

	if (size + 8192 > sizeof(buf))
		return;
	memcpy(buf, data, size);
	memset(buf + size, 0x5a, sizeof(buf) - size); /* the pool beyond: no NULs */
	if (mhd_head_parse(buf, size, sizeof(buf), &h) == -1)
		return; /* libmicrohttpd refuses it itself */
	http11 = strcmp(h.version, "HTTP/1.1") == 0;
	hdr_scan_layout(&s, h.version + strlen(h.version), h.head_end);
	for (size_t i = 0; i < h.n; i++) {
		hdr_scan_field(&s, h.f[i].k, h.f[i].kn, h.f[i].v, h.f[i].vn);
		hdr_scan_field(&plain, h.f[i].k, h.f[i].kn, h.f[i].v, h.f[i].vn);
	}
	v = hdr_verdict(&s, http11, &why);
	v_plain = hdr_verdict(&plain, http11, &why_plain);
	if ((v != 0 && v != 400 && v != 501) || (v != 0 && why == NULL))
		abort();
	if (v == 0 && !raw_clean(data, size, true))
		abort(); /* an unclean head let through */
	if (raw_clean(data, size, false) && (v != v_plain || (v != 0 && strcmp(why, why_plain) != 0)))
		abort(); /* the layout checks refused a clean head */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hdr_scan s = { 0 };
	const char     *p, *end, *why = NULL;
	bool            http11;
	unsigned        hosts = 0, te = 0, cl = 0;
	bool            dirty = false;

	if (size == 0)
		return 0;
	if (data[0] & 2) {
		raw_head(data + 1, size - 1);
		return 0;
	}
	http11 = data[0] & 1;
	p = (const char *)data + 1;
	end = (const char *)data + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *eol = nl ? nl : end;
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		size_t      nlen = colon ? (size_t)(colon - p) : (size_t)(eol - p);
		const char *v = colon ? colon + 1 : NULL;
		size_t      vlen = colon ? (size_t)(eol - v) : 0;

		hdr_scan_field(&s, p, nlen, v, vlen);
		if (!hdr_is_token(p, nlen) || (v != NULL && !hdr_value_ok(v, vlen)))
			dirty = true;
		if (nlen == 4 && strncasecmp(p, "host", 4) == 0)
			hosts++;
		if (nlen == 17 && strncasecmp(p, "transfer-encoding", 17) == 0)
			te++;
		if (nlen == 14 && strncasecmp(p, "content-length", 14) == 0)
			cl++;
		p = eol + 1;
	}
	int status = hdr_verdict(&s, http11, &why);

	if (status != 0 && status != 400 && status != 501)
		abort();
	if (status != 0 && why == NULL)
		abort();
	if (status == 0 && (dirty || (http11 && hosts != 1) || te > 1 || (te && cl)))
		abort();
	return 0;
}
