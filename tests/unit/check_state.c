/*  The client library's durable state (client/state.c): the directory, its
    lock (in this process and across fork), refusals at open, group commit
    (gone before, durable after, one WAL fsync per group, SIGKILL), the
    outbox and inbox with their keyset pages, deduplication, acknowledgement,
    purge, damaged envelopes, a full disk, argument checks and checkpoints.

    A wrapping SQLite VFS registered as the default counts syncs (of the WAL
    and of the database file) and can fail WAL writes with SQLITE_FULL, so
    the tests see what the state's own connection does.                   */
#include "suites.h"

#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define APP_ID 0x4C53434C

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
    snprintf (s_root, sizeof s_root, "/tmp/liaison-state-XXXXXX");
    if (!mkdtemp (s_root))
        s_root[0] = 0;
}

static void
s_root_remove (void)
{
    if (s_root[0])
        nftw (s_root, s_rm, 8, FTW_DEPTH | FTW_PHYS);
}

/* A fresh state directory path for one test (not created: state_open
   does that); db gets <dir>/state.db. */
static void
s_dir (char *dir, size_t len, char *db, size_t dblen)
{
    ck_assert_msg (s_root[0], "no test root directory");
    char parent[128];
    snprintf (parent, sizeof parent, "%s/tXXXXXX", s_root);
    ck_assert_ptr_nonnull (mkdtemp (parent));
    snprintf (dir, len, "%s/state", parent);
    if (db)
        snprintf (db, dblen, "%s/state.db", dir);
}

static state_t *
s_open (const char *dir)
{
    char err[1024] = "";
    state_t *s = state_open (dir, err, sizeof err);
    ck_assert_msg (s != NULL, "state_open: %s", err);
    return s;
}

// Expects state_open to refuse dir with an error containing `needle`.
static void
s_open_refused (const char *dir, const char *needle)
{
    char err[1024] = "";
    state_t *s = state_open (dir, err, sizeof err);
    ck_assert_msg (s == NULL, "state_open accepted %s", dir ? dir : "(null)");
    ck_assert_msg (strstr (err, needle), "error '%s' does not say '%s'", err, needle);
}

static void
s_commit_ok (state_t *s)
{
    ck_assert_msg (state_commit (s) == 0, "state_commit: %s", state_error (s));
    ck_assert (!state_pending (s));
}

// A test id numbered n.
static void
s_id (uint8_t id[16], uint32_t n)
{
    memset (id, 0x5A, 16);
    id[0] = (uint8_t) (n >> 24);
    id[1] = (uint8_t) (n >> 16);
    id[2] = (uint8_t) (n >> 8);
    id[3] = (uint8_t) n;
}

static uint32_t
s_id_num (const uint8_t id[16])
{
    return ((uint32_t) id[0] << 24) | ((uint32_t) id[1] << 16) | ((uint32_t) id[2] << 8) | id[3];
}

// A test envelope for message n: len bytes following from n.
static size_t
s_env (uint8_t *buf, uint32_t n, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t) (n * 31 + i * 7 + 1);
    return len;
}

static size_t
s_env_len (uint32_t n)
{
    return 20 + (n * 37) % 300;
}

static void
s_out_put (state_t *s, uint32_t n)
{
    uint8_t id[16], env[400];
    s_id (id, n);
    size_t len = s_env (env, n, s_env_len (n));
    ck_assert_msg (state_outbox_put (s, id, env, len, 1000 + n) == 0, "state_outbox_put %u: %s", n,
                   state_error (s));
    ck_assert (state_pending (s));
}

// Puts message n from sender into the inbox; returns what state_inbox_put did.
static int
s_in_put (state_t *s, const char *sender, uint32_t n)
{
    uint8_t id[16], env[400];
    s_id (id, n);
    size_t len = s_env (env, n, s_env_len (n));
    int rc = state_inbox_put (s, sender, id, env, len, 1000 + n);
    ck_assert_msg (rc >= 0, "state_inbox_put %u: %s", n, state_error (s));
    return rc;
}

static int
s_in_ack (state_t *s, const char *sender, uint32_t n, int64_t when)
{
    uint8_t id[16];
    s_id (id, n);
    int rc = state_inbox_ack (s, sender, id, when);
    ck_assert_msg (rc >= 0, "state_inbox_ack %u: %s", n, state_error (s));
    return rc;
}

// What page callbacks saw.
typedef struct {
    uint32_t nums[256];
    uint64_t pos[256];
    char senders[256][72];
    size_t n;
    size_t stop_at; // return nonzero on this visit (1-based); 0: never
    state_t *s;     // for callbacks that call back into the state
    int ack;        // inbox: acknowledge each one visited
    int done;       // outbox: remove each one visited
    int commit_rc;  // what state_commit returned inside the callback
} seen_t;

// Checks that an envelope is the one s_env made for its id.
static void
s_env_check (const uint8_t id[16], const uint8_t *envelope, size_t len)
{
    uint32_t n = s_id_num (id);
    uint8_t want[400];
    size_t want_len = s_env (want, n, s_env_len (n));
    ck_assert_uint_eq (len, want_len);
    ck_assert_msg (memcmp (envelope, want, len) == 0, "envelope of %u differs", n);
}

static int
s_out_fn (void *arg, uint64_t pos, const uint8_t id[16], const uint8_t *envelope, size_t len)
{
    seen_t *seen = arg;
    ck_assert_uint_lt (seen->n, 256);
    s_env_check (id, envelope, len);
    seen->nums[seen->n] = s_id_num (id);
    seen->pos[seen->n] = pos;
    seen->n++;
    if (seen->done) {
        ck_assert_msg (state_outbox_done (seen->s, id) == 0, "%s", state_error (seen->s));
        seen->commit_rc = state_commit (seen->s);
    }
    return seen->stop_at && seen->n == seen->stop_at;
}

static int
s_in_fn (void *arg, uint64_t pos, const char *sender, const uint8_t id[16], const uint8_t *envelope,
         size_t len)
{
    seen_t *seen = arg;
    ck_assert_uint_lt (seen->n, 256);
    s_env_check (id, envelope, len);
    seen->nums[seen->n] = s_id_num (id);
    seen->pos[seen->n] = pos;
    snprintf (seen->senders[seen->n], sizeof seen->senders[0], "%s", sender);
    seen->n++;
    if (seen->ack)
        ck_assert_int_eq (state_inbox_ack (seen->s, sender, id, 5), 0);
    return seen->stop_at && seen->n == seen->stop_at;
}

