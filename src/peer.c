/* peer: health of the configured peers, and their request counts (peer.h). */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "modelmux/config_peers.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/metrics.h"
#include "modelmux/peer.h"
#include "modelmux/probe.h"

enum { CLASS_2XX = 0, CLASS_3XX, CLASS_4XX, CLASS_5XX, CLASS_N };

static const char *const class_names[CLASS_N] = { "2xx", "3xx", "4xx", "5xx" };

struct peer_rt {
	char           *name, *proxy, *url;  /* url: the health URL, NULL when checkEndpoint: none */
	char           *hdrs[3];             /* the key as Authorization and X-API-Key; wiped */
	uint64_t        interval_ms, timeout_ms;
	struct probe    probe;
	uint64_t        timer;
	enum peer_state state;
	int             last_status;
	uint64_t        since_ms;
	unsigned long long probes_ok, probes_failed, requests[CLASS_N];
};

static struct {
	struct peer_rt **v;
	size_t           n;
	peer_change_cb   change;
} P;

void
peer_set_change_cb(peer_change_cb cb)
{
	P.change = cb;
}

const char *
peer_state_name(enum peer_state s)
{
	return s == PEER_UP ? "up" : s == PEER_DOWN ? "down" : "unknown";
}

static void
rt_free(struct peer_rt *p)
{
	if (p == NULL)
		return;
	probe_cancel(&p->probe);
	loop_timer_cancel(p->timer);
	free(p->name);
	free(p->proxy);
	free(p->url);
	for (size_t i = 0; i < 2; i++) {
		if (p->hdrs[i] != NULL)
			OPENSSL_cleanse(p->hdrs[i], strlen(p->hdrs[i]));
		free(p->hdrs[i]);
	}
	free(p);
}

static void probe_now(void *arg);

static void
set_state(struct peer_rt *p, enum peer_state s, int status)
{
	p->last_status = status;
	if (p->state == s)
		return;
	if (s == PEER_UP)
		log_info("peer", "peer=%s msg=\"peer answers\" proxy=%s", p->name, p->proxy);
	else
		log_warn("peer", "peer=%s msg=\"peer does not answer\" proxy=%s status=%d", p->name,
		    p->proxy, status);
	p->state = s;
	p->since_ms = loop_now_ms();
	if (P.change != NULL)
		P.change(p->name, s);
}

static void
on_probed(void *arg, int status)
{
	struct peer_rt *p = arg;
	bool            ok = status >= 200 && status < 300;

	if (ok)
		p->probes_ok++;
	else
		p->probes_failed++;
	set_state(p, ok ? PEER_UP : PEER_DOWN, status);
	p->timer = loop_timer_add(p->interval_ms, probe_now, p);
}

static void
probe_now(void *arg)
{
	struct peer_rt *p = arg;

	p->timer = 0;
	if (p->url == NULL) {
		set_state(p, PEER_UP, 0);
		return;
	}
	if (!probe_send_hdrs(&p->probe, p->url, p->hdrs[0] ? p->hdrs : NULL, p->timeout_ms,
	    on_probed, p)) {
		p->probes_failed++;
		set_state(p, PEER_DOWN, 0);
		p->timer = loop_timer_add(p->interval_ms, probe_now, p);
	}
}

static struct peer_rt *
find(const char *name)
{
	for (size_t i = 0; i < P.n; i++)
		if (strcmp(P.v[i]->name, name) == 0)
			return P.v[i];
	return NULL;
}

