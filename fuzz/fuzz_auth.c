/* libFuzzer harness: bytes → gate_upstream_path (+ gate_path_encode) and gate_presented_key as
 * Authorization, X-API-Key and a Basic credential. Checks the promises of gate.h. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modelmux/gate.h"
#include "modelmux/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_path(const char *s)
{
	char        out[512], enc[3 * 512 + 1], again[512];
	const char *why = NULL;
	int         n = gate_upstream_path(s, out, sizeof(out), &why);

	if (n < 0) {
		if (why == NULL)
			abort();
		return;
	}
	if (why != NULL || out[0] != '/' || (size_t)n != strlen(out) || strstr(out, "//") != NULL ||
	    strstr(out, "/../") != NULL || strstr(out, "/./") != NULL || strchr(out, '\\') != NULL)
		abort();
	for (const char *p = out; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			abort();
	/* encoding then checking again gives the same path */
	if (gate_path_encode(out, enc, sizeof(enc)) < 0)
		abort();
	if (gate_upstream_path(enc, again, sizeof(again), &why) != n || strcmp(again, out) != 0)
		abort();
}

static void
check_key(const char *auth, const char *xkey)
{
	char key[128];
	int  n = gate_presented_key(auth, xkey, key, sizeof(key));

	if (n < -1 || n >= (int)sizeof(key))
		abort();
	if (n >= 0) {
		if (n == 0 || (size_t)n != strlen(key))
			abort();
		for (int i = 0; i < n; i++)
			if ((unsigned char)key[i] <= ' ' || key[i] == 0x7f)
				abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = xmalloc(size + 1), *nl, *basic;

	memcpy(s, data, size);
	s[size] = '\0';
	check_path(s);
	check_key(s, NULL);
	check_key(NULL, s);
	basic = xasprintf("Basic %s", s);
	check_key(basic, NULL);
	free(basic);
	if ((nl = strchr(s, '\n')) != NULL) {
		*nl = '\0';
		check_key(s, nl + 1);
	}
	free(s);
	return 0;
}
