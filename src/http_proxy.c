/* http_proxy: a request for a model. Once the body is in: find the model (body, multipart
 * field, query, /upstream path), acquire it from sched (waiting in its queue, with
 * sendLoadingState progress on a stream), build the backend's request (forwardable fields,
 * X-Forwarded-*), start the upstream transfer and stream its answer back through the
 * request's window. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#include "modelmux/api.h"
#include "modelmux/compat.h"
#include "modelmux/config_compat.h"
#include "modelmux/config_peers.h"
#include "modelmux/gate.h"
#include "modelmux/hdrcheck.h"
#include "modelmux/http.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/metrics.h"
#include "modelmux/multipart.h"
#include "modelmux/router.h"
#include "modelmux/sched.h"
#include "modelmux/tunnel.h"
#include "modelmux/upstream.h"
#include "modelmux/util.h"
#include "http_int.h"


static void
on_up_head(void *arg, int status, const struct up_header *h, size_t n, long long content_length)
{
	struct mm_req       *r = arg;
	struct MHD_Response *resp;
	bool                 sse = false;

	r->t_first_byte = loop_now_ms();
	if (r->px.loading) {
		/* Our head went out long ago: the backend's stream continues ours. */
		if (status != 200) {
			char why[64];

			snprintf(why, sizeof(why), "the backend answered %d", status);
			stream_error_event(r, why);
			r->px.discard = true;
		}
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(h[i].name, "content-type") == 0 &&
		    str_has_prefix_ci(h[i].value, "text/event-stream"))
			sse = true;
	/* These have no body whatever Content-Length says (RFC 9110 6.4.1): none to wait for. */
	bool head = strcmp(r->method, "HEAD") == 0, empty = status == 204 || status == 304;

	if (empty)
		content_length = 0;
	if (content_length > 0 && content_length <= (long long)HTTP_WHOLE_MAX && !head) {
		r->px.whole_len = (size_t)content_length;
		r->px.whole_buf = xmalloc(r->px.whole_len);
		resp = r->px.whole = MHD_create_response_from_buffer_with_free_callback(r->px.whole_len,
		    r->px.whole_buf, free);
		r->px.whole_status = status;
	} else {
		/* Events are small and held open by the thousand: a small block per stream. */
		resp = MHD_create_response_from_callback(content_length >= 0
		    ? (uint64_t)content_length : MHD_SIZE_UNKNOWN, sse ? HTTP_SSE_BLOCK : HTTP_SEND_BLOCK,
		    read_body, r, NULL);
	}
	for (size_t i = 0; i < n; i++) {
		/* The gate is the only source of CORS headers. */
		if (strcasecmp(h[i].name, "x-request-id") == 0 ||
		    str_has_prefix_ci(h[i].name, "access-control-"))
			continue;
		MHD_add_response_header(resp, h[i].name, h[i].value);
	}
	if (sse)
		MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	r->px.usage.sse = r->px.sse = sse && content_length < 0;
	if (r->px.whole != NULL)
		return; /* queued once the body is in: on_up_body */
	set_reply(r, status, resp);
	r->phase = PH_STREAM;
	req_resume(r);
}

static size_t
on_up_body(void *arg, const char *p, size_t n)
{
	struct mm_req *r = arg;
	size_t         held = r->out.len - r->out_off;

	if (r->px.discard)
		return n;
	if (r->px.whole != NULL) {
		if (n > r->px.whole_len - r->px.whole_got)
			return n; /* past its Content-Length: cannot happen, curl stops there */
		memcpy(r->px.whole_buf + r->px.whole_got, p, n);
		r->px.whole_got += n;
		if (r->px.whole_got == r->px.whole_len) {
			struct MHD_Response *resp = r->px.whole;

			if (r->route.kind == ROUTE_JSON_MODEL) /* read where it lies: no copy */
				router_usage_body(&r->px.usage, r->px.whole_buf, r->px.whole_len);

			r->px.whole = NULL;
			r->bytes_out = r->px.whole_len;
			set_reply(r, r->px.whole_status, resp);
			r->phase = PH_REPLY;
			req_resume(r);
		}
		return n;
	}
	if (held > 0 && held + n > HTTP_STREAM_WINDOW) {
		r->px.paused = true;
		return 0;
	}
	if (r->route.kind == ROUTE_JSON_MODEL)
		router_usage_feed(&r->px.usage, p, n);
	if (n >= 2) {
		r->px.tail2[0] = p[n - 2];
		r->px.tail2[1] = p[n - 1];
	} else if (n == 1) {
		r->px.tail2[0] = r->px.tail2[1];
		r->px.tail2[1] = p[0];
	}
	if (out_append(r, p, n) == -1) {
		r->px.paused = true;
		return 0;
	}
	if (r->phase == PH_STREAM)
		req_resume(r);
	return n;
}

