/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The SQLite backend of the store: one database in WAL mode with
 * synchronous=FULL, so that a committed transaction survives kill -9 and
 * power loss. Every call completes before it returns. */
#include "config.h"

#include <errno.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "bus-gvariant.h"
#include "log.h"
#include "macro.h"
#include "store-private.h"
#include "validate.h"

#define SCHEMA_VERSION 2
/* Outpost's mark in the SQLite header (PRAGMA application_id, documented in
 * outpostd(8)): "OUTP" in ASCII, as a big-endian number. A database without
 * it is not adopted unless it is a store of an outpostd from before the
 * mark, which had application_id 0 and exactly the tables of schema
 * version 1. */
#define STORE_APPLICATION_ID 0x4F555450

typedef enum StatementId {
        STMT_BEGIN,
        STMT_COMMIT,
        STMT_ROLLBACK,
        STMT_SAVEPOINT,
        STMT_RELEASE,
        STMT_ROLLBACK_TO,
        STMT_USER_GET,
        STMT_USER_LOOKUP,
        STMT_USER_INSERT,
        STMT_USER_DELETE,
        STMT_USER_LIST,
        STMT_EVENT_INSERT,
        STMT_EVENT_SCAN,
        STMT_EVENT_FIRST,
        STMT_EVENT_OLDEST_TIME,
        STMT_EVENT_EXPIRE,
        _STMT_MAX,
} StatementId;

#define USER_COLUMNS "id, tag, name, display_name, email, enabled, attributes, created, modified"

static const char *const statement_sql[_STMT_MAX] = {
        [STMT_BEGIN]        = "BEGIN IMMEDIATE",
        [STMT_COMMIT]       = "COMMIT",
        [STMT_ROLLBACK]     = "ROLLBACK",
        [STMT_SAVEPOINT]    = "SAVEPOINT change",
        [STMT_RELEASE]      = "RELEASE change",
        [STMT_ROLLBACK_TO]  = "ROLLBACK TO change",
        [STMT_USER_GET]     = "SELECT " USER_COLUMNS " FROM users WHERE id = ?1",
        [STMT_USER_LOOKUP]  = "SELECT " USER_COLUMNS " FROM users WHERE name = ?1",
        [STMT_USER_INSERT]  = "INSERT INTO users (" USER_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        [STMT_USER_DELETE]  = "DELETE FROM users WHERE id = ?1",
        [STMT_USER_LIST]    = "SELECT " USER_COLUMNS " FROM users WHERE name > ?1 ORDER BY name LIMIT ?2",
        [STMT_EVENT_INSERT] = "INSERT INTO events (topic, time, data, request_key, request_result) "
                              "VALUES (?1, ?2, ?3, ?4, ?5)",
        [STMT_EVENT_SCAN]   = "SELECT seq, topic, time, data FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        [STMT_EVENT_FIRST]  = "SELECT min(seq) FROM events",
        [STMT_EVENT_OLDEST_TIME] = "SELECT time FROM events ORDER BY seq LIMIT 1",
        /* Only the oldest ?3 rows are looked at, so one round costs the same
         * however long the history is. */
        [STMT_EVENT_EXPIRE] = "DELETE FROM events WHERE seq IN (SELECT seq FROM events "
                              "ORDER BY seq LIMIT ?3) AND (seq <= ?1 OR time < ?2)",
};

/* Stores made before the application_id mark are recognized by the text
 * SQLite keeps of these statements (sqlite_schema.sql): it must stay byte
 * for byte what schema version 1 wrote. */
static const char schema_sql[] =
        "CREATE TABLE IF NOT EXISTS meta ("
        "  key TEXT PRIMARY KEY NOT NULL,"
        "  value TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS users ("
        "  id TEXT PRIMARY KEY NOT NULL,"
        "  tag TEXT NOT NULL,"
        "  name TEXT NOT NULL UNIQUE,"
        "  display_name TEXT NOT NULL,"
        "  email TEXT NOT NULL,"
        "  enabled INTEGER NOT NULL,"
        "  attributes BLOB NOT NULL,"
        "  created INTEGER NOT NULL,"
        "  modified INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS events ("
        "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  topic TEXT NOT NULL,"
        "  time INTEGER NOT NULL,"
        "  data BLOB NOT NULL);";

/* Schema version 2: the request id of a change a caller may retry, with
 * the event that ends it (store-requests.c). Run on a store of version 1
 * to bring it to version 2, and after schema_sql on a new one, so that
 * both have the same schema text. */
static const char schema_v2_sql[] =
        "ALTER TABLE events ADD COLUMN request_key TEXT;"
        "ALTER TABLE events ADD COLUMN request_result TEXT;"
        "CREATE UNIQUE INDEX events_request_key ON events (request_key) WHERE request_key IS NOT NULL;";

