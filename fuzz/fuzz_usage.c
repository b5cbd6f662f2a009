/* libFuzzer harness: a backend's response body → the usage scanner (router_usage_feed/_end) as
 * it streams. The first byte picks an event stream or a JSON body, the size of the chunks it
 * arrives in, and how many times the rest repeats (so lines and bodies pass the scanner's
 * limits); the rest is the body. router_usage also reads the rest whole, as one event and as
 * a body's tail. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "modelmux/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t      steps[8] = { 1, 2, 3, 7, 64, 1000, 4096, 65536 };
	static const size_t      repeats[8] = { 1, 1, 1, 1, 1, 2, 8, 64 };
	struct router_usage_scan s = { 0 };
	const char              *body = (const char *)data + 1;
	size_t                   n, step, repeat;
	long long                p, c;

	if (size < 1)
		return 0;
	n = size - 1;
	s.sse = data[0] & 1;
	step = steps[(data[0] >> 1) & 7];
	repeat = repeats[(data[0] >> 4) & 7];
	for (size_t r = 0; r < repeat; r++)
		for (size_t o = 0; o < n; o += step)
			router_usage_feed(&s, body + o, n - o < step ? n - o : step);
	if (router_usage_end(&s) != s.found)
		abort();
	buf_free(&s.keep);
	(void)router_usage(body, n, false, &p, &c);
	(void)router_usage(body, n, true, &p, &c);
	return 0;
}
