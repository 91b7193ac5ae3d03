/*  TLS sessions and certificate identity; see tls.h.                        */
#include "tls.h"

#include <ctype.h>
#include <pthread.h>
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static const char s_suites[] = "TLS_AES_256_GCM_SHA384:"
                               "TLS_CHACHA20_POLY1305_SHA256:"
                               "TLS_AES_128_GCM_SHA256";
static const unsigned char s_alpn_wire[] = "\x09liaison/1";

struct wire_tls_ctx {
    SSL_CTX *ssl_ctx;
    bool server;
    atomic_int refs;
    X509 *hub_ca;        /* client: the issuer the broker must chain to;
                            broker: the CA of its own chain, never a node's */
    int crl_count;
};

struct wire_tls {
    wire_tls_ctx_t *ctx;
    SSL *ssl;
    BIO *rbio;           /* network -> TLS */
    BIO *wbio;           /* TLS -> network */
    bool established;
    bool peer_closed;
    wire_identity_t peer;
    char reason[256];
};

static int s_ex_index = -1;  /* SSL ex_data slot: the wire_tls_t */
static pthread_once_t s_ex_once = PTHREAD_ONCE_INIT;

static void
s_ex_init (void)
{
    s_ex_index = SSL_get_ex_new_index (0, NULL, NULL, NULL, NULL);
}

// Formats the OpenSSL error queue (or `fallback`) into buf, clearing it.
static void
s_ssl_error (char *buf, size_t len, const char *what)
{
    unsigned long e = ERR_get_error ();
    if (e) {
        char tmp[200];
        ERR_error_string_n (e, tmp, sizeof tmp);
        snprintf (buf, len, "%s: %s", what, tmp);
    }
    else
        snprintf (buf, len, "%s", what);
    ERR_clear_error ();
}

