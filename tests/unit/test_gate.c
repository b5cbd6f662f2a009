/* Unit tests for gate: key extraction and constant-time checks, CORS, token buckets, paths. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "check.h"
#include "modelmux/config.h"
#include "modelmux/gate.h"
#include "modelmux/log.h"
#include "modelmux/util.h"

#define MODEL_TAIL "models:\n  m: {cmd: \"true\", proxy: \"http://h:1\"}\n"

static struct cfg *
load(const char *text)
{
	struct cfg_errs e = { 0 };
	struct cfg     *c = cfg_load_buf("gate.yaml", text, strlen(text), &e);

	for (size_t i = 0; i < e.n; i++)
		fprintf(stderr, "unexpected: %s\n", e.msgs[i]);
	cfg_errs_free(&e);
	if (c == NULL)
		fatal("test config does not load");
	return c;
}

static char *
b64(const char *s)
{
	char *out = xmalloc(4 * (strlen(s) + 2) / 3 + 4);

	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)strlen(s));
	return out;
}

/* ---- keys ---------------------------------------------------------------------------------- */

#define KEY_IS(auth, xkey, want) do { \
	char k_[64]; \
	int  n_ = gate_presented_key(auth, xkey, k_, sizeof(k_)); \
	ASSERT_INT_EQ(n_, (long long)strlen(want)); \
	if (n_ >= 0) \
		ASSERT_STR_EQ(k_, want); \
} while (0)

#define NO_KEY(auth, xkey) do { \
	char k_[64]; \
	ASSERT_INT_EQ(gate_presented_key(auth, xkey, k_, sizeof(k_)), -1); \
} while (0)

static void
test_presented_key(void)
{
	char *h, *e;
	char  small[4];

	KEY_IS("Bearer abc", NULL, "abc");
	KEY_IS("bearer \t sk-123  ", NULL, "sk-123");
	KEY_IS("  BEARER x", NULL, "x");
	NO_KEY("Bearer ", NULL);
	NO_KEY("Bearer", NULL);
	NO_KEY("Bearerabc", NULL);
	NO_KEY("Bearer a b", NULL);
	NO_KEY("Bearer a\x01", NULL);

	e = b64("user:pa:ss");
	h = xasprintf("Basic %s", e);
	KEY_IS(h, NULL, "pa:ss");
	free(h);
	free(e);
	e = b64(":only-pass");
	h = xasprintf("basic  %s  ", e);
	KEY_IS(h, NULL, "only-pass");
	free(h);
	free(e);
	e = b64("user:");
	h = xasprintf("Basic %s", e);
	NO_KEY(h, NULL);
	free(h);
	free(e);
	e = b64("no-colon");
	h = xasprintf("Basic %s", e);
	NO_KEY(h, NULL);
	free(h);
	free(e);
	NO_KEY("Basic !!!!", NULL);
	NO_KEY("Basic ", NULL);
	NO_KEY("Basic a", NULL);

	KEY_IS(NULL, "k1", "k1");
	KEY_IS(NULL, "  k1 ", "k1");
	NO_KEY(NULL, NULL);
	NO_KEY(NULL, "");
	NO_KEY("", "");
	NO_KEY(NULL, "a b");
	NO_KEY("Digest x", NULL);
	/* an unusable Authorization falls back to X-API-Key */
	KEY_IS("Digest x", "k2", "k2");
	KEY_IS("Bearer ", "k2", "k2");
	/* Bearer wins over X-API-Key */
	KEY_IS("Bearer k1", "k2", "k1");
	/* too long for the buffer */
	ASSERT_INT_EQ(gate_presented_key("Bearer abcd", NULL, small, sizeof(small)), -1);
	ASSERT_INT_EQ(gate_presented_key("Bearer abc", NULL, small, sizeof(small)), 3);
	ASSERT_INT_EQ(gate_presented_key("Bearer abc", NULL, NULL, 0), -1);
}

