/*  The edge actor; see edge.h.                                              */
#include "edge.h"

#include "bus.h"
#include "codec.h"
#include "conn.h"
#include "frame.h"
#include "log.h"
#include "tls.h"

#include <czmq.h>
#include <openssl/crypto.h>

#define TICK_MS 250
#define FIRST_MAX_FRAME 16384  /* until Welcome: a Hello is far smaller */
#define MAX_CONTROL_FRAME 4096 /* every frame but Submit and Resolve is small */
#define MAX_RESOLVE_FRAME 65536 /* 256 addresses and the routing fields */
#define CRL_WARN_MS (24 * 3600 * 1000LL)
#define CRL_CHECK_EVERY_MS (3600 * 1000LL)

// Per-connection state kept by the edge.
typedef struct {
    bool in_core;             /* the core knows the session (BUS_OPEN sent) */
    bool admitted;            /* Welcome sent; frames go to the core */
    char software[65];        /* from Hello, for the session-open line */
    int64_t credit_frames;    /* Submits the peer may still send */
    int64_t credit_bytes;
    int64_t last_ping_ms;     /* our last heartbeat to the peer */
    char session_id[24];
} peer_t;

typedef struct {
    const config_t *cfg;
    void *stream;             /* ZMQ_STREAM, bound */
    void *bus;                /* PAIR to the core */
    wire_tls_ctx_t *tls;
    wire_conns_t *conns;
    uint64_t sessions_opened;
    int64_t last_reload_ms;   /* connections older than this are rechecked */
    int64_t next_crl_check;
    bool stopping;
} edge_t;

static wire_tls_ctx_t *
s_tls_load (const config_t *cfg, char *err, size_t errlen)
{
    wire_tls_config_t tc = {cfg->cert, cfg->key, cfg->ca, cfg->crl_dir, NULL, NULL};
    return wire_tls_ctx_new_server (&tc, err, errlen);
}

// Sends an Error frame (and closes the connection if code says so).
static void
s_error (wire_conn_t *conn, int code, const char *reason, const char *detail, bool close)
{
    Liaison__Error e = LIAISON__ERROR__INIT;
    e.code = (Liaison__ErrorCode) code;
    e.reason = (char *) reason;
    e.detail = (char *) (detail ? detail : "");
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_ERROR;
    f.error = &e;
    wire_codec_send (conn, &f);
    if (close)
        wire_conn_close (conn, reason);
}

static void
s_on_open (void *arg, wire_conn_t *conn)
{
    edge_t *self = arg;
    peer_t *p = calloc (1, sizeof *p);
    if (!p) {
        wire_conn_close (conn, "out of memory");
        return;
    }
    wire_conn_set_user (conn, p);
    const wire_identity_t *id = wire_conn_peer (conn);
    // A handshake begun before a reload was verified under the old CRLs.
    char reason[200];
    if (wire_conn_created_ms (conn) <= self->last_reload_ms
        && wire_tls_ctx_recheck (self->tls, wire_conn_tls (conn), reason, sizeof reason)) {
        log_event ("handshake-refused", "peer=%s node=%s reason=%s", wire_conn_address (conn),
                   id->node_id, LOG_Q (reason));
        s_error (conn, LIAISON__ERROR_CODE__ERR_AUTH, "certificate-refused", reason, true);
        return;
    }
    log_event ("handshake-ok", "node=%s jurisdiction=%s serial=%s peer=%s", id->node_id,
               id->jurisdiction, id->serial, wire_conn_address (conn));
}

