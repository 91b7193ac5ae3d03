/*  make bench: the durable path. Sender and recipient nodes keep their
    outbox and inbox in a state directory; the broker keeps every message
    in its SQLite store and says ACCEPTED only after the commit.

    Everything runs as separate processes: one liaisond per phase (its own
    state directory and PKI, made here with deploy/pki/liaison-pki), and
    each node is this binary re-executed in a role ("send" or "recv"), so
    the fsync shim (build/fsync_count.so, LD_PRELOAD) can count each
    process's syncs and no SQLite handle crosses a fork.

      durable_1to1_msgs_per_s     1 KiB, one sender, one recipient, at most
                                  100 messages sent and not yet ACCEPTED;
                                  first send to last receive
      durable_msgs_per_fsync      messages per fsync+fdatasync of sender,
                                  broker and recipient during that run
      durable_10to10_msgs_per_s   10 senders, 10 recipients, pairwise
      durable_p50_us_at_5k,       1 -> 1 at 5,000 msgs/s offered (open loop),
      durable_p99_us_at_5k        send to liaison_recv
      backlog_1m_rss_mib          broker VmHWM after 1M messages ACCEPTED for
                                  a node that never connected
      backlog_1m_restart_ms       SIGKILL, restart on the same store: from
                                  the exec to the first successful connect

    A benchmark, not a test: it asserts nothing, but exits nonzero when a
    phase cannot run (broker does not start, a node fails, a count is
    short). Environment: LIAISON_BUILD (build), LIAISON_PKI_TOOL
    (deploy/pki/liaison-pki), BENCH_DURABLE_MESSAGES (50000), BENCH_BACKLOG
    (1000000), BENCH_DURABLE_RATE (5000), BENCH_DURABLE_LATENCY_S (5),
    BENCH_DURABLE_PHASES (a subset of "1to1 pairs backlog"), BENCH_KEEP
    (keep the temporary directory).                            */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "liaison.h"

#define BODY 1024
#define IN_FLIGHT 100 /* sent and not yet ACCEPTED */
#define BATCH 32      /* messages per outbox commit (throughput runs) */
#define ACK_BATCH 64  /* acknowledgements per liaison_sync */
#define PAIRS 10
#define MAX_PIDS 64
#define LAT_SKIP 500 /* first messages of the latency run: warm-up */

/* ------------------------------------------------------------- common */

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
s_sleep_ns (int64_t ns)
{
    if (ns <= 0)
        return;
    struct timespec ts = {ns / 1000000000, ns % 1000000000};
    nanosleep (&ts, NULL);
}

static long
s_env_long (const char *name, long dflt)
{
    const char *v = getenv (name);
    return v && *v ? atol (v) : dflt;
}

static int
s_cmp (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

// Session options for node `node` of the PKI in `pki`.
typedef struct {
    char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX], hub_ca[PATH_MAX];
    liaison_options_t o;
} opts_t;

static void
s_opts (opts_t *p, const char *endpoint, const char *pki, const char *node, const char *state,
        int receiver)
{
    memset (p, 0, sizeof *p);
    snprintf (p->cert, sizeof p->cert, "%s/nodes/%s/node.pem", pki, node);
    snprintf (p->key, sizeof p->key, "%s/nodes/%s/node.key", pki, node);
    snprintf (p->ca, sizeof p->ca, "%s/root/ca.pem", pki);
    snprintf (p->hub_ca, sizeof p->hub_ca, "%s/hub/ca.pem", pki);
    p->o.endpoint = endpoint;
    p->o.cert = p->cert;
    p->o.key = p->key;
    p->o.ca = p->ca;
    p->o.hub_ca = p->hub_ca;
    p->o.state_dir = state;
    p->o.receiver = receiver;
    p->o.window = 256;
    p->o.timeout_ms = 10000;
}

/* --------------------------------------------------------------- roles */

// What a role process is told, on its command line, in this order.
typedef struct {
    const char *role;     /* send | recv */
    const char *endpoint;
    const char *pki;
    const char *node;
    const char *peer;     /* send: the recipient; recv: unused ("-") */
    const char *state;
    long count;           /* messages to send or to receive */
    double rate;          /* send: msgs/s offered, 0 = closed loop */
    long window;          /* send: sent - ACCEPTED at most this */
    long batch;           /* send: messages per commit when not paced */
    long body;            /* send: body bytes (>= 16) */
    int ready_fd;         /* recv: one byte written here once connected */
    const char *result;   /* one line of figures written here */
} role_t;

#define ROLE_ARGS 13

static void
s_die (const char *role, const char *node, const char *what, liaison_t *l)
{
    fprintf (stderr, "bench_durable %s %s: %s: %s\n", role, node, what, liaison_errmsg (l));
    exit (1);
}

static liaison_t *
s_role_connect (const role_t *r, int receiver)
{
    opts_t p;
    s_opts (&p, r->endpoint, r->pki, r->node, r->state, receiver);
    liaison_t *l = NULL;
    if (liaison_connect (&p.o, &l) != LIAISON_OK)
        s_die (r->role, r->node, "connect", NULL);
    return l;
}

