/* metrics: bounded counters and histograms, Prometheus text output. */
#include <dirent.h>
#include <string.h>
#include <unistd.h>

#include "modelmux/metrics.h"
#include "modelmux/util.h"

static const double load_buckets[] = { 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300 };
static const double wait_buckets[] = { 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60 };
static const double ttfb_buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	                               1, 2.5, 5, 10, 30 };

#define MAX_BUCKETS 16

struct histo {
	const double      *bounds;
	size_t             nb;
	unsigned long long counts[MAX_BUCKETS]; /* per bucket, not cumulative */
	unsigned long long n;
	double             sum;
};

static const char *const unload_reasons[] = { "ttl", "swap", "api", "crash", "shutdown" };
static const char *const refusal_reasons[] = { "auth", "cors", "rate", "size", "path", "timeout",
	"malformed", "connections", "storage" };

struct route_series {
	const char        *route; /* a label from the router's tables: static */
	int                status;
	unsigned long long n;
};

struct model_metrics {
	char                *id;
	unsigned long long   starts, crashes;
	unsigned long long   unloads[MM_ARRAY_LEN(unload_reasons)];
	unsigned long long   prompt_tokens, completion_tokens;
	struct histo         load, wait, ttfb;
	struct route_series *routes;
	size_t               nroutes, caproutes;
};

/* Room for a model's first (route, status) pairs comes with the model, at start or reload. A
 * pair first seen as a burst of streams ends would otherwise be allocated then, at the top of
 * the heap, and keep the heap from shrinking after the burst. */
#define ROUTES_FIRST 16

static struct {
	struct model_metrics *m;
	size_t                n;
	struct model_metrics  none; /* requests that named no (known) model */
	unsigned long long    refusals[MM_ARRAY_LEN(refusal_reasons)];
	size_t                connections;
	size_t                websockets;
	unsigned long long    spool_used, spool_budget;
} X;

static void
histo_init(struct histo *h, const double *bounds, size_t nb)
{
	memset(h, 0, sizeof(*h));
	h->bounds = bounds;
	h->nb = nb;
}

static void
histo_add(struct histo *h, double v)
{
	size_t i = 0;

	while (i < h->nb && v > h->bounds[i])
		i++;
	h->counts[i]++; /* i == nb is +Inf */
	h->n++;
	h->sum += v;
}

static void
model_init(struct model_metrics *m, const char *id)
{
	memset(m, 0, sizeof(*m));
	m->id = xstrdup(id);
	histo_init(&m->load, load_buckets, MM_ARRAY_LEN(load_buckets));
	histo_init(&m->wait, wait_buckets, MM_ARRAY_LEN(wait_buckets));
	histo_init(&m->ttfb, ttfb_buckets, MM_ARRAY_LEN(ttfb_buckets));
	m->caproutes = ROUTES_FIRST;
	m->routes = xcalloc(m->caproutes, sizeof(*m->routes));
}

static void
model_clear(struct model_metrics *m)
{
	free(m->routes);
	free(m->id);
}

void
metrics_init(char *const *ids, size_t n)
{
	struct model_metrics *m;

	/* A model that stays across a reload keeps its series; a removed one's go. */
	n = MM_MIN(n, (size_t)METRICS_MAX_MODELS);
	m = xcalloc(n ? n : 1, sizeof(*m));
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;

		while (k < X.n && (X.m[k].id == NULL || strcmp(X.m[k].id, ids[i]) != 0))
			k++;
		if (k < X.n) {
			m[i] = X.m[k];
			memset(&X.m[k], 0, sizeof(X.m[k]));
		} else {
			model_init(&m[i], ids[i]);
		}
	}
	for (size_t k = 0; k < X.n; k++)
		if (X.m[k].id != NULL)
			model_clear(&X.m[k]);
	free(X.m);
	X.m = m;
	X.n = n;
	if (X.none.id == NULL)
		model_init(&X.none, "");
}

void
metrics_free(void)
{
	for (size_t i = 0; i < X.n; i++)
		model_clear(&X.m[i]);
	free(X.m);
	X.m = NULL;
	X.n = 0;
	if (X.none.id != NULL)
		model_clear(&X.none);
	memset(&X.none, 0, sizeof(X.none));
}

static struct model_metrics *
find(const char *id)
{
	if (id == NULL)
		return X.none.id ? &X.none : NULL;
	for (size_t i = 0; i < X.n; i++)
		if (strcmp(X.m[i].id, id) == 0)
			return &X.m[i];
	return X.none.id ? &X.none : NULL;
}

void
metrics_model_start(const char *model)
{
	struct model_metrics *m = find(model);

	if (m)
		m->starts++;
}

