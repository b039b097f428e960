/* mproc-manager: a standalone manager server (mproc_manager_serve), so that programs sharing
 * nothing but an address and a key file can meet. In the foreground it runs until SIGTERM,
 * SIGINT or a client's mproc_manager_shutdown; otherwise it detaches once it listens and prints
 * the address it is bound to (the port, for tcp port 0). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mproc.h"

#define KEY_MAX 4096

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mproc-manager --address ADDR [--authkey-file FILE] [--foreground]\n"
            "\n"
            "Serve named shared objects (dicts, lists, queues, events, locks, values) to\n"
            "mproc_manager_connect() clients.\n"
            "\n"
            "  --address ADDR       unix:/path, unix:@name or tcp:host:port (port 0 picks one)\n"
            "  --authkey-file FILE  the key clients must prove they hold (required for tcp:)\n"
            "  --foreground         stay in the foreground (default: detach once listening)\n"
            "  --max-connections N  clients at once (default %d)\n"
            "  --share-arena POLICY who may map the arena and use the objects at memory speed\n"
            "                       (same machine, unix: only): same-user (default), none,\n"
            "                       any-user; the others get proxies\n"
            "  --help               print this and exit\n",
            MPROC_MANAGER_DEFAULT_MAX_CONNECTIONS);
}

static int read_key(const char *path, unsigned char *key, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -errno;
    size_t n = fread(key, 1, KEY_MAX + 1, f);
    int err = ferror(f) ? -EIO : 0;
    fclose(f);
    if (err) return err;
    if (n > KEY_MAX) return -EFBIG;
    /* a key file written by echo ends with a newline that is not part of the key */
    if (n && key[n - 1] == '\n') n--;
    *len = n;
    return 0;
}

/* The address goes to stdout once the server listens; then a detached server lets go of the
 * terminal's descriptors, and its parent (waiting on the pipe) exits. */
static int ready_fd = -1;

static void on_ready(const char *address, void *arg)
{
    (void)arg;
    printf("%s\n", address);
    fflush(stdout);
    if (ready_fd >= 0) {
        char ok = 0;
        if (write(ready_fd, &ok, 1) < 0) { /* the parent is gone: nothing to tell */
        }
        close(ready_fd);
        ready_fd = -1;
        if (!freopen("/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout) ||
            !freopen("/dev/null", "w", stderr)) {
        }
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"address", required_argument, 0, 'a'},
                                         {"authkey-file", required_argument, 0, 'k'},
                                         {"foreground", no_argument, 0, 'f'},
                                         {"max-connections", required_argument, 0, 'c'},
                                         {"share-arena", required_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *address = NULL, *keyfile = NULL;
    bool foreground = false;
    mproc_manager_opts mo = {.ready = on_ready};
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case 'a':
            address = optarg;
            break;
        case 'k':
            keyfile = optarg;
            break;
        case 'f':
            foreground = true;
            break;
        case 'c': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n <= 0) {
                fprintf(stderr, "mproc-manager: --max-connections: not a positive number: %s\n",
                        optarg);
                return 2;
            }
            mo.max_connections = (size_t)n;
            break;
        }
        case 's':
            if (strcmp(optarg, "same-user") == 0)
                mo.share_arena = MPROC_MANAGER_SHARE_SAME_USER;
            else if (strcmp(optarg, "none") == 0)
                mo.share_arena = MPROC_MANAGER_SHARE_NONE;
            else if (strcmp(optarg, "any-user") == 0)
                mo.share_arena = MPROC_MANAGER_SHARE_ANY_USER;
            else {
                fprintf(stderr,
                        "mproc-manager: --share-arena: same-user, none or any-user, not %s\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || !address) {
        if (!address)
            fprintf(stderr, "mproc-manager: --address is required\n");
        else
            fprintf(stderr, "mproc-manager: unexpected argument: %s\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    static unsigned char key[KEY_MAX + 1];
    size_t keylen = 0;
    if (keyfile) {
        int r = read_key(keyfile, key, &keylen);
        if (r < 0) {
            fprintf(stderr, "mproc-manager: %s: %s\n", keyfile,
                    r == -EFBIG ? "key file larger than 4096 bytes" : mproc_strerror(r));
            return 2;
        }
    } else if (strncmp(address, "tcp:", 4) == 0) {
        fprintf(stderr, "mproc-manager: a tcp: address needs --authkey-file (anyone could "
                        "connect)\n");
        return 2;
    }
    if (!foreground) {
        int p[2];
        if (pipe(p) < 0) {
            perror("mproc-manager: pipe");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("mproc-manager: fork");
            return 1;
        }
        if (pid > 0) {
            /* the child says when it listens; end of file first means it failed (it said why) */
            close(p[1]);
            char ok;
            ssize_t n = read(p[0], &ok, 1);
            return n == 1 ? 0 : 1;
        }
        close(p[0]);
        ready_fd = p[1];
        setsid();
    }
    int r = mproc_manager_serve(address, keyfile ? key : NULL, keylen, &mo);
    if (r < 0) {
        fprintf(stderr, "mproc-manager: %s: %s\n", address, mproc_strerror(r));
        return 1;
    }
    return 0;
}
