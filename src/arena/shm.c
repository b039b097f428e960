/* Named POSIX shared memory for unrelated processes, with Python's SharedMemory semantics. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mproc/shared.h"

#define SHM_MAGIC 0x73686d21U
#define SHM_NAME_MAX 251 /* NAME_MAX less the leading '/' shm_open adds to its /dev/shm path */

struct mproc_shm {
    uint32_t magic;
    void *ptr;
    size_t size;
    char name[SHM_NAME_MAX + 2];
};

static int normalise(char *dst, const char *name)
{
    if (!name) return -EINVAL;
    if (name[0] == '/') name++;
    size_t n = strlen(name);
    if (n == 0 || strchr(name, '/')) return -EINVAL;
    if (n > SHM_NAME_MAX) return -ENAMETOOLONG;
    dst[0] = '/';
    memcpy(dst + 1, name, n + 1);
    return 0;
}

static int map(mproc_shm **out, const char *name, int flags, size_t size)
{
    if (!out) return -EINVAL;
    *out = NULL;
    mproc_shm *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    int r = normalise(s->name, name);
    if (r < 0) goto fail;
    int fd = shm_open(s->name, flags | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = -errno;
        goto fail;
    }
    struct stat st;
    if (flags & O_CREAT) {
        if (ftruncate(fd, (off_t)size) < 0) r = -errno;
    } else if (fstat(fd, &st) < 0) {
        r = -errno;
    } else {
        size = (size_t)st.st_size;
    }
    if (r == 0 && size > 0) {
        s->ptr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (s->ptr == MAP_FAILED) {
            s->ptr = NULL;
            r = -errno;
        }
    }
    close(fd);
    if (r < 0) {
        /* Creation is all or nothing: do not leave a name behind that nobody can use. */
        if (flags & O_CREAT) shm_unlink(s->name);
        goto fail;
    }
    s->size = size;
    s->magic = SHM_MAGIC;
    *out = s;
    return 0;
fail:
    free(s);
    return r;
}

int mproc_shm_create(mproc_shm **out, const char *name, size_t size)
{
    if (size == 0) return -EINVAL;
    return map(out, name, O_CREAT | O_EXCL, size);
}

int mproc_shm_open(mproc_shm **out, const char *name)
{
    return map(out, name, 0, 0);
}

static bool valid(const mproc_shm *s)
{
    return s && s->magic == SHM_MAGIC;
}

void *mproc_shm_ptr(mproc_shm *s)
{
    return valid(s) ? s->ptr : NULL;
}

size_t mproc_shm_size(mproc_shm *s)
{
    return valid(s) ? s->size : 0;
}

const char *mproc_shm_name(mproc_shm *s)
{
    return valid(s) ? s->name : NULL;
}

int mproc_shm_unlink(mproc_shm *s)
{
    if (!valid(s)) return -EINVAL;
    return shm_unlink(s->name) < 0 ? -errno : 0;
}

void mproc_shm_close(mproc_shm *s)
{
    if (!valid(s)) return;
    if (s->ptr) munmap(s->ptr, s->size);
    s->magic = 0;
    free(s);
}
