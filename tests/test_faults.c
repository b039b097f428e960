/* Fault injection, randomized and seeded (label `faults`, docs/testing.md "Fault injection"):
 * workers SIGKILLed at random moments of many tasks (start-up and replacements included),
 * stopped and continued, queue producers and consumers SIGKILLed, a parent killed or exiting at
 * random points with pools, queues, managers and children alive, barrier and lock participants
 * killed mid-wait, robust-mutex waiters killed as they are woken. The deterministic cases of each
 * fault live with their module (test_pool_crash.c, test_queue_recovery.c, test_process_exit.c,
 * test_barrier.c, test_lock.c, test_condition.c, test_manager.c, the *_intr suites for Ctrl-C);
 * these are the long random versions.
 * Every case prints its seed (fault_util.h: MPROC_FAULT_SEED replays it) and its figures;
 * MPROC_FAULT_SCALE multiplies the rounds. */
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#include "fault_util.h"
#include "arena/arena.h"
#include "harness.h"
#include "manager/client.h"
#include "queue_util.h"
#include "robust_util.h"
#include "sync/sync.h"

#if defined(__SANITIZE_ADDRESS__)
#define LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LSAN 1
#endif
#endif
#ifdef LSAN
#include <sanitizer/lsan_interface.h>
#endif

#define WORKERS 4

/* ---- workers killed during many tasks ---- */

typedef struct {
    _Atomic uint32_t *runs; /* in the arena: how often each task started */
    _Atomic int stop;
    _Atomic unsigned kills;
    mproc_pool *pool;
    uint64_t rng;
    int sig; /* SIGKILL, or SIGSTOP (then SIGCONT after a while) */
} fault_ctl;

static int counted_square(mproc_task *t)
{
    const uint64_t *a = mproc_task_arg(t, NULL);
    _Atomic uint32_t *runs = (_Atomic uint32_t *)(uintptr_t)a[0];
    uint64_t i = a[1];
    atomic_fetch_add(&runs[i], 1);
    if (i % 25 == 0) usleep(300); /* some tasks long enough to be killed inside */
    uint64_t y = i * i;
    return mproc_task_return(t, &y, sizeof y);
}

/* Start-up takes a while, so that kills land in it too. */
static int slow_init(void *arg)
{
    (void)arg;
    usleep((useconds_t)(getpid() % 3) * 500);
    return 0;
}

static void *killer(void *arg)
{
    fault_ctl *c = arg;
    while (!atomic_load(&c->stop)) {
        usleep((useconds_t)(500 + fault_rand(&c->rng, 4000)));
        pid_t pids[WORKERS];
        int n = mproc_pool_worker_pids(c->pool, pids, WORKERS);
        if (n <= 0) continue;
        pid_t v = pids[fault_rand(&c->rng, (uint64_t)(n < WORKERS ? n : WORKERS))];
        if (c->sig == SIGSTOP) {
            if (kill(v, SIGSTOP) == 0) atomic_fetch_add(&c->kills, 1);
            usleep((useconds_t)fault_rand(&c->rng, 20000));
            kill(v, SIGCONT);
        } else if (kill(v, SIGKILL) == 0) {
            atomic_fetch_add(&c->kills, 1);
        }
    }
    return NULL;
}

static void wait_workers(mproc_pool *p, int n)
{
    double until = harness_now() + 20 * harness_slow();
    for (;;) {
        pid_t pids[WORKERS];
        if (mproc_pool_worker_pids(p, pids, WORKERS) == n) return;
        if (harness_now() > until) CHECK(!"pool size not restored");
        usleep(2000);
    }
}

