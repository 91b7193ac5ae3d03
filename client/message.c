/*  Messages, receipts and the names of enum values.                         */
#include "internal.h"

#include "codec.h"
#include "tls.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *s_types[] = {NULL, "mla-request", "mla-reply", "evidence-handoff", "case-lead"};
static const char *s_prios[] = {"routine", "urgent", "emergency"};
static const char *s_tlps[] = {NULL, "clear", "green", "amber", "amber+strict", "red"};
static const char *s_handl[] = {NULL, "h0", "h1", "h2", "h3"};
static const char *s_status[] = {NULL, "accepted", "delivered", "read", "rejected", "expired"};

#define COUNT(a) ((int) (sizeof (a) / sizeof (a)[0]))

static const char *
s_name (const char **names, int n, int v)
{
    return v >= 0 && v < n ? names[v] : NULL;
}

static int
s_parse (const char **names, int n, const char *name)
{
    for (int i = 0; name && i < n; i++)
        if (names[i] && strcasecmp (names[i], name) == 0)
            return i;
    return -1;
}

const char *liaison_type_name (int v) { return s_name (s_types, COUNT (s_types), v); }
const char *liaison_priority_name (int v) { return s_name (s_prios, COUNT (s_prios), v); }
const char *liaison_tlp_name (int v) { return s_name (s_tlps, COUNT (s_tlps), v); }
const char *liaison_handling_name (int v) { return s_name (s_handl, COUNT (s_handl), v); }
const char *liaison_status_name (int v) { return s_name (s_status, COUNT (s_status), v); }
int liaison_type_parse (const char *s) { return s_parse (s_types, COUNT (s_types), s); }
int liaison_priority_parse (const char *s) { return s_parse (s_prios, COUNT (s_prios), s); }
int liaison_handling_parse (const char *s) { return s_parse (s_handl, COUNT (s_handl), s); }

int
liaison_tlp_parse (const char *s)
{
    if (s && strncasecmp (s, "tlp:", 4) == 0)
        s += 4;
    return s_parse (s_tlps, COUNT (s_tlps), s);
}

const char *
liaison_strerror (int code)
{
    switch (code) {
        case LIAISON_OK: return "ok";
        case LIAISON_EINVAL: return "invalid argument";
        case LIAISON_EMALFORMED: return "malformed message";
        case LIAISON_ETLS: return "TLS failure";
        case LIAISON_EAUTH: return "identity refused";
        case LIAISON_EDENIED: return "refused";
        case LIAISON_ENOTFOUND: return "not found";
        case LIAISON_EEXHAUSTED: return "limit reached";
        case LIAISON_ETIMEOUT: return "timed out";
        case LIAISON_ECLOSED: return "session closed";
        case LIAISON_EPROTOCOL: return "protocol error";
        case LIAISON_EIO: return "I/O error";
        case LIAISON_ECONFIG: return "configuration error";
    }
    return "unknown error";
}

liaison_message_t *
message_wrap (Liaison__Envelope *env)
{
    liaison_message_t *m = calloc (1, sizeof *m);
    if (!m) {
        liaison__envelope__free_unpacked (env, NULL);
        return NULL;
    }
    m->env = env;
    return m;
}

liaison_message_t *
liaison_message_new (liaison_type_t type)
{
    if (type < LIAISON_MLA_REQUEST || type > LIAISON_CASE_LEAD)
        return NULL;
    Liaison__Envelope *env = malloc (sizeof *env);
    if (!env)
        return NULL;
    liaison__envelope__init (env);
    env->type = (Liaison__MessageType) type;
    env->tlp = LIAISON__TLP__TLP_AMBER;
    env->handling = LIAISON__HANDLING_CODE__H0;
    return message_wrap (env);
}

void
liaison_message_destroy (liaison_message_t **msg_p)
{
    if (!msg_p || !*msg_p)
        return;
    liaison__envelope__free_unpacked ((*msg_p)->env, NULL);
    free (*msg_p);
    *msg_p = NULL;
}

// Replaces a string field with a copy of value (bounded), keeping the
// protobuf-c empty default for "".
static int
s_set_str (char **field, const char *value, size_t max)
{
    if (!value || strlen (value) > max)
        return LIAISON_EINVAL;
    for (const char *p = value; *p; p++)
        if ((unsigned char) *p < 0x20 || *p == 0x7f)
            return LIAISON_EINVAL;
    char *copy = value[0] ? strdup (value) : (char *) protobuf_c_empty_string;
    if (!copy)
        return LIAISON_EEXHAUSTED;
    if (*field && *field != protobuf_c_empty_string)
        free (*field);
    *field = copy;
    return LIAISON_OK;
}

