/* status: per-model detail for operators' views. */
#include <string.h>

#include <cjson/cJSON.h>

#include "modelmux/log.h"
#include "modelmux/sched.h"
#include "modelmux/status.h"
#include "modelmux/util.h"

/* The last backend output lines of one model: offsets into the history text. */
struct tail {
	size_t at[STATUS_OUTPUT_LINES], len[STATUS_OUTPUT_LINES];
	size_t n; /* lines seen; the newest STATUS_OUTPUT_LINES are kept */
};

static bool
is_backend_line(const char *line, size_t len)
{
	/* "<time> <level> backend model=…": the module is the third field. */
	const char *sp = memchr(line, ' ', len);

	sp = sp ? memchr(sp + 1, ' ', len - (size_t)(sp + 1 - line)) : NULL;
	return sp && (size_t)(line + len - sp) > 15 && memcmp(sp, " backend model=", 15) == 0;
}

/* One pass over the log history: each model's last output lines. tails[] has cfg->nmodels. */
static void
collect_tails(const struct buf *hist, const struct cfg *cfg, struct tail *tails)
{
	for (size_t at = 0; at < hist->len;) {
		const char *line = hist->data + at, *nl = memchr(line, '\n', hist->len - at);
		size_t      len = nl ? (size_t)(nl - line) : hist->len - at;

		if (is_backend_line(line, len)) {
			for (size_t i = 0; i < cfg->nmodels; i++) {
				struct tail *t = &tails[i];

				if (!log_line_about(line, len, cfg->models[i].id))
					continue;
				t->at[t->n % STATUS_OUTPUT_LINES] = at;
				t->len[t->n % STATUS_OUTPUT_LINES] = len;
				t->n++;
				break;
			}
		}
		at += len + 1;
	}
}

static void
add_output(cJSON *o, const struct buf *hist, const struct tail *t)
{
	cJSON *arr = cJSON_AddArrayToObject(o, "output");
	size_t from = t->n > STATUS_OUTPUT_LINES ? t->n - STATUS_OUTPUT_LINES : 0;

	for (size_t k = from; k < t->n; k++) {
		size_t slot = k % STATUS_OUTPUT_LINES;
		char  *s = xstrndup(hist->data + t->at[slot], t->len[slot]);

		cJSON_AddItemToArray(arr, cJSON_CreateString(s));
		free(s);
	}
}

static void
add_model(cJSON *o, const struct cfg *cfg, const struct cfg_model *m, const struct buf *hist,
    const struct tail *t)
{
	const struct sched_model *sm = sched_model_get(m->id);
	int                       ttl = m->ttl_s < 0 ? cfg->global_ttl_s : m->ttl_s;
	cJSON                    *aliases = cJSON_AddArrayToObject(o, "aliases");

	for (char **a = m->aliases; a && *a; a++)
		cJSON_AddItemToArray(aliases, cJSON_CreateString(*a));
	if (m->name)
		cJSON_AddStringToObject(o, "name", m->name);
	if (m->description)
		cJSON_AddStringToObject(o, "description", m->description);
	cJSON_AddStringToObject(o, "group", m->group ? m->group->name : "");
	cJSON_AddBoolToObject(o, "unlisted", m->unlisted);
	cJSON_AddNumberToObject(o, "ttl", ttl);
	if (sm != NULL) {
		long long left = sched_model_ttl_left_ms(sm);
		long long left_s = (left + 999) / 1000; /* rounded up: 0 only once it fires */
		uint64_t  held_s = (sched_model_held_left_ms(sm) + 999) / 1000;

		cJSON_AddNumberToObject(o, "state_ms", (double)sched_model_state_age_ms(sm));
		if (left >= 0)
			cJSON_AddNumberToObject(o, "ttl_left_s", (double)left_s);
		else
			cJSON_AddNullToObject(o, "ttl_left_s");
		cJSON_AddNumberToObject(o, "held_left_s", (double)held_s);
		cJSON_AddNumberToObject(o, "concurrency", sched_model_concurrency(sm));
	}
	add_output(o, hist, t);
}

void
status_annotate(cJSON *models, const struct cfg *cfg)
{
	struct buf   hist = { 0 };
	struct tail *tails = xcalloc(cfg->nmodels ? cfg->nmodels : 1, sizeof(*tails));
	size_t       i = 0;
	cJSON       *o;

	log_history(&hist, NULL);
	collect_tails(&hist, cfg, tails);
	cJSON_ArrayForEach(o, models) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");

		if (i < cfg->nmodels && cJSON_IsString(id) && strcmp(id->valuestring, cfg->models[i].id) == 0)
			add_model(o, cfg, &cfg->models[i], &hist, &tails[i]);
		i++;
	}
	free(tails);
	buf_free(&hist);
}