static void tasks_under_fire(int sig, unsigned ntasks, const char *what)
{
    SKIP_IN_THREAD_MODE("threads cannot be killed or stopped alone");
    fault_ctl c = {.sig = sig, .rng = fault_seed(what)};
    c.runs = mproc_shared_alloc(ntasks * sizeof *c.runs);
    CHECK(c.runs != NULL);
    memset((void *)c.runs, 0, ntasks * sizeof *c.runs);
    CHECK_OK(
        mproc_pool_new(&c.pool, &(mproc_pool_opts){.workers = WORKERS,
                                                   .initializer = slow_init,
                                                   .max_restarts = MPROC_POOL_NO_RESTART_LIMIT}));
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, killer, &c), 0);
    enum { BATCH = 2000 };
    mproc_future **fs = calloc(BATCH, sizeof *fs);
    CHECK(fs != NULL);
    unsigned ok = 0, lost = 0;
    double t0 = harness_now();
    for (unsigned base = 0; base < ntasks; base += BATCH) {
        unsigned n = ntasks - base < BATCH ? ntasks - base : BATCH;
        for (unsigned k = 0; k < n; k++) {
            uint64_t a[2] = {(uint64_t)(uintptr_t)c.runs, base + k};
            CHECK_OK(mproc_pool_submit(c.pool, counted_square, a, sizeof a, &fs[k]));
        }
        for (unsigned k = 0; k < n; k++) {
            uint64_t i = base + k, y = 0;
            int r = mproc_future_get(fs[k], &y, sizeof y, NULL, 60 * harness_slow());
            if (r == 0) {
                CHECK_EQ(y, i * i);
                CHECK_EQ(atomic_load(&c.runs[i]), 1); /* ran once: not duplicated */
                ok++;
            } else {
                if (r != MPROC_EWORKERLOST)
                    harness_fail(__FILE__, __LINE__, "task %llu: %d (%s)", (unsigned long long)i, r,
                                 mproc_strerror(r));
                CHECK(atomic_load(&c.runs[i]) <= 1); /* never run again after its worker died */
                lost++;
            }
            mproc_future_free(fs[k]);
        }
    }
    atomic_store(&c.stop, 1);
    pthread_join(th, NULL);
    unsigned kills = atomic_load(&c.kills);
    printf("%s: %u tasks, %u %s, %u ok, %u lost (MPROC_EWORKERLOST), %.1f s\n", what, ntasks, kills,
           sig == SIGKILL ? "kills" : "stops", ok, lost, harness_now() - t0);
    CHECK_EQ(ok + lost, ntasks); /* every outcome accounted for */
    if (sig == SIGKILL) {
        CHECK(lost <= kills); /* a kill costs at most the one task its worker ran */
    } else {
        CHECK_EQ(lost, 0); /* a stopped worker is only late */
    }
    wait_workers(c.pool, WORKERS);
    /* The pool still works. */
    uint64_t a[2] = {(uint64_t)(uintptr_t)c.runs, 7}, y;
    atomic_store(&c.runs[7], 0);
    CHECK_OK(mproc_pool_apply(c.pool, counted_square, a, sizeof a, &y, sizeof y, NULL));
    CHECK_EQ(y, 49);
    mproc_pool_free(c.pool);
    free(fs);
    mproc_shared_free((void *)c.runs);
}

TEST_T(pool_workers_sigkilled_at_random, 240)
{
    tasks_under_fire(SIGKILL, fault_rounds(300000), "pool SIGKILL");
}

TEST_T(pool_workers_stopped_and_continued, 240)
{
    tasks_under_fire(SIGSTOP, fault_rounds(200000), "pool SIGSTOP/SIGCONT");
}

/* ---- queue producers and consumers killed at random ---- */

enum { QK_ROLES = 4, QK_IDS = 1024, QK_SEQS = 1 << 14, QK_STOP = 0xffffffffu };

/* Shared by the case and its processes: which messages were reported put, which were got. */
typedef struct {
    mproc_queue *q;
    _Atomic int stop;
    _Atomic int errors;
    _Atomic unsigned char put[QK_IDS][QK_SEQS / 8];
    _Atomic unsigned char got[QK_IDS][QK_SEQS / 8];
} qk_state;

typedef struct {
    qk_state *s;
    uint32_t id;
} qk_arg;

static bool qk_mark(_Atomic unsigned char (*map)[QK_SEQS / 8], uint32_t id, uint64_t seq)
{
    unsigned char bit = (unsigned char)(1u << (seq % 8));
    return atomic_fetch_or(&map[id][seq / 8], bit) & bit;
}

static bool qk_has(_Atomic unsigned char (*map)[QK_SEQS / 8], uint32_t id, uint64_t seq)
{
    return atomic_load(&map[id][seq / 8]) & (1u << (seq % 8));
}

static int qk_error(qk_state *s, int code)
{
    atomic_fetch_add(&s->errors, 1);
    return code;
}

/* Puts (id, 0), (id, 1), ... until stopped: inline messages and, one in eight, ones of up to 20 KB
 * (arena blocks); each recorded once its put returned 0. */
