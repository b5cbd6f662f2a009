/*
 * mm-fake-backend: the demo model of modelmux and the scripted fake backend
 * of its integration tests.  It answers like llama-server / the OpenAI API,
 * and every behaviour a test needs (slow start, crash, hang, slow stream,
 * request log) is chosen on the command line.  See usage() below.
 *
 * This is a test tool: it uses MHD's thread-per-connection mode and may
 * sleep in a connection thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <openssl/evp.h>

#include "llama_like.h"

#define FAKE_MAX_JSON_BODY	(1024 * 1024)	/* JSON bodies kept for parsing */
#define FAKE_BYTES_CHUNK	(64 * 1024)
#define FAKE_SPEECH_LEN		1024
#define FAKE_MP_MAX_DELIM	200
#define FAKE_MP_MAX_HEADER	4096
#define FAKE_MP_MAX_MODEL	256
#define FAKE_LOG_LINE		2048

extern char **environ;

struct options {
	long long	 port;
	const char	*host;
	const char	*model;
	long long	 health_delay;
	bool		 never_healthy;
	bool		 health_hang;
	long long	 listen_delay;
	long long	 exit_at_start;		/* -1: no */
	long long	 crash_after_chunks;	/* -1: no */
	long long	 exit_after;		/* -1: no */
	long long	 chunks;
	long long	 chunk_delay;
	long long	 delay;
	const char	*reply;
	bool		 ignore_term;
	const char	*start_log;
	const char	*request_log;
	long long	 stderr_lines;
	long long	 size_bytes;
	long long	 exit_while_starting;	/* -1: no */
	const char	*malformed;		/* NULL, "head" or "chunk" */
	bool		 fork_grandchild;
	bool		 ansi;			/* say a line in ANSI colours when ready */
};

static struct options opt = {
	.port = -1, .host = "127.0.0.1", .model = "demo",
	.exit_at_start = -1, .crash_after_chunks = -1, .exit_after = -1,
	.exit_while_starting = -1,
	.chunks = 5, .reply = "Hello from the modelmux demo backend.",
	.size_bytes = 1024 * 1024,
};

static atomic_bool	 stopping;
static int64_t		 start_ms;
static char		**words;
static size_t		 nwords;
static char		 speech[FAKE_SPEECH_LEN];

enum body_kind { BODY_DIGEST = 0, BODY_JSON };
enum mp_state { MP_DATA = 0, MP_AFTER_DELIM, MP_HEADERS, MP_END };
enum mp_part { PART_NONE = 0, PART_FILE, PART_MODEL, PART_OTHER };
enum stream_kind { ST_CHAT = 0, ST_TEXT, ST_NATIVE, ST_BYTES,
	/* Typed SSE ("event: <type>" then data with that "type"), no [DONE]: */
	ST_RESPONSES,	/* OpenAI Responses: response.output_text.delta … response.completed */
	ST_MESSAGES,	/* Anthropic: content_block_delta … message_stop */
	ST_SPEECH,	/* OpenAI speech, stream_format sse: speech.audio.delta … done */
	ST_IMAGES,	/* OpenAI images: image_generation.partial_image … completed */
};

/* A streaming multipart/form-data scanner: digests the part named "file"
 * and keeps the value of the part named "model". */
struct mp {
	char		 delim[FAKE_MP_MAX_DELIM + 8];	/* "\r\n--" boundary */
	size_t		 dlen, m;			/* delim length, matched */
	enum mp_state	 state;
	size_t		 after;				/* bytes after delim */
	char		 prev_after;
	char		 hdr[FAKE_MP_MAX_HEADER + 1];
	size_t		 hlen;
	uint32_t	 window;			/* last 4 header bytes */
	enum mp_part	 part;
	EVP_MD_CTX	*file_md;
	uint64_t	 file_len;
	bool		 have_file;
	char		 model[FAKE_MP_MAX_MODEL + 1];
	size_t		 model_len;
	bool		 have_model;
};

struct req;
typedef enum MHD_Result (*handler_cb)(struct req *, struct MHD_Connection *);

struct route {
	const char	*method;	/* NULL: GET or POST */
	const char	*path;
	handler_cb	 handler;
	enum body_kind	 body;
};

struct req {
	char			*uri;		/* raw, with query string */
	const char		*query;		/* inside uri */
	char			*method;
	char			*path;
	const struct route	*route;
	cJSON			*headers;
	EVP_MD_CTX		*md;
	uint64_t		 body_len;
	char			*body;
	size_t			 body_used, body_cap;
	bool			 too_large;
	struct mp		*mp;
	char			 digest[65];
	cJSON			*json;
	char			*model;		/* "model" field received */
	bool			 init;
};

struct stream {
	enum stream_kind	 kind;
	char			*model;
	long			 created;
	long long		 n, sent;
	int			 phase;		/* 0 chunks, 1 final, 2 done, 3 end */
	long long		 prompt_tokens;
	uint64_t		 remaining;
	char			*buf;
	size_t			 len, off;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms milliseconds (forever if ms < 0); false if told to stop. */
static bool
nap(long long ms)
{
	int64_t end = now_ms() + (ms < 0 ? 0 : ms);

	while (!atomic_load(&stopping)) {
		int64_t left = end - now_ms();
		struct timespec ts;

		if (ms >= 0 && left <= 0)
			return true;
		if (ms < 0 || left > 50)
			left = 50;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)left * 1000000L;
		nanosleep(&ts, NULL);
	}
	return false;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line to stderr in one write, so threads never mix lines. */
static void
say(const char *fmt, ...)
{
	char line[FAKE_LOG_LINE];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	for (int i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) == -1)
		return;
}

static void
append_line(const char *file, const char *text)
{
	size_t len = strlen(text);
	char *line = malloc(len + 2);
	int fd;

	if (line == NULL)
		return;
	memcpy(line, text, len);
	line[len++] = '\n';
	fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd != -1) {
		if (write(fd, line, len) == -1)
			say("fake: cannot write %s: %s", file, strerror(errno));
		close(fd);
	}
	free(line);
}

static void
append_json(const char *file, cJSON *obj)
{
	char *text = cJSON_PrintUnformatted(obj);

	if (text != NULL)
		append_line(file, text);
	free(text);
}

