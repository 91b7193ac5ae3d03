/*  Integration test harness; see harness.h.                                 */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *
harness_pki (void)
{
    const char *p = getenv ("LIAISON_PKI");
    return p ? p : "build/test-pki";
}

const char *
harness_build (void)
{
    const char *p = getenv ("LIAISON_BUILD");
    return p ? p : "build";
}

int
harness_sh (const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (cmd, sizeof cmd, fmt, ap);
    va_end (ap);
    int st = system (cmd);
    return WIFEXITED (st) ? WEXITSTATUS (st) : -1;
}

void
harness_prepare (broker_t *b, const char *limits, const char *server_cert, const char *server_key)
{
    memset (b, 0, sizeof *b);
    snprintf (b->dir, sizeof b->dir, "/tmp/liaison-test-XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (b->dir));
    snprintf (b->pki, sizeof b->pki, "%s/pki", b->dir);
    ck_assert_int_eq (harness_sh ("cp -a '%s' '%s'", harness_pki (), b->pki), 0);
    snprintf (b->rules, sizeof b->rules, "%s/liaison.rules", b->dir);
    ck_assert_int_eq (harness_sh ("cp tests/integration/test.rules '%s'", b->rules), 0);
    snprintf (b->cfg, sizeof b->cfg, "%s/liaisond.cfg", b->dir);
    snprintf (b->log, sizeof b->log, "%s/liaisond.log", b->dir);
    FILE *f = fopen (b->cfg, "w");
    ck_assert_ptr_nonnull (f);
    fprintf (f,
             "liaisond\n"
             "    endpoint = tcp://127.0.0.1:*\n"
             "    state_dir = %s/state\n"
             "    rules = %s\n"
             "    tls\n"
             "        cert = %s/%s\n"
             "        key = %s/%s\n"
             "        ca = %s/root/ca.pem\n"
             "        crl_dir = %s/crl\n",
             b->dir, b->rules, b->pki, server_cert ? server_cert : "broker/hub.pem", b->pki,
             server_key ? server_key : "broker/hub.key", b->pki, b->pki);
    if (limits)
        fprintf (f, "    limits\n%s", limits);
    fclose (f);
}

int
harness_start (broker_t *b)
{
    char state[300], ready[320], bin[300];
    snprintf (state, sizeof state, "%s/state", b->dir);
    snprintf (ready, sizeof ready, "%s/ready", state);
    snprintf (bin, sizeof bin, "%s/liaisond", harness_build ());
    mkdir (state, 0700);
    int in = inotify_init1 (IN_CLOEXEC | IN_NONBLOCK);
    inotify_add_watch (in, state, IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE);
    b->pid = fork ();
    if (b->pid == 0) {
        int fd = open (b->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2 (fd, 2);
        execl (bin, "liaisond", "-c", b->cfg, (char *) NULL);
        _exit (127);
    }
    int64_t deadline = s_now_ms () + 15000;
    int rc = -1;
    while (s_now_ms () < deadline) {
        FILE *f = fopen (ready, "r");
        if (f) {
            if (fgets (b->endpoint, sizeof b->endpoint, f)) {
                b->endpoint[strcspn (b->endpoint, "\n")] = 0;
                const char *colon = strrchr (b->endpoint, ':');
                b->port = colon ? atoi (colon + 1) : 0;
                rc = 0;
            }
            fclose (f);
            if (rc == 0)
                break;
        }
        int st;
        if (waitpid (b->pid, &st, WNOHANG) == b->pid) {
            b->pid = 0;
            break;
        }
        struct pollfd p = {in, POLLIN, 0};
        if (poll (&p, 1, 100) > 0) {
            char buf[4096];
            while (read (in, buf, sizeof buf) > 0)
                ;
        }
    }
    close (in);
    return rc;
}

void
harness_broker_start (broker_t *b, const char *limits)
{
    harness_prepare (b, limits, NULL, NULL);
    ck_assert_msg (harness_start (b) == 0, "broker did not become ready; see %s", b->log);
}

void
harness_signal (broker_t *b, int sig)
{
    if (b->pid > 0)
        kill (b->pid, sig);
}

int
harness_broker_stop (broker_t *b)
{
    int result = -1;
    if (b->pid > 0) {
        kill (b->pid, SIGTERM);
        int st = 0;
        int64_t deadline = s_now_ms () + 20000;
        pid_t got = 0;
        while ((got = waitpid (b->pid, &st, WNOHANG)) == 0 && s_now_ms () < deadline) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep (&ts, NULL);  // waiting for a child to exit
        }
        if (got == 0) {
            kill (b->pid, SIGKILL);
            waitpid (b->pid, &st, 0);
        }
        result = got == b->pid && WIFEXITED (st) ? WEXITSTATUS (st) : -1;
        if (result != 0)
            fprintf (stderr, "harness: liaisond pid %d: waitpid %d (%s), %s %d\n", (int) b->pid,
                     (int) got, got < 0 ? strerror (errno) : "ok",
                     got == b->pid && WIFSIGNALED (st) ? "signal" : "status",
                     got == b->pid && WIFSIGNALED (st) ? WTERMSIG (st) : WEXITSTATUS (st));
        b->pid = 0;
    }
    if (result != 0) {
        // Keep the log in the test output: it says why.
        harness_sh ("cat '%s' >&2", b->log);
    }
    if (b->dir[0])
        harness_sh ("rm -rf '%s'", b->dir);
    return result;
}

size_t
harness_log_size (broker_t *b)
{
    struct stat st;
    return stat (b->log, &st) == 0 ? (size_t) st.st_size : 0;
}

bool
harness_log_wait (broker_t *b, const char *needle, size_t from, int timeout_ms)
{
    int in = inotify_init1 (IN_CLOEXEC | IN_NONBLOCK);
    inotify_add_watch (in, b->log, IN_MODIFY);
    int64_t deadline = s_now_ms () + timeout_ms;
    bool found = false;
    for (;;) {
        FILE *f = fopen (b->log, "r");
        if (f) {
            fseek (f, (long) from, SEEK_SET);
            char line[4096];
            while (!found && fgets (line, sizeof line, f))
                found = strstr (line, needle) != NULL;
            fclose (f);
        }
        int64_t left = deadline - s_now_ms ();
        if (found || left <= 0)
            break;
        struct pollfd p = {in, POLLIN, 0};
        if (poll (&p, 1, (int) (left > 200 ? 200 : left)) > 0) {
            char buf[4096];
            while (read (in, buf, sizeof buf) > 0)
                ;
        }
    }
    close (in);
    return found;
}

void
harness_node (broker_t *b, node_opts_t *n, const char *subdir)
{
    memset (n, 0, sizeof *n);
    snprintf (n->cert, sizeof n->cert, "%s/%s/node.pem", b->pki, subdir);
    snprintf (n->key, sizeof n->key, "%s/%s/node.key", b->pki, subdir);
    snprintf (n->ca, sizeof n->ca, "%s/root/ca.pem", b->pki);
    snprintf (n->hub, sizeof n->hub, "%s/hub/ca.pem", b->pki);
    n->o.endpoint = b->endpoint;
    n->o.cert = n->cert;
    n->o.key = n->key;
    n->o.ca = n->ca;
    n->o.hub_ca = n->hub;
    n->o.timeout_ms = 5000;
    // Each session its own state directory: one process per directory, and
    // a test that restarts a client passes the same one again itself.
    static unsigned counter;
    const char *base = strrchr (subdir, '/');
    snprintf (n->state, sizeof n->state, "%s/client-%s-%u", b->dir, base ? base + 1 : subdir,
              ++counter);
    n->o.state_dir = n->state;
}

liaison_t *
harness_session (broker_t *b, const char *node, int receiver)
{
    node_opts_t n;
    char sub[64];
    snprintf (sub, sizeof sub, "nodes/%s", node);
    harness_node (b, &n, sub);
    n.o.receiver = receiver;
    liaison_t *l = NULL;
    int rc = liaison_connect (&n.o, &l);
    ck_assert_msg (rc == LIAISON_OK, "connect %s: %s", node, liaison_errmsg (NULL));
    // A barrier: the Receive frame is processed before it returns.
    if (receiver)
        ck_assert_int_eq (liaison_flush (l, 5000), LIAISON_OK);
    return l;
}

void
harness_expect_rejected (liaison_t *l, const uint8_t *id, const char *recipient,
                         const char *reason, const char *rule)
{
    liaison_receipt_t *r = NULL;
    ck_assert_int_eq (liaison_next_receipt (l, &r, 5000), LIAISON_OK);
    ck_assert_int_eq (liaison_receipt_status (r), LIAISON_REJECTED);
    ck_assert_str_eq (liaison_receipt_recipient (r), recipient);
    ck_assert_str_eq (liaison_receipt_reason (r), reason);
    if (id)
        ck_assert_mem_eq (liaison_receipt_id (r), id, LIAISON_ID_LEN);
    if (rule)
        ck_assert_str_eq (liaison_receipt_rule (r), rule);
    liaison_receipt_destroy (&r);
}

int
raw_connect (raw_t *r, broker_t *b, const char *subdir)
{
    memset (r, 0, sizeof *r);
    r->fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons ((uint16_t) b->port)};
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    if (connect (r->fd, (struct sockaddr *) &sa, sizeof sa))
        return -1;
    int one = 1;
    setsockopt (r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    r->ctx = SSL_CTX_new (TLS_client_method ());
    SSL_CTX_set_min_proto_version (r->ctx, TLS1_3_VERSION);
    char path[600];
    if (subdir) {
        snprintf (path, sizeof path, "%s/%s/node.pem", b->pki, subdir);
        SSL_CTX_use_certificate_chain_file (r->ctx, path);
        snprintf (path, sizeof path, "%s/%s/node.key", b->pki, subdir);
        SSL_CTX_use_PrivateKey_file (r->ctx, path, SSL_FILETYPE_PEM);
    }
    snprintf (path, sizeof path, "%s/root/ca.pem", b->pki);
    SSL_CTX_load_verify_file (r->ctx, path);
    SSL_CTX_set_verify (r->ctx, SSL_VERIFY_PEER, NULL);
    static const unsigned char alpn[] = "\x09liaison/1";
    SSL_CTX_set_alpn_protos (r->ctx, alpn, sizeof alpn - 1);
    r->ssl = SSL_new (r->ctx);
    SSL_set_fd (r->ssl, r->fd);
    SSL_set1_host (r->ssl, "localhost");
    int rc = SSL_connect (r->ssl) == 1 ? 0 : -1;
    ERR_clear_error ();
    return rc;
}

int
raw_write (raw_t *r, const void *data, size_t size)
{
    size_t done = 0;
    int rc = size == 0 ? 0 : (SSL_write_ex (r->ssl, data, size, &done) == 1 ? 0 : -1);
    ERR_clear_error ();
    return rc;
}

int
raw_send_frame (raw_t *r, const Liaison__Frame *f)
{
    size_t size = liaison__frame__get_packed_size (f);
    uint8_t *buf = malloc (size + 4);
    buf[0] = (uint8_t) (size >> 24);
    buf[1] = (uint8_t) (size >> 16);
    buf[2] = (uint8_t) (size >> 8);
    buf[3] = (uint8_t) size;
    liaison__frame__pack (f, buf + 4);
    int rc = raw_write (r, buf, size + 4);
    free (buf);
    return rc;
}

// Reads exactly n bytes within the deadline; 0, -1 closed, -2 timeout.
static int
s_read_exact (raw_t *r, uint8_t *buf, size_t n, int64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        if (SSL_pending (r->ssl) == 0) {
            int64_t left = deadline - s_now_ms ();
            if (left <= 0)
                return -2;
            struct pollfd p = {r->fd, POLLIN, 0};
            if (poll (&p, 1, (int) left) <= 0)
                return -2;
        }
        size_t k = 0;
        if (SSL_read_ex (r->ssl, buf + got, n - got, &k) != 1) {
            int e = SSL_get_error (r->ssl, 0);
            ERR_clear_error ();
            if (e == SSL_ERROR_WANT_READ)
                continue;
            return -1;
        }
        got += k;
    }
    return 0;
}

