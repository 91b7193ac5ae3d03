/*  Integration tests of durable store-and-forward: a real liaisond killed,
    restarted, filled up and damaged under real clients, each asserting a
    guarantee of README "Delivery": every ACCEPTED message reaches the
    recipient application exactly once, whoever crashes.                    */
#include "ackproof.h"
#include "harness.h"
#include "store.h"
#include "suites.h"

#include <errno.h>
#include <openssl/pem.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// A set of message ids mapped to the test's index for each, open
// addressing; ids are time-ordered, so the random bytes are hashed.
typedef struct {
    uint8_t (*ids)[LIAISON_ID_LEN];
    int *index;  /* -1: empty slot */
    size_t cap;
} idmap_t;

static void
s_idmap_init (idmap_t *m, size_t cap)
{
    m->cap = cap;
    m->ids = calloc (cap, LIAISON_ID_LEN);
    m->index = malloc (cap * sizeof *m->index);
    ck_assert (m->ids && m->index);
    for (size_t i = 0; i < cap; i++)
        m->index[i] = -1;
}

static void
s_idmap_free (idmap_t *m)
{
    free (m->ids);
    free (m->index);
}

static size_t
s_idmap_slot (const idmap_t *m, const uint8_t *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < LIAISON_ID_LEN; i++)
        h = (h ^ id[i]) * 1099511628211ULL;
    size_t s = (size_t) (h % m->cap);
    while (m->index[s] >= 0 && memcmp (m->ids[s], id, LIAISON_ID_LEN) != 0)
        s = (s + 1) % m->cap;
    return s;
}

static void
s_idmap_put (idmap_t *m, const uint8_t *id, int index)
{
    size_t s = s_idmap_slot (m, id);
    memcpy (m->ids[s], id, LIAISON_ID_LEN);
    m->index[s] = index;
}

// The index stored for id, or -1.
static int
s_idmap_get (const idmap_t *m, const uint8_t *id)
{
    return m->index[s_idmap_slot (m, id)];
}

static liaison_message_t *
s_msg (const char *to, const char *fmt, int n)
{
    char body[128];
    snprintf (body, sizeof body, fmt, n);
    liaison_message_t *m = liaison_message_new (LIAISON_MLA_REQUEST);
    ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_NODE, to), LIAISON_OK);
    ck_assert_int_eq (liaison_message_set_body (m, body, strlen (body)), LIAISON_OK);
    return m;
}

// The number in a body "... %d", or -1.
static int
s_body_number (const liaison_message_t *m)
{
    size_t len = 0;
    const char *body = liaison_message_body (m, &len);
    char buf[128];
    if (!body || len == 0 || len >= sizeof buf)
        return -1;
    memcpy (buf, body, len);
    buf[len] = 0;
    const char *sp = strrchr (buf, ' ');
    return sp ? atoi (sp + 1) : -1;
}

// Connects node with the given state directory (NULL: a fresh one).
static liaison_t *
s_connect (broker_t *b, const char *node, int receiver, const char *state, int timeout_ms)
{
    node_opts_t n;
    char sub[64];
    snprintf (sub, sizeof sub, "nodes/%s", node);
    harness_node (b, &n, sub);
    if (state) {
        snprintf (n.state, sizeof n.state, "%s", state);
        n.o.state_dir = n.state;
    }
    n.o.receiver = receiver;
    if (timeout_ms)
        n.o.timeout_ms = timeout_ms;
    liaison_t *l = NULL;
    int rc = liaison_connect (&n.o, &l);
    ck_assert_msg (rc == LIAISON_OK, "connect %s: %s", node, liaison_errmsg (NULL));
    if (receiver)
        ck_assert_int_eq (liaison_flush (l, harness_ms (5000)), LIAISON_OK);
    return l;
}

// A state directory path under the broker's directory, for a client that
// is restarted on the same one.
static void
s_state_path (broker_t *b, const char *name, char *out, size_t size)
{
    snprintf (out, size, "%s/state-%s", b->dir, name);
}

// Drains the receipts queued now; counts ACCEPTED per id into `accepted`
// (indexes from map), fails on any REJECTED.
static int
s_drain_accepted (liaison_t *l, const idmap_t *map, unsigned char *accepted)
{
    int fresh = 0;
    liaison_receipt_t *r = NULL;
    while (liaison_next_receipt (l, &r, 0) == LIAISON_OK) {
        ck_assert_msg (liaison_receipt_status (r) != LIAISON_REJECTED, "REJECTED %s: %s",
                       liaison_receipt_recipient (r), liaison_receipt_reason (r));
        if (liaison_receipt_status (r) == LIAISON_ACCEPTED) {
            int i = s_idmap_get (map, liaison_receipt_id (r));
            ck_assert_msg (i >= 0, "ACCEPTED for an id never sent");
            if (!accepted[i])
                fresh++;
            accepted[i] = 1;
        }
        liaison_receipt_destroy (&r);
    }
    return fresh;
}

/* --------------------------------------------- 1. broker killed 3 times */

