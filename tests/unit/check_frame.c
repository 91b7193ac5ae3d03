/*  Frame reassembly (client/wire/frame.c): splitting, limits, the global
    reassembly budget, and stopping from the callback.                      */
#include "suites.h"

#include "frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FRAMES 16

// What the frame callback saw: every frame's size and the bodies, in order.
typedef struct {
    size_t count;
    size_t sizes[MAX_FRAMES];
    uint8_t *bytes; /* concatenated bodies */
    size_t nbytes;
    size_t capacity;
    int stop_at;          /* return -1 on this frame (1-based); 0 never */
    const uint8_t *chunk; /* the chunk being fed, to check zero copy */
    size_t chunk_size;
    size_t in_place; /* frames passed by pointer into the chunk */
} collector_t;

static void
s_collector_init (collector_t *c, size_t capacity)
{
    memset (c, 0, sizeof *c);
    c->bytes = malloc (capacity ? capacity : 1);
    ck_assert_ptr_nonnull (c->bytes);
    c->capacity = capacity;
}

static void
s_collector_reset (collector_t *c)
{
    c->count = 0;
    c->nbytes = 0;
    c->in_place = 0;
}

static void
s_collector_fini (collector_t *c)
{
    free (c->bytes);
    c->bytes = NULL;
}

static int
s_collect (void *arg, const uint8_t *data, size_t size)
{
    collector_t *c = arg;
    ck_assert_uint_gt (size, 0);
    ck_assert_uint_lt (c->count, MAX_FRAMES);
    ck_assert_uint_le (c->nbytes + size, c->capacity);
    c->sizes[c->count++] = size;
    memcpy (c->bytes + c->nbytes, data, size);
    c->nbytes += size;
    if (c->chunk && data >= c->chunk && data + size <= c->chunk + c->chunk_size)
        c->in_place++;
    return c->stop_at && (int) c->count == c->stop_at ? -1 : 0;
}

// A stream of frames with the given sizes, bodies filled with a pattern
// that differs per frame. *bodies gets the concatenated bodies.
typedef struct {
    uint8_t *data;
    size_t size;
    uint8_t *bodies;
    size_t nbodies;
    size_t nframes;
    size_t sizes[MAX_FRAMES];
} stream_t;

static void
s_stream_make (stream_t *s, const size_t *sizes, size_t n)
{
    memset (s, 0, sizeof *s);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += sizes[i];
    s->data = malloc (total + n * WIRE_FRAME_HEADER);
    s->bodies = malloc (total);
    ck_assert_ptr_nonnull (s->data);
    ck_assert_ptr_nonnull (s->bodies);
    uint8_t *p = s->data;
    for (size_t i = 0; i < n; i++) {
        wire_frame_put_header (p, (uint32_t) sizes[i]);
        p += WIRE_FRAME_HEADER;
        for (size_t j = 0; j < sizes[i]; j++) {
            uint8_t b = (uint8_t) (j * 31 + i * 7 + (j >> 8));
            *p++ = b;
            s->bodies[s->nbodies++] = b;
        }
        s->sizes[i] = sizes[i];
    }
    s->size = (size_t) (p - s->data);
    s->nframes = n;
}

static void
s_stream_free (stream_t *s)
{
    free (s->data);
    free (s->bodies);
}

// The collector holds exactly the frames of the stream.
static void
s_assert_same (const collector_t *c, const stream_t *s)
{
    ck_assert_uint_eq (c->count, s->nframes);
    for (size_t i = 0; i < s->nframes; i++)
        ck_assert_uint_eq (c->sizes[i], s->sizes[i]);
    ck_assert_uint_eq (c->nbytes, s->nbodies);
    ck_assert_int_eq (memcmp (c->bytes, s->bodies, s->nbodies), 0);
}

