/*  The broker's durable store on SQLite; see store.h.

    One connection does everything but checkpoints; a second one only
    checkpoints, so a passive checkpoint never needs the writer's locks.
    Every statement on the hot path is prepared once at open. A group is a
    write transaction opened by the first change after a commit; any SQLite
    failure rolls the whole group back (nothing in it was acknowledged).   */
#include "store.h"

#include "sqldb.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_APPLICATION_ID 0x4C53524B // "LSRK" in the file header
#define BUSY_TIMEOUT_MS 5000
#define DEFAULT_WAL_LIMIT (64ull * 1024 * 1024)
#define CACHE_KIB 8192 // page cache per connection; mmap stays off
#define SENDER_MAX 33  // store_entry_t.sender holds 33 characters

/* Migrations: script i takes the schema from version i to i + 1, in one
   transaction that also sets user_version. Never edit a shipped script;
   append a new one and raise STORE_SCHEMA_VERSION. */
static const char *s_migrations[STORE_SCHEMA_VERSION] = {
    // 1: messages, mailboxes (one row per recipient), receipt trails.
    "CREATE TABLE messages ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT," // never reused, even after a purge
    "  sender TEXT NOT NULL,"
    "  id BLOB NOT NULL CHECK (length (id) = 16),"
    "  digest BLOB NOT NULL CHECK (length (digest) = 32),"
    "  envelope BLOB NOT NULL,"
    "  envelope_sha256 BLOB NOT NULL CHECK (length (envelope_sha256) = 32),"
    "  type INTEGER NOT NULL,"
    "  priority INTEGER NOT NULL,"
    "  accepted_ms INTEGER NOT NULL,"
    "  deadline_ms INTEGER NOT NULL DEFAULT 0,"
    "  expires_ms INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (sender, id));"
    "CREATE TABLE mailbox ("
    "  seq INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,"
    "  node TEXT NOT NULL,"
    "  priority INTEGER NOT NULL," // copied from messages for the index
    "  delivered_ms INTEGER,"      // NULL until the node has it durably
    "  PRIMARY KEY (seq, node)) WITHOUT ROWID;"
    "CREATE INDEX mailbox_pending ON mailbox (node, priority DESC, seq)"
    "  WHERE delivered_ms IS NULL;"
    "CREATE TABLE receipts ("
    "  rid INTEGER PRIMARY KEY,"
    "  seq INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,"
    "  recipient TEXT NOT NULL,"
    "  status INTEGER NOT NULL,"
    "  reason TEXT,"
    "  rule TEXT,"
    "  time_ms INTEGER NOT NULL,"
    "  signature BLOB);"
    "CREATE INDEX receipts_trail ON receipts (seq);",

    // 2: purge by index instead of scanning every message: done_ms is when
    // the last recipient took delivery (NULL while any has not).
    "ALTER TABLE messages ADD COLUMN done_ms INTEGER;"
    "UPDATE messages SET done_ms ="
    "  (SELECT max (delivered_ms) FROM mailbox WHERE mailbox.seq = messages.seq)"
    "  WHERE NOT EXISTS (SELECT 1 FROM mailbox"
    "                    WHERE mailbox.seq = messages.seq AND delivered_ms IS NULL);"
    "CREATE INDEX messages_done ON messages (done_ms) WHERE done_ms IS NOT NULL;"
    "CREATE INDEX messages_expires ON messages (expires_ms) WHERE expires_ms > 0;",

    // 3: legal clocks, one per (request, recipient); a message with a clock
    // still running is never purged.
    "CREATE TABLE deadlines ("
    "  seq INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,"
    "  recipient TEXT NOT NULL,"
    "  sender TEXT NOT NULL,"
    "  id BLOB NOT NULL,"
    "  due_ms INTEGER NOT NULL,"
    "  remind_ms INTEGER NOT NULL,"
    "  state INTEGER NOT NULL DEFAULT 1," // 1 open, 2 reminded, 3 missed, 4 answered
    "  answered_ms INTEGER,"
    "  PRIMARY KEY (seq, recipient)) WITHOUT ROWID;"
    "CREATE INDEX deadlines_remind ON deadlines (remind_ms) WHERE state = 1;"
    "CREATE INDEX deadlines_due ON deadlines (due_ms) WHERE state IN (1, 2);"
    "CREATE INDEX deadlines_request ON deadlines (id, recipient);"
    "CREATE INDEX deadlines_sender ON deadlines (sender, due_ms);"
    "CREATE INDEX deadlines_recipient ON deadlines (recipient, due_ms);",

    // 4: the expiry scan sees only messages some recipient still waits for,
    // not every message with a time to live kept for the retention period.
    "CREATE INDEX messages_ttl_pending ON messages (expires_ms)"
    "  WHERE expires_ms > 0 AND done_ms IS NULL;",
};

// The cached statements, prepared once at open.
enum {
    Q_BEGIN_WRITE,
    Q_BEGIN_READ,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_FIND,
    Q_SIZE,
    Q_INSERT_MESSAGE,
    Q_INSERT_MAILBOX,
    Q_PAGE_AT,
    Q_PAGE_BELOW,
    Q_COUNT,
    Q_DELIVER,
    Q_DONE,
    Q_RECEIPT_ADD,
    Q_RECEIPTS,
    Q_PURGE,
    Q_SCAN,
    Q_MAILBOX_ROW,
    Q_EXPIRED,
    Q_LIST,
    Q_LIST_BELOW,
    Q_FETCH,
    Q_DEADLINE_ADD,
    Q_DEADLINE_ANSWER,
    Q_DEADLINE_REMIND,
    Q_DEADLINE_MISSED,
    Q_DEADLINE_SET,
    Q_DEADLINE_LIST,
    Q_ACCEPTED,
    Q_HAS_RECEIPT,
    Q_N
};

#define PAGE_COLUMNS                                                                               \
    "SELECT b.seq, m.id, m.sender, b.priority, m.accepted_ms, m.envelope, m.envelope_sha256"       \
    " FROM mailbox AS b CROSS JOIN messages AS m ON m.seq = b.seq"                                 \
    " WHERE b.node = ?1 AND b.delivered_ms IS NULL "