// ~3000 messages in batches while the broker is SIGKILLed three times in
// the middle of a batch and restarted on the same store and port. The
// sender retries what failed; its library resends its outbox. In the end
// every message was ACCEPTED, and the recipient application received each
// exactly once.
START_TEST (test_broker_killed_during_transfer)
{
    enum { TOTAL = 3000, BATCH = 100, KILLS = 3 };
    broker_t b;
    harness_prepare_ex (&b, NULL, NULL, harness_free_port ());
    ck_assert_int_eq (harness_start (&b), 0);
    liaison_t *tx = s_connect (&b, "fr-pn", 0, NULL, harness_ms (2000));
    liaison_t *rx = s_connect (&b, "de-bka", 1, NULL, harness_ms (2000));
    liaison_message_t **msgs = calloc (TOTAL, sizeof *msgs);
    unsigned char *accepted = calloc (TOTAL, 1), *received = calloc (TOTAL, 1);
    idmap_t map;
    s_idmap_init (&map, 4 * TOTAL);
    int next = 0, kills = 0, n_accepted = 0, n_received = 0, send_errors = 0;
    int64_t in_flight = 0;
    int64_t deadline = s_now_ms () + harness_ms (90000);
    while ((n_accepted < TOTAL || n_received < TOTAL) && s_now_ms () < deadline) {
        // A batch, the last frame flushed (no barrier).
        int end = next + BATCH < TOTAL ? next + BATCH : TOTAL;
        while (next < end) {
            if (!msgs[next])
                msgs[next] = s_msg ("de-bka", "transfer %d", next);
            int rc = liaison_send (tx, msgs[next], next + 1 == end ? 0 : LIAISON_MORE);
            s_idmap_put (&map, liaison_message_id (msgs[next]), next);
            if (rc != LIAISON_OK) {
                send_errors++;
                break;  // the same message again on the next round
            }
            next++;
        }
        // Kill it with that batch in flight, try to go on while it is
        // down, and bring it back on the same store.
        if (kills < KILLS && next >= (kills + 1) * TOTAL / (KILLS + 1)) {
            // Some of it is not ACCEPTED yet: the kill hits a transfer.
            in_flight += liaison_outbox_count (tx);
            ck_assert_int_gt (liaison_outbox_count (tx), 0);
            harness_broker_kill (&b);
            kills++;
            // While it is down, the barrier cannot be answered, and a send
            // (which reconnects first) fails; the application retries.
            ck_assert_int_ne (liaison_flush (tx, harness_ms (2000)), LIAISON_OK);
            if (next < TOTAL) {
                if (!msgs[next])
                    msgs[next] = s_msg ("de-bka", "transfer %d", next);
                int rc = liaison_send (tx, msgs[next], 0);
                ck_assert_msg (rc != LIAISON_OK, "sent with the broker down");
                send_errors++;
                s_idmap_put (&map, liaison_message_id (msgs[next]), next);
            }
            ck_assert_msg (harness_broker_restart (&b) == 0, "restart %d failed; see %s", kills,
                           b.log);
        }
        // The sender: a barrier (its outbox goes again after a reconnect),
        // then the receipts.
        liaison_flush (tx, harness_ms (2000));
        n_accepted += s_drain_accepted (tx, &map, accepted);
        // The recipient application: each message once, acknowledged.
        liaison_message_t *m = NULL;
        int wait = next < TOTAL ? 0 : 50;
        while (liaison_recv (rx, &m, wait) == LIAISON_OK) {
            int i = s_body_number (m);
            ck_assert_msg (i >= 0 && i < TOTAL, "unknown message");
            ck_assert_str_eq (liaison_message_sender (m), "fr-pn");
            ck_assert_msg (!received[i], "message %d handed to the application twice", i);
            received[i] = 1;
            n_received++;
            ck_assert_int_eq (liaison_ack (rx, m, LIAISON_MORE), LIAISON_OK);
            liaison_message_destroy (&m);
            wait = 0;
        }
        liaison_sync (rx);
    }
    ck_assert_int_eq (kills, KILLS);
    ck_assert_msg (n_accepted == TOTAL, "%d of %d ACCEPTED", n_accepted, TOTAL);
    for (int i = 0; i < TOTAL; i++)
        ck_assert_msg (!accepted[i] || received[i], "message %d ACCEPTED, never received", i);
    ck_assert_int_eq (n_received, TOTAL);
    ck_assert_int_eq (liaison_outbox_count (tx), 0);
    // Nothing comes late or again.
    ck_assert_int_eq (liaison_flush (rx, harness_ms (5000)), LIAISON_OK);
    liaison_message_t *extra = NULL;
    ck_assert_int_eq (liaison_recv (rx, &extra, 300), LIAISON_ETIMEOUT);
    ck_assert_int_eq (liaison_inbox_count (rx), 0);
    fprintf (stderr, "durable: %d messages through %d kills (%lld in the outbox at the kills, "
             "%d sends refused while down)\n", TOTAL, kills, (long long) in_flight, send_errors);
    for (int i = 0; i < TOTAL; i++)
        liaison_message_destroy (&msgs[i]);
    free (msgs);
    free (accepted);
    free (received);
    s_idmap_free (&map);
    liaison_close (&tx);
    liaison_close (&rx);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

/* ------------------------------- 2. offline recipient across a restart */

START_TEST (test_offline_recipient_across_restart)
{
    enum { N = 50 };
    broker_t b;
    harness_prepare_ex (&b, NULL, NULL, harness_free_port ());
    ck_assert_int_eq (harness_start (&b), 0);
    liaison_t *tx = s_connect (&b, "fr-pn", 0, NULL, 0);
    liaison_message_t *m[N];
    int prio[N];
    for (int i = 0; i < N; i++) {
        m[i] = s_msg ("it-ps", "offline %d", i);
        prio[i] = i % 7 == 3 ? LIAISON_EMERGENCY : i % 3 == 1 ? LIAISON_URGENT : LIAISON_ROUTINE;
        liaison_message_set_priority (m[i], (liaison_priority_t) prio[i]);
        ck_assert_int_eq (liaison_send (tx, m[i], LIAISON_MORE), LIAISON_OK);
    }
    ck_assert_int_eq (liaison_flush (tx, harness_ms (5000)), LIAISON_OK);
    for (int i = 0; i < N; i++) {
        liaison_receipt_t *r = harness_expect_receipt (tx, liaison_message_id (m[i]), "it-ps",
                                                       LIAISON_ACCEPTED, harness_ms (5000));
        liaison_receipt_destroy (&r);
    }
    liaison_close (&tx);
    // ACCEPTED means durable: a SIGKILL loses none of it.
    harness_broker_kill (&b);
    ck_assert_int_eq (harness_broker_restart (&b), 0);
    liaison_t *rx = s_connect (&b, "it-ps", 1, NULL, 0);
    // Highest priority first; in sending order within a priority.
    int expect[N], k = 0;
    for (int p = LIAISON_EMERGENCY; p >= LIAISON_ROUTINE; p--)
        for (int i = 0; i < N; i++)
            if (prio[i] == p)
                expect[k++] = i;
    for (int j = 0; j < N; j++) {
        liaison_message_t *got = NULL;
        ck_assert_int_eq (liaison_recv (rx, &got, harness_ms (5000)), LIAISON_OK);
        int i = s_body_number (got);
        ck_assert_msg (i == expect[j], "delivery %d: message %d (priority %d), expected %d "
                       "(priority %d)", j, i, i >= 0 && i < N ? prio[i] : -1, expect[j],
                       prio[expect[j]]);
        ck_assert_mem_eq (liaison_message_id (got), liaison_message_id (m[i]), LIAISON_ID_LEN);
        ck_assert_int_eq ((int) liaison_message_priority (got), prio[i]);
        ck_assert_int_eq (liaison_ack (rx, got, LIAISON_MORE), LIAISON_OK);
        liaison_message_destroy (&got);
    }
    liaison_message_t *none = NULL;
    ck_assert_int_eq (liaison_recv (rx, &none, 200), LIAISON_ETIMEOUT);
    for (int i = 0; i < N; i++)
        liaison_message_destroy (&m[i]);
    liaison_close (&rx);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

/* --------------------------------------------------- 3. clients killed */

// Child: as fr-pn on `state`, puts a message in the outbox (durable, by
// liaison_sync) but never flushes it to the wire, writes its id to fd and
// dies by SIGKILL.
static void
s_child_send_and_die (broker_t *b, const char *state, int fd)
{
    node_opts_t n;
    harness_node (b, &n, "nodes/fr-pn");
    snprintf (n.state, sizeof n.state, "%s", state);
    n.o.state_dir = n.state;
    liaison_t *l = NULL;
    if (liaison_connect (&n.o, &l) != LIAISON_OK)
        _exit (2);
    liaison_message_t *m = s_msg ("de-bka", "orphan %d", 1);
    if (liaison_send (l, m, LIAISON_MORE) != LIAISON_OK || liaison_sync (l) != LIAISON_OK)
        _exit (3);
    if (write (fd, liaison_message_id (m), LIAISON_ID_LEN) != LIAISON_ID_LEN)
        _exit (4);
    raise (SIGKILL);
    _exit (5);
}

// Child: as de-bka's receiver on `state`, takes one message from
// liaison_recv, writes its id to fd and dies by SIGKILL before liaison_ack.
static void
s_child_recv_and_die (broker_t *b, const char *state, int fd)
{
    node_opts_t n;
    harness_node (b, &n, "nodes/de-bka");
    snprintf (n.state, sizeof n.state, "%s", state);
    n.o.state_dir = n.state;
    n.o.receiver = 1;
    liaison_t *l = NULL;
    if (liaison_connect (&n.o, &l) != LIAISON_OK)
        _exit (2);
    liaison_message_t *m = NULL;
    if (liaison_recv (l, &m, 10000) != LIAISON_OK)
        _exit (3);
    if (write (fd, liaison_message_id (m), LIAISON_ID_LEN) != LIAISON_ID_LEN)
        _exit (4);
    raise (SIGKILL);
    _exit (5);
}

// Forks fn (which must die by SIGKILL) and reads the id it reports.
static void
s_run_child (broker_t *b, const char *state,
             void (*fn) (broker_t *, const char *, int), uint8_t id[LIAISON_ID_LEN])
{
    int p[2];
    ck_assert_int_eq (pipe (p), 0);
    pid_t pid = fork ();
    ck_assert_int_ge (pid, 0);
    if (pid == 0) {
        close (p[0]);
        fn (b, state, p[1]);
        _exit (6);
    }
    close (p[1]);
    ssize_t got = read (p[0], id, LIAISON_ID_LEN);
    close (p[0]);
    int st = 0;
    ck_assert_int_eq (waitpid (pid, &st, 0), pid);
    ck_assert_msg (WIFSIGNALED (st) && WTERMSIG (st) == SIGKILL, "child ended with %s %d",
                   WIFSIGNALED (st) ? "signal" : "status",
                   WIFSIGNALED (st) ? WTERMSIG (st) : WEXITSTATUS (st));
    ck_assert_int_eq (got, LIAISON_ID_LEN);
}

START_TEST (test_client_killed_before_accepted)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    char state[400];
    s_state_path (&b, "fr-pn", state, sizeof state);
    uint8_t id[LIAISON_ID_LEN];
    s_run_child (&b, state, s_child_send_and_die, id);
    liaison_t *rx = s_connect (&b, "de-bka", 1, NULL, 0);
    // The sender restarts on its state directory: the outbox goes again.
    liaison_t *tx = s_connect (&b, "fr-pn", 0, state, 0);
    ck_assert_int_eq (liaison_outbox_count (tx), 1);
    ck_assert_int_eq (liaison_flush (tx, harness_ms (5000)), LIAISON_OK);
    liaison_receipt_t *r = harness_expect_receipt (tx, id, "de-bka", LIAISON_ACCEPTED,
                                                   harness_ms (5000));
    liaison_receipt_destroy (&r);
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (rx, &got, harness_ms (5000)), LIAISON_OK);
    ck_assert_mem_eq (liaison_message_id (got), id, LIAISON_ID_LEN);
    ck_assert_int_eq (s_body_number (got), 1);
    ck_assert_int_eq (liaison_ack (rx, got, 0), LIAISON_OK);
    liaison_message_destroy (&got);
    // Exactly once: nothing more, and the outbox is empty.
    ck_assert_int_eq (liaison_flush (tx, harness_ms (5000)), LIAISON_OK);
    ck_assert_int_eq (liaison_recv (rx, &got, 300), LIAISON_ETIMEOUT);
    ck_assert_int_eq (liaison_outbox_count (tx), 0);
    // The stored trail starts with ACCEPTED.
    liaison_trail_t *t = NULL;
    ck_assert_int_eq (liaison_trail (tx, id, &t), LIAISON_OK);
    ck_assert_uint_ge (liaison_trail_count (t), 1);
    ck_assert_int_eq (liaison_receipt_status (liaison_trail_get (t, 0)), LIAISON_ACCEPTED);
    ck_assert_str_eq (liaison_receipt_recipient (liaison_trail_get (t, 0)), "de-bka");
    liaison_trail_destroy (&t);
    liaison_close (&tx);
    liaison_close (&rx);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_client_killed_before_ack)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    char state[400];
    s_state_path (&b, "de-bka", state, sizeof state);
    liaison_t *tx = s_connect (&b, "fr-pn", 0, NULL, 0);
    liaison_message_t *m = s_msg ("de-bka", "unacked %d", 7);
    ck_assert_int_eq (liaison_send (tx, m, 0), LIAISON_OK);
    uint8_t id[LIAISON_ID_LEN];
    s_run_child (&b, state, s_child_recv_and_die, id);
    ck_assert_mem_eq (id, liaison_message_id (m), LIAISON_ID_LEN);
    // The application never acknowledged it: the next session on the same
    // state directory is handed it again.
    liaison_t *rx = s_connect (&b, "de-bka", 1, state, 0);
    ck_assert_int_eq (liaison_inbox_count (rx), 1);
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (rx, &got, harness_ms (5000)), LIAISON_OK);
    ck_assert_mem_eq (liaison_message_id (got), id, LIAISON_ID_LEN);
    ck_assert_int_eq (liaison_ack (rx, got, 0), LIAISON_OK);
    liaison_message_destroy (&got);
    ck_assert_int_eq (liaison_recv (rx, &got, 300), LIAISON_ETIMEOUT);
    liaison_close (&rx);
    // Acknowledged: never again, even from a fresh session on that state.
    rx = s_connect (&b, "de-bka", 1, state, 0);
    ck_assert_int_eq (liaison_inbox_count (rx), 0);
    ck_assert_int_eq (liaison_recv (rx, &got, 500), LIAISON_ETIMEOUT);
    // The sender heard ACCEPTED, and DELIVERED exactly once.
    ck_assert_int_eq (liaison_flush (tx, harness_ms (5000)), LIAISON_OK);
    liaison_receipt_t *r =
        harness_expect_receipt (tx, id, "de-bka", LIAISON_ACCEPTED, harness_ms (5000));
    liaison_receipt_destroy (&r);
    r = harness_expect_receipt (tx, id, "de-bka", LIAISON_DELIVERED, harness_ms (5000));
    liaison_receipt_destroy (&r);
    ck_assert_int_eq (liaison_next_receipt (tx, &r, 300), LIAISON_ETIMEOUT);
    liaison_message_destroy (&m);
    liaison_close (&rx);
    liaison_close (&tx);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

