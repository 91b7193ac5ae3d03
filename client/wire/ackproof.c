/*  Signed, batched delivery receipts; see ackproof.h.                        */
#include "ackproof.h"

#include <assert.h>
#include <pthread.h>
#include <string.h>

#include <openssl/err.h>

#define LEAF_TAG "liaison-ack-v1"
#define LEAF_TAG_LEN 14
#define ROOT_TAG "liaison-ack-root-v1"
#define ROOT_TAG_LEN 19
#define STATEMENT_LEN (ROOT_TAG_LEN + 4 + ACKPROOF_HASH)

// SHA-256 fetched once: EVP_sha256 () in an init call makes OpenSSL 3 look
// the implementation up again every time, which costs as much as hashing
// 65 bytes. The fetched method is kept for the life of the process.
static EVP_MD *s_sha256;
static pthread_once_t s_sha256_once = PTHREAD_ONCE_INIT;

static void
s_sha256_fetch (void)
{
    s_sha256 = EVP_MD_fetch (NULL, "SHA256", NULL);
}

static const EVP_MD *
s_md (void)
{
    pthread_once (&s_sha256_once, s_sha256_fetch);
    return s_sha256;
}

// Interior node: H(0x01 || left || right). ctx is reused across the calls
// of one tree so that a batch allocates one context, not one per node.
static int
s_node (EVP_MD_CTX *ctx, const uint8_t left[32], const uint8_t right[32], uint8_t out[32])
{
    uint8_t buf[1 + 2 * ACKPROOF_HASH];
    buf[0] = 0x01;
    memcpy (buf + 1, left, ACKPROOF_HASH);
    memcpy (buf + 1 + ACKPROOF_HASH, right, ACKPROOF_HASH);
    unsigned int len = 0;
    if (!EVP_DigestInit_ex2 (ctx, s_md (), NULL) || !EVP_DigestUpdate (ctx, buf, sizeof buf)
        || !EVP_DigestFinal_ex (ctx, out, &len) || len != ACKPROOF_HASH)
        return -1;
    return 0;
}

static EVP_MD_CTX *
s_ctx_new (void)
{
    return s_md () ? EVP_MD_CTX_new () : NULL;
}

void
ackproof_leaf (const char *recipient, int status, int64_t time_ms, const char *sender,
               const uint8_t id[16], uint8_t out[32])
{
    size_t rlen = strlen (recipient);
    size_t slen = strlen (sender);
    // A longer name would not fit its length byte and two leaves could
    // then share an encoding; the codec bounds every name far below this.
    assert (rlen <= ACKPROOF_MAX_NAME && slen <= ACKPROOF_MAX_NAME);
    if (rlen > ACKPROOF_MAX_NAME)
        rlen = ACKPROOF_MAX_NAME;
    if (slen > ACKPROOF_MAX_NAME)
        slen = ACKPROOF_MAX_NAME;

    uint8_t buf[1 + LEAF_TAG_LEN + 1 + 8 + 1 + ACKPROOF_MAX_NAME + 1 + ACKPROOF_MAX_NAME + 16];
    size_t n = 0;
    buf[n++] = 0x00;
    memcpy (buf + n, LEAF_TAG, LEAF_TAG_LEN);
    n += LEAF_TAG_LEN;
    buf[n++] = (uint8_t) status;
    uint64_t t = (uint64_t) time_ms;
    for (int i = 7; i >= 0; i--)
        buf[n++] = (uint8_t) (t >> (8 * i));
    buf[n++] = (uint8_t) rlen;
    memcpy (buf + n, recipient, rlen);
    n += rlen;
    buf[n++] = (uint8_t) slen;
    memcpy (buf + n, sender, slen);
    n += slen;
    memcpy (buf + n, id, 16);
    n += 16;

    unsigned int len = 0;
    const EVP_MD *md = s_md ();
    // Only out of memory gets here; an all-zero leaf matches no real one,
    // so the receipt fails to verify rather than verifying something else.
    if (!md || !EVP_Digest (buf, n, out, &len, md, NULL) || len != ACKPROOF_HASH)
        memset (out, 0, ACKPROOF_HASH);
}

