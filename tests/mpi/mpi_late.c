/* Loaded by rank 0 only (dlopen after start-up): its functions cannot be named on other ranks. */
#include <mproc.h>

int mpi_late_task(mproc_task *t)
{
    return mproc_task_return(t, "late", 4);
}