/* Ends an event stream whose status line already went out with an error event a client can
 * show; the stream still ends in error so it never looks complete. */
static void
stream_error(struct mm_req *r, const char *code, const char *msg)
{
	char *json = api_error_json(502, code, msg);
	/* Start on an event boundary whatever the backend's last bytes were. */
	const char *sep = r->px.tail2[1] != '\n' && r->px.tail2[1] != '\0' ? "\n\n"
	                : r->px.tail2[0] != '\n' && r->px.tail2[1] != '\0' ? "\n" : "";
	char *ev = xasprintf("%sdata: %s\n\n", sep, json);

	if (out_append(r, ev, strlen(ev)) == -1)
		log_warn("http", "req=%s msg=\"no memory for the stream's error event\"", r->id);
	free(ev);
	free(json);
}

void
stream_error_event(struct mm_req *r, const char *reason)
{
	char *msg = xasprintf("model %s: the backend stopped in the middle of the response (%s)",
	    r->model->id, reason ? reason : "connection closed");

	stream_error(r, "backend_stream_error", msg);
	free(msg);
}

static void
on_up_done(void *arg, bool ok, const char *reason)
{
	struct mm_req *r = arg;
	char           q[512];

	r->px.xfer = NULL;
	r->up_done = true;
	r->up_ok = ok;
	sched_release(&r->ticket);
	if (ok)
		(void)router_usage_end(&r->px.usage);
	if (r->px.usage.found)
		metrics_tokens(r->model->id, r->px.usage.prompt, r->px.usage.completion);
	if (r->px.whole != NULL) {
		/* The backend's head came, its whole body did not. */
		MHD_destroy_response(r->px.whole);
		r->px.whole = NULL;
	}
	if (r->phase == PH_WAIT_UPSTREAM) {
		reply_error(r, 502, "backend_unavailable", "model %s: backend request failed: %s",
		    r->model->id, reason ? reason : "no response");
	} else if (!ok) {
		log_warn("http", "req=%s model=%s msg=\"backend closed the response early\" reason=%s",
		    r->id, r->model->id, log_q(q, sizeof(q), reason));
		if (r->px.sse)
			stream_error_event(r, reason);
	}
	req_resume(r);
}

static const struct up_callbacks up_cb = {
	.head = on_up_head,
	.body = on_up_body,
	.done = on_up_done,
};

static bool
forwardable(const char *name)
{
	static const char *const drop[] = {
		"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
		"trailer", "upgrade", "content-length", "expect", "x-request-id", "traceparent",
		/* The client's credentials are for modelmux, never for a backend. */
		"authorization", "x-api-key", "cookie", "proxy-authorization",
		/* Set by modelmux from what it knows of the client (upstream_headers). */
		"x-forwarded-for", "forwarded",
	};

	for (size_t i = 0; i < MM_ARRAY_LEN(drop); i++)
		if (strcasecmp(name, drop[i]) == 0)
			return false;
	return true;
}

/* Does the comma-separated list name `name` (case-insensitive, blanks around)? */
static bool
list_names(const char *list, const char *name)
{
	size_t nl = strlen(name);

	for (const char *p = list; p != NULL && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		const char *e;

		while (*p == ' ' || *p == '\t')
			p++;
		for (e = p; *e && *e != ',' && *e != ' ' && *e != '\t'; e++)
			;
		if ((size_t)(e - p) == nl && strncasecmp(p, name, nl) == 0)
			return true;
	}
	return false;
}

/* The fields forwarded to the backend, gathered as pointers (into libmicrohttpd's connection
 * memory, or the caller's buffers), then written out in one allocation. */
