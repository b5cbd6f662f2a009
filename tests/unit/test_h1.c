/* Unit tests of h1: backend URLs, response heads and chunked bodies, whatever the chunking. */
#include <string.h>

#include "check.h"
#include "modelmux/h1.h"
#include "modelmux/util.h"

/* --- URLs --- */

/* Parses url and checks host, port, authority and target; NULL host means "refused". */
#define URL_OK(url, h, p, auth, tgt) do { \
	struct h1_url u_; \
	ASSERT_INT_EQ(h1_parse_url((url), &u_), 0); \
	ASSERT_STR_EQ(u_.host, (h)); \
	ASSERT_STR_EQ(u_.port, (p)); \
	ASSERT_INT_EQ(u_.alen, strlen(auth)); \
	ASSERT_TRUE(strncmp(u_.authority, (auth), u_.alen) == 0); \
	ASSERT_STR_EQ(u_.target, (tgt)); \
} while (0)
#define URL_BAD(url) do { \
	struct h1_url u_; \
	ASSERT_INT_EQ(h1_parse_url((url), &u_), -1); \
} while (0)

static void
test_url(void)
{
	struct h1_url u;
	char          url[400];

	URL_OK("http://127.0.0.1:8080/v1/chat", "127.0.0.1", "8080", "127.0.0.1:8080", "/v1/chat");
	URL_OK("http://127.0.0.1/v1", "127.0.0.1", "80", "127.0.0.1", "/v1");
	URL_OK("http://127.0.0.1", "127.0.0.1", "80", "127.0.0.1", "/");
	URL_OK("http://127.0.0.1:9000", "127.0.0.1", "9000", "127.0.0.1:9000", "/");
	URL_OK("http://10.0.0.1:1/a/b?x=1&y=%20z", "10.0.0.1", "1", "10.0.0.1:1", "/a/b?x=1&y=%20z");
	URL_OK("http://backend.local:65535/", "backend.local", "65535", "backend.local:65535", "/");
	URL_OK("HTTP://Example.COM/x", "Example.COM", "80", "Example.COM", "/x");
	/* An empty port is the default one; leading zeros are normalised. */
	URL_OK("http://h:/p", "h", "80", "h:", "/p");
	URL_OK("http://h:00080/p", "h", "80", "h:00080", "/p");
	/* IPv6: the host loses its brackets, the authority keeps them. */
	URL_OK("http://[::1]:8080/v1", "::1", "8080", "[::1]:8080", "/v1");
	URL_OK("http://[::1]/v1", "::1", "80", "[::1]", "/v1");
	URL_OK("http://[::1]", "::1", "80", "[::1]", "/");
	URL_OK("http://[fe80::1:2]:", "fe80::1:2", "80", "[fe80::1:2]:", "/");
	URL_OK("http://[2001:db8::42]:443/x?y", "2001:db8::42", "443", "[2001:db8::42]:443", "/x?y");
	/* An '@' past the authority is part of the target. */
	URL_OK("http://h/a@b", "h", "80", "h", "/a@b");

	/* Ports. */
	URL_BAD("http://h:0/");
	URL_BAD("http://h:00000/");
	URL_BAD("http://h:65536/");
	URL_BAD("http://h:99999/");
	URL_BAD("http://h:123456/");
	URL_BAD("http://h:000080/");
	URL_BAD("http://h:8a/");
	URL_BAD("http://h:a8/");
	URL_BAD("http://h:-1/");
	URL_BAD("http://h:+80/");
	URL_BAD("http://h: 80/");
	URL_BAD("http://h:80:81/");
	URL_BAD("http://[::1]:0/");
	URL_BAD("http://[::1]:65536/");
	URL_BAD("http://[::1]:x/");
	/* Userinfo. */
	URL_BAD("http://user@h/");
	URL_BAD("http://user:pw@127.0.0.1:80/");
	URL_BAD("http://@h/");
	URL_BAD("http://[::1]@h/");
	/* Other schemes, no scheme. */
	URL_BAD("https://h/");
	URL_BAD("ftp://h/");
	URL_BAD("unix:/run/x.sock");
	URL_BAD("http:/h/");
	URL_BAD("http:h");
	URL_BAD("//h/");
	URL_BAD("h:80/");
	URL_BAD("");
	URL_BAD(" http://h/");
	/* Empty hosts, brackets. */
	URL_BAD("http://");
	URL_BAD("http:///x");
	URL_BAD("http://:80/");
	URL_BAD("http://[]/");
	URL_BAD("http://[]:80/");
	URL_BAD("http://[::1/");
	URL_BAD("http://[::1]x/");
	URL_BAD("http://[::1]]:80/");
	URL_BAD("http://::1/");
	/* Host length: 255 bytes fit, 256 do not. */
	memcpy(url, "http://", 7);
	memset(url + 7, 'a', 255);
	memcpy(url + 7 + 255, "/x", 3);
	ASSERT_INT_EQ(h1_parse_url(url, &u), 0);
	ASSERT_INT_EQ(strlen(u.host), 255);
	ASSERT_STR_EQ(u.target, "/x");
	memset(url + 7, 'a', 256);
	memcpy(url + 7 + 256, "/x", 3);
	ASSERT_INT_EQ(h1_parse_url(url, &u), -1);
	/* The authority and target point into the URL. */
	const char *s = "http://1.2.3.4:5/t";
	ASSERT_INT_EQ(h1_parse_url(s, &u), 0);
	ASSERT_TRUE(u.authority == s + 7);
	ASSERT_TRUE(u.target == s + 16);
}

