/* cmdcheck: shells by identity, interpreters given inline code (cmdcheck.h). */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "modelmux/cmdcheck.h"
#include "modelmux/util.h"

#define SHELL_MAX_BYTES (16u << 20) /* a larger file is no shell we know: not hashed */

struct shell_file {
	dev_t         dev;
	ino_t         ino;
	off_t         size;
	char         *path;   /* resolved */
	bool          hashed; /* sha holds its SHA-256 (read only when a file of its size comes) */
	unsigned char sha[32];
};

static struct {
	bool              found;
	struct shell_file f[CMD_MAX_SHELLS];
	size_t            n;
} K;

static const char *
base(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

/* SHA-256 of a regular file of at most SHELL_MAX_BYTES; 0 or -1. */
static int
file_sha256(const char *path, unsigned char out[32])
{
	unsigned char buf[65536];
	EVP_MD_CTX   *ctx = EVP_MD_CTX_new();
	int           fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;
	ssize_t       r;
	size_t        total = 0;

	if (ctx == NULL || fd == -1 || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		total += (size_t)r;
		if (total > SHELL_MAX_BYTES || EVP_DigestUpdate(ctx, buf, (size_t)r) != 1)
			goto out;
	}
	if (r == 0 && EVP_DigestFinal_ex(ctx, out, NULL) == 1)
		rc = 0;
out:
	if (fd != -1)
		close(fd);
	EVP_MD_CTX_free(ctx);
	return rc;
}

static void
remember(const char *path)
{
	struct stat st;
	char       *real = realpath(path, NULL);

	if (real == NULL)
		return;
	if (K.n < CMD_MAX_SHELLS && stat(real, &st) == 0 && S_ISREG(st.st_mode) &&
	    st.st_size <= (off_t)SHELL_MAX_BYTES) {
		bool seen = false;

		for (size_t i = 0; i < K.n && !seen; i++)
			seen = K.f[i].dev == st.st_dev && K.f[i].ino == st.st_ino;
		if (!seen) {
			K.f[K.n].dev = st.st_dev;
			K.f[K.n].ino = st.st_ino;
			K.f[K.n].size = st.st_size;
			K.f[K.n].path = real;
			K.n++;
			return;
		}
	}
	free(real);
}

static void
find_shells(void)
{
	static const char *const dirs[] = { "/bin", "/usr/bin", "/usr/local/bin", "/sbin", "/usr/sbin" };
	static const char *const names[] = { "sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "fish",
	    "csh", "tcsh", "busybox", "ash", "rbash", "pdksh", "yash", "posh", "oksh", "loksh" };
	char p[PATH_MAX];

	K.found = true;
	for (size_t d = 0; d < MM_ARRAY_LEN(dirs); d++) {
		for (size_t i = 0; i < MM_ARRAY_LEN(names); i++) {
			snprintf(p, sizeof(p), "%s/%s", dirs[d], names[i]);
			remember(p);
		}
	}
}

bool
cmd_is_shell_file(const char *exe)
{
	struct stat   st;
	unsigned char sha[32];
	bool          hashed = false;

	if (!K.found)
		find_shells();
	if (stat(exe, &st) == -1)
		return false;
	for (size_t i = 0; i < K.n; i++) {
		if (K.f[i].dev == st.st_dev && K.f[i].ino == st.st_ino)
			return true;
		if (K.f[i].size != st.st_size) /* only a file of a shell's size is read */
			continue;
		if (!K.f[i].hashed && file_sha256(K.f[i].path, K.f[i].sha) == -1)
			continue;
		K.f[i].hashed = true;
		if (!hashed && file_sha256(exe, sha) == -1)
			return false;
		hashed = true;
		if (memcmp(sha, K.f[i].sha, sizeof(sha)) == 0)
			return true;
	}
	return false;
}

/* Does the name start with the interpreter's, then only a version ("python3.11", "perl5.36")? */
static bool
named(const char *name, const char *interp)
{
	size_t n = strlen(interp);

	if (strncmp(name, interp, n) != 0)
		return false;
	for (name += n; *name; name++)
		if (!(*name >= '0' && *name <= '9') && *name != '.' && *name != '-')
			return false;
	return true;
}

/* How an interpreter's options read: letters that hand it a program (`code`), letters that
 * take a value — the rest of their cluster, or the next word when none is left (`arg`), or the
 * rest of the cluster only (`attached`) — letters after which the words belong to something
 * else (`ends`: python -m), and long options that hand it a program. */
struct opts {
	const char        *code, *arg, *attached, *ends;
	const char *const *longs;
};

static bool
long_is(const char *a, const char *opt)
{
	size_t n = strlen(opt);

	return strncmp(a, opt, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

/* Does an option before the program's first operand hand it a program ("-c", "-Bc", "-W x -c",
 * "--eval=…")? A value is skipped, never read as options ("-MPOSIX=e" is no -e). */
static bool
has_option(char *const *argv, const struct opts *o)
{
	for (size_t i = 1; argv[i] != NULL; i++) {
		const char *a = argv[i];

		if (a[0] != '-' || strcmp(a, "-") == 0 || strcmp(a, "--") == 0)
			return false; /* the script (or stdin) comes first: what follows is its own */
		if (a[1] == '-') {
			for (size_t k = 0; o->longs != NULL && o->longs[k] != NULL; k++)
				if (long_is(a, o->longs[k]))
					return true;
			continue;
		}
		for (const char *c = a + 1; *c != '\0'; c++) {
			if (strchr(o->code, *c) != NULL)
				return true;
			if (o->ends != NULL && strchr(o->ends, *c) != NULL)
				return false;
			if (o->attached != NULL && strchr(o->attached, *c) != NULL)
				break;
			if (o->arg != NULL && strchr(o->arg, *c) != NULL) {
				if (c[1] == '\0' && argv[++i] == NULL)
					return false;
				break;
			}
		}
	}
	return false;
}

const char *
cmd_inline_code(const char *exe, char *const *argv)
{
	static const char *const node_long[] = { "--eval", "--print", NULL };
	static const char *const eval_long[] = { "--eval", NULL };
	static const char *const awks[] = { "awk", "gawk", "mawk", "nawk", "original-awk" };
	static const struct opts python = { "c", "WX", NULL, "m", NULL };
	static const struct opts perl = { "eE", "I", "MmixCD", NULL, NULL };
	static const struct opts ruby = { "e", "IrCE", "KTxFW", NULL, NULL };
	static const struct opts node = { "ep", "rC", NULL, NULL, node_long };
	static const struct opts php = { "rRBE", "cdfzFt", NULL, NULL, NULL };
	static const struct opts lua = { "e", "l", NULL, NULL, eval_long };
	const char *names[2] = { base(exe), base(argv[0]) };

	for (size_t k = 0; k < 2; k++) {
		const char *b = names[k];

		if ((named(b, "python") || named(b, "pypy")) && has_option(argv, &python))
			return "python -c";
		if (named(b, "perl") && has_option(argv, &perl))
			return "perl -e";
		if (named(b, "ruby") && has_option(argv, &ruby))
			return "ruby -e";
		if ((strcmp(b, "node") == 0 || strcmp(b, "nodejs") == 0 || strcmp(b, "bun") == 0) &&
		    has_option(argv, &node))
			return "node --eval";
		if (strcmp(b, "deno") == 0 && (has_option(argv, &node) ||
		    (argv[1] != NULL && strcmp(argv[1], "eval") == 0)))
			return "deno eval";
		if (named(b, "php") && has_option(argv, &php))
			return "php -r";
		if ((named(b, "lua") || named(b, "luajit")) && has_option(argv, &lua))
			return "lua -e";
		if (strcmp(b, "Rscript") == 0 && has_option(argv, &lua))
			return "Rscript -e";
		for (size_t i = 0; i < MM_ARRAY_LEN(awks); i++) {
			/* awk's first operand is its program unless -f names a file. */
			static const char *const f_long[] = { "--file", NULL };
			static const struct opts awk_f = { "f", "vF", NULL, NULL, f_long };

			if (strcmp(b, awks[i]) == 0 && !has_option(argv, &awk_f))
				return "an awk program";
		}
	}
	return NULL;
}
