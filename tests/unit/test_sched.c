/* Unit tests of the scheduler's rules against fake effects: no processes, no sleeps. */
#include <string.h>

#include "check.h"
#include "modelmux/config.h"
#include "modelmux/log.h"
#include "modelmux/sched.h"
#include "modelmux/util.h"

/* --- fake effects: a clock, a timer list, and a log of starts and stops --- */

#define MAX_FAKE_TIMERS 256

static uint64_t now;
static struct { uint64_t id, due; void (*cb)(void *); void *arg; } timers[MAX_FAKE_TIMERS];
static uint64_t next_timer;
static char     events[4096];
static int      fail_next_start;

static void
note(const char *what, const char *id)
{
	size_t n = strlen(events);

	snprintf(events + n, sizeof(events) - n, "%s:%s ", what, id);
}

static int
fx_start(struct sched_model *m, char **err)
{
	if (fail_next_start) {
		fail_next_start = 0;
		*err = xstrdup("command not found: x");
		return -1;
	}
	note("start", sched_model_cfg(m)->id);
	return 0;
}

static void
fx_stop(struct sched_model *m, uint64_t grace)
{
	(void)grace;
	note("stop", sched_model_cfg(m)->id);
}

static uint64_t
fx_timer_add(uint64_t ms, void (*cb)(void *), void *arg)
{
	for (size_t i = 0; i < MAX_FAKE_TIMERS; i++) {
		if (timers[i].id == 0) {
			timers[i].id = ++next_timer;
			timers[i].due = now + ms;
			timers[i].cb = cb;
			timers[i].arg = arg;
			return timers[i].id;
		}
	}
	return 0;
}

static void
fx_timer_cancel(uint64_t id)
{
	for (size_t i = 0; id && i < MAX_FAKE_TIMERS; i++)
		if (timers[i].id == id)
			timers[i].id = 0;
}

static uint64_t
fx_now(void)
{
	return now;
}

/* Moves the clock forward, firing due timers in order. */
static void
advance(uint64_t ms)
{
	uint64_t until = now + ms;

	for (;;) {
		size_t best = MAX_FAKE_TIMERS;

		for (size_t i = 0; i < MAX_FAKE_TIMERS; i++)
			if (timers[i].id && timers[i].due <= until &&
			    (best == MAX_FAKE_TIMERS || timers[i].due < timers[best].due))
				best = i;
		if (best == MAX_FAKE_TIMERS)
			break;
		now = timers[best].due;
		timers[best].id = 0;
		timers[best].cb(timers[best].arg);
	}
	now = until;
}

static const struct sched_effects fake = {
	.start = fx_start,
	.stop = fx_stop,
	.timer_add = fx_timer_add,
	.timer_cancel = fx_timer_cancel,
	.now_ms = fx_now,
};

/* --- requests --- */

struct req {
	struct sched_ticket t;
	int                 outcome; /* -1 waiting, 0 granted, else status */
	int                 rc;
};

static void
on_grant(struct sched_ticket *t, int status, const char *msg, void *arg)
{
	struct req *r = arg;

	(void)t;
	(void)msg;
	r->outcome = status;
}

static struct cfg *cfg;

static void
acquire(struct req *r, const char *model)
{
	int  status = 0;
	char msg[SCHED_MSG_MAX];

	memset(r, 0, sizeof(*r));
	r->outcome = -1;
	r->rc = sched_acquire(&r->t, cfg_find_model(cfg, model), on_grant, r, &status, msg,
	    sizeof(msg));
	if (r->rc == 1)
		r->outcome = 0;
	else if (r->rc == -1)
		r->outcome = status;
}

static struct sched_model *
M(const char *id)
{
	return sched_model_get(id);
}

static void
setup(const char *yaml)
{
	struct cfg_errs errs = { 0 };

	memset(timers, 0, sizeof(timers));
	events[0] = '\0';
	now = 1000;
	cfg = cfg_load_buf("test.yaml", yaml, strlen(yaml), &errs);
	if (cfg == NULL) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		fatal("test config does not load");
	}
	sched_init(cfg, &fake);
}

static void
teardown(void)
{
	sched_free();
	cfg_unref(cfg);
	cfg = NULL;
}

static const char *two_models =
    "models:\n"
    "  a:\n    cmd: /bin/true ${PORT}\n"
    "  b:\n    cmd: /bin/true ${PORT}\n";

