/*  The durable store (broker/store.c): file mode and durability settings,
    migrations and refusals at open, group commit (durable after commit,
    gone before), deduplication, mailbox order and keyset pages, delivery,
    receipt trails, purge, the size bound and a full disk, damaged
    envelopes and files, checkpoints, and a large backlog paged through;
    the delivery scan, mailbox listings and fetch, expiry with EXPIRED
    receipts, deadline clocks (tick, answer, list, purge) and migration 3.

    A wrapping SQLite VFS registered as the default counts the syncs of the
    WAL and can fail its writes with SQLITE_FULL, so the tests see what the
    store's own connection does (synchronous is per connection).          */
#include "suites.h"

#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define APP_ID 0x4C53524B
#define MAX_ENV 2048

// Every test works in its own directory under this one (made per TCase).
static char s_root[64];

static int
s_rm (const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove (path);
}

static void
s_root_make (void)
{
    snprintf (s_root, sizeof s_root, "/tmp/liaison-store-XXXXXX");
    if (!mkdtemp (s_root))
        s_root[0] = 0;
}

static void
s_root_remove (void)
{
    if (s_root[0])
        nftw (s_root, s_rm, 8, FTW_DEPTH | FTW_PHYS);
}

// A fresh directory for one test; db gets the database path in it.
static void
s_dir (char *db, size_t len)
{
    ck_assert_msg (s_root[0], "no test root directory");
    char dir[128];
    snprintf (dir, sizeof dir, "%s/tXXXXXX", s_root);
    ck_assert_ptr_nonnull (mkdtemp (dir));
    snprintf (db, len, "%s/liaison.db", dir);
}

static store_t *
s_open (const char *path, uint64_t max_bytes, uint64_t wal_limit)
{
    char err[512] = "";
    store_config_t cfg = {.path = path, .max_bytes = max_bytes, .wal_limit_bytes = wal_limit};
    store_t *s = store_open (&cfg, err, sizeof err);
    ck_assert_msg (s != NULL, "store_open: %s", err);
    return s;
}

// Expects store_open to refuse path with an error containing `needle`.
static void
s_open_refused (const char *path, const char *needle)
{
    char err[512] = "";
    store_config_t cfg = {.path = path};
    store_t *s = store_open (&cfg, err, sizeof err);
    ck_assert_msg (s == NULL, "store_open accepted %s", path);
    ck_assert_msg (strstr (err, needle), "error '%s' does not say '%s'", err, needle);
}

static void
s_sha256 (const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    ck_assert (EVP_Digest (data, len, out, &n, EVP_sha256 (), NULL) && n == 32);
}

// A test message: n numbers it; the envelope's bytes follow from n.
typedef struct {
    uint8_t id[16];
    uint8_t digest[32];
    uint8_t env[MAX_ENV];
    size_t env_len;
    char sender[34];
    const char *rcpt[4];
    size_t n_rcpt;
    int priority;
    int type;
    int64_t accepted_ms;
    int64_t expires_ms;
    int64_t deadline_ms; // 0: none
    int64_t remind_ms;   // 0: at the deadline
} tmsg_t;

static void
s_msg (tmsg_t *t, const char *sender, uint32_t n, int priority, size_t env_len, const char *to)
{
    memset (t, 0, sizeof *t);
    ck_assert (env_len <= MAX_ENV);
    snprintf (t->sender, sizeof t->sender, "%s", sender);
    t->id[0] = (uint8_t) (n >> 24);
    t->id[1] = (uint8_t) (n >> 16);
    t->id[2] = (uint8_t) (n >> 8);
    t->id[3] = (uint8_t) n;
    t->id[15] = 0xA5;
    for (size_t i = 0; i < env_len; i++)
        t->env[i] = (uint8_t) (n * 31 + i * 7 + (uint8_t) sender[0]);
    t->env_len = env_len;
    s_sha256 (t->env, env_len, t->digest);
    t->rcpt[0] = to;
    t->n_rcpt = 1;
    t->priority = priority;
    t->type = 1;
    t->accepted_ms = 1000 + n;
}

static store_msg_t
s_view (const tmsg_t *t)
{
    return (store_msg_t){.id = t->id,
                         .sender = t->sender,
                         .digest = t->digest,
                         .envelope = t->env,
                         .envelope_len = t->env_len,
                         .type = t->type,
                         .priority = t->priority,
                         .accepted_ms = t->accepted_ms,
                         .deadline_ms = t->deadline_ms,
                         .expires_ms = t->expires_ms,
                         .remind_ms = t->remind_ms,
                         .recipients = t->rcpt,
                         .n_recipients = t->n_rcpt};
}

static void
s_put_ok (store_t *s, const tmsg_t *t)
{
    store_msg_t m = s_view (t);
    store_rc_t rc = store_put (s, &m, NULL);
    ck_assert_msg (rc == STORE_OK, "store_put: %d %s", rc, store_error (s));
}

static void
s_commit_ok (store_t *s)
{
    store_rc_t rc = store_commit (s);
    ck_assert_msg (rc == STORE_OK, "store_commit: %d %s", rc, store_error (s));
    ck_assert (!store_pending (s));
}

// The entry matches the test message it was made from.
static void
s_entry_is (const store_entry_t *e, const tmsg_t *t)
{
    ck_assert_msg (memcmp (e->id, t->id, 16) == 0, "entry seq %llu is not message %u from %s",
                   (unsigned long long) e->seq, (unsigned) t->id[3], t->sender);
    ck_assert_str_eq (e->sender, t->sender);
    ck_assert_int_eq (e->priority, t->priority);
    ck_assert_int_eq (e->accepted_ms, t->accepted_ms);
    ck_assert_uint_eq (e->envelope_len, t->env_len);
    ck_assert_msg (memcmp (e->envelope, t->env, t->env_len) == 0, "envelope bytes differ");
}

// One integer from a statement on the file through a connection of our own.
static int64_t
s_sql_int (const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout (db, 5000);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2 (db, sql, -1, &st, NULL);
    ck_assert_msg (rc == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg (db));
    ck_assert_msg (sqlite3_step (st) == SQLITE_ROW, "%s: %s", sql, sqlite3_errmsg (db));
    int64_t v = sqlite3_column_int64 (st, 0);
    sqlite3_finalize (st);
    sqlite3_close (db);
    return v;
}

static void
s_sql_exec (const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                      SQLITE_OK);
    sqlite3_busy_timeout (db, 5000);
    char *msg = NULL;
    int rc = sqlite3_exec (db, sql, NULL, NULL, &msg);
    ck_assert_msg (rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
    sqlite3_close (db);
}

static off_t
s_size (const char *path)
{
    struct stat sb;
    return stat (path, &sb) == 0 ? sb.st_size : -1;
}

static void
s_wal_path (const char *db, char *wal, size_t len)
{
    snprintf (wal, len, "%s-wal", db);
}

// ---------------------------------------------------------------------------
// A VFS over the default one: counts WAL syncs, can fail WAL writes.

typedef struct {
    sqlite3_file base;
    sqlite3_file *real; // the wrapped file, allocated right after this struct
    int is_wal;
} tfile_t;

static sqlite3_vfs *s_real_vfs;
static sqlite3_vfs s_tvfs;
static int s_wal_syncs;
static int s_wal_full; // WAL writes fail with SQLITE_FULL while set

#define REAL(f) (((tfile_t *) (f))->real)

static int
s_io_close (sqlite3_file *f)
{
    return REAL (f)->pMethods->xClose (REAL (f));
}
static int
s_io_read (sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    return REAL (f)->pMethods->xRead (REAL (f), buf, n, off);
}
static int
s_io_write (sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    if (((tfile_t *) f)->is_wal && s_wal_full)
        return SQLITE_FULL;
    return REAL (f)->pMethods->xWrite (REAL (f), buf, n, off);
}
static int
s_io_truncate (sqlite3_file *f, sqlite3_int64 size)
{
    return REAL (f)->pMethods->xTruncate (REAL (f), size);
}
static int
s_io_sync (sqlite3_file *f, int flags)
{
    if (((tfile_t *) f)->is_wal)
        s_wal_syncs++;
    return REAL (f)->pMethods->xSync (REAL (f), flags);
}
static int
s_io_file_size (sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL (f)->pMethods->xFileSize (REAL (f), size);
}
static int
s_io_lock (sqlite3_file *f, int lock)
{
    return REAL (f)->pMethods->xLock (REAL (f), lock);
}
static int
s_io_unlock (sqlite3_file *f, int lock)
{
    return REAL (f)->pMethods->xUnlock (REAL (f), lock);
}
static int
s_io_check_reserved (sqlite3_file *f, int *out)
{
    return REAL (f)->pMethods->xCheckReservedLock (REAL (f), out);
}
static int
s_io_file_control (sqlite3_file *f, int op, void *arg)
{
    return REAL (f)->pMethods->xFileControl (REAL (f), op, arg);
}
static int
s_io_sector_size (sqlite3_file *f)
{
    return REAL (f)->pMethods->xSectorSize (REAL (f));
}
static int
s_io_device (sqlite3_file *f)
{
    return REAL (f)->pMethods->xDeviceCharacteristics (REAL (f));
}
static int
s_io_shm_map (sqlite3_file *f, int page, int size, int extend, void volatile **p)
{
    return REAL (f)->pMethods->xShmMap (REAL (f), page, size, extend, p);
}
static int
s_io_shm_lock (sqlite3_file *f, int offset, int n, int flags)
{
    return REAL (f)->pMethods->xShmLock (REAL (f), offset, n, flags);
}
static void
s_io_shm_barrier (sqlite3_file *f)
{
    REAL (f)->pMethods->xShmBarrier (REAL (f));
}
static int
s_io_shm_unmap (sqlite3_file *f, int del)
{
    return REAL (f)->pMethods->xShmUnmap (REAL (f), del);
}
static int
s_io_fetch (sqlite3_file *f, sqlite3_int64 off, int n, void **p)
{
    return REAL (f)->pMethods->xFetch (REAL (f), off, n, p);
}
static int
s_io_unfetch (sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL (f)->pMethods->xUnfetch (REAL (f), off, p);
}

static const sqlite3_io_methods s_tio = {
    .iVersion = 3,
    .xClose = s_io_close,
    .xRead = s_io_read,
    .xWrite = s_io_write,
    .xTruncate = s_io_truncate,
    .xSync = s_io_sync,
    .xFileSize = s_io_file_size,
    .xLock = s_io_lock,
    .xUnlock = s_io_unlock,
    .xCheckReservedLock = s_io_check_reserved,
    .xFileControl = s_io_file_control,
    .xSectorSize = s_io_sector_size,
    .xDeviceCharacteristics = s_io_device,
    .xShmMap = s_io_shm_map,
    .xShmLock = s_io_shm_lock,
    .xShmBarrier = s_io_shm_barrier,
    .xShmUnmap = s_io_shm_unmap,
    .xFetch = s_io_fetch,
    .xUnfetch = s_io_unfetch,
};

static int
s_io_open (sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags, int *out_flags)
{
    tfile_t *t = (tfile_t *) f;
    t->real = (sqlite3_file *) (t + 1);
    t->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    int rc = s_real_vfs->xOpen (s_real_vfs, name, t->real, flags, out_flags);
    t->base.pMethods = t->real->pMethods ? &s_tio : NULL;
    return rc;
}

// Makes the wrapper the default VFS (in this forked test only).
static void
s_vfs_install (void)
{
    s_real_vfs = sqlite3_vfs_find (NULL);
    ck_assert_ptr_nonnull (s_real_vfs);
    ck_assert_int_eq (s_real_vfs->iVersion >= 1, 1);
    s_tvfs = *s_real_vfs;
    s_tvfs.zName = "liaison-test";
    s_tvfs.szOsFile = (int) sizeof (tfile_t) + s_real_vfs->szOsFile;
    s_tvfs.xOpen = s_io_open;
    s_tvfs.pNext = NULL;
    ck_assert_int_eq (sqlite3_vfs_register (&s_tvfs, 1), SQLITE_OK);
    s_wal_syncs = 0;
    s_wal_full = 0;
}

static void
s_vfs_remove (void)
{
    sqlite3_vfs_unregister (&s_tvfs);
    sqlite3_vfs_register (s_real_vfs, 1);
}

// ---------------------------------------------------------------------------
// Open, settings, migrations, refusals.

