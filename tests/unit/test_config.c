/* Unit tests for config: parsing, macros, ports, validation, argv splitting. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "cfg_load.h"
#include "check.h"
#include "modelmux/config.h"
#include "modelmux/log.h"
#include "modelmux/util.h"

#define EXPECT_ERR(text, want) do { \
	char *errs_ = load_errs(text); \
	ASSERT_CONTAINS(errs_, "\n" want "\n"); \
	free(errs_); \
} while (0)

/* Whether k holds the SHA-256 of plain. */
static bool
key_is(const struct cfg_key *k, const char *plain)
{
	unsigned char d[32];
	unsigned int  n = 0;

	EVP_Digest(plain, strlen(plain), d, &n, EVP_sha256(), NULL);
	return n == 32 && memcmp(d, k->sha256, 32) == 0;
}

static void
test_minimal_defaults(void)
{
	struct cfg             *c = load_ok("models:\n  m:\n    cmd: srv --port ${PORT}\n");
	const struct cfg_model *m;

	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	ASSERT_INT_EQ(c->refs, 1);
	ASSERT_STR_EQ(c->path, "cfg.yaml");
	ASSERT_STR_EQ(c->listen, CFG_DEF_LISTEN);
	ASSERT_NULL(c->log_level);
	ASSERT_INT_EQ(c->health_check_timeout_s, 120);
	ASSERT_INT_EQ(c->start_port, 5800);
	ASSERT_INT_EQ(c->global_ttl_s, 0);
	ASSERT_INT_EQ(c->unload_timeout_s, 10);
	ASSERT_FALSE(c->send_loading_state);
	ASSERT_FALSE(c->include_aliases_in_list);
	ASSERT_INT_EQ(c->nkeys, 0);
	ASSERT_INT_EQ(strv_len(c->cors.origins), 0);
	ASSERT_FALSE(c->cors.allow_credentials);
	ASSERT_INT_EQ(strv_len(c->cors.methods), 3);
	ASSERT_STR_EQ(c->cors.methods[2], "OPTIONS");
	ASSERT_INT_EQ(strv_len(c->cors.headers), 4);
	ASSERT_STR_EQ(c->cors.headers[3], "X-Request-ID");
	ASSERT_INT_EQ(c->cors.max_age_s, 600);
	ASSERT_TRUE(c->rate.per_ip.rate == CFG_DEF_RATE_PER_IP);
	ASSERT_INT_EQ(c->rate.per_ip.burst, CFG_DEF_BURST_PER_IP);
	ASSERT_TRUE(c->rate.per_key.rate == CFG_DEF_RATE_PER_KEY);
	ASSERT_INT_EQ(c->rate.per_key.burst, CFG_DEF_BURST_PER_KEY);
	ASSERT_TRUE(c->rate.global.rate == 0);
	ASSERT_TRUE(c->rate.auth_failures.rate == 0.2);
	ASSERT_INT_EQ(c->rate.auth_failures.burst, 10);
	ASSERT_INT_EQ(c->rate.table_size, 4096);
	ASSERT_INT_EQ(c->limits.max_header_bytes, 16384);
	ASSERT_INT_EQ(c->limits.max_url_bytes, 8192);
	ASSERT_INT_EQ(c->limits.max_json_body_bytes, 33554432);
	ASSERT_INT_EQ(c->limits.max_multipart_body_bytes, 1073741824);
	ASSERT_INT_EQ(c->limits.max_json_depth, 64);
	ASSERT_INT_EQ(c->limits.header_timeout_s, 30);
	ASSERT_INT_EQ(c->limits.body_idle_timeout_s, 60);
	ASSERT_NULL(c->allowed_commands);
	ASSERT_NULL(c->tls_cert_pem);
	ASSERT_NULL(c->tls_key_pem);
	ASSERT_INT_EQ(strv_len(c->preload), 0);
	ASSERT_INT_EQ(c->nmodels, 1);
	ASSERT_INT_EQ(c->warnings.n, 0);
	m = &c->models[0];
	ASSERT_STR_EQ(m->id, "m");
	ASSERT_INT_EQ(strv_len(m->argv), 3);
	ASSERT_STR_EQ(m->argv[0], "srv");
	ASSERT_STR_EQ(m->argv[2], "5800");
	ASSERT_NULL(m->stop_argv);
	ASSERT_STR_EQ(m->proxy, "http://127.0.0.1:5800");
	ASSERT_INT_EQ(m->port, 5800);
	ASSERT_INT_EQ(strv_len(m->aliases), 0);
	ASSERT_INT_EQ(strv_len(m->env), 0);
	ASSERT_STR_EQ(m->check_endpoint, "/health");
	ASSERT_NULL(m->name);
	ASSERT_NULL(m->description);
	ASSERT_NULL(m->use_model_name);
	ASSERT_FALSE(m->unlisted);
	ASSERT_INT_EQ(m->ttl_s, -1);
	ASSERT_INT_EQ(m->unload_timeout_s, 0);
	ASSERT_INT_EQ(m->health_check_timeout_s, 0);
	ASSERT_INT_EQ(m->concurrency_limit, 0);
	ASSERT_INT_EQ(m->send_loading_state, -1);
	ASSERT_NULL(m->strip_params);
	ASSERT_NULL(m->set_params);
	ASSERT_NULL(m->metadata);
	ASSERT_INT_EQ(m->timeouts.connect_s, 30);
	ASSERT_INT_EQ(m->timeouts.keepalive_s, 30);
	ASSERT_INT_EQ(m->timeouts.response_header_s, 0);
	ASSERT_INT_EQ(m->timeouts.tls_handshake_s, 10);
	ASSERT_INT_EQ(m->timeouts.expect_continue_s, 1);
	ASSERT_INT_EQ(m->timeouts.idle_conn_s, 4);
	ASSERT_FALSE(m->ignore_websockets);
	ASSERT_NOT_NULL(m->group);
	ASSERT_STR_EQ(m->group->name, "(default)");
	ASSERT_TRUE(m->group->swap);
	ASSERT_TRUE(m->group->exclusive);
	ASSERT_FALSE(m->group->persistent);
	ASSERT_INT_EQ(c->ngroups, 1);
	ASSERT_INT_EQ(m->line, 2);
	ASSERT_INT_EQ(m->col, 3);
	ASSERT_TRUE(cfg_ref(c) == c);
	ASSERT_INT_EQ(c->refs, 2);
	cfg_unref(c);
	cfg_unref(c);
	cfg_unref(NULL);
}

static const char full_yaml[] =
	"healthCheckTimeout: 60\n"
	"logLevel: debug\n"
	"startPort: 9000\n"
	"globalTTL: 300\n"
	"unloadTimeout: 0\n"
	"sendLoadingState: yes\n"
	"includeAliasesInList: On\n"
	"listen: \"[::1]:9999\"\n"
	"apiKeys: [k1, \"k2\"]\n"
	"models:\n"
	"  b:\n"
	"    cmd: |\n"
	"      server\n"
	"      # a comment with ${undefined}\n"
	"        --port ${PORT} \\\n"
	"        --name \"two words\"\n"
	"    cmdStop: kill -TERM ${PID}\n"
	"    proxy: http://127.0.0.1:${PORT}/\n"
	"    aliases: [bee, b2]\n"
	"    env: [\"A=1\", \"B_2=x=y\", \"C=\"]\n"
	"    checkEndpoint: none\n"
	"    ttl: 0\n"
	"    unloadTimeout: 5\n"
	"    healthCheckTimeout: 7\n"
	"    concurrencyLimit: 3\n"
	"    unlisted: true\n"
	"    useModelName: real/b\n"
	"    name: The B\n"
	"    description: \"desc\"\n"
	"    sendLoadingState: false\n"
	"    filters:\n"
	"      stripParams: \"temperature, top_p ,model, a.b,,\"\n"
	"      setParams: {n: 1, s: x, t: true, f: 1.5, q: \"2\", l: [1, two], z: null}\n"
	"    metadata: {port: \"${PORT}\", id: \"${MODEL_ID}\", nested: {k: [1, \"a\"]}}\n"
	"    timeouts: {connect: 1, keepalive: 2, responseHeader: 3, tlsHandshake: 4,\n"
	"      expectContinue: 5, idleConn: 6}\n"
	"    compat: {ignoreWebsockets: \"true\"}\n"
	"  a:\n"
	"    cmd: other ${PORT}\n"
	"    checkEndpoint: /ready\n"
	"    filters: {strip_params: x}\n"
	"  c:\n"
	"    cmd: remote\n"
	"    proxy: https://example.com:8443\n";

