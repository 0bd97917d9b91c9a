/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The store interface: what is the same for every backend. */
#include "config.h"

#include <assert.h>
#include <errno.h>

#include "bus-gvariant.h"
#include "log.h"
#include "macro.h"
#include "store-private.h"

#define STORE_PAGE_BYTES_MAX (8u * 1024 * 1024)

int store_open(const StoreConfig *config, sd_event *event, Store **ret) {
        switch (config->backend) {
        case STORE_BACKEND_SQLITE:
                return store_sqlite_open(config->directory, ret);
        case STORE_BACKEND_POSTGRESQL:
                return store_postgresql_open(config->connection, event, ret);
        }
        return -EINVAL;
}

void store_close(Store *s) {
        if (!s)
                return;
        s->ops->close(s);
}

const char *store_path(Store *s) {
        return s->path;
}

const char *store_server_id(Store *s) {
        return s->server_id;
}

const char *store_history_id(Store *s) {
        return s->history_id;
}

void store_set_damage_handler(Store *s, StoreDamageHandler handler, void *userdata) {
        s->damage_handler = handler;
        s->damage_userdata = userdata;
}

bool store_is_damaged(Store *s) {
        return s->failure < 0;
}

int store_failure(Store *s) {
        return s->failure;
}

int store_report_failure(Store *s, int failure) {
        if (s->failure < 0)
                return s->failure;
        s->failure = failure;
        if (s->damage_handler)
                s->damage_handler(s, s->damage_userdata);
        return failure;
}

int store_report_damage(Store *s) {
        return store_report_failure(s, -EUCLEAN);
}

void store_wait_active(Store *s, StoreReady done, void *userdata) {
        if (!s->ops->wait_active) {
                done(s, 0, userdata);
                return;
        }
        s->ops->wait_active(s, done, userdata);
}

int store_free_bytes(Store *s, uint64_t *ret) {
        if (!s->ops->free_bytes)
                return -EOPNOTSUPP;
        return s->ops->free_bytes(s, ret);
}

/* Every write starts here: once damaged, the store is written no more. */
int store_begin(Store *s) {
        if (s->failure < 0)
                return s->failure;
        return s->ops->begin(s);
}

/* A commit in flight, and the request ids it writes: forgotten again if
 * it fails. */
typedef struct StoreCommit {
        StoreDone done;
        void *userdata;
        GPtrArray *request_keys;
} StoreCommit;

static void on_commit_done(Store *s, int r, void *userdata) {
        StoreCommit *c = userdata;

        if (r < 0)
                store_requests_forget(s, c->request_keys);
        g_ptr_array_unref(c->request_keys);
        c->done(s, r, c->userdata);
        g_free(c);
}

void store_commit(Store *s, StoreDone done, void *userdata) {
        StoreCommit *c;

        /* What the batch wrote after the damage was found is not committed:
         * nobody may be told it was. */
        if (s->failure < 0) {
                store_rollback(s);
                done(s, s->failure, userdata);
                return;
        }
        c = g_new0(StoreCommit, 1);
        *c = (StoreCommit) {
                .done = done,
                .userdata = userdata,
                .request_keys = store_requests_take_open(s),
        };
        s->ops->commit(s, on_commit_done, c);
}

void store_rollback(Store *s) {
        s->ops->rollback(s);
        store_requests_rollback(s, 0);
}

int store_savepoint(Store *s) {
        if (s->failure < 0)
                return s->failure;
        store_requests_savepoint(s);
        return s->ops->savepoint(s);
}

int store_release_savepoint(Store *s) {
        return s->ops->release_savepoint(s);
}

void store_rollback_savepoint(Store *s) {
        s->ops->rollback_savepoint(s);
        store_requests_rollback(s, s->requests_savepoint);
}

void store_drain(Store *s) {
        if (s->ops->drain)
                s->ops->drain(s);
}

int store_user_get(Store *s, const char *id, const UserRecord **ret) {
        return s->ops->user_get(s, id, ret);
}

int store_user_lookup(Store *s, const char *name, const UserRecord **ret) {
        return s->ops->user_lookup(s, name, ret);
}

int store_user_insert(Store *s, const UserRecord *u) {
        return s->ops->user_insert(s, u);
}

int store_user_update(Store *s, const UserRecord *u, UserField fields) {
        return s->ops->user_update(s, u, fields & USER_FIELD_ALL);
}

int store_user_delete(Store *s, const char *id) {
        return s->ops->user_delete(s, id);
}

int store_user_list(Store *s, const char *after_name, unsigned limit, GPtrArray *out, bool *ret_more) {
        return s->ops->user_list(s, after_name, limit, out, ret_more);
}

void stored_event_free(StoredEvent *e) {
        if (!e)
                return;
        g_free(e->topic);
        g_clear_pointer(&e->data, g_variant_unref);
        g_free(e);
}

