/*  A node's session with the broker: connect, Hello/Welcome, send, receive,
    heartbeats, credit, and reconnection with a fresh TLS session.           */
#include "internal.h"

#include "ackproof.h"
#include "codec.h"
#include "conn.h"
#include "frame.h"
#include "tls.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include "state.h"
#include <zmq.h>

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_WINDOW 64
#define FLUSH_THRESHOLD (64 * 1024)
#define CACHE_SLOTS 64  /* resolutions remembered, by routing fields */
#define PAGE 64         /* inbox and outbox rows read at a time */
#define NOTICES_MAX 1024
#define ACK_BATCH 128     /* deliveries one signed Ack covers before it goes at once */
#define ACK_DELAY_MS 2    /* the longest a stored delivery waits for its Ack */

// A delivery made durable here, to acknowledge to the broker.
typedef struct {
    uint8_t id[LIAISON_ID_LEN];
    char sender[WIRE_NODE_ID_MAX];
} ackitem_t;

// A resolution the broker gave for one set of routing fields.
typedef struct {
    uint64_t key;               /* hash of the routing fields; 0: empty slot */
    Liaison__Resolved *res;     /* owned */
} cached_t;

// A Submit the broker has not processed yet (credit not returned for it):
// kept so that a recipients-changed refusal can be resolved and sent again.
typedef struct inflight {
    uint8_t id[LIAISON_ID_LEN];
    uint64_t seq;               /* its place among this connection's Submits */
    uint8_t *env;               /* the envelope as the application made it, packed */
    size_t env_len;
    int attempt;                /* 1, then 2 after one re-resolution */
    bool resend;                /* the broker said recipients-changed */
    bool refused;               /* the broker's store refused it (ERR_STORE): it goes
                                   again from the outbox */
    struct inflight *next;
} inflight_t;

typedef enum { ST_DOWN, ST_TLS, ST_HELLO, ST_READY } sess_state_t;

struct liaison {
    liaison_options_t opts;     /* strings below are owned copies */
    char *endpoint, *cert, *key, *ca, *hub_ca, *server_name, *crl_dir, *state_dir;
    void *zctx;
    void *sock;                 /* ZMQ_STREAM, one per connection attempt */
    void *monitor;              /* PAIR reading sock's disconnect events */
    wire_tls_ctx_t *tls;
    wire_conns_t *conns;
    uint64_t conn;              /* handle of the one connection, 0 if none */
    sess_state_t state;
    int error;                  /* what ended the session, if it ended */
    char errmsg[512];
    char node_id[WIRE_NODE_ID_MAX];
    char jurisdiction[3];
    uint32_t max_frame;
    uint32_t heartbeat_ms;
    uint32_t credit_frames;     /* frames we may still send */
    uint64_t credit_bytes;
    uint32_t consumed;          /* deliveries taken since we last granted credit */
    uint64_t ping_sent, ping_seen;  /* barrier nonces */
    int64_t last_send_ms;
    int64_t last_recv_ms;       /* any frame from the broker */
    unsigned connect_seq;
    liaison_message_t *inbox_head, *inbox_tail;
    liaison_receipt_t *rcpt_head, *rcpt_tail;
    uint64_t resolve_seq;       /* request ids of Resolve */
    Liaison__Resolved *answer;  /* the Resolved awaited, once it arrives */
    cached_t cache[CACHE_SLOTS];
    inflight_t *fl_head, *fl_tail;  /* Submits in the order sent */
    uint64_t submit_seq;        /* Submits sent on this connection */
    uint64_t credited;          /* Submits the broker's Credit frames cover */
    uint64_t barrier_mark;      /* Submits before the last barrier answered */
    uint64_t ping_submits[8];   /* submit_seq when barrier nonce % 8 was sent */
    inflight_t *resend_head;        /* refused as out of date: send again */
    Liaison__Recipient *scratch;    /* resolved recipients of the Submit being sent */
    Liaison__Recipient **scratch_ptrs;
    size_t scratch_cap;
    state_t *st;                /* outbox and inbox (state_dir) */
    EVP_PKEY *skey;             /* our private key: signs DELIVERED and READ */
    ackitem_t *acks;            /* deliveries staged, to acknowledge after the commit */
    size_t nacks, acks_cap;
    size_t acks_credited;       /* of those, how many gave back their delivery credit */
    int64_t acks_since_ms;      /* when the oldest of them was stored */
    bool ack_now;               /* send them without waiting (close, flush) */
    ackitem_t *reads;           /* READs recorded here, to tell the broker (batched likewise) */
    size_t nreads, reads_cap;
    int64_t reads_since_ms;
    uint64_t inbox_after;       /* where the application's reading is in the inbox */
    liaison_message_t *page_head, *page_tail;  /* read from the inbox, not yet handed out */
    bool outbox_due;            /* send the outbox again (new connection, store refusal) */
    bool urgent;                /* something staged must be durable before the next send:
                                   an outbox entry, a delivery, an application's ack
                                   (outbox removals alone wait for the next commit) */
    int64_t outbox_retry_ms;    /* when, after a store refusal */
    uint64_t query_seq;
    Liaison__Answer *qanswer;   /* the Answer awaited */
    liaison_notice_t notices[NOTICES_MAX];
    size_t notice_head, notice_n;
};

struct liaison_trail {
    liaison_receipt_t **items;
    size_t n;
};

static __thread char s_connect_err[512];

static void
s_seterr (liaison_t *self, int code, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (self->errmsg, sizeof self->errmsg, fmt, ap);
    va_end (ap);
    self->error = code;
}

const char *
liaison_errmsg (const liaison_t *self)
{
    if (!self)
        return s_connect_err[0] ? s_connect_err : "no error";
    return self->errmsg[0] ? self->errmsg : "no error";
}

const char *liaison_node_id (const liaison_t *self) { return self->node_id; }
const char *liaison_jurisdiction (const liaison_t *self) { return self->jurisdiction; }

static wire_conn_t *
s_conn (liaison_t *self)
{
    return self->conn ? wire_conns_lookup (self->conns, self->conn) : NULL;
}

// Queues one frame on the connection; 0 or -1 (session then down).
static int
s_send_frame (liaison_t *self, const Liaison__Frame *f)
{
    wire_conn_t *c = s_conn (self);
    if (!c || wire_codec_send (c, f)) {
        if (!self->error)
            s_seterr (self, LIAISON_ECLOSED, "connection to the broker lost while sending");
        return -1;
    }
    self->last_send_ms = wire_clock_ms ();
    return 0;
}

static void
s_on_open (void *arg, wire_conn_t *conn)
{
    liaison_t *self = arg;
    self->conn = wire_conn_handle (conn);
    self->state = ST_HELLO;
    Liaison__Hello hello = LIAISON__HELLO__INIT;
    hello.min_version = WIRE_PROTOCOL_VERSION;
    hello.max_version = WIRE_PROTOCOL_VERSION;
    hello.software = "libliaison/0.1";
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_HELLO;
    f.hello = &hello;
    s_send_frame (self, &f);
}

static int
s_map_error (int code)
{
    switch (code) {
        case LIAISON__ERROR_CODE__ERR_AUTH: return LIAISON_EAUTH;
        case LIAISON__ERROR_CODE__ERR_SENDER: return LIAISON_EDENIED;
        case LIAISON__ERROR_CODE__ERR_MALFORMED: return LIAISON_EMALFORMED;
        case LIAISON__ERROR_CODE__ERR_EXHAUSTED: return LIAISON_EEXHAUSTED;
        case LIAISON__ERROR_CODE__ERR_TIMEOUT: return LIAISON_ETIMEOUT;
        case LIAISON__ERROR_CODE__ERR_SHUTDOWN: return LIAISON_ECLOSED;
        default: return LIAISON_EPROTOCOL;
    }
}

// Gives the broker more delivery credit once half the window is used.
static void
s_grant_credit (liaison_t *self, bool force)
{
    if (!self->opts.receiver || self->state != ST_READY || self->consumed == 0)
        return;
    if (!force && self->consumed < (self->opts.window + 1) / 2)
        return;
    Liaison__Credit credit = LIAISON__CREDIT__INIT;
    credit.frames = self->consumed;
    credit.bytes = (uint64_t) self->consumed * self->max_frame;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_CREDIT;
    f.credit = &credit;
    if (s_send_frame (self, &f) == 0)
        self->consumed = 0;
}

