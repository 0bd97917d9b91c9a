/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-postgresql: how much outpostd adds, with its store in PostgreSQL,
 * to what D-Bus and one PostgreSQL commit cost anyway.
 *
 * One run makes a private PostgreSQL cluster (initdb, then the server as an
 * unprivileged account, its unix socket in a temporary directory, fsync
 * on), starts a private system-like dbus-daemon and the real outpostd with
 * [Store] Backend=postgresql on them, and times calls against two
 * baselines measured in the same run: a Peer.Ping round trip and one bare
 * INSERT committed through libpq on the same server. It prints one line per
 * figure, as bench-daemon does. A MISS is a finding, not a failure: the exit
 * status is non-zero only when the benchmark itself could not run; without
 * PostgreSQL's binaries it says so and exits 0. See tests/bench/README.md. */
#include "config.h"

#include <errno.h>
#include <glob.h>
#include <grp.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-util.h"

#define DEFAULT_ITERATIONS      2000
#define DEFAULT_WARMUP          200
#define ROUNDS                  10      /* see BenchStep */
/* The latency part gets this long, warm-up included; past it the number of
 * iterations shrinks (a slow disk), so a whole run stays near a minute at
 * most. */
#define LATENCY_BUDGET_USEC     (40ULL * 1000000ULL)
#define MIN_ITERATIONS          200
#define SAVE_CALLS              3000    /* per round, over all clients */
#define SAVE_ROUNDS             3

#define SERVER_TIMEOUT_USEC     (60ULL * 1000000ULL)
#define STARTUP_TIMEOUT_USEC    (30ULL * 1000000ULL)
#define RAW_ROW_BYTES           280     /* + topic and time: ~300 bytes, like a saved user or an event */

#define DAEMON_DATABASE         "outpost"
#define RAW_DATABASE            "bench"

typedef struct Bench {
        BenchClient client;             /* first: the shared steps take a Bench as their client */
        char *tmpdir;
        char *bindir;                   /* PostgreSQL's programs */
        char *server;                   /* libpq's host and port of the private server, no dbname */
        bool as_nobody;                 /* root runs PostgreSQL as nobody: it refuses to run as root */
        uid_t uid;
        gid_t gid;
        pid_t postgres_pid;
        pid_t bus_pid;
        pid_t daemon_pid;
        char *address;

        sd_event *event;

        PGconn *raw;                    /* the bare commits, in a database of their own */
        uint64_t raw_seq;
        char raw_row[RAW_ROW_BYTES];
} Bench;

static void bench_done(Bench *b) {
        b->event = sd_event_unref(b->event);
        bench_client_done(&b->client);
        bench_stop_daemon(&b->daemon_pid, b->tmpdir);
        (void) bench_stop(&b->bus_pid, "dbus-daemon");
        if (b->raw)
                PQfinish(b->raw);
        /* A fast shutdown: what the run wrote is not needed afterwards. */
        if (b->postgres_pid > 0)
                kill(b->postgres_pid, SIGINT);
        (void) bench_stop(&b->postgres_pid, "postgres");

        bench_remove_dir(b->tmpdir);
        free(b->tmpdir);
        free(b->bindir);
        free(b->server);
        free(b->address);
}

/* The private PostgreSQL server */

static bool has_programs(const char *bindir) {
        static const char *const programs[] = { "initdb", "postgres" };

        for (size_t i = 0; i < ELEMENTSOF(programs); i++) {
                char path[4096];

                snprintf(path, sizeof path, "%s/%s", bindir, programs[i]);
                if (access(path, X_OK) < 0)
                        return false;
        }
        return true;
}

/* $OUTPOST_TEST_PG_BINDIR as the tests take it, or Debian's
 * /usr/lib/postgresql/VERSION/bin (the last one that has the programs). */
static int find_bindir(char **ret) {
        const char *dir = getenv("OUTPOST_TEST_PG_BINDIR");
        glob_t g = {};

        if (dir && *dir) {
                *ret = has_programs(dir) ? strdup(dir) : NULL;
                return 0;
        }
        *ret = NULL;
        if (glob("/usr/lib/postgresql/*/bin", GLOB_ONLYDIR, NULL, &g) == 0)
                for (size_t i = 0; i < g.gl_pathc; i++)
                        if (has_programs(g.gl_pathv[i])) {
                                free(*ret);
                                *ret = strdup(g.gl_pathv[i]);
                        }
        globfree(&g);
        return 0;
}

/* Who runs the server: us, or nobody when we are root. The directory is
 * then nobody's, for initdb to make the data directory and the server its
 * socket in it. */
