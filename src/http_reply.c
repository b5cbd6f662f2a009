/* http_reply: a request's answers of our own — a reply queued for MHD (set_reply, reply_text,
 * the OpenAI-shaped reply_error), and an answer written on the socket at once when MHD cannot
 * queue one (send_raw, refuse_now: a refusal before the body is read, then a close). */
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

void
add_cors_header(void *arg, const char *name, const char *value)
{
	MHD_add_response_header(arg, name, value);
}

/* Makes `resp` the answer; it is queued at the next handler call (now, if in one). */
void
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

void
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
void __attribute__((format(printf, 4, 5)))
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
bool
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
void
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