static const char *s_sql[Q_N] = {
    [Q_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [Q_BEGIN_READ] = "BEGIN",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_FIND] = "SELECT seq, digest, accepted_ms FROM messages WHERE sender = ?1 AND id = ?2",
    [Q_SIZE] = "SELECT p.page_count - f.freelist_count"
               " FROM pragma_page_count () AS p, pragma_freelist_count () AS f",
    [Q_INSERT_MESSAGE] = "INSERT INTO messages (sender, id, digest, envelope, envelope_sha256,"
                         " type, priority, accepted_ms, deadline_ms, expires_ms)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [Q_INSERT_MAILBOX] = "INSERT OR IGNORE INTO mailbox (seq, node, priority) VALUES (?1, ?2, ?3)",
    // Keyset pagination in two index range scans: the rest of the cursor's
    // priority, then every lower priority. (One OR'd condition would make
    // SQLite walk the node's mailbox from its start on every page.)
    [Q_PAGE_AT] = PAGE_COLUMNS "AND b.priority = ?2 AND b.seq > ?3 ORDER BY b.seq LIMIT ?4",
    [Q_PAGE_BELOW] = PAGE_COLUMNS "AND b.priority < ?2 ORDER BY b.priority DESC, b.seq LIMIT ?3",
    [Q_COUNT] = "SELECT count (*) FROM mailbox WHERE node = ?1 AND delivered_ms IS NULL",
    [Q_DELIVER] = "UPDATE mailbox SET delivered_ms = ?3"
                  " WHERE seq = ?1 AND node = ?2 AND delivered_ms IS NULL",
    [Q_DONE] = "UPDATE messages SET done_ms = ?2 WHERE seq = ?1 AND NOT EXISTS"
               " (SELECT 1 FROM mailbox WHERE seq = ?1 AND delivered_ms IS NULL)",
    [Q_RECEIPT_ADD] = "INSERT INTO receipts (seq, recipient, status, reason, rule, time_ms,"
                      " signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [Q_RECEIPTS] = "SELECT recipient, status, reason, rule, time_ms, signature FROM receipts"
                   " WHERE seq = ?1 ORDER BY rid",
    [Q_PURGE] = "DELETE FROM messages WHERE (done_ms < ?1 OR (expires_ms > 0 AND expires_ms < ?1))"
                " AND NOT EXISTS (SELECT 1 FROM deadlines AS d"
                "                 WHERE d.seq = messages.seq AND d.state IN (1, 2))",
    [Q_SCAN] = "SELECT b.seq, m.id, m.sender, m.envelope, m.envelope_sha256, m.accepted_ms"
               " FROM mailbox AS b CROSS JOIN messages AS m ON m.seq = b.seq"
               " WHERE b.node = ?1 AND b.delivered_ms IS NULL AND b.priority = ?2 AND b.seq > ?3"
               " ORDER BY b.seq LIMIT ?4",
    [Q_MAILBOX_ROW] = "SELECT delivered_ms FROM mailbox WHERE seq = ?1 AND node = ?2",
    [Q_EXPIRED] = "SELECT b.seq, b.node, m.sender, m.id, m.expires_ms"
                  " FROM messages AS m CROSS JOIN mailbox AS b ON b.seq = m.seq"
                  " WHERE m.expires_ms > 0 AND m.done_ms IS NULL AND m.expires_ms <= ?1"
                  " AND b.delivered_ms IS NULL"
                  " LIMIT ?2",
    // Delivery order, on the index the delivery scan uses (no sort, however
    // big the backlog): the rest of the cursor's priority, then the lower.
#define LIST_COLUMNS                                                                               \
    "SELECT b.seq, m.id, m.sender, m.type, b.priority, m.accepted_ms, m.deadline_ms,"              \
    " length (m.envelope) FROM mailbox AS b CROSS JOIN messages AS m ON m.seq = b.seq"             \
    " WHERE b.node = ?1 AND b.delivered_ms IS NULL "
    [Q_LIST] = LIST_COLUMNS "AND b.priority = ?2 AND b.seq > ?3 ORDER BY b.seq LIMIT ?4",
    [Q_LIST_BELOW] = LIST_COLUMNS "AND b.priority < ?2 ORDER BY b.priority DESC, b.seq LIMIT ?3",
    [Q_FETCH] = "SELECT m.envelope, m.envelope_sha256 FROM messages AS m"
                " CROSS JOIN mailbox AS b ON b.seq = m.seq"
                " WHERE m.sender = ?1 AND m.id = ?2 AND b.node = ?3",
    [Q_DEADLINE_ADD] = "INSERT OR IGNORE INTO deadlines (seq, recipient, sender, id, due_ms,"
                       " remind_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_DEADLINE_ANSWER] = "UPDATE deadlines SET answered_ms = ?4,"
                          " state = CASE WHEN state IN (1, 2) THEN 4 ELSE state END"
                          " WHERE id = ?1 AND recipient = ?2 AND sender = ?3"
                          " AND answered_ms IS NULL",
    [Q_DEADLINE_REMIND] = "SELECT seq, recipient, sender, id, due_ms, 2 FROM deadlines"
                          " WHERE state = 1 AND remind_ms <= ?1 LIMIT ?2",
    [Q_DEADLINE_MISSED] = "SELECT seq, recipient, sender, id, due_ms, 3 FROM deadlines"
                          " WHERE state IN (1, 2) AND due_ms <= ?1 LIMIT ?2",
    [Q_DEADLINE_SET] = "UPDATE deadlines SET state = ?3 WHERE seq = ?1 AND recipient = ?2",
    [Q_HAS_RECEIPT] = "SELECT 1 FROM receipts WHERE seq = ?1 AND recipient = ?2 AND status = ?3",
    [Q_ACCEPTED] = "SELECT b.node, m.accepted_ms FROM mailbox AS b CROSS JOIN messages AS m"
                   " ON m.seq = b.seq WHERE b.seq = ?1 ORDER BY b.node",
    [Q_DEADLINE_LIST] = "SELECT id, sender, recipient, due_ms, state, answered_ms FROM deadlines"
                        " WHERE (sender = ?1 OR recipient = ?1) AND state IN (1, 2, 3)"
                        " ORDER BY due_ms LIMIT ?2",
};

struct store {
    sqlite3 *db;
    sqlite3 *ckpt; // second connection: checkpoints only
    sqlite3_stmt *q[Q_N];
    char *path;
    char *wal_path;     // path + "-wal", measured by store_checkpoint
    uint64_t max_bytes; // 0: no bound
    uint64_t wal_limit;
    int64_t page_size;
    bool pending;       // a group transaction is open
    size_t staged;      // changes staged in it, for error messages
    bool size_known;    // used_bytes was read since the last commit or rollback
    int64_t used_bytes; // pages in use times page size, plus estimates for puts since
    uint64_t last_seq;  // seq of the last message stored
    // The checkpointer thread (store_checkpointer_start): it alone uses
    // ckpt then; the fields below are shared with it under `mu`.
    pthread_t ckpt_thread;
    bool ckpt_running, ckpt_stop;
    int ckpt_interval_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t ckpt_failures;
    char ckpt_err[512];
    EVP_MD *sha256;
    EVP_MD_CTX *md;
    char err[768];
};

static void
s_err (store_t *self, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (self->err, sizeof self->err, fmt, ap);
    va_end (ap);
}

// What an operator should do about an SQLite failure.
static const char *
s_advice (int rc)
{
    switch (sqldb_trouble (rc)) {
        case SQLDB_FULL:
            return "the disk is full: free space on it";
        case SQLDB_BUSY:
            return "another process holds the store locked: stop it";
        case SQLDB_DAMAGED:
            return "the store is damaged: run liaisond store-check and restore it from a backup";
        case SQLDB_IO:
            return "an I/O error: check the disk and the kernel log";
        case SQLDB_ACCESS:
            return "check the state directory's and the file's owner and permissions";
        case SQLDB_NOMEM:
            return "out of memory";
        default:
            return "see SQLite's message";
    }
}

// Describes the failure of `what` on the main connection into self->err.
static void
s_sql_err (store_t *self, int rc, const char *what)
{
    s_err (self, "store %s: %s failed: %s (%s); %s", self->path, what, sqlite3_errmsg (self->db),
           sqlite3_errstr (rc), s_advice (rc));
}

/* After an SQLite failure: describes it, rolls back the open group (SQLite
   may have done so already) and says so; STORE_FULL for a full disk. */
static store_rc_t
s_fail (store_t *self, int rc, const char *what)
{
    s_sql_err (self, rc, what);
    sqldb_abandon_group (self->db, self->q[Q_ROLLBACK], &self->pending, &self->staged, self->err,
                         sizeof self->err);
    self->size_known = false;
    return sqldb_trouble (rc) == SQLDB_FULL ? STORE_FULL : STORE_ERROR;
}

// Opens the group transaction if none is open; 0 or -1.
static int
s_begin_group (store_t *self)
{
    if (self->pending)
        return 0;
    int rc = sqldb_exec (self->q[Q_BEGIN_WRITE]);
    if (rc != SQLITE_DONE) {
        s_fail (self, rc, "BEGIN IMMEDIATE");
        return -1;
    }
    self->pending = true;
    self->staged = 0;
    return 0;
}

// Opens a read transaction for a multi-statement read unless a group is open.
static int
s_begin_read (store_t *self, bool *opened)
{
    *opened = false;
    if (self->pending)
        return 0;
    int rc = sqldb_exec (self->q[Q_BEGIN_READ]);
    if (rc != SQLITE_DONE) {
        s_fail (self, rc, "BEGIN");
        return -1;
    }
    *opened = true;
    return 0;
}

static void
s_end_read (store_t *self, bool opened)
{
    if (opened && !sqlite3_get_autocommit (self->db))
        sqldb_exec (self->q[Q_COMMIT]);
}

// SHA-256 with the store's OpenSSL context; 0 or -1.
static int
s_sha256 (store_t *self, const void *data, size_t len, uint8_t out[32])
{
    return sqldb_sha256 (self->md, self->sha256, data, len, out);
}

/* Creates the file with mode 0600 if it does not exist (SQLite would use
   0644 less the umask; its -wal and -shm files copy the database's mode),
   and refuses a non-empty file that does not carry SQLite's header. */
static int
s_precheck_file (const char *path, char *err, size_t errlen)
{
    int fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        int rc = fchmod (fd, 0600);
        close (fd);
        if (rc == 0)
            return 0;
        snprintf (err, errlen, "store %s: cannot set mode 0600: %s", path, strerror (errno));
        return -1;
    }
    if (errno != EEXIST) {
        snprintf (err, errlen,
                  "store %s: cannot create: %s; create the state directory and give the broker "
                  "write access to it",
                  path, strerror (errno));
        return -1;
    }
    if (access (path, R_OK | W_OK) != 0) {
        snprintf (err, errlen,
                  "store %s: not readable and writable: %s; check the file's owner and "
                  "permissions",
                  path, strerror (errno));
        return -1;
    }
    fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf (err, errlen, "store %s: cannot open: %s; check the file's owner and permissions",
                  path, strerror (errno));
        return -1;
    }
    char header[16];
    ssize_t n = read (fd, header, sizeof header);
    close (fd);
    if (n < 0) {
        snprintf (err, errlen, "store %s: cannot read: %s", path, strerror (errno));
        return -1;
    }
    // An empty file is a new store (SQLite itself may have left it empty).
    if (n > 0 && (n < (ssize_t) sizeof header || memcmp (header, "SQLite format 3", 16) != 0)) {
        snprintf (err, errlen,
                  "store %s: not a SQLite database, so not a Liaison store; refusing to touch it: "
                  "point state_dir elsewhere or move the file away",
                  path);
        return -1;
    }
    return 0;
}

