/*  Integration tests: a real liaisond, real TLS, real nodes.                */
#include "harness.h"
#include "suites.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

static liaison_t *
s_receiver (broker_t *b, const char *node)
{
    return harness_session (b, node, 1);
}

static liaison_t *
s_sender (broker_t *b, const char *node)
{
    return harness_session (b, node, 0);
}

static liaison_message_t *
s_request (const char *to, const char *body)
{
    liaison_message_t *m = liaison_message_new (LIAISON_MLA_REQUEST);
    ck_assert_int_eq (liaison_message_add_recipient (m, LIAISON_TO_NODE, to), LIAISON_OK);
    ck_assert_int_eq (liaison_message_set_body (m, body, strlen (body)), LIAISON_OK);
    return m;
}


// The other nodes still relay: a fresh send from fr-pn reaches rx.
static void
s_assert_relay_works (broker_t *b, liaison_t *rx, const char *to)
{
    liaison_t *tx = s_sender (b, "fr-pn");
    liaison_message_t *m = s_request (to, "still alive");
    ck_assert_int_eq (liaison_send (tx, m, 0), LIAISON_OK);
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (rx, &got, 5000), LIAISON_OK);
    ck_assert_mem_eq (liaison_message_id (got), liaison_message_id (m), LIAISON_ID_LEN);
    liaison_message_destroy (&got);
    liaison_message_destroy (&m);
    liaison_close (&tx);
}

START_TEST (test_relay_mla_request_and_reply)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *de = s_receiver (&b, "de-bka");
    liaison_t *fr = s_receiver (&b, "fr-pn");
    liaison_message_t *m = s_request ("de-bka", "request: subscriber data for +33 6 12 34 56 78");
    liaison_message_set_priority (m, LIAISON_URGENT);
    liaison_message_set_tlp (m, LIAISON_TLP_AMBER_STRICT);
    liaison_message_set_handling (m, LIAISON_H2, NULL);
    liaison_message_set_legal_basis (m, "eio");
    liaison_message_set_case_ref (m, "FR-2026-0042");
    liaison_message_set_deadline (m, 1900000000000);
    ck_assert_int_eq (liaison_send (fr, m, 0), LIAISON_OK);

    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (de, &got, 5000), LIAISON_OK);
    ck_assert_str_eq (liaison_message_sender (got), "fr-pn");  // stamped by the broker
    ck_assert_mem_eq (liaison_message_id (got), liaison_message_id (m), LIAISON_ID_LEN);
    ck_assert_int_eq (liaison_message_priority (got), LIAISON_URGENT);
    ck_assert_int_eq (liaison_message_tlp (got), LIAISON_TLP_AMBER_STRICT);
    ck_assert_int_eq (liaison_message_handling (got), LIAISON_H2);
    ck_assert_str_eq (liaison_message_legal_basis (got), "eio");
    ck_assert_str_eq (liaison_message_case_ref (got), "FR-2026-0042");
    ck_assert_int_eq (liaison_message_deadline (got), 1900000000000);
    size_t len;
    const char *body = liaison_message_body (got, &len);
    ck_assert_uint_eq (len, strlen ("request: subscriber data for +33 6 12 34 56 78"));
    ck_assert (memcmp (body, "request:", 8) == 0);
    // The sender hears ACCEPTED (durable at the broker), then DELIVERED
    // (durable at de-bka), signed by de-bka: it verifies with de-bka's
    // certificate and with no other.
    char cert[600];
    liaison_receipt_t *r =
        harness_expect_receipt (fr, liaison_message_id (m), "de-bka", LIAISON_ACCEPTED, 5000);
    ck_assert_int_eq (liaison_receipt_verify (r, harness_node_cert (&b, "de-bka", cert, sizeof cert)),
                      LIAISON_EDENIED);  // ACCEPTED is not signed by the recipient
    liaison_receipt_destroy (&r);
    r = harness_expect_receipt (fr, liaison_message_id (m), "de-bka", LIAISON_DELIVERED, 5000);
    ck_assert_int_eq (liaison_receipt_verify (r, harness_node_cert (&b, "de-bka", cert, sizeof cert)),
                      LIAISON_OK);
    ck_assert_int_eq (liaison_receipt_verify (r, harness_node_cert (&b, "fr-pn", cert, sizeof cert)),
                      LIAISON_EDENIED);
    ck_assert_int_eq (liaison_receipt_verify (r, harness_node_cert (&b, "it-ps", cert, sizeof cert)),
                      LIAISON_EDENIED);
    liaison_receipt_destroy (&r);
    ck_assert_int_eq (liaison_ack (de, got, 0), LIAISON_OK);

    // The reply travels back, linked to the request.
    liaison_message_t *reply = liaison_message_new (LIAISON_MLA_REPLY);
    liaison_message_add_recipient (reply, LIAISON_TO_NODE, "fr-pn");
    liaison_message_set_in_reply_to (reply, liaison_message_id (got));
    liaison_message_set_body (reply, "executed", 8);
    ck_assert_int_eq (liaison_send (de, reply, 0), LIAISON_OK);
    liaison_message_t *back = NULL;
    ck_assert_int_eq (liaison_recv (fr, &back, 5000), LIAISON_OK);
    ck_assert_str_eq (liaison_message_sender (back), "de-bka");
    ck_assert_int_eq (liaison_message_type (back), LIAISON_MLA_REPLY);
    ck_assert_mem_eq (liaison_message_in_reply_to (back), liaison_message_id (m), LIAISON_ID_LEN);
    ck_assert_int_eq (liaison_ack (fr, back, 0), LIAISON_OK);
    r = harness_expect_receipt (de, liaison_message_id (reply), "fr-pn", LIAISON_ACCEPTED, 5000);
    liaison_receipt_destroy (&r);
    r = harness_expect_receipt (de, liaison_message_id (reply), "fr-pn", LIAISON_DELIVERED, 5000);
    ck_assert_int_eq (liaison_receipt_verify (r, harness_node_cert (&b, "fr-pn", cert, sizeof cert)),
                      LIAISON_OK);
    ck_assert_int_eq (liaison_receipt_verify (r, harness_node_cert (&b, "de-bka", cert, sizeof cert)),
                      LIAISON_EDENIED);
    liaison_receipt_destroy (&r);
    // Nothing was refused, and each receipt came once: no other waits.
    ck_assert_int_eq (liaison_flush (fr, 5000), LIAISON_OK);
    ck_assert_int_eq (liaison_flush (de, 5000), LIAISON_OK);
    ck_assert_int_eq (liaison_next_receipt (fr, &r, 0), LIAISON_ETIMEOUT);
    ck_assert_int_eq (liaison_next_receipt (de, &r, 0), LIAISON_ETIMEOUT);
    liaison_message_destroy (&back);
    liaison_message_destroy (&reply);
    liaison_message_destroy (&got);
    liaison_message_destroy (&m);
    liaison_close (&de);
    liaison_close (&fr);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

