/* gate: API keys, CORS, token buckets, connections per address and the verdict (the /upstream
 * path checks are in gate_path.c). See include/modelmux/gate.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/types.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "modelmux/config.h"
#include "modelmux/gate.h"
#include "modelmux/log.h"
#include "modelmux/util.h"

#define BUCKET_KEY_MAX  (sizeof("authfail:") + GATE_MAX_IP_BYTES)
#define KEY_PREFIX_LEN  8 /* digest bytes naming a per-key bucket (16 hex digits) */

unsigned long gate__compare_count;

/* ---- keys ---------------------------------------------------------------------------------- */

bool
gate_keys_required(const struct cfg *c)
{
	return c != NULL && c->nkeys > 0;
}

void
gate_key_digest(const char *key, size_t len, unsigned char out[GATE_DIGEST_LEN])
{
	unsigned int n = 0;

	if (EVP_Digest(key, len, out, &n, EVP_sha256(), NULL) != 1 || n != GATE_DIGEST_LEN)
		fatal("gate: SHA-256 failed");
}

/* One digest comparison, counted so tests can prove there is no early exit. */
static int
digest_cmp(const unsigned char *a, const unsigned char *b)
{
	gate__compare_count++;
	return CRYPTO_memcmp(a, b, GATE_DIGEST_LEN);
}

enum gate_scope
gate_check_key(const struct cfg *c, const char *key, size_t len,
    unsigned char digest[GATE_DIGEST_LEN])
{
	unsigned char d[GATE_DIGEST_LEN];
	unsigned int  user = 0, admin = 0;

	if (c == NULL || key == NULL)
		return GATE_DENIED;
	gate_key_digest(key, len, d);
	for (size_t i = 0; i < c->nkeys; i++) {
		unsigned int hit = digest_cmp(d, c->keys[i].sha256) == 0;

		user |= hit;
		admin |= hit & (unsigned int)c->keys[i].admin;
	}
	if (digest != NULL)
		memcpy(digest, d, sizeof(d));
	OPENSSL_cleanse(d, sizeof(d));
	return admin ? GATE_ADMIN : user ? GATE_USER : GATE_DENIED;
}

static int
b64_val(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/* Strict base64 (padding optional) of s[len] into out[n]; decoded length or -1. */
static int
b64_decode(const char *s, size_t len, unsigned char *out, size_t n)
{
	size_t       o = 0, i;
	unsigned int acc = 0;
	int          bits = 0, v;

	while (len > 0 && s[len - 1] == '=')
		len--;
	if (len % 4 == 1)
		return -1;
	for (i = 0; i < len; i++) {
		if ((v = b64_val((unsigned char)s[i])) == -1)
			return -1;
		acc = (acc << 6) | (unsigned int)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == n)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
		acc &= 0xffu;
	}
	return (int)o;
}

static const char *
skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* Length of s without trailing blanks. */
static size_t
trim_len(const char *s)
{
	size_t len = strlen(s);

	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	return len;
}

/* Copies a token (no blanks, no control characters) into out[n]; length or -1. */
static int
put_key(const char *k, size_t len, char *out, size_t n)
{
	if (len == 0 || len >= n || len > GATE_MAX_KEY_BYTES)
		return -1;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)k[i] <= ' ' || k[i] == 0x7f)
			return -1;
	memcpy(out, k, len);
	out[len] = '\0';
	return (int)len;
}

static int
key_from_basic(const char *cred, char *out, size_t n)
{
	unsigned char dec[2 * GATE_MAX_KEY_BYTES];
	const unsigned char *colon;
	size_t               len = trim_len(cred);
	int                  dlen, r = -1;

	if (len == 0 || len > (sizeof(dec) / 3) * 4)
		return -1;
	if ((dlen = b64_decode(cred, len, dec, sizeof(dec))) <= 0)
		goto out;
	if ((colon = memchr(dec, ':', (size_t)dlen)) == NULL)
		goto out;
	r = put_key((const char *)colon + 1, (size_t)(dec + dlen - colon - 1), out, n);
out:
	OPENSSL_cleanse(dec, sizeof(dec));
	return r;
}

