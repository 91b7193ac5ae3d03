/*  Configuration loading and validation; see config.h.                      */
#include "config.h"

#include "frame.h"

#include <czmq.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/stat.h>

#define MAX_CONFIG_BYTES (1024 * 1024)

// Every key the broker understands; anything else is a typo worth an error.
static const char *s_keys[] = {
    "liaisond",
    "liaisond/endpoint",
    "liaisond/state_dir",
    "liaisond/rules",
    "liaisond/tls",
    "liaisond/tls/cert",
    "liaisond/tls/key",
    "liaisond/tls/ca",
    "liaisond/tls/crl_dir",
    "liaisond/limits",
    "liaisond/limits/max_frame",
    "liaisond/limits/max_connections",
    "liaisond/limits/credit_frames",
    "liaisond/limits/credit_bytes",
    "liaisond/limits/heartbeat_ms",
    "liaisond/limits/handshake_timeout_ms",
    "liaisond/limits/max_pending_bytes",
    "liaisond/limits/reassembly_budget",
    "liaisond/limits/max_handshakes",
    "liaisond/limits/max_sessions_per_node",
    "liaisond/limits/queries_per_s",
    "liaisond/limits/acks_per_s",
    "liaisond/store",
    "liaisond/store/max_bytes",
    "liaisond/store/wal_limit_bytes",
    "liaisond/store/retention_s",
    "liaisond/store/purge_interval_s",
    "liaisond/deadlines",
    "liaisond/deadlines/remind_percent",
    NULL,
};

static int
s_fail (char *err, size_t len, const char *path, const char *fmt, ...)
{
    int n = snprintf (err, len, "%s: ", path);
    va_list ap;
    va_start (ap, fmt);
    if (n >= 0 && (size_t) n < len)
        vsnprintf (err + n, len - (size_t) n, fmt, ap);
    va_end (ap);
    return -1;
}

// Line-level checks zconfig does not report with a line number.
static int
s_precheck (const char *path, const char *text, char *err, size_t len)
{
    int line = 1;
    for (const char *p = text; *p; line++) {
        const char *eol = strchr (p, '\n');
        size_t n = eol ? (size_t) (eol - p) : strlen (p);
        if (n > 1024)
            return s_fail (err, len, path, "line %d: longer than 1024 characters", line);
        size_t indent = 0;
        while (indent < n && p[indent] == ' ')
            indent++;
        if (indent < n && p[indent] == '\t')
            return s_fail (err, len, path, "line %d: indent with 4 spaces, not tabs", line);
        if (indent < n && indent % 4)
            return s_fail (err, len, path,
                           "line %d: indentation must be a multiple of 4 spaces", line);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char) p[i] < 0x20 && p[i] != '\t' && p[i] != '\r')
                return s_fail (err, len, path, "line %d: control character", line);
        p = eol ? eol + 1 : p + n;
    }
    return 0;
}

static int
s_known (const char *key)
{
    for (int i = 0; s_keys[i]; i++)
        if (strcmp (s_keys[i], key) == 0)
            return 1;
    return 0;
}

// Walks the tree and refuses unknown keys.
static int
s_check_keys (zconfig_t *node, const char *prefix, const char *path, char *err, size_t len)
{
    for (zconfig_t *c = zconfig_child (node); c; c = zconfig_next (c)) {
        char key[256];
        snprintf (key, sizeof key, "%s%s%s", prefix, prefix[0] ? "/" : "", zconfig_name (c));
        if (!s_known (key))
            return s_fail (err, len, path, "unknown key '%s' (see README, Configuration)", key);
        if (s_check_keys (c, key, path, err, len))
            return -1;
    }
    return 0;
}