static void
test_full(void)
{
	struct cfg             *c = load_ok(full_yaml);
	const struct cfg_model *a, *b, *m;
	cJSON                  *j;

	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	ASSERT_INT_EQ(c->health_check_timeout_s, 60);
	ASSERT_STR_EQ(c->log_level, "debug");
	ASSERT_INT_EQ(c->start_port, 9000);
	ASSERT_INT_EQ(c->global_ttl_s, 300);
	ASSERT_INT_EQ(c->unload_timeout_s, 10);
	ASSERT_TRUE(c->send_loading_state);
	ASSERT_TRUE(c->include_aliases_in_list);
	ASSERT_STR_EQ(c->listen, "[::1]:9999");
	ASSERT_INT_EQ(c->nkeys, 2);
	if (c->nkeys == 2) {
		ASSERT_TRUE(key_is(&c->keys[1], "k2"));
		ASSERT_FALSE(c->keys[1].admin);
	}
	ASSERT_INT_EQ(c->nmodels, 3);
	a = &c->models[0];
	b = &c->models[1];
	ASSERT_STR_EQ(a->id, "a");
	ASSERT_STR_EQ(b->id, "b");
	ASSERT_STR_EQ(c->models[2].id, "c");
	/* ports go over sorted ids: a then b; c has none */
	ASSERT_INT_EQ(a->port, 9000);
	ASSERT_INT_EQ(b->port, 9001);
	ASSERT_INT_EQ(c->models[2].port, 0);
	ASSERT_STR_EQ(a->argv[1], "9000");
	ASSERT_STR_EQ(a->check_endpoint, "/ready");
	ASSERT_STR_EQ(a->strip_params[0], "x");
	ASSERT_INT_EQ(strv_len(b->argv), 5);
	ASSERT_STR_EQ(b->argv[0], "server");
	ASSERT_STR_EQ(b->argv[1], "--port");
	ASSERT_STR_EQ(b->argv[2], "9001");
	ASSERT_STR_EQ(b->argv[4], "two words");
	ASSERT_INT_EQ(strv_len(b->stop_argv), 3);
	ASSERT_STR_EQ(b->stop_argv[2], "${PID}");
	ASSERT_STR_EQ(b->proxy, "http://127.0.0.1:9001");
	ASSERT_STR_EQ(c->models[2].proxy, "https://example.com:8443");
	ASSERT_STR_EQ(b->aliases[0], "bee");
	ASSERT_STR_EQ(b->aliases[1], "b2");
	ASSERT_INT_EQ(strv_len(b->env), 3);
	ASSERT_STR_EQ(b->env[1], "B_2=x=y");
	ASSERT_NULL(b->check_endpoint);
	ASSERT_INT_EQ(b->ttl_s, 0);
	ASSERT_INT_EQ(b->unload_timeout_s, 5);
	ASSERT_INT_EQ(b->health_check_timeout_s, 7);
	ASSERT_INT_EQ(b->concurrency_limit, 3);
	ASSERT_TRUE(b->unlisted);
	ASSERT_STR_EQ(b->use_model_name, "real/b");
	ASSERT_STR_EQ(b->name, "The B");
	ASSERT_STR_EQ(b->description, "desc");
	ASSERT_INT_EQ(b->send_loading_state, 0);
	ASSERT_INT_EQ(strv_len(b->strip_params), 3);
	ASSERT_STR_EQ(b->strip_params[0], "temperature");
	ASSERT_STR_EQ(b->strip_params[1], "top_p");
	ASSERT_STR_EQ(b->strip_params[2], "a.b");
	ASSERT_NOT_NULL(b->set_params);
	ASSERT_TRUE(cJSON_IsNumber(cJSON_GetObjectItem(b->set_params, "n")));
	ASSERT_TRUE(cJSON_IsString(cJSON_GetObjectItem(b->set_params, "s")));
	ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(b->set_params, "t")));
	ASSERT_TRUE(cJSON_GetObjectItem(b->set_params, "f")->valuedouble == 1.5);
	ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(b->set_params, "q")), "2");
	ASSERT_INT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(b->set_params, "l")), 2);
	ASSERT_TRUE(cJSON_IsNull(cJSON_GetObjectItem(b->set_params, "z")));
	j = cJSON_GetObjectItem(b->metadata, "port");
	ASSERT_TRUE(cJSON_IsNumber(j));
	ASSERT_INT_EQ(j ? j->valueint : 0, 9001);
	ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(b->metadata, "id")), "b");
	ASSERT_NOT_NULL(cJSON_GetObjectItem(cJSON_GetObjectItem(b->metadata, "nested"), "k"));
	ASSERT_INT_EQ(b->timeouts.connect_s, 1);
	ASSERT_INT_EQ(b->timeouts.keepalive_s, 2);
	ASSERT_INT_EQ(b->timeouts.response_header_s, 3);
	ASSERT_INT_EQ(b->timeouts.tls_handshake_s, 4);
	ASSERT_INT_EQ(b->timeouts.expect_continue_s, 5);
	ASSERT_INT_EQ(b->timeouts.idle_conn_s, 6);
	ASSERT_TRUE(b->ignore_websockets);
	m = cfg_find_model(c, "bee");
	ASSERT_TRUE(m == b);
	ASSERT_TRUE(cfg_find_model(c, "b2") == b);
	ASSERT_TRUE(cfg_find_model(c, "a") == a);
	ASSERT_NULL(cfg_find_model(c, "zzz"));
	cfg_unref(c);
}

static void
test_split(void)
{
	const char *err;
	char      **v;

	v = cfg_split_command("a 'b c' \"d \\\"e\\\" \\n\" f\\ g h\\\\i", &err);
	ASSERT_NOT_NULL(v);
	if (v != NULL) {
		ASSERT_INT_EQ(strv_len(v), 5);
		ASSERT_STR_EQ(v[0], "a");
		ASSERT_STR_EQ(v[1], "b c");
		ASSERT_STR_EQ(v[2], "d \"e\" \\n");
		ASSERT_STR_EQ(v[3], "f g");
		ASSERT_STR_EQ(v[4], "h\\i");
	}
	strv_free(v);
	v = cfg_split_command("x\t\ty\n z''w '' \"\" 'a\\b' \"$`\"", &err);
	ASSERT_NOT_NULL(v);
	if (v != NULL) {
		ASSERT_INT_EQ(strv_len(v), 7);
		ASSERT_STR_EQ(v[0], "x");
		ASSERT_STR_EQ(v[1], "y");
		ASSERT_STR_EQ(v[2], "zw");
		ASSERT_STR_EQ(v[3], "");
		ASSERT_STR_EQ(v[4], "");
		ASSERT_STR_EQ(v[5], "a\\b");
		ASSERT_STR_EQ(v[6], "$`");
	}
	strv_free(v);
	/* comment lines and continuation lines */
	v = cfg_split_command("  # leading comment\nsrv \\\n  --a 1 \\   \n  # mid comment\n"
	    "  --b#notcomment\n", &err);
	ASSERT_NOT_NULL(v);
	if (v != NULL) {
		ASSERT_INT_EQ(strv_len(v), 4);
		ASSERT_STR_EQ(v[0], "srv");
		ASSERT_STR_EQ(v[1], "--a");
		ASSERT_STR_EQ(v[2], "1");
		ASSERT_STR_EQ(v[3], "--b#notcomment");
	}
	strv_free(v);
	v = cfg_split_command("a\r b", &err);
	ASSERT_INT_EQ(strv_len(v), 2);
	ASSERT_STR_EQ(v ? v[0] : NULL, "a\r");
	strv_free(v);
	ASSERT_NULL(cfg_split_command("a 'b", &err));
	ASSERT_STR_EQ(err, "unterminated quote");
	ASSERT_NULL(cfg_split_command("a \"b\\\"", &err));
	ASSERT_STR_EQ(err, "unterminated quote");
	ASSERT_NULL(cfg_split_command("", &err));
	ASSERT_STR_EQ(err, "empty command");
	ASSERT_NULL(cfg_split_command(" \t\n # only a comment\n", &err));
	ASSERT_STR_EQ(err, "empty command");
}

static void
test_split_limit(void)
{
	struct buf  b = { 0 };
	const char *err;
	char      **v;

	for (int i = 0; i < CFG_MAX_ARGV; i++)
		buf_printf(&b, "w ");
	v = cfg_split_command(b.data, &err);
	ASSERT_INT_EQ(strv_len(v), CFG_MAX_ARGV);
	strv_free(v);
	buf_printf(&b, "x");
	ASSERT_NULL(cfg_split_command(b.data, &err));
	ASSERT_STR_EQ(err, "too many words");
	buf_free(&b);
}

static void
test_macros(void)
{
	struct cfg             *c;
	const struct cfg_model *m;
	cJSON                  *j;

	c = load_ok(
	    "macros:\n"
	    "  bin: srv\n"
	    "  base: \"${bin} --verbose\"\n"
	    "  ctx: 4096\n"
	    "  temp: 0.7\n"
	    "  flag: true\n"
	    "  word: hello\n"
	    "  hc: 33\n"
	    "healthCheckTimeout: ${hc}\n"
	    "models:\n"
	    "  m1:\n"
	    "    macros:\n"
	    "      ctx: 8192\n"
	    "      full: \"${base} -c ${ctx} --alias ${MODEL_ID}\"\n"
	    "    cmd: ${full} --port ${PORT}\n"
	    "    ttl: ${ctx}\n"
	    "    unlisted: ${flag}\n"
	    "    name: \"${MODEL_ID}\"\n"
	    "    filters:\n"
	    "      setParams:\n"
	    "        num_ctx: ${ctx}\n"
	    "        temperature: \"${temp}\"\n"
	    "        stream: ${flag}\n"
	    "        greeting: ${word}\n"
	    "        mixed: ${ctx}x\n"
	    "        quotedint: \"7\"\n"
	    "  m2:\n"
	    "    cmd: ${bin} -c ${ctx}\n"
	    "    proxy: http://h:1\n");
	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	ASSERT_INT_EQ(c->health_check_timeout_s, 33);
	m = cfg_find_model(c, "m1");
	ASSERT_NOT_NULL(m);
	ASSERT_INT_EQ(strv_len(m->argv), 8);
	ASSERT_STR_EQ(m->argv[0], "srv");
	ASSERT_STR_EQ(m->argv[1], "--verbose");
	ASSERT_STR_EQ(m->argv[3], "8192");
	ASSERT_STR_EQ(m->argv[5], "m1");
	ASSERT_STR_EQ(m->argv[7], "5800");
	ASSERT_INT_EQ(m->ttl_s, 8192);
	ASSERT_TRUE(m->unlisted);
	ASSERT_STR_EQ(m->name, "m1");
	j = cJSON_GetObjectItem(m->set_params, "num_ctx");
	ASSERT_TRUE(cJSON_IsNumber(j));
	ASSERT_INT_EQ(j ? j->valueint : 0, 8192);
	j = cJSON_GetObjectItem(m->set_params, "temperature");
	ASSERT_TRUE(cJSON_IsNumber(j) && j->valuedouble == 0.7);
	ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(m->set_params, "stream")));
	ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m->set_params, "greeting")),
	    "hello");
	ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m->set_params, "mixed")),
	    "8192x");
	ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m->set_params, "quotedint")), "7");
	m = cfg_find_model(c, "m2");
	ASSERT_STR_EQ(m->argv[2], "4096");
	ASSERT_INT_EQ(m->port, 0);
	ASSERT_STR_EQ(m->proxy, "http://h:1");
	cfg_unref(c);

	/* a macro used before its declaration is not resolved */
	EXPECT_ERR("macros:\n  a: \"${b}\"\n  b: x\nmodels:\n  m:\n    cmd: run ${a}\n    proxy: http://h:1\n",
	    "cfg.yaml:6:5: models.m.cmd: unresolved macro ${b}");
	EXPECT_ERR("macros:\n  a: \"x ${a}\"\nmodels:\n  m:\n    cmd: run\n    proxy: http://h:1\n",
	    "cfg.yaml:2:3: macros.a: macro refers to itself");
	EXPECT_ERR("macros:\n  PORT: 1\nmodels:\n  m:\n    cmd: run\n    proxy: http://h:1\n",
	    "cfg.yaml:2:3: macros.PORT: macro name is reserved");
	EXPECT_ERR("models:\n  m:\n    macros:\n      MODEL_ID: x\n    cmd: run\n    proxy: http://h:1\n",
	    "cfg.yaml:4:7: models.m.macros.MODEL_ID: macro name is reserved");
	EXPECT_ERR("macros:\n  PID: 1\nmodels:\n  m:\n    cmd: run\n    proxy: http://h:1\n",
	    "cfg.yaml:2:3: macros.PID: macro name is reserved");
	EXPECT_ERR("macros:\n  a.b: 1\nmodels:\n  m:\n    cmd: run\n    proxy: http://h:1\n",
	    "cfg.yaml:2:3: macros.a.b: invalid macro name (want [a-zA-Z0-9_-], under 64 characters)");
	EXPECT_ERR("macros:\n  a: [1]\nmodels:\n  m:\n    cmd: run\n    proxy: http://h:1\n",
	    "cfg.yaml:2:3: macros.a: macro values must be scalars");
	EXPECT_ERR("macros: [a]\nmodels:\n  m:\n    cmd: run\n    proxy: http://h:1\n",
	    "cfg.yaml:1:1: macros: expected a map of name: value");
	EXPECT_ERR("models:\n  m:\n    cmd: run ${nope}\n    proxy: http://h:1\n",
	    "cfg.yaml:3:5: models.m.cmd: unresolved macro ${nope}");
	EXPECT_ERR("models:\n  m:\n    cmd: run ${PID}\n    proxy: http://h:1\n",
	    "cfg.yaml:3:5: models.m.cmd: unresolved macro ${PID}");
	EXPECT_ERR("listen: ${nope}\nmodels:\n  m:\n    cmd: run\n    proxy: http://h:1\n",
	    "cfg.yaml:1:1: listen: unresolved macro ${nope}");
	EXPECT_ERR("models:\n  m:\n    cmd: run\n    proxy: http://h:1\n    metadata:\n      a: [\"${x}\"]\n",
	    "cfg.yaml:6:11: models.m.metadata.a[0]: unresolved macro ${x}");
	/* global macros do not reach into the per-model key "models" map keys */
	EXPECT_ERR("macros:\n  k: v\nmodels:\n  m:\n    cmd: run\n    proxy: http://h:1\n    metadata:\n      ${k}: 1\n",
	    "cfg.yaml:8:7: models.m.metadata.${k}: unresolved macro ${k}");
}

