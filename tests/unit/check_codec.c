/*  The codec (client/wire/codec.c): round trips of every frame kind and the
    validation of every field after unpacking.                              */
#include "suites.h"

#include "codec.h"
#include "tls.h"

#include <stdlib.h>
#include <string.h>

#define MALFORMED LIAISON__ERROR_CODE__ERR_MALFORMED
#define MAX_RCPT (WIRE_MAX_RECIPIENTS + 1)

// A valid envelope built on storage owned by the fixture (no heap).
typedef struct {
    Liaison__Envelope env;
    Liaison__Recipient rcpt[MAX_RCPT];
    Liaison__Recipient *rp[MAX_RCPT];
    Liaison__Evaluation eval;
    uint8_t id[WIRE_ID_LEN + 1];
    uint8_t reply[WIRE_ID_LEN];
    uint8_t body[5];
    char text[300]; /* scratch for over-long strings */
} fixture_t;

static fixture_t *
s_fixture_new (void)
{
    fixture_t *f = calloc (1, sizeof *f);
    ck_assert_ptr_nonnull (f);
    liaison__envelope__init (&f->env);
    for (int i = 0; i < MAX_RCPT; i++) {
        liaison__recipient__init (&f->rcpt[i]);
        f->rcpt[i].kind = LIAISON__RECIPIENT_KIND__NODE;
        f->rcpt[i].name = "de-bka";
        f->rp[i] = &f->rcpt[i];
    }
    f->rcpt[1].kind = LIAISON__RECIPIENT_KIND__JURISDICTION;
    f->rcpt[1].name = "IT";
    f->rcpt[2].kind = LIAISON__RECIPIENT_KIND__GROUP;
    f->rcpt[2].name = "eu";
    liaison__evaluation__init (&f->eval);
    f->eval.source = "B";
    f->eval.information = 2;
    for (int i = 0; i < WIRE_ID_LEN + 1; i++)
        f->id[i] = (uint8_t) (0xa0 + i);
    memset (f->reply, 0x77, sizeof f->reply);
    memcpy (f->body, "\x30\x82\x00\x01\xff", 5);

    Liaison__Envelope *e = &f->env;
    e->id.data = f->id;
    e->id.len = WIRE_ID_LEN;
    e->recipients = f->rp;
    e->n_recipients = 3;
    e->type = LIAISON__MESSAGE_TYPE__MLA_REQUEST;
    e->priority = LIAISON__PRIORITY__URGENT;
    e->tlp = LIAISON__TLP__TLP_AMBER_STRICT;
    e->handling = LIAISON__HANDLING_CODE__H3;
    e->handling_note = "no onward use without asking";
    e->evaluation = &f->eval;
    e->legal_basis = "eu-2023/977";
    e->case_ref = "PN/2026/0042 - Opération Sable";
    e->created_ms = 1790000000000;
    e->deadline_ms = 1790000000000 + 8 * 3600 * 1000;
    e->expires_ms = 1800000000000;
    e->body.data = f->body;
    e->body.len = sizeof f->body;
    e->body_size = sizeof f->body;
    return f;
}

// Packs f into a fresh buffer; caller frees.
static uint8_t *
s_pack (const Liaison__Frame *f, size_t *size)
{
    *size = liaison__frame__get_packed_size (f);
    uint8_t *buf = malloc (*size ? *size : 1);
    ck_assert_ptr_nonnull (buf);
    ck_assert_uint_eq (liaison__frame__pack (f, buf), *size);
    return buf;
}

// Packs and decodes f; returns the decoded frame (caller frees) or NULL
// with err filled in.
static Liaison__Frame *
s_round_trip (const Liaison__Frame *f, wire_codec_error_t *err)
{
    size_t size;
    uint8_t *buf = s_pack (f, &size);
    memset (err, 0, sizeof *err);
    Liaison__Frame *out = wire_codec_decode (buf, size, err);
    free (buf);
    return out;
}

// Asserts that f is refused with the given reason token.
static void
s_assert_refused (const Liaison__Frame *f, const char *reason)
{
    wire_codec_error_t err;
    Liaison__Frame *out = s_round_trip (f, &err);
    if (out) {
        wire_codec_free (&out);
        ck_abort_msg ("frame accepted; expected refusal '%s'", reason);
    }
    ck_assert_int_eq (err.code, MALFORMED);
    ck_assert_str_eq (err.reason, reason);
    ck_assert_uint_gt (strlen (err.detail), 0);
}

static Liaison__Frame
s_submit_frame (Liaison__Submit *sub, Liaison__Envelope *env)
{
    liaison__submit__init (sub);
    sub->envelope = env;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_SUBMIT;
    f.submit = sub;
    return f;
}

static void
s_assert_bytes (ProtobufCBinaryData got, const void *want, size_t len)
{
    ck_assert_uint_eq (got.len, len);
    if (len)
        ck_assert_int_eq (memcmp (got.data, want, len), 0);
}

