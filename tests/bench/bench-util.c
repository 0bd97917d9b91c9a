/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define STOP_TIMEOUT_USEC       (5ULL * 1000000ULL)
#define ADDRESS_TIMEOUT_USEC    (10ULL * 1000000ULL)

volatile sig_atomic_t bench_interrupted = 0;
static const char *program_name = "bench";

static void on_signal(int sig) {
        bench_interrupted = 1;
}

void bench_init(const char *program) {
        struct sigaction sa = { .sa_handler = on_signal };

        program_name = program;
        signal(SIGPIPE, SIG_IGN);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
}

int bench_no_arguments(int argc, char **argv, const char *usage) {
        if (argc <= 1)
                return -1;
        fprintf(stderr, "Usage: %s\n%s", argv[0], usage);
        return argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
}

static void log_va(int r, const char *fmt, va_list ap) {
        fprintf(stderr, "%s: ", program_name);
        vfprintf(stderr, fmt, ap);
        if (r < 0)
                fprintf(stderr, ": %s", strerror(-r));
        fputc('\n', stderr);
}

int bench_log_errno(int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_va(r, fmt, ap);
        va_end(ap);
        return r < 0 ? r : -EIO;
}

void bench_die(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_va(0, fmt, ap);
        va_end(ap);
        exit(EXIT_FAILURE);
}

/* Nanoseconds: one call of a fast figure is tens of µs, where µs
 * truncation would bias the median. */
uint64_t bench_now_nsec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

uint64_t bench_now_usec(void) {
        return bench_now_nsec() / 1000;
}

const char *bench_env_or(const char *name, const char *fallback) {
        const char *v = getenv(name);
        return v && *v ? v : fallback;
}

int bench_make_dir(const char *prefix, char **ret) {
        const char *base = bench_env_or("BENCH_DIR", "/var/tmp");
        char *dir;

        if (asprintf(&dir, "%s/%s-XXXXXX", base, prefix) < 0)
                return -ENOMEM;
        if (!mkdtemp(dir)) {
                int r = bench_log_errno(-errno, "Cannot create a directory in %s (set BENCH_DIR)", base);
                free(dir);
                return r;
        }
        *ret = dir;
        return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        if (remove(path) < 0)
                bench_log_errno(-errno, "Cannot remove %s", path);
        return 0;
}

