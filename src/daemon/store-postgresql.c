/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The PostgreSQL backend of the store ([Store] Backend=postgresql).
 *
 * outpostd is the only writer of its database (DESIGN.md §5a), so every
 * user is kept in memory and read from there, and sequence numbers are
 * given out here (gap-free). What a transaction writes is kept as a list
 * of statements, with an undo log of the users it changed; a savepoint is
 * a mark in both. The commit sends the whole batch through libpq's
 * pipeline mode as one implicit transaction (the statements, then a Sync),
 * and completes when the server reports it committed: one round trip per
 * batch, durable as far as the server's synchronous_commit makes it.
 *
 * Nothing waits for the server: the connection is non-blocking, and an
 * sd-event io source on its socket reads the results, in the order the
 * operations were sent. A commit that fails, or a connection that is lost,
 * leaves the store unusable (the damage handler runs): the memory no longer
 * matches the database, and outpostd exits for systemd to start it again,
 * reading the database afresh.
 *
 * Several outpostd may point at one database; the active one is the one
 * holding ACTIVE_LOCK_KEY, a session-level advisory lock, which it keeps
 * for as long as its session lives (DESIGN.md §5a). A standby connects,
 * checks the schema, and waits for the lock with a query the server
 * answers only once the lock is free (the active's session ended): the
 * wait is on the event loop, and the store is read only once the lock is
 * held, so ids and sequence numbers carry over from the last active. */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "macro.h"
#include "store-private.h"
#include "validate.h"

#define SCHEMA_VERSION 2
/* Taken while the schema is checked or made, so that two outpostd starting
 * at once on an empty database do not both make it ("OUTP"). */
#define SCHEMA_LOCK_KEY 1330992208
/* Held by the active outpostd for the life of its session ("OUTPACTV"). */
#define ACTIVE_LOCK_KEY "5716568005685761110"
#define LOCK_RETRY_USEC (1 * 1000 * 1000)
#define DRAIN_TIMEOUT_MSEC (10 * 1000)
#define PARAMS_MAX 9

static const char schema_sql[] =
        "CREATE TABLE outpost_meta ("
        "  key text PRIMARY KEY,"
        "  value text NOT NULL);"
        "CREATE TABLE outpost_users ("
        "  id text PRIMARY KEY,"
        "  tag text NOT NULL,"
        "  name text NOT NULL UNIQUE,"
        "  display_name text NOT NULL,"
        "  email text NOT NULL,"
        "  enabled boolean NOT NULL,"
        "  attributes bytea NOT NULL,"
        "  created bigint NOT NULL,"
        "  modified bigint NOT NULL);"
        "CREATE TABLE outpost_events ("
        "  seq bigint PRIMARY KEY,"
        "  topic text NOT NULL,"
        "  time bigint NOT NULL,"
        "  data bytea NOT NULL);";

/* Schema version 2: the request id of a change a caller may retry, with
 * the event that ends it (store-requests.c). Brings a store of version 1
 * to version 2, and follows schema_sql on a new one. */
static const char schema_v2_sql[] =
        "ALTER TABLE outpost_events ADD COLUMN request_key text, ADD COLUMN request_result text;"
        "CREATE UNIQUE INDEX outpost_events_request_key ON outpost_events (request_key) "
        "  WHERE request_key IS NOT NULL;"
        "INSERT INTO outpost_schema (version) VALUES (2);";

static const struct {
        const char *name;
        const char *sql;
} prepared[] = {
        { "user_insert", "INSERT INTO outpost_users (id, tag, name, display_name, email, enabled, attributes, created, "
                         "modified) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)" },
        { "user_update", "UPDATE outpost_users SET tag = $2, name = $3, display_name = $4, email = $5, enabled = $6, "
                         "attributes = $7, modified = $8 WHERE id = $1" },
        { "user_delete", "DELETE FROM outpost_users WHERE id = $1" },
        { "event_insert", "INSERT INTO outpost_events (seq, topic, time, data, request_key, request_result) "
                          "VALUES ($1, $2, $3, $4, $5, $6)" },
        { "event_scan", "SELECT seq, topic, time, data FROM outpost_events WHERE seq > $1 ORDER BY seq LIMIT $2" },
        /* The highest seq given out must outlive the rows retention
         * deletes: kept aside by the same transaction. */
        { "event_floor", "INSERT INTO outpost_meta (key, value) SELECT 'last-seq', max(seq)::text FROM outpost_events "
                         "HAVING max(seq) IS NOT NULL ON CONFLICT (key) DO UPDATE SET value = excluded.value" },
        /* Only the oldest $3 rows are looked at, so one round costs the
         * same however long the history is. */
        { "event_expire", "DELETE FROM outpost_events WHERE seq IN (SELECT seq FROM outpost_events ORDER BY seq "
                          "LIMIT $3) AND (seq <= $1 OR time < $2)" },
        { "event_oldest", "SELECT seq, time FROM outpost_events ORDER BY seq LIMIT 1" },
};

/* A statement of the open transaction, with its parameters. */
typedef struct PgStatement {
        const char *name;
        int n;
        char *values[PARAMS_MAX];
        int lengths[PARAMS_MAX];
        int formats[PARAMS_MAX];
} PgStatement;

typedef struct UserUndo {
        char *id;
        UserRecord *before;     /* NULL: there was no such user */
} UserUndo;

/* Where a transaction or a savepoint began. */
typedef struct PgMark {
        guint statements, undo;
        uint64_t first_seq, last_seq;
        int64_t oldest_time;
} PgMark;

typedef enum PgOpKind {
        PG_OP_COMMIT,
        PG_OP_SCAN,
        PG_OP_EXPIRE,
} PgOpKind;

/* An operation sent to the server, waiting for its results. */
typedef struct PgOp {
        PgOpKind kind;
        StoreDone done;
        void *userdata;
        StoreScan *scan;
        unsigned results;       /* read so far */
        int error;              /* the first failure */
        int deleted;            /* expire: rows deleted */
        bool have_oldest;       /* expire: the oldest row left */
        uint64_t oldest_seq;
        int64_t oldest_time;
        uint64_t sent_last_seq; /* expire: the highest seq sent before it */
} PgOp;

typedef struct PgStore {
        Store base;
        PGconn *conn;
        sd_event *event;
        sd_event_source *io;
        /* Until active: whether the lock is held, and who waits for it. */
        bool active;
        sd_event_source *lock_retry;
        StoreReady ready;
        void *ready_userdata;
        GQueue ops;             /* PgOp, in the order sent */
        uint64_t sent_last_seq; /* the highest seq of a transaction sent */

        int64_t oldest_time;    /* of the event first_seq, when there is one */
        GPtrArray *statements;  /* PgStatement of the open transaction */
        GArray *undo;           /* UserUndo of the open transaction */
        PgMark begin, savepoint;

        GHashTable *user_by_id;         /* id → UserRecord (owned) */
        GTree *user_by_name;            /* name → the same UserRecord */
} PgStore;

static void pg_close(Store *store);
static inline void pg_store_closep(PgStore **s) {
        if (*s)
                pg_close(&(*s)->base);
}

static void pg_statement_free(PgStatement *st) {
        for (int i = 0; i < st->n; i++)
                g_free(st->values[i]);
        g_free(st);
}

static void param(PgStatement *st, char *value, int length, int format) {
        g_assert(st->n < PARAMS_MAX);
        st->values[st->n] = value;
        st->lengths[st->n] = length;
        st->formats[st->n] = format;
        st->n++;
}

static void param_text(PgStatement *st, const char *value) {
        param(st, g_strdup(value), 0, 0);
}

static void param_int64(PgStatement *st, int64_t value) {
        param(st, g_strdup_printf("%" PRId64, value), 0, 0);
}

static void param_variant(PgStatement *st, GVariant *v) {
        gsize size = g_variant_get_size(v);

        param(st, g_memdup2(size > 0 ? g_variant_get_data(v) : "", MAX(size, (gsize) 1)), (int) size, 1);
}

static PgStatement *statement_add(PgStore *s, const char *name) {
        PgStatement *st = g_new0(PgStatement, 1);

        st->name = name;
        g_ptr_array_add(s->statements, st);
        return st;
}

/* Reading binary results */

static const char *value_text(const PGresult *res, int row, int col) {
        return PQgetvalue(res, row, col);
}

static int64_t value_int64(const PGresult *res, int row, int col) {
        uint64_t v = 0;

        if (PQgetlength(res, row, col) == sizeof(v))
                memcpy(&v, PQgetvalue(res, row, col), sizeof(v));
        return (int64_t) be64toh(v);
}

static GVariant *value_variant(const PGresult *res, int row, int col, const GVariantType *type) {
        return store_variant_from_blob(type, PQgetvalue(res, row, col), (size_t) PQgetlength(res, row, col));
}

/* The users in memory */

static UserRecord *user_take(PgStore *s, const char *id) {
        UserRecord *u = g_hash_table_lookup(s->user_by_id, id);

        if (!u)
                return NULL;
        g_tree_remove(s->user_by_name, u->name);
        g_hash_table_steal(s->user_by_id, id);
        return u;
}

static void user_put(PgStore *s, UserRecord *u) {
        g_hash_table_insert(s->user_by_id, u->id, u);
        g_tree_insert(s->user_by_name, u->name, u);
}

static UserRecord *user_dup(const UserRecord *u) {
        UserRecord *c = g_new0(UserRecord, 1);

        user_record_copy(c, u);
        return c;
}

static void undo_add(PgStore *s, const char *id, UserRecord *before) {
        UserUndo e = { .id = g_strdup(id), .before = before };

        g_array_append_val(s->undo, e);
}

static void undo_clear(UserUndo *e) {
        g_free(e->id);
        user_record_free(e->before);
}

static PgMark mark_now(PgStore *s) {
        return (PgMark) {
                .statements = s->statements->len,
                .undo = s->undo->len,
                .first_seq = s->base.first_seq,
                .last_seq = s->base.last_seq,
                .oldest_time = s->oldest_time,
        };
}

/* Undo what was done since M. */
static void rollback_to(PgStore *s, const PgMark *m) {
        for (guint i = s->undo->len; i > m->undo; i--) {
                UserUndo *e = &g_array_index(s->undo, UserUndo, i - 1);

                user_record_free(user_take(s, e->id));
                if (e->before)
                        user_put(s, TAKE_PTR(e->before));
        }
        g_array_set_size(s->undo, m->undo);
        g_ptr_array_set_size(s->statements, m->statements);
        /* Sequence numbers of what is undone may be given out again:
         * nobody has seen them. */
        s->base.first_seq = m->first_seq;
        s->base.last_seq = m->last_seq;
        s->oldest_time = m->oldest_time;
}

/* Talking to the server */

static int pg_fail(PgStore *s, const char *what) {
        log_error("%s: %s: %s", s->base.path, what, PQerrorMessage(s->conn));
        return -ECONNRESET;
}

static int flush_output(PgStore *s) {
        int r = PQflush(s->conn);

        if (r < 0)
                return pg_fail(s, "sending to the server failed");
        /* 1: more to send once the socket takes it. */
        return sd_event_source_set_io_events(s->io, EPOLLIN | (r > 0 ? EPOLLOUT : 0));
}

static PgOp *op_new(PgStore *s, PgOpKind kind) {
        PgOp *op = g_new0(PgOp, 1);

        op->kind = kind;
        g_queue_push_tail(&s->ops, op);
        return op;
}

static int send_statement(PgStore *s, const PgStatement *st) {
        if (!PQsendQueryPrepared(s->conn, st->name, st->n, (const char *const *) st->values, st->lengths,
                                 st->formats, 1))
                return pg_fail(s, st->name);
        return 0;
}

static int send_sync(PgStore *s) {
        if (!PQpipelineSync(s->conn))
                return pg_fail(s, "ending a transaction");
        return flush_output(s);
}

/* Send the N STATEMENTS and a Sync: one round trip. */
static int send_pipeline(PgStore *s, const PgStatement *const *statements, size_t n) {
        int r;

        for (size_t i = 0; i < n; i++) {
                r = send_statement(s, statements[i]);
                if (r < 0)
                        return r;
        }
        return send_sync(s);
}

static void op_complete(PgStore *s, PgOp *op);

/* The connection is gone or broken: every operation waiting fails, and the
 * store is used no more. */
static void fail_all(PgStore *s) {
        PgOp *op;

        (void) sd_event_source_set_enabled(s->io, SD_EVENT_OFF);
        log_crit("%s: the database session is lost, and with it the lock that made this outpostd the active one: "
                 "outpostd stops serving", s->base.path);
        (void) store_report_failure(&s->base, -ECONNRESET);
        /* Whatever the server said before, a commit in flight may or may
         * not have reached it: that is what its caller learns. */
        while ((op = g_queue_pop_head(&s->ops))) {
                op->error = -ECONNRESET;
                op_complete(s, op);
        }
}

static void op_result_scan(PgOp *op, const PGresult *res) {
        int rows = PQntuples(res);

        for (int i = 0; i < rows; i++) {
                StoreScanStep step = store_scan_step(op->scan, (uint64_t) value_int64(res, i, 0), value_text(res, i, 1));
                StoredEvent *e;

                if (step == STORE_SCAN_STOP)
                        break;
                if (step == STORE_SCAN_SKIP)
                        continue;
                e = g_new0(StoredEvent, 1);
                e->seq = (uint64_t) value_int64(res, i, 0);
                e->topic = g_strdup(value_text(res, i, 1));
                e->time = value_int64(res, i, 2);
                e->data = value_variant(res, i, 3, G_VARIANT_TYPE_VARDICT);
                store_scan_take(op->scan, e);
        }
}

/* Results of an expire: the floor, the DELETE, the oldest row left. */
static void op_result_expire(PgOp *op, const PGresult *res) {
        if (op->results == 1)
                op->deleted = atoi(PQcmdTuples((PGresult *) res));
        else if (op->results == 2 && PQntuples(res) > 0) {
                op->have_oldest = true;
                op->oldest_seq = (uint64_t) value_int64(res, 0, 0);
                op->oldest_time = value_int64(res, 0, 1);
        }
}

static void op_result(PgStore *s, PgOp *op, const PGresult *res) {
        ExecStatusType status = PQresultStatus(res);

        if (status == PGRES_PIPELINE_ABORTED)
                return;         /* an earlier statement of the transaction failed */
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
                if (op->error >= 0) {
                        log_error("%s: %s", s->base.path, PQresultErrorMessage(res));
                        op->error = -EIO;
                }
                return;
        }
        if (op->kind == PG_OP_SCAN)
                op_result_scan(op, res);
        else if (op->kind == PG_OP_EXPIRE)
                op_result_expire(op, res);
        op->results++;
}

