/* http_body: multipart uploads, scanned as they stream and spooled past HTTP_MP_MEMORY into an
 * unlinked file under limits.spoolDir, within the spool budget (limits.maxSpoolBytes, a share
 * of it per client address), and read back for the backend with the model value replaced. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#include "modelmux/api.h"
#include "modelmux/gate.h"
#include "modelmux/hdrcheck.h"
#include "modelmux/http.h"
#include "modelmux/log.h"
#include "modelmux/loop.h"
#include "modelmux/metrics.h"
#include "modelmux/multipart.h"
#include "modelmux/router.h"
#include "modelmux/sched.h"
#include "modelmux/tunnel.h"
#include "modelmux/upstream.h"
#include "modelmux/util.h"
#include "http_int.h"

/* An unlinked temporary file for a body past HTTP_MP_MEMORY (O_TMPFILE, else mkstemp+unlink). */
/* Where uploads are spooled: limits.spoolDir, else $TMPDIR, else /tmp. */
static const char *
spool_dir(const struct cfg *c)
{
	const char *dir = c->limits.spool_dir ? c->limits.spool_dir : getenv("TMPDIR");

	return dir != NULL && *dir != '\0' ? dir : "/tmp";
}

/* limits.maxSpoolBytes, or half the spool directory's free space when it is 0. */
void
spool_budget_set(const struct cfg *c)
{
	struct statvfs st;

	if (c->limits.max_spool_bytes > 0)
		H.spool_budget = (uint64_t)c->limits.max_spool_bytes;
	else if (statvfs(spool_dir(c), &st) == 0)
		H.spool_budget = (uint64_t)st.f_bavail * st.f_frsize / 2;
	else
		H.spool_budget = HTTP_SPOOL_FALLBACK;
	metrics_set_spool(H.spool_used, H.spool_budget);
}

/* Charges n bytes of spool to r: 0, or -1 when the budget, or the share of it (1 /
 * HTTP_SPOOL_SHARE) of the client's address or of its API key, has no room. */
static int
spool_charge(struct mm_req *r, size_t n)
{
	if (H.spool_used + n > H.spool_budget ||
	    !gate_share_add(H.spool_ips, H.spool_keys, r->ip, r->key_name, n,
	    H.spool_budget / HTTP_SPOOL_SHARE))
		return -1;
	H.spool_used += n;
	r->upl.spool_held += n;
	metrics_set_spool(H.spool_used, H.spool_budget);
	return 0;
}

void
spool_release(struct mm_req *r)
{
	if (r->upl.spool_held == 0)
		return;
	H.spool_used -= MM_MIN(H.spool_used, r->upl.spool_held);
	gate_share_sub(H.spool_ips, H.spool_keys, r->ip, r->key_name, r->upl.spool_held);
	r->upl.spool_held = 0;
	metrics_set_spool(H.spool_used, H.spool_budget);
}

static int
spool_open(const struct cfg *c)
{
	const char *dir = spool_dir(c);
	char        path[4096];
	int         fd;

	if ((fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) != -1)
		return fd;
	snprintf(path, sizeof(path), "%s/modelmux-XXXXXX", dir);
	if ((fd = mkostemp(path, O_CLOEXEC)) != -1)
		unlink(path);
	return fd;
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Keeps a piece of a spooled body (multipart, /upstream): in memory while small, then in the
 * spool file, within the spool budget. Returns 0, -1 (errno: the file failed) or -2 (no room
 * in the budget). */
int
spool_append(struct mm_req *r, const char *p, size_t n)
{
	if (r->upl.spool_fd == -1 && r->body.len + n <= HTTP_MP_MEMORY)
		return buf_append(&r->body, p, n, HTTP_MP_MEMORY);
	if (spool_charge(r, (r->upl.spool_fd == -1 ? r->body.len : 0) + n) == -1)
		return -2;
	if (r->upl.spool_fd == -1) {
		if ((r->upl.spool_fd = spool_open(r->cfg)) == -1)
			return -1;
		if (write_all(r->upl.spool_fd, r->body.data ? r->body.data : "", r->body.len) == -1)
			return -1;
		buf_free(&r->body);
	}
	return write_all(r->upl.spool_fd, p, n);
}

static size_t
src_read(struct mm_req *r, char *buf, size_t n, uint64_t off)
{
	if (r->upl.spool_fd == -1) {
		n = (size_t)MM_MIN((uint64_t)n, r->upl.total - off);
		if (n == 0)
			return 0;
		memcpy(buf, r->body.data + off, n);
		return n;
	}
	for (;;) {
		ssize_t got = pread(r->upl.spool_fd, buf, n, (off_t)off);

		if (got == -1 && errno == EINTR)
			continue;
		return got > 0 ? (size_t)got : 0;
	}
}

/* curl pulls the body: [0, cut_a) of what came, the new model name, then [cut_z, end). */
size_t
mp_body_read(void *arg, char *buf, size_t n)
{
	struct mm_req *r = arg;
	const char    *ins = r->upl.cut_z > r->upl.cut_a ? r->upl.cut_name : "";
	uint64_t       ins_len = strlen(ins), pos = r->upl.send_pos, got;

	if (pos < r->upl.cut_a) {
		got = src_read(r, buf, (size_t)MM_MIN((uint64_t)n, r->upl.cut_a - pos), pos);
	} else if (pos < r->upl.cut_a + ins_len) {
		got = MM_MIN((uint64_t)n, r->upl.cut_a + ins_len - pos);
		memcpy(buf, ins + (pos - r->upl.cut_a), (size_t)got);
	} else {
		uint64_t src = pos - r->upl.cut_a - ins_len + r->upl.cut_z;

		got = src < r->upl.total ? src_read(r, buf, (size_t)MM_MIN((uint64_t)n, r->upl.total - src), src) : 0;
	}
	r->upl.send_pos += got;
	return (size_t)got;
}

void
mp_body_rewind(void *arg)
{
	((struct mm_req *)arg)->upl.send_pos = 0;
}

uint64_t
mp_send_len(const struct mm_req *r)
{
	uint64_t ins = r->upl.cut_z > r->upl.cut_a ? strlen(r->upl.cut_name) : 0;

	return r->upl.total - (r->upl.cut_z - r->upl.cut_a) + ins;
}
