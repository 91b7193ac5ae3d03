/*  fsync_count.so: an LD_PRELOAD shim for bench_durable that counts the
    fsync and fdatasync calls of a process (SQLite's commits, mostly).

    Both are wrapped (the real ones found with dlsym RTLD_NEXT) and counted
    atomically; at exit a destructor appends "PID COUNT" to the file named
    by FSYNC_COUNT_FILE (nothing without it). A process that dies by a
    signal or _exit writes nothing: the caller treats a missing line as
    "not counted". Calls made inside a library through a static reference
    (not through the PLT) are not seen; bench_durable notices a zero.   */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHIM_EXPORT __attribute__ ((visibility ("default")))

static atomic_long s_count;

typedef int (sync_fn) (int fd);

// Looks the real function up once; returns NULL if there is none.
static sync_fn *
s_real (const char *name, sync_fn *_Atomic *cache)
{
    sync_fn *fn = atomic_load (cache);
    if (!fn) {
        fn = (sync_fn *) dlsym (RTLD_NEXT, name);
        atomic_store (cache, fn);
    }
    return fn;
}

SHIM_EXPORT int
fsync (int fd)
{
    static sync_fn *_Atomic real;
    sync_fn *fn = s_real ("fsync", &real);
    atomic_fetch_add (&s_count, 1);
    return fn ? fn (fd) : -1;
}

SHIM_EXPORT int
fdatasync (int fd)
{
    static sync_fn *_Atomic real;
    sync_fn *fn = s_real ("fdatasync", &real);
    atomic_fetch_add (&s_count, 1);
    return fn ? fn (fd) : -1;
}

// One write(2) with O_APPEND, so lines of concurrent processes never mix.
__attribute__ ((destructor)) static void
s_report (void)
{
    const char *path = getenv ("FSYNC_COUNT_FILE");
    if (!path || !*path)
        return;
    int fd = open (path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    char line[64];
    int n = snprintf (line, sizeof line, "%ld %ld\n", (long) getpid (), atomic_load (&s_count));
    if (write (fd, line, (size_t) n) != n) {
        // nothing to do: the bench sees the line missing
    }
    close (fd);
}
