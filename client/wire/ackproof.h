/*  Signed, batched delivery receipts: a Merkle tree over one Ack's items.

    A recipient acknowledges up to 256 messages with one Ack and one
    signature: it signs the root of a Merkle tree over the batch, and each
    Receipt the broker forwards to a sender carries that signature, the
    leaf's index, the batch size and the leaf's audit path, so every receipt
    verifies alone against the recipient's certificate. One ECDSA signature
    per batch instead of one per message (~20 us each) is what lets a node
    acknowledge 50k messages a second.

    The tree is RFC 6962's Merkle Tree Hash with SHA-256 and its domain
    separation (leaf = H(0x00 || input), interior = H(0x01 || left || right),
    split at the largest power of two below n); paths and their
    verification are RFC 9162 section 2.1.3. The leaf input is

        "liaison-ack-v1" || u8 status || i64 time_ms (big-endian)
        || u8 len || recipient || u8 len || sender || id (16 bytes)

    and the recipient signs "liaison-ack-root-v1" || u32 n (big-endian) ||
    root with SHA-256 (ECDSA P-256 in our PKI; RSA PKCS#1 v1.5 also works).
    Binding n into the statement means a path cannot be replayed against a
    tree of another size.

    Every function is thread-safe and allocates nothing the caller must
    free.                                                                     */
#ifndef LIAISON_WIRE_ACKPROOF_H
#define LIAISON_WIRE_ACKPROOF_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define ACKPROOF_MAX_ITEMS 256
#define ACKPROOF_MAX_PATH 8   /* ceil(log2(256)) */
#define ACKPROOF_HASH 32      /* SHA-256 */
#define ACKPROOF_MAX_NAME 255 /* names are length-prefixed by one byte */

/* The leaf hash of one acknowledged message. recipient and sender must be
   NUL-terminated and at most ACKPROOF_MAX_NAME bytes (node ids are at most
   33, and the codec checks names before anything reaches here): a longer
   name is a programming error and asserts. status is DELIVERED (2) or READ
   (3); it is hashed as one byte. */
void ackproof_leaf (const char *recipient, int status, int64_t time_ms, const char *sender,
                    const uint8_t id[16], uint8_t out[32]);

/* The root over n leaves (1..ACKPROOF_MAX_ITEMS); 0, or -1 when n is out of
   range or hashing failed. */
int ackproof_root (const uint8_t (*leaves)[32], size_t n, uint8_t root[32]);

/* The audit path of leaf `index` (< n), bottom-up as RFC 9162 orders it.
   Returns its length (0..ACKPROOF_MAX_PATH; 0 only when n is 1), or -1 when
   n or index is out of range or hashing failed. Costs about n hashes: to
   make the path of every leaf of a batch, use ackproof_paths_all. */
int ackproof_path (const uint8_t (*leaves)[32], size_t n, size_t index,
                   uint8_t path[ACKPROOF_MAX_PATH][32]);

/* The root and the audit paths of all n leaves at once, from one pass over
   the tree (n - 1 hashes, then copying): paths[i] gets leaf i's path and
   pathlens[i] its length. paths and pathlens hold n entries each. 0, or -1
   when n is out of range or hashing failed. */
int ackproof_paths_all (const uint8_t (*leaves)[32], size_t n, uint8_t root[32],
                        uint8_t (*paths)[ACKPROOF_MAX_PATH][32], uint8_t *pathlens);

/* Recomputes the root from a leaf hash and its audit path (RFC 9162
   2.1.3.2). 0, or -1 when n is out of range, index >= n, or npath is not
   the path length that index and n call for. The caller compares the
   result with a signed root. */
int ackproof_root_from_path (const uint8_t leaf[32], size_t index, size_t n,
                             const uint8_t (*path)[32], size_t npath, uint8_t root[32]);

/* Signs the statement for root and n with the recipient's private key
   (borrowed). *siglen is in: capacity of sig, out: signature length
   (EVP_PKEY_get_size (key) bytes always suffice; 72 for P-256). 0, or -1
   when n is out of range, the capacity is too small or signing failed. */
int ackproof_sign (EVP_PKEY *key, const uint8_t root[32], size_t n, uint8_t *sig, size_t *siglen);

/* Checks a signature over the statement for root and n with a public key
   (borrowed). 1 valid, 0 invalid (including a malformed signature), -1
   when the arguments are unusable (NULLs, n out of range, a key that
   cannot verify). Leaves OpenSSL's error queue as it found it. */
int ackproof_verify (EVP_PKEY *pub, const uint8_t root[32], size_t n, const uint8_t *sig,
                     size_t siglen);

#endif