static void
s_assert_same_envelope (const Liaison__Envelope *a, const Liaison__Envelope *b)
{
    ck_assert_ptr_nonnull (a);
    s_assert_bytes (a->id, b->id.data, b->id.len);
    ck_assert_str_eq (a->sender, b->sender);
    ck_assert_uint_eq (a->n_recipients, b->n_recipients);
    for (size_t i = 0; i < b->n_recipients; i++) {
        ck_assert_int_eq (a->recipients[i]->kind, b->recipients[i]->kind);
        ck_assert_str_eq (a->recipients[i]->name, b->recipients[i]->name);
    }
    ck_assert_int_eq (a->type, b->type);
    ck_assert_int_eq (a->priority, b->priority);
    ck_assert_int_eq (a->tlp, b->tlp);
    ck_assert_int_eq (a->handling, b->handling);
    ck_assert_str_eq (a->handling_note, b->handling_note);
    if (b->evaluation) {
        ck_assert_ptr_nonnull (a->evaluation);
        ck_assert_str_eq (a->evaluation->source, b->evaluation->source);
        ck_assert_uint_eq (a->evaluation->information, b->evaluation->information);
    }
    else
        ck_assert_ptr_null (a->evaluation);
    ck_assert_str_eq (a->legal_basis, b->legal_basis);
    ck_assert_str_eq (a->case_ref, b->case_ref);
    s_assert_bytes (a->in_reply_to, b->in_reply_to.data, b->in_reply_to.len);
    ck_assert_int_eq (a->created_ms, b->created_ms);
    ck_assert_int_eq (a->deadline_ms, b->deadline_ms);
    ck_assert_int_eq (a->expires_ms, b->expires_ms);
    ck_assert_uint_eq (a->body_size, b->body_size);
    s_assert_bytes (a->body, b->body.data, b->body.len);
}

// ------------------------------------------------------------ round trips

START_TEST (test_codec_hello)
{
    Liaison__Hello h = LIAISON__HELLO__INIT;
    h.min_version = 1;
    h.max_version = 3;
    h.software = "libliaison/0.1";
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_HELLO;
    f.hello = &h;
    wire_codec_error_t err;
    Liaison__Frame *out = s_round_trip (&f, &err);
    ck_assert_ptr_nonnull (out);
    ck_assert_int_eq (out->kind_case, LIAISON__FRAME__KIND_HELLO);
    ck_assert_uint_eq (out->hello->min_version, 1);
    ck_assert_uint_eq (out->hello->max_version, 3);
    ck_assert_str_eq (out->hello->software, "libliaison/0.1");
    wire_codec_free (&out);
    ck_assert_ptr_null (out);

    // min == max is fine; min 0 or min > max is not; nor a long name.
    h.min_version = h.max_version = 1;
    out = s_round_trip (&f, &err);
    ck_assert_ptr_nonnull (out);
    wire_codec_free (&out);
    h.min_version = 0;
    s_assert_refused (&f, "bad-hello");
    h.min_version = 2;
    h.max_version = 1;
    s_assert_refused (&f, "bad-hello");
    h.min_version = h.max_version = 1;
    char name[80];
    memset (name, 'x', sizeof name);
    name[WIRE_MAX_NAME] = 0;
    h.software = name;
    out = s_round_trip (&f, &err);
    ck_assert_ptr_nonnull (out);
    wire_codec_free (&out);
    name[WIRE_MAX_NAME] = 'x';
    name[WIRE_MAX_NAME + 1] = 0;
    s_assert_refused (&f, "bad-hello");
    h.software = "lib\nliaison";
    s_assert_refused (&f, "bad-hello");
}
END_TEST

START_TEST (test_codec_welcome)
{
    Liaison__Welcome w = LIAISON__WELCOME__INIT;
    w.version = 1;
    w.node_id = "fr-pn";
    w.jurisdiction = "FR";
    w.server_time_ms = 1790000000123;
    w.max_frame = 4194304;
    w.credit_frames = 256;
    w.credit_bytes = 16777216;
    w.heartbeat_ms = 10000;
    w.session_id = "s-42";
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_WELCOME;
    f.welcome = &w;
    wire_codec_error_t err;
    Liaison__Frame *out = s_round_trip (&f, &err);
    ck_assert_ptr_nonnull (out);
    ck_assert_int_eq (out->kind_case, LIAISON__FRAME__KIND_WELCOME);
    ck_assert_uint_eq (out->welcome->version, 1);
    ck_assert_str_eq (out->welcome->node_id, "fr-pn");
    ck_assert_str_eq (out->welcome->jurisdiction, "FR");
    ck_assert_int_eq (out->welcome->server_time_ms, 1790000000123);
    ck_assert_uint_eq (out->welcome->max_frame, 4194304);
    ck_assert_uint_eq (out->welcome->credit_frames, 256);
    ck_assert_uint_eq (out->welcome->credit_bytes, 16777216);
    ck_assert_uint_eq (out->welcome->heartbeat_ms, 10000);
    ck_assert_str_eq (out->welcome->session_id, "s-42");
    wire_codec_free (&out);

    w.node_id = "FR-pn";
    s_assert_refused (&f, "bad-welcome");
    w.node_id = "fr-pn";
    w.max_frame = 63;
    s_assert_refused (&f, "bad-welcome");
    w.max_frame = 64;
    out = s_round_trip (&f, &err);
    ck_assert_ptr_nonnull (out);
    wire_codec_free (&out);
    w.session_id = "s 42";
    s_assert_refused (&f, "bad-welcome");
}
END_TEST

