/* Code and data addresses across processes that run the same executable at different addresses
 * (ASLR, PIE): an address travels as (module, offset from the module's base), and each module is
 * named by its path and its GNU build-id, so a rank that runs a different build is caught. */
#ifndef MPROC_POOL_REMOTE_MODULES_H
#define MPROC_POOL_REMOTE_MODULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MPROC__MOD_PATH_MAX 512
#define MPROC__MOD_ID_MAX 32
#define MPROC__MOD_MAX 1024
#define MPROC__MOD_NONE UINT32_MAX /* an address in no module (or NULL) */

typedef struct {
    char path[MPROC__MOD_PATH_MAX]; /* the main program: its /proc/self/exe */
    uint8_t id[MPROC__MOD_ID_MAX];  /* GNU build-id (id_len 0: the module has none) */
    uint32_t id_len;
    uintptr_t base, lo, hi; /* load bias; the range its PT_LOAD segments cover */
    bool main;
} mproc__module;

/* A process's view of the modules loaded in it, in the order first seen (index = wire id). */
typedef struct {
    mproc__module *mod;
    uint32_t n, cap;
    uint32_t last; /* the module the last lookup found */
} mproc__modtab;

/* Add every module loaded now that the table does not have yet (appended: earlier indices stay).
 * Returns how many were added, or -ENOMEM. */
int mproc__modtab_scan(mproc__modtab *t);
/* Which module holds addr (scanning again once if none does): its index and the offset; false
 * for NULL or an address in no module. */
bool mproc__modtab_ref(mproc__modtab *t, const void *addr, uint32_t *mod, uint64_t *off);
/* The local module with the same identity as m (the main program matches the main program), or
 * NULL with why in msg. */
const mproc__module *mproc__modtab_match(mproc__modtab *t, const mproc__module *m, char *msg,
                                         size_t cap);
void mproc__modtab_free(mproc__modtab *t);

#endif