static void
test_target(void)
{
	ASSERT_TRUE(h1_target_ok("/"));
	ASSERT_TRUE(h1_target_ok(""));
	ASSERT_TRUE(h1_target_ok("/v1/chat/completions?x=1&y=%20z"));
	ASSERT_TRUE(h1_target_ok("/a@b:c;d=e,f!$'()*+~"));
	ASSERT_TRUE(h1_target_ok("/\xc3\xa9"));
	ASSERT_FALSE(h1_target_ok("/a b"));
	ASSERT_FALSE(h1_target_ok("/a\tb"));
	ASSERT_FALSE(h1_target_ok("/a\r\nHost: evil"));
	ASSERT_FALSE(h1_target_ok("/a\nb"));
	ASSERT_FALSE(h1_target_ok("/a\x01"));
	ASSERT_FALSE(h1_target_ok("/a\x7f"));
	ASSERT_FALSE(h1_target_ok("/a#frag"));
	ASSERT_FALSE(h1_target_ok(" "));
}

/* --- heads --- */

/* Parses exactly s[0..n) from a heap copy of that size, so that an overread is caught under
 * ASan (make check). Field pointers point into the copy, which stays alive until the next call. */
static ssize_t
parse_n(const char *s, size_t n, struct h1_head *h, const char **why)
{
	static char *copy;
	ssize_t      r;

	free(copy);
	copy = xmalloc(n ? n : 1);
	memcpy(copy, s, n);
	*why = NULL;
	r = h1_parse_head(copy, n, h, why);
	if (r > 0) {
		/* Invariants for every head that parses. */
		ASSERT_TRUE((size_t)r <= n);
		ASSERT_TRUE(h->status >= 100 && h->status <= 999);
		ASSERT_TRUE(h->minor == 0 || h->minor == 1);
		ASSERT_TRUE(h->nfields <= H1_MAX_FIELDS);
		for (size_t i = 0; i < h->nfields; i++) {
			ASSERT_TRUE(h->f[i].name >= copy && h->f[i].name + h->f[i].nlen <= copy + r);
			ASSERT_TRUE(h->f[i].value >= copy && h->f[i].value + h->f[i].vlen <= copy + r);
		}
		ASSERT_TRUE(!h->chunked || h->content_length == -1);
	} else if (r == -1) {
		ASSERT_NOT_NULL(*why);
	} else {
		ASSERT_INT_EQ(r, 0);
	}
	return r;
}

static ssize_t
parse(const char *s, struct h1_head *h, const char **why)
{
	return parse_n(s, strlen(s), h, why);
}

/* The value of the first field named `name` as a string ("(none)" when absent). */
static const char *
value_of(const struct h1_head *h, const char *name)
{
	static char v[256];

	for (size_t i = 0; i < h->nfields; i++) {
		if (h1_field_is(&h->f[i], name)) {
			snprintf(v, sizeof(v), "%.*s", (int)h->f[i].vlen, h->f[i].value);
			return v;
		}
	}
	return "(none)";
}

/* Expects s to parse in full (r == strlen(s)). */
#define HEAD_OK(s, h) do { \
	const char *why_; \
	ASSERT_INT_EQ(parse((s), (h), &why_), strlen(s)); \
} while (0)
/* Expects s to be refused with a reason that contains `reason`. */
#define HEAD_BAD(s, reason) do { \
	struct h1_head h_; \
	const char    *why_; \
	ASSERT_INT_EQ(parse((s), &h_, &why_), -1); \
	ASSERT_CONTAINS(why_, (reason)); \
} while (0)

static void
test_head_basic(void)
{
	static struct h1_head h;
	const char           *why;
	const char           *crlf = "HTTP/1.1 200 OK\r\n"
	                             "Content-Type: application/json\r\n"
	                             "Content-Length: 42\r\n"
	                             "X-Empty:\r\n"
	                             "X-Spaces: \t  padded value \t \r\n"
	                             "\r\n";
	const char           *lf = "HTTP/1.1 404 Not Found\n"
	                           "content-type: text/plain\n"
	                           "CONTENT-LENGTH: 9\n"
	                           "\n";

	HEAD_OK(crlf, &h);
	ASSERT_INT_EQ(h.minor, 1);
	ASSERT_INT_EQ(h.status, 200);
	ASSERT_INT_EQ(h.content_length, 42);
	ASSERT_FALSE(h.chunked);
	ASSERT_FALSE(h.close);
	ASSERT_INT_EQ(h.nfields, 4);
	ASSERT_INT_EQ(h.dropped, 0);
	ASSERT_STR_EQ(value_of(&h, "content-type"), "application/json");
	ASSERT_STR_EQ(value_of(&h, "CONTENT-TYPE"), "application/json");
	ASSERT_STR_EQ(value_of(&h, "x-empty"), "");
	ASSERT_STR_EQ(value_of(&h, "x-spaces"), "padded value");
	ASSERT_INT_EQ(h.f[2].vlen, 0);
	ASSERT_INT_EQ(h.f[0].nlen, 12);

	HEAD_OK(lf, &h);
	ASSERT_INT_EQ(h.status, 404);
	ASSERT_INT_EQ(h.content_length, 9);
	ASSERT_STR_EQ(value_of(&h, "Content-Type"), "text/plain");
	ASSERT_FALSE(h.close);

	/* Mixed line ends; the body after the head is not part of it. */
	const char *mixed = "HTTP/1.1 201 Created\nA: 1\r\nB: 2\n\r\nbody bytes";
	ASSERT_INT_EQ(parse(mixed, &h, &why), strlen(mixed) - strlen("body bytes"));
	ASSERT_INT_EQ(h.nfields, 2);
	ASSERT_STR_EQ(value_of(&h, "b"), "2");
	ASSERT_INT_EQ(h.content_length, -1);
	/* Two heads back to back (100 Continue, then the response): only the first. */
	const char *two = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	ASSERT_INT_EQ(parse(two, &h, &why), 25);
	ASSERT_INT_EQ(h.status, 100);
	ASSERT_INT_EQ(h.nfields, 0);
	ASSERT_INT_EQ(parse(two + 25, &h, &why), strlen(two) - 25);
	ASSERT_INT_EQ(h.status, 200);
	ASSERT_INT_EQ(h.content_length, 0);
	/* A value may hold obs-text and tabs. */
	HEAD_OK("HTTP/1.1 200 OK\r\nX: caf\xc3\xa9\tand\x80\xff\r\n\r\n", &h);
	ASSERT_STR_EQ(value_of(&h, "x"), "caf\xc3\xa9\tand\x80\xff");
	/* Every tchar can be in a name. */
	HEAD_OK("HTTP/1.1 200 OK\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n", &h);
	ASSERT_STR_EQ(value_of(&h, "!#$%&'*+-.^_`|~09AZaz"), "v");
	/* A head with nothing else is the smallest. */
	HEAD_OK("HTTP/1.1 200\n\n", &h);
	ASSERT_INT_EQ(h.status, 200);
	ASSERT_INT_EQ(h.nfields, 0);
	ASSERT_INT_EQ(h.content_length, -1);
}

