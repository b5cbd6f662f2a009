/* router_int: what router.c offers router_usage.c. Private to src/router*.c. */
#ifndef MODELMUX_ROUTER_INT_H
#define MODELMUX_ROUTER_INT_H

#include <stdbool.h>
#include <stddef.h>

/* Is the nesting of a JSON text within max? Counts brackets outside strings, so the check runs
 * before any allocation. */
bool router__depth_ok(const char *s, size_t len, int max);

#endif
