/* libFuzzer harness: a command line → cfg_split_command → free. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "modelmux/config.h"
#include "modelmux/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *err;
	char       *s = xmalloc(size + 1);
	char      **v;

	memcpy(s, data, size);
	s[size] = '\0';
	v = cfg_split_command(s, &err);
	if (v == NULL && err == NULL)
		abort();
	strv_free(v);
	free(s);
	return 0;
}
