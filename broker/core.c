/*  The core actor; see core.h.                                              */
#include "core.h"

#include "bus.h"
#include "codec.h"
#include "conn.h"
#include "log.h"
#include "ackproof.h"
#include "rules.h"
#include "store.h"

#include <czmq.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/file.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

typedef struct node node_t;

typedef struct session {
    uint64_t handle;
    bus_peer_t peer;
    node_t *node;
    uint32_t done_frames;     /* Submits processed since we last granted credit */
    uint64_t done_bytes;
    bool receiver;            /* the node's current receiver */
    uint64_t rx_seq;          /* when it asked to receive (0: never) */
    uint32_t rx_frames;       /* deliveries we may still push to it */
    uint64_t rx_bytes;
    /* Frames that take no credit but cost the core work: token buckets
       (a second's worth of burst), refilled with the clock. */
    double query_tokens, ack_tokens;
    int64_t tokens_ms;
    bool kicked;              /* cut off: what it still sends is dropped */
    struct session *next;     /* in node->sessions */
} session_t;

#define PRIORITIES 3

struct node {
    char id[WIRE_NODE_ID_MAX];
    session_t *sessions;
    session_t *receiver;      /* the newest session that asked to receive */
    uint64_t after[PRIORITIES]; /* delivery cursor: last seq pushed, per priority */
    bool dirty;               /* its mailbox may hold entries past the cursors */
    bool ready;               /* on the core's ready list */
    node_t *ready_next;
};

/* Something to do once the group commits: a frame for one session (an
   ACCEPTED receipt), a frame for every session of a node (a forwarded
   receipt or a notice), or the original receipts of a resent message. */
typedef enum { HELD_SEND, HELD_FORWARD, HELD_DUPLICATE, HELD_QUERY } held_kind_t;

typedef struct {
    held_kind_t kind;
    uint64_t handle;          /* SEND, DUPLICATE: the session */
    bus_buf_t *buf;           /* SEND, FORWARD: the frame, one reference */
    bool accept;              /* SEND: an ACCEPTED receipt (refused if the commit fails) */
    uint8_t id[WIRE_ID_LEN];
    char node[WIRE_NODE_ID_MAX]; /* FORWARD: to whom; DUPLICATE: the sender; QUERY: its sender */
    /* QUERY: the question, answered from durable state after the commit */
    int qkind;
    uint64_t request_id, after;
    uint32_t limit;
} held_t;

typedef struct {
    const config_t *cfg;
    rules_t *rules;           /* the routing policy in force */
    struct resolution *scratch; /* one resolution at a time, reused (hot path) */
    uint64_t rx_seq;          /* counts Receive frames, for receiver order */
    void *bus;                /* PAIR to the edge */
    zhashx_t *sessions;       /* handle -> session_t */
    zhashx_t *nodes;          /* node id -> node_t */
    store_t *store;
    held_t *held;             /* waiting for the commit */
    size_t nheld, held_cap;
    node_t *ready;            /* nodes to pump after the commit */
    uint8_t *pack;            /* reused packing buffer */
    size_t pack_cap;
    EVP_MD_CTX *md;
    EVP_MD *sha256;
    struct answer *answer;    /* scratch for Query answers, reused */
    int64_t next_tick_ms, next_purge_ms;
    uint64_t commits;         /* group commits, logged at stop */
    uint64_t ckpt_failures;   /* checkpoint failures logged so far */
} core_t;

static size_t
s_handle_hash (const void *key)
{
    uint64_t h = (uint64_t) (uintptr_t) key;
    return (size_t) (h * 0x9E3779B97F4A7C15ULL >> 16);
}

static int
s_handle_cmp (const void *a, const void *b)
{
    return a == b ? 0 : (a < b ? -1 : 1);
}

static session_t *
s_session (core_t *self, uint64_t handle)
{
    return zhashx_lookup (self->sessions, (void *) (uintptr_t) handle);
}

// Packs a frame into a fresh shared buffer with one reference.
static bus_buf_t *
s_pack (const Liaison__Frame *f)
{
    size_t size = liaison__frame__get_packed_size (f);
    bus_buf_t *buf = malloc (sizeof *buf + size);
    if (!buf)
        return NULL;
    atomic_init (&buf->refs, 1);
    buf->size = (uint32_t) size;
    liaison__frame__pack (f, buf->data);
    return buf;
}

// Sends one reference of buf to a connection.
static void
s_send_buf (core_t *self, uint64_t handle, bus_buf_t *buf)
{
    if (bus_send (self->bus, BUS_SEND, handle, 0, buf))
        bus_buf_unref (buf);
}

static void
s_send_frame (core_t *self, uint64_t handle, const Liaison__Frame *f)
{
    bus_buf_t *buf = s_pack (f);
    if (buf)
        s_send_buf (self, handle, buf);
}

// Asks the edge to close a session, with an Error unless code is 0.
static void
s_kick (core_t *self, uint64_t handle, int code, const char *reason, const char *detail)
{
    bus_kick_t *k = NULL;
    if (code) {
        k = calloc (1, sizeof *k);
        if (k) {
            snprintf (k->reason, sizeof k->reason, "%s", reason);
            snprintf (k->detail, sizeof k->detail, "%s", detail);
        }
    }
    if (bus_send (self->bus, BUS_KICK, handle, (uint32_t) code, k))
        free (k);
}

static void
s_receipt_ex (core_t *self, uint64_t handle, const char *sender, const uint8_t *id,
              const char *recipient, int status, const char *reason, const char *rule)
{
    Liaison__Receipt r = LIAISON__RECEIPT__INIT;
    r.sender = (char *) sender;
    r.id.data = (uint8_t *) id;
    r.id.len = WIRE_ID_LEN;
    r.recipient = (char *) recipient;
    r.status = (Liaison__ReceiptStatus) status;
    r.reason = (char *) (reason ? reason : "");
    r.rule = (char *) (rule ? rule : "");
    r.rules_hash = rule ? (char *) rules_hash (self->rules) : "";
    r.time_ms = wire_time_ms ();
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_RECEIPT;
    f.receipt = &r;
    s_send_frame (self, handle, &f);
}

// A REJECTED receipt, logged; rule is "FILE:LINE" or "default" when the
// policy decided, NULL otherwise.
static void
s_reject_rule (core_t *self, session_t *from, const uint8_t *id, const char *recipient,
               const char *reason, const char *rule)
{
    char hex[33];
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < WIRE_ID_LEN; i++) {
        hex[2 * i] = digits[id[i] >> 4];
        hex[2 * i + 1] = digits[id[i] & 15];
    }
    hex[32] = 0;
    if (rule)
        log_event ("message-rejected", "id=%s sender=%s recipient=%s reason=%s rule=%s rules=%s",
                   hex, from->peer.node_id, recipient, reason, LOG_Q (rule),
                   rules_hash (self->rules));
    else
        log_event ("message-rejected", "id=%s sender=%s recipient=%s reason=%s", hex,
                   from->peer.node_id, recipient, reason);
    s_receipt_ex (self, from->handle, from->peer.node_id, id, recipient, LIAISON__RECEIPT_STATUS__REJECTED, reason,
                  rule);
}

static void
s_reject (core_t *self, session_t *from, const uint8_t *id, const char *recipient,
          const char *reason)
{
    s_reject_rule (self, from, id, recipient, reason, NULL);
}

// The policy question for one recipient of an envelope.
static void
s_query (const Liaison__Envelope *e, const char *sender, const char *recipient,
         rules_query_t *q)
{
    q->sender = sender;
    q->recipient = recipient;
    q->type = (int) e->type;
    q->priority = (int) e->priority;
    q->tlp = (int) e->tlp;
    q->handling = (int) e->handling;
    q->source = e->evaluation && e->evaluation->source[0] ? e->evaluation->source[0] : 0;
    q->accuracy = e->evaluation ? (int) e->evaluation->information : 0;
    q->basis = e->legal_basis;
    q->reply = e->in_reply_to.len > 0;
}

// "FILE:LINE" of a decision, or "default".
static const char *
s_rule_text (const core_t *self, int line, char *buf, size_t size)
{
    if (line == 0)
        return "default";
    snprintf (buf, size, "%s:%d", rules_file (self->rules), line);
    return buf;
}

// A message marked TLP:RED or H2 goes to the nodes its sender named, and to
// no one an address would add behind the sender's back.
static bool
s_restricted (const Liaison__Envelope *e)
{
    return e->tlp == LIAISON__TLP__TLP_RED || e->handling == LIAISON__HANDLING_CODE__H2;
}

