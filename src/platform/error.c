#include <errno.h>
#include <string.h>

#include "mproc/common.h"

const char *mproc_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case MPROC_ECLOSED:
        return "object closed";
    case MPROC_EWORKERLOST:
        return "the process running the task died";
    case MPROC_ETASKFAILED:
        return "task failed";
    case MPROC_ECANCELLED:
        return "cancelled";
    case MPROC_EBROKEN:
        return "broken (barrier or pool)";
    case MPROC_EAUTH:
        return "authentication failed";
    case MPROC_EOWNERDEAD:
        return "lock acquired; its previous holder died holding it";
    case MPROC_EPROTO:
        return "malformed message";
    case MPROC_EEND:
        return "no more results";
    case MPROC_ETIMELIMIT:
        return "the task exceeded its time limit (its worker was killed)";
    case MPROC_EREMOTE:
        return "the remote side raised an exception";
    /* The errno codes as the API uses them (conventions.md), not as the C library words them
     * for sockets and devices. */
    case -ETIMEDOUT:
        return "timed out";
    case -EAGAIN:
        return "not ready (would block)";
    case -EINTR:
        return "interrupted by a signal";
    case -EINVAL:
        return "invalid argument";
    case -ENOMEM:
        return "out of memory";
    case -EBUSY:
        return "still running (cancel requested)";
    case -EALREADY:
        return "already done";
    case -ECHILD:
        return "not this process's child, or its exit status is lost";
    case -EMSGSIZE:
        return "too large (buffer or message limit)";
    case -EPIPE:
        return "the other end is closed";
    case -EOVERFLOW:
        return "count at its limit";
    case -EPERM:
        return "not permitted (not held by the caller)";
    case -ENOTSUP:
        return "not supported";
    default:
        break;
    }
    /* strerror's buffer may be overwritten by another thread; strerrordesc_np is static. */
    if (code < 0 && code > -4096) {
        const char *s = strerrordesc_np(-code);
        if (s) return s;
    }
    return "unknown error";
}
