/* mproc: pool module (being written). */
#ifndef MPROC_POOL_H
#define MPROC_POOL_H

#include "common.h"

#endif
