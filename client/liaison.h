/*  libliaison: the client library of Liaison, the cross-border police
    message broker.

    A node connects to a broker over mutual TLS 1.3 with its X.509
    certificate, sends envelopes to other nodes, and receives what is sent
    to it. The library is single-threaded per handle: one liaison_t must not
    be used from two threads at once (distinct handles may). Nothing happens
    in the background: network work is done inside liaison_send, liaison_recv,
    liaison_next_receipt, liaison_flush and liaison_pump, so an application
    that receives should call liaison_recv or liaison_pump at least once per
    heartbeat interval (10 s by default) or the broker drops the session.

    Errors: every function that can fail returns LIAISON_OK (0) or a negative
    liaison_error_t; liaison_errmsg() says what failed and what to do.
    Ownership: a function taking `T **` takes the object and sets the
    caller's pointer to NULL; a returned non-const pointer belongs to the
    caller; a returned const pointer is borrowed and lives as long as the
    object it came from.                                                     */
#ifndef LIAISON_H
#define LIAISON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LIAISON_EXPORT __attribute__ ((visibility ("default")))
#else
#define LIAISON_EXPORT
#endif

#define LIAISON_ID_LEN 16

typedef enum {
    LIAISON_OK = 0,
    LIAISON_EINVAL = -1,      /* invalid argument; fix the call */
    LIAISON_EMALFORMED = -2,  /* malformed frame or message */
    LIAISON_ETLS = -3,        /* TLS failed: certificates, keys, handshake */
    LIAISON_EAUTH = -4,       /* the broker refused this node's identity */
    LIAISON_EDENIED = -5,     /* refused by the broker (sender, policy) */
    LIAISON_ENOTFOUND = -6,   /* no such message, file or node */
    LIAISON_EEXHAUSTED = -7,  /* a limit was reached, or out of memory */
    LIAISON_ETIMEOUT = -8,    /* nothing happened within the timeout */
    LIAISON_ECLOSED = -9,     /* the session is closed; retrying reconnects */
    LIAISON_EPROTOCOL = -10,  /* protocol violation or version mismatch */
    LIAISON_EIO = -11,        /* reading or writing a local file failed */
    LIAISON_ECONFIG = -12     /* options incomplete or inconsistent */
} liaison_error_t;

/* Short text for an error code; never NULL. */
LIAISON_EXPORT const char *liaison_strerror (int code);

/* ---------------------------------------------------------------- enums */

typedef enum {
    LIAISON_MLA_REQUEST = 1,
    LIAISON_MLA_REPLY = 2,
    LIAISON_EVIDENCE_HANDOFF = 3,
    LIAISON_CASE_LEAD = 4
} liaison_type_t;

typedef enum {
    LIAISON_ROUTINE = 0,
    LIAISON_URGENT = 1,
    LIAISON_EMERGENCY = 2
} liaison_priority_t;

typedef enum {
    LIAISON_TLP_CLEAR = 1,
    LIAISON_TLP_GREEN = 2,
    LIAISON_TLP_AMBER = 3,
    LIAISON_TLP_AMBER_STRICT = 4,
    LIAISON_TLP_RED = 5
} liaison_tlp_t;

typedef enum {
    LIAISON_H0 = 1,  /* use only to prevent and fight crime */
    LIAISON_H1 = 2,  /* not for judicial proceedings without permission */
    LIAISON_H2 = 3,  /* no onward sharing without permission */
    LIAISON_H3 = 4   /* other restrictions (see the handling note) */
} liaison_handling_t;

typedef enum {
    LIAISON_TO_NODE = 1,
    LIAISON_TO_JURISDICTION = 2,
    LIAISON_TO_GROUP = 3
} liaison_recipient_kind_t;

typedef enum {
    LIAISON_ACCEPTED = 1,
    LIAISON_DELIVERED = 2,
    LIAISON_READ = 3,
    LIAISON_REJECTED = 4,
    LIAISON_EXPIRED = 5
} liaison_status_t;