// A new store: file mode 0600 (WAL too), WAL mode, schema and application id.
START_TEST (test_store_open_new)
{
    char db[192], wal[200];
    s_dir (db, sizeof db);
    s_wal_path (db, wal, sizeof wal);
    umask (022);
    store_t *s = s_open (db, 0, 0);
    struct stat sb;
    ck_assert_int_eq (stat (db, &sb), 0);
    ck_assert_msg ((sb.st_mode & 0777) == 0600, "database mode %o", sb.st_mode & 0777);
    ck_assert_int_eq (stat (wal, &sb), 0);
    ck_assert_msg ((sb.st_mode & 0777) == 0600, "WAL mode %o", sb.st_mode & 0777);

    // journal_mode is persistent: a second connection sees WAL.
    sqlite3 *other = NULL;
    ck_assert_int_eq (sqlite3_open_v2 (db, &other, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq (sqlite3_prepare_v2 (other, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq (sqlite3_step (st), SQLITE_ROW);
    ck_assert_str_eq ((const char *) sqlite3_column_text (st, 0), "wal");
    sqlite3_finalize (st);
    sqlite3_close (other);
    ck_assert_int_eq (s_sql_int (db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    ck_assert_int_eq (s_sql_int (db, "PRAGMA application_id"), APP_ID);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages"), 0);
    ck_assert_str_eq (store_error (s), "no error");
    ck_assert (!store_pending (s));
    store_close (&s);
    ck_assert_ptr_null (s);
    store_close (&s); // safe twice
    store_close (NULL);
    ck_assert_ptr_nonnull (store_error (NULL));

    // Reopening an existing store leaves its mode alone and migrates nothing.
    s = s_open (db, 0, 0);
    ck_assert_int_eq (s_sql_int (db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    store_close (&s);
}
END_TEST

/* synchronous=FULL in WAL mode syncs the WAL at every commit (NORMAL never
   does); staging alone syncs nothing: one fsync per group. */
START_TEST (test_store_commit_syncs)
{
    char db[192];
    s_dir (db, sizeof db);
    s_vfs_install ();
    store_t *s = s_open (db, 0, 0);
    tmsg_t t;
    uint32_t n = 0;
    s_wal_syncs = 0;
    for (int i = 0; i < 100; i++) {
        s_msg (&t, "nodeA", n++, 0, 100, "nodeB");
        s_put_ok (s, &t);
    }
    ck_assert_int_eq (s_wal_syncs, 0);
    s_commit_ok (s);
    ck_assert_msg (s_wal_syncs >= 1 && s_wal_syncs <= 2, "%d syncs for one commit", s_wal_syncs);
    s_wal_syncs = 0;
    for (int g = 0; g < 5; g++) {
        for (int i = 0; i < 10; i++) {
            s_msg (&t, "nodeA", n++, 0, 100, "nodeB");
            s_put_ok (s, &t);
        }
        int before = s_wal_syncs;
        s_commit_ok (s);
        ck_assert_msg (s_wal_syncs > before, "commit %d did not sync the WAL", g);
    }
    ck_assert_msg (s_wal_syncs <= 10, "%d syncs for 5 commits", s_wal_syncs);
    // Committing with nothing staged costs nothing.
    s_wal_syncs = 0;
    s_commit_ok (s);
    ck_assert_int_eq (s_wal_syncs, 0);
    store_close (&s);
    s_vfs_remove ();
}
END_TEST

// Version 1 of the schema exactly as liaisond shipped it.
static const char *s_v1_sql =
    "CREATE TABLE messages ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
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
    "  priority INTEGER NOT NULL,"
    "  delivered_ms INTEGER,"
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
    "CREATE INDEX receipts_trail ON receipts (seq);"
    "PRAGMA application_id = 1280528971;"
    "PRAGMA user_version = 1;";

/* A schema-1 store as an older liaisond left it: m1 delivered to its only
   recipient (t=500), m2 to nodeB but not nodeC, m3 waiting for nodeB. */
static void
s_make_v1 (const char *db, tmsg_t t[3], const char *extra_sql)
{
    s_msg (&t[0], "nodeA", 1, 0, 300, "nodeB");
    s_msg (&t[1], "nodeA", 2, 2, 400, "nodeB");
    s_msg (&t[2], "nodeA", 3, 1, 500, "nodeB");
    sqlite3 *h = NULL;
    ck_assert_int_eq (sqlite3_open_v2 (db, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                      SQLITE_OK);
    ck_assert_int_eq (sqlite3_exec (h, "PRAGMA journal_mode = WAL", NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq (sqlite3_exec (h, s_v1_sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq (sqlite3_prepare_v2 (h,
                                          "INSERT INTO messages (sender, id, digest, envelope,"
                                          " envelope_sha256, type, priority, accepted_ms)"
                                          " VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                                          -1, &st, NULL),
                      SQLITE_OK);
    for (int i = 0; i < 3; i++) {
        uint8_t sha[32];
        s_sha256 (t[i].env, t[i].env_len, sha);
        sqlite3_bind_text (st, 1, t[i].sender, -1, SQLITE_STATIC);
        sqlite3_bind_blob (st, 2, t[i].id, 16, SQLITE_STATIC);
        sqlite3_bind_blob (st, 3, t[i].digest, 32, SQLITE_STATIC);
        sqlite3_bind_blob (st, 4, t[i].env, (int) t[i].env_len, SQLITE_STATIC);
        sqlite3_bind_blob (st, 5, sha, 32, SQLITE_TRANSIENT);
        sqlite3_bind_int (st, 6, t[i].priority);
        sqlite3_bind_int64 (st, 7, t[i].accepted_ms);
        ck_assert_int_eq (sqlite3_step (st), SQLITE_DONE);
        sqlite3_reset (st);
    }
    sqlite3_finalize (st);
    const char *rows = "INSERT INTO mailbox VALUES (1, 'nodeB', 0, 500);"
                       "INSERT INTO mailbox VALUES (2, 'nodeB', 2, 600);"
                       "INSERT INTO mailbox VALUES (2, 'nodeC', 2, NULL);"
                       "INSERT INTO mailbox VALUES (3, 'nodeB', 1, NULL);"
                       "INSERT INTO receipts (seq, recipient, status, time_ms)"
                       "  VALUES (2, 'nodeB', 1, 10), (2, 'nodeC', 1, 11), (2, 'nodeB', 2, 600);";
    ck_assert_int_eq (sqlite3_exec (h, rows, NULL, NULL, NULL), SQLITE_OK);
    if (extra_sql)
        ck_assert_int_eq (sqlite3_exec (h, extra_sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close (h);
}

// An older store migrates to the current schema and keeps all its data.
START_TEST (test_store_migrate_v1)
{
    char db[192];
    s_dir (db, sizeof db);
    tmsg_t t[3];
    s_make_v1 (db, t, NULL);
    ck_assert_int_eq (s_sql_int (db, "PRAGMA user_version"), 1);

    store_t *s = s_open (db, 0, 0);
    ck_assert_int_eq (s_sql_int (db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM pragma_table_info ('messages')"
                                     " WHERE name = 'done_ms'"),
                      1);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages"), 3);
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 1);
    ck_assert_int_eq (store_mailbox_count (s, "nodeC"), 1);
    store_cursor_t cur = {0};
    store_entry_t e[4];
    size_t n = 0;
    ck_assert_int_eq (store_mailbox_page (s, "nodeB", &cur, e, 4, &n), STORE_OK);
    ck_assert_uint_eq (n, 1);
    s_entry_is (&e[0], &t[2]);
    ck_assert_uint_eq (e[0].seq, 3);
    store_entry_clear (&e[0]);
    memset (&cur, 0, sizeof cur);
    ck_assert_int_eq (store_mailbox_page (s, "nodeC", &cur, e, 4, &n), STORE_OK);
    ck_assert_uint_eq (n, 1);
    s_entry_is (&e[0], &t[1]);
    store_entry_clear (&e[0]);
    ck_assert_int_eq (store_receipts (s, t[1].sender, t[1].id, NULL, NULL), 3);

    // The delivered message is found by the new purge index: the backfill worked.
    int64_t purged = -1;
    ck_assert_int_eq (store_purge (s, 10000, &purged), STORE_OK);
    ck_assert_int_eq (purged, 1);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages WHERE seq = 1"), 0);
    // Duplicates of the old messages are still recognised; new ones follow on.
    store_msg_t m = s_view (&t[2]);
    int64_t when = 0;
    ck_assert_int_eq (store_put (s, &m, &when), STORE_DUPLICATE);
    ck_assert_int_eq (when, t[2].accepted_ms);
    tmsg_t fresh;
    s_msg (&fresh, "nodeA", 4, 0, 100, "nodeB");
    s_put_ok (s, &fresh);
    s_commit_ok (s);
    ck_assert_int_eq (s_sql_int (db, "SELECT max (seq) FROM messages"), 4);
    store_close (&s);
}
END_TEST

// A migration that fails leaves the store exactly at the older schema.
START_TEST (test_store_migration_atomic)
{
    char db[192];
    s_dir (db, sizeof db);
    tmsg_t t[3];
    s_make_v1 (db, t, "CREATE TABLE messages_done (x);"); // v2's index name is taken
    char err[512] = "";
    store_config_t cfg = {.path = db};
    store_t *s = store_open (&cfg, err, sizeof err);
    ck_assert_ptr_null (s);
    ck_assert_msg (strstr (err, "migration from schema 1 to 2 failed"), "%s", err);
    ck_assert_msg (strstr (err, "still at schema 1"), "%s", err);
    ck_assert_int_eq (s_sql_int (db, "PRAGMA user_version"), 1);
    // The column added earlier in the same migration was rolled back with it.
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM pragma_table_info ('messages')"
                                     " WHERE name = 'done_ms'"),
                      0);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages"), 3);
}
END_TEST

// Migration 2 exactly as liaisond shipped it.
static const char *s_v2_sql =
    "ALTER TABLE messages ADD COLUMN done_ms INTEGER;"
    "UPDATE messages SET done_ms ="
    "  (SELECT max (delivered_ms) FROM mailbox WHERE mailbox.seq = messages.seq)"
    "  WHERE NOT EXISTS (SELECT 1 FROM mailbox"
    "                    WHERE mailbox.seq = messages.seq AND delivered_ms IS NULL);"
    "CREATE INDEX messages_done ON messages (done_ms) WHERE done_ms IS NOT NULL;"
    "CREATE INDEX messages_expires ON messages (expires_ms) WHERE expires_ms > 0;"
    "PRAGMA user_version = 2;";

// The schema-1 store of s_make_v1 taken to schema 2 as an older liaisond did.
static void
s_make_v2 (const char *db, tmsg_t t[3], const char *extra_sql)
{
    s_make_v1 (db, t, NULL);
    s_sql_exec (db, s_v2_sql);
    if (extra_sql)
        s_sql_exec (db, extra_sql);
    ck_assert_int_eq (s_sql_int (db, "PRAGMA user_version"), 2);
}

// Schema 2 gains the deadline clocks and keeps everything else.
START_TEST (test_store_migrate_v2)
{
    char db[192];
    s_dir (db, sizeof db);
    tmsg_t t[3];
    s_make_v2 (db, t, NULL);
    ck_assert_int_eq (
        s_sql_int (db, "SELECT count (*) FROM sqlite_schema WHERE name = 'deadlines'"), 0);

    store_t *s = s_open (db, 0, 0);
    ck_assert_int_eq (s_sql_int (db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM sqlite_schema"
                                     " WHERE type = 'table' AND name = 'deadlines'"),
                      1);
    // Migration 4: the expiry scan's index over messages still waited for.
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM sqlite_schema WHERE type = 'index'"
                                     " AND name = 'messages_ttl_pending'"),
                      1);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM pragma_index_list ('messages')"
                                     " WHERE name = 'messages_ttl_pending' AND partial = 1"),
                      1);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM sqlite_schema WHERE type = 'index'"
                                     " AND tbl_name = 'deadlines' AND name LIKE 'deadlines_%'"),
                      5);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM deadlines"), 0);
    // The data, and migration 2's backfill, are untouched.
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages"), 3);
    ck_assert_int_eq (s_sql_int (db, "SELECT done_ms FROM messages WHERE seq = 1"), 500);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages WHERE done_ms IS NULL"), 2);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM receipts"), 3);
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 1);
    ck_assert_int_eq (store_mailbox_count (s, "nodeC"), 1);
    store_cursor_t cur = {0};
    store_entry_t e[4];
    size_t n = 0;
    ck_assert_int_eq (store_mailbox_page (s, "nodeC", &cur, e, 4, &n), STORE_OK);
    ck_assert_uint_eq (n, 1);
    s_entry_is (&e[0], &t[1]);
    store_entry_clear (&e[0]);

    // The new table works: a request with a deadline starts its clock.
    tmsg_t req;
    s_msg (&req, "nodeA", 4, 1, 100, "nodeB");
    req.deadline_ms = 9000;
    s_put_ok (s, &req);
    s_commit_ok (s);
    ck_assert_uint_eq (store_last_seq (s), 4);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM deadlines WHERE seq = 4"), 1);
    int64_t purged = -1;
    ck_assert_int_eq (store_purge (s, 10000, &purged), STORE_OK);
    ck_assert_int_eq (purged, 1); // seq 1, delivered at 500
    store_close (&s);
    char report[64];
    ck_assert_int_eq (store_check (db, report, sizeof report), 0);
}
END_TEST

// A failed migration 3 leaves the store at schema 2, intact.
START_TEST (test_store_migration_v3_atomic)
{
    char db[192];
    s_dir (db, sizeof db);
    tmsg_t t[3];
    s_make_v2 (db, t, "CREATE TABLE deadlines_due (x);"); // v3's index name is taken
    char err[512] = "";
    store_config_t cfg = {.path = db};
    store_t *s = store_open (&cfg, err, sizeof err);
    ck_assert_ptr_null (s);
    ck_assert_msg (strstr (err, "migration from schema 2 to 3 failed"), "%s", err);
    ck_assert_msg (strstr (err, "still at schema 2"), "%s", err);
    ck_assert_int_eq (s_sql_int (db, "PRAGMA user_version"), 2);
    // The table created earlier in the same migration was rolled back with it.
    ck_assert_int_eq (
        s_sql_int (db, "SELECT count (*) FROM sqlite_schema WHERE name = 'deadlines'"), 0);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages"), 3);
}
END_TEST

START_TEST (test_store_newer_refused)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    store_close (&s);
    s_sql_exec (db, "PRAGMA user_version = 99");
    char want[128];
    snprintf (want, sizeof want,
              "store schema 99 is newer than this liaisond (%d); upgrade liaisond",
              STORE_SCHEMA_VERSION);
    s_open_refused (db, want);
    ck_assert_int_eq (s_sql_int (db, "PRAGMA user_version"), 99);
}
END_TEST

// Files that are not Liaison stores are refused and left untouched.
START_TEST (test_store_foreign_refused)
{
    char db[192];
    s_dir (db, sizeof db);
    FILE *f = fopen (db, "w");
    ck_assert_ptr_nonnull (f);
    fputs ("liaisond {\n    endpoint = tcp://0.0.0.0:7441\n}\n", f);
    fclose (f);
    off_t size = s_size (db);
    s_open_refused (db, "not a SQLite database");
    ck_assert_int_eq (s_size (db), size);

    // Some other program's SQLite database: refused, not switched to WAL.
    s_dir (db, sizeof db);
    s_sql_exec (db, "CREATE TABLE customers (name TEXT); INSERT INTO customers VALUES ('x');");
    s_open_refused (db, "not a Liaison store");
    sqlite3 *h = NULL;
    ck_assert_int_eq (sqlite3_open_v2 (db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq (sqlite3_prepare_v2 (h, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq (sqlite3_step (st), SQLITE_ROW);
    ck_assert_str_eq ((const char *) sqlite3_column_text (st, 0), "delete");
    sqlite3_finalize (st);
    sqlite3_close (h);

    // Another program's database with an application id of its own.
    s_dir (db, sizeof db);
    s_sql_exec (db, "PRAGMA application_id = 1234;");
    s_open_refused (db, "application_id 0x000004d2");

    // SQLite's magic with a garbage header after it.
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    store_close (&s);
    int fd = open (db, O_WRONLY);
    ck_assert_int_ge (fd, 0);
    uint8_t junk[84];
    memset (junk, 0xEE, sizeof junk);
    ck_assert_int_eq (pwrite (fd, junk, sizeof junk, 16), (ssize_t) sizeof junk);
    close (fd);
    s_open_refused (db, "header");

    // A state directory that does not exist.
    char missing[256];
    snprintf (missing, sizeof missing, "%s/no-such-dir/liaison.db", s_root);
    s_open_refused (missing, "create the state directory");
}
END_TEST

// ---------------------------------------------------------------------------
// Group commit and durability.

START_TEST (test_store_put_reopen)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    static tmsg_t t[20];
    for (uint32_t i = 0; i < 20; i++) {
        s_msg (&t[i], i % 2 ? "nodeA" : "nodeZ", i, 1, 64 + i * 50, "nodeB");
        s_put_ok (s, &t[i]);
        ck_assert (store_pending (s));
        if (i % 7 == 6)
            s_commit_ok (s);
    }
    s_commit_ok (s);
    store_close (&s);

    s = s_open (db, 0, 0);
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 20);
    store_cursor_t cur = {0};
    store_entry_t e[32];
    size_t n = 0;
    ck_assert_int_eq (store_mailbox_page (s, "nodeB", &cur, e, 32, &n), STORE_OK);
    ck_assert_uint_eq (n, 20);
    for (size_t i = 0; i < n; i++) {
        s_entry_is (&e[i], &t[i]);
        store_entry_clear (&e[i]);
        ck_assert_ptr_null (e[i].envelope);
    }
    store_close (&s);
}
END_TEST

// Staged but never committed: gone after close (it was never acknowledged).
START_TEST (test_store_uncommitted_vanishes)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    tmsg_t t[5];
    for (uint32_t i = 0; i < 5; i++)
        s_msg (&t[i], "nodeA", i, 0, 200, "nodeB");
    for (int i = 0; i < 3; i++)
        s_put_ok (s, &t[i]);
    s_commit_ok (s);
    s_put_ok (s, &t[3]);
    s_put_ok (s, &t[4]);
    ck_assert (store_pending (s));
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 5); // visible inside the group
    store_close (&s);

    s = s_open (db, 0, 0);
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 3);
    store_msg_t m = s_view (&t[4]);
    ck_assert_int_eq (store_put (s, &m, NULL), STORE_OK); // not a duplicate: it never existed
    s_commit_ok (s);
    store_close (&s);
}
END_TEST

// A broker killed with SIGKILL keeps every committed message, and only those.
START_TEST (test_store_sigkill)
{
    char db[192];
    s_dir (db, sizeof db);
    int fds[2];
    ck_assert_int_eq (pipe (fds), 0);
    pid_t pid = fork ();
    ck_assert_int_ge (pid, 0);
    if (pid == 0) {
        close (fds[0]);
        store_config_t cfg = {.path = db};
        char err[256];
        store_t *s = store_open (&cfg, err, sizeof err);
        tmsg_t t;
        int ok = s != NULL;
        for (uint32_t i = 0; ok && i < 70; i++) {
            s_msg (&t, "nodeA", i, 0, 1024, "nodeB");
            store_msg_t m = s_view (&t);
            ok = store_put (s, &m, NULL) == STORE_OK;
            if (ok && i % 10 == 9 && i < 50)
                ok = store_commit (s) == STORE_OK;
        }
        char c = ok ? 'y' : 'n';
        if (write (fds[1], &c, 1) != 1)
            _exit (3);
        raise (SIGKILL);
        _exit (4);
    }
    close (fds[1]);
    char c = 0;
    ck_assert_int_eq (read (fds[0], &c, 1), 1);
    close (fds[0]);
    int status = 0;
    ck_assert_int_eq (waitpid (pid, &status, 0), pid);
    ck_assert_msg (c == 'y', "the child failed to store");
    ck_assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL);

    store_t *s = s_open (db, 0, 0);
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 50);
    char report[256];
    store_close (&s);
    ck_assert_int_eq (store_check (db, report, sizeof report), 0);
}
END_TEST