static void
digest_hex(EVP_MD_CTX *md, char out[65])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	out[0] = '\0';
	if (md == NULL || EVP_DigestFinal_ex(md, d, &n) != 1)
		return;
	for (unsigned int i = 0; i < n && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---- multipart scanner ------------------------------------------------ */

static struct mp *
mp_new(const char *content_type)
{
	const char *b = strcasestr(content_type, "boundary=");
	struct mp *mp;
	size_t blen;

	if (b == NULL)
		return NULL;
	b += strlen("boundary=");
	if (*b == '"') {
		b++;
		blen = strcspn(b, "\"");
	} else
		blen = strcspn(b, "; \t");
	if (blen == 0 || blen > FAKE_MP_MAX_DELIM)
		return NULL;
	if ((mp = calloc(1, sizeof(*mp))) == NULL)
		return NULL;
	memcpy(mp->delim, "\r\n--", 4);
	memcpy(mp->delim + 4, b, blen);
	mp->dlen = blen + 4;
	mp->m = 2;		/* the body starts as if after a CRLF */
	mp->state = MP_DATA;
	mp->file_md = EVP_MD_CTX_new();
	if (mp->file_md == NULL ||
	    EVP_DigestInit_ex(mp->file_md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(mp->file_md);
		free(mp);
		return NULL;
	}
	return mp;
}

static void
mp_free(struct mp *mp)
{
	if (mp == NULL)
		return;
	EVP_MD_CTX_free(mp->file_md);
	free(mp);
}

static void
mp_part_data(struct mp *mp, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (mp->part == PART_FILE) {
		EVP_DigestUpdate(mp->file_md, p, n);
		mp->file_len += n;
	} else if (mp->part == PART_MODEL) {
		size_t room = FAKE_MP_MAX_MODEL - mp->model_len;

		if (n > room)
			n = room;
		memcpy(mp->model + mp->model_len, p, n);
		mp->model_len += n;
		mp->model[mp->model_len] = '\0';
	}
}

static void
mp_headers_done(struct mp *mp)
{
	const char *p = mp->hdr;
	char name[64];
	size_t len;

	mp->hdr[mp->hlen] = '\0';
	mp->part = PART_OTHER;
	/* find name="..." but not filename="..." */
	while ((p = strcasestr(p, "name=")) != NULL) {
		if (p == mp->hdr || p[-1] == ' ' || p[-1] == ';' ||
		    p[-1] == '\t')
			break;
		p += 5;
	}
	if (p == NULL)
		return;
	p += 5;
	if (*p == '"') {
		p++;
		len = strcspn(p, "\"");
	} else
		len = strcspn(p, "; \t\r\n");
	if (len >= sizeof(name))
		return;
	memcpy(name, p, len);
	name[len] = '\0';
	if (strcmp(name, "file") == 0) {
		mp->part = PART_FILE;
		mp->have_file = true;
	} else if (strcmp(name, "model") == 0) {
		mp->part = PART_MODEL;
		mp->have_model = true;
		mp->model_len = 0;
		mp->model[0] = '\0';
	}
}

static void
mp_feed(struct mp *mp, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		char c = p[i];

		switch (mp->state) {
		case MP_DATA:
			if (mp->m == 0) {
				const char *cr = memchr(p + i, '\r', n - i);
				size_t run = cr ? (size_t)(cr - (p + i)) : n - i;

				mp_part_data(mp, p + i, run);
				i += run;
				if (cr != NULL) {
					mp->m = 1;
					i++;
				}
			} else if (c == mp->delim[mp->m]) {
				i++;
				if (++mp->m == mp->dlen) {
					mp->m = 0;
					mp->state = MP_AFTER_DELIM;
					mp->after = 0;
					mp->part = PART_NONE;
				}
			} else {
				/* '\r' is only at delim[0]: no other match
				 * can start inside the matched prefix. */
				mp_part_data(mp, mp->delim, mp->m);
				mp->m = 0;
			}
			break;
		case MP_AFTER_DELIM:
			i++;
			if (++mp->after == 2 && mp->prev_after == '-' &&
			    c == '-') {
				mp->state = MP_END;
			} else if (c == '\n') {
				mp->state = MP_HEADERS;
				mp->hlen = 0;
				mp->window = ('\r' << 8) | '\n';
			}
			mp->prev_after = c;
			break;
		case MP_HEADERS:
			i++;
			if (mp->hlen < FAKE_MP_MAX_HEADER)
				mp->hdr[mp->hlen++] = c;
			mp->window = (mp->window << 8) | (unsigned char)c;
			if (mp->window == 0x0d0a0d0a) {
				mp_headers_done(mp);
				mp->state = MP_DATA;
				mp->m = 0;
			}
			break;
		case MP_END:
			return;
		}
	}
}

/* ---- requests ---------------------------------------------------------- */

static void
req_free(struct req *r)
{
	if (r == NULL)
		return;
	free(r->uri);
	free(r->method);
	free(r->path);
	cJSON_Delete(r->headers);
	EVP_MD_CTX_free(r->md);
	free(r->body);
	mp_free(r->mp);
	cJSON_Delete(r->json);
	free(r->model);
	free(r);
}

static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct req *r = calloc(1, sizeof(*r));

	(void)cls;
	(void)c;
	if (r == NULL)
		return NULL;
	if ((r->uri = strdup(uri ? uri : "")) == NULL) {
		free(r);
		return NULL;
	}
	r->query = strchr(r->uri, '?');
	r->query = r->query ? r->query + 1 : "";
	return r;
}

static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	cJSON *headers = cls;
	cJSON *old;
	char *name;

	(void)kind;
	if (key == NULL || (name = strdup(key)) == NULL)
		return MHD_YES;
	for (char *p = name; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (value == NULL)
		value = "";
	old = cJSON_GetObjectItemCaseSensitive(headers, name);
	if (cJSON_IsString(old)) {
		size_t len = strlen(old->valuestring) + strlen(value) + 3;
		char *joined = malloc(len);

		if (joined != NULL) {
			snprintf(joined, len, "%s, %s", old->valuestring, value);
			cJSON_ReplaceItemInObjectCaseSensitive(headers, name,
			    cJSON_CreateString(joined));
			free(joined);
		}
	} else
		cJSON_AddStringToObject(headers, name, value);
	free(name);
	return MHD_YES;
}

static void
on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct req *r = *con_cls;

	(void)cls;
	(void)c;
	if (r == NULL)
		return;
	if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->init) {
		say("fake: cancelled %s %s (code %d)", r->method, r->path,
		    (int)toe);
		if (opt.request_log != NULL) {
			cJSON *o = cJSON_CreateObject();

			cJSON_AddStringToObject(o, "event", "cancelled");
			cJSON_AddStringToObject(o, "path", r->path);
			cJSON_AddNumberToObject(o, "code", (double)toe);
			append_json(opt.request_log, o);
			cJSON_Delete(o);
		}
	}
	req_free(r);
	*con_cls = NULL;
}

static void
req_feed(struct req *r, const char *data, size_t size)
{
	EVP_DigestUpdate(r->md, data, size);
	r->body_len += size;
	if (r->mp != NULL) {
		mp_feed(r->mp, data, size);
		return;
	}
	if (r->route == NULL || r->route->body != BODY_JSON || r->too_large)
		return;
	if (r->body_used + size > FAKE_MAX_JSON_BODY) {
		r->too_large = true;
		free(r->body);
		r->body = NULL;
		r->body_used = r->body_cap = 0;
		return;
	}
	if (r->body_used + size + 1 > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 4096;
		char *nb;

		while (cap < r->body_used + size + 1)
			cap *= 2;
		if ((nb = realloc(r->body, cap)) == NULL) {
			r->too_large = true;
			return;
		}
		r->body = nb;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_used, data, size);
	r->body_used += size;
	r->body[r->body_used] = '\0';
}

/* ---- responses --------------------------------------------------------- */

static enum MHD_Result
respond_text(struct MHD_Connection *c, unsigned int status, char *text,
    const char *type)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (text == NULL)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(text), text,
	    MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", type);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Sends obj and frees it. */
static enum MHD_Result
respond_json(struct MHD_Connection *c, unsigned int status, cJSON *obj)
{
	char *text = cJSON_PrintUnformatted(obj);

	cJSON_Delete(obj);
	return respond_text(c, status, text, "application/json");
}

static enum MHD_Result
respond_error(struct MHD_Connection *c, unsigned int status, const char *msg,
    const char *type)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *e = cJSON_AddObjectToObject(o, "error");

	cJSON_AddStringToObject(e, "message", msg);
	cJSON_AddStringToObject(e, "type", type);
	cJSON_AddNumberToObject(e, "code", status);
	return respond_json(c, status, o);
}

static const char *
model_of(struct req *r)
{
	return r->model ? r->model : opt.model;
}

static long long
prompt_tokens(struct req *r)
{
	return (long long)(r->body_len / 4) + 1;
}