/* Users read recently, kept in memory so a read does not run SQLite.
 *
 * outpostd is the only writer of its store, and every write of a user goes
 * through store_user_insert/update/delete, which update the cache in the
 * same step, so an entry is always what SQLite would return inside the
 * open transaction, or outside any. A transaction or a change's savepoint
 * that is rolled back evicts the users it wrote (they are listed in
 * user_dirty), so nothing that was never committed is served afterwards.
 * Bounded: the least recently used entry goes first. */
#define USER_CACHE_MAX 4096

typedef struct CachedUser {
        UserRecord u;
        GList link;             /* in Store.user_lru, most recent first */
} CachedUser;

typedef struct SqliteStore {
        Store base;
        sqlite3 *db;
        sqlite3_stmt *statements[_STMT_MAX];
        sqlite3_stmt *user_update[USER_FIELD_ALL + 1];  /* by the set of fields changed; made when first used */
        GHashTable *user_by_id;         /* id → CachedUser (key owned by the entry) */
        GHashTable *user_by_name;       /* name → CachedUser (key owned by the entry) */
        GQueue user_lru;
        GPtrArray *user_dirty;          /* ids written in the open transaction */
        guint user_dirty_mark;          /* user_dirty->len when the change's savepoint began */
} SqliteStore;

static void sqlite_close(Store *store);
static inline void sqlite_store_closep(SqliteStore **s) {
        if (*s)
                sqlite_close(&(*s)->base);
}

/* What a failure means for the store. A full disk passes: the failed
 * transaction is rolled back, and once there is room writes work again.
 * Corruption, or an I/O error (after a failed write or fsync the kernel may
 * have dropped what SQLite believes it wrote), means that what the file
 * holds is no longer known: the store must not be written again. */
