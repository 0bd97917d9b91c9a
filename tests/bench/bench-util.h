/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the three benchmarks share: messages, the clock, child processes,
 * private system-like buses, samples and the rows of the tables. Plain
 * libc and sd-bus, so that no benchmark needs GLib for it. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

#define BENCH_OUTPOST_NAME "org.outpost.Outpost1"

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Set by SIGINT or SIGTERM once bench_catch_signals() ran. */
extern volatile sig_atomic_t bench_interrupted;

/* The prefix of every message ("bench-daemon"), and the signals: SIGPIPE
 * ignored (a daemon that dies must show as a failed call, not kill us),
 * SIGINT and SIGTERM without SA_RESTART, so Ctrl-C ends a run through its
 * clean-up, which stops the children and removes the directory. */
void bench_init(const char *program);

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
