/* The log file: opening, the per-record write, and rotation shared by every process.
 *
 * Every process writes its own fd (O_APPEND: one write() per record is one line). The family
 * keeps, in the arena, a robust mutex, a generation counter and an estimate of the file's size.
 * A process that would push the size past max_bytes takes the mutex and re-checks: if the
 * generation moved or the path now names another file, someone rotated already and it only
 * reopens; otherwise it renames the chain (APP.log.N-1 -> APP.log.N, ..., APP.log -> APP.log.1),
 * opens a new APP.log and bumps the generation. Every other process sees the new generation
 * before its next record and reopens. A line written to the old fd meanwhile lands in APP.log.1:
 * nothing is lost. Programs joined through MPROC_LOG_CONFIG belong to another family (another
 * arena): rotation also takes flock() on the log directory, which excludes them too, and every
 * process re-checks by path every MPROC__LOG_RECHECK_NS whether its file was replaced.
 *
 * The fd number never changes: a new file is dup2()ed onto it, so another thread writing at the
 * same moment writes either the old file or the new one, never a closed or reused fd. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena/arena.h"
#include "log/log.h"
#include "platform/robust.h"

#define FAMILY_MAGIC 0x6c6f6766U

/* Used when there is no arena (the library cannot initialise): rotation then only coordinates
 * between threads, and between processes through flock(). */
static mproc__log_family local_family;

static void family_init(void *obj)
{
    mproc__log_family *f = obj;
    mproc__robust_mutex_init(&f->mu, PTHREAD_MUTEX_DEFAULT);
    f->magic = FAMILY_MAGIC;
}

mproc__log_family *mproc__log_family_get(void)
{
    mproc__log_family *f = mproc__arena_root(MPROC__ARENA_ROOT_LOG, sizeof *f, family_init);
    if (f && f->magic == FAMILY_MAGIC) return f;
    if (local_family.magic != FAMILY_MAGIC) family_init(&local_family);
    return &local_family;
}

mproc__log_family *mproc__log_family_peek(void)
{
    if (!mproc__arena_ready()) return NULL;
    mproc__log_family *f = mproc__arena_root(MPROC__ARENA_ROOT_LOG, 0, NULL);
    return f && f->magic == FAMILY_MAGIC ? f : NULL;
}

void mproc__log_family_lock(mproc__log_family *f)
{
    /* A holder that died mid-rotation leaves at worst a half-renamed chain; the re-checks below
     * work from what is on disk, so the state needs no repair. */
    mproc__robust_lock(&f->mu);
}

int mproc__log_mkdirs(const char *dir)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return -ENAMETOOLONG;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) < 0 && errno != EEXIST) return -errno;
            *s = c;
            if (c == '\0') break;
        }
    }
    struct stat st;
    if (stat(p, &st) < 0) return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Open the path and put it on our fd number. */
