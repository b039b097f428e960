/* Formatting a record: the ISO 8601 time, the text line (message escaped onto one line) and the
 * JSON line. Everything is bounded by the caller's buffer: a message that does not fit is cut at
 * a character boundary and marked, so a record is always one line of at most cap bytes. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log/log.h"

/* The marker that ends a cut message; room for it is kept when cutting. */
#define CUT_FMT "... [cut: %zu bytes]"
#define CUT_ROOM 48

/* Local time changes only on whole seconds (zone transitions included), so the broken-down part
 * is computed once a second per thread. */
static _Thread_local struct {
    time_t sec;
    bool valid;
    char date[24]; /* 2026-11-25T13:51:49 */
    char off[8];   /* +00:00 */
} tcache;

void mproc__log_time_text(const struct timespec *ts, char *out, size_t cap)
{
    if (!tcache.valid || tcache.sec != ts->tv_sec) {
        struct tm tm;
        time_t t = ts->tv_sec;
        if (!localtime_r(&t, &tm)) gmtime_r(&t, &tm);
        strftime(tcache.date, sizeof tcache.date, "%Y-%m-%dT%H:%M:%S", &tm);
        long off = tm.tm_gmtoff;
        char sign = off < 0 ? '-' : '+';
        if (off < 0) off = -off;
        snprintf(tcache.off, sizeof tcache.off, "%c%02ld:%02ld", sign, off / 3600 % 100,
                 off % 3600 / 60);
        tcache.sec = ts->tv_sec;
        tcache.valid = true;
    }
    snprintf(out, cap, "%s.%06ld%s", tcache.date, ts->tv_nsec / 1000, tcache.off);
}

/* Length of the well-formed UTF-8 sequence at s (n bytes available), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (len > n) return 0;
    uint32_t cp = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

static bool put(mproc__log_buf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) return false;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return true;
}

static bool puts_(mproc__log_buf *b, const char *s)
{
    return put(b, s, strlen(s));
}

/* One character of a message as it appears in a text line. */
static size_t text_escape_one(const unsigned char *s, size_t n, char *out, size_t *used)
{
    unsigned char c = s[0];
    if (c >= 0x80) {
        size_t l = utf8_len(s, n);
        if (l == 0) l = 1; /* not UTF-8: the text sink passes bytes through */
        memcpy(out, s, l);
        *used = l;
        return l;
    }
    *used = 1;
    if (c == '\n') return (size_t)sprintf(out, "\\n");
    if (c == '\r') return (size_t)sprintf(out, "\\r");
    if ((c < 0x20 && c != '\t') || c == 0x7f) return (size_t)sprintf(out, "\\x%02x", c);
    out[0] = (char)c;
    return 1;
}

/* One character of a JSON string; malformed UTF-8 becomes U+FFFD so the line stays valid JSON. */
static size_t json_escape_one(const unsigned char *s, size_t n, char *out, size_t *used)
{
    unsigned char c = s[0];
    *used = 1;
    if (c >= 0x80) {
        size_t l = utf8_len(s, n);
        if (l == 0) return (size_t)sprintf(out, "\\ufffd");
        memcpy(out, s, l);
        *used = l;
        return l;
    }
    switch (c) {
    case '"':
        return (size_t)sprintf(out, "\\\"");
    case '\\':
        return (size_t)sprintf(out, "\\\\");
    case '\n':
        return (size_t)sprintf(out, "\\n");
    case '\r':
        return (size_t)sprintf(out, "\\r");
    case '\t':
        return (size_t)sprintf(out, "\\t");
    default:
        if (c < 0x20 || c == 0x7f) return (size_t)sprintf(out, "\\u%04x", c);
        out[0] = (char)c;
        return 1;
    }
}

typedef size_t (*escape_fn)(const unsigned char *s, size_t n, char *out, size_t *used);

/* Append the escaped message, leaving `tail` bytes free after it. When it does not fit (or was
 * already cut by the caller: full_len > n), stop at a character boundary and add the marker. */
static void put_message(mproc__log_buf *b, const char *msg, size_t n, size_t full_len, size_t tail,
                        escape_fn esc)
{
    const unsigned char *s = (const unsigned char *)msg;
    size_t start = b->len, i = 0;
    char tmp[8];
    /* First pass: everything, if it fits. */
    while (i < n) {
        size_t used, k = esc(s + i, n - i, tmp, &used);
        if (b->len + k + tail > b->cap) break;
        memcpy(b->p + b->len, tmp, k);
        b->len += k;
        i += used;
    }
    if (i == n && full_len <= n) return;
    /* Cut: redo with room for the marker. */
    b->len = start;
    i = 0;
    while (i < n) {
        size_t used, k = esc(s + i, n - i, tmp, &used);
        if (b->len + k + tail + CUT_ROOM > b->cap) break;
        memcpy(b->p + b->len, tmp, k);
        b->len += k;
        i += used;
    }
    char mark[CUT_ROOM];
    int m = snprintf(mark, sizeof mark, CUT_FMT, full_len);
    put(b, mark, (size_t)m);
}

size_t mproc__log_format_text(const mproc__log_fields *f, char *out, size_t cap)
{
    mproc__log_buf b = {out, 0, cap};
    char head[1024];
    int h = snprintf(head, sizeof head, "%s - %.64s - %.64s - %.200s - %d - %.200s - %s - ",
                     f->time_text, f->app, f->process, f->file, f->line, f->func, f->level_name);
    if (h < 0) h = 0;
    put(&b, head, (size_t)h < sizeof head ? (size_t)h : sizeof head - 1);
    put_message(&b, f->msg, f->msg_len, f->full_len, 1, text_escape_one);
    put(&b, "\n", 1);
    return b.len;
}

static void json_str(mproc__log_buf *b, const char *key, const char *s, size_t n, size_t full,
                     size_t tail)
{
    puts_(b, "\"");
    puts_(b, key);
    puts_(b, "\":\"");
    put_message(b, s, n, full, tail, json_escape_one);
    puts_(b, "\"");
}

size_t mproc__log_format_json(const mproc__log_fields *f, char *out, size_t cap)
{
    mproc__log_buf b = {out, 0, cap};
    char num[32];
    /* Short fields are bounded well below cap, so only the message can be cut. */
    const size_t small = 256;
    puts_(&b, "{");
    json_str(&b, "time", f->time_text, strlen(f->time_text), 0, small);
    puts_(&b, ",");
    json_str(&b, "app", f->app, strnlen(f->app, 64), 0, small);
    puts_(&b, ",");
    json_str(&b, "process", f->process, strnlen(f->process, 64), 0, small);
    snprintf(num, sizeof num, ",\"pid\":%d,", (int)f->pid);
    puts_(&b, num);
    json_str(&b, "file", f->file, strnlen(f->file, 200), 0, small);
    snprintf(num, sizeof num, ",\"line\":%d,", f->line);
    puts_(&b, num);
    json_str(&b, "func", f->func, strnlen(f->func, 200), 0, small);
    puts_(&b, ",");
    json_str(&b, "level", f->level_name, strlen(f->level_name), 0, small);
    puts_(&b, ",");
    json_str(&b, "message", f->msg, f->msg_len, f->full_len, 3);
    puts_(&b, "}\n");
    return b.len;
}