static void
s_on_welcome (liaison_t *self, const Liaison__Welcome *w)
{
    snprintf (self->node_id, sizeof self->node_id, "%s", w->node_id);
    snprintf (self->jurisdiction, sizeof self->jurisdiction, "%s", w->jurisdiction);
    if (w->version != WIRE_PROTOCOL_VERSION) {
        s_seterr (self, LIAISON_EPROTOCOL, "broker chose protocol version %u; this library "
                  "speaks %d", w->version, WIRE_PROTOCOL_VERSION);
        wire_conn_t *c = s_conn (self);
        if (c)
            wire_conn_close (c, "protocol version");
        return;
    }
    self->max_frame = w->max_frame;
    wire_conn_t *c = s_conn (self);
    if (c)
        wire_conn_set_max_frame (c, w->max_frame);
    self->last_recv_ms = wire_clock_ms ();
    self->heartbeat_ms = w->heartbeat_ms ? w->heartbeat_ms : 10000;
    self->credit_frames = w->credit_frames;
    self->credit_bytes = w->credit_bytes;
    self->state = ST_READY;
    if (self->opts.receiver) {
        Liaison__Receive rx = LIAISON__RECEIVE__INIT;
        rx.credit_frames = self->opts.window;
        rx.credit_bytes = (uint64_t) self->opts.window * self->max_frame;
        Liaison__Frame f = LIAISON__FRAME__INIT;
        f.kind_case = LIAISON__FRAME__KIND_RECEIVE;
        f.receive = &rx;
        s_send_frame (self, &f);
        self->consumed = 0;
    }
}

static void
s_queue_receipt (liaison_t *self, liaison_receipt_t *r)
{
    if (!r)
        return;
    if (self->rcpt_tail)
        self->rcpt_tail->next = r;
    else
        self->rcpt_head = r;
    self->rcpt_tail = r;
}

static void
s_cache_clear (liaison_t *self)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        if (self->cache[i].res)
            liaison__resolved__free_unpacked (self->cache[i].res, NULL);
        self->cache[i].res = NULL;
        self->cache[i].key = 0;
    }
}

static void
s_inflight_free (inflight_t *fl)
{
    free (fl->env);
    free (fl);
}

// The broker has processed the first `upto` Submits of this connection
// (its Credit frames and barrier answers say so): a refusal of any of them
// has arrived already, on the same stream.
static void
s_inflight_done (liaison_t *self, uint64_t upto)
{
    while (self->fl_head && self->fl_head->seq <= upto) {
        inflight_t *fl = self->fl_head;
        self->fl_head = fl->next;
        if (!self->fl_head)
            self->fl_tail = NULL;
        if (fl->resend) {
            fl->next = self->resend_head;
            self->resend_head = fl;
        }
        else
            s_inflight_free (fl);
    }
}

// A receipt saying the Submit's recipients no longer match the rules: the
// first time, forget what we resolved and send the message again (from
// outside this callback); the receipts are not the application's news.
static bool
s_out_of_date (liaison_t *self, const Liaison__Receipt *r)
{
    if (r->status != LIAISON__RECEIPT_STATUS__REJECTED
        || strcmp (r->reason, "recipients-changed") != 0)
        return false;
    for (inflight_t *fl = self->fl_head; fl; fl = fl->next)
        if (memcmp (fl->id, r->id.data, LIAISON_ID_LEN) == 0) {
            if (fl->attempt > 1)
                return false;
            fl->resend = true;
            s_cache_clear (self);
            return true;
        }
    return false;
}

/* The envelope's bytes inside a Deliver frame as received (Frame field 7
   holding Deliver field 1), so the inbox stores exactly what the broker
   stored; NULL if the frame is laid out otherwise. */
static const uint8_t *
s_envelope_bytes (const uint8_t *data, size_t size, size_t *len)
{
    size_t pos = 0;
    for (int field = 0; field < 2; field++) {
        if (pos >= size || data[pos] != (field == 0 ? 0x3a : 0x0a))
            return NULL;
        pos++;
        uint64_t v = 0;
        for (int shift = 0; pos < size && shift < 64; shift += 7) {
            uint8_t b = data[pos++];
            v |= (uint64_t) (b & 0x7f) << shift;
            if (!(b & 0x80))
                break;
        }
        if (v > size - pos)
            return NULL;
        if (field == 1) {
            *len = (size_t) v;
            return v == size - pos ? data + pos : NULL;
        }
    }
    return NULL;
}

// Fails the session after the state directory failed: nothing staged was
// acknowledged, and a new connection gets it all again.
static void
s_state_failed (liaison_t *self, wire_conn_t *conn)
{
    s_seterr (self, LIAISON_EIO, "state directory %s: %s", self->opts.state_dir,
              state_error (self->st));
    self->nacks = self->acks_credited = 0;
    if (conn)
        wire_conn_close (conn, "client state failed");
}

// A delivery: durable in the inbox (with the next commit), then
// acknowledged; a redelivery of one we have is only acknowledged again.
static void
s_on_deliver (liaison_t *self, wire_conn_t *conn, const uint8_t *data, size_t size,
              const Liaison__Envelope *e)
{
    size_t len = 0;
    const uint8_t *bytes = s_envelope_bytes (data, size, &len);
    uint8_t *packed = NULL;
    if (!bytes) {
        len = liaison__envelope__get_packed_size (e);
        packed = malloc (len ? len : 1);
        if (!packed) {
            s_seterr (self, LIAISON_EEXHAUSTED, "out of memory storing a delivery");
            wire_conn_close (conn, "out of memory");
            return;
        }
        liaison__envelope__pack (e, packed);
        bytes = packed;
    }
    int rc = state_inbox_put (self->st, e->sender, e->id.data, bytes, len, wire_time_ms ());
    self->urgent = true;
    free (packed);
    if (rc < 0) {
        s_state_failed (self, conn);
        return;
    }
    if (self->nacks == self->acks_cap) {
        size_t cap = self->acks_cap ? 2 * self->acks_cap : 256;
        ackitem_t *more = realloc (self->acks, cap * sizeof *more);
        if (!more) {
            s_seterr (self, LIAISON_EEXHAUSTED, "out of memory acknowledging deliveries");
            wire_conn_close (conn, "out of memory");
            return;
        }
        self->acks = more;
        self->acks_cap = cap;
    }
    if (self->nacks == 0)
        self->acks_since_ms = wire_clock_ms ();
    ackitem_t *a = &self->acks[self->nacks++];
    memcpy (a->id, e->id.data, LIAISON_ID_LEN);
    snprintf (a->sender, sizeof a->sender, "%s", e->sender);
}

// Sends one signed Ack for items (at most ACKPROOF_MAX_ITEMS).
static int
s_send_ack (liaison_t *self, const ackitem_t *items, size_t n, int status)
{
    uint8_t leaves[ACKPROOF_MAX_ITEMS][32], root[32], sig[WIRE_MAX_SIGNATURE];
    Liaison__AckItem it[ACKPROOF_MAX_ITEMS], *ptrs[ACKPROOF_MAX_ITEMS];
    int64_t now = wire_time_ms ();
    for (size_t i = 0; i < n; i++) {
        ackproof_leaf (self->node_id, status, now, items[i].sender, items[i].id, leaves[i]);
        liaison__ack_item__init (&it[i]);
        it[i].id.data = (uint8_t *) items[i].id;
        it[i].id.len = LIAISON_ID_LEN;
        it[i].sender = (char *) items[i].sender;
        ptrs[i] = &it[i];
    }
    size_t siglen = sizeof sig;
    if (ackproof_root ((const uint8_t (*)[32]) leaves, n, root)
        || ackproof_sign (self->skey, root, n, sig, &siglen)) {
        s_seterr (self, LIAISON_ETLS, "cannot sign a receipt with %s", self->key);
        return -1;
    }
    Liaison__Ack ack = LIAISON__ACK__INIT;
    ack.items = ptrs;
    ack.n_items = n;
    ack.status = (Liaison__ReceiptStatus) status;
    ack.time_ms = now;
    ack.signature.data = sig;
    ack.signature.len = siglen;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_ACK;
    f.ack = &ack;
    return s_send_frame (self, &f);
}

// Sends the READs recorded (durable already) once there are enough, or
// the oldest has waited ACK_DELAY_MS, or `now`.
static void
s_send_reads (liaison_t *self, bool now)
{
    if (self->nreads == 0 || self->state != ST_READY)
        return;
    if (!now && self->nreads < ACK_BATCH
        && wire_clock_ms () - self->reads_since_ms < ACK_DELAY_MS)
        return;
    size_t n = self->nreads;
    self->nreads = 0;
    for (size_t i = 0; i < n; i += ACKPROOF_MAX_ITEMS) {
        size_t k = n - i < ACKPROOF_MAX_ITEMS ? n - i : ACKPROOF_MAX_ITEMS;
        if (s_send_ack (self, self->reads + i, k, LIAISON__RECEIPT_STATUS__READ))
            return;
    }
}

/* Commits what was staged (outbox entries, deliveries, acknowledgements)
   with one fsync, then tells the broker which deliveries are durable and
   gives back their credit. */
