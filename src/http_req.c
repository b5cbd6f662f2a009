/* http_req: the request core. A request's life: PH_HEAD (first callback: head checks, gate,
 * route, request id) → PH_BODY (collect the bounded body) → PH_WAIT_MODEL (suspended in
 * sched's queue) → PH_WAIT_UPSTREAM (suspended until the backend's response head) → PH_STREAM
 * (MHD pulls the body from a bounded window the upstream transfer fills; a full window pauses
 * the transfer, an empty one suspends the connection). Any answer of our own (an error, a
 * management reply) is PH_REPLY. This file holds the phases, our own answers, suspension and
 * the completion; what a request does once its body is in belongs to the file of its kind. */
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
#include "modelmux/config_peers.h"
#include "modelmux/gate.h"
#include "modelmux/hdrcheck.h"
#include "modelmux/http.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/metrics.h"
#include "modelmux/multipart.h"
#include "modelmux/peer.h"
#include "modelmux/router.h"
#include "modelmux/sched.h"
#include "modelmux/tunnel.h"
#include "modelmux/upstream.h"
#include "modelmux/util.h"
#include "modelmux/activity.h"
#include "http_int.h"

/* A client's X-Request-ID is kept when it is 1..64 characters of [A-Za-z0-9._:-]. */
static bool
valid_request_id(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++) {
		char c = s[n];

		if (n >= 64 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == ':'))
			return false;
	}
	return n > 0;
}

/* W3C trace context: "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", ids not zero. */
bool
valid_traceparent(const char *s)
{
	static const size_t lens[] = { 2, 32, 16, 2 };
	const char         *p = s;

	for (size_t f = 0; f < MM_ARRAY_LEN(lens); f++) {
		bool nonzero = false;

		for (size_t i = 0; i < lens[f]; i++, p++) {
			if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
				return false;
			nonzero |= *p != '0';
		}
		if ((f == 1 || f == 2) && !nonzero)
			return false;
		if (*p != (f + 1 < MM_ARRAY_LEN(lens) ? '-' : '\0'))
			return false;
		p++;
	}
	return strncmp(s, "ff", 2) != 0;
}

const char *
req_header(const struct mm_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

void
on_client_hup(int fd, uint32_t events, void *arg)
{
	struct mm_req *r = arg;

	(void)fd;
	(void)events;
	log_info("http", "req=%s msg=\"client disconnected\" phase=%d", r->id, (int)r->phase);
	r->client_gone = true;
	if (r->px.xfer) {
		up_cancel(r->px.xfer);
		r->px.xfer = NULL;
		log_info("http", "req=%s msg=\"upstream request cancelled\"", r->id);
	}
	tunnel_free(r->tun);
	r->tun = NULL;
	sched_release(&r->ticket);
	if (r->api_pending) {
		api_cancel(&r->api);
		r->api_pending = false;
	}
	feed_free(r);
	loop_timer_cancel(r->px.loading_timer);
	r->px.loading_timer = 0;
	req_resume(r);
}

/* A suspended connection is out of MHD's sight: watch it for a hang-up ourselves — from a
 * moment on, so that the common exchange, answered within it, costs no watch at all. */
static void
watch_client(void *arg)
{
	struct mm_req                  *r = arg;
	const union MHD_ConnectionInfo *ci;

	r->watch_timer = 0;
	ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci != NULL && loop_fd_add(ci->connect_fd, EPOLLRDHUP, on_client_hup, r) == 0)
		r->watch_fd = ci->connect_fd;
}

void
req_suspend(struct mm_req *r)
{
	if (r->suspended)
		return;
	MHD_suspend_connection(r->conn);
	r->suspended = true;
	if (r->watch_fd == -1 && r->watch_timer == 0)
		r->watch_timer = loop_timer_add(HTTP_HUP_WATCH_MS, watch_client, r);
}

void
req_resume(struct mm_req *r)
{
	if (!r->suspended)
		return;
	loop_timer_cancel(r->watch_timer);
	r->watch_timer = 0;
	if (r->watch_fd != -1) {
		loop_fd_del(r->watch_fd);
		r->watch_fd = -1;
	}
	r->suspended = false;
	MHD_resume_connection(r->conn);
	/* In external polling mode MHD only notices a resume in its next run. */
	H.need_run = true;
}

/* Appends to the response window, first dropping what was already sent so the buffer never
 * grows past the window plus one piece. -1 when memory ran out. */