static void
test_single_flight(void)
{
	struct req r[50];

	setup(two_models);
	for (int i = 0; i < 50; i++)
		acquire(&r[i], "a");
	ASSERT_STR_EQ(events, "start:a ");
	ASSERT_INT_EQ(sched_model_state(M("a")), MODEL_STARTING);
	ASSERT_INT_EQ(sched_model_queued(M("a")), 50);
	sched_on_ready(M("a"));
	/* Default concurrency is 10: ten granted, forty wait. */
	int granted = 0;
	for (int i = 0; i < 50; i++)
		granted += r[i].outcome == 0;
	ASSERT_INT_EQ(granted, 10);
	for (int i = 0; i < 50; i++)
		if (r[i].outcome == 0 && r[i].t.state == TICKET_ACTIVE)
			sched_release(&r[i].t);
	for (int round = 0; round < 5; round++)
		for (int i = 0; i < 50; i++)
			if (r[i].t.state == TICKET_ACTIVE)
				sched_release(&r[i].t);
	granted = 0;
	for (int i = 0; i < 50; i++)
		granted += r[i].outcome == 0;
	ASSERT_INT_EQ(granted, 50);
	ASSERT_STR_EQ(events, "start:a ");
	ASSERT_INT_EQ(sched_model_starts(M("a")), 1);
	teardown();
}

static void
test_failed_start_fans_out(void)
{
	struct req r[3];

	setup(two_models);
	for (int i = 0; i < 3; i++)
		acquire(&r[i], "a");
	sched_on_start_failed(M("a"), 502, "exited with code 1 while starting");
	for (int i = 0; i < 3; i++)
		ASSERT_INT_EQ(r[i].outcome, 502);
	ASSERT_INT_EQ(sched_model_state(M("a")), MODEL_STOPPING);
	sched_on_exited(M("a"), "exited with code 1");
	ASSERT_INT_EQ(sched_model_state(M("a")), MODEL_STOPPED);
	/* The next request retries. */
	acquire(&r[0], "a");
	ASSERT_STR_EQ(events, "start:a start:a ");
	/* A spawn that fails outright answers at once. */
	sched_on_start_failed(M("a"), 502, "x");
	sched_on_exited(M("a"), "x");
	fail_next_start = 1;
	acquire(&r[1], "a");
	ASSERT_INT_EQ(r[1].rc, 0);
	ASSERT_INT_EQ(r[1].outcome, -1);
	advance(0);
	ASSERT_INT_EQ(r[1].outcome, 502);
	ASSERT_INT_EQ(sched_model_state(M("a")), MODEL_STOPPED);
	teardown();
}

static char drained[256];

static void
on_drain(const char *id)
{
	size_t n = strlen(drained);

	snprintf(drained + n, sizeof(drained) - n, "%s ", id);
}

static void
test_swap_waits_for_busy_and_reap(void)
{
	struct req ra, ra2, rb;

	setup(two_models);
	drained[0] = '\0';
	sched_set_drain_cb(on_drain);
	acquire(&ra, "a");
	sched_on_ready(M("a"));
	ASSERT_INT_EQ(ra.outcome, 0);
	ASSERT_STR_EQ(drained, "");
	acquire(&rb, "b");
	/* a is busy: not stopped, b not started; a's holders are asked to end, once. */
	ASSERT_STR_EQ(events, "start:a ");
	ASSERT_STR_EQ(drained, "a ");
	ASSERT_INT_EQ(rb.outcome, -1);
	/* A new request for a waits behind the pending swap (no thrash). */
	acquire(&ra2, "a");
	ASSERT_INT_EQ(ra2.outcome, -1);
	sched_release(&ra.t);
	ASSERT_STR_EQ(events, "start:a stop:a ");
	ASSERT_INT_EQ(sched_model_state(M("b")), MODEL_STOPPED);
	/* b starts only once a is reaped. */
	sched_on_exited(M("a"), "exited with code 0");
	ASSERT_STR_EQ(events, "start:a stop:a start:b ");
	sched_on_ready(M("b"));
	ASSERT_INT_EQ(rb.outcome, 0);
	/* b is busy; a waits until b's request ends, then swaps back. */
	sched_release(&rb.t);
	ASSERT_STR_EQ(events, "start:a stop:a start:b stop:b ");
	sched_on_exited(M("b"), "exited with code 0");
	sched_on_ready(M("a"));
	ASSERT_INT_EQ(ra2.outcome, 0);
	sched_release(&ra2.t);
	/* Once for a's episode; b was never asked: it still owed its batch while rb ran. */
	ASSERT_STR_EQ(drained, "a ");
	sched_set_drain_cb(NULL);
	teardown();
}