static void
test_check_key(void)
{
	unsigned char d[32], want[32];
	unsigned int  n;
	char          hex[65], *text;
	struct cfg   *c, *none;

	EVP_Digest("beta", 4, d, &n, EVP_sha256(), NULL);
	for (size_t i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	text = xasprintf("apiKeys:\n  - alpha\n  - \"sha256:%s\"\n  - {key: gamma, admin: true}\n"
	    "  - {key: delta, admin: false}\n" MODEL_TAIL, hex);
	c = load(text);
	free(text);
	none = load(MODEL_TAIL);

	ASSERT_TRUE(gate_keys_required(c));
	ASSERT_FALSE(gate_keys_required(none));
	ASSERT_FALSE(gate_keys_required(NULL));
	ASSERT_INT_EQ(c->nkeys, 4);

	ASSERT_INT_EQ(gate_check_key(c, "alpha", 5, NULL), GATE_USER);
	ASSERT_INT_EQ(gate_check_key(c, "beta", 4, NULL), GATE_USER);
	ASSERT_INT_EQ(gate_check_key(c, "gamma", 5, NULL), GATE_ADMIN);
	ASSERT_INT_EQ(gate_check_key(c, "delta", 5, NULL), GATE_USER);
	ASSERT_INT_EQ(gate_check_key(c, "alphb", 5, NULL), GATE_DENIED); /* last byte differs */
	ASSERT_INT_EQ(gate_check_key(c, "zzzzz", 5, NULL), GATE_DENIED); /* same length */
	ASSERT_INT_EQ(gate_check_key(c, "alph", 4, NULL), GATE_DENIED);
	ASSERT_INT_EQ(gate_check_key(c, "", 0, NULL), GATE_DENIED);
	ASSERT_INT_EQ(gate_check_key(c, "alpha\0", 6, NULL), GATE_DENIED);
	ASSERT_INT_EQ(gate_check_key(c, NULL, 0, NULL), GATE_DENIED);
	ASSERT_INT_EQ(gate_check_key(none, "alpha", 5, NULL), GATE_DENIED);
	/* the sha256: entry is the digest, not a key: presenting it does not work */
	ASSERT_INT_EQ(gate_check_key(c, hex, 64, NULL), GATE_DENIED);

	/* the digest out-parameter */
	memset(d, 0, sizeof(d));
	EVP_Digest("gamma", 5, want, &n, EVP_sha256(), NULL);
	ASSERT_INT_EQ(gate_check_key(c, "gamma", 5, d), GATE_ADMIN);
	ASSERT_TRUE(memcmp(d, want, 32) == 0);
	gate_key_digest("gamma", 5, d);
	ASSERT_TRUE(memcmp(d, want, 32) == 0);

	/* no early exit: a match on the first entry still compares with every entry */
	gate__compare_count = 0;
	ASSERT_INT_EQ(gate_check_key(c, "alpha", 5, NULL), GATE_USER);
	ASSERT_INT_EQ(gate__compare_count, 4);
	gate__compare_count = 0;
	ASSERT_INT_EQ(gate_check_key(c, "delta", 5, NULL), GATE_USER);
	ASSERT_INT_EQ(gate__compare_count, 4);
	gate__compare_count = 0;
	ASSERT_INT_EQ(gate_check_key(c, "nope!", 5, NULL), GATE_DENIED);
	ASSERT_INT_EQ(gate__compare_count, 4);
	cfg_unref(c);
	cfg_unref(none);
}

/* ---- CORS ---------------------------------------------------------------------------------- */

static void
collect(void *arg, const char *name, const char *value)
{
	buf_printf(arg, "%s: %s\n", name, value);
}

static void
test_cors(void)
{
	struct cfg *c = load("cors:\n  allowedOrigins: [\"https://app.example.com\", "
	    "\"http://localhost:3000\"]\n  allowCredentials: true\n" MODEL_TAIL);
	struct cfg *star = load("cors: {allowedOrigins: [\"*\"], maxAge: 5}\n" MODEL_TAIL);
	struct cfg *off = load(MODEL_TAIL);
	struct buf  b = { 0 };

	ASSERT_TRUE(gate_origin_allowed(c, "https://app.example.com"));
	ASSERT_TRUE(gate_origin_allowed(c, "HTTPS://App.Example.com"));
	ASSERT_TRUE(gate_origin_allowed(c, "http://localhost:3000"));
	ASSERT_FALSE(gate_origin_allowed(c, "http://app.example.com"));      /* scheme */
	ASSERT_FALSE(gate_origin_allowed(c, "https://app.example.com:443")); /* port */
	ASSERT_FALSE(gate_origin_allowed(c, "https://app.example.com.evil.net"));
	ASSERT_FALSE(gate_origin_allowed(c, "https://evil.app.example.com"));
	ASSERT_FALSE(gate_origin_allowed(c, "https://app.example.co"));
	ASSERT_FALSE(gate_origin_allowed(c, "http://localhost:3001"));
	ASSERT_FALSE(gate_origin_allowed(c, "http://localhost"));
	ASSERT_FALSE(gate_origin_allowed(c, "null"));
	ASSERT_FALSE(gate_origin_allowed(c, ""));
	ASSERT_FALSE(gate_origin_allowed(c, NULL));
	ASSERT_TRUE(gate_origin_allowed(star, "http://anything.example:1"));
	ASSERT_TRUE(gate_origin_allowed(star, "null"));
	ASSERT_FALSE(gate_origin_allowed(off, "http://localhost:3000"));

	ASSERT_TRUE(gate_cors_headers(c, "https://app.example.com", true, collect, &b));
	ASSERT_STR_EQ(b.data, "Access-Control-Allow-Origin: https://app.example.com\n"
	    "Vary: Origin\nAccess-Control-Allow-Credentials: true\n"
	    "Access-Control-Allow-Methods: GET, POST, OPTIONS\n"
	    "Access-Control-Allow-Headers: Authorization, Content-Type, X-API-Key, X-Request-ID\n"
	    "Access-Control-Max-Age: 600\n");
	buf_reset(&b);
	ASSERT_TRUE(gate_cors_headers(c, "http://localhost:3000", false, collect, &b));
	ASSERT_STR_EQ(b.data, "Access-Control-Allow-Origin: http://localhost:3000\n"
	    "Vary: Origin\nAccess-Control-Allow-Credentials: true\n");
	buf_reset(&b);
	ASSERT_FALSE(gate_cors_headers(c, "http://evil", true, collect, &b));
	ASSERT_INT_EQ(b.len, 0);
	ASSERT_TRUE(gate_cors_headers(star, "http://x.example", true, collect, &b));
	ASSERT_STR_EQ(b.data, "Access-Control-Allow-Origin: *\nVary: Origin\n"
	    "Access-Control-Allow-Methods: GET, POST, OPTIONS\n"
	    "Access-Control-Allow-Headers: Authorization, Content-Type, X-API-Key, X-Request-ID\n"
	    "Access-Control-Max-Age: 5\n");
	buf_free(&b);
	cfg_unref(c);
	cfg_unref(star);
	cfg_unref(off);
}

/* ---- token buckets ------------------------------------------------------------------------- */

static void
test_buckets(void)
{
	struct cfg        *c = load("rateLimit:\n  perIP: {rate: 1, burst: 3}\n"
	    "  perKey: {rate: 2, burst: 2}\n  tableSize: 16\n" MODEL_TAIL);
	struct cfg        *slow = load("rateLimit:\n  perIP: {rate: 0.2, burst: 1}\n" MODEL_TAIL);
	struct cfg        *glob = load("rateLimit:\n  perIP: {rate: 0}\n  perKey: {rate: 0}\n"
	    "  global: {rate: 1, burst: 2}\n" MODEL_TAIL);
	struct gate_rates *r = gate_rates_new(c);
	unsigned char      key[32], key2[32];
	int                ra = 0;
	uint64_t           t = 1000000;

	gate_key_digest("k", 1, key);
	gate_key_digest("k2", 2, key2);
	/* burst, then refusal */
	for (int i = 0; i < 3; i++)
		ASSERT_INT_EQ(gate_rate_take(r, "10.0.0.1", NULL, t, &ra), 0);
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.0.1", NULL, t, &ra), -1);
	ASSERT_INT_EQ(ra, 1);
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.0.2", NULL, t, &ra), 0); /* another IP */
	/* refill over simulated time: one token per second */
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.0.1", NULL, t + 500, &ra), -1);
	ASSERT_INT_EQ(ra, 1);
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.0.1", NULL, t + 1000, &ra), 0);
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.0.1", NULL, t + 1000, &ra), -1);
	/* never more than burst, however long the wait */
	t += 100000;
	for (int i = 0; i < 3; i++)
		ASSERT_INT_EQ(gate_rate_take(r, "10.0.0.1", NULL, t, &ra), 0);
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.0.1", NULL, t, &ra), -1);
	/* clock going backwards refills nothing */
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.0.1", NULL, t - 5000, &ra), -1);

	/* per key: shared across IPs */
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.1.1", key, t, &ra), 0);
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.1.2", key, t, &ra), 0);
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.1.3", key, t, &ra), -1);
	ASSERT_INT_EQ(ra, 1);
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.1.3", key2, t, &ra), 0);
	/* a refusal takes nothing: 10.0.1.3 still has two tokens of its own */
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.1.3", NULL, t, &ra), 0);
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.1.3", NULL, t, &ra), 0);
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.1.3", NULL, t, &ra), -1);
	ASSERT_INT_EQ(gate_rate_take(r, "10.0.1.4", key, t + 500, &ra), 0);
	gate_rates_free(r);

	/* retry_after from the refill rate */
	r = gate_rates_new(slow);
	ASSERT_INT_EQ(gate_rate_take(r, "::1", NULL, t, &ra), 0);
	ASSERT_INT_EQ(gate_rate_take(r, "::1", NULL, t, &ra), -1);
	ASSERT_INT_EQ(ra, 5);
	ASSERT_INT_EQ(gate_rate_take(r, "::1", NULL, t + 2000, &ra), -1);
	ASSERT_INT_EQ(ra, 3);
	ASSERT_INT_EQ(gate_rate_take(r, "::1", NULL, t + 4999, &ra), -1);
	ASSERT_INT_EQ(ra, 1);
	ASSERT_INT_EQ(gate_rate_take(r, "::1", NULL, t + 5000, &ra), 0);
	gate_rates_free(r);

	/* global bucket */
	r = gate_rates_new(glob);
	ASSERT_INT_EQ(gate_rate_take(r, "a", NULL, t, &ra), 0);
	ASSERT_INT_EQ(gate_rate_take(r, "b", key, t, &ra), 0);
	ASSERT_INT_EQ(gate_rate_take(r, "c", NULL, t, &ra), -1);
	ASSERT_INT_EQ(ra, 1);
	ASSERT_INT_EQ(gate_rates_size(r), 0); /* per-IP and per-key are off */
	ASSERT_INT_EQ(gate_rate_take(r, "c", NULL, t + 1000, &ra), 0);
	gate_rates_free(r);
	gate_rates_free(NULL);

	cfg_unref(c);
	cfg_unref(slow);
	cfg_unref(glob);
}

static void
test_lru(void)
{
	struct cfg        *c = load("rateLimit:\n  perIP: {rate: 0.001, burst: 1}\n"
	    "  tableSize: 16\n" MODEL_TAIL);
	struct gate_rates *r = gate_rates_new(c);
	char               ip[32];
	int                ra;
	uint64_t           t = 5000;

	/* empty the oldest's bucket, then push 16 others: it is evicted and comes back full */
	ASSERT_INT_EQ(gate_rate_take(r, "old", NULL, t, &ra), 0);
	ASSERT_INT_EQ(gate_rate_take(r, "old", NULL, t, &ra), -1);
	ASSERT_INT_EQ(gate_rates_size(r), 1);
	for (int i = 0; i < 15; i++) {
		snprintf(ip, sizeof(ip), "10.1.0.%d", i);
		ASSERT_INT_EQ(gate_rate_take(r, ip, NULL, t, &ra), 0);
	}
	ASSERT_INT_EQ(gate_rates_size(r), 16);
	/* touching "old" makes it the most recent: the next insert evicts 10.1.0.0 instead */
	ASSERT_INT_EQ(gate_rate_take(r, "old", NULL, t, &ra), -1);
	ASSERT_INT_EQ(gate_rate_take(r, "new", NULL, t, &ra), 0);
	ASSERT_INT_EQ(gate_rates_size(r), 16);
	ASSERT_INT_EQ(gate_rate_take(r, "old", NULL, t, &ra), -1);    /* still remembered */
	ASSERT_INT_EQ(gate_rate_take(r, "10.1.0.1", NULL, t, &ra), -1); /* still there */
	ASSERT_INT_EQ(gate_rate_take(r, "10.1.0.0", NULL, t, &ra), 0);  /* was evicted: fresh */
	/* now push 16 new ones: "old" goes */
	for (int i = 0; i < 16; i++) {
		snprintf(ip, sizeof(ip), "10.2.0.%d", i);
		ASSERT_INT_EQ(gate_rate_take(r, ip, NULL, t, &ra), 0);
	}
	ASSERT_INT_EQ(gate_rate_take(r, "old", NULL, t, &ra), 0);
	/* bounded whatever the load */
	for (int i = 0; i < 5000; i++) {
		snprintf(ip, sizeof(ip), "172.16.%d.%d", i / 256, i % 256);
		gate_rate_take(r, ip, NULL, t + (uint64_t)i, &ra);
		if (gate_rates_size(r) > 16) {
			ASSERT_INT_EQ(gate_rates_size(r), 16);
			break;
		}
	}
	ASSERT_INT_EQ(gate_rates_size(r), 16);
	gate_rates_free(r);
	cfg_unref(c);
}

static void
test_auth_failures(void)
{
	struct cfg        *c = load("rateLimit:\n  authFailures: {rate: 0.5, burst: 3}\n" MODEL_TAIL);
	struct cfg        *off = load("rateLimit:\n  authFailures: {rate: 0}\n" MODEL_TAIL);
	struct gate_rates *r = gate_rates_new(c);
	int                ra = 0;
	uint64_t           t = 777;

	ASSERT_FALSE(gate_auth_blocked(r, "1.2.3.4", t, &ra));
	ASSERT_INT_EQ(gate_rates_size(r), 0); /* checking creates nothing */
	ASSERT_INT_EQ(gate_auth_failure(r, "1.2.3.4", t, &ra), 0);
	ASSERT_INT_EQ(gate_auth_failure(r, "1.2.3.4", t, &ra), 0);
	ASSERT_FALSE(gate_auth_blocked(r, "1.2.3.4", t, &ra));
	ASSERT_INT_EQ(gate_auth_failure(r, "1.2.3.4", t, &ra), -1); /* the third empties it */
	ASSERT_INT_EQ(ra, 2);
	ASSERT_TRUE(gate_auth_blocked(r, "1.2.3.4", t, &ra));
	ASSERT_INT_EQ(ra, 2);
	ASSERT_FALSE(gate_auth_blocked(r, "1.2.3.5", t, &ra));
	ASSERT_TRUE(gate_auth_blocked(r, "1.2.3.4", t + 1000, &ra));
	ASSERT_INT_EQ(ra, 1);
	ASSERT_FALSE(gate_auth_blocked(r, "1.2.3.4", t + 2000, &ra));
	ASSERT_INT_EQ(gate_auth_failure(r, "1.2.3.4", t + 2000, &ra), -1);
	/* auth failures and requests are separate buckets */
	ASSERT_INT_EQ(gate_rate_take(r, "1.2.3.4", NULL, t + 2000, &ra), 0);
	gate_rates_free(r);

	r = gate_rates_new(off);
	for (int i = 0; i < 100; i++)
		ASSERT_INT_EQ(gate_auth_failure(r, "1.2.3.4", t, &ra), 0);
	ASSERT_FALSE(gate_auth_blocked(r, "1.2.3.4", t, &ra));
	gate_rates_free(r);
	cfg_unref(c);
	cfg_unref(off);
}

/* ---- paths --------------------------------------------------------------------------------- */

#define PATH_OK(raw, want) do { \
	char        o_[256]; \
	const char *w_ = "x"; \
	int         n_ = gate_upstream_path(raw, o_, sizeof(o_), &w_); \
	ASSERT_INT_EQ(n_, (long long)strlen(want)); \
	ASSERT_NULL(w_); \
	if (n_ >= 0) \
		ASSERT_STR_EQ(o_, want); \
} while (0)