int
out_append(struct mm_req *r, const char *p, size_t n)
{
	if (r->out_off > 0 && r->out_off == r->out.len) {
		r->out_off = 0;
		buf_reset(&r->out);
	} else if (r->out_off > 0 && r->out.len + n + 1 > r->out.cap) {
		buf_consume(&r->out, r->out_off);
		r->out_off = 0;
	}
	return buf_append(&r->out, p, n, SIZE_MAX / 2);
}

ssize_t
read_body(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct mm_req *r = cls;
	size_t         avail = r->out.len - r->out_off;

	(void)pos;
	if (r->client_gone)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	if (avail > 0) {
		size_t n = MM_MIN(avail, max);

		memcpy(buf, r->out.data + r->out_off, n);
		r->out_off += n;
		if (r->out_off == r->out.len) {
			r->out_off = 0;
			buf_reset(&r->out);
		}
		r->bytes_out += n;
		if (r->px.paused && r->px.xfer != NULL && r->out.len - r->out_off < HTTP_STREAM_WINDOW / 2) {
			r->px.paused = false;
			up_resume(r->px.xfer);
		}
		return (ssize_t)n;
	}
	if (r->up_done)
		return r->up_ok ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
	req_suspend(r);
	return 0;
}

static enum MHD_Result
queue_pending(struct mm_req *r)
{
	enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, r->pending);

	MHD_destroy_response(r->pending);
	r->pending = NULL;
	return ret;
}

static enum MHD_Result
count_length(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	const char **first = cls;

	(void)kind;
	if (strcasecmp(key, "Content-Length") != 0)
		return MHD_YES;
	if (first[0] == NULL) {
		first[0] = value;
		return MHD_YES;
	}
	if (strcmp(first[0], value ? value : "") != 0)
		first[1] = value ? value : "";
	return MHD_YES;
}

static enum MHD_Result
scan_field(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size, const char *value,
    size_t value_size)
{
	(void)kind;
	hdr_scan_field(cls, key, key_size, value, value_size);
	return MHD_YES;
}

/* A head that a backend might read otherwise than modelmux (hdrcheck.h) is refused before
 * anything starts, and the connection closed: what follows it cannot be framed with certainty. */
static bool
head_ok(struct mm_req *r)
{
	struct hdr_scan s = { 0 };
	const char     *why = NULL;
	int             status;
	const union MHD_ConnectionInfo *hs = MHD_get_connection_info(r->conn,
	    MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);

	if (hs != NULL && hdr_layout_known(MHD_get_version())) /* obs-fold, NULs between lines */
		hdr_scan_layout(&s, r->version + strlen(r->version), r->method + hs->header_size);
	MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, scan_field, &s);
	status = hdr_verdict(&s, strcmp(r->version, MHD_HTTP_VERSION_1_1) == 0, &why);
	if (status == 0 && r->target_cut) {
		status = 400;
		why = "a NUL in the request target";
	}
	if (status == 0)
		return true;
	metrics_refusal("malformed");
	refuse_now(r, status, status == 501 ? "not_implemented" : "invalid_request",
	    "malformed request head: %s", why);
	if (r->pending != NULL)
		MHD_add_response_header(r->pending, MHD_HTTP_HEADER_CONNECTION, "close");
	return false;
}

/* Two different Content-Length headers make the body's end ambiguous (RFC 9112 6.3). */
static bool
conflicting_lengths(const struct mm_req *r)
{
	const char *seen[2] = { NULL, NULL };

	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_length, seen);
	return seen[1] != NULL;
}

/* Which key a route needs: none (/health), a plain one (model routes and the model list), or
 * an admin one (every management route). */
static enum gate_scope
route_scope(const struct mm_req *r)
{
	switch (r->route.scope) {
	case ROUTE_OPEN:
		return GATE_DENIED;
	case ROUTE_USER:
		return GATE_USER;
	case ROUTE_ADMIN:
		break;
	}
	return GATE_ADMIN;
}

struct xff_join {
	struct buf b;
	bool       too_long;
};

static enum MHD_Result
join_xff(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct xff_join *j = cls;

	(void)kind;
	if (strcasecmp(key, "X-Forwarded-For") != 0 || value == NULL)
		return MHD_YES;
	if ((j->b.len > 0 && buf_append(&j->b, ", ", 2, HTTP_XFF_MAX) == -1) ||
	    buf_append(&j->b, value, strlen(value), HTTP_XFF_MAX) == -1)
		j->too_long = true;
	return j->too_long ? MHD_NO : MHD_YES;
}

