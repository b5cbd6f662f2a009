/* Fuzzes the multipart scanner: the first byte picks the chunk size, the rest is the body. */
#include <stdint.h>
#include <stdlib.h>

#include "modelmux/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char     *err = NULL;
	struct mp_scan *s;
	size_t          step;
	uint64_t        a, z;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 17 + 1;
	s = mp_new("multipart/form-data; boundary=XyZ", "model", &err);
	for (size_t o = 1; o < size; o += step)
		if (mp_feed(s, (const char *)data + o, size - o < step ? size - o : step, &err) == -1)
			break;
	(void)mp_field(s, &a, &z);
	(void)mp_complete(s);
	mp_free(s);
	return 0;
}
