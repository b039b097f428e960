/* tool_util.h */
#include <fcntl.h>
#include <spawn.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "tool_util.h"

extern char **environ;

pid_t tool_spawn_first_line(const char *path, char *const argv[], char *line, size_t cap)
{
    int p[2];
    CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    pid_t pid;
    CHECK_EQ(posix_spawn(&pid, path, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    line[0] = 0;
    while (n < cap - 1 && !strchr(line, '\n') && (r = read(p[0], line + n, cap - 1 - n)) > 0) {
        n += (size_t)r;
        line[n] = 0;
    }
    close(p[0]);
    char *nl = strchr(line, '\n');
    if (nl)
        *nl = 0;
    else
        line[0] = 0;
    return pid;
}
