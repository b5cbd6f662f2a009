/* http_api: a management request (/v1/models, /running, /health*, /metrics, /logs, load and
 * unload, ...): its method checked against the route's, the answer made by api.c (at once or
 * later, when sched has done what was asked) and sent as a whole; and the web page's files
 * (ui.c), embedded in the binary. */
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
#include "modelmux/ui.h"
#include "http_int.h"

void
refuse_method(struct mm_req *r)
{
	const char *want = router_allow(&r->route);

	reply_error(r, 405, "method_not_allowed", "method %s is not allowed here; use %s %.200s",
	    r->method, want, r->path);
	MHD_add_response_header(r->pending, "Allow", want);
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

void
dispatch_api(struct mm_req *r)
{
	const char *site = req_header(r, "Sec-Fetch-Site");

	/* GET /unload changes state (llama-swap's): a browser sent there by another site (an
	 * <img>, a link) says so in Sec-Fetch-Site; scripts and curl send none. */
	if (r->route.op == OP_UNLOAD_ALL && site != NULL && strcasecmp(site, "same-origin") != 0 &&
	    strcasecmp(site, "none") != 0) {
		reply_error(r, 403, "cross_site_refused", "GET /unload from another site is refused "
		    "(Sec-Fetch-Site: %.32s)", site);
		return;
	}
	r->api.cfg = r->cfg;
	r->api.op = r->route.op;
	r->api.method = r->method;
	r->api.path = r->path;
	r->api.query = r->query;
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

/* The web page's files (ui.h): embedded, answered with its security headers. */
void
serve_ui(struct mm_req *r)
{
	struct ui_answer     a;
	struct MHD_Response *resp;

	ui_answer(r->path, req_header(r, "Accept-Encoding"), req_header(r, "If-None-Match"), &a);
	if (a.status == 404) {
		reply_error(r, 404, "not_found", "no such file in the web page");
	} else {
		resp = MHD_create_response_from_buffer(a.len, (void *)(uintptr_t)a.body,
		    MHD_RESPMEM_PERSISTENT);
		r->bytes_out = a.len;
		set_reply(r, a.status, resp);
		r->phase = PH_REPLY;
	}
	ui_headers(&a, add_cors_header, r->pending);
}
