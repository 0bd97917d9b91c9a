/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-scale: does outpostd's cost grow no faster than its work?
 *
 * One run makes three stores with outpostd's own schema (outpostd creates
 * it, then the benchmark fills the tables in one SQLite transaction, which
 * takes seconds where 1.1 million bus calls would take many minutes): an
 * empty one, one with 1000 users, and one with 100000 users and 1000000
 * events. It times startup, GetUser and ListUsers on the big store against
 * the small ones in the same run, reads the daemon's resident size with the
 * big store and with 1000 clients, and the resident size of an importing
 * outpost-bridge with 1000 local subscribers. One line per figure, as
 * bench-daemon prints them. A MISS is a finding, not a failure: the exit
 * status is non-zero only when the benchmark could not run. See
 * tests/bench/README.md. */
#include "config.h"

#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define OUTPOST_NAME    "org.outpost.Outpost1"
#define BRIDGE_PATH     ROOT_PATH "/bridge"
#define BRIDGE_IFACE    "org.outpost.Outpost1.Bridge"

#define MANY_USERS              100000
#define MANY_EVENTS             1000000
#define FEW_USERS               1000
#define STARTUP_SAMPLES         5
#define GET_USER_SAMPLES        2000    /* per store */
#define LIST_SAMPLES            300     /* per cursor position */
#define LIST_LIMIT              100
#define ROUNDS                  10      /* figures and their baselines alternate in rounds */
#define READ_FETCH_PAGES        10      /* FetchSince pages of 10000 read before the resident size */
#define CLIENTS                 1000
/* The default [Presence] MaxPeers: on a system bus each holder costs
 * outpostd one match rule, and dbus-daemon allows 512 per connection. */
#define HOLDERS                 500
/* Users held online while a presence change is timed, by that many
 * connections. */
#define ONLINE_HOLDERS          50
#define ONLINE_PER_HOLDER       100
#define PRESENCE_SAMPLES        100     /* GoOnline + GoOffline pairs, per figure */
#define BRIDGE_SUBSCRIBERS      1000
#define BRIDGE_EVENTS           20
/* 1000000 events 0.5 s apart span 5.8 days: inside the default
 * RetentionSeconds (7 days), so retention keeps them all. */
#define EVENT_SPACING_USEC      500000
#define WAIT_USEC               (30ULL * 1000000ULL)

#define STARTUP_TARGET_MSEC     1000.0
#define RSS_TARGET_KIB          (64.0 * 1024)
#define CLIENT_TARGET_KIB       20.0

#define _cleanup_(f) __attribute__((cleanup(f)))

/* A fixed sequence, so every run makes the same ids and picks the same
 * users. */
static uint64_t next_random(uint64_t *state) {
        uint64_t x = *state;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return *state = x;
}

typedef char UserId[37];

/* Lower-case, as outpostd checks ids. */
static void random_uuid(uint64_t *state, char out[37]) {
        uint64_t hi = next_random(state), lo = next_random(state);

        snprintf(out, 37, "%08" PRIx64 "-%04" PRIx64 "-4%03" PRIx64 "-8%03" PRIx64 "-%012" PRIx64,
                 hi >> 32, (hi >> 16) & 0xffff, hi & 0xfff, lo >> 52 & 0xfff, lo & UINT64_C(0xffffffffffff));
}

/* Samples in nanoseconds. */

typedef BenchSamples Samples;

/* Processes */

/* VmRSS of PID, in KiB. */
static int resident_kib(pid_t pid, double *ret) {
        g_autofree char *path = g_strdup_printf("/proc/%d/status", (int) pid);
        g_autofree char *text = NULL;
        const char *line;

        if (!g_file_get_contents(path, &text, NULL, NULL))
                return bench_log_errno(-ESRCH, "Cannot read %s", path);
        line = strstr(text, "\nVmRSS:");
        if (!line)
                return bench_log_errno(-EIO, "No VmRSS in %s", path);
        *ret = g_ascii_strtod(line + strlen("\nVmRSS:"), NULL);
        return 0;
}

/* Buses */

typedef struct Bus {
        const char *name;
        char *address;
        pid_t pid;
        sd_bus *control;                /* the benchmark's own connection */
        sd_bus_slot *owner_match;
        bool owned;                     /* OUTPOST_NAME has an owner */
        uint64_t owned_nsec;            /* when the last owner came */
} Bus;

typedef struct Scale {
        char *dir;
        Bus small, big, site;
        pid_t daemon_pids[2];           /* on the small bus, on the big one */
        pid_t listener_pid, importer_pid;
        sd_event *event;
        UserId *many_ids;
        UserId *few_ids;
        uint64_t rng;

        /* Connections of the client and subscriber figures, and what they
         * are waiting for. */
        sd_bus **clients;
        unsigned n_clients;
        uint64_t replies, signals;
        int error;
} Scale;

static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Bus *bus = userdata;
        const char *name, *old_owner, *new_owner;

        /* The match takes every name: a connection's unique name comes
         * and goes with it, outpostd's too, before it asks for its own. */
        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 || strcmp(name, OUTPOST_NAME) != 0)
                return 0;
        bus->owned = new_owner[0] != 0;
        if (bus->owned)
                bus->owned_nsec = bench_now_nsec();
        return 0;
}

