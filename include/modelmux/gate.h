/* gate: the security checks a request passes before it reaches a model — API keys (kept only as
 * SHA-256 digests, compared in constant time against every entry), CORS, token-bucket rate
 * limits (per IP, per key, global, and failed authentications per IP) and /upstream path checks.
 *
 * The gate knows nothing of HTTP libraries: callers hand it header values and strings and get
 * verdicts back. Everything here runs on the loop thread; nothing is thread-safe.
 *
 * The whole verdict on a request is gate_judge, in this order:
 *   1. Origin header present: gate_origin_allowed, else 403; an allowed preflight (OPTIONS with
 *      Access-Control-Request-Method) is answered 204 with gate_cors_headers.
 *   2. gate_presented_key + gate_check_key (when gate_keys_required and the route needs a key):
 *        a right key passes;
 *        denied → gate_auth_blocked(ip) or gate_auth_failure(ip) → 429 with Retry-After,
 *        else 401;
 *        GATE_USER on a management route → 403.
 *   3. gate_rate_take(ip, digest or NULL) → 429 with Retry-After.
 * Who the client is (the peer, or behind trustedProxies what they forwarded) is
 * gate_forwarded_client. Apart from the verdict, /upstream/<model>/<rest> goes through
 * gate_upstream_path(rest) → 400 with the reason, then gate_path_encode for the upstream URL.
 */
#ifndef MODELMUX_GATE_H
#define MODELMUX_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cfg;

#define GATE_DIGEST_LEN     32    /* SHA-256 */
#define GATE_MAX_KEY_BYTES  1024  /* longer presented keys are refused unhashed */
#define GATE_MAX_IP_BYTES   64    /* longest address text a bucket is keyed by */

enum gate_scope {
	GATE_DENIED = 0,
	GATE_USER,   /* a plain key: model routes only */
	GATE_ADMIN,  /* a key marked admin: model and management routes */
};

/* ---- keys ---------------------------------------------------------------------------------- */

/* Whether the config has any API key (so every request must present one). */
bool gate_keys_required(const struct cfg *c);

/* Extracts the key a request presents from its header values (either may be NULL):
 * "Authorization: Bearer K", "Authorization: Basic base64(user:K)" (the password part, which
 * may itself hold ':'), else "X-API-Key: K". Writes K NUL-terminated into out[n] and returns its
 * length; -1 when no key, an empty key, a malformed header, or a key of n bytes or more. The
 * caller wipes `out` (OPENSSL_cleanse) when done. */
int gate_presented_key(const char *authorization, const char *x_api_key, char *out, size_t n);

/* Hashes key[len] and compares the digest with every configured digest (CRYPTO_memcmp, no early
 * exit, so timing does not reveal which entry matched or how many there are). Returns the best
 * scope matched, GATE_DENIED when none. If digest is not NULL the key's SHA-256 is written there
 * (for gate_rate_take's per-key bucket; pass it only when the scope is not GATE_DENIED). */
enum gate_scope gate_check_key(const struct cfg *c, const char *key, size_t len,
    unsigned char digest[GATE_DIGEST_LEN]);

/* Writes the SHA-256 of key[len] into out. */
void gate_key_digest(const char *key, size_t len, unsigned char out[GATE_DIGEST_LEN]);

/* Test hook: how many digest comparisons gate_check_key has made since start. */
extern unsigned long gate__compare_count;

/* ---- CORS ---------------------------------------------------------------------------------- */

/* Whether this exact Origin header value is allowed (scheme, host and port all compared, ASCII
 * case-insensitively); "*" in cors.allowedOrigins allows any. false for NULL or when no origin
 * is configured. */
bool gate_origin_allowed(const struct cfg *c, const char *origin);

#define GATE_MAX_HOST_BYTES 300 /* a Host header longer than this is never "same origin" */

/* Is an Origin the request's own (scheme://Host, as a browser sends on its same-origin POSTs:
 * the web page)? Then it is no cross-origin request and CORS has nothing to say. Only believed
 * when the Host cannot be a name rebound to us by a hostile DNS server: an IP literal or
 * "localhost", or any name when API keys are required (a rebound page has no key). */
bool gate_same_origin(const char *origin, const char *host, bool tls, bool keys_required);

/* Called once per response header by gate_cors_headers; name and value are valid only during
 * the call. */
typedef void gate_header_cb(void *arg, const char *name, const char *value);

