/* config_compat: llama-swap's newer config keys and flags, taken as llama-swap means them.
 * config.c stays the loader; this module holds what is particular to llama-swap's later
 * additions (see docs/DESIGN.md, "llama-swap compatibility"). */
#ifndef MODELMUX_CONFIG_COMPAT_H
#define MODELMUX_CONFIG_COMPAT_H

#include <stdbool.h>
#include <stddef.h>

#include "modelmux/config.h"

/* -tls-cert-file/-tls-key-file: reads and checks the PEM files as tls.cert/tls.key are checked
 * (a certificate, a key without passphrase, the two matching) and puts them in place of the
 * config's tls: block. 0, or -1 with one message in `errs` (the caller frees it). */
int cfg_compat_tls_files(struct cfg *c, const char *cert, const char *key, struct cfg_errs *errs);

#endif
