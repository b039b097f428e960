/* mproc_version(): the version of the library that is running, which a bug report needs (a program
 * built against one version's header may run with another's shared library). */
#include "mproc/common.h"

#define MPROC_STR_(x) #x
#define MPROC_STR(x) MPROC_STR_(x)

/* The header's macros are the API's statement of the version; CMake's project() version names the
 * files (SONAME, mproc.pc, the CMake package) and debian/changelog the package. The build passes
 * CMake's here, so the first two cannot disagree; tests/test_version.c checks the third. */
#if defined(MPROC_CMAKE_VERSION_MAJOR) && (MPROC_CMAKE_VERSION_MAJOR != MPROC_VERSION_MAJOR ||     \
                                           MPROC_CMAKE_VERSION_MINOR != MPROC_VERSION_MINOR ||     \
                                           MPROC_CMAKE_VERSION_PATCH != MPROC_VERSION_PATCH)
#error "MPROC_VERSION_* in include/mproc/common.h differ from project(VERSION) in CMakeLists.txt"
#endif

const char *mproc_version(void)
{
    return MPROC_STR(MPROC_VERSION_MAJOR) "." MPROC_STR(MPROC_VERSION_MINOR) "." MPROC_STR(
        MPROC_VERSION_PATCH);
}
