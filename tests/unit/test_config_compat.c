/* Unit tests for config_compat: llama-swap's newer keys (capabilities, setParamsByID, routing,
 * matrix and its eviction rule, selectors, logToStdout, upstream.ignorePaths). */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cfg_load.h"
#include "check.h"
#include "modelmux/config.h"
#include "modelmux/config_compat.h"
#include "modelmux/util.h"

#define M(id) "  " id ":\n    cmd: /bin/true --port ${PORT}\n"

#define EXPECT_ERR(text, want) do { \
	char *errs_ = load_errs(text); \
	ASSERT_CONTAINS(errs_, want); \
	free(errs_); \
} while (0)

static size_t
idx(const struct cfg *c, const char *id)
{
	return (size_t)(cfg_find_model(c, id) - c->models);
}

static void
test_capabilities(void)
{
	struct cfg *c = load_ok("models:\n  a:\n    cmd: /bin/true --port ${PORT} --ctx-size 4096\n"
	    "  b:\n    cmd: /bin/true --port ${PORT} -c 2048\n"
	    "    capabilities:\n      in: [text, image]\n      out: [text]\n      tools: true\n"
	    "      reranker: false\n      context: 131072\n" M("c"));
	const struct cfg_model *b;

	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	b = cfg_find_model(c, "b");
	ASSERT_TRUE(b->compat != NULL && b->compat->caps.set);
	ASSERT_INT_EQ(b->compat->caps.in, COMPAT_MOD_TEXT | COMPAT_MOD_IMAGE);
	ASSERT_INT_EQ(b->compat->caps.out, COMPAT_MOD_TEXT);
	ASSERT_TRUE(b->compat->caps.tools);
	ASSERT_FALSE(b->compat->caps.reranker);
	ASSERT_INT_EQ(cfg_compat_context(b), 131072);            /* the config wins */
	ASSERT_INT_EQ(cfg_compat_context(cfg_find_model(c, "a")), 4096); /* from --ctx-size */
	ASSERT_INT_EQ(cfg_compat_context(cfg_find_model(c, "c")), 0);
	cfg_unref(c);
	EXPECT_ERR("models:\n  a:\n    cmd: /bin/true --port ${PORT}\n    capabilities: {in: [smell]}\n",
	    "models.a.capabilities.in: unknown modality (text, audio or image)");
	EXPECT_ERR("models:\n  a:\n    cmd: /bin/true --port ${PORT}\n    capabilities: {vision: true}\n",
	    "models.a.capabilities.vision: unknown key");
	EXPECT_ERR("models:\n  a:\n    cmd: /bin/true --port ${PORT}\n    capabilities: {context: -1}\n",
	    "models.a.capabilities.context: expected an integer >= 0");
	EXPECT_ERR("models:\n  a:\n    cmd: /bin/true --port ${PORT}\n    capabilities: {context: 1e300}\n",
	    "models.a.capabilities.context: expected an integer >= 0");
	EXPECT_ERR("routing:\n  router:\n    settings: [groups]\nmodels:\n  a:\n    cmd: /bin/true --port ${PORT}\n",
	    "routing.router.settings: expected a map");
}

