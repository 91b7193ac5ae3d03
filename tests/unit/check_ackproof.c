/*  Signed, batched receipts (client/wire/ackproof.c, client/verify.c): the
    leaf encoding and tree shape against hashes computed here independently,
    every audit path of every batch size up to 20 and of 256, tampering of
    every kind, signatures with P-256 and RSA keys, and liaison_receipt_verify
    with a certificate made in the test and with the test PKI.              */
#include "suites.h"

#include "ackproof.h"
#include "internal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>


// ------------------------------------------------------------- helpers

// SHA-256 of prefix || a || b (b may be NULL), computed without ackproof.
static void
s_h (uint8_t prefix, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, uint8_t out[32])
{
    uint8_t buf[1024];
    ck_assert_uint_le (1 + alen + blen, sizeof buf);
    buf[0] = prefix;
    memcpy (buf + 1, a, alen);
    if (b)
        memcpy (buf + 1 + alen, b, blen);
    unsigned int len = 0;
    ck_assert_int_eq (EVP_Digest (buf, 1 + alen + blen, out, &len, EVP_sha256 (), NULL), 1);
    ck_assert_uint_eq (len, 32);
}

// An interior node, computed independently.
static void
s_node (const uint8_t l[32], const uint8_t r[32], uint8_t out[32])
{
    s_h (0x01, l, 32, r, 32, out);
}

static void
s_hex (const char *hex, uint8_t out[32])
{
    for (int i = 0; i < 32; i++) {
        unsigned v;
        ck_assert_int_eq (sscanf (hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t) v;
    }
}

// A batch of n distinct leaves, as a recipient would hash them.
static void
s_leaves (uint8_t (*leaves)[32], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t id[16];
        for (int b = 0; b < 16; b++)
            id[b] = (uint8_t) (i * 31 + (size_t) b);
        char sender[16];
        snprintf (sender, sizeof sender, "de-n%zu", i % 7);
        ackproof_leaf ("fr-pn", 2, 1700000000000 + (int64_t) i, sender, id, leaves[i]);
    }
}

// True if the path leads to `root` (false also when it is refused).
static bool
s_leads_to (const uint8_t leaf[32], size_t index, size_t n, const uint8_t (*path)[32], size_t npath,
            const uint8_t root[32])
{
    uint8_t got[32];
    if (ackproof_root_from_path (leaf, index, n, path, npath, got))
        return false;
    return memcmp (got, root, 32) == 0;
}

// ------------------------------------------------------------- leaf and shape

// The leaf input, byte by byte as PROTOCOL.md gives it, and pinned hashes
// (computed with Python's hashlib) so both sides cannot drift together.
START_TEST (test_ackproof_leaf_encoding)
{
    uint8_t id[16];
    for (int i = 0; i < 16; i++)
        id[i] = (uint8_t) i;
    uint8_t input[128];
    size_t n = 0;
    memcpy (input, "liaison-ack-v1", 14);
    n += 14;
    input[n++] = 2;
    const uint8_t t[8] = {0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b}; /* 1700000000123 */
    memcpy (input + n, t, 8);
    n += 8;
    input[n++] = 5;
    memcpy (input + n, "fr-pn", 5);
    n += 5;
    input[n++] = 6;
    memcpy (input + n, "de-bka", 6);
    n += 6;
    memcpy (input + n, id, 16);
    n += 16;
    uint8_t want[32], got[32], pinned[32];
    s_h (0x00, input, n, NULL, 0, want);
    ackproof_leaf ("fr-pn", 2, 1700000000123, "de-bka", id, got);
    ck_assert_mem_eq (got, want, 32);
    s_hex ("10a26862ec22f82aaef6d0f51db030c07f285c7dcbccb61591d2d6b224abdea0", pinned);
    ck_assert_mem_eq (got, pinned, 32);

    // Empty names, a negative time (two's complement) and READ.
    uint8_t ff[16];
    memset (ff, 0xff, sizeof ff);
    ackproof_leaf ("", 3, -1, "", ff, got);
    s_hex ("20c095e7833f81b3e34e3329e5a8acb2c6c06e1b46cfee21060660af84622d67", pinned);
    ck_assert_mem_eq (got, pinned, 32);
}
END_TEST

