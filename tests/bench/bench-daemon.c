/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-daemon: how much outpostd adds to what D-Bus and SQLite cost anyway.
 *
 * One run starts a private dbus-daemon and the real outpostd in a temporary
 * directory, then times calls against two baselines measured in the same
 * run: a Peer.Ping round trip (the bus and sd-bus, no daemon code) and a
 * bare SQLite commit with the store's durability settings on the same disk
 * (what a durable change cannot avoid). It prints one line per figure with
 * its ratio to the baseline and whether it meets its target. A MISS is a
 * finding, not a failure: the exit status is non-zero only when the
 * benchmark itself could not run. See tests/bench/README.md. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define DEFAULT_ITERATIONS      2000
#define DEFAULT_WARMUP          200
/* Samples are taken in rounds (see BenchStep). */
#define ROUNDS                  10
/* The latency part gets this long, warm-up included; past it the number of
 * iterations shrinks (a slow disk), so a whole run stays under 2 minutes. */
#define LATENCY_BUDGET_USEC     (75ULL * 1000000ULL)
#define MIN_ITERATIONS          200

#define PIPELINE_CONNECTIONS    4
#define PIPELINE_DEPTH          16      /* outstanding calls per connection */
#define PIPELINE_CALLS          5000    /* per round and kind */
#define PIPELINE_DURABLE_CALLS  1000    /* per round, of the kinds that commit */
#define PIPELINE_ROUNDS         6
#define PIPELINE_WARMUP_CALLS   2000

#define FANOUT_SUBSCRIBERS      100     /* the most; the figures take 1, 10, 100 */
#define FANOUT_EVENTS           2000    /* per round and kind */
#define FANOUT_ROUNDS           3
#define REPLAY_EVENTS           100000
#define REPLAY_PAGE             10000   /* FetchSince's largest limit */
#define SAVE_CALLS              3000    /* per round, over all clients */
#define SAVE_ROUNDS             3

#define STARTUP_TIMEOUT_USEC    (20ULL * 1000000ULL)
#define RAW_ROW_BYTES           280     /* + topic and time: ~300 bytes, like a saved user or an event */

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

/* The benchmark */

typedef struct Bench {
        BenchClient client;             /* first: the shared steps take a Bench as their client */
        char *tmpdir;
        char *address;
        pid_t bus_pid;
        pid_t daemon_pid;

        sd_bus *pipeline[PIPELINE_CONNECTIONS];
        sd_event *event;

        sqlite3 *raw;
        sqlite3_stmt *raw_begin, *raw_insert, *raw_commit;
        uint8_t raw_row[RAW_ROW_BYTES];

        /* Event subscribers (fan-out, replay): each counts the Event
         * signals it receives. */
        sd_bus *subs[FANOUT_SUBSCRIBERS];
        uint64_t sub_received, sub_expected;
        uint64_t sub_first_usec, sub_last_usec;
        uint64_t sub_last_seq;

        /* A user per pipelined call in flight, for the kinds that change
         * one: SaveUser needs the tag the previous save returned, and a
         * GoOnline of a user already online changes nothing. */
        struct {
                char *id;
                char *tag;
                bool online;
        } pipe_users[PIPELINE_CONNECTIONS * PIPELINE_DEPTH];
} Bench;

static void bench_done(Bench *b) {
        for (size_t i = 0; i < PIPELINE_CONNECTIONS; i++)
                b->pipeline[i] = sd_bus_flush_close_unref(b->pipeline[i]);
        for (size_t i = 0; i < FANOUT_SUBSCRIBERS; i++)
                b->subs[i] = sd_bus_flush_close_unref(b->subs[i]);
        b->event = sd_event_unref(b->event);
        bench_client_done(&b->client);

        bench_stop_daemon(&b->daemon_pid, b->tmpdir);
        (void) bench_stop(&b->bus_pid, "dbus-daemon");

        sqlite3_finalize(b->raw_begin);
        sqlite3_finalize(b->raw_insert);
        sqlite3_finalize(b->raw_commit);
        sqlite3_close(b->raw);

        bench_remove_dir(b->tmpdir);
        free(b->tmpdir);
        free(b->address);
        for (size_t i = 0; i < PIPELINE_CONNECTIONS * PIPELINE_DEPTH; i++) {
                free(b->pipe_users[i].id);
                free(b->pipe_users[i].tag);
        }
}