static void
test_batch_before_eviction(void)
{
	struct req a[3], b;

	setup(two_models);
	for (int i = 0; i < 3; i++)
		acquire(&a[i], "a");
	acquire(&b, "b");
	sched_on_ready(M("a"));
	/* The three queued for a are served although b waits. */
	for (int i = 0; i < 3; i++)
		ASSERT_INT_EQ(a[i].outcome, 0);
	for (int i = 0; i < 3; i++)
		sched_release(&a[i].t);
	ASSERT_STR_EQ(events, "start:a stop:a ");
	teardown();
}

static void
test_groups(void)
{
	const char *yaml =
	    "models:\n"
	    "  a:\n    cmd: /bin/true ${PORT}\n"
	    "  b:\n    cmd: /bin/true ${PORT}\n"
	    "  c:\n    cmd: /bin/true ${PORT}\n"
	    "  p:\n    cmd: /bin/true ${PORT}\n"
	    "groups:\n"
	    "  together:\n    swap: false\n    exclusive: false\n    members: [a, b]\n"
	    "  solo:\n    members: [c]\n"
	    "  keep:\n    persistent: true\n    swap: false\n    exclusive: false\n    members: [p]\n";
	struct req ra, rb, rc, rp;

	setup(yaml);
	acquire(&rp, "p");
	sched_on_ready(M("p"));
	acquire(&ra, "a");
	sched_on_ready(M("a"));
	acquire(&rb, "b");
	sched_on_ready(M("b"));
	/* swap:false: a and b run together, p too. */
	ASSERT_STR_EQ(events, "start:p start:a start:b ");
	sched_release(&ra.t);
	sched_release(&rb.t);
	sched_release(&rp.t);
	/* c's group is exclusive: a and b go, p (persistent) stays. */
	acquire(&rc, "c");
	ASSERT_STR_EQ(events, "start:p start:a start:b stop:a stop:b ");
	sched_on_exited(M("a"), "x");
	ASSERT_INT_EQ(sched_model_state(M("c")), MODEL_STOPPED);
	sched_on_exited(M("b"), "x");
	ASSERT_STR_EQ(events, "start:p start:a start:b stop:a stop:b start:c ");
	sched_on_ready(M("c"));
	ASSERT_INT_EQ(rc.outcome, 0);
	ASSERT_INT_EQ(sched_model_state(M("p")), MODEL_READY);
	sched_release(&rc.t);
	teardown();
}

/* llama-swap's matrix (config_compat.h): loading a model keeps the running ones of the
 * cheapest set that holds it and evicts the rest; a model in no set runs alone. */
static void
test_matrix_policy(void)
{
	const char *yaml =
	    "matrix:\n"
	    "  vars: {g: gemma, q: qwen, v: voice, L: large}\n"
	    "  evict_costs: {v: 50}\n"
	    "  sets:\n    standard: \"(g | q) & v\"\n    full: \"L\"\n"
	    "models:\n"
	    "  gemma:\n    cmd: /bin/true ${PORT}\n"
	    "  qwen:\n    cmd: /bin/true ${PORT}\n"
	    "  voice:\n    cmd: /bin/true ${PORT}\n"
	    "  large:\n    cmd: /bin/true ${PORT}\n"
	    "  lone:\n    cmd: /bin/true ${PORT}\n";
	struct req rg, rv, rq, rl, rn;

	setup(yaml);
	acquire(&rg, "gemma");
	sched_on_ready(M("gemma"));
	acquire(&rv, "voice");
	sched_on_ready(M("voice"));
	/* g & v are one set: both run. */
	ASSERT_STR_EQ(events, "start:gemma start:voice ");
	ASSERT_INT_EQ(rv.outcome, 0);
	sched_release(&rg.t);
	sched_release(&rv.t);
	/* q: its set [q, v] keeps v, evicts g. */
	acquire(&rq, "qwen");
	ASSERT_STR_EQ(events, "start:gemma start:voice stop:gemma ");
	sched_on_exited(M("gemma"), "x");
	sched_on_ready(M("qwen"));
	ASSERT_INT_EQ(rq.outcome, 0);
	ASSERT_INT_EQ(sched_model_state(M("voice")), MODEL_READY);
	sched_release(&rq.t);
	/* large runs alone: both go. */
	acquire(&rl, "large");
	ASSERT_STR_EQ(events, "start:gemma start:voice stop:gemma start:qwen stop:qwen stop:voice ");
	sched_on_exited(M("qwen"), "x");
	sched_on_exited(M("voice"), "x");
	sched_on_ready(M("large"));
	ASSERT_INT_EQ(rl.outcome, 0);
	sched_release(&rl.t);
	/* A model in no set runs alone too. */
	acquire(&rn, "lone");
	sched_on_exited(M("large"), "x");
	sched_on_ready(M("lone"));
	ASSERT_INT_EQ(rn.outcome, 0);
	ASSERT_CONTAINS(events, "stop:large start:lone ");
	sched_release(&rn.t);
	teardown();
}

