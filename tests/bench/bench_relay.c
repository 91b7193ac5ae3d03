/*  make bench: relay throughput and latency of 1 KiB envelopes between two
    nodes over mutual TLS on loopback, through a real liaisond.

    Throughput: one sender (fr-pn) and one receiver (de-bka), each in its
    own thread, at most 100 messages in flight (sent, not yet received).
    Latency: the sender offers a fixed load and the receiver measures the
    time from send to receipt of each message (same process, same clock).
    Prints BENCH lines; a benchmark, not a test: it asserts nothing.        */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "liaison.h"

#define BODY 1024
#define IN_FLIGHT (getenv ("BENCH_IN_FLIGHT") ? atol (getenv ("BENCH_IN_FLIGHT")) : 100)

static char s_endpoint[128];
static char s_pki[512];
static char s_dir[256];
static atomic_long s_received;
static pthread_mutex_t s_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_cv = PTHREAD_COND_INITIALIZER;

// The sender waits here (not spinning: two cores are shared by everyone)
// until fewer than `limit` messages are in flight, pumping its session.
static void
s_wait_window (liaison_t *tx, long sent, long limit)
{
    while (sent - atomic_load (&s_received) >= limit) {
        liaison_pump (tx, 0);
        pthread_mutex_lock (&s_mu);
        if (sent - atomic_load (&s_received) >= limit) {
            struct timespec ts;
            clock_gettime (CLOCK_REALTIME, &ts);
            ts.tv_nsec += 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait (&s_cv, &s_mu, &ts);
        }
        pthread_mutex_unlock (&s_mu);
    }
}
static long s_total;
static int64_t *s_lat_ns;      /* latency per message, latency phase */

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
s_opts (liaison_options_t *o, char bufs[5][600], const char *node)
{
    static unsigned counter;
    memset (o, 0, sizeof *o);
    snprintf (bufs[4], 600, "%s/client-%s-%u", s_dir, node, ++counter);
    o->state_dir = bufs[4];
    snprintf (bufs[0], 600, "%s/nodes/%s/node.pem", s_pki, node);
    snprintf (bufs[1], 600, "%s/nodes/%s/node.key", s_pki, node);
    snprintf (bufs[2], 600, "%s/root/ca.pem", s_pki);
    snprintf (bufs[3], 600, "%s/hub/ca.pem", s_pki);
    o->endpoint = s_endpoint;
    o->cert = bufs[0];
    o->key = bufs[1];
    o->ca = bufs[2];
    o->hub_ca = bufs[3];
    o->timeout_ms = 10000;
}

static liaison_t *
s_connect (const char *node, int receiver)
{
    liaison_options_t o;
    char bufs[5][600];
    s_opts (&o, bufs, node);
    o.receiver = receiver;
    o.window = 256;
    liaison_t *l = NULL;
    if (liaison_connect (&o, &l) != LIAISON_OK) {
        fprintf (stderr, "bench: connect %s: %s\n", node, liaison_errmsg (NULL));
        exit (1);
    }
    return l;
}

static void *
s_receiver (void *arg)
{
    liaison_t *l = arg;
    long want = s_total;
    for (long got = 0; got < want;) {
        liaison_message_t *m = NULL;
        int rc = liaison_recv (l, &m, 10000);
        if (rc != LIAISON_OK) {
            fprintf (stderr, "bench: recv: %s\n", liaison_errmsg (l));
            exit (1);
        }
        if (s_lat_ns) {
            size_t n;
            const uint8_t *b = liaison_message_body (m, &n);
            int64_t sent, idx;
            memcpy (&sent, b, 8);
            memcpy (&idx, b + 8, 8);
            if (idx >= 0 && idx < want)
                s_lat_ns[idx] = s_now_ns () - sent;
        }
        liaison_message_destroy (&m);
        got++;
        pthread_mutex_lock (&s_mu);
        atomic_store (&s_received, got);
        pthread_cond_signal (&s_cv);
        pthread_mutex_unlock (&s_mu);
    }
    return NULL;
}

// Sends `total` messages; rate 0 = as fast as the window allows.
static double
s_run (liaison_t *tx, liaison_t *rx, long total, double rate)
{
    s_total = total;
    atomic_store (&s_received, 0);
    pthread_t th;
    pthread_create (&th, NULL, s_receiver, rx);
    uint8_t body[BODY];
    memset (body, 'x', sizeof body);
    int64_t start = s_now_ns ();
    for (long i = 0; i < total; i++) {
        if (rate > 0) {
            int64_t due = start + (int64_t) ((double) i * 1e9 / rate);
            liaison_pump (tx, 0);
            int64_t wait = due - s_now_ns ();
            if (wait > 0) {
                struct timespec ts = {wait / 1000000000, wait % 1000000000};
                nanosleep (&ts, NULL);  // pacing the offered load
            }
        }
        s_wait_window (tx, i, IN_FLIGHT);
        // A new message each time, as an application would make them: each
        // gets its own random id from the library.
        liaison_message_t *m = liaison_message_new (LIAISON_CASE_LEAD);
        liaison_message_add_recipient (m, LIAISON_TO_NODE, "de-bka");
        liaison_message_set_tlp (m, LIAISON_TLP_GREEN);
        int64_t now = s_now_ns ();
        memcpy (body, &now, 8);
        int64_t idx = i;
        memcpy (body + 8, &idx, 8);
        liaison_message_set_body (m, body, sizeof body);
        // Unpaced: batch into few TLS records until the window fills.
        int more = rate == 0 && (i + 1 - atomic_load (&s_received)) < IN_FLIGHT && (i % 32) != 31;
        int rc = liaison_send (tx, m, more ? LIAISON_MORE : 0);
        liaison_message_destroy (&m);
        if (rc != LIAISON_OK) {
            fprintf (stderr, "bench: send: %s\n", liaison_errmsg (tx));
            exit (1);
        }
    }
    liaison_flush (tx, 10000);
    s_wait_window (tx, total, 1);
    int64_t end = s_now_ns ();
    pthread_join (th, NULL);
    return (double) (end - start) / 1e9;
}