START_TEST (test_store_duplicates)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    tmsg_t t;
    s_msg (&t, "nodeA", 7, 1, 300, "nodeB");
    s_put_ok (s, &t);

    // Resent within the same group, then after the commit.
    tmsg_t again = t;
    again.accepted_ms = 99999;
    store_msg_t m = s_view (&again);
    int64_t when = 0;
    ck_assert_int_eq (store_put (s, &m, &when), STORE_DUPLICATE);
    ck_assert_int_eq (when, t.accepted_ms);
    s_commit_ok (s);
    when = 0;
    ck_assert_int_eq (store_put (s, &m, &when), STORE_DUPLICATE);
    ck_assert_int_eq (when, t.accepted_ms);
    ck_assert_int_eq (store_put (s, &m, NULL), STORE_DUPLICATE);
    ck_assert (!store_pending (s)); // a duplicate stages nothing

    // Same id, other content.
    tmsg_t other = t;
    other.digest[31] ^= 1;
    m = s_view (&other);
    ck_assert_int_eq (store_put (s, &m, &when), STORE_CONFLICT);
    ck_assert_msg (strstr (store_error (s), "00000007") && strstr (store_error (s), "nodeA"), "%s",
                   store_error (s));
    // The same id from another sender is another message.
    tmsg_t elsewhere = t;
    snprintf (elsewhere.sender, sizeof elsewhere.sender, "nodeQ");
    s_put_ok (s, &elsewhere);
    s_commit_ok (s);
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 2);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages"), 2);

    // A sender id that does not fit a mailbox entry is refused, not truncated.
    tmsg_t longer = t;
    memset (longer.sender, 'x', 33);
    longer.sender[33] = 0;
    m = s_view (&longer);
    ck_assert_int_eq (store_put (s, &m, NULL), STORE_OK);
    char name[40];
    memset (name, 'y', 34);
    name[34] = 0;
    m.sender = name;
    ck_assert_int_eq (store_put (s, &m, NULL), STORE_ERROR);
    ck_assert_msg (strstr (store_error (s), "longer than 33"), "%s", store_error (s));
    ck_assert (store_pending (s)); // a refused message leaves the group alone
    s_commit_ok (s);
    store_close (&s);
}
END_TEST

// ---------------------------------------------------------------------------
// Mailboxes.

#define ORDER_N 60

// Expected mailbox of `node` in delivery order: indexes into t.
static size_t
s_expected (const tmsg_t *t, size_t count, const char *node, size_t *order)
{
    size_t n = 0;
    for (int p = 2; p >= 0; p--)
        for (size_t i = 0; i < count; i++) {
            if (t[i].priority != p)
                continue;
            for (size_t r = 0; r < t[i].n_rcpt; r++)
                if (strcmp (t[i].rcpt[r], node) == 0)
                    order[n++] = i;
        }
    return n;
}

// Pages through node's mailbox `size` entries at a time, checking each against the order.
static void
s_page_through (store_t *s, const char *node, const tmsg_t *t, const size_t *order, size_t count,
                size_t size)
{
    store_cursor_t cur = {0};
    store_entry_t e[8];
    size_t got = 0, n = 0;
    uint64_t last_seq = 0;
    int last_prio = 99;
    do {
        ck_assert_int_eq (store_mailbox_page (s, node, &cur, e, size, &n), STORE_OK);
        ck_assert_uint_le (n, size);
        for (size_t i = 0; i < n; i++) {
            ck_assert_msg (got < count, "more entries than expected for %s", node);
            s_entry_is (&e[i], &t[order[got]]);
            ck_assert (e[i].priority < last_prio
                       || (e[i].priority == last_prio && e[i].seq > last_seq));
            last_prio = e[i].priority;
            last_seq = e[i].seq;
            got++;
            store_entry_clear (&e[i]);
        }
        if (n) {
            ck_assert (cur.started);
            ck_assert_int_eq (cur.priority, last_prio);
            ck_assert_uint_eq (cur.seq, last_seq);
        }
    } while (n == size);
    ck_assert_msg (got == count, "%s: %zu entries of %zu with pages of %zu", node, got, count,
                   size);
}

// Priority first, then acceptance order, per node, across pages of 1..3.
START_TEST (test_store_mailbox_order)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    static tmsg_t t[ORDER_N];
    const char *senders[] = {"nodeA", "nodeK", "nodeZ"};
    const char *both[] = {"nodeX", "nodeY"};
    uint32_t seed = 12345;
    for (size_t i = 0; i < ORDER_N; i++) {
        seed = seed * 1103515245 + 12345;
        int prio = (int) ((seed >> 16) % 3);
        int to = (int) ((seed >> 20) % 3); // 0: X, 1: Y, 2: both
        s_msg (&t[i], senders[(seed >> 24) % 3], (uint32_t) i, prio, 40 + i, "nodeX");
        if (to == 1)
            t[i].rcpt[0] = "nodeY";
        else if (to == 2) {
            t[i].rcpt[0] = both[0];
            t[i].rcpt[1] = both[1];
            t[i].n_rcpt = 2;
        }
        s_put_ok (s, &t[i]);
        if (i == ORDER_N / 2)
            s_commit_ok (s);
    }
    // The second half is still staged: reads inside the group see it.
    ck_assert (store_pending (s));
    size_t ox[ORDER_N], oy[ORDER_N];
    size_t nx = s_expected (t, ORDER_N, "nodeX", ox);
    size_t ny = s_expected (t, ORDER_N, "nodeY", oy);
    ck_assert_uint_gt (nx, 10);
    ck_assert_uint_gt (ny, 10);
    s_page_through (s, "nodeX", t, ox, nx, 2);
    s_commit_ok (s);
    for (size_t size = 1; size <= 3; size++) {
        s_page_through (s, "nodeX", t, ox, nx, size);
        s_page_through (s, "nodeY", t, oy, ny, size);
    }
    ck_assert_int_eq (store_mailbox_count (s, "nodeX"), (int64_t) nx);
    ck_assert_int_eq (store_mailbox_count (s, "nodeY"), (int64_t) ny);
    ck_assert_int_eq (store_mailbox_count (s, "nodeW"), 0);
    store_cursor_t cur = {0};
    store_entry_t e[1];
    size_t n = 7;
    ck_assert_int_eq (store_mailbox_page (s, "nodeW", &cur, e, 1, &n), STORE_OK);
    ck_assert_uint_eq (n, 0);
    ck_assert (!cur.started);
    store_close (&s);
}
END_TEST

// Delivered entries leave that node's mailbox only; delivering twice is fine.
START_TEST (test_store_delivered)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    tmsg_t t[6];
    const char *both[] = {"nodeX", "nodeY"};
    for (uint32_t i = 0; i < 6; i++) {
        s_msg (&t[i], "nodeA", i, (int) (i % 2), 100, "nodeX");
        t[i].rcpt[0] = both[0];
        t[i].rcpt[1] = both[1];
        t[i].n_rcpt = 2;
        s_put_ok (s, &t[i]);
    }
    s_commit_ok (s);
    // Expected order for both: 1 3 5 (priority 1), 0 2 4.
    bool first = false;
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", t[3].id, 5000, &first), STORE_OK);
    ck_assert (first);
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", t[0].id, 5000, NULL), STORE_OK);
    ck_assert (store_pending (s));
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", t[3].id, 6000, &first), STORE_OK);
    ck_assert (!first);
    // A node acknowledges only what was addressed to it.
    ck_assert_int_eq (store_delivered (s, "nodeQ", "nodeA", t[3].id, 6000, &first), STORE_NOTFOUND);
    s_commit_ok (s);
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", t[3].id, 7000, NULL), STORE_OK);
    // Unknown messages (purged long ago, or never sent) are not found.
    uint8_t unknown[16] = {9, 9, 9};
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", unknown, 7000, NULL), STORE_NOTFOUND);
    s_commit_ok (s);
    ck_assert_int_eq (s_sql_int (db, "SELECT delivered_ms FROM mailbox WHERE seq = 4 AND node = "
                                     "'nodeX'"),
                      5000);
    store_close (&s);

    s = s_open (db, 0, 0);
    ck_assert_int_eq (store_mailbox_count (s, "nodeX"), 4);
    ck_assert_int_eq (store_mailbox_count (s, "nodeY"), 6);
    size_t want_x[] = {1, 5, 2, 4};
    store_cursor_t cur = {0};
    store_entry_t e[8];
    size_t n = 0;
    ck_assert_int_eq (store_mailbox_page (s, "nodeX", &cur, e, 8, &n), STORE_OK);
    ck_assert_uint_eq (n, 4);
    for (size_t i = 0; i < n; i++) {
        s_entry_is (&e[i], &t[want_x[i]]);
        store_entry_clear (&e[i]);
    }
    // Delivered in the middle of a paging run: the cursor moves on undisturbed.
    memset (&cur, 0, sizeof cur);
    ck_assert_int_eq (store_mailbox_page (s, "nodeY", &cur, e, 2, &n), STORE_OK);
    ck_assert_uint_eq (n, 2);
    s_entry_is (&e[0], &t[1]);
    s_entry_is (&e[1], &t[3]);
    store_entry_clear (&e[0]);
    store_entry_clear (&e[1]);
    ck_assert_int_eq (store_delivered (s, "nodeY", "nodeA", t[1].id, 8000, NULL), STORE_OK);
    ck_assert_int_eq (store_delivered (s, "nodeY", "nodeA", t[5].id, 8000, NULL), STORE_OK);
    ck_assert_int_eq (store_mailbox_page (s, "nodeY", &cur, e, 8, &n), STORE_OK);
    ck_assert_uint_eq (n, 3);
    s_entry_is (&e[0], &t[0]);
    s_entry_is (&e[1], &t[2]);
    s_entry_is (&e[2], &t[4]);
    for (size_t i = 0; i < n; i++)
        store_entry_clear (&e[i]);
    s_commit_ok (s);
    store_close (&s);
}
END_TEST

// ---------------------------------------------------------------------------
// Receipts and purge.

typedef struct {
    int n;
    char recipient[8][16];
    int status[8];
    char reason[8][32];
    char rule[8][32];
    int64_t time[8];
    size_t sig_len[8];
    uint8_t sig[8][8];
} trail_t;

