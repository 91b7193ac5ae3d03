/*  Broker configuration (broker/config.c): defaults, every key, and an
    error naming the file, line or key for every kind of mistake.           */
#include "suites.h"

#include "config.h"
#include "frame.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// The smallest valid file: the required keys only.
static const char s_minimal[] = "liaisond\n"
                                "    state_dir = /var/lib/liaison\n"
                                "    rules = /etc/liaison/liaison.rules\n"
                                "    tls\n"
                                "        cert = /etc/liaison/hub.pem\n"
                                "        key = /etc/liaison/hub.key\n"
                                "        ca = /etc/liaison/root.pem\n"
                                "        crl_dir = /etc/liaison/crl\n";

// A temporary file holding `size` bytes of text; its path goes into path.
static void
s_write_bytes (char *path, size_t len, const char *text, size_t size)
{
    snprintf (path, len, "/tmp/liaison-config-XXXXXX");
    int fd = mkstemp (path);
    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (write (fd, text, size), (ssize_t) size);
    ck_assert_int_eq (close (fd), 0);
}

static void
s_write (char *path, size_t len, const char *text)
{
    s_write_bytes (path, len, text, strlen (text));
}

// Loads text; on success returns the config (caller destroys).
static config_t *
s_load (const char *text, char *err, size_t errlen)
{
    char path[64];
    s_write (path, sizeof path, text);
    err[0] = 0;
    config_t *cfg = config_load (path, err, errlen);
    unlink (path);
    return cfg;
}

// Asserts that text is refused with an error that starts with the file's
// path and contains every given fragment.
static void
s_assert_refused (const char *text, const char *fragment, const char *fragment2)
{
    char path[64], err[512] = "";
    s_write (path, sizeof path, text);
    config_t *cfg = config_load (path, err, sizeof err);
    unlink (path);
    if (cfg) {
        config_destroy (&cfg);
        ck_abort_msg ("config accepted; expected an error with '%s'", fragment);
    }
    ck_assert_msg (strncmp (err, path, strlen (path)) == 0, "error '%s' does not start with %s",
                   err, path);
    ck_assert_msg (strstr (err, fragment) != NULL, "error '%s' lacks '%s'", err, fragment);
    if (fragment2)
        ck_assert_msg (strstr (err, fragment2) != NULL, "error '%s' lacks '%s'", err, fragment2);
}

// The minimal file with one more line under `liaisond/limits`.
static void
s_limit (char *buf, size_t len, const char *line)
{
    snprintf (buf, len, "%s    limits\n        %s\n", s_minimal, line);
}

START_TEST (test_config_defaults)
{
    char err[512];
    config_t *cfg = s_load (s_minimal, err, sizeof err);
    ck_assert_msg (cfg != NULL, "%s", err);
    ck_assert_str_eq (cfg->endpoint, "tcp://127.0.0.1:7441");
    ck_assert_str_eq (cfg->state_dir, "/var/lib/liaison");
    ck_assert_str_eq (cfg->cert, "/etc/liaison/hub.pem");
    ck_assert_str_eq (cfg->key, "/etc/liaison/hub.key");
    ck_assert_str_eq (cfg->ca, "/etc/liaison/root.pem");
    ck_assert_str_eq (cfg->crl_dir, "/etc/liaison/crl");
    ck_assert_uint_eq (cfg->max_frame, 4194304);
    ck_assert_uint_eq (cfg->max_frame, WIRE_FRAME_DEFAULT_MAX);
    ck_assert_uint_eq (cfg->max_connections, 4096);
    ck_assert_uint_eq (cfg->credit_frames, 256);
    ck_assert_uint_eq (cfg->credit_bytes, 16 * 1024 * 1024);
    ck_assert_uint_eq (cfg->heartbeat_ms, 10000);
    ck_assert_uint_eq (cfg->handshake_timeout_ms, 10000);
    ck_assert_uint_eq (cfg->max_pending_bytes, 32 * 1024 * 1024);
    ck_assert_uint_eq (cfg->reassembly_budget, 256 * 1024 * 1024);
    ck_assert_uint_eq (cfg->store_max_bytes, 0);
    ck_assert_uint_eq (cfg->retention_s, 30 * 86400);
    ck_assert_uint_eq (cfg->remind_percent, 25);
    ck_assert_uint_eq (cfg->queries_per_s, 100);
    ck_assert_uint_eq (cfg->acks_per_s, 2000);
    config_destroy (&cfg);
    ck_assert_ptr_null (cfg);
    config_destroy (&cfg);
    config_destroy (NULL);
}
END_TEST

