/*
 * --llama-like: what llama-server (llama.cpp's cpp-httplib server) does on the wire, the parts
 * a proxy feels:
 *  - a fixed pool of HTTP worker threads (--threads); each serves one connection at a time,
 *    request after request, until the client closes it or it stays idle --keepalive seconds;
 *    connections beyond the pool wait, accepted by the kernel, for a free thread;
 *  - every response head and body go out in two writes with Nagle on (TCP_NODELAY off), so
 *    a client that delays its ACK of the head gets the body up to 40 ms late;
 *  - a fixed number of slots (--parallel/--slots) generate at once; /props says total_slots,
 *    /slots lists them; /health is 503 "Loading model" until --health-delay has passed;
 *  - SIGTERM aborts the process (signal 6), as the llama-server build we measured did.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "llama_like.h"

#define LL_HEAD_MAX   (64 * 1024)
#define LL_BODY_MAX   (4 * 1024 * 1024)
#define LL_OUT_MAX    (64 * 1024)
#define LL_MAX_REQS   100 /* cpp-httplib's keep-alive max count */
#define LL_THREADS    64

static const struct llama_opts *O;
static int lfd = -1;
static sem_t slots;
static atomic_int busy;
static struct timespec t0;

static long long
ms_since_start(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec - t0.tv_sec) * 1000LL + (ts.tv_nsec - t0.tv_nsec) / 1000000;
}

static void
ll_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
ll_say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(2, line, (size_t)n);
}

static bool
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Head in one write, body in another: as cpp-httplib does. */
static bool
respond(int fd, int status, const char *ctype, const char *body, size_t len)
{
	char head[512];
	int n = snprintf(head, sizeof(head),
	    "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nContent-Type: %s\r\n"
	    "Keep-Alive: timeout=%d, max=%d\r\nServer: llama.cpp\r\n\r\n",
	    status, status == 200 ? "OK" : status == 404 ? "Not Found" : "Service Unavailable",
	    len, ctype, O->keepalive_s, LL_MAX_REQS);

	return write_all(fd, head, (size_t)n) && (len == 0 || write_all(fd, body, len));
}

static bool
respond_json(int fd, int status, const char *body)
{
	return respond(fd, status, "application/json; charset=utf-8", body, strlen(body));
}

static void
generate(void)
{
	struct timespec ts = { O->delay_ms / 1000, (O->delay_ms % 1000) * 1000000L };

	while (sem_wait(&slots) == -1 && errno == EINTR)
		;
	atomic_fetch_add(&busy, 1);
	if (O->delay_ms > 0)
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
	atomic_fetch_sub(&busy, 1);
	sem_post(&slots);
}

static bool
chat(int fd, bool stream)
{
	static _Thread_local char buf[LL_OUT_MAX];
	int n;

	generate();
	if (!stream) {
		n = snprintf(buf, sizeof(buf),
		    "{\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"message\":"
		    "{\"role\":\"assistant\",\"content\":\"%s\"}}],\"created\":1,\"model\":\"%s\","
		    "\"system_fingerprint\":\"b0000-fake\",\"object\":\"chat.completion\","
		    "\"usage\":{\"completion_tokens\":4,\"prompt_tokens\":4,\"total_tokens\":8},"
		    "\"id\":\"chatcmpl-fake\"}", O->reply, O->model);
		if (n < 0 || (size_t)n >= sizeof(buf))
			return respond_json(fd, 500, "{\"error\":{\"code\":500,\"message\":\"too long\"}}");
		return respond_json(fd, 200, buf);
	}
	/* Streamed: chunked SSE, one event per write. */
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
	    "Transfer-Encoding: chunked\r\nServer: llama.cpp\r\n\r\n";
	if (!write_all(fd, head, sizeof(head) - 1))
		return false;
	char ev[1024];
	const char *w = O->reply;
	while (*w != '\0') {
		size_t wl = strcspn(w, " ");
		int m = snprintf(ev, sizeof(ev), "data: {\"choices\":[{\"index\":0,\"delta\":"
		    "{\"content\":\"%.*s \"}}],\"object\":\"chat.completion.chunk\"}\n\n",
		    (int)(wl > 400 ? 400 : wl), w);
		n = snprintf(buf, sizeof(buf), "%x\r\n%s\r\n", m, ev);
		if (!write_all(fd, buf, (size_t)n))
			return false;
		w += wl;
		w += strspn(w, " ");
	}
	static const char done[] = "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n";
	return write_all(fd, done, sizeof(done) - 1);
}

