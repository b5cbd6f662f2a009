/* fetch: curl multi socket interface on the loop (epoll watchers + one loop timer). */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "modelmux/fetch.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/util.h"

struct fetch_xfer {
	fetch_done_cb done;
	void         *arg;
};

static CURLM   *multi;
static uint64_t multi_timer;
static int      running;

static void check_done(void);

static void
on_sock(int fd, uint32_t events, void *arg)
{
	int flags = 0;

	(void)arg;
	if (events & EPOLLIN) {
		/* Leave delayed-ACK mode before curl reads: the read that drains the socket then
		 * acknowledges at once (see upstream_direct.c's quickack). */
		int one = 1;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
		flags |= CURL_CSELECT_IN;
	}
	if (events & EPOLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (events & (EPOLLERR | EPOLLHUP))
		flags |= CURL_CSELECT_ERR;
	curl_multi_socket_action(multi, fd, flags, &running);
	check_done();
}

static int
sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	uint32_t ev = 0;

	(void)easy;
	(void)userp;
	if (what == CURL_POLL_REMOVE) {
		loop_fd_del(fd);
		curl_multi_assign(multi, fd, NULL);
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev |= EPOLLOUT;
	if (socketp == NULL) {
		if (loop_fd_add(fd, ev, on_sock, NULL) == -1) {
			log_error("fetch", "msg=\"cannot watch socket\" fd=%d", fd);
			return -1;
		}
		curl_multi_assign(multi, fd, multi);
	} else {
		loop_fd_mod(fd, ev);
	}
	return 0;
}

static void
on_timer(void *arg)
{
	(void)arg;
	multi_timer = 0;
	curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done();
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	(void)m;
	(void)userp;
	loop_timer_cancel(multi_timer);
	multi_timer = 0;
	if (timeout_ms >= 0)
		multi_timer = loop_timer_add((uint64_t)timeout_ms, on_timer, NULL);
	return 0;
}

static void
check_done(void)
{
	CURLMsg *msg;
	int      left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
		struct fetch_xfer *x = NULL;
		CURL              *easy = msg->easy_handle;
		CURLcode           rc = msg->data.result;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
		curl_multi_remove_handle(multi, easy);
		curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
		if (x != NULL) {
			fetch_done_cb done = x->done;
			void         *arg = x->arg;

			free(x);
			done(easy, rc, arg);
		}
	}
}

static void
on_loop_round(void *arg)
{
	(void)arg;
	if (multi != NULL)
		check_done();
}

void
fetch_init(void)
{
	loop_hook_add(on_loop_round, NULL);
}

/* libcurl and the TLS library under it are set up on first use: most setups (local backends
 * at an IP address, served by upstream's own client) never need them, and their set-up alone
 * costs a few MB of resident pages. */
void
fetch_ready(void)
{
	if (multi != NULL)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		fatal("curl_global_init failed");
	if ((multi = curl_multi_init()) == NULL)
		fatal("curl_multi_init failed");
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	/* Backends are local: keep idle connections for reuse rather than let the cache shrink
	 * with the number of transfers in flight (a new connection per request otherwise). */
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)FETCH_MAX_IDLE_CONNS);
}

void
fetch_free(void)
{
	loop_timer_cancel(multi_timer);
	multi_timer = 0;
	if (multi == NULL)
		return;
	curl_multi_cleanup(multi);
	multi = NULL;
	curl_global_cleanup();
}

/* curl closes its sockets through here: the loop forgets the fd before its number can be
 * reused, whatever order curl tells us in. */
static int
close_sock(void *clientp, curl_socket_t fd)
{
	(void)clientp;
	loop_fd_del(fd);
	return close(fd);
}

int
fetch_start(CURL *easy, fetch_done_cb done, void *arg)
{
	struct fetch_xfer *x = xmalloc(sizeof(*x));

	fetch_ready();
	x->done = done;
	x->arg = arg;
	curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_sock);
	if (curl_multi_add_handle(multi, easy) != CURLM_OK) {
		curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
		free(x);
		return -1;
	}
	return 0;
}

void
fetch_cancel(CURL *easy)
{
	struct fetch_xfer *x = NULL;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
	curl_multi_remove_handle(multi, easy);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
	free(x);
}

void
fetch_unpause(CURL *easy)
{
	/* May call the write callback at once; a transfer it ends is collected by the loop hook,
	 * never from inside the caller. */
	curl_easy_pause(easy, CURLPAUSE_CONT);
}