// Sizes chosen to cross the header, the 16 KiB first allocation, its
// doubling, and the 64 KiB buffer kept between frames.
static const size_t s_mixed[] = {1, 2, 3, 4, 5, 200, 16384, 17000, 1};

START_TEST (test_frame_byte_at_a_time)
{
    stream_t s;
    s_stream_make (&s, s_mixed, sizeof s_mixed / sizeof s_mixed[0]);
    collector_t c;
    s_collector_init (&c, s.nbodies);
    wire_frame_reader_t *r = wire_frame_reader_new (0);
    ck_assert_ptr_nonnull (r);
    for (size_t i = 0; i < s.size; i++) {
        ck_assert_int_eq (wire_frame_reader_feed (r, s.data + i, 1, s_collect, &c), WIRE_FRAME_OK);
        // A frame completes exactly when its last byte arrives.
        size_t end = 0, done = 0;
        for (size_t f = 0; f < s.nframes; f++) {
            end += WIRE_FRAME_HEADER + s.sizes[f];
            if (end <= i + 1)
                done++;
        }
        ck_assert_uint_eq (c.count, done);
    }
    s_assert_same (&c, &s);
    ck_assert_uint_eq (wire_frame_reader_pending (r), 0);
    wire_frame_reader_destroy (&r);
    ck_assert_ptr_null (r);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    s_collector_fini (&c);
    s_stream_free (&s);
}
END_TEST

START_TEST (test_frame_every_two_chunk_split)
{
    stream_t s;
    s_stream_make (&s, s_mixed, sizeof s_mixed / sizeof s_mixed[0]);
    collector_t c;
    s_collector_init (&c, s.nbodies);
    for (size_t split = 0; split <= s.size; split++) {
        s_collector_reset (&c);
        wire_frame_reader_t *r = wire_frame_reader_new (0);
        ck_assert_ptr_nonnull (r);
        ck_assert_int_eq (wire_frame_reader_feed (r, s.data, split, s_collect, &c), WIRE_FRAME_OK);
        ck_assert_int_eq (wire_frame_reader_feed (r, s.data + split, s.size - split, s_collect, &c),
                          WIRE_FRAME_OK);
        if (c.count != s.nframes || memcmp (c.bytes, s.bodies, s.nbodies) != 0)
            ck_abort_msg ("split at byte %zu: %zu frames, expected %zu", split, c.count, s.nframes);
        s_assert_same (&c, &s);
        ck_assert_uint_eq (wire_frame_reader_pending (r), 0);
        wire_frame_reader_destroy (&r);
        ck_assert_uint_eq (wire_frame_budget_used (), 0);
    }
    s_collector_fini (&c);
    s_stream_free (&s);
}
END_TEST

// Three-chunk splits of a short stream: every (i, j) pair.
START_TEST (test_frame_every_three_chunk_split)
{
    static const size_t sizes[] = {1, 6, 3, 9};
    stream_t s;
    s_stream_make (&s, sizes, sizeof sizes / sizeof sizes[0]);
    collector_t c;
    s_collector_init (&c, s.nbodies);
    for (size_t i = 0; i <= s.size; i++)
        for (size_t j = i; j <= s.size; j++) {
            s_collector_reset (&c);
            wire_frame_reader_t *r = wire_frame_reader_new (64);
            ck_assert_int_eq (wire_frame_reader_feed (r, s.data, i, s_collect, &c), WIRE_FRAME_OK);
            ck_assert_int_eq (wire_frame_reader_feed (r, s.data + i, j - i, s_collect, &c),
                              WIRE_FRAME_OK);
            ck_assert_int_eq (wire_frame_reader_feed (r, s.data + j, s.size - j, s_collect, &c),
                              WIRE_FRAME_OK);
            s_assert_same (&c, &s);
            wire_frame_reader_destroy (&r);
        }
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    s_collector_fini (&c);
    s_stream_free (&s);
}
END_TEST

