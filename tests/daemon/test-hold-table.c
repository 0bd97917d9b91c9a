/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The hold table every layer keeps presence holds in (src/shared/hold-table.c):
 * counts per user and per holder, renewals, the per-holder limit, lapses in
 * order of expiry, and releases told once per batch. */
#include "config.h"

#include <errno.h>
#include <glib.h>

#include "hold-table.h"

typedef struct Fixture {
        sd_event *event;
        HoldTable *table;
        GPtrArray *released;    /* every user told released, in order */
        unsigned batches;
} Fixture;

static void on_released(HoldTable *t, char **users, void *userdata) {
        Fixture *f = userdata;

        f->batches++;
        for (char **u = users; *u; u++)
                g_ptr_array_add(f->released, g_strdup(*u));
}

static void fixture_setup(Fixture *f, gconstpointer data) {
        g_assert_cmpint(sd_event_new(&f->event), >=, 0);
        g_assert_cmpint(hold_table_new(f->event, on_released, f, &f->table), ==, 0);
        f->released = g_ptr_array_new_with_free_func(g_free);
}

static void fixture_teardown(Fixture *f, gconstpointer data) {
        hold_table_free(f->table);
        g_ptr_array_unref(f->released);
        sd_event_unref(f->event);
}

/* Run the loop until N users in all were told released, or a second. */
static void run_until_released(Fixture *f, unsigned n) {
        gint64 end = g_get_monotonic_time() + G_USEC_PER_SEC;

        while (f->released->len < n && g_get_monotonic_time() < end)
                g_assert_cmpint(sd_event_run(f->event, 10 * 1000), >=, 0);
}

static void test_counts(Fixture *f, gconstpointer data) {
        HoldTable *t = f->table;
        uint64_t id1 = 0, id2 = 0;

        g_assert_cmpint(hold_table_add(t, ":1.1", "alice", 0, 0, &id1), ==, 1);
        g_assert_cmpint(hold_table_add(t, ":1.2", "alice", 0, 0, &id2), ==, 0);
        g_assert_cmpuint(id1, !=, 0);
        g_assert_cmpuint(id2, !=, id1);
        g_assert_cmpuint(hold_table_count(t, "alice"), ==, 2);
        g_assert_cmpuint(hold_table_n_users(t), ==, 1);

        /* A renewal is no new hold. */
        g_assert_cmpint(hold_table_add(t, ":1.1", "alice", 0, 0, &id1), ==, 0);
        g_assert_cmpuint(id1, ==, 0);
        g_assert_cmpuint(hold_table_count(t, "alice"), ==, 2);
        g_assert_cmpuint(hold_table_holder_size(t, ":1.1"), ==, 1);

        g_assert_cmpint(hold_table_remove(t, ":1.3", "alice", 0), ==, -ENOENT);
        g_assert_cmpint(hold_table_remove(t, ":1.1", "alice", 0), ==, 0);
        g_assert_false(hold_table_holds(t, ":1.1", "alice"));
        g_assert_true(hold_table_holds(t, ":1.2", "alice"));
        g_assert_cmpint(hold_table_remove(t, ":1.2", "alice", 0), ==, 1);
        g_assert_cmpuint(hold_table_count(t, "alice"), ==, 0);
        g_assert_cmpuint(hold_table_n_users(t), ==, 0);
        /* Removals the keeper asked for are not told back. */
        g_assert_cmpuint(f->released->len, ==, 0);
}

/* A hold named by its id is ended only while it is that hold: undoing a
 * failed GoOnline must not end a hold made again since. */
static void test_remove_by_id(Fixture *f, gconstpointer data) {
        HoldTable *t = f->table;
        uint64_t first = 0, second = 0;

        g_assert_cmpint(hold_table_add(t, "peer", "bob", 0, 0, &first), ==, 1);
        g_assert_cmpint(hold_table_remove(t, "peer", "bob", 0), ==, 1);
        g_assert_cmpint(hold_table_add(t, "peer", "bob", 0, 0, &second), ==, 1);
        g_assert_cmpint(hold_table_remove(t, "peer", "bob", first), ==, -ENOENT);
        g_assert_true(hold_table_holds(t, "peer", "bob"));
        g_assert_cmpint(hold_table_remove(t, "peer", "bob", second), ==, 1);
}

static void test_limit_per_holder(Fixture *f, gconstpointer data) {
        HoldTable *t = f->table;

        for (unsigned i = 0; i < 3; i++) {
                g_autofree char *user = g_strdup_printf("u%u", i);
                g_assert_cmpint(hold_table_add(t, "greedy", user, 0, 3, NULL), ==, 1);
        }
        g_assert_cmpint(hold_table_add(t, "greedy", "u3", 0, 3, NULL), ==, -EDQUOT);
        /* Renewing what it has is still allowed, and others are not
         * limited by its count. */
        g_assert_cmpint(hold_table_add(t, "greedy", "u0", 0, 3, NULL), ==, 0);
        g_assert_cmpint(hold_table_add(t, "modest", "u3", 0, 3, NULL), ==, 1);
        g_assert_cmpuint(hold_table_holder_size(t, "greedy"), ==, 3);
        g_assert_cmpuint(hold_table_count(t, "u3"), ==, 1);
}