static void expire_complete(PgStore *s, PgOp *op) {
        if (op->error < 0) {
                op->done(&s->base, op->error, op->userdata);
                return;
        }
        if (op->have_oldest) {
                s->base.first_seq = op->oldest_seq;
                s->oldest_time = op->oldest_time;
        } else if (s->base.first_seq <= op->sent_last_seq) {
                /* Everything stored went; the next event is one not yet
                 * committed, if any: its time is about now. */
                s->base.first_seq = op->sent_last_seq + 1;
                s->oldest_time = g_get_real_time();
        }
        op->done(&s->base, op->deleted, op->userdata);
}

static void op_complete(PgStore *s, PgOp *op) {
        switch (op->kind) {
        case PG_OP_COMMIT:
                /* The memory holds what the server refused: it cannot be
                 * trusted any more. */
                if (op->error < 0 && s->base.failure == 0) {
                        log_crit("%s: a commit failed; outpostd stops serving and reads the database again when "
                                 "restarted", s->base.path);
                        op->error = store_report_damage(&s->base);
                }
                op->done(&s->base, op->error, op->userdata);
                break;
        case PG_OP_SCAN:
                store_scan_complete(&s->base, op->scan, op->error);
                break;
        case PG_OP_EXPIRE:
                expire_complete(s, op);
                break;
        }
        g_free(op);
}

