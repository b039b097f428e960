/* Managers: a server started by the test (a family member), and programs outside the family
 * (tests/manager_peer.c, exec'd) using its objects through proxies over unix and loopback TCP, or
 * mapping its arena over unix (manager/share.c). */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "manager/client.h"
#include "manager/protocol.h"
#include "tool_util.h"

extern char **environ;

static const char *unique_unix(void)
{
    static char buf[96];
    static int n;
    snprintf(buf, sizeof buf, "unix:@mproc-test-manager-%d-%d", (int)getpid(), n++);
    return buf;
}

/* How the peers exec'd from here on meet the objects: through proxies (MPROC_MANAGER_MAP=0), or
 * with the server's arena mapped (the default, checked by the peer: PEER_EXPECT_MAPPED). */
static void peers_map(bool yes)
{
    setenv("MPROC_MANAGER_MAP", yes ? "1" : "0", 1);
    setenv("PEER_EXPECT_MAPPED", yes ? "1" : "0", 1);
}

/* The peer program at path (MANAGER_PEER, or the foreign build's). */
static pid_t spawn_peer_at(const char *path, const char *address, const char *key,
                           const char *scenario, const char *arg)
{
    char *argv[] = {(char *)path,     (char *)address, (char *)(key ? key : "-"),
                    (char *)scenario, (char *)arg,     NULL};
    pid_t pid;
    CHECK_EQ(posix_spawn(&pid, path, NULL, NULL, argv, environ), 0);
    return pid;
}

static pid_t spawn_peer(const char *address, const char *key, const char *scenario, const char *arg)
{
    return spawn_peer_at(MANAGER_PEER, address, key, scenario, arg);
}

static int wait_peer(pid_t pid)
{
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

static int run_peer(const char *address, const char *key, const char *scenario, const char *arg)
{
    return wait_peer(spawn_peer(address, key, scenario, arg));
}

TEST(every_type_through_a_proxy_unix)
{
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    peers_map(false);
    CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "all", NULL), 0);
    mproc_manager_free(m);
}

/* A client of another build (another library build id) keeps proxies: arena objects are only the
 * same build's (manager/share.c). The peer checks it did not map; without the check it would. */
TEST(a_client_of_another_build_does_not_map)
{
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    peers_map(true);
    setenv("PEER_EXPECT_MAPPED", "0", 1);
    pid_t pid = spawn_peer_at(MANAGER_PEER_FOREIGN, mproc_manager_address(m), NULL, "all", NULL);
    CHECK_EQ(wait_peer(pid), 0);
    mproc_manager_free(m);
    /* the same build, a server like it: mapped */
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    setenv("PEER_EXPECT_MAPPED", "1", 1);
    CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "all", NULL), 0);
    mproc_manager_free(m);
}

TEST(every_type_with_the_arena_mapped_unix)
{
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    peers_map(true);
    CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "all", NULL), 0);
    CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "init", NULL), 0);
    peers_map(false);
    CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "init", NULL), 0);
    peers_map(true);
    /* with a key too: the handshake first, then the arena */
    mproc_manager *k;
    CHECK_OK(mproc_manager_start(&k, unique_unix(), "k", 1, NULL));
    CHECK_EQ(run_peer(mproc_manager_address(k), "k", "all", NULL), 0);
    mproc_manager_free(k);
    mproc_manager_free(m);
}

/* Who may map it: the server's policy (options; its environment: the_command_takes_a_share_policy),
 * and the client's opt-out.
 * Refused, the peer silently gets proxies, which work. */
TEST(sharing_the_arena_follows_the_policy)
{
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0,
                                 &(mproc_manager_opts){.share_arena = MPROC_MANAGER_SHARE_NONE}));
    setenv("PEER_EXPECT_MAPPED", "0", 1);
    unsetenv("MPROC_MANAGER_MAP");
    CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "all", NULL), 0);
    mproc_manager_free(m);
    CHECK_OK(
        mproc_manager_start(&m, unique_unix(), NULL, 0,
                            &(mproc_manager_opts){.share_arena = MPROC_MANAGER_SHARE_ANY_USER}));
    setenv("PEER_EXPECT_MAPPED", "1", 1);
    CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "all", NULL), 0);
    mproc_manager_free(m);
    mproc_manager_opts bad = {.share_arena = 99};
    CHECK_RC(mproc_manager_start(&m, unique_unix(), NULL, 0, &bad), -EINVAL);
}