bool
wire_node_id_valid (const char *id)
{
    size_t n = id ? strlen (id) : 0;
    if (n < 4 || n > 33)
        return false;
    if (!islower ((unsigned char) id[0]) || !islower ((unsigned char) id[1])
        || id[2] != '-')
        return false;
    for (size_t i = 0; i < 2; i++)
        if (id[i] < 'a' || id[i] > 'z')
            return false;
    for (size_t i = 3; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

// Copies the single entry `nid` of a name into buf; -1 if absent or repeated.
static int
s_name_entry (const X509_NAME *name, int nid, char *buf, size_t len)
{
    int i = X509_NAME_get_index_by_NID (name, nid, -1);
    if (i < 0 || X509_NAME_get_index_by_NID (name, nid, i) >= 0)
        return -1;
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data (X509_NAME_get_entry (name, i));
    int n = ASN1_STRING_length (s);
    const unsigned char *d = ASN1_STRING_get0_data (s);
    if (n <= 0 || (size_t) n >= len || memchr (d, 0, (size_t) n))
        return -1;
    memcpy (buf, d, (size_t) n);
    buf[n] = 0;
    return 0;
}

static int64_t
s_asn1_time_ms (const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm (t, &tm))
        return 0;
    return (int64_t) timegm (&tm) * 1000;
}

// Reads the node identity from a verified leaf; 0, or -1 with reason.
static int
s_node_identity (X509 *leaf, wire_identity_t *id, char *reason, size_t len)
{
    const X509_NAME *subj = X509_get_subject_name (leaf);
    memset (id, 0, sizeof *id);
    if (s_name_entry (subj, NID_commonName, id->node_id, sizeof id->node_id)) {
        snprintf (reason, len, "certificate has no single valid CN (node id)");
        return -1;
    }
    if (s_name_entry (subj, NID_countryName, id->jurisdiction,
                      sizeof id->jurisdiction)
        || strlen (id->jurisdiction) != 2 || !isupper ((unsigned char) id->jurisdiction[0])
        || !isupper ((unsigned char) id->jurisdiction[1])) {
        snprintf (reason, len, "certificate has no single valid C= country code");
        return -1;
    }
    if (!wire_node_id_valid (id->node_id)) {
        snprintf (reason, len, "CN '%.40s' is not a valid node id", id->node_id);
        return -1;
    }
    if (id->node_id[0] != tolower ((unsigned char) id->jurisdiction[0])
        || id->node_id[1] != tolower ((unsigned char) id->jurisdiction[1])) {
        snprintf (reason, len, "node id '%s' does not begin with its country C=%s",
                  id->node_id, id->jurisdiction);
        return -1;
    }
    if (s_name_entry (subj, NID_organizationName, id->org, sizeof id->org))
        id->org[0] = 0;
    const ASN1_INTEGER *sn = X509_get0_serialNumber (leaf);
    BIGNUM *bn = ASN1_INTEGER_to_BN (sn, NULL);
    char *hex = bn ? BN_bn2hex (bn) : NULL;
    if (hex)
        snprintf (id->serial, sizeof id->serial, "%s", hex);
    OPENSSL_free (hex);
    BN_free (bn);
    id->not_after_ms = s_asn1_time_ms (X509_get0_notAfter (leaf));
    return 0;
}

// Defence in depth beyond the PKI's own constraints: a node certificate
// must come from a jurisdiction CA whose name constraint permits exactly
// the node's country, never from the hub CA.
static int
s_issuer_fits (const wire_tls_ctx_t *ctx, X509 *ca, const char *country, char *reason,
               size_t len)
{
    if (ctx->hub_ca && X509_cmp (ca, ctx->hub_ca) == 0) {
        snprintf (reason, len, "node certificate issued by the hub CA");
        return -1;
    }
    NAME_CONSTRAINTS *nc = X509_get_ext_d2i (ca, NID_name_constraints, NULL, NULL);
    int fits = 0;
    for (int i = 0; nc && i < sk_GENERAL_SUBTREE_num (nc->permittedSubtrees); i++) {
        GENERAL_SUBTREE *t = sk_GENERAL_SUBTREE_value (nc->permittedSubtrees, i);
        char cc[3];
        if (t->base->type == GEN_DIRNAME
            && s_name_entry (t->base->d.directoryName, NID_countryName, cc, sizeof cc) == 0
            && strcmp (cc, country) == 0)
            fits = 1;
    }
    NAME_CONSTRAINTS_free (nc);
    if (!fits) {
        snprintf (reason, len, "issuing CA is not constrained to C=%s (not a jurisdiction CA "
                  "of that country)", country);
        return -1;
    }
    return 0;
}

// The extra checks both sides make on the leaf once OpenSSL's chain
// verification passed (depth 0): our identity rules and the chain shape.
static int
s_verify_cb (int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data (store, SSL_get_ex_data_X509_STORE_CTX_idx ());
    wire_tls_t *self = ssl ? SSL_get_ex_data (ssl, s_ex_index) : NULL;
    if (!self)
        return 0;  // never verify without our checks
    int depth = X509_STORE_CTX_get_error_depth (store);
    if (!ok) {
        memset (&self->peer, 0, sizeof self->peer);
        if (!self->reason[0]) {
            int e = X509_STORE_CTX_get_error (store);
            snprintf (self->reason, sizeof self->reason,
                      "certificate verify failed at depth %d: %s", depth,
                      X509_verify_cert_error_string (e));
        }
        return 0;
    }
    if (depth != 0)
        return 1;
    STACK_OF (X509) *chain = X509_STORE_CTX_get0_chain (store);
    X509 *leaf = X509_STORE_CTX_get_current_cert (store);
    if (!chain || sk_X509_num (chain) != 3) {
        snprintf (self->reason, sizeof self->reason,
                  "certificate chain has %d certificates; expected leaf, "
                  "issuing CA and root", chain ? sk_X509_num (chain) : 0);
        X509_STORE_CTX_set_error (store, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    // OpenSSL's purpose check lets a leaf without extendedKeyUsage through;
    // ours must name the use explicitly.
    uint32_t want = self->ctx->server ? XKU_SSL_CLIENT : XKU_SSL_SERVER;
    if (!(X509_get_extension_flags (leaf) & EXFLAG_XKUSAGE)
        || !(X509_get_extended_key_usage (leaf) & want)) {
        snprintf (self->reason, sizeof self->reason, "certificate lacks extended key usage %s",
                  self->ctx->server ? "clientAuth" : "serverAuth");
        X509_STORE_CTX_set_error (store, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    if (self->ctx->server) {
        if (s_node_identity (leaf, &self->peer, self->reason, sizeof self->reason)
            || s_issuer_fits (self->ctx, sk_X509_value (chain, 1), self->peer.jurisdiction,
                              self->reason, sizeof self->reason)) {
            memset (&self->peer, 0, sizeof self->peer);  // never an unverified id
            X509_STORE_CTX_set_error (store, X509_V_ERR_APPLICATION_VERIFICATION);
            return 0;
        }
    }
    else {
        if (X509_cmp (sk_X509_value (chain, 1), self->ctx->hub_ca) != 0) {
            snprintf (self->reason, sizeof self->reason,
                      "broker certificate is not issued by the configured hub CA");
            X509_STORE_CTX_set_error (store, X509_V_ERR_APPLICATION_VERIFICATION);
            return 0;
        }
        memset (&self->peer, 0, sizeof self->peer);
        s_name_entry (X509_get_subject_name (leaf), NID_commonName,
                      self->peer.node_id, sizeof self->peer.node_id);
        self->peer.not_after_ms = s_asn1_time_ms (X509_get0_notAfter (leaf));
    }
    return 1;
}

static int
s_alpn_select (SSL *ssl, const unsigned char **out, unsigned char *outlen,
               const unsigned char *in, unsigned int inlen, void *arg)
{
    (void) arg;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto (&sel, outlen, s_alpn_wire, sizeof s_alpn_wire - 1,
                               in, inlen)
        != OPENSSL_NPN_NEGOTIATED) {
        wire_tls_t *self = SSL_get_ex_data (ssl, s_ex_index);
        if (self)
            snprintf (self->reason, sizeof self->reason,
                      "client does not offer ALPN %s", WIRE_TLS_ALPN);
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

// Loads every CRL found in dir into the store; returns the count or -1.
static int
s_load_crls (X509_STORE *store, const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir (dir);
    if (!d) {
        snprintf (err, errlen, "cannot open CRL directory %s: %m", dir);
        return -1;
    }
    int count = 0;
    struct dirent *de;
    while ((de = readdir (d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf (path, sizeof path, "%s/%s", dir, de->d_name);
        BIO *bio = BIO_new_file (path, "r");
        if (!bio)
            continue;
        X509_CRL *crl;
        int in_file = 0;
        while ((crl = PEM_read_bio_X509_CRL (bio, NULL, NULL, NULL))) {
            X509_STORE_add_crl (store, crl);
            X509_CRL_free (crl);
            in_file++;
        }
        ERR_clear_error ();
        BIO_free (bio);
        if (in_file == 0) {
            snprintf (err, errlen, "%s holds no PEM CRL; remove it or republish "
                      "it with liaison-pki crl", path);
            closedir (d);
            return -1;
        }
        count += in_file;
    }
    closedir (d);
    return count;
}

// Settings common to both sides.
static SSL_CTX *
s_ctx_common (const wire_tls_config_t *cfg, bool server, char *err, size_t errlen)
{
    pthread_once (&s_ex_once, s_ex_init);
    SSL_CTX *ctx = SSL_CTX_new (server ? TLS_server_method () : TLS_client_method ());
    if (!ctx) {
        s_ssl_error (err, errlen, "cannot create TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version (ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version (ctx, TLS1_3_VERSION);
    SSL_CTX_set_options (ctx, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION
                                  | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_num_tickets (ctx, 0);
    SSL_CTX_set_session_cache_mode (ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode (ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                               | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                               | SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_ciphersuites (ctx, s_suites) != 1
        || SSL_CTX_set1_groups_list (ctx, "X25519:P-256") != 1) {
        s_ssl_error (err, errlen, "cannot set TLS 1.3 suites or groups");
        goto fail;
    }
    if (!cfg->cert || !cfg->key || !cfg->ca) {
        snprintf (err, errlen, "TLS needs cert, key and ca files");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file (ctx, cfg->cert) != 1) {
        s_ssl_error (err, errlen, "cannot load certificate chain");
        size_t n = strlen (err);
        snprintf (err + n, errlen - n, " (%s)", cfg->cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file (ctx, cfg->key, SSL_FILETYPE_PEM) != 1
        || SSL_CTX_check_private_key (ctx) != 1) {
        s_ssl_error (err, errlen, "cannot load private key or it does not match the certificate");
        size_t n = strlen (err);
        snprintf (err + n, errlen - n, " (%s)", cfg->key);
        goto fail;
    }
    if (SSL_CTX_load_verify_file (ctx, cfg->ca) != 1) {
        s_ssl_error (err, errlen, "cannot load CA file");
        size_t n = strlen (err);
        snprintf (err + n, errlen - n, " (%s)", cfg->ca);
        goto fail;
    }
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param (ctx);
    X509_VERIFY_PARAM_set_flags (param, X509_V_FLAG_X509_STRICT);
    X509_VERIFY_PARAM_set_depth (param, 1);  // leaf, one CA, the root
    SSL_CTX_set_purpose (ctx, server ? X509_PURPOSE_SSL_CLIENT : X509_PURPOSE_SSL_SERVER);
    SSL_CTX_set_verify (ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                        s_verify_cb);
    return ctx;
fail:
    SSL_CTX_free (ctx);
    return NULL;
}

wire_tls_ctx_t *
wire_tls_ctx_new_server (const wire_tls_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->crl_dir) {
        snprintf (err, errlen, "TLS needs crl_dir: the broker refuses to run without CRLs");
        return NULL;
    }
    SSL_CTX *ctx = s_ctx_common (cfg, true, err, errlen);
    if (!ctx)
        return NULL;
    X509_STORE *store = SSL_CTX_get_cert_store (ctx);
    int crls = s_load_crls (store, cfg->crl_dir, err, errlen);
    if (crls < 0) {
        SSL_CTX_free (ctx);
        return NULL;
    }
    X509_VERIFY_PARAM_set_flags (SSL_CTX_get0_param (ctx),
                                 X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    SSL_CTX_set_alpn_select_cb (ctx, s_alpn_select, NULL);
    wire_tls_ctx_t *self = calloc (1, sizeof *self);
    if (!self) {
        SSL_CTX_free (ctx);
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->ssl_ctx = ctx;
    self->server = true;
    self->crl_count = crls;
    // Our own chain holds the hub CA: no node certificate may come from it.
    STACK_OF (X509) *own = NULL;
    if (SSL_CTX_get0_chain_certs (ctx, &own) == 1 && own && sk_X509_num (own) > 0) {
        self->hub_ca = sk_X509_value (own, 0);
        X509_up_ref (self->hub_ca);
    }
    atomic_init (&self->refs, 1);
    return self;
}

wire_tls_ctx_t *
wire_tls_ctx_new_client (const wire_tls_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->hub_ca || !cfg->server_name) {
        snprintf (err, errlen, "TLS client needs the hub CA file and the broker's name");
        return NULL;
    }
    SSL_CTX *ctx = s_ctx_common (cfg, false, err, errlen);
    if (!ctx)
        return NULL;
    X509 *hub = NULL;
    BIO *bio = BIO_new_file (cfg->hub_ca, "r");
    if (bio)
        hub = PEM_read_bio_X509 (bio, NULL, NULL, NULL);
    BIO_free (bio);
    if (!hub) {
        s_ssl_error (err, errlen, "cannot read hub CA certificate");
        size_t n = strlen (err);
        snprintf (err + n, errlen - n, " (%s)", cfg->hub_ca);
        SSL_CTX_free (ctx);
        return NULL;
    }
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param (ctx);
    int ok = X509_VERIFY_PARAM_set1_ip_asc (param, cfg->server_name);
    if (!ok) {
        ERR_clear_error ();
        ok = X509_VERIFY_PARAM_set1_host (param, cfg->server_name, 0);
        // The name must be in subjectAltName; never fall back to the CN.
        X509_VERIFY_PARAM_set_hostflags (param, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    }
    if (ok && cfg->crl_dir) {
        int crls = s_load_crls (SSL_CTX_get_cert_store (ctx), cfg->crl_dir, err, errlen);
        if (crls < 0)
            goto fail;
        X509_VERIFY_PARAM_set_flags (param, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    if (!ok || SSL_CTX_set_alpn_protos (ctx, s_alpn_wire, sizeof s_alpn_wire - 1) != 0) {
        s_ssl_error (err, errlen, "cannot set the broker name or ALPN");
        goto fail;
    }
    wire_tls_ctx_t *self = calloc (1, sizeof *self);
    if (!self)
        goto fail;
    self->ssl_ctx = ctx;
    self->hub_ca = hub;
    atomic_init (&self->refs, 1);
    return self;
fail:
    X509_free (hub);
    SSL_CTX_free (ctx);
    return NULL;
}

wire_tls_ctx_t *
wire_tls_ctx_ref (wire_tls_ctx_t *self)
{
    atomic_fetch_add (&self->refs, 1);
    return self;
}

void
wire_tls_ctx_destroy (wire_tls_ctx_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    wire_tls_ctx_t *self = *self_p;
    *self_p = NULL;
    if (atomic_fetch_sub (&self->refs, 1) != 1)
        return;
    SSL_CTX_free (self->ssl_ctx);
    X509_free (self->hub_ca);
    free (self);
}

int
wire_tls_ctx_crl_count (const wire_tls_ctx_t *self)
{
    return self->crl_count;
}

int
wire_tls_ctx_crl_check (wire_tls_ctx_t *self, int64_t within_ms,
                        wire_crl_warn_fn *fn, void *arg)
{
    X509_STORE *store = SSL_CTX_get_cert_store (self->ssl_ctx);
    STACK_OF (X509_OBJECT) *objs = X509_STORE_get0_objects (store);
    int64_t now = (int64_t) time (NULL) * 1000;
    int found = 0;
    for (int i = 0; i < sk_X509_OBJECT_num (objs); i++) {
        X509_CRL *crl = X509_OBJECT_get0_X509_CRL (sk_X509_OBJECT_value (objs, i));
        if (!crl)
            continue;
        int64_t next = s_asn1_time_ms (X509_CRL_get0_nextUpdate (crl));
        if (next && next - now <= within_ms) {
            found++;
            if (fn) {
                char issuer[256];
                X509_NAME_oneline (X509_CRL_get_issuer (crl), issuer, sizeof issuer);
                fn (arg, issuer, next - now);
            }
        }
    }
    return found;
}

int
wire_tls_ctx_recheck (wire_tls_ctx_t *self, wire_tls_t *session, char *reason,
                      size_t reasonlen)
{
    X509 *leaf = SSL_get0_peer_certificate (session->ssl);
    STACK_OF (X509) *sent = SSL_get_peer_cert_chain (session->ssl);
    if (!leaf) {
        snprintf (reason, reasonlen, "session has no peer certificate");
        return -1;
    }
    X509_STORE_CTX *vctx = X509_STORE_CTX_new ();
    int rc = -1;
    if (vctx && X509_STORE_CTX_init (vctx, SSL_CTX_get_cert_store (self->ssl_ctx),
                                     leaf, sent)) {
        X509_VERIFY_PARAM_set1 (X509_STORE_CTX_get0_param (vctx),
                                SSL_CTX_get0_param (self->ssl_ctx));
        X509_STORE_CTX_set_purpose (vctx, self->server ? X509_PURPOSE_SSL_CLIENT
                                                       : X509_PURPOSE_SSL_SERVER);
        if (X509_verify_cert (vctx) == 1)
            rc = 0;
        else
            snprintf (reason, reasonlen, "%s",
                      X509_verify_cert_error_string (X509_STORE_CTX_get_error (vctx)));
    }
    else
        snprintf (reason, reasonlen, "cannot set up verification");
    X509_STORE_CTX_free (vctx);
    ERR_clear_error ();
    return rc;
}

wire_tls_t *
wire_tls_new (wire_tls_ctx_t *ctx)
{
    wire_tls_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->ssl = SSL_new (ctx->ssl_ctx);
    self->rbio = BIO_new (BIO_s_mem ());
    self->wbio = BIO_new (BIO_s_mem ());
    if (!self->ssl || !self->rbio || !self->wbio) {
        SSL_free (self->ssl);
        BIO_free (self->rbio);
        BIO_free (self->wbio);
        free (self);
        return NULL;
    }
    // An empty memory BIO reports "retry", not EOF.
    BIO_set_mem_eof_return (self->rbio, -1);
    SSL_set_bio (self->ssl, self->rbio, self->wbio);
    SSL_set_ex_data (self->ssl, s_ex_index, self);
    if (ctx->server)
        SSL_set_accept_state (self->ssl);
    else
        SSL_set_connect_state (self->ssl);
    atomic_fetch_add (&ctx->refs, 1);
    self->ctx = ctx;
    return self;
}

void
wire_tls_destroy (wire_tls_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    wire_tls_t *self = *self_p;
    SSL_free (self->ssl);  // frees both BIOs
    wire_tls_ctx_destroy (&self->ctx);
    free (self);
    *self_p = NULL;
}

int
wire_tls_push (wire_tls_t *self, const void *data, size_t size)
{
    if (size == 0)
        return 0;
    return BIO_write (self->rbio, data, (int) size) == (int) size ? 0 : -1;
}

// Records why an SSL call failed, keeping an earlier, more specific reason.
static void
s_fail (wire_tls_t *self, int ssl_err, const char *what)
{
    if (self->reason[0])
        return;
    long vr = SSL_get_verify_result (self->ssl);
    if (vr != X509_V_OK) {
        snprintf (self->reason, sizeof self->reason, "certificate verify failed: %s",
                  X509_verify_cert_error_string (vr));
        ERR_clear_error ();
    }
    else if (ssl_err == SSL_ERROR_ZERO_RETURN) {
        snprintf (self->reason, sizeof self->reason, "peer closed");
    }
    else
        s_ssl_error (self->reason, sizeof self->reason, what);
}

int
wire_tls_handshake (wire_tls_t *self)
{
    if (self->established)
        return 1;
    int rc = SSL_do_handshake (self->ssl);
    if (rc == 1) {
        const unsigned char *alpn = NULL;
        unsigned int alpn_len = 0;
        SSL_get0_alpn_selected (self->ssl, &alpn, &alpn_len);
        if (alpn_len != sizeof s_alpn_wire - 2
            || memcmp (alpn, s_alpn_wire + 1, alpn_len) != 0) {
            snprintf (self->reason, sizeof self->reason,
                      "peer did not agree on ALPN %s", WIRE_TLS_ALPN);
            return -1;
        }
        if (self->ctx->server && !self->peer.node_id[0]) {
            snprintf (self->reason, sizeof self->reason, "peer sent no certificate");
            return -1;
        }
        self->established = true;
        return 1;
    }
    int e = SSL_get_error (self->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    s_fail (self, e, "TLS handshake failed");
    return -1;
}

bool
wire_tls_established (const wire_tls_t *self)
{
    return self->established;
}

int
wire_tls_read (wire_tls_t *self, void *buf, size_t size)
{
    size_t got = 0;
    int rc = SSL_read_ex (self->ssl, buf, size, &got);
    if (rc == 1)
        return (int) got;
    int e = SSL_get_error (self->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        self->peer_closed = true;
    s_fail (self, e, "TLS read failed");
    return -1;
}

int
wire_tls_write (wire_tls_t *self, const void *data, size_t size)
{
    const uint8_t *p = data;
    while (size > 0) {
        size_t done = 0;
        if (SSL_write_ex (self->ssl, p, size, &done) != 1) {
            s_fail (self, SSL_get_error (self->ssl, 0), "TLS write failed");
            return -1;
        }
        p += done;
        size -= done;
    }
    return 0;
}

size_t
wire_tls_pending (const wire_tls_t *self)
{
    return BIO_ctrl_pending (self->wbio);
}

size_t
wire_tls_pull (wire_tls_t *self, void *buf, size_t size)
{
    int n = BIO_read (self->wbio, buf, (int) (size > INT32_MAX ? INT32_MAX : size));
    return n > 0 ? (size_t) n : 0;
}

void
wire_tls_close (wire_tls_t *self)
{
    if (self->established)
        SSL_shutdown (self->ssl);
    ERR_clear_error ();
}

bool
wire_tls_peer_closed (const wire_tls_t *self)
{
    // A close_notify or a fatal alert from the peer.
    return self->peer_closed || (SSL_get_shutdown (self->ssl) & SSL_RECEIVED_SHUTDOWN);
}

EVP_PKEY *
wire_tls_peer_key (const wire_tls_t *self)
{
    if (!self || !self->ssl)
        return NULL;
    X509 *leaf = SSL_get0_peer_certificate (self->ssl);
    return leaf ? X509_get_pubkey (leaf) : NULL;
}

const wire_identity_t *
wire_tls_peer (const wire_tls_t *self)
{
    return &self->peer;
}

const char *
wire_tls_reason (const wire_tls_t *self)
{
    return self->reason[0] ? self->reason : "no error";
}