// The first frame of a session must be Hello; answer Welcome or Error.
static int
s_hello (edge_t *self, wire_conn_t *conn, peer_t *p, Liaison__Frame *f)
{
    const wire_identity_t *id = wire_conn_peer (conn);
    if (f->kind_case != LIAISON__FRAME__KIND_HELLO) {
        log_event ("session-refused", "node=%s reason=expected-hello", id->node_id);
        s_error (conn, LIAISON__ERROR_CODE__ERR_UNEXPECTED, "expected-hello",
                 "the first frame of a session must be Hello", true);
        return -1;
    }
    if (f->hello->min_version > WIRE_PROTOCOL_VERSION
        || f->hello->max_version < WIRE_PROTOCOL_VERSION) {
        char detail[160];
        snprintf (detail, sizeof detail,
                  "broker speaks protocol version %d only; client offered %u..%u",
                  WIRE_PROTOCOL_VERSION, f->hello->min_version, f->hello->max_version);
        log_event ("session-refused", "node=%s reason=version min=%u max=%u", id->node_id,
                   f->hello->min_version, f->hello->max_version);
        s_error (conn, LIAISON__ERROR_CODE__ERR_VERSION, "version", detail, true);
        return -1;
    }
    bus_peer_t *bp = calloc (1, sizeof *bp);
    if (!bp) {
        s_error (conn, LIAISON__ERROR_CODE__ERR_EXHAUSTED, "exhausted", "broker out of memory", true);
        return -1;
    }
    snprintf (bp->node_id, sizeof bp->node_id, "%s", id->node_id);
    snprintf (bp->jurisdiction, sizeof bp->jurisdiction, "%s", id->jurisdiction);
    snprintf (bp->org, sizeof bp->org, "%s", id->org);
    snprintf (bp->serial, sizeof bp->serial, "%s", id->serial);
    bp->key = wire_tls_peer_key (wire_conn_tls (conn));
    snprintf (p->session_id, sizeof p->session_id, "s%llu",
              (unsigned long long) ++self->sessions_opened);
    snprintf (p->software, sizeof p->software, "%s", f->hello->software);
    // The core decides (session caps); Welcome goes out when it admits.
    if (bus_send (self->bus, BUS_OPEN, wire_conn_handle (conn), 0, bp)) {
        EVP_PKEY_free (bp->key);
        free (bp);
        s_error (conn, LIAISON__ERROR_CODE__ERR_INTERNAL, "internal", "broker core unavailable", true);
        return -1;
    }
    p->in_core = true;
    return 0;
}

// The core admitted the session: Welcome.
static void
s_admit (edge_t *self, wire_conn_t *conn)
{
    peer_t *p = wire_conn_user (conn);
    const wire_identity_t *id = wire_conn_peer (conn);
    if (!p || p->admitted)
        return;
    Liaison__Welcome w = LIAISON__WELCOME__INIT;
    w.version = WIRE_PROTOCOL_VERSION;
    w.node_id = (char *) id->node_id;
    w.jurisdiction = (char *) id->jurisdiction;
    w.server_time_ms = wire_time_ms ();
    w.max_frame = self->cfg->max_frame;
    w.credit_frames = self->cfg->credit_frames;
    w.credit_bytes = self->cfg->credit_bytes;
    w.heartbeat_ms = self->cfg->heartbeat_ms;
    w.session_id = p->session_id;
    Liaison__Frame out = LIAISON__FRAME__INIT;
    out.kind_case = LIAISON__FRAME__KIND_WELCOME;
    out.welcome = &w;
    p->admitted = true;
    p->last_ping_ms = wire_clock_ms ();
    wire_conn_set_max_frame (conn, self->cfg->max_frame);
    p->credit_frames = self->cfg->credit_frames;
    p->credit_bytes = (int64_t) self->cfg->credit_bytes;
    wire_codec_send (conn, &out);
    log_event ("session-open", "node=%s jurisdiction=%s session=%s software=%s", id->node_id,
               id->jurisdiction, p->session_id, LOG_Q (p->software));
}

