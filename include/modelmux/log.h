/* log: one event per line on stderr — time, level, module, req=<id>, then key=value pairs. */
#ifndef MODELMUX_LOG_H
#define MODELMUX_LOG_H

#include <stddef.h>

enum log_level {
	LOG_DEBUG = 0,
	LOG_INFO,
	LOG_WARN,
	LOG_ERROR,
};

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

#define log_debug(mod, ...) log_emit(LOG_DEBUG, mod, NULL, __VA_ARGS__)
#define log_info(mod, ...)  log_emit(LOG_INFO, mod, NULL, __VA_ARGS__)
#define log_warn(mod, ...)  log_emit(LOG_WARN, mod, NULL, __VA_ARGS__)
#define log_error(mod, ...) log_emit(LOG_ERROR, mod, NULL, __VA_ARGS__)

#endif