/* routing.scheduler.settings.fifo.priority: a waiting model of higher priority starts first,
 * older requests of lower priority after it; routing.router.settings.groups are groups. */
static void
test_routing_priority_and_groups(void)
{
	const char *yaml =
	    "routing:\n"
	    "  router:\n    settings:\n      groups:\n"
	    "        pair: {swap: false, members: [x, y]}\n"
	    "  scheduler:\n    settings:\n      fifo:\n        priority: {b: 10}\n"
	    "models:\n"
	    "  a:\n    cmd: /bin/true ${PORT}\n"
	    "  b:\n    cmd: /bin/true ${PORT}\n"
	    "  c:\n    cmd: /bin/true ${PORT}\n"
	    "  x:\n    cmd: /bin/true ${PORT}\n"
	    "  y:\n    cmd: /bin/true ${PORT}\n";
	struct req ra, rb, rc, rx, ry;

	setup(yaml);
	acquire(&rc, "c");
	sched_on_ready(M("c"));
	acquire(&ra, "a"); /* older, priority 0 */
	acquire(&rb, "b"); /* newer, priority 10 */
	ASSERT_INT_EQ(ra.outcome, -1);
	sched_release(&rc.t);
	sched_on_exited(M("c"), "x");
	ASSERT_STR_EQ(events, "start:c stop:c start:b ");
	sched_on_ready(M("b"));
	ASSERT_INT_EQ(rb.outcome, 0);
	sched_release(&rb.t);
	sched_on_exited(M("b"), "x");
	sched_on_ready(M("a"));
	ASSERT_INT_EQ(ra.outcome, 0);
	sched_release(&ra.t);
	/* The routing group: x and y run together. */
	acquire(&rx, "x");
	sched_on_exited(M("a"), "x");
	sched_on_ready(M("x"));
	acquire(&ry, "y");
	sched_on_ready(M("y"));
	ASSERT_INT_EQ(ry.outcome, 0);
	ASSERT_INT_EQ(sched_model_state(M("x")), MODEL_READY);
	sched_release(&rx.t);
	sched_release(&ry.t);
	teardown();
}

static void
test_queue_limits_and_deadline(void)
{
	const char *yaml =
	    "queue:\n  maxPerModel: 2\n  maxTotal: 3\n  maxWaitSeconds: 5\n"
	    "models:\n"
	    "  a:\n    cmd: /bin/true ${PORT}\n"
	    "  b:\n    cmd: /bin/true ${PORT}\n";
	struct req r[4];

	setup(yaml);
	acquire(&r[0], "a");
	acquire(&r[1], "a");
	acquire(&r[2], "a");
	ASSERT_INT_EQ(r[2].rc, -1);
	ASSERT_INT_EQ(r[2].outcome, 429);
	ASSERT_INT_EQ(r[2].t.retry_after_s, 1);
	acquire(&r[3], "b");
	ASSERT_INT_EQ(r[3].outcome, -1);
	advance(5000);
	ASSERT_INT_EQ(r[0].outcome, 503);
	ASSERT_INT_EQ(r[1].outcome, 503);
	ASSERT_INT_EQ(r[3].outcome, 503);
	ASSERT_TRUE(r[0].t.retry_after_s > 0);
	ASSERT_INT_EQ(sched_model_queued(M("a")), 0);
	/* A queued client that leaves is gone from the queue at once. */
	acquire(&r[0], "a");
	sched_release(&r[0].t);
	ASSERT_INT_EQ(sched_model_queued(M("a")), 0);
	teardown();
}