void bench_remove_dir(const char *dir) {
        if (dir && !getenv("BENCH_KEEP"))
                (void) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int bench_open_log(const char *dir, const char *name, int *ret_fd) {
        char *path;
        int r = 0;

        if (asprintf(&path, "%s/%s.log", dir, name) < 0)
                return -ENOMEM;
        *ret_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (*ret_fd < 0)
                r = bench_log_errno(-errno, "Cannot create %s", path);
        free(path);
        return r;
}

void bench_show_log(const char *dir, const char *name) {
        char buf[4096], *path;
        size_t n;
        FILE *f;

        if (asprintf(&path, "%s/%s.log", dir, name) < 0)
                return;
        f = fopen(path, "re");
        if (f) {
                fprintf(stderr, "--- %s ---\n", path);
                while ((n = fread(buf, 1, sizeof buf, f)) > 0)
                        fwrite(buf, 1, n, stderr);
                fclose(f);
        }
        free(path);
}

pid_t bench_fork(void) {
        pid_t parent = getpid(), pid = fork();
        sigset_t none;

        if (pid != 0)
                return pid < 0 ? -errno : pid;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                _exit(127);
        /* The parent may have gone before prctl() took effect. */
        if (getppid() != parent)
                _exit(127);
        /* Ignored signals stay ignored across exec, and the children
         * must end on SIGTERM and break on a closed pipe as usual. */
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        return 0;
}

int bench_spawn(char *const argv[], int out_fd, int log_fd, pid_t *ret_pid) {
        pid_t pid = bench_fork();

        if (pid < 0)
                return pid;
        if (pid > 0) {
                *ret_pid = pid;
                return 0;
        }
        if (out_fd < 0)
                out_fd = log_fd;
        if (out_fd >= 0 && dup2(out_fd, STDOUT_FILENO) < 0)
                _exit(127);
        if (log_fd >= 0 && dup2(log_fd, STDERR_FILENO) < 0)
                _exit(127);
        execvp(argv[0], argv);
        fprintf(stderr, "%s: cannot run %s: %m\n", program_name, argv[0]);
        _exit(127);
}

int bench_stop(pid_t *pid, const char *what) {
        uint64_t deadline = bench_now_usec() + STOP_TIMEOUT_USEC;
        int status = 0;

        if (*pid <= 0)
                return 0;
        kill(*pid, SIGTERM);
        for (;;) {
                pid_t r = waitpid(*pid, &status, WNOHANG);

                if (r == *pid || (r < 0 && errno != EINTR))
                        break;
                if (bench_now_usec() > deadline) {
                        bench_log_errno(0, "%s did not end on SIGTERM within 5 s; killing it", what);
                        kill(*pid, SIGKILL);
                        (void) waitpid(*pid, &status, 0);
                        break;
                }
                usleep(2000);
        }
        *pid = 0;
        return status;
}

/* What the benchmark adds to the test bus: whoever runs it may own and
 * call the name, and EXTRA (more listeners, limits). */
static int write_bench_additions(const char *path, const char *extra) {
        FILE *f = fopen(path, "wxe");

        if (!f)
                return bench_log_errno(-errno, "Cannot create %s", path);
        fprintf(f,
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
                " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
                "<busconfig>\n"
                "%s"
                "  <policy context=\"default\">\n"
                "    <allow own=\"" BENCH_OUTPOST_NAME "\"/>\n"
                "    <allow send_destination=\"" BENCH_OUTPOST_NAME "\"/>\n"
                "    <allow receive_sender=\"" BENCH_OUTPOST_NAME "\"/>\n"
                "  </policy>\n"
                "</busconfig>\n",
                extra ?: "");
        if (fclose(f) != 0)
                return bench_log_errno(-errno, "Cannot write %s", path);
        return 0;
}

/* PATH, from tests/common/system-bus-conf.sh (the tests' bus, like
 * Debian's system bus, so dbus-daemon evaluates a policy for every
 * message as the system bus does), listening on SOCKET and including
 * ADDITIONS, written first with EXTRA. */
static int generate_bus_config(const char *path, const char *socket, const char *additions, const char *extra) {
        char *argv[] = { (char *) "sh", (char *) bench_env_or("SYSTEM_BUS_CONF", "tests/common/system-bus-conf.sh"),
                         (char *) socket, (char *) additions, NULL };
        int fd, status, r;
        pid_t pid;

        r = write_bench_additions(additions, extra);
        if (r < 0)
                return r;
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return bench_log_errno(-errno, "Cannot create %s", path);
        r = bench_spawn(argv, fd, -1, &pid);
        close(fd);
        if (r < 0)
                return bench_log_errno(r, "Cannot run %s", argv[1]);
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return bench_log_errno(-errno, "Waiting for %s", argv[1]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return bench_log_errno(-EIO, "%s failed", argv[1]);
        return 0;
}

static int write_bus_config(const char *dir, const char *name, const char *extra, char **ret_path) {
        char *path = NULL, *socket = NULL, *additions = NULL;
        int r;

        if (asprintf(&path, "%s/%s-bus.conf", dir, name) < 0)
                path = NULL;
        if (asprintf(&socket, "%s/%s-bus.socket", dir, name) < 0)
                socket = NULL;
        if (asprintf(&additions, "%s/%s-bench.conf", dir, name) < 0)
                additions = NULL;
        r = path && socket && additions ? generate_bus_config(path, socket, additions, extra) : -ENOMEM;
        free(socket);
        free(additions);
        if (r < 0) {
                free(path);
                return r;
        }
        *ret_path = path;
        return 0;
}

/* dbus-daemon prints its addresses once it listens: a line to wait for. */
static int wait_for_address(int fd) {
        uint64_t deadline = bench_now_usec() + ADDRESS_TIMEOUT_USEC;
        char buf[1024];
        size_t n = 0;

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int64_t left = (int64_t) (deadline - bench_now_usec());
                ssize_t k;

                if (left <= 0)
                        return bench_log_errno(-ETIMEDOUT, "dbus-daemon printed no address within 10 s");
                if (poll(&p, 1, (int) (left / 1000) + 1) < 0) {
                        if (errno == EINTR && !bench_interrupted)
                                continue;
                        return bench_log_errno(-errno, "Waiting for dbus-daemon");
                }
                k = read(fd, buf + n, sizeof buf - 1 - n);
                if (k < 0 && errno == EINTR && !bench_interrupted)
                        continue;
                if (k < 0)
                        return bench_log_errno(-errno, "Reading the address of dbus-daemon");
                if (k == 0)
                        return bench_log_errno(-EPIPE, "dbus-daemon exited before printing its address");
                n += (size_t) k;
                buf[n] = 0;
                if (strchr(buf, '\n'))
                        return 0;
                if (n == sizeof buf - 1)
                        return bench_log_errno(-E2BIG, "dbus-daemon printed an overlong address");
        }
}

int bench_start_bus(const char *dir, const char *name, const char *extra, pid_t *ret_pid, char **ret_address) {
        char *config = NULL, *config_arg = NULL, *log_name = NULL;
        int pipefd[2] = { -1, -1 }, log_fd = -1, r;

        if (asprintf(&log_name, "dbus-%s", name) < 0)
                return -ENOMEM;
        r = write_bus_config(dir, name, extra, &config);
        if (r >= 0 && asprintf(&config_arg, "--config-file=%s", config) < 0)
                r = -ENOMEM;
        /* Its complaints (a system bus run by a user cannot raise its fd
         * limit) would clutter the table; they are shown when it fails. */
        if (r >= 0)
                r = bench_open_log(dir, log_name, &log_fd);
        if (r >= 0 && pipe2(pipefd, O_CLOEXEC) < 0)
                r = bench_log_errno(-errno, "pipe2");
        if (r >= 0) {
                char *argv[] = { (char *) bench_env_or("DBUS_DAEMON", "dbus-daemon"), config_arg, (char *) "--nofork",
                                 (char *) "--nopidfile", (char *) "--print-address=1", NULL };

                r = bench_spawn(argv, pipefd[1], log_fd, ret_pid);
                close(pipefd[1]);
                if (r >= 0)
                        r = wait_for_address(pipefd[0]);
                /* Not what it printed: with more listeners it may put
                 * another address first. */
                if (r >= 0 && asprintf(ret_address, "unix:path=%s/%s-bus.socket", dir, name) < 0)
                        r = -ENOMEM;
                close(pipefd[0]);
                if (r < 0) {
                        bench_show_log(dir, log_name);
                        r = bench_log_errno(r, "Cannot start the %s bus", name);
                }
        }
        if (log_fd >= 0)
                close(log_fd);
        free(config);
        free(config_arg);
        free(log_name);
        return r;
}

int bench_connect(const char *address, bool anonymous, sd_bus **ret) {
        sd_bus *bus = NULL;
        int r;

        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0 && anonymous)
                r = sd_bus_set_anonymous(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r >= 0)
                r = sd_bus_get_unique_name(bus, &(const char *) { NULL });
        if (r < 0) {
                sd_bus_unref(bus);
                return bench_log_errno(r, "Cannot connect to %s", address);
        }
        *ret = bus;
        return 0;
}