#define PATH_BAD(raw, reason) do { \
	char        o_[256]; \
	const char *w_ = NULL; \
	ASSERT_INT_EQ(gate_upstream_path(raw, o_, sizeof(o_), &w_), -1); \
	ASSERT_STR_EQ(w_, reason); \
} while (0)

static void
test_paths(void)
{
	char        out[64], small[8];
	const char *why;

	PATH_OK("v1/chat/completions", "/v1/chat/completions");
	PATH_OK("/v1/models", "/v1/models");
	PATH_OK("", "/");
	PATH_OK("/", "/");
	PATH_OK("a//b///c/", "/a/b/c/");
	PATH_OK("files/my%20file.txt", "/files/my file.txt");
	PATH_OK("a+b%2Bc", "/a+b+c");
	PATH_OK("%3F%23", "/?#");
	PATH_OK("%252e%252e/x", "/%2e%2e/x"); /* decoded once only */
	PATH_OK(".../..a/.b/b.", "/.../..a/.b/b.");
	PATH_OK("v1:generate", "/v1:generate");
	PATH_OK("caf%C3%A9", "/caf\xc3\xa9");

	PATH_BAD("..%2f..%2fetc/passwd", "encoded slash in path");
	PATH_BAD("a%2Fb", "encoded slash in path");
	PATH_BAD("%2e%2e/", "dot segment in path");
	PATH_BAD("%2E%2E", "dot segment in path");
	PATH_BAD("..", "dot segment in path");
	PATH_BAD("a/../b", "dot segment in path");
	PATH_BAD("a/./b", "dot segment in path");
	PATH_BAD("a/..", "dot segment in path");
	PATH_BAD("./a", "dot segment in path");
	PATH_BAD("a/.%2e/b", "dot segment in path");
	PATH_BAD("a\\b", "backslash in path");
	PATH_BAD("..\\x", "backslash in path");
	PATH_BAD("a%5cb", "encoded backslash in path");
	PATH_BAD("http://x", "absolute URL in path");
	PATH_BAD("/https://evil.example/a", "absolute URL in path");
	PATH_BAD("%68ttp://x", "absolute URL in path");
	PATH_BAD("%00", "encoded NUL in path");
	PATH_BAD("a%00.txt", "encoded NUL in path");
	PATH_BAD("%zz", "invalid percent escape in path");
	PATH_BAD("a%2", "invalid percent escape in path");
	PATH_BAD("a%", "invalid percent escape in path");
	PATH_BAD("a%0d%0aX: y", "control character in path");
	PATH_BAD("a\tb", "control character in path");

	why = NULL;
	ASSERT_INT_EQ(gate_upstream_path("abcdefgh", small, sizeof(small), &why), -1);
	ASSERT_STR_EQ(why, "path too long");
	ASSERT_INT_EQ(gate_upstream_path("abcdef", small, sizeof(small), &why), 7);
	ASSERT_INT_EQ(gate_upstream_path("x", small, 1, &why), -1);

	/* and back to the wire */
	ASSERT_INT_EQ(gate_path_encode("/files/my file.txt", out, sizeof(out)), 20);
	ASSERT_STR_EQ(out, "/files/my%20file.txt");
	ASSERT_INT_EQ(gate_path_encode("/?#%", out, sizeof(out)), 10);
	ASSERT_STR_EQ(out, "/%3F%23%25");
	ASSERT_INT_EQ(gate_path_encode("/a-b_c.d~e:f@g!$&'()*+,;=", out, sizeof(out)), 25);
	ASSERT_STR_EQ(out, "/a-b_c.d~e:f@g!$&'()*+,;=");
	ASSERT_INT_EQ(gate_path_encode("/caf\xc3\xa9", out, sizeof(out)), 10);
	ASSERT_STR_EQ(out, "/caf%C3%A9");
	ASSERT_INT_EQ(gate_path_encode("/ab cd", small, sizeof(small)), -1);
	ASSERT_INT_EQ(gate_path_encode("/abcdef", small, sizeof(small)), 7);
}

