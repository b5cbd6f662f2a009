/* loop: epoll + timers (binary min-heap) + signalfd. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/util.h"

#define LOOP_MAX_EVENTS 256

struct watcher {
	int        fd;
	loop_fd_cb cb;
	void      *arg;
	bool       live;
	uint32_t   gen;  /* bumped by every loop_fd_add: tags its epoll registration */
};

/* An epoll registration's data: the fd and the generation of the watcher that made it. A
 * batch of events from one epoll_wait may hold one for a watcher that a callback earlier in
 * the same batch removed — and whose fd number was then reused by another watcher (a client
 * socket closed and a backend socket opened in the same round): the generation tells such a
 * stale event from one for the new watcher, which must not receive it. */
static uint64_t
ev_data(int fd, uint32_t gen)
{
	return (uint64_t)gen << 32 | (uint32_t)fd;
}

struct timer {
	uint64_t      id;
	uint64_t      due;
	loop_timer_cb cb;
	void         *arg;
};

static struct {
	int             epfd;
	int             sigfd;
	loop_signal_cb  sig_cb;
	void           *sig_arg;
	struct watcher **fds; /* indexed by fd */
	size_t          nfds;
	struct timer   *heap;
	size_t          ntimers, captimers;
	uint64_t        next_id;
	struct { loop_hook_cb cb; void *arg; } hooks[LOOP_MAX_HOOKS];
	size_t          nhooks;
	struct { loop_timeout_cb cb; void *arg; } tmos[LOOP_MAX_HOOKS];
	size_t          ntmos;
	bool            stop;
} L = { .epfd = -1, .sigfd = -1 };

uint64_t
loop_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
on_signal(int fd, uint32_t events, void *arg)
{
	struct signalfd_siginfo si;

	(void)events;
	(void)arg;
	for (;;) {
		ssize_t n = read(fd, &si, sizeof(si));

		if (n == -1 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(si))
			return;
		L.sig_cb((int)si.ssi_signo, L.sig_arg);
	}
}

