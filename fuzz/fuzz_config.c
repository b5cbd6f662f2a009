/* libFuzzer harness: a config file in memory → cfg_load_buf → free. */
#include <stddef.h>
#include <stdint.h>

#include "modelmux/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg_errs errs = { 0 };
	struct cfg     *c;

	c = cfg_load_buf("fuzz.yaml", (const char *)data, size, &errs);
	if (c != NULL)
		(void)cfg_find_model(c, "m");
	cfg_unref(c);
	cfg_errs_free(&errs);
	return 0;
}
