/* config_peers: the `peers` section (include/modelmux/config_peers.h). */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "modelmux/config_peers.h"
#include "modelmux/util.h"
#include "config_int.h"

#define PEER_MAX_URL_BYTES   2048
#define PEER_MAX_KEY_BYTES   4096
#define PEER_MAX_PATH_BYTES  1024

/* One peer as decoded, before its models join the config. */
struct peer_ld {
	struct cfg_model tmpl; /* filters, timeouts, concurrency for every model of the peer */
	const struct node *key;
};

/* Printable ASCII, no space: what may go into a URL or a header value as it is. */
static bool
plain_text(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static void
peer_proxy(struct ld *ld, const struct node *v, const char *path, struct cfg_peer *p)
{
	char  *s = NULL;
	size_t len;

	if (cfg__get_str(ld, v, path, &s) == -1)
		return;
	if (s == NULL || (!str_has_prefix_ci(s, "http://") && !str_has_prefix_ci(s, "https://")) ||
	    !plain_text(s) || strlen(s) > PEER_MAX_URL_BYTES) {
		cfg__ld_err(ld, v, path, "expected an http:// or https:// URL (at most %d bytes, no "
		    "spaces)", PEER_MAX_URL_BYTES);
		free(s);
		return;
	}
	for (len = strlen(s); len > 0 && s[len - 1] == '/'; len--)
		s[len - 1] = '\0';
	free(p->proxy);
	p->proxy = s;
}

static void
peer_key(struct ld *ld, const struct node *v, const char *path, struct cfg_peer *p)
{
	char *s = NULL;

	if (cfg__get_str(ld, v, path, &s) == -1)
		return;
	if (s != NULL && (*s == '\0' || !plain_text(s) || strlen(s) > PEER_MAX_KEY_BYTES)) {
		cfg__ld_err(ld, v, path, "expected a key of printable characters without spaces (at "
		    "most %d bytes)", PEER_MAX_KEY_BYTES);
		OPENSSL_cleanse(s, strlen(s));
		free(s);
		return;
	}
	p->api_key = s;
}

static void
peer_check(struct ld *ld, const struct node *v, const char *path, struct cfg_peer *p)
{
	char *s = NULL;

	if (cfg__get_str(ld, v, path, &s) == -1)
		return;
	free(p->check_endpoint);
	p->check_endpoint = NULL;
	if (s != NULL && strcmp(s, "none") == 0) {
		free(s);
		return;
	}
	if (s == NULL || s[0] != '/' || !plain_text(s) || strlen(s) > PEER_MAX_PATH_BYTES) {
		cfg__ld_err(ld, v, path, "expected a path starting with / (at most %d bytes) or none",
		    PEER_MAX_PATH_BYTES);
		free(s);
		return;
	}
	p->check_endpoint = s;
}

static void
peer_models(struct ld *ld, const struct node *v, const char *path, struct cfg_peer *p)
{
	size_t n = 0, len;
	char  *ip;

	if (!cfg__is_seq(v) || cfg__seq_len(v) == 0) {
		cfg__ld_err(ld, v, path, "expected a list of at least one model id");
		return;
	}
	len = cfg__seq_len(v);
	if (len > CFG_MAX_PEER_MODELS) {
		cfg__ld_err(ld, v, path, "more than %d models", CFG_MAX_PEER_MODELS);
		return;
	}
	p->models = xcalloc(len + 1, sizeof(char *));
	for (size_t i = 0; i < len; i++) {
		const struct node *it = cfg__item(v, i);
		const char        *s = cfg__str(it), *why;

		ip = cfg__path_index(path, i);
		why = s == NULL || cfg__node_is_null(it) ? "expected a model id" : cfg__check_id(s);
		if (why == NULL && strlen(p->name) + 1 + strlen(s) > CFG_MAX_ID_BYTES)
			why = "with the peer's name, longer than 256 bytes";
		if (why != NULL)
			cfg__ld_err(ld, it, ip, "%s", why);
		else if (!strv_contains(p->models, s)) /* a repeat is harmless (llama-swap) */
			p->models[n++] = xstrdup(s);
		free(ip);
	}
}

/* Decodes peers.<name> into p and its template model. */
static void
peer_decode(struct ld *ld, struct node *v, const char *path, struct cfg_peer *p, struct peer_ld *pl)
{
	char *kp;

	if (!cfg__is_map(v)) {
		cfg__ld_err(ld, v, path, "expected a map");
		return;
	}
	for (size_t i = 0; i < cfg__map_len(v); i++) {
		const char  *k = cfg__str(cfg__map_key(v, i));
		struct node *val = cfg__map_val(v, i);

		kp = cfg__path_join(path, k);
		if (strcmp(k, "proxy") == 0)
			peer_proxy(ld, val, kp, p);
		else if (strcmp(k, "apiKey") == 0)
			peer_key(ld, val, kp, p);
		else if (strcmp(k, "models") == 0)
			peer_models(ld, val, kp, p);
		else if (strcmp(k, "filters") == 0)
			cfg__model_filters(ld, val, kp, &pl->tmpl);
		else if (strcmp(k, "timeouts") == 0)
			cfg__model_timeouts(ld, val, kp, &pl->tmpl);
		else if (strcmp(k, "checkEndpoint") == 0)
			peer_check(ld, val, kp, p);
		else if (strcmp(k, "checkInterval") == 0)
			cfg__get_int(ld, val, kp, 1, CFG_PEER_MAX_CHECK_INTERVAL_S, &p->check_interval_s);
		else if (strcmp(k, "checkTimeout") == 0)
			cfg__get_int(ld, val, kp, 1, CFG_PEER_MAX_CHECK_TIMEOUT_S, &p->check_timeout_s);
		else if (strcmp(k, "concurrencyLimit") == 0)
			cfg__get_int(ld, val, kp, 1, CFG_PEER_MAX_CONCURRENCY, &pl->tmpl.concurrency_limit);
		else if (strcmp(k, "tailcatKey") == 0)
			cfg__warn(ld, cfg__map_key(v, i), kp, "not supported by modelmux, ignored");
		else
			cfg__ld_err(ld, cfg__map_key(v, i), kp, "unknown key");
		free(kp);
	}
	/* Every timeout is bounded: a peer is reached over a network. */
	{
		int *t[] = { &pl->tmpl.timeouts.connect_s, &pl->tmpl.timeouts.keepalive_s,
		    &pl->tmpl.timeouts.response_header_s, &pl->tmpl.timeouts.tls_handshake_s,
		    &pl->tmpl.timeouts.expect_continue_s, &pl->tmpl.timeouts.idle_conn_s };

		for (size_t i = 0; i < MM_ARRAY_LEN(t); i++)
			if (*t[i] > CFG_PEER_MAX_TIMEOUT_S) {
				kp = cfg__path_join(path, "timeouts");
				cfg__ld_err(ld, v, kp, "a timeout is over %d s", CFG_PEER_MAX_TIMEOUT_S);
				free(kp);
				break;
			}
	}
	for (size_t i = 0; i < 2; i++) {
		const char *k = i == 0 ? "proxy" : "models";

		if (cfg__map_get(v, k) != NULL)
			continue;
		kp = cfg__path_join(path, k);
		cfg__ld_err(ld, v, kp, "missing required key");
		free(kp);
	}
	if (p->check_timeout_s == 0) /* not set */
		p->check_timeout_s = MM_MIN(CFG_PEER_DEF_CHECK_TIMEOUT_S, p->check_interval_s);
	else if (p->check_timeout_s > p->check_interval_s) {
		kp = cfg__path_join(path, "checkTimeout");
		cfg__ld_err(ld, v, kp, "longer than checkInterval (%d s)", p->check_interval_s);
		free(kp);
	}
}

static void
tmpl_free(struct cfg_model *m)
{
	free(m->id);
	strv_free(m->aliases);
	strv_free(m->env);
	free(m->check_endpoint);
	strv_free(m->strip_params);
	cJSON_Delete(m->set_params);
}

static int
model_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cfg_model *)a)->id, ((const struct cfg_model *)b)->id);
}