/* same-user, the default: a peer of another user id gets proxies; any-user lets it map. */
static int run_peer_as(uid_t uid, const char *address, const char *expect)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setenv("PEER_EXPECT_MAPPED", expect, 1);
        unsetenv("MPROC_MANAGER_MAP");
        if (setgid(uid) < 0 || setuid(uid) < 0) _exit(3);
        char *argv[] = {(char *)MANAGER_PEER, (char *)address, "-", "all", NULL};
        execve(MANAGER_PEER, argv, environ);
        _exit(4);
    }
    return wait_peer(pid);
}

TEST(another_user_gets_proxies_unless_any_user)
{
    if (geteuid() != 0) harness_skip("needs root, to run the peer as another user");
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    CHECK_EQ(run_peer_as(65534, mproc_manager_address(m), "0"), 0);
    mproc_manager_free(m);
    CHECK_OK(
        mproc_manager_start(&m, unique_unix(), NULL, 0,
                            &(mproc_manager_opts){.share_arena = MPROC_MANAGER_SHARE_ANY_USER}));
    CHECK_EQ(run_peer_as(65534, mproc_manager_address(m), "1"), 0);
    mproc_manager_free(m);
}

/* A peer in another pid namespace gets proxies: pids (robust mutex owners, the process layer's
 * liveness checks) mean other processes there. */
TEST(another_pid_namespace_gets_proxies)
{
    if (geteuid() != 0) harness_skip("needs root, for a pid namespace");
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWPID) < 0) _exit(errno == EPERM || errno == EINVAL ? 77 : 3);
        setenv("PEER_EXPECT_MAPPED", "0", 1);
        unsetenv("MPROC_MANAGER_MAP");
        pid_t inner = fork(); /* pid 1 of the new namespace */
        if (inner == 0) {
            char *argv[] = {(char *)MANAGER_PEER, (char *)mproc_manager_address(m), "-", "all",
                            NULL};
            execve(MANAGER_PEER, argv, environ);
            _exit(4);
        }
        int st;
        if (inner < 0 || waitpid(inner, &st, 0) != inner) _exit(5);
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 6);
    }
    int code = wait_peer(pid);
    mproc_manager_free(m);
    if (code == 77) harness_skip("no pid namespaces here");
    CHECK_EQ(code, 0);
}

TEST(a_mapped_peer_leaves_no_fd_or_mapping_behind)
{
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    peers_map(true);
    CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "cycles", NULL), 0);
    peers_map(false);
    CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "cycles", NULL), 0);
    mproc_manager_free(m);
}

TEST(every_type_through_a_proxy_tcp_with_key)
{
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, "tcp:127.0.0.1:0", "sekrit", 6, NULL));
    const char *a = mproc_manager_address(m);
    CHECK(strncmp(a, "tcp:127.0.0.1:", 14) == 0 && strcmp(a, "tcp:127.0.0.1:0") != 0);
    unsetenv("MPROC_MANAGER_MAP");
    setenv("PEER_EXPECT_MAPPED", "0", 1); /* tcp never maps, even on this machine */
    CHECK_EQ(run_peer(a, "sekrit", "all", NULL), 0);
    mproc_manager_free(m);
}

TEST(tcp_without_a_key_is_refused)
{
    mproc_manager *m = (mproc_manager *)1;
    CHECK_RC(mproc_manager_start(&m, "tcp:127.0.0.1:0", NULL, 0, NULL), -EINVAL);
    CHECK(m == NULL);
    CHECK_RC(mproc_manager_connect(&m, "tcp:127.0.0.1:1", NULL, 0), -EINVAL);
    CHECK_RC(mproc_manager_start(&m, NULL, NULL, 0, NULL), -EINVAL);
}