static int choose_account(Bench *b) {
        const struct passwd *pw;

        if (geteuid() != 0)
                return 0;
        pw = getpwnam("nobody");
        if (!pw)
                return bench_log_errno(-ENOENT, "PostgreSQL refuses to run as root, and there is no user nobody");
        b->as_nobody = true;
        b->uid = pw->pw_uid;
        b->gid = pw->pw_gid;
        if (chown(b->tmpdir, b->uid, b->gid) < 0)
                return bench_log_errno(-errno, "Cannot give %s to nobody", b->tmpdir);
        return 0;
}

/* ARGV as the server's account, its output in DIR/LOG.log. Not through
 * pg_ctl: the server is our own child then, so that it dies with the
 * benchmark (bench_fork()), also on a crash or a kill -9. */
static int spawn_postgresql(Bench *b, char *const argv[], const char *log, pid_t *ret_pid) {
        pid_t parent = getpid(), pid;
        int log_fd, r;

        r = bench_open_log(b->tmpdir, log, &log_fd);
        if (r < 0)
                return r;
        if (b->as_nobody && fchown(log_fd, b->uid, b->gid) < 0) {
                close(log_fd);
                return bench_log_errno(-errno, "Cannot give %s.log to nobody", log);
        }
        pid = bench_fork();
        if (pid < 0) {
                close(log_fd);
                return bench_log_errno(pid, "fork");
        }
        if (pid == 0) {
                if (b->as_nobody &&
                    (setgroups(0, NULL) < 0 || setgid(b->gid) < 0 || setuid(b->uid) < 0))
                        _exit(127);
                /* A change of user clears the parent-death signal. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                        _exit(127);
                if (chdir(b->tmpdir) < 0 || dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0)
                        _exit(127);
                execv(argv[0], argv);
                fprintf(stderr, "bench-postgresql: cannot run %s: %m\n", argv[0]);
                _exit(127);
        }
        close(log_fd);
        *ret_pid = pid;
        return 0;
}

static int run_initdb(Bench *b) {
        char initdb[4096], data[4096];
        int status;
        pid_t pid;
        int r;

        snprintf(initdb, sizeof initdb, "%s/initdb", b->bindir);
        snprintf(data, sizeof data, "%s/data", b->tmpdir);
        /* --no-sync: only the cluster's making is not synced; the server
         * keeps fsync on. */
        char *argv[] = { initdb, (char *) "-D", data, (char *) "-A", (char *) "trust", (char *) "-U",
                         (char *) "outpost", (char *) "--no-sync", NULL };
        r = spawn_postgresql(b, argv, "initdb", &pid);
        if (r < 0)
                return r;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR || bench_interrupted)
                        return bench_log_errno(-errno, "Waiting for initdb");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                bench_show_log(b->tmpdir, "initdb");
                return bench_log_errno(-EIO, "initdb failed (wait status 0x%x)", status);
        }
        return 0;
}

static PGconn *connect_database(Bench *b, const char *database) {
        char conninfo[4096];

        snprintf(conninfo, sizeof conninfo, "%s dbname=%s", b->server, database);
        return PQconnectdb(conninfo);
}

/* Until the server accepts connections, or it exits. */
static int wait_for_server(Bench *b) {
        uint64_t deadline = bench_now_usec() + SERVER_TIMEOUT_USEC;
        char conninfo[4096];

        snprintf(conninfo, sizeof conninfo, "%s dbname=postgres", b->server);
        for (;;) {
                int status;

                if (PQping(conninfo) == PQPING_OK)
                        return 0;
                if (waitpid(b->postgres_pid, &status, WNOHANG) == b->postgres_pid) {
                        b->postgres_pid = 0;
                        bench_show_log(b->tmpdir, "postgresql");
                        return bench_log_errno(-ECHILD, "The PostgreSQL server exited (wait status 0x%x)", status);
                }
                if (bench_interrupted)
                        return bench_log_errno(-EINTR, "Interrupted");
                if (bench_now_usec() > deadline) {
                        bench_show_log(b->tmpdir, "postgresql");
                        return bench_log_errno(-ETIMEDOUT, "The PostgreSQL server did not start within 60 s");
                }
                usleep(20000);
        }
}

