/* hdrcheck: header fields and the framing of a request head. */
#include <string.h>

#include "check.h"
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

int
main(void)
{
	test_fields();
	test_framing();
	CHECK_DONE();
}