/* Identifies the file: a new (empty) database, or a Liaison store whose
   schema this program knows. 0 or -1 with err set; *version gets the schema. */
static int
s_identify (sqlite3 *db, const char *path, int64_t *version, char *err, size_t errlen)
{
    int64_t app_id = 0, objects = 0;
    switch (sqldb_identify (db, STORE_APPLICATION_ID, STORE_SCHEMA_VERSION, &app_id, version,
                            &objects)) {
        case SQLDB_FILE_NEW:
        case SQLDB_FILE_OURS:
            return 0;
        case SQLDB_FILE_UNREADABLE: {
            int rc = sqlite3_errcode (db);
            snprintf (err, errlen, "store %s: cannot read the header: %s (%s); %s", path,
                      sqlite3_errmsg (db), sqlite3_errstr (rc),
                      sqldb_trouble (rc) == SQLDB_DAMAGED
                          ? "the header is damaged or this is not a Liaison store: run liaisond "
                            "store-check, restore a backup or point state_dir elsewhere"
                          : s_advice (rc));
            return -1;
        }
        case SQLDB_FILE_FOREIGN:
            snprintf (err, errlen,
                      "store %s: not a Liaison store (application_id 0x%08" PRIx64
                      ", user_version %" PRId64 ", %" PRId64
                      " schema objects); refusing to touch it: point state_dir elsewhere",
                      path, (uint64_t) (uint32_t) app_id, *version, objects);
            return -1;
        case SQLDB_FILE_NEWER:
            snprintf (err, errlen,
                      "store %s: store schema %" PRId64
                      " is newer than this liaisond (%d); upgrade liaisond",
                      path, *version, STORE_SCHEMA_VERSION);
            return -1;
        case SQLDB_FILE_DAMAGED:
            snprintf (err, errlen,
                      "store %s: damaged header (schema version %" PRId64
                      "); run liaisond store-check",
                      path, *version);
            return -1;
    }
    return -1;
}

// Applies the migrations after `version`, each in its own transaction.
static int
s_migrate (sqlite3 *db, const char *path, int64_t version, char *err, size_t errlen)
{
    int64_t v = version;
    char why[512];
    int rc = sqldb_migrate (db, STORE_APPLICATION_ID, s_migrations, version, STORE_SCHEMA_VERSION,
                            &v, why, sizeof why);
    if (rc == SQLITE_OK)
        return 0;
    snprintf (err, errlen,
              "store %s: migration from schema %" PRId64 " to %" PRId64
              " failed and is rolled back (the store is still at schema %" PRId64 "): %s; %s",
              path, v, v + 1, v, why, s_advice (rc));
    return -1;
}

// Opens a connection with the settings every connection gets.
static int
s_connect (const char *path, sqlite3 **db, char *err, size_t errlen)
{
    int rc = sqldb_open (path, db);
    if (rc != SQLITE_OK) {
        snprintf (err, errlen, "store %s: cannot open: %s; %s", path,
                  *db ? sqlite3_errmsg (*db) : sqlite3_errstr (rc), s_advice (rc));
        sqlite3_close (*db);
        *db = NULL;
        return -1;
    }
    // Mapped pages would count against the broker's memory; keep them off.
    if (sqlite3_exec (*db, "PRAGMA mmap_size = 0", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf (err, errlen, "store %s: cannot set mmap_size: %s", path, sqlite3_errmsg (*db));
        sqlite3_close (*db);
        *db = NULL;
        return -1;
    }
    return 0;
}

// Sets the durability pragmas and checks that they took.
static int
s_configure (sqlite3 *db, const char *path, char *err, size_t errlen)
{
    char mode[32] = "";
    int64_t sync = -1;
    switch (sqldb_configure (db, CACHE_KIB, mode, sizeof mode, &sync)) {
        case SQLDB_CONFIGURED:
            return 0;
        case SQLDB_NO_WAL:
            snprintf (
                err, errlen,
                "store %s: cannot switch to WAL mode (journal_mode is '%s': %s); put the state "
                "directory on a local file system",
                path, mode, sqlite3_errmsg (db));
            return -1;
        case SQLDB_NO_PRAGMA:
            snprintf (err, errlen,
                      "store %s: cannot set synchronous=FULL, foreign_keys or cache: %s", path,
                      sqlite3_errmsg (db));
            return -1;
    }
    return -1;
}

store_t *
store_open (const store_config_t *cfg, char *err, size_t errlen)
{
    char scratch[8];
    if (!err || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = 0;
    if (!cfg || !cfg->path || !*cfg->path) {
        snprintf (err, errlen, "store: no database path given");
        return NULL;
    }
    store_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "store %s: out of memory", cfg->path);
        return NULL;
    }
    snprintf (self->err, sizeof self->err, "no error");
    pthread_mutex_init (&self->mu, NULL);
    pthread_cond_init (&self->cv, NULL);
    self->max_bytes = cfg->max_bytes;
    self->wal_limit = cfg->wal_limit_bytes ? cfg->wal_limit_bytes : DEFAULT_WAL_LIMIT;
    self->path = strdup (cfg->path);
    size_t plen = strlen (cfg->path);
    self->wal_path = malloc (plen + 5);
    self->sha256 = EVP_MD_fetch (NULL, "SHA256", NULL);
    self->md = EVP_MD_CTX_new ();
    if (!self->path || !self->wal_path || !self->sha256 || !self->md) {
        snprintf (err, errlen, "store %s: out of memory (or OpenSSL has no SHA-256)", cfg->path);
        goto fail;
    }
    memcpy (self->wal_path, cfg->path, plen);
    memcpy (self->wal_path + plen, "-wal", 5);

    if (s_precheck_file (self->path, err, errlen) || s_connect (self->path, &self->db, err, errlen))
        goto fail;
    sqlite3_busy_timeout (self->db, BUSY_TIMEOUT_MS);
    int64_t version = 0;
    if (s_identify (self->db, self->path, &version, err, errlen)
        || s_configure (self->db, self->path, err, errlen)
        || s_migrate (self->db, self->path, version, err, errlen))
        goto fail;
    if (sqldb_query_int (self->db, "PRAGMA page_size", &self->page_size)) {
        snprintf (err, errlen, "store %s: cannot read page_size: %s", self->path,
                  sqlite3_errmsg (self->db));
        goto fail;
    }
    for (int i = 0; i < Q_N; i++) {
        int rc = sqlite3_prepare_v3 (self->db, s_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &self->q[i],
                                     NULL);
        if (rc != SQLITE_OK) {
            snprintf (err, errlen,
                      "store %s: the schema is damaged or incomplete (%s); run liaisond "
                      "store-check",
                      self->path, sqlite3_errmsg (self->db));
            goto fail;
        }
    }
    /* The checkpointer reads once so that it has the WAL open; it has no
       busy handler: a checkpoint that would wait is simply tried later. */
    int64_t ignored = 0;
    if (s_connect (self->path, &self->ckpt, err, errlen))
        goto fail;
    if (sqlite3_exec (self->ckpt, "PRAGMA wal_autocheckpoint = 0", NULL, NULL, NULL) != SQLITE_OK
        || sqldb_query_int (self->ckpt, "SELECT count (*) FROM sqlite_schema", &ignored)) {
        snprintf (err, errlen, "store %s: cannot set up the checkpoint connection: %s", self->path,
                  sqlite3_errmsg (self->ckpt));
        goto fail;
    }
    return self;

fail:
    store_close (&self);
    return NULL;
}

void
store_close (store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_t *self = *self_p;
    if (self->ckpt_running) {
        pthread_mutex_lock (&self->mu);
        self->ckpt_stop = true;
        pthread_cond_signal (&self->cv);
        pthread_mutex_unlock (&self->mu);
        pthread_join (self->ckpt_thread, NULL);
        self->ckpt_running = false;
    }
    // A group still open was never acknowledged: drop it.
    if (self->db && !sqlite3_get_autocommit (self->db))
        sqlite3_exec (self->db, "ROLLBACK", NULL, NULL, NULL);
    for (int i = 0; i < Q_N; i++)
        sqlite3_finalize (self->q[i]);
    // The checkpointer first: the last connection to close checkpoints and removes the WAL.
    sqlite3_close (self->ckpt);
    sqlite3_close (self->db);
    EVP_MD_CTX_free (self->md);
    EVP_MD_free (self->sha256);
    free (self->path);
    free (self->wal_path);
    pthread_mutex_destroy (&self->mu);
    pthread_cond_destroy (&self->cv);
    free (self);
    *self_p = NULL;
}

const char *
store_error (const store_t *self)
{
    return self ? self->err : "store: no store";
}

bool
store_pending (const store_t *self)
{
    return self && self->pending;
}