static int start_daemon(Bench *b) {
        _cleanup_free_ char *address = NULL, *state = NULL, *config = NULL;
        int log_fd, r;

        if (asprintf(&address, "--address=%s", b->address) < 0 ||
            asprintf(&state, "--state-dir=%s/state", b->tmpdir) < 0 ||
            /* Absent on purpose: all defaults, as after a fresh install. */
            asprintf(&config, "--config=%s/none.conf", b->tmpdir) < 0)
                return -ENOMEM;

        /* Its log goes to a file, so it does not mix with the table and
         * is there to show when it fails. */
        r = bench_open_log(b->tmpdir, "outpostd", &log_fd);
        if (r < 0)
                return r;

        char *argv[] = { (char *) bench_env_or("OUTPOSTD", "./outpostd"), address, state, config, NULL };
        r = bench_spawn(argv, log_fd, log_fd, &b->daemon_pid);
        close(log_fd);
        if (r < 0)
                return bench_log_errno(r, "Cannot start %s", argv[0]);

        r = bench_wait_for_name(b->client.bus, &b->daemon_pid, STARTUP_TIMEOUT_USEC);
        if (r < 0) {
                bench_show_log(b->tmpdir, "outpostd");
                return bench_log_errno(r, "%s did not start", argv[0]);
        }
        return 0;
}

static int create_user(Bench *b) {
        return bench_create_user(b->client.bus, "bench", &b->client.user_id, &b->client.tag);
}

/* The bare commit baseline: the store's settings (src/daemon/store.c: WAL,
 * synchronous=FULL, BEGIN IMMEDIATE ... COMMIT around every change) and a
 * table shaped like its events table, in the same directory as the store,
 * so it pays the same fsync on the same file system. */
static int open_raw(Bench *b) {
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "%s/raw.db", b->tmpdir) < 0)
                return -ENOMEM;
        if (sqlite3_open_v2(path, &b->raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                            NULL) != SQLITE_OK)
                return bench_log_errno(-EIO, "Cannot open %s: %s", path, sqlite3_errmsg(b->raw));
        if (sqlite3_exec(b->raw,
                         "PRAGMA journal_mode=WAL;"
                         "PRAGMA synchronous=FULL;"
                         "CREATE TABLE raw ("
                         "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                         "  topic TEXT NOT NULL,"
                         "  time INTEGER NOT NULL,"
                         "  data BLOB NOT NULL);",
                         NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_prepare_v3(b->raw, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &b->raw_begin, NULL) != SQLITE_OK ||
            sqlite3_prepare_v3(b->raw, "INSERT INTO raw (topic, time, data) VALUES (?1, ?2, ?3)", -1,
                               SQLITE_PREPARE_PERSISTENT, &b->raw_insert, NULL) != SQLITE_OK ||
            sqlite3_prepare_v3(b->raw, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &b->raw_commit, NULL) != SQLITE_OK)
                return bench_log_errno(-EIO, "Cannot set up %s: %s", path, sqlite3_errmsg(b->raw));

        /* Not compressible, not all zeroes: like real serialized data. */
        for (size_t i = 0; i < sizeof b->raw_row; i++)
                b->raw_row[i] = (uint8_t) (i * 131 + 17);
        return 0;
}

static int step_raw_commit(void *userdata) {
        Bench *b = userdata;
        uint64_t start, end;
        int r;

        start = bench_now_nsec();
        r = sqlite3_step(b->raw_begin);
        sqlite3_reset(b->raw_begin);
        if (r == SQLITE_DONE) {
                sqlite3_bind_text(b->raw_insert, 1, "bench/raw", -1, SQLITE_STATIC);
                sqlite3_bind_int64(b->raw_insert, 2, (sqlite3_int64) start);
                sqlite3_bind_blob(b->raw_insert, 3, b->raw_row, sizeof b->raw_row, SQLITE_STATIC);
                r = sqlite3_step(b->raw_insert);
                sqlite3_reset(b->raw_insert);
        }
        if (r == SQLITE_DONE) {
                r = sqlite3_step(b->raw_commit);
                sqlite3_reset(b->raw_commit);
        }
        end = bench_now_nsec();
        if (r != SQLITE_DONE) {
                (void) sqlite3_exec(b->raw, "ROLLBACK", NULL, NULL, NULL);
                return bench_log_errno(-EIO, "Raw commit failed: %s", sqlite3_errmsg(b->raw));
        }
        return b->client.record ? bench_samples_add(&b->client.samples[FIG_RAW_COMMIT], end - start) : 0;
}

static const BenchStep steps[] = {
        { "ping",       bench_step_ping },
        { "get-user",   bench_step_get_user },
        { "raw-commit", step_raw_commit },
        { "save-user",  bench_step_save_user },
        { "presence",   bench_step_presence },
        { "publish",    bench_step_publish },
};

/* Returns how long one iteration of every step took during warm-up, in µs. */
static int warm_up(Bench *b, unsigned n, uint64_t *ret_iteration_usec) {
        uint64_t start = bench_now_usec();
        int r;

        b->client.record = false;
        r = bench_run_steps(steps, ELEMENTSOF(steps), n, b);
        *ret_iteration_usec = n > 0 ? (bench_now_usec() - start) / n : 0;
        return r;
}

