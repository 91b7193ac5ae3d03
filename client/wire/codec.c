/*  Frame decoding and validation; see codec.h.                              */
#include "codec.h"

#include "tls.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static int
s_err (wire_codec_error_t *err, int code, const char *reason, const char *fmt, ...)
{
    err->code = code;
    snprintf (err->reason, sizeof err->reason, "%s", reason);
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (err->detail, sizeof err->detail, fmt, ap);
    va_end (ap);
    return -1;
}

#define MALFORMED LIAISON__ERROR_CODE__ERR_MALFORMED

// Text fields: bounded and free of control characters (they reach logs).
static int
s_text_ok (const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char) s[n] < 0x20 || s[n] == 0x7f || n >= max)
            return 0;
    return 1;
}

// Token fields: printable ASCII without spaces.
static int
s_token_ok (const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char) s[n] <= 0x20 || (unsigned char) s[n] >= 0x7f || n >= max)
            return 0;
    return 1;
}

int
wire_codec_country_valid (const char *cc)
{
    return cc && cc[0] >= 'A' && cc[0] <= 'Z' && cc[1] >= 'A' && cc[1] <= 'Z' && !cc[2];
}

int
wire_codec_group_valid (const char *name)
{
    if (!name || !(name[0] >= 'a' && name[0] <= 'z'))
        return 0;
    size_t n = 0;
    for (; name[n]; n++) {
        char c = name[n];
        if (n >= WIRE_MAX_NAME
            || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int
wire_codec_check_envelope (const Liaison__Envelope *env, int need_sender,
                           wire_codec_error_t *err)
{
    if (!env)
        return s_err (err, MALFORMED, "no-envelope", "frame carries no envelope");
    if (env->id.len != WIRE_ID_LEN)
        return s_err (err, MALFORMED, "bad-id", "message id must be %d bytes, not %zu",
                      WIRE_ID_LEN, env->id.len);
    if ((need_sender || env->sender[0]) && !wire_node_id_valid (env->sender))
        return s_err (err, MALFORMED, "bad-sender", "sender is not a valid node id");
    if (env->n_recipients == 0 || env->n_recipients > WIRE_MAX_RECIPIENTS)
        return s_err (err, MALFORMED, "bad-recipients",
                      "a message needs 1 to %d recipients, not %zu", WIRE_MAX_RECIPIENTS,
                      env->n_recipients);
    for (size_t i = 0; i < env->n_recipients; i++) {
        const Liaison__Recipient *r = env->recipients[i];
        int ok = 0;
        switch (r->kind) {
            case LIAISON__RECIPIENT_KIND__NODE:
                ok = wire_node_id_valid (r->name);
                break;
            case LIAISON__RECIPIENT_KIND__JURISDICTION:
                ok = wire_codec_country_valid (r->name);
                break;
            case LIAISON__RECIPIENT_KIND__GROUP:
                ok = wire_codec_group_valid (r->name);
                break;
            default:
                break;
        }
        if (!ok)
            return s_err (err, MALFORMED, "bad-recipient",
                          "recipient %zu is not a valid node id, country code or group", i + 1);
    }
    if (env->type < LIAISON__MESSAGE_TYPE__MLA_REQUEST
        || env->type > LIAISON__MESSAGE_TYPE__CASE_LEAD)
        return s_err (err, MALFORMED, "bad-type", "unknown message type %d", (int) env->type);
    if (env->priority < LIAISON__PRIORITY__ROUTINE || env->priority > LIAISON__PRIORITY__EMERGENCY)
        return s_err (err, MALFORMED, "bad-priority", "unknown priority %d", (int) env->priority);
    if (env->tlp < LIAISON__TLP__TLP_CLEAR || env->tlp > LIAISON__TLP__TLP_RED)
        return s_err (err, MALFORMED, "bad-tlp", "a TLP marking (CLEAR..RED) is required");
    if (env->handling < LIAISON__HANDLING_CODE__H0 || env->handling > LIAISON__HANDLING_CODE__H3)
        return s_err (err, MALFORMED, "bad-handling", "a handling code (H0..H3) is required");
    if (!s_text_ok (env->handling_note, 256))
        return s_err (err, MALFORMED, "bad-handling-note", "handling note too long or has control characters");
    if (env->evaluation) {
        const char *src = env->evaluation->source;
        if (!(src[0] == 0 || (strchr ("ABCX", src[0]) && src[1] == 0))
            || env->evaluation->information > 4)
            return s_err (err, MALFORMED, "bad-evaluation",
                          "evaluation is source A/B/C/X and information 1-4");
    }
    if (!s_token_ok (env->legal_basis, WIRE_MAX_NAME))
        return s_err (err, MALFORMED, "bad-legal-basis", "legal basis is a name of up to %d printable characters", WIRE_MAX_NAME);
    if (!s_text_ok (env->case_ref, WIRE_MAX_CASE_REF))
        return s_err (err, MALFORMED, "bad-case-ref", "case reference too long or has control characters");
    if (env->in_reply_to.len != 0 && env->in_reply_to.len != WIRE_ID_LEN)
        return s_err (err, MALFORMED, "bad-in-reply-to", "in_reply_to must be empty or %d bytes", WIRE_ID_LEN);
    if (env->type == LIAISON__MESSAGE_TYPE__MLA_REPLY && env->in_reply_to.len == 0)
        return s_err (err, MALFORMED, "reply-without-request", "an MLA reply needs in_reply_to");
    // Up to the end of year 9999: arithmetic on these times cannot overflow.
    const int64_t max_ms = 253402300799999LL;
    if (env->created_ms < 0 || env->deadline_ms < 0 || env->expires_ms < 0
        || env->created_ms > max_ms || env->deadline_ms > max_ms || env->expires_ms > max_ms)
        return s_err (err, MALFORMED, "bad-time",
                      "times are UTC milliseconds from 0 to the end of year 9999");
    if (env->deadline_class < LIAISON__DEADLINE_CLASS__DEADLINE_NONE
        || env->deadline_class > LIAISON__DEADLINE_CLASS__DEADLINE_DATE
        || (env->deadline_class == LIAISON__DEADLINE_CLASS__DEADLINE_DATE && env->deadline_ms == 0)
        || env->accepted_ms < 0)
        return s_err (err, MALFORMED, "bad-deadline",
                      "a deadline is a class (8h, 3d, 7d) or a date with deadline_ms set");
    if (env->body_size != env->body.len)
        return s_err (err, MALFORMED, "bad-body-size", "body_size %llu does not match the body (%zu bytes)",
                      (unsigned long long) env->body_size, env->body.len);
    return 0;
}

static bool
s_receipt_bad (const Liaison__Receipt *r)
{
    if (r->id.len != WIRE_ID_LEN || r->status < LIAISON__RECEIPT_STATUS__ACCEPTED
        || r->status > LIAISON__RECEIPT_STATUS__EXPIRED || !s_token_ok (r->recipient, WIRE_MAX_NAME)
        || !s_token_ok (r->reason, WIRE_MAX_NAME) || !s_text_ok (r->rule, WIRE_MAX_TEXT)
        || !s_token_ok (r->rules_hash, WIRE_MAX_NAME) || r->signature.len > WIRE_MAX_SIGNATURE
        || (r->sender[0] && !wire_node_id_valid (r->sender)) || r->n_proof > 16
        || r->proof_index >= (r->proof_size ? r->proof_size : 1)
        || r->proof_size > WIRE_MAX_ACK_ITEMS)
        return true;
    for (size_t i = 0; i < r->n_proof; i++)
        if (r->proof[i].len != 32)
            return true;
    return false;
}

// Per-type checks after unpacking.
static int
s_check (const Liaison__Frame *f, wire_codec_error_t *err)
{
    switch (f->kind_case) {
        case LIAISON__FRAME__KIND_HELLO:
            if (f->hello->min_version == 0 || f->hello->min_version > f->hello->max_version)
                return s_err (err, MALFORMED, "bad-hello", "hello needs 1 <= min_version <= max_version");
            if (!s_text_ok (f->hello->software, WIRE_MAX_NAME))
                return s_err (err, MALFORMED, "bad-hello", "software name too long");
            return 0;
        case LIAISON__FRAME__KIND_WELCOME:
            if (!wire_node_id_valid (f->welcome->node_id) || f->welcome->max_frame < 64
                || !s_token_ok (f->welcome->session_id, WIRE_MAX_NAME))
                return s_err (err, MALFORMED, "bad-welcome", "welcome carries invalid fields");
            return 0;
        case LIAISON__FRAME__KIND_PING:
        case LIAISON__FRAME__KIND_CREDIT:
        case LIAISON__FRAME__KIND_RECEIVE:
            return 0;
        case LIAISON__FRAME__KIND_SUBMIT:
            return wire_codec_check_envelope (f->submit->envelope, 0, err);
        case LIAISON__FRAME__KIND_DELIVER:
            return wire_codec_check_envelope (f->deliver->envelope, 1, err);
        case LIAISON__FRAME__KIND_ACK: {
            const Liaison__Ack *a = f->ack;
            if (a->n_items == 0 || a->n_items > WIRE_MAX_ACK_ITEMS || a->time_ms < 0
                || a->signature.len > WIRE_MAX_SIGNATURE
                || (a->status != LIAISON__RECEIPT_STATUS__DELIVERED
                    && a->status != LIAISON__RECEIPT_STATUS__READ))
                return s_err (err, MALFORMED, "bad-ack",
                              "ack needs 1 to %d items, DELIVERED or READ, and a signature",
                              WIRE_MAX_ACK_ITEMS);
            for (size_t i = 0; i < a->n_items; i++)
                if (a->items[i]->id.len != WIRE_ID_LEN || !wire_node_id_valid (a->items[i]->sender))
                    return s_err (err, MALFORMED, "bad-ack", "ack item %zu needs an id and a sender", i + 1);
            return 0;
        }
        case LIAISON__FRAME__KIND_RECEIPT:
            if (s_receipt_bad (f->receipt))
                return s_err (err, MALFORMED, "bad-receipt", "receipt carries invalid fields");
            return 0;
        case LIAISON__FRAME__KIND_QUERY: {
            const Liaison__Query *q = f->query;
            bool ok = q->kind >= LIAISON__QUERY_KIND__QUERY_TRAIL
                      && q->kind <= LIAISON__QUERY_KIND__QUERY_DEADLINES && q->limit <= 1000
                      && (q->id.len == 0 || q->id.len == WIRE_ID_LEN)
                      && (!q->sender[0] || wire_node_id_valid (q->sender));
            if (ok && (q->kind == LIAISON__QUERY_KIND__QUERY_TRAIL
                       || q->kind == LIAISON__QUERY_KIND__QUERY_FETCH))
                ok = q->id.len == WIRE_ID_LEN;
            if (ok && q->kind == LIAISON__QUERY_KIND__QUERY_FETCH)
                ok = q->sender[0] != 0;
            if (!ok)
                return s_err (err, MALFORMED, "bad-query", "query kind, id, sender or limit invalid");
            return 0;
        }
        case LIAISON__FRAME__KIND_ANSWER: {
            const Liaison__Answer *a = f->answer;
            for (size_t i = 0; i < a->n_receipts; i++)
                if (s_receipt_bad (a->receipts[i]))
                    return s_err (err, MALFORMED, "bad-answer", "receipt %zu invalid", i + 1);
            for (size_t i = 0; i < a->n_entries; i++)
                if (a->entries[i]->id.len != WIRE_ID_LEN || !wire_node_id_valid (a->entries[i]->sender))
                    return s_err (err, MALFORMED, "bad-answer", "mailbox entry %zu invalid", i + 1);
            for (size_t i = 0; i < a->n_deadlines; i++) {
                const Liaison__DeadlineEntry *d = a->deadlines[i];
                if (d->id.len != WIRE_ID_LEN || !wire_node_id_valid (d->sender)
                    || !wire_node_id_valid (d->recipient))
                    return s_err (err, MALFORMED, "bad-answer", "deadline entry %zu invalid", i + 1);
            }
            if (a->envelope && wire_codec_check_envelope (a->envelope, 1, err))
                return -1;
            return 0;
        }
        case LIAISON__FRAME__KIND_NOTICE: {
            const Liaison__Notice *n = f->notice;
            if (n->id.len != WIRE_ID_LEN || !wire_node_id_valid (n->sender)
                || !wire_node_id_valid (n->recipient)
                || (n->kind != LIAISON__NOTICE_KIND__NOTICE_DEADLINE_REMINDER
                    && n->kind != LIAISON__NOTICE_KIND__NOTICE_DEADLINE_MISSED))
                return s_err (err, MALFORMED, "bad-notice", "notice carries invalid fields");
            return 0;
        }
        case LIAISON__FRAME__KIND_RESOLVE:
            if (wire_codec_check_envelope (f->resolve->envelope, 0, err))
                return -1;
            if (f->resolve->envelope->body.len)
                return s_err (err, MALFORMED, "bad-resolve", "a Resolve carries no body");
            return 0;
        case LIAISON__FRAME__KIND_RESOLVED: {
            const Liaison__Resolved *r = f->resolved;
            if (r->n_entries > 2 * WIRE_MAX_RECIPIENTS || !s_token_ok (r->rules_hash, WIRE_MAX_NAME))
                return s_err (err, MALFORMED, "bad-resolved", "resolution too long or bad hash");
            for (size_t i = 0; i < r->n_entries; i++) {
                const Liaison__Resolution *e = r->entries[i];
                if (!s_token_ok (e->address, WIRE_MAX_NAME)
                    || (e->node[0] && !wire_node_id_valid (e->node))
                    || !s_token_ok (e->reason, WIRE_MAX_NAME)
                    || !s_text_ok (e->rule, WIRE_MAX_TEXT))
                    return s_err (err, MALFORMED, "bad-resolved", "resolution entry %zu invalid", i);
            }
            return 0;
        }
        case LIAISON__FRAME__KIND_ERROR:
            if (!s_token_ok (f->error->reason, WIRE_MAX_NAME)
                || !s_text_ok (f->error->detail, WIRE_MAX_TEXT))
                return s_err (err, MALFORMED, "bad-error", "error frame carries invalid text");
            return 0;
        case LIAISON__FRAME__KIND_CLOSE:
            if (!s_text_ok (f->close->reason, WIRE_MAX_TEXT))
                return s_err (err, MALFORMED, "bad-close", "close reason invalid");
            return 0;
        default:
            return s_err (err, MALFORMED, "unknown-frame", "frame has no known kind");
    }
}

// Unpacking may allocate far more than the frame's size (a Submit of 4 MiB
// can hold two million empty recipients), before any field is checked: the
// allocator refuses past a budget proportional to the frame. It uses
// malloc and free, so a frame it made is freed with the default allocator.
typedef struct {
    size_t used, limit;
} s_budget_t;

static void *
s_budget_alloc (void *data, size_t size)
{
    s_budget_t *b = data;
    if (size > b->limit - b->used)
        return NULL;
    b->used += size;
    return malloc (size);
}

static void
s_budget_free (void *data, void *ptr)
{
    (void) data;
    free (ptr);
}

Liaison__Frame *
wire_codec_decode (const uint8_t *data, size_t size, wire_codec_error_t *err)
{
    s_budget_t budget = {0, 4 * size + 64 * 1024};
    ProtobufCAllocator alloc = {s_budget_alloc, s_budget_free, &budget};
    Liaison__Frame *f = liaison__frame__unpack (&alloc, size, data);
    if (!f) {
        s_err (err, MALFORMED, "bad-protobuf", "frame of %zu bytes is not a valid protobuf Frame", size);
        return NULL;
    }
    if (s_check (f, err)) {
        liaison__frame__free_unpacked (f, NULL);
        return NULL;
    }
    return f;
}

void
wire_codec_free (Liaison__Frame **frame_p)
{
    if (frame_p && *frame_p) {
        liaison__frame__free_unpacked (*frame_p, NULL);
        *frame_p = NULL;
    }
}

int
wire_codec_send (wire_conn_t *conn, const Liaison__Frame *f)
{
    size_t size = liaison__frame__get_packed_size (f);
    if (size == 0) {
        // An empty frame (all defaults) still needs one byte on the wire:
        // never happens for a frame with its oneof set.
        return -1;
    }
    uint8_t *p = wire_conn_frame_begin (conn, size);
    if (!p)
        return -1;
    liaison__frame__pack (f, p);
    return 0;
}

int
wire_codec_parse_address (const char *text, int *kind, const char **name)
{
    static const struct {
        const char *prefix;
        int kind;
    } prefixes[] = {{"node:", LIAISON__RECIPIENT_KIND__NODE},
                    {"jurisdiction:", LIAISON__RECIPIENT_KIND__JURISDICTION},
                    {"group:", LIAISON__RECIPIENT_KIND__GROUP}};
    if (!text)
        return -1;
    *name = text;
    *kind = 0;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t n = strlen (prefixes[i].prefix);
        if (strncmp (text, prefixes[i].prefix, n) == 0) {
            *kind = prefixes[i].kind;
            *name = text + n;
        }
    }
    // Without a prefix, the spelling tells: FR, fr-pn, eu.
    if (!*kind)
        *kind = wire_codec_country_valid (text) ? LIAISON__RECIPIENT_KIND__JURISDICTION
                : wire_node_id_valid (text)     ? LIAISON__RECIPIENT_KIND__NODE
                                                : LIAISON__RECIPIENT_KIND__GROUP;
    int ok = *kind == LIAISON__RECIPIENT_KIND__NODE           ? wire_node_id_valid (*name)
             : *kind == LIAISON__RECIPIENT_KIND__JURISDICTION ? wire_codec_country_valid (*name)
                                                              : wire_codec_group_valid (*name);
    return ok ? 0 : -1;
}