/* How many peers offer `model` (by their own id). */
static size_t
offered(const struct cfg *c, const char *model)
{
	size_t n = 0;

	for (size_t i = 0; i < c->npeers; i++)
		n += c->peers[i].models != NULL && strv_contains(c->peers[i].models, model);
	return n;
}

/* The group every peer model is in: swaps nothing out, never swapped out. Appended to the
 * config's groups; the models' pointers follow the move. Returns its index. */
static size_t
peer_group(struct cfg *c, size_t members)
{
	size_t *at = xcalloc(c->nmodels + 1, sizeof(*at));

	for (size_t i = 0; i < c->nmodels; i++)
		at[i] = (size_t)(c->models[i].group - c->groups);
	c->groups = xreallocarray(c->groups, c->ngroups + 1, sizeof(*c->groups));
	for (size_t i = 0; i < c->nmodels; i++)
		c->models[i].group = &c->groups[at[i]];
	free(at);
	c->groups[c->ngroups] = (struct cfg_group){ xstrdup(CFG_PEER_GROUP), false, false, true,
	    xcalloc(members + 1, sizeof(char *)) };
	return c->ngroups++;
}

/* A model (by id or alias) among the config's first n, or NULL. Linear: the array is being
 * filled and is not sorted yet (at most CFG_MAX_MODELS entries). */