static void
test_ports(void)
{
	struct cfg *c;

	c = load_ok("startPort: 7000\nmodels:\n"
	    "  zeta: {cmd: \"s ${PORT}\"}\n"
	    "  alpha: {cmd: \"s ${PORT}\", metadata: {p: \"${PORT}\"}}\n"
	    "  mid: {cmd: s, proxy: \"http://x:1\"}\n"
	    "  beta: {cmd: \"s\\n--port\\n${PORT}\", proxy: \"http://localhost:${PORT}/v1/\"}\n");
	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	ASSERT_STR_EQ(c->models[0].id, "alpha");
	ASSERT_INT_EQ(c->models[0].port, 7000);
	ASSERT_STR_EQ(c->models[1].id, "beta");
	ASSERT_INT_EQ(c->models[1].port, 7001);
	ASSERT_STR_EQ(c->models[1].proxy, "http://localhost:7001/v1");
	ASSERT_STR_EQ(c->models[1].argv[2], "7001");
	ASSERT_STR_EQ(c->models[2].id, "mid");
	ASSERT_INT_EQ(c->models[2].port, 0);
	ASSERT_STR_EQ(c->models[3].id, "zeta");
	ASSERT_INT_EQ(c->models[3].port, 7002);
	ASSERT_INT_EQ(cJSON_GetObjectItem(c->models[0].metadata, "p")->valueint, 7000);
	cfg_unref(c);

	EXPECT_ERR("models:\n  m:\n    cmd: run\n    proxy: http://h:${PORT}\n",
	    "cfg.yaml:4:5: models.m.proxy: uses ${PORT} but cmd does not");
	EXPECT_ERR("models:\n  m:\n    cmd: run\n",
	    "cfg.yaml:2:3: models.m.proxy: missing required key (cmd does not use ${PORT})");
	EXPECT_ERR("startPort: 65535\nmodels:\n  a: {cmd: \"x ${PORT}\"}\n  b: {cmd: \"x ${PORT}\"}\n",
	    "cfg.yaml:4:7: models.b.cmd: no port left for ${PORT} (startPort too high)");
	EXPECT_ERR("models:\n  m:\n    cmd: run\n    proxy: http://h:1\n    env: [\"P=${PORT}\"]\n",
	    "cfg.yaml:5:11: models.m.env[0]: unresolved macro ${PORT}");
}

static void
test_env(void)
{
	struct cfg *c;

	setenv("MM_TEST_KEY", "sekret", 1);
	setenv("MM_TEST_TTL", "42", 1);
	setenv("MM_TEST_NL", "a\nb", 1);
	unsetenv("MM_TEST_UNSET");
	c = load_ok("apiKeys: [\"${env.MM_TEST_KEY}\", \"x-${env.MM_TEST_KEY}\"]\n"
	    "models:\n  m:\n    cmd: run\n    proxy: http://h:1\n    ttl: ${env.MM_TEST_TTL}\n"
	    "    env: [\"K=${env.MM_TEST_KEY}\"]\n");
	ASSERT_NOT_NULL(c);
	if (c != NULL) {
		ASSERT_INT_EQ(c->nkeys, 2);
		ASSERT_TRUE(c->nkeys == 2 && key_is(&c->keys[0], "sekret"));
		ASSERT_TRUE(c->nkeys == 2 && key_is(&c->keys[1], "x-sekret"));
		ASSERT_INT_EQ(c->models[0].ttl_s, 42);
		ASSERT_STR_EQ(c->models[0].env[0], "K=sekret");
	}
	cfg_unref(c);
	EXPECT_ERR("apiKeys: [\"${env.MM_TEST_UNSET}\"]\nmodels:\n  m: {cmd: run, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:11: apiKeys[0]: environment variable MM_TEST_UNSET is not set");
	EXPECT_ERR("models:\n  m:\n    cmd: run ${env.MM_TEST_NL}\n    proxy: http://h:1\n",
	    "cfg.yaml:3:5: models.m.cmd: environment variable MM_TEST_NL contains a newline");
	EXPECT_ERR("models:\n  m:\n    cmd: run ${env.1BAD}\n    proxy: http://h:1\n",
	    "cfg.yaml:3:5: models.m.cmd: unresolved macro ${env.1BAD}");
}

static void
test_warnings_unknown(void)
{
	struct cfg *c;

	/* llama-swap keys modelmux implements load quietly; the others with a warning. */
	c = load_ok("logToStdout: both\ncaptureBuffer: 5\nmodels:\n  m:\n    cmd: run\n"
	    "    proxy: http://h:1\n    capabilities: {tools: true}\n"
	    "    filters:\n      setParamsByID: {\"m:hi\": {a: 1}}\n");
	ASSERT_NOT_NULL(c);
	if (c != NULL) {
		ASSERT_INT_EQ(c->warnings.n, 1);
		ASSERT_STR_EQ(c->warnings.msgs[0],
		    "cfg.yaml:2:1: captureBuffer: not supported by modelmux, ignored");
		ASSERT_TRUE(cfg_find_model(c, "m:hi") == &c->models[0]);
	}
	cfg_unref(c);
	c = load_ok("metricsMaxInMemory: 5\nmodels:\n  m: {cmd: run, proxy: \"http://h:1\"}\n");
	ASSERT_NOT_NULL(c);
	if (c != NULL)
		ASSERT_INT_EQ(c->activity_max, 5);
	cfg_unref(c);
	EXPECT_ERR("metricsMaxInMemory: 100001\nmodels:\n  m: {cmd: run, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:1: metricsMaxInMemory: must be between 0 and 100000");
	EXPECT_ERR("bogus: 1\nmodels:\n  m: {cmd: run, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:1: bogus: unknown key");
	EXPECT_ERR("models:\n  m:\n    cmd: run\n    proxy: http://h:1\n    timeouts:\n      read: 1\n",
	    "cfg.yaml:6:7: models.m.timeouts.read: unknown key");
	EXPECT_ERR("models:\n  m:\n    cmd: run\n    proxy: http://h:1\n    compat: {x: 1}\n",
	    "cfg.yaml:5:14: models.m.compat.x: unknown key");
	EXPECT_ERR("hooks: {on_shutdown: 1}\nmodels:\n  m: {cmd: run, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:9: hooks.on_shutdown: unknown key");
}

static void
test_value_errors(void)
{
	const char *pre = "models:\n  demo:\n    cmd: run\n    proxy: http://h:1\n";
	char        text[512];

#define ERR_AFTER(extra, want) do { \
	snprintf(text, sizeof(text), "%s%s", pre, extra); \
	EXPECT_ERR(text, want); \
} while (0)
	ERR_AFTER("    ttl: abc\n", "cfg.yaml:5:5: models.demo.ttl: expected an integer");
	ERR_AFTER("    ttl: \"5\"\n", "cfg.yaml:5:5: models.demo.ttl: expected an integer");
	ERR_AFTER("    ttl: 1.5\n", "cfg.yaml:5:5: models.demo.ttl: expected an integer");
	ERR_AFTER("    ttl: -2\n", "cfg.yaml:5:5: models.demo.ttl: must be >= -1");
	ERR_AFTER("    ttl: 99999999999\n", "cfg.yaml:5:5: models.demo.ttl: must be >= -1");
	ERR_AFTER("    unloadTimeout: -1\n",
	    "cfg.yaml:5:5: models.demo.unloadTimeout: must be >= 0");
	ERR_AFTER("    concurrencyLimit: [1]\n",
	    "cfg.yaml:5:5: models.demo.concurrencyLimit: expected an integer");
	ERR_AFTER("    unlisted: maybe\n",
	    "cfg.yaml:5:5: models.demo.unlisted: expected a boolean (true or false)");
	ERR_AFTER("    sendLoadingState: 1\n",
	    "cfg.yaml:5:5: models.demo.sendLoadingState: expected a boolean (true or false)");
	ERR_AFTER("    name: [a]\n", "cfg.yaml:5:5: models.demo.name: expected a string");
	ERR_AFTER("    aliases: x\n", "cfg.yaml:5:5: models.demo.aliases: expected a list");
	ERR_AFTER("    aliases: [\"a b\"]\n",
	    "cfg.yaml:5:15: models.demo.aliases[0]: must not contain whitespace or control characters");
	ERR_AFTER("    env: [\"NOEQ\"]\n",
	    "cfg.yaml:5:11: models.demo.env[0]: expected NAME=VALUE with a valid variable name");
	ERR_AFTER("    env: [\"=v\", \"1A=2\"]\n",
	    "cfg.yaml:5:17: models.demo.env[1]: expected NAME=VALUE with a valid variable name");
	ERR_AFTER("    checkEndpoint: health\n",
	    "cfg.yaml:5:5: models.demo.checkEndpoint: must be \"none\" or a path starting with '/'");
	ERR_AFTER("    filters: {setParams: [1]}\n",
	    "cfg.yaml:5:15: models.demo.filters.setParams: expected a map");
	ERR_AFTER("    timeouts: {connect: -3}\n",
	    "cfg.yaml:5:16: models.demo.timeouts.connect: must be >= 0");
	ERR_AFTER("    compat: {ignoreWebsockets: 2}\n",
	    "cfg.yaml:5:14: models.demo.compat.ignoreWebsockets: expected a boolean (true or false)");
	ERR_AFTER("    filters: 3\n", "cfg.yaml:5:5: models.demo.filters: expected a map");
	ERR_AFTER("    cmdStop: \"kill 'x\"\n",
	    "cfg.yaml:5:5: models.demo.cmdStop: unterminated quote");
