/* http: libmicrohttpd front end on the loop, and the per-request state machine.
 *
 * A request's life: PH_HEAD (first callback: route, request id) → PH_BODY (collect the
 * bounded body) → PH_WAIT_MODEL (suspended in sched's queue) → PH_WAIT_UPSTREAM (suspended
 * until the backend's response head) → PH_STREAM (MHD pulls the body from a bounded window
 * the upstream transfer fills; a full window pauses the transfer, an empty one suspends the
 * connection). Any answer of our own (an error, a management reply) is PH_REPLY.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#include "modelmux/api.h"
#include "modelmux/gate.h"
#include "modelmux/http.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/metrics.h"
#include "modelmux/multipart.h"
#include "modelmux/router.h"
#include "modelmux/sched.h"
#include "modelmux/upstream.h"
#include "modelmux/util.h"

enum req_phase {
	PH_HEAD = 0,
	PH_BODY,
	PH_WAIT_MODEL,
	PH_WAIT_UPSTREAM,
	PH_STREAM,
	PH_REPLY,
};

struct mm_req {
	struct MHD_Connection *conn;
	char                   id[65];
	char                  *uri;      /* raw request target, as received */
	char                  *path;     /* raw path, no query */
	const char            *query;    /* into uri, after '?'; NULL if none */
	const char            *method;   /* MHD's, valid for the request's life */
	enum req_phase         phase;
	struct route           route;
	struct cfg            *cfg;
	struct buf             body;
	bool                   body_too_large;
	size_t                 drained;     /* body bytes dropped after the limit */
	/* multipart: scanned as it streams; kept in `body` up to HTTP_MP_MEMORY, past that in an
	 * unlinked temporary file. Sent on with at most the model value replaced. */
	struct mp_scan        *mp;
	const char            *mp_error;
	int                    spool_fd;
	uint64_t               body_total;
	uint64_t               send_pos;    /* bytes of the (rewritten) body handed to curl */
	uint64_t               cut_a, cut_z; /* the model value's range, replaced by use_model_name */
	const struct cfg_model *model;
	char                  *model_name;  /* as the client sent it */
	char                  *up_path;     /* /upstream/<model>/<rest>: <rest>, checked, re-encoded */
	char                  *up_body;     /* rewritten body, or NULL to send `body` */
	size_t                 up_body_len;
	char                 **up_headers;
	struct sched_ticket    ticket;
	struct api_call        api;
	struct log_sub        *sub;         /* /logs/stream, /api/events: the live feed */
	char                  *sub_model;   /* only lines about this model */
	bool                   sub_events;  /* SSE framing */
	unsigned long          missed;      /* lines dropped for a slow reader, not yet told */
	bool                   api_pending;
	struct up_xfer        *up;
	bool                   up_done, up_ok, up_paused;
	bool                   sse;         /* the response is text/event-stream */
	bool                   wants_stream; /* the JSON body asked for "stream": true */
	bool                   loading;     /* sendLoadingState: our SSE head went out already */
	bool                   discard_up;  /* the backend's body has no place in the stream */
	uint64_t               loading_timer;
	uint64_t               loading_since;
	char                   tail2[2];    /* the last two body bytes from the backend */
	struct router_usage_scan usage;     /* token counts read from the response */
	struct MHD_Response   *pending;     /* answer to queue at the next handler call */
	int                    status;      /* the status queued */
	struct buf             out;         /* response window: bytes [out_off, out.len) */
	size_t                 out_off;
	bool                   suspended;
	bool                   client_gone;
	int                    watch_fd;
	char                   ip[GATE_MAX_IP_BYTES];
	const char            *origin;      /* an allowed Origin: CORS headers go on the answer */
	uint64_t               t_start, t_granted, t_first_byte;
	unsigned long long     bytes_out;
};

static struct {
	struct MHD_Daemon *d;
	struct cfg        *cfg;
	int                listen_fd;
	int                epoll_fd;
	char               bound[INET6_ADDRSTRLEN + 8];
	bool               loopback;  /* the listener is on a loopback address */
	size_t             nconn;
	bool               need_run; /* a connection was resumed: MHD_run must follow */
	struct gate_rates *rates;
} H = { .listen_fd = -1, .epoll_fd = -1 };

static void req_resume(struct mm_req *r);
static void start_upstream(struct mm_req *r);
static void stream_error_event(struct mm_req *r, const char *reason);

/* Per connection: a deadline for each request head, whatever pace it trickles in at (MHD's
 * own timeout only bounds silence). */
struct conn_ctx {
	struct MHD_Connection *conn;
	uint64_t               head_timer;
};

static void
on_head_deadline(void *arg)
{
	struct conn_ctx                *cc = arg;
	const union MHD_ConnectionInfo *ci;

	cc->head_timer = 0;
	ci = MHD_get_connection_info(cc->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	log_info("http", "msg=\"request head not complete in time, closing the connection\" timeout_s=%d",
	    H.cfg->limits.header_timeout_s);
	metrics_refusal("size");
	/* MHD notices at its next read and closes the connection itself. */
	if (ci != NULL)
		shutdown(ci->connect_fd, SHUT_RDWR);
	H.need_run = true;
}

static void
arm_head_deadline(struct conn_ctx *cc)
{
	loop_timer_cancel(cc->head_timer);
	cc->head_timer = loop_timer_add((uint64_t)H.cfg->limits.header_timeout_s * 1000u,
	    on_head_deadline, cc);
}

static struct conn_ctx *
conn_ctx_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}


/* --- small helpers --- */

/* Request and trace ids: unique, not secret. A xorshift generator seeded once from the
 * kernel saves a getrandom call per id. */
static uint64_t
next_rand(void)
{
	static uint64_t st;

	if (st == 0 && (getrandom(&st, sizeof(st), 0) != (ssize_t)sizeof(st) || st == 0))
		st = loop_now_ms() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
	st ^= st << 13;
	st ^= st >> 7;
	st ^= st << 17;
	return st * 0x2545f4914f6cdd1dull;
}

static void
gen_id(char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t          v = next_rand();

	for (size_t i = 0; i < 16 && i + 1 < n; i++) {
		out[i] = hex[(v >> (60 - 4 * i)) & 15];
		out[i + 1] = '\0';
	}
}

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
static bool
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