START_TEST (test_config_all_keys)
{
    static const char text[] = "#   Liaison broker, every key\n"
                               "liaisond\n"
                               "    endpoint = tcp://*:9000\n"
                               "    state_dir = \"/srv/liaison state\"\n"
                               "    rules = r.rules\n"
                               "    tls\n"
                               "        cert = c.pem\n"
                               "        key = k.pem\n"
                               "        ca = r.pem\n"
                               "        crl_dir = crls\n"
                               "    # a comment\n"
                               "    limits\n"
                               "        max_frame = 65536\n"
                               "        max_connections = 10\n"
                               "        credit_frames = 32\n"
                               "        credit_bytes = 1048576\n"
                               "        heartbeat_ms = 2500\n"
                               "        handshake_timeout_ms = 3000\n"
                               "        max_pending_bytes = 131072\n"
                               "        reassembly_budget = 8388608\n"
                               "        max_handshakes = 9\n"
                               "        max_sessions_per_node = 3\n"
                               "        queries_per_s = 7\n"
                               "        acks_per_s = 70\n"
                               "    store\n"
                               "        max_bytes = 8388608\n"
                               "        wal_limit_bytes = 2097152\n"
                               "        retention_s = 60\n"
                               "        purge_interval_s = 5\n"
                               "    deadlines\n"
                               "        remind_percent = 10\n";
    char err[512];
    config_t *cfg = s_load (text, err, sizeof err);
    ck_assert_msg (cfg != NULL, "%s", err);
    ck_assert_str_eq (cfg->endpoint, "tcp://*:9000");
    ck_assert_str_eq (cfg->state_dir, "/srv/liaison state");
    ck_assert_str_eq (cfg->rules, "r.rules");
    ck_assert_str_eq (cfg->cert, "c.pem");
    ck_assert_str_eq (cfg->key, "k.pem");
    ck_assert_str_eq (cfg->ca, "r.pem");
    ck_assert_str_eq (cfg->crl_dir, "crls");
    ck_assert_uint_eq (cfg->max_frame, 65536);
    ck_assert_uint_eq (cfg->max_connections, 10);
    ck_assert_uint_eq (cfg->credit_frames, 32);
    ck_assert_uint_eq (cfg->credit_bytes, 1048576);
    ck_assert_uint_eq (cfg->heartbeat_ms, 2500);
    ck_assert_uint_eq (cfg->handshake_timeout_ms, 3000);
    ck_assert_uint_eq (cfg->max_pending_bytes, 131072);
    ck_assert_uint_eq (cfg->reassembly_budget, 8388608);
    ck_assert_uint_eq (cfg->store_max_bytes, 8388608);
    ck_assert_uint_eq (cfg->store_wal_limit_bytes, 2097152);
    ck_assert_uint_eq (cfg->retention_s, 60);
    ck_assert_uint_eq (cfg->purge_interval_s, 5);
    ck_assert_uint_eq (cfg->remind_percent, 10);
    ck_assert_uint_eq (cfg->queries_per_s, 7);
    ck_assert_uint_eq (cfg->acks_per_s, 70);
    ck_assert_uint_eq (cfg->max_handshakes, 9);
    ck_assert_uint_eq (cfg->max_sessions_per_node, 3);
    config_destroy (&cfg);
}
END_TEST

