/* upstream, the curl client: a libcurl easy handle on the fetch multi, for every backend the
 * direct client does not take (https, host names). Headers come line by line through
 * on_header, the body through on_body; fetch reports the end. */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "modelmux/fetch.h"
#include "modelmux/log.h"
#include "modelmux/upstream.h"
#include "modelmux/util.h"
#include "upstream_int.h"

#define UP_MAXAGE_NONE (365L * 24 * 3600) /* idleConn: 0 — kept connections never age out */

/* Idle easy handles kept for reuse: creating one costs a large zeroed allocation. */
#define UP_POOL_MAX 64
static CURL  *pool[UP_POOL_MAX];
static size_t npool;

static CURL *
easy_get(void)
{
	return npool > 0 ? pool[--npool] : curl_easy_init();
}

static void
easy_put(CURL *e)
{
	if (npool < UP_POOL_MAX) {
		curl_easy_reset(e);
		pool[npool++] = e;
	} else {
		curl_easy_cleanup(e);
	}
}

static size_t
on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct up_xfer *x = arg;
	size_t          n = size * nmemb, len = n;
	const char     *colon;

	while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
		len--;
	if (len == 0) { /* end of a header block; 1xx blocks are followed by the real one */
		if (x->status >= 200)
			up__send_head(x);
		return n;
	}
	if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		const char *sp = memchr(p, ' ', len);

		up__headers_clear(x);
		x->status = sp ? (int)strtol(sp + 1, NULL, 10) : 0;
		return n;
	}
	x->hbytes += len;
	if ((colon = memchr(p, ':', len)) == NULL || x->nh == UP_MAX_HEADERS ||
	    x->hbytes > UP_MAX_HEADER_BYTES) {
		if (colon != NULL)
			x->header_overflow = true;
		return n;
	}
	size_t nl = (size_t)(colon - p);
	const char *v = colon + 1;

	while (v < p + len && (*v == ' ' || *v == '\t'))
		v++;
	if (nl == 14 && strncasecmp(p, "content-length", 14) == 0) {
		char tmp[32];
		long long cl;

		snprintf(tmp, sizeof(tmp), "%.*s", (int)(p + len - v), v);
		x->content_length = parse_int(tmp, 0, INT64_MAX, &cl) == 0 ? cl : -1;
	}
	if (up__is_hop_by_hop(p, nl))
		return n;
	x->h[x->nh].name = xstrndup(p, nl);
	x->h[x->nh].value = xstrndup(v, (size_t)(p + len - v));
	x->h_owned = true;
	x->nh++;
	return n;
}

static size_t
on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct up_xfer *x = arg;
	size_t          n = size * nmemb, took;

	up__send_head(x);
	took = x->cb->body(x->arg, p, n);
	return took == 0 && n > 0 ? CURL_WRITEFUNC_PAUSE : took;
}

static size_t
on_read(char *buf, size_t size, size_t nmemb, void *arg)
{
	struct up_xfer *x = arg;

	return x->read(x->read_arg, buf, size * nmemb);
}

static void
on_done(CURL *easy, CURLcode rc, void *arg)
{
	struct up_xfer            *x = arg;
	const struct up_callbacks *cb = x->cb;
	void                      *cbarg = x->arg;
	static char                reason[CURL_ERROR_SIZE + 64];
	bool                       ok = rc == CURLE_OK;

	(void)easy;
	if (ok)
		up__send_head(x);
	else
		snprintf(reason, sizeof(reason), "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
	if (x->header_overflow)
		log_warn("upstream", "msg=\"response headers past the limit were dropped\"");
	up__xfer_free(x);
	cb->done(cbarg, ok, ok ? NULL : reason);
}

int
up__curl_start(struct up_xfer *x, const struct up_request *r, const char **err)
{
	CURL *e;

	fetch_ready();
	if ((e = x->easy = easy_get()) == NULL) {
		*err = "cannot create a transfer";
		return -1;
	}
	bool has_ctype = false, has_accept = false;

	for (char *const *h = r->headers; h && *h; h++) {
		has_ctype |= str_has_prefix_ci(*h, "content-type:");
		has_accept |= str_has_prefix_ci(*h, "accept:");
		x->hdrs = curl_slist_append(x->hdrs, *h);
	}
	/* No 100-continue round trip, and no Accept or Content-Type the client did not send. */
	x->hdrs = curl_slist_append(x->hdrs, "Expect:");
	if (!has_accept)
		x->hdrs = curl_slist_append(x->hdrs, "Accept:");
	if ((r->body != NULL || r->read != NULL) && !has_ctype)
		x->hdrs = curl_slist_append(x->hdrs, "Content-Type:");
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
	curl_easy_setopt(e, CURLOPT_HTTP_TRANSFER_DECODING, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	/* curl times TCP and TLS set-up together: an https backend gets both allowances. */
	if (r->connect_timeout_s > 0)
		curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, r->connect_timeout_s +
		    (str_has_prefix_ci(r->url, "https:") ? r->tls_handshake_s : 0));
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, r->keepalive_s > 0 ? 1L : 0L);
	if (r->keepalive_s > 0) {
		curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, r->keepalive_s);
		curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, r->keepalive_s);
	}
	curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, r->idle_conn_s > 0 ? r->idle_conn_s : UP_MAXAGE_NONE);
	if (r->fresh) {
		curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
	}
	if (strcmp(r->method, "GET") == 0) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else {
		if (r->read != NULL) {
			x->read = r->read;
			x->read_arg = r->read_arg;
			curl_easy_setopt(e, CURLOPT_POST, 1L);
			curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
			curl_easy_setopt(e, CURLOPT_READDATA, x);
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
		} else if (r->body != NULL) {
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
		}
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	}
	if (fetch_start(e, on_done, x) == -1) {
		*err = "cannot start a transfer";
		return -1;
	}
	return 0;
}

void
up__curl_cancel(struct up_xfer *x)
{
	if (x->easy != NULL)
		fetch_cancel(x->easy);
}

void
up__curl_resume(struct up_xfer *x)
{
	fetch_unpause(x->easy);
}

void
up__curl_free(struct up_xfer *x)
{
	for (struct curl_slist *l = x->hdrs; l != NULL; l = l->next) /* may hold the backend's key */
		OPENSSL_cleanse(l->data, strlen(l->data));
	curl_slist_free_all(x->hdrs);
	if (x->easy)
		easy_put(x->easy);
}

void
up__curl_free_pool(void)
{
	while (npool > 0)
		curl_easy_cleanup(pool[--npool]);
}
