/* http: the libmicrohttpd glue. Owns the listener, the daemon in external-epoll mode on the
 * loop, and each connection (`struct conn_ctx`): the per-address connection cap, the head
 * deadline, noticing a client that ended its side, MHD's own refusals in the log. What a
 * request is and how it goes is in http_req.c (the core), http_proxy.c (to a model),
 * http_body.c (spooled uploads), http_ws.c (WebSockets) and http_feed.c (live feeds); their
 * shared state is in http_int.h. */
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
#include "http_int.h"

struct http_state H = { .listen_fd = -1, .epoll_fd = -1 };

/* Bytes the client sent on this connection so far (0 when unknown). */
static uint64_t
rx_bytes(int fd)
{
	struct tcp_info ti;
	socklen_t       sl = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &sl) == -1 ||
	    sl < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received))
		return 0;
	return ti.tcpi_bytes_received;
}

/* The head did not complete in time. Part of one came: 408 with the JSON error, then close.
 * Nothing came (an idle keep-alive connection): close quietly, as a client that reuses it
 * expects. */
static void
on_head_deadline(void *arg)
{
	struct conn_ctx                *cc = arg;
	const union MHD_ConnectionInfo *ci;
	char                            id[65], ip[GATE_MAX_IP_BYTES], msg[96], *json;
	int                             t = H.cfg->limits.header_timeout_s;

	cc->head_timer = 0;
	ci = MHD_get_connection_info(cc->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci == NULL)
		return;
	if (cc->req == NULL && rx_bytes(ci->connect_fd) <= cc->rx_mark) {
		log_debug("http", "msg=\"idle connection closed\" timeout_s=%d", t);
	} else {
		gen_id(id, sizeof(id));
		conn_ip(cc->conn, ip, sizeof(ip));
		snprintf(msg, sizeof(msg), "request head not complete in %d s", t);
		log_emit(LOG_INFO, "http", id, "status=408 code=request_timeout msg=\"%s\" ip=%s%s",
		    msg, ip, H.tls ? " answer=none" : "");
		metrics_refusal("timeout");
		json = api_error_json(408, "request_timeout", msg);
		send_raw(cc->conn, 408, NULL, id, json);
		free(json);
		if (cc->req != NULL) {
			snprintf(cc->req->id, sizeof(cc->req->id), "%s", id);
			cc->req->status = 408;
		}
	}
	/* MHD notices at its next read and closes the connection itself. */
	shutdown(ci->connect_fd, SHUT_RDWR);
	H.need_run = true;
}

/* The whole head must arrive within limits.headerTimeoutSeconds — less as open connections
 * fill the daemon's table: past half of it, the time shrinks in step with the room left
 * (down to one second), so slow heads cannot keep the table full. */
static void
arm_head_deadline(struct conn_ctx *cc)
{
	uint64_t ms = (uint64_t)H.cfg->limits.header_timeout_s * 1000u;
	size_t   half = HTTP_CONN_LIMIT / 2;

	if (H.nconn > half)
		ms = MM_MAX(ms * (HTTP_CONN_LIMIT - MM_MIN(H.nconn, HTTP_CONN_LIMIT)) / half, 1000u);
	loop_timer_cancel(cc->head_timer);
	cc->head_timer = loop_timer_add(ms, on_head_deadline, cc);
}

/* An address at limits.maxConnectionsPerIP: its new connection is closed at once, counted,
 * and told in at most one log line a second. */
static void
refuse_connection(struct conn_ctx *cc, const union MHD_ConnectionInfo *ci)
{
	uint64_t now = loop_now_ms();

	metrics_refusal("connections");
	H.cap_refused++;
	if (now - H.cap_logged_ms >= 1000 || H.cap_logged_ms == 0) {
		log_warn("http", "msg=\"connection refused: address at its cap\" ip=%s cap=%d refused=%lu",
		    cc->ip, H.cfg->limits.max_conns_per_ip, H.cap_refused);
		H.cap_logged_ms = now;
		H.cap_refused = 0;
	}
	if (ci != NULL)
		shutdown(ci->connect_fd, SHUT_RDWR); /* MHD sees it at its next read and closes */
	H.need_run = true;
}

struct conn_ctx *
conn_ctx_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}

/* The connection's socket goes to a tunnel: our watch ends. */
void
unwatch_peer(struct conn_ctx *cc)
{
	if (cc == NULL || cc->fd == -1)
		return;
	loop_timer_cancel(cc->end_timer);
	cc->end_timer = 0;
	if (!cc->peer_end)
		loop_fd_del(cc->fd);
	cc->fd = -1;
	cc->peer_end = false;
}

