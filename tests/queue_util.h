/* Helpers shared by the queue suites, test_queue.c (the API, order, blocking, sizes) and
 * test_queue_recovery.c (processes killed inside a put or a get): arena accounting and
 * self-checking messages. */
#ifndef MPROC_TESTS_QUEUE_UTIL_H
#define MPROC_TESTS_QUEUE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <mproc.h>

/* Bytes of the arena in use now (mproc__arena_get_stats). */
size_t arena_in_use(void);
/* n pseudo-random bytes from seed, the same for the same seed. */
void fill(unsigned char *b, size_t n, uint64_t seed);

typedef struct {
    uint32_t producer;
    uint32_t len;
    uint64_t seq;
    uint64_t sum;
} msg_hdr;

/* A message: header, then payload bytes from the seed (producer, seq); sum covers both. Writes
 * sizeof(msg_hdr) + payload bytes to buf and returns that length. */
size_t make_msg(unsigned char *buf, uint32_t producer, uint64_t seq, size_t payload);
/* 0 if intact, and then *h is its header. */
int check_msg(const unsigned char *buf, size_t len, msg_hdr *h);

/* 0 if one message of budget bytes goes in and comes out of the empty q at once: after kills,
 * nothing of the byte budget leaked with the dead. */
int queue_budget_round_trip(mproc_queue *q, size_t budget);

#endif
