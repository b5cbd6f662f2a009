/* tunnel: an HTTP Upgrade (a WebSocket) carried between a client and a backend. It sends the
 * client's upgrade request to the backend on a socket of its own, reports the backend's answer
 * head, and after a 101 splices bytes both ways through two bounded windows: a side that cannot
 * take more stops the other side being read. Knows nothing of models or of MHD. */
#ifndef MODELMUX_TUNNEL_H
#define MODELMUX_TUNNEL_H

#include <stddef.h>

#define TUNNEL_WINDOW     (64u << 10) /* bytes in flight per direction */
#define TUNNEL_HEAD_MAX   (16u << 10) /* the backend's answer head */
#define TUNNEL_LINGER_MS  10000       /* after one side ended, time for the other to end too */

struct tunnel;

/* The backend answered the upgrade: its status and headers ("Name: value" lines, NULL-terminated,
 * borrowed for the call), or status 0 and a reason (static) when it could not be reached or
 * answered garbage. After a status other than 101 the tunnel is done: free it. */
typedef void (*tunnel_head_cb)(void *arg, int status, char *const *headers, const char *err);
/* The spliced tunnel ended (either side closed, an error, or tunnel_end_all): bytes carried each
 * way and why (static). Free the tunnel from here or later. */
typedef void (*tunnel_end_cb)(void *arg, unsigned long long to_backend,
    unsigned long long to_client, const char *why);

/* Connects to `url` (http://host:port[/prefix][?query]; https is refused) and sends
 * `method url-path` with `headers` plus Host, Connection: Upgrade and Upgrade: `upgrade`.
 * `head_cb` reports the answer later, never from inside this call. Returns the tunnel (the
 * caller owns it: tunnel_free), or NULL with a reason in *err (static). Times in seconds,
 * 0 = none; `keepalive_s` is the TCP keepalive probe period of the backend socket. */
struct tunnel *tunnel_open(const char *url, const char *method, char *const *headers,
    const char *upgrade, unsigned connect_s, unsigned head_s, unsigned keepalive_s,
    tunnel_head_cb head_cb, void *arg, const char **err);
/* After the 101 went to the client: splices `client_fd` (not owned: never closed here, only
 * shut down for writing) with the backend. `extra` holds client bytes already read past its
 * request head. `end_cb` is called once, never from inside this call. -1 when out of watchers. */
int tunnel_splice(struct tunnel *t, int client_fd, const char *extra, size_t extra_len,
    tunnel_end_cb end_cb, void *arg);
/* Ends a spliced tunnel now: its end_cb runs, with `why` (static), from inside this call. A
 * tunnel not spliced is left alone. */
void tunnel_end(struct tunnel *t, const char *why);
/* Closes the backend socket and frees. NULL is a no-op. Calls no callback. */
void tunnel_free(struct tunnel *t);
/* Ends every spliced tunnel now (shutdown): each end_cb runs with why "shutdown". */
void tunnel_end_all(void);
/* Spliced tunnels open. */
size_t tunnel_count(void);

#endif
