/* MPROC_CHECK_POINTERS=1: a debug check that a pointer handed to the workers (map_opts.arg,
 * initarg) points at memory they have.
 *
 * A worker sees the family arena, shared, and a copy of the rest of memory as it was when it was
 * forked: at mproc_pool_new (fork), or when the forkserver helper was forked. A pointer to heap or
 * stack memory made after that reads whatever the worker's copy holds at that address, and the
 * call silently gives wrong answers. The check cannot see contents, only addresses: at pool
 * creation it snapshots the address ranges a worker has (/proc/PID/maps of the first worker),
 * narrowed where it can tell what did not exist yet:
 *   - the main heap ([heap]) up to the start of malloc's top chunk at pool creation, which was
 *     free then (so it held nothing a worker could use, whether forked now or, from the
 *     forkserver helper, earlier);
 *   - the stack of the thread making the pool, above mproc_pool_new's frame: below it lie only
 *     frames made after (a later call's locals reuse that space).
 * And then it compares the first bytes there (up to 4, within the page) with what a worker reads
 * at the same address (process_vm_readv; skipped where the kernel refuses it): memory reused by
 * malloc, or changed in place since the worker's copy was made, usually differs.
 * A pointer passes if it lies in the arena, or in a snapshot range with the same first bytes in
 * the worker. So it catches a block malloc'd
 * after the pool from the heap's top or by mmap, a deeper stack frame, a new mapping; it cannot
 * always catch memory reused or changed whose first bytes happen to match, nor (forkserver, with
 * the comparison refused) heap memory made between the helper's start and the pool.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "arena/arena.h"
#include "log/log.h"
#include "pool/pointers.h"

typedef struct {
    uintptr_t lo, hi;
} range;

struct mproc__ptr_snapshot {
    range *r;
    size_t n;
};

bool mproc__ptr_check_enabled(void)
{
    const char *e = getenv("MPROC_CHECK_POINTERS");
    return e && *e && strcmp(e, "0") != 0;
}

/* Where malloc's main heap stops being in use: its top chunk, free at this moment, starts here. */
static uintptr_t heap_used_end(void)
{
    uintptr_t brk = (uintptr_t)sbrk(0);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    if (mi.keepcost < brk) return brk - mi.keepcost;
#endif
    return brk;
}

int mproc__ptr_snapshot_take(pid_t worker, const void *stack_floor, mproc__ptr_snapshot **out)
{
    *out = NULL;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)worker);
    FILE *f = fopen(path, "re");
    if (!f) return -errno;
    mproc__ptr_snapshot *s = calloc(1, sizeof *s);
    size_t cap = 0;
    uintptr_t heap_end = heap_used_end(), sp = (uintptr_t)stack_floor;
    char line[512];
    int r = s ? 0 : -ENOMEM;
    while (r == 0 && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) != 2) continue;
        range x = {lo, hi};
        if (strstr(line, "[heap]") && heap_end < x.hi) x.hi = heap_end > x.lo ? heap_end : x.lo;
        /* The stack of the thread making the pool: only the part above its caller's frames. */
        if (sp >= x.lo && sp < x.hi) x.lo = sp;
        if (x.lo >= x.hi) continue;
        if (s->n == cap) {
            cap = cap ? 2 * cap : 64;
            range *nr = realloc(s->r, cap * sizeof *nr);
            if (!nr) {
                r = -ENOMEM;
                break;
            }
            s->r = nr;
        }
        s->r[s->n++] = x;
    }
    fclose(f);
    if (r < 0) {
        mproc__ptr_snapshot_free(s);
        return r;
    }
    *out = s;
    return 0;
}

void mproc__ptr_snapshot_free(mproc__ptr_snapshot *s)
{
    if (!s) return;
    free(s->r);
    free(s);
}

/* Whether worker `pid` reads the same first bytes at ptr as we do: true when it cannot tell
 * (the kernel refuses to read another process's memory, the worker is gone). */
static bool same_bytes(pid_t pid, const void *ptr)
{
    uintptr_t a = (uintptr_t)ptr;
    size_t n = 4096 - (a & 4095);
    if (n > 4) n = 4;
    unsigned char theirs[4];
    struct iovec local = {theirs, n}, remote = {(void *)ptr, n};
    ssize_t got = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (got < 0) return errno != EFAULT; /* EFAULT: the worker has nothing mapped there */
    return (size_t)got == n && memcmp(theirs, ptr, n) == 0;
}

int mproc__ptr_check(const mproc__ptr_snapshot *s, pid_t worker, const void *ptr, const char *what,
                     char *msg, size_t cap)
{
    if (!s || !ptr || mproc__arena_contains(ptr, 1)) return 0;
    uintptr_t a = (uintptr_t)ptr;
    bool mapped = false;
    for (size_t i = 0; i < s->n && !mapped; i++)
        mapped = a >= s->r[i].lo && a < s->r[i].hi;
    if (mapped && (worker <= 0 || same_bytes(worker, ptr))) return 0;
    char buf[400];
    snprintf(buf, sizeof buf,
             "MPROC_CHECK_POINTERS: %s %p %s (made or changed after the pool, or after the "
             "forkserver helper started?): copy it with the size option, or allocate it with "
             "mproc_shared_alloc",
             what, ptr,
             mapped ? "holds other bytes in the pool's workers"
                    : "is neither in the arena nor in memory the pool's workers have");
    if (msg && cap) snprintf(msg, cap, "%s", buf);
    MPROC__LOG_SELF(MPROC_LOG_ERROR, "%s", buf);
    return -EFAULT;
}