static int measure_latency(Bench *b, unsigned iterations) {
        b->client.record = true;
        return bench_run_rounds(steps, ELEMENTSOF(steps), iterations, ROUNDS, b);
}

/* Pipelined throughput: several connections with calls in flight, as many
 * clients of a busy server would have, all driven from one sd-event loop. */

typedef enum PipeKind {
        PIPE_PING,
        PIPE_GET_USER,
        PIPE_SAVE_USER,
        PIPE_GO_ONLINE,
        PIPE_PUBLISH,
        _PIPE_MAX,
} PipeKind;

static const char *const pipe_kind_name[] = {
        [PIPE_PING] = "Pipelined Ping",
        [PIPE_GET_USER] = "Pipelined GetUser",
        [PIPE_SAVE_USER] = "Pipelined SaveUser",
        [PIPE_GO_ONLINE] = "Pipelined GoOnline/GoOffline",
        [PIPE_PUBLISH] = "Pipelined Publish",
};

#define PIPELINE_SLOTS (PIPELINE_CONNECTIONS * PIPELINE_DEPTH)

typedef struct Pipeline Pipeline;

/* One call in flight: slot I always uses connection I % PIPELINE_CONNECTIONS
 * and, for the kinds that change a user, b->pipe_users[I]. */
typedef struct PipeSlot {
        Pipeline *pipeline;
        unsigned index;
} PipeSlot;

struct Pipeline {
        Bench *bench;
        PipeKind kind;
        unsigned total, issued, completed;
        int error;
        PipeSlot slots[PIPELINE_SLOTS];
};

/* The loop runs until this is set: sd_event_exit() would end the event
 * loop for good, and it serves several runs. Signals the subscribers wait
 * for count too. */
static bool pipeline_done(const Pipeline *p) {
        const Bench *b = p->bench;
        return p->error < 0 || (p->completed == p->total && b->sub_received >= b->sub_expected);
}

static int on_pipeline_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);

static int pipeline_issue(PipeSlot *slot) {
        Pipeline *p = slot->pipeline;
        Bench *b = p->bench;
        sd_bus *bus = b->pipeline[slot->index % PIPELINE_CONNECTIONS];
        typeof(b->pipe_users[0]) *u = &b->pipe_users[slot->index];
        char name[64];
        int r;

        switch (p->kind) {
        case PIPE_GET_USER:
                r = sd_bus_call_method_async(bus, NULL, BENCH_OUTPOST_NAME, USERS_PATH, USERS_IFACE, "GetUser",
                                             on_pipeline_reply, slot, "s", b->client.user_id);
                break;
        case PIPE_SAVE_USER:
                snprintf(name, sizeof name, "Pipelined %u", p->issued);
                r = sd_bus_call_method_async(bus, NULL, BENCH_OUTPOST_NAME, USERS_PATH, USERS_IFACE, "SaveUser",
                                             on_pipeline_reply, slot, "ssa{sv}", u->id, u->tag,
                                             1, "display-name", "s", name);
                break;
        case PIPE_GO_ONLINE:
                /* Every call a change: online, offline, online... */
                if (u->online)
                        r = sd_bus_call_method_async(bus, NULL, BENCH_OUTPOST_NAME, PRESENCE_PATH, PRESENCE_IFACE,
                                                     "GoOffline", on_pipeline_reply, slot, "s", u->id);
                else
                        r = sd_bus_call_method_async(bus, NULL, BENCH_OUTPOST_NAME, PRESENCE_PATH, PRESENCE_IFACE,
                                                     "GoOnline", on_pipeline_reply, slot, "su", u->id, (uint32_t) 0);
                u->online = !u->online;
                break;
        case PIPE_PUBLISH:
                r = sd_bus_call_method_async(bus, NULL, BENCH_OUTPOST_NAME, EVENTS_PATH, EVENTS_IFACE, "Publish",
                                             on_pipeline_reply, slot, "sa{sv}", "bench/fanout",
                                             1, "n", "i", (int32_t) p->issued);
                break;
        default:
                r = sd_bus_call_method_async(bus, NULL, BENCH_OUTPOST_NAME, ROOT_PATH, PEER_IFACE, "Ping",
                                             on_pipeline_reply, slot, "");
        }
        if (r < 0)
                return bench_log_errno(r, "Cannot queue a pipelined call");
        p->issued++;
        return 0;
}

static int pipeline_fail(Pipeline *p, int r) {
        p->error = r;
        return 0;
}