int
ackproof_root (const uint8_t (*leaves)[32], size_t n, uint8_t root[32])
{
    if (!leaves || !root || n == 0 || n > ACKPROOF_MAX_ITEMS)
        return -1;
    // Level by level, pairing neighbours and carrying an odd last node up
    // unchanged: this builds exactly RFC 6962's tree (left subtrees are
    // always the largest power of two) without recursion.
    uint8_t level[ACKPROOF_MAX_ITEMS][32];
    memcpy (level, leaves, n * ACKPROOF_HASH);
    EVP_MD_CTX *ctx = s_ctx_new ();
    if (!ctx)
        return -1;
    int rc = 0;
    for (size_t size = n; size > 1 && rc == 0; size = (size + 1) / 2) {
        for (size_t j = 0; j < size / 2 && rc == 0; j++)
            rc = s_node (ctx, level[2 * j], level[2 * j + 1], level[j]);
        if (size & 1)
            memmove (level[size / 2], level[size - 1], ACKPROOF_HASH);
    }
    EVP_MD_CTX_free (ctx);
    if (rc == 0)
        memcpy (root, level[0], ACKPROOF_HASH);
    return rc;
}

// Largest power of two strictly below n (n >= 2).
static size_t
s_split (size_t n)
{
    size_t k = 1;
    while (k * 2 < n)
        k *= 2;
    return k;
}

// MTH (D[0:n]) by RFC 6962's recursive definition.
static int
s_mth (EVP_MD_CTX *ctx, const uint8_t (*leaves)[32], size_t n, uint8_t out[32])
{
    if (n == 1) {
        memcpy (out, leaves[0], ACKPROOF_HASH);
        return 0;
    }
    size_t k = s_split (n);
    uint8_t left[32], right[32];
    if (s_mth (ctx, leaves, k, left) || s_mth (ctx, leaves + k, n - k, right))
        return -1;
    return s_node (ctx, left, right, out);
}

// PATH (m, D[0:n]) by RFC 6962's recursive definition: the subtree's path
// first, then the other subtree's hash, so the result is bottom-up.
static int
s_path (EVP_MD_CTX *ctx, size_t m, const uint8_t (*leaves)[32], size_t n,
        uint8_t path[ACKPROOF_MAX_PATH][32], size_t *len)
{
    if (n == 1)
        return 0;
    size_t k = s_split (n);
    int rc = m < k ? s_path (ctx, m, leaves, k, path, len)
                   : s_path (ctx, m - k, leaves + k, n - k, path, len);
    if (rc || *len >= ACKPROOF_MAX_PATH)
        return -1;
    uint8_t *sibling = path[(*len)++];
    return m < k ? s_mth (ctx, leaves + k, n - k, sibling) : s_mth (ctx, leaves, k, sibling);
}

int
ackproof_path (const uint8_t (*leaves)[32], size_t n, size_t index,
               uint8_t path[ACKPROOF_MAX_PATH][32])
{
    if (!leaves || !path || n == 0 || n > ACKPROOF_MAX_ITEMS || index >= n)
        return -1;
    if (n == 1)
        return 0;
    EVP_MD_CTX *ctx = s_ctx_new ();
    if (!ctx)
        return -1;
    size_t len = 0;
    int rc = s_path (ctx, index, leaves, n, path, &len);
    EVP_MD_CTX_free (ctx);
    return rc ? -1 : (int) len;
}

int
ackproof_paths_all (const uint8_t (*leaves)[32], size_t n, uint8_t root[32],
                    uint8_t (*paths)[ACKPROOF_MAX_PATH][32], uint8_t *pathlens)
{
    if (!leaves || !root || !paths || !pathlens || n == 0 || n > ACKPROOF_MAX_ITEMS)
        return -1;
    // Every level of the tree, built as in ackproof_root: level 0 is the
    // leaves; level d holds ceil (n / 2^d) nodes, so levels 1.. together
    // hold fewer than n + depth (at most 255 for n <= 256).
    uint8_t upper[ACKPROOF_MAX_ITEMS + ACKPROOF_MAX_PATH][32];
    const uint8_t (*level[ACKPROOF_MAX_PATH + 1])[32];
    size_t size[ACKPROOF_MAX_PATH + 1];
    size_t depth = 0, used = 0;
    level[0] = leaves;
    size[0] = n;
    EVP_MD_CTX *ctx = s_ctx_new ();
    if (!ctx)
        return -1;
    while (size[depth] > 1) {
        const uint8_t (*below)[32] = level[depth];
        size_t nb = size[depth];
        uint8_t (*above)[32] = upper + used;
        for (size_t j = 0; j < nb / 2; j++)
            if (s_node (ctx, below[2 * j], below[2 * j + 1], above[j])) {
                EVP_MD_CTX_free (ctx);
                return -1;
            }
        if (nb & 1)
            memcpy (above[nb / 2], below[nb - 1], ACKPROOF_HASH);
        depth++;
        level[depth] = (const uint8_t (*)[32]) above;
        size[depth] = (nb + 1) / 2;
        used += size[depth];
    }
    EVP_MD_CTX_free (ctx);
    memcpy (root, level[depth][0], ACKPROOF_HASH);

    // A node's sibling at each level is index ^ 1; a node carried up
    // unchanged has none and adds nothing to the path.
    for (size_t i = 0; i < n; i++) {
        size_t idx = i, len = 0;
        for (size_t d = 0; d < depth; d++, idx >>= 1)
            if ((idx ^ 1) < size[d])
                memcpy (paths[i][len++], level[d][idx ^ 1], ACKPROOF_HASH);
        pathlens[i] = (uint8_t) len;
    }
    return 0;
}