static const char *
header(const struct mm_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

static void
add_cors_header(void *arg, const char *name, const char *value)
{
	MHD_add_response_header(arg, name, value);
}

/* Makes `resp` the answer; it is queued at the next handler call (now, if in one). */
static void
set_reply(struct mm_req *r, int status, struct MHD_Response *resp)
{
	if (r->pending)
		MHD_destroy_response(r->pending);
	r->pending = resp;
	r->status = status;
	MHD_add_response_header(resp, "X-Request-ID", r->id);
	if (r->origin != NULL)
		gate_cors_headers(r->cfg, r->origin, false, add_cors_header, resp);
}

static void
reply_text(struct mm_req *r, int status, const char *ctype, char *body, const char *allow)
{
	size_t               len = strlen(body);
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);

	MHD_add_response_header(resp, "Content-Type", ctype);
	r->bytes_out = len;
	if (allow)
		MHD_add_response_header(resp, "Allow", allow);
	set_reply(r, status, resp);
	r->phase = PH_REPLY;
}

/* Answers with an OpenAI-shaped error, and logs it. */
static void __attribute__((format(printf, 4, 5)))
reply_error(struct mm_req *r, int status, const char *code, const char *fmt, ...)
{
	char    msg[2048], q[2200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_emit(status >= 500 ? LOG_WARN : LOG_INFO, "http", r->id, "status=%d code=%s msg=%s",
	    status, code, log_q(q, sizeof(q), msg));
	reply_text(r, status, "application/json", api_error_json(status, code, msg), NULL);
	if (r->ticket.retry_after_s > 0) {
		char ra[16];

		snprintf(ra, sizeof(ra), "%d", r->ticket.retry_after_s);
		MHD_add_response_header(r->pending, "Retry-After", ra);
	}
}

/* --- suspension, and noticing a client that leaves while suspended --- */

static void
on_client_hup(int fd, uint32_t events, void *arg)
{
	struct mm_req *r = arg;

	(void)fd;
	(void)events;
	log_info("http", "req=%s msg=\"client disconnected\" phase=%d", r->id, (int)r->phase);
	r->client_gone = true;
	if (r->up) {
		up_cancel(r->up);
		r->up = NULL;
		log_info("http", "req=%s msg=\"upstream request cancelled\"", r->id);
	}
	sched_release(&r->ticket);
	if (r->api_pending) {
		api_cancel(&r->api);
		r->api_pending = false;
	}
	log_unsubscribe(r->sub);
	r->sub = NULL;
	loop_timer_cancel(r->loading_timer);
	r->loading_timer = 0;
	req_resume(r);
}

static void
req_suspend(struct mm_req *r)
{
	const union MHD_ConnectionInfo *ci;

	if (r->suspended)
		return;
	MHD_suspend_connection(r->conn);
	r->suspended = true;
	ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci != NULL && loop_fd_add(ci->connect_fd, EPOLLRDHUP, on_client_hup, r) == 0)
		r->watch_fd = ci->connect_fd;
}

static void
req_resume(struct mm_req *r)
{
	if (!r->suspended)
		return;
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
static int
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

/* --- upstream callbacks --- */

static ssize_t
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
		if (r->up_paused && r->up != NULL && r->out.len - r->out_off < HTTP_STREAM_WINDOW / 2) {
			r->up_paused = false;
			up_resume(r->up);
		}
		return (ssize_t)n;
	}
	if (r->up_done)
		return r->up_ok ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
	req_suspend(r);
	return 0;
}

static void
on_up_head(void *arg, int status, const struct up_header *h, size_t n, long long content_length)
{
	struct mm_req       *r = arg;
	struct MHD_Response *resp;
	bool                 sse = false;

	r->t_first_byte = loop_now_ms();
	if (r->loading) {
		/* Our head went out long ago: the backend's stream continues ours. */
		if (status != 200) {
			char why[64];

			snprintf(why, sizeof(why), "the backend answered %d", status);
			stream_error_event(r, why);
			r->discard_up = true;
		}
		return;
	}
	resp = MHD_create_response_from_callback(content_length >= 0 ? (uint64_t)content_length
	                                                            : MHD_SIZE_UNKNOWN,
	    HTTP_SEND_BLOCK, read_body, r, NULL);
	for (size_t i = 0; i < n; i++) {
		if (strcasecmp(h[i].name, "content-type") == 0 &&
		    str_has_prefix_ci(h[i].value, "text/event-stream"))
			sse = true;
		/* The gate is the only source of CORS headers. */
		if (strcasecmp(h[i].name, "x-request-id") == 0 ||
		    str_has_prefix_ci(h[i].name, "access-control-"))
			continue;
		MHD_add_response_header(resp, h[i].name, h[i].value);
	}
	if (sse)
		MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	r->usage.sse = r->sse = sse && content_length < 0;
	set_reply(r, status, resp);
	r->phase = PH_STREAM;
	req_resume(r);
}

static size_t
on_up_body(void *arg, const char *p, size_t n)
{
	struct mm_req *r = arg;
	size_t         held = r->out.len - r->out_off;

	if (r->discard_up)
		return n;
	if (held > 0 && held + n > HTTP_STREAM_WINDOW) {
		r->up_paused = true;
		return 0;
	}
	if (r->route.kind == ROUTE_JSON_MODEL)
		router_usage_feed(&r->usage, p, n);
	if (n >= 2) {
		r->tail2[0] = p[n - 2];
		r->tail2[1] = p[n - 1];
	} else if (n == 1) {
		r->tail2[0] = r->tail2[1];
		r->tail2[1] = p[0];
	}
	if (out_append(r, p, n) == -1) {
		r->up_paused = true;
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
	const char *sep = r->tail2[1] != '\n' && r->tail2[1] != '\0' ? "\n\n"
	                : r->tail2[0] != '\n' && r->tail2[1] != '\0' ? "\n" : "";
	char *ev = xasprintf("%sdata: %s\n\n", sep, json);

	if (out_append(r, ev, strlen(ev)) == -1)
		log_warn("http", "req=%s msg=\"no memory for the stream's error event\"", r->id);
	free(ev);
	free(json);
}

static void
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

	r->up = NULL;
	r->up_done = true;
	r->up_ok = ok;
	sched_release(&r->ticket);
	if (ok)
		(void)router_usage_end(&r->usage);
	if (r->usage.found)
		metrics_tokens(r->model->id, r->usage.prompt, r->usage.completion);
	if (r->phase == PH_WAIT_UPSTREAM) {
		reply_error(r, 502, "backend_unavailable", "model %s: backend request failed: %s",
		    r->model->id, reason ? reason : "no response");
	} else if (!ok) {
		log_warn("http", "req=%s model=%s msg=\"backend closed the response early\" reason=%s",
		    r->id, r->model->id, log_q(q, sizeof(q), reason));
		if (r->sse)
			stream_error_event(r, reason);
	}
	req_resume(r);
}

