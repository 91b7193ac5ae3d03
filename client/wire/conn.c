/*  ZMQ_STREAM connection table; see conn.h.                                 */
#include "conn.h"

#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define ID_MAX 255
#define READ_CHUNK 65536
#define SEND_CHUNK (64 * 1024)
#define MAX_PENDING_DISCONNECTS 4096

#define DRAIN_MS 1000

// A connection we close ourselves drains before ZeroMQ drops it: sending
// [id][""] discards whatever the pipe still holds, the TLS alert or
// close_notify that tells the peer why, so we wait for the peer to hang up
// (it does on reading them) or for DRAIN_MS.
typedef enum { S_HANDSHAKE, S_OPEN, S_DRAIN, S_DEAD } state_t;

struct wire_conn {
    wire_conns_t *table;
    uint64_t handle;
    uint8_t id[ID_MAX];       /* ZeroMQ routing id */
    uint8_t id_len;
    state_t state;
    bool opened;              /* on_open was called */
    bool dirty;               /* on the flush list */
    bool closing;             /* close after the next flush */
    bool hs_counted;          /* counted in table->handshaking */
    wire_tls_t *tls;
    wire_frame_reader_t *reader;
    uint8_t *out;             /* plaintext frames waiting for SSL_write */
    size_t out_len, out_cap;
    int64_t created_ms, last_recv_ms;
    char reason[160];         /* why it is being closed */
    char address[64];         /* peer IP address, from ZeroMQ's metadata */
    void *user;
    wire_conn_t *hash_next;   /* routing id hash chain */
    wire_conn_t *dirty_next;  /* flush list */
    wire_conn_t *dead_next;   /* reap list */
    wire_conn_t *drain_next;  /* drain list */
    int64_t drain_until;
};

struct wire_conns {
    void *socket;
    wire_tls_ctx_t *ctx;
    wire_conns_limits_t limits;
    wire_conns_handler_t handler;
    void *arg;
    wire_conn_t **slots;      /* by handle slot */
    uint32_t *gens;           /* generation per slot */
    size_t nslots;
    size_t count;
    wire_conn_t **hash;       /* routing id -> conn */
    size_t hash_size;         /* power of two */
    wire_conn_t *dirty;       /* connections with output to flush */
    wire_conn_t *dead;        /* connections to reap after callbacks */
    wire_conn_t *draining;    /* closed by us, waiting for the peer to hang up */
    size_t handshaking;       /* connections still in the TLS handshake */
    /* Disconnects ZeroMQ could not take yet (the peer's pipe was full):
       retried on every flush, and counted against max_conns meanwhile. */
    struct { uint8_t id[ID_MAX]; uint8_t len; } *undead;
    size_t nundead;
    uint8_t *rbuf;            /* plaintext read buffer */
};

int64_t
wire_clock_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
wire_time_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t
s_hash (const uint8_t *id, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ id[i]) * 1099511628211ULL;
    return (size_t) h;
}

static wire_conn_t **
s_hash_slot (wire_conns_t *self, const uint8_t *id, size_t len)
{
    wire_conn_t **p = &self->hash[s_hash (id, len) & (self->hash_size - 1)];
    while (*p && !((*p)->id_len == len && memcmp ((*p)->id, id, len) == 0))
        p = &(*p)->hash_next;
    return p;
}

static int
s_hash_grow (wire_conns_t *self)
{
    size_t size = self->hash_size * 2;
    wire_conn_t **hash = calloc (size, sizeof *hash);
    if (!hash)
        return -1;
    for (size_t i = 0; i < self->hash_size; i++) {
        wire_conn_t *c = self->hash[i];
        while (c) {
            wire_conn_t *next = c->hash_next;
            size_t b = s_hash (c->id, c->id_len) & (size - 1);
            c->hash_next = hash[b];
            hash[b] = c;
            c = next;
        }
    }
    free (self->hash);
    self->hash = hash;
    self->hash_size = size;
    return 0;
}

