/* config: command lines — comment lines and continuations, then words split as a POSIX shell
 * would quote them (cfg_split_command), without running one. */
#include <limits.h>
#include <stddef.h>

#include "modelmux/config.h"
#include "modelmux/log.h"
#include "modelmux/util.h"
#include "config_int.h"

/* ---- command lines ----------------------------------------------------------------------- */

bool
cfg__is_trim_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Drops lines whose trimmed text starts with '#'; with `join`, a trailing '\' becomes a space. */
char *
cfg__prep_lines(const char *s, bool join)
{
	struct buf  out = { 0 };
	const char *line = s, *nl, *b, *e;
	bool        first = true;

	for (;;) {
		nl = strchr(line, '\n');
		e = nl ? nl : line + strlen(line);
		for (b = line; b < e && cfg__is_trim_space(*b); b++)
			;
		while (e > b && cfg__is_trim_space(e[-1]))
			e--;
		if (b == e || *b != '#') {
			if (!first)
				buf_printf(&out, "\n");
			first = false;
			if (join && e > b && e[-1] == '\\')
				buf_printf(&out, "%.*s ", (int)(e - b - 1), b);
			else
				buf_printf(&out, "%.*s", (int)((nl ? nl : line + strlen(line)) - line),
				    line);
		}
		if (nl == NULL)
			break;
		line = nl + 1;
	}
	return out.data ? out.data : xstrdup("");
}

struct words {
	char     **v;
	size_t     n, cap;
	struct buf w;
	bool       inword;
};

static void
word_putc(struct words *ws, char c)
{
	if (buf_append(&ws->w, &c, 1, SIZE_MAX / 2) == -1)
		fatal("config: out of memory");
	ws->inword = true;
}

static int
word_end(struct words *ws)
{
	if (!ws->inword)
		return 0;
	if (ws->n == CFG_MAX_ARGV)
		return -1;
	if (ws->n + 1 >= ws->cap) {
		ws->cap = ws->cap ? ws->cap * 2 : 8;
		ws->v = xreallocarray(ws->v, ws->cap, sizeof(*ws->v));
	}
	ws->v[ws->n++] = ws->w.data ? ws->w.data : xstrdup("");
	ws->v[ws->n] = NULL;
	ws->w = (struct buf){ 0 };
	ws->inword = false;
	return 0;
}

char **
cfg_split_command(const char *cmd, const char **err)
{
	struct words ws = { 0 };
	char        *s = cfg__prep_lines(cmd, true), **res = NULL;
	const char  *p;
	char         quote = 0;

	*err = NULL;
	for (p = s; *p != '\0'; p++) {
		if (quote == '\'') {
			if (*p == '\'')
				quote = 0;
			else
				word_putc(&ws, *p);
		} else if (quote == '"') {
			if (*p == '"')
				quote = 0;
			else if (*p == '\\' && p[1] != '\0' && strchr("$`\"\\", p[1]) != NULL)
				word_putc(&ws, *++p);
			else
				word_putc(&ws, *p);
		} else if (*p == ' ' || *p == '\t' || *p == '\n') {
			if (word_end(&ws) == -1) {
				*err = "too many words";
				goto out;
			}
		} else if (*p == '\'' || *p == '"') {
			quote = *p;
			ws.inword = true;
		} else if (*p == '\\' && p[1] != '\0') {
			word_putc(&ws, *++p);
		} else {
			word_putc(&ws, *p);
		}
	}
	if (quote != 0) {
		*err = "unterminated quote";
		goto out;
	}
	if (word_end(&ws) == -1) {
		*err = "too many words";
		goto out;
	}
	if (ws.n == 0) {
		*err = "empty command";
		goto out;
	}
	res = ws.v;
	ws.v = NULL;
out:
	strv_free(ws.v);
	buf_free(&ws.w);
	free(s);
	return res;
}