int
gate_presented_key(const char *authorization, const char *x_api_key, char *out, size_t n)
{
	const char *a, *t;
	int         r = -1;

	if (out == NULL || n == 0)
		return -1;
	out[0] = '\0';
	if (authorization != NULL) {
		a = skip_ws(authorization);
		if (strncasecmp(a, "Bearer", 6) == 0 && (a[6] == ' ' || a[6] == '\t')) {
			t = skip_ws(a + 6);
			r = put_key(t, trim_len(t), out, n);
		} else if (strncasecmp(a, "Basic", 5) == 0 && (a[5] == ' ' || a[5] == '\t')) {
			r = key_from_basic(skip_ws(a + 5), out, n);
		}
		if (r >= 0)
			return r;
	}
	if (x_api_key != NULL) {
		t = skip_ws(x_api_key);
		r = put_key(t, trim_len(t), out, n);
	}
	if (r < 0)
		OPENSSL_cleanse(out, n);
	return r;
}

/* ---- CORS ---------------------------------------------------------------------------------- */

bool
gate_origin_allowed(const struct cfg *c, const char *origin)
{
	if (c == NULL || origin == NULL || c->cors.origins == NULL)
		return false;
	for (char **o = c->cors.origins; *o != NULL; o++)
		if (strcmp(*o, "*") == 0 || strcasecmp(*o, origin) == 0)
			return true;
	return false;
}

/* An IP literal (v4, or [v6]) or localhost, with an optional :port. */
static bool
host_is_literal(const char *host)
{
	char        h[GATE_MAX_HOST_BYTES];
	const char *colon;
	size_t      n;
	unsigned char a[16];

	if (host[0] == '[') {
		const char *close = strchr(host, ']');

		n = close ? (size_t)(close - host - 1) : 0;
		if (n == 0 || n >= sizeof(h) || (close[1] != '\0' && close[1] != ':'))
			return false;
		memcpy(h, host + 1, n);
		h[n] = '\0';
		return inet_pton(AF_INET6, h, a) == 1;
	}
	colon = strchr(host, ':');
	n = colon ? (size_t)(colon - host) : strlen(host);
	if (n == 0 || n >= sizeof(h))
		return false;
	memcpy(h, host, n);
	h[n] = '\0';
	return strcasecmp(h, "localhost") == 0 || inet_pton(AF_INET, h, a) == 1;
}

bool
gate_same_origin(const char *origin, const char *host, bool tls, bool keys_required)
{
	const char *scheme = tls ? "https://" : "http://";
	size_t      sl = strlen(scheme);

	if (origin == NULL || host == NULL || host[0] == '\0' || strlen(host) >= GATE_MAX_HOST_BYTES)
		return false;
	if (strncasecmp(origin, scheme, sl) != 0 || strcasecmp(origin + sl, host) != 0)
		return false;
	for (const char *p = host; *p; p++) /* a Host is a name, an address and a port: no more */
		if (!isalnum((unsigned char)*p) && strchr(".-:[]", *p) == NULL)
			return false;
	return keys_required || host_is_literal(host);
}

static bool
origin_wildcard(const struct cfg *c)
{
	return strv_contains(c->cors.origins, "*");
}

static void
emit_list(gate_header_cb *cb, void *arg, const char *name, char *const *v)
{
	struct buf b = { 0 };

	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		buf_printf(&b, "%s%s", i ? ", " : "", v[i]);
	if (b.len > 0)
		cb(arg, name, b.data);
	buf_free(&b);
}

bool
gate_cors_headers(const struct cfg *c, const char *origin, bool preflight,
    gate_header_cb *cb, void *arg)
{
	char age[24];

	if (!gate_origin_allowed(c, origin))
		return false;
	/* "*" with credentials is refused at load, so echoing the origin is never needed for "*". */
	if (origin_wildcard(c) && !c->cors.allow_credentials)
		cb(arg, "Access-Control-Allow-Origin", "*");
	else
		cb(arg, "Access-Control-Allow-Origin", origin);
	cb(arg, "Vary", "Origin");
	if (c->cors.allow_credentials)
		cb(arg, "Access-Control-Allow-Credentials", "true");
	if (!preflight)
		return true;
	emit_list(cb, arg, "Access-Control-Allow-Methods", c->cors.methods);
	emit_list(cb, arg, "Access-Control-Allow-Headers", c->cors.headers);
	snprintf(age, sizeof(age), "%d", c->cors.max_age_s);
	cb(arg, "Access-Control-Max-Age", age);
	return true;
}

