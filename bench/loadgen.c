/*
 * mm-loadgen: the load generator of modelmux's benchmark (bench/run.sh).
 *
 * One libcurl multi handle drives every transfer from one thread; each mode prints one JSON
 * line on stdout (percentiles come from every sample, sorted — never from averages).
 *
 *   lat   -u URL -n N -c C [-w W] [-M m1,m2 [-e K]]  N chat requests at concurrency C: latency
 *         [-o FILE] [-F]                             p50/p99/p99.9 and req/s (-e: next model
 *                                                    every K requests, to force swaps; -o:
 *                                                    append every sample to FILE; -F: a new
 *                                                    connection for every request)
 *   dist  FILE...                                    the distribution of the samples in FILEs
 *   sse   -u URL -n N -c C [-M m]                    N SSE chat streams, C at a time: time to
 *                                                    first event, gaps between events
 *   hold  -u URL -c K -t SECS [-p PIDS]              K streams held open SECS: RSS and CPU of PIDS
 *   up    -u URL -k json|mp -z BYTES [-p PIDS] [-r R] an upload, R times: median MB/s, status,
 *                                                    peak RSS of PIDS
 *   down  -u URL [-S] [-M m] [-p PIDS] [-r R]        a download (GET, or with -S a streaming
 *                                                    chat POST), R times: median MB/s, peak RSS
 *   cold  -u URL -U UNLOAD_URL -M m -n R             R times: unload all, then time to first byte
 *   swap  -u URL -M m1,m2 -n R                       R requests alternating models: TTFB of each
 *   spawn -P PORT -n R -- ARGV...                    R times: start ARGV, poll /health every ms
 *                                                    until 200 (start-to-healthy), first TTFB
 *   req   -u URL [-d BODY] [-t SECS]                 one request, retried until 2xx for SECS
 *   proc  -p PIDS                                    RSS, RssAnon, VmSwap, CPU ticks of PIDS
 *   ports -n N                                       a base port with N free ports after it
 *
 * -T 'json fields' adds fields to the output line (the driver tags test and path with it).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define MAX_MODELS 8
#define MAX_PIDS   8

static struct {
	const char *mode, *url, *unload_url, *tag, *kind, *body, *samples_out;
	char       *models[MAX_MODELS];
	int         nmodels;
	long        n, c, warmup, swap_every, secs, port, reps;
	long long   size;
	bool        stream;
	bool        fresh;
	int         pids[MAX_PIDS];
	int         npids;
	char      **argv;
} O = { .n = 1000, .c = 1, .swap_every = 0, .secs = 10, .reps = 1, .kind = "json", .tag = "" };

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
die(const char *msg)
{
	fprintf(stderr, "loadgen: %s\n", msg);
	exit(1);
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory");
	return p;
}

/* ---- samples ----------------------------------------------------------------------- */

struct samples {
	uint64_t *v;
	size_t    n, cap;
};

static void
s_add(struct samples *s, uint64_t x)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4096;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (s->v == NULL)
			die("out of memory");
	}
	s->v[s->n++] = x;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples, in µs. */
static double
pct(const struct samples *s, double q)
{
	size_t i;

	if (s->n == 0)
		return -1;
	i = (size_t)(q * (double)s->n + 0.999999);
	if (i < 1)
		i = 1;
	if (i > s->n)
		i = s->n;
	return (double)s->v[i - 1] / 1000.0;
}

static double
mean_us(const struct samples *s)
{
	long double t = 0;

	if (s->n == 0)
		return -1;
	for (size_t i = 0; i < s->n; i++)
		t += s->v[i];
	return (double)(t / s->n / 1000.0L);
}

static void
print_dist(const char *name, struct samples *s)
{
	qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
	printf(",\"%s\":{\"n\":%zu,\"min\":%.1f,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
	    "\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}", name, s->n, pct(s, 0), pct(s, 0.5),
	    pct(s, 0.9), pct(s, 0.99), pct(s, 0.999), s->n ? (double)s->v[s->n - 1] / 1000.0 : -1,
	    mean_us(s));
}

