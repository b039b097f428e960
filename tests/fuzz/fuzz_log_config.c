/* MPROC_LOG_CONFIG (src/log/env.c), `key=value;...` with %XX-encoded values.
 *
 * Input: the variable's text (a NUL ends it). Properties: it is refused with a reason, or taken
 * with every value the text gives in its allowed range (the historical bug: "console=0",
 * "max=0" were taken, and 0 then meant "the default" rather than an error); the app name is
 * non-empty; and what was taken, written back in the format with the reference encoder here,
 * decodes to the same set-up (the encoding is lossless). */
#include <errno.h>
#include <stdint.h>

#include "fuzz_util.h"
#include "log/log.h"

/* The value of the last `key=` segment, or NULL. */
static const char *last_value(const char *text, const char *key, size_t *len)
{
    const char *found = NULL;
    size_t klen = strlen(key);
    for (const char *s = text; *s;) {
        const char *end = strchr(s, ';');
        if (!end) end = s + strlen(s);
        if ((size_t)(end - s) > klen && memcmp(s, key, klen) == 0 && s[klen] == '=') {
            found = s + klen + 1;
            *len = (size_t)(end - found);
        }
        s = *end ? end + 1 : end;
    }
    return found;
}

static void put(char **p, const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '%' || *c == ';' || *c == '=' || *c < 0x20 || *c == 0x7f)
            *p += sprintf(*p, "%%%02X", *c);
        else
            *(*p)++ = (char)*c;
    }
}

static void same(const mproc__log_env_cfg *a, const mproc__log_env_cfg *b)
{
    FUZZ_CHECK(strcmp(a->app, b->app) == 0 && strcmp(a->author, b->author) == 0 &&
                   strcmp(a->dir, b->dir) == 0,
               "strings changed in the round trip");
    const mproc_log_config *x = &a->cfg, *y = &b->cfg;
    FUZZ_CHECK(x->console_level == y->console_level && x->file_level == y->file_level &&
                   x->max_bytes == y->max_bytes && x->backup_count == y->backup_count &&
                   x->json == y->json && x->ring_lines == y->ring_lines,
               "numbers changed in the round trip");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192) return 0;
    char *text = malloc(size + 1);
    FUZZ_CHECK(text != NULL, "malloc");
    memcpy(text, data, size);
    text[size] = '\0';
    static mproc__log_env_cfg cfg, again;
    int r = mproc__log_env_decode(text, &cfg);
    FUZZ_CHECK(r == 0 || r == -EINVAL, "decode returned %d", r);
    if (r < 0) {
        FUZZ_CHECK(cfg.err[0] != '\0', "refused without a reason");
        free(text);
        return 0;
    }
    const mproc_log_config *c = &cfg.cfg;
    size_t len;
    FUZZ_CHECK(cfg.app[0] != '\0', "taken without an app name");
    if (last_value(text, "console", &len))
        FUZZ_CHECK(c->console_level >= 1 && c->console_level <= MPROC_LOG_OFF, "console=%d",
                   c->console_level);
    if (last_value(text, "file", &len) && cfg.dir[0])
        FUZZ_CHECK(c->file_level >= 1 && c->file_level <= MPROC_LOG_OFF, "file=%d", c->file_level);
    if (last_value(text, "max", &len)) FUZZ_CHECK(c->max_bytes >= 1, "max=%zu", c->max_bytes);
    if (last_value(text, "backups", &len))
        FUZZ_CHECK(c->backup_count >= -1 && c->backup_count <= 1000000, "backups=%d",
                   c->backup_count);
    if (last_value(text, "ring", &len))
        FUZZ_CHECK(c->ring_lines <= 65536, "ring=%zu", c->ring_lines);
    if (!cfg.dir[0]) FUZZ_CHECK(c->file_level == MPROC_LOG_OFF, "a file level without a dir");

    /* Write it back and read it again. */
    char *enc = malloc(3 * (sizeof cfg.app + sizeof cfg.author + sizeof cfg.dir) + 256);
    FUZZ_CHECK(enc != NULL, "malloc");
    char *p = enc;
    p += sprintf(p, "v=1;app=");
    put(&p, cfg.app);
    p += sprintf(p, ";author=");
    put(&p, cfg.author);
    p += sprintf(p, ";dir=");
    put(&p, cfg.dir);
    p += sprintf(p, ";json=%d", c->json ? 1 : 0);
    /* 0 is "not given" in the set-up, and may not be written */
    if (c->console_level) p += sprintf(p, ";console=%d", c->console_level);
    if (c->file_level) p += sprintf(p, ";file=%d", c->file_level);
    if (c->max_bytes) p += sprintf(p, ";max=%zu", c->max_bytes);
    if (c->backup_count) p += sprintf(p, ";backups=%d", c->backup_count);
    if (c->ring_lines) p += sprintf(p, ";ring=%zu", c->ring_lines);
    r = mproc__log_env_decode(enc, &again);
    FUZZ_CHECK(r == 0, "its own encoding '%s' refused: %s", enc, again.err);
    same(&cfg, &again);
    free(enc);
    free(text);
    return 0;
}
