/*  Event log lines; see log.h.                                              */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void
log_event (const char *event, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime (CLOCK_REALTIME, &ts);
    gmtime_r (&ts.tv_sec, &tm);
    int n = snprintf (line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ event=%s",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                      tm.tm_sec, ts.tv_nsec / 1000000, event);
    if (fmt && fmt[0] && n < (int) sizeof line - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start (ap, fmt);
        int m = vsnprintf (line + n, sizeof line - (size_t) n - 1, fmt, ap);
        va_end (ap);
        n = m < 0 ? n : n + m;
        if (n > (int) sizeof line - 2)
            n = (int) sizeof line - 2;
    }
    for (int i = 0; i < n; i++)
        if ((unsigned char) line[i] < 0x20)
            line[i] = '?';
    line[n++] = '\n';
    fwrite (line, 1, (size_t) n, stderr);  // one write: lines never interleave
}

const char *
log_str (char *buf, size_t size, const char *s)
{
    size_t o = 0;
    if (size < 4)
        return "";
    buf[o++] = '"';
    for (; s && *s && o + 4 < size; s++) {
        unsigned char c = (unsigned char) *s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char) c;
        }
        else if (c < 0x20 || c == 0x7f)
            buf[o++] = '?';
        else
            buf[o++] = (char) c;
    }
    buf[o++] = '"';
    buf[o] = 0;
    return buf;
}
