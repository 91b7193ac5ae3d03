/*  TLS contexts and sessions (client/wire/tls.c), driven in memory: the two
    ends of a handshake exchange bytes through wire_tls_pull/wire_tls_push,
    no sockets. Certificates come from the test PKI in $LIAISON_PKI (made by
    tests/integration/make-test-pki.sh).                                    */
#include "suites.h"

#include "tls.h"

#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

// ------------------------------------------------------------- helpers

// The test PKI directory; the test fails with a hint when it is missing.
static const char *
s_pki (void)
{
    const char *dir = getenv ("LIAISON_PKI");
    if (!dir || !dir[0])
        dir = "build/test-pki";
    char probe[4096];
    snprintf (probe, sizeof probe, "%s/root/ca.pem", dir);
    ck_assert_msg (access (probe, R_OK) == 0,
                   "no test PKI at %s: run `bash tests/integration/make-test-pki.sh "
                   "build/test-pki` and set LIAISON_PKI",
                   dir);
    return dir;
}

// A path inside the PKI, in one of a ring of static buffers (a test never
// holds more than a few at once).
static const char *
s_file (const char *fmt, ...)
{
    static char ring[16][4096];
    static int next;
    char *buf = ring[next++ % 16];
    int n = snprintf (buf, sizeof ring[0], "%s/", s_pki ());
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (buf + n, sizeof ring[0] - (size_t) n, fmt, ap);
    va_end (ap);
    return buf;
}

static wire_tls_config_t
s_broker_config (void)
{
    wire_tls_config_t cfg = {
        .cert = s_file ("broker/hub.pem"),
        .key = s_file ("broker/hub.key"),
        .ca = s_file ("root/ca.pem"),
        .crl_dir = s_file ("crl"),
    };
    return cfg;
}

// A client configuration for a node directory ("nodes/fr-pn", "bad/expired").
static wire_tls_config_t
s_node_config (const char *dir, const char *server_name)
{
    wire_tls_config_t cfg = {
        .cert = s_file ("%s/node.pem", dir),
        .key = s_file ("%s/node.key", dir),
        .ca = s_file ("root/ca.pem"),
        .hub_ca = s_file ("hub/ca.pem"),
        .server_name = server_name,
    };
    return cfg;
}

static wire_tls_ctx_t *
s_server_ctx (void)
{
    char err[512] = "";
    wire_tls_config_t cfg = s_broker_config ();
    wire_tls_ctx_t *ctx = wire_tls_ctx_new_server (&cfg, err, sizeof err);
    ck_assert_msg (ctx != NULL, "server context: %s", err);
    return ctx;
}

static wire_tls_ctx_t *
s_client_ctx (const char *dir, const char *server_name)
{
    char err[512] = "";
    wire_tls_config_t cfg = s_node_config (dir, server_name);
    wire_tls_ctx_t *ctx = wire_tls_ctx_new_client (&cfg, err, sizeof err);
    ck_assert_msg (ctx != NULL, "client context for %s: %s", dir, err);
    return ctx;
}

// Moves every pending ciphertext byte from one session to the other.
static size_t
s_move (wire_tls_t *from, wire_tls_t *to)
{
    uint8_t buf[4096];
    size_t total = 0, n;
    while ((n = wire_tls_pull (from, buf, sizeof buf)) > 0) {
        ck_assert_int_eq (wire_tls_push (to, buf, n), 0);
        total += n;
    }
    ck_assert_uint_eq (wire_tls_pending (from), 0);
    return total;
}

// Runs the handshake until both ends are done or one has failed.
static void
s_handshake (wire_tls_t *cli, wire_tls_t *srv, int *crc, int *src)
{
    *crc = *src = 0;
    for (int round = 0; round < 20 && (*crc == 0 || *src == 0); round++) {
        if (*crc == 0)
            *crc = wire_tls_handshake (cli);
        s_move (cli, srv);
        if (*src == 0)
            *src = wire_tls_handshake (srv);
        s_move (srv, cli);
        if (*crc < 0 || *src < 0)
            break;
    }
}

// A pair of sessions from two contexts (the sessions hold references; the
// contexts are dropped here).
typedef struct {
    wire_tls_t *cli;
    wire_tls_t *srv;
    int crc, src;
} pair_t;

static void
s_pair_run (pair_t *p, wire_tls_ctx_t *cctx, wire_tls_ctx_t *sctx)
{
    p->cli = wire_tls_new (cctx);
    p->srv = wire_tls_new (sctx);
    ck_assert_ptr_nonnull (p->cli);
    ck_assert_ptr_nonnull (p->srv);
    wire_tls_ctx_destroy (&cctx);
    wire_tls_ctx_destroy (&sctx);
    s_handshake (p->cli, p->srv, &p->crc, &p->src);
}

static void
s_pair_free (pair_t *p)
{
    wire_tls_destroy (&p->cli);
    wire_tls_destroy (&p->srv);
    ck_assert_ptr_null (p->cli);
    ck_assert_ptr_null (p->srv);
}

// Serial of a PEM certificate, as upper-case hex (BN_bn2hex).
static void
s_cert_serial (const char *path, char *out, size_t len)
{
    FILE *f = fopen (path, "r");
    ck_assert_ptr_nonnull (f);
    X509 *x = PEM_read_X509 (f, NULL, NULL, NULL);
    fclose (f);
    ck_assert_ptr_nonnull (x);
    BIGNUM *bn = ASN1_INTEGER_to_BN (X509_get0_serialNumber (x), NULL);
    char *hex = BN_bn2hex (bn);
    snprintf (out, len, "%s", hex);
    OPENSSL_free (hex);
    BN_free (bn);
    X509_free (x);
}

static int
s_rm (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove (path);
}

static void
s_rmtree (const char *dir)
{
    nftw (dir, s_rm, 8, FTW_DEPTH | FTW_PHYS);
}