/* ---- token buckets ------------------------------------------------------------------------- */

struct bucket {
	char           key[BUCKET_KEY_MAX];
	uint64_t       hash;
	double         tokens;
	uint64_t       last_ms;
	struct bucket *hnext;            /* hash chain */
	struct bucket *prev, *next;      /* LRU list, most recent first */
};

struct gate_rates {
	struct cfg_rate per_ip, per_key, global, auth;
	double          global_tokens;
	uint64_t        global_last_ms;
	bool            global_started;
	struct bucket  *pool;            /* table_size buckets */
	struct bucket  *free_list;       /* chained through hnext */
	struct bucket **slots;
	size_t          nslots;          /* a power of two >= 2 * table_size */
	size_t          size, cap;
	struct bucket  *head, *tail;
	uint64_t        seed[2];
};

/* SipHash-1-3-like keyed mix of a short string: clients choose their addresses, so the hash is
 * keyed with a random seed to keep chains short. */
static uint64_t
rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static void
sip_round(uint64_t v[4])
{
	v[0] += v[1]; v[1] = rotl(v[1], 13); v[1] ^= v[0]; v[0] = rotl(v[0], 32);
	v[2] += v[3]; v[3] = rotl(v[3], 16); v[3] ^= v[2];
	v[0] += v[3]; v[3] = rotl(v[3], 21); v[3] ^= v[0];
	v[2] += v[1]; v[1] = rotl(v[1], 17); v[1] ^= v[2]; v[2] = rotl(v[2], 32);
}