// Every field changes the leaf, and moving a byte between the two names
// does too (the length prefixes).
START_TEST (test_ackproof_leaf_fields)
{
    uint8_t id[16] = {1, 2, 3}, id2[16] = {1, 2, 4};
    uint8_t base[32], other[32];
    ackproof_leaf ("fr-pn", 2, 1000, "de-bka", id, base);
    ackproof_leaf ("fr-pn", 2, 1000, "de-bka", id, other);
    ck_assert_mem_eq (base, other, 32);
    ackproof_leaf ("fr-pn", 3, 1000, "de-bka", id, other);
    ck_assert_mem_ne (base, other, 32);
    ackproof_leaf ("fr-pn", 2, 1001, "de-bka", id, other);
    ck_assert_mem_ne (base, other, 32);
    ackproof_leaf ("fr-gn", 2, 1000, "de-bka", id, other);
    ck_assert_mem_ne (base, other, 32);
    ackproof_leaf ("fr-pn", 2, 1000, "de-bkb", id, other);
    ck_assert_mem_ne (base, other, 32);
    ackproof_leaf ("fr-pn", 2, 1000, "de-bka", id2, other);
    ck_assert_mem_ne (base, other, 32);
    ackproof_leaf ("fr-pnd", 2, 1000, "e-bka", id, other);
    ck_assert_mem_ne (base, other, 32);
}
END_TEST

// Roots of small trees against RFC 6962's shape written out by hand: the
// left subtree is always the largest power of two below n.
START_TEST (test_ackproof_root_shapes)
{
    uint8_t l[8][32];
    s_leaves (l, 8);
    uint8_t root[32], want[32], h01[32], h23[32], h45[32], h0123[32], h456[32], h4567[32];
    s_node (l[0], l[1], h01);
    s_node (l[2], l[3], h23);
    s_node (l[4], l[5], h45);
    s_node (h01, h23, h0123);

    ck_assert_int_eq (ackproof_root ((const uint8_t (*)[32]) l, 1, root), 0);
    ck_assert_mem_eq (root, l[0], 32);

    ck_assert_int_eq (ackproof_root ((const uint8_t (*)[32]) l, 2, root), 0);
    ck_assert_mem_eq (root, h01, 32);

    // n = 3: H(1 || H(1 || l0 || l1) || l2), not H(1 || l0 || H(1 || l1 || l2)).
    s_node (h01, l[2], want);
    ck_assert_int_eq (ackproof_root ((const uint8_t (*)[32]) l, 3, root), 0);
    ck_assert_mem_eq (root, want, 32);

    ck_assert_int_eq (ackproof_root ((const uint8_t (*)[32]) l, 4, root), 0);
    ck_assert_mem_eq (root, h0123, 32);

    // n = 5: the fifth leaf joins at the top, not duplicated or paired.
    s_node (h0123, l[4], want);
    ck_assert_int_eq (ackproof_root ((const uint8_t (*)[32]) l, 5, root), 0);
    ck_assert_mem_eq (root, want, 32);

    s_node (h0123, h45, want);
    ck_assert_int_eq (ackproof_root ((const uint8_t (*)[32]) l, 6, root), 0);
    ck_assert_mem_eq (root, want, 32);

    s_node (h45, l[6], h456);
    s_node (h0123, h456, want);
    ck_assert_int_eq (ackproof_root ((const uint8_t (*)[32]) l, 7, root), 0);
    ck_assert_mem_eq (root, want, 32);

    uint8_t h67[32];
    s_node (l[6], l[7], h67);
    s_node (h45, h67, h4567);
    s_node (h0123, h4567, want);
    ck_assert_int_eq (ackproof_root ((const uint8_t (*)[32]) l, 8, root), 0);
    ck_assert_mem_eq (root, want, 32);
}
END_TEST

