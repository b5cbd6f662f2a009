/* hdrcheck: header fields and the framing of a request head. */
#include <string.h>

#include "check.h"
#include "mhd_head.h"
#include "modelmux/hdrcheck.h"

static int
verdict(const char *const *fields, bool http11, const char **why)
{
	struct hdr_scan s = { 0 };

	for (size_t i = 0; fields[i] != NULL; i += 2)
		hdr_scan_field(&s, fields[i], strlen(fields[i]), fields[i + 1],
		    fields[i + 1] ? strlen(fields[i + 1]) : 0);
	return hdr_verdict(&s, http11, why);
}

#define V(http11, ...) verdict((const char *const[]){ __VA_ARGS__, NULL }, http11, &why)

static void
test_fields(void)
{
	ASSERT_TRUE(hdr_is_token("X-Request-ID", 12));
	ASSERT_TRUE(hdr_is_token("!#$%&'*+-.^_`|~09az", 19));
	ASSERT_FALSE(hdr_is_token("", 0));
	ASSERT_FALSE(hdr_is_token("Transfer-Encoding ", 18));
	ASSERT_FALSE(hdr_is_token(" folded", 7));
	ASSERT_FALSE(hdr_is_token("a:b", 3));
	ASSERT_FALSE(hdr_is_token("a\rb", 3));
	ASSERT_FALSE(hdr_is_token("\xc3\xa9", 2));
	ASSERT_TRUE(hdr_value_ok("text/plain; q=0.5\tx", 19));
	ASSERT_TRUE(hdr_value_ok("caf\xc3\xa9", 5)); /* obs-text passes */
	ASSERT_FALSE(hdr_value_ok("a\rContent-Length: 0", 19));
	ASSERT_FALSE(hdr_value_ok("a\nb", 3));
	ASSERT_FALSE(hdr_value_ok("a\0b", 3));
	ASSERT_FALSE(hdr_value_ok("a\x7f", 2));
}

static void
test_framing(void)
{
	const char *why = NULL;

	ASSERT_INT_EQ(V(true, "Host", "x", "Content-Length", "5"), 0);
	ASSERT_INT_EQ(V(true, "Host", "x", "Transfer-Encoding", " Chunked "), 0);
	ASSERT_INT_EQ(V(false, "Content-Length", "5"), 0); /* HTTP/1.0 needs no Host */
	ASSERT_INT_EQ(V(true, "Content-Length", "5"), 400);
	ASSERT_STR_EQ(why, "no Host header");
	ASSERT_INT_EQ(V(true, "Host", "a", "host", "b"), 400);
	ASSERT_STR_EQ(why, "more than one Host header");
	ASSERT_INT_EQ(V(true, "Host", "x", "Content-Length", "5", "Transfer-Encoding", "chunked"), 400);
	ASSERT_INT_EQ(V(true, "Host", "x", "Transfer-Encoding", "xchunked"), 501);
	ASSERT_INT_EQ(V(true, "Host", "x", "Transfer-Encoding", "gzip"), 501);
	ASSERT_INT_EQ(V(true, "Host", "x", "Transfer-Encoding", "chunked, identity"), 400);
	ASSERT_INT_EQ(V(true, "Host", "x", "Transfer-Encoding", "chunked", "Transfer-Encoding", "chunked"), 400);
	ASSERT_INT_EQ(V(false, "Transfer-Encoding", "chunked"), 400);
	ASSERT_INT_EQ(V(true, "Host", "x", "X-N", "a\rAuthorization: Bearer k"), 400);
	ASSERT_INT_EQ(V(true, "Host", "x", "Transfer-Encoding ", "chunked"), 400);
	ASSERT_INT_EQ(V(true, "Host", "x", "X-Empty", NULL), 0);
	{
		struct hdr_scan s = { 0 };

		/* A NUL inside a value: its length says more than strlen. */
		hdr_scan_field(&s, "Host", 4, "x", 1);
		hdr_scan_field(&s, "X-N", 3, "a\0b", 3);
		ASSERT_INT_EQ(hdr_verdict(&s, true, &why), 400);
	}
}

/* MHD refused it itself: it never reaches modelmux. */
#define MHD_REFUSES (-2)

/* Parses raw[0..n) as libmicrohttpd 0.9.75 does (mhd_head.h), then checks it as head_ok does,
 * layout on: 0, 400 or 501 (and *why), or MHD_REFUSES. */
