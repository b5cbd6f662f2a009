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
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
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
	struct mm_req         *live_prev, *live_next; /* H.live: every request not yet completed */
	char                   id[65];
	char                  *uri;      /* raw request target, as received */
	char                  *path;     /* raw path, no query */
	const char            *query;    /* into uri, after '?'; NULL if none */
	const char            *method;   /* MHD's, valid for the request's life */
	const char            *version;  /* MHD's: "HTTP/1.1", "HTTP/1.0" */
	bool                   target_cut; /* a NUL in the request target cut what MHD gave us */
	enum req_phase         phase;
	struct route           route;
	bool                   method_ok;   /* the route takes this method */
	struct cfg            *cfg;
	struct buf             body;
	bool                   body_too_large;
	bool                   refused;     /* answered before the body's end: the rest is dropped */
	uint64_t               refused_ms;
	size_t                 drained;     /* body bytes dropped after the limit */
	uint64_t               body_timer;  /* body idle timeout (408) */
	uint64_t               body_last;   /* when the last body byte came */
	/* multipart: scanned as it streams; kept in `body` up to HTTP_MP_MEMORY, past that in an
	 * unlinked temporary file. Sent on with at most the model value replaced. */
	struct mp_scan        *mp;
	const char            *mp_error;
	int                    spool_fd;
	uint64_t               spool_held;  /* bytes of the spool budget this request holds */
	uint64_t               body_total;
	uint64_t               send_pos;    /* bytes of the (rewritten) body handed to curl */
	uint64_t               cut_a, cut_z; /* the model value's range, replaced by use_model_name */
	const struct cfg_model *model;
	char                  *model_name;  /* as the client sent it */
	char                  *up_path;     /* /upstream/<model>/<rest>: <rest>, checked, re-encoded */
	char                  *up_body;     /* rewritten body, or NULL to send `body` */
	size_t                 up_body_len;
	char                 **up_headers;       /* one block (hdr_pack) */
	size_t                 up_headers_size;  /* its bytes: wiped when it holds a key */
	struct sched_ticket    ticket;
	struct api_call        api;
	struct log_sub        *sub;         /* /logs/stream, /api/events: the live feed */
	bool                   feed_ended;  /* ended by the stop: its last bytes are going out */
	char                  *sub_model;   /* only lines about this model */
	bool                   sub_events;  /* SSE framing */
	unsigned long          missed;      /* lines dropped for a slow reader, not yet told */
	bool                   api_pending;
	struct up_xfer        *up;
	bool                   ws;          /* an Upgrade: websocket on /upstream */
	struct tunnel         *tun;         /* its backend side, until the 101 went out */
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
	/* A small answer of known length is sent whole: head and body in one write, once the body
	 * is all in (it arrives with the head, as a rule). */
	struct MHD_Response   *whole;
	char                  *whole_buf;   /* owned by `whole` */
	size_t                 whole_len, whole_got;
	int                    whole_status;
	int                    status;      /* the status queued */
	struct buf             out;         /* response window: bytes [out_off, out.len) */
	size_t                 out_off;
	bool                   suspended;
	bool                   client_gone;
	int                    watch_fd;
	uint64_t               watch_timer;
	char                   ip[GATE_MAX_IP_BYTES];   /* the client: the peer, or the address a
	                                                 * trusted proxy forwarded for */
	char                   peer[GATE_MAX_IP_BYTES]; /* the connection's other end */
	char                  *forwarded_for;          /* a trusted proxy's X-Forwarded-For chain */
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
	/* MHD ran out of file descriptors and stopped watching the listener until a connection
	 * closes; it looks again only at its next run, which nothing else may trigger. */
	bool               accept_paused;
	uint64_t           fd_warned_ms;
	bool               tls;      /* the daemon speaks TLS: no answer can bypass MHD */
	int                mhd_refused; /* status of an answer MHD made itself, not yet logged */
	struct gate_rates *rates;
	struct gate_conns *conns;     /* open connections per client address */
	struct gate_conns *spool_ips; /* spooled bytes per client address */
	uint64_t           spool_budget, spool_used; /* limits.maxSpoolBytes, and what is held */
	uint64_t           cap_logged_ms; /* the last "per-address cap" log line */
	unsigned long      cap_refused;   /* refusals since then */
	struct ws_pipe    *ws;        /* open WebSockets */
	char             **draining;  /* models whose WebSockets are to end (sched's drain) */
	uint64_t           drain_timer;
	uint64_t           trim_timer;
	uint64_t           last_end_ms; /* when a request last ended */
	struct mm_req     *live;        /* requests from on_uri to on_completed */
	size_t             nlive, peak_live; /* how many; the most since the last trim */
	bool               stopping;    /* http_stop_accepting ran: feeds end */
} H = { .listen_fd = -1, .epoll_fd = -1 };

static void req_resume(struct mm_req *r);
static void start_upstream(struct mm_req *r);
static void stream_error_event(struct mm_req *r, const char *reason);

/* Per connection: a deadline for each request head, whatever pace it trickles in at (MHD's
 * own timeout only bounds silence). */
struct conn_ctx {
	struct MHD_Connection *conn;
	uint64_t               head_timer;
	struct mm_req         *req;        /* from the request line (on_uri) to the completion */
	uint64_t               rx_mark;    /* bytes received when the last request ended */
	char                   ip[GATE_MAX_IP_BYTES]; /* the client's address, once known */
	bool                   counted;    /* in H.conns under ip */
};

static bool send_raw(struct MHD_Connection *conn, int status, struct MHD_Response *hdrs,
    const char *id, const char *json);
static void gen_id(char *out, size_t n);
static void conn_ip(struct MHD_Connection *conn, char *out, size_t n);

/* Bytes the client sent on this connection so far (0 when unknown). */
static uint64_t
rx_bytes(int fd)
{
	struct tcp_info ti;
	socklen_t       sl = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &sl) == -1 ||
	    sl < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received))
		return 0;
	return ti.tcpi_bytes_received;
}

/* The head did not complete in time. Part of one came: 408 with the JSON error, then close.
 * Nothing came (an idle keep-alive connection): close quietly, as a client that reuses it
 * expects. */