/* IPv6 clients share a bucket per /64; IPv4 ones (and v4-mapped) one per address. */
static void
test_v6_prefix(void)
{
	struct cfg        *c = load("rateLimit:\n  authFailures: {rate: 0.001, burst: 1}\n" MODEL_TAIL);
	struct gate_rates *r = gate_rates_new(c);
	int                ra = 0;

	ASSERT_INT_EQ(gate_auth_failure(r, "2001:db8:1:2:aaaa::1", 1000, &ra), -1);
	ASSERT_TRUE(gate_auth_blocked(r, "2001:db8:1:2:bbbb::7", 1000, &ra));
	ASSERT_FALSE(gate_auth_blocked(r, "2001:db8:1:3::1", 1000, &ra));
	ASSERT_INT_EQ(gate_auth_failure(r, "10.0.0.1", 1000, &ra), -1);
	ASSERT_FALSE(gate_auth_blocked(r, "10.0.0.2", 1000, &ra));
	gate_rates_free(r);
	cfg_unref(c);
}

static void
test_conns(void)
{
	struct gate_conns *t = gate_conns_new();

	ASSERT_TRUE(gate_conn_open(t, "10.0.0.1", 2));
	ASSERT_TRUE(gate_conn_open(t, "10.0.0.1", 2));
	ASSERT_FALSE(gate_conn_open(t, "10.0.0.1", 2));
	ASSERT_TRUE(gate_conn_open(t, "10.0.0.2", 2));
	ASSERT_INT_EQ(gate_conn_count(t, "10.0.0.1"), 2);
	gate_conn_close(t, "10.0.0.1");
	ASSERT_TRUE(gate_conn_open(t, "10.0.0.1", 2));
	/* One /64 is one client. */
	ASSERT_TRUE(gate_conn_open(t, "2001:db8::1", 2));
	ASSERT_TRUE(gate_conn_open(t, "2001:db8::2", 2));
	ASSERT_FALSE(gate_conn_open(t, "2001:db8::ffff:3", 2));
	ASSERT_TRUE(gate_conn_open(t, "2001:db8:0:1::1", 2));
	gate_conn_close(t, "2001:db8::2");
	gate_conn_close(t, "2001:db8::1");
	ASSERT_INT_EQ(gate_conn_count(t, "2001:db8::9"), 0);
	gate_conn_close(t, "192.0.2.99"); /* never counted: nothing happens */
	/* The same table as a byte tally. */
	ASSERT_TRUE(gate_tally_add(t, "10.9.9.9", 600, 1000));
	ASSERT_FALSE(gate_tally_add(t, "10.9.9.9", 401, 1000));
	ASSERT_TRUE(gate_tally_add(t, "10.9.9.9", 400, 1000));
	ASSERT_FALSE(gate_tally_add(t, "10.9.9.8", 1001, 1000));
	gate_tally_sub(t, "10.9.9.9", 700);
	ASSERT_INT_EQ(gate_tally(t, "10.9.9.9"), 300);
	gate_tally_sub(t, "10.9.9.9", 5000);
	ASSERT_INT_EQ(gate_tally(t, "10.9.9.9"), 0);
	gate_conns_free(t);
}