typedef struct {
    long accepted, delivered, rejected, other;
} counts_t;

// Takes every receipt queued (waiting up to timeout_ms for the first).
static void
s_drain_receipts (liaison_t *l, const role_t *r, counts_t *c, int timeout_ms)
{
    for (;;) {
        liaison_receipt_t *rc = NULL;
        int e = liaison_next_receipt (l, &rc, timeout_ms);
        if (e == LIAISON_ETIMEOUT)
            return;
        if (e != LIAISON_OK)
            s_die (r->role, r->node, "next_receipt", l);
        switch (liaison_receipt_status (rc)) {
        case LIAISON_ACCEPTED: c->accepted++; break;
        case LIAISON_DELIVERED: c->delivered++; break;
        case LIAISON_REJECTED:
            if (c->rejected++ == 0)
                fprintf (stderr, "bench_durable send %s: REJECTED (%s, %s)\n", r->node,
                         liaison_receipt_reason (rc), liaison_receipt_rule (rc));
            break;
        default: c->other++; break;
        }
        liaison_receipt_destroy (&rc);
        timeout_ms = 0;
    }
}

// Sends r->count messages to r->peer. Closed loop (rate 0): batches of
// r->batch with LIAISON_MORE, the last one of a batch without it (commit
// and flush), never more than r->window not yet ACCEPTED. Open loop:
// message i goes at start + i / rate, alone (committed and flushed) when
// on time, batched (at most r->batch) while behind.
// Ends once every message is ACCEPTED and (if `delivered`) DELIVERED.
static int
s_role_send (const role_t *r)
{
    liaison_t *l = s_role_connect (r, 0);
    uint8_t *body = calloc (1, (size_t) r->body);
    memset (body, 'x', (size_t) r->body);
    counts_t c = {0, 0, 0, 0};
    int64_t start = s_now_ns ();
    for (long i = 0; i < r->count; i++) {
        if (r->rate > 0) {
            int64_t due = start + (int64_t) ((double) i * 1e9 / r->rate);
            while (s_now_ns () < due) {
                int64_t left_ms = (due - s_now_ns ()) / 1000000;
                if (left_ms >= 1)
                    s_drain_receipts (l, r, &c, (int) left_ms);
                else {
                    s_drain_receipts (l, r, &c, 0);
                    s_sleep_ns (due - s_now_ns ());
                }
            }
        }
        while (i - c.accepted >= r->window)
            s_drain_receipts (l, r, &c, 100);
        liaison_message_t *m = liaison_message_new (LIAISON_CASE_LEAD);
        liaison_message_add_recipient (m, LIAISON_TO_NODE, r->peer);
        liaison_message_set_tlp (m, LIAISON_TLP_GREEN);
        int64_t now = s_now_ns (), idx = i;
        memcpy (body, &now, 8);
        memcpy (body + 8, &idx, 8);
        liaison_message_set_body (m, body, (size_t) r->body);
        int more;
        if (r->rate > 0)  // paced: batch (up to r->batch) only while behind
            more = i + 1 < r->count && (i + 1) % r->batch != 0 &&
                   start + (int64_t) ((double) (i + 1) * 1e9 / r->rate) <= s_now_ns ();
        else
            more = i + 1 < r->count && (i + 1) % r->batch != 0 &&
                   i + 1 - c.accepted < r->window;
        if (liaison_send (l, m, more ? LIAISON_MORE : 0) != LIAISON_OK)
            s_die (r->role, r->node, "send", l);
        liaison_message_destroy (&m);
        if (!more)
            s_drain_receipts (l, r, &c, 0);
    }
    if (liaison_sync (l) != LIAISON_OK)
        s_die (r->role, r->node, "sync", l);
    int64_t sent_all = s_now_ns ();
    // Every ACCEPTED, and the DELIVERED ones when someone receives.
    int want_delivered = strcmp (r->peer, "de-offline") != 0;
    int64_t deadline = s_now_ns () + (int64_t) 120 * 1000000000;
    while ((c.accepted < r->count || (want_delivered && c.delivered < r->count)) &&
           c.rejected == 0 && s_now_ns () < deadline)
        s_drain_receipts (l, r, &c, 100);
    FILE *f = fopen (r->result, "w");
    if (f) {
        fprintf (f, "%ld %ld %ld %ld %.3f\n", c.accepted, c.delivered, c.rejected, c.other,
                 (double) (sent_all - start) / 1e9);
        fclose (f);
    }
    liaison_close (&l);
    free (body);
    if (c.accepted < r->count || c.rejected) {
        fprintf (stderr,
                 "bench_durable send %s: %ld of %ld ACCEPTED, %ld DELIVERED, %ld REJECTED\n",
                 r->node, c.accepted, r->count, c.delivered, c.rejected);
        return 1;
    }
    if (want_delivered && c.delivered < r->count)
        fprintf (stderr, "bench_durable send %s: only %ld of %ld DELIVERED receipts in 120 s\n",
                 r->node, c.delivered, r->count);
    return 0;
}

