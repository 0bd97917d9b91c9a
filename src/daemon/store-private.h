/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What a store backend implements (store.h is what the daemon calls). */

#include "store.h"

/* A FetchSince page being gathered: the rules that end a page are the
 * same for every backend (store_scan_step()). */
typedef struct StoreScan {
        uint64_t after;
        unsigned limit, max_scan;
        StoreEventMatch match;
        void *match_userdata;
        StoreScanDone done;
        void *userdata;

        GPtrArray *events;      /* StoredEvent */
        uint64_t last_scanned;
        unsigned found, scanned;
        size_t bytes;
        bool more;
} StoreScan;

typedef enum StoreScanStep {
        STORE_SCAN_STOP,        /* the page is full: the row is not looked at */
        STORE_SCAN_SKIP,        /* looked at, not asked for */
        STORE_SCAN_TAKE,        /* build the event and store_scan_take() it */
} StoreScanStep;

StoreScanStep store_scan_step(StoreScan *sc, uint64_t seq, const char *topic);
void store_scan_take(StoreScan *sc, StoredEvent *e);
/* Hands the page (or R < 0) to its caller and frees SC. */
void store_scan_complete(Store *s, StoreScan *sc, int r);

typedef struct StoreOps {
        void (*close)(Store *s);
        int (*free_bytes)(Store *s, uint64_t *ret);

        int (*begin)(Store *s);
        void (*commit)(Store *s, StoreDone done, void *userdata);
        void (*rollback)(Store *s);
        int (*savepoint)(Store *s);
        int (*release_savepoint)(Store *s);
        void (*rollback_savepoint)(Store *s);
        void (*drain)(Store *s);
        void (*wait_active)(Store *s, StoreReady done, void *userdata);

        int (*user_get)(Store *s, const char *id, const UserRecord **ret);
        int (*user_lookup)(Store *s, const char *name, const UserRecord **ret);
        int (*user_insert)(Store *s, const UserRecord *u);
        int (*user_update)(Store *s, const UserRecord *u, UserField fields);
        int (*user_delete)(Store *s, const char *id);
        int (*user_list)(Store *s, const char *after_name, unsigned limit, GPtrArray *out, bool *ret_more);

        /* REQUEST_KEY and REQUEST_RESULT: NULL, or what the event's row keeps of its request. */
        int (*event_append)(Store *s, const char *topic, int64_t time, GVariant *data, const char *request_key,
                            const char *request_result, uint64_t *ret_seq);
        int (*event_oldest_time)(Store *s, int64_t *ret_time);
        void (*event_scan)(Store *s, StoreScan *sc);
        void (*event_expire)(Store *s, uint64_t keep_from, int64_t older_than, unsigned max_rows,
                             StoreDone done, void *userdata);
} StoreOps;

/* The part every backend shares; a backend's own struct begins with it. */
struct Store {
        const StoreOps *ops;
        char *path;             /* for messages */
        char *server_id;
        char *history_id;
        uint64_t first_seq;     /* of the oldest stored event; last_seq + 1 when none */
        uint64_t last_seq;      /* highest seq ever given out; 0 when none */
        /* 0, or why the store is written no more: -EUCLEAN (damaged, or a
         * commit failed) or -ECONNRESET (the database session is lost). */
        int failure;
        StoreDamageHandler damage_handler;
        void *damage_userdata;

        /* The request ids of the events kept (store-requests.c). */
        GHashTable *requests;           /* key → StoreRequest (owned) */
        GQueue requests_by_seq;         /* the same, oldest first: retention forgets from the head */
        GPtrArray *requests_open;       /* keys written by the open transaction */
        guint requests_savepoint;       /* requests_open->len when the change's savepoint began */
};

/* Marks S written no more because of FAILURE (-EUCLEAN or -ECONNRESET) and
 * runs the damage handler, once. Returns the first failure reported. */
int store_report_failure(Store *s, int failure);
/* The same for damage: store_report_failure(S, -EUCLEAN). */
int store_report_damage(Store *s);
/* The first_seq/last_seq bookkeeping of an append of SEQ. */
void store_note_append(Store *s, uint64_t seq);

/* The request ids: a backend notes each one it reads from its database
 * (in seq order) when it opens, and forgets them all when it closes. The
 * rest is store.c's, which follows the transactions. */
void store_requests_note(Store *s, const char *key, uint64_t seq, const char *result);
void store_requests_note_written(Store *s, const char *key, uint64_t seq, const char *result);
void store_requests_savepoint(Store *s);
/* The keys written from index FROM of requests_open on were rolled back. */
void store_requests_rollback(Store *s, guint from);
/* What the open transaction wrote is being committed: its keys, taken
 * out, for store_requests_forget() should the commit fail. */
GPtrArray *store_requests_take_open(Store *s);
void store_requests_forget(Store *s, GPtrArray *keys);
/* Retention: the keys of events before first_seq go. */
void store_requests_expire(Store *s);
int store_requests_find(Store *s, const char *key, uint64_t *ret_seq, const char **ret_result);
void store_requests_clear(Store *s);

/* A GVariant of TYPE over a copy of BLOB, in normal form, so that damaged
 * or hostile bytes cannot hand out invalid data. */
GVariant *store_variant_from_blob(const GVariantType *type, const void *blob, size_t size);

int store_sqlite_open(const char *directory, Store **ret);
int store_postgresql_open(const char *connection, sd_event *event, Store **ret);
