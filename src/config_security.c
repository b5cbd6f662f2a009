/* config: security keys — API keys, CORS, rate limits, limits, allowed commands and what a
 * command really runs, trusted proxies, TLS. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "modelmux/cmdcheck.h"
#include "modelmux/config.h"
#include "modelmux/log.h"
#include "modelmux/util.h"
#include "config_int.h"

/* ---- security: keys, CORS, rate limits, limits, commands, TLS ----------------------------- */

void
cfg__top_log_format(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;
	char       *f = NULL;

	if (cfg__get_str(ld, v, path, &f) == -1 || f == NULL)
		return;
	if (strcmp(f, "json") == 0)
		c->log_json = true;
	else if (strcmp(f, "text") != 0)
		cfg__ld_err(ld, v, path, "expected text or json");
	free(f);
}

static const char *
check_api_key(const char *s)
{
	if (*s == '\0')
		return "must not be empty";
	for (; *s != '\0'; s++)
		if (isspace((unsigned char)*s))
			return "must not contain spaces";
	return NULL;
}

/* Turns one key text ("sha256:<64 hex>" or a plain key) into a digest; a static reason if bad. */
static const char *
key_digest(const char *s, unsigned char out[32])
{
	const char  *why;
	unsigned int n = 0;

	if (strncmp(s, "sha256:", 7) == 0) {
		s += 7;
		if (strlen(s) != 64)
			return "expected sha256: followed by 64 hex digits";
		for (size_t i = 0; i < 32; i++) {
			int hi = hex_digit((unsigned char)s[2 * i]), lo = hex_digit((unsigned char)s[2 * i + 1]);

			if (hi == -1 || lo == -1)
				return "expected sha256: followed by 64 hex digits";
			out[i] = (unsigned char)(hi << 4 | lo);
		}
		return NULL;
	}
	if ((why = check_api_key(s)) != NULL)
		return why;
	if (EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL) != 1 || n != 32)
		fatal("config: SHA-256 failed");
	return NULL;
}

/* Adds one key; wipes the text. */
static void
key_add(struct ld *ld, const struct node *n, const char *path, char *text, bool admin,
    const char *where)
{
	struct cfg    *c = ld->c;
	unsigned char  d[32];
	const char    *why = key_digest(text, d);

	OPENSSL_cleanse(text, strlen(text));
	if (why == NULL && c->nkeys >= CFG_MAX_KEYS)
		why = "too many API keys";
	if (why != NULL) {
		cfg__ld_err(ld, n, path, "%s%s", where ? where : "", why);
		return;
	}
	c->keys = xreallocarray(c->keys, c->nkeys + 1, sizeof(*c->keys));
	memcpy(c->keys[c->nkeys].sha256, d, sizeof(d));
	c->keys[c->nkeys++].admin = admin;
	OPENSSL_cleanse(d, sizeof(d));
}

/* One apiKeys entry written as a map: {key: K, admin: bool}. */
static void
key_map(struct ld *ld, struct node *m, const char *path)
{
	struct node *key = NULL;
	bool         admin = false;
	char        *kp;

	for (size_t i = 0; i < cfg__map_len(m); i++) {
		const char *k = cfg__map_key(m, i)->str;

		kp = cfg__path_join(path, k);
		if (strcmp(k, "key") == 0) {
			key = cfg__map_val(m, i);
			if (key->kind != NODE_SCALAR) {
				cfg__ld_err(ld, key, kp, "expected a string");
				key = NULL;
			}
		} else if (strcmp(k, "admin") == 0) {
			cfg__get_bool(ld, cfg__map_val(m, i), kp, &admin);
		} else {
			cfg__ld_err(ld, cfg__map_key(m, i), kp, "unknown key");
		}
		free(kp);
	}
	kp = cfg__path_join(path, "key");
	if (key == NULL && cfg__map_get(m, "key") == NULL)
		cfg__ld_err(ld, m, kp, "missing required key");
	else if (key != NULL)
		key_add(ld, key, kp, key->str, admin, NULL);
	free(kp);
}