static void
out_begin(void)
{
	printf("{\"mode\":\"%s\"%s%s", O.mode, O.tag[0] ? "," : "", O.tag);
}

static void
out_end(void)
{
	printf("}\n");
	fflush(stdout);
}

/* ---- /proc ------------------------------------------------------------------------- */

struct procinfo {
	long long rss_kb, anon_kb, swap_kb, hwm_kb, ticks;
};

static long long
status_field(const char *buf, const char *name)
{
	const char *p = strstr(buf, name);

	return p ? strtoll(p + strlen(name), NULL, 10) : 0;
}

static void
proc_read(struct procinfo *pi)
{
	memset(pi, 0, sizeof(*pi));
	for (int i = 0; i < O.npids; i++) {
		char path[64], buf[4096];
		FILE *f;
		size_t n;

		snprintf(path, sizeof(path), "/proc/%d/status", O.pids[i]);
		if ((f = fopen(path, "r")) != NULL) {
			n = fread(buf, 1, sizeof(buf) - 1, f);
			buf[n] = '\0';
			fclose(f);
			pi->rss_kb += status_field(buf, "\nVmRSS:");
			pi->anon_kb += status_field(buf, "\nRssAnon:");
			pi->swap_kb += status_field(buf, "\nVmSwap:");
			pi->hwm_kb += status_field(buf, "\nVmHWM:");
		}
		snprintf(path, sizeof(path), "/proc/%d/stat", O.pids[i]);
		if ((f = fopen(path, "r")) != NULL) {
			n = fread(buf, 1, sizeof(buf) - 1, f);
			buf[n] = '\0';
			fclose(f);
			/* fields after the ")" of comm: state is 3; utime 14, stime 15 */
			char *p = strrchr(buf, ')');
			unsigned long long ut = 0, st = 0;

			if (p != NULL && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			    &ut, &st) == 2)
				pi->ticks += (long long)(ut + st);
		}
	}
}

/* Resets the peak RSS (VmHWM) of the sampled processes. */
static void
proc_reset_peak(void)
{
	for (int i = 0; i < O.npids; i++) {
		char path[64];
		int fd;

		snprintf(path, sizeof(path), "/proc/%d/clear_refs", O.pids[i]);
		if ((fd = open(path, O_WRONLY)) != -1) {
			if (write(fd, "5", 1) != 1)
				fprintf(stderr, "loadgen: cannot reset the peak RSS of %d\n", O.pids[i]);
			close(fd);
		}
	}
}

/* Peak RSS while a transfer runs: sampled every 20 ms, and VmHWM after a reset. */
static struct {
	uint64_t  next;
	long long peak_kb;
} P;

static void
peak_sample(bool force)
{
	struct procinfo pi;
	uint64_t t = now_ns();

	if (O.npids == 0 || (!force && t < P.next))
		return;
	P.next = t + 20000000u;
	proc_read(&pi);
	if (pi.rss_kb > P.peak_kb)
		P.peak_kb = pi.rss_kb;
}

/* ---- bodies ------------------------------------------------------------------------ */

static char *
chat_body(const char *model, bool stream)
{
	size_t len = strlen(model) + 128;
	char *b = xmalloc(len);

	snprintf(b, len, "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]%s}",
	    model, stream ? ",\"stream\":true" : "");
	return b;
}

/* ---- transfers --------------------------------------------------------------------- */

struct xfer {
	CURL          *h;
	long           idx;
	uint64_t       t0, t_first, t_last;
	long           events;
	int            nl;        /* the previous byte was '\n' */
	unsigned long long bytes, bytes_total;  /* received; uploaded (up) */
	bool           done;
	struct samples *gaps;     /* SSE: inter-event gaps go here (may be NULL) */
};