static void
test_field_is(void)
{
	struct h1_field f = { .name = "Content-Length: 5", .nlen = 14, .value = "5", .vlen = 1 };

	ASSERT_TRUE(h1_field_is(&f, "content-length"));
	ASSERT_TRUE(h1_field_is(&f, "CONTENT-LENGTH"));
	ASSERT_TRUE(h1_field_is(&f, "Content-Length"));
	ASSERT_FALSE(h1_field_is(&f, "content-lengt"));
	ASSERT_FALSE(h1_field_is(&f, "content-lengthx"));
	ASSERT_FALSE(h1_field_is(&f, "content-length:"));
	ASSERT_FALSE(h1_field_is(&f, "content_length"));
	ASSERT_FALSE(h1_field_is(&f, ""));
	f.nlen = 0;
	ASSERT_TRUE(h1_field_is(&f, ""));
	ASSERT_FALSE(h1_field_is(&f, "c"));
	/* Not NUL-terminated: only nlen bytes count. */
	static const char raw[] = { 'X', '-', 'a' };
	struct h1_field   g = { .name = raw, .nlen = 3, .value = raw, .vlen = 0 };
	ASSERT_TRUE(h1_field_is(&g, "x-A"));
	ASSERT_FALSE(h1_field_is(&g, "x-ab"));
}

/* Every strict prefix of a complete head is incomplete (0); the whole is its length. */
static void
test_head_incomplete(void)
{
	static struct h1_head h;
	const char           *why;
	const char           *heads[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\n",
		"HTTP/1.0 204 No Content\nServer: x\nConnection: keep-alive\n\n",
		"HTTP/1.1 200\r\n\r\n",
		"HTTP/1.1 200\n\n",
		"HTTP/1.1 200 OK\r\nA: 1\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
	};

	for (size_t k = 0; k < MM_ARRAY_LEN(heads); k++) {
		size_t len = strlen(heads[k]);

		for (size_t i = 0; i < len; i++) {
			ssize_t r = parse_n(heads[k], i, &h, &why);

			if (r != 0)
				CHECK_FAIL("head %zu prefix %zu: %zd, not 0", k, i, r);
			check_count++;
		}
		ASSERT_INT_EQ(parse_n(heads[k], len, &h, &why), len);
	}
}

static void
test_status_line(void)
{
	static struct h1_head h;

	HEAD_OK("HTTP/1.1 200\r\n\r\n", &h);
	ASSERT_INT_EQ(h.status, 200);
	HEAD_OK("HTTP/1.1 200 \r\n\r\n", &h);
	HEAD_OK("HTTP/1.1 503 Service Unavailable\r\n\r\n", &h);
	ASSERT_INT_EQ(h.status, 503);
	HEAD_OK("HTTP/1.1 100 Continue\r\n\r\n", &h);
	ASSERT_INT_EQ(h.status, 100);
	HEAD_OK("HTTP/1.1 999 Whatever\r\n\r\n", &h);
	ASSERT_INT_EQ(h.status, 999);
	HEAD_OK("HTTP/1.1 200 OK\twith tab and \xc3\xa9\r\n\r\n", &h);
	HEAD_OK("HTTP/1.1 200 \r\n\r\n", &h);

	/* HTTP/1.0: close unless keep-alive is asked for. */
	HEAD_OK("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", &h);
	ASSERT_INT_EQ(h.minor, 0);
	ASSERT_TRUE(h.close);
	HEAD_OK("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", &h);
	ASSERT_FALSE(h.close);
	HEAD_OK("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n", &h);
	ASSERT_FALSE(h.close);
	HEAD_OK("HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n\r\n", &h);
	ASSERT_TRUE(h.close);
	HEAD_OK("HTTP/1.0 200 OK\r\nKeep-Alive: timeout=5\r\n\r\n", &h);
	ASSERT_TRUE(h.close);
	HEAD_OK("HTTP/1.1 200 OK\r\n\r\n", &h);
	ASSERT_INT_EQ(h.minor, 1);
	ASSERT_FALSE(h.close);

	HEAD_BAD("HTTP/1.2 200 OK\r\n\r\n", "status line");
	HEAD_BAD("HTTP/2 200\r\n\r\n", "status line");
	HEAD_BAD("HTTP/2.0 200 OK\r\n\r\n", "status line");
	HEAD_BAD("HTTP/0.9 200 OK\r\n\r\n", "status line");
	HEAD_BAD("HTTP/1.x 200 OK\r\n\r\n", "status line");
	HEAD_BAD("http/1.1 200 OK\r\n\r\n", "status line");
	HEAD_BAD("HTTP/1.1 20 OK\r\n\r\n", "status line");
	HEAD_BAD("HTTP/1.1 20\r\n\r\n", "status line");
	HEAD_BAD("HTTP/1.1 20\n\n", "status line");
	HEAD_BAD("HTTP/1.1 2000 OK\r\n\r\n", "status line");
	HEAD_BAD("HTTP/1.1 099 X\r\n\r\n", "status line");
	HEAD_BAD("HTTP/1.1 000\r\n\r\n", "status line");
	HEAD_BAD("HTTP/1.1 2x0 OK\r\n\r\n", "status line");
	HEAD_BAD("HTTP/1.1  200 OK\r\n\r\n", "status line");
	HEAD_BAD("HTTP/1.1\t200 OK\r\n\r\n", "status line");
	HEAD_BAD("HTTP/1.1 200OK\r\n\r\n", "status line");
	HEAD_BAD("HTTP/1.1 200 O\x01K\r\n\r\n", "status line");
	HEAD_BAD("HTTP/1.1 200 OK\rX\r\n\r\n", "status line");
	HEAD_BAD("HTTP/1.1 200 OK\r\r\n\r\n", "status line");
	HEAD_BAD("ICY 200 OK\r\n\r\n", "status line");
	HEAD_BAD(" HTTP/1.1 200 OK\r\n\r\n", "status line");
	HEAD_BAD("\r\nHTTP/1.1 200 OK\r\n\r\n", "status line");
	HEAD_BAD("\n\n", "status line");
	HEAD_BAD("HTTP/1.1\n\n", "status line");
	HEAD_BAD("Content-Length: 5\r\n\r\n", "status line");

	/* A NUL in the reason phrase. */
	struct h1_head g;
	const char    *why;
	static const char nul[] = "HTTP/1.1 200 O\0K\r\n\r\n";
	ASSERT_INT_EQ(parse_n(nul, sizeof(nul) - 1, &g, &why), -1);
}

