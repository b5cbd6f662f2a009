/* http_ws: WebSockets on /upstream/<model>/: the backend's 101 first, then a tunnel both
 * ways (tunnel.c) that outlives its request and holds the model until it ends or the model
 * is drained. */
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
bool
is_ws_upgrade(const struct mm_req *r)
{
	const char *up = req_header(r, "Upgrade"), *conn = req_header(r, "Connection"), *p;

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
	unwatch_peer(conn_ctx_of(conn));
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

void
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

void
start_ws(struct mm_req *r, const char *proxy)
{
	const char *err = NULL;
	char        ubuf[HTTP_URL_STACK], *url = upstream_url(r, proxy, ubuf, sizeof(ubuf));
	unsigned    head_s = r->model->timeouts.response_header_s > 0
	                     ? (unsigned)r->model->timeouts.response_header_s : HTTP_WS_HEAD_S;

	r->tun = tunnel_open(url, r->method, r->px.headers, req_header(r, "Upgrade"),
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