/* Names as used on the command line and in JSON ("mla-request", "urgent",
   "amber+strict", "h2", "node", "rejected"); NULL for an unknown value. */
LIAISON_EXPORT const char *liaison_type_name (int type);
LIAISON_EXPORT const char *liaison_priority_name (int priority);
LIAISON_EXPORT const char *liaison_tlp_name (int tlp);
LIAISON_EXPORT const char *liaison_handling_name (int handling);
LIAISON_EXPORT const char *liaison_status_name (int status);

/* Parse those names (case-insensitive); -1 for an unknown name. */
LIAISON_EXPORT int liaison_type_parse (const char *name);
LIAISON_EXPORT int liaison_priority_parse (const char *name);
LIAISON_EXPORT int liaison_tlp_parse (const char *name);
LIAISON_EXPORT int liaison_handling_parse (const char *name);

/* ------------------------------------------------------------- messages */

typedef struct liaison_message liaison_message_t;

/* A new outgoing message of the given type, with priority routine, TLP
   AMBER and handling H0 until set otherwise. NULL if type is invalid or
   memory is short. */
LIAISON_EXPORT liaison_message_t *liaison_message_new (liaison_type_t type);

/* NULL-safe; sets *msg_p to NULL. */
LIAISON_EXPORT void liaison_message_destroy (liaison_message_t **msg_p);

/* Adds an address: a node id ("de-bka"), a jurisdiction ("DE") or a group
   ("eu"). LIAISON_EINVAL if the name does not fit its kind or there are
   already 256 recipients. */
LIAISON_EXPORT int liaison_message_add_recipient (liaison_message_t *msg,
                                                  liaison_recipient_kind_t kind,
                                                  const char *name);

/* Adds an address written as people write it: "de-bka" (a node), "DE" (a
   jurisdiction), "eu" (a group), or with a "node:", "jurisdiction:" or
   "group:" prefix to say which. LIAISON_EINVAL as for add_recipient. */
LIAISON_EXPORT int liaison_message_add_address (liaison_message_t *msg, const char *address);

/* Setters copy their arguments. LIAISON_EINVAL on out-of-range values or
   over-long strings (names 64 bytes, case reference 128, note 256). */
LIAISON_EXPORT int liaison_message_set_body (liaison_message_t *msg, const void *data,
                                             size_t size);
LIAISON_EXPORT int liaison_message_set_priority (liaison_message_t *msg, liaison_priority_t p);
LIAISON_EXPORT int liaison_message_set_tlp (liaison_message_t *msg, liaison_tlp_t tlp);
LIAISON_EXPORT int liaison_message_set_handling (liaison_message_t *msg, liaison_handling_t h,
                                                 const char *note);
LIAISON_EXPORT int liaison_message_set_evaluation (liaison_message_t *msg, char source,
                                                   int information);
LIAISON_EXPORT int liaison_message_set_legal_basis (liaison_message_t *msg, const char *basis);
LIAISON_EXPORT int liaison_message_set_case_ref (liaison_message_t *msg, const char *ref);
LIAISON_EXPORT int liaison_message_set_in_reply_to (liaison_message_t *msg,
                                                    const uint8_t id[LIAISON_ID_LEN]);
LIAISON_EXPORT int liaison_message_set_deadline (liaison_message_t *msg, int64_t utc_ms);
LIAISON_EXPORT int liaison_message_set_expires (liaison_message_t *msg, int64_t utc_ms);

/* Sets the envelope's sender. Normally left empty: the broker stamps the
   sender from the certificate and refuses a message whose sender differs. */
LIAISON_EXPORT int liaison_message_set_sender (liaison_message_t *msg, const char *node_id);

