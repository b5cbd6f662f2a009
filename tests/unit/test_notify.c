/* Unit tests of the sd_notify client: messages arrive on a NOTIFY_SOCKET we bind. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "modelmux/notify.h"

static int
bind_dgram(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int                fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1)
		return -1;
	return fd;
}

static void
test_messages(void)
{
	char path[64], got[256];
	int  fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/tmp/mm-notify-%d.sock", (int)getpid());
	fd = bind_dgram(path);
	ASSERT_TRUE(fd != -1);
	setenv("NOTIFY_SOCKET", path, 1);
	notify_send("READY=1\nSTATUS=serving");
	n = recv(fd, got, sizeof(got) - 1, MSG_DONTWAIT);
	ASSERT_INT_EQ(n, (long)strlen("READY=1\nSTATUS=serving"));
	got[n > 0 ? n : 0] = '\0';
	ASSERT_STR_EQ(got, "READY=1\nSTATUS=serving");
	notify_send("STOPPING=1");
	n = recv(fd, got, sizeof(got) - 1, MSG_DONTWAIT);
	got[n > 0 ? n : 0] = '\0';
	ASSERT_STR_EQ(got, "STOPPING=1");
	/* Without NOTIFY_SOCKET nothing is sent and nothing fails. */
	unsetenv("NOTIFY_SOCKET");
	notify_send("READY=1");
	ASSERT_INT_EQ(recv(fd, got, sizeof(got), MSG_DONTWAIT), -1);
	close(fd);
	unlink(path);
}

static void
test_watchdog(void)
{
	char pid[16];

	unsetenv("WATCHDOG_USEC");
	ASSERT_INT_EQ(notify_watchdog_ms(), 0);
	setenv("WATCHDOG_USEC", "30000000", 1);
	unsetenv("WATCHDOG_PID");
	ASSERT_INT_EQ(notify_watchdog_ms(), 30000);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	ASSERT_INT_EQ(notify_watchdog_ms(), 30000);
	setenv("WATCHDOG_PID", "1", 1); /* meant for another process */
	ASSERT_INT_EQ(notify_watchdog_ms(), 0);
	setenv("WATCHDOG_USEC", "nonsense", 1);
	unsetenv("WATCHDOG_PID");
	ASSERT_INT_EQ(notify_watchdog_ms(), 0);
}

int
main(void)
{
	test_messages();
	test_watchdog();
	CHECK_DONE();
}