/* ---- the verdict -------------------------------------------------------------------------- */

static enum gate_outcome
judge(const struct cfg *c, struct gate_rates *r, const char *method, const char *origin,
    const char *auth, enum gate_scope need, struct gate_verdict *v)
{
	struct gate_ask a = {
		.ip = "192.0.2.7", .method = method, .path = "/running", .origin = origin,
		.preflight = strcmp(method, "OPTIONS") == 0 ? "POST" : NULL,
		.authorization = auth, .need = need,
	};

	return gate_judge(c, r, &a, 1000, v);
}

static void
test_judge(void)
{
	struct cfg         *c = load("apiKeys:\n  - alpha\n  - {key: gamma, admin: true}\n"
	    "cors: {allowedOrigins: [\"https://app.example\"]}\n"
	    "rateLimit:\n  perIP: {rate: 0.001, burst: 2}\n  authFailures: {rate: 0.001, burst: 2}\n"
	    MODEL_TAIL);
	struct gate_rates  *r = gate_rates_new(c);
	struct gate_verdict v;

	/* An open route: no key, no rate; an allowed origin gets its CORS headers. */
	ASSERT_INT_EQ(judge(c, r, "GET", "https://app.example", NULL, GATE_DENIED, &v), GATE_PASS);
	ASSERT_TRUE(v.cors);
	/* Origin first: a foreign one is refused whatever the key. */
	ASSERT_INT_EQ(judge(c, r, "GET", "http://evil", "Bearer gamma", GATE_USER, &v), GATE_REFUSE);
	ASSERT_INT_EQ(v.status, 403);
	ASSERT_STR_EQ(v.code, "origin_not_allowed");
	ASSERT_STR_EQ(v.reasons[0], "cors");
	ASSERT_TRUE(v.reasons[1] == NULL);
	ASSERT_FALSE(v.cors);
	/* An allowed preflight is answered before any key. */
	ASSERT_INT_EQ(judge(c, r, "OPTIONS", "https://app.example", NULL, GATE_ADMIN, &v),
	    GATE_PREFLIGHT);
	/* A plain key on an admin route: 403. */
	ASSERT_INT_EQ(judge(c, r, "GET", NULL, "Bearer alpha", GATE_ADMIN, &v), GATE_REFUSE);
	ASSERT_INT_EQ(v.status, 403);
	ASSERT_STR_EQ(v.code, "admin_key_required");
	ASSERT_STR_EQ(v.msg, "/running needs an admin API key");
	/* A right key passes and is known by its digest (its rate bucket: burst 2, one used). */
	ASSERT_INT_EQ(judge(c, r, "GET", "https://app.example", "Bearer gamma", GATE_ADMIN, &v),
	    GATE_PASS);
	ASSERT_TRUE(v.keyed && v.cors);
	/* No key: 401 with a challenge, counted as auth (the one failure the address may make). */
	ASSERT_INT_EQ(judge(c, r, "GET", NULL, NULL, GATE_USER, &v), GATE_REFUSE);
	ASSERT_INT_EQ(v.status, 401);
	ASSERT_TRUE(v.challenge);
	ASSERT_STR_EQ(v.msg, "an API key is required");
	ASSERT_STR_EQ(v.reasons[0], "auth");
	/* The next guess is locked out: 429, counted as rate and auth. */
	ASSERT_INT_EQ(judge(c, r, "GET", NULL, "Bearer nope", GATE_USER, &v), GATE_REFUSE);
	ASSERT_INT_EQ(v.status, 429);
	ASSERT_TRUE(v.retry_after_s >= 1);
	ASSERT_STR_EQ(v.reasons[0], "rate");
	ASSERT_STR_EQ(v.reasons[1], "auth");
	ASSERT_FALSE(v.challenge);
	/* ... but the right key still passes, until the address's own rate runs out. */
	ASSERT_INT_EQ(judge(c, r, "GET", NULL, "Bearer alpha", GATE_USER, &v), GATE_PASS);
	ASSERT_INT_EQ(judge(c, r, "GET", NULL, "Bearer alpha", GATE_USER, &v), GATE_REFUSE);
	ASSERT_INT_EQ(v.status, 429);
	ASSERT_STR_EQ(v.msg, "rate limit reached; retry in 1000 s");
	gate_rates_free(r);
	cfg_unref(c);
}