/* Getters; strings are borrowed from msg, "" when unset. */
LIAISON_EXPORT const uint8_t *liaison_message_id (const liaison_message_t *msg);
LIAISON_EXPORT const char *liaison_message_sender (const liaison_message_t *msg);
LIAISON_EXPORT liaison_type_t liaison_message_type (const liaison_message_t *msg);
LIAISON_EXPORT liaison_priority_t liaison_message_priority (const liaison_message_t *msg);
LIAISON_EXPORT liaison_tlp_t liaison_message_tlp (const liaison_message_t *msg);
LIAISON_EXPORT liaison_handling_t liaison_message_handling (const liaison_message_t *msg);
LIAISON_EXPORT const char *liaison_message_handling_note (const liaison_message_t *msg);
LIAISON_EXPORT const char *liaison_message_legal_basis (const liaison_message_t *msg);
LIAISON_EXPORT const char *liaison_message_case_ref (const liaison_message_t *msg);
/* NULL when the message replies to nothing. */
LIAISON_EXPORT const uint8_t *liaison_message_in_reply_to (const liaison_message_t *msg);
/* The evaluation: LIAISON_OK with *source ('A', 'B', 'C' or 'X') and
   *information (1-4), or LIAISON_ENOTFOUND when the message carries none. */
LIAISON_EXPORT int liaison_message_evaluation (const liaison_message_t *msg, char *source,
                                               int *information);
LIAISON_EXPORT int64_t liaison_message_created (const liaison_message_t *msg);
LIAISON_EXPORT int64_t liaison_message_deadline (const liaison_message_t *msg);
LIAISON_EXPORT int64_t liaison_message_expires (const liaison_message_t *msg);
LIAISON_EXPORT const void *liaison_message_body (const liaison_message_t *msg, size_t *size);
LIAISON_EXPORT size_t liaison_message_recipient_count (const liaison_message_t *msg);
/* The i-th address (0-based) and its kind; NULL past the end. */
LIAISON_EXPORT const char *liaison_message_recipient (const liaison_message_t *msg, size_t i,
                                                      liaison_recipient_kind_t *kind);

/* Writes 32 lowercase hex digits and a NUL into out. Returns out. */
LIAISON_EXPORT char *liaison_id_hex (const uint8_t id[LIAISON_ID_LEN], char out[33]);
/* Parses 32 hex digits; LIAISON_EINVAL otherwise. */
LIAISON_EXPORT int liaison_id_parse (const char *hex, uint8_t id[LIAISON_ID_LEN]);

/* ------------------------------------------------------------- receipts */

typedef struct liaison_receipt liaison_receipt_t;

LIAISON_EXPORT void liaison_receipt_destroy (liaison_receipt_t **receipt_p);
LIAISON_EXPORT const uint8_t *liaison_receipt_id (const liaison_receipt_t *r);
/* Recipient node id, or the address that was refused. */
LIAISON_EXPORT const char *liaison_receipt_recipient (const liaison_receipt_t *r);
LIAISON_EXPORT liaison_status_t liaison_receipt_status (const liaison_receipt_t *r);
/* Reason token for REJECTED and EXPIRED ("recipient-offline"), or "". */
LIAISON_EXPORT const char *liaison_receipt_reason (const liaison_receipt_t *r);
/* The rule that decided (file:line), or "". */
LIAISON_EXPORT const char *liaison_receipt_rule (const liaison_receipt_t *r);
LIAISON_EXPORT int64_t liaison_receipt_time (const liaison_receipt_t *r);

/* -------------------------------------------------------------- session */

typedef struct liaison liaison_t;

/* How to reach the broker and who this node is. Strings are copied. */
typedef struct {
    const char *endpoint;    /* "tcp://hub.example:7441" */
    const char *cert;        /* node certificate chain (leaf, jurisdiction CA) */
    const char *key;         /* node private key */
    const char *ca;          /* federation root certificate */
    const char *hub_ca;      /* hub CA: the broker's certificate must chain to it */
    const char *server_name; /* name or IP the broker's certificate must carry;
                                default: the endpoint's host */
    const char *crl_dir;     /* optional: also check the broker against CRLs */
    const char *state_dir;   /* required: this node's outbox and inbox (created 0700
                                if absent; one process at a time) */
    int receiver;            /* nonzero: deliveries for this node come here */
    uint32_t window;         /* deliveries in flight to this session; 64 */
    int timeout_ms;          /* connect, handshake and send timeout; 10000 */
} liaison_options_t;