static void
s_settle (liaison_t *self)
{
    if (!self->st)
        return;
    /* Outbox removals after ACCEPTED are not urgent: one lost in a crash
       only means a resend the broker recognises. They ride on the next
       commit instead of costing one of their own. */
    if (self->urgent && state_pending (self->st) && state_commit (self->st)) {
        self->urgent = false;
        s_state_failed (self, s_conn (self));
        return;
    }
    self->urgent = false;
    if (self->state != ST_READY) {
        // A new connection brings the deliveries again; READs recorded
        // here wait for it.
        self->nacks = self->acks_credited = 0;
        return;
    }
    s_send_reads (self, self->ack_now);
    if (self->nacks == 0) {
        self->ack_now = false;
        return;
    }
    // Everything in acks is durable now: its delivery credit goes back at
    // once; the signed Ack itself waits to cover a bigger batch (one
    // signature here, one check at the broker) for at most ACK_DELAY_MS.
    self->consumed += (uint32_t) (self->nacks - self->acks_credited);
    self->acks_credited = self->nacks;
    s_grant_credit (self, false);
    if (self->nacks < ACK_BATCH && !self->ack_now
        && wire_clock_ms () - self->acks_since_ms < ACK_DELAY_MS)
        return;
    self->ack_now = false;
    size_t n = self->nacks;
    self->nacks = self->acks_credited = 0;
    for (size_t i = 0; i < n; i += ACKPROOF_MAX_ITEMS) {
        size_t k = n - i < ACKPROOF_MAX_ITEMS ? n - i : ACKPROOF_MAX_ITEMS;
        if (s_send_ack (self, self->acks + i, k, LIAISON__RECEIPT_STATUS__DELIVERED))
            return;
    }
}

static int
s_on_frame (void *arg, wire_conn_t *conn, const uint8_t *data, size_t size)
{
    liaison_t *self = arg;
    wire_codec_error_t err;
    Liaison__Frame *f = wire_codec_decode (data, size, &err);
    if (!f) {
        s_seterr (self, LIAISON_EPROTOCOL, "broker sent an invalid frame (%s: %s)",
                  err.reason, err.detail);
        wire_conn_close (conn, "invalid frame from broker");
        return -1;
    }
    bool ready = self->state == ST_READY;
    self->last_recv_ms = wire_clock_ms ();
    switch (f->kind_case) {
        case LIAISON__FRAME__KIND_WELCOME:
            if (self->state == ST_HELLO)
                s_on_welcome (self, f->welcome);
            break;
        case LIAISON__FRAME__KIND_DELIVER:
            if (ready && f->deliver->envelope)
                s_on_deliver (self, conn, data, size, f->deliver->envelope);
            break;
        case LIAISON__FRAME__KIND_RECEIPT: {
            if (s_out_of_date (self, f->receipt))
                break;  // handled: resolved and sent again, once
            // The broker has it durably, or refused it for good: it
            // leaves the outbox (committed with the next group).
            if (f->receipt->status == LIAISON__RECEIPT_STATUS__ACCEPTED
                || f->receipt->status == LIAISON__RECEIPT_STATUS__REJECTED)
                state_outbox_done (self->st, f->receipt->id.data);
            liaison_receipt_t *r = receipt_wrap (f->receipt);
            f->receipt = NULL;
            f->kind_case = LIAISON__FRAME__KIND__NOT_SET;
            if (r) {
                if (self->rcpt_tail)
                    self->rcpt_tail->next = r;
                else
                    self->rcpt_head = r;
                self->rcpt_tail = r;
            }
            break;
        }
        case LIAISON__FRAME__KIND_CREDIT:
            self->credit_frames += f->credit->frames;
            self->credit_bytes += f->credit->bytes;
            self->credited += f->credit->frames;
            s_inflight_done (self, self->credited);
            break;
        case LIAISON__FRAME__KIND_RESOLVED:
            if (f->resolved->request_id == self->resolve_seq && !self->answer) {
                self->answer = f->resolved;
                f->resolved = NULL;
                f->kind_case = LIAISON__FRAME__KIND__NOT_SET;
            }
            break;
        case LIAISON__FRAME__KIND_PING:
            if (f->ping->is_reply) {
                if (f->ping->nonce > self->ping_seen && f->ping->nonce <= self->ping_sent) {
                    self->ping_seen = f->ping->nonce;
                    uint64_t mark = self->ping_submits[f->ping->nonce % 8];
                    if (mark > self->barrier_mark)
                        self->barrier_mark = mark;
                    s_inflight_done (self, self->barrier_mark);
                }
            }
            else if (f->ping->want_reply) {
                Liaison__Ping pong = LIAISON__PING__INIT;
                pong.nonce = f->ping->nonce;
                pong.is_reply = 1;
                Liaison__Frame out = LIAISON__FRAME__INIT;
                out.kind_case = LIAISON__FRAME__KIND_PING;
                out.ping = &pong;
                s_send_frame (self, &out);
            }
            break;
        case LIAISON__FRAME__KIND_ERROR:
            if (f->error->code == LIAISON__ERROR_CODE__ERR_STORE) {
                // Not accepted, not refused: it stays in the outbox and
                // goes again in a while. The session goes on.
                for (inflight_t *fl = self->fl_head; fl; fl = fl->next)
                    if (f->error->ref_id.len == LIAISON_ID_LEN
                        && memcmp (fl->id, f->error->ref_id.data, LIAISON_ID_LEN) == 0)
                        fl->refused = true;
                snprintf (self->errmsg, sizeof self->errmsg,
                          "broker: %s (%s); the message stays in the outbox and is sent again",
                          f->error->detail, f->error->reason);
                self->outbox_due = true;
                self->outbox_retry_ms = wire_clock_ms () + 1000;
                break;
            }
            s_seterr (self, s_map_error (f->error->code), "broker: %s (%s)",
                      f->error->detail[0] ? f->error->detail : "error", f->error->reason);
            break;
        case LIAISON__FRAME__KIND_ANSWER:
            if (f->answer->request_id == self->query_seq && !self->qanswer) {
                self->qanswer = f->answer;
                f->answer = NULL;
                f->kind_case = LIAISON__FRAME__KIND__NOT_SET;
            }
            break;
        case LIAISON__FRAME__KIND_NOTICE:
            if (self->notice_n < NOTICES_MAX) {
                const Liaison__Notice *n = f->notice;
                liaison_notice_t *o =
                    &self->notices[(self->notice_head + self->notice_n++) % NOTICES_MAX];
                memset (o, 0, sizeof *o);
                o->kind = (liaison_notice_kind_t) n->kind;
                memcpy (o->id, n->id.data, LIAISON_ID_LEN);
                snprintf (o->sender, sizeof o->sender, "%s", n->sender);
                snprintf (o->recipient, sizeof o->recipient, "%s", n->recipient);
                o->deadline_ms = n->deadline_ms;
            }
            break;
        case LIAISON__FRAME__KIND_CLOSE:
            if (!self->error)
                s_seterr (self, LIAISON_ECLOSED, "broker closed the session: %s",
                          f->close->reason);
            break;
        default:
            break;
    }
    wire_codec_free (&f);
    return 0;
}

static void
s_on_close (void *arg, wire_conn_t *conn, bool opened, const char *reason)
{
    liaison_t *self = arg;
    // One connection per socket: before on_open its handle is not known yet.
    if (self->conn && wire_conn_handle (conn) != self->conn)
        return;
    // The first reason recorded (an Error frame, a timeout) stays.
    if (!self->error) {
        // In TLS 1.3 our handshake completes before the broker has checked
        // our certificate: its refusal arrives as an alert before Welcome.
        if (self->state != ST_READY && strstr (reason, "alert"))
            s_seterr (self, LIAISON_EAUTH,
                      "the broker refused this node's certificate (%s); check that it is "
                      "issued by your jurisdiction CA, valid and not revoked", reason);
        else if (self->state == ST_TLS || !opened)
            s_seterr (self, LIAISON_ETLS, "TLS handshake with %s failed: %s",
                      self->endpoint, reason);
        else
            s_seterr (self, LIAISON_ECLOSED, "connection to the broker closed: %s", reason);
    }
    self->conn = 0;
    self->state = ST_DOWN;
}

// Closes the socket of a connection attempt.
static void
s_drop_socket (liaison_t *self)
{
    wire_conns_destroy (&self->conns);
    // Stop the monitor while our end still reads it: libzmq's I/O thread
    // sends events with a blocking send under the monitor's lock, and with
    // no peer that send (and then this stop) would wait for ever.
    if (self->sock)
        zmq_socket_monitor (self->sock, NULL, 0);
    if (self->monitor) {
        zmq_close (self->monitor);
        self->monitor = NULL;
    }
    if (self->sock) {
        zmq_close (self->sock);
        self->sock = NULL;
    }
    self->conn = 0;
    self->state = ST_DOWN;
}

static void
s_lost (void *arg, wire_conn_t *conn)
{
    (void) arg;
    wire_conn_lost (conn, "the broker dropped the connection");
}

