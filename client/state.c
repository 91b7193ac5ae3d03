/*  The client library's durable state on SQLite; see state.h.

    One connection, every statement prepared once at open. A group is a
    write transaction opened by the first change after a commit; any SQLite
    failure rolls the whole group back (nothing in it was acknowledged).
    Positions are AUTOINCREMENT rowids so that a page cursor never misses
    an entry added after the last one was removed (a plain rowid would be
    reused). Checkpoints are ours: a WAL hook replaces SQLite's automatic
    one and tells state_commit how big the WAL has grown.                 */
#include "state.h"

#include "sqldb.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_APPLICATION_ID 0x4C53434C        // "LSCL" in the file header
#define BROKER_APPLICATION_ID 0x4C53524B       // liaisond's store, to say so when refused
#define CACHE_KIB 8192                         // page cache; mmap stays off
#define CHECKPOINT_COMMITS 1000                // passive checkpoint after this many commits
#define CHECKPOINT_BYTES (1ull * 1024 * 1024) // ... or past this much WAL: small and often, so
                                              // the commit that runs one is held up little
#define TRUNCATE_BYTES (64ull * 1024 * 1024)   // truncate the WAL past this

/* Migrations: script i takes the schema from version i to i + 1, in one
   transaction that also sets user_version. Never edit a shipped script;
   append a new one and raise STATE_SCHEMA_VERSION. */
static const char *s_migrations[STATE_SCHEMA_VERSION] = {
    // 1: outbox and inbox.
    "CREATE TABLE outbox ("
    "  pos INTEGER PRIMARY KEY AUTOINCREMENT," // never reused: page cursors rely on it
    "  id BLOB NOT NULL UNIQUE CHECK (length (id) = 16),"
    "  envelope BLOB NOT NULL,"
    "  envelope_sha256 BLOB NOT NULL CHECK (length (envelope_sha256) = 32),"
    "  queued_ms INTEGER NOT NULL);"
    "CREATE TABLE inbox ("
    "  pos INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  sender TEXT NOT NULL,"
    "  id BLOB NOT NULL CHECK (length (id) = 16),"
    "  envelope BLOB,"        // NULL once acknowledged
    "  envelope_sha256 BLOB," // likewise
    "  arrived_ms INTEGER NOT NULL,"
    "  read_ms INTEGER,"  // NULL until read
    "  acked_ms INTEGER," // NULL until the application acknowledged it
    "  UNIQUE (sender, id));"
    "CREATE INDEX inbox_unacked ON inbox (pos) WHERE acked_ms IS NULL;"
    "CREATE INDEX inbox_acked ON inbox (acked_ms) WHERE acked_ms IS NOT NULL;",

    // 2: whose state this is: a state directory serves one node only.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
};

// The cached statements, prepared once at open.
enum {
    Q_BEGIN_WRITE,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_OUT_PUT,
    Q_OUT_DONE,
    Q_OUT_COUNT,
    Q_OUT_PAGE,
    Q_IN_PUT,
    Q_IN_ACK,
    Q_IN_READ,
    Q_IN_IS_READ,
    Q_IN_UNACKED,
    Q_IN_PAGE,
    Q_PURGE,
    Q_META_SET,
    Q_META_GET,
    Q_N
};

static const char *s_sql[Q_N] = {
    [Q_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_OUT_PUT] = "INSERT INTO outbox (id, envelope, envelope_sha256, queued_ms)"
                  " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
    [Q_OUT_DONE] = "DELETE FROM outbox WHERE id = ?1",
    [Q_OUT_COUNT] = "SELECT count (*) FROM outbox",
    [Q_OUT_PAGE] = "SELECT pos, id, envelope, envelope_sha256 FROM outbox"
                   " WHERE pos > ?1 ORDER BY pos LIMIT ?2",
    [Q_IN_PUT] = "INSERT INTO inbox (sender, id, envelope, envelope_sha256, arrived_ms)"
                 " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (sender, id) DO NOTHING",
    // Matches an acknowledged row too (changes() = 1: known), leaving it as it was.
    [Q_IN_ACK] = "UPDATE inbox SET acked_ms = coalesce (acked_ms, ?3), envelope = NULL,"
                 " envelope_sha256 = NULL WHERE sender = ?1 AND id = ?2",
    [Q_IN_READ] = "UPDATE inbox SET read_ms = coalesce (read_ms, ?3)"
                  " WHERE sender = ?1 AND id = ?2",
    [Q_IN_IS_READ] = "SELECT read_ms IS NOT NULL FROM inbox WHERE sender = ?1 AND id = ?2",
    [Q_IN_UNACKED] = "SELECT count (*) FROM inbox WHERE acked_ms IS NULL",
    [Q_IN_PAGE] = "SELECT pos, sender, id, envelope, envelope_sha256 FROM inbox"
                  " WHERE acked_ms IS NULL AND pos > ?1 ORDER BY pos LIMIT ?2",
    [Q_PURGE] = "DELETE FROM inbox WHERE acked_ms < ?1",
    [Q_META_SET] = "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
    [Q_META_GET] = "SELECT value FROM meta WHERE key = ?1",
};