static void
test_ttl(void)
{
	const char *yaml = "models:\n  a:\n    cmd: /bin/true ${PORT}\n    ttl: 10\n";
	struct req  r;

	setup(yaml);
	acquire(&r, "a");
	sched_on_ready(M("a"));
	advance(60000); /* busy: never idle */
	ASSERT_STR_EQ(events, "start:a ");
	sched_release(&r.t);
	advance(9000);
	acquire(&r, "a"); /* resets the idle clock */
	sched_release(&r.t);
	advance(9000);
	ASSERT_STR_EQ(events, "start:a ");
	advance(1000);
	ASSERT_STR_EQ(events, "start:a stop:a ");
	sched_on_exited(M("a"), "x");
	ASSERT_INT_EQ(sched_model_state(M("a")), MODEL_STOPPED);
	teardown();
}

static void
test_crash_and_shutdown(void)
{
	struct req r, w;

	setup(two_models);
	acquire(&r, "a");
	sched_on_ready(M("a"));
	sched_on_exited(M("a"), "killed by signal 9");
	ASSERT_INT_EQ(sched_model_state(M("a")), MODEL_STOPPED);
	sched_release(&r.t);
	/* The next request restarts it. */
	acquire(&r, "a");
	ASSERT_STR_EQ(events, "start:a start:a ");
	acquire(&w, "b");
	sched_shutdown(0, NULL);
	ASSERT_INT_EQ(w.outcome, 503);
	ASSERT_INT_EQ(r.outcome, 503);
	ASSERT_STR_EQ(events, "start:a start:a stop:a ");
	sched_on_exited(M("a"), "x");
	acquire(&r, "a");
	ASSERT_INT_EQ(r.outcome, 503);
	teardown();
}

static int unload_done;

static void
on_unloaded(struct sched_unload *u, void *arg)
{
	(void)u;
	(void)arg;
	unload_done++;
}

static void
test_unload(void)
{
	struct req          r, w;
	struct sched_unload u = { 0 };

	setup(two_models);
	unload_done = 0;
	acquire(&r, "a");
	sched_on_ready(M("a"));
	acquire(&w, "a");
	ASSERT_INT_EQ(w.outcome, 0);
	sched_unload(&u, M("a"), on_unloaded, NULL, "api");
	/* Busy: not stopped yet; new requests are refused meanwhile. */
	ASSERT_STR_EQ(events, "start:a ");
	advance(0);
	ASSERT_INT_EQ(unload_done, 0);
	sched_release(&r.t);
	sched_release(&w.t);
	ASSERT_STR_EQ(events, "start:a stop:a ");
	sched_on_exited(M("a"), "exited with code 0");
	advance(0);
	ASSERT_INT_EQ(unload_done, 1);
	/* Unloading what is already stopped answers at once (from the loop). */
	sched_unload(&u, NULL, on_unloaded, NULL, "api");
	ASSERT_INT_EQ(unload_done, 1);
	advance(0);
	ASSERT_INT_EQ(unload_done, 2);
	/* Queued requests for an unloaded model get 503. */
	acquire(&r, "b");
	sched_unload(&u, M("b"), on_unloaded, NULL, "api");
	ASSERT_INT_EQ(r.outcome, 503);
	ASSERT_STR_EQ(events, "start:a stop:a start:b stop:b ");
	sched_on_exited(M("b"), "killed by signal 15");
	advance(0);
	ASSERT_INT_EQ(unload_done, 3);
	teardown();
}

static void
test_crash_loop_hold(void)
{
	const char *yaml =
	    "crashBackoff:\n  maxCrashes: 2\n  windowSeconds: 60\n  holdSeconds: 30\n"
	    "models:\n  a:\n    cmd: /bin/true ${PORT}\n";
	struct req r;

	setup(yaml);
	for (int i = 0; i < 2; i++) {
		acquire(&r, "a");
		ASSERT_INT_EQ(r.rc, 0);
		sched_on_ready(M("a"));
		sched_on_exited(M("a"), "killed by signal 11");
		sched_release(&r.t);
		advance(1000);
	}
	acquire(&r, "a");
	ASSERT_INT_EQ(r.outcome, 503);
	ASSERT_TRUE(r.t.retry_after_s > 0 && r.t.retry_after_s <= 30);
	ASSERT_STR_EQ(sched_model_last_error(M("a")), "backend killed by signal 11");
	advance(30000);
	acquire(&r, "a");
	ASSERT_INT_EQ(r.rc, 0);
	ASSERT_STR_EQ(events, "start:a start:a start:a ");
	teardown();
}