static int
s_set_bytes (ProtobufCBinaryData *field, const void *data, size_t size)
{
    uint8_t *copy = NULL;
    if (size) {
        copy = malloc (size);
        if (!copy)
            return LIAISON_EEXHAUSTED;
        memcpy (copy, data, size);
    }
    free (field->data);
    field->data = copy;
    field->len = size;
    return LIAISON_OK;
}

int
liaison_message_add_recipient (liaison_message_t *msg, liaison_recipient_kind_t kind,
                               const char *name)
{
    Liaison__Envelope *e = msg->env;
    int ok = name && ((kind == LIAISON_TO_NODE && wire_node_id_valid (name))
                      || (kind == LIAISON_TO_JURISDICTION && wire_codec_country_valid (name))
                      || (kind == LIAISON_TO_GROUP && wire_codec_group_valid (name)));
    if (!ok || e->n_recipients >= WIRE_MAX_RECIPIENTS)
        return LIAISON_EINVAL;
    Liaison__Recipient **list = realloc (e->recipients, (e->n_recipients + 1) * sizeof *list);
    if (!list)
        return LIAISON_EEXHAUSTED;
    e->recipients = list;
    Liaison__Recipient *r = malloc (sizeof *r);
    if (!r)
        return LIAISON_EEXHAUSTED;
    liaison__recipient__init (r);
    r->kind = (Liaison__RecipientKind) kind;
    r->name = strdup (name);
    if (!r->name) {
        free (r);
        return LIAISON_EEXHAUSTED;
    }
    list[e->n_recipients++] = r;
    return LIAISON_OK;
}

int
liaison_message_add_address (liaison_message_t *msg, const char *address)
{
    int kind;
    const char *name;
    if (wire_codec_parse_address (address, &kind, &name))
        return LIAISON_EINVAL;
    return liaison_message_add_recipient (msg, (liaison_recipient_kind_t) kind, name);
}

int
liaison_message_set_body (liaison_message_t *msg, const void *data, size_t size)
{
    if (size && !data)
        return LIAISON_EINVAL;
    int rc = s_set_bytes (&msg->env->body, data, size);
    if (rc == LIAISON_OK)
        msg->env->body_size = size;
    return rc;
}

int
liaison_message_set_priority (liaison_message_t *msg, liaison_priority_t p)
{
    if ((int) p < LIAISON_ROUTINE || p > LIAISON_EMERGENCY)
        return LIAISON_EINVAL;
    msg->env->priority = (Liaison__Priority) p;
    return LIAISON_OK;
}

int
liaison_message_set_tlp (liaison_message_t *msg, liaison_tlp_t tlp)
{
    if (tlp < LIAISON_TLP_CLEAR || tlp > LIAISON_TLP_RED)
        return LIAISON_EINVAL;
    msg->env->tlp = (Liaison__Tlp) tlp;
    return LIAISON_OK;
}

int
liaison_message_set_handling (liaison_message_t *msg, liaison_handling_t h, const char *note)
{
    if (h < LIAISON_H0 || h > LIAISON_H3)
        return LIAISON_EINVAL;
    int rc = s_set_str (&msg->env->handling_note, note ? note : "", 256);
    if (rc == LIAISON_OK)
        msg->env->handling = (Liaison__HandlingCode) h;
    return rc;
}

int
liaison_message_set_evaluation (liaison_message_t *msg, char source, int information)
{
    if (!strchr ("ABCX", source) || source == 0 || information < 1 || information > 4)
        return LIAISON_EINVAL;
    Liaison__Envelope *e = msg->env;
    if (!e->evaluation) {
        e->evaluation = malloc (sizeof *e->evaluation);
        if (!e->evaluation)
            return LIAISON_EEXHAUSTED;
        liaison__evaluation__init (e->evaluation);
    }
    char src[2] = {source, 0};
    s_set_str (&e->evaluation->source, src, 1);
    e->evaluation->information = (uint32_t) information;
    return LIAISON_OK;
}

int
liaison_message_set_legal_basis (liaison_message_t *msg, const char *basis)
{
    // A name of printable ASCII, as the codec requires on the wire.
    for (const char *p = basis; p && *p; p++)
        if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f)
            return LIAISON_EINVAL;
    return s_set_str (&msg->env->legal_basis, basis, WIRE_MAX_NAME);
}