struct state {
    sqlite3 *db;
    sqlite3_stmt *q[Q_N];
    char *dir;
    int lock_fd; // flock'ed <dir>/lock, held until close
    int64_t page_size;
    bool pending;    // a group transaction is open
    size_t staged;   // changes staged in it, for error messages
    int in_page;     // a page callback is running
    unsigned errors; // counts failures, so a page can tell its callback failed
    int commits;     // commits since the last checkpoint
    int wal_pages;   // pages in the WAL after the last commit (from the WAL hook)
    bool ckpt_due;   // the last checkpoint failed: try again at the next commit
    EVP_MD *sha256;
    EVP_MD_CTX *md;
    char err[1024];
};

static void
s_err (state_t *self, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (self->err, sizeof self->err, fmt, ap);
    va_end (ap);
    self->errors++;
}

// What to do about an SQLite failure; dir names the state directory.
static void
s_advice (int rc, const char *dir, char *out, size_t len)
{
    switch (sqldb_trouble (rc)) {
        case SQLDB_FULL:
            snprintf (out, len, "disk full: free space in %s", dir);
            break;
        case SQLDB_BUSY:
            snprintf (out, len, "something else holds %s/state.db locked: stop it", dir);
            break;
        case SQLDB_DAMAGED:
            snprintf (out, len,
                      "%s/state.db is damaged: restore it from a backup, or move the state "
                      "directory away (its unsent messages and delivered ids are then lost)",
                      dir);
            break;
        case SQLDB_IO:
            snprintf (out, len, "an I/O error on %s: check the disk and the kernel log", dir);
            break;
        case SQLDB_ACCESS:
            snprintf (out, len, "check the owner and permissions of %s and the files in it", dir);
            break;
        case SQLDB_NOMEM:
            snprintf (out, len, "out of memory");
            break;
        default:
            snprintf (out, len, "see SQLite's message");
    }
}

/* After an SQLite failure: describes it, rolls back the open group (SQLite
   may have done so already) and says so. Returns -1. */
static int
s_fail (state_t *self, int rc, const char *what)
{
    char advice[512];
    s_advice (rc, self->dir, advice, sizeof advice);
    s_err (self, "state %s: %s failed: %s (%s); %s", self->dir, what, sqlite3_errmsg (self->db),
           sqlite3_errstr (rc), advice);
    sqldb_abandon_group (self->db, self->q[Q_ROLLBACK], &self->pending, &self->staged, self->err,
                         sizeof self->err);
    return -1;
}

// Opens the group transaction if none is open; 0 or -1.
static int
s_begin_group (state_t *self)
{
    if (self->pending)
        return 0;
    int rc = sqldb_exec (self->q[Q_BEGIN_WRITE]);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "BEGIN IMMEDIATE");
    self->pending = true;
    self->staged = 0;
    return 0;
}

// SHA-256 with the state's OpenSSL context; 0 or -1.
static int
s_sha256 (state_t *self, const void *data, size_t len, uint8_t out[32])
{
    return sqldb_sha256 (self->md, self->sha256, data, len, out);
}

// Creates dir (0700) if absent; refuses anything but a directory.
static int
s_make_dir (const char *dir, char *err, size_t errlen)
{
    if (mkdir (dir, 0700) == 0) {
        // The umask may have taken bits away; nobody else should have any.
        if (chmod (dir, 0700) != 0) {
            snprintf (err, errlen, "state directory %s: cannot set mode 0700: %s", dir,
                      strerror (errno));
            return -1;
        }
        return 0;
    }
    int e = errno;
    if (e == ENOENT) {
        snprintf (err, errlen,
                  "state directory %s: cannot create it: its parent directory does not exist; "
                  "create the parent first (only the last component is created)",
                  dir);
        return -1;
    }
    if (e != EEXIST) {
        snprintf (err, errlen,
                  "state directory %s: cannot create it: %s; check the parent directory's owner "
                  "and permissions",
                  dir, strerror (e));
        return -1;
    }
    struct stat sb;
    if (stat (dir, &sb) != 0) {
        snprintf (err, errlen, "state directory %s: cannot examine it: %s", dir, strerror (errno));
        return -1;
    }
    if (!S_ISDIR (sb.st_mode)) {
        snprintf (err, errlen,
                  "state directory %s exists and is not a directory; give the library a "
                  "directory of its own",
                  dir);
        return -1;
    }
    return 0;
}