/* Whoever runs the benchmark may open the 1000 connections of the client
 * figures: the system bus allows 256 per user, and 1000 real clients would
 * come from many users. */
#define BUS_LIMITS "  <limit name=\"max_connections_per_user\">4096</limit>\n" \
                   "  <limit name=\"max_completed_connections\">4096</limit>\n"

static int bus_start(Scale *s, Bus *bus, const char *name) {
        int r;

        bus->name = name;
        r = bench_start_bus(s->dir, name, BUS_LIMITS, &bus->pid, &bus->address);
        if (r < 0)
                return r;
        r = bench_connect(bus->address, false, &bus->control);
        if (r >= 0)
                r = sd_bus_match_signal(bus->control, &bus->owner_match, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                        "org.freedesktop.DBus", "NameOwnerChanged", on_owner_changed, bus);
        if (r < 0)
                return bench_log_errno(r, "Cannot watch the owner of %s", OUTPOST_NAME);
        return 0;
}

static void bus_stop(Bus *bus) {
        bus->owner_match = sd_bus_slot_unref(bus->owner_match);
        bus->control = sd_bus_flush_close_unref(bus->control);
        (void) bench_stop(&bus->pid, "dbus-daemon");
        free(bus->address);
        bus->address = NULL;
}

/* Until CONDITION holds for the connection, PID (when given) still runs,
 * and at most WAIT_USEC. */
static int bus_wait_for(Bus *bus, pid_t pid, bool (*condition)(Bus *bus), const char *what) {
        uint64_t deadline = bench_now_usec() + WAIT_USEC;

        for (;;) {
                int status, r;

                while ((r = sd_bus_process(bus->control, NULL)) > 0)
                        ;
                if (r < 0)
                        return bench_log_errno(r, "The %s bus failed", bus->name);
                if (condition(bus))
                        return 0;
                if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid)
                        return bench_log_errno(-ECHILD, "%s: the program exited first (wait status 0x%x)", what, status);
                if (bench_interrupted)
                        return bench_log_errno(-EINTR, "Interrupted");
                if (bench_now_usec() > deadline)
                        return bench_log_errno(-ETIMEDOUT, "%s: not within %llu s", what, WAIT_USEC / 1000000);
                r = sd_bus_wait(bus->control, 10000);
                if (r < 0)
                        return bench_log_errno(r, "Waiting on the %s bus", bus->name);
        }
}

static bool name_owned(Bus *bus) {
        return bus->owned;
}

static bool name_free(Bus *bus) {
        return !bus->owned;
}

/* outpostd */

/* Starts outpostd on BUS with the store in DIR/STATE and returns how long
 * it took from fork() to owning its name, in ns: it requests the name
 * last, once everything is usable (DESIGN.md §3, Registry). */
static int daemon_start(Scale *s, Bus *bus, const char *state, pid_t *ret_pid, uint64_t *ret_nsec) {
        g_autofree char *address = g_strconcat("--address=", bus->address, NULL);
        g_autofree char *state_arg = g_strdup_printf("--state-dir=%s/%s", s->dir, state);
        g_autofree char *config = g_strdup_printf("--config=%s/outpostd.conf", s->dir);
        char *argv[] = { (char *) (g_getenv("OUTPOSTD") ?: "./outpostd"), address, state_arg, config, NULL };
        uint64_t start;
        int log_fd, r;

        /* Drop what said the previous owner left. */
        r = bus_wait_for(bus, 0, name_free, "The previous outpostd leaving");
        if (r < 0)
                return r;
        r = bench_open_log(s->dir, "outpostd", &log_fd);
        if (r < 0)
                return r;
        start = bench_now_nsec();
        r = bench_spawn(argv, -1, log_fd, ret_pid);
        close(log_fd);
        if (r < 0)
                return bench_log_errno(r, "Cannot start %s", argv[0]);
        r = bus_wait_for(bus, *ret_pid, name_owned, "outpostd owning " OUTPOST_NAME);
        if (r < 0) {
                bench_show_log(s->dir, "outpostd");
                return r;
        }
        *ret_nsec = bus->owned_nsec - start;
        return 0;
}

static int daemon_stop(Scale *s, pid_t *pid) {
        if (bench_stop(pid, "outpostd") != 0) {
                bench_show_log(s->dir, "outpostd");
                return bench_log_errno(-EIO, "outpostd did not exit cleanly on SIGTERM");
        }
        return 0;
}

/* The stores */

/* Serialized normal-form GVariants, as outpostd stores them. */
static GBytes *serialize(GVariant *v) {
        g_autoptr(GVariant) owned = g_variant_ref_sink(v);
        return g_variant_get_data_as_bytes(owned);
}

static GBytes *user_attributes(unsigned i) {
        g_autofree char *desk = g_strdup_printf("D-%u", i % 400);
        GVariantBuilder b;

        g_variant_builder_init(&b, G_VARIANT_TYPE("a{ss}"));
        g_variant_builder_add(&b, "{ss}", "desk", desk);
        g_variant_builder_add(&b, "{ss}", "team", i % 2 ? "operations" : "support");
        return serialize(g_variant_builder_end(&b));
}

/* Presence events, the most frequent kind, for users taken in turn. */
static GBytes *presence_event(const char *id, bool online, guint64 generation) {
        GVariantBuilder b;

        g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
        g_variant_builder_add(&b, "{sv}", "user", g_variant_new_string(id));
        g_variant_builder_add(&b, "{sv}", "online", g_variant_new_boolean(online));
        g_variant_builder_add(&b, "{sv}", "generation", g_variant_new_uint64(generation));
        return serialize(g_variant_builder_end(&b));
}