static const struct cfg_model *
find_name(const struct cfg *c, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(c->models[i].id, name) == 0 || strv_contains(c->models[i].aliases, name))
			return &c->models[i];
	return NULL;
}

/* Makes peers.<p>.models[j] a model of the config at c->models[*n]. */
static void
peer_model(struct ld *ld, struct cfg *c, const struct cfg_peer *p, const struct peer_ld *pl,
    size_t j, size_t *n, size_t gi)
{
	const char       *own = p->models[j];
	char             *id = xasprintf("%s/%s", p->name, own), *path;

	struct cfg_model *m;
	size_t            k = strv_len(c->groups[gi].members);

	if (find_name(c, *n, id) != NULL) {
		char *pp = xasprintf("peers.%s.models", p->name);

		path = cfg__path_index(pp, j);
		free(pp);
		cfg__ld_err(ld, pl->key, path, "peer model \"%s\" is already the name of a model, an "
		    "alias or another peer's model", id);
		free(path);
		free(id);
		return;
	}
	m = &c->models[(*n)++];
	c->nmodels = *n;
	cfg__model_defaults(m, pl->key);
	free(m->id);
	m->id = id;
	free(m->check_endpoint);
	m->check_endpoint = NULL;
	m->peer = p;
	m->proxy = xstrdup(p->proxy);
	m->use_model_name = xstrdup(own);
	m->upstream_api_key = p->api_key ? xstrdup(p->api_key) : NULL;
	m->strip_params = pl->tmpl.strip_params ? strv_dup(pl->tmpl.strip_params) : NULL;
	m->set_params = pl->tmpl.set_params ? cJSON_Duplicate(pl->tmpl.set_params, true) : NULL;
	m->timeouts = pl->tmpl.timeouts;
	m->concurrency_limit = pl->tmpl.concurrency_limit;
	m->ttl_s = 0; /* nothing to unload: a peer's model stays ours while the peer answers */
	m->group = &c->groups[gi];
	c->groups[gi].members[k] = xstrdup(id);
	/* The bare name, when nothing of ours and no other peer has it (llama-swap). */
	if (offered(c, own) == 1 && find_name(c, *n, own) == NULL) {
		strv_free(m->aliases);
		m->aliases = xcalloc(2, sizeof(char *));
		m->aliases[0] = xstrdup(own);
	}
}

