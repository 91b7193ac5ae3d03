/*  One line per event on standard error: `ts=... event=NAME key=value ...`.
    Values from peers pass through log_str, which quotes and neutralises
    them, so a hostile string can never forge a second log line.            */
#ifndef LIAISON_LOG_H
#define LIAISON_LOG_H

#include <stddef.h>

/* Writes one event line; fmt produces the key=value pairs. Thread-safe. */
void log_event (const char *event, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

/* Quotes s into buf ("..." with control characters and quotes escaped,
   truncated to fit). Returns buf. */
const char *log_str (char *buf, size_t size, const char *s);

/* Convenience: a 256-byte quoting buffer on the caller's stack. */
#define LOG_Q(s) log_str ((char[256]) {0}, 256, (s))

#endif
