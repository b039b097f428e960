/* MPROC_LOG_CONFIG: the set-up of a log as one environment variable, so that a program started
 * by exec joins the same log. Format: `key=value;key=value;...`, values percent-encoded where
 * they hold '%', ';', '=' or control characters. Keys (unknown ones are ignored):
 *   v=1  app  author  dir (absolute; empty: no file)  console (level)  file (level)
 *   max (max_bytes)  backups (backup_count)  json (0/1)  ring (ring_lines)
 * Levels are the resolved numbers (1000 = off), so the verbose flag is not needed. A value out
 * of range is refused, not taken as "default" (0 means default in mproc_log_config), and the
 * reason (key, value, what is allowed) is kept for the one report mproc_log_init_from_env makes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"

static void put_value(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '%' || *p == ';' || *p == '=' || *p < 0x20 || *p == 0x7f)
            fprintf(f, "%%%02X", *p);
        else
            fputc(*p, f);
    }
}

char *mproc__log_env_encode(void)
{
    mproc__log_state *S = &mproc__log;
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f) return NULL;
    fputs("v=1;app=", f);
    put_value(f, S->app);
    fputs(";author=", f);
    put_value(f, S->author);
    fputs(";dir=", f);
    put_value(f, S->path ? S->dir : "");
    fprintf(f, ";console=%d;file=%d;max=%zu;backups=%d;json=%d;ring=%zu", S->console_level,
            S->path ? S->file_level : MPROC_LOG_OFF, S->max_bytes, S->backup_count, S->json ? 1 : 0,
            S->ring_lines);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode the value [s, e) into out (cap bytes). */
static int get_value(const char *s, const char *e, char *out, size_t cap)
{
    size_t n = 0;
    while (s < e) {
        int c = (unsigned char)*s++;
        if (c == '%') {
            if (e - s < 2 || hexval(s[0]) < 0 || hexval(s[1]) < 0) return -EINVAL;
            c = hexval(s[0]) << 4 | hexval(s[1]);
            s += 2;
            if (c == 0) return -EINVAL;
        }
        if (n + 1 >= cap) return -EINVAL;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return 0;
}

static int get_ll(const char *s, const char *e, long long lo, unsigned long long hi, long long *v)
{
    char buf[32];
    if (e - s <= 0 || (size_t)(e - s) >= sizeof buf) return -EINVAL;
    memcpy(buf, s, (size_t)(e - s));
    buf[e - s] = '\0';
    /* Digits only (strtoull would take " 5", "+5", and "-1" as ULLONG_MAX). */
    if (!(buf[0] == '-' || (buf[0] >= '0' && buf[0] <= '9'))) return -EINVAL;
    char *end;
    errno = 0;
    if (buf[0] == '-') {
        long long x = strtoll(buf, &end, 10);
        if (errno || *end || x < lo) return -EINVAL;
        *v = x;
    } else {
        unsigned long long x = strtoull(buf, &end, 10);
        if (errno || *end || x > hi || (lo > 0 && x < (unsigned long long)lo)) return -EINVAL;
        *v = (long long)x; /* SIZE_MAX wraps to -1 and back below */
    }
    return 0;
}

/* Why the decode failed, for the report. */
static int refuse(mproc__log_env_cfg *out, const char *what, const char *s, const char *e,
                  const char *allowed)
{
    snprintf(out->err, sizeof out->err, "%s '%.*s'%s%s", what, (int)(e - s > 64 ? 64 : e - s), s,
             allowed ? "; allowed: " : "", allowed ? allowed : "");
    return -EINVAL;
}

int mproc__log_env_decode(const char *s, mproc__log_env_cfg *out)
{
    memset(out, 0, sizeof *out);
    mproc_log_config *c = &out->cfg;
    c->app_name = out->app;
    c->author = out->author;
    c->log_dir = out->dir;
    c->file_level = MPROC_LOG_OFF;
    bool version = false;
    while (*s) {
        const char *end = strchr(s, ';');
        if (!end) end = s + strlen(s);
        const char *eq = memchr(s, '=', (size_t)(end - s));
        if (!eq) return refuse(out, "not key=value:", s, end, NULL);
        size_t klen = (size_t)(eq - s);
        const char *v = eq + 1;
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(s, k, klen) == 0)
        long long x = 0;
        int r = 0;
        const char *allowed = NULL;
        if (KEY("v")) {
            r = get_ll(v, end, 1, 1, &x);
            version = true;
            allowed = "1";
        } else if (KEY("app")) {
            r = get_value(v, end, out->app, sizeof out->app);
            allowed = "a string of at most 63 bytes, %XX-encoded";
        } else if (KEY("author")) {
            r = get_value(v, end, out->author, sizeof out->author);
            allowed = "a string of at most 63 bytes, %XX-encoded";
        } else if (KEY("dir")) {
            r = get_value(v, end, out->dir, sizeof out->dir);
            allowed = "a path of at most 4095 bytes, %XX-encoded";
        } else if (KEY("console")) {
            r = get_ll(v, end, 1, MPROC_LOG_OFF, &x);
            c->console_level = (int)x;
            allowed = "a level 1..1000 (1000: off)";
        } else if (KEY("file")) {
            r = get_ll(v, end, 1, MPROC_LOG_OFF, &x);
            c->file_level = (int)x;
            allowed = "a level 1..1000 (1000: off)";
        } else if (KEY("max")) {
            r = get_ll(v, end, 1, SIZE_MAX, &x);
            c->max_bytes = (size_t)(unsigned long long)x;
            allowed = "bytes, 1 or more";
        } else if (KEY("backups")) {
            r = get_ll(v, end, -1, 1000000, &x);
            c->backup_count = (int)x;
            allowed = "-1..1000000";
        } else if (KEY("json")) {
            r = get_ll(v, end, 0, 1, &x);
            c->json = x != 0;
            allowed = "0 or 1";
        } else if (KEY("ring")) {
            r = get_ll(v, end, 0, (size_t)1 << 16, &x);
            c->ring_lines = (size_t)x;
            allowed = "0..65536";
        }
#undef KEY
        if (r < 0) {
            char what[48];
            snprintf(what, sizeof what, "key '%.*s' has the bad value",
                     (int)(klen > 16 ? 16 : klen), s);
            return refuse(out, what, v, end, allowed);
        }
        s = *end ? end + 1 : end;
    }
    static const char v_key[] = "v", app_key[] = "app";
    if (!version) return refuse(out, "no key", v_key, v_key + 1, "v=1");
    if (!out->app[0]) return refuse(out, "no key", app_key, app_key + 3, "a non-empty app=NAME");
    if (!out->dir[0]) c->file_level = MPROC_LOG_OFF;
    return 0;
}

void mproc__log_env_report(const mproc__log_env_cfg *e)
{
    static atomic_flag reported = ATOMIC_FLAG_INIT;
    if (atomic_flag_test_and_set(&reported)) return;
    char line[sizeof e->err + 64];
    int n = snprintf(line, sizeof line, "mproc: MPROC_LOG_CONFIG not used: %s\n", e->err);
    if (n > 0 && write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1))
        return;
}
