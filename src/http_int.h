/* http_int: what the http files share — a request's state, the front end's state, a
 * connection's state, and the functions one file offers the others. Private to src/http*.c. */
#ifndef MODELMUX_HTTP_INT_H
#define MODELMUX_HTTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>

#include <microhttpd.h>

#include "modelmux/api.h"
#include "modelmux/gate.h"
#include "modelmux/http.h"
#include "modelmux/router.h"
#include "modelmux/sched.h"
#include "modelmux/util.h"

enum req_phase {
	PH_HEAD = 0,
	PH_BODY,
	PH_WAIT_MODEL,
	PH_WAIT_UPSTREAM,
	PH_STREAM,
	PH_REPLY,
};

/* An upload (BODY_SPOOL, multipart): scanned as it streams; kept in `body` up to
 * HTTP_MP_MEMORY, past that in an unlinked temporary file under the spool budget. Sent on with
 * at most the model value replaced (http_body.c). */
struct req_upload {
	struct mp_scan *mp;
	const char     *error;      /* the scanner's, or the spool's */
	int             spool_fd;   /* -1: none yet; -2: could not be made */
	uint64_t        spool_held; /* bytes of the spool budget this request holds */
	uint64_t        total;      /* body bytes taken */
	uint64_t        send_pos;   /* bytes of the (rewritten) body handed to the backend */
	uint64_t        cut_a, cut_z; /* the model value's range, replaced by cut_name */
	const char     *cut_name;   /* useModelName, or a selector's target (config-owned) */
};

/* A request for a model toward its backend, and the backend's answer (http_proxy.c). */
struct req_proxy {
	char                    *path;         /* /upstream/<model>/<rest>: <rest>, checked, re-encoded */
	char                    *body;         /* rewritten body, or NULL to send the request's */
	size_t                   body_len;
	char                   **headers;      /* one block (hdr_pack) */
	size_t                   headers_size; /* its bytes: wiped when it holds a key */
	struct up_xfer          *xfer;         /* the transfer in flight */
	bool                     paused;       /* the transfer waits for room in the window */
	bool                     sse;          /* the response is text/event-stream */
	bool                     wants_stream; /* the JSON body asked for "stream": true */
	bool                     loading;      /* sendLoadingState: our SSE head went out already */
	bool                     discard;      /* the backend's body has no place in the stream */
	uint64_t                 loading_timer;
	uint64_t                 loading_since;
	char                     tail2[2];     /* the last two body bytes from the backend */
	struct router_usage_scan usage;        /* token counts read from the response */
	/* A small answer of known length is sent whole: head and body in one write, once the body
	 * is all in (it arrives with the head, as a rule). */
	struct MHD_Response     *whole;
	char                    *whole_buf;    /* owned by `whole` */
	size_t                   whole_len, whole_got;
	int                      whole_status;
};

struct feed; /* a live feed's state (http_feed.c) */

/* One request, from its request line (on_uri) to MHD's completion callback (on_completed):
 * the core every request has, then what its kind adds. */
struct mm_req {
	struct MHD_Connection *conn;
	struct mm_req         *live_prev, *live_next; /* H.live: every request not yet completed */
	char                   id[65];
	char                  *uri;      /* raw request target, as received */
	char                  *path;     /* raw path, no query */
	const char            *query;    /* into uri, after '?'; NULL if none */
	const char            *method;   /* MHD's, valid for the request's life */
	const char            *version;  /* MHD's: "HTTP/1.1", "HTTP/1.0" */
	bool                   target_cut; /* a NUL in the request target cut what MHD gave us */
	enum req_phase         phase;
	struct route           route;
	bool                   method_ok;   /* the route takes this method */
	struct cfg            *cfg;
	char                   ip[GATE_MAX_IP_BYTES];   /* the client: the peer, or the address a
	                                                 * trusted proxy forwarded for */
	char                   peer[GATE_MAX_IP_BYTES]; /* the connection's other end */
	char                  *forwarded_for;          /* a trusted proxy's X-Forwarded-For chain */
	bool                   via_proxy;              /* the peer is in trustedProxies */
	char                   key_name[GATE_KEY_NAME_BYTES]; /* the API key's, "" for none */
	const char            *origin;      /* an allowed Origin: CORS headers go on the answer */
	/* the body */
	struct buf             body;
	bool                   body_too_large;
	bool                   refused;     /* answered before the body's end: the rest is dropped */
	uint64_t               refused_ms;
	size_t                 drained;     /* body bytes dropped after the limit */
	uint64_t               body_timer;  /* body idle timeout (408) */
	uint64_t               body_last;   /* when the last body byte came */
	/* the answer */
	struct MHD_Response   *pending;     /* answer to queue at the next handler call */
	int                    status;      /* the status queued */
	struct buf             out;         /* response window: bytes [out_off, out.len) */
	size_t                 out_off;
	bool                   up_done, up_ok; /* what fills the window has ended (well) */
	bool                   suspended;
	bool                   client_gone;
	int                    watch_fd;
	uint64_t               watch_timer;
	uint64_t               t_start, t_granted, t_first_byte;
	unsigned long long     bytes_out;
	/* a model's request: the model, its grant, and the kind's own state */
	const struct cfg_model *model;
	char                  *model_name;  /* as the client sent it */
	struct sched_ticket    ticket;
	struct req_upload      upl;         /* ROUTE_MULTIPART_MODEL, spooled /upstream bodies */
	struct req_proxy       px;          /* every request that goes to a backend */
	bool                   ws;          /* an Upgrade: websocket on /upstream (http_ws.c) */
	struct tunnel         *tun;         /* its backend side, until the 101 went out */
	/* a management request (http_api.c) */
	struct api_call        api;
	bool                   api_pending;
	/* a live feed */
	struct feed           *feed;        /* http_feed.c, or NULL */
};

