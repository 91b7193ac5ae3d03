/*  The ZMQ_STREAM connection table: one TLS session per TCP connection.

    ZeroMQ owns TCP; this table owns everything above it for one STREAM
    socket: routing ids, the TLS session and frame reader of each connection,
    the plaintext frames waiting to be encrypted (coalesced into large
    records, flushed once per loop pass), and the ciphertext a slow peer has
    not taken yet (capped; see DESIGN.md on ZMQ_STREAM's sharp edges). It is
    used by the broker (many connections) and by the client library (one).
    Not thread-safe: one thread owns a table and its socket.                 */
#ifndef LIAISON_WIRE_CONN_H
#define LIAISON_WIRE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tls.h"

typedef struct wire_conns wire_conns_t;
typedef struct wire_conn wire_conn_t;

typedef struct {
    /* TLS handshake done and the peer verified. */
    void (*on_open) (void *arg, wire_conn_t *conn);
    /* One complete frame (borrowed bytes). Return -1 after closing conn. */
    int (*on_frame) (void *arg, wire_conn_t *conn, const uint8_t *data, size_t size);
    /* The byte stream broke the framing rules (a wire_frame_status_t); the
       connection closes after this returns, flushing what was queued. */
    void (*on_bad_stream) (void *arg, wire_conn_t *conn, int status);
    /* The connection is gone; conn is freed after this returns. opened says
       whether on_open was called for it. */
    void (*on_close) (void *arg, wire_conn_t *conn, bool opened, const char *reason);
} wire_conns_handler_t;

typedef struct {
    uint32_t max_frame;       /* largest inbound frame accepted */
    size_t max_pending;       /* unsent bytes per connection before cut-off */
    size_t max_conns;         /* connections beyond this are refused */
    size_t max_handshakes;    /* connections in the TLS handshake; 0: no cap */
    uint32_t first_max_frame; /* limit until wire_conn_set_max_frame; 0: max_frame */
} wire_conns_limits_t;

/* A table for `socket` (a libzmq ZMQ_STREAM socket, borrowed; the caller
   sets it up). Takes a reference on ctx. NULL when out of memory. */
wire_conns_t *wire_conns_new (void *socket, wire_tls_ctx_t *ctx,
                              const wire_conns_limits_t *limits,
                              const wire_conns_handler_t *handler, void *arg);

/* Drops every connection (calling on_close for each, reason "shutting
   down") and frees the table. NULL-safe. */
void wire_conns_destroy (wire_conns_t **self_p);

/* New connections use ctx from now on (live ones keep theirs). Takes a
   reference on ctx. */
void wire_conns_set_ctx (wire_conns_t *self, wire_tls_ctx_t *ctx);

/* Processes up to max inbound socket messages without blocking, calling the
   handler. Returns the number processed. */
int wire_conns_recv (wire_conns_t *self, int max);

/* Encrypts queued frames and sends pending ciphertext of every connection
   that has some; connections that cannot take it stay queued. Call once per
   loop pass. Returns true if some ciphertext is still waiting. */
bool wire_conns_flush (wire_conns_t *self);

/* Connection by handle; NULL if it has gone since. */
wire_conn_t *wire_conns_lookup (wire_conns_t *self, uint64_t handle);

/* Number of live connections. */
size_t wire_conns_count (const wire_conns_t *self);

/* Calls fn for every live connection; fn may close the connection. */
void wire_conns_foreach (wire_conns_t *self,
                         void (*fn) (void *arg, wire_conn_t *conn), void *arg);

/* Reserves room for one frame of `size` bytes at the end of conn's output and
   returns where its body goes (the length prefix is written already), or
   NULL if the frame exceeds the pending cap (the connection is then closed).
   The pointer is valid until the next call on this connection. */
uint8_t *wire_conn_frame_begin (wire_conn_t *conn, size_t size);

/* Queues a copy of one frame. 0, or -1 as for wire_conn_frame_begin. */
int wire_conn_frame_write (wire_conn_t *conn, const void *data, size_t size);

/* Flushes what is queued, sends close_notify and drops the connection:
   input is ignored from now on, no more frames can be queued, and the
   connection is gone within a second even if the peer takes nothing. The
   handler's on_close runs (later, from recv or flush), with reason. */
void wire_conn_close (wire_conn_t *conn, const char *reason);

/* The TCP connection is known to be gone (ZeroMQ's monitor said so): drop
   conn at once; on_close runs from the next recv or flush. */
void wire_conn_lost (wire_conn_t *conn, const char *reason);

/* Stable handle for conn, never reused by this table. */
uint64_t wire_conn_handle (const wire_conn_t *conn);

/* Verified identity of the peer; meaningful after on_open. Borrowed. */
const wire_identity_t *wire_conn_peer (const wire_conn_t *conn);

/* TLS session of conn (for re-verification after a reload). Borrowed. */
wire_tls_t *wire_conn_tls (wire_conn_t *conn);

/* Whether the TLS handshake has completed. */
bool wire_conn_is_open (const wire_conn_t *conn);

/* Milliseconds (monotonic) when conn was accepted / last received bytes. */
int64_t wire_conn_created_ms (const wire_conn_t *conn);
int64_t wire_conn_last_recv_ms (const wire_conn_t *conn);

/* Changes the largest inbound frame this connection accepts (after a
   session is admitted, say). */
void wire_conn_set_max_frame (wire_conn_t *conn, uint32_t max_frame);

/* The peer's IP address as ZeroMQ reports it, or "-". Borrowed. */
const char *wire_conn_address (const wire_conn_t *conn);

/* Application data attached to conn. */
void wire_conn_set_user (wire_conn_t *conn, void *user);
void *wire_conn_user (const wire_conn_t *conn);

/* Monotonic clock in milliseconds. */
int64_t wire_clock_ms (void);

/* Wall clock, UTC milliseconds since the epoch. */
int64_t wire_time_ms (void);

#endif
