/* supervisor: backend processes — spawn, output capture, health, stop, reap. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/probe.h"
#include "modelmux/supervisor.h"
#include "modelmux/util.h"

extern char **environ;

enum proc_phase {
	PHASE_STARTING = 0,
	PHASE_RUNNING,
	PHASE_STOPPING,
};

struct out_pipe {
	int        fd;
	const char *label; /* "stdout" or "stderr" */
	struct buf partial;
	bool       parked; /* out of the loop's events until the pipe timer */
};

struct sup_proc {
	struct sup_proc *next;
	char            *name;
	char            *health_url;
	char            *reach_url;
	char           **stop_argv;
	char            *stop_exe;
	char           **env;
	pid_t            pid;
	enum proc_phase  phase;
	sup_event_cb     cb;
	void            *arg;
	struct out_pipe  out[2];
	uint64_t         started_ms;
	uint64_t         health_deadline_ms;
	uint64_t         stall_ms;
	uint64_t         last_progress_ms; /* last output line or health answer */
	uint64_t         last_probe_ms;    /* when the last health probe started */
	uint64_t         poll_timer;
	uint64_t         pipe_timer;  /* puts parked pipes back in the loop's events */
	uint64_t         kill_timer;
	struct probe     probe;      /* a health or reachability probe */
	bool             probe_soon; /* an output line arrived while a probe was in flight */
	/* Descendants outside the process group (they called setsid or setpgid), seen when the
	 * stop began: killpg does not reach them. */
	pid_t            strays[SUP_MAX_STRAYS];
	size_t           nstrays;
	bool             reach_known, reachable; /* last reachability result while running */
	uint64_t         reach_ms;               /* when it was learnt */
	/* Last output lines, kept here: a server that writes a line per request must not leave
	 * allocations behind it. */
	struct lring     tail;
	char             tail_buf[SUP_TAIL_BYTES];
};

static struct sup_proc *procs;
static size_t nprocs;

void
sup_init(void)
{
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		log_warn("sup", "msg=\"cannot become child subreaper\" err=\"%s\"", strerror(errno));
}

pid_t
sup_pid(const struct sup_proc *p)
{
	return p->pid;
}

size_t
sup_count(void)
{
	return nprocs;
}

/* --- output capture --- */

const char *
sup_tail(const struct sup_proc *p, size_t lines, char *buf, size_t n)
{
	size_t at = 0, o = 0, k, held = 0;

	if (n == 0)
		return buf;
	/* Only a failed start asks: count the lines held, then skip to the last ones. */
	while (lring_next(&p->tail, &at, NULL, 0) != LRING_END)
		held++;
	at = 0;
	for (size_t skip = held > lines ? held - lines : 0; skip > 0; skip--)
		(void)lring_next(&p->tail, &at, NULL, 0);
	/* Each line after the first needs its '\n' and a byte of text before the NUL. */
	while ((o == 0 ? n > 1 : o + 2 < n) &&
	    (k = lring_next(&p->tail, &at, buf + o + (o > 0), n - o - 1 - (o > 0))) != LRING_END) {
		if (o > 0)
			buf[o++] = '\n';
		o += k;
	}
	buf[o] = '\0';
	return buf;
}

static void probe_start(struct sup_proc *p);
static void poll_tick(void *arg);

static void
emit_line(struct sup_proc *p, struct out_pipe *o, const char *line, size_t len)
{
	char q[SUP_LINE_MAX + 64];

	if (len > 0 && line[len - 1] == '\r')
		len--;
	lring_put(&p->tail, line, len);
	p->last_progress_ms = loop_now_ms();
	log_info("backend", "model=%s pid=%d stream=%s line=%s", p->name, (int)p->pid, o->label,
	    log_qn(q, sizeof(q), line, len));
	/* Servers log when they become ready: probe now rather than at the next tick — but not
	 * more often than SUP_PROBE_MIN_GAP_MS, or a server that logs each probe would feed a
	 * storm of them. */
	if (p->phase == PHASE_STARTING && p->health_url != NULL) {
		uint64_t since = loop_now_ms() - p->last_probe_ms;

		if (probe_busy(&p->probe)) {
			p->probe_soon = true;
		} else if (since >= SUP_PROBE_MIN_GAP_MS) {
			probe_start(p);
		} else {
			/* Too soon after the last one: at the end of the gap, not at the next tick. */
			loop_timer_cancel(p->poll_timer);
			p->poll_timer = loop_timer_add(SUP_PROBE_MIN_GAP_MS - since, poll_tick, p);
		}
	}
}

