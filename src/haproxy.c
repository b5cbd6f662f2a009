/* haproxy: the HAProxy configuration generator (haproxy.h). */
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>

#include "modelmux/config.h"
#include "modelmux/haproxy.h"
#include "modelmux/util.h"

struct hp_server {
	const char *name, *addr;
};

/* One model, by id, with every name a request may use for it. */
struct hp_model {
	char  *id;
	char **names;
};

struct hp {
	struct hp_server servers[HAPROXY_MAX_SERVERS];
	size_t           nservers;
	struct hp_model *models;
	size_t           nmodels;
	const char      *bind, *key_env, *out;
	long long        inter_ms;
	bool             keys; /* some config has apiKeys: checks must send one */
};

static void
usage(FILE *f)
{
	fputs("usage: modelmux --haproxy-config --server NAME=HOST:PORT [--server ...]\n"
	      "         [-c FILE]... [--config-dir DIR]... [--bind ADDR] [--check-interval MS]\n"
	      "         [--check-key-env VAR] [-o FILE]\n"
	      "\n"
	      "Writes an HAProxy configuration that sends each request to a modelmux host where\n"
	      "its model is loaded, else to any host that serves it. The model ids are those of\n"
	      "every config given (each host's, when hosts serve different models), or without\n"
	      "-c/--config-dir those the running hosts list at /v1/models (unlisted ones aside).\n"
	      "  --server NAME=HOST:PORT  a modelmux host (up to 64)\n"
	      "  --bind ADDR              HAProxy's listen address (default :8080)\n"
	      "  --check-interval MS      health check period (default 1000)\n"
	      "  --check-key-env VAR      checks send \"Authorization: Bearer $VAR\" (HAProxy reads\n"
	      "                           VAR from its environment); needed when apiKeys is set\n"
	      "  -o FILE                  write there instead of stdout\n", f);
}

/* What may stand in an HAProxy config line unquoted and in a URL path as it is. */
static bool
safe_word(const char *s, const char *extra)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr(extra, *s) == NULL)
			return false;
	return true;
}

static bool
safe_name(const char *s)
{
	return safe_word(s, "._:/@+-") && s[0] != '/' && strstr(s, "..") == NULL;
}

static int
add_server(struct hp *h, char *arg)
{
	char *eq = strchr(arg, '=');

	if (eq == NULL || h->nservers == HAPROXY_MAX_SERVERS) {
		fprintf(stderr, "modelmux: --server %s: expected NAME=HOST:PORT (at most %d)\n", arg,
		    HAPROXY_MAX_SERVERS);
		return -1;
	}
	*eq = '\0';
	if (!safe_word(arg, "_.-") || !safe_word(eq + 1, ".:[]-") || strchr(eq + 1, ':') == NULL) {
		fprintf(stderr, "modelmux: --server %s=%s: expected NAME=HOST:PORT\n", arg, eq + 1);
		return -1;
	}
	for (size_t i = 0; i < h->nservers; i++)
		if (strcmp(h->servers[i].name, arg) == 0) {
			fprintf(stderr, "modelmux: --server %s: named twice\n", arg);
			return -1;
		}
	h->servers[h->nservers++] = (struct hp_server){ arg, eq + 1 };
	return 0;
}

static struct hp_model *
model_get(struct hp *h, const char *id)
{
	for (size_t i = 0; i < h->nmodels; i++)
		if (strcmp(h->models[i].id, id) == 0)
			return &h->models[i];
	h->models = xreallocarray(h->models, h->nmodels + 1, sizeof(*h->models));
	h->models[h->nmodels] = (struct hp_model){ xstrdup(id), xcalloc(1, sizeof(char *)) };
	return &h->models[h->nmodels++];
}

static void
name_add(struct hp_model *m, const char *name)
{
	size_t n = strv_len(m->names);

	if (strv_contains(m->names, name))
		return;
	m->names = xreallocarray(m->names, n + 2, sizeof(char *));
	m->names[n] = xstrdup(name);
	m->names[n + 1] = NULL;
}

/* Adds the models of one config (file or dir). */
static int
add_config(struct hp *h, const char *file, const char *dir)
{
	struct cfg_errs errs = { 0 };
	struct cfg     *c = cfg_load_set(file, dir, &errs);

	if (c == NULL) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		fprintf(stderr, "modelmux: %s: configuration has errors\n", file ? file : dir);
		cfg_errs_free(&errs);
		return -1;
	}
	h->keys |= c->nkeys > 0;
	for (size_t i = 0; i < c->nmodels; i++) {
		const struct cfg_model *cm = &c->models[i];
		struct hp_model        *m;

		if (!safe_name(cm->id)) {
			fprintf(stderr, "modelmux: model %s: its id has characters HAProxy rules are not "
			    "written with here; its requests go to any host\n", cm->id);
			continue;
		}
		m = model_get(h, cm->id);
		name_add(m, cm->id);
		for (char **a = cm->aliases; a && *a; a++)
			if (safe_name(*a))
				name_add(m, *a);
	}
	cfg_unref(c);
	return 0;
}

/* The answer of one host, bounded. */
struct fetched {
	struct buf b;
	bool       over;
};

