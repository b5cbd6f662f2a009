/* Fuzzes hdrcheck: the input is a request head's fields, one "name:value" per line (the first
 * byte's low bit says HTTP/1.1). Checks that a head it accepts holds only token names and clean
 * values, at most one framing, and one Host in HTTP/1.1. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modelmux/hdrcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
