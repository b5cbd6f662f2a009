/* libFuzzer harness: bytes → the web page's header readers (Accept, Accept-Encoding,
 * If-None-Match via ui_answer, the same-origin test with the bytes as Origin and as Host).
 * Nothing to check but that they neither crash nor read past the string. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modelmux/gate.h"
#include "modelmux/ui.h"
#include "modelmux/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char            *s = xmalloc(size + 1), *nl;
	struct ui_answer a;

	memcpy(s, data, size);
	s[size] = '\0';
	(void)ui_prefers_html(s);
	(void)ui_accepts_gzip(s);
	ui_answer("/ui/", s, s, &a);
	if (a.status != 200 && a.status != 304)
		abort();
	if ((nl = strchr(s, '\n')) != NULL) {
		*nl = '\0';
		(void)gate_same_origin(s, nl + 1, false, false);
		(void)gate_same_origin(s, nl + 1, true, true);
	}
	free(s);
	return 0;
}
