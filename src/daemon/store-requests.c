/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The request ids the store remembers (DESIGN.md §4 rule 5), in memory for
 * every backend: a retried Publish or Send is answered from here, within
 * the open transaction as after a restart. Each backend keeps the key in
 * the row of the event it belongs to, so it is durable with the event and
 * goes with it when retention deletes the row; at open the backend reads
 * them back into this table. What a transaction adds is undone here when
 * the transaction, or the change's savepoint, is rolled back, and when its
 * commit fails. */
#include "config.h"

#include <errno.h>

#include "macro.h"
#include "store-private.h"

typedef struct StoreRequest {
        char *key;
        uint64_t seq;
        char *result;
        GList link;             /* in Store.requests_by_seq */
} StoreRequest;

static void store_request_free(StoreRequest *r) {
        g_free(r->key);
        g_free(r->result);
        g_free(r);
}

static void requests_init(Store *s) {
        if (s->requests)
                return;
        s->requests = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) store_request_free);
        g_queue_init(&s->requests_by_seq);
        s->requests_open = g_ptr_array_new_with_free_func(g_free);
}

void store_requests_note(Store *s, const char *key, uint64_t seq, const char *result) {
        StoreRequest *r;

        requests_init(s);
        /* The backends' unique index keeps a key to one row. */
        g_assert(!g_hash_table_contains(s->requests, key));
        r = g_new0(StoreRequest, 1);
        *r = (StoreRequest) {
                .key = g_strdup(key),
                .seq = seq,
                .result = g_strdup(result ?: ""),
        };
        r->link.data = r;
        g_queue_push_tail_link(&s->requests_by_seq, &r->link);
        g_hash_table_insert(s->requests, r->key, r);
}

void store_requests_note_written(Store *s, const char *key, uint64_t seq, const char *result) {
        store_requests_note(s, key, seq, result);
        g_ptr_array_add(s->requests_open, g_strdup(key));
}

static void forget_key(Store *s, const char *key) {
        StoreRequest *r = s->requests ? g_hash_table_lookup(s->requests, key) : NULL;

        if (!r)
                return;
        g_queue_unlink(&s->requests_by_seq, &r->link);
        g_hash_table_remove(s->requests, key);  /* frees r */
}

void store_requests_savepoint(Store *s) {
        requests_init(s);
        s->requests_savepoint = s->requests_open->len;
}

void store_requests_rollback(Store *s, guint from) {
        requests_init(s);
        for (guint i = from; i < s->requests_open->len; i++)
                forget_key(s, s->requests_open->pdata[i]);
        g_ptr_array_set_size(s->requests_open, MIN(from, s->requests_open->len));
        s->requests_savepoint = MIN(s->requests_savepoint, s->requests_open->len);
}

GPtrArray *store_requests_take_open(Store *s) {
        GPtrArray *keys;

        requests_init(s);
        keys = TAKE_PTR(s->requests_open);
        s->requests_open = g_ptr_array_new_with_free_func(g_free);
        s->requests_savepoint = 0;
        return keys;
}

void store_requests_forget(Store *s, GPtrArray *keys) {
        for (guint i = 0; keys && i < keys->len; i++)
                forget_key(s, keys->pdata[i]);
}

void store_requests_expire(Store *s) {
        GList *l;

        if (!s->requests)
                return;
        while ((l = g_queue_peek_head_link(&s->requests_by_seq))) {
                StoreRequest *r = l->data;

                if (r->seq >= s->first_seq)
                        break;
                forget_key(s, r->key);
        }
}

int store_requests_find(Store *s, const char *key, uint64_t *ret_seq, const char **ret_result) {
        StoreRequest *r = s->requests ? g_hash_table_lookup(s->requests, key) : NULL;

        if (!r)
                return -ENOENT;
        if (ret_seq)
                *ret_seq = r->seq;
        if (ret_result)
                *ret_result = r->result;
        return 0;
}

void store_requests_clear(Store *s) {
        if (!s->requests)
                return;
        g_queue_init(&s->requests_by_seq);
        g_clear_pointer(&s->requests, g_hash_table_unref);
        g_clear_pointer(&s->requests_open, g_ptr_array_unref);
}