// A connecting STREAM socket with reconnection off never hears [id][""]
// when the peer drops the TCP connection; its monitor does. One
// connection per socket, so the event names ours.
static void
s_monitor_event (liaison_t *self)
{
    zmq_msg_t ev, addr;
    zmq_msg_init (&ev);
    zmq_msg_init (&addr);
    if (zmq_msg_recv (&ev, self->monitor, ZMQ_DONTWAIT) >= 0 && zmq_msg_more (&ev))
        zmq_msg_recv (&addr, self->monitor, 0);
    uint16_t event = zmq_msg_size (&ev) >= 2 ? *(uint16_t *) zmq_msg_data (&ev) : 0;
    bool gone = event & (ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED);
    zmq_msg_close (&ev);
    zmq_msg_close (&addr);
    if (event & ZMQ_EVENT_CLOSED && self->state == ST_TLS && !self->conn) {
        // Never connected (refused, unreachable): no need to wait out the
        // timeout.
        s_seterr (self, LIAISON_ECLOSED, "cannot connect to %s: connection refused or "
                  "unreachable; is the broker running there?", self->endpoint);
        self->state = ST_DOWN;
        return;
    }
    if (gone && self->conns) {
        wire_conns_foreach (self->conns, s_lost, NULL);
        wire_conns_flush (self->conns);  // reaps: on_close runs
    }
}

// One pass: wait up to timeout_ms for input, process it, flush output,
// keep the heartbeat.
static void
s_pass (liaison_t *self, int timeout_ms)
{
    if (!self->sock)
        return;
    s_settle (self);  // nothing staged goes on the wire before it is durable
    if ((self->nacks || self->nreads) && (timeout_ms < 0 || timeout_ms > ACK_DELAY_MS))
        timeout_ms = ACK_DELAY_MS;  // come back to send the Ack
    if (wire_conns_flush (self->conns) && (timeout_ms < 0 || timeout_ms > 5))
        timeout_ms = 5;  // the socket is full: come back soon to retry
    zmq_pollitem_t items[] = {{self->sock, 0, ZMQ_POLLIN, 0}, {self->monitor, 0, ZMQ_POLLIN, 0}};
    if (zmq_poll (items, self->monitor ? 2 : 1, timeout_ms) > 0) {
        if (items[0].revents & ZMQ_POLLIN)
            wire_conns_recv (self->conns, 1000);
        if (self->monitor && (items[1].revents & ZMQ_POLLIN))
            s_monitor_event (self);
    }
    s_settle (self);
    // The broker pings every heartbeat interval: three silent intervals
    // mean the connection is gone even if TCP has not noticed.
    wire_conn_t *c = self->state == ST_READY ? s_conn (self) : NULL;
    if (c && wire_clock_ms () - self->last_recv_ms > 3 * (int64_t) self->heartbeat_ms) {
        s_seterr (self, LIAISON_ETIMEOUT, "nothing from the broker for %u ms; reconnecting "
                  "on the next call", 3 * self->heartbeat_ms);
        wire_conn_close (c, "broker silent");
        self->conn = 0;  // the session is lost now; the socket drains behind it
        self->state = ST_DOWN;
        return;
    }
    if (self->state == ST_READY && self->heartbeat_ms
        && wire_clock_ms () - self->last_send_ms > self->heartbeat_ms / 2) {
        Liaison__Ping ping = LIAISON__PING__INIT;
        Liaison__Frame f = LIAISON__FRAME__INIT;
        f.kind_case = LIAISON__FRAME__KIND_PING;
        f.ping = &ping;
        s_send_frame (self, &f);
    }
    wire_conns_flush (self->conns);
}

// Opens a fresh socket and TLS session and runs Hello/Welcome.
static int
s_establish (liaison_t *self)
{
    s_drop_socket (self);
    self->error = 0;
    self->errmsg[0] = 0;
    // What the previous connection had in flight has an unknown fate; its
    // refused messages are still sent again.
    s_inflight_done (self, UINT64_MAX);
    self->submit_seq = self->credited = self->barrier_mark = 0;
    self->nacks = self->acks_credited = 0;  // their deliveries come again on the new connection
    self->consumed = 0;
    self->sock = zmq_socket (self->zctx, ZMQ_STREAM);
    if (!self->sock) {
        s_seterr (self, LIAISON_EEXHAUSTED, "cannot create a socket: %s", zmq_strerror (errno));
        return self->error;
    }
    // Hand-made reconnects only, with a routing id never used before on
    // this socket: libzmq's own reconnect would replay old TLS bytes.
    int off = -1, zero = 0, maxrt = 30000, hwm = 64;
    char rid[32];
    int rid_len = snprintf (rid, sizeof rid, "lsn-%u", ++self->connect_seq);
    zmq_setsockopt (self->sock, ZMQ_RECONNECT_IVL, &off, sizeof off);
    zmq_setsockopt (self->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (self->sock, ZMQ_TCP_MAXRT, &maxrt, sizeof maxrt);
    zmq_setsockopt (self->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self->sock, ZMQ_CONNECT_ROUTING_ID, rid, (size_t) rid_len);
    // Until Welcome says otherwise, frames up to the protocol's ceiling.
    wire_conns_limits_t limits = {WIRE_FRAME_CEILING, 256u * 1024 * 1024, 1, 0, 0};
    wire_conns_handler_t handler = {s_on_open, s_on_frame, NULL, s_on_close};
    self->conns = wire_conns_new (self->sock, self->tls, &limits, &handler, self);
    char mon[64];
    snprintf (mon, sizeof mon, "inproc://liaison-monitor-%p-%u", (void *) self, self->connect_seq);
    if (zmq_socket_monitor (self->sock, mon, ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED) == 0) {
        self->monitor = zmq_socket (self->zctx, ZMQ_PAIR);
        int zero = 0;
        if (self->monitor)
            zmq_setsockopt (self->monitor, ZMQ_LINGER, &zero, sizeof zero);
        if (self->monitor && zmq_connect (self->monitor, mon) != 0) {
            zmq_close (self->monitor);
            self->monitor = NULL;
        }
    }
    if (!self->conns || zmq_connect (self->sock, self->endpoint) != 0) {
        s_seterr (self, LIAISON_ECONFIG, "cannot connect to %s: %s", self->endpoint,
                  zmq_strerror (errno));
        s_drop_socket (self);
        return self->error;
    }
    self->state = ST_TLS;
    int64_t deadline = wire_clock_ms () + self->opts.timeout_ms;
    while (self->state != ST_READY) {
        int64_t left = deadline - wire_clock_ms ();
        if (self->error && self->state == ST_DOWN)
            break;
        if (left <= 0) {
            s_seterr (self, LIAISON_ETIMEOUT,
                      "no Welcome from %s within %d ms: is the broker running there?",
                      self->endpoint, self->opts.timeout_ms);
            break;
        }
        s_pass (self, (int) (left < 50 ? left : 50));
        if (self->state == ST_DOWN && !self->error)
            s_seterr (self, LIAISON_ECLOSED, "broker closed the connection");
    }
    if (self->state != ST_READY) {
        int rc = self->error ? self->error : LIAISON_ECLOSED;
        s_drop_socket (self);
        self->error = rc;
        return rc;
    }
    int owner = state_identity (self->st, self->node_id);
    if (owner != 0) {
        s_seterr (self, owner > 0 ? LIAISON_ECONFIG : LIAISON_EIO, "%s", state_error (self->st));
        int rc = self->error;
        s_drop_socket (self);
        self->error = rc;
        return rc;
    }
    self->error = 0;
    self->outbox_due = true;  // what the broker has not accepted goes again
    self->outbox_retry_ms = 0;
    return LIAISON_OK;
}

static char *
s_dup (const char *s)
{
    return s ? strdup (s) : NULL;
}

// The host part of tcp://host:port, for the default server name.
static char *
s_endpoint_host (const char *endpoint)
{
    const char *p = strstr (endpoint, "://");
    p = p ? p + 3 : endpoint;
    const char *colon = strrchr (p, ':');
    size_t n = colon ? (size_t) (colon - p) : strlen (p);
    if (n > 1 && p[0] == '[' && p[n - 1] == ']') {
        p++;
        n -= 2;
    }
    return strndup (p, n);
}

static void
s_free (liaison_t *self)
{
    s_drop_socket (self);
    while (self->inbox_head) {
        liaison_message_t *m = self->inbox_head;
        self->inbox_head = m->next;
        liaison_message_destroy (&m);
    }
    while (self->rcpt_head) {
        liaison_receipt_t *r = self->rcpt_head;
        self->rcpt_head = r->next;
        liaison_receipt_destroy (&r);
    }
    s_cache_clear (self);
    s_inflight_done (self, UINT64_MAX);
    while (self->resend_head) {
        inflight_t *fl = self->resend_head;
        self->resend_head = fl->next;
        s_inflight_free (fl);
    }
    if (self->answer)
        liaison__resolved__free_unpacked (self->answer, NULL);
    if (self->qanswer)
        liaison__answer__free_unpacked (self->qanswer, NULL);
    while (self->page_head) {
        liaison_message_t *m = self->page_head;
        self->page_head = m->next;
        liaison_message_destroy (&m);
    }
    state_close (&self->st);
    EVP_PKEY_free (self->skey);
    free (self->acks);
    free (self->reads);
    free (self->state_dir);
    free (self->scratch);
    free (self->scratch_ptrs);
    wire_tls_ctx_destroy (&self->tls);
    if (self->zctx)
        zmq_ctx_term (self->zctx);
    free (self->endpoint);
    free (self->cert);
    free (self->key);
    free (self->ca);
    free (self->hub_ca);
    free (self->server_name);
    free (self->crl_dir);
    free (self);
}

int
liaison_connect (const liaison_options_t *opts, liaison_t **out)
{
    s_connect_err[0] = 0;
    if (!out) {
        snprintf (s_connect_err, sizeof s_connect_err, "liaison_connect needs an out pointer");
        return LIAISON_EINVAL;
    }
    *out = NULL;
    if (!opts || !opts->endpoint || !opts->cert || !opts->key || !opts->ca || !opts->hub_ca
        || !opts->state_dir) {
        snprintf (s_connect_err, sizeof s_connect_err,
                  "options need endpoint, cert, key, ca, hub_ca and state_dir");
        return LIAISON_ECONFIG;
    }
    liaison_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (s_connect_err, sizeof s_connect_err, "out of memory");
        return LIAISON_EEXHAUSTED;
    }
    self->opts = *opts;
    if (self->opts.timeout_ms <= 0)
        self->opts.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (self->opts.window == 0 || self->opts.window > 65536)
        self->opts.window = DEFAULT_WINDOW;
    self->endpoint = s_dup (opts->endpoint);
    self->cert = s_dup (opts->cert);
    self->key = s_dup (opts->key);
    self->ca = s_dup (opts->ca);
    self->hub_ca = s_dup (opts->hub_ca);
    self->crl_dir = s_dup (opts->crl_dir);
    self->server_name = opts->server_name ? s_dup (opts->server_name)
                                          : s_endpoint_host (opts->endpoint);
    self->state_dir = s_dup (opts->state_dir);
    self->opts.state_dir = self->state_dir;
    char err[512];
    self->st = state_open (self->state_dir, err, sizeof err);
    if (!self->st) {
        snprintf (s_connect_err, sizeof s_connect_err, "%s", err);
        s_free (self);
        return LIAISON_EIO;
    }
    FILE *kf = fopen (self->key, "r");
    self->skey = kf ? PEM_read_PrivateKey (kf, NULL, NULL, NULL) : NULL;
    if (kf)
        fclose (kf);
    if (!self->skey) {
        snprintf (s_connect_err, sizeof s_connect_err,
                  "cannot read the private key %s (PEM, unencrypted): it signs receipts",
                  self->key);
        s_free (self);
        return LIAISON_ETLS;
    }
    wire_tls_config_t cfg = {self->cert, self->key, self->ca, self->crl_dir, self->hub_ca,
                             self->server_name};
    self->tls = wire_tls_ctx_new_client (&cfg, err, sizeof err);
    if (!self->tls) {
        snprintf (s_connect_err, sizeof s_connect_err, "%s", err);
        s_free (self);
        return LIAISON_ETLS;
    }
    self->zctx = zmq_ctx_new ();
    if (!self->zctx) {
        snprintf (s_connect_err, sizeof s_connect_err, "cannot create a ZeroMQ context");
        s_free (self);
        return LIAISON_EEXHAUSTED;
    }
    int rc = s_establish (self);
    if (rc != LIAISON_OK) {
        snprintf (s_connect_err, sizeof s_connect_err, "%s", self->errmsg);
        s_free (self);
        return rc;
    }
    *out = self;
    return LIAISON_OK;
}

