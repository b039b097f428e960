/* The version facts a bug report quotes agree: mproc_version(), the MPROC_VERSION_* macros,
 * CMake's project(VERSION) (which names mproc.pc and the CMake package), the shared library's
 * SONAME (libmproc.so.MAJOR) and the Debian package's upstream version (debian/changelog). */
#include <stdio.h>
#include <string.h>

#include "harness.h"

static void expected(char *buf, size_t cap)
{
    snprintf(buf, cap, "%d.%d.%d", MPROC_VERSION_MAJOR, MPROC_VERSION_MINOR, MPROC_VERSION_PATCH);
}

TEST(version_string_is_the_macros)
{
    char want[64];
    expected(want, sizeof want);
    const char *v = mproc_version();
    CHECK(v != NULL);
    if (strcmp(v, want) != 0)
        harness_fail(__FILE__, __LINE__, "mproc_version() %s, macros %s", v, want);
    CHECK(mproc_version() == v); /* a static string */
}

TEST(version_is_cmakes)
{
    if (strcmp(mproc_version(), MPROC_CMAKE_VERSION) != 0)
        harness_fail(__FILE__, __LINE__, "mproc_version() %s, CMakeLists.txt project(VERSION %s)",
                     mproc_version(), MPROC_CMAKE_VERSION);
}

TEST(soname_is_the_major_version)
{
    char want[64];
    snprintf(want, sizeof want, "libmproc.so.%d", MPROC_VERSION_MAJOR);
    if (strcmp(MPROC_SONAME, want) != 0)
        harness_fail(__FILE__, __LINE__, "SONAME %s, expected %s", MPROC_SONAME, want);
}

/* The first line of debian/changelog: "mproc (EPOCH:UPSTREAM-REVISION) DIST; urgency=...". */
TEST(version_is_the_debian_packages)
{
    FILE *f = fopen(MPROC_SOURCE_DIR "/debian/changelog", "r");
    CHECK(f != NULL);
    char line[256], version[128];
    CHECK(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    CHECK(sscanf(line, "mproc (%127[^)])", version) == 1);
    char *upstream = strchr(version, ':') ? strchr(version, ':') + 1 : version;
    char *revision = strrchr(upstream, '-');
    if (revision) *revision = '\0';
    if (strcmp(upstream, mproc_version()) != 0)
        harness_fail(__FILE__, __LINE__, "debian/changelog upstream version %s, mproc_version() %s",
                     upstream, mproc_version());
}