static uint64_t
key_hash(const struct gate_rates *r, const char *s, size_t len)
{
	uint64_t v[4] = { r->seed[0] ^ 0x736f6d6570736575ULL, r->seed[1] ^ 0x646f72616e646f6dULL,
	    r->seed[0] ^ 0x6c7967656e657261ULL, r->seed[1] ^ 0x7465646279746573ULL };
	uint64_t m;
	size_t   i = 0;

	for (; i + 8 <= len; i += 8) {
		memcpy(&m, s + i, 8);
		v[3] ^= m;
		sip_round(v);
		v[0] ^= m;
	}
	m = (uint64_t)len << 56;
	for (size_t j = 0; i + j < len; j++)
		m |= (uint64_t)(unsigned char)s[i + j] << (8 * j);
	v[3] ^= m;
	sip_round(v);
	v[0] ^= m;
	v[2] ^= 0xff;
	sip_round(v);
	sip_round(v);
	sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

struct gate_rates *
gate_rates_new(const struct cfg *c)
{
	struct gate_rates *r = xcalloc(1, sizeof(*r));
	size_t             cap = (size_t)MM_MAX(c->rate.table_size, 2);

	r->per_ip = c->rate.per_ip;
	r->per_key = c->rate.per_key;
	r->global = c->rate.global;
	r->auth = c->rate.auth_failures;
	r->cap = cap;
	for (r->nslots = 16; r->nslots < 2 * cap; r->nslots *= 2)
		;
	r->slots = xcalloc(r->nslots, sizeof(*r->slots));
	r->pool = xcalloc(cap, sizeof(*r->pool));
	for (size_t i = cap; i-- > 0;) {
		r->pool[i].hnext = r->free_list;
		r->free_list = &r->pool[i];
	}
	/* The kernel's generator: OpenSSL's would cost its whole set-up (MBs of resident pages)
	 * for 16 bytes. */
	if (getrandom(r->seed, sizeof(r->seed), 0) != (ssize_t)sizeof(r->seed))
		fatal("gate: no random bytes for the rate table");
	return r;
}

void
gate_rates_free(struct gate_rates *r)
{
	if (r == NULL)
		return;
	free(r->slots);
	free(r->pool);
	free(r);
}

size_t
gate_rates_size(const struct gate_rates *r)
{
	return r == NULL ? 0 : r->size;
}

static void
lru_unlink(struct gate_rates *r, struct bucket *b)
{
	if (b->prev != NULL)
		b->prev->next = b->next;
	else
		r->head = b->next;
	if (b->next != NULL)
		b->next->prev = b->prev;
	else
		r->tail = b->prev;
	b->prev = b->next = NULL;
}

static void
lru_push(struct gate_rates *r, struct bucket *b)
{
	b->prev = NULL;
	b->next = r->head;
	if (r->head != NULL)
		r->head->prev = b;
	r->head = b;
	if (r->tail == NULL)
		r->tail = b;
}

static void
table_remove(struct gate_rates *r, struct bucket *b)
{
	struct bucket **pp = &r->slots[b->hash & (r->nslots - 1)];

	while (*pp != b)
		pp = &(*pp)->hnext;
	*pp = b->hnext;
	lru_unlink(r, b);
	b->hnext = r->free_list;
	r->free_list = b;
	r->size--;
}

/* Finds the bucket named key (moving it to the front); with `create`, makes a full one, evicting
 * the least recently used when the table is full. NULL when absent and !create. */
static struct bucket *
table_get(struct gate_rates *r, const char *key, const struct cfg_rate *rate, uint64_t now_ms,
    bool create)
{
	size_t         len = strlen(key);
	uint64_t       h = key_hash(r, key, len);
	struct bucket *b;

	for (b = r->slots[h & (r->nslots - 1)]; b != NULL; b = b->hnext) {
		if (b->hash == h && strcmp(b->key, key) == 0) {
			lru_unlink(r, b);
			lru_push(r, b);
			return b;
		}
	}
	if (!create)
		return NULL;
	if (r->free_list == NULL)
		table_remove(r, r->tail);
	b = r->free_list;
	r->free_list = b->hnext;
	memset(b, 0, sizeof(*b));
	snprintf(b->key, sizeof(b->key), "%s", key);
	b->hash = h;
	b->tokens = rate->burst;
	b->last_ms = now_ms;
	b->hnext = r->slots[h & (r->nslots - 1)];
	r->slots[h & (r->nslots - 1)] = b;
	lru_push(r, b);
	r->size++;
	return b;
}

static void
refill(double *tokens, uint64_t *last_ms, const struct cfg_rate *rate, uint64_t now_ms)
{
	if (now_ms > *last_ms) {
		*tokens += (double)(now_ms - *last_ms) * rate->rate / 1000.0;
		if (*tokens > rate->burst)
			*tokens = rate->burst;
		*last_ms = now_ms;
	}
}

/* Seconds until `tokens` reaches 1 at `rate`, at least 1. */
static int
wait_s(double tokens, const struct cfg_rate *rate)
{
	double need = (1.0 - tokens) / rate->rate;
	int    s;

	if (!(need > 0.0))
		return 1;
	if (need >= 86400.0)
		return 86400;
	s = (int)need;
	if ((double)s < need)
		s++;
	return s < 1 ? 1 : s;
}

void
gate_ip_group(const char *ip, char *out, size_t n)
{
	unsigned char a[16];
	char          txt[INET6_ADDRSTRLEN];

	if (n == 0)
		return;
	if (ip != NULL && strchr(ip, ':') != NULL && inet_pton(AF_INET6, ip, a) == 1) {
		if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)a)) {
			/* ::ffff:a.b.c.d is the IPv4 client a.b.c.d (a dual-stack listener). */
			if (inet_ntop(AF_INET, a + 12, txt, sizeof(txt)) != NULL) {
				snprintf(out, n, "%s", txt);
				return;
			}
		} else {
			/* One host is handed a whole /64 and can take a new address from it for every
			 * request. */
			memset(a + 8, 0, 8);
			if (inet_ntop(AF_INET6, a, txt, sizeof(txt)) != NULL) {
				snprintf(out, n, "%s/64", txt);
				return;
			}
		}
	}
	snprintf(out, n, "%.*s", (int)GATE_MAX_IP_BYTES, ip ? ip : "");
}