/* Connects, completes the TLS handshake and the Hello/Welcome exchange.
   On success *out is the session; on failure *out is NULL and
   liaison_errmsg (NULL) says why (in this thread). */
LIAISON_EXPORT int liaison_connect (const liaison_options_t *opts, liaison_t **out);

/* Sends close, flushes, and frees the session. NULL-safe. */
LIAISON_EXPORT void liaison_close (liaison_t **self_p);

/* What the last failure on this session (or, for NULL, the last failed
   liaison_connect in this thread) was, with what to do. Never NULL. */
LIAISON_EXPORT const char *liaison_errmsg (const liaison_t *self);

/* The node id and jurisdiction the broker read from our certificate. */
LIAISON_EXPORT const char *liaison_node_id (const liaison_t *self);
LIAISON_EXPORT const char *liaison_jurisdiction (const liaison_t *self);

/* Flag for liaison_send: queue only; the frame goes out with the next call
   that flushes (liaison_send without it, liaison_flush, liaison_recv,
   liaison_pump). Lets a sender batch many messages into few TLS records. */
#define LIAISON_MORE 1

/* Sends msg (not taken: the caller still owns it). A message without an
   id gets 16 random bytes; created is set to now if unset. The addresses
   are first resolved under the broker's routing rules (the answer is
   remembered for messages with the same routing fields): the message goes
   to exactly the allowed nodes, required copies included, and every
   refused address is reported at once as a REJECTED receipt naming the
   rule. If the rules change before the broker processes it, the broker
   refuses it as recipients-changed and the library resolves and sends it
   once more by itself. LIAISON_EDENIED when no recipient is allowed (the
   receipts say why). Waits up to the session timeout for sending credit.
   If the session dropped, reconnects once first. Other refusals by the
   broker (recipient offline, ...) arrive later as REJECTED receipts. */
LIAISON_EXPORT int liaison_send (liaison_t *self, liaison_message_t *msg, int flags);

/* Waits until the broker has processed everything sent before (a ping
   barrier): receipts it produced are then queued here. Also makes the
   outbox and the inbox acknowledgements durable first (liaison_sync). */
LIAISON_EXPORT int liaison_flush (liaison_t *self, int timeout_ms);

/* Next message delivered to this node and not yet acknowledged by the
   application (caller owns it). Every message handed out is durable in
   the state directory, and the broker has been told so (a signed
   DELIVERED receipt). After a restart, every message the application has
   not acknowledged with liaison_ack is handed out again, oldest first,
   and none it has. timeout_ms < 0 waits forever, 0 polls.
   LIAISON_ETIMEOUT when none arrived. */
LIAISON_EXPORT int liaison_recv (liaison_t *self, liaison_message_t **msg, int timeout_ms);

/* The application is done with msg: it is never handed out again. Local
   (nothing goes to the broker). Durable when this call returns, or with
   LIAISON_MORE at the next liaison_sync, liaison_flush or liaison_close
   (or earlier, with the next commit the library makes for deliveries):
   acknowledge a batch with LIAISON_MORE and then call liaison_sync.
   LIAISON_ENOTFOUND if msg was not delivered here. */
LIAISON_EXPORT int liaison_ack (liaison_t *self, const liaison_message_t *msg, int flags);

/* An officer or system consulted msg: recorded here at once (durable);
   the broker is told in a signed batch within a few milliseconds while the
   application calls the library (at the latest by liaison_flush or
   liaison_close), records one READ receipt per recipient and forwards it
   to the sender. */
LIAISON_EXPORT int liaison_read (liaison_t *self, const liaison_message_t *msg);

