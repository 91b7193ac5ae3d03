/*  The client library's durable state (internal to libliaison): an OUTBOX
    of messages sent but not yet ACCEPTED by the broker, and an INBOX of
    messages delivered to this node. One SQLite database, <dir>/state.db,
    in a state directory that one process at a time may use (an flock on
    <dir>/lock, held until state_close).

    Group commit: every call that changes something stages it in one write
    transaction, opened on demand; state_commit makes the whole group
    durable with one fsync. Nothing staged survives a crash or a close, so
    acknowledge nothing (to the broker, to the application) before the
    commit that holds it has returned 0.

    Errors: calls return -1 (or a negative count) and state_error says what
    failed and what to do. Two kinds:
    - a refused argument (NULL, empty or oversized): nothing is changed;
      whatever was staged before stays staged (state_pending unchanged);
    - a storage failure (disk full, I/O error, damaged file): everything
      staged since the last commit is rolled back and state_pending becomes
      false. Treat the whole group as never having happened.
    So after a -1 from a call that stages, state_pending says which: true,
    the group is intact; false, it is gone (if there was one).

    Durability: journal_mode=WAL with synchronous=FULL, mmap off, no
    automatic checkpoints; state_commit takes a passive checkpoint when the
    WAL holds more than 1 MiB (small and often: the commit that runs one is
    held up little; measured, it took the p99 latency of durable delivery
    at 5,000 msgs/s from about 30 ms to about 9 ms) or every 1000 commits,
    and truncates the WAL when it holds more than 64 MiB. Stored envelopes carry their
    SHA-256, checked whenever the page functions read them back.

    Not thread-safe: one thread owns a state_t. Never use a state_t in a
    child after fork (SQLite connections do not survive it). A forked child
    inherits the lock's descriptor, so the lock is held until both parent
    and child have closed it (the descriptor is O_CLOEXEC: exec drops it). */
#ifndef LIAISON_STATE_H
#define LIAISON_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATE_SCHEMA_VERSION 2
#define STATE_ENVELOPE_MAX (64u * 1024 * 1024) /* bytes */
#define STATE_SENDER_MAX 64                    /* characters of a sender node id */

typedef struct state state_t;

/* Opens the state directory dir: creates it (mode 0700; its parent must
   exist) if absent, takes its lock, opens or creates state.db (mode 0600)
   and migrates it to STATE_SCHEMA_VERSION. Returns NULL and writes why
   into err (if err is not NULL and errlen > 0) when: dir is not a
   directory or cannot be created; another process (or another state_open
   in this one) holds it ("state directory DIR is in use by another
   process (one process per state directory)"); state.db is not a Liaison
   client state database or has a newer schema than this library; SQLite
   cannot be set up as required. The caller owns the result. */
state_t *state_open (const char *dir, char *err, size_t errlen);

/* Rolls back anything staged and not committed (it was never
   acknowledged), closes the database, releases the lock. NULL-safe, safe
   twice; sets *self_p to NULL. Never call it from a page callback. */
void state_close (state_t **self_p);

/* The last error's text ("no error" before any); borrowed, valid until the
   next call on self. Never NULL (also for self NULL). */
const char *state_error (const state_t *self);

/* Makes everything staged since the last commit durable, in one
   transaction (one fsync; none when nothing is staged). 0, or -1 after
   which everything staged is rolled back: acknowledge none of it. May
   take a checkpoint afterwards (its failure is not the commit's: it is
   retried at the next commit). Refused (-1, group kept) from inside a page
   callback. */
int state_commit (state_t *self);

/* True if a group transaction is open (something staged, not committed). */
bool state_pending (const state_t *self);

/* Binds the directory to a node: the first call records node_id
   (staged), later ones compare. 0 if it is this node's, 1 if another
   node's (state_error says whose), -1 on error. Messages of one node must
   never be resent under another's certificate. */
int state_identity (state_t *self, const char *node_id);

/* ---- Outbox: messages sent, until the broker ACCEPTS them. ---- */

/* Stages a message sent: its packed envelope (len <= STATE_ENVELOPE_MAX;
   copied, the caller keeps its buffer) under its 16-byte id. A duplicate
   id changes nothing (the first envelope and position stay) and returns 0.
   0 or -1. */