struct hdr_collect {
	struct { const char *k, *v; } *p, first[HTTP_HDR_STACK];
	size_t      n, cap, bytes;
	const char *hop;  /* the Connection header's list: the fields it names stop here too */
	bool        via_proxy; /* else the fields only a front proxy may state stop here */
};

static void
hdr_push(struct hdr_collect *c, const char *key, const char *value)
{
	if (c->n == c->cap) {
		size_t cap = c->cap * 2;

		if (c->p == c->first) {
			c->p = xreallocarray(NULL, cap, sizeof(*c->p));
			memcpy(c->p, c->first, sizeof(c->first));
		} else {
			c->p = xreallocarray(c->p, cap, sizeof(*c->p));
		}
		c->cap = cap;
	}
	c->p[c->n].k = key;
	c->p[c->n].v = value ? value : "";
	c->bytes += strlen(key) + 2 + strlen(c->p[c->n].v) + 1;
	c->n++;
}

/* "Name: value" lines, NULL-terminated, vector and lines in one block of *size bytes: free()
 * frees it all. Built for every request, so no printf. */
static char **
hdr_pack(struct hdr_collect *c, size_t *size)
{
	char **v = xmalloc(*size = (c->n + 1) * sizeof(*v) + c->bytes);
	char  *w = (char *)(v + c->n + 1);

	for (size_t i = 0; i < c->n; i++) {
		size_t kl = strlen(c->p[i].k), vl = strlen(c->p[i].v);

		v[i] = w;
		memcpy(w, c->p[i].k, kl);
		memcpy(w + kl, ": ", 2);
		memcpy(w + kl + 2, c->p[i].v, vl);
		w[kl + 2 + vl] = '\0';
		w += kl + 2 + vl + 1;
	}
	v[c->n] = NULL;
	if (c->p != c->first)
		free(c->p);
	return v;
}

static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct hdr_collect *c = cls;

	(void)kind;
	if (forwardable(key) && !list_names(c->hop, key) && (c->via_proxy || !hdr_proxy_only(key)))
		hdr_push(c, key, value);
	return MHD_YES;
}

static char **
upstream_headers(struct mm_req *r, size_t *size)
{
	/* version, trace id (32 hex), span id (16 hex), flags */
	static const char  shape[] = "00-00000000000000000000000000000000-0000000000000000-01";
	struct hdr_collect c;
	const char        *tp = req_header(r, "traceparent");
	char               trace[sizeof(shape)], rnd[33], span[17], *bearer = NULL, **v;
	char              *xff, fwd[GATE_MAX_IP_BYTES + 40];

	c.p = c.first;
	c.n = c.bytes = 0;
	c.cap = MM_ARRAY_LEN(c.first);
	c.hop = req_header(r, "Connection");
	c.via_proxy = r->via_proxy;
	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_header, &c);
	hdr_push(&c, "X-Request-ID", r->id);
	if (!r->via_proxy || req_header(r, "X-Forwarded-Proto") == NULL) /* a front proxy's is kept */
		hdr_push(&c, "X-Forwarded-Proto", H.tls ? "https" : "http");
	/* Who the client is: a trusted proxy's chain goes on with its own address; anyone else's
	 * claim is replaced. */
	xff = r->forwarded_for ? xasprintf("%s, %s", r->forwarded_for, r->peer) : xstrdup(r->peer);
	hdr_push(&c, "X-Forwarded-For", xff);
	snprintf(fwd, sizeof(fwd), strchr(r->ip, ':') ? "for=\"[%s]\";proto=%s" : "for=%s;proto=%s",
	    r->ip, H.tls ? "https" : "http");
	hdr_push(&c, "Forwarded", fwd);
	/* The client's credentials were dropped; the backend may have its own. */
	if (r->model->upstream_api_key != NULL) {
		bearer = xasprintf("Bearer %s", r->model->upstream_api_key);
		hdr_push(&c, "Authorization", bearer);
		hdr_push(&c, "X-API-Key", r->model->upstream_api_key);
	}
	/* Keep a valid incoming trace context, or start one. */
	if (tp != NULL && valid_traceparent(tp)) {
		hdr_push(&c, "traceparent", tp);
	} else {
		gen_id(rnd, 17);
		gen_id(rnd + 16, 17);
		gen_id(span, sizeof(span));
		/* The shape, then the two ids. */
		memcpy(trace, shape, sizeof(trace));
		memcpy(trace + 3, rnd, 32);
		memcpy(trace + 36, span, 16);
		hdr_push(&c, "traceparent", trace);
	}
	v = hdr_pack(&c, size);
	free(xff);
	if (bearer != NULL) {
		OPENSSL_cleanse(bearer, strlen(bearer));
		free(bearer);
	}
	return v;
}

