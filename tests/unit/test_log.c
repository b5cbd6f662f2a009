/* Unit tests of the log: quoting, the JSON form of a line, and the ring of recent lines. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "modelmux/log.h"
#include "modelmux/util.h"

static void
test_quote(void)
{
	char q[64];

	ASSERT_STR_EQ(log_q(q, sizeof(q), "a \"b\"\n\x01"), "\"a \\\"b\\\"\\n\\x01\"");
	log_q(q, 12, "0123456789abcdef");
	ASSERT_CONTAINS(q, "...");
}

static void
test_json(void)
{
	char        q[128], line[512], out[1024];
	cJSON      *o;

	snprintf(line, sizeof(line), "2026-11-24T10:00:00.000Z info access req=abc path=%s status=200 msg=%s",
	    log_q(q, sizeof(q), "/v1/chat \"x\"\n\x02"), "plain");
	log_text_to_json(line, strlen(line), out, sizeof(out));
	o = cJSON_Parse(out);
	ASSERT_NOT_NULL(o);
	ASSERT_STR_EQ(cJSON_GetObjectItem(o, "time")->valuestring, "2026-11-24T10:00:00.000Z");
	ASSERT_STR_EQ(cJSON_GetObjectItem(o, "level")->valuestring, "info");
	ASSERT_STR_EQ(cJSON_GetObjectItem(o, "module")->valuestring, "access");
	ASSERT_STR_EQ(cJSON_GetObjectItem(o, "req")->valuestring, "abc");
	ASSERT_STR_EQ(cJSON_GetObjectItem(o, "path")->valuestring, "/v1/chat \"x\"\n\x02");
	ASSERT_STR_EQ(cJSON_GetObjectItem(o, "status")->valuestring, "200");
	ASSERT_STR_EQ(cJSON_GetObjectItem(o, "msg")->valuestring, "plain");
	cJSON_Delete(o);
	/* Text that is not key=value, and a tiny output buffer, stay valid JSON. */
	snprintf(line, sizeof(line), "t warn mod something odd happened");
	log_text_to_json(line, strlen(line), out, sizeof(out));
	o = cJSON_Parse(out);
	ASSERT_NOT_NULL(o);
	ASSERT_STR_EQ(cJSON_GetObjectItem(o, "text")->valuestring, "something odd happened");
	cJSON_Delete(o);
	log_text_to_json(line, strlen(line), out, 16);
	ASSERT_TRUE(strlen(out) < 16);
	ASSERT_TRUE(out[strlen(out) - 1] == '}');
}

/* Lines of many lengths, twice round the ring: /logs gets whole lines, the newest, in order. */
static void
test_ring(void)
{
	enum { N = 16000 };
	struct buf b = { 0 };
	int        saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
	char       pad[600];
	long       next = -1, first = -1;
	bool       whole = true;

	memset(pad, 'x', sizeof(pad));
	dup2(null, STDERR_FILENO);
	log_set_batching(true);
	for (long i = 0; i < N; i++)
		log_emit(LOG_WARN, "ring", NULL, "n=%ld %.*s", i, (int)((i * 37) % sizeof(pad)), pad);
	log_set_batching(false);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(null);
	log_history(&b, NULL);
	ASSERT_TRUE(b.len > LOG_RING_BYTES - 1000 && b.len <= LOG_RING_BYTES);
	for (char *p = b.data, *end = b.data + b.len; p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p)), *n = strstr(p, " warn ring n=");
		long  k;

		if (nl == NULL || n == NULL || n > nl) {
			whole = false;
			break;
		}
		k = strtol(n + 13, NULL, 10);
		if (first == -1)
			first = k;
		else if (k != next)
			whole = false;
		next = k + 1;
		p = nl + 1;
	}
	ASSERT_TRUE(whole);
	ASSERT_TRUE(first > 0);
	ASSERT_TRUE(next == N);
	buf_free(&b);
}

int
main(void)
{
	test_quote();
	test_json();
	test_ring();
	CHECK_DONE();
}
