/* Fuzzes the request-body path of the router: model extraction and the model's rewrites. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "modelmux/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char s1[] = "temperature", s2[] = "a.b", s3[] = "model", renamed[] = "renamed";
	static char *strip[] = { s1, s2, s3, NULL };
	struct cfg_model m = { 0 };
	const char      *model;
	char             err[256];
	cJSON           *doc;
	bool             ok;

	doc = router_json_model((const char *)data, size, ROUTER_MAX_JSON_DEPTH, &model, err, sizeof(err));
	if (doc == NULL)
		return 0;
	m.use_model_name = renamed;
	m.strip_params = strip;
	m.set_params = cJSON_Parse("{\"max_tokens\":5,\"x.y\":true}");
	ok = router_rewrite_json(doc, &m);
	if (ok) {
		char *s = cJSON_PrintUnformatted(doc);

		free(s);
	}
	cJSON_Delete(m.set_params);
	cJSON_Delete(doc);
	(void)router_match("POST", "/v1/chat/completions", &ok);
	return 0;
}