/* ------------------------------------------------------------ resolution */

#define MAX_RESOLVED (2 * WIRE_MAX_RECIPIENTS)

typedef struct resolution {
    Liaison__Resolution items[MAX_RESOLVED];
    Liaison__Resolution *ptrs[MAX_RESOLVED];
    char rules[MAX_RESOLVED][160];  /* FILE:LINE texts */
    size_t n;
    const char *address;            /* the address being expanded */
    int kind;
    const Liaison__Envelope *env;
    const char *sender;
    core_t *core;
} resolution_t;

static Liaison__Resolution *
s_entry_find (resolution_t *r, const char *node)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->items[i].node[0] && strcmp (r->items[i].node, node) == 0)
            return &r->items[i];
    return NULL;
}

static Liaison__Resolution *
s_entry_add (resolution_t *r, const char *address, int kind, const char *node, bool allowed,
             const char *reason, const char *rule)
{
    if (r->n == MAX_RESOLVED)
        return NULL;
    Liaison__Resolution *e = &r->items[r->n];
    liaison__resolution__init (e);
    e->address = (char *) address;
    e->kind = (Liaison__RecipientKind) kind;
    e->node = (char *) node;
    e->allowed = allowed;
    e->reason = (char *) reason;
    snprintf (r->rules[r->n], sizeof r->rules[r->n], "%s", rule ? rule : "");
    e->rule = r->rules[r->n];
    r->ptrs[r->n] = e;
    r->n++;
    return e;
}

// One node an address stands for: decide it under the rules.
static void
s_resolve_node (void *arg, const char *node)
{
    resolution_t *r = arg;
    if (s_entry_find (r, node))
        return;  // reached by an earlier address
    rules_query_t q;
    s_query (r->env, r->sender, node, &q);
    rules_decision_t d;
    rules_decide (r->core->rules, &q, &d);
    char rule[160];
    s_entry_add (r, r->address, r->kind, node, d.allow, d.line ? "rule" : "default",
                 s_rule_text (r->core, d.line, rule, sizeof rule));
}

static void
s_resolve_copy (void *arg, const char *node, int line)
{
    resolution_t *r = arg;
    if (s_entry_find (r, node) || strcmp (node, r->sender) == 0)
        return;
    char rule[160];
    s_entry_add (r, node, LIAISON__RECIPIENT_KIND__NODE, node, true, "required-copy",
                 s_rule_text (r->core, line, rule, sizeof rule));
}

// Resolves an envelope's addresses into decided nodes, copies included.
// Node names in the entries point into the envelope or the rules.
static void
s_resolve (core_t *self, const Liaison__Envelope *env, const char *sender, resolution_t *r)
{
    r->n = 0;
    r->env = env;
    r->sender = sender;
    r->core = self;
    for (size_t i = 0; i < env->n_recipients; i++) {
        const Liaison__Recipient *a = env->recipients[i];
        r->address = a->name;
        r->kind = (int) a->kind;
        if (a->kind == LIAISON__RECIPIENT_KIND__NODE) {
            if (strcmp (a->name, sender) == 0)
                s_entry_add (r, a->name, r->kind, "", false, "sender-itself", NULL);
            else
                s_resolve_node (r, a->name);
            continue;
        }
        if (s_restricted (env)) {
            s_entry_add (r, a->name, r->kind, "", false, "handling-restricts-addressing", NULL);
            continue;
        }
        size_t before = r->n;
        int n = rules_expand (self->rules, r->kind, a->name, sender, s_resolve_node, r);
        if (n < 0)
            s_entry_add (r, a->name, r->kind, "", false, "unknown-address", NULL);
        else if (n == 0 && r->n == before)
            s_entry_add (r, a->name, r->kind, "", false, "no-contact-point", NULL);
    }
    // Required copies of every allowed pair.
    size_t decided = r->n;
    for (size_t i = 0; i < decided; i++) {
        if (!r->items[i].allowed)
            continue;
        rules_query_t q;
        s_query (env, sender, r->items[i].node, &q);
        rules_copies (self->rules, &q, s_resolve_copy, r);
    }
}

static void
s_on_resolve (core_t *self, session_t *s, const Liaison__Resolve *req)
{
    resolution_t *r = self->scratch;
    s_resolve (self, req->envelope, s->peer.node_id, r);
    Liaison__Resolved out = LIAISON__RESOLVED__INIT;
    out.request_id = req->request_id;
    out.n_entries = r->n;
    out.entries = r->ptrs;
    out.rules_hash = (char *) rules_hash (self->rules);
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_RESOLVED;
    f.resolved = &out;
    s_send_frame (self, s->handle, &f);
}

// A Submit must carry exactly what the current rules allow: node addresses
// only, each allowed, and every required copy. Otherwise the sender's
// resolution is out of date: refuse it whole (it resolves again).
static bool
s_recipients_current (core_t *self, const Liaison__Envelope *env, const char *sender,
                      resolution_t *r)
{
    r->n = 0;  // nothing resolved yet: the caller reads r on failure
    for (size_t i = 0; i < env->n_recipients; i++)
        if (env->recipients[i]->kind != LIAISON__RECIPIENT_KIND__NODE)
            return false;
    s_resolve (self, env, sender, r);
    for (size_t i = 0; i < r->n; i++) {
        if (!r->items[i].allowed)
            return false;
        // A required copy the resolution added must be on the list too.
        bool listed = false;
        for (size_t j = 0; j < env->n_recipients && !listed; j++)
            listed = strcmp (env->recipients[j]->name, r->items[i].node) == 0;
        if (!listed)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------- held work */

static held_t *
s_hold (core_t *self, held_kind_t kind)
{
    if (self->nheld == self->held_cap) {
        size_t cap = self->held_cap ? 2 * self->held_cap : 1024;
        held_t *more = realloc (self->held, cap * sizeof *more);
        if (!more)
            return NULL;
        self->held = more;
        self->held_cap = cap;
    }
    held_t *h = &self->held[self->nheld++];
    memset (h, 0, sizeof *h);
    h->kind = kind;
    return h;
}

// Marks a node's mailbox as changed; it is pumped after the commit.
static void
s_mark (core_t *self, const char *node_id)
{
    node_t *n = zhashx_lookup (self->nodes, node_id);
    if (!n)
        return;  // offline: it reads its mailbox when it comes back
    n->dirty = true;
    if (!n->ready) {
        n->ready = true;
        n->ready_next = self->ready;
        self->ready = n;
    }
}

// A frame for every session of a node (connected when the group commits).
static void
s_forward (core_t *self, const char *to, const Liaison__Frame *f)
{
    bus_buf_t *buf = s_pack (f);
    held_t *h = buf ? s_hold (self, HELD_FORWARD) : NULL;
    if (!h) {
        if (buf)
            bus_buf_unref (buf);
        return;
    }
    h->buf = buf;
    snprintf (h->node, sizeof h->node, "%s", to);
}

static void
s_hex_id (const uint8_t *id, char hex[33])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < WIRE_ID_LEN; i++) {
        hex[2 * i] = digits[id[i] >> 4];
        hex[2 * i + 1] = digits[id[i] & 15];
    }
    hex[32] = 0;
}

// The message was not accepted: the store failed or is full. No receipt:
// the sender keeps it in its outbox and sends it again.
static void
s_refuse_store (core_t *self, uint64_t handle, const uint8_t *id, const char *sender,
                const char *why)
{
    char hex[33];
    s_hex_id (id, hex);
    log_event ("message-refused", "id=%s sender=%s reason=store detail=%s", hex, sender,
               LOG_Q (store_error (self->store)));
    Liaison__Error e = LIAISON__ERROR__INIT;
    e.code = LIAISON__ERROR_CODE__ERR_STORE;
    e.reason = (char *) why;
    e.detail = "the broker's store is full or failing: the message was not accepted; keep it "
               "and send it again later";
    e.ref_id.data = (uint8_t *) id;
    e.ref_id.len = WIRE_ID_LEN;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_ERROR;
    f.error = &e;
    s_send_frame (self, handle, &f);
}

static void s_pump (core_t *self, node_t *n);
static void s_answer (core_t *self, const held_t *q);

typedef struct {
    core_t *core;
    uint64_t handle;
    const uint8_t *id;
    const char *sender;
} trail_ctx_t;