/* Looks (sender, id) up; 1 found (*seq and, if wanted, digest and time
   set), 0 not found, or an SQLite error code < 0 (negated). */
static int
s_find (store_t *self, const char *sender, const uint8_t *id, int64_t *seq, uint8_t digest[32],
        int64_t *accepted_ms)
{
    sqlite3_stmt *st = self->q[Q_FIND];
    sqlite3_bind_text (st, 1, sender, -1, SQLITE_STATIC);
    sqlite3_bind_blob (st, 2, id, 16, SQLITE_STATIC);
    int rc = sqlite3_step (st);
    int found = 0;
    if (rc == SQLITE_ROW) {
        found = 1;
        *seq = sqlite3_column_int64 (st, 0);
        if (digest) {
            const void *d = sqlite3_column_blob (st, 1);
            memset (digest, 0, 32);
            if (d && sqlite3_column_bytes (st, 1) == 32)
                memcpy (digest, d, 32);
        }
        if (accepted_ms)
            *accepted_ms = sqlite3_column_int64 (st, 2);
    }
    else if (rc != SQLITE_DONE)
        found = -rc;
    sqlite3_reset (st);
    return found;
}

// Bytes in use: pages not on the free list.
static int
s_used_bytes (store_t *self, int64_t *bytes)
{
    sqlite3_stmt *st = self->q[Q_SIZE];
    int rc = sqlite3_step (st);
    if (rc == SQLITE_ROW)
        *bytes = sqlite3_column_int64 (st, 0) * self->page_size;
    sqlite3_reset (st);
    return rc == SQLITE_ROW ? 0 : rc;
}

store_rc_t
store_put (store_t *self, const store_msg_t *m, int64_t *accepted_ms)
{
    if (!self)
        return STORE_ERROR;
    if (!m || !m->id || !m->sender || !m->digest || (!m->envelope && m->envelope_len)
        || !m->recipients || m->n_recipients == 0) {
        s_err (self, "store_put: message without id, sender, digest, envelope or recipients "
                     "(a bug in the caller)");
        return STORE_ERROR;
    }
    size_t sender_len = strlen (m->sender);
    if (sender_len == 0 || sender_len > SENDER_MAX) {
        s_err (self, "store_put: sender node id '%.40s' is empty or longer than %d characters",
               m->sender, SENDER_MAX);
        return STORE_ERROR;
    }
    for (size_t i = 0; i < m->n_recipients; i++)
        if (!m->recipients[i] || !*m->recipients[i]) {
            s_err (self, "store_put: recipient %zu is empty (a bug in the caller)", i);
            return STORE_ERROR;
        }
    char hex[33];
    sqldb_hex (m->id, 16, hex);

    int64_t seq = 0, original_ms = 0;
    uint8_t digest[32];
    int found = s_find (self, m->sender, m->id, &seq, digest, &original_ms);
    if (found < 0)
        return s_fail (self, -found, "looking up (sender, id)");
    if (found) {
        if (memcmp (digest, m->digest, 32) == 0) {
            if (accepted_ms)
                *accepted_ms = original_ms;
            return STORE_DUPLICATE;
        }
        s_err (self,
               "message %s from %s was accepted already with other content (its digest "
               "differs): refuse the resend; a new message needs a new id",
               hex, m->sender);
        return STORE_CONFLICT;
    }
    /* The size is read once per group (reading it costs as much as a put)
       and estimated from there on, generously; whenever the estimate says
       full, the real figure decides. */
    int64_t growth =
        (int64_t) m->envelope_len + m->envelope_len / 8 + 512 + 128 * (int64_t) m->n_recipients;
    if (self->max_bytes) {
        if (!self->size_known || (uint64_t) self->used_bytes + m->envelope_len > self->max_bytes) {
            int rc = s_used_bytes (self, &self->used_bytes);
            if (rc)
                return s_fail (self, rc, "reading the store's size");
            self->size_known = true;
        }
        if ((uint64_t) self->used_bytes + m->envelope_len > self->max_bytes) {
            s_err (self,
                   "store is full: %" PRId64 " bytes of %" PRIu64
                   "; purge or raise limits/store_max_bytes (message %s from %s refused)",
                   self->used_bytes, self->max_bytes, hex, m->sender);
            return STORE_FULL;
        }
    }
    uint8_t sha[32];
    if (s_sha256 (self, m->envelope ? (const void *) m->envelope : "", m->envelope_len, sha)) {
        s_err (self, "store_put: SHA-256 of the envelope failed (OpenSSL)");
        return STORE_ERROR;
    }
    if (s_begin_group (self))
        return STORE_ERROR;

    sqlite3_stmt *st = self->q[Q_INSERT_MESSAGE];
    sqlite3_bind_text (st, 1, m->sender, -1, SQLITE_STATIC);
    sqlite3_bind_blob (st, 2, m->id, 16, SQLITE_STATIC);
    sqlite3_bind_blob (st, 3, m->digest, 32, SQLITE_STATIC);
    sqlite3_bind_blob64 (st, 4, m->envelope ? (const void *) m->envelope : "", m->envelope_len,
                         SQLITE_STATIC);
    sqlite3_bind_blob (st, 5, sha, 32, SQLITE_STATIC);
    sqlite3_bind_int (st, 6, m->type);
    sqlite3_bind_int (st, 7, m->priority);
    sqlite3_bind_int64 (st, 8, m->accepted_ms);
    sqlite3_bind_int64 (st, 9, m->deadline_ms);
    sqlite3_bind_int64 (st, 10, m->expires_ms);
    int rc = sqldb_exec (st);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "storing a message");
    seq = sqlite3_last_insert_rowid (self->db);

    st = self->q[Q_INSERT_MAILBOX];
    for (size_t i = 0; i < m->n_recipients; i++) {
        sqlite3_bind_int64 (st, 1, seq);
        sqlite3_bind_text (st, 2, m->recipients[i], -1, SQLITE_STATIC);
        sqlite3_bind_int (st, 3, m->priority);
        rc = sqldb_exec (st);
        if (rc != SQLITE_DONE)
            return s_fail (self, rc, "adding a message to a mailbox");
        if (m->deadline_ms > 0) {
            sqlite3_stmt *d = self->q[Q_DEADLINE_ADD];
            sqlite3_bind_int64 (d, 1, seq);
            sqlite3_bind_text (d, 2, m->recipients[i], -1, SQLITE_STATIC);
            sqlite3_bind_text (d, 3, m->sender, -1, SQLITE_STATIC);
            sqlite3_bind_blob (d, 4, m->id, 16, SQLITE_STATIC);
            sqlite3_bind_int64 (d, 5, m->deadline_ms);
            sqlite3_bind_int64 (d, 6, m->remind_ms ? m->remind_ms : m->deadline_ms);
            rc = sqldb_exec (d);
            if (rc != SQLITE_DONE)
                return s_fail (self, rc, "starting a deadline clock");
        }
    }
    self->last_seq = (uint64_t) seq;
    self->staged++;
    self->used_bytes += growth;
    return STORE_OK;
}

store_rc_t
store_commit (store_t *self)
{
    if (!self)
        return STORE_ERROR;
    if (!self->pending)
        return STORE_OK;
    int rc = sqldb_exec (self->q[Q_COMMIT]);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "COMMIT");
    self->pending = false;
    self->staged = 0;
    self->size_known = false;
    return STORE_OK;
}

void
store_entry_clear (store_entry_t *e)
{
    if (!e)
        return;
    free (e->envelope);
    e->envelope = NULL;
    e->envelope_len = 0;
}

/* Fills entries from one page statement (already bound) until it ends,
   the page is full or an envelope is damaged; advances the cursor past
   each entry read, the damaged one included. 0, STORE_DAMAGED, or an
   SQLite error code. */
static int
s_fill (store_t *self, sqlite3_stmt *st, const char *node, store_cursor_t *cursor,
        store_entry_t *out, size_t max, size_t *n)
{
    int rc = SQLITE_DONE;
    while (*n < max && (rc = sqlite3_step (st)) == SQLITE_ROW) {
        store_entry_t *e = &out[*n];
        memset (e, 0, sizeof *e);
        e->seq = (uint64_t) sqlite3_column_int64 (st, 0);
        e->priority = sqlite3_column_int (st, 3);
        e->accepted_ms = sqlite3_column_int64 (st, 4);
        const void *id = sqlite3_column_blob (st, 1);
        if (id && sqlite3_column_bytes (st, 1) == 16)
            memcpy (e->id, id, 16);
        const char *sender = (const char *) sqlite3_column_text (st, 2);
        snprintf (e->sender, sizeof e->sender, "%s", sender ? sender : "");
        const uint8_t *env = sqlite3_column_blob (st, 5);
        size_t len = (size_t) sqlite3_column_bytes (st, 5);
        const void *stored = sqlite3_column_blob (st, 6);
        uint8_t sha[32];
        cursor->priority = e->priority;
        cursor->seq = e->seq;
        cursor->started = true;
        if (s_sha256 (self, env ? (const void *) env : "", len, sha)
            || sqlite3_column_bytes (st, 6) != 32 || !stored || memcmp (sha, stored, 32) != 0) {
            char hex[33];
            sqldb_hex (e->id, 16, hex);
            s_err (self,
                   "store %s: message %s from %s (seq %" PRIu64
                   ") in %s's mailbox fails its SHA-256 check: refused, not delivered; the "
                   "store is damaged: run liaisond store-check",
                   self->path, hex, e->sender, e->seq, node);
            sqlite3_reset (st);
            return STORE_DAMAGED;
        }
        e->envelope = malloc (len ? len : 1);
        if (!e->envelope) {
            sqlite3_reset (st);
            return SQLITE_NOMEM;
        }
        if (len)
            memcpy (e->envelope, env, len);
        e->envelope_len = len;
        (*n)++;
    }
    if (*n < max && rc != SQLITE_DONE) {
        sqlite3_reset (st);
        return rc;
    }
    sqlite3_reset (st);
    return 0;
}