/* --------------------------------------------------- 4. duplicate resend */

START_TEST (test_duplicate_resend)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *rx = s_connect (&b, "de-bka", 1, NULL, 0);
    liaison_t *tx = s_connect (&b, "fr-pn", 0, NULL, 0);
    liaison_message_t *m = s_msg ("de-bka", "once %d", 1);
    ck_assert_int_eq (liaison_send (tx, m, 0), LIAISON_OK);
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (rx, &got, harness_ms (5000)), LIAISON_OK);
    ck_assert_int_eq (liaison_ack (rx, got, 0), LIAISON_OK);
    liaison_message_destroy (&got);
    liaison_receipt_t *acc = harness_expect_receipt (tx, liaison_message_id (m), "de-bka",
                                                     LIAISON_ACCEPTED, harness_ms (5000));
    liaison_receipt_t *del = harness_expect_receipt (tx, liaison_message_id (m), "de-bka",
                                                     LIAISON_DELIVERED, harness_ms (5000));
    // The same message again (same id, same content): the original
    // receipts, with their original times; the recipient gets nothing new.
    ck_assert_int_eq (liaison_send (tx, m, 0), LIAISON_OK);
    ck_assert_int_eq (liaison_flush (tx, harness_ms (5000)), LIAISON_OK);
    liaison_receipt_t *r = harness_expect_receipt (tx, liaison_message_id (m), "de-bka",
                                                   LIAISON_ACCEPTED, harness_ms (5000));
    ck_assert_int_eq (liaison_receipt_time (r), liaison_receipt_time (acc));
    liaison_receipt_destroy (&r);
    r = harness_expect_receipt (tx, liaison_message_id (m), "de-bka", LIAISON_DELIVERED,
                                harness_ms (5000));
    ck_assert_int_eq (liaison_receipt_time (r), liaison_receipt_time (del));
    char cert[600];
    ck_assert_int_eq (liaison_receipt_verify (r, harness_node_cert (&b, "de-bka", cert, sizeof cert)),
                      LIAISON_OK);
    liaison_receipt_destroy (&r);
    ck_assert_int_eq (liaison_flush (rx, harness_ms (5000)), LIAISON_OK);
    ck_assert_int_eq (liaison_recv (rx, &got, 300), LIAISON_ETIMEOUT);
    // Resolved again to another list (rules changed since, say): still the
    // message the broker has, so its original receipts and nothing new.
    ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_NODE, "it-ps"), LIAISON_OK);
    ck_assert_int_eq (liaison_send (tx, m, 0), LIAISON_OK);
    ck_assert_int_eq (liaison_flush (tx, harness_ms (5000)), LIAISON_OK);
    r = harness_expect_receipt (tx, liaison_message_id (m), "de-bka", LIAISON_ACCEPTED,
                                harness_ms (5000));
    ck_assert_int_eq (liaison_receipt_time (r), liaison_receipt_time (acc));
    liaison_receipt_destroy (&r);
    r = harness_expect_receipt (tx, liaison_message_id (m), "de-bka", LIAISON_DELIVERED,
                                harness_ms (5000));
    liaison_receipt_destroy (&r);
    ck_assert_int_eq (liaison_next_receipt (tx, &r, 0), LIAISON_ETIMEOUT);
    liaison_trail_t *trail = NULL;
    ck_assert_int_eq (liaison_trail (tx, liaison_message_id (m), &trail), LIAISON_OK);
    ck_assert_uint_eq (liaison_trail_count (trail), 2);  // de-bka only: no it-ps added
    liaison_trail_destroy (&trail);
    // The same id with another body: refused, id-reused.
    ck_assert_int_eq (liaison_message_set_body (m, "other content", 13), LIAISON_OK);
    ck_assert_int_eq (liaison_send (tx, m, 0), LIAISON_OK);
    ck_assert_int_eq (liaison_flush (tx, harness_ms (5000)), LIAISON_OK);
    harness_expect_rejected (tx, liaison_message_id (m), "de-bka", "id-reused", NULL);
    harness_expect_rejected (tx, liaison_message_id (m), "it-ps", "id-reused", NULL);
    ck_assert_int_eq (liaison_recv (rx, &got, 300), LIAISON_ETIMEOUT);
    ck_assert_int_eq (liaison_next_receipt (tx, &r, 0), LIAISON_ETIMEOUT);
    ck_assert (harness_log_wait (&b, "reason=id-reused", 0, 1000));
    liaison_receipt_destroy (&acc);
    liaison_receipt_destroy (&del);
    liaison_message_destroy (&m);
    liaison_close (&tx);
    liaison_close (&rx);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

/* -------------------------------------------------------- 5. store full */

