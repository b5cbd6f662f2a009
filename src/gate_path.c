/* gate_path: the checks of /upstream/<model>/<rest> paths (decoded once, refused on dot
 * segments, encoded slashes, backslashes, control characters, absolute URLs) and their
 * encoding for the backend's URL. Pure functions; see include/modelmux/gate.h. */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "modelmux/gate.h"
#include "modelmux/util.h"

/* ---- paths --------------------------------------------------------------------------------- */

/* "scheme:/" at the start of s (an RFC 3986 scheme, then a slash: "http://x" collapsed). */
static bool
is_absolute_url(const char *s)
{
	if (!isalpha((unsigned char)*s))
		return false;
	for (s++; isalnum((unsigned char)*s) || *s == '+' || *s == '-' || *s == '.'; s++)
		;
	return s[0] == ':' && s[1] == '/';
}

static int
path_fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return -1;
}

int
gate_upstream_path(const char *raw, char *out, size_t n, const char **why)
{
	size_t      o = 0, seg;
	const char *p;

	if (why != NULL)
		*why = NULL;
	if (raw == NULL || out == NULL || n < 2)
		return path_fail(why, "path too long");
	out[o++] = '/';
	seg = o;
	for (p = raw; *p != '\0'; p++) {
		unsigned char ch = (unsigned char)*p;
		int           hi, lo;

		if (ch == '\\')
			return path_fail(why, "backslash in path");
		if (ch < 0x20 || ch == 0x7f)
			return path_fail(why, "control character in path");
		if (ch == '%') {
			if ((hi = hex_digit((unsigned char)p[1])) == -1 ||
			    (lo = hex_digit((unsigned char)p[2])) == -1)
				return path_fail(why, "invalid percent escape in path");
			ch = (unsigned char)(hi << 4 | lo);
			p += 2;
			if (ch == '/')
				return path_fail(why, "encoded slash in path");
			if (ch == '\\')
				return path_fail(why, "encoded backslash in path");
			if (ch == 0)
				return path_fail(why, "encoded NUL in path");
			if (ch < 0x20 || ch == 0x7f)
				return path_fail(why, "control character in path");
		} else if (ch == '/') {
			if (o == seg)
				continue; /* collapse "//" and the leading '/' */
			if ((o - seg == 1 && out[seg] == '.') ||
			    (o - seg == 2 && out[seg] == '.' && out[seg + 1] == '.'))
				return path_fail(why, "dot segment in path");
			if (o + 1 >= n)
				return path_fail(why, "path too long");
			out[o++] = '/';
			seg = o;
			continue;
		}
		if (o + 1 >= n)
			return path_fail(why, "path too long");
		out[o++] = (char)ch;
	}
	if ((o - seg == 1 && out[seg] == '.') ||
	    (o - seg == 2 && out[seg] == '.' && out[seg + 1] == '.'))
		return path_fail(why, "dot segment in path");
	out[o] = '\0';
	if (is_absolute_url(out + 1))
		return path_fail(why, "absolute URL in path");
	return (int)o;
}

int
gate_path_encode(const char *path, char *out, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t            o = 0;

	if (out == NULL || n == 0)
		return -1;
	for (const unsigned char *p = (const unsigned char *)path; *p != '\0'; p++) {
		if (isalnum(*p) || strchr("-._~/!$&'()*+,;=:@", *p) != NULL) {
			if (o + 1 >= n)
				return -1;
			out[o++] = (char)*p;
		} else {
			if (o + 3 >= n)
				return -1;
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
	return (int)o;
}