/* For an allowed origin, emits Access-Control-Allow-Origin (the origin itself, or "*" when "*"
 * is configured), Vary: Origin, and Access-Control-Allow-Credentials: true when configured; with
 * `preflight` also Access-Control-Allow-Methods, -Allow-Headers and -Max-Age. Emits nothing and
 * returns false when the origin is not allowed. */
bool gate_cors_headers(const struct cfg *c, const char *origin, bool preflight,
    gate_header_cb *cb, void *arg);

/* ---- rate limits --------------------------------------------------------------------------- */

/* The group a client address is counted in by every per-IP limit (buckets, connections, spool
 * share): an IPv6 address by its /64 ("2001:db8:1:2::/64"), an IPv4-mapped IPv6 address as its
 * IPv4 address ("::ffff:192.0.2.7" is "192.0.2.7"), anything else as it is (at most
 * GATE_MAX_IP_BYTES of it). Writes it NUL-terminated to out[n]. */
void gate_ip_group(const char *ip, char *out, size_t n);

/* Token buckets for rateLimit.*: one global bucket plus a table of per-IP, per-key and
 * auth-failure buckets keyed "ip:<addr>", "key:<hex digest prefix>", "authfail:<addr>". The
 * table is a hash table with an LRU list, bounded by rateLimit.tableSize: when full, the least
 * recently used bucket is dropped (it is as if that client had been idle). O(1) per lookup.
 * Reads the limits from `c` once; after a reload, make a new table. The caller frees it with
 * gate_rates_free. */
struct gate_rates *gate_rates_new(const struct cfg *c);
void gate_rates_free(struct gate_rates *r);

/* Takes one token from every applicable bucket (global, ip, and key when key_digest is not
 * NULL; a bucket whose rate is 0 is off). Returns 0 when all had one; else -1, nothing taken,
 * and *retry_after_s (>= 1) = whole seconds until every refusing bucket has a token again. */
int gate_rate_take(struct gate_rates *r, const char *ip, const unsigned char *key_digest,
    uint64_t now_ms, int *retry_after_s);

/* Records a failed authentication from ip: takes a token from its authFailures bucket. 0 while
 * tokens remain (answer 401); -1 when this failure emptied the bucket or it was already empty
 * (answer 429 with *retry_after_s, >= 1; gate_auth_blocked is then true until a token refills).
 * Always 0 when rateLimit.authFailures.rate is 0. */
int gate_auth_failure(struct gate_rates *r, const char *ip, uint64_t now_ms, int *retry_after_s);

/* Whether ip has no auth-failure token left (refuse it before looking at its key); sets
 * *retry_after_s (>= 1) when true. Takes nothing. */
bool gate_auth_blocked(struct gate_rates *r, const char *ip, uint64_t now_ms, int *retry_after_s);

/* Buckets in the table now (never more than rateLimit.tableSize). */
size_t gate_rates_size(const struct gate_rates *r);

/* ---- connections per address -------------------------------------------------------------- */

#define GATE_CONN_BUCKETS 1024 /* hash chains of the per-address connection counts */

/* Open connections (or another tally) per client address group (gate_ip_group), so one
 * address cannot hold every connection the daemon has. */
struct gate_conns;
struct gate_conns *gate_conns_new(void);
void gate_conns_free(struct gate_conns *t);
/* A new connection from ip: true (counted) while ip holds fewer than max, false (not counted)
 * at the cap. */
bool gate_conn_open(struct gate_conns *t, const char *ip, unsigned max);
/* A counted connection from ip closed. */
void gate_conn_close(struct gate_conns *t, const char *ip);
/* Connections ip holds now (tests). */
unsigned gate_conn_count(const struct gate_conns *t, const char *ip);
/* The same table as a tally of any amount per address (bytes of spooled uploads): add n for ip
 * unless that takes it past max (false, nothing added); take n back; read it. */
bool     gate_tally_add(struct gate_conns *t, const char *ip, uint64_t n, uint64_t max);
void     gate_tally_sub(struct gate_conns *t, const char *ip, uint64_t n);
uint64_t gate_tally(const struct gate_conns *t, const char *ip);

/* A share held by client address and by API key at once (the spool budget's): adds n to ip's
 * tally in `ips` and to key's in `keys` (key NULL or "": no key, only the address counts)
 * unless that takes either past max (false, nothing added); gate_share_sub takes n back from
 * both. A key is named by gate_key_name. */