static void
loading_chunk(struct mm_req *r, const char *text)
{
	cJSON *o = cJSON_CreateObject(), *ch = cJSON_AddArrayToObject(o, "choices");
	cJSON *c0 = cJSON_CreateObject(), *delta = cJSON_AddObjectToObject(c0, "delta");
	char  *json, *ev;

	cJSON_AddStringToObject(o, "id", "chatcmpl-modelmux-loading");
	cJSON_AddStringToObject(o, "object", "chat.completion.chunk");
	cJSON_AddNumberToObject(o, "created", (double)time(NULL));
	cJSON_AddStringToObject(o, "model", r->model_name);
	cJSON_AddNumberToObject(c0, "index", 0);
	cJSON_AddStringToObject(delta, "reasoning_content", text);
	cJSON_AddNullToObject(c0, "finish_reason");
	cJSON_AddItemToArray(ch, c0);
	json = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	ev = xasprintf("data: %s\n\n", json ? json : "{}");
	cJSON_free(json);
	if (out_append(r, ev, strlen(ev)) == 0)
		req_resume(r);
	free(ev);
}

static void
loading_tick(void *arg)
{
	struct mm_req *r = arg;

	r->px.loading_timer = loop_timer_add(HTTP_LOADING_TICK_MS, loading_tick, r);
	loading_chunk(r, ".");
}

/* The answer starts now as an event stream; the model's own stream continues it. */
static void
start_loading(struct mm_req *r)
{
	struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN,
	    HTTP_SSE_BLOCK, read_body, r, NULL);
	char                 head[300];

	MHD_add_response_header(resp, "Content-Type", "text/event-stream");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	set_reply(r, 200, resp);
	r->phase = PH_STREAM;
	r->px.loading = r->px.usage.sse = r->px.sse = true;
	r->px.loading_since = loop_now_ms();
	snprintf(head, sizeof(head), "Loading model %.200s…\n", r->model->id);
	loading_chunk(r, head);
	r->px.loading_timer = loop_timer_add(HTTP_LOADING_TICK_MS, loading_tick, r);
}

static void
on_granted(struct sched_ticket *t, int status, const char *msg, void *arg)
{
	struct mm_req *r = arg;

	(void)t;
	if (r->px.loading) {
		loop_timer_cancel(r->px.loading_timer);
		r->px.loading_timer = 0;
	}
	if (status != 0 && r->px.loading) {
		/* The status line went out with the progress: the failure becomes the last event. */
		stream_error(r, status == 504 ? "backend_timeout" : "backend_start_failed", msg);
		r->up_done = true;
		r->up_ok = false;
		req_resume(r);
		return;
	}
	if (status != 0) {
		reply_error(r, status, status == 504 ? "backend_timeout" : status == 503 &&
		    r->model->peer != NULL ? "peer_unavailable" : status == 503
		    ? "queue_timeout" : status == 429 ? "queue_full" : "backend_start_failed", "%s", msg);
		req_resume(r);
		return;
	}
	r->t_granted = loop_now_ms();
	if (r->px.loading) {
		char done[64];

		snprintf(done, sizeof(done), "Done! (%.2fs)\n",
		    (double)(r->t_granted - r->px.loading_since) / 1000.0);
		loading_chunk(r, done);
	}
	start_upstream(r);
}

/* The backend URL for r: into buf when it fits (every request builds one), else allocated. */
char *
upstream_url(const struct mm_req *r, const char *proxy, char *buf, size_t n)
{
	const char *part[4] = { proxy, r->px.path ? r->px.path : r->path, r->query ? "?" : "",
		r->query ? r->query : "" };
	size_t      len[4], total = 1;
	char       *url, *w;

	for (size_t i = 0; i < 4; i++)
		total += len[i] = strlen(part[i]);
	url = w = total <= n ? buf : xmalloc(total);
	for (size_t i = 0; i < 4; i++) {
		memcpy(w, part[i], len[i]);
		w += len[i];
	}
	*w = '\0';
	return url;
}