/* Read every result that has arrived. In pipeline mode each statement's
 * results end with NULL, and each transaction with a PIPELINE_SYNC. */
static void read_results(PgStore *s) {
        bool last_was_null = false;

        while (!g_queue_is_empty(&s->ops) && !PQisBusy(s->conn)) {
                PGresult *res = PQgetResult(s->conn);
                PgOp *op = g_queue_peek_head(&s->ops);

                if (!res) {
                        if (last_was_null)
                                return;
                        last_was_null = true;
                        continue;
                }
                last_was_null = false;
                if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
                        g_queue_pop_head(&s->ops);
                        op_complete(s, op);
                } else
                        op_result(s, op, res);
                PQclear(res);
        }
}

static int on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        PgStore *s = userdata;

        if ((revents & EPOLLOUT) && flush_output(s) < 0) {
                fail_all(s);
                return 0;
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (!PQconsumeInput(s->conn) || PQstatus(s->conn) != CONNECTION_OK) {
                        (void) pg_fail(s, "the connection to the server failed");
                        fail_all(s);
                        return 0;
                }
                read_results(s);
        }
        return 0;
}

/* Transactions */

static int pg_begin(Store *store) {
        PgStore *s = (PgStore *) store;

        s->begin = mark_now(s);
        return 0;
}