static const struct up_callbacks up_cb = {
	.head = on_up_head,
	.body = on_up_body,
	.done = on_up_done,
};

/* --- multipart bodies --- */

/* An unlinked temporary file for a body past HTTP_MP_MEMORY (O_TMPFILE, else mkstemp+unlink). */
static int
spool_open(void)
{
	const char *dir = getenv("TMPDIR");
	char        path[4096];
	int         fd;

	if (dir == NULL || *dir == '\0')
		dir = "/tmp";
	if ((fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) != -1)
		return fd;
	snprintf(path, sizeof(path), "%s/modelmux-XXXXXX", dir);
	if ((fd = mkostemp(path, O_CLOEXEC)) != -1)
		unlink(path);
	return fd;
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Keeps a piece of a multipart body: in memory while small, then in the spool file. */
static int
spool_append(struct mm_req *r, const char *p, size_t n)
{
	if (r->spool_fd == -1 && r->body.len + n <= HTTP_MP_MEMORY)
		return buf_append(&r->body, p, n, HTTP_MP_MEMORY);
	if (r->spool_fd == -1) {
		if ((r->spool_fd = spool_open()) == -1)
			return -1;
		if (write_all(r->spool_fd, r->body.data ? r->body.data : "", r->body.len) == -1)
			return -1;
		buf_free(&r->body);
	}
	return write_all(r->spool_fd, p, n);
}

static size_t
src_read(struct mm_req *r, char *buf, size_t n, uint64_t off)
{
	if (r->spool_fd == -1) {
		n = (size_t)MM_MIN((uint64_t)n, r->body_total - off);
		memcpy(buf, r->body.data + off, n);
		return n;
	}
	for (;;) {
		ssize_t got = pread(r->spool_fd, buf, n, (off_t)off);

		if (got == -1 && errno == EINTR)
			continue;
		return got > 0 ? (size_t)got : 0;
	}
}

/* curl pulls the body: [0, cut_a) of what came, the new model name, then [cut_z, end). */
static size_t
mp_body_read(void *arg, char *buf, size_t n)
{
	struct mm_req *r = arg;
	const char    *ins = r->cut_z > r->cut_a ? r->model->use_model_name : "";
	uint64_t       ins_len = strlen(ins), pos = r->send_pos, got;

	if (pos < r->cut_a) {
		got = src_read(r, buf, (size_t)MM_MIN((uint64_t)n, r->cut_a - pos), pos);
	} else if (pos < r->cut_a + ins_len) {
		got = MM_MIN((uint64_t)n, r->cut_a + ins_len - pos);
		memcpy(buf, ins + (pos - r->cut_a), (size_t)got);
	} else {
		uint64_t src = pos - r->cut_a - ins_len + r->cut_z;

		got = src < r->body_total ? src_read(r, buf, (size_t)MM_MIN((uint64_t)n, r->body_total - src), src) : 0;
	}
	r->send_pos += got;
	return (size_t)got;
}

static uint64_t
mp_send_len(const struct mm_req *r)
{
	uint64_t ins = r->cut_z > r->cut_a ? strlen(r->model->use_model_name) : 0;

	return r->body_total - (r->cut_z - r->cut_a) + ins;
}

/* --- toward the backend --- */

static bool
forwardable(const char *name)
{
	static const char *const drop[] = {
		"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
		"trailer", "upgrade", "content-length", "expect", "x-request-id", "traceparent",
		/* The client's credentials are for modelmux, never for a backend. */
		"authorization", "x-api-key", "cookie", "proxy-authorization",
	};

	for (size_t i = 0; i < MM_ARRAY_LEN(drop); i++)
		if (strcasecmp(name, drop[i]) == 0)
			return false;
	return true;
}

struct hdr_collect {
	char  **v;
	size_t  n, cap;
};

static void
hdr_push(struct hdr_collect *c, const char *key, const char *value)
{
	if (c->n + 2 >= c->cap) {
		c->cap = c->cap ? c->cap * 2 : 32;
		c->v = xreallocarray(c->v, c->cap, sizeof(*c->v));
	}
	c->v[c->n++] = xasprintf("%s: %s", key, value ? value : "");
	c->v[c->n] = NULL;
}

static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	if (forwardable(key))
		hdr_push(cls, key, value);
	return MHD_YES;
}

static char **
upstream_headers(struct mm_req *r)
{
	struct hdr_collect c = { 0 };

	const char        *tp = header(r, "traceparent");
	char               trace[56], rnd[33], span[17];

	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_header, &c);
	hdr_push(&c, "X-Request-ID", r->id);
	/* The client's credentials were dropped; the backend may have its own. */
	if (r->model->upstream_api_key != NULL) {
		char *bearer = xasprintf("Bearer %s", r->model->upstream_api_key);

		hdr_push(&c, "Authorization", bearer);
		hdr_push(&c, "X-API-Key", r->model->upstream_api_key);
		OPENSSL_cleanse(bearer, strlen(bearer));
		free(bearer);
	}
	/* Keep a valid incoming trace context, or start one. */
	if (tp != NULL && valid_traceparent(tp)) {
		hdr_push(&c, "traceparent", tp);
	} else {
		gen_id(rnd, 17);
		gen_id(rnd + 16, 17);
		gen_id(span, sizeof(span));
		snprintf(trace, sizeof(trace), "00-%s-%s-01", rnd, span);
		hdr_push(&c, "traceparent", trace);
	}
	return c.v;
}

/* --- sendLoadingState: progress in reasoning_content while the model loads --- */

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

	r->loading_timer = loop_timer_add(HTTP_LOADING_TICK_MS, loading_tick, r);
	loading_chunk(r, ".");
}