// Reconnects when the session dropped; LIAISON_OK when ready.
static int
s_ready (liaison_t *self)
{
    if (self->state == ST_READY && s_conn (self))
        return LIAISON_OK;
    return s_establish (self);
}

void
liaison_close (liaison_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    liaison_t *self = *self_p;
    *self_p = NULL;
    // What was staged (sends and acknowledgements with LIAISON_MORE) is
    // made durable, and deliveries stored here are acknowledged.
    self->urgent = true;
    self->ack_now = true;
    s_settle (self);
    wire_conn_t *c = s_conn (self);
    if (c && self->state == ST_READY) {
        Liaison__Close bye = LIAISON__CLOSE__INIT;
        bye.reason = "client closing";
        Liaison__Frame f = LIAISON__FRAME__INIT;
        f.kind_case = LIAISON__FRAME__KIND_CLOSE;
        f.close = &bye;
        s_send_frame (self, &f);
        wire_conn_close (c, "client closing");
        // Give the close a moment to reach the socket before it is closed.
        for (int i = 0; i < 20 && wire_conns_flush (self->conns); i++)
            zmq_poll (NULL, 0, 5);
        int linger = 200;
        zmq_setsockopt (self->sock, ZMQ_LINGER, &linger, sizeof linger);
    }
    s_free (self);
}

// FNV-1a over the fields a routing decision depends on: the addresses,
// type, priority, TLP, handling, evaluation, legal basis and reply-ness.
static uint64_t
s_routing_key (const Liaison__Envelope *e)
{
    uint64_t h = 1469598103934665603ULL;
#define MIX(v) (h = (h ^ (uint64_t) (v)) * 1099511628211ULL)
    for (size_t i = 0; i < e->n_recipients; i++) {
        MIX (e->recipients[i]->kind);
        for (const char *p = e->recipients[i]->name; *p; p++)
            MIX ((unsigned char) *p);
        MIX (0x100);
    }
    MIX (e->type);
    MIX (e->priority);
    MIX (e->tlp);
    MIX (e->handling);
    MIX (e->evaluation && e->evaluation->source[0] ? e->evaluation->source[0] : 0);
    MIX (e->evaluation ? e->evaluation->information : 0);
    for (const char *p = e->legal_basis; *p; p++)
        MIX ((unsigned char) *p);
    MIX (e->in_reply_to.len > 0);
#undef MIX
    return h ? h : 1;
}

// Runs passes until came (self) is true, the session timeout passes or the
// session fails: the wait for an answer to a request.
static int
s_await (liaison_t *self, bool (*came) (const liaison_t *), const char *what)
{
    int64_t deadline = wire_clock_ms () + self->opts.timeout_ms;
    while (!came (self)) {
        int64_t left = deadline - wire_clock_ms ();
        if (left <= 0) {
            s_seterr (self, LIAISON_ETIMEOUT, "no answer to %s within %d ms", what,
                      self->opts.timeout_ms);
            return LIAISON_ETIMEOUT;
        }
        s_pass (self, (int) (left > 100 ? 100 : left));
        if (self->state != ST_READY)
            return self->error ? self->error : LIAISON_ECLOSED;
    }
    return LIAISON_OK;
}

static bool
s_resolved_came (const liaison_t *self)
{
    return self->answer != NULL;
}

static bool
s_answer_came (const liaison_t *self)
{
    return self->qanswer != NULL;
}

// Asks the broker what e's addresses stand for under its current rules.
// The answer is owned by the caller.
static int
s_resolve_now (liaison_t *self, const Liaison__Envelope *e, Liaison__Resolved **out)
{
    *out = NULL;
    // The addresses and routing fields only: never the body.
    Liaison__Envelope head = *e;
    head.body.data = NULL;
    head.body.len = 0;
    head.body_size = 0;
    Liaison__Resolve req = LIAISON__RESOLVE__INIT;
    req.request_id = ++self->resolve_seq;
    req.envelope = &head;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_RESOLVE;
    f.resolve = &req;
    if (self->answer) {
        liaison__resolved__free_unpacked (self->answer, NULL);
        self->answer = NULL;
    }
    if (s_send_frame (self, &f))
        return self->error;
    int rc = s_await (self, s_resolved_came, "Resolve");
    if (rc != LIAISON_OK)
        return rc;
    *out = self->answer;
    self->answer = NULL;
    return LIAISON_OK;
}

// The resolution for e: remembered, or asked for. Borrowed from the cache.
static int
s_resolution (liaison_t *self, const Liaison__Envelope *e, const Liaison__Resolved **out)
{
    uint64_t key = s_routing_key (e);
    cached_t *slot = &self->cache[key % CACHE_SLOTS];
    if (slot->key == key && slot->res) {
        *out = slot->res;
        return LIAISON_OK;
    }
    Liaison__Resolved *res;
    int rc = s_resolve_now (self, e, &res);
    if (rc != LIAISON_OK)
        return rc;
    if (slot->res)
        liaison__resolved__free_unpacked (slot->res, NULL);
    slot->key = key;
    slot->res = res;
    *out = res;
    return LIAISON_OK;
}

