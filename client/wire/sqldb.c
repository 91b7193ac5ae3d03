/*  SQLite plumbing shared by the broker's store and the library's state;
    see sqldb.h.                                                              */
#include "sqldb.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

sqldb_trouble_t
sqldb_trouble (int rc)
{
    switch (rc & 0xff) {
        case SQLITE_FULL:
            return SQLDB_FULL;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            return SQLDB_BUSY;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
            return SQLDB_DAMAGED;
        case SQLITE_IOERR:
            return SQLDB_IO;
        case SQLITE_READONLY:
        case SQLITE_PERM:
        case SQLITE_CANTOPEN:
            return SQLDB_ACCESS;
        case SQLITE_NOMEM:
            return SQLDB_NOMEM;
        default:
            return SQLDB_OTHER;
    }
}

void
sqldb_hex (const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = 0;
}

int
sqldb_sha256 (EVP_MD_CTX *md, const EVP_MD *sha256, const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    if (!EVP_DigestInit_ex (md, sha256, NULL) || !EVP_DigestUpdate (md, data, len)
        || !EVP_DigestFinal_ex (md, out, &n) || n != 32)
        return -1;
    return 0;
}

int
sqldb_exec (sqlite3_stmt *st)
{
    int rc = sqlite3_step (st);
    sqlite3_reset (st);
    return rc;
}

int
sqldb_query_int (sqlite3 *db, const char *sql, int64_t *value)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2 (db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step (st);
        if (rc == SQLITE_ROW)
            *value = sqlite3_column_int64 (st, 0);
    }
    sqlite3_finalize (st);
    return rc == SQLITE_ROW ? 0 : -1;
}

int
sqldb_query_text (sqlite3 *db, const char *sql, char *value, size_t len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2 (db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step (st);
        if (rc == SQLITE_ROW) {
            const char *t = (const char *) sqlite3_column_text (st, 0);
            snprintf (value, len, "%s", t ? t : "");
        }
    }
    sqlite3_finalize (st);
    return rc == SQLITE_ROW ? 0 : -1;
}

int
sqldb_open (const char *path, sqlite3 **db)
{
    int rc = sqlite3_open_v2 (
        path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        sqlite3_extended_result_codes (*db, 1);
    return rc;
}

sqldb_config_t
sqldb_configure (sqlite3 *db, int cache_kib, char *mode, size_t modelen, int64_t *sync)
{
    *sync = -1;
    if (sqldb_query_text (db, "PRAGMA journal_mode = WAL", mode, modelen) || strcmp (mode, "wal"))
        return SQLDB_NO_WAL;
    char sql[64];
    snprintf (sql, sizeof sql, "PRAGMA cache_size = -%d", cache_kib);
    if (sqlite3_exec (db, "PRAGMA synchronous = FULL", NULL, NULL, NULL) != SQLITE_OK
        || sqldb_query_int (db, "PRAGMA synchronous", sync) || *sync != 2
        || sqlite3_exec (db, "PRAGMA wal_autocheckpoint = 0", NULL, NULL, NULL) != SQLITE_OK
        || sqlite3_exec (db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) != SQLITE_OK
        || sqlite3_exec (db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return SQLDB_NO_PRAGMA;
    return SQLDB_CONFIGURED;
}

sqldb_file_t
sqldb_identify (sqlite3 *db, uint32_t application_id, int64_t schema_version, int64_t *app_id,
                int64_t *version, int64_t *objects)
{
    *app_id = *version = *objects = 0;
    if (sqldb_query_int (db, "PRAGMA application_id", app_id)
        || sqldb_query_int (db, "PRAGMA user_version", version)
        || sqldb_query_int (db, "SELECT count (*) FROM sqlite_schema", objects))
        return SQLDB_FILE_UNREADABLE;
    if (*app_id == 0 && *version == 0 && *objects == 0)
        return SQLDB_FILE_NEW;
    if (*app_id != application_id)
        return SQLDB_FILE_FOREIGN;
    if (*version > schema_version)
        return SQLDB_FILE_NEWER;
    if (*version < 0)
        return SQLDB_FILE_DAMAGED;
    return SQLDB_FILE_OURS;
}

int
sqldb_migrate (sqlite3 *db, uint32_t application_id, const char *const *migrations, int64_t from,
               int64_t to, int64_t *at, char *why, size_t whylen)
{
    for (int64_t v = from; v < to; v++) {
        char tail[128];
        snprintf (tail, sizeof tail, ";PRAGMA user_version = %" PRId64 ";", v + 1);
        if (v == 0)
            snprintf (tail + strlen (tail), sizeof tail - strlen (tail),
                      "PRAGMA application_id = %" PRIu32 ";", application_id);
        char *msg = NULL;
        int rc = sqlite3_exec (db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec (db, migrations[v], NULL, NULL, &msg);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec (db, tail, NULL, NULL, &msg);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec (db, "COMMIT", NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
            // SQLite's message first: the ROLLBACK below replaces sqlite3_errmsg's.
            snprintf (why, whylen, "%s", msg ? msg : sqlite3_errmsg (db));
            sqlite3_free (msg);
            if (!sqlite3_get_autocommit (db))
                sqlite3_exec (db, "ROLLBACK", NULL, NULL, NULL);
            *at = v;
            return rc;
        }
    }
    return SQLITE_OK;
}

void
sqldb_abandon_group (sqlite3 *db, sqlite3_stmt *rollback, bool *pending, size_t *staged, char *err,
                     size_t errlen)
{
    if (!*pending && sqlite3_get_autocommit (db))
        return;
    if (!sqlite3_get_autocommit (db))
        sqldb_exec (rollback);
    if (*pending) {
        size_t n = strlen (err);
        snprintf (err + n, errlen - n,
                  "; the %zu change(s) staged since the last commit are rolled back: "
                  "acknowledge none of them",
                  *staged);
    }
    *pending = false;
    *staged = 0;
}
