/* libFuzzer harness: a config file in memory → cfg_load_buf (YAML, macros, ${env.X}, ${PORT},
 * validation) → free. A few MM_FUZZ_* variables are set for ${env.X} to find. A config that
 * loads keeps config.h's promises: every model has an argv and is found by its id and aliases. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "modelmux/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool     env_set;
	struct cfg_errs errs = { 0 };
	struct cfg     *c;

	if (!env_set) {
		setenv("MM_FUZZ", "srv", 1);
		setenv("MM_FUZZ_ARGS", "-c 4096 \"quoted arg\" ${PORT}", 1);
		setenv("MM_FUZZ_MACRO", "${m0}${env.MM_FUZZ}", 1);
		setenv("MM_FUZZ_EMPTY", "", 1);
		env_set = true;
	}
	c = cfg_load_buf("fuzz.yaml", (const char *)data, size, &errs);
	if (c != NULL) {
		for (size_t i = 0; i < c->nmodels; i++) {
			const struct cfg_model *m = &c->models[i];

			if (m->argv == NULL || m->argv[0] == NULL || cfg_find_model(c, m->id) != m)
				abort();
			for (char **a = m->aliases; a && *a; a++)
				if (cfg_find_model(c, *a) == NULL)
					abort();
		}
	} else if (errs.n == 0) {
		abort();
	}
	cfg_unref(c);
	cfg_errs_free(&errs);
	return 0;
}
