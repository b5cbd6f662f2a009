/* Fuzzes the multipart scanner: the first byte picks the chunk size and, when its high bit is
 * set, that the Content-Type comes next (up to a '\n', so the boundary parameter is fuzzed
 * too); the rest is the body. Checks that a field found lies where its offsets say. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modelmux/multipart.h"
#include "modelmux/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char     *err = NULL, *v;
	char           *ctype = NULL;
	const uint8_t  *body = data + 1, *nl;
	struct mp_scan *s;
	size_t          step, n;
	uint64_t        a, z;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 17 + 1;
	n = size - 1;
	if ((data[0] & 0x80) && (nl = memchr(body, '\n', n)) != NULL) {
		ctype = xmalloc((size_t)(nl - body) + 1);
		memcpy(ctype, body, (size_t)(nl - body));
		ctype[nl - body] = '\0';
		n -= (size_t)(nl - body) + 1;
		body = nl + 1;
	}
	s = mp_new(ctype ? ctype : "multipart/form-data; boundary=XyZ", "model", &err);
	free(ctype);
	if (s == NULL) {
		if (err == NULL)
			abort();
		return 0;
	}
	for (size_t o = 0; o < n; o += step)
		if (mp_feed(s, (const char *)body + o, n - o < step ? n - o : step, &err) == -1)
			break;
	if ((v = mp_field(s, &a, &z)) != NULL &&
	    (a > z || z > n || z - a > MP_MAX_FIELD_VALUE || memcmp(body + a, v, (size_t)(z - a)) != 0))
		abort();
	(void)mp_complete(s);
	mp_free(s);
	return 0;
}
