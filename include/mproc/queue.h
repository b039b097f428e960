/* mproc: queue module (being written). */
#ifndef MPROC_QUEUE_H
#define MPROC_QUEUE_H

#include "common.h"

#endif
