/* modelmux: arguments, config test (-t), start, signals, exit codes. */
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "modelmux/api.h"
#include "modelmux/config.h"
#include "modelmux/fetch.h"
#include "modelmux/http.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/metrics.h"
#include "modelmux/notify.h"
#include "modelmux/sched.h"
#include "modelmux/supervisor.h"
#include "modelmux/util.h"

#define SHUTDOWN_GRACE_MS    30000 /* requests in flight may finish for this long */
#define SHUTDOWN_BACKSTOP_MS 90000 /* a stop that takes longer than this is cut short */

static const int handled_signals[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, 0 };

static struct {
	int      stopping; /* number of SIGTERM/SIGINT received */
	bool     sched_done;
	uint64_t backstop;
	uint64_t watchdog_ms;
	uint64_t watchdog_timer;
} M;

/* systemd's watchdog: ping at half the period the unit asked for, from the loop — so a stuck
 * loop is noticed. */
static void
on_watchdog(void *arg)
{
	(void)arg;
	notify_send("WATCHDOG=1");
	M.watchdog_timer = loop_timer_add(M.watchdog_ms / 2, on_watchdog, NULL);
}

static void
usage(FILE *f)
{
	fputs("usage: modelmux [-t] [-c FILE] [-l ADDR]\n"
	      "\n"
	      "A model-swapping reverse proxy for local inference servers.\n"
	      "\n"
	      "  -c, --config FILE   configuration file (default: config.yaml)\n"
	      "  -l, --listen ADDR   listen address, host:port or [v6]:port\n"
	      "                      (default: the config's listen:, else 127.0.0.1:8080)\n"
	      "  -t, --test          check the configuration, print each model's argv, and exit\n"
	      "  -h, --help          show this help\n"
	      "      --version       show the version\n"
	      "\n"
	      "Signals: TERM/INT stop every backend and exit; a second one exits at once.\n", f);
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
		log_warn("main", "msg=\"SIGHUP: configuration reload is not implemented yet\"");
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

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "test", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char     *config = "config.yaml", *listen_addr = NULL;
	bool            test = false;
	struct cfg_errs errs = { 0 };
	struct cfg     *cfg;
	sigset_t        set;
	char           *err = NULL;
	enum log_level  lvl;
	int             ch;

	/* Signals are read from a signalfd in the loop; nothing runs in signal context. */
	sigemptyset(&set);
	for (const int *s = handled_signals; *s; s++)
		sigaddset(&set, *s);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	while ((ch = getopt_long(argc, argv, "c:l:th", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case 'l': listen_addr = optarg; break;
		case 't': test = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("modelmux %s\n", MM_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "modelmux: unexpected argument: %s\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	if ((cfg = cfg_load(config, &errs)) == NULL) {
		print_errs(&errs, "");
		fprintf(stderr, "modelmux: %s: configuration has %zu error%s\n", config, errs.n,
		    errs.n == 1 ? "" : "s");
		cfg_errs_free(&errs);
		return 1;
	}
	print_errs(&cfg->warnings, "warning: ");
	if (test) {
		print_argv(cfg);
		printf("configuration OK\n");
		cfg_unref(cfg);
		return 0;
	}
	if (cfg->log_level && log_parse_level(cfg->log_level, &lvl) == 0)
		log_set_level(lvl);
	if (listen_addr == NULL)
		listen_addr = cfg->listen;

	{
		char **ids = xcalloc(cfg->nmodels + 1, sizeof(*ids));

		for (size_t i = 0; i < cfg->nmodels; i++)
			ids[i] = cfg->models[i].id;
		metrics_init(ids, cfg->nmodels);
		free(ids);
	}
	loop_init(handled_signals, on_signal, NULL);
	sup_init();
	fetch_init();
	sched_init(cfg, NULL);
	if (http_start(listen_addr, cfg, &err) == -1) {
		log_error("main", "msg=\"%s\"", err);
		free(err);
		sched_free();
		fetch_free();
		loop_free();
		cfg_unref(cfg);
		return 1;
	}
	if (!http_bound_loopback() && cfg->nkeys == 0)
		log_warn("main", "msg=\"listening beyond loopback without apiKeys: anyone who can reach "
		    "%s can use every model and management route\"", http_bound());
	api_set_listener(http_bound(), !http_bound_loopback() && cfg->nkeys == 0);
	log_info("main", "msg=ready version=%s listen=%s config=%s models=%zu", MM_VERSION,
	    http_bound(), config, cfg->nmodels);
	{
		char status[160];

		snprintf(status, sizeof(status), "READY=1\nSTATUS=serving %zu models on %s",
		    cfg->nmodels, http_bound());
		notify_send(status);
	}
	if ((M.watchdog_ms = notify_watchdog_ms()) > 0)
		M.watchdog_timer = loop_timer_add(M.watchdog_ms / 2, on_watchdog, NULL);
	sched_preload();
	loop_run();

	loop_timer_cancel(M.backstop);
	loop_timer_cancel(M.watchdog_timer);
	http_free();
	reap_remaining();
	sched_free();
	metrics_free();
	fetch_free();
	loop_free();
	cfg_unref(cfg);
	log_info("main", "msg=exited");
	return 0;
}
