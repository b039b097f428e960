/* The pool worker process: claim task records from the shared queue, run them, complete them in
 * place; report crashes with a backtrace.
 *
 * Claiming. The queue is a ring of record indices by position; `head` is only a hint of the first
 * position not yet passed. A worker takes a record by one CAS on the record's own state, QUEUED ->
 * RUNNING(its incarnation), having first written the index to its seat (`current`). So ownership
 * is decided atomically and is always visible to the supervisor: if the worker dies, the record
 * still RUNNING(inc) at `current` is exactly the task it died on, and nothing else is lost. A
 * worker reading a stale position may take a record out of order; the CAS still gives each queued
 * record to exactly one worker, and positions are only passed over records already taken.
 *
 * Waiting. An idle worker spins briefly (only one at a time, the `spinner`, so spinning never
 * starves the parent on a small machine) and then sleeps on a futex; the parent wakes a sleeper
 * only when no worker is spinning and no earlier record is still waiting for a worker, so a busy
 * pool takes no system call per task (the protocol and why no wake-up is lost: local_send in
 * local/local.c, and docs/pool.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <execinfo.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mproc/common.h"
#include "pool/local/local.h"
#include "pool/task.h"
#include "platform/spin.h"
#include "process/signals.h"

#define SPIN_NS 50000 /* of that, shm->idle_hard_spin_ns on the CPU */

/* Thread-local: with start method "thread" every worker is a thread of one process. */
static MPROC_TLS mproc__pool_shm *W;
static MPROC_TLS mproc__seat *seat;
static MPROC_TLS uint32_t my_inc;
static MPROC_TLS pid_t my_pid;
/* The crash handler's memfd, at a high number, and who it is: a task that closes its fds and opens
 * files may get that number, and the backtrace must not land in (or truncate) its file. */
static int crash_fd = -1;
static dev_t crash_dev;
static ino_t crash_ino;

static inline mproc__slot *slot_at(uint32_t idx)
{
    return mproc__slot_at(W->chunks, idx);
}

/* Chunks of task records this worker process has faulted in (one worker per process; in thread
 * mode the parent's own prefault covered the shared address space). */
static uint64_t faulted[MPROC__SLOT_MAX_CHUNKS / 64];

static inline void fault_in_chunk(uint32_t idx)
{
    uint32_t c = idx >> MPROC__SLOT_CHUNK_SHIFT;
    if (W->thread_mode || (faulted[c >> 6] >> (c & 63) & 1)) return;
    faulted[c >> 6] |= (uint64_t)1 << (c & 63);
    mproc__prefault(W->chunks[c], sizeof(mproc__slot) * MPROC__SLOT_CHUNK);
}

/* seq_cst: the worker's half of the Dekker pairing with local_send (local/local.c). */
static bool queue_nonempty(void)
{
    return atomic_load(&W->head) < atomic_load(&W->tail);
}

/* Take one queued record, or MPROC__SLOT_NONE when the queue is empty; *sent gets its queue
 * entry (when it was sent). A stale position read here gives a record queued again since an
 * older stamp: its latency reads long, a rare error in a statistic, never in the task. */
static uint32_t claim(uint64_t *sent)
{
    for (;;) {
        uint64_t h = atomic_load_explicit(&W->head, memory_order_acquire);
        uint64_t t = atomic_load_explicit(&W->tail, memory_order_acquire);
        if (h >= t) return MPROC__SLOT_NONE;
        uint64_t e =
            atomic_load_explicit(&W->q[h & (MPROC__LOCAL_QUEUE_CAP - 1)], memory_order_acquire);
        uint32_t idx = mproc__q_idx(e);
        fault_in_chunk(idx);
        mproc__slot *s = slot_at(idx);
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (MPROC__SLOT_KIND(st) == MPROC__SLOT_QUEUED) {
            atomic_store_explicit(&seat->current, idx, memory_order_seq_cst);
            if (atomic_compare_exchange_strong(
                    &s->state, &st, (st & MPROC__SLOT_WAITER) | MPROC__SLOT_RUNNING_BY(my_inc))) {
                atomic_compare_exchange_strong(&W->head, &h, h + 1);
                *sent = e;
                return idx;
            }
            continue;
        }
        atomic_compare_exchange_strong(&W->head, &h, h + 1);
    }
}