// Paths of the 7-leaf tree, element by element (RFC 9162 order: bottom-up).
START_TEST (test_ackproof_path_shapes)
{
    uint8_t l[7][32], path[ACKPROOF_MAX_PATH][32];
    s_leaves (l, 7);
    uint8_t h01[32], h23[32], h45[32], h0123[32], h456[32];
    s_node (l[0], l[1], h01);
    s_node (l[2], l[3], h23);
    s_node (l[4], l[5], h45);
    s_node (h01, h23, h0123);
    s_node (h45, l[6], h456);

    ck_assert_int_eq (ackproof_path ((const uint8_t (*)[32]) l, 7, 0, path), 3);
    ck_assert_mem_eq (path[0], l[1], 32);
    ck_assert_mem_eq (path[1], h23, 32);
    ck_assert_mem_eq (path[2], h456, 32);

    ck_assert_int_eq (ackproof_path ((const uint8_t (*)[32]) l, 7, 5, path), 3);
    ck_assert_mem_eq (path[0], l[4], 32);
    ck_assert_mem_eq (path[1], l[6], 32);
    ck_assert_mem_eq (path[2], h0123, 32);

    // The last leaf has no sibling at the bottom: two elements only.
    ck_assert_int_eq (ackproof_path ((const uint8_t (*)[32]) l, 7, 6, path), 2);
    ck_assert_mem_eq (path[0], h45, 32);
    ck_assert_mem_eq (path[1], h0123, 32);

    ck_assert_int_eq (ackproof_path ((const uint8_t (*)[32]) l, 1, 0, path), 0);
}
END_TEST

START_TEST (test_ackproof_ranges)
{
    uint8_t l[ACKPROOF_MAX_ITEMS + 1][32], root[32], path[ACKPROOF_MAX_PATH][32];
    memset (l, 7, sizeof l);
    const uint8_t (*cl)[32] = (const uint8_t (*)[32]) l;
    ck_assert_int_eq (ackproof_root (cl, 0, root), -1);
    ck_assert_int_eq (ackproof_root (cl, ACKPROOF_MAX_ITEMS + 1, root), -1);
    ck_assert_int_eq (ackproof_root (NULL, 1, root), -1);
    ck_assert_int_eq (ackproof_path (cl, 0, 0, path), -1);
    ck_assert_int_eq (ackproof_path (cl, 4, 4, path), -1);
    ck_assert_int_eq (ackproof_path (cl, ACKPROOF_MAX_ITEMS + 1, 0, path), -1);
    ck_assert_int_eq (ackproof_root_from_path (l[0], 0, 0, NULL, 0, root), -1);
    ck_assert_int_eq (ackproof_root_from_path (l[0], 1, 1, NULL, 0, root), -1);
    ck_assert_int_eq (ackproof_root_from_path (l[0], 0, ACKPROOF_MAX_ITEMS + 1, cl, 8, root), -1);
    ck_assert_int_eq (ackproof_root_from_path (l[0], 0, 4, cl, ACKPROOF_MAX_PATH + 1, root), -1);
    static uint8_t paths[ACKPROOF_MAX_ITEMS + 1][ACKPROOF_MAX_PATH][32];
    uint8_t lens[ACKPROOF_MAX_ITEMS + 1];
    ck_assert_int_eq (ackproof_paths_all (cl, 0, root, paths, lens), -1);
    ck_assert_int_eq (ackproof_paths_all (cl, ACKPROOF_MAX_ITEMS + 1, root, paths, lens), -1);
    ck_assert_int_eq (ackproof_root_from_path (l[0], 0, 1, NULL, 0, root), 0);
    ck_assert_mem_eq (root, l[0], 32);
}
END_TEST

// ------------------------------------------------------------- every path

// RFC 6962's PATH length for leaf m of n: one per split above the leaf.
static size_t
s_pathlen (size_t m, size_t n)
{
    if (n == 1)
        return 0;
    size_t k = 1;
    while (2 * k < n)
        k *= 2;
    return 1 + (m < k ? s_pathlen (m, k) : s_pathlen (m - k, n - k));
}