#undef ERR_AFTER
	EXPECT_ERR("trustedProxies: [10.0.0.0/8, nope]\nmodels:\n  demo:\n    cmd: r\n    proxy: http://h:1\n",
	    "cfg.yaml:1:30: trustedProxies[1]: nope: not an IP address or address/prefix");
	EXPECT_ERR("models:\n  demo:\n    proxy: http://h:1\n",
	    "cfg.yaml:2:3: models.demo.cmd: missing required key");
	EXPECT_ERR("models:\n  demo:\n    cmd: \"  \"\n    proxy: http://h:1\n",
	    "cfg.yaml:3:5: models.demo.cmd: empty command");
	EXPECT_ERR("models:\n  demo:\n    cmd: \"a 'b\"\n    proxy: http://h:1\n",
	    "cfg.yaml:3:5: models.demo.cmd: unterminated quote");
	EXPECT_ERR("models:\n  demo:\n    cmd: run\n    proxy: ftp://h\n",
	    "cfg.yaml:4:5: models.demo.proxy: expected an http:// or https:// URL");
	EXPECT_ERR("models:\n  demo:\n", "cfg.yaml:2:3: models.demo: expected a map");
	EXPECT_ERR("models:\n  \"a b\":\n    cmd: run\n    proxy: http://h:1\n",
	    "cfg.yaml:2:3: models.a b: invalid model id: must not contain whitespace or control characters");
	EXPECT_ERR("models: {}\n", "cfg.yaml:1:1: models: expected a map of at least one model");
	EXPECT_ERR("models: []\n", "cfg.yaml:1:1: models: expected a map of at least one model");
	EXPECT_ERR("listen: x\n", "cfg.yaml:1:1: models: missing required key");
	EXPECT_ERR("", "cfg.yaml:1:1: models: missing required key");
	EXPECT_ERR("- a\n", "cfg.yaml:1:1: (root): expected a map");
	/* top level */
	EXPECT_ERR("healthCheckTimeout: 0\nmodels:\n  m: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:1: healthCheckTimeout: must be >= 1");
	EXPECT_ERR("startPort: 70000\nmodels:\n  m: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:1: startPort: must be between 1 and 65535");
	EXPECT_ERR("globalTTL: -1\nmodels:\n  m: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:1: globalTTL: must be >= 0");
	EXPECT_ERR("logLevel: loud\nmodels:\n  m: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:1: logLevel: unknown level \"loud\" (debug, info, warn or error)");
	EXPECT_ERR("logFormat: xml\nmodels:\n  m: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:1: logFormat: expected text or json");
	EXPECT_ERR("sendLoadingState: maybe\nmodels:\n  m: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:1: sendLoadingState: expected a boolean (true or false)");
	EXPECT_ERR("apiKeys: [\"\", \"a b\"]\nmodels:\n  m: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:11: apiKeys[0]: must not be empty");
	EXPECT_ERR("apiKeys: [\"\", \"a b\"]\nmodels:\n  m: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:15: apiKeys[1]: must not contain spaces");
	EXPECT_ERR("listen: 8080\nmodels:\n  m: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:1: listen: expected host:port");
}

static void
test_errors_collected(void)
{
	char *e = load_errs("models:\n  a:\n    cmd: r\n    proxy: http://h:1\n    ttl: x\n"
	    "    unlisted: 3\n  b:\n    proxy: http://h:1\n");
	size_t n = 0;

	for (const char *p = e; (p = strchr(p + 1, '\n')) != NULL;)
		n++;
	ASSERT_INT_EQ(n, 3);
	ASSERT_CONTAINS(e, "\ncfg.yaml:5:5: models.a.ttl: expected an integer\n");
	ASSERT_CONTAINS(e, "\ncfg.yaml:6:5: models.a.unlisted: expected a boolean (true or false)\n");
	ASSERT_CONTAINS(e, "\ncfg.yaml:7:3: models.b.cmd: missing required key\n");
	free(e);
}

static void
test_yaml_errors(void)
{
	struct buf b = { 0 };
	char      *big;

	EXPECT_ERR("models:\n  m:\n    cmd: [a\n",
	    "cfg.yaml:4:1: syntax error: did not find expected ',' or ']' while parsing a flow sequence");
	EXPECT_ERR("models: &x\n  m: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:1: models: anchors and aliases are not supported");
	EXPECT_ERR("a: &x 1\nb: *x\nmodels:\n  m: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:2:1: b: anchors and aliases are not supported");
	EXPECT_ERR("models:\n  m: {cmd: r, proxy: \"http://h:1\"}\n  m: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:3:3: models.m: duplicate key");
	EXPECT_ERR("models:\n  m:\n    cmd: r\n    proxy: http://h:1\n    cmd: s\n",
	    "cfg.yaml:5:5: models.m.cmd: duplicate key");
	EXPECT_ERR("? [a]\n: 1\nmodels:\n  m: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:1:3: (root): map keys must be scalars");
	EXPECT_ERR("models:\n  m: {cmd: r, proxy: \"http://h:1\"}\n---\nx: 1\n",
	    "cfg.yaml:3:1: (root): only one YAML document is allowed");
	EXPECT_ERR("models:\n  m: {cmd: \"a\\0b\", proxy: \"http://h:1\"}\n",
	    "cfg.yaml:2:7: models.m.cmd: value contains a NUL byte");
	/* depth */
	buf_printf(&b, "models:\n  m: {cmd: r, proxy: \"http://h:1\", metadata: ");
	for (int i = 0; i < CFG_MAX_DEPTH; i++)
		buf_printf(&b, "[");
	for (int i = 0; i < CFG_MAX_DEPTH; i++)
		buf_printf(&b, "]");
	buf_printf(&b, "}\n");
	EXPECT_ERR(b.data, "cfg.yaml:2:75: models.m.metadata[0][0][0][0][0][0][0][0][0][0][0][0]"
	    "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nesting deeper than 32 levels");
	buf_free(&b);
	/* size */
	big = xcalloc(CFG_MAX_FILE_BYTES + 2, 1);
	memset(big, ' ', CFG_MAX_FILE_BYTES + 1);
	{
		struct cfg_errs e = { 0 };

		ASSERT_NULL(cfg_load_buf("big.yaml", big, CFG_MAX_FILE_BYTES + 1, &e));
		ASSERT_INT_EQ(e.n, 1);
		ASSERT_STR_EQ(e.n ? e.msgs[0] : NULL, "big.yaml:1:1: (file): larger than 4194304 bytes");
		cfg_errs_free(&e);
	}
	free(big);
}

static void
test_expansion_bomb(void)
{
	struct buf b = { 0 };

	buf_printf(&b, "macros:\n  m0: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n");
	for (int i = 1; i < 40; i++)
		buf_printf(&b, "  m%d: \"${m%d}${m%d}\"\n", i, i - 1, i - 1);
	buf_printf(&b, "models:\n  m: {cmd: \"${m39}\", proxy: \"http://h:1\"}\n");
	EXPECT_ERR(b.data, "cfg.yaml:43:7: (expansion): ${...} expansion produces more than 4194304 bytes");
	buf_free(&b);
}

static void
test_aliases(void)
{
	EXPECT_ERR("models:\n  a: {cmd: r, proxy: \"http://h:1\", aliases: [x]}\n"
	    "  b: {cmd: r, proxy: \"http://h:1\", aliases: [y, x]}\n",
	    "cfg.yaml:3:49: models.b.aliases[1]: alias \"x\" is already used by model a");
	EXPECT_ERR("models:\n  a: {cmd: r, proxy: \"http://h:1\"}\n"
	    "  b: {cmd: r, proxy: \"http://h:1\", aliases: [a]}\n",
	    "cfg.yaml:3:46: models.b.aliases[0]: alias \"a\" is the id of model a");
	EXPECT_ERR("models:\n  a: {cmd: r, proxy: \"http://h:1\", aliases: [q, q]}\n",
	    "cfg.yaml:2:49: models.a.aliases[1]: alias \"q\" is already used by model a");
}

static void
test_groups(void)
{
	struct cfg             *c;
	const struct cfg_model *m;

	c = load_ok("groups:\n"
	    "  big:\n    swap: false\n    exclusive: no\n    persistent: yes\n    members: [a, b]\n"
	    "  small:\n    members: [c]\n"
	    "models:\n"
	    "  a: {cmd: r, proxy: \"http://h:1\"}\n"
	    "  b: {cmd: r, proxy: \"http://h:1\"}\n"
	    "  c: {cmd: r, proxy: \"http://h:1\"}\n"
	    "  d: {cmd: r, proxy: \"http://h:1\"}\n"
	    "  e: {cmd: r, proxy: \"http://h:1\"}\n");
	ASSERT_NOT_NULL(c);
	if (c == NULL)
		return;
	ASSERT_INT_EQ(c->ngroups, 3);
	ASSERT_STR_EQ(c->groups[0].name, "big");
	ASSERT_FALSE(c->groups[0].swap);
	ASSERT_FALSE(c->groups[0].exclusive);
	ASSERT_TRUE(c->groups[0].persistent);
	ASSERT_INT_EQ(strv_len(c->groups[0].members), 2);
	ASSERT_STR_EQ(c->groups[1].name, "small");
	ASSERT_TRUE(c->groups[1].swap);
	ASSERT_TRUE(c->groups[1].exclusive);
	ASSERT_FALSE(c->groups[1].persistent);
	ASSERT_STR_EQ(c->groups[2].name, "(default)");
	ASSERT_INT_EQ(strv_len(c->groups[2].members), 2);
	ASSERT_STR_EQ(c->groups[2].members[0], "d");
	ASSERT_STR_EQ(c->groups[2].members[1], "e");
	m = cfg_find_model(c, "b");
	ASSERT_TRUE(m->group == &c->groups[0]);
	m = cfg_find_model(c, "e");
	ASSERT_TRUE(m->group == &c->groups[2]);
	cfg_unref(c);

	/* every model grouped: no implicit group */
	c = load_ok("groups:\n  g: {members: [a]}\nmodels:\n  a: {cmd: r, proxy: \"http://h:1\"}\n");
	ASSERT_NOT_NULL(c);
	if (c != NULL)
		ASSERT_INT_EQ(c->ngroups, 1);
	cfg_unref(c);

	EXPECT_ERR("groups:\n  g:\n    members: [a, zz]\nmodels:\n  a: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:3:18: groups.g.members[1]: unknown model \"zz\"");
	EXPECT_ERR("groups:\n  g1: {members: [a]}\n  g2: {members: [a]}\n"
	    "models:\n  a: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:3:18: groups.g2.members[0]: model \"a\" is already in group \"g1\"");
	EXPECT_ERR("groups:\n  g: {swap: 2}\nmodels:\n  a: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:2:7: groups.g.swap: expected a boolean (true or false)");
	EXPECT_ERR("groups:\n  g: {members: [a], color: red}\nmodels:\n  a: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:2:21: groups.g.color: unknown key");
	EXPECT_ERR("groups:\n  \"(default)\": {members: [a]}\nmodels:\n  a: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:2:3: groups.(default): invalid group name");
}