int
liaison_message_set_case_ref (liaison_message_t *msg, const char *ref)
{
    return s_set_str (&msg->env->case_ref, ref, WIRE_MAX_CASE_REF);
}

int
liaison_message_set_sender (liaison_message_t *msg, const char *node_id)
{
    if (!node_id || (node_id[0] && !wire_node_id_valid (node_id)))
        return LIAISON_EINVAL;
    return s_set_str (&msg->env->sender, node_id, WIRE_NODE_ID_MAX - 1);
}

int
liaison_message_set_in_reply_to (liaison_message_t *msg, const uint8_t id[LIAISON_ID_LEN])
{
    return s_set_bytes (&msg->env->in_reply_to, id, id ? LIAISON_ID_LEN : 0);
}

int
liaison_message_set_deadline (liaison_message_t *msg, int64_t utc_ms)
{
    if (utc_ms < 0)
        return LIAISON_EINVAL;
    msg->env->deadline_ms = utc_ms;
    msg->env->deadline_class = utc_ms ? LIAISON__DEADLINE_CLASS__DEADLINE_DATE
                                      : LIAISON__DEADLINE_CLASS__DEADLINE_NONE;
    return LIAISON_OK;
}

int
liaison_message_set_deadline_class (liaison_message_t *msg, liaison_deadline_class_t cls)
{
    if (!msg || cls < LIAISON_DEADLINE_NONE || cls > LIAISON_DEADLINE_DATE)
        return LIAISON_EINVAL;
    if (cls == LIAISON_DEADLINE_DATE && msg->env->deadline_ms == 0)
        return LIAISON_EINVAL;  // set the date with liaison_message_set_deadline
    msg->env->deadline_class = (Liaison__DeadlineClass) cls;
    if (cls != LIAISON_DEADLINE_DATE)
        msg->env->deadline_ms = 0;  // the broker sets it from its acceptance
    return LIAISON_OK;
}

liaison_deadline_class_t
liaison_message_deadline_class (const liaison_message_t *msg)
{
    return msg ? (liaison_deadline_class_t) msg->env->deadline_class : LIAISON_DEADLINE_NONE;
}

int
liaison_message_set_expires (liaison_message_t *msg, int64_t utc_ms)
{
    if (utc_ms < 0)
        return LIAISON_EINVAL;
    msg->env->expires_ms = utc_ms;
    return LIAISON_OK;
}

const uint8_t *
liaison_message_id (const liaison_message_t *msg)
{
    static const uint8_t zero[LIAISON_ID_LEN];
    return msg->env->id.len == LIAISON_ID_LEN ? msg->env->id.data : zero;
}

const char *liaison_message_sender (const liaison_message_t *m) { return m->env->sender; }
liaison_type_t liaison_message_type (const liaison_message_t *m) { return (liaison_type_t) m->env->type; }
liaison_priority_t liaison_message_priority (const liaison_message_t *m) { return (liaison_priority_t) m->env->priority; }
liaison_tlp_t liaison_message_tlp (const liaison_message_t *m) { return (liaison_tlp_t) m->env->tlp; }
liaison_handling_t liaison_message_handling (const liaison_message_t *m) { return (liaison_handling_t) m->env->handling; }
const char *liaison_message_handling_note (const liaison_message_t *m) { return m->env->handling_note; }
const char *liaison_message_legal_basis (const liaison_message_t *m) { return m->env->legal_basis; }
const char *liaison_message_case_ref (const liaison_message_t *m) { return m->env->case_ref; }
int64_t liaison_message_created (const liaison_message_t *m) { return m->env->created_ms; }
int64_t liaison_message_deadline (const liaison_message_t *m) { return m->env->deadline_ms; }
int64_t liaison_message_expires (const liaison_message_t *m) { return m->env->expires_ms; }
size_t liaison_message_recipient_count (const liaison_message_t *m) { return m->env->n_recipients; }

int
liaison_message_evaluation (const liaison_message_t *m, char *source, int *information)
{
    const Liaison__Evaluation *ev = m->env->evaluation;
    if (!ev || !ev->source[0] || ev->information == 0)
        return LIAISON_ENOTFOUND;
    if (source)
        *source = ev->source[0];
    if (information)
        *information = (int) ev->information;
    return LIAISON_OK;
}