static int name_has_owner(sd_bus *bus, bool *ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        int owned = 0, r;

        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", &error, &reply, "s", BENCH_OUTPOST_NAME);
        if (r >= 0)
                r = sd_bus_message_read(reply, "b", &owned);
        if (r < 0)
                bench_log_errno(r, "NameHasOwner: %s", error.message ?: "");
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        *ret = owned;
        return r;
}

int bench_wait_for_name(sd_bus *bus, pid_t *pid, uint64_t timeout_usec) {
        uint64_t deadline = bench_now_usec() + timeout_usec;

        for (;;) {
                bool owned;
                int status, r;

                r = name_has_owner(bus, &owned);
                if (r < 0)
                        return r;
                if (owned)
                        return 0;
                if (pid && *pid > 0 && waitpid(*pid, &status, WNOHANG) == *pid) {
                        *pid = 0;       /* reaped: nothing to stop */
                        return bench_log_errno(-ECHILD, "Exited before owning %s (wait status 0x%x)",
                                               BENCH_OUTPOST_NAME, status);
                }
                if (bench_interrupted)
                        return bench_log_errno(-EINTR, "Interrupted");
                if (bench_now_usec() > deadline)
                        return bench_log_errno(-ETIMEDOUT, "%s had no owner within %.0f s", BENCH_OUTPOST_NAME,
                                               timeout_usec / 1e6);
                usleep(5000);
        }
}