Liaison__Frame *
raw_read_frame (raw_t *r, int timeout_ms, bool *closed)
{
    if (closed)
        *closed = false;
    int64_t deadline = s_now_ms () + timeout_ms;
    uint8_t hdr[4];
    int rc = s_read_exact (r, hdr, 4, deadline);
    if (rc == 0) {
        uint32_t len = (uint32_t) hdr[0] << 24 | (uint32_t) hdr[1] << 16 | hdr[2] << 8 | hdr[3];
        if (len == 0 || len > 64 * 1024 * 1024)
            return NULL;
        uint8_t *buf = malloc (len);
        rc = s_read_exact (r, buf, len, deadline);
        Liaison__Frame *f = rc == 0 ? liaison__frame__unpack (NULL, len, buf) : NULL;
        free (buf);
        if (f)
            return f;
    }
    if (rc == -1 && closed)
        *closed = true;
    return NULL;
}

int
raw_hello (raw_t *r)
{
    Liaison__Hello h = LIAISON__HELLO__INIT;
    h.min_version = 1;
    h.max_version = 1;
    h.software = "raw-test";
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_HELLO;
    f.hello = &h;
    if (raw_send_frame (r, &f))
        return -1;
    Liaison__Frame *w = raw_read_frame (r, 5000, NULL);
    int rc = w && w->kind_case == LIAISON__FRAME__KIND_WELCOME ? 0 : -1;
    if (w)
        liaison__frame__free_unpacked (w, NULL);
    return rc;
}