/* The client ended its side. libmicrohttpd 0.9.75 takes a short read for a drained socket, so an
 * end that came with the last bytes of a head or body sets off no further event on its
 * edge-triggered epoll: it would wait for more in CLOSE_WAIT until its timeout, holding the
 * request. Once it has read all the client sent (nothing left in the socket), a request that is
 * still incomplete (or none at all) can never complete: the connection is closed now (MHD sees
 * the hang-up and ends the request as a client abort). A request being answered is left to
 * finish (the check runs again when it ends); one suspended ends as a hang-up. */
static void
peer_end_check(void *arg)
{
	struct conn_ctx *cc = arg;
	struct mm_req   *r = cc->req;
	int              left = 0;

	cc->end_timer = 0;
	if (r != NULL && r->suspended) {
		if (!r->client_gone)
			on_client_hup(cc->fd, EPOLLRDHUP, r);
		return;
	}
	if (r != NULL && r->phase != PH_HEAD && r->phase != PH_BODY)
		return;
	if (ioctl(cc->fd, FIONREAD, &left) == 0 && left > 0) {
		cc->end_timer = loop_timer_add(HTTP_PEER_END_MS, peer_end_check, cc);
		return;
	}
	if (r != NULL)
		r->client_gone = true; /* a client abort, in the access log too */
	shutdown(cc->fd, SHUT_RDWR);
	H.need_run = true;
}

static void
on_peer_end(int fd, uint32_t events, void *arg)
{
	struct conn_ctx *cc = arg;

	(void)events;
	loop_fd_del(fd); /* the end stays: level-triggered, it would fire on */
	cc->peer_end = true;
	if (cc->end_timer == 0)
		cc->end_timer = loop_timer_add(HTTP_PEER_END_MS, peer_end_check, cc);
}

/* Request and trace ids: unique, not secret. A xorshift generator seeded once from the
 * kernel saves a getrandom call per id. */
static uint64_t
next_rand(void)
{
	static uint64_t st;

	if (st == 0 && (getrandom(&st, sizeof(st), 0) != (ssize_t)sizeof(st) || st == 0))
		st = loop_now_ms() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
	st ^= st << 13;
	st ^= st >> 7;
	st ^= st << 17;
	return st * 0x2545f4914f6cdd1dull;
}

void
gen_id(char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t          v = next_rand();

	for (size_t i = 0; i < 16 && i + 1 < n; i++) {
		out[i] = hex[(v >> (60 - 4 * i)) & 15];
		out[i + 1] = '\0';
	}
}

void
conn_ip(struct MHD_Connection *conn, char *out, size_t n)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr          *sa = ci ? ci->client_addr : NULL;
	socklen_t                       sl = sa && sa->sa_family == AF_INET6
	                                   ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	if (sa == NULL || getnameinfo(sa, sl, out, (socklen_t)n, NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(out, n, "unknown");
}

/* libmicrohttpd answers some requests itself, with its HTML body, before our handler sees
 * them or instead of it: a head that does not fit the connection's memory (431, or 414 when
 * the request line alone does not), a Content-Length it cannot parse (400) or hold (413),
 * malformed chunked encoding (400). Logs and counts such an answer like one of ours. */
void
log_mhd_refusal(struct MHD_Connection *conn, char *id, size_t idn, int status, const char *path)
{
	char        ip[GATE_MAX_IP_BYTES], qp[300];
	const char *code = status == 431 ? "headers_too_large" : status == 414 ? "uri_too_long"
	                 : status == 413 ? "body_too_large" : "invalid_request";
	const char *msg = status == 431 ? "request head too large for the connection's memory"
	                : status == 414 ? "request line too long for the connection's memory"
	                : status == 413 ? "Content-Length too large"
	                : "malformed request head or body framing (Content-Length, chunks)";

	H.mhd_refused = 0;
	if (id[0] == '\0')
		gen_id(id, idn);
	conn_ip(conn, ip, sizeof(ip));
	log_emit(LOG_INFO, "http", id, "status=%d code=%s msg=\"%s\" ip=%s path=%s by=libmicrohttpd",
	    status, code, msg, ip, log_q(qp, sizeof(qp), path ? path : "-"));
	metrics_refusal(status == 413 || status == 414 || status == 431 ? "size" : "malformed");
}

int
mhd_status(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_HTTP_STATUS);

	return ci != NULL ? (int)ci->http_status : 0;
}