static void
test_starting_victim_waits(void)
{
	struct req ra, rb;

	setup(two_models);
	acquire(&ra, "a");
	acquire(&rb, "b");
	/* a is starting for its own waiter: b waits, a serves first, then goes. */
	ASSERT_STR_EQ(events, "start:a ");
	sched_on_ready(M("a"));
	ASSERT_INT_EQ(ra.outcome, 0);
	sched_release(&ra.t);
	ASSERT_STR_EQ(events, "start:a stop:a ");
	sched_on_exited(M("a"), "x");
	ASSERT_STR_EQ(events, "start:a stop:a start:b ");
	teardown();
}

static void
test_shutdown_grace(void)
{
	struct req r;

	setup(two_models);
	acquire(&r, "a");
	sched_on_ready(M("a"));
	ASSERT_INT_EQ(r.outcome, 0);
	sched_shutdown(5000, NULL);
	/* The in-flight request may finish: nothing stopped yet. */
	ASSERT_STR_EQ(events, "start:a ");
	sched_release(&r.t);
	ASSERT_STR_EQ(events, "start:a stop:a ");
	sched_on_exited(M("a"), "x");
	teardown();

	setup(two_models);
	acquire(&r, "a");
	sched_on_ready(M("a"));
	sched_shutdown(5000, NULL);
	advance(4999);
	ASSERT_STR_EQ(events, "start:a ");
	advance(1);
	ASSERT_STR_EQ(events, "start:a stop:a ");
	sched_on_exited(M("a"), "x");
	sched_release(&r.t);
	teardown();
}

static struct cfg *
load(const char *yaml)
{
	struct cfg_errs errs = { 0 };
	struct cfg     *c = cfg_load_buf("reload.yaml", yaml, strlen(yaml), &errs);

	if (c == NULL)
		fatal("reload config does not load");
	return c;
}

static void
test_reload(void)
{
	const char *v2 =
	    "groups:\n  all:\n    swap: false\n    exclusive: false\n    members: [a, b, c]\n"
	    "models:\n"
	    "  a:\n    cmd: /bin/true ${PORT}\n"            /* same process as before */
	    "  b:\n    cmd: /bin/true --changed ${PORT}\n"  /* changed */
	    "  c:\n    cmd: /bin/true ${PORT}\n";           /* new; the old "d" is gone */
	const char *v1 =
	    "groups:\n  all:\n    swap: false\n    exclusive: false\n    members: [a, b, d]\n"
	    "models:\n"
	    "  a:\n    cmd: /bin/true ${PORT}\n"
	    "  b:\n    cmd: /bin/true ${PORT}\n"
	    "  d:\n    cmd: /bin/true ${PORT}\n";
	struct req  ra, rb, rd, rd2, rb2;
	struct cfg *next;
	struct sched_model *a, *b, *d;

	setup(v1);
	acquire(&ra, "a");
	sched_on_ready(M("a"));
	acquire(&rb, "b");
	sched_on_ready(M("b"));
	acquire(&rd, "d");
	sched_on_ready(M("d"));
	acquire(&rd2, "d"); /* granted too: concurrency 10 */
	ASSERT_STR_EQ(events, "start:a start:b start:d ");
	a = M("a");
	b = M("b");
	d = M("d");
	next = load(v2);
	sched_reload(next);
	cfg_unref(next);
	/* Nothing stops while requests are in flight. */
	ASSERT_STR_EQ(events, "start:a start:b start:d ");
	ASSERT_TRUE(M("a") == a);
	ASSERT_NULL(M("d"));
	ASSERT_NOT_NULL(M("c"));
	ASSERT_INT_EQ(sched_model_state(M("c")), MODEL_STOPPED);
	/* The changed model takes no new request until it restarted. */
	acquire(&rb2, "b");
	ASSERT_INT_EQ(rb2.outcome, -1);
	sched_release(&rb.t);
	ASSERT_STR_EQ(events, "start:a start:b start:d stop:b ");
	sched_on_exited(b, "exited with code 0");
	ASSERT_STR_EQ(events, "start:a start:b start:d stop:b start:b ");
	ASSERT_STR_EQ(sched_model_cfg(b)->argv[1], "--changed");
	sched_on_ready(b);
	ASSERT_INT_EQ(rb2.outcome, 0);
	/* The removed one stops once idle, and is forgotten. */
	sched_release(&rd.t);
	sched_release(&rd2.t);
	ASSERT_CONTAINS(events, "stop:d ");
	sched_on_exited(d, "exited with code 0");
	/* The unchanged one never stopped. */
	ASSERT_INT_EQ(sched_model_state(a), MODEL_READY);
	sched_release(&ra.t);
	sched_release(&rb2.t);
	teardown();
}