START_TEST (test_config_number_bounds)
{
    char text[2048], err[512];
    // Smallest and largest accepted values.
    static const struct {
        const char *line;
        size_t offset;
        uint64_t want;
    } ok[] = {
        {"max_frame = 4096", offsetof (config_t, max_frame), 4096},
        {"max_frame = 67108864\n        credit_bytes = 134217728\n"
         "        max_pending_bytes = 134217728", offsetof (config_t, max_frame),
         WIRE_FRAME_CEILING},
        {"credit_frames = 1", offsetof (config_t, credit_frames), 1},
        {"credit_frames = 65536", offsetof (config_t, credit_frames), 65536},
        {"heartbeat_ms = 100", offsetof (config_t, heartbeat_ms), 100},
        {"heartbeat_ms = 3600000", offsetof (config_t, heartbeat_ms), 3600000},
        {"credit_bytes = 4294967296", offsetof (config_t, credit_bytes), 4294967296ULL},
        {"reassembly_budget = 1099511627776", offsetof (config_t, reassembly_budget),
         1099511627776ULL},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        s_limit (text, sizeof text, ok[i].line);
        config_t *cfg = s_load (text, err, sizeof err);
        ck_assert_msg (cfg != NULL, "%s: %s", ok[i].line, err);
        uint64_t got;
        const char *field = (const char *) cfg + ok[i].offset;
        if (ok[i].offset == offsetof (config_t, credit_bytes)
            || ok[i].offset == offsetof (config_t, reassembly_budget))
            got = *(const uint64_t *) (const void *) field;
        else
            got = *(const uint32_t *) (const void *) field;
        ck_assert_msg (got == ok[i].want, "%s: got %llu", ok[i].line, (unsigned long long) got);
        config_destroy (&cfg);
    }
}
END_TEST

START_TEST (test_config_bad_numbers)
{
    static const struct {
        const char *line;
        const char *key;
    } bad[] = {
        {"max_frame = abc", "liaisond/limits/max_frame"},
        {"max_frame = 12k", "liaisond/limits/max_frame"},
        {"max_frame = -5", "liaisond/limits/max_frame"},
        {"max_frame = 4095", "liaisond/limits/max_frame"},
        {"max_frame = 67108865", "liaisond/limits/max_frame"},
        {"max_frame = 0x1000", "liaisond/limits/max_frame"},
        {"max_connections = 0", "liaisond/limits/max_connections"},
        {"max_connections = 1000001", "liaisond/limits/max_connections"},
        {"credit_frames = 65537", "liaisond/limits/credit_frames"},
        {"credit_frames = -1", "liaisond/limits/credit_frames"},
        {"credit_bytes = 99999999999999999999999", "liaisond/limits/credit_bytes"},
        {"credit_bytes = 18446744073709551616", "liaisond/limits/credit_bytes"},
        {"heartbeat_ms = 99", "liaisond/limits/heartbeat_ms"},
        {"heartbeat_ms = 1.5", "liaisond/limits/heartbeat_ms"},
        {"handshake_timeout_ms = 600001", "liaisond/limits/handshake_timeout_ms"},
        {"max_pending_bytes = 65535", "liaisond/limits/max_pending_bytes"},
        {"reassembly_budget = 1024", "liaisond/limits/reassembly_budget"},
        {"max_sessions_per_node = 0", "liaisond/limits/max_sessions_per_node"},
        {"queries_per_s = 0", "liaisond/limits/queries_per_s"},
    };
    char text[2048];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_limit (text, sizeof text, bad[i].line);
        s_assert_refused (text, bad[i].key, "expected a whole number");
    }
    // Consistent limits: a credit smaller than two frames could stall a
    // sender for ever; pending output must hold two frames too.
    s_limit (text, sizeof text, "credit_bytes = 4096");
    s_assert_refused (text, "credit_bytes must be at least twice max_frame", NULL);
    s_limit (text, sizeof text, "max_frame = 65536\n        credit_bytes = 131071");
    s_assert_refused (text, "credit_bytes must be at least twice max_frame", NULL);
    s_limit (text, sizeof text, "max_frame = 65536\n        max_pending_bytes = 65536");
    s_assert_refused (text, "max_pending_bytes must be at least twice max_frame", NULL);
}
END_TEST

START_TEST (test_config_missing_key)
{
    static const char *keys[] = {"state_dir", "rules", "cert", "key", "ca", "crl_dir"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        // The minimal file without that key's line.
        char text[sizeof s_minimal], want[64];
        char line[64];
        snprintf (line, sizeof line, " %s = ", keys[k]);
        const char *at = strstr (s_minimal, line);
        ck_assert_ptr_nonnull (at);
        const char *bol = at;
        while (bol > s_minimal && bol[-1] != '\n')
            bol--;
        const char *eol = strchr (at, '\n') + 1;
        size_t head = (size_t) (bol - s_minimal);
        memcpy (text, s_minimal, head);
        snprintf (text + head, sizeof text - head, "%s", eol);
        snprintf (want, sizeof want, "liaisond/%s%s is required",
                  strcmp (keys[k], "state_dir") && strcmp (keys[k], "rules") ? "tls/" : "",
                  keys[k]);
        s_assert_refused (text, want, NULL);
    }
}
END_TEST

