/* config: several files merged into one tree (--config-dir), and the loading entry points. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "modelmux/config.h"
#include "modelmux/util.h"
#include "config_int.h"

/* ---- merging files (--config-dir) -------------------------------------------------------- */

/* Maps whose keys name things (a model, a group…): a key defined by two files is an error,
 * not a merge. llama-swap's list. */
static const char *const identity_maps[] = {
	"models", "groups", "profiles", "selectors", "peers", "matrix",
	"routing.router.settings.groups", "routing.router.settings.matrix", NULL,
};

static bool
is_identity_map(const char *path)
{
	for (const char *const *p = identity_maps; *p != NULL; p++)
		if (strcmp(*p, path) == 0)
			return true;
	return false;
}

static const char *
kind_name(const struct node *n)
{
	return n->kind == NODE_MAP ? "a map" : n->kind == NODE_SEQ ? "a list" : "a value";
}

/* Frees a container whose kids were moved elsewhere. */
static void
node_free_shell(struct node *n)
{
	free(n->kids);
	free(n->str);
	free(n);
}

/* Merges `src` (owned; consumed) into *dstp at `path`. Messages point at src's node and name
 * dst's place. */
static void
merge_node(struct ld *ld, struct node **dstp, struct node *src, const char *path)
{
	struct node *dst = *dstp;
	const char  *p = *path ? path : "(root)";

	if (src == NULL)
		return;
	if (dst == NULL || cfg__node_is_null(dst)) {
		cfg__node_free(dst);
		*dstp = src;
		return;
	}
	if (cfg__node_is_null(src)) {
		cfg__node_free(src);
		return;
	}
	if (dst->kind != src->kind) {
		cfg__ld_err(ld, src, p, "is %s here but %s in %s:%d:%d", kind_name(src), kind_name(dst),
		    dst->file, dst->line, dst->col);
		cfg__node_free(src);
		return;
	}
	switch (src->kind) {
	case NODE_SCALAR:
		/* The values are not shown: one may be an API key. */
		if (strcmp(dst->str, src->str) != 0)
			cfg__ld_err(ld, src, p, "conflicts with a different value at %s:%d:%d", dst->file,
			    dst->line, dst->col);
		cfg__node_free(src);
		return;
	case NODE_SEQ:
		for (size_t i = 0; i < src->nkids; i++)
			cfg__node_add(dst, src->kids[i]);
		node_free_shell(src);
		return;
	case NODE_MAP:
		break;
	}
	for (size_t i = 0; i < cfg__map_len(src); i++) {
		struct node *k = cfg__map_key(src, i), *v = cfg__map_val(src, i);
		size_t       j;
		char        *kp;

		for (j = 0; j < cfg__map_len(dst); j++)
			if (strcmp(cfg__map_key(dst, j)->str, k->str) == 0)
				break;
		if (j == cfg__map_len(dst)) {
			cfg__node_add(dst, k);
			cfg__node_add(dst, v);
			continue;
		}
		kp = cfg__path_join(path, k->str);
		if (is_identity_map(path)) {
			cfg__ld_err(ld, k, kp, "defined again; first defined at %s:%d:%d",
			    cfg__map_key(dst, j)->file, cfg__map_key(dst, j)->line, cfg__map_key(dst, j)->col);
			cfg__node_free(v);
		} else {
			merge_node(ld, &dst->kids[2 * j + 1], v, kp);
		}
		free(kp);
		cfg__node_free(k);
	}
	node_free_shell(src);
}

static void
strv_push(char ***v, char *s)
{
	size_t n = strv_len(*v);

	*v = xreallocarray(*v, n + 2, sizeof(**v));
	(*v)[n] = s;
	(*v)[n + 1] = NULL;
}

