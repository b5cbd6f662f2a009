/* probe: one GET with a deadline, on a fresh connection (the question is whether the backend
 * accepts a connection now, and the requests' pool keeps connections made with their model's
 * settings only). */
#include <stddef.h>

#include "modelmux/loop.h"
#include "modelmux/probe.h"
#include "modelmux/upstream.h"
#include "modelmux/util.h"

static void
probe_head(void *arg, int status, const struct up_header *h, size_t n, long long content_length)
{
	(void)h;
	(void)n;
	(void)content_length;
	((struct probe *)arg)->status = status;
}

/* A server that sends a lot only costs reads until the deadline. */
static size_t
probe_body(void *arg, const char *p, size_t n)
{
	(void)arg;
	(void)p;
	return n;
}

static void
probe_end(struct probe *pr, int status)
{
	loop_timer_cancel(pr->timer);
	pr->timer = 0;
	pr->x = NULL;
	pr->cb(pr->arg, status);
}

static void
probe_done(void *arg, bool ok, const char *reason)
{
	struct probe *pr = arg;

	(void)reason;
	probe_end(pr, ok ? pr->status : 0);
}

static void
on_deadline(void *arg)
{
	struct probe *pr = arg;

	pr->timer = 0;
	up_cancel(pr->x);
	probe_end(pr, 0);
}

static const struct up_callbacks probe_up = {
	.head = probe_head,
	.body = probe_body,
	.done = probe_done,
};

bool
probe_send(struct probe *pr, const char *url, uint64_t timeout_ms, probe_cb cb, void *arg)
{
	return probe_send_hdrs(pr, url, NULL, timeout_ms, cb, arg);
}

bool
probe_send_hdrs(struct probe *pr, const char *url, char *const *headers, uint64_t timeout_ms,
    probe_cb cb, void *arg)
{
	struct up_request r = { .url = url, .method = "GET", .headers = headers, .fresh = true };
	const char       *err;

	if (pr->x != NULL)
		return false;
	pr->status = 0;
	pr->cb = cb;
	pr->arg = arg;
	if ((pr->x = up_start(&r, &probe_up, pr, &err)) == NULL)
		return false;
	pr->timer = loop_timer_add(MM_MAX(timeout_ms, 1), on_deadline, pr);
	return true;
}

bool
probe_busy(const struct probe *pr)
{
	return pr->x != NULL;
}

void
probe_cancel(struct probe *pr)
{
	if (pr->x == NULL)
		return;
	up_cancel(pr->x);
	pr->x = NULL;
	loop_timer_cancel(pr->timer);
	pr->timer = 0;
}
