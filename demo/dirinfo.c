/* The directory-info work: list the regular files under a directory without following symlinks,
 * sort their relative paths bytewise, hash each file, and digest the files' digests in that order,
 * so that the tree's digest equals
 * `find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum | cut -c1-64 | sha256sum`.
 * A digest of digests (not of the contents end to end) lets the files be hashed in any order and
 * by any number of workers: pool mode maps dirinfo_hash_file over the list (pool_mode.c). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "demo.h"

#define READ_CHUNK (256 * 1024)

typedef struct {
    char **paths;
    size_t n, cap;
    uint64_t skipped;
    int error; /* out of memory */
} file_list;

static void list_add(file_list *l, const char *path)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        char **p = realloc(l->paths, cap * sizeof *p);
        if (!p) {
            l->error = -ENOMEM;
            return;
        }
        l->paths = p;
        l->cap = cap;
    }
    char *copy = strdup(path);
    if (!copy) {
        l->error = -ENOMEM;
        return;
    }
    l->paths[l->n++] = copy;
}

static char *join_path(const char *prefix, const char *name)
{
    char *s;
    if (!*prefix) return strdup(name);
    return asprintf(&s, "%s/%s", prefix, name) < 0 ? NULL : s;
}

/* Walks with openat from the directory's fd, so paths never grow past what one call can take, and
 * O_NOFOLLOW refuses a directory swapped for a symlink between the stat and the open. */
static void walk(int dfd, const char *prefix, file_list *l, dir_progress *pg)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        l->skipped++;
        MPROC_WARNING("skipping directory %s: %s", *prefix ? prefix : ".", strerror(errno));
        return;
    }
    struct dirent *de;
    while (!l->error && (errno = 0, de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue; /* gone */
        if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) continue; /* symlinks, devices, ... */
        char *path = join_path(prefix, de->d_name);
        if (!path) {
            l->error = -ENOMEM;
            break;
        }
        if (S_ISREG(st.st_mode)) {
            list_add(l, path);
            if (pg) {
                atomic_fetch_add(&pg->files_total, 1);
                atomic_fetch_add(&pg->bytes_total, (uint64_t)st.st_size);
            }
        } else {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                l->skipped++;
                MPROC_WARNING("skipping directory %s: %s", path, strerror(errno));
            } else {
                walk(sub, path, l, pg);
            }
        }
        free(path);
    }
    if (errno && !l->error) {
        l->skipped++;
        MPROC_WARNING("cannot list all of %s: %s", *prefix ? prefix : ".", strerror(errno));
    }
    closedir(d);
}

/* strcmp compares as unsigned char: the C locale's bytewise order, as `LC_ALL=C sort`. */
static int by_bytes(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void to_hex(const unsigned char *md, unsigned len, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < len; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[2 * len] = '\0';
}

int dirinfo_list(const char *dir, dir_progress *pg, dir_list *out)
{
    memset(out, 0, sizeof *out);
    out->root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (out->root < 0) {
        int rc = -errno;
        MPROC_ERROR("cannot open %s: %s", dir, strerror(errno));
        return rc;
    }
    file_list l = {0};
    int dup_root = dup(out->root); /* walk's fdopendir takes ownership of its fd */
    if (dup_root < 0)
        l.error = -errno;
    else
        walk(dup_root, "", &l, pg);
    if (!l.error) qsort(l.paths, l.n, sizeof *l.paths, by_bytes);
    out->paths = l.paths;
    out->n = l.n;
    out->skipped = l.skipped;
    if (l.error) {
        dirinfo_list_free(out);
        return l.error;
    }
    if (pg) atomic_store(&pg->hashing, 1);
    return 0;
}

void dirinfo_list_free(dir_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->paths[i]);
    free(l->paths);
    if (l->root >= 0) close(l->root);
    l->paths = NULL;
    l->n = 0;
    l->root = -1;
}

/* A read error after some bytes keeps their count, as cat does, but the file gets no digest (as
 * sha256sum prints none). */
void dirinfo_hash_file(int root, const char *path, dir_progress *pg, file_digest *out)
{
    memset(out, 0, sizeof *out);
    int fd = openat(root, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) { /* replaced since listed */
        close(fd);
        fd = -1;
        errno = EISDIR;
    }
    EVP_MD_CTX *ctx = fd >= 0 ? EVP_MD_CTX_new() : NULL;
    unsigned char *buf = ctx ? malloc(READ_CHUNK) : NULL;
    if (fd < 0 || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
        out->status = fd < 0 ? -errno : -ENOMEM;
        MPROC_WARNING("skipping %s: %s", path, strerror(-out->status));
        goto done;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (;;) {
        ssize_t n = read(fd, buf, READ_CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            MPROC_WARNING("read error in %s after %lld bytes: %s", path, (long long)out->bytes,
                          strerror(errno));
            out->status = 1;
            break;
        }
        if (n == 0) break;
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        out->bytes += n;
        if (pg) atomic_fetch_add(&pg->bytes_done, (uint64_t)n);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (out->status == 0) {
        if (EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 32)
            to_hex(md, mdlen, out->sha256);
        else
            out->status = 1;
    }
done:
    if (fd >= 0) close(fd);
    free(buf);
    EVP_MD_CTX_free(ctx);
}

void dirinfo_summarise(const dir_list *l, const file_digest *files, int error, double t0,
                       dir_result *out)
{
    memset(out, 0, sizeof *out);
    out->found = l->n;
    out->skipped = l->skipped;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (error == 0 && (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))) error = -ENOMEM;
    for (size_t i = 0; error == 0 && i < l->n; i++) {
        const file_digest *f = &files[i];
        if (f->status == 0) {
            char line[sizeof f->sha256];
            memcpy(line, f->sha256, 64);
            line[64] = '\n'; /* sha256sum's line, cut to its digest */
            EVP_DigestUpdate(ctx, line, sizeof line);
            out->files++;
        } else {
            out->skipped++;
        }
        if (f->status >= 0) out->bytes += (uint64_t)f->bytes;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (error == 0) {
        if (EVP_DigestFinal_ex(ctx, md, &mdlen))
            to_hex(md, mdlen, out->sha256);
        else
            error = -EIO;
    }
    EVP_MD_CTX_free(ctx);
    out->error = error;
    out->seconds = demo_now() - t0;
    if (error == 0)
        MPROC_INFO("%llu files, %llu bytes, %llu skipped, sha256 %s in %.3f s",
                   (unsigned long long)out->files, (unsigned long long)out->bytes,
                   (unsigned long long)out->skipped, out->sha256, out->seconds);
    else
        MPROC_ERROR("dir info failed: %s", strerror(-error));
}

void dirinfo_compute(const char *dir, dir_progress *pg, dir_result *out)
{
    double t0 = demo_now();
    MPROC_INFO("scanning %s", dir);
    dir_list l;
    int rc = dirinfo_list(dir, pg, &l);
    if (rc < 0) {
        memset(out, 0, sizeof *out);
        out->error = rc;
        out->seconds = demo_now() - t0;
        return;
    }
    MPROC_INFO("hashing %zu files", l.n);
    file_digest *files = calloc(l.n ? l.n : 1, sizeof *files);
    if (!files) rc = -ENOMEM;
    for (size_t i = 0; files && i < l.n; i++) {
        dirinfo_hash_file(l.root, l.paths[i], pg, &files[i]);
        if (pg) atomic_fetch_add(&pg->files_done, 1);
    }
    dirinfo_summarise(&l, files, rc, t0, out);
    free(files);
    dirinfo_list_free(&l);
}