/* Makes everything staged in the state directory durable now: messages
   sent with LIAISON_MORE, acknowledgements. */
LIAISON_EXPORT int liaison_sync (liaison_t *self);

/* Messages sent and not yet ACCEPTED (kept and resent after reconnecting
   or restarting), and messages delivered the application has not
   acknowledged. -1 on error. */
LIAISON_EXPORT int64_t liaison_outbox_count (liaison_t *self);
LIAISON_EXPORT int64_t liaison_inbox_count (liaison_t *self);

/* The receipt trail of a message this node sent, from the broker's store:
   ACCEPTED per recipient, then DELIVERED, READ, EXPIRED as they happened
   (signed ones verify with liaison_receipt_verify). Works after
   reconnecting or restarting. On success *out (may be empty) belongs to
   the caller; LIAISON_ENOTFOUND if the broker holds no such message (never
   accepted, or purged after its retention period). */
typedef struct liaison_trail liaison_trail_t;
LIAISON_EXPORT int liaison_trail (liaison_t *self, const uint8_t id[LIAISON_ID_LEN],
                                  liaison_trail_t **out);
LIAISON_EXPORT size_t liaison_trail_count (const liaison_trail_t *t);
LIAISON_EXPORT const liaison_receipt_t *liaison_trail_get (const liaison_trail_t *t, size_t i);
LIAISON_EXPORT void liaison_trail_destroy (liaison_trail_t **t_p);

/* Checks a DELIVERED or READ receipt's signature against the recipient's
   certificate (PEM file): the Merkle path leads from this receipt's leaf to
   a root the certificate's key signed. LIAISON_OK if it verifies,
   LIAISON_EDENIED if it does not (or the receipt carries no signature),
   LIAISON_EIO if the certificate cannot be read, LIAISON_EINVAL for NULLs. */
LIAISON_EXPORT int liaison_receipt_verify (const liaison_receipt_t *r, const char *cert_pem_path);

/* This node's mailbox at the broker, without changing delivery: the
   messages not yet delivered (acknowledged by this node's library), in
   delivery order: highest priority first, then acceptance order. Pass
   *after = 0 to start; it is set to an opaque cursor past the entries
   returned, and to 0 when the mailbox has no more. *n gets the
   number filled (at most max, at most 1000 per call). */
typedef struct {
    uint64_t seq;                 /* the broker's acceptance order */
    uint8_t id[LIAISON_ID_LEN];
    char sender[40];
    liaison_type_t type;
    liaison_priority_t priority;
    int64_t accepted_ms;
    int64_t deadline_ms;
    uint64_t size;                /* envelope bytes */
} liaison_mailbox_entry_t;
LIAISON_EXPORT int liaison_mailbox (liaison_t *self, uint64_t *after,
                                    liaison_mailbox_entry_t *out, size_t max, size_t *n);

/* One message of this node's mailbox (delivered or not, while the broker
   keeps it), without changing delivery or acknowledging anything: for an
   officer's look from another session. LIAISON_ENOTFOUND if the broker
   holds no such message for this node. */
LIAISON_EXPORT int liaison_fetch (liaison_t *self, const char *sender,
                                  const uint8_t id[LIAISON_ID_LEN], liaison_message_t **out);

/* Deadline clocks and notices. A request's deadline class (or a date) is
   set with liaison_message_set_deadline_class; the broker keeps the clock
   from its acceptance, reminds the recipient and tells both sides when it
   is missed. A reply (liaison_message_set_in_reply_to) stops the clock. */
typedef enum {
    LIAISON_DEADLINE_NONE = 0,
    LIAISON_DEADLINE_8_HOURS = 1,
    LIAISON_DEADLINE_3_DAYS = 2,
    LIAISON_DEADLINE_7_DAYS = 3,
    LIAISON_DEADLINE_DATE = 4   /* the date given to liaison_message_set_deadline */
} liaison_deadline_class_t;
LIAISON_EXPORT int liaison_message_set_deadline_class (liaison_message_t *msg,
                                                       liaison_deadline_class_t cls);