static void test_holder_leaves(Fixture *f, gconstpointer data) {
        HoldTable *t = f->table;

        g_assert_cmpint(hold_table_add(t, "a", "x", 0, 0, NULL), ==, 1);
        g_assert_cmpint(hold_table_add(t, "a", "y", 0, 0, NULL), ==, 1);
        g_assert_cmpint(hold_table_add(t, "a", "z", 5ULL * G_USEC_PER_SEC, 0, NULL), ==, 1);
        g_assert_cmpint(hold_table_add(t, "b", "y", 0, 0, NULL), ==, 0);
        hold_table_remove_holder(t, "a");
        /* x and z together, in one batch; y is still held by b. */
        g_assert_cmpuint(f->batches, ==, 1);
        g_assert_cmpuint(f->released->len, ==, 2);
        g_assert_true(g_ptr_array_find_with_equal_func(f->released, "x", g_str_equal, NULL));
        g_assert_true(g_ptr_array_find_with_equal_func(f->released, "z", g_str_equal, NULL));
        g_assert_cmpuint(hold_table_count(t, "y"), ==, 1);
        g_assert_cmpuint(hold_table_holder_size(t, "a"), ==, 0);
        /* Nothing of a's is left to lapse later. */
        run_until_released(f, 3);
        g_assert_cmpuint(f->released->len, ==, 2);
}

/* Holds lapse soonest first; a renewal moves a hold's lapse; a hold
 * without ttl never lapses; the other holds are not touched. */
static void test_lapses(Fixture *f, gconstpointer data) {
        HoldTable *t = f->table;

        for (unsigned i = 0; i < 1000; i++) {
                g_autofree char *user = g_strdup_printf("far%u", i);
                g_assert_cmpint(hold_table_add(t, "h", user, 3600ULL * G_USEC_PER_SEC, 0, NULL), ==, 1);
        }
        g_assert_cmpint(hold_table_add(t, "h", "second", 60 * 1000, 0, NULL), ==, 1);
        g_assert_cmpint(hold_table_add(t, "h", "first", 20 * 1000, 0, NULL), ==, 1);
        g_assert_cmpint(hold_table_add(t, "h", "renewed", 10 * 1000, 0, NULL), ==, 1);
        g_assert_cmpint(hold_table_add(t, "h", "renewed", 0, 0, NULL), ==, 0);
        g_assert_cmpint(hold_table_add(t, "other", "first", 0, 0, NULL), ==, 0);
        g_assert_cmpint(hold_table_add(t, "other", "shared", 30 * 1000, 0, NULL), ==, 1);
        g_assert_cmpint(hold_table_add(t, "h", "shared", 0, 0, NULL), ==, 0);

        run_until_released(f, 1);
        g_assert_cmpuint(f->released->len, ==, 1);
        g_assert_cmpstr(f->released->pdata[0], ==, "second");
        /* first lapsed for h, but "other" still holds it; shared likewise. */
        g_assert_cmpuint(hold_table_count(t, "first"), ==, 1);
        g_assert_cmpuint(hold_table_count(t, "shared"), ==, 1);
        g_assert_cmpuint(hold_table_count(t, "renewed"), ==, 1);
        g_assert_cmpuint(hold_table_n_users(t), ==, 1000 + 3);
}

static void test_remove_user_and_clear(Fixture *f, gconstpointer data) {
        HoldTable *t = f->table;

        g_assert_cmpint(hold_table_add(t, "a", "gone", 10 * 1000, 0, NULL), ==, 1);
        g_assert_cmpint(hold_table_add(t, "b", "gone", 0, 0, NULL), ==, 0);
        g_assert_cmpint(hold_table_add(t, "b", "kept", 10 * 1000, 0, NULL), ==, 1);
        g_assert_true(hold_table_remove_user(t, "gone"));
        g_assert_false(hold_table_remove_user(t, "gone"));
        g_assert_cmpuint(hold_table_holder_size(t, "a"), ==, 0);
        g_assert_cmpuint(hold_table_holder_size(t, "b"), ==, 1);

        hold_table_clear(t);
        g_assert_cmpuint(hold_table_n_users(t), ==, 0);
        g_assert_cmpuint(hold_table_holder_size(t, "b"), ==, 0);
        /* Cleared holds do not lapse later. */
        run_until_released(f, 1);
        g_assert_cmpuint(f->released->len, ==, 0);
        /* And the table is as good as new. */
        g_assert_cmpint(hold_table_add(t, "b", "kept", 0, 0, NULL), ==, 1);
}

static void add_test(const char *path, void (*fn)(Fixture *, gconstpointer)) {
        g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown);
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        add_test("/hold-table/counts", test_counts);
        add_test("/hold-table/remove-by-id", test_remove_by_id);
        add_test("/hold-table/limit-per-holder", test_limit_per_holder);
        add_test("/hold-table/holder-leaves", test_holder_leaves);
        add_test("/hold-table/lapses", test_lapses);
        add_test("/hold-table/remove-user-and-clear", test_remove_user_and_clear);
        return g_test_run();
}