int bench_samples_add(BenchSamples *s, uint64_t nsec) {
        if (s->n == s->allocated) {
                size_t a = s->allocated ? s->allocated * 2 : 1024;
                uint64_t *p = realloc(s->nsec, a * sizeof(uint64_t));

                if (!p)
                        return -ENOMEM;
                s->nsec = p;
                s->allocated = a;
        }
        s->nsec[s->n++] = nsec;
        return 0;
}

static int compare_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

void bench_samples_stats(BenchSamples *s, double q, double *ret_median, double *ret_quantile) {
        size_t rank;

        if (s->n == 0) {
                *ret_median = *ret_quantile = 0;
                return;
        }
        qsort(s->nsec, s->n, sizeof(uint64_t), compare_u64);
        *ret_median = s->n % 2 ? s->nsec[s->n / 2] : (s->nsec[s->n / 2 - 1] + s->nsec[s->n / 2]) / 2.0;
        /* ceil(q n), 1-based; the epsilon keeps 0.99 * 2000 at 1980. */
        rank = (size_t) (q * (double) s->n + 0.999999);
        *ret_quantile = s->nsec[(rank ? rank : 1) - 1];
}

void bench_samples_free(BenchSamples *s) {
        free(s->nsec);
        *s = (BenchSamples) {};
}

static int compare_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

double bench_median(double *v, size_t n) {
        if (n == 0)
                return 0;
        qsort(v, n, sizeof(double), compare_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bench_print_header(const BenchTable *t, const char *value, const char *spread) {
        printf("%-*s %*s %*s  %-*s %6s  %-*s %s\n", t->name, "figure", t->value, value, t->value, spread,
               t->baseline, "baseline", "ratio", t->target, "target", "result");
}

void bench_print_row(const BenchTable *t, const char *name, const char *value, const char *spread,
                     const char *baseline, double ratio, const char *target, int pass) {
        char r[32] = "-";

        if (ratio > 0)
                snprintf(r, sizeof r, "%.2f", ratio);
        printf("%-*s %*s %*s  %-*s %6s  %-*s %s\n", t->name, name, t->value, value, t->value, spread, t->baseline,
               baseline ?: "-", r, t->target, target ?: "-", pass < 0 ? "-" : pass ? "PASS" : "MISS");
}

int bench_free_tcp_port(unsigned *ret) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r = 0;

        if (fd < 0)
                return bench_log_errno(-errno, "socket");
        if (bind(fd, (struct sockaddr *) &a, sizeof a) < 0 || getsockname(fd, (struct sockaddr *) &a, &len) < 0)
                r = bench_log_errno(-errno, "Cannot find a free port");
        close(fd);
        *ret = ntohs(a.sin_port);
        return r;
}

bool bench_tcp_port_open(unsigned port) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool open;

        if (fd < 0)
                return false;
        open = connect(fd, (struct sockaddr *) &a, sizeof a) == 0;
        close(fd);
        return open;
}

