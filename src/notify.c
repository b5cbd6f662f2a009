/* notify: sd_notify without libsystemd — one datagram to $NOTIFY_SOCKET per state change. */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "modelmux/log.h"
#include "modelmux/notify.h"
#include "modelmux/util.h"

void
notify_send(const char *state)
{
	const char        *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t          len;
	size_t             plen;
	int                fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    (plen = strlen(path)) >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, plen);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) == -1)
		log_debug("notify", "msg=\"sd_notify failed\" err=\"%s\"", strerror(errno));
	close(fd);
}

uint64_t
notify_watchdog_ms(void)
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	long long   v, p;

	if (usec == NULL || parse_int(usec, 1, INT64_MAX, &v) == -1)
		return 0;
	if (pid != NULL && (parse_int(pid, 1, INT32_MAX, &p) == -1 || p != (long long)getpid()))
		return 0;
	return (uint64_t)v / 1000u;
}
