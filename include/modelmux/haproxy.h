/* haproxy: `modelmux --haproxy-config …` writes an HAProxy configuration for several modelmux
 * hosts (contrib/haproxy/README.md). Each request goes to a host where its model is loaded
 * (GET /health/model/<id> answers 200 there), else to any host that serves it (200 or 202),
 * else (no model found in the request) to any ready host (/health/ready). The model is read
 * from the JSON body (option http-buffer-request + json_query), ?model= or /upstream/<id>/.
 * The model ids come from the modelmux configs given (-c, --config-dir, each as many times
 * as needed: partitioned hosts have different ones), or, without any, from the running hosts'
 * /v1/models (a config's commands need not exist where the generator runs). */
#ifndef MODELMUX_HAPROXY_H
#define MODELMUX_HAPROXY_H

#define HAPROXY_MAX_SERVERS     64
#define HAPROXY_MAX_CONFIGS     64
#define HAPROXY_DEF_INTER_MS    1000   /* health check period */
#define HAPROXY_MIN_INTER_MS    100
#define HAPROXY_MAX_INTER_MS    60000
#define HAPROXY_DEF_BIND        ":8080"
#define HAPROXY_BUFSIZE         65536  /* bytes of a request HAProxy reads for `model`; 256 KiB
                                        * made every request 4x slower with L7 retries on */
#define HAPROXY_MAX_LIST_BYTES  (8u << 20) /* a host's /v1/models answer */
#define HAPROXY_FETCH_TIMEOUT_MS 5000

/* The whole command: argv[0] is "--haproxy-config". Writes the config to stdout (or -o FILE)
 * and returns the exit code: 0, 1 (a config has errors, a file cannot be written), 2 (usage). */
int haproxy_main(int argc, char **argv);

#endif