static cJSON *
make_echo(struct req *r)
{
	cJSON *e = cJSON_CreateObject();

	if (r->model != NULL)
		cJSON_AddStringToObject(e, "model", r->model);
	else
		cJSON_AddNullToObject(e, "model");
	cJSON_AddStringToObject(e, "method", r->method);
	cJSON_AddStringToObject(e, "path", r->path);
	cJSON_AddStringToObject(e, "query", r->query);
	cJSON_AddNumberToObject(e, "body_len", (double)r->body_len);
	cJSON_AddStringToObject(e, "body_sha256", r->digest);
	cJSON_AddItemToObject(e, "headers", cJSON_Duplicate(r->headers, 1));
	/* X-Echo-Body: the JSON body as it arrived (to see a proxy's rewrites). */
	if (r->json != NULL &&
	    cJSON_GetObjectItemCaseSensitive(r->headers, "x-echo-body") != NULL)
		cJSON_AddItemToObject(e, "body", cJSON_Duplicate(r->json, 1));
	if (r->mp != NULL) {
		char hex[65];

		digest_hex(r->mp->file_md, hex);
		if (r->mp->have_file)
			cJSON_AddStringToObject(e, "file_sha256", hex);
		else
			cJSON_AddNullToObject(e, "file_sha256");
		cJSON_AddNumberToObject(e, "file_len",
		    (double)r->mp->file_len);
	}
	return e;
}

static cJSON *
make_usage(long long prompt, long long completion)
{
	cJSON *u = cJSON_CreateObject();

	cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt);
	cJSON_AddNumberToObject(u, "completion_tokens", (double)completion);
	cJSON_AddNumberToObject(u, "total_tokens", (double)(prompt + completion));
	return u;
}

/* The text of chunk i: reply words cycled, separated by spaces. */
static void
word_at(long long i, char *out, size_t size)
{
	const char *w = nwords ? words[i % (long long)nwords] : "";

	snprintf(out, size, "%s%s", i > 0 ? " " : "", w);
}

/* ---- streaming --------------------------------------------------------- */

static void
stream_free(void *cls)
{
	struct stream *s = cls;

	free(s->model);
	free(s->buf);
	free(s);
}

static cJSON *
stream_base(struct stream *s)
{
	cJSON *o = cJSON_CreateObject();

	if (s->kind == ST_NATIVE)
		return o;
	cJSON_AddStringToObject(o, "id",
	    s->kind == ST_CHAT ? "chatcmpl-fake" : "cmpl-fake");
	cJSON_AddStringToObject(o, "object", s->kind == ST_CHAT ?
	    "chat.completion.chunk" : "text_completion");
	cJSON_AddNumberToObject(o, "created", (double)s->created);
	cJSON_AddStringToObject(o, "model", s->model);
	return o;
}

static bool
typed_stream(enum stream_kind k)
{
	return k == ST_RESPONSES || k == ST_MESSAGES || k == ST_SPEECH ||
	    k == ST_IMAGES;
}

/* One event of a typed stream; its "type" is also its SSE event name. */
static cJSON *
typed_event(struct stream *s, bool final, const char *text)
{
	cJSON *o = cJSON_CreateObject(), *u;
	static const char png[] = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAA"
	    "DUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

	switch (s->kind) {
	case ST_RESPONSES:
		cJSON_AddStringToObject(o, "type", final ?
		    "response.completed" : "response.output_text.delta");
		if (!final)
			cJSON_AddStringToObject(o, "delta", text);
		else {
			cJSON *rsp = cJSON_AddObjectToObject(o, "response");

			cJSON_AddStringToObject(rsp, "status", "completed");
			cJSON_AddStringToObject(rsp, "model", s->model);
			u = cJSON_AddObjectToObject(rsp, "usage");
			cJSON_AddNumberToObject(u, "input_tokens",
			    (double)s->prompt_tokens);
			cJSON_AddNumberToObject(u, "output_tokens", (double)s->n);
		}
		break;
	case ST_MESSAGES:
		cJSON_AddStringToObject(o, "type", final ? "message_stop" :
		    "content_block_delta");
		if (!final) {
			cJSON *d = cJSON_AddObjectToObject(o, "delta");

			cJSON_AddNumberToObject(o, "index", 0);
			cJSON_AddStringToObject(d, "type", "text_delta");
			cJSON_AddStringToObject(d, "text", text);
		}
		break;
	case ST_SPEECH:
		cJSON_AddStringToObject(o, "type", final ? "speech.audio.done" :
		    "speech.audio.delta");
		if (!final)
			cJSON_AddStringToObject(o, "audio", "SUQzBAAAAAAA");
		break;
	default:
		cJSON_AddStringToObject(o, "type", final ?
		    "image_generation.completed" :
		    "image_generation.partial_image");
		cJSON_AddStringToObject(o, "b64_json", png);
		if (!final)
			cJSON_AddNumberToObject(o, "partial_image_index",
			    (double)s->sent);
		break;
	}
	return o;
}

/* Builds one SSE event: chunk number s->sent, or the final one. */
static cJSON *
stream_event(struct stream *s, bool final)
{
	cJSON *o, *choices, *c0;
	char text[512];

	text[0] = '\0';
	if (!final)
		word_at(s->sent, text, sizeof(text));
	if (typed_stream(s->kind))
		return typed_event(s, final, text);
	o = stream_base(s);
	if (s->kind == ST_NATIVE) {
		cJSON_AddStringToObject(o, "content", text);
		cJSON_AddBoolToObject(o, "stop", final);
		cJSON_AddNumberToObject(o, "index", 0);
		if (final) {
			cJSON_AddStringToObject(o, "model", s->model);
			cJSON_AddNumberToObject(o, "tokens_predicted",
			    (double)s->n);
			cJSON_AddNumberToObject(o, "tokens_evaluated",
			    (double)s->prompt_tokens);
		}
		return o;
	}
	choices = cJSON_AddArrayToObject(o, "choices");
	c0 = cJSON_CreateObject();
	cJSON_AddItemToArray(choices, c0);
	cJSON_AddNumberToObject(c0, "index", 0);
	if (s->kind == ST_CHAT) {
		cJSON *delta = cJSON_AddObjectToObject(c0, "delta");

		if (!final && s->sent == 0)
			cJSON_AddStringToObject(delta, "role", "assistant");
		if (!final)
			cJSON_AddStringToObject(delta, "content", text);
	} else {
		cJSON_AddStringToObject(c0, "text", text);
		cJSON_AddNullToObject(c0, "logprobs");
	}
	if (final) {
		cJSON_AddStringToObject(c0, "finish_reason", "stop");
		cJSON_AddItemToObject(o, "usage",
		    make_usage(s->prompt_tokens, s->n));
	} else
		cJSON_AddNullToObject(c0, "finish_reason");
	return o;
}

static int
stream_set(struct stream *s, const char *prefix, const char *text,
    const char *suffix)
{
	size_t len = strlen(prefix) + strlen(text) + strlen(suffix) + 1;
	char *b = malloc(len);

	if (b == NULL)
		return -1;
	snprintf(b, len, "%s%s%s", prefix, text, suffix);
	free(s->buf);
	s->buf = b;
	s->len = len - 1;
	s->off = 0;
	return 0;
}

/* Produces the next piece of the stream in s->buf; -1 at the end. */
static int
stream_next(struct stream *s)
{
	cJSON *ev;
	char *text;
	int ret;

	if (s->kind == ST_BYTES) {
		if (s->remaining == 0)
			return -1;
		if (s->sent > 0 && !nap(opt.chunk_delay))
			return -1;
		s->len = s->remaining < FAKE_BYTES_CHUNK ?
		    (size_t)s->remaining : FAKE_BYTES_CHUNK;
		s->off = 0;
		s->remaining -= s->len;
		s->sent++;
		return 0;
	}
	if (s->phase == 0 && s->sent >= s->n)
		s->phase = 1;
	if (s->phase == 0) {
		if (opt.crash_after_chunks >= 0 &&
		    s->sent >= opt.crash_after_chunks) {
			say("fake: crashing after %lld chunks", s->sent);
			_exit(3);
		}
		if (s->sent > 0 && !nap(opt.chunk_delay))
			return -1;
	} else if (s->phase == 2) {
		s->phase = 3;
		return s->kind == ST_NATIVE || typed_stream(s->kind) ? -1 :
		    stream_set(s, "", "data: [DONE]\n\n", "");
	} else if (s->phase == 3)
		return -1;
	ev = stream_event(s, s->phase == 1);
	text = cJSON_PrintUnformatted(ev);
	cJSON_Delete(ev);
	if (text == NULL)
		return -1;
	if (typed_stream(s->kind)) {
		char prefix[128];
		cJSON *t = cJSON_Parse(text);
		const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");

		snprintf(prefix, sizeof(prefix), "event: %s\ndata: ",
		    cJSON_IsString(ty) ? ty->valuestring : "message");
		cJSON_Delete(t);
		ret = stream_set(s, prefix, text, "\n\n");
	} else
		ret = stream_set(s, "data: ", text, "\n\n");
	free(text);
	if (s->phase == 1)
		s->phase = 2;
	else
		s->sent++;
	return ret;
}

