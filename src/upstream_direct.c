/* upstream, the direct client: our own HTTP/1.1 client on the loop, for http:// backends at an
 * IP address (the usual local inference server). One socket per exchange, kept-alive
 * connections pooled and watched while idle (closed after idleConn by a sweep), TCP_QUICKACK
 * after each request, no per-request allocation but the buffers. h1 reads the wire format. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "modelmux/fetch.h"
#include "modelmux/h1.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/upstream.h"
#include "modelmux/util.h"
#include "upstream_int.h"

#define UP_RBUF        (16u << 10) /* direct: response bytes read at once (grows for a head) */
#define UP_PIECE       (64u << 10) /* direct: a pulled request-body piece */
#define UP_EV_IN       (EPOLLIN | EPOLLRDHUP) /* what a connection waiting to read watches */

_Static_assert(H1_MAX_FIELDS <= UP_MAX_HEADERS, "every field h1 keeps fits in up_xfer.h");

enum up_framing {
	UP_F_LEN = 0,  /* Content-Length */
	UP_F_CHUNKED,
	UP_F_CLOSE,    /* until the backend closes */
	UP_F_NONE,     /* HEAD, 1xx, 204, 304 */
};

enum up_phase {
	UP_CONNECT = 0,
	UP_SEND,       /* request going out; an early answer is read too */
	UP_RECV,
};

/* The direct path's state. */
struct up_direct {
	int                     fd;        /* -1 when none */
	struct sockaddr_storage sa;
	socklen_t               salen;
	enum up_phase           phase;
	uint32_t                mask;      /* events watched; 0 when not in the loop */
	bool                    reused;    /* the connection came from the pool */
	bool                    retried;   /* a reused connection failed once already */
	bool                    got_bytes; /* any response byte read */
	bool                    sent_all;
	bool                    have_head;
	bool                    head_only; /* HEAD: no body whatever the head says */
	bool                    paused;
	bool                    eof;
	bool                    close;     /* the connection cannot be reused */
	bool                    starting;  /* inside up_start: failures are reported later */
	bool                    fresh;     /* neither from the pool nor back to it */
	int                     send_err;  /* errno of a failed send: its answer may still come */
	char                   *req;       /* request line and fields */
	size_t                  req_len, req_off;
	const char             *body;      /* in-memory body, borrowed */
	uint64_t                body_len, body_off;
	char                   *piece;     /* pulled body piece (read() bodies) */
	size_t                  piece_len, piece_off;
	uint64_t                pulled;
	void                  (*rewind)(void *arg);
	char                   *rbuf;
	size_t                  rlen, rpos, rcap;
	enum up_framing         framing;
	uint64_t                left;      /* UP_F_LEN: body bytes still to come */
	struct h1_chunked       ch;
	uint64_t                timer;     /* connect timeout, or the deferred resume/failure */
	char                    why[160];  /* a failure's text, also for the deferred report */
	long                    connect_s, keepalive_s, idle_s;
	unsigned                idle_max;
};

static struct keep rbufs = { .size = UP_RBUF };
static struct keep directs = { .size = sizeof(struct up_direct) };

/* Takes fd out of delayed-ACK ("ping-pong") mode. A backend that writes its response head and
 * body separately with Nagle on (llama-server, cpp-httplib) holds the body until the head is
 * acknowledged, and on a reused connection Linux, having seen us answer data with data, delays
 * that ACK by up to 40 ms: every reply after the first would wait for it. The mode comes back
 * only when we send soon after receiving, so the option is set again after every request goes
 * out: then each read that drains the socket acknowledges at once, for the whole response
 * (a streamed one included). One syscall per request; re-arming after every read as well
 * measured no faster. */