wire_conns_t *
wire_conns_new (void *socket, wire_tls_ctx_t *ctx, const wire_conns_limits_t *limits,
                const wire_conns_handler_t *handler, void *arg)
{
    wire_conns_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->socket = socket;
    self->limits = *limits;
    self->handler = *handler;
    self->arg = arg;
    self->hash_size = 64;
    self->hash = calloc (self->hash_size, sizeof *self->hash);
    self->rbuf = malloc (READ_CHUNK);
    if (!self->hash || !self->rbuf) {
        free (self->hash);
        free (self->rbuf);
        free (self);
        return NULL;
    }
    wire_conns_set_ctx (self, ctx);
    return self;
}

void
wire_conns_set_ctx (wire_conns_t *self, wire_tls_ctx_t *ctx)
{
    wire_tls_ctx_destroy (&self->ctx);
    self->ctx = wire_tls_ctx_ref (ctx);
}

static void s_reap (wire_conns_t *self);

static void
s_conn_free (wire_conn_t *c)
{
    wire_tls_destroy (&c->tls);
    wire_frame_reader_destroy (&c->reader);
    free (c->out);
    free (c);
}

void
wire_conns_destroy (wire_conns_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    wire_conns_t *self = *self_p;
    s_reap (self);
    // Every connection leaves the table before any on_close runs, so a
    // handler that looks another one up finds nothing rather than freed memory.
    for (size_t i = 0; i < self->nslots; i++)
        if (self->slots[i])
            self->slots[i]->state = S_DEAD;
    for (size_t i = 0; i < self->nslots; i++) {
        wire_conn_t *c = self->slots[i];
        if (!c)
            continue;
        self->slots[i] = NULL;
        if (self->handler.on_close)
            self->handler.on_close (self->arg, c, c->opened, "shutting down");
        s_conn_free (c);
    }
    free (self->undead);
    free (self->slots);
    free (self->gens);
    free (self->hash);
    free (self->rbuf);
    wire_tls_ctx_destroy (&self->ctx);
    free (self);
    *self_p = NULL;
}

static void
s_mark_dirty (wire_conn_t *c)
{
    if (!c->dirty && c->state != S_DEAD && c->state != S_DRAIN) {
        c->dirty = true;
        c->dirty_next = c->table->dirty;
        c->table->dirty = c;
    }
}

// Sends [id][""], which tells ZeroMQ to close the TCP connection. If the
// peer's pipe is full the id frame fails with EAGAIN: the disconnect is
// remembered and retried, so the TCP connection is never orphaned.
static void
s_send_disconnect (wire_conns_t *self, const uint8_t *id, size_t len)
{
    if (zmq_send (self->socket, id, len, ZMQ_SNDMORE | ZMQ_DONTWAIT) == (int) len) {
        zmq_send (self->socket, "", 0, ZMQ_DONTWAIT);
        return;
    }
    if (errno != EAGAIN || self->nundead >= MAX_PENDING_DISCONNECTS)
        return;  // gone already, or too many: ZMQ_TCP_MAXRT drops dead peers
    if (!self->undead) {
        self->undead = calloc (MAX_PENDING_DISCONNECTS, sizeof *self->undead);
        if (!self->undead)
            return;
    }
    memcpy (self->undead[self->nundead].id, id, len);
    self->undead[self->nundead].len = (uint8_t) len;
    self->nundead++;
}

static void
s_retry_disconnects (wire_conns_t *self)
{
    size_t n = self->nundead;
    self->nundead = 0;
    for (size_t i = 0; i < n; i++) {
        // Copy out first: a failed retry appends to the same array.
        uint8_t id[ID_MAX];
        size_t len = self->undead[i].len;
        memcpy (id, self->undead[i].id, len);
        s_send_disconnect (self, id, len);
    }
}

// Leaves the handshake count (on success or death).
static void
s_hs_done (wire_conn_t *c)
{
    if (c->hs_counted) {
        c->hs_counted = false;
        c->table->handshaking--;
    }
}