void
cfg__top_api_keys(struct ld *ld, struct node *v, const char *path, void *obj)
{
	(void)obj;
	if (cfg__node_is_null(v))
		return;
	if (v->kind != NODE_SEQ) {
		cfg__ld_err(ld, v, path, "expected a list");
		return;
	}
	for (size_t i = 0; i < v->nkids; i++) {
		struct node *it = v->kids[i];
		char        *ip = cfg__path_index(path, i);

		if (it->kind == NODE_SCALAR)
			key_add(ld, it, ip, it->str, false, NULL);
		else if (it->kind == NODE_MAP)
			key_map(ld, it, ip);
		else
			cfg__ld_err(ld, it, ip, "expected a key or {key: K, admin: true}");
		free(ip);
	}
}

char *
cfg__read_small_file(const char *path, size_t limit, size_t *lenp)
{
	struct buf b = { 0 };
	char       chunk[4096];
	ssize_t    r;
	int        fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	for (;;) {
		r = read(fd, chunk, sizeof(chunk));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1 || (r > 0 && buf_append(&b, chunk, (size_t)r, limit) == -1)) {
			saved = r == -1 ? errno : EFBIG;
			OPENSSL_cleanse(chunk, sizeof(chunk));
			buf_free_wiped(&b);
			close(fd);
			errno = saved;
			return NULL;
		}
		if (r == 0)
			break;
	}
	OPENSSL_cleanse(chunk, sizeof(chunk));
	close(fd);
	*lenp = b.len;
	return b.data ? b.data : xstrdup("");
}

void
cfg__top_api_keys_file(struct ld *ld, struct node *v, const char *path, void *obj)
{
	char   *file = NULL, *text, *line, *save = NULL, *where;
	size_t  len = 0, before = ((struct cfg *)obj)->nkeys;
	int     lineno = 0;

	if (cfg__get_str(ld, v, path, &file) == -1 || file == NULL) {
		if (file == NULL && v->kind == NODE_SCALAR)
			cfg__ld_err(ld, v, path, "expected a file name");
		return;
	}
	if ((text = cfg__read_small_file(file, CFG_MAX_KEYS_FILE_BYTES, &len)) == NULL) {
		if (errno == EFBIG)
			cfg__ld_err(ld, v, path, "%s: larger than %u bytes", file, CFG_MAX_KEYS_FILE_BYTES);
		else
			cfg__ld_err(ld, v, path, "cannot read %s: %s", file, strerror(errno));
		free(file);
		return;
	}
	if (memchr(text, '\0', len) != NULL) {
		cfg__ld_err(ld, v, path, "%s: contains a NUL byte", file);
		goto out;
	}
	/* strtok_r would merge blank lines and shift the numbers: split by hand. */
	for (line = text; line != NULL; line = save) {
		char *nl = strchr(line, '\n'), *tok[3] = { NULL }, *ts = NULL, *t;
		int   nt = 0;

		save = nl ? nl + 1 : NULL;
		if (nl != NULL)
			*nl = '\0';
		lineno++;
		for (t = strtok_r(line, " \t\r", &ts); t != NULL; t = strtok_r(NULL, " \t\r", &ts)) {
			if (*t == '#')
				break;
			if (nt < 3)
				tok[nt] = t;
			nt++;
		}
		if (nt == 0)
			continue;
		where = xasprintf("%s line %d: ", file, lineno);
		if (nt > 2 || (nt == 2 && strcmp(tok[1], "admin") != 0))
			cfg__ld_err(ld, v, path, "%sexpected \"<key or sha256:hex> [admin]\"", where);
		else
			key_add(ld, v, path, tok[0], nt == 2, where);
		free(where);
	}
	/* A key file meant to turn authentication on must not leave everything open. */
	if (((struct cfg *)obj)->nkeys == before)
		cfg__ld_err(ld, v, path, "%s holds no key", file);
out:
	OPENSSL_cleanse(text, len);
	free(text);
	free(file);
}