void
start_upstream(struct mm_req *r)
{
	const char *err = NULL, *proxy = sched_ticket_proxy(&r->ticket);
	char        ubuf[HTTP_URL_STACK], *url = upstream_url(r, proxy, ubuf, sizeof(ubuf));
	struct up_request ur = {
		.url = url,
		.method = r->method,
		.headers = r->px.headers,
		.body = r->px.body ? r->px.body : (r->body.data ? r->body.data : ""),
		.body_len = r->px.body ? r->px.body_len : r->body.len,
		.connect_timeout_s = r->model->timeouts.connect_s,
		.header_timeout_s = r->model->timeouts.response_header_s,
		.tls_handshake_s = r->model->timeouts.tls_handshake_s,
		.keepalive_s = r->model->timeouts.keepalive_s,
		.idle_conn_s = r->model->timeouts.idle_conn_s,
		.idle_max = r->ticket.model ? sched_model_concurrency(r->ticket.model) : 0,
	};

	if (r->ws) {
		if (url != ubuf)
			free(url);
		start_ws(r, proxy);
		return;
	}
	if (r->route.body == BODY_SPOOL) {
		r->upl.send_pos = 0;
		ur.body = NULL;
		ur.body_len = (size_t)mp_send_len(r);
		ur.read = mp_body_read;
		ur.read_arg = r;
		ur.rewind = mp_body_rewind;
	}

	if (!r->px.loading)
		r->phase = PH_WAIT_UPSTREAM;
	r->px.xfer = up_start(&ur, &up_cb, r, &err);
	if (url != ubuf)
		free(url);
	if (r->px.xfer == NULL) {
		sched_release(&r->ticket);
		if (r->px.loading) {
			stream_error(r, "backend_unavailable", err);
			r->up_done = true;
			req_resume(r);
			return;
		}
		reply_error(r, 502, "backend_unavailable", "model %s: %s", r->model->id, err);
		req_resume(r);
		return;
	}
	if (!r->px.loading)
		req_suspend(r);
}

/* The body limit of a request's kind: uploads (multipart, or multipart through /upstream)
 * have their own, larger one; management routes take next to nothing. */
int
body_limit(const struct mm_req *r)
{
	const char *ct;

	if (r->route.kind == ROUTE_MULTIPART_MODEL)
		return r->cfg->limits.max_multipart_body_bytes;
	if (r->route.body == BODY_NONE)
		return (int)HTTP_API_BODY_MAX;
	if (r->route.kind == ROUTE_UPSTREAM && (ct = req_header(r, "Content-Type")) != NULL &&
	    str_has_prefix_ci(ct, "multipart/"))
		return r->cfg->limits.max_multipart_body_bytes;
	return r->cfg->limits.max_json_body_bytes;
}

static void acquire_model(struct mm_req *r);

/* The body is complete: find the model, rewrite, and acquire it. */
void
dispatch_model(struct mm_req *r)
{
	char               err[256];
	const char        *name, *target;
	cJSON             *doc;
	struct router_peek pk;
	bool               selected = false;

	if (r->body_too_large) {
		metrics_refusal("size");
		reply_error(r, 413, "body_too_large", "request body is larger than %d bytes",
		    r->cfg->limits.max_json_body_bytes);
		return;
	}
	/* Most bodies go on as they came: a scan finds the model, and only a model that rewrites
	 * bodies (or a body only a full parse can judge) costs a parsed tree. */
	switch (router_json_peek(r->body.data, r->body.len, r->cfg->limits.max_json_depth, &pk, err,
	    sizeof(err))) {
	case -1:
		reply_error(r, 400, "invalid_request", "%s", err);
		return;
	case 1:
		if ((r->model = cfg_find_model(r->cfg, pk.model)) != NULL && !router_rewrites(r->model)) {
			r->model_name = xstrdup(pk.model);
			r->px.wants_stream = pk.stream;
			acquire_model(r);
			return;
		}
		break;
	default:
		break;
	}
	if ((doc = router_json_model(r->body.data, r->body.len, r->cfg->limits.max_json_depth, &name,
	    err, sizeof(err))) == NULL) {
		reply_error(r, 400, "invalid_request", "%s", err);
		return;
	}
	r->px.wants_stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "stream"));
	/* A selector (llama-swap's virtual model id): on as if the body named its target. */
	if ((target = compat_select(r->cfg, name)) != NULL) {
		cJSON_ReplaceItemInObjectCaseSensitive(doc, "model", cJSON_CreateString(target));
		name = target;
		selected = true;
	}
	r->model_name = xstrdup(name);
	if ((r->model = cfg_find_model(r->cfg, name)) == NULL) {
		reply_error(r, 404, "model_not_found", "model %.256s not found", r->model_name);
		cJSON_Delete(doc);
		return;
	}
	/* A rewritten body is serialised once; its length is the new Content-Length. */
	if ((router_rewrite_json(doc, r->model) || selected) &&
	    (r->px.body = cJSON_PrintUnformatted(doc)) == NULL) {
		cJSON_Delete(doc);
		reply_error(r, 500, "internal_error", "cannot rewrite the request body");
		return;
	}
	r->px.body_len = r->px.body ? strlen(r->px.body) : 0;
	cJSON_Delete(doc);
	acquire_model(r);
}