// Starts an orderly close: what is queued is flushed, then close_notify;
// input is ignored from now on, and the connection is dropped after
// DRAIN_MS even if the peer never takes the bytes.
static void
s_begin_close (wire_conn_t *c, const char *reason)
{
    if (c->closing)
        return;
    if (reason != c->reason)
        snprintf (c->reason, sizeof c->reason, "%s", reason);
    c->closing = true;
    c->drain_until = wire_clock_ms () + DRAIN_MS;
    s_mark_dirty (c);
}

// Marks conn dead (it is reaped after the current callbacks) and tells
// ZeroMQ to drop the TCP connection unless the peer already did.
static void
s_kill (wire_conn_t *c, const char *reason, bool notify_zmq)
{
    if (c->state == S_DEAD)
        return;
    wire_conns_t *self = c->table;
    if (!c->reason[0])
        snprintf (c->reason, sizeof c->reason, "%s", reason);
    if (notify_zmq)
        s_send_disconnect (self, c->id, c->id_len);
    s_hs_done (c);
    if (c->state == S_DRAIN)
        for (wire_conn_t **d = &self->draining; *d; d = &(*d)->drain_next)
            if (*d == c) {
                *d = c->drain_next;
                break;
            }
    c->state = S_DEAD;
    // Out of the hash at once, so a reused routing id starts afresh.
    wire_conn_t **p = s_hash_slot (self, c->id, c->id_len);
    if (*p == c)
        *p = c->hash_next;
    if (c->dirty)
        for (wire_conn_t **d = &self->dirty; *d; d = &(*d)->dirty_next)
            if (*d == c) {
                *d = c->dirty_next;
                c->dirty = false;
                break;
            }
    c->dead_next = self->dead;
    self->dead = c;
}

static void
s_reap (wire_conns_t *self)
{
    while (self->dead) {
        wire_conn_t *c = self->dead;
        self->dead = c->dead_next;
        if (self->handler.on_close)
            self->handler.on_close (self->arg, c, c->opened, c->reason);
        uint32_t slot = (uint32_t) c->handle;
        self->slots[slot] = NULL;
        self->count--;
        s_conn_free (c);
    }
}

static wire_conn_t *
s_conn_new (wire_conns_t *self, const uint8_t *id, size_t len)
{
    size_t slot = 0;
    while (slot < self->nslots && self->slots[slot])
        slot++;
    if (slot == self->nslots) {
        size_t n = self->nslots ? self->nslots * 2 : 16;
        wire_conn_t **slots = realloc (self->slots, n * sizeof *slots);
        if (!slots)
            return NULL;
        self->slots = slots;
        uint32_t *gens = realloc (self->gens, n * sizeof *gens);
        if (!gens)
            return NULL;
        self->gens = gens;
        for (size_t i = self->nslots; i < n; i++) {
            slots[i] = NULL;
            gens[i] = 0;
        }
        self->nslots = n;
    }
    if (self->count * 2 >= self->hash_size && s_hash_grow (self))
        return NULL;
    wire_conn_t *c = calloc (1, sizeof *c);
    if (!c)
        return NULL;
    c->table = self;
    c->tls = wire_tls_new (self->ctx);
    c->reader = wire_frame_reader_new (self->limits.first_max_frame ? self->limits.first_max_frame
                                                                     : self->limits.max_frame);
    if (!c->tls || !c->reader) {
        s_conn_free (c);
        return NULL;
    }
    memcpy (c->id, id, len);
    c->id_len = (uint8_t) len;
    c->handle = (uint64_t) ++self->gens[slot] << 32 | slot;
    c->hs_counted = true;
    self->handshaking++;
    c->created_ms = c->last_recv_ms = wire_clock_ms ();
    self->slots[slot] = c;
    self->count++;
    wire_conn_t **p = s_hash_slot (self, id, len);
    c->hash_next = NULL;
    *p = c;
    return c;
}