static size_t
on_data(char *p, size_t size, size_t n, void *arg)
{
	struct fetched *f = arg;

	if (buf_append(&f->b, p, size * n, HAPROXY_MAX_LIST_BYTES) == -1) {
		f->over = true;
		return 0;
	}
	return size * n;
}

/* Adds the models a running host lists at /v1/models (ids and aliases). */
static int
add_server_models(struct hp *h, const struct hp_server *s)
{
	char              *url = xasprintf("http://%s/v1/models", s->addr), *auth = NULL, err[CURL_ERROR_SIZE] = "";
	const char        *key = h->key_env ? getenv(h->key_env) : NULL;
	struct curl_slist *hdrs = NULL;
	struct fetched     f = { 0 };
	CURL              *c = curl_easy_init();
	cJSON             *doc = NULL, *it;
	long               status = 0;
	int                rc = -1;

	if (c == NULL)
		goto out;
	if (key != NULL) {
		auth = xasprintf("Authorization: Bearer %s", key);
		hdrs = curl_slist_append(NULL, auth);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)HAPROXY_FETCH_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	if (curl_easy_perform(c) != CURLE_OK) {
		fprintf(stderr, "modelmux: %s: %s\n", url, f.over ? "answer too large" : err);
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (buf_append(&f.b, "", 1, HAPROXY_MAX_LIST_BYTES + 1) == -1)
		goto out;
	if (status != 200 || (doc = cJSON_Parse(f.b.data)) == NULL ||
	    !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(doc, "data"))) {
		fprintf(stderr, "modelmux: %s: status %ld, not a model list%s\n", url, status,
		    status == 401 || status == 403 ? " (--check-key-env names the key)" : "");
		goto out;
	}
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(doc, "data")) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id"), *a;
		struct hp_model *m;

		if (!cJSON_IsString(id) || !safe_name(id->valuestring))
			continue;
		m = model_get(h, id->valuestring);
		name_add(m, id->valuestring);
		cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(it, "aliases"))
			if (cJSON_IsString(a) && safe_name(a->valuestring))
				name_add(m, a->valuestring);
	}
	rc = 0;
out:
	cJSON_Delete(doc);
	curl_slist_free_all(hdrs);
	if (auth != NULL)
		OPENSSL_cleanse(auth, strlen(auth));
	free(auth);
	curl_easy_cleanup(c);
	buf_free(&f.b);
	free(url);
	return rc;
}

static void
write_check(FILE *f, const struct hp *h, const char *uri)
{
	fprintf(f, "    option httpchk\n    http-check send meth GET uri %s ver HTTP/1.1 hdr Host "
	    "modelmux%s%s%s\n", uri, h->key_env ? " hdr Authorization \"Bearer ${" : "",
	    h->key_env ? h->key_env : "", h->key_env ? "}\"" : "");
}

static void
write_head(FILE *f, const struct hp *h)
{
	fprintf(f, "# Generated by modelmux --haproxy-config: %zu hosts, %zu models.\n"
	    "# Each request goes to a host where its model is loaded (GET /health/model/<id>\n"
	    "# answers 200), else to any host serving it (200 or 202), else to any ready host.\n"
	    "global\n"
	    "    tune.bufsize %d\n"
	    "\n"
	    "defaults\n"
	    "    mode http\n"
	    "    timeout connect 2s\n"
	    "    timeout client 10m\n"
	    "    timeout server 10m\n"
	    "    timeout http-request 30s\n"
	    "    timeout check 2s\n"
	    "    # The client's address, for the hosts' rate limits and logs: list this HAProxy\n"
	    "    # in each host's trustedProxies.\n"
	    "    option forwardfor\n"
	    "    # A request a host never began (refused, reset before any answer) goes to another.\n"
	    "    retries 3\n"
	    "    option redispatch 1\n"
	    "    retry-on conn-failure empty-response\n"
	    "\n"
	    "frontend modelmux\n"
	    "    bind %s\n"
	    "    option http-buffer-request\n"
	    "    http-request set-var(txn.model) req.body,json_query('$.model') if METH_POST "
	    "{ req.hdr(content-type) -m sub json }\n"
	    "    http-request set-var(txn.model) url_param(model) if !{ var(txn.model) -m found } "
	    "{ url_param(model) -m found }\n"
	    "    http-request set-var(txn.model) path,field(3,/) if !{ var(txn.model) -m found } "
	    "{ path_beg /upstream/ }\n", h->nservers, h->nmodels, HAPROXY_BUFSIZE, h->bind);
	for (size_t i = 0; i < h->nmodels; i++) {
		fprintf(f, "    acl m%zu var(txn.model) -m str", i);
		for (char **n = h->models[i].names; *n; n++)
			fprintf(f, " %s", *n);
		fprintf(f, "\n    use_backend mm_m%zu if m%zu\n", i, i);
	}
	fputs("    default_backend mm_any\n\n", f);
}