// Bytes an empty store occupies (pages in use), measured on a fresh one.
static int64_t
s_empty_store_bytes (void)
{
    char dir[] = "/tmp/liaison-emptystore-XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    char path[128], err[256];
    snprintf (path, sizeof path, "%s/liaison.db", dir);
    store_config_t cfg = {path, 0, 0};
    store_t *st = store_open (&cfg, err, sizeof err);
    ck_assert_msg (st != NULL, "%s", err);
    store_close (&st);
    sqlite3 *db = NULL;
    ck_assert_int_eq (sqlite3_open (path, &db), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    ck_assert_int_eq (sqlite3_prepare_v2 (db,
                                          "SELECT (p.page_count - f.freelist_count) * s.page_size"
                                          " FROM pragma_page_count () AS p,"
                                          " pragma_freelist_count () AS f, pragma_page_size () AS s",
                                          -1, &q, NULL),
                      SQLITE_OK);
    ck_assert_int_eq (sqlite3_step (q), SQLITE_ROW);
    int64_t bytes = sqlite3_column_int64 (q, 0);
    sqlite3_finalize (q);
    sqlite3_close (db);
    harness_sh ("rm -rf '%s'", dir);
    return bytes;
}

static liaison_message_t *
s_big_msg (const char *to, int n, size_t size)
{
    char *body = malloc (size);
    ck_assert_ptr_nonnull (body);
    memset (body, 'x', size);
    int k = snprintf (body, size, "big %d", n);
    body[k] = ' ';  // "big N xxxx…": the number stays first
    liaison_message_t *m = liaison_message_new (LIAISON_CASE_LEAD);
    ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_NODE, to), LIAISON_OK);
    ck_assert_int_eq (liaison_message_set_body (m, body, size), LIAISON_OK);
    free (body);
    return m;
}

static int
s_big_number (const liaison_message_t *m)
{
    size_t len = 0;
    const char *body = liaison_message_body (m, &len);
    return body && len > 4 && memcmp (body, "big ", 4) == 0 ? atoi (body + 4) : -1;
}

// Sends n big messages to de-bka, then pumps sender and recipient until
// every one is ACCEPTED and received exactly once (the recipient connects
// only when `connect_rx` says so). Returns how many were ACCEPTED in the
// first round, before the recipient took anything.
typedef struct {
    broker_t *b;
    liaison_t *tx;
    liaison_message_t **m;
    int n;
    idmap_t map;
    unsigned char *accepted, *received;
    int n_accepted, n_received;
} fill_t;

static void
s_fill_start (fill_t *f, broker_t *b, int n, size_t size)
{
    memset (f, 0, sizeof *f);
    f->b = b;
    f->n = n;
    f->m = calloc ((size_t) n, sizeof *f->m);
    f->accepted = calloc ((size_t) n, 1);
    f->received = calloc ((size_t) n, 1);
    s_idmap_init (&f->map, 4 * (size_t) n);
    f->tx = s_connect (b, "fr-pn", 0, NULL, 0);
    for (int i = 0; i < n; i++) {
        f->m[i] = s_big_msg ("de-bka", i, size);
        ck_assert_int_eq (liaison_send (f->tx, f->m[i], LIAISON_MORE), LIAISON_OK);
        s_idmap_put (&f->map, liaison_message_id (f->m[i]), i);
    }
    ck_assert_int_eq (liaison_flush (f->tx, harness_ms (10000)), LIAISON_OK);
    f->n_accepted = s_drain_accepted (f->tx, &f->map, f->accepted);
}

// Pumps until every message is ACCEPTED and received once by rx.
static void
s_fill_finish (fill_t *f, liaison_t *rx, int timeout_ms)
{
    int64_t deadline = s_now_ms () + timeout_ms;
    while ((f->n_accepted < f->n || f->n_received < f->n) && s_now_ms () < deadline) {
        liaison_pump (f->tx, 20);
        f->n_accepted += s_drain_accepted (f->tx, &f->map, f->accepted);
        liaison_message_t *got = NULL;
        while (liaison_recv (rx, &got, 20) == LIAISON_OK) {
            int i = s_big_number (got);
            ck_assert_msg (i >= 0 && i < f->n, "unknown message");
            ck_assert_msg (!f->received[i], "message %d received twice", i);
            f->received[i] = 1;
            f->n_received++;
            ck_assert_int_eq (liaison_ack (rx, got, 0), LIAISON_OK);
            liaison_message_destroy (&got);
        }
    }
    ck_assert_msg (f->n_accepted == f->n && f->n_received == f->n,
                   "%d of %d ACCEPTED, %d received; outbox %lld; see %s", f->n_accepted, f->n,
                   f->n_received, (long long) liaison_outbox_count (f->tx), f->b->log);
    ck_assert_int_eq (liaison_outbox_count (f->tx), 0);
}

static void
s_fill_free (fill_t *f)
{
    for (int i = 0; i < f->n; i++)
        liaison_message_destroy (&f->m[i]);
    free (f->m);
    free (f->accepted);
    free (f->received);
    s_idmap_free (&f->map);
    liaison_close (&f->tx);
}

// What a refused first round must look like: some accepted, the rest
// refused without a receipt and kept in the outbox.
static void
s_fill_refused (fill_t *f, int min_accepted, const char *logged)
{
    ck_assert_msg (f->n_accepted >= min_accepted && f->n_accepted < f->n,
                   "%d of %d accepted: the limit should take some and refuse some; see %s",
                   f->n_accepted, f->n, f->b->log);
    ck_assert_int_eq (liaison_outbox_count (f->tx), f->n - f->n_accepted);
    ck_assert (harness_log_wait (f->b, "event=message-refused", 0, 1000));
    ck_assert (harness_log_wait (f->b, logged, 0, 1000));
    // Still refused a second later (the library tries again), and still
    // without a receipt.
    int64_t until = s_now_ms () + 1500;
    while (s_now_ms () < until)
        liaison_pump (f->tx, 50);
    f->n_accepted += s_drain_accepted (f->tx, &f->map, f->accepted);
    ck_assert_int_gt (liaison_outbox_count (f->tx), 0);
}

