/* Unit tests of the router: route table, model extraction, rewrites. */
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "modelmux/router.h"
#include "modelmux/util.h"

static void
test_match(void)
{
	bool         ok;
	struct route r;

	r = router_match("POST", "/v1/chat/completions", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_JSON_MODEL);
	ASSERT_STR_EQ(r.endpoint, "chat");
	ASSERT_TRUE(ok);
	r = router_match("GET", "/v1/chat/completions", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_JSON_MODEL);
	ASSERT_FALSE(ok);
	r = router_match("POST", "/v1/embeddings", &ok);
	ASSERT_STR_EQ(r.endpoint, "embeddings");
	r = router_match("POST", "/v1/chat/completions/", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_NONE);
	r = router_match("GET", "/v1/models", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_API);
	ASSERT_TRUE(ok);
}

/* The table: every route's kind, key scope, body policy and operation in one place. */
static void
test_table(void)
{
	bool         ok;
	struct route r;

	r = router_match("GET", "/health", &ok);
	ASSERT_INT_EQ(r.scope, ROUTE_OPEN);
	ASSERT_INT_EQ(r.op, OP_HEALTH);
	r = router_match("POST", "/health", &ok);
	ASSERT_FALSE(ok);
	ASSERT_INT_EQ(r.body, BODY_NONE);
	r = router_match("HEAD", "/v1/models", &ok);
	ASSERT_TRUE(ok);
	ASSERT_INT_EQ(r.scope, ROUTE_USER);
	r = router_match("GET", "/running", &ok);
	ASSERT_INT_EQ(r.scope, ROUTE_ADMIN);
	r = router_match("GET", "/logs/stream/demo", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_FEED);
	ASSERT_INT_EQ(r.op, OP_LOG_FEED);
	r = router_match("GET", "/logs/streamx", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_NONE);
	r = router_match("GET", "/logs/stream/", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_NONE);
	r = router_match("POST", "/api/models/unload/", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_NONE);
	r = router_match("POST", "/api/models/unload/x", &ok);
	ASSERT_INT_EQ(r.op, OP_UNLOAD);
	r = router_match("POST", "/api/models/load/", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_NONE);
	r = router_match("DELETE", "/upstream/", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_UPSTREAM);
	ASSERT_TRUE(ok);
	ASSERT_INT_EQ(r.body, BODY_SPOOL);
	r = router_match("POST", "/v1/audio/transcriptions", &ok);
	ASSERT_INT_EQ(r.body, BODY_SPOOL);
	ASSERT_STR_EQ(router_allow(&r), "POST");
	r = router_match("POST", "/props", &ok);
	ASSERT_FALSE(ok);
	ASSERT_STR_EQ(router_allow(&r), "GET");
	r = router_match("GET", "/nope", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_NONE);
	ASSERT_INT_EQ(r.scope, ROUTE_ADMIN);
}

static cJSON *
extract(const char *body, const char **model, char *err)
{
	return router_json_model(body, strlen(body), ROUTER_MAX_JSON_DEPTH, model, err, 256);
}