LIAISON_EXPORT liaison_deadline_class_t liaison_message_deadline_class (const liaison_message_t *msg);

typedef enum {
    LIAISON_NOTICE_DEADLINE_REMINDER = 1, /* to the recipient: the deadline is near */
    LIAISON_NOTICE_DEADLINE_MISSED = 2    /* to both sides: it ran out without a reply */
} liaison_notice_kind_t;

typedef struct {
    liaison_notice_kind_t kind;
    uint8_t id[LIAISON_ID_LEN];           /* the request */
    char sender[40];                      /* who asked */
    char recipient[40];                   /* whose clock */
    int64_t deadline_ms;
} liaison_notice_t;

/* Next deadline notice for this node (pushed by the broker to every
   session of the node that is connected when it happens). */
LIAISON_EXPORT int liaison_next_notice (liaison_t *self, liaison_notice_t *out, int timeout_ms);

/* The running and missed deadline clocks this node is party to, soonest
   first (at most max). *n gets the number filled. state: 1 open, 2 due
   soon (reminded), 3 missed. */
typedef struct {
    uint8_t id[LIAISON_ID_LEN];
    char sender[40];
    char recipient[40];
    int64_t deadline_ms;
    int state;
} liaison_deadline_t;
LIAISON_EXPORT int liaison_deadlines (liaison_t *self, liaison_deadline_t *out, size_t max,
                                      size_t *n);

/* Next receipt for messages this node sent (caller owns it). */
LIAISON_EXPORT int liaison_next_receipt (liaison_t *self, liaison_receipt_t **receipt,
                                         int timeout_ms);

/* ----------------------------------------------------------- resolution */

typedef struct liaison_resolution liaison_resolution_t;

/* Asks the broker what msg's addresses stand for under its current routing
   rules, without sending anything: one entry per concrete node (and per
   address that gave none), required copies included, each allowed or
   refused with the reason and rule. liaison_send does this itself (and
   remembers the answer); this call is for showing it to an officer. On
   success *out belongs to the caller. */
LIAISON_EXPORT int liaison_resolve (liaison_t *self, const liaison_message_t *msg,
                                    liaison_resolution_t **out);
LIAISON_EXPORT void liaison_resolution_destroy (liaison_resolution_t **res_p);
LIAISON_EXPORT size_t liaison_resolution_count (const liaison_resolution_t *res);
/* The address as given (for a required copy: its node). */
LIAISON_EXPORT const char *liaison_resolution_address (const liaison_resolution_t *res, size_t i);
/* The concrete node, or "" when the address stood for none. */
LIAISON_EXPORT const char *liaison_resolution_node (const liaison_resolution_t *res, size_t i);
/* Nonzero if that node may receive the message. */
LIAISON_EXPORT int liaison_resolution_allowed (const liaison_resolution_t *res, size_t i);
/* rule, default, required-copy, unknown-address, no-contact-point,
   handling-restricts-addressing, sender-itself. */
LIAISON_EXPORT const char *liaison_resolution_reason (const liaison_resolution_t *res, size_t i);
/* "FILE:LINE" of the deciding rule, "default", or "". */
LIAISON_EXPORT const char *liaison_resolution_rule (const liaison_resolution_t *res, size_t i);
/* Short hash of the rules file that decided. */
LIAISON_EXPORT const char *liaison_resolution_rules_hash (const liaison_resolution_t *res);

/* The rule (FILE:LINE) and rules hash behind a REJECTED receipt, or "". */
LIAISON_EXPORT const char *liaison_receipt_rules_hash (const liaison_receipt_t *r);

/* Does network work for up to timeout_ms: heartbeats, reading frames into
   the local queues. Returns LIAISON_OK or the error that closed the
   session. */
LIAISON_EXPORT int liaison_pump (liaison_t *self, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