// Receives r->count messages: liaison_recv, liaison_ack with LIAISON_MORE,
// liaison_sync every ACK_BATCH and whenever nothing is waiting. Writes
// "count first_send_ns last_recv_ns p50_ns p99_ns" (latencies past LAT_SKIP).
static int
s_role_recv (const role_t *r)
{
    liaison_t *l = s_role_connect (r, 1);
    liaison_flush (l, 5000);
    char byte = 'r';
    if (write (r->ready_fd, &byte, 1) != 1)
        s_die (r->role, r->node, "ready pipe", NULL);
    close (r->ready_fd);
    int64_t *lat = calloc ((size_t) r->count, sizeof *lat);
    int64_t first = INT64_MAX, last = 0;
    long pending = 0, got = 0;
    while (got < r->count) {
        liaison_message_t *m = NULL;
        int e = liaison_recv (l, &m, pending ? 0 : 30000);
        if (e == LIAISON_ETIMEOUT && pending) {
            if (liaison_sync (l) != LIAISON_OK)
                s_die (r->role, r->node, "sync", l);
            pending = 0;
            continue;
        }
        if (e != LIAISON_OK) {
            fprintf (stderr, "bench_durable recv %s: after %ld of %ld messages:\n", r->node, got,
                     r->count);
            s_die (r->role, r->node, "recv", l);
        }
        int64_t now = s_now_ns ();
        size_t n;
        const uint8_t *b = liaison_message_body (m, &n);
        int64_t sent = now;
        if (n >= 8)
            memcpy (&sent, b, 8);
        lat[got] = now - sent;
        if (sent < first)
            first = sent;
        last = now;
        got++;
        if (liaison_ack (l, m, LIAISON_MORE) != LIAISON_OK)
            s_die (r->role, r->node, "ack", l);
        liaison_message_destroy (&m);
        if (++pending >= ACK_BATCH) {
            if (liaison_sync (l) != LIAISON_OK)
                s_die (r->role, r->node, "sync", l);
            pending = 0;
        }
    }
    if (liaison_sync (l) != LIAISON_OK)
        s_die (r->role, r->node, "sync", l);
    int64_t p50 = 0, p99 = 0;
    long skip = r->count > 2 * LAT_SKIP ? LAT_SKIP : 0;
    long nl = r->count - skip;
    if (nl > 0) {
        qsort (lat + skip, (size_t) nl, sizeof *lat, s_cmp);
        p50 = lat[skip + nl / 2];
        p99 = lat[skip + nl * 99 / 100];
    }
    FILE *f = fopen (r->result, "w");
    if (f) {
        fprintf (f, "%ld %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 "\n", got, first, last,
                 p50, p99);
        fclose (f);
    }
    free (lat);
    liaison_close (&l);
    return 0;
}

static int
s_role_main (int argc, char **argv)
{
    if (argc != 1 + ROLE_ARGS) {
        fprintf (stderr, "bench_durable: a role takes %d arguments\n", ROLE_ARGS);
        return 2;
    }
    role_t r = {argv[1], argv[2], argv[3], argv[4], argv[5], argv[6], atol (argv[7]),
                atof (argv[8]), atol (argv[9]), atol (argv[10]), atol (argv[11]),
                atoi (argv[12]), argv[13]};
    if (r.body < 16 || r.count <= 0 || r.window <= 0 || r.batch <= 0)
        return 2;
    return strcmp (r.role, "send") == 0 ? s_role_send (&r) : s_role_recv (&r);
}

/* -------------------------------------------------------- orchestrator */

static char s_dir[64];        /* temporary directory of this run */
static char s_pki[96];        /* s_dir/pki */
static char s_self[PATH_MAX];  /* this binary */
static char s_build[PATH_MAX]; /* absolute build directory */
static pid_t s_pids[MAX_PIDS]; /* children to kill if we fail */
static int s_npids;

static void
s_track (pid_t pid)
{
    if (s_npids < MAX_PIDS)
        s_pids[s_npids++] = pid;
}

static void
s_untrack (pid_t pid)
{
    for (int i = 0; i < s_npids; i++)
        if (s_pids[i] == pid) {
            s_pids[i] = s_pids[--s_npids];
            return;
        }
}

// Fails the run loudly: kills our children (each by its pid), keeps the
// directory for a look, exits 1.
static void
s_fail (const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    fprintf (stderr, "bench_durable: FAILED: ");
    vfprintf (stderr, fmt, ap);
    fprintf (stderr, " (logs in %s)\n", s_dir);
    va_end (ap);
    for (int i = 0; i < s_npids; i++)
        kill (s_pids[i], SIGKILL);
    for (int i = 0; i < s_npids; i++)
        waitpid (s_pids[i], NULL, 0);
    exit (1);
}