/* The answer starts now as an event stream; the model's own stream continues it. */
static void
start_loading(struct mm_req *r)
{
	struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN,
	    HTTP_SEND_BLOCK, read_body, r, NULL);
	char                 head[300];

	MHD_add_response_header(resp, "Content-Type", "text/event-stream");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	set_reply(r, 200, resp);
	r->phase = PH_STREAM;
	r->loading = r->usage.sse = r->sse = true;
	r->loading_since = loop_now_ms();
	snprintf(head, sizeof(head), "Loading model %.200s…\n", r->model->id);
	loading_chunk(r, head);
	r->loading_timer = loop_timer_add(HTTP_LOADING_TICK_MS, loading_tick, r);
}

static void
on_granted(struct sched_ticket *t, int status, const char *msg, void *arg)
{
	struct mm_req *r = arg;

	(void)t;
	if (r->loading) {
		loop_timer_cancel(r->loading_timer);
		r->loading_timer = 0;
	}
	if (status != 0 && r->loading) {
		/* The status line went out with the progress: the failure becomes the last event. */
		stream_error(r, status == 504 ? "backend_timeout" : "backend_start_failed", msg);
		r->up_done = true;
		r->up_ok = false;
		req_resume(r);
		return;
	}
	if (status != 0) {
		reply_error(r, status, status == 504 ? "backend_timeout" : status == 503
		    ? "queue_timeout" : status == 429 ? "queue_full" : "backend_start_failed", "%s", msg);
		req_resume(r);
		return;
	}
	r->t_granted = loop_now_ms();
	if (r->loading) {
		char done[64];

		snprintf(done, sizeof(done), "Done! (%.2fs)\n",
		    (double)(r->t_granted - r->loading_since) / 1000.0);
		loading_chunk(r, done);
	}
	start_upstream(r);
}

static void
start_upstream(struct mm_req *r)
{
	const char *err = NULL, *proxy = sched_ticket_proxy(&r->ticket);
	char       *url = xasprintf("%s%s%s%s", proxy, r->up_path ? r->up_path : r->path,
	    r->query ? "?" : "", r->query ? r->query : "");
	struct up_request ur = {
		.url = url,
		.method = r->method,
		.headers = r->up_headers,
		.body = r->up_body ? r->up_body : (r->body.data ? r->body.data : ""),
		.body_len = r->up_body ? r->up_body_len : r->body.len,
		.connect_timeout_s = r->model->timeouts.connect_s,
		.header_timeout_s = r->model->timeouts.response_header_s,
	};

	if (r->route.kind == ROUTE_MULTIPART_MODEL) {
		r->send_pos = 0;
		ur.body = NULL;
		ur.body_len = (size_t)mp_send_len(r);
		ur.read = mp_body_read;
		ur.read_arg = r;
	}

	if (!r->loading)
		r->phase = PH_WAIT_UPSTREAM;
	r->up = up_start(&ur, &up_cb, r, &err);
	free(url);
	if (r->up == NULL) {
		sched_release(&r->ticket);
		if (r->loading) {
			stream_error(r, "backend_unavailable", err);
			r->up_done = true;
			req_resume(r);
			return;
		}
		reply_error(r, 502, "backend_unavailable", "model %s: %s", r->model->id, err);
		req_resume(r);
		return;
	}
	if (!r->loading)
		req_suspend(r);
}

/* The body is complete: find the model, rewrite, and acquire it. */
static void acquire_model(struct mm_req *r);

static void
dispatch_model(struct mm_req *r)
{
	char        err[256];
	const char *name;
	cJSON      *doc;

	if (r->body_too_large) {
		metrics_refusal("size");
		reply_error(r, 413, "body_too_large", "request body is larger than %d bytes",
		    r->cfg->limits.max_json_body_bytes);
		return;
	}
	if ((doc = router_json_model(r->body.data, r->body.len, r->cfg->limits.max_json_depth, &name,
	    err, sizeof(err))) == NULL) {
		reply_error(r, 400, "invalid_request", "%s", err);
		return;
	}
	r->model_name = xstrdup(name);
	r->wants_stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "stream"));
	if ((r->model = cfg_find_model(r->cfg, name)) == NULL) {
		reply_error(r, 404, "model_not_found", "model %.256s not found", r->model_name);
		cJSON_Delete(doc);
		return;
	}
	/* A rewritten body is serialised once; its length is the new Content-Length. */
	if (router_rewrite_json(doc, r->model) && (r->up_body = cJSON_PrintUnformatted(doc)) == NULL) {
		cJSON_Delete(doc);
		reply_error(r, 500, "internal_error", "cannot rewrite the request body");
		return;
	}
	r->up_body_len = r->up_body ? strlen(r->up_body) : 0;
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
	return on && r->wants_stream && strcmp(r->path, "/v1/chat/completions") == 0;
}