static void
on_head_deadline(void *arg)
{
	struct conn_ctx                *cc = arg;
	const union MHD_ConnectionInfo *ci;
	char                            id[65], ip[GATE_MAX_IP_BYTES], msg[96], *json;
	int                             t = H.cfg->limits.header_timeout_s;

	cc->head_timer = 0;
	ci = MHD_get_connection_info(cc->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci == NULL)
		return;
	if (cc->req == NULL && rx_bytes(ci->connect_fd) <= cc->rx_mark) {
		log_debug("http", "msg=\"idle connection closed\" timeout_s=%d", t);
	} else {
		gen_id(id, sizeof(id));
		conn_ip(cc->conn, ip, sizeof(ip));
		snprintf(msg, sizeof(msg), "request head not complete in %d s", t);
		log_emit(LOG_INFO, "http", id, "status=408 code=request_timeout msg=\"%s\" ip=%s%s",
		    msg, ip, H.tls ? " answer=none" : "");
		metrics_refusal("timeout");
		json = api_error_json(408, "request_timeout", msg);
		send_raw(cc->conn, 408, NULL, id, json);
		free(json);
		if (cc->req != NULL) {
			snprintf(cc->req->id, sizeof(cc->req->id), "%s", id);
			cc->req->status = 408;
		}
	}
	/* MHD notices at its next read and closes the connection itself. */
	shutdown(ci->connect_fd, SHUT_RDWR);
	H.need_run = true;
}

/* The whole head must arrive within limits.headerTimeoutSeconds — less as open connections
 * fill the daemon's table: past half of it, the time shrinks in step with the room left
 * (down to one second), so slow heads cannot keep the table full. */
static void
arm_head_deadline(struct conn_ctx *cc)
{
	uint64_t ms = (uint64_t)H.cfg->limits.header_timeout_s * 1000u;
	size_t   half = HTTP_CONN_LIMIT / 2;

	if (H.nconn > half)
		ms = MM_MAX(ms * (HTTP_CONN_LIMIT - MM_MIN(H.nconn, HTTP_CONN_LIMIT)) / half, 1000u);
	loop_timer_cancel(cc->head_timer);
	cc->head_timer = loop_timer_add(ms, on_head_deadline, cc);
}

/* An address at limits.maxConnectionsPerIP: its new connection is closed at once, counted,
 * and told in at most one log line a second. */
static void
refuse_connection(struct conn_ctx *cc, const union MHD_ConnectionInfo *ci)
{
	uint64_t now = loop_now_ms();

	metrics_refusal("connections");
	H.cap_refused++;
	if (now - H.cap_logged_ms >= 1000 || H.cap_logged_ms == 0) {
		log_warn("http", "msg=\"connection refused: address at its cap\" ip=%s cap=%d refused=%lu",
		    cc->ip, H.cfg->limits.max_conns_per_ip, H.cap_refused);
		H.cap_logged_ms = now;
		H.cap_refused = 0;
	}
	if (ci != NULL)
		shutdown(ci->connect_fd, SHUT_RDWR); /* MHD sees it at its next read and closes */
	H.need_run = true;
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

static enum MHD_Result
copy_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	if (strcasecmp(key, "Connection") != 0 && strcasecmp(key, "Content-Length") != 0)
		buf_printf(cls, "%s: %s\r\n", key, value ? value : "");
	return MHD_YES;
}

/* Writes an answer on the client's socket directly, for when MHD cannot send one: in the
 * middle of a request body (0.9.75 queues a response only before the body or after all of
 * it), when the head filled the connection's memory and left no room for the answer's head,
 * or when no request exists yet (the head deadline). Our side is then shut for writing: the
 * connection ends after the answer. Plain HTTP only: over TLS the bytes belong to the session.
 * `hdrs` (may be NULL) lends its headers. False when nothing could be written. */
