/*  SQLite plumbing shared by liaisond's store (broker/store.c) and the
    library's state (client/state.c): opening and configuring a connection,
    identifying the file, migrating its schema, abandoning a group after a
    failure, and two small helpers (hex, SHA-256).

    This module does the work and says what failed; it writes no message.
    Each caller words its own, for its own reader (a broker operator, an
    application developer), so both keep their wording and advice.

    Internal: compiled into libliaison and liaisond, exported from neither.
    Nothing here keeps state; every function is safe on distinct
    connections from distinct threads.                                        */
#ifndef LIAISON_WIRE_SQLDB_H
#define LIAISON_WIRE_SQLDB_H

#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// What an SQLite failure calls for; each caller words the advice.
typedef enum {
    SQLDB_FULL,    // SQLITE_FULL: the disk is full
    SQLDB_BUSY,    // SQLITE_BUSY, SQLITE_LOCKED: another process holds a lock
    SQLDB_DAMAGED, // SQLITE_CORRUPT, SQLITE_NOTADB
    SQLDB_IO,      // SQLITE_IOERR
    SQLDB_ACCESS,  // SQLITE_READONLY, SQLITE_PERM, SQLITE_CANTOPEN
    SQLDB_NOMEM,   // SQLITE_NOMEM
    SQLDB_OTHER    // anything else: SQLite's own message says it
} sqldb_trouble_t;

// What sqldb_identify found in a file's header.
typedef enum {
    SQLDB_FILE_NEW,        // an empty database: migrate it from schema 0
    SQLDB_FILE_OURS,       // the caller's application_id, a schema it knows
    SQLDB_FILE_UNREADABLE, // the header could not be read: sqlite3_errcode says why
    SQLDB_FILE_FOREIGN,    // another application_id: not the caller's file
    SQLDB_FILE_NEWER,      // the caller's, at a schema newer than it knows
    SQLDB_FILE_DAMAGED     // the caller's, with a negative schema version
} sqldb_file_t;

// What sqldb_configure could not set.
typedef enum {
    SQLDB_CONFIGURED = 0,
    SQLDB_NO_WAL,   // the journal mode is not WAL
    SQLDB_NO_PRAGMA // synchronous=FULL did not take, or another setting failed
} sqldb_config_t;

// Classifies an SQLite result code (primary or extended).
sqldb_trouble_t sqldb_trouble (int rc);

// Writes n bytes as 2n lowercase hex digits and a NUL into out (2n + 1 bytes).
void sqldb_hex (const uint8_t *bytes, size_t n, char *out);

/* SHA-256 of data into out, using the caller's md context and fetched
   sha256 algorithm. 0, or -1 if OpenSSL failed. */
int sqldb_sha256 (EVP_MD_CTX *md, const EVP_MD *sha256, const void *data, size_t len,
                  uint8_t out[32]);

// Steps a statement that returns no rows and resets it; sqlite3_step's code.
int sqldb_exec (sqlite3_stmt *st);

/* Runs one statement returning one integer (a PRAGMA) on db; 0, or -1
   (sqlite3_errmsg (db) may say why; *value is then unchanged). */
int sqldb_query_int (sqlite3 *db, const char *sql, int64_t *value);

// Same, for a statement returning one text value, copied into value (len bytes).
int sqldb_query_text (sqlite3 *db, const char *sql, char *value, size_t len);

/* Opens path read-write, creating it, without SQLite's mutexes (one thread
   per connection), with extended result codes. Returns SQLITE_OK or the
   error; on error *db may still be set (it holds SQLite's message): the
   caller closes it either way. */
int sqldb_open (const char *path, sqlite3 **db);

/* Switches db to WAL (verified), synchronous=FULL (verified), no automatic
   checkpoints, foreign keys on and a page cache of cache_kib KiB. Returns
   SQLDB_CONFIGURED; SQLDB_NO_WAL with mode (modelen bytes) holding the
   journal mode SQLite kept; or SQLDB_NO_PRAGMA with *sync holding
   synchronous as read back (-1 if it was not). sqlite3_errmsg (db) has
   SQLite's side. */
sqldb_config_t sqldb_configure (sqlite3 *db, int cache_kib, char *mode, size_t modelen,
                                int64_t *sync);

/* Identifies db's file from its header: application_id, user_version (into
   *version) and the number of schema objects (into *objects), against the
   caller's application_id and the newest schema it knows. *app_id, *version
   and *objects are set as far as they were read (0 otherwise). */
sqldb_file_t sqldb_identify (sqlite3 *db, uint32_t application_id, int64_t schema_version,
                             int64_t *app_id, int64_t *version, int64_t *objects);

/* Applies migrations[from] .. migrations[to - 1]: script v takes the schema
   from v to v + 1 and runs in its own transaction with user_version (and,
   from 0, application_id). Returns SQLITE_OK, or the failing code with
   *at set to the schema the file is left at (the failed step is rolled
   back) and SQLite's message copied into why (whylen bytes). */
int sqldb_migrate (sqlite3 *db, uint32_t application_id, const char *const *migrations,
                   int64_t from, int64_t to, int64_t *at, char *why, size_t whylen);

/* After an SQLite failure on db while a group (a write transaction spanning
   several changes) may be open: rolls db's transaction back with the
   prepared ROLLBACK statement (SQLite may have done so already) and, if a
   group was pending, appends to err (errlen bytes, NUL-terminated) that
   its *staged changes are rolled back and must not be acknowledged.
   Clears *pending and *staged. */
void sqldb_abandon_group (sqlite3 *db, sqlite3_stmt *rollback, bool *pending, size_t *staged,
                          char *err, size_t errlen);

#endif
