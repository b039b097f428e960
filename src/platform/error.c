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