static int sqlite_failure_errno(sqlite3 *db) {
        int code = sqlite3_extended_errcode(db);

        switch (code & 0xff) {
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EUCLEAN;
        case SQLITE_IOERR:
                /* The VFS reports some writes that found no room as I/O
                 * errors (growing the -shm file, for one). */
                if (IN_SET(sqlite3_system_errno(db), ENOSPC, EDQUOT))
                        return -ENOSPC;
                if (code == SQLITE_IOERR_NOMEM)
                        return -ENOMEM;
                return -EUCLEAN;
        case SQLITE_NOMEM:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

static int sqlite_error(SqliteStore *s, const char *what) {
        int r = sqlite_failure_errno(s->db);

        if (r == -ENOSPC) {
                log_error("%s: %s failed, the disk holding the store is full: %s", s->base.path, what, sqlite3_errmsg(s->db));
                return r;
        }
        if (r != -EUCLEAN) {
                log_error("%s: %s failed: %s", s->base.path, what, sqlite3_errmsg(s->db));
                return r;
        }
        if (s->base.failure < 0)
                return r;
        log_crit("%s: %s failed: %s (SQLite error %d). The store cannot be trusted: no further change is written to it.",
                 s->base.path, what, sqlite3_errmsg(s->db), sqlite3_extended_errcode(s->db));
        return store_report_damage(&s->base);
}

/* The user cache */

static void cached_user_free(CachedUser *c) {
        user_record_clear(&c->u);
        g_free(c);
}

static void user_cache_remove(SqliteStore *s, CachedUser *c) {
        g_queue_unlink(&s->user_lru, &c->link);
        g_hash_table_remove(s->user_by_name, c->u.name);
        g_hash_table_remove(s->user_by_id, c->u.id);   /* frees c */
}

static void user_cache_evict(SqliteStore *s, const char *id) {
        CachedUser *c = g_hash_table_lookup(s->user_by_id, id);

        if (c)
                user_cache_remove(s, c);
}

static const UserRecord *user_cache_hit(SqliteStore *s, CachedUser *c) {
        if (!c)
                return NULL;
        if (s->user_lru.head != &c->link) {
                g_queue_unlink(&s->user_lru, &c->link);
                g_queue_push_head_link(&s->user_lru, &c->link);
        }
        return &c->u;
}

/* Keep a copy of U, replacing what was cached for its id or its name. */
static const UserRecord *user_cache_put(SqliteStore *s, const UserRecord *u) {
        CachedUser *c;

        user_cache_evict(s, u->id);
        c = g_hash_table_lookup(s->user_by_name, u->name);
        if (c)
                user_cache_remove(s, c);
        if (g_hash_table_size(s->user_by_id) >= USER_CACHE_MAX)
                user_cache_remove(s, s->user_lru.tail->data);

        c = g_new0(CachedUser, 1);
        user_record_copy(&c->u, u);
        c->link.data = c;
        g_queue_push_head_link(&s->user_lru, &c->link);
        g_hash_table_insert(s->user_by_id, c->u.id, c);
        g_hash_table_insert(s->user_by_name, c->u.name, c);
        return &c->u;
}

static void user_dirty_add(SqliteStore *s, const char *id) {
        g_ptr_array_add(s->user_dirty, g_strdup(id));
}

/* Forget the writes from index FROM on: they are committed. */
static void user_dirty_forget(SqliteStore *s, guint from) {
        g_ptr_array_set_size(s->user_dirty, from);
        s->user_dirty_mark = MIN(s->user_dirty_mark, from);
}

/* The writes from index FROM on were rolled back: SQLite no longer has
 * what the cache has for those users. */
static void user_dirty_evict(SqliteStore *s, guint from) {
        for (guint i = from; i < s->user_dirty->len; i++)
                user_cache_evict(s, s->user_dirty->pdata[i]);
        user_dirty_forget(s, from);
}

/* A statement reset and ready to bind. */
static sqlite3_stmt *statement(SqliteStore *s, StatementId id) {
        sqlite3_stmt *st = s->statements[id];

        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return st;
}

/* A serialized GVariant as a blob. An empty container serializes to zero
 * bytes and a NULL pointer, which SQLite would store as NULL. */
static void bind_variant(sqlite3_stmt *st, int index, GVariant *v) {
        gsize size = g_variant_get_size(v);
        const void *data = g_variant_get_data(v);

        sqlite3_bind_blob(st, index, size > 0 ? data : "", (int) size, SQLITE_STATIC);
}

static int exec_simple(SqliteStore *s, StatementId id) {
        sqlite3_stmt *st = statement(s, id);
        int r = sqlite3_step(st);

        sqlite3_reset(st);
        return r == SQLITE_DONE ? 0 : sqlite_error(s, statement_sql[id]);
}

static int meta_get_or_create(SqliteStore *s, const char *key, char **ret) {
        g_autofree char *value = NULL;
        sqlite3_stmt *st;
        int r;

        r = sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL);
        if (r != SQLITE_OK)
                return sqlite_error(s, "reading meta");
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
                value = g_strdup((const char *) sqlite3_column_text(st, 0));
        sqlite3_finalize(st);

        if (!value) {
                value = uuid_string_new();
                r = sqlite3_prepare_v2(s->db, "INSERT INTO meta (key, value) VALUES (?1, ?2)", -1, &st, NULL);
                if (r != SQLITE_OK)
                        return sqlite_error(s, "writing meta");
                sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
                r = sqlite3_step(st);
                sqlite3_finalize(st);
                if (r != SQLITE_DONE)
                        return sqlite_error(s, "writing meta");
                log_info("%s: new %s %s", s->base.path, key, value);
        }
        *ret = g_steal_pointer(&value);
        return 0;
}

static int read_event_bounds(SqliteStore *s) {
        sqlite3_stmt *st;
        int r;

        r = sqlite3_prepare_v2(s->db, "SELECT seq FROM sqlite_sequence WHERE name = 'events'", -1, &st, NULL);
        if (r != SQLITE_OK)
                return sqlite_error(s, "reading the event sequence");
        s->base.last_seq = sqlite3_step(st) == SQLITE_ROW ? (uint64_t) sqlite3_column_int64(st, 0) : 0;
        sqlite3_finalize(st);

        st = statement(s, STMT_EVENT_FIRST);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
                s->base.first_seq = (uint64_t) sqlite3_column_int64(st, 0);
        else
                s->base.first_seq = s->base.last_seq + 1;
        sqlite3_reset(st);
        return 0;
}

/* Checking a store before it is opened for writing, on a read-only
 * connection of its own, so that a file that is refused is left exactly as
 * it was. */

typedef enum StoreKind {
        STORE_NEW,              /* no file, or a database without tables: made now */
        STORE_MARKED,           /* marked with STORE_APPLICATION_ID */
        STORE_UNMARKED,         /* made by an outpostd from before the mark */
} StoreKind;

#define STORE_WHAT_TO_DO \
        "Restore it from a backup, or move it aside (with its -wal and -shm files) to start with an empty store."

static void sqlite3_closep(sqlite3 **db) {
        sqlite3_close(*db);
}

static int query_int(sqlite3 *db, const char *sql, int *ret) {
        sqlite3_stmt *st;
        int r;

        r = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        if (r != SQLITE_OK)
                return r;
        r = sqlite3_step(st);
        if (r == SQLITE_ROW)
                *ret = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return r == SQLITE_ROW ? SQLITE_OK : r;
}

/* The tables and indexes of DB, one line each, to compare. */
static int schema_text(sqlite3 *db, GString *out) {
        sqlite3_stmt *st;
        int r;

        r = sqlite3_prepare_v2(db, "SELECT type, name, tbl_name, ifnull(sql, '') FROM sqlite_schema ORDER BY name",
                               -1, &st, NULL);
        if (r != SQLITE_OK)
                return r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW)
                g_string_append_printf(out, "%s|%s|%s|%s\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
                                       sqlite3_column_text(st, 2), sqlite3_column_text(st, 3));
        sqlite3_finalize(st);
        return r == SQLITE_DONE ? SQLITE_OK : r;
}

/* Whether DB has exactly the tables schema version VERSION makes, as
 * SQLite records them: made again in memory to compare. */