static int
s_on_frame (void *arg, wire_conn_t *conn, const uint8_t *data, size_t size)
{
    edge_t *self = arg;
    peer_t *p = wire_conn_user (conn);
    const wire_identity_t *id = wire_conn_peer (conn);
    wire_codec_error_t err;
    Liaison__Frame *f = wire_codec_decode (data, size, &err);
    if (!f) {
        log_event ("frame-refused", "node=%s reason=%s size=%zu detail=%s", id->node_id,
                   err.reason, size, LOG_Q (err.detail));
        s_error (conn, err.code, err.reason, err.detail, true);
        return -1;
    }
    if (p->in_core && !p->admitted) {
        wire_codec_free (&f);
        log_event ("session-refused", "node=%s reason=frame-before-welcome", id->node_id);
        s_error (conn, LIAISON__ERROR_CODE__ERR_UNEXPECTED, "frame-before-welcome",
                 "wait for Welcome before sending anything after Hello", true);
        return -1;
    }
    if (!p->admitted) {
        int rc = s_hello (self, conn, p, f);
        wire_codec_free (&f);
        return rc;
    }
    size_t cap = f->kind_case == LIAISON__FRAME__KIND_SUBMIT ? SIZE_MAX
                 : f->kind_case == LIAISON__FRAME__KIND_RESOLVE || f->kind_case == LIAISON__FRAME__KIND_ACK
                     ? MAX_RESOLVE_FRAME
                     : MAX_CONTROL_FRAME;
    if (size > cap) {
        wire_codec_free (&f);
        log_event ("frame-refused", "node=%s reason=control-frame-too-large size=%zu",
                   id->node_id, size);
        s_error (conn, LIAISON__ERROR_CODE__ERR_MALFORMED, "control-frame-too-large",
                 "only Submit frames may exceed 4096 bytes (Resolve and Ack: 65536)", true);
        return -1;
    }
    if (f->kind_case == LIAISON__FRAME__KIND_SUBMIT) {
        p->credit_frames--;
        p->credit_bytes -= (int64_t) size;
        if (p->credit_frames < 0 || p->credit_bytes < 0) {
            wire_codec_free (&f);
            log_event ("session-kicked", "node=%s reason=credit-exceeded", id->node_id);
            s_error (conn, LIAISON__ERROR_CODE__ERR_CREDIT, "credit-exceeded",
                     "sent beyond the credit the broker granted", true);
            return -1;
        }
    }
    // Heartbeats stop here; everything else is the core's.
    if (f->kind_case == LIAISON__FRAME__KIND_PING && !f->ping->want_reply) {
        wire_codec_free (&f);
        return 0;
    }
    if (bus_send (self->bus, BUS_FRAME, wire_conn_handle (conn), (uint32_t) size, f)) {
        wire_codec_free (&f);
        s_error (conn, LIAISON__ERROR_CODE__ERR_INTERNAL, "internal", "broker core unavailable", true);
        return -1;
    }
    return 0;
}

static void
s_on_bad_stream (void *arg, wire_conn_t *conn, int status)
{
    const wire_identity_t *id = wire_conn_peer (conn);
    int code = status == WIRE_FRAME_TOO_LARGE ? LIAISON__ERROR_CODE__ERR_FRAME_TOO_LARGE
               : status == WIRE_FRAME_EMPTY   ? LIAISON__ERROR_CODE__ERR_MALFORMED
                                              : LIAISON__ERROR_CODE__ERR_EXHAUSTED;
    const char *reason = status == WIRE_FRAME_TOO_LARGE ? "frame-too-large"
                         : status == WIRE_FRAME_EMPTY   ? "empty-frame"
                                                        : "exhausted";
    log_event ("frame-refused", "node=%s reason=%s", id->node_id, reason);
    s_error (conn, code, reason, wire_frame_strerror ((wire_frame_status_t) status), false);
    (void) arg;
}