static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *s = cls;
	size_t n;

	(void)pos;
	if (s->off == s->len && stream_next(s) == -1)
		return MHD_CONTENT_READER_END_OF_STREAM;
	n = s->len - s->off;
	if (n > max)
		n = max;
	if (s->kind == ST_BYTES)
		memset(buf, 'x', n);
	else
		memcpy(buf, s->buf + s->off, n);
	s->off += n;
	return (ssize_t)n;
}

static enum MHD_Result
respond_stream(struct req *r, struct MHD_Connection *c, enum stream_kind kind)
{
	struct stream *s = calloc(1, sizeof(*s));
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (s == NULL || (s->model = strdup(model_of(r))) == NULL) {
		free(s);
		return MHD_NO;
	}
	s->kind = kind;
	s->created = (long)time(NULL);
	s->n = opt.chunks;
	s->prompt_tokens = prompt_tokens(r);
	s->remaining = (uint64_t)opt.size_bytes;
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024,
	    stream_read, s, stream_free);
	if (resp == NULL) {
		stream_free(s);
		return MHD_NO;
	}
	if (kind == ST_BYTES)
		MHD_add_response_header(resp, "Content-Type",
		    "application/octet-stream");
	else {
		MHD_add_response_header(resp, "Content-Type",
		    "text/event-stream");
		MHD_add_response_header(resp, "Cache-Control", "no-cache");
	}
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

static bool
wants_stream(struct req *r)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->json,
	    "stream"));
}

/* ---- handlers ---------------------------------------------------------- */

static enum MHD_Result
h_health(struct req *r, struct MHD_Connection *c)
{
	cJSON *o = cJSON_CreateObject();

	(void)r;
	if (opt.health_hang) {
		cJSON_Delete(o);
		nap(-1);
		return MHD_NO;
	}
	if (opt.never_healthy || now_ms() < start_ms + opt.health_delay) {
		cJSON_AddStringToObject(o, "error", "loading");
		return respond_json(c, MHD_HTTP_SERVICE_UNAVAILABLE, o);
	}
	cJSON_AddStringToObject(o, "status", "ok");
	return respond_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result
h_models(struct req *r, struct MHD_Connection *c)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *data = cJSON_AddArrayToObject(o, "data");
	cJSON *m = cJSON_CreateObject();

	(void)r;
	cJSON_AddStringToObject(o, "object", "list");
	cJSON_AddStringToObject(m, "id", opt.model);
	cJSON_AddStringToObject(m, "object", "model");
	cJSON_AddStringToObject(m, "owned_by", "modelmux-fake");
	cJSON_AddItemToArray(data, m);
	return respond_json(c, MHD_HTTP_OK, o);
}

static cJSON *
base_object(struct req *r, const char *id, const char *object)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddStringToObject(o, "object", object);
	cJSON_AddNumberToObject(o, "created", (double)time(NULL));
	cJSON_AddStringToObject(o, "model", model_of(r));
	return o;
}

static enum MHD_Result
h_chat(struct req *r, struct MHD_Connection *c)
{
	cJSON *o, *c0, *msg;
	const cJSON *delay = cJSON_GetObjectItemCaseSensitive(r->json,
	    "fake_delay_ms");

	/* A per-request "fake_delay_ms" (at most 10 s): a slow answer from a
	 * backend whose command line a test cannot change. */
	if (cJSON_IsNumber(delay) && delay->valuedouble > 0 &&
	    !nap(delay->valuedouble > 10000 ? 10000 : (long long)delay->valuedouble))
		return MHD_NO;
	if (wants_stream(r))
		return respond_stream(r, c, ST_CHAT);
	o = base_object(r, "chatcmpl-fake", "chat.completion");
	c0 = cJSON_CreateObject();
	cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), c0);
	cJSON_AddNumberToObject(c0, "index", 0);
	msg = cJSON_AddObjectToObject(c0, "message");
	cJSON_AddStringToObject(msg, "role", "assistant");
	cJSON_AddStringToObject(msg, "content", opt.reply);
	cJSON_AddStringToObject(c0, "finish_reason", "stop");
	cJSON_AddItemToObject(o, "usage",
	    make_usage(prompt_tokens(r), (long long)nwords));
	cJSON_AddItemToObject(o, "echo", make_echo(r));
	return respond_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result
h_completions(struct req *r, struct MHD_Connection *c)
{
	cJSON *o, *c0;

	if (wants_stream(r))
		return respond_stream(r, c, ST_TEXT);
	o = base_object(r, "cmpl-fake", "text_completion");
	c0 = cJSON_CreateObject();
	cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), c0);
	cJSON_AddNumberToObject(c0, "index", 0);
	cJSON_AddStringToObject(c0, "text", opt.reply);
	cJSON_AddNullToObject(c0, "logprobs");
	cJSON_AddStringToObject(c0, "finish_reason", "stop");
	cJSON_AddItemToObject(o, "usage",
	    make_usage(prompt_tokens(r), (long long)nwords));
	cJSON_AddItemToObject(o, "echo", make_echo(r));
	return respond_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result
h_native(struct req *r, struct MHD_Connection *c)
{
	cJSON *o;

	if (wants_stream(r))
		return respond_stream(r, c, ST_NATIVE);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "content", opt.reply);
	cJSON_AddBoolToObject(o, "stop", true);
	cJSON_AddStringToObject(o, "model", model_of(r));
	cJSON_AddNumberToObject(o, "tokens_predicted", (double)nwords);
	cJSON_AddNumberToObject(o, "tokens_evaluated",
	    (double)prompt_tokens(r));
	cJSON_AddItemToObject(o, "echo", make_echo(r));
	return respond_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result
h_embeddings(struct req *r, struct MHD_Connection *c)
{
	cJSON *input = cJSON_GetObjectItemCaseSensitive(r->json, "input");
	cJSON *o = cJSON_CreateObject(), *data;
	int n = cJSON_IsArray(input) ? cJSON_GetArraySize(input) : 1;

	cJSON_AddStringToObject(o, "object", "list");
	cJSON_AddStringToObject(o, "model", model_of(r));
	data = cJSON_AddArrayToObject(o, "data");
	for (int i = 0; i < n; i++) {
		const double v[] = { 0.1, 0.2, 0.3 };
		cJSON *e = cJSON_CreateObject();

		cJSON_AddStringToObject(e, "object", "embedding");
		cJSON_AddNumberToObject(e, "index", i);
		cJSON_AddItemToObject(e, "embedding",
		    cJSON_CreateDoubleArray(v, 3));
		cJSON_AddItemToArray(data, e);
	}
	cJSON_AddItemToObject(o, "usage", make_usage(prompt_tokens(r), 0));
	cJSON_AddItemToObject(o, "echo", make_echo(r));
	return respond_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result
h_audio_text(struct req *r, struct MHD_Connection *c)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "text", opt.reply);
	cJSON_AddItemToObject(o, "echo", make_echo(r));
	return respond_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result