static void
pipe_close(struct out_pipe *o)
{
	if (o->fd == -1)
		return;
	loop_fd_del(o->fd);
	close(o->fd);
	o->fd = -1;
}

/* Reads what is available (`all`), or one read's worth (the loop says when there is more);
 * returns false at EOF or error (the pipe is then closed). */
static bool
pipe_drain(struct sup_proc *p, struct out_pipe *o, bool all)
{
	char chunk[16384];

	for (;;) {
		ssize_t n = read(o->fd, chunk, sizeof(chunk));

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return true;
		if (n <= 0) {
			if (o->partial.len > 0)
				emit_line(p, o, o->partial.data, o->partial.len);
			buf_free(&o->partial);
			pipe_close(o);
			return false;
		}
		for (ssize_t i = 0, start = 0; i < n; i++) {
			bool nl = chunk[i] == '\n';

			if (!nl && i + 1 < n)
				continue;
			size_t piece = (size_t)(i - start) + (nl ? 0 : 1);
			size_t room = SUP_LINE_MAX - o->partial.len;

			if (buf_append(&o->partial, chunk + start, MM_MIN(piece, room), SUP_LINE_MAX) == -1)
				fatal("out of memory");
			if (nl || o->partial.len >= SUP_LINE_MAX) {
				emit_line(p, o, o->partial.data, o->partial.len);
				buf_reset(&o->partial);
			}
			start = i + 1;
		}
		if (!all && (size_t)n < sizeof(chunk))
			return true;
	}
}

static void
pipe_unpark(void *arg)
{
	struct sup_proc *p = arg;

	p->pipe_timer = 0;
	for (size_t i = 0; i < MM_ARRAY_LEN(p->out); i++) {
		if (p->out[i].fd != -1 && p->out[i].parked) {
			p->out[i].parked = false;
			(void)loop_fd_mod(p->out[i].fd, EPOLLIN);
		}
	}
}

static void
on_pipe(int fd, uint32_t events, void *arg)
{
	struct sup_proc *p = arg;

	(void)events;
	for (size_t i = 0; i < MM_ARRAY_LEN(p->out); i++) {
		struct out_pipe *o = &p->out[i];

		if (o->fd != fd || !pipe_drain(p, o, false))
			continue;
		/* While starting, every line may be the ready line: read at once. Afterwards, lines
		 * wait up to SUP_PIPE_GAP_MS and come in batches. A parked pipe still reports its
		 * end (EPOLLHUP). */
		if (p->phase != PHASE_STARTING && !o->parked) {
			o->parked = true;
			(void)loop_fd_mod(fd, 0);
			if (p->pipe_timer == 0)
				p->pipe_timer = loop_timer_add(SUP_PIPE_GAP_MS, pipe_unpark, p);
		}
	}
}

/* --- health --- */

static void become_ready(struct sup_proc *p);
static void fail_start(struct sup_proc *p, enum sup_event ev, const char *reason);

static void
poll_tick(void *arg)
{
	struct sup_proc *p = arg;

	p->poll_timer = 0;
	if (p->phase != PHASE_STARTING)
		return;
	if (p->health_url == NULL) { /* checkEndpoint: none — ready once spawned */
		become_ready(p);
		return;
	}
	if (p->stall_ms > 0 && loop_now_ms() - p->last_progress_ms >= p->stall_ms) {
		char *why = xasprintf("no output and no health answer for %llu s (loadStallTimeout)",
		    (unsigned long long)(p->stall_ms / 1000));

		fail_start(p, SUP_START_FAILED, why);
		free(why);
		return;
	}
	if (loop_now_ms() >= p->health_deadline_ms) {
		char *why = xasprintf("health check timed out after %llu s",
		    (unsigned long long)((p->health_deadline_ms - p->started_ms + 999) / 1000));

		fail_start(p, SUP_START_TIMEOUT, why);
		free(why);
		return;
	}
	if (!probe_busy(&p->probe))
		probe_start(p);
}

