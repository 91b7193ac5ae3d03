/*  The broker's durable state: SQLite in WAL mode under the state
    directory. Messages are accepted into it in grouped transactions (one
    fsync for many), each node's mailbox is read back in short
    keyset-paginated transactions, and receipts are kept per (message,
    recipient) so a sender can ask for a message's trail at any time.

    Durability: journal_mode=WAL with synchronous=FULL (NORMAL is not
    durable in WAL mode), mmap_size=0, automatic checkpoints off; passive
    checkpoints are taken by store_checkpoint, which truncates the WAL once
    it grows past a bound. The schema version lives in user_version; each
    migration runs in one transaction; a newer schema is refused.

    Not thread-safe: one thread (the core) owns a store_t.                 */
#ifndef LIAISON_STORE_H
#define LIAISON_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_SCHEMA_VERSION 4

typedef struct store store_t;

typedef struct {
    const char *path;          /* database file, e.g. <state_dir>/liaison.db */
    uint64_t max_bytes;        /* refuse new messages once the file is this big; 0: no bound */
    uint64_t wal_limit_bytes;  /* truncate the WAL at checkpoint past this; 0: 64 MiB */
} store_config_t;

typedef enum {
    STORE_OK = 0,
    STORE_DUPLICATE = 1,       /* same (sender, id), same digest: stored already */
    STORE_ERROR = -1,          /* SQLite failed; message names the cause */
    STORE_CONFLICT = -2,       /* same (sender, id), another digest */
    STORE_FULL = -3,           /* the size bound (or the disk) is reached */
    STORE_DAMAGED = -4,        /* a stored envelope fails its SHA-256 */
    STORE_NOTFOUND = -5        /* no such message in that node's mailbox */
} store_rc_t;

/* Opens (creating if needed, mode 0600) and migrates the database.
   Returns NULL and writes why into err: cannot open, not a Liaison store,
   schema newer than this program (STORE_SCHEMA_VERSION), damaged header. */
store_t *store_open (const store_config_t *cfg, char *err, size_t errlen);

/* Commits nothing pending (a pending group is rolled back: it was never
   acknowledged), closes. NULL-safe; sets *self_p to NULL. */
void store_close (store_t **self_p);

/* The last error's text; borrowed, never NULL. */
const char *store_error (const store_t *self);

/* One message as accepted: its packed envelope (sender stamped) goes to
   every recipient's mailbox. Strings and buffers are borrowed. */
typedef struct {
    const uint8_t *id;         /* 16 bytes */
    const char *sender;        /* node id */
    const uint8_t *digest;     /* 32 bytes: SHA-256 over body and routing fields */
    const uint8_t *envelope;   /* packed Envelope */
    size_t envelope_len;
    int type;                  /* LIAISON__MESSAGE_TYPE__* */
    int priority;              /* 0..2; higher is delivered first */
    int64_t accepted_ms;
    int64_t deadline_ms;       /* 0: none */
    int64_t expires_ms;        /* 0: none */
    int64_t remind_ms;         /* with deadline_ms: when to remind the recipients */
    const char *const *recipients;  /* node ids, distinct */
    size_t n_recipients;
} store_msg_t;

/* Stages m in the open group transaction (opened on demand). For
   STORE_DUPLICATE, *accepted_ms (if not NULL) gets the original
   acceptance time. Nothing staged is durable before store_commit. */
store_rc_t store_put (store_t *self, const store_msg_t *m, int64_t *accepted_ms);

/* The seq store_put gave the last message it stored (not a duplicate). */
uint64_t store_last_seq (const store_t *self);

/* 1 if (sender, id) is stored (staged ones included), 0 if not, -1. */
int store_known (store_t *self, const char *sender, const uint8_t id[16]);

/* Makes everything staged since the last commit durable, in one
   transaction (one fsync). STORE_OK, or an error after which everything
   staged since the last commit is gone (never acknowledge it). */
store_rc_t store_commit (store_t *self);

/* True if a group transaction is open (something staged, not committed). */
bool store_pending (const store_t *self);