// Frame reader callback: hands each frame to the handler.
static int
s_on_frame (void *arg, const uint8_t *data, size_t size)
{
    wire_conn_t *c = arg;
    if (c->state != S_OPEN)
        return -1;
    if (c->table->handler.on_frame (c->table->arg, c, data, size) != 0 || c->state != S_OPEN
        || c->closing)
        return -1;
    return 0;
}

// Ciphertext arrived for conn: advance the handshake, then read frames.
static void
s_conn_input (wire_conns_t *self, wire_conn_t *c, const uint8_t *data, size_t size)
{
    if (c->closing)
        return;  // we are hanging up: nothing more is read
    c->last_recv_ms = wire_clock_ms ();
    if (wire_tls_push (c->tls, data, size)) {
        s_kill (c, "out of memory for TLS input", true);
        return;
    }
    if (c->state == S_HANDSHAKE) {
        int rc = wire_tls_handshake (c->tls);
        s_mark_dirty (c);  // handshake output, or the alert explaining a refusal
        if (rc < 0) {
            s_begin_close (c, wire_tls_reason (c->tls));
            return;
        }
        if (rc == 0)
            return;
        s_hs_done (c);
        c->state = S_OPEN;
        c->opened = true;
        if (self->handler.on_open)
            self->handler.on_open (self->arg, c);
        if (c->state != S_OPEN)
            return;
    }
    while (c->state == S_OPEN && !c->closing) {
        int n = wire_tls_read (c->tls, self->rbuf, READ_CHUNK);
        if (n == 0)
            break;
        if (n < 0) {
            s_begin_close (c, wire_tls_reason (c->tls));
            break;
        }
        wire_frame_status_t st = wire_frame_reader_feed (c->reader, self->rbuf, (size_t) n,
                                                         s_on_frame, c);
        if (st != WIRE_FRAME_OK && st != WIRE_FRAME_STOPPED) {
            // The owner may queue an Error frame before the close.
            snprintf (c->reason, sizeof c->reason, "%s", wire_frame_strerror (st));
            if (self->handler.on_bad_stream)
                self->handler.on_bad_stream (self->arg, c, st);
            wire_conn_close (c, c->reason);
            break;
        }
        if (st == WIRE_FRAME_STOPPED)
            break;
    }
}

int
wire_conns_recv (wire_conns_t *self, int max)
{
    int done = 0;
    while (done < max) {
        zmq_msg_t idm, data;
        zmq_msg_init (&idm);
        if (zmq_msg_recv (&idm, self->socket, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&idm);
            break;
        }
        zmq_msg_init (&data);
        if (!zmq_msg_more (&idm) || zmq_msg_recv (&data, self->socket, 0) < 0) {
            zmq_msg_close (&idm);
            zmq_msg_close (&data);
            continue;
        }
        done++;
        const uint8_t *id = zmq_msg_data (&idm);
        size_t id_len = zmq_msg_size (&idm);
        size_t size = zmq_msg_size (&data);
        if (id_len == 0 || id_len > ID_MAX) {
            zmq_msg_close (&idm);
            zmq_msg_close (&data);
            continue;
        }
        wire_conn_t *c = *s_hash_slot (self, id, id_len);
        if (c && !c->address[0]) {
            const char *a = zmq_msg_gets (&data, "Peer-Address");
            if (a)
                snprintf (c->address, sizeof c->address, "%s", a);
        }
        if (!c && size == 0) {
            // A new TCP connection.
            if (self->count + self->nundead >= self->limits.max_conns
                || (self->limits.max_handshakes && self->handshaking >= self->limits.max_handshakes)
                || !(c = s_conn_new (self, id, id_len))) {
                s_send_disconnect (self, id, id_len);
                zmq_msg_close (&idm);
                zmq_msg_close (&data);
                continue;
            }
            const char *a = zmq_msg_gets (&data, "Peer-Address");
            if (a)
                snprintf (c->address, sizeof c->address, "%s", a);
            if (wire_tls_handshake (c->tls) < 0)  // client: ClientHello
                s_kill (c, wire_tls_reason (c->tls), true);
            else
                s_mark_dirty (c);
        }
        else if (c && size == 0)
            s_kill (c, c->state == S_HANDSHAKE ? "peer disconnected during handshake"
                                               : "peer disconnected", false);
        else if (c && c->state != S_DRAIN)
            s_conn_input (self, c, zmq_msg_data (&data), size);
        zmq_msg_close (&idm);
        zmq_msg_close (&data);
    }
    s_reap (self);
    return done;
}