static void bind_bytes(sqlite3_stmt *st, int index, GBytes *bytes) {
        gsize size;
        const void *data = g_bytes_get_data(bytes, &size);

        sqlite3_bind_blob(st, index, size ? data : "", (int) size, SQLITE_STATIC);
}

static int insert_users(sqlite3 *db, UserId *ids, unsigned n, uint64_t *rng) {
        sqlite3_stmt *st = NULL;
        int64_t now = g_get_real_time();
        int r = SQLITE_DONE;

        if (sqlite3_prepare_v2(db, "INSERT INTO users (id, tag, name, display_name, email, enabled, attributes, "
                               "created, modified) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?7)", -1, &st, NULL) != SQLITE_OK)
                return bench_log_errno(-EIO, "Cannot prepare the user insert: %s", sqlite3_errmsg(db));
        for (unsigned i = 0; i < n && r == SQLITE_DONE; i++) {
                g_autoptr(GBytes) attributes = user_attributes(i);
                char tag[37], name[32], display[64], email[64];

                random_uuid(rng, ids[i]);
                random_uuid(rng, tag);
                /* Zero-padded: name order is index order. */
                snprintf(name, sizeof name, "user%06u", i);
                snprintf(display, sizeof display, "Scale Test User %u", i);
                snprintf(email, sizeof email, "user%06u@example.org", i);
                sqlite3_bind_text(st, 1, ids[i], -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, tag, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 4, display, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 5, email, -1, SQLITE_STATIC);
                bind_bytes(st, 6, attributes);
                sqlite3_bind_int64(st, 7, now - (int64_t) (n - i) * 1000);
                r = sqlite3_step(st);
                sqlite3_reset(st);
        }
        sqlite3_finalize(st);
        return r == SQLITE_DONE ? 0 : bench_log_errno(-EIO, "Cannot insert users: %s", sqlite3_errmsg(db));
}

static int insert_events(sqlite3 *db, UserId *ids, unsigned n_ids, unsigned n) {
        enum { KINDS = 1024 };
        g_autoptr(GPtrArray) data = g_ptr_array_new_with_free_func((GDestroyNotify) g_bytes_unref);
        int64_t now = g_get_real_time();
        sqlite3_stmt *st = NULL;
        int r = SQLITE_DONE;

        for (unsigned k = 0; k < KINDS; k++)
                g_ptr_array_add(data, presence_event(ids[k % n_ids], k % 2 == 0, k + 1));
        if (sqlite3_prepare_v2(db, "INSERT INTO events (topic, time, data) VALUES ('presence', ?1, ?2)",
                               -1, &st, NULL) != SQLITE_OK)
                return bench_log_errno(-EIO, "Cannot prepare the event insert: %s", sqlite3_errmsg(db));
        for (unsigned i = 0; i < n && r == SQLITE_DONE; i++) {
                sqlite3_bind_int64(st, 1, now - (int64_t) (n - i) * EVENT_SPACING_USEC);
                bind_bytes(st, 2, data->pdata[i % KINDS]);
                r = sqlite3_step(st);
                sqlite3_reset(st);
        }
        sqlite3_finalize(st);
        return r == SQLITE_DONE ? 0 : bench_log_errno(-EIO, "Cannot insert events: %s", sqlite3_errmsg(db));
}

/* Fills the store outpostd made in DIR/STATE (and has closed), in one
 * transaction without a journal: a crash here only spoils the benchmark.
 * Back in WAL mode at the end, as outpostd leaves it. */
