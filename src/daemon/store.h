/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus-gvariant.h"
#include "user-record.h"

/* The daemon's durable state: one SQLite database in WAL mode with
 * synchronous=FULL, so that a committed transaction survives kill -9 and
 * power loss. Every change a client can see is made inside
 * store_begin()/store_commit(); a user change and the event announcing it
 * are committed together. */
typedef struct Store Store;

/* Store operations fail with -ENOSPC when the disk holding the store is
 * full: the failed transaction is rolled back, reads go on, and writes work
 * again once there is room. They fail with -EUCLEAN when SQLite reports the
 * file damaged (SQLITE_CORRUPT, SQLITE_NOTADB) or an I/O error: the store is
 * then written no more (every later write fails with -EUCLEAN, and a commit
 * rolls back), and the damage handler runs once. */
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

/* Opens DIRECTORY/outpost.db, made if missing. An existing file is checked
 * first, and refused (with a message naming it and what to do) when it is
 * damaged, not an Outpost store (another program's SQLite database, or no
 * database at all), or of a schema version newer than this program's. */
int store_open(const char *directory, Store **ret);
void store_close(Store *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Store, store_close)

const char *store_path(Store *s);
void store_set_damage_handler(Store *s, StoreDamageHandler handler, void *userdata);
bool store_is_damaged(Store *s);
/* The room left on the file system that holds the store. */
int store_free_bytes(Store *s, uint64_t *ret);
const char *store_server_id(Store *s);
const char *store_history_id(Store *s);

int store_begin(Store *s);
int store_commit(Store *s);
void store_rollback(Store *s);
/* One change inside the open transaction, undone alone on failure. */
int store_savepoint(Store *s);
int store_release_savepoint(Store *s);
void store_rollback_savepoint(Store *s);

/* Users. Lookups return -ENOENT when there is no such user; insert and
 * update return -EEXIST when the name belongs to another user.
 *
 * Lookups answer from an in-memory cache of recently used users when they
 * can (outpostd is the store's only writer; see store.c), and return a
 * record owned by the store, valid until the next call into the store;
 * copy it (user_record_copy()) to keep or change it. */
int store_user_get(Store *s, const char *id, const UserRecord **ret);
int store_user_lookup(Store *s, const char *name, const UserRecord **ret);
int store_user_insert(Store *s, const UserRecord *u);
/* Writes the tag, the modification time and the columns of FIELDS. */
int store_user_update(Store *s, const UserRecord *u, UserField fields);
int store_user_delete(Store *s, const char *id);
/* Up to LIMIT users with names after AFTER_NAME ("" for the first), in name
 * order, appended to OUT (UserRecord*, freed with user_record_free). */
int store_user_list(Store *s, const char *after_name, unsigned limit, GPtrArray *out, bool *ret_more);
void user_record_free(UserRecord *u);

/* Events. seq comes from SQLite's AUTOINCREMENT, so it is never reused,
 * also after retention deleted the newest rows' predecessors. */
int store_event_append(Store *s, const char *topic, int64_t time, GVariant *data, uint64_t *ret_seq);
uint64_t store_event_first_seq(Store *s);
/* The time of the oldest stored event: 1 and *RET_TIME, 0 when none. */
int store_event_oldest_time(Store *s, int64_t *ret_time);
uint64_t store_event_last_seq(Store *s);
/* Events with seq > AFTER, ascending, scanning at most MAX_SCAN rows; each
 * one for which MATCH returns true is appended to OUT until LIMIT are
 * found, or until the events found add up to about 8 MiB. *ret_last_scanned
 * is the seq of the last row looked at (AFTER when none), *ret_more whether
 * rows remain beyond it. */
typedef bool (*StoreEventMatch)(const char *topic, void *userdata);
int store_event_scan(Store *s, uint64_t after, unsigned limit, unsigned max_scan,
                     StoreEventMatch match, void *userdata,
                     GPtrArray *out, uint64_t *ret_last_scanned, bool *ret_more);
/* Delete at most MAX_ROWS events that fall outside the retention bounds.
 * Returns the number deleted. */
int store_event_expire(Store *s, unsigned keep_count, int64_t older_than, unsigned max_rows);