// Takes the directory's lock: <dir>/lock, flock'ed for as long as we run.
static int
s_lock (const char *dir, int *fd_out, char *err, size_t errlen)
{
    char path[4200];
    if ((size_t) snprintf (path, sizeof path, "%s/lock", dir) >= sizeof path) {
        snprintf (err, errlen, "state directory %.200s...: path too long", dir);
        return -1;
    }
    int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf (err, errlen,
                  "state directory %s: cannot open its lock file %s: %s; check the directory's "
                  "owner and permissions",
                  dir, path, strerror (errno));
        return -1;
    }
    if (flock (fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close (fd);
        if (e == EWOULDBLOCK)
            snprintf (err, errlen,
                      "state directory %s is in use by another process (one process per state "
                      "directory)",
                      dir);
        else
            snprintf (err, errlen, "state directory %s: cannot lock %s: %s", dir, path,
                      strerror (e));
        return -1;
    }
    *fd_out = fd;
    return 0;
}

/* Creates state.db with mode 0600 if it does not exist (SQLite would use
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
        snprintf (err, errlen, "state %s: cannot set mode 0600: %s", path, strerror (errno));
        return -1;
    }
    if (errno != EEXIST) {
        snprintf (err, errlen,
                  "state %s: cannot create: %s; check the state directory's owner and "
                  "permissions",
                  path, strerror (errno));
        return -1;
    }
    fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf (err, errlen, "state %s: cannot open: %s; check the file's owner and permissions",
                  path, strerror (errno));
        return -1;
    }
    char header[16];
    ssize_t n = read (fd, header, sizeof header);
    close (fd);
    if (n < 0) {
        snprintf (err, errlen, "state %s: cannot read: %s; make it a regular file", path,
                  strerror (errno));
        return -1;
    }
    // An empty file is a new database (SQLite itself may have left it empty).
    if (n > 0 && (n < (ssize_t) sizeof header || memcmp (header, "SQLite format 3", 16) != 0)) {
        snprintf (err, errlen,
                  "state %s: not a SQLite database, so not Liaison client state; refusing to "
                  "touch it: move the file away or give the library another state directory",
                  path);
        return -1;
    }
    return 0;
}

/* Identifies the database: new (empty), or Liaison client state whose
   schema this library knows. 0 or -1 with err set; *version gets it. */
static int
s_identify (sqlite3 *db, const char *path, const char *dir, int64_t *version, char *err,
            size_t errlen)
{
    int64_t app_id = 0, objects = 0;
    switch (sqldb_identify (db, STATE_APPLICATION_ID, STATE_SCHEMA_VERSION, &app_id, version,
                            &objects)) {
        case SQLDB_FILE_NEW:
        case SQLDB_FILE_OURS:
            return 0;
        case SQLDB_FILE_UNREADABLE: {
            int rc = sqlite3_errcode (db);
            char advice[512];
            s_advice (rc, dir, advice, sizeof advice);
            snprintf (err, errlen, "state %s: cannot read the header: %s (%s); %s", path,
                      sqlite3_errmsg (db), sqlite3_errstr (rc), advice);
            return -1;
        }
        case SQLDB_FILE_FOREIGN:
            snprintf (err, errlen,
                      "state %s: not Liaison client state (application_id 0x%08" PRIx64
                      "%s, user_version %" PRId64 ", %" PRId64
                      " schema objects); refusing to touch it: give the library a state directory "
                      "of its own",
                      path, (uint64_t) (uint32_t) app_id,
                      app_id == BROKER_APPLICATION_ID ? ": a liaisond broker store" : "", *version,
                      objects);
            return -1;
        case SQLDB_FILE_NEWER:
            snprintf (
                err, errlen,
                "state %s: schema %" PRId64
                " is newer than this libliaison knows (%d): a newer version wrote it; upgrade "
                "libliaison (downgrading is not supported)",
                path, *version, STATE_SCHEMA_VERSION);
            return -1;
        case SQLDB_FILE_DAMAGED:
            snprintf (err, errlen,
                      "state %s: damaged header (schema version %" PRId64
                      "); restore it from a backup or move the state directory away",
                      path, *version);
            return -1;
    }
    return -1;
}