static void
s_copy (const char *from, const char *to)
{
    FILE *in = fopen (from, "rb");
    FILE *out = fopen (to, "wb");
    ck_assert_ptr_nonnull (in);
    ck_assert_ptr_nonnull (out);
    char buf[4096];
    size_t n;
    while ((n = fread (buf, 1, sizeof buf, in)) > 0)
        ck_assert_uint_eq (fwrite (buf, 1, n, out), n);
    fclose (in);
    ck_assert_int_eq (fclose (out), 0);
}

static void
s_write (const char *path, const char *text)
{
    FILE *f = fopen (path, "w");
    ck_assert_ptr_nonnull (f);
    fputs (text, f);
    ck_assert_int_eq (fclose (f), 0);
}

// Number of CRL files in the PKI's crl directory.
static int
s_crl_files (void)
{
    static const char *names[] = {"root", "hub", "FR", "DE", "IT", "ES"};
    int n = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (access (s_file ("crl/%s.crl.pem", names[i]), R_OK) == 0)
            n++;
    return n;
}

// Issues a node certificate from a CA of the test PKI ("jur/FR", "root")
// with the given subject entries (pairs of field, value; NULL-terminated)
// into dir, as node.pem (leaf and CA) and node.key: for certificates the
// PKI tool refuses to make.
static void
s_mint (const char *dir, const char *issuer, const char *const *subject)
{
    FILE *f = fopen (s_file ("%s/ca.pem", issuer), "r");
    ck_assert_ptr_nonnull (f);
    X509 *ca = PEM_read_X509 (f, NULL, NULL, NULL);
    fclose (f);
    f = fopen (s_file ("%s/ca.key", issuer), "r");
    ck_assert_ptr_nonnull (f);
    EVP_PKEY *ca_key = PEM_read_PrivateKey (f, NULL, NULL, NULL);
    fclose (f);
    ck_assert_ptr_nonnull (ca);
    ck_assert_ptr_nonnull (ca_key);

    EVP_PKEY *key = EVP_EC_gen ("P-256");
    X509 *x = X509_new ();
    ck_assert_ptr_nonnull (key);
    ck_assert_ptr_nonnull (x);
    X509_set_version (x, 2);
    BIGNUM *bn = BN_new ();
    BN_rand (bn, 120, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY);
    BN_to_ASN1_INTEGER (bn, X509_get_serialNumber (x));
    BN_free (bn);
    X509_gmtime_adj (X509_getm_notBefore (x), -3600);
    X509_gmtime_adj (X509_getm_notAfter (x), 86400);
    X509_NAME *name = X509_get_subject_name (x);
    for (int i = 0; subject[i]; i += 2)
        ck_assert_int_eq (X509_NAME_add_entry_by_txt (name, subject[i], MBSTRING_UTF8,
                                                      (const unsigned char *) subject[i + 1], -1,
                                                      -1, 0),
                          1);
    X509_set_issuer_name (x, X509_get_subject_name (ca));
    X509_set_pubkey (x, key);
    static const struct {
        int nid;
        const char *value;
    } exts[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature,keyAgreement"},
        {NID_ext_key_usage, "clientAuth,emailProtection"},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
    };
    X509V3_CTX v3;
    X509V3_set_ctx (&v3, ca, x, NULL, NULL, 0);
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        X509_EXTENSION *ext = X509V3_EXT_conf_nid (NULL, &v3, exts[i].nid, exts[i].value);
        ck_assert_ptr_nonnull (ext);
        X509_add_ext (x, ext, -1);
        X509_EXTENSION_free (ext);
    }
    ck_assert_int_gt (X509_sign (x, ca_key, EVP_sha256 ()), 0);

    char path[4096];
    snprintf (path, sizeof path, "%s/node.pem", dir);
    f = fopen (path, "w");
    ck_assert_ptr_nonnull (f);
    PEM_write_X509 (f, x);
    PEM_write_X509 (f, ca);
    ck_assert_int_eq (fclose (f), 0);
    snprintf (path, sizeof path, "%s/node.key", dir);
    f = fopen (path, "w");
    ck_assert_ptr_nonnull (f);
    PEM_write_PrivateKey (f, key, NULL, NULL, 0, NULL, NULL);
    ck_assert_int_eq (fclose (f), 0);
    X509_free (x);
    EVP_PKEY_free (key);
    X509_free (ca);
    EVP_PKEY_free (ca_key);
}

// Handshakes with a freshly minted certificate; returns the server result
// and copies the server's reason and the peer's node id.
static int
s_minted_handshake (const char *issuer, const char *const *subject, char *reason, size_t len,
                    char *node_id, size_t idlen)
{
    char dir[] = "/tmp/liaison-mint-XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    s_mint (dir, issuer, subject);
    char cert[4096], key[4096], err[512] = "";
    snprintf (cert, sizeof cert, "%s/node.pem", dir);
    snprintf (key, sizeof key, "%s/node.key", dir);
    wire_tls_config_t cfg = s_node_config ("nodes/fr-pn", "localhost");
    cfg.cert = cert;
    cfg.key = key;
    wire_tls_ctx_t *cctx = wire_tls_ctx_new_client (&cfg, err, sizeof err);
    ck_assert_msg (cctx != NULL, "%s", err);
    pair_t p;
    s_pair_run (&p, cctx, s_server_ctx ());
    snprintf (reason, len, "%s", wire_tls_reason (p.srv));
    snprintf (node_id, idlen, "%s", p.src == 1 ? wire_tls_peer (p.srv)->node_id : "");
    int src = p.src;
    s_pair_free (&p);
    s_rmtree (dir);
    return src;
}

// ------------------------------------------------------------ contexts