// A REJECTED receipt made here, for an address the rules refused.
static void
s_local_refusal (liaison_t *self, const Liaison__Envelope *e, const Liaison__Resolution *x,
                 const char *hash)
{
    Liaison__Receipt *r = malloc (sizeof *r);
    if (!r)
        return;
    liaison__receipt__init (r);
    r->id.data = malloc (LIAISON_ID_LEN);
    r->recipient = strdup (x->node[0] ? x->node : x->address);
    r->reason = strdup (strcmp (x->reason, "rule") == 0 || strcmp (x->reason, "default") == 0
                            ? "denied" : x->reason);
    r->rule = strdup (x->rule);
    r->rules_hash = strdup (hash);
    if (!r->id.data || !r->recipient || !r->reason || !r->rule || !r->rules_hash) {
        liaison__receipt__free_unpacked (r, NULL);
        return;
    }
    memcpy (r->id.data, e->id.data, LIAISON_ID_LEN);
    r->id.len = LIAISON_ID_LEN;
    r->status = LIAISON__RECEIPT_STATUS__REJECTED;
    r->time_ms = wire_time_ms ();
    s_queue_receipt (self, receipt_wrap (r));
}

// Resolves e, reports refused addresses as receipts, and queues a Submit
// to exactly the allowed nodes (required copies included). The envelope is
// not changed: the Submit borrows its fields and a recipient list of its
// own.
static int
s_submit (liaison_t *self, Liaison__Envelope *e, int attempt, int flags)
{
    const Liaison__Resolved *res;
    int rc = s_resolution (self, e, &res);
    if (rc != LIAISON_OK)
        return rc;
    if (self->scratch_cap < res->n_entries) {
        size_t cap = res->n_entries + 16;
        Liaison__Recipient *sc = realloc (self->scratch, cap * sizeof *sc);
        if (sc)
            self->scratch = sc;
        Liaison__Recipient **sp = realloc (self->scratch_ptrs, cap * sizeof *sp);
        if (sp)
            self->scratch_ptrs = sp;
        if (!sc || !sp)
            return LIAISON_EEXHAUSTED;
        self->scratch_cap = cap;
    }
    size_t n = 0;
    const char *first_refusal = NULL;
    for (size_t i = 0; i < res->n_entries; i++) {
        const Liaison__Resolution *x = res->entries[i];
        if (!x->allowed) {
            s_local_refusal (self, e, x, res->rules_hash);
            if (!first_refusal)
                first_refusal = x->reason;
            continue;
        }
        Liaison__Recipient *r = &self->scratch[n];
        liaison__recipient__init (r);
        r->kind = LIAISON__RECIPIENT_KIND__NODE;
        r->name = x->node;
        self->scratch_ptrs[n++] = r;
    }
    if (n == 0) {
        s_seterr (self, LIAISON_EDENIED, "no recipient may receive this message under the "
                  "broker's rules (%s); see the receipts", first_refusal ? first_refusal : "none");
        return LIAISON_EDENIED;
    }
    Liaison__Envelope out = *e;
    out.n_recipients = n;
    out.recipients = self->scratch_ptrs;
    Liaison__Submit submit = LIAISON__SUBMIT__INIT;
    submit.envelope = &out;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_SUBMIT;
    f.submit = &submit;
    size_t size = liaison__frame__get_packed_size (&f);
    if (size > self->max_frame) {
        s_seterr (self, LIAISON_EEXHAUSTED, "message of %zu bytes exceeds the broker's "
                  "maximum frame of %u bytes", size, self->max_frame);
        return LIAISON_EEXHAUSTED;
    }
    int64_t deadline = wire_clock_ms () + self->opts.timeout_ms;
    while (self->credit_frames == 0 || self->credit_bytes < size) {
        if (wire_clock_ms () >= deadline) {
            s_seterr (self, LIAISON_ETIMEOUT, "no sending credit from the broker within %d ms",
                      self->opts.timeout_ms);
            return LIAISON_ETIMEOUT;
        }
        s_pass (self, 10);
        if (self->state != ST_READY)
            return self->error ? self->error : LIAISON_ECLOSED;
    }
    // Keep the message as the application addressed it until the broker has
    // processed it, in case it must be resolved and sent again.
    inflight_t *fl = calloc (1, sizeof *fl);
    size_t env_len = liaison__envelope__get_packed_size (e);
    if (fl)
        fl->env = malloc (env_len ? env_len : 1);
    if (!fl || !fl->env) {
        free (fl);
        return LIAISON_EEXHAUSTED;
    }
    fl->env_len = liaison__envelope__pack (e, fl->env);
    memcpy (fl->id, e->id.data, LIAISON_ID_LEN);
    // Into the outbox, as the application addressed it, until ACCEPTED;
    // durable before the Submit can reach the wire (s_pass commits first).
    self->urgent = true;
    if (state_outbox_put (self->st, fl->id, fl->env, fl->env_len, wire_time_ms ())
        || (!(flags & LIAISON_MORE) && state_commit (self->st))) {
        s_inflight_free (fl);
        s_seterr (self, LIAISON_EIO, "message not sent: state directory %s: %s",
                  self->opts.state_dir, state_error (self->st));
        return LIAISON_EIO;
    }
    fl->attempt = attempt;
    fl->seq = self->submit_seq + 1;
    if (s_send_frame (self, &f)) {
        s_inflight_free (fl);
        return self->error;
    }
    if (self->fl_tail)
        self->fl_tail->next = fl;
    else
        self->fl_head = fl;
    self->fl_tail = fl;
    self->submit_seq++;
    self->credit_frames--;
    self->credit_bytes -= size;
    if (!(flags & LIAISON_MORE))
        s_pass (self, 0);
    return LIAISON_OK;
}

// Sends again, under fresh resolutions, the messages the broker refused as
// out of date. Runs outside frame callbacks (a resolution is a round trip).
static void
s_resend (liaison_t *self)
{
    while (self->resend_head && self->state == ST_READY) {
        inflight_t *fl = self->resend_head;
        self->resend_head = fl->next;
        Liaison__Envelope *e = liaison__envelope__unpack (NULL, fl->env_len, fl->env);
        if (e) {
            if (s_submit (self, e, 2, LIAISON_MORE) != LIAISON_OK) {
                // Tell the application: its message did not go out.
                Liaison__Resolution x = LIAISON__RESOLUTION__INIT;
                x.address = "*";
                x.reason = "recipients-changed";
                x.rule = "";
                s_local_refusal (self, e, &x, "");
            }
            liaison__envelope__free_unpacked (e, NULL);
        }
        s_inflight_free (fl);
    }
}

typedef struct {
    uint8_t *env[PAGE];
    size_t len[PAGE];
    uint8_t id[PAGE][LIAISON_ID_LEN];
    size_t n;
} outbox_page_t;

static int
s_outbox_collect (void *arg, uint64_t pos, const uint8_t id[16], const uint8_t *envelope,
                  size_t len)
{
    outbox_page_t *p = arg;
    (void) pos;
    p->env[p->n] = malloc (len ? len : 1);
    if (!p->env[p->n])
        return 1;
    memcpy (p->env[p->n], envelope, len);
    p->len[p->n] = len;
    memcpy (p->id[p->n], id, LIAISON_ID_LEN);
    p->n++;
    return 0;
}

// Sends the outbox again (after a new connection, or a store refusal):
// the broker answers what it has already with the original receipts.
static void
s_outbox_resend (liaison_t *self)
{
    if (!self->outbox_due || self->state != ST_READY
        || (self->outbox_retry_ms && wire_clock_ms () < self->outbox_retry_ms))
        return;
    self->outbox_due = false;
    self->outbox_retry_ms = 0;
    uint64_t after = 0;
    for (;;) {
        outbox_page_t page;
        page.n = 0;
        uint64_t before = after;
        int got = state_outbox_page (self->st, &after, PAGE, s_outbox_collect, &page);
        // A damaged entry (-1, the cursor past it) must not hold back the
        // rest; a failure that does not move the cursor ends the round.
        bool more = got == PAGE || (got < 0 && after != before);
        for (size_t i = 0; i < page.n; i++) {
            bool flying = false;
            for (inflight_t *fl = self->fl_head; fl && !flying; fl = fl->next)
                flying = !fl->refused && memcmp (fl->id, page.id[i], LIAISON_ID_LEN) == 0;
            Liaison__Envelope *e =
                flying ? NULL : liaison__envelope__unpack (NULL, page.len[i], page.env[i]);
            if (e) {
                s_submit (self, e, 1, LIAISON_MORE);
                liaison__envelope__free_unpacked (e, NULL);
            }
            free (page.env[i]);
        }
        if (!more || self->state != ST_READY)
            break;
    }
}

int
liaison_resolve (liaison_t *self, const liaison_message_t *msg, liaison_resolution_t **out)
{
    if (!self || !msg || !out)
        return LIAISON_EINVAL;
    *out = NULL;
    wire_codec_error_t err;
    // The id is not part of a resolution; a placeholder keeps the check happy.
    Liaison__Envelope e = *msg->env;
    uint8_t zero[LIAISON_ID_LEN] = {0};
    if (e.id.len == 0) {
        e.id.data = zero;
        e.id.len = LIAISON_ID_LEN;
    }
    e.body.len = 0;
    e.body.data = NULL;
    e.body_size = 0;
    if (wire_codec_check_envelope (&e, 0, &err)) {
        s_seterr (self, LIAISON_EINVAL, "cannot resolve: %s", err.detail);
        return LIAISON_EINVAL;
    }
    int rc = s_ready (self);
    if (rc != LIAISON_OK)
        return rc;
    liaison_resolution_t *res = calloc (1, sizeof *res);
    if (!res)
        return LIAISON_EEXHAUSTED;
    rc = s_resolve_now (self, &e, &res->r);
    if (rc != LIAISON_OK) {
        free (res);
        return rc;
    }
    *out = res;
    return LIAISON_OK;
}