static bool schema_is_ours(sqlite3 *db, int version) {
        g_autoptr(GString) want = g_string_new(NULL), have = g_string_new(NULL);
        _cleanup_(sqlite3_closep) sqlite3 *mem = NULL;

        if (sqlite3_open_v2(":memory:", &mem, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
            sqlite3_exec(mem, schema_sql, NULL, NULL, NULL) != SQLITE_OK ||
            (version >= 2 && sqlite3_exec(mem, schema_v2_sql, NULL, NULL, NULL) != SQLITE_OK) ||
            schema_text(mem, want) != SQLITE_OK ||
            schema_text(db, have) != SQLITE_OK)
                return false;
        return g_str_equal(want->str, have->str);
}

/* Refuse a store that SQLite failed to read while checking it. */
static int refuse_unreadable(const char *path, sqlite3 *db, const char *what) {
        switch (sqlite_failure_errno(db)) {
        case -EUCLEAN:
                if (sqlite3_errcode(db) == SQLITE_NOTADB) {
                        log_error("%s is not an SQLite database, or its first page is damaged: outpostd cannot use it as "
                                  "its store. " STORE_WHAT_TO_DO, path);
                        return -EMEDIUMTYPE;
                }
                log_crit("%s: the store is damaged (%s: %s). " STORE_WHAT_TO_DO, path, what, sqlite3_errmsg(db));
                return -EUCLEAN;
        case -ENOSPC:
                log_error("%s: cannot check the store, the disk holding it is full (%s)", path, sqlite3_errmsg(db));
                return -ENOSPC;
        default:
                log_error("%s: cannot check the store (%s: %s)", path, what, sqlite3_errmsg(db));
                return -EIO;
        }
}

/* PRAGMA quick_check reads and checks every page of every b-tree: about
 * 0.25 s for 100000 events of 1 kB (140 MB) in the page cache, the time to
 * read the file otherwise. integrity_check costs the same here (only users
 * have indexes) but grows faster with them, and finds nothing more of what
 * a disk or a stray write does to pages. */
static int check_pages(const char *path, sqlite3 *db) {
        g_autoptr(GString) found = g_string_new(NULL);
        sqlite3_stmt *st;
        int r;

        r = sqlite3_prepare_v2(db, "PRAGMA quick_check(5)", -1, &st, NULL);
        if (r != SQLITE_OK)
                return refuse_unreadable(path, db, "PRAGMA quick_check");
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                const char *row = (const char *) sqlite3_column_text(st, 0);
                g_auto(GStrv) lines = g_strsplit(row ?: "", "\n", -1);

                /* One line in the log: a row may hold several. */
                for (size_t i = 0; lines[i]; i++)
                        if (lines[i][0] && !g_str_equal(lines[i], "ok") && !g_str_has_prefix(lines[i], "*** in database"))
                                g_string_append_printf(found, "%s%s", found->len > 0 ? "; " : "", lines[i]);
        }
        sqlite3_finalize(st);
        if (r != SQLITE_DONE)
                return refuse_unreadable(path, db, "PRAGMA quick_check");
        if (found->len == 0)
                return 0;
        log_crit("%s: the store is damaged (PRAGMA quick_check: %s). " STORE_WHAT_TO_DO, path, found->str);
        return -EUCLEAN;
}

static int check_database(const char *path, sqlite3 *db, StoreKind *ret_kind, int *ret_version) {
        int application_id = 0, version = 0, tables = 0, r;

        if (query_int(db, "PRAGMA application_id", &application_id) != SQLITE_OK ||
            query_int(db, "PRAGMA user_version", &version) != SQLITE_OK ||
            query_int(db, "SELECT count(*) FROM sqlite_schema", &tables) != SQLITE_OK)
                return refuse_unreadable(path, db, "reading its header and schema");

        if (!IN_SET(application_id, 0, STORE_APPLICATION_ID)) {
                log_error("%s is not an Outpost store: it is another program's SQLite database (application_id 0x%08x, "
                          "Outpost's is 0x%08x). Move it aside, or give outpostd another --state-dir.",
                          path, (unsigned) application_id, (unsigned) STORE_APPLICATION_ID);
                return -EMEDIUMTYPE;
        }
        *ret_version = version;
        if (tables == 0) {
                *ret_kind = STORE_NEW;
                *ret_version = 0;
                return 0;
        }
        if (version > SCHEMA_VERSION) {
                log_error("%s: the store has schema version %d, but this outpostd knows schema version %d at most: "
                          "run the outpostd that wrote it, or restore a backup made by this one.",
                          path, version, SCHEMA_VERSION);
                return -EPROTO;
        }
        r = check_pages(path, db);
        if (r < 0)
                return r;
        /* A store of version 1 is brought to this version when opened. */
        if (version < 1 || !schema_is_ours(db, version)) {
                if (application_id == 0) {
                        log_error("%s is not an Outpost store: an SQLite database without Outpost's application_id "
                                  "whose tables are not those of an Outpost store. Move it aside, or give outpostd "
                                  "another --state-dir.", path);
                        return -EMEDIUMTYPE;
                }
                log_crit("%s: the store's tables are not those of schema version %d. " STORE_WHAT_TO_DO,
                         path, SCHEMA_VERSION);
                return -EUCLEAN;
        }
        *ret_kind = application_id == 0 ? STORE_UNMARKED : STORE_MARKED;
        return 0;
}