/* A trusted proxy's X-Forwarded-For: the client is the right-most address that is not itself
 * a trusted proxy (gate_forwarded_client). A chain that is too long is not believed at all. */
static void
forwarded_client(struct mm_req *r)
{
	struct xff_join j = { 0 };

	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, join_xff, &j);
	if (!j.too_long && j.b.len > 0) {
		r->forwarded_for = xstrdup(j.b.data);
		gate_forwarded_client(r->cfg, j.b.data, j.b.len, r->ip, sizeof(r->ip));
	}
	buf_free(&j.b);
}

/* The client's address as text: formatted once per connection, not per request. */
static void
client_ip(struct mm_req *r)
{
	struct conn_ctx *cc = conn_ctx_of(r->conn);

	if (cc == NULL) {
		conn_ip(r->conn, r->peer, sizeof(r->peer));
	} else {
		if (cc->ip[0] == '\0')
			conn_ip(r->conn, cc->ip, sizeof(cc->ip));
		memcpy(r->peer, cc->ip, sizeof(r->peer));
	}
	memcpy(r->ip, r->peer, sizeof(r->ip));
	r->via_proxy = r->cfg->ntrusted_proxies > 0 && gate_trusted_proxy(r->cfg, r->peer);
	if (r->via_proxy)
		forwarded_client(r);
}

/* The gate's verdict (gate_judge) carried out: a refusal or a preflight is answered here.
 * Returns false when it answered the request. */
static bool
gate_pass(struct mm_req *r)
{
	const char         *origin = req_header(r, "Origin");
	struct gate_ask     a = {
		.method = r->method, .path = r->path, .origin = origin,
		.preflight = req_header(r, "Access-Control-Request-Method"),
		.authorization = req_header(r, "Authorization"),
		.x_api_key = req_header(r, "X-API-Key"),
		.need = route_scope(r),
	};
	struct gate_verdict v;
	enum gate_outcome   o;

	client_ip(r);
	if (gate_same_origin(origin, req_header(r, "Host"), H.tls, gate_keys_required(r->cfg)))
		a.origin = origin = NULL; /* the web page's own calls: not cross-origin */
	a.ip = r->ip;
	o = gate_judge(r->cfg, H.rates, &a, loop_now_ms(), &v);
	if (v.cors)
		r->origin = origin;
	if (v.keyed)
		gate_key_name(v.digest, r->key_name);
	if (o == GATE_PREFLIGHT) {
		struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL,
		    MHD_RESPMEM_PERSISTENT);

		gate_cors_headers(r->cfg, origin, true, add_cors_header, resp);
		set_reply(r, 204, resp);
		r->phase = PH_REPLY;
	} else if (o == GATE_REFUSE) {
		for (size_t i = 0; i < MM_ARRAY_LEN(v.reasons) && v.reasons[i] != NULL; i++)
			metrics_refusal(v.reasons[i]);
		r->ticket.retry_after_s = v.retry_after_s;
		reply_error(r, v.status, v.code, "%s", v.msg);
		if (v.challenge)
			MHD_add_response_header(r->pending, "WWW-Authenticate", "Bearer realm=\"modelmux\"");
	}
	OPENSSL_cleanse(&v, sizeof(v));
	return o == GATE_PASS;
}

/* No body byte for limits.bodyIdleTimeoutSeconds: 408 with the JSON error, then close. */
static void
on_body_idle(void *arg)
{
	struct mm_req                  *r = arg;
	const union MHD_ConnectionInfo *ci;
	uint64_t                        idle = (uint64_t)r->cfg->limits.body_idle_timeout_s * 1000u;
	uint64_t                        now = loop_now_ms();

	r->body_timer = 0;
	if (r->phase != PH_BODY && !r->refused)
		return;
	if (now - r->body_last < idle) {
		r->body_timer = loop_timer_add(idle - (now - r->body_last), on_body_idle, r);
		return;
	}
	if (!r->refused) {
		metrics_refusal("timeout");
		refuse_now(r, 408, "request_timeout", "no request body byte in %d s",
		    r->cfg->limits.body_idle_timeout_s);
	}
	/* MHD reads the end at its next run and closes the connection. */
	ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci != NULL)
		shutdown(ci->connect_fd, SHUT_RDWR);
	H.need_run = true;
}