// Applies the migrations after `version`, each in its own transaction.
static int
s_migrate (sqlite3 *db, const char *path, const char *dir, int64_t version, char *err,
           size_t errlen)
{
    int64_t v = version;
    char why[512], advice[512];
    int rc = sqldb_migrate (db, STATE_APPLICATION_ID, s_migrations, version, STATE_SCHEMA_VERSION,
                            &v, why, sizeof why);
    if (rc == SQLITE_OK)
        return 0;
    s_advice (rc, dir, advice, sizeof advice);
    snprintf (err, errlen,
              "state %s: migration from schema %" PRId64 " to %" PRId64
              " failed and is rolled back (still at schema %" PRId64 "): %s; %s",
              path, v, v + 1, v, why, advice);
    return -1;
}

// Called by SQLite after each commit: remembers how many pages the WAL holds.
static int
s_wal_hook (void *arg, sqlite3 *db, const char *name, int pages)
{
    ((state_t *) arg)->wal_pages = pages;
    return SQLITE_OK;
}

// Sets the durability pragmas and checks that they took.
static int
s_configure (sqlite3 *db, const char *path, char *err, size_t errlen)
{
    char mode[32] = "";
    int64_t sync = -1, mmap = -1;
    sqldb_config_t rc = sqldb_configure (db, CACHE_KIB, mode, sizeof mode, &sync);
    if (rc == SQLDB_NO_WAL) {
        snprintf (err, errlen,
                  "state %s: cannot switch to WAL mode (journal_mode is '%s': %s); put the state "
                  "directory on a local file system",
                  path, mode, sqlite3_errmsg (db));
        return -1;
    }
    // Mapped pages would count against the application's memory; keep them off.
    if (rc != SQLDB_CONFIGURED || sqldb_query_int (db, "PRAGMA mmap_size = 0", &mmap)) {
        snprintf (err, errlen,
                  "state %s: cannot set synchronous=FULL (it is %" PRId64
                  "), mmap_size, foreign_keys or the cache: %s; this SQLite build does not fit "
                  "libliaison",
                  path, sync, sqlite3_errmsg (db));
        return -1;
    }
    return 0;
}

state_t *
state_open (const char *dir, char *err, size_t errlen)
{
    char scratch[8];
    if (!err || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = 0;
    if (!dir || !*dir) {
        snprintf (err, errlen, "state: no state directory given; configure one");
        return NULL;
    }
    state_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "state %s: out of memory", dir);
        return NULL;
    }
    self->lock_fd = -1;
    snprintf (self->err, sizeof self->err, "no error");
    size_t dlen = strlen (dir);
    self->dir = strdup (dir);
    char *path = malloc (dlen + sizeof "/state.db");
    self->sha256 = EVP_MD_fetch (NULL, "SHA256", NULL);
    self->md = EVP_MD_CTX_new ();
    if (!self->dir || !path || !self->sha256 || !self->md) {
        snprintf (err, errlen, "state %s: out of memory (or OpenSSL has no SHA-256)", dir);
        goto fail;
    }
    memcpy (path, dir, dlen);
    memcpy (path + dlen, "/state.db", sizeof "/state.db");

    if (s_make_dir (dir, err, errlen) || s_lock (dir, &self->lock_fd, err, errlen)
        || s_precheck_file (path, err, errlen))
        goto fail;
    int rc = sqldb_open (path, &self->db);
    if (rc != SQLITE_OK) {
        char advice[512];
        s_advice (rc, dir, advice, sizeof advice);
        snprintf (err, errlen, "state %s: cannot open: %s; %s", path,
                  self->db ? sqlite3_errmsg (self->db) : sqlite3_errstr (rc), advice);
        goto fail;
    }
    // We hold the directory's lock: nobody else can be waited for (busy_timeout stays 0).
    int64_t version = 0;
    if (s_identify (self->db, path, dir, &version, err, errlen)
        || s_configure (self->db, path, err, errlen)
        || s_migrate (self->db, path, dir, version, err, errlen))
        goto fail;
    // Replaces the automatic checkpointer (wal_autocheckpoint = 0 above) with ours.
    sqlite3_wal_hook (self->db, s_wal_hook, self);
    if (sqldb_query_int (self->db, "PRAGMA page_size", &self->page_size)) {
        snprintf (err, errlen, "state %s: cannot read page_size: %s", path,
                  sqlite3_errmsg (self->db));
        goto fail;
    }
    for (int i = 0; i < Q_N; i++) {
        rc = sqlite3_prepare_v3 (self->db, s_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &self->q[i],
                                 NULL);
        if (rc != SQLITE_OK) {
            snprintf (err, errlen,
                      "state %s: the schema is damaged or incomplete (%s); restore it from a "
                      "backup or move the state directory away",
                      path, sqlite3_errmsg (self->db));
            goto fail;
        }
    }
    free (path);
    return self;

