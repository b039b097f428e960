/* The message workloads every IPC peer runs (bench/peers/README.md): throughput of 1 producer ->
 * 1 consumer process at each size, and the 64 B ping-pong round trip. A peer is a table of
 * operations; the driver forks the two processes, stamps and checks every message, times, and
 * prints the ROW lines of bench/run.py. C and C++ (the Boost peer) both include this header. */
#ifndef MPROC_BENCH_PEERS_MSG_H
#define MPROC_BENCH_PEERS_MSG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PEER_MSG_NSIZES 7
extern const size_t peer_msg_sizes[PEER_MSG_NSIZES];
#define PEER_PING_SIZE 64
#define PEER_PINGS 20000
#define PEER_PING_WARMUP 1000

/* Queue depth in messages where a peer has one: 1024 (mproc's default) up to 8 MiB in flight. */
size_t peer_msg_depth(size_t len);
/* Messages per throughput run at most: about 256 MiB, at most 2 M, at least 256 (a run also
 * aims at about 0.25 s, from a probe of 1000 messages). */
long peer_msg_count(size_t len);
/* The workload names shared by mproc and every peer. */
void peer_msg_workload(char *buf, size_t cap, size_t len);
#define PEER_PING_WORKLOAD "messages ping-pong 64 B round trip"

/* A message carries its sequence number at the start of every 4 KiB and in its last 8 bytes; the
 * rest is a fixed pattern. peer_msg_init fills buf with the pattern once; peer_msg_stamp writes the
 * numbers; peer_msg_check compares everything (length, numbers, pattern) and exits the process
 * with code 3 on a mismatch. */
void peer_msg_init(void *buf, size_t len);
void peer_msg_stamp(void *buf, size_t len, uint64_t seq);
void peer_msg_check(const void *msg, size_t got, size_t len, uint64_t seq);

double peer_now(void);
/* The ROW line of bench/run.py. */
void peer_row(const char *workload, const char *impl, double value, const char *unit,
              const char *better);

typedef struct peer_msg_ops {
    const char *impl; /* the row's impl column */
    /* In the parent, before the two processes start: names, descriptors, shared memory for two
     * channels, 0 (side 1 -> side 0) and 1 (side 0 -> side 1), of messages of len bytes at most,
     * depth deep. NULL: this peer cannot run here (a line on stderr says why). */
    void *(*prepare)(size_t len, size_t depth);
    /* In a child: side 0 is the consumer / ponger (it binds where a peer binds), side 1 the
     * producer / pinger. NULL on failure. */
    void *(*open)(void *st, int side);
    int (*send)(void *h, const void *buf, size_t len); /* 0 or -1 */
    /* One message into buf (len bytes of room) or in the peer's own memory; returns where the
     * message is (valid until the next recv or close) and its size in *got, NULL on failure. */
    const void *(*recv)(void *h, void *buf, size_t len, size_t *got);
    void (*close)(void *h);
    void (*cleanup)(void *st); /* in the parent, after both processes ended */
} peer_msg_ops;

/* Runs every size and the ping-pong for each peer, in order, and prints the rows. 0. */
int peer_msg_main(const peer_msg_ops *const *ops, int n);

#ifdef __cplusplus
}
#endif

#endif