/* The next SaveUser of the slot's user passes the tag this one made. */
static int pipeline_take_tag(PipeSlot *slot, sd_bus_message *m) {
        typeof(slot->pipeline->bench->pipe_users[0]) *u = &slot->pipeline->bench->pipe_users[slot->index];
        const char *tag;
        int r;

        r = sd_bus_message_read(m, "s", &tag);
        if (r < 0)
                return bench_log_errno(r, "Cannot read a SaveUser reply");
        free(u->tag);
        u->tag = strdup(tag);
        return u->tag ? 0 : -ENOMEM;
}

static int on_pipeline_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        PipeSlot *slot = userdata;
        Pipeline *p = slot->pipeline;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        int r;

        if (e)
                return pipeline_fail(p, bench_call_failed(pipe_kind_name[p->kind],
                                                          -sd_bus_message_get_errno(m) ?: -EIO, e));
        if (p->kind == PIPE_SAVE_USER) {
                r = pipeline_take_tag(slot, m);
                if (r < 0)
                        return pipeline_fail(p, r);
        }
        p->completed++;
        /* Keep the slot busy: one reply in, one call out. */
        if (p->issued < p->total) {
                r = pipeline_issue(slot);
                if (r < 0)
                        return pipeline_fail(p, r);
        }
        return 0;
}

static int on_pipeline_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Pipeline *p = userdata;
        return pipeline_fail(p, bench_log_errno(-ETIMEDOUT, "Pipelined calls (and their signals: %" PRIu64 " of %" PRIu64
                                          ") did not complete within 60 s",
                                          p->bench->sub_received, p->bench->sub_expected));
}

/* Runs TOTAL calls and returns the time from the first call out to the last
 * reply in, in µs. */
static int pipeline_run(Bench *b, PipeKind kind, unsigned total, uint64_t *ret_usec) {
        Pipeline p = { .bench = b, .kind = kind, .total = total };
        sd_event_source *timeout = NULL;
        uint64_t start;
        int r;

        for (unsigned i = 0; i < PIPELINE_SLOTS; i++)
                p.slots[i] = (PipeSlot) { .pipeline = &p, .index = i };

        r = sd_event_add_time_relative(b->event, &timeout, CLOCK_MONOTONIC, 60 * 1000000ULL, 0,
                                       on_pipeline_timeout, &p);
        if (r < 0)
                return bench_log_errno(r, "Cannot arm a timer");

        start = bench_now_usec();
        for (unsigned i = 0; i < PIPELINE_SLOTS && p.issued < total && r >= 0; i++)
                r = pipeline_issue(&p.slots[i]);
        while (r >= 0 && !pipeline_done(&p))
                r = sd_event_run(b->event, UINT64_MAX);
        *ret_usec = bench_now_usec() - start;
        sd_event_source_disable_unref(timeout);
        if (r < 0)
                return bench_log_errno(r, "The event loop failed");
        if (p.error < 0)
                return p.error;
        if (bench_interrupted)
                return bench_log_errno(-EINTR, "Interrupted");
        return 0;
}

static int create_pipe_users(Bench *b) {
        for (unsigned i = 0; i < PIPELINE_SLOTS; i++) {
                char name[64];
                int r;

                snprintf(name, sizeof name, "bench-pipe-%u", i);
                r = bench_create_user(b->client.bus, name, &b->pipe_users[i].id, &b->pipe_users[i].tag);
                if (r < 0)
                        return r;
        }
        return 0;
}

static unsigned pipe_calls(PipeKind kind) {
        return kind == PIPE_PING || kind == PIPE_GET_USER ? PIPELINE_CALLS : PIPELINE_DURABLE_CALLS;
}

/* Calls per second of every kind, in RET_RATES (indexed by PipeKind). */
static int measure_pipelined(Bench *b, double ret_rates[_PIPE_MAX]) {
        uint64_t usec_sum[_PIPE_MAX] = {}, usec;
        int r;

        r = sd_event_new(&b->event);
        if (r < 0)
                return bench_log_errno(r, "Cannot create an event loop");
        for (size_t c = 0; c < PIPELINE_CONNECTIONS; c++) {
                r = bench_connect(b->address, false, &b->pipeline[c]);
                if (r < 0)
                        return r;
                r = sd_bus_attach_event(b->pipeline[c], b->event, SD_EVENT_PRIORITY_NORMAL);
                if (r < 0)
                        return bench_log_errno(r, "Cannot attach a connection to the event loop");
        }
        r = create_pipe_users(b);

        /* Warm-up also completes the connections' Hello. */
        for (PipeKind k = 0; k < _PIPE_MAX && r >= 0; k++)
                r = pipeline_run(b, k, k == PIPE_PING || k == PIPE_GET_USER ? PIPELINE_WARMUP_CALLS : PIPELINE_SLOTS * 4,
                                 &usec);
        /* Alternated in rounds, for the same reason as the latency figures. */
        for (unsigned round = 0; round < PIPELINE_ROUNDS && r >= 0; round++)
                for (PipeKind k = 0; k < _PIPE_MAX && r >= 0; k++) {
                        r = pipeline_run(b, k, pipe_calls(k), &usec);
                        usec_sum[k] += usec;
                }
        if (r < 0)
                return r;

        for (PipeKind k = 0; k < _PIPE_MAX; k++)
                ret_rates[k] = (double) pipe_calls(k) * PIPELINE_ROUNDS / (usec_sum[k] / 1e6);
        return 0;
}