START_TEST (test_codec_ping_credit_receive)
{
    Liaison__Ping p = LIAISON__PING__INIT;
    p.nonce = 0x0123456789abcdefULL;
    p.want_reply = 1;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_PING;
    f.ping = &p;
    wire_codec_error_t err;
    Liaison__Frame *out = s_round_trip (&f, &err);
    ck_assert_ptr_nonnull (out);
    ck_assert_int_eq (out->kind_case, LIAISON__FRAME__KIND_PING);
    ck_assert_uint_eq (out->ping->nonce, 0x0123456789abcdefULL);
    ck_assert (out->ping->want_reply);
    ck_assert (!out->ping->is_reply);
    wire_codec_free (&out);

    // A ping with every field at its default is still a ping.
    Liaison__Ping empty = LIAISON__PING__INIT;
    f.ping = &empty;
    out = s_round_trip (&f, &err);
    ck_assert_ptr_nonnull (out);
    ck_assert_int_eq (out->kind_case, LIAISON__FRAME__KIND_PING);
    wire_codec_free (&out);

    Liaison__Credit c = LIAISON__CREDIT__INIT;
    c.frames = 17;
    c.bytes = 5000000000ULL;
    Liaison__Frame fc = LIAISON__FRAME__INIT;
    fc.kind_case = LIAISON__FRAME__KIND_CREDIT;
    fc.credit = &c;
    out = s_round_trip (&fc, &err);
    ck_assert_ptr_nonnull (out);
    ck_assert_int_eq (out->kind_case, LIAISON__FRAME__KIND_CREDIT);
    ck_assert_uint_eq (out->credit->frames, 17);
    ck_assert_uint_eq (out->credit->bytes, 5000000000ULL);
    wire_codec_free (&out);

    Liaison__Receive r = LIAISON__RECEIVE__INIT;
    r.credit_frames = 64;
    r.credit_bytes = 1 << 20;
    Liaison__Frame fr = LIAISON__FRAME__INIT;
    fr.kind_case = LIAISON__FRAME__KIND_RECEIVE;
    fr.receive = &r;
    out = s_round_trip (&fr, &err);
    ck_assert_ptr_nonnull (out);
    ck_assert_int_eq (out->kind_case, LIAISON__FRAME__KIND_RECEIVE);
    ck_assert_uint_eq (out->receive->credit_frames, 64);
    ck_assert_uint_eq (out->receive->credit_bytes, 1 << 20);
    wire_codec_free (&out);
}
END_TEST

START_TEST (test_codec_submit_deliver)
{
    fixture_t *fx = s_fixture_new ();
    Liaison__Submit sub;
    Liaison__Frame f = s_submit_frame (&sub, &fx->env);
    wire_codec_error_t err;
    Liaison__Frame *out = s_round_trip (&f, &err);
    ck_assert_msg (out != NULL, "valid submit refused: %s %s", err.reason, err.detail);
    ck_assert_int_eq (out->kind_case, LIAISON__FRAME__KIND_SUBMIT);
    s_assert_same_envelope (out->submit->envelope, &fx->env);
    wire_codec_free (&out);

    // Deliver: the same envelope needs a sender.
    Liaison__Deliver del = LIAISON__DELIVER__INIT;
    del.envelope = &fx->env;
    Liaison__Frame fd = LIAISON__FRAME__INIT;
    fd.kind_case = LIAISON__FRAME__KIND_DELIVER;
    fd.deliver = &del;
    s_assert_refused (&fd, "bad-sender");
    fx->env.sender = "fr-pn";
    out = s_round_trip (&fd, &err);
    ck_assert_msg (out != NULL, "valid deliver refused: %s %s", err.reason, err.detail);
    ck_assert_int_eq (out->kind_case, LIAISON__FRAME__KIND_DELIVER);
    s_assert_same_envelope (out->deliver->envelope, &fx->env);
    wire_codec_free (&out);
    fx->env.sender = "fr_pn";
    s_assert_refused (&fd, "bad-sender");

    // Submit and Deliver without an envelope.
    sub.envelope = NULL;
    s_assert_refused (&f, "no-envelope");
    del.envelope = NULL;
    s_assert_refused (&fd, "no-envelope");
    ck_assert_int_eq (wire_codec_check_envelope (NULL, 0, &err), -1);
    ck_assert_str_eq (err.reason, "no-envelope");
    free (fx);
}
END_TEST

START_TEST (test_codec_ack)
{
    uint8_t id[WIRE_ID_LEN];
    memset (id, 0x11, sizeof id);
    Liaison__AckItem item = LIAISON__ACK_ITEM__INIT, *items[] = {&item};
    item.id.data = id;
    item.id.len = sizeof id;
    item.sender = "de-bka";
    Liaison__Ack a = LIAISON__ACK__INIT;
    a.items = items;
    a.n_items = 1;
    a.time_ms = 1;
    a.status = LIAISON__RECEIPT_STATUS__DELIVERED;
    a.signature.data = (uint8_t *) "sig";
    a.signature.len = 3;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_ACK;
    f.ack = &a;
    wire_codec_error_t err;
    Liaison__Frame *out = s_round_trip (&f, &err);
    ck_assert_ptr_nonnull (out);
    ck_assert_int_eq (out->kind_case, LIAISON__FRAME__KIND_ACK);
    ck_assert_uint_eq (out->ack->n_items, 1);
    s_assert_bytes (out->ack->items[0]->id, id, sizeof id);
    ck_assert_str_eq (out->ack->items[0]->sender, "de-bka");
    ck_assert_int_eq (out->ack->status, LIAISON__RECEIPT_STATUS__DELIVERED);
    s_assert_bytes (out->ack->signature, "sig", 3);
    wire_codec_free (&out);

    a.status = LIAISON__RECEIPT_STATUS__READ;
    out = s_round_trip (&f, &err);
    ck_assert_ptr_nonnull (out);
    wire_codec_free (&out);
    a.status = LIAISON__RECEIPT_STATUS__ACCEPTED;
    s_assert_refused (&f, "bad-ack");
    a.status = LIAISON__RECEIPT_STATUS__REJECTED;
    s_assert_refused (&f, "bad-ack");
    a.status = LIAISON__RECEIPT_STATUS__DELIVERED;
    item.id.len = WIRE_ID_LEN - 1;
    s_assert_refused (&f, "bad-ack");
    item.id.len = WIRE_ID_LEN;
    item.sender = "";
    s_assert_refused (&f, "bad-ack");
    item.sender = "de-bka";
    a.n_items = 0;
    s_assert_refused (&f, "bad-ack");
    a.n_items = 1;
    a.time_ms = -1;
    s_assert_refused (&f, "bad-ack");
}
END_TEST