// For batch size n: ackproof_path and ackproof_paths_all agree, every path
// has the RFC 9162 length, leads to the root, and every tampering fails.
static void
s_check_batch (size_t n)
{
    static uint8_t l[ACKPROOF_MAX_ITEMS][32];
    static uint8_t paths[ACKPROOF_MAX_ITEMS][ACKPROOF_MAX_PATH][32];
    uint8_t lens[ACKPROOF_MAX_ITEMS];
    uint8_t root[32], root_all[32], path[ACKPROOF_MAX_PATH][32];
    s_leaves (l, n);
    const uint8_t (*cl)[32] = (const uint8_t (*)[32]) l;
    ck_assert_int_eq (ackproof_root (cl, n, root), 0);
    ck_assert_int_eq (ackproof_paths_all (cl, n, root_all, paths, lens), 0);
    ck_assert_mem_eq (root_all, root, 32);

    for (size_t i = 0; i < n; i++) {
        int len = ackproof_path (cl, n, i, path);
        ck_assert_msg (len >= 0 && len <= ACKPROOF_MAX_PATH, "n=%zu i=%zu len=%d", n, i, len);
        ck_assert_int_eq (lens[i], len);
        ck_assert_msg (len == 0 || memcmp (paths[i], path, (size_t) len * 32) == 0,
                       "paths differ at n=%zu i=%zu", n, i);
        ck_assert_msg ((size_t) len == s_pathlen (i, n), "n=%zu i=%zu len=%d", n, i, len);
        const uint8_t (*cp)[32] = (const uint8_t (*)[32]) path;
        ck_assert_msg (s_leads_to (l[i], i, n, cp, (size_t) len, root), "n=%zu i=%zu", n, i);

        // A flipped bit anywhere in the path.
        for (int e = 0; e < len; e++)
            for (int b = 0; b < 32; b += 7) {
                path[e][b] ^= 0x20;
                ck_assert_msg (!s_leads_to (l[i], i, n, cp, (size_t) len, root),
                               "flip n=%zu i=%zu e=%d b=%d", n, i, e, b);
                path[e][b] ^= 0x20;
            }
        // Another leaf, another index, a path too short or too long. (A
        // wrong n can lead to the same root when the leaf sits alike in
        // both trees, leaf 0 of 5 and of 6 say: the signed statement binds
        // n, see test_ackproof_receipt_verify.)
        if (n > 1)
            ck_assert (!s_leads_to (l[(i + 1) % n], i, n, cp, (size_t) len, root));
        for (size_t j = 0; j < n; j++)
            if (j != i)
                ck_assert_msg (!s_leads_to (l[i], j, n, cp, (size_t) len, root),
                               "index n=%zu i=%zu j=%zu", n, i, j);
        if (len > 0)
            ck_assert (!s_leads_to (l[i], i, n, cp, (size_t) len - 1, root));
        if (len < ACKPROOF_MAX_PATH) {
            memcpy (path[len], root, 32);
            ck_assert (!s_leads_to (l[i], i, n, cp, (size_t) len + 1, root));
        }
    }
}

START_TEST (test_ackproof_every_path_small)
{
    for (size_t n = 1; n <= 20; n++)
        s_check_batch (n);
}
END_TEST

START_TEST (test_ackproof_every_path_large)
{
    const size_t sizes[] = {31, 32, 33, 100, 127, 128, 129, 255, 256};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        s_check_batch (sizes[k]);

    // A full batch: every path has all 8 elements.
    static uint8_t l[256][32], paths[256][ACKPROOF_MAX_PATH][32];
    uint8_t lens[256], root[32];
    s_leaves (l, 256);
    ck_assert_int_eq (ackproof_paths_all ((const uint8_t (*)[32]) l, 256, root, paths, lens), 0);
    for (size_t i = 0; i < 256; i++)
        ck_assert_uint_eq (lens[i], 8);
}
END_TEST

// A receipt whose status, time, sender or id differs from what was signed
// leads to another root.
START_TEST (test_ackproof_wrong_fields)
{
    uint8_t l[5][32], root[32], path[ACKPROOF_MAX_PATH][32], leaf[32];
    uint8_t ids[5][16];
    for (int i = 0; i < 5; i++) {
        memset (ids[i], 0x40 + i, 16);
        ackproof_leaf ("fr-pn", 2, 1234, "it-ps", ids[i], l[i]);
    }
    ck_assert_int_eq (ackproof_root ((const uint8_t (*)[32]) l, 5, root), 0);
    int len = ackproof_path ((const uint8_t (*)[32]) l, 5, 2, path);
    ck_assert_int_eq (len, 3);
    const uint8_t (*cp)[32] = (const uint8_t (*)[32]) path;
    ackproof_leaf ("fr-pn", 2, 1234, "it-ps", ids[2], leaf);
    ck_assert (s_leads_to (leaf, 2, 5, cp, 3, root));
    ackproof_leaf ("fr-pn", 3, 1234, "it-ps", ids[2], leaf);
    ck_assert (!s_leads_to (leaf, 2, 5, cp, 3, root));
    ackproof_leaf ("fr-pn", 2, 1235, "it-ps", ids[2], leaf);
    ck_assert (!s_leads_to (leaf, 2, 5, cp, 3, root));
    ackproof_leaf ("fr-pn", 2, 1234, "es-cnp", ids[2], leaf);
    ck_assert (!s_leads_to (leaf, 2, 5, cp, 3, root));
    ackproof_leaf ("fr-gn", 2, 1234, "it-ps", ids[2], leaf);
    ck_assert (!s_leads_to (leaf, 2, 5, cp, 3, root));
    ackproof_leaf ("fr-pn", 2, 1234, "it-ps", ids[3], leaf);
    ck_assert (!s_leads_to (leaf, 2, 5, cp, 3, root));
}
END_TEST

