/* mproc: multiprocessing for C on Linux. This header includes every module. */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/common.h"
#include "mproc/process.h"
#include "mproc/sync.h"
#include "mproc/shared.h"

#endif