// TLS adds a header and an AEAD tag to every record of up to 16 KiB.
#define RECORD_OVERHEAD(n) (((n) / 16384 + 1) * 32)

static int
s_reserve (wire_conn_t *c, size_t more)
{
    size_t need = c->out_len + more;
    size_t limit = c->table->limits.max_pending;
    // Plaintext queued plus ciphertext not yet taken, as it will be once
    // encrypted, stays under the cap.
    if (need + RECORD_OVERHEAD (need) + wire_tls_pending (c->tls) > limit)
        return -1;
    if (need <= c->out_cap)
        return 0;
    size_t cap = c->out_cap ? c->out_cap * 2 : 16384;
    while (cap < need)
        cap *= 2;
    if (cap > limit)
        cap = need;
    uint8_t *out = realloc (c->out, cap);
    if (!out)
        return -1;
    c->out = out;
    c->out_cap = cap;
    return 0;
}

uint8_t *
wire_conn_frame_begin (wire_conn_t *c, size_t size)
{
    if (c->state != S_OPEN || c->closing || size == 0 || size > UINT32_MAX)
        return NULL;
    if (s_reserve (c, WIRE_FRAME_HEADER + size)) {
        s_kill (c, "peer is not reading: pending output over the limit", true);
        return NULL;
    }
    uint8_t *p = c->out + c->out_len;
    wire_frame_put_header (p, (uint32_t) size);
    c->out_len += WIRE_FRAME_HEADER + size;
    s_mark_dirty (c);
    return p + WIRE_FRAME_HEADER;
}

int
wire_conn_frame_write (wire_conn_t *c, const void *data, size_t size)
{
    uint8_t *p = wire_conn_frame_begin (c, size);
    if (!p)
        return -1;
    memcpy (p, data, size);
    return 0;
}

void
wire_conn_lost (wire_conn_t *c, const char *reason)
{
    s_kill (c, reason, false);
}

void
wire_conn_close (wire_conn_t *c, const char *reason)
{
    if (c->state == S_DEAD || c->state == S_DRAIN)
        return;
    s_begin_close (c, reason);
}