static void
test_fields(void)
{
	static struct h1_head h;
	const char           *why;

	HEAD_BAD("HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n", "folded");
	HEAD_BAD("HTTP/1.1 200 OK\r\nX-A: 1\r\n\tfolded\r\n\r\n", "folded");
	HEAD_BAD("HTTP/1.1 200 OK\r\n X-A: 1\r\n\r\n", "folded");
	HEAD_BAD("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "header line");
	HEAD_BAD("HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", "header line");
	HEAD_BAD("HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", "header line");
	HEAD_BAD("HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n", "header line");
	HEAD_BAD("HTTP/1.1 200 OK\r\nX-A\t: 1\r\n\r\n", "header line");
	HEAD_BAD("HTTP/1.1 200 OK\r\nX(A): 1\r\n\r\n", "header line");
	HEAD_BAD("HTTP/1.1 200 OK\r\nX/A: 1\r\n\r\n", "header line");
	HEAD_BAD("HTTP/1.1 200 OK\r\nX\x80: 1\r\n\r\n", "header line");
	HEAD_BAD("HTTP/1.1 200 OK\r\nX\rA: 1\r\n\r\n", "header line");
	HEAD_BAD("HTTP/1.1 200 OK\r\nX-A: a\x01" "b\r\n\r\n", "control character");
	HEAD_BAD("HTTP/1.1 200 OK\r\nX-A: a\x7f" "b\r\n\r\n", "control character");
	HEAD_BAD("HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", "control character");
	HEAD_BAD("HTTP/1.1 200 OK\r\nX-A: a\x1b[31m\r\n\r\n", "control character");
	HEAD_BAD("HTTP/1.1 200 OK\r\nX-A: ab\r\r\n\r\n", "control character");
	static const char nul[] = "HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n";
	ASSERT_INT_EQ(parse_n(nul, sizeof(nul) - 1, &h, &why), -1);
	ASSERT_CONTAINS(why, "control character");
	static const char nulname[] = "HTTP/1.1 200 OK\r\nX\0A: b\r\n\r\n";
	ASSERT_INT_EQ(parse_n(nulname, sizeof(nulname) - 1, &h, &why), -1);
	/* A value may be only blanks, or hold a colon. */
	HEAD_OK("HTTP/1.1 200 OK\r\nX-A: \t \r\nX-B: a:b: c\r\n\r\n", &h);
	ASSERT_STR_EQ(value_of(&h, "x-a"), "");
	ASSERT_STR_EQ(value_of(&h, "x-b"), "a:b: c");
	/* The same name twice: both kept, in order. */
	HEAD_OK("HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n", &h);
	ASSERT_INT_EQ(h.nfields, 2);
	ASSERT_TRUE(h.f[0].vlen == 3 && memcmp(h.f[0].value, "a=1", 3) == 0);
	ASSERT_TRUE(h.f[1].vlen == 3 && memcmp(h.f[1].value, "b=2", 3) == 0);
}

static void
test_content_length(void)
{
	static struct h1_head h;

	HEAD_OK("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &h);
	ASSERT_INT_EQ(h.content_length, 0);
	HEAD_OK("HTTP/1.1 200 OK\r\ncontent-length:12345\r\n\r\n", &h);
	ASSERT_INT_EQ(h.content_length, 12345);
	HEAD_OK("HTTP/1.1 200 OK\r\nContent-Length:  \t7 \t\r\n\r\n", &h);
	ASSERT_INT_EQ(h.content_length, 7);
	HEAD_OK("HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\n", &h);
	ASSERT_INT_EQ(h.content_length, 7);
	HEAD_OK("HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\n", &h);
	ASSERT_INT_EQ(h.content_length, 999999999999999999LL);
	HEAD_OK("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\nContent-Length: 5\r\n\r\n", &h);
	ASSERT_INT_EQ(h.content_length, 5);
	HEAD_OK("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 005\r\n\r\n", &h);
	ASSERT_INT_EQ(h.content_length, 5);
	HEAD_OK("HTTP/1.1 200 OK\r\nX-Content-Length: abc\r\n\r\n", &h);
	ASSERT_INT_EQ(h.content_length, -1);

	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "conflicting");
	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n", "conflicting");
	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", "Content-Length");
	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n", "Content-Length");
	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length");
	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n", "Content-Length");
	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "Content-Length");
	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n", "Content-Length");
	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length: 1.0\r\n\r\n", "Content-Length");
	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", "Content-Length");
	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", "Content-Length");
	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", "Content-Length");
	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\n", "Content-Length");
	HEAD_BAD("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", "Content-Length");
}