/* Asks the scheduler for r->model, then goes upstream now or once it is ready. */
static void
acquire_model(struct mm_req *r)
{
	const char *msg = NULL;
	int         status = 0;

	r->up_headers = upstream_headers(r);
	switch (sched_acquire(&r->ticket, r->model, on_granted, r, &status, &msg)) {
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
static void
dispatch_upstream(struct mm_req *r)
{
	if (r->body_too_large) {
		metrics_refusal("size");
		reply_error(r, 413, "body_too_large", "request body is larger than %d bytes",
		    r->cfg->limits.max_json_body_bytes);
		return;
	}
	acquire_model(r);
}

/* The multipart body is all in: which model, and the model value's range for a rewrite. */
static void
dispatch_multipart(struct mm_req *r)
{
	const char *name;
	uint64_t    a, z;

	if (r->body_too_large) {
		metrics_refusal("size");
		reply_error(r, 413, "body_too_large", "request body is larger than %d bytes",
		    r->cfg->limits.max_multipart_body_bytes);
		return;
	}
	if (r->mp_error != NULL) {
		reply_error(r, r->spool_fd == -2 ? 507 : 400, "invalid_request", "%s", r->mp_error);
		return;
	}
	if (!mp_complete(r->mp)) {
		reply_error(r, 400, "invalid_request", "the multipart body ends before its closing boundary");
		return;
	}
	if ((name = mp_field(r->mp, &a, &z)) == NULL || *name == '\0') {
		reply_error(r, 400, "invalid_request", "missing \"model\" form field");
		return;
	}
	r->model_name = xstrdup(name);
	if ((r->model = cfg_find_model(r->cfg, name)) == NULL) {
		reply_error(r, 404, "model_not_found", "model %.256s not found", name);
		return;
	}
	/* useModelName rewrites the model part; every other byte goes through unchanged. */
	if (r->model->use_model_name != NULL) {
		r->cut_a = a;
		r->cut_z = z;
	}
	acquire_model(r);
}

/* GET /v1/audio/voices?model=…, /props?model=…: the model is in the query. */
static void
check_query_model(struct mm_req *r)
{
	char name[512];

	if (router_query_param(r->query, "model", name, sizeof(name)) <= 0) {
		reply_error(r, 400, "invalid_request", "missing ?model= query parameter");
		return;
	}
	r->model_name = xstrdup(name);
	if ((r->model = cfg_find_model(r->cfg, name)) == NULL)
		reply_error(r, 404, "model_not_found", "model %.256s not found", name);
}

/* First call of an /upstream request: which model, and is the rest of the path safe? */
static void
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
	r->up_path = xstrdup(encoded);
}

static void
api_reply(struct mm_req *r)
{
	struct api_reply *a = &r->api.reply;

	if (a->status >= 400)
		log_info("http", "req=%s status=%d path=%s", r->id, a->status, r->path);
	reply_text(r, a->status, a->ctype, a->body, a->allow);
	a->body = NULL; /* now MHD's */
	if (a->retry_after_s > 0) {
		char ra[16];

		snprintf(ra, sizeof(ra), "%d", a->retry_after_s);
		MHD_add_response_header(r->pending, "Retry-After", ra);
	}
}

static void
on_api_done(struct api_call *c)
{
	struct mm_req *r = c->arg;

	r->api_pending = false;
	api_reply(r);
	req_resume(r);
}

/* A line for a live feed. A reader that falls behind loses the oldest lines (never more than
 * HTTP_SUB_WINDOW is held) and is told how many before the next one. Must not log. */
static void
on_feed_line(void *arg, const char *line, size_t len)
{
	struct mm_req *r = arg;
	const char    *pre = r->sub_events ? "data: " : "", *post = r->sub_events ? "\n\n" : "\n";
	size_t         need = len + strlen(pre) + strlen(post) + 64;
	char           marker[96];

	if (r->sub_model != NULL && !log_line_about(line, len, r->sub_model))
		return;
	if (need > HTTP_SUB_WINDOW)
		return;
	while (r->out.len - r->out_off + need > HTTP_SUB_WINDOW) {
		const char *nl = memchr(r->out.data + r->out_off, '\n', r->out.len - r->out_off);
		size_t      to = nl ? (size_t)(nl - r->out.data) + 1 : r->out.len;

		if (r->sub_events && to < r->out.len && r->out.data[to] == '\n')
			to++;
		r->out_off = to;
		r->missed++;
	}
	if (r->missed > 0) {
		if (r->sub_events)
			snprintf(marker, sizeof(marker), "data: {\"type\":\"missed\",\"count\":%lu}\n\n", r->missed);
		else
			snprintf(marker, sizeof(marker), "-- %lu lines missed --\n", r->missed);
		if (out_append(r, marker, strlen(marker)) == 0)
			r->missed = 0;
	}
	if (out_append(r, pre, strlen(pre)) == -1 || out_append(r, line, len) == -1 ||
	    out_append(r, post, strlen(post)) == -1)
		return;
	req_resume(r);
}

/* GET /logs/stream[/<model>] and /api/events: history (or a snapshot), then live, until the
 * client leaves. */
static bool
start_feed(struct mm_req *r)
{
	static const char logs[] = "/logs/stream";
	bool              events = strcmp(r->path, "/api/events") == 0;
	struct MHD_Response *resp;

	if (!events && strncmp(r->path, logs, sizeof(logs) - 1) != 0)
		return false;
	if (!events && r->path[sizeof(logs) - 1] != '\0' &&
	    (r->path[sizeof(logs) - 1] != '/' || r->path[sizeof(logs)] == '\0'))
		return false;
	if (strcmp(r->method, "GET") != 0) {
		reply_error(r, 405, "method_not_allowed", "%s: use GET", r->path);
		return true;
	}
	r->sub_events = events;
	if (!events && r->path[sizeof(logs) - 1] == '/')
		r->sub_model = xstrdup(r->path + sizeof(logs));
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, HTTP_SEND_BLOCK, read_body, r, NULL);
	MHD_add_response_header(resp, "Content-Type", events ? "text/event-stream" : "text/plain; charset=utf-8");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	set_reply(r, 200, resp);
	r->phase = PH_STREAM;
	r->sub = log_subscribe(events ? LOG_CH_EVENTS : LOG_CH_LINES, on_feed_line, r);
	if (events) {
		sched_publish_states(); /* every subscriber sees a snapshot; harmless for the others */
	} else if (r->query == NULL || strstr(r->query, "no-history") == NULL) {
		struct buf hist = { 0 };

		log_history(&hist, r->sub_model);
		/* Only the newest HTTP_SUB_WINDOW of history, whole lines. */
		size_t from = hist.len > HTTP_SUB_WINDOW / 2 ? hist.len - HTTP_SUB_WINDOW / 2 : 0;
		const char *nl = from ? memchr(hist.data + from, '\n', hist.len - from) : NULL;

		from = nl ? (size_t)(nl - hist.data) + 1 : from;
		if (hist.len > from && buf_append(&r->out, hist.data + from, hist.len - from, SIZE_MAX / 2) == -1)
			buf_reset(&r->out);
		buf_free(&hist);
	}
	return true;
}

static void
dispatch_api(struct mm_req *r)
{
	char q[300];

	if (start_feed(r))
		return;
	r->api.cfg = r->cfg;
	r->api.method = r->method;
	r->api.path = r->path;
	r->api.done = on_api_done;
	r->api.arg = r;
	switch (api_handle(&r->api)) {
	case API_NOT_FOUND:
		reply_error(r, 404, "not_found", "no route for %s %s", r->method,
		    log_q(q, sizeof(q), r->path));
		break;
	case API_DONE:
		api_reply(r);
		break;
	case API_PENDING:
		r->api_pending = true;
		r->phase = PH_WAIT_MODEL;
		req_suspend(r);
		break;
	}
}

/* --- MHD callbacks --- */

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
	if (strcmp(r->path, "/health") == 0)
		return GATE_DENIED;
	if (r->route.kind != ROUTE_API || strcmp(r->path, "/v1/models") == 0 ||
	    strcmp(r->path, "/models") == 0)
		return GATE_USER;
	return GATE_ADMIN;
}

