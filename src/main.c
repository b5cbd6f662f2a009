/* modelmux: arguments, config test (-t), start, signals, exit codes. */
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "modelmux/api.h"
#include "modelmux/config.h"
#include "modelmux/config_compat.h"
#include "modelmux/fetch.h"
#include "modelmux/haproxy.h"
#include "modelmux/http.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/metrics.h"
#include "modelmux/notify.h"
#include "modelmux/peer.h"
#include "modelmux/sched.h"
#include "modelmux/supervisor.h"
#include "modelmux/upstream.h"
#include "modelmux/util.h"

#define SHUTDOWN_GRACE_MS    30000 /* requests in flight may finish for this long */
#define WATCH_INTERVAL_MS    2000  /* --watch-config poll period */
#define SHUTDOWN_BACKSTOP_MS 90000 /* a stop that takes longer than this is cut short */

static const int handled_signals[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, 0 };

static struct {
	int      stopping; /* number of SIGTERM/SIGINT received */
	bool     sched_done;
	uint64_t backstop;
	uint64_t watchdog_ms;
	uint64_t watchdog_timer;
	const char *config_path; /* -c, NULL when only --config-dir is given */
	const char *config_dir;  /* --config-dir, or NULL */
	struct cfg *cfg;
	unsigned    generation;
	bool        watch;
	const char *tls_cert_file; /* -tls-cert-file, or NULL */
	const char *tls_key_file;  /* -tls-key-file, or NULL */
	uint64_t    watch_timer;
	unsigned long long watched; /* cfg_stamp of the files last seen */
} M;

static void
on_loop_round(void *arg)
{
	(void)arg;
	log_flush();
}