static void
s_collect (void *arg, const char *recipient, int status, const char *reason, const char *rule,
           int64_t time_ms, const uint8_t *signature, size_t signature_len)
{
    trail_t *tr = arg;
    int i = tr->n++;
    ck_assert_int_lt (i, 8);
    snprintf (tr->recipient[i], sizeof tr->recipient[i], "%s", recipient);
    tr->status[i] = status;
    snprintf (tr->reason[i], sizeof tr->reason[i], "%s", reason ? reason : "(null)");
    snprintf (tr->rule[i], sizeof tr->rule[i], "%s", rule ? rule : "(null)");
    tr->time[i] = time_ms;
    tr->sig_len[i] = signature ? signature_len : 99;
    if (signature && signature_len <= 8)
        memcpy (tr->sig[i], signature, signature_len);
}

START_TEST (test_store_receipts)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    tmsg_t a, b;
    s_msg (&a, "nodeA", 1, 0, 100, "nodeX");
    s_msg (&b, "nodeA", 2, 0, 100, "nodeX");
    s_put_ok (s, &a);
    s_put_ok (s, &b);
    const uint8_t sig[5] = {1, 2, 3, 4, 5};
    // Recorded out of time order on purpose: the trail is the order recorded.
    ck_assert_int_eq (store_receipt_add (s, "nodeA", a.id, "nodeX", 1, NULL, NULL, 300, NULL, 0),
                      STORE_OK);
    ck_assert_int_eq (
        store_receipt_add (s, "nodeA", b.id, "nodeX", 4, "denied", "rules:12", 310, NULL, 0),
        STORE_OK);
    ck_assert_int_eq (store_receipt_add (s, "nodeA", a.id, "nodeY", 1, NULL, NULL, 200, NULL, 0),
                      STORE_OK);
    s_commit_ok (s);
    ck_assert_int_eq (store_receipt_add (s, "nodeA", a.id, "nodeX", 2, NULL, NULL, 400, sig, 5),
                      STORE_OK);
    s_commit_ok (s);
    store_close (&s);

    s = s_open (db, 0, 0);
    trail_t tr = {0};
    ck_assert_int_eq (store_receipts (s, "nodeA", a.id, s_collect, &tr), 3);
    ck_assert_int_eq (tr.n, 3);
    ck_assert_str_eq (tr.recipient[0], "nodeX");
    ck_assert_str_eq (tr.recipient[1], "nodeY");
    ck_assert_str_eq (tr.recipient[2], "nodeX");
    ck_assert_int_eq (tr.status[0], 1);
    ck_assert_int_eq (tr.status[2], 2);
    ck_assert_int_eq (tr.time[0], 300);
    ck_assert_int_eq (tr.time[1], 200);
    ck_assert_str_eq (tr.reason[0], "(null)");
    ck_assert_str_eq (tr.rule[0], "(null)");
    ck_assert_uint_eq (tr.sig_len[0], 99);
    ck_assert_uint_eq (tr.sig_len[2], 5);
    ck_assert_mem_eq (tr.sig[2], sig, 5);
    memset (&tr, 0, sizeof tr);
    ck_assert_int_eq (store_receipts (s, "nodeA", b.id, s_collect, &tr), 1);
    ck_assert_str_eq (tr.reason[0], "denied");
    ck_assert_str_eq (tr.rule[0], "rules:12");
    ck_assert_int_eq (tr.status[0], 4);
    // Another sender's message with the same id has no trail.
    ck_assert_int_eq (store_receipts (s, "nodeQ", a.id, s_collect, &tr), 0);
    ck_assert_int_eq (store_receipt_add (s, "nodeQ", a.id, "nodeX", 1, NULL, NULL, 1, NULL, 0),
                      STORE_ERROR);
    ck_assert_msg (strstr (store_error (s), "no message"), "%s", store_error (s));
    store_close (&s);
}
END_TEST

START_TEST (test_store_purge)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    tmsg_t t[5];
    const char *both[] = {"nodeX", "nodeY"};
    for (uint32_t i = 0; i < 5; i++) {
        s_msg (&t[i], "nodeA", i, 0, 100, "nodeX");
        t[i].rcpt[1] = both[1];
        t[i].n_rcpt = 2;
    }
    t[2].expires_ms = 150; // expires undelivered
    t[3].expires_ms = 900; // expires later
    for (int i = 0; i < 5; i++) {
        s_put_ok (s, &t[i]);
        ck_assert_int_eq (
            store_receipt_add (s, "nodeA", t[i].id, "nodeX", 1, NULL, NULL, 10, NULL, 0), STORE_OK);
    }
    // t0 delivered to both at 100 and 120; t1 to one of two; t4 to both at 500.
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", t[0].id, 100, NULL), STORE_OK);
    ck_assert_int_eq (store_delivered (s, "nodeY", "nodeA", t[0].id, 120, NULL), STORE_OK);
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", t[1].id, 100, NULL), STORE_OK);
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", t[4].id, 400, NULL), STORE_OK);
    ck_assert_int_eq (store_delivered (s, "nodeY", "nodeA", t[4].id, 500, NULL), STORE_OK);
    int64_t purged = -1;
    ck_assert_int_eq (store_purge (s, 1000, &purged), STORE_ERROR); // the group is open
    ck_assert_msg (strstr (store_error (s), "store_commit first"), "%s", store_error (s));
    s_commit_ok (s);

    ck_assert_int_eq (store_purge (s, 120, &purged), STORE_OK);
    ck_assert_int_eq (purged, 0); // t0's last delivery is at 120, not before
    ck_assert_int_eq (store_purge (s, 121, &purged), STORE_OK);
    ck_assert_int_eq (purged, 1);
    ck_assert_int_eq (store_purge (s, 200, &purged), STORE_OK);
    ck_assert_int_eq (purged, 1); // t2 expired
    ck_assert_int_eq (store_purge (s, 200, &purged), STORE_OK);
    ck_assert_int_eq (purged, 0);
    ck_assert_int_eq (store_purge (s, 1000, &purged), STORE_OK);
    ck_assert_int_eq (purged, 2); // t3 expired, t4 delivered
    ck_assert (!store_pending (s));
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages"), 1);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM mailbox"), 2);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM receipts"), 1);
    ck_assert_int_eq (store_receipts (s, "nodeA", t[0].id, NULL, NULL), 0);
    ck_assert_int_eq (store_receipts (s, "nodeA", t[1].id, NULL, NULL), 1);
    ck_assert_int_eq (store_mailbox_count (s, "nodeY"), 1);
    // A purged message's id is free again; its late delivery report finds nothing.
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", t[0].id, 2000, NULL), STORE_NOTFOUND);
    s_put_ok (s, &t[0]);
    s_commit_ok (s);
    ck_assert_int_eq (s_sql_int (db, "SELECT max (seq) FROM messages"), 6); // never reused
    store_close (&s);
}
END_TEST

// ---------------------------------------------------------------------------
// Full, damaged, checkpoints, backlog.

// The size bound refuses new messages with a clear error; nothing stored is lost.
START_TEST (test_store_full_bound)
{
    char db[192];
    s_dir (db, sizeof db);
    const uint64_t bound = 256 * 1024;
    store_t *s = s_open (db, bound, 0);
    tmsg_t t;
    uint32_t accepted = 0;
    store_rc_t rc = STORE_OK;
    while (accepted < 1000) {
        s_msg (&t, "nodeA", accepted, 0, 1024, "nodeB");
        store_msg_t m = s_view (&t);
        rc = store_put (s, &m, NULL);
        if (rc != STORE_OK)
            break;
        accepted++;
        if (accepted % 10 == 0)
            s_commit_ok (s);
    }
    ck_assert_int_eq (rc, STORE_FULL);
    ck_assert_uint_gt (accepted, 50);
    ck_assert_uint_lt (accepted, 256);
    const char *err = store_error (s);
    ck_assert_msg (strstr (err, "store is full: ") && strstr (err, "bytes of 262144")
                       && strstr (err, "purge or raise limits/store_max_bytes"),
                   "%s", err);
    // The refusal leaves the staged group alone; it commits.
    ck_assert (store_pending (s) == (accepted % 10 != 0));
    s_commit_ok (s);
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), accepted);
    store_close (&s);

    s = s_open (db, bound, 0);
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), accepted);
    store_msg_t m = s_view (&t);
    ck_assert_int_eq (store_put (s, &m, NULL), STORE_FULL);
    // A resend of something stored is still answered as a duplicate.
    tmsg_t first;
    s_msg (&first, "nodeA", 0, 0, 1024, "nodeB");
    m = s_view (&first);
    ck_assert_int_eq (store_put (s, &m, NULL), STORE_DUPLICATE);
    // Space returns once delivered messages are purged.
    for (uint32_t i = 0; i < accepted / 2; i++) {
        s_msg (&first, "nodeA", i, 0, 1024, "nodeB");
        ck_assert_int_eq (store_delivered (s, "nodeB", "nodeA", first.id, 10, NULL), STORE_OK);
    }
    s_commit_ok (s);
    int64_t purged = 0;
    ck_assert_int_eq (store_purge (s, 11, &purged), STORE_OK);
    ck_assert_int_eq (purged, accepted / 2);
    m = s_view (&t);
    ck_assert_msg (store_put (s, &m, NULL) == STORE_OK, "%s", store_error (s));
    s_commit_ok (s);
    store_close (&s);
}
END_TEST

// A full disk (SQLITE_FULL at commit): the group is rolled back, the rest is kept.
START_TEST (test_store_disk_full)
{
    char db[192];
    s_dir (db, sizeof db);
    s_vfs_install ();
    store_t *s = s_open (db, 0, 0);
    tmsg_t t;
    for (uint32_t i = 0; i < 10; i++) {
        s_msg (&t, "nodeA", i, 0, 1024, "nodeB");
        s_put_ok (s, &t);
    }
    s_commit_ok (s);
    for (uint32_t i = 10; i < 20; i++) {
        s_msg (&t, "nodeA", i, 0, 1024, "nodeB");
        s_put_ok (s, &t);
    }
    s_wal_full = 1;
    ck_assert_int_eq (store_commit (s), STORE_FULL);
    ck_assert (!store_pending (s));
    const char *err = store_error (s);
    ck_assert_msg (strstr (err, "disk is full") && strstr (err, "10 change(s)")
                       && strstr (err, "rolled back"),
                   "%s", err);
    s_wal_full = 0;
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 10);
    // Service resumes: the refused messages can be sent again.
    for (uint32_t i = 10; i < 20; i++) {
        s_msg (&t, "nodeA", i, 0, 1024, "nodeB");
        s_put_ok (s, &t);
    }
    s_commit_ok (s);

    // The disk fills while a big group is staged (the page cache spills into the WAL).
    enum { BIG = 64 * 1024 };
    uint8_t *env = malloc (BIG);
    ck_assert_ptr_nonnull (env);
    memset (env, 0x3C, BIG);
    s_wal_full = 1;
    store_rc_t rc = STORE_OK;
    uint32_t staged = 0;
    for (uint32_t i = 100; i < 400 && rc == STORE_OK; i++) {
        s_msg (&t, "nodeA", i, 0, 16, "nodeB");
        store_msg_t m = s_view (&t);
        m.envelope = env;
        m.envelope_len = BIG;
        rc = store_put (s, &m, NULL);
        staged += rc == STORE_OK;
    }
    free (env);
    ck_assert_msg (rc == STORE_FULL, "no SQLITE_FULL while staging %u messages: %d %s", staged, rc,
                   store_error (s));
    ck_assert_uint_gt (staged, 0);
    ck_assert (!store_pending (s));
    s_wal_full = 0;
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 20);
    s_msg (&t, "nodeA", 20, 0, 1024, "nodeB");
    s_put_ok (s, &t);
    s_commit_ok (s);
    store_close (&s);
    s = s_open (db, 0, 0);
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 21);
    store_close (&s);
    char report[256];
    ck_assert_int_eq (store_check (db, report, sizeof report), 0);
    s_vfs_remove ();
}
END_TEST

/* An SQLite failure half-way through a put (here a trigger refusing one
   mailbox row) rolls the whole group back: no half-stored message, nothing
   else from the group, and the next group works. */
START_TEST (test_store_error_rolls_back)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    tmsg_t t;
    s_msg (&t, "nodeA", 1, 0, 100, "nodeB");
    s_put_ok (s, &t);
    s_commit_ok (s);
    s_sql_exec (db, "CREATE TRIGGER boom BEFORE INSERT ON mailbox WHEN NEW.node = 'nodeBOOM'"
                    " BEGIN SELECT RAISE (ABORT, 'injected failure'); END;");
    s_msg (&t, "nodeA", 2, 0, 100, "nodeB");
    s_put_ok (s, &t);
    ck_assert_int_eq (store_receipt_add (s, "nodeA", t.id, "nodeB", 1, NULL, NULL, 5, NULL, 0),
                      STORE_OK);
    const char *two[] = {"nodeC", "nodeBOOM"};
    s_msg (&t, "nodeA", 3, 0, 100, "nodeC");
    t.rcpt[0] = two[0];
    t.rcpt[1] = two[1];
    t.n_rcpt = 2;
    store_msg_t m = s_view (&t);
    ck_assert_int_eq (store_put (s, &m, NULL), STORE_ERROR);
    ck_assert_msg (strstr (store_error (s), "injected failure")
                       && strstr (store_error (s), "2 change(s) staged since the last commit"),
                   "%s", store_error (s));
    ck_assert (!store_pending (s));
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 1);
    ck_assert_int_eq (store_mailbox_count (s, "nodeC"), 0);
    s_msg (&t, "nodeA", 4, 0, 100, "nodeB");
    s_put_ok (s, &t);
    s_commit_ok (s);
    store_close (&s);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages"), 2);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM receipts"), 0);
}
END_TEST