static void
test_params_by_id(void)
{
	struct cfg *c = load_ok("macros:\n  lvl: high\nmodels:\n  gpt:\n"
	    "    cmd: /bin/true --port ${PORT}\n    aliases: [g]\n    filters:\n      setParamsByID:\n"
	    "        \"${MODEL_ID}\": {effort: medium}\n"
	    "        \"${MODEL_ID}:${lvl}\": {effort: high, model: other}\n"
	    "        \"g\": {effort: low}\n" M("x"));
	const struct cfg_model *m;
	const cJSON            *p;

	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	m = cfg_find_model(c, "gpt");
	ASSERT_TRUE(cfg_find_model(c, "gpt:high") == m); /* each key is an alias */
	ASSERT_TRUE(strv_contains(m->aliases, "gpt:high"));
	ASSERT_FALSE(strv_contains(m->aliases, "gpt"));   /* its own id is not repeated */
	ASSERT_INT_EQ(strv_len(m->aliases), 2);           /* g, gpt:high */
	p = cfg_compat_params_by_id(m, "gpt:high");
	ASSERT_NOT_NULL(p);
	ASSERT_STR_EQ(cJSON_GetObjectItem(p, "effort")->valuestring, "high");
	ASSERT_NULL(cJSON_GetObjectItem(p, "model"));     /* protected */
	ASSERT_STR_EQ(cJSON_GetObjectItem(cfg_compat_params_by_id(m, "gpt"), "effort")->valuestring,
	    "medium");
	ASSERT_NULL(cfg_compat_params_by_id(m, "nope"));
	ASSERT_NULL(cfg_compat_params_by_id(cfg_find_model(c, "x"), "x"));
	cfg_unref(c);
	EXPECT_ERR("models:\n  a:\n    cmd: /bin/true --port ${PORT}\n    filters:\n"
	    "      setParamsByID: {\"b\": {t: 1}}\n" M("b"),
	    "models.a.filters.setParamsByID.b: \"b\" already names model b");
	EXPECT_ERR("models:\n  a:\n    cmd: /bin/true --port ${PORT}\n    filters:\n"
	    "      setParamsByID: {\"${NOPE}\": {t: 1}}\n", "unresolved macro ${NOPE}");
	EXPECT_ERR("models:\n  a:\n    cmd: /bin/true --port ${PORT}\n    filters:\n"
	    "      setParamsByID: {\"x\": 3}\n", "models.a.filters.setParamsByID.x: expected a map");
}

static void
test_routing_groups(void)
{
	struct cfg *c = load_ok("routing:\n  router:\n    settings:\n      groups:\n"
	    "        pair:\n          swap: false\n          members: [a, b]\n"
	    "  scheduler:\n    use: fifo\n    settings:\n      fifo:\n        priority: {b: 7, a: -1}\n"
	    "models:\n" M("a") M("b") M("c"));

	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	ASSERT_INT_EQ(c->ngroups, 2);
	ASSERT_STR_EQ(c->groups[0].name, "pair");
	ASSERT_FALSE(c->groups[0].swap);
	ASSERT_TRUE(c->groups[0].exclusive);
	ASSERT_STR_EQ(cfg_find_model(c, "a")->group->name, "pair");
	ASSERT_STR_EQ(cfg_find_model(c, "c")->group->name, "(default)");
	ASSERT_INT_EQ(cfg_compat_priority(c, idx(c, "b")), 7);
	ASSERT_INT_EQ(cfg_compat_priority(c, idx(c, "a")), -1);
	ASSERT_INT_EQ(cfg_compat_priority(c, idx(c, "c")), 0);
	ASSERT_FALSE(cfg_compat_uses_matrix(c));
	cfg_unref(c);
	EXPECT_ERR("groups:\n  g: {members: [a]}\nrouting:\n  router:\n    settings:\n"
	    "      groups:\n        h: {members: [a]}\nmodels:\n" M("a"),
	    "routing.router.settings.groups: groups is given at the top level too");
	EXPECT_ERR("routing:\n  router:\n    settings:\n      groups:\n        h: {members: [zz]}\n"
	    "models:\n" M("a"), "routing.router.settings.groups.h.members[0]: unknown model \"zz\"");
	EXPECT_ERR("routing:\n  scheduler:\n    settings:\n      fifo:\n        priority: {zz: 1}\n"
	    "models:\n" M("a"), "routing.scheduler.settings.fifo.priority.zz: unknown model \"zz\"");
	EXPECT_ERR("routing:\n  router:\n    use: swarm\nmodels:\n" M("a"),
	    "routing.router.use: expected group or matrix");
	EXPECT_ERR("routing:\n  router:\n    use: matrix\nmodels:\n" M("a"),
	    "routing.router.use: matrix, but no routing.router.settings.matrix");
	EXPECT_ERR("routing:\n  scheduler:\n    use: lifo\nmodels:\n" M("a"),
	    "routing.scheduler.use: expected fifo");
}