/* Event fan-out and replay: subscribers are connections in the benchmark's
 * event loop, each with a match rule for the Event signal (any sender, so
 * that the bare program's signals match too); they count what arrives. */

static int on_event_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Bench *b = userdata;
        uint64_t seq = 0, now = bench_now_usec();

        (void) sd_bus_message_read(m, "t", &seq);
        if (b->sub_received == 0)
                b->sub_first_usec = now;
        b->sub_last_usec = now;
        b->sub_received++;
        if (seq > b->sub_last_seq)
                b->sub_last_seq = seq;
        return 0;
}

/* Subscribers FROM..TO-1, connected and subscribed (AddMatch answered). */
static int subscribe(Bench *b, unsigned from, unsigned to) {
        for (unsigned i = from; i < to; i++) {
                int r = bench_connect(b->address, false, &b->subs[i]);

                if (r < 0)
                        return r;
                r = sd_bus_match_signal(b->subs[i], NULL, NULL, EVENTS_PATH, EVENTS_IFACE, "Event",
                                        on_event_signal, b);
                if (r < 0)
                        return bench_log_errno(r, "Cannot subscribe to Event");
                r = sd_bus_attach_event(b->subs[i], b->event, SD_EVENT_PRIORITY_NORMAL);
                if (r < 0)
                        return bench_log_errno(r, "Cannot attach a subscriber to the event loop");
        }
        return 0;
}

static void expect_signals(Bench *b, uint64_t n) {
        b->sub_received = 0;
        b->sub_expected = n;
        b->sub_first_usec = b->sub_last_usec = 0;
}

static int wait_signals(Bench *b, const char *what) {
        uint64_t deadline = bench_now_usec() + 60 * 1000000ULL;

        while (b->sub_received < b->sub_expected) {
                int r;

                if (bench_interrupted)
                        return bench_log_errno(-EINTR, "Interrupted");
                if (bench_now_usec() > deadline)
                        return bench_log_errno(-ETIMEDOUT, "%s: %" PRIu64 " of %" PRIu64 " signals arrived within 60 s",
                                         what, b->sub_received, b->sub_expected);
                r = sd_event_run(b->event, 100000);
                if (r < 0)
                        return bench_log_errno(r, "The event loop failed");
        }
        return 0;
}

/* The bare program: a process of its own, like outpostd, that connects to
 * the same bus and pushes N signals of the same shape as fast as the bus
 * takes them (a flush every 64, as many as the daemon has in flight). */
static void bare_pusher(const char *address, int go_fd, unsigned n) {
        sd_bus *bus = NULL;
        char c;

        if (bench_connect(address, false, &bus) < 0)
                _exit(1);
        if (read(go_fd, &c, 1) != 1)
                _exit(1);
        for (unsigned i = 0; i < n; i++) {
                sd_bus_message *m = NULL;
                int r;

                r = sd_bus_message_new_signal(bus, &m, EVENTS_PATH, EVENTS_IFACE, "Event");
                if (r >= 0)
                        r = sd_bus_message_append(m, "tsxa{sv}", (uint64_t) i + 1, "bench/fanout",
                                                  (int64_t) bench_now_usec(), 1, "n", "i", (int32_t) i);
                if (r >= 0)
                        r = sd_bus_send(bus, m, NULL);
                sd_bus_message_unref(m);
                if (r >= 0 && i % 64 == 63)
                        r = sd_bus_flush(bus);
                if (r < 0)
                        _exit(1);
        }
        (void) sd_bus_flush(bus);
        sd_bus_flush_close_unref(bus);
        _exit(0);
}