START_TEST (test_tls_server_ctx)
{
    wire_tls_ctx_t *ctx = s_server_ctx ();
    ck_assert_int_eq (wire_tls_ctx_crl_count (ctx), s_crl_files ());
    ck_assert_int_ge (wire_tls_ctx_crl_count (ctx), 6);
    // References: a second holder keeps the context alive.
    wire_tls_ctx_t *ref = wire_tls_ctx_ref (ctx);
    ck_assert_ptr_eq (ref, ctx);
    wire_tls_ctx_destroy (&ctx);
    ck_assert_ptr_null (ctx);
    ck_assert_int_ge (wire_tls_ctx_crl_count (ref), 6);
    wire_tls_ctx_destroy (&ref);
    wire_tls_ctx_destroy (&ref);
    wire_tls_ctx_destroy (NULL);
    wire_tls_destroy (NULL);
}
END_TEST

// Building a server context with one thing wrong fails, naming it.
static void
s_assert_server_fails (const wire_tls_config_t *cfg, const char *needle, const char *needle2)
{
    char err[512] = "";
    wire_tls_ctx_t *ctx = wire_tls_ctx_new_server (cfg, err, sizeof err);
    if (ctx) {
        wire_tls_ctx_destroy (&ctx);
        ck_abort_msg ("server context built; expected an error naming %s", needle);
    }
    ck_assert_msg (strstr (err, needle) != NULL, "error '%s' does not name '%s'", err, needle);
    if (needle2)
        ck_assert_msg (strstr (err, needle2) != NULL, "error '%s' does not say '%s'", err, needle2);
}

START_TEST (test_tls_server_ctx_errors)
{
    wire_tls_config_t cfg = s_broker_config ();
    cfg.cert = s_file ("broker/missing.pem");
    s_assert_server_fails (&cfg, cfg.cert, "certificate");

    cfg = s_broker_config ();
    cfg.key = s_file ("broker/missing.key");
    s_assert_server_fails (&cfg, cfg.key, "key");

    cfg = s_broker_config ();
    cfg.key = s_file ("nodes/fr-pn/node.key");
    s_assert_server_fails (&cfg, cfg.key, "does not match");

    cfg = s_broker_config ();
    cfg.ca = s_file ("root/missing.pem");
    s_assert_server_fails (&cfg, cfg.ca, "CA");

    cfg = s_broker_config ();
    cfg.crl_dir = s_file ("no-such-crl-dir");
    s_assert_server_fails (&cfg, cfg.crl_dir, "CRL");

    cfg = s_broker_config ();
    cfg.crl_dir = NULL;
    s_assert_server_fails (&cfg, "crl_dir", NULL);

    cfg = s_broker_config ();
    cfg.cert = NULL;
    s_assert_server_fails (&cfg, "cert", NULL);
    cfg = s_broker_config ();
    cfg.ca = NULL;
    s_assert_server_fails (&cfg, "ca", NULL);
}
END_TEST

START_TEST (test_tls_server_ctx_bad_crl_file)
{
    char dir[] = "/tmp/liaison-crl-XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    char path[4096];
    snprintf (path, sizeof path, "%s/root.crl.pem", dir);
    s_copy (s_file ("crl/root.crl.pem"), path);
    snprintf (path, sizeof path, "%s/FR.crl.pem", dir);
    s_copy (s_file ("crl/FR.crl.pem"), path);
    snprintf (path, sizeof path, "%s/notes.txt", dir);
    s_write (path, "not a CRL\n");

    wire_tls_config_t cfg = s_broker_config ();
    cfg.crl_dir = dir;
    s_assert_server_fails (&cfg, "notes.txt", "no PEM CRL");

    // A certificate is not a CRL either.
    unlink (path);
    snprintf (path, sizeof path, "%s/ca.pem", dir);
    s_copy (s_file ("root/ca.pem"), path);
    s_assert_server_fails (&cfg, "ca.pem", "no PEM CRL");

    // Without the intruder the directory loads, with its two CRLs.
    unlink (path);
    char err[512] = "";
    wire_tls_ctx_t *ctx = wire_tls_ctx_new_server (&cfg, err, sizeof err);
    ck_assert_msg (ctx != NULL, "%s", err);
    ck_assert_int_eq (wire_tls_ctx_crl_count (ctx), 2);
    wire_tls_ctx_destroy (&ctx);
    s_rmtree (dir);
}
END_TEST

// An empty CRL directory loads, but then no client passes the CRL check:
// the broker fails closed.
START_TEST (test_tls_server_empty_crl_dir_fails_closed)
{
    char dir[] = "/tmp/liaison-crl-XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    wire_tls_config_t cfg = s_broker_config ();
    cfg.crl_dir = dir;
    char err[512] = "";
    wire_tls_ctx_t *sctx = wire_tls_ctx_new_server (&cfg, err, sizeof err);
    ck_assert_msg (sctx != NULL, "%s", err);
    ck_assert_int_eq (wire_tls_ctx_crl_count (sctx), 0);
    pair_t p;
    s_pair_run (&p, s_client_ctx ("nodes/fr-pn", "localhost"), sctx);
    ck_assert_int_eq (p.src, -1);
    ck_assert_msg (strstr (wire_tls_reason (p.srv), "CRL") != NULL, "reason: %s",
                   wire_tls_reason (p.srv));
    s_pair_free (&p);
    s_rmtree (dir);
}
END_TEST