store_rc_t
store_mailbox_page (store_t *self, const char *node, store_cursor_t *cursor, store_entry_t *out,
                    size_t max, size_t *n)
{
    if (n)
        *n = 0;
    if (!self)
        return STORE_ERROR;
    if (!node || !cursor || !n || (!out && max)) {
        s_err (self, "store_mailbox_page: no node, cursor or output (a bug in the caller)");
        return STORE_ERROR;
    }
    if (max == 0)
        return STORE_OK;
    bool opened;
    if (s_begin_read (self, &opened))
        return STORE_ERROR;
    int rc = 0;
    if (cursor->started) {
        sqlite3_stmt *st = self->q[Q_PAGE_AT];
        sqlite3_bind_text (st, 1, node, -1, SQLITE_STATIC);
        sqlite3_bind_int (st, 2, cursor->priority);
        sqlite3_bind_int64 (st, 3, (int64_t) cursor->seq);
        sqlite3_bind_int64 (st, 4, (int64_t) max);
        rc = s_fill (self, st, node, cursor, out, max, n);
    }
    if (rc == 0 && *n < max) {
        sqlite3_stmt *st = self->q[Q_PAGE_BELOW];
        sqlite3_bind_text (st, 1, node, -1, SQLITE_STATIC);
        sqlite3_bind_int64 (st, 2, cursor->started ? cursor->priority : INT64_MAX);
        sqlite3_bind_int64 (st, 3, (int64_t) (max - *n));
        rc = s_fill (self, st, node, cursor, out, max, n);
    }
    if (rc == STORE_DAMAGED) {
        s_end_read (self, opened);
        return STORE_DAMAGED; // the entries before the damaged one are good
    }
    if (rc != 0) {
        for (size_t i = 0; i < *n; i++)
            store_entry_clear (&out[i]);
        *n = 0;
        return s_fail (self, rc, "reading a mailbox");
    }
    s_end_read (self, opened);
    return STORE_OK;
}

int64_t
store_mailbox_count (store_t *self, const char *node)
{
    if (!self || !node)
        return -1;
    sqlite3_stmt *st = self->q[Q_COUNT];
    sqlite3_bind_text (st, 1, node, -1, SQLITE_STATIC);
    int rc = sqlite3_step (st);
    int64_t count = rc == SQLITE_ROW ? sqlite3_column_int64 (st, 0) : -1;
    sqlite3_reset (st);
    if (rc != SQLITE_ROW)
        s_fail (self, rc, "counting a mailbox");
    return count;
}

// 1 if message seq has a receipt of that status from recipient, 0, or -1.
static int
s_has_receipt_seq (store_t *self, int64_t seq, const char *recipient, int status)
{
    sqlite3_stmt *st = self->q[Q_HAS_RECEIPT];
    sqlite3_bind_int64 (st, 1, seq);
    sqlite3_bind_text (st, 2, recipient, -1, SQLITE_STATIC);
    sqlite3_bind_int (st, 3, status);
    int rc = sqlite3_step (st);
    sqlite3_reset (st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

store_rc_t
store_delivered (store_t *self, const char *node, const char *sender, const uint8_t id[16],
                 int64_t when_ms, bool *first)
{
    if (first)
        *first = false;
    if (!self)
        return STORE_ERROR;
    if (!node || !sender || !id) {
        s_err (self, "store_delivered: no node, sender or id (a bug in the caller)");
        return STORE_ERROR;
    }
    int64_t seq = 0;
    int found = s_find (self, sender, id, &seq, NULL, NULL);
    if (found < 0)
        return s_fail (self, -found, "looking up (sender, id)");
    if (!found)
        return STORE_NOTFOUND; // purged after delivery, or never stored
    sqlite3_stmt *st = self->q[Q_MAILBOX_ROW];
    sqlite3_bind_int64 (st, 1, seq);
    sqlite3_bind_text (st, 2, node, -1, SQLITE_STATIC);
    int rc = sqlite3_step (st);
    bool open = rc == SQLITE_ROW && sqlite3_column_type (st, 0) == SQLITE_NULL;
    sqlite3_reset (st);
    if (rc == SQLITE_DONE)
        return STORE_NOTFOUND; // not addressed to this node
    if (rc != SQLITE_ROW)
        return s_fail (self, rc, "reading a mailbox entry");
    if (!open) {
        /* Delivered already, or expired by the tick while it was on its way
           to the receiver: then this first acknowledgement is still news
           (the recipient has it), and the caller records DELIVERED after
           the EXPIRED. */
        if (first) {
            int expired = s_has_receipt_seq (self, seq, node, 5 /* EXPIRED */);
            int delivered = s_has_receipt_seq (self, seq, node, 2 /* DELIVERED */);
            if (expired < 0 || delivered < 0)
                return s_fail (self, SQLITE_ERROR, "reading receipts");
            *first = expired == 1 && delivered == 0;
        }
        return STORE_OK;
    }
    if (s_begin_group (self))
        return STORE_ERROR;
    st = self->q[Q_DELIVER];
    sqlite3_bind_int64 (st, 1, seq);
    sqlite3_bind_text (st, 2, node, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (st, 3, when_ms);
    rc = sqldb_exec (st);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "marking a message delivered");
    if (sqlite3_changes (self->db) > 0) {
        // The last recipient's delivery makes the message purgeable.
        st = self->q[Q_DONE];
        sqlite3_bind_int64 (st, 1, seq);
        sqlite3_bind_int64 (st, 2, when_ms);
        rc = sqldb_exec (st);
        if (rc != SQLITE_DONE)
            return s_fail (self, rc, "marking a message done");
        self->staged++;
        if (first)
            *first = true;
    }
    return STORE_OK;
}

store_rc_t
store_receipt_add (store_t *self, const char *sender, const uint8_t id[16], const char *recipient,
                   int status, const char *reason, const char *rule, int64_t time_ms,
                   const uint8_t *signature, size_t signature_len)
{
    if (!self)
        return STORE_ERROR;
    if (!sender || !id || !recipient || (!signature && signature_len)) {
        s_err (self, "store_receipt_add: no sender, id, recipient or signature (a bug in the "
                     "caller)");
        return STORE_ERROR;
    }
    int64_t seq = 0;
    int found = s_find (self, sender, id, &seq, NULL, NULL);
    if (found < 0)
        return s_fail (self, -found, "looking up (sender, id)");
    if (!found) {
        char hex[33];
        sqldb_hex (id, 16, hex);
        s_err (self,
               "store_receipt_add: no message %s from %s in the store (never accepted, or "
               "purged): receipts are kept only for stored messages",
               hex, sender);
        return STORE_ERROR;
    }
    if (s_begin_group (self))
        return STORE_ERROR;
    sqlite3_stmt *st = self->q[Q_RECEIPT_ADD];
    sqlite3_bind_int64 (st, 1, seq);
    sqlite3_bind_text (st, 2, recipient, -1, SQLITE_STATIC);
    sqlite3_bind_int (st, 3, status);
    if (reason)
        sqlite3_bind_text (st, 4, reason, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null (st, 4);
    if (rule)
        sqlite3_bind_text (st, 5, rule, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null (st, 5);
    sqlite3_bind_int64 (st, 6, time_ms);
    if (signature)
        sqlite3_bind_blob64 (st, 7, signature, signature_len, SQLITE_STATIC);
    else
        sqlite3_bind_null (st, 7);
    int rc = sqldb_exec (st);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "storing a receipt");
    self->staged++;
    return STORE_OK;
}

int
store_receipts (store_t *self, const char *sender, const uint8_t id[16], store_receipt_fn *fn,
                void *arg)
{
    if (!self)
        return -1;
    if (!sender || !id) {
        s_err (self, "store_receipts: no sender or id (a bug in the caller)");
        return -1;
    }
    bool opened;
    if (s_begin_read (self, &opened))
        return -1;
    int64_t seq = 0;
    int found = s_find (self, sender, id, &seq, NULL, NULL);
    if (found < 0) {
        s_fail (self, -found, "looking up (sender, id)");
        return -1;
    }
    int count = 0, rc = SQLITE_DONE;
    if (found) {
        sqlite3_stmt *st = self->q[Q_RECEIPTS];
        sqlite3_bind_int64 (st, 1, seq);
        while ((rc = sqlite3_step (st)) == SQLITE_ROW) {
            count++;
            if (fn)
                fn (arg, (const char *) sqlite3_column_text (st, 0), sqlite3_column_int (st, 1),
                    (const char *) sqlite3_column_text (st, 2),
                    (const char *) sqlite3_column_text (st, 3), sqlite3_column_int64 (st, 4),
                    sqlite3_column_blob (st, 5), (size_t) sqlite3_column_bytes (st, 5));
        }
        sqlite3_reset (st);
    }
    if (rc != SQLITE_DONE) {
        s_fail (self, rc, "reading receipts");
        return -1;
    }
    s_end_read (self, opened);
    return count;
}

store_rc_t
store_purge (store_t *self, int64_t before_ms, int64_t *purged)
{
    if (purged)
        *purged = 0;
    if (!self)
        return STORE_ERROR;
    if (self->pending) {
        s_err (self, "store_purge: a group is pending; call store_commit first (a bug in the "
                     "caller)");
        return STORE_ERROR;
    }
    int rc = sqldb_exec (self->q[Q_BEGIN_WRITE]);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "BEGIN IMMEDIATE for a purge");
    sqlite3_stmt *st = self->q[Q_PURGE];
    sqlite3_bind_int64 (st, 1, before_ms);
    rc = sqldb_exec (st);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "purging");
    int64_t n = sqlite3_changes64 (self->db);
    rc = sqldb_exec (self->q[Q_COMMIT]);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "COMMIT of a purge");
    self->size_known = false;
    if (purged)
        *purged = n;
    return STORE_OK;
}