static void
client_ip(struct mm_req *r)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn,
	    MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr          *sa = ci ? ci->client_addr : NULL;
	socklen_t                       sl = sa && sa->sa_family == AF_INET6
	                                   ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	if (sa == NULL || getnameinfo(sa, sl, r->ip, sizeof(r->ip), NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(r->ip, sizeof(r->ip), "unknown");
}

static void
refuse_rate(struct mm_req *r, const char *what, int retry_after_s)
{
	metrics_refusal("rate");
	r->ticket.retry_after_s = retry_after_s;
	reply_error(r, 429, "rate_limited", "%s; retry in %d s", what, retry_after_s);
}

/* The gate: origin, API key, scope, rate. Returns false when it answered the request. */
static bool
gate_pass(struct mm_req *r)
{
	const char     *origin = header(r, "Origin");
	enum gate_scope need = route_scope(r), have = GATE_DENIED;
	unsigned char   digest[GATE_DIGEST_LEN];
	char            key[GATE_MAX_KEY_BYTES + 1];
	bool            keyed = false;
	int             len, retry = 0;
	uint64_t        now = loop_now_ms();

	client_ip(r);
	if (origin != NULL) {
		if (!gate_origin_allowed(r->cfg, origin)) {
			char q[300];

			metrics_refusal("cors");
			reply_error(r, 403, "origin_not_allowed", "origin %s is not allowed",
			    log_q(q, sizeof(q), origin));
			return false;
		}
		r->origin = origin;
		if (strcmp(r->method, "OPTIONS") == 0 &&
		    header(r, "Access-Control-Request-Method") != NULL) {
			struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL,
			    MHD_RESPMEM_PERSISTENT);

			r->origin = NULL; /* the preflight set gets added below instead */
			gate_cors_headers(r->cfg, origin, true, add_cors_header, resp);
			set_reply(r, 204, resp);
			r->phase = PH_REPLY;
			return false;
		}
	}
	if (gate_keys_required(r->cfg) && need != GATE_DENIED) {
		if (gate_auth_blocked(H.rates, r->ip, now, &retry)) {
			refuse_rate(r, "too many failed authentication attempts", retry);
			return false;
		}
		len = gate_presented_key(header(r, "Authorization"), header(r, "X-API-Key"), key,
		    sizeof(key));
		have = len < 0 ? GATE_DENIED : gate_check_key(r->cfg, key, (size_t)len, digest);
		OPENSSL_cleanse(key, sizeof(key));
		if (have == GATE_DENIED) {
			metrics_refusal("auth");
			if (gate_auth_failure(H.rates, r->ip, now, &retry) == -1) {
				refuse_rate(r, "too many failed authentication attempts", retry);
				return false;
			}
			reply_error(r, 401, "invalid_api_key", len < 0 ? "an API key is required"
			    : "invalid API key");
			MHD_add_response_header(r->pending, "WWW-Authenticate", "Bearer realm=\"modelmux\"");
			return false;
		}
		if (need == GATE_ADMIN && have != GATE_ADMIN) {
			metrics_refusal("auth");
			reply_error(r, 403, "admin_key_required", "%s needs an admin API key", r->path);
			return false;
		}
		keyed = true;
	}
	if (need != GATE_DENIED &&
	    gate_rate_take(H.rates, r->ip, keyed ? digest : NULL, now, &retry) == -1) {
		refuse_rate(r, "rate limit reached", retry);
		return false;
	}
	return true;
}

