/*  The ZMQ_STREAM connection table (client/wire/conn.c), driven for real:
    a server table on a STREAM socket bound to 127.0.0.1 and client tables
    on STREAM sockets connected to it, all pumped by this one thread (poll,
    recv, flush) until a condition holds or a deadline passes. Certificates
    come from the test PKI in $LIAISON_PKI (made by
    tests/integration/make-test-pki.sh).                                    */
#include "suites.h"

#include "conn.h"
#include "frame.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_CLIENTS 4
#define MAX_EVENTS 8
#define WAIT_MS 5000  /* deadline of one wait; tests normally take a few ms */
#define DRAIN_MS 1000 /* conn.c: how long a closing connection waits */
#define SERVER (1u << 0)
#define CLIENT(i) (1u << (1 + (i)))
#define ALL (~0u)

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
                   "no test PKI at %s: run `make build/test-pki/.done` and set LIAISON_PKI", dir);
    return dir;
}

// A path inside the PKI, in one of a ring of static buffers.
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

static wire_tls_ctx_t *
s_server_ctx (void)
{
    char err[512] = "";
    wire_tls_config_t cfg = {
        .cert = s_file ("broker/hub.pem"),
        .key = s_file ("broker/hub.key"),
        .ca = s_file ("root/ca.pem"),
        .crl_dir = s_file ("crl"),
    };
    wire_tls_ctx_t *ctx = wire_tls_ctx_new_server (&cfg, err, sizeof err);
    ck_assert_msg (ctx != NULL, "server context: %s", err);
    return ctx;
}

// A client context for a node directory ("nodes/fr-pn"), trusting `hub_ca`
// (a PKI-relative path) to issue the broker.
static wire_tls_ctx_t *
s_client_ctx (const char *dir, const char *hub_ca)
{
    char err[512] = "";
    wire_tls_config_t cfg = {
        .cert = s_file ("%s/node.pem", dir),
        .key = s_file ("%s/node.key", dir),
        .ca = s_file ("root/ca.pem"),
        .hub_ca = s_file ("%s", hub_ca),
        .server_name = "127.0.0.1",
    };
    wire_tls_ctx_t *ctx = wire_tls_ctx_new_client (&cfg, err, sizeof err);
    ck_assert_msg (ctx != NULL, "client context for %s: %s", dir, err);
    return ctx;
}

// What a table's handler saw.
typedef struct {
    uint64_t handle;
    bool opened;
    char reason[160];
    int64_t at_ms;
} close_ev_t;

typedef struct {
    int opens;
    uint64_t open_handles[MAX_EVENTS];
    char open_ids[MAX_EVENTS][WIRE_NODE_ID_MAX];
    int closes;
    close_ev_t close_ev[MAX_EVENTS];
    int bad;
    int bad_status;
    size_t nframes, frames_cap;
    uint8_t **frames; /* a copy of every frame, in order */
    size_t *sizes;
    uint32_t max_frame_on_open; /* wire_conn_set_max_frame in on_open; 0 no */
    const char *reply_on_bad;   /* queued from on_bad_stream; NULL none */
} rec_t;

static void
s_on_open (void *arg, wire_conn_t *conn)
{
    rec_t *r = arg;
    ck_assert_int_lt (r->opens, MAX_EVENTS);
    ck_assert (wire_conn_is_open (conn));
    r->open_handles[r->opens] = wire_conn_handle (conn);
    snprintf (r->open_ids[r->opens], sizeof r->open_ids[0], "%s", wire_conn_peer (conn)->node_id);
    r->opens++;
    if (r->max_frame_on_open)
        wire_conn_set_max_frame (conn, r->max_frame_on_open);
}

static int
s_on_frame (void *arg, wire_conn_t *conn, const uint8_t *data, size_t size)
{
    rec_t *r = arg;
    ck_assert (wire_conn_is_open (conn));
    ck_assert_uint_gt (size, 0);
    if (r->nframes == r->frames_cap) {
        size_t cap = r->frames_cap ? r->frames_cap * 2 : 64;
        r->frames = realloc (r->frames, cap * sizeof *r->frames);
        r->sizes = realloc (r->sizes, cap * sizeof *r->sizes);
        ck_assert (r->frames && r->sizes);
        r->frames_cap = cap;
    }
    uint8_t *copy = malloc (size);
    ck_assert_ptr_nonnull (copy);
    memcpy (copy, data, size);
    r->frames[r->nframes] = copy;
    r->sizes[r->nframes] = size;
    r->nframes++;
    return 0;
}

static void
s_on_bad_stream (void *arg, wire_conn_t *conn, int status)
{
    rec_t *r = arg;
    r->bad++;
    r->bad_status = status;
    if (r->reply_on_bad)
        ck_assert_int_eq (wire_conn_frame_write (conn, r->reply_on_bad, strlen (r->reply_on_bad)),
                          0);
}

static void
s_on_close (void *arg, wire_conn_t *conn, bool opened, const char *reason)
{
    rec_t *r = arg;
    ck_assert_int_lt (r->closes, MAX_EVENTS);
    ck_assert_ptr_nonnull (reason);
    close_ev_t *ev = &r->close_ev[r->closes++];
    ev->handle = wire_conn_handle (conn);
    ev->opened = opened;
    snprintf (ev->reason, sizeof ev->reason, "%s", reason);
    ev->at_ms = wire_clock_ms ();
}

static void
s_rec_clear (rec_t *r)
{
    for (size_t i = 0; i < r->nframes; i++)
        free (r->frames[i]);
    free (r->frames);
    free (r->sizes);
    memset (r, 0, sizeof *r);
}

static const wire_conns_handler_t s_handler = {s_on_open, s_on_frame, s_on_bad_stream, s_on_close};

// One socket and its table. A client socket also has a monitor: with
// ZMQ_RECONNECT_IVL=-1, libzmq 4.3.4 gives a connecting STREAM socket no
// [id][""] when the server drops the TCP connection, so the monitor's
// DISCONNECTED event is how a test learns that the server hung up.
typedef struct {
    void *sock;
    wire_conns_t *conns;
    rec_t rec;
    void *mon;       /* PAIR socket receiving the monitor's events */
    int disconnects; /* ZMQ_EVENT_DISCONNECTED seen */
} end_t;

