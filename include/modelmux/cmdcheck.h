/* cmdcheck: what a model's command really runs. A shell is recognised by the file itself — the
 * same inode as a shell on this machine, or a copy of one (same size and SHA-256) under any
 * name — and an interpreter by its name and the option that hands it a program inline
 * (python -c, perl -e, node --eval, an awk program…). The config's command rules use these. */
#ifndef MODELMUX_CMDCHECK_H
#define MODELMUX_CMDCHECK_H

#include <stdbool.h>

#define CMD_MAX_SHELLS 64 /* distinct shell files remembered */

/* Is the executable file at `exe` (a resolved path) one of this machine's shells, or a copy of
 * one? The shells are found once (in /bin, /usr/bin, /usr/local/bin, /sbin, /usr/sbin). */
bool cmd_is_shell_file(const char *exe);

/* Does argv hand an interpreter a program inline? `exe` is the resolved program. Returns a
 * short description ("python -c") or NULL. */
const char *cmd_inline_code(const char *exe, char *const *argv);

#endif
