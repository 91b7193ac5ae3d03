/*  libFuzzer target: signed receipts from hostile frames. The broker builds
    the Merkle tree of every Ack a node sends and checks its signature; a
    sender checks a DELIVERED or READ receipt's audit path and signature.
    Both run on bytes from the network.

    The input is a frame body. An Ack that decodes goes through what the
    broker does (leaves, all paths at once, signature check with a fixed
    key); every path must lead back to the root, and must match the path
    computed alone. A Receipt that decodes goes through what a sender does
    (leaf, root from the given path, signature check). Nothing may crash,
    and a signature made by the key must verify.

    Build and run: see `make fuzz`.                                          */
#include "ackproof.h"
#include "codec.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

static EVP_PKEY *s_key;

static void
s_ack (const Liaison__Ack *a)
{
    static uint8_t leaves[ACKPROOF_MAX_ITEMS][32];
    static uint8_t paths[ACKPROOF_MAX_ITEMS][ACKPROOF_MAX_PATH][32];
    static uint8_t lens[ACKPROOF_MAX_ITEMS];
    uint8_t root[32];
    for (size_t i = 0; i < a->n_items; i++)
        ackproof_leaf ("fr-pn", (int) a->status, a->time_ms, a->items[i]->sender,
                       a->items[i]->id.data, leaves[i]);
    if (ackproof_paths_all ((const uint8_t (*)[32]) leaves, a->n_items, root, paths, lens))
        abort ();  // the codec admits 1..256 items: always a tree
    for (size_t i = 0; i < a->n_items; i++) {
        uint8_t again[32], one[ACKPROOF_MAX_PATH][32];
        if (ackproof_root_from_path (leaves[i], i, a->n_items, (const uint8_t (*)[32]) paths[i],
                                     lens[i], again)
            || memcmp (again, root, 32))
            abort ();
        int n = ackproof_path ((const uint8_t (*)[32]) leaves, a->n_items, i, one);
        if (n != lens[i] || memcmp (one, paths[i], (size_t) n * 32))
            abort ();
    }
    // A hostile signature never verifies; one the key made always does.
    if (ackproof_verify (s_key, root, a->n_items, a->signature.data, a->signature.len) == 1)
        abort ();
    uint8_t sig[256];
    size_t siglen = sizeof sig;
    if (ackproof_sign (s_key, root, a->n_items, sig, &siglen)
        || ackproof_verify (s_key, root, a->n_items, sig, siglen) != 1)
        abort ();
}

static void
s_receipt (const Liaison__Receipt *r)
{
    uint8_t leaf[32], root[32];
    const uint8_t(*path)[32] = NULL;
    uint8_t buf[16][32];
    for (size_t i = 0; i < r->n_proof && i < 16; i++)
        memcpy (buf[i], r->proof[i].data, 32);  // the codec checked: 32 bytes each
    path = (const uint8_t (*)[32]) buf;
    ackproof_leaf (r->recipient, (int) r->status, r->time_ms, r->sender[0] ? r->sender : "x",
                   r->id.data, leaf);
    if (ackproof_root_from_path (leaf, r->proof_index, r->proof_size, path, r->n_proof, root) == 0)
        ackproof_verify (s_key, root, r->proof_size, r->signature.data, r->signature.len);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_key)
        s_key = EVP_EC_gen ("P-256");
    if (!s_key)
        abort ();
    wire_codec_error_t err;
    Liaison__Frame *f = wire_codec_decode (data, size, &err);
    if (!f)
        return 0;
    if (f->kind_case == LIAISON__FRAME__KIND_ACK)
        s_ack (f->ack);
    else if (f->kind_case == LIAISON__FRAME__KIND_RECEIPT)
        s_receipt (f->receipt);
    wire_codec_free (&f);
    return 0;
}
