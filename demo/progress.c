/* Progress of the directory worker: counters in the family arena that the worker bumps and the
 * main process reads while it waits, and the status line that shows them. */
#include <string.h>
#include <sys/ioctl.h>

#include "demo.h"

#define BAR_WIDTH 10

dir_progress *progress_new(void)
{
    return mproc_shared_alloc(sizeof(dir_progress)); /* zeroed */
}

void progress_reset(dir_progress *pg)
{
    atomic_store(&pg->files_total, 0);
    atomic_store(&pg->bytes_total, 0);
    atomic_store(&pg->files_done, 0);
    atomic_store(&pg->bytes_done, 0);
    atomic_store(&pg->hashing, 0);
}

void progress_free(dir_progress *pg)
{
    mproc_shared_free(pg);
}

static double mb(uint64_t bytes)
{
    return (double)bytes / 1e6;
}

void status_show(FILE *out, bool tty, double elapsed, const dir_progress *pg)
{
    uint64_t ft = atomic_load(&pg->files_total), bt = atomic_load(&pg->bytes_total);
    uint64_t fd = atomic_load(&pg->files_done), bd = atomic_load(&pg->bytes_done);
    char info[160];
    if (!atomic_load(&pg->hashing)) {
        snprintf(info, sizeof info, "listing: %llu files, %.1f MB so far", (unsigned long long)ft,
                 mb(bt));
        if (tty)
            fprintf(out, "\r\033[Kwaiting on dir info for %.1f s ... %s", elapsed, info);
        else
            fprintf(out, "waiting on dir info for %.1f seconds ... %s\n", elapsed, info);
        fflush(out);
        return;
    }
    /* The listed sizes are the plan; a file that grew since can push bytes_done past it. */
    double frac = bt ? (double)bd / (double)bt : (ft ? (double)fd / (double)ft : 1.0);
    if (frac > 1.0) frac = 1.0;
    if (!tty) {
        fprintf(out,
                "waiting on dir info for %.1f seconds ... %llu/%llu files, %.1f/%.1f MB hashed "
                "(%.0f%%)\n",
                elapsed, (unsigned long long)fd, (unsigned long long)ft, mb(bd), mb(bt),
                100.0 * frac);
        fflush(out);
        return;
    }
    char bar[BAR_WIDTH + 1];
    int filled = (int)(frac * BAR_WIDTH + 0.5);
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < filled ? '#' : '-';
    bar[BAR_WIDTH] = '\0';
    /* Short enough for 80 columns: a line that wraps cannot be rewritten with \r. */
    char line[256];
    snprintf(line, sizeof line,
             "waiting on dir info for %.1f s ... [%s] %3.0f%% %llu/%llu files, "
             "%.0f/%.0f MB",
             elapsed, bar, 100.0 * frac, (unsigned long long)fd, (unsigned long long)ft, mb(bd),
             mb(bt));
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && ws.ws_col < sizeof line)
        line[ws.ws_col - 1] = '\0';
    /* \r and "erase to end of line": the line is rewritten in place. */
    fprintf(out, "\r\033[K%s", line);
    fflush(out);
}

void status_end(FILE *out, bool tty)
{
    if (tty) {
        fputs("\r\033[K", out);
        fflush(out);
    }
}