/* Every per-IP limit counts a client by its group: an IPv6 /64, an IPv4-mapped IPv6 address
 * as its IPv4 address (a dual-stack listener sees IPv4 clients so), anything else as it is. */
static void
test_ip_groups(void)
{
	struct cfg        *c = load("rateLimit:\n  authFailures: {rate: 0.5, burst: 2}\n"
	    "  perIP: {rate: 0.5, burst: 2}\n" MODEL_TAIL);
	struct gate_rates *r = gate_rates_new(c);
	struct gate_conns *t = gate_conns_new();
	char               g[GATE_MAX_IP_BYTES], ip[32];
	int                ra = 0;
	uint64_t           now = 1000;

	gate_ip_group("2001:db8:1:2:aaaa:bbbb:cccc:dddd", g, sizeof(g));
	ASSERT_STR_EQ(g, "2001:db8:1:2::/64");
	gate_ip_group("2001:DB8:1:2::1", g, sizeof(g));
	ASSERT_STR_EQ(g, "2001:db8:1:2::/64");
	gate_ip_group("::1", g, sizeof(g));
	ASSERT_STR_EQ(g, "::/64");
	gate_ip_group("::ffff:192.0.2.7", g, sizeof(g));
	ASSERT_STR_EQ(g, "192.0.2.7");
	gate_ip_group("::FFFF:c000:0207", g, sizeof(g));
	ASSERT_STR_EQ(g, "192.0.2.7");
	gate_ip_group("192.0.2.7", g, sizeof(g));
	ASSERT_STR_EQ(g, "192.0.2.7");
	gate_ip_group("::ffff:0:192.0.2.7", g, sizeof(g)); /* IPv4-translated: not mapped */
	ASSERT_STR_EQ(g, "::/64");
	gate_ip_group("not:an:address", g, sizeof(g));
	ASSERT_STR_EQ(g, "not:an:address");
	gate_ip_group(NULL, g, sizeof(g));
	ASSERT_STR_EQ(g, "");
	gate_ip_group("192.0.2.7", g, 4);
	ASSERT_STR_EQ(g, "192");
	gate_ip_group("192.0.2.7", g, 0); /* writes nothing */

	/* Two failures from one /64, under different low halves, empty the shared bucket. */
	ASSERT_INT_EQ(gate_auth_failure(r, "2001:db8:1:2::a", now, &ra), 0);
	ASSERT_INT_EQ(gate_auth_failure(r, "2001:db8:1:2::b", now, &ra), -1);
	ASSERT_TRUE(gate_auth_blocked(r, "2001:db8:1:2:ffff::1", now, &ra));
	ASSERT_FALSE(gate_auth_blocked(r, "2001:db8:1:3::a", now, &ra));
	/* An IPv4-mapped client shares the IPv4 client's buckets, both ways. */
	ASSERT_INT_EQ(gate_auth_failure(r, "::ffff:198.51.100.1", now, &ra), 0);
	ASSERT_INT_EQ(gate_auth_failure(r, "198.51.100.1", now, &ra), -1);
	ASSERT_TRUE(gate_auth_blocked(r, "::ffff:198.51.100.1", now, &ra));
	ASSERT_INT_EQ(gate_rate_take(r, "192.0.2.9", NULL, now, &ra), 0);
	ASSERT_INT_EQ(gate_rate_take(r, "::ffff:192.0.2.9", NULL, now, &ra), 0);
	ASSERT_INT_EQ(gate_rate_take(r, "192.0.2.9", NULL, now, &ra), -1);
	ASSERT_INT_EQ(gate_rate_take(r, "::ffff:192.0.2.10", NULL, now, &ra), 0);

	/* The connection cap and the spool share likewise. */
	ASSERT_TRUE(gate_conn_open(t, "10.0.0.1", 2));
	ASSERT_TRUE(gate_conn_open(t, "::ffff:10.0.0.1", 2));
	ASSERT_FALSE(gate_conn_open(t, "10.0.0.1", 2));
	ASSERT_FALSE(gate_conn_open(t, "::ffff:10.0.0.1", 2));
	ASSERT_INT_EQ(gate_conn_count(t, "::ffff:10.0.0.1"), 2);
	gate_conn_close(t, "::ffff:10.0.0.1");
	ASSERT_INT_EQ(gate_conn_count(t, "10.0.0.1"), 1);
	gate_conn_close(t, "10.0.0.1");
	ASSERT_INT_EQ(gate_conn_count(t, "10.0.0.1"), 0);
	ASSERT_TRUE(gate_tally_add(t, "::ffff:10.9.9.9", 600, 1000));
	ASSERT_FALSE(gate_tally_add(t, "10.9.9.9", 401, 1000));
	ASSERT_INT_EQ(gate_tally(t, "10.9.9.9"), 600);
	gate_tally_sub(t, "10.9.9.9", 600);
	ASSERT_INT_EQ(gate_tally(t, "::ffff:10.9.9.9"), 0);

	/* Many addresses, each at its cap, then all gone: nothing left behind. */
	for (int i = 0; i < 5000; i++) {
		snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 256, i % 256);
		ASSERT_TRUE(gate_conn_open(t, ip, 1));
	}
	for (int i = 0; i < 5000; i++) {
		snprintf(ip, sizeof(ip), "::ffff:10.%d.%d.1", i / 256, i % 256);
		ASSERT_FALSE(gate_conn_open(t, ip, 1));
		gate_conn_close(t, ip);
		ASSERT_INT_EQ(gate_conn_count(t, ip + 7), 0);
	}
	gate_conns_free(t);
	gate_rates_free(r);
	cfg_unref(c);
}

