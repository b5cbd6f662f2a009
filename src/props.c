/* props: GET /props once a model is ready, to learn how many requests it serves at once. */
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/props.h"
#include "modelmux/upstream.h"
#include "modelmux/util.h"

struct props_req {
	struct props_req *next, *prev;
	struct up_xfer   *x;
	struct buf        body;
	int               status;
	bool              overflow;
	uint64_t          timer;    /* the deferred report of a failed start */
	props_cb          cb;
	void             *arg;
	char             *hdrs[2];
};

static struct props_req *reqs;

int
props_parse(const char *body, size_t len)
{
	cJSON *j = cJSON_ParseWithLength(body, len);
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "total_slots");
	int slots = 0;

	if (cJSON_IsNumber(n) && n->valuedouble >= 1 && n->valuedouble <= PROPS_MAX_SLOTS &&
	    n->valuedouble == (double)(int)n->valuedouble)
		slots = (int)n->valuedouble;
	cJSON_Delete(j);
	return slots;
}

static void
req_end(struct props_req *p, int slots)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		reqs = p->next;
	if (p->next)
		p->next->prev = p->prev;
	loop_timer_cancel(p->timer);
	buf_free(&p->body);
	if (p->hdrs[0] != NULL) {
		OPENSSL_cleanse(p->hdrs[0], strlen(p->hdrs[0]));
		free(p->hdrs[0]);
	}
	p->cb(slots, p->arg);
	free(p);
}

static void
on_head(void *arg, int status, const struct up_header *h, size_t n, long long cl)
{
	struct props_req *p = arg;

	(void)h;
	(void)n;
	(void)cl;
	p->status = status;
}

static size_t
on_body(void *arg, const char *s, size_t n)
{
	struct props_req *p = arg;

	if (!p->overflow && buf_append(&p->body, s, n, PROPS_MAX_BYTES) == -1)
		p->overflow = true; /* read on to the end, keep nothing more */
	return n;
}

static void
on_done(void *arg, bool ok, const char *reason)
{
	struct props_req *p = arg;
	int               slots = 0;

	p->x = NULL;
	if (ok && p->status == 200 && !p->overflow && p->body.len > 0)
		slots = props_parse(p->body.data, p->body.len);
	if (!ok)
		log_debug("props", "msg=\"no /props\" reason=\"%s\"", reason);
	req_end(p, slots);
}

static void
on_failed_start(void *arg)
{
	struct props_req *p = arg;

	p->timer = 0;
	req_end(p, 0);
}

static const struct up_callbacks props_cbs = { on_head, on_body, on_done };

void
props_ask(const char *base_url, const char *api_key, props_cb cb, void *arg)
{
	struct props_req *p = xcalloc(1, sizeof(*p));
	char             *url = xasprintf("%s/props", base_url);
	const char       *err = NULL;

	p->cb = cb;
	p->arg = arg;
	if (api_key != NULL)
		p->hdrs[0] = xasprintf("Authorization: Bearer %s", api_key);
	p->next = reqs;
	if (reqs)
		reqs->prev = p;
	reqs = p;
	struct up_request r = {
		.url = url,
		.method = "GET",
		.headers = p->hdrs,
		.connect_timeout_s = PROPS_TIMEOUT_S,
		.header_timeout_s = PROPS_TIMEOUT_S,
		.fresh = true,
	};
	if ((p->x = up_start(&r, &props_cbs, p, &err)) == NULL) {
		log_debug("props", "msg=\"cannot ask /props\" reason=\"%s\"", err ? err : "");
		p->timer = loop_timer_add(0, on_failed_start, p);
	}
	free(url);
}

void
props_cancel_all(void)
{
	while (reqs != NULL) {
		up_cancel(reqs->x);
		reqs->x = NULL;
		req_end(reqs, -1);
	}
}
