/* Unit tests of util's line ring: whole lines kept, the oldest pushed out, reads across the wrap. */
#include "check.h"
#include "modelmux/util.h"

/* The number of lines held. */
static size_t
held_lines(const struct lring *r)
{
	size_t at = 0, n = 0;

	while (lring_next(r, &at, NULL, 0) != LRING_END)
		n++;
	return n;
}

/* All lines held, joined with '|'. */
static const char *
joined(const struct lring *r, char *out, size_t n)
{
	size_t at = 0, o = 0, k;
	char   line[64];

	while ((k = lring_next(r, &at, line, sizeof(line))) != LRING_END && o + k + 2 < n) {
		if (o > 0)
			out[o++] = '|';
		memcpy(out + o, line, k);
		o += k;
	}
	out[o] = '\0';
	return out;
}

static void
test_lring(void)
{
	char         mem[16], out[256], line[8];
	struct lring r = { .buf = mem, .cap = sizeof(mem) };
	size_t       at = 0;

	ASSERT_INT_EQ(lring_next(&r, &at, line, sizeof(line)), LRING_END);
	lring_put(&r, "one\n", 4);
	lring_put(&r, "two", 3); /* its '\n' added */
	ASSERT_STR_EQ(joined(&r, out, sizeof(out)), "one|two");
	ASSERT_INT_EQ(held_lines(&r), 2);
	ASSERT_INT_EQ(r.used, 8);
	lring_put(&r, "three\n", 6); /* 14 of 16 */
	lring_put(&r, "four\n", 5);  /* "one" goes, and the write wraps */
	ASSERT_STR_EQ(joined(&r, out, sizeof(out)), "two|three|four");
	ASSERT_INT_EQ(held_lines(&r), 3);
	lring_put(&r, "fifteen bytes!\n", 15); /* everything else goes */
	ASSERT_STR_EQ(joined(&r, out, sizeof(out)), "fifteen bytes!");
	ASSERT_INT_EQ(held_lines(&r), 1);
	lring_put(&r, "seventeen bytes!\n", 17); /* longer than the ring: cut to fit alone */
	ASSERT_STR_EQ(joined(&r, out, sizeof(out)), "seventeen bytes");
	ASSERT_INT_EQ(held_lines(&r), 1);
	ASSERT_INT_EQ(r.used, 16);
	lring_put(&r, "a\n", 2);
	lring_put(&r, "", 0); /* an empty line */
	ASSERT_STR_EQ(joined(&r, out, sizeof(out)), "a|");
	ASSERT_INT_EQ(held_lines(&r), 2);

	/* A short destination gets the line's first bytes; NULL skips it. */
	lring_put(&r, "abcdefghij", 10);
	at = 0;
	ASSERT_INT_EQ(lring_next(&r, &at, NULL, 0), 0); /* "a", skipped */
	ASSERT_INT_EQ(lring_next(&r, &at, line, 3), 0);
	ASSERT_INT_EQ(lring_next(&r, &at, line, 3), 3);
	ASSERT_TRUE(memcmp(line, "abc", 3) == 0);
	ASSERT_INT_EQ(lring_next(&r, &at, line, 3), LRING_END);

	/* A '\n' inside makes more lines; dropping them later drops them one by one. */
	lring_put(&r, "a\nb\nc", 5);
	ASSERT_STR_EQ(joined(&r, out, sizeof(out)), "a|b|c"); /* the rest made room */
	ASSERT_INT_EQ(held_lines(&r), 3);
	lring_put(&r, "fourteen bytes", 14);
	ASSERT_STR_EQ(joined(&r, out, sizeof(out)), "fourteen bytes");
	ASSERT_INT_EQ(held_lines(&r), 1);
}

/* Many lines of many lengths: the ring always holds the newest lines that fit, in order. */
static void
test_lring_churn(void)
{
	char         mem[100], text[64], got[64];
	struct lring r = { .buf = mem, .cap = sizeof(mem) };

	for (int i = 0; i < 2000; i++) {
		int    n = snprintf(text, sizeof(text), "%d:%.*s", i, i % 40, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		size_t at = 0, k, held = 0;
		int    last = -1;

		lring_put(&r, text, (size_t)n);
		while ((k = lring_next(&r, &at, got, sizeof(got))) != LRING_END) {
			int v = (int)strtol(got, NULL, 10);

			if (v <= last)
				CHECK_FAIL("line %d after %d", v, last);
			last = v;
			held += k + 1;
		}
		ASSERT_INT_EQ(last, i);
		ASSERT_INT_EQ(held, r.used);
		if (check_failures)
			return;
	}
}

static void
test_cidr(void)
{
	struct cidr c;

	ASSERT_INT_EQ(cidr_parse("10.0.0.0/8", &c), 0);
	ASSERT_TRUE(cidr_match(&c, "10.200.3.4"));
	ASSERT_FALSE(cidr_match(&c, "11.0.0.1"));
	ASSERT_TRUE(cidr_match(&c, "::ffff:10.1.1.1")); /* v4-mapped */
	ASSERT_FALSE(cidr_match(&c, "not an address"));
	ASSERT_INT_EQ(cidr_parse("127.0.0.2", &c), 0);
	ASSERT_TRUE(cidr_match(&c, "127.0.0.2"));
	ASSERT_FALSE(cidr_match(&c, "127.0.0.3"));
	ASSERT_INT_EQ(cidr_parse("2001:db8::/33", &c), 0);
	ASSERT_TRUE(cidr_match(&c, "2001:db8:7fff::1"));
	ASSERT_FALSE(cidr_match(&c, "2001:db8:8000::1"));
	ASSERT_FALSE(cidr_match(&c, "10.0.0.1"));
	ASSERT_INT_EQ(cidr_parse("0.0.0.0/0", &c), 0);
	ASSERT_TRUE(cidr_match(&c, "8.8.8.8"));
	ASSERT_INT_EQ(cidr_parse("10.0.0.0/33", &c), -1);
	ASSERT_INT_EQ(cidr_parse("10.0.0.0/", &c), -1);
	ASSERT_INT_EQ(cidr_parse("/8", &c), -1);
	ASSERT_INT_EQ(cidr_parse("host.example", &c), -1);
	ASSERT_INT_EQ(cidr_parse("::1/129", &c), -1);
}

int
main(void)
{
	test_cidr();
	test_lring();
	test_lring_churn();
	CHECK_DONE();
}