fail:
    free (path);
    state_close (&self);
    return NULL;
}

void
state_close (state_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    state_t *self = *self_p;
    // A group still open was never acknowledged: drop it.
    if (self->db && !sqlite3_get_autocommit (self->db))
        sqlite3_exec (self->db, "ROLLBACK", NULL, NULL, NULL);
    for (int i = 0; i < Q_N; i++)
        sqlite3_finalize (self->q[i]);
    // Closing checkpoints and removes the WAL; the lock goes only after that.
    sqlite3_close (self->db);
    if (self->lock_fd >= 0)
        close (self->lock_fd);
    EVP_MD_CTX_free (self->md);
    EVP_MD_free (self->sha256);
    free (self->dir);
    free (self);
    *self_p = NULL;
}

const char *
state_error (const state_t *self)
{
    return self ? self->err : "state: no state (state_open failed or was not called)";
}

bool
state_pending (const state_t *self)
{
    return self && self->pending;
}

// Refuses a call that must not run inside a page callback; -1 if inside.
static int
s_not_in_page (state_t *self, const char *what)
{
    if (!self->in_page)
        return 0;
    s_err (self,
           "%s called from inside a page callback: return from the callback first (a bug "
           "in the caller)",
           what);
    return -1;
}

// Passive checkpoint, or truncating if the WAL is past TRUNCATE_BYTES.
static void
s_checkpoint (state_t *self)
{
    uint64_t wal_bytes = (uint64_t) self->wal_pages * (uint64_t) self->page_size;
    if (!self->ckpt_due && self->commits < CHECKPOINT_COMMITS && wal_bytes <= CHECKPOINT_BYTES)
        return;
    int mode = wal_bytes > TRUNCATE_BYTES ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE;
    int rc = sqlite3_wal_checkpoint_v2 (self->db, NULL, mode, NULL, NULL);
    // The commit is durable either way; a checkpoint that failed is tried again next time.
    self->ckpt_due = rc != SQLITE_OK;
    self->commits = 0;
}

int
state_commit (state_t *self)
{
    if (!self)
        return -1;
    if (s_not_in_page (self, "state_commit"))
        return -1;
    if (!self->pending)
        return 0;
    int rc = sqldb_exec (self->q[Q_COMMIT]);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "COMMIT");
    self->pending = false;
    self->staged = 0;
    self->commits++;
    s_checkpoint (self);
    return 0;
}

// Checks an id argument; 0 or -1 with the error set.
static int
s_check_id (state_t *self, const char *what, const uint8_t *id)
{
    if (id)
        return 0;
    s_err (self, "%s: no message id (a bug in the caller)", what);
    return -1;
}

// Checks a sender argument; its length, or -1 with the error set.
static int
s_check_sender (state_t *self, const char *what, const char *sender)
{
    if (!sender) {
        s_err (self, "%s: no sender (a bug in the caller)", what);
        return -1;
    }
    size_t len = strnlen (sender, STATE_SENDER_MAX + 1);
    if (len == 0 || len > STATE_SENDER_MAX) {
        s_err (self, "%s: sender node id '%.40s%s' is empty or longer than %d characters", what,
               sender, len > 40 ? "..." : "", STATE_SENDER_MAX);
        return -1;
    }
    return (int) len;
}

// Checks an envelope argument; 0 or -1 with the error set.
static int
s_check_envelope (state_t *self, const char *what, const uint8_t *envelope, size_t len)
{
    if (!envelope) {
        s_err (self, "%s: no envelope (a bug in the caller)", what);
        return -1;
    }
    if (len > STATE_ENVELOPE_MAX) {
        s_err (self, "%s: envelope of %zu bytes is larger than %u; refuse the message", what, len,
               STATE_ENVELOPE_MAX);
        return -1;
    }
    return 0;
}