// ------------------------------------------------------------- signatures

static void
s_sign_verify (EVP_PKEY *key, EVP_PKEY *other)
{
    uint8_t root[32], root2[32], sig[1024];
    memset (root, 0x5a, 32);
    memcpy (root2, root, 32);
    root2[31] ^= 1;
    size_t siglen = sizeof sig;
    ck_assert_int_eq (ackproof_sign (key, root, 17, sig, &siglen), 0);
    ck_assert_uint_gt (siglen, 0);
    ck_assert_uint_le (siglen, (size_t) EVP_PKEY_get_size (key));
    ck_assert_int_eq (ackproof_verify (key, root, 17, sig, siglen), 1);
    ck_assert_int_eq (ackproof_verify (other, root, 17, sig, siglen), 0);
    ck_assert_int_eq (ackproof_verify (key, root2, 17, sig, siglen), 0);
    // n is part of the statement: the same root for another batch size.
    ck_assert_int_eq (ackproof_verify (key, root, 16, sig, siglen), 0);
    ck_assert_int_eq (ackproof_verify (key, root, 18, sig, siglen), 0);
    ck_assert_int_eq (ackproof_verify (key, root, 17, sig, siglen - 1), 0);
    ck_assert_int_eq (ackproof_verify (key, root, 17, sig, 0), 0);
    for (size_t b = 0; b < siglen; b += 5) {
        sig[b] ^= 0x01;
        ck_assert_int_eq (ackproof_verify (key, root, 17, sig, siglen), 0);
        sig[b] ^= 0x01;
    }
    ck_assert_int_eq (ackproof_verify (key, root, 17, sig, siglen), 1);

    // Refusals: a buffer too small, sizes out of range, NULLs.
    size_t small = (size_t) EVP_PKEY_get_size (key) - 1;
    ck_assert_int_eq (ackproof_sign (key, root, 17, sig, &small), -1);
    siglen = sizeof sig;
    ck_assert_int_eq (ackproof_sign (key, root, 0, sig, &siglen), -1);
    ck_assert_int_eq (ackproof_sign (key, root, ACKPROOF_MAX_ITEMS + 1, sig, &siglen), -1);
    ck_assert_int_eq (ackproof_sign (NULL, root, 1, sig, &siglen), -1);
    ck_assert_int_eq (ackproof_verify (NULL, root, 1, sig, 1), -1);
    ck_assert_int_eq (ackproof_verify (key, root, 0, sig, 1), -1);
    // Failures leave nothing on the thread's error queue.
    ck_assert_uint_eq (ERR_peek_error (), 0);
}

START_TEST (test_ackproof_sign_ec)
{
    EVP_PKEY *key = EVP_EC_gen ("P-256");
    EVP_PKEY *other = EVP_EC_gen ("P-256");
    ck_assert_ptr_nonnull (key);
    ck_assert_ptr_nonnull (other);
    s_sign_verify (key, other);
    // ECDSA is randomised, yet every signature verifies.
    uint8_t root[32] = {1}, sig[2][128];
    size_t len[2] = {sizeof sig[0], sizeof sig[1]};
    ck_assert_int_eq (ackproof_sign (key, root, 1, sig[0], &len[0]), 0);
    ck_assert_int_eq (ackproof_sign (key, root, 1, sig[1], &len[1]), 0);
    ck_assert (len[0] != len[1] || memcmp (sig[0], sig[1], len[0]) != 0);
    ck_assert_int_eq (ackproof_verify (key, root, 1, sig[0], len[0]), 1);
    ck_assert_int_eq (ackproof_verify (key, root, 1, sig[1], len[1]), 1);
    // The same P-256 signature does not verify under an RSA key.
    EVP_PKEY *rsa = EVP_RSA_gen (2048);
    ck_assert_ptr_nonnull (rsa);
    ck_assert_int_eq (ackproof_verify (rsa, root, 1, sig[0], len[0]), 0);
    ck_assert_uint_eq (ERR_peek_error (), 0);
    EVP_PKEY_free (rsa);
    EVP_PKEY_free (key);
    EVP_PKEY_free (other);
}
END_TEST