/* llama-swap's sendLoadingState: only a streaming chat request that has to wait. */
static bool
wants_loading_state(const struct mm_req *r)
{
	int on = r->model->send_loading_state;

	if (on < 0)
		on = r->cfg->send_loading_state;
	return on && r->px.wants_stream && strcmp(r->path, "/v1/chat/completions") == 0;
}

/* Asks the scheduler for r->model, then goes upstream now or once it is ready. */
static void
acquire_model(struct mm_req *r)
{
	char msg[SCHED_MSG_MAX];
	int  status = 0;

	r->px.headers = upstream_headers(r, &r->px.headers_size);
	switch (sched_acquire(&r->ticket, r->model, on_granted, r, &status, msg, sizeof(msg))) {
	case 1:
		r->t_granted = loop_now_ms();
		start_upstream(r);
		break;
	case 0:
		if (wants_loading_state(r)) {
			start_loading(r);
			break;
		}
		r->phase = PH_WAIT_MODEL;
		req_suspend(r);
		break;
	default:
		reply_error(r, status, status == 429 ? "queue_full" : "unavailable", "%s", msg);
		break;
	}
}

/* /upstream/<model>/<rest>: the body is forwarded as it came; the model and path were checked
 * in the first call. */
void
dispatch_upstream(struct mm_req *r)
{
	if (r->body_too_large) {
		metrics_refusal("size");
		reply_error(r, 413, "body_too_large", "request body is larger than %d bytes",
		    body_limit(r));
		return;
	}
	if (r->upl.error != NULL) {
		reply_error(r, 507, "insufficient_storage", "%s", r->upl.error);
		return;
	}
	if (r->ws && r->model->ignore_websockets) {
		/* compat.ignoreWebsockets: the socket neither starts the model nor holds it. */
		const struct sched_model *m = sched_model_get(r->model->id);

		if (m == NULL || sched_model_state(m) != MODEL_READY) {
			reply_error(r, 409, "model_not_loaded", "model %s is not loaded, and its "
			    "WebSockets do not load it (compat.ignoreWebsockets)", r->model->id);
			return;
		}
		r->px.headers = upstream_headers(r, &r->px.headers_size);
		r->t_granted = loop_now_ms();
		start_ws(r, sched_model_cfg(m)->proxy);
		return;
	}
	acquire_model(r);
}

