/* mproc: conn module (being written). */
#ifndef MPROC_CONN_H
#define MPROC_CONN_H

#include "common.h"

#endif
