/* The directory-info worker: list the regular files under a directory without following symlinks,
 * sort their relative paths bytewise and hash their contents in that order, so that the digest
 * equals `find . -type f -print0 | LC_ALL=C sort -z | xargs -0 cat | sha256sum`. */
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

/* Feeds one file to the digest. Returns the bytes read, or -errno when the file could not be
 * opened (nothing was hashed then). A read error after some bytes keeps those bytes, as cat does,
 * and sets *cut. */
static int64_t hash_file(int root, const char *path, EVP_MD_CTX *ctx, unsigned char *buf,
                         dir_progress *pg, bool *cut)
{
    *cut = false;
    int fd = openat(root, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) { /* replaced since it was listed */
        close(fd);
        return -EISDIR;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    int64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, READ_CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            MPROC_WARNING("read error in %s after %lld bytes: %s", path, (long long)total,
                          strerror(errno));
            *cut = true;
            break;
        }
        if (n == 0) break;
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        total += n;
        if (pg) atomic_fetch_add(&pg->bytes_done, (uint64_t)n);
    }
    close(fd);
    return total;
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

void dirinfo_compute(const char *dir, dir_progress *pg, dir_result *out)
{
    double t0 = demo_now();
    memset(out, 0, sizeof *out);
    MPROC_INFO("scanning %s", dir);

    int root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        out->error = -errno;
        MPROC_ERROR("cannot open %s: %s", dir, strerror(errno));
        return;
    }
    file_list l = {0};
    int dup_root = dup(root); /* walk's fdopendir takes ownership of its fd */
    if (dup_root < 0)
        l.error = -errno;
    else
        walk(dup_root, "", &l, pg);
    if (pg) atomic_store(&pg->hashing, 1);

    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(READ_CHUNK);
    if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) l.error = -ENOMEM;
    if (!l.error) {
        qsort(l.paths, l.n, sizeof *l.paths, by_bytes);
        MPROC_INFO("hashing %zu files", l.n);
        for (size_t i = 0; i < l.n; i++) {
            bool cut;
            int64_t n = hash_file(root, l.paths[i], ctx, buf, pg, &cut);
            if (n < 0) {
                l.skipped++;
                MPROC_WARNING("skipping %s: %s", l.paths[i], strerror((int)-n));
            } else {
                out->bytes += (uint64_t)n;
                if (cut)
                    l.skipped++;
                else
                    out->files++;
            }
            if (pg) atomic_fetch_add(&pg->files_done, 1);
        }
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        if (EVP_DigestFinal_ex(ctx, md, &mdlen))
            to_hex(md, mdlen, out->sha256);
        else
            l.error = -EIO;
    }
    out->error = l.error;
    out->found = l.n;
    out->skipped = l.skipped;
    for (size_t i = 0; i < l.n; i++)
        free(l.paths[i]);
    free(l.paths);
    free(buf);
    EVP_MD_CTX_free(ctx);
    close(root);
    out->seconds = demo_now() - t0;
    MPROC_INFO("%llu files, %llu bytes, %llu skipped, sha256 %s in %.3f s",
               (unsigned long long)out->files, (unsigned long long)out->bytes,
               (unsigned long long)out->skipped, out->sha256, out->seconds);
}
