/* check.h: the unit-test macros. Each failure prints the expression, both values and file:line;
 * the program exits 1 at the end if anything failed. */
#ifndef MODELMUX_CHECK_H
#define MODELMUX_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK_FAIL(...) do { \
	fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); \
	fputc('\n', stderr); \
	check_failures++; \
} while (0)

#define ASSERT_TRUE(e) do { check_count++; if (!(e)) CHECK_FAIL("%s", #e); } while (0)
#define ASSERT_FALSE(e) ASSERT_TRUE(!(e))
#define ASSERT_INT_EQ(a, b) do { \
	long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
	check_count++; \
	if (check_a_ != check_b_) \
		CHECK_FAIL("%s == %s: %lld != %lld", #a, #b, check_a_, check_b_); \
} while (0)
#define ASSERT_STR_EQ(a, b) do { \
	const char *check_a_ = (a), *check_b_ = (b); \
	check_count++; \
	if (check_a_ == NULL || check_b_ == NULL || strcmp(check_a_, check_b_) != 0) \
		CHECK_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, \
		    check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)"); \
} while (0)
#define ASSERT_NULL(e) ASSERT_TRUE((e) == NULL)
#define ASSERT_NOT_NULL(e) ASSERT_TRUE((e) != NULL)
/* Is `needle` a substring of `hay`? */
#define ASSERT_CONTAINS(hay, needle) do { \
	const char *check_h_ = (hay), *check_n_ = (needle); \
	check_count++; \
	if (check_h_ == NULL || strstr(check_h_, check_n_) == NULL) \
		CHECK_FAIL("%s contains %s: \"%s\" lacks \"%s\"", #hay, #needle, \
		    check_h_ ? check_h_ : "(null)", check_n_); \
} while (0)

#define CHECK_DONE() do { \
	printf("%d checks, %d failed\n", check_count, check_failures); \
	return check_failures ? 1 : 0; \
} while (0)

#endif
