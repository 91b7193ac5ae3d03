/*  Frame reassembly; see frame.h.                                            */
#include "frame.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BUDGET ((size_t) 256 * 1024 * 1024)

static atomic_size_t s_budget = DEFAULT_BUDGET;
static atomic_size_t s_used;

struct wire_frame_reader {
    uint32_t max_frame;
    uint8_t header[WIRE_FRAME_HEADER];
    size_t header_have;  /* bytes of the length prefix received so far */
    uint32_t want;       /* declared length of the current frame, 0 if none */
    uint8_t *buf;        /* partial frame body */
    size_t have;         /* bytes of the body received */
    size_t cap;          /* allocated size of buf, charged to the budget */
};

void
wire_frame_set_budget (size_t bytes)
{
    atomic_store (&s_budget, bytes ? bytes : DEFAULT_BUDGET);
}

size_t
wire_frame_budget_used (void)
{
    return atomic_load (&s_used);
}

// Charges `bytes` to the global budget; fails if it would be exceeded.
static int
s_charge (size_t bytes)
{
    size_t used = atomic_load (&s_used);
    do {
        if (used + bytes > atomic_load (&s_budget) || used + bytes < used)
            return -1;
    } while (!atomic_compare_exchange_weak (&s_used, &used, used + bytes));
    return 0;
}

static void
s_release (size_t bytes)
{
    atomic_fetch_sub (&s_used, bytes);
}

wire_frame_reader_t *
wire_frame_reader_new (uint32_t max_frame)
{
    wire_frame_reader_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    if (max_frame == 0 || max_frame > WIRE_FRAME_CEILING)
        max_frame = max_frame ? WIRE_FRAME_CEILING : WIRE_FRAME_DEFAULT_MAX;
    self->max_frame = max_frame;
    return self;
}

void
wire_frame_reader_set_max (wire_frame_reader_t *self, uint32_t max_frame)
{
    if (max_frame == 0 || max_frame > WIRE_FRAME_CEILING)
        max_frame = max_frame ? WIRE_FRAME_CEILING : WIRE_FRAME_DEFAULT_MAX;
    self->max_frame = max_frame;
}

static void
s_drop_buffer (wire_frame_reader_t *self)
{
    if (self->cap)
        s_release (self->cap);
    free (self->buf);
    self->buf = NULL;
    self->cap = self->have = 0;
    self->want = 0;
    self->header_have = 0;
}

void
wire_frame_reader_destroy (wire_frame_reader_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_drop_buffer (*self_p);
    free (*self_p);
    *self_p = NULL;
}

size_t
wire_frame_reader_pending (const wire_frame_reader_t *self)
{
    return self->want ? WIRE_FRAME_HEADER + self->have : self->header_have;
}

// Makes room for `more` body bytes, growing geometrically but never beyond
// what has actually arrived plus this chunk, and never beyond the frame.
static wire_frame_status_t
s_reserve (wire_frame_reader_t *self, size_t more)
{
    size_t need = self->have + more;
    if (need <= self->cap)
        return WIRE_FRAME_OK;
    size_t cap = self->cap ? self->cap * 2 : 16384;
    if (cap < need)
        cap = need;
    if (cap > self->want)
        cap = self->want;
    if (s_charge (cap - self->cap))
        return WIRE_FRAME_BUDGET;
    uint8_t *buf = realloc (self->buf, cap);
    if (!buf) {
        s_release (cap - self->cap);
        return WIRE_FRAME_NOMEM;
    }
    self->buf = buf;
    self->cap = cap;
    return WIRE_FRAME_OK;
}

wire_frame_status_t
wire_frame_reader_feed (wire_frame_reader_t *self, const uint8_t *data,
                        size_t size, wire_frame_fn *fn, void *arg)
{
    while (size > 0) {
        if (self->want == 0) {
            // Length prefix, possibly split across chunks.
            size_t take = WIRE_FRAME_HEADER - self->header_have;
            if (take > size)
                take = size;
            memcpy (self->header + self->header_have, data, take);
            self->header_have += take;
            data += take;
            size -= take;
            if (self->header_have < WIRE_FRAME_HEADER)
                return WIRE_FRAME_OK;
            uint32_t len = (uint32_t) self->header[0] << 24
                           | (uint32_t) self->header[1] << 16
                           | (uint32_t) self->header[2] << 8 | self->header[3];
            self->header_have = 0;
            if (len == 0) {
                s_drop_buffer (self);
                return WIRE_FRAME_EMPTY;
            }
            if (len > self->max_frame) {
                s_drop_buffer (self);
                return WIRE_FRAME_TOO_LARGE;
            }
            self->want = len;
            // Fast path: the whole frame is in this chunk, pass it in place.
            if (size >= len) {
                self->want = 0;
                if (fn (arg, data, len)) {
                    s_drop_buffer (self);
                    return WIRE_FRAME_STOPPED;
                }
                data += len;
                size -= len;
            }
            continue;
        }
        size_t take = self->want - self->have;
        if (take > size)
            take = size;
        wire_frame_status_t rc = s_reserve (self, take);
        if (rc != WIRE_FRAME_OK) {
            s_drop_buffer (self);
            return rc;
        }
        memcpy (self->buf + self->have, data, take);
        self->have += take;
        data += take;
        size -= take;
        if (self->have == self->want) {
            int stop = fn (arg, self->buf, self->have);
            // Keep a small buffer for the next split frame; return the rest,
            // so idle connections hold little of the shared budget.
            if (self->cap > 16384 || stop) {
                s_drop_buffer (self);
            }
            else {
                self->have = 0;
                self->want = 0;
            }
            if (stop)
                return WIRE_FRAME_STOPPED;
        }
    }
    return WIRE_FRAME_OK;
}

const char *
wire_frame_strerror (wire_frame_status_t status)
{
    switch (status) {
        case WIRE_FRAME_OK:
            return "ok";
        case WIRE_FRAME_EMPTY:
            return "zero-length frame";
        case WIRE_FRAME_TOO_LARGE:
            return "frame longer than the maximum frame size";
        case WIRE_FRAME_BUDGET:
            return "reassembly memory budget exhausted";
        case WIRE_FRAME_NOMEM:
            return "out of memory";
        case WIRE_FRAME_STOPPED:
            return "stopped by the frame handler";
    }
    return "unknown frame status";
}