/* A per-IP bucket's name: the client's group (gate_ip_group). */
static void
bucket_name(char *out, size_t n, const char *kind, const char *ip)
{
	char group[GATE_MAX_IP_BYTES];

	gate_ip_group(ip, group, sizeof(group));
	snprintf(out, n, "%s%s", kind, group);
}

int
gate_rate_take(struct gate_rates *r, const char *ip, const unsigned char *key_digest,
    uint64_t now_ms, int *retry_after_s)
{
	struct bucket *bip = NULL, *bkey = NULL;
	char           name[BUCKET_KEY_MAX];
	int            wait = 0;

	if (r->global.rate > 0) {
		if (!r->global_started) {
			r->global_tokens = r->global.burst;
			r->global_last_ms = now_ms;
			r->global_started = true;
		}
		refill(&r->global_tokens, &r->global_last_ms, &r->global, now_ms);
		if (r->global_tokens < 1.0)
			wait = MM_MAX(wait, wait_s(r->global_tokens, &r->global));
	}
	if (r->per_ip.rate > 0) {
		bucket_name(name, sizeof(name), "ip:", ip);
		bip = table_get(r, name, &r->per_ip, now_ms, true);
		refill(&bip->tokens, &bip->last_ms, &r->per_ip, now_ms);
		if (bip->tokens < 1.0)
			wait = MM_MAX(wait, wait_s(bip->tokens, &r->per_ip));
	}
	if (r->per_key.rate > 0 && key_digest != NULL) {
		static const char hex[] = "0123456789abcdef";
		size_t            o = (size_t)snprintf(name, sizeof(name), "key:");

		for (size_t i = 0; i < KEY_PREFIX_LEN; i++) {
			name[o++] = hex[key_digest[i] >> 4];
			name[o++] = hex[key_digest[i] & 15];
		}
		name[o] = '\0';
		bkey = table_get(r, name, &r->per_key, now_ms, true);
		refill(&bkey->tokens, &bkey->last_ms, &r->per_key, now_ms);
		if (bkey->tokens < 1.0)
			wait = MM_MAX(wait, wait_s(bkey->tokens, &r->per_key));
	}
	if (wait > 0) {
		if (retry_after_s != NULL)
			*retry_after_s = wait;
		return -1;
	}
	if (r->global.rate > 0)
		r->global_tokens -= 1.0;
	if (bip != NULL)
		bip->tokens -= 1.0;
	if (bkey != NULL)
		bkey->tokens -= 1.0;
	return 0;
}

int
gate_auth_failure(struct gate_rates *r, const char *ip, uint64_t now_ms, int *retry_after_s)
{
	struct bucket *b;
	char           name[BUCKET_KEY_MAX];

	if (r->auth.rate <= 0)
		return 0;
	bucket_name(name, sizeof(name), "authfail:", ip);
	b = table_get(r, name, &r->auth, now_ms, true);
	refill(&b->tokens, &b->last_ms, &r->auth, now_ms);
	if (b->tokens >= 1.0)
		b->tokens -= 1.0;
	if (b->tokens >= 1.0)
		return 0;
	if (retry_after_s != NULL)
		*retry_after_s = wait_s(b->tokens, &r->auth);
	return -1;
}

bool
gate_auth_blocked(struct gate_rates *r, const char *ip, uint64_t now_ms, int *retry_after_s)
{
	struct bucket *b;
	char           name[BUCKET_KEY_MAX];

	if (r->auth.rate <= 0)
		return false;
	bucket_name(name, sizeof(name), "authfail:", ip);
	if ((b = table_get(r, name, &r->auth, now_ms, false)) == NULL)
		return false;
	refill(&b->tokens, &b->last_ms, &r->auth, now_ms);
	if (b->tokens >= 1.0)
		return false;
	if (retry_after_s != NULL)
		*retry_after_s = wait_s(b->tokens, &r->auth);
	return true;
}

/* --- connections per address --- */