typedef struct {
    void *zctx;
    char endpoint[256];
    end_t server;
    end_t clients[MAX_CLIENTS];
    int nclients;
} world_t;

static wire_conns_limits_t
s_limits (void)
{
    wire_conns_limits_t limits = {
        .max_frame = 4 * 1024 * 1024,
        .max_pending = 16 * 1024 * 1024,
        .max_conns = 64,
        .max_handshakes = 0,
        .first_max_frame = 0,
    };
    return limits;
}

static void
s_setopt_int (void *sock, int option, int value)
{
    ck_assert_int_eq (zmq_setsockopt (sock, option, &value, sizeof value), 0);
}

// A server table with `limits` on a STREAM socket bound to 127.0.0.1.
static void
s_world_init (world_t *w, const wire_conns_limits_t *limits)
{
    memset (w, 0, sizeof *w);
    w->zctx = zmq_ctx_new ();
    ck_assert_ptr_nonnull (w->zctx);
    w->server.sock = zmq_socket (w->zctx, ZMQ_STREAM);
    ck_assert_ptr_nonnull (w->server.sock);
    s_setopt_int (w->server.sock, ZMQ_LINGER, 0);
    ck_assert_int_eq (zmq_bind (w->server.sock, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof w->endpoint;
    ck_assert_int_eq (zmq_getsockopt (w->server.sock, ZMQ_LAST_ENDPOINT, w->endpoint, &len), 0);
    ck_assert_str_ne (w->endpoint, "");
    wire_tls_ctx_t *ctx = s_server_ctx ();
    w->server.conns = wire_conns_new (w->server.sock, ctx, limits, &s_handler, &w->server.rec);
    wire_tls_ctx_destroy (&ctx); // the table holds its own reference
    ck_assert_ptr_nonnull (w->server.conns);
}

// A client table (node fr-pn, trusting `hub_ca`) on a new STREAM socket
// connected to the server. Returns its index.
static int
s_client_add_ca (world_t *w, const char *hub_ca)
{
    ck_assert_int_lt (w->nclients, MAX_CLIENTS);
    int i = w->nclients++;
    end_t *e = &w->clients[i];
    e->sock = zmq_socket (w->zctx, ZMQ_STREAM);
    ck_assert_ptr_nonnull (e->sock);
    s_setopt_int (e->sock, ZMQ_LINGER, 0);
    s_setopt_int (e->sock, ZMQ_RECONNECT_IVL, -1);
    char rid[32];
    int rid_len = snprintf (rid, sizeof rid, "test-peer-%d", i);
    ck_assert_int_eq (zmq_setsockopt (e->sock, ZMQ_CONNECT_ROUTING_ID, rid, (size_t) rid_len), 0);
    wire_tls_ctx_t *ctx = s_client_ctx ("nodes/fr-pn", hub_ca);
    wire_conns_limits_t limits = s_limits ();
    e->conns = wire_conns_new (e->sock, ctx, &limits, &s_handler, &e->rec);
    wire_tls_ctx_destroy (&ctx);
    ck_assert_ptr_nonnull (e->conns);
    char mon[64];
    snprintf (mon, sizeof mon, "inproc://conn-test-monitor-%d", i);
    ck_assert_int_eq (zmq_socket_monitor (e->sock, mon, ZMQ_EVENT_DISCONNECTED), 0);
    e->mon = zmq_socket (w->zctx, ZMQ_PAIR);
    ck_assert_ptr_nonnull (e->mon);
    s_setopt_int (e->mon, ZMQ_LINGER, 0);
    ck_assert_int_eq (zmq_connect (e->mon, mon), 0);
    ck_assert_int_eq (zmq_connect (e->sock, w->endpoint), 0);
    return i;
}

static int
s_client_add (world_t *w)
{
    return s_client_add_ca (w, "hub/ca.pem");
}

// Destroys an end's table (its on_close calls are recorded) and socket.
static void
s_end_close (end_t *e)
{
    wire_conns_destroy (&e->conns);
    if (e->mon) {
        zmq_socket_monitor (e->sock, NULL, 0);
        zmq_close (e->mon);
        e->mon = NULL;
    }
    if (e->sock)
        zmq_close (e->sock);
    e->sock = NULL;
}

// Counts the monitor events that have arrived for e.
static void
s_read_monitor (end_t *e)
{
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    while (e->mon && zmq_msg_recv (&msg, e->mon, ZMQ_DONTWAIT) >= 0) {
        // [2 bytes event, 4 bytes value][endpoint]
        if (zmq_msg_more (&msg) && zmq_msg_size (&msg) == 6) {
            uint16_t event;
            memcpy (&event, zmq_msg_data (&msg), sizeof event);
            if (event == ZMQ_EVENT_DISCONNECTED)
                e->disconnects++;
        }
    }
    zmq_msg_close (&msg);
}

static void
s_world_free (world_t *w)
{
    s_end_close (&w->server);
    s_rec_clear (&w->server.rec);
    for (int i = 0; i < w->nclients; i++) {
        s_end_close (&w->clients[i]);
        s_rec_clear (&w->clients[i].rec);
    }
    ck_assert_int_eq (zmq_ctx_term (w->zctx), 0);
    w->zctx = NULL;
}

// One loop pass over the ends selected by `mask`: wait for input (at most
// timeout_ms), take it, flush everything.
static void
s_pump (world_t *w, unsigned mask, int timeout_ms)
{
    zmq_pollitem_t items[1 + MAX_CLIENTS];
    end_t *ends[1 + MAX_CLIENTS];
    int n = 0;
    for (int i = -1; i < w->nclients; i++) {
        end_t *e = i < 0 ? &w->server : &w->clients[i];
        if (!(mask & (i < 0 ? SERVER : CLIENT (i))) || !e->sock || !e->conns)
            continue;
        items[n] = (zmq_pollitem_t){e->sock, 0, ZMQ_POLLIN, 0};
        ends[n++] = e;
    }
    if (n == 0)
        return;
    zmq_poll (items, n, timeout_ms);
    for (int i = 0; i < n; i++)
        s_read_monitor (ends[i]);
    for (int i = 0; i < n; i++)
        wire_conns_recv (ends[i]->conns, 512);
    for (int i = 0; i < n; i++)
        wire_conns_flush (ends[i]->conns);
}

// Pumps the ends in `mask` until cond holds or WAIT_MS pass; evaluates to
// cond.
#define S_UNTIL(w, mask, cond)                                                                     \
    ({                                                                                             \
        int64_t until_ = wire_clock_ms () + WAIT_MS;                                               \
        while (!(cond) && wire_clock_ms () < until_)                                               \
            s_pump ((w), (mask), 2);                                                               \
        (bool) (cond);                                                                             \
    })

// Connects a new client and waits until both ends are open. Returns the
// client's index; *srv gets the server's handle for it.
static int
s_connect (world_t *w, uint64_t *srv)
{
    int opens = w->server.rec.opens;
    int i = s_client_add (w);
    ck_assert_msg (
        S_UNTIL (w, ALL, w->clients[i].rec.opens == 1 && w->server.rec.opens == opens + 1),
        "handshake of client %d did not complete (server opens %d, client closes %d: %s)", i,
        w->server.rec.opens, w->clients[i].rec.closes,
        w->clients[i].rec.closes ? w->clients[i].rec.close_ev[0].reason : "-");
    if (srv)
        *srv = w->server.rec.open_handles[opens];
    return i;
}

static wire_conn_t *
s_server_conn (world_t *w, uint64_t handle)
{
    wire_conn_t *conn = wire_conns_lookup (w->server.conns, handle);
    ck_assert_ptr_nonnull (conn);
    return conn;
}

static wire_conn_t *
s_client_conn (world_t *w, int i)
{
    ck_assert_int_ge (w->clients[i].rec.opens, 1);
    wire_conn_t *conn = wire_conns_lookup (w->clients[i].conns, w->clients[i].rec.open_handles[0]);
    ck_assert_ptr_nonnull (conn);
    return conn;
}

// A deterministic byte pattern; `seed` tells frames apart.
static void
s_fill (uint8_t *p, size_t size, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t) x;
    }
}