static size_t
on_data(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;

	x->bytes += n;
	if (x->t_first == 0 && !O.stream)
		x->t_first = now_ns();
	if (O.stream) {
		uint64_t t = 0;

		for (size_t i = 0; i < n; i++) {
			if (p[i] == '\r')
				continue;
			if (p[i] == '\n' && x->nl) {
				if (t == 0)
					t = now_ns();
				if (x->events == 0)
					x->t_first = t;
				else if (x->gaps != NULL)
					s_add(x->gaps, t - x->t_last);
				x->t_last = t;
				x->events++;
				x->nl = 0;
				continue;
			}
			x->nl = p[i] == '\n';
		}
	}
	return n;
}

static struct curl_slist *json_hdrs;

static CURL *
easy_new(struct xfer *x)
{
	CURL *h = curl_easy_init();

	if (h == NULL)
		die("curl_easy_init");
	curl_easy_setopt(h, CURLOPT_URL, O.url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_PRIVATE, x);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, json_hdrs);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	if (O.fresh) {
		curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
	}
	x->h = h;
	return h;
}

static void
xfer_reset(struct xfer *x, long idx)
{
	x->idx = idx;
	x->t0 = now_ns();
	x->t_first = x->t_last = 0;
	x->events = 0;
	x->nl = 0;
	x->bytes = 0;
	x->done = false;
}

static CURLM *
multi_new(long conns)
{
	CURLM *m = curl_multi_init();

	if (m == NULL)
		die("curl_multi_init");
	curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, conns + 16);
	return m;
}

/* Waits for activity (at most timeout_ms; at once when a handle was just added), then lets
 * libcurl work; the caller drains curl_multi_info_read() next. */
static void
multi_step(CURLM *m, int timeout_ms)
{
	int running;

	if (curl_multi_poll(m, NULL, 0, timeout_ms, NULL) != CURLM_OK)
		die("curl_multi_poll");
	curl_multi_perform(m, &running);
}

static long
status_of(CURL *h)
{
	long code = 0;

	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	return code;
}

/* ---- lat --------------------------------------------------------------------------- */

static void
mode_lat(void)
{
	char *bodies[MAX_MODELS];
	struct xfer *xs = calloc((size_t)O.c, sizeof(*xs));
	struct samples lat = { 0 };
	long total = O.warmup + O.n, issued = 0, done = 0, errors = 0, non200 = 0;
	CURLM *m = multi_new(O.c);
	uint64_t t_start = 0, t_end;
	long last_status = 0;

	if (xs == NULL)
		die("out of memory");
	if (O.nmodels == 0)
		O.models[O.nmodels++] = "m1";
	for (int i = 0; i < O.nmodels; i++)
		bodies[i] = chat_body(O.models[i], false);
	if (O.warmup == 0)
		t_start = now_ns();
	for (long i = 0; i < O.c && issued < total; i++) {
		struct xfer *x = &xs[i];
		CURL *h = easy_new(x);
		int mi = O.swap_every ? (int)((issued / O.swap_every) % O.nmodels) : 0;

		curl_easy_setopt(h, CURLOPT_POSTFIELDS, bodies[mi]);
		xfer_reset(x, issued++);
		curl_multi_add_handle(m, h);
	}
	while (done < total) {
		CURLMsg *msg;
		int left;

		multi_step(m, 1000);
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			struct xfer *x;
			uint64_t t = now_ns();

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			if (msg->data.result != CURLE_OK)
				errors++;
			else if ((last_status = status_of(x->h)) != 200)
				non200++;
			if (x->idx >= O.warmup)
				s_add(&lat, t - x->t0);
			done++;
			if (done == O.warmup && t_start == 0)
				t_start = now_ns();
			curl_multi_remove_handle(m, x->h);
			if (issued < total) {
				int mi = O.swap_every ?
				    (int)(((issued - O.warmup) / O.swap_every) % O.nmodels) : 0;

				if (issued < O.warmup)
					mi = 0;
				curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, bodies[mi]);
				xfer_reset(x, issued++);
				curl_multi_add_handle(m, x->h);
			}
		}
	}
	t_end = now_ns();
	if (O.samples_out != NULL) {
		FILE *f = fopen(O.samples_out, "a");

		if (f == NULL)
			die("cannot write the samples file");
		for (size_t i = 0; i < lat.n; i++)
			fprintf(f, "%llu\n", (unsigned long long)lat.v[i]);
		fclose(f);
	}
	out_begin();
	printf(",\"n\":%ld,\"c\":%ld,\"errors\":%ld,\"non200\":%ld,\"last_status\":%ld,"
	    "\"secs\":%.3f,\"rps\":%.1f", O.n, O.c, errors, non200, last_status,
	    (double)(t_end - t_start) / 1e9, (double)O.n * 1e9 / (double)(t_end - t_start));
	print_dist("lat_us", &lat);
	out_end();
}