START_TEST (test_codec_receipt)
{
    uint8_t id[WIRE_ID_LEN];
    memset (id, 0x22, sizeof id);
    Liaison__Receipt r = LIAISON__RECEIPT__INIT;
    r.id.data = id;
    r.id.len = sizeof id;
    r.recipient = "de-bka";
    r.status = LIAISON__RECEIPT_STATUS__REJECTED;
    r.reason = "denied-by-rule";
    r.rule = "rules.zpl:12";
    r.time_ms = 1790000000999;
    r.log_index = 77;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_RECEIPT;
    f.receipt = &r;
    wire_codec_error_t err;
    Liaison__Frame *out = s_round_trip (&f, &err);
    ck_assert_ptr_nonnull (out);
    ck_assert_int_eq (out->kind_case, LIAISON__FRAME__KIND_RECEIPT);
    s_assert_bytes (out->receipt->id, id, sizeof id);
    ck_assert_str_eq (out->receipt->recipient, "de-bka");
    ck_assert_int_eq (out->receipt->status, LIAISON__RECEIPT_STATUS__REJECTED);
    ck_assert_str_eq (out->receipt->reason, "denied-by-rule");
    ck_assert_str_eq (out->receipt->rule, "rules.zpl:12");
    ck_assert_int_eq (out->receipt->time_ms, 1790000000999);
    ck_assert_uint_eq (out->receipt->log_index, 77);
    wire_codec_free (&out);

    for (int s = LIAISON__RECEIPT_STATUS__ACCEPTED; s <= LIAISON__RECEIPT_STATUS__EXPIRED; s++) {
        r.status = (Liaison__ReceiptStatus) s;
        out = s_round_trip (&f, &err);
        ck_assert_msg (out != NULL, "receipt status %d refused", s);
        wire_codec_free (&out);
    }
    r.status = (Liaison__ReceiptStatus) 6;
    s_assert_refused (&f, "bad-receipt");
    r.status = LIAISON__RECEIPT_STATUS__RECEIPT_UNSPECIFIED;
    s_assert_refused (&f, "bad-receipt");
    r.status = LIAISON__RECEIPT_STATUS__ACCEPTED;
    r.id.len = 0;
    s_assert_refused (&f, "bad-receipt");
    r.id.len = WIRE_ID_LEN;
    r.reason = "two words";
    s_assert_refused (&f, "bad-receipt");
    r.reason = "";
    r.rule = "rules.zpl:1\n";
    s_assert_refused (&f, "bad-receipt");
}
END_TEST

START_TEST (test_codec_error_close)
{
    uint8_t id[WIRE_ID_LEN] = {1, 2, 3};
    Liaison__Error e = LIAISON__ERROR__INIT;
    e.code = LIAISON__ERROR_CODE__ERR_SENDER;
    e.reason = "sender-mismatch";
    e.detail = "the envelope names fr-gn but the certificate is fr-pn";
    e.ref_id.data = id;
    e.ref_id.len = sizeof id;
    Liaison__Frame f = LIAISON__FRAME__INIT;
    f.kind_case = LIAISON__FRAME__KIND_ERROR;
    f.error = &e;
    wire_codec_error_t err;
    Liaison__Frame *out = s_round_trip (&f, &err);
    ck_assert_ptr_nonnull (out);
    ck_assert_int_eq (out->kind_case, LIAISON__FRAME__KIND_ERROR);
    ck_assert_int_eq (out->error->code, LIAISON__ERROR_CODE__ERR_SENDER);
    ck_assert_str_eq (out->error->reason, "sender-mismatch");
    ck_assert_str_eq (out->error->detail, e.detail);
    s_assert_bytes (out->error->ref_id, id, sizeof id);
    wire_codec_free (&out);
    e.reason = "sender mismatch";
    s_assert_refused (&f, "bad-error");
    e.reason = "x";
    e.detail = "line one\nline two";
    s_assert_refused (&f, "bad-error");

    Liaison__Close c = LIAISON__CLOSE__INIT;
    c.reason = "client shutting down";
    Liaison__Frame fc = LIAISON__FRAME__INIT;
    fc.kind_case = LIAISON__FRAME__KIND_CLOSE;
    fc.close = &c;
    out = s_round_trip (&fc, &err);
    ck_assert_ptr_nonnull (out);
    ck_assert_int_eq (out->kind_case, LIAISON__FRAME__KIND_CLOSE);
    ck_assert_str_eq (out->close->reason, "client shutting down");
    wire_codec_free (&out);
    c.reason = "bye\x1b[2J";
    s_assert_refused (&fc, "bad-close");
}
END_TEST

// ------------------------------------------------------ undecodable input