// Store and forward: a message to a node that is offline (and to a
// jurisdiction whose contact point is offline) is ACCEPTED for each, and
// the node gets it when it connects.
START_TEST (test_rejected_offline)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *fr = s_sender (&b, "fr-pn");
    liaison_message_t *m = s_request ("it-ps", "x");
    liaison_message_add_recipient (m, LIAISON_TO_JURISDICTION, "ES");
    ck_assert_int_eq (liaison_send (fr, m, 0), LIAISON_OK);
    ck_assert_int_eq (liaison_flush (fr, 5000), LIAISON_OK);
    // The jurisdiction stands for its contact point, es-cnp.
    bool it = false, es = false;
    for (int i = 0; i < 2; i++) {
        liaison_receipt_t *r = NULL;
        ck_assert_int_eq (liaison_next_receipt (fr, &r, 5000), LIAISON_OK);
        ck_assert_int_eq (liaison_receipt_status (r), LIAISON_ACCEPTED);
        ck_assert_mem_eq (liaison_receipt_id (r), liaison_message_id (m), LIAISON_ID_LEN);
        it |= strcmp (liaison_receipt_recipient (r), "it-ps") == 0;
        es |= strcmp (liaison_receipt_recipient (r), "es-cnp") == 0;
        liaison_receipt_destroy (&r);
    }
    ck_assert (it && es);
    liaison_receipt_t *none = NULL;
    ck_assert_int_eq (liaison_next_receipt (fr, &none, 0), LIAISON_ETIMEOUT);
    ck_assert (!harness_log_wait (&b, "event=message-rejected", 0, 0));
    // it-ps comes online and gets it; the sender hears DELIVERED.
    liaison_t *rx = s_receiver (&b, "it-ps");
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (rx, &got, 5000), LIAISON_OK);
    ck_assert_mem_eq (liaison_message_id (got), liaison_message_id (m), LIAISON_ID_LEN);
    ck_assert_str_eq (liaison_message_sender (got), "fr-pn");
    none = harness_expect_receipt (fr, liaison_message_id (m), "it-ps", LIAISON_DELIVERED, 5000);
    liaison_receipt_destroy (&none);
    liaison_message_destroy (&got);
    liaison_message_destroy (&m);
    liaison_close (&rx);
    liaison_close (&fr);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_sender_spoofing_refused)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *de = s_receiver (&b, "de-bka");
    liaison_t *fr = s_sender (&b, "fr-pn");
    liaison_message_t *m = s_request ("de-bka", "pretending to be the BKA");
    liaison_message_set_sender (m, "de-bka");
    ck_assert_int_eq (liaison_send (fr, m, 0), LIAISON_OK);
    ck_assert_int_eq (liaison_flush (fr, 5000), LIAISON_OK);
    harness_expect_rejected (fr, liaison_message_id (m), "de-bka", "sender-mismatch", NULL);
    ck_assert (harness_log_wait (&b, "event=sender-refused node=fr-pn claimed=\"de-bka\"", 0, 2000));
    // Nothing reached the recipient.
    ck_assert_int_eq (liaison_flush (de, 5000), LIAISON_OK);
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (de, &got, 200), LIAISON_ETIMEOUT);
    // Claiming one's own id is fine.
    liaison_message_set_sender (m, "fr-pn");
    ck_assert_int_eq (liaison_send (fr, m, 0), LIAISON_OK);
    ck_assert_int_eq (liaison_recv (de, &got, 5000), LIAISON_OK);
    liaison_message_destroy (&got);
    liaison_message_destroy (&m);
    liaison_close (&fr);
    liaison_close (&de);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

