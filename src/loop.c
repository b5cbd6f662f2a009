/* loop: epoll + timers (binary min-heap) + signalfd. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
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

/* A pending timer sits in a slot that stays put while the heap orders slot numbers: its id
 * names the slot and the slot's generation, so a cancel finds it at once and an id that
 * already fired (its slot freed, the generation moved on) is a no-op. */
struct timer {
	uint64_t      due;
	uint64_t      seq; /* among timers due the same ms: first added, first run */
	loop_timer_cb cb;  /* NULL while the slot is free */
	void         *arg;
	uint32_t      gen; /* 1..UINT32_MAX; moves on each time the slot is freed */
	uint32_t      pos; /* index in the heap while pending; the next free slot while free */
};

#define NO_SLOT UINT32_MAX

/* The fd table and the timer tables are each allocated once, at their full working size. They
 * are large enough for malloc to serve them from fresh mappings, whose pages become resident
 * only as they are used. Grown in steps during a burst of connections, they (and, before,
 * one small allocation per fd number) were left scattered through the heap for good, and
 * kept it from giving memory back after the burst. */
#define LOOP_FD_TABLE_MAX (1u << 20) /* the fd table's first size: RLIMIT_NOFILE, up to this */

static struct {
	int             epfd;
	int             sigfd;
	loop_signal_cb  sig_cb;
	void           *sig_arg;
	struct watcher *fds; /* indexed by fd */
	size_t          nfds;
	struct timer   *slots;    /* LOOP_MAX_TIMERS */
	uint32_t        nslots;   /* slots ever used: the rest are untouched */
	uint32_t        freeslot; /* head of the free slots, NO_SLOT if none */
	uint32_t       *heap;     /* slot numbers, a binary min-heap by (due, seq) */
	size_t          ntimers;
	uint64_t        next_seq;
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

static void
tables_alloc(void)
{
	struct rlimit rl;

	if (L.fds != NULL)
		return;
	/* fd numbers stay below the soft limit; one past it (raised later) grows the table. */
	L.nfds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ?
	    (size_t)MM_MIN(MM_MAX(rl.rlim_cur, 64), LOOP_FD_TABLE_MAX) : LOOP_FD_TABLE_MAX;
	L.fds = xcalloc(L.nfds, sizeof(*L.fds));
	L.slots = xcalloc(LOOP_MAX_TIMERS, sizeof(*L.slots));
	L.heap = xcalloc(LOOP_MAX_TIMERS, sizeof(*L.heap));
	L.freeslot = NO_SLOT;
}

void
loop_free(void)
{
	free(L.fds);
	free(L.slots);
	free(L.heap);
	if (L.sigfd != -1)
		close(L.sigfd);
	if (L.epfd != -1)
		close(L.epfd);
	memset(&L, 0, sizeof(L));
	L.epfd = L.sigfd = -1;
}

/* The watcher of fd if it is watched, else NULL. */
static struct watcher *
watched(int fd)
{
	return fd >= 0 && (size_t)fd < L.nfds && L.fds[fd].live ? &L.fds[fd] : NULL;
}

int
loop_fd_add(int fd, uint32_t events, loop_fd_cb cb, void *arg)
{
	struct epoll_event ev = { .events = events };
	struct watcher    *w;

	if (fd < 0)
		return -1;
	tables_alloc();
	if ((size_t)fd >= L.nfds) {
		size_t n = MM_MAX((size_t)fd + 1, L.nfds * 2);

		L.fds = xreallocarray(L.fds, n, sizeof(*L.fds));
		memset(L.fds + L.nfds, 0, (n - L.nfds) * sizeof(*L.fds));
		L.nfds = n;
	}
	w = &L.fds[fd];
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
	struct watcher    *w = watched(fd);

	if (w == NULL) {
		errno = EBADF;
		return -1;
	}
	ev.data.u64 = ev_data(fd, w->gen);
	return epoll_ctl(L.epfd, EPOLL_CTL_MOD, fd, &ev);
}

int
loop_fd_rebind(int fd, loop_fd_cb cb, void *arg)
{
	struct watcher *w = watched(fd);

	if (w == NULL) {
		errno = EBADF;
		return -1;
	}
	w->cb = cb;
	w->arg = arg;
	return 0;
}

void
loop_fd_del(int fd)
{
	struct watcher *w = watched(fd);

	if (w == NULL)
		return;
	/* The fd may already be closed by its owner: ignore errors. */
	(void)epoll_ctl(L.epfd, EPOLL_CTL_DEL, fd, NULL);
	w->live = false;
}

/* --- timers: a binary min-heap of slot numbers ordered by (due, seq) --- */

static bool
timer_before(uint32_t a, uint32_t b)
{
	const struct timer *x = &L.slots[a], *y = &L.slots[b];

	return x->due < y->due || (x->due == y->due && x->seq < y->seq);
}

static void
heap_set(size_t i, uint32_t slot)
{
	L.heap[i] = slot;
	L.slots[slot].pos = (uint32_t)i;
}

static void
heap_up(size_t i)
{
	uint32_t s = L.heap[i];

	while (i > 0 && timer_before(s, L.heap[(i - 1) / 2])) {
		heap_set(i, L.heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_set(i, s);
}

static void
heap_down(size_t i)
{
	uint32_t s = L.heap[i];

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = l;

		if (l >= L.ntimers)
			break;
		if (r < L.ntimers && timer_before(L.heap[r], L.heap[l]))
			m = r;
		if (!timer_before(L.heap[m], s))
			break;
		heap_set(i, L.heap[m]);
		i = m;
	}
	heap_set(i, s);
}

/* Takes slot `s` out of the heap and frees it. */
static void
timer_drop(uint32_t s)
{
	size_t   i = L.slots[s].pos;
	uint32_t last = L.heap[--L.ntimers];

	if (i < L.ntimers) {
		heap_set(i, last);
		heap_up(i);
		heap_down(L.slots[last].pos);
	}
	L.slots[s].cb = NULL;
	L.slots[s].arg = NULL;
	L.slots[s].gen = L.slots[s].gen == UINT32_MAX ? 1 : L.slots[s].gen + 1;
	L.slots[s].pos = L.freeslot;
	L.freeslot = s;
}

uint64_t
loop_timer_add(uint64_t ms, loop_timer_cb cb, void *arg)
{
	uint32_t      s;
	struct timer *t;

	tables_alloc();
	if (L.freeslot != NO_SLOT) {
		s = L.freeslot;
		L.freeslot = L.slots[s].pos;
	} else if (L.nslots < LOOP_MAX_TIMERS) {
		s = L.nslots++;
		L.slots[s].gen = 1;
	} else {
		return 0;
	}
	t = &L.slots[s];
	t->due = loop_now_ms() + ms;
	t->seq = ++L.next_seq;
	t->cb = cb;
	t->arg = arg;
	L.heap[L.ntimers] = s;
	heap_up(L.ntimers++);
	return (uint64_t)t->gen << 32 | s;
}

void
loop_timer_cancel(uint64_t id)
{
	uint32_t s = (uint32_t)id;

	if (id == 0 || s >= L.nslots || L.slots[s].cb == NULL || L.slots[s].gen != (uint32_t)(id >> 32))
		return;
	timer_drop(s);
}

static void
run_timers(void)
{
	uint64_t now = loop_now_ms();

	while (L.ntimers > 0 && L.slots[L.heap[0]].due <= now) {
		uint32_t      s = L.heap[0];
		loop_timer_cb cb = L.slots[s].cb;
		void         *arg = L.slots[s].arg;

		timer_drop(s);
		cb(arg);
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

		uint64_t due = L.slots[L.heap[0]].due;

		wait = due <= now ? 0 : (long)(due - now);
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
			struct watcher *w = watched(fd);

			/* The call reads cb and arg before it runs: a callback may grow the table. */
			if (w != NULL && w->gen == gen)
				w->cb(fd, ev[i].events, w->arg);
		}
		run_timers();
		for (size_t i = 0; i < L.nhooks; i++)
			L.hooks[i].cb(L.hooks[i].arg);
	}
}