void bench_stop_daemon(pid_t *pid, const char *dir) {
        int status = bench_stop(pid, "outpostd");

        if (status == 0 || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
                return;
        bench_log_errno(0, "outpostd did not exit cleanly (wait status 0x%x)", status);
        bench_show_log(dir, "outpostd");
}

int bench_start_daemon(const char *dir, const char *bus_address, pid_t *ret_pid) {
        char *address = NULL, *state = NULL, *config = NULL;
        int log_fd = -1, r;

        if (asprintf(&address, "--address=%s", bus_address) < 0 ||
            asprintf(&state, "--state-dir=%s/state", dir) < 0 ||
            asprintf(&config, "--config=%s/none.conf", dir) < 0)
                r = -ENOMEM;
        else
                r = bench_open_log(dir, "outpostd", &log_fd);
        if (r >= 0) {
                char *argv[] = { (char *) bench_env_or("OUTPOSTD", "./outpostd"), address, state, config, NULL };

                r = bench_spawn(argv, -1, log_fd, ret_pid);
                close(log_fd);
        }
        free(address);
        free(state);
        free(config);
        return r < 0 ? bench_log_errno(r, "Cannot start outpostd") : 0;
}

int bench_env_unsigned(const char *name, unsigned fallback, unsigned min, unsigned *ret) {
        const char *v = getenv(name);
        unsigned long n;
        char *end;

        if (!v || !*v) {
                *ret = fallback;
                return 0;
        }
        errno = 0;
        n = strtoul(v, &end, 10);
        if (errno != 0 || *end || n < min || n > 10000000)
                return bench_log_errno(-EINVAL, "Invalid %s=%s: expected a number from %u to 10000000", name, v, min);
        *ret = (unsigned) n;
        return 0;
}

int bench_call_failed(const char *what, int r, const sd_bus_error *error) {
        return bench_log_errno(r, "%s failed%s%s", what, error && error->message ? ": " : "",
                               error && error->message ? error->message : "");
}

/* *DST becomes a copy of SRC. */
static int replace_string(char **dst, const char *src) {
        char *copy = strdup(src);

        if (!copy)
                return -ENOMEM;
        free(*dst);
        *dst = copy;
        return 0;
}

int bench_create_user(sd_bus *bus, const char *name, char **ret_id, char **ret_tag) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *id, *tag;
        int r;

        r = sd_bus_call_method(bus, BENCH_OUTPOST_NAME, USERS_PATH, USERS_IFACE, "CreateUser", &error,
                               &reply, "a{sv}", 3,
                               "name", "s", name,
                               "display-name", "s", "Benchmark User",
                               "email", "s", "bench@example.org");
        if (r < 0)
                bench_call_failed("CreateUser", r, &error);
        else {
                r = sd_bus_message_read(reply, "ss", &id, &tag);
                if (r >= 0)
                        r = replace_string(ret_id, id);
                if (r >= 0)
                        r = replace_string(ret_tag, tag);
                if (r < 0)
                        bench_log_errno(r, "Cannot read a CreateUser reply");
        }
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        return r;
}

int bench_save_user(sd_bus *bus, BenchSamples *samples, const char *id, char **tag, const char *name) {
        sd_bus_message *reply = NULL;
        const char *new_tag;
        int r;

        r = BENCH_TIMED_CALL(bus, samples, "SaveUser", &reply, USERS_PATH, USERS_IFACE, "SaveUser",
                             "ssa{sv}", id, *tag, 1, "display-name", "s", name);
        /* The next save must pass the tag this one made. */
        if (r >= 0)
                r = sd_bus_message_read(reply, "s", &new_tag);
        if (r >= 0)
                r = replace_string(tag, new_tag);
        sd_bus_message_unref(reply);
        return r;
}

int bench_client_record(BenchClient *c, BenchFigure figure, uint64_t nsec) {
        return c->record ? bench_samples_add(&c->samples[figure], nsec) : 0;
}

void bench_client_stats(BenchClient *c, double median[_FIG_MAX], double p99[_FIG_MAX]) {
        for (size_t i = 0; i < _FIG_MAX; i++) {
                bench_samples_stats(&c->samples[i], 0.99, &median[i], &p99[i]);
                median[i] /= 1000;
                p99[i] /= 1000;
        }
}

