/* tunnel: an HTTP Upgrade carried between a client socket and a backend socket.
 *
 * A tunnel's life: T_CONNECTING (non-blocking connect) → T_SENDING (the upgrade request) →
 * T_HEAD (reading the backend's answer head, bounded) → T_ANSWERED (head reported; waiting for
 * the owner to send the 101 and hand over the client socket) → T_SPLICED (bytes both ways) →
 * T_ENDED. Each direction has one window of TUNNEL_WINDOW bytes; a full window stops its source
 * being read, so a slow side holds the other back instead of growing memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "modelmux/h1.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/tunnel.h"
#include "modelmux/util.h"

enum tunnel_state {
	T_CONNECTING = 0,
	T_SENDING,
	T_HEAD,
	T_ANSWERED,
	T_SPLICED,
	T_ENDED,
};

/* One direction: bytes read from one side, not yet written to the other. */
struct dir {
	char              *buf;
	size_t             off, len;
	bool               eof;   /* the source side ended */
	bool               shut;  /* ... and that end was passed on (shutdown of the sink) */
	unsigned long long bytes;
};

struct tunnel {
	enum tunnel_state state;
	int               bfd;        /* to the backend, ours */
	int               cfd;        /* the client's, MHD's: never closed here */
	uint32_t          bmask, cmask;
	struct buf        req;        /* the upgrade request, then nothing */
	size_t            req_off;
	unsigned          head_s;
	uint64_t          timer;
	struct dir        c2b, b2c;
	tunnel_head_cb    head_cb;
	tunnel_end_cb     end_cb;
	void             *arg;
	struct tunnel    *next, *prev; /* spliced tunnels */
};

static struct tunnel *spliced;
static size_t         nspliced;

static void on_backend(int fd, uint32_t events, void *arg);

/* --- the handshake --- */

static void
head_failed(struct tunnel *t, const char *why)
{
	loop_timer_cancel(t->timer);
	t->timer = 0;
	loop_fd_del(t->bfd);
	t->state = T_ENDED;
	t->head_cb(t->arg, 0, NULL, why);
}

static void
on_head_timeout(void *arg)
{
	struct tunnel *t = arg;

	t->timer = 0;
	head_failed(t, t->state == T_CONNECTING ? "timed out connecting to the backend"
	    : "timed out waiting for the backend's upgrade answer");
}

/* Parses the answer head in b2c (terminated by CRLF CRLF at `end`) and reports it. */
static void
head_parsed(struct tunnel *t, size_t end)
{
	char      **hv = NULL, *line, *save = NULL, *head = xstrndup(t->b2c.buf, end);
	size_t      n = 0;
	int         status = 0;

	line = strtok_r(head, "\r\n", &save);
	if (line == NULL || strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12 ||
	    line[8] != ' ' || sscanf(line + 9, "%3d", &status) != 1 || status < 100 || status > 599) {
		free(head);
		head_failed(t, "the backend's answer is not HTTP");
		return;
	}
	hv = xcalloc(1, sizeof(*hv));
	while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
		char *colon = strchr(line, ':'), *v;

		if (colon == NULL || colon == line || *line == ' ' || *line == '\t')
			continue; /* not a header line (or an obsolete fold): dropped */
		*colon = '\0';
		for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
			;
		for (char *e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\t'); )
			*--e = '\0';
		hv = xreallocarray(hv, n + 2, sizeof(*hv));
		hv[n++] = xasprintf("%s: %s", line, v);
		hv[n] = NULL;
	}
	free(head);
	/* What follows the head is the backend's first tunnel bytes, for the client. */
	memmove(t->b2c.buf, t->b2c.buf + end, t->b2c.len - end);
	t->b2c.len -= end;
	loop_timer_cancel(t->timer);
	t->timer = 0;
	loop_fd_del(t->bfd);
	t->state = status == 101 ? T_ANSWERED : T_ENDED;
	t->head_cb(t->arg, status, hv, NULL);
	strv_free(hv);
}

