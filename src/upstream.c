/* upstream: a streamed HTTP exchange with a backend (libcurl easy handle on the fetch multi). */
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "modelmux/fetch.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/upstream.h"
#include "modelmux/util.h"

struct up_xfer {
	CURL                      *easy;
	struct curl_slist         *hdrs;
	const struct up_callbacks *cb;
	void                      *arg;
	int                        status;
	struct up_header           h[UP_MAX_HEADERS];
	size_t                     nh, hbytes;
	long long                  content_length;
	bool                       head_sent;
	bool                       header_overflow;
	uint64_t                   header_timer;
	size_t                   (*read)(void *arg, char *buf, size_t n);
	void                      *read_arg;
	char                       errbuf[CURL_ERROR_SIZE];
};

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

void
up_free_pool(void)
{
	while (npool > 0)
		curl_easy_cleanup(pool[--npool]);
}

static const char *const hop_by_hop[] = {
	"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
	"upgrade", "content-length", "proxy-authenticate",
};

static bool
is_hop_by_hop(const char *name, size_t len)
{
	for (size_t i = 0; i < MM_ARRAY_LEN(hop_by_hop); i++)
		if (strlen(hop_by_hop[i]) == len && strncasecmp(hop_by_hop[i], name, len) == 0)
			return true;
	return false;
}

static void
headers_clear(struct up_xfer *x)
{
	for (size_t i = 0; i < x->nh; i++) {
		free(x->h[i].name);
		free(x->h[i].value);
	}
	x->nh = x->hbytes = 0;
	x->content_length = -1;
}

static void
xfer_free(struct up_xfer *x)
{
	loop_timer_cancel(x->header_timer);
	headers_clear(x);
	curl_slist_free_all(x->hdrs);
	if (x->easy)
		easy_put(x->easy);
	free(x);
}

static void
send_head(struct up_xfer *x)
{
	if (x->head_sent)
		return;
	x->head_sent = true;
	loop_timer_cancel(x->header_timer);
	x->header_timer = 0;
	x->cb->head(x->arg, x->status, x->h, x->nh, x->content_length);
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
			send_head(x);
		return n;
	}
	if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		const char *sp = memchr(p, ' ', len);

		headers_clear(x);
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
	if (is_hop_by_hop(p, nl))
		return n;
	x->h[x->nh].name = xstrndup(p, nl);
	x->h[x->nh].value = xstrndup(v, (size_t)(p + len - v));
	x->nh++;
	return n;
}

static size_t
on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct up_xfer *x = arg;
	size_t          n = size * nmemb, took;

	send_head(x);
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
		send_head(x);
	else
		snprintf(reason, sizeof(reason), "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
	if (x->header_overflow)
		log_warn("upstream", "msg=\"response headers past the limit were dropped\"");
	xfer_free(x);
	cb->done(cbarg, ok, ok ? NULL : reason);
}

static void
on_header_timeout(void *arg)
{
	struct up_xfer            *x = arg;
	const struct up_callbacks *cb = x->cb;
	void                      *cbarg = x->arg;

	x->header_timer = 0;
	fetch_cancel(x->easy);
	xfer_free(x);
	cb->done(cbarg, false, "timed out waiting for the response headers");
}

struct up_xfer *
up_start(const struct up_request *r, const struct up_callbacks *cb, void *arg, const char **err)
{
	struct up_xfer *x = xcalloc(1, sizeof(*x));
	CURL           *e;

	if ((e = x->easy = easy_get()) == NULL) {
		free(x);
		*err = "cannot create a transfer";
		return NULL;
	}
	x->cb = cb;
	x->arg = arg;
	x->content_length = -1;
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
		xfer_free(x);
		*err = "cannot start a transfer";
		return NULL;
	}
	if (r->header_timeout_s > 0)
		x->header_timer = loop_timer_add((uint64_t)r->header_timeout_s * 1000u, on_header_timeout, x);
	return x;
}

void
up_resume(struct up_xfer *x)
{
	fetch_unpause(x->easy);
}

void
up_cancel(struct up_xfer *x)
{
	if (x == NULL)
		return;
	fetch_cancel(x->easy);
	xfer_free(x);
}
