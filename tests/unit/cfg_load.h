/* Loading a config from text in unit tests (as "cfg.yaml"): shared by the config tests. */
#ifndef MODELMUX_TEST_CFG_LOAD_H
#define MODELMUX_TEST_CFG_LOAD_H

#include <stdio.h>
#include <string.h>

#include "modelmux/config.h"
#include "modelmux/util.h"

static inline struct cfg *
load(const char *text, struct cfg_errs *e)
{
	return cfg_load_buf("cfg.yaml", text, strlen(text), e);
}

/* Loads text that must load; an error message is printed (the test's asserts then fail). */
static inline struct cfg *
load_ok(const char *text)
{
	struct cfg_errs e = { 0 };
	struct cfg     *c = load(text, &e);

	for (size_t i = 0; i < e.n; i++)
		fprintf(stderr, "unexpected: %s\n", e.msgs[i]);
	cfg_errs_free(&e);
	return c;
}

/* What a load that had to fail said, as "\nmsg\nmsg\n", or "(loaded)" when c loaded (caller
 * frees); takes c and e. */
static inline char *
load_failure(struct cfg *c, struct cfg_errs *e)
{
	struct buf b = { 0 };

	if (c != NULL) {
		cfg_unref(c);
		cfg_errs_free(e);
		return xstrdup("(loaded)");
	}
	buf_printf(&b, "\n");
	for (size_t i = 0; i < e->n; i++)
		buf_printf(&b, "%s\n", e->msgs[i]);
	cfg_errs_free(e);
	return b.data;
}

/* Loads text that must fail: see load_failure. */
static inline char *
load_errs(const char *text)
{
	struct cfg_errs e = { 0 };
	struct cfg     *c = load(text, &e);

	return load_failure(c, &e);
}

#endif