START_TEST (test_frame_many_in_one_chunk)
{
    static const size_t sizes[] = {10, 1, 300, 4, 70000, 2};
    stream_t s;
    s_stream_make (&s, sizes, sizeof sizes / sizeof sizes[0]);
    collector_t c;
    s_collector_init (&c, s.nbodies);
    c.chunk = s.data;
    c.chunk_size = s.size;
    wire_frame_reader_t *r = wire_frame_reader_new (0);
    ck_assert_int_eq (wire_frame_reader_feed (r, s.data, s.size, s_collect, &c), WIRE_FRAME_OK);
    s_assert_same (&c, &s);
    // Frames lying whole in the chunk are passed without copying, and
    // nothing was charged to the budget.
    ck_assert_uint_eq (c.in_place, s.nframes);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    ck_assert_uint_eq (wire_frame_reader_pending (r), 0);
    wire_frame_reader_destroy (&r);
    s_collector_fini (&c);
    s_stream_free (&s);
}
END_TEST

// The same reader reassembles many frames in a row with its kept buffer.
START_TEST (test_frame_reader_reused)
{
    static const size_t sizes[] = {100, 20000, 50, 65536, 65537, 3};
    stream_t s;
    s_stream_make (&s, sizes, sizeof sizes / sizeof sizes[0]);
    collector_t c;
    s_collector_init (&c, s.nbodies);
    wire_frame_reader_t *r = wire_frame_reader_new (0);
    for (size_t off = 0; off < s.size; off += 997) {
        size_t n = s.size - off < 997 ? s.size - off : 997;
        ck_assert_int_eq (wire_frame_reader_feed (r, s.data + off, n, s_collect, &c),
                          WIRE_FRAME_OK);
        // Never more held than one frame's worth, whatever was declared.
        ck_assert_uint_le (wire_frame_budget_used (), 65537);
    }
    s_assert_same (&c, &s);
    wire_frame_reader_destroy (&r);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    s_collector_fini (&c);
    s_stream_free (&s);
}
END_TEST

START_TEST (test_frame_zero_length)
{
    collector_t c;
    s_collector_init (&c, 16);
    wire_frame_reader_t *r = wire_frame_reader_new (0);
    // A good frame, then a zero length prefix, then another good frame.
    uint8_t data[] = {0, 0, 0, 2, 'o', 'k', 0, 0, 0, 0, 0, 0, 0, 1, 'x'};
    ck_assert_int_eq (wire_frame_reader_feed (r, data, sizeof data, s_collect, &c),
                      WIRE_FRAME_EMPTY);
    ck_assert_uint_eq (c.count, 1);
    ck_assert_uint_eq (c.sizes[0], 2);
    ck_assert_uint_eq (wire_frame_reader_pending (r), 0);
    wire_frame_reader_destroy (&r);

    // Also when the empty prefix arrives one byte at a time.
    s_collector_reset (&c);
    r = wire_frame_reader_new (0);
    static const uint8_t zero[4] = {0};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq (wire_frame_reader_feed (r, zero + i, 1, s_collect, &c), WIRE_FRAME_OK);
    ck_assert_int_eq (wire_frame_reader_feed (r, zero + 3, 1, s_collect, &c), WIRE_FRAME_EMPTY);
    ck_assert_uint_eq (c.count, 0);
    wire_frame_reader_destroy (&r);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    s_collector_fini (&c);
}
END_TEST