static int qk_producer(void *arg)
{
    const qk_arg *a = arg;
    qk_state *s = a->s;
    unsigned char *buf = malloc(sizeof(msg_hdr) + 20000);
    if (!buf) return qk_error(s, 5);
    for (uint64_t seq = 0; seq < QK_SEQS && !atomic_load(&s->stop); seq++) {
        uint64_t x = (seq * 2654435761u) ^ a->id;
        size_t len = make_msg(buf, a->id, seq, x % 8 == 0 ? 200 + x % 19800 : x % 96);
        if (mproc_queue_put(s->q, buf, len, 30 * harness_slow()) != 0) return qk_error(s, 1);
        qk_mark(s->put, a->id, seq);
    }
    free(buf);
    while (!atomic_load(&s->stop)) /* out of numbers: idle (and maybe killed) until the end */
        usleep(1000);
    return 0;
}

/* Gets until a stop message: each intact (checksum), each producer's in order, none twice. */
static int qk_consumer(void *arg)
{
    const qk_arg *a = arg;
    qk_state *s = a->s;
    int64_t last[QK_IDS];
    for (int i = 0; i < QK_IDS; i++)
        last[i] = -1;
    for (;;) {
        void *m;
        size_t n;
        if (mproc_queue_get_alloc(s->q, &m, &n, 30 * harness_slow()) != 0) return qk_error(s, 1);
        msg_hdr h;
        int bad = check_msg(m, n, &h);
        free(m);
        if (bad) return qk_error(s, 2);
        if (h.producer == QK_STOP) return 0;
        if (h.producer >= QK_IDS || h.seq >= QK_SEQS || (int64_t)h.seq <= last[h.producer])
            return qk_error(s, 3);
        last[h.producer] = (int64_t)h.seq;
        if (qk_mark(s->got, h.producer, h.seq)) return qk_error(s, 4); /* delivered twice */
    }
}

/* Four producers and four consumers on one queue (64 items, 128 KiB), any of them SIGKILLed at a
 * random instant and replaced by a newcomer (a producer under a new id), over and over. Every
 * message a producer reported put is got exactly once, but for at most one per killed consumer
 * (the message it was taking, or had taken: docs/queue.md, "Crash safety"); a message got that
 * was never reported put is one a producer was killed after putting, at most one per killed
 * producer; checksums, per-producer order and the byte budget hold throughout. */
TEST_T(queue_producers_and_consumers_sigkilled_at_random, 240)
{
    SKIP_IN_THREAD_MODE("processes are threads: SIGKILL would end them all");
    qk_state *s = mproc_shared_alloc(sizeof *s);
    CHECK(s != NULL);
    CHECK_OK(mproc_queue_new(&s->q, &(mproc_queue_opts){.max_items = 64, .max_bytes = 128 << 10}));
    uint64_t rng = fault_seed("queue 4x4 kills");
    unsigned kills = fault_rounds(150), pkills = 0, ckills = 0;
    uint32_t next_id = 0;
    qk_arg *args[2 * QK_ROLES];
    mproc_process *ps[2 * QK_ROLES]; /* producers, then consumers */
    for (int i = 0; i < 2 * QK_ROLES; i++) {
        args[i] = mproc_shared_alloc(sizeof *args[i]);
        CHECK(args[i] != NULL);
        *args[i] = (qk_arg){.s = s, .id = i < QK_ROLES ? next_id++ : 0};
        ps[i] = harness_start(i < QK_ROLES ? qk_producer : qk_consumer, args[i]);
    }
    double t0 = harness_now();
    for (unsigned k = 0; k < kills && next_id < QK_IDS; k++) {
        usleep((useconds_t)fault_rand(&rng, 4000));
        unsigned v = (unsigned)fault_rand(&rng, 2 * QK_ROLES);
        CHECK_OK(mproc_process_kill(ps[v]));
        int code = harness_join(ps[v]);
        if (code != -SIGKILL) harness_fail(__FILE__, __LINE__, "victim %u exited %d", v, code);
        if (v < QK_ROLES) {
            pkills++;
            args[v]->id = next_id++;
        } else {
            ckills++;
        }
        ps[v] = harness_start(v < QK_ROLES ? qk_producer : qk_consumer, args[v]);
    }
    atomic_store(&s->stop, 1);
    for (int i = 0; i < QK_ROLES; i++)
        CHECK_EQ(harness_join(ps[i]), 0);
    unsigned char stop[sizeof(msg_hdr)];
    size_t sl = make_msg(stop, QK_STOP, 0, 0);
    for (int i = 0; i < QK_ROLES; i++)
        CHECK_OK(mproc_queue_put(s->q, stop, sl, 30 * harness_slow()));
    for (int i = QK_ROLES; i < 2 * QK_ROLES; i++)
        CHECK_EQ(harness_join(ps[i]), 0);
    double took = harness_now() - t0;
    CHECK_EQ(atomic_load(&s->errors), 0);
    uint64_t put = 0, got = 0, missing = 0, unreported = 0;
    for (uint32_t id = 0; id < next_id; id++)
        for (uint64_t seq = 0; seq < QK_SEQS; seq++) {
            bool p = qk_has(s->put, id, seq), g = qk_has(s->got, id, seq);
            put += p;
            got += g;
            missing += p && !g;
            unreported += g && !p;
        }
    printf("queue 4x4: %u kills (%u producers, %u consumers), %llu messages put, %llu got, %llu "
           "lost with a killed consumer, %llu put by a producer killed before it recorded them, "
           "%.1f s\n",
           pkills + ckills, pkills, ckills, (unsigned long long)put, (unsigned long long)got,
           (unsigned long long)missing, (unsigned long long)unreported, took);
    CHECK(missing <= ckills);
    CHECK(unreported <= pkills);
    CHECK(mproc_queue_empty(s->q));
    /* The whole byte budget is usable again: nothing of it leaked with the dead. */
    CHECK_OK(queue_budget_round_trip(s->q, 128 << 10));
    mproc_queue_free(s->q);
    for (int i = 0; i < 2 * QK_ROLES; i++)
        mproc_shared_free(args[i]);
    mproc_shared_free(s);
}