static void
quickack(int fd)
{
	int one = 1;

	if (fd >= 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

/* --- the direct path: kept-alive connections --- */

/* Idle connections, oldest first. Each stays in the loop, so a backend closing one (or a
 * process exiting) is noticed at once and the connection never handed out dead. */
struct up_idle {
	int                     fd;
	socklen_t               salen;
	struct sockaddr_storage sa;
	uint64_t                since;
	uint64_t                expires;  /* closed then (ms, loop clock); 0 = never */
};
static struct up_idle idle[FETCH_MAX_IDLE_CONNS];
static size_t         nidle;
static uint64_t       sweep_timer, sweep_at;

static void idle_arm(void);

static void
idle_drop(size_t i)
{
	loop_fd_del(idle[i].fd);
	close(idle[i].fd);
	memmove(idle + i, idle + i + 1, (nidle - i - 1) * sizeof(*idle));
	nidle--;
}

/* Anything on an idle connection (the backend closed it, or sent what nobody asked for) ends
 * it. */
static void
on_idle(int fd, uint32_t events, void *arg)
{
	(void)events;
	(void)arg;
	for (size_t i = 0; i < nidle; i++) {
		if (idle[i].fd == fd) {
			idle_drop(i);
			return;
		}
	}
	loop_fd_del(fd); /* not ours: cannot happen */
}

/* An idle connection to sa younger than idle_s (0: any age), taken out of the pool, or -1. */
static int
idle_take(const struct sockaddr_storage *sa, socklen_t salen, long idle_s)
{
	uint64_t now = loop_now_ms();

	for (size_t i = nidle; i-- > 0;) {
		int fd = idle[i].fd;

		if (idle[i].salen != salen || memcmp(&idle[i].sa, sa, salen) != 0)
			continue;
		if (idle_s > 0 && now - idle[i].since > (uint64_t)idle_s * 1000u) {
			idle_drop(i);
			continue;
		}
		memmove(idle + i, idle + i + 1, (nidle - i - 1) * sizeof(*idle));
		nidle--;
		return fd; /* still in the loop: the taker rebinds it */
	}
	return -1;
}

/* Closes the idle connections whose time is up: a backend with a few HTTP threads
 * (llama-server) gives one to each open connection, so one we keep but do not use holds a
 * thread another client needs, and one it closes first may meet our next request. */
static void
on_sweep(void *arg)
{
	uint64_t now = loop_now_ms();

	(void)arg;
	sweep_timer = 0;
	for (size_t i = nidle; i-- > 0;)
		if (idle[i].expires != 0 && idle[i].expires <= now)
			idle_drop(i);
	idle_arm();
}

/* Arms the sweep for the earliest expiry, if it is not armed for it already. */
static void
idle_arm(void)
{
	uint64_t first = 0, now = loop_now_ms();

	for (size_t i = 0; i < nidle; i++)
		if (idle[i].expires != 0 && (first == 0 || idle[i].expires < first))
			first = idle[i].expires;
	if (first == 0 || (sweep_timer != 0 && sweep_at <= first))
		return;
	loop_timer_cancel(sweep_timer);
	sweep_at = first;
	sweep_timer = loop_timer_add(first > now ? first - now : 0, on_sweep, NULL);
}

/* Puts a connection in the pool; `mask` is what the loop watches on it now (0: not in it).
 * It is closed after idle_s (0: kept), and at most idle_max (0: no cap of its own) stay idle
 * to the same address: the oldest goes first. */
static void
idle_put(int fd, const struct sockaddr_storage *sa, socklen_t salen, uint32_t mask, long idle_s,
    unsigned idle_max)
{
	size_t same = 0;

	if (mask == 0 ? loop_fd_add(fd, UP_EV_IN, on_idle, NULL) == -1
	    : (mask != UP_EV_IN && loop_fd_mod(fd, UP_EV_IN) == -1)) {
		loop_fd_del(fd);
		close(fd);
		return;
	}
	loop_fd_rebind(fd, on_idle, NULL);
	for (size_t i = 0; i < nidle; i++)
		same += idle[i].salen == salen && memcmp(&idle[i].sa, sa, salen) == 0;
	for (size_t i = 0; idle_max > 0 && same >= idle_max && i < nidle;) {
		if (idle[i].salen == salen && memcmp(&idle[i].sa, sa, salen) == 0) {
			idle_drop(i);
			same--;
		} else {
			i++;
		}
	}
	if (nidle == FETCH_MAX_IDLE_CONNS)
		idle_drop(0);
	idle[nidle].fd = fd;
	idle[nidle].salen = salen;
	memcpy(&idle[nidle].sa, sa, salen);
	idle[nidle].since = loop_now_ms();
	idle[nidle].expires = idle_s > 0 ? idle[nidle].since + (uint64_t)idle_s * 1000u : 0;
	nidle++;
	idle_arm();
}

void
up__direct_trim(void)
{
	up__keep_trim(&rbufs);
	up__keep_trim(&directs);
}

void
up__direct_free_pool(void)
{
	while (nidle > 0)
		idle_drop(nidle - 1);
	loop_timer_cancel(sweep_timer);
	sweep_timer = 0;
}

/* --- the direct path: one exchange --- */

static void d_on_event(int fd, uint32_t events, void *arg);
static void d_connect(struct up_xfer *x);

void
up__direct_free(struct up_direct *d)
{
	if (d == NULL)
		return;
	loop_timer_cancel(d->timer);
	if (d->fd != -1) {
		loop_fd_del(d->fd);
		close(d->fd);
	}
	if (d->req != NULL) /* the head may hold the backend's key */
		OPENSSL_cleanse(d->req, d->req_len);
	free(d->req);
	free(d->piece);
	if (d->rcap == UP_RBUF)
		up__keep_put(&rbufs, d->rbuf);
	else
		free(d->rbuf);
	up__keep_put(&directs, d);
}

static void
d_watch(struct up_xfer *x, uint32_t mask)
{
	struct up_direct *d = x->d;

	if (mask == d->mask)
		return;
	if (d->mask == 0) {
		if (loop_fd_add(d->fd, mask, d_on_event, x) == -1)
			log_error("upstream", "msg=\"cannot watch a backend socket\" fd=%d", d->fd);
	} else if (mask == 0) {
		loop_fd_del(d->fd);
	} else {
		(void)loop_fd_mod(d->fd, mask);
	}
	d->mask = mask;
}

/* Ends the exchange: the connection back to the pool if it can carry another, then the owner's
 * done callback with the transfer freed. */
static void
d_finish(struct up_xfer *x, bool ok, const char *reason)
{
	struct up_direct          *d = x->d;
	const struct up_callbacks *cb = x->cb;
	void                      *cbarg = x->arg;
	static char                why[sizeof(d->why)];

	if (ok && !d->close && !d->fresh && d->sent_all && d->rpos == d->rlen &&
	    d->framing != UP_F_CLOSE && d->fd != -1) {
		idle_put(d->fd, &d->sa, d->salen, d->mask, d->idle_s, d->idle_max);
		d->fd = -1;
	}
	if (ok)
		up__send_head(x);
	else
		snprintf(why, sizeof(why), "%s", reason);
	if (x->header_overflow)
		log_warn("upstream", "msg=\"response headers past the limit were dropped\"");
	up__xfer_free(x);
	cb->done(cbarg, ok, ok ? NULL : why);
}

static void
d_fail(struct up_xfer *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void d_on_deferred(void *arg);

static void
d_fail(struct up_xfer *x, const char *fmt, ...)
{
	struct up_direct *d = x->d;
	va_list           ap;

	va_start(ap, fmt);
	vsnprintf(d->why, sizeof(d->why), fmt, ap);
	va_end(ap);
	if (!d->starting) {
		d_finish(x, false, d->why);
		return;
	}
	/* Found inside up_start: reported from the loop, as any other failure. */
	d_watch(x, 0);
	loop_timer_cancel(d->timer);
	if ((d->timer = loop_timer_add(0, d_on_deferred, x)) == 0)
		log_error("upstream", "msg=\"out of timers\"");
}

/* A reused connection that fails before any answer was closed by the backend while we picked
 * it: the request goes again, once, on a new connection (as curl does). */
static bool
d_retry(struct up_xfer *x)
{
	struct up_direct *d = x->d;

	if (!d->reused || d->retried || d->got_bytes || d->have_head)
		return false;
	if (d->pulled > 0 || d->piece_len > 0) {
		if (d->rewind == NULL)
			return false;
		d->rewind(x->read_arg);
	}
	d->retried = true;
	d->reused = false;
	d_watch(x, 0);
	close(d->fd);
	d->fd = -1;
	d->req_off = 0;
	d->sent_all = d->close = false;
	d->send_err = 0;
	d->body_off = d->pulled = 0;
	d->piece_len = d->piece_off = 0;
	d->rlen = d->rpos = 0;
	d->eof = false;
	d_connect(x);
	return true;
}

static void
d_on_deferred(void *arg)
{
	struct up_xfer *x = arg;

	x->d->timer = 0;
	d_finish(x, false, x->d->why);
}

/* Takes a final response head: its status and fields (ending them in place in the read
 * buffer), and how its body is framed. */
static void
d_take_head(struct up_xfer *x, const struct h1_head *hd)
{
	struct up_direct *d = x->d;

	d->have_head = true;
	x->status = hd->status;
	x->content_length = hd->chunked ? -1 : hd->content_length;
	d->close |= hd->close;
	for (size_t i = 0; i < hd->nfields; i++) {
		const struct h1_field *f = &hd->f[i];

		if (up__is_hop_by_hop(f->name, f->nlen))
			continue;
		/* The head's bytes are consumed: end name and value in place. */
		((char *)f->name)[f->nlen] = '\0';
		((char *)f->value)[f->vlen] = '\0';
		x->h[x->nh].name = (char *)f->name;
		x->h[x->nh].value = (char *)f->value;
		x->nh++;
	}
	x->header_overflow = hd->dropped > 0;
	if (d->head_only || hd->status == 204 || hd->status == 304) {
		d->framing = UP_F_NONE;
	} else if (hd->chunked) {
		d->framing = UP_F_CHUNKED;
	} else if (hd->content_length >= 0) {
		d->framing = UP_F_LEN;
		d->left = (uint64_t)hd->content_length;
	} else {
		d->framing = UP_F_CLOSE;
	}
}

/* Hands the response head and body bytes held to the owner; ends the exchange when the body is
 * complete. Returns false when the transfer is gone. */
static bool
d_deliver(struct up_xfer *x)
{
	struct up_direct *d = x->d;
	const char       *why = NULL;

	while (!d->have_head) {
		struct h1_head hd;
		ssize_t        hl = h1_parse_head(d->rbuf + d->rpos, d->rlen - d->rpos, &hd, &why);

		if (hl == 0)
			return true;
		if (hl < 0) {
			d_fail(x, "malformed response from the backend: %s", why);
			return false;
		}
		if (hd.status == 101) {
			d_fail(x, "malformed response from the backend: 101 to a request without Upgrade");
			return false;
		}
		d->rpos += (size_t)hl;
		if (hd.status < 200)
			continue; /* 100 Continue, 103 Early Hints: the real head follows */
		d_take_head(x, &hd);
		up__send_head(x);
	}
	for (;;) {
		const char *p = d->rbuf + d->rpos;
		size_t      avail = d->rlen - d->rpos, n = 0, used = 0;
		bool        end = false;
		struct h1_chunked ch = d->ch;

		switch (d->framing) {
		case UP_F_NONE:
			end = true;
			used = 0;
			break;
		case UP_F_LEN:
			n = used = avail < d->left ? avail : (size_t)d->left;
			end = d->left == n;
			break;
		case UP_F_CLOSE:
			n = used = avail;
			end = d->eof;
			break;
		case UP_F_CHUNKED: {
			ssize_t c = h1_chunked_step(&ch, p, avail, &p, &n, &why);

			if (c < 0) {
				d_fail(x, "malformed response from the backend: %s", why);
				return false;
			}
			used = (size_t)c;
			end = ch.state == H1_CH_DONE;
			break;
		}
		}
		if (n > 0 && x->cb->body(x->arg, p, n) != n) {
			/* Not taken: the same bytes come again after up_resume. */
			d->paused = true;
			d_watch(x, 0);
			return true;
		}
		d->ch = ch;
		d->rpos += used;
		if (d->framing == UP_F_LEN)
			d->left -= n;
		if (end) {
			d_finish(x, true, NULL);
			return false;
		}
		if (used == 0 || d->rpos == d->rlen)
			break;
	}
	if (d->rpos == d->rlen)
		d->rpos = d->rlen = 0;
	return true;
}

/* Reads once (the loop says again when there is more). Returns false when the transfer is
 * gone. */
static bool
d_recv(struct up_xfer *x)
{
	struct up_direct *d = x->d;
	ssize_t           n;

	if (d->rbuf == NULL) {
		d->rcap = UP_RBUF;
		d->rbuf = up__keep_get(&rbufs);
	}
	if (d->rlen == d->rcap) {
		if (d->rpos > 0) {
			memmove(d->rbuf, d->rbuf + d->rpos, d->rlen - d->rpos);
			d->rlen -= d->rpos;
			d->rpos = 0;
		} else if (!d->have_head && d->rcap < H1_MAX_HEAD_BYTES) {
			d->rcap = MM_MIN((size_t)d->rcap * 2, (size_t)H1_MAX_HEAD_BYTES);
			d->rbuf = xreallocarray(d->rbuf, d->rcap, 1);
		} else {
			d_fail(x, "malformed response from the backend: nothing taken from a full buffer");
			return false;
		}
	}
	n = recv(d->fd, d->rbuf + d->rlen, d->rcap - d->rlen, 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n > 0) {
		d->got_bytes = true;
		d->rlen += (size_t)n;
		return d_deliver(x);
	}
	if (d_retry(x))
		return true;
	if (n == 0 && d->have_head && d->framing == UP_F_CLOSE) {
		d->eof = true;
		return d_deliver(x);
	}
	if (!d->got_bytes && d->send_err != 0) {
		d_fail(x, "cannot send the request to the backend: %s", strerror(d->send_err));
		return false;
	}
	d_fail(x, "%s%s%s", !d->got_bytes ? "the backend closed the connection without answering"
	    : !d->have_head ? "the backend closed the connection in the middle of the response head"
	    : "the backend closed the connection before the end of the response",
	    n == -1 ? ": " : "", n == -1 ? strerror(errno) : "");
	return false;
}

/* Pulls the next piece of a read() body. Returns false, the transfer failed, when the body
 * ends before its announced size. */
static bool
d_pull(struct up_xfer *x)
{
	struct up_direct *d = x->d;
	size_t            want = (size_t)MM_MIN((uint64_t)UP_PIECE, d->body_len - d->pulled);

	if (d->piece == NULL)
		d->piece = xmalloc(UP_PIECE);
	d->piece_off = 0;
	d->piece_len = x->read(x->read_arg, d->piece, want);
	d->pulled += d->piece_len;
	if (d->piece_len == 0) {
		d_fail(x, "the request body ended %llu bytes early",
		    (unsigned long long)(d->body_len - d->pulled));
		return false;
	}
	return true;
}

/* Sends what it can of the request; then waits for the answer. */
static void
d_send(struct up_xfer *x)
{
	struct up_direct *d = x->d;

	while (!d->sent_all) {
		struct iovec  iov[2];
		size_t       *adv[2];   /* what each iov's bytes advance */
		uint64_t      body_sent = 0;
		struct msghdr mh = { .msg_iov = iov };
		ssize_t       n;
		size_t        niov = 0;

		if (d->req_off < d->req_len) {
			adv[niov] = &d->req_off;
			iov[niov++] = (struct iovec){ d->req + d->req_off, d->req_len - d->req_off };
		}
		if (d->body != NULL && d->body_off < d->body_len) {
			adv[niov] = NULL; /* body_off, a uint64_t */
			iov[niov++] = (struct iovec){ (char *)d->body + d->body_off,
			    (size_t)MM_MIN(d->body_len - d->body_off, (uint64_t)SSIZE_MAX) };
		} else if (x->read != NULL && d->piece_off == d->piece_len && d->pulled < d->body_len &&
		    !d_pull(x)) {
			return;
		}
		if (x->read != NULL && d->piece_off < d->piece_len) {
			adv[niov] = &d->piece_off;
			iov[niov++] = (struct iovec){ d->piece + d->piece_off, d->piece_len - d->piece_off };
		}
		if (niov == 0) {
			d->sent_all = true;
			break;
		}
		mh.msg_iovlen = niov;
		n = sendmsg(d->fd, &mh, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				if (!d->paused)
					d_watch(x, UP_EV_IN | EPOLLOUT);
				return;
			}
			/* The backend may have answered before taking the whole body (a 413) and
			 * closed: its answer is still there to read. d_recv decides, once it sees what
			 * came: the answer, or a retry, or this error. */
			d->send_err = errno;
			d->close = true;
			d->phase = UP_RECV;
			if (!d->paused)
				d_watch(x, UP_EV_IN);
			return;
		}
		for (size_t i = 0; i < niov && n > 0; i++) {
			size_t k = MM_MIN((size_t)n, iov[i].iov_len);

			if (adv[i] != NULL)
				*adv[i] += k;
			else
				body_sent += k;
			n -= (ssize_t)k;
		}
		d->body_off += body_sent;
	}
	free(d->piece);
	d->piece = NULL;
	d->phase = UP_RECV;
	quickack(d->fd);
	if (!d->paused)
		d_watch(x, UP_EV_IN);
}

static void
on_connect_timeout(void *arg)
{
	struct up_xfer *x = arg;

	x->d->timer = 0;
	d_fail(x, "timed out connecting to the backend after %ld s", x->d->connect_s);
}

static void
d_on_event(int fd, uint32_t events, void *arg)
{
	struct up_xfer   *x = arg;
	struct up_direct *d = x->d;

	(void)fd;
	if (d->phase == UP_CONNECT) {
		int       err = 0;
		socklen_t el = sizeof(err);

		if (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &el) == -1)
			err = errno;
		if (err != 0) {
			d_fail(x, "cannot connect to the backend: %s", strerror(err));
			return;
		}
		loop_timer_cancel(d->timer);
		d->timer = 0;
		d->phase = UP_SEND;
		d_send(x);
		return;
	}
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) && !d_recv(x))
		return;
	if (d->phase == UP_SEND && !d->paused && (events & EPOLLOUT))
		d_send(x);
}