START_TEST (test_frame_too_large)
{
    collector_t c;
    s_collector_init (&c, 2048);
    wire_frame_reader_t *r = wire_frame_reader_new (1000);
    uint8_t hdr[WIRE_FRAME_HEADER];
    wire_frame_put_header (hdr, 1001);
    ck_assert_int_eq (wire_frame_reader_feed (r, hdr, sizeof hdr, s_collect, &c),
                      WIRE_FRAME_TOO_LARGE);
    ck_assert_uint_eq (c.count, 0);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    wire_frame_reader_destroy (&r);

    // 4 GiB - 1 on a default reader: refused on the prefix alone, before
    // any body byte arrives, and nothing is charged.
    r = wire_frame_reader_new (0);
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3};
    ck_assert_int_eq (wire_frame_reader_feed (r, huge, 4, s_collect, &c), WIRE_FRAME_TOO_LARGE);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    wire_frame_reader_destroy (&r);
    r = wire_frame_reader_new (WIRE_FRAME_CEILING);
    ck_assert_int_eq (wire_frame_reader_feed (r, huge, sizeof huge, s_collect, &c),
                      WIRE_FRAME_TOO_LARGE);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    ck_assert_uint_eq (wire_frame_reader_pending (r), 0);
    wire_frame_reader_destroy (&r);

    // Exactly the maximum is accepted.
    r = wire_frame_reader_new (1000);
    uint8_t frame[WIRE_FRAME_HEADER + 1000];
    wire_frame_put_header (frame, 1000);
    memset (frame + WIRE_FRAME_HEADER, 0x5a, 1000);
    ck_assert_int_eq (wire_frame_reader_feed (r, frame, sizeof frame, s_collect, &c),
                      WIRE_FRAME_OK);
    ck_assert_uint_eq (c.count, 1);
    ck_assert_uint_eq (c.sizes[0], 1000);
    wire_frame_reader_destroy (&r);
    s_collector_fini (&c);
}
END_TEST

// A peer that declares a large frame and sends little gets memory for
// what it sent, not for what it declared.
START_TEST (test_frame_no_allocation_by_declaration)
{
    collector_t c;
    s_collector_init (&c, 1);
    wire_frame_reader_t *r = wire_frame_reader_new (WIRE_FRAME_CEILING);
    uint8_t data[WIRE_FRAME_HEADER + 10] = {0};
    wire_frame_put_header (data, WIRE_FRAME_CEILING);
    ck_assert_int_eq (wire_frame_reader_feed (r, data, sizeof data, s_collect, &c), WIRE_FRAME_OK);
    ck_assert_uint_gt (wire_frame_budget_used (), 0);
    ck_assert_uint_le (wire_frame_budget_used (), 65536);
    ck_assert_uint_eq (wire_frame_reader_pending (r), 14);
    wire_frame_reader_destroy (&r);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);

    // Nor more than the frame itself when it is small.
    r = wire_frame_reader_new (0);
    wire_frame_put_header (data, 1000);
    ck_assert_int_eq (wire_frame_reader_feed (r, data, sizeof data, s_collect, &c), WIRE_FRAME_OK);
    ck_assert_uint_gt (wire_frame_budget_used (), 0);
    ck_assert_uint_le (wire_frame_budget_used (), 1000);
    wire_frame_reader_destroy (&r);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    s_collector_fini (&c);
}
END_TEST

START_TEST (test_frame_budget)
{
    wire_frame_set_budget (20000);
    collector_t c;
    s_collector_init (&c, 20000);
    wire_frame_reader_t *a = wire_frame_reader_new (0);
    wire_frame_reader_t *b = wire_frame_reader_new (0);
    uint8_t part[WIRE_FRAME_HEADER + 100];
    wire_frame_put_header (part, 15000);
    memset (part + WIRE_FRAME_HEADER, 0xa5, 100);

    ck_assert_int_eq (wire_frame_reader_feed (a, part, sizeof part, s_collect, &c), WIRE_FRAME_OK);
    size_t used_a = wire_frame_budget_used ();
    ck_assert_uint_gt (used_a, 0);
    ck_assert_uint_le (used_a, 20000);
    ck_assert_int_eq (wire_frame_reader_feed (b, part, sizeof part, s_collect, &c),
                      WIRE_FRAME_BUDGET);
    // The refused reader gave back what it had; the other keeps its frame.
    ck_assert_uint_eq (wire_frame_budget_used (), used_a);
    ck_assert_uint_eq (wire_frame_reader_pending (b), 0);
    ck_assert_uint_eq (wire_frame_reader_pending (a), 104);

    // a can still finish its frame.
    uint8_t *rest = malloc (14900);
    memset (rest, 0xa5, 14900);
    ck_assert_int_eq (wire_frame_reader_feed (a, rest, 14900, s_collect, &c), WIRE_FRAME_OK);
    ck_assert_uint_eq (c.count, 1);
    ck_assert_uint_eq (c.sizes[0], 15000);
    ck_assert_uint_eq (c.bytes[0], 0xa5);
    ck_assert_uint_eq (c.bytes[14999], 0xa5);
    free (rest);

    wire_frame_reader_destroy (&a);
    wire_frame_reader_destroy (&b);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    s_collector_fini (&c);
    wire_frame_set_budget (0);
}
END_TEST

