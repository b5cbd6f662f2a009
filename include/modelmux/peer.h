/* peer: whether each configured peer (config_peers.h) answers. Every peer with a checkEndpoint
 * is probed every checkInterval seconds (a GET with its apiKey, on a connection of its own,
 * within checkTimeout): a 2xx answer is up, anything else — another status, a refused
 * connection, no answer in time — is down, at once. A peer with `checkEndpoint: none` is taken
 * to be up. The backend of a peer model asks here before it says "ready" and leaves when its
 * peer goes down, so requests for a peer that stopped answering get 503 with Retry-After at
 * once instead of waiting on a dead address. Also counts requests per peer for /metrics. */
#ifndef MODELMUX_PEER_H
#define MODELMUX_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modelmux/config.h"
#include "modelmux/util.h"

#define PEER_RETRY_AFTER_MAX_S 30 /* Retry-After for a peer that is down: its interval, capped */

enum peer_state {
	PEER_UNKNOWN = 0, /* not probed yet */
	PEER_UP,
	PEER_DOWN,
};

struct peer_info {
	const char     *name, *proxy;   /* borrowed until the next peer_sync */
	enum peer_state state;
	int             last_status;    /* of the last probe; 0 = no answer */
	uint64_t        since_ms;       /* in this state since (loop time) */
	int             interval_s;
	unsigned long long probes_ok, probes_failed;
};

/* Follows config c (at start and after each reload): peers are matched by name; a peer whose
 * proxy, key or check changed starts again as unknown; all are probed now. The config must
 * outlive the next peer_sync or peer_free (the caller keeps its snapshot). */
void peer_sync(const struct cfg *c);
/* Cancels every probe and timer; frees the table. */
void peer_free(void);
/* The state of peer `name` (UNKNOWN for a name not configured). */
enum peer_state peer_state_of(const char *name);
/* Seconds a client should wait before asking again for a model of a down peer. */
int peer_retry_after_s(const char *name);
/* One finished request for a model of peer `name`, with its status. */
void peer_count_request(const char *name, int status);
/* Number of peers, and the i-th one (false past the end). */
size_t peer_count(void);
bool peer_info(size_t i, struct peer_info *out);
/* Appends the per-peer series (Prometheus text): modelmux_peer_up, modelmux_peer_probes_total,
 * modelmux_peer_requests_total. */
void peer_metrics(struct buf *b);
/* Who hears of every change of a peer's state, from the loop (the peer backends: a ready one
 * leaves at once when its peer goes down). NULL = nobody. */
typedef void (*peer_change_cb)(const char *name, enum peer_state st);
void peer_set_change_cb(peer_change_cb cb);
/* "up", "down" or "unknown". */
const char *peer_state_name(enum peer_state s);

#endif