static void
test_model(void)
{
	char        err[256];
	const char *model;
	cJSON      *doc;

	doc = extract("{\"model\":\"demo\",\"messages\":[]}", &model, err);
	ASSERT_NOT_NULL(doc);
	ASSERT_STR_EQ(model, "demo");
	cJSON_Delete(doc);

	ASSERT_NULL(extract("", &model, err));
	ASSERT_CONTAINS(err, "empty");
	ASSERT_NULL(extract("{\"model\":", &model, err));
	ASSERT_CONTAINS(err, "not valid JSON");
	ASSERT_NULL(extract("[1,2]", &model, err));
	ASSERT_CONTAINS(err, "JSON object");
	ASSERT_NULL(extract("{\"messages\":[]}", &model, err));
	ASSERT_CONTAINS(err, "missing \"model\"");
	ASSERT_NULL(extract("{\"model\":7}", &model, err));
	ASSERT_CONTAINS(err, "non-empty string");
	ASSERT_NULL(extract("{\"model\":\"\"}", &model, err));
	ASSERT_CONTAINS(err, "non-empty string");

	/* Nesting is refused before cJSON recurses into it. */
	char deep[4 * ROUTER_MAX_JSON_DEPTH + 64];
	size_t n = 0;
	n += (size_t)snprintf(deep, sizeof(deep), "{\"model\":\"m\",\"x\":");
	for (int i = 0; i < ROUTER_MAX_JSON_DEPTH; i++)
		deep[n++] = '[';
	deep[n] = '\0';
	ASSERT_NULL(extract(deep, &model, err));
	ASSERT_CONTAINS(err, "deeper");
	/* Brackets inside strings do not count. */
	doc = extract("{\"model\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}",
	    &model, err);
	ASSERT_NOT_NULL(doc);
	cJSON_Delete(doc);

	/* A repeated key (found by fuzz_json): cJSON reads the first, the backend may read the
	 * last, past useModelName and the filters. */
	ASSERT_NULL(extract("{\"model\":\"a\",\"model\":\"b\"}", &model, err));
	ASSERT_CONTAINS(err, "repeats the key \"model\"");
	ASSERT_NULL(extract("{\"model\":\"a\",\"x\":[{\"k\":1,\"j\":2,\"k\":3}]}", &model, err));
	ASSERT_CONTAINS(err, "repeats the key \"k\"");
	doc = extract("{\"model\":\"a\",\"x\":{\"model\":\"b\"},\"y\":[{\"k\":1},{\"k\":2}]}", &model, err);
	ASSERT_NOT_NULL(doc);
	cJSON_Delete(doc);
}

static void
test_usage(void)
{
	long long   p = -7, c = -7;
	const char *ok = "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5}}";
	/* found by fuzz_usage: converting 1e300 to long long was undefined */
	const char *huge = "{\"usage\":{\"prompt_tokens\":1e300,\"completion_tokens\":-1e19}}";
	const char *half = "{\"usage\":{\"prompt_tokens\":-2,\"completion_tokens\":4}}";

	ASSERT_TRUE(router_usage(ok, strlen(ok), false, &p, &c));
	ASSERT_INT_EQ(p, 3);
	ASSERT_INT_EQ(c, 5);
	ASSERT_FALSE(router_usage(huge, strlen(huge), false, &p, &c));
	ASSERT_FALSE(router_usage(huge, strlen(huge), true, &p, &c));
	ASSERT_TRUE(router_usage(half, strlen(half), true, &p, &c));
	ASSERT_INT_EQ(p, 0);
	ASSERT_INT_EQ(c, 4);

	/* A JSON body trickling in byte by byte: only its end is kept, and searched. */
	struct router_usage_scan s = { 0 };
	const char *end = ",\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":12}}";

	router_usage_feed(&s, "{\"x\":\"", 6);
	for (int i = 0; i < 5 * (int)ROUTER_USAGE_TAIL; i++)
		router_usage_feed(&s, "a", 1);
	router_usage_feed(&s, "\"", 1);
	for (const char *q = end; *q != '\0'; q++)
		router_usage_feed(&s, q, 1);
	ASSERT_TRUE(s.keep.len <= 2 * ROUTER_USAGE_TAIL);
	ASSERT_TRUE(router_usage_end(&s));
	ASSERT_INT_EQ(s.prompt, 11);
	ASSERT_INT_EQ(s.completion, 12);
	buf_free(&s.keep);

	/* The same body held whole is searched in the same place, without a copy. */
	struct router_usage_scan w = { 0 };
	struct buf               body = { 0 };

	ASSERT_INT_EQ(buf_append(&body, "{\"x\":\"", 6, SIZE_MAX), 0);
	for (int i = 0; i < 5 * (int)ROUTER_USAGE_TAIL; i++)
		ASSERT_INT_EQ(buf_append(&body, "a", 1, SIZE_MAX), 0);
	ASSERT_INT_EQ(buf_append(&body, "\"", 1, SIZE_MAX), 0);
	ASSERT_INT_EQ(buf_append(&body, end, strlen(end), SIZE_MAX), 0);
	router_usage_body(&w, body.data, body.len);
	ASSERT_TRUE(w.found);
	ASSERT_INT_EQ(w.prompt, 11);
	ASSERT_INT_EQ(w.completion, 12);
	ASSERT_NULL(w.keep.data);
	buf_free(&body);
}