h_rerank(struct req *r, struct MHD_Connection *c)
{
	cJSON *docs = cJSON_GetObjectItemCaseSensitive(r->json, "documents");
	cJSON *o = cJSON_CreateObject(), *results;
	int n = cJSON_IsArray(docs) ? cJSON_GetArraySize(docs) : 1;

	cJSON_AddStringToObject(o, "model", model_of(r));
	results = cJSON_AddArrayToObject(o, "results");
	for (int i = 0; i < (n > 0 ? n : 1); i++) {
		cJSON *e = cJSON_CreateObject();

		cJSON_AddNumberToObject(e, "index", i);
		cJSON_AddNumberToObject(e, "relevance_score", 0.9 / (i + 1));
		cJSON_AddItemToArray(results, e);
	}
	cJSON_AddItemToObject(o, "echo", make_echo(r));
	return respond_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result
h_responses(struct req *r, struct MHD_Connection *c)
{
	cJSON *o;

	if (wants_stream(r))
		return respond_stream(r, c, ST_RESPONSES);
	o = base_object(r, "resp-fake", "response");
	cJSON *m = cJSON_CreateObject(), *part = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "status", "completed");
	cJSON_AddStringToObject(m, "type", "message");
	cJSON_AddStringToObject(m, "role", "assistant");
	cJSON_AddStringToObject(part, "type", "output_text");
	cJSON_AddStringToObject(part, "text", opt.reply);
	cJSON_AddItemToArray(cJSON_AddArrayToObject(m, "content"), part);
	cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "output"), m);
	cJSON_AddStringToObject(o, "output_text", opt.reply);
	cJSON_AddItemToObject(o, "echo", make_echo(r));
	return respond_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result
h_messages(struct req *r, struct MHD_Connection *c)
{
	cJSON *o, *part, *u;

	if (wants_stream(r))
		return respond_stream(r, c, ST_MESSAGES);
	o = cJSON_CreateObject();
	part = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "id", "msg_fake");
	cJSON_AddStringToObject(o, "type", "message");
	cJSON_AddStringToObject(o, "role", "assistant");
	cJSON_AddStringToObject(o, "model", model_of(r));
	cJSON_AddStringToObject(part, "type", "text");
	cJSON_AddStringToObject(part, "text", opt.reply);
	cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "content"), part);
	cJSON_AddStringToObject(o, "stop_reason", "end_turn");
	u = cJSON_AddObjectToObject(o, "usage");
	cJSON_AddNumberToObject(u, "input_tokens", (double)prompt_tokens(r));
	cJSON_AddNumberToObject(u, "output_tokens", (double)nwords);
	cJSON_AddItemToObject(o, "echo", make_echo(r));
	return respond_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result
h_count_tokens(struct req *r, struct MHD_Connection *c)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "input_tokens", (double)prompt_tokens(r));
	cJSON_AddItemToObject(o, "echo", make_echo(r));
	return respond_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result
h_speech(struct req *r, struct MHD_Connection *c)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(r->json,
	    "stream_format");

	if (cJSON_IsString(fmt) && strcmp(fmt->valuestring, "sse") == 0)
		return respond_stream(r, c, ST_SPEECH);
	resp = MHD_create_response_from_buffer(sizeof(speech), speech,
	    MHD_RESPMEM_PERSISTENT);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "audio/mpeg");
	MHD_add_response_header(resp, "X-Fake-Body-Sha256", r->digest);
	MHD_add_response_header(resp, "X-Fake-Model", model_of(r));
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
h_images(struct req *r, struct MHD_Connection *c)
{
	cJSON *o, *img;

	if (wants_stream(r))
		return respond_stream(r, c, ST_IMAGES);
	o = cJSON_CreateObject();
	img = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "created", (double)time(NULL));
	/* a 1x1 transparent PNG */
	cJSON_AddStringToObject(img, "b64_json", "iVBORw0KGgoAAAANSUhEUgAAAAEAA"
	    "AABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==");
	cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "data"), img);
	cJSON_AddItemToObject(o, "echo", make_echo(r));
	return respond_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result
h_voices(struct req *r, struct MHD_Connection *c)
{
	const char *v[] = { "alloy", "echo", "nova" };
	cJSON *o = cJSON_CreateObject();

	cJSON_AddItemToObject(o, "voices", cJSON_CreateStringArray(v, 3));
	cJSON_AddItemToObject(o, "echo", make_echo(r));
	return respond_json(c, MHD_HTTP_OK, o);
}

/* --llama-like: port -1 until main fills it in (see llama_like.c); its /props says
 * total_slots = --parallel or --slots. The plain fake's /props says it only with --slots, so
 * a test can give --parallel (llama-server's flag, in argv) and no total_slots. */
static struct llama_opts llama = { .port = 0, .threads = 3, .keepalive_s = 5, .slots = 1 };
static bool slots_given;

static enum MHD_Result
h_props(struct req *r, struct MHD_Connection *c)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *g = cJSON_AddObjectToObject(o, "default_generation_settings");

	cJSON_AddNumberToObject(g, "n_ctx", 4096);
	cJSON_AddStringToObject(o, "model_path", opt.model);
	if (slots_given)
		cJSON_AddNumberToObject(o, "total_slots", llama.slots);
	cJSON_AddItemToObject(o, "echo", make_echo(r));
	return respond_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result
h_bytes(struct req *r, struct MHD_Connection *c)
{
	return respond_stream(r, c, ST_BYTES);
}

static enum MHD_Result
h_echo(struct req *r, struct MHD_Connection *c)
{
	return respond_json(c, MHD_HTTP_OK, make_echo(r));
}