static void wake_supervisor(void)
{
    atomic_fetch_add(&W->notify_seq, 1);
    if (atomic_load(&W->relay_sleeping)) mproc__futex_wake(&W->notify_seq, 1);
}

/* The statistics of a task starting (stats.h: this worker's own line). The start stamp: when
 * the worker came straight from its last task (prev_end, else 0), that task's end stamp, so a
 * busy worker reads the counter once per task, not twice (~10 ns each on a VM; the claim in
 * between, tens of ns, then counts as run time). A sampled entry (mproc__q_timed) takes its own:
 * its hand-over cost is measured from it. */
static uint64_t count_start(mproc__stat_line *st, uint64_t sent, uint64_t prev_end)
{
    if (!MPROC__STATS_ON) return 0;
    uint64_t now;
    if (mproc__q_timed(sent)) {
        now = mproc__ticks();
        uint64_t lat = mproc__q_waited(sent, now);
        /* The worker was free from the end of its last task: the latency before that was
         * waiting behind other tasks, not the cost of the hand-over. */
        uint64_t since_end = now - atomic_load_explicit(&st->last_end, memory_order_relaxed);
        uint64_t ovh = since_end < lat ? since_end : lat;
        mproc__stat_add(&st->timed, 1);
        mproc__stat_add(&st->lat_sum, lat);
        mproc__stat_add(&st->ovh_sum, ovh);
        mproc__stat_add(&st->lat_hist[mproc__hist_bucket(lat)], 1);
    } else {
        now = prev_end ? prev_end : mproc__ticks();
    }
    mproc__stat_add(&st->started, 1);
    atomic_store_explicit(&st->cur_start, now, memory_order_relaxed);
    return now;
}

/* ... and ending: its run time now (whatever becomes of it: the caller may have failed it from
 * outside meanwhile), its outcome once the record is completed. cur_start is cleared before busy
 * grows, so a reader (stats.c) may miss a task for a moment but never counts it twice. Returns
 * the end stamp. */
static uint64_t count_end(mproc__stat_line *st, uint64_t began)
{
    if (!MPROC__STATS_ON) return 0;
    uint64_t now = mproc__ticks(), ran = now - began;
    atomic_store_explicit(&st->cur_start, 0, memory_order_relaxed);
    atomic_store_explicit(&st->busy, atomic_load_explicit(&st->busy, memory_order_relaxed) + ran,
                          memory_order_release);
    mproc__stat_add(&st->run_sum, ran);
    mproc__stat_add(&st->run_hist[mproc__hist_bucket(ran)], 1);
    atomic_store_explicit(&st->last_end, now, memory_order_relaxed);
    return now;
}

/* Run one claimed record; returns the end stamp (count_end), or 0 when the worker is to look
 * at the time afresh. */
