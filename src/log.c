/* log: one event per line on stderr. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "modelmux/log.h"
#include "modelmux/util.h"

static enum log_level log_level = LOG_INFO;
static enum log_format log_format = LOG_FORMAT_TEXT;
static bool            write_daemon = true; /* logToStdout: the daemon's own info/debug lines */
static bool            write_models = true; /* logToStdout: the models' output ("backend") */

void
log_set_streams(bool daemon_lines, bool model_lines)
{
	write_daemon = daemon_lines;
	write_models = model_lines;
}

void
log_set_format(enum log_format f)
{
	log_format = f;
}

/* Appends to a bounded output; the caller leaves room for the closing bytes. */
struct jout {
	char  *p;
	size_t n, o;
};

static void
jput(struct jout *j, const char *s, size_t len)
{
	size_t k = MM_MIN(len, j->n > j->o + 3 ? j->n - j->o - 3 : 0);

	memcpy(j->p + j->o, s, k);
	j->o += k;
}

static void
jchar(struct jout *j, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	char              e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

	if (c == '"' || c == '\\') {
		char q[2] = { '\\', (char)c };

		jput(j, q, 2);
	} else if (c < 0x20) {
		jput(j, e, 6);
	} else {
		jput(j, (const char *)&c, 1);
	}
}

/* A JSON string from raw bytes, or from a log_q()-quoted value when `quoted`. */
static void
jstr(struct jout *j, const char *s, size_t len, bool quoted)
{
	jput(j, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (quoted && c == '\\' && i + 1 < len) {
			char nx = s[++i];

			if (nx == 'n')
				c = '\n';
			else if (nx == 't')
				c = '\t';
			else if (nx == 'x' && i + 2 < len) {
				unsigned v = 0;

				for (int k = 1; k <= 2; k++) {
					char h = s[i + (size_t)k];

					v = v * 16 + (unsigned)(h >= 'a' ? h - 'a' + 10 : h >= 'A' ? h - 'A' + 10 : h - '0');
				}
				i += 2;
				c = (unsigned char)v;
			} else {
				c = (unsigned char)nx;
			}
		}
		jchar(j, c);
	}
	jput(j, "\"", 1);
}

size_t
log_text_to_json(const char *line, size_t len, char *out, size_t n)
{
	static const char *const names[] = { "time", "level", "module" };
	struct jout j = { out, n, 0 };
	const char *p = line, *end = line + len;

	if (n < 4) {
		if (n)
			out[0] = '\0';
		return 0;
	}
	jput(&j, "{", 1);
	for (size_t f = 0; f < MM_ARRAY_LEN(names) && p < end; f++) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		size_t      k = sp ? (size_t)(sp - p) : (size_t)(end - p);

		if (f > 0)
			jput(&j, ",", 1);
		jstr(&j, names[f], strlen(names[f]), false);
		jput(&j, ":", 1);
		jstr(&j, p, k, false);
		p += k + (sp ? 1 : 0);
	}
	while (p < end) {
		const char *k0, *eq;
		size_t      kl;

		while (p < end && *p == ' ')
			p++;
		k0 = p;
		while (p < end && *p != '=' && *p != ' ')
			p++;
		if (p >= end || *p != '=') {
			/* Not key=value: the rest is the message. */
			jput(&j, ",\"text\":", 8);
			jstr(&j, k0, (size_t)(end - k0), false);
			break;
		}
		eq = p;
		kl = (size_t)(eq - k0);
		p++;
		jput(&j, ",", 1);
		jstr(&j, k0, kl, false);
		jput(&j, ":", 1);
		if (p < end && *p == '"') {
			const char *v = ++p;

			while (p < end && *p != '"')
				p += *p == '\\' && p + 1 < end ? 2 : 1;
			jstr(&j, v, (size_t)(MM_MIN(p, end) - v), true);
			if (p < end)
				p++;
		} else {
			const char *v = p;

			while (p < end && *p != ' ')
				p++;
			jstr(&j, v, (size_t)(p - v), false);
		}
	}
	out[j.o++] = '}';
	out[j.o] = '\0';
	return j.o;
}

/* Lines are gathered and written once per loop round (log_flush), not one write each. */
static struct {
	char   data[LOG_BATCH_BYTES];
	size_t len;
	bool   batching;
	bool   urgent; /* the batch holds a line other than an access line */
} B;

void
log_set_batching(bool on)
{
	log_flush();
	B.batching = on;
}