const uint8_t *
liaison_message_in_reply_to (const liaison_message_t *m)
{
    return m->env->in_reply_to.len == LIAISON_ID_LEN ? m->env->in_reply_to.data : NULL;
}

const void *
liaison_message_body (const liaison_message_t *m, size_t *size)
{
    if (size)
        *size = m->env->body.len;
    return m->env->body.len ? m->env->body.data : (const void *) "";
}

const char *
liaison_message_recipient (const liaison_message_t *m, size_t i, liaison_recipient_kind_t *kind)
{
    if (i >= m->env->n_recipients)
        return NULL;
    if (kind)
        *kind = (liaison_recipient_kind_t) m->env->recipients[i]->kind;
    return m->env->recipients[i]->name;
}

char *
liaison_id_hex (const uint8_t id[LIAISON_ID_LEN], char out[33])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < LIAISON_ID_LEN; i++) {
        out[2 * i] = hex[id[i] >> 4];
        out[2 * i + 1] = hex[id[i] & 15];
    }
    out[32] = 0;
    return out;
}

static int
s_hexval (char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int
liaison_id_parse (const char *hex, uint8_t id[LIAISON_ID_LEN])
{
    if (!hex || strlen (hex) != 2 * LIAISON_ID_LEN)
        return LIAISON_EINVAL;
    for (int i = 0; i < LIAISON_ID_LEN; i++) {
        int hi = s_hexval (hex[2 * i]), lo = s_hexval (hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return LIAISON_EINVAL;
        id[i] = (uint8_t) (hi << 4 | lo);
    }
    return LIAISON_OK;
}

liaison_receipt_t *
receipt_wrap (Liaison__Receipt *r)
{
    liaison_receipt_t *self = calloc (1, sizeof *self);
    if (!self) {
        liaison__receipt__free_unpacked (r, NULL);
        return NULL;
    }
    self->r = r;
    return self;
}

void
liaison_receipt_destroy (liaison_receipt_t **p)
{
    if (!p || !*p)
        return;
    liaison__receipt__free_unpacked ((*p)->r, NULL);
    free (*p);
    *p = NULL;
}

const uint8_t *liaison_receipt_id (const liaison_receipt_t *r) { return r->r->id.data; }
const char *liaison_receipt_recipient (const liaison_receipt_t *r) { return r->r->recipient; }
liaison_status_t liaison_receipt_status (const liaison_receipt_t *r) { return (liaison_status_t) r->r->status; }
const char *liaison_receipt_reason (const liaison_receipt_t *r) { return r->r->reason; }
const char *liaison_receipt_rule (const liaison_receipt_t *r) { return r->r->rule; }
int64_t liaison_receipt_time (const liaison_receipt_t *r) { return r->r->time_ms; }

const char *liaison_receipt_rules_hash (const liaison_receipt_t *r) { return r->r->rules_hash; }

void
liaison_resolution_destroy (liaison_resolution_t **p)
{
    if (!p || !*p)
        return;
    liaison__resolved__free_unpacked ((*p)->r, NULL);
    free (*p);
    *p = NULL;
}

size_t liaison_resolution_count (const liaison_resolution_t *res) { return res->r->n_entries; }
const char *liaison_resolution_rules_hash (const liaison_resolution_t *res) { return res->r->rules_hash; }

// The i-th entry, or NULL past the end.
static const Liaison__Resolution *
s_entry (const liaison_resolution_t *res, size_t i)
{
    return i < res->r->n_entries ? res->r->entries[i] : NULL;
}

const char *
liaison_resolution_address (const liaison_resolution_t *res, size_t i)
{
    const Liaison__Resolution *e = s_entry (res, i);
    return e ? e->address : "";
}

const char *
liaison_resolution_node (const liaison_resolution_t *res, size_t i)
{
    const Liaison__Resolution *e = s_entry (res, i);
    return e ? e->node : "";
}

int
liaison_resolution_allowed (const liaison_resolution_t *res, size_t i)
{
    const Liaison__Resolution *e = s_entry (res, i);
    return e ? e->allowed : 0;
}

const char *
liaison_resolution_reason (const liaison_resolution_t *res, size_t i)
{
    const Liaison__Resolution *e = s_entry (res, i);
    return e ? e->reason : "";
}

const char *
liaison_resolution_rule (const liaison_resolution_t *res, size_t i)
{
    const Liaison__Resolution *e = s_entry (res, i);
    return e ? e->rule : "";
}