START_TEST (test_ackproof_sign_rsa)
{
    EVP_PKEY *key = EVP_RSA_gen (2048);
    EVP_PKEY *other = EVP_RSA_gen (2048);
    ck_assert_ptr_nonnull (key);
    ck_assert_ptr_nonnull (other);
    s_sign_verify (key, other);
    EVP_PKEY_free (key);
    EVP_PKEY_free (other);
}
END_TEST

// ------------------------------------------------------------- receipts

// A self-signed certificate for `cn` with `key`, written to a temporary
// file whose name goes to `path` (the caller unlinks it).
static void
s_cert_file (EVP_PKEY *key, const char *cn, char path[64])
{
    X509 *x = X509_new ();
    ck_assert_ptr_nonnull (x);
    ck_assert_int_eq (X509_set_version (x, 2), 1);
    ASN1_INTEGER_set (X509_get_serialNumber (x), 42);
    X509_gmtime_adj (X509_getm_notBefore (x), -3600);
    X509_gmtime_adj (X509_getm_notAfter (x), 3600);
    X509_NAME *name = X509_get_subject_name (x);
    X509_NAME_add_entry_by_txt (name, "C", MBSTRING_ASC, (const unsigned char *) "FR", -1, -1, 0);
    X509_NAME_add_entry_by_txt (name, "CN", MBSTRING_ASC, (const unsigned char *) cn, -1, -1, 0);
    ck_assert_int_eq (X509_set_issuer_name (x, name), 1);
    ck_assert_int_eq (X509_set_pubkey (x, key), 1);
    ck_assert_int_gt (X509_sign (x, key, EVP_sha256 ()), 0);
    snprintf (path, 64, "/tmp/ackproof-cert-XXXXXX");
    int fd = mkstemp (path);
    ck_assert_int_ge (fd, 0);
    FILE *f = fdopen (fd, "w");
    ck_assert_ptr_nonnull (f);
    ck_assert_int_eq (PEM_write_X509 (f, x), 1);
    fclose (f);
    X509_free (x);
}

// One signed batch of n items from `recipient`, and a receipt for one item.
typedef struct {
    uint8_t ids[ACKPROOF_MAX_ITEMS][16];
    char senders[ACKPROOF_MAX_ITEMS][16];
    uint8_t leaves[ACKPROOF_MAX_ITEMS][32];
    uint8_t paths[ACKPROOF_MAX_ITEMS][ACKPROOF_MAX_PATH][32];
    uint8_t lens[ACKPROOF_MAX_ITEMS];
    uint8_t root[32];
    uint8_t sig[512];
    size_t siglen;
    size_t n;
    // The receipt under test, pointing into the arrays above.
    Liaison__Receipt pb;
    ProtobufCBinaryData proof[ACKPROOF_MAX_PATH];
    liaison_receipt_t receipt;
} batch_t;

static void
s_batch_sign (batch_t *b, EVP_PKEY *key, const char *recipient, size_t n)
{
    memset (b, 0, sizeof *b);
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        memset (b->ids[i], (int) (i + 1), 16);
        b->ids[i][0] = 0x77;
        snprintf (b->senders[i], sizeof b->senders[i], "%s", i % 2 ? "de-bka" : "it-ps");
        ackproof_leaf (recipient, LIAISON__RECEIPT_STATUS__READ, 1700000000999, b->senders[i],
                       b->ids[i], b->leaves[i]);
    }
    ck_assert_int_eq (
        ackproof_paths_all ((const uint8_t (*)[32]) b->leaves, n, b->root, b->paths, b->lens), 0);
    b->siglen = sizeof b->sig;
    ck_assert_int_eq (ackproof_sign (key, b->root, n, b->sig, &b->siglen), 0);
}