static void
s_on_close (void *arg, wire_conn_t *conn, bool opened, const char *reason)
{
    edge_t *self = arg;
    peer_t *p = wire_conn_user (conn);
    const wire_identity_t *id = wire_conn_peer (conn);
    if (!opened)
        log_event ("handshake-refused", "peer=%s reason=%s", wire_conn_address (conn),
                   LOG_Q (reason));
    else if (p && p->in_core) {
        bus_send (self->bus, BUS_CLOSED, wire_conn_handle (conn), 0, NULL);
        log_event ("session-closed", "node=%s session=%s reason=%s", id->node_id,
                   p->session_id, LOG_Q (reason));
    }
    else
        log_event ("session-closed", "node=%s reason=%s", id->node_id, LOG_Q (reason));
    free (p);
    wire_conn_set_user (conn, NULL);
}

// Timer work on one connection: handshake and heartbeat timeouts.
static void
s_check_conn (void *arg, wire_conn_t *conn)
{
    edge_t *self = arg;
    peer_t *p = wire_conn_user (conn);
    int64_t now = wire_clock_ms ();
    if (!p || !p->admitted) {
        if (now - wire_conn_created_ms (conn) > self->cfg->handshake_timeout_ms) {
            if (p)
                s_error (conn, LIAISON__ERROR_CODE__ERR_TIMEOUT, "hello-timeout",
                         "no Hello within the handshake timeout", true);
            else
                wire_conn_close (conn, "handshake timeout");
        }
        return;
    }
    if (now - wire_conn_last_recv_ms (conn) > 3 * (int64_t) self->cfg->heartbeat_ms) {
        s_error (conn, LIAISON__ERROR_CODE__ERR_TIMEOUT, "heartbeat-timeout",
                 "nothing received for three heartbeat intervals", true);
        return;
    }
    // Our own heartbeat, so the node can tell a silent broker from a dead one.
    if (now - p->last_ping_ms >= self->cfg->heartbeat_ms) {
        Liaison__Ping ping = LIAISON__PING__INIT;
        Liaison__Frame f = LIAISON__FRAME__INIT;
        f.kind_case = LIAISON__FRAME__KIND_PING;
        f.ping = &ping;
        wire_codec_send (conn, &f);
        p->last_ping_ms = now;
    }
}

// After a reload: close sessions whose certificate no longer verifies.
static void
s_recheck_conn (void *arg, wire_conn_t *conn)
{
    edge_t *self = arg;
    if (!wire_conn_is_open (conn))
        return;
    char reason[200];
    if (wire_tls_ctx_recheck (self->tls, wire_conn_tls (conn), reason, sizeof reason) == 0)
        return;
    const wire_identity_t *id = wire_conn_peer (conn);
    log_event ("session-revoked", "node=%s serial=%s reason=%s", id->node_id, id->serial,
               LOG_Q (reason));
    s_error (conn, LIAISON__ERROR_CODE__ERR_AUTH, "certificate-refused", reason, true);
}

static void
s_crl_warn (void *arg, const char *issuer, int64_t remaining_ms)
{
    (void) arg;
    if (remaining_ms <= 0)
        log_event ("crl-expired", "issuer=%s detail=%s", LOG_Q (issuer),
                   LOG_Q ("CRL past nextUpdate: nodes under this CA are refused until it is "
                          "republished (liaison-pki crl) and the broker reloaded (SIGHUP)"));
    else
        log_event ("crl-expiring", "issuer=%s remaining_s=%lld", LOG_Q (issuer),
                   (long long) (remaining_ms / 1000));
}

static void
s_reload (edge_t *self, zsock_t *pipe)
{
    char err[512];
    wire_tls_ctx_t *ctx = s_tls_load (self->cfg, err, sizeof err);
    if (!ctx) {
        log_event ("reload-failed", "reason=%s detail=%s", LOG_Q (err),
                   LOG_Q ("previous certificates and CRLs stay in force"));
        zstr_sendf (pipe, "FAILED %s", err);
        return;
    }
    wire_tls_ctx_destroy (&self->tls);
    self->tls = ctx;
    wire_conns_set_ctx (self->conns, ctx);
    self->last_reload_ms = wire_clock_ms ();
    log_event ("reload-ok", "crls=%d", wire_tls_ctx_crl_count (ctx));
    wire_tls_ctx_crl_check (ctx, CRL_WARN_MS, s_crl_warn, NULL);
    wire_conns_foreach (self->conns, s_recheck_conn, self);
    zstr_send (pipe, "OK");
}