// Once a reader gives its bytes back, another reader may use them.
START_TEST (test_frame_budget_returned)
{
    wire_frame_set_budget (20000);
    collector_t c;
    s_collector_init (&c, 1);
    wire_frame_reader_t *a = wire_frame_reader_new (0);
    wire_frame_reader_t *b = wire_frame_reader_new (0);
    uint8_t part[WIRE_FRAME_HEADER + 100] = {0};
    wire_frame_put_header (part, 15000);
    ck_assert_int_eq (wire_frame_reader_feed (a, part, sizeof part, s_collect, &c), WIRE_FRAME_OK);
    wire_frame_reader_destroy (&a);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    ck_assert_int_eq (wire_frame_reader_feed (b, part, sizeof part, s_collect, &c), WIRE_FRAME_OK);
    ck_assert_uint_gt (wire_frame_budget_used (), 0);
    wire_frame_reader_destroy (&b);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);

    // A large frame's buffer goes back to the budget once it is complete.
    wire_frame_set_budget (0);
    wire_frame_reader_t *r = wire_frame_reader_new (0);
    size_t n = 100000;
    uint8_t *big = calloc (1, WIRE_FRAME_HEADER + n);
    wire_frame_put_header (big, (uint32_t) n);
    s_collector_fini (&c);
    s_collector_init (&c, n);
    ck_assert_int_eq (wire_frame_reader_feed (r, big, 5000, s_collect, &c), WIRE_FRAME_OK);
    ck_assert_uint_gt (wire_frame_budget_used (), 0);
    ck_assert_int_eq (
        wire_frame_reader_feed (r, big + 5000, WIRE_FRAME_HEADER + n - 5000, s_collect, &c),
        WIRE_FRAME_OK);
    ck_assert_uint_eq (c.count, 1);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    wire_frame_reader_destroy (&r);
    free (big);
    s_collector_fini (&c);
}
END_TEST

START_TEST (test_frame_budget_default_restored)
{
    // A budget of 0 means the default (256 MiB): a 1 MiB partial frame fits
    // after a tiny budget is replaced.
    wire_frame_set_budget (100);
    wire_frame_reader_t *r = wire_frame_reader_new (0);
    collector_t c;
    s_collector_init (&c, 1);
    uint8_t part[WIRE_FRAME_HEADER + 200] = {0};
    wire_frame_put_header (part, 1 << 20);
    ck_assert_int_eq (wire_frame_reader_feed (r, part, sizeof part, s_collect, &c),
                      WIRE_FRAME_BUDGET);
    wire_frame_reader_destroy (&r);
    wire_frame_set_budget (0);
    r = wire_frame_reader_new (0);
    ck_assert_int_eq (wire_frame_reader_feed (r, part, sizeof part, s_collect, &c), WIRE_FRAME_OK);
    wire_frame_reader_destroy (&r);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    s_collector_fini (&c);
}
END_TEST