/* The multipart body is all in: which model, and the model value's range for a rewrite. */
void
dispatch_multipart(struct mm_req *r)
{
	const char *name, *target;
	uint64_t    a, z;

	if (r->body_too_large) {
		metrics_refusal("size");
		reply_error(r, 413, "body_too_large", "request body is larger than %d bytes",
		    r->cfg->limits.max_multipart_body_bytes);
		return;
	}
	if (r->upl.error != NULL) {
		reply_error(r, r->upl.spool_fd == -2 ? 507 : 400, "invalid_request", "%s", r->upl.error);
		return;
	}
	if (!mp_complete(r->upl.mp)) {
		reply_error(r, 400, "invalid_request", "the multipart body ends before its closing boundary");
		return;
	}
	if ((name = mp_field(r->upl.mp, &a, &z)) == NULL || *name == '\0') {
		reply_error(r, 400, "invalid_request", "missing \"model\" form field");
		return;
	}
	/* A selector: on as if the form named its target. */
	if ((target = compat_select(r->cfg, name)) != NULL)
		name = target;
	r->model_name = xstrdup(name);
	if ((r->model = cfg_find_model(r->cfg, name)) == NULL) {
		reply_error(r, 404, "model_not_found", "model %.256s not found", name);
		return;
	}
	/* useModelName (or the selector's target) rewrites the model part; every other byte goes
	 * through unchanged. */
	if (r->model->use_model_name != NULL || target != NULL) {
		r->upl.cut_a = a;
		r->upl.cut_z = z;
		r->upl.cut_name = r->model->use_model_name ? r->model->use_model_name : target;
	}
	acquire_model(r);
}

/* GET /v1/audio/voices?model=…, /props?model=…: the model is in the query. */
void
check_query_model(struct mm_req *r)
{
	char        name[512];
	const char *target;

	if (router_query_param(r->query, "model", name, sizeof(name)) <= 0) {
		size_t nready = 0;

		/* llama.cpp's router: /props without a model is about the one loaded. */
		if (strcmp(r->path, "/props") == 0 &&
		    (r->model = compat_single_ready(r->cfg, &nready)) != NULL) {
			r->model_name = xstrdup(r->model->id);
			return;
		}
		reply_error(r, 400, "invalid_request", "missing ?model= query parameter%s",
		    strcmp(r->path, "/props") != 0 ? "" : nready > 1 ?
		    " (several models are loaded)" : " (no model is loaded)");
		return;
	}
	/* A selector: on as if the query named its target (rewritten in what goes upstream). */
	if ((target = compat_select(r->cfg, name)) != NULL) {
		char *q = router_query_set(r->query, "model", target);

		r->px.path = xasprintf("%s?%s", r->path, q);
		free(q);
		r->query = NULL;
		snprintf(name, sizeof(name), "%s", target);
	}
	r->model_name = xstrdup(name);
	if ((r->model = cfg_find_model(r->cfg, name)) == NULL)
		reply_error(r, 404, "model_not_found", "model %.256s not found", name);
}

/* First call of an /upstream request: which model, and is the rest of the path safe? */
void
check_upstream(struct mm_req *r)
{
	const char *rest, *why = NULL;
	char        decoded[4096], encoded[3 * sizeof(decoded)], q[300];

	if (router_upstream(r->cfg, r->path, &r->model, &rest) == -1) {
		reply_error(r, 404, "model_not_found", "no model matches %s",
		    log_q(q, sizeof(q), r->path));
		return;
	}
	r->model_name = xstrdup(r->model->id);
	if (*rest == '\0') {
		/* llama-swap's redirect of /upstream/<model> to /upstream/<model>/. */
		bool  get = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
		char *loc = xasprintf("%s/%s%s", r->path, r->query ? "?" : "", r->query ? r->query : "");

		reply_text(r, get ? 301 : 308, "text/plain", xstrdup("redirect\n"), NULL);
		MHD_add_response_header(r->pending, "Location", loc);
		free(loc);
		return;
	}
	if (gate_upstream_path(rest, decoded, sizeof(decoded), &why) == -1 ||
	    gate_path_encode(decoded, encoded, sizeof(encoded)) == -1) {
		metrics_refusal("path");
		reply_error(r, 400, "invalid_path", "upstream path refused: %s", why ? why : "too long");
		return;
	}
	/* upstream.ignorePaths (llama-swap's; by default static files: a browser's favicon or
	 * script fetch): such a path never starts a model; it reaches a ready one. */
	if (cfg_compat_ignored_path(r->cfg, decoded)) {
		const struct sched_model *sm = sched_model_get(r->model->id);

		if (sm == NULL || sched_model_state(sm) != MODEL_READY) {
			reply_error(r, 409, "model_not_loaded", "model %.256s is not loaded, and this path "
			    "does not load it (upstream.ignorePaths)", r->model->id);
			return;
		}
	}
	r->px.path = xstrdup(encoded);
}