static void
schedule_poll(struct sup_proc *p)
{
	if (p->poll_timer == 0 && p->phase == PHASE_STARTING)
		p->poll_timer = loop_timer_add(SUP_HEALTH_INTERVAL_MS, poll_tick, p);
}

static void
become_ready(struct sup_proc *p)
{
	p->phase = PHASE_RUNNING;
	if (p->health_url != NULL) { /* the health check just answered */
		p->reach_known = p->reachable = true;
		p->reach_ms = loop_now_ms();
	}
	loop_timer_cancel(p->poll_timer);
	p->poll_timer = 0;
	log_info("sup", "model=%s pid=%d msg=ready ms=%llu", p->name, (int)p->pid,
	    (unsigned long long)(loop_now_ms() - p->started_ms));
	p->cb(p, SUP_READY, NULL, p->arg);
}

static void
probe_done(void *arg, int status)
{
	struct sup_proc *p = arg;

	if (status > 0)
		p->last_progress_ms = loop_now_ms();
	if (p->phase == PHASE_RUNNING) { /* a reachability probe */
		if (p->reach_known && p->reachable != (status > 0))
			log_warn("sup", "model=%s pid=%d msg=\"%s\"", p->name, (int)p->pid,
			    status > 0 ? "backend answers again" : "backend does not answer");
		p->reach_known = true;
		p->reachable = status > 0;
		p->reach_ms = loop_now_ms();
		return;
	}
	if (p->phase != PHASE_STARTING)
		return;
	if (status == 200) {
		become_ready(p);
		return;
	}
	if (p->probe_soon) {
		uint64_t since = loop_now_ms() - p->last_probe_ms;

		p->probe_soon = false;
		if (since >= SUP_PROBE_MIN_GAP_MS) {
			probe_start(p);
		} else if (p->poll_timer == 0) {
			p->poll_timer = loop_timer_add(SUP_PROBE_MIN_GAP_MS - since, poll_tick, p);
		}
		return;
	}
	schedule_poll(p);
}

static bool
probe_send_to(struct sup_proc *p, const char *url, uint64_t timeout_ms)
{
	return probe_send(&p->probe, url, timeout_ms, probe_done, p);
}

static void
probe_start(struct sup_proc *p)
{
	uint64_t now = loop_now_ms();

	if (now >= p->health_deadline_ms) {
		schedule_poll(p);
		return;
	}
	if (!probe_send_to(p, p->health_url, MM_MIN(p->health_deadline_ms - now,
	    (uint64_t)SUP_PROBE_TIMEOUT_MS))) {
		schedule_poll(p);
		return;
	}
	p->last_probe_ms = now;
}

void
sup_probe_reach(struct sup_proc *p)
{
	const char *url = p->reach_url ? p->reach_url : p->health_url;
	uint64_t    now = loop_now_ms();

	if (p->phase != PHASE_RUNNING || url == NULL || probe_busy(&p->probe) ||
	    now - p->last_probe_ms < SUP_REACH_INTERVAL_MS)
		return;
	p->last_probe_ms = now; /* a failure to start one also waits for the next interval */
	(void)probe_send_to(p, url, SUP_REACH_TIMEOUT_MS);
}

bool
sup_reachability(const struct sup_proc *p, bool *reachable, uint64_t *age_ms)
{
	if (p->phase != PHASE_RUNNING || !p->reach_known)
		return false;
	*reachable = p->reachable;
	*age_ms = loop_now_ms() - p->reach_ms;
	return true;
}

/* --- spawn --- */

static char *
path_lookup(const char *name)
{
	const char *path = getenv("PATH");
	char       *copy, *dir, *save = NULL, *found = NULL;

	if (strchr(name, '/') != NULL)
		return xstrdup(name);
	if (path == NULL || *path == '\0')
		path = "/usr/local/bin:/usr/bin:/bin";
	copy = xstrdup(path);
	for (dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		char *cand = xasprintf("%s/%s", *dir ? dir : ".", name);

		if (access(cand, X_OK) == 0) {
			found = cand;
			break;
		}
		free(cand);
	}
	free(copy);
	return found;
}

/* environ, minus names that `extra` overrides, plus `extra`. */
static bool
overrides(char *const *extra, const char *var)
{
	const char *eq = strchr(var, '=');
	size_t      nl = eq ? (size_t)(eq - var) : strlen(var);

	for (char *const *e = extra; e && *e; e++)
		if (strncmp(*e, var, nl) == 0 && (*e)[nl] == '=')
			return true;
	return false;
}