static void pg_rollback(Store *store) {
        PgStore *s = (PgStore *) store;

        rollback_to(s, &s->begin);
}

static void pg_commit(Store *store, StoreDone done, void *userdata) {
        PgStore *s = (PgStore *) store;
        PgOp *op = op_new(s, PG_OP_COMMIT);
        int r;

        op->done = done;
        op->userdata = userdata;
        r = send_pipeline(s, (const PgStatement *const *) s->statements->pdata, s->statements->len);
        g_ptr_array_set_size(s->statements, 0);
        g_array_set_size(s->undo, 0);
        s->sent_last_seq = s->base.last_seq;
        if (r < 0)
                fail_all(s);      /* sending failed: the connection is unusable */
}

static int pg_savepoint(Store *store) {
        PgStore *s = (PgStore *) store;

        s->savepoint = mark_now(s);
        return 0;
}

static int pg_release_savepoint(Store *store) {
        return 0;
}

static void pg_rollback_savepoint(Store *store) {
        PgStore *s = (PgStore *) store;

        rollback_to(s, &s->savepoint);
}

/* At exit: wait, a bounded time, for what was sent. */
static void pg_drain(Store *store) {
        PgStore *s = (PgStore *) store;
        int64_t deadline = g_get_monotonic_time() + DRAIN_TIMEOUT_MSEC * 1000;

        while (!g_queue_is_empty(&s->ops) && s->base.failure == 0) {
                struct pollfd p = { .fd = PQsocket(s->conn), .events = POLLIN };
                int64_t left = (deadline - g_get_monotonic_time()) / 1000;
                int flushed = PQflush(s->conn);

                if (flushed > 0)
                        p.events |= POLLOUT;
                if (flushed < 0 || left <= 0 || poll(&p, 1, (int) left) <= 0 ||
                    ((p.revents & POLLIN) && !PQconsumeInput(s->conn))) {
                        log_error("%s: the server did not answer before exit", s->base.path);
                        fail_all(s);
                        return;
                }
                read_results(s);
        }
}

/* Users */

static int pg_user_get(Store *store, const char *id, const UserRecord **ret) {
        PgStore *s = (PgStore *) store;
        const UserRecord *u = g_hash_table_lookup(s->user_by_id, id);

        if (!u)
                return -ENOENT;
        *ret = u;
        return 0;
}

static int pg_user_lookup(Store *store, const char *name, const UserRecord **ret) {
        PgStore *s = (PgStore *) store;
        const UserRecord *u = g_tree_lookup(s->user_by_name, name);

        if (!u)
                return -ENOENT;
        *ret = u;
        return 0;
}

/* The columns every user statement starts with. */
static PgStatement *user_statement(PgStore *s, const char *name, const UserRecord *u) {
        PgStatement *st = statement_add(s, name);

        param_text(st, u->id);
        param_text(st, u->tag);
        param_text(st, u->name);
        param_text(st, u->display_name);
        param_text(st, u->email);
        param_text(st, u->enabled ? "t" : "f");
        param_variant(st, u->attributes);
        return st;
}

static int pg_user_insert(Store *store, const UserRecord *u) {
        PgStore *s = (PgStore *) store;
        PgStatement *st;

        if (g_hash_table_contains(s->user_by_id, u->id) || g_tree_lookup(s->user_by_name, u->name))
                return -EEXIST;
        undo_add(s, u->id, NULL);
        user_put(s, user_dup(u));
        st = user_statement(s, "user_insert", u);
        param_int64(st, u->created);
        param_int64(st, u->modified);
        return 0;
}

static int pg_user_update(Store *store, const UserRecord *u, UserField fields) {
        PgStore *s = (PgStore *) store;
        const UserRecord *owner = g_tree_lookup(s->user_by_name, u->name);
        PgStatement *st;

        if (owner && !g_str_equal(owner->id, u->id))
                return -EEXIST;
        if (!g_hash_table_contains(s->user_by_id, u->id))
                return 0;       /* as an UPDATE that finds no row */
        undo_add(s, u->id, user_take(s, u->id));
        user_put(s, user_dup(u));
        st = user_statement(s, "user_update", u);
        param_int64(st, u->modified);
        return 0;
}

static int pg_user_delete(Store *store, const char *id) {
        PgStore *s = (PgStore *) store;
        UserRecord *before = user_take(s, id);

        if (!before)
                return -ENOENT;
        undo_add(s, id, before);
        param_text(statement_add(s, "user_delete"), id);
        return 0;
}

typedef struct ListPage {
        unsigned limit;
        GPtrArray *out;
        bool more;
} ListPage;

static gboolean list_one(gpointer key, gpointer value, gpointer userdata) {
        ListPage *p = userdata;

        if (p->out->len >= p->limit) {
                p->more = true;
                return TRUE;
        }
        g_ptr_array_add(p->out, user_dup(value));
        return FALSE;
}

static int pg_user_list(Store *store, const char *after_name, unsigned limit, GPtrArray *out, bool *ret_more) {
        PgStore *s = (PgStore *) store;
        guint start = out->len;
        ListPage page = { .limit = start + limit, .out = out };

        /* Names after AFTER_NAME, in strcmp() order as SQLite's BINARY. */
        for (GTreeNode *n = g_tree_upper_bound(s->user_by_name, after_name); n; n = g_tree_node_next(n))
                if (list_one(g_tree_node_key(n), g_tree_node_value(n), &page))
                        break;
        *ret_more = page.more;
        return 0;
}

