/* activity: the last requests served, for operators (the web page's activity table and its
 * charts). A bounded ring in memory: the newest replaces the oldest once it holds
 * cfg.activity_max entries (llama-swap's metricsMaxInMemory). Filled where a request ends. */
#ifndef MODELMUX_ACTIVITY_H
#define MODELMUX_ACTIVITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACTIVITY_DEF_ENTRIES  1000   /* metricsMaxInMemory's default (llama-swap's too) */
#define ACTIVITY_MAX_ENTRIES  100000 /* its bound; 0 turns the ring off */
#define ACTIVITY_MODEL_BYTES  128    /* a longer model name is cut */
#define ACTIVITY_ROUTE_BYTES  32     /* route label ("chat", "transcriptions") */
#define ACTIVITY_PAGE_MAX     1000   /* entries one GET /api/activity returns at most */

/* One finished request. Times are ms; -1 = did not happen (never granted, no first byte);
 * token counts are -1 when the response reported none. */
struct activity_entry {
	uint64_t id;          /* set by activity_add: 1, 2, … for the daemon's life */
	int64_t  time_ms;     /* wall clock (ms since the epoch) when the request ended */
	char     model[ACTIVITY_MODEL_BYTES];
	char     route[ACTIVITY_ROUTE_BYTES];
	int      status;
	bool     stream;      /* the answer was an event stream */
	int64_t  queued_ms, first_byte_ms, total_ms;
	long long prompt_tokens, completion_tokens;
};

/* Copies *e into the ring (its id is assigned), which holds at most `cap` entries: a smaller
 * cap than before drops the oldest, 0 empties it and keeps nothing. */
void activity_add(const struct activity_entry *e, size_t cap);

/* Entries held, and the one `i` places from the oldest (NULL past the end); owned by the
 * ring, valid until the next activity_add. */
size_t activity_count(void);
const struct activity_entry *activity_get(size_t i);

/* Completion tokens per second of generation: over (total - first byte) for a stream, else over
 * (total - queued); -1 when the counts or the times are missing. */
double activity_tokens_per_s(const struct activity_entry *e);

/* The entries with id > after, oldest first, at most `limit` (capped at ACTIVITY_PAGE_MAX, the
 * newest kept), as {"object":"list","capacity":N,"last_id":K,"data":[…]}. Caller frees. */
char *activity_json(uint64_t after, size_t limit, size_t cap);

/* Frees the ring (at exit, and in tests). */
void activity_free(void);

#endif
