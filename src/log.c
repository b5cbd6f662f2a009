/* log: one event per line on stderr. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "modelmux/log.h"
#include "modelmux/util.h"

static enum log_level log_level = LOG_INFO;

/* Lines are gathered and written once per loop round (log_flush), not one write each. */
static struct {
	char   data[LOG_BATCH_BYTES];
	size_t len;
	bool   batching;
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
	char           *ring;       /* LOG_RING_BYTES circular, holding whole lines */
	size_t          head, used; /* next write position, bytes held */
	struct log_sub *subs;
	int             publishing; /* nesting depth: unsubscribe while delivering is deferred */
} R;

static void
ring_put(const char *p, size_t n)
{
	if (n > LOG_RING_BYTES)
		return;
	if (R.ring == NULL)
		R.ring = xmalloc(LOG_RING_BYTES);
	/* Make room by dropping whole lines from the oldest end. */
	while (R.used + n > LOG_RING_BYTES) {
		size_t tail = (R.head + LOG_RING_BYTES - R.used) % LOG_RING_BYTES, k = 0;

		while (k < R.used && R.ring[(tail + k) % LOG_RING_BYTES] != '\n')
			k++;
		R.used -= MM_MIN(k + 1, R.used);
	}
	for (size_t i = 0; i < n; i++)
		R.ring[(R.head + i) % LOG_RING_BYTES] = p[i];
	R.head = (R.head + n) % LOG_RING_BYTES;
	R.used += n;
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
	size_t start = (R.head + LOG_RING_BYTES - R.used) % LOG_RING_BYTES, i = 0;
	char   line[4096];

	while (i < R.used) {
		size_t k = 0;

		while (i + k < R.used && R.ring[(start + i + k) % LOG_RING_BYTES] != '\n')
			k++;
		if (k < sizeof(line)) {
			for (size_t j = 0; j < k; j++)
				line[j] = R.ring[(start + i + j) % LOG_RING_BYTES];
			if (model == NULL || log_line_about(line, k, model))
				if (buf_append(out, line, k, SIZE_MAX / 2) == -1 || buf_append(out, "\n", 1, SIZE_MAX / 2) == -1)
					return;
		}
		i += k + 1;
	}
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
	free(R.ring);
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
	char            line[4096], ts[32];
	struct timespec now;
	struct tm       tm;
	va_list         ap;
	int             n, m;

	if (lvl < log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
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
	log_write(line, (size_t)n);
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
