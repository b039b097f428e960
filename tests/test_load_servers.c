/* Load on the servers (label `load`, docs/testing.md "Load"): a keyed listener and a manager
 * server with 40 silent clients connected (each took its challenge and answers nothing), then
 * 1000 good clients from 8 processes: every good one is served, and promptly, since no handshake
 * waits on another. Each case prints its latency figures and the machine's load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

enum { SILENT = 40, GOOD = 1000, DIALERS = 8, PER_DIALER = GOOD / DIALERS };
#define P99_BAND_S 0.2 /* generous: measured p99s are a few ms (docs/testing.md) */

static const char KEY[] = "load key";

typedef struct {
    char address[160];
    bool manager;
    double lat[GOOD]; /* connect + handshake of each good client, seconds */
    int failed;
} load;

typedef struct {
    load *ld;
    int first;
} dial_arg;

/* One dialer process: PER_DIALER good clients one after another, each timed. */
static int dial_some(void *arg)
{
    dial_arg *a = arg;
    load *ld = a->ld;
    for (int i = a->first; i < a->first + PER_DIALER; i++) {
        double t0 = harness_now();
        int r;
        if (ld->manager) {
            mproc_manager *m;
            if ((r = mproc_manager_connect(&m, ld->address, KEY, sizeof KEY - 1)) == 0)
                mproc_manager_free(m);
        } else {
            mproc_conn *c;
            if ((r = mproc_client_connect(&c, ld->address, KEY, sizeof KEY - 1)) == 0)
                mproc_conn_close(c);
        }
        ld->lat[i] = harness_now() - t0;
        if (r != 0) __atomic_fetch_add(&ld->failed, 1, __ATOMIC_RELAXED);
    }
    return 0;
}

/* SILENT clients that connect without a key and never answer; each has taken its challenge, so
 * the server holds it as a pending handshake. step (may be NULL) lets the server take it in. */
static void connect_silent(mproc_conn **s, const char *address, void (*step)(void *), void *arg)
{
    for (int i = 0; i < SILENT; i++) {
        CHECK_OK(mproc_client_connect(&s[i], address, NULL, 0));
        if (step) step(arg);
        void *d;
        size_t len;
        CHECK_OK(mproc_conn_recv_alloc(s[i], &d, &len, 30));
        free(d);
    }
}

/* The silent ones were never dropped (the bound is above their number) nor answered. */
static void close_silent(mproc_conn **s)
{
    for (int i = 0; i < SILENT; i++) {
        void *d;
        size_t len;
        CHECK_RC(mproc_conn_recv_alloc(s[i], &d, &len, 0), -EAGAIN);
        mproc_conn_close(s[i]);
    }
}

static mproc_process **start_dialers(load *ld, dial_arg *args)
{
    static mproc_process *ps[DIALERS];
    for (int k = 0; k < DIALERS; k++) {
        args[k] = (dial_arg){ld, k * PER_DIALER};
        ps[k] = harness_start(dial_some, &args[k]);
    }
    return ps;
}

static void report(load *ld, const char *what, double wall)
{
    CHECK_EQ(ld->failed, 0);
    double p50 = harness_quantile(ld->lat, GOOD, 0.5), p99 = harness_quantile(ld->lat, GOOD, 0.99);
    double mx = harness_quantile(ld->lat, GOOD, 1.0);
    char la[64] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(la, sizeof la, f)) snprintf(la, sizeof la, "?");
        la[strcspn(la, "\n")] = '\0';
        fclose(f);
    }
    printf("%s, %d silent + %d good clients from %d processes: all served in %.2f s; connect + "
           "handshake p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d CPUs, loadavg %s)\n",
           what, SILENT, GOOD, DIALERS, wall, p50 * 1e3, p99 * 1e3, mx * 1e3, mproc_cpu_count(),
           la);
    CHECK(p99 < P99_BAND_S * harness_slow());
}

static void accept_poll(void *arg)
{
    mproc_conn *c;
    CHECK_RC(mproc_listener_accept(arg, &c, 0), -EAGAIN);
}

TEST_T(listener_serves_a_thousand_clients_beside_forty_silent_ones, 240)
{
    load *ld = mproc_shared_alloc(sizeof *ld);
    CHECK(ld != NULL);
    mproc_listener *l;
    char addr[64];
    snprintf(addr, sizeof addr, "unix:@mproc-load-listener-%d", (int)getpid());
    CHECK_OK(mproc_listener_new(&l, addr, KEY, sizeof KEY - 1));
    snprintf(ld->address, sizeof ld->address, "%s", addr);
    static mproc_conn *silent[SILENT];
    connect_silent(silent, addr, accept_poll, l);
    static dial_arg args[DIALERS];
    double t0 = harness_now();
    mproc_process **ps = start_dialers(ld, args);
    for (int served = 0; served < GOOD; served++) {
        mproc_conn *c;
        CHECK_OK(mproc_listener_accept(l, &c, 60));
        mproc_conn_close(c);
    }
    double wall = harness_now() - t0;
    for (int k = 0; k < DIALERS; k++)
        CHECK_EQ(harness_join(ps[k]), 0);
    report(ld, "listener", wall);
    close_silent(silent);
    mproc_listener_free(l);
    mproc_shared_free(ld);
}

TEST_T(manager_serves_a_thousand_clients_beside_forty_silent_ones, 240)
{
    load *ld = mproc_shared_alloc(sizeof *ld);
    CHECK(ld != NULL);
    ld->manager = true;
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, "tcp:127.0.0.1:0", KEY, sizeof KEY - 1, NULL));
    snprintf(ld->address, sizeof ld->address, "%s", mproc_manager_address(m));
    static mproc_conn *silent[SILENT];
    connect_silent(silent, ld->address, NULL, NULL);
    static dial_arg args[DIALERS];
    double t0 = harness_now();
    mproc_process **ps = start_dialers(ld, args);
    for (int k = 0; k < DIALERS; k++)
        CHECK_EQ(harness_join(ps[k]), 0);
    report(ld, "manager", harness_now() - t0);
    close_silent(silent);
    mproc_manager_free(m);
    mproc_shared_free(ld);
}