int store_event_append(Store *s, const char *topic, int64_t time, GVariant *data, uint64_t *ret_seq) {
        return s->ops->event_append(s, topic, time, data, NULL, NULL, ret_seq);
}

int store_event_append_request(Store *s, const char *topic, int64_t time, GVariant *data, const char *request_key,
                               const char *request_result, uint64_t *ret_seq) {
        uint64_t seq;
        int r;

        assert(request_key);
        if (store_requests_find(s, request_key, NULL, NULL) >= 0)
                return -EEXIST;
        r = s->ops->event_append(s, topic, time, data, request_key, request_result ?: "", &seq);
        if (r < 0)
                return r;
        store_requests_note_written(s, request_key, seq, request_result);
        *ret_seq = seq;
        return 0;
}

int store_request_find(Store *s, const char *request_key, uint64_t *ret_seq, const char **ret_result) {
        return store_requests_find(s, request_key, ret_seq, ret_result);
}

void store_note_append(Store *s, uint64_t seq) {
        s->last_seq = seq;
        if (s->first_seq == 0 || s->first_seq > s->last_seq)
                s->first_seq = s->last_seq;
}

uint64_t store_event_first_seq(Store *s) {
        return s->first_seq;
}

uint64_t store_event_last_seq(Store *s) {
        return s->last_seq;
}

int store_event_oldest_time(Store *s, int64_t *ret_time) {
        return s->ops->event_oldest_time(s, ret_time);
}

void store_event_scan(Store *s, uint64_t after, unsigned limit, unsigned max_scan,
                      StoreEventMatch match, void *match_userdata,
                      StoreScanDone done, void *userdata) {
        StoreScan *sc = g_new0(StoreScan, 1);

        *sc = (StoreScan) {
                .after = after,
                .limit = limit,
                .max_scan = max_scan,
                .match = match,
                .match_userdata = match_userdata,
                .done = done,
                .userdata = userdata,
                .events = g_ptr_array_new_with_free_func((GDestroyNotify) stored_event_free),
                .last_scanned = after,
        };
        s->ops->event_scan(s, sc);
}

StoreScanStep store_scan_step(StoreScan *sc, uint64_t seq, const char *topic) {
        /* A page also ends before its reply would outgrow what a bus
         * carries in one message (dbus-daemon drops a sender that exceeds
         * it); it always holds at least one event. */
        if (sc->found >= sc->limit || sc->scanned >= sc->max_scan ||
            (sc->found > 0 && sc->bytes >= STORE_PAGE_BYTES_MAX)) {
                sc->more = true;
                return STORE_SCAN_STOP;
        }
        sc->scanned++;
        sc->last_scanned = seq;
        if (sc->match && !sc->match(topic ?: "", sc->match_userdata))
                return STORE_SCAN_SKIP;
        return STORE_SCAN_TAKE;
}

void store_scan_take(StoreScan *sc, StoredEvent *e) {
        /* Counted as D-Bus marshals it, which can be several times the
         * size stored. */
        bus_gvariant_measure(e->data, &e->data_size);
        sc->bytes += bus_event_size_bound(e->topic, &e->data_size);
        g_ptr_array_add(sc->events, e);
        sc->found++;
}

void store_scan_complete(Store *s, StoreScan *sc, int r) {
        sc->done(s, r, sc->events, sc->last_scanned, sc->more, sc->userdata);
        g_ptr_array_unref(sc->events);
        g_free(sc);
}

typedef struct StoreExpire {
        StoreDone done;
        void *userdata;
} StoreExpire;

static void on_expire_done(Store *s, int r, void *userdata) {
        StoreExpire *e = userdata;

        /* The request ids of the events deleted go with them. */
        if (r >= 0)
                store_requests_expire(s);
        e->done(s, r, e->userdata);
        g_free(e);
}

void store_event_expire(Store *s, unsigned keep_count, int64_t older_than, unsigned max_rows,
                        StoreDone done, void *userdata) {
        uint64_t keep_from = s->last_seq >= keep_count ? s->last_seq - keep_count : 0;
        StoreExpire *e;

        if (s->failure < 0) {
                done(s, s->failure, userdata);
                return;
        }
        e = g_new0(StoreExpire, 1);
        *e = (StoreExpire) { .done = done, .userdata = userdata };
        s->ops->event_expire(s, keep_from, older_than, max_rows, on_expire_done, e);
}

/* g_variant_get_normal_form() returns a full reference of its own (to the
 * same value when that is in normal form already): it must not be sunk
 * again, or every row read keeps its value alive for good. */
GVariant *store_variant_from_blob(const GVariantType *type, const void *blob, size_t size) {
        g_autoptr(GBytes) bytes = g_bytes_new(blob, size);
        g_autoptr(GVariant) raw = g_variant_ref_sink(g_variant_new_from_bytes(type, bytes, FALSE));

        return g_variant_get_normal_form(raw);
}
