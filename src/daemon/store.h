/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "bus-gvariant.h"
#include "user-record.h"

/* The daemon's durable state, behind one interface with two backends
 * (DESIGN.md §3a [Store]): an SQLite file (store-sqlite.c), or a
 * PostgreSQL database (store-postgresql.c). Every change a client can see
 * is made inside store_begin()/store_commit(); a user change and the event
 * announcing it are committed together.
 *
 * Where the daemon waits for the database (a commit, a page of events,
 * retention) the call is completion-based: DONE runs exactly once, once
 * the work is durable or its result read. The SQLite backend completes
 * before the call returns; the PostgreSQL backend completes later, from
 * the event loop, so that the bus is served while the database works.
 * Everything else is answered from memory or within the open transaction
 * and returns at once. */
typedef struct Store Store;

typedef enum StoreBackend {
        STORE_BACKEND_SQLITE,
        STORE_BACKEND_POSTGRESQL,
} StoreBackend;

typedef struct StoreConfig {
        StoreBackend backend;
        const char *directory;          /* SQLite: DIRECTORY/outpost.db */
        const char *connection;         /* PostgreSQL: a libpq connection string */
} StoreConfig;

/* Store operations fail with -ENOSPC when the disk holding the store is
 * full: the failed transaction is rolled back, reads go on, and writes work
 * again once there is room. They fail with -EUCLEAN when the store cannot
 * be trusted any more: SQLite reports the file damaged (SQLITE_CORRUPT,
 * SQLITE_NOTADB) or an I/O error, or a PostgreSQL commit failed; and with
 * -ECONNRESET when the PostgreSQL session was lost (with it went the lock
 * that made this outpostd the active one). The store is then written no
 * more (every later write fails the same way, and a commit rolls back), and
 * the damage handler runs once. */
typedef void (*StoreDamageHandler)(Store *s, void *userdata);

typedef struct StoredEvent {
        uint64_t seq;
        char *topic;
        int64_t time;
        GVariant *data;         /* a{sv} */
        BusSize data_size;      /* DATA as D-Bus marshals it, measured once by store_event_scan() */
} StoredEvent;

void stored_event_free(StoredEvent *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(StoredEvent, stored_event_free)

/* Opens the store CONFIG names, made if missing; EVENT drives a backend
 * that talks to its database asynchronously. A store that is refused is
 * logged with what is wrong and what to do: a damaged SQLite file or one
 * that is not an Outpost store, a schema version newer than this
 * program's, a database server that cannot be reached. */
int store_open(const StoreConfig *config, sd_event *event, Store **ret);
void store_close(Store *s);

/* Several outpostd may share one PostgreSQL database, and exactly one of
 * them is active (DESIGN.md §5a): the one that holds the database's
 * session-level advisory lock. DONE runs once this one is active and its
 * store is read (ids, users, event bounds): at once for SQLite; for
 * PostgreSQL once it holds the lock, which a standby waits for on the
 * event loop. Before DONE ran only store_path() and store_close() may be
 * used. R < 0: the store cannot be used (a standby lost its session, or
 * reading the store failed), logged. */
typedef void (*StoreReady)(Store *s, int r, void *userdata);
void store_wait_active(Store *s, StoreReady done, void *userdata);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Store, store_close)

/* Where the store is, for messages: a file name, or a PostgreSQL server
 * and database. */
const char *store_path(Store *s);
void store_set_damage_handler(Store *s, StoreDamageHandler handler, void *userdata);
bool store_is_damaged(Store *s);
/* 0, or why the store is written no more (-EUCLEAN, -ECONNRESET). */
int store_failure(Store *s);
/* The room left on the file system that holds the store; -EOPNOTSUPP when
 * the store is not in a local file. */
int store_free_bytes(Store *s, uint64_t *ret);
const char *store_server_id(Store *s);
const char *store_history_id(Store *s);

typedef void (*StoreDone)(Store *s, int r, void *userdata);

int store_begin(Store *s);
/* Commit the open transaction; DONE learns whether it is durable. A
 * commit that fails rolls back. One commit at a time: the next
 * store_begin() may follow at once, its commit after DONE ran. */
void store_commit(Store *s, StoreDone done, void *userdata);
void store_rollback(Store *s);
/* One change inside the open transaction, undone alone on failure. */
int store_savepoint(Store *s);
int store_release_savepoint(Store *s);
void store_rollback_savepoint(Store *s);
/* Wait until every operation started has completed (at exit). */
void store_drain(Store *s);

/* Users. Lookups return -ENOENT when there is no such user; insert and
 * update return -EEXIST when the name belongs to another user.
 *
 * Lookups return a record owned by the store, valid until the next call
 * into the store; copy it (user_record_copy()) to keep or change it. */
int store_user_get(Store *s, const char *id, const UserRecord **ret);
int store_user_lookup(Store *s, const char *name, const UserRecord **ret);
int store_user_insert(Store *s, const UserRecord *u);
/* Writes the tag, the modification time and the columns of FIELDS. */
int store_user_update(Store *s, const UserRecord *u, UserField fields);
int store_user_delete(Store *s, const char *id);
/* Up to LIMIT users with names after AFTER_NAME ("" for the first), in name
 * order, appended to OUT (UserRecord*, freed with user_record_free). */
int store_user_list(Store *s, const char *after_name, unsigned limit, GPtrArray *out, bool *ret_more);

/* Events. seq is never reused, also after retention deleted the newest
 * rows' predecessors. */
int store_event_append(Store *s, const char *topic, int64_t time, GVariant *data, uint64_t *ret_seq);

/* Request ids (DESIGN.md §4 rule 5): a change a caller may retry names
 * itself with REQUEST_KEY, stored with the event that ends it, together
 * with REQUEST_RESULT (what its reply says besides that event's seq; ""
 * when nothing). The store remembers a key for as long as its event is
 * kept (retention), across restarts and failovers: store_request_find()
 * returns that seq and result, also for a change of the open transaction,
 * or -ENOENT. A key is stored at most once. The result stays the store's,
 * valid until the next call into the store. */
int store_event_append_request(Store *s, const char *topic, int64_t time, GVariant *data, const char *request_key,
                               const char *request_result, uint64_t *ret_seq);
int store_request_find(Store *s, const char *request_key, uint64_t *ret_seq, const char **ret_result);
uint64_t store_event_first_seq(Store *s);
/* The time of the oldest stored event: 1 and *RET_TIME, 0 when none. */
int store_event_oldest_time(Store *s, int64_t *ret_time);
uint64_t store_event_last_seq(Store *s);

/* Events with seq > AFTER, ascending, scanning at most MAX_SCAN rows; each
 * one for which MATCH returns true is kept until LIMIT are found, or until
 * the events found add up to about 8 MiB. DONE gets them (EVENTS, of
 * StoredEvent, is the store's: take a reference to keep it), the seq of
 * the last row looked at (AFTER when none), and whether rows remain beyond
 * it. MATCH and its USERDATA must stay valid until DONE ran. */
typedef bool (*StoreEventMatch)(const char *topic, void *userdata);
typedef void (*StoreScanDone)(Store *s, int r, GPtrArray *events, uint64_t last_scanned, bool more, void *userdata);
void store_event_scan(Store *s, uint64_t after, unsigned limit, unsigned max_scan,
                      StoreEventMatch match, void *match_userdata,
                      StoreScanDone done, void *userdata);

/* Delete at most MAX_ROWS events that fall outside the retention bounds;
 * DONE gets the number deleted (R) or a negative errno. */
void store_event_expire(Store *s, unsigned keep_count, int64_t older_than, unsigned max_rows,
                        StoreDone done, void *userdata);