static bool
route(int fd, const char *method, const char *path, const char *body)
{
	char buf[LL_OUT_MAX];
	size_t off = 0;

	if (strcmp(path, "/health") == 0) {
		if (ms_since_start() < O->health_delay)
			return respond_json(fd, 503, "{\"error\":{\"code\":503,\"message\":"
			    "\"Loading model\",\"type\":\"unavailable_error\"}}");
		return respond_json(fd, 200, "{\"status\":\"ok\"}");
	}
	if (strcmp(path, "/props") == 0) {
		snprintf(buf, sizeof(buf), "{\"default_generation_settings\":{\"n_ctx\":4096},"
		    "\"total_slots\":%d,\"model_path\":\"%s.gguf\",\"build_info\":\"b0000-fake\"}",
		    O->slots, O->model);
		return respond_json(fd, 200, buf);
	}
	if (strcmp(path, "/slots") == 0) {
		int b = atomic_load(&busy);

		off += (size_t)snprintf(buf, sizeof(buf), "[");
		for (int i = 0; i < O->slots && off < sizeof(buf) - 64; i++)
			off += (size_t)snprintf(buf + off, sizeof(buf) - off,
			    "%s{\"id\":%d,\"n_ctx\":4096,\"is_processing\":%s}", i ? "," : "", i,
			    i < b ? "true" : "false");
		snprintf(buf + off, sizeof(buf) - off, "]");
		return respond_json(fd, 200, buf);
	}
	if (strcmp(path, "/v1/models") == 0 || strcmp(path, "/models") == 0) {
		snprintf(buf, sizeof(buf), "{\"object\":\"list\",\"data\":[{\"id\":\"%s\","
		    "\"object\":\"model\",\"owned_by\":\"llamacpp\"}]}", O->model);
		return respond_json(fd, 200, buf);
	}
	if (strcmp(method, "POST") == 0 && (strcmp(path, "/v1/chat/completions") == 0 ||
	    strcmp(path, "/chat/completions") == 0 || strcmp(path, "/v1/completions") == 0 ||
	    strcmp(path, "/completion") == 0))
		return chat(fd, body != NULL && strstr(body, "\"stream\":true") != NULL);
	return respond_json(fd, 404, "{\"error\":{\"code\":404,\"message\":\"File Not Found\","
	    "\"type\":\"not_found_error\"}}");
}

/* One connection, request after request, until it closes or idles keepalive_s. */
static void
serve(int fd)
{
	static _Thread_local char in[LL_HEAD_MAX + 1];
	size_t len = 0;
	struct timeval tv = { O->keepalive_s, 0 };
	int zero = 0;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof(zero));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (int served = 0; served < LL_MAX_REQS; served++) {
		char *end, method[16], path[1024], *body = NULL;
		size_t hlen, clen = 0;
		bool close_after;

		while ((end = memmem(in, len, "\r\n\r\n", 4)) == NULL) {
			ssize_t r;

			if (len == LL_HEAD_MAX)
				return;
			r = recv(fd, in + len, LL_HEAD_MAX - len, 0);
			if (r == -1 && errno == EINTR)
				continue;
			if (r <= 0)
				return; /* closed, or idle past keepalive_s */
			len += (size_t)r;
		}
		hlen = (size_t)(end - in) + 4;
		in[hlen - 2] = '\0';
		if (sscanf(in, "%15s %1023s", method, path) != 2)
			return;
		for (char *l = strstr(in, "\r\n"); l != NULL && l + 2 < in + hlen - 2;
		    l = strstr(l + 2, "\r\n"))
			if (strncasecmp(l + 2, "content-length:", 15) == 0)
				clen = strtoul(l + 17, NULL, 10);
		close_after = strcasestr(in, "\r\nconnection: close") != NULL;
		if (clen > LL_BODY_MAX)
			return;
		if (clen > 0) {
			size_t have = len - hlen;

			if ((body = malloc(clen + 1)) == NULL)
				return;
			memcpy(body, in + hlen, have < clen ? have : clen);
			while (have < clen) {
				ssize_t r = recv(fd, body + have, clen - have, 0);

				if (r == -1 && errno == EINTR)
					continue;
				if (r <= 0) {
					free(body);
					return;
				}
				have += (size_t)r;
			}
			body[clen] = '\0';
		}
		/* Pipelined bytes after this request stay for the next one. */
		size_t used = hlen + clen;
		bool ok;

		ok = route(fd, method, path, body);
		free(body);
		if (!ok || close_after)
			return;
		if (used < len)
			memmove(in, in + used, len - used);
		len = used < len ? len - used : 0;
	}
}

static void *
worker(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		serve(fd);
		close(fd);
	}
}

int
llama_like_run(const struct llama_opts *o)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	socklen_t sl;
	sigset_t set;
	pthread_t th;
	int one = 1, sig;

	O = o;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, o->host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)o->port);
		sl = sizeof(*s4);
	} else if (inet_pton(AF_INET6, o->host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)o->port);
		sl = sizeof(*s6);
	} else {
		ll_say("fake: bad --host: %s", o->host);
		return 2;
	}
	if (o->threads < 1 || o->threads > LL_THREADS || o->slots < 1 ||
	    sem_init(&slots, 0, (unsigned)o->slots) == -1)
		return 2;
	lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd == -1 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(lfd, (struct sockaddr *)&ss, sl) == -1 || listen(lfd, 512) == -1) {
		ll_say("fake: cannot listen on %s:%d: %s", o->host, o->port, strerror(errno));
		return 1;
	}
	sl = sizeof(ss);
	getsockname(lfd, (struct sockaddr *)&ss, &sl);
	for (int i = 0; i < o->threads; i++)
		if (pthread_create(&th, NULL, worker, NULL) != 0)
			return 1;
	ll_say("fake: llama-like listening on %s:%d model=%s pid=%ld threads=%d slots=%d "
	    "keepalive=%d", o->host, ntohs(ss.ss_family == AF_INET ? s4->sin_port : s6->sin6_port),
	    o->model, (long)getpid(), o->threads, o->slots, o->keepalive_s);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	while ((sig = sigwaitinfo(&set, NULL)) == -1 && errno == EINTR)
		;
	if (sig == SIGINT) {
		ll_say("fake: stopping");
		_exit(0);
	}
	/* As the llama-server build we ran: SIGTERM ends in abort(). No core file. */
	struct rlimit rl = { 0, 0 };

	(void)setrlimit(RLIMIT_CORE, &rl);
	ll_say("fake: terminate called, aborting");
	signal(SIGABRT, SIG_DFL);
	abort();
}