static void
test_transfer_encoding(void)
{
	static struct h1_head h;

	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &h);
	ASSERT_TRUE(h.chunked);
	ASSERT_FALSE(h.close);
	ASSERT_INT_EQ(h.content_length, -1);
	HEAD_OK("HTTP/1.1 200 OK\r\ntransfer-encoding: CHUNKED\r\n\r\n", &h);
	ASSERT_TRUE(h.chunked);
	/* Both framings: chunks win, and the connection is not trusted with another exchange. */
	HEAD_OK("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", &h);
	ASSERT_TRUE(h.chunked);
	ASSERT_TRUE(h.close);
	ASSERT_INT_EQ(h.content_length, -1);
	/* Empty list elements do not count. */
	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, ,\r\n\r\n", &h);
	ASSERT_TRUE(h.chunked);
	ASSERT_FALSE(h.close);
	/* HTTP/1.0 with Transfer-Encoding closes, keep-alive or not. */
	HEAD_OK("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n", &h);
	ASSERT_TRUE(h.close);
	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &h);
	ASSERT_TRUE(h.chunked);
	ASSERT_FALSE(h.close);
	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,chunked \r\n\r\n", &h);
	ASSERT_TRUE(h.chunked);
	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip ,\t chunked\r\n\r\n", &h);
	ASSERT_TRUE(h.chunked);
	/* chunked not last: the body ends with the connection. */
	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", &h);
	ASSERT_FALSE(h.chunked);
	ASSERT_TRUE(h.close);
	ASSERT_INT_EQ(h.content_length, -1);
	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", &h);
	ASSERT_FALSE(h.chunked);
	ASSERT_TRUE(h.close);
	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunkedx\r\n\r\n", &h);
	ASSERT_FALSE(h.chunked);
	ASSERT_TRUE(h.close);
	/* An empty list element is ignored (RFC 9110, 5.6.1). */
	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n", &h);
	ASSERT_TRUE(h.chunked);
	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: ,chunked\r\n\r\n", &h);
	ASSERT_TRUE(h.chunked);
	/* Across fields, only the last coding counts. */
	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", &h);
	ASSERT_FALSE(h.chunked);
	ASSERT_TRUE(h.close);
	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", &h);
	ASSERT_TRUE(h.chunked);
	/* Transfer-Encoding wins over Content-Length, in either order. */
	HEAD_OK("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n", &h);
	ASSERT_TRUE(h.chunked);
	ASSERT_INT_EQ(h.content_length, -1);
	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\n", &h);
	ASSERT_TRUE(h.chunked);
	ASSERT_INT_EQ(h.content_length, -1);
	HEAD_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 10\r\n\r\n", &h);
	ASSERT_FALSE(h.chunked);
	ASSERT_TRUE(h.close);
	ASSERT_INT_EQ(h.content_length, -1);
}

static void
test_connection(void)
{
	static struct h1_head h;

	HEAD_OK("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", &h);
	ASSERT_TRUE(h.close);
	HEAD_OK("HTTP/1.1 200 OK\r\nconnection: CLOSE\r\n\r\n", &h);
	ASSERT_TRUE(h.close);
	HEAD_OK("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\n\r\n", &h);
	ASSERT_TRUE(h.close);
	HEAD_OK("HTTP/1.1 200 OK\r\nConnection: upgrade,close \r\n\r\n", &h);
	ASSERT_TRUE(h.close);
	HEAD_OK("HTTP/1.1 200 OK\r\nConnection: x\r\nConnection: close\r\n\r\n", &h);
	ASSERT_TRUE(h.close);
	HEAD_OK("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n", &h);
	ASSERT_FALSE(h.close);
	HEAD_OK("HTTP/1.1 200 OK\r\nConnection: closed\r\n\r\n", &h);
	ASSERT_FALSE(h.close);
	HEAD_OK("HTTP/1.1 200 OK\r\nConnection: upgrade\r\n\r\n", &h);
	ASSERT_FALSE(h.close);
	HEAD_OK("HTTP/1.1 200 OK\r\nX-Connection: close\r\n\r\n", &h);
	ASSERT_FALSE(h.close);
}