static uint64_t run(uint32_t idx, uint64_t sent, uint64_t prev_end)
{
    mproc__slot *s = slot_at(idx);
    mproc__stat_line *st = &seat->st;
    uint64_t began = count_start(st, sent, prev_end);
    mproc_task t;
    t.s = s;
    t.code = 0;
    t.failed = false;
    t.collect = NULL;
    t.arg_len = s->arg_len;
    if (t.arg_len <= MPROC__SLOT_INLINE) {
        mproc__copy_small(t.argbuf, s->inline_buf, t.arg_len); /* no memcpy call */
        t.arg = t.argbuf;
    } else {
        t.arg = s->arg_ext;
    }
    s->pid = my_pid;
    s->res_len = 0;
    int64_t hard = s->timeout_ns ? s->timeout_ns : W->pool_timeout_ns;
    t.soft_deadline = 0;
    if (hard || s->soft_timeout_ms) {
        int64_t now = mproc__now_ns();
        if (s->soft_timeout_ms) t.soft_deadline = now + (int64_t)s->soft_timeout_ms * 1000000;
        if (hard) {
            int64_t dl = mproc__deadline_after(now, hard);
            atomic_store(&seat->deadline_ns, dl);
            if (dl < atomic_load(&W->sup_wake_ns)) wake_supervisor();
        }
    }
    mproc__task_current = &t;
    int r = s->fn(&t);
    mproc__task_current = NULL;
    uint64_t end = count_end(st, began);
    if (hard) atomic_store_explicit(&seat->deadline_ns, 0, memory_order_relaxed);
    uint32_t kind = MPROC__SLOT_DONE_OK;
    if (t.failed || r != 0) {
        kind = MPROC__SLOT_DONE_TASK_ERROR;
        s->err_code = t.failed ? t.code : (r < 0 ? r : MPROC_ETASKFAILED);
    }
    /* Counted before the record is completed, so that a caller who saw it done reads it in the
     * stats; taken back if the record was failed from outside meanwhile. */
    _Atomic uint64_t *outcome = kind == MPROC__SLOT_DONE_OK       ? &st->ok
                                : s->err_code == MPROC_ECANCELLED ? &st->cancelled
                                                                  : &st->failed;
    if (MPROC__STATS_ON) mproc__stat_add(outcome, 1);
    uint32_t state = atomic_load_explicit(&s->state, memory_order_relaxed);
    for (;;) {
        /* Failed from outside meanwhile (time limit, terminate): the supervisor is killing
         * this worker; taking another task now would only lose it. A thread cannot be killed:
         * it was asked to leave instead. */
        if ((state & ~MPROC__SLOT_WAITER) != MPROC__SLOT_RUNNING_BY(my_inc)) {
            if (MPROC__STATS_ON) mproc__stat_add(outcome, (uint64_t)-1);
            if (W->thread_mode) return 0;
            for (;;)
                pause();
        }
        if (atomic_compare_exchange_weak(&s->state, &state, kind)) break;
    }
    if (state & MPROC__SLOT_WAITER) mproc__wake(&s->state, INT_MAX);
    if (atomic_load(&s->flags) & MPROC__SLOT_NOTIFY) {
        wake_supervisor();
        return 0;
    }
    return end;
}

/* Wake one sleeping worker when there is more queued work than this one will take. The loads
 * come after the claim's seq_cst CAS on head: either they see a record the parent published
 * meanwhile, or the parent's post-fence read of head sees our claim (see local_send). */
static void chain_wake(void)
{
    if (atomic_load(&W->sleepers) && !atomic_load(&W->spinner) &&
        atomic_load(&W->tail) > atomic_load(&W->head)) {
        atomic_fetch_add(&W->wake_seq, 1);
        mproc__wake(&W->wake_seq, 1);
    }
}

/* The mark may have been taken away meanwhile (this worker was stopped: check_stuck in
 * local/local.c) and given to another spinner: leave that one's. */
static void give_up_spinner(void)
{
    uint32_t mine = my_inc;
    atomic_compare_exchange_strong(&W->spinner, &mine, 0);
}