static int fanout_bare(Bench *b, unsigned n_subscribers, uint64_t *ret_usec) {
        int go[2], status, r;
        uint64_t start;
        pid_t pid;

        if (pipe2(go, O_CLOEXEC) < 0)
                return bench_log_errno(-errno, "pipe2");
        fflush(stdout);
        pid = bench_fork();
        if (pid < 0) {
                close(go[0]);
                close(go[1]);
                return bench_log_errno(pid, "fork");
        }
        if (pid == 0) {
                close(go[1]);
                bare_pusher(b->address, go[0], FANOUT_EVENTS);
        }
        close(go[0]);
        /* Let it connect before the clock starts, as outpostd is connected. */
        usleep(100000);
        expect_signals(b, (uint64_t) FANOUT_EVENTS * n_subscribers);
        start = bench_now_usec();
        r = write(go[1], "x", 1) == 1 ? 0 : bench_log_errno(-errno, "Cannot start the bare program");
        close(go[1]);
        if (r >= 0)
                r = wait_signals(b, "Bare fan-out");
        *ret_usec = b->sub_last_usec - start;
        if (r < 0)
                kill(pid, SIGKILL);
        (void) waitpid(pid, &status, 0);
        if (r >= 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                r = bench_log_errno(-EIO, "The bare signal program failed (wait status 0x%x)", status);
        expect_signals(b, 0);
        return r;
}

/* 64 Publish calls in flight; done when every reply and every subscriber's
 * signal has arrived. */
static int fanout_publish(Bench *b, unsigned n_subscribers, uint64_t *ret_usec) {
        int r;

        expect_signals(b, (uint64_t) FANOUT_EVENTS * n_subscribers);
        r = pipeline_run(b, PIPE_PUBLISH, FANOUT_EVENTS, ret_usec);
        expect_signals(b, 0);
        return r;
}

/* Fan-out to N subscribers (the first N of b->subs; those missing are
 * connected now). */
static int measure_fanout(Bench *b, unsigned n, double *ret_bare_rate, double *ret_publish_rate) {
        uint64_t bare_usec = 0, publish_usec = 0, usec;
        unsigned have = 0;
        int r;

        while (have < n && b->subs[have])
                have++;
        r = subscribe(b, have, n);
        /* Warm-up. */
        if (r >= 0)
                r = fanout_publish(b, n, &usec);
        for (unsigned round = 0; round < FANOUT_ROUNDS && r >= 0; round++) {
                r = fanout_bare(b, n, &usec);
                bare_usec += usec;
                if (r >= 0)
                        r = fanout_publish(b, n, &usec);
                publish_usec += usec;
        }
        if (r < 0)
                return r;
        *ret_bare_rate = (double) FANOUT_EVENTS * n * FANOUT_ROUNDS / (bare_usec / 1e6);
        *ret_publish_rate = (double) FANOUT_EVENTS * n * FANOUT_ROUNDS / (publish_usec / 1e6);
        return 0;
}

static int read_last_seq(Bench *b, uint64_t *ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_get_property_trivial(b->client.bus, BENCH_OUTPOST_NAME, EVENTS_PATH, EVENTS_IFACE, "LastSeq", &error,
                                        't', ret);
        if (r < 0)
                bench_call_failed("Reading LastSeq", r, &error);
        sd_bus_error_free(&error);
        return r;
}

/* One FetchSince page, read as a client would: every event's seq, topic
 * and time, the data skipped (the signals' is not read either). */
static int fetch_page(Bench *b, uint64_t after, unsigned *ret_n, uint64_t *ret_next, int *ret_more) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        unsigned n = 0;
        int r;

        r = sd_bus_call_method(b->client.bus, BENCH_OUTPOST_NAME, EVENTS_PATH, EVENTS_IFACE, "FetchSince", &error,
                               &reply, "stasu", "", after, 0, (uint32_t) REPLAY_PAGE);
        if (r < 0) {
                bench_call_failed("FetchSince", r, &error);
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_enter_container(reply, 'a', "(tsxa{sv})");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "tsxa{sv}")) > 0) {
                uint64_t seq;
                const char *topic;
                int64_t time;

                r = sd_bus_message_read(reply, "tsx", &seq, &topic, &time);
                if (r >= 0)
                        r = sd_bus_message_skip(reply, "a{sv}");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                n++;
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "tb", ret_next, ret_more);
        sd_bus_message_unref(reply);
        if (r < 0)
                return bench_log_errno(r, "Cannot read a FetchSince reply");
        *ret_n = n;
        return 0;
}

/* REPLAY_EVENTS events published with 64 calls in flight, as a subscriber
 * receives them (first to last signal), then fetched again with FetchSince. */