static void
s_say_goodbye (void *arg, wire_conn_t *conn)
{
    peer_t *p = wire_conn_user (conn);
    if (p && p->admitted) {
        Liaison__Close c = LIAISON__CLOSE__INIT;
        c.reason = "broker shutting down";
        Liaison__Frame f = LIAISON__FRAME__INIT;
        f.kind_case = LIAISON__FRAME__KIND_CLOSE;
        f.close = &c;
        wire_codec_send (conn, &f);
    }
    wire_conn_close (conn, "broker shutting down");
    (void) arg;
}

// Handles what the core sent.
static void
s_from_core (edge_t *self)
{
    bus_msg_t m;
    for (int i = 0; i < 4096 && bus_recv (self->bus, &m) == 0; i++) {
        wire_conn_t *conn = wire_conns_lookup (self->conns, m.handle);
        switch (m.kind) {
            case BUS_SEND: {
                bus_buf_t *buf = m.ptr;
                if (conn)
                    wire_conn_frame_write (conn, buf->data, buf->size);
                bus_buf_unref (buf);
                break;
            }
            case BUS_ADMIT:
                if (conn)
                    s_admit (self, conn);
                break;
            case BUS_CREDIT:
                if (conn && wire_conn_user (conn)) {
                    peer_t *p = wire_conn_user (conn);
                    Liaison__Credit c = LIAISON__CREDIT__INIT;
                    c.frames = m.code;
                    c.bytes = (uint64_t) (uintptr_t) m.ptr;
                    Liaison__Frame f = LIAISON__FRAME__INIT;
                    f.kind_case = LIAISON__FRAME__KIND_CREDIT;
                    f.credit = &c;
                    if (wire_codec_send (conn, &f) == 0) {
                        p->credit_frames += c.frames;
                        p->credit_bytes += (int64_t) c.bytes;
                    }
                }
                break;
            case BUS_KICK: {
                bus_kick_t *k = m.ptr;
                if (conn && k)
                    s_error (conn, (int) m.code, k->reason, k->detail, true);
                else if (conn)
                    wire_conn_close (conn, "closed by peer");
                free (k);
                break;
            }
            default:
                break;
        }
    }
}