int
raw_expect_error (raw_t *r, int timeout_ms, bool *closed_after)
{
    int code = -1;
    int64_t deadline = s_now_ms () + timeout_ms;
    *closed_after = false;
    while (code < 0) {
        int64_t left = deadline - s_now_ms ();
        if (left <= 0)
            return -1;
        bool closed = false;
        Liaison__Frame *f = raw_read_frame (r, (int) left, &closed);
        if (!f)
            return -1;
        if (f->kind_case == LIAISON__FRAME__KIND_ERROR)
            code = (int) f->error->code;
        liaison__frame__free_unpacked (f, NULL);
    }
    // Then the broker must close: TLS close_notify or TCP EOF.
    bool closed = false;
    Liaison__Frame *f = raw_read_frame (r, 3000, &closed);
    while (f) {
        liaison__frame__free_unpacked (f, NULL);
        f = raw_read_frame (r, 3000, &closed);
    }
    *closed_after = closed;
    return code;
}

void
raw_close (raw_t *r)
{
    if (r->ssl)
        SSL_free (r->ssl);
    if (r->ctx)
        SSL_CTX_free (r->ctx);
    if (r->fd > 0)
        close (r->fd);
    memset (r, 0, sizeof *r);
}

/* ---- additions for the durable store-and-forward tests ---- */