START_TEST (test_tls_client_ctx_errors)
{
    char err[512];
    wire_tls_config_t cfg = s_node_config ("nodes/fr-pn", "localhost");
    cfg.hub_ca = NULL;
    err[0] = 0;
    ck_assert_ptr_null (wire_tls_ctx_new_client (&cfg, err, sizeof err));
    ck_assert_msg (strstr (err, "hub CA") != NULL, "%s", err);

    cfg = s_node_config ("nodes/fr-pn", NULL);
    err[0] = 0;
    ck_assert_ptr_null (wire_tls_ctx_new_client (&cfg, err, sizeof err));
    ck_assert_msg (strstr (err, "name") != NULL, "%s", err);

    cfg = s_node_config ("nodes/fr-pn", "localhost");
    cfg.hub_ca = s_file ("hub/missing.pem");
    err[0] = 0;
    ck_assert_ptr_null (wire_tls_ctx_new_client (&cfg, err, sizeof err));
    ck_assert_msg (strstr (err, cfg.hub_ca) != NULL, "%s", err);

    cfg = s_node_config ("nodes/fr-pn", "localhost");
    cfg.cert = s_file ("nodes/fr-pn/missing.pem");
    err[0] = 0;
    ck_assert_ptr_null (wire_tls_ctx_new_client (&cfg, err, sizeof err));
    ck_assert_msg (strstr (err, cfg.cert) != NULL, "%s", err);

    cfg = s_node_config ("nodes/fr-pn", "localhost");
    cfg.key = s_file ("nodes/fr-gn/node.key");
    err[0] = 0;
    ck_assert_ptr_null (wire_tls_ctx_new_client (&cfg, err, sizeof err));
    ck_assert_msg (strstr (err, cfg.key) != NULL, "%s", err);

    cfg = s_node_config ("nodes/fr-pn", "localhost");
    cfg.crl_dir = s_file ("no-such-crl-dir");
    err[0] = 0;
    ck_assert_ptr_null (wire_tls_ctx_new_client (&cfg, err, sizeof err));
    ck_assert_msg (strstr (err, cfg.crl_dir) != NULL, "%s", err);

    // The optional CRL directory, when valid, is loaded.
    cfg = s_node_config ("nodes/fr-pn", "localhost");
    cfg.crl_dir = s_file ("crl");
    wire_tls_ctx_t *ctx = wire_tls_ctx_new_client (&cfg, err, sizeof err);
    ck_assert_msg (ctx != NULL, "%s", err);
    ck_assert_int_eq (wire_tls_ctx_crl_check (ctx, INT64_MAX, NULL, NULL), s_crl_files ());
    wire_tls_ctx_destroy (&ctx);
}
END_TEST

typedef struct {
    int calls;
    int bad; /* calls with an empty issuer or no time left */
} crl_seen_t;

static void
s_crl_warn (void *arg, const char *issuer, int64_t remaining_ms)
{
    crl_seen_t *seen = arg;
    seen->calls++;
    if (!issuer || !issuer[0] || remaining_ms <= 0)
        seen->bad++;
}

START_TEST (test_tls_crl_check)
{
    wire_tls_ctx_t *ctx = s_server_ctx ();
    int all = wire_tls_ctx_crl_count (ctx);
    ck_assert_int_ge (all, 6);

    crl_seen_t seen = {0, 0};
    ck_assert_int_eq (wire_tls_ctx_crl_check (ctx, INT64_MAX, s_crl_warn, &seen), all);
    ck_assert_int_eq (seen.calls, all);
    ck_assert_int_eq (seen.bad, 0);

    // Fresh CRLs: none expires within 0 ms, nor within a minute.
    memset (&seen, 0, sizeof seen);
    ck_assert_int_eq (wire_tls_ctx_crl_check (ctx, 0, s_crl_warn, &seen), 0);
    ck_assert_int_eq (wire_tls_ctx_crl_check (ctx, 60000, s_crl_warn, &seen), 0);
    ck_assert_int_eq (seen.calls, 0);
    // No callback is fine.
    ck_assert_int_eq (wire_tls_ctx_crl_check (ctx, INT64_MAX, NULL, NULL), all);
    wire_tls_ctx_destroy (&ctx);
}
END_TEST

// ----------------------------------------------------------- handshakes

START_TEST (test_tls_handshake_fr_pn)
{
    pair_t p;
    s_pair_run (&p, s_client_ctx ("nodes/fr-pn", "localhost"), s_server_ctx ());
    ck_assert_msg (p.crc == 1, "client: %s", wire_tls_reason (p.cli));
    ck_assert_msg (p.src == 1, "server: %s", wire_tls_reason (p.srv));
    ck_assert (wire_tls_established (p.cli));
    ck_assert (wire_tls_established (p.srv));
    ck_assert_str_eq (wire_tls_reason (p.srv), "no error");

    const wire_identity_t *id = wire_tls_peer (p.srv);
    ck_assert_str_eq (id->node_id, "fr-pn");
    ck_assert_str_eq (id->jurisdiction, "FR");
    ck_assert_str_eq (id->org, "Police nationale");
    char serial[64];
    s_cert_serial (s_file ("nodes/fr-pn/cert.pem"), serial, sizeof serial);
    ck_assert_uint_gt (strlen (id->serial), 0);
    ck_assert_str_eq (id->serial, serial);
    ck_assert_int_gt (id->not_after_ms, (int64_t) time (NULL) * 1000);

    // The client sees the broker's name.
    ck_assert_str_eq (wire_tls_peer (p.cli)->node_id, "hub");
    ck_assert_int_gt (wire_tls_peer (p.cli)->not_after_ms, (int64_t) time (NULL) * 1000);

    // Handshake is idempotent once done.
    ck_assert_int_eq (wire_tls_handshake (p.cli), 1);
    ck_assert_int_eq (wire_tls_handshake (p.srv), 1);
    s_pair_free (&p);
}
END_TEST

// Every good node of the PKI: identity read from its certificate.
static const char *s_nodes[] = {"fr-pn", "fr-gn", "de-bka", "it-ps", "es-cnp"};