/* ---- a parent that dies or ends at a random point ---- */

/* Ends a round as how says (0: SIGKILL at a random instant; else the child ends itself) and joins
 * the child; *t_end is when its end began. */
static int end_round(mproc_process *p, int how, uint64_t *rng, double *t_end)
{
    if (how == 0) {
        usleep((useconds_t)fault_rand(rng, 3000));
        CHECK_OK(mproc_process_kill(p));
    }
    *t_end = harness_now();
    return harness_join(p);
}

/* How many of the n pids (0: a pid not recorded) are still alive 1 s after their parent ended. */
static unsigned survivors(_Atomic pid_t *pids, int n, unsigned r, int how)
{
    unsigned left = 0;
    for (int i = 0; i < n; i++) {
        pid_t v = atomic_load(&pids[i]);
        if (v > 0 && !harness_wait_gone(v, 1.0 * harness_slow())) {
            printf("round %u (how %d): pid %d still alive\n", r, how, (int)v);
            left++;
        }
    }
    return left;
}

typedef struct {
    _Atomic pid_t pids[WORKERS + 2]; /* its workers and its child, for the test to look at */
    _Atomic int ready;
    int how; /* 0: killed, 1: exit(), 2: mproc_shutdown() then exit */
    unsigned delay_us;
} parent_arg;