// One receipt of a stored trail, sent to a session.
static void s_trail_send (void *arg, const char *recipient, int status, const char *reason,
                          const char *rule, int64_t time_ms, const uint8_t *sig, size_t siglen);

/* The group is durable (ok) or gone (!ok): send or refuse what waited
   for it, then pump the nodes with new mail. */
static void
s_release (core_t *self, bool ok)
{
    const uint8_t *last = NULL;
    for (size_t i = 0; i < self->nheld; i++) {
        held_t *h = &self->held[i];
        switch (h->kind) {
            case HELD_SEND:
                if (ok || !h->accept)  // a pong goes out whatever the commit did
                    s_send_buf (self, h->handle, h->buf);
                else {
                    if (h->accept && (!last || memcmp (last, h->id, WIRE_ID_LEN))) {
                        session_t *s = s_session (self, h->handle);
                        s_refuse_store (self, h->handle, h->id, s ? s->peer.node_id : "?",
                                        "store-failed");
                        last = h->id;
                    }
                    bus_buf_unref (h->buf);
                }
                break;
            case HELD_FORWARD: {
                node_t *n = ok ? zhashx_lookup (self->nodes, h->node) : NULL;
                for (session_t *s = n ? n->sessions : NULL; s; s = s->next) {
                    atomic_fetch_add (&h->buf->refs, 1);
                    s_send_buf (self, s->handle, h->buf);
                }
                bus_buf_unref (h->buf);
                break;
            }
            case HELD_QUERY:
                // Answered also when the group failed: its work is gone,
                // the answer shows what is durable.
                if (s_session (self, h->handle))
                    s_answer (self, h);
                break;
            case HELD_DUPLICATE:
                if (ok && s_session (self, h->handle)) {
                    trail_ctx_t ctx = {self, h->handle, h->id, h->node};
                    store_trail (self->store, h->node, h->id, s_trail_send, &ctx);
                }
                break;
        }
    }
    self->nheld = 0;
    if (!ok) {
        // Acks in the lost group are undone too: deliver everything again
        // (the receivers' inboxes recognise what they have).
        // (No lookups inside the walk: a zhashx lookup resets its cursor.)
        for (node_t *n = zhashx_first (self->nodes); n; n = zhashx_next (self->nodes)) {
            memset (n->after, 0, sizeof n->after);
            n->dirty = true;
            if (!n->ready) {
                n->ready = true;
                n->ready_next = self->ready;
                self->ready = n;
            }
        }
    }
    while (self->ready) {
        node_t *n = self->ready;
        self->ready = n->ready_next;
        n->ready = false;
        s_pump (self, n);
    }
}

// Commits the group, if any, and releases what waited for it; false if
// the commit failed.
static bool
s_commit (core_t *self)
{
    if (!store_pending (self->store)) {
        if (self->nheld || self->ready)
            s_release (self, true);
        return true;
    }
    bool ok = store_commit (self->store) == STORE_OK;
    if (!ok)
        log_event ("store-commit-failed", "detail=%s", LOG_Q (store_error (self->store)));
    else
        self->commits++;
    s_release (self, ok);
    return ok;
}

// After a failed store call: if it took the group down, refuse its work.
static void
s_after_store_error (core_t *self)
{
    if (!store_pending (self->store) && self->nheld) {
        log_event ("store-group-lost", "detail=%s", LOG_Q (store_error (self->store)));
        s_release (self, false);
    }
}

/* --------------------------------------------------------------- delivery */

/* A Deliver frame around a stored envelope, written without unpacking it:
   Frame.deliver (field 7) holding Deliver.envelope (field 1). */
static size_t
s_varint (uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t) (v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t) v;
    return n;
}