void
metrics_model_loaded(const char *model, double seconds)
{
	struct model_metrics *m = find(model);

	if (m)
		histo_add(&m->load, seconds);
}

void
metrics_model_unload(const char *model, const char *reason)
{
	struct model_metrics *m = find(model);

	for (size_t i = 0; m && i < MM_ARRAY_LEN(unload_reasons); i++)
		if (strcmp(reason, unload_reasons[i]) == 0)
			m->unloads[i]++;
}

void
metrics_model_crash(const char *model)
{
	struct model_metrics *m = find(model);

	if (m)
		m->crashes++;
}

void
metrics_queue_wait(const char *model, double seconds)
{
	struct model_metrics *m = find(model);

	if (m)
		histo_add(&m->wait, seconds);
}

void
metrics_request(const char *model, const char *route, int status, double ttfb)
{
	struct model_metrics *m = find(model);
	size_t                i;

	if (m == NULL)
		return;
	if (ttfb >= 0)
		histo_add(&m->ttfb, ttfb);
	for (i = 0; i < m->nroutes; i++)
		if (m->routes[i].status == status && strcmp(m->routes[i].route, route) == 0)
			break;
	if (i == m->nroutes) {
		if (m->nroutes == METRICS_MAX_ROUTE_SERIES) {
			route = "other";
			for (i = 0; i < m->nroutes; i++)
				if (m->routes[i].status == status && strcmp(m->routes[i].route, route) == 0)
					break;
		}
		if (i == m->nroutes) {
			if (m->nroutes == METRICS_MAX_ROUTE_SERIES + 16)
				return; /* "other" for every status is already there */
			if (m->nroutes == m->caproutes) {
				m->caproutes *= 2;
				m->routes = xreallocarray(m->routes, m->caproutes, sizeof(*m->routes));
			}
			m->routes[i] = (struct route_series){ route, status, 0 };
			m->nroutes++;
		}
	}
	m->routes[i].n++;
}

void
metrics_tokens(const char *model, long long prompt, long long completion)
{
	struct model_metrics *m = find(model);

	if (m == NULL)
		return;
	if (prompt > 0)
		m->prompt_tokens += (unsigned long long)prompt;
	if (completion > 0)
		m->completion_tokens += (unsigned long long)completion;
}

void
metrics_refusal(const char *reason)
{
	for (size_t i = 0; i < MM_ARRAY_LEN(refusal_reasons); i++)
		if (strcmp(reason, refusal_reasons[i]) == 0)
			X.refusals[i]++;
}

void
metrics_set_connections(size_t n)
{
	X.connections = n;
}

void
metrics_set_spool(unsigned long long used, unsigned long long budget)
{
	X.spool_used = used;
	X.spool_budget = budget;
}

void
metrics_set_websockets(size_t n)
{
	X.websockets = n;
}

/* --- rendering --- */

/* Label values from config and requests are escaped as the text format asks. */
void
metrics_label(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			buf_printf(b, "\\%c", *s);
		else if (*s == '\n')
			buf_printf(b, "\\n");
		else
			buf_printf(b, "%c", *s);
	}
}

static void
header(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
series_model(struct buf *b, const char *name, const struct model_metrics *m)
{
	buf_printf(b, "%s{model=\"", name);
	metrics_label(b, m->id);
	buf_printf(b, "\"}");
}

static void
render_histo(struct buf *b, const char *name, const struct model_metrics *m, const struct histo *h)
{
	unsigned long long cum = 0;

	for (size_t i = 0; i <= h->nb; i++) {
		cum += h->counts[i];
		buf_printf(b, "%s_bucket{model=\"", name);
		metrics_label(b, m->id);
		if (i < h->nb)
			buf_printf(b, "\",le=\"%g\"} %llu\n", h->bounds[i], cum);
		else
			buf_printf(b, "\",le=\"+Inf\"} %llu\n", cum);
	}
	buf_printf(b, "%s_sum{model=\"", name);
	metrics_label(b, m->id);
	buf_printf(b, "\"} %.6f\n%s_count{model=\"", h->sum, name);
	metrics_label(b, m->id);
	buf_printf(b, "\"} %llu\n", h->n);
}

static void
render_requests(struct buf *b, const struct model_metrics *m)
{
	for (size_t k = 0; k < m->nroutes; k++) {
		buf_printf(b, "modelmux_requests_total{model=\"");
		metrics_label(b, m->id);
		buf_printf(b, "\",route=\"");
		metrics_label(b, m->routes[k].route);
		buf_printf(b, "\",status=\"%d\"} %llu\n", m->routes[k].status, m->routes[k].n);
	}
}

static long
proc_rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long  pages = 0, rss = 0;

	if (f == NULL)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = -1;
	fclose(f);
	return rss < 0 ? -1 : rss * sysconf(_SC_PAGESIZE);
}