struct http_state {
	struct MHD_Daemon *d;
	struct cfg        *cfg;
	int                listen_fd;
	int                epoll_fd;
	char               bound[INET6_ADDRSTRLEN + 8];
	bool               loopback;  /* the listener is on a loopback address */
	size_t             nconn;
	bool               need_run; /* a connection was resumed: MHD_run must follow */
	/* MHD ran out of file descriptors and stopped watching the listener until a connection
	 * closes; it looks again only at its next run, which nothing else may trigger. */
	bool               accept_paused;
	uint64_t           fd_warned_ms;
	bool               tls;      /* the daemon speaks TLS: no answer can bypass MHD */
	int                mhd_refused; /* status of an answer MHD made itself, not yet logged */
	struct gate_rates *rates;
	struct gate_conns *conns;     /* open connections per client address */
	struct gate_conns *spool_ips; /* spooled bytes per client address */
	struct gate_conns *spool_keys; /* and per API key */
	uint64_t           spool_budget, spool_used; /* limits.maxSpoolBytes, and what is held */
	uint64_t           cap_logged_ms; /* the last "per-address cap" log line */
	unsigned long      cap_refused;   /* refusals since then */
	struct ws_pipe    *ws;        /* open WebSockets */
	char             **draining;  /* models whose WebSockets are to end (sched's drain) */
	uint64_t           drain_timer;
	uint64_t           trim_timer;
	uint64_t           last_end_ms; /* when a request last ended */
	struct mm_req     *live;        /* requests from on_uri to on_completed */
	size_t             nlive, peak_live; /* how many; the most since the last trim */
	bool               stopping;    /* http_stop_accepting ran: feeds end */
};

/* The front end's one state, defined in http.c. */
extern struct http_state H;

/* Per connection: a deadline for each request head, whatever pace it trickles in at (MHD's
 * own timeout only bounds silence). */
struct conn_ctx {
	struct MHD_Connection *conn;
	uint64_t               head_timer;
	struct mm_req         *req;        /* from the request line (on_uri) to the completion */
	uint64_t               rx_mark;    /* bytes received when the last request ended */
	char                   ip[GATE_MAX_IP_BYTES]; /* the client's address, once known */
	bool                   counted;    /* in H.conns under ip */
	int                    fd;         /* watched for the client's end (EPOLLRDHUP), or -1 */
	bool                   peer_end;   /* the client ended its side */
	uint64_t               end_timer;  /* peer_end_check */
};

/* --- what each file offers the others --- */

/* http.c */
void conn_ip(struct MHD_Connection *conn, char *out, size_t n);
void gen_id(char *out, size_t n);
struct conn_ctx *conn_ctx_of(struct MHD_Connection *conn);
void log_mhd_refusal(struct MHD_Connection *conn, char *id, size_t idn, int status, const char *path);
int mhd_status(struct MHD_Connection *conn);
void unwatch_peer(struct conn_ctx *cc);
void on_quiet(void *arg);
void conn_request_ended(struct MHD_Connection *conn);

/* http_reply.c (answers), http_req.c (the core) */
bool send_raw(struct MHD_Connection *conn, int status, struct MHD_Response *hdrs, const char *id, const char *json);
void req_resume(struct mm_req *r);
void req_suspend(struct mm_req *r);
void on_client_hup(int fd, uint32_t events, void *arg);
const char *req_header(const struct mm_req *r, const char *name);
void add_cors_header(void *arg, const char *name, const char *value);
void set_reply(struct mm_req *r, int status, struct MHD_Response *resp);
void reply_text(struct mm_req *r, int status, const char *ctype, char *body, const char *allow);
void reply_error(struct mm_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Answers now on the socket (the body is not read), then the connection closes. */
void refuse_now(struct mm_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int out_append(struct mm_req *r, const char *p, size_t n);
ssize_t read_body(void *cls, uint64_t pos, char *buf, size_t max);
bool valid_traceparent(const char *s);
enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method, const char *version, const char *upload_data, size_t *upload_size, void **con_cls);
void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn);
void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe);

/* http_api.c */
void refuse_method(struct mm_req *r);
void dispatch_api(struct mm_req *r);
void serve_ui(struct mm_req *r);

/* http_proxy.c */
int body_limit(const struct mm_req *r);
void check_query_model(struct mm_req *r);
void check_upstream(struct mm_req *r);
void dispatch_model(struct mm_req *r);
void dispatch_multipart(struct mm_req *r);
void dispatch_upstream(struct mm_req *r);
void start_upstream(struct mm_req *r);
void stream_error_event(struct mm_req *r, const char *reason);
char *upstream_url(const struct mm_req *r, const char *proxy, char *buf, size_t n);

/* http_body.c */
void spool_budget_set(const struct cfg *c);
int spool_append(struct mm_req *r, const char *p, size_t n);
void spool_release(struct mm_req *r);
uint64_t mp_send_len(const struct mm_req *r);
size_t mp_body_read(void *arg, char *buf, size_t n);
void mp_body_rewind(void *arg);

/* http_ws.c */
bool is_ws_upgrade(const struct mm_req *r);
void start_ws(struct mm_req *r, const char *proxy);
void on_drain(const char *model_id);

/* http_feed.c */
void drain_feeds(void);
void end_feed(struct mm_req *r);
void start_feed(struct mm_req *r);
void feed_free(struct mm_req *r);
#endif