/* "scheme://host[:port]" with scheme http or https and nothing after; lowercased in place. */
static const char *
check_origin(const char *s)
{
	const char *p;
	size_t      hl;

	if (strcmp(s, "*") == 0)
		return NULL;
	if (str_has_prefix_ci(s, "http://"))
		p = s + 7;
	else if (str_has_prefix_ci(s, "https://"))
		p = s + 8;
	else
		return "expected \"*\" or http(s)://host[:port]";
	if (*p == '[') {
		hl = strspn(p + 1, "0123456789abcdefABCDEF:.");
		if (hl == 0 || p[1 + hl] != ']')
			return "invalid host in origin";
		p += hl + 2;
	} else {
		hl = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
		if (hl == 0 || p[0] == '.' || p[0] == '-')
			return "invalid host in origin";
		p += hl;
	}
	if (*p == ':') {
		long long port;
		size_t    dl = strspn(p + 1, "0123456789");

		if (dl == 0 || dl > 5 || p[1 + dl] != '\0' || parse_int(p + 1, 1, 65535, &port) == -1)
			return "invalid port in origin";
		p += 1 + dl;
	}
	if (*p != '\0')
		return "an origin is scheme://host[:port] with no path";
	return NULL;
}

static const char *
check_token(const char *s)
{
	if (*s == '\0')
		return "must not be empty";
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("!#$%&'*+-.^_`|~", *s) == NULL)
			return "expected an HTTP token (letters, digits, -)";
	return NULL;
}