static void
s_foreach_count (void *arg, wire_conn_t *conn)
{
    ck_assert (wire_conn_is_open (conn));
    (*(int *) arg)++;
}

// --------------------------------------------------------------- tests

START_TEST (test_conn_handshake)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    s_world_init (&w, &limits);
    int64_t before = wire_clock_ms ();
    uint64_t h;
    int c = s_connect (&w, &h);

    ck_assert_int_eq (w.server.rec.opens, 1);
    ck_assert_int_eq (w.clients[c].rec.opens, 1);
    ck_assert_uint_ne (h, 0);
    ck_assert_str_eq (w.server.rec.open_ids[0], "fr-pn");
    ck_assert_str_eq (w.clients[c].rec.open_ids[0], "hub"); // broker certificate CN
    ck_assert_uint_eq (wire_conns_count (w.server.conns), 1);
    ck_assert_uint_eq (wire_conns_count (w.clients[c].conns), 1);

    wire_conn_t *sc = s_server_conn (&w, h);
    ck_assert_uint_eq (wire_conn_handle (sc), h);
    ck_assert (wire_conn_is_open (sc));
    const wire_identity_t *id = wire_conn_peer (sc);
    ck_assert_str_eq (id->node_id, "fr-pn");
    ck_assert_str_eq (id->jurisdiction, "FR");
    ck_assert_int_gt (id->not_after_ms, wire_time_ms ());
    ck_assert_str_eq (wire_conn_address (sc), "127.0.0.1");
    ck_assert_ptr_nonnull (wire_conn_tls (sc));
    ck_assert (wire_tls_established (wire_conn_tls (sc)));
    ck_assert_int_ge (wire_conn_created_ms (sc), before);
    ck_assert_int_ge (wire_conn_last_recv_ms (sc), wire_conn_created_ms (sc));
    ck_assert_int_le (wire_conn_last_recv_ms (sc), wire_clock_ms ());

    wire_conn_t *cc = s_client_conn (&w, c);
    ck_assert (wire_conn_is_open (cc));
    ck_assert_str_eq (wire_conn_peer (cc)->node_id, "hub");
    ck_assert_str_eq (wire_conn_address (cc), "127.0.0.1");

    int x = 0;
    ck_assert_ptr_null (wire_conn_user (sc));
    wire_conn_set_user (sc, &x);
    ck_assert_ptr_eq (wire_conn_user (s_server_conn (&w, h)), &x);

    int n = 0;
    wire_conns_foreach (w.server.conns, s_foreach_count, &n);
    ck_assert_int_eq (n, 1);
    ck_assert_int_eq (w.server.rec.closes, 0);
    ck_assert_int_eq (w.clients[c].rec.closes, 0);
    s_world_free (&w);
}
END_TEST

START_TEST (test_conn_frame_single)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    s_world_init (&w, &limits);
    uint64_t h;
    int c = s_connect (&w, &h);

    ck_assert_int_eq (wire_conn_frame_write (s_client_conn (&w, c), "hello, hub", 10), 0);
    ck_assert (S_UNTIL (&w, ALL, w.server.rec.nframes == 1));
    ck_assert_uint_eq (w.server.rec.sizes[0], 10);
    ck_assert_mem_eq (w.server.rec.frames[0], "hello, hub", 10);

    uint8_t *body = wire_conn_frame_begin (s_server_conn (&w, h), 5);
    ck_assert_ptr_nonnull (body);
    memcpy (body, "hi fr", 5);
    ck_assert (S_UNTIL (&w, ALL, w.clients[c].rec.nframes == 1));
    ck_assert_uint_eq (w.clients[c].rec.sizes[0], 5);
    ck_assert_mem_eq (w.clients[c].rec.frames[0], "hi fr", 5);

    // Nothing extra, and a zero-length frame cannot be queued.
    ck_assert_ptr_null (wire_conn_frame_begin (s_server_conn (&w, h), 0));
    ck_assert_int_eq (wire_conn_frame_write (s_client_conn (&w, c), "", 0), -1);
    ck_assert (wire_conn_is_open (s_client_conn (&w, c)));
    ck_assert_uint_eq (w.server.rec.nframes, 1);
    ck_assert_int_eq (w.server.rec.bad, 0);
    s_world_free (&w);
}
END_TEST

