/* The command line, and the default directory (the talk hashed the Python installation). */
#include <getopt.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "demo.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mproc-demo [options] [DIR]\n"
            "Hash every regular file under DIR (SHA-256 of the files' SHA-256s in bytewise path\n"
            "order, symlinks not followed) in one worker while another computes e, as the\n"
            "multiprocessing talk did.\n"
            "DIR defaults to the Python standard library (/usr/lib/python3.N), else /usr/share.\n"
            "\n"
            "  --mode process|pool|both   how to run the workers (default both)\n"
            "  --interval SECONDS         time between status lines (default 2)\n"
            "  --json                     print the result as one JSON object\n"
            "  --start fork|forkserver|thread\n"
            "                             start method (thread: everything in one process,\n"
            "                             for debuggers; overrides MPROC_START)\n"
            "  --verbose                  log INFO to the console too\n"
            "  --help                     this text\n");
}

const char *options_default_dir(void)
{
    static char best[64];
    glob_t g;
    long best_minor = -1;
    if (glob("/usr/lib/python3.*", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            const char *v = g.gl_pathv[i] + strlen("/usr/lib/python3.");
            char *end;
            long minor = strtol(v, &end, 10);
            struct stat st;
            /* "python3.11" but not "python3.11-config" or a stray file. */
            if (end == v || *end || stat(g.gl_pathv[i], &st) < 0 || !S_ISDIR(st.st_mode)) continue;
            if (minor > best_minor) {
                best_minor = minor;
                snprintf(best, sizeof best, "%s", g.gl_pathv[i]);
            }
        }
        globfree(&g);
    }
    return best_minor >= 0 ? best : "/usr/share";
}

int options_parse(int argc, char **argv, demo_opts *o, bool *done)
{
    static const struct option longopts[] = {
        {"mode", required_argument, NULL, 'm'},
        {"interval", required_argument, NULL, 'i'},
        {"json", no_argument, NULL, 'j'},
        {"start", required_argument, NULL, 's'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (demo_opts){.mode = "both", .interval = 2.0};
    *done = false;
    int c;
    while ((c = getopt_long(argc, argv, "m:i:js:vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (strcmp(optarg, "process") && strcmp(optarg, "pool") && strcmp(optarg, "both")) {
                fprintf(stderr, "mproc-demo: --mode must be process, pool or both\n");
                return 2;
            }
            o->mode = optarg;
            break;
        case 'i': {
            char *end;
            o->interval = strtod(optarg, &end);
            if (end == optarg || *end || !(o->interval > 0) || o->interval > 3600) {
                fprintf(stderr, "mproc-demo: --interval must be a number of seconds > 0\n");
                return 2;
            }
            break;
        }
        case 'j':
            o->json = true;
            break;
        case 's':
            if (strcmp(optarg, "fork") && strcmp(optarg, "forkserver") &&
                strcmp(optarg, "thread")) {
                fprintf(stderr, "mproc-demo: --start must be fork, forkserver or thread\n");
                return 2;
            }
            o->start = optarg;
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'h':
            usage(stdout);
            *done = true;
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind > 1) {
        fprintf(stderr, "mproc-demo: one directory at most\n");
        usage(stderr);
        return 2;
    }
    o->dir = optind < argc ? argv[optind] : options_default_dir();
    return 0;
}
