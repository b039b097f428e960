/* mproc: log module (being written). */
#ifndef MPROC_LOG_H
#define MPROC_LOG_H

#include "common.h"

#endif
