// Boost.Interprocess message_queue: one queue per direction, created by the parent with the
// common depth and message size, opened by name in each process; send and receive copy.
#include <boost/interprocess/ipc/message_queue.hpp>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "msg.h"

namespace bi = boost::interprocess;

namespace
{

struct names {
    std::string name[2];
};

struct end {
    bi::message_queue rx, tx;
    end(const names &n, int side)
        : rx(bi::open_only, n.name[side].c_str()), tx(bi::open_only, n.name[1 - side].c_str())
    {
    }
};

void *prepare(size_t len, size_t depth)
{
    auto *st = new names;
    try {
        for (int i = 0; i < 2; i++) {
            st->name[i] = "mproc-bench-boost-" + std::to_string(getpid()) + "-" + std::to_string(i);
            bi::message_queue::remove(st->name[i].c_str());
            bi::message_queue q(bi::create_only, st->name[i].c_str(), depth, len);
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "boost mq %zu B: %s\n", len, e.what());
        delete st;
        return nullptr;
    }
    return st;
}

void *open(void *p, int side)
{
    try {
        return new end(*static_cast<names *>(p), side);
    } catch (const std::exception &) {
        return nullptr;
    }
}

int send(void *p, const void *buf, size_t len)
{
    try {
        static_cast<end *>(p)->tx.send(buf, len, 0);
        return 0;
    } catch (const std::exception &) {
        return -1;
    }
}

const void *recv(void *p, void *buf, size_t len, size_t *got)
{
    try {
        bi::message_queue::size_type n;
        unsigned prio;
        static_cast<end *>(p)->rx.receive(buf, len, n, prio);
        *got = n;
        return buf;
    } catch (const std::exception &) {
        return nullptr;
    }
}

void close(void *p)
{
    delete static_cast<end *>(p);
}

void cleanup(void *p)
{
    auto *st = static_cast<names *>(p);
    for (auto &n : st->name)
        bi::message_queue::remove(n.c_str());
    delete st;
}

} // namespace

int main()
{
    static const peer_msg_ops boost_ops = {"boost mq", prepare, open, send, recv, close, cleanup};
    const peer_msg_ops *ops[] = {&boost_ops};
    return peer_msg_main(ops, 1);
}
