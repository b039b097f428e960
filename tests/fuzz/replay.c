/* A driver without libFuzzer: runs a fuzz target once on every file of the directories (or the
 * files) it is given, so the seed corpus is a regression test of `make test` with any compiler
 * (tests/CMakeLists.txt: fuzz_replay_<target>). A broken property aborts, as under libFuzzer.
 *
 * Each input runs once quietly, then over and over for 20 ticks of an interval timer whose
 * SIGALRM handler runs every 100 µs, as libFuzzer's timeout alarm does now and then. A wait that a
 * handler interrupts returns -EINTR (docs/conventions.md, Signals), and a target must still hold
 * its properties then; libFuzzer found one that did not only after millions of runs. */
#include <dirent.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>

static volatile sig_atomic_t alarms_seen;

static void on_alarm(int sig)
{
    (void)sig;
    alarms_seen++;
}

static void alarms(bool on)
{
    struct itimerval t = {0};
    if (on) t.it_interval.tv_usec = t.it_value.tv_usec = 100;
    setitimer(ITIMER_REAL, &t, NULL);
}

#include "fuzz_util.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return perror(path), 1;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, n;
    do {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *b = realloc(buf, cap);
            if (!b) return fclose(f), free(buf), 1;
            buf = b;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    /* Again and again until 20 alarms have run (~2 ms), so some land inside the target's waits. */
    alarms_seen = 0;
    alarms(true);
    while (alarms_seen < 20)
        LLVMFuzzerTestOneInput(buf, len);
    alarms(false);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int runs = 0;
    struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART, as libFuzzer's */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) return perror(argv[i]), 1;
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i])) return 1;
            runs++;
            continue;
        }
        struct dirent **names;
        int n = scandir(argv[i], &names, NULL, alphasort);
        if (n < 0) return perror(argv[i]), 1;
        for (int k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], names[k]->d_name);
            if (names[k]->d_name[0] != '.' && run_file(path)) return 1;
            runs += names[k]->d_name[0] != '.';
            free(names[k]);
        }
        free(names);
    }
    printf("%d inputs replayed\n", runs);
    return runs > 0 ? 0 : 1;
}