// The store bounded by store/max_bytes: refused messages get ERR_STORE and
// no receipt, stay in the outbox and go again (also after a second
// refusal, with the application only pumping) once delivery and the purge
// make room; nothing accepted is lost.
START_TEST (test_store_full_max_bytes)
{
    enum { N = 12, SIZE = 3000 };
    char extra[512];
    int64_t empty = s_empty_store_bytes ();
    // Room for about four messages of SIZE bytes (one page each, and their
    // mailbox and index entries).
    snprintf (extra, sizeof extra,
              "    store\n"
              "        max_bytes = %lld\n"
              "        retention_s = 0\n"
              "        purge_interval_s = 1\n",
              (long long) (empty + 6 * 4096));
    broker_t b;
    harness_prepare_ex (&b, NULL, extra, 0);
    ck_assert_int_eq (harness_start (&b), 0);
    fill_t f;
    s_fill_start (&f, &b, N, SIZE);
    s_fill_refused (&f, 1, "reason=store");
    // The backlog drains (delivered, then purged), and the outbox follows
    // by itself.
    liaison_t *rx = s_connect (&b, "de-bka", 1, NULL, 0);
    s_fill_finish (&f, rx, harness_ms (20000));
    ck_assert (harness_log_wait (&b, "event=store-purged messages=", 0, 1000));
    s_fill_free (&f);
    liaison_close (&rx);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

/* A real full disk: the broker's state directory on a 2 MiB tmpfs (root
   only). The mount lives in the runner's process (an unchecked fixture),
   so it is unmounted however the test ends. */
static char s_tmpfs[128];
static bool s_tmpfs_mounted;

static void
s_tmpfs_setup (void)
{
    snprintf (s_tmpfs, sizeof s_tmpfs, "/tmp/liaison-tmpfs-%d", (int) getpid ());
    s_tmpfs_mounted = false;
    if (geteuid () != 0)
        return;
    mkdir (s_tmpfs, 0700);
    s_tmpfs_mounted = mount ("tmpfs", s_tmpfs, "tmpfs", 0, "size=2m,mode=0700") == 0;
    if (!s_tmpfs_mounted)
        fprintf (stderr, "durable: cannot mount a tmpfs on %s: %s\n", s_tmpfs, strerror (errno));
}

static void
s_tmpfs_teardown (void)
{
    // A broker the test left behind (it failed) must not hold the mount.
    char pidfile[160];
    snprintf (pidfile, sizeof pidfile, "%s.pid", s_tmpfs);
    FILE *f = fopen (pidfile, "r");
    int pid = 0;
    if (f) {
        if (fscanf (f, "%d", &pid) == 1 && pid > 0)
            kill (pid, SIGKILL);
        fclose (f);
        unlink (pidfile);
    }
    if (s_tmpfs_mounted && umount (s_tmpfs) != 0)
        umount2 (s_tmpfs, MNT_DETACH);
    s_tmpfs_mounted = false;
    rmdir (s_tmpfs);
}

// The broker's state directory on a small tmpfs that fills up: failed
// group commits refuse their messages with ERR_STORE, nobody's accepted
// message is lost, the core keeps serving (a failed commit once made it
// spin), and service resumes when space returns.
START_TEST (test_store_full_disk)
{
    if (geteuid () != 0) {
        fprintf (stderr, "durable: test_store_full_disk skipped: mounting a tmpfs needs root\n");
        return;
    }
    // The fixture ran in the runner, our parent.
    char dir[128], pidfile[160];
    snprintf (dir, sizeof dir, "/tmp/liaison-tmpfs-%d", (int) getppid ());
    snprintf (pidfile, sizeof pidfile, "%s.pid", dir);
    struct statvfs vfs;
    ck_assert_msg (statvfs (dir, &vfs) == 0 && vfs.f_blocks * vfs.f_frsize <= 4 << 20,
                   "%s is not the small tmpfs", dir);
    broker_t b;
    harness_prepare_ex (&b, NULL, NULL, 0);
    char state[400];
    snprintf (state, sizeof state, "%s/state", b.dir);
    ck_assert_int_eq (symlink (dir, state), 0);
    ck_assert_int_eq (harness_start (&b), 0);
    FILE *pf = fopen (pidfile, "w");
    ck_assert_ptr_nonnull (pf);
    fprintf (pf, "%d\n", (int) b.pid);
    fclose (pf);
    // Ballast: the disk is all but full.
    ck_assert_int_eq (statvfs (dir, &vfs), 0);
    long long room = (long long) vfs.f_bavail * (long long) vfs.f_frsize;
    long long ballast = room - 192 * 1024;
    ck_assert_int_gt (ballast, 0);
    ck_assert_int_eq (harness_sh ("head -c %lld /dev/zero > '%s/ballast' 2>/dev/null", ballast, dir),
                      0);
    fill_t f;
    s_fill_start (&f, &b, 24, 16 * 1024);
    // A group whose commit fails is refused whole: perhaps none is taken.
    s_fill_refused (&f, 0, "reason=store");
    // Room again: service resumes by itself; nothing accepted was lost.
    ck_assert_int_eq (harness_sh ("rm -f '%s/ballast'", dir), 0);
    liaison_t *rx = s_connect (&b, "de-bka", 1, NULL, 0);
    s_fill_finish (&f, rx, harness_ms (20000));
    s_fill_free (&f);
    liaison_close (&rx);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
    unlink (pidfile);
}
END_TEST

/* ---------------------------------------------------- 6. damaged store */

START_TEST (test_store_header_damaged)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *tx = s_connect (&b, "fr-pn", 0, NULL, 0);
    liaison_message_t *m = s_msg ("it-ps", "kept %d", 1);
    ck_assert_int_eq (liaison_send (tx, m, 0), LIAISON_OK);
    ck_assert_int_eq (liaison_flush (tx, harness_ms (5000)), LIAISON_OK);
    liaison_message_destroy (&m);
    liaison_close (&tx);
    ck_assert_int_eq (harness_broker_halt (&b), 0);
    char db[400];
    snprintf (db, sizeof db, "%s/state/liaison.db", b.dir);
    ck_assert_int_eq (harness_sh ("rm -f '%s-wal' '%s-shm' && printf 'garbage garbage garbage ' "
                                  "| dd of='%s' conv=notrunc status=none",
                                  db, db, db),
                      0);
    // It refuses to start, says why, and exits non-zero (not by the timeout).
    size_t from = harness_log_size (&b);
    int rc = harness_sh ("timeout 20 %s/liaisond -c '%s' 2>>'%s'", harness_build (), b.cfg, b.log);
    ck_assert_msg (rc != 0 && rc != 124, "liaisond exit %d on a damaged store", rc);
    ck_assert (harness_log_wait (&b, "event=startup-failed reason=store", from, 1000));
    ck_assert (!harness_log_wait (&b, "event=ready", from, 0));
    ck_assert_int_eq (harness_sh ("%s/liaisond store-check '%s' >/dev/null 2>&1", harness_build (),
                                  db),
                      2);
    harness_sh ("rm -rf '%s'", b.dir);
}
END_TEST

// Changes one byte of the stored envelope whose body contains `needle`
// (the SHA-256 column stays as it was).
static void
s_damage_envelope (const char *db_path, const char *needle)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq (sqlite3_open (db_path, &db), SQLITE_OK);
    sqlite3_busy_timeout (db, 5000);
    sqlite3_stmt *q = NULL;
    ck_assert_int_eq (sqlite3_prepare_v2 (db, "SELECT seq, envelope FROM messages", -1, &q, NULL),
                      SQLITE_OK);
    int64_t seq = 0;
    uint8_t *copy = NULL;
    int len = 0;
    while (sqlite3_step (q) == SQLITE_ROW && !copy) {
        const uint8_t *env = sqlite3_column_blob (q, 1);
        len = sqlite3_column_bytes (q, 1);
        const uint8_t *at = memmem (env, (size_t) len, needle, strlen (needle));
        if (at) {
            seq = sqlite3_column_int64 (q, 0);
            copy = malloc ((size_t) len);
            memcpy (copy, env, (size_t) len);
            copy[at - env] ^= 0x20;  // "damaged" -> "Damaged"
        }
    }
    sqlite3_finalize (q);
    ck_assert_ptr_nonnull (copy);
    ck_assert_int_eq (sqlite3_prepare_v2 (db, "UPDATE messages SET envelope = ?1 WHERE seq = ?2",
                                          -1, &q, NULL),
                      SQLITE_OK);
    sqlite3_bind_blob (q, 1, copy, len, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (q, 2, seq);
    ck_assert_int_eq (sqlite3_step (q), SQLITE_DONE);
    ck_assert_int_eq (sqlite3_changes (db), 1);
    sqlite3_finalize (q);
    ck_assert_int_eq (sqlite3_close (db), SQLITE_OK);
    free (copy);
}

START_TEST (test_store_envelope_damaged)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *tx = s_connect (&b, "fr-pn", 0, NULL, 0);
    const char *bodies[] = {"sound %d", "damaged %d", "sound too %d"};
    liaison_message_t *m[3];
    for (int i = 0; i < 3; i++) {
        m[i] = s_msg ("it-ps", bodies[i], i);
        ck_assert_int_eq (liaison_send (tx, m[i], LIAISON_MORE), LIAISON_OK);
    }
    ck_assert_int_eq (liaison_flush (tx, harness_ms (5000)), LIAISON_OK);
    for (int i = 0; i < 3; i++) {
        liaison_receipt_t *r = harness_expect_receipt (tx, liaison_message_id (m[i]), "it-ps",
                                                       LIAISON_ACCEPTED, harness_ms (5000));
        liaison_receipt_destroy (&r);
    }
    liaison_close (&tx);
    ck_assert_int_eq (harness_broker_halt (&b), 0);
    char db[400];
    snprintf (db, sizeof db, "%s/state/liaison.db", b.dir);
    ck_assert_int_eq (harness_sh ("%s/liaisond store-check '%s' >/dev/null 2>&1", harness_build (),
                                  db),
                      0);
    s_damage_envelope (db, "damaged 1");
    // store-check finds it: exit 1.
    char cmd[1200];
    snprintf (cmd, sizeof cmd, "%s/liaisond store-check '%s' 2>&1", harness_build (), db);
    FILE *p = popen (cmd, "r");
    ck_assert_ptr_nonnull (p);
    char out[4096];
    size_t n = fread (out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose (p);
    ck_assert_msg (WIFEXITED (st) && WEXITSTATUS (st) == 1, "store-check exit %d: %s",
                   WEXITSTATUS (st), out);
    ck_assert_msg (strstr (out, "ok") != out, "store-check says ok: %s", out);
    // The broker starts, refuses that envelope, delivers the others.
    size_t from = harness_log_size (&b);
    ck_assert_int_eq (harness_broker_restart (&b), 0);
    liaison_t *rx = s_connect (&b, "it-ps", 1, NULL, 0);
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (rx, &got, harness_ms (5000)), LIAISON_OK);
    ck_assert_mem_eq (liaison_message_id (got), liaison_message_id (m[0]), LIAISON_ID_LEN);
    liaison_ack (rx, got, 0);
    liaison_message_destroy (&got);
    ck_assert_int_eq (liaison_recv (rx, &got, harness_ms (5000)), LIAISON_OK);
    ck_assert_mem_eq (liaison_message_id (got), liaison_message_id (m[2]), LIAISON_ID_LEN);
    liaison_ack (rx, got, 0);
    liaison_message_destroy (&got);
    ck_assert (harness_log_wait (&b, "event=store-damaged node=it-ps", from, 2000));
    // Never, not even to a new receiver.
    liaison_close (&rx);
    rx = s_connect (&b, "it-ps", 1, NULL, 0);
    ck_assert_int_eq (liaison_recv (rx, &got, 500), LIAISON_ETIMEOUT);
    for (int i = 0; i < 3; i++)
        liaison_message_destroy (&m[i]);
    liaison_close (&rx);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