void bench_client_done(BenchClient *c) {
        c->bus = sd_bus_flush_close_unref(c->bus);
        free(c->user_id);
        free(c->tag);
        for (size_t i = 0; i < _FIG_MAX; i++)
                bench_samples_free(&c->samples[i]);
}

/* Where a figure's sample goes: nowhere during warm-up. */
static BenchSamples *samples_of(BenchClient *c, BenchFigure figure) {
        return c->record ? &c->samples[figure] : NULL;
}

int bench_step_ping(void *userdata) {
        BenchClient *c = userdata;

        return BENCH_TIMED_CALL(c->bus, samples_of(c, FIG_PING), "Ping", NULL, ROOT_PATH,
                                PEER_IFACE, "Ping", "");
}

int bench_step_get_user(void *userdata) {
        BenchClient *c = userdata;
        sd_bus_message *reply = NULL;
        int r;

        r = BENCH_TIMED_CALL(c->bus, samples_of(c, FIG_GET_USER), "GetUser", &reply, USERS_PATH,
                             USERS_IFACE, "GetUser", "s", c->user_id);
        sd_bus_message_unref(reply);
        return r;
}

int bench_step_save_user(void *userdata) {
        BenchClient *c = userdata;
        char name[64];

        snprintf(name, sizeof name, "Benchmark User %u", c->counter++);
        return bench_save_user(c->bus, samples_of(c, FIG_SAVE_USER), c->user_id, &c->tag, name);
}

int bench_step_presence(void *userdata) {
        BenchClient *c = userdata;
        int r;

        r = BENCH_TIMED_CALL(c->bus, samples_of(c, FIG_GO_ONLINE), "GoOnline", NULL, PRESENCE_PATH,
                             PRESENCE_IFACE, "GoOnline", "su", c->user_id, (uint32_t) 0);
        if (r < 0)
                return r;
        return BENCH_TIMED_CALL(c->bus, samples_of(c, FIG_GO_OFFLINE), "GoOffline", NULL, PRESENCE_PATH,
                                PRESENCE_IFACE, "GoOffline", "s", c->user_id);
}

int bench_step_publish(void *userdata) {
        BenchClient *c = userdata;

        return BENCH_TIMED_CALL(c->bus, samples_of(c, FIG_PUBLISH), "Publish", NULL, EVENTS_PATH,
                                EVENTS_IFACE, "Publish", "sa{sv}", "bench/x", 1, "n", "i",
                                (int32_t) c->counter++);
}

int bench_run_steps(const BenchStep *steps, size_t n_steps, unsigned n, void *userdata) {
        for (size_t s = 0; s < n_steps; s++)
                for (unsigned i = 0; i < n; i++) {
                        int r;

                        if (bench_interrupted)
                                return bench_log_errno(-EINTR, "Interrupted");
                        r = steps[s].run(userdata);
                        if (r < 0)
                                return r;
                }
        return 0;
}

int bench_run_rounds(const BenchStep *steps, size_t n_steps, unsigned iterations, unsigned rounds, void *userdata) {
        for (unsigned round = 0; round < rounds; round++) {
                /* Spread the remainder so the total is exactly ITERATIONS. */
                unsigned n = iterations / rounds + (round < iterations % rounds);
                int r = bench_run_steps(steps, n_steps, n, userdata);

                if (r < 0)
                        return r;
        }
        return 0;
}

unsigned bench_fit_iterations(uint64_t start_usec, uint64_t iteration_usec, unsigned iterations,
                              uint64_t budget_usec, unsigned min_iterations) {
        uint64_t spent = bench_now_usec() - start_usec, fit;
        unsigned n;

        if (iteration_usec == 0 || spent + iteration_usec * iterations <= budget_usec)
                return iterations;
        fit = spent < budget_usec ? (budget_usec - spent) / iteration_usec : 0;
        n = fit < min_iterations ? min_iterations : (unsigned) fit;
        if (n >= iterations)
                return iterations;
        printf("# one iteration of all figures takes %.1f ms here: %u iterations instead of %u\n",
               iteration_usec / 1000.0, n, iterations);
        return n;
}