store_rc_t
store_checkpoint (store_t *self)
{
    if (!self)
        return STORE_ERROR;
    if (self->ckpt_running)
        return STORE_OK; // the checkpointer thread owns the connection
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2 (self->ckpt, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        s_err (self, "store %s: passive checkpoint failed: %s; %s", self->path,
               sqlite3_errmsg (self->ckpt), s_advice (rc));
        return STORE_ERROR;
    }
    struct stat st;
    if (stat (self->wal_path, &st) != 0 || (uint64_t) st.st_size <= self->wal_limit)
        return STORE_OK;
    /* Truncating needs the writer's lock: not while our own group is open
       (it would wait for us), and without waiting for anyone else. */
    if (self->pending)
        return STORE_OK;
    rc = sqlite3_wal_checkpoint_v2 (self->ckpt, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &done);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        s_err (self, "store %s: truncating checkpoint failed: %s; %s", self->path,
               sqlite3_errmsg (self->ckpt), s_advice (rc));
        return STORE_ERROR;
    }
    return STORE_OK;
}

// Appends text to the report; keeps it NUL-terminated when it runs out.
static void
s_report (char *report, size_t len, size_t *used, const char *fmt, ...)
{
    if (*used >= len)
        return;
    va_list ap;
    va_start (ap, fmt);
    int n = vsnprintf (report + *used, len - *used, fmt, ap);
    va_end (ap);
    if (n > 0)
        *used = *used + (size_t) n < len ? *used + (size_t) n : len;
}