static int
s_cmp (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

int
main (void)
{
    const char *build = getenv ("LIAISON_BUILD") ? getenv ("LIAISON_BUILD") : "build";
    const char *pki = getenv ("LIAISON_PKI") ? getenv ("LIAISON_PKI") : "build/test-pki";
    realpath (pki, s_pki);
    long n = getenv ("BENCH_MESSAGES") ? atol (getenv ("BENCH_MESSAGES")) : 200000;
    double rate = getenv ("BENCH_RATE") ? atof (getenv ("BENCH_RATE")) : 10000;
    char dir[256];
    snprintf (dir, sizeof dir, "%s/liaison-bench-XXXXXX",
              getenv ("TMPDIR") && *getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp");
    if (!mkdtemp (dir))
        return 1;
    snprintf (s_dir, sizeof s_dir, "%s", dir);
    char cfg[600], ready[600], bin[600];
    snprintf (cfg, sizeof cfg, "%s/liaisond.cfg", dir);
    snprintf (ready, sizeof ready, "%s/state/ready", dir);
    snprintf (bin, sizeof bin, "%s/liaisond", build);
    char rules[600];
    snprintf (rules, sizeof rules, "%s/liaison.rules", dir);
    FILE *f = fopen (rules, "w");
    fprintf (f, "# bench: every node may send to every node\nallow\n");
    fclose (f);
    f = fopen (cfg, "w");
    fprintf (f,
             "liaisond\n    endpoint = tcp://127.0.0.1:*\n    state_dir = %s/state\n"
             "    rules = %s\n"
             "    tls\n        cert = %s/broker/hub.pem\n        key = %s/broker/hub.key\n"
             "        ca = %s/root/ca.pem\n        crl_dir = %s/crl\n",
             dir, rules, s_pki, s_pki, s_pki, s_pki);
    fclose (f);
    pid_t pid = fork ();
    if (pid == 0) {
        // BENCH_BROKER_LOG keeps the broker's log (commit counts, events).
        const char *log = getenv ("BENCH_BROKER_LOG");
        int fd = log ? open (log, O_WRONLY | O_CREAT | O_TRUNC, 0600) : open ("/dev/null", O_WRONLY);
        dup2 (fd, 2);
        execl (bin, "liaisond", "-c", cfg, (char *) NULL);
        _exit (127);
    }
    for (int i = 0; i < 1000; i++) {
        FILE *r = fopen (ready, "r");
        if (r) {
            if (fgets (s_endpoint, sizeof s_endpoint, r))
                s_endpoint[strcspn (s_endpoint, "\n")] = 0;
            fclose (r);
            if (s_endpoint[0])
                break;
        }
        usleep (10000);  // waiting for the broker to start; not a measurement
    }
    liaison_t *rx = s_connect ("de-bka", 1);
    liaison_t *tx = s_connect ("fr-pn", 0);
    liaison_flush (rx, 5000);

    s_run (tx, rx, 20000, 0);  // warm-up
    double secs = s_run (tx, rx, n, 0);
    printf ("BENCH relay_msgs_per_s %.0f msgs/s\n", (double) n / secs);
    fflush (stdout);

    long ln = (long) (rate * 5);  // five seconds at the offered load
    s_lat_ns = calloc ((size_t) ln, sizeof *s_lat_ns);
    s_run (tx, rx, ln, rate);
    qsort (s_lat_ns, (size_t) ln, sizeof *s_lat_ns, s_cmp);
    printf ("BENCH relay_offered_load %.0f msgs/s\n", rate);
    printf ("BENCH relay_p50_us %.1f us\n", (double) s_lat_ns[ln / 2] / 1000.0);
    printf ("BENCH relay_p99_us %.1f us\n", (double) s_lat_ns[ln * 99 / 100] / 1000.0);
    free (s_lat_ns);
    liaison_close (&tx);
    liaison_close (&rx);
    kill (pid, SIGTERM);
    int st;
    waitpid (pid, &st, 0);
    char cmd[700];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system (cmd) != 0)
        return 1;
    return WIFEXITED (st) && WEXITSTATUS (st) == 0 ? 0 : 1;
}