/* Events */

static int pg_event_append(Store *store, const char *topic, int64_t time, GVariant *data, const char *request_key,
                           const char *request_result, uint64_t *ret_seq) {
        PgStore *s = (PgStore *) store;
        uint64_t seq = s->base.last_seq + 1;
        PgStatement *st = statement_add(s, "event_insert");

        param_int64(st, (int64_t) seq);
        param_text(st, topic);
        param_int64(st, time);
        param_variant(st, data);
        /* A NULL value is SQL's NULL: an event no request names. */
        param(st, g_strdup(request_key), 0, 0);
        param(st, request_key ? g_strdup(request_result) : NULL, 0, 0);
        if (s->base.first_seq > s->base.last_seq)
                s->oldest_time = time;
        store_note_append(store, seq);
        *ret_seq = seq;
        return 0;
}

static int pg_event_oldest_time(Store *store, int64_t *ret_time) {
        PgStore *s = (PgStore *) store;

        if (s->base.first_seq > s->base.last_seq)
                return 0;
        *ret_time = s->oldest_time;
        return 1;
}

static void pg_event_scan(Store *store, StoreScan *sc) {
        PgStore *s = (PgStore *) store;
        g_autofree char *after = g_strdup_printf("%" PRIu64, sc->after);
        /* Without a filter, the page needs one row more than its limit to
         * know whether more follow. */
        g_autofree char *rows = g_strdup_printf("%u", (sc->match ? sc->max_scan : MIN(sc->limit, sc->max_scan)) + 1);
        const char *const values[] = { after, rows };
        PgOp *op;

        if (s->base.failure < 0) {
                store_scan_complete(store, sc, s->base.failure);
                return;
        }
        op = op_new(s, PG_OP_SCAN);
        op->scan = sc;
        if (!PQsendQueryPrepared(s->conn, "event_scan", 2, values, NULL, NULL, 1) || send_sync(s) < 0) {
                (void) pg_fail(s, "reading events");
                fail_all(s);      /* sending failed: the connection is unusable */
        }
}

static void pg_event_expire(Store *store, uint64_t keep_from, int64_t older_than, unsigned max_rows,
                            StoreDone done, void *userdata) {
        PgStore *s = (PgStore *) store;
        PgStatement expire = { .name = "event_expire" };
        const PgStatement floor = { .name = "event_floor" }, oldest = { .name = "event_oldest" };
        const PgStatement *const pipeline[] = { &floor, &expire, &oldest };
        PgOp *op = op_new(s, PG_OP_EXPIRE);
        int r;

        op->done = done;
        op->userdata = userdata;
        op->sent_last_seq = s->sent_last_seq;
        param_int64(&expire, (int64_t) keep_from);
        param_int64(&expire, older_than);
        param_int64(&expire, max_rows);
        r = send_pipeline(s, pipeline, ELEMENTSOF(pipeline));
        for (int i = 0; i < expire.n; i++)
                g_free(expire.values[i]);
        if (r < 0)
                fail_all(s);      /* sending failed: the connection is unusable */
}

/* Opening: synchronous, before the daemon serves anything; but for the
 * wait for the lock, which runs on the event loop. */

static void notice_to_debug(void *userdata, const char *message) {
        log_debug("PostgreSQL: %s", message);
}

/* RES of SQL, checked: kept in *RET (when not NULL) if its status is WANT
 * (or, for a query that may or may not return rows, either). */
static int result_ok(PgStore *s, const char *sql, PGresult *res, bool any_success, ExecStatusType want,
                     PGresult **ret) {
        ExecStatusType status = PQresultStatus(res);
        bool ok = any_success ? status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK : status == want;

        if (!ok) {
                log_error("%s: %s failed: %s", s->base.path, sql, PQresultErrorMessage(res));
                PQclear(res);
                return -EIO;
        }
        if (ret)
                *ret = res;
        else
                PQclear(res);
        return 0;
}

static int exec_ok(PgStore *s, const char *sql, ExecStatusType want, PGresult **ret) {
        return result_ok(s, sql, PQexec(s->conn, sql), false, want, ret);
}

static int exec_params(PgStore *s, const char *sql, int n, const char *const *values, PGresult **ret) {
        return result_ok(s, sql, PQexecParams(s->conn, sql, n, NULL, values, NULL, NULL, 1), true, 0, ret);
}

static void pqclearp(PGresult **res) {
        PQclear(*res);
}

static int meta_get_or_create(PgStore *s, const char *key, char **ret) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        g_autofree char *value = NULL;
        int r;

        r = exec_params(s, "SELECT value FROM outpost_meta WHERE key = $1", 1, (const char *[]) { key }, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) > 0) {
                *ret = g_strdup(value_text(res, 0, 0));
                return 0;
        }
        value = uuid_string_new();
        r = exec_params(s, "INSERT INTO outpost_meta (key, value) VALUES ($1, $2)", 2,
                        (const char *[]) { key, value }, NULL);
        if (r < 0)
                return r;
        log_info("%s: new %s %s", s->base.path, key, value);
        *ret = g_steal_pointer(&value);
        return 0;
}

