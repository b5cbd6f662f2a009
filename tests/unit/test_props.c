/* props: total_slots out of a /props body, and nothing out of anything else. */
#include <string.h>

#include "check.h"
#include "modelmux/props.h"

static int
parse(const char *s)
{
	return props_parse(s, strlen(s));
}

int
main(void)
{
	ASSERT_INT_EQ(parse("{\"total_slots\":4,\"model_path\":\"m.gguf\"}"), 4);
	ASSERT_INT_EQ(parse("{\"default_generation_settings\":{\"n_ctx\":4096},\"total_slots\":1}"), 1);
	ASSERT_INT_EQ(parse("{\"total_slots\":1024}"), 1024);
	ASSERT_INT_EQ(parse("{\"total_slots\":1025}"), 0);
	ASSERT_INT_EQ(parse("{\"total_slots\":0}"), 0);
	ASSERT_INT_EQ(parse("{\"total_slots\":-3}"), 0);
	ASSERT_INT_EQ(parse("{\"total_slots\":2.5}"), 0);
	ASSERT_INT_EQ(parse("{\"total_slots\":\"4\"}"), 0);
	ASSERT_INT_EQ(parse("{\"total_slots\":1e300}"), 0);
	ASSERT_INT_EQ(parse("{\"slots\":4}"), 0);
	ASSERT_INT_EQ(parse("[4]"), 0);
	ASSERT_INT_EQ(parse("{\"total_slots\":4"), 0);
	ASSERT_INT_EQ(parse(""), 0);
	ASSERT_INT_EQ(props_parse("{\"total_slots\":4}xx", 17), 4);
	ASSERT_INT_EQ(props_parse("{\"total_slots\":4}", 5), 0);
	CHECK_DONE();
}