static void
handshake(struct tunnel *t)
{
	ssize_t n;

	if (t->state == T_CONNECTING) {
		int       e = 0;
		socklen_t el = sizeof(e);

		if (getsockopt(t->bfd, SOL_SOCKET, SO_ERROR, &e, &el) == -1 || e != 0) {
			head_failed(t, e == ECONNREFUSED ? "connection refused" : "cannot connect");
			return;
		}
		t->state = T_SENDING;
		loop_timer_cancel(t->timer);
		t->timer = t->head_s ? loop_timer_add(t->head_s * 1000ull, on_head_timeout, t) : 0;
	}
	if (t->state == T_SENDING) {
		while (t->req_off < t->req.len) {
			n = send(t->bfd, t->req.data + t->req_off, t->req.len - t->req_off, MSG_NOSIGNAL);
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1 && errno == EAGAIN)
				return;
			if (n == -1) {
				head_failed(t, "the backend closed the connection");
				return;
			}
			t->req_off += (size_t)n;
		}
		buf_free_wiped(&t->req);
		t->state = T_HEAD;
		loop_fd_mod(t->bfd, EPOLLIN);
		return;
	}
	/* T_HEAD */
	n = recv(t->bfd, t->b2c.buf + t->b2c.len, TUNNEL_HEAD_MAX - t->b2c.len, 0);
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		head_failed(t, "the backend closed the connection before answering");
		return;
	}
	t->b2c.len += (size_t)n;
	{
		const char *e = memmem(t->b2c.buf, t->b2c.len, "\r\n\r\n", 4);

		if (e != NULL)
			head_parsed(t, (size_t)(e - t->b2c.buf) + 4);
		else if (t->b2c.len == TUNNEL_HEAD_MAX)
			head_failed(t, "the backend's answer head is too large");
	}
}