START_TEST (test_config_unknown_key)
{
    char text[2048];
    s_limit (text, sizeof text, "bogus = 1");
    s_assert_refused (text, "unknown key 'liaisond/limits/bogus'", NULL);
    snprintf (text, sizeof text, "%s    tls_cert = x\n", s_minimal);
    s_assert_refused (text, "unknown key 'liaisond/tls_cert'", NULL);
    snprintf (text, sizeof text, "%sother\n    x = 1\n", s_minimal);
    s_assert_refused (text, "unknown key 'other'", NULL);
}
END_TEST

START_TEST (test_config_indentation)
{
    // A tab on line 3.
    s_assert_refused ("liaisond\n    state_dir = /x\n\ttls\n", "line 3", "tabs");
    // Spaces, then a tab.
    s_assert_refused ("liaisond\n  \tstate_dir = /x\n", "line 2", "tabs");
    // 3 and 6 spaces.
    s_assert_refused ("liaisond\n   state_dir = /x\n", "line 2", "multiple of 4");
    char text[2048];
    snprintf (text, sizeof text, "%s    limits\n      max_frame = 4096\n", s_minimal);
    s_assert_refused (text, "line 10", "multiple of 4");
}
END_TEST

START_TEST (test_config_endpoint)
{
    char text[2048];
    static const char *bad[] = {"ipc:///tmp/liaison", "inproc://x", "tcp:/127.0.0.1:1",
                                "127.0.0.1:7441", "TCP://127.0.0.1:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf (text, sizeof text, "%s    endpoint = \"%s\"\n", s_minimal, bad[i]);
        s_assert_refused (text, "liaisond/endpoint", "tcp://");
    }
}
END_TEST

// An endpoint key that is present but empty must be an error (or the
// default), never a crash (it once left endpoint NULL for a strncmp).
START_TEST (test_config_empty_values)
{
    char text[2048], err[512];
    static const char *lines[] = {"    endpoint = \"\"\n", "    endpoint\n"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        snprintf (text, sizeof text, "%s%s", s_minimal, lines[i]);
        config_t *cfg = s_load (text, err, sizeof err);
        if (cfg) {
            ck_assert_ptr_nonnull (cfg->endpoint);
            ck_assert_str_eq (cfg->endpoint, "tcp://127.0.0.1:7441");
            config_destroy (&cfg);
        }
        else
            ck_assert_msg (strstr (err, "endpoint") != NULL, "%s", err);
    }
    // A required key that is present but empty is missing.
    s_assert_refused ("liaisond\n    state_dir = \"\"\n    rules = r\n    tls\n        cert = a\n"
                      "        key = b\n        ca = c\n        crl_dir = d\n",
                      "liaisond/state_dir is required", NULL);
    // An empty limit takes the default.
    s_limit (text, sizeof text, "max_frame = \"\"");
    config_t *cfg = s_load (text, err, sizeof err);
    ck_assert_msg (cfg != NULL, "%s", err);
    ck_assert_uint_eq (cfg->max_frame, WIRE_FRAME_DEFAULT_MAX);
    config_destroy (&cfg);
}
END_TEST

START_TEST (test_config_no_section)
{
    s_assert_refused ("broker\n    state_dir = /x\n", "no 'liaisond' section", NULL);
    s_assert_refused ("", "no 'liaisond' section", NULL);
    s_assert_refused ("# only a comment\n", "no 'liaisond' section", NULL);
}
END_TEST

