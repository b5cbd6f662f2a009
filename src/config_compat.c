/* config_compat: llama-swap's newer config keys and flags. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "modelmux/config_compat.h"
#include "modelmux/log.h"
#include "modelmux/util.h"

static void errs_add(struct cfg_errs *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
errs_add(struct cfg_errs *e, const char *fmt, ...)
{
	va_list ap;
	char    msg[1024];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e->msgs = xreallocarray(e->msgs, e->n + 2, sizeof(*e->msgs));
	e->msgs[e->n++] = xstrdup(msg);
	e->msgs[e->n] = NULL;
}

/* ---- -tls-cert-file / -tls-key-file ------------------------------------------------------ */

/* The whole of a small file (at most `limit` bytes), NUL-terminated; NULL with errno set. The
 * read buffer is wiped: it may hold a private key. */
static char *
pem_read(const char *path, size_t *lenp)
{
	struct buf b = { 0 };
	char       chunk[4096];
	ssize_t    r;
	int        fd, saved = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	for (;;) {
		if ((r = read(fd, chunk, sizeof(chunk))) == -1 && errno == EINTR)
			continue;
		if (r == -1 || (r > 0 && buf_append(&b, chunk, (size_t)r, CFG_MAX_PEM_BYTES) == -1)) {
			saved = r == -1 ? errno : EFBIG;
			break;
		}
		if (r == 0)
			break;
	}
	OPENSSL_cleanse(chunk, sizeof(chunk));
	close(fd);
	if (saved != 0) {
		buf_free_wiped(&b);
		errno = saved;
		return NULL;
	}
	*lenp = b.len;
	return b.data ? b.data : xstrdup("");
}

static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

int
cfg_compat_tls_files(struct cfg *c, const char *cert_file, const char *key_file,
    struct cfg_errs *errs)
{
	char     *cert = NULL, *key = NULL;
	size_t    clen = 0, klen = 0;
	BIO      *bio;
	X509     *x = NULL;
	EVP_PKEY *pk = NULL;
	int       rc = -1;

	if ((cert = pem_read(cert_file, &clen)) == NULL) {
		errs_add(errs, "-tls-cert-file: cannot read %s: %s", cert_file,
		    errno == EFBIG ? "too large" : strerror(errno));
		goto out;
	}
	if ((key = pem_read(key_file, &klen)) == NULL) {
		errs_add(errs, "-tls-key-file: cannot read %s: %s", key_file,
		    errno == EFBIG ? "too large" : strerror(errno));
		goto out;
	}
	if ((bio = BIO_new_mem_buf(cert, (int)clen)) == NULL)
		fatal("config: out of memory");
	x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (x == NULL) {
		errs_add(errs, "-tls-cert-file: %s: not a PEM certificate", cert_file);
		goto out;
	}
	if ((bio = BIO_new_mem_buf(key, (int)klen)) == NULL)
		fatal("config: out of memory");
	pk = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (pk == NULL) {
		errs_add(errs, "-tls-key-file: %s: not a PEM private key (or it has a passphrase)",
		    key_file);
		goto out;
	}
	if (X509_check_private_key(x, pk) != 1) {
		errs_add(errs, "-tls-key-file: %s does not match the certificate %s", key_file,
		    cert_file);
		goto out;
	}
	free(c->tls_cert_pem);
	if (c->tls_key_pem != NULL)
		OPENSSL_cleanse(c->tls_key_pem, strlen(c->tls_key_pem));
	free(c->tls_key_pem);
	c->tls_cert_pem = cert;
	c->tls_key_pem = key;
	cert = key = NULL;
	rc = 0;
out:
	ERR_clear_error();
	X509_free(x);
	EVP_PKEY_free(pk);
	free(cert);
	if (key != NULL)
		OPENSSL_cleanse(key, klen);
	free(key);
	return rc;
}
