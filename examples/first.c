/* The README's first example: start a process, share an Event with it, read its exit code. */
#include <mproc.h>
#include <stdio.h>

static int worker(void *arg)
{
    mproc_event *go = arg;
    printf("%s: waiting for the event\n", mproc_current_name());
    if (mproc_event_wait(go, 10.0) != 0) return 1; /* timed out */
    printf("%s: got it, exiting with 7\n", mproc_current_name());
    return 7;
}

int main(void)
{
    mproc_event *go;
    mproc_process *p;
    int code, rc;
    if ((rc = mproc_event_new(&go)) < 0 ||
        (rc = mproc_process_new(&p, &(mproc_process_opts){.run = worker, .arg = go})) < 0) {
        fprintf(stderr, "mproc: %s\n", mproc_strerror(rc));
        return 1;
    }
    mproc_process_start(p);
    mproc_event_set(go); /* the child sees the same event through the same pointer */
    mproc_process_join(p, MPROC_FOREVER);
    mproc_process_exitcode(p, &code);
    printf("%s exited with %d\n", mproc_process_name(p), code);
    mproc_process_free(p);
    mproc_event_free(go);
    return code == 7 ? 0 : 1;
}
