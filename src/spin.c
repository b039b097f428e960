/* The hand-over flag of the wait policy in spin.h. */
#include "spin.h"

MPROC_TLS bool mproc__handoff;
