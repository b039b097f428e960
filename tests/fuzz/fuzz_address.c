/* The address parser (src/channel/address.c): "unix:/path", "unix:@abstract", "tcp:host:port".
 *
 * Input: byte 0 bit 0 is `passive` (a listener's resolve), the rest the address (a NUL in it ends
 * it, as for any C string). Properties: a negative code, or 1..MPROC__ADDRESS_MAX candidates that
 * say what the text says: a unix address is the path (or the abstract name after a NUL byte) with
 * the length that covers exactly it; a tcp one has the port the text ends with, which must be a
 * decimal 0..65535 (the historical bug: "tcp:127.0.0.1:65536" was taken, and listened on a
 * random port, as getaddrinfo wraps the number).
 *
 * getaddrinfo is wrapped here to numeric hosts and ports only (AI_NUMERICHOST|AI_NUMERICSERV), so
 * no input makes a DNS query: the fuzzer tests the parsing around it, not the resolver. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <sys/un.h>

#include "channel/conn.h"
#include "fuzz_util.h"

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (!real)
        real = (int (*)(const char *, const char *, const struct addrinfo *,
                        struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo");
    struct addrinfo h = hints ? *hints : (struct addrinfo){0};
    h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
    return real(node, service, &h, res);
}

/* The port the text ends with, as the reference reads it: digits only, 0..65535; else -1. */
static long ref_port(const char *text)
{
    const char *colon = strrchr(text, ':');
    if (!colon || !colon[1] || strlen(colon + 1) > 5) return -1;
    long v = 0;
    for (const char *p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    return v <= 65535 ? v : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096) return 0;
    bool passive = data[0] & 1;
    char *text = malloc(size);
    FUZZ_CHECK(text != NULL, "malloc");
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';

    mproc__addr out[MPROC__ADDRESS_MAX];
    int n = mproc__address_resolve(text, passive, out, MPROC__ADDRESS_MAX);
    FUZZ_CHECK(n < 0 || (n >= 1 && n <= MPROC__ADDRESS_MAX), "%d candidates for '%s'", n, text);
    if (n > 0 && strncmp(text, "unix:", 5) == 0) {
        FUZZ_CHECK(n == 1, "%d unix candidates", n);
        const char *name = text + 5;
        size_t len = strlen(name);
        const struct sockaddr_un *un = (const struct sockaddr_un *)&out[0].sa;
        size_t base = offsetof(struct sockaddr_un, sun_path);
        FUZZ_CHECK(out[0].family == AF_UNIX && un->sun_family == AF_UNIX, "family");
        if (name[0] == '@') {
            FUZZ_CHECK(len >= 2 && out[0].len == base + len && un->sun_path[0] == '\0' &&
                           memcmp(un->sun_path + 1, name + 1, len - 1) == 0,
                       "abstract '%s' as %u bytes", name, (unsigned)out[0].len);
        } else {
            FUZZ_CHECK(len >= 1 && len < sizeof un->sun_path && out[0].len == base + len + 1 &&
                           memcmp(un->sun_path, name, len + 1) == 0,
                       "path '%s' as %u bytes", name, (unsigned)out[0].len);
        }
    } else if (n > 0) {
        FUZZ_CHECK(strncmp(text, "tcp:", 4) == 0,
                   "'%s' resolved but is neither unix: nor tcp:", text);
        long port = ref_port(text + 4);
        FUZZ_CHECK(port >= 0, "'%s' resolved, but its port is not a decimal 0..65535", text);
        for (int i = 0; i < n; i++) {
            int fam = out[i].family;
            FUZZ_CHECK(fam == AF_INET || fam == AF_INET6, "family %d", fam);
            unsigned got = fam == AF_INET
                               ? ntohs(((const struct sockaddr_in *)&out[i].sa)->sin_port)
                               : ntohs(((const struct sockaddr_in6 *)&out[i].sa)->sin6_port);
            FUZZ_CHECK(got == (unsigned)port, "'%s' resolved to port %u", text, got);
            FUZZ_CHECK(out[i].len <= sizeof out[i].sa, "length %u", (unsigned)out[i].len);
        }
    }
    free(text);
    return 0;
}
