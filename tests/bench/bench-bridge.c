/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-bridge: what one bridge hop costs, against baselines measured in
 * the same run (issue 4):
 *   - GetUser through one hop over TLS, against GetUser made directly to
 *     the central bus over dbus-daemon's own tcp: transport (target ≤ 3×);
 *   - the same hop over TLS against plain TCP (target ≤ 1.3×);
 *   - a cached property Get at the site against a Get at central (≤ 1.2×).
 * Everything runs on loopback: a central bus (unix and tcp:) with outpostd
 * and two listeners (TLS, plain), and two site buses, each with an
 * importer. Prints one line per figure: median and p99 in µs, the
 * baseline, the ratio and the target. A MISS is a finding, not a failure. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 8

static pid_t children[MAX_CHILDREN];
static unsigned n_children;
static char workdir[] = "/tmp/outpost-bench-bridge-XXXXXX";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        fprintf(stderr, "bench-bridge: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
        exit(EXIT_FAILURE);
}

static void cleanup(void) {
        char cmd[128];

        for (unsigned i = 0; i < n_children; i++) {
                kill(children[i], SIGTERM);
                waitpid(children[i], NULL, 0);
        }
        if (getenv("BENCH_KEEP")) return;
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", workdir);
        if (system(cmd) != 0)
                fprintf(stderr, "bench-bridge: could not remove %s\n", workdir);
}

static uint64_t now_nsec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

/* Start ARGV with stdout to OUT_PATH (NULL: /dev/null) and stderr to a log. */
static pid_t spawn(const char *log_name, const char *out_path, char *const argv[]) {
        pid_t pid = fork();

        if (pid < 0)
                die("fork: %m");
        if (pid == 0) {
                char log[512];

                prctl(PR_SET_PDEATHSIG, SIGKILL);
                snprintf(log, sizeof log, "%s/%s.log", workdir, log_name);
                if (!freopen(out_path ?: "/dev/null", "w", stdout) || !freopen(log, "a", stderr))
                        _exit(127);
                execv(argv[0], argv);
                _exit(127);
        }
        children[n_children++] = pid;
        return pid;
}

static char *read_line_when_ready(const char *path) {
        char *line = NULL;
        size_t size = 0;

        for (int i = 0; i < 200; i++) {
                FILE *f = fopen(path, "r");
                if (f) {
                        ssize_t n = getline(&line, &size, f);
                        fclose(f);
                        if (n > 0 && line[n - 1] == '\n') {
                                line[n - 1] = 0;
                                return line;
                        }
                }
                usleep(20000);
        }
        die("no address in %s", path);
}

/* A system-like bus; with TCP_PORT > 0 it also listens on tcp: with
 * ANONYMOUS authentication, for the baseline. */
static char *start_bus(const char *name, unsigned tcp_port) {
        char conf[512], out[512], tcp[160] = "";
        char *argv[] = { (char *) "/usr/bin/dbus-daemon", NULL, (char *) "--nofork", (char *) "--print-address=1", NULL };
        char arg[600], *address;
        FILE *f;

        snprintf(conf, sizeof conf, "%s/%s.conf", workdir, name);
        snprintf(out, sizeof out, "%s/%s.address", workdir, name);
        if (tcp_port)
                snprintf(tcp, sizeof tcp, "<listen>tcp:host=127.0.0.1,port=%u</listen><auth>ANONYMOUS</auth><allow_anonymous/>",
                         tcp_port);
        f = fopen(conf, "w");
        if (!f)
                die("%s: %m", conf);
        fprintf(f, "<busconfig><type>system</type><listen>unix:path=%s/%s.socket</listen>%s<auth>EXTERNAL</auth>"
                   "<policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/>"
                   "<allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>"
                   "</policy></busconfig>\n", workdir, name, tcp);
        fclose(f);
        snprintf(arg, sizeof arg, "--config-file=%s", conf);
        argv[1] = arg;
        spawn(name, out, argv);
        free(read_line_when_ready(out));        /* ready; the unix address is the one to use */
        if (asprintf(&address, "unix:path=%s/%s.socket", workdir, name) < 0)
                die("out of memory");
        return address;
}

static sd_bus *connect_to(const char *address, bool anonymous) {
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
        if (r < 0)
                die("cannot connect to %s: %s", address, strerror(-r));
        return bus;
}

static char *bridge_state(sd_bus *bus) {
        char *state = NULL;

        if (sd_bus_get_property_string(bus, "org.outpost.Outpost1", "/org/outpost/Outpost1/bridge",
                                       "org.outpost.Outpost1.Bridge", "State", NULL, &state) < 0)
                return NULL;
        return state;
}