#define MATRIX_MODELS "models:\n" M("gemma") M("qwen") M("voxtral") M("llama") M("lonely")

static void
test_matrix(void)
{
	struct cfg *c = load_ok("matrix:\n  vars: {g: gemma, q: qwen, v: voxtral, L: llama}\n"
	    "  evict_costs: {v: 50}\n  sets:\n    standard: \"(g | q) & v\"\n    full: \"L\"\n"
	    MATRIX_MODELS);
	size_t g, q, v, L, lone, run[3];

	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	ASSERT_TRUE(cfg_compat_uses_matrix(c));
	ASSERT_INT_EQ(c->compat->nalts, 3); /* [g,v] [q,v] [L] */
	g = idx(c, "gemma"), q = idx(c, "qwen"), v = idx(c, "voxtral"), L = idx(c, "llama");
	lone = idx(c, "lonely");
	/* g and v run; loading q keeps v (same set), evicts g. */
	run[0] = g, run[1] = v;
	ASSERT_TRUE(cfg_compat_matrix_keeps(c, q, run, 2, v));
	ASSERT_FALSE(cfg_compat_matrix_keeps(c, q, run, 2, g));
	/* Loading L: it runs alone. */
	ASSERT_FALSE(cfg_compat_matrix_keeps(c, L, run, 2, v));
	ASSERT_FALSE(cfg_compat_matrix_keeps(c, L, run, 2, g));
	/* A model in no set runs alone. */
	ASSERT_FALSE(cfg_compat_matrix_keeps(c, lone, run, 2, g));
	/* With L running, loading v: [g,v] and [q,v] cost the same (L evicted): L goes. */
	run[0] = L;
	ASSERT_FALSE(cfg_compat_matrix_keeps(c, v, run, 1, L));
	cfg_unref(c);

	/* Cost decides: v is expensive, so loading g while q and v run keeps v. Ties: the first
	 * set in definition order. */
	EXPECT_ERR("matrix:\n  vars: {g: gemma, q: qwen, v: voxtral}\n"
	    "  sets:\n    a: \"g & q\"\n    c: \"+a & L\"\n" MATRIX_MODELS,
	    "matrix.sets.c: \"L\" is not in vars");
	c = load_ok("matrix:\n  vars: {g: gemma, q: qwen, v: voxtral}\n  evict_costs: {v: 50, q: 3}\n"
	    "  sets:\n    a: \"g & q\"\n    b: \"g & v\"\n    c: \"+a | v\"\n" MATRIX_MODELS);
	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	ASSERT_INT_EQ(c->compat->nalts, 4); /* [g,q] [g,v] [g,q] [v] */
	g = idx(c, "gemma"), q = idx(c, "qwen"), v = idx(c, "voxtral");
	run[0] = q, run[1] = v;
	ASSERT_TRUE(cfg_compat_matrix_keeps(c, g, run, 2, v));  /* evicting q costs 3, v 50 */
	ASSERT_FALSE(cfg_compat_matrix_keeps(c, g, run, 2, q));
	run[0] = q;
	ASSERT_TRUE(cfg_compat_matrix_keeps(c, g, run, 1, q));  /* nothing to evict in set a */
	cfg_unref(c);

	/* routing.router.use: matrix. */
	c = load_ok("routing:\n  router:\n    use: matrix\n    settings:\n      matrix:\n"
	    "        vars: {g: gemma, v: voxtral}\n        sets: {s: \"g & v\"}\n" MATRIX_MODELS);
	ASSERT_NOT_NULL(c);
	ASSERT_TRUE(c != NULL && cfg_compat_uses_matrix(c));
	cfg_unref(c);

	EXPECT_ERR("matrix:\n  vars: {g: nope}\n" MATRIX_MODELS, "matrix.vars.g: unknown model \"nope\"");
	EXPECT_ERR("matrix:\n  vars: {\"a_b\": gemma}\n" MATRIX_MODELS, "matrix.vars.a_b: invalid name");
	EXPECT_ERR("matrix:\n  vars: {g: gemma}\n  sets: {s: \"g & (g\"}\n" MATRIX_MODELS,
	    "matrix.sets.s: missing )");
	EXPECT_ERR("matrix:\n  vars: {g: gemma}\n  sets: {s: \"g & x\"}\n" MATRIX_MODELS,
	    "matrix.sets.s: \"x\" is not in vars");
	EXPECT_ERR("matrix:\n  vars: {g: gemma}\n  sets: {s: \"+t\", t: \"+s\"}\n" MATRIX_MODELS,
	    "matrix.sets.s: nested too deeply, or sets refer to each other in a loop");
	EXPECT_ERR("matrix:\n  vars: {g: gemma}\n  sets: {s: \"g g\"}\n" MATRIX_MODELS,
	    "matrix.sets.s: unexpected \"g\"");
	EXPECT_ERR("matrix:\n  vars: {g: gemma}\n  evict_costs: {g: 0}\n" MATRIX_MODELS,
	    "matrix.evict_costs.g: expected an integer >= 1");
	EXPECT_ERR("matrix:\n  vars: {g: gemma}\ngroups:\n  x: {members: [qwen]}\n" MATRIX_MODELS,
	    "groups: groups and a matrix cannot both be used");
	/* A combinatorial bomb is cut at the bound. */
	EXPECT_ERR("matrix:\n  vars: {a: gemma, b: qwen, c: voxtral, d: llama, e: lonely}\n"
	    "  sets:\n    s: \"(a|b|c|d|e)&(a|b|c|d|e)&(a|b|c|d|e)&(a|b|c|d|e)&(a|b|c|d|e)&(a|b|c|d|e)\"\n"
	    MATRIX_MODELS, "matrix: sets expand to more than 4096 combinations");
}