struct cfg *
cfg_load_srcs(const struct cfg_src *srcs, size_t n, struct cfg_errs *errs)
{
	struct ld    ld = { .errs = errs, .budget = CFG_MAX_EXPANSION_BYTES };
	struct node *root = NULL;
	struct cfg  *c = NULL;
	size_t       total = 0;
	bool         failed = false;

	if (n == 0 || n > CFG_MAX_FILES) {
		cfg__errs_push(errs, xasprintf("%s: %zu configuration files (at least 1, at most %d)",
		    n ? srcs[0].name : "(none)", n, CFG_MAX_FILES));
		return NULL;
	}
	ld.c = cfg__new(srcs[0].name);
	for (size_t i = 0; i < n; i++) {
		struct node *tree;
		bool         bad;

		strv_push(&ld.c->files, xstrdup(srcs[i].name));
		ld.file = ld.c->files[i];
		if (srcs[i].len > CFG_MAX_FILE_BYTES) {
			cfg__ld_err_at(&ld, NULL, 1, 1, "(file)", "larger than %u bytes", CFG_MAX_FILE_BYTES);
			failed = true;
			continue;
		}
		if ((total += srcs[i].len) > CFG_MAX_TOTAL_BYTES) {
			cfg__ld_err_at(&ld, NULL, 1, 1, "(file)", "the configuration files together are larger "
			    "than %u bytes", CFG_MAX_TOTAL_BYTES);
			failed = true;
			break;
		}
		tree = cfg__parse_yaml(&ld, srcs[i].text ? srcs[i].text : "", srcs[i].len, &bad);
		if (bad) {
			failed = true;
			continue;
		}
		merge_node(&ld, &root, tree, "");
	}
	if (failed)
		goto out;
	ld.file = ld.c->files[0];
	cfg__load_tree(&ld, root);
	if (ld.nerr == 0) {
		c = ld.c;
		ld.c = NULL;
		c->warnings = ld.warns;
		ld.warns = (struct cfg_errs){ 0 };
	}
out:
	cfg__free(ld.c);
	cfg_errs_free(&ld.warns);
	free(ld.names);
	cfg__node_free(root);
	return c;
}

struct cfg *
cfg_load_buf(const char *name, const char *text, size_t len, struct cfg_errs *errs)
{
	const struct cfg_src src = { name, text, len };

	return cfg_load_srcs(&src, 1, errs);
}

/* Reads a whole config file into `b` (at most CFG_MAX_FILE_BYTES); -1 with one error. */
static int
read_config_file(const char *path, struct buf *b, struct cfg_errs *errs)
{
	char    chunk[65536];
	ssize_t r;
	int     fd, rc = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		cfg__errs_push(errs, xasprintf("%s: %s", path, strerror(errno)));
		return -1;
	}
	for (;;) {
		r = read(fd, chunk, sizeof(chunk));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			cfg__errs_push(errs, xasprintf("%s: %s", path, strerror(errno)));
			goto out;
		}
		if (r == 0)
			break;
		if (buf_append(b, chunk, (size_t)r, CFG_MAX_FILE_BYTES) == -1) {
			cfg__errs_push(errs, xasprintf("%s:1:1: (file): larger than %u bytes", path,
			    CFG_MAX_FILE_BYTES));
			goto out;
		}
	}
	rc = 0;
out:
	close(fd);
	OPENSSL_cleanse(chunk, sizeof(chunk));
	return rc;
}

static bool
is_config_name(const char *name)
{
	size_t len = strlen(name);

	if (name[0] == '.')
		return false;
	return (len > 4 && strcmp(name + len - 4, ".yml") == 0) ||
	    (len > 5 && strcmp(name + len - 5, ".yaml") == 0);
}