static int check_file(const char *path, StoreKind *ret_kind, int *ret_version) {
        _cleanup_(sqlite3_closep) sqlite3 *db = NULL;
        struct stat st;

        if (stat(path, &st) < 0) {
                if (errno != ENOENT)
                        return log_error_errno(errno, "Cannot access the store %s", path);
                *ret_kind = STORE_NEW;
                *ret_version = 0;
                return 0;
        }
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
                return refuse_unreadable(path, db, "opening it");
        sqlite3_busy_timeout(db, 5000);
        sqlite3_extended_result_codes(db, 1);
        return check_database(path, db, ret_kind, ret_version);
}

static int open_database(SqliteStore *s, StoreKind kind, int version) {
        static const char pragmas[] =
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=FULL;"
                "PRAGMA foreign_keys=ON;";
        static const char mark_sql[] =
                "PRAGMA application_id = " G_STRINGIFY(STORE_APPLICATION_ID) ";"
                "PRAGMA user_version = " G_STRINGIFY(SCHEMA_VERSION) ";";
        int r;

        r = sqlite3_open_v2(s->base.path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (r != SQLITE_OK)
                return sqlite_error(s, "opening the database");
        sqlite3_busy_timeout(s->db, 5000);
        sqlite3_extended_result_codes(s->db, 1);
        if (sqlite3_exec(s->db, pragmas, NULL, NULL, NULL) != SQLITE_OK)
                return sqlite_error(s, "setting up WAL mode");

        if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK ||
            (version < 2 && sqlite3_exec(s->db, schema_v2_sql, NULL, NULL, NULL) != SQLITE_OK) ||
            sqlite3_exec(s->db, mark_sql, NULL, NULL, NULL) != SQLITE_OK)
                return sqlite_error(s, "creating the schema");
        /* A fresh events table is a new history, with an id of its own. */
        r = meta_get_or_create(s, "server-id", &s->base.server_id);
        if (r < 0)
                return r;
        r = meta_get_or_create(s, "history-id", &s->base.history_id);
        if (r < 0)
                return r;
        if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                return sqlite_error(s, "creating the schema");
        if (kind == STORE_UNMARKED)
                log_notice("%s: adopted the store of an earlier outpostd (schema version %d), now marked as Outpost's "
                           "(application_id 0x%08x)", s->base.path, SCHEMA_VERSION, (unsigned) STORE_APPLICATION_ID);
        if (version == 1)
                log_notice("%s: brought the store from schema version 1 to %d (request ids)", s->base.path,
                           SCHEMA_VERSION);
        return 0;
}

static int read_requests(SqliteStore *s) {
        sqlite3_stmt *st;
        int r;

        /* Through the index: only the rows that have a request id are
         * read, not every page of the history. */
        r = sqlite3_prepare_v2(s->db, "SELECT request_key, seq, request_result FROM events "
                               "INDEXED BY events_request_key WHERE request_key IS NOT NULL ORDER BY seq",
                               -1, &st, NULL);
        if (r != SQLITE_OK)
                return sqlite_error(s, "reading the request ids");
        while ((r = sqlite3_step(st)) == SQLITE_ROW)
                store_requests_note(&s->base, (const char *) sqlite3_column_text(st, 0),
                                    (uint64_t) sqlite3_column_int64(st, 1), (const char *) sqlite3_column_text(st, 2));
        sqlite3_finalize(st);
        return r == SQLITE_DONE ? 0 : sqlite_error(s, "reading the request ids");
}

static const StoreOps sqlite_ops;

int store_sqlite_open(const char *directory, Store **ret) {
        _cleanup_(sqlite_store_closep) SqliteStore *s = g_new0(SqliteStore, 1);
        StoreKind kind = STORE_NEW;
        int version = 0, r;

        s->base.ops = &sqlite_ops;
        s->user_by_id = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) cached_user_free);
        s->user_by_name = g_hash_table_new(g_str_hash, g_str_equal);
        g_queue_init(&s->user_lru);
        s->user_dirty = g_ptr_array_new_with_free_func(g_free);

        if (g_mkdir_with_parents(directory, 0700) < 0)
                return log_error_errno(errno, "Cannot create state directory %s", directory);
        s->base.path = g_build_filename(directory, "outpost.db", NULL);

        r = check_file(s->base.path, &kind, &version);
        if (r < 0)
                return r;
        r = open_database(s, kind, version);
        if (r < 0)
                return r;
        for (int i = 0; i < _STMT_MAX; i++)
                if (sqlite3_prepare_v3(s->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                       &s->statements[i], NULL) != SQLITE_OK)
                        return sqlite_error(s, statement_sql[i]);
        r = read_event_bounds(s);
        if (r < 0)
                return r;
        r = read_requests(s);
        if (r < 0)
                return r;

        log_info("Store %s open: server id %s, history %s, events %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT,
                 s->base.path, s->base.server_id, s->base.history_id, s->base.first_seq, s->base.last_seq);
        *ret = &TAKE_PTR(s)->base;
        return 0;
}

