/* A command of this build (mproc-manager) started for a test, with its stdout a pipe: the tests of
 * the manager command (test_manager) and of its Python dialect (test_pydialect). */
#ifndef MPROC_TESTS_TOOL_UTIL_H
#define MPROC_TESTS_TOOL_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Start path with argv (its environment: the test's) and read its first line (a server prints its
 * address once it listens) into line, without the newline. Returns the pid; line is empty when
 * the command ended without a whole line. */
pid_t tool_spawn_first_line(const char *path, char *const argv[], char *line, size_t cap);

#endif