void
edge_actor (void *pipe_v, void *args_v)
{
    zsock_t *pipe = pipe_v;
    edge_args_t *args = args_v;
    edge_t self = {.cfg = args->config, .last_reload_ms = -1};
    char err[512];
    void *zctx = zsys_init ();
    wire_frame_set_budget ((size_t) self.cfg->reassembly_budget);
    self.tls = s_tls_load (self.cfg, err, sizeof err);
    if (!self.tls) {
        log_event ("startup-failed", "reason=%s", LOG_Q (err));
        zsock_signal (pipe, 0);
        zstr_send (pipe, "FAILED");
        return;
    }
    self.bus = zmq_socket (zctx, ZMQ_PAIR);
    self.stream = zmq_socket (zctx, ZMQ_STREAM);
    int zero = 0, maxrt = 30000, hwm = 64, one = 1;
    zmq_setsockopt (self.bus, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt (self.bus, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt (self.bus, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (self.stream, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (self.stream, ZMQ_TCP_MAXRT, &maxrt, sizeof maxrt);
    zmq_setsockopt (self.stream, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self.stream, ZMQ_STREAM_NOTIFY, &one, sizeof one);
    if (zmq_connect (self.bus, args->bus_endpoint) || zmq_bind (self.stream, self.cfg->endpoint)) {
        log_event ("startup-failed", "endpoint=%s reason=%s", LOG_Q (self.cfg->endpoint),
                   LOG_Q (zmq_strerror (errno)));
        zsock_signal (pipe, 0);
        zstr_send (pipe, "FAILED");
        goto done;
    }
    wire_conns_limits_t limits = {self.cfg->max_frame, (size_t) self.cfg->max_pending_bytes,
                                  self.cfg->max_connections, self.cfg->max_handshakes,
                                  FIRST_MAX_FRAME};
    wire_conns_handler_t handler = {s_on_open, s_on_frame, s_on_bad_stream, s_on_close};
    self.conns = wire_conns_new (self.stream, self.tls, &limits, &handler, &self);
    char endpoint[256] = "";
    size_t elen = sizeof endpoint;
    zmq_getsockopt (self.stream, ZMQ_LAST_ENDPOINT, endpoint, &elen);
    zsock_signal (pipe, 0);
    zstr_sendf (pipe, "OK %s", endpoint);
    log_event ("listening", "endpoint=%s crls=%d", endpoint, wire_tls_ctx_crl_count (self.tls));
    wire_tls_ctx_crl_check (self.tls, CRL_WARN_MS, s_crl_warn, NULL);
    self.next_crl_check = wire_clock_ms () + CRL_CHECK_EVERY_MS;

    zmq_pollitem_t items[] = {{zsock_resolve (pipe), 0, ZMQ_POLLIN, 0},
                              {self.stream, 0, ZMQ_POLLIN, 0},
                              {self.bus, 0, ZMQ_POLLIN, 0}};
    int64_t next_tick = wire_clock_ms () + TICK_MS;
    bool backlog = false;
    while (!self.stopping) {
        int64_t wait = next_tick - wire_clock_ms ();
        if (backlog && wait > 5)
            wait = 5;  // a peer's pipe was full: retry soon
        if (wait < 0)
            wait = 0;
        if (zmq_poll (items, 3, (long) wait) < 0 && errno != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN) {
            char *cmd = zstr_recv (pipe);
            if (!cmd || streq (cmd, "$TERM"))
                self.stopping = true;
            else if (streq (cmd, "RELOAD"))
                s_reload (&self, pipe);
            zstr_free (&cmd);
        }
        if (items[1].revents & ZMQ_POLLIN)
            wire_conns_recv (self.conns, 256);
        if (items[2].revents & ZMQ_POLLIN)
            s_from_core (&self);
        int64_t now = wire_clock_ms ();
        if (now >= next_tick) {
            wire_conns_foreach (self.conns, s_check_conn, &self);
            next_tick = now + TICK_MS;
            if (now >= self.next_crl_check) {
                wire_tls_ctx_crl_check (self.tls, CRL_WARN_MS, s_crl_warn, NULL);
                self.next_crl_check = now + CRL_CHECK_EVERY_MS;
            }
        }
        backlog = wire_conns_flush (self.conns);
    }
    // Orderly stop: a Close frame to every session, flushed while we can.
    wire_conns_foreach (self.conns, s_say_goodbye, &self);
    for (int i = 0; i < 50 && wire_conns_flush (self.conns); i++)
        zmq_poll (NULL, 0, 10);
    log_event ("stopped", "sessions=%zu", wire_conns_count (self.conns));
done:
    wire_conns_destroy (&self.conns);
    {
        // Frames the core sent that were never taken.
        bus_msg_t m;
        while (bus_recv (self.bus, &m) == 0) {
            if (m.kind == BUS_SEND)
                bus_buf_unref (m.ptr);
            else if (m.kind == BUS_KICK)
                free (m.ptr);
        }
    }
    zmq_close (self.bus);
    // Let the goodbyes already queued reach the peers.
    int linger = 1000;
    zmq_setsockopt (self.stream, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close (self.stream);
    wire_tls_ctx_destroy (&self.tls);
    // Free this thread's OpenSSL state now: at process exit it would race
    // with OpenSSL's own cleanup.
    OPENSSL_thread_stop ();
}