/* A burst (a thousand streams, a large upload) leaves the heap's freed pages resident: glibc
 * gives back only its top. They all go back once no request has ended for HTTP_TRIM_QUIET_MS,
 * or once a burst of HTTP_TRIM_BURST requests at once is down to a quarter (a monitor polling
 * /health every second never leaves the daemon quiet). */
void
on_quiet(void *arg)
{
	uint64_t quiet = loop_now_ms() - H.last_end_ms;

	(void)arg;
	H.trim_timer = 0;
	if (quiet < HTTP_TRIM_QUIET_MS && !(H.peak_live >= HTTP_TRIM_BURST && H.nlive * 4 <= H.peak_live)) {
		H.trim_timer = loop_timer_add(HTTP_TRIM_QUIET_MS - quiet, on_quiet, NULL);
		return;
	}
	H.peak_live = H.nlive;
	up_trim();
	malloc_trim(0);
	log_debug("http", "msg=\"quiet: free heap pages returned to the system\"");
}

/* A request on conn ended: the next one's head has its deadline, and a client that ended its
 * side meanwhile is looked at again. */
void
conn_request_ended(struct MHD_Connection *conn)
{
	struct conn_ctx                *cc = conn_ctx_of(conn);
	const union MHD_ConnectionInfo *ci;

	if (cc == NULL)
		return;
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	cc->req = NULL;
	cc->rx_mark = ci != NULL ? rx_bytes(ci->connect_fd) : 0;
	if (H.cfg != NULL)
		arm_head_deadline(cc); /* the next request on this connection */
	if (cc->peer_end && cc->end_timer == 0)
		cc->end_timer = loop_timer_add(HTTP_PEER_END_MS, peer_end_check, cc);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
    enum MHD_ConnectionNotificationCode toe)
{
	struct conn_ctx *cc = *socket_context;

	(void)cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
		    MHD_CONNECTION_INFO_CONNECTION_FD);
		int one = 1;

		/* Small writes (a response head, an SSE event) go out at once: with Nagle, a head
		 * and a body written apart wait for the client's delayed ACK (40 ms). */
		if (ci != NULL)
			setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		H.nconn++;
		cc = xcalloc(1, sizeof(*cc));
		cc->conn = conn;
		cc->fd = -1;
		*socket_context = cc;
		conn_ip(conn, cc->ip, sizeof(cc->ip));
		if (!gate_conn_open(H.conns, cc->ip, (unsigned)H.cfg->limits.max_conns_per_ip)) {
			refuse_connection(cc, ci);
		} else {
			cc->counted = true;
			arm_head_deadline(cc);
			/* A suspended request's own watch (watch_client) takes over once this fired. */
			if (ci != NULL && loop_fd_add(ci->connect_fd, EPOLLRDHUP, on_peer_end, cc) == 0)
				cc->fd = ci->connect_fd;
		}
	} else {
		if (H.accept_paused) {
			H.accept_paused = false;
			H.need_run = true;
		}
		if (H.nconn > 0)
			H.nconn--;
		/* A request line MHD refused (too long for its memory) never reached on_uri: no
		 * completion tells of it, only MHD's log line (mhd_log), just before this close. */
		if (cc != NULL && cc->req == NULL && H.mhd_refused != 0) {
			char id[65] = "";

			log_mhd_refusal(conn, id, sizeof(id), H.mhd_refused, NULL);
		}
		if (cc != NULL) {
			if (cc->counted)
				gate_conn_close(H.conns, cc->ip);
			loop_timer_cancel(cc->head_timer);
			loop_timer_cancel(cc->end_timer);
			if (cc->fd != -1 && !cc->peer_end)
				loop_fd_del(cc->fd);
			free(cc);
			*socket_context = NULL;
		}
	}
	metrics_set_connections(H.nconn);
}