/* Made on an empty database; refused when newer than this program. */
static int check_schema(PgStore *s) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        int version, r;

        r = exec_ok(s, "SELECT pg_advisory_xact_lock(" G_STRINGIFY(SCHEMA_LOCK_KEY) ")", PGRES_TUPLES_OK, NULL);
        if (r < 0)
                return r;
        r = exec_ok(s, "CREATE TABLE IF NOT EXISTS outpost_schema (version integer NOT NULL)", PGRES_COMMAND_OK, NULL);
        if (r < 0)
                return r;
        r = exec_ok(s, "SELECT max(version) FROM outpost_schema", PGRES_TUPLES_OK, &res);
        if (r < 0)
                return r;
        if (PQgetisnull(res, 0, 0)) {
                log_info("%s: making the store's tables (schema version %d)", s->base.path, SCHEMA_VERSION);
                r = exec_ok(s, schema_sql, PGRES_COMMAND_OK, NULL);
                if (r < 0)
                        return r;
                r = exec_ok(s, "INSERT INTO outpost_schema (version) VALUES (1)", PGRES_COMMAND_OK, NULL);
                if (r < 0)
                        return r;
                return exec_ok(s, schema_v2_sql, PGRES_COMMAND_OK, NULL);
        }
        version = atoi(PQgetvalue(res, 0, 0));
        if (version > SCHEMA_VERSION) {
                log_error("%s: the store has schema version %d, but this outpostd knows schema version %d at most: "
                          "run the outpostd that wrote it, or restore a backup made by this one.",
                          s->base.path, version, SCHEMA_VERSION);
                return -EPROTO;
        }
        if (version == 1) {
                /* An outpostd of version 1 still active on the database
                 * writes rows without a request id, which is what they are. */
                r = exec_ok(s, schema_v2_sql, PGRES_COMMAND_OK, NULL);
                if (r < 0)
                        return r;
                log_notice("%s: brought the store from schema version 1 to %d (request ids)", s->base.path,
                           SCHEMA_VERSION);
        }
        return 0;
}

/* Run SQL (no parameters) and hand each row of its result to ROW. */
static int exec_each_row(PgStore *s, const char *sql, void (*row)(PgStore *s, const PGresult *res, int i)) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r;

        r = exec_params(s, sql, 0, NULL, &res);
        if (r < 0)
                return r;
        for (int i = 0; i < PQntuples(res); i++)
                row(s, res, i);
        return 0;
}

static void user_row(PgStore *s, const PGresult *res, int i) {
        UserRecord *u = g_new0(UserRecord, 1);

        *u = (UserRecord) {
                .id = g_strdup(value_text(res, i, 0)),
                .tag = g_strdup(value_text(res, i, 1)),
                .name = g_strdup(value_text(res, i, 2)),
                .display_name = g_strdup(value_text(res, i, 3)),
                .email = g_strdup(value_text(res, i, 4)),
                .enabled = PQgetvalue(res, i, 5)[0] != 0,
                .attributes = value_variant(res, i, 6, G_VARIANT_TYPE("a{ss}")),
                .created = value_int64(res, i, 7),
                .modified = value_int64(res, i, 8),
        };
        user_put(s, u);
}

static int load_users(PgStore *s) {
        return exec_each_row(s, "SELECT id, tag, name, display_name, email, enabled, attributes, created, modified "
                             "FROM outpost_users", user_row);
}

static void request_row(PgStore *s, const PGresult *res, int i) {
        store_requests_note(&s->base, value_text(res, i, 0), (uint64_t) value_int64(res, i, 1), value_text(res, i, 2));
}

/* Only the rows that have a request id (the partial index has them). */
static int load_requests(PgStore *s) {
        return exec_each_row(s, "SELECT request_key, seq, request_result FROM outpost_events "
                             "WHERE request_key IS NOT NULL ORDER BY seq", request_row);
}

static int read_event_bounds(PgStore *s) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r;

        r = exec_params(s, "SELECT (SELECT min(seq) FROM outpost_events), "
                        "greatest((SELECT max(seq) FROM outpost_events), "
                        "(SELECT value::bigint FROM outpost_meta WHERE key = 'last-seq'), 0), "
                        "(SELECT time FROM outpost_events ORDER BY seq LIMIT 1)", 0, NULL, &res);
        if (r < 0)
                return r;
        s->base.last_seq = (uint64_t) value_int64(res, 0, 1);
        s->base.first_seq = PQgetisnull(res, 0, 0) ? s->base.last_seq + 1 : (uint64_t) value_int64(res, 0, 0);
        s->oldest_time = PQgetisnull(res, 0, 2) ? 0 : value_int64(res, 0, 2);
        s->sent_last_seq = s->base.last_seq;
        return 0;
}

/* Opens a transaction in which the schema is known to be this
 * version's (made or upgraded if need be). */
static int begin_with_schema(PgStore *s) {
        int r;

        r = exec_ok(s, "BEGIN", PGRES_COMMAND_OK, NULL);
        if (r < 0)
                return r;
        return check_schema(s);
}

static int open_session(PgStore *s) {
        int r;

        r = begin_with_schema(s);
        if (r < 0)
                return r;
        r = meta_get_or_create(s, "server-id", &s->base.server_id);
        if (r < 0)
                return r;
        r = meta_get_or_create(s, "history-id", &s->base.history_id);
        if (r < 0)
                return r;
        r = load_users(s);
        if (r < 0)
                return r;
        r = read_event_bounds(s);
        if (r < 0)
                return r;
        r = load_requests(s);
        if (r < 0)
                return r;
        r = exec_ok(s, "COMMIT", PGRES_COMMAND_OK, NULL);
        if (r < 0)
                return r;

        for (size_t i = 0; i < ELEMENTSOF(prepared); i++) {
                _cleanup_(pqclearp) PGresult *res = PQprepare(s->conn, prepared[i].name, prepared[i].sql, 0, NULL);

                if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                        log_error("%s: preparing %s failed: %s", s->base.path, prepared[i].name,
                                  PQresultErrorMessage(res));
                        return -EIO;
                }
        }
        return 0;
}

