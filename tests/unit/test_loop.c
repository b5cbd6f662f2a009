/* Unit tests of the event loop: timer order, cancel by id (fired and reused slots included), the
 * timer table's bound, and fd watchers (fd numbers past the table's first size included). */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "check.h"
#include "modelmux/loop.h"
#include "modelmux/util.h"

static int fired[64], nfired;

static void
record(void *arg)
{
	if (nfired < (int)MM_ARRAY_LEN(fired))
		fired[nfired++] = (int)(intptr_t)arg;
}

static void
stop(void *arg)
{
	(void)arg;
	loop_stop();
}

/* Runs the loop until a timer `ms` from now stops it. */
static void
run_for(uint64_t ms)
{
	ASSERT_TRUE(loop_timer_add(ms, stop, NULL) != 0);
	loop_run();
}

static void
test_timer_order(void)
{
	uint64_t id[5];

	nfired = 0;
	id[0] = loop_timer_add(0, record, (void *)1);
	id[1] = loop_timer_add(0, record, (void *)2);
	id[2] = loop_timer_add(0, record, (void *)3);
	id[3] = loop_timer_add(30, record, (void *)5);
	id[4] = loop_timer_add(10, record, (void *)4);
	for (int i = 0; i < 5; i++)
		ASSERT_TRUE(id[i] != 0);
	loop_timer_cancel(id[1]);
	loop_timer_cancel(id[1]); /* twice: a no-op */
	run_for(60);
	ASSERT_INT_EQ(nfired, 4);
	ASSERT_INT_EQ(fired[0], 1); /* due the same ms: first added, first run */
	ASSERT_INT_EQ(fired[1], 3);
	ASSERT_INT_EQ(fired[2], 4);
	ASSERT_INT_EQ(fired[3], 5);
}

static void
test_stale_id(void)
{
	uint64_t old, fresh[4];
	bool     reused = false;

	nfired = 0;
	old = loop_timer_add(0, record, (void *)1);
	run_for(1);
	ASSERT_INT_EQ(nfired, 1);
	/* Freed slots are taken again: one of these lands in the fired timer's. */
	for (int i = 0; i < 4; i++) {
		fresh[i] = loop_timer_add(0, record, (void *)(intptr_t)(2 + i));
		reused |= (uint32_t)fresh[i] == (uint32_t)old;
		ASSERT_TRUE(fresh[i] != old);
	}
	ASSERT_TRUE(reused);
	loop_timer_cancel(old); /* fired: must not cancel the timer in its slot now */
	loop_timer_cancel(0);
	loop_timer_cancel(UINT64_MAX);
	run_for(1);
	ASSERT_INT_EQ(nfired, 5);
}

/* Many timers with mixed delays, half cancelled: the rest run in order of their due time. */
static uint64_t due_seen[4096];
static int      ndue;

static void
record_due(void *arg)
{
	due_seen[ndue++] = (uint64_t)(uintptr_t)arg;
}

static void
test_timer_heap(void)
{
	static uint64_t id[4096];
	uint64_t        base = loop_now_ms();
	unsigned        seed = 7;
	int             kept = 0;
	uint64_t        slack;

	ndue = 0;
	for (int i = 0; i < 4096; i++) {
		uint64_t ms;

		seed = seed * 1103515245u + 12345u;
		ms = (seed >> 16) % 40;
		id[i] = loop_timer_add(ms, record_due, (void *)(uintptr_t)(base + ms));
		ASSERT_TRUE(id[i] != 0);
	}
	/* A due time is the clock at the add plus the delay: the clock may tick while adding. */
	slack = loop_now_ms() - base;
	for (int i = 0; i < 4096; i++) {
		if (i % 2 == 1)
			loop_timer_cancel(id[i]);
		else
			kept++;
	}
	run_for(80);
	ASSERT_INT_EQ(ndue, kept);
	for (int i = 1; i < ndue; i++)
		if (due_seen[i] + slack < due_seen[i - 1]) {
			CHECK_FAIL("timer %d due %llu ran after one due %llu", i,
			    (unsigned long long)due_seen[i], (unsigned long long)due_seen[i - 1]);
			break;
		}
}

static void
nothing(void *arg)
{
	(void)arg;
}

static void
test_timer_table_full(void)
{
	static uint64_t id[LOOP_MAX_TIMERS];
	uint64_t        more;

	for (int i = 0; i < LOOP_MAX_TIMERS; i++)
		id[i] = loop_timer_add(60000, nothing, NULL);
	ASSERT_TRUE(id[0] != 0 && id[LOOP_MAX_TIMERS - 1] != 0);
	ASSERT_INT_EQ(loop_timer_add(1, nothing, NULL), 0);
	loop_timer_cancel(id[100]);
	more = loop_timer_add(1, nothing, NULL);
	ASSERT_TRUE(more != 0);
	loop_timer_cancel(more);
	for (int i = 0; i < LOOP_MAX_TIMERS; i++)
		loop_timer_cancel(id[i]);
	nfired = 0;
	ASSERT_TRUE(loop_timer_add(0, record, (void *)9) != 0);
	run_for(1);
	ASSERT_INT_EQ(nfired, 1);
}

static int got_fd = -1, got_tag;

static void
on_readable(int fd, uint32_t events, void *arg)
{
	char c;

	(void)events;
	got_fd = fd;
	got_tag = (int)(intptr_t)arg;
	(void)!read(fd, &c, 1);
	loop_stop();
}

static void
test_fds(void)
{
	int           p[2];
	struct rlimit rl;

	ASSERT_INT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	ASSERT_INT_EQ(loop_fd_add(p[0], EPOLLIN, on_readable, (void *)1), 0);
	ASSERT_INT_EQ(loop_fd_add(p[0], EPOLLIN, on_readable, (void *)1), -1); /* one watcher per fd */
	ASSERT_INT_EQ(loop_fd_rebind(p[0], on_readable, (void *)2), 0);
	ASSERT_INT_EQ((int)write(p[1], "x", 1), 1);
	loop_run();
	ASSERT_INT_EQ(got_fd, p[0]);
	ASSERT_INT_EQ(got_tag, 2);
	loop_fd_del(p[0]);
	loop_fd_del(p[0]);
	ASSERT_INT_EQ(loop_fd_mod(p[0], EPOLLIN), -1);
	ASSERT_INT_EQ(loop_fd_rebind(p[0], on_readable, NULL), -1);
	ASSERT_INT_EQ(loop_fd_add(-1, EPOLLIN, on_readable, NULL), -1);

	/* The table was sized by the soft limit main() set to 64: an fd number past it, once the
	 * limit is raised, grows the table. */
	ASSERT_INT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = rl.rlim_max < 1024 ? rl.rlim_max : 1024;
	ASSERT_INT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
	ASSERT_INT_EQ(dup2(p[0], 300), 300);
	got_fd = -1;
	ASSERT_INT_EQ(loop_fd_add(300, EPOLLIN, on_readable, (void *)3), 0);
	ASSERT_INT_EQ((int)write(p[1], "y", 1), 1);
	loop_run();
	ASSERT_INT_EQ(got_fd, 300);
	ASSERT_INT_EQ(got_tag, 3);
	loop_fd_del(300);
	close(300);
	close(p[0]);
	close(p[1]);
}

int
main(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { /* a small fd table, to see it grow */
		rl.rlim_cur = 64;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	loop_init(NULL, NULL, NULL);
	test_timer_order();
	test_stale_id();
	test_timer_heap();
	test_timer_table_full();
	test_fds();
	loop_free();
	CHECK_DONE();
}