TEST(a_family_member_gets_the_arena_objects)
{
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    mproc_value *v;
    CHECK_OK(mproc_manager_value(m, "v", 8, false, &v));
    CHECK(mproc_value_ptr(v) != NULL); /* the object itself, not a proxy */
    memcpy(mproc_value_ptr(v), "12345678", 8);
    char buf[8];
    CHECK_OK(mproc_value_load(v, buf, 8)); /* load and store work on local values too */
    CHECK(memcmp(buf, "12345678", 8) == 0);
    CHECK_OK(mproc_value_store(v, "abcd", 4));
    CHECK(memcmp(mproc_value_ptr(v), "abcd5678", 8) == 0);
    CHECK_RC(mproc_value_load(v, buf, 9), -EINVAL);
    CHECK_RC(mproc_value_load(v, NULL, 1), -EINVAL);
    CHECK_RC(mproc_value_store(NULL, buf, 1), -EINVAL);
    mproc_value *again;
    CHECK_OK(mproc_manager_value(m, "v", 8, false, &again));
    CHECK(again == v);
    mproc_dict *d;
    CHECK_OK(mproc_manager_dict(m, "d", &d));
    CHECK_OK(mproc_dict_set(d, "k", 1, "v", 1));
    /* and a second connection by address from this family finds the same */
    mproc_manager *m2;
    CHECK_OK(mproc_manager_connect(&m2, mproc_manager_address(m), NULL, 0));
    mproc_dict *d2;
    CHECK_OK(mproc_manager_dict(m2, "d", &d2));
    CHECK(d2 == d);
    mproc_manager_free(m2);
    mproc_manager_free(m);
}

static void share_with_a_peer(bool map)
{
    peers_map(map);
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    mproc_dict *d;
    mproc_queue *q;
    mproc_event *go;
    CHECK_OK(mproc_manager_dict(m, "table", &d));
    CHECK_OK(mproc_manager_queue(m, "results", NULL, &q));
    CHECK_OK(mproc_manager_event(m, "go", &go));
    pid_t peer = spawn_peer(mproc_manager_address(m), NULL, "share", NULL);
    CHECK_OK(mproc_dict_set(d, "from-family", 11, "yes", 3));
    CHECK_OK(mproc_event_set(go)); /* directly in the arena: the server sees it on its tick */
    char buf[16];
    size_t len;
    CHECK_OK(mproc_queue_get(q, buf, sizeof buf, &len, 20.0));
    CHECK(len == 4 && memcmp(buf, "done", 4) == 0);
    CHECK_OK(mproc_dict_get(d, "from-outside", 12, buf, sizeof buf, &len));
    CHECK(len == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK_EQ(wait_peer(peer), 0);
    mproc_manager_free(m);
}

TEST(outside_and_family_share_a_dict_a_queue_and_an_event)
{
    share_with_a_peer(false);
    share_with_a_peer(true);
}

static void put_waits_for_room(bool map)
{
    peers_map(map);
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    mproc_queue *q;
    CHECK_OK(mproc_manager_queue(m, "one", &(mproc_queue_opts){.max_items = 1}, &q));
    pid_t peer = spawn_peer(mproc_manager_address(m), NULL, "putwait", NULL);
    char buf[4];
    size_t len;
    CHECK_OK(mproc_queue_get(q, buf, sizeof buf, &len, 20.0)); /* directly in the arena */
    CHECK(len == 1 && buf[0] == 'a');
    CHECK_OK(mproc_queue_get(q, buf, sizeof buf, &len, 20.0)); /* the parked put's */
    CHECK(len == 1 && buf[0] == 'b');
    CHECK_EQ(wait_peer(peer), 0);
    mproc_manager_free(m);
}

TEST(a_parked_put_completes_when_the_family_makes_room)
{
    put_waits_for_room(false);
    put_waits_for_room(true); /* mapped: the put waits in the arena, not parked */
}

static void calls_time_out(bool map)
{
    peers_map(map);
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    mproc_lock *l;
    CHECK_OK(mproc_manager_lock(m, "tl", &l));
    CHECK_OK(mproc_lock_acquire(l, 0)); /* held here, in the arena */
    CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "timeouts", NULL), 0);
    CHECK_OK(mproc_lock_release(l));
    mproc_manager_free(m);
}

TEST(parked_calls_time_out)
{
    calls_time_out(false);
    calls_time_out(true);
}

TEST(an_interrupted_call_keeps_the_connection_in_step)
{
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    peers_map(false);
    CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "intr", NULL), 0);
    peers_map(true); /* mapped: the waits are the arena objects', interrupted as for any */
    CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "intr", NULL), 0);
    mproc_manager_free(m);
}

/* Proxied, the server releases the lock when the holder's connection closes; mapped, the lock is
 * the arena's robust mutex, and the kernel marks it when the holder dies. Either way the next
 * acquirer, outside or in the family, gets MPROC_EOWNERDEAD. */