static void
first_call(struct mm_req *r)
{
	struct conn_ctx *cc = conn_ctx_of(r->conn);
	const char      *rid = header(r, "X-Request-ID");
	const char *q = strchr(r->uri, '?');
	bool        method_ok;

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
	r->route = router_match(r->method, r->path, &method_ok);
	r->phase = PH_BODY;
	if (strlen(r->uri) > (size_t)r->cfg->limits.max_url_bytes) {
		metrics_refusal("size");
		reply_error(r, 414, "uri_too_long", "request target is longer than %d bytes",
		    r->cfg->limits.max_url_bytes);
		return;
	}
	if (conflicting_lengths(r)) {
		reply_error(r, 400, "invalid_request", "conflicting Content-Length headers");
		return;
	}
	if (!gate_pass(r))
		return;
	/* Past the head: a stalled body is bounded by the body idle timeout. */
	MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT,
	    (unsigned)r->cfg->limits.body_idle_timeout_s);
	if (!method_ok) {
		const char *want = r->route.kind == ROUTE_QUERY_MODEL ? "GET" : "POST";

		reply_error(r, 405, "method_not_allowed", "%s %s: use %s", r->method, r->path, want);
		MHD_add_response_header(r->pending, "Allow", want);
		return;
	}
	if (r->route.kind == ROUTE_UPSTREAM) {
		check_upstream(r);
	} else if (r->route.kind == ROUTE_QUERY_MODEL) {
		check_query_model(r);
	} else if (r->route.kind == ROUTE_MULTIPART_MODEL) {
		const char *err = NULL;

		if ((r->mp = mp_new(header(r, "Content-Type"), "model", &err)) == NULL)
			reply_error(r, 400, "invalid_request", "%s", err);
	}
	if (r->pending != NULL)
		return;
	{
		const char *cl = header(r, "Content-Length");
		long long   n;

		int         limit = r->route.kind == ROUTE_MULTIPART_MODEL
		                ? r->cfg->limits.max_multipart_body_bytes
		                : r->route.kind == ROUTE_API ? (int)HTTP_API_BODY_MAX
		                : r->cfg->limits.max_json_body_bytes;

		if (cl != NULL && parse_int(cl, 0, INT64_MAX, &n) == 0 && n > (long long)limit) {
			metrics_refusal("size");
			reply_error(r, 413, "body_too_large", "request body is larger than %d bytes", limit);
		}
	}
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
    const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct mm_req *r = *con_cls;

	(void)cls;
	(void)url;
	(void)version;
	if (r == NULL)
		return MHD_NO;
	if (r->client_gone)
		return MHD_NO;
	if (r->phase == PH_HEAD) {
		r->conn = conn;
		r->method = method;
		first_call(r);
		/* An early answer (413, 405) goes out without reading the body. */
		return r->pending ? queue_pending(r) : MHD_YES;
	}
	if (r->pending)
		return queue_pending(r);
	if (r->phase != PH_BODY) /* resumed with nothing to say: wait on */
		return MHD_YES;
	if (*upload_size > 0 && r->route.kind == ROUTE_MULTIPART_MODEL) {
		const char *err = NULL;

		if (!r->body_too_large && r->body_total + *upload_size >
		    (uint64_t)r->cfg->limits.max_multipart_body_bytes) {
			r->body_too_large = true;
			buf_free(&r->body);
		}
		if (r->body_too_large) {
			r->drained += *upload_size;
			if (r->drained > HTTP_413_DRAIN) {
				dispatch_multipart(r);
				*upload_size = 0;
				return queue_pending(r);
			}
		} else if (r->mp_error == NULL) {
			if (mp_feed(r->mp, upload_data, *upload_size, &err) == -1)
				r->mp_error = err;
			else if (spool_append(r, upload_data, *upload_size) == -1) {
				log_error("http", "req=%s msg=\"cannot spool the upload\" err=\"%s\"", r->id,
				    strerror(errno));
				r->mp_error = "cannot store the upload";
				r->spool_fd = r->spool_fd == -1 ? -2 : r->spool_fd;
			} else {
				r->body_total += *upload_size;
			}
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size > 0 && r->route.kind == ROUTE_API) {
		/* Management routes take no body: a little is tolerated and dropped, no more. */
		r->drained += *upload_size;
		*upload_size = 0;
		if (r->drained > HTTP_API_BODY_MAX) {
			metrics_refusal("size");
			reply_error(r, 413, "body_too_large", "%s takes no request body", r->path);
			return queue_pending(r);
		}
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (r->route.kind != ROUTE_API && !r->body_too_large &&
		    buf_append(&r->body, upload_data, *upload_size,
		    (size_t)r->cfg->limits.max_json_body_bytes) == -1) {
			r->body_too_large = true;
			buf_free(&r->body);
		}
		/* Past the limit nothing is kept. The rest is read and dropped for a while so the
		 * client can read our 413 (closing on a sender loses it); an endless body is cut
		 * when that allowance runs out too. */
		if (r->body_too_large) {
			r->drained += *upload_size;
			if (r->drained > HTTP_413_DRAIN) {
				dispatch_model(r);
				*upload_size = 0;
				return queue_pending(r);
			}
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->route.kind == ROUTE_JSON_MODEL)
		dispatch_model(r);
	else if (r->route.kind == ROUTE_UPSTREAM || r->route.kind == ROUTE_QUERY_MODEL)
		dispatch_upstream(r);
	else if (r->route.kind == ROUTE_MULTIPART_MODEL)
		dispatch_multipart(r);
	else
		dispatch_api(r);
	return r->pending ? queue_pending(r) : MHD_YES;
}

static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct mm_req *r = xcalloc(1, sizeof(*r));

	(void)cls;
	r->conn = conn;
	r->uri = xstrdup(uri);
	r->cfg = cfg_ref(H.cfg);
	r->watch_fd = -1;
	r->spool_fd = -1;
	r->t_start = loop_now_ms();
	return r;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct mm_req *r = *con_cls;
	char           qp[512], qm[300];
	uint64_t       now = loop_now_ms();

	(void)cls;
	if (r == NULL)
		return;
	*con_cls = NULL;
	if (conn != NULL && conn_ctx_of(conn) != NULL && H.cfg != NULL)
		arm_head_deadline(conn_ctx_of(conn)); /* the next request on this connection */
	if (r->watch_fd != -1)
		loop_fd_del(r->watch_fd);
	if (r->up != NULL) {
		up_cancel(r->up);
		log_info("http", "req=%s msg=\"client gone, upstream request cancelled\"", r->id);
	}
	sched_release(&r->ticket);
	if (r->api_pending)
		api_cancel(&r->api);
	log_unsubscribe(r->sub);
	loop_timer_cancel(r->loading_timer);
	free(r->sub_model);
	free(r->api.reply.body);
	if (r->method != NULL)
		metrics_request(r->model ? r->model->id : NULL, r->route.endpoint, r->status,
		    r->t_first_byte ? (double)(r->t_first_byte - r->t_start) / 1000.0 : -1.0);
	log_emit(LOG_INFO, "access", r->id[0] ? r->id : NULL,
	    "method=%s path=%s status=%d bytes=%llu model=%s queued_ms=%lld first_byte_ms=%lld "
	    "total_ms=%llu prompt_tokens=%lld completion_tokens=%lld end=%s",
	    r->method ? r->method : "-", log_q(qp, sizeof(qp), r->path ? r->path : r->uri), r->status,
	    r->bytes_out, log_q(qm, sizeof(qm), r->model_name ? r->model_name : ""),
	    r->t_granted ? (long long)(r->t_granted - r->t_start) : -1LL,
	    r->t_first_byte ? (long long)(r->t_first_byte - r->t_start) : -1LL,
	    (unsigned long long)(now - r->t_start),
	    r->usage.found ? r->usage.prompt : -1LL, r->usage.found ? r->usage.completion : -1LL,
	    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "ok" :
	    toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT || r->client_gone ? "client_abort" :
	    toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? "timeout" : "error");
	if (r->pending)
		MHD_destroy_response(r->pending);
	buf_free(&r->body);
	buf_free(&r->out);
	buf_free(&r->usage.keep);
	mp_free(r->mp);
	if (r->spool_fd >= 0)
		close(r->spool_fd);
	strv_free(r->up_headers);
	cJSON_free(r->up_body);
	free(r->model_name);
	free(r->up_path);
	free(r->path);
	free(r->uri);
	cfg_unref(r->cfg);
	free(r);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
    enum MHD_ConnectionNotificationCode toe)
{
	struct conn_ctx *cc = *socket_context;

	(void)cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
		    MHD_CONNECTION_INFO_CONNECTION_FD);
		int one = 1;

		/* Small writes (a response head, an SSE event) go out at once: with Nagle, a head
		 * and a body written apart wait for the client's delayed ACK (40 ms). */
		if (ci != NULL)
			setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		H.nconn++;
		cc = xcalloc(1, sizeof(*cc));
		cc->conn = conn;
		*socket_context = cc;
		arm_head_deadline(cc);
	} else {
		if (H.nconn > 0)
			H.nconn--;
		if (cc != NULL) {
			loop_timer_cancel(cc->head_timer);
			free(cc);
			*socket_context = NULL;
		}
	}
	metrics_set_connections(H.nconn);
}

static size_t
unescape_none(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

static void __attribute__((format(printf, 2, 0)))
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512], q[600];
	int  n;

	(void)cls;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	while (n > 0 && (size_t)n < sizeof(msg) && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_debug("mhd", "msg=%s", log_q(q, sizeof(q), msg));
}

