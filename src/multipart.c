/* multipart: incremental multipart/form-data scanning (RFC 7578) for one field. */
#include <string.h>
#include <strings.h>

#include "modelmux/multipart.h"
#include "modelmux/util.h"

enum mp_state {
	MP_PREAMBLE = 0, /* before the first delimiter */
	MP_AFTER_DELIM,  /* just after a delimiter: "--" (end) or CRLF (a part follows) */
	MP_AFTER_DASH,   /* one '-' seen after a delimiter */
	MP_AFTER_CR,     /* CR seen after a delimiter (or its transport padding) */
	MP_HEADERS,      /* a part's header block, up to CRLFCRLF */
	MP_BODY,         /* a part's body, up to the next delimiter */
	MP_EPILOGUE,     /* after the closing delimiter: ignored */
	MP_FAILED,
};

struct mp_scan {
	enum mp_state state;
	char          delim[MP_MAX_BOUNDARY + 5]; /* "\r\n--" boundary */
	size_t        dlen, matched;  /* delimiter bytes matched so far */
	char          field[64];
	char          hdr[MP_MAX_PART_HEADERS];
	size_t        hlen;
	unsigned      parts;
	uint64_t      pos;            /* offset of the next byte fed */
	bool          in_field;       /* the current part is the watched field */
	uint64_t      part_start;     /* offset of the current part's first body byte */
	char          value[MP_MAX_FIELD_VALUE + 1];
	size_t        vlen;
	bool          have_value;
	bool          value_too_long;
	uint64_t      vstart, vend;
};

/* The boundary parameter of a multipart/form-data Content-Type, quoted or not. */
static int
parse_boundary(const char *ctype, char *out, size_t n)
{
	const char *p;
	size_t      len = 0;

	if (ctype == NULL || strncasecmp(ctype, "multipart/form-data", 19) != 0)
		return -1;
	for (p = ctype + 19; (p = strchr(p, ';')) != NULL;) {
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, "boundary=", 9) != 0)
			continue;
		p += 9;
		if (*p == '"') {
			const char *q = strchr(++p, '"');

			if (q == NULL)
				return -1;
			len = (size_t)(q - p);
		} else {
			len = strcspn(p, "; \t");
		}
		if (len == 0 || len > MP_MAX_BOUNDARY || len >= n)
			return -1;
		memcpy(out, p, len);
		out[len] = '\0';
		return (int)len;
	}
	return -1;
}

struct mp_scan *
mp_new(const char *ctype, const char *field, const char **err)
{
	char            b[MP_MAX_BOUNDARY + 1];
	struct mp_scan *s;
	int             bl = parse_boundary(ctype, b, sizeof(b));

	if (bl < 0) {
		*err = "expected Content-Type multipart/form-data with a boundary";
		return NULL;
	}
	s = xcalloc(1, sizeof(*s));
	memcpy(s->delim, "\r\n--", 4);
	memcpy(s->delim + 4, b, (size_t)bl);
	s->dlen = 4 + (size_t)bl;
	s->matched = 2; /* the body may start with the delimiter itself, without a CRLF */
	snprintf(s->field, sizeof(s->field), "%s", field);
	return s;
}

void
mp_free(struct mp_scan *s)
{
	free(s);
}

static int
fail(struct mp_scan *s, const char **err, const char *why)
{
	s->state = MP_FAILED;
	*err = why;
	return -1;
}

/* The name="…" of a part's Content-Disposition header. */
static bool
part_is_field(const struct mp_scan *s)
{
	const char *h = s->hdr, *end = s->hdr + s->hlen;

	while (h < end) {
		const char *eol = memchr(h, '\n', (size_t)(end - h));
		size_t      len = eol ? (size_t)(eol - h) : (size_t)(end - h);

		if (len > 20 && strncasecmp(h, "content-disposition:", 20) == 0) {
			char        line[MP_MAX_PART_HEADERS];
			const char *n;
			size_t      fl = strlen(s->field);

			memcpy(line, h, len);
			line[len] = '\0';
			for (n = line; (n = strstr(n, "name=")) != NULL; n += 5) {
				if (n > line && n[-1] != ' ' && n[-1] != ';' && n[-1] != '\t')
					continue; /* filename= */
				if (n[5] == '"')
					return strncmp(n + 6, s->field, fl) == 0 && n[6 + fl] == '"';
				return strncmp(n + 5, s->field, fl) == 0 &&
				    (n[5 + fl] == '\0' || n[5 + fl] == ';' || n[5 + fl] == '\r' ||
				    n[5 + fl] == ' ');
			}
		}
		h += len + 1;
	}
	return false;
}