static int connect_server(PgStore *s, const char *connection) {
        /* Defaults that CONNECTION overrides (it is expanded last): the
         * active outpostd must learn within seconds that its session is
         * dead, since the server then gives its lock to a standby; and the
         * server's pg_stat_activity names outpostd's sessions. */
        static const char *const keywords[] = {
                "application_name", "keepalives_idle", "keepalives_interval", "keepalives_count",
                "tcp_user_timeout", "dbname", NULL
        };
        const char *const values[] = { "outpostd", "10", "5", "3", "30000", connection, NULL };
        const char *host, *port;

        s->conn = PQconnectdbParams(keywords, values, 1);
        if (!s->conn)
                return -ENOMEM;
        host = PQhost(s->conn);
        port = PQport(s->conn);
        s->base.path = g_strdup_printf("PostgreSQL database %s on %s%s%s", PQdb(s->conn) ?: "?",
                                       host && host[0] ? host : "the default server",
                                       port && port[0] ? ":" : "", port ?: "");
        if (PQstatus(s->conn) != CONNECTION_OK) {
                g_autofree char *why = g_strchomp(g_strdup(PQerrorMessage(s->conn)));

                log_error("Cannot reach the store, %s ([Store] Connection=): %s", s->base.path, why);
                return -EHOSTUNREACH;
        }
        PQsetNoticeProcessor(s->conn, notice_to_debug, NULL);
        return 0;
}

/* Checked (or made) before waiting for the lock, so that a standby that
 * could never serve this database says so at start, not at a failover. */
static int check_schema_now(PgStore *s) {
        int r;

        r = begin_with_schema(s);
        if (r < 0)
                return r;
        return exec_ok(s, "COMMIT", PGRES_COMMAND_OK, NULL);
}

/* 1 when this session took the active lock, 0 when another holds it. */
static int try_active_lock(PgStore *s) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r;

        r = exec_ok(s, "SELECT pg_try_advisory_lock(" ACTIVE_LOCK_KEY ")", PGRES_TUPLES_OK, &res);
        if (r < 0)
                return r;
        return PQgetvalue(res, 0, 0)[0] == 't';
}

/* The session that holds the active lock, as the server shows it, for
 * the operator: "server pid 1234, from 10.0.0.5, since ...". NULL when it
 * cannot be seen (the lock was just let go, or the role may not see the
 * other session's address). */
static char *lock_holder(PgStore *s) {
        _cleanup_(pqclearp) PGresult *res = PQexec(
                s->conn,
                "SELECT a.pid, coalesce(host(a.client_addr), 'a local socket'), "
                "date_trunc('second', a.backend_start)::text FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND (l.classid::bigint << 32 | l.objid::bigint) = " ACTIVE_LOCK_KEY);

        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) == 0 || PQgetisnull(res, 0, 1))
                return NULL;
        return g_strdup_printf("server pid %s, from %s, since %s", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
                               PQgetvalue(res, 0, 2));
}

static void log_standby(PgStore *s) {
        g_autofree char *holder = lock_holder(s);

        log_notice("Standby: another outpostd holds the lock of %s and is the active one%s%s%s; this one serves "
                   "nothing and takes over when that one's session ends",
                   s->base.path, holder ? " (its session: " : "", holder ?: "", holder ? ")" : "");
        (void) sd_notifyf(false, "STATUS=Standby: another outpostd is active on %s", s->base.path);
}

/* Holding the lock: read the store, then talk to the server
 * asynchronously. */
static int become_active(PgStore *s) {
        int r;

        /* The timeouts the lock wait lifted are the role's again. */
        r = exec_ok(s, "RESET statement_timeout; RESET lock_timeout", PGRES_COMMAND_OK, NULL);
        if (r < 0)
                return r;
        r = open_session(s);
        if (r < 0)
                return r;
        if (PQsetnonblocking(s->conn, 1) < 0 || !PQenterPipelineMode(s->conn))
                return pg_fail(s, "entering pipeline mode");
        r = sd_event_add_io(s->event, &s->io, PQsocket(s->conn), EPOLLIN, on_io, s);
        if (r < 0)
                return log_error_errno(r, "Cannot watch the connection to %s", s->base.path);
        /* Below the bus: a commit completes once the bus has nothing ready,
         * so the messages held back for it are handled next (batch.c). */
        r = sd_event_source_set_priority(s->io, SD_EVENT_PRIORITY_NORMAL + 1);
        if (r < 0)
                return r;

        log_info("Store %s open: server id %s, history %s, events %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT
                 ", %u users",
                 s->base.path, s->base.server_id, s->base.history_id, s->base.first_seq, s->base.last_seq,
                 g_hash_table_size(s->user_by_id));
        return 0;
}

/* The wait for the lock is over (R < 0: it failed): the daemon learns it. */
static void lock_wait_end(PgStore *s, int r) {
        s->io = sd_event_source_disable_unref(s->io);
        s->lock_retry = sd_event_source_disable_unref(s->lock_retry);
        if (r >= 0)
                r = become_active(s);
        s->ready(&s->base, r, s->ready_userdata);
}

/* Answered by the server only once the lock is free, that is once the
 * active outpostd's session ended; no timeout of the role's may cut the
 * wait short (become_active() restores them). One implicit transaction:
 * if the wait is cancelled, nothing of it stays. */
static const char lock_wait_sql[] =
        "SET statement_timeout = 0; SET lock_timeout = 0; SELECT pg_advisory_lock(" ACTIVE_LOCK_KEY ")";

static int on_lock_retry(sd_event_source *source, uint64_t usec, void *userdata);

static int standby_lost(PgStore *s) {
        /* libpq's message runs over several lines: one log line. */
        g_autofree char *why = g_strdelimit(g_strchomp(g_strdup(PQerrorMessage(s->conn))), "\n\t", ' ');

        log_error("%s: the database session was lost while this outpostd was a standby (%s); exiting, for the "
                  "service manager to start it again", s->base.path, why);
        lock_wait_end(s, -ECONNRESET);
        return 0;
}