START_TEST (test_codec_garbage)
{
    static const struct {
        const char *data;
        size_t size;
    } cases[] = {
        {"\xff\xff\xff\xff", 4},         /* wire type 7 */
        {"\x08\x80", 2},                 /* truncated varint */
        {"\x08\x01", 2},                 /* hello as a varint */
        {"\x0a\x05\x08\x01", 4},         /* hello longer than the input */
        {"\x3a\x02\x0a\x7f", 4},         /* envelope inside, truncated */
        {"\x0a\x80\x80\x80\x80\x10", 6}, /* length beyond 4 GiB */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wire_codec_error_t err;
        memset (&err, 0, sizeof err);
        Liaison__Frame *f =
            wire_codec_decode ((const uint8_t *) cases[i].data, cases[i].size, &err);
        ck_assert_msg (f == NULL, "garbage case %zu decoded", i);
        ck_assert_int_eq (err.code, MALFORMED);
        ck_assert_str_eq (err.reason, "bad-protobuf");
        ck_assert_uint_gt (strlen (err.detail), 0);
    }

    // A valid frame cut short anywhere is refused, never half-accepted.
    fixture_t *fx = s_fixture_new ();
    Liaison__Submit sub;
    Liaison__Frame f = s_submit_frame (&sub, &fx->env);
    size_t size;
    uint8_t *buf = s_pack (&f, &size);
    for (size_t cut = 1; cut < size; cut++) {
        wire_codec_error_t err;
        Liaison__Frame *out = wire_codec_decode (buf, cut, &err);
        if (out) {
            // Cutting exactly between fields can leave a shorter valid
            // protobuf; it must still pass validation to be returned.
            ck_assert_int_eq (wire_codec_check_envelope (out->submit->envelope, 0, &err), 0);
            wire_codec_free (&out);
        }
        else
            ck_assert_int_eq (err.code, MALFORMED);
    }
    free (buf);
    free (fx);
}
END_TEST

START_TEST (test_codec_unknown_frame)
{
    wire_codec_error_t err;
    // A Frame with no kind set packs to nothing.
    Liaison__Frame f = LIAISON__FRAME__INIT;
    ck_assert_uint_eq (liaison__frame__get_packed_size (&f), 0);
    memset (&err, 0, sizeof err);
    ck_assert_ptr_null (wire_codec_decode ((const uint8_t *) "", 0, &err));
    ck_assert_int_eq (err.code, MALFORMED);
    ck_assert_str_eq (err.reason, "unknown-frame");

    // Only a field this version does not know (field 99, varint).
    static const uint8_t unknown[] = {0x98, 0x06, 0x01};
    memset (&err, 0, sizeof err);
    ck_assert_ptr_null (wire_codec_decode (unknown, sizeof unknown, &err));
    ck_assert_int_eq (err.code, MALFORMED);
    ck_assert_str_eq (err.reason, "unknown-frame");

    wire_codec_free (NULL);
    Liaison__Frame *none = NULL;
    wire_codec_free (&none);
    ck_assert_ptr_null (none);
}
END_TEST

// ------------------------------------------------- envelope validation

typedef void (mutate_fn) (fixture_t *f, Liaison__Envelope *e);

#define MUTATION(name, body)                                                                       \
    static void name (fixture_t *f, Liaison__Envelope *e)                                          \
    {                                                                                              \
        (void) f;                                                                                  \
        (void) e;                                                                                  \
        body;                                                                                      \
    }

MUTATION (m_none, )
MUTATION (m_id_15, e->id.len = 15)
MUTATION (m_id_17, e->id.len = 17)
MUTATION (m_id_0, e->id.len = 0)
MUTATION (m_rcpt_0, e->n_recipients = 0)
MUTATION (m_rcpt_256, e->n_recipients = 256)
MUTATION (m_rcpt_257, e->n_recipients = 257)
MUTATION (m_node_upper, f->rcpt[0].name = "FR-pn")
MUTATION (m_node_short, f->rcpt[0].name = "fr-")
MUTATION (m_node_underscore, f->rcpt[0].name = "fr_pn")
MUTATION (m_country_lower, f->rcpt[1].name = "it")
MUTATION (m_country_long, f->rcpt[1].name = "ITA")
MUTATION (m_country_node, f->rcpt[1].name = "it-ps")
MUTATION (m_group_upper, f->rcpt[2].name = "Eu")
MUTATION (m_group_digit, f->rcpt[2].name = "1eu")
MUTATION (m_group_space, f->rcpt[2].name = "e u")
MUTATION (m_group_empty, f->rcpt[2].name = "")
MUTATION (m_group_long, memset (f->text, 'g', 65); f->text[65] = 0; f->rcpt[2].name = f->text)
MUTATION (m_group_64, memset (f->text, 'g', 64); f->text[64] = 0; f->rcpt[2].name = f->text)
MUTATION (m_kind_0, f->rcpt[0].kind = LIAISON__RECIPIENT_KIND__RECIPIENT_UNSPECIFIED)
MUTATION (m_kind_4, f->rcpt[0].kind = (Liaison__RecipientKind) 4)
MUTATION (m_type_0, e->type = LIAISON__MESSAGE_TYPE__MESSAGE_TYPE_UNSPECIFIED)
MUTATION (m_type_5, e->type = (Liaison__MessageType) 5)
MUTATION (m_type_neg, e->type = (Liaison__MessageType) -1)
MUTATION (m_prio_3, e->priority = (Liaison__Priority) 3)
MUTATION (m_prio_neg, e->priority = (Liaison__Priority) -1)
MUTATION (m_tlp_0, e->tlp = LIAISON__TLP__TLP_UNSPECIFIED)
MUTATION (m_tlp_6, e->tlp = (Liaison__Tlp) 6)
MUTATION (m_handling_0, e->handling = LIAISON__HANDLING_CODE__HANDLING_UNSPECIFIED)
MUTATION (m_handling_5, e->handling = (Liaison__HandlingCode) 5)
MUTATION (m_note_256, memset (f->text, 'n', 256); f->text[256] = 0; e->handling_note = f->text)
MUTATION (m_note_257, memset (f->text, 'n', 257); f->text[257] = 0; e->handling_note = f->text)
MUTATION (m_note_ctrl, e->handling_note = "see\x07note")
MUTATION (m_eval_z, f->eval.source = "Z")
MUTATION (m_eval_two, f->eval.source = "AB")
MUTATION (m_eval_info_5, f->eval.information = 5)
MUTATION (m_eval_x4, f->eval.source = "X"; f->eval.information = 4)
MUTATION (m_eval_none, e->evaluation = NULL)
MUTATION (m_eval_empty, f->eval.source = ""; f->eval.information = 0)
MUTATION (m_basis_space, e->legal_basis = "eu 2023/977")
MUTATION (m_basis_tab, e->legal_basis = "eu\t2023")
MUTATION (m_basis_del, e->legal_basis = "eu\x7f")
MUTATION (m_basis_64, memset (f->text, 'b', 64); f->text[64] = 0; e->legal_basis = f->text)
MUTATION (m_basis_65, memset (f->text, 'b', 65); f->text[65] = 0; e->legal_basis = f->text)
MUTATION (m_case_128, memset (f->text, 'c', 128); f->text[128] = 0; e->case_ref = f->text)
MUTATION (m_case_129, memset (f->text, 'c', 129); f->text[129] = 0; e->case_ref = f->text)
MUTATION (m_case_newline, e->case_ref = "PN/2026\n/0042")
MUTATION (m_case_esc, e->case_ref = "\x1b[31mPN")
MUTATION (m_case_del, e->case_ref = "PN\x7f")
MUTATION (m_reply_3, e->in_reply_to.data = f->reply; e->in_reply_to.len = 3)
MUTATION (m_reply_16, e->in_reply_to.data = f->reply; e->in_reply_to.len = WIRE_ID_LEN)
MUTATION (m_mla_reply_bare, e->type = LIAISON__MESSAGE_TYPE__MLA_REPLY)
MUTATION (m_mla_reply_ok, e->type = LIAISON__MESSAGE_TYPE__MLA_REPLY;
          e->in_reply_to.data = f->reply; e->in_reply_to.len = WIRE_ID_LEN)