/* ----------------------------------------- 7. trail after reconnecting */

// Any session of a node lists and fetches its mailbox without changing
// delivery: pages in delivery order (priority first), fetch by (sender,
// id) with the exact content, nothing for another node; afterwards the
// receiver still gets every message.
START_TEST (test_mailbox_list_and_fetch)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *tx = s_connect (&b, "fr-pn", 0, NULL, 0);
    enum { N = 5 };
    const liaison_priority_t prio[N] = {LIAISON_ROUTINE, LIAISON_EMERGENCY, LIAISON_ROUTINE,
                                        LIAISON_URGENT, LIAISON_EMERGENCY};
    liaison_message_t *m[N];
    for (int i = 0; i < N; i++) {
        m[i] = s_msg ("it-ps", "waiting %d", i);
        liaison_message_set_priority (m[i], prio[i]);
        ck_assert_int_eq (liaison_send (tx, m[i], 0), LIAISON_OK);
    }
    ck_assert_int_eq (liaison_flush (tx, harness_ms (5000)), LIAISON_OK);
    // Delivery order: 1, 4 (emergency), 3 (urgent), 0, 2 (routine).
    const int order[N] = {1, 4, 3, 0, 2};
    liaison_t *officer = s_connect (&b, "it-ps", 0, NULL, 0);  // not the receiver
    liaison_mailbox_entry_t page[2];
    uint64_t after = 0;
    int seen = 0, calls = 0;
    do {
        size_t n = 0;
        ck_assert_int_eq (liaison_mailbox (officer, &after, page, 2, &n), LIAISON_OK);
        for (size_t i = 0; i < n; i++, seen++) {
            ck_assert_int_lt (seen, N);
            ck_assert_mem_eq (page[i].id, liaison_message_id (m[order[seen]]), LIAISON_ID_LEN);
            ck_assert_str_eq (page[i].sender, "fr-pn");
            ck_assert_int_eq (page[i].priority, prio[order[seen]]);
            ck_assert_int_eq (page[i].type, LIAISON_MLA_REQUEST);
            ck_assert_int_gt (page[i].size, 0);
        }
        calls++;
    } while (after && calls < 10);
    ck_assert_int_eq (seen, N);
    ck_assert_int_eq (calls, 3);  // 2 + 2 + 1
    // Fetch: the exact message; nothing for an unknown id or another node.
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_fetch (officer, "fr-pn", liaison_message_id (m[3]), &got), LIAISON_OK);
    size_t len;
    const char *body = liaison_message_body (got, &len);
    ck_assert_int_eq ((int) len, (int) strlen ("waiting 3"));
    ck_assert (memcmp (body, "waiting 3", len) == 0);
    ck_assert_str_eq (liaison_message_sender (got), "fr-pn");
    liaison_message_destroy (&got);
    uint8_t unknown[LIAISON_ID_LEN] = {7};
    ck_assert_int_eq (liaison_fetch (officer, "fr-pn", unknown, &got), LIAISON_ENOTFOUND);
    liaison_t *other = s_connect (&b, "de-bka", 0, NULL, 0);
    ck_assert_int_eq (liaison_fetch (other, "fr-pn", liaison_message_id (m[3]), &got),
                      LIAISON_ENOTFOUND);
    size_t n = 0;
    after = 0;
    ck_assert_int_eq (liaison_mailbox (other, &after, page, 2, &n), LIAISON_OK);
    ck_assert_uint_eq (n, 0);
    liaison_close (&other);
    // Listing and fetching changed nothing: the receiver gets all five.
    liaison_t *rx = s_connect (&b, "it-ps", 1, NULL, 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq (liaison_recv (rx, &got, harness_ms (5000)), LIAISON_OK);
        ck_assert_mem_eq (liaison_message_id (got), liaison_message_id (m[order[i]]),
                          LIAISON_ID_LEN);
        ck_assert_int_eq (liaison_ack (rx, got, 0), LIAISON_OK);
        liaison_message_destroy (&got);
    }
    ck_assert_int_eq (liaison_flush (rx, harness_ms (5000)), LIAISON_OK);
    // Delivered: the mailbox is empty now.
    after = 0;
    ck_assert_int_eq (liaison_mailbox (officer, &after, page, 2, &n), LIAISON_OK);
    ck_assert_uint_eq (n, 0);
    for (int i = 0; i < N; i++)
        liaison_message_destroy (&m[i]);
    liaison_close (&rx);
    liaison_close (&officer);
    liaison_close (&tx);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_trail_after_reconnect)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *rx = s_connect (&b, "de-bka", 1, NULL, 0);
    liaison_t *tx = s_connect (&b, "fr-pn", 0, NULL, 0);
    liaison_message_t *m = s_msg ("de-bka", "trail %d", 1);
    ck_assert_int_eq (liaison_send (tx, m, 0), LIAISON_OK);
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (rx, &got, harness_ms (5000)), LIAISON_OK);
    ck_assert_int_eq (liaison_ack (rx, got, 0), LIAISON_OK);
    liaison_message_destroy (&got);
    liaison_receipt_t *r = harness_expect_receipt (tx, liaison_message_id (m), "de-bka",
                                                   LIAISON_ACCEPTED, harness_ms (5000));
    liaison_receipt_destroy (&r);
    r = harness_expect_receipt (tx, liaison_message_id (m), "de-bka", LIAISON_DELIVERED,
                                harness_ms (5000));
    liaison_receipt_destroy (&r);
    liaison_close (&tx);
    // A new session, another state directory: the broker's trail.
    tx = s_connect (&b, "fr-pn", 0, NULL, 0);
    liaison_trail_t *t = NULL;
    ck_assert_int_eq (liaison_trail (tx, liaison_message_id (m), &t), LIAISON_OK);
    ck_assert_uint_eq (liaison_trail_count (t), 2);
    const liaison_receipt_t *a = liaison_trail_get (t, 0), *d = liaison_trail_get (t, 1);
    ck_assert_int_eq (liaison_receipt_status (a), LIAISON_ACCEPTED);
    ck_assert_str_eq (liaison_receipt_recipient (a), "de-bka");
    ck_assert_mem_eq (liaison_receipt_id (a), liaison_message_id (m), LIAISON_ID_LEN);
    ck_assert_int_eq (liaison_receipt_status (d), LIAISON_DELIVERED);
    ck_assert_str_eq (liaison_receipt_recipient (d), "de-bka");
    ck_assert_int_ge (liaison_receipt_time (d), liaison_receipt_time (a));
    char cert[600];
    ck_assert_int_eq (liaison_receipt_verify (d, harness_node_cert (&b, "de-bka", cert, sizeof cert)),
                      LIAISON_OK);
    ck_assert_ptr_null (liaison_trail_get (t, 2));
    liaison_trail_destroy (&t);
    // An unknown id, and another node's message: not found.
    uint8_t unknown[LIAISON_ID_LEN] = {0xde, 0xad};
    ck_assert_int_eq (liaison_trail (tx, unknown, &t), LIAISON_ENOTFOUND);
    ck_assert_ptr_null (t);
    ck_assert_int_eq (liaison_trail (rx, liaison_message_id (m), &t), LIAISON_ENOTFOUND);
    liaison_message_destroy (&m);
    liaison_close (&tx);
    liaison_close (&rx);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

/* -------------------------------------------------------------- 8. expiry */