static int measure_replay(Bench *b, double *ret_signal_rate, double *ret_fetch_rate) {
        uint64_t before, after, usec, start, fetch_usec;
        unsigned total = 0;
        int r;

        r = subscribe(b, 0, 1);
        if (r >= 0)
                r = read_last_seq(b, &before);
        if (r < 0)
                return r;
        expect_signals(b, REPLAY_EVENTS);
        b->sub_last_seq = 0;
        r = pipeline_run(b, PIPE_PUBLISH, REPLAY_EVENTS, &usec);
        if (r >= 0)
                *ret_signal_rate = (REPLAY_EVENTS - 1) / ((b->sub_last_usec - b->sub_first_usec + 1) / 1e6);
        expect_signals(b, 0);
        if (r < 0)
                return r;

        after = before;
        start = bench_now_usec();
        while (after < b->sub_last_seq) {
                unsigned n = 0;
                int more = 0;

                r = fetch_page(b, after, &n, &after, &more);
                if (r < 0)
                        return r;
                total += n;
                if (!more)
                        break;
        }
        fetch_usec = bench_now_usec() - start;
        if (total != REPLAY_EVENTS)
                return bench_log_errno(-EIO, "FetchSince returned %u events after %" PRIu64 ", %d were published",
                                 total, before, REPLAY_EVENTS);
        *ret_fetch_rate = total / (fetch_usec / 1e6);
        return 0;
}

/* The baseline of the concurrent saves: bare commits one after the other. */
static int raw_commits(void *userdata, unsigned n, uint64_t *ret_usec) {
        Bench *b = userdata;
        uint64_t start = bench_now_usec();
        bool record = b->client.record;
        int r = 0;

        b->client.record = false;
        for (unsigned i = 0; i < n && r >= 0; i++)
                r = step_raw_commit(b);
        b->client.record = record;
        *ret_usec = bench_now_usec() - start;
        return r;
}

static int measure_saves(Bench *b, double *ret_raw_rate, double *ret_save_rate) {
        return bench_measure_saves(b->address, b->event, b->client.bus, raw_commits, b, SAVE_CALLS, SAVE_ROUNDS,
                                   ret_raw_rate, ret_save_rate);
}

/* Report */

static const BenchTable table = { .name = 20, .value = 12, .baseline = 18, .target = 8 };

static void print_latency(const char *name, double median, double p99, const char *baseline, double baseline_median,
                          double max_ratio, unsigned *misses) {
        bench_print_latency(&table, name, median, p99, baseline, baseline_median, max_ratio, misses);
}

static void print_rate(const char *name, double rate, const char *baseline, double baseline_rate,
                       double min_ratio, bool strict, unsigned *misses) {
        bench_print_rate(&table, name, rate, baseline, baseline_rate, min_ratio, strict, misses);
}

static void print_environment(const Bench *b, unsigned iterations, unsigned warmup) {
        struct statfs sfs;
        char load[64] = "?";
        FILE *f;

        if (statfs(b->tmpdir, &sfs) < 0)
                sfs.f_type = 0;
        f = fopen("/proc/loadavg", "re");
        if (f) {
                if (!fgets(load, sizeof load, f))
                        strcpy(load, "?");
                load[strcspn(load, "\n")] = 0;
                fclose(f);
        }
        printf("# outpostd: %s\n", bench_env_or("OUTPOSTD", "./outpostd"));
        printf("# directory: %s (file system magic 0x%lx), SQLite %s\n",
               b->tmpdir, (unsigned long) sfs.f_type, sqlite3_libversion());
        printf("# %u iterations per latency figure in %d rounds after %u warm-up; "
               "pipelined: %d connections x %d in flight, %d calls per kind; %ld CPUs; load %s\n",
               iterations, ROUNDS, warmup, PIPELINE_CONNECTIONS, PIPELINE_DEPTH,
               PIPELINE_CALLS * PIPELINE_ROUNDS, sysconf(_SC_NPROCESSORS_ONLN), load);
}

