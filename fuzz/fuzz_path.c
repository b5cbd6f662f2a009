/* libFuzzer harness: a request path → router_match, router_upstream against a fixed set of
 * models (ids holding '/', aliases), then gate_upstream_path and gate_path_encode on the rest
 * with the buffer sizes http.c uses; the whole input also as a raw <rest> and as a query string
 * for router_query_param. Checks the promises of gate.h and router.h. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modelmux/config.h"
#include "modelmux/gate.h"
#include "modelmux/router.h"
#include "modelmux/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PATH_MAX_DECODED 4096 /* as check_upstream in http.c */

static const char models_yaml[] =
    "models:\n"
    "  a: {cmd: /bin/true, proxy: \"http://127.0.0.1:1\", aliases: [al]}\n"
    "  a/b: {cmd: /bin/true, proxy: \"http://127.0.0.1:2\"}\n"
    "  org/model.v1: {cmd: /bin/true, proxy: \"http://127.0.0.1:3\", aliases: [\"x/y\"]}\n";

static void
check_path(const char *s)
{
	char       *out = xmalloc(PATH_MAX_DECODED), *enc = xmalloc(3 * PATH_MAX_DECODED);
	char       *again = xmalloc(PATH_MAX_DECODED);
	const char *why = NULL;
	int         n = gate_upstream_path(s, out, PATH_MAX_DECODED, &why);

	if (n < 0) {
		if (why == NULL)
			abort();
		goto out;
	}
	if (why != NULL || out[0] != '/' || (size_t)n != strlen(out) || strstr(out, "//") != NULL ||
	    strstr(out, "/../") != NULL || strstr(out, "/./") != NULL || strchr(out, '\\') != NULL)
		abort();
	for (const char *p = out; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			abort();
	/* encoding then checking again gives the same path */
	if (gate_path_encode(out, enc, 3 * PATH_MAX_DECODED) < 0)
		abort();
	if (gate_upstream_path(enc, again, PATH_MAX_DECODED, &why) != n || strcmp(again, out) != 0)
		abort();
out:
	free(again);
	free(enc);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct cfg      *c;
	const struct cfg_model *m;
	const char             *rest;
	char                   *s = xmalloc(size + 1), q[512];
	bool                    ok;
	int                     n;

	if (c == NULL) {
		struct cfg_errs errs = { 0 };

		if ((c = cfg_load_buf("fuzz.yaml", models_yaml, sizeof(models_yaml) - 1, &errs)) == NULL)
			abort();
		cfg_errs_free(&errs);
	}
	memcpy(s, data, size);
	s[size] = '\0';
	(void)router_match("GET", s, &ok);
	if (router_upstream(c, s, &m, &rest) == 0) {
		if (m == NULL || rest < s || rest > s + size || (*rest != '\0' && *rest != '/'))
			abort();
		if (*rest != '\0')
			check_path(rest);
	}
	check_path(s);
	n = router_query_param(s, "model", q, sizeof(q));
	if (n < -1 || n >= (int)sizeof(q) || (n >= 0 && (size_t)n != strlen(q)))
		abort();
	free(s);
	return 0;
}