/* Where a mailbox read stopped: pass a zeroed cursor to start. */
typedef struct {
    int priority;              /* last priority returned */
    uint64_t seq;              /* last sequence returned at that priority */
    bool started;
} store_cursor_t;

/* One mailbox entry. envelope is malloc'd: free with store_entry_clear. */
typedef struct {
    uint64_t seq;              /* acceptance order, broker-wide */
    uint8_t id[16];
    char sender[34];
    int priority;
    int64_t accepted_ms;
    uint8_t *envelope;
    size_t envelope_len;
} store_entry_t;

void store_entry_clear (store_entry_t *e);

/* Reads up to max entries of node's mailbox not yet delivered, after the
   cursor: priority descending, then acceptance order (so order is kept per
   sender, recipient and priority). One short read transaction; advances
   the cursor. Each envelope is checked against its stored SHA-256: a
   damaged one is not returned and the call fails with STORE_DAMAGED after
   logging through store_error (the caller refuses it, never serves it).
   *n is the number filled. */
store_rc_t store_mailbox_page (store_t *self, const char *node, store_cursor_t *cursor,
                               store_entry_t *out, size_t max, size_t *n);

/* The delivery scan: node's undelivered entries of one priority with seq
   greater than after, in seq order, at most max. fn is called for each
   with the envelope borrowed (valid during the call, already checked
   against its SHA-256); fn returns 0 to take the entry and go on, nonzero
   to stop before it (not taken). Returns the number taken, or a negative
   store_rc_t; for STORE_DAMAGED *damaged_seq is the damaged entry's seq
   (the entries before it were taken). Call it with no group pending, so
   only committed messages are ever handed out. */
typedef int (store_scan_fn) (void *arg, uint64_t seq, const uint8_t id[16], const char *sender,
                             const uint8_t *envelope, size_t len);
int store_mailbox_scan (store_t *self, const char *node, int priority, uint64_t after, size_t max,
                        store_scan_fn *fn, void *arg, uint64_t *damaged_seq);

/* Lists node's undelivered mailbox without changing it, in delivery order
   (priority descending, then acceptance order), at most max entries after
   the cursor `after` (0: from the start; else the `cursor` of the last
   entry a previous call listed). No sort, however big the backlog: it
   walks the delivery index. Returns the number, or a negative store_rc_t. */
typedef struct {
    uint64_t seq;
    uint8_t id[16];
    char sender[34];
    int type, priority;
    int64_t accepted_ms, deadline_ms;
    uint64_t size;
    uint64_t cursor;           /* pass as `after` to list what follows this entry */
} store_listing_t;

typedef void (store_list_fn) (void *arg, const store_listing_t *entry);
int store_mailbox_list (store_t *self, const char *node, uint64_t after, size_t max,
                        store_list_fn *fn, void *arg);

/* One message of node's mailbox (delivered or not, while stored), its
   envelope checked against its SHA-256 and handed to fn. STORE_OK,
   STORE_NOTFOUND, STORE_DAMAGED or STORE_ERROR. */
typedef void (store_fetch_fn) (void *arg, const uint8_t *envelope, size_t len);
store_rc_t store_fetch (store_t *self, const char *node, const char *sender, const uint8_t id[16],
                        store_fetch_fn *fn, void *arg);

/* Number of entries in node's mailbox not yet delivered. */
int64_t store_mailbox_count (store_t *self, const char *node);

/* The recipient has the message durably: it leaves the mailbox (staged in
   the group transaction like store_put). STORE_OK also when it was
   delivered (or expired) already, with *first (if not NULL) false --
   except for the first acknowledgement of an entry the tick expired while
   it was on its way: then *first is true (the recipient has it);
   STORE_NOTFOUND when the message was never in node's mailbox (or is
   purged): a node acknowledges only what was sent to it. */
store_rc_t store_delivered (store_t *self, const char *node, const char *sender,
                            const uint8_t id[16], int64_t when_ms, bool *first);

/* Takes up to max undelivered mailbox entries whose message expired at or
   before now_ms out of their mailboxes (staged), records an EXPIRED
   receipt for each, and calls fn for each. Returns the number, or a
   negative store_rc_t. */