// Each bad client certificate is refused at the handshake, with a reason.
static const struct {
    const char *subdir;
    const char *logged;
} s_bad_certs[] = {
    {"bad/expired", "certificate has expired"},
    {"bad/revoked", "certificate revoked"},
    {"bad/foreign", "unable to get local issuer certificate"},
    {"bad/c-mismatch", "issuing CA is not constrained to C=DE"},
    {"bad/cn-mismatch", "does not begin with its country"},
};

START_TEST (test_bad_client_certificate_refused)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    node_opts_t n;
    harness_node (&b, &n, s_bad_certs[_i].subdir);
    liaison_t *l = NULL;
    int rc = liaison_connect (&n.o, &l);
    ck_assert_ptr_null (l);
    if (rc != LIAISON_EAUTH)
        harness_sh ("cat '%s' >&2", b.log);
    ck_assert_msg (rc == LIAISON_EAUTH, "%s: rc %d: %s", s_bad_certs[_i].subdir, rc,
                   liaison_errmsg (NULL));
    ck_assert (harness_log_wait (&b, "event=handshake-refused", 0, 3000));
    ck_assert_msg (harness_log_wait (&b, s_bad_certs[_i].logged, 0, 3000), "log lacks '%s'",
                   s_bad_certs[_i].logged);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_no_client_certificate_refused)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    raw_t r;
    raw_connect (&r, &b, NULL);
    // The refusal arrives as an alert after the client's side completes.
    bool closed = false;
    Liaison__Frame *f = raw_read_frame (&r, 3000, &closed);
    ck_assert_ptr_null (f);
    ck_assert (closed);
    raw_close (&r);
    ck_assert (harness_log_wait (&b, "event=handshake-refused", 0, 3000));
    ck_assert (harness_log_wait (&b, "certificate", 0, 3000));
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

// A broker whose certificate is not from the hub CA is refused by nodes.
static const char *s_bad_servers[] = {"bad/fr-server", "bad/node-as-broker"};

START_TEST (test_client_refuses_false_broker)
{
    broker_t b;
    char cert[64], key[64];
    snprintf (cert, sizeof cert, "%s/server.pem", s_bad_servers[_i]);
    snprintf (key, sizeof key, "%s/server.key", s_bad_servers[_i]);
    harness_prepare (&b, NULL, cert, key);
    ck_assert_int_eq (harness_start (&b), 0);
    node_opts_t n;
    harness_node (&b, &n, "nodes/fr-pn");
    liaison_t *l = NULL;
    int rc = liaison_connect (&n.o, &l);
    ck_assert_ptr_null (l);
    ck_assert_int_eq (rc, LIAISON_ETLS);
    ck_assert_msg (strstr (liaison_errmsg (NULL), "certificate") != NULL, "%s",
                   liaison_errmsg (NULL));
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_client_checks_broker_name)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    node_opts_t n;
    harness_node (&b, &n, "nodes/fr-pn");
    n.o.server_name = "hub.example.org";
    liaison_t *l = NULL;
    ck_assert_int_eq (liaison_connect (&n.o, &l), LIAISON_ETLS);
    ck_assert_ptr_null (l);
    n.o.server_name = "localhost";
    ck_assert_int_eq (liaison_connect (&n.o, &l), LIAISON_OK);
    ck_assert_str_eq (liaison_node_id (l), "fr-pn");
    ck_assert_str_eq (liaison_jurisdiction (l), "FR");
    liaison_close (&l);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

// Hostile byte streams after a good handshake: each gets an Error and a
// close, and the broker keeps serving everyone else.
typedef struct {
    const char *name;
    const uint8_t *bytes;
    size_t size;
    bool hello_first;
    int code;
} bad_stream_t;