static void
s_write_file (const char *path, const char *fmt, ...)
{
    FILE *f = fopen (path, "w");
    if (!f)
        s_fail ("cannot write %s: %s", path, strerror (errno));
    va_list ap;
    va_start (ap, fmt);
    vfprintf (f, fmt, ap);
    va_end (ap);
    if (fclose (f) != 0)
        s_fail ("cannot write %s", path);
}

// A fresh federation in s_dir/pki: FR senders fr-s01..10 and fr-backlog,
// DE recipients de-r01..10 and de-offline, a broker for localhost.
static void
s_make_pki (void)
{
    const char *tool = getenv ("LIAISON_PKI_TOOL") ? getenv ("LIAISON_PKI_TOOL")
                                                    : "deploy/pki/liaison-pki";
    char cmd[8192];
    snprintf (cmd, sizeof cmd,
              "set -e; T='%s'; D='%s'; "
              "$T -d $D root --cn 'Bench Root CA'; "
              "$T -d $D jurisdiction FR --org 'Bench FR'; "
              "$T -d $D jurisdiction DE --org 'Bench DE'; "
              "$T -d $D hub-ca; $T -d $D broker hub --dns localhost --ip 127.0.0.1; "
              "for i in 01 02 03 04 05 06 07 08 09 10; do "
              "$T -d $D node FR fr-s$i --org Bench; $T -d $D node DE de-r$i --org Bench; done; "
              "$T -d $D node FR fr-backlog --org Bench; $T -d $D node DE de-offline --org Bench; "
              "$T -d $D crl",
              tool, s_pki);
    char full[8192 + 128];
    snprintf (full, sizeof full, "(%s) >'%s/pki.log' 2>&1", cmd, s_dir);
    if (system (full) != 0)
        s_fail ("making the bench PKI with %s (see %s/pki.log)", tool, s_dir);
}

typedef struct {
    char name[32];
    char dir[128];         /* s_dir/name: cfg, log, state/ */
    char cfg[160];
    char endpoint[128];
    pid_t pid;
} broker_t;

