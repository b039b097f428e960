#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static int add_under_lock(void *arg)
{
    mproc_value *v = arg;
    for (int i = 0; i < 10000; i++) {
        if (mproc_rlock_acquire(mproc_value_lock(v), MPROC_FOREVER) != 0) return 1;
        ((long *)mproc_value_ptr(v))[0]++;
        mproc_rlock_release(mproc_value_lock(v));
    }
    return 0;
}

TEST(value_with_lock_across_processes)
{
    mproc_value *v;
    CHECK_OK(mproc_value_new(&v, 16 * sizeof(long), true));
    CHECK(mproc_value_lock(v) != NULL);
    CHECK(mproc_value_size(v) == 16 * sizeof(long));
    long *arr = mproc_value_ptr(v);
    for (int i = 0; i < 16; i++)
        CHECK_EQ(arr[i], 0);
    mproc_process *ps[3];
    for (int i = 0; i < 3; i++)
        ps[i] = harness_start(add_under_lock, v);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(harness_join(ps[i]), 0);
    CHECK_EQ(arr[0], 30000);
    mproc_value_free(v);
}

TEST(value_without_lock)
{
    mproc_value *v;
    CHECK_OK(mproc_value_new(&v, 3, false));
    CHECK(mproc_value_lock(v) == NULL);
    CHECK(mproc_value_ptr(v) != NULL);
    mproc_value_free(v);
    CHECK_RC(mproc_value_new(&v, 0, false), -EINVAL);
    CHECK_RC(mproc_value_new(NULL, 8, false), -EINVAL);
    CHECK(mproc_value_ptr(NULL) == NULL);
    mproc_value_free(NULL);
}

static void shm_name(char *buf, size_t n)
{
    snprintf(buf, n, "/mproc-test-%d", (int)getpid());
}

TEST(shm_create_open_unlink)
{
    char name[64];
    shm_name(name, sizeof name);
    mproc_shm *a, *b, *c;
    CHECK_OK(mproc_shm_create(&a, name, 4096));
    CHECK_RC(mproc_shm_create(&b, name, 4096), -EEXIST);
    CHECK_OK(mproc_shm_open(&b, name + 1)); /* the leading '/' is optional, as in Python */
    CHECK_EQ(mproc_shm_size(b), 4096);
    strcpy(mproc_shm_ptr(a), "hello");
    CHECK(strcmp(mproc_shm_ptr(b), "hello") == 0);
    CHECK_OK(mproc_shm_unlink(a));
    CHECK_RC(mproc_shm_unlink(b), -ENOENT);
    CHECK_RC(mproc_shm_open(&c, name), -ENOENT);
    /* Still mapped after the unlink. */
    CHECK(strcmp(mproc_shm_ptr(b), "hello") == 0);
    mproc_shm_close(a);
    mproc_shm_close(b);
    mproc_shm_close(NULL);
}

static int shm_child(void *arg)
{
    mproc_shm *s;
    if (mproc_shm_open(&s, arg) != 0) return 1;
    strcpy(mproc_shm_ptr(s), "from child");
    mproc_shm_close(s);
    return 0;
}

TEST(shm_between_processes)
{
    char name[64];
    shm_name(name, sizeof name);
    mproc_shm *a;
    CHECK_OK(mproc_shm_create(&a, name, 100));
    CHECK_EQ(harness_join(harness_start(shm_child, name)), 0);
    CHECK(strcmp(mproc_shm_ptr(a), "from child") == 0);
    CHECK_OK(mproc_shm_unlink(a));
    mproc_shm_close(a);
}

TEST(shm_bad_input)
{
    mproc_shm *s;
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[299] = '\0';
    CHECK_RC(mproc_shm_create(&s, NULL, 10), -EINVAL);
    CHECK_RC(mproc_shm_create(&s, "/", 10), -EINVAL);
    CHECK_RC(mproc_shm_create(&s, "a/b", 10), -EINVAL);
    CHECK_RC(mproc_shm_create(&s, longname, 10), -ENAMETOOLONG);
    CHECK_RC(mproc_shm_create(&s, "mproc-zero", 0), -EINVAL);
    CHECK_RC(mproc_shm_create(NULL, "mproc-x", 10), -EINVAL);
    CHECK_RC(mproc_shm_unlink(NULL), -EINVAL);
    CHECK(mproc_shm_ptr(NULL) == NULL);
}