// Overwrites one byte of message seq's envelope behind the store's back.
static void
s_flip_envelope (const char *db, int64_t seq)
{
    sqlite3 *h = NULL;
    ck_assert_int_eq (sqlite3_open_v2 (db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout (h, 5000);
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq (
        sqlite3_prepare_v2 (h,
                            "UPDATE messages SET envelope ="
                            " substr (envelope, 1, 9) || x'ff' || substr (envelope, 11)"
                            " WHERE seq = ?",
                            -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_int64 (st, 1, seq);
    ck_assert_int_eq (sqlite3_step (st), SQLITE_DONE);
    ck_assert_int_eq (sqlite3_changes (h), 1);
    sqlite3_finalize (st);
    sqlite3_close (h);
}

// A damaged envelope is never served; the entries around it still are.
START_TEST (test_store_damaged_envelope)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    tmsg_t t[5];
    for (uint32_t i = 0; i < 5; i++) {
        s_msg (&t[i], "nodeA", i, 0, 64, "nodeX");
        t[i].env[9] = 0; // the flip below changes it
        s_sha256 (t[i].env, t[i].env_len, t[i].digest);
        s_put_ok (s, &t[i]);
    }
    s_commit_ok (s);
    s_flip_envelope (db, 3);

    store_cursor_t cur = {0};
    store_entry_t e[10];
    size_t n = 0;
    ck_assert_int_eq (store_mailbox_page (s, "nodeX", &cur, e, 10, &n), STORE_DAMAGED);
    ck_assert_uint_eq (n, 2);
    s_entry_is (&e[0], &t[0]);
    s_entry_is (&e[1], &t[1]);
    store_entry_clear (&e[0]);
    store_entry_clear (&e[1]);
    const char *err = store_error (s);
    ck_assert_msg (strstr (err, "00000002") && strstr (err, "nodeA") && strstr (err, "nodeX")
                       && strstr (err, "SHA-256") && strstr (err, "store-check"),
                   "%s", err);
    // The cursor is past the damaged entry: the rest comes next.
    ck_assert_int_eq (store_mailbox_page (s, "nodeX", &cur, e, 10, &n), STORE_OK);
    ck_assert_uint_eq (n, 2);
    s_entry_is (&e[0], &t[3]);
    s_entry_is (&e[1], &t[4]);
    store_entry_clear (&e[0]);
    store_entry_clear (&e[1]);
    // From the start again, it is refused again.
    memset (&cur, 0, sizeof cur);
    ck_assert_int_eq (store_mailbox_page (s, "nodeX", &cur, e, 10, &n), STORE_DAMAGED);
    for (size_t i = 0; i < n; i++)
        store_entry_clear (&e[i]);
    store_close (&s);

    char report[512];
    ck_assert_int_eq (store_check (db, report, sizeof report), 1);
    ck_assert_msg (strstr (report, "00000002") && strstr (report, "SHA-256"), "%s", report);
}
END_TEST

START_TEST (test_store_check)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    tmsg_t t;
    for (uint32_t i = 0; i < 400; i++) {
        s_msg (&t, "nodeA", i, (int) (i % 3), 1500, "nodeB");
        s_put_ok (s, &t);
        ck_assert_int_eq (store_receipt_add (s, "nodeA", t.id, "nodeB", 1, NULL, NULL, 1, NULL, 0),
                          STORE_OK);
    }
    s_commit_ok (s);
    char report[1024];
    // Sound, also while the broker has it open.
    ck_assert_int_eq (store_check (db, report, sizeof report), 0);
    ck_assert_str_eq (report, "ok");
    store_close (&s);
    ck_assert_int_eq (store_check (db, report, sizeof report), 0);
    ck_assert_str_eq (report, "ok");

    // Garbage over four pages in the middle of the file.
    off_t size = s_size (db);
    ck_assert_int_gt (size, 100 * 4096);
    int fd = open (db, O_WRONLY);
    ck_assert_int_ge (fd, 0);
    static uint8_t junk[4 * 4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t) (i * 13 + 7);
    ck_assert_int_eq (pwrite (fd, junk, sizeof junk, (size / 2) & ~(off_t) 4095),
                      (ssize_t) sizeof junk);
    close (fd);
    int rc = store_check (db, report, sizeof report);
    ck_assert_msg (rc == 1, "store_check returned %d: %s", rc, report);
    ck_assert_msg (strcmp (report, "ok") != 0 && strlen (report) > 10, "%s", report);

    // A file that is no store at all, and none at all.
    snprintf (report, sizeof report, "x");
    char path[256];
    snprintf (path, sizeof path, "%s/not-a-db", s_root);
    FILE *f = fopen (path, "w");
    ck_assert_ptr_nonnull (f);
    fputs ("this is not a database, but it is long enough to look like one maybe; "
           "the header is what counts for SQLite here.................................\n",
           f);
    fclose (f);
    ck_assert_int_eq (store_check (path, report, sizeof report), -1);
    ck_assert_msg (strstr (report, "not a database"), "%s", report);
    snprintf (path, sizeof path, "%s/missing.db", s_root);
    ck_assert_int_eq (store_check (path, report, sizeof report), -1);
    ck_assert_msg (strstr (report, "cannot open"), "%s", report);
    ck_assert_int_eq (store_check (db, NULL, 0), 1);
}
END_TEST

START_TEST (test_store_checkpoint)
{
    char db[192], wal[200];
    s_dir (db, sizeof db);
    s_wal_path (db, wal, sizeof wal);
    store_t *s = s_open (db, 0, 64 * 1024);
    tmsg_t t;
    for (uint32_t i = 0; i < 300; i++) {
        s_msg (&t, "nodeA", i, 0, 1024, "nodeB");
        s_put_ok (s, &t);
    }
    s_commit_ok (s);
    ck_assert_int_gt (s_size (wal), 300 * 1024);
    // Not while a group is open (truncating would wait for it).
    s_msg (&t, "nodeA", 300, 0, 1024, "nodeB");
    s_put_ok (s, &t);
    ck_assert_int_eq (store_checkpoint (s), STORE_OK);
    ck_assert_int_gt (s_size (wal), 300 * 1024);
    s_commit_ok (s);
    ck_assert_int_eq (store_checkpoint (s), STORE_OK);
    ck_assert_int_eq (s_size (wal), 0);
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 301);
    // Writing goes on after the truncation.
    s_msg (&t, "nodeA", 301, 0, 1024, "nodeB");
    s_put_ok (s, &t);
    s_commit_ok (s);
    ck_assert_int_gt (s_size (wal), 0);
    store_close (&s);

    // Below the default bound (64 MiB) the WAL is checkpointed but kept.
    s = s_open (db, 0, 0);
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 302);
    for (uint32_t i = 400; i < 500; i++) {
        s_msg (&t, "nodeA", i, 0, 1024, "nodeB");
        s_put_ok (s, &t);
    }
    s_commit_ok (s);
    off_t before = s_size (wal);
    ck_assert_int_gt (before, 100 * 1024);
    ck_assert_int_eq (store_checkpoint (s), STORE_OK);
    ck_assert_int_eq (s_size (wal), before);
    // Passive checkpoint done: the next write starts the WAL over instead of growing it.
    s_msg (&t, "nodeA", 500, 0, 1024, "nodeB");
    s_put_ok (s, &t);
    s_commit_ok (s);
    ck_assert_int_eq (s_size (wal), before);
    store_close (&s);
    char report[64];
    ck_assert_int_eq (store_check (db, report, sizeof report), 0);
}
END_TEST

// The checkpointer thread truncates a WAL past its bound while the owner
// keeps writing, and store_checkpoint leaves it the connection.
START_TEST (test_store_checkpointer_thread)
{
    char db[192], wal[200];
    s_dir (db, sizeof db);
    s_wal_path (db, wal, sizeof wal);
    store_t *s = s_open (db, 0, 64 * 1024);
    tmsg_t t;
    for (uint32_t i = 0; i < 300; i++) {
        s_msg (&t, "nodeA", i, 0, 1024, "nodeB");
        s_put_ok (s, &t);
    }
    s_commit_ok (s);
    ck_assert_int_gt (s_size (wal), 300 * 1024);
    ck_assert_int_eq (store_checkpointer_start (s, 20), STORE_OK);
    ck_assert_int_eq (store_checkpointer_start (s, 20), STORE_ERROR);  // one thread only
    ck_assert_int_eq (store_checkpoint (s), STORE_OK);                 // a no-op now
    int waited = 0;
    while (s_size (wal) > 0 && waited < 5000) {
        usleep (10000);
        waited += 10;
    }
    ck_assert_msg (s_size (wal) == 0, "WAL still %lld bytes after %d ms", (long long) s_size (wal),
                   waited);
    // Writes go on beside it, and nothing is lost.
    for (uint32_t i = 300; i < 600; i++) {
        s_msg (&t, "nodeA", i, 0, 1024, "nodeB");
        s_put_ok (s, &t);
        if (i % 50 == 49)
            s_commit_ok (s);
    }
    s_commit_ok (s);
    char why[64];
    ck_assert_uint_eq (store_checkpointer_failures (s, why, sizeof why), 0);
    store_close (&s);  // joins the thread
    s = s_open (db, 0, 0);
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), 600);
    store_close (&s);
}
END_TEST

static long
s_max_rss_kib (void)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

// 100,000 messages for one node, paged through 500 at a time, in order, memory bounded.
START_TEST (test_store_backlog)
{
    enum { TOTAL = 100000, PAGE = 500, ENV = 512 };
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    static tmsg_t t;
    for (uint32_t i = 0; i < TOTAL; i++) {
        s_msg (&t, i % 2 ? "nodeA" : "nodeC", i, (int) (i % 3), ENV, "nodeB");
        s_put_ok (s, &t);
        if (i % 2000 == 1999)
            s_commit_ok (s);
    }
    s_commit_ok (s);
    ck_assert_int_eq (store_checkpoint (s), STORE_OK);
    ck_assert_int_eq (store_mailbox_count (s, "nodeB"), TOTAL);

    store_entry_t *e = calloc (PAGE, sizeof *e);
    ck_assert_ptr_nonnull (e);
    long rss_before = s_max_rss_kib ();
    sqlite3_memory_highwater (1);
    store_cursor_t cur = {0};
    size_t n = 0, got = 0, pages = 0;
    int prio = 2;
    uint32_t next = 2; // the first message of priority 2 is number 2
    do {
        ck_assert_int_eq (store_mailbox_page (s, "nodeB", &cur, e, PAGE, &n), STORE_OK);
        pages++;
        for (size_t i = 0; i < n; i++) {
            // Priority 2 (2, 5, 8, ...), then 1 (1, 4, ...), then 0 (0, 3, ...).
            while (next >= TOTAL) {
                prio--;
                ck_assert_int_ge (prio, 0);
                next = (uint32_t) prio;
            }
            uint32_t num = ((uint32_t) e[i].id[0] << 24) | ((uint32_t) e[i].id[1] << 16)
                           | ((uint32_t) e[i].id[2] << 8) | e[i].id[3];
            ck_assert_msg (num == next && e[i].priority == prio, "entry %zu is %u/%d, not %u/%d",
                           got, num, e[i].priority, next, prio);
            ck_assert_uint_eq (e[i].envelope_len, ENV);
            next += 3;
            got++;
            store_entry_clear (&e[i]);
        }
    } while (n == PAGE);
    ck_assert_uint_eq (got, TOTAL);
    ck_assert_uint_eq (pages, TOTAL / PAGE + 1);
    sqlite3_int64 sqlite_peak = sqlite3_memory_highwater (0);
    ck_assert_msg (sqlite_peak < 32 * 1024 * 1024, "SQLite's memory peaked at %lld bytes",
                   (long long) sqlite_peak);
#if !defined(__SANITIZE_ADDRESS__)
    // 100,000 envelopes of 512 bytes are 49 MiB: paging must not come near that.
    long grown = s_max_rss_kib () - rss_before;
    ck_assert_msg (grown < 16 * 1024, "peak RSS grew by %ld KiB while paging", grown);
#else
    (void) rss_before; // ASan's quarantine holds freed envelopes: RSS says nothing here
#endif
    free (e);
    store_close (&s);
}
END_TEST

// ---------------------------------------------------------------------------
// The delivery scan, listings, fetch, expiry and deadline clocks.

// The number s_msg put into an id.
static uint32_t
s_num (const uint8_t id[16])
{
    return ((uint32_t) id[0] << 24) | ((uint32_t) id[1] << 16) | ((uint32_t) id[2] << 8) | id[3];
}

// What a scan handed out; each envelope is checked against its message during the call.
typedef struct {
    const tmsg_t *t; // the messages put, to check the borrowed bytes against
    size_t nt;
    int calls;
    int stop_at; // refuse the entry on this call (1-based); 0: take all
    int n;       // entries taken
    uint64_t seq[32];
    uint32_t num[32];
} scan_t;

static int
s_scan_cb (void *arg, uint64_t seq, const uint8_t id[16], const char *sender,
           const uint8_t *envelope, size_t len)
{
    scan_t *sc = arg;
    sc->calls++;
    if (sc->stop_at && sc->calls == sc->stop_at)
        return 1;
    const tmsg_t *m = NULL;
    for (size_t i = 0; i < sc->nt && !m; i++)
        if (memcmp (sc->t[i].id, id, 16) == 0 && strcmp (sc->t[i].sender, sender) == 0)
            m = &sc->t[i];
    ck_assert_msg (m, "scan handed out seq %llu, id %u from %s: never put",
                   (unsigned long long) seq, s_num (id), sender);
    ck_assert_uint_eq (len, m->env_len);
    ck_assert_msg (memcmp (envelope, m->env, len) == 0, "seq %llu: envelope bytes differ",
                   (unsigned long long) seq);
    ck_assert_int_lt (sc->n, 32);
    sc->seq[sc->n] = seq;
    sc->num[sc->n] = s_num (id);
    sc->n++;
    return 0;
}

/* Scans node's priority after `after`, at most max, and expects exactly
   the messages numbered want[0..count), in that order, seqs rising. */
static void
s_scan_is (store_t *s, const char *node, int prio, uint64_t after, size_t max, const tmsg_t *t,
           size_t nt, const uint32_t *want, int count)
{
    scan_t sc = {.t = t, .nt = nt};
    uint64_t damaged = 77;
    int rc = store_mailbox_scan (s, node, prio, after, max, s_scan_cb, &sc, &damaged);
    ck_assert_msg (rc == count, "scan %s/%d after %llu max %zu: %d, want %d (%s)", node, prio,
                   (unsigned long long) after, max, rc, count, store_error (s));
    ck_assert_int_eq (sc.n, count);
    ck_assert_int_eq (sc.calls, count);
    ck_assert_uint_eq (damaged, 77); // only set for a damaged entry
    uint64_t last = after;
    for (int i = 0; i < count; i++) {
        ck_assert_msg (sc.num[i] == want[i], "scan %s/%d entry %d is message %u, want %u", node,
                       prio, i, sc.num[i], want[i]);
        ck_assert_uint_gt (sc.seq[i], last);
        last = sc.seq[i];
    }
}