/* --- loop integration --- */

static void
mhd_run(void)
{
	/* What was logged about a request reaches stderr before its answer reaches the client. */
	log_flush();
	H.need_run = false;
	if (H.d != NULL)
		MHD_run(H.d);
}

static void
on_mhd_ready(int fd, uint32_t events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	mhd_run();
}

static long
mhd_timeout(void *arg)
{
	MHD_UNSIGNED_LONG_LONG t;

	(void)arg;
	if (H.need_run)
		return 0;
	if (H.d == NULL || MHD_get_timeout(H.d, &t) != MHD_YES)
		return -1;
	return t > 60000 ? 60000 : (long)t;
}

static void
mhd_hook(void *arg)
{
	(void)arg;
	if (H.need_run || mhd_timeout(NULL) == 0)
		mhd_run();
}

/* --- listening --- */

static int
split_listen(const char *spec, char *host, size_t hn, char *port, size_t pn)
{
	const char *colon;

	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');

		if (end == NULL || end[1] != ':' || (size_t)(end - spec - 1) >= hn)
			return -1;
		snprintf(host, hn, "%.*s", (int)(end - spec - 1), spec + 1);
		colon = end + 1;
	} else {
		if ((colon = strrchr(spec, ':')) == NULL || (size_t)(colon - spec) >= hn)
			return -1;
		snprintf(host, hn, "%.*s", (int)(colon - spec), spec);
	}
	if (colon[1] == '\0' || strlen(colon + 1) >= pn)
		return -1;
	snprintf(port, pn, "%s", colon + 1);
	return 0;
}

static int
bind_listen(const char *spec, char **err)
{
	char             host[256], port[16], addr[INET6_ADDRSTRLEN];
	struct addrinfo  hints = { .ai_socktype = SOCK_STREAM,
	                           .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	struct sockaddr_storage ss = { 0 };
	socklen_t        sl = sizeof(ss);
	int              fd = -1, one = 1, rc;
	long long        pnum;

	if (split_listen(spec, host, sizeof(host), port, sizeof(port)) == -1 ||
	    parse_int(port, 0, 65535, &pnum) == -1) {
		*err = xasprintf("invalid listen address %s (expected host:port or [v6]:port)", spec);
		return -1;
	}
	if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res)) != 0) {
		*err = xasprintf("cannot resolve listen address %s: %s", spec, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (res->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 1024) == -1 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) == -1)
		goto fail;
	freeaddrinfo(res);
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 s6;

		memcpy(&s6, &ss, sizeof(s6));
		H.loopback = IN6_IS_ADDR_LOOPBACK(&s6.sin6_addr) ||
		    (IN6_IS_ADDR_V4MAPPED(&s6.sin6_addr) && s6.sin6_addr.s6_addr[12] == 127);
	} else {
		struct sockaddr_in s4;

		memcpy(&s4, &ss, sizeof(s4));
		H.loopback = ((const unsigned char *)&s4.sin_addr.s_addr)[0] == 127;
	}
	if (getnameinfo((struct sockaddr *)&ss, sl, addr, sizeof(addr), port, sizeof(port),
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(addr, sizeof(addr), "?");
	snprintf(H.bound, sizeof(H.bound), ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", addr, port);
	return fd;
fail:
	*err = xasprintf("cannot listen on %s: %s", spec, strerror(errno));
	if (fd != -1)
		close(fd);
	freeaddrinfo(res);
	return -1;
}

int
http_start(const char *spec, struct cfg *cfg, char **err)
{
	const union MHD_DaemonInfo *di;

	if ((H.listen_fd = bind_listen(spec, err)) == -1)
		return -1;
	H.cfg = cfg_ref(cfg);
	H.rates = gate_rates_new(cfg);
	H.d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
	    (cfg->tls_cert_pem ? MHD_USE_TLS : 0),
	    0, NULL, NULL, on_request, NULL,
	    MHD_OPTION_LISTEN_SOCKET, H.listen_fd,
	    MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
	    MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	    /* Headers must fit the connection's memory: that is the header limit (431 past it). */
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->limits.max_header_bytes + HTTP_SEND_BLOCK,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONN_LIMIT,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->limits.header_timeout_s,
	    cfg->tls_cert_pem ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cfg->tls_cert_pem,
	    MHD_OPTION_HTTPS_MEM_KEY, cfg->tls_key_pem,
	    MHD_OPTION_END);
	if (H.d == NULL) {
		*err = xasprintf("cannot start the HTTP server on %s", spec);
		goto fail;
	}
	di = MHD_get_daemon_info(H.d, MHD_DAEMON_INFO_EPOLL_FD);
	if (di == NULL || loop_fd_add(di->epoll_fd, EPOLLIN, on_mhd_ready, NULL) == -1) {
		*err = xstrdup("cannot watch the HTTP server's epoll fd");
		goto fail;
	}
	H.epoll_fd = di->epoll_fd;
	loop_hook_add(mhd_hook, NULL);
	loop_timeout_add(mhd_timeout, NULL);
	return 0;
fail:
	http_free();
	return -1;
}

void
http_set_config(struct cfg *cfg)
{
	/* Requests already running keep the snapshot they started with. */
	cfg_unref(H.cfg);
	H.cfg = cfg_ref(cfg);
	gate_rates_free(H.rates);
	H.rates = gate_rates_new(cfg);
}

const char *
http_bound(void)
{
	return H.bound;
}

bool
http_bound_loopback(void)
{
	return H.loopback;
}

size_t
http_connections(void)
{
	return H.nconn;
}

void
http_stop_accepting(void)
{
	if (H.d == NULL || H.listen_fd == -1)
		return;
	if (MHD_quiesce_daemon(H.d) == H.listen_fd)
		close(H.listen_fd);
	H.listen_fd = -1;
}

void
http_free(void)
{
	if (H.epoll_fd != -1)
		loop_fd_del(H.epoll_fd);
	H.epoll_fd = -1;
	if (H.d != NULL)
		MHD_stop_daemon(H.d);
	H.d = NULL;
	if (H.listen_fd != -1)
		close(H.listen_fd);
	H.listen_fd = -1;
	gate_rates_free(H.rates);
	H.rates = NULL;
	cfg_unref(H.cfg);
	H.cfg = NULL;
}