static void wait_owned(sd_bus *bus, bool bridged) {
        for (int i = 0; i < 1000; i++) {
                if (bridged) {
                        char *state = bridge_state(bus);
                        bool up = state && strcmp(state, "connected") == 0;
                        free(state);
                        if (up)
                                return;
                } else if (sd_bus_call_method(bus, "org.outpost.Outpost1", "/org/outpost/Outpost1",
                                              "org.freedesktop.DBus.Peer", "Ping", NULL, NULL, NULL) >= 0)
                        return;
                usleep(20000);
        }
        die("org.outpost.Outpost1 did not come up");
}

static void start_bridge(const char *name, const char *bus_address, const char *role_args[]) {
        char *argv[16];
        char a[600], ca[600], cert[600], key[600], conf[600];
        unsigned n = 0;

        snprintf(a, sizeof a, "--address=%s", bus_address);
        snprintf(ca, sizeof ca, "--tls-ca=%s/certs/ca.pem", workdir);
        snprintf(cert, sizeof cert, "--tls-cert=%s/certs/server.pem", workdir);
        snprintf(key, sizeof key, "--tls-key=%s/certs/server.key", workdir);
        snprintf(conf, sizeof conf, "--config=%s/none.conf", workdir);
        argv[n++] = getenv("OUTPOST_BRIDGE") ?: (char *) "./outpost-bridge";
        argv[n++] = a;
        argv[n++] = ca;
        argv[n++] = cert;
        argv[n++] = key;
        argv[n++] = conf;
        for (unsigned i = 0; role_args[i]; i++)
                argv[n++] = (char *) role_args[i];
        argv[n] = NULL;
        spawn(name, NULL, argv);
}

typedef struct Figure {
        const char *name;
        double median, p99;
} Figure;

static int compare_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

typedef int (*CallFunc)(sd_bus *bus, void *userdata);

/* Time N calls, interleaving the figures round by round so that a burst of
 * load elsewhere hits a figure and its baseline alike. */
static void measure(unsigned rounds, unsigned per_round, unsigned n_figures, Figure *figures, sd_bus **buses,
                    CallFunc *calls, void **userdata) {
        uint64_t *samples[8];
        unsigned counts[8] = {};

        for (unsigned f = 0; f < n_figures; f++) {
                samples[f] = calloc((size_t) rounds * per_round, sizeof(uint64_t));
                for (unsigned i = 0; i < 100; i++)     /* warm up */
                        (void) calls[f](buses[f], userdata[f]);
        }
        for (unsigned r = 0; r < rounds; r++)
                for (unsigned f = 0; f < n_figures; f++)
                        for (unsigned i = 0; i < per_round; i++) {
                                uint64_t t0 = now_nsec();
                                if (calls[f](buses[f], userdata[f]) < 0)
                                        die("%s failed", figures[f].name);
                                samples[f][counts[f]++] = now_nsec() - t0;
                        }
        for (unsigned f = 0; f < n_figures; f++) {
                qsort(samples[f], counts[f], sizeof(uint64_t), compare_u64);
                figures[f].median = samples[f][counts[f] / 2] / 1000.0;
                figures[f].p99 = samples[f][counts[f] * 99 / 100] / 1000.0;
                free(samples[f]);
        }
}

static int call_get_user(sd_bus *bus, void *userdata) {
        sd_bus_message *reply = NULL;
        int r = sd_bus_call_method(bus, "org.outpost.Outpost1", "/org/outpost/Outpost1/users",
                                   "org.outpost.Outpost1.Users", "GetUser", NULL, &reply, "s", (const char *) userdata);
        sd_bus_message_unref(reply);
        return r;
}

static int call_get_property(sd_bus *bus, void *userdata) {
        sd_bus_message *reply = NULL;
        int r = sd_bus_call_method(bus, "org.outpost.Outpost1", "/org/outpost/Outpost1/presence",
                                   "org.freedesktop.DBus.Properties", "Get", NULL, &reply, "ss",
                                   "org.outpost.Outpost1.Presence", "Generation");
        sd_bus_message_unref(reply);
        return r;
}

static void print(const Figure *f, const Figure *base, double target) {
        double ratio = f->median / base->median;

        printf("%-26s %10.1f %10.1f  %-24s %6.2f  <=%.1f   %s\n", f->name, f->median, f->p99, base->name, ratio,
               target, ratio <= target ? "PASS" : "MISS");
}