MUTATION (m_created_neg, e->created_ms = -1)
MUTATION (m_deadline_neg, e->deadline_ms = -1)
MUTATION (m_expires_neg, e->expires_ms = INT64_MIN)
MUTATION (m_deadline_huge, e->deadline_ms = INT64_MAX)
MUTATION (m_expires_past_9999, e->expires_ms = 253402300800000LL)
MUTATION (m_body_size_more, e->body_size = e->body.len + 1)
MUTATION (m_body_size_less, e->body_size = 0)
MUTATION (m_body_none, e->body.len = 0; e->body_size = 0)
MUTATION (m_sender_bad, e->sender = "FR-PN")
MUTATION (m_sender_ok, e->sender = "fr-pn")

static const struct {
    const char *name;
    mutate_fn *mutate;
    const char *reason; /* NULL: accepted */
} s_envelope_cases[] = {
    {"valid", m_none, NULL},
    {"id of 15 bytes", m_id_15, "bad-id"},
    {"id of 17 bytes", m_id_17, "bad-id"},
    {"no id", m_id_0, "bad-id"},
    {"0 recipients", m_rcpt_0, "bad-recipients"},
    {"256 recipients", m_rcpt_256, NULL},
    {"257 recipients", m_rcpt_257, "bad-recipients"},
    {"node FR-pn", m_node_upper, "bad-recipient"},
    {"node fr-", m_node_short, "bad-recipient"},
    {"node fr_pn", m_node_underscore, "bad-recipient"},
    {"country it", m_country_lower, "bad-recipient"},
    {"country ITA", m_country_long, "bad-recipient"},
    {"country it-ps", m_country_node, "bad-recipient"},
    {"group Eu", m_group_upper, "bad-recipient"},
    {"group 1eu", m_group_digit, "bad-recipient"},
    {"group 'e u'", m_group_space, "bad-recipient"},
    {"group ''", m_group_empty, "bad-recipient"},
    {"group of 65", m_group_long, "bad-recipient"},
    {"group of 64", m_group_64, NULL},
    {"recipient kind 0", m_kind_0, "bad-recipient"},
    {"recipient kind 4", m_kind_4, "bad-recipient"},
    {"type 0", m_type_0, "bad-type"},
    {"type 5", m_type_5, "bad-type"},
    {"type -1", m_type_neg, "bad-type"},
    {"priority 3", m_prio_3, "bad-priority"},
    {"priority -1", m_prio_neg, "bad-priority"},
    {"tlp 0", m_tlp_0, "bad-tlp"},
    {"tlp 6", m_tlp_6, "bad-tlp"},
    {"handling 0", m_handling_0, "bad-handling"},
    {"handling 5", m_handling_5, "bad-handling"},
    {"note of 256", m_note_256, NULL},
    {"note of 257", m_note_257, "bad-handling-note"},
    {"note with BEL", m_note_ctrl, "bad-handling-note"},
    {"evaluation source Z", m_eval_z, "bad-evaluation"},
    {"evaluation source AB", m_eval_two, "bad-evaluation"},
    {"evaluation information 5", m_eval_info_5, "bad-evaluation"},
    {"evaluation X4", m_eval_x4, NULL},
    {"no evaluation", m_eval_none, NULL},
    {"evaluation empty", m_eval_empty, NULL},
    {"legal basis with a space", m_basis_space, "bad-legal-basis"},
    {"legal basis with a tab", m_basis_tab, "bad-legal-basis"},
    {"legal basis with DEL", m_basis_del, "bad-legal-basis"},
    {"legal basis of 64", m_basis_64, NULL},
    {"legal basis of 65", m_basis_65, "bad-legal-basis"},
    {"case_ref of 128", m_case_128, NULL},
    {"case_ref of 129", m_case_129, "bad-case-ref"},
    {"case_ref with newline", m_case_newline, "bad-case-ref"},
    {"case_ref with ESC", m_case_esc, "bad-case-ref"},
    {"case_ref with DEL", m_case_del, "bad-case-ref"},
    {"in_reply_to of 3", m_reply_3, "bad-in-reply-to"},
    {"in_reply_to of 16", m_reply_16, NULL},
    {"mla-reply without in_reply_to", m_mla_reply_bare, "reply-without-request"},
    {"mla-reply with in_reply_to", m_mla_reply_ok, NULL},
    {"created -1", m_created_neg, "bad-time"},
    {"deadline -1", m_deadline_neg, "bad-time"},
    {"expires INT64_MIN", m_expires_neg, "bad-time"},
    {"deadline INT64_MAX", m_deadline_huge, "bad-time"},
    {"expires past year 9999", m_expires_past_9999, "bad-time"},
    {"body_size too large", m_body_size_more, "bad-body-size"},
    {"body_size 0 with a body", m_body_size_less, "bad-body-size"},
    {"no body", m_body_none, NULL},
    {"invalid sender in a submit", m_sender_bad, "bad-sender"},
    {"valid sender in a submit", m_sender_ok, NULL},
};