static long
proc_open_fds(void)
{
	DIR           *d = opendir("/proc/self/fd");
	struct dirent *e;
	long           n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

void
metrics_render(struct buf *b)
{
	struct model_metrics *all = X.m;

	header(b, "modelmux_model_starts_total", "counter", "Backend starts.");
	for (size_t i = 0; i < X.n; i++) {
		series_model(b, "modelmux_model_starts_total", &all[i]);
		buf_printf(b, " %llu\n", all[i].starts);
	}
	header(b, "modelmux_model_crashes_total", "counter",
	    "Backends that exited by themselves while ready.");
	for (size_t i = 0; i < X.n; i++) {
		series_model(b, "modelmux_model_crashes_total", &all[i]);
		buf_printf(b, " %llu\n", all[i].crashes);
	}
	header(b, "modelmux_model_unloads_total", "counter", "Backend stops, by reason.");
	for (size_t i = 0; i < X.n; i++) {
		for (size_t r = 0; r < MM_ARRAY_LEN(unload_reasons); r++) {
			buf_printf(b, "modelmux_model_unloads_total{model=\"");
			metrics_label(b, all[i].id);
			buf_printf(b, "\",reason=\"%s\"} %llu\n", unload_reasons[r], all[i].unloads[r]);
		}
	}
	header(b, "modelmux_model_load_duration_seconds", "histogram",
	    "Time from spawn to a healthy backend.");
	for (size_t i = 0; i < X.n; i++)
		render_histo(b, "modelmux_model_load_duration_seconds", &all[i], &all[i].load);
	header(b, "modelmux_queue_wait_seconds", "histogram",
	    "Time requests waited for their model.");
	for (size_t i = 0; i < X.n; i++)
		render_histo(b, "modelmux_queue_wait_seconds", &all[i], &all[i].wait);
	header(b, "modelmux_time_to_first_byte_seconds", "histogram",
	    "Time from the request to the backend's response head.");
	for (size_t i = 0; i < X.n; i++)
		render_histo(b, "modelmux_time_to_first_byte_seconds", &all[i], &all[i].ttfb);
	header(b, "modelmux_requests_total", "counter", "Finished requests by model, route and status.");
	for (size_t i = 0; i < X.n; i++)
		render_requests(b, &all[i]);
	if (X.none.id != NULL)
		render_requests(b, &X.none);
	header(b, "modelmux_prompt_tokens_total", "counter", "Prompt tokens reported in usage.");
	for (size_t i = 0; i < X.n; i++) {
		series_model(b, "modelmux_prompt_tokens_total", &all[i]);
		buf_printf(b, " %llu\n", all[i].prompt_tokens);
	}
	header(b, "modelmux_completion_tokens_total", "counter",
	    "Completion tokens reported in usage.");
	for (size_t i = 0; i < X.n; i++) {
		series_model(b, "modelmux_completion_tokens_total", &all[i]);
		buf_printf(b, " %llu\n", all[i].completion_tokens);
	}
	header(b, "modelmux_gate_refusals_total", "counter", "Requests refused by the gate, by reason.");
	for (size_t r = 0; r < MM_ARRAY_LEN(refusal_reasons); r++)
		buf_printf(b, "modelmux_gate_refusals_total{reason=\"%s\"} %llu\n", refusal_reasons[r],
		    X.refusals[r]);
	header(b, "modelmux_process_resident_memory_bytes", "gauge", "Resident set size.");
	buf_printf(b, "modelmux_process_resident_memory_bytes %ld\n", proc_rss_bytes());
	header(b, "modelmux_process_open_fds", "gauge", "Open file descriptors.");
	buf_printf(b, "modelmux_process_open_fds %ld\n", proc_open_fds());
	header(b, "modelmux_http_connections", "gauge", "Open client connections.");
	buf_printf(b, "modelmux_http_connections %zu\n", X.connections);
	header(b, "modelmux_websockets_open", "gauge", "WebSockets open through /upstream.");
	buf_printf(b, "modelmux_websockets_open %zu\n", X.websockets);
	header(b, "modelmux_spool_bytes", "gauge", "Bytes of uploads spooled to disk now.");
	buf_printf(b, "modelmux_spool_bytes %llu\n", X.spool_used);
	header(b, "modelmux_spool_budget_bytes", "gauge", "limits.maxSpoolBytes in effect.");
	buf_printf(b, "modelmux_spool_budget_bytes %llu\n", X.spool_budget);
}