int main(int argc, char **argv) {
        unsigned base = 20000 + (unsigned) (getpid() % 20000);
        unsigned tcp_port = base, tls_port = base + 1, plain_port = base + 2;
        unsigned rounds = 10, per_round = 200;
        char cmd[700], tls_listen[96], plain_listen[96], tls_up[96], plain_up[96], *id = NULL;
        const char *outpostd = getenv("OUTPOSTD") ?: "./outpostd";
        const char *certs_script = getenv("MAKE_TEST_CERTS") ?: "tests/make-test-certs.sh";
        char *central, *site_tls, *site_plain, central_tcp[96];
        sd_bus *c_unix, *c_tcp, *s_tls, *s_plain;
        sd_bus_message *reply = NULL;
        int r;

        if (!mkdtemp(workdir))
                die("mkdtemp: %m");
        atexit(cleanup);
        signal(SIGPIPE, SIG_IGN);

        snprintf(cmd, sizeof cmd, "sh '%s' '%s/certs' >/dev/null", certs_script, workdir);
        if (system(cmd) != 0)
                die("cannot make certificates with %s", certs_script);

        central = start_bus("central", tcp_port);
        site_tls = start_bus("site-tls", 0);
        site_plain = start_bus("site-plain", 0);
        {
                char a[600], s[600], c[600];
                snprintf(a, sizeof a, "--address=%s", central);
                snprintf(s, sizeof s, "--state-dir=%s/state", workdir);
                snprintf(c, sizeof c, "--config=%s/none.conf", workdir);
                char *daemon_argv[] = { (char *) outpostd, a, s, c, NULL };
                spawn("outpostd", NULL, daemon_argv);
        }
        c_unix = connect_to(central, false);
        wait_owned(c_unix, false);

        snprintf(tls_listen, sizeof tls_listen, "--listen=tls:host=127.0.0.1,port=%u", tls_port);
        snprintf(plain_listen, sizeof plain_listen, "--listen=tcp:host=127.0.0.1,port=%u", plain_port);
        snprintf(tls_up, sizeof tls_up, "--upstream=tls:host=127.0.0.1,port=%u", tls_port);
        snprintf(plain_up, sizeof plain_up, "--upstream=tcp:host=127.0.0.1,port=%u", plain_port);
        start_bridge("listener-tls", central, (const char *[]) { tls_listen, NULL });
        start_bridge("listener-plain", central, (const char *[]) { plain_listen, "--insecure-plaintext", NULL });
        start_bridge("site-tls", site_tls, (const char *[]) { tls_up, NULL });
        start_bridge("site-plain", site_plain, (const char *[]) { plain_up, "--insecure-plaintext", NULL });

        snprintf(central_tcp, sizeof central_tcp, "tcp:host=127.0.0.1,port=%u", tcp_port);
        c_tcp = connect_to(central_tcp, true);
        s_tls = connect_to(site_tls, false);
        s_plain = connect_to(site_plain, false);
        wait_owned(s_tls, true);
        wait_owned(s_plain, true);

        r = sd_bus_call_method(c_unix, "org.outpost.Outpost1", "/org/outpost/Outpost1/users",
                               "org.outpost.Outpost1.Users", "CreateUser", NULL, &reply, "a{sv}", 1, "name", "s", "bench");
        if (r < 0 || sd_bus_message_read(reply, "ss", &id, NULL) < 0)
                die("cannot create a user: %s", strerror(-r));
        id = strdup(id);
        sd_bus_message_unref(reply);

        if (argc > 1)
                rounds = (unsigned) atoi(argv[1]);

        Figure f[5] = {
                { "get-user-direct-tcp" }, { "get-user-1hop-tls" }, { "get-user-1hop-plain" },
                { "get-central" }, { "get-cached-site-tls" },
        };
        sd_bus *buses[5] = { c_tcp, s_tls, s_plain, c_unix, s_tls };
        CallFunc calls[5] = { call_get_user, call_get_user, call_get_user, call_get_property, call_get_property };
        void *data[5] = { id, id, id, NULL, NULL };

        measure(rounds, per_round, 5, f, buses, calls, data);

        printf("# %u calls per figure in %u interleaved rounds, loopback, 2 CPUs shared with the bus and daemons\n",
               rounds * per_round, rounds);
        printf("%-26s %10s %10s  %-24s %6s  %-6s  %s\n", "figure", "median_us", "p99_us", "baseline", "ratio",
               "target", "result");
        for (unsigned i = 0; i < 5; i++)
                if (i == 0 || i == 3)
                        printf("%-26s %10.1f %10.1f  %-24s %6s  %-6s  %s\n", f[i].name, f[i].median, f[i].p99, "-", "-",
                               "-", "-");
        print(&f[1], &f[0], 3.0);
        print(&f[1], &f[2], 1.3);
        print(&f[4], &f[3], 1.2);

        sd_bus_flush_close_unref(c_tcp);
        sd_bus_flush_close_unref(s_tls);
        sd_bus_flush_close_unref(s_plain);
        sd_bus_flush_close_unref(c_unix);
        free(id);
        free(central);
        free(site_tls);
        free(site_plain);
        return EXIT_SUCCESS;
}