static const uint8_t s_zero[] = {0, 0, 0, 0};
static const uint8_t s_huge[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3};
static const uint8_t s_over[] = {0x04, 0x00, 0x00, 0x01};  // 64 MiB + 1
static const uint8_t s_garbage[] = {0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const uint8_t s_ping[] = {0, 0, 0, 2, 0x1a, 0x00};  // Ping before Hello

static const bad_stream_t s_streams[] = {
    {"zero-length", s_zero, sizeof s_zero, true, LIAISON__ERROR_CODE__ERR_MALFORMED},
    {"4 GiB", s_huge, sizeof s_huge, true, LIAISON__ERROR_CODE__ERR_FRAME_TOO_LARGE},
    {"over ceiling", s_over, sizeof s_over, false, LIAISON__ERROR_CODE__ERR_FRAME_TOO_LARGE},
    {"garbage protobuf", s_garbage, sizeof s_garbage, true, LIAISON__ERROR_CODE__ERR_MALFORMED},
    {"frame before hello", s_ping, sizeof s_ping, false, LIAISON__ERROR_CODE__ERR_UNEXPECTED},
};

START_TEST (test_hostile_stream)
{
    const bad_stream_t *t = &s_streams[_i];
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *de = s_receiver (&b, "de-bka");
    raw_t r;
    ck_assert_int_eq (raw_connect (&r, &b, "nodes/it-ps"), 0);
    if (t->hello_first)
        ck_assert_int_eq (raw_hello (&r), 0);
    ck_assert_int_eq (raw_write (&r, t->bytes, t->size), 0);
    bool closed = false;
    int code = raw_expect_error (&r, 5000, &closed);
    ck_assert_msg (code == t->code, "%s: error code %d, expected %d", t->name, code, t->code);
    ck_assert_msg (closed, "%s: connection not closed", t->name);
    raw_close (&r);
    ck_assert (harness_log_wait (&b, "event=frame-refused", 0, 3000)
               || harness_log_wait (&b, "event=session-refused", 0, 3000));
    s_assert_relay_works (&b, de, "de-bka");
    liaison_close (&de);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_truncated_frame_and_byte_splits)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *de = s_receiver (&b, "de-bka");
    // A Hello written one byte per TLS record is reassembled.
    raw_t r;
    ck_assert_int_eq (raw_connect (&r, &b, "nodes/it-ps"), 0);
    Liaison__Hello h = LIAISON__HELLO__INIT;
    h.min_version = 1;
    h.max_version = 1;
    h.software = "byte-by-byte";
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_HELLO;
    f.hello = &h;
    uint8_t buf[128];
    size_t n = liaison__frame__pack (&f, buf + 4);
    buf[0] = buf[1] = buf[2] = 0;
    buf[3] = (uint8_t) n;
    for (size_t i = 0; i < n + 4; i++)
        ck_assert_int_eq (raw_write (&r, buf + i, 1), 0);
    Liaison__Frame *w = raw_read_frame (&r, 5000, NULL);
    ck_assert_ptr_nonnull (w);
    ck_assert_int_eq (w->kind_case, LIAISON__FRAME__KIND_WELCOME);
    ck_assert_str_eq (w->welcome->node_id, "it-ps");
    liaison__frame__free_unpacked (w, NULL);
    // Half a frame, then the connection goes away.
    static const uint8_t half[] = {0, 0, 1, 0, 0x0a, 0x01};
    ck_assert_int_eq (raw_write (&r, half, sizeof half), 0);
    raw_close (&r);
    ck_assert (harness_log_wait (&b, "event=session-closed node=it-ps", 0, 3000));
    s_assert_relay_works (&b, de, "de-bka");
    liaison_close (&de);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_version_mismatch)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    raw_t r;
    ck_assert_int_eq (raw_connect (&r, &b, "nodes/it-ps"), 0);
    Liaison__Hello h = LIAISON__HELLO__INIT;
    h.min_version = 2;
    h.max_version = 3;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_HELLO;
    f.hello = &h;
    ck_assert_int_eq (raw_send_frame (&r, &f), 0);
    bool closed = false;
    ck_assert_int_eq (raw_expect_error (&r, 5000, &closed), LIAISON__ERROR_CODE__ERR_VERSION);
    ck_assert (closed);
    raw_close (&r);
    ck_assert (harness_log_wait (&b, "reason=version", 0, 3000));
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_credit_exceeded_cuts_off)
{
    broker_t b;
    harness_broker_start (&b, "        credit_frames = 4\n");
    raw_t r;
    ck_assert_int_eq (raw_connect (&r, &b, "nodes/it-ps"), 0);
    ck_assert_int_eq (raw_hello (&r), 0);
    // Ten Submits in one write: the window is four.
    uint8_t id[16] = {1};
    Liaison__Recipient rcpt = LIAISON__RECIPIENT__INIT;
    rcpt.kind = LIAISON__RECIPIENT_KIND__NODE;
    rcpt.name = "de-bka";
    Liaison__Recipient *rcpts[] = {&rcpt};
    Liaison__Envelope env = LIAISON__ENVELOPE__INIT;
    env.id.data = id;
    env.id.len = 16;
    env.n_recipients = 1;
    env.recipients = rcpts;
    env.type = LIAISON__MESSAGE_TYPE__CASE_LEAD;
    env.tlp = LIAISON__TLP__TLP_GREEN;
    env.handling = LIAISON__HANDLING_CODE__H0;
    Liaison__Submit sub = LIAISON__SUBMIT__INIT;
    sub.envelope = &env;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_SUBMIT;
    f.submit = &sub;
    uint8_t burst[10 * 128];
    size_t off = 0;
    for (int i = 0; i < 10; i++) {
        id[1] = (uint8_t) i;
        size_t n = liaison__frame__pack (&f, burst + off + 4);
        burst[off] = burst[off + 1] = burst[off + 2] = 0;
        burst[off + 3] = (uint8_t) n;
        off += n + 4;
    }
    ck_assert_int_eq (raw_write (&r, burst, off), 0);
    bool closed = false;
    ck_assert_int_eq (raw_expect_error (&r, 5000, &closed), LIAISON__ERROR_CODE__ERR_CREDIT);
    ck_assert (closed);
    raw_close (&r);
    ck_assert (harness_log_wait (&b, "reason=credit-exceeded", 0, 3000));
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_heartbeat_timeout)
{
    broker_t b;
    harness_broker_start (&b, "        heartbeat_ms = 200\n");
    raw_t r;
    ck_assert_int_eq (raw_connect (&r, &b, "nodes/it-ps"), 0);
    ck_assert_int_eq (raw_hello (&r), 0);
    bool closed = false;
    // Silent for three intervals: the broker gives up on us.
    ck_assert_int_eq (raw_expect_error (&r, 5000, &closed), LIAISON__ERROR_CODE__ERR_TIMEOUT);
    ck_assert (closed);
    raw_close (&r);
    // The library keeps its session alive by itself while pumped.
    liaison_t *de = s_receiver (&b, "de-bka");
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq (liaison_pump (de, 100), LIAISON_OK);
    ck_assert_int_eq (liaison_flush (de, 2000), LIAISON_OK);
    liaison_close (&de);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_newer_receiver_takes_over)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *old = s_receiver (&b, "de-bka");
    liaison_t *newer = s_receiver (&b, "de-bka");
    liaison_t *fr = s_sender (&b, "fr-pn");
    liaison_message_t *m = s_request ("de-bka", "for the newest receiver");
    ck_assert_int_eq (liaison_send (fr, m, 0), LIAISON_OK);
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (newer, &got, 5000), LIAISON_OK);
    liaison_message_destroy (&got);
    ck_assert_int_eq (liaison_recv (old, &got, 300), LIAISON_ETIMEOUT);
    ck_assert (harness_log_wait (&b, "event=receiver-replaced node=de-bka", 0, 2000));
    liaison_message_destroy (&m);
    liaison_close (&fr);
    liaison_close (&old);
    liaison_close (&newer);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_reconnect_with_fresh_session)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *de = s_receiver (&b, "de-bka");
    liaison_t *fr = s_sender (&b, "fr-pn");
    // Restart the broker under the session's feet.
    ck_assert_int_eq (harness_broker_stop (&b), 0);
    harness_broker_start (&b, NULL);
    node_opts_t n;
    harness_node (&b, &n, "nodes/fr-pn");
    liaison_close (&fr);
    liaison_close (&de);
    de = s_receiver (&b, "de-bka");
    ck_assert_int_eq (liaison_connect (&n.o, &fr), LIAISON_OK);
    liaison_message_t *m = s_request ("de-bka", "after restart");
    ck_assert_int_eq (liaison_send (fr, m, 0), LIAISON_OK);
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (de, &got, 5000), LIAISON_OK);
    liaison_message_destroy (&got);
    liaison_message_destroy (&m);
    liaison_close (&fr);
    liaison_close (&de);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_sighup_revocation_closes_session)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *de = s_receiver (&b, "de-bka");
    liaison_t *gn = s_receiver (&b, "fr-gn");
    ck_assert_int_eq (harness_sh ("bash deploy/pki/liaison-pki -d '%s' revoke '%s/nodes/fr-gn/cert.pem' >/dev/null 2>&1",
                                  b.pki, b.pki), 0);
    size_t from = harness_log_size (&b);
    harness_signal (&b, SIGHUP);
    ck_assert (harness_log_wait (&b, "event=reload-ok", from, 5000));
    ck_assert (harness_log_wait (&b, "event=session-revoked node=fr-gn", from, 5000));
    // The revoked node's session is gone; it cannot come back.
    int rc = LIAISON_OK;
    for (int i = 0; i < 50 && rc == LIAISON_OK; i++)
        rc = liaison_pump (gn, 100);
    ck_assert_int_ne (rc, LIAISON_OK);
    node_opts_t n;
    harness_node (&b, &n, "nodes/fr-gn");
    liaison_t *again = NULL;
    ck_assert_int_eq (liaison_connect (&n.o, &again), LIAISON_EAUTH);
    // Everyone else stays connected on the same session.
    ck_assert_int_eq (liaison_flush (de, 2000), LIAISON_OK);
    s_assert_relay_works (&b, de, "de-bka");
    liaison_close (&gn);
    liaison_close (&de);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_failed_reload_keeps_state)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *de = s_receiver (&b, "de-bka");
    ck_assert_int_eq (harness_sh ("echo garbage > '%s/crl/zz-broken.pem'", b.pki), 0);
    size_t from = harness_log_size (&b);
    harness_signal (&b, SIGHUP);
    ck_assert (harness_log_wait (&b, "event=reload-failed", from, 5000));
    ck_assert (harness_log_wait (&b, "zz-broken.pem", from, 1000));
    ck_assert_int_eq (liaison_flush (de, 2000), LIAISON_OK);
    s_assert_relay_works (&b, de, "de-bka");
    liaison_close (&de);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_missing_crl_fails_closed)
{
    broker_t b;
    harness_prepare (&b, NULL, NULL, NULL);
    ck_assert_int_eq (harness_sh ("rm '%s/crl/FR.crl.pem'", b.pki), 0);
    ck_assert_int_eq (harness_start (&b), 0);
    node_opts_t n;
    harness_node (&b, &n, "nodes/fr-pn");
    liaison_t *l = NULL;
    int rc = liaison_connect (&n.o, &l);
    ck_assert_msg (rc == LIAISON_EAUTH, "rc %d: %s", rc, liaison_errmsg (NULL));
    ck_assert (harness_log_wait (&b, "unable to get certificate CRL", 0, 3000));
    harness_node (&b, &n, "nodes/de-bka");
    ck_assert_int_eq (liaison_connect (&n.o, &l), LIAISON_OK);
    liaison_close (&l);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_bad_config_refused)
{
    broker_t b;
    harness_prepare (&b, "        max_frame = lots\n", NULL, NULL);
    ck_assert_int_eq (harness_start (&b), -1);
    ck_assert (harness_log_wait (&b, "liaisond/limits/max_frame", 0, 1000));
    harness_sh ("rm -rf '%s'", b.dir);
}
END_TEST


