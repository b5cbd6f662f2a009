/* ui: the embedded web page's files, and how they are answered. */
#include <string.h>
#include <strings.h>

#include "modelmux/ui.h"
#include "modelmux/util.h"

#define UI_TOKEN_MAX 64 /* a media range or coding longer than this is not one we look for */

/* Walks a comma-separated header ("a;q=0.5, b") calling fn with each item's name (lowercased,
 * trimmed, cut at UI_TOKEN_MAX) and its q value (1 when absent, 0 when malformed). */
static void
each_item(const char *h, void (*fn)(void *arg, const char *name, double q), void *arg)
{
	while (h != NULL && *h != '\0') {
		const char *end = strchr(h, ','), *semi;
		size_t      n = end ? (size_t)(end - h) : strlen(h), k = 0;
		char        name[UI_TOKEN_MAX + 1];
		double      q = 1.0;

		semi = memchr(h, ';', n);
		for (const char *p = h; p < (semi ? semi : h + n); p++)
			if (*p != ' ' && *p != '\t' && k < UI_TOKEN_MAX)
				name[k++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
		name[k] = '\0';
		for (const char *p = semi; p != NULL && p < h + n; p = memchr(p + 1, ';', (size_t)(h + n - p - 1))) {
			const char *v = p + 1;

			while (v < h + n && (*v == ' ' || *v == '\t'))
				v++;
			if (v + 2 <= h + n && (v[0] == 'q' || v[0] == 'Q') && v[1] == '=') {
				/* qvalue: "0", "1", "0.xyz", "1.000" (RFC 9110 12.4.2) */
				q = 0.0;
				v += 2;
				if (v < h + n && (*v == '0' || *v == '1')) {
					double scale = 0.1;

					q = *v++ - '0';
					if (v < h + n && *v == '.')
						for (v++; v < h + n && *v >= '0' && *v <= '9' && scale > 1e-4; v++, scale /= 10)
							q += (*v - '0') * scale;
					q = q > 1.0 ? 1.0 : q;
				}
			}
		}
		if (k > 0)
			fn(arg, name, q);
		h = end ? end + 1 : NULL;
	}
}

struct rank {
	double html, json, any;
	bool   html_named;
};

static void
rank_accept(void *arg, const char *name, double q)
{
	struct rank *r = arg;

	if (strcmp(name, "text/html") == 0 || strcmp(name, "application/xhtml+xml") == 0) {
		r->html = MM_MAX(r->html, q);
		r->html_named = true;
	} else if (strcmp(name, "application/json") == 0) {
		r->json = MM_MAX(r->json, q);
	} else if (strcmp(name, "*/*") == 0 || strcmp(name, "application/*") == 0) {
		r->any = MM_MAX(r->any, q);
	}
}

bool
ui_prefers_html(const char *accept)
{
	struct rank r = { 0 };

	each_item(accept, rank_accept, &r);
	return r.html_named && r.html > 0 && r.html >= r.json && r.html >= r.any;
}

static void
rank_gzip(void *arg, const char *name, double q)
{
	double *g = arg;
	bool    named = strcmp(name, "gzip") == 0 || strcmp(name, "x-gzip") == 0;

	/* gzip named says it all; "*" speaks for it only while it is not named */
	if (named || (strcmp(name, "*") == 0 && *g < 0))
		*g = q;
}

bool
ui_accepts_gzip(const char *accept_encoding)
{
	double g = -1.0;

	each_item(accept_encoding, rank_gzip, &g);
	return g > 0;
}

/* Does If-None-Match name this ETag ("*", or one of a list; W/ compares weakly)? */
static bool
etag_matches(const char *inm, const char *etag)
{
	size_t n = strlen(etag);

	for (const char *p = inm; p != NULL && *p != '\0';) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '*')
			return true;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		if (strncmp(p, etag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
			return true;
		p = strchr(p, ',');
	}
	return false;
}

void
ui_answer(const char *path, const char *accept_encoding, const char *if_none_match,
    struct ui_answer *out)
{
	const struct ui_asset *a = NULL;

	memset(out, 0, sizeof(*out));
	if (strcmp(path, "/") == 0 || strcmp(path, "/ui") == 0) {
		out->status = path[1] ? 301 : 302; /* "/" may one day answer something else */
		out->location = "/ui/";
		return;
	}
	for (unsigned long i = 0; i < ui_nassets; i++)
		if (strcmp(path, ui_assets[i].path) == 0)
			a = &ui_assets[i];
	if (a == NULL) {
		out->status = 404;
		return;
	}
	out->ctype = a->ctype;
	out->gzip = a->gzlen < a->len && ui_accepts_gzip(accept_encoding);
	/* Each encoding is its own representation, with its own validator. */
	snprintf(out->etag, sizeof(out->etag), "%.*s%s\"", (int)strlen(a->etag) - 1, a->etag,
	    out->gzip ? "-gz" : "");
	if (if_none_match != NULL && etag_matches(if_none_match, out->etag)) {
		out->status = 304;
		return;
	}
	out->status = 200;
	out->body = out->gzip ? a->gz : a->data;
	out->len = out->gzip ? a->gzlen : a->len;
}

void
ui_headers(const struct ui_answer *a, ui_header_cb *cb, void *arg)
{
	if (a->ctype != NULL && a->status == 200)
		cb(arg, "Content-Type", a->ctype);
	if (a->gzip && a->status == 200)
		cb(arg, "Content-Encoding", "gzip");
	if (a->location != NULL)
		cb(arg, "Location", a->location);
	if (a->etag[0] != '\0') {
		cb(arg, "ETag", a->etag);
		/* Revalidated every time (a 304 costs a few bytes): a new binary's page shows at once. */
		cb(arg, "Cache-Control", "no-cache");
		cb(arg, "Vary", "Accept-Encoding");
	}
	cb(arg, "Content-Security-Policy", UI_CSP);
	cb(arg, "X-Frame-Options", "DENY");
	cb(arg, "X-Content-Type-Options", "nosniff");
	cb(arg, "Referrer-Policy", "no-referrer");
	cb(arg, "Cross-Origin-Opener-Policy", "same-origin");
	cb(arg, "Cross-Origin-Resource-Policy", "same-origin");
}