// One integer from a statement on the file through a connection of our own.
static int64_t
s_sql_int (const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    ck_assert_int_eq (sqlite3_open_v2 (db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout (h, 5000);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2 (h, sql, -1, &st, NULL);
    ck_assert_msg (rc == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg (h));
    ck_assert_msg (sqlite3_step (st) == SQLITE_ROW, "%s: %s", sql, sqlite3_errmsg (h));
    int64_t v = sqlite3_column_int64 (st, 0);
    sqlite3_finalize (st);
    sqlite3_close (h);
    return v;
}

static void
s_sql_exec (const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    ck_assert_int_eq (sqlite3_open_v2 (db, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                      SQLITE_OK);
    sqlite3_busy_timeout (h, 5000);
    char *msg = NULL;
    int rc = sqlite3_exec (h, sql, NULL, NULL, &msg);
    ck_assert_msg (rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
    sqlite3_close (h);
}

static const char *
s_sql_text (const char *db, const char *sql, char *out, size_t len)
{
    sqlite3 *h = NULL;
    ck_assert_int_eq (sqlite3_open_v2 (db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq (sqlite3_prepare_v2 (h, sql, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq (sqlite3_step (st), SQLITE_ROW);
    snprintf (out, len, "%s", (const char *) sqlite3_column_text (st, 0));
    sqlite3_finalize (st);
    sqlite3_close (h);
    return out;
}

/* Flips one byte of the envelope of the row at pos in table, behind the
   state's back (the blob stays a blob). */
static void
s_flip_envelope (const char *db, const char *table, int64_t pos)
{
    sqlite3 *h = NULL;
    ck_assert_int_eq (sqlite3_open_v2 (db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout (h, 5000);
    char sql[128];
    snprintf (sql, sizeof sql, "SELECT envelope FROM %s WHERE pos = ?", table);
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq (sqlite3_prepare_v2 (h, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64 (st, 1, pos);
    ck_assert_int_eq (sqlite3_step (st), SQLITE_ROW);
    uint8_t buf[400];
    int len = sqlite3_column_bytes (st, 0);
    ck_assert (len > 10 && len <= (int) sizeof buf);
    memcpy (buf, sqlite3_column_blob (st, 0), (size_t) len);
    sqlite3_finalize (st);
    buf[9] ^= 0xFF;
    snprintf (sql, sizeof sql, "UPDATE %s SET envelope = ? WHERE pos = ?", table);
    ck_assert_int_eq (sqlite3_prepare_v2 (h, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_blob (st, 1, buf, len, SQLITE_STATIC);
    sqlite3_bind_int64 (st, 2, pos);
    ck_assert_int_eq (sqlite3_step (st), SQLITE_DONE);
    ck_assert_int_eq (sqlite3_changes (h), 1);
    sqlite3_finalize (st);
    sqlite3_close (h);
}

static off_t
s_size (const char *path)
{
    struct stat sb;
    return stat (path, &sb) == 0 ? sb.st_size : -1;
}

// ---------------------------------------------------------------------------
// A VFS over the default one: counts syncs, can fail WAL writes, can skip syncs.

typedef struct {
    sqlite3_file base;
    sqlite3_file *real; // the wrapped file, allocated right after this struct
    int is_wal;
    int is_main;
} tfile_t;

static sqlite3_vfs *s_real_vfs;
static sqlite3_vfs s_tvfs;
static int s_wal_syncs;
static int s_db_syncs;  // syncs of the database file: checkpoints
static int s_wal_full;  // WAL writes fail with SQLITE_FULL while set
static int s_fake_sync; // syncs are counted but not done (fast, not durable)

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
    if (((tfile_t *) f)->is_main)
        s_db_syncs++;
    if (s_fake_sync)
        return SQLITE_OK;
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
    t->is_main = (flags & SQLITE_OPEN_MAIN_DB) != 0;
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
    s_tvfs = *s_real_vfs;
    s_tvfs.zName = "liaison-state-test";
    s_tvfs.szOsFile = (int) sizeof (tfile_t) + s_real_vfs->szOsFile;
    s_tvfs.xOpen = s_io_open;
    s_tvfs.pNext = NULL;
    ck_assert_int_eq (sqlite3_vfs_register (&s_tvfs, 1), SQLITE_OK);
    s_wal_syncs = s_db_syncs = 0;
    s_wal_full = s_fake_sync = 0;
}

static void
s_vfs_remove (void)
{
    sqlite3_vfs_unregister (&s_tvfs);
    sqlite3_vfs_register (s_real_vfs, 1);
}

// ---------------------------------------------------------------------------
// The directory, its lock, refusals.

START_TEST (test_state_open_new)
{
    char dir[192], db[224], path[240];
    s_dir (dir, sizeof dir, db, sizeof db);
    umask (022);
    state_t *s = s_open (dir);
    struct stat sb;
    ck_assert_int_eq (stat (dir, &sb), 0);
    ck_assert (S_ISDIR (sb.st_mode));
    ck_assert_msg ((sb.st_mode & 0777) == 0700, "directory mode %o", sb.st_mode & 0777);
    snprintf (path, sizeof path, "%s/lock", dir);
    ck_assert_int_eq (stat (path, &sb), 0);
    ck_assert_msg ((sb.st_mode & 0777) == 0600, "lock mode %o", sb.st_mode & 0777);
    ck_assert_int_eq (stat (db, &sb), 0);
    ck_assert_msg ((sb.st_mode & 0777) == 0600, "database mode %o", sb.st_mode & 0777);
    snprintf (path, sizeof path, "%s-wal", db);
    ck_assert_int_eq (stat (path, &sb), 0);
    ck_assert_msg ((sb.st_mode & 0777) == 0600, "WAL mode %o", sb.st_mode & 0777);
    char mode[16];
    ck_assert_str_eq (s_sql_text (db, "PRAGMA journal_mode", mode, sizeof mode), "wal");
    ck_assert_int_eq (s_sql_int (db, "PRAGMA user_version"), STATE_SCHEMA_VERSION);
    ck_assert_int_eq (s_sql_int (db, "PRAGMA application_id"), APP_ID);
    ck_assert_str_eq (state_error (s), "no error");
    ck_assert (!state_pending (s));
    ck_assert_int_eq (state_outbox_count (s), 0);
    ck_assert_int_eq (state_inbox_unacked (s), 0);
    ck_assert_int_eq (state_commit (s), 0); // nothing staged: nothing to do
    state_close (&s);
    ck_assert_ptr_null (s);
    state_close (&s); // safe twice
    state_close (NULL);
    ck_assert_ptr_nonnull (state_error (NULL));

    // An existing directory (made by someone else) is used as it is.
    s = s_open (dir);
    state_close (&s);
    char other[192];
    s_dir (other, sizeof other, NULL, 0);
    *strrchr (other, '/') = 0; // the parent, which mkdtemp made
    s = s_open (other);
    state_close (&s);
}
END_TEST

START_TEST (test_state_open_refused)
{
    char dir[192], path[256];
    s_dir (dir, sizeof dir, NULL, 0);
    // The parent is not created.
    snprintf (path, sizeof path, "%s/deeper", dir);
    s_open_refused (path, "its parent directory does not exist; create the parent first");
    ck_assert_int_eq (access (dir, F_OK), -1);
    // A file where the directory should be.
    s_dir (dir, sizeof dir, NULL, 0);
    FILE *f = fopen (dir, "w");
    ck_assert_ptr_nonnull (f);
    fclose (f);
    snprintf (path, sizeof path, "state directory %s exists and is not a directory", dir);
    s_open_refused (dir, path);
    s_open_refused (NULL, "no state directory given");
    s_open_refused ("", "no state directory given");
    ck_assert_ptr_null (state_open (NULL, NULL, 0)); // no error buffer: no crash
}
END_TEST

// A second open in the same process is refused: flock is per open file description.
START_TEST (test_state_lock_same_process)
{
    char dir[192];
    s_dir (dir, sizeof dir, NULL, 0);
    state_t *s = s_open (dir);
    char want[320];
    snprintf (want, sizeof want,
              "state directory %s is in use by another process (one process per state "
              "directory)",
              dir);
    char err[1024] = "";
    ck_assert_ptr_null (state_open (dir, err, sizeof err));
    ck_assert_str_eq (err, want);
    // The refused open left the first one working.
    s_out_put (s, 1);
    s_commit_ok (s);
    state_close (&s);
    // Closing released it.
    s = s_open (dir);
    ck_assert_int_eq (state_outbox_count (s), 1);
    state_close (&s);
}
END_TEST

// Forks a child that tries to open dir; returns its exit code: 0 opened, 1 in use, 2 other.
static int
s_child_open (const char *dir, uint32_t put)
{
    pid_t pid = fork ();
    ck_assert_int_ge (pid, 0);
    if (pid == 0) {
        char err[1024] = "";
        state_t *s = state_open (dir, err, sizeof err);
        if (!s)
            _exit (strstr (err, "is in use by another process") ? 1 : 2);
        uint8_t id[16], env[8] = {1, 2, 3};
        s_id (id, put);
        int ok = state_outbox_put (s, id, env, sizeof env, 1) == 0 && state_commit (s) == 0;
        state_close (&s);
        _exit (ok ? 0 : 3);
    }
    int status = 0;
    ck_assert_int_eq (waitpid (pid, &status, 0), pid);
    ck_assert (WIFEXITED (status));
    return WEXITSTATUS (status);
}

START_TEST (test_state_lock_fork)
{
    char dir[192];
    s_dir (dir, sizeof dir, NULL, 0);
    state_t *s = s_open (dir);
    ck_assert_int_eq (s_child_open (dir, 7), 1);
    state_close (&s);
    ck_assert_int_eq (s_child_open (dir, 8), 0);
    s = s_open (dir);
    ck_assert_int_eq (state_outbox_count (s), 1);
    state_close (&s);
}
END_TEST

START_TEST (test_state_newer_refused)
{
    char dir[192], db[224];
    s_dir (dir, sizeof dir, db, sizeof db);
    state_t *s = s_open (dir);
    state_close (&s);
    s_sql_exec (db, "PRAGMA user_version = 9");
    char want[128];
    snprintf (want, sizeof want, "schema 9 is newer than this libliaison knows (%d)",
              STATE_SCHEMA_VERSION);
    s_open_refused (dir, want);
    s_open_refused (dir, "upgrade libliaison");
    ck_assert_int_eq (s_sql_int (db, "PRAGMA user_version"), 9);
    // The refusal let go of the lock.
    s_sql_exec (db, "PRAGMA user_version = 2");
    s = s_open (dir);
    state_close (&s);
}
END_TEST

// Files that are not Liaison client state are refused and left untouched.
START_TEST (test_state_foreign_refused)
{
    char dir[192], db[224];
    s_dir (dir, sizeof dir, db, sizeof db);
    ck_assert_int_eq (mkdir (dir, 0700), 0);
    FILE *f = fopen (db, "w");
    ck_assert_ptr_nonnull (f);
    fputs ("not a database at all, just some text that happens to be here\n", f);
    fclose (f);
    off_t size = s_size (db);
    s_open_refused (dir, "not a SQLite database");
    s_open_refused (dir, "give the library another state directory");
    ck_assert_int_eq (s_size (db), size);

    // Another program's SQLite database: refused, not switched to WAL.
    s_dir (dir, sizeof dir, db, sizeof db);
    ck_assert_int_eq (mkdir (dir, 0700), 0);
    s_sql_exec (db, "CREATE TABLE customers (name TEXT); INSERT INTO customers VALUES ('x');");
    s_open_refused (dir, "not Liaison client state");
    s_open_refused (dir, "give the library a state directory of its own");
    char mode[16];
    ck_assert_str_eq (s_sql_text (db, "PRAGMA journal_mode", mode, sizeof mode), "delete");

    // The broker's store is recognised as such.
    s_dir (dir, sizeof dir, db, sizeof db);
    ck_assert_int_eq (mkdir (dir, 0700), 0);
    s_sql_exec (db, "PRAGMA application_id = 1280528971; CREATE TABLE messages (x);");
    s_open_refused (dir, "a liaisond broker store");
}
END_TEST

// ---------------------------------------------------------------------------
// Group commit and durability.

// Staged and never committed: gone after close; committed: there after reopen.
START_TEST (test_state_staged_lost)
{
    char dir[192];
    s_dir (dir, sizeof dir, NULL, 0);
    state_t *s = s_open (dir);
    for (uint32_t i = 0; i < 3; i++)
        s_out_put (s, i);
    ck_assert_int_eq (s_in_put (s, "nodeA", 1), 1);
    ck_assert_int_eq (s_in_put (s, "nodeA", 2), 1);
    s_commit_ok (s);
    s_out_put (s, 3);
    s_out_put (s, 4);
    ck_assert_int_eq (s_in_put (s, "nodeA", 3), 1);
    ck_assert_int_eq (s_in_ack (s, "nodeA", 1, 50), 0);
    ck_assert (state_pending (s));
    ck_assert_int_eq (state_outbox_count (s), 5); // visible inside the group
    ck_assert_int_eq (state_inbox_unacked (s), 2);
    state_close (&s);

    s = s_open (dir);
    ck_assert (!state_pending (s));
    ck_assert_int_eq (state_outbox_count (s), 3);
    ck_assert_int_eq (state_inbox_unacked (s), 2);  // 1 and 2: the ack was not committed
    ck_assert_int_eq (s_in_put (s, "nodeA", 3), 1); // new: it never existed
    ck_assert_int_eq (s_in_put (s, "nodeA", 2), 0);
    s_commit_ok (s);
    state_close (&s);
    s = s_open (dir);
    ck_assert_int_eq (state_inbox_unacked (s), 3);
    state_close (&s);
}
END_TEST

/* synchronous=FULL in WAL mode syncs the WAL at every commit (NORMAL never
   does); staging alone syncs nothing: one fsync per group. */
START_TEST (test_state_commit_syncs)
{
    char dir[192];
    s_dir (dir, sizeof dir, NULL, 0);
    s_vfs_install ();
    state_t *s = s_open (dir);
    uint32_t n = 0;
    s_wal_syncs = s_db_syncs = 0;
    for (int i = 0; i < 100; i++) {
        s_out_put (s, n);
        ck_assert_int_eq (s_in_put (s, "nodeA", n), 1);
        n++;
    }
    ck_assert_int_eq (s_wal_syncs, 0);
    s_commit_ok (s);
    ck_assert_msg (s_wal_syncs >= 1 && s_wal_syncs <= 2, "%d syncs for one commit", s_wal_syncs);
    s_wal_syncs = 0;
    for (int g = 0; g < 5; g++) {
        for (int i = 0; i < 10; i++)
            s_out_put (s, n++);
        int before = s_wal_syncs;
        s_commit_ok (s);
        ck_assert_msg (s_wal_syncs > before, "commit %d did not sync the WAL", g);
    }
    ck_assert_msg (s_wal_syncs <= 10, "%d syncs for 5 commits", s_wal_syncs);
    s_wal_syncs = 0;
    s_commit_ok (s); // nothing staged: no sync
    ck_assert_int_eq (s_wal_syncs, 0);
    ck_assert_int_eq (s_db_syncs, 0); // and no checkpoint yet
    state_close (&s);
    s_vfs_remove ();
}
END_TEST

// A process killed with SIGKILL keeps every committed change, and only those.
START_TEST (test_state_sigkill)
{
    char dir[192];
    s_dir (dir, sizeof dir, NULL, 0);
    int fds[2];
    ck_assert_int_eq (pipe (fds), 0);
    pid_t pid = fork ();
    ck_assert_int_ge (pid, 0);
    if (pid == 0) {
        close (fds[0]);
        char err[1024];
        state_t *s = state_open (dir, err, sizeof err);
        int ok = s != NULL;
        for (uint32_t i = 0; ok && i < 70; i++) {
            uint8_t id[16], env[400];
            s_id (id, i);
            size_t len = s_env (env, i, s_env_len (i));
            ok = state_outbox_put (s, id, env, len, i) == 0
                 && state_inbox_put (s, "nodeA", id, env, len, i) == 1;
            if (ok && i % 10 == 9 && i < 50)
                ok = state_commit (s) == 0;
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

    // The kernel released the lock with the process.
    state_t *s = s_open (dir);
    ck_assert_int_eq (state_outbox_count (s), 50);
    ck_assert_int_eq (state_inbox_unacked (s), 50);
    seen_t seen = {0};
    uint64_t after = 0;
    ck_assert_int_eq (state_outbox_page (s, &after, 100, s_out_fn, &seen), 50);
    for (uint32_t i = 0; i < 50; i++)
        ck_assert_uint_eq (seen.nums[i], i);
    ck_assert_int_eq (s_in_put (s, "nodeA", 49), 0);
    ck_assert_int_eq (s_in_put (s, "nodeA", 50), 1);
    state_close (&s);
}
END_TEST

// ---------------------------------------------------------------------------
// Outbox.

START_TEST (test_state_outbox_pages)
{
    char dir[192], db[224];
    s_dir (dir, sizeof dir, db, sizeof db);
    state_t *s = s_open (dir);
    for (uint32_t i = 0; i < 25; i++)
        s_out_put (s, 100 + i);
    s_commit_ok (s);
    ck_assert_int_eq (state_outbox_count (s), 25);

    // Pages of 10 in insertion order; positions strictly increase.
    seen_t seen = {0};
    uint64_t after = 0, last = 0;
    ck_assert_int_eq (state_outbox_page (s, &after, 10, s_out_fn, &seen), 10);
    ck_assert_uint_eq (after, seen.pos[9]);
    ck_assert_int_eq (state_outbox_page (s, &after, 10, s_out_fn, &seen), 10);
    ck_assert_int_eq (state_outbox_page (s, &after, 10, s_out_fn, &seen), 5);
    ck_assert_int_eq (state_outbox_page (s, &after, 10, s_out_fn, &seen), 0);
    ck_assert_uint_eq (seen.n, 25);
    for (size_t i = 0; i < 25; i++) {
        ck_assert_uint_eq (seen.nums[i], 100 + i);
        ck_assert_uint_gt (seen.pos[i], last);
        last = seen.pos[i];
    }
    ck_assert_uint_eq (after, last);
    after = 0;
    ck_assert_int_eq (state_outbox_page (s, &after, 0, s_out_fn, &seen), 0);
    ck_assert_uint_eq (after, 0);
    ck_assert_int_eq (state_outbox_page (s, &after, 7, NULL, NULL), 7); // counted only
    ck_assert_uint_eq (after, seen.pos[6]);

    // A callback that stops: that entry counts, the cursor is on it.
    memset (&seen, 0, sizeof seen);
    seen.stop_at = 3;
    after = 0;
    ck_assert_int_eq (state_outbox_page (s, &after, 10, s_out_fn, &seen), 3);
    ck_assert_uint_eq (seen.n, 3);
    ck_assert_uint_eq (after, seen.pos[2]);
    after = seen.pos[2] - 1; // see it again
    memset (&seen, 0, sizeof seen);
    ck_assert_int_eq (state_outbox_page (s, &after, 1, s_out_fn, &seen), 1);
    ck_assert_uint_eq (seen.nums[0], 102);

    // A duplicate id changes nothing: same envelope, same place.
    uint8_t id[16], env[8] = {9, 9, 9};
    s_id (id, 105);
    ck_assert_int_eq (state_outbox_put (s, id, env, sizeof env, 1), 0);
    s_commit_ok (s);
    ck_assert_int_eq (state_outbox_count (s), 25);
    memset (&seen, 0, sizeof seen);
    after = 0;
    ck_assert_int_eq (state_outbox_page (s, &after, 100, s_out_fn, &seen), 25); // checks bytes
    ck_assert_uint_eq (seen.nums[5], 105);

    // Done removes (absent: also 0); the rest keeps its order.
    uint64_t last_pos = seen.pos[24];
    s_id (id, 124); // the last one
    ck_assert_int_eq (state_outbox_done (s, id), 0);
    s_id (id, 101);
    ck_assert_int_eq (state_outbox_done (s, id), 0);
    ck_assert_int_eq (state_outbox_done (s, id), 0);
    s_id (id, 999);
    ck_assert_int_eq (state_outbox_done (s, id), 0);
    s_commit_ok (s);
    ck_assert_int_eq (state_outbox_count (s), 23);
    // A position is never reused, even the last one's: a cursor past it sees new entries.
    s_out_put (s, 200);
    s_commit_ok (s);
    memset (&seen, 0, sizeof seen);
    after = last_pos;
    ck_assert_int_eq (state_outbox_page (s, &after, 10, s_out_fn, &seen), 1);
    ck_assert_uint_eq (seen.nums[0], 200);
    ck_assert_uint_gt (seen.pos[0], last_pos);
    state_close (&s);

    s = s_open (dir);
    memset (&seen, 0, sizeof seen);
    after = 0;
    ck_assert_int_eq (state_outbox_page (s, &after, 100, s_out_fn, &seen), 24);
    ck_assert_uint_eq (seen.nums[0], 100);
    ck_assert_uint_eq (seen.nums[1], 102);
    ck_assert_uint_eq (seen.nums[23], 200);
    state_close (&s);
}
END_TEST

/* A page callback may stage changes (remove what it resent) but not
   commit; the page goes on undisturbed. */
START_TEST (test_state_outbox_done_in_page)
{
    char dir[192];
    s_dir (dir, sizeof dir, NULL, 0);
    state_t *s = s_open (dir);
    for (uint32_t i = 0; i < 12; i++)
        s_out_put (s, i);
    s_commit_ok (s);
    seen_t seen = {.s = s, .done = 1, .commit_rc = 99};
    uint64_t after = 0;
    ck_assert_int_eq (state_outbox_page (s, &after, 8, s_out_fn, &seen), 8);
    ck_assert_int_eq (seen.commit_rc, -1);
    ck_assert_msg (strstr (state_error (s), "inside a page callback"), "%s", state_error (s));
    ck_assert (state_pending (s));
    uint64_t again = 0;
    ck_assert_int_eq (state_outbox_page (s, &again, 100, NULL, NULL), 4); // staged removals seen
    s_commit_ok (s);
    state_close (&s);
    s = s_open (dir);
    ck_assert_int_eq (state_outbox_count (s), 4);
    memset (&seen, 0, sizeof seen);
    after = 0;
    ck_assert_int_eq (state_outbox_page (s, &after, 100, s_out_fn, &seen), 4);
    ck_assert_uint_eq (seen.nums[0], 8);
    state_close (&s);
}
END_TEST

// ---------------------------------------------------------------------------
// Inbox.

START_TEST (test_state_inbox_dedupe)
{
    char dir[192];
    s_dir (dir, sizeof dir, NULL, 0);
    state_t *s = s_open (dir);
    ck_assert_int_eq (s_in_put (s, "nodeA", 1), 1);
    ck_assert_int_eq (s_in_put (s, "nodeA", 1), 0); // in the same group
    ck_assert_int_eq (s_in_put (s, "nodeB", 1), 1); // same id, other sender: another message
    s_commit_ok (s);
    ck_assert_int_eq (s_in_put (s, "nodeA", 1), 0);
    ck_assert_int_eq (s_in_put (s, "nodeA", 2), 1);
    s_commit_ok (s);
    ck_assert_int_eq (state_inbox_unacked (s), 3);

    // Acknowledged: still known.
    ck_assert_int_eq (s_in_ack (s, "nodeA", 1, 100), 0);
    ck_assert_int_eq (s_in_put (s, "nodeA", 1), 0);
    ck_assert_int_eq (s_in_ack (s, "nodeA", 1, 200), 0);  // again: still 0
    ck_assert_int_eq (s_in_ack (s, "nodeA", 77, 100), 1); // unknown
    ck_assert_int_eq (s_in_ack (s, "nodeC", 1, 100), 1);
    s_commit_ok (s);
    ck_assert_int_eq (state_inbox_unacked (s), 2);

    // Read marks.
    uint8_t id[16];
    s_id (id, 2);
    ck_assert_int_eq (state_inbox_is_read (s, "nodeA", id), 0);
    ck_assert_int_eq (state_inbox_read (s, "nodeA", id, 300), 0);
    ck_assert_int_eq (state_inbox_is_read (s, "nodeA", id), 1);
    ck_assert_int_eq (state_inbox_is_read (s, "nodeB", id), 2);
    ck_assert_int_eq (state_inbox_read (s, "nodeB", id, 300), 1);
    s_commit_ok (s);
    state_close (&s);

    // After a restart: acknowledged or not, known; the read mark stays.
    s = s_open (dir);
    ck_assert_int_eq (s_in_put (s, "nodeA", 1), 0);
    ck_assert_int_eq (s_in_put (s, "nodeA", 2), 0);
    ck_assert_int_eq (s_in_put (s, "nodeB", 1), 0);
    ck_assert_int_eq (s_in_put (s, "nodeB", 2), 1);
    ck_assert_int_eq (state_inbox_is_read (s, "nodeA", id), 1);
    s_commit_ok (s);
    ck_assert_int_eq (state_inbox_unacked (s), 3);
    state_close (&s);
}
END_TEST

START_TEST (test_state_inbox_pages)
{
    char dir[192], db[224];
    s_dir (dir, sizeof dir, db, sizeof db);
    state_t *s = s_open (dir);
    const char *senders[] = {"nodeA", "nodeB", "nodeC"};
    for (uint32_t i = 1; i <= 30; i++)
        ck_assert_int_eq (s_in_put (s, senders[i % 3], i), 1);
    s_commit_ok (s);
    for (uint32_t i = 2; i <= 30; i += 2) // every even one
        ck_assert_int_eq (s_in_ack (s, senders[i % 3], i, 100 + i), 0);
    s_commit_ok (s);
    ck_assert_int_eq (state_inbox_unacked (s), 15);
    // Acknowledged envelopes are dropped; their ids stay.
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM inbox WHERE envelope IS NULL"), 15);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM inbox"), 30);
    state_close (&s);

    // Unacknowledged ones survive a restart and come in arrival order, in pages.
    s = s_open (dir);
    seen_t seen = {0};
    uint64_t after = 0;
    ck_assert_int_eq (state_inbox_page (s, &after, 4, s_in_fn, &seen), 4);
    ck_assert_int_eq (state_inbox_page (s, &after, 4, s_in_fn, &seen), 4);
    ck_assert_int_eq (state_inbox_page (s, &after, 4, s_in_fn, &seen), 4);
    ck_assert_int_eq (state_inbox_page (s, &after, 4, s_in_fn, &seen), 3);
    ck_assert_int_eq (state_inbox_page (s, &after, 4, s_in_fn, &seen), 0);
    ck_assert_uint_eq (seen.n, 15);
    for (uint32_t k = 0; k < 15; k++) {
        uint32_t num = 2 * k + 1;
        ck_assert_uint_eq (seen.nums[k], num);
        ck_assert_str_eq (seen.senders[k], senders[num % 3]);
        if (k)
            ck_assert_uint_gt (seen.pos[k], seen.pos[k - 1]);
    }
    // Stopping early.
    memset (&seen, 0, sizeof seen);
    seen.stop_at = 2;
    after = 0;
    ck_assert_int_eq (state_inbox_page (s, &after, 10, s_in_fn, &seen), 2);
    ck_assert_uint_eq (after, seen.pos[1]);

    // Acknowledging from the callback: hidden from the next page at once.
    memset (&seen, 0, sizeof seen);
    seen.s = s;
    seen.ack = 1;
    after = 0;
    ck_assert_int_eq (state_inbox_page (s, &after, 5, s_in_fn, &seen), 5);
    ck_assert_int_eq (state_inbox_unacked (s), 10);
    after = 0;
    memset (&seen, 0, sizeof seen);
    ck_assert_int_eq (state_inbox_page (s, &after, 100, s_in_fn, &seen), 10);
    ck_assert_uint_eq (seen.nums[0], 11);
    s_commit_ok (s);
    state_close (&s);
    s = s_open (dir);
    ck_assert_int_eq (state_inbox_unacked (s), 10);
    state_close (&s);
}
END_TEST

START_TEST (test_state_purge)
{
    char dir[192], db[224];
    s_dir (dir, sizeof dir, db, sizeof db);
    state_t *s = s_open (dir);
    for (uint32_t i = 1; i <= 6; i++)
        ck_assert_int_eq (s_in_put (s, "nodeA", i), 1);
    s_commit_ok (s);
    ck_assert_int_eq (s_in_ack (s, "nodeA", 1, 100), 0);
    ck_assert_int_eq (s_in_ack (s, "nodeA", 2, 150), 0);
    ck_assert_int_eq (s_in_ack (s, "nodeA", 3, 300), 0);

    // Refused while a group is staged; the group is untouched.
    int64_t purged = -1;
    ck_assert_int_eq (state_purge (s, 200, &purged), -1);
    ck_assert_int_eq (purged, 0);
    ck_assert_msg (strstr (state_error (s), "call state_commit first"), "%s", state_error (s));
    ck_assert (state_pending (s));
    s_commit_ok (s);

    ck_assert_int_eq (state_purge (s, 200, &purged), 0);
    ck_assert_int_eq (purged, 2);
    ck_assert (!state_pending (s));
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM inbox"), 4);
    // Forgotten: a redelivery is new again. Still known: 3 (acked later), 4 (not acked).
    ck_assert_int_eq (s_in_put (s, "nodeA", 1), 1);
    ck_assert_int_eq (s_in_put (s, "nodeA", 3), 0);
    ck_assert_int_eq (s_in_put (s, "nodeA", 4), 0);
    s_commit_ok (s);
    // Unacknowledged ones are never purged, however old.
    ck_assert_int_eq (state_purge (s, INT64_MAX, &purged), 0);
    ck_assert_int_eq (purged, 1);
    ck_assert_int_eq (state_inbox_unacked (s), 4);
    ck_assert_int_eq (state_purge (s, INT64_MAX, NULL), 0);
    state_close (&s);
    ck_assert_int_eq (s_sql_int (db, "SELECT count (*) FROM inbox"), 4);
}
END_TEST

// ---------------------------------------------------------------------------
// Faults.

// A damaged envelope is never handed out; the entries around it are.
START_TEST (test_state_damaged_envelope)
{
    char dir[192], db[224];
    s_dir (dir, sizeof dir, db, sizeof db);
    state_t *s = s_open (dir);
    for (uint32_t i = 1; i <= 5; i++) {
        s_out_put (s, i);
        ck_assert_int_eq (s_in_put (s, "nodeQ", i), 1);
    }
    s_commit_ok (s);
    s_flip_envelope (db, "outbox", 3);
    s_flip_envelope (db, "inbox", 4);

    seen_t seen = {0};
    uint64_t after = 0;
    ck_assert_int_eq (state_outbox_page (s, &after, 10, s_out_fn, &seen), -1);
    ck_assert_uint_eq (seen.n, 2);
    ck_assert_uint_eq (after, 3); // past the damaged one
    const char *err = state_error (s);
    ck_assert_msg (strstr (err, "outbox message 000000035a5a") && strstr (err, "SHA-256")
                       && strstr (err, dir) && strstr (err, "restore"),
                   "%s", err);
    ck_assert_int_eq (state_outbox_page (s, &after, 10, s_out_fn, &seen), 2);
    ck_assert_uint_eq (seen.nums[2], 4);
    after = 0;
    ck_assert_int_eq (state_outbox_page (s, &after, 10, NULL, NULL), -1); // again from the start

    memset (&seen, 0, sizeof seen);
    after = 0;
    ck_assert_int_eq (state_inbox_page (s, &after, 10, s_in_fn, &seen), -1);
    ck_assert_uint_eq (seen.n, 3);
    err = state_error (s);
    ck_assert_msg (strstr (err, "inbox message 000000045a5a") && strstr (err, "from nodeQ")
                       && strstr (err, "SHA-256") && strstr (err, "not handed to the application"),
                   "%s", err);
    ck_assert_int_eq (state_inbox_page (s, &after, 10, s_in_fn, &seen), 1);
    ck_assert_uint_eq (seen.nums[3], 5);
    // Acknowledging the damaged one drops it (and its bytes).
    ck_assert_int_eq (s_in_ack (s, "nodeQ", 4, 9), 0);
    s_commit_ok (s);
    after = 0;
    ck_assert_int_eq (state_inbox_page (s, &after, 10, NULL, NULL), 4);
    state_close (&s);
}
END_TEST

// A full disk: the group is rolled back with the disk-full text; committed data stays.
START_TEST (test_state_disk_full)
{
    char dir[192];
    s_dir (dir, sizeof dir, NULL, 0);
    s_vfs_install ();
    state_t *s = s_open (dir);
    for (uint32_t i = 0; i < 10; i++) {
        s_out_put (s, i);
        ck_assert_int_eq (s_in_put (s, "nodeA", i), 1);
    }
    s_commit_ok (s);
    for (uint32_t i = 10; i < 20; i++) {
        s_out_put (s, i);
        ck_assert_int_eq (s_in_put (s, "nodeA", i), 1);
    }
    s_wal_full = 1;
    ck_assert_int_eq (state_commit (s), -1);
    ck_assert (!state_pending (s));
    char want[256];
    snprintf (want, sizeof want, "disk full: free space in %s", dir);
    const char *err = state_error (s);
    ck_assert_msg (strstr (err, want) && strstr (err, "20 change(s)")
                       && strstr (err, "rolled back"),
                   "%s", err);
    s_wal_full = 0;
    ck_assert_int_eq (state_outbox_count (s), 10);
    ck_assert_int_eq (state_inbox_unacked (s), 10);
    ck_assert_int_eq (s_in_put (s, "nodeA", 15), 1); // never happened: new again
    s_commit_ok (s);

    // The disk fills while a big group is staged (the page cache spills into the WAL).
    enum { BIG = 256 * 1024 };
    uint8_t *env = calloc (1, BIG);
    ck_assert_ptr_nonnull (env);
    s_wal_full = 1;
    int rc = 0;
    uint32_t staged = 0;
    for (uint32_t i = 100; i < 400 && rc == 0; i++) {
        uint8_t id[16];
        s_id (id, i);
        rc = state_outbox_put (s, id, env, BIG, i);
        staged += rc == 0;
    }
    free (env);
    ck_assert_msg (rc == -1, "no SQLITE_FULL while staging %u messages: %s", staged,
                   state_error (s));
    ck_assert_uint_gt (staged, 0);
    ck_assert (!state_pending (s));
    ck_assert_msg (strstr (state_error (s), want), "%s", state_error (s));
    s_wal_full = 0;
    ck_assert_int_eq (state_outbox_count (s), 10);
    state_close (&s);
    s = s_open (dir);
    ck_assert_int_eq (state_outbox_count (s), 10);
    ck_assert_int_eq (state_inbox_unacked (s), 11);
    state_close (&s);
    s_vfs_remove ();
}
END_TEST

// Bad arguments: -1 with a message, no crash, and the staged group intact.
START_TEST (test_state_arguments)
{
    char dir[192];
    s_dir (dir, sizeof dir, NULL, 0);
    uint8_t id[16], env[16] = {0};
    s_id (id, 1);
    uint64_t after = 0;
    ck_assert_int_eq (state_outbox_put (NULL, id, env, 1, 0), -1);
    ck_assert_int_eq (state_outbox_done (NULL, id), -1);
    ck_assert_int_eq (state_outbox_count (NULL), -1);
    ck_assert_int_eq (state_outbox_page (NULL, &after, 1, NULL, NULL), -1);
    ck_assert_int_eq (state_inbox_put (NULL, "a", id, env, 1, 0), -1);
    ck_assert_int_eq (state_inbox_ack (NULL, "a", id, 0), -1);
    ck_assert_int_eq (state_inbox_read (NULL, "a", id, 0), -1);
    ck_assert_int_eq (state_inbox_is_read (NULL, "a", id), -1);
    ck_assert_int_eq (state_inbox_unacked (NULL), -1);
    ck_assert_int_eq (state_inbox_page (NULL, &after, 1, NULL, NULL), -1);
    ck_assert_int_eq (state_purge (NULL, 0, NULL), -1);
    ck_assert_int_eq (state_commit (NULL), -1);
    ck_assert (!state_pending (NULL));

    state_t *s = s_open (dir);
    s_out_put (s, 50);
    ck_assert_int_eq (s_in_put (s, "nodeA", 50), 1);
    char long_sender[STATE_SENDER_MAX + 2];
    memset (long_sender, 'x', sizeof long_sender);
    long_sender[STATE_SENDER_MAX + 1] = 0;
#define REFUSED(call, needle)                                                                      \
    do {                                                                                           \
        ck_assert_int_eq ((call), -1);                                                             \
        ck_assert_msg (strstr (state_error (s), needle), "%s: '%s'", #call, state_error (s));      \
    } while (0)
    REFUSED (state_outbox_put (s, NULL, env, 1, 0), "no message id");
    REFUSED (state_outbox_put (s, id, NULL, 1, 0), "no envelope");
    REFUSED (state_outbox_put (s, id, env, STATE_ENVELOPE_MAX + 1, 0),
             "envelope of 67108865 bytes is larger than 67108864");
    REFUSED (state_outbox_done (s, NULL), "no message id");
    REFUSED (state_inbox_put (s, NULL, id, env, 1, 0), "no sender");
    REFUSED (state_inbox_put (s, "", id, env, 1, 0), "is empty or longer than 64 characters");
    REFUSED (state_inbox_put (s, long_sender, id, env, 1, 0), "longer than 64 characters");
    REFUSED (state_inbox_put (s, "nodeA", NULL, env, 1, 0), "no message id");
    REFUSED (state_inbox_put (s, "nodeA", id, NULL, 1, 0), "no envelope");
    REFUSED (state_inbox_put (s, "nodeA", id, env, STATE_ENVELOPE_MAX + 1, 0), "larger than");
    REFUSED (state_inbox_ack (s, NULL, id, 0), "no sender");
    REFUSED (state_inbox_ack (s, "nodeA", NULL, 0), "no message id");
    REFUSED (state_inbox_read (s, "", id, 0), "is empty");
    REFUSED (state_inbox_is_read (s, "nodeA", NULL), "no message id");
    REFUSED (state_outbox_page (s, NULL, 1, NULL, NULL), "no cursor");
    REFUSED (state_inbox_page (s, NULL, 1, NULL, NULL), "no cursor");
#undef REFUSED
    // The group survived all of that.
    ck_assert (state_pending (s));
    // Limits themselves are fine: a 64-character sender, an empty envelope.
    long_sender[STATE_SENDER_MAX] = 0;
    ck_assert_int_eq (state_inbox_put (s, long_sender, id, env, 0, 0), 1);
    ck_assert_int_eq (state_outbox_put (s, id, env, 0, 0), 0);
    s_commit_ok (s);
    state_close (&s);
    s = s_open (dir);
    ck_assert_int_eq (state_outbox_count (s), 2);
    ck_assert_int_eq (state_inbox_unacked (s), 2);
    state_close (&s);
}
END_TEST

/* Checkpoints are ours, small and often: none while the WAL holds at most
   1 MiB (a checkpoint then copies little, so the commit that runs it is
   not held up for long), a passive one by the commit that leaves more,
   and a truncating one past 64 MiB. A checkpoint syncs the database file;
   nothing else does in WAL mode. Syncs are counted, not done (speed). */
START_TEST (test_state_checkpoints)
{
    char dir[192], db[224], wal[240];
    s_dir (dir, sizeof dir, db, sizeof db);
    snprintf (wal, sizeof wal, "%s-wal", db);
    s_vfs_install ();
    s_fake_sync = 1;
    state_t *s = s_open (dir);
    s_db_syncs = 0;
    off_t last = 0;
    uint32_t n = 0;
    while (s_db_syncs == 0 && n < 900) {  // about 3 pages a commit
        last = s_size (wal);
        s_out_put (s, n++);
        s_commit_ok (s);
    }
    ck_assert_msg (s_db_syncs > 0, "no checkpoint after %u commits", n);
    // (The file also holds a 24-byte header per 4 KiB frame.)
    ck_assert_msg (last <= 1024 * 1024 * 101 / 100, "no checkpoint with %lld bytes in the WAL",
                   (long long) last);
    ck_assert_int_gt (s_size (wal), 1024 * 1024);  // the commit that crossed the bound
    ck_assert_int_gt (n, 20);                        // and not before it

    // One commit leaving 20 MiB in the WAL: a passive checkpoint at once.
    enum { BIG = 10 * 1024 * 1024 };
    uint8_t *env = calloc (1, BIG);
    ck_assert_ptr_nonnull (env);
    s_db_syncs = 0;
    off_t db_before = s_size (db);
    for (uint32_t i = 0; i < 2; i++) {
        uint8_t id[16];
        s_id (id, 5000 + i);
        ck_assert_int_eq (state_outbox_put (s, id, env, BIG, 1), 0);
    }
    s_commit_ok (s);
    ck_assert_msg (s_db_syncs > 0, "no checkpoint with 20 MiB in the WAL");
    ck_assert_int_gt (s_size (db), db_before + 2 * BIG); // copied into the database
    ck_assert_int_gt (s_size (wal), 0);                  // passive: not truncated

    // Past 64 MiB: truncated.
    for (uint32_t i = 0; i < 7; i++) {
        uint8_t id[16];
        s_id (id, 6000 + i);
        ck_assert_int_eq (state_outbox_put (s, id, env, BIG, 1), 0);
    }
    s_commit_ok (s);
    free (env);
    ck_assert_int_eq (s_size (wal), 0);
    ck_assert_int_eq (state_outbox_count (s), (int64_t) n + 9);
    state_close (&s);
    s_vfs_remove ();
}
END_TEST

// A state directory serves one node: another node's certificate is refused,
// also after a reopen.
START_TEST (test_state_identity)
{
    char dir[192], db[224];
    s_dir (dir, sizeof dir, db, sizeof db);
    state_t *s = s_open (dir);
    ck_assert_int_eq (state_identity (s, "fr-pn"), 0);
    ck_assert_int_eq (state_identity (s, "fr-pn"), 0);
    ck_assert_int_eq (state_commit (s), 0);
    ck_assert_int_eq (state_identity (s, "de-bka"), 1);
    ck_assert_ptr_nonnull (strstr (state_error (s), "belongs to node fr-pn, not de-bka"));
    state_close (&s);
    s = s_open (dir);
    ck_assert_int_eq (state_identity (s, "de-bka"), 1);
    ck_assert_int_eq (state_identity (s, "fr-pn"), 0);
    ck_assert_int_eq (state_identity (s, ""), -1);
    state_close (&s);
}
END_TEST

Suite *
state_suite (void)
{
    Suite *s = suite_create ("state");
    TCase *tc = tcase_create ("open");
    tcase_set_timeout (tc, 20);
    tcase_add_unchecked_fixture (tc, s_root_make, s_root_remove);
    tcase_add_test (tc, test_state_identity);
    tcase_add_test (tc, test_state_open_new);
    tcase_add_test (tc, test_state_open_refused);
    tcase_add_test (tc, test_state_lock_same_process);
    tcase_add_test (tc, test_state_lock_fork);
    tcase_add_test (tc, test_state_newer_refused);
    tcase_add_test (tc, test_state_foreign_refused);
    suite_add_tcase (s, tc);

    tc = tcase_create ("groups");
    tcase_set_timeout (tc, 20);
    tcase_add_unchecked_fixture (tc, s_root_make, s_root_remove);
    tcase_add_test (tc, test_state_staged_lost);
    tcase_add_test (tc, test_state_commit_syncs);
    tcase_add_test (tc, test_state_sigkill);
    suite_add_tcase (s, tc);

    tc = tcase_create ("boxes");
    tcase_set_timeout (tc, 20);
    tcase_add_unchecked_fixture (tc, s_root_make, s_root_remove);
    tcase_add_test (tc, test_state_outbox_pages);
    tcase_add_test (tc, test_state_outbox_done_in_page);
    tcase_add_test (tc, test_state_inbox_dedupe);
    tcase_add_test (tc, test_state_inbox_pages);
    tcase_add_test (tc, test_state_purge);
    suite_add_tcase (s, tc);

    tc = tcase_create ("faults");
    tcase_set_timeout (tc, 30);
    tcase_add_unchecked_fixture (tc, s_root_make, s_root_remove);
    tcase_add_test (tc, test_state_damaged_envelope);
    tcase_add_test (tc, test_state_disk_full);
    tcase_add_test (tc, test_state_arguments);
    tcase_add_test (tc, test_state_checkpoints);
    suite_add_tcase (s, tc);
    return s;
}
