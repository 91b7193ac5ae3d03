/*  TLS 1.3 sessions over memory BIOs, and identity from X.509 certificates.

    This is the one file that owns OpenSSL's TLS objects. Ciphertext moves in
    and out as bytes (the connection table carries them over ZMQ_STREAM);
    plaintext goes in and out of the session. Both sides require TLS 1.3,
    AEAD suites, groups X25519 and P-256, ALPN "liaison/1", no session
    tickets, no compression, no renegotiation, and verify the peer's chain:
    the broker requires a node certificate (leaf, jurisdiction CA, root) that
    passes X509_STRICT and CRL checks for every CA; the client requires a
    broker certificate issued by the configured hub CA, with the expected
    name.                                                                     */
#ifndef LIAISON_WIRE_TLS_H
#define LIAISON_WIRE_TLS_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_TLS_ALPN "liaison/1"
#define WIRE_NODE_ID_MAX 34     /* 2 + 1 + 30 characters, plus NUL */

typedef struct wire_tls_ctx wire_tls_ctx_t;
typedef struct wire_tls wire_tls_t;

/* Where a context finds its certificates. Paths are borrowed. */
typedef struct {
    const char *cert;        /* own certificate chain file, PEM, leaf first */
    const char *key;         /* own private key, PEM */
    const char *ca;          /* federation root certificate(s), PEM */
    const char *crl_dir;     /* broker: directory of CRLs (PEM); required */
    const char *hub_ca;      /* client: hub CA that must issue the broker */
    const char *server_name; /* client: DNS name or IP the broker must carry */
} wire_tls_config_t;

/* A verified peer. For a node: node id from CN, jurisdiction from C. */
typedef struct {
    char node_id[WIRE_NODE_ID_MAX];
    char jurisdiction[3];
    char org[65];
    char serial[41];         /* certificate serial, hex */
    int64_t not_after_ms;    /* certificate expiry */
} wire_identity_t;

/* Checks a node id against ^[a-z]{2}-[a-z0-9-]{1,30}$. */
bool wire_node_id_valid (const char *id);

/* Builds a broker (server) context. Returns NULL and writes why into err
   (naming the file at fault) on failure. */
wire_tls_ctx_t *wire_tls_ctx_new_server (const wire_tls_config_t *cfg,
                                         char *err, size_t errlen);

/* Builds a client context; hub_ca and server_name are required. */
wire_tls_ctx_t *wire_tls_ctx_new_client (const wire_tls_config_t *cfg,
                                         char *err, size_t errlen);

/* Takes another reference; returns ctx. */
wire_tls_ctx_t *wire_tls_ctx_ref (wire_tls_ctx_t *ctx);

/* Drops a reference; sessions made from a context keep it alive. NULL-safe,
   sets *self_p to NULL. */
void wire_tls_ctx_destroy (wire_tls_ctx_t **self_p);

/* Calls fn for every CRL that expires within `within_ms` from now (or has
   expired, remaining_ms <= 0). Returns the number of such CRLs. */
typedef void (wire_crl_warn_fn) (void *arg, const char *issuer,
                                 int64_t remaining_ms);
int wire_tls_ctx_crl_check (wire_tls_ctx_t *self, int64_t within_ms,
                            wire_crl_warn_fn *fn, void *arg);

/* Number of CRLs loaded (broker contexts). */
int wire_tls_ctx_crl_count (const wire_tls_ctx_t *self);

/* Re-verifies a live session's peer chain under this (newer) context's
   trust store and CRLs. Returns 0 if still valid, -1 and the reason. */
int wire_tls_ctx_recheck (wire_tls_ctx_t *self, wire_tls_t *session,
                          char *reason, size_t reasonlen);

/* A new session (server or client by the context). NULL when out of
   memory. The session holds a reference to ctx. */
wire_tls_t *wire_tls_new (wire_tls_ctx_t *ctx);

/* NULL-safe; sets *self_p to NULL. */
void wire_tls_destroy (wire_tls_t **self_p);

/* Hands ciphertext received from the network to the session. 0 or -1. */
int wire_tls_push (wire_tls_t *self, const void *data, size_t size);

/* Drives the handshake: 1 done (peer verified, identity available), 0 needs
   more bytes from the peer, -1 refused or failed (wire_tls_reason says why;
   pending output may hold an alert worth sending). */
int wire_tls_handshake (wire_tls_t *self);

/* True once the handshake has completed. */
bool wire_tls_established (const wire_tls_t *self);

/* Reads plaintext: >0 bytes read, 0 nothing available yet, -1 the peer
   closed (clean close_notify) or the session failed (see reason). */
int wire_tls_read (wire_tls_t *self, void *buf, size_t size);

/* Encrypts plaintext into TLS records. 0 or -1. */
int wire_tls_write (wire_tls_t *self, const void *data, size_t size);

/* Ciphertext waiting to go to the peer. */
size_t wire_tls_pending (const wire_tls_t *self);

/* Moves up to `size` bytes of pending ciphertext into buf; returns count. */
size_t wire_tls_pull (wire_tls_t *self, void *buf, size_t size);

/* Queues a close_notify alert. */
void wire_tls_close (wire_tls_t *self);

/* True if the peer sent close_notify or a fatal alert. */
bool wire_tls_peer_closed (const wire_tls_t *self);

/* The verified peer identity (after the handshake), borrowed. For a client
   session, node_id holds the broker certificate's CN. */
const wire_identity_t *wire_tls_peer (const wire_tls_t *self);

/* The verified peer certificate's public key, one new reference (free
   with EVP_PKEY_free), or NULL before the handshake. */
EVP_PKEY *wire_tls_peer_key (const wire_tls_t *self);

/* Why the last operation failed; borrowed, never NULL. */
const char *wire_tls_reason (const wire_tls_t *self);

#endif