static void
test_preload(void)
{
	struct cfg *c;

	c = load_ok("hooks:\n  on_startup:\n    preload: [al, b, b]\n"
	    "models:\n  a: {cmd: r, proxy: \"http://h:1\", aliases: [al]}\n"
	    "  b: {cmd: r, proxy: \"http://h:1\"}\n");
	ASSERT_NOT_NULL(c);
	if (c != NULL) {
		ASSERT_INT_EQ(strv_len(c->preload), 2);
		ASSERT_STR_EQ(c->preload[0], "a");
		ASSERT_STR_EQ(c->preload[1], "b");
	}
	cfg_unref(c);
	EXPECT_ERR("hooks:\n  on_startup:\n    preload: [a, nope]\n"
	    "models:\n  a: {cmd: r, proxy: \"http://h:1\"}\n",
	    "cfg.yaml:3:18: hooks.on_startup.preload[1]: unknown model \"nope\"");
}

static void
test_bools(void)
{
	static const char *const yes[] = { "true", "True", "YES", "on", "\"true\"" };
	static const char *const no[] = { "false", "FALSE", "no", "Off", "'false'" };
	char        text[256];
	struct cfg *c;

	for (size_t i = 0; i < MM_ARRAY_LEN(yes); i++) {
		snprintf(text, sizeof(text), "includeAliasesInList: %s\nsendLoadingState: %s\n"
		    "models:\n  a: {cmd: r, proxy: \"http://h:1\"}\n", yes[i], no[i]);
		c = load_ok(text);
		ASSERT_NOT_NULL(c);
		if (c != NULL) {
			ASSERT_TRUE(c->include_aliases_in_list);
			ASSERT_FALSE(c->send_loading_state);
		}
		cfg_unref(c);
	}
}

static void
test_load_file(void)
{
	struct cfg_errs e = { 0 };
	char            path[] = "/tmp/mm-test-config-XXXXXX";
	int             fd = mkstemp(path);
	const char      text[] = "models:\n  m: {cmd: \"r ${PORT}\"}\n";
	struct cfg     *c;

	ASSERT_TRUE(fd != -1);
	if (fd == -1)
		return;
	ASSERT_INT_EQ(write(fd, text, sizeof(text) - 1), (long long)sizeof(text) - 1);
	close(fd);
	c = cfg_load(path, &e);
	ASSERT_NOT_NULL(c);
	if (c != NULL)
		ASSERT_STR_EQ(c->path, path);
	cfg_unref(c);
	unlink(path);
	ASSERT_NULL(cfg_load(path, &e));
	ASSERT_INT_EQ(e.n, 1);
	ASSERT_CONTAINS(e.n ? e.msgs[0] : NULL, "No such file");
	cfg_errs_free(&e);
}

/* ---- several files (--config-dir) -------------------------------------------------------- */

/* Loads the NULL-terminated name/text pairs as one merged config. */
static struct cfg *
load_srcs(struct cfg_errs *e, const char *const *pairs)
{
	struct cfg_src srcs[8];
	size_t         n = 0;

	for (; pairs[2 * n] != NULL && n < 8; n++)
		srcs[n] = (struct cfg_src){ pairs[2 * n], pairs[2 * n + 1], strlen(pairs[2 * n + 1]) };
	return cfg_load_srcs(srcs, n, e);
}

/* Every message of a merged load that must fail, as "\nmsg\nmsg\n" (caller frees). */
static char *
load_srcs_errs(const char *const *pairs)
{
	struct cfg_errs e = { 0 };
	struct cfg     *c = load_srcs(&e, pairs);

	return load_failure(c, &e);
}

#define EXPECT_SRCS_ERR(want, ...) do { \
	const char *const pairs_[] = { __VA_ARGS__, NULL }; \
	char *errs_ = load_srcs_errs(pairs_); \
	ASSERT_CONTAINS(errs_, "\n" want "\n"); \
	free(errs_); \
} while (0)

static void
test_merge_rules(void)
{
	const char *const pairs[] = {
		"base.yaml",
		"startPort: 7000\n"
		"listen:\n"
		"queue:\n  maxPerModel: 3\n"
		"macros:\n  arg: \"--x\"\n"
		"models:\n  a:\n    cmd: r ${PORT} ${arg}\n    aliases: [a1]\n"
		"groups:\n  g1:\n    members: [a]\n"
		"hooks:\n  on_startup:\n    preload: [a]\n",
		"d/10-b.yaml",
		"startPort: 7000\n"
		"listen: 127.0.0.1:9001\n"
		"queue:\n  maxTotal: 30\n"
		"models:\n  b:\n    cmd: r ${PORT} ${arg}\n    env: [A=1]\n"
		"hooks:\n  on_startup:\n    preload: [b]\n",
		"d/20-c.yaml",
		"",
		"d/30-d.yml",
		"listen: ~\nqueue: ~\nmodels:\n  c: {cmd: \"r ${PORT}\"}\n",
		NULL,
	};
	struct cfg_errs e = { 0 };
	struct cfg     *c = load_srcs(&e, pairs);

	for (size_t i = 0; i < e.n; i++)
		fprintf(stderr, "  %s\n", e.msgs[i]);
	ASSERT_NOT_NULL(c);
	if (c == NULL) {
		cfg_errs_free(&e);
		return;
	}
	ASSERT_STR_EQ(c->path, "base.yaml");
	ASSERT_INT_EQ(strv_len(c->files), 4);
	ASSERT_STR_EQ(c->files[1], "d/10-b.yaml");
	/* Models from every file; ports follow sorted ids across files. */
	ASSERT_INT_EQ(c->nmodels, 3);
	ASSERT_STR_EQ(c->models[0].id, "a");
	ASSERT_STR_EQ(c->models[1].id, "b");
	ASSERT_STR_EQ(c->models[1].file, "d/10-b.yaml");
	ASSERT_INT_EQ(c->models[2].port, 7002);
	/* A global macro of one file reaches models of another. */
	ASSERT_STR_EQ(c->models[1].argv[2], "--x");
	/* Equal scalars are fine; null yields to the other side; maps merge key by key. */
	ASSERT_INT_EQ(c->start_port, 7000);
	ASSERT_STR_EQ(c->listen, "127.0.0.1:9001");
	ASSERT_INT_EQ(c->queue.per_model, 3);
	ASSERT_INT_EQ(c->queue.total, 30);
	/* Lists concatenate in file order. */
	ASSERT_INT_EQ(strv_len(c->preload), 2);
	ASSERT_STR_EQ(c->preload[0], "a");
	ASSERT_STR_EQ(c->preload[1], "b");
	ASSERT_STR_EQ(c->models[0].group->name, "g1");
	cfg_unref(c);
	cfg_errs_free(&e);
}

static void
test_merge_errors(void)
{
	/* A model, or a group, defined by two files. */
	EXPECT_SRCS_ERR("b.yaml:2:3: models.m: defined again; first defined at a.yaml:2:3",
	    "a.yaml", "models:\n  m: {cmd: \"r ${PORT}\"}\n",
	    "b.yaml", "models:\n  m: {cmd: \"r ${PORT}\"}\n");
	EXPECT_SRCS_ERR("b.yaml:3:5: groups.g: defined again; first defined at a.yaml:3:3",
	    "a.yaml", "models: {m: {cmd: \"r ${PORT}\"}, n: {cmd: \"r ${PORT}\"}}\ngroups:\n  g: {members: [m]}\n",
	    "b.yaml", "groups:\n\n    g: {members: [n]}\n");
	/* Two different values at one path name both places. */
	EXPECT_SRCS_ERR("b.yaml:1:1: startPort: conflicts with a different value at a.yaml:1:1",
	    "a.yaml", "startPort: 6000\nmodels: {m: {cmd: \"r ${PORT}\"}}\n",
	    "b.yaml", "startPort: 6001\n");
	EXPECT_SRCS_ERR("c.yaml:2:3: queue.maxTotal: conflicts with a different value at b.yaml:3:3",
	    "a.yaml", "models: {m: {cmd: \"r ${PORT}\"}}\n",
	    "b.yaml", "queue:\n  maxPerModel: 2\n  maxTotal: 5\n",
	    "c.yaml", "queue:\n  maxTotal: 6\n");
	/* A list against a map, a value against a list. */
	EXPECT_SRCS_ERR("b.yaml:1:1: hooks: is a list here but a map in a.yaml:2:1",
	    "a.yaml", "models: {m: {cmd: \"r ${PORT}\"}}\nhooks: {on_startup: {preload: [m]}}\n",
	    "b.yaml", "hooks: [m]\n");
	EXPECT_SRCS_ERR("b.yaml:1:1: apiKeys: is a value here but a list in a.yaml:2:1",
	    "a.yaml", "models: {m: {cmd: \"r ${PORT}\"}}\napiKeys: [k1]\n",
	    "b.yaml", "apiKeys: k2\n");
	/* A root that is not a map. */
	EXPECT_SRCS_ERR("b.yaml:1:1: (root): is a list here but a map in a.yaml:1:1",
	    "a.yaml", "models: {m: {cmd: \"r ${PORT}\"}}\n",
	    "b.yaml", "- x\n");
	/* Errors found after the merge name the file their node came from. */
	EXPECT_SRCS_ERR("b.yaml:3:5: models.n.bogus: unknown key",
	    "a.yaml", "models: {m: {cmd: \"r ${PORT}\"}}\n",
	    "b.yaml", "models:\n  n:\n    bogus: 1\n    cmd: r ${PORT}\n");
	EXPECT_SRCS_ERR("b.yaml:2:17: models.n.aliases[0]: alias \"m1\" is already used by model m",
	    "a.yaml", "models: {m: {cmd: \"r ${PORT}\", aliases: [m1]}}\n",
	    "b.yaml", "models:\n  n: {aliases: [m1], cmd: \"r ${PORT}\"}\n");
	EXPECT_SRCS_ERR("b.yaml:3:2: syntax error: did not find expected key while parsing a block mapping",
	    "a.yaml", "models: {m: {cmd: \"r ${PORT}\"}}\n",
	    "b.yaml", "models:\n  n: 1\n x: 2\n");
	/* No models anywhere. */
	EXPECT_SRCS_ERR("b.yaml:1:1: models: missing required key",
	    "a.yaml", "", "b.yaml", "startPort: 6000\n");
}