START_TEST (test_store_scan)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    ck_assert_uint_eq (store_last_seq (s), 0);
    ck_assert_uint_eq (store_last_seq (NULL), 0);
    // Messages 0..7; 7 goes to nodeY only. Priorities: 0 2 1 2 0 2 1 | 2.
    static tmsg_t t[10];
    const int prio[10] = {0, 2, 1, 2, 0, 2, 1, 2, 2, 2};
    for (uint32_t i = 0; i < 10; i++)
        s_msg (&t[i], i % 3 ? "nodeA" : "nodeK", i, prio[i], 40 + 37 * i,
               i == 7 ? "nodeY" : "nodeX");
    for (uint32_t i = 0; i < 8; i++) {
        s_put_ok (s, &t[i]);
        ck_assert_uint_eq (store_last_seq (s), i + 1);
    }
    // A duplicate stores nothing and leaves last_seq alone.
    store_msg_t m = s_view (&t[2]);
    ck_assert_int_eq (store_put (s, &m, NULL), STORE_DUPLICATE);
    ck_assert_uint_eq (store_last_seq (s), 8);
    s_commit_ok (s);
    ck_assert_uint_eq (store_last_seq (s), 8);

    // Per priority, in seq order; nodeY's message is not nodeX's.
    s_scan_is (s, "nodeX", 2, 0, 10, t, 10, (uint32_t[]){1, 3, 5}, 3);
    s_scan_is (s, "nodeX", 1, 0, 10, t, 10, (uint32_t[]){2, 6}, 2);
    s_scan_is (s, "nodeX", 0, 0, 10, t, 10, (uint32_t[]){0, 4}, 2);
    s_scan_is (s, "nodeY", 2, 0, 10, t, 10, (uint32_t[]){7}, 1);
    s_scan_is (s, "nodeY", 0, 0, 10, t, 10, NULL, 0);
    s_scan_is (s, "nodeW", 2, 0, 10, t, 10, NULL, 0);
    // after: seq 2 is message 1.
    s_scan_is (s, "nodeX", 2, 2, 10, t, 10, (uint32_t[]){3, 5}, 2);
    s_scan_is (s, "nodeX", 2, 3, 10, t, 10, (uint32_t[]){3, 5}, 2);
    s_scan_is (s, "nodeX", 2, 4, 10, t, 10, (uint32_t[]){5}, 1);
    s_scan_is (s, "nodeX", 2, 6, 10, t, 10, NULL, 0);
    // max.
    s_scan_is (s, "nodeX", 2, 0, 2, t, 10, (uint32_t[]){1, 3}, 2);
    s_scan_is (s, "nodeX", 2, 0, 1, t, 10, (uint32_t[]){1}, 1);
    s_scan_is (s, "nodeX", 2, 0, 0, t, 10, NULL, 0);

    // The callback refuses the second entry: one taken, the third never offered.
    scan_t sc = {.t = t, .nt = 10, .stop_at = 2};
    ck_assert_int_eq (store_mailbox_scan (s, "nodeX", 2, 0, 10, s_scan_cb, &sc, NULL), 1);
    ck_assert_int_eq (sc.calls, 2);
    ck_assert_int_eq (sc.n, 1);
    ck_assert_uint_eq (sc.num[0], 1);
    // Refusing the first: none taken.
    memset (&sc, 0, sizeof sc);
    sc.t = t;
    sc.nt = 10;
    sc.stop_at = 1;
    ck_assert_int_eq (store_mailbox_scan (s, "nodeX", 1, 0, 10, s_scan_cb, &sc, NULL), 0);
    ck_assert_int_eq (sc.calls, 1);
    ck_assert_int_eq (sc.n, 0);
    // A scan changes nothing: everything is still there.
    ck_assert_int_eq (store_mailbox_count (s, "nodeX"), 7);
    ck_assert (!store_pending (s));

    // Delivered entries are skipped.
    ck_assert_int_eq (store_delivered (s, "nodeX", t[3].sender, t[3].id, 5000, NULL), STORE_OK);
    ck_assert_int_eq (store_delivered (s, "nodeX", t[0].sender, t[0].id, 5000, NULL), STORE_OK);
    s_commit_ok (s);
    s_scan_is (s, "nodeX", 2, 0, 10, t, 10, (uint32_t[]){1, 5}, 2);
    s_scan_is (s, "nodeX", 0, 0, 10, t, 10, (uint32_t[]){4}, 1);

    // Staged and never committed (the broker stopped): never handed out.
    s_put_ok (s, &t[8]);
    ck_assert_uint_eq (store_last_seq (s), 9);
    store_close (&s);
    s = s_open (db, 0, 0);
    s_scan_is (s, "nodeX", 2, 0, 10, t, 10, (uint32_t[]){1, 5}, 2);
    // Another connection's open group is invisible until it commits.
    store_t *other = s_open (db, 0, 0);
    s_put_ok (other, &t[9]);
    ck_assert (store_pending (other));
    s_scan_is (s, "nodeX", 2, 0, 10, t, 10, (uint32_t[]){1, 5}, 2);
    s_commit_ok (other);
    s_scan_is (s, "nodeX", 2, 0, 10, t, 10, (uint32_t[]){1, 5, 9}, 3);
    store_close (&other);

    // No node or callback: an error, not a crash.
    ck_assert_int_eq (store_mailbox_scan (s, NULL, 2, 0, 10, s_scan_cb, &sc, NULL), STORE_ERROR);
    ck_assert_int_eq (store_mailbox_scan (s, "nodeX", 2, 0, 10, NULL, NULL, NULL), STORE_ERROR);
    ck_assert_int_eq (store_mailbox_scan (NULL, "nodeX", 2, 0, 10, s_scan_cb, &sc, NULL),
                      STORE_ERROR);
    store_close (&s);
}
END_TEST

// A damaged envelope stops the scan at it: the entries before it are taken, it never is.
START_TEST (test_store_scan_damaged)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    tmsg_t t[5];
    for (uint32_t i = 0; i < 5; i++) {
        s_msg (&t[i], "nodeA", i, 1, 64, "nodeX");
        t[i].env[9] = 0; // the flip below changes it
        s_sha256 (t[i].env, t[i].env_len, t[i].digest);
        s_put_ok (s, &t[i]);
    }
    s_commit_ok (s);
    s_flip_envelope (db, 3);

    scan_t sc = {.t = t, .nt = 5};
    uint64_t damaged = 0;
    ck_assert_int_eq (store_mailbox_scan (s, "nodeX", 1, 0, 10, s_scan_cb, &sc, &damaged),
                      STORE_DAMAGED);
    ck_assert_uint_eq (damaged, 3);
    ck_assert_int_eq (sc.n, 2);
    ck_assert_int_eq (sc.calls, 2); // the damaged entry is never offered
    ck_assert_uint_eq (sc.seq[0], 1);
    ck_assert_uint_eq (sc.seq[1], 2);
    const char *err = store_error (s);
    ck_assert_msg (strstr (err, "seq 3") && strstr (err, "nodeX") && strstr (err, "SHA-256")
                       && strstr (err, "store-check"),
                   "%s", err);
    // Without a place for the seq, the same answer.
    memset (&sc, 0, sizeof sc);
    sc.t = t;
    sc.nt = 5;
    ck_assert_int_eq (store_mailbox_scan (s, "nodeX", 1, 0, 10, s_scan_cb, &sc, NULL),
                      STORE_DAMAGED);
    ck_assert_int_eq (sc.n, 2);
    // Stopping before it is fine; past it, the rest is served.
    s_scan_is (s, "nodeX", 1, 0, 2, t, 5, (uint32_t[]){0, 1}, 2);
    s_scan_is (s, "nodeX", 1, 3, 10, t, 5, (uint32_t[]){3, 4}, 2);
    // The scan changed nothing.
    ck_assert (!store_pending (s));
    ck_assert_int_eq (store_mailbox_count (s, "nodeX"), 5);
    store_close (&s);
}
END_TEST

typedef struct {
    int n;
    store_listing_t e[16];
} listing_t;

static void
s_list_cb (void *arg, const store_listing_t *entry)
{
    listing_t *l = arg;
    ck_assert_int_lt (l->n, 16);
    l->e[l->n++] = *entry;
}

// The listing entry describes test message t, stored as seq.
static void
s_listing_is (const store_listing_t *e, const tmsg_t *t, uint64_t seq)
{
    ck_assert_uint_eq (e->seq, seq);
    ck_assert_msg (memcmp (e->id, t->id, 16) == 0, "listing seq %llu is message %u, not %u",
                   (unsigned long long) e->seq, s_num (e->id), s_num (t->id));
    ck_assert_str_eq (e->sender, t->sender);
    ck_assert_int_eq (e->type, t->type);
    ck_assert_int_eq (e->priority, t->priority);
    ck_assert_int_eq (e->accepted_ms, t->accepted_ms);
    ck_assert_int_eq (e->deadline_ms, t->deadline_ms);
    ck_assert_uint_eq (e->size, t->env_len);
}

START_TEST (test_store_list)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    tmsg_t t[6];
    const int prio[6] = {0, 2, 1, 0, 2, 1};
    const char *both[] = {"nodeX", "nodeY"};
    for (uint32_t i = 0; i < 6; i++) {
        s_msg (&t[i], i % 2 ? "nodeA" : "nodeK", i, prio[i], 50 + 111 * i, "nodeX");
        t[i].type = (int) (i % 4) + 1;
        t[i].accepted_ms = 70000 + 3 * i;
    }
    t[1].deadline_ms = 123456;
    t[4].deadline_ms = 99999;
    t[4].remind_ms = 88888;
    t[5].rcpt[0] = "nodeY"; // nodeY only
    t[2].rcpt[1] = both[1]; // both
    t[2].n_rcpt = 2;
    for (int i = 0; i < 6; i++)
        s_put_ok (s, &t[i]);
    s_commit_ok (s);

    // Delivery order: priority descending, then acceptance; metadata as
    // put; size is the envelope's. nodeX holds t0..t4 with priorities
    // 0 2 1 0 2: t1 t4 (2), t2 (1), t0 t3 (0).
    listing_t l = {0};
    ck_assert_int_eq (store_mailbox_list (s, "nodeX", 0, 10, s_list_cb, &l), 5);
    ck_assert_int_eq (l.n, 5);
    s_listing_is (&l.e[0], &t[1], 2);
    s_listing_is (&l.e[1], &t[4], 5);
    s_listing_is (&l.e[2], &t[2], 3);
    s_listing_is (&l.e[3], &t[0], 1);
    s_listing_is (&l.e[4], &t[3], 4);
    memset (&l, 0, sizeof l);
    ck_assert_int_eq (store_mailbox_list (s, "nodeY", 0, 10, s_list_cb, &l), 2);
    s_listing_is (&l.e[0], &t[2], 3);
    s_listing_is (&l.e[1], &t[5], 6);
    memset (&l, 0, sizeof l);
    ck_assert_int_eq (store_mailbox_list (s, "nodeW", 0, 10, s_list_cb, &l), 0);
    ck_assert_int_eq (l.n, 0);

    // Pages of two, each after the last entry's cursor.
    memset (&l, 0, sizeof l);
    ck_assert_int_eq (store_mailbox_list (s, "nodeX", 0, 2, s_list_cb, &l), 2);
    s_listing_is (&l.e[0], &t[1], 2);
    s_listing_is (&l.e[1], &t[4], 5);
    uint64_t cursor = l.e[1].cursor;
    memset (&l, 0, sizeof l);
    ck_assert_int_eq (store_mailbox_list (s, "nodeX", cursor, 2, s_list_cb, &l), 2);
    s_listing_is (&l.e[0], &t[2], 3);  // across a priority
    s_listing_is (&l.e[1], &t[0], 1);
    cursor = l.e[1].cursor;
    memset (&l, 0, sizeof l);
    ck_assert_int_eq (store_mailbox_list (s, "nodeX", cursor, 2, s_list_cb, &l), 1);
    s_listing_is (&l.e[0], &t[3], 4);
    cursor = l.e[0].cursor;
    memset (&l, 0, sizeof l);
    ck_assert_int_eq (store_mailbox_list (s, "nodeX", cursor, 2, s_list_cb, &l), 0);
    ck_assert_int_eq (store_mailbox_list (s, "nodeX", 0, 0, s_list_cb, &l), 0);
    ck_assert_int_eq (l.n, 0);

    // Delivered entries are not listed (for that node only); listing changes nothing.
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", t[1].id, 9000, NULL), STORE_OK);
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeK", t[2].id, 9000, NULL), STORE_OK);
    s_commit_ok (s);
    memset (&l, 0, sizeof l);
    ck_assert_int_eq (store_mailbox_list (s, "nodeX", 0, 10, s_list_cb, &l), 3);
    s_listing_is (&l.e[0], &t[4], 5);
    s_listing_is (&l.e[1], &t[0], 1);
    s_listing_is (&l.e[2], &t[3], 4);
    memset (&l, 0, sizeof l);
    ck_assert_int_eq (store_mailbox_list (s, "nodeY", 0, 10, s_list_cb, &l), 2);
    s_listing_is (&l.e[0], &t[2], 3);
    ck_assert (!store_pending (s));
    ck_assert_int_eq (store_mailbox_count (s, "nodeX"), 3);
    ck_assert_int_eq (store_mailbox_list (s, NULL, 0, 10, s_list_cb, &l), STORE_ERROR);
    ck_assert_int_eq (store_mailbox_list (s, "nodeX", 0, 10, NULL, NULL), STORE_ERROR);
    store_close (&s);
}
END_TEST

typedef struct {
    int calls;
    size_t len;
    uint8_t env[MAX_ENV];
} fetched_t;

static void
s_fetch_cb (void *arg, const uint8_t *envelope, size_t len)
{
    fetched_t *f = arg;
    f->calls++;
    ck_assert_uint_le (len, MAX_ENV);
    memcpy (f->env, envelope, len);
    f->len = len;
}

// Fetches (node, sender, id) and expects rc; for STORE_OK, t's exact bytes.
static void
s_fetch_is (store_t *s, const char *node, const char *sender, const uint8_t id[16], store_rc_t want,
            const tmsg_t *t)
{
    fetched_t f = {0};
    store_rc_t rc = store_fetch (s, node, sender, id, s_fetch_cb, &f);
    ck_assert_msg (rc == want, "fetch %s/%s/%u: %d, want %d (%s)", node, sender, s_num (id), rc,
                   want, store_error (s));
    if (want != STORE_OK) {
        ck_assert_int_eq (f.calls, 0);
        return;
    }
    ck_assert_int_eq (f.calls, 1);
    ck_assert_uint_eq (f.len, t->env_len);
    ck_assert_msg (memcmp (f.env, t->env, t->env_len) == 0, "fetched bytes differ");
}