static char **
build_env(char *const *extra)
{
	char **envp = xcalloc(strv_len(environ) + strv_len(extra) + 1, sizeof(*envp));
	size_t o = 0;

	for (char **v = environ; v && *v; v++)
		if (!overrides(extra, *v))
			envp[o++] = *v;
	for (char *const *e = extra; e && *e; e++)
		envp[o++] = *e;
	return envp; /* strings borrowed: free only the vector */
}

/* In the child: never returns. */
static void __attribute__((noreturn))
child_exec(const char *exe, char *const *argv, char **envp, int out_fd, int err_fd, int errpipe,
    pid_t parent)
{
	sigset_t all;
	int      devnull, e;

	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	devnull = open("/dev/null", O_RDWR);
	if (devnull == -1 || dup2(devnull, 0) == -1 ||
	    dup2(out_fd == -1 ? devnull : out_fd, 1) == -1 ||
	    dup2(err_fd == -1 ? devnull : err_fd, 2) == -1)
		goto fail;
	/* Every other fd but the exec-error pipe goes; that one is close-on-exec. */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == -1) {
		for (int fd = 3; fd < 1024; fd++)
			if (fd != errpipe)
				close(fd);
	}
	execve(exe, argv, envp);
fail:
	e = errno;
	(void)!write(errpipe, &e, sizeof(e));
	_exit(127);
}

/* fork+exec; returns the pid or -1 with errno from the child's failed exec. */
static pid_t
spawn(const char *exe, char *const *argv, char **envp, int out_fd, int err_fd)
{
	int   ep[2], child_errno = 0;
	pid_t pid, parent = getpid();

	if (pipe2(ep, O_CLOEXEC) == -1)
		return -1;
	if ((pid = fork()) == -1) {
		int e = errno;

		close(ep[0]);
		close(ep[1]);
		errno = e;
		return -1;
	}
	if (pid == 0) {
		close(ep[0]);
		child_exec(exe, argv, envp, out_fd, err_fd, ep[1], parent);
	}
	close(ep[1]);
	/* Also puts the child in its own group from our side, closing the race with killpg. */
	setpgid(pid, pid);
	for (;;) {
		ssize_t n = read(ep[0], &child_errno, sizeof(child_errno));

		if (n == -1 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(child_errno))
			child_errno = 0;
		break;
	}
	close(ep[0]);
	if (child_errno != 0) {
		while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
			;
		errno = child_errno;
		return -1;
	}
	return pid;
}