static void
test_merge_limits(void)
{
	struct cfg_errs e = { 0 };
	struct cfg_src  srcs[CFG_MAX_FILES + 1];
	size_t          big = CFG_MAX_FILE_BYTES;
	char           *text = xmalloc(big + 1);

	/* No file, too many files. */
	ASSERT_NULL(cfg_load_srcs(srcs, 0, &e));
	ASSERT_INT_EQ(e.n, 1);
	cfg_errs_free(&e);
	for (size_t i = 0; i <= CFG_MAX_FILES; i++)
		srcs[i] = (struct cfg_src){ "f.yaml", "", 0 };
	ASSERT_NULL(cfg_load_srcs(srcs, CFG_MAX_FILES + 1, &e));
	ASSERT_INT_EQ(e.n, 1);
	ASSERT_CONTAINS(e.n ? e.msgs[0] : NULL, "at most 256");
	cfg_errs_free(&e);
	/* One file too large; all of them together too large. */
	memset(text, '#', big + 1);
	srcs[0] = (struct cfg_src){ "a.yaml", "startPort: 6000\n", 16 };
	srcs[1] = (struct cfg_src){ "b.yaml", text, big + 1 };
	ASSERT_NULL(cfg_load_srcs(srcs, 2, &e));
	ASSERT_CONTAINS(e.n ? e.msgs[0] : NULL, "b.yaml:1:1: (file): larger than");
	cfg_errs_free(&e);
	for (size_t i = 1; i < 6; i++)
		srcs[i] = (struct cfg_src){ "b.yaml", text, big };
	ASSERT_NULL(cfg_load_srcs(srcs, 6, &e));
	ASSERT_INT_EQ(e.n, 1);
	ASSERT_CONTAINS(e.n ? e.msgs[0] : NULL, "b.yaml:1:1: (file): the configuration files together are larger than");
	cfg_errs_free(&e);
	free(text);
}

static void
put_file(const char *dir, const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(p, "w");

	if (f == NULL)
		fatal("cannot write %s", p);
	fputs(text, f);
	fclose(f);
	free(p);
}

static void
test_config_dir(void)
{
	char                dir[] = "/tmp/mm-test-cfgdir-XXXXXX";
	struct cfg_errs     e = { 0 };
	struct cfg         *c;
	char              **files, *sub, *base;
	unsigned long long  s1 = 0, s2 = 0, s3 = 0;

	ASSERT_NOT_NULL(mkdtemp(dir));
	/* Empty: an error, unless a -c file is given too. */
	ASSERT_NULL(cfg_load_set(NULL, dir, &e));
	ASSERT_CONTAINS(e.n ? e.msgs[0] : NULL, "no *.yml or *.yaml files");
	cfg_errs_free(&e);
	put_file(dir, "b.yaml", "models: {b: {cmd: \"r ${PORT}\"}}\n");
	put_file(dir, "B.yml", "models: {B: {cmd: \"r ${PORT}\"}}\n");
	put_file(dir, "a.yaml", "startPort: 6100\n");
	put_file(dir, ".hidden.yaml", "models: {h: {cmd: \"r ${PORT}\"}}\n");
	put_file(dir, "notes.txt", "not yaml");
	put_file(dir, "x.yaml.bak", "not yaml");
	sub = xasprintf("%s/sub.yaml", dir);
	ASSERT_INT_EQ(mkdir(sub, 0700), 0);
	/* Only regular .yml and .yaml files, not hidden ones, in bytewise order. */
	files = cfg_dir_files(dir, &e);
	ASSERT_NOT_NULL(files);
	ASSERT_INT_EQ(strv_len(files), 3);
	if (files != NULL && strv_len(files) == 3) {
		ASSERT_CONTAINS(files[0], "/B.yml");
		ASSERT_CONTAINS(files[1], "/a.yaml");
		ASSERT_CONTAINS(files[2], "/b.yaml");
	}
	strv_free(files);
	c = cfg_load_set(NULL, dir, &e);
	ASSERT_NOT_NULL(c);
	if (c != NULL) {
		ASSERT_STR_EQ(c->path, dir);
		ASSERT_INT_EQ(c->nmodels, 2);
		ASSERT_INT_EQ(c->start_port, 6100);
	}
	cfg_unref(c);
	/* With a -c file: it comes first. */
	base = xasprintf("%s/base.conf", dir);
	put_file(dir, "base.conf", "models: {m: {cmd: \"r ${PORT}\"}}\nstartPort: 6100\n");
	c = cfg_load_set(base, dir, &e);
	ASSERT_NOT_NULL(c);
	if (c != NULL) {
		ASSERT_STR_EQ(c->path, base);
		ASSERT_STR_EQ(c->files[0], base);
		ASSERT_INT_EQ(c->nmodels, 3);
	}
	cfg_unref(c);
	/* The stamp sees a file added, changed or removed, and not a non-config file. */
	ASSERT_INT_EQ(cfg_stamp(base, dir, &s1), 0);
	put_file(dir, "other.txt", "x");
	ASSERT_INT_EQ(cfg_stamp(base, dir, &s2), 0);
	ASSERT_TRUE(s1 == s2);
	put_file(dir, "c.yaml", "models: {c: {cmd: \"r ${PORT}\"}}\n");
	ASSERT_INT_EQ(cfg_stamp(base, dir, &s2), 0);
	ASSERT_TRUE(s1 != s2);
	put_file(dir, "c.yaml", "models: {c: {cmd: \"r ${PORT}\"}, d: {cmd: \"r ${PORT}\"}}\n");
	ASSERT_INT_EQ(cfg_stamp(base, dir, &s3), 0);
	ASSERT_TRUE(s3 != s2);
	{
		char *cp = xasprintf("%s/c.yaml", dir);

		unlink(cp);
		free(cp);
	}
	ASSERT_INT_EQ(cfg_stamp(base, dir, &s3), 0);
	ASSERT_TRUE(s3 == s1);
	ASSERT_INT_EQ(cfg_stamp("/nonexistent/x.yaml", dir, &s3), -1);
	ASSERT_INT_EQ(cfg_stamp(NULL, "/nonexistent", &s3), -1);
	/* A missing directory. */
	ASSERT_NULL(cfg_load_set(base, "/nonexistent", &e));
	ASSERT_CONTAINS(e.n ? e.msgs[0] : NULL, "/nonexistent: No such file");
	cfg_errs_free(&e);
	{
		const char *names[] = { "b.yaml", "B.yml", "a.yaml", ".hidden.yaml", "notes.txt",
		    "x.yaml.bak", "base.conf", "other.txt" };

		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			char *p = xasprintf("%s/%s", dir, names[i]);

			unlink(p);
			free(p);
		}
	}
	rmdir(sub);
	rmdir(dir);
	free(sub);
	free(base);
}

/* ---- security keys ----------------------------------------------------------------------- */

/* A directory of stand-in executables put first on PATH, so commands in these tests resolve. */
static char bin_dir[] = "/tmp/mm-test-bin-XXXXXX";
static const char *const fake_bins[] = { "run", "srv", "r", "s", "x", "remote", "other",
    "server", "kill", "notexec" };