// Writes the broker's configuration: port 0 for any free port.
static void
s_broker_config (broker_t *b, int port)
{
    char state[PATH_MAX + 16], rules[PATH_MAX + 16];
    snprintf (state, sizeof state, "%s/state", b->dir);
    snprintf (rules, sizeof rules, "%s/bench.rules", s_dir);
    char ep[64];
    if (port)
        snprintf (ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    else
        snprintf (ep, sizeof ep, "tcp://127.0.0.1:*");
    s_write_file (b->cfg,
                  "liaisond\n    endpoint = %s\n    state_dir = %s\n    rules = %s\n"
                  "    tls\n        cert = %s/broker/hub.pem\n        key = %s/broker/hub.key\n"
                  "        ca = %s/root/ca.pem\n        crl_dir = %s/crl\n",
                  ep, state, rules, s_pki, s_pki, s_pki, s_pki);
}

// fork + exec liaisond on b->cfg, stderr appended to b->dir/liaisond.log,
// with the fsync shim when count_file is set.
static void
s_broker_exec (broker_t *b, const char *count_file)
{
    char log[PATH_MAX + 16], bin[PATH_MAX + 16], shim[PATH_MAX + 16];
    snprintf (log, sizeof log, "%s/liaisond.log", b->dir);
    snprintf (bin, sizeof bin, "%s/liaisond", s_build);
    snprintf (shim, sizeof shim, "%s/fsync_count.so", s_build);
    pid_t pid = fork ();
    if (pid < 0)
        s_fail ("fork: %s", strerror (errno));
    if (pid == 0) {
        int fd = open (log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2 (fd, 2);
            dup2 (fd, 1);
        }
        if (count_file) {
            setenv ("LD_PRELOAD", shim, 1);
            setenv ("FSYNC_COUNT_FILE", count_file, 1);
        }
        execl (bin, "liaisond", "-c", b->cfg, (char *) NULL);
        _exit (127);
    }
    b->pid = pid;
    s_track (pid);
}

// Starts a broker with a fresh state directory and waits for its ready
// file (the endpoint it bound).
static void
s_broker_start (broker_t *b, const char *name, const char *count_file)
{
    memset (b, 0, sizeof *b);
    snprintf (b->name, sizeof b->name, "%s", name);
    snprintf (b->dir, sizeof b->dir, "%s/%.32s", s_dir, name);
    snprintf (b->cfg, sizeof b->cfg, "%s/liaisond.cfg", b->dir);
    mkdir (b->dir, 0700);
    s_broker_config (b, 0);
    s_broker_exec (b, count_file);
    char ready[PATH_MAX + 16];
    snprintf (ready, sizeof ready, "%s/state/ready", b->dir);
    int64_t deadline = s_now_ns () + (int64_t) 30 * 1000000000;
    while (s_now_ns () < deadline) {
        FILE *r = fopen (ready, "r");
        if (r) {
            if (fgets (b->endpoint, sizeof b->endpoint, r))
                b->endpoint[strcspn (b->endpoint, "\n")] = 0;
            fclose (r);
            if (b->endpoint[0])
                return;
        }
        int st;
        if (waitpid (b->pid, &st, WNOHANG) == b->pid) {
            s_untrack (b->pid);
            s_fail ("broker %s exited at startup (status %d); see %s/liaisond.log", name, st,
                    b->dir);
        }
        usleep (5000);  // waiting for the broker to start; not a measurement
    }
    s_fail ("broker %s wrote no ready file in 30 s; see %s/liaisond.log", name, b->dir);
}

// SIGTERM and wait: 0 if it exited with status 0.
static int
s_broker_stop (broker_t *b)
{
    kill (b->pid, SIGTERM);
    int st = 0;
    waitpid (b->pid, &st, 0);
    s_untrack (b->pid);
    if (!WIFEXITED (st) || WEXITSTATUS (st) != 0) {
        fprintf (stderr, "bench_durable: broker %s did not stop cleanly (status %d)\n", b->name,
                 st);
        return -1;
    }
    return 0;
}

// fork + exec of this binary in a role; count_file set = with the shim.
static pid_t
s_spawn (const role_t *r, const char *count_file)
{
    char count[32], rate[32], window[32], batch[32], body[32], fd[16];
    snprintf (count, sizeof count, "%ld", r->count);
    snprintf (rate, sizeof rate, "%.3f", r->rate);
    snprintf (window, sizeof window, "%ld", r->window);
    snprintf (batch, sizeof batch, "%ld", r->batch);
    snprintf (body, sizeof body, "%ld", r->body);
    snprintf (fd, sizeof fd, "%d", r->ready_fd);
    pid_t pid = fork ();
    if (pid < 0)
        s_fail ("fork: %s", strerror (errno));
    if (pid == 0) {
        if (count_file) {
            char shim[PATH_MAX + 16];
            snprintf (shim, sizeof shim, "%s/fsync_count.so", s_build);
            setenv ("LD_PRELOAD", shim, 1);
            setenv ("FSYNC_COUNT_FILE", count_file, 1);
        }
        execl (s_self, "bench_durable", r->role, r->endpoint, r->pki, r->node, r->peer,
               r->state, count, rate, window, batch, body, fd, r->result, (char *) NULL);
        _exit (127);
    }
    s_track (pid);
    return pid;
}

static void
s_wait_child (pid_t pid, const char *what)
{
    int st;
    if (waitpid (pid, &st, 0) != pid)
        s_fail ("waitpid %s: %s", what, strerror (errno));
    s_untrack (pid);
    if (!WIFEXITED (st) || WEXITSTATUS (st) != 0)
        s_fail ("%s failed (status %d)", what, st);
}

// A role with the common fields filled for this run.
static role_t
s_role (const char *role, const broker_t *b, const char *node, const char *peer, char *state,
        size_t state_len, char *result, size_t result_len, const char *phase)
{
    snprintf (state, state_len, "%s/nodes/%s-%s", s_dir, phase, node);
    snprintf (result, result_len, "%s/%s-%s.result", s_dir, phase, node);
    role_t r = {role, b->endpoint, s_pki, node, peer, state, 0, 0, IN_FLIGHT, BATCH, BODY, -1,
                result};
    return r;
}

typedef struct {
    long got;
    int64_t first, last, p50, p99;
} recv_result_t;

static void
s_read_recv (const char *path, recv_result_t *out)
{
    FILE *f = fopen (path, "r");
    if (!f || fscanf (f, "%ld %" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64, &out->got,
                      &out->first, &out->last, &out->p50, &out->p99) != 5)
        s_fail ("no result in %s", path);
    fclose (f);
}

// Pairwise runs: recipients de-rNN first (each says when it is connected),
// then senders fr-sNN -> de-rNN, `per` messages each, paced at `rate`
// (0: closed loop). Fills res[pairs] from the recipients.
static void
s_pairs (const broker_t *b, const char *phase, int pairs, long per, double rate,
         const char *count_file, recv_result_t *res, pid_t pids[2])
{
    char state[2][PAIRS][PATH_MAX + 64], result[2][PAIRS][PATH_MAX + 64];
    char snode[PAIRS][16], rnode[PAIRS][16];
    pid_t rx[PAIRS], tx[PAIRS];
    int pfd[2];
    if (pipe (pfd) != 0)
        s_fail ("pipe: %s", strerror (errno));
    for (int i = 0; i < pairs; i++) {
        snprintf (snode[i], sizeof snode[i], "fr-s%02d", i + 1);
        snprintf (rnode[i], sizeof rnode[i], "de-r%02d", i + 1);
        role_t r = s_role ("recv", b, rnode[i], "-", state[1][i], sizeof state[1][i],
                           result[1][i], sizeof result[1][i], phase);
        r.count = per;
        r.ready_fd = pfd[1];
        rx[i] = s_spawn (&r, count_file);
    }
    close (pfd[1]);
    int64_t deadline = s_now_ns () + (int64_t) 60 * 1000000000;
    for (int ready = 0; ready < pairs;) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        int ms = (int) ((deadline - s_now_ns ()) / 1000000);
        char buf[PAIRS];
        if (ms <= 0 || poll (&p, 1, ms) <= 0)
            s_fail ("%s: only %d of %d recipients connected in 60 s", phase, ready, pairs);
        ssize_t n = read (pfd[0], buf, sizeof buf);
        if (n <= 0)
            s_fail ("%s: a recipient exited before connecting", phase);
        ready += (int) n;
    }
    close (pfd[0]);
    for (int i = 0; i < pairs; i++) {
        role_t r = s_role ("send", b, snode[i], rnode[i], state[0][i], sizeof state[0][i],
                           result[0][i], sizeof result[0][i], phase);
        r.count = per;
        r.rate = rate;
        if (rate > 0)
            r.window = 1000000;  // open loop: the offered load is not held back
        tx[i] = s_spawn (&r, count_file);
    }
    char what[128];
    for (int i = 0; i < pairs; i++) {
        snprintf (what, sizeof what, "%.32s recipient %.15s", phase, rnode[i]);
        s_wait_child (rx[i], what);
    }
    for (int i = 0; i < pairs; i++) {
        snprintf (what, sizeof what, "%.32s sender %.15s", phase, snode[i]);
        s_wait_child (tx[i], what);
    }
    for (int i = 0; i < pairs; i++)
        s_read_recv (result[1][i], &res[i]);
    if (pids) {
        pids[0] = tx[0];
        pids[1] = rx[0];
    }
}

