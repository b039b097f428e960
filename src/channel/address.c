/* Connection addresses: "unix:/path", "unix:@abstract", "tcp:host:port". */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "channel/conn.h"

static int resolve_unix(const char *name, mproc__addr *out)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&out->sa;
    size_t n = strlen(name);
    if (n == 0 || (name[0] == '@' && n == 1)) return -EINVAL;
    memset(out, 0, sizeof *out);
    un->sun_family = AF_UNIX;
    out->family = AF_UNIX;
    if (name[0] == '@') {
        /* abstract: a leading NUL and exactly the name's bytes, no padding, so the address is
         * the same one Python's "\0name" binds */
        if (n > sizeof un->sun_path) return -ENAMETOOLONG;
        memcpy(un->sun_path + 1, name + 1, n - 1);
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        if (n >= sizeof un->sun_path) return -ENAMETOOLONG;
        memcpy(un->sun_path, name, n);
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 1;
}

static int gai_code(int e)
{
    switch (e) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
    case EAI_FAMILY:
    case EAI_AGAIN:
    case EAI_FAIL:
        return -EADDRNOTAVAIL;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_SYSTEM:
        return errno ? -errno : -EIO;
    default:
        return -EINVAL;
    }
}

/* A decimal port 0-65535 (0: any free port, for a listener). getaddrinfo would take a service
 * name and wrap numbers past 65535 silently ("65536" listened on a random port), so it sees only
 * what passed here. */
static int parse_port(const char *s)
{
    if (!*s || strlen(s) > 5) return -EINVAL;
    unsigned v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -EINVAL;
        v = v * 10 + (unsigned)(*s - '0');
    }
    return v <= 65535 ? (int)v : -EINVAL;
}

static int resolve_tcp(const char *spec, bool passive, mproc__addr *out, int max)
{
    const char *colon = strrchr(spec, ':');
    if (!colon || colon[1] == '\0') return -EINVAL;
    char host[256], port[32];
    size_t hl = (size_t)(colon - spec);
    if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') {
        spec++;
        hl -= 2;
    }
    if (hl >= sizeof host || parse_port(colon + 1) < 0) return -EINVAL;
    memcpy(host, spec, hl);
    host[hl] = '\0';
    snprintf(port, sizeof port, "%s", colon + 1);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    struct addrinfo *res;
    int e = getaddrinfo(hl ? host : NULL, port, &hints, &res);
    if (e != 0) return gai_code(e);
    int n = 0;
    for (struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof out[n].sa) continue;
        memset(&out[n], 0, sizeof out[n]);
        out[n].family = ai->ai_family;
        out[n].len = ai->ai_addrlen;
        memcpy(&out[n].sa, ai->ai_addr, ai->ai_addrlen);
        n++;
    }
    freeaddrinfo(res);
    return n > 0 ? n : -EADDRNOTAVAIL;
}

int mproc__address_resolve(const char *address, bool passive, mproc__addr *out, int max)
{
    if (!address || !out || max < 1) return -EINVAL;
    if (strncmp(address, "unix:", 5) == 0) return resolve_unix(address + 5, out);
    if (strncmp(address, "tcp:", 4) == 0) return resolve_tcp(address + 4, passive, out, max);
    return -EINVAL;
}

int mproc__address_format_tcp(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    char host[INET6_ADDRSTRLEN];
    int port;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(buf, cap, "tcp:%s:%d", host, port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(buf, cap, "tcp:[%s]:%d", host, port);
    } else {
        return -EAFNOSUPPORT;
    }
    return 0;
}