struct conn_count {
	struct conn_count *next;
	uint64_t           n;
	char               key[GATE_MAX_IP_BYTES + 16];
};

struct gate_conns {
	struct conn_count *b[GATE_CONN_BUCKETS];
};

struct gate_conns *
gate_conns_new(void)
{
	return xcalloc(1, sizeof(struct gate_conns));
}

void
gate_conns_free(struct gate_conns *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < GATE_CONN_BUCKETS; i++) {
		for (struct conn_count *c = t->b[i], *next; c != NULL; c = next) {
			next = c->next;
			free(c);
		}
	}
	free(t);
}

/* The chain slot of ip's count (found or where it would go); *key gets its name. */
static struct conn_count **
conn_slot(const struct gate_conns *t, const char *ip, char *key, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	bucket_name(key, n, "", ip);
	for (const char *p = key; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	struct conn_count **pp = (struct conn_count **)&t->b[h % GATE_CONN_BUCKETS];

	while (*pp != NULL && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->next;
	return pp;
}

bool
gate_tally_add(struct gate_conns *t, const char *ip, uint64_t n, uint64_t max)
{
	char                key[GATE_MAX_IP_BYTES + 16];
	struct conn_count **pp = conn_slot(t, ip, key, sizeof(key));

	if (*pp == NULL) {
		if (n > max)
			return false;
		*pp = xcalloc(1, sizeof(**pp));
		snprintf((*pp)->key, sizeof((*pp)->key), "%s", key);
	}
	if (n > max || (*pp)->n > max - n)
		return false;
	(*pp)->n += n;
	return true;
}

void
gate_tally_sub(struct gate_conns *t, const char *ip, uint64_t n)
{
	char                key[GATE_MAX_IP_BYTES + 16];
	struct conn_count **pp = conn_slot(t, ip, key, sizeof(key)), *c = *pp;

	if (c == NULL)
		return;
	c->n -= MM_MIN(c->n, n);
	if (c->n == 0) {
		*pp = c->next;
		free(c);
	}
}

uint64_t
gate_tally(const struct gate_conns *t, const char *ip)
{
	char                      key[GATE_MAX_IP_BYTES + 16];
	const struct conn_count *c = *conn_slot(t, ip, key, sizeof(key));

	return c ? c->n : 0;
}

bool
gate_conn_open(struct gate_conns *t, const char *ip, unsigned max)
{
	return gate_tally_add(t, ip, 1, max);
}

void
gate_conn_close(struct gate_conns *t, const char *ip)
{
	gate_tally_sub(t, ip, 1);
}

unsigned
gate_conn_count(const struct gate_conns *t, const char *ip)
{
	return (unsigned)gate_tally(t, ip);
}

void
gate_key_name(const unsigned char digest[GATE_DIGEST_LEN], char out[GATE_KEY_NAME_BYTES])
{
	static const char hex[] = "0123456789abcdef";

	memcpy(out, "key:", 4);
	for (size_t i = 0; i < 8; i++) {
		out[4 + 2 * i] = hex[digest[i] >> 4];
		out[5 + 2 * i] = hex[digest[i] & 15];
	}
	out[20] = '\0';
}

bool
gate_share_add(struct gate_conns *ips, struct gate_conns *keys, const char *ip, const char *key,
    uint64_t n, uint64_t max)
{
	bool keyed = keys != NULL && key != NULL && *key != '\0';

	if (!gate_tally_add(ips, ip, n, max))
		return false;
	if (keyed && !gate_tally_add(keys, key, n, max)) {
		gate_tally_sub(ips, ip, n);
		return false;
	}
	return true;
}

void
gate_share_sub(struct gate_conns *ips, struct gate_conns *keys, const char *ip, const char *key,
    uint64_t n)
{
	gate_tally_sub(ips, ip, n);
	if (keys != NULL && key != NULL && *key != '\0')
		gate_tally_sub(keys, key, n);
}

/* ---- the verdict ------------------------------------------------------------------------ */

static enum gate_outcome
refuse(struct gate_verdict *v, int status, const char *code, const char *reason,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static enum gate_outcome
refuse(struct gate_verdict *v, int status, const char *code, const char *reason,
    const char *fmt, ...)
{
	va_list ap;

	v->status = status;
	v->code = code;
	v->reasons[0] = reason;
	va_start(ap, fmt);
	vsnprintf(v->msg, sizeof(v->msg), fmt, ap);
	va_end(ap);
	return GATE_REFUSE;
}

/* The key step: a right key always passes (a shared address full of guessers must not lock
 * out the people who have one); wrong ones meet the address's failure bucket. */
static enum gate_outcome
judge_key(const struct cfg *c, struct gate_rates *rates, const struct gate_ask *a,
    uint64_t now_ms, struct gate_verdict *v)
{
	char            key[GATE_MAX_KEY_BYTES + 1];
	int             len;
	enum gate_scope have;

	len = gate_presented_key(a->authorization, a->x_api_key, key, sizeof(key));
	have = len < 0 ? GATE_DENIED : gate_check_key(c, key, (size_t)len, v->digest);
	OPENSSL_cleanse(key, sizeof(key));
	if (have == GATE_DENIED) {
		if (gate_auth_blocked(rates, a->ip, now_ms, &v->retry_after_s) ||
		    gate_auth_failure(rates, a->ip, now_ms, &v->retry_after_s) == -1) {
			refuse(v, 429, "rate_limited", "rate",
			    "too many failed authentication attempts; retry in %d s", v->retry_after_s);
			v->reasons[1] = "auth"; /* a wrong key all the same */
			return GATE_REFUSE;
		}
		v->challenge = true;
		return refuse(v, 401, "invalid_api_key", "auth", "%s",
		    len < 0 ? "an API key is required" : "invalid API key");
	}
	if (a->need == GATE_ADMIN && have != GATE_ADMIN)
		return refuse(v, 403, "admin_key_required", "auth", "%s needs an admin API key",
		    a->path);
	v->keyed = true;
	return GATE_PASS;
}

enum gate_outcome
gate_judge(const struct cfg *c, struct gate_rates *rates, const struct gate_ask *a,
    uint64_t now_ms, struct gate_verdict *v)
{
	enum gate_outcome o;

	memset(v, 0, sizeof(*v));
	if (a->origin != NULL) {
		if (!gate_origin_allowed(c, a->origin)) {
			char q[GATE_MSG_MAX - 32];

			return refuse(v, 403, "origin_not_allowed", "cors", "origin %s is not allowed",
			    log_q(q, sizeof(q), a->origin));
		}
		if (strcmp(a->method, "OPTIONS") == 0 && a->preflight != NULL)
			return GATE_PREFLIGHT;
		v->cors = true;
	}
	if (a->need == GATE_DENIED)
		return GATE_PASS; /* an open route: no key, no rate */
	if (gate_keys_required(c) && (o = judge_key(c, rates, a, now_ms, v)) != GATE_PASS)
		return o;
	if (gate_rate_take(rates, a->ip, v->keyed ? v->digest : NULL, now_ms,
	    &v->retry_after_s) == -1)
		return refuse(v, 429, "rate_limited", "rate", "rate limit reached; retry in %d s",
		    v->retry_after_s);
	return GATE_PASS;
}

bool
gate_trusted_proxy(const struct cfg *c, const char *ip)
{
	for (size_t i = 0; i < c->ntrusted_proxies; i++)
		if (cidr_match(&c->trusted_proxies[i], ip))
			return true;
	return false;
}

void
gate_forwarded_client(const struct cfg *c, char *chain, size_t len, char *ip, size_t n)
{
	char *start = chain, *end;

	for (end = start + len; end > start;) {
		char       *comma = memrchr(start, ',', (size_t)(end - start));
		char       *p = comma ? comma + 1 : start;
		struct cidr one;

		*end = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		for (char *e = end; e > p && (e[-1] == ' ' || e[-1] == '\t');)
			*--e = '\0';
		if (strlen(p) >= n || cidr_parse(p, &one) == -1 || strchr(p, '/'))
			break;
		snprintf(ip, n, "%s", p);
		if (!gate_trusted_proxy(c, p))
			break;
		end = comma ? comma : start;
	}
}