static size_t
s_varint_len (uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

typedef struct {
    core_t *core;
    session_t *rx;
    node_t *node;
    int priority;
    bool blocked;             /* stopped for want of credit */
} pump_ctx_t;

static int
s_pump_one (void *arg, uint64_t seq, const uint8_t id[16], const char *sender,
            const uint8_t *envelope, size_t len)
{
    pump_ctx_t *c = arg;
    size_t inner = 1 + s_varint_len (len) + len;
    size_t size = 1 + s_varint_len (inner) + inner;
    session_t *rx = c->rx;
    if (rx->rx_frames == 0 || rx->rx_bytes < size) {
        c->blocked = true;
        return 1;
    }
    bus_buf_t *buf = malloc (sizeof *buf + size);
    if (!buf) {
        c->blocked = true;
        return 1;
    }
    atomic_init (&buf->refs, 1);
    buf->size = (uint32_t) size;
    uint8_t *p = buf->data;
    *p++ = (7 << 3) | 2;
    p += s_varint (p, inner);
    *p++ = (1 << 3) | 2;
    p += s_varint (p, len);
    memcpy (p, envelope, len);
    rx->rx_frames--;
    rx->rx_bytes -= size;
    c->node->after[c->priority] = seq;
    s_send_buf (c->core, rx->handle, buf);
    return 0;
}

// Pushes a node's mailbox to its receiver while credit lasts, highest
// priority first, in short reads.
static void
s_pump (core_t *self, node_t *n)
{
    session_t *rx = n->receiver;
    if (!rx || !n->dirty)
        return;
    if (store_pending (self->store)) {
        // Only committed messages go out: pump again after the commit.
        s_mark (self, n->id);
        return;
    }
    for (int p = PRIORITIES - 1; p >= 0; p--) {
        for (;;) {
            pump_ctx_t c = {self, rx, n, p, false};
            size_t page = rx->rx_frames < 64 ? rx->rx_frames : 64;
            if (page == 0)
                return;
            uint64_t damaged = 0;
            int got = store_mailbox_scan (self->store, n->id, p, n->after[p], page, s_pump_one,
                                          &c, &damaged);
            if (got == STORE_DAMAGED) {
                // Never served; skipped so the rest of the mailbox flows.
                log_event ("store-damaged", "node=%s seq=%" PRIu64 " detail=%s", n->id, damaged,
                           LOG_Q (store_error (self->store)));
                n->after[p] = damaged;
                continue;
            }
            if (got < 0) {
                log_event ("store-read-failed", "node=%s detail=%s", n->id,
                           LOG_Q (store_error (self->store)));
                return;
            }
            if (c.blocked)
                return;  // more waits for credit
            if ((size_t) got < page)
                break;   // this priority is drained
        }
    }
    n->dirty = false;
}

/* ------------------------------------------------------------------ submit */

// Returns sending credit once half the window has been processed. The
// edge sends the Credit frame and raises its allowance as it does, so a
// burst beyond the window is caught there, at arrival.
static void
s_credit_back (core_t *self, session_t *s, size_t bytes)
{
    s->done_frames++;
    s->done_bytes += bytes;
    if (s->done_frames < (self->cfg->credit_frames + 1) / 2
        && s->done_bytes < self->cfg->credit_bytes / 2)
        return;
    if (bus_send (self->bus, BUS_CREDIT, s->handle, s->done_frames,
                  (void *) (uintptr_t) s->done_bytes) == 0) {
        s->done_frames = 0;
        s->done_bytes = 0;
    }
}

// Packs an envelope into the reused buffer; its length, or 0.
static size_t
s_pack_envelope (core_t *self, const Liaison__Envelope *env)
{
    size_t size = liaison__envelope__get_packed_size (env);
    if (size > self->pack_cap) {
        uint8_t *more = realloc (self->pack, size);
        if (!more)
            return 0;
        self->pack = more;
        self->pack_cap = size;
    }
    return liaison__envelope__pack (env, self->pack);
}

static int64_t
s_deadline_period_ms (int cls)
{
    switch (cls) {
        case LIAISON__DEADLINE_CLASS__DEADLINE_8_HOURS:
            return 8LL * 3600 * 1000;
        case LIAISON__DEADLINE_CLASS__DEADLINE_3_DAYS:
            return 3LL * 86400 * 1000;
        case LIAISON__DEADLINE_CLASS__DEADLINE_7_DAYS:
            return 7LL * 86400 * 1000;
        default:
            return 0;
    }
}

static void
s_on_submit (core_t *self, session_t *s, Liaison__Frame *f, size_t frame_size)
{
    Liaison__Envelope *env = f->submit->envelope;
    const uint8_t *id = env->id.data;
    if (env->sender[0] && strcmp (env->sender, s->peer.node_id) != 0) {
        // Identity comes from the certificate only; a claimed sender that
        // differs is refused (and logged as a spoofing attempt).
        log_event ("sender-refused", "node=%s claimed=%s", s->peer.node_id,
                   LOG_Q (env->sender));
        for (size_t i = 0; i < env->n_recipients; i++)
            s_reject (self, s, id, env->recipients[i]->name, "sender-mismatch");
        s_credit_back (self, s, frame_size);
        return;
    }
    /* The checks below may refuse a message that was accepted before and
       is only sent again (the rules, the clock or the limits changed
       since): a resend gets its original receipts, never a refusal. */
    resolution_t *r = self->scratch;
    bool current = s_recipients_current (self, env, s->peer.node_id, r);
    int64_t now = wire_time_ms ();
    const char *why = NULL;
    int cls = (int) env->deadline_class;
    if ((cls == LIAISON__DEADLINE_CLASS__DEADLINE_DATE
         || (cls == LIAISON__DEADLINE_CLASS__DEADLINE_NONE && env->deadline_ms))
        && env->deadline_ms <= now)
        why = "deadline-passed";
    else if (env->expires_ms && env->expires_ms <= now)
        why = "already-expired";
    else if (liaison__envelope__get_packed_size (env) + 64 > self->cfg->max_frame)
        why = "too-large";  // its Deliver frame would not fit
    if ((!current || why) && store_known (self->store, s->peer.node_id, id) != 1) {
        if (!current) {
            // One receipt per entry: the refused nodes and the required
            // copies the sender left out are named, each with its rule.
            for (size_t i = 0; i < r->n; i++) {
                const Liaison__Resolution *e = &r->items[i];
                s_reject_rule (self, s, id, e->node[0] ? e->node : e->address,
                               "recipients-changed", e->rule[0] ? e->rule : NULL);
            }
            if (r->n == 0)
                for (size_t i = 0; i < env->n_recipients; i++)
                    s_reject (self, s, id, env->recipients[i]->name, "recipients-changed");
        }
        else
            for (size_t i = 0; i < env->n_recipients; i++)
                s_reject (self, s, id, env->recipients[i]->name, why);
        s_credit_back (self, s, frame_size);
        return;
    }
    // Stamp the sender from the certificate.
    char *stamped = strdup (s->peer.node_id);
    if (!stamped) {
        s_refuse_store (self, s->handle, id, s->peer.node_id, "exhausted");
        s_credit_back (self, s, frame_size);
        return;
    }
    if (env->sender != protobuf_c_empty_string)
        free (env->sender);
    env->sender = stamped;
    /* The digest a resend is compared by: body and routing fields as the
       sender made them (before the broker's stamps), but not the
       recipient list: a library sending its outbox again after a restart
       resolves the addresses again, and under rules changed since, the
       same message may come with other nodes. It is still the message the
       broker has: it gets its original receipts, not `id-reused`. */
    env->accepted_ms = 0;
    uint8_t digest[32];
    size_t n_recipients = env->n_recipients;
    env->n_recipients = 0;
    size_t len = s_pack_envelope (self, env);
    env->n_recipients = n_recipients;
    if (!len || !EVP_DigestInit_ex (self->md, self->sha256, NULL)
        || !EVP_DigestUpdate (self->md, self->pack, len)
        || !EVP_DigestFinal_ex (self->md, digest, NULL)) {
        s_refuse_store (self, s->handle, id, s->peer.node_id, "exhausted");
        s_credit_back (self, s, frame_size);
        return;
    }
    env->accepted_ms = now;
    int64_t period = s_deadline_period_ms (cls);
    if (period)
        env->deadline_ms = now + period;
    int64_t remind = 0;
    if (env->deadline_ms) {
        int64_t window = env->deadline_ms - now;
        remind = env->deadline_ms - window * (int64_t) self->cfg->remind_percent / 100;
    }
    len = s_pack_envelope (self, env);
    const char *names[WIRE_MAX_RECIPIENTS];
    size_t n = 0;
    for (size_t i = 0; i < env->n_recipients; i++) {
        bool dup = false;
        for (size_t j = 0; j < n && !dup; j++)
            dup = strcmp (names[j], env->recipients[i]->name) == 0;
        if (!dup)
            names[n++] = env->recipients[i]->name;
    }
    store_msg_t m = {
        .id = id,
        .sender = s->peer.node_id,
        .digest = digest,
        .envelope = self->pack,
        .envelope_len = len,
        .type = (int) env->type,
        .priority = (int) env->priority,
        .accepted_ms = now,
        .deadline_ms = env->deadline_ms,
        .expires_ms = env->expires_ms,
        .remind_ms = remind,
        .recipients = names,
        .n_recipients = n,
    };
    int64_t original_ms = 0;
    store_rc_t rc = len ? store_put (self->store, &m, &original_ms) : STORE_ERROR;
    switch (rc) {
        case STORE_OK:
            for (size_t i = 0; i < n; i++) {
                Liaison__Receipt rr = LIAISON__RECEIPT__INIT;
                rr.id.data = (uint8_t *) id;
                rr.id.len = WIRE_ID_LEN;
                rr.recipient = (char *) names[i];
                rr.sender = s->peer.node_id;
                rr.status = LIAISON__RECEIPT_STATUS__ACCEPTED;
                rr.time_ms = now;
                rr.deadline_ms = env->deadline_ms;
                Liaison__Frame out = LIAISON__FRAME__INIT;
                out.kind_case = LIAISON__FRAME__KIND_RECEIPT;
                out.receipt = &rr;
                bus_buf_t *buf = s_pack (&out);
                held_t *h = buf ? s_hold (self, HELD_SEND) : NULL;
                if (!h) {
                    if (buf)
                        bus_buf_unref (buf);
                    continue;  // the trail still has it
                }
                h->handle = s->handle;
                h->buf = buf;
                h->accept = true;
                memcpy (h->id, id, WIRE_ID_LEN);
                s_mark (self, names[i]);
            }
            // A reply stops its recipients' clocks on the request.
            if (env->in_reply_to.len == WIRE_ID_LEN)
                for (size_t i = 0; i < n; i++)
                    if (store_deadline_answer (self->store, names[i], env->in_reply_to.data,
                                               s->peer.node_id, now)
                        < 0)
                        s_after_store_error (self);
            break;
        case STORE_DUPLICATE: {
            held_t *h = s_hold (self, HELD_DUPLICATE);
            if (h) {
                h->handle = s->handle;
                memcpy (h->id, id, WIRE_ID_LEN);
                snprintf (h->node, sizeof h->node, "%s", s->peer.node_id);
            }
            break;
        }
        case STORE_CONFLICT:
            for (size_t i = 0; i < n; i++)
                s_reject (self, s, id, names[i], "id-reused");
            break;
        default:
            s_refuse_store (self, s->handle, id, s->peer.node_id,
                            rc == STORE_FULL ? "store-full" : "store-failed");
            s_after_store_error (self);
            break;
    }
    s_credit_back (self, s, frame_size);
}

static void
s_trail_send (void *arg, const char *recipient, int status, const char *reason, const char *rule,
              int64_t time_ms, const uint8_t *sig, size_t siglen);

/* --------------------------------------------------------------------- acks */

/* A DELIVERED/READ receipt keeps its proof in the store's signature column:
   u16 index, u16 size, u8 path length, the path, then the signature. */
static size_t
s_proof_encode (uint8_t *out, size_t index, size_t size, const uint8_t (*path)[32],
                size_t npath, const uint8_t *sig, size_t siglen)
{
    out[0] = (uint8_t) (index >> 8);
    out[1] = (uint8_t) index;
    out[2] = (uint8_t) (size >> 8);
    out[3] = (uint8_t) size;
    out[4] = (uint8_t) npath;
    memcpy (out + 5, path, npath * 32);
    memcpy (out + 5 + npath * 32, sig, siglen);
    return 5 + npath * 32 + siglen;
}

// Fills a receipt's proof fields from a stored blob; false if malformed.
static bool
s_proof_decode (const uint8_t *blob, size_t len, Liaison__Receipt *r, ProtobufCBinaryData *path)
{
    if (len < 5)
        return false;
    size_t npath = blob[4];
    if (npath > ACKPROOF_MAX_PATH || len < 5 + npath * 32)
        return false;
    r->proof_index = (uint32_t) (blob[0] << 8 | blob[1]);
    r->proof_size = (uint32_t) (blob[2] << 8 | blob[3]);
    for (size_t i = 0; i < npath; i++) {
        path[i].data = (uint8_t *) blob + 5 + 32 * i;
        path[i].len = 32;
    }
    r->n_proof = npath;
    r->proof = path;
    r->signature.data = (uint8_t *) blob + 5 + npath * 32;
    r->signature.len = len - 5 - npath * 32;
    return true;
}

static void
s_on_ack (core_t *self, session_t *s, const Liaison__Ack *a)
{
    static uint8_t leaves[ACKPROOF_MAX_ITEMS][32];
    static uint8_t paths[ACKPROOF_MAX_ITEMS][ACKPROOF_MAX_PATH][32];
    static uint8_t pathlens[ACKPROOF_MAX_ITEMS];
    uint8_t root[32], blob[5 + ACKPROOF_MAX_PATH * 32 + WIRE_MAX_SIGNATURE];
    const char *me = s->peer.node_id;
    for (size_t i = 0; i < a->n_items; i++)
        ackproof_leaf (me, (int) a->status, a->time_ms, a->items[i]->sender,
                       a->items[i]->id.data, leaves[i]);
    if (ackproof_paths_all ((const uint8_t (*)[32]) leaves, a->n_items, root, paths, pathlens)) {
        log_event ("ack-refused", "node=%s reason=proof", me);
        return;
    }
    if (!s->peer.key
        || ackproof_verify (s->peer.key, root, a->n_items, a->signature.data, a->signature.len)
               != 1) {
        // Only receipts a sender can verify are recorded and forwarded.
        log_event ("session-kicked", "node=%s reason=ack-signature", me);
        s_kick (self, s->handle, LIAISON__ERROR_CODE__ERR_MALFORMED, "ack-signature",
                "the Ack's signature does not verify with this node's certificate");
        return;
    }
    size_t ignored = 0;
    for (size_t i = 0; i < a->n_items; i++) {
        const Liaison__AckItem *it = a->items[i];
        bool first = false;
        store_rc_t rc = store_delivered (self->store, me, it->sender, it->id.data, a->time_ms,
                                         &first);
        if (rc == STORE_NOTFOUND) {
            if (!ignored++) {  // one line per Ack, not per item
                char hex[33];
                s_hex_id (it->id.data, hex);
                log_event ("ack-ignored", "node=%s id=%s sender=%s reason=not-in-mailbox items=%zu",
                           me, hex, it->sender, a->n_items);
            }
            continue;
        }
        if (rc != STORE_OK) {
            s_after_store_error (self);
            return;
        }
        if (a->status == LIAISON__RECEIPT_STATUS__DELIVERED && !first)
            continue;  // a redelivery acknowledged again: the receipt exists
        if (a->status == LIAISON__RECEIPT_STATUS__READ
            && store_has_receipt (self->store, it->sender, it->id.data, me,
                                  LIAISON__RECEIPT_STATUS__READ)
                   != 0)
            continue;  // read once is read: one READ receipt per recipient
        size_t bloblen = s_proof_encode (blob, i, a->n_items, (const uint8_t (*)[32]) paths[i],
                                         pathlens[i], a->signature.data, a->signature.len);
        if (store_receipt_add (self->store, it->sender, it->id.data, me, (int) a->status, NULL,
                               NULL, a->time_ms, blob, bloblen)
            != STORE_OK) {
            s_after_store_error (self);
            return;
        }
        Liaison__Receipt rr = LIAISON__RECEIPT__INIT;
        ProtobufCBinaryData path[ACKPROOF_MAX_PATH];
        s_proof_decode (blob, bloblen, &rr, path);
        rr.id = it->id;
        rr.recipient = (char *) me;
        rr.sender = it->sender;
        rr.status = a->status;
        rr.time_ms = a->time_ms;
        Liaison__Frame out = LIAISON__FRAME__INIT;
        out.kind_case = LIAISON__FRAME__KIND_RECEIPT;
        out.receipt = &rr;
        s_forward (self, it->sender, &out);
    }
}

/* ------------------------------------------------------------------ queries */

static void
s_trail_send (void *arg, const char *recipient, int status, const char *reason, const char *rule,
              int64_t time_ms, const uint8_t *sig, size_t siglen)
{
    trail_ctx_t *c = arg;
    Liaison__Receipt r = LIAISON__RECEIPT__INIT;
    ProtobufCBinaryData path[ACKPROOF_MAX_PATH];
    r.id.data = (uint8_t *) c->id;
    r.id.len = WIRE_ID_LEN;
    r.sender = (char *) c->sender;
    r.recipient = (char *) (recipient ? recipient : "");
    r.status = (Liaison__ReceiptStatus) status;
    r.reason = (char *) (reason ? reason : "");
    r.rule = (char *) (rule ? rule : "");
    r.time_ms = time_ms;
    if (sig && siglen)
        s_proof_decode (sig, siglen, &r, path);
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_RECEIPT;
    f.receipt = &r;
    s_send_frame (c->core, c->handle, &f);
}

#define ANSWER_MAX 1000

typedef struct answer {
    Liaison__Receipt items[ANSWER_MAX];
    Liaison__Receipt *ptrs[ANSWER_MAX];
    ProtobufCBinaryData paths[ANSWER_MAX][ACKPROOF_MAX_PATH];
    char names[ANSWER_MAX][WIRE_NODE_ID_MAX];
    char reasons[ANSWER_MAX][WIRE_MAX_NAME + 1];
    uint8_t *blobs[ANSWER_MAX];
    Liaison__MailboxEntry entries[ANSWER_MAX];
    Liaison__MailboxEntry *eptrs[ANSWER_MAX];
    Liaison__DeadlineEntry deadlines[ANSWER_MAX];
    Liaison__DeadlineEntry *dptrs[ANSWER_MAX];
    uint8_t ids[ANSWER_MAX][WIRE_ID_LEN];
    char senders[ANSWER_MAX][WIRE_NODE_ID_MAX];
    size_t n;
    uint64_t next;            /* MAILBOX: the cursor after the last entry */
    const uint8_t *id;
    const char *sender;
    Liaison__Envelope *env;
} answer_t;

static void
s_collect_receipt (void *arg, const char *recipient, int status, const char *reason,
                   const char *rule, int64_t time_ms, const uint8_t *sig, size_t siglen)
{
    answer_t *a = arg;
    if (a->n == ANSWER_MAX)
        return;
    size_t i = a->n++;
    Liaison__Receipt *r = &a->items[i];
    liaison__receipt__init (r);
    r->id.data = (uint8_t *) a->id;
    r->id.len = WIRE_ID_LEN;
    snprintf (a->names[i], sizeof a->names[i], "%s", recipient ? recipient : "");
    r->recipient = a->names[i];
    snprintf (a->reasons[i], sizeof a->reasons[i], "%s", reason ? reason : "");
    r->reason = a->reasons[i];
    (void) rule;
    r->sender = (char *) a->sender;
    r->status = (Liaison__ReceiptStatus) status;
    r->time_ms = time_ms;
    a->blobs[i] = NULL;
    if (sig && siglen && (a->blobs[i] = malloc (siglen))) {
        memcpy (a->blobs[i], sig, siglen);
        s_proof_decode (a->blobs[i], siglen, r, a->paths[i]);
    }
    a->ptrs[i] = r;
}

static void
s_collect_entry (void *arg, const store_listing_t *e)
{
    answer_t *a = arg;
    if (a->n == ANSWER_MAX)
        return;
    size_t i = a->n++;
    Liaison__MailboxEntry *m = &a->entries[i];
    liaison__mailbox_entry__init (m);
    memcpy (a->ids[i], e->id, WIRE_ID_LEN);
    snprintf (a->senders[i], sizeof a->senders[i], "%s", e->sender);
    m->seq = e->seq;
    m->id.data = a->ids[i];
    m->id.len = WIRE_ID_LEN;
    m->sender = a->senders[i];
    m->type = (Liaison__MessageType) e->type;
    m->priority = (Liaison__Priority) e->priority;
    m->accepted_ms = e->accepted_ms;
    m->deadline_ms = e->deadline_ms;
    m->size = e->size;
    a->eptrs[i] = m;
    a->next = e->cursor;
}

static void
s_collect_deadline (void *arg, const char *sender, const uint8_t id[16], const char *recipient,
                    int64_t due_ms, int state, int64_t answered_ms)
{
    answer_t *a = arg;
    if (a->n == ANSWER_MAX)
        return;
    size_t i = a->n++;
    Liaison__DeadlineEntry *d = &a->deadlines[i];
    liaison__deadline_entry__init (d);
    memcpy (a->ids[i], id, WIRE_ID_LEN);
    snprintf (a->senders[i], sizeof a->senders[i], "%s", sender ? sender : "");
    snprintf (a->names[i], sizeof a->names[i], "%s", recipient ? recipient : "");
    d->id.data = a->ids[i];
    d->id.len = WIRE_ID_LEN;
    d->sender = a->senders[i];
    d->recipient = a->names[i];
    d->deadline_ms = due_ms;
    d->state = (Liaison__DeadlineState) state;
    d->answered_ms = answered_ms;
    a->dptrs[i] = d;
}

static void
s_collect_envelope (void *arg, const uint8_t *envelope, size_t len)
{
    answer_t *a = arg;
    a->env = liaison__envelope__unpack (NULL, len, envelope);
}

/* A Query waits for the group to commit (answers come from durable state)
   instead of forcing a commit: a stream of queries must not cost the
   broker one fsync each. */
static void
s_on_query (core_t *self, session_t *s, const Liaison__Query *q)
{
    held_t *h = s_hold (self, HELD_QUERY);
    if (!h) {
        s_kick (self, s->handle, LIAISON__ERROR_CODE__ERR_EXHAUSTED, "exhausted", "broker out of memory");
        return;
    }
    h->handle = s->handle;
    h->qkind = (int) q->kind;
    h->request_id = q->request_id;
    h->after = q->after;
    h->limit = q->limit;
    if (q->id.len == WIRE_ID_LEN)
        memcpy (h->id, q->id.data, WIRE_ID_LEN);
    snprintf (h->node, sizeof h->node, "%s", q->sender);
}

static void
s_answer (core_t *self, const held_t *q)
{
    session_t *s = s_session (self, q->handle);
    answer_t *a = self->answer;  // one, reused: the answers' scratch is large
    a->n = 0;
    a->env = NULL;
    Liaison__Answer out = LIAISON__ANSWER__INIT;
    out.request_id = q->request_id;
    const char *me = s->peer.node_id;
    size_t limit = q->limit ? q->limit : 100;
    int rc = 0;
    switch (q->qkind) {
        case LIAISON__QUERY_KIND__QUERY_TRAIL:
            a->id = q->id;
            a->sender = me;
            rc = store_trail (self->store, me, q->id, s_collect_receipt, a);
            out.found = rc > 0;
            out.n_receipts = a->n;
            out.receipts = a->ptrs;
            break;
        case LIAISON__QUERY_KIND__QUERY_MAILBOX:
            rc = store_mailbox_list (self->store, me, q->after, limit, s_collect_entry, a);
            out.found = true;
            out.n_entries = a->n;
            out.entries = a->eptrs;
            out.next = a->n == limit && a->n ? a->next : 0;
            break;
        case LIAISON__QUERY_KIND__QUERY_FETCH:
            rc = store_fetch (self->store, me, q->node, q->id, s_collect_envelope, a);
            out.found = rc == STORE_OK && a->env;
            out.envelope = a->env;
            if (rc == STORE_NOTFOUND)
                rc = 0;
            break;
        case LIAISON__QUERY_KIND__QUERY_DEADLINES:
            rc = store_deadlines_list (self->store, me, limit, s_collect_deadline, a);
            out.found = true;
            out.n_deadlines = a->n;
            out.deadlines = a->dptrs;
            break;
        default:
            break;
    }
    if (rc < 0)
        log_event ("query-failed", "node=%s kind=%d detail=%s", me, q->qkind,
                   LOG_Q (store_error (self->store)));
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_ANSWER;
    f.answer = &out;
    s_send_frame (self, s->handle, &f);
    for (size_t i = 0; i < a->n && q->qkind == LIAISON__QUERY_KIND__QUERY_TRAIL; i++)
        free (a->blobs[i]);
    if (a->env)
        liaison__envelope__free_unpacked (a->env, NULL);
    a->env = NULL;
}

/* ------------------------------------------------------------------ clocks */

static void
s_notice (core_t *self, int kind, const char *to, const char *sender, const uint8_t *id,
          const char *recipient, int64_t due_ms)
{
    Liaison__Notice n = LIAISON__NOTICE__INIT;
    n.kind = (Liaison__NoticeKind) kind;
    n.id.data = (uint8_t *) id;
    n.id.len = WIRE_ID_LEN;
    n.sender = (char *) sender;
    n.recipient = (char *) recipient;
    n.deadline_ms = due_ms;
    n.time_ms = wire_time_ms ();
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_NOTICE;
    f.notice = &n;
    s_forward (self, to, &f);
}

static void
s_on_expired (void *arg, const char *node, const char *sender, const uint8_t id[16],
              int64_t expires_ms)
{
    core_t *self = arg;
    char hex[33];
    s_hex_id (id, hex);
    log_event ("message-expired", "id=%s sender=%s recipient=%s", hex, sender, node);
    Liaison__Receipt r = LIAISON__RECEIPT__INIT;
    r.id.data = (uint8_t *) id;
    r.id.len = WIRE_ID_LEN;
    r.recipient = (char *) node;
    r.sender = (char *) sender;
    r.status = LIAISON__RECEIPT_STATUS__EXPIRED;
    r.reason = "ttl-expired";
    r.time_ms = wire_time_ms ();
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_RECEIPT;
    f.receipt = &r;
    s_forward (self, sender, &f);
    (void) expires_ms;
}

static void
s_on_clock (void *arg, const char *sender, const uint8_t id[16], const char *recipient,
            int64_t due_ms, int state, int64_t answered_ms)
{
    core_t *self = arg;
    char hex[33];
    s_hex_id (id, hex);
    (void) answered_ms;
    if (state == STORE_DEADLINE_DUE_SOON) {
        log_event ("deadline-reminder", "id=%s sender=%s recipient=%s due_ms=%" PRId64, hex,
                   sender, recipient, due_ms);
        s_notice (self, LIAISON__NOTICE_KIND__NOTICE_DEADLINE_REMINDER, recipient, sender, id,
                  recipient, due_ms);
    }
    else if (state == STORE_DEADLINE_MISSED) {
        log_event ("deadline-missed", "id=%s sender=%s recipient=%s due_ms=%" PRId64, hex,
                   sender, recipient, due_ms);
        s_notice (self, LIAISON__NOTICE_KIND__NOTICE_DEADLINE_MISSED, recipient, sender, id,
                  recipient, due_ms);
        s_notice (self, LIAISON__NOTICE_KIND__NOTICE_DEADLINE_MISSED, sender, sender, id,
                  recipient, due_ms);
    }
}

// Once a second: expiry, clocks; now and then a purge. (Checkpoints run on
// the store's own thread.)
static void
s_tick (core_t *self)
{
    int64_t now = wire_time_ms ();
    if (now < self->next_tick_ms)
        return;
    self->next_tick_ms = now + 1000;
    // In steps of 64, each committed; a commit that fails (a full disk)
    // ends the tick: the same rows would come back for ever.
    int n;
    bool ok = true;
    while (ok && (n = store_expire (self->store, now, 64, s_on_expired, self)) == 64)
        ok = s_commit (self);
    if (ok && n < 0)
        s_after_store_error (self);
    while (ok && (n = store_deadlines_tick (self->store, now, 64, s_on_clock, self)) >= 64)
        ok = s_commit (self);
    if (ok && n < 0)
        s_after_store_error (self);
    if (ok)
        s_commit (self);
    if (now >= self->next_purge_ms) {
        self->next_purge_ms = now + (int64_t) self->cfg->purge_interval_s * 1000;
        int64_t purged = 0;
        int64_t before = now - (int64_t) self->cfg->retention_s * 1000;
        if (store_purge (self->store, before, &purged) == STORE_OK)
            log_event ("store-purged", "messages=%" PRId64 " before_ms=%" PRId64, purged, before);
        else
            log_event ("store-purge-failed", "detail=%s", LOG_Q (store_error (self->store)));
    }
    char why[512];
    uint64_t failures = store_checkpointer_failures (self->store, why, sizeof why);
    if (failures > self->ckpt_failures) {
        self->ckpt_failures = failures;
        log_event ("store-checkpoint-failed", "failures=%" PRIu64 " detail=%s", failures,
                   LOG_Q (why));
    }
}

/* ---------------------------------------------------------------- receivers */

// Makes s its node's receiver: delivery starts again from the top of the
// mailbox (what the previous receiver had but did not acknowledge comes
// again; the library recognises it).
static void
s_make_receiver (core_t *self, node_t *n, session_t *s)
{
    if (n->receiver && n->receiver != s)
        n->receiver->receiver = false;
    s->receiver = true;
    n->receiver = s;
    memset (n->after, 0, sizeof n->after);
    n->dirty = true;
    s_pump (self, n);
}

// Takes s out of its node; if it was the receiver, the most recent other
// session that asked to receive takes over.
static void
s_node_unlink (core_t *self, session_t *s)
{
    node_t *n = s->node;
    for (session_t **p = &n->sessions; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    if (n->receiver == s) {
        n->receiver = NULL;
        session_t *best = NULL;
        for (session_t *o = n->sessions; o; o = o->next)
            if (o->rx_seq && (!best || o->rx_seq > best->rx_seq))
                best = o;
        if (best) {
            s_make_receiver (self, n, best);
            log_event ("receiver", "node=%s window=%u reason=previous-receiver-closed", n->id,
                       best->rx_frames);
        }
    }
    if (!n->sessions) {
        // Off the ready list before it goes.
        for (node_t **p = &self->ready; *p; p = &(*p)->ready_next)
            if (*p == n) {
                *p = n->ready_next;
                break;
            }
        zhashx_delete (self->nodes, n->id);
    }
}

// The delivery window a receiver may hold at the edge: never more than half
// the edge's pending-output cap, so a burst cannot get it cut off.
static void
s_grant_rx (core_t *self, session_t *s, uint32_t frames, uint64_t bytes)
{
    uint64_t cap = self->cfg->max_pending_bytes / 2;
    s->rx_frames = s->rx_frames + frames < s->rx_frames ? UINT32_MAX : s->rx_frames + frames;
    s->rx_bytes = bytes > cap || s->rx_bytes + bytes > cap ? cap : s->rx_bytes + bytes;
}

// Receive: s becomes the node's receiver (the newest one wins).
static void
s_on_receive (core_t *self, session_t *s, const Liaison__Receive *rx)
{
    node_t *n = s->node;
    bool replaced = n->receiver && n->receiver != s;
    s->rx_seq = ++self->rx_seq;
    s->rx_frames = 0;
    s->rx_bytes = 0;
    s_grant_rx (self, s, rx->credit_frames, rx->credit_bytes);
    if (replaced)
        log_event ("receiver-replaced", "node=%s", n->id);
    log_event ("receiver", "node=%s window=%u", n->id, rx->credit_frames);
    s_make_receiver (self, n, s);
}

/* Queries and Acks take no credit, and each costs the core a store read or
   a signature check: past its rate, a session is cut off. */
static bool
s_within_rate (core_t *self, session_t *s, bool query)
{
    int64_t now = wire_clock_ms ();
    double q = self->cfg->queries_per_s, a = self->cfg->acks_per_s;
    if (s->tokens_ms == 0) {
        s->query_tokens = q;
        s->ack_tokens = a;
    }
    else {
        double secs = (double) (now - s->tokens_ms) / 1000.0;
        s->query_tokens = s->query_tokens + secs * q > q ? q : s->query_tokens + secs * q;
        s->ack_tokens = s->ack_tokens + secs * a > a ? a : s->ack_tokens + secs * a;
    }
    s->tokens_ms = now;
    double *tokens = query ? &s->query_tokens : &s->ack_tokens;
    if (*tokens >= 1.0) {
        *tokens -= 1.0;
        return true;
    }
    s->kicked = true;
    log_event ("session-kicked", "node=%s reason=rate-limited kind=%s", s->peer.node_id,
               query ? "query" : "ack");
    s_kick (self, s->handle, LIAISON__ERROR_CODE__ERR_EXHAUSTED, "rate-limited",
            query ? "more Query frames than limits/queries_per_s allows"
                  : "more Ack frames than limits/acks_per_s allows");
    return false;
}

// Handles one frame of size bytes (as received) from a session.
static void
s_on_frame (core_t *self, uint64_t handle, Liaison__Frame *f, size_t size)
{
    session_t *s = s_session (self, handle);
    if (!s || s->kicked)
        return;  // the session closed (or is closing) while this frame was on the bus
    if ((f->kind_case == LIAISON__FRAME__KIND_QUERY || f->kind_case == LIAISON__FRAME__KIND_ACK)
        && !s_within_rate (self, s, f->kind_case == LIAISON__FRAME__KIND_QUERY))
        return;
    switch (f->kind_case) {
        case LIAISON__FRAME__KIND_SUBMIT:
            s_on_submit (self, s, f, size);
            break;
        case LIAISON__FRAME__KIND_RECEIVE:
            s_on_receive (self, s, f->receive);
            break;
        case LIAISON__FRAME__KIND_RESOLVE:
            s_on_resolve (self, s, f->resolve);
            break;
        case LIAISON__FRAME__KIND_QUERY:
            s_on_query (self, s, f->query);
            break;
        case LIAISON__FRAME__KIND_CREDIT:
            if (s->rx_seq) {
                s_grant_rx (self, s, f->credit->frames, f->credit->bytes);
                if (s->receiver)
                    s_pump (self, s->node);
            }
            break;
        case LIAISON__FRAME__KIND_PING:
            if (f->ping->want_reply && !f->ping->is_reply) {
                // The barrier: the pong goes out after the group commits,
                // behind every receipt for what came before it (held work
                // is released in order); it never forces a commit itself.
                Liaison__Ping pong = LIAISON__PING__INIT;
                pong.nonce = f->ping->nonce;
                pong.is_reply = 1;
                Liaison__Frame out = LIAISON__FRAME__INIT;
                out.kind_case = LIAISON__FRAME__KIND_PING;
                out.ping = &pong;
                bus_buf_t *buf = s_pack (&out);
                held_t *h = buf ? s_hold (self, HELD_SEND) : NULL;
                if (h) {
                    h->handle = handle;
                    h->buf = buf;
                }
                else if (buf)
                    s_send_buf (self, handle, buf);
            }
            break;
        case LIAISON__FRAME__KIND_ACK:
            s_on_ack (self, s, f->ack);
            break;
        case LIAISON__FRAME__KIND_CLOSE:
            s_kick (self, handle, 0, NULL, NULL);
            break;
        default:
            log_event ("session-kicked", "node=%s reason=unexpected-frame kind=%d",
                       s->peer.node_id, (int) f->kind_case);
            s_kick (self, handle, LIAISON__ERROR_CODE__ERR_UNEXPECTED, "unexpected-frame",
                    "frame not valid from a client after Welcome");
            break;
    }
}

static void
s_peer_free (bus_peer_t *peer)
{
    if (peer && peer->key)
        EVP_PKEY_free (peer->key);
    free (peer);
}

static void
s_on_open (core_t *self, uint64_t handle, bus_peer_t *peer)
{
    session_t *s = calloc (1, sizeof *s);
    if (!s) {
        s_peer_free (peer);
        s_kick (self, handle, LIAISON__ERROR_CODE__ERR_EXHAUSTED, "exhausted", "broker out of memory");
        return;
    }
    s->handle = handle;
    s->peer = *peer;
    free (peer);  // the key moved into s->peer
    node_t *n = zhashx_lookup (self->nodes, s->peer.node_id);
    if (!n) {
        n = calloc (1, sizeof *n);
        if (!n) {
            if (s->peer.key)
                EVP_PKEY_free (s->peer.key);
            free (s);
            s_kick (self, handle, LIAISON__ERROR_CODE__ERR_EXHAUSTED, "exhausted", "broker out of memory");
            return;
        }
        snprintf (n->id, sizeof n->id, "%s", s->peer.node_id);
        zhashx_insert (self->nodes, n->id, n);
    }
    size_t count = 0;
    for (session_t *o = n->sessions; o; o = o->next)
        count++;
    if (count >= self->cfg->max_sessions_per_node) {
        log_event ("session-kicked", "node=%s reason=too-many-sessions sessions=%zu", n->id, count);
        s_kick (self, handle, LIAISON__ERROR_CODE__ERR_EXHAUSTED, "too-many-sessions",
                "this node already has the most sessions the broker allows; close one");
        if (!n->sessions)
            zhashx_delete (self->nodes, n->id);
        if (s->peer.key)
            EVP_PKEY_free (s->peer.key);
        free (s);
        return;
    }
    s->node = n;
    s->next = n->sessions;
    n->sessions = s;
    zhashx_insert (self->sessions, (void *) (uintptr_t) handle, s);
    bus_send (self->bus, BUS_ADMIT, handle, 0, NULL);
}

static void
s_on_closed (core_t *self, uint64_t handle)
{
    session_t *s = s_session (self, handle);
    if (!s)
        return;
    zhashx_delete (self->sessions, (void *) (uintptr_t) handle);
    s_node_unlink (self, s);
    // Its undelivered messages stay in the mailbox for the next receiver.
    if (s->peer.key)
        EVP_PKEY_free (s->peer.key);
    free (s);
}

static void
s_node_free (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_session_free (void **item)
{
    session_t *s = *item;
    if (s && s->peer.key)
        EVP_PKEY_free (s->peer.key);
    free (s);
    *item = NULL;
}

static void
s_rules_error (void *arg, const char *file, int line, const char *message)
{
    (void) arg;
    log_event ("rules-error", "file=%s line=%d message=%s", LOG_Q (file), line, LOG_Q (message));
}

// Loads the rules file again; on any error the rules in force stay.
// Messages are decided one at a time by this thread, so each is decided
// by exactly one version.
static void
s_reload_rules (core_t *self, zsock_t *pipe)
{
    rules_t *fresh = rules_load (self->cfg->rules, s_rules_error, NULL);
    if (!fresh) {
        log_event ("rules-reload-failed", "file=%s kept=%s", LOG_Q (self->cfg->rules),
                   rules_hash (self->rules));
        zstr_send (pipe, "FAILED");
        return;
    }
    log_event ("rules-reloaded", "file=%s statements=%zu hash=%s previous=%s",
               LOG_Q (rules_file (fresh)), rules_count (fresh), rules_hash (fresh),
               rules_hash (self->rules));
    rules_destroy (&self->rules);
    self->rules = fresh;
    zstr_send (pipe, "OK");
}

// One broker per state directory: a second one would share the store.
static int
s_lock_state (const char *dir)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/liaisond.lock", dir);
    int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_event ("startup-failed", "reason=%s path=%s detail=%s",
                   LOG_Q ("cannot create the lock file"), LOG_Q (path), LOG_Q (strerror (errno)));
        return -1;
    }
    if (flock (fd, LOCK_EX | LOCK_NB)) {
        log_event ("startup-failed", "reason=%s path=%s",
                   LOG_Q ("another liaisond uses this state directory; stop it first"),
                   LOG_Q (path));
        close (fd);
        return -1;
    }
    return fd;
}

static void
s_fail_start (zsock_t *pipe)
{
    zsock_signal (pipe, 0);
    zstr_send (pipe, "FAILED");
}

void
core_actor (void *pipe_v, void *args_v)
{
    zsock_t *pipe = pipe_v;
    core_args_t *args = args_v;
    core_t self = {.cfg = args->config};
    int lock_fd = -1;
    self.sessions = zhashx_new ();
    self.nodes = zhashx_new ();
    zhashx_set_key_hasher (self.sessions, s_handle_hash);
    zhashx_set_key_comparator (self.sessions, s_handle_cmp);
    zhashx_set_key_duplicator (self.sessions, NULL);
    zhashx_set_key_destructor (self.sessions, NULL);
    zhashx_set_destructor (self.nodes, s_node_free);
    self.bus = zmq_socket (zsys_init (), ZMQ_PAIR);
    int zero = 0;
    zmq_setsockopt (self.bus, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt (self.bus, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt (self.bus, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind (self.bus, args->bus_endpoint)) {
        log_event ("core-failed", "reason=%s", LOG_Q (zmq_strerror (errno)));
        s_fail_start (pipe);
        goto done;
    }
    self.rules = rules_load (self.cfg->rules, s_rules_error, NULL);
    self.scratch = malloc (sizeof *self.scratch);
    self.answer = calloc (1, sizeof *self.answer);
    self.md = EVP_MD_CTX_new ();
    self.sha256 = EVP_MD_fetch (NULL, "SHA256", NULL);
    if (!self.rules || !self.scratch || !self.answer || !self.md || !self.sha256) {
        log_event ("startup-failed", "reason=%s file=%s", LOG_Q ("routing rules do not load"),
                   LOG_Q (self.cfg->rules));
        s_fail_start (pipe);
        goto done;
    }
    log_event ("rules-loaded", "file=%s statements=%zu hash=%s", LOG_Q (rules_file (self.rules)),
               rules_count (self.rules), rules_hash (self.rules));
    lock_fd = s_lock_state (self.cfg->state_dir);
    if (lock_fd < 0) {
        s_fail_start (pipe);
        goto done;
    }
    char path[4096], err[1024];
    snprintf (path, sizeof path, "%s/liaison.db", self.cfg->state_dir);
    store_config_t sc = {.path = path,
                         .max_bytes = self.cfg->store_max_bytes,
                         .wal_limit_bytes = self.cfg->store_wal_limit_bytes};
    int64_t t0 = wire_time_ms ();
    self.store = store_open (&sc, err, sizeof err);
    if (!self.store) {
        log_event ("startup-failed", "reason=store detail=%s", LOG_Q (err));
        s_fail_start (pipe);
        goto done;
    }
    log_event ("store-opened", "path=%s schema=%d ms=%" PRId64, LOG_Q (path), STORE_SCHEMA_VERSION,
               wire_time_ms () - t0);
    if (store_checkpointer_start (self.store, 1000) != STORE_OK) {
        log_event ("startup-failed", "reason=store detail=%s", LOG_Q (store_error (self.store)));
        s_fail_start (pipe);
        goto done;
    }
    self.next_purge_ms = wire_time_ms () + 1000;
    zsock_signal (pipe, 0);
    zstr_send (pipe, "OK");
    zmq_pollitem_t items[] = {{zsock_resolve (pipe), 0, ZMQ_POLLIN, 0},
                              {self.bus, 0, ZMQ_POLLIN, 0}};
    for (;;) {
        if (zmq_poll (items, 2, 250) < 0 && errno != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN) {
            char *cmd = zstr_recv (pipe);
            bool term = !cmd || streq (cmd, "$TERM");
            if (cmd && streq (cmd, "RELOAD"))
                s_reload_rules (&self, pipe);
            zstr_free (&cmd);
            if (term)
                break;
        }
        /* Everything that arrived since the last commit goes into one
           group; it commits when the input drains. */
        bus_msg_t m;
        for (int i = 0; i < 4096 && bus_recv (self.bus, &m) == 0; i++) {
            switch (m.kind) {
                case BUS_OPEN:
                    s_on_open (&self, m.handle, m.ptr);
                    break;
                case BUS_FRAME: {
                    Liaison__Frame *f = m.ptr;
                    s_on_frame (&self, m.handle, f, m.code);
                    wire_codec_free (&f);
                    break;
                }
                case BUS_CLOSED:
                    s_on_closed (&self, m.handle);
                    break;
                default:
                    break;
            }
        }
        s_commit (&self);
        s_tick (&self);
    }
    // Stopping: what is staged was never acknowledged; commit it anyway
    // (its receipts cannot go out, the senders' outboxes resend and the
    // broker answers with the original receipts).
    s_commit (&self);
    log_event ("store-closed", "commits=%" PRIu64, self.commits);
done:
    for (size_t i = 0; i < self.nheld; i++)
        if (self.held[i].buf)
            bus_buf_unref (self.held[i].buf);
    free (self.held);
    store_close (&self.store);
    if (lock_fd >= 0)
        close (lock_fd);
    for (void *item = zhashx_first (self.sessions); item; item = zhashx_next (self.sessions))
        s_session_free (&item);
    zhashx_destroy (&self.sessions);
    zhashx_destroy (&self.nodes);
    rules_destroy (&self.rules);
    free (self.scratch);
    free (self.answer);
    free (self.pack);
    EVP_MD_CTX_free (self.md);
    EVP_MD_free (self.sha256);
    // Drain anything left on the bus so no frame leaks.
    bus_msg_t m;
    while (bus_recv (self.bus, &m) == 0) {
        if (m.kind == BUS_FRAME) {
            Liaison__Frame *f = m.ptr;
            wire_codec_free (&f);
        }
        else if (m.kind == BUS_OPEN)
            s_peer_free (m.ptr);
    }
    zmq_close (self.bus);
    OPENSSL_thread_stop ();
}