int
harness_ms (int ms)
{
    const char *m = getenv ("CK_TIMEOUT_MULTIPLIER");
    int k = m ? atoi (m) : 1;
    return ms * (k > 0 ? k : 1);
}

int
harness_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge (fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    ck_assert_int_eq (bind (fd, (struct sockaddr *) &sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    ck_assert_int_eq (getsockname (fd, (struct sockaddr *) &sa, &len), 0);
    close (fd);
    return ntohs (sa.sin_port);
}

void
harness_prepare_ex (broker_t *b, const char *limits, const char *extra, int port)
{
    harness_prepare (b, limits, NULL, NULL);
    if (port)
        ck_assert_int_eq (harness_sh ("sed -i 's|tcp://127.0.0.1:\\*|tcp://127.0.0.1:%d|' '%s'",
                                      port, b->cfg),
                          0);
    if (extra) {
        FILE *f = fopen (b->cfg, "a");
        ck_assert_ptr_nonnull (f);
        fputs (extra, f);
        fclose (f);
    }
}

void
harness_broker_kill (broker_t *b)
{
    if (b->pid > 0) {
        kill (b->pid, SIGKILL);
        waitpid (b->pid, NULL, 0);
        b->pid = 0;
    }
}

int
harness_broker_restart (broker_t *b)
{
    char ready[320];
    snprintf (ready, sizeof ready, "%s/state/ready", b->dir);
    unlink (ready);
    char endpoint[128];
    snprintf (endpoint, sizeof endpoint, "%s", b->endpoint);
    int rc = harness_start (b);
    // A fixed port must come back as it was: the clients hold the endpoint.
    if (rc == 0 && strcmp (endpoint, b->endpoint) != 0 && !strchr (endpoint, '*'))
        fprintf (stderr, "harness: broker endpoint moved from %s to %s\n", endpoint,
                 b->endpoint);
    return rc;
}

const char *
harness_node_cert (broker_t *b, const char *node, char *buf, size_t size)
{
    snprintf (buf, size, "%s/nodes/%s/node.pem", b->pki, node);
    return buf;
}

liaison_receipt_t *
harness_expect_receipt (liaison_t *l, const uint8_t *id, const char *recipient,
                        liaison_status_t status, int timeout_ms)
{
    liaison_receipt_t *r = NULL;
    int rc = liaison_next_receipt (l, &r, timeout_ms);
    ck_assert_msg (rc == LIAISON_OK, "no receipt (%s expected for %s) within %d ms: %s",
                   liaison_status_name (status), recipient, timeout_ms, liaison_strerror (rc));
    ck_assert_msg (liaison_receipt_status (r) == status, "receipt for %s: %s (%s), expected %s",
                   liaison_receipt_recipient (r), liaison_status_name (liaison_receipt_status (r)),
                   liaison_receipt_reason (r), liaison_status_name (status));
    ck_assert_str_eq (liaison_receipt_recipient (r), recipient);
    if (id)
        ck_assert_mem_eq (liaison_receipt_id (r), id, LIAISON_ID_LEN);
    return r;
}

int
harness_broker_halt (broker_t *b)
{
    if (b->pid <= 0)
        return -1;
    kill (b->pid, SIGTERM);
    int st = 0;
    int64_t deadline = s_now_ms () + 20000;
    pid_t got = 0;
    while ((got = waitpid (b->pid, &st, WNOHANG)) == 0 && s_now_ms () < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep (&ts, NULL);  // waiting for a child to exit
    }
    if (got == 0) {
        kill (b->pid, SIGKILL);
        waitpid (b->pid, &st, 0);
    }
    b->pid = 0;
    return got > 0 && WIFEXITED (st) ? WEXITSTATUS (st) : -1;
}
