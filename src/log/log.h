/* Logging internals shared by log.c (records and sinks), format.c (text and JSON lines),
 * rotate.c (the file and its rotation), ring.c (the family ring), env.c
 * (MPROC_LOG_CONFIG). */
#ifndef MPROC_LOG_LOG_H
#define MPROC_LOG_LOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mproc/log.h"

#define MPROC__LOG_APP_MAX 64
#define MPROC__LOG_DEFAULT_MAX_BYTES ((size_t)100 << 20)
#define MPROC__LOG_DEFAULT_BACKUPS 3
/* How often a process checks, by path, whether its file was replaced from outside its family
 * (a program joined through MPROC_LOG_CONFIG rotated it). Inside the family the generation
 * counter tells at once. */
#define MPROC__LOG_RECHECK_NS 200000000LL
/* Longest published set-up (MPROC_LOG_CONFIG text). */
#define MPROC__LOG_CONFIG_MAX 16384

/* Family-wide file state, in the arena (one per family: MPROC__ARENA_ROOT_LOG). */
typedef struct {
    uint32_t magic;
    pthread_mutex_t mu;            /* robust, process-shared: serialises rotation */
    _Atomic uint64_t gen;          /* bumped by every switch to a new file */
    _Atomic uint64_t bytes;        /* estimate of the current file's size */
    _Atomic uint32_t err_reported; /* a write error was reported and none succeeded since */
    /* The set-up published by the last mproc_log_init of the family, for processes that did not
     * inherit it by fork (forkserver children, processes started before it): they adopt it at
     * their next record. cfg (MPROC_LOG_CONFIG format) is written and read under mu. */
    _Atomic uint64_t cfg_gen; /* 0: nothing published */
    struct mproc__log_ring *_Atomic ring;
    char cfg[MPROC__LOG_CONFIG_MAX];
} mproc__log_family;

typedef struct mproc__log_ring mproc__log_ring;

/* This process's set-up; a fork child inherits it whole (fd included). */
typedef struct {
    bool active; /* mproc_log_init done */
    char app[MPROC__LOG_APP_MAX];
    char author[MPROC__LOG_APP_MAX];
    bool verbose, json;
    int console_level, file_level; /* resolved; MPROC_LOG_OFF for none */
    size_t max_bytes;
    int backup_count;
    size_t ring_lines;
    void (*on_error)(const mproc_log_record *, void *);
    void *arg;
    char *dir, *path;     /* path NULL: no file */
    int fd;               /* the file, or -1 */
    _Atomic uint64_t gen; /* file generation of our fd */
    uint64_t cfg_gen;     /* published set-up we follow */
    _Atomic int64_t next_check_ns;
    mproc__log_family *family;
    mproc__log_ring *ring;
} mproc__log_state;

extern mproc__log_state mproc__log;

/* A growing view into a fixed buffer. */
typedef struct {
    char *p;
    size_t len, cap;
} mproc__log_buf;

/* format.c */
typedef struct {
    struct timespec ts;
    char time_text[40];
    const char *app, *process, *file, *func, *level_name;
    pid_t pid;
    int line;
    const char *msg; /* raw message */
    size_t msg_len;  /* bytes in msg */
    size_t full_len; /* length before any cut */
} mproc__log_fields;
void mproc__log_time_text(const struct timespec *ts, char *out, size_t cap);
/* Text line with '\n'; returns its length (<= cap, cap <= MPROC_LOG_RECORD_MAX). */
size_t mproc__log_format_text(const mproc__log_fields *f, char *out, size_t cap);
size_t mproc__log_format_json(const mproc__log_fields *f, char *out, size_t cap);

/* rotate.c */
mproc__log_family *mproc__log_family_get(void);
/* The family's state if the arena exists and it was made; never initialises anything. */
mproc__log_family *mproc__log_family_peek(void);
void mproc__log_family_lock(mproc__log_family *f);
/* Open (create) path for appending and adopt it as this process's file: 0 or -errno. */
int mproc__log_open_file(void);
/* Write one record to the file, switching or rotating first when needed. */
void mproc__log_file_write(const char *buf, size_t n, int64_t now_ns);
/* mkdir -p; 0 or -errno. */
int mproc__log_mkdirs(const char *dir);

/* ring.c */
int mproc__log_ring_new(mproc__log_ring **out, size_t lines);
void mproc__log_ring_push(mproc__log_ring *r, const char *line, size_t len);

/* env.c */
/* Serialise the current set-up for MPROC_LOG_CONFIG; malloc'd, or NULL. */
char *mproc__log_env_encode(void);
/* MPROC_LOG_CONFIG parsed: a config whose strings point into the buffers beside it. */
typedef struct {
    mproc_log_config cfg;
    char app[MPROC__LOG_APP_MAX], author[MPROC__LOG_APP_MAX];
    char dir[4096];
    char err[192]; /* after -EINVAL: what was wrong (key, value, what is allowed) */
} mproc__log_env_cfg;
int mproc__log_env_decode(const char *s, mproc__log_env_cfg *out);
/* Say once per process, on stderr, why MPROC_LOG_CONFIG was refused (there is no log to say it
 * in). */
void mproc__log_env_report(const mproc__log_env_cfg *e);

/* log.c: for a higher layer that sends records to another process's log (pool/remote/serve.c):
 * called with every record at WARNING and above, in the process that logs it (inherited by its
 * fork children); true when it took the record, which then skips this process's console. */
extern bool (*mproc__log_forward)(int level, const char *process, pid_t pid, const char *file,
                                  int line, const char *func, const char *msg, size_t len);
/* ... and the other end: write a record that another process logged, under its name and pid. */
void mproc__log_write_as(int level, const char *process, pid_t pid, const char *file, int line,
                         const char *func, const char *msg, size_t len);

/* log.c: one record to stderr whatever the console level (the logger's own warnings). */
void mproc__log_internal(int level, const char *file, int line, const char *func, const char *fmt,
                         ...) __attribute__((format(printf, 5, 6)));
#define MPROC__LOG_SELF(level, ...)                                                                \
    mproc__log_internal(level, __FILE__, __LINE__, __func__, __VA_ARGS__)

#endif