static void killed_holder(bool map, bool family_acquires)
{
    peers_map(map);
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    mproc_event *held;
    CHECK_OK(mproc_manager_event(m, "held", &held));
    pid_t holder = spawn_peer(mproc_manager_address(m), NULL, "hold", NULL);
    CHECK_OK(mproc_event_wait(held, 20.0));
    kill(holder, SIGKILL);
    CHECK_EQ(wait_peer(holder), -SIGKILL);
    if (family_acquires) {
        mproc_lock *l;
        CHECK_OK(mproc_manager_lock(m, "hl", &l));
        CHECK_RC(mproc_lock_acquire(l, 10.0), MPROC_EOWNERDEAD);
        CHECK_OK(mproc_lock_release(l));
    } else {
        CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "acquire", NULL), 0);
    }
    mproc_manager_free(m);
}

TEST(a_lock_held_by_a_killed_client_is_released_with_eownerdead)
{
    killed_holder(false, false);
    killed_holder(true, false);
    killed_holder(true, true);
}

TEST(a_server_killed_mid_call_fails_the_call_cleanly)
{
    SKIP_IN_THREAD_MODE("the server is a thread: it cannot be killed or outlive its starter");
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    mproc_event *parked;
    CHECK_OK(mproc_manager_event(m, "parked", &parked));
    peers_map(false); /* a call parked in the server: a proxy's */
    pid_t peer = spawn_peer(mproc_manager_address(m), NULL, "block", NULL);
    CHECK_OK(mproc_event_wait(parked, 20.0));
    /* whether its wait is parked yet or not, the peer's call ends with -EPIPE */
    double t0 = harness_now();
    CHECK_OK(mproc_process_kill(m->server));
    CHECK_EQ(wait_peer(peer), 0);
    CHECK(harness_now() - t0 < 10.0);
    /* this side's calls fail too, at once */
    mproc_dict *d;
    CHECK_RC(mproc_manager_dict(m, "x", &d), -EPIPE);
    mproc_manager_free(m);
}

/* Mapped, the objects are memory the peer and the family share, the server's death changes
 * nothing for them; only names (lookup, creation, deletion) need it. */
TEST(mapped_objects_outlive_the_server)
{
    SKIP_IN_THREAD_MODE("the server is a thread: it cannot be killed or outlive its starter");
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    mproc_dict *d;
    mproc_event *ready, *killed;
    CHECK_OK(mproc_manager_dict(m, "kept", &d));
    CHECK_OK(mproc_manager_event(m, "ready", &ready));
    CHECK_OK(mproc_manager_event(m, "killed", &killed));
    CHECK_OK(mproc_dict_set(d, "k", 1, "v", 1));
    peers_map(true);
    pid_t peer = spawn_peer(mproc_manager_address(m), NULL, "outlive", NULL);
    CHECK_OK(mproc_event_wait(ready, 20.0));
    CHECK_OK(mproc_process_kill(m->server));
    CHECK_OK(mproc_process_join(m->server, 10.0));
    CHECK_OK(mproc_event_set(killed));
    CHECK_EQ(wait_peer(peer), 0);
    char buf[4];
    size_t len;
    CHECK_OK(mproc_dict_get(d, "from-peer", 9, buf, sizeof buf, &len));
    CHECK(len == 1 && buf[0] == 'w');
    mproc_manager_free(m);
}

TEST(reconnect_once_a_server_is_back)
{
    SKIP_IN_THREAD_MODE("the server is a thread: it cannot be killed or outlive its starter");
    const char *addr = unique_unix();
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, addr, NULL, 0, NULL));
    mproc_manager *c;
    CHECK_OK(mproc_manager_connect(&c, addr, NULL, 0));
    mproc_event *e;
    CHECK_OK(mproc_manager_event(c, "e", &e));
    CHECK_OK(mproc_process_kill(m->server));
    CHECK_OK(mproc_process_join(m->server, 10.0));
    mproc_manager_free(m);
    mproc_event *e2;
    CHECK_RC(mproc_manager_event(c, "e", &e2), -EPIPE);
    int r = mproc_manager_reconnect(c);
    CHECK(r == -ECONNREFUSED || r == -ENOENT);
    CHECK_OK(mproc_manager_start(&m, addr, NULL, 0, NULL));
    CHECK_OK(mproc_manager_reconnect(c));
    CHECK_OK(mproc_manager_event(c, "e", &e2));
    CHECK_OK(mproc_event_set(e2));
    CHECK(mproc_event_is_set(e2));
    /* and without an explicit reconnect: the next call connects */
    CHECK_OK(mproc_process_kill(m->server));
    CHECK_OK(mproc_process_join(m->server, 10.0));
    mproc_manager_free(m);
    CHECK_OK(mproc_manager_start(&m, addr, NULL, 0, NULL));
    CHECK_RC(mproc_manager_event(c, "e", &e2), -EPIPE); /* the old connection's end, once */
    CHECK_OK(mproc_manager_event(c, "e", &e2));
    CHECK(!mproc_event_is_set(e2)); /* a new server, a new object */
    mproc_manager_free(c);
    mproc_manager_free(m);
}