START_TEST (test_store_fetch)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    tmsg_t t[3];
    const char *both[] = {"nodeX", "nodeY"};
    s_msg (&t[0], "nodeA", 1, 0, 700, "nodeX");
    t[0].rcpt[1] = both[1];
    t[0].n_rcpt = 2;
    s_msg (&t[1], "nodeA", 2, 2, 64, "nodeX");
    t[1].env[9] = 0; // damaged below
    s_sha256 (t[1].env, t[1].env_len, t[1].digest);
    s_msg (&t[2], "nodeQ", 1, 1, 333, "nodeY"); // same id as t0, another sender
    for (int i = 0; i < 3; i++)
        s_put_ok (s, &t[i]);
    s_commit_ok (s);

    s_fetch_is (s, "nodeX", "nodeA", t[0].id, STORE_OK, &t[0]);
    s_fetch_is (s, "nodeY", "nodeA", t[0].id, STORE_OK, &t[0]);
    s_fetch_is (s, "nodeX", "nodeA", t[1].id, STORE_OK, &t[1]);
    s_fetch_is (s, "nodeY", "nodeQ", t[2].id, STORE_OK, &t[2]);
    // Only from a mailbox the message was addressed to.
    s_fetch_is (s, "nodeY", "nodeA", t[1].id, STORE_NOTFOUND, NULL);
    s_fetch_is (s, "nodeW", "nodeA", t[0].id, STORE_NOTFOUND, NULL);
    s_fetch_is (s, "nodeX", "nodeQ", t[2].id, STORE_NOTFOUND, NULL);
    uint8_t unknown[16] = {7, 7, 7};
    s_fetch_is (s, "nodeX", "nodeA", unknown, STORE_NOTFOUND, NULL);

    // Delivered but not purged: still fetchable; purged: gone.
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", t[0].id, 100, NULL), STORE_OK);
    s_commit_ok (s);
    s_fetch_is (s, "nodeX", "nodeA", t[0].id, STORE_OK, &t[0]);
    ck_assert_int_eq (store_delivered (s, "nodeY", "nodeA", t[0].id, 200, NULL), STORE_OK);
    s_commit_ok (s);
    s_fetch_is (s, "nodeX", "nodeA", t[0].id, STORE_OK, &t[0]);
    int64_t purged = 0;
    ck_assert_int_eq (store_purge (s, 1000, &purged), STORE_OK);
    ck_assert_int_eq (purged, 1);
    s_fetch_is (s, "nodeX", "nodeA", t[0].id, STORE_NOTFOUND, NULL);
    s_fetch_is (s, "nodeY", "nodeQ", t[2].id, STORE_OK, &t[2]);

    // A damaged envelope is refused, and said so.
    s_flip_envelope (db, 2);
    s_fetch_is (s, "nodeX", "nodeA", t[1].id, STORE_DAMAGED, NULL);
    ck_assert_msg (strstr (store_error (s), "00000002") && strstr (store_error (s), "SHA-256"),
                   "%s", store_error (s));
    ck_assert (!store_pending (s));
    fetched_t f = {0};
    ck_assert_int_eq (store_fetch (s, "nodeX", NULL, t[1].id, s_fetch_cb, &f), STORE_ERROR);
    ck_assert_int_eq (store_fetch (s, "nodeX", "nodeA", t[1].id, NULL, NULL), STORE_ERROR);
    store_close (&s);
}
END_TEST

typedef struct {
    int n;
    char node[8][16];
    char sender[8][16];
    uint32_t num[8];
    int64_t expires_ms[8];
} expired_t;

static void
s_expired_cb (void *arg, const char *node, const char *sender, const uint8_t id[16],
              int64_t expires_ms)
{
    expired_t *x = arg;
    ck_assert_int_lt (x->n, 8);
    snprintf (x->node[x->n], sizeof x->node[0], "%s", node);
    snprintf (x->sender[x->n], sizeof x->sender[0], "%s", sender);
    x->num[x->n] = s_num (id);
    x->expires_ms[x->n] = expires_ms;
    x->n++;
}

// True if the callback saw (node, sender, message num, expires_ms).
static bool
s_expired_has (const expired_t *x, const char *node, const char *sender, uint32_t num,
               int64_t expires_ms)
{
    for (int i = 0; i < x->n; i++)
        if (!strcmp (x->node[i], node) && !strcmp (x->sender[i], sender) && x->num[i] == num
            && x->expires_ms[i] == expires_ms)
            return true;
    return false;
}

START_TEST (test_store_expire)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    static tmsg_t t[5];
    const char *both[] = {"nodeX", "nodeY"};
    s_msg (&t[0], "nodeA", 0, 0, 100, "nodeX"); // to X and Y, expires at 500
    t[0].rcpt[1] = both[1];
    t[0].n_rcpt = 2;
    t[0].expires_ms = 500;
    s_msg (&t[1], "nodeA", 1, 0, 100, "nodeX"); // expires at 1000
    t[1].expires_ms = 1000;
    s_msg (&t[2], "nodeA", 2, 0, 100, "nodeX"); // never expires
    s_msg (&t[3], "nodeA", 3, 0, 100, "nodeX"); // expires at 400, delivered at 300
    t[3].expires_ms = 400;
    s_msg (&t[4], "nodeK", 4, 0, 100, "nodeX"); // expires at 500, another sender
    t[4].expires_ms = 500;
    for (int i = 0; i < 5; i++)
        s_put_ok (s, &t[i]);
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", t[3].id, 300, NULL), STORE_OK);
    s_commit_ok (s);

    // Nothing undelivered has expired yet (t3 has, but was delivered).
    expired_t x = {0};
    ck_assert_int_eq (store_expire (s, 499, 10, s_expired_cb, &x), 0);
    ck_assert_int_eq (x.n, 0);
    ck_assert (!store_pending (s));

    // At 500: t0 for X and for Y, t4 for X.
    ck_assert_int_eq (store_expire (s, 500, 10, s_expired_cb, &x), 3);
    ck_assert_int_eq (x.n, 3);
    ck_assert (s_expired_has (&x, "nodeX", "nodeA", 0, 500));
    ck_assert (s_expired_has (&x, "nodeY", "nodeA", 0, 500));
    ck_assert (s_expired_has (&x, "nodeX", "nodeK", 4, 500));
    ck_assert (store_pending (s)); // staged
    s_commit_ok (s);
    memset (&x, 0, sizeof x);
    ck_assert_int_eq (store_expire (s, 600, 10, s_expired_cb, &x), 0); // each once
    ck_assert_int_eq (x.n, 0);

    // Out of the mailboxes; the others untouched.
    s_scan_is (s, "nodeX", 0, 0, 10, t, 5, (uint32_t[]){1, 2}, 2);
    s_scan_is (s, "nodeY", 0, 0, 10, t, 5, NULL, 0);
    ck_assert_int_eq (store_mailbox_count (s, "nodeX"), 2);
    ck_assert_int_eq (s_sql_int (db, "SELECT delivered_ms FROM mailbox WHERE seq = 4"), 300);
    // Every recipient's copy is gone: the message is done, like a delivered one.
    ck_assert_int_eq (s_sql_int (db, "SELECT done_ms FROM messages WHERE seq = 1"), 500);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages WHERE seq = 2"
                                     " AND done_ms IS NULL"),
                      1);
    // An EXPIRED receipt per recipient.
    trail_t tr = {0};
    ck_assert_int_eq (store_receipts (s, "nodeA", t[0].id, s_collect, &tr), 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq (tr.status[i], 5);
        ck_assert_str_eq (tr.reason[i], "ttl-expired");
        ck_assert_str_eq (tr.rule[i], "(null)");
        ck_assert_int_eq (tr.time[i], 500);
        ck_assert_uint_eq (tr.sig_len[i], 99);
    }
    ck_assert_msg (
        (!strcmp (tr.recipient[0], "nodeX") && !strcmp (tr.recipient[1], "nodeY"))
            || (!strcmp (tr.recipient[0], "nodeY") && !strcmp (tr.recipient[1], "nodeX")),
        "%s %s", tr.recipient[0], tr.recipient[1]);
    memset (&tr, 0, sizeof tr);
    ck_assert_int_eq (store_receipts (s, "nodeK", t[4].id, s_collect, &tr), 1);
    ck_assert_str_eq (tr.recipient[0], "nodeX");
    ck_assert_int_eq (tr.status[0], 5);
    ck_assert_int_eq (store_receipts (s, "nodeA", t[3].id, NULL, NULL), 0);
    ck_assert_int_eq (store_receipts (s, "nodeA", t[1].id, NULL, NULL), 0);

    // A late acknowledgement of an expired message (it was on its way to the
    // receiver when the tick expired it): the recipient has it, so the
    // first one is news (the caller records DELIVERED after EXPIRED); once
    // recorded, later ones are not.
    bool first = false;
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", t[0].id, 700, &first), STORE_OK);
    ck_assert (first);
    ck_assert (!store_pending (s));  // nothing to change in the mailbox
    ck_assert_int_eq (store_receipt_add (s, "nodeA", t[0].id, "nodeX", 2, NULL, NULL, 700, NULL, 0),
                      STORE_OK);
    s_commit_ok (s);
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", t[0].id, 800, &first), STORE_OK);
    ck_assert (!first);
    ck_assert (!store_pending (s));
    ck_assert_int_eq (store_delivered (s, "nodeQ", "nodeA", t[0].id, 700, &first), STORE_NOTFOUND);

    // max bounds a run: t1 and (at 10^6) nothing else, t2 never expires.
    memset (&x, 0, sizeof x);
    ck_assert_int_eq (store_expire (s, 1000000, 0, s_expired_cb, &x), 0);
    ck_assert_int_eq (x.n, 0);
    ck_assert_int_eq (store_expire (s, 1000000, 1, s_expired_cb, &x), 1);
    ck_assert (s_expired_has (&x, "nodeX", "nodeA", 1, 1000));
    ck_assert_int_eq (store_expire (s, 1000000, 1, NULL, NULL), 0);
    s_commit_ok (s);
    s_scan_is (s, "nodeX", 0, 0, 10, t, 5, (uint32_t[]){2}, 1);

    // Purged once past expiry: t3 (delivered at 300) first, then t0 and t4 (expired at 500).
    int64_t purged = -1;
    ck_assert_int_eq (store_purge (s, 300, &purged), STORE_OK);
    ck_assert_int_eq (purged, 0);
    ck_assert_int_eq (store_purge (s, 500, &purged), STORE_OK);
    ck_assert_int_eq (purged, 1);
    ck_assert_int_eq (store_purge (s, 501, &purged), STORE_OK);
    ck_assert_int_eq (purged, 2);
    ck_assert_int_eq (store_receipts (s, "nodeA", t[0].id, NULL, NULL), 0);
    ck_assert_int_eq (store_delivered (s, "nodeY", "nodeA", t[0].id, 900, NULL), STORE_NOTFOUND);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages"), 2);
    store_close (&s);
}
END_TEST

// What a deadline callback (tick or list) reported.
typedef struct {
    int n;
    char sender[16][16];
    char recipient[16][16];
    uint32_t num[16];
    int64_t due_ms[16];
    int state[16];
    int64_t answered_ms[16];
} clocks_t;

static void
s_clock_cb (void *arg, const char *sender, const uint8_t id[16], const char *recipient,
            int64_t due_ms, int state, int64_t answered_ms)
{
    clocks_t *c = arg;
    ck_assert_int_lt (c->n, 16);
    snprintf (c->sender[c->n], sizeof c->sender[0], "%s", sender);
    snprintf (c->recipient[c->n], sizeof c->recipient[0], "%s", recipient);
    c->num[c->n] = s_num (id);
    c->due_ms[c->n] = due_ms;
    c->state[c->n] = state;
    c->answered_ms[c->n] = answered_ms;
    c->n++;
}

// Index of the clock (sender, message num, recipient) in c, or -1.
static int
s_clock_find (const clocks_t *c, const char *sender, uint32_t num, const char *recipient)
{
    int found = -1;
    for (int i = 0; i < c->n; i++)
        if (!strcmp (c->sender[i], sender) && c->num[i] == num
            && !strcmp (c->recipient[i], recipient)) {
            ck_assert_msg (found < 0, "clock %s/%u/%s reported twice", sender, num, recipient);
            found = i;
        }
    return found;
}

// The state of the clock (message seq, recipient) in the file.
static int64_t
s_clock_state (const char *db, int64_t seq, const char *recipient)
{
    char sql[160];
    snprintf (sql, sizeof sql, "SELECT state FROM deadlines WHERE seq = %lld AND recipient = '%s'",
              (long long) seq, recipient);
    return s_sql_int (db, sql);
}

// Ticks at now and expects exactly `count` clocks moved, each reported once.
static void
s_tick_is (store_t *s, int64_t now, size_t max, clocks_t *c, int count)
{
    memset (c, 0, sizeof *c);
    int rc = store_deadlines_tick (s, now, max, s_clock_cb, c);
    ck_assert_msg (rc == count, "tick at %lld: %d, want %d (%s)", (long long) now, rc, count,
                   store_error (s));
    ck_assert_int_eq (c->n, count);
}

