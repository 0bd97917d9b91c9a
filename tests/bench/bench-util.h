/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the benchmarks share: messages, the clock, child processes,
 * private system-like buses, the calls they time, samples and the rows of
 * the tables. Plain libc and sd-bus, so that no benchmark needs GLib for
 * it. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#define BENCH_OUTPOST_NAME "org.outpost.Outpost1"

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Set by SIGINT or SIGTERM once bench_catch_signals() ran. */
extern volatile sig_atomic_t bench_interrupted;

/* The prefix of every message ("bench-daemon"), and the signals: SIGPIPE
 * ignored (a daemon that dies must show as a failed call, not kill us),
 * SIGINT and SIGTERM without SA_RESTART, so Ctrl-C ends a run through its
 * clean-up, which stops the children and removes the directory. */
void bench_init(const char *program);

/* For a benchmark that takes no arguments: -1 when there are none (run),
 * otherwise the exit status after printing "Usage: PROGRAM" and USAGE on
 * stderr (0 for --help or -h, 2 for anything else). */
int bench_no_arguments(int argc, char **argv, const char *usage);

/* "program: FMT: strerror(-R)" on stderr; returns R, or -EIO when R is not
 * negative, so that a caller can return it as the error. */
int bench_log_errno(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

uint64_t bench_now_nsec(void);
uint64_t bench_now_usec(void);

const char *bench_env_or(const char *name, const char *fallback);

/* A directory PREFIX-XXXXXX in $BENCH_DIR (default /var/tmp), and its
 * removal unless $BENCH_KEEP is set. */
int bench_make_dir(const char *prefix, char **ret);
void bench_remove_dir(const char *dir);

/* DIR/NAME.log for appending, and its contents on stderr. */
int bench_open_log(const char *dir, const char *name, int *ret_fd);
void bench_show_log(const char *dir, const char *name);

/* fork() for a child that dies with the benchmark however that ends (a
 * crash, a kill -9), so nothing is left running on the machine. Returns
 * the pid in the parent, 0 in the child, or a negative errno. */
pid_t bench_fork(void);
/* ARGV with stdout to OUT_FD (LOG_FD when negative) and stderr to LOG_FD. */
int bench_spawn(char *const argv[], int out_fd, int log_fd, pid_t *ret_pid);
/* SIGTERM, so outpostd closes its store as in production; SIGKILL when it
 * has not ended after 5 s. Returns the wait status (0 for no process) and
 * sets *PID to 0. */
int bench_stop(pid_t *pid, const char *what);

/* A private dbus-daemon configured like the system bus by the tests'
 * tests/common/system-bus-conf.sh ($SYSTEM_BUS_CONF; deny by default, so
 * every message is checked against a policy), except that whoever runs
 * the benchmark may own the name. EXTRA goes into <busconfig> as it is
 * (more listeners, limits) and may be NULL. Its files are
 * DIR/NAME-bus.conf, DIR/NAME-bench.conf (what it adds), DIR/NAME-bus.socket
 * and DIR/dbus-NAME.log; *RET_ADDRESS is the unix one. */
int bench_start_bus(const char *dir, const char *name, const char *extra, pid_t *ret_pid, char **ret_address);

/* A client connection, once Hello is answered: dbus-daemon drops
 * connections that are still authenticating past a limit. */
int bench_connect(const char *address, bool anonymous, sd_bus **ret);
/* Until BENCH_OUTPOST_NAME has an owner on BUS: outpostd requests it last,
 * once everything is usable (DESIGN.md §3, Registry). Fails early when
 * *PID (PID may be NULL) exits first, and sets it to 0 then. */
int bench_wait_for_name(sd_bus *bus, pid_t *pid, uint64_t timeout_usec);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int bench_free_tcp_port(unsigned *ret);
/* Whether something accepts connections on 127.0.0.1:PORT. */
bool bench_tcp_port_open(unsigned port);
/* bench_stop() of outpostd, whose log in DIR is shown when it did not
 * exit cleanly (before the directory goes away). */
void bench_stop_daemon(pid_t *pid, const char *dir);
/* outpostd on BUS_ADDRESS with its store in DIR/state and no config file,
 * logging to DIR/outpostd.log. */
int bench_start_daemon(const char *dir, const char *bus_address, pid_t *ret_pid);

/* Samples in nanoseconds. */
typedef struct BenchSamples {
        uint64_t *nsec;
        size_t n, allocated;
} BenchSamples;

int bench_samples_add(BenchSamples *s, uint64_t nsec);
/* The median and the nearest-rank quantile Q (0 < Q <= 1), in ns. */
void bench_samples_stats(BenchSamples *s, double q, double *ret_median, double *ret_quantile);
void bench_samples_free(BenchSamples *s);
/* The median of N values; sorts them. */
double bench_median(double *v, size_t n);

/* The widths of a table's columns: each benchmark keeps its own. */
typedef struct BenchTable {
        int name, value, baseline, target;
} BenchTable;

void bench_print_header(const BenchTable *t, const char *value, const char *spread);
/* One figure: RATIO when > 0, PASS/MISS when PASS >= 0, "-" otherwise. */
void bench_print_row(const BenchTable *t, const char *name, const char *value, const char *spread,
                     const char *baseline, double ratio, const char *target, int pass);

/* $NAME as a number from MIN to 10000000, FALLBACK when unset. */
int bench_env_unsigned(const char *name, unsigned fallback, unsigned min, unsigned *ret);

/* Logs "WHAT failed: the error's message" and returns R (see bench_log_errno). */
int bench_call_failed(const char *what, int r, const sd_bus_error *error);

/* A method call of BENCH_OUTPOST_NAME on BUS, timed from building the
 * message to having the reply (what a client of the service waits for),
 * and recorded in SAMPLES unless it is NULL (a warm-up). */
#define BENCH_TIMED_CALL(bus, samples, what, reply, path, iface, member, ...)                          \
        ({                                                                                              \
                sd_bus_error _error = SD_BUS_ERROR_NULL;                                                \
                BenchSamples *_samples = (samples);                                                     \
                uint64_t _start = bench_now_nsec();                                                     \
                int _r = sd_bus_call_method((bus), BENCH_OUTPOST_NAME, path, iface, member,             \
                                            &_error, reply, __VA_ARGS__);                               \
                uint64_t _end = bench_now_nsec();                                                       \
                if (_r < 0)                                                                             \
                        bench_call_failed(what, _r, &_error);                                           \
                else if (_samples)                                                                      \
                        _r = bench_samples_add(_samples, _end - _start);                                \
                sd_bus_error_free(&_error);                                                             \
                _r;                                                                                     \
        })

/* Outpost's objects and interfaces, as the benchmarks call them. */
#define ROOT_PATH       "/org/outpost/Outpost1"
#define USERS_PATH      ROOT_PATH "/users"
#define PRESENCE_PATH   ROOT_PATH "/presence"
#define EVENTS_PATH     ROOT_PATH "/events"
#define USERS_IFACE     "org.outpost.Outpost1.Users"
#define PRESENCE_IFACE  "org.outpost.Outpost1.Presence"
#define EVENTS_IFACE    "org.outpost.Outpost1.Events"
#define PEER_IFACE      "org.freedesktop.DBus.Peer"

/* Users.CreateUser of NAME (with a display name and an email, like a real
 * user); its id and tag in *RET_ID and *RET_TAG. */
int bench_create_user(sd_bus *bus, const char *name, char **ret_id, char **ret_tag);
/* Users.SaveUser of ID changing its display-name to NAME, passing *TAG and
 * replacing it with the one the save returned; timed into SAMPLES (may be
 * NULL) as BENCH_TIMED_CALL does. */
int bench_save_user(sd_bus *bus, BenchSamples *samples, const char *id, char **tag, const char *name);

/* Latency figures are taken in rounds that visit every step in turn, so a
 * burst of load from something else on the machine lands on all figures
 * alike instead of skewing the one that happened to run then. */
typedef struct BenchStep {
        const char *name;
        int (*run)(void *userdata);
} BenchStep;

/* The latency figures the benchmarks share. */
typedef enum BenchFigure {
        FIG_PING,
        FIG_GET_USER,
        FIG_RAW_COMMIT,
        FIG_SAVE_USER,
        FIG_GO_ONLINE,
        FIG_GO_OFFLINE,
        FIG_PUBLISH,
        _FIG_MAX,
} BenchFigure;

/* The client that takes them, on its own connection, with one user. A
 * benchmark puts it first in its own state, so that the steps below take
 * that state as their USERDATA. */
typedef struct BenchClient {
        sd_bus *bus;
        char *user_id;
        char *tag;                      /* the user's current tag, for SaveUser */
        unsigned counter;               /* makes every SaveUser and Publish different */
        bool record;                    /* false during warm-up */
        BenchSamples samples[_FIG_MAX];
} BenchClient;

/* A sample of FIGURE, unless warming up. */
int bench_client_record(BenchClient *c, BenchFigure figure, uint64_t nsec);
/* The median and p99 of every figure, in µs. */
void bench_client_stats(BenchClient *c, double median[_FIG_MAX], double p99[_FIG_MAX]);
void bench_client_done(BenchClient *c);

/* Peer.Ping to outpostd: the bus and sd-bus, no Outpost code. */
int bench_step_ping(void *userdata);
/* Users.GetUser of the client's user. */
int bench_step_get_user(void *userdata);
/* Users.SaveUser of the client's user, a new display-name each time. */
int bench_step_save_user(void *userdata);
/* Presence.GoOnline(user, 0), then GoOffline(user): two changes. */
int bench_step_presence(void *userdata);
/* Events.Publish("bench/x", {'n': <i>}). */
int bench_step_publish(void *userdata);

/* Every step N times, one step after the other. */
int bench_run_steps(const BenchStep *steps, size_t n_steps, unsigned n, void *userdata);
/* ITERATIONS of every step, in ROUNDS rounds. */
int bench_run_rounds(const BenchStep *steps, size_t n_steps, unsigned iterations, unsigned rounds, void *userdata);
/* How many iterations of ITERATION_USEC each still fit in BUDGET_USEC
 * from START_USEC on (at least MIN_ITERATIONS, at most ITERATIONS); says
 * so in a "#" line when that is fewer. A slow disk makes every durable
 * figure slow; fewer samples then keep the run short, and the medians are
 * still sound. */
unsigned bench_fit_iterations(uint64_t start_usec, uint64_t iteration_usec, unsigned iterations,
                              uint64_t budget_usec, unsigned min_iterations);

/* Durable SaveUser from BENCH_SAVE_CLIENTS clients at once, one call in
 * flight each (a save needs the tag the previous one returned), each on
 * its own user, all on one event loop. */
#define BENCH_SAVE_CLIENTS 8

typedef struct BenchSavers BenchSavers;

typedef struct BenchSaver {
        BenchSavers *savers;
        sd_bus *bus;
        char *id;
        char *tag;                      /* as the last acknowledged save returned it */
        unsigned n;
} BenchSaver;

struct BenchSavers {
        sd_event *event;
        sd_bus *control;                /* creates the users and checks them afterwards */
        BenchSaver saver[BENCH_SAVE_CLIENTS];
        unsigned total, issued, completed;
        int error;
};

/* A baseline run of N bare commits, taking *RET_USEC. */
typedef int (*BenchCommits)(void *userdata, unsigned n, uint64_t *ret_usec);

/* ROUNDS rounds, each of CALLS bare commits (COMMITS) and then CALLS
 * concurrent saves (after a warm-up of CALLS / 4 saves), in commits and
 * saves per second. Afterwards every user's tag must be the one its last
 * acknowledged save returned, or it fails. */
int bench_measure_saves(const char *address, sd_event *event, sd_bus *control, BenchCommits commits,
                        void *userdata, unsigned calls, unsigned rounds, double *ret_commit_rate,
                        double *ret_save_rate);

/* A latency row: MEDIAN and P99 (none when negative) in µs; against
 * BASELINE (may be NULL), a ratio of at most MAX_RATIO when it is > 0.
 * A missed target counts in *MISSES. */
void bench_print_latency(const BenchTable *t, const char *name, double median, double p99, const char *baseline,
                         double baseline_median, double max_ratio, unsigned *misses);
/* The rows of the two baselines, ping and raw-commit, and of their sum
 * (what a durable call cannot go below), which it returns. */
double bench_print_baselines(const BenchTable *t, const double median[_FIG_MAX],
                             const double p99[_FIG_MAX], unsigned *misses);
/* A throughput row: RATE per second in the first column; against
 * BASELINE, a ratio of at least MIN_RATIO (above it, when STRICT), or
 * just the ratio when MIN_RATIO is negative. */
void bench_print_rate(const BenchTable *t, const char *name, double rate, const char *baseline, double baseline_rate,
                      double min_ratio, bool strict, unsigned *misses);