/* ---- sse --------------------------------------------------------------------------- */

static void
mode_sse(void)
{
	struct xfer *xs = calloc((size_t)O.c, sizeof(*xs));
	struct samples ttfe = { 0 }, gaps = { 0 }, per_ev = { 0 };
	long issued = 0, done = 0, errors = 0, ev_min = -1, ev_max = 0;
	CURLM *m = multi_new(O.c);
	char *body;

	if (xs == NULL)
		die("out of memory");
	O.stream = true;
	body = chat_body(O.nmodels ? O.models[0] : "m1", true);
	for (long i = 0; i < O.c && issued < O.n; i++) {
		CURL *h = easy_new(&xs[i]);

		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		xs[i].gaps = &gaps;
		xfer_reset(&xs[i], issued++);
		curl_multi_add_handle(m, h);
	}
	while (done < O.n) {
		CURLMsg *msg;
		int left;

		multi_step(m, 1000);
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			struct xfer *x;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			if (msg->data.result != CURLE_OK || status_of(x->h) != 200 || x->events == 0)
				errors++;
			else {
				s_add(&ttfe, x->t_first - x->t0);
				if (x->events > 1)
					s_add(&per_ev, (x->t_last - x->t_first) / (uint64_t)(x->events - 1));
			}
			if (ev_min == -1 || x->events < ev_min)
				ev_min = x->events;
			if (x->events > ev_max)
				ev_max = x->events;
			done++;
			curl_multi_remove_handle(m, x->h);
			if (issued < O.n) {
				xfer_reset(x, issued++);
				curl_multi_add_handle(m, x->h);
			}
		}
	}
	out_begin();
	printf(",\"n\":%ld,\"c\":%ld,\"errors\":%ld,\"events_min\":%ld,\"events_max\":%ld", O.n,
	    O.c, errors, ev_min, ev_max);
	print_dist("ttfe_us", &ttfe);
	print_dist("gap_us", &gaps);
	print_dist("per_event_us", &per_ev);
	out_end();
}

/* ---- hold -------------------------------------------------------------------------- */