static int reopen(uint64_t gen)
{
    mproc__log_state *S = &mproc__log;
    int fd = open(S->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    if (S->fd < 0) {
        S->fd = fd;
    } else {
        if (dup2(fd, S->fd) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        close(fd);
    }
    atomic_store(&S->gen, gen);
    return 0;
}

int mproc__log_open_file(void)
{
    mproc__log_state *S = &mproc__log;
    mproc__log_family *f = S->family;
    int r = reopen(atomic_load(&f->gen));
    if (r < 0) return r;
    struct stat st;
    if (fstat(S->fd, &st) == 0) atomic_store(&f->bytes, (uint64_t)st.st_size);
    return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Whether the path still names our open file. */
static bool path_is_ours(struct stat *mine)
{
    struct stat p;
    if (fstat(mproc__log.fd, mine) < 0) return false;
    return stat(mproc__log.path, &p) == 0 && same_file(mine, &p);
}

static void rename_chain(void)
{
    mproc__log_state *S = &mproc__log;
    size_t n = strlen(S->path) + 16;
    char from[n], to[n];
    if (S->backup_count < 0) {
        unlink(S->path);
        return;
    }
    for (int i = S->backup_count - 1; i >= 1; i--) {
        snprintf(from, n, "%s.%d", S->path, i);
        snprintf(to, n, "%s.%d", S->path, i + 1);
        rename(from, to); /* ENOENT for the ones that do not exist yet */
    }
    if (S->backup_count == 0) return;
    snprintf(to, n, "%s.1", S->path);
    rename(S->path, to);
}

/* Called with `need` bytes about to be written and the size estimate saying they do not fit. */
static void rotate(size_t need)
{
    mproc__log_state *S = &mproc__log;
    mproc__log_family *f = S->family;
    mproc__log_family_lock(f);
    uint64_t g = atomic_load(&f->gen);
    struct stat mine;
    if (g != atomic_load(&S->gen)) {
        reopen(g); /* another process of the family rotated first */
    } else if (!path_is_ours(&mine)) {
        /* Replaced from outside the family: follow, and bring the family along. */
        if (reopen(g + 1) == 0) {
            atomic_store(&f->gen, g + 1);
            if (fstat(S->fd, &mine) == 0) atomic_store(&f->bytes, (uint64_t)mine.st_size);
        }
    } else if (mine.st_size == 0 || (uint64_t)mine.st_size + need <= S->max_bytes) {
        atomic_store(&f->bytes, (uint64_t)mine.st_size); /* the estimate ran ahead */
    } else {
        int dfd = open(S->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) flock(dfd, LOCK_EX);
        if (path_is_ours(&mine)) rename_chain();
        if (reopen(g + 1) == 0) {
            atomic_store(&f->gen, g + 1);
            struct stat st;
            atomic_store(&f->bytes, fstat(S->fd, &st) == 0 ? (uint64_t)st.st_size : 0);
        }
        if (dfd >= 0) close(dfd); /* releases the flock */
    }
    pthread_mutex_unlock(&f->mu);
}

static void report_write_error(int e)
{
    mproc__log_family *f = mproc__log.family;
    if (atomic_exchange(&f->err_reported, 1)) return;
    MPROC__LOG_SELF(MPROC_LOG_ERROR,
                    "cannot write the log file %s: %s (not reported again until a write "
                    "succeeds)",
                    mproc__log.path, strerror(e));
}

void mproc__log_file_write(const char *buf, size_t n, int64_t now_ns)
{
    mproc__log_state *S = &mproc__log;
    mproc__log_family *f = S->family;
    uint64_t g = atomic_load_explicit(&f->gen, memory_order_acquire);
    if (g != atomic_load_explicit(&S->gen, memory_order_relaxed)) reopen(g);
    if (now_ns >= atomic_load_explicit(&S->next_check_ns, memory_order_relaxed)) {
        atomic_store(&S->next_check_ns, now_ns + MPROC__LOG_RECHECK_NS);
        struct stat mine;
        if (!path_is_ours(&mine)) {
            mproc__log_family_lock(f);
            g = atomic_load(&f->gen);
            if (g != atomic_load(&S->gen))
                reopen(g);
            else if (!path_is_ours(&mine) && reopen(g + 1) == 0)
                atomic_store(&f->gen, g + 1);
            pthread_mutex_unlock(&f->mu);
        } else if ((uint64_t)mine.st_size > atomic_load(&f->bytes)) {
            atomic_store(&f->bytes, (uint64_t)mine.st_size); /* writers outside the family */
        }
    }
    if (S->max_bytes != SIZE_MAX &&
        atomic_load_explicit(&f->bytes, memory_order_relaxed) + n > S->max_bytes)
        rotate(n);
    ssize_t w;
    do
        w = write(S->fd, buf, n);
    while (w < 0 && errno == EINTR);
    if (w == (ssize_t)n) {
        atomic_fetch_add_explicit(&f->bytes, n, memory_order_relaxed);
        if (atomic_load_explicit(&f->err_reported, memory_order_relaxed))
            atomic_store(&f->err_reported, 0);
        return;
    }
    /* A short write (the disk filled mid-record) is not retried: a second write() could land
     * after another process's line. */
    report_write_error(w < 0 ? errno : ENOSPC);
}
