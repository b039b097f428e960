/* Helpers shared by the log suites, test_log.c (records, sinks, set-up) and test_log_rotate.c
 * (rotation): a scratch directory, a file's text, a text line split into its fields, and this
 * test binary run again as a program that joins the log through the environment. */
#ifndef MPROC_TESTS_LOG_UTIL_H
#define MPROC_TESTS_LOG_UTIL_H

#include <stdbool.h>
#include <stddef.h>

/* A new directory under /tmp, and its removal with everything in it (frees d). */
char *tmpdir_make(void);
void tmpdir_remove(char *d);
/* The whole file, NUL-terminated (free it), or NULL if it cannot be opened; *len if len. */
char *slurp(const char *path, size_t *len);

/* One text line split into its fields (in place), with the time format checked strictly. */
typedef struct {
    char offset[8];
    char *time, *app, *process, *file, *func, *level, *msg;
    int line;
} parsed;
bool parse_line(char *line, parsed *p);

/* Fork and exec this test binary with MPROC_LOG_TEST_HELPER=mode (see log_util.c: "explicit",
 * "auto" or "rotate") and MPROC_LOG_TEST_PATH set to the current log file; it must exit 0. */
void run_exec_helper(const char *mode);

#endif
