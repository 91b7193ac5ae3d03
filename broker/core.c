/*  The core actor; see core.h.                                              */
#include "core.h"

#include "bus.h"
#include "codec.h"
#include "conn.h"
#include "log.h"
#include "rules.h"

#include <czmq.h>
#include <openssl/crypto.h>

typedef struct node node_t;

// A delivery waiting for its receiver's credit.
typedef struct pend {
    bus_buf_t *buf;           /* packed Deliver frame, one reference */
    uint64_t origin;          /* submitting session, for a receipt if dropped */
    uint8_t id[WIRE_ID_LEN];
    struct pend *next;
} pend_t;

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
    pend_t *pend_head, *pend_tail;
    size_t npend;
    uint64_t pend_bytes;
    struct session *next;     /* in node->sessions */
} session_t;

struct node {
    char id[WIRE_NODE_ID_MAX];
    session_t *sessions;
    session_t *receiver;      /* the newest session that asked to receive */
};

typedef struct {
    const config_t *cfg;
    rules_t *rules;           /* the routing policy in force */
    struct resolution *scratch; /* one resolution at a time, reused (hot path) */
    uint64_t rx_seq;          /* counts Receive frames, for receiver order */
    void *bus;                /* PAIR to the edge */
    zhashx_t *sessions;       /* handle -> session_t */
    zhashx_t *nodes;          /* node id -> node_t */
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
s_receipt_ex (core_t *self, uint64_t handle, const uint8_t *id, const char *recipient,
              int status, const char *reason, const char *rule)
{
    Liaison__Receipt r = LIAISON__RECEIPT__INIT;
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
    s_receipt_ex (self, from->handle, id, recipient, LIAISON__RECEIPT_STATUS__REJECTED, reason,
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

// Pushes queued deliveries while the receiver has credit.
static void
s_drain (core_t *self, session_t *rx)
{
    while (rx->pend_head && rx->rx_frames > 0 && rx->rx_bytes >= rx->pend_head->buf->size) {
        pend_t *p = rx->pend_head;
        rx->pend_head = p->next;
        if (!rx->pend_head)
            rx->pend_tail = NULL;
        rx->npend--;
        rx->pend_bytes -= p->buf->size;
        rx->rx_frames--;
        rx->rx_bytes -= p->buf->size;
        s_send_buf (self, rx->handle, p->buf);
        free (p);
    }
}

// Delivers to a receiver now or queues it; -1 if the queue is full.
static int
s_deliver (core_t *self, session_t *rx, bus_buf_t *buf, session_t *from, const uint8_t *id)
{
    if (!rx->pend_head && rx->rx_frames > 0 && rx->rx_bytes >= buf->size) {
        rx->rx_frames--;
        rx->rx_bytes -= buf->size;
        atomic_fetch_add (&buf->refs, 1);
        s_send_buf (self, rx->handle, buf);
        return 0;
    }
    if (rx->npend >= self->cfg->receiver_queue
        || rx->pend_bytes + buf->size > self->cfg->receiver_queue_bytes)
        return -1;
    pend_t *p = calloc (1, sizeof *p);
    if (!p)
        return -1;
    atomic_fetch_add (&buf->refs, 1);
    p->buf = buf;
    p->origin = from->handle;
    memcpy (p->id, id, WIRE_ID_LEN);
    if (rx->pend_tail)
        rx->pend_tail->next = p;
    else
        rx->pend_head = p;
    rx->pend_tail = p;
    rx->npend++;
    rx->pend_bytes += buf->size;
    return 0;
}

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
    resolution_t *r = self->scratch;
    if (!s_recipients_current (self, env, s->peer.node_id, r)) {
        // One receipt per entry: the refused nodes and the required copies
        // the sender left out are named, each with its rule.
        for (size_t i = 0; i < r->n; i++) {
            const Liaison__Resolution *e = &r->items[i];
            s_reject_rule (self, s, id, e->node[0] ? e->node : e->address,
                           "recipients-changed", e->rule[0] ? e->rule : NULL);
        }
        if (r->n == 0)
            for (size_t i = 0; i < env->n_recipients; i++)
                s_reject (self, s, id, env->recipients[i]->name, "recipients-changed");
        s_credit_back (self, s, frame_size);
        return;
    }
    // Stamp the sender from the certificate.
    char *stamped = strdup (s->peer.node_id);
    if (!stamped) {
        s_credit_back (self, s, frame_size);
        return;
    }
    if (env->sender != protobuf_c_empty_string)
        free (env->sender);
    env->sender = stamped;
    // Pack the Deliver frame once; every recipient shares it.
    Liaison__Deliver d = LIAISON__DELIVER__INIT;
    d.envelope = env;
    Liaison__Frame out = LIAISON__FRAME__INIT;
    out.kind_case = LIAISON__FRAME__KIND_DELIVER;
    out.deliver = &d;
    bus_buf_t *buf = s_pack (&out);
    for (size_t i = 0; buf && i < env->n_recipients; i++) {
        const Liaison__Recipient *r = env->recipients[i];
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = env->recipients[j]->kind == r->kind && !strcmp (env->recipients[j]->name, r->name);
        if (dup)
            continue;
        node_t *n = zhashx_lookup (self->nodes, r->name);
        if (!n || !n->receiver) {
            s_reject (self, s, id, r->name, "recipient-offline");
            continue;
        }
        if (buf->size > self->cfg->max_frame) {
            s_reject (self, s, id, r->name, "too-large");
            continue;
        }
        if (s_deliver (self, n->receiver, buf, s, id))
            s_reject (self, s, id, r->name, "recipient-busy");
    }
    bus_buf_unref (buf);
    s_credit_back (self, s, frame_size);
}

// Moves every queued delivery of `from` to the end of `to`'s queue.
static void
s_move_queue (session_t *from, session_t *to)
{
    if (!from->pend_head)
        return;
    if (to->pend_tail)
        to->pend_tail->next = from->pend_head;
    else
        to->pend_head = from->pend_head;
    to->pend_tail = from->pend_tail;
    to->npend += from->npend;
    to->pend_bytes += from->pend_bytes;
    from->pend_head = from->pend_tail = NULL;
    from->npend = 0;
    from->pend_bytes = 0;
}

// Makes s its node's receiver; the previous one hands over its queue.
static void
s_make_receiver (core_t *self, node_t *n, session_t *s)
{
    session_t *old = n->receiver;
    if (old && old != s) {
        old->receiver = false;
        s_move_queue (old, s);
    }
    s->receiver = true;
    n->receiver = s;
    s_drain (self, s);
}

// Takes s out of its node; if it was the receiver, the most recent other
// session that asked to receive takes over, with the queue.
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
            s_move_queue (s, best);
            s_make_receiver (self, n, best);
            log_event ("receiver", "node=%s window=%u reason=previous-receiver-closed", n->id,
                       best->rx_frames);
        }
    }
    if (!n->sessions)
        zhashx_delete (self->nodes, n->id);
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