static bool
str_same(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void
register_metrics(const struct cfg *cfg)
{
	char **ids = xcalloc(cfg->nmodels + 1, sizeof(*ids));

	for (size_t i = 0; i < cfg->nmodels; i++)
		ids[i] = cfg->models[i].id;
	metrics_init(ids, cfg->nmodels);
	free(ids);
}

/* -tls-cert-file/-tls-key-file (llama-swap's flags) take the place of the config's tls:
 * block. 0, or -1 with the reason logged or printed. */
static int
apply_tls_flags(struct cfg *c)
{
	struct cfg_errs errs = { 0 };

	if (M.tls_cert_file == NULL)
		return 0;
	if (cfg_compat_tls_files(c, M.tls_cert_file, M.tls_key_file, &errs) == 0)
		return 0;
	for (size_t i = 0; i < errs.n; i++)
		log_error("main", "msg=\"%s\"", errs.msgs[i]);
	cfg_errs_free(&errs);
	return -1;
}

/* SIGHUP or a changed file: a bad config keeps the running one; a good one is applied as a
 * diff by the scheduler. */
static void
reload(const char *why)
{
	struct cfg_errs errs = { 0 };
	struct cfg     *next;
	struct timespec ts;
	char            msg[96], qw[64];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u);
	notify_send(msg);
	{
		char qc[600], qd[600];

		log_info("main", "msg=\"reloading configuration\" why=%s path=%s%s%s",
		    log_q(qw, sizeof(qw), why), M.config_path ? log_q(qc, sizeof(qc), M.config_path) : "-",
		    M.config_dir ? " dir=" : "", M.config_dir ? log_q(qd, sizeof(qd), M.config_dir) : "");
	}
	if ((next = cfg_load_set(M.config_path, M.config_dir, &errs)) == NULL) {
		for (size_t i = 0; i < errs.n; i++) {
			char q[1200];

			log_error("main", "msg=\"reload refused\" error=%s", log_q(q, sizeof(q), errs.msgs[i]));
		}
		log_error("main", "msg=\"configuration has errors; still running the previous one\" errors=%zu",
		    errs.n);
		cfg_errs_free(&errs);
		notify_send("READY=1\nSTATUS=reload failed; previous configuration kept");
		return;
	}
	if (apply_tls_flags(next) == -1) {
		cfg_unref(next);
		notify_send("READY=1\nSTATUS=reload failed; previous configuration kept");
		return;
	}
	for (size_t i = 0; i < next->warnings.n; i++) {
		char q[1200];

		log_warn("main", "msg=\"configuration warning\" warning=%s",
		    log_q(q, sizeof(q), next->warnings.msgs[i]));
	}
	if (strcmp(next->listen, M.cfg->listen) != 0 || !str_same(next->tls_cert_pem, M.cfg->tls_cert_pem))
		log_warn("main", "msg=\"listen and tls changes take effect at the next restart\"");
	if (next->log_level != NULL) {
		enum log_level lvl;

		if (log_parse_level(next->log_level, &lvl) == 0)
			log_set_level(lvl);
	}
	log_set_format(next->log_json ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
	log_set_streams(cfg_compat_log_proxy(next), cfg_compat_log_upstream(next));
	register_metrics(next);
	peer_sync(next);
	sched_reload(next);
	http_set_config(next);
	cfg_unref(M.cfg);
	M.cfg = next;
	api_set_generation(++M.generation);
	log_info("main", "msg=\"configuration reloaded\" generation=%u models=%zu", M.generation,
	    next->nmodels);
	notify_send("READY=1\nSTATUS=configuration reloaded");
}

/* --watch-config: the file and the directory's files are polled every 2 s (names, mtime, size,
 * inode), as llama-swap does; a file added to or removed from the directory counts. */
static void
on_watch(void *arg)
{
	unsigned long long stamp;

	(void)arg;
	M.watch_timer = loop_timer_add(WATCH_INTERVAL_MS, on_watch, NULL);
	if (cfg_stamp(M.config_path, M.config_dir, &stamp) == -1)
		return;
	if (stamp != M.watched) {
		M.watched = stamp;
		if (M.stopping == 0)
			reload("file changed");
	}
}

/* systemd's watchdog: ping at half the period the unit asked for, from the loop — so a stuck
 * loop is noticed. */
static void
on_watchdog(void *arg)
{
	(void)arg;
	notify_send("WATCHDOG=1");
	M.watchdog_timer = loop_timer_add(M.watchdog_ms / 2, on_watchdog, NULL);
}

/* A Go boolean flag's value: none (true), or =true/false/1/0/t/f. */
static int
parse_go_bool(const char *flag, const char *v, bool *out)
{
	static const char *const yes[] = { "1", "t", "T", "true", "TRUE", "True", NULL };
	static const char *const no[] = { "0", "f", "F", "false", "FALSE", "False", NULL };

	if (v == NULL) {
		*out = true;
		return 0;
	}
	for (size_t i = 0; yes[i]; i++)
		if (strcmp(v, yes[i]) == 0)
			return *out = true, 0;
	for (size_t i = 0; no[i]; i++)
		if (strcmp(v, no[i]) == 0)
			return *out = false, 0;
	fprintf(stderr, "modelmux: invalid boolean value \"%s\" for -%s\n", v, flag);
	return -1;
}

static void
usage(FILE *f)
{
	fputs("usage: modelmux [-t] [-c FILE] [--config-dir DIR] [-l ADDR]\n"
	      "                [--tls-cert-file FILE --tls-key-file FILE]\n"
	      "\n"
	      "A model-swapping reverse proxy for local inference servers.\n"
	      "\n"
	      "  -c, --config FILE   configuration file (default: config.yaml, unless\n"
	      "                      --config-dir is given)\n"
	      "      --config-dir DIR\n"
	      "                      also merge every *.yml and *.yaml file directly in DIR,\n"
	      "                      in name order, after FILE (models and groups may not\n"
	      "                      repeat, lists concatenate, maps merge, values must agree)\n"
	      "  -l, --listen ADDR   listen address, host:port or [v6]:port\n"
	      "                      (default: the config's listen:, else 127.0.0.1:8080)\n"
	      "  -t, --test          check the configuration, print each model's argv, and exit\n"
	      "      --watch-config  reload the configuration when a file changes, or one is\n"
	      "                      added to or removed from DIR (as SIGHUP)\n"
	      "      --haproxy-config --server NAME=HOST:PORT ... -c FILE ...\n"
	      "                      write an HAProxy config for several modelmux hosts and\n"
	      "                      exit (--haproxy-config --help for the details)\n"
	      "      --tls-cert-file FILE, --tls-key-file FILE\n"
	      "                      serve HTTPS with this PEM certificate and key (both\n"
	      "                      together; in place of the config's tls: block)\n"
	      "  -h, --help          show this help\n"
	      "      --version       show the version\n"
	      "\n"
	      "Long options also take one dash and FLAG=VALUE, as llama-swap's (Go) flags do:\n"
	      "  modelmux -config config.yaml -listen :8080 -watch-config\n"
	      "\n"
	      "Signals: TERM/INT let requests finish, stop every backend and exit (a second one\n"
	      "exits at once); HUP reloads the configuration, keeping unchanged models running.\n", f);
}

static void
print_errs(const struct cfg_errs *e, const char *prefix)
{
	for (size_t i = 0; i < e->n; i++)
		fprintf(stderr, "%s%s\n", prefix, e->msgs[i]);
}

static void
print_argv(const struct cfg *c)
{
	for (size_t i = 0; i < c->nmodels; i++) {
		const struct cfg_model *m = &c->models[i];

		printf("%s:", m->id);
		if (m->peer != NULL) {
			printf(" (peer)\n  proxy: %s\n", m->proxy);
			continue;
		}
		for (char **a = m->argv; *a; a++) {
			char q[1024];

			printf(" %s", strpbrk(*a, " \t\n\"'\\$") || **a == '\0' ? log_q(q, sizeof(q), *a) : *a);
		}
		printf("\n  exe: %s\n  proxy: %s\n", m->exe ? m->exe : "(PATH lookup at start)", m->proxy);
		if (m->stop_exe != NULL)
			printf("  stop exe: %s\n", m->stop_exe);
	}
}

static void
exit_now(void)
{
	sup_kill_all();
	loop_stop();
}

static void
on_sched_stopped(void)
{
	M.sched_done = true;
	log_info("main", "msg=\"every backend stopped\"");
	loop_stop();
}

static void
on_backstop(void *arg)
{
	(void)arg;
	M.backstop = 0;
	log_error("main", "msg=\"backends did not stop in time, killing them\"");
	exit_now();
}

static void
on_signal(int signo, void *arg)
{
	(void)arg;
	switch (signo) {
	case SIGCHLD:
		sup_reap();
		break;
	case SIGTERM:
	case SIGINT:
		if (M.stopping++ > 0) {
			log_warn("main", "msg=\"second stop signal, exiting at once\"");
			exit_now();
			break;
		}
		log_info("main", "msg=\"stopping\" signal=%s", strsignal(signo));
		notify_send("STOPPING=1\nSTATUS=stopping backends");
		http_stop_accepting();
		M.backstop = loop_timer_add(SHUTDOWN_BACKSTOP_MS, on_backstop, NULL);
		sched_shutdown(SHUTDOWN_GRACE_MS, on_sched_stopped);
		break;
	case SIGHUP:
		if (M.stopping == 0)
			reload("SIGHUP");
		break;
	}
}

/* Reaps what is left after the loop ended (children already sent SIGKILL). */
static void
reap_remaining(void)
{
	for (int i = 0; i < 500 && sup_count() > 0; i++) {
		sup_reap();
		if (sup_count() > 0)
			usleep(10000);
	}
}

/* x* allocations that fail end here: the pending log lines go out before the abort. */
static void __attribute__((noreturn))
out_of_memory(size_t n)
{
	fatal("out of memory (%zu bytes)", n);
}

/* The command line: fills M's options and *test / *listen_addr; returns -1 to go on, else
 * the exit code (after --help, --version or a usage error). */
static int
parse_args(int argc, char **argv, bool *test, const char **listen_addr)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "test", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "watch-config", optional_argument, NULL, 'W' },
		{ "config-dir", required_argument, NULL, 'D' },
		{ "tls-cert-file", required_argument, NULL, 'C' },
		{ "tls-key-file", required_argument, NULL, 'K' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	/* getopt_long_only: "-config FILE", "--config=FILE" and "-c FILE" all work, so
	 * llama-swap's (Go flag) command lines run unchanged; one letter after one dash is
	 * still a short option. */
	while ((ch = getopt_long_only(argc, argv, "c:l:th", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': M.config_path = optarg; break;
		case 'l': *listen_addr = optarg; break;
		case 't': *test = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("modelmux %s\n", MM_VERSION); return 0;
		case 'W':
			if (parse_go_bool("watch-config", optarg, &M.watch) == -1)
				return 2;
			break;
		case 'C': M.tls_cert_file = optarg; break;
		case 'K': M.tls_key_file = optarg; break;
		case 'D': M.config_dir = optarg; break;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "modelmux: unexpected argument: %s\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if ((M.tls_cert_file == NULL) != (M.tls_key_file == NULL)) {
		fprintf(stderr, "modelmux: -tls-cert-file and -tls-key-file go together\n");
		usage(stderr);
		return 2;
	}
	/* Neither -c nor --config-dir: ./config.yaml, as before --config-dir existed. */
	if (M.config_path == NULL && M.config_dir == NULL)
		M.config_path = "config.yaml";
	return -1;
}

/* The configuration the command line names, with its warnings printed; NULL (its errors
 * printed) when it does not load. */
static struct cfg *
load_config(void)
{
	struct cfg_errs errs = { 0 };
	struct cfg     *cfg;

	if ((cfg = cfg_load_set(M.config_path, M.config_dir, &errs)) == NULL) {
		print_errs(&errs, "");
		fprintf(stderr, "modelmux: %s: configuration has %zu error%s\n",
		    M.config_path ? M.config_path : M.config_dir, errs.n, errs.n == 1 ? "" : "s");
		cfg_errs_free(&errs);
		return NULL;
	}
	print_errs(&cfg->warnings, "warning: ");
	if (M.tls_cert_file != NULL &&
	    cfg_compat_tls_files(cfg, M.tls_cert_file, M.tls_key_file, &errs) == -1) {
		print_errs(&errs, "");
		cfg_errs_free(&errs);
		cfg_unref(cfg);
		return NULL;
	}
	return cfg;
}

/* Serving has begun: the ready line, systemd's READY=1, the config watch and the watchdog. */
static void
announce_ready(const struct cfg *cfg)
{
	char qc[600], qd[600], status[160];

	/* One write per loop round for all the lines it logged (the last hook of a round). */
	log_set_batching(true);
	loop_hook_add(on_loop_round, NULL);
	if (!http_bound_loopback() && cfg->nkeys == 0)
		log_warn("main", "msg=\"listening beyond loopback without apiKeys: anyone who can reach "
		    "%s can use every model and management route\"", http_bound());
	api_set_listener(http_bound(), !http_bound_loopback() && cfg->nkeys == 0);
	log_info("main", "msg=ready version=%s listen=%s config=%s%s%s files=%zu models=%zu",
	    MM_VERSION, http_bound(), M.config_path ? log_q(qc, sizeof(qc), M.config_path) : "-",
	    M.config_dir ? " config_dir=" : "", M.config_dir ? log_q(qd, sizeof(qd), M.config_dir) : "",
	    strv_len(cfg->files), cfg->nmodels);
	snprintf(status, sizeof(status), "READY=1\nSTATUS=serving %zu models on %s",
	    cfg->nmodels, http_bound());
	notify_send(status);
	if (M.watch) {
		if (cfg_stamp(M.config_path, M.config_dir, &M.watched) == -1)
			M.watched = 0;
		M.watch_timer = loop_timer_add(WATCH_INTERVAL_MS, on_watch, NULL);
	}
	if ((M.watchdog_ms = notify_watchdog_ms()) > 0)
		M.watchdog_timer = loop_timer_add(M.watchdog_ms / 2, on_watchdog, NULL);
}

/* Everything the daemon started is let go, in the order the parts depend on each other. */
static void
stop_all(void)
{
	loop_timer_cancel(M.backstop);
	loop_timer_cancel(M.watchdog_timer);
	loop_timer_cancel(M.watch_timer);
	http_free();
	reap_remaining();
	sup_kill_leftovers();
	sched_free();
	peer_free();
	metrics_free();
	up_free_pool();
	fetch_free();
	loop_free();
	cfg_unref(M.cfg);
}

/* Serves cfg on listen_addr until the loop ends (a stop signal); returns the exit code. */
static int
serve(struct cfg *cfg, const char *listen_addr)
{
	enum log_level lvl;
	char          *err = NULL;

	if (cfg->log_level && log_parse_level(cfg->log_level, &lvl) == 0)
		log_set_level(lvl);
	log_set_format(cfg->log_json ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
	M.cfg = cfg;
	M.generation = 1;
	register_metrics(cfg);
	loop_init(handled_signals, on_signal, NULL);
	sup_init();
	fetch_init();
	sched_init(cfg, NULL);
	peer_sync(cfg);
	if (http_start(listen_addr ? listen_addr : cfg->listen, cfg, &err) == -1) {
		log_error("main", "msg=\"%s\"", err);
		free(err);
		sched_free();
		peer_free();
		metrics_free();
		fetch_free();
		loop_free();
		cfg_unref(cfg);
		return 1;
	}
	announce_ready(cfg);
	/* logToStdout applies from here: the start-up lines and the ready line are written. */
	log_flush();
	log_set_streams(cfg_compat_log_proxy(cfg), cfg_compat_log_upstream(cfg));
	sched_preload();
	log_flush(); /* the ready line must not wait for the first loop round */
	loop_run();
	stop_all();
	log_info("main", "msg=exited");
	log_free();
	return 0;
}

int
main(int argc, char **argv)
{
	const char *listen_addr = NULL;
	bool        test = false;
	struct cfg *cfg;
	sigset_t    set;
	int         rc;

	/* Signals are read from a signalfd in the loop; nothing runs in signal context. */
	sigemptyset(&set);
	for (const int *s = handled_signals; *s; s++)
		sigaddset(&set, *s);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	util_set_oom_handler(out_of_memory);

	/* A command of its own: writes an HAProxy config for several hosts (haproxy.h). */
	if (argc > 1 && strcmp(argv[1], "--haproxy-config") == 0)
		return haproxy_main(argc - 1, argv + 1);
	if ((rc = parse_args(argc, argv, &test, &listen_addr)) != -1)
		return rc;
	if ((cfg = load_config()) == NULL)
		return 1;
	if (test) {
		if (M.config_dir != NULL)
			for (char **f = cfg->files; *f != NULL; f++)
				printf("file: %s\n", *f);
		print_argv(cfg);
		printf("configuration OK\n");
		cfg_unref(cfg);
		return 0;
	}
	return serve(cfg, listen_addr);
}