/* MHD's memory per connection is larger than these limits, so a head past them reaches us (a
 * JSON answer) before it would fill MHD's pool (its own HTML answer). Such a head may leave the
 * pool no room for an answer's head: refuse_now writes it on the socket. */
static bool
head_within_limits(struct mm_req *r)
{
	const union MHD_ConnectionInfo *hs;

	if (strlen(r->uri) > (size_t)r->cfg->limits.max_url_bytes) {
		metrics_refusal("size");
		refuse_now(r, 414, "uri_too_long", "request target is longer than %d bytes",
		    r->cfg->limits.max_url_bytes);
		return false;
	}
	hs = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	if (hs != NULL && hs->header_size > (size_t)r->cfg->limits.max_header_bytes) {
		metrics_refusal("size");
		refuse_now(r, 431, "headers_too_large", "request head is larger than %d bytes",
		    r->cfg->limits.max_header_bytes);
		return false;
	}
	return true;
}

/* The head passed: a declared body past the route's limit is a 413 now; a body to come is
 * watched by the body idle timer. */
static void
expect_body(struct mm_req *r)
{
	const char *cl = req_header(r, "Content-Length");
	long long   n = 0;
	int         limit = body_limit(r);

	if (cl != NULL && parse_int(cl, 0, INT64_MAX, &n) == -1)
		n = 0;
	if (n > (long long)limit) {
		/* Before the body: on its own MHD would answer and close at once on a client
		 * still sending, which often loses the answer (EPIPE in Node). */
		metrics_refusal("size");
		refuse_now(r, 413, "body_too_large", "request body is larger than %d bytes", limit);
		return;
	}
	if (n > 0 || req_header(r, "Transfer-Encoding") != NULL) {
		r->body_last = loop_now_ms();
		r->body_timer = loop_timer_add((uint64_t)r->cfg->limits.body_idle_timeout_s * 1000u,
		    on_body_idle, r);
	}
}

static void
first_call(struct mm_req *r)
{
	struct conn_ctx *cc = conn_ctx_of(r->conn);
	const char      *rid = req_header(r, "X-Request-ID");
	const char      *q = strchr(r->uri, '?');

	if (cc != NULL) {
		loop_timer_cancel(cc->head_timer);
		cc->head_timer = 0;
	}
	if (rid != NULL && valid_request_id(rid))
		snprintf(r->id, sizeof(r->id), "%s", rid);
	else
		gen_id(r->id, sizeof(r->id));
	r->path = q ? xstrndup(r->uri, (size_t)(q - r->uri)) : xstrdup(r->uri);
	r->query = q ? q + 1 : NULL;
	r->route = router_match_head(r->method, r->path, req_header(r, "Accept"), &r->method_ok);
	r->phase = PH_BODY;
	if (!head_within_limits(r) || !head_ok(r))
		return;
	if (conflicting_lengths(r)) {
		reply_error(r, 400, "invalid_request", "conflicting Content-Length headers");
		return;
	}
	if (!gate_pass(r))
		return;
	/* Past the head: a stalled body is bounded by the body idle timeout. Our timer answers it
	 * with a 408 (on_body_idle); MHD's, a second later, only closes, and stays as a backstop. */
	MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT,
	    (unsigned)r->cfg->limits.body_idle_timeout_s + 1u);
	if (r->route.kind == ROUTE_NONE) {
		char lq[300];

		reply_error(r, 404, "not_found", "no route for %s %s", r->method,
		    log_q(lq, sizeof(lq), r->path));
		return;
	}
	/* A route that takes no body is told so after the little it tolerates (or a 413). */
	if (!r->method_ok && r->route.body != BODY_NONE) {
		refuse_method(r);
		return;
	}
	if (r->route.kind == ROUTE_UPSTREAM) {
		r->ws = is_ws_upgrade(r);
		check_upstream(r);
	} else if (r->route.kind == ROUTE_QUERY_MODEL) {
		check_query_model(r);
	} else if (r->route.kind == ROUTE_MULTIPART_MODEL) {
		const char *err = NULL;

		if ((r->upl.mp = mp_new(req_header(r, "Content-Type"), "model", &err)) == NULL)
			reply_error(r, 400, "invalid_request", "%s", err);
	}
	if (r->pending == NULL)
		expect_body(r);
}

