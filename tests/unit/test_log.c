/* Unit tests of the log: quoting, and the JSON form of a line. */
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "modelmux/log.h"

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

int
main(void)
{
	test_quote();
	test_json();
	CHECK_DONE();
}
