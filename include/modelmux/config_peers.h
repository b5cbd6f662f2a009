/* config_peers: llama-swap's `peers` — models served by another modelmux, a llama-swap or any
 * OpenAI-compatible server. Each `peers.<name>.models[i]` becomes a model of the config with id
 * "<name>/<model>" (llama-swap's full name), the bare "<model>" as an alias when no model of
 * ours and no other peer has it, no command, `peer` pointing here, the peer's filters and
 * timeouts, `useModelName` the peer's own id and `upstreamApiKey` the peer's apiKey (so the
 * client's credentials never reach the peer). Peer models are in the group "(peers)": they
 * never swap anything out and are never swapped out. */
#ifndef MODELMUX_CONFIG_PEERS_H
#define MODELMUX_CONFIG_PEERS_H

#include "modelmux/config.h"

#define CFG_MAX_PEERS                   64
#define CFG_MAX_PEER_MODELS             256  /* models[] of one peer */
#define CFG_PEER_GROUP                  "(peers)"
#define CFG_PEER_DEF_CHECK_ENDPOINT     "/v1/models" /* any OpenAI-compatible server has it */
#define CFG_PEER_DEF_CHECK_INTERVAL_S   5
#define CFG_PEER_MAX_CHECK_INTERVAL_S   3600
#define CFG_PEER_DEF_CHECK_TIMEOUT_S    2
#define CFG_PEER_MAX_CHECK_TIMEOUT_S    60
#define CFG_PEER_DEF_CONCURRENCY        100
#define CFG_PEER_MAX_CONCURRENCY        1024 /* SCHED_MAX_SLOTS */
#define CFG_PEER_DEF_RESPONSE_HEADER_S  60   /* llama-swap's peer default (models: none) */
#define CFG_PEER_MAX_TIMEOUT_S          86400

struct cfg_peer {
	char  *name;
	char  *proxy;            /* base URL without trailing '/' */
	char  *api_key;          /* apiKey: sent as Bearer and X-API-Key; NULL = none; wiped */
	char **models;           /* the peer's own ids, NULL-terminated, at least one */
	char  *check_endpoint;   /* checkEndpoint (ours): path probed; NULL for "none" */
	int    check_interval_s; /* checkInterval (ours): seconds between probes */
	int    check_timeout_s;  /* checkTimeout (ours): a probe slower than this failed */
	const char *file;        /* where peers.<name> is */
	int    line, col;
};

/* The peer called `name` in c, or NULL. */
const struct cfg_peer *cfg_find_peer(const struct cfg *c, const char *name);

#endif