static int forever(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

static int spin_task(mproc_task *t)
{
    while (!mproc_task_cancelled(t))
        usleep(1000);
    return 0;
}

/* Left alive at exit on purpose: static, so that LeakSanitizer sees them reachable. */
static mproc_pool *doomed_pool;
static mproc_queue *doomed_queue;
static mproc_process *doomed_child;
static mproc_future *doomed_futures[WORKERS];

static int doomed_parent(void *arg)
{
    parent_arg *a = arg;
    if (mproc_pool_new(&doomed_pool, &(mproc_pool_opts){.workers = WORKERS}) != 0) return 10;
    if (mproc_queue_new(&doomed_queue, &(mproc_queue_opts){.max_items = 4}) != 0) return 11;
    if (mproc_process_new(&doomed_child, &(mproc_process_opts){.run = forever, .daemon = true}) !=
            0 ||
        mproc_process_start(doomed_child) != 0)
        return 12;
    for (int i = 0; i < WORKERS; i++)
        if (mproc_pool_submit(doomed_pool, spin_task, NULL, 0, &doomed_futures[i]) != 0) return 13;
    for (int i = 0; i < 4; i++)
        mproc_queue_put(doomed_queue, &i, sizeof i, 1);
    pid_t pids[WORKERS];
    int n = mproc_pool_worker_pids(doomed_pool, pids, WORKERS);
    for (int i = 0; i < n && i < WORKERS; i++)
        atomic_store(&a->pids[i], pids[i]);
    atomic_store(&a->pids[WORKERS], mproc_process_pid(doomed_child));
    atomic_store(&a->ready, 1);
    usleep(a->delay_us);
#ifdef LSAN
    /* Ending the pool fails its running tasks with a message on the heap that only the task
     * records, in the arena (shared memory LeakSanitizer does not scan), point to: not a leak of
     * a program that exits, but LSan would report it. */
    __lsan_disable();
#endif
    if (a->how == 2) mproc_shutdown();
    if (a->how >= 1) exit(0);
    for (;;)
        pause(); /* killed */
}

/* A flag a child sets once it is ready, polled until `until` rather than awaited as an event: with
 * p, the loop also fails at once when that child died first (a round's random kill may land in
 * its set-up), where an event wait would sit out its timeout. */
static void await_flag(_Atomic int *flag, double until, mproc_process *p)
{
    while (!atomic_load(flag)) {
        CHECK(harness_now() < until);
        if (p) CHECK(mproc_process_is_alive(p));
        usleep(500);
    }
}

/* An ending round's checks: under the 0.5 s a daemonic child is given after SIGTERM (stopping the
 * workers is not left to that grace), and killed or a clean exit. */
static void check_prompt_end(unsigned r, int how, double took, int code, double *max_took)
{
    if (took > *max_took) *max_took = took;
    if (took > 0.45 * harness_slow())
        harness_fail(__FILE__, __LINE__, "round %u (how %d): ending took %.2f s", r, how, took);
    if (!(code == -SIGKILL || code == 0))
        harness_fail(__FILE__, __LINE__, "round %u (how %d): exit code %d", r, how, code);
}

TEST_T(parent_killed_or_ending_at_random_points_leaves_nothing, 240)
{
    SKIP_IN_THREAD_MODE("the parent would be this process");
    uint64_t rng = fault_seed("parent end");
    unsigned rounds = fault_rounds(60), left = 0;
    double max_took = 0;
    parent_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a != NULL);
    for (unsigned r = 0; r < rounds; r++) {
        memset(a, 0, sizeof *a);
        a->how = (int)(r % 3);
        a->delay_us = (unsigned)fault_rand(&rng, 20000);
        mproc_process *p = harness_start(doomed_parent, a);
        double until = harness_now() + 20 * harness_slow();
        /* Killed before it is ready, too: at a random instant of its set-up. */
        if (a->how == 0 && fault_rand(&rng, 2)) {
            usleep((useconds_t)fault_rand(&rng, 5000));
        } else {
            await_flag(&a->ready, until, NULL);
        }
        double t_end;
        int code = end_round(p, a->how, &rng, &t_end);
        /* Ending is prompt: exit and mproc_shutdown stop the pool first (its workers are killed,
         * not waited for, and not replaced meanwhile). */
        check_prompt_end(r, a->how, harness_now() - t_end - a->delay_us / 1e6, code, &max_took);
        /* Nothing of it left after 1 s: its workers and child die with it. */
        left += survivors(a->pids, WORKERS + 1, r, a->how);
    }
    printf("parent end: %u rounds (killed, exit, shutdown), %u processes left over, slowest end "
           "%.3f s\n",
           rounds, left, max_took);
    CHECK_EQ(left, 0);
    mproc_shared_free(a);
}

/* ---- a parent with a live manager (and a client outside the family) that dies or ends ---- */

typedef struct {
    _Atomic pid_t pids[WORKERS + 1]; /* its pool's workers and its manager's server */
    _Atomic int ready, parked;
    int how; /* as parent_arg's */
    unsigned delay_us;
    char address[128]; /* unix:PATH, a socket file: that it is removed is checked */
} mgr_parent_arg;

/* Left alive at exit on purpose, as the doomed_* above. */
static mproc_manager *doomed_manager;

static int doomed_manager_parent(void *arg)
{
    mgr_parent_arg *a = arg;
    if (mproc_manager_start(&doomed_manager, a->address, "k", 1, NULL) != 0) return 10;
    if (mproc_pool_new(&doomed_pool, &(mproc_pool_opts){.workers = WORKERS}) != 0) return 11;
    if (mproc_queue_new(&doomed_queue, &(mproc_queue_opts){.max_items = 4}) != 0) return 12;
    for (int i = 0; i < WORKERS; i++)
        if (mproc_pool_submit(doomed_pool, spin_task, NULL, 0, &doomed_futures[i]) != 0) return 13;
    mproc_queue *mq;
    if (mproc_manager_queue(doomed_manager, "q", NULL, &mq) != 0 || mproc_queue_put(mq, "x", 1, 1))
        return 14;
    pid_t pids[WORKERS];
    int n = mproc_pool_worker_pids(doomed_pool, pids, WORKERS);
    for (int i = 0; i < n && i < WORKERS; i++)
        atomic_store(&a->pids[i], pids[i]);
    atomic_store(&a->pids[WORKERS], mproc_process_pid(doomed_manager->server));
    mproc_event *parked;
    if (mproc_manager_event(doomed_manager, "parked", &parked) != 0) return 15;
    atomic_store(&a->ready, 1);
    /* The client sets it just before it parks a wait in the server. */
    if (mproc_event_wait(parked, 20) != 0) return 16;
    atomic_store(&a->parked, 1);
    usleep(a->delay_us);
#ifdef LSAN
    __lsan_disable(); /* as in doomed_parent */
#endif
    if (a->how == 2) mproc_shutdown();
    if (a->how >= 1) exit(0);
    for (;;)
        pause(); /* killed */
}