// True if something accepts TCP connections on 127.0.0.1:port.
static bool
s_tcp_listening (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons ((uint16_t) port)};
    a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    bool ok = connect (fd, (struct sockaddr *) &a, sizeof a) == 0;
    close (fd);
    return ok;
}

// Broker peak RSS (VmHWM), MiB; -1 if unreadable.
static double
s_vm_hwm_mib (pid_t pid)
{
    char path[64], line[256];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen (path, "r");
    if (!f)
        return -1;
    double kib = -1;
    while (fgets (line, sizeof line, f))
        if (strncmp (line, "VmHWM:", 6) == 0)
            kib = atof (line + 6);
    fclose (f);
    return kib < 0 ? -1 : kib / 1024.0;
}

static double s_t0;

static void
s_progress (const char *what)
{
    fprintf (stderr, "bench_durable: [%6.1f s] %s\n", (double) s_now_ns () / 1e9 - s_t0, what);
}

// Phase 1: 1 -> 1 closed loop with every process counting its syncs.
static void
s_phase_1to1 (long n)
{
    char count_file[PATH_MAX + 32];
    snprintf (count_file, sizeof count_file, "%s/fsync-1to1.counts", s_dir);
    broker_t b;
    s_broker_start (&b, "broker-1to1", count_file);
    recv_result_t res;
    pid_t pids[2];
    s_pairs (&b, "1to1", 1, n, 0, count_file, &res, pids);
    double secs = (double) (res.last - res.first) / 1e9;
    printf ("BENCH durable_1to1_msgs_per_s %.0f msgs/s\n", (double) n / secs);
    fflush (stdout);
    pid_t broker_pid = b.pid;
    if (s_broker_stop (&b) != 0)
        s_fail ("broker 1to1 did not exit cleanly: its fsync count is lost");
    // One line per process: broker, sender, recipient.
    FILE *f = fopen (count_file, "r");
    long pid, cnt, total = 0, broker = -1, sender = -1, recipient = -1;
    int lines = 0, zero = 0;
    while (f && fscanf (f, "%ld %ld", &pid, &cnt) == 2) {
        lines++;
        total += cnt;
        zero += cnt == 0;
        if (pid == broker_pid)
            broker = cnt;
        else if (pid == pids[0])
            sender = cnt;
        else if (pid == pids[1])
            recipient = cnt;
    }
    if (f)
        fclose (f);
    fprintf (stderr,
             "bench_durable: 1to1: %ld messages in %.2f s; syncs: %ld in all (broker %ld, "
             "sender %ld, recipient %ld)\n",
             n, secs, total, broker, sender, recipient);
    if (lines != 3 || zero || broker <= 0 || sender <= 0 || recipient <= 0)
        fprintf (stderr,
                 "bench_durable: NOTE: the fsync shim saw %d of 3 processes, %d of them with "
                 "no sync at all: SQLite's syncs are not interposed here (static reference?) "
                 "or a process did not exit normally; durable_msgs_per_fsync not printed\n",
                 lines, zero);
    else
        printf ("BENCH durable_msgs_per_fsync %.1f msgs/fsync\n", (double) n / (double) total);
    fflush (stdout);
}