bool gate_share_add(struct gate_conns *ips, struct gate_conns *keys, const char *ip,
    const char *key, uint64_t n, uint64_t max);
void gate_share_sub(struct gate_conns *ips, struct gate_conns *keys, const char *ip,
    const char *key, uint64_t n);

#define GATE_KEY_NAME_BYTES 24 /* "key:" and 16 hex digits of the digest, NUL */

/* A key's name for tallies: "key:" and the first 8 bytes of its digest in hex (never the key). */
void gate_key_name(const unsigned char digest[GATE_DIGEST_LEN], char out[GATE_KEY_NAME_BYTES]);

/* ---- the verdict ---------------------------------------------------------------------------- */

#define GATE_MSG_MAX 320 /* a refusal's message */

/* One request as the gate sees it: the caller's strings, NULL when a header is absent. */
struct gate_ask {
	const char     *ip;             /* the client (see gate_forwarded_client) */
	const char     *method, *path;
	const char     *origin;         /* Origin */
	const char     *preflight;      /* Access-Control-Request-Method */
	const char     *authorization, *x_api_key;
	enum gate_scope need;           /* what the route needs; GATE_DENIED: an open route */
};

enum gate_outcome {
	GATE_PASS = 0,   /* go on */
	GATE_PREFLIGHT,  /* an allowed CORS preflight: answer 204 with gate_cors_headers(preflight) */
	GATE_REFUSE,     /* answer v->status with the OpenAI error v->code, v->msg */
};

struct gate_verdict {
	bool          cors;           /* the origin is allowed: its CORS headers go on the answer */
	bool          keyed;          /* a right key came; digest is its SHA-256 */
	unsigned char digest[GATE_DIGEST_LEN];
	int           status;         /* GATE_REFUSE: 401, 403 or 429 */
	const char   *code;           /* its error code (static) */
	const char   *reasons[2];     /* the refusal metric reasons it counts under ("cors",
	                               * "auth", "rate"; a locked-out guess is both "auth" and
	                               * "rate"), NULL past the last */
	char          msg[GATE_MSG_MAX];
	int           retry_after_s;  /* a 429's Retry-After */
	bool          challenge;      /* a 401: WWW-Authenticate goes on the answer */
};

/* The gate's whole verdict on one request (origin → key → scope → rate), counting what it
 * takes from the rate buckets. The presented key is wiped before it returns. */
enum gate_outcome gate_judge(const struct cfg *c, struct gate_rates *rates,
    const struct gate_ask *a, uint64_t now_ms, struct gate_verdict *v);

/* The client behind trusted proxies: in `chain` (a trusted peer's X-Forwarded-For fields joined
 * with commas; cut up in place), the right-most address that is not itself in
 * cfg trustedProxies. Walks from the right and stops at an entry that is no address (or too
 * long): such a chain is not believed past that point. Writes it to ip[n] (left as it is when
 * the right-most entry is no address). */
void gate_forwarded_client(const struct cfg *c, char *chain, size_t len, char *ip, size_t n);
/* Is ip in cfg trustedProxies? */
bool gate_trusted_proxy(const struct cfg *c, const char *ip);

/* ---- paths --------------------------------------------------------------------------------- */

/* Checks the <rest> of /upstream/<model>/<rest> as it came on the wire (still percent-encoded,
 * no query string): percent-decodes it once into out[n] as a path that always starts with '/'
 * ("" → "/", "v1/x" → "/v1/x"), with repeated '/' collapsed (a trailing '/' is kept). Returns the
 * decoded length, or -1 with *why set to a static reason when it has a "." or ".." segment
 * (raw or encoded), an encoded '/' (%2f) or '\' (%5c), a backslash, a NUL or other control
 * character (raw or encoded), an absolute URL ("scheme://"), an invalid escape, or does not fit
 * in n bytes. */
int gate_upstream_path(const char *raw, char *out, size_t n, const char **why);

/* Percent-encodes a decoded path for an upstream URL: keeps unreserved characters, '/' and the
 * sub-delimiters, encodes the rest (space → %20, '?' → %3F, '#' → %23, '%' → %25). Returns the
 * length written to out[n] (NUL-terminated), or -1 if it does not fit. */
int gate_path_encode(const char *path, char *out, size_t n);

#endif