struct sup_proc *
sup_start(const struct sup_spec *spec, sup_event_cb cb, void *arg, char **err)
{
	struct sup_proc *p = NULL;
	char            *exe = NULL, **envp = NULL;
	int              op[2] = { -1, -1 }, ep[2] = { -1, -1 };
	pid_t            pid;

	*err = NULL;
	if ((exe = spec->exe ? xstrdup(spec->exe) : path_lookup(spec->argv[0])) == NULL) {
		*err = xasprintf("command not found: %s", spec->argv[0]);
		goto out;
	}
	/* Only our ends are non-blocking: a child writing to a full pipe must wait, not lose
	 * its output (or fail on EAGAIN). */
	if (pipe2(op, O_CLOEXEC) == -1 || pipe2(ep, O_CLOEXEC) == -1 || set_nonblock(op[0]) == -1 ||
	    set_nonblock(ep[0]) == -1) {
		*err = xasprintf("cannot create pipes: %s", strerror(errno));
		goto out;
	}
	envp = build_env(spec->env);
	if ((pid = spawn(exe, spec->argv, envp, op[1], ep[1])) == -1) {
		if (errno == ENOENT)
			*err = xasprintf("command not found: %s", spec->argv[0]);
		else
			*err = xasprintf("cannot execute %s: %s", exe, strerror(errno));
		goto out;
	}
	p = xcalloc(1, sizeof(*p));
	p->tail.buf = p->tail_buf;
	p->tail.cap = sizeof(p->tail_buf);
	p->name = xstrdup(spec->name);
	p->health_url = spec->health_url ? xstrdup(spec->health_url) : NULL;
	p->reach_url = spec->reach_url ? xstrdup(spec->reach_url) : NULL;
	p->stop_argv = spec->stop_argv ? strv_dup(spec->stop_argv) : NULL;
	p->env = spec->env ? strv_dup(spec->env) : NULL;
	p->stop_exe = spec->stop_exe ? xstrdup(spec->stop_exe) : NULL;
	p->pid = pid;
	p->cb = cb;
	p->arg = arg;
	p->started_ms = loop_now_ms();
	p->health_deadline_ms = p->started_ms + spec->health_timeout_ms;
	p->stall_ms = spec->stall_timeout_ms;
	p->last_progress_ms = p->started_ms;
	p->out[0] = (struct out_pipe){ .fd = op[0], .label = "stdout" };
	p->out[1] = (struct out_pipe){ .fd = ep[0], .label = "stderr" };
	op[0] = ep[0] = -1;
	for (size_t i = 0; i < MM_ARRAY_LEN(p->out); i++)
		if (loop_fd_add(p->out[i].fd, EPOLLIN, on_pipe, p) == -1)
			fatal("cannot watch a child pipe: %s", strerror(errno));
	p->next = procs;
	procs = p;
	nprocs++;
	log_info("sup", "model=%s pid=%d msg=spawned exe=%s", p->name, (int)pid, exe);
	if (p->health_url != NULL)
		probe_start(p);
	else
		p->poll_timer = loop_timer_add(0, poll_tick, p); /* ready at the next loop round */
out:
	for (int i = 0; i < 2; i++) {
		if (op[i] != -1)
			close(op[i]);
		if (ep[i] != -1)
			close(ep[i]);
	}
	free(envp);
	free(exe);
	return p;
}

/* --- stop and reap --- */

struct proc_ent {
	pid_t pid, ppid, pgid;
};

/* Every live (not zombie) process from /proc, into *out (caller frees); -1 if /proc cannot be
 * read. */
static ssize_t
proc_scan(struct proc_ent **out)
{
	DIR            *d = opendir("/proc");
	struct dirent  *e;
	struct proc_ent *v = NULL;
	size_t          n = 0, cap = 0;

	*out = NULL;
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		char        path[64], stat[512], *close_paren, state;
		long long   pid;
		int         ppid, pgid, fd;
		ssize_t     len;

		if (parse_int(e->d_name, 1, INT32_MAX, &pid) == -1)
			continue;
		snprintf(path, sizeof(path), "/proc/%lld/stat", pid);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			continue;
		len = read(fd, stat, sizeof(stat) - 1);
		close(fd);
		if (len <= 0)
			continue;
		stat[len] = '\0';
		/* "pid (comm) state ppid pgrp ...": comm may hold anything, even ')'. */
		if ((close_paren = strrchr(stat, ')')) == NULL ||
		    sscanf(close_paren + 1, " %c %d %d", &state, &ppid, &pgid) != 3 || state == 'Z')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n++] = (struct proc_ent){ (pid_t)pid, (pid_t)ppid, (pid_t)pgid };
	}
	closedir(d);
	*out = v;
	return (ssize_t)n;
}

static bool
is_stray(const struct sup_proc *p, pid_t pid)
{
	for (size_t i = 0; i < p->nstrays; i++)
		if (p->strays[i] == pid)
			return true;
	return false;
}

/* Adds p's descendants outside its process group to p->strays (bounded). A process in the
 * group is reached by killpg; a descendant of a stray is found through it. */
static void
collect_strays(struct sup_proc *p)
{
	struct proc_ent *v;
	ssize_t          n = proc_scan(&v);
	pid_t           *tree;
	size_t           nt = 1;
	bool             grew = true;

	if (n <= 0) {
		free(v);
		return;
	}
	tree = xcalloc((size_t)n + 1, sizeof(*tree));
	tree[0] = p->pid;
	/* Grow the tree until a pass adds nothing: parents may come after children in /proc. */
	while (grew) {
		grew = false;
		for (ssize_t i = 0; i < n; i++) {
			bool parent_in = false, self_in = false;

			for (size_t k = 0; k < nt && !(parent_in && self_in); k++) {
				parent_in |= tree[k] == v[i].ppid;
				self_in |= tree[k] == v[i].pid;
			}
			if (!parent_in || self_in)
				continue;
			tree[nt++] = v[i].pid;
			grew = true;
			if (v[i].pgid != p->pid && !is_stray(p, v[i].pid)) {
				if (p->nstrays == SUP_MAX_STRAYS) {
					log_warn("sup", "model=%s pid=%d msg=\"too many processes outside the "
					    "group, not all tracked\"", p->name, (int)p->pid);
					continue;
				}
				p->strays[p->nstrays++] = v[i].pid;
				log_info("sup", "model=%s pid=%d msg=\"descendant outside the process group\" "
				    "stray_pid=%d pgid=%d", p->name, (int)p->pid, (int)v[i].pid, (int)v[i].pgid);
			}
		}
	}
	free(tree);
	free(v);
}

