/* Running a built program (an example, the demo, the test binary itself) from a test. */
#ifndef MPROC_HARNESS_RUN_H
#define MPROC_HARNESS_RUN_H

#include <sys/types.h>

#include "harness.h"

typedef struct {
    int status; /* as waitpid gives it */
    char *out, *err;
    size_t out_len, err_len;
} harness_run_result;

/* Runs argv[0] with stdin from /dev/null and the environment plus extra_env ("KEY=VALUE", NULL-
 * terminated), capturing stdout and stderr; as user uid unless it is (uid_t)-1. */
harness_run_result harness_run_as(char *const argv[], char *const *extra_env, uid_t uid);
harness_run_result harness_run(char *const argv[], char *const *extra_env);
void harness_run_free(harness_run_result *r);
/* Append n bytes to a growing NUL-terminated buffer. */
void harness_append(char **buf, size_t *len, const char *data, size_t n);
/* The path of a program built beside this test: build/tests/test_x -> build/DIR/NAME. Fails the
 * case if it is not built. */
void harness_built_path(const char *dir, const char *name, char *buf, size_t cap);

#endif