static void sqlite_close(Store *store) {
        SqliteStore *s = (SqliteStore *) store;

        for (int i = 0; i < _STMT_MAX; i++)
                sqlite3_finalize(s->statements[i]);
        for (size_t i = 0; i < G_N_ELEMENTS(s->user_update); i++)
                sqlite3_finalize(s->user_update[i]);
        g_clear_pointer(&s->user_by_name, g_hash_table_unref);
        g_clear_pointer(&s->user_by_id, g_hash_table_unref);    /* frees the entries */
        g_clear_pointer(&s->user_dirty, g_ptr_array_unref);
        store_requests_clear(&s->base);
        if (s->db && sqlite3_close(s->db) != SQLITE_OK)
                log_warning("%s: closing failed: %s", s->base.path, sqlite3_errmsg(s->db));
        g_free(s->base.path);
        g_free(s->base.server_id);
        g_free(s->base.history_id);
        g_free(s);
}

static int sqlite_free_bytes(Store *store, uint64_t *ret) {
        SqliteStore *s = (SqliteStore *) store;
        struct statvfs sv;

        if (statvfs(s->base.path, &sv) < 0)
                return -errno;
        *ret = (uint64_t) sv.f_bavail * sv.f_frsize;
        return 0;
}

static int sqlite_begin(Store *store) {
        return exec_simple((SqliteStore *) store, STMT_BEGIN);
}

static void sqlite_rollback(Store *store) {
        SqliteStore *s = (SqliteStore *) store;

        if (!sqlite3_get_autocommit(s->db))
                (void) exec_simple(s, STMT_ROLLBACK);
        user_dirty_evict(s, 0);
        /* Sequence numbers handed out in the rolled back transaction may be
         * given out again: nobody has seen them. */
        (void) read_event_bounds(s);
}

/* SQLite commits (and fsyncs) before this returns: DONE runs at once. */
static void sqlite_commit(Store *store, StoreDone done, void *userdata) {
        SqliteStore *s = (SqliteStore *) store;
        int r = exec_simple(s, STMT_COMMIT);

        if (r < 0)
                sqlite_rollback(store);
        else
                user_dirty_forget(s, 0);
        done(store, r, userdata);
}

static int sqlite_savepoint(Store *store) {
        SqliteStore *s = (SqliteStore *) store;

        s->user_dirty_mark = s->user_dirty->len;
        return exec_simple(s, STMT_SAVEPOINT);
}

static int sqlite_release_savepoint(Store *store) {
        return exec_simple((SqliteStore *) store, STMT_RELEASE);
}

static void sqlite_rollback_savepoint(Store *store) {
        SqliteStore *s = (SqliteStore *) store;

        /* ROLLBACK TO keeps the savepoint open; RELEASE then ends it. */
        (void) exec_simple(s, STMT_ROLLBACK_TO);
        (void) exec_simple(s, STMT_RELEASE);
        user_dirty_evict(s, s->user_dirty_mark);
        (void) read_event_bounds(s);
}

/* Users */

static char *column_strdup(sqlite3_stmt *st, int i) {
        const unsigned char *t = sqlite3_column_text(st, i);
        return g_strdup(t ? (const char *) t : "");
}

/* A GVariant over a copy of a column's blob (SQLite's own buffer lives
 * only until the next step). */
static GVariant *column_variant(sqlite3_stmt *st, int i, const GVariantType *type) {
        return store_variant_from_blob(type, sqlite3_column_blob(st, i), (size_t) MAX(sqlite3_column_bytes(st, i), 0));
}

static void user_from_row(sqlite3_stmt *st, UserRecord *u) {
        *u = (UserRecord) {
                .id = column_strdup(st, 0),
                .tag = column_strdup(st, 1),
                .name = column_strdup(st, 2),
                .display_name = column_strdup(st, 3),
                .email = column_strdup(st, 4),
                .enabled = sqlite3_column_int(st, 5) != 0,
                .attributes = column_variant(st, 6, G_VARIANT_TYPE("a{ss}")),
                .created = sqlite3_column_int64(st, 7),
                .modified = sqlite3_column_int64(st, 8),
        };
}

static int user_select_one(SqliteStore *s, StatementId id, const char *key, const UserRecord **ret) {
        sqlite3_stmt *st = statement(s, id);
        _cleanup_(user_record_clear) UserRecord u = {};
        int r;

        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        r = sqlite3_step(st);
        if (r == SQLITE_ROW)
                user_from_row(st, &u);
        sqlite3_reset(st);
        if (r == SQLITE_DONE)
                return -ENOENT;
        if (r != SQLITE_ROW)
                return sqlite_error(s, "reading a user");
        *ret = user_cache_put(s, &u);
        return 0;
}