/* Concurrent saves */

static int on_save_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);

static int saver_issue(BenchSaver *s) {
        char name[64];
        int r;

        snprintf(name, sizeof name, "Saver %u", s->n++);
        r = sd_bus_call_method_async(s->bus, NULL, BENCH_OUTPOST_NAME, USERS_PATH, USERS_IFACE,
                                     "SaveUser", on_save_reply, s, "ssa{sv}", s->id, s->tag,
                                     1, "display-name", "s", name);
        if (r < 0)
                return bench_log_errno(r, "Cannot queue a SaveUser call");
        s->savers->issued++;
        return 0;
}

static int saver_take_reply(BenchSaver *s, sd_bus_message *m) {
        const sd_bus_error *e = sd_bus_message_get_error(m);
        const char *tag;
        int r;

        if (e)
                return bench_call_failed("Concurrent SaveUser", -sd_bus_message_get_errno(m) ?: -EIO, e);
        r = sd_bus_message_read(m, "s", &tag);
        if (r < 0)
                return bench_log_errno(r, "Cannot read a SaveUser reply");
        return replace_string(&s->tag, tag);
}

static int on_save_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        BenchSaver *s = userdata;
        BenchSavers *v = s->savers;
        int r;

        r = saver_take_reply(s, m);
        if (r >= 0) {
                v->completed++;
                if (v->issued < v->total)
                        r = saver_issue(s);
        }
        if (r < 0)
                v->error = r;
        return 0;
}

static int savers_setup(BenchSavers *v, const char *address) {
        for (unsigned i = 0; i < BENCH_SAVE_CLIENTS; i++) {
                BenchSaver *s = &v->saver[i];
                char name[64];
                int r;

                s->savers = v;
                r = bench_connect(address, false, &s->bus);
                if (r < 0)
                        return r;
                r = sd_bus_attach_event(s->bus, v->event, SD_EVENT_PRIORITY_NORMAL);
                if (r < 0)
                        return bench_log_errno(r, "Cannot attach a connection to the event loop");
                snprintf(name, sizeof name, "bench-saver-%u", i);
                r = bench_create_user(v->control, name, &s->id, &s->tag);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int savers_run(BenchSavers *v, unsigned total, uint64_t *ret_usec) {
        uint64_t start, deadline;
        int r = 0;

        v->total = total;
        v->issued = v->completed = 0;
        v->error = 0;
        start = bench_now_usec();
        deadline = start + 60 * 1000000ULL;
        for (unsigned i = 0; i < BENCH_SAVE_CLIENTS && v->issued < total && r >= 0; i++)
                r = saver_issue(&v->saver[i]);
        while (r >= 0 && v->error >= 0 && v->completed < total) {
                if (bench_interrupted)
                        return bench_log_errno(-EINTR, "Interrupted");
                if (bench_now_usec() > deadline)
                        return bench_log_errno(-ETIMEDOUT, "Concurrent saves did not complete within 60 s");
                r = sd_event_run(v->event, 100000);
        }
        *ret_usec = bench_now_usec() - start;
        if (r < 0)
                return bench_log_errno(r, "The event loop failed");
        return v->error;
}

/* The tag of user ID as GetUser returns it, in *RET_TAG (NULL: none). */
static int read_tag(sd_bus *bus, const char *id, char **ret_tag) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *key, *tag = NULL;
        int r;

        r = sd_bus_call_method(bus, BENCH_OUTPOST_NAME, USERS_PATH, USERS_IFACE, "GetUser", &error,
                               &reply, "s", id);
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                r = sd_bus_message_read(reply, "s", &key);
                if (r >= 0 && strcmp(key, "tag") == 0)
                        r = sd_bus_message_read(reply, "v", "s", &tag);
                else if (r >= 0)
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r < 0)
                bench_call_failed("GetUser", r, &error);
        else if (tag && replace_string(ret_tag, tag) < 0)
                r = -ENOMEM;
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        return r;
}

/* Every acknowledged save is what the daemon has: each user's tag is the
 * one its last reply returned. */