static void idle(void)
{
    uint32_t none = 0;
    if (atomic_compare_exchange_strong(&W->spinner, &none, my_inc)) {
        int64_t now = mproc__now_ns();
        uint32_t hard = atomic_load_explicit(&W->idle_hard_spin_ns, memory_order_relaxed);
        mproc__spin sp;
        mproc__spin_start(&sp, now, hard, SPIN_NS);
        mproc__yielder y = {0};
        for (unsigned i = 0;; i++) {
            if (queue_nonempty() || atomic_load_explicit(&W->shutdown, memory_order_relaxed) ||
                atomic_load_explicit(&seat->leave, memory_order_relaxed)) {
                give_up_spinner();
                return;
            }
            if (hard == 0) { /* mproc__local_yield_at_once */
                now = mproc__now_ns();
                if (now >= sp.look_end) break;
                mproc__yield_look(&y, now);
                continue;
            }
            if (sp.yielding || (i & 63) == 63) now = mproc__now_ns();
            if (!mproc__spin_pause(&sp, now)) break;
        }
        give_up_spinner();
    }
    /* Publish the intent to sleep, then look at the queue once more (seq_cst, pairs with the
     * fence in local_send), then sleep on the sequence word the parent bumps before it wakes.
     * No timeout: with this order a wake-up cannot be lost (docs/pool.md). */
    atomic_fetch_add(&W->sleepers, 1);
    atomic_store(&seat->asleep, 1);
    uint32_t seq = atomic_load(&W->wake_seq);
    atomic_store_explicit(&seat->sleep_seq, seq, memory_order_relaxed);
    if (!queue_nonempty() && !atomic_load(&W->shutdown) && !atomic_load(&seat->leave))
        mproc__sleep(&W->wake_seq, seq, INT64_MAX);
    atomic_store(&seat->asleep, 0);
    atomic_fetch_sub(&W->sleepers, 1);
}

/* The crash memfd if it is still ours, else a new one (the task closed it, or put another file at
 * its number); -1 when none can be had. fstat and memfd_create are plain system calls, safe here.
 */
static int crash_fd_checked(void)
{
    struct stat st;
    if (crash_fd >= 0 && fstat(crash_fd, &st) == 0 && st.st_dev == crash_dev &&
        st.st_ino == crash_ino)
        return crash_fd;
    return memfd_create("mproc-crash", MFD_CLOEXEC);
}

/* Write "signal N (NAME) in PROCESS (pid P)" and the backtrace into the seat, then die of the
 * same signal. Only async-signal-safe calls: the frames go through a memfd made at start-up. */
static void crash_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    (void)uc;
    int fd = seat ? crash_fd_checked() : -1;
    if (fd >= 0) {
        void *frames[64];
        int n = backtrace(frames, 64);
        if (ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0) {
            backtrace_symbols_fd(frames, n, fd);
            ssize_t got = pread(fd, seat->crash, MPROC__LOCAL_CRASH_MAX - 1, 0);
            if (got < 0) got = 0;
            seat->crash[got] = '\0';
            seat->crash_sig = sig;
            atomic_store(&seat->crash_len, (uint32_t)got);
        }
    }
    signal(sig, SIG_DFL);
    raise(sig); /* blocked until we return; a hardware fault would re-fault anyway */
}

/* The crash memfd, moved near the top of the descriptor range where a task's open() does not
 * reach (the lowest free number is what it gets). */
static void open_crash_fd(void)
{
    int fd = memfd_create("mproc-crash", MFD_CLOEXEC);
    if (fd < 0) return;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 64) {
        rlim_t top = rl.rlim_cur > (1u << 20) ? (1u << 20) : rl.rlim_cur;
        int high = fcntl(fd, F_DUPFD_CLOEXEC, (int)(top - 32));
        if (high >= 0) {
            close(fd);
            fd = high;
        }
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return;
    }
    crash_fd = fd;
    crash_dev = st.st_dev;
    crash_ino = st.st_ino;
}

static void warm_backtrace(void)
{
    void *warm[2];
    backtrace(warm, 2);
}

void mproc__worker_prepare(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, warm_backtrace);
}