TEST(wrong_key_is_eauth)
{
    mproc_manager *m, *c;
    CHECK_OK(mproc_manager_start(&m, "tcp:127.0.0.1:0", "right", 5, NULL));
    CHECK_RC(mproc_manager_connect(&c, mproc_manager_address(m), "wrong", 5), MPROC_EAUTH);
    CHECK_EQ(run_peer(mproc_manager_address(m), "wrong", "wrongkey", NULL), 0);
    CHECK_OK(mproc_manager_connect(&c, mproc_manager_address(m), "right", 5));
    mproc_manager_free(c);
    mproc_manager_free(m);
}

/* A raw socket to a unix address ("unix:@name"). */
static int raw_connect(const char *address)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *name = address + 5;
    size_t n = strlen(name);
    memcpy(sa.sun_path, name, n);
    if (name[0] == '@') sa.sun_path[0] = 0;
    CHECK_EQ(connect(fd, (struct sockaddr *)&sa,
                     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)),
             0);
    return fd;
}

/* Whether the server closes fd within a few seconds (what it sent first is skipped). */
static bool closed_by_server(int fd)
{
    char buf[256];
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET)) return true;
        if (r < 0) return false;
    }
}

static void still_serves(mproc_manager *m)
{
    mproc_manager *c;
    CHECK_OK(mproc_manager_connect(&c, mproc_manager_address(m), NULL, 0));
    mproc_event *e;
    CHECK_OK(mproc_manager_event(c, "alive", &e));
    mproc_manager_free(c);
}

TEST(oversize_and_garbage_requests_close_only_that_connection)
{
    mproc_manager *m;
    mproc_manager_opts o = {.max_message = 4096};
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, &o));
    const char *a = mproc_manager_address(m);
    /* a header announcing more than max_message: refused before anything is allocated */
    int fd = raw_connect(a);
    mproc__mgr_req h = {.len = 4097, .id = 1, .op = MGR_DICT_SET, .obj = 1};
    CHECK_EQ(send(fd, &h, sizeof h, MSG_NOSIGNAL), (ssize_t)sizeof h);
    CHECK(closed_by_server(fd));
    close(fd);
    still_serves(m);
    /* garbage: random ops and ids, bodies that lie about their counts */
    fd = raw_connect(a);
    unsigned char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 7919 + 13);
    mproc__mgr_req g = {.len = 64, .id = 2, .op = MGR_DICT_SET_MANY, .obj = 0x12345};
    CHECK_EQ(send(fd, &g, sizeof g, MSG_NOSIGNAL), (ssize_t)sizeof g);
    CHECK_EQ(send(fd, junk, 64, MSG_NOSIGNAL), 64);
    mproc__mgr_rep rep;
    CHECK_EQ(recv(fd, &rep, sizeof rep, MSG_WAITALL), (ssize_t)sizeof rep);
    CHECK_EQ(rep.id, 2);
    CHECK_EQ(rep.status, -EIDRM); /* no such object: an answer, not a crash */
    CHECK_EQ(send(fd, junk, sizeof junk, MSG_NOSIGNAL), (ssize_t)sizeof junk);
    close(fd);
    still_serves(m);
    /* a request larger than the limit is refused on the client's side (a proxy's limit) */
    peers_map(false);
    CHECK_EQ(run_peer(a, NULL, "oversize", "4096"), 0);
    mproc_manager_free(m);
}

/* A raw native request on fd, and its reply (the body, up to cap bytes, into body). */
static mproc__mgr_rep raw_call(int fd, uint32_t id, uint16_t op, uint32_t obj, const void *b,
                               size_t len, void *body, size_t cap)
{
    mproc__mgr_req h = {.len = (uint32_t)len, .id = id, .op = op, .obj = obj};
    CHECK_EQ(send(fd, &h, sizeof h, MSG_NOSIGNAL), (ssize_t)sizeof h);
    if (len) CHECK_EQ(send(fd, b, len, MSG_NOSIGNAL), (ssize_t)len);
    mproc__mgr_rep rep;
    CHECK_EQ(recv(fd, &rep, sizeof rep, MSG_WAITALL), (ssize_t)sizeof rep);
    CHECK_EQ(rep.id, id);
    CHECK(rep.len <= cap);
    if (rep.len) CHECK_EQ(recv(fd, body, rep.len, MSG_WAITALL), (ssize_t)rep.len);
    return rep;
}