int
store_check (const char *path, char *report, size_t len)
{
    char scratch[8];
    if (!report || len == 0) {
        report = scratch;
        len = sizeof scratch;
    }
    report[0] = 0;
    size_t used = 0;
    if (!path) {
        s_report (report, len, &used, "store: no path");
        return -1;
    }
    struct stat sb;
    if (stat (path, &sb) != 0) {
        s_report (report, len, &used, "store %s: cannot open: %s", path, strerror (errno));
        return -1;
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2 (path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        s_report (report, len, &used, "store %s: cannot open: %s", path,
                  db ? sqlite3_errmsg (db) : sqlite3_errstr (rc));
        sqlite3_close (db);
        return -1;
    }
    sqlite3_extended_result_codes (db, 1);
    sqlite3_busy_timeout (db, BUSY_TIMEOUT_MS);
    sqlite3_exec (db, "PRAGMA mmap_size = 0", NULL, NULL, NULL);

    int result = 0, problems = 0;
    int64_t app_id = 0;
    sqlite3_stmt *st = NULL;
    if (sqldb_query_int (db, "PRAGMA application_id", &app_id)) {
        rc = sqlite3_errcode (db);
        s_report (report, len, &used, "store %s: cannot read the header: %s", path,
                  sqlite3_errmsg (db));
        result = (rc & 0xff) == SQLITE_CORRUPT ? 1 : -1;
        goto done;
    }
    if (app_id != STORE_APPLICATION_ID) {
        s_report (report, len, &used, "store %s: not a Liaison store (application_id 0x%08x)", path,
                  (unsigned) (uint32_t) app_id);
        result = -1;
        goto done;
    }
    // SQLite's structural check: one row "ok", or one row per problem.
    rc = sqlite3_prepare_v2 (db, "PRAGMA integrity_check (100)", -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step (st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        const char *row = (const char *) sqlite3_column_text (st, 0);
        if (row && strcmp (row, "ok") == 0)
            continue;
        s_report (report, len, &used, "%s%s", problems++ ? "\n" : "", row ? row : "?");
    }
    if (rc != SQLITE_DONE) {
        s_report (report, len, &used, "%sintegrity_check stopped: %s", problems++ ? "\n" : "",
                  sqlite3_errmsg (db));
    }
    sqlite3_finalize (st);
    st = NULL;
    if (problems) {
        result = 1;
        goto done;
    }
    // Every envelope against its SHA-256: damage inside a blob is invisible to SQLite.
    EVP_MD_CTX *md = EVP_MD_CTX_new ();
    rc = md ? sqlite3_prepare_v2 (db,
                                  "SELECT seq, sender, id, envelope, envelope_sha256"
                                  " FROM messages ORDER BY seq",
                                  -1, &st, NULL)
            : SQLITE_NOMEM;
    while (rc == SQLITE_OK && (rc = sqlite3_step (st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        uint8_t sha[32];
        unsigned int n = 0;
        const void *env = sqlite3_column_blob (st, 3);
        size_t env_len = (size_t) sqlite3_column_bytes (st, 3);
        const void *stored = sqlite3_column_blob (st, 4);
        if (EVP_DigestInit_ex (md, EVP_sha256 (), NULL)
            && EVP_DigestUpdate (md, env ? env : "", env_len) && EVP_DigestFinal_ex (md, sha, &n)
            && n == 32 && stored && sqlite3_column_bytes (st, 4) == 32
            && memcmp (sha, stored, 32) == 0)
            continue;
        char hex[33] = "?";
        if (sqlite3_column_bytes (st, 2) == 16)
            sqldb_hex (sqlite3_column_blob (st, 2), 16, hex);
        const char *sender = (const char *) sqlite3_column_text (st, 1);
        s_report (report, len, &used, "%smessage %s from %s (seq %lld) fails its SHA-256 check",
                  problems++ ? "\n" : "", hex, sender ? sender : "?",
                  (long long) sqlite3_column_int64 (st, 0));
    }
    if (rc != SQLITE_DONE)
        s_report (report, len, &used, "%sreading messages stopped: %s", problems++ ? "\n" : "",
                  sqlite3_errmsg (db));
    EVP_MD_CTX_free (md);
    result = problems ? 1 : 0;

done:
    sqlite3_finalize (st);
    sqlite3_close (db);
    if (result == 0)
        snprintf (report, len, "ok");
    return result;
}

uint64_t
store_last_seq (const store_t *self)
{
    return self ? self->last_seq : 0;
}

// Checks an envelope read back against its stored SHA-256; 0 if sound.
static int
s_envelope_sound (store_t *self, sqlite3_stmt *st, int env_col, int sha_col)
{
    const void *env = sqlite3_column_blob (st, env_col);
    size_t len = (size_t) sqlite3_column_bytes (st, env_col);
    const void *stored = sqlite3_column_blob (st, sha_col);
    uint8_t sha[32];
    if (s_sha256 (self, env ? env : "", len, sha) || sqlite3_column_bytes (st, sha_col) != 32
        || !stored || memcmp (sha, stored, 32) != 0)
        return -1;
    return 0;
}

int
store_mailbox_scan (store_t *self, const char *node, int priority, uint64_t after, size_t max,
                    store_scan_fn *fn, void *arg, uint64_t *damaged_seq)
{
    if (!self)
        return STORE_ERROR;
    if (!node || !fn) {
        s_err (self, "store_mailbox_scan: no node or callback (a bug in the caller)");
        return STORE_ERROR;
    }
    sqlite3_stmt *st = self->q[Q_SCAN];
    sqlite3_bind_text (st, 1, node, -1, SQLITE_STATIC);
    sqlite3_bind_int (st, 2, priority);
    sqlite3_bind_int64 (st, 3, (int64_t) after);
    sqlite3_bind_int64 (st, 4, (int64_t) max);
    int taken = 0, rc;
    while ((rc = sqlite3_step (st)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t) sqlite3_column_int64 (st, 0);
        const uint8_t *id = sqlite3_column_blob (st, 1);
        const char *sender = (const char *) sqlite3_column_text (st, 2);
        if (!id || sqlite3_column_bytes (st, 1) != 16 || !sender
            || s_envelope_sound (self, st, 3, 4)) {
            s_err (self,
                   "store %s: message seq %" PRIu64 " in %s's mailbox fails its SHA-256 check: "
                   "refused, not delivered; the store is damaged: run liaisond store-check",
                   self->path, seq, node);
            if (damaged_seq)
                *damaged_seq = seq;
            sqlite3_reset (st);
            return STORE_DAMAGED;
        }
        const uint8_t *env = sqlite3_column_blob (st, 3);
        if (fn (arg, seq, id, sender, env ? env : (const uint8_t *) "",
                (size_t) sqlite3_column_bytes (st, 3)))
            break;
        taken++;
    }
    sqlite3_reset (st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return s_fail (self, rc, "reading a mailbox");
    return taken;
}

int
store_mailbox_list (store_t *self, const char *node, uint64_t after, size_t max, store_list_fn *fn,
                    void *arg)
{
    if (!self)
        return STORE_ERROR;
    if (!node || !fn) {
        s_err (self, "store_mailbox_list: no node or callback (a bug in the caller)");
        return STORE_ERROR;
    }
    // The cursor: 0 to start, else (priority + 1) << 56 | seq of the last
    // entry listed (store_listing_t.cursor).
    int n = 0, rc = SQLITE_DONE;
    int64_t priority = after ? (int64_t) (after >> 56) - 1 : INT64_MAX;
    uint64_t seq = after & ((UINT64_C (1) << 56) - 1);
    for (int pass = after ? 0 : 1; pass < 2 && (size_t) n < max; pass++) {
        sqlite3_stmt *st = self->q[pass == 0 ? Q_LIST : Q_LIST_BELOW];
        sqlite3_bind_text (st, 1, node, -1, SQLITE_STATIC);
        sqlite3_bind_int64 (st, 2, priority);
        if (pass == 0) {
            sqlite3_bind_int64 (st, 3, (int64_t) seq);
            sqlite3_bind_int64 (st, 4, (int64_t) (max - (size_t) n));
        }
        else
            sqlite3_bind_int64 (st, 3, (int64_t) (max - (size_t) n));
        while ((rc = sqlite3_step (st)) == SQLITE_ROW) {
            store_listing_t e = {0};
            e.seq = (uint64_t) sqlite3_column_int64 (st, 0);
            const void *id = sqlite3_column_blob (st, 1);
            if (id && sqlite3_column_bytes (st, 1) == 16)
                memcpy (e.id, id, 16);
            const char *sender = (const char *) sqlite3_column_text (st, 2);
            snprintf (e.sender, sizeof e.sender, "%s", sender ? sender : "");
            e.type = sqlite3_column_int (st, 3);
            e.priority = sqlite3_column_int (st, 4);
            e.accepted_ms = sqlite3_column_int64 (st, 5);
            e.deadline_ms = sqlite3_column_int64 (st, 6);
            e.size = (uint64_t) sqlite3_column_int64 (st, 7);
            e.cursor = (uint64_t) (e.priority + 1) << 56 | (e.seq & ((UINT64_C (1) << 56) - 1));
            fn (arg, &e);
            n++;
        }
        sqlite3_reset (st);
        if (rc != SQLITE_DONE)
            return s_fail (self, rc, "listing a mailbox");
    }
    return n;
}

store_rc_t
store_fetch (store_t *self, const char *node, const char *sender, const uint8_t id[16],
             store_fetch_fn *fn, void *arg)
{
    if (!self)
        return STORE_ERROR;
    if (!node || !sender || !id || !fn) {
        s_err (self, "store_fetch: no node, sender, id or callback (a bug in the caller)");
        return STORE_ERROR;
    }
    sqlite3_stmt *st = self->q[Q_FETCH];
    sqlite3_bind_text (st, 1, sender, -1, SQLITE_STATIC);
    sqlite3_bind_blob (st, 2, id, 16, SQLITE_STATIC);
    sqlite3_bind_text (st, 3, node, -1, SQLITE_STATIC);
    int rc = sqlite3_step (st);
    store_rc_t out = STORE_OK;
    if (rc == SQLITE_ROW) {
        if (s_envelope_sound (self, st, 0, 1)) {
            char hex[33];
            sqldb_hex (id, 16, hex);
            s_err (self,
                   "store %s: message %s from %s fails its SHA-256 check: refused; the store is "
                   "damaged: run liaisond store-check",
                   self->path, hex, sender);
            out = STORE_DAMAGED;
        }
        else {
            const uint8_t *env = sqlite3_column_blob (st, 0);
            fn (arg, env ? env : (const uint8_t *) "", (size_t) sqlite3_column_bytes (st, 0));
        }
    }
    else if (rc == SQLITE_DONE)
        out = STORE_NOTFOUND;
    sqlite3_reset (st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return s_fail (self, rc, "fetching a message");
    return out;
}

int
store_expire (store_t *self, int64_t now_ms, size_t max, store_expired_fn *fn, void *arg)
{
    if (!self)
        return STORE_ERROR;
    /* Collect first, then change: the rows read are the rows updated. */
    struct {
        int64_t seq, expires_ms;
        char node[34], sender[34];
        uint8_t id[16];
    } found[64];
    if (max > sizeof found / sizeof found[0])
        max = sizeof found / sizeof found[0];
    sqlite3_stmt *st = self->q[Q_EXPIRED];
    sqlite3_bind_int64 (st, 1, now_ms);
    sqlite3_bind_int64 (st, 2, (int64_t) max);
    size_t n = 0;
    int rc;
    while (n < max && (rc = sqlite3_step (st)) == SQLITE_ROW) {
        found[n].seq = sqlite3_column_int64 (st, 0);
        snprintf (found[n].node, sizeof found[n].node, "%s",
                  (const char *) sqlite3_column_text (st, 1));
        snprintf (found[n].sender, sizeof found[n].sender, "%s",
                  (const char *) sqlite3_column_text (st, 2));
        const void *id = sqlite3_column_blob (st, 3);
        memset (found[n].id, 0, 16);
        if (id && sqlite3_column_bytes (st, 3) == 16)
            memcpy (found[n].id, id, 16);
        found[n].expires_ms = sqlite3_column_int64 (st, 4);
        n++;
    }
    sqlite3_reset (st);
    if (n < max && rc != SQLITE_DONE)
        return s_fail (self, rc, "looking for expired messages");
    for (size_t i = 0; i < n; i++) {
        if (s_begin_group (self))
            return STORE_ERROR;
        st = self->q[Q_DELIVER];
        sqlite3_bind_int64 (st, 1, found[i].seq);
        sqlite3_bind_text (st, 2, found[i].node, -1, SQLITE_STATIC);
        sqlite3_bind_int64 (st, 3, now_ms);
        rc = sqldb_exec (st);
        if (rc == SQLITE_DONE) {
            st = self->q[Q_DONE];
            sqlite3_bind_int64 (st, 1, found[i].seq);
            sqlite3_bind_int64 (st, 2, now_ms);
            rc = sqldb_exec (st);
        }
        if (rc != SQLITE_DONE)
            return s_fail (self, rc, "expiring a message");
        store_rc_t r = store_receipt_add (self, found[i].sender, found[i].id, found[i].node,
                                          5 /* EXPIRED */, "ttl-expired", NULL, now_ms, NULL, 0);
        if (r != STORE_OK)
            return r;
        if (fn)
            fn (arg, found[i].node, found[i].sender, found[i].id, found[i].expires_ms);
    }
    return (int) n;
}

int
store_deadline_answer (store_t *self, const char *sender, const uint8_t id[16], const char *replier,
                       int64_t now_ms)
{
    if (!self)
        return STORE_ERROR;
    if (!sender || !id || !replier) {
        s_err (self, "store_deadline_answer: no sender, id or replier (a bug in the caller)");
        return STORE_ERROR;
    }
    if (s_begin_group (self))
        return STORE_ERROR;
    sqlite3_stmt *st = self->q[Q_DEADLINE_ANSWER];
    sqlite3_bind_blob (st, 1, id, 16, SQLITE_STATIC);
    sqlite3_bind_text (st, 2, replier, -1, SQLITE_STATIC);
    sqlite3_bind_text (st, 3, sender, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (st, 4, now_ms);
    int rc = sqldb_exec (st);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "stopping a deadline clock");
    int n = sqlite3_changes (self->db);
    self->staged += (size_t) n;
    return n > 0;
}

// Reads the clocks one tick query selects, then moves each to its state.
static int
s_tick (store_t *self, int q, int64_t now_ms, size_t max, store_deadline_fn *fn, void *arg)
{
    struct {
        int64_t seq, due_ms;
        int state;
        char recipient[34], sender[34];
        uint8_t id[16];
    } found[64];
    if (max > sizeof found / sizeof found[0])
        max = sizeof found / sizeof found[0];
    sqlite3_stmt *st = self->q[q];
    sqlite3_bind_int64 (st, 1, now_ms);
    sqlite3_bind_int64 (st, 2, (int64_t) max);
    size_t n = 0;
    int rc;
    while (n < max && (rc = sqlite3_step (st)) == SQLITE_ROW) {
        found[n].seq = sqlite3_column_int64 (st, 0);
        snprintf (found[n].recipient, sizeof found[n].recipient, "%s",
                  (const char *) sqlite3_column_text (st, 1));
        snprintf (found[n].sender, sizeof found[n].sender, "%s",
                  (const char *) sqlite3_column_text (st, 2));
        const void *id = sqlite3_column_blob (st, 3);
        memset (found[n].id, 0, 16);
        if (id && sqlite3_column_bytes (st, 3) == 16)
            memcpy (found[n].id, id, 16);
        found[n].due_ms = sqlite3_column_int64 (st, 4);
        found[n].state = sqlite3_column_int (st, 5);
        n++;
    }
    sqlite3_reset (st);
    if (n < max && rc != SQLITE_DONE)
        return s_fail (self, rc, "reading deadline clocks");
    for (size_t i = 0; i < n; i++) {
        if (s_begin_group (self))
            return STORE_ERROR;
        st = self->q[Q_DEADLINE_SET];
        sqlite3_bind_int64 (st, 1, found[i].seq);
        sqlite3_bind_text (st, 2, found[i].recipient, -1, SQLITE_STATIC);
        sqlite3_bind_int (st, 3, found[i].state);
        rc = sqldb_exec (st);
        if (rc != SQLITE_DONE)
            return s_fail (self, rc, "moving a deadline clock");
        self->staged++;
        if (fn)
            fn (arg, found[i].sender, found[i].id, found[i].recipient, found[i].due_ms,
                found[i].state, 0);
    }
    return (int) n;
}

int
store_deadlines_tick (store_t *self, int64_t now_ms, size_t max, store_deadline_fn *fn, void *arg)
{
    if (!self)
        return STORE_ERROR;
    // Missed first: a clock whose reminder and deadline both passed while
    // the broker was down is reported missed, not reminded.
    int missed = s_tick (self, Q_DEADLINE_MISSED, now_ms, max, fn, arg);
    if (missed < 0)
        return missed;
    int reminded = s_tick (self, Q_DEADLINE_REMIND, now_ms, max, fn, arg);
    if (reminded < 0)
        return reminded;
    return missed + reminded;
}

int
store_deadlines_list (store_t *self, const char *node, size_t max, store_deadline_fn *fn, void *arg)
{
    if (!self)
        return STORE_ERROR;
    if (!node || !fn) {
        s_err (self, "store_deadlines_list: no node or callback (a bug in the caller)");
        return STORE_ERROR;
    }
    sqlite3_stmt *st = self->q[Q_DEADLINE_LIST];
    sqlite3_bind_text (st, 1, node, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (st, 2, (int64_t) max);
    int n = 0, rc;
    while ((rc = sqlite3_step (st)) == SQLITE_ROW) {
        uint8_t id[16] = {0};
        const void *blob = sqlite3_column_blob (st, 0);
        if (blob && sqlite3_column_bytes (st, 0) == 16)
            memcpy (id, blob, 16);
        fn (arg, (const char *) sqlite3_column_text (st, 1), id,
            (const char *) sqlite3_column_text (st, 2), sqlite3_column_int64 (st, 3),
            sqlite3_column_int (st, 4), sqlite3_column_int64 (st, 5));
        n++;
    }
    sqlite3_reset (st);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "listing deadline clocks");
    return n;
}

int
store_trail (store_t *self, const char *sender, const uint8_t id[16], store_receipt_fn *fn,
             void *arg)
{
    if (!self)
        return -1;
    if (!sender || !id) {
        s_err (self, "store_trail: no sender or id (a bug in the caller)");
        return -1;
    }
    int64_t seq = 0;
    int found = s_find (self, sender, id, &seq, NULL, NULL);
    if (found < 0) {
        s_fail (self, -found, "looking up (sender, id)");
        return -1;
    }
    if (!found)
        return 0;
    sqlite3_stmt *st = self->q[Q_ACCEPTED];
    sqlite3_bind_int64 (st, 1, seq);
    int count = 0, rc;
    while ((rc = sqlite3_step (st)) == SQLITE_ROW) {
        count++;
        if (fn)
            fn (arg, (const char *) sqlite3_column_text (st, 0), 1 /* ACCEPTED */, NULL, NULL,
                sqlite3_column_int64 (st, 1), NULL, 0);
    }
    sqlite3_reset (st);
    if (rc != SQLITE_DONE) {
        s_fail (self, rc, "reading a message's recipients");
        return -1;
    }
    int more = store_receipts (self, sender, id, fn, arg);
    return more < 0 ? -1 : count + more;
}

/* The checkpointer: copies committed WAL frames into the database file
   (and fsyncs it) away from the thread that commits, so a checkpoint never
   stalls routing; truncates the WAL once it is past the bound and no
   writer holds the lock (SQLITE_BUSY otherwise: tried again next time). */
static void *
s_checkpointer (void *arg)
{
    store_t *self = arg;
    pthread_mutex_lock (&self->mu);
    while (!self->ckpt_stop) {
        struct timespec until;
        clock_gettime (CLOCK_REALTIME, &until);
        until.tv_sec += self->ckpt_interval_ms / 1000;
        until.tv_nsec += (long) (self->ckpt_interval_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait (&self->cv, &self->mu, &until);
        if (self->ckpt_stop)
            break;
        pthread_mutex_unlock (&self->mu);
        int log = 0, done = 0;
        int rc =
            sqlite3_wal_checkpoint_v2 (self->ckpt, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        const char *what = "passive checkpoint";
        struct stat st;
        if ((rc == SQLITE_OK || rc == SQLITE_BUSY) && stat (self->wal_path, &st) == 0
            && (uint64_t) st.st_size > self->wal_limit) {
            rc = sqlite3_wal_checkpoint_v2 (self->ckpt, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log,
                                            &done);
            what = "truncating checkpoint";
        }
        char msg[512] = "";
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            snprintf (msg, sizeof msg, "store %s: %s failed: %s; %s", self->path, what,
                      sqlite3_errmsg (self->ckpt), s_advice (rc));
        pthread_mutex_lock (&self->mu);
        if (msg[0]) {
            self->ckpt_failures++;
            snprintf (self->ckpt_err, sizeof self->ckpt_err, "%s", msg);
        }
    }
    pthread_mutex_unlock (&self->mu);
    return NULL;
}

store_rc_t
store_checkpointer_start (store_t *self, int interval_ms)
{
    if (!self || self->ckpt_running)
        return STORE_ERROR;
    self->ckpt_interval_ms = interval_ms > 0 ? interval_ms : 1000;
    self->ckpt_stop = false;
    if (pthread_create (&self->ckpt_thread, NULL, s_checkpointer, self)) {
        s_err (self, "store %s: cannot start the checkpoint thread: %s", self->path,
               strerror (errno));
        return STORE_ERROR;
    }
    self->ckpt_running = true;
    return STORE_OK;
}

uint64_t
store_checkpointer_failures (store_t *self, char *last, size_t len)
{
    if (!self)
        return 0;
    pthread_mutex_lock (&self->mu);
    uint64_t n = self->ckpt_failures;
    if (last && len)
        snprintf (last, len, "%s", self->ckpt_err);
    pthread_mutex_unlock (&self->mu);
    return n;
}

int
store_known (store_t *self, const char *sender, const uint8_t id[16])
{
    if (!self || !sender || !id)
        return -1;
    int64_t seq = 0;
    int found = s_find (self, sender, id, &seq, NULL, NULL);
    if (found < 0) {
        s_sql_err (self, -found, "looking up (sender, id)");
        return -1;
    }
    return found;
}

int
store_has_receipt (store_t *self, const char *sender, const uint8_t id[16],
                   const char *recipient, int status)
{
    if (!self || !sender || !id || !recipient)
        return -1;
    int64_t seq = 0;
    int found = s_find (self, sender, id, &seq, NULL, NULL);
    if (found <= 0)
        return found < 0 ? -1 : 0;
    return s_has_receipt_seq (self, seq, recipient, status);
}
