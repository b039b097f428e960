/* mproc: multiprocessing for C on Linux. This header includes every module. */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/common.h"
#include "mproc/process.h"
#include "mproc/sync.h"
#include "mproc/shared.h"
#include "mproc/containers.h"
#include "mproc/queue.h"
#include "mproc/conn.h"
#include "mproc/pool.h"
#include "mproc/log.h"
#include "mproc/manager.h"

#endif