static unsigned
argv_np(const char *line)
{
	char  buf[256], *v[16], *save = NULL;
	size_t n = 0;

	snprintf(buf, sizeof(buf), "%s", line);
	for (char *w = strtok_r(buf, " ", &save); w != NULL && n < 15; w = strtok_r(NULL, " ", &save))
		v[n++] = w;
	v[n] = NULL;
	return sched_argv_parallel(v);
}

/* -np/--parallel in argv, then a backend's own number (/props), set the concurrency; an explicit
 * concurrencyLimit wins over both. */
static void
test_learned_concurrency(void)
{
	struct req r[6];

	ASSERT_INT_EQ(argv_np("llama-server -m x.gguf -np 3"), 3);
	ASSERT_INT_EQ(argv_np("llama-server --parallel=2 -np=5"), 5);
	ASSERT_INT_EQ(argv_np("llama-server --parallel 4 -c 4096"), 4);
	ASSERT_INT_EQ(argv_np("llama-server -np 0 --parallel x -np"), 0);
	ASSERT_INT_EQ(argv_np("llama-server --parallel 99999"), 0);
	ASSERT_INT_EQ(argv_np("-np 4"), 0); /* argv[0] is the program, never a flag */
	ASSERT_INT_EQ(sched_argv_parallel(NULL), 0);

	setup("models:\n"
	    "  a:\n    cmd: /bin/true --port ${PORT} -np 2\n"
	    "  b:\n    cmd: /bin/true ${PORT} -np 2\n    concurrencyLimit: 4\n");
	ASSERT_STR_EQ(sched_model_concurrency_source(M("a")), "default");
	for (int i = 0; i < 6; i++)
		acquire(&r[i], "a");
	ASSERT_STR_EQ(sched_model_concurrency_source(M("a")), "argv");
	sched_on_ready(M("a"));
	int granted = 0;
	for (int i = 0; i < 6; i++)
		granted += r[i].outcome == 0;
	ASSERT_INT_EQ(granted, 2);
	ASSERT_INT_EQ(sched_model_queued(M("a")), 4);
	/* The backend says 3: one more goes at once. */
	sched_model_set_slots(M("a"), 3, "props");
	ASSERT_INT_EQ(sched_model_concurrency(M("a")), 3);
	ASSERT_STR_EQ(sched_model_concurrency_source(M("a")), "props");
	ASSERT_INT_EQ(sched_model_queued(M("a")), 3);
	sched_model_set_slots(M("a"), 0, "props"); /* nonsense is ignored */
	sched_model_set_slots(M("a"), SCHED_MAX_SLOTS + 1, "props");
	ASSERT_INT_EQ(sched_model_concurrency(M("a")), 3);
	/* concurrencyLimit wins. */
	sched_model_set_slots(M("b"), 1, "props");
	ASSERT_INT_EQ(sched_model_concurrency(M("b")), 4);
	ASSERT_STR_EQ(sched_model_concurrency_source(M("b")), "config");
	for (int round = 0; round < 6; round++)
		for (int i = 0; i < 6; i++)
			if (r[i].t.state == TICKET_ACTIVE)
				sched_release(&r[i].t);
	for (int i = 0; i < 6; i++)
		ASSERT_INT_EQ(r[i].outcome, 0);
	teardown();
}

int
main(void)
{
	log_set_level(LOG_ERROR);
	test_learned_concurrency();
	test_single_flight();
	test_failed_start_fans_out();
	test_swap_waits_for_busy_and_reap();
	test_batch_before_eviction();
	test_groups();
	test_matrix_policy();
	test_routing_priority_and_groups();
	test_queue_limits_and_deadline();
	test_ttl();
	test_crash_and_shutdown();
	test_unload();
	test_crash_loop_hold();
	test_starting_victim_waits();
	test_shutdown_grace();
	test_reload();
	CHECK_DONE();
}