typedef void (store_expired_fn) (void *arg, const char *node, const char *sender,
                                 const uint8_t id[16], int64_t expires_ms);
int store_expire (store_t *self, int64_t now_ms, size_t max, store_expired_fn *fn, void *arg);

/* Deadlines. store_put starts one clock per recipient for a message with
   deadline_ms. A reply from `replier` to `sender`'s request `id` stops
   replier's clock (staged); 1 if a running or missed clock was answered,
   0 if none, or a negative store_rc_t. */
int store_deadline_answer (store_t *self, const char *sender, const uint8_t id[16],
                           const char *replier, int64_t now_ms);

typedef enum {
    STORE_DEADLINE_OPEN = 1,
    STORE_DEADLINE_DUE_SOON = 2,
    STORE_DEADLINE_MISSED = 3,
    STORE_DEADLINE_ANSWERED = 4
} store_deadline_state_t;

typedef void (store_deadline_fn) (void *arg, const char *sender, const uint8_t id[16],
                                  const char *recipient, int64_t due_ms, int state,
                                  int64_t answered_ms);

/* Moves clocks whose reminder time passed to DUE_SOON and clocks whose
   deadline passed to MISSED (staged), at most max of each, calling fn
   with the new state. Returns the number moved, or a negative store_rc_t. */
int store_deadlines_tick (store_t *self, int64_t now_ms, size_t max, store_deadline_fn *fn,
                          void *arg);

/* The running and missed clocks node is party to (as sender or
   recipient), soonest first, at most max. Returns the number or < 0. */
int store_deadlines_list (store_t *self, const char *node, size_t max, store_deadline_fn *fn,
                          void *arg);

/* Receipt trail. status is LIAISON__RECEIPT_STATUS__*; reason and rule may
   be NULL; signature may be NULL. Staged like store_put. */
store_rc_t store_receipt_add (store_t *self, const char *sender, const uint8_t id[16],
                              const char *recipient, int status, const char *reason,
                              const char *rule, int64_t time_ms, const uint8_t *signature,
                              size_t signature_len);

typedef void (store_receipt_fn) (void *arg, const char *recipient, int status,
                                 const char *reason, const char *rule, int64_t time_ms,
                                 const uint8_t *signature, size_t signature_len);

/* Calls fn for every receipt of (sender, id), in the order recorded.
   Returns the number, or -1. */
int store_receipts (store_t *self, const char *sender, const uint8_t id[16],
                    store_receipt_fn *fn, void *arg);

/* 1 if (sender, id) has a receipt of that status from recipient, 0 if
   not, -1 on error. */
int store_has_receipt (store_t *self, const char *sender, const uint8_t id[16],
                       const char *recipient, int status);

/* The whole trail of (sender, id): an ACCEPTED receipt per recipient
   (at the acceptance time), then every receipt recorded, in order.
   Returns the number, 0 when no such message is stored, or -1. */
int store_trail (store_t *self, const char *sender, const uint8_t id[16], store_receipt_fn *fn,
                 void *arg);

/* Removes messages delivered (to every recipient) or expired before
   `before_ms`, and their receipts; *purged gets the number of messages.
   Runs in its own transaction. */
store_rc_t store_purge (store_t *self, int64_t before_ms, int64_t *purged);

/* Passive checkpoint; truncates the WAL when it is past the bound. */
store_rc_t store_checkpoint (store_t *self);

/* Runs checkpoints (as store_checkpoint does) every interval_ms on a
   thread of their own, until store_close; store_checkpoint then does
   nothing. The committing thread never waits for a checkpoint. */
store_rc_t store_checkpointer_start (store_t *self, int interval_ms);

/* How many checkpoints of that thread failed so far, and (into last) the
   latest failure's text. Thread-safe. */
uint64_t store_checkpointer_failures (store_t *self, char *last, size_t len);

/* SQLite's full integrity check on a database file (slow: for
   `liaisond store-check`, not for every start). Writes the findings (or
   "ok") into report; returns 0 if sound, 1 if damaged, -1 if it cannot be
   opened. */
int store_check (const char *path, char *report, size_t len);

#endif
