/*  Verifying a recipient's signed receipt against its certificate.          */
#include "internal.h"

#include "ackproof.h"
#include "codec.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

// True if the certificate's subject has exactly one CN and it is `node`:
// the same rule the broker applies when it takes a node id from a
// certificate (tls.c), so a receipt cannot borrow another node's key.
static bool
s_cn_is (X509 *cert, const char *node)
{
    const X509_NAME *subj = X509_get_subject_name (cert);
    int i = X509_NAME_get_index_by_NID (subj, NID_commonName, -1);
    if (i < 0 || X509_NAME_get_index_by_NID (subj, NID_commonName, i) >= 0)
        return false;
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data (X509_NAME_get_entry (subj, i));
    int n = ASN1_STRING_length (s);
    return n > 0 && (size_t) n == strlen (node)
           && memcmp (ASN1_STRING_get0_data (s), node, (size_t) n) == 0;
}

// The receipt's own checks, before any certificate is read: only DELIVERED
// and READ receipts carry a signature, and the proof must fit the tree.
static bool
s_receipt_signed (const Liaison__Receipt *r)
{
    if (r->status != LIAISON__RECEIPT_STATUS__DELIVERED
        && r->status != LIAISON__RECEIPT_STATUS__READ)
        return false;
    if (r->signature.len == 0 || !r->signature.data || r->id.len != WIRE_ID_LEN || !r->recipient
        || !r->sender || strlen (r->recipient) > ACKPROOF_MAX_NAME
        || strlen (r->sender) > ACKPROOF_MAX_NAME || r->proof_size == 0
        || r->proof_size > ACKPROOF_MAX_ITEMS || r->proof_index >= r->proof_size
        || r->n_proof > ACKPROOF_MAX_PATH || (r->n_proof && !r->proof))
        return false;
    for (size_t i = 0; i < r->n_proof; i++)
        if (r->proof[i].len != ACKPROOF_HASH || !r->proof[i].data)
            return false;
    return true;
}

int
liaison_receipt_verify (const liaison_receipt_t *receipt, const char *cert_pem_path)
{
    if (!receipt || !receipt->r || !cert_pem_path)
        return LIAISON_EINVAL;
    const Liaison__Receipt *r = receipt->r;
    if (!s_receipt_signed (r))
        return LIAISON_EDENIED;

    uint8_t leaf[32], root[32], path[ACKPROOF_MAX_PATH][32];
    ackproof_leaf (r->recipient, r->status, r->time_ms, r->sender, r->id.data, leaf);
    for (size_t i = 0; i < r->n_proof; i++)
        memcpy (path[i], r->proof[i].data, ACKPROOF_HASH);
    // A path of the wrong length for its index and size leads nowhere.
    if (ackproof_root_from_path (leaf, r->proof_index, r->proof_size, (const uint8_t (*)[32]) path,
                                 r->n_proof, root))
        return LIAISON_EDENIED;

    int rc = LIAISON_EIO;
    X509 *cert = NULL;
    EVP_PKEY *pub = NULL;
    // Reading a bad file leaves errors on this thread's queue; the caller's
    // TLS session must not find them there.
    ERR_set_mark ();
    FILE *f = fopen (cert_pem_path, "r");
    if (!f)
        goto done;
    cert = PEM_read_X509 (f, NULL, NULL, NULL);
    fclose (f);
    if (!cert || !(pub = X509_get_pubkey (cert)))
        goto done;
    if (!s_cn_is (cert, r->recipient)) {
        rc = LIAISON_EDENIED;
        goto done;
    }
    rc = ackproof_verify (pub, root, r->proof_size, r->signature.data, r->signature.len) == 1
             ? LIAISON_OK
             : LIAISON_EDENIED;
done:
    EVP_PKEY_free (pub);
    X509_free (cert);
    ERR_pop_to_mark ();
    return rc;
}