int
liaison_send (liaison_t *self, liaison_message_t *msg, int flags)
{
    if (!self || !msg)
        return LIAISON_EINVAL;
    Liaison__Envelope *e = msg->env;
    if (e->id.len == 0) {
        /* 48 bits of milliseconds, then 80 random bits: unguessable, and
           in time order, so the broker's (sender, id) index and this
           node's inbox index grow at their ends instead of touching a
           random page per message (each dirty page is written to the WAL
           at every commit). */
        uint8_t id[LIAISON_ID_LEN];
        if (RAND_bytes (id + 6, sizeof id - 6) != 1)
            return LIAISON_EEXHAUSTED;
        uint64_t ms = (uint64_t) wire_time_ms ();
        for (int i = 5; i >= 0; i--, ms >>= 8)
            id[i] = (uint8_t) ms;
        e->id.data = malloc (LIAISON_ID_LEN);
        if (!e->id.data)
            return LIAISON_EEXHAUSTED;
        memcpy (e->id.data, id, LIAISON_ID_LEN);
        e->id.len = LIAISON_ID_LEN;
    }
    if (e->created_ms == 0)
        e->created_ms = wire_time_ms ();
    wire_codec_error_t err;
    if (wire_codec_check_envelope (e, 0, &err)) {
        s_seterr (self, LIAISON_EINVAL, "message not sent: %s", err.detail);
        return LIAISON_EINVAL;
    }
    int rc = s_ready (self);
    if (rc != LIAISON_OK)
        return rc;
    s_resend (self);
    s_outbox_resend (self);
    return s_submit (self, e, 1, flags);
}

int
liaison_pump (liaison_t *self, int timeout_ms)
{
    if (!self)
        return LIAISON_EINVAL;
    int rc = s_ready (self);
    if (rc != LIAISON_OK)
        return rc;
    s_resend (self);
    s_outbox_resend (self);
    s_pass (self, timeout_ms);
    return self->state == ST_READY ? LIAISON_OK : (self->error ? self->error : LIAISON_ECLOSED);
}

int
liaison_flush (liaison_t *self, int timeout_ms)
{
    if (!self)
        return LIAISON_EINVAL;
    if (self->state != ST_READY)
        return self->error ? self->error : LIAISON_ECLOSED;
    int64_t deadline = wire_clock_ms () + (timeout_ms < 0 ? INT32_MAX : timeout_ms);
    // A second round if the first turned up messages to send again.
    self->urgent = true;  // a barrier: everything staged becomes durable
    self->ack_now = true;
    s_settle (self);
    for (int round = 0; round < 2; round++) {
        s_resend (self);
        s_outbox_resend (self);
        Liaison__Ping ping = LIAISON__PING__INIT;
        ping.nonce = ++self->ping_sent;
        ping.want_reply = 1;
        self->ping_submits[ping.nonce % 8] = self->submit_seq;
        Liaison__Frame f = LIAISON__FRAME__INIT;
        f.kind_case = LIAISON__FRAME__KIND_PING;
        f.ping = &ping;
        if (s_send_frame (self, &f))
            return self->error;
        while (self->ping_seen < ping.nonce) {
            int64_t left = deadline - wire_clock_ms ();
            if (left <= 0)
                return LIAISON_ETIMEOUT;
            s_pass (self, (int) (left > 100 ? 100 : left));
            if (self->state != ST_READY)
                return self->error ? self->error : LIAISON_ECLOSED;
        }
        if (!self->resend_head)
            break;
    }
    return LIAISON_OK;
}

static int
s_inbox_collect (void *arg, uint64_t pos, const char *sender, const uint8_t id[16],
                 const uint8_t *envelope, size_t len)
{
    liaison_t *self = arg;
    (void) pos;
    (void) sender;
    (void) id;
    Liaison__Envelope *e = liaison__envelope__unpack (NULL, len, envelope);
    liaison_message_t *m = e ? message_wrap (e) : NULL;
    if (!m)
        return 0;  // skipped: an envelope that no longer unpacks stays unacknowledged
    if (self->page_tail)
        self->page_tail->next = m;
    else
        self->page_head = m;
    self->page_tail = m;
    return 0;
}

// Reads the next page of unacknowledged messages from the inbox (only
// committed ones: every pass commits what it staged).
static void
s_inbox_fill (liaison_t *self)
{
    if (self->page_head || !self->st)
        return;
    if (state_inbox_page (self->st, &self->inbox_after, PAGE, s_inbox_collect, self) < 0)
        snprintf (self->errmsg, sizeof self->errmsg, "state directory %s: %s (skipped)",
                  self->opts.state_dir, state_error (self->st));
}

// Waits until the inbox (or the receipt queue) has something, the timeout
// passes or the session fails.
static int
s_wait (liaison_t *self, int timeout_ms, bool receipts)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : wire_clock_ms () + timeout_ms;
    for (;;) {
        if (!receipts)
            s_inbox_fill (self);
        if (receipts ? self->rcpt_head != NULL : self->page_head != NULL)
            return LIAISON_OK;
        int rc = s_ready (self);
        if (rc != LIAISON_OK)
            return rc;
        s_outbox_resend (self);
        int64_t left = deadline - wire_clock_ms ();
        if (left < 0)
            return LIAISON_ETIMEOUT;
        s_pass (self, (int) (left > 100 ? 100 : left));
        if (!receipts)
            s_inbox_fill (self);
        if (receipts ? self->rcpt_head != NULL : self->page_head != NULL)
            return LIAISON_OK;
        if (left == 0)
            return LIAISON_ETIMEOUT;
    }
}

int
liaison_recv (liaison_t *self, liaison_message_t **msg, int timeout_ms)
{
    if (!self || !msg)
        return LIAISON_EINVAL;
    *msg = NULL;
    int rc = s_wait (self, timeout_ms, false);
    if (rc != LIAISON_OK)
        return rc;
    liaison_message_t *m = self->page_head;
    self->page_head = m->next;
    if (!self->page_head)
        self->page_tail = NULL;
    m->next = NULL;
    // The last one read in: the Ack goes now, before the application may
    // go quiet (a busy receiver acknowledges a page at a time).
    if (!self->page_head && self->nacks && self->state == ST_READY) {
        self->ack_now = true;
        s_settle (self);
        wire_conns_flush (self->conns);
    }
    *msg = m;
    return LIAISON_OK;
}

int
liaison_ack (liaison_t *self, const liaison_message_t *msg, int flags)
{
    if (!self || !msg || msg->env->id.len != LIAISON_ID_LEN)
        return LIAISON_EINVAL;
    int rc = state_inbox_ack (self->st, msg->env->sender, msg->env->id.data, wire_time_ms ());
    if (rc == 1)
        return LIAISON_ENOTFOUND;
    if (rc < 0 || (!(flags & LIAISON_MORE) && state_commit (self->st))) {
        s_seterr (self, LIAISON_EIO, "acknowledgement not recorded: state directory %s: %s",
                  self->opts.state_dir, state_error (self->st));
        return LIAISON_EIO;
    }
    return LIAISON_OK;
}

int
liaison_read (liaison_t *self, const liaison_message_t *msg)
{
    if (!self || !msg || msg->env->id.len != LIAISON_ID_LEN)
        return LIAISON_EINVAL;
    int rc = state_inbox_read (self->st, msg->env->sender, msg->env->id.data, wire_time_ms ());
    if (rc == 1)
        return LIAISON_ENOTFOUND;
    if (rc < 0 || state_commit (self->st)) {
        s_seterr (self, LIAISON_EIO, "read not recorded: state directory %s: %s",
                  self->opts.state_dir, state_error (self->st));
        return LIAISON_EIO;
    }
    // Told to the broker in batches, like deliveries: within ACK_DELAY_MS
    // while the application calls the library.
    if (self->nreads == self->reads_cap) {
        size_t cap = self->reads_cap ? 2 * self->reads_cap : 64;
        ackitem_t *more = realloc (self->reads, cap * sizeof *more);
        if (!more)
            return LIAISON_EEXHAUSTED;
        self->reads = more;
        self->reads_cap = cap;
    }
    if (self->nreads == 0)
        self->reads_since_ms = wire_clock_ms ();
    ackitem_t *item = &self->reads[self->nreads++];
    memcpy (item->id, msg->env->id.data, LIAISON_ID_LEN);
    snprintf (item->sender, sizeof item->sender, "%s", msg->env->sender);
    if (s_ready (self) == LIAISON_OK) {
        s_send_reads (self, false);
        s_pass (self, 0);
    }
    return LIAISON_OK;
}