START_TEST (test_tls_handshake_each_node)
{
    const char *node = s_nodes[_i];
    char dir[64];
    snprintf (dir, sizeof dir, "nodes/%s", node);
    pair_t p;
    s_pair_run (&p, s_client_ctx (dir, "127.0.0.1"), s_server_ctx ());
    ck_assert_msg (p.src == 1 && p.crc == 1, "%s: client %s / server %s", node,
                   wire_tls_reason (p.cli), wire_tls_reason (p.srv));
    const wire_identity_t *id = wire_tls_peer (p.srv);
    ck_assert_str_eq (id->node_id, node);
    ck_assert_int_eq (id->jurisdiction[0], node[0] - 'a' + 'A');
    ck_assert_int_eq (id->jurisdiction[1], node[1] - 'a' + 'A');
    ck_assert_int_eq (id->jurisdiction[2], 0);
    ck_assert_uint_gt (strlen (id->org), 0);
    char serial[64];
    s_cert_serial (s_file ("nodes/%s/cert.pem", node), serial, sizeof serial);
    ck_assert_str_eq (id->serial, serial);
    s_pair_free (&p);
}
END_TEST

// Certificates the broker must refuse, and what the reason must say.
static const struct {
    const char *dir;
    const char *reason;
} s_bad_clients[] = {
    {"bad/expired", "expired"},
    {"bad/revoked", "revoked"},
    {"bad/foreign", "unable to get local issuer"},
    {"bad/c-mismatch", "issuing CA is not constrained to C=DE"},
    {"bad/cn-mismatch", "does not begin with its country"},
};

START_TEST (test_tls_bad_client_refused)
{
    const char *dir = s_bad_clients[_i].dir;
    const char *want = s_bad_clients[_i].reason;
    pair_t p;
    s_pair_run (&p, s_client_ctx (dir, "localhost"), s_server_ctx ());
    ck_assert_msg (p.src == -1, "%s: server handshake gave %d (%s)", dir, p.src,
                   wire_tls_reason (p.srv));
    ck_assert (!wire_tls_established (p.srv));
    ck_assert_msg (strstr (wire_tls_reason (p.srv), want) != NULL,
                   "%s: reason '%s' does not say '%s'", dir, wire_tls_reason (p.srv), want);
    // The client, whose own handshake finished first (TLS 1.3), gets the
    // alert and cannot exchange data.
    char buf[64];
    int rc = 0;
    for (int i = 0; i < 5 && rc == 0; i++) {
        s_move (p.srv, p.cli);
        rc = wire_tls_read (p.cli, buf, sizeof buf);
    }
    ck_assert_int_eq (rc, -1);
    ck_assert_str_ne (wire_tls_reason (p.cli), "no error");
    ck_assert (wire_tls_peer_closed (p.cli));
    s_pair_free (&p);
}
END_TEST

// The identity rules on certificates the PKI tool would not issue: the
// chain is sound, the subject is not.
START_TEST (test_tls_identity_rules)
{
    char reason[256], id[64];
    static const char *const two_cn[] = {"C", "FR", "O", "PN", "CN", "fr-a", "CN", "fr-b", NULL};
    ck_assert_int_eq (s_minted_handshake ("jur/FR", two_cn, reason, sizeof reason, id, sizeof id),
                      -1);
    ck_assert_msg (strstr (reason, "no single valid CN") != NULL, "%s", reason);

    static const char *const bad_id[] = {"C", "FR", "O", "PN", "CN", "fr_pn", NULL};
    ck_assert_int_eq (s_minted_handshake ("jur/FR", bad_id, reason, sizeof reason, id, sizeof id),
                      -1);
    ck_assert_msg (strstr (reason, "not a valid node id") != NULL, "%s", reason);

    static const char *const upper[] = {"C", "FR", "O", "PN", "CN", "FR-pn2", NULL};
    ck_assert_int_eq (s_minted_handshake ("jur/FR", upper, reason, sizeof reason, id, sizeof id),
                      -1);
    ck_assert_msg (strstr (reason, "not a valid node id") != NULL, "%s", reason);

    // A good subject issued straight by the root, skipping the jurisdiction
    // CA: the chain has the wrong shape.
    static const char *const direct[] = {"C", "FR", "O", "PN", "CN", "fr-direct", NULL};
    ck_assert_int_eq (s_minted_handshake ("root", direct, reason, sizeof reason, id, sizeof id),
                      -1);
    ck_assert_msg (strstr (reason, "expected leaf, issuing CA and root") != NULL, "%s", reason);

    // The same route with a good subject is accepted (the minting is sound).
    static const char *const good[] = {"C", "FR", "O", "PN", "CN", "fr-minted", NULL};
    ck_assert_msg (s_minted_handshake ("jur/FR", good, reason, sizeof reason, id, sizeof id) == 1,
                   "%s", reason);
    ck_assert_str_eq (id, "fr-minted");

    // A 32-character node id, whole.
    static const char *const long_id[] = {
        "C", "FR", "O", "PN", "CN", "fr-abcdefghijklmnopqrstuvwxyz012", NULL};
    ck_assert_uint_eq (strlen (long_id[5]), 32);
    ck_assert_msg (s_minted_handshake ("jur/FR", long_id, reason, sizeof reason, id, sizeof id)
                       == 1,
                   "%s", reason);
    ck_assert_str_eq (id, long_id[5]);
}
END_TEST

// The longest node id the protocol allows (^[a-z]{2}-[a-z0-9-]{1,30}$, 33
// characters) is a valid identity. With WIRE_NODE_ID_MAX 33 (room for 32
// characters and the NUL) such a certificate was refused with "certificate
// has no single valid CN".
START_TEST (test_tls_identity_longest_id)
{
    char reason[256], id[64];
    static const char *const longest[] = {
        "C", "FR", "O", "PN", "CN", "fr-abcdefghijklmnopqrstuvwxyz0123", NULL};
    ck_assert_uint_eq (strlen (longest[5]), 33);
    ck_assert (wire_node_id_valid (longest[5]));
    ck_assert_msg (s_minted_handshake ("jur/FR", longest, reason, sizeof reason, id, sizeof id)
                       == 1,
                   "%s", reason);
    ck_assert_str_eq (id, longest[5]);
}
END_TEST

