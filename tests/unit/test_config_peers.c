/* config_peers: the peers section becomes models; every value is checked at load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cfg_load.h"
#include "check.h"
#include "modelmux/config.h"
#include "modelmux/config_peers.h"
#include "modelmux/haproxy.h"
#include "modelmux/util.h"

#define LOCAL "models:\n  loc:\n    cmd: /bin/sleep 100\n    proxy: http://127.0.0.1:9\n" \
	"    aliases: [shared-alias]\n"

#define EXPECT_ERR(text, want) do { \
	char *errs_ = load_errs(text); \
	ASSERT_CONTAINS(errs_, "\n" want "\n"); \
	free(errs_); \
} while (0)

static void
test_models(void)
{
	struct cfg             *c = load_ok(LOCAL
	    "peers:\n"
	    "  box:\n"
	    "    proxy: http://10.0.0.2:8080//\n"
	    "    apiKey: k-1\n"
	    "    models: [llama, shared, llama, shared-alias]\n"
	    "    filters:\n      stripParams: \"top_p, model\"\n      setParams: {max_tokens: 9}\n"
	    "    timeouts: {connect: 3}\n"
	    "    checkInterval: 7\n"
	    "    concurrencyLimit: 4\n"
	    "    tailcatKey: x\n"
	    "  other:\n"
	    "    proxy: https://api.example.com/v1\n"
	    "    models: [shared]\n"
	    "    checkEndpoint: none\n");
	const struct cfg_model *m;
	const struct cfg_peer  *p;

	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	ASSERT_INT_EQ(c->npeers, 2);
	ASSERT_INT_EQ(c->nmodels, 5); /* loc + box/{llama,shared,shared-alias} + other/shared */
	p = cfg_find_peer(c, "box");
	ASSERT_NOT_NULL(p);
	ASSERT_STR_EQ(p->proxy, "http://10.0.0.2:8080");
	ASSERT_STR_EQ(p->check_endpoint, CFG_PEER_DEF_CHECK_ENDPOINT);
	ASSERT_INT_EQ(p->check_interval_s, 7);
	ASSERT_INT_EQ(p->check_timeout_s, CFG_PEER_DEF_CHECK_TIMEOUT_S);
	ASSERT_INT_EQ(strv_len(p->models), 3); /* the repeat is dropped */
	ASSERT_NULL(cfg_find_peer(c, "other")->check_endpoint);
	/* Sorted by id, full names; the bare name is an alias when only one peer has it. */
	for (size_t i = 1; i < c->nmodels; i++)
		ASSERT_TRUE(strcmp(c->models[i - 1].id, c->models[i].id) < 0);
	m = cfg_find_model(c, "llama");
	ASSERT_NOT_NULL(m);
	if (m != NULL) {
		ASSERT_STR_EQ(m->id, "box/llama");
		ASSERT_TRUE(m->peer == p);
		ASSERT_NULL(m->argv);
		ASSERT_NULL(m->check_endpoint);
		ASSERT_STR_EQ(m->proxy, "http://10.0.0.2:8080");
		ASSERT_STR_EQ(m->use_model_name, "llama");
		ASSERT_STR_EQ(m->upstream_api_key, "k-1");
		ASSERT_STR_EQ(m->strip_params[0], "top_p");
		ASSERT_NULL(m->strip_params[1]);
		ASSERT_INT_EQ(cJSON_GetObjectItem(m->set_params, "max_tokens")->valueint, 9);
		ASSERT_INT_EQ(m->timeouts.connect_s, 3);
		ASSERT_INT_EQ(m->timeouts.response_header_s, CFG_PEER_DEF_RESPONSE_HEADER_S);
		ASSERT_INT_EQ(m->concurrency_limit, 4);
		ASSERT_STR_EQ(m->group->name, CFG_PEER_GROUP);
		ASSERT_FALSE(m->group->swap);
		ASSERT_FALSE(m->group->exclusive);
		ASSERT_TRUE(m->group->persistent);
	}
	/* Two peers have "shared": no bare alias; a local alias wins over a peer's bare name. */
	ASSERT_NULL(cfg_find_model(c, "shared"));
	ASSERT_STR_EQ(cfg_find_model(c, "shared-alias")->id, "loc");
	ASSERT_STR_EQ(cfg_find_model(c, "box/shared-alias")->id, "box/shared-alias");
	ASSERT_STR_EQ(cfg_find_model(c, "other/shared")->id, "other/shared");
	ASSERT_NULL(cfg_find_model(c, "other/shared")->upstream_api_key);
	/* The local model keeps its group; the groups' pointers survived the move. */
	ASSERT_STR_EQ(cfg_find_model(c, "loc")->group->name, "(default)");
	ASSERT_INT_EQ(c->warnings.n, 1);
	ASSERT_CONTAINS(c->warnings.msgs[0], "peers.box.tailcatKey: not supported");
	cfg_unref(c);
}