static void
d_connect(struct up_xfer *x)
{
	struct up_direct *d = x->d;
	int               one = 1;
	bool              starting = d->starting;

	d->phase = UP_CONNECT; /* whatever fails below, the old phase's work is over */

	/* Whoever called us still holds the transfer: failures here are reported later. */
	d->starting = true;
	d->fd = socket(d->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (d->fd == -1) {
		d_fail(x, "cannot connect to the backend: %s", strerror(errno));
		goto out;
	}
	(void)setsockopt(d->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (d->keepalive_s > 0) {
		int secs = (int)d->keepalive_s;

		(void)setsockopt(d->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		(void)setsockopt(d->fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof(secs));
		(void)setsockopt(d->fd, IPPROTO_TCP, TCP_KEEPINTVL, &secs, sizeof(secs));
	}
	if (connect(d->fd, (struct sockaddr *)&d->sa, d->salen) == -1 && errno != EINPROGRESS) {
		d_fail(x, "cannot connect to the backend: %s", strerror(errno));
		goto out;
	}
	d->phase = UP_CONNECT;
	d->mask = 0;
	d_watch(x, EPOLLOUT);
	if (d->connect_s > 0)
		d->timer = loop_timer_add((uint64_t)d->connect_s * 1000u, on_connect_timeout, x);
out:
	d->starting = starting;
}

/* The direct path takes http:// URLs whose host is an IP address and whose target can go on
 * the request line as it is. */
static bool
direct_addr(const char *url, struct h1_url *u, struct sockaddr_storage *sa, socklen_t *salen)
{
	struct sockaddr_in  *s4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;

	if (h1_parse_url(url, u) == -1 || u->target[0] != '/' || !h1_target_ok(u->target))
		return false;
	memset(sa, 0, sizeof(*sa));
	if (inet_pton(AF_INET, u->host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)strtoul(u->port, NULL, 10));
		*salen = sizeof(*s4);
		return true;
	}
	if (inet_pton(AF_INET6, u->host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)strtoul(u->port, NULL, 10));
		*salen = sizeof(*s6);
		return true;
	}
	return false;
}

static char *
put(char *w, const char *s, size_t n)
{
	memcpy(w, s, n);
	return w + n;
}

/* The request head (line, Host, the owner's fields, Content-Length) in one allocation: it is
 * built for every request, so no printf. */
static void
build_head(struct up_direct *d, const struct up_request *r, const struct h1_url *u, bool bodyless)
{
	char   cl[48];
	size_t ml = strlen(r->method), tl = strlen(u->target), cll = 0, n;
	char  *w;

	if (!bodyless)
		cll = (size_t)snprintf(cl, sizeof(cl), "Content-Length: %llu\r\n",
		    (unsigned long long)d->body_len);
	n = ml + 1 + tl + 11 + 6 + u->alen + 2 + cll + 2;
	for (char *const *h = r->headers; h && *h; h++)
		n += strlen(*h) + 2;
	w = d->req = xmalloc(n);
	w = put(w, r->method, ml);
	w = put(w, " ", 1);
	w = put(w, u->target, tl);
	w = put(w, " HTTP/1.1\r\nHost: ", 17);
	w = put(w, u->authority, u->alen);
	w = put(w, "\r\n", 2);
	for (char *const *h = r->headers; h && *h; h++) {
		w = put(w, *h, strlen(*h));
		w = put(w, "\r\n", 2);
	}
	w = put(w, cl, cll);
	w = put(w, "\r\n", 2);
	d->req_len = (size_t)(w - d->req);
}

static void
direct_start(struct up_xfer *x, const struct up_request *r, const struct h1_url *u)
{
	struct up_direct *d = x->d;
	bool              bodyless = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
	int               fd;

	d->head_only = strcmp(r->method, "HEAD") == 0;
	d->connect_s = r->connect_timeout_s;
	d->keepalive_s = r->keepalive_s;
	d->idle_s = r->idle_conn_s;
	d->idle_max = r->idle_max;
	d->rewind = r->rewind;
	d->fresh = r->fresh;
	if (!bodyless) {
		d->body_len = r->read != NULL || r->body != NULL ? r->body_len : 0;
		d->body = r->read != NULL ? NULL : r->body;
	}
	build_head(d, r, u, bodyless);
	if (!d->fresh && (fd = idle_take(&d->sa, d->salen, d->idle_s)) != -1) {
		d->fd = fd;
		d->reused = true;
		d->phase = UP_SEND;
		d->mask = UP_EV_IN;
		loop_fd_rebind(fd, d_on_event, x);
		d->starting = true;
		d_send(x);
		d->starting = false;
		return;
	}
	d_connect(x);
}

/* Starts x on the direct path if r's URL is for it (see direct_addr). */
bool
up__direct_start(struct up_xfer *x, const struct up_request *r)
{
	struct sockaddr_storage sa;
	socklen_t               salen;
	struct h1_url           u;

	if (!direct_addr(r->url, &u, &sa, &salen))
		return false;
	x->d = up__keep_get(&directs);
	memset(x->d, 0, sizeof(*x->d));
	x->d->fd = -1;
	x->d->sa = sa;
	x->d->salen = salen;
	direct_start(x, r, &u);
	return true;
}

static void
d_on_resume(void *arg)
{
	struct up_xfer   *x = arg;
	struct up_direct *d = x->d;

	d->timer = 0;
	if (!d_deliver(x) || d->paused)
		return;
	d_watch(x, d->phase == UP_SEND ? UP_EV_IN | EPOLLOUT : UP_EV_IN);
}

void
up__direct_resume(struct up_xfer *x)
{
	struct up_direct *d = x->d;

	if (!d->paused)
		return;
	d->paused = false;
	/* Never from inside the caller: the bytes held may end the transfer. */
	loop_timer_cancel(d->timer);
	if ((d->timer = loop_timer_add(0, d_on_resume, x)) == 0)
		log_error("upstream", "msg=\"out of timers\"");
}
