/*  libFuzzer target: the frame reader and the codec, the first code that
    sees bytes from the network.

    The input is both a frame body (decoded whole) and a stream of frames.
    For the stream, the first byte says how many of the next bytes are
    chunk sizes (0..7: 0 means one chunk) and after how many frames the
    handler stops the reader (bits 3..5, 0 for never); the rest is fed to a
    reader accepting frames of up to 1 MiB in chunks of those sizes, and
    every complete frame goes through wire_codec_decode. Invariants checked:
    frames are 1..1 MiB, a decoded frame has a known kind, a refusal says
    why, and a destroyed reader returns every byte to the budget.

    Build and run: see `make fuzz` (clang -fsanitize=fuzzer,address,undefined).
*/
#include "codec.h"
#include "frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FRAME (1u << 20)

typedef struct {
    size_t frames;
    size_t stop_after; /* 0: never stop */
} state_t;

// Decodes one frame body, checking what the codec promises.
static void
s_decode (const uint8_t *data, size_t size)
{
    wire_codec_error_t err;
    memset (&err, 0, sizeof err);
    Liaison__Frame *f = wire_codec_decode (data, size, &err);
    if (f) {
        if (f->kind_case == LIAISON__FRAME__KIND__NOT_SET)
            abort ();
        wire_codec_free (&f);
        if (f)
            abort ();
    }
    else if (err.code != LIAISON__ERROR_CODE__ERR_MALFORMED || !err.reason[0]
             || !memchr (err.reason, 0, sizeof err.reason)
             || !memchr (err.detail, 0, sizeof err.detail))
        abort ();
}

static int
s_on_frame (void *arg, const uint8_t *data, size_t size)
{
    state_t *state = arg;
    if (size == 0 || size > MAX_FRAME)
        abort ();
    s_decode (data, size);
    state->frames++;
    return state->stop_after && state->frames >= state->stop_after ? -1 : 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_decode (data, size);
    if (size == 0)
        return 0;

    size_t nsizes = data[0] & 7;
    state_t state = {0, (size_t) (data[0] >> 3) & 7};
    if (size < 1 + nsizes)
        return 0;
    const uint8_t *sizes = data + 1;
    const uint8_t *stream = data + 1 + nsizes;
    size_t left = size - 1 - nsizes;

    wire_frame_reader_t *reader = wire_frame_reader_new (MAX_FRAME);
    if (!reader)
        return 0;
    for (size_t i = 0; left > 0; i++) {
        size_t chunk = nsizes ? (size_t) sizes[i % nsizes] + 1 : left;
        if (chunk > left)
            chunk = left;
        wire_frame_status_t rc = wire_frame_reader_feed (reader, stream, chunk, s_on_frame, &state);
        if (rc != WIRE_FRAME_OK) {
            // After an error the reader holds nothing.
            if (wire_frame_reader_pending (reader) != 0)
                abort ();
            if (rc == WIRE_FRAME_STOPPED && !state.stop_after)
                abort ();
            break;
        }
        // Between feeds a reader never holds more than one frame.
        if (wire_frame_reader_pending (reader) > MAX_FRAME + WIRE_FRAME_HEADER
            || wire_frame_budget_used () > MAX_FRAME)
            abort ();
        stream += chunk;
        left -= chunk;
    }
    wire_frame_reader_destroy (&reader);
    if (reader || wire_frame_budget_used () != 0)
        abort ();
    return 0;
}