START_TEST (test_older_receiver_promoted)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    liaison_t *old = s_receiver (&b, "de-bka");
    liaison_t *newer = s_receiver (&b, "de-bka");
    size_t from = harness_log_size (&b);
    liaison_close (&newer);
    // The older receiver takes over when the newest leaves.
    ck_assert (harness_log_wait (&b, "reason=previous-receiver-closed", from, 5000));
    liaison_t *fr = s_sender (&b, "fr-pn");
    liaison_message_t *m = s_request ("de-bka", "for whoever still receives");
    ck_assert_int_eq (liaison_send (fr, m, 0), LIAISON_OK);
    liaison_message_t *got = NULL;
    ck_assert_int_eq (liaison_recv (old, &got, 5000), LIAISON_OK);
    ck_assert_mem_eq (liaison_message_id (got), liaison_message_id (m), LIAISON_ID_LEN);
    liaison_message_destroy (&got);
    liaison_message_destroy (&m);
    liaison_close (&fr);
    liaison_close (&old);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_session_cap_per_node)
{
    broker_t b;
    harness_broker_start (&b, "        max_sessions_per_node = 2\n");
    liaison_t *a = s_sender (&b, "it-ps");
    liaison_t *c = s_sender (&b, "it-ps");
    node_opts_t n;
    harness_node (&b, &n, "nodes/it-ps");
    liaison_t *third = NULL;
    ck_assert_int_eq (liaison_connect (&n.o, &third), LIAISON_EEXHAUSTED);
    ck_assert_msg (strstr (liaison_errmsg (NULL), "too-many-sessions") != NULL, "%s",
                   liaison_errmsg (NULL));
    // Other nodes are not affected.
    liaison_t *de = s_receiver (&b, "de-bka");
    liaison_close (&de);
    liaison_close (&a);
    liaison_close (&c);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

// Queries take no credit: past limits/queries_per_s (a second's burst) the
// session is cut off; other sessions of the node, and other nodes, go on.
START_TEST (test_query_rate_limited)
{
    broker_t b;
    harness_broker_start (&b, "        queries_per_s = 5\n");
    liaison_t *a = s_sender (&b, "it-ps");
    liaison_t *other = s_sender (&b, "it-ps");
    uint8_t id[LIAISON_ID_LEN] = {1, 2, 3};
    liaison_trail_t *t = NULL;
    int rc = LIAISON_ENOTFOUND, asked = 0;
    while (rc == LIAISON_ENOTFOUND && asked < 50) {
        rc = liaison_trail (a, id, &t);
        asked++;
    }
    ck_assert_msg (rc == LIAISON_EEXHAUSTED && asked > 5 && asked <= 7,
                   "rc %d after %d queries: %s", rc, asked, liaison_errmsg (a));
    ck_assert (harness_log_wait (&b, "reason=rate-limited kind=query", 0, 2000));
    ck_assert_int_eq (liaison_trail (other, id, &t), LIAISON_ENOTFOUND);
    liaison_close (&a);
    liaison_close (&other);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

// Credit, not a queue limit, paces a receiver: one that grants none gets
// nothing (the messages wait in its mailbox, ACCEPTED), and as credit comes
// back it gets every message, in order, never more than granted.
START_TEST (test_receiver_queue_full)
{
    enum { N = 7 };
    broker_t b;
    harness_broker_start (&b, NULL);
    raw_t r;
    ck_assert_int_eq (raw_connect (&r, &b, "nodes/de-bka"), 0);
    ck_assert_int_eq (raw_hello (&r), 0);
    Liaison__Receive rx = LIAISON__RECEIVE__INIT;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_RECEIVE;
    f.receive = &rx;
    size_t from = harness_log_size (&b);
    ck_assert_int_eq (raw_send_frame (&r, &f), 0);
    ck_assert (harness_log_wait (&b, "event=receiver node=de-bka window=0", from, 5000));
    liaison_t *fr = s_sender (&b, "fr-pn");
    liaison_message_t *m[N];
    for (int i = 0; i < N; i++) {
        m[i] = s_request ("de-bka", "queued");
        ck_assert_int_eq (liaison_send (fr, m[i], LIAISON_MORE), LIAISON_OK);
    }
    ck_assert_int_eq (liaison_flush (fr, 5000), LIAISON_OK);
    for (int i = 0; i < N; i++) {
        liaison_receipt_t *rc =
            harness_expect_receipt (fr, liaison_message_id (m[i]), "de-bka", LIAISON_ACCEPTED, 5000);
        liaison_receipt_destroy (&rc);
    }
    // No credit, no delivery.
    Liaison__Frame *in = raw_read_frame (&r, 300, NULL);
    while (in && in->kind_case == LIAISON__FRAME__KIND_PING) {
        liaison__frame__free_unpacked (in, NULL);
        in = raw_read_frame (&r, 300, NULL);
    }
    ck_assert_ptr_null (in);
    // Credit for two at a time: exactly two arrive each time, in order.
    int next = 0;
    while (next < N) {
        Liaison__Credit cr = LIAISON__CREDIT__INIT;
        cr.frames = 2;
        cr.bytes = 1 << 20;
        Liaison__Frame cf = LIAISON__FRAME__INIT;
        cf.kind_case = LIAISON__FRAME__KIND_CREDIT;
        cf.credit = &cr;
        ck_assert_int_eq (raw_send_frame (&r, &cf), 0);
        int want = N - next < 2 ? N - next : 2;
        for (int k = 0; k < want;) {
            in = raw_read_frame (&r, 5000, NULL);
            ck_assert_ptr_nonnull (in);
            if (in->kind_case == LIAISON__FRAME__KIND_DELIVER) {
                ck_assert_mem_eq (in->deliver->envelope->id.data, liaison_message_id (m[next]),
                                  LIAISON_ID_LEN);
                next++;
                k++;
            }
            liaison__frame__free_unpacked (in, NULL);
        }
        // And not one more until the next grant.
        if (next < N) {
            in = raw_read_frame (&r, 200, NULL);
            while (in && in->kind_case != LIAISON__FRAME__KIND_DELIVER) {
                liaison__frame__free_unpacked (in, NULL);
                in = raw_read_frame (&r, 200, NULL);
            }
            ck_assert_ptr_null (in);
        }
    }
    raw_close (&r);
    for (int i = 0; i < N; i++)
        liaison_message_destroy (&m[i]);
    liaison_close (&fr);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_control_frame_too_large)
{
    broker_t b;
    harness_broker_start (&b, NULL);
    raw_t r;
    ck_assert_int_eq (raw_connect (&r, &b, "nodes/it-ps"), 0);
    ck_assert_int_eq (raw_hello (&r), 0);
    // A Ping padded with a 5000-byte unknown field: valid protobuf the
    // codec accepts (unknown fields are allowed), so only the edge's cap on
    // control frames refuses it.
    enum { PAD = 5000 };
    static uint8_t buf[4 + 3 + 3 + PAD];
    size_t inner = 1 + 2 + PAD;  // tag 0x4a (field 9, bytes), varint 5000, bytes
    size_t size = 1 + 2 + inner; // tag 0x1a (Frame.ping), varint inner, inner
    buf[0] = buf[1] = 0;
    buf[2] = (uint8_t) (size >> 8);
    buf[3] = (uint8_t) size;
    uint8_t *p = buf + 4;
    *p++ = 0x1a;
    *p++ = (uint8_t) (0x80 | (inner & 0x7f));
    *p++ = (uint8_t) (inner >> 7);
    *p++ = 0x4a;
    *p++ = (uint8_t) (0x80 | (PAD & 0x7f));
    *p++ = (uint8_t) (PAD >> 7);
    memset (p, 'x', PAD);
    ck_assert_uint_eq ((size_t) (p + PAD - buf), 4 + size);
    ck_assert_int_eq (raw_write (&r, buf, 4 + size), 0);
    bool closed = false;
    ck_assert_int_eq (raw_expect_error (&r, 5000, &closed), LIAISON__ERROR_CODE__ERR_MALFORMED);
    ck_assert (closed);
    raw_close (&r);
    ck_assert (harness_log_wait (&b, "reason=control-frame-too-large", 0, 1000));
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_client_detects_silent_broker)
{
    broker_t b;
    harness_broker_start (&b, "        heartbeat_ms = 200\n");
    liaison_t *de = s_receiver (&b, "de-bka");
    // The broker pings us: an idle session stays up.
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq (liaison_pump (de, 100), LIAISON_OK);
    // A frozen broker: TCP stays up, nothing arrives.
    harness_signal (&b, SIGSTOP);
    int rc = LIAISON_OK;
    for (int i = 0; i < 40 && rc == LIAISON_OK; i++)
        rc = liaison_pump (de, 50);
    harness_signal (&b, SIGCONT);
    ck_assert_int_eq (rc, LIAISON_ETIMEOUT);
    ck_assert_msg (strstr (liaison_errmsg (de), "nothing from the broker") != NULL, "%s",
                   liaison_errmsg (de));
    liaison_close (&de);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

START_TEST (test_crl_expiring_warned)
{
    broker_t b;
    harness_prepare (&b, NULL, NULL, NULL);
    ck_assert_int_eq (harness_sh ("bash deploy/pki/liaison-pki -d '%s' crl FR --hours 12 "
                                  ">/dev/null 2>&1", b.pki), 0);
    ck_assert_int_eq (harness_start (&b), 0);
    ck_assert (harness_log_wait (&b, "event=crl-expiring", 0, 3000));
    ck_assert (harness_log_wait (&b, "C=FR", 0, 1000));
    // Still valid: FR nodes get in.
    liaison_t *fr = s_sender (&b, "fr-pn");
    liaison_close (&fr);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

// Replaces FR's CRL with one whose nextUpdate has passed (signed by the FR
// CA, so only its age is wrong).
static void
s_write_expired_crl (broker_t *b)
{
    char path[600];
    snprintf (path, sizeof path, "%s/jur/FR/ca.key", b->pki);
    FILE *f = fopen (path, "r");
    ck_assert_ptr_nonnull (f);
    EVP_PKEY *key = PEM_read_PrivateKey (f, NULL, NULL, NULL);
    fclose (f);
    snprintf (path, sizeof path, "%s/jur/FR/ca.pem", b->pki);
    f = fopen (path, "r");
    ck_assert_ptr_nonnull (f);
    X509 *ca = PEM_read_X509 (f, NULL, NULL, NULL);
    fclose (f);
    ck_assert_ptr_nonnull (key);
    ck_assert_ptr_nonnull (ca);
    X509_CRL *crl = X509_CRL_new ();
    X509_CRL_set_version (crl, 1);
    X509_CRL_set_issuer_name (crl, X509_get_subject_name (ca));
    ASN1_TIME *last = ASN1_TIME_adj (NULL, time (NULL), -2, 0);
    ASN1_TIME *next = ASN1_TIME_adj (NULL, time (NULL), -1, 0);
    X509_CRL_set1_lastUpdate (crl, last);
    X509_CRL_set1_nextUpdate (crl, next);
    ck_assert_int_gt (X509_CRL_sign (crl, key, EVP_sha256 ()), 0);
    snprintf (path, sizeof path, "%s/crl/FR.crl.pem", b->pki);
    f = fopen (path, "w");
    ck_assert_ptr_nonnull (f);
    PEM_write_X509_CRL (f, crl);
    fclose (f);
    ASN1_TIME_free (last);
    ASN1_TIME_free (next);
    X509_CRL_free (crl);
    X509_free (ca);
    EVP_PKEY_free (key);
}

START_TEST (test_expired_crl_fails_closed)
{
    broker_t b;
    harness_prepare (&b, NULL, NULL, NULL);
    s_write_expired_crl (&b);
    ck_assert_int_eq (harness_start (&b), 0);
    ck_assert (harness_log_wait (&b, "event=crl-expired", 0, 3000));
    node_opts_t n;
    harness_node (&b, &n, "nodes/fr-pn");
    liaison_t *l = NULL;
    ck_assert_int_eq (liaison_connect (&n.o, &l), LIAISON_EAUTH);
    ck_assert (harness_log_wait (&b, "CRL has expired", 0, 3000));
    // Other jurisdictions are unaffected.
    harness_node (&b, &n, "nodes/de-bka");
    ck_assert_int_eq (liaison_connect (&n.o, &l), LIAISON_OK);
    liaison_close (&l);
    ck_assert_int_eq (harness_broker_stop (&b), 0);
}
END_TEST

Suite *
broker_suite (void)
{
    Suite *s = suite_create ("broker");
    TCase *tc = tcase_create ("relay");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_relay_mla_request_and_reply);
    tcase_add_test (tc, test_rejected_offline);
    tcase_add_test (tc, test_sender_spoofing_refused);
    tcase_add_test (tc, test_newer_receiver_takes_over);
    tcase_add_test (tc, test_reconnect_with_fresh_session);
    tcase_add_test (tc, test_older_receiver_promoted);
    tcase_add_test (tc, test_receiver_queue_full);
    tcase_add_test (tc, test_client_detects_silent_broker);
    suite_add_tcase (s, tc);
    tc = tcase_create ("identity");
    tcase_set_timeout (tc, 60);
    tcase_add_loop_test (tc, test_bad_client_certificate_refused, 0,
                         (int) (sizeof s_bad_certs / sizeof s_bad_certs[0]));
    tcase_add_test (tc, test_no_client_certificate_refused);
    tcase_add_loop_test (tc, test_client_refuses_false_broker, 0, 2);
    tcase_add_test (tc, test_client_checks_broker_name);
    tcase_add_test (tc, test_sighup_revocation_closes_session);
    tcase_add_test (tc, test_failed_reload_keeps_state);
    tcase_add_test (tc, test_missing_crl_fails_closed);
    tcase_add_test (tc, test_crl_expiring_warned);
    tcase_add_test (tc, test_expired_crl_fails_closed);
    suite_add_tcase (s, tc);
    tc = tcase_create ("hostile");
    tcase_set_timeout (tc, 60);
    tcase_add_loop_test (tc, test_hostile_stream, 0,
                         (int) (sizeof s_streams / sizeof s_streams[0]));
    tcase_add_test (tc, test_truncated_frame_and_byte_splits);
    tcase_add_test (tc, test_version_mismatch);
    tcase_add_test (tc, test_credit_exceeded_cuts_off);
    tcase_add_test (tc, test_heartbeat_timeout);
    tcase_add_test (tc, test_bad_config_refused);
    tcase_add_test (tc, test_session_cap_per_node);
    tcase_add_test (tc, test_query_rate_limited);
    tcase_add_test (tc, test_control_frame_too_large);
    suite_add_tcase (s, tc);
    return s;
}