static void
test_errors(void)
{
	EXPECT_ERR(LOCAL "peers: [a]\n", "cfg.yaml:6:1: peers: expected a map");
	EXPECT_ERR(LOCAL "peers:\n  b: {models: [x]}\n", "cfg.yaml:7:3: peers.b.proxy: missing required key");
	EXPECT_ERR(LOCAL "peers:\n  b: {proxy: \"http://h\"}\n",
	    "cfg.yaml:7:3: peers.b.models: missing required key");
	EXPECT_ERR(LOCAL "peers:\n  b: {proxy: \"ftp://h\", models: [x]}\n",
	    "cfg.yaml:7:7: peers.b.proxy: expected an http:// or https:// URL (at most 2048 bytes, no spaces)");
	EXPECT_ERR(LOCAL "peers:\n  b: {proxy: \"http://h x\", models: [x]}\n",
	    "cfg.yaml:7:7: peers.b.proxy: expected an http:// or https:// URL (at most 2048 bytes, no spaces)");
	EXPECT_ERR(LOCAL "peers:\n  b: {proxy: \"http://h\", models: []}\n",
	    "cfg.yaml:7:26: peers.b.models: expected a list of at least one model id");
	EXPECT_ERR(LOCAL "peers:\n  b: {proxy: \"http://h\", models: [\"a b\"]}\n",
	    "cfg.yaml:7:35: peers.b.models[0]: must not contain whitespace or control characters");
	EXPECT_ERR(LOCAL "peers:\n  b: {proxy: \"http://h\", models: [x], apiKey: \"a\\nb\"}\n",
	    "cfg.yaml:7:39: peers.b.apiKey: expected a key of printable characters without spaces (at most 4096 bytes)");
	EXPECT_ERR(LOCAL "peers:\n  b: {proxy: \"http://h\", models: [x], checkEndpoint: health}\n",
	    "cfg.yaml:7:39: peers.b.checkEndpoint: expected a path starting with / (at most 1024 bytes) or none");
	EXPECT_ERR(LOCAL "peers:\n  b: {proxy: \"http://h\", models: [x], checkInterval: 0}\n",
	    "cfg.yaml:7:39: peers.b.checkInterval: must be between 1 and 3600");
	EXPECT_ERR(LOCAL "peers:\n  b: {proxy: \"http://h\", models: [x], checkInterval: 2, checkTimeout: 3}\n",
	    "cfg.yaml:7:3: peers.b.checkTimeout: longer than checkInterval (2 s)");
	EXPECT_ERR(LOCAL "peers:\n  b: {proxy: \"http://h\", models: [x], concurrencyLimit: 5000}\n",
	    "cfg.yaml:7:39: peers.b.concurrencyLimit: must be between 1 and 1024");
	EXPECT_ERR(LOCAL "peers:\n  b: {proxy: \"http://h\", models: [x], timeouts: {connect: 90000}}\n",
	    "cfg.yaml:7:3: peers.b.timeouts: a timeout is over 86400 s");
	EXPECT_ERR(LOCAL "peers:\n  b: {proxy: \"http://h\", models: [x], bogus: 1}\n",
	    "cfg.yaml:7:39: peers.b.bogus: unknown key");
	EXPECT_ERR(LOCAL "peers:\n  b: {proxy: \"http://h\", models: [x], filters: {x: 1}}\n",
	    "cfg.yaml:7:49: peers.b.filters.x: unknown key");
	EXPECT_ERR("peers:\n  b: {proxy: \"http://h\", models: [\"a b\"]}\n",
	    "cfg.yaml:2:35: peers.b.models[0]: must not contain whitespace or control characters");
	/* A peer's full name may not be a model of ours, nor another peer's. */
	EXPECT_ERR("models:\n  b/x:\n    cmd: /bin/sleep 1\n    proxy: http://h:1\n"
	    "peers:\n  b: {proxy: \"http://h\", models: [x]}\n",
	    "cfg.yaml:6:3: peers.b.models[0]: peer model \"b/x\" is already the name of a model, an alias or another peer's model");
	EXPECT_ERR(LOCAL "peers:\n  a: {proxy: \"http://h\", models: [b/c]}\n  a/b: {proxy: \"http://h\", models: [c]}\n",
	    "cfg.yaml:8:3: peers.a/b.models[0]: peer model \"a/b/c\" is already the name of a model, an alias or another peer's model");
	EXPECT_ERR(LOCAL "groups:\n  (peers): {members: [loc]}\npeers:\n  b: {proxy: \"http://h\", models: [x]}\n",
	    "cfg.yaml:7:3: groups.(peers): this group name is the peers' own");
	/* A group cannot take a peer's model. */
	EXPECT_ERR(LOCAL "groups:\n  g: {members: [b/x]}\npeers:\n  b: {proxy: \"http://h\", models: [x]}\n",
	    "cfg.yaml:7:17: groups.g.members[0]: unknown model \"b/x\"");
}

/* The generator's arguments (its output is exercised by the HAProxy integration test). */
static void
test_haproxy_args(void)
{
	char  a0[] = "--haproxy-config", a1[] = "--server", a2[] = "bad", a3[] = "-c",
	      a4[] = "/nonexistent.yaml", a5[] = "--check-interval", a6[] = "5";
	char *v1[] = { a0, a1, a2, NULL };
	char *v2[] = { a0, a5, a6, NULL };
	char *v3[] = { a0, NULL };

	ASSERT_INT_EQ(haproxy_main(3, v1), 2);
	ASSERT_INT_EQ(haproxy_main(3, v2), 2);
	ASSERT_INT_EQ(haproxy_main(1, v3), 2);
	(void)a3;
	(void)a4;
}

int
main(void)
{
	test_models();
	test_errors();
	test_haproxy_args();
	CHECK_DONE();
}