/* Signals the recorded strays that are still ours: their parent is the backend, another
 * stray, or us (the subreaper that adopted them) — a pid reused by a stranger is left alone. */
static void
signal_strays(const struct sup_proc *p, int sig)
{
	struct proc_ent *v;
	ssize_t          n;
	pid_t            self = getpid();

	if (p->nstrays == 0 || (n = proc_scan(&v)) <= 0)
		return;
	for (ssize_t i = 0; i < n; i++) {
		if (!is_stray(p, v[i].pid))
			continue;
		if (v[i].ppid == self || v[i].ppid == p->pid || is_stray(p, v[i].ppid))
			kill(v[i].pid, sig);
	}
	free(v);
}

static void
kill_now(void *arg)
{
	struct sup_proc *p = arg;

	p->kill_timer = 0;
	log_warn("sup", "model=%s pid=%d msg=\"grace period over, sending SIGKILL\"", p->name,
	    (int)p->pid);
	collect_strays(p);
	signal_strays(p, SIGKILL);
	if (killpg(p->pid, SIGKILL) == -1)
		kill(p->pid, SIGKILL);
}

static void
run_stop_cmd(struct sup_proc *p)
{
	char   pidstr[16];
	char **argv = strv_dup(p->stop_argv);
	char  *exe, **envp;
	pid_t  pid;

	snprintf(pidstr, sizeof(pidstr), "%d", (int)p->pid);
	for (size_t i = 0; argv[i]; i++) {
		char *at;

		while ((at = strstr(argv[i], "${PID}")) != NULL) {
			char *n = xasprintf("%.*s%s%s", (int)(at - argv[i]), argv[i], pidstr, at + 6);

			free(argv[i]);
			argv[i] = n;
		}
	}
	exe = p->stop_exe ? xstrdup(p->stop_exe) : path_lookup(argv[0]);
	envp = build_env(p->env);
	/* Its output is discarded; it is reaped by sup_reap like any child. */
	if (exe == NULL || (pid = spawn(exe, argv, envp, -1, -1)) == -1) {
		log_warn("sup", "model=%s msg=\"cmdStop failed, sending SIGTERM\" cmd=%s", p->name, argv[0]);
		if (killpg(p->pid, SIGTERM) == -1)
			kill(p->pid, SIGTERM);
	} else {
		log_info("sup", "model=%s pid=%d msg=\"running cmdStop\" stop_pid=%d", p->name,
		    (int)p->pid, (int)pid);
	}
	free(exe);
	free(envp);
	strv_free(argv);
}

void
sup_stop(struct sup_proc *p, uint64_t grace_ms)
{
	if (p->phase == PHASE_STOPPING && p->kill_timer != 0 && grace_ms > 0)
		return;
	probe_cancel(&p->probe);
	loop_timer_cancel(p->poll_timer);
	p->poll_timer = 0;
	if (p->phase != PHASE_STOPPING) {
		p->phase = PHASE_STOPPING;
		log_info("sup", "model=%s pid=%d msg=stopping grace_ms=%llu", p->name, (int)p->pid,
		    (unsigned long long)grace_ms);
		/* Before the backend can exit: once it is gone, its tree can no longer be walked. */
		collect_strays(p);
		if (grace_ms > 0 && p->stop_argv != NULL) {
			run_stop_cmd(p);
		} else if (grace_ms > 0) {
			signal_strays(p, SIGTERM);
			if (killpg(p->pid, SIGTERM) == -1)
				kill(p->pid, SIGTERM);
		}
	}
	loop_timer_cancel(p->kill_timer);
	p->kill_timer = 0;
	if (grace_ms == 0)
		kill_now(p);
	else
		p->kill_timer = loop_timer_add(grace_ms, kill_now, p);
}