void
log_flush(void)
{
	size_t off = 0;

	while (off < B.len) {
		ssize_t w = write(STDERR_FILENO, B.data + off, B.len - off);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			break; /* stderr gone or full: drop rather than block the loop forever */
		off += (size_t)w;
	}
	B.len = 0;
	B.urgent = false;
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	log_flush();
	fputs("modelmux: fatal: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

void
log_flush_urgent(void)
{
	if (B.urgent)
		log_flush();
}

static void
log_write(const char *p, size_t n)
{
	if (!B.batching) {
		fwrite(p, 1, n, stderr);
		return;
	}
	if (B.len + n > sizeof(B.data))
		log_flush();
	memcpy(B.data + B.len, p, n);
	B.len += n;
}

struct log_sub {
	struct log_sub  *next;
	enum log_channel ch;
	log_sub_cb       cb;
	void            *arg;
	bool             dead;
};

static struct {
	struct lring    ring; /* LOG_RING_BYTES, allocated with the first line */
	struct log_sub *subs;
	int             publishing; /* nesting depth: unsubscribe while delivering is deferred */
} R;

static void
ring_put(const char *p, size_t n)
{
	if (R.ring.buf == NULL) {
		R.ring.buf = xmalloc(LOG_RING_BYTES);
		R.ring.cap = LOG_RING_BYTES;
	}
	lring_put(&R.ring, p, n);
}

static void
publish(enum log_channel ch, const char *line, size_t len)
{
	R.publishing++;
	for (struct log_sub *s = R.subs; s; s = s->next)
		if (s->ch == ch && !s->dead)
			s->cb(s->arg, line, len);
	if (--R.publishing == 0) {
		for (struct log_sub **ps = &R.subs; *ps;) {
			struct log_sub *s = *ps;

			if (s->dead) {
				*ps = s->next;
				free(s);
			} else {
				ps = &s->next;
			}
		}
	}
}

struct log_sub *
log_subscribe(enum log_channel ch, log_sub_cb cb, void *arg)
{
	struct log_sub *s = xcalloc(1, sizeof(*s));

	s->ch = ch;
	s->cb = cb;
	s->arg = arg;
	s->next = R.subs;
	R.subs = s;
	return s;
}

void
log_unsubscribe(struct log_sub *s)
{
	if (s == NULL)
		return;
	s->dead = true;
	if (R.publishing > 0)
		return; /* freed when the delivery in progress ends */
	for (struct log_sub **ps = &R.subs; *ps; ps = &(*ps)->next) {
		if (*ps == s) {
			*ps = s->next;
			free(s);
			return;
		}
	}
}

void
log_event(const char *json)
{
	publish(LOG_CH_EVENTS, json, strlen(json));
}

bool
log_line_about(const char *line, size_t len, const char *model)
{
	size_t ml = strlen(model);

	for (const char *p = line; (p = memmem(p, len - (size_t)(p - line), "model=", 6)) != NULL; p += 6) {
		const char *v = p + 6;
		size_t      left = len - (size_t)(v - line);

		if (left >= ml && memcmp(v, model, ml) == 0 && (left == ml || v[ml] == ' '))
			return true;
		if (left >= ml + 2 && v[0] == '"' && memcmp(v + 1, model, ml) == 0 && v[ml + 1] == '"')
			return true;
	}
	return false;
}

void
log_history(struct buf *out, const char *model)
{
	size_t at = 0, k;
	char   line[4096];

	while ((k = lring_next(&R.ring, &at, line, sizeof(line))) != LRING_END)
		if (model == NULL || log_line_about(line, k, model))
			if (buf_append(out, line, k, SIZE_MAX / 2) == -1 || buf_append(out, "\n", 1, SIZE_MAX / 2) == -1)
				return;
}

void
log_free(void)
{
	log_flush();
	B.batching = false;
	while (R.subs) {
		struct log_sub *s = R.subs;

		R.subs = s->next;
		free(s);
	}
	free(R.ring.buf);
	memset(&R, 0, sizeof(R));
}
static const char *const level_names[] = { "debug", "info", "warn", "error" };

void
log_set_level(enum log_level lvl)
{
	log_level = lvl;
}

enum log_level
log_get_level(void)
{
	return log_level;
}

int
log_parse_level(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < MM_ARRAY_LEN(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void
log_emit(enum log_level lvl, const char *mod, const char *req, const char *fmt, ...)
{
	static time_t   ts_sec;
	static char     ts_text[32];
	char            line[4096], ts[32];
	struct timespec now;
	struct tm       tm;
	va_list         ap;
	int             n, m;

	if (lvl < log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	/* The date part changes once a second; lines come by the thousand. */
	if (now.tv_sec != ts_sec || ts_text[0] == '\0') {
		gmtime_r(&now.tv_sec, &tm);
		strftime(ts_text, sizeof(ts_text), "%Y-%m-%dT%H:%M:%S", &tm);
		ts_sec = now.tv_sec;
	}
	memcpy(ts, ts_text, sizeof(ts));
	n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s ", ts, now.tv_nsec / 1000000L,
	    level_names[lvl], mod);
	if (req != NULL)
		n += snprintf(line + n, sizeof(line) - (size_t)n, "req=%s ", req);
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n = (size_t)n + (size_t)m >= sizeof(line) - 1 ? (int)sizeof(line) - 2 : n + m;
	/* One event stays one line whatever the caller formatted. */
	for (int i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';
	/* logToStdout left out: kept for /logs and the feeds, not written. */
	if (strcmp(mod, "backend") == 0 ? !write_models : !write_daemon && lvl < LOG_WARN)
		goto kept;
	if (log_format == LOG_FORMAT_JSON) {
		char   js[sizeof(line) * 2];
		size_t jl = log_text_to_json(line, (size_t)n - 1, js, sizeof(js) - 1);

		js[jl++] = '\n';
		log_write(js, jl);
	} else {
		log_write(line, (size_t)n);
	}
	if (strcmp(mod, "access") != 0)
		B.urgent = true;
kept:
	ring_put(line, (size_t)n);
	if (R.subs != NULL)
		publish(LOG_CH_LINES, line, (size_t)n - 1);
}

const char *
log_qn(char *buf, size_t n, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (n < 8) {
		if (n)
			buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char          esc[5];
		size_t        k = 0;

		if (c == '"' || c == '\\') {
			esc[k++] = '\\';
			esc[k++] = (char)c;
		} else if (c == '\n') {
			esc[k++] = '\\';
			esc[k++] = 'n';
		} else if (c == '\t') {
			esc[k++] = '\\';
			esc[k++] = 't';
		} else if (c < 0x20 || c == 0x7f) {
			esc[k++] = '\\';
			esc[k++] = 'x';
			esc[k++] = hex[c >> 4];
			esc[k++] = hex[c & 15];
		} else {
			esc[k++] = (char)c;
		}
		if (o + k + 5 > n) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(buf + o, esc, k);
		o += k;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

const char *
log_q(char *buf, size_t n, const char *s)
{
	return log_qn(buf, n, s ? s : "", s ? strlen(s) : 0);
}