static void
test_selectors(void)
{
	struct cfg *c = load_ok("groups:\n  duo:\n    swap: false\n    members: [a, b]\n"
	    "selectors:\n  fast:\n    strategy: spillover\n    targets: [a, b]\n"
	    "    settings: {spillover: 2}\n"
	    "  pick:\n    strategy: warm\n    targets: [bee, c]\n    name: Pick\n    unlisted: true\n"
	    "models:\n" M("a") "  b:\n    cmd: /bin/true --port ${PORT}\n    aliases: [bee]\n" M("c"));
	const struct cfg_selector *s;

	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	s = cfg_compat_selector(c, "fast");
	ASSERT_TRUE(s != NULL && s->strategy == COMPAT_SEL_SPILLOVER && s->spillover == 2);
	s = cfg_compat_selector(c, "pick");
	ASSERT_TRUE(s != NULL && s->strategy == COMPAT_SEL_WARM && s->unlisted);
	ASSERT_STR_EQ(s->targets[0], "bee");
	ASSERT_STR_EQ(s->name, "Pick");
	ASSERT_NULL(cfg_compat_selector(c, "a"));
	ASSERT_NULL(cfg_find_model(c, "fast")); /* a selector is not a model */
	cfg_unref(c);
	EXPECT_ERR("selectors:\n  a: {strategy: pin, targets: [a]}\nmodels:\n" M("a"),
	    "selectors.a: the name is already a model id or alias");
	EXPECT_ERR("selectors:\n  s: {targets: [a]}\nmodels:\n" M("a"),
	    "selectors.s.strategy: missing required key");
	EXPECT_ERR("selectors:\n  s: {strategy: random, targets: [a]}\nmodels:\n" M("a"),
	    "selectors.s.strategy: unknown strategy");
	EXPECT_ERR("selectors:\n  s: {strategy: pin, targets: []}\nmodels:\n" M("a"),
	    "selectors.s.targets: expected a list of at least one model");
	EXPECT_ERR("selectors:\n  s: {strategy: pin, targets: [zz]}\nmodels:\n" M("a"),
	    "selectors.s.targets[0]: unknown model \"zz\"");
	EXPECT_ERR("selectors:\n  s: {strategy: pin, targets: [t]}\n  t: {strategy: pin, targets: [a]}\n"
	    "models:\n" M("a"), "selectors.s.targets[0]: \"t\" is a selector; selectors do not chain");
	EXPECT_ERR("selectors:\n  s: {strategy: spillover, targets: [a, b]}\nmodels:\n" M("a") M("b"),
	    "selectors.s.targets: spillover targets must be able to run together");
	EXPECT_ERR("selectors:\n  s: {strategy: spillover, targets: [a], settings: {spillover: 0}}\n"
	    "models:\n" M("a"), "selectors.s.settings.spillover: must be >= 1");
	/* With a matrix: targets in one set may spill over. */
	c = load_ok("matrix:\n  vars: {a: a, b: b}\n  sets: {s: \"a & b\"}\n"
	    "selectors:\n  s: {strategy: spillover, targets: [a, b]}\nmodels:\n" M("a") M("b"));
	ASSERT_NOT_NULL(c);
	cfg_unref(c);
}

