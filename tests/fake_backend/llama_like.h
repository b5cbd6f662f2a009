/* The fake's llama-like mode: a small blocking HTTP/1.1 server that behaves on the wire as
 * llama-server (cpp-httplib) does, for the tests and the bench. */
#ifndef FAKE_LLAMA_LIKE_H
#define FAKE_LLAMA_LIKE_H

struct llama_opts {
	const char *host;
	int         port;
	const char *model;
	const char *reply;        /* words of the answer, space-separated */
	long long   delay_ms;     /* generation time of one answer */
	long long   health_delay; /* /health says 503 "Loading model" this long */
	int         threads;      /* HTTP worker threads (llama-server's --threads-http) */
	int         keepalive_s;  /* an idle kept-alive connection holds its thread this long */
	int         slots;        /* answers generated at once (/props total_slots) */
};

/* Serves until SIGTERM (then aborts, signal 6, as llama-server builds do) or SIGINT (exit 0).
 * SIGTERM and SIGINT must be blocked in the caller. Returns an exit code on a set-up error. */
int llama_like_run(const struct llama_opts *o);

#endif