static void
fail_start(struct sup_proc *p, enum sup_event ev, const char *reason)
{
	log_warn("sup", "model=%s pid=%d msg=\"start failed\" reason=\"%s\"", p->name, (int)p->pid,
	    reason);
	sup_stop(p, 0);
	p->cb(p, ev, reason, p->arg);
}

static void
proc_free(struct sup_proc *p)
{
	for (struct sup_proc **pp = &procs; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			nprocs--;
			break;
		}
	}
	probe_cancel(&p->probe);
	loop_timer_cancel(p->poll_timer);
	loop_timer_cancel(p->kill_timer);
	loop_timer_cancel(p->pipe_timer);
	for (size_t i = 0; i < MM_ARRAY_LEN(p->out); i++) {
		buf_free(&p->out[i].partial);
		pipe_close(&p->out[i]);
	}
	strv_free(p->stop_argv);
	strv_free(p->env);
	free(p->stop_exe);
	free(p->health_url);
	free(p->reach_url);
	free(p->name);
	free(p);
}

static void
describe_status(int status, char *buf, size_t n)
{
	if (WIFEXITED(status))
		snprintf(buf, n, "exited with code %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(buf, n, "ended with status %d", status);
}

static void
on_exit_status(struct sup_proc *p, int status)
{
	char what[96];

	describe_status(status, what, sizeof(what));
	/* The leader is gone: whatever it left in its group goes too, and the descendants that
	 * left the group before it was stopped (now our children, as subreaper). */
	killpg(p->pid, SIGKILL);
	signal_strays(p, SIGKILL);
	/* Collect the output still in the pipes so the last lines are complete. */
	for (size_t i = 0; i < MM_ARRAY_LEN(p->out); i++)
		if (p->out[i].fd != -1 && pipe_drain(p, &p->out[i], true))
			pipe_close(&p->out[i]);
	/* stopped=yes: we asked it to stop, so however it ended (llama-server aborts, signal 6, on
	 * SIGTERM) it is a stop, not a crash. */
	log_info("sup", "model=%s pid=%d msg=exited status=\"%s\"%s", p->name, (int)p->pid, what,
	    p->phase == PHASE_STOPPING ? " stopped=yes" : "");
	if (p->phase == PHASE_STARTING) {
		char *why = xasprintf("%s while starting", what);

		p->phase = PHASE_STOPPING;
		p->cb(p, SUP_START_FAILED, why, p->arg);
		free(why);
	}
	p->cb(p, SUP_EXITED, what, p->arg);
	proc_free(p);
}

void
sup_reap(void)
{
	for (;;) {
		int   status;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid == -1 && errno == EINTR)
			continue;
		if (pid <= 0)
			return;
		struct sup_proc *p = procs;

		while (p != NULL && p->pid != pid)
			p = p->next;
		if (p != NULL)
			on_exit_status(p, status);
		else
			log_debug("sup", "msg=\"reaped\" pid=%d", (int)pid);
	}
}

void
sup_kill_all(void)
{
	for (struct sup_proc *p = procs; p; p = p->next) {
		collect_strays(p);
		signal_strays(p, SIGKILL);
		if (killpg(p->pid, SIGKILL) == -1)
			kill(p->pid, SIGKILL);
	}
}

void
sup_kill_leftovers(void)
{
	pid_t self = getpid();

	for (int round = 0; round < SUP_LEFTOVER_ROUNDS; round++) {
		struct proc_ent *v;
		ssize_t          n;
		size_t           live = 0;

		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if ((n = proc_scan(&v)) == -1) {
			log_warn("sup", "msg=\"cannot read /proc to find leftover processes\" err=\"%s\"",
			    strerror(errno));
			return;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (v[i].ppid != self)
				continue;
			if (round == 0)
				log_warn("sup", "msg=\"killing a leftover process\" pid=%d", (int)v[i].pid);
			kill(v[i].pid, SIGKILL);
			live++;
		}
		free(v);
		if (live == 0)
			return;
		usleep(10000);
	}
	log_warn("sup", "msg=\"leftover processes did not die\"");
}