START_TEST (test_frame_callback_stops)
{
    static const size_t sizes[] = {3, 4, 5};
    stream_t s;
    s_stream_make (&s, sizes, 3);
    collector_t c;
    s_collector_init (&c, s.nbodies);
    c.stop_at = 2;
    // Whole frames in one chunk: the third is never delivered.
    wire_frame_reader_t *r = wire_frame_reader_new (0);
    ck_assert_int_eq (wire_frame_reader_feed (r, s.data, s.size, s_collect, &c),
                      WIRE_FRAME_STOPPED);
    ck_assert_uint_eq (c.count, 2);
    ck_assert_uint_eq (wire_frame_reader_pending (r), 0);
    wire_frame_reader_destroy (&r);

    // A reassembled frame: the reader drops its buffer.
    s_collector_reset (&c);
    c.stop_at = 1;
    r = wire_frame_reader_new (0);
    ck_assert_int_eq (wire_frame_reader_feed (r, s.data, 5, s_collect, &c), WIRE_FRAME_OK);
    ck_assert_uint_gt (wire_frame_budget_used (), 0);
    ck_assert_int_eq (wire_frame_reader_feed (r, s.data + 5, s.size - 5, s_collect, &c),
                      WIRE_FRAME_STOPPED);
    ck_assert_uint_eq (c.count, 1);
    ck_assert_uint_eq (wire_frame_reader_pending (r), 0);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    wire_frame_reader_destroy (&r);
    s_collector_fini (&c);
    s_stream_free (&s);
}
END_TEST

START_TEST (test_frame_truncated_pending)
{
    collector_t c;
    s_collector_init (&c, 16);
    wire_frame_reader_t *r = wire_frame_reader_new (0);
    ck_assert_uint_eq (wire_frame_reader_pending (r), 0);
    // Half a length prefix.
    uint8_t data[] = {0, 0, 0, 10, 'a', 'b', 'c'};
    ck_assert_int_eq (wire_frame_reader_feed (r, data, 2, s_collect, &c), WIRE_FRAME_OK);
    ck_assert_uint_eq (wire_frame_reader_pending (r), 2);
    // The prefix and 3 of 10 body bytes: 7 bytes of an unfinished frame.
    ck_assert_int_eq (wire_frame_reader_feed (r, data + 2, sizeof data - 2, s_collect, &c),
                      WIRE_FRAME_OK);
    ck_assert_uint_gt (wire_frame_reader_pending (r), 0);
    ck_assert_uint_eq (wire_frame_reader_pending (r), 7);
    ck_assert_uint_eq (c.count, 0);
    wire_frame_reader_destroy (&r);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    s_collector_fini (&c);
}
END_TEST

START_TEST (test_frame_max_clamped)
{
    collector_t c;
    s_collector_init (&c, 1);
    uint8_t data[WIRE_FRAME_HEADER + 1] = {0};

    // Above the ceiling: clamped to it.
    wire_frame_reader_t *r = wire_frame_reader_new (UINT32_MAX);
    wire_frame_put_header (data, WIRE_FRAME_CEILING + 1);
    ck_assert_int_eq (wire_frame_reader_feed (r, data, sizeof data, s_collect, &c),
                      WIRE_FRAME_TOO_LARGE);
    wire_frame_reader_destroy (&r);
    r = wire_frame_reader_new (UINT32_MAX);
    wire_frame_put_header (data, WIRE_FRAME_CEILING);
    ck_assert_int_eq (wire_frame_reader_feed (r, data, sizeof data, s_collect, &c), WIRE_FRAME_OK);
    ck_assert_uint_eq (wire_frame_reader_pending (r), 5);
    wire_frame_reader_destroy (&r);
    r = wire_frame_reader_new (WIRE_FRAME_CEILING + 1);
    wire_frame_put_header (data, WIRE_FRAME_CEILING + 1);
    ck_assert_int_eq (wire_frame_reader_feed (r, data, sizeof data, s_collect, &c),
                      WIRE_FRAME_TOO_LARGE);
    wire_frame_reader_destroy (&r);

    // 0: the default maximum.
    r = wire_frame_reader_new (0);
    wire_frame_put_header (data, WIRE_FRAME_DEFAULT_MAX + 1);
    ck_assert_int_eq (wire_frame_reader_feed (r, data, sizeof data, s_collect, &c),
                      WIRE_FRAME_TOO_LARGE);
    wire_frame_reader_destroy (&r);
    r = wire_frame_reader_new (0);
    wire_frame_put_header (data, WIRE_FRAME_DEFAULT_MAX);
    ck_assert_int_eq (wire_frame_reader_feed (r, data, sizeof data, s_collect, &c), WIRE_FRAME_OK);
    wire_frame_reader_destroy (&r);

    // Below the ceiling: kept as given.
    r = wire_frame_reader_new (10);
    wire_frame_put_header (data, 11);
    ck_assert_int_eq (wire_frame_reader_feed (r, data, sizeof data, s_collect, &c),
                      WIRE_FRAME_TOO_LARGE);
    wire_frame_reader_destroy (&r);
    ck_assert_uint_eq (wire_frame_budget_used (), 0);
    s_collector_fini (&c);
}
END_TEST