/* A body's usage, read without cJSON when it is simple and by cJSON when not: the same counts. */
static void
test_usage_tail(void)
{
	static const struct {
		const char *body;
		bool        found;
		long long   p, c;
	} cases[] = {
		{ "{\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,"
		  "\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"a\":{\"b\":1}}}}",
		  true, 19, 10 },
		{ "{\"usage\": { \"input_tokens\" : 8 ,\n\"output_tokens\":\t9 } }", true, 8, 9 },
		/* the first of two keys counts; a present prompt_tokens hides input_tokens */
		{ "{\"usage\":{\"prompt_tokens\":5,\"prompt_tokens\":6,\"completion_tokens\":1}}", true, 5, 1 },
		{ "{\"usage\":{\"prompt_tokens\":{\"n\":1},\"input_tokens\":7,\"output_tokens\":3}}", true, 0, 3 },
		{ "{\"usage\":{\"total_tokens\":4}}", false, 0, 0 },
		{ "{\"usage\":{}}", false, 0, 0 },
		/* left to cJSON: an escape, a fraction, an exponent, 16 digits, a string, null */
		{ "{\"usage\":{\"prompt\\u005ftokens\":4,\"completion_tokens\":2}}", true, 4, 2 },
		{ "{\"usage\":{\"prompt_tokens\":1.5,\"completion_tokens\":2e3}}", true, 1, 2000 },
		{ "{\"usage\":{\"prompt_tokens\":1000000000000000,\"completion_tokens\":0000000000000002}}", true,
		  1000000000000000LL, 2 },
		{ "{\"usage\":{\"prompt_tokens\":\"3\",\"completion_tokens\":null}}", false, 0, 0 },
		/* a cut body, and one whose usage is not an object */
		{ "{\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3", false, 0, 0 },
		{ "{\"usage\":{\"prompt_tokens\":12,,\"completion_tokens\":3}}", false, 0, 0 },
		{ "{\"usage\":[1,2]}", false, 0, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long p = -7, c = -7;
		bool      found = router_usage(cases[i].body, strlen(cases[i].body), true, &p, &c);

		ASSERT_TRUE(found == cases[i].found);
		if (found && cases[i].found) {
			ASSERT_INT_EQ(p, cases[i].p);
			ASSERT_INT_EQ(c, cases[i].c);
		}
	}
}

static void
test_rewrite(void)
{
	char             s1[] = "temperature", s2[] = "a.b", s3[] = "model", s4[] = "missing.path";
	char             real[] = "real";
	char            *strip[] = { s1, s2, s3, s4, NULL };
	struct cfg_model m = { 0 };
	const char      *model;
	char             err[256], *out;
	cJSON           *doc;

	doc = extract("{\"model\":\"alias\",\"temperature\":0.5,\"a\":{\"b\":1,\"c\":2},\"max_tokens\":9}",
	    &model, err);
	ASSERT_NOT_NULL(doc);
	ASSERT_FALSE(router_rewrite_json(doc, &m));
	m.use_model_name = real;
	m.strip_params = strip;
	m.set_params = cJSON_Parse("{\"max_tokens\":256,\"z.y\":true,\"b\":\"s\"}");
	ASSERT_TRUE(router_rewrite_json(doc, &m));
	out = cJSON_PrintUnformatted(doc);
	ASSERT_STR_EQ(out,
	    "{\"model\":\"real\",\"a\":{\"c\":2},\"max_tokens\":256,\"b\":\"s\",\"z\":{\"y\":true}}");
	free(out);
	cJSON_Delete(m.set_params);
	cJSON_Delete(doc);
}

static void
test_query(void)
{
	char         v[32];
	bool         ok;
	struct route r = router_match("GET", "/props", &ok);

	ASSERT_INT_EQ(r.kind, ROUTE_QUERY_MODEL);
	ASSERT_TRUE(ok);
	/* One path, a row per method: GET takes ?model=, POST a JSON body (llama-swap's). */
	r = router_match("POST", "/v1/audio/voices", &ok);
	ASSERT_TRUE(ok);
	ASSERT_INT_EQ(r.kind, ROUTE_JSON_MODEL);
	r = router_match("GET", "/v1/audio/voices", &ok);
	ASSERT_TRUE(ok);
	ASSERT_INT_EQ(r.kind, ROUTE_QUERY_MODEL);
	r = router_match("PUT", "/v1/audio/voices", &ok);
	ASSERT_FALSE(ok);
	ASSERT_INT_EQ(r.kind, ROUTE_QUERY_MODEL);
	router_match("POST", "/props", &ok);
	ASSERT_FALSE(ok);
	r = router_match("GET", "/api/version", &ok);
	ASSERT_TRUE(ok && r.op == OP_VERSION);
	r = router_match("GET", "/unload", &ok);
	ASSERT_TRUE(ok && r.op == OP_UNLOAD_ALL);
	ASSERT_INT_EQ(router_query_param("model=demo", "model", v, sizeof(v)), 4);
	ASSERT_STR_EQ(v, "demo");
	ASSERT_INT_EQ(router_query_param("a=1&model=org%2Fm+x&b", "model", v, sizeof(v)), 7);
	ASSERT_STR_EQ(v, "org/m x");
	ASSERT_INT_EQ(router_query_param("models=x&xmodel=y", "model", v, sizeof(v)), -1);
	ASSERT_INT_EQ(router_query_param("model=%zz", "model", v, sizeof(v)), -1);
	ASSERT_INT_EQ(router_query_param("model=%00", "model", v, sizeof(v)), -1);
	ASSERT_INT_EQ(router_query_param(NULL, "model", v, sizeof(v)), -1);
	{
		char *q = router_query_set("a=1&model=sel&b=2", "model", "org/m x:1");

		ASSERT_STR_EQ(q, "a=1&model=org%2Fm%20x%3A1&b=2");
		free(q);
		q = router_query_set("model=sel", "model", "t");
		ASSERT_STR_EQ(q, "model=t");
		free(q);
		ASSERT_NULL(router_query_set("models=x", "model", "t"));
		ASSERT_NULL(router_query_set(NULL, "model", "t"));
	}
	ASSERT_INT_EQ(router_query_param("model=0123456789012345678901234567890123", "model", v,
	    sizeof(v)), -1);
	ASSERT_INT_EQ(router_query_param("model=", "model", v, sizeof(v)), 0);
}

static int
peek(const char *body, struct router_peek *pk, char *err)
{
	return router_json_peek(body, strlen(body), 8, pk, err, 256);
}

static void
test_trailing(void)
{
	const char *model;
	char        err[256];
	cJSON      *doc;

	ASSERT_NULL(router_json_model("{\"model\":\"a\"}x", 14, 8, &model, err, sizeof(err)));
	ASSERT_STR_EQ(err, "request body is not valid JSON");
	ASSERT_NULL(router_json_model("{\"model\":\"a\"}{}", 15, 8, &model, err, sizeof(err)));
	ASSERT_NOT_NULL(doc = router_json_model("{\"model\":\"a\"} \r\n", 16, 8, &model, err, sizeof(err)));
	cJSON_Delete(doc);
}

static void
test_peek(void)
{
	struct router_peek pk;
	char               err[256];

	ASSERT_INT_EQ(peek("{\"model\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"hi \\\"x\\\" \\u00e9\"}]}", &pk, err), 1);
	ASSERT_STR_EQ(pk.model, "a");
	ASSERT_FALSE(pk.stream);
	ASSERT_INT_EQ(peek(" {\"stream\":true,\"x\":{\"model\":\"inner\"},\"model\":\"top\"} \n", &pk, err), 1);
	ASSERT_STR_EQ(pk.model, "top");
	ASSERT_TRUE(pk.stream);
	ASSERT_INT_EQ(peek("{\"model\":\"m\",\"stream\":\"true\",\"n\":-0.5e+3,\"z\":[true,false,null,{}]}", &pk, err), 1);
	ASSERT_FALSE(pk.stream);
	/* Only a full parse can tell: escapes in the name or a top-level key, repeats. */
	ASSERT_INT_EQ(peek("{\"model\":\"a\\u0062\"}", &pk, err), 0);
	ASSERT_INT_EQ(peek("{\"mod\\u0065l\":\"a\",\"model\":\"b\"}", &pk, err), 0);
	ASSERT_INT_EQ(peek("{\"model\":\"a\",\"model\":\"b\"}", &pk, err), 0);
	ASSERT_INT_EQ(peek("{\"stream\":false,\"model\":\"a\",\"stream\":true}", &pk, err), 0);
	ASSERT_INT_EQ(peek("[1]", &pk, err), 0);
	/* Refused, with router_json_model's words. */
	ASSERT_INT_EQ(peek("", &pk, err), -1);
	ASSERT_CONTAINS(err, "empty");
	ASSERT_INT_EQ(peek("{\"messages\":[]}", &pk, err), -1);
	ASSERT_STR_EQ(err, "missing \"model\" field");
	ASSERT_INT_EQ(peek("{\"model\":\"\"}", &pk, err), -1);
	ASSERT_CONTAINS(err, "non-empty string");
	ASSERT_INT_EQ(peek("{\"model\":7}", &pk, err), -1);
	ASSERT_CONTAINS(err, "non-empty string");
	ASSERT_INT_EQ(peek("{\"model\":{\"a\":1}}", &pk, err), -1);
	ASSERT_CONTAINS(err, "non-empty string");
	ASSERT_INT_EQ(peek("{\"model\":\"a\",\"x\":[[[[[[[[1]]]]]]]]}", &pk, err), -1);
	ASSERT_CONTAINS(err, "deeper than 8");
	static const char *const bad[] = {
		"{\"model\":\"a\"", "{\"model\":\"a\",}", "{\"model\":\"a\"} x", "{\"model\" \"a\"}",
		"{\"model\":\"a\",\"n\":01}", "{\"model\":\"a\",\"n\":1.}", "{\"model\":\"a\",\"n\":-}",
		"{\"model\":\"a\",\"n\":1e}", "{\"model\":\"a\",\"t\":tru}", "{\"model\":\"a\",\"s\":\"\\x\"}",
		"{\"model\":\"a\",\"s\":\"\\u12G4\"}", "{\"model\":\"a\",\"s\":\"tab\there\"}",
		"{\"model\":\"a\",\"a\":[1,]}", "{\"model\":\"a\",\"a\":[1 2]}", "{\"model\":\"a\"]",
		"{\"model\":\"a\",\"s\":\"unterminated}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASSERT_INT_EQ(peek(bad[i], &pk, err), -1);
		ASSERT_STR_EQ(err, "request body is not valid JSON");
	}
	/* A NUL inside the body is not JSON either. */
	ASSERT_INT_EQ(router_json_peek("{\"model\":\"a\"}\0", 14, 8, &pk, err, sizeof(err)), -1);
}

int
main(void)
{
	test_match();
	test_table();
	test_query();
	test_model();
	test_peek();
	test_trailing();
	test_rewrite();
	test_usage();
	test_usage_tail();
	CHECK_DONE();
}