// Frame i: 4 bytes of i, then (i % 37) pattern bytes.
static size_t
s_small_size (uint32_t i)
{
    return 4 + i % 37;
}

static void
s_queue_small (wire_conn_t *conn, uint32_t n)
{
    uint8_t buf[64];
    for (uint32_t i = 0; i < n; i++) {
        size_t size = s_small_size (i);
        wire_frame_put_header (buf, i);
        s_fill (buf + 4, size - 4, i);
        if (i % 2) {
            uint8_t *p = wire_conn_frame_begin (conn, size);
            ck_assert_ptr_nonnull (p);
            memcpy (p, buf, size);
        }
        else
            ck_assert_int_eq (wire_conn_frame_write (conn, buf, size), 0);
    }
}

static void
s_check_small (const rec_t *r, uint32_t n)
{
    ck_assert_uint_eq (r->nframes, n);
    uint8_t buf[64];
    for (uint32_t i = 0; i < n; i++) {
        size_t size = s_small_size (i);
        wire_frame_put_header (buf, i);
        s_fill (buf + 4, size - 4, i);
        ck_assert_msg (r->sizes[i] == size, "frame %u: %zu bytes, expected %zu", i, r->sizes[i],
                       size);
        ck_assert_msg (memcmp (r->frames[i], buf, size) == 0, "frame %u corrupt or out of order",
                       i);
    }
}

START_TEST (test_conn_frame_coalesced)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    s_world_init (&w, &limits);
    uint64_t h;
    int c = s_connect (&w, &h);

    // 1000 frames each way, queued before a single flush: nothing is
    // encrypted until then.
    s_queue_small (s_client_conn (&w, c), 1000);
    s_queue_small (s_server_conn (&w, h), 1000);
    ck_assert_uint_eq (wire_tls_pending (wire_conn_tls (s_client_conn (&w, c))), 0);
    ck_assert_uint_eq (wire_tls_pending (wire_conn_tls (s_server_conn (&w, h))), 0);
    ck_assert (S_UNTIL (&w, ALL, w.server.rec.nframes >= 1000 && w.clients[c].rec.nframes >= 1000));
    s_check_small (&w.server.rec, 1000);
    s_check_small (&w.clients[c].rec, 1000);
    ck_assert_int_eq (w.server.rec.bad, 0);
    ck_assert_int_eq (w.clients[c].rec.bad, 0);
    ck_assert (wire_conn_is_open (s_server_conn (&w, h)));
    s_world_free (&w);
}
END_TEST

START_TEST (test_conn_frame_large)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    s_world_init (&w, &limits);
    uint64_t h;
    int c = s_connect (&w, &h);

    size_t size = 3 * 1024 * 1024;
    uint8_t *big = malloc (size);
    ck_assert_ptr_nonnull (big);
    s_fill (big, size, 7);
    // Client to server, and a small frame after it, which must come second.
    ck_assert_int_eq (wire_conn_frame_write (s_client_conn (&w, c), big, size), 0);
    ck_assert_int_eq (wire_conn_frame_write (s_client_conn (&w, c), "after", 5), 0);
    // Server to client, built in place.
    uint8_t *p = wire_conn_frame_begin (s_server_conn (&w, h), size);
    ck_assert_ptr_nonnull (p);
    memcpy (p, big, size);

    ck_assert (S_UNTIL (&w, ALL, w.server.rec.nframes == 2 && w.clients[c].rec.nframes == 1));
    ck_assert_uint_eq (w.server.rec.sizes[0], size);
    ck_assert (memcmp (w.server.rec.frames[0], big, size) == 0);
    ck_assert_uint_eq (w.server.rec.sizes[1], 5);
    ck_assert_mem_eq (w.server.rec.frames[1], "after", 5);
    ck_assert_uint_eq (w.clients[c].rec.sizes[0], size);
    ck_assert (memcmp (w.clients[c].rec.frames[0], big, size) == 0);
    ck_assert (wire_conn_is_open (s_server_conn (&w, h)));
    free (big);
    s_world_free (&w);
}
END_TEST

// The client closes: queued frames still go out, the server sees the close
// as opened, the client's own on_close follows after its drain (a connecting
// socket is not told that the server hung up; see end_t), and the handles
// are gone.
START_TEST (test_conn_close_from_client)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    s_world_init (&w, &limits);
    uint64_t h;
    int c = s_connect (&w, &h);
    uint64_t ch = w.clients[c].rec.open_handles[0];

    wire_conn_t *cc = s_client_conn (&w, c);
    ck_assert_int_eq (wire_conn_frame_write (cc, "last words", 10), 0);
    int64_t t0 = wire_clock_ms ();
    wire_conn_close (cc, "test: client leaves");
    // Closing: nothing more can be queued; the connection is not open.
    ck_assert (!wire_conn_is_open (cc));
    ck_assert_ptr_null (wire_conn_frame_begin (cc, 4));
    ck_assert_int_eq (wire_conn_frame_write (cc, "more", 4), -1);
    wire_conn_close (cc, "second close is a no-op");

    // One flush of the client alone: close_notify is out, it is draining.
    wire_conns_flush (w.clients[c].conns);
    ck_assert_int_eq (w.clients[c].rec.closes, 0);
    ck_assert_ptr_null (wire_conns_lookup (w.clients[c].conns, ch));
    ck_assert_ptr_null (wire_conn_frame_begin (cc, 4));
    ck_assert_uint_eq (wire_conns_count (w.clients[c].conns), 1);

    ck_assert (S_UNTIL (&w, ALL, w.server.rec.closes == 1 && w.clients[c].rec.closes == 1));
    ck_assert_uint_eq (w.server.rec.nframes, 1);
    ck_assert_mem_eq (w.server.rec.frames[0], "last words", 10);
    ck_assert (w.server.rec.close_ev[0].opened);
    ck_assert_uint_eq (w.server.rec.close_ev[0].handle, h);
    ck_assert_str_eq (w.server.rec.close_ev[0].reason, "peer closed");
    ck_assert (w.clients[c].rec.close_ev[0].opened);
    ck_assert_uint_eq (w.clients[c].rec.close_ev[0].handle, ch);
    ck_assert_str_eq (w.clients[c].rec.close_ev[0].reason, "test: client leaves");
    // The client's own on_close ends its drain: it cannot come first.
    ck_assert_int_le (w.server.rec.close_ev[0].at_ms, w.clients[c].rec.close_ev[0].at_ms);
    ck_assert_int_le (w.clients[c].rec.close_ev[0].at_ms - t0, DRAIN_MS + 1500);

    ck_assert_ptr_null (wire_conns_lookup (w.server.conns, h));
    ck_assert_ptr_null (wire_conns_lookup (w.clients[c].conns, ch));
    ck_assert_uint_eq (wire_conns_count (w.server.conns), 0);
    ck_assert_uint_eq (wire_conns_count (w.clients[c].conns), 0);
    s_world_free (&w);
}
END_TEST