// A raw OpenSSL client, for what the wire API deliberately cannot express:
// no certificate, no ALPN, TLS 1.2.
typedef struct {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio;
    BIO *wbio;
} raw_t;

static void
s_raw_new (raw_t *r, const char *node, const unsigned char *alpn, unsigned alpn_len,
           int max_version)
{
    r->ctx = SSL_CTX_new (TLS_client_method ());
    ck_assert_ptr_nonnull (r->ctx);
    SSL_CTX_set_max_proto_version (r->ctx, max_version);
    SSL_CTX_set_verify (r->ctx, SSL_VERIFY_NONE, NULL);
    if (node) {
        ck_assert_int_eq (
            SSL_CTX_use_certificate_chain_file (r->ctx, s_file ("nodes/%s/node.pem", node)), 1);
        ck_assert_int_eq (SSL_CTX_use_PrivateKey_file (r->ctx, s_file ("nodes/%s/node.key", node),
                                                       SSL_FILETYPE_PEM),
                          1);
    }
    if (alpn)
        ck_assert_int_eq (SSL_CTX_set_alpn_protos (r->ctx, alpn, alpn_len), 0);
    r->ssl = SSL_new (r->ctx);
    r->rbio = BIO_new (BIO_s_mem ());
    r->wbio = BIO_new (BIO_s_mem ());
    BIO_set_mem_eof_return (r->rbio, -1);
    SSL_set_bio (r->ssl, r->rbio, r->wbio);
    SSL_set_connect_state (r->ssl);
}

static void
s_raw_free (raw_t *r)
{
    SSL_free (r->ssl);
    SSL_CTX_free (r->ctx);
    ERR_clear_error ();
}

// Handshakes a raw client against a wire server; returns the server's
// wire_tls_handshake result.
static int
s_raw_handshake (raw_t *r, wire_tls_t *srv)
{
    int src = 0;
    uint8_t buf[4096];
    for (int round = 0; round < 20 && src == 0; round++) {
        SSL_do_handshake (r->ssl);
        int n;
        while ((n = BIO_read (r->wbio, buf, sizeof buf)) > 0)
            ck_assert_int_eq (wire_tls_push (srv, buf, (size_t) n), 0);
        src = wire_tls_handshake (srv);
        size_t m;
        while ((m = wire_tls_pull (srv, buf, sizeof buf)) > 0)
            BIO_write (r->rbio, buf, (int) m);
    }
    return src;
}

static const unsigned char s_alpn[] = "\x09liaison/1";

START_TEST (test_tls_no_client_cert)
{
    raw_t r;
    s_raw_new (&r, NULL, s_alpn, sizeof s_alpn - 1, TLS1_3_VERSION);
    wire_tls_ctx_t *sctx = s_server_ctx ();
    wire_tls_t *srv = wire_tls_new (sctx);
    wire_tls_ctx_destroy (&sctx);
    ck_assert_int_eq (s_raw_handshake (&r, srv), -1);
    ck_assert (!wire_tls_established (srv));
    ck_assert_msg (strstr (wire_tls_reason (srv), "certificate") != NULL, "reason: %s",
                   wire_tls_reason (srv));
    ck_assert_str_eq (wire_tls_peer (srv)->node_id, "");
    wire_tls_destroy (&srv);
    s_raw_free (&r);
}
END_TEST

START_TEST (test_tls_alpn_required)
{
    // No ALPN at all.
    raw_t r;
    s_raw_new (&r, "fr-pn", NULL, 0, TLS1_3_VERSION);
    wire_tls_ctx_t *sctx = s_server_ctx ();
    wire_tls_t *srv = wire_tls_new (sctx);
    ck_assert_int_eq (s_raw_handshake (&r, srv), -1);
    ck_assert_msg (strstr (wire_tls_reason (srv), "ALPN") != NULL, "reason: %s",
                   wire_tls_reason (srv));
    ck_assert (!wire_tls_established (srv));
    wire_tls_destroy (&srv);
    s_raw_free (&r);

    // Another protocol.
    static const unsigned char other[] = "\x02h2";
    s_raw_new (&r, "fr-pn", other, sizeof other - 1, TLS1_3_VERSION);
    srv = wire_tls_new (sctx);
    ck_assert_int_eq (s_raw_handshake (&r, srv), -1);
    ck_assert_msg (strstr (wire_tls_reason (srv), "ALPN") != NULL, "reason: %s",
                   wire_tls_reason (srv));
    wire_tls_destroy (&srv);
    s_raw_free (&r);

    // The right one, raw: accepted (the raw client itself is sound).
    s_raw_new (&r, "fr-pn", s_alpn, sizeof s_alpn - 1, TLS1_3_VERSION);
    srv = wire_tls_new (sctx);
    ck_assert_msg (s_raw_handshake (&r, srv) == 1, "reason: %s", wire_tls_reason (srv));
    ck_assert_str_eq (wire_tls_peer (srv)->node_id, "fr-pn");
    wire_tls_destroy (&srv);
    s_raw_free (&r);
    wire_tls_ctx_destroy (&sctx);
}
END_TEST

START_TEST (test_tls_12_refused)
{
    raw_t r;
    s_raw_new (&r, "fr-pn", s_alpn, sizeof s_alpn - 1, TLS1_2_VERSION);
    wire_tls_ctx_t *sctx = s_server_ctx ();
    wire_tls_t *srv = wire_tls_new (sctx);
    wire_tls_ctx_destroy (&sctx);
    ck_assert_int_eq (s_raw_handshake (&r, srv), -1);
    ck_assert (!wire_tls_established (srv));
    ck_assert_msg (strstr (wire_tls_reason (srv), "protocol") != NULL, "reason: %s",
                   wire_tls_reason (srv));
    wire_tls_destroy (&srv);
    s_raw_free (&r);
}
END_TEST

