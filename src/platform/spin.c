/* The per-thread state of the wait policy in spin.h. */
#include "platform/spin.h"

MPROC_TLS bool mproc__handoff;
MPROC_TLS int64_t mproc__contended_until;
static MPROC_TLS int64_t contended_for;

void mproc__spin_contended(int64_t now)
{
    /* Contention that outlived the last window doubles it; a new episode starts small. */
    bool again = now - mproc__contended_until < contended_for;
    int64_t w = again ? contended_for * 2 : MPROC__SPIN_CONTENDED_MIN_NS;
    contended_for = w < MPROC__SPIN_CONTENDED_MAX_NS ? w : MPROC__SPIN_CONTENDED_MAX_NS;
    mproc__contended_until = now + contended_for;
}