int
state_outbox_put (state_t *self, const uint8_t id[16], const uint8_t *envelope, size_t len,
                  int64_t now_ms)
{
    if (!self)
        return -1;
    if (s_check_id (self, "state_outbox_put", id)
        || s_check_envelope (self, "state_outbox_put", envelope, len))
        return -1;
    uint8_t sha[32];
    if (s_sha256 (self, envelope, len, sha)) {
        s_err (self, "state_outbox_put: SHA-256 of the envelope failed (OpenSSL); nothing stored");
        return -1;
    }
    if (s_begin_group (self))
        return -1;
    sqlite3_stmt *st = self->q[Q_OUT_PUT];
    sqlite3_bind_blob (st, 1, id, 16, SQLITE_STATIC);
    sqlite3_bind_blob64 (st, 2, envelope, len, SQLITE_STATIC);
    sqlite3_bind_blob (st, 3, sha, 32, SQLITE_STATIC);
    sqlite3_bind_int64 (st, 4, now_ms);
    int rc = sqldb_exec (st);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "storing a message in the outbox");
    self->staged += (size_t) sqlite3_changes (self->db);
    return 0;
}

int
state_outbox_done (state_t *self, const uint8_t id[16])
{
    if (!self)
        return -1;
    if (s_check_id (self, "state_outbox_done", id) || s_begin_group (self))
        return -1;
    sqlite3_stmt *st = self->q[Q_OUT_DONE];
    sqlite3_bind_blob (st, 1, id, 16, SQLITE_STATIC);
    int rc = sqldb_exec (st);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "removing a message from the outbox");
    self->staged += (size_t) sqlite3_changes (self->db);
    return 0;
}

// Runs a count statement; the count or -1.
static int64_t
s_count (state_t *self, int q, const char *what)
{
    sqlite3_stmt *st = self->q[q];
    int rc = sqlite3_step (st);
    int64_t count = rc == SQLITE_ROW ? sqlite3_column_int64 (st, 0) : -1;
    sqlite3_reset (st);
    if (rc != SQLITE_ROW)
        s_fail (self, rc, what);
    return count;
}

int64_t
state_outbox_count (state_t *self)
{
    return self ? s_count (self, Q_OUT_COUNT, "counting the outbox") : -1;
}

int64_t
state_inbox_unacked (state_t *self)
{
    return self ? s_count (self, Q_IN_UNACKED, "counting the inbox") : -1;
}

// Checks the envelope in column col against the SHA-256 in column col + 1.
static bool
s_intact (state_t *self, sqlite3_stmt *st, int col, const uint8_t **env, size_t *len)
{
    *env = sqlite3_column_blob (st, col);
    *len = (size_t) sqlite3_column_bytes (st, col);
    const void *stored = sqlite3_column_blob (st, col + 1);
    uint8_t sha[32];
    if (!*env)
        *env = (const uint8_t *) ""; // an empty envelope comes back as NULL
    return stored && sqlite3_column_bytes (st, col + 1) == 32
           && s_sha256 (self, *env, *len, sha) == 0 && memcmp (sha, stored, 32) == 0;
}

// Checks the arguments of a page call and binds them; 0 or -1.
static int
s_page_start (state_t *self, const char *what, const uint64_t *after, sqlite3_stmt *st, size_t max)
{
    if (!after) {
        s_err (self, "%s: no cursor (a bug in the caller)", what);
        return -1;
    }
    if (s_not_in_page (self, what))
        return -1;
    sqlite3_bind_int64 (st, 1, *after > INT64_MAX ? INT64_MAX : (int64_t) *after);
    sqlite3_bind_int64 (st, 2, max > INT64_MAX ? INT64_MAX : (int64_t) max);
    return 0;
}

/* Ends a page: 0 when the statement ended (or fn stopped it), else the
   error. A failure inside fn (a staging call it made) has rolled back and
   described itself already; the statement then fails too, and its own
   message would hide the first. */