static void
test_limits(void)
{
	static struct h1_head h;
	static char           buf[H1_MAX_HEAD_BYTES + 64];
	const char           *why;
	size_t                n;

	/* More fields than kept: counted, and their meaning still applies. */
	n = (size_t)snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\n");
	for (int i = 0; i < H1_MAX_FIELDS + 2; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-%d: %d\r\n", i, i);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "Connection: close\r\nContent-Length: 3\r\n\r\n");
	ASSERT_INT_EQ(parse_n(buf, n, &h, &why), n);
	ASSERT_INT_EQ(h.nfields, H1_MAX_FIELDS);
	ASSERT_INT_EQ(h.dropped, 4);
	ASSERT_TRUE(h.close);
	ASSERT_INT_EQ(h.content_length, 3);
	ASSERT_STR_EQ(value_of(&h, "x-127"), "127");
	ASSERT_STR_EQ(value_of(&h, "x-128"), "(none)");
	/* Exactly H1_MAX_FIELDS: nothing dropped. */
	n = (size_t)snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\n");
	for (int i = 0; i < H1_MAX_FIELDS; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-%d: %d\r\n", i, i);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
	ASSERT_INT_EQ(parse_n(buf, n, &h, &why), n);
	ASSERT_INT_EQ(h.nfields, H1_MAX_FIELDS);
	ASSERT_INT_EQ(h.dropped, 0);

	/* Size: a head without an end is incomplete below the limit and malformed at it. */
	n = (size_t)snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nX-Big: ");
	memset(buf + n, 'a', sizeof(buf) - n);
	ASSERT_INT_EQ(parse_n(buf, H1_MAX_HEAD_BYTES - 1, &h, &why), 0);
	ASSERT_INT_EQ(parse_n(buf, H1_MAX_HEAD_BYTES, &h, &why), -1);
	ASSERT_CONTAINS(why, "too large");
	ASSERT_INT_EQ(parse_n(buf, H1_MAX_HEAD_BYTES + 10, &h, &why), -1);
	/* A complete head of exactly the limit parses; one byte more is refused. */
	memcpy(buf + H1_MAX_HEAD_BYTES - 4, "\r\n\r\n", 4);
	ASSERT_INT_EQ(parse_n(buf, H1_MAX_HEAD_BYTES, &h, &why), H1_MAX_HEAD_BYTES);
	ASSERT_INT_EQ(h.nfields, 1);
	ASSERT_INT_EQ(h.f[0].vlen, H1_MAX_HEAD_BYTES - n - 4);
	ASSERT_INT_EQ(parse_n(buf, H1_MAX_HEAD_BYTES + 10, &h, &why), H1_MAX_HEAD_BYTES);
	memset(buf + H1_MAX_HEAD_BYTES - 4, 'a', 4);
	memcpy(buf + H1_MAX_HEAD_BYTES - 3, "\r\n\r\n", 4);
	ASSERT_INT_EQ(parse_n(buf, H1_MAX_HEAD_BYTES + 1, &h, &why), -1);
	ASSERT_CONTAINS(why, "too large");
	/* Many short fields past the count limit and bare-LF ends, near the size limit. */
	n = (size_t)snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\n");
	while (n + 8 < H1_MAX_HEAD_BYTES)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "A: b\n");
	buf[n++] = '\n';
	ASSERT_INT_EQ(parse_n(buf, n, &h, &why), n);
	ASSERT_INT_EQ(h.nfields + h.dropped, (n - 17) / 5);
}

/* --- chunked bodies --- */

struct dec {
	char                out[8192];
	size_t              olen;
	size_t              used;  /* bytes consumed in all */
	int                 rc;    /* 0, or -1 when the decoder refused the framing */
	const char         *why;
	enum h1_chunk_state state;
	uint64_t            left;
};

/* Feeds in[0..n) as a first piece of `first` bytes, then pieces of `step` bytes (each from a heap
 * copy of its size, so that ASan sees overreads), calling h1_chunked_step until the piece is
 * consumed, the body has ended or the framing is refused; concatenates the data spans. */
static void
decode(const char *in, size_t n, size_t first, size_t step, struct dec *d)
{
	struct h1_chunked st = { 0 };
	size_t            o = 0;
	bool              at_first = true;

	memset(d, 0, sizeof(*d));
	while ((o < n || at_first) && st.state != H1_CH_DONE && d->rc == 0) {
		size_t len = at_first ? MM_MIN(first, n) : MM_MIN(step, n - o), off = 0;
		char  *piece = xmalloc(len ? len : 1);

		at_first = false;

		memcpy(piece, in + o, len);
		while (off < len && st.state != H1_CH_DONE) {
			const char *data;
			size_t      dlen;
			ssize_t     r = h1_chunked_step(&st, piece + off, len - off, &data, &dlen, &d->why);

			if (r < 0) {
				d->rc = -1;
				break;
			}
			if (r == 0) {
				CHECK_FAIL("h1_chunked_step consumed nothing at %zu", o + off);
				d->rc = -2;
				break;
			}
			if (dlen > 0) {
				if (data < piece + off || data + dlen > piece + off + (size_t)r) {
					CHECK_FAIL("span outside what was consumed at %zu", o + off);
				} else if (d->olen + dlen > sizeof(d->out)) {
					CHECK_FAIL("decoded body too large for the test");
				} else {
					memcpy(d->out + d->olen, data, dlen);
					d->olen += dlen;
				}
			}
			off += (size_t)r;
		}
		free(piece);
		d->used = o + off;
		o += len;
	}
	d->state = st.state;
	d->left = st.left;
}

static bool
dec_same(const struct dec *a, const struct dec *b)
{
	return a->rc == b->rc && a->olen == b->olen && memcmp(a->out, b->out, a->olen) == 0 &&
	    (a->rc != 0 || (a->used == b->used && a->state == b->state)) &&
	    (a->rc == 0 || strcmp(a->why, b->why) == 0);
}

/* Decodes `body` (then `after`, which must not be consumed) in one piece, byte by byte, in
 * pieces of every size and split in two at every point: always `want` and H1_CH_DONE. */
static void
chunked_ok(const char *body, const char *want)
{
	char       in[2048];
	size_t     blen = strlen(body), n;
	static struct dec one, other;

	n = (size_t)snprintf(in, sizeof(in), "%sHTTP/1.1 200 OK\r\n", body);
	decode(in, n, n, n, &one);
	ASSERT_INT_EQ(one.rc, 0);
	ASSERT_INT_EQ(one.state, H1_CH_DONE);
	ASSERT_INT_EQ(one.used, blen);
	ASSERT_INT_EQ(one.olen, strlen(want));
	ASSERT_TRUE(one.olen == strlen(want) && memcmp(one.out, want, one.olen) == 0);
	for (size_t step = 1; step <= n; step++) {
		decode(in, n, step, step, &other);
		if (!dec_same(&one, &other))
			CHECK_FAIL("%s: in pieces of %zu: %zu bytes out, used %zu, state %d",
			    body, step, other.olen, other.used, other.state);
		check_count++;
	}
	for (size_t k = 0; k <= n; k++) {
		decode(in, n, k, n, &other);
		if (!dec_same(&one, &other))
			CHECK_FAIL("%s: split at %zu: %zu bytes out, used %zu, state %d",
			    body, k, other.olen, other.used, other.state);
		check_count++;
	}
}

/* Expects in[0..n) refused with a reason that contains `reason`, however it is cut, and the bytes
 * before the fault decoded the same. */
static void
chunked_bad_n(const char *in, size_t n, const char *reason)
{
	static struct dec one, other;

	decode(in, n, n, n, &one);
	ASSERT_INT_EQ(one.rc, -1);
	ASSERT_CONTAINS(one.why, reason);
	for (size_t step = 1; step <= n; step += step < 64 ? 1 : 61) {
		decode(in, n, step, step, &other);
		if (!dec_same(&one, &other))
			CHECK_FAIL("refused body in pieces of %zu: rc %d why %s", step, other.rc,
			    other.why ? other.why : "(null)");
		check_count++;
	}
}

static void
chunked_bad(const char *in, const char *reason)
{
	chunked_bad_n(in, strlen(in), reason);
}

static void
test_chunked_valid(void)
{
	chunked_ok("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world");
	chunked_ok("0\r\n\r\n", "");
	chunked_ok("0\n\n", "");
	chunked_ok("1\r\nx\r\n0\r\n\r\n", "x");
	/* Extensions, with blanks around them. */
	chunked_ok("4;name=val\r\nWiki\r\n5 ; a=\"b c\";d\r\npedia\r\n0;last=1\r\n\r\n", "Wikipedia");
	chunked_ok("2\t;x\r\nab\r\n0 \r\n\r\n", "ab");
	/* Hex digits in either case, leading zeros. */
	chunked_ok("A\r\n0123456789\r\n1f\r\nabcdefghijklmnopqrstuvwxyz01234\r\n"
	    "1F\r\nABCDEFGHIJKLMNOPQRSTUVWXYZ56789\r\n0\r\n\r\n",
	    "0123456789abcdefghijklmnopqrstuvwxyz01234ABCDEFGHIJKLMNOPQRSTUVWXYZ56789");
	chunked_ok("003\r\nabc\r\n000000000000000\r\n\r\n", "abc");
	chunked_ok("00000000000000a\r\n0123456789\r\n0\r\n\r\n", "0123456789");
	/* Bare LF anywhere a line ends, or mixed. */
	chunked_ok("3\nabc\n2\nde\n0\n\n", "abcde");
	chunked_ok("3\r\nabc\n2\nde\r\n0\n\r\n", "abcde");
	/* Trailers after the last chunk. */
	chunked_ok("3\r\nabc\r\n0\r\nX-Trailer: 1\r\nX-Other: two\r\n\r\n", "abc");
	chunked_ok("3\nabc\n0\nX-Trailer: 1\n\n", "abc");
	chunked_ok("0\r\nA: b\r\n\r\n", "");
	/* Data that looks like framing is data. */
	chunked_ok("6\r\n0\r\n\r\nx\r\n0\r\n\r\n", "0\r\n\r\nx");
	chunked_ok("5\r\n\r\n\r\n\n\r\n0\r\n\r\n", "\r\n\r\n\n");
	/* A chunk larger than most pieces. */
	char big[1200], want[1100];
	memset(want, 'z', 1024);
	want[1024] = '\0';
	snprintf(big, sizeof(big), "400\r\n%s\r\n1\r\n!\r\n0\r\n\r\n", want);
	want[1024] = '!';
	want[1025] = '\0';
	chunked_ok(big, want);
}

static void
test_chunked_steps(void)
{
	struct h1_chunked st = { 0 }, saved;
	const char       *in = "5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\nnext", *data, *why = NULL;
	size_t            dlen;
	ssize_t           r;

	/* It stops after each span. */
	r = h1_chunked_step(&st, in, strlen(in), &data, &dlen, &why);
	ASSERT_INT_EQ(r, 8);
	ASSERT_TRUE(data == in + 3);
	ASSERT_INT_EQ(dlen, 5);
	ASSERT_INT_EQ(st.state, H1_CH_DATA_CR);
	saved = st;
	r = h1_chunked_step(&st, in + 8, strlen(in) - 8, &data, &dlen, &why);
	ASSERT_INT_EQ(r, 8);
	ASSERT_TRUE(data == in + 13);
	ASSERT_INT_EQ(dlen, 3);
	r = h1_chunked_step(&st, in + 16, strlen(in) - 16, &data, &dlen, &why);
	ASSERT_INT_EQ(r, 7);
	ASSERT_NULL(data);
	ASSERT_INT_EQ(dlen, 0);
	ASSERT_INT_EQ(st.state, H1_CH_DONE);
	/* Done: nothing more is consumed. */
	r = h1_chunked_step(&st, "xyz", 3, &data, &dlen, &why);
	ASSERT_INT_EQ(r, 0);
	ASSERT_INT_EQ(dlen, 0);
	/* A copy is a checkpoint. */
	st = saved;
	r = h1_chunked_step(&st, in + 8, strlen(in) - 8, &data, &dlen, &why);
	ASSERT_INT_EQ(r, 8);
	ASSERT_INT_EQ(dlen, 3);
	/* Nothing in, nothing out. */
	memset(&st, 0, sizeof(st));
	ASSERT_INT_EQ(h1_chunked_step(&st, "", 0, &data, &dlen, &why), 0);
	ASSERT_INT_EQ(st.state, H1_CH_SIZE);
	/* A partial chunk's data comes out as it arrives. */
	r = h1_chunked_step(&st, "a\r\n0123", 7, &data, &dlen, &why);
	ASSERT_INT_EQ(r, 7);
	ASSERT_INT_EQ(dlen, 4);
	ASSERT_INT_EQ(st.state, H1_CH_DATA);
	ASSERT_INT_EQ(st.left, 6);
	/* The largest size (15 hex digits) is taken; the data then just has not come yet. */
	static struct dec d;
	const char *fifteen = "fffffffffffffff\r\nabc";
	decode(fifteen, strlen(fifteen), 100, 100, &d);
	ASSERT_INT_EQ(d.rc, 0);
	ASSERT_INT_EQ(d.state, H1_CH_DATA);
	ASSERT_INT_EQ(d.olen, 3);
	ASSERT_TRUE(d.left == 0xfffffffffffffffULL - 3);
	/* An incomplete body is not done, whatever the cut. */
	const char *part = "5\r\nhello\r\n0\r\nX: y\r\n";
	for (size_t k = 0; k < strlen(part); k++) {
		decode(part, k, k, k, &d);
		ASSERT_INT_EQ(d.rc, 0);
		if (d.state == H1_CH_DONE)
			CHECK_FAIL("done after %zu bytes", k);
	}
}

static void
test_chunked_errors(void)
{
	static char buf[H1_MAX_TRAILER + H1_MAX_CHUNK_LINE + 64];
	static struct dec d;
	size_t      n;

	chunked_bad("10000000000000000\r\n", "too large");
	chunked_bad("0000000000000000\r\n\r\n", "too large");
	chunked_bad("ffffffffffffffff\r\n", "too large");
	chunked_bad("x\r\n", "bad chunk size");
	chunked_bad("\r\n", "bad chunk size");
	chunked_bad("\n", "bad chunk size");
	chunked_bad(";a=b\r\n", "bad chunk size");
	chunked_bad(" 5\r\nhello\r\n", "bad chunk size");
	chunked_bad("-5\r\nhello\r\n", "bad chunk size");
	chunked_bad("+5\r\nhello\r\n", "bad chunk size");
	chunked_bad("0x5\r\nhello\r\n", "bad chunk size");
	chunked_bad("5g\r\nhello\r\n", "bad chunk size");
	/* After the digits: blanks, then ;extensions, then the line end, nothing else. */
	chunked_bad("5 5\r\nhello\r\n", "bad chunk size line");
	chunked_bad("5\rX\nhello\r\n", "bad chunk size line");
	chunked_bad("5;a=\x01\r\nhello\r\n", "bad chunk size line");
	chunked_bad("5\r\nhello\r\nz\r\n", "bad chunk size");
	chunked_bad("5\r\nhello\r\n\r\n0\r\n\r\n", "bad chunk size");
	chunked_bad("5\r\nhelloX\r\n0\r\n\r\n", "line end after chunk data");
	chunked_bad("5\r\nhello world\r\n", "line end after chunk data");
	chunked_bad("5\r\nhello\rX\n0\r\n\r\n", "line end after chunk data");
	chunked_bad("5\r\nhello\r\r\n0\r\n\r\n", "line end after chunk data");
	chunked_bad("3\r\nabc\r\n5\r\nhelloo", "line end after chunk data");
	/* The size line: H1_MAX_CHUNK_LINE bytes before its LF at most. */
	n = (size_t)snprintf(buf, sizeof(buf), "1;ext=");
	memset(buf + n, 'v', H1_MAX_CHUNK_LINE - n - 1);
	n = H1_MAX_CHUNK_LINE - 1;
	memcpy(buf + n, "\r\nx\r\n0\r\n\r\n", 10);
	decode(buf, n + 10, n + 10, n + 10, &d);
	ASSERT_INT_EQ(d.rc, 0);
	ASSERT_INT_EQ(d.state, H1_CH_DONE);
	ASSERT_INT_EQ(d.olen, 1);
	decode(buf, n + 10, 1, 1, &d);
	ASSERT_INT_EQ(d.rc, 0);
	ASSERT_INT_EQ(d.state, H1_CH_DONE);
	buf[n] = 'v';
	memcpy(buf + n + 1, "\r\nx\r\n0\r\n\r\n", 10);
	chunked_bad_n(buf, n + 11, "too long");
	/* ... and a line that never ends is refused past the limit, not held. */
	memset(buf + 6, 'v', H1_MAX_CHUNK_LINE * 2);
	chunked_bad_n(buf, H1_MAX_CHUNK_LINE * 2, "too long");
	/* Trailers: H1_MAX_TRAILER bytes in all, their blank line included. */
	n = (size_t)snprintf(buf, sizeof(buf), "1\r\nx\r\n0\r\n");
	size_t start = n;
	while (n - start + 15 + 4 <= H1_MAX_TRAILER - 2)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-T: 12345678\r\n");
	/* Pad the last line so that the trailer is exactly the limit. */
	size_t pad = H1_MAX_TRAILER - 2 - (n - start);
	memcpy(buf + n, "Y:", 2);
	memset(buf + n + 2, 'p', pad - 4);
	memcpy(buf + n + pad - 2, "\r\n\r\n", 4);
	n += pad + 2;
	ASSERT_INT_EQ(n - start, H1_MAX_TRAILER);
	decode(buf, n, n, n, &d);
	ASSERT_INT_EQ(d.rc, 0);
	ASSERT_INT_EQ(d.state, H1_CH_DONE);
	ASSERT_INT_EQ(d.used, n);
	ASSERT_INT_EQ(d.olen, 1);
	decode(buf, n, 1, 1, &d);
	ASSERT_INT_EQ(d.rc, 0);
	ASSERT_INT_EQ(d.state, H1_CH_DONE);
	/* One byte more in the last trailer line. */
	memmove(buf + n - 3, buf + n - 4, 4);
	buf[n - 4] = 'p';
	chunked_bad_n(buf, n + 1, "trailer too large");
	/* A trailer that never ends. */
	memset(buf + start, 'q', H1_MAX_TRAILER + 10);
	chunked_bad_n(buf, start + H1_MAX_TRAILER + 10, "trailer too large");
}

int
main(void)
{
	test_url();
	test_target();
	test_head_basic();
	test_field_is();
	test_head_incomplete();
	test_status_line();
	test_fields();
	test_content_length();
	test_transfer_encoding();
	test_connection();
	test_limits();
	test_chunked_valid();
	test_chunked_steps();
	test_chunked_errors();
	CHECK_DONE();
}
