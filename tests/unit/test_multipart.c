/* Unit tests of the multipart scanner: the model field and its offsets, whatever the chunking. */
#include <string.h>

#include "check.h"
#include "modelmux/multipart.h"

static const char *ctype = "multipart/form-data; boundary=----b0undary";
static const char body[] =
    "------b0undary\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
    "Content-Type: audio/wav\r\n\r\n"
    "RIFF\r\n----b0und\r\n--not-it\r\r\n"
    "\r\n------b0undary\r\n"
    "Content-Disposition: form-data; name=\"model\"\r\n\r\n"
    "whisper-large\r\n"
    "------b0undary\r\n"
    "Content-Disposition: form-data; name=\"language\"\r\n\r\n"
    "en\r\n"
    "------b0undary--\r\n";

/* Feeds the body in pieces of `step` bytes. */
static struct mp_scan *
scan(const char *b, size_t len, size_t step, int *rc)
{
	const char     *err = NULL;
	struct mp_scan *s = mp_new(ctype, "model", &err);

	*rc = 0;
	for (size_t o = 0; o < len && *rc == 0; o += step)
		*rc = mp_feed(s, b + o, len - o < step ? len - o : step, &err);
	return s;
}

static void
test_every_chunking(void)
{
	size_t len = sizeof(body) - 1;

	for (size_t step = 1; step <= len; step++) {
		int             rc;
		uint64_t        a = 0, z = 0;
		struct mp_scan *s = scan(body, len, step, &rc);
		const char     *v = mp_field(s, &a, &z);

		ASSERT_INT_EQ(rc, 0);
		ASSERT_TRUE(mp_complete(s));
		ASSERT_STR_EQ(v, "whisper-large");
		ASSERT_INT_EQ(z - a, 13);
		ASSERT_TRUE(memcmp(body + a, "whisper-large", 13) == 0);
		mp_free(s);
	}
}

static void
test_errors(void)
{
	const char *err = NULL;
	char        many[MP_MAX_PARTS * 64 + 64];
	size_t      n = 0;
	int         rc;

	ASSERT_NULL(mp_new("application/json", "model", &err));
	ASSERT_NULL(mp_new("multipart/form-data", "model", &err));
	ASSERT_NULL(mp_new("multipart/form-data; boundary=", "model", &err));
	struct mp_scan *q = mp_new("multipart/form-data; charset=x; boundary=\"q b\"", "model", &err);
	ASSERT_NOT_NULL(q);
	ASSERT_INT_EQ(mp_feed(q, "--q b\r\nContent-Disposition: form-data; name=model\r\n\r\nm1\r\n--q b--",
	    strlen("--q b\r\nContent-Disposition: form-data; name=model\r\n\r\nm1\r\n--q b--"), &err), 0);
	uint64_t a, z;
	ASSERT_STR_EQ(mp_field(q, &a, &z), "m1");
	mp_free(q);

	/* Too many parts. */
	for (int i = 0; i <= MP_MAX_PARTS; i++)
		n += (size_t)snprintf(many + n, sizeof(many) - n, "------b0undary\r\n\r\nx\r\n");
	struct mp_scan *s = scan(many, n, n, &rc);
	ASSERT_INT_EQ(rc, -1);
	mp_free(s);
	/* A model value past the limit. */
	char big[MP_MAX_FIELD_VALUE + 200];
	int  k = snprintf(big, sizeof(big), "------b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n");
	memset(big + k, 'm', MP_MAX_FIELD_VALUE + 10);
	s = scan(big, (size_t)k + MP_MAX_FIELD_VALUE + 10, 7, &rc);
	ASSERT_INT_EQ(rc, 0); /* not over until the part ends */
	rc = mp_feed(s, "\r\n------b0undary--", 17, &err);
	ASSERT_INT_EQ(rc, -1);
	ASSERT_CONTAINS(err, "too long");
	mp_free(s);
	/* A filename="model" is not the model field; no model at all is not an error. */
	const char *b2 = "------b0undary\r\nContent-Disposition: form-data; name=\"f\"; filename=\"model\"\r\n\r\nx\r\n------b0undary--";
	s = scan(b2, strlen(b2), 3, &rc);
	ASSERT_INT_EQ(rc, 0);
	ASSERT_NULL(mp_field(s, &a, &z));
	ASSERT_TRUE(mp_complete(s));
	mp_free(s);
	/* The model field twice (found by fuzz_multipart): refused when the second one starts. */
	const char *b3 = "------b0undary\r\nContent-Disposition: form-data; name=model\r\n\r\na\r\n"
	                 "------b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nb\r\n"
	                 "------b0undary--";
	s = scan(b3, strlen(b3), 5, &rc);
	ASSERT_INT_EQ(rc, -1);
	ASSERT_FALSE(mp_complete(s));
	mp_free(s);
	/* Truncated body: never complete. */
	s = scan(body, 100, 9, &rc);
	ASSERT_FALSE(mp_complete(s));
	mp_free(s);
}

int
main(void)
{
	test_every_chunking();
	test_errors();
	CHECK_DONE();
}