static int
s_page_end (state_t *self, sqlite3_stmt *st, int rc, unsigned errors_before, const char *what)
{
    sqlite3_reset (st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        return 0;
    if (self->errors != errors_before)
        return -1;
    return s_fail (self, rc, what);
}

int
state_outbox_page (state_t *self, uint64_t *after, size_t max, state_outbox_fn *fn, void *arg)
{
    if (!self)
        return -1;
    sqlite3_stmt *st = self->q[Q_OUT_PAGE];
    if (s_page_start (self, "state_outbox_page", after, st, max))
        return -1;
    unsigned errors = self->errors;
    int visited = 0, rc;
    while ((rc = sqlite3_step (st)) == SQLITE_ROW) {
        uint64_t pos = (uint64_t) sqlite3_column_int64 (st, 0);
        const uint8_t *id = sqlite3_column_blob (st, 1);
        const uint8_t *env;
        size_t len;
        *after = pos;
        if (!id || sqlite3_column_bytes (st, 1) != 16 || !s_intact (self, st, 2, &env, &len)) {
            char hex[33] = "(no id)";
            if (id && sqlite3_column_bytes (st, 1) == 16)
                sqldb_hex (id, 16, hex);
            s_err (self,
                   "state %s: outbox message %s (position %" PRIu64
                   ") fails its SHA-256 check: not resent; state.db is damaged: restore it from "
                   "a backup, or send the message again under a new id",
                   self->dir, hex, pos);
            sqlite3_reset (st);
            return -1;
        }
        visited++;
        if (fn) {
            self->in_page++;
            int stop = fn (arg, pos, id, env, len);
            self->in_page--;
            if (stop) {
                rc = SQLITE_DONE;
                break;
            }
        }
    }
    if (s_page_end (self, st, rc, errors, "reading the outbox"))
        return -1;
    return visited;
}

int
state_inbox_page (state_t *self, uint64_t *after, size_t max, state_inbox_fn *fn, void *arg)
{
    if (!self)
        return -1;
    sqlite3_stmt *st = self->q[Q_IN_PAGE];
    if (s_page_start (self, "state_inbox_page", after, st, max))
        return -1;
    unsigned errors = self->errors;
    int visited = 0, rc;
    while ((rc = sqlite3_step (st)) == SQLITE_ROW) {
        uint64_t pos = (uint64_t) sqlite3_column_int64 (st, 0);
        const char *sender = (const char *) sqlite3_column_text (st, 1);
        const uint8_t *id = sqlite3_column_blob (st, 2);
        const uint8_t *env;
        size_t len;
        *after = pos;
        if (!sender || !id || sqlite3_column_bytes (st, 2) != 16
            || !s_intact (self, st, 3, &env, &len)) {
            char hex[33] = "(no id)";
            if (id && sqlite3_column_bytes (st, 2) == 16)
                sqldb_hex (id, 16, hex);
            s_err (self,
                   "state %s: inbox message %s from %s (position %" PRIu64
                   ") fails its SHA-256 check: not handed to the application; state.db is "
                   "damaged: restore it from a backup, or ask %s to send the message again",
                   self->dir, hex, sender ? sender : "?", pos, sender ? sender : "the sender");
            sqlite3_reset (st);
            return -1;
        }
        visited++;
        if (fn) {
            self->in_page++;
            int stop = fn (arg, pos, sender, id, env, len);
            self->in_page--;
            if (stop) {
                rc = SQLITE_DONE;
                break;
            }
        }
    }
    if (s_page_end (self, st, rc, errors, "reading the inbox"))
        return -1;
    return visited;
}

int
state_inbox_put (state_t *self, const char *sender, const uint8_t id[16], const uint8_t *envelope,
                 size_t len, int64_t now_ms)
{
    if (!self)
        return -1;
    int sender_len = s_check_sender (self, "state_inbox_put", sender);
    if (sender_len < 0 || s_check_id (self, "state_inbox_put", id)
        || s_check_envelope (self, "state_inbox_put", envelope, len))
        return -1;
    uint8_t sha[32];
    if (s_sha256 (self, envelope, len, sha)) {
        s_err (self, "state_inbox_put: SHA-256 of the envelope failed (OpenSSL); nothing stored");
        return -1;
    }
    if (s_begin_group (self))
        return -1;
    sqlite3_stmt *st = self->q[Q_IN_PUT];
    sqlite3_bind_text (st, 1, sender, sender_len, SQLITE_STATIC);
    sqlite3_bind_blob (st, 2, id, 16, SQLITE_STATIC);
    sqlite3_bind_blob64 (st, 3, envelope, len, SQLITE_STATIC);
    sqlite3_bind_blob (st, 4, sha, 32, SQLITE_STATIC);
    sqlite3_bind_int64 (st, 5, now_ms);
    int rc = sqldb_exec (st);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "storing a delivered message in the inbox");
    if (sqlite3_changes (self->db) == 0)
        return 0; // known: delivered before
    self->staged++;
    return 1;
}

