/* The talk's second sample, Python's
 *
 *     class CalculateE(Process):
 *         def __init__(self):
 *             super().__init__(name="CalculateE")
 *             self.exit_event = Event()
 *             self.result_queue = Queue()
 *         def run(self):
 *             ...  # sum 1/k! until exit_event is set, then put e in result_queue
 *         def get_value(self):
 *             return self.result_queue.get()
 *
 * as a C "subclass" of mproc_process: a struct holding the process and its channels, a run function
 * that is the child's body, and a get that blocks for the result. The struct lives in the family
 * arena (mproc_shared_alloc), so the child reads the same struct, with every start method.
 * Used by e_process.c and e_main.c. */
#ifndef CALCULATE_E_H
#define CALCULATE_E_H

#include <errno.h>
#include <mproc.h>
#include <stdio.h>
#include <time.h>

typedef struct {
    double e;
    unsigned long long iterations;
    double seconds;
} e_value;

typedef struct {
    mproc_process *process;
    mproc_event *exit_event;   /* set by the parent: stop and report */
    mproc_queue *result_queue; /* the child's only way back: processes share nothing else */
} calculate_e;

static double calculate_e_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* run(): the body of the child process. */
static int calculate_e_run(void *arg)
{
    calculate_e *self = arg;
    double t0 = calculate_e_now(), term = 1.0;
    e_value v = {0};
    do {
        for (int i = 0; i < 1000; i++) {
            v.e += term;
            term /= (double)++v.iterations;
        }
    } while (!mproc_event_is_set(self->exit_event));
    v.seconds = calculate_e_now() - t0;
    return mproc_queue_put(self->result_queue, &v, sizeof v, MPROC_FOREVER) == 0 ? 0 : 1;
}

static void calculate_e_free(calculate_e *self)
{
    if (!self) return;
    if (mproc_process_is_alive(self->process)) {
        mproc_event_set(self->exit_event);
        mproc_process_join(self->process, MPROC_FOREVER);
    }
    mproc_process_free(self->process);
    mproc_queue_free(self->result_queue);
    mproc_event_free(self->exit_event);
    mproc_shared_free(self);
}

/* __init__ */
static int calculate_e_new(calculate_e **out)
{
    calculate_e *self = mproc_shared_alloc(sizeof *self);
    if (!self) return -ENOMEM;
    int rc = mproc_event_new(&self->exit_event);
    if (rc == 0) rc = mproc_queue_new(&self->result_queue, NULL);
    if (rc == 0)
        rc = mproc_process_new(
            &self->process,
            &(mproc_process_opts){.name = "CalculateE", .run = calculate_e_run, .arg = self});
    if (rc < 0) {
        calculate_e_free(self);
        return rc;
    }
    *out = self;
    return 0;
}

static int calculate_e_start(calculate_e *self)
{
    return mproc_process_start(self->process);
}

/* get_value(): blocks (up to timeout) until the child has put its result. */
static int calculate_e_get_value(calculate_e *self, e_value *out, double timeout)
{
    return mproc_queue_get(self->result_queue, out, sizeof *out, NULL, timeout);
}

#endif