static void
mode_hold(void)
{
	struct xfer *xs = calloc((size_t)O.c, sizeof(*xs));
	CURLM *m = multi_new(O.c);
	char *body;
	uint64_t t0 = now_ns(), t_open = 0, t_end;
	long opened = 0, finished = 0, errors = 0, ev_open = 0, ev_end = 0;
	struct procinfo a, b, pre;
	struct samples ttfe = { 0 };

	if (xs == NULL)
		die("out of memory");
	proc_read(&pre);
	O.stream = true;
	body = chat_body(O.nmodels ? O.models[0] : "hold", true);
	for (long i = 0; i < O.c; i++) {
		CURL *h = easy_new(&xs[i]);

		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		xfer_reset(&xs[i], i);
		curl_multi_add_handle(m, h);
	}
	/* open: every stream has its first event (or 60 s passed) */
	while (opened + finished < O.c && now_ns() - t0 < 60000000000ull) {
		CURLMsg *msg;
		int left;

		multi_step(m, 100);
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			struct xfer *x;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			x->done = true;
			finished++;
			errors++;
		}
		opened = 0;
		for (long i = 0; i < O.c; i++)
			opened += !xs[i].done && xs[i].events > 0;
	}
	t_open = now_ns();
	for (long i = 0; i < O.c; i++) {
		ev_open += xs[i].events;
		if (xs[i].events > 0)
			s_add(&ttfe, xs[i].t_first - xs[i].t0);
	}
	proc_read(&a);
	P.peak_kb = a.rss_kb;
	while (now_ns() - t_open < (uint64_t)O.secs * 1000000000ull) {
		CURLMsg *msg;
		int left;

		multi_step(m, 100);
		peak_sample(false);
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			struct xfer *x;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			if (!x->done) {
				x->done = true;
				finished++;
			}
		}
	}
	t_end = now_ns();
	proc_read(&b);
	for (long i = 0; i < O.c; i++)
		ev_end += xs[i].events;
	out_begin();
	printf(",\"streams\":%ld,\"opened\":%ld,\"open_secs\":%.3f,\"failed_to_open\":%ld,"
	    "\"ended_early\":%ld,\"hold_secs\":%.3f,\"events_during_hold\":%ld", O.c, opened,
	    (double)(t_open - t0) / 1e9, errors, finished - errors, (double)(t_end - t_open) / 1e9,
	    ev_end - ev_open);
	if (O.npids)
		printf(",\"rss_before_kb\":%lld,\"rss_open_kb\":%lld,\"rss_peak_kb\":%lld,"
		    "\"rss_end_kb\":%lld,\"anon_end_kb\":%lld,\"cpu_pct\":%.1f", pre.rss_kb, a.rss_kb, P.peak_kb > b.rss_kb ?
		    P.peak_kb : b.rss_kb, b.rss_kb, b.anon_kb,
		    100.0 * (double)(b.ticks - a.ticks) / (double)sysconf(_SC_CLK_TCK) /
		    ((double)(t_end - t_open) / 1e9));
	print_dist("ttfe_us", &ttfe);
	out_end();
	/* connections close at exit */
	_exit(0);
}

/* ---- up / down --------------------------------------------------------------------- */

/* Runs the transfer of h -r times (a new connection each time); prints the median
 * throughput and the highest peak RSS of the sampled processes. */
static void
run_one(CURL *h, struct xfer *x)
{
	struct samples ns_per_mb = { 0 };
	long long peak = 0, hwm = 0, before = -1;
	long status = 0;
	bool all_ok = true;
	unsigned long long moved = 0;
	curl_off_t ttfb = 0;

	curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
	for (long r = 0; r < O.reps; r++) {
		CURLM *m = multi_new(1);
		CURLMsg *msg = NULL;
		int left;
		CURLcode rc = CURLE_OK;
		struct procinfo pi;

		xfer_reset(x, 0);
		proc_reset_peak();
		P.peak_kb = 0;
		peak_sample(true);
		if (before == -1 || P.peak_kb < before)
			before = P.peak_kb;
		curl_multi_add_handle(m, h);
		for (bool fin = false; !fin;) {
			multi_step(m, 20);
			peak_sample(false);
			while ((msg = curl_multi_info_read(m, &left)) != NULL)
				if (msg->msg == CURLMSG_DONE) {
					rc = msg->data.result;
					fin = true;
				}
		}
		x->t_last = now_ns();
		peak_sample(true);
		proc_read(&pi);
		if (P.peak_kb > peak)
			peak = P.peak_kb;
		if (pi.hwm_kb > hwm)
			hwm = pi.hwm_kb;
		moved = x->bytes_total ? x->bytes_total : x->bytes;
		/* time per MB, so that the median of throughputs is well defined */
		s_add(&ns_per_mb, (uint64_t)((double)(x->t_last - x->t0) * 1e6 / (double)(moved ? moved : 1)));
		all_ok = all_ok && rc == CURLE_OK;
		status = status_of(h);
		curl_easy_getinfo(h, CURLINFO_STARTTRANSFER_TIME_T, &ttfb);
		curl_multi_remove_handle(m, h);
		curl_multi_cleanup(m);
	}
	qsort(ns_per_mb.v, ns_per_mb.n, sizeof(*ns_per_mb.v), cmp_u64);
	out_begin();
	printf(",\"ok\":%s,\"status\":%ld,\"bytes\":%llu,\"reps\":%ld,\"mbps\":%.1f,"
	    "\"mbps_best\":%.1f,\"mbps_worst\":%.1f,\"ttfb_us\":%lld", all_ok ? "true" : "false",
	    status, moved, O.reps, 1e9 / (double)ns_per_mb.v[(ns_per_mb.n - 1) / 2],
	    1e9 / (double)ns_per_mb.v[0], 1e9 / (double)ns_per_mb.v[ns_per_mb.n - 1], (long long)ttfb);
	if (O.npids)
		printf(",\"rss_before_kb\":%lld,\"rss_peak_kb\":%lld,\"hwm_kb\":%lld", before, peak,
		    hwm);
	out_end();
}