// A broker presenting a certificate the client must refuse.
static void
s_assert_broker_refused (const char *cert, const char *key, wire_tls_ctx_t *cctx, const char *want,
                         const char *want2)
{
    char err[512] = "";
    wire_tls_config_t cfg = s_broker_config ();
    if (cert) {
        cfg.cert = cert;
        cfg.key = key;
    }
    wire_tls_ctx_t *sctx = wire_tls_ctx_new_server (&cfg, err, sizeof err);
    ck_assert_msg (sctx != NULL, "server context: %s", err);
    pair_t p;
    s_pair_run (&p, cctx, sctx);
    ck_assert_msg (p.crc == -1, "client accepted the broker (%s)", wire_tls_reason (p.cli));
    ck_assert (!wire_tls_established (p.cli));
    const char *reason = wire_tls_reason (p.cli);
    ck_assert_msg (strstr (reason, want) || (want2 && strstr (reason, want2)),
                   "reason '%s' says neither '%s' nor '%s'", reason, want, want2 ? want2 : "");
    // And the server never completes with this client.
    ck_assert_int_ne (p.src, 1);
    s_pair_free (&p);
}

START_TEST (test_tls_client_refuses_fr_server)
{
    s_assert_broker_refused (s_file ("bad/fr-server/server.pem"),
                             s_file ("bad/fr-server/server.key"),
                             s_client_ctx ("nodes/fr-pn", "localhost"), "purpose", "hub CA");
}
END_TEST

START_TEST (test_tls_client_refuses_node_as_broker)
{
    s_assert_broker_refused (s_file ("bad/node-as-broker/server.pem"),
                             s_file ("bad/node-as-broker/server.key"),
                             s_client_ctx ("nodes/fr-pn", "localhost"), "purpose", "hub CA");
}
END_TEST

START_TEST (test_tls_client_refuses_wrong_name)
{
    s_assert_broker_refused (NULL, NULL, s_client_ctx ("nodes/fr-pn", "other.example"),
                             "hostname mismatch", NULL);
    s_assert_broker_refused (NULL, NULL, s_client_ctx ("nodes/fr-pn", "127.0.0.2"),
                             "IP address mismatch", NULL);
}
END_TEST

START_TEST (test_tls_client_refuses_other_hub_ca)
{
    // A client configured with another CA as the hub CA: the real broker
    // chains to the root but not through the configured hub CA.
    char err[512] = "";
    wire_tls_config_t cfg = s_node_config ("nodes/fr-pn", "localhost");
    cfg.hub_ca = s_file ("jur/FR/ca.pem");
    wire_tls_ctx_t *cctx = wire_tls_ctx_new_client (&cfg, err, sizeof err);
    ck_assert_msg (cctx != NULL, "%s", err);
    s_assert_broker_refused (NULL, NULL, cctx, "hub CA", NULL);

    // A client trusting another root altogether.
    cfg = s_node_config ("nodes/fr-pn", "localhost");
    cfg.ca = s_file ("bad/foreign/root.pem");
    cctx = wire_tls_ctx_new_client (&cfg, err, sizeof err);
    ck_assert_msg (cctx != NULL, "%s", err);
    s_assert_broker_refused (NULL, NULL, cctx, "unable to get local issuer", NULL);
}
END_TEST

// ------------------------------------------------- established sessions

static void
s_send (wire_tls_t *from, wire_tls_t *to, const uint8_t *data, size_t size)
{
    ck_assert_int_eq (wire_tls_write (from, data, size), 0);
    ck_assert_uint_gt (wire_tls_pending (from), size);
    uint8_t *got = malloc (size);
    size_t have = 0;
    for (int round = 0; round < 1000 && have < size; round++) {
        s_move (from, to);
        int n = wire_tls_read (to, got + have, size - have);
        ck_assert_int_ge (n, 0);
        have += (size_t) n;
    }
    ck_assert_uint_eq (have, size);
    ck_assert_int_eq (memcmp (got, data, size), 0);
    free (got);
    // Nothing more to read.
    uint8_t extra[16];
    ck_assert_int_eq (wire_tls_read (to, extra, sizeof extra), 0);
}

START_TEST (test_tls_application_data)
{
    pair_t p;
    s_pair_run (&p, s_client_ctx ("nodes/fr-pn", "localhost"), s_server_ctx ());
    ck_assert (p.crc == 1 && p.src == 1);

    // Nothing to read yet.
    uint8_t buf[16];
    ck_assert_int_eq (wire_tls_read (p.srv, buf, sizeof buf), 0);

    static const uint8_t hello[] = "\x00\x00\x00\x05hello";
    s_send (p.cli, p.srv, hello, sizeof hello - 1);
    s_send (p.srv, p.cli, hello, sizeof hello - 1);

    // Larger than one TLS record, both ways.
    size_t size = 100000;
    uint8_t *big = malloc (size);
    for (size_t i = 0; i < size; i++)
        big[i] = (uint8_t) (i * 131 + 7);
    s_send (p.cli, p.srv, big, size);
    s_send (p.srv, p.cli, big, size);
    free (big);

    // Ciphertext is not plaintext.
    ck_assert_int_eq (wire_tls_write (p.cli, "secret-marker", 13), 0);
    uint8_t wire[512];
    size_t n = wire_tls_pull (p.cli, wire, sizeof wire);
    ck_assert_uint_gt (n, 13);
    ck_assert_ptr_null (memmem (wire, n, "secret-marker", 13));

    // Tampered ciphertext is refused.
    wire[n - 1] ^= 1;
    ck_assert_int_eq (wire_tls_push (p.srv, wire, n), 0);
    ck_assert_int_eq (wire_tls_read (p.srv, buf, sizeof buf), -1);
    ck_assert_str_ne (wire_tls_reason (p.srv), "no error");
    s_pair_free (&p);
}
END_TEST