void
loop_init(const int *sigs, loop_signal_cb sig_cb, void *arg)
{
	sigset_t set;

	if ((L.epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1: %s", strerror(errno));
	sigemptyset(&set);
	for (const int *s = sigs; s && *s; s++)
		sigaddset(&set, *s);
	if ((L.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		fatal("signalfd: %s", strerror(errno));
	L.sig_cb = sig_cb;
	L.sig_arg = arg;
	if (loop_fd_add(L.sigfd, EPOLLIN, on_signal, NULL) == -1)
		fatal("epoll_ctl: %s", strerror(errno));
}

void
loop_free(void)
{
	for (size_t i = 0; i < L.nfds; i++)
		free(L.fds[i]);
	free(L.fds);
	free(L.heap);
	if (L.sigfd != -1)
		close(L.sigfd);
	if (L.epfd != -1)
		close(L.epfd);
	memset(&L, 0, sizeof(L));
	L.epfd = L.sigfd = -1;
}

int
loop_fd_add(int fd, uint32_t events, loop_fd_cb cb, void *arg)
{
	struct epoll_event ev = { .events = events };
	struct watcher    *w;

	if (fd < 0)
		return -1;
	if ((size_t)fd >= L.nfds) {
		size_t n = MM_MAX((size_t)fd + 1, L.nfds * 2);

		L.fds = xreallocarray(L.fds, n, sizeof(*L.fds));
		memset(L.fds + L.nfds, 0, (n - L.nfds) * sizeof(*L.fds));
		L.nfds = n;
	}
	if (L.fds[fd] == NULL)
		L.fds[fd] = xcalloc(1, sizeof(**L.fds));
	w = L.fds[fd];
	if (w->live)
		return -1;
	ev.data.u64 = ev_data(fd, w->gen + 1);
	if (epoll_ctl(L.epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
		return -1;
	w->gen++;
	w->fd = fd;
	w->cb = cb;
	w->arg = arg;
	w->live = true;
	return 0;
}

int
loop_fd_mod(int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events };

	if (fd < 0 || (size_t)fd >= L.nfds || L.fds[fd] == NULL || !L.fds[fd]->live) {
		errno = EBADF;
		return -1;
	}
	ev.data.u64 = ev_data(fd, L.fds[fd]->gen);
	return epoll_ctl(L.epfd, EPOLL_CTL_MOD, fd, &ev);
}

int
loop_fd_rebind(int fd, loop_fd_cb cb, void *arg)
{
	if (fd < 0 || (size_t)fd >= L.nfds || L.fds[fd] == NULL || !L.fds[fd]->live) {
		errno = EBADF;
		return -1;
	}
	L.fds[fd]->cb = cb;
	L.fds[fd]->arg = arg;
	return 0;
}

void
loop_fd_del(int fd)
{
	if (fd < 0 || (size_t)fd >= L.nfds || L.fds[fd] == NULL || !L.fds[fd]->live)
		return;
	/* The fd may already be closed by its owner: ignore errors. */
	(void)epoll_ctl(L.epfd, EPOLL_CTL_DEL, fd, NULL);
	L.fds[fd]->live = false;
}

/* --- timers: a binary min-heap ordered by (due, id) --- */

static bool
timer_before(const struct timer *a, const struct timer *b)
{
	return a->due < b->due || (a->due == b->due && a->id < b->id);
}

static void
heap_swap(size_t i, size_t j)
{
	struct timer t = L.heap[i];

	L.heap[i] = L.heap[j];
	L.heap[j] = t;
}

static void
heap_up(size_t i)
{
	while (i > 0 && timer_before(&L.heap[i], &L.heap[(i - 1) / 2])) {
		heap_swap(i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void
heap_down(size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < L.ntimers && timer_before(&L.heap[l], &L.heap[m]))
			m = l;
		if (r < L.ntimers && timer_before(&L.heap[r], &L.heap[m]))
			m = r;
		if (m == i)
			return;
		heap_swap(i, m);
		i = m;
	}
}

static void
heap_remove(size_t i)
{
	L.heap[i] = L.heap[--L.ntimers];
	if (i < L.ntimers) {
		heap_up(i);
		heap_down(i);
	}
}

uint64_t
loop_timer_add(uint64_t ms, loop_timer_cb cb, void *arg)
{
	if (L.ntimers >= LOOP_MAX_TIMERS)
		return 0;
	if (L.ntimers == L.captimers) {
		L.captimers = L.captimers ? L.captimers * 2 : 64;
		L.heap = xreallocarray(L.heap, L.captimers, sizeof(*L.heap));
	}
	L.heap[L.ntimers] = (struct timer){ ++L.next_id, loop_now_ms() + ms, cb, arg };
	heap_up(L.ntimers++);
	return L.next_id;
}

void
loop_timer_cancel(uint64_t id)
{
	if (id == 0)
		return;
	for (size_t i = 0; i < L.ntimers; i++) {
		if (L.heap[i].id == id) {
			heap_remove(i);
			return;
		}
	}
}

static void
run_timers(void)
{
	uint64_t now = loop_now_ms();

	while (L.ntimers > 0 && L.heap[0].due <= now) {
		struct timer t = L.heap[0];

		heap_remove(0);
		t.cb(t.arg);
	}
}

void
loop_hook_add(loop_hook_cb cb, void *arg)
{
	if (L.nhooks == LOOP_MAX_HOOKS)
		fatal("too many loop hooks");
	L.hooks[L.nhooks].cb = cb;
	L.hooks[L.nhooks++].arg = arg;
}

void
loop_timeout_add(loop_timeout_cb cb, void *arg)
{
	if (L.ntmos == LOOP_MAX_HOOKS)
		fatal("too many loop timeout sources");
	L.tmos[L.ntmos].cb = cb;
	L.tmos[L.ntmos++].arg = arg;
}

static int
next_wait_ms(void)
{
	long wait = -1;

	if (L.ntimers > 0) {
		uint64_t now = loop_now_ms();

		wait = L.heap[0].due <= now ? 0 : (long)(L.heap[0].due - now);
	}
	for (size_t i = 0; i < L.ntmos; i++) {
		long t = L.tmos[i].cb(L.tmos[i].arg);

		if (t >= 0 && (wait < 0 || t < wait))
			wait = t;
	}
	return wait > 60000 || wait < 0 ? 60000 : (int)wait;
}

void
loop_stop(void)
{
	L.stop = true;
}

void
loop_run(void)
{
	struct epoll_event ev[LOOP_MAX_EVENTS];

	L.stop = false;
	while (!L.stop) {
		int n = epoll_wait(L.epfd, ev, LOOP_MAX_EVENTS, next_wait_ms());

		if (n == -1) {
			if (errno == EINTR)
				continue;
			fatal("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			int             fd = (int)(uint32_t)ev[i].data.u64;
			uint32_t        gen = (uint32_t)(ev[i].data.u64 >> 32);
			struct watcher *w = (size_t)fd < L.nfds ? L.fds[fd] : NULL;

			if (w != NULL && w->live && w->gen == gen)
				w->cb(fd, ev[i].events, w->arg);
		}
		run_timers();
		for (size_t i = 0; i < L.nhooks; i++)
			L.hooks[i].cb(L.hooks[i].arg);
	}
}
