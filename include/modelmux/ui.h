/* ui: the operator's web page, embedded in the binary (ui/ → tools/embed.c → a generated C
 * source) and served at /ui/ with strict security headers. The page holds no data: every call
 * it makes goes to the management routes, with the admin key when keys are configured. */
#ifndef MODELMUX_UI_H
#define MODELMUX_UI_H

#include <stdbool.h>
#include <stddef.h>

/* One embedded file (generated). */
struct ui_asset {
	const char          *path;   /* "/ui/" for index.html, else "/ui/<name>" */
	const char          *ctype;
	const unsigned char *data;
	size_t               len;
	const unsigned char *gz;     /* the same, gzip -9n */
	size_t               gzlen;
	const char          *etag;   /* quoted hash of data */
};
extern const struct ui_asset ui_assets[];
extern const unsigned long   ui_nassets;

/* Sent with every /ui answer: the page's own files only, no inline script or style, no frame. */
#define UI_CSP "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " \
	"connect-src 'self'; media-src 'self' blob:; manifest-src 'self'; base-uri 'none'; " \
	"form-action 'none'; frame-ancestors 'none'"
#define UI_ETAG_MAX 48

/* What to answer to GET/HEAD of a /ui path (or "/"). Static storage: nothing to free. */
struct ui_answer {
	int         status;       /* 200, 304, 301/302 (to `location`), or 404 */
	const void *body;         /* NULL for anything but 200 */
	size_t      len;
	const char *ctype;
	const char *location;
	bool        gzip;         /* body is the gzip variant: Content-Encoding: gzip */
	char        etag[UI_ETAG_MAX];
};

/* Finds the answer for a raw path ("/", "/ui", "/ui/…"), given the request's Accept-Encoding
 * and If-None-Match (either may be NULL). */
void ui_answer(const char *path, const char *accept_encoding, const char *if_none_match,
    struct ui_answer *out);

typedef void ui_header_cb(void *arg, const char *name, const char *value);
/* Calls cb for each header of the answer: type, encoding, validators, and the security set. */
void ui_headers(const struct ui_answer *a, ui_header_cb *cb, void *arg);

/* Does an Accept header rank text/html above JSON (a browser's, not an API client's "* / *")? */
bool ui_prefers_html(const char *accept);
/* Does an Accept-Encoding header take gzip? */
bool ui_accepts_gzip(const char *accept_encoding);

#endif