/* fuzz_manager_protocol found it: a value larger than max_message was loaded in one reply that
 * large, which the client's reader then refuses. */
TEST(a_value_load_over_max_message_is_refused_not_sent)
{
    mproc_manager *m;
    mproc_manager_opts o = {.max_message = 4096};
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, &o));
    int fd = raw_connect(mproc_manager_address(m));
    unsigned char open[18 + 1] = {MGR_VALUE}, out[64];
    mgr_put64(open + 1, 8192); /* the value's size */
    open[18] = 'v';
    mproc__mgr_rep rep = raw_call(fd, 1, MGR_OPEN, 0, open, sizeof open, out, sizeof out);
    CHECK_EQ(rep.status, 0);
    uint32_t obj = mgr_get32(out);
    unsigned char n[8];
    mgr_put64(n, 8192);
    rep = raw_call(fd, 2, MGR_VALUE_LOAD, obj, n, 8, out, sizeof out);
    CHECK_EQ(rep.status, -EMSGSIZE);
    CHECK_EQ(rep.len, 0);
    mgr_put64(n, 8); /* a part within the limit still loads */
    rep = raw_call(fd, 3, MGR_VALUE_LOAD, obj, n, 8, out, sizeof out);
    CHECK_EQ(rep.status, 0);
    CHECK_EQ(rep.len, 8);
    close(fd);
    mproc_manager_free(m);
}

TEST(garbage_handshake_and_a_silent_client_hold_up_nobody)
{
    mproc_manager *m;
    mproc_manager_opts o = {.handshake_timeout = 0.5};
    CHECK_OK(mproc_manager_start(&m, unique_unix(), "k", 1, &o));
    const char *a = mproc_manager_address(m);
    int silent = raw_connect(a);
    int bad = raw_connect(a);
    unsigned char junk[] = {0x7f, 0xff, 0xff, 0xff, 1, 2, 3};
    CHECK_EQ(send(bad, junk, sizeof junk, MSG_NOSIGNAL), (ssize_t)sizeof junk);
    CHECK(closed_by_server(bad));
    close(bad);
    /* a good client is served while the silent one is still in its handshake */
    double t0 = harness_now();
    mproc_manager *c;
    CHECK_OK(mproc_manager_connect(&c, a, "k", 1));
    mproc_dict *d;
    CHECK_OK(mproc_manager_dict(c, "d", &d));
    CHECK(harness_now() - t0 < 0.4 * harness_slow());
    mproc_manager_free(c);
    CHECK(closed_by_server(silent)); /* its deadline */
    close(silent);
    mproc_manager_free(m);
}

/* At most 64 handshakes at once: a new client past that drops the oldest (a flood of silent
 * clients cannot lock out good ones), the others stay pending, and a good client is served. */
TEST(a_flood_of_silent_clients_drops_the_oldest_handshake)
{
    enum { N = MPROC_LISTENER_DEFAULT_MAX_HANDSHAKES + 1 };
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), "k", 1, NULL));
    const char *a = mproc_manager_address(m);
    int silent[N];
    for (int i = 0; i < N; i++) {
        silent[i] = raw_connect(a);
        unsigned char challenge[4 + 59]; /* taken in, in this order */
        CHECK_EQ(recv(silent[i], challenge, sizeof challenge, MSG_WAITALL),
                 (ssize_t)sizeof challenge);
    }
    CHECK(closed_by_server(silent[0]));
    char b;
    for (int i = 1; i < N; i++) {
        CHECK_EQ(recv(silent[i], &b, 1, MSG_DONTWAIT), -1);
        CHECK_EQ(errno, EAGAIN);
    }
    mproc_manager *c;
    CHECK_OK(mproc_manager_connect(&c, a, "k", 1)); /* drops silent[1] */
    mproc_manager_free(c);
    CHECK(closed_by_server(silent[1]));
    CHECK_EQ(recv(silent[2], &b, 1, MSG_DONTWAIT), -1);
    for (int i = 0; i < N; i++)
        close(silent[i]);
    mproc_manager_free(m);
}