/* The client, a program outside the family (tests/manager_peer.c "block"): its wait parked in the
 * server must end with -EPIPE or MPROC_ECLOSED (it exits 0 then), not hang. Through a proxy: a
 * client that mapped the arena waits in the arena, which the server's end does not touch
 * (test_manager's mapped_objects_outlive_the_server). */
static pid_t spawn_blocked_client(const char *address)
{
    setenv("MPROC_MANAGER_MAP", "0", 1);
    char *argv[] = {(char *)MANAGER_PEER, (char *)address, "k", "block", NULL};
    pid_t pid;
    CHECK_EQ(posix_spawn(&pid, MANAGER_PEER, NULL, NULL, argv, environ), 0);
    return pid;
}

/* Its exit code, or -1 (after killing it) if it did not end within timeout seconds. */
static int client_end(pid_t pid, double timeout)
{
    double until = harness_now() + timeout;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        CHECK(r >= 0);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (harness_now() >= until) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(2000);
    }
}

/* A process with a manager server, a client connected to it from outside the family with a call
 * parked in the server, a pool with busy workers and a queue: killed, or calling exit, or
 * mproc_shutdown and exit, at a random instant. Its end is prompt, its server and workers are
 * gone within 1 s, the socket file is removed, and the client's call fails cleanly at once. */
TEST_T(manager_parent_killed_or_ending_leaves_nothing, 240)
{
    SKIP_IN_THREAD_MODE("the parent would be this process");
    uint64_t rng = fault_seed("manager parent end");
    unsigned rounds = fault_rounds(15), left = 0, files = 0;
    double max_took = 0, max_client = 0;
    mgr_parent_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a != NULL);
    for (unsigned r = 0; r < rounds; r++) {
        memset(a, 0, sizeof *a);
        a->how = (int)(r % 3);
        a->delay_us = (unsigned)fault_rand(&rng, 20000);
        snprintf(a->address, sizeof a->address, "unix:/tmp/mproc-faults-%d-%u.sock", (int)getpid(),
                 r);
        const char *path = a->address + 5;
        mproc_process *p = harness_start(doomed_manager_parent, a);
        double until = harness_now() + 20 * harness_slow();
        await_flag(&a->ready, until, p);
        pid_t client = spawn_blocked_client(a->address);
        await_flag(&a->parked, until, NULL);
        double t_end;
        int code = end_round(p, a->how, &rng, &t_end);
        check_prompt_end(r, a->how, harness_now() - t_end - (a->how ? a->delay_us / 1e6 : 0), code,
                         &max_took);
        int cc = client_end(client, 5 * harness_slow());
        double ct = harness_now() - t_end;
        if (ct > max_client) max_client = ct;
        if (cc != 0)
            harness_fail(__FILE__, __LINE__, "round %u (how %d): the client %s", r, a->how,
                         cc < 0 ? "hung" : "failed its checks");
        left += survivors(a->pids, WORKERS + 1, r, a->how);
        /* The server removes its socket file as it ends, however its starter ended. */
        double gone_by = harness_now() + 1.0 * harness_slow();
        while (access(path, F_OK) == 0 && harness_now() < gone_by)
            usleep(2000);
        if (access(path, F_OK) == 0) {
            printf("round %u (how %d): %s left behind\n", r, a->how, path);
            unlink(path);
            files++;
        }
    }
    printf("manager parent end: %u rounds (killed, exit, shutdown), %u processes and %u socket "
           "files left over, slowest end %.3f s, slowest client error %.3f s\n",
           rounds, left, files, max_took, max_client);
    CHECK_EQ(left, 0);
    CHECK_EQ(files, 0);
    mproc_shared_free(a);
}

/* ---- waiters of a robust mutex: the one woken for a dead holder killed ---- */

enum { RW_MAX = 4 };

typedef struct {
    mproc_condition *cond;
    _Atomic int held, go;
} rw_arg;

/* Holds the arena's lock (kind 0) or the condition's, after notifying its waiters (kind 1), and is
 * killed holding it. */