struct tunnel *
tunnel_open(const char *url, const char *method, char *const *headers, const char *upgrade,
    unsigned connect_s, unsigned head_s, unsigned keepalive_s, tunnel_head_cb head_cb, void *arg,
    const char **err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai = NULL;
	struct h1_url   u;
	struct tunnel  *t;
	int             one = 1;
	size_t          need;

	if (h1_parse_url(url, &u) == -1 || !h1_target_ok(u.target)) {
		*err = "WebSockets need an http:// backend address";
		return NULL;
	}
	if (getaddrinfo(u.host, u.port, &hints, &ai) != 0 || ai == NULL) {
		*err = "cannot resolve the backend's address";
		return NULL;
	}
	t = xcalloc(1, sizeof(*t));
	t->cfd = -1;
	t->head_s = head_s;
	t->head_cb = head_cb;
	t->arg = arg;
	t->c2b.buf = xmalloc(TUNNEL_WINDOW);
	t->b2c.buf = xmalloc(TUNNEL_WINDOW);
	t->bfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (t->bfd == -1 || (connect(t->bfd, ai->ai_addr, ai->ai_addrlen) == -1 &&
	    errno != EINPROGRESS)) {
		*err = errno == ECONNREFUSED ? "connection refused" : "cannot connect";
		freeaddrinfo(ai);
		tunnel_free(t);
		return NULL;
	}
	freeaddrinfo(ai);
	/* Frames are small and latency matters: no Nagle wait behind an unacknowledged one. */
	(void)setsockopt(t->bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* A socket may sit idle for hours: keepalive notices a backend host that vanished. */
	if (keepalive_s > 0) {
		int secs = (int)keepalive_s;

		(void)setsockopt(t->bfd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		(void)setsockopt(t->bfd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof(secs));
		(void)setsockopt(t->bfd, IPPROTO_TCP, TCP_KEEPINTVL, &secs, sizeof(secs));
	}
	/* The head may carry the backend's key: reserved whole, so no copy of it is left behind
	 * by a growing buffer, and wiped when it is freed. */
	need = strlen(method) + strlen(u.target) + u.alen + strlen(upgrade) + 64;
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
		need += strlen(headers[i]) + 2;
	if (buf_reserve(&t->req, need) == -1)
		fatal("out of memory");
	buf_printf(&t->req, "%s %s HTTP/1.1\r\nHost: %.*s\r\n", method, u.target, (int)u.alen,
	    u.authority);
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
		buf_printf(&t->req, "%s\r\n", headers[i]);
	buf_printf(&t->req, "Connection: Upgrade\r\nUpgrade: %s\r\n\r\n", upgrade);
	if (loop_fd_add(t->bfd, EPOLLOUT, on_backend, t) == -1) {
		*err = "out of watchers";
		tunnel_free(t);
		return NULL;
	}
	t->bmask = EPOLLOUT;
	t->timer = connect_s ? loop_timer_add(connect_s * 1000ull, on_head_timeout, t) : 0;
	return t;
}

/* --- the splice --- */

/* Takes a spliced tunnel off the list and out of the loop (the client fd is MHD's to close). */
static void
unsplice(struct tunnel *t)
{
	loop_timer_cancel(t->timer);
	t->timer = 0;
	loop_fd_del(t->cfd);
	if (t->prev)
		t->prev->next = t->next;
	else
		spliced = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->next = t->prev = NULL;
	nspliced--;
	t->state = T_ENDED;
}

static void
end(struct tunnel *t, const char *why)
{
	unsplice(t);
	loop_fd_del(t->bfd);
	close(t->bfd);
	t->bfd = -1;
	t->end_cb(t->arg, t->c2b.bytes, t->b2c.bytes, why); /* may free t */
}

static void
on_linger(void *arg)
{
	struct tunnel *t = arg;

	t->timer = 0;
	end(t, "closed");
}

/* Moves what it can one step along `d` (from fd `src` to fd `dst`); -1 on an error. */
static int
move(struct dir *d, int src, int dst)
{
	ssize_t n;

	if (!d->eof && d->len < TUNNEL_WINDOW) {
		if (d->off > 0 && d->off == d->len)
			d->off = d->len = 0;
		n = recv(src, d->buf + d->len, TUNNEL_WINDOW - d->len, 0);
		if (n == 0)
			d->eof = true;
		else if (n > 0)
			d->len += (size_t)n;
		else if (errno != EAGAIN && errno != EINTR)
			return -1;
	}
	while (d->off < d->len) {
		n = send(dst, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (n == -1)
			return -1;
		d->off += (size_t)n;
		d->bytes += (unsigned long long)n;
	}
	if (d->off == d->len)
		d->off = d->len = 0;
	if (d->eof && d->len == 0 && !d->shut) {
		shutdown(dst, SHUT_WR);
		d->shut = true;
	}
	return 0;
}

static void
rearm(struct tunnel *t)
{
	uint32_t c = (!t->c2b.eof && t->c2b.len < TUNNEL_WINDOW ? EPOLLIN : 0) |
	             (t->b2c.len > 0 ? EPOLLOUT : 0);
	uint32_t b = (!t->b2c.eof && t->b2c.len < TUNNEL_WINDOW ? EPOLLIN : 0) |
	             (t->c2b.len > 0 ? EPOLLOUT : 0);

	if (c != t->cmask)
		loop_fd_mod(t->cfd, t->cmask = c);
	if (b != t->bmask)
		loop_fd_mod(t->bfd, t->bmask = b);
}

static void
pump(struct tunnel *t, uint32_t events)
{
	if (move(&t->c2b, t->cfd, t->bfd) == -1) {
		end(t, "client connection error");
		return;
	}
	if (move(&t->b2c, t->bfd, t->cfd) == -1) {
		end(t, "backend connection error");
		return;
	}
	if (t->c2b.shut && t->b2c.shut) {
		end(t, "closed");
		return;
	}
	/* Both sides gone for good (a hang-up with nothing left to pass on): done. */
	if (events & (EPOLLERR | EPOLLHUP)) {
		end(t, (events & EPOLLERR) ? "connection error" : "closed");
		return;
	}
	/* One side ended: the other gets a while to end too (a WebSocket close handshake). */
	if ((t->c2b.shut || t->b2c.shut) && t->timer == 0)
		t->timer = loop_timer_add(TUNNEL_LINGER_MS, on_linger, t);
	rearm(t);
}

static void
on_client(int fd, uint32_t events, void *arg)
{
	(void)fd;
	pump(arg, events);
}

static void
on_backend(int fd, uint32_t events, void *arg)
{
	struct tunnel *t = arg;

	(void)fd;
	if (t->state == T_SPLICED)
		pump(t, events);
	else
		handshake(t);
}

int
tunnel_splice(struct tunnel *t, int client_fd, const char *extra, size_t extra_len,
    tunnel_end_cb end_cb, void *arg)
{
	int fl;

	if (t->state != T_ANSWERED || extra_len > TUNNEL_WINDOW)
		return -1;
	/* MHD's socket is non-blocking already; a TLS socketpair end may not be. */
	if ((fl = fcntl(client_fd, F_GETFL)) == -1 || fcntl(client_fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return -1;
	t->cfd = client_fd;
	t->end_cb = end_cb;
	t->arg = arg;
	memcpy(t->c2b.buf, extra, extra_len);
	t->c2b.len = extra_len;
	t->cmask = t->bmask = EPOLLIN | EPOLLOUT;
	if (loop_fd_add(t->cfd, t->cmask, on_client, t) == -1)
		return -1;
	if (loop_fd_add(t->bfd, t->bmask, on_backend, t) == -1) {
		loop_fd_del(t->cfd);
		return -1;
	}
	t->state = T_SPLICED;
	t->next = spliced;
	if (spliced)
		spliced->prev = t;
	spliced = t;
	nspliced++;
	return 0;
}

void
tunnel_free(struct tunnel *t)
{
	if (t == NULL)
		return;
	if (t->state == T_SPLICED)
		unsplice(t); /* freed under way: nobody is told */
	loop_timer_cancel(t->timer);
	if (t->bfd != -1) {
		loop_fd_del(t->bfd);
		close(t->bfd);
	}
	buf_free_wiped(&t->req);
	free(t->c2b.buf);
	free(t->b2c.buf);
	free(t);
}

void
tunnel_end(struct tunnel *t, const char *why)
{
	if (t->state == T_SPLICED)
		end(t, why);
}

void
tunnel_end_all(void)
{
	while (spliced != NULL)
		end(spliced, "shutdown");
}

size_t
tunnel_count(void)
{
	return nspliced;
}