// Reads an unsigned number in [min, max] or the default if absent.
static int
s_number (zconfig_t *root, const char *key, uint64_t def, uint64_t min, uint64_t max,
          uint64_t *out, const char *path, char *err, size_t len)
{
    const char *v = zconfig_get (root, key, NULL);
    if (!v || !v[0]) {
        *out = def;
        return 0;
    }
    errno = 0;
    char *end;
    unsigned long long n = strtoull (v, &end, 10);
    if (errno || *end || v[0] == '-' || n < min || n > max)
        return s_fail (err, len, path, "%s = '%s': expected a whole number from %llu to %llu",
                       key, v, (unsigned long long) min, (unsigned long long) max);
    *out = n;
    return 0;
}

static char *
s_string (zconfig_t *root, const char *key, const char *def)
{
    // A key present without a value (or with "") counts as absent.
    const char *v = zconfig_get (root, key, NULL);
    if (!v || !v[0])
        v = def;
    return v ? strdup (v) : NULL;
}

config_t *
config_load (const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat (path, &st) != 0) {
        s_fail (err, errlen, path, "cannot read: %s", strerror (errno));
        return NULL;
    }
    if (!S_ISREG (st.st_mode) || st.st_size > MAX_CONFIG_BYTES) {
        s_fail (err, errlen, path, "not a regular file of at most 1 MiB");
        return NULL;
    }
    FILE *f = fopen (path, "r");
    if (!f) {
        s_fail (err, errlen, path, "cannot open: %s", strerror (errno));
        return NULL;
    }
    char *text = calloc (1, (size_t) st.st_size + 1);
    size_t got = text ? fread (text, 1, (size_t) st.st_size, f) : 0;
    fclose (f);
    if (!text || got != (size_t) st.st_size || memchr (text, 0, got)) {
        free (text);
        s_fail (err, errlen, path, "cannot read the whole file, or it holds NUL bytes");
        return NULL;
    }
    config_t *self = NULL;
    zconfig_t *root = NULL;
    if (s_precheck (path, text, err, errlen))
        goto done;
    root = zconfig_str_load (text);
    if (!root) {
        s_fail (err, errlen, path, "not valid ZPL (name = value, 4-space indentation)");
        goto done;
    }
    if (!zconfig_locate (root, "liaisond")) {
        s_fail (err, errlen, path, "no 'liaisond' section");
        goto done;
    }
    if (s_check_keys (root, "", path, err, errlen))
        goto done;
    self = calloc (1, sizeof *self);
    if (!self)
        goto done;
    self->endpoint = s_string (root, "liaisond/endpoint", "tcp://127.0.0.1:7441");
    self->state_dir = s_string (root, "liaisond/state_dir", NULL);
    self->cert = s_string (root, "liaisond/tls/cert", NULL);
    self->key = s_string (root, "liaisond/tls/key", NULL);
    self->ca = s_string (root, "liaisond/tls/ca", NULL);
    self->crl_dir = s_string (root, "liaisond/tls/crl_dir", NULL);
    self->rules = s_string (root, "liaisond/rules", NULL);
    const char *missing = !self->state_dir ? "liaisond/state_dir"
                          : !self->cert    ? "liaisond/tls/cert"
                          : !self->key     ? "liaisond/tls/key"
                          : !self->ca      ? "liaisond/tls/ca"
                          : !self->crl_dir ? "liaisond/tls/crl_dir"
                          : !self->rules   ? "liaisond/rules"
                                           : NULL;
    if (missing) {
        s_fail (err, errlen, path, "%s is required", missing);
        config_destroy (&self);
        goto done;
    }
    if (strncmp (self->endpoint, "tcp://", 6) != 0) {
        s_fail (err, errlen, path, "liaisond/endpoint must be tcp://HOST:PORT (PORT may be *)");
        config_destroy (&self);
        goto done;
    }
    uint64_t v[19];
    if (s_number (root, "liaisond/limits/max_frame", WIRE_FRAME_DEFAULT_MAX, 4096,
                  WIRE_FRAME_CEILING, &v[0], path, err, errlen)
        || s_number (root, "liaisond/limits/max_connections", 4096, 1, 1000000, &v[1], path,
                     err, errlen)
        || s_number (root, "liaisond/limits/credit_frames", 256, 1, 65536, &v[2], path, err,
                     errlen)
        || s_number (root, "liaisond/limits/credit_bytes", 16 * 1024 * 1024, 4096,
                     (uint64_t) 1 << 32, &v[3], path, err, errlen)
        || s_number (root, "liaisond/limits/heartbeat_ms", 10000, 100, 3600000, &v[4], path,
                     err, errlen)
        || s_number (root, "liaisond/limits/handshake_timeout_ms", 10000, 100, 600000, &v[5],
                     path, err, errlen)
        || s_number (root, "liaisond/limits/max_pending_bytes", 32 * 1024 * 1024, 65536,
                     (uint64_t) 1 << 34, &v[6], path, err, errlen)
        || s_number (root, "liaisond/limits/reassembly_budget", 256 * 1024 * 1024,
                     WIRE_FRAME_DEFAULT_MAX, (uint64_t) 1 << 40, &v[7], path, err, errlen)
        || s_number (root, "liaisond/store/max_bytes", 0, 0, (uint64_t) 1 << 50, &v[8], path,
                     err, errlen)
        || s_number (root, "liaisond/store/wal_limit_bytes", 64 * 1024 * 1024, 1024 * 1024,
                     (uint64_t) 1 << 40, &v[9], path, err, errlen)
        || s_number (root, "liaisond/limits/max_handshakes", 256, 1, 1000000, &v[10], path,
                     err, errlen)
        || s_number (root, "liaisond/limits/max_sessions_per_node", 16, 1, 100000, &v[11],
                     path, err, errlen)
        || s_number (root, "liaisond/store/retention_s", 30 * 86400, 0, 100ULL * 365 * 86400,
                     &v[12], path, err, errlen)
        || s_number (root, "liaisond/store/purge_interval_s", 3600, 1, 86400, &v[13], path, err,
                     errlen)
        || s_number (root, "liaisond/deadlines/remind_percent", 25, 1, 99, &v[14], path, err,
                     errlen)
        || s_number (root, "liaisond/limits/queries_per_s", 100, 1, 1000000, &v[15], path, err,
                     errlen)
        || s_number (root, "liaisond/limits/acks_per_s", 2000, 1, 1000000, &v[16], path, err,
                     errlen)) {
        config_destroy (&self);
        goto done;
    }
    self->max_frame = (uint32_t) v[0];
    self->max_connections = (uint32_t) v[1];
    self->credit_frames = (uint32_t) v[2];
    self->credit_bytes = v[3];
    self->heartbeat_ms = (uint32_t) v[4];
    self->handshake_timeout_ms = (uint32_t) v[5];
    self->max_pending_bytes = v[6];
    self->reassembly_budget = v[7];
    self->store_max_bytes = v[8];
    self->store_wal_limit_bytes = v[9];
    self->retention_s = v[12];
    self->purge_interval_s = (uint32_t) v[13];
    self->remind_percent = (uint32_t) v[14];
    self->queries_per_s = (uint32_t) v[15];
    self->acks_per_s = (uint32_t) v[16];
    self->max_handshakes = (uint32_t) v[10];
    self->max_sessions_per_node = (uint32_t) v[11];
    // Credit comes back once half the window is processed: with less than
    // two frames' worth, a sender could wait for ever.
    if (self->credit_bytes < 2 * (uint64_t) self->max_frame) {
        s_fail (err, errlen, path, "credit_bytes must be at least twice max_frame");
        config_destroy (&self);
    }
    else if (self->max_pending_bytes < 2 * (uint64_t) self->max_frame) {
        s_fail (err, errlen, path, "max_pending_bytes must be at least twice max_frame");
        config_destroy (&self);
    }
done:
    zconfig_destroy (&root);
    free (text);
    return self;
}

void
config_destroy (config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    config_t *self = *self_p;
    free (self->endpoint);
    free (self->state_dir);
    free (self->cert);
    free (self->key);
    free (self->ca);
    free (self->crl_dir);
    free (self->rules);
    free (self);
    *self_p = NULL;
}