static bool
send_raw(struct MHD_Connection *conn, int status, struct MHD_Response *hdrs, const char *id,
    const char *json)
{
	const union MHD_ConnectionInfo *ci;
	const char                     *reason = MHD_get_reason_phrase_for((unsigned)status);
	struct buf                      b = { 0 };
	size_t                          off = 0;

	if (H.tls || (ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD)) == NULL)
		return false;
	buf_printf(&b, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Length: %zu\r\n", status,
	    reason ? reason : "", strlen(json));
	if (hdrs != NULL)
		MHD_get_response_headers(hdrs, copy_header, &b);
	else
		buf_printf(&b, "Content-Type: application/json\r\nX-Request-ID: %s\r\n", id);
	buf_printf(&b, "\r\n%s", json);
	log_flush_urgent(); /* what was logged about it goes out before the answer */
	/* The send buffer is empty (MHD writes nothing while it reads a request): a few hundred
	 * bytes fit at once. */
	while (off < b.len) {
		ssize_t w = send(ci->connect_fd, b.data + off, b.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	buf_free(&b);
	if (off == 0)
		return false;
	shutdown(ci->connect_fd, SHUT_WR);
	return true;
}

/* Refuses the request at once with an OpenAI-shaped error, logged with the client's address,
 * and ends it. On a plain connection the answer goes out now (send_raw), and the rest of the
 * body is read and dropped up to HTTP_413_DRAIN so the client reads it before the close
 * (closing on a sender loses it). Over TLS it waits in r->pending for the body's end. */
static void __attribute__((format(printf, 4, 5)))
refuse_now(struct mm_req *r, int status, const char *code, const char *fmt, ...)
{
	char    msg[2048], q[2200];
	char   *json;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->ip[0] == '\0')
		conn_ip(r->conn, r->ip, sizeof(r->ip));
	log_emit(LOG_INFO, "http", r->id, "status=%d code=%s msg=%s ip=%s", status, code,
	    log_q(q, sizeof(q), msg), r->ip);
	json = api_error_json(status, code, msg);
	reply_text(r, status, "application/json", xstrdup(json), NULL);
	if (r->ticket.retry_after_s > 0) {
		char ra[16];

		snprintf(ra, sizeof(ra), "%d", r->ticket.retry_after_s);
		MHD_add_response_header(r->pending, "Retry-After", ra);
	}
	r->refused = true;
	r->refused_ms = loop_now_ms();
	if (send_raw(r->conn, status, r->pending, r->id, json)) {
		MHD_destroy_response(r->pending);
		r->pending = NULL;
	}
	free(json);
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
	tunnel_free(r->tun);
	r->tun = NULL;
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

static void
req_suspend(struct mm_req *r)
{
	if (r->suspended)
		return;
	MHD_suspend_connection(r->conn);
	r->suspended = true;
	if (r->watch_fd == -1 && r->watch_timer == 0)
		r->watch_timer = loop_timer_add(HTTP_HUP_WATCH_MS, watch_client, r);
}

static void
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
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(h[i].name, "content-type") == 0 &&
		    str_has_prefix_ci(h[i].value, "text/event-stream"))
			sse = true;
	/* These have no body whatever Content-Length says (RFC 9110 6.4.1): none to wait for. */
	bool head = strcmp(r->method, "HEAD") == 0, empty = status == 204 || status == 304;

	if (empty)
		content_length = 0;
	if (content_length > 0 && content_length <= (long long)HTTP_WHOLE_MAX && !head) {
		r->whole_len = (size_t)content_length;
		r->whole_buf = xmalloc(r->whole_len);
		resp = r->whole = MHD_create_response_from_buffer_with_free_callback(r->whole_len,
		    r->whole_buf, free);
		r->whole_status = status;
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
	r->usage.sse = r->sse = sse && content_length < 0;
	if (r->whole != NULL)
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

	if (r->discard_up)
		return n;
	if (r->whole != NULL) {
		if (n > r->whole_len - r->whole_got)
			return n; /* past its Content-Length: cannot happen, curl stops there */
		memcpy(r->whole_buf + r->whole_got, p, n);
		r->whole_got += n;
		if (r->whole_got == r->whole_len) {
			struct MHD_Response *resp = r->whole;

			if (r->route.kind == ROUTE_JSON_MODEL) /* read where it lies: no copy */
				router_usage_body(&r->usage, r->whole_buf, r->whole_len);

			r->whole = NULL;
			r->bytes_out = r->whole_len;
			set_reply(r, r->whole_status, resp);
			r->phase = PH_REPLY;
			req_resume(r);
		}
		return n;
	}
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
	if (r->whole != NULL) {
		/* The backend's head came, its whole body did not. */
		MHD_destroy_response(r->whole);
		r->whole = NULL;
	}
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
/* Where uploads are spooled: limits.spoolDir, else $TMPDIR, else /tmp. */
static const char *
spool_dir(const struct cfg *c)
{
	const char *dir = c->limits.spool_dir ? c->limits.spool_dir : getenv("TMPDIR");

	return dir != NULL && *dir != '\0' ? dir : "/tmp";
}

/* limits.maxSpoolBytes, or half the spool directory's free space when it is 0. */
static void
spool_budget_set(const struct cfg *c)
{
	struct statvfs st;

	if (c->limits.max_spool_bytes > 0)
		H.spool_budget = (uint64_t)c->limits.max_spool_bytes;
	else if (statvfs(spool_dir(c), &st) == 0)
		H.spool_budget = (uint64_t)st.f_bavail * st.f_frsize / 2;
	else
		H.spool_budget = HTTP_SPOOL_FALLBACK;
	metrics_set_spool(H.spool_used, H.spool_budget);
}

/* Charges n bytes of spool to r: 0, or -1 when the budget, or the client's share of it
 * (1 / HTTP_SPOOL_SHARE), has no room. */
static int
spool_charge(struct mm_req *r, size_t n)
{
	if (H.spool_used + n > H.spool_budget ||
	    !gate_tally_add(H.spool_ips, r->ip, n, H.spool_budget / HTTP_SPOOL_SHARE))
		return -1;
	H.spool_used += n;
	r->spool_held += n;
	metrics_set_spool(H.spool_used, H.spool_budget);
	return 0;
}

static void
spool_release(struct mm_req *r)
{
	if (r->spool_held == 0)
		return;
	H.spool_used -= MM_MIN(H.spool_used, r->spool_held);
	gate_tally_sub(H.spool_ips, r->ip, r->spool_held);
	r->spool_held = 0;
	metrics_set_spool(H.spool_used, H.spool_budget);
}

static int
spool_open(const struct cfg *c)
{
	const char *dir = spool_dir(c);
	char        path[4096];
	int         fd;

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

/* Keeps a piece of a spooled body (multipart, /upstream): in memory while small, then in the
 * spool file, within the spool budget. Returns 0, -1 (errno: the file failed) or -2 (no room
 * in the budget). */
static int
spool_append(struct mm_req *r, const char *p, size_t n)
{
	if (r->spool_fd == -1 && r->body.len + n <= HTTP_MP_MEMORY)
		return buf_append(&r->body, p, n, HTTP_MP_MEMORY);
	if (spool_charge(r, (r->spool_fd == -1 ? r->body.len : 0) + n) == -1)
		return -2;
	if (r->spool_fd == -1) {
		if ((r->spool_fd = spool_open(r->cfg)) == -1)
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
		if (n == 0)
			return 0;
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

static void
mp_body_rewind(void *arg)
{
	((struct mm_req *)arg)->send_pos = 0;
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
		/* Set by modelmux from what it knows of the client (upstream_headers). */
		"x-forwarded-for", "forwarded",
	};

	for (size_t i = 0; i < MM_ARRAY_LEN(drop); i++)
		if (strcasecmp(name, drop[i]) == 0)
			return false;
	return true;
}

/* The fields forwarded to the backend, gathered as pointers (into libmicrohttpd's connection
 * memory, or the caller's buffers), then written out in one allocation. */
struct hdr_collect {
	struct { const char *k, *v; } *p, first[HTTP_HDR_STACK];
	size_t      n, cap, bytes;
	const char *hop;  /* the Connection header's list: the fields it names stop here too */
};

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
	if (forwardable(key) && !list_names(c->hop, key))
		hdr_push(c, key, value);
	return MHD_YES;
}

static char **
upstream_headers(struct mm_req *r, size_t *size)
{
	/* version, trace id (32 hex), span id (16 hex), flags */
	static const char  shape[] = "00-00000000000000000000000000000000-0000000000000000-01";
	struct hdr_collect c;
	const char        *tp = header(r, "traceparent");
	char               trace[sizeof(shape)], rnd[33], span[17], *bearer = NULL, **v;
	char              *xff, fwd[GATE_MAX_IP_BYTES + 40];

	c.p = c.first;
	c.n = c.bytes = 0;
	c.cap = MM_ARRAY_LEN(c.first);
	c.hop = header(r, "Connection");
	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_header, &c);
	hdr_push(&c, "X-Request-ID", r->id);
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
	    HTTP_SSE_BLOCK, read_body, r, NULL);
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
		reply_error(r, status, status == 504 ? "backend_timeout" : status == 503 &&
		    r->model->peer != NULL ? "peer_unavailable" : status == 503
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

static void start_ws(struct mm_req *r, const char *proxy);

/* The backend URL for r: into buf when it fits (every request builds one), else allocated. */
static char *
upstream_url(const struct mm_req *r, const char *proxy, char *buf, size_t n)
{
	const char *part[4] = { proxy, r->up_path ? r->up_path : r->path, r->query ? "?" : "",
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

static void
start_upstream(struct mm_req *r)
{
	const char *err = NULL, *proxy = sched_ticket_proxy(&r->ticket);
	char        ubuf[HTTP_URL_STACK], *url = upstream_url(r, proxy, ubuf, sizeof(ubuf));
	struct up_request ur = {
		.url = url,
		.method = r->method,
		.headers = r->up_headers,
		.body = r->up_body ? r->up_body : (r->body.data ? r->body.data : ""),
		.body_len = r->up_body ? r->up_body_len : r->body.len,
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
		r->send_pos = 0;
		ur.body = NULL;
		ur.body_len = (size_t)mp_send_len(r);
		ur.read = mp_body_read;
		ur.read_arg = r;
		ur.rewind = mp_body_rewind;
	}

	if (!r->loading)
		r->phase = PH_WAIT_UPSTREAM;
	r->up = up_start(&ur, &up_cb, r, &err);
	if (url != ubuf)
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

/* --- WebSockets on /upstream: the backend's 101 first, then a tunnel both ways --- */

/* An open WebSocket, after the 101: it outlives its request and holds the model. */
struct ws_pipe {
	struct ws_pipe                   *next, *prev; /* H.ws */
	struct tunnel                    *tun;
	struct MHD_UpgradeResponseHandle *urh;
	struct sched_ticket               ticket;
	char                              id[65];
	char                             *model;
	uint64_t                          t_open;
};

/* Is this an upgrade to WebSocket (Connection lists "upgrade", Upgrade names "websocket")? */
static bool
is_ws_upgrade(const struct mm_req *r)
{
	const char *up = header(r, "Upgrade"), *conn = header(r, "Connection"), *p;

	if (up == NULL || conn == NULL || strcasestr(up, "websocket") == NULL)
		return false;
	for (p = conn; (p = strcasestr(p, "upgrade")) != NULL; p += 7) {
		char after = p[7];

		if ((p == conn || p[-1] == ',' || p[-1] == ' ' || p[-1] == '\t') &&
		    (after == '\0' || after == ',' || after == ' ' || after == '\t'))
			return true;
	}
	return false;
}

static void
on_ws_end(void *arg, unsigned long long to_backend, unsigned long long to_client, const char *why)
{
	struct ws_pipe *p = arg;
	char            qm[300];

	log_emit(LOG_INFO, "http", p->id, "msg=\"websocket closed\" model=%s to_backend=%llu "
	    "to_client=%llu duration_ms=%llu why=\"%s\"", log_q(qm, sizeof(qm), p->model),
	    to_backend, to_client, (unsigned long long)(loop_now_ms() - p->t_open), why);
	tunnel_free(p->tun);
	metrics_set_websockets(tunnel_count());
	if (p->prev)
		p->prev->next = p->next;
	else
		H.ws = p->next;
	if (p->next)
		p->next->prev = p->prev;
	sched_release(&p->ticket);
	MHD_upgrade_action(p->urh, MHD_UPGRADE_ACTION_CLOSE);
	H.need_run = true;
	free(p->model);
	free(p);
}

/* MHD sent our 101: the client's socket is ours to splice with the backend's. */
static void
on_upgraded(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra,
    size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	struct mm_req  *r = con_cls;
	struct ws_pipe *p;

	(void)cls;
	(void)conn;
	if (r == NULL || r->tun == NULL) {
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		return;
	}
	p = xcalloc(1, sizeof(*p));
	p->tun = r->tun;
	p->urh = urh;
	p->ticket = r->ticket; /* an active ticket moves with the socket */
	memset(&r->ticket, 0, sizeof(r->ticket));
	r->tun = NULL;
	snprintf(p->id, sizeof(p->id), "%s", r->id);
	p->model = xstrdup(r->model->id);
	p->t_open = loop_now_ms();
	if (tunnel_splice(p->tun, sock, extra, extra_len, on_ws_end, p) == -1) {
		log_error("http", "req=%s msg=\"cannot splice the websocket\"", r->id);
		tunnel_free(p->tun);
		sched_release(&p->ticket);
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		free(p->model);
		free(p);
		return;
	}
	log_emit(LOG_INFO, "http", p->id, "msg=\"websocket open\" model=%s", p->model);
	p->next = H.ws;
	if (H.ws)
		H.ws->prev = p;
	H.ws = p;
	metrics_set_websockets(tunnel_count());
}

/* The scheduler must empty these models (a swap, an unload, a reload): their WebSockets, which
 * would hold them forever, end — from a timer, as the scheduler may not be re-entered. */
static void
end_drained(void *arg)
{
	char **ids = H.draining;

	(void)arg;
	H.drain_timer = 0;
	H.draining = NULL;
	for (struct ws_pipe *p = H.ws, *next; p != NULL; p = next) {
		next = p->next;
		if (p->ticket.state == TICKET_ACTIVE && strv_contains(ids, p->model)) {
			log_emit(LOG_INFO, "http", p->id, "msg=\"websocket ended: its model must stop\" "
			    "model=%s", p->model);
			tunnel_end(p->tun, "model stopping");
		}
	}
	strv_free(ids);
}

static void
on_drain(const char *model_id)
{
	size_t n = strv_len(H.draining);

	if (H.ws == NULL)
		return;
	H.draining = xreallocarray(H.draining, n + 2, sizeof(*H.draining));
	H.draining[n] = xstrdup(model_id);
	H.draining[n + 1] = NULL;
	if (H.drain_timer == 0)
		H.drain_timer = loop_timer_add(0, end_drained, NULL);
}

/* Headers of the backend's 101 that go on ours: not hop-by-hop ones (MHD writes Connection),
 * not CORS (the gate is its only source). */
static bool
ws_answer_header(const char *line)
{
	static const char *const drop[] = {
		"connection:", "keep-alive:", "transfer-encoding:", "content-length:", "te:", "trailer:",
		"proxy-connection:", "access-control-",
	};

	for (size_t i = 0; i < MM_ARRAY_LEN(drop); i++)
		if (strncasecmp(line, drop[i], strlen(drop[i])) == 0)
			return false;
	return true;
}

static void
on_ws_head(void *arg, int status, char *const *headers, const char *err)
{
	struct mm_req       *r = arg;
	struct MHD_Response *resp;

	if (status != 101) {
		tunnel_free(r->tun);
		r->tun = NULL;
		sched_release(&r->ticket);
		if (err != NULL)
			reply_error(r, 502, "backend_unavailable", "model %s: %s", r->model->id, err);
		else
			reply_error(r, status >= 400 ? status : 502, "upgrade_refused",
			    "model %s answered %d to the WebSocket upgrade", r->model->id, status);
		req_resume(r);
		return;
	}
	r->t_first_byte = loop_now_ms();
	resp = MHD_create_response_for_upgrade(on_upgraded, NULL);
	for (size_t i = 0; headers[i] != NULL; i++) {
		char *line = headers[i], *colon = strchr(line, ':');

		if (colon == NULL || !ws_answer_header(line))
			continue;
		*colon = '\0';
		MHD_add_response_header(resp, line, colon + 2);
		*colon = ':';
	}
	set_reply(r, 101, resp);
	r->phase = PH_REPLY;
	req_resume(r);
}

static void
start_ws(struct mm_req *r, const char *proxy)
{
	const char *err = NULL;
	char        ubuf[HTTP_URL_STACK], *url = upstream_url(r, proxy, ubuf, sizeof(ubuf));
	unsigned    head_s = r->model->timeouts.response_header_s > 0
	                     ? (unsigned)r->model->timeouts.response_header_s : HTTP_WS_HEAD_S;

	r->tun = tunnel_open(url, r->method, r->up_headers, header(r, "Upgrade"),
	    (unsigned)r->model->timeouts.connect_s, head_s, (unsigned)r->model->timeouts.keepalive_s,
	    on_ws_head, r, &err);
	if (url != ubuf)
		free(url);
	if (r->tun == NULL) {
		sched_release(&r->ticket);
		reply_error(r, 502, "backend_unavailable", "model %s: %s", r->model->id, err);
		req_resume(r);
		return;
	}
	r->phase = PH_WAIT_UPSTREAM;
	req_suspend(r);
}

/* The body limit of a request's kind: uploads (multipart, or multipart through /upstream)
 * have their own, larger one; management routes take next to nothing. */
static int
body_limit(const struct mm_req *r)
{
	const char *ct;

	if (r->route.kind == ROUTE_MULTIPART_MODEL)
		return r->cfg->limits.max_multipart_body_bytes;
	if (r->route.body == BODY_NONE)
		return (int)HTTP_API_BODY_MAX;
	if (r->route.kind == ROUTE_UPSTREAM && (ct = header(r, "Content-Type")) != NULL &&
	    str_has_prefix_ci(ct, "multipart/"))
		return r->cfg->limits.max_multipart_body_bytes;
	return r->cfg->limits.max_json_body_bytes;
}

/* The body is complete: find the model, rewrite, and acquire it. */
static void acquire_model(struct mm_req *r);

static void
dispatch_model(struct mm_req *r)
{
	char               err[256];
	const char        *name;
	cJSON             *doc;
	struct router_peek pk;

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
			r->wants_stream = pk.stream;
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
	char msg[SCHED_MSG_MAX];
	int  status = 0;

	r->up_headers = upstream_headers(r, &r->up_headers_size);
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
static void
dispatch_upstream(struct mm_req *r)
{
	if (r->body_too_large) {
		metrics_refusal("size");
		reply_error(r, 413, "body_too_large", "request body is larger than %d bytes",
		    body_limit(r));
		return;
	}
	if (r->mp_error != NULL) {
		reply_error(r, 507, "insufficient_storage", "%s", r->mp_error);
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
		r->up_headers = upstream_headers(r, &r->up_headers_size);
		r->t_granted = loop_now_ms();
		start_ws(r, sched_model_cfg(m)->proxy);
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
	if (a->warning != NULL)
		MHD_add_response_header(r->pending, "X-Modelmux-Warning", a->warning);
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

/* The feed ends with what it holds, as a complete response. */
static void
end_feed(struct mm_req *r)
{
	log_unsubscribe(r->sub);
	r->sub = NULL;
	r->feed_ended = true;
	r->up_done = true;
	r->up_ok = true;
	req_resume(r);
}

/* GET /logs/stream[/<model>] and /api/events: history (or a snapshot), then live, until the
 * client leaves (or the daemon stops). */
static void
start_feed(struct mm_req *r)
{
	static const char logs[] = "/logs/stream";
	bool              events = r->route.op == OP_EVENTS;
	struct MHD_Response *resp;

	r->sub_events = events;
	if (!events && r->path[sizeof(logs) - 1] == '/')
		r->sub_model = xstrdup(r->path + sizeof(logs));
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, HTTP_SSE_BLOCK, read_body, r, NULL);
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
	if (H.stopping) /* on a kept-alive connection during the stop: history only */
		end_feed(r);
}

static void
refuse_method(struct mm_req *r)
{
	const char *want = router_allow(&r->route);

	reply_error(r, 405, "method_not_allowed", "method %s is not allowed here; use %s %.200s",
	    r->method, want, r->path);
	MHD_add_response_header(r->pending, "Allow", want);
}

static void
dispatch_api(struct mm_req *r)
{
	r->api.cfg = r->cfg;
	r->api.op = r->route.op;
	r->api.method = r->method;
	r->api.path = r->path;
	r->api.done = on_api_done;
	r->api.arg = r;
	switch (api_handle(&r->api)) {
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

static void
conn_ip(struct MHD_Connection *conn, char *out, size_t n)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr          *sa = ci ? ci->client_addr : NULL;
	socklen_t                       sl = sa && sa->sa_family == AF_INET6
	                                   ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	if (sa == NULL || getnameinfo(sa, sl, out, (socklen_t)n, NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(out, n, "unknown");
}

static bool
trusted_proxy(const struct cfg *c, const char *ip)
{
	for (size_t i = 0; i < c->ntrusted_proxies; i++)
		if (cidr_match(&c->trusted_proxies[i], ip))
			return true;
	return false;
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
 * a trusted proxy. A chain that is too long or holds something other than an address is not
 * believed past that point. */
static void
forwarded_client(struct mm_req *r)
{
	struct xff_join j = { 0 };
	char           *start, *end;

	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, join_xff, &j);
	if (j.too_long || j.b.len == 0) {
		buf_free(&j.b);
		return;
	}
	r->forwarded_for = xstrdup(j.b.data);
	start = j.b.data;
	for (end = start + j.b.len; end > start;) {
		char       *comma = memrchr(start, ',', (size_t)(end - start));
		char       *p = comma ? comma + 1 : start;
		struct cidr one;

		*end = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		for (char *e = end; e > p && (e[-1] == ' ' || e[-1] == '\t');)
			*--e = '\0';
		if (strlen(p) >= sizeof(r->ip) || cidr_parse(p, &one) == -1 || strchr(p, '/'))
			break;
		snprintf(r->ip, sizeof(r->ip), "%s", p);
		if (!trusted_proxy(r->cfg, p))
			break;
		end = comma ? comma : start;
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
	if (r->cfg->ntrusted_proxies > 0 && trusted_proxy(r->cfg, r->peer))
		forwarded_client(r);
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
		len = gate_presented_key(header(r, "Authorization"), header(r, "X-API-Key"), key,
		    sizeof(key));
		have = len < 0 ? GATE_DENIED : gate_check_key(r->cfg, key, (size_t)len, digest);
		OPENSSL_cleanse(key, sizeof(key));
		/* A right key always passes (a shared address full of guessers must not lock out the
		 * people who have one); wrong ones are slowed by the address's failure bucket. */
		if (have == GATE_DENIED) {
			metrics_refusal("auth");
			if (gate_auth_blocked(H.rates, r->ip, now, &retry) ||
			    gate_auth_failure(H.rates, r->ip, now, &retry) == -1) {
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

static void
first_call(struct mm_req *r)
{
	struct conn_ctx *cc = conn_ctx_of(r->conn);
	const char      *rid = header(r, "X-Request-ID");
	const char *q = strchr(r->uri, '?');
	const union MHD_ConnectionInfo *hs;

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
	r->route = router_match(r->method, r->path, &r->method_ok);
	r->phase = PH_BODY;
	/* MHD's memory per connection is larger than these limits, so a head past them reaches us
	 * (a JSON answer) before it would fill MHD's pool (its own HTML answer). Such a head may
	 * leave the pool no room for an answer's head: refuse_now writes it on the socket. */
	if (strlen(r->uri) > (size_t)r->cfg->limits.max_url_bytes) {
		metrics_refusal("size");
		refuse_now(r, 414, "uri_too_long", "request target is longer than %d bytes",
		    r->cfg->limits.max_url_bytes);
		return;
	}
	hs = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	if (hs != NULL && hs->header_size > (size_t)r->cfg->limits.max_header_bytes) {
		metrics_refusal("size");
		refuse_now(r, 431, "headers_too_large", "request head is larger than %d bytes",
		    r->cfg->limits.max_header_bytes);
		return;
	}
	if (!head_ok(r))
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

		if ((r->mp = mp_new(header(r, "Content-Type"), "model", &err)) == NULL)
			reply_error(r, 400, "invalid_request", "%s", err);
	}
	if (r->pending != NULL)
		return;
	{
		const char *cl = header(r, "Content-Length");
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
		if (n > 0 || header(r, "Transfer-Encoding") != NULL) {
			r->body_last = loop_now_ms();
			r->body_timer = loop_timer_add((uint64_t)r->cfg->limits.body_idle_timeout_s * 1000u,
			    on_body_idle, r);
		}
	}
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

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
    const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct mm_req *r = *con_cls;

	(void)cls;
	(void)url;
	if (r == NULL)
		return MHD_NO;
	if (r->client_gone)
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
	if (r->refused) {
		/* Answered already: the rest of the body is dropped, for a while. MHD takes an answer
		 * still waiting (TLS) once the body is all in; one sent on the socket ends it. */
		if (*upload_size == 0)
			return r->pending ? queue_pending(r) : MHD_NO;
		r->drained += *upload_size;
		*upload_size = 0;
		/* Like nginx's lingering close: a client busy sending may not read the answer at
		 * once, and a close on unread data resets the connection and loses it. */
		return r->drained > HTTP_413_DRAIN &&
		    loop_now_ms() - r->refused_ms >= HTTP_LINGER_MS ? MHD_NO : MHD_YES;
	}
	if (r->pending)
		return queue_pending(r);
	if (r->phase != PH_BODY) /* resumed with nothing to say: wait on */
		return MHD_YES;
	if (*upload_size > 0) {
		r->body_last = loop_now_ms();
	} else {
		loop_timer_cancel(r->body_timer);
		r->body_timer = 0;
	}
	if (*upload_size > 0 && r->route.body == BODY_SPOOL) {
		/* Spooled as it comes (bounded memory), scanned on the way when multipart, then sent
		 * on as it came. */
		const char *err = NULL;

		if (!r->body_too_large && r->body_total + *upload_size > (uint64_t)body_limit(r)) {
			r->body_too_large = true;
			buf_free(&r->body);
			metrics_refusal("size");
			refuse_now(r, 413, "body_too_large", "request body is larger than %d bytes",
			    body_limit(r));
			r->drained = *upload_size;
		} else if (r->mp_error == NULL) {
			int sp = 0;

			if (r->mp != NULL && mp_feed(r->mp, upload_data, *upload_size, &err) == -1)
				r->mp_error = err;
			else if ((sp = spool_append(r, upload_data, *upload_size)) == -2) {
				/* Full: answered now, the rest dropped like an oversized body's. */
				r->body_too_large = true;
				buf_free(&r->body);
				metrics_refusal("storage");
				r->ticket.retry_after_s = HTTP_SPOOL_RETRY_S;
				refuse_now(r, 507, "insufficient_storage", "no room to store the upload now "
				    "(limits.maxSpoolBytes, or this client's share of it); retry later");
				r->drained = *upload_size;
			} else if (sp == -1) {
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
	if (*upload_size > 0 && r->route.body == BODY_NONE) {
		/* Management routes take no body: a little is tolerated and dropped, no more. */
		r->drained += *upload_size;
		*upload_size = 0;
		if (r->drained > HTTP_API_BODY_MAX) {
			metrics_refusal("size");
			refuse_now(r, 413, "body_too_large", "%s takes no request body", r->path);
			r->drained = 0;
		}
		return MHD_YES;
	}
	if (*upload_size > 0) {
		const char *cl = header(r, "Content-Length");
		long long   want;

		/* A declared length (checked against the limit in first_call) is reserved at once:
		 * the body then costs its size, not up to twice that from doubling. */
		if (r->body.cap == 0 && cl != NULL && parse_int(cl, 1, INT32_MAX, &want) == 0 &&
		    want <= (long long)r->cfg->limits.max_json_body_bytes)
			(void)!buf_reserve(&r->body, (size_t)want); /* a failure shows in buf_append */
		/* Past the limit nothing is kept: the 413 goes out at once (refuse_now), the rest is
		 * read and dropped for a while, and an endless body is cut when that runs out. */
		if (buf_append(&r->body, upload_data, *upload_size,
		    (size_t)r->cfg->limits.max_json_body_bytes) == -1) {
			r->body_too_large = true;
			buf_free(&r->body);
			metrics_refusal("size");
			refuse_now(r, 413, "body_too_large", "request body is larger than %d bytes",
			    r->cfg->limits.max_json_body_bytes);
			r->drained = *upload_size;
		}
		*upload_size = 0;
		return MHD_YES;
	}
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
	case ROUTE_NONE: /* answered in first_call */
		break;
	}
	return r->pending ? queue_pending(r) : MHD_YES;
}

static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct mm_req   *r = xcalloc(1, sizeof(*r));
	struct conn_ctx *cc = conn_ctx_of(conn);

	(void)cls;
	r->conn = conn;
	r->uri = xstrdup(uri);
	r->cfg = cfg_ref(H.cfg);
	r->watch_fd = -1;
	r->spool_fd = -1;
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

/* libmicrohttpd answers some requests itself, with its HTML body, before our handler sees
 * them or instead of it: a head that does not fit the connection's memory (431, or 414 when
 * the request line alone does not), a Content-Length it cannot parse (400) or hold (413),
 * malformed chunked encoding (400). Logs and counts such an answer like one of ours. */
static void
log_mhd_refusal(struct MHD_Connection *conn, char *id, size_t idn, int status, const char *path)
{
	char        ip[GATE_MAX_IP_BYTES], qp[300];
	const char *code = status == 431 ? "headers_too_large" : status == 414 ? "uri_too_long"
	                 : status == 413 ? "body_too_large" : "invalid_request";
	const char *msg = status == 431 ? "request head too large for the connection's memory"
	                : status == 414 ? "request line too long for the connection's memory"
	                : status == 413 ? "Content-Length too large"
	                : "malformed request head or body framing (Content-Length, chunks)";

	H.mhd_refused = 0;
	if (id[0] == '\0')
		gen_id(id, idn);
	conn_ip(conn, ip, sizeof(ip));
	log_emit(LOG_INFO, "http", id, "status=%d code=%s msg=\"%s\" ip=%s path=%s by=libmicrohttpd",
	    status, code, msg, ip, log_q(qp, sizeof(qp), path ? path : "-"));
	metrics_refusal(status == 413 || status == 414 || status == 431 ? "size" : "malformed");
}

static int
mhd_status(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_HTTP_STATUS);

	return ci != NULL ? (int)ci->http_status : 0;
}

/* A burst (a thousand streams, a large upload) leaves the heap's freed pages resident: glibc
 * gives back only its top. They all go back once no request has ended for HTTP_TRIM_QUIET_MS,
 * or once a burst of HTTP_TRIM_BURST requests at once is down to a quarter (a monitor polling
 * /health every second never leaves the daemon quiet). */
static void
on_quiet(void *arg)
{
	uint64_t quiet = loop_now_ms() - H.last_end_ms;

	(void)arg;
	H.trim_timer = 0;
	if (quiet < HTTP_TRIM_QUIET_MS && !(H.peak_live >= HTTP_TRIM_BURST && H.nlive * 4 <= H.peak_live)) {
		H.trim_timer = loop_timer_add(HTTP_TRIM_QUIET_MS - quiet, on_quiet, NULL);
		return;
	}
	H.peak_live = H.nlive;
	up_trim();
	malloc_trim(0);
	log_debug("http", "msg=\"quiet: free heap pages returned to the system\"");
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
	if (conn != NULL && r->status == 0 && (r->status = mhd_status(conn)) >= 400)
		log_mhd_refusal(conn, r->id, sizeof(r->id), r->status, r->uri);
	if (conn != NULL && conn_ctx_of(conn) != NULL) {
		struct conn_ctx                *cc = conn_ctx_of(conn);
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
		    MHD_CONNECTION_INFO_CONNECTION_FD);

		cc->req = NULL;
		cc->rx_mark = ci != NULL ? rx_bytes(ci->connect_fd) : 0;
		if (H.cfg != NULL)
			arm_head_deadline(cc); /* the next request on this connection */
	}
	loop_timer_cancel(r->body_timer);
	if (r->watch_fd != -1)
		loop_fd_del(r->watch_fd);
	loop_timer_cancel(r->watch_timer);
	if (r->up != NULL) {
		up_cancel(r->up);
		log_info("http", "req=%s msg=\"client gone, upstream request cancelled\"", r->id);
	}
	tunnel_free(r->tun);
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
		    r->usage.found ? r->usage.prompt : -1LL, r->usage.found ? r->usage.completion : -1LL,
		    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "ok" :
		    toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT || r->client_gone ? "client_abort" :
		    toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? "timeout" : "error");
	if (r->pending)
		MHD_destroy_response(r->pending);
	if (r->whole)
		MHD_destroy_response(r->whole);
	buf_free(&r->body);
	buf_free(&r->out);
	buf_free(&r->usage.keep);
	mp_free(r->mp);
	if (r->spool_fd >= 0)
		close(r->spool_fd);
	spool_release(r);
	if (r->up_headers != NULL && r->model != NULL && r->model->upstream_api_key != NULL)
		OPENSSL_cleanse(r->up_headers, r->up_headers_size);
	free(r->up_headers);
	cJSON_free(r->up_body);
	free(r->model_name);
	free(r->up_path);
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
	H.last_end_ms = now;
	if (H.trim_timer == 0)
		H.trim_timer = loop_timer_add(HTTP_TRIM_QUIET_MS, on_quiet, NULL);
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
		conn_ip(conn, cc->ip, sizeof(cc->ip));
		if (!gate_conn_open(H.conns, cc->ip, (unsigned)H.cfg->limits.max_conns_per_ip)) {
			refuse_connection(cc, ci);
		} else {
			cc->counted = true;
			arm_head_deadline(cc);
		}
	} else {
		if (H.accept_paused) {
			H.accept_paused = false;
			H.need_run = true;
		}
		if (H.nconn > 0)
			H.nconn--;
		/* A request line MHD refused (too long for its memory) never reached on_uri: no
		 * completion tells of it, only MHD's log line (mhd_log), just before this close. */
		if (cc != NULL && cc->req == NULL && H.mhd_refused != 0) {
			char id[65] = "";

			log_mhd_refusal(conn, id, sizeof(id), H.mhd_refused, NULL);
		}
		if (cc != NULL) {
			if (cc->counted)
				gate_conn_close(H.conns, cc->ip);
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
	char        msg[512], q[600];
	const char *p;
	int         n;

	(void)cls;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	while (n > 0 && (size_t)n < sizeof(msg) && msg[n - 1] == '\n')
		msg[--n] = '\0';
	/* MHD says so only in this text: "Hit process or system resource limit at N connections,
	 * temporarily suspending accept()". */
	if (strstr(msg, "resource limit") != NULL) {
		uint64_t now = loop_now_ms();

		H.accept_paused = true;
		if (H.fd_warned_ms == 0 || now - H.fd_warned_ms >= HTTP_FD_WARN_MS) {
			H.fd_warned_ms = now;
			log_warn("http", "msg=\"out of file descriptors: new connections wait until one "
			    "closes\" connections=%zu", H.nconn);
		}
	}
	/* "Error processing request (HTTP response code is N (...)). Closing connection." */
	if ((p = strstr(msg, "HTTP response code is ")) != NULL) {
		int st = 0;

		for (p += 22; *p >= '0' && *p <= '9' && st < 1000; p++)
			st = st * 10 + (*p - '0');
		H.mhd_refused = st >= 400 && st < 600 ? st : 0;
	}
	log_debug("mhd", "msg=%s", log_q(q, sizeof(q), msg));
}

/* --- loop integration --- */

static void
mhd_run(void)
{
	/* What was logged about a request reaches stderr before its answer reaches the client.
	 * Access lines (logged after their answer) wait for the end of the round. */
	log_flush_urgent();
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

/* MHD often wants another run at once (a response written: its completion; a request
 * completed: the next one's read). Give it a few here rather than a loop round each, which
 * costs an epoll_wait on the loop's fd and one on MHD's. */
#define HTTP_MHD_RUNS 3

static void
mhd_hook(void *arg)
{
	(void)arg;
	for (int i = 0; i < HTTP_MHD_RUNS && (H.need_run || mhd_timeout(NULL) == 0); i++)
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
	H.conns = gate_conns_new();
	H.spool_ips = gate_conns_new();
	spool_budget_set(cfg);
	H.tls = cfg->tls_cert_pem != NULL;
	sched_set_drain_cb(on_drain);
	H.d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG |
	    (cfg->tls_cert_pem ? MHD_USE_TLS : 0),
	    0, NULL, NULL, on_request, NULL,
	    MHD_OPTION_LISTEN_SOCKET, H.listen_fd,
	    MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
	    MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	    /* A connection's memory: a head up to the header limit, with room to spare so that a
	     * head a little past the limit reaches first_call (our JSON 431) before it fills the
	     * pool (MHD's own HTML 431, the backstop). MHD zeroes the whole pool after each
	     * request, so every byte here is resident for each connection: keep it small. */
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->limits.max_header_bytes + HTTP_POOL_SLACK,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONN_LIMIT,
	    /* Our head deadline answers 408 first; MHD's idle timeout is the backstop. */
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->limits.header_timeout_s + 1u,
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
	spool_budget_set(cfg);
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
	/* Open WebSockets would hold their models through the whole grace: clients reconnect. */
	tunnel_end_all();
	/* Live feeds never end by themselves: end them now, cleanly, with what they hold. */
	H.stopping = true;
	for (struct mm_req *r = H.live; r != NULL; r = r->live_next)
		if (r->sub != NULL)
			end_feed(r);
}

/* Feeds ended by the stop may still hold bytes: a short while to send them and their end. */
static void
drain_feeds(void)
{
	uint64_t until = loop_now_ms() + HTTP_STOP_DRAIN_MS;
	bool     left = true;

	while (left && H.d != NULL && loop_now_ms() < until) {
		left = false;
		for (struct mm_req *r = H.live; r != NULL && !left; r = r->live_next)
			left = r->feed_ended;
		if (left)
			MHD_run_wait(H.d, 20);
	}
}

void
http_free(void)
{
	loop_timer_cancel(H.drain_timer);
	H.drain_timer = 0;
	strv_free(H.draining);
	H.draining = NULL;
	if (H.epoll_fd != -1)
		loop_fd_del(H.epoll_fd);
	H.epoll_fd = -1;
	drain_feeds();
	/* MHD aborts the process if it is stopped with a connection still suspended. */
	for (struct mm_req *r = H.live; r != NULL; r = r->live_next)
		req_resume(r);
	if (H.d != NULL)
		MHD_stop_daemon(H.d);
	loop_timer_cancel(H.trim_timer); /* the requests it completed armed it again */
	H.trim_timer = 0;
	H.d = NULL;
	if (H.listen_fd != -1)
		close(H.listen_fd);
	H.listen_fd = -1;
	gate_rates_free(H.rates);
	H.rates = NULL;
	gate_conns_free(H.conns);
	H.conns = NULL;
	gate_conns_free(H.spool_ips);
	H.spool_ips = NULL;
	cfg_unref(H.cfg);
	H.cfg = NULL;
}