// The server closes: input that crosses the close is ignored.
START_TEST (test_conn_close_from_server)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    s_world_init (&w, &limits);
    uint64_t h;
    int c = s_connect (&w, &h);
    uint64_t ch = w.clients[c].rec.open_handles[0];

    wire_conn_t *sc = s_server_conn (&w, h);
    ck_assert_int_eq (wire_conn_frame_write (sc, "bye", 3), 0);
    int64_t t0 = wire_clock_ms ();
    wire_conn_close (sc, "test: server hangs up");
    ck_assert_ptr_null (wire_conn_frame_begin (sc, 4));

    // The client has not seen the close: what it sends now crosses it, and
    // reaches the server before the server's next flush.
    ck_assert_int_eq (wire_conn_frame_write (s_client_conn (&w, c), "too late", 8), 0);
    wire_conns_flush (w.clients[c].conns);
    zmq_pollitem_t item = {w.server.sock, 0, ZMQ_POLLIN, 0};
    ck_assert_int_eq (zmq_poll (&item, 1, WAIT_MS), 1);
    s_pump (&w, SERVER, 0);
    ck_assert_uint_eq (w.server.rec.nframes, 0);
    ck_assert_ptr_null (wire_conns_lookup (w.server.conns, h));
    ck_assert_int_eq (w.server.rec.closes, 0);

    ck_assert (S_UNTIL (&w, ALL, w.server.rec.closes == 1 && w.clients[c].rec.closes == 1));
    ck_assert_uint_eq (w.server.rec.nframes, 0);
    ck_assert_uint_eq (w.clients[c].rec.nframes, 1);
    ck_assert_mem_eq (w.clients[c].rec.frames[0], "bye", 3);
    ck_assert (w.clients[c].rec.close_ev[0].opened);
    ck_assert_str_eq (w.clients[c].rec.close_ev[0].reason, "peer closed");
    ck_assert (w.server.rec.close_ev[0].opened);
    ck_assert_str_eq (w.server.rec.close_ev[0].reason, "test: server hangs up");
    // The client hung up on reading close_notify, which ended the server's
    // drain long before its deadline.
    ck_assert_int_lt (w.server.rec.close_ev[0].at_ms - t0, DRAIN_MS / 2);
    ck_assert_ptr_null (wire_conns_lookup (w.server.conns, h));
    ck_assert_ptr_null (wire_conns_lookup (w.clients[c].conns, ch));
    ck_assert_uint_eq (wire_conns_count (w.server.conns), 0);
    s_world_free (&w);
}
END_TEST

// A peer that takes nothing: the closing side gives up after the drain.
START_TEST (test_conn_close_drain_deadline)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    s_world_init (&w, &limits);
    uint64_t h;
    int c = s_connect (&w, &h);

    int64_t t0 = wire_clock_ms ();
    wire_conn_close (s_client_conn (&w, c), "test: drain");
    // Only the client is pumped: the server never answers the close.
    ck_assert (S_UNTIL (&w, CLIENT (c), w.clients[c].rec.closes == 1));
    int64_t took = w.clients[c].rec.close_ev[0].at_ms - t0;
    ck_assert_int_ge (took, DRAIN_MS - 50);
    ck_assert_int_lt (took, DRAIN_MS + 1500);
    ck_assert_str_eq (w.clients[c].rec.close_ev[0].reason, "test: drain");
    ck_assert (w.clients[c].rec.close_ev[0].opened);
    ck_assert_uint_eq (wire_conns_count (w.clients[c].conns), 0);
    // The client dropped the TCP connection; the server notices.
    ck_assert (S_UNTIL (&w, SERVER, w.server.rec.closes == 1));
    ck_assert (w.server.rec.close_ev[0].opened);
    ck_assert_uint_eq (wire_conns_count (w.server.conns), 0);
    s_world_free (&w);
}
END_TEST

START_TEST (test_conn_stale_handle)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    s_world_init (&w, &limits);
    uint64_t h1;
    int a = s_connect (&w, &h1);
    wire_conn_close (s_server_conn (&w, h1), "test: first goes");
    ck_assert (S_UNTIL (&w, ALL, w.server.rec.closes == 1 && w.clients[a].rec.closes == 1));
    ck_assert_ptr_null (wire_conns_lookup (w.server.conns, h1));

    // The next connection takes the same slot with a new generation.
    uint64_t h2;
    s_connect (&w, &h2);
    ck_assert_uint_ne (h2, h1);
    ck_assert_uint_eq ((uint32_t) h2, (uint32_t) h1);
    ck_assert_ptr_null (wire_conns_lookup (w.server.conns, h1));
    wire_conn_t *c2 = s_server_conn (&w, h2);
    ck_assert_uint_eq (wire_conn_handle (c2), h2);

    // Handles that never existed.
    ck_assert_ptr_null (wire_conns_lookup (w.server.conns, 0));
    ck_assert_ptr_null (wire_conns_lookup (w.server.conns, h2 + (1ULL << 32)));
    ck_assert_ptr_null (wire_conns_lookup (w.server.conns, h2 | 0xffffff));
    ck_assert_ptr_null (wire_conns_lookup (w.server.conns, UINT64_MAX));
    s_world_free (&w);
}
END_TEST