static int sqlite_user_get(Store *store, const char *id, const UserRecord **ret) {
        SqliteStore *s = (SqliteStore *) store;
        const UserRecord *u = user_cache_hit(s, g_hash_table_lookup(s->user_by_id, id));

        if (u) {
                *ret = u;
                return 0;
        }
        return user_select_one(s, STMT_USER_GET, id, ret);
}

static int sqlite_user_lookup(Store *store, const char *name, const UserRecord **ret) {
        SqliteStore *s = (SqliteStore *) store;
        const UserRecord *u = user_cache_hit(s, g_hash_table_lookup(s->user_by_name, name));

        if (u) {
                *ret = u;
                return 0;
        }
        return user_select_one(s, STMT_USER_LOOKUP, name, ret);
}

/* Binds every column; a statement that does not use one ignores it. */
static int user_write(SqliteStore *s, sqlite3_stmt *st, const UserRecord *u) {
        int r;

        sqlite3_bind_text(st, 1, u->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, u->tag, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, u->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, u->display_name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, u->email, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 6, u->enabled);
        bind_variant(st, 7, u->attributes);
        sqlite3_bind_int64(st, 8, u->created);
        sqlite3_bind_int64(st, 9, u->modified);
        r = sqlite3_step(st);
        sqlite3_reset(st);
        if (r == SQLITE_CONSTRAINT_UNIQUE || r == SQLITE_CONSTRAINT_PRIMARYKEY)
                return -EEXIST;
        return r == SQLITE_DONE ? 0 : sqlite_error(s, "writing a user");
}

/* An UPDATE that writes the tag, the modification time and the columns of
 * FIELDS only: SQLite rewrites an index entry when its column is SET, even
 * to the same value, so a save that leaves the name alone must not touch
 * the unique name index. */
static sqlite3_stmt *user_update_statement(SqliteStore *s, UserField fields) {
        static const struct {
                UserField field;
                const char *set;
        } columns[] = {
                { USER_FIELD_NAME,         ", name = ?3" },
                { USER_FIELD_DISPLAY_NAME, ", display_name = ?4" },
                { USER_FIELD_EMAIL,        ", email = ?5" },
                { USER_FIELD_ENABLED,      ", enabled = ?6" },
                { USER_FIELD_ATTRIBUTES,   ", attributes = ?7" },
        };
        g_autoptr(GString) sql = NULL;

        if (s->user_update[fields]) {
                sqlite3_reset(s->user_update[fields]);
                sqlite3_clear_bindings(s->user_update[fields]);
                return s->user_update[fields];
        }
        sql = g_string_new("UPDATE users SET tag = ?2, modified = ?9");
        for (size_t i = 0; i < G_N_ELEMENTS(columns); i++)
                if (fields & columns[i].field)
                        g_string_append(sql, columns[i].set);
        g_string_append(sql, " WHERE id = ?1");
        if (sqlite3_prepare_v3(s->db, sql->str, -1, SQLITE_PREPARE_PERSISTENT, &s->user_update[fields], NULL) != SQLITE_OK) {
                (void) sqlite_error(s, sql->str);
                return NULL;
        }
        return s->user_update[fields];
}

static int sqlite_user_insert(Store *store, const UserRecord *u) {
        SqliteStore *s = (SqliteStore *) store;
        int r;

        r = user_write(s, statement(s, STMT_USER_INSERT), u);
        if (r < 0)
                return r;
        user_dirty_add(s, u->id);
        (void) user_cache_put(s, u);
        return 0;
}

static int sqlite_user_update(Store *store, const UserRecord *u, UserField fields) {
        SqliteStore *s = (SqliteStore *) store;
        sqlite3_stmt *st = user_update_statement(s, fields);
        int r;

        if (!st)
                return -EIO;
        r = user_write(s, st, u);
        if (r < 0)
                return r;
        user_dirty_add(s, u->id);
        (void) user_cache_put(s, u);
        return 0;
}

static int sqlite_user_delete(Store *store, const char *id) {
        SqliteStore *s = (SqliteStore *) store;
        sqlite3_stmt *st = statement(s, STMT_USER_DELETE);
        int r;

        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        r = sqlite3_step(st);
        sqlite3_reset(st);
        if (r != SQLITE_DONE)
                return sqlite_error(s, "deleting a user");
        if (sqlite3_changes(s->db) == 0)
                return -ENOENT;
        user_dirty_add(s, id);
        user_cache_evict(s, id);
        return 0;
}

static int sqlite_user_list(Store *store, const char *after_name, unsigned limit, GPtrArray *out, bool *ret_more) {
        SqliteStore *s = (SqliteStore *) store;
        sqlite3_stmt *st = statement(s, STMT_USER_LIST);
        unsigned n = 0;
        int r;

        /* One row more than asked for tells whether another page follows. */
        sqlite3_bind_text(st, 1, after_name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64) limit + 1);
        while ((r = sqlite3_step(st)) == SQLITE_ROW && n < limit) {
                UserRecord *u = g_new0(UserRecord, 1);
                user_from_row(st, u);
                g_ptr_array_add(out, u);
                n++;
        }
        *ret_more = r == SQLITE_ROW;
        sqlite3_reset(st);
        return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : sqlite_error(s, "listing users");
}

