/* libFuzzer harness: bytes → gate_presented_key as Authorization (Bearer or anything), X-API-Key,
 * a Basic credential, and both headers at once (split at the first '\n'). Checks gate.h's
 * promise: -1, or a key of 1..n-1 bytes, NUL-terminated, without blanks or control bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modelmux/gate.h"
#include "modelmux/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_key(const char *auth, const char *xkey, size_t n)
{
	char *key = xmalloc(n);
	int   r = gate_presented_key(auth, xkey, key, n);

	if (r < -1 || r >= (int)n)
		abort();
	if (r >= 0) {
		if (r == 0 || (size_t)r != strlen(key))
			abort();
		for (int i = 0; i < r; i++)
			if ((unsigned char)key[i] <= ' ' || key[i] == 0x7f)
				abort();
	}
	free(key);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = xmalloc(size + 1), *nl, *basic;

	memcpy(s, data, size);
	s[size] = '\0';
	check_key(s, NULL, 128);
	check_key(s, NULL, GATE_MAX_KEY_BYTES + 1);
	check_key(NULL, s, 128);
	check_key(NULL, s, 1);
	basic = xasprintf("Basic %s", s);
	check_key(basic, NULL, 128);
	check_key(basic, NULL, 9);
	free(basic);
	if ((nl = strchr(s, '\n')) != NULL) {
		*nl = '\0';
		check_key(s, nl + 1, 128);
	}
	free(s);
	return 0;
}