START_TEST (test_store_deadlines)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    tmsg_t a, b, c, d;
    const char *xy[] = {"nodeX", "nodeY"};
    // a: nodeA asks X and Y, due 10000, reminder at 8000 (seq 1).
    s_msg (&a, "nodeA", 1, 1, 100, "nodeX");
    a.rcpt[1] = xy[1];
    a.n_rcpt = 2;
    a.deadline_ms = 10000;
    a.remind_ms = 8000;
    // b: nodeB asks X, due 5000, reminder at 3000 (seq 2).
    s_msg (&b, "nodeB", 2, 1, 100, "nodeX");
    b.deadline_ms = 5000;
    b.remind_ms = 3000;
    // c: no deadline (seq 3). d: nodeA asks Z, due 20000, no reminder time (seq 4).
    s_msg (&c, "nodeA", 3, 1, 100, "nodeX");
    s_msg (&d, "nodeA", 4, 1, 100, "nodeZ");
    d.deadline_ms = 20000;
    s_put_ok (s, &a);
    s_put_ok (s, &b);
    s_put_ok (s, &c);
    s_put_ok (s, &d);
    store_msg_t m = s_view (&a);
    ck_assert_int_eq (store_put (s, &m, NULL), STORE_DUPLICATE); // starts no second clock
    s_commit_ok (s);

    // One clock per recipient, all open.
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM deadlines"), 4);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM deadlines WHERE seq = 1"), 2);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM deadlines WHERE seq = 3"), 0);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM deadlines WHERE state = 1"), 4);
    ck_assert_int_eq (s_sql_int (db, "SELECT due_ms FROM deadlines WHERE seq = 2"), 5000);
    ck_assert_int_eq (s_sql_int (db, "SELECT remind_ms FROM deadlines WHERE seq = 2"), 3000);
    ck_assert_int_eq (s_sql_int (db, "SELECT remind_ms FROM deadlines WHERE seq = 4"), 20000);

    // The clocks are in the store: they survive a restart (close, reopen).
    store_close (&s);
    s = s_open (db, 0, 0);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM deadlines WHERE state = 1"), 4);

    // Before any reminder time: nothing moves, nothing is staged.
    clocks_t k;
    s_tick_is (s, 2999, 10, &k, 0);
    ck_assert (!store_pending (s));

    // b's reminder and deadline both passed (the broker was down): straight to MISSED.
    s_tick_is (s, 6000, 10, &k, 1);
    ck_assert_str_eq (k.sender[0], "nodeB");
    ck_assert_str_eq (k.recipient[0], "nodeX");
    ck_assert_uint_eq (k.num[0], 2);
    ck_assert_int_eq (k.due_ms[0], 5000);
    ck_assert_int_eq (k.state[0], STORE_DEADLINE_MISSED);
    ck_assert_int_eq (k.answered_ms[0], 0);
    ck_assert (store_pending (s));
    // Staged: dropped if never committed, then done again.
    store_close (&s);
    ck_assert_int_eq (s_clock_state (db, 2, "nodeX"), STORE_DEADLINE_OPEN);
    s = s_open (db, 0, 0);
    s_tick_is (s, 6000, 10, &k, 1);
    ck_assert_int_eq (k.state[0], STORE_DEADLINE_MISSED);
    s_commit_ok (s);
    ck_assert_int_eq (s_clock_state (db, 2, "nodeX"), STORE_DEADLINE_MISSED);
    s_tick_is (s, 7999, 10, &k, 0);

    // a's reminder: DUE_SOON for X and Y, max bounding each run.
    s_tick_is (s, 8000, 1, &k, 1);
    ck_assert_int_eq (k.state[0], STORE_DEADLINE_DUE_SOON);
    s_tick_is (s, 8000, 1, &k, 1);
    ck_assert_int_eq (k.state[0], STORE_DEADLINE_DUE_SOON);
    s_tick_is (s, 8000, 10, &k, 0); // each reminded once
    s_commit_ok (s);
    ck_assert_int_eq (s_clock_state (db, 1, "nodeX"), STORE_DEADLINE_DUE_SOON);
    ck_assert_int_eq (s_clock_state (db, 1, "nodeY"), STORE_DEADLINE_DUE_SOON);
    s_tick_is (s, 9999, 10, &k, 0);

    // Lists: soonest first, for the sender and for the recipient.
    clocks_t l = {0};
    ck_assert_int_eq (store_deadlines_list (s, "nodeX", 10, s_clock_cb, &l), 2);
    ck_assert_uint_eq (l.num[0], 2); // due 5000, missed
    ck_assert_str_eq (l.sender[0], "nodeB");
    ck_assert_int_eq (l.state[0], STORE_DEADLINE_MISSED);
    ck_assert_int_eq (l.due_ms[0], 5000);
    ck_assert_uint_eq (l.num[1], 1); // due 10000, reminded
    ck_assert_str_eq (l.sender[1], "nodeA");
    ck_assert_str_eq (l.recipient[1], "nodeX");
    ck_assert_int_eq (l.state[1], STORE_DEADLINE_DUE_SOON);
    ck_assert_int_eq (l.due_ms[1], 10000);
    memset (&l, 0, sizeof l);
    ck_assert_int_eq (store_deadlines_list (s, "nodeA", 10, s_clock_cb, &l), 3);
    ck_assert_int_eq (l.due_ms[0], 10000);
    ck_assert_int_eq (l.due_ms[1], 10000);
    ck_assert_int_ge (s_clock_find (&l, "nodeA", 1, "nodeX"), 0);
    ck_assert_int_ge (s_clock_find (&l, "nodeA", 1, "nodeY"), 0);
    ck_assert_int_eq (s_clock_find (&l, "nodeA", 4, "nodeZ"), 2);
    ck_assert_int_eq (l.state[2], STORE_DEADLINE_OPEN);
    memset (&l, 0, sizeof l);
    ck_assert_int_eq (store_deadlines_list (s, "nodeA", 1, s_clock_cb, &l), 1); // max
    ck_assert_int_eq (l.due_ms[0], 10000);
    memset (&l, 0, sizeof l);
    ck_assert_int_eq (store_deadlines_list (s, "nodeB", 10, s_clock_cb, &l), 1);
    ck_assert_int_eq (store_deadlines_list (s, "nodeQ", 10, s_clock_cb, &l), 0);

    // Y answers a before its deadline: only Y's clock stops.
    ck_assert_int_eq (store_deadline_answer (s, "nodeA", a.id, "nodeY", 9500), 1);
    ck_assert_int_eq (store_deadline_answer (s, "nodeA", a.id, "nodeY", 9600), 0); // once
    ck_assert_int_eq (store_deadline_answer (s, "nodeA", a.id, "nodeZ", 9600), 0); // not asked
    ck_assert_int_eq (store_deadline_answer (s, "nodeQ", a.id, "nodeX", 9600), 0); // not a's sender
    ck_assert_int_eq (store_deadline_answer (s, "nodeA", c.id, "nodeX", 9600), 0); // no clock
    s_commit_ok (s);
    ck_assert_int_eq (s_clock_state (db, 1, "nodeY"), STORE_DEADLINE_ANSWERED);
    ck_assert_int_eq (s_sql_int (db, "SELECT answered_ms FROM deadlines"
                                     " WHERE seq = 1 AND recipient = 'nodeY'"),
                      9500);
    ck_assert_int_eq (s_clock_state (db, 1, "nodeX"), STORE_DEADLINE_DUE_SOON);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM deadlines"
                                     " WHERE answered_ms IS NOT NULL"),
                      1);
    memset (&l, 0, sizeof l);
    ck_assert_int_eq (store_deadlines_list (s, "nodeY", 10, s_clock_cb, &l), 0);
    ck_assert_int_eq (store_deadlines_list (s, "nodeA", 10, s_clock_cb, &l), 2);
    ck_assert_int_lt (s_clock_find (&l, "nodeA", 1, "nodeY"), 0);

    // a's deadline: X missed; Y's answered clock is left alone.
    s_tick_is (s, 10000, 10, &k, 1);
    ck_assert_str_eq (k.recipient[0], "nodeX");
    ck_assert_uint_eq (k.num[0], 1);
    ck_assert_int_eq (k.state[0], STORE_DEADLINE_MISSED);
    s_commit_ok (s);
    ck_assert_int_eq (s_clock_state (db, 1, "nodeY"), STORE_DEADLINE_ANSWERED);
    s_tick_is (s, 15000, 10, &k, 0);

    /* A late answer to a missed clock is recorded (1) and the clock stays
       missed, listed with its answer time. */
    ck_assert_int_eq (store_deadline_answer (s, "nodeB", b.id, "nodeX", 12000), 1);
    ck_assert_int_eq (store_deadline_answer (s, "nodeB", b.id, "nodeX", 12500), 0);
    s_commit_ok (s);
    ck_assert_int_eq (s_clock_state (db, 2, "nodeX"), STORE_DEADLINE_MISSED);
    memset (&l, 0, sizeof l);
    ck_assert_int_eq (store_deadlines_list (s, "nodeB", 10, s_clock_cb, &l), 1);
    ck_assert_int_eq (l.state[0], STORE_DEADLINE_MISSED);
    ck_assert_int_eq (l.answered_ms[0], 12000);

    // d had no reminder time: reminded at its deadline is too late, so missed.
    s_tick_is (s, 20000, 10, &k, 1);
    ck_assert_str_eq (k.recipient[0], "nodeZ");
    ck_assert_int_eq (k.state[0], STORE_DEADLINE_MISSED);
    s_commit_ok (s);
    store_close (&s);
}
END_TEST

// A delivered request is kept while any of its clocks runs; answered or missed, it goes.
START_TEST (test_store_deadline_purge)
{
    char db[192];
    s_dir (db, sizeof db);
    store_t *s = s_open (db, 0, 0);
    tmsg_t a, b;
    const char *xy[] = {"nodeX", "nodeY"};
    s_msg (&a, "nodeA", 1, 0, 100, "nodeX");
    a.rcpt[1] = xy[1];
    a.n_rcpt = 2;
    a.deadline_ms = 10000;
    a.remind_ms = 5000;
    s_msg (&b, "nodeA", 2, 0, 100, "nodeX");
    b.deadline_ms = 3000;
    s_put_ok (s, &a);
    s_put_ok (s, &b);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq (store_delivered (s, xy[i], "nodeA", a.id, 100, NULL), STORE_OK);
    ck_assert_int_eq (store_delivered (s, "nodeX", "nodeA", b.id, 100, NULL), STORE_OK);
    s_commit_ok (s);

    int64_t purged = -1;
    ck_assert_int_eq (store_purge (s, 1000, &purged), STORE_OK);
    ck_assert_int_eq (purged, 0); // both clocks of a, and b's, are open
    // b's clock is missed: nothing to wait for any more.
    clocks_t k;
    s_tick_is (s, 3000, 10, &k, 1);
    s_commit_ok (s);
    ck_assert_int_eq (store_purge (s, 1000, &purged), STORE_OK);
    ck_assert_int_eq (purged, 1);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages WHERE seq = 2"), 0);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM deadlines WHERE seq = 2"), 0);
    // a's clocks reminded (still running): kept.
    s_tick_is (s, 5000, 10, &k, 2);
    s_commit_ok (s);
    ck_assert_int_eq (store_purge (s, 6000, &purged), STORE_OK);
    ck_assert_int_eq (purged, 0);
    // X answers: Y's clock still runs.
    ck_assert_int_eq (store_deadline_answer (s, "nodeA", a.id, "nodeX", 6000), 1);
    s_commit_ok (s);
    ck_assert_int_eq (store_purge (s, 7000, &purged), STORE_OK);
    ck_assert_int_eq (purged, 0);
    s_fetch_is (s, "nodeY", "nodeA", a.id, STORE_OK, &a);
    ck_assert_int_eq (store_deadline_answer (s, "nodeA", a.id, "nodeY", 7000), 1);
    s_commit_ok (s);
    ck_assert_int_eq (store_purge (s, 7000, &purged), STORE_OK);
    ck_assert_int_eq (purged, 1);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM messages"), 0);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM deadlines"), 0);
    clocks_t l = {0};
    ck_assert_int_eq (store_deadlines_list (s, "nodeA", 10, s_clock_cb, &l), 0);
    store_close (&s);
}
END_TEST

Suite *
store_suite (void)
{
    Suite *s = suite_create ("store");
    TCase *tc = tcase_create ("open");
    tcase_set_timeout (tc, 20);
    tcase_add_unchecked_fixture (tc, s_root_make, s_root_remove);
    tcase_add_test (tc, test_store_open_new);
    tcase_add_test (tc, test_store_commit_syncs);
    tcase_add_test (tc, test_store_migrate_v1);
    tcase_add_test (tc, test_store_migration_atomic);
    tcase_add_test (tc, test_store_migrate_v2);
    tcase_add_test (tc, test_store_migration_v3_atomic);
    tcase_add_test (tc, test_store_newer_refused);
    tcase_add_test (tc, test_store_foreign_refused);
    suite_add_tcase (s, tc);

    tc = tcase_create ("groups");
    tcase_set_timeout (tc, 20);
    tcase_add_unchecked_fixture (tc, s_root_make, s_root_remove);
    tcase_add_test (tc, test_store_put_reopen);
    tcase_add_test (tc, test_store_uncommitted_vanishes);
    tcase_add_test (tc, test_store_sigkill);
    tcase_add_test (tc, test_store_duplicates);
    suite_add_tcase (s, tc);

    tc = tcase_create ("mailbox");
    tcase_set_timeout (tc, 20);
    tcase_add_unchecked_fixture (tc, s_root_make, s_root_remove);
    tcase_add_test (tc, test_store_mailbox_order);
    tcase_add_test (tc, test_store_delivered);
    tcase_add_test (tc, test_store_receipts);
    tcase_add_test (tc, test_store_purge);
    suite_add_tcase (s, tc);

    tc = tcase_create ("delivery");
    tcase_set_timeout (tc, 20);
    tcase_add_unchecked_fixture (tc, s_root_make, s_root_remove);
    tcase_add_test (tc, test_store_scan);
    tcase_add_test (tc, test_store_scan_damaged);
    tcase_add_test (tc, test_store_list);
    tcase_add_test (tc, test_store_fetch);
    tcase_add_test (tc, test_store_expire);
    tcase_add_test (tc, test_store_deadlines);
    tcase_add_test (tc, test_store_deadline_purge);
    suite_add_tcase (s, tc);

    tc = tcase_create ("faults");
    tcase_set_timeout (tc, 20);
    tcase_add_unchecked_fixture (tc, s_root_make, s_root_remove);
    tcase_add_test (tc, test_store_full_bound);
    tcase_add_test (tc, test_store_disk_full);
    tcase_add_test (tc, test_store_error_rolls_back);
    tcase_add_test (tc, test_store_damaged_envelope);
    tcase_add_test (tc, test_store_check);
    tcase_add_test (tc, test_store_checkpoint);
    tcase_add_test (tc, test_store_checkpointer_thread);
    suite_add_tcase (s, tc);

    tc = tcase_create ("backlog");
    tcase_set_timeout (tc, 30);
    tcase_add_unchecked_fixture (tc, s_root_make, s_root_remove);
    tcase_add_test (tc, test_store_backlog);
    suite_add_tcase (s, tc);
    return s;
}
