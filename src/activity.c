/* activity: a bounded ring of the last requests served. */
#include <string.h>

#include <cjson/cJSON.h>

#include "modelmux/activity.h"
#include "modelmux/log.h"
#include "modelmux/util.h"

static struct {
	struct activity_entry *e;    /* cap slots */
	size_t                 cap;
	size_t                 head; /* the oldest */
	size_t                 n;
	uint64_t               last_id;
} R;

/* Rebuilds the ring with room for `cap`, keeping the newest entries that fit. */
static void
resize(size_t cap)
{
	struct activity_entry *e = cap ? xcalloc(cap, sizeof(*e)) : NULL;
	size_t                 keep = MM_MIN(R.n, cap);

	for (size_t i = 0; i < keep; i++)
		e[i] = R.e[(R.head + R.n - keep + i) % R.cap];
	free(R.e);
	R.e = e;
	R.cap = cap;
	R.head = 0;
	R.n = keep;
}

void
activity_add(const struct activity_entry *e, size_t cap)
{
	struct activity_entry *slot;

	cap = MM_MIN(cap, (size_t)ACTIVITY_MAX_ENTRIES);
	if (cap != R.cap)
		resize(cap);
	R.last_id++;
	if (cap == 0)
		return;
	if (R.n < R.cap) {
		slot = &R.e[(R.head + R.n) % R.cap];
		R.n++;
	} else {
		slot = &R.e[R.head];
		R.head = (R.head + 1) % R.cap;
	}
	*slot = *e;
	slot->id = R.last_id;
	slot->model[sizeof(slot->model) - 1] = '\0';
	slot->route[sizeof(slot->route) - 1] = '\0';
}

size_t
activity_count(void)
{
	return R.n;
}

const struct activity_entry *
activity_get(size_t i)
{
	return i < R.n ? &R.e[(R.head + i) % R.cap] : NULL;
}

double
activity_tokens_per_s(const struct activity_entry *e)
{
	int64_t from = e->stream ? e->first_byte_ms : e->queued_ms;
	int64_t ms;

	if (e->completion_tokens <= 0 || e->total_ms < 0 || from < 0 || from > e->total_ms)
		return -1.0;
	ms = e->total_ms - from;
	if (ms <= 0)
		return -1.0;
	return (double)e->completion_tokens * 1000.0 / (double)ms;
}

static void
add_ms(cJSON *o, const char *name, int64_t v)
{
	if (v >= 0)
		cJSON_AddNumberToObject(o, name, (double)v);
	else
		cJSON_AddNullToObject(o, name);
}

static cJSON *
entry_json(const struct activity_entry *e)
{
	cJSON *o = cJSON_CreateObject();
	double tps = activity_tokens_per_s(e);

	cJSON_AddNumberToObject(o, "id", (double)e->id);
	cJSON_AddNumberToObject(o, "time", (double)e->time_ms / 1000.0);
	cJSON_AddStringToObject(o, "model", e->model);
	cJSON_AddStringToObject(o, "route", e->route);
	cJSON_AddNumberToObject(o, "status", e->status);
	cJSON_AddBoolToObject(o, "stream", e->stream);
	add_ms(o, "queued_ms", e->queued_ms);
	add_ms(o, "ttfb_ms", e->first_byte_ms);
	add_ms(o, "total_ms", e->total_ms);
	add_ms(o, "prompt_tokens", e->prompt_tokens);
	add_ms(o, "completion_tokens", e->completion_tokens);
	if (tps >= 0)
		cJSON_AddNumberToObject(o, "tokens_per_s", (double)(int64_t)(tps * 10.0 + 0.5) / 10.0);
	else
		cJSON_AddNullToObject(o, "tokens_per_s");
	return o;
}

char *
activity_json(uint64_t after, size_t limit, size_t cap)
{
	cJSON *root = cJSON_CreateObject(), *data;
	size_t first = R.n;
	char  *s;

	limit = MM_MIN(limit, (size_t)ACTIVITY_PAGE_MAX);
	/* Ids rise with the ring's order: the first one past `after`, then the newest `limit`. */
	for (size_t i = 0; i < R.n; i++) {
		if (activity_get(i)->id > after) {
			first = i;
			break;
		}
	}
	if (R.n - first > limit)
		first = R.n - limit;
	cJSON_AddStringToObject(root, "object", "list");
	cJSON_AddNumberToObject(root, "capacity", (double)MM_MIN(cap, (size_t)ACTIVITY_MAX_ENTRIES));
	cJSON_AddNumberToObject(root, "last_id", (double)R.last_id);
	data = cJSON_AddArrayToObject(root, "data");
	for (size_t i = first; i < R.n; i++)
		cJSON_AddItemToArray(data, entry_json(activity_get(i)));
	s = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (s == NULL)
		fatal("out of memory");
	return s;
}

void
activity_free(void)
{
	free(R.e);
	memset(&R, 0, sizeof(R));
}