#define N_ENVELOPE_CASES ((int) (sizeof s_envelope_cases / sizeof s_envelope_cases[0]))

START_TEST (test_codec_envelope_table)
{
    fixture_t *fx = s_fixture_new ();
    s_envelope_cases[_i].mutate (fx, &fx->env);
    const char *want = s_envelope_cases[_i].reason;
    const char *name = s_envelope_cases[_i].name;

    // Directly...
    wire_codec_error_t err;
    memset (&err, 0, sizeof err);
    int rc = wire_codec_check_envelope (&fx->env, 0, &err);
    if (want) {
        ck_assert_msg (rc == -1, "%s: accepted, expected %s", name, want);
        ck_assert_msg (strcmp (err.reason, want) == 0, "%s: refused as %s, expected %s", name,
                       err.reason, want);
        ck_assert_int_eq (err.code, MALFORMED);
    }
    else
        ck_assert_msg (rc == 0, "%s: refused as %s (%s)", name, err.reason, err.detail);

    // ...and through the wire, as a Submit.
    Liaison__Submit sub;
    Liaison__Frame f = s_submit_frame (&sub, &fx->env);
    Liaison__Frame *out = s_round_trip (&f, &err);
    if (want) {
        ck_assert_msg (out == NULL, "%s: decoded, expected %s", name, want);
        ck_assert_str_eq (err.reason, want);
        ck_assert_int_eq (err.code, MALFORMED);
    }
    else {
        ck_assert_msg (out != NULL, "%s: decode refused as %s", name, err.reason);
        s_assert_same_envelope (out->submit->envelope, &fx->env);
        wire_codec_free (&out);
    }
    free (fx);
}
END_TEST

START_TEST (test_codec_envelope_sender_rule)
{
    fixture_t *fx = s_fixture_new ();
    wire_codec_error_t err;
    // Submit: sender optional (the broker stamps it); Deliver: required.
    ck_assert_int_eq (wire_codec_check_envelope (&fx->env, 0, &err), 0);
    ck_assert_int_eq (wire_codec_check_envelope (&fx->env, 1, &err), -1);
    ck_assert_str_eq (err.reason, "bad-sender");
    fx->env.sender = "fr-pn";
    ck_assert_int_eq (wire_codec_check_envelope (&fx->env, 1, &err), 0);
    fx->env.sender = "fr-";
    ck_assert_int_eq (wire_codec_check_envelope (&fx->env, 0, &err), -1);
    ck_assert_str_eq (err.reason, "bad-sender");
    free (fx);
}
END_TEST

// -------------------------------------------------------- name checks

START_TEST (test_codec_country_valid)
{
    ck_assert (wire_codec_country_valid ("FR"));
    ck_assert (wire_codec_country_valid ("AZ"));
    ck_assert (wire_codec_country_valid ("ZZ"));
    ck_assert (!wire_codec_country_valid (NULL));
    ck_assert (!wire_codec_country_valid (""));
    ck_assert (!wire_codec_country_valid ("F"));
    ck_assert (!wire_codec_country_valid ("FRA"));
    ck_assert (!wire_codec_country_valid ("fr"));
    ck_assert (!wire_codec_country_valid ("Fr"));
    ck_assert (!wire_codec_country_valid ("F1"));
    ck_assert (!wire_codec_country_valid ("@["));
    ck_assert (!wire_codec_country_valid (" FR"));
    ck_assert (!wire_codec_country_valid ("FR "));
    ck_assert (!wire_codec_country_valid ("\xc3\x89S"));
}
END_TEST

START_TEST (test_codec_group_valid)
{
    char name[80];
    ck_assert (wire_codec_group_valid ("eu"));
    ck_assert (wire_codec_group_valid ("a"));
    ck_assert (wire_codec_group_valid ("schengen_2-cp"));
    ck_assert (wire_codec_group_valid ("z9"));
    memset (name, 'a', sizeof name);
    name[64] = 0;
    ck_assert (wire_codec_group_valid (name));
    name[64] = 'a';
    name[65] = 0;
    ck_assert (!wire_codec_group_valid (name));
    ck_assert (!wire_codec_group_valid (NULL));
    ck_assert (!wire_codec_group_valid (""));
    ck_assert (!wire_codec_group_valid ("Eu"));
    ck_assert (!wire_codec_group_valid ("eU"));
    ck_assert (!wire_codec_group_valid ("9eu"));
    ck_assert (!wire_codec_group_valid ("-eu"));
    ck_assert (!wire_codec_group_valid ("_eu"));
    ck_assert (!wire_codec_group_valid ("e u"));
    ck_assert (!wire_codec_group_valid ("eu!"));
    ck_assert (!wire_codec_group_valid ("eu."));
    ck_assert (!wire_codec_group_valid ("eu\n"));
    ck_assert (!wire_codec_group_valid ("\xc3\xa9u"));
}
END_TEST