static int
check_head(const char *raw, size_t n, const char **why)
{
	static char     buf[16384];
	struct hdr_scan s = { 0 };
	struct mhd_head h;

	*why = NULL;
	if (n + 4096 > sizeof(buf))
		return MHD_REFUSES;
	memcpy(buf, raw, n);
	memset(buf + n, 0x5a, sizeof(buf) - n); /* the pool beyond: not NULs */
	if (mhd_head_parse(buf, n, sizeof(buf), &h) == -1)
		return MHD_REFUSES;
	hdr_scan_layout(&s, h.version + strlen(h.version), h.head_end);
	for (size_t i = 0; i < h.n; i++)
		hdr_scan_field(&s, h.f[i].k, h.f[i].kn, h.f[i].v, h.f[i].vn);
	return hdr_verdict(&s, strcmp(h.version, "HTTP/1.1") == 0, why);
}

#define HEAD(raw, want) do { \
	const char *why_; \
	int got_ = check_head((raw), sizeof(raw) - 1, &why_); \
	if (got_ != (want)) \
		CHECK_FAIL("%s: got %d (%s), want %d", #raw, got_, why_ ? why_ : "-", (want)); \
	check_count++; \
} while (0)

static void
test_layout(void)
{
	/* Clean heads pass: CRLF or bare LF, empty values, blanks, many fields, a body. */
	HEAD("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	HEAD("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	HEAD("GET /x?y=1&z HTTP/1.1\nHost: a\nX-A:\nX-B:   v  \n\n", 0);
	HEAD("GET / HTTP/1.1\r\nHost: a\nX-Mixed: 1\r\n\n", 0);
	HEAD("GET / HTTP/1.0\r\n\r\n", 0);
	HEAD("GET / HTTP/1.0\n\n", 0);
	HEAD("POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 0);
	HEAD("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0);
	HEAD("GET / HTTP/1.1\r\nHost: a\r\nX-T:\tx\ty\r\nX-U:\t \t\r\n\r\n", 0);
	/* obs-fold: space or tab, token characters only or not, first, middle or last field. */
	HEAD("GET /u HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n tail\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\ttail\r\nX-B: 2\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.1\nHost: a\nX-A: 1\n tail\n\n", 400);
	HEAD("GET /u HTTP/1.1\r\nX-A: 1\r\n foo\r\nHost: a\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.1\r\nHost: a\r\n  \t tail\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n Authorization: b\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n x\r\n y\r\n\r\n", 400);
	HEAD("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-: chunked\r\n Encoding\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.1\r\nHost: a\r\nX-A:\r\n tail\r\n\r\n", 400);
	{
		static const char fold[] = "GET /u HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n tail\r\n\r\n";
		const char       *why;

		ASSERT_INT_EQ(check_head(fold, sizeof(fold) - 1, &why), 400);
		ASSERT_CONTAINS(why, "obs-fold");
	}
	/* A NUL where lines meet, in a value (the last one too), before a line end, as the blank
	 * line's first byte, in the version. */
	HEAD("GET /u HTTP/1.1\r\nHost: a\r\nX-B: a\0b\r\nX-C: c\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.1\r\nHost: a\r\nX-B: a\0Authorization: k\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.1\r\nHost: a\r\nX-B: a\0b\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.1\r\nHost: a\0\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.1\r\nHost: a\r\n\0junk\r\nX-C: c\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.1\0junk\r\nHost: a\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.0\r\n\0\r\n", 400);
	HEAD("GET /u HTTP/1.0\r\n\0x\r\n", 400);
	/* What main's checks refuse stays refused with layout on. */
	HEAD("GET /u HTTP/1.1\r\nHost: a\r\nX-N: a\rAuthorization: b\r\n\r\n", 400);
	HEAD("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.1\r\n Host: a\r\n\r\n", 400);
	HEAD("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
	HEAD("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501);
	HEAD("GET /u HTTP/1.1\r\n\r\n", 400);
	HEAD("GET /u HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
	/* What MHD refuses itself stays its own. */
	HEAD("GET /u HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", MHD_REFUSES);
}

/* The layout checks never read outside [line end, head end], whatever the pointers say. */
static void
test_layout_bounds(void)
{
	char            head[] = "HTTP/1.1\0\0Host\0 a\0\0\0\0";
	const char     *why = NULL, *end = head + 8, *hend = head + sizeof(head) - 1;
	struct hdr_scan s = { 0 };

	hdr_scan_layout(&s, end, hend);
	hdr_scan_field(&s, head + 10, 4, head + 16, 1);
	ASSERT_INT_EQ(hdr_verdict(&s, true, &why), 0);
	/* A value past the head's end, a name before the line end, a value before its name. */
	memset(&s, 0, sizeof(s));
	hdr_scan_layout(&s, end, hend);
	hdr_scan_field(&s, head + 10, 4, head + 16, 100);
	ASSERT_INT_EQ(hdr_verdict(&s, true, &why), 400);
	memset(&s, 0, sizeof(s));
	hdr_scan_layout(&s, end, hend);
	hdr_scan_field(&s, head + 2, 4, head + 16, 1);
	ASSERT_INT_EQ(hdr_verdict(&s, true, &why), 400);
	memset(&s, 0, sizeof(s));
	hdr_scan_layout(&s, end, hend);
	hdr_scan_field(&s, head + 10, 4, head + 10, 1);
	ASSERT_INT_EQ(hdr_verdict(&s, true, &why), 400);
	memset(&s, 0, sizeof(s));
	hdr_scan_layout(&s, end, hend);
	hdr_scan_field(&s, head + 10, 4, NULL, 0);
	ASSERT_INT_EQ(hdr_verdict(&s, true, &why), 400);
	/* A name as long as the head: refused, nothing read past it. */
	memset(&s, 0, sizeof(s));
	hdr_scan_layout(&s, end, hend);
	hdr_scan_field(&s, head + 10, (size_t)(hend - head - 10), head + 16, 1);
	ASSERT_INT_EQ(hdr_verdict(&s, true, &why), 400);
	/* A head end before the line end: no layout checks at all. */
	memset(&s, 0, sizeof(s));
	hdr_scan_layout(&s, hend, end);
	ASSERT_TRUE(s.end == NULL);
	/* Too short a tail, too long a tail. */
	memset(&s, 0, sizeof(s));
	hdr_scan_layout(&s, end, end + 1);
	ASSERT_INT_EQ(hdr_verdict(&s, false, &why), 400);
	memset(&s, 0, sizeof(s));
	hdr_scan_layout(&s, hend - 4, hend);
	ASSERT_INT_EQ(hdr_verdict(&s, false, &why), 0);
	memset(&s, 0, sizeof(s));
	hdr_scan_layout(&s, hend - 5, hend);
	ASSERT_INT_EQ(hdr_verdict(&s, false, &why), 400);
}

static void
test_proxy_only(void)
{
	ASSERT_TRUE(hdr_proxy_only("X-Forwarded-Proto"));
	ASSERT_TRUE(hdr_proxy_only("x-forwarded-host"));
	ASSERT_TRUE(hdr_proxy_only("X-REAL-IP"));
	ASSERT_TRUE(hdr_proxy_only("True-Client-IP"));
	ASSERT_FALSE(hdr_proxy_only("X-Forwarded-For")); /* rewritten, not dropped */
	ASSERT_FALSE(hdr_proxy_only("Forwarded"));
	ASSERT_FALSE(hdr_proxy_only("X-Forwarded-Protocol"));
	ASSERT_FALSE(hdr_proxy_only("X-Real"));
	ASSERT_FALSE(hdr_proxy_only(""));
}

static void
test_layout_known(void)
{
	ASSERT_TRUE(hdr_layout_known("0.9.75"));
	ASSERT_TRUE(hdr_layout_known("0.9.71"));
	ASSERT_TRUE(hdr_layout_known("0.8.2"));
	ASSERT_FALSE(hdr_layout_known("0.9.76"));
	ASSERT_FALSE(hdr_layout_known("0.9.77"));
	ASSERT_FALSE(hdr_layout_known("1.0.0"));
	ASSERT_FALSE(hdr_layout_known("0.9"));
	ASSERT_FALSE(hdr_layout_known(""));
	ASSERT_FALSE(hdr_layout_known(NULL));
}

int
main(void)
{
	test_fields();
	test_framing();
	test_layout();
	test_layout_bounds();
	test_layout_known();
	test_proxy_only();
	CHECK_DONE();
}