static void
test_forwarded(void)
{
	struct cfg *c = load("trustedProxies: [\"10.0.0.0/8\", \"2001:db8::/32\"]\n" MODEL_TAIL);
	char        ip[GATE_MAX_IP_BYTES], chain[128];

#define FWD(in, before, want) do { \
	snprintf(chain, sizeof(chain), "%s", in); \
	snprintf(ip, sizeof(ip), "%s", before); \
	gate_forwarded_client(c, chain, strlen(chain), ip, sizeof(ip)); \
	ASSERT_STR_EQ(ip, want); \
} while (0)
	FWD("198.51.100.1", "10.1.1.1", "198.51.100.1");
	FWD("198.51.100.1, 10.2.2.2", "10.1.1.1", "198.51.100.1");      /* a trusted hop skipped */
	FWD("203.0.113.9, 198.51.100.1,10.2.2.2 ", "10.1.1.1", "198.51.100.1"); /* not believed past */
	FWD("10.3.3.3, 10.2.2.2", "10.1.1.1", "10.3.3.3");              /* all trusted: left-most */
	FWD("junk, 10.2.2.2", "10.1.1.1", "10.2.2.2");                 /* stops at no address */
	FWD("198.51.100.0/24", "10.1.1.1", "10.1.1.1");                /* a range is no client */
	FWD("2001:db8::5, 2001:db9::1", "10.1.1.1", "2001:db9::1");
#undef FWD
	ASSERT_TRUE(gate_trusted_proxy(c, "10.200.0.1"));
	ASSERT_FALSE(gate_trusted_proxy(c, "11.0.0.1"));
	cfg_unref(c);
}