static char *
write_tmp(const char *text)
{
	char *path = xasprintf("%s/file-XXXXXX", bin_dir);
	int   fd = mkstemp(path);

	if (fd == -1 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		fatal("cannot write %s", path);
	close(fd);
	return path;
}

static void
bin_setup(void)
{
	char *path;

	if (mkdtemp(bin_dir) == NULL)
		fatal("mkdtemp");
	for (size_t i = 0; i < MM_ARRAY_LEN(fake_bins); i++) {
		char *p = xasprintf("%s/%s", bin_dir, fake_bins[i]);
		FILE *f = fopen(p, "w");

		if (f == NULL)
			fatal("cannot create %s", p);
		fputs("#!/bin/true\n", f);
		fclose(f);
		chmod(p, strcmp(fake_bins[i], "notexec") == 0 ? 0644 : 0755);
		free(p);
	}
	path = xasprintf("%s:/usr/local/bin:/usr/bin:/bin", bin_dir);
	setenv("PATH", path, 1);
	free(path);
}

static void
bin_teardown(void)
{
	char *p;

	for (size_t i = 0; i < MM_ARRAY_LEN(fake_bins); i++) {
		p = xasprintf("%s/%s", bin_dir, fake_bins[i]);
		unlink(p);
		free(p);
	}
	rmdir(bin_dir);
}

#define MODEL_TAIL "models:\n  m: {cmd: run, proxy: \"http://h:1\"}\n"

static void
test_api_keys(void)
{
	struct cfg   *c;
	unsigned char d[32];
	unsigned int  n;
	char          hex[65], *text, *kf;

	EVP_Digest("hashed", 6, d, &n, EVP_sha256(), NULL);
	for (size_t i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02X", d[i]);
	text = xasprintf("apiKeys:\n  - plain\n  - \"sha256:%s\"\n  - {key: adm, admin: true}\n"
	    "  - key: \"sha256:%s\"\n    admin: false\n" MODEL_TAIL, hex, hex);
	c = load_ok(text);
	free(text);
	ASSERT_NOT_NULL(c);
	if (c != NULL && c->nkeys == 4) {
		ASSERT_TRUE(key_is(&c->keys[0], "plain"));
		ASSERT_FALSE(c->keys[0].admin);
		ASSERT_TRUE(key_is(&c->keys[1], "hashed"));
		ASSERT_TRUE(key_is(&c->keys[2], "adm"));
		ASSERT_TRUE(c->keys[2].admin);
		ASSERT_TRUE(key_is(&c->keys[3], "hashed"));
		ASSERT_FALSE(c->keys[3].admin);
	} else {
		ASSERT_INT_EQ(c ? c->nkeys : 0, 4);
	}
	cfg_unref(c);

	EXPECT_ERR("apiKeys: [\"sha256:zz\"]\n" MODEL_TAIL,
	    "cfg.yaml:1:11: apiKeys[0]: expected sha256: followed by 64 hex digits");
	EXPECT_ERR("apiKeys:\n  - ok\n  - \"sha256:" "bc2e9ad3f1c0c0c0c6d2ba0ec84b8bd97c8e4a33a25c1a2ae1e0f83a09c10a4g\"\n"
	    MODEL_TAIL,
	    "cfg.yaml:3:5: apiKeys[1]: expected sha256: followed by 64 hex digits");
	EXPECT_ERR("apiKeys:\n  - {admin: true}\n" MODEL_TAIL,
	    "cfg.yaml:2:5: apiKeys[0].key: missing required key");
	EXPECT_ERR("apiKeys:\n  - {key: k, root: true}\n" MODEL_TAIL,
	    "cfg.yaml:2:14: apiKeys[0].root: unknown key");
	EXPECT_ERR("apiKeys:\n  - {key: k, admin: maybe}\n" MODEL_TAIL,
	    "cfg.yaml:2:14: apiKeys[0].admin: expected a boolean (true or false)");
	EXPECT_ERR("apiKeys:\n  - [k]\n" MODEL_TAIL,
	    "cfg.yaml:2:5: apiKeys[0]: expected a key or {key: K, admin: true}");
	EXPECT_ERR("apiKeys: k\n" MODEL_TAIL, "cfg.yaml:1:1: apiKeys: expected a list");

	/* apiKeysFile */
	kf = xasprintf("# keys\n\nfilekey1\n  sha256:%s admin\n\tfilekey3   admin  # note\n", hex);
	text = write_tmp(kf);
	free(kf);
	kf = text;
	text = xasprintf("apiKeys: [inline]\napiKeysFile: %s\n" MODEL_TAIL, kf);
	c = load_ok(text);
	free(text);
	ASSERT_NOT_NULL(c);
	if (c != NULL && c->nkeys == 4) {
		ASSERT_TRUE(key_is(&c->keys[0], "inline"));
		ASSERT_TRUE(key_is(&c->keys[1], "filekey1"));
		ASSERT_FALSE(c->keys[1].admin);
		ASSERT_TRUE(key_is(&c->keys[2], "hashed"));
		ASSERT_TRUE(c->keys[2].admin);
		ASSERT_TRUE(key_is(&c->keys[3], "filekey3"));
		ASSERT_TRUE(c->keys[3].admin);
	} else {
		ASSERT_INT_EQ(c ? c->nkeys : 0, 4);
	}
	cfg_unref(c);
	unlink(kf);
	free(kf);

	kf = write_tmp("good\nbad key here\nsha256:abc\n");
	text = xasprintf(MODEL_TAIL "apiKeysFile: %s\n", kf);
	{
		char *errs = load_errs(text);
		char *want = xasprintf("\ncfg.yaml:3:1: apiKeysFile: %s line 2: expected "
		    "\"<key or sha256:hex> [admin]\"\n", kf);
		char *want2 = xasprintf("\ncfg.yaml:3:1: apiKeysFile: %s line 3: expected sha256: "
		    "followed by 64 hex digits\n", kf);

		ASSERT_CONTAINS(errs, want);
		ASSERT_CONTAINS(errs, want2);
		free(want);
		free(want2);
		free(errs);
	}
	free(text);
	unlink(kf);
	free(kf);
	EXPECT_ERR("apiKeysFile: /nonexistent/keys\n" MODEL_TAIL,
	    "cfg.yaml:1:1: apiKeysFile: cannot read /nonexistent/keys: No such file or directory");
}

static void
test_cors(void)
{
	struct cfg *c;

	c = load_ok("cors:\n"
	    "  allowedOrigins: [\"https://App.example.com\", \"http://localhost:3000\", \"http://[::1]:8080\"]\n"
	    "  allowCredentials: true\n"
	    "  allowedMethods: [GET, POST]\n"
	    "  allowedHeaders: [Authorization, X-Custom]\n"
	    "  maxAge: 60\n" MODEL_TAIL);
	ASSERT_NOT_NULL(c);
	if (c != NULL) {
		ASSERT_INT_EQ(strv_len(c->cors.origins), 3);
		ASSERT_STR_EQ(c->cors.origins[0], "https://app.example.com");
		ASSERT_TRUE(c->cors.allow_credentials);
		ASSERT_INT_EQ(strv_len(c->cors.methods), 2);
		ASSERT_STR_EQ(c->cors.headers[1], "X-Custom");
		ASSERT_INT_EQ(c->cors.max_age_s, 60);
	}
	cfg_unref(c);
	c = load_ok("cors: {allowedOrigins: [\"*\"]}\n" MODEL_TAIL);
	ASSERT_NOT_NULL(c);
	cfg_unref(c);
	EXPECT_ERR("cors:\n  allowedOrigins: [\"*\"]\n  allowCredentials: true\n" MODEL_TAIL,
	    "cfg.yaml:3:3: cors.allowCredentials: cannot be true when allowedOrigins has \"*\" "
	    "(list the origins)");
	EXPECT_ERR("cors:\n  allowedOrigins: [\"ftp://x\"]\n" MODEL_TAIL,
	    "cfg.yaml:2:20: cors.allowedOrigins[0]: expected \"*\" or http(s)://host[:port]");
	EXPECT_ERR("cors:\n  allowedOrigins: [\"http://x\", \"http://x/app\"]\n" MODEL_TAIL,
	    "cfg.yaml:2:32: cors.allowedOrigins[1]: an origin is scheme://host[:port] with no path");
	EXPECT_ERR("cors:\n  allowedOrigins: [\"http://x/\"]\n" MODEL_TAIL,
	    "cfg.yaml:2:20: cors.allowedOrigins[0]: an origin is scheme://host[:port] with no path");
	EXPECT_ERR("cors:\n  allowedOrigins: [\"http://\"]\n" MODEL_TAIL,
	    "cfg.yaml:2:20: cors.allowedOrigins[0]: invalid host in origin");
	EXPECT_ERR("cors:\n  allowedOrigins: [\"http://x:99999\"]\n" MODEL_TAIL,
	    "cfg.yaml:2:20: cors.allowedOrigins[0]: invalid port in origin");
	EXPECT_ERR("cors:\n  allowedOrigins: [\"http://x:\"]\n" MODEL_TAIL,
	    "cfg.yaml:2:20: cors.allowedOrigins[0]: invalid port in origin");
	EXPECT_ERR("cors:\n  allowedMethods: [\"GE T\"]\n" MODEL_TAIL,
	    "cfg.yaml:2:20: cors.allowedMethods[0]: expected an HTTP token (letters, digits, -)");
	EXPECT_ERR("cors:\n  maxAge: -1\n" MODEL_TAIL,
	    "cfg.yaml:2:3: cors.maxAge: must be between 0 and 86400");
	EXPECT_ERR("cors:\n  origins: []\n" MODEL_TAIL, "cfg.yaml:2:3: cors.origins: unknown key");
}

static void
test_rate_limits(void)
{
	struct cfg *c;

	c = load_ok("rateLimit:\n"
	    "  perIP: {rate: 0.5, burst: 3}\n"
	    "  perKey: {rate: 0}\n"
	    "  global: {rate: 100, burst: 200}\n"
	    "  authFailures: {rate: 1e-1, burst: 2}\n"
	    "  tableSize: 16\n"
	    "limits:\n"
	    "  maxHeaderBytes: 4096\n"
	    "  maxUrlBytes: 1024\n"
	    "  maxJsonBodyBytes: 1048576\n"
	    "  maxMultipartBodyBytes: 2147483647\n"
	    "  maxJsonDepth: 16\n"
	    "  headerTimeoutSeconds: 5\n"
	    "  bodyIdleTimeoutSeconds: 7\n" MODEL_TAIL);
	ASSERT_NOT_NULL(c);
	if (c != NULL) {
		ASSERT_TRUE(c->rate.per_ip.rate == 0.5);
		ASSERT_INT_EQ(c->rate.per_ip.burst, 3);
		ASSERT_TRUE(c->rate.per_key.rate == 0);
		ASSERT_INT_EQ(c->rate.per_key.burst, CFG_DEF_BURST_PER_KEY);
		ASSERT_TRUE(c->rate.global.rate == 100);
		ASSERT_INT_EQ(c->rate.global.burst, 200);
		ASSERT_TRUE(c->rate.auth_failures.rate == 0.1);
		ASSERT_INT_EQ(c->rate.auth_failures.burst, 2);
		ASSERT_INT_EQ(c->rate.table_size, 16);
		ASSERT_INT_EQ(c->limits.max_header_bytes, 4096);
		ASSERT_INT_EQ(c->limits.max_url_bytes, 1024);
		ASSERT_INT_EQ(c->limits.max_json_body_bytes, 1048576);
		ASSERT_INT_EQ(c->limits.max_multipart_body_bytes, 2147483647);
		ASSERT_INT_EQ(c->limits.max_json_depth, 16);
		ASSERT_INT_EQ(c->limits.header_timeout_s, 5);
		ASSERT_INT_EQ(c->limits.body_idle_timeout_s, 7);
	}
	cfg_unref(c);
	EXPECT_ERR("rateLimit:\n  tableSize: 15\n" MODEL_TAIL,
	    "cfg.yaml:2:3: rateLimit.tableSize: must be between 16 and 4194304");
	EXPECT_ERR("rateLimit:\n  perIP: {rate: -1}\n" MODEL_TAIL,
	    "cfg.yaml:2:11: rateLimit.perIP.rate: must be between 0 and 1e+06");
	EXPECT_ERR("rateLimit:\n  perIP: {rate: fast}\n" MODEL_TAIL,
	    "cfg.yaml:2:11: rateLimit.perIP.rate: expected a number (requests per second)");
	EXPECT_ERR("rateLimit:\n  perKey: {burst: 0}\n" MODEL_TAIL,
	    "cfg.yaml:2:12: rateLimit.perKey.burst: must be between 1 and 1000000");
	EXPECT_ERR("rateLimit:\n  perUser: {rate: 1}\n" MODEL_TAIL,
	    "cfg.yaml:2:3: rateLimit.perUser: unknown key");
	EXPECT_ERR("limits:\n  maxJsonDepth: 0\n" MODEL_TAIL,
	    "cfg.yaml:2:3: limits.maxJsonDepth: must be between 1 and 1024");
	EXPECT_ERR("limits:\n  maxHeaderBytes: 10\n" MODEL_TAIL,
	    "cfg.yaml:2:3: limits.maxHeaderBytes: must be between 1024 and 1048576");
	EXPECT_ERR("limits:\n  maxBody: 10\n" MODEL_TAIL, "cfg.yaml:2:3: limits.maxBody: unknown key");
}

/* The directory part of an absolute path (static buffer). */
static const char *
dirname_of(const char *p)
{
	static char d[4096];
	const char *s = strrchr(p, '/');

	snprintf(d, sizeof(d), "%.*s", (int)(s && s != p ? s - p : 1), p);
	return d;
}

static void
test_allowed_commands(void)
{
	struct cfg *c;
	char       *text, *errs, *want, *run = xasprintf("%s/run", bin_dir);
	char       *dash = realpath("/bin/sh", NULL);

	/* argv[0] resolved through PATH */
	c = load_ok("models:\n  m: {cmd: \"run -x\", cmdStop: \"kill ${PID}\", proxy: \"http://h:1\"}\n");
	ASSERT_NOT_NULL(c);
	if (c != NULL) {
		ASSERT_STR_EQ(c->models[0].exe, run);
		ASSERT_STR_EQ(c->models[0].argv[0], "run");
		ASSERT_NOT_NULL(c->models[0].stop_exe);
		ASSERT_NULL(c->allowed_commands);
	}
	cfg_unref(c);
	EXPECT_ERR("models:\n  m:\n    cmd: no-such-prog-xyz -v\n    proxy: http://h:1\n",
	    "cfg.yaml:3:5: models.m.cmd: command not found: no-such-prog-xyz");
	EXPECT_ERR("models:\n  m:\n    cmd: /nonexistent/bin\n    proxy: http://h:1\n",
	    "cfg.yaml:3:5: models.m.cmd: command not found: /nonexistent/bin");
	EXPECT_ERR("models:\n  m:\n    cmd: notexec\n    proxy: http://h:1\n",
	    "cfg.yaml:3:5: models.m.cmd: command not found: notexec");
	/* shells */
	EXPECT_ERR("models:\n  m:\n    cmd: sh -c 'x'\n    proxy: http://h:1\n",
	    "cfg.yaml:3:5: models.m.cmd: sh: shell interpreters are not allowed as commands; "
	    "list it in allowedCommands to allow it");
	EXPECT_ERR("models:\n  m:\n    cmd: /usr/bin/env -S sh -c x\n    proxy: http://h:1\n",
	    "cfg.yaml:3:5: models.m.cmd: /usr/bin/env -S: shell interpreters are not allowed as "
	    "commands; list it in allowedCommands to allow it");
	EXPECT_ERR("models:\n  m:\n    cmd: env --split-string=\"sh -c x\"\n    proxy: http://h:1\n",
	    "cfg.yaml:3:5: models.m.cmd: env -S: shell interpreters are not allowed as "
	    "commands; list it in allowedCommands to allow it");
	EXPECT_ERR("models:\n  m:\n    cmd: env -u X A=1 bash -c x\n    proxy: http://h:1\n",
	    "cfg.yaml:3:5: models.m.cmd: bash: shell interpreters are not allowed as commands; "
	    "list it in allowedCommands to allow it");
	EXPECT_ERR("models:\n  m:\n    cmd: run\n    cmdStop: sh -c 'kill ${PID}'\n    proxy: http://h:1\n",
	    "cfg.yaml:4:5: models.m.cmdStop: sh: shell interpreters are not allowed as commands; "
	    "list it in allowedCommands to allow it");
	c = load_ok("models:\n  m: {cmd: \"env A=1 run\", proxy: \"http://h:1\"}\n");
	ASSERT_NOT_NULL(c);
	cfg_unref(c);
	/* a shell listed by its exact path is allowed (/bin/sh resolves as the command does) */
	c = load_ok("allowedCommands: [/bin/sh]\nmodels:\n  m: {cmd: \"sh -c x\", proxy: \"http://h:1\"}\n");
	ASSERT_NOT_NULL(c);
	if (c != NULL && dash != NULL)
		ASSERT_STR_EQ(c->models[0].exe, dash);
	cfg_unref(c);
	/* … but not through a directory prefix */
	text = xasprintf("allowedCommands: [\"%s/\"]\nmodels:\n  m:\n    cmd: sh -c x\n"
	    "    proxy: http://h:1\n", dash ? dirname_of(dash) : "/usr/bin");
	errs = load_errs(text);
	ASSERT_CONTAINS(errs, "\ncfg.yaml:4:5: models.m.cmd: sh: shell interpreters are not allowed");
	free(errs);
	free(text);
	/* allowedCommands limits every command */
	text = xasprintf("allowedCommands: [\"%s/\", /usr/bin/env]\nmodels:\n"
	    "  m: {cmd: \"run\", proxy: \"http://h:1\"}\n  n: {cmd: \"env sh -c x\", proxy: \"http://h:1\"}\n",
	    bin_dir);
	c = load_ok(text);
	ASSERT_NOT_NULL(c);
	cfg_unref(c);
	free(text);
	want = xasprintf("\ncfg.yaml:4:5: models.m.cmd: run (%s) is not under allowedCommands\n", run);
	errs = load_errs("allowedCommands: [/usr/bin/]\nmodels:\n  m:\n    cmd: run\n    proxy: http://h:1\n");
	ASSERT_CONTAINS(errs, want);
	free(errs);
	free(want);
	EXPECT_ERR("allowedCommands: [usr/bin/]\n" MODEL_TAIL,
	    "cfg.yaml:1:19: allowedCommands[0]: expected an absolute path");
	EXPECT_ERR("allowedCommands: [/nonexistent/]\n" MODEL_TAIL,
	    "cfg.yaml:1:19: allowedCommands[0]: /nonexistent/: No such file or directory");
	free(run);
	free(dash);
}

static const char TEST_CERT[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBhzCCAS2gAwIBAgIUSKqd4d1hZZwSJM3lqx/uSnbSBJcwCgYIKoZIzj0EAwIw\n"
	"GDEWMBQGA1UEAwwNbW9kZWxtdXgtdGVzdDAgFw0yNjExMjQwOTQ1NTlaGA8yMTI2\n"
	"MTAzMTA5NDU1OVowGDEWMBQGA1UEAwwNbW9kZWxtdXgtdGVzdDBZMBMGByqGSM49\n"
	"AgEGCCqGSM49AwEHA0IABN7Z+4O2X4WVSM6AkNhDABYa4iF1o9Dqrq7lpXgsIMgV\n"
	"MAQIgakK97GyY5Ao4wRduBEryhYgv5uW9qdRSWdcdB2jUzBRMB0GA1UdDgQWBBRX\n"
	"xjhg+UoaYYduLg5w+lfqtox5sDAfBgNVHSMEGDAWgBRXxjhg+UoaYYduLg5w+lfq\n"
	"tox5sDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQDZ0bEv6uWt\n"
	"8WmXGmPj6KvExIkRAr+EpFvIWNw/TwCwGAIgH+y8MjC88SGQS2s/Ba9iLHcJq2Hv\n"
	"0z7Kqewx9JJSBGk=\n"
	"-----END CERTIFICATE-----\n"
	;
static const char TEST_KEY[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgjbyeC6SL/e4a/MDB\n"
	"kPXeYzzpz4wdtnTxdyjEeIrhdmmhRANCAATe2fuDtl+FlUjOgJDYQwAWGuIhdaPQ\n"
	"6q6u5aV4LCDIFTAECIGpCvexsmOQKOMEXbgRK8oWIL+blvanUUlnXHQd\n"
	"-----END PRIVATE KEY-----\n"
	;
static const char OTHER_KEY[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgy/7M5277tJY3t46G\n"
	"5IYdv58+MUyitiCXfji9FhEWeGChRANCAARnXkUQFwrxOdnCl4lnuuXV+QTuRN98\n"
	"rdUUA2GHbt7HWFdGVQgB37P1DxQ7x4RQzEHjF/VFYvOFwmYwktGu7g6W\n"
	"-----END PRIVATE KEY-----\n"
	;

static void
test_tls(void)
{
	char       *cert = write_tmp(TEST_CERT), *key = write_tmp(TEST_KEY);
	char       *other = write_tmp(OTHER_KEY), *junk = write_tmp("not pem\n");
	char       *text, *errs, *want;
	struct cfg *c;

	text = xasprintf("tls:\n  cert: %s\n  key: %s\n" MODEL_TAIL, cert, key);
	c = load_ok(text);
	free(text);
	ASSERT_NOT_NULL(c);
	if (c != NULL) {
		ASSERT_STR_EQ(c->tls_cert_pem, TEST_CERT);
		ASSERT_STR_EQ(c->tls_key_pem, TEST_KEY);
	}
	cfg_unref(c);

	text = xasprintf("tls:\n  cert: %s\n  key: %s\n" MODEL_TAIL, cert, other);
	want = xasprintf("\ncfg.yaml:3:3: tls.key: %s does not match the certificate %s\n", other,
	    cert);
	errs = load_errs(text);
	ASSERT_CONTAINS(errs, want);
	free(errs);
	free(want);
	free(text);

	text = xasprintf("tls:\n  cert: %s\n  key: %s\n" MODEL_TAIL, junk, junk);
	errs = load_errs(text);
	want = xasprintf("\ncfg.yaml:2:3: tls.cert: %s: not a PEM certificate\n", junk);
	ASSERT_CONTAINS(errs, want);
	free(want);
	want = xasprintf("\ncfg.yaml:3:3: tls.key: %s: not a PEM private key (or it has a "
	    "passphrase)\n", junk);
	ASSERT_CONTAINS(errs, want);
	free(want);
	free(errs);
	free(text);

	EXPECT_ERR("tls:\n  cert: /x\n" MODEL_TAIL, "cfg.yaml:1:1: tls.key: required with tls.cert");
	EXPECT_ERR("tls:\n  key: /x\n" MODEL_TAIL, "cfg.yaml:1:1: tls.cert: required with tls.key");
	EXPECT_ERR("tls:\n  cert: /nonexistent/c.pem\n  key: /nonexistent/k.pem\n" MODEL_TAIL,
	    "cfg.yaml:2:3: tls.cert: cannot read /nonexistent/c.pem: No such file or directory");
	unlink(cert);
	unlink(key);
	unlink(other);
	unlink(junk);
	free(cert);
	free(key);
	free(other);
	free(junk);
}

int
main(void)
{
	bin_setup();
	test_minimal_defaults();
	test_full();
	test_split();
	test_split_limit();
	test_macros();
	test_ports();
	test_env();
	test_warnings_unknown();
	test_value_errors();
	test_errors_collected();
	test_yaml_errors();
	test_expansion_bomb();
	test_aliases();
	test_groups();
	test_preload();
	test_bools();
	test_load_file();
	test_merge_rules();
	test_merge_errors();
	test_merge_limits();
	test_config_dir();
	test_api_keys();
	test_cors();
	test_rate_limits();
	test_allowed_commands();
	test_tls();
	bin_teardown();
	CHECK_DONE();
}
