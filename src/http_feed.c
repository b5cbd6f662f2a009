/* http_feed: the live feeds (/logs/stream, /api/events): a log subscription streamed to the
 * client as lines or SSE events, bounded by HTTP_SUB_WINDOW (a slow reader is told what it
 * missed), ended by the stop. */
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

struct feed {
	struct log_sub *sub;     /* NULL once ended */
	bool            ended;   /* ended by the stop: its last bytes are going out */
	bool            events;  /* SSE framing (/api/events) */
	char           *model;   /* only lines about this model (/logs/stream/<model>) */
	unsigned long   missed;  /* lines dropped for a slow reader, not yet told */
};

/* A line for a live feed. A reader that falls behind loses the oldest lines (never more than
 * HTTP_SUB_WINDOW is held) and is told how many before the next one. Must not log. */
static void
on_feed_line(void *arg, const char *line, size_t len)
{
	struct mm_req *r = arg;
	struct feed   *f = r->feed;
	const char    *pre = f->events ? "data: " : "", *post = f->events ? "\n\n" : "\n";
	size_t         need = len + strlen(pre) + strlen(post) + 64;
	char           marker[96];

	if (f->model != NULL && !log_line_about(line, len, f->model))
		return;
	if (need > HTTP_SUB_WINDOW)
		return;
	while (r->out.len - r->out_off + need > HTTP_SUB_WINDOW) {
		const char *nl = memchr(r->out.data + r->out_off, '\n', r->out.len - r->out_off);
		size_t      to = nl ? (size_t)(nl - r->out.data) + 1 : r->out.len;

		if (f->events && to < r->out.len && r->out.data[to] == '\n')
			to++;
		r->out_off = to;
		f->missed++;
	}
	if (f->missed > 0) {
		if (f->events)
			snprintf(marker, sizeof(marker), "data: {\"type\":\"missed\",\"count\":%lu}\n\n", f->missed);
		else
			snprintf(marker, sizeof(marker), "-- %lu lines missed --\n", f->missed);
		if (out_append(r, marker, strlen(marker)) == 0)
			f->missed = 0;
	}
	if (out_append(r, pre, strlen(pre)) == -1 || out_append(r, line, len) == -1 ||
	    out_append(r, post, strlen(post)) == -1)
		return;
	req_resume(r);
}

/* The feed ends with what it holds, as a complete response. */
void
end_feed(struct mm_req *r)
{
	if (r->feed == NULL || r->feed->sub == NULL)
		return;
	log_unsubscribe(r->feed->sub);
	r->feed->sub = NULL;
	r->feed->ended = true;
	r->up_done = true;
	r->up_ok = true;
	req_resume(r);
}

/* GET /logs/stream[/<model>] and /api/events: history (or a snapshot), then live, until the
 * client leaves (or the daemon stops). */
void
start_feed(struct mm_req *r)
{
	static const char logs[] = "/logs/stream";
	bool              events = r->route.op == OP_EVENTS;
	struct feed      *f = xcalloc(1, sizeof(*f));
	struct MHD_Response *resp;

	r->feed = f;
	f->events = events;
	if (!events && r->path[sizeof(logs) - 1] == '/')
		f->model = xstrdup(r->path + sizeof(logs));
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, HTTP_SSE_BLOCK, read_body, r, NULL);
	MHD_add_response_header(resp, "Content-Type", events ? "text/event-stream" : "text/plain; charset=utf-8");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	set_reply(r, 200, resp);
	r->phase = PH_STREAM;
	f->sub = log_subscribe(events ? LOG_CH_EVENTS : LOG_CH_LINES, on_feed_line, r);
	if (events) {
		sched_publish_states(); /* every subscriber sees a snapshot; harmless for the others */
	} else if (r->query == NULL || strstr(r->query, "no-history") == NULL) {
		struct buf hist = { 0 };

		log_history(&hist, f->model);
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

/* Feeds ended by the stop may still hold bytes: a short while to send them and their end. */
void
drain_feeds(void)
{
	uint64_t until = loop_now_ms() + HTTP_STOP_DRAIN_MS;
	bool     left = true;

	while (left && H.d != NULL && loop_now_ms() < until) {
		left = false;
		for (struct mm_req *r = H.live; r != NULL && !left; r = r->live_next)
			left = r->feed != NULL && r->feed->ended;
		if (left)
			MHD_run_wait(H.d, 20);
	}
}

/* The feed's subscription ends (the client left, or the request completed) and its state goes. */
void
feed_free(struct mm_req *r)
{
	if (r->feed == NULL)
		return;
	log_unsubscribe(r->feed->sub);
	free(r->feed->model);
	free(r->feed);
	r->feed = NULL;
}