static enum MHD_Result
h_env(struct req *r, struct MHD_Connection *c)
{
	cJSON *o = cJSON_CreateObject();

	(void)r;
	for (char **e = environ; e != NULL && *e != NULL; e++) {
		const char *eq = strchr(*e, '=');
		char *name;

		if (eq == NULL || (name = strndup(*e, (size_t)(eq - *e))) == NULL)
			continue;
		cJSON_AddStringToObject(o, name, eq + 1);
		free(name);
	}
	return respond_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result
h_pid(struct req *r, struct MHD_Connection *c)
{
	cJSON *o = cJSON_CreateObject();

	(void)r;
	cJSON_AddNumberToObject(o, "pid", (double)getpid());
	return respond_json(c, MHD_HTTP_OK, o);
}

/* ---- WebSocket echo (RFC 6455, just enough) ------------------------------ */

#define FAKE_WS_MAX_PAYLOAD (16u << 20)
#define FAKE_WS_MAX_OPEN    256

/* Open sockets, shut down at exit so their threads end and MHD can stop. */
static pthread_mutex_t ws_lock = PTHREAD_MUTEX_INITIALIZER;
static int ws_open[FAKE_WS_MAX_OPEN];
static size_t ws_nopen;

static bool
ws_track(int fd, bool add)
{
	bool ok = true;

	pthread_mutex_lock(&ws_lock);
	if (add && ws_nopen < FAKE_WS_MAX_OPEN) {
		ws_open[ws_nopen++] = fd;
	} else if (add) {
		ok = false;
	} else {
		for (size_t i = 0; i < ws_nopen; i++)
			if (ws_open[i] == fd)
				ws_open[i] = ws_open[--ws_nopen];
	}
	pthread_mutex_unlock(&ws_lock);
	return ok;
}

static void
ws_shutdown_all(void)
{
	pthread_mutex_lock(&ws_lock);
	for (size_t i = 0; i < ws_nopen; i++)
		shutdown(ws_open[i], SHUT_RDWR);
	pthread_mutex_unlock(&ws_lock);
}

/* Reads from the bytes MHD read past the request head first, then from the socket. */
struct ws_in {
	int		 fd;
	const char	*extra;
	size_t		 left;
};

static bool
ws_read(struct ws_in *w, void *p, size_t n)
{
	size_t got = 0;

	if (w->left > 0) {
		got = n < w->left ? n : w->left;
		memcpy(p, w->extra, got);
		w->extra += got;
		w->left -= got;
	}
	while (got < n) {
		ssize_t k = read(w->fd, (char *)p + got, n - got);

		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		got += (size_t)k;
	}
	return true;
}

static bool
write_all(int fd, const void *p, size_t n)
{
	for (size_t off = 0; off < n; ) {
		ssize_t k = send(fd, (const char *)p + off, n - off, MSG_NOSIGNAL);

		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		off += (size_t)k;
	}
	return true;
}

static bool
ws_send(int fd, unsigned op, const unsigned char *p, size_t n)
{
	unsigned char h[10];
	size_t hl = 2;

	h[0] = (unsigned char)(0x80 | op);
	if (n < 126) {
		h[1] = (unsigned char)n;
	} else if (n < 65536) {
		h[1] = 126;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		hl = 4;
	} else {
		h[1] = 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
		hl = 10;
	}
	return write_all(fd, (const char *)h, hl) && (n == 0 || write_all(fd, (const char *)p, n));
}

/* Echoes every data frame; answers ping with pong and close with close. The text "close-me"
 * makes the server close first; "bye" makes it drop the connection without a close frame. */
static void
ws_echo(void *cls, struct MHD_Connection *c, void *con_cls, const char *extra,
    size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	struct ws_in in = { sock, extra, extra_len };
	int fl = fcntl(sock, F_GETFL);
	unsigned long frames = 0;

	(void)cls;
	(void)c;
	(void)con_cls;
	if (fl != -1)
		(void)fcntl(sock, F_SETFL, fl & ~O_NONBLOCK);
	say("fake: websocket open");
	if (!ws_track(sock, true)) {
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		return;
	}
	for (;;) {
		unsigned char h[2], ext[8], mask[4], *pl;
		uint64_t n;
		unsigned op;

		if (!ws_read(&in, h, 2))
			break;
		op = h[0] & 0x0f;
		n = h[1] & 0x7f;
		if (n == 126) {
			if (!ws_read(&in, ext, 2))
				break;
			n = (uint64_t)ext[0] << 8 | ext[1];
		} else if (n == 127) {
			if (!ws_read(&in, ext, 8))
				break;
			n = 0;
			for (int i = 0; i < 8; i++)
				n = n << 8 | ext[i];
		}
		if (n > FAKE_WS_MAX_PAYLOAD || !(h[1] & 0x80) || !ws_read(&in, mask, 4))
			break;
		if ((pl = malloc(n + 1)) == NULL || (n > 0 && !ws_read(&in, pl, n))) {
			free(pl);
			break;
		}
		for (uint64_t i = 0; i < n; i++)
			pl[i] ^= mask[i % 4];
		pl[n] = '\0';
		frames++;
		if (op == 8) {
			ws_send(sock, 8, pl, n);
			free(pl);
			say("fake: websocket closed by the client frames=%lu", frames);
			break;
		}
		if (op == 9) {
			ws_send(sock, 10, pl, n);
		} else if (op == 1 && n == 8 && memcmp(pl, "close-me", 8) == 0) {
			static const unsigned char bye[] = { 0x03, 0xe8, 'b', 'y', 'e' };

			ws_send(sock, 8, bye, sizeof(bye));
		} else if (op == 1 && n == 3 && memcmp(pl, "bye", 3) == 0) {
			free(pl);
			say("fake: websocket dropped");
			break;
		} else if (op <= 2) {
			ws_send(sock, op, pl, n);
		}
		free(pl);
	}
	ws_track(sock, false);
	MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

static enum MHD_Result
h_ws(struct req *r, struct MHD_Connection *c)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Key");
	const char *up = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Upgrade");
	const char *proto = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    "Sec-WebSocket-Protocol");
	unsigned char md[EVP_MAX_MD_SIZE], accept[64];
	unsigned int mdlen = 0;
	char cat[256];
	struct MHD_Response *resp;
	enum MHD_Result ret;

	(void)r;
	if (key == NULL || up == NULL || strcasecmp(up, "websocket") != 0 ||
	    strlen(key) > 100)
		return respond_error(c, MHD_HTTP_BAD_REQUEST, "not a websocket upgrade",
		    "invalid_request_error");
	snprintf(cat, sizeof(cat), "%s%s", key, guid);
	EVP_Digest(cat, strlen(cat), md, &mdlen, EVP_sha1(), NULL);
	EVP_EncodeBlock(accept, md, (int)mdlen);
	resp = MHD_create_response_for_upgrade(ws_echo, NULL);
	MHD_add_response_header(resp, "Upgrade", "websocket");
	MHD_add_response_header(resp, "Sec-WebSocket-Accept", (const char *)accept);
	/* A CORS header here must not reach a browser through modelmux. */
	MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
	if (proto != NULL) {
		char first[64];

		snprintf(first, sizeof(first), "%.*s", (int)strcspn(proto, ", "), proto);
		MHD_add_response_header(resp, "Sec-WebSocket-Protocol", first);
	}
	ret = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
	MHD_destroy_response(resp);
	return ret;
}

static const struct route routes[] = {
	{ "GET",  "/health",			h_health,	BODY_DIGEST },
	{ "GET",  "/v1/models",			h_models,	BODY_DIGEST },
	{ "POST", "/v1/chat/completions",	h_chat,		BODY_JSON },
	{ "POST", "/v1/completions",		h_completions,	BODY_JSON },
	{ "POST", "/completion",		h_native,	BODY_JSON },
	{ "POST", "/infill",			h_native,	BODY_JSON },
	{ "POST", "/v1/embeddings",		h_embeddings,	BODY_JSON },
	{ "POST", "/v1/audio/transcriptions",	h_audio_text,	BODY_JSON },
	{ "POST", "/v1/audio/translations",	h_audio_text,	BODY_JSON },
	{ "POST", "/v1/rerank",			h_rerank,	BODY_JSON },
	{ "POST", "/rerank",			h_rerank,	BODY_JSON },
	{ "POST", "/v1/reranking",		h_rerank,	BODY_JSON },
	{ "POST", "/reranking",			h_rerank,	BODY_JSON },
	{ "POST", "/v1/responses",		h_responses,	BODY_JSON },
	{ "POST", "/v1/messages",		h_messages,	BODY_JSON },
	{ "POST", "/v1/messages/count_tokens",	h_count_tokens,	BODY_JSON },
	{ "POST", "/v1/audio/speech",		h_speech,	BODY_JSON },
	{ "POST", "/v1/images/generations",	h_images,	BODY_JSON },
	{ "POST", "/v1/images/edits",		h_images,	BODY_JSON },
	{ "GET",  "/v1/audio/voices",		h_voices,	BODY_DIGEST },
	{ "POST", "/v1/audio/voices",		h_voices,	BODY_JSON },
	{ "GET",  "/props",			h_props,	BODY_DIGEST },
	{ "GET",  "/bytes",			h_bytes,	BODY_DIGEST },
	{ NULL,   "/echo",			h_echo,		BODY_DIGEST },
	{ "GET",  "/env",			h_env,		BODY_DIGEST },
	{ "GET",  "/pid",			h_pid,		BODY_DIGEST },
	{ "GET",  "/ws",			h_ws,		BODY_DIGEST },
};

static const struct route *
route_find(const char *method, const char *path)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *rt = &routes[i];

		if (strcmp(rt->path, path) != 0)
			continue;
		if (rt->method == NULL || strcmp(rt->method, method) == 0)
			return rt;
	}
	return NULL;
}

static int
req_init(struct req *r, struct MHD_Connection *c, const char *method,
    const char *url)
{
	const char *ct;

	r->init = true;
	if ((r->method = strdup(method)) == NULL ||
	    (r->path = strdup(url)) == NULL ||
	    (r->headers = cJSON_CreateObject()) == NULL ||
	    (r->md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) != 1)
		return -1;
	MHD_get_connection_values(c, MHD_HEADER_KIND, collect_header,
	    r->headers);
	r->route = route_find(method, url);
	ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	if (ct != NULL && strncasecmp(ct, "multipart/form-data", 19) == 0)
		r->mp = mp_new(ct);
	say("fake: %s %s", method, url);
	return 0;
}

