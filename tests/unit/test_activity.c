/* Unit tests of the activity ring: bounds, order, resizing, ids, tokens/s, the JSON page. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "modelmux/activity.h"

static struct activity_entry
entry(const char *model, int status)
{
	struct activity_entry e;

	memset(&e, 0, sizeof(e));
	snprintf(e.model, sizeof(e.model), "%s", model);
	snprintf(e.route, sizeof(e.route), "chat");
	e.status = status;
	e.time_ms = 1700000000000LL;
	e.queued_ms = 5;
	e.first_byte_ms = 100;
	e.total_ms = 1100;
	e.prompt_tokens = 10;
	e.completion_tokens = 50;
	return e;
}

static void
test_bounded_ring(void)
{
	struct activity_entry e = entry("a", 200);

	for (int i = 0; i < 25; i++) {
		e.status = 200 + i;
		activity_add(&e, 10);
	}
	ASSERT_INT_EQ(activity_count(), 10);
	/* The oldest are gone; order is oldest first, ids keep counting. */
	ASSERT_INT_EQ(activity_get(0)->status, 215);
	ASSERT_INT_EQ(activity_get(0)->id, 16);
	ASSERT_INT_EQ(activity_get(9)->status, 224);
	ASSERT_INT_EQ(activity_get(9)->id, 25);
	ASSERT_NULL(activity_get(10));
	/* A smaller capacity keeps the newest; a larger one keeps them all and grows. */
	activity_add(&e, 4);
	ASSERT_INT_EQ(activity_count(), 4);
	ASSERT_INT_EQ(activity_get(0)->id, 23);
	ASSERT_INT_EQ(activity_get(3)->id, 26);
	activity_add(&e, 100);
	ASSERT_INT_EQ(activity_count(), 5);
	ASSERT_INT_EQ(activity_get(4)->id, 27);
	/* 0 turns it off: nothing kept. Past the bound: capped. */
	activity_add(&e, 0);
	ASSERT_INT_EQ(activity_count(), 0);
	ASSERT_NULL(activity_get(0));
	activity_add(&e, (size_t)ACTIVITY_MAX_ENTRIES * 10);
	ASSERT_INT_EQ(activity_count(), 1);
	ASSERT_INT_EQ(activity_get(0)->id, 29);
	activity_free();
	ASSERT_INT_EQ(activity_count(), 0);
}

static void
test_long_names_cut(void)
{
	struct activity_entry e = entry("", 200);

	memset(e.model, 'm', sizeof(e.model)); /* not terminated */
	memset(e.route, 'r', sizeof(e.route));
	activity_add(&e, 2);
	ASSERT_INT_EQ(strlen(activity_get(0)->model), ACTIVITY_MODEL_BYTES - 1);
	ASSERT_INT_EQ(strlen(activity_get(0)->route), ACTIVITY_ROUTE_BYTES - 1);
	activity_free();
}

static void
test_tokens_per_s(void)
{
	struct activity_entry e = entry("a", 200);

	e.stream = true; /* 50 tokens over 1100 - 100 ms */
	ASSERT_INT_EQ((long long)(activity_tokens_per_s(&e) * 10), 500);
	e.stream = false; /* over 1100 - 5 ms */
	ASSERT_INT_EQ((long long)(activity_tokens_per_s(&e) * 100), 4566);
	e.completion_tokens = -1;
	ASSERT_TRUE(activity_tokens_per_s(&e) < 0);
	e.completion_tokens = 50;
	e.stream = true;
	e.first_byte_ms = -1;
	ASSERT_TRUE(activity_tokens_per_s(&e) < 0);
	e.first_byte_ms = 1100; /* no time to divide by */
	ASSERT_TRUE(activity_tokens_per_s(&e) < 0);
	e.first_byte_ms = 2000; /* nonsense order */
	ASSERT_TRUE(activity_tokens_per_s(&e) < 0);
}

static void
test_json_page(void)
{
	struct activity_entry e = entry("with \"quote\"", 200);
	char                 *s;
	cJSON                *doc, *data;

	for (int i = 0; i < 8; i++)
		activity_add(&e, 5);
	e.completion_tokens = -1;
	e.first_byte_ms = -1;
	activity_add(&e, 5);
	/* Ids 5..9 are held. after=6 gives 7, 8, 9. */
	s = activity_json(6, 100, 5);
	doc = cJSON_Parse(s);
	ASSERT_NOT_NULL(doc);
	data = cJSON_GetObjectItem(doc, "data");
	ASSERT_INT_EQ(cJSON_GetArraySize(data), 3);
	ASSERT_INT_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 0), "id")->valueint, 7);
	ASSERT_INT_EQ(cJSON_GetObjectItem(doc, "last_id")->valueint, 9);
	ASSERT_INT_EQ(cJSON_GetObjectItem(doc, "capacity")->valueint, 5);
	ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 0), "model")->valuestring, "with \"quote\"");
	ASSERT_TRUE(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 2), "tokens_per_s")));
	ASSERT_TRUE(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 2), "ttfb_ms")));
	ASSERT_INT_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 0), "tokens_per_s")->valuedouble * 10, 457);
	cJSON_Delete(doc);
	free(s);
	/* A limit keeps the newest; after past the end gives none. */
	s = activity_json(0, 2, 5);
	doc = cJSON_Parse(s);
	data = cJSON_GetObjectItem(doc, "data");
	ASSERT_INT_EQ(cJSON_GetArraySize(data), 2);
	ASSERT_INT_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 0), "id")->valueint, 8);
	cJSON_Delete(doc);
	free(s);
	s = activity_json(9, 100, 5);
	ASSERT_CONTAINS(s, "\"data\":[]");
	free(s);
	activity_free();
	s = activity_json(0, 100, 0); /* empty ring */
	ASSERT_CONTAINS(s, "\"data\":[]");
	free(s);
}

int
main(void)
{
	test_bounded_ring();
	test_long_names_cut();
	test_tokens_per_s();
	test_json_page();
	CHECK_DONE();
}
