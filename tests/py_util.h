/* Python helper processes for the tests that talk to a real CPython (test_pickle,
 * test_pymanager): found on PATH or in pyenv, started with pipes on stdin and stdout, always
 * reaped. */
#ifndef MPROC_TESTS_PY_UTIL_H
#define MPROC_TESTS_PY_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;
    int in;  /* the helper's stdin (write end), -1 once closed */
    int out; /* the helper's stdout (read end) */
} py_helper;

/* "python3", or NULL when there is none. */
const char *py_default(void);
/* A CPython of version "3.12" (python3.12 on PATH, else pyenv's newest 3.12.x), or NULL. */
const char *py_find(const char *version);
/* Skip the case when python3 is missing. */
void py_need(void);

/* Start `python tests/python/script args...` (args NULL-terminated). */
py_helper py_spawn(const char *python, const char *script, const char *const *args);
/* Read the helper's "READY <rest>" line into rest (fails the case after 30 s). */
void py_await_ready(py_helper *h, char *rest, size_t cap);
/* Exact reads and writes on the helper's pipes (fail the case on error or end of file). */
void py_write_all(py_helper *h, const void *p, size_t n);
void py_read_all(py_helper *h, void *p, size_t n);
/* Close its stdin, reap it (killing it if it outstays 60 s) and return its exit code (or
 * -signal). */
int py_reap(py_helper *h);

#endif