/* libmicrohttpd 0.9.75 splits the request line in place: the target it hands over ends at
 * the first NUL (so did the copy on_uri took), and the version follows the target's true end in
 * the same buffer, after the blanks it turned into NULs. A target longer than the copy was cut
 * by a NUL. */
static bool
target_cut(const char *url, const char *version, const char *copy)
{
	size_t n;

	if (version <= url || (size_t)(version - url) > (size_t)H.cfg->limits.max_url_bytes + 16 ||
	    strncmp(version, "HTTP/", 5) != 0)
		return false; /* not laid out that way (or over the URL limit): nothing to tell */
	n = (size_t)(version - url);
	while (n > 0 && (url[n - 1] == '\0' || url[n - 1] == ' '))
		n--;
	return n > strlen(copy);
}

/* A refused request's body: dropped, for a while. MHD takes an answer still waiting (TLS) once
 * the body is all in; one sent on the socket ends it. */
static enum MHD_Result
drain_refused(struct mm_req *r, size_t *upload_size)
{
	if (*upload_size == 0)
		return r->pending ? queue_pending(r) : MHD_NO;
	r->drained += *upload_size;
	*upload_size = 0;
	/* Like nginx's lingering close: a client busy sending may not read the answer at
	 * once, and a close on unread data resets the connection and loses it. */
	return r->drained > HTTP_413_DRAIN &&
	    loop_now_ms() - r->refused_ms >= HTTP_LINGER_MS ? MHD_NO : MHD_YES;
}

/* A spooled body (BODY_SPOOL): kept as it comes (bounded memory), scanned on the way when
 * multipart, then sent on as it came. */
static void
take_spooled(struct mm_req *r, const char *data, size_t n)
{
	const char *err = NULL;
	int         sp;

	if (!r->body_too_large && r->upl.total + n > (uint64_t)body_limit(r)) {
		r->body_too_large = true;
		buf_free(&r->body);
		metrics_refusal("size");
		refuse_now(r, 413, "body_too_large", "request body is larger than %d bytes",
		    body_limit(r));
		r->drained = n;
		return;
	}
	if (r->upl.error != NULL)
		return;
	if (r->upl.mp != NULL && mp_feed(r->upl.mp, data, n, &err) == -1) {
		r->upl.error = err;
	} else if ((sp = spool_append(r, data, n)) == -2) {
		/* Full: answered now, the rest dropped like an oversized body's. */
		r->body_too_large = true;
		buf_free(&r->body);
		metrics_refusal("storage");
		r->ticket.retry_after_s = HTTP_SPOOL_RETRY_S;
		refuse_now(r, 507, "insufficient_storage", "no room to store the upload now "
		    "(limits.maxSpoolBytes, or this client's share of it by address or key); retry "
		    "later");
		r->drained = n;
	} else if (sp == -1) {
		log_error("http", "req=%s msg=\"cannot spool the upload\" err=\"%s\"", r->id,
		    strerror(errno));
		r->upl.error = "cannot store the upload";
		r->upl.spool_fd = r->upl.spool_fd == -1 ? -2 : r->upl.spool_fd;
	} else {
		r->upl.total += n;
	}
}

/* A body kept in memory (BODY_JSON), within limits.maxJsonBodyBytes. */
static void
take_json(struct mm_req *r, const char *data, size_t n)
{
	const char *cl = req_header(r, "Content-Length");
	long long   want;

	/* A declared length (checked against the limit in first_call) is reserved at once:
	 * the body then costs its size, not up to twice that from doubling. */
	if (r->body.cap == 0 && cl != NULL && parse_int(cl, 1, INT32_MAX, &want) == 0 &&
	    want <= (long long)r->cfg->limits.max_json_body_bytes)
		(void)!buf_reserve(&r->body, (size_t)want); /* a failure shows in buf_append */
	/* Past the limit nothing is kept: the 413 goes out at once (refuse_now), the rest is
	 * read and dropped for a while, and an endless body is cut when that runs out. */
	if (buf_append(&r->body, data, n, (size_t)r->cfg->limits.max_json_body_bytes) == -1) {
		r->body_too_large = true;
		buf_free(&r->body);
		metrics_refusal("size");
		refuse_now(r, 413, "body_too_large", "request body is larger than %d bytes",
		    r->cfg->limits.max_json_body_bytes);
		r->drained = n;
	}
}