int
ackproof_root_from_path (const uint8_t leaf[32], size_t index, size_t n, const uint8_t (*path)[32],
                         size_t npath, uint8_t root[32])
{
    if (!leaf || !root || (npath && !path) || n == 0 || n > ACKPROOF_MAX_ITEMS || index >= n
        || npath > ACKPROOF_MAX_PATH)
        return -1;
    EVP_MD_CTX *ctx = s_ctx_new ();
    if (!ctx)
        return -1;
    // RFC 9162 2.1.3.2, step by step: fn walks the leaf's position up the
    // tree and sn the last node's; where fn is a right child or the last
    // node of its level, the path element goes on the left. Levels where
    // fn was carried up unchanged are skipped by the inner shift.
    uint8_t r[32];
    memcpy (r, leaf, ACKPROOF_HASH);
    size_t fn = index, sn = n - 1;
    int rc = 0;
    for (size_t i = 0; i < npath && rc == 0; i++) {
        if (sn == 0) {
            rc = -1;
            break;
        }
        if ((fn & 1) || fn == sn) {
            rc = s_node (ctx, path[i], r, r);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        }
        else
            rc = s_node (ctx, r, path[i], r);
        fn >>= 1;
        sn >>= 1;
    }
    EVP_MD_CTX_free (ctx);
    if (rc || sn != 0)
        return -1;
    memcpy (root, r, ACKPROOF_HASH);
    return 0;
}

// The bytes the recipient signs for a batch of n with this root.
static void
s_statement (const uint8_t root[32], size_t n, uint8_t out[STATEMENT_LEN])
{
    memcpy (out, ROOT_TAG, ROOT_TAG_LEN);
    out[ROOT_TAG_LEN] = (uint8_t) (n >> 24);
    out[ROOT_TAG_LEN + 1] = (uint8_t) (n >> 16);
    out[ROOT_TAG_LEN + 2] = (uint8_t) (n >> 8);
    out[ROOT_TAG_LEN + 3] = (uint8_t) n;
    memcpy (out + ROOT_TAG_LEN + 4, root, ACKPROOF_HASH);
}

int
ackproof_sign (EVP_PKEY *key, const uint8_t root[32], size_t n, uint8_t *sig, size_t *siglen)
{
    if (!key || !root || !sig || !siglen || n == 0 || n > ACKPROOF_MAX_ITEMS)
        return -1;
    int max = EVP_PKEY_get_size (key);
    if (max <= 0 || *siglen < (size_t) max)
        return -1;
    uint8_t statement[STATEMENT_LEN];
    s_statement (root, n, statement);
    // Failures here are local (wrong key type, no memory) and reported by
    // the return value; they must not linger in this thread's error queue,
    // where the TLS code would take them for its own.
    ERR_set_mark ();
    int rc = -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
    if (ctx && EVP_DigestSignInit (ctx, NULL, EVP_sha256 (), NULL, key) == 1
        && EVP_DigestSign (ctx, sig, siglen, statement, sizeof statement) == 1)
        rc = 0;
    EVP_MD_CTX_free (ctx);
    ERR_pop_to_mark ();
    return rc;
}

int
ackproof_verify (EVP_PKEY *pub, const uint8_t root[32], size_t n, const uint8_t *sig, size_t siglen)
{
    if (!pub || !root || (siglen && !sig) || n == 0 || n > ACKPROOF_MAX_ITEMS)
        return -1;
    if (siglen == 0)
        return 0;
    uint8_t statement[STATEMENT_LEN];
    s_statement (root, n, statement);
    ERR_set_mark ();
    int rc = -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
    if (ctx && EVP_DigestVerifyInit (ctx, NULL, EVP_sha256 (), NULL, pub) == 1) {
        // A signature that is not even well-formed DER makes OpenSSL
        // report an error rather than a mismatch; to the caller both are
        // a signature that does not verify.
        rc = EVP_DigestVerify (ctx, sig, siglen, statement, sizeof statement) == 1;
    }
    EVP_MD_CTX_free (ctx);
    ERR_pop_to_mark ();
    return rc;
}