TEST(two_hundred_clients_at_once)
{
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    CHECK_EQ(run_peer(mproc_manager_address(m), NULL, "conns", "200"), 0);
    mproc_manager_free(m);
}

TEST(limits_are_enforced)
{
    mproc_manager *m;
    mproc_manager_opts o = {.max_objects = 2, .max_connections = 2};
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, &o));
    mproc_event *e;
    CHECK_OK(mproc_manager_event(m, "a", &e));
    CHECK_OK(mproc_manager_event(m, "b", &e));
    CHECK_RC(mproc_manager_event(m, "c", &e), -ENOSPC);
    CHECK_OK(mproc_manager_delete(m, "a"));
    CHECK_OK(mproc_manager_event(m, "c", &e));
    mproc_manager *c2, *c3;
    CHECK_OK(mproc_manager_connect(&c2, mproc_manager_address(m), NULL, 0));
    int r = mproc_manager_connect(&c3, mproc_manager_address(m), NULL, 0);
    CHECK(r < 0); /* the third connection is closed at accept */
    mproc_manager_free(c2);
    mproc_manager_free(m);
}

TEST(no_fds_or_processes_left_behind)
{
    mproc_manager *first; /* the first start may set up what stays (a forkserver helper) */
    CHECK_OK(mproc_manager_start(&first, unique_unix(), NULL, 0, NULL));
    mproc_manager_free(first);
    int before = harness_fd_count(), children = harness_child_count(getpid());
    for (int i = 0; i < 3; i++) {
        mproc_manager *m;
        CHECK_OK(mproc_manager_start(&m, unique_unix(), "k", 1, NULL));
        mproc_queue *q;
        CHECK_OK(mproc_manager_queue(m, "q", NULL, &q));
        CHECK_OK(mproc_queue_put(q, "x", 1, 0));
        mproc_manager_free(m);
    }
    CHECK_EQ(harness_fd_count(), before);
    CHECK_EQ(harness_child_count(getpid()), children);
}

TEST(a_detached_server_outlives_its_handle)
{
    SKIP_IN_THREAD_MODE("the server is a thread: it cannot be killed or outlive its starter");
    const char *addr = unique_unix();
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, addr, NULL, 0, &(mproc_manager_opts){.detached = true}));
    mproc_manager_free(m);
    mproc_manager *c;
    CHECK_OK(mproc_manager_connect(&c, addr, NULL, 0));
    mproc_event *e;
    CHECK_OK(mproc_manager_event(c, "e", &e));
    CHECK_OK(mproc_manager_shutdown(c));
    mproc_manager_free(c);
    /* it is gone once its listener is */
    double t0 = harness_now();
    while (mproc_manager_connect(&c, addr, NULL, 0) == 0) {
        mproc_manager_free(c);
        CHECK(harness_now() - t0 < 10.0);
    }
}

typedef struct {
    char address[128];
    _Atomic pid_t server;
} starter_arg;

static int start_and_wait(void *arg)
{
    starter_arg *a = arg;
    mproc_manager *m;
    if (mproc_manager_start(&m, a->address, NULL, 0, NULL) != 0) return 1;
    atomic_store(&a->server, mproc_process_pid(m->server));
    for (;;)
        pause(); /* killed */
    return 0;
}

/* The server is a daemonic child, which the kernel SIGKILLed when its parent died: its socket file
 * stayed. It asks for SIGTERM instead, a clean stop (the forkserver's children learn it from the
 * starter's pidfd). */
TEST(a_killed_starters_server_removes_its_socket_file)
{
    SKIP_IN_THREAD_MODE("the server is a thread: it cannot outlive its starter");
    starter_arg *a = mproc_shared_alloc(sizeof *a);
    CHECK(a != NULL);
    snprintf(a->address, sizeof a->address, "unix:/tmp/mproc-test-manager-%d.sock", (int)getpid());
    const char *path = a->address + 5;
    mproc_process *p = harness_start(start_and_wait, a);
    double t0 = harness_now();
    while (!atomic_load(&a->server)) {
        CHECK(harness_now() - t0 < 10.0 * harness_slow());
        usleep(1000);
    }
    CHECK_EQ(access(path, F_OK), 0);
    CHECK_OK(mproc_process_kill(p));
    CHECK_EQ(harness_join(p), -SIGKILL);
    CHECK(harness_wait_gone(atomic_load(&a->server), 2.0 * harness_slow()));
    bool left = access(path, F_OK) == 0;
    if (left) unlink(path);
    CHECK(!left);
    mproc_shared_free(a);
}