/* Every result of the wait, as they come: the SELECT's says the lock is
 * held; an error (the wait was cancelled) asks again in a while. */
static int on_lock_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        PgStore *s = userdata;
        bool session_ending = false;
        PGresult *res;
        int r;

        if (!PQconsumeInput(s->conn) || PQstatus(s->conn) != CONNECTION_OK)
                return standby_lost(s);
        while (!PQisBusy(s->conn) && (res = PQgetResult(s->conn))) {
                ExecStatusType status = PQresultStatus(res);

                if (status == PGRES_TUPLES_OK)
                        s->active = true;
                else if (g_strcmp0(PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED), "FATAL") == 0)
                        session_ending = true;  /* the server ends the session: said below */
                else if (status != PGRES_COMMAND_OK)
                        log_warning("%s: waiting for the lock failed, asking again in a second: %s", s->base.path,
                                    PQresultErrorMessage(res));
                PQclear(res);
        }
        if (PQisBusy(s->conn))
                return 0;       /* still waiting */
        if (s->active) {
                log_notice("%s: took the lock: this outpostd is now the active one", s->base.path);
                lock_wait_end(s, 0);
                return 0;
        }
        if (session_ending || PQstatus(s->conn) != CONNECTION_OK)
                return standby_lost(s);
        (void) sd_event_source_set_enabled(s->io, SD_EVENT_OFF);
        r = sd_event_add_time_relative(s->event, &s->lock_retry, CLOCK_MONOTONIC, LOCK_RETRY_USEC, 0,
                                       on_lock_retry, s);
        if (r < 0)
                lock_wait_end(s, r);
        return 0;
}

static int on_lock_retry(sd_event_source *source, uint64_t usec, void *userdata) {
        PgStore *s = userdata;

        s->lock_retry = sd_event_source_disable_unref(s->lock_retry);
        if (!PQsendQuery(s->conn, lock_wait_sql))
                return standby_lost(s);
        (void) sd_event_source_set_enabled(s->io, SD_EVENT_ON);
        return 0;
}

static int start_lock_wait(PgStore *s) {
        if (!PQsendQuery(s->conn, lock_wait_sql))
                return pg_fail(s, "waiting for the lock");
        return sd_event_add_io(s->event, &s->io, PQsocket(s->conn), EPOLLIN, on_lock_io, s);
}

static void pg_wait_active(Store *store, StoreReady done, void *userdata) {
        PgStore *s = (PgStore *) store;
        int r;

        s->ready = done;
        s->ready_userdata = userdata;
        if (s->active) {
                lock_wait_end(s, 0);
                return;
        }
        r = start_lock_wait(s);
        if (r < 0)
                lock_wait_end(s, r);
}

static const StoreOps pg_ops;

int store_postgresql_open(const char *connection, sd_event *event, Store **ret) {
        _cleanup_(pg_store_closep) PgStore *s = g_new0(PgStore, 1);
        int r;

        s->base.ops = &pg_ops;
        s->event = event;
        g_queue_init(&s->ops);
        s->statements = g_ptr_array_new_with_free_func((GDestroyNotify) pg_statement_free);
        s->undo = g_array_new(FALSE, TRUE, sizeof(UserUndo));
        g_array_set_clear_func(s->undo, (GDestroyNotify) undo_clear);
        s->user_by_id = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) user_record_free);
        s->user_by_name = g_tree_new((GCompareFunc) strcmp);

        r = connect_server(s, connection);
        if (r < 0)
                return r;
        r = check_schema_now(s);
        if (r < 0)
                return r;
        r = try_active_lock(s);
        if (r < 0)
                return r;
        s->active = r > 0;
        if (!s->active)
                log_standby(s);
        *ret = &TAKE_PTR(s)->base;
        return 0;
}

static void pg_close(Store *store) {
        PgStore *s = (PgStore *) store;
        PgOp *op;

        /* Nobody waits any more (store_drain() ran): dropped. */
        while ((op = g_queue_pop_head(&s->ops))) {
                if (op->scan) {
                        g_ptr_array_unref(op->scan->events);
                        g_free(op->scan);
                }
                g_free(op);
        }
        sd_event_source_disable_unref(s->io);
        sd_event_source_disable_unref(s->lock_retry);
        if (s->conn)
                PQfinish(s->conn);
        g_clear_pointer(&s->statements, g_ptr_array_unref);
        g_clear_pointer(&s->undo, g_array_unref);
        g_clear_pointer(&s->user_by_name, g_tree_unref);
        g_clear_pointer(&s->user_by_id, g_hash_table_unref);
        store_requests_clear(&s->base);
        g_free(s->base.path);
        g_free(s->base.server_id);
        g_free(s->base.history_id);
        g_free(s);
}

static const StoreOps pg_ops = {
        .close = pg_close,
        .begin = pg_begin,
        .commit = pg_commit,
        .rollback = pg_rollback,
        .savepoint = pg_savepoint,
        .release_savepoint = pg_release_savepoint,
        .rollback_savepoint = pg_rollback_savepoint,
        .drain = pg_drain,
        .wait_active = pg_wait_active,
        .user_get = pg_user_get,
        .user_lookup = pg_user_lookup,
        .user_insert = pg_user_insert,
        .user_update = pg_user_update,
        .user_delete = pg_user_delete,
        .user_list = pg_user_list,
        .event_append = pg_event_append,
        .event_oldest_time = pg_event_oldest_time,
        .event_scan = pg_event_scan,
        .event_expire = pg_event_expire,
};