/* A piece of the body, by the route's body policy. */
static void
take_body(struct mm_req *r, const char *data, size_t n)
{
	switch (r->route.body) {
	case BODY_SPOOL:
		take_spooled(r, data, n);
		break;
	case BODY_NONE:
		/* Management routes take no body: a little is tolerated and dropped, no more. */
		r->drained += n;
		if (r->drained > HTTP_API_BODY_MAX) {
			metrics_refusal("size");
			refuse_now(r, 413, "body_too_large", "%s takes no request body", r->path);
			r->drained = 0;
		}
		break;
	default:
		take_json(r, data, n);
		break;
	}
}

/* The body is all in: on to what the route does with it. */
static void
body_done(struct mm_req *r)
{
	switch (r->route.kind) {
	case ROUTE_JSON_MODEL:
		dispatch_model(r);
		break;
	case ROUTE_UPSTREAM:
	case ROUTE_QUERY_MODEL:
		dispatch_upstream(r);
		break;
	case ROUTE_MULTIPART_MODEL:
		dispatch_multipart(r);
		break;
	case ROUTE_FEED:
	case ROUTE_API:
		if (!r->method_ok)
			refuse_method(r);
		else if (r->route.kind == ROUTE_FEED)
			start_feed(r);
		else
			dispatch_api(r);
		break;
	case ROUTE_STATIC:
		if (!r->method_ok)
			refuse_method(r);
		else
			serve_ui(r);
		break;
	case ROUTE_NONE: /* answered in first_call */
		break;
	}
}

enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
    const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct mm_req *r = *con_cls;

	(void)cls;
	if (r == NULL || r->client_gone)
		return MHD_NO;
	if (r->phase == PH_HEAD) {
		r->conn = conn;
		r->method = method;
		r->version = version;
		r->target_cut = target_cut(url, version, r->uri);
		first_call(r);
		/* An early answer (413, 405) goes out without reading the body. */
		return r->pending ? queue_pending(r) : MHD_YES;
	}
	if (r->refused)
		return drain_refused(r, upload_size);
	if (r->pending)
		return queue_pending(r);
	if (r->phase != PH_BODY) /* resumed with nothing to say: wait on */
		return MHD_YES;
	if (*upload_size > 0) {
		r->body_last = loop_now_ms();
		take_body(r, upload_data, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	loop_timer_cancel(r->body_timer);
	r->body_timer = 0;
	body_done(r);
	return r->pending ? queue_pending(r) : MHD_YES;
}

void *
on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct mm_req   *r = xcalloc(1, sizeof(*r));
	struct conn_ctx *cc = conn_ctx_of(conn);

	(void)cls;
	r->conn = conn;
	r->uri = xstrdup(uri);
	r->cfg = cfg_ref(H.cfg);
	r->watch_fd = -1;
	r->upl.spool_fd = -1;
	r->t_start = loop_now_ms();
	if (cc != NULL)
		cc->req = r;
	r->live_next = H.live;
	if (H.live != NULL)
		H.live->live_prev = r;
	H.live = r;
	if (++H.nlive > H.peak_live)
		H.peak_live = H.nlive;
	return r;
}

/* What the request holds in other modules is let go: timers, watches, the upstream
 * transfer (cancelled), its WebSocket's backend side, its grant, its management call, its
 * feed. */
static void
req_release(struct mm_req *r)
{
	loop_timer_cancel(r->body_timer);
	if (r->watch_fd != -1)
		loop_fd_del(r->watch_fd);
	loop_timer_cancel(r->watch_timer);
	if (r->px.xfer != NULL) {
		up_cancel(r->px.xfer);
		log_info("http", "req=%s msg=\"client gone, upstream request cancelled\"", r->id);
	}
	tunnel_free(r->tun);
	sched_release(&r->ticket);
	if (r->api_pending)
		api_cancel(&r->api);
	feed_free(r);
	loop_timer_cancel(r->px.loading_timer);
}