static void
mode_up(void)
{
	struct xfer x = { 0 };
	CURL *h = easy_new(&x);
	size_t n = (size_t)O.size, hl, tl;
	char head[512], tail[256], *body;
	const char *model = O.nmodels ? O.models[0] : "m1";
	struct curl_slist *hdrs = NULL;

	if (strcmp(O.kind, "json") == 0) {
		hl = (size_t)snprintf(head, sizeof(head),
		    "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"", model);
		tl = (size_t)snprintf(tail, sizeof(tail), "\"}]}");
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	} else {
		hl = (size_t)snprintf(head, sizeof(head),
		    "--BENCHBOUNDARY\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n%s\r\n"
		    "--BENCHBOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; "
		    "filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n", model);
		tl = (size_t)snprintf(tail, sizeof(tail), "\r\n--BENCHBOUNDARY--\r\n");
		hdrs = curl_slist_append(hdrs,
		    "Content-Type: multipart/form-data; boundary=BENCHBOUNDARY");
	}
	hdrs = curl_slist_append(hdrs, "Expect:");
	n = n > hl + tl ? n - hl - tl : 0;
	body = xmalloc(hl + n + tl);
	memcpy(body, head, hl);
	memset(body + hl, 'x', n);
	memcpy(body + hl + n, tail, tl);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(hl + n + tl));
	x.bytes_total = hl + n + tl;
	run_one(h, &x);
}

static void
mode_down(void)
{
	struct xfer x = { 0 };
	CURL *h = easy_new(&x);

	if (O.stream) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, chat_body(O.nmodels ? O.models[0] : "m1",
		    true));
		O.stream = false;	/* count bytes only */
	}
	run_one(h, &x);
}

/* ---- cold / swap / spawn ----------------------------------------------------------- */

/* One blocking request; returns the status, and the time to first byte in ns. */
static long
request(CURL *h, const char *url, const char *body, uint64_t *ttfb_ns)
{
	struct xfer x = { 0 };
	curl_off_t t = 0;

	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, json_hdrs);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 130000L);
	if (body != NULL)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	else
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	if (curl_easy_perform(h) != CURLE_OK)
		return 0;
	curl_easy_getinfo(h, CURLINFO_STARTTRANSFER_TIME_T, &t);
	if (ttfb_ns != NULL)
		*ttfb_ns = (uint64_t)t * 1000u;
	return status_of(h);
}

static void
mode_cold(void)
{
	CURL *h = curl_easy_init();
	struct samples s = { 0 };
	char *body = chat_body(O.nmodels ? O.models[0] : "m1", false);
	long bad = 0;

	for (long i = 0; i < O.n; i++) {
		uint64_t t;

		if (request(h, O.unload_url, "", NULL) != 200)
			bad++;
		if (request(h, O.url, body, &t) != 200)
			bad++;
		else
			s_add(&s, t);
	}
	out_begin();
	printf(",\"n\":%ld,\"errors\":%ld", O.n, bad);
	print_dist("ttfb_us", &s);
	out_end();
}

