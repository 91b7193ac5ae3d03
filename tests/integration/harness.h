/*  Integration test harness: a real liaisond on a free loopback port with
    its own copy of the test PKI, and a raw TLS client (plain OpenSSL over a
    TCP socket, independent of the wire code) for hostile input.            */
#ifndef LIAISON_HARNESS_H
#define LIAISON_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "liaison.h"
#include "liaison.pb-c.h"

typedef struct {
    pid_t pid;
    char dir[256];       /* temporary directory for this broker */
    char pki[320];       /* its private copy of the test PKI */
    char cfg[320];
    char rules[320];     /* its routing rules (a copy of test.rules) */
    char log[320];       /* the broker's standard error */
    char endpoint[128];
    int port;
} broker_t;

/* Node connection options with their own string storage. */
typedef struct {
    liaison_options_t o;
    char cert[512], key[512], ca[512], hub[512];
    char state[512];     /* its own state directory (a fresh one per call) */
} node_opts_t;

/* The test PKI (LIAISON_PKI) and build directory (LIAISON_BUILD). */
const char *harness_pki (void);
const char *harness_build (void);

/* Creates the broker's directory, PKI copy and rules (test.rules), and
   writes a config whose
   limits section holds `limits` (ZPL lines, 8-space indented, or NULL).
   server_cert/server_key: relative to the PKI (NULL: broker/hub.*). */
void harness_prepare (broker_t *b, const char *limits, const char *server_cert,
                      const char *server_key);

/* Starts the prepared broker and waits for its ready file (inotify, no
   sleeping). Returns 0 when ready, -1 if it exited or timed out. */
int harness_start (broker_t *b);

/* harness_prepare + harness_start; fails the test on error. */
void harness_broker_start (broker_t *b, const char *limits);

/* SIGTERM, wait; returns the exit status (0 expected), or -1 if killed by
   a signal. Removes the directory. */
int harness_broker_stop (broker_t *b);

/* Sends a signal to the broker. */
void harness_signal (broker_t *b, int sig);

/* Waits until the broker log contains `needle` (appearing after byte
   offset `from`); returns true if it did within timeout_ms. */
bool harness_log_wait (broker_t *b, const char *needle, size_t from, int timeout_ms);

/* Current size of the broker log, for harness_log_wait's `from`. */
size_t harness_log_size (broker_t *b);

/* Options for a node whose files live under `subdir` of the broker's PKI
   copy (e.g. "nodes/fr-pn" or "bad/expired"). */
void harness_node (broker_t *b, node_opts_t *n, const char *subdir);

/* Connects node (under nodes/) to the broker; as its receiver if asked,
   in which case the Receive is processed before this returns. Fails the
   test if it cannot connect. */
liaison_t *harness_session (broker_t *b, const char *node, int receiver);

/* Asserts that the next receipt (within 5 s) is REJECTED for recipient
   with reason; id and rule are checked unless NULL. */
void harness_expect_rejected (liaison_t *l, const uint8_t *id, const char *recipient,
                              const char *reason, const char *rule);

/* Runs a shell command (for liaison-pki and the like); returns its status. */
int harness_sh (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

/* A raw TLS client. */
typedef struct {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
} raw_t;

/* Connects with the node in `subdir` (NULL: no client certificate) and
   completes the TLS handshake (client side). 0 or -1. */
int raw_connect (raw_t *r, broker_t *b, const char *subdir);

/* Writes bytes through TLS; 0 or -1. */
int raw_write (raw_t *r, const void *data, size_t size);

/* Writes one frame: length prefix + packed protobuf. */
int raw_send_frame (raw_t *r, const Liaison__Frame *f);

/* Sends Hello and reads Welcome; 0 if welcomed. */
int raw_hello (raw_t *r);

/* Reads one frame within timeout_ms; caller frees with
   liaison__frame__free_unpacked. NULL on close or timeout (*closed set
   when the broker closed the connection). */
Liaison__Frame *raw_read_frame (raw_t *r, int timeout_ms, bool *closed);

/* Reads frames until an Error arrives; returns its code, or -1. Also
   reports whether the connection was then closed by the broker. */
int raw_expect_error (raw_t *r, int timeout_ms, bool *closed_after);

void raw_close (raw_t *r);

/* ---- additions for the durable store-and-forward tests ---- */

/* A free loopback TCP port (bound and released at once), for a broker
   that must come back on the same endpoint after a restart. */
int harness_free_port (void);

/* harness_prepare, then: `extra` (ZPL sections under liaisond, 4-space
   indented, e.g. "    store\n        max_bytes = 65536\n", or NULL)
   appended to the config, and the endpoint fixed to port (0: ephemeral,
   as harness_prepare). */
void harness_prepare_ex (broker_t *b, const char *limits, const char *extra, int port);

/* SIGKILL the broker and reap it; its directory stays. */
void harness_broker_kill (broker_t *b);

/* SIGTERM and wait like harness_broker_stop, but the directory (its
   store, config, log) stays for a restart. Returns the exit status, or -1
   if it was killed by a signal or did not stop. */
int harness_broker_halt (broker_t *b);

/* Starts the broker again on the same directory, config, store (and
   port, when fixed) after a kill or a crash: removes the stale ready file
   first. 0 when ready, -1 otherwise. */
int harness_broker_restart (broker_t *b);

/* The path of a node's certificate in the broker's PKI copy, in buf. */
const char *harness_node_cert (broker_t *b, const char *node, char *buf, size_t size);

/* Asserts that the next receipt (within timeout_ms) has this status and
   recipient, and this id unless NULL; returns it (the caller owns it). */
liaison_receipt_t *harness_expect_receipt (liaison_t *l, const uint8_t *id, const char *recipient,
                                           liaison_status_t status, int timeout_ms);

/* The timeout scaled by CK_TIMEOUT_MULTIPLIER (sanitizer builds). */
int harness_ms (int ms);

#endif