// Phases 2 and 3 on one broker: 10 -> 10 closed loop, then 1 -> 1 paced.
static int
s_phase_pairs_latency (long n, double rate, long lat_s)
{
    broker_t b;
    s_broker_start (&b, "broker-pairs", NULL);
    recv_result_t res[PAIRS];
    long per = n / PAIRS;
    s_pairs (&b, "10to10", PAIRS, per, 0, NULL, res, NULL);
    int64_t first = INT64_MAX, last = 0;
    for (int i = 0; i < PAIRS; i++) {
        first = res[i].first < first ? res[i].first : first;
        last = res[i].last > last ? res[i].last : last;
    }
    double secs = (double) (last - first) / 1e9;
    printf ("BENCH durable_10to10_msgs_per_s %.0f msgs/s\n", (double) (per * PAIRS) / secs);
    fflush (stdout);
    fprintf (stderr, "bench_durable: 10to10: %ld messages in %.2f s\n", per * PAIRS, secs);
    s_progress ("10to10 done");

    long ln = (long) (rate * (double) lat_s);
    s_pairs (&b, "latency", 1, ln, rate, NULL, res, NULL);
    printf ("BENCH durable_p50_us_at_5k %.1f us\n", (double) res[0].p50 / 1000.0);
    printf ("BENCH durable_p99_us_at_5k %.1f us\n", (double) res[0].p99 / 1000.0);
    fflush (stdout);
    double took = (double) (res[0].last - res[0].first) / 1e9;
    fprintf (stderr,
             "bench_durable: latency: %ld messages offered at %.0f msgs/s, received in %.2f s "
             "(%.0f msgs/s)\n",
             ln, rate, took, (double) ln / took);
    return s_broker_stop (&b);
}

// Phase 4: a backlog for de-offline (never connected), peak RSS, SIGKILL,
// restart on the same store, time to the first Welcome, then de-offline
// connects and receives a few.
static int
s_phase_backlog (long count)
{
    broker_t b;
    s_broker_start (&b, "broker-backlog", NULL);
    char state[PATH_MAX + 64], result[PATH_MAX + 64];
    role_t r = s_role ("send", &b, "fr-backlog", "de-offline", state, sizeof state, result,
                       sizeof result, "backlog");
    r.count = count;
    r.body = 64;
    r.window = 1000;
    r.batch = 250;
    int64_t t = s_now_ns ();
    s_wait_child (s_spawn (&r, NULL), "backlog sender");
    double secs = (double) (s_now_ns () - t) / 1e9;
    fprintf (stderr, "bench_durable: backlog: %ld messages ACCEPTED in %.1f s (%.0f msgs/s)\n",
             count, secs, (double) count / secs);
    double rss = s_vm_hwm_mib (b.pid);
    if (rss < 0)
        s_fail ("cannot read VmHWM of the broker (pid %d)", (int) b.pid);
    printf ("BENCH backlog_1m_rss_mib %.1f MiB\n", rss);
    fflush (stdout);

    // Same port again: the clients' endpoint must not change.
    const char *colon = strrchr (b.endpoint, ':');
    int port = colon ? atoi (colon + 1) : 0;
    if (port <= 0)
        s_fail ("no port in the broker endpoint '%s'", b.endpoint);
    kill (b.pid, SIGKILL);
    waitpid (b.pid, NULL, 0);
    s_untrack (b.pid);
    s_broker_config (&b, port);
    char ready[PATH_MAX + 16];
    snprintf (ready, sizeof ready, "%s/state/ready", b.dir);
    unlink (ready);
    s_progress ("backlog broker killed; restarting");

    opts_t p;
    s_opts (&p, b.endpoint, s_pki, "fr-backlog", state, 0);
    int64_t t0 = s_now_ns ();
    s_broker_exec (&b, NULL);
    liaison_t *l = NULL;
    int attempts = 0, probes = 0;
    int64_t deadline = t0 + (int64_t) 120 * 1000000000, listening = 0;
    for (;;) {
        int st;
        if (waitpid (b.pid, &st, WNOHANG) == b.pid) {
            s_untrack (b.pid);
            s_fail ("restarted broker exited (status %d); see %s/liaisond.log", st, b.dir);
        }
        if (s_now_ns () > deadline)
            s_fail ("no Welcome from the restarted broker in 120 s (%d attempts; last: %s)",
                    attempts, liaison_errmsg (NULL));
        // liaison_connect does not notice a refused TCP connection: it
        // waits out its whole timeout. So a plain TCP probe first, every
        // millisecond, and liaison_connect once something listens.
        if (!listening) {
            probes++;
            if (!s_tcp_listening (port)) {
                usleep (1000);
                continue;
            }
            listening = s_now_ns ();
        }
        attempts++;
        if (liaison_connect (&p.o, &l) == LIAISON_OK)
            break;
        usleep (1000);
    }
    double ms = (double) (s_now_ns () - t0) / 1e6;
    printf ("BENCH backlog_1m_restart_ms %.1f ms\n", ms);
    fflush (stdout);
    fprintf (stderr,
             "bench_durable: restart: listening after %.1f ms (%d probes), Welcome after "
             "%.1f ms more (%d connect attempts)\n",
             (double) (listening - t0) / 1e6, probes, (double) (s_now_ns () - listening) / 1e6,
             attempts);
    liaison_close (&l);

    // The node that was offline now drains a few of its messages.
    char rstate[PATH_MAX + 64];
    snprintf (rstate, sizeof rstate, "%s/nodes/backlog-de-offline", s_dir);
    s_opts (&p, b.endpoint, s_pki, "de-offline", rstate, 1);
    if (liaison_connect (&p.o, &l) != LIAISON_OK)
        s_fail ("de-offline cannot connect after the restart: %s", liaison_errmsg (NULL));
    int got = 0;
    int64_t t1 = s_now_ns ();
    for (; got < 100; got++) {
        liaison_message_t *m = NULL;
        int e = liaison_recv (l, &m, 10000);
        if (e != LIAISON_OK) {
            fprintf (stderr, "bench_durable: de-offline: recv: %s\n", liaison_errmsg (l));
            break;
        }
        liaison_ack (l, m, LIAISON_MORE);
        liaison_message_destroy (&m);
    }
    if (got == 0)
        fprintf (stderr,
                 "bench_durable: WARNING: de-offline received none of its %ld messages after "
                 "the restart\n",
                 count);
    else
        fprintf (stderr,
                 "bench_durable: de-offline received %d messages after the restart (first "
                 "batch in %.1f ms)\n",
                 got, (double) (s_now_ns () - t1) / 1e6);
    liaison_sync (l);
    liaison_close (&l);
    return s_broker_stop (&b);
}