static int rw_holder(void *arg)
{
    rw_arg *a = arg;
    if (a->cond) {
        if (mproc_lock_acquire(mproc_condition_lock(a->cond), 30) != 0) return 2;
    } else {
        pthread_mutex_lock(mproc__arena_mutex());
    }
    atomic_fetch_or(&a->held, 1);
    while (!atomic_load(&a->go))
        usleep(200);
    if (a->cond) mproc_condition_notify_all(a->cond);
    for (;;)
        pause();
    return 0;
}

static int rw_arena_waiter(void *arg)
{
    (void)arg;
    void *p = mproc_shared_alloc(64);
    if (!p) return 1;
    mproc_shared_free(p);
    return 0;
}

static int rw_cond_waiter(void *arg)
{
    rw_arg *a = arg;
    mproc_lock *l = mproc_condition_lock(a->cond);
    if (mproc_lock_acquire(l, 30) != 0) return 2;
    atomic_fetch_add(&a->held, 2); /* waiting (the lock released) once the holder has it */
    int r = mproc_condition_wait(a->cond, 60);
    if (r != 0 && r != MPROC_EOWNERDEAD) return 3;
    return mproc_lock_release(l) == 0 ? 0 : 4;
}

/* Rounds of: a holder of a robust mutex (the arena's, or a condition's lock that its notified
 * waiters take back) with 1 to 4 processes waiting for it, killed; the waiter its death wakes is
 * killed at that moment (a decoy first in line, robust_util.h), or a random waiter at a random
 * instant of the hand-over. Every other waiter gets the mutex within 1 s (before the fix in
 * platform/robust.c they slept on for ever after a decoy round). */
TEST_T(robust_mutex_waiter_killed_at_its_wakeup, 240)
{
    SKIP_IN_THREAD_MODE("threads cannot be killed alone");
    uint64_t rng = fault_seed("robust mutex waiter kills");
    unsigned rounds = fault_rounds(60), decoys = 0, kills = 0;
    double slowest = 0;
    rw_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a != NULL);
    CHECK(mproc__arena_mutex() != NULL);
    for (unsigned r = 0; r < rounds; r++) {
        bool cond = fault_rand(&rng, 2), decoy = fault_rand(&rng, 2);
        int n = 1 + (int)fault_rand(&rng, RW_MAX);
        memset(a, 0, sizeof *a);
        if (cond) CHECK_OK(mproc_condition_new(&a->cond, NULL));
        pthread_mutex_t *m = cond ? &mproc_condition_lock(a->cond)->m : mproc__arena_mutex();
        mproc_process *w[RW_MAX], *d = NULL;
        if (cond)
            for (int i = 0; i < n; i++)
                w[i] = harness_start(rw_cond_waiter, a);
        double until = harness_now() + 10 * harness_slow();
        while (cond && atomic_load(&a->held) < 2 * n) {
            CHECK(harness_now() < until);
            usleep(200);
        }
        mproc_process *h = harness_start(rw_holder, a);
        while (!(atomic_load(&a->held) & 1)) {
            CHECK(harness_now() < until);
            usleep(200);
        }
        if (decoy) d = robust_decoy_start(m);
        atomic_store(&a->go, 1);
        for (int i = 0; i < n; i++) {
            if (!cond) w[i] = harness_start(rw_arena_waiter, a);
            CHECK(robust_wait_sleeping(mproc_process_pid(w[i]), m, 10 * harness_slow()));
        }
        int victim = decoy ? -1 : (int)fault_rand(&rng, (uint64_t)n);
        unsigned delay = (unsigned)fault_rand(&rng, 200);
        CHECK_OK(mproc_process_kill(h));
        if (victim >= 0) {
            usleep(delay);
            CHECK_OK(mproc_process_kill(w[victim]));
        }
        double t0 = harness_now();
        CHECK_EQ(harness_join(h), -SIGKILL);
        if (d) CHECK_EQ(harness_join(d), -SIGKILL);
        /* Each waiter (but the victim) got the mutex and ended, within 1 s of the holder's death.
         */
        for (int i = 0; i < n; i++) {
            double left = t0 + 1.0 * harness_slow() - harness_now();
            if (i != victim && mproc_process_join(w[i], left > 0 ? left : 0) != 0)
                harness_fail(
                    __FILE__, __LINE__,
                    "round %u (%s, %d waiters, %s): waiter %d did not get the mutex in 1 s", r,
                    cond ? "condition" : "arena", n, decoy ? "decoy" : "random kill", i);
        }
        double took = harness_now() - t0;
        if (took > slowest) slowest = took;
        for (int i = 0; i < n; i++) {
            int code = harness_join(w[i]);
            CHECK(code == 0 || (i == victim && code == -SIGKILL));
        }
        decoys += decoy;
        kills += victim >= 0;
        if (cond) mproc_condition_free(a->cond);
    }
    printf("robust mutex: %u rounds, %u with the woken waiter killed (decoy), %u with a random "
           "waiter killed 0-200 us after the holder, slowest hand-over %.3f s\n",
           rounds, decoys, kills, slowest);
    CHECK_OK(mproc__arena_check());
    mproc_shared_free(a);
}