static void
test_log_and_upstream(void)
{
	struct cfg *c = load_ok("models:\n" M("a"));

	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	/* Without logToStdout both kinds of lines are written (ours). */
	ASSERT_TRUE(cfg_compat_log_proxy(c));
	ASSERT_TRUE(cfg_compat_log_upstream(c));
	/* llama-swap's default ignorePaths. */
	ASSERT_TRUE(cfg_compat_ignored_path(c, "/favicon.ico"));
	ASSERT_TRUE(cfg_compat_ignored_path(c, "/assets/app.js"));
	ASSERT_FALSE(cfg_compat_ignored_path(c, "/"));
	ASSERT_FALSE(cfg_compat_ignored_path(c, "/v1/chat/completions"));
	cfg_unref(c);
	c = load_ok("logToStdout: upstream\nupstream:\n  ignorePaths: [\"^/metrics$\"]\nmodels:\n" M("a"));
	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	ASSERT_FALSE(cfg_compat_log_proxy(c));
	ASSERT_TRUE(cfg_compat_log_upstream(c));
	ASSERT_TRUE(cfg_compat_ignored_path(c, "/metrics"));
	ASSERT_FALSE(cfg_compat_ignored_path(c, "/favicon.ico"));
	cfg_unref(c);
	c = load_ok("logToStdout: none\nupstream: {ignorePaths: []}\nmodels:\n" M("a"));
	ASSERT_TRUE(c != NULL && !cfg_compat_log_proxy(c) && !cfg_compat_log_upstream(c));
	ASSERT_TRUE(c != NULL && !cfg_compat_ignored_path(c, "/x.js"));
	cfg_unref(c);
	EXPECT_ERR("logToStdout: stderr\nmodels:\n" M("a"),
	    "cfg.yaml:1:1: logToStdout: expected proxy, upstream, both or none");
	EXPECT_ERR("upstream:\n  ignorePaths: [\"(\"]\nmodels:\n" M("a"),
	    "upstream.ignorePaths: bad regular expression \"(\"");
	EXPECT_ERR("upstream:\n  blockPaths: []\nmodels:\n" M("a"), "upstream.blockPaths: unknown key");
}

int
main(void)
{
	test_capabilities();
	test_params_by_id();
	test_routing_groups();
	test_matrix();
	test_selectors();
	test_log_and_upstream();
	CHECK_DONE();
}