int
liaison_sync (liaison_t *self)
{
    if (!self)
        return LIAISON_EINVAL;
    if (state_commit (self->st)) {
        s_seterr (self, LIAISON_EIO, "state directory %s: %s", self->opts.state_dir,
                  state_error (self->st));
        return LIAISON_EIO;
    }
    return LIAISON_OK;
}

int64_t
liaison_outbox_count (liaison_t *self)
{
    return self ? state_outbox_count (self->st) : -1;
}

int64_t
liaison_inbox_count (liaison_t *self)
{
    return self ? state_inbox_unacked (self->st) : -1;
}

// Sends a Query and waits for its Answer (owned by the caller).
static int
s_query (liaison_t *self, Liaison__Query *q, Liaison__Answer **out)
{
    *out = NULL;
    int rc = s_ready (self);
    if (rc != LIAISON_OK)
        return rc;
    q->request_id = ++self->query_seq;
    if (self->qanswer) {
        liaison__answer__free_unpacked (self->qanswer, NULL);
        self->qanswer = NULL;
    }
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_QUERY;
    f.query = q;
    if (s_send_frame (self, &f))
        return self->error;
    rc = s_await (self, s_answer_came, "a query");
    if (rc != LIAISON_OK)
        return rc;
    *out = self->qanswer;
    self->qanswer = NULL;
    return LIAISON_OK;
}

int
liaison_trail (liaison_t *self, const uint8_t id[LIAISON_ID_LEN], liaison_trail_t **out)
{
    if (!self || !id || !out)
        return LIAISON_EINVAL;
    *out = NULL;
    Liaison__Query q = LIAISON__QUERY__INIT;
    q.kind = LIAISON__QUERY_KIND__QUERY_TRAIL;
    q.id.data = (uint8_t *) id;
    q.id.len = LIAISON_ID_LEN;
    Liaison__Answer *a;
    int rc = s_query (self, &q, &a);
    if (rc != LIAISON_OK)
        return rc;
    if (!a->found) {
        liaison__answer__free_unpacked (a, NULL);
        s_seterr (self, LIAISON_ENOTFOUND, "the broker holds no message with that id from this "
                  "node (never accepted, or purged after its retention period)");
        return LIAISON_ENOTFOUND;
    }
    liaison_trail_t *t = calloc (1, sizeof *t);
    if (t)
        t->items = calloc (a->n_receipts ? a->n_receipts : 1, sizeof *t->items);
    if (!t || !t->items) {
        free (t);
        liaison__answer__free_unpacked (a, NULL);
        return LIAISON_EEXHAUSTED;
    }
    for (size_t i = 0; i < a->n_receipts; i++) {
        liaison_receipt_t *r = receipt_wrap (a->receipts[i]);
        a->receipts[i] = NULL;  // taken (receipt_wrap frees it when it fails)
        if (r)
            t->items[t->n++] = r;
    }
    liaison__answer__free_unpacked (a, NULL);
    *out = t;
    return LIAISON_OK;
}

size_t
liaison_trail_count (const liaison_trail_t *t)
{
    return t ? t->n : 0;
}

const liaison_receipt_t *
liaison_trail_get (const liaison_trail_t *t, size_t i)
{
    return t && i < t->n ? t->items[i] : NULL;
}

void
liaison_trail_destroy (liaison_trail_t **t_p)
{
    if (!t_p || !*t_p)
        return;
    liaison_trail_t *t = *t_p;
    for (size_t i = 0; i < t->n; i++)
        liaison_receipt_destroy (&t->items[i]);
    free (t->items);
    free (t);
    *t_p = NULL;
}

int
liaison_deadlines (liaison_t *self, liaison_deadline_t *out, size_t max, size_t *n)
{
    if (!self || (!out && max) || !n)
        return LIAISON_EINVAL;
    *n = 0;
    Liaison__Query q = LIAISON__QUERY__INIT;
    q.kind = LIAISON__QUERY_KIND__QUERY_DEADLINES;
    q.limit = max > 1000 ? 1000 : (uint32_t) max;
    if (q.limit == 0)
        return LIAISON_OK;
    Liaison__Answer *a;
    int rc = s_query (self, &q, &a);
    if (rc != LIAISON_OK)
        return rc;
    for (size_t i = 0; i < a->n_deadlines && *n < max; i++) {
        const Liaison__DeadlineEntry *d = a->deadlines[i];
        liaison_deadline_t *o = &out[(*n)++];
        memset (o, 0, sizeof *o);
        memcpy (o->id, d->id.data, LIAISON_ID_LEN);
        snprintf (o->sender, sizeof o->sender, "%s", d->sender);
        snprintf (o->recipient, sizeof o->recipient, "%s", d->recipient);
        o->deadline_ms = d->deadline_ms;
        o->state = (int) d->state;
    }
    liaison__answer__free_unpacked (a, NULL);
    return LIAISON_OK;
}

int
liaison_mailbox (liaison_t *self, uint64_t *after, liaison_mailbox_entry_t *out, size_t max,
                 size_t *n)
{
    if (!self || !after || (!out && max) || !n)
        return LIAISON_EINVAL;
    *n = 0;
    Liaison__Query q = LIAISON__QUERY__INIT;
    q.kind = LIAISON__QUERY_KIND__QUERY_MAILBOX;
    q.after = *after;
    q.limit = max > 1000 ? 1000 : (uint32_t) max;
    if (q.limit == 0)
        return LIAISON_OK;
    Liaison__Answer *a;
    int rc = s_query (self, &q, &a);
    if (rc != LIAISON_OK)
        return rc;
    for (size_t i = 0; i < a->n_entries && *n < max; i++) {
        const Liaison__MailboxEntry *e = a->entries[i];
        liaison_mailbox_entry_t *o = &out[(*n)++];
        memset (o, 0, sizeof *o);
        o->seq = e->seq;
        memcpy (o->id, e->id.data, LIAISON_ID_LEN);
        snprintf (o->sender, sizeof o->sender, "%s", e->sender);
        o->type = (liaison_type_t) e->type;
        o->priority = (liaison_priority_t) e->priority;
        o->accepted_ms = e->accepted_ms;
        o->deadline_ms = e->deadline_ms;
        o->size = e->size;
    }
    *after = a->next;
    liaison__answer__free_unpacked (a, NULL);
    return LIAISON_OK;
}

int
liaison_fetch (liaison_t *self, const char *sender, const uint8_t id[LIAISON_ID_LEN],
               liaison_message_t **out)
{
    if (!self || !sender || !id || !out || !wire_node_id_valid (sender))
        return LIAISON_EINVAL;
    *out = NULL;
    Liaison__Query q = LIAISON__QUERY__INIT;
    q.kind = LIAISON__QUERY_KIND__QUERY_FETCH;
    q.sender = (char *) sender;
    q.id.data = (uint8_t *) id;
    q.id.len = LIAISON_ID_LEN;
    Liaison__Answer *a;
    int rc = s_query (self, &q, &a);
    if (rc != LIAISON_OK)
        return rc;
    if (!a->found || !a->envelope) {
        liaison__answer__free_unpacked (a, NULL);
        s_seterr (self, LIAISON_ENOTFOUND, "the broker holds no such message for this node");
        return LIAISON_ENOTFOUND;
    }
    liaison_message_t *m = message_wrap (a->envelope);
    a->envelope = NULL;  // taken (message_wrap frees it when it fails)
    liaison__answer__free_unpacked (a, NULL);
    if (!m)
        return LIAISON_EEXHAUSTED;
    *out = m;
    return LIAISON_OK;
}

int
liaison_next_notice (liaison_t *self, liaison_notice_t *out, int timeout_ms)
{
    if (!self || !out)
        return LIAISON_EINVAL;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : wire_clock_ms () + timeout_ms;
    while (self->notice_n == 0) {
        int rc = s_ready (self);
        if (rc != LIAISON_OK)
            return rc;
        int64_t left = deadline - wire_clock_ms ();
        if (left <= 0)
            return LIAISON_ETIMEOUT;
        s_pass (self, (int) (left > 100 ? 100 : left));
    }
    *out = self->notices[self->notice_head];
    self->notice_head = (self->notice_head + 1) % NOTICES_MAX;
    self->notice_n--;
    return LIAISON_OK;
}

int
liaison_next_receipt (liaison_t *self, liaison_receipt_t **receipt, int timeout_ms)
{
    if (!self || !receipt)
        return LIAISON_EINVAL;
    *receipt = NULL;
    int rc = s_wait (self, timeout_ms, true);
    if (rc != LIAISON_OK)
        return rc;
    liaison_receipt_t *r = self->rcpt_head;
    self->rcpt_head = r->next;
    if (!self->rcpt_head)
        self->rcpt_tail = NULL;
    r->next = NULL;
    *receipt = r;
    return LIAISON_OK;
}