/* The body is all in: parse it, find the model, log the request. */
static void
req_finish(struct req *r)
{
	digest_hex(r->md, r->digest);
	if (r->mp != NULL && r->mp->have_model)
		r->model = strdup(r->mp->model);
	if (r->body_used > 0) {
		cJSON *model;

		r->json = cJSON_ParseWithLength(r->body, r->body_used);
		model = cJSON_GetObjectItemCaseSensitive(r->json, "model");
		if (cJSON_IsString(model))
			r->model = strdup(model->valuestring);
	}
	if (opt.request_log != NULL) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "method", r->method);
		cJSON_AddStringToObject(o, "path", r->path);
		cJSON_AddStringToObject(o, "query", r->query);
		cJSON_AddItemToObject(o, "headers",
		    cJSON_Duplicate(r->headers, 1));
		cJSON_AddStringToObject(o, "body_sha256", r->digest);
		cJSON_AddNumberToObject(o, "body_len", (double)r->body_len);
		if (r->model != NULL)
			cJSON_AddStringToObject(o, "model", r->model);
		else
			cJSON_AddNullToObject(o, "model");
		append_json(opt.request_log, o);
		cJSON_Delete(o);
	}
}

/*
 * --malformed: bytes that are not HTTP, written straight to the socket
 * (MHD cannot be made to send them), then the connection is dropped.
 * "head": a broken status line; "chunk": a good head and first SSE chunk,
 * then a chunk size that is not hexadecimal.
 */
static enum MHD_Result
answer_malformed(struct MHD_Connection *c)
{
	static const char head[] =
	    "HTTP/1.1 2OO OK\r\nContent-Lngth\x01: ??\r\n\r\nnot http at all";
	static const char chunk[] =
	    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n"
	    "1a\r\ndata: {\"choices\":[]}\n\n\r\n"
	    "zz-not-a-size\r\ngarbage\r\n";
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c,
	    MHD_CONNECTION_INFO_CONNECTION_FD);
	const char *what = strcmp(opt.malformed, "chunk") == 0 ? chunk : head;
	size_t len = strlen(what), off = 0;

	say("fake: answering malformed HTTP (%s)", opt.malformed);
	while (ci != NULL && off < len) {
		ssize_t n = write(ci->connect_fd, what + off, len - off);

		if (n == -1 && (errno == EINTR || errno == EAGAIN)) {
			nap(1);
			continue;
		}
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	return MHD_NO;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct req *r = *con_cls;

	(void)cls;
	(void)version;
	if (r == NULL)
		return MHD_NO;
	if (!r->init)
		return req_init(r, c, method, url) == -1 ? MHD_NO : MHD_YES;
	if (*upload_data_size > 0) {
		req_feed(r, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	req_finish(r);
	if (r->route == NULL)
		return respond_error(c, MHD_HTTP_NOT_FOUND, "not found",
		    "not_found_error");
	if (r->route->body == BODY_JSON && r->mp == NULL) {
		if (r->too_large)
			return respond_error(c, 413,
			    "request body too large", "invalid_request_error");
		if (r->body_used > 0 && r->json == NULL)
			return respond_error(c, MHD_HTTP_BAD_REQUEST,
			    "invalid JSON body", "invalid_request_error");
	}
	if (strcmp(method, "POST") == 0 && r->route->handler != h_echo &&
	    opt.delay > 0 && !nap(opt.delay))
		return MHD_NO;
	if (opt.malformed != NULL && r->route->handler != h_health)
		return answer_malformed(c);
	return r->route->handler(r, c);
}

/* ---- start-up ---------------------------------------------------------- */

static void
usage(void)
{
	fprintf(stderr,
	    "usage: mm-fake-backend --port N [--host ADDR] [--model NAME]\n"
	    "  [--health-delay MS] [--never-healthy] [--health-hang]\n"
	    "  [--listen-delay MS] [--exit-at-start CODE]\n"
	    "  [--crash-after-chunks N] [--exit-after MS] [--chunks N]\n"
	    "  [--chunk-delay MS] [--delay MS] [--reply TEXT] [--ignore-term]\n"
	    "  [--start-log FILE] [--request-log FILE] [--stderr-lines N]\n"
	    "  [--size-bytes N] [--exit-while-starting MS]\n"
	    "  [--malformed head|chunk] [--fork-setsid-grandchild] [--ansi]\n"
	    "  [--llama-like [--threads N] [--keepalive S] [--parallel|--slots N]]\n");
	exit(2);
}

static long long
parse_num(const char *s, const char *name, long long min, long long max)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "fake: bad value for --%s: %s\n", name, s);
		exit(2);
	}
	return v;
}

/*
 * Run as "llama-server" (a link of that name): takes llama-server's command
 * lines as llama-swap's documented examples write them.  --port and -m/--model
 * are used (the model's file name becomes its name); every other option is
 * taken and ignored, with its value when the next word is not an option.
 */
static bool
parse_llama_server_args(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');

	base = base ? base + 1 : argv[0];
	if (strcmp(base, "llama-server") != 0)
		return false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strncmp(a, "--port=", 7) == 0)
			opt.port = parse_num(a + 7, "port", 0, 65535);
		else if (strcmp(a, "--port") == 0 && v != NULL)
			opt.port = parse_num(argv[++i], "port", 0, 65535);
		else if ((strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) &&
		    v != NULL)
			opt.model = argv[++i];
		else if (a[0] == '-' && v != NULL && v[0] != '-')
			i++;
	}
	if (opt.port < 0)
		usage();
	return true;
}