START_TEST (test_expired_never_delivered)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *tx = s_connect (&b, "fr-pn", 0, NULL, 0);
    liaison_message_t *m = s_msg ("it-ps", "short-lived %d", 1);
    int64_t t0 = s_now_ms ();
    ck_assert_int_eq (liaison_message_set_expires (m, t0 + 1500), LIAISON_OK);
    ck_assert_int_eq (liaison_send (tx, m, 0), LIAISON_OK);
    liaison_receipt_t *r = harness_expect_receipt (tx, liaison_message_id (m), "it-ps",
                                                   LIAISON_ACCEPTED, harness_ms (5000));
    liaison_receipt_destroy (&r);
    r = harness_expect_receipt (tx, liaison_message_id (m), "it-ps", LIAISON_EXPIRED,
                                harness_ms (5000));
    int64_t t1 = s_now_ms ();
    ck_assert_str_eq (liaison_receipt_reason (r), "ttl-expired");
    ck_assert_int_ge (t1, t0 + 1500);
    ck_assert_int_ge (liaison_receipt_time (r), t0 + 1500);
    liaison_receipt_destroy (&r);
    ck_assert (harness_log_wait (&b, "event=message-expired", 0, 1000));
    // A later message with no expiry goes through; the expired one never.
    liaison_message_t *later = s_msg ("it-ps", "later %d", 2);
    ck_assert_int_eq (liaison_send (tx, later, 0), LIAISON_OK);
    ck_assert_int_eq (liaison_flush (tx, harness_ms (5000)), LIAISON_OK);
    liaison_t *rx = s_connect (&b, "it-ps", 1, NULL, 0);
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (rx, &got, harness_ms (5000)), LIAISON_OK);
    ck_assert_mem_eq (liaison_message_id (got), liaison_message_id (later), LIAISON_ID_LEN);
    liaison_message_destroy (&got);
    ck_assert_int_eq (liaison_recv (rx, &got, 300), LIAISON_ETIMEOUT);
    // The trail says EXPIRED.
    liaison_trail_t *t = NULL;
    ck_assert_int_eq (liaison_trail (tx, liaison_message_id (m), &t), LIAISON_OK);
    bool expired = false;
    for (size_t i = 0; i < liaison_trail_count (t); i++)
        expired |= liaison_receipt_status (liaison_trail_get (t, i)) == LIAISON_EXPIRED;
    ck_assert (expired);
    liaison_trail_destroy (&t);
    liaison_message_destroy (&later);
    liaison_message_destroy (&m);
    liaison_close (&rx);
    liaison_close (&tx);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

/* ----------------------------------------------------------- 9. deadlines */

// The next notice within timeout_ms, asserting its kind and request.
static void
s_expect_notice (liaison_t *l, liaison_notice_kind_t kind, const uint8_t *id, int timeout_ms)
{
    liaison_notice_t n;
    int rc = liaison_next_notice (l, &n, timeout_ms);
    ck_assert_msg (rc == LIAISON_OK, "no notice (kind %d) within %d ms: %s", (int) kind,
                   timeout_ms, liaison_strerror (rc));
    ck_assert_int_eq (n.kind, kind);
    ck_assert_mem_eq (n.id, id, LIAISON_ID_LEN);
    ck_assert_str_eq (n.sender, "fr-pn");
    ck_assert_str_eq (n.recipient, "de-bka");
}

START_TEST (test_deadline_reminder_and_missed)
{
    broker_t b;
    harness_prepare_ex (&b, NULL, "    deadlines\n        remind_percent = 50\n", 0);
    ck_assert_int_eq (harness_start (&b), 0);
    liaison_t *de = s_connect (&b, "de-bka", 1, NULL, 0);
    liaison_t *fr = s_connect (&b, "fr-pn", 0, NULL, 0);
    int64_t t0 = s_now_ms ();
    // r1 runs out unanswered; r2 (due a little earlier) is answered at once.
    liaison_message_t *r1 = s_msg ("de-bka", "request %d", 1);
    liaison_message_t *r2 = s_msg ("de-bka", "request %d", 2);
    ck_assert_int_eq (liaison_message_set_deadline (r1, t0 + 4000), LIAISON_OK);
    ck_assert_int_eq (liaison_message_set_deadline (r2, t0 + 3500), LIAISON_OK);
    ck_assert_int_eq (liaison_send (fr, r1, LIAISON_MORE), LIAISON_OK);
    ck_assert_int_eq (liaison_send (fr, r2, 0), LIAISON_OK);
    for (int i = 0; i < 2; i++) {
        liaison_message_t *got = NULL;
        ck_assert_int_eq (liaison_recv (de, &got, harness_ms (5000)), LIAISON_OK);
        if (memcmp (liaison_message_id (got), liaison_message_id (r2), LIAISON_ID_LEN) == 0) {
            liaison_message_t *reply = liaison_message_new (LIAISON_MLA_REPLY);
            liaison_message_add_recipient (reply, LIAISON_TO_NODE, "fr-pn");
            liaison_message_set_in_reply_to (reply, liaison_message_id (r2));
            liaison_message_set_body (reply, "done", 4);
            ck_assert_int_eq (liaison_send (de, reply, 0), LIAISON_OK);
            ck_assert_int_eq (liaison_flush (de, harness_ms (5000)), LIAISON_OK);
            liaison_message_destroy (&reply);
        }
        ck_assert_int_eq (liaison_ack (de, got, 0), LIAISON_OK);
        liaison_message_destroy (&got);
    }
    // With half the window left (about 2 s in) the recipient is reminded
    // of r1, and only of r1.
    s_expect_notice (de, LIAISON_NOTICE_DEADLINE_REMINDER, liaison_message_id (r1),
                     harness_ms (5000));
    int64_t t_remind = s_now_ms ();
    ck_assert_msg (t_remind - t0 >= 1500 && t_remind < t0 + 4000,
                   "reminded %lld ms after sending; the deadline is at 4000",
                   (long long) (t_remind - t0));
    size_t n = 0;
    liaison_deadline_t dl[8];
    ck_assert_int_eq (liaison_deadlines (de, dl, 8, &n), LIAISON_OK);
    ck_assert_uint_eq (n, 1);
    ck_assert_mem_eq (dl[0].id, liaison_message_id (r1), LIAISON_ID_LEN);
    ck_assert_int_eq (dl[0].state, 2);  // due soon
    // Unanswered: both sides hear it was missed, once the deadline passed.
    s_expect_notice (de, LIAISON_NOTICE_DEADLINE_MISSED, liaison_message_id (r1),
                     harness_ms (5000));
    ck_assert_int_ge (s_now_ms (), t0 + 4000);
    s_expect_notice (fr, LIAISON_NOTICE_DEADLINE_MISSED, liaison_message_id (r1),
                     harness_ms (3000));
    // r2's clock (due earlier) was stopped by the reply: no notice for it,
    // and it is in no list.
    ck_assert_int_eq (liaison_flush (de, harness_ms (5000)), LIAISON_OK);
    ck_assert_int_eq (liaison_flush (fr, harness_ms (5000)), LIAISON_OK);
    liaison_notice_t extra;
    ck_assert_int_eq (liaison_next_notice (de, &extra, 0), LIAISON_ETIMEOUT);
    ck_assert_int_eq (liaison_next_notice (fr, &extra, 0), LIAISON_ETIMEOUT);
    liaison_t *sides[] = {de, fr};
    for (int s = 0; s < 2; s++) {
        ck_assert_int_eq (liaison_deadlines (sides[s], dl, 8, &n), LIAISON_OK);
        ck_assert_uint_eq (n, 1);
        ck_assert_mem_eq (dl[0].id, liaison_message_id (r1), LIAISON_ID_LEN);
        ck_assert_int_eq (dl[0].state, 3);  // missed
        ck_assert_str_eq (dl[0].sender, "fr-pn");
        ck_assert_str_eq (dl[0].recipient, "de-bka");
        ck_assert_int_eq (dl[0].deadline_ms, t0 + 4000);
    }
    ck_assert (harness_log_wait (&b, "event=deadline-missed", 0, 1000));
    liaison_message_destroy (&r1);
    liaison_message_destroy (&r2);
    liaison_close (&fr);
    liaison_close (&de);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

/* ----------------------------------------------------------------- 10. READ */

START_TEST (test_read_receipt_signed)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *rx = s_connect (&b, "de-bka", 1, NULL, 0);
    liaison_t *tx = s_connect (&b, "fr-pn", 0, NULL, 0);
    liaison_message_t *m = s_msg ("de-bka", "read me %d", 1);
    ck_assert_int_eq (liaison_send (tx, m, 0), LIAISON_OK);
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (rx, &got, harness_ms (5000)), LIAISON_OK);
    ck_assert_int_eq (liaison_read (rx, got), LIAISON_OK);
    // Read twice: one READ receipt (the broker records it once).
    ck_assert_int_eq (liaison_read (rx, got), LIAISON_OK);
    ck_assert_int_eq (liaison_flush (rx, harness_ms (5000)), LIAISON_OK);
    ck_assert_int_eq (liaison_ack (rx, got, 0), LIAISON_OK);
    liaison_message_destroy (&got);
    liaison_receipt_t *r = harness_expect_receipt (tx, liaison_message_id (m), "de-bka",
                                                   LIAISON_ACCEPTED, harness_ms (5000));
    liaison_receipt_destroy (&r);
    r = harness_expect_receipt (tx, liaison_message_id (m), "de-bka", LIAISON_DELIVERED,
                                harness_ms (5000));
    liaison_receipt_destroy (&r);
    r = harness_expect_receipt (tx, liaison_message_id (m), "de-bka", LIAISON_READ,
                                harness_ms (5000));
    char cert[600];
    ck_assert_int_eq (liaison_receipt_verify (r, harness_node_cert (&b, "de-bka", cert, sizeof cert)),
                      LIAISON_OK);
    ck_assert_int_eq (liaison_receipt_verify (r, harness_node_cert (&b, "fr-pn", cert, sizeof cert)),
                      LIAISON_EDENIED);
    liaison_receipt_destroy (&r);
    // And it is in the stored trail, still signed.
    liaison_trail_t *t = NULL;
    ck_assert_int_eq (liaison_trail (tx, liaison_message_id (m), &t), LIAISON_OK);
    ck_assert_uint_eq (liaison_trail_count (t), 3);
    ck_assert_int_eq (liaison_receipt_status (liaison_trail_get (t, 2)), LIAISON_READ);
    ck_assert_int_eq (liaison_receipt_verify (liaison_trail_get (t, 2),
                                              harness_node_cert (&b, "de-bka", cert, sizeof cert)),
                      LIAISON_OK);
    liaison_trail_destroy (&t);
    liaison_message_destroy (&m);
    liaison_close (&tx);
    liaison_close (&rx);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

