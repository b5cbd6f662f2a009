/* multipart: an incremental multipart/form-data scanner. It sees the body as it streams and
 * keeps nothing of it but the value of one named field (the "model") and where that value
 * lies in the stream, so the body itself can be forwarded untouched or with that one value
 * replaced. Pure: no I/O; unit-tested and fuzzed. */
#ifndef MODELMUX_MULTIPART_H
#define MODELMUX_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MP_MAX_BOUNDARY     70    /* RFC 2046 */
#define MP_MAX_PART_HEADERS 8192  /* bytes of one part's header block */
#define MP_MAX_FIELD_VALUE  512   /* bytes of the watched field's value */
#define MP_MAX_PARTS        64    /* parts in one body */

struct mp_scan;

/* Starts a scan for `field` in a body whose Content-Type is `ctype`. NULL with *err when the
 * type is not multipart/form-data with a usable boundary. Free with mp_free. */
struct mp_scan *mp_new(const char *ctype, const char *field, const char **err);
void mp_free(struct mp_scan *s);

/* Feeds the next n bytes of the body. -1 with *err (static) when the body breaks a limit, is
 * malformed or holds the watched field twice; the scan is then over. */
int mp_feed(struct mp_scan *s, const char *p, size_t n, const char **err);

/* After the whole body: true when it ended properly (closing delimiter seen). */
bool mp_complete(const struct mp_scan *s);

/* The watched field, once its part is over: its value (NUL-terminated) and the offsets of the
 * value's first byte and one past its last in the body. NULL when not (yet) seen. */
const char *mp_field(const struct mp_scan *s, uint64_t *start, uint64_t *end);

#endif