static bool
str_same(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static struct peer_rt *
rt_new(const struct cfg_peer *cp)
{
	struct peer_rt *p = xcalloc(1, sizeof(*p));

	p->name = xstrdup(cp->name);
	p->proxy = xstrdup(cp->proxy);
	p->url = cp->check_endpoint ? xasprintf("%s%s", cp->proxy, cp->check_endpoint) : NULL;
	if (cp->api_key != NULL) {
		p->hdrs[0] = xasprintf("Authorization: Bearer %s", cp->api_key);
		p->hdrs[1] = xasprintf("X-API-Key: %s", cp->api_key);
	}
	p->interval_ms = (uint64_t)cp->check_interval_s * 1000u;
	p->timeout_ms = (uint64_t)cp->check_timeout_s * 1000u;
	p->since_ms = loop_now_ms();
	return p;
}

void
peer_sync(const struct cfg *c)
{
	struct peer_rt **v = xcalloc(c->npeers + 1, sizeof(*v));

	for (size_t i = 0; i < c->npeers; i++) {
		const struct cfg_peer *cp = &c->peers[i];
		struct peer_rt        *old = find(cp->name), *p = rt_new(cp);

		if (old != NULL) {
			memcpy(p->requests, old->requests, sizeof(p->requests));
			p->probes_ok = old->probes_ok;
			p->probes_failed = old->probes_failed;
			if (str_same(old->url, p->url) && str_same(old->hdrs[0], p->hdrs[0])) {
				p->state = old->state;
				p->last_status = old->last_status;
				p->since_ms = old->since_ms;
			}
		}
		p->timer = loop_timer_add(0, probe_now, p);
		v[i] = p;
	}
	peer_free();
	P.v = v;
	P.n = c->npeers;
}

void
peer_free(void)
{
	for (size_t i = 0; i < P.n; i++)
		rt_free(P.v[i]);
	free(P.v);
	P.v = NULL;
	P.n = 0;
}

enum peer_state
peer_state_of(const char *name)
{
	const struct peer_rt *p = find(name);

	return p ? p->state : PEER_UNKNOWN;
}

int
peer_retry_after_s(const char *name)
{
	const struct peer_rt *p = find(name);
	uint64_t              s = p ? (p->interval_ms + 999) / 1000 : 1;

	return (int)MM_MAX(MM_MIN(s, (uint64_t)PEER_RETRY_AFTER_MAX_S), 1u);
}

void
peer_count_request(const char *name, int status)
{
	struct peer_rt *p = find(name);

	if (p != NULL && status >= 200 && status < 600)
		p->requests[status / 100 - 2]++;
}

size_t
peer_count(void)
{
	return P.n;
}

bool
peer_info(size_t i, struct peer_info *out)
{
	const struct peer_rt *p;

	if (i >= P.n)
		return false;
	p = P.v[i];
	*out = (struct peer_info){ p->name, p->proxy, p->state, p->last_status, p->since_ms,
		(int)(p->interval_ms / 1000), p->probes_ok, p->probes_failed };
	return true;
}

void
peer_metrics(struct buf *b)
{
	if (P.n == 0)
		return;
	buf_printf(b, "# HELP modelmux_peer_up 1 when the peer answered its last health probe.\n"
	    "# TYPE modelmux_peer_up gauge\n");
	for (size_t i = 0; i < P.n; i++) {
		buf_printf(b, "modelmux_peer_up{peer=\"");
		metrics_label(b, P.v[i]->name);
		buf_printf(b, "\"} %d\n", P.v[i]->state == PEER_UP);
	}
	buf_printf(b, "# HELP modelmux_peer_probes_total Health probes of each peer, by result.\n"
	    "# TYPE modelmux_peer_probes_total counter\n");
	for (size_t i = 0; i < P.n; i++) {
		for (int ok = 1; ok >= 0; ok--) {
			buf_printf(b, "modelmux_peer_probes_total{peer=\"");
			metrics_label(b, P.v[i]->name);
			buf_printf(b, "\",result=\"%s\"} %llu\n", ok ? "ok" : "failed",
			    ok ? P.v[i]->probes_ok : P.v[i]->probes_failed);
		}
	}
	buf_printf(b, "# HELP modelmux_peer_requests_total Requests for the models of each peer, by "
	    "status class.\n# TYPE modelmux_peer_requests_total counter\n");
	for (size_t i = 0; i < P.n; i++) {
		for (size_t k = 0; k < CLASS_N; k++) {
			buf_printf(b, "modelmux_peer_requests_total{peer=\"");
			metrics_label(b, P.v[i]->name);
			buf_printf(b, "\",code=\"%s\"} %llu\n", class_names[k], P.v[i]->requests[k]);
		}
	}
}