START_TEST (test_codec_node_id_valid)
{
    char id[64];
    ck_assert (wire_node_id_valid ("fr-pn"));
    ck_assert (wire_node_id_valid ("de-bka"));
    ck_assert (wire_node_id_valid ("fr-x"));
    ck_assert (wire_node_id_valid ("fr-0"));
    ck_assert (wire_node_id_valid ("fr-pn-2"));
    ck_assert (wire_node_id_valid ("fr--"));
    ck_assert (!wire_node_id_valid (NULL));
    ck_assert (!wire_node_id_valid (""));
    ck_assert (!wire_node_id_valid ("fr-"));
    ck_assert (!wire_node_id_valid ("fr"));
    ck_assert (!wire_node_id_valid ("FR-pn"));
    ck_assert (!wire_node_id_valid ("Fr-pn"));
    ck_assert (!wire_node_id_valid ("fr-PN"));
    ck_assert (!wire_node_id_valid ("f-pn"));
    ck_assert (!wire_node_id_valid ("fra-pn"));
    ck_assert (!wire_node_id_valid ("fr_pn"));
    ck_assert (!wire_node_id_valid ("frpn"));
    ck_assert (!wire_node_id_valid ("1r-pn"));
    ck_assert (!wire_node_id_valid ("fr-p n"));
    ck_assert (!wire_node_id_valid ("fr-pn."));
    ck_assert (!wire_node_id_valid ("fr-p\xc3\xa9"));
    ck_assert (!wire_node_id_valid ("\xe0r-pn"));

    // ^[a-z]{2}-[a-z0-9-]{1,30}$: a 30-character suffix (33 in all) is the
    // longest id; 31 is one too many.
    memcpy (id, "fr-", 3);
    memset (id + 3, 'a', 30);
    id[33] = 0;
    ck_assert_uint_eq (strlen (id), 33);
    ck_assert (wire_node_id_valid (id));
    id[33] = 'a';
    id[34] = 0;
    ck_assert (!wire_node_id_valid (id));
    id[34] = 'a';
    id[35] = 0;
    ck_assert (!wire_node_id_valid (id));
}
END_TEST

// A Submit whose envelope repeats an empty recipient 100,000 times is
// 300 KB on the wire but would unpack into megabytes: the decoder's
// allocation budget refuses it before any field check could.
START_TEST (test_codec_allocation_budget)
{
    size_t n = 100000;
    size_t env_len = n * 2 + 18;
    uint8_t *buf = malloc (env_len + 16);
    size_t o = 0;
    // Frame.submit (field 6, length-delimited) { Submit.envelope (1) { ... } }
    buf[o++] = 0x32;
    size_t submit_len = env_len + 4;
    for (size_t v = submit_len; ; v >>= 7) {
        buf[o++] = (uint8_t) ((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80)
            break;
    }
    buf[o++] = 0x0a;
    for (size_t v = env_len; ; v >>= 7) {
        buf[o++] = (uint8_t) ((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80)
            break;
    }
    size_t start = o;
    buf[o++] = 0x0a;  // id, 16 bytes
    buf[o++] = 16;
    memset (buf + o, 7, 16);
    o += 16;
    for (size_t i = 0; i < n; i++) {  // recipients (field 3), each empty
        buf[o++] = 0x1a;
        buf[o++] = 0;
    }
    ck_assert_uint_eq (o - start, env_len);
    wire_codec_error_t err;
    Liaison__Frame *f = wire_codec_decode (buf, o, &err);
    ck_assert_ptr_null (f);
    ck_assert_int_eq (err.code, LIAISON__ERROR_CODE__ERR_MALFORMED);
    ck_assert_str_eq (err.reason, "bad-protobuf");
    free (buf);
}
END_TEST

Suite *
codec_suite (void)
{
    Suite *s = suite_create ("codec");
    TCase *tc = tcase_create ("round-trip");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_codec_hello);
    tcase_add_test (tc, test_codec_welcome);
    tcase_add_test (tc, test_codec_ping_credit_receive);
    tcase_add_test (tc, test_codec_submit_deliver);
    tcase_add_test (tc, test_codec_ack);
    tcase_add_test (tc, test_codec_receipt);
    tcase_add_test (tc, test_codec_error_close);
    suite_add_tcase (s, tc);

    tc = tcase_create ("malformed");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_codec_garbage);
    tcase_add_test (tc, test_codec_allocation_budget);
    tcase_add_test (tc, test_codec_unknown_frame);
    suite_add_tcase (s, tc);

    tc = tcase_create ("envelope");
    tcase_set_timeout (tc, 10);
    tcase_add_loop_test (tc, test_codec_envelope_table, 0, N_ENVELOPE_CASES);
    tcase_add_test (tc, test_codec_envelope_sender_rule);
    suite_add_tcase (s, tc);

    tc = tcase_create ("names");
    tcase_set_timeout (tc, 10);
    tcase_add_test (tc, test_codec_country_valid);
    tcase_add_test (tc, test_codec_group_valid);
    tcase_add_test (tc, test_codec_node_id_valid);
    suite_add_tcase (s, tc);
    return s;
}