TEST(a_fork_child_makes_its_own_connection)
{
    mproc_manager *m;
    CHECK_OK(mproc_manager_start(&m, unique_unix(), NULL, 0, NULL));
    mproc_event *e;
    CHECK_OK(mproc_manager_event(m, "e", &e));
    pid_t pid = fork();
    if (pid == 0) {
        mproc_event *e2;
        int r = mproc_manager_event(m, "e", &e2); /* over a connection of its own */
        mproc_manager_free(m);                    /* the child's copy: the parent's server stays */
        _exit(r == 0 && e2 == e ? 0 : 1);
    }
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    mproc_event *e3;
    CHECK_OK(mproc_manager_event(m, "e", &e3)); /* the parent's is still in step */
    CHECK(e3 == e);
    CHECK(mproc_process_is_alive(m->server));
    mproc_manager_free(m);
}

/* The mproc-manager command with argv; returns once it printed its first line (its address: it
 * listens then) into line, or ended without one (line empty). */
static pid_t spawn_tool_argv(char *const argv[], char *line, size_t cap)
{
    return tool_spawn_first_line(MPROC_MANAGER_TOOL, argv, line, cap);
}

/* The mproc-manager command: its address on stdout, clients served, SIGTERM a clean end. */
TEST(the_command_serves_until_sigterm)
{
    char *bad[] = {(char *)MPROC_MANAGER_TOOL, "--address", "tcp:127.0.0.1:0", NULL};
    pid_t pid;
    CHECK_EQ(posix_spawn(&pid, MPROC_MANAGER_TOOL, NULL, NULL, bad, environ), 0);
    CHECK_EQ(wait_peer(pid), 2); /* tcp without a key */
    char keyfile[] = "/tmp/mproc-test-key-XXXXXX";
    int kfd = mkstemp(keyfile);
    CHECK(kfd >= 0);
    CHECK_EQ(write(kfd, "k3y\n", 4), 4);
    close(kfd);
    char *argv[] = {(char *)MPROC_MANAGER_TOOL,
                    "--address",
                    "tcp:127.0.0.1:0",
                    "--authkey-file",
                    keyfile,
                    "--foreground",
                    NULL};
    char addr[128];
    pid = spawn_tool_argv(argv, addr, sizeof addr);
    CHECK(strncmp(addr, "tcp:127.0.0.1:", 14) == 0);
    CHECK_EQ(run_peer(addr, "k3y", "all", NULL), 0); /* the file's newline is not the key's */
    CHECK_EQ(kill(pid, SIGTERM), 0);
    CHECK_EQ(wait_peer(pid), 0);
    unlink(keyfile);
}

/* mproc-manager --share-arena: none leaves a same-user peer on proxies; a bad policy is refused;
 * without the flag, MPROC_MANAGER_SHARE_ARENA decides. The tool in the foreground; returns once it
 * printed its address (it listens then). */
static pid_t spawn_tool(const char *address, const char *policy)
{
    char *argv[] = {(char *)MPROC_MANAGER_TOOL,
                    "--address",
                    (char *)address,
                    "--foreground",
                    "--share-arena",
                    (char *)policy,
                    NULL};
    if (!policy) argv[4] = NULL;
    char line[128];
    return spawn_tool_argv(argv, line, sizeof line);
}

TEST(the_command_takes_a_share_policy)
{
    CHECK_EQ(wait_peer(spawn_tool("unix:@x", "everyone")), 2);
    for (int i = 0; i < 4; i++) {
        char addr[96];
        snprintf(addr, sizeof addr, "%s", unique_unix());
        /* the flag (none, same-user), then the environment (none; unset: same-user) */
        if (i == 2) setenv("MPROC_MANAGER_SHARE_ARENA", "none", 1);
        pid_t pid = spawn_tool(addr, i == 0 ? "none" : i == 1 ? "same-user" : NULL);
        unsetenv("MPROC_MANAGER_SHARE_ARENA");
        setenv("PEER_EXPECT_MAPPED", i & 1 ? "1" : "0", 1);
        unsetenv("MPROC_MANAGER_MAP");
        CHECK_EQ(run_peer(addr, NULL, "all", NULL), 0);
        CHECK_EQ(kill(pid, SIGTERM), 0);
        CHECK_EQ(wait_peer(pid), 0);
    }
}
