/* A shared library for test_mpi: a task function that lives outside the executable. */
#include <mproc.h>
#include <stdint.h>

int mpi_lib_triple(mproc_task *t)
{
    const int64_t *x = mproc_task_arg(t, NULL);
    int64_t r = *x * 3;
    return mproc_task_return(t, &r, sizeof r);
}