START_TEST (test_frame_misc)
{
    // Destroy is NULL-safe and NULLs the pointer.
    wire_frame_reader_destroy (NULL);
    wire_frame_reader_t *r = NULL;
    wire_frame_reader_destroy (&r);
    r = wire_frame_reader_new (0);
    ck_assert_ptr_nonnull (r);
    wire_frame_reader_destroy (&r);
    ck_assert_ptr_null (r);
    wire_frame_reader_destroy (&r);

    uint8_t hdr[4];
    wire_frame_put_header (hdr, 0x01020304u);
    ck_assert_uint_eq (hdr[0], 1);
    ck_assert_uint_eq (hdr[1], 2);
    ck_assert_uint_eq (hdr[2], 3);
    ck_assert_uint_eq (hdr[3], 4);

    // Every status has its own text.
    static const wire_frame_status_t all[] = {WIRE_FRAME_OK,        WIRE_FRAME_EMPTY,
                                              WIRE_FRAME_TOO_LARGE, WIRE_FRAME_BUDGET,
                                              WIRE_FRAME_NOMEM,     WIRE_FRAME_STOPPED};
    size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++) {
        const char *s = wire_frame_strerror (all[i]);
        ck_assert_ptr_nonnull (s);
        ck_assert_uint_gt (strlen (s), 0);
        ck_assert_str_ne (s, wire_frame_strerror ((wire_frame_status_t) 42));
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne (s, wire_frame_strerror (all[j]));
    }
}
END_TEST

Suite *
frame_suite (void)
{
    Suite *s = suite_create ("frame");
    TCase *tc = tcase_create ("reassembly");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_frame_byte_at_a_time);
    tcase_add_test (tc, test_frame_every_two_chunk_split);
    tcase_add_test (tc, test_frame_every_three_chunk_split);
    tcase_add_test (tc, test_frame_many_in_one_chunk);
    tcase_add_test (tc, test_frame_reader_reused);
    suite_add_tcase (s, tc);

    tc = tcase_create ("limits");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_frame_zero_length);
    tcase_add_test (tc, test_frame_too_large);
    tcase_add_test (tc, test_frame_no_allocation_by_declaration);
    tcase_add_test (tc, test_frame_budget);
    tcase_add_test (tc, test_frame_budget_returned);
    tcase_add_test (tc, test_frame_budget_default_restored);
    tcase_add_test (tc, test_frame_callback_stops);
    tcase_add_test (tc, test_frame_truncated_pending);
    tcase_add_test (tc, test_frame_max_clamped);
    tcase_add_test (tc, test_frame_misc);
    suite_add_tcase (s, tc);
    return s;
}