static int populate(Scale *s, const char *state, UserId *ids, unsigned n_users, unsigned n_events) {
        g_autofree char *path = g_strdup_printf("%s/%s/outpost.db", s->dir, state);
        sqlite3 *db = NULL;
        int r = 0;

        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
                r = bench_log_errno(-EIO, "Cannot open %s: %s", path, sqlite3_errmsg(db));
        else if (sqlite3_exec(db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536; BEGIN",
                              NULL, NULL, NULL) != SQLITE_OK)
                r = bench_log_errno(-EIO, "Cannot set up %s: %s", path, sqlite3_errmsg(db));
        if (r >= 0)
                r = insert_users(db, ids, n_users, &s->rng);
        if (r >= 0 && n_events > 0)
                r = insert_events(db, ids, n_users, n_events);
        if (r >= 0 && sqlite3_exec(db, "COMMIT; PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK)
                r = bench_log_errno(-EIO, "Cannot commit to %s: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return r;
}

/* outpostd creates the schema, its ids and the schema version itself; the
 * benchmark adds rows only. */
static int make_store(Scale *s, const char *state, UserId *ids, unsigned n_users, unsigned n_events) {
        pid_t pid = 0;
        uint64_t nsec;
        int r;

        r = daemon_start(s, &s->small, state, &pid, &nsec);
        if (r >= 0)
                r = daemon_stop(s, &pid);
        if (r >= 0 && n_users > 0)
                r = populate(s, state, ids, n_users, n_events);
        return r;
}

/* The figures */

typedef struct Results {
        Samples startup_empty, startup_many;
        Samples get_few, get_many, get_many_hot;
        Samples list[3];                /* first, middle, last page */
        Samples presence_alone, presence_crowd;
        double rss_few, rss_many_started, rss_many, rss_clients;
        double bridge_idle, bridge_subscribed;
} Results;

static int call_failed(const char *what, int r, const sd_bus_error *error) {
        return bench_log_errno(r, "%s failed%s%s", what, error && error->message ? ": " : "",
                    error && error->message ? error->message : "");
}

/* Startup with the empty store and the big one, alternated. */
static int measure_startup(Scale *s, Results *res) {
        for (unsigned i = 0; i < STARTUP_SAMPLES; i++) {
                pid_t pid = 0;
                uint64_t nsec;
                int r;

                r = daemon_start(s, &s->small, "state-empty", &pid, &nsec);
                if (r >= 0)
                        r = daemon_stop(s, &pid);
                if (r >= 0)
                        r = bench_samples_add(&res->startup_empty, nsec);
                if (r >= 0)
                        r = daemon_start(s, &s->big, "state-many", &s->daemon_pids[1], &nsec);
                if (r >= 0)
                        r = bench_samples_add(&res->startup_many, nsec);
                /* The size before any call. */
                if (r >= 0 && i + 1 == STARTUP_SAMPLES)
                        r = resident_kib(s->daemon_pids[1], &res->rss_many_started);
                if (r >= 0)
                        r = daemon_stop(s, &s->daemon_pids[1]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int timed_call(sd_bus *bus, Samples *samples, const char *path, const char *iface, const char *member,
                      const char *types, ...) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        uint64_t start = bench_now_nsec(), ns;
        va_list ap;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, OUTPOST_NAME, path, iface, member);
        if (r >= 0) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_call(bus, m, 0, &error, &reply);
        ns = bench_now_nsec() - start;
        if (r < 0)
                r = call_failed(member, r, &error);
        else if (samples)
                r = bench_samples_add(samples, ns);
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        sd_bus_message_unref(m);
        return r;
}

/* GetUser of users picked at random: at 1000 users all of them fit the
 * daemon's user cache, at 100000 most calls read SQLite. */
static int get_random_users(Scale *s, Bus *bus, UserId *ids, unsigned n_ids, unsigned n, Samples *samples) {
        for (unsigned i = 0; i < n; i++) {
                int r = timed_call(bus->control, samples, USERS_PATH, USERS_IFACE, "GetUser", "s",
                                   ids[next_random(&s->rng) % n_ids]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The small store's daemon and the big one take turns on the same bus, a
 * round each, so that both see the same bus and the same placement on the
 * CPUs (two buses at once made the same cached call differ by up to 1.7x
 * between them on a busy 2-CPU machine). Each round starts with warm
 * caches: the user cache (4096 users) holds all 1000 small-store users,
 * and on the big store the first 1000 users and random others. The big
 * daemon stays for the figures after these. */
static int measure_get_user(Scale *s, Results *res) {
        unsigned per_round = GET_USER_SAMPLES / ROUNDS;
        pid_t few = 0;
        uint64_t nsec;
        int r = 0;

        for (unsigned round = 0; round < ROUNDS && r >= 0; round++) {
                r = daemon_start(s, &s->big, "state-few", &few, &nsec);
                if (r >= 0)
                        r = get_random_users(s, &s->big, s->few_ids, FEW_USERS, 2 * FEW_USERS, NULL);
                if (r >= 0)
                        r = get_random_users(s, &s->big, s->few_ids, FEW_USERS, per_round, &res->get_few);
                if (r >= 0)
                        r = daemon_stop(s, &few);
                if (r >= 0)
                        r = daemon_start(s, &s->big, "state-many", &s->daemon_pids[1], &nsec);
                if (r >= 0)
                        r = get_random_users(s, &s->big, s->many_ids, MANY_USERS, 2 * FEW_USERS, NULL);
                if (r >= 0)
                        r = get_random_users(s, &s->big, s->many_ids, FEW_USERS, 2 * FEW_USERS, NULL);
                if (r >= 0)
                        r = get_random_users(s, &s->big, s->many_ids, MANY_USERS, per_round, &res->get_many);
                /* 1000 of the 100000: as many as at the small store, all
                 * of them in the user cache. */
                if (r >= 0)
                        r = get_random_users(s, &s->big, s->many_ids, FEW_USERS, per_round, &res->get_many_hot);
                if (r >= 0 && round + 1 < ROUNDS)
                        r = daemon_stop(s, &s->daemon_pids[1]);
        }
        (void) bench_stop(&few, "outpostd");
        return r;
}

/* A ListUsers page of LIST_LIMIT after the cursor: the first page, the one
 * after the 50000th user, and the last one. */
static int measure_list(Scale *s, Results *res) {
        char cursors[3][32] = { "" };
        unsigned per_round = LIST_SAMPLES / ROUNDS;

        snprintf(cursors[1], sizeof cursors[1], "user%06u", MANY_USERS / 2 - 1);
        snprintf(cursors[2], sizeof cursors[2], "user%06u", MANY_USERS - LIST_LIMIT - 1);
        for (unsigned round = 0; round <= ROUNDS; round++)
                for (unsigned c = 0; c < 3; c++)
                        for (unsigned i = 0; i < per_round; i++) {
                                /* Round 0 warms up. */
                                int r = timed_call(s->big.control, round > 0 ? &res->list[c] : NULL, USERS_PATH,
                                                   USERS_IFACE, "ListUsers", "su", cursors[c], (uint32_t) LIST_LIMIT);
                                if (r < 0)
                                        return r;
                        }
        return 0;
}

/* Reads of every kind before the resident size is taken: FetchSince pages
 * across the history (none on the small store, which has no events). */
static int read_history(Bus *bus) {
        uint64_t last = 0, step;
        int r;

        r = sd_bus_get_property_trivial(bus->control, OUTPOST_NAME, EVENTS_PATH, EVENTS_IFACE, "LastSeq", NULL, 't', &last);
        if (r < 0)
                return bench_log_errno(r, "Cannot read LastSeq");
        step = last / READ_FETCH_PAGES;
        for (unsigned i = 0; i < READ_FETCH_PAGES && last > 0; i++) {
                r = timed_call(bus->control, NULL, EVENTS_PATH, EVENTS_IFACE, "FetchSince", "stasu",
                               "", i * step, 0, (uint32_t) 10000);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* RSS_READS GetUser of random users fill the user cache (4096 users) of
 * both daemons. */
#define RSS_READS (3 * GET_USER_SAMPLES)

static int measure_rss(Scale *s, Results *res) {
        int r;

        r = get_random_users(s, &s->big, s->many_ids, MANY_USERS, RSS_READS, NULL);
        if (r >= 0)
                r = read_history(&s->small);
        if (r >= 0)
                r = read_history(&s->big);
        if (r >= 0)
                r = resident_kib(s->daemon_pids[0], &res->rss_few);
        if (r >= 0)
                r = resident_kib(s->daemon_pids[1], &res->rss_many);
        return r;
}

/* Connections of the client figures: replies and signals are counted. */

static int on_client_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Scale *s = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        if (e)
                s->error = call_failed("A client's call", -EIO, e);
        s->replies++;
        return 0;
}

static int on_client_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Scale *s = userdata;

        s->signals++;
        return 0;
}

static int clients_connect(Scale *s, Bus *bus, unsigned n) {
        s->clients = g_new0(sd_bus *, n);
        s->n_clients = n;
        for (unsigned i = 0; i < n; i++) {
                int r = bench_connect(bus->address, false, &s->clients[i]);
                if (r >= 0)
                        r = sd_bus_attach_event(s->clients[i], s->event, SD_EVENT_PRIORITY_NORMAL);
                if (r < 0)
                        return bench_log_errno(r, "Cannot set up client %u", i);
        }
        return 0;
}

static void clients_close(Scale *s) {
        for (unsigned i = 0; i < s->n_clients; i++)
                sd_bus_flush_close_unref(s->clients[i]);
        g_free(s->clients);
        s->clients = NULL;
        s->n_clients = 0;
}

/* An Event match on each of clients FROM..TO-1 (AddMatch is answered before
 * this returns). */
static int clients_subscribe(Scale *s, unsigned from, unsigned to) {
        for (unsigned i = from; i < to; i++) {
                int r = sd_bus_match_signal(s->clients[i], NULL, NULL, EVENTS_PATH, EVENTS_IFACE, "Event",
                                            on_client_signal, s);
                if (r < 0)
                        return bench_log_errno(r, "Cannot subscribe client %u", i);
        }
        return 0;
}

static int clients_wait(Scale *s, uint64_t replies, uint64_t signals, const char *what) {
        uint64_t deadline = bench_now_usec() + WAIT_USEC;

        while (s->error >= 0 && (s->replies < replies || s->signals < signals)) {
                int r;

                if (bench_interrupted)
                        return bench_log_errno(-EINTR, "Interrupted");
                if (bench_now_usec() > deadline)
                        return bench_log_errno(-ETIMEDOUT, "%s: %" PRIu64 " of %" PRIu64 " replies, %" PRIu64 " of %" PRIu64
                                    " signals within %llu s", what, s->replies, replies, s->signals, signals,
                                    WAIT_USEC / 1000000);
                r = sd_event_run(s->event, 100000);
                if (r < 0)
                        return bench_log_errno(r, "The event loop failed");
        }
        return s->error;
}

/* Let the daemon finish with what the clients caused (PropertiesChanged,
 * events) before its size is read. */
static int settle(Bus *bus) {
        usleep(300000);
        return timed_call(bus->control, NULL, ROOT_PATH, "org.freedesktop.DBus.Peer", "Ping", "");
}

/* 1000 clients on the daemon with 1000 users: HOLDERS of them hold a user
 * online each, the others subscribe to Event and read a user. On that
 * daemon and not the big one: what a client costs does not depend on the
 * store, and the big daemon's heap has megabytes freed by the FetchSince
 * pages, which the clients' allocations would reuse unseen. */
static int measure_clients(Scale *s, Results *res) {
        int r;

        r = clients_connect(s, &s->small, CLIENTS);
        s->replies = s->signals = 0;
        s->error = 0;
        for (unsigned i = 0; i < CLIENTS && r >= 0; i++)
                r = sd_bus_call_method_async(s->clients[i], NULL, OUTPOST_NAME, i < HOLDERS ? PRESENCE_PATH : USERS_PATH,
                                             i < HOLDERS ? PRESENCE_IFACE : USERS_IFACE,
                                             i < HOLDERS ? "GoOnline" : "GetUser", on_client_reply, s,
                                             i < HOLDERS ? "su" : "s", s->few_ids[i % FEW_USERS], (uint32_t) 0);
        if (r < 0)
                return bench_log_errno(r, "Cannot queue a client's call");
        r = clients_wait(s, CLIENTS, 0, "Client calls");
        /* After the holders' changes, so no client signal waits unread. */
        if (r >= 0)
                r = clients_subscribe(s, HOLDERS, CLIENTS);
        if (r >= 0)
                r = settle(&s->small);
        if (r >= 0)
                r = resident_kib(s->daemon_pids[0], &res->rss_clients);
        clients_close(s);
        return r;
}

/* A presence change, GoOnline then GoOffline of the last user, each call
 * a sample. */
static int time_presence_changes(Scale *s, Samples *samples) {
        const char *id = s->many_ids[MANY_USERS - 1];
        int r = 0;

        for (unsigned i = 0; i < PRESENCE_SAMPLES && r >= 0; i++) {
                r = timed_call(s->big.control, samples, PRESENCE_PATH, PRESENCE_IFACE, "GoOnline", "su", id, (uint32_t) 0);
                if (r >= 0)
                        r = timed_call(s->big.control, samples, PRESENCE_PATH, PRESENCE_IFACE, "GoOffline", "s", id);
        }
        return r;
}

/* One user's presence change costs the same whoever else is online? On
 * the big daemon: with nobody else online, then with 5000 users held by
 * 50 connections. */
static int measure_presence(Scale *s, Results *res) {
        int r;

        r = time_presence_changes(s, NULL);     /* warm-up */
        if (r >= 0)
                r = time_presence_changes(s, &res->presence_alone);
        if (r >= 0)
                r = clients_connect(s, &s->big, ONLINE_HOLDERS);
        s->replies = s->signals = 0;
        s->error = 0;
        for (unsigned i = 0; i < ONLINE_HOLDERS * ONLINE_PER_HOLDER && r >= 0; i++)
                r = sd_bus_call_method_async(s->clients[i % ONLINE_HOLDERS], NULL, OUTPOST_NAME, PRESENCE_PATH,
                                             PRESENCE_IFACE, "GoOnline", on_client_reply, s, "su", s->many_ids[i],
                                             (uint32_t) 0);
        if (r >= 0)
                r = clients_wait(s, ONLINE_HOLDERS * ONLINE_PER_HOLDER, 0, "Holding users online");
        if (r >= 0)
                r = time_presence_changes(s, &res->presence_crowd);
        clients_close(s);
        return r;
}

/* outpost-bridge: a listener next to the big daemon, an importer on its own
 * bus, over plain TCP on loopback. */

static int bridge_start(Scale *s, Bus *bus, const char *role, const char *log, pid_t *ret_pid) {
        g_autofree char *address = g_strconcat("--address=", bus->address, NULL);
        g_autofree char *config = g_strdup_printf("--config=%s/none.conf", s->dir);
        char *argv[] = { (char *) (g_getenv("OUTPOST_BRIDGE") ?: "./outpost-bridge"), address, config,
                         (char *) role, (char *) "--insecure-plaintext", NULL };
        int log_fd, r;

        r = bench_open_log(s->dir, log, &log_fd);
        if (r < 0)
                return r;
        r = bench_spawn(argv, -1, log_fd, ret_pid);
        close(log_fd);
        return r < 0 ? bench_log_errno(r, "Cannot start %s", argv[0]) : 0;
}

static bool bridge_connected(Bus *bus) {
        g_autofree char *state = NULL;

        if (sd_bus_get_property_string(bus->control, OUTPOST_NAME, BRIDGE_PATH, BRIDGE_IFACE, "State", NULL, &state) < 0)
                return false;
        return strcmp(state, "connected") == 0;
}

static int measure_bridge(Scale *s, Results *res) {
        g_autofree char *listen = NULL, *upstream = NULL;
        unsigned port = 0;
        int r;

        r = bench_free_tcp_port(&port);
        if (r < 0)
                return r;
        listen = g_strdup_printf("--listen=tcp:host=127.0.0.1,port=%u", port);
        upstream = g_strdup_printf("--upstream=tcp:host=127.0.0.1,port=%u", port);
        r = bridge_start(s, &s->big, listen, "bridge-listener", &s->listener_pid);
        if (r >= 0)
                r = bridge_start(s, &s->site, upstream, "bridge-importer", &s->importer_pid);
        if (r >= 0)
                r = bus_wait_for(&s->site, s->importer_pid, bridge_connected, "The importer connecting");
        if (r >= 0)
                r = settle(&s->site);
        if (r >= 0)
                r = resident_kib(s->importer_pid, &res->bridge_idle);
        if (r >= 0)
                r = clients_connect(s, &s->site, BRIDGE_SUBSCRIBERS);
        if (r >= 0)
                r = clients_subscribe(s, 0, BRIDGE_SUBSCRIBERS);
        s->replies = s->signals = 0;
        /* Each event relayed once by the importer, delivered to every
         * subscriber by the site's bus. */
        for (unsigned i = 0; i < BRIDGE_EVENTS && r >= 0; i++)
                r = timed_call(s->big.control, NULL, EVENTS_PATH, EVENTS_IFACE, "Publish", "sa{sv}",
                               "bench/scale", 1, "n", "u", i);
        if (r >= 0)
                r = clients_wait(s, 0, (uint64_t) BRIDGE_EVENTS * BRIDGE_SUBSCRIBERS, "Relayed events");
        if (r >= 0)
                r = settle(&s->site);
        if (r >= 0)
                r = resident_kib(s->importer_pid, &res->bridge_subscribed);
        clients_close(s);
        if (r < 0) {
                bench_show_log(s->dir, "bridge-listener");
                bench_show_log(s->dir, "bridge-importer");
        }
        (void) bench_stop(&s->importer_pid, "the importing bridge");
        (void) bench_stop(&s->listener_pid, "the listening bridge");
        return r;
}

/* Report */

static const BenchTable table = { .name = 26, .value = 12, .baseline = 20, .target = 10 };

static void print_row(const char *name, const char *value, const char *spread, const char *baseline,
                      double ratio, const char *target, int pass) {
        bench_print_row(&table, name, value, spread, baseline, ratio, target, pass);
}

static void print_kib(const char *name, double kib, const char *baseline, double base, const char *target, int pass) {
        char v[32];

        snprintf(v, sizeof v, kib >= 10240 ? "%.1fMiB" : "%.1fKiB", kib >= 10240 ? kib / 1024 : kib);
        print_row(name, v, "-", baseline, base > 0 ? kib / base : 0, target, pass);
}

/* A timed row: median and (in the second column) QUANTILE, in µs or ms. */
static void print_times(const char *name, Samples *samples, double quantile, bool ms, const char *baseline,
                        Samples *base, double max_ratio, unsigned *misses) {
        double median, q, base_median = 0, base_q, ratio = 0, scale = ms ? 1e6 : 1e3;
        char v[32], p[32], t[32] = "-";
        int pass = -1;

        bench_samples_stats(samples, quantile, &median, &q);
        if (base) {
                bench_samples_stats(base, quantile, &base_median, &base_q);
                ratio = base_median > 0 ? median / base_median : 0;
        }
        snprintf(v, sizeof v, "%.1f%s", median / scale, ms ? "ms" : "us");
        snprintf(p, sizeof p, "%.1f%s", q / scale, ms ? "ms" : "us");
        if (max_ratio > 0) {
                snprintf(t, sizeof t, "<=%.2f", max_ratio);
                pass = ratio <= max_ratio;
                *misses += !pass;
        }
        print_row(name, v, p, baseline, ratio, t, pass);
}

static void print_results(Results *res, unsigned *misses) {
        double startup_median, startup_max, per_client, per_subscriber;
        char t[32];
        int pass;

        bench_print_header(&table, "median", "p99/max");

        /* Every start must make it, not just the median. */
        print_times("startup-empty", &res->startup_empty, 1.0, true, NULL, NULL, 0, misses);
        bench_samples_stats(&res->startup_many, 1.0, &startup_median, &startup_max);
        print_times("startup-100k-users-1m-ev", &res->startup_many, 1.0, true, "startup-empty", &res->startup_empty,
                    0, misses);
        pass = startup_max <= STARTUP_TARGET_MSEC * 1e6;
        *misses += !pass;
        snprintf(t, sizeof t, "max<=%.0fms", STARTUP_TARGET_MSEC);
        print_row("  (every start)", "", "", NULL, 0, t, pass);

        print_times("get-user-1k-users", &res->get_few, 0.99, false, NULL, NULL, 0, misses);
        print_times("get-user-100k-users", &res->get_many, 0.99, false, "get-user-1k-users", &res->get_few, 1.2, misses);
        print_times("get-user-100k-hot-1k", &res->get_many_hot, 0.99, false, "get-user-1k-users", &res->get_few, 0,
                    misses);
        print_times("list-users-first", &res->list[0], 0.99, false, NULL, NULL, 0, misses);
        print_times("list-users-middle", &res->list[1], 0.99, false, "list-users-first", &res->list[0], 1.2, misses);
        print_times("list-users-last", &res->list[2], 0.99, false, "list-users-first", &res->list[0], 1.2, misses);

        print_times("presence-change-alone", &res->presence_alone, 0.99, false, NULL, NULL, 0, misses);
        print_times("presence-change-5000-on", &res->presence_crowd, 0.99, false, "presence-change-alone",
                    &res->presence_alone, 0, misses);

        print_kib("rss-1k-users", res->rss_few, NULL, 0, "-", -1);
        print_kib("rss-100k-1m-ev-started", res->rss_many_started, "rss-1k-users", res->rss_few, "-", -1);
        pass = res->rss_many <= RSS_TARGET_KIB;
        *misses += !pass;
        print_kib("rss-100k-users-1m-ev", res->rss_many, "rss-1k-users", res->rss_few, "<=64MiB", pass);
        print_kib("rss-1000-clients", res->rss_clients, "rss-1k-users", res->rss_few, "-", -1);
        per_client = (res->rss_clients - res->rss_few) / CLIENTS;
        pass = per_client <= CLIENT_TARGET_KIB;
        *misses += !pass;
        print_kib("rss-per-client", per_client, NULL, 0, "<=20KiB", pass);

        print_kib("bridge-rss-idle", res->bridge_idle, NULL, 0, "-", -1);
        print_kib("bridge-rss-1000-subs", res->bridge_subscribed, "bridge-rss-idle", res->bridge_idle, "-", -1);
        per_subscriber = (res->bridge_subscribed - res->bridge_idle) / BRIDGE_SUBSCRIBERS;
        print_kib("bridge-rss-per-sub", per_subscriber, NULL, 0, "-", -1);
}

/* Setup and teardown */

static void scale_done(Scale *s) {
        clients_close(s);
        (void) bench_stop(&s->importer_pid, "the importing bridge");
        (void) bench_stop(&s->listener_pid, "the listening bridge");
        for (size_t i = 0; i < G_N_ELEMENTS(s->daemon_pids); i++)
                (void) bench_stop(&s->daemon_pids[i], "outpostd");
        bus_stop(&s->site);
        bus_stop(&s->big);
        bus_stop(&s->small);
        s->event = sd_event_unref(s->event);
        bench_remove_dir(s->dir);
        free(s->dir);
        g_free(s->many_ids);
        g_free(s->few_ids);
}

#define RESULTS_SAMPLES(res) { &(res)->startup_empty, &(res)->startup_many, &(res)->get_few, &(res)->get_many, \
                              &(res)->get_many_hot, &(res)->list[0], &(res)->list[1], &(res)->list[2], \
                              &(res)->presence_alone, &(res)->presence_crowd }

static void results_done(Results *res) {
        Samples *all[] = RESULTS_SAMPLES(res);

        for (size_t i = 0; i < G_N_ELEMENTS(all); i++)
                bench_samples_free(all[i]);
}

/* All defaults but RetentionCount: the history holds 1000000 events. */
static int write_daemon_config(Scale *s) {
        g_autofree char *path = g_strdup_printf("%s/outpostd.conf", s->dir);
        g_autoptr(GError) error = NULL;

        if (!g_file_set_contents(path, "[Events]\nRetentionCount=1000000\n", -1, &error))
                return bench_log_errno(-EIO, "%s", error->message);
        return 0;
}

static int setup(Scale *s) {
        uint64_t start = bench_now_usec();
        int r;

        r = bench_make_dir("outpost-scale", &s->dir);
        if (r < 0)
                return r;
        s->rng = 0x9e3779b97f4a7c15ULL;
        s->many_ids = g_new0(UserId, MANY_USERS);
        s->few_ids = g_new0(UserId, FEW_USERS);
        r = sd_event_new(&s->event);
        if (r < 0)
                return bench_log_errno(r, "Cannot create an event loop");
        r = write_daemon_config(s);
        if (r >= 0)
                r = bus_start(s, &s->small, "small");
        if (r >= 0)
                r = bus_start(s, &s->big, "big");
        if (r >= 0)
                r = bus_start(s, &s->site, "site");
        if (r >= 0)
                r = make_store(s, "state-empty", NULL, 0, 0);
        if (r >= 0)
                r = make_store(s, "state-few", s->few_ids, FEW_USERS, 0);
        if (r >= 0)
                r = make_store(s, "state-many", s->many_ids, MANY_USERS, MANY_EVENTS);
        if (r < 0)
                return r;
        printf("# outpostd: %s; directory %s; SQLite %s; %ld CPUs\n", g_getenv("OUTPOSTD") ?: "./outpostd",
               s->dir, sqlite3_libversion(), sysconf(_SC_NPROCESSORS_ONLN));
        printf("# stores made in %.1f s: %d users; %d users; %d users and %d events\n",
               (bench_now_usec() - start) / 1e6, 0, FEW_USERS, MANY_USERS, MANY_EVENTS);
        fflush(stdout);
        return 0;
}

static int run(Scale *s) {
        _cleanup_(results_done) Results res = {};
        uint64_t start = bench_now_usec();
        unsigned misses = 0;
        uint64_t nsec;
        int r;

        r = setup(s);
        if (r >= 0)
                r = measure_startup(s, &res);
        if (r >= 0)
                r = measure_get_user(s, &res);
        if (r >= 0)
                r = daemon_start(s, &s->small, "state-few", &s->daemon_pids[0], &nsec);
        if (r >= 0)
                r = get_random_users(s, &s->small, s->few_ids, FEW_USERS, RSS_READS, NULL);
        if (r >= 0)
                r = measure_list(s, &res);
        if (r >= 0)
                r = measure_rss(s, &res);
        if (r >= 0)
                r = measure_clients(s, &res);
        if (r >= 0)
                r = measure_bridge(s, &res);
        /* Last: the users it holds online would be in the bridge's
         * snapshot, and the bridge would relay every change. */
        if (r >= 0)
                r = measure_presence(s, &res);
        if (r < 0)
                return r;
        print_results(&res, &misses);
        printf("# %u of 7 targets missed; run took %.1f s\n", misses, (bench_now_usec() - start) / 1e6);
        return 0;
}

int main(int argc, char **argv) {
        _cleanup_(scale_done) Scale s = {};

        if (argc > 1) {
                fprintf(stderr,
                        "Usage: %s\n"
                        "outpostd with 100000 users and 1000000 events, and outpost-bridge with 1000 subscribers,\n"
                        "on private buses. Environment: OUTPOSTD (default ./outpostd), OUTPOST_BRIDGE (default\n"
                        "./outpost-bridge), BENCH_DIR (default /var/tmp), DBUS_DAEMON, BENCH_KEEP.\n", argv[0]);
                return argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
        }
        bench_init("bench-scale");
        return run(&s) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