static int run(Bench *b) {
        static const unsigned fanout_sizes[] = { 1, 10, FANOUT_SUBSCRIBERS };
        double median[_FIG_MAX], p99[_FIG_MAX], pipe_rates[_PIPE_MAX] = {}, durable_base;
        double raw_rate = 0, save_rate = 0, signal_rate = 0, fetch_rate = 0;
        double bare_rates[ELEMENTSOF(fanout_sizes)] = {}, fanout_rates[ELEMENTSOF(fanout_sizes)] = {};
        unsigned iterations, warmup, misses = 0;
        uint64_t iteration_usec, start = bench_now_usec();
        int r;

        r = bench_env_unsigned("BENCH_ITERATIONS", DEFAULT_ITERATIONS, ROUNDS, &iterations);
        if (r >= 0)
                r = bench_env_unsigned("BENCH_WARMUP", DEFAULT_WARMUP, 1, &warmup);
        if (r < 0)
                return r;

        r = bench_make_dir("outpost-bench", &b->tmpdir);
        if (r >= 0)
                r = bench_start_bus(b->tmpdir, "system", NULL, &b->bus_pid, &b->address);
        if (r >= 0)
                r = bench_connect(b->address, false, &b->client.bus);
        if (r >= 0)
                r = start_daemon(b);
        if (r >= 0)
                r = create_user(b);
        if (r >= 0)
                r = open_raw(b);
        if (r >= 0)
                r = warm_up(b, warmup, &iteration_usec);
        if (r < 0)
                return r;

        iterations = bench_fit_iterations(start, iteration_usec, iterations, LATENCY_BUDGET_USEC, MIN_ITERATIONS);
        print_environment(b, iterations, warmup);
        fflush(stdout);

        r = measure_latency(b, iterations);
        if (r >= 0)
                r = measure_pipelined(b, pipe_rates);
        /* Before any subscriber exists: their signals would load the bus. */
        if (r >= 0)
                r = measure_saves(b, &raw_rate, &save_rate);
        if (r >= 0)
                r = measure_replay(b, &signal_rate, &fetch_rate);
        for (size_t i = 0; i < ELEMENTSOF(fanout_sizes) && r >= 0; i++)
                r = measure_fanout(b, fanout_sizes[i], &bare_rates[i], &fanout_rates[i]);
        if (r < 0)
                return r;

        bench_client_stats(&b->client, median, p99);
        bench_print_header(&table, "median_us", "p99_us");
        durable_base = bench_print_baselines(&table, median, p99, &misses);
        print_latency("get-user", median[FIG_GET_USER], p99[FIG_GET_USER], "ping", median[FIG_PING], 1.3, &misses);
        print_latency("save-user", median[FIG_SAVE_USER], p99[FIG_SAVE_USER], "ping+raw-commit", durable_base, 1.3, &misses);
        print_latency("go-online", median[FIG_GO_ONLINE], p99[FIG_GO_ONLINE], "ping+raw-commit", durable_base, 1.3, &misses);
        print_latency("go-offline", median[FIG_GO_OFFLINE], p99[FIG_GO_OFFLINE], "ping+raw-commit", durable_base, 1.3, &misses);
        print_latency("publish", median[FIG_PUBLISH], p99[FIG_PUBLISH], "ping+raw-commit", durable_base, 1.3, &misses);

        /* Throughput rows: calls per second in the first column. */
        print_rate("pipelined-ping", pipe_rates[PIPE_PING], NULL, 0, 0, false, &misses);
        print_rate("pipelined-get-user", pipe_rates[PIPE_GET_USER], "pipelined-ping", pipe_rates[PIPE_PING], 0.7, false,
                   &misses);
        /* No target: each of these waits for an fsync; the ratio says how
         * far group commit brings them towards the bus's own rate. */
        print_rate("pipelined-save-user", pipe_rates[PIPE_SAVE_USER], "pipelined-ping", pipe_rates[PIPE_PING], -1,
                   false, &misses);
        print_rate("pipelined-go-on-off", pipe_rates[PIPE_GO_ONLINE], "pipelined-ping", pipe_rates[PIPE_PING], -1,
                   false, &misses);
        print_rate("pipelined-publish", pipe_rates[PIPE_PUBLISH], "pipelined-ping", pipe_rates[PIPE_PING], -1,
                   false, &misses);
        print_rate("raw-commit-rate", raw_rate, NULL, 0, 0, false, &misses);
        print_rate("save-user-8-clients", save_rate, "raw-commit-rate", raw_rate, 1.0, true, &misses);
        print_rate("event-signals", signal_rate, NULL, 0, 0, false, &misses);
        print_rate("fetch-since-replay", fetch_rate, "event-signals", signal_rate, 1.0, false, &misses);
        for (size_t i = 0; i < ELEMENTSOF(fanout_sizes); i++) {
                char bare[32], publish[32];

                snprintf(bare, sizeof bare, "fanout-bare-%u", fanout_sizes[i]);
                snprintf(publish, sizeof publish, "fanout-publish-%u", fanout_sizes[i]);
                print_rate(bare, bare_rates[i], NULL, 0, 0, false, &misses);
                /* The issue's target is for 10 and 100 subscribers. */
                print_rate(publish, fanout_rates[i], bare, bare_rates[i], fanout_sizes[i] >= 10 ? 0.5 : -1, false,
                           &misses);
        }

        printf("# %u of 10 targets missed; run took %.1f s\n", misses, (bench_now_usec() - start) / 1e6);
        return 0;
}

int main(int argc, char **argv) {
        _cleanup_(bench_done) Bench b = {};
        int r;

        r = bench_no_arguments(argc, argv,
                               "Benchmarks outpostd on a private bus. Environment: OUTPOSTD (default\n"
                               "./outpostd), BENCH_DIR (default /var/tmp), DBUS_DAEMON, BENCH_ITERATIONS,\n"
                               "BENCH_WARMUP, BENCH_KEEP.\n");
        if (r >= 0)
                return r;

        bench_init("bench-daemon");

        r = run(&b);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