// Runs an inbox UPDATE on (sender, id); 0 if it matched, 1 if unknown, -1.
static int
s_inbox_update (state_t *self, int q, const char *what, const char *sender, const uint8_t *id,
                int64_t now_ms)
{
    if (!self)
        return -1;
    int sender_len = s_check_sender (self, what, sender);
    if (sender_len < 0 || s_check_id (self, what, id) || s_begin_group (self))
        return -1;
    sqlite3_stmt *st = self->q[q];
    sqlite3_bind_text (st, 1, sender, sender_len, SQLITE_STATIC);
    sqlite3_bind_blob (st, 2, id, 16, SQLITE_STATIC);
    sqlite3_bind_int64 (st, 3, now_ms);
    int rc = sqldb_exec (st);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, what);
    if (sqlite3_changes (self->db) == 0)
        return 1;
    self->staged++;
    return 0;
}

int
state_inbox_ack (state_t *self, const char *sender, const uint8_t id[16], int64_t now_ms)
{
    return s_inbox_update (self, Q_IN_ACK, "state_inbox_ack", sender, id, now_ms);
}

int
state_inbox_read (state_t *self, const char *sender, const uint8_t id[16], int64_t now_ms)
{
    return s_inbox_update (self, Q_IN_READ, "state_inbox_read", sender, id, now_ms);
}

int
state_inbox_is_read (state_t *self, const char *sender, const uint8_t id[16])
{
    if (!self)
        return -1;
    int sender_len = s_check_sender (self, "state_inbox_is_read", sender);
    if (sender_len < 0 || s_check_id (self, "state_inbox_is_read", id))
        return -1;
    sqlite3_stmt *st = self->q[Q_IN_IS_READ];
    sqlite3_bind_text (st, 1, sender, sender_len, SQLITE_STATIC);
    sqlite3_bind_blob (st, 2, id, 16, SQLITE_STATIC);
    int rc = sqlite3_step (st);
    int result = rc == SQLITE_ROW ? (sqlite3_column_int (st, 0) ? 1 : 0) : 2;
    sqlite3_reset (st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return s_fail (self, rc, "looking a delivered message up");
    return result;
}

int
state_purge (state_t *self, int64_t before_ms, int64_t *purged)
{
    if (purged)
        *purged = 0;
    if (!self)
        return -1;
    if (s_not_in_page (self, "state_purge"))
        return -1;
    if (self->pending) {
        s_err (self, "state_purge: a group is staged and not committed; call state_commit first "
                     "(a bug in the caller)");
        return -1;
    }
    int rc = sqldb_exec (self->q[Q_BEGIN_WRITE]);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "BEGIN IMMEDIATE for a purge");
    sqlite3_stmt *st = self->q[Q_PURGE];
    sqlite3_bind_int64 (st, 1, before_ms);
    rc = sqldb_exec (st);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "purging acknowledged inbox ids");
    int64_t n = sqlite3_changes64 (self->db);
    rc = sqldb_exec (self->q[Q_COMMIT]);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "COMMIT of a purge");
    self->commits++;
    s_checkpoint (self);
    if (purged)
        *purged = n;
    return 0;
}

int
state_identity (state_t *self, const char *node_id)
{
    if (!self)
        return -1;
    if (!node_id || !*node_id || strlen (node_id) > STATE_SENDER_MAX) {
        s_err (self, "state_identity: node id empty or too long (a bug in the caller)");
        return -1;
    }
    if (s_begin_group (self))
        return -1;
    sqlite3_stmt *st = self->q[Q_META_SET];
    sqlite3_bind_text (st, 1, "node", -1, SQLITE_STATIC);
    sqlite3_bind_text (st, 2, node_id, -1, SQLITE_STATIC);
    int rc = sqldb_exec (st);
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "recording the node id");
    st = self->q[Q_META_GET];
    sqlite3_bind_text (st, 1, "node", -1, SQLITE_STATIC);
    rc = sqlite3_step (st);
    char owner[STATE_SENDER_MAX + 1] = "";
    if (rc == SQLITE_ROW)
        snprintf (owner, sizeof owner, "%s", (const char *) sqlite3_column_text (st, 0));
    sqlite3_reset (st);
    if (rc != SQLITE_ROW)
        return s_fail (self, rc, "reading the node id");
    if (strcmp (owner, node_id) != 0) {
        s_err (self,
               "state directory %s belongs to node %s, not %s: give each node (certificate) "
               "its own state directory",
               self->dir, owner, node_id);
        return 1;
    }
    return 0;
}