static void
write_backends(FILE *f, const struct hp *h)
{
	fputs("# No model in the request: any ready host.\nbackend mm_any\n    balance leastconn\n", f);
	write_check(f, h, "/health/ready");
	fputs("    http-check expect status 200\n", f);
	for (size_t s = 0; s < h->nservers; s++)
		fprintf(f, "    server %s %s check inter %lld fall 2 rise 1 observe layer4 "
		    "error-limit 1 on-error mark-down\n", h->servers[s].name, h->servers[s].addr,
		    h->inter_ms);
	for (size_t i = 0; i < h->nmodels; i++) {
		const struct hp_model *m = &h->models[i];
		char                  *uri = xasprintf("/health/model/%s", m->id);

		fprintf(f, "\n# Model %s: hosts where it is loaded; else (backup) hosts serving it.\n"
		    "backend mm_m%zu\n    balance leastconn\n    option allbackups\n", m->id, i);
		write_check(f, h, uri);
		fputs("    http-check expect status 200\n", f);
		for (size_t s = 0; s < h->nservers; s++)
			fprintf(f, "    server %s %s check inter %lld fall 2 rise 1 observe layer4 "
			    "error-limit 1 on-error mark-down\n", h->servers[s].name,
			    h->servers[s].addr, h->inter_ms);
		for (size_t s = 0; s < h->nservers; s++)
			fprintf(f, "    server %s-any %s backup track mm_m%zu_any/%s\n",
			    h->servers[s].name, h->servers[s].addr, i, h->servers[s].name);
		fprintf(f, "\n# Checks only: which hosts serve %s (loaded or not).\nbackend mm_m%zu_any\n",
		    m->id, i);
		write_check(f, h, uri);
		fputs("    http-check expect rstatus ^20[02]$\n", f);
		for (size_t s = 0; s < h->nservers; s++)
			fprintf(f, "    server %s %s check inter %lld fall 2 rise 1\n",
			    h->servers[s].name, h->servers[s].addr, h->inter_ms);
		free(uri);
	}
}

static void
hp_free(struct hp *h)
{
	for (size_t i = 0; i < h->nmodels; i++) {
		free(h->models[i].id);
		strv_free(h->models[i].names);
	}
	free(h->models);
}

static int
parse_args(struct hp *h, int argc, char **argv, size_t *nconf)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "config", required_argument, NULL, 'c' },
		{ "config-dir", required_argument, NULL, 'D' },
		{ "bind", required_argument, NULL, 'b' },
		{ "check-interval", required_argument, NULL, 'i' },
		{ "check-key-env", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:o:h", opts, NULL)) != -1) {
		switch (ch) {
		case 's':
			if (add_server(h, optarg) == -1)
				return 2;
			break;
		case 'c':
		case 'D':
			if (++*nconf > HAPROXY_MAX_CONFIGS) {
				fprintf(stderr, "modelmux: more than %d configs\n", HAPROXY_MAX_CONFIGS);
				return 2;
			}
			if (add_config(h, ch == 'c' ? optarg : NULL, ch == 'D' ? optarg : NULL) == -1)
				return 1;
			break;
		case 'b':
			if (!safe_word(optarg, ".:[]*-_/@")) {
				fprintf(stderr, "modelmux: --bind %s: expected an address\n", optarg);
				return 2;
			}
			h->bind = optarg;
			break;
		case 'i':
			if (parse_int(optarg, HAPROXY_MIN_INTER_MS, HAPROXY_MAX_INTER_MS, &h->inter_ms)
			    == -1) {
				fprintf(stderr, "modelmux: --check-interval: %d to %d ms\n",
				    HAPROXY_MIN_INTER_MS, HAPROXY_MAX_INTER_MS);
				return 2;
			}
			break;
		case 'k':
			if (!safe_word(optarg, "_")) {
				fprintf(stderr, "modelmux: --check-key-env: a variable name\n");
				return 2;
			}
			h->key_env = optarg;
			break;
		case 'o':
			h->out = optarg;
			break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || h->nservers == 0) {
		usage(stderr);
		return 2;
	}
	return 0;
}

int
haproxy_main(int argc, char **argv)
{
	struct hp h = { .bind = HAPROXY_DEF_BIND, .inter_ms = HAPROXY_DEF_INTER_MS };
	size_t    nconf = 0;
	FILE     *f = stdout;
	int       rc = parse_args(&h, argc, argv, &nconf);

	if (rc != 0) {
		rc = rc < 0 ? 0 : rc;
		goto out;
	}
	/* No config given: ask the running hosts what they serve. */
	for (size_t i = 0; nconf == 0 && i < h.nservers; i++)
		if (add_server_models(&h, &h.servers[i]) == -1) {
			rc = 1;
			goto out;
		}
	if (h.keys && h.key_env == NULL)
		fprintf(stderr, "modelmux: warning: a config has apiKeys but no --check-key-env was "
		    "given: the health checks will get 401\n");
	if (h.out != NULL && (f = fopen(h.out, "we")) == NULL) {
		perror(h.out);
		rc = 1;
		goto out;
	}
	write_head(f, &h);
	write_backends(f, &h);
	if (fflush(f) == EOF || ferror(f)) {
		perror(h.out ? h.out : "stdout");
		rc = 1;
	}
	if (f != stdout)
		fclose(f);
out:
	hp_free(&h);
	return rc;
}