START_TEST (test_conn_max_conns)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    limits.max_conns = 1;
    s_world_init (&w, &limits);
    uint64_t h;
    int a = s_connect (&w, &h);

    // B is refused: the server drops its TCP connection at once.
    int b = s_client_add (&w);
    ck_assert_msg (S_UNTIL (&w, ALL, w.clients[b].disconnects > 0),
                   "the server did not drop the second connection");
    ck_assert_int_eq (w.clients[b].rec.opens, 0);
    // B's table may hold a connection stuck in the handshake (it is not
    // told); it never opened.
    s_end_close (&w.clients[b]);
    for (int i = 0; i < w.clients[b].rec.closes; i++)
        ck_assert (!w.clients[b].rec.close_ev[i].opened);
    // The server never took it in.
    ck_assert_int_eq (w.server.rec.opens, 1);
    ck_assert_int_eq (w.server.rec.closes, 0);
    ck_assert_uint_eq (wire_conns_count (w.server.conns), 1);

    // The first one still works both ways.
    ck_assert_int_eq (wire_conn_frame_write (s_client_conn (&w, a), "ping", 4), 0);
    ck_assert_int_eq (wire_conn_frame_write (s_server_conn (&w, h), "pong", 4), 0);
    ck_assert (S_UNTIL (&w, ALL, w.server.rec.nframes == 1 && w.clients[a].rec.nframes == 1));
    ck_assert_mem_eq (w.server.rec.frames[0], "ping", 4);
    ck_assert_mem_eq (w.clients[a].rec.frames[0], "pong", 4);
    ck_assert_int_eq (w.clients[a].rec.closes, 0);
    s_world_free (&w);
}
END_TEST

START_TEST (test_conn_max_handshakes)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    limits.max_handshakes = 1;
    s_world_init (&w, &limits);

    // A connects, but its table is not pumped: it stays in the handshake.
    int a = s_client_add (&w);
    ck_assert (S_UNTIL (&w, SERVER, wire_conns_count (w.server.conns) == 1));
    ck_assert_int_eq (w.server.rec.opens, 0);

    // B arrives while A is handshaking: refused.
    int b = s_client_add (&w);
    ck_assert (S_UNTIL (&w, SERVER | CLIENT (b), w.clients[b].disconnects > 0));
    ck_assert_int_eq (w.clients[b].rec.opens, 0);
    s_end_close (&w.clients[b]);
    for (int i = 0; i < w.clients[b].rec.closes; i++)
        ck_assert (!w.clients[b].rec.close_ev[i].opened);
    ck_assert_uint_eq (wire_conns_count (w.server.conns), 1);
    ck_assert_int_eq (w.server.rec.opens, 0);
    ck_assert_int_eq (w.server.rec.closes, 0);

    // A completes; the handshake slot is free again, so C gets in.
    ck_assert (S_UNTIL (&w, ALL, w.clients[a].rec.opens == 1 && w.server.rec.opens == 1));
    uint64_t hc;
    int c = s_connect (&w, &hc);
    ck_assert_int_eq (w.server.rec.opens, 2);
    ck_assert_uint_eq (wire_conns_count (w.server.conns), 2);
    ck_assert_int_eq (w.server.rec.closes, 0);
    ck_assert_int_eq (w.clients[a].rec.closes, 0);
    ck_assert_int_eq (w.clients[c].rec.closes, 0);
    s_world_free (&w);
}
END_TEST

START_TEST (test_conn_first_max_frame)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    limits.max_frame = 1024 * 1024;
    limits.first_max_frame = 1024;
    s_world_init (&w, &limits);
    w.server.rec.reply_on_bad = "frame too large";
    uint64_t h;
    int a = s_connect (&w, &h);

    uint8_t frame[2000];
    s_fill (frame, sizeof frame, 3);
    // Up to the first limit passes; beyond it the stream is refused.
    ck_assert_int_eq (wire_conn_frame_write (s_client_conn (&w, a), frame, 1024), 0);
    ck_assert_int_eq (wire_conn_frame_write (s_client_conn (&w, a), frame, sizeof frame), 0);
    ck_assert (S_UNTIL (&w, ALL, w.server.rec.closes == 1 && w.clients[a].rec.closes == 1));
    ck_assert_int_eq (w.server.rec.bad, 1);
    ck_assert_int_eq (w.server.rec.bad_status, WIRE_FRAME_TOO_LARGE);
    ck_assert_uint_eq (w.server.rec.nframes, 1);
    ck_assert_uint_eq (w.server.rec.sizes[0], 1024);
    ck_assert (w.server.rec.close_ev[0].opened);
    ck_assert_str_eq (w.server.rec.close_ev[0].reason, wire_frame_strerror (WIRE_FRAME_TOO_LARGE));
    // What the server queued from on_bad_stream went out before the close.
    ck_assert_uint_eq (w.clients[a].rec.nframes, 1);
    ck_assert_mem_eq (w.clients[a].rec.frames[0], "frame too large", 15);
    ck_assert (w.clients[a].rec.close_ev[0].opened);
    ck_assert_ptr_null (wire_conns_lookup (w.server.conns, h));

    // A fresh connection raised to 1 MiB once open takes the same frame.
    w.server.rec.max_frame_on_open = 1024 * 1024;
    uint64_t h2;
    int b = s_connect (&w, &h2);
    ck_assert_int_eq (wire_conn_frame_write (s_client_conn (&w, b), frame, sizeof frame), 0);
    ck_assert (S_UNTIL (&w, ALL, w.server.rec.nframes == 2));
    ck_assert_uint_eq (w.server.rec.sizes[1], sizeof frame);
    ck_assert_mem_eq (w.server.rec.frames[1], frame, sizeof frame);
    ck_assert_int_eq (w.server.rec.bad, 1);
    ck_assert (wire_conn_is_open (s_server_conn (&w, h2)));
    ck_assert_int_eq (w.clients[b].rec.closes, 0);
    s_world_free (&w);
}
END_TEST