static int savers_verify(BenchSavers *v) {
        for (unsigned i = 0; i < BENCH_SAVE_CLIENTS; i++) {
                BenchSaver *s = &v->saver[i];
                char *tag = NULL;
                int r;

                r = read_tag(v->control, s->id, &tag);
                if (r >= 0 && (!tag || strcmp(tag, s->tag) != 0))
                        r = bench_log_errno(-EIO, "User %s has tag %s, but its last acknowledged save returned %s",
                                            s->id, tag ?: "(none)", s->tag);
                free(tag);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void savers_done(BenchSavers *v) {
        for (unsigned i = 0; i < BENCH_SAVE_CLIENTS; i++) {
                v->saver[i].bus = sd_bus_flush_close_unref(v->saver[i].bus);
                free(v->saver[i].id);
                free(v->saver[i].tag);
        }
}

int bench_measure_saves(const char *address, sd_event *event, sd_bus *control, BenchCommits commits,
                        void *userdata, unsigned calls, unsigned rounds, double *ret_commit_rate,
                        double *ret_save_rate) {
        BenchSavers v = { .event = event, .control = control };
        uint64_t commit_usec = 0, save_usec = 0, usec;
        int r;

        r = savers_setup(&v, address);
        if (r >= 0)
                r = savers_run(&v, calls / 4, &usec);     /* warm-up */
        for (unsigned round = 0; round < rounds && r >= 0; round++) {
                r = commits(userdata, calls, &usec);
                commit_usec += usec;
                if (r >= 0)
                        r = savers_run(&v, calls, &usec);
                save_usec += usec;
        }
        if (r >= 0)
                r = savers_verify(&v);
        savers_done(&v);
        if (r < 0)
                return r;
        *ret_commit_rate = (double) calls * rounds / (commit_usec / 1e6);
        *ret_save_rate = (double) calls * rounds / (save_usec / 1e6);
        return 0;
}

void bench_print_latency(const BenchTable *t, const char *name, double median, double p99, const char *baseline,
                         double baseline_median, double max_ratio, unsigned *misses) {
        char m[32], p[32] = "-", target[32] = "-";
        double ratio = baseline_median > 0 ? median / baseline_median : 0;
        int pass = -1;

        snprintf(m, sizeof m, "%.1f", median);
        if (p99 >= 0)
                snprintf(p, sizeof p, "%.1f", p99);
        if (max_ratio > 0) {
                snprintf(target, sizeof target, "<=%.2f", max_ratio);
                pass = ratio <= max_ratio;
                if (!pass)
                        (*misses)++;
        }
        bench_print_row(t, name, m, p, baseline ?: "-", ratio, target, pass);
}

double bench_print_baselines(const BenchTable *t, const double median[_FIG_MAX],
                             const double p99[_FIG_MAX], unsigned *misses) {
        double sum = median[FIG_PING] + median[FIG_RAW_COMMIT];

        bench_print_latency(t, "ping", median[FIG_PING], p99[FIG_PING], NULL, 0, 0, misses);
        bench_print_latency(t, "raw-commit", median[FIG_RAW_COMMIT], p99[FIG_RAW_COMMIT], NULL, 0, 0,
                            misses);
        bench_print_latency(t, "ping+raw-commit", sum, -1, NULL, 0, 0, misses);
        return sum;
}

void bench_print_rate(const BenchTable *t, const char *name, double rate, const char *baseline, double baseline_rate,
                      double min_ratio, bool strict, unsigned *misses) {
        char v[32], target[32] = "-";
        double ratio = baseline && baseline_rate > 0 ? rate / baseline_rate : 0;
        int pass = -1;

        snprintf(v, sizeof v, "%.0f/s", rate);
        if (baseline && min_ratio >= 0) {
                snprintf(target, sizeof target, "%s%.2f", strict ? ">" : ">=", min_ratio);
                pass = strict ? ratio > min_ratio : ratio >= min_ratio;
                if (!pass)
                        (*misses)++;
        }
        bench_print_row(t, name, v, "-", baseline ?: "-", ratio, target, pass);
}