static void
parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "port",		required_argument, NULL, 'p' },
		{ "host",		required_argument, NULL, 'H' },
		{ "model",		required_argument, NULL, 'm' },
		{ "health-delay",	required_argument, NULL, 1 },
		{ "never-healthy",	no_argument,	   NULL, 2 },
		{ "health-hang",	no_argument,	   NULL, 3 },
		{ "listen-delay",	required_argument, NULL, 4 },
		{ "exit-at-start",	required_argument, NULL, 5 },
		{ "crash-after-chunks",	required_argument, NULL, 6 },
		{ "exit-after",		required_argument, NULL, 7 },
		{ "chunks",		required_argument, NULL, 8 },
		{ "chunk-delay",	required_argument, NULL, 9 },
		{ "delay",		required_argument, NULL, 10 },
		{ "reply",		required_argument, NULL, 11 },
		{ "ignore-term",	no_argument,	   NULL, 12 },
		{ "start-log",		required_argument, NULL, 13 },
		{ "request-log",	required_argument, NULL, 14 },
		{ "stderr-lines",	required_argument, NULL, 15 },
		{ "size-bytes",		required_argument, NULL, 16 },
		{ "exit-while-starting", required_argument, NULL, 17 },
		{ "malformed",		required_argument, NULL, 18 },
		{ "fork-setsid-grandchild", no_argument,   NULL, 19 },
		{ "ansi",		no_argument,	   NULL, 20 },
		{ "llama-like",		no_argument,	   NULL, 40 },
		{ "threads",		required_argument, NULL, 41 },
		{ "keepalive",		required_argument, NULL, 42 },
		{ "parallel",		required_argument, NULL, 43 },
		{ "slots",		required_argument, NULL, 44 },
		{ "ctx-size",		required_argument, NULL, 45 },
		{ NULL, 0, NULL, 0 }
	};
	const long long ms_max = 24LL * 3600 * 1000;
	int ch, idx;

	while ((ch = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
		const char *name = ch == '?' ? "" : longopts[idx].name;

		switch (ch) {
		case 'p': opt.port = parse_num(optarg, name, 0, 65535); break;
		case 'H': opt.host = optarg; break;
		case 'm': opt.model = optarg; break;
		case 1: opt.health_delay = parse_num(optarg, name, 0, ms_max);
			break;
		case 2: opt.never_healthy = true; break;
		case 3: opt.health_hang = true; break;
		case 4: opt.listen_delay = parse_num(optarg, name, 0, ms_max);
			break;
		case 5: opt.exit_at_start = parse_num(optarg, name, 0, 255);
			break;
		case 6: opt.crash_after_chunks = parse_num(optarg, name, 0,
			    1000000); break;
		case 7: opt.exit_after = parse_num(optarg, name, 0, ms_max);
			break;
		case 8: opt.chunks = parse_num(optarg, name, 0, 1000000);
			break;
		case 9: opt.chunk_delay = parse_num(optarg, name, 0, ms_max);
			break;
		case 10: opt.delay = parse_num(optarg, name, 0, ms_max); break;
		case 11: opt.reply = optarg; break;
		case 12: opt.ignore_term = true; break;
		case 13: opt.start_log = optarg; break;
		case 14: opt.request_log = optarg; break;
		case 15: opt.stderr_lines = parse_num(optarg, name, 0, 1000000);
			break;
		case 16: opt.size_bytes = parse_num(optarg, name, 0,
			    INT64_MAX); break;
		case 17: opt.exit_while_starting = parse_num(optarg, name, 0,
			    ms_max); break;
		case 18:
			if (strcmp(optarg, "head") != 0 &&
			    strcmp(optarg, "chunk") != 0)
				usage();
			opt.malformed = optarg;
			break;
		case 19: opt.fork_grandchild = true; break;
		case 20: opt.ansi = true; break;
		case 40: llama.port = -1; break;
		case 41: llama.threads = (int)parse_num(optarg, name, 1, 64); break;
		case 42: llama.keepalive_s = (int)parse_num(optarg, name, 1, 3600); break;
		case 43: llama.slots = (int)parse_num(optarg, name, 1, 64); break;
		case 44: llama.slots = (int)parse_num(optarg, name, 1, 64);
			slots_given = true;
			break;
		case 45: /* llama-server's; only read by modelmux (context) */
			(void)parse_num(optarg, name, 1, 1 << 30);
			break;
		default: usage();
		}
	}
	if (optind != argc || opt.port < 0)
		usage();
}

static void
split_reply(void)
{
	char *copy = strdup(opt.reply), *save = NULL;

	if (copy == NULL || (words = calloc(strlen(opt.reply) / 2 + 2,
	    sizeof(*words))) == NULL) {
		fprintf(stderr, "fake: out of memory\n");
		exit(1);
	}
	for (char *w = strtok_r(copy, " ", &save); w != NULL;
	    w = strtok_r(NULL, " ", &save))
		words[nwords++] = w;
	if (nwords == 0)
		free(copy);
}

/* Waits up to ms for SIGTERM/SIGINT; true if one came. */
static bool
wait_signal(const sigset_t *set, long long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	int sig = sigtimedwait(set, NULL, &ts);

	return sig == SIGTERM || sig == SIGINT;
}

/*
 * --fork-setsid-grandchild: a process that leaves our process group and
 * session (as daemonising wrappers do) and lives until killed.  It keeps
 * the signal dispositions set so far (--ignore-term applies to it too).
 */
static void
fork_grandchild(void)
{
	pid_t pid = fork();

	if (pid == -1) {
		say("fake: fork: %s", strerror(errno));
		exit(1);
	}
	if (pid > 0)
		return;
	if (setsid() == -1) {
		say("fake: setsid: %s", strerror(errno));
		_exit(1);
	}
	say("fake: grandchild pid=%ld sid=%ld", (long)getpid(),
	    (long)getsid(0));
	for (;;)
		pause();
}

static struct MHD_Daemon *
start_daemon(void)
{
	struct sockaddr_in6 sin6;
	struct sockaddr_in sin;
	const struct sockaddr *sa;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD |
	    MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE;

	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	if (inet_pton(AF_INET, opt.host, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)opt.port);
		sa = (const struct sockaddr *)&sin;
	} else if (inet_pton(AF_INET6, opt.host, &sin6.sin6_addr) == 1) {
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons((uint16_t)opt.port);
		sa = (const struct sockaddr *)&sin6;
		flags |= MHD_USE_IPv6;
	} else {
		fprintf(stderr, "fake: bad --host: %s\n", opt.host);
		exit(2);
	}
	return MHD_start_daemon(flags, (uint16_t)opt.port, NULL, NULL,
	    on_request, NULL,
	    MHD_OPTION_SOCK_ADDR, sa,
	    MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
	    MHD_OPTION_END);
}

int
main(int argc, char **argv)
{
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	sigset_t set;
	int64_t ready_at;
	bool ready = false;
	unsigned int port;

	start_ms = now_ms();
	if (!parse_llama_server_args(argc, argv))
		parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	if (opt.ignore_term)
		signal(SIGTERM, SIG_IGN);
	if (opt.fork_grandchild)
		fork_grandchild();
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	if (!opt.ignore_term)
		sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);	/* MHD threads inherit it */

	if (opt.start_log != NULL) {
		char line[512];

		snprintf(line, sizeof(line), "start %ld %s", (long)getpid(),
		    opt.model);
		append_line(opt.start_log, line);
	}
	if (opt.exit_at_start >= 0) {
		say("fake: loading model %s", opt.model);
		say("error: failed to load model file '%s.gguf'", opt.model);
		say("error: unable to load model");
		exit((int)opt.exit_at_start);
	}
	for (long long i = 0; i < opt.stderr_lines; i++)
		say("fake: loading layer %lld", i);
	for (int i = 0; i < FAKE_SPEECH_LEN; i++)
		speech[i] = (char)(i < 3 ? "ID3"[i] : (i * 7) & 0xff);
	split_reply();

	if (opt.listen_delay > 0 && wait_signal(&set, opt.listen_delay))
		return 0;
	if (llama.port == -1) {
		llama.host = opt.host;
		llama.port = (int)opt.port;
		llama.model = opt.model;
		llama.reply = opt.reply;
		llama.delay_ms = opt.delay;
		llama.health_delay = opt.health_delay;
		return llama_like_run(&llama);
	}
	if ((d = start_daemon()) == NULL) {
		say("fake: cannot listen on %s:%lld", opt.host, opt.port);
		return 1;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	port = info ? info->port : (unsigned int)opt.port;
	say("fake: listening on %s:%u model=%s pid=%ld", opt.host, port,
	    opt.model, (long)getpid());

	ready_at = start_ms + opt.health_delay;
	for (;;) {
		int64_t now = now_ms();

		if (!ready && !opt.never_healthy && !opt.health_hang &&
		    now >= ready_at) {
			ready = true;
			ready_at = now;
			say("fake: ready");
			if (opt.ansi) {
				static const char col[] = "\x1b[32mfake:\x1b[0m \x1b[1;31mcoloured\x1b[0m output\n";

				(void)!write(STDERR_FILENO, col, sizeof(col) - 1); /* say() blanks escapes */
			}
		}
		if (!ready && opt.exit_while_starting >= 0 &&
		    now >= start_ms + opt.exit_while_starting) {
			say("fake: giving up while starting");
			MHD_stop_daemon(d);
			exit(4);
		}
		if (ready && opt.exit_after >= 0 &&
		    now >= ready_at + opt.exit_after) {
			say("fake: exiting by itself");
			break;
		}
		if (wait_signal(&set, 20)) {
			say("fake: stopping");
			break;
		}
	}
	atomic_store(&stopping, true);
	ws_shutdown_all();
	MHD_stop_daemon(d);
	if (nwords > 0)
		free(words[0]);
	free(words);
	return 0;
}