/* Events */

static int sqlite_event_append(Store *store, const char *topic, int64_t time, GVariant *data, const char *request_key,
                               const char *request_result, uint64_t *ret_seq) {
        SqliteStore *s = (SqliteStore *) store;
        sqlite3_stmt *st = statement(s, STMT_EVENT_INSERT);
        int r;

        sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, time);
        bind_variant(st, 3, data);
        /* Unbound: NULL, an event no request names. */
        if (request_key) {
                sqlite3_bind_text(st, 4, request_key, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 5, request_result, -1, SQLITE_STATIC);
        }
        r = sqlite3_step(st);
        sqlite3_reset(st);
        if (r == SQLITE_CONSTRAINT_UNIQUE)
                return -EEXIST;
        if (r != SQLITE_DONE)
                return sqlite_error(s, "appending an event");

        store_note_append(store, (uint64_t) sqlite3_last_insert_rowid(s->db));
        *ret_seq = s->base.last_seq;
        return 0;
}

static int sqlite_event_oldest_time(Store *store, int64_t *ret_time) {
        SqliteStore *s = (SqliteStore *) store;
        sqlite3_stmt *st = statement(s, STMT_EVENT_OLDEST_TIME);
        int r = sqlite3_step(st);

        if (r == SQLITE_ROW)
                *ret_time = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (r == SQLITE_ROW)
                return 1;
        if (r == SQLITE_DONE)
                return 0;
        return sqlite_error(s, "reading the oldest event");
}

static StoredEvent *event_from_row(sqlite3_stmt *st) {
        StoredEvent *e = g_new0(StoredEvent, 1);

        e->seq = (uint64_t) sqlite3_column_int64(st, 0);
        e->topic = column_strdup(st, 1);
        e->time = sqlite3_column_int64(st, 2);
        e->data = column_variant(st, 3, G_VARIANT_TYPE_VARDICT);
        return e;
}

/* SQLite reads the page before this returns: DONE runs at once. */
static void sqlite_event_scan(Store *store, StoreScan *sc) {
        SqliteStore *s = (SqliteStore *) store;
        sqlite3_stmt *st = statement(s, STMT_EVENT_SCAN);
        int r;

        sqlite3_bind_int64(st, 1, (sqlite3_int64) sc->after);
        sqlite3_bind_int64(st, 2, (sqlite3_int64) sc->max_scan + 1);
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                StoreScanStep step = store_scan_step(sc, (uint64_t) sqlite3_column_int64(st, 0),
                                                     (const char *) sqlite3_column_text(st, 1));

                if (step == STORE_SCAN_STOP)
                        break;
                if (step == STORE_SCAN_TAKE)
                        store_scan_take(sc, event_from_row(st));
        }
        sqlite3_reset(st);
        if (r != SQLITE_ROW && r != SQLITE_DONE)
                r = sqlite_error(s, "reading events");
        else
                r = 0;
        store_scan_complete(store, sc, r);
}

static void sqlite_event_expire(Store *store, uint64_t keep_from, int64_t older_than, unsigned max_rows,
                                StoreDone done, void *userdata) {
        SqliteStore *s = (SqliteStore *) store;
        sqlite3_stmt *st = statement(s, STMT_EVENT_EXPIRE);
        int r;

        sqlite3_bind_int64(st, 1, (sqlite3_int64) keep_from);
        sqlite3_bind_int64(st, 2, older_than);
        sqlite3_bind_int64(st, 3, max_rows);
        r = sqlite3_step(st);
        sqlite3_reset(st);
        if (r != SQLITE_DONE)
                r = sqlite_error(s, "expiring events");
        else
                r = sqlite3_changes(s->db);
        if (r > 0)
                (void) read_event_bounds(s);
        done(store, r, userdata);
}

static const StoreOps sqlite_ops = {
        .close = sqlite_close,
        .free_bytes = sqlite_free_bytes,
        .begin = sqlite_begin,
        .commit = sqlite_commit,
        .rollback = sqlite_rollback,
        .savepoint = sqlite_savepoint,
        .release_savepoint = sqlite_release_savepoint,
        .rollback_savepoint = sqlite_rollback_savepoint,
        .user_get = sqlite_user_get,
        .user_lookup = sqlite_user_lookup,
        .user_insert = sqlite_user_insert,
        .user_update = sqlite_user_update,
        .user_delete = sqlite_user_delete,
        .user_list = sqlite_user_list,
        .event_append = sqlite_event_append,
        .event_oldest_time = sqlite_event_oldest_time,
        .event_scan = sqlite_event_scan,
        .event_expire = sqlite_event_expire,
};