static int start_postgresql(Bench *b) {
        char postgres[4096], data[4096], port[16], socket_dir[4096];
        unsigned p;
        int r;

        r = bench_free_tcp_port(&p);
        if (r < 0)
                return r;
        snprintf(postgres, sizeof postgres, "%s/postgres", b->bindir);
        snprintf(data, sizeof data, "%s/data", b->tmpdir);
        snprintf(port, sizeof port, "%u", p);
        snprintf(socket_dir, sizeof socket_dir, "%s", b->tmpdir);
        if (asprintf(&b->server, "host=%s port=%u user=outpost", b->tmpdir, p) < 0)
                return -ENOMEM;

        /* No TCP, only the socket in our directory; fsync and
         * synchronous_commit stay on (the defaults): a durable commit is
         * what is being measured. */
        char *argv[] = { postgres, (char *) "-D", data, (char *) "-k", socket_dir, (char *) "-p", port,
                         (char *) "-c", (char *) "listen_addresses=", (char *) "-c", (char *) "fsync=on",
                         (char *) "-c", (char *) "synchronous_commit=on", NULL };
        r = spawn_postgresql(b, argv, "postgresql", &b->postgres_pid);
        if (r < 0)
                return r;
        return wait_for_server(b);
}

static int exec_command(PGconn *conn, const char *sql) {
        PGresult *res = PQexec(conn, sql);
        int r = 0;

        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                r = bench_log_errno(-EIO, "%s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
        return r;
}

/* The daemon's database, and one of the benchmark's own for the bare
 * commits, so that outpostd finds only its own tables. */
static int create_databases(Bench *b) {
        PGconn *admin = connect_database(b, "postgres");
        int r;

        if (PQstatus(admin) != CONNECTION_OK)
                r = bench_log_errno(-ECONNREFUSED, "Cannot connect to the PostgreSQL server: %s",
                                    PQerrorMessage(admin));
        else
                r = exec_command(admin, "CREATE DATABASE " DAEMON_DATABASE);
        if (r >= 0)
                r = exec_command(admin, "CREATE DATABASE " RAW_DATABASE);
        PQfinish(admin);
        return r;
}

/* The bare commit baseline: one INSERT of a row shaped like the store's
 * outpost_events rows (seq given by the writer, as outpostd gives it),
 * committed on its own (autocommit), one round trip, on the same server and
 * so the same WAL and fsync as the daemon's commits. */
static int open_raw(Bench *b) {
        PGresult *res;
        int r;

        b->raw = connect_database(b, RAW_DATABASE);
        if (PQstatus(b->raw) != CONNECTION_OK)
                return bench_log_errno(-ECONNREFUSED, "Cannot connect to the PostgreSQL server: %s",
                                       PQerrorMessage(b->raw));
        r = exec_command(b->raw, "CREATE TABLE raw (seq bigint PRIMARY KEY, topic text NOT NULL, time bigint NOT NULL, "
                                 "data bytea NOT NULL)");
        if (r < 0)
                return r;
        res = PQprepare(b->raw, "raw_insert", "INSERT INTO raw (seq, topic, time, data) VALUES ($1, $2, $3, $4)", 4,
                        NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                r = bench_log_errno(-EIO, "Cannot prepare the bare INSERT: %s", PQresultErrorMessage(res));
        PQclear(res);

        /* Not compressible, not all zeroes: like real serialized data. */
        for (size_t i = 0; i < sizeof b->raw_row; i++)
                b->raw_row[i] = (char) (i * 131 + 17);
        return r;
}

/* The daemon */

static int write_config(Bench *b, char **ret_path) {
        FILE *f;

        if (asprintf(ret_path, "%s/outpostd.conf", b->tmpdir) < 0)
                return -ENOMEM;
        f = fopen(*ret_path, "wxe");
        if (!f)
                return bench_log_errno(-errno, "Cannot create %s", *ret_path);
        fprintf(f, "[Store]\nBackend=postgresql\nConnection=%s dbname=" DAEMON_DATABASE "\n", b->server);
        if (fclose(f) != 0)
                return bench_log_errno(-errno, "Cannot write %s", *ret_path);
        return 0;
}

static int start_daemon(Bench *b) {
        char *config = NULL, *config_arg = NULL, *address = NULL, *state = NULL;
        int log_fd = -1, r;

        r = write_config(b, &config);
        if (r >= 0 && (asprintf(&config_arg, "--config=%s", config) < 0 ||
                       asprintf(&address, "--address=%s", b->address) < 0 ||
                       asprintf(&state, "--state-dir=%s/state", b->tmpdir) < 0))
                r = -ENOMEM;
        if (r >= 0)
                r = bench_open_log(b->tmpdir, "outpostd", &log_fd);
        if (r >= 0) {
                char *argv[] = { (char *) bench_env_or("OUTPOSTD", "./outpostd"), address, state, config_arg, NULL };

                r = bench_spawn(argv, log_fd, log_fd, &b->daemon_pid);
                close(log_fd);
                if (r < 0)
                        bench_log_errno(r, "Cannot start %s", argv[0]);
                else
                        r = bench_wait_for_name(b->client.bus, &b->daemon_pid, STARTUP_TIMEOUT_USEC);
                if (r < 0) {
                        bench_show_log(b->tmpdir, "outpostd");
                        bench_log_errno(r, "%s did not start", argv[0]);
                }
        }
        free(config);
        free(config_arg);
        free(address);
        free(state);
        return r;
}

/* The figures */

static int raw_commit(Bench *b) {
        char seq[32], time[32];
        const char *values[] = { seq, "bench/raw", time, b->raw_row };
        const int lengths[] = { 0, 0, 0, sizeof b->raw_row };
        const int formats[] = { 0, 0, 0, 1 };
        PGresult *res;
        int r = 0;

        snprintf(seq, sizeof seq, "%" PRIu64, ++b->raw_seq);
        snprintf(time, sizeof time, "%" PRIu64, bench_now_usec());
        res = PQexecPrepared(b->raw, "raw_insert", 4, values, lengths, formats, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                r = bench_log_errno(-EIO, "Bare commit failed: %s", PQresultErrorMessage(res));
        PQclear(res);
        return r;
}

static int step_raw_commit(void *userdata) {
        Bench *b = userdata;
        uint64_t start = bench_now_nsec();
        int r = raw_commit(b);

        if (r < 0 || !b->client.record)
                return r;
        return bench_samples_add(&b->client.samples[FIG_RAW_COMMIT], bench_now_nsec() - start);
}

static const BenchStep steps[] = {
        { "ping",       bench_step_ping },
        { "raw-commit", step_raw_commit },
        { "save-user",  bench_step_save_user },
        { "presence",   bench_step_presence },
        { "publish",    bench_step_publish },
};

/* The baseline of the concurrent saves: bare commits one after the other. */
static int raw_commits(void *userdata, unsigned n, uint64_t *ret_usec) {
        Bench *b = userdata;
        uint64_t start = bench_now_usec();
        int r = 0;

        for (unsigned i = 0; i < n && r >= 0; i++)
                r = raw_commit(b);
        *ret_usec = bench_now_usec() - start;
        return r;
}

/* Report */

static const BenchTable table = { .name = 20, .value = 12, .baseline = 18, .target = 8 };

static void show_setting(Bench *b, const char *name, char *buf, size_t size) {
        char sql[128];
        PGresult *res;

        snprintf(sql, sizeof sql, "SHOW %s", name);
        res = PQexec(b->raw, sql);
        snprintf(buf, size, "%s", PQresultStatus(res) == PGRES_TUPLES_OK ? PQgetvalue(res, 0, 0) : "?");
        PQclear(res);
}

static void print_environment(Bench *b, unsigned iterations, unsigned warmup) {
        char fsync[32], synchronous_commit[32];
        struct statfs sfs;

        if (statfs(b->tmpdir, &sfs) < 0)
                sfs.f_type = 0;
        show_setting(b, "fsync", fsync, sizeof fsync);
        show_setting(b, "synchronous_commit", synchronous_commit, sizeof synchronous_commit);
        printf("# outpostd: %s\n", bench_env_or("OUTPOSTD", "./outpostd"));
        printf("# PostgreSQL %d (%s), cluster in %s (file system magic 0x%lx), fsync=%s, synchronous_commit=%s\n",
               PQserverVersion(b->raw), b->bindir, b->tmpdir, (unsigned long) sfs.f_type, fsync, synchronous_commit);
        printf("# %u iterations per latency figure in %d rounds after %u warm-up; %d clients x %d saves in %d rounds; "
               "%ld CPUs\n",
               iterations, ROUNDS, warmup, BENCH_SAVE_CLIENTS, SAVE_CALLS, SAVE_ROUNDS, sysconf(_SC_NPROCESSORS_ONLN));
}

static void print_table(Bench *b, double raw_rate, double save_rate, unsigned *misses) {
        static const struct {
                const char *name;
                BenchFigure figure;
                double max_ratio;       /* against ping+raw-commit; 0: reported */
        } durable[] = {
                { "save-user",  FIG_SAVE_USER,  1.3 },
                { "go-online",  FIG_GO_ONLINE,  0 },
                { "go-offline", FIG_GO_OFFLINE, 0 },
                { "publish",    FIG_PUBLISH,    0 },
        };
        double median[_FIG_MAX], p99[_FIG_MAX], durable_base;

        bench_client_stats(&b->client, median, p99);
        bench_print_header(&table, "median_us", "p99_us");
        durable_base = bench_print_baselines(&table, median, p99, misses);
        for (size_t i = 0; i < ELEMENTSOF(durable); i++) {
                BenchFigure f = durable[i].figure;

                bench_print_latency(&table, durable[i].name, median[f], p99[f], "ping+raw-commit", durable_base,
                                    durable[i].max_ratio, misses);
        }
        bench_print_rate(&table, "raw-commit-rate", raw_rate, NULL, 0, 0, false, misses);
        bench_print_rate(&table, "save-user-8-clients", save_rate, "raw-commit-rate", raw_rate, 1.0, true, misses);
}

static int setup(Bench *b) {
        int r;

        r = bench_make_dir("outpost-bench-pg", &b->tmpdir);
        if (r >= 0)
                r = choose_account(b);
        if (r >= 0)
                r = run_initdb(b);
        if (r >= 0)
                r = start_postgresql(b);
        if (r >= 0)
                r = create_databases(b);
        if (r >= 0)
                r = open_raw(b);
        if (r >= 0)
                r = bench_start_bus(b->tmpdir, "system", NULL, &b->bus_pid, &b->address);
        if (r >= 0)
                r = bench_connect(b->address, false, &b->client.bus);
        if (r >= 0)
                r = start_daemon(b);
        if (r >= 0)
                r = bench_create_user(b->client.bus, "bench", &b->client.user_id, &b->client.tag);
        if (r >= 0)
                r = sd_event_new(&b->event) < 0 ? bench_log_errno(-ENOMEM, "Cannot create an event loop") : 0;
        return r;
}

static int run(Bench *b) {
        unsigned iterations, warmup, misses = 0;
        uint64_t start = bench_now_usec(), warmup_start, iteration_usec;
        double raw_rate = 0, save_rate = 0;
        int r;

        r = bench_env_unsigned("BENCH_ITERATIONS", DEFAULT_ITERATIONS, ROUNDS, &iterations);
        if (r >= 0)
                r = bench_env_unsigned("BENCH_WARMUP", DEFAULT_WARMUP, 1, &warmup);
        if (r >= 0)
                r = find_bindir(&b->bindir);
        if (r < 0)
                return r;
        if (!b->bindir) {
                printf("# bench-postgresql: SKIP: PostgreSQL's initdb and postgres not found in "
                       "/usr/lib/postgresql/*/bin or $OUTPOST_TEST_PG_BINDIR (apt-get install postgresql; "
                       "tools/dev.sh does)\n");
                return 0;
        }
        r = setup(b);
        if (r < 0)
                return r;

        warmup_start = bench_now_usec();
        r = bench_run_steps(steps, ELEMENTSOF(steps), warmup, b);
        if (r < 0)
                return r;
        iteration_usec = (bench_now_usec() - warmup_start) / warmup;
        iterations = bench_fit_iterations(start, iteration_usec, iterations, LATENCY_BUDGET_USEC, MIN_ITERATIONS);
        print_environment(b, iterations, warmup);
        fflush(stdout);

        b->client.record = true;
        r = bench_run_rounds(steps, ELEMENTSOF(steps), iterations, ROUNDS, b);
        if (r >= 0)
                r = bench_measure_saves(b->address, b->event, b->client.bus, raw_commits, b, SAVE_CALLS, SAVE_ROUNDS,
                                        &raw_rate, &save_rate);
        if (r < 0)
                return r;

        print_table(b, raw_rate, save_rate, &misses);
        printf("# %u of 2 targets missed; run took %.1f s\n", misses, (bench_now_usec() - start) / 1e6);
        return 0;
}

int main(int argc, char **argv) {
        __attribute__((cleanup(bench_done))) Bench b = {};
        int r;

        r = bench_no_arguments(argc, argv,
                               "Benchmarks outpostd with its store in a private PostgreSQL cluster.\n"
                               "Environment: OUTPOSTD (default ./outpostd), OUTPOST_TEST_PG_BINDIR,\n"
                               "BENCH_DIR (default /var/tmp), DBUS_DAEMON, SYSTEM_BUS_CONF, BENCH_ITERATIONS,\n"
                               "BENCH_WARMUP, BENCH_KEEP.\n");
        if (r >= 0)
                return r;

        bench_init("bench-postgresql");

        r = run(&b);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