static int
str_ptr_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char **
cfg_dir_files(const char *dir, struct cfg_errs *errs)
{
	DIR           *d;
	struct dirent *de;
	char         **names = xcalloc(1, sizeof(*names));
	size_t         n = 0, dlen = strlen(dir);
	const char    *sep = dlen > 0 && dir[dlen - 1] == '/' ? "" : "/";

	if ((d = opendir(dir)) == NULL) {
		cfg__errs_push(errs, xasprintf("%s: %s", dir, strerror(errno)));
		free(names);
		return NULL;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		char       *p;

		if (!is_config_name(de->d_name))
			continue;
		p = xasprintf("%s%s%s", dir, sep, de->d_name);
		/* Symbolic links are followed; a directory or a file that just went is skipped. */
		if (stat(p, &st) == -1 || !S_ISREG(st.st_mode)) {
			free(p);
			continue;
		}
		if (n == CFG_MAX_FILES) {
			cfg__errs_push(errs, xasprintf("%s: more than %d *.yml/*.yaml files", dir,
			    CFG_MAX_FILES));
			free(p);
			strv_free(names);
			closedir(d);
			return NULL;
		}
		strv_push(&names, p);
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), str_ptr_cmp);
	return names;
}

struct cfg *
cfg_load_set(const char *file, const char *dir, struct cfg_errs *errs)
{
	char          **paths = xcalloc(1, sizeof(*paths)), **more = NULL;
	struct buf     *bufs = NULL;
	struct cfg_src *srcs = NULL;
	struct cfg     *c = NULL;
	size_t          n;

	if (file != NULL)
		strv_push(&paths, xstrdup(file));
	if (dir != NULL) {
		if ((more = cfg_dir_files(dir, errs)) == NULL)
			goto out;
		for (char **p = more; *p != NULL; p++)
			strv_push(&paths, xstrdup(*p));
	}
	if ((n = strv_len(paths)) == 0) {
		cfg__errs_push(errs, xasprintf("%s: no *.yml or *.yaml files", dir ? dir : "(none)"));
		goto out;
	}
	if (n > CFG_MAX_FILES) {
		cfg__errs_push(errs, xasprintf("%s: more than %d configuration files", dir ? dir : file,
		    CFG_MAX_FILES));
		goto out;
	}
	bufs = xcalloc(n, sizeof(*bufs));
	srcs = xcalloc(n, sizeof(*srcs));
	for (size_t i = 0; i < n; i++) {
		if (read_config_file(paths[i], &bufs[i], errs) == -1)
			goto out;
		srcs[i] = (struct cfg_src){ paths[i], bufs[i].data ? bufs[i].data : "", bufs[i].len };
	}
	c = cfg_load_srcs(srcs, n, errs);
	if (c != NULL && file == NULL) {
		free(c->path);
		c->path = xstrdup(dir);
	}
out:
	for (size_t i = 0; bufs != NULL && i < strv_len(paths); i++)
		buf_free_wiped(&bufs[i]);
	free(bufs);
	free(srcs);
	strv_free(more);
	strv_free(paths);
	return c;
}

struct cfg *
cfg_load(const char *path, struct cfg_errs *errs)
{
	return cfg_load_set(path, NULL, errs);
}

static void
stamp_add(unsigned long long *h, const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++) {
		*h ^= b[i];
		*h *= 1099511628211ull; /* FNV-1a */
	}
}

static void
stamp_file(unsigned long long *h, const char *name, const struct stat *st)
{
	stamp_add(h, name, strlen(name) + 1);
	stamp_add(h, &st->st_ino, sizeof(st->st_ino));
	stamp_add(h, &st->st_size, sizeof(st->st_size));
	stamp_add(h, &st->st_mtim.tv_sec, sizeof(st->st_mtim.tv_sec));
	stamp_add(h, &st->st_mtim.tv_nsec, sizeof(st->st_mtim.tv_nsec));
}

int
cfg_stamp(const char *file, const char *dir, unsigned long long *out)
{
	unsigned long long h = 14695981039346656037ull;
	struct cfg_errs    errs = { 0 };
	struct stat        st;
	char             **files;

	if (file != NULL) {
		if (stat(file, &st) == -1)
			return -1;
		stamp_file(&h, file, &st);
	}
	if (dir != NULL) {
		if ((files = cfg_dir_files(dir, &errs)) == NULL) {
			cfg_errs_free(&errs);
			return -1;
		}
		for (char **p = files; *p != NULL; p++)
			if (stat(*p, &st) == 0)
				stamp_file(&h, *p, &st);
		strv_free(files);
	}
	*out = h;
	return 0;
}
