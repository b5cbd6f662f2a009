/* compat: selectors' choice per request, the single loaded model. */
#include <string.h>

#include "modelmux/compat.h"
#include "modelmux/config_compat.h"
#include "modelmux/sched.h"
#include "modelmux/util.h"

static enum model_state
state_of(const struct cfg *c, const char *name)
{
	const struct cfg_model   *m = cfg_find_model(c, name);
	const struct sched_model *sm = m ? sched_model_get(m->id) : NULL;

	return sm ? sched_model_state(sm) : MODEL_STOPPED;
}

static size_t
load_of(const struct cfg *c, const char *name)
{
	const struct cfg_model   *m = cfg_find_model(c, name);
	const struct sched_model *sm = m ? sched_model_get(m->id) : NULL;

	return sm ? sched_model_inflight(sm) + sched_model_queued(sm) : 0;
}

static const char *
pick_warm(const struct cfg *c, const struct cfg_selector *s)
{
	for (char **t = s->targets; *t; t++)
		if (state_of(c, *t) == MODEL_READY)
			return *t;
	for (char **t = s->targets; *t; t++)
		if (state_of(c, *t) == MODEL_STARTING)
			return *t;
	return s->targets[0];
}

static const char *
pick_spillover(const struct cfg *c, const struct cfg_selector *s)
{
	static unsigned rr; /* turns among equally busy targets */
	const char     *cold = NULL, *tied[64];
	size_t          least = (size_t)-1, ntied = 0;

	for (char **t = s->targets; *t; t++) {
		enum model_state st = state_of(c, *t);
		size_t           l = load_of(c, *t);

		if (st == MODEL_STOPPING)
			continue;
		if (st == MODEL_STOPPED && l == 0) {
			if (cold == NULL)
				cold = *t;
			continue;
		}
		if (l < least) {
			least = l;
			ntied = 0;
		}
		if (l == least && ntied < MM_ARRAY_LEN(tied))
			tied[ntied++] = *t;
	}
	if (ntied == 0)
		return cold ? cold : s->targets[0];
	if (least >= (size_t)s->spillover && cold != NULL)
		return cold;
	return tied[rr++ % ntied];
}

const char *
compat_select(const struct cfg *c, const char *name)
{
	const struct cfg_selector *s = cfg_compat_selector(c, name);

	if (s == NULL || s->targets[0] == NULL)
		return NULL;
	switch (s->strategy) {
	case COMPAT_SEL_WARM:
		return pick_warm(c, s);
	case COMPAT_SEL_SPILLOVER:
		return pick_spillover(c, s);
	case COMPAT_SEL_PIN:
		break;
	}
	return s->targets[0];
}

const struct cfg_model *
compat_single_ready(const struct cfg *c, size_t *nready)
{
	const struct cfg_model *one = NULL;

	*nready = 0;
	for (size_t i = 0; i < c->nmodels; i++) {
		const struct sched_model *sm = sched_model_get(c->models[i].id);

		if (sm != NULL && sched_model_state(sm) == MODEL_READY) {
			one = &c->models[i];
			(*nready)++;
		}
	}
	return *nready == 1 ? one : NULL;
}
