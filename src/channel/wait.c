/* mproc_wait: Python's multiprocessing.connection.wait over fds. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>

#include "channel/conn.h"
#include "platform/interrupt.h"
#include "platform/platform.h"

int mproc_wait(const int *fds, size_t n, bool *ready, double timeout)
{
    /* with nothing to wait on, a forever wait would hang: refuse rather than sleep */
    if (!fds || !ready || n == 0 || n > (size_t)INT32_MAX || mproc__timeout_check(timeout))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (fds[i] < 0) return -EINVAL;
    struct pollfd small[16];
    struct pollfd *p = n <= 16 ? small : calloc(n, sizeof *p);
    if (!p) return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    /* A look first: when one is ready already, no signal mask changes (platform/interrupt.h). */
    int r = poll(p, (nfds_t)n, 0);
    if (r == 0)
        r = mproc__intr_poll(p, (nfds_t)n, mproc__deadline(timeout));
    else if (r < 0)
        r = -errno;
    if (r >= 0) {
        int count = 0;
        for (size_t i = 0; i < n; i++) {
            if (p[i].revents & POLLNVAL) {
                r = -EBADF;
                break;
            }
            ready[i] = p[i].revents != 0; /* readable, end of file, hang-up or error */
            count += ready[i];
        }
        if (r >= 0) r = count;
    }
    if (p != small) free(p);
    return r;
}