static void install_crash_handlers(void)
{
    static char altstack[64 * 1024];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
    sigaltstack(&ss, NULL);
    open_crash_fd();
    /* backtrace() loads libgcc on first use, which is not safe inside a signal handler. A fork
     * child inherits it loaded from mproc__worker_prepare; a forkserver child loads it here. */
    mproc__worker_prepare();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = crash_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    /* Overrides: the processes a task starts get the program's dispositions back. */
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        mproc__sig_override(sigs[i], &sa);
}

/* max_memory_per_child: this process's resident set in bytes, from /proc/self/statm (its
 * second field, in pages), read through an fd kept open; 0 when it cannot be read. A task that
 * closed the fd, or put another file at its number, makes the next look open it again. */
static int statm_fd = -1;

static size_t resident_bytes(void)
{
    char buf[128];
    for (int attempt = 0; attempt < 2; attempt++) {
        if (statm_fd < 0) statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
        if (statm_fd < 0) return 0;
        ssize_t n = pread(statm_fd, buf, sizeof buf - 1, 0);
        unsigned long size, pages;
        if (n > 0) {
            buf[n] = '\0';
            if (sscanf(buf, "%lu %lu", &size, &pages) == 2)
                return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
        }
        close(statm_fd);
        statm_fd = -1;
    }
    return 0;
}

int mproc__worker_main(void *arg)
{
    mproc__worker_boot *b = arg;
    W = b->shm;
    seat = &W->seats[b->seat];
    my_inc = b->inc;
    if (!W->thread_mode) memset(faulted, 0, sizeof faulted);
    if (W->thread_mode) {
        my_pid = mproc__gettid();
    } else {
        my_pid = getpid();
        /* Ctrl-C goes to the whole foreground group: the parent decides what happens to the
         * pool. */
        mproc__sig_override(SIGINT, &(struct sigaction){.sa_handler = SIG_IGN});
        install_crash_handlers();
    }
    /* Placement (pool opts): before the initializer, so that what it allocates is local to the
     * CPUs the worker will run on. */
    if (seat->pinned && sched_setaffinity(0, sizeof seat->cpus, &seat->cpus) != 0) {
        seat->init_code = -errno;
        snprintf(seat->init_msg, sizeof seat->init_msg, "cannot pin the worker to its CPUs: %s",
                 strerror(errno));
        atomic_store(&seat->phase, MPROC__WORKER_INIT_FAILED);
        return 1;
    }
    if (b->initializer) {
        int r = b->initializer(b->initarg);
        if (r != 0) {
            seat->init_code = r;
            snprintf(seat->init_msg, sizeof seat->init_msg, "initializer returned %d", r);
            atomic_store(&seat->phase, MPROC__WORKER_INIT_FAILED);
            return 1;
        }
    }
    atomic_store(&seat->phase, MPROC__WORKER_READY);
    unsigned done = 0, max = W->max_tasks;
    uint64_t prev_end = 0; /* the last task's end stamp, while going straight on (count_start) */
    for (;;) {
        /* The pool shrank past this seat (mproc_pool_resize): leave between two tasks. */
        if (atomic_load(&seat->leave)) {
            atomic_store(&seat->phase, MPROC__WORKER_RETIRED);
            return 0;
        }
        uint64_t sent;
        uint32_t idx = claim(&sent);
        if (idx != MPROC__SLOT_NONE) {
            chain_wake();
            prev_end = run(idx, sent, prev_end);
            /* Retire (replaced by the supervisor, like a worker that ended by itself) after
             * max_tasks_per_child tasks, or once past max_memory_per_child. */
            if ((max && ++done >= max) ||
                (W->max_rss && !W->thread_mode && resident_bytes() > W->max_rss)) {
                atomic_store(&seat->phase, MPROC__WORKER_RETIRED);
                return 0;
            }
            if (W->max_rss) prev_end = 0; /* the look above took a system call */
            continue;
        }
        prev_end = 0;
        if (atomic_load(&W->shutdown)) {
            atomic_store(&seat->phase, MPROC__WORKER_EXITING);
            return 0;
        }
        idle();
    }
}