/* The spool share: by address and by key at once, all or nothing. */
static void
test_shares(void)
{
	struct gate_conns *ips = gate_conns_new(), *keys = gate_conns_new();
	unsigned char      d1[GATE_DIGEST_LEN], d2[GATE_DIGEST_LEN];
	char               k1[GATE_KEY_NAME_BYTES], k2[GATE_KEY_NAME_BYTES];

	gate_key_digest("key-one", 7, d1);
	gate_key_digest("key-two", 7, d2);
	gate_key_name(d1, k1);
	gate_key_name(d2, k2);
	ASSERT_INT_EQ(strlen(k1), 20);
	ASSERT_TRUE(strncmp(k1, "key:", 4) == 0);
	ASSERT_TRUE(strcmp(k1, k2) != 0);
	ASSERT_TRUE(strstr(k1, "key-one") == NULL);

	ASSERT_TRUE(gate_share_add(ips, keys, "10.0.0.1", k1, 600, 1000));
	/* The key is past its share from another address: nothing added anywhere. */
	ASSERT_FALSE(gate_share_add(ips, keys, "10.0.0.2", k1, 401, 1000));
	ASSERT_INT_EQ(gate_tally(ips, "10.0.0.2"), 0);
	ASSERT_INT_EQ(gate_tally(keys, k1), 600);
	/* The address is past its share with another key: nothing added anywhere. */
	ASSERT_FALSE(gate_share_add(ips, keys, "::ffff:10.0.0.1", k2, 401, 1000));
	ASSERT_INT_EQ(gate_tally(keys, k2), 0);
	ASSERT_INT_EQ(gate_tally(ips, "10.0.0.1"), 600);
	/* Another key from another address has its own; no key counts the address only. */
	ASSERT_TRUE(gate_share_add(ips, keys, "10.0.0.2", k2, 1000, 1000));
	ASSERT_TRUE(gate_share_add(ips, keys, "10.0.0.3", NULL, 1000, 1000));
	ASSERT_TRUE(gate_share_add(ips, keys, "10.0.0.4", "", 1000, 1000));
	ASSERT_TRUE(gate_share_add(ips, NULL, "10.0.0.5", k1, 1000, 1000));
	ASSERT_INT_EQ(gate_tally(keys, k1), 600);
	gate_share_sub(ips, keys, "10.0.0.1", k1, 600);
	ASSERT_INT_EQ(gate_tally(keys, k1), 0);
	ASSERT_INT_EQ(gate_tally(ips, "10.0.0.1"), 0);
	ASSERT_TRUE(gate_share_add(ips, keys, "10.0.0.6", k1, 1000, 1000));
	gate_share_sub(ips, keys, "10.0.0.6", k1, 1000);
	gate_share_sub(ips, keys, "10.0.0.2", k2, 1000);
	gate_share_sub(ips, keys, "10.0.0.3", NULL, 1000);
	gate_share_sub(ips, keys, "10.0.0.4", "", 1000);
	gate_share_sub(ips, NULL, "10.0.0.5", k1, 1000);
	ASSERT_INT_EQ(gate_tally(keys, k2), 0);
	ASSERT_INT_EQ(gate_tally(ips, "10.0.0.5"), 0);
	gate_conns_free(ips);
	gate_conns_free(keys);
}

static void
test_same_origin(void)
{
	/* The page's own POSTs: Origin is scheme://Host. */
	ASSERT_TRUE(gate_same_origin("http://127.0.0.1:8080", "127.0.0.1:8080", false, false));
	ASSERT_TRUE(gate_same_origin("http://LOCALHOST:8080", "localhost:8080", false, false));
	ASSERT_TRUE(gate_same_origin("http://[::1]:8080", "[::1]:8080", false, false));
	ASSERT_TRUE(gate_same_origin("http://10.0.0.5", "10.0.0.5", false, false));
	ASSERT_TRUE(gate_same_origin("https://127.0.0.1:8443", "127.0.0.1:8443", true, false));
	/* A name could be rebound to us: only with keys. */
	ASSERT_FALSE(gate_same_origin("http://evil.example:8080", "evil.example:8080", false, false));
	ASSERT_TRUE(gate_same_origin("http://llm.example:8080", "llm.example:8080", false, true));
	/* Anything else is cross-origin. */
	ASSERT_FALSE(gate_same_origin("http://127.0.0.1:8080", "127.0.0.1:8081", false, false));
	ASSERT_FALSE(gate_same_origin("https://127.0.0.1:8080", "127.0.0.1:8080", false, false));
	ASSERT_FALSE(gate_same_origin("http://127.0.0.1:8080", "127.0.0.1:8080", true, false));
	ASSERT_FALSE(gate_same_origin("null", "127.0.0.1:8080", false, true));
	ASSERT_FALSE(gate_same_origin(NULL, "127.0.0.1:8080", false, true));
	ASSERT_FALSE(gate_same_origin("http://127.0.0.1", NULL, false, true));
	ASSERT_FALSE(gate_same_origin("http://", "", false, true));
	ASSERT_FALSE(gate_same_origin("http://a b", "a b", false, true));
	ASSERT_FALSE(gate_same_origin("http://[::1", "[::1", false, false));
	ASSERT_FALSE(gate_same_origin("http://[::1]x", "[::1]x", false, false));
	ASSERT_FALSE(gate_same_origin("http://1.2.3.4.5", "1.2.3.4.5", false, false));
}

int
main(void)
{
	test_judge();
	test_forwarded();
	test_ip_groups();
	test_shares();
	test_same_origin();
	test_conns();
	test_v6_prefix();
	test_presented_key();
	test_check_key();
	test_cors();
	test_buckets();
	test_lru();
	test_auth_failures();
	test_paths();
	CHECK_DONE();
}
