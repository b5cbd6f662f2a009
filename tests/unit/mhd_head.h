/* mhd_head.h: libmicrohttpd 0.9.75's in-place parse of a request head, re-enacted for the
 * tests of hdrcheck's layout checks (unit test and fuzz harness). As the real one does (checked
 * against it, see hdrcheck.h): lines end at CRLF or a bare LF, each turned into NULs; the
 * request line is cut at its first space and its last; a field's colon becomes a NUL and the
 * blanks after it are skipped; an obs-fold line is appended to the previous field's *name* in
 * a new block of the pool (the old name zeroed); any line that starts with a NUL ends the
 * head; names and values are measured with strlen. */
#ifndef MODELMUX_MHD_HEAD_H
#define MODELMUX_MHD_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define MHD_HEAD_MAX_FIELDS 64

struct mhd_head {
	const char *method, *url, *version;
	const char *head_end; /* past the blank line: the method plus MHD's header size */
	struct {
		const char *k, *v;
		size_t      kn, vn;
	} f[MHD_HEAD_MAX_FIELDS];
	size_t n;
};

/* The next line from *pos, its end turned into NULs: its start and *len (NULs in it counted),
 * or NULL when no line end is left; *pos moves past it. */
static char *
mhd_head_line(char *buf, size_t n, size_t *pos, size_t *len)
{
	for (size_t i = *pos; i < n; i++) {
		if (buf[i] == '\n' || (buf[i] == '\r' && i + 1 < n && buf[i + 1] == '\n')) {
			char *l = buf + *pos;

			*len = i - *pos;
			*pos = buf[i] == '\r' ? i + 2 : i + 1;
			buf[i] = '\0';
			if (*pos == i + 2)
				buf[i + 1] = '\0';
			return l;
		}
	}
	return NULL;
}

/* Parses buf[0..n) in place; buf has `cap` bytes, those past n being the pool's free space for
 * folded names. 0 when MHD would hand the head over, -1 when it would refuse it itself (or it
 * is not complete). */
static int
mhd_head_parse(char *buf, size_t n, size_t cap, struct mhd_head *h)
{
	size_t pos = 0, pool = n, len = 0;
	char  *line, *uri, *hv, *last = NULL, *colon = NULL, *end;

	memset(h, 0, sizeof(*h));
	/* Empty lines before the request line are skipped. */
	do {
		if ((line = mhd_head_line(buf, n, &pos, &len)) == NULL)
			return -1;
	} while (len == 0 && pos < n);
	/* The request line is cut by its real length, NULs and all: the version is what follows
	 * its last space (strcmp then reads it up to a NUL). */
	end = line + len;
	if ((uri = memchr(line, ' ', len)) == NULL)
		return -1;
	*uri++ = '\0';
	h->method = line;
	while (*uri == ' ')
		uri++;
	if (*uri == '\0')
		return -1;
	for (hv = end - 1; hv > uri && *hv == ' '; hv--)
		;
	while (hv > uri && *hv != ' ')
		hv--;
	if (hv <= uri)
		return -1;
	*hv = '\0';
	h->version = hv + 1;
	if (strncmp(h->version, "HTTP/1.", 7) != 0 || h->version[7] < '0' || h->version[7] > '9' ||
	    h->version[8] != '\0')
		return -1; /* MHD answers 505 or 400 itself */
	h->url = uri;
	for (;;) {
		if ((line = mhd_head_line(buf, n, &pos, &len)) == NULL)
			return -1;
		if (last != NULL && (line[0] == ' ' || line[0] == '\t')) {
			size_t      ll = strlen(last), tl;
			const char *tmp = line;
			char       *nb;

			while (*tmp == ' ' || *tmp == '\t')
				tmp++;
			tl = strlen(tmp);
			if (pool + ll + tl + 1 > cap)
				return -1;
			nb = buf + pool;
			memcpy(nb, last, ll);
			memcpy(nb + ll, tmp, tl + 1);
			memset(last, 0, ll + 1);
			pool += ll + tl + 1;
			last = nb;
			continue;
		}
		if (last != NULL) {
			if (h->n == MHD_HEAD_MAX_FIELDS)
				return -1;
			h->f[h->n].k = last;
			h->f[h->n].kn = strlen(last);
			h->f[h->n].v = colon;
			h->f[h->n].vn = strlen(colon);
			h->n++;
			last = NULL;
		}
		if (line[0] == '\0') {
			h->head_end = buf + pos;
			return 0;
		}
		if ((colon = strchr(line, ':')) == NULL)
			return -1;
		*colon++ = '\0';
		while (*colon == ' ' || *colon == '\t')
			colon++;
		last = line;
	}
}

#endif