/* ------------------------------------ 11. acks for someone else's mail */

// Sends, as the raw client's node, an Ack for (sender, id), signed with
// key_path's key (or with garbage when key_path is NULL).
static void
s_raw_ack (raw_t *r, const char *me, const char *key_path, const char *sender, const uint8_t *id)
{
    int64_t now = s_now_ms ();
    uint8_t leaf[1][32], root[32], sig[256];
    size_t siglen = sizeof sig;
    ackproof_leaf (me, LIAISON__RECEIPT_STATUS__DELIVERED, now, sender, id, leaf[0]);
    ck_assert_int_eq (ackproof_root ((const uint8_t (*)[32]) leaf, 1, root), 0);
    if (key_path) {
        FILE *f = fopen (key_path, "r");
        ck_assert_ptr_nonnull (f);
        EVP_PKEY *key = PEM_read_PrivateKey (f, NULL, NULL, NULL);
        fclose (f);
        ck_assert_ptr_nonnull (key);
        ck_assert_int_eq (ackproof_sign (key, root, 1, sig, &siglen), 0);
        EVP_PKEY_free (key);
    }
    else {
        memset (sig, 0x5a, 72);
        siglen = 72;
    }
    Liaison__AckItem item = LIAISON__ACK_ITEM__INIT;
    item.id.data = (uint8_t *) id;
    item.id.len = LIAISON_ID_LEN;
    item.sender = (char *) sender;
    Liaison__AckItem *items[] = {&item};
    Liaison__Ack ack = LIAISON__ACK__INIT;
    ack.n_items = 1;
    ack.items = items;
    ack.status = LIAISON__RECEIPT_STATUS__DELIVERED;
    ack.time_ms = now;
    ack.signature.data = sig;
    ack.signature.len = siglen;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_ACK;
    f.ack = &ack;
    ck_assert_int_eq (raw_send_frame (r, &f), 0);
}

START_TEST (test_ack_not_addressed_ignored)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *tx = s_connect (&b, "fr-pn", 0, NULL, 0);
    liaison_message_t *m = s_msg ("de-bka", "for de-bka only %d", 1);
    ck_assert_int_eq (liaison_send (tx, m, 0), LIAISON_OK);
    liaison_receipt_t *r = harness_expect_receipt (tx, liaison_message_id (m), "de-bka",
                                                   LIAISON_ACCEPTED, harness_ms (5000));
    liaison_receipt_destroy (&r);
    // es-cnp acknowledges it, correctly signed with its own key: ignored.
    raw_t raw;
    ck_assert_int_eq (raw_connect (&raw, &b, "nodes/es-cnp"), 0);
    ck_assert_int_eq (raw_hello (&raw), 0);
    char key[600];
    snprintf (key, sizeof key, "%s/nodes/es-cnp/node.key", b.pki);
    size_t from = harness_log_size (&b);
    s_raw_ack (&raw, "es-cnp", key, "fr-pn", liaison_message_id (m));
    ck_assert (harness_log_wait (&b, "event=ack-ignored node=es-cnp", from, harness_ms (5000)));
    // Claiming to be de-bka in the leaf does not verify with es-cnp's key:
    // the session is cut off.
    s_raw_ack (&raw, "de-bka", key, "fr-pn", liaison_message_id (m));
    bool closed = false;
    ck_assert_int_eq (raw_expect_error (&raw, harness_ms (5000), &closed),
                      LIAISON__ERROR_CODE__ERR_MALFORMED);
    ck_assert (closed);
    raw_close (&raw);
    ck_assert (harness_log_wait (&b, "reason=ack-signature", from, 2000));
    // A garbage signature likewise.
    ck_assert_int_eq (raw_connect (&raw, &b, "nodes/es-cnp"), 0);
    ck_assert_int_eq (raw_hello (&raw), 0);
    s_raw_ack (&raw, "es-cnp", NULL, "fr-pn", liaison_message_id (m));
    ck_assert_int_eq (raw_expect_error (&raw, harness_ms (5000), &closed),
                      LIAISON__ERROR_CODE__ERR_MALFORMED);
    raw_close (&raw);
    // No DELIVERED reached the sender, and the message still waits for
    // de-bka, which gets it; then (only then) DELIVERED arrives.
    ck_assert_int_eq (liaison_flush (tx, harness_ms (5000)), LIAISON_OK);
    ck_assert_int_eq (liaison_next_receipt (tx, &r, 0), LIAISON_ETIMEOUT);
    liaison_trail_t *t = NULL;
    ck_assert_int_eq (liaison_trail (tx, liaison_message_id (m), &t), LIAISON_OK);
    ck_assert_uint_eq (liaison_trail_count (t), 1);
    liaison_trail_destroy (&t);
    liaison_t *rx = s_connect (&b, "de-bka", 1, NULL, 0);
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (rx, &got, harness_ms (5000)), LIAISON_OK);
    ck_assert_mem_eq (liaison_message_id (got), liaison_message_id (m), LIAISON_ID_LEN);
    liaison_message_destroy (&got);
    r = harness_expect_receipt (tx, liaison_message_id (m), "de-bka", LIAISON_DELIVERED,
                                harness_ms (5000));
    liaison_receipt_destroy (&r);
    liaison_message_destroy (&m);
    liaison_close (&rx);
    liaison_close (&tx);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

Suite *
durable_suite (void)
{
    Suite *s = suite_create ("durable");
    TCase *tc = tcase_create ("crash");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_broker_killed_during_transfer);
    tcase_add_test (tc, test_offline_recipient_across_restart);
    tcase_add_test (tc, test_client_killed_before_accepted);
    tcase_add_test (tc, test_client_killed_before_ack);
    tcase_add_test (tc, test_duplicate_resend);
    suite_add_tcase (s, tc);
    tc = tcase_create ("store");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_store_full_max_bytes);
    tcase_add_test (tc, test_store_header_damaged);
    tcase_add_test (tc, test_store_envelope_damaged);
    suite_add_tcase (s, tc);
    tc = tcase_create ("disk");
    tcase_set_timeout (tc, 60);
    tcase_add_unchecked_fixture (tc, s_tmpfs_setup, s_tmpfs_teardown);
    tcase_add_test (tc, test_store_full_disk);
    suite_add_tcase (s, tc);
    tc = tcase_create ("receipts");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_trail_after_reconnect);
    tcase_add_test (tc, test_mailbox_list_and_fetch);
    tcase_add_test (tc, test_expired_never_delivered);
    tcase_add_test (tc, test_deadline_reminder_and_missed);
    tcase_add_test (tc, test_read_receipt_signed);
    tcase_add_test (tc, test_ack_not_addressed_ignored);
    suite_add_tcase (s, tc);
    return s;
}