static size_t
unescape_none(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

static void __attribute__((format(printf, 2, 0)))
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char        msg[512], q[600];
	const char *p;
	int         n;

	(void)cls;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	while (n > 0 && (size_t)n < sizeof(msg) && msg[n - 1] == '\n')
		msg[--n] = '\0';
	/* MHD says so only in this text: "Hit process or system resource limit at N connections,
	 * temporarily suspending accept()". */
	if (strstr(msg, "resource limit") != NULL) {
		uint64_t now = loop_now_ms();

		H.accept_paused = true;
		if (H.fd_warned_ms == 0 || now - H.fd_warned_ms >= HTTP_FD_WARN_MS) {
			H.fd_warned_ms = now;
			log_warn("http", "msg=\"out of file descriptors: new connections wait until one "
			    "closes\" connections=%zu", H.nconn);
		}
	}
	/* "Error processing request (HTTP response code is N (...)). Closing connection." */
	if ((p = strstr(msg, "HTTP response code is ")) != NULL) {
		int st = 0;

		for (p += 22; *p >= '0' && *p <= '9' && st < 1000; p++)
			st = st * 10 + (*p - '0');
		H.mhd_refused = st >= 400 && st < 600 ? st : 0;
	}
	log_debug("mhd", "msg=%s", log_q(q, sizeof(q), msg));
}

/* MHD often wants another run at once (a response written: its completion; a request
 * completed: the next one's read). Give it a few here rather than a loop round each, which
 * costs an epoll_wait on the loop's fd and one on MHD's. */
#define HTTP_MHD_RUNS 3

static void
mhd_run(void)
{
	/* What was logged about a request reaches stderr before its answer reaches the client.
	 * Access lines (logged after their answer) wait for the end of the round. */
	log_flush_urgent();
	H.need_run = false;
	if (H.d != NULL)
		MHD_run(H.d);
}

static void
on_mhd_ready(int fd, uint32_t events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	mhd_run();
}

static long
mhd_timeout(void *arg)
{
	MHD_UNSIGNED_LONG_LONG t;

	(void)arg;
	if (H.need_run)
		return 0;
	if (H.d == NULL || MHD_get_timeout(H.d, &t) != MHD_YES)
		return -1;
	return t > 60000 ? 60000 : (long)t;
}

static void
mhd_hook(void *arg)
{
	(void)arg;
	for (int i = 0; i < HTTP_MHD_RUNS && (H.need_run || mhd_timeout(NULL) == 0); i++)
		mhd_run();
}

static int
split_listen(const char *spec, char *host, size_t hn, char *port, size_t pn)
{
	const char *colon;

	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');

		if (end == NULL || end[1] != ':' || (size_t)(end - spec - 1) >= hn)
			return -1;
		snprintf(host, hn, "%.*s", (int)(end - spec - 1), spec + 1);
		colon = end + 1;
	} else {
		if ((colon = strrchr(spec, ':')) == NULL || (size_t)(colon - spec) >= hn)
			return -1;
		snprintf(host, hn, "%.*s", (int)(colon - spec), spec);
	}
	if (colon[1] == '\0' || strlen(colon + 1) >= pn)
		return -1;
	snprintf(port, pn, "%s", colon + 1);
	return 0;
}