void
cfg__peers_load(struct ld *ld, struct node *root)
{
	struct cfg     *c = cfg__cfg(ld);
	struct node    *pm = cfg__map_get(root, "peers");
	struct peer_ld *pl;
	size_t          n, total = 0, nm, gi;
	char           *path;

	if (pm == NULL || cfg__node_is_null(pm))
		return;
	if (!cfg__is_map(pm)) {
		cfg__ld_err(ld, pm, "peers", "expected a map");
		return;
	}
	if ((n = cfg__map_len(pm)) > CFG_MAX_PEERS) {
		cfg__ld_err(ld, pm, "peers", "more than %d peers", CFG_MAX_PEERS);
		return;
	}
	if (cfg__map_get(root, "groups") != NULL && cfg__is_map(cfg__map_get(root, "groups"))) {
		const struct node *gm = cfg__map_get(root, "groups");

		for (size_t i = 0; i < cfg__map_len(gm); i++)
			if (strcmp(cfg__str(cfg__map_key(gm, i)), CFG_PEER_GROUP) == 0)
				cfg__ld_err(ld, cfg__map_key(gm, i), "groups." CFG_PEER_GROUP,
				    "this group name is the peers' own");
	}
	c->peers = xcalloc(n, sizeof(*c->peers));
	pl = xcalloc(n, sizeof(*pl));
	for (size_t i = 0; i < n; i++) {
		const struct node *key = cfg__map_key(pm, i);
		struct cfg_peer   *p = &c->peers[i];
		const char        *why;

		p->name = xstrdup(cfg__str(key));
		p->file = NULL;
		p->check_endpoint = xstrdup(CFG_PEER_DEF_CHECK_ENDPOINT);
		p->check_interval_s = CFG_PEER_DEF_CHECK_INTERVAL_S;
		pl[i].key = key;
		cfg__model_defaults(&pl[i].tmpl, key);
		pl[i].tmpl.timeouts.response_header_s = CFG_PEER_DEF_RESPONSE_HEADER_S;
		pl[i].tmpl.concurrency_limit = CFG_PEER_DEF_CONCURRENCY;
		p->file = pl[i].tmpl.file;
		p->line = pl[i].tmpl.line;
		p->col = pl[i].tmpl.col;
		path = cfg__path_join("peers", p->name);
		if ((why = cfg__check_id(p->name)) != NULL)
			cfg__ld_err(ld, key, path, "invalid peer name: %s", why);
		peer_decode(ld, cfg__map_val(pm, i), path, p, &pl[i]);
		free(path);
		total += strv_len(p->models);
	}
	c->npeers = n;
	if (c->nmodels + total > CFG_MAX_MODELS) {
		cfg__ld_err(ld, pm, "peers", "more than %d models with the peers'", CFG_MAX_MODELS);
		goto out;
	}
	if (total == 0) /* every peer's models were refused (reported) */
		goto out;
	/* The models keep pointers to their peer: the array is final from here on. */
	gi = peer_group(c, total);
	c->models = xreallocarray(c->models, c->nmodels + total, sizeof(*c->models));
	memset(c->models + c->nmodels, 0, total * sizeof(*c->models));
	nm = c->nmodels;
	for (size_t i = 0; i < n; i++) {
		if (c->peers[i].proxy == NULL) /* reported; the load fails */
			continue;
		for (size_t j = 0; c->peers[i].models && c->peers[i].models[j]; j++)
			peer_model(ld, c, &c->peers[i], &pl[i], j, &nm, gi);
	}
	qsort(c->models, c->nmodels, sizeof(*c->models), model_cmp);
out:
	for (size_t i = 0; i < n; i++)
		tmpl_free(&pl[i].tmpl);
	free(pl);
}

void
cfg__peers_free(struct cfg *c)
{
	for (size_t i = 0; i < c->npeers; i++) {
		struct cfg_peer *p = &c->peers[i];

		free(p->name);
		free(p->proxy);
		if (p->api_key != NULL)
			OPENSSL_cleanse(p->api_key, strlen(p->api_key));
		free(p->api_key);
		strv_free(p->models);
		free(p->check_endpoint);
	}
	free(c->peers);
}

const struct cfg_peer *
cfg_find_peer(const struct cfg *c, const char *name)
{
	for (size_t i = 0; i < c->npeers; i++)
		if (strcmp(c->peers[i].name, name) == 0)
			return &c->peers[i];
	return NULL;
}
