/* Unit tests of the web page's serving: Accept and Accept-Encoding, ETags, the root redirect. */
#include <string.h>

#include "check.h"
#include "modelmux/router.h"
#include "modelmux/ui.h"

static void
test_prefers_html(void)
{
	/* Browsers. */
	ASSERT_TRUE(ui_prefers_html("text/html,application/xhtml+xml,application/xml;q=0.9,"
	    "image/avif,image/webp,*/*;q=0.8"));
	ASSERT_TRUE(ui_prefers_html("TEXT/HTML"));
	ASSERT_TRUE(ui_prefers_html(" text/html ; q=1.0 , application/json;q=0.5"));
	/* API clients. */
	ASSERT_FALSE(ui_prefers_html(NULL));
	ASSERT_FALSE(ui_prefers_html(""));
	ASSERT_FALSE(ui_prefers_html("*/*"));
	ASSERT_FALSE(ui_prefers_html("application/json"));
	ASSERT_FALSE(ui_prefers_html("application/json, text/plain, */*"));
	ASSERT_FALSE(ui_prefers_html("text/html;q=0.5, application/json"));
	ASSERT_FALSE(ui_prefers_html("text/html;q=0"));
	ASSERT_FALSE(ui_prefers_html("text/html;q=0.2, */*"));
	ASSERT_FALSE(ui_prefers_html("text/html;q=x"));
	ASSERT_FALSE(ui_prefers_html(",,,;;;q=,"));
	ASSERT_FALSE(ui_prefers_html("text/htmlx"));
}

static void
test_gzip(void)
{
	ASSERT_TRUE(ui_accepts_gzip("gzip, deflate, br"));
	ASSERT_TRUE(ui_accepts_gzip("br;q=1.0, GZIP;q=0.5"));
	ASSERT_TRUE(ui_accepts_gzip("*"));
	ASSERT_FALSE(ui_accepts_gzip(NULL));
	ASSERT_FALSE(ui_accepts_gzip("identity"));
	ASSERT_FALSE(ui_accepts_gzip("gzip;q=0"));
	ASSERT_FALSE(ui_accepts_gzip("*, gzip;q=0"));
	ASSERT_FALSE(ui_accepts_gzip("gzipx"));
}

static void
test_answers(void)
{
	struct ui_answer a, b;
	char             inm[128];

	ui_answer("/", NULL, NULL, &a);
	ASSERT_INT_EQ(a.status, 302);
	ASSERT_STR_EQ(a.location, "/ui/");
	ui_answer("/ui", NULL, NULL, &a);
	ASSERT_INT_EQ(a.status, 301);
	ui_answer("/ui/nope.js", NULL, NULL, &a);
	ASSERT_INT_EQ(a.status, 404);
	ui_answer("/ui/../etc/passwd", NULL, NULL, &a);
	ASSERT_INT_EQ(a.status, 404);
	ui_answer("/ui/", NULL, NULL, &a);
	ASSERT_INT_EQ(a.status, 200);
	ASSERT_STR_EQ(a.ctype, "text/html; charset=utf-8");
	ASSERT_FALSE(a.gzip);
	ASSERT_TRUE(a.len > 0 && a.body != NULL);
	ASSERT_TRUE(a.etag[0] == '"' && a.etag[strlen(a.etag) - 1] == '"');
	/* The same ETag revalidates; another one does not. */
	snprintf(inm, sizeof(inm), "\"zzz\", W/%s", a.etag);
	ui_answer("/ui/", NULL, inm, &b);
	ASSERT_INT_EQ(b.status, 304);
	ASSERT_NULL(b.body);
	ui_answer("/ui/", NULL, "\"zzz\"", &b);
	ASSERT_INT_EQ(b.status, 200);
	ui_answer("/ui/", NULL, "*", &b);
	ASSERT_INT_EQ(b.status, 304);
	/* Every file has a type, and the gzip variant (when smaller) its own ETag. */
	for (unsigned long i = 0; i < ui_nassets; i++) {
		ui_answer(ui_assets[i].path, "gzip", NULL, &a);
		ASSERT_INT_EQ(a.status, 200);
		ASSERT_NOT_NULL(a.ctype);
		if (a.gzip) {
			ASSERT_TRUE(a.len < ui_assets[i].len);
			ASSERT_CONTAINS(a.etag, "-gz\"");
			ASSERT_TRUE(((const unsigned char *)a.body)[0] == 0x1f);
		}
	}
}

static void
collect(void *arg, const char *name, const char *value)
{
	char  *out = arg;
	size_t n = strlen(out);

	snprintf(out + n, 2048 - n, "%s: %s\n", name, value);
}

static void
test_headers(void)
{
	struct ui_answer a;
	char             got[2048] = "";

	ui_answer("/ui/", NULL, NULL, &a);
	ui_headers(&a, collect, got);
	ASSERT_CONTAINS(got, "Content-Security-Policy: default-src 'none'; script-src 'self'");
	ASSERT_CONTAINS(got, "frame-ancestors 'none'");
	ASSERT_CONTAINS(got, "X-Frame-Options: DENY\n");
	ASSERT_CONTAINS(got, "X-Content-Type-Options: nosniff\n");
	ASSERT_CONTAINS(got, "Referrer-Policy: no-referrer\n");
	ASSERT_CONTAINS(got, "Cache-Control: no-cache\n");
	ASSERT_TRUE(strstr(got, "unsafe-inline") == NULL);
}

static void
test_root_route(void)
{
	bool         ok;
	struct route r;

	r = router_match_head("GET", "/", "text/html,*/*;q=0.8", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_STATIC);
	ASSERT_INT_EQ(r.scope, ROUTE_OPEN);
	ASSERT_TRUE(ok);
	/* API clients and other methods keep what "/" was: no route. */
	r = router_match_head("GET", "/", "*/*", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_NONE);
	r = router_match_head("GET", "/", NULL, &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_NONE);
	r = router_match_head("POST", "/", "text/html", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_NONE);
	ASSERT_TRUE(ok);
	/* The page's files need no key; its data routes need the admin one. */
	r = router_match_head("GET", "/ui/app.js", NULL, &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_STATIC);
	ASSERT_INT_EQ(r.scope, ROUTE_OPEN);
	r = router_match_head("GET", "/uix", "text/html", &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_NONE);
	r = router_match_head("GET", "/api/activity", NULL, &ok);
	ASSERT_INT_EQ(r.kind, ROUTE_API);
	ASSERT_INT_EQ(r.scope, ROUTE_ADMIN);
}

int
main(void)
{
	test_prefers_html();
	test_gzip();
	test_answers();
	test_headers();
	test_root_route();
	CHECK_DONE();
}