START_TEST (test_config_file_errors)
{
    char err[512] = "";
    ck_assert_ptr_null (config_load ("/nonexistent/liaisond.cfg", err, sizeof err));
    ck_assert_msg (strstr (err, "/nonexistent/liaisond.cfg") == err, "%s", err);
    ck_assert_msg (strstr (err, "No such file") != NULL, "%s", err);

    // A directory.
    char dir[] = "/tmp/liaison-config-dir-XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    err[0] = 0;
    ck_assert_ptr_null (config_load (dir, err, sizeof err));
    ck_assert_msg (strstr (err, dir) == err, "%s", err);
    ck_assert_msg (strstr (err, "regular file") != NULL, "%s", err);
    rmdir (dir);

    // Over 1 MiB, even if every line is valid (a comment).
    size_t size = 1024 * 1024 + 1;
    char *big = malloc (size + 1);
    size_t n = snprintf (big, size + 1, "%s", s_minimal);
    for (; n < size; n++)
        big[n] = (n % 64 == 63) ? '\n' : '#';
    big[size - 1] = '\n';
    char path[64];
    s_write_bytes (path, sizeof path, big, size);
    err[0] = 0;
    ck_assert_ptr_null (config_load (path, err, sizeof err));
    ck_assert_msg (strstr (err, "1 MiB") != NULL, "%s", err);
    unlink (path);
    // Exactly 1 MiB is read.
    s_write_bytes (path, sizeof path, big, size - 1);
    config_t *cfg = config_load (path, err, sizeof err);
    ck_assert_msg (cfg != NULL, "%s", err);
    config_destroy (&cfg);
    unlink (path);
    free (big);

    // NUL bytes.
    static const char nul[] = "liaisond\n    state_dir = /x\0y\n";
    s_write_bytes (path, sizeof path, nul, sizeof nul - 1);
    err[0] = 0;
    ck_assert_ptr_null (config_load (path, err, sizeof err));
    ck_assert_msg (strstr (err, "NUL") != NULL, "%s", err);
    unlink (path);
}
END_TEST

START_TEST (test_config_line_errors)
{
    char text[4096];
    // A control character on line 2.
    s_assert_refused ("liaisond\n    state_dir = /x\x01y\n", "line 2", "control character");
    // A line over 1024 characters.
    int n = snprintf (text, sizeof text, "liaisond\n    # ");
    memset (text + n, 'x', 1100);
    text[n + 1100] = 0;
    s_assert_refused (text, "line 2", "1024");
    // Not ZPL at all.
    s_assert_refused ("liaisond\n    = value\n", "", NULL);
    // CRLF line ends are fine.
    char err[512];
    static const char crlf[] = "liaisond\r\n    state_dir = /x\r\n    rules = r\r\n    tls\r\n"
                               "        cert = a\r\n        key = b\r\n"
                               "        ca = c\r\n        crl_dir = d\r\n";
    config_t *cfg = s_load (crlf, err, sizeof err);
    if (cfg) {
        ck_assert_str_eq (cfg->crl_dir, "d");
        config_destroy (&cfg);
    }
    else
        ck_assert_msg (strstr (err, "line") != NULL, "%s", err);
}
END_TEST

// A small error buffer is never overrun and stays terminated.
START_TEST (test_config_small_error_buffer)
{
    char err[12];
    memset (err, 'z', sizeof err);
    ck_assert_ptr_null (config_load ("/nonexistent/a-rather-long-path/liaisond.cfg", err, 8));
    ck_assert_uint_lt (strlen (err), 8);
    ck_assert_int_eq (err[8], 'z');
}
END_TEST

// The sample configuration shipped in deploy/ loads as it is.
START_TEST (test_config_sample_loads)
{
    char err[512] = "";
    config_t *cfg = config_load ("deploy/liaisond.cfg", err, sizeof err);
    ck_assert_msg (cfg != NULL, "%s", err);
    ck_assert_str_eq (cfg->endpoint, "tcp://0.0.0.0:7441");
    ck_assert_uint_eq (cfg->max_sessions_per_node, 16);
    ck_assert_uint_eq (cfg->store_wal_limit_bytes, 67108864);
    config_destroy (&cfg);
}
END_TEST

Suite *
config_suite (void)
{
    Suite *s = suite_create ("config");
    TCase *tc = tcase_create ("values");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_config_defaults);
    tcase_add_test (tc, test_config_all_keys);
    tcase_add_test (tc, test_config_number_bounds);
    suite_add_tcase (s, tc);

    tc = tcase_create ("errors");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_config_bad_numbers);
    tcase_add_test (tc, test_config_missing_key);
    tcase_add_test (tc, test_config_unknown_key);
    tcase_add_test (tc, test_config_indentation);
    tcase_add_test (tc, test_config_endpoint);
    tcase_add_test (tc, test_config_empty_values);
    tcase_add_test (tc, test_config_sample_loads);
    tcase_add_test (tc, test_config_no_section);
    tcase_add_test (tc, test_config_file_errors);
    tcase_add_test (tc, test_config_line_errors);
    tcase_add_test (tc, test_config_small_error_buffer);
    suite_add_tcase (s, tc);
    return s;
}