/* ---- barrier and lock participants killed mid-wait ---- */

typedef struct {
    mproc_barrier *b;
    mproc_lock *l;
    _Atomic int results[8];
    _Atomic int arrived;
} sync_arg;

static int barrier_party(void *arg)
{
    sync_arg *a = arg;
    int me = atomic_fetch_add(&a->arrived, 1);
    int r = mproc_barrier_wait(a->b, 30);
    atomic_store(&a->results[me], r >= 0 ? 1 : r); /* an arrival index, or an error */
    return 0;
}

static _Noreturn int lock_holder_body(void *arg);
static int lock_holder(void *arg)
{
    return lock_holder_body(arg);
}
static _Noreturn int lock_holder_body(void *arg)
{
    sync_arg *a = arg;
    if (mproc_lock_acquire(a->l, 30) < 0) _exit(1);
    atomic_store(&a->arrived, 1);
    for (;;)
        pause();
}

TEST_T(barrier_and_lock_participants_killed_mid_wait, 240)
{
    SKIP_IN_THREAD_MODE("threads cannot be killed alone");
    uint64_t rng = fault_seed("sync kills");
    unsigned rounds = fault_rounds(50), broken = 0, ownerdead = 0;
    sync_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a != NULL);
    for (unsigned r = 0; r < rounds; r++) {
        /* Barrier of 4, three parties in their wait (the fourth never comes): one of them
         * killed at a random moment of it. The others must see the barrier broken. */
        memset(a, 0, sizeof *a);
        CHECK_OK(mproc_barrier_new(&a->b, 4, NULL, NULL));
        mproc_process *ps[3];
        for (int i = 0; i < 3; i++)
            ps[i] = harness_start(barrier_party, a);
        double until = harness_now() + 10 * harness_slow();
        while (mproc_barrier_n_waiting(a->b) < 3) {
            CHECK(harness_now() < until);
            usleep(200);
        }
        usleep((useconds_t)fault_rand(&rng, 3000));
        unsigned victim = (unsigned)fault_rand(&rng, 3);
        double t0 = harness_now();
        CHECK_OK(mproc_process_kill(ps[victim]));
        for (int i = 0; i < 3; i++)
            harness_join(ps[i]);
        CHECK(harness_now() - t0 < 5 * harness_slow());
        for (int i = 0; i < 3; i++) {
            int v = atomic_load(&a->results[i]);
            /* 0: not recorded (the victim); else broken */
            if (!(v == 0 || v == MPROC_EBROKEN))
                harness_fail(__FILE__, __LINE__, "round %u: barrier wait returned %d (%s)", r, v,
                             mproc_strerror(v));
            broken += v == MPROC_EBROKEN;
        }
        CHECK(mproc_barrier_broken(a->b));
        mproc_barrier_free(a->b);

        /* Lock: the holder killed while another waits for it. */
        CHECK_OK(mproc_lock_new(&a->l));
        atomic_store(&a->arrived, 0);
        mproc_process *h = harness_start(lock_holder, a);
        while (!atomic_load(&a->arrived))
            usleep(200);
        usleep((useconds_t)fault_rand(&rng, 3000));
        CHECK_OK(mproc_process_kill(h));
        t0 = harness_now();
        int lr = mproc_lock_acquire(a->l, 10 * harness_slow());
        CHECK(lr == 0 || lr == MPROC_EOWNERDEAD);
        CHECK(harness_now() - t0 < 5 * harness_slow());
        ownerdead += lr == MPROC_EOWNERDEAD;
        CHECK_OK(mproc_lock_release(a->l));
        CHECK_EQ(harness_join(h), -SIGKILL);
        mproc_lock_free(a->l);
    }
    printf("sync kills: %u rounds, %u barrier waits broken, lock %u owner-dead\n", rounds, broken,
           ownerdead);
    CHECK_EQ(broken, 2 * rounds);
    CHECK_EQ(ownerdead, rounds);
    mproc_shared_free(a);
}
