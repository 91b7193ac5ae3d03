/*  Frame reassembly: a 4-byte big-endian length, then that many bytes.

    A reader belongs to one connection. It grows its buffer with the bytes
    actually received, never with the length a peer declares, and charges
    every byte it holds to a process-wide budget shared by all readers, so a
    thousand peers each declaring 64 MiB cannot make the process allocate
    64 GiB.                                                                   */
#ifndef LIAISON_WIRE_FRAME_H
#define LIAISON_WIRE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_FRAME_HEADER 4
#define WIRE_FRAME_DEFAULT_MAX (4u * 1024 * 1024)
#define WIRE_FRAME_CEILING (64u * 1024 * 1024)

typedef struct wire_frame_reader wire_frame_reader_t;

/* Why wire_frame_reader_feed refused the stream. */
typedef enum {
    WIRE_FRAME_OK = 0,
    WIRE_FRAME_EMPTY = -1,    /* a zero length prefix */
    WIRE_FRAME_TOO_LARGE = -2, /* length prefix above the reader's maximum */
    WIRE_FRAME_BUDGET = -3,   /* the process-wide reassembly budget is spent */
    WIRE_FRAME_NOMEM = -4,    /* allocation failed */
    WIRE_FRAME_STOPPED = -5   /* the callback asked to stop */
} wire_frame_status_t;

/* Called once per complete frame. `data` is borrowed and valid only during
   the call. Return 0 to continue, -1 to stop feeding (the reader then keeps
   no partial state and must not be fed again). */
typedef int (wire_frame_fn) (void *arg, const uint8_t *data, size_t size);

/* Sets the process-wide cap on bytes held in partial frames by all readers.
   Thread-safe; 0 means the default of 256 MiB. */
void wire_frame_set_budget (size_t bytes);

/* Bytes currently held by all readers (for metrics and tests). */
size_t wire_frame_budget_used (void);

/* A reader accepting frames of 1..max_frame bytes (max_frame is clamped to
   WIRE_FRAME_CEILING). Returns NULL when out of memory. */
wire_frame_reader_t *wire_frame_reader_new (uint32_t max_frame);

/* Changes the largest frame accepted from now on (clamped likewise). */
void wire_frame_reader_set_max (wire_frame_reader_t *self, uint32_t max_frame);

/* Frees the reader and returns its bytes to the budget; NULL-safe, sets
   *self_p to NULL. */
void wire_frame_reader_destroy (wire_frame_reader_t **self_p);

/* Feeds stream bytes, calling fn for every frame completed. Frames that lie
   whole inside `data` are passed without copying. Returns WIRE_FRAME_OK or
   the reason the stream is unusable; after an error the connection must be
   closed. */
wire_frame_status_t wire_frame_reader_feed (wire_frame_reader_t *self,
                                            const uint8_t *data, size_t size,
                                            wire_frame_fn *fn, void *arg);

/* Bytes of the unfinished frame received so far, length prefix included
   (0 between frames). */
size_t wire_frame_reader_pending (const wire_frame_reader_t *self);

/* Human text for a status. */
const char *wire_frame_strerror (wire_frame_status_t status);

/* Writes the 4-byte big-endian length prefix for a frame of `size` bytes. */
static inline void
wire_frame_put_header (uint8_t *out, uint32_t size)
{
    out[0] = (uint8_t) (size >> 24);
    out[1] = (uint8_t) (size >> 16);
    out[2] = (uint8_t) (size >> 8);
    out[3] = (uint8_t) size;
}

#endif