START_TEST (test_conn_pending_cap)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    limits.max_pending = 256 * 1024;
    s_world_init (&w, &limits);
    uint64_t h;
    int c = s_connect (&w, &h);

    wire_conn_t *sc = s_server_conn (&w, h);
    size_t chunk = 40000, queued = 0;
    uint8_t *body = calloc (1, chunk);
    ck_assert_ptr_nonnull (body);
    int refused_at = -1;
    for (int i = 0; i < 20 && refused_at < 0; i++) {
        if (wire_conn_frame_write (sc, body, chunk) == 0)
            queued += WIRE_FRAME_HEADER + chunk;
        else
            refused_at = i;
    }
    free (body);
    ck_assert_int_gt (refused_at, 0);
    ck_assert_uint_le (queued, limits.max_pending);
    ck_assert_uint_gt (queued + WIRE_FRAME_HEADER + chunk, limits.max_pending);
    // Refused means cut off: gone for lookups, nothing more is queued.
    ck_assert_ptr_null (wire_conns_lookup (w.server.conns, h));
    ck_assert_ptr_null (wire_conn_frame_begin (sc, 1));

    // The server drops the TCP connection; the client learns it on its
    // next send (see end_t).
    ck_assert (S_UNTIL (&w, ALL, w.server.rec.closes == 1 && w.clients[c].disconnects > 0));
    ck_assert (w.server.rec.close_ev[0].opened);
    ck_assert_uint_eq (w.server.rec.close_ev[0].handle, h);
    ck_assert_ptr_nonnull (strstr (w.server.rec.close_ev[0].reason, "pending"));
    if (w.clients[c].rec.closes == 0)
        ck_assert_int_eq (wire_conn_frame_write (s_client_conn (&w, c), "ping", 4), 0);
    ck_assert (S_UNTIL (&w, ALL, w.clients[c].rec.closes == 1));
    ck_assert (w.clients[c].rec.close_ev[0].opened);
    ck_assert_str_eq (w.clients[c].rec.close_ev[0].reason, "peer disconnected");
    ck_assert_uint_eq (w.clients[c].rec.nframes, 0); // the queue was dropped
    ck_assert_uint_eq (wire_conns_count (w.server.conns), 0);
    s_world_free (&w);
}
END_TEST

// The server's socket closes. libzmq 4.3.4 sends the connecting side no
// disconnect notification with reconnects off, so the client table learns
// it when it next sends (as a client's heartbeat does).
START_TEST (test_conn_server_gone)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    s_world_init (&w, &limits);
    int c = s_connect (&w, NULL);
    uint64_t ch = w.clients[c].rec.open_handles[0];

    zmq_close (w.server.sock); // TCP goes; the table is only dropped after
    w.server.sock = NULL;
    ck_assert (S_UNTIL (&w, ALL, w.clients[c].disconnects > 0 || w.clients[c].rec.closes > 0));
    if (w.clients[c].rec.closes == 0)
        ck_assert_int_eq (wire_conn_frame_write (s_client_conn (&w, c), "ping", 4), 0);
    ck_assert (S_UNTIL (&w, ALL, w.clients[c].rec.closes == 1));
    ck_assert (w.clients[c].rec.close_ev[0].opened);
    ck_assert_uint_eq (w.clients[c].rec.close_ev[0].handle, ch);
    ck_assert_str_eq (w.clients[c].rec.close_ev[0].reason, "peer disconnected");
    ck_assert_ptr_null (wire_conns_lookup (w.clients[c].conns, ch));
    ck_assert_uint_eq (wire_conns_count (w.clients[c].conns), 0);
    ck_assert_int_eq (w.server.rec.closes, 0); // its table was not pumped since
    s_world_free (&w);
}
END_TEST

START_TEST (test_conn_destroy)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    s_world_init (&w, &limits);
    uint64_t h1, h2;
    int a = s_connect (&w, &h1);
    s_connect (&w, &h2);
    // A third connection still in the handshake (its table is not pumped).
    s_client_add (&w);
    ck_assert (S_UNTIL (&w, SERVER, wire_conns_count (w.server.conns) == 3));

    wire_conns_destroy (&w.server.conns);
    ck_assert_ptr_null (w.server.conns);
    ck_assert_int_eq (w.server.rec.closes, 3);
    int opened = 0;
    bool seen1 = false, seen2 = false;
    for (int i = 0; i < 3; i++) {
        close_ev_t *ev = &w.server.rec.close_ev[i];
        ck_assert_str_eq (ev->reason, "shutting down");
        opened += ev->opened;
        seen1 |= ev->handle == h1;
        seen2 |= ev->handle == h2;
    }
    ck_assert_int_eq (opened, 2);
    ck_assert (seen1 && seen2);

    wire_conns_destroy (&w.clients[a].conns);
    ck_assert_int_eq (w.clients[a].rec.closes, 1);
    ck_assert (w.clients[a].rec.close_ev[0].opened);
    ck_assert_str_eq (w.clients[a].rec.close_ev[0].reason, "shutting down");
    wire_conns_destroy (&w.clients[a].conns); // NULL-safe
    wire_conns_destroy (NULL);
    s_world_free (&w);
}
END_TEST