/* The request's metrics and its access log line. */
static void
log_access(const struct mm_req *r, enum MHD_RequestTerminationCode toe, uint64_t now)
{
	char qp[512], qm[300];

	if (r->method != NULL)
		metrics_request(r->model ? r->model->id : NULL, r->route.endpoint, r->status,
		    r->t_first_byte ? (double)(r->t_first_byte - r->t_start) / 1000.0 : -1.0);
	if (r->method != NULL && r->model != NULL && r->model->peer != NULL)
		peer_count_request(r->model->peer->name, r->status);
	if (log_get_level() <= LOG_INFO) /* its fields cost quoting: not for a line dropped */
		log_emit(LOG_INFO, "access", r->id[0] ? r->id : NULL,
		    "method=%s path=%s status=%d bytes=%llu model=%s queued_ms=%lld first_byte_ms=%lld "
		    "total_ms=%llu prompt_tokens=%lld completion_tokens=%lld end=%s",
		    r->method ? r->method : "-", log_q(qp, sizeof(qp), r->path ? r->path : r->uri), r->status,
		    r->bytes_out, log_q(qm, sizeof(qm), r->model_name ? r->model_name : ""),
		    r->t_granted ? (long long)(r->t_granted - r->t_start) : -1LL,
		    r->t_first_byte ? (long long)(r->t_first_byte - r->t_start) : -1LL,
		    (unsigned long long)(now - r->t_start),
		    r->px.usage.found ? r->px.usage.prompt : -1LL, r->px.usage.found ? r->px.usage.completion : -1LL,
		    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "ok" :
		    toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT || r->client_gone ? "client_abort" :
		    toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? "timeout" : "error");
}

/* A model request ended: one entry in the activity ring (GET /api/activity, the web page). */
static void
note_activity(const struct mm_req *r, uint64_t now)
{
	struct activity_entry e;
	struct timespec       ts;

	if (r->model == NULL || r->method == NULL)
		return;
	memset(&e, 0, sizeof(e));
	clock_gettime(CLOCK_REALTIME, &ts);
	e.time_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	snprintf(e.model, sizeof(e.model), "%s", r->model->id);
	snprintf(e.route, sizeof(e.route), "%s", r->route.endpoint);
	e.status = r->status;
	e.stream = r->px.sse;
	e.queued_ms = r->t_granted ? (int64_t)(r->t_granted - r->t_start) : -1;
	e.first_byte_ms = r->t_first_byte ? (int64_t)(r->t_first_byte - r->t_start) : -1;
	e.total_ms = (int64_t)(now - r->t_start);
	e.prompt_tokens = r->px.usage.found ? r->px.usage.prompt : -1;
	e.completion_tokens = r->px.usage.found ? r->px.usage.completion : -1;
	activity_add(&e, (size_t)r->cfg->activity_max);
}

/* The request's own memory, and its place in H.live. */
static void
req_free(struct mm_req *r)
{
	free(r->api.reply.body);
	if (r->pending)
		MHD_destroy_response(r->pending);
	if (r->px.whole)
		MHD_destroy_response(r->px.whole);
	buf_free(&r->body);
	buf_free(&r->out);
	buf_free(&r->px.usage.keep);
	mp_free(r->upl.mp);
	if (r->upl.spool_fd >= 0)
		close(r->upl.spool_fd);
	spool_release(r);
	if (r->px.headers != NULL && r->model != NULL && r->model->upstream_api_key != NULL)
		OPENSSL_cleanse(r->px.headers, r->px.headers_size);
	free(r->px.headers);
	cJSON_free(r->px.body);
	free(r->model_name);
	free(r->px.path);
	free(r->forwarded_for);
	free(r->path);
	free(r->uri);
	cfg_unref(r->cfg);
	if (r->live_prev != NULL)
		r->live_prev->live_next = r->live_next;
	else
		H.live = r->live_next;
	if (r->live_next != NULL)
		r->live_next->live_prev = r->live_prev;
	H.nlive--;
	free(r);
}

void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct mm_req *r = *con_cls;
	uint64_t       now = loop_now_ms();

	(void)cls;
	if (r == NULL)
		return;
	*con_cls = NULL;
	if (conn != NULL && r->status == 0 && (r->status = mhd_status(conn)) >= 400)
		log_mhd_refusal(conn, r->id, sizeof(r->id), r->status, r->uri);
	if (conn != NULL)
		conn_request_ended(conn);
	req_release(r);
	log_access(r, toe, now);
	note_activity(r, now);
	req_free(r);
	H.last_end_ms = now;
	if (H.trim_timer == 0)
		H.trim_timer = loop_timer_add(HTTP_TRIM_QUIET_MS, on_quiet, NULL);
}
