/* log: one event per line on stderr — time, level, module, req=<id>, then key=value pairs. */
#ifndef MODELMUX_LOG_H
#define MODELMUX_LOG_H

#include <stdbool.h>
#include <stddef.h>

struct buf;

enum log_level {
	LOG_DEBUG = 0,
	LOG_INFO,
	LOG_WARN,
	LOG_ERROR,
};

enum log_format {
	LOG_FORMAT_TEXT = 0, /* time level module key=value … */
	LOG_FORMAT_JSON,     /* one JSON object per line, the same fields */
};

/* How lines are written to stderr (/logs and the live feeds stay text). */
void log_set_format(enum log_format f);
/* llama-swap's logToStdout: whether the daemon's own lines below warn, and the models' output
 * lines (module "backend"), are written; lines not written still reach /logs and the feeds.
 * Both true at start. */
void log_set_streams(bool daemon_lines, bool model_lines);
/* Rewrites one text line (without its '\n') as a JSON object: time, level, module, then each
 * key=value (quoted values unescaped). Returns the length written to out (NUL-terminated,
 * truncated to fit n). */
size_t log_text_to_json(const char *line, size_t len, char *out, size_t n);

/* Sets the lowest level written. */
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parses "debug", "info", "warn", "error"; -1 if unknown. */
int  log_parse_level(const char *s, enum log_level *out);

/* Writes one line: `<time> <level> <module> [req=<req>] <formatted text>`.
 * The formatted text must already be key=value pairs; untrusted values go through log_q(). */
void log_emit(enum log_level lvl, const char *mod, const char *req, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Quotes and escapes untrusted text for a log value into buf (always NUL-terminated,
 * truncated with "..." past n). Returns buf. */
const char *log_q(char *buf, size_t n, const char *s);
/* Same for a byte range that need not be NUL-terminated. */
const char *log_qn(char *buf, size_t n, const char *s, size_t len);

#define LOG_RING_BYTES (1u << 20) /* recent log lines kept for /logs */
#define LOG_BATCH_BYTES (64u << 10) /* lines gathered before one write to stderr */

/* With batching on, lines are written by log_flush (once per loop round) or when the batch
 * fills; off (the default) writes each line at once. */
void log_set_batching(bool on);
void log_flush(void);
/* Writes the pending batch, then "modelmux: fatal: <message>", and aborts: only at start-up or
 * for a broken invariant. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Writes the batch only if it holds a line that must reach stderr before the next answer goes
 * out: any line but an access line, which is logged once its answer has gone. */
void log_flush_urgent(void);

/* Live feeds: the log lines, and state-change events (one JSON object per line). */
enum log_channel {
	LOG_CH_LINES = 0,
	LOG_CH_EVENTS,
};

struct log_sub;
/* Called for every new line on the channel (without its '\n'); must not log. */
typedef void (*log_sub_cb)(void *arg, const char *line, size_t len);

/* Subscribes to a channel until log_unsubscribe. Returns the subscription (owned by log). */
struct log_sub *log_subscribe(enum log_channel ch, log_sub_cb cb, void *arg);
void log_unsubscribe(struct log_sub *s);
/* Publishes one event line (JSON) to LOG_CH_EVENTS subscribers. */
void log_event(const char *json);
/* Appends the recent lines (oldest first) to out; with `model`, only lines about it. */
void log_history(struct buf *out, const char *model);
/* Is this line about `model` (it carries model=<model>)? */
bool log_line_about(const char *line, size_t len, const char *model);
/* Frees the ring and subscriptions (at exit). */
void log_free(void);

#define log_debug(mod, ...) log_emit(LOG_DEBUG, mod, NULL, __VA_ARGS__)
#define log_info(mod, ...)  log_emit(LOG_INFO, mod, NULL, __VA_ARGS__)
#define log_warn(mod, ...)  log_emit(LOG_WARN, mod, NULL, __VA_ARGS__)
#define log_error(mod, ...) log_emit(LOG_ERROR, mod, NULL, __VA_ARGS__)

#endif