int state_outbox_put (state_t *self, const uint8_t id[16], const uint8_t *envelope, size_t len,
                      int64_t now_ms);

/* Stages the removal of message id (the broker ACCEPTED it). 0, also when
   it is not in the outbox; -1 on error. */
int state_outbox_done (state_t *self, const uint8_t id[16]);

/* Messages in the outbox (staged changes included), or -1. */
int64_t state_outbox_count (state_t *self);

/* A page callback: pos is the entry's position (strictly increasing in
   insertion order, never reused); id, envelope and sender are borrowed,
   valid only during the call. Return 0 to go on, nonzero to stop. */
typedef int (state_outbox_fn) (void *arg, uint64_t pos, const uint8_t id[16],
                               const uint8_t *envelope, size_t len);

/* Calls fn (may be NULL: entries are only counted) for up to max outbox
   entries with a position > *after, in insertion order, and sets *after to
   the position of each entry visited. Start with *after = 0; a return
   below max means the end was reached. Staged changes are seen.

   Returns the number visited: when fn returns nonzero, the entry it
   returned that for counts as visited, *after is its position, and the
   call returns at once (to see that entry again, set *after = pos - 1).
   Returns -1 on a storage failure or when an envelope fails its SHA-256
   check: the damaged entry is never handed to fn; the entries before it
   were, and *after is past the damaged one too, so the caller may log
   state_error and go on with the next page.

   fn may stage changes through self (state_outbox_done, for one); it must
   not call state_commit, state_purge, a page function or state_close
   (those are refused, but state_close cannot be). One short read of at
   most max rows: nothing is loaded beyond the row being visited. */
int state_outbox_page (state_t *self, uint64_t *after, size_t max, state_outbox_fn *fn, void *arg);

/* ---- Inbox: messages delivered to this node. ---- */

/* Stages a message delivered by sender (a node id, 1 to
   STATE_SENDER_MAX characters) with its 16-byte id and packed envelope
   (copied). Returns 1 if it is new (hand it to the application after the
   commit, and acknowledge it to the broker after the commit); 0 if
   (sender, id) is known already (delivered before, whether acknowledged
   by the application or not, until purged): acknowledge it to the broker
   again, but do not hand it to the application again; -1 on error. */
int state_inbox_put (state_t *self, const char *sender, const uint8_t id[16],
                     const uint8_t *envelope, size_t len, int64_t now_ms);

/* Stages the application's acknowledgement of (sender, id): it is no
   longer handed out, its envelope bytes are dropped, its id is kept (so a
   redelivery is recognised) until state_purge. 0 (also when acknowledged
   already), 1 if (sender, id) is unknown (LIAISON_ENOTFOUND for the
   application), -1 on error. */
int state_inbox_ack (state_t *self, const char *sender, const uint8_t id[16], int64_t now_ms);

/* Stages that (sender, id) was read (the first time counts). 0, 1 if
   unknown, -1 on error. */
int state_inbox_read (state_t *self, const char *sender, const uint8_t id[16], int64_t now_ms);

/* 1 if (sender, id) was recorded as read, 0 if known and not read, 2 if
   unknown (never delivered, or purged), -1 on error. */
int state_inbox_is_read (state_t *self, const char *sender, const uint8_t id[16]);

/* Inbox messages not acknowledged by the application (staged changes
   included), or -1. */
int64_t state_inbox_unacked (state_t *self);

/* A page callback: see state_outbox_fn. */
typedef int (state_inbox_fn) (void *arg, uint64_t pos, const char *sender, const uint8_t id[16],
                              const uint8_t *envelope, size_t len);

/* Visits the messages not acknowledged by the application, in arrival
   order, exactly as state_outbox_page does (same return values, cursor,
   SHA-256 check and rules for fn; fn may call state_inbox_ack). */
int state_inbox_page (state_t *self, uint64_t *after, size_t max, state_inbox_fn *fn, void *arg);

/* Forgets the ids of inbox messages acknowledged before before_ms (a
   redelivery of one of them would then be new again: purge only what the
   broker can no longer resend). Runs and commits in its own transaction;
   refused (-1, nothing done) while a group is staged: call state_commit
   first. 0 or -1; *purged (may be NULL) gets the number forgotten. */
int state_purge (state_t *self, int64_t before_ms, int64_t *purged);

#endif