/* A byte of the current part's body (or of a delimiter candidate being given back). */
static void
body_byte(struct mp_scan *s, char c)
{
	if (!s->in_field)
		return;
	if (s->vlen < MP_MAX_FIELD_VALUE)
		s->value[s->vlen++] = c;
	else
		s->value_too_long = true;
}

static int
part_end(struct mp_scan *s, const char **err)
{
	if (s->in_field) {
		if (s->value_too_long)
			return fail(s, err, "the model form field is too long");
		s->value[s->vlen] = '\0';
		s->have_value = true;
		s->vstart = s->part_start;
		s->vend = s->part_start + s->vlen;
		s->in_field = false;
	}
	return 0;
}

int
mp_feed(struct mp_scan *s, const char *p, size_t n, const char **err)
{
	for (size_t i = 0; i < n; i++, s->pos++) {
		char c = p[i];

		switch (s->state) {
		case MP_PREAMBLE:
		case MP_BODY:
			/* Fast path: no delimiter can start before the next CR. */
			if (s->matched == 0 && c != '\r') {
				const char *cr = memchr(p + i, '\r', n - i);
				size_t      k = cr ? (size_t)(cr - (p + i)) : n - i;

				if (s->state == MP_BODY && s->in_field)
					for (size_t j = 0; j < k; j++)
						body_byte(s, p[i + j]);
				i += k - 1;
				s->pos += k - 1;
				continue;
			}
			if (c == s->delim[s->matched]) {
				if (++s->matched == s->dlen) {
					s->matched = 0;
					if (s->state == MP_BODY && part_end(s, err) == -1)
						return -1;
					s->state = MP_AFTER_DELIM;
				}
				continue;
			}
			/* Not a delimiter after all: those bytes were body. */
			if (s->state == MP_BODY)
				for (size_t j = 0; j < s->matched; j++)
					body_byte(s, s->delim[j]);
			s->matched = c == s->delim[0] ? 1 : 0;
			if (s->matched == 0 && s->state == MP_BODY)
				body_byte(s, c);
			break;
		case MP_AFTER_DELIM:
			if (c == '-')
				s->state = MP_AFTER_DASH;
			else if (c == '\r')
				s->state = MP_AFTER_CR;
			else if (c != ' ' && c != '\t')
				return fail(s, err, "malformed multipart delimiter");
			break;
		case MP_AFTER_DASH:
			if (c != '-')
				return fail(s, err, "malformed multipart delimiter");
			s->state = MP_EPILOGUE;
			break;
		case MP_AFTER_CR:
			if (c != '\n')
				return fail(s, err, "malformed multipart delimiter");
			if (++s->parts > MP_MAX_PARTS)
				return fail(s, err, "too many multipart parts");
			s->state = MP_HEADERS;
			s->hlen = 0;
			break;
		case MP_HEADERS:
			if (s->hlen == sizeof(s->hdr))
				return fail(s, err, "multipart part headers too large");
			s->hdr[s->hlen++] = c;
			if (s->hlen >= 2 && s->hdr[s->hlen - 1] == '\n' &&
			    (s->hlen == 2 || (s->hlen >= 4 && memcmp(s->hdr + s->hlen - 4, "\r\n\r\n", 4) == 0))) {
				s->in_field = part_is_field(s);
				/* A second one would overwrite the first's value while its offsets stay,
				 * and the backend may read either: one is all a body may have. */
				if (s->in_field && s->have_value)
					return fail(s, err, "the model form field appears more than once");
				s->vlen = 0;
				s->value_too_long = false;
				s->part_start = s->pos + 1;
				s->state = MP_BODY;
			}
			break;
		case MP_EPILOGUE:
			break;
		case MP_FAILED:
			*err = "multipart body already refused";
			return -1;
		}
	}
	return 0;
}

bool
mp_complete(const struct mp_scan *s)
{
	return s->state == MP_EPILOGUE;
}

const char *
mp_field(const struct mp_scan *s, uint64_t *start, uint64_t *end)
{
	if (!s->have_value)
		return NULL;
	*start = s->vstart;
	*end = s->vend;
	return s->value;
}