int
main (int argc, char **argv)
{
    if (argc > 1)
        return s_role_main (argc, argv);
    signal (SIGPIPE, SIG_IGN);
    s_t0 = (double) s_now_ns () / 1e9;
    const char *build = getenv ("LIAISON_BUILD") ? getenv ("LIAISON_BUILD") : "build";
    if (!realpath (build, s_build)) {
        fprintf (stderr, "bench_durable: no build directory %s\n", build);
        return 1;
    }
    ssize_t k = readlink ("/proc/self/exe", s_self, sizeof s_self - 1);
    if (k <= 0)
        return 1;
    s_self[k] = 0;
    long n = s_env_long ("BENCH_DURABLE_MESSAGES", 50000);
    long backlog = s_env_long ("BENCH_BACKLOG", 1000000);
    double rate = (double) s_env_long ("BENCH_DURABLE_RATE", 5000);
    long lat_s = s_env_long ("BENCH_DURABLE_LATENCY_S", 5);
    if (n < PAIRS || backlog < 1 || rate <= 0 || lat_s < 1) {
        fprintf (stderr, "bench_durable: bad BENCH_* setting\n");
        return 1;
    }
    char shim[PATH_MAX + 16];
    snprintf (shim, sizeof shim, "%s/fsync_count.so", s_build);
    if (access (shim, R_OK) != 0) {
        fprintf (stderr, "bench_durable: %s missing (make %s/fsync_count.so)\n", shim, build);
        return 1;
    }
    snprintf (s_dir, sizeof s_dir, "/tmp/liaison-bench-durable-XXXXXX");
    if (!mkdtemp (s_dir))
        return 1;
    snprintf (s_pki, sizeof s_pki, "%s/pki", s_dir);
    char path[PATH_MAX + 32];
    snprintf (path, sizeof path, "%s/nodes", s_dir);
    mkdir (path, 0700);
    snprintf (path, sizeof path, "%s/bench.rules", s_dir);
    s_write_file (path, "# bench_durable: every node may send to every node\nallow\n");

    // BENCH_DURABLE_PHASES: a subset of "1to1 pairs backlog" (default all).
    const char *phases = getenv ("BENCH_DURABLE_PHASES") ? getenv ("BENCH_DURABLE_PHASES")
                                                          : "1to1 pairs backlog";
    s_make_pki ();
    s_progress ("PKI ready (22 nodes)");
    int bad = 0;
    if (strstr (phases, "1to1")) {
        s_phase_1to1 (n);
        s_progress ("1to1 done");
    }
    if (strstr (phases, "pairs")) {
        bad |= s_phase_pairs_latency (n, rate, lat_s);
        s_progress ("latency done");
    }
    if (strstr (phases, "backlog")) {
        bad |= s_phase_backlog (backlog);
        s_progress ("backlog done");
    }

    if (getenv ("BENCH_KEEP"))
        fprintf (stderr, "bench_durable: kept %s\n", s_dir);
    else {
        char cmd[PATH_MAX + 32];
        snprintf (cmd, sizeof cmd, "rm -rf '%s'", s_dir);
        if (system (cmd) != 0)
            bad = 1;
    }
    return bad ? 1 : 0;
}