static int
bind_listen(const char *spec, char **err)
{
	char             host[256], port[16], addr[INET6_ADDRSTRLEN];
	struct addrinfo  hints = { .ai_socktype = SOCK_STREAM,
	                           .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	struct sockaddr_storage ss = { 0 };
	socklen_t        sl = sizeof(ss);
	int              fd = -1, one = 1, rc;
	long long        pnum;

	if (split_listen(spec, host, sizeof(host), port, sizeof(port)) == -1 ||
	    parse_int(port, 0, 65535, &pnum) == -1) {
		*err = xasprintf("invalid listen address %s (expected host:port or [v6]:port)", spec);
		return -1;
	}
	if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res)) != 0) {
		*err = xasprintf("cannot resolve listen address %s: %s", spec, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (res->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 1024) == -1 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) == -1)
		goto fail;
	freeaddrinfo(res);
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 s6;

		memcpy(&s6, &ss, sizeof(s6));
		H.loopback = IN6_IS_ADDR_LOOPBACK(&s6.sin6_addr) ||
		    (IN6_IS_ADDR_V4MAPPED(&s6.sin6_addr) && s6.sin6_addr.s6_addr[12] == 127);
	} else {
		struct sockaddr_in s4;

		memcpy(&s4, &ss, sizeof(s4));
		H.loopback = ((const unsigned char *)&s4.sin_addr.s_addr)[0] == 127;
	}
	if (getnameinfo((struct sockaddr *)&ss, sl, addr, sizeof(addr), port, sizeof(port),
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(addr, sizeof(addr), "?");
	snprintf(H.bound, sizeof(H.bound), ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", addr, port);
	return fd;
fail:
	*err = xasprintf("cannot listen on %s: %s", spec, strerror(errno));
	if (fd != -1)
		close(fd);
	freeaddrinfo(res);
	return -1;
}

int
http_start(const char *spec, struct cfg *cfg, char **err)
{
	const union MHD_DaemonInfo *di;

	if ((H.listen_fd = bind_listen(spec, err)) == -1)
		return -1;
	H.cfg = cfg_ref(cfg);
	H.rates = gate_rates_new(cfg);
	H.conns = gate_conns_new();
	H.spool_ips = gate_conns_new();
	H.spool_keys = gate_conns_new();
	spool_budget_set(cfg);
	H.tls = cfg->tls_cert_pem != NULL;
	sched_set_drain_cb(on_drain);
	H.d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG |
	    (cfg->tls_cert_pem ? MHD_USE_TLS : 0),
	    0, NULL, NULL, on_request, NULL,
	    MHD_OPTION_LISTEN_SOCKET, H.listen_fd,
	    MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
	    MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	    /* A connection's memory: a head up to the header limit, with room to spare so that a
	     * head a little past the limit reaches first_call (our JSON 431) before it fills the
	     * pool (MHD's own HTML 431, the backstop). MHD zeroes the whole pool after each
	     * request, so every byte here is resident for each connection: keep it small. */
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->limits.max_header_bytes + HTTP_POOL_SLACK,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONN_LIMIT,
	    /* Our head deadline answers 408 first; MHD's idle timeout is the backstop. */
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->limits.header_timeout_s + 1u,
	    cfg->tls_cert_pem ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cfg->tls_cert_pem,
	    MHD_OPTION_HTTPS_MEM_KEY, cfg->tls_key_pem,
	    MHD_OPTION_END);
	if (H.d == NULL) {
		*err = xasprintf("cannot start the HTTP server on %s", spec);
		goto fail;
	}
	di = MHD_get_daemon_info(H.d, MHD_DAEMON_INFO_EPOLL_FD);
	if (di == NULL || loop_fd_add(di->epoll_fd, EPOLLIN, on_mhd_ready, NULL) == -1) {
		*err = xstrdup("cannot watch the HTTP server's epoll fd");
		goto fail;
	}
	H.epoll_fd = di->epoll_fd;
	loop_hook_add(mhd_hook, NULL);
	loop_timeout_add(mhd_timeout, NULL);
	return 0;
fail:
	http_free();
	return -1;
}

void
http_set_config(struct cfg *cfg)
{
	/* Requests already running keep the snapshot they started with. */
	cfg_unref(H.cfg);
	H.cfg = cfg_ref(cfg);
	gate_rates_free(H.rates);
	H.rates = gate_rates_new(cfg);
	spool_budget_set(cfg);
}

const char *
http_bound(void)
{
	return H.bound;
}

bool
http_bound_loopback(void)
{
	return H.loopback;
}

size_t
http_connections(void)
{
	return H.nconn;
}

void
http_stop_accepting(void)
{
	if (H.d == NULL || H.listen_fd == -1)
		return;
	if (MHD_quiesce_daemon(H.d) == H.listen_fd)
		close(H.listen_fd);
	H.listen_fd = -1;
	/* Open WebSockets would hold their models through the whole grace: clients reconnect. */
	tunnel_end_all();
	/* Live feeds never end by themselves: end them now, cleanly, with what they hold. */
	H.stopping = true;
	for (struct mm_req *r = H.live; r != NULL; r = r->live_next)
		end_feed(r);
}

void
http_free(void)
{
	loop_timer_cancel(H.drain_timer);
	H.drain_timer = 0;
	strv_free(H.draining);
	H.draining = NULL;
	if (H.epoll_fd != -1)
		loop_fd_del(H.epoll_fd);
	H.epoll_fd = -1;
	drain_feeds();
	/* MHD aborts the process if it is stopped with a connection still suspended. */
	for (struct mm_req *r = H.live; r != NULL; r = r->live_next)
		req_resume(r);
	if (H.d != NULL)
		MHD_stop_daemon(H.d);
	loop_timer_cancel(H.trim_timer); /* the requests it completed armed it again */
	H.trim_timer = 0;
	H.d = NULL;
	if (H.listen_fd != -1)
		close(H.listen_fd);
	H.listen_fd = -1;
	gate_rates_free(H.rates);
	H.rates = NULL;
	gate_conns_free(H.conns);
	H.conns = NULL;
	gate_conns_free(H.spool_ips);
	H.spool_ips = NULL;
	gate_conns_free(H.spool_keys);
	H.spool_keys = NULL;
	cfg_unref(H.cfg);
	H.cfg = NULL;
}