static void
mode_swap(void)
{
	CURL *h = curl_easy_init();
	struct samples s = { 0 };
	char *b[MAX_MODELS];
	long bad = 0;

	if (O.nmodels < 2)
		die("swap needs -M m1,m2");
	for (int i = 0; i < O.nmodels; i++)
		b[i] = chat_body(O.models[i], false);
	if (request(h, O.url, b[0], NULL) != 200)
		bad++;
	for (long i = 0; i < O.n; i++) {
		uint64_t t;

		if (request(h, O.url, b[(i + 1) % O.nmodels], &t) != 200)
			bad++;
		else
			s_add(&s, t);
	}
	out_begin();
	printf(",\"n\":%ld,\"errors\":%ld", O.n, bad);
	print_dist("ttfb_us", &s);
	out_end();
}

static void
mode_spawn(void)
{
	CURL *h = curl_easy_init();
	struct samples healthy = { 0 }, first = { 0 }, stop = { 0 };
	char health[128], chat[128];
	char *body = chat_body("m1", false);
	long bad = 0;

	if (O.argv == NULL || O.argv[0] == NULL)
		die("spawn needs -- ARGV");
	snprintf(health, sizeof(health), "http://127.0.0.1:%ld/health", O.port);
	snprintf(chat, sizeof(chat), "http://127.0.0.1:%ld/v1/chat/completions", O.port);
	for (long i = 0; i < O.n; i++) {
		uint64_t t0 = now_ns(), t;
		int st;
		pid_t pid = fork();

		if (pid == -1)
			die("fork");
		if (pid == 0) {
			int fd = open("/dev/null", O_RDWR);

			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			execvp(O.argv[0], O.argv);
			_exit(127);
		}
		for (;;) {
			struct timespec ms = { 0, 1000000 };

			if (request(h, health, NULL, NULL) == 200)
				break;
			if (now_ns() - t0 > 30000000000ull || waitpid(pid, &st, WNOHANG) == pid)
				die("the backend did not become healthy");
			nanosleep(&ms, NULL);
		}
		s_add(&healthy, now_ns() - t0);
		if (request(h, chat, body, &t) != 200)
			bad++;
		else
			s_add(&first, t);
		t0 = now_ns();
		kill(pid, SIGTERM);
		waitpid(pid, &st, 0);
		s_add(&stop, now_ns() - t0);
	}
	out_begin();
	printf(",\"n\":%ld,\"errors\":%ld", O.n, bad);
	print_dist("healthy_us", &healthy);
	print_dist("first_ttfb_us", &first);
	print_dist("stop_us", &stop);
	out_end();
}

/* req: one request (POST -d BODY, else GET), retried every 20 ms for up to -t SECS until it
 * answers 2xx; exits 0 on 2xx. */
static int
mode_req(const char *body)
{
	CURL *h = curl_easy_init();
	uint64_t t0 = now_ns();
	long st;

	for (;;) {
		struct timespec ms = { 0, 20000000 };

		st = request(h, O.url, body, NULL);
		if ((st >= 200 && st < 300) || now_ns() - t0 > (uint64_t)O.secs * 1000000000ull)
			break;
		nanosleep(&ms, NULL);
	}
	out_begin();
	printf(",\"status\":%ld", st);
	out_end();
	return st >= 200 && st < 300 ? 0 : 1;
}

/* dist FILE...: the distribution of the samples (ns, one a line) that lat -o wrote. */
static void
mode_dist(char **files)
{
	struct samples s = { 0 };

	for (; *files != NULL; files++) {
		FILE *f = fopen(*files, "r");
		unsigned long long v;

		if (f == NULL)
			die("cannot read a samples file");
		while (fscanf(f, "%llu", &v) == 1)
			s_add(&s, v);
		fclose(f);
	}
	out_begin();
	print_dist("lat_us", &s);
	out_end();
}

/* ---- proc / ports ------------------------------------------------------------------ */

static void
mode_proc(void)
{
	struct procinfo pi;

	proc_read(&pi);
	out_begin();
	printf(",\"rss_kb\":%lld,\"anon_kb\":%lld,\"swap_kb\":%lld,\"hwm_kb\":%lld,\"ticks\":%lld",
	    pi.rss_kb, pi.anon_kb, pi.swap_kb, pi.hwm_kb, pi.ticks);
	out_end();
}