// Fills the receipt the broker would forward for item i.
static liaison_receipt_t *
s_receipt (batch_t *b, const char *recipient, size_t i)
{
    Liaison__Receipt init = LIAISON__RECEIPT__INIT;
    b->pb = init;
    b->pb.id.data = b->ids[i];
    b->pb.id.len = 16;
    b->pb.recipient = (char *) recipient;
    b->pb.sender = b->senders[i];
    b->pb.status = LIAISON__RECEIPT_STATUS__READ;
    b->pb.time_ms = 1700000000999;
    b->pb.signature.data = b->sig;
    b->pb.signature.len = b->siglen;
    b->pb.proof_index = (uint32_t) i;
    b->pb.proof_size = (uint32_t) b->n;
    for (size_t e = 0; e < b->lens[i]; e++) {
        b->proof[e].data = b->paths[i][e];
        b->proof[e].len = 32;
    }
    b->pb.n_proof = b->lens[i];
    b->pb.proof = b->proof;
    b->receipt.r = &b->pb;
    b->receipt.next = NULL;
    return &b->receipt;
}

START_TEST (test_ackproof_receipt_verify)
{
    EVP_PKEY *key = EVP_EC_gen ("P-256");
    EVP_PKEY *other = EVP_EC_gen ("P-256");
    ck_assert_ptr_nonnull (key);
    ck_assert_ptr_nonnull (other);
    char cert[64], cert_cn[64], cert_other[64], junk[64];
    s_cert_file (key, "fr-pn", cert);
    s_cert_file (key, "fr-gn", cert_cn);
    s_cert_file (other, "fr-pn", cert_other);
    snprintf (junk, sizeof junk, "/tmp/ackproof-junk-XXXXXX");
    int fd = mkstemp (junk);
    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (write (fd, "not a certificate\n", 18), 18);
    close (fd);

    static batch_t b;
    s_batch_sign (&b, key, "fr-pn", 13);
    for (size_t i = 0; i < 13; i++)
        ck_assert_int_eq (liaison_receipt_verify (s_receipt (&b, "fr-pn", i), cert), LIAISON_OK);

    liaison_receipt_t *r = s_receipt (&b, "fr-pn", 6);
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_OK);
    // The certificate: another node's name on the same key, another key,
    // no file, not a certificate.
    ck_assert_int_eq (liaison_receipt_verify (r, cert_cn), LIAISON_EDENIED);
    ck_assert_int_eq (liaison_receipt_verify (r, cert_other), LIAISON_EDENIED);
    ck_assert_int_eq (liaison_receipt_verify (r, "/nonexistent/cert.pem"), LIAISON_EIO);
    ck_assert_int_eq (liaison_receipt_verify (r, junk), LIAISON_EIO);
    ck_assert_int_eq (liaison_receipt_verify (NULL, cert), LIAISON_EINVAL);
    ck_assert_int_eq (liaison_receipt_verify (r, NULL), LIAISON_EINVAL);
    ck_assert_uint_eq (ERR_peek_error (), 0);

    // The receipt, one field at a time.
    r->r->status = LIAISON__RECEIPT_STATUS__DELIVERED;
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    r->r->status = LIAISON__RECEIPT_STATUS__ACCEPTED;
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    r = s_receipt (&b, "fr-pn", 6);
    r->r->time_ms++;
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    r = s_receipt (&b, "fr-pn", 6);
    r->r->sender = (char *) "es-cnp";
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    r = s_receipt (&b, "fr-pn", 6);
    r->r->id.data = b.ids[7];
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    r = s_receipt (&b, "fr-pn", 6);
    r->r->id.len = 15;
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    // The same batch claimed by another recipient, with its name's cert.
    r = s_receipt (&b, "fr-gn", 6);
    ck_assert_int_eq (liaison_receipt_verify (r, cert_cn), LIAISON_EDENIED);
    r = s_receipt (&b, "fr-pn", 6);
    r->r->proof_index = 7;
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    r = s_receipt (&b, "fr-pn", 6);
    r->r->proof_size = 14;
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    r = s_receipt (&b, "fr-pn", 6);
    r->r->proof_size = 0;
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    // Leaf 0 of 13 sits in a tree of 14 exactly as in one of 13, so the
    // path leads to the signed root; only n in the statement refuses it.
    r = s_receipt (&b, "fr-pn", 0);
    uint8_t leaf0[32], root14[32];
    memcpy (leaf0, b.leaves[0], 32);
    ck_assert_int_eq (ackproof_root_from_path (leaf0, 0, 14, (const uint8_t (*)[32]) b.paths[0],
                                               b.lens[0], root14),
                      0);
    ck_assert_mem_eq (root14, b.root, 32);
    r->r->proof_size = 14;
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    r = s_receipt (&b, "fr-pn", 6);
    r->r->n_proof--;
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    r = s_receipt (&b, "fr-pn", 6);
    r->r->proof[1].len = 31;
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    r = s_receipt (&b, "fr-pn", 6);
    b.paths[6][2][9] ^= 0x80;
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    b.paths[6][2][9] ^= 0x80;
    r = s_receipt (&b, "fr-pn", 6);
    b.sig[b.siglen / 2] ^= 0x04;
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    b.sig[b.siglen / 2] ^= 0x04;
    r = s_receipt (&b, "fr-pn", 6);
    r->r->signature.len = 0;
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_EDENIED);
    r = s_receipt (&b, "fr-pn", 6);
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_OK);
    ck_assert_uint_eq (ERR_peek_error (), 0);

    // A batch of one: no path at all.
    s_batch_sign (&b, key, "fr-pn", 1);
    r = s_receipt (&b, "fr-pn", 0);
    ck_assert_int_eq (r->r->n_proof, 0);
    ck_assert_int_eq (liaison_receipt_verify (r, cert), LIAISON_OK);

    unlink (cert);
    unlink (cert_cn);
    unlink (cert_other);
    unlink (junk);
    EVP_PKEY_free (key);
    EVP_PKEY_free (other);
}
END_TEST