static void
cors_origins(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;

	strv_free(c->cors.origins);
	c->cors.origins = cfg__get_strv(ld, v, path, check_origin);
	for (char **o = c->cors.origins; *o != NULL; o++)
		for (char *p = *o; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
}

static void
cors_methods(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;

	strv_free(c->cors.methods);
	c->cors.methods = cfg__get_strv(ld, v, path, check_token);
}

static void
cors_headers(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;

	strv_free(c->cors.headers);
	c->cors.headers = cfg__get_strv(ld, v, path, check_token);
}

static const struct field cors_fields[] = {
	FLD_FN("allowedOrigins", cors_origins),
	FLD_BOOL("allowCredentials", struct cfg, cors.allow_credentials),
	FLD_FN("allowedMethods", cors_methods),
	FLD_FN("allowedHeaders", cors_headers),
	FLD_INT("maxAge", struct cfg, cors.max_age_s, 0, 86400),
	FLD_END,
};

void
cfg__top_cors(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg  *c = obj;
	struct node *cred;
	char        *kp;

	cfg__decode_fields(ld, v, path, cors_fields, obj);
	if (c->cors.allow_credentials && strv_contains(c->cors.origins, "*")) {
		cred = cfg__map_get(v, "allowCredentials");
		kp = cfg__path_join(path, "allowCredentials");
		cfg__ld_err(ld, cred ? cred : v, kp,
		    "cannot be true when allowedOrigins has \"*\" (list the origins)");
		free(kp);
	}
}

static void
rate_rate(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg_rate *r = obj;
	char            *end;
	double           d;

	if (v->kind != NODE_SCALAR || v->quoted || !(cfg__is_int_text(v->str) || cfg__is_float_text(v->str))) {
		cfg__ld_err(ld, v, path, "expected a number (requests per second)");
		return;
	}
	d = strtod(v->str, &end);
	if (!(d >= 0 && d <= CFG_MAX_RATE)) {
		cfg__ld_err(ld, v, path, "must be between 0 and %g", CFG_MAX_RATE);
		return;
	}
	r->rate = d;
}

static const struct field bucket_fields[] = {
	FLD_FN("rate", rate_rate),
	FLD_INT("burst", struct cfg_rate, burst, 1, 1000000),
	FLD_END,
};

const struct field cfg__rate_fields[] = {
	FLD_SUB_AT("perIP", struct cfg, rate.per_ip, bucket_fields),
	FLD_SUB_AT("perKey", struct cfg, rate.per_key, bucket_fields),
	FLD_SUB_AT("global", struct cfg, rate.global, bucket_fields),
	FLD_SUB_AT("authFailures", struct cfg, rate.auth_failures, bucket_fields),
	FLD_INT("tableSize", struct cfg, rate.table_size, CFG_MIN_RATE_TABLE_SIZE,
	    CFG_MAX_RATE_TABLE_SIZE),
	FLD_END,
};

/* limits.maxSpoolBytes: a byte count past int's range. */
static void
limits_spool_bytes(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;
	long long   x;

	if (v->kind != NODE_SCALAR || parse_int(v->str, 0, 1LL << 50, &x) == -1) {
		cfg__ld_err(ld, v, path, "expected a byte count, 0 .. 2^50 (0 = half the free space)");
		return;
	}
	c->limits.max_spool_bytes = x;
}

const struct field cfg__limits_fields[] = {
	FLD_INT("maxHeaderBytes", struct cfg, limits.max_header_bytes, 1024, 1 << 20),
	FLD_INT("maxUrlBytes", struct cfg, limits.max_url_bytes, 256, 1 << 20),
	FLD_INT("maxJsonBodyBytes", struct cfg, limits.max_json_body_bytes, 1024, 1 << 30),
	FLD_INT("maxMultipartBodyBytes", struct cfg, limits.max_multipart_body_bytes, 1024, INT_MAX),
	FLD_INT("maxJsonDepth", struct cfg, limits.max_json_depth, 1, 1024),
	FLD_INT("headerTimeoutSeconds", struct cfg, limits.header_timeout_s, 1, 3600),
	FLD_INT("bodyIdleTimeoutSeconds", struct cfg, limits.body_idle_timeout_s, 1, 86400),
	FLD_INT("maxConnectionsPerIP", struct cfg, limits.max_conns_per_ip, 1, 1 << 16),
	FLD_FN("maxSpoolBytes", limits_spool_bytes),
	FLD_STR("spoolDir", struct cfg, limits.spool_dir),
	FLD_END,
};

/* allowedCommands: each entry resolved (realpath), a directory keeping its trailing '/'. */
void
cfg__top_allowed(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;
	char      **v0;
	size_t      n = 0;

	if (cfg__node_is_null(v))
		return;
	v0 = cfg__get_strv(ld, v, path, NULL);
	strv_free(c->allowed_commands);
	c->allowed_commands = xcalloc(strv_len(v0) + 1, sizeof(char *));
	for (size_t i = 0, k = 0; v0[i] != NULL; i++, k++) {
		const char *e = v0[i];
		size_t      len = strlen(e);
		bool        dir = len > 0 && e[len - 1] == '/';
		char       *real, *ip;

		while (v->kids[k]->kind != NODE_SCALAR)
			k++;
		ip = cfg__path_index(path, k);
		if (e[0] != '/')
			cfg__ld_err(ld, v->kids[k], ip, "expected an absolute path");
		else if ((real = realpath(e, NULL)) == NULL)
			cfg__ld_err(ld, v->kids[k], ip, "%s: %s", e, strerror(errno));
		else {
			c->allowed_commands[n++] = dir && strcmp(real, "/") != 0 ?
			    xasprintf("%s/", real) : xstrdup(real);
			free(real);
		}
		free(ip);
	}
	strv_free(v0);
}

/* trustedProxies: addresses or blocks ("10.0.0.0/8", "::1") of front proxies. */
void
cfg__top_trusted(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg *c = obj;
	char      **v0;
	size_t      k = 0;

	if (cfg__node_is_null(v))
		return;
	v0 = cfg__get_strv(ld, v, path, NULL);
	free(c->trusted_proxies);
	c->trusted_proxies = NULL;
	c->ntrusted_proxies = 0;
	if (strv_len(v0) > CFG_MAX_TRUSTED_PROXIES) {
		cfg__ld_err(ld, v, path, "more than %d entries", CFG_MAX_TRUSTED_PROXIES);
		strv_free(v0);
		return;
	}
	c->trusted_proxies = xcalloc(strv_len(v0) + 1, sizeof(*c->trusted_proxies));
	for (size_t i = 0; v0[i] != NULL; i++, k++) {
		char *ip;

		while (v->kids[k]->kind != NODE_SCALAR)
			k++;
		if (cidr_parse(v0[i], &c->trusted_proxies[c->ntrusted_proxies]) == 0) {
			c->ntrusted_proxies++;
			continue;
		}
		ip = cfg__path_index(path, k);
		cfg__ld_err(ld, v->kids[k], ip, "%s: not an IP address or address/prefix", v0[i]);
		free(ip);
	}
	strv_free(v0);
}

/* Resolves name like execvp would (PATH, or as written when it has a '/') to a real path of an
 * executable regular file; NULL if none. */
static char *
resolve_exe(const char *name, const char *cfg_file)
{
	const char *path = getenv("PATH");
	char       *copy, *dir, *save = NULL, *real = NULL;
	struct stat st;

	if (*name == '\0')
		return NULL;
	if (name[0] != '/' && strchr(name, '/') != NULL && cfg_file != NULL &&
	    strchr(cfg_file, '/') != NULL) {
		/* build/x: beside the config file that says so, wherever modelmux runs from. */
		const char *slash = strrchr(cfg_file, '/');
		char       *rel = xasprintf("%.*s/%s", (int)(slash - cfg_file), cfg_file, name);

		real = realpath(rel, NULL);
		free(rel);
	} else if (strchr(name, '/') != NULL) {
		real = realpath(name, NULL);
	} else {
		if (path == NULL || *path == '\0')
			path = "/usr/local/bin:/usr/bin:/bin";
		copy = xstrdup(path);
		for (dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
			char *cand = xasprintf("%s/%s", dir, name);

			if (access(cand, X_OK) == 0 && stat(cand, &st) == 0 && S_ISREG(st.st_mode))
				real = realpath(cand, NULL);
			free(cand);
			if (real != NULL)
				break;
		}
		free(copy);
	}
	if (real != NULL && (stat(real, &st) == -1 || !S_ISREG(st.st_mode) ||
	    access(real, X_OK) == -1)) {
		free(real);
		real = NULL;
	}
	return real;
}

static const char *
base_name(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

static bool
is_shell_name(const char *p)
{
	static const char *const shells[] = { "sh", "bash", "dash", "zsh", "ksh", "mksh", "fish",
	    "csh", "tcsh", "busybox", "ash", "rbash", "pdksh", "yash", "posh" };
	const char *b = base_name(p);

	for (size_t i = 0; i < MM_ARRAY_LEN(shells); i++)
		if (strcmp(b, shells[i]) == 0)
			return true;
	return false;
}

/* The program `env` runs (argv index), or 0 if none; *split when -S / --split-string is used. */
static size_t
env_target(char *const *argv, bool *split)
{
	size_t i;

	*split = false;
	for (i = 1; argv[i] != NULL; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strncmp(a, "--split-string", 14) == 0 ||
		    (a[0] == '-' && a[1] != '-' && strchr(a, 'S') != NULL)) {
			*split = true;
			return 0;
		}
		if (strcmp(a, "--unset") == 0 || strcmp(a, "--chdir") == 0) {
			if (argv[++i] == NULL)
				return 0;
			continue;
		}
		if (a[0] == '-' && a[1] != '-' && a[1] != '\0') {
			/* A cluster such as -iu NAME: -u and -C take the rest of the word, or the next. */
			const char *arg = strpbrk(a + 1, "uC");

			if (arg != NULL && arg[1] == '\0' && argv[++i] == NULL)
				return 0;
			continue;
		}
		if (a[0] == '-' && a[1] != '\0')
			continue;
		if (strchr(a, '=') != NULL)
			continue;
		break;
	}
	return argv[i] != NULL ? i : 0;
}

/* Programs that exec a program named in their arguments (env is looked through exactly). */
static bool
is_wrapper(const char *exe)
{
	static const char *const wrappers[] = { "nice", "timeout", "setsid", "nohup", "stdbuf",
		"chrt", "taskset", "ionice", "numactl", "sudo", "doas", "xargs", "flock", "unbuffer",
		"time", "chroot", "runuser", "su", "setpriv", "prlimit", "unshare", "nsenter",
		"systemd-run", "sg", "script", "watch", "strace", "ltrace", "valgrind", "gdb" };
	const char *b = base_name(exe);

	for (size_t i = 0; i < MM_ARRAY_LEN(wrappers); i++)
		if (strcmp(b, wrappers[i]) == 0)
			return true;
	return false;
}

#define SHELL_REFUSED \
	"shell interpreters are not allowed as commands; list it in allowedCommands to allow it"

/* Whether a word a wrapper (nice, timeout…) may run resolves, as execvp would, to a shell
 * file (a renamed copy of dash under any name), or hands an interpreter inline code; the
 * interpreter's description, "a shell", or NULL. */
static const char *
wrapped_refusal(char *const *argv, const char *cfg_file)
{
	char       *exe = resolve_exe(argv[0], cfg_file);
	const char *why = NULL;

	if (exe != NULL && cmd_is_shell_file(exe))
		why = "a shell";
	else
		why = cmd_inline_code(exe != NULL ? exe : argv[0], argv);
	free(exe);
	return why;
}

/* A program that runs another program (nice, timeout, ...): any shell word among its
 * arguments, or an argument that is a shell file or an interpreter given inline code, refuses
 * it (told through ld). */
static bool
wrapper_refused(struct ld *ld, const struct node *n, const char *path, char *const *argv,
    const char *exe)
{
	for (size_t i = 1; argv[i] != NULL; i++) {
		const char *why;

		if (is_shell_name(argv[i])) {
			cfg__ld_err(ld, n, path, "%s runs %s: " SHELL_REFUSED, argv[0], argv[i]);
			return true;
		}
		if ((why = wrapped_refusal(argv + i, n->file)) == NULL)
			continue;
		if (strcmp(why, "a shell") == 0)
			cfg__ld_err(ld, n, path, "%s runs %s, a shell: " SHELL_REFUSED, argv[0], argv[i]);
		else
			cfg__ld_err(ld, n, path, "%s runs %s, an interpreter given its program inline "
			    "(%s); list %s in allowedCommands to allow it", argv[0], argv[i], why, exe);
		return true;
	}
	return false;
}

/* Checks argv's program against allowedCommands and the shell rule; env's program too. Returns
 * the resolved program (caller frees) or NULL after one error. */
char *
cfg__command_check(struct ld *ld, const struct node *n, const char *path, char *const *argv,
    int depth)
{
	char *const *allowed = ld->c->allowed_commands;
	char        *exe = resolve_exe(argv[0], n->file), *inner;
	const char  *inline_code;
	bool         listed = false, exact = false, split;
	size_t       t;

	if (exe == NULL) {
		cfg__ld_err(ld, n, path, "command not found: %s", argv[0]);
		return NULL;
	}
	for (size_t i = 0; allowed != NULL && allowed[i] != NULL; i++) {
		size_t len = strlen(allowed[i]);

		if (strcmp(allowed[i], exe) == 0)
			listed = exact = true;
		else if (len > 0 && allowed[i][len - 1] == '/' && strncmp(allowed[i], exe, len) == 0)
			listed = true;
	}
	if (ld->c->strict_commands && !exact) {
		cfg__ld_err(ld, n, path, "%s (%s): strictCommands is on: only the executables allowedCommands "
		    "lists by exact path may run", argv[0], exe);
		goto fail;
	}
	/* A shell by its name, or by the file itself (a renamed copy of dash is still dash). */
	if ((is_shell_name(exe) || is_shell_name(argv[0]) || cmd_is_shell_file(exe)) && !exact) {
		cfg__ld_err(ld, n, path, "%s: " SHELL_REFUSED, argv[0]);
		goto fail;
	}
	if (!exact && (inline_code = cmd_inline_code(exe, argv)) != NULL) {
		cfg__ld_err(ld, n, path, "%s: an interpreter given its program inline (%s); list %s in "
		    "allowedCommands to allow it", argv[0], inline_code, exe);
		goto fail;
	}
	if (allowed != NULL && !listed) {
		cfg__ld_err(ld, n, path, "%s (%s) is not under allowedCommands", argv[0], exe);
		goto fail;
	}
	if (!exact && allowed != NULL && is_wrapper(exe)) {
		/* Under an allowlist, a program that runs other programs must be listed by name. */
		cfg__ld_err(ld, n, path, "%s runs other programs; list %s itself in allowedCommands to allow it",
		    argv[0], exe);
		goto fail;
	}
	if (!exact && is_wrapper(exe) && wrapper_refused(ld, n, path, argv, exe))
		goto fail;
	if (!exact && (strcmp(base_name(exe), "env") == 0 || strcmp(base_name(argv[0]), "env") == 0)) {
		t = env_target(argv, &split);
		if (split) {
			cfg__ld_err(ld, n, path, "%s -S: " SHELL_REFUSED, argv[0]);
			goto fail;
		}
		if (t > 0) {
			if (depth >= 4) {
				cfg__ld_err(ld, n, path, "env runs env too many times");
				goto fail;
			}
			if ((inner = cfg__command_check(ld, n, path, argv + t, depth + 1)) == NULL)
				goto fail;
			free(inner);
		}
	}
	return exe;
fail:
	free(exe);
	return NULL;
}

/* tls.cert / tls.key as written. */
struct tls_paths {
	char *cert, *key;
};

static const struct field tls_fields[] = {
	FLD_STR("cert", struct tls_paths, cert),
	FLD_STR("key", struct tls_paths, key),
	FLD_END,
};

/* OpenSSL's passphrase callback that refuses: an encrypted key does not load. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

X509 *
cfg__pem_cert(const char *text, size_t len)
{
	BIO  *bio = BIO_new_mem_buf(text, (int)len);
	X509 *x;

	if (bio == NULL)
		fatal("config: out of memory");
	x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	return x;
}

EVP_PKEY *
cfg__pem_key(const char *text, size_t len)
{
	BIO      *bio = BIO_new_mem_buf(text, (int)len);
	EVP_PKEY *pk;

	if (bio == NULL)
		fatal("config: out of memory");
	pk = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	return pk;
}

void
cfg__tls_keep(struct cfg *c, char **cert, char **key)
{
	free(c->tls_cert_pem);
	if (c->tls_key_pem != NULL)
		OPENSSL_cleanse(c->tls_key_pem, strlen(c->tls_key_pem));
	free(c->tls_key_pem);
	c->tls_cert_pem = *cert;
	c->tls_key_pem = *key;
	*cert = *key = NULL;
}

/* Reads a PEM file for tls.<what>; NULL after one error. */
static char *
tls_read(struct ld *ld, const struct node *n, const char *path, const char *file, size_t *len)
{
	char *text = cfg__read_small_file(file, CFG_MAX_PEM_BYTES, len);

	if (text == NULL) {
		if (errno == EFBIG)
			cfg__ld_err(ld, n, path, "%s: larger than %u bytes", file, CFG_MAX_PEM_BYTES);
		else
			cfg__ld_err(ld, n, path, "cannot read %s: %s", file, strerror(errno));
	}
	return text;
}

void
cfg__top_tls(struct ld *ld, struct node *v, const char *path, void *obj)
{
	struct cfg      *c = obj;
	struct tls_paths tp = { 0 };
	struct node     *cn, *kn;
	char            *cp = cfg__path_join(path, "cert"), *kp = cfg__path_join(path, "key");
	char            *cert = NULL, *key = NULL;
	size_t           clen = 0, klen = 0;
	X509            *x = NULL;
	EVP_PKEY        *pk = NULL;

	cfg__decode_fields(ld, v, path, tls_fields, &tp);
	if (v->kind != NODE_MAP)
		goto out;
	cn = cfg__map_get(v, "cert");
	kn = cfg__map_get(v, "key");
	if ((tp.cert == NULL) != (tp.key == NULL)) {
		if (tp.cert == NULL)
			cfg__ld_err(ld, cn ? cn : v, cp, "required with tls.key");
		else
			cfg__ld_err(ld, kn ? kn : v, kp, "required with tls.cert");
		goto out;
	}
	if (tp.cert == NULL)
		goto out;
	if ((cert = tls_read(ld, cn, cp, tp.cert, &clen)) != NULL &&
	    (x = cfg__pem_cert(cert, clen)) == NULL)
		cfg__ld_err(ld, cn, cp, "%s: not a PEM certificate", tp.cert);
	if ((key = tls_read(ld, kn, kp, tp.key, &klen)) != NULL &&
	    (pk = cfg__pem_key(key, klen)) == NULL)
		cfg__ld_err(ld, kn, kp, "%s: not a PEM private key (or it has a passphrase)", tp.key);
	if (x != NULL && pk != NULL && X509_check_private_key(x, pk) != 1)
		cfg__ld_err(ld, kn, kp, "%s does not match the certificate %s", tp.key, tp.cert);
	else if (x != NULL && pk != NULL)
		cfg__tls_keep(c, &cert, &key);
	ERR_clear_error();
out:
	X509_free(x);
	EVP_PKEY_free(pk);
	free(cert);
	if (key != NULL)
		OPENSSL_cleanse(key, klen);
	free(key);
	free(tp.cert);
	free(tp.key);
	free(cp);
	free(kp);
}