static bool
port_free(long port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	if (fd == -1)
		return false;
	ok = bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return ok;
}

static void
mode_ports(void)
{
	long low = 20000, high = 32768;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");

	if (f != NULL) {
		long a;

		if (fscanf(f, "%ld", &a) == 1 && a > low + 1000)
			high = a;
		fclose(f);
	}
	srand((unsigned)(now_ns() ^ (uint64_t)getpid()));
	for (int tries = 0; tries < 500; tries++) {
		long base = low + rand() % (high - low - O.n), i;

		for (i = 0; i < O.n && port_free(base + i); i++)
			;
		if (i == O.n) {
			printf("%ld\n", base);
			return;
		}
	}
	die("no free port range");
}

/* ---- main -------------------------------------------------------------------------- */

static void
usage(void)
{
	fprintf(stderr, "usage: mm-loadgen lat|sse|hold|up|down|cold|swap|spawn|proc|ports "
	    "[-u URL] [-U URL] [-n N] [-c C] [-w W] [-M m1,m2] [-e K] [-t SECS] [-p PIDS]\n"
	    "  [-k json|mp] [-z BYTES] [-S] [-P PORT] [-T FIELDS] [-- ARGV]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	int ch;

	if (argc < 2)
		usage();
	O.mode = argv[1];
	optind = 2;
	while ((ch = getopt(argc, argv, "u:U:n:c:w:M:e:t:p:k:z:SFP:T:d:o:r:")) != -1) {
		switch (ch) {
		case 'u': O.url = optarg; break;
		case 'U': O.unload_url = optarg; break;
		case 'n': O.n = atol(optarg); break;
		case 'c': O.c = atol(optarg); break;
		case 'w': O.warmup = atol(optarg); break;
		case 'e': O.swap_every = atol(optarg); break;
		case 't': O.secs = atol(optarg); break;
		case 'k': O.kind = optarg; break;
		case 'z': O.size = atoll(optarg); break;
		case 'S': O.stream = true; break;
		case 'F': O.fresh = true; break;
		case 'P': O.port = atol(optarg); break;
		case 'T': O.tag = optarg; break;
		case 'd': O.body = optarg; break;
		case 'o': O.samples_out = optarg; break;
		case 'r': O.reps = atol(optarg) > 0 ? atol(optarg) : 1; break;
		case 'M':
			for (char *s = strtok(optarg, ","); s && O.nmodels < MAX_MODELS;
			    s = strtok(NULL, ","))
				O.models[O.nmodels++] = s;
			break;
		case 'p':
			for (char *s = strtok(optarg, ","); s && O.npids < MAX_PIDS;
			    s = strtok(NULL, ","))
				O.pids[O.npids++] = atoi(s);
			break;
		default: usage();
		}
	}
	O.argv = argv + optind;
	if (O.n < 1 || O.c < 1)
		usage();
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	json_hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	json_hdrs = curl_slist_append(json_hdrs, "Expect:");
	if (strcmp(O.mode, "proc") == 0)
		mode_proc();
	else if (strcmp(O.mode, "ports") == 0)
		mode_ports();
	else if (strcmp(O.mode, "spawn") == 0)
		mode_spawn();
	else if (strcmp(O.mode, "dist") == 0)
		mode_dist(O.argv);
	else if (O.url == NULL)
		usage();
	else if (strcmp(O.mode, "req") == 0)
		return mode_req(O.body);
	else if (strcmp(O.mode, "lat") == 0)
		mode_lat();
	else if (strcmp(O.mode, "sse") == 0)
		mode_sse();
	else if (strcmp(O.mode, "hold") == 0)
		mode_hold();
	else if (strcmp(O.mode, "up") == 0)
		mode_up();
	else if (strcmp(O.mode, "down") == 0)
		mode_down();
	else if (strcmp(O.mode, "cold") == 0 && O.unload_url != NULL)
		mode_cold();
	else if (strcmp(O.mode, "swap") == 0)
		mode_swap();
	else
		usage();
	return 0;
}
