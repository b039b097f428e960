/* The authkey handshake of Python's multiprocessing.connection: mutual HMAC challenge/response.
 *
 * Modern form (CPython 3.12+): the challenge is "{sha256}" + 40 random bytes, the response
 * "{digest}" + HMAC-digest(key, whole challenge). Legacy form (CPython <= 3.11): the challenge is
 * 20 random bytes and the response a bare 16-byte HMAC-MD5. A modern side recognises the legacy
 * one by those lengths (no modern message has them), so we interoperate with both. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "channel/conn.h"

#define CHALLENGE "#CHALLENGE#"
#define WELCOME "#WELCOME#"
#define FAILURE "#FAILURE#"
#define CHALLENGE_RANDOM 40 /* CPython's MESSAGE_LENGTH; must be > 20 */
_Static_assert(MPROC__AUTH_CHALLENGE_LEN == sizeof CHALLENGE - 1 + 8 + CHALLENGE_RANDOM, "length");
#define LEGACY_CHALLENGE_LEN 20
#define MD5_LEN 16
#define HANDSHAKE_MAX MPROC__AUTH_MSG_MAX
#define DIGEST_NAME_MAX 8 /* longest allowed name, "sha3_256" */

static const EVP_MD *digest_by_name(const char *name, size_t n)
{
    static const struct {
        const char *name;
        const EVP_MD *(*md)(void);
    } allowed[] = {{"md5", EVP_md5},
                   {"sha256", EVP_sha256},
                   {"sha384", EVP_sha384},
                   {"sha3_256", EVP_sha3_256},
                   {"sha3_384", EVP_sha3_384}};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (strlen(allowed[i].name) == n && memcmp(allowed[i].name, name, n) == 0)
            return allowed[i].md();
    return NULL;
}

/* CPython's _get_digest_name_and_payload: 16 or 20 bytes is the legacy form (name_len 0);
 * otherwise "{name}payload" with an allowed name. -1 when neither. */
static int digest_name_and_payload(const unsigned char *m, size_t len, const char **name,
                                   size_t *name_len, const unsigned char **payload,
                                   size_t *payload_len)
{
    if (len == LEGACY_CHALLENGE_LEN || len == MD5_LEN) {
        *name = "";
        *name_len = 0;
        *payload = m;
        *payload_len = len;
        return 0;
    }
    if (len < 2 || m[0] != '{') return -1;
    /* the closing brace is searched in m[1 .. DIGEST_NAME_MAX+1], as CPython does */
    size_t end = len < DIGEST_NAME_MAX + 2 ? len : DIGEST_NAME_MAX + 2;
    const unsigned char *curly = memchr(m + 1, '}', end - 1);
    if (!curly) return -1;
    size_t n = (size_t)(curly - m) - 1;
    if (!digest_by_name((const char *)m + 1, n)) return -1;
    *name = (const char *)m + 1;
    *name_len = n;
    *payload = curly + 1;
    *payload_len = len - n - 2;
    return 0;
}

/* HMAC of message under key; 0 or -1 (digest unavailable, e.g. MD5 under FIPS). */
static int hmac(const EVP_MD *md, const void *key, size_t keylen, const unsigned char *msg,
                size_t len, unsigned char *out, unsigned *out_len)
{
    /* OpenSSL wants a non-NULL key even when it is empty */
    static const unsigned char empty = 0;
    if (!md || keylen > INT_MAX) return -1;
    return HMAC(md, keylen ? key : &empty, (int)keylen, msg, len, out, out_len) ? 0 : -1;
}

static int send_str(mproc_conn *c, const char *s)
{
    return mproc_conn_send(c, s, strlen(s));
}

/* One handshake message, refused unread when longer than CPython's cap. Protocol violations
 * (oversize, broken framing) are authentication failures; end of file and timeouts are not. */
static int recv_capped(mproc_conn *c, unsigned char *buf, size_t *len, int64_t deadline)
{
    size_t saved = c->max_message;
    c->max_message = HANDSHAKE_MAX;
    int r = mproc__conn_recv_deadline(c, buf, HANDSHAKE_MAX, len, deadline);
    c->max_message = saved;
    return r == MPROC_EPROTO ? MPROC_EAUTH : r;
}

static int verify(const void *key, size_t keylen, const unsigned char *msg, size_t msg_len,
                  const unsigned char *resp, size_t resp_len)
{
    const char *name;
    size_t name_len, mac_len;
    const unsigned char *mac;
    if (digest_name_and_payload(resp, resp_len, &name, &name_len, &mac, &mac_len) < 0) return -1;
    /* a legacy peer's bare response is HMAC-MD5; a prefixed one names its digest, which cannot be
     * a downgrade since our challenge (and its "{sha256}" prefix) is under the MAC */
    const EVP_MD *md = name_len ? digest_by_name(name, name_len) : EVP_md5();
    unsigned char expected[EVP_MAX_MD_SIZE];
    unsigned expected_len;
    if (hmac(md, key, keylen, msg, msg_len, expected, &expected_len) < 0) return -1;
    if (expected_len != mac_len) return -1;
    return CRYPTO_memcmp(expected, mac, mac_len) == 0 ? 0 : -1;
}

int mproc__auth_challenge(unsigned char out[MPROC__AUTH_CHALLENGE_LEN])
{
    static const char prefix[] = "{sha256}";
    memcpy(out, CHALLENGE, sizeof CHALLENGE - 1);
    unsigned char *msg = out + sizeof CHALLENGE - 1;
    memcpy(msg, prefix, sizeof prefix - 1);
    return RAND_bytes(msg + sizeof prefix - 1, CHALLENGE_RANDOM) == 1 ? 0 : -EIO;
}

