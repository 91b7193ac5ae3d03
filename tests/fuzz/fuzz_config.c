/*  libFuzzer target: the broker's configuration loader (broker/config.c).

    Each input is written to an in-memory file (memfd) and loaded through
    /proc/self/fd/N, so config_load runs exactly as on a real file: stat,
    size limit, NUL check, line checks, zconfig parsing and validation.
    Invariants checked: a loaded config has every required field and the
    documented ranges; a refusal leaves a message that starts with the path.

    Build: clang -fsanitize=fuzzer,address,undefined with broker/config.c
    and libczmq (see tests/fuzz/fuzz_frame.c for the rest of the line).
*/
#include "config.h"
#include "frame.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int s_fd = -1;
static char s_path[64];

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (s_fd < 0) {
        s_fd = memfd_create ("liaisond.cfg", 0);
        if (s_fd < 0)
            abort ();
        snprintf (s_path, sizeof s_path, "/proc/self/fd/%d", s_fd);
    }
    if (ftruncate (s_fd, 0) != 0)
        abort ();
    if (size && pwrite (s_fd, data, size, 0) != (ssize_t) size)
        abort ();

    char err[512];
    err[0] = 0;
    config_t *cfg = config_load (s_path, err, sizeof err);
    if (cfg) {
        if (!cfg->endpoint || strncmp (cfg->endpoint, "tcp://", 6) != 0 || !cfg->state_dir
            || !cfg->cert || !cfg->key || !cfg->ca || !cfg->crl_dir)
            abort ();
        if (cfg->max_frame < 4096 || cfg->max_frame > WIRE_FRAME_CEILING
            || cfg->credit_bytes < cfg->max_frame || cfg->credit_frames < 1
            || cfg->heartbeat_ms < 100)
            abort ();
        config_destroy (&cfg);
        if (cfg)
            abort ();
    }
    else if (strncmp (err, s_path, strlen (s_path)) != 0)
        abort ();
    return 0;
}
