/* --report FILE: the final state as JSON, written at quit after the tear-down, with what the
 * tear-down left behind (child processes, fds the program opened since it started). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "longtask.h"

void lt_fds_take(lt_fds *s)
{
    memset(s, 0, sizeof *s);
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == dirfd(d) || fd < 0 || fd >= LT_MAX_FDS) continue;
        char path[64], target[64] = "";
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n > 0) target[n] = 0;
        s->kind[fd] = strcmp(target, "anon_inode:[pidfd]") == 0 ? LT_FD_PIDFD : LT_FD_OPEN;
    }
    closedir(d);
}

/* Processes whose parent is this one, zombies included (a child killed but not reaped). */
int lt_count_children(void)
{
    DIR *d = opendir("/proc");
    if (!d) return -1;
    int n = 0;
    pid_t self = getpid();
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        const char *rp = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
        int ppid;
        char state;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == self) n++;
    }
    closedir(d);
    return n;
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_result(FILE *f, const lt_run *run)
{
    if (run && !run->error[0])
        fprintf(f, "\"e\": %.17g, \"iterations\": %llu, \"seconds\": %.6f, ", run->r.e,
                run->r.iterations, run->r.seconds);
    else
        fprintf(f, "\"e\": null, \"iterations\": null, \"seconds\": null, ");
    fprintf(f, "\"error\": ");
    if (run && run->error[0])
        json_string(f, run->error);
    else
        fprintf(f, "null");
    fprintf(f, ", \"signal\": %d", run ? run->signal : 0);
}

int lt_report_write(const lt_app *a, const char *path, int leaked_fds, int children)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    guint n = a->runs->len;
    const lt_run *last = n ? &g_array_index(a->runs, lt_run, n - 1) : NULL;
    fprintf(f, "{");
    json_result(f, last); /* the last finished run */
    fprintf(f, ",\n \"duration\": %.3f, \"clicks\": %d, \"clicks_while_running\": %d,", a->duration,
            a->clicks, a->clicks_while_running);
    fprintf(f, "\n \"max_stall_ms\": %.3f, \"max_busy_ms\": %.3f,", a->max_stall_ms,
            a->max_busy_ms);
    fprintf(f, "\n \"quit_while_running\": %s, \"quit_ms\": %.3f,",
            a->quit_while_running ? "true" : "false", (lt_now() - a->quit_asked) * 1e3);
    fprintf(f, "\n \"children_left\": %d, \"fds_leaked\": %d,\n \"runs\": [", children, leaked_fds);
    for (guint i = 0; i < n; i++) {
        fprintf(f, "%s\n  {", i ? "," : "");
        json_result(f, &g_array_index(a->runs, lt_run, i));
        fprintf(f, "}");
    }
    fprintf(f, "]}\n");
    return fclose(f) == 0 ? 0 : -1;
}
