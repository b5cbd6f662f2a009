/* upstream: a streamed HTTP exchange with a backend. Two paths behind one interface:
 *  - direct: our own HTTP/1.1 client on the loop, for http:// backends at an IP address (the
 *    usual local inference server). One socket per exchange, kept-alive connections pooled and
 *    watched while idle, no per-request allocation but the buffers.
 *  - curl: a libcurl easy handle on the fetch multi, for everything else (https, host names).
 * The profile of the proxy's hot path was a fifth libcurl (liveness polls, URL and header
 * handling, socket re-registration per transfer): see bench/README.md.
 * The dispatcher (this file) picks the client and owns what both share; each client is a file
 * of its own (upstream_direct.c, upstream_curl.c), with src/upstream_int.h between them. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/upstream.h"
#include "modelmux/util.h"
#include "upstream_int.h"

static struct keep xfers = { .size = sizeof(struct up_xfer) };

void *
up__keep_get(struct keep *k)
{
	return k->n > 0 ? k->v[--k->n] : xmalloc(k->size);
}

void
up__keep_put(struct keep *k, void *p)
{
	if (UP_KEEP_ON && p != NULL && k->n < UP_KEEP)
		k->v[k->n++] = p;
	else
		free(p);
}

void
up__keep_trim(struct keep *k)
{
	while (k->n > 0)
		free(k->v[--k->n]);
}

static const char *const hop_by_hop[] = {
	"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
	"upgrade", "content-length", "proxy-authenticate",
};

bool
up__is_hop_by_hop(const char *name, size_t len)
{
	for (size_t i = 0; i < MM_ARRAY_LEN(hop_by_hop); i++)
		if (strlen(hop_by_hop[i]) == len && strncasecmp(hop_by_hop[i], name, len) == 0)
			return true;
	return false;
}

void
up__headers_clear(struct up_xfer *x)
{
	for (size_t i = 0; x->h_owned && i < x->nh; i++) {
		free(x->h[i].name);
		free(x->h[i].value);
	}
	x->nh = x->hbytes = 0;
	x->content_length = -1;
}

void
up__xfer_free(struct up_xfer *x)
{
	loop_timer_cancel(x->header_timer);
	up__headers_clear(x);
	up__curl_free(x);
	up__direct_free(x->d);
	up__keep_put(&xfers, x);
}

void
up__send_head(struct up_xfer *x)
{
	if (x->head_sent)
		return;
	x->head_sent = true;
	loop_timer_cancel(x->header_timer);
	x->header_timer = 0;
	x->cb->head(x->arg, x->status, x->h, x->nh, x->content_length);
}

static void
on_header_timeout(void *arg)
{
	struct up_xfer            *x = arg;
	const struct up_callbacks *cb = x->cb;
	void                      *cbarg = x->arg;

	x->header_timer = 0;
	up__curl_cancel(x);
	up__xfer_free(x);
	cb->done(cbarg, false, "timed out waiting for the response headers");
}

/* --- the interface --- */

void
up_trim(void)
{
	up__direct_trim();
	up__keep_trim(&xfers);
}

void
up_free_pool(void)
{
	up__curl_free_pool();
	up__direct_free_pool();
	up_trim();
}

struct up_xfer *
up_start(const struct up_request *r, const struct up_callbacks *cb, void *arg, const char **err)
{
	struct up_xfer *x = up__keep_get(&xfers);

	memset(x, 0, offsetof(struct up_xfer, h));
	x->errbuf[0] = '\0';
	x->cb = cb;
	x->arg = arg;
	x->content_length = -1;
	x->read = r->read;
	x->read_arg = r->read_arg;
	if (!up__direct_start(x, r) && up__curl_start(x, r, err) == -1) {
		up__xfer_free(x);
		return NULL;
	}
	if (r->header_timeout_s > 0)
		x->header_timer = loop_timer_add((uint64_t)r->header_timeout_s * 1000u, on_header_timeout, x);
	return x;
}

void
up_resume(struct up_xfer *x)
{
	if (x->d == NULL)
		up__curl_resume(x);
	else
		up__direct_resume(x);
}

void
up_cancel(struct up_xfer *x)
{
	if (x == NULL)
		return;
	up__curl_cancel(x);
	up__xfer_free(x);
}