START_TEST (test_conn_bad_hub_ca)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    s_world_init (&w, &limits);
    int c = s_client_add_ca (&w, "jur/FR/ca.pem");
    ck_assert (S_UNTIL (&w, ALL, w.clients[c].rec.closes == 1 && w.server.rec.closes == 1));
    ck_assert_int_eq (w.clients[c].rec.opens, 0);
    ck_assert_int_eq (w.server.rec.opens, 0);
    ck_assert (!w.clients[c].rec.close_ev[0].opened);
    const char *reason = w.clients[c].rec.close_ev[0].reason;
    ck_assert_msg (strstr (reason, "hub CA"), "client reason: %s", reason);
    // The client's alert told the server why it failed.
    ck_assert (!w.server.rec.close_ev[0].opened);
    ck_assert_msg (strstr (w.server.rec.close_ev[0].reason, "alert"), "server reason: %s",
                   w.server.rec.close_ev[0].reason);
    ck_assert_uint_eq (wire_conns_count (w.server.conns), 0);
    ck_assert_uint_eq (wire_conns_count (w.clients[c].conns), 0);
    s_world_free (&w);
}
END_TEST

// New connections use the table's new context; live ones keep theirs.
START_TEST (test_conn_set_ctx)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    s_world_init (&w, &limits);
    uint64_t h;
    int c = s_connect (&w, &h);
    uint64_t first = w.clients[c].rec.open_handles[0];

    wire_tls_ctx_t *bad = s_client_ctx ("nodes/fr-pn", "jur/FR/ca.pem");
    wire_conns_set_ctx (w.clients[c].conns, bad);
    wire_tls_ctx_destroy (&bad); // the table keeps its own reference
    // A second TCP connection from the same client socket, to a second
    // server endpoint: with reconnects off, libzmq drops every connection
    // of a socket to an endpoint when one of them ends.
    ck_assert_int_eq (zmq_bind (w.server.sock, "tcp://127.0.0.1:*"), 0);
    char endpoint[256];
    size_t len = sizeof endpoint;
    ck_assert_int_eq (zmq_getsockopt (w.server.sock, ZMQ_LAST_ENDPOINT, endpoint, &len), 0);
    ck_assert_str_ne (endpoint, w.endpoint);
    const char *rid = "test-peer-again";
    ck_assert_int_eq (zmq_setsockopt (w.clients[c].sock, ZMQ_CONNECT_ROUTING_ID, rid, strlen (rid)),
                      0);
    ck_assert_int_eq (zmq_connect (w.clients[c].sock, endpoint), 0);
    ck_assert (S_UNTIL (&w, ALL, w.clients[c].rec.closes == 1 && w.server.rec.closes == 1));
    ck_assert (!w.clients[c].rec.close_ev[0].opened);
    ck_assert_uint_ne (w.clients[c].rec.close_ev[0].handle, first);
    ck_assert_ptr_nonnull (strstr (w.clients[c].rec.close_ev[0].reason, "hub CA"));
    ck_assert_int_eq (w.clients[c].rec.opens, 1);

    // The first connection is untouched.
    ck_assert_int_eq (wire_conn_frame_write (s_client_conn (&w, c), "still here", 10), 0);
    ck_assert (S_UNTIL (&w, ALL, w.server.rec.nframes == 1));
    ck_assert_mem_eq (w.server.rec.frames[0], "still here", 10);
    ck_assert_ptr_nonnull (wire_conns_lookup (w.clients[c].conns, first));
    ck_assert_ptr_nonnull (wire_conns_lookup (w.server.conns, h));
    ck_assert_uint_eq (wire_conns_count (w.clients[c].conns), 1);
    s_world_free (&w);
}
END_TEST

static void
s_close_each (void *arg, wire_conn_t *conn)
{
    (*(int *) arg)++;
    wire_conn_close (conn, "test: sweep");
}

// foreach may close the connections it visits; closed ones are skipped.
START_TEST (test_conn_foreach_close)
{
    world_t w;
    wire_conns_limits_t limits = s_limits ();
    s_world_init (&w, &limits);
    int a = s_connect (&w, NULL);
    int b = s_connect (&w, NULL);

    int n = 0;
    wire_conns_foreach (w.server.conns, s_close_each, &n);
    ck_assert_int_eq (n, 2);
    wire_conns_flush (w.server.conns);
    n = 0;
    wire_conns_foreach (w.server.conns, s_close_each, &n); // draining: not visited
    ck_assert_int_eq (n, 0);
    ck_assert (S_UNTIL (&w, ALL,
                        w.server.rec.closes == 2 && w.clients[a].rec.closes == 1
                            && w.clients[b].rec.closes == 1));
    for (int i = 0; i < 2; i++) {
        ck_assert (w.server.rec.close_ev[i].opened);
        ck_assert_str_eq (w.server.rec.close_ev[i].reason, "test: sweep");
    }
    ck_assert_str_eq (w.clients[a].rec.close_ev[0].reason, "peer closed");
    ck_assert_str_eq (w.clients[b].rec.close_ev[0].reason, "peer closed");
    ck_assert_uint_eq (wire_conns_count (w.server.conns), 0);
    s_world_free (&w);
}
END_TEST

Suite *
conn_suite (void)
{
    Suite *s = suite_create ("conn");
    TCase *tc = tcase_create ("open");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_conn_handshake);
    tcase_add_test (tc, test_conn_bad_hub_ca);
    tcase_add_test (tc, test_conn_set_ctx);
    suite_add_tcase (s, tc);

    tc = tcase_create ("frames");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_conn_frame_single);
    tcase_add_test (tc, test_conn_frame_coalesced);
    tcase_add_test (tc, test_conn_frame_large);
    suite_add_tcase (s, tc);

    tc = tcase_create ("close");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_conn_close_from_client);
    tcase_add_test (tc, test_conn_close_from_server);
    tcase_add_test (tc, test_conn_close_drain_deadline);
    tcase_add_test (tc, test_conn_stale_handle);
    tcase_add_test (tc, test_conn_server_gone);
    tcase_add_test (tc, test_conn_destroy);
    tcase_add_test (tc, test_conn_foreach_close);
    suite_add_tcase (s, tc);

    tc = tcase_create ("limits");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_conn_max_conns);
    tcase_add_test (tc, test_conn_max_handshakes);
    tcase_add_test (tc, test_conn_first_max_frame);
    tcase_add_test (tc, test_conn_pending_cap);
    suite_add_tcase (s, tc);
    return s;
}