// Handles one frame of size bytes (as received) from a session.
static void
s_on_frame (core_t *self, uint64_t handle, Liaison__Frame *f, size_t size)
{
    session_t *s = s_session (self, handle);
    if (!s)
        return;  // the session closed while this frame was on the bus
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
        case LIAISON__FRAME__KIND_CREDIT:
            if (s->rx_seq) {
                s_grant_rx (self, s, f->credit->frames, f->credit->bytes);
                if (s->receiver)
                    s_drain (self, s);
            }
            break;
        case LIAISON__FRAME__KIND_PING:
            if (f->ping->want_reply && !f->ping->is_reply) {
                Liaison__Ping pong = LIAISON__PING__INIT;
                pong.nonce = f->ping->nonce;
                pong.is_reply = 1;
                Liaison__Frame out = LIAISON__FRAME__INIT;
                out.kind_case = LIAISON__FRAME__KIND_PING;
                out.ping = &pong;
                s_send_frame (self, handle, &out);
            }
            break;
        case LIAISON__FRAME__KIND_ACK:
            break;  // DELIVERED/READ receipts arrive with the store
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
s_on_open (core_t *self, uint64_t handle, bus_peer_t *peer)
{
    session_t *s = calloc (1, sizeof *s);
    if (!s) {
        free (peer);
        s_kick (self, handle, LIAISON__ERROR_CODE__ERR_EXHAUSTED, "exhausted", "broker out of memory");
        return;
    }
    s->handle = handle;
    s->peer = *peer;
    free (peer);
    node_t *n = zhashx_lookup (self->nodes, s->peer.node_id);
    if (!n) {
        n = calloc (1, sizeof *n);
        if (!n) {
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
    // Deliveries still queued here (none if another receiver took over):
    // tell their senders.
    while (s->pend_head) {
        pend_t *p = s->pend_head;
        s->pend_head = p->next;
        session_t *from = s_session (self, p->origin);
        if (from)
            s_reject (self, from, p->id, s->peer.node_id, "recipient-disconnected");
        bus_buf_unref (p->buf);
        free (p);
    }
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
    while (s && s->pend_head) {
        pend_t *p = s->pend_head;
        s->pend_head = p->next;
        bus_buf_unref (p->buf);
        free (p);
    }
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

void
core_actor (void *pipe_v, void *args_v)
{
    zsock_t *pipe = pipe_v;
    core_args_t *args = args_v;
    core_t self = {.cfg = args->config};
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
        zsock_signal (pipe, 0);
        zstr_send (pipe, "FAILED");
        goto done;
    }
    self.rules = rules_load (self.cfg->rules, s_rules_error, NULL);
    self.scratch = malloc (sizeof *self.scratch);
    if (!self.rules || !self.scratch) {
        log_event ("startup-failed", "reason=%s file=%s", LOG_Q ("routing rules do not load"),
                   LOG_Q (self.cfg->rules));
        zsock_signal (pipe, 0);
        zstr_send (pipe, "FAILED");
        goto done;
    }
    log_event ("rules-loaded", "file=%s statements=%zu hash=%s", LOG_Q (rules_file (self.rules)),
               rules_count (self.rules), rules_hash (self.rules));
    zsock_signal (pipe, 0);
    zstr_send (pipe, "OK");
    zmq_pollitem_t items[] = {{zsock_resolve (pipe), 0, ZMQ_POLLIN, 0},
                              {self.bus, 0, ZMQ_POLLIN, 0}};
    for (;;) {
        if (zmq_poll (items, 2, -1) < 0 && errno != EINTR)
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
    }
done:
    for (void *item = zhashx_first (self.sessions); item; item = zhashx_next (self.sessions))
        s_session_free (&item);
    zhashx_destroy (&self.sessions);
    zhashx_destroy (&self.nodes);
    rules_destroy (&self.rules);
    free (self.scratch);
    // Drain anything left on the bus so no frame leaks.
    bus_msg_t m;
    while (bus_recv (self.bus, &m) == 0) {
        if (m.kind == BUS_FRAME) {
            Liaison__Frame *f = m.ptr;
            wire_codec_free (&f);
        }
        else if (m.kind == BUS_OPEN)
            free (m.ptr);
    }
    zmq_close (self.bus);
    OPENSSL_thread_stop ();
}
