/* supervisor: runs backend processes — spawn without a shell, capture output, health-check,
 * stop (TERM or cmdStop, grace, KILL) and reap. Knows nothing of HTTP requests or models'
 * scheduling; its owner (sched) is told about each process through one callback. */
#ifndef MODELMUX_SUPERVISOR_H
#define MODELMUX_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SUP_HEALTH_INTERVAL_MS 50     /* health poll period while starting */
#define SUP_PROBE_TIMEOUT_MS   1000   /* one health probe */
#define SUP_PROBE_MIN_GAP_MS   5      /* between probes an output line triggers */
#define SUP_REACH_INTERVAL_MS  3000   /* at most one reachability probe per process this often */
#define SUP_REACH_TIMEOUT_MS   2000   /* a running server that has not answered by then is
                                       * unreachable */
#define SUP_LINE_MAX           4096   /* longer output lines are cut */
#define SUP_PIPE_GAP_MS        20     /* a running server's output is read at most this often:
                                       * a server that logs every request would otherwise wake
                                       * the loop once more per request */
#define SUP_TAIL_BYTES         4096   /* last output kept per process (for a failed start) */
#define SUP_MAX_STRAYS         64     /* descendants outside the group tracked per process */
#define SUP_LEFTOVER_ROUNDS    100    /* 10 ms rounds of killing leftovers at exit */

struct sup_proc;

enum sup_event {
	SUP_READY = 0,     /* the health check answered 200 (or there is none) */
	SUP_START_FAILED,  /* exited or stalled while starting; SUP_EXITED follows */
	SUP_START_TIMEOUT, /* the health check did not pass in time; SUP_EXITED follows */
	SUP_EXITED,        /* reaped; the record is freed when the callback returns */
};

/* `reason` is a short human sentence for SUP_START_FAILED and SUP_EXITED, NULL for SUP_READY. */
typedef void (*sup_event_cb)(struct sup_proc *p, enum sup_event ev, const char *reason, void *arg);

struct sup_spec {
	const char  *name;              /* for logs: the model id */
	const char  *exe;               /* what to execve (resolved at config load); NULL = look
	                                 * argv[0] up in PATH */
	char *const *argv;
	char *const *env;               /* "K=V" added to (and overriding) the daemon's environment */
	const char  *health_url;        /* full URL, NULL = ready as soon as spawned */
	const char  *reach_url;         /* probed once running, on demand, to tell whether the
	                                 * server still answers (any HTTP status counts);
	                                 * NULL = health_url; both NULL = never probed */
	uint64_t     health_timeout_ms; /* give up starting after this long */
	uint64_t     stall_timeout_ms;  /* ... or after this long with no output and no health
	                                 * answer of any kind; 0 = no such limit */
	char *const *stop_argv;         /* run instead of SIGTERM ("${PID}" replaced); may be NULL */
	const char  *stop_exe;          /* stop_argv's executable, resolved like exe */
};

/* Makes the daemon its children's subreaper. Call once at start. */
void sup_init(void);

/* Spawns a process. Returns its record, or NULL with a message in *err (caller frees) when it
 * could not be started at all ("command not found: x"). The spec is copied. */
struct sup_proc *sup_start(const struct sup_spec *spec, sup_event_cb cb, void *arg, char **err);

/* Stops a process: cmdStop or SIGTERM to its group, then SIGKILL after `grace_ms`.
 * SUP_EXITED follows. Calling it again shortens nothing; 0 grace kills at once. */
void sup_stop(struct sup_proc *p, uint64_t grace_ms);

/* Starts a reachability probe of a running process unless one is in flight or one started
 * less than SUP_REACH_INTERVAL_MS ago. Never blocks; the result shows in sup_reachability. */
void sup_probe_reach(struct sup_proc *p);
/* The last reachability result of a running process: true with *reachable and how old it is
 * (*age_ms), or false when nothing is known yet (or the process is not running). A health
 * check that just passed counts as a reachable result. */
bool sup_reachability(const struct sup_proc *p, bool *reachable, uint64_t *age_ms);
/* Reaps every exited child; call on SIGCHLD. */
void sup_reap(void);

pid_t sup_pid(const struct sup_proc *p);
/* Writes the last `lines` output lines (oldest first, '\n'-separated) into buf; returns buf. */
const char *sup_tail(const struct sup_proc *p, size_t lines, char *buf, size_t n);
/* Number of processes not yet reaped. */
size_t sup_count(void);
/* Sends SIGKILL to every process group still alive, and to their descendants that left the
 * group (last resort at exit). */
void sup_kill_all(void);
/* At exit, once every backend is reaped: kills and reaps the processes still our children —
 * descendants that outlived their backend and were adopted by us as subreaper. */
void sup_kill_leftovers(void);

#endif