START_TEST (test_tls_close_notify)
{
    pair_t p;
    s_pair_run (&p, s_client_ctx ("nodes/fr-pn", "localhost"), s_server_ctx ());
    ck_assert (p.crc == 1 && p.src == 1);
    ck_assert (!wire_tls_peer_closed (p.srv));
    wire_tls_close (p.cli);
    ck_assert_uint_gt (s_move (p.cli, p.srv), 0);
    uint8_t buf[16];
    ck_assert_int_eq (wire_tls_read (p.srv, buf, sizeof buf), -1);
    ck_assert (wire_tls_peer_closed (p.srv));
    ck_assert (!wire_tls_peer_closed (p.cli));
    s_pair_free (&p);
}
END_TEST

START_TEST (test_tls_recheck)
{
    wire_tls_ctx_t *sctx = s_server_ctx ();
    pair_t p;
    s_pair_run (&p, s_client_ctx ("nodes/fr-pn", "localhost"), wire_tls_ctx_ref (sctx));
    ck_assert (p.crc == 1 && p.src == 1);
    char reason[256] = "";
    ck_assert_msg (wire_tls_ctx_recheck (sctx, p.srv, reason, sizeof reason) == 0, "%s", reason);

    // A reloaded context from the same files agrees.
    wire_tls_ctx_t *fresh = s_server_ctx ();
    ck_assert_msg (wire_tls_ctx_recheck (fresh, p.srv, reason, sizeof reason) == 0, "%s", reason);
    wire_tls_ctx_destroy (&fresh);

    // A context that trusts another root no longer accepts the session.
    char err[512] = "";
    wire_tls_config_t cfg = s_broker_config ();
    cfg.ca = s_file ("bad/foreign/root.pem");
    wire_tls_ctx_t *other = wire_tls_ctx_new_server (&cfg, err, sizeof err);
    ck_assert_msg (other != NULL, "%s", err);
    reason[0] = 0;
    ck_assert_int_eq (wire_tls_ctx_recheck (other, p.srv, reason, sizeof reason), -1);
    ck_assert_msg (strstr (reason, "unable to get local issuer") != NULL, "%s", reason);
    wire_tls_ctx_destroy (&other);

    // The client side rechecks the broker.
    wire_tls_ctx_t *cctx = s_client_ctx ("nodes/fr-pn", "localhost");
    ck_assert_msg (wire_tls_ctx_recheck (cctx, p.cli, reason, sizeof reason) == 0, "%s", reason);
    wire_tls_ctx_destroy (&cctx);

    // A session without a peer certificate.
    wire_tls_t *idle = wire_tls_new (sctx);
    reason[0] = 0;
    ck_assert_int_eq (wire_tls_ctx_recheck (sctx, idle, reason, sizeof reason), -1);
    ck_assert_uint_gt (strlen (reason), 0);
    wire_tls_destroy (&idle);
    s_pair_free (&p);
    wire_tls_ctx_destroy (&sctx);
}
END_TEST

// Sessions keep their context alive after the caller drops it.
START_TEST (test_tls_session_holds_ctx)
{
    wire_tls_ctx_t *sctx = s_server_ctx ();
    wire_tls_ctx_t *cctx = s_client_ctx ("nodes/fr-pn", "localhost");
    wire_tls_t *srv = wire_tls_new (sctx);
    wire_tls_t *cli = wire_tls_new (cctx);
    wire_tls_ctx_destroy (&sctx);
    wire_tls_ctx_destroy (&cctx);
    int crc, src;
    s_handshake (cli, srv, &crc, &src);
    ck_assert_int_eq (crc, 1);
    ck_assert_int_eq (src, 1);
    wire_tls_destroy (&cli);
    wire_tls_destroy (&srv);
    wire_tls_destroy (&srv);
}
END_TEST

Suite *
tls_suite (void)
{
    Suite *s = suite_create ("tls");
    TCase *tc = tcase_create ("contexts");
    tcase_set_timeout (tc, 30);
    tcase_add_test (tc, test_tls_server_ctx);
    tcase_add_test (tc, test_tls_server_ctx_errors);
    tcase_add_test (tc, test_tls_server_ctx_bad_crl_file);
    tcase_add_test (tc, test_tls_server_empty_crl_dir_fails_closed);
    tcase_add_test (tc, test_tls_client_ctx_errors);
    tcase_add_test (tc, test_tls_crl_check);
    suite_add_tcase (s, tc);

    tc = tcase_create ("handshake");
    tcase_set_timeout (tc, 30);
    tcase_add_test (tc, test_tls_handshake_fr_pn);
    tcase_add_loop_test (tc, test_tls_handshake_each_node, 0,
                         (int) (sizeof s_nodes / sizeof s_nodes[0]));
    tcase_add_loop_test (tc, test_tls_bad_client_refused, 0,
                         (int) (sizeof s_bad_clients / sizeof s_bad_clients[0]));
    tcase_add_test (tc, test_tls_identity_rules);
    tcase_add_test (tc, test_tls_identity_longest_id);
    tcase_add_test (tc, test_tls_no_client_cert);
    tcase_add_test (tc, test_tls_alpn_required);
    tcase_add_test (tc, test_tls_12_refused);
    tcase_add_test (tc, test_tls_client_refuses_fr_server);
    tcase_add_test (tc, test_tls_client_refuses_node_as_broker);
    tcase_add_test (tc, test_tls_client_refuses_wrong_name);
    tcase_add_test (tc, test_tls_client_refuses_other_hub_ca);
    suite_add_tcase (s, tc);

    tc = tcase_create ("session");
    tcase_set_timeout (tc, 30);
    tcase_add_test (tc, test_tls_application_data);
    tcase_add_test (tc, test_tls_close_notify);
    tcase_add_test (tc, test_tls_recheck);
    tcase_add_test (tc, test_tls_session_holds_ctx);
    suite_add_tcase (s, tc);
    return s;
}