// The test PKI's own node key and certificate chain (leaf first), as a
// real node signs: a full batch, every receipt.
START_TEST (test_ackproof_receipt_test_pki)
{
    const char *dir = getenv ("LIAISON_PKI");
    if (!dir || !dir[0])
        dir = "build/test-pki";
    char keyfile[4096], chain[4096], other[4096];
    snprintf (keyfile, sizeof keyfile, "%s/nodes/fr-pn/node.key", dir);
    snprintf (chain, sizeof chain, "%s/nodes/fr-pn/node.pem", dir);
    snprintf (other, sizeof other, "%s/nodes/de-bka/node.pem", dir);
    FILE *f = fopen (keyfile, "r");
    ck_assert_msg (f,
                   "no test PKI at %s: run `bash tests/integration/make-test-pki.sh "
                   "build/test-pki` and set LIAISON_PKI",
                   dir);
    EVP_PKEY *key = PEM_read_PrivateKey (f, NULL, NULL, NULL);
    fclose (f);
    ck_assert_ptr_nonnull (key);

    static batch_t b;
    s_batch_sign (&b, key, "fr-pn", ACKPROOF_MAX_ITEMS);
    for (size_t i = 0; i < ACKPROOF_MAX_ITEMS; i++)
        ck_assert_int_eq (liaison_receipt_verify (s_receipt (&b, "fr-pn", i), chain), LIAISON_OK);
    ck_assert_int_eq (liaison_receipt_verify (s_receipt (&b, "fr-pn", 0), other), LIAISON_EDENIED);
    ck_assert_int_eq (liaison_receipt_verify (s_receipt (&b, "de-bka", 0), other), LIAISON_EDENIED);
    EVP_PKEY_free (key);
}
END_TEST

Suite *
ackproof_suite (void)
{
    Suite *s = suite_create ("ackproof");
    TCase *tc = tcase_create ("tree");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_ackproof_leaf_encoding);
    tcase_add_test (tc, test_ackproof_leaf_fields);
    tcase_add_test (tc, test_ackproof_root_shapes);
    tcase_add_test (tc, test_ackproof_path_shapes);
    tcase_add_test (tc, test_ackproof_ranges);
    tcase_add_test (tc, test_ackproof_every_path_small);
    tcase_add_test (tc, test_ackproof_every_path_large);
    tcase_add_test (tc, test_ackproof_wrong_fields);
    suite_add_tcase (s, tc);

    tc = tcase_create ("signature");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_ackproof_sign_ec);
    tcase_add_test (tc, test_ackproof_sign_rsa);
    tcase_add_test (tc, test_ackproof_receipt_verify);
    tcase_add_test (tc, test_ackproof_receipt_test_pki);
    suite_add_tcase (s, tc);
    return s;
}