// Encrypts queued plaintext and sends ciphertext; false if c is blocked.
static bool
s_conn_flush (wire_conns_t *self, wire_conn_t *c)
{
    if (c->out_len) {
        if (wire_tls_write (c->tls, c->out, c->out_len)) {
            s_kill (c, wire_tls_reason (c->tls), true);
            return true;
        }
        c->out_len = 0;
        if (c->out_cap > 1024 * 1024) {  // give back a burst's buffer
            free (c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
    }
    if (c->closing && !wire_tls_peer_closed (c->tls))
        wire_tls_close (c->tls);
    size_t pending;
    while ((pending = wire_tls_pending (c->tls)) > 0) {
        size_t n = pending > SEND_CHUNK ? SEND_CHUNK : pending;
        zmq_msg_t msg;
        if (zmq_msg_init_size (&msg, n))
            return false;  // out of memory: retry on the next pass
        if (zmq_send (self->socket, c->id, c->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT)
            != (int) c->id_len) {
            int e = errno;
            zmq_msg_close (&msg);  // never send the data frame alone
            if (e == EAGAIN) {
                // The peer's pipe is full: what it has not taken is capped.
                if (pending > self->limits.max_pending) {
                    s_kill (c, "peer is not reading: pending output over the limit", true);
                    return true;
                }
                if (c->closing && wire_clock_ms () >= c->drain_until) {
                    s_kill (c, c->reason, true);
                    return true;
                }
                return false;
            }
            s_kill (c, e == EHOSTUNREACH ? "peer disconnected" : "send failed", false);
            return true;
        }
        n = wire_tls_pull (c->tls, zmq_msg_data (&msg), n);
        if (zmq_msg_send (&msg, self->socket, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&msg);
            s_kill (c, "send failed", true);
            return true;
        }
    }
    if (c->closing) {
        if (wire_tls_peer_closed (c->tls))
            s_kill (c, c->reason[0] ? c->reason : "closed", true);
        else {
            c->state = S_DRAIN;
            c->drain_until = wire_clock_ms () + DRAIN_MS;  // from the last byte out
            c->drain_next = self->draining;
            self->draining = c;
        }
    }
    return true;
}

bool
wire_conns_flush (wire_conns_t *self)
{
    if (self->nundead)
        s_retry_disconnects (self);
    if (self->draining) {
        int64_t now = wire_clock_ms ();
        wire_conn_t **d = &self->draining;
        while (*d) {
            wire_conn_t *c = *d;
            if (now >= c->drain_until) {
                *d = c->drain_next;
                c->state = S_OPEN;  // not draining any more: s_kill must not unlink it again
                s_kill (c, c->reason[0] ? c->reason : "closed", true);
            }
            else
                d = &c->drain_next;
        }
    }
    wire_conn_t *list = self->dirty;
    self->dirty = NULL;
    bool waiting = false;
    while (list) {
        wire_conn_t *c = list;
        list = c->dirty_next;
        c->dirty = false;
        if (c->state == S_DEAD || c->state == S_DRAIN)
            continue;
        if (!s_conn_flush (self, c) && c->state != S_DEAD) {
            s_mark_dirty (c);  // retry on the next pass
            waiting = true;
        }
    }
    s_reap (self);
    return waiting;
}

wire_conn_t *
wire_conns_lookup (wire_conns_t *self, uint64_t handle)
{
    uint32_t slot = (uint32_t) handle;
    if (slot >= self->nslots)
        return NULL;
    wire_conn_t *c = self->slots[slot];
    return c && c->handle == handle && c->state != S_DEAD && c->state != S_DRAIN ? c : NULL;
}

size_t
wire_conns_count (const wire_conns_t *self)
{
    return self->count;
}

void
wire_conns_foreach (wire_conns_t *self, void (*fn) (void *, wire_conn_t *), void *arg)
{
    for (size_t i = 0; i < self->nslots; i++) {
        wire_conn_t *c = self->slots[i];
        if (c && c->state != S_DEAD && c->state != S_DRAIN)
            fn (arg, c);
    }
    s_reap (self);
}

uint64_t
wire_conn_handle (const wire_conn_t *c)
{
    return c->handle;
}

const wire_identity_t *
wire_conn_peer (const wire_conn_t *c)
{
    return wire_tls_peer (c->tls);
}

wire_tls_t *
wire_conn_tls (wire_conn_t *c)
{
    return c->tls;
}

bool
wire_conn_is_open (const wire_conn_t *c)
{
    return c->state == S_OPEN && !c->closing;
}

int64_t
wire_conn_created_ms (const wire_conn_t *c)
{
    return c->created_ms;
}

int64_t
wire_conn_last_recv_ms (const wire_conn_t *c)
{
    return c->last_recv_ms;
}

void
wire_conn_set_max_frame (wire_conn_t *c, uint32_t max_frame)
{
    wire_frame_reader_set_max (c->reader, max_frame);
}

const char *
wire_conn_address (const wire_conn_t *c)
{
    return c->address[0] ? c->address : "-";
}

void
wire_conn_set_user (wire_conn_t *c, void *user)
{
    c->user = user;
}

void *
wire_conn_user (const wire_conn_t *c)
{
    return c->user;
}
