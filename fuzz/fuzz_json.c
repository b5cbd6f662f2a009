/* libFuzzer harness: a JSON request body → router_json_peek against router_json_model (same
 * model, same stream flag; the scan may only be stricter on syntax, and does not look for
 * repeated keys below the top level), then router_rewrite_json under
 * several models' rewrites (useModelName, filters.stripParams, filters.setParams; overlapping
 * and odd dotted paths as a config may hold). Checks that a rewrite leaves one "model" with the
 * new name, no top-level key it strips, exactly the value it sets, and that "unchanged" is true. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "modelmux/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rules {
	const char *use_model_name;
	const char *strip[4];
	const char *set;
};

static const struct rules rules[] = {
	{ "renamed", { "temperature", "a.b", NULL }, "{\"max_tokens\":5,\"x.y\":true}" },
	{ NULL, { "messages", "a", "a.b.c", NULL }, "{\"a.b.c\":[1],\"a\":{\"z\":1}}" },
	{ "", { ".", "a..b", "top_p", NULL }, "{\"\":1,\".\":2,\"a.\":3,\"stream\":false}" },
	{ NULL, { NULL }, NULL },
};

/* Same tree, members in the same order (cJSON_Compare looks members up by name, so it is wrong
 * for objects with repeated keys). */
static bool
same(const cJSON *a, const cJSON *b)
{
	if ((a->type & 0xff) != (b->type & 0xff) || (a->string == NULL) != (b->string == NULL) ||
	    (a->string != NULL && strcmp(a->string, b->string) != 0))
		return false;
	if (cJSON_IsString(a) && strcmp(a->valuestring, b->valuestring) != 0)
		return false;
	if (cJSON_IsNumber(a) && a->valuedouble != b->valuedouble)
		return false;
	for (a = a->child, b = b->child; a != NULL && b != NULL; a = a->next, b = b->next)
		if (!same(a, b))
			return false;
	return a == NULL && b == NULL;
}

/* Does another key of `set` write inside `key` ("key.x")? */
static bool
written_inside(const cJSON *set, const char *key)
{
	const cJSON *it;
	size_t       n = strlen(key);

	cJSON_ArrayForEach(it, set) {
		if (strncmp(it->string, key, n) == 0 && it->string[n] == '.')
			return true;
	}
	return false;
}

/* Top-level members named `key`. */
static int
count_key(const cJSON *doc, const char *key, const cJSON **first)
{
	const cJSON *it;
	int          n = 0;

	*first = NULL;
	cJSON_ArrayForEach(it, doc) {
		if (it->string != NULL && strcmp(it->string, key) == 0 && n++ == 0)
			*first = it;
	}
	return n;
}

static void
check_rules(const cJSON *orig, const struct rules *r)
{
	struct cfg_model m = { 0 };
	char            *strip[4] = { 0 }, *out;
	cJSON           *doc = cJSON_Duplicate(orig, true), *back;
	const cJSON     *it, *v;
	bool             changed;

	for (size_t i = 0; r->strip[i] != NULL; i++)
		strip[i] = (char *)(uintptr_t)r->strip[i];
	m.use_model_name = (char *)(uintptr_t)r->use_model_name;
	m.strip_params = strip;
	m.set_params = r->set ? cJSON_Parse(r->set) : NULL;
	if (doc == NULL || (r->set != NULL && m.set_params == NULL))
		abort();
	changed = router_rewrite_json(doc, &m);
	if (!changed && !same(orig, doc))
		abort();
	if (r->use_model_name != NULL &&
	    (count_key(doc, "model", &v) != 1 || !cJSON_IsString(v) ||
	    strcmp(v->valuestring, r->use_model_name) != 0))
		abort();
	for (size_t i = 0; strip[i] != NULL; i++)
		if (strchr(strip[i], '.') == NULL && !cJSON_HasObjectItem(m.set_params, strip[i]) &&
		    !written_inside(m.set_params, strip[i]) && count_key(doc, strip[i], &v) != 0)
			abort();
	cJSON_ArrayForEach(it, m.set_params) {
		if (strchr(it->string, '.') == NULL && !written_inside(m.set_params, it->string) &&
		    (count_key(doc, it->string, &v) != 1 || !cJSON_Compare(v, it, true)))
			abort();
	}
	if ((out = cJSON_PrintUnformatted(doc)) == NULL || (back = cJSON_Parse(out)) == NULL)
		abort();
	cJSON_Delete(back);
	free(out);
	cJSON_Delete(m.set_params);
	cJSON_Delete(doc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *model;
	char        err[256];
	cJSON      *doc;

	struct router_peek pk;
	char               perr[256] = "";
	int                peek;

	doc = router_json_model((const char *)data, size, ROUTER_MAX_JSON_DEPTH, &model, err, sizeof(err));
	/* The scan agrees with the full parse: what it finds, the parse finds too; it may only be
	 * stricter on syntax (RFC 8259 where cJSON is lenient). */
	peek = router_json_peek((const char *)data, size, ROUTER_MAX_JSON_DEPTH, &pk, perr, sizeof(perr));
	if (peek == 1 && doc == NULL && strstr(err, "repeats the key") == NULL)
		abort(); /* (a repeat inside: harmless for a body sent on as it came) */
	if (peek == 1 && doc != NULL && (strcmp(pk.model, model) != 0 ||
	    pk.stream != cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "stream"))))
		abort();
	if (peek == -1 && doc != NULL && strcmp(perr, "request body is not valid JSON") != 0)
		abort();
	if (doc == NULL) {
		if (model != NULL || err[0] == '\0')
			abort();
		return 0;
	}
	if (model == NULL || model[0] == '\0')
		abort();
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		check_rules(doc, &rules[i]);
	cJSON_Delete(doc);
	return 0;
}