int mproc__auth_check(const void *key, size_t keylen,
                      const unsigned char challenge[MPROC__AUTH_CHALLENGE_LEN],
                      const unsigned char *resp, size_t resp_len)
{
    size_t pre = sizeof CHALLENGE - 1;
    return verify(key, keylen, challenge + pre, MPROC__AUTH_CHALLENGE_LEN - pre, resp, resp_len) < 0
               ? MPROC_EAUTH
               : 0;
}

int mproc__auth_respond(const void *key, size_t keylen, const unsigned char *in, size_t in_len,
                        unsigned char out[MPROC__AUTH_MSG_MAX], size_t *out_len)
{
    size_t pre = sizeof CHALLENGE - 1;
    if (in_len < pre || memcmp(in, CHALLENGE, pre) != 0) return MPROC_EAUTH;
    const unsigned char *msg = in + pre;
    size_t msg_len = in_len - pre;
    if (msg_len < LEGACY_CHALLENGE_LEN) return MPROC_EAUTH; /* challenge too short */

    const char *name;
    size_t name_len, payload_len;
    const unsigned char *payload;
    if (digest_name_and_payload(msg, msg_len, &name, &name_len, &payload, &payload_len) < 0)
        return MPROC_EAUTH;
    unsigned mac_len;
    if (name_len == 0 && hmac(EVP_md5(), key, keylen, msg, msg_len, out, &mac_len) == 0) {
        *out_len = mac_len; /* legacy server: a bare HMAC-MD5 */
        return 0;
    }
    if (name_len == 0) {
        /* no MD5 here (FIPS): answer in the modern form, as CPython does */
        name = "sha256";
        name_len = 6;
    }
    out[0] = '{';
    memcpy(out + 1, name, name_len);
    out[name_len + 1] = '}';
    if (hmac(digest_by_name(name, name_len), key, keylen, msg, msg_len, out + name_len + 2,
             &mac_len) < 0)
        return MPROC_EAUTH;
    *out_len = name_len + 2 + mac_len;
    return 0;
}

bool mproc__auth_is_welcome(const unsigned char *m, size_t len)
{
    return len == sizeof WELCOME - 1 && memcmp(m, WELCOME, len) == 0;
}

const char *const mproc__auth_welcome = WELCOME;
const char *const mproc__auth_failure = FAILURE;

int mproc__auth_srv_start(mproc__auth_srv *h)
{
    h->state = MPROC__AUTH_SRV_RESPONSE;
    return mproc__auth_challenge(h->challenge);
}

int mproc__auth_srv_step(mproc__auth_srv *h, const void *key, size_t keylen, const unsigned char *m,
                         size_t len, unsigned char out[MPROC__AUTH_MSG_MAX], size_t *out_len)
{
    *out_len = 0;
    switch (h->state) {
    case MPROC__AUTH_SRV_RESPONSE:
        if (mproc__auth_check(key, keylen, h->challenge, m, len) < 0) {
            *out_len = sizeof FAILURE - 1;
            memcpy(out, FAILURE, *out_len);
            h->state = MPROC__AUTH_SRV_FAILED;
            return MPROC_EAUTH;
        }
        *out_len = sizeof WELCOME - 1;
        memcpy(out, WELCOME, *out_len);
        h->state = MPROC__AUTH_SRV_CHALLENGE;
        return 0;
    case MPROC__AUTH_SRV_CHALLENGE:
        if (mproc__auth_respond(key, keylen, m, len, out, out_len) < 0) {
            *out_len = 0;
            h->state = MPROC__AUTH_SRV_FAILED;
            return MPROC_EAUTH;
        }
        h->state = MPROC__AUTH_SRV_VERDICT;
        return 0;
    case MPROC__AUTH_SRV_VERDICT:
        h->state = mproc__auth_is_welcome(m, len) ? MPROC__AUTH_SRV_PASSED : MPROC__AUTH_SRV_FAILED;
        return h->state == MPROC__AUTH_SRV_PASSED ? 1 : MPROC_EAUTH;
    default: /* nothing more is expected of the peer */
        h->state = MPROC__AUTH_SRV_FAILED;
        return MPROC_EAUTH;
    }
}

int mproc__auth_deliver(mproc_conn *c, const void *key, size_t keylen, int64_t deadline)
{
    unsigned char out[MPROC__AUTH_CHALLENGE_LEN];
    int r = mproc__auth_challenge(out);
    if (r < 0 || (r = mproc_conn_send(c, out, sizeof out)) < 0) return r;
    unsigned char resp[HANDSHAKE_MAX];
    size_t resp_len;
    if ((r = recv_capped(c, resp, &resp_len, deadline)) < 0) return r;
    if (mproc__auth_check(key, keylen, out, resp, resp_len) < 0) {
        send_str(c, FAILURE); /* best effort: the peer learns why we hang up */
        return MPROC_EAUTH;
    }
    return send_str(c, WELCOME);
}

int mproc__auth_answer(mproc_conn *c, const void *key, size_t keylen, int64_t deadline)
{
    unsigned char in[HANDSHAKE_MAX];
    size_t in_len;
    int r = recv_capped(c, in, &in_len, deadline);
    if (r < 0) return r;
    unsigned char resp[MPROC__AUTH_MSG_MAX];
    size_t resp_len;
    if ((r = mproc__auth_respond(key, keylen, in, in_len, resp, &resp_len)) < 0) return r;
    if ((r = mproc_conn_send(c, resp, resp_len)) < 0) return r;
    if ((r = recv_capped(c, in, &in_len, deadline)) < 0) return r;
    return mproc__auth_is_welcome(in, in_len) ? 0 : MPROC_EAUTH;
}
