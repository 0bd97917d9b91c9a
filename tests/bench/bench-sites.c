/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-sites: one listener against many simulated sites.
 *
 * Each simulated site is what a site's importer is to central's listener:
 * a TLS link made with the bridge's own link code, D-Bus over it, Hello,
 * a heartbeat Ping every second, one presence hold, and GetUser calls at a
 * fixed rate per site. All sites run on one sd-event loop in this process,
 * so thousands of them cost a few MB here, not thousands of bridges.
 *
 * The run: a private system-like bus with the stock limits (dbus-daemon's
 * built-in ones, as system.conf keeps them: 256 connections per account,
 * 128 pending replies per connection), the real outpostd and the real
 * outpost-bridge as the listener. Then
 *   1. GetUser latency through the listener with one site (the baseline);
 *   2. the sites connect, in waves (not a storm yet);
 *   3. idle: listener RSS per peer, listener connections to its bus;
 *   4. every site calls at the same per-site rate: latency and CPU;
 *   5. the listener is restarted: every site reconnects with the
 *      importer's jittered backoff, and the time until all are back and
 *      the handshakes lost on the way are counted.
 * The figures are printed as a table with the targets of DESIGN.md §5.
 *
 * All sites connect from 127.0.0.1, so the listener's per-address cap on
 * handshakes is raised for this run: in the field they come from many
 * addresses, and that cap is about floods from one. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <systemd/sd-event.h>

#include "bench-util.h"
#include "link.h"

#define LINK_IFACE "org.outpost.BridgeLink1"
#define N_USERS    64

#define _cleanup_(f) __attribute__((cleanup(f)))

typedef struct Gen Gen;

typedef struct Site {
        Gen *gen;
        unsigned index;
        Link *link;
        sd_bus *bus;
        sd_bus_slot *call_slot, *ping_slot;
        sd_event_source *call_timer, *ping_timer, *reconnect_timer;
        uint64_t call_started;
        unsigned attempt;
        unsigned calls_ok, calls_failed;        /* while measuring */
        bool up;
} Site;

struct Gen {
        sd_event *event;
        LinkAddress address;
        LinkConfig config;
        Site *sites;
        unsigned n_sites;
        unsigned n_up, n_refused, n_dropped, n_skipped;
        bool calling, reconnect;
        double rate;                    /* GetUser calls per second per site */
        char first_error[256];
        BenchSamples samples;
        char user_ids[N_USERS][64];
};

/* Options, with defaults that fit a 2-CPU machine in a few minutes. */
static unsigned opt_sites = 2000;
static double opt_rate = 2.0;
static unsigned opt_baseline_sec = 60, opt_load_sec = 30;

static char *workdir;
static char *bus_address;
static pid_t bus_pid, daemon_pid, listener_pid;
static unsigned listen_port;
static sd_bus *admin;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double random_unit(void) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return (double) (rng_state >> 11) / (double) (1ull << 53);
}

static void site_schedule_reconnect(Site *s);
static void site_connect(Site *s);

/* The listener's */

static int listener_start(void) {
        char a[600], ca[600], cert[600], key[600], conf[600], listen[100];
        char *argv[10];
        int log_fd, r;

        snprintf(a, sizeof a, "--address=%s", bus_address);
        snprintf(ca, sizeof ca, "--tls-ca=%s/certs/ca.pem", workdir);
        snprintf(cert, sizeof cert, "--tls-cert=%s/certs/server.pem", workdir);
        snprintf(key, sizeof key, "--tls-key=%s/certs/server.key", workdir);
        snprintf(conf, sizeof conf, "--config=%s/listener.conf", workdir);
        snprintf(listen, sizeof listen, "--listen=tls:host=127.0.0.1,port=%u", listen_port);
        argv[0] = (char *) bench_env_or("OUTPOST_BRIDGE", "./outpost-bridge");
        argv[1] = a, argv[2] = ca, argv[3] = cert, argv[4] = key, argv[5] = conf, argv[6] = listen;
        argv[7] = NULL;
        r = bench_open_log(workdir, "listener", &log_fd);
        if (r < 0)
                return r;
        r = bench_spawn(argv, -1, log_fd, &listener_pid);
        close(log_fd);
        return r;
}

static int write_file(const char *name, const char *text) {
        char path[600];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", workdir, name);
        f = fopen(path, "we");
        if (!f)
                return bench_log_errno(-errno, "cannot write %s", path);
        fputs(text, f);
        return fclose(f) == 0 ? 0 : bench_log_errno(-errno, "cannot write %s", path);
}

/* kB of VmRSS, or a negative errno. */
static long rss_kib(pid_t pid) {
        char path[64], line[256];
        long kib = -ENOENT;
        FILE *f;

        snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof line, f))
                if (sscanf(line, "VmRSS: %ld", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}

/* User plus system CPU time of PID, in seconds. */
static double cpu_seconds(pid_t pid) {
        char path[64], buf[2048];
        unsigned long utime = 0, stime = 0;
        const char *p;
        FILE *f;
        size_t n;

        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        p = strrchr(buf, ')');  /* the command name may hold spaces */
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
                return 0;
        return (double) (utime + stime) / (double) sysconf(_SC_CLK_TCK);
}

/* Connections of PID to the bus: its unique names. */
static int count_bus_connections(pid_t pid) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *name;
        int n = 0, r;

        r = sd_bus_call_method(admin, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "ListNames", &error, &reply, NULL);
        if (r < 0)
                return bench_log_errno(r, "ListNames: %s", error.message ?: "");
        r = sd_bus_message_enter_container(reply, 'a', "s");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(reply, "s", &name)) > 0) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *owner = NULL;
                uint32_t owner_pid;

                if (name[0] != ':')
                        continue;
                if (sd_bus_call_method(admin, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                       "org.freedesktop.DBus", "GetConnectionUnixProcessID", NULL, &owner,
                                       "s", name) < 0)
                        continue;
                if (sd_bus_message_read(owner, "u", &owner_pid) > 0 && (pid_t) owner_pid == pid)
                        n++;
        }
        return r < 0 ? r : n;
}

/* A site */

static void site_down(Site *s) {
        s->call_slot = sd_bus_slot_unref(s->call_slot);
        s->ping_slot = sd_bus_slot_unref(s->ping_slot);
        s->call_timer = sd_event_source_disable_unref(s->call_timer);
        s->ping_timer = sd_event_source_disable_unref(s->ping_timer);
        if (s->bus) {
                sd_bus_close(s->bus);
                s->bus = sd_bus_unref(s->bus);
        }
        if (s->up)
                s->gen->n_up--;
        s->up = false;
}

static void site_drop(Site *s) {
        site_down(s);
        s->link = link_free(s->link);
        s->gen->n_dropped++;
        site_schedule_reconnect(s);
}

static int on_get_user(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Site *s = userdata;

        s->call_slot = sd_bus_slot_unref(s->call_slot);
        if (!s->gen->calling)
                return 0;
        if (sd_bus_message_is_method_error(m, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(m);

                s->calls_failed++;
                if (!s->gen->first_error[0])
                        snprintf(s->gen->first_error, sizeof s->gen->first_error, "%s: %s", e->name, e->message);
                return 0;
        }
        s->calls_ok++;
        (void) bench_samples_add(&s->gen->samples, bench_now_nsec() - s->call_started);
        return 0;
}

static int on_call_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        Site *s = userdata;
        const char *id = s->gen->user_ids[(unsigned) (random_unit() * N_USERS)];

        (void) sd_event_source_set_time_relative(es, (uint64_t) (1e6 / s->gen->rate));
        if (!s->gen->calling || !s->up)
                return 0;
        if (s->call_slot) {
                s->gen->n_skipped++;    /* the last call has not come back yet */
                return 0;
        }
        s->call_started = bench_now_nsec();
        if (sd_bus_call_method_async(s->bus, &s->call_slot, BENCH_OUTPOST_NAME, ROOT_PATH "/users",
                                     "org.outpost.Outpost1.Users", "GetUser", on_get_user, s, "s", id) < 0)
                s->calls_failed++;
        return 0;
}

static int on_ping(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Site *s = userdata;

        s->ping_slot = sd_bus_slot_unref(s->ping_slot);
        if (sd_bus_message_is_method_error(m, NULL))
                site_drop(s);   /* no answer within 2 s: the link is dead, as an importer decides */
        return 0;
}

static int on_ping_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        Site *s = userdata;

        (void) sd_event_source_set_time_relative(es, 1000000);
        if (s->ping_slot)
                return 0;
        if (sd_bus_call_method_async(s->bus, &s->ping_slot, NULL, ROOT_PATH, LINK_IFACE, "Ping", on_ping, s,
                                     NULL) < 0)
                site_drop(s);
        return 0;
}

static int site_add_timer(Site *s, sd_event_source **ret, uint64_t first_usec, sd_event_time_handler_t handler) {
        int r;

        r = sd_event_add_time_relative(s->gen->event, ret, CLOCK_MONOTONIC, first_usec, 10000, handler, s);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(*ret, SD_EVENT_ON);
}

static int site_start_bus(Site *s, int fd) {
        const char *user = s->gen->user_ids[s->index % N_USERS];
        int r;

        r = sd_bus_new(&s->bus);
        if (r < 0)
                return r;
        r = sd_bus_set_fd(s->bus, fd, fd);
        if (r < 0)
                return r;
        r = sd_bus_set_anonymous(s->bus, true);
        if (r < 0)
                return r;
        r = sd_bus_start(s->bus);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(s->bus, s->gen->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        r = sd_bus_call_method_async(s->bus, NULL, NULL, ROOT_PATH, LINK_IFACE, "Hello", NULL, NULL, "as", 0);
        if (r < 0)
                return r;
        /* One hold per site, as a site with someone logged in has. */
        r = sd_bus_call_method_async(s->bus, NULL, BENCH_OUTPOST_NAME, ROOT_PATH "/presence",
                                     "org.outpost.Outpost1.Presence", "GoOnline", NULL, NULL, "su", user, 0);
        if (r < 0)
                return r;
        r = site_add_timer(s, &s->ping_timer, 1000000, on_ping_timer);
        if (r < 0)
                return r;
        return site_add_timer(s, &s->call_timer, (uint64_t) (random_unit() * 1e6 / s->gen->rate), on_call_timer);
}

static void on_site_ready(Link *link, int fd, const char *peer, const char *error, void *userdata) {
        Site *s = userdata;

        if (fd < 0) {
                s->link = NULL;         /* it frees itself */
                s->gen->n_refused++;
                site_schedule_reconnect(s);
                return;
        }
        if (site_start_bus(s, fd) < 0) {
                site_drop(s);
                return;
        }
        s->up = true;
        s->attempt = 0;
        s->gen->n_up++;
}

static void on_site_closed(Link *link, const char *reason, void *userdata) {
        Site *s = userdata;

        s->link = NULL;                 /* it frees itself */
        site_down(s);
        s->gen->n_dropped++;
        site_schedule_reconnect(s);
}

static void site_connect(Site *s) {
        if (link_connect(s->gen->event, &s->gen->address, &s->gen->config, on_site_ready, on_site_closed, s,
                         &s->link) < 0) {
                s->link = NULL;
                s->gen->n_refused++;
                site_schedule_reconnect(s);
        }
}

static int on_reconnect_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        Site *s = userdata;

        s->reconnect_timer = sd_event_source_disable_unref(s->reconnect_timer);
        site_connect(s);
        return 0;
}

/* As an importer with the default settings: 1 s·2^attempt, at most 30 s,
 * then ±25 %. */
static void site_schedule_reconnect(Site *s) {
        double ms = 1000;

        if (!s->gen->reconnect)
                return;
        for (unsigned i = 0; i < s->attempt && ms < 30000; i++)
                ms *= 2;
        ms = fmin(ms, 30000) * (0.75 + 0.5 * random_unit());
        s->attempt++;
        s->reconnect_timer = sd_event_source_disable_unref(s->reconnect_timer);
        (void) site_add_timer(s, &s->reconnect_timer, (uint64_t) (ms * 1000), on_reconnect_timer);
}

static void site_close(Site *s) {
        site_down(s);
        s->link = link_free(s->link);
        s->reconnect_timer = sd_event_source_disable_unref(s->reconnect_timer);
}

/* The loop */

/* Run the loop until CONDITION holds or TIMEOUT_USEC passed; false then. */
static bool run_until(Gen *g, bool (*condition)(Gen *g, void *data), void *data, uint64_t timeout_usec) {
        uint64_t end = bench_now_usec() + timeout_usec;

        while (!condition || !condition(g, data)) {
                if (bench_interrupted)
                        bench_die("interrupted");
                if (bench_now_usec() >= end)
                        return condition == NULL;
                if (sd_event_run(g->event, 100000) < 0)
                        bench_die("the event loop failed");
        }
        return true;
}

static bool all_up(Gen *g, void *data) {
        return g->n_up >= *(unsigned *) data;
}

static bool none_up(Gen *g, void *data) {
        return g->n_up == 0;
}

static bool wave_settled(Gen *g, void *data) {
        unsigned *wave = data;  /* [first, end) */

        for (unsigned i = wave[0]; i < wave[1]; i++)
                if (!g->sites[i].up && !g->sites[i].reconnect_timer)
                        return false;
        return true;
}

/* Connect sites [0, N) in waves of at most the listener's handshake cap,
 * each wave once the last has settled. */
static void connect_in_waves(Gen *g, unsigned n) {
        for (unsigned first = 0; first < n; first += 32) {
                unsigned wave[2] = { first, first + 32 < n ? first + 32 : n };

                for (unsigned i = wave[0]; i < wave[1]; i++)
                        site_connect(&g->sites[i]);
                if (!run_until(g, wave_settled, wave, 30000000))
                        bench_die("sites %u-%u did not connect within 30 s", wave[0], wave[1] - 1);
        }
}

static void measure_calls(Gen *g, unsigned seconds, double *ret_p50_us, double *ret_p99_us) {
        double p50, p99;

        for (unsigned i = 0; i < g->n_sites; i++)
                g->sites[i].calls_ok = g->sites[i].calls_failed = 0;
        bench_samples_free(&g->samples);
        g->calling = true;
        (void) run_until(g, NULL, NULL, (uint64_t) seconds * 1000000);
        g->calling = false;
        if (g->samples.n == 0)
                bench_die("no call came back");
        bench_samples_stats(&g->samples, 0.99, &p50, &p99);
        *ret_p50_us = p50 / 1000;
        *ret_p99_us = p99 / 1000;
}

/* Set-up */

static void create_users(Gen *g) {
        for (unsigned i = 0; i < N_USERS; i++) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                char name[32];
                const char *id, *tag;

                snprintf(name, sizeof name, "site-user-%u", i);
                if (sd_bus_call_method(admin, BENCH_OUTPOST_NAME, ROOT_PATH "/users", "org.outpost.Outpost1.Users",
                                       "CreateUser", &error, &reply, "a{sv}", 1, "name", "s", name) < 0 ||
                    sd_bus_message_read(reply, "ss", &id, &tag) < 0)
                        bench_die("CreateUser: %s", error.message ?: "bad reply");
                snprintf(g->user_ids[i], sizeof g->user_ids[i], "%s", id);
        }
}

static void raise_fd_limit(void) {
        struct rlimit rl = { 1 << 17, 1 << 17 };

        if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
}

static void setup(Gen *g) {
        char path[700], *cmd = NULL, text[400];
        const char *certs = bench_env_or("MAKE_TEST_CERTS", "tests/common/make-test-certs.sh");
        int r;

        raise_fd_limit();
        if (bench_make_dir("outpost-bench-sites", &workdir) < 0)
                bench_die("cannot make a directory");
        if (asprintf(&cmd, "sh '%s' '%s/certs' >/dev/null", certs, workdir) < 0 || system(cmd) != 0)
                bench_die("cannot make certificates with %s", certs);
        free(cmd);
        if (bench_start_bus(workdir, "central", NULL, &bus_pid, &bus_address) < 0)
                bench_die("cannot start the bus");
        if (bench_start_daemon(workdir, bus_address, &daemon_pid) < 0)
                bench_die("cannot start outpostd");
        if (bench_connect(bus_address, false, &admin) < 0 || bench_wait_for_name(admin, &daemon_pid, 20000000) < 0)
                bench_die("outpostd did not come up");
        create_users(g);

        if (bench_free_tcp_port(&listen_port) < 0)
                bench_die("no port");
        snprintf(text, sizeof text, "[Bridge]\nmax-connections-per-address=100000\n");
        if (write_file("listener.conf", text) < 0 || listener_start() < 0)
                bench_die("cannot start the listener");
        snprintf(path, sizeof path, "tls:host=127.0.0.1,port=%u", listen_port);
        if (link_address_parse(path, &g->address, NULL) < 0)
                bench_die("bad address %s", path);
        r = asprintf(&g->config.ca_file, "%s/certs/ca.pem", workdir);
        r = r < 0 ? r : asprintf(&g->config.cert_file, "%s/certs/site1.pem", workdir);
        r = r < 0 ? r : asprintf(&g->config.key_file, "%s/certs/site1.key", workdir);
        if (r < 0)
                bench_die("out of memory");
}

static bool listener_listening(Gen *g, void *data) {
        return bench_tcp_port_open(listen_port);
}

/* The run */

typedef struct Figures {
        unsigned sites_up, sites_served;       /* linked; every call answered */
        int bus_connections;
        double rss_per_peer_kib;
        double base_p50, base_p99, load_p50, load_p99, load_cpu;
        double storm_sec;
        unsigned storm_refused, storm_up;
} Figures;

static void run(Gen *g, Figures *f) {
        long rss0, rss_n;
        double cpu0, t0;
        unsigned one = 1;

        (void) run_until(g, listener_listening, NULL, 20000000);
        (void) run_until(g, NULL, NULL, 500000);
        rss0 = rss_kib(listener_pid);

        fprintf(stderr, "bench-sites: baseline, one site, %u s\n", opt_baseline_sec);
        site_connect(&g->sites[0]);
        if (!run_until(g, all_up, &one, 30000000))
                bench_die("one site could not connect");
        measure_calls(g, opt_baseline_sec, &f->base_p50, &f->base_p99);
        site_close(&g->sites[0]);

        fprintf(stderr, "bench-sites: connecting %u sites\n", g->n_sites);
        connect_in_waves(g, g->n_sites);
        f->sites_up = g->n_up;
        if (f->sites_up < g->n_sites)
                fprintf(stderr, "bench-sites: only %u sites are connected\n", f->sites_up);
        (void) run_until(g, NULL, NULL, 3000000);
        rss_n = rss_kib(listener_pid);
        f->rss_per_peer_kib = (double) (rss_n - rss0) / g->n_sites;
        f->bus_connections = count_bus_connections(listener_pid);

        fprintf(stderr, "bench-sites: %u sites calling, %u s\n", g->n_up, opt_load_sec);
        cpu0 = cpu_seconds(listener_pid);
        t0 = bench_now_usec() / 1e6;
        measure_calls(g, opt_load_sec, &f->load_p50, &f->load_p99);
        f->load_cpu = (cpu_seconds(listener_pid) - cpu0) / (bench_now_usec() / 1e6 - t0);
        for (unsigned i = 0; i < g->n_sites; i++)
                if (g->sites[i].calls_ok > 0 && g->sites[i].calls_failed == 0)
                        f->sites_served++;
        if (g->first_error[0])
                fprintf(stderr, "bench-sites: calls failed, the first with %s\n", g->first_error);

        fprintf(stderr, "bench-sites: restarting the listener\n");
        g->reconnect = true;
        (void) bench_stop(&listener_pid, "the listener");
        if (!run_until(g, none_up, NULL, 20000000))
                bench_die("%u sites did not notice the listener leave", g->n_up);
        if (listener_start() < 0)
                bench_die("cannot restart the listener");
        /* Attempts refused before it listens again are not the storm's. */
        while (!bench_tcp_port_open(listen_port))
                (void) run_until(g, NULL, NULL, 20000);
        g->n_refused = 0;
        t0 = bench_now_usec() / 1e6;
        f->storm_up = run_until(g, all_up, &g->n_sites, 60000000) ? g->n_sites : g->n_up;
        f->storm_sec = bench_now_usec() / 1e6 - t0;
        f->storm_refused = g->n_refused;
}

static void print_figures(const Figures *f, unsigned n) {
        BenchTable t = { .name = 44, .value = 12, .baseline = 12, .target = 10 };
        char v[64], b[64], name[80];

        printf("\nbench-sites: %u simulated sites, %.1f GetUser/s each\n\n", n, opt_rate);
        bench_print_header(&t, "value", "");
        snprintf(v, sizeof v, "%u/%u", f->sites_served, n);
        bench_print_row(&t, "sites served (every call answered)", v, "", "-", 0, "all", f->sites_served == n);
        snprintf(v, sizeof v, "%d", f->bus_connections);
        bench_print_row(&t, "listener connections to its bus", v, "", "-", 0, "<= 16", f->bus_connections <= 16);
        snprintf(v, sizeof v, "%.1f KiB", f->rss_per_peer_kib);
        bench_print_row(&t, "listener RSS per idle peer", v, "", "-", 0, "<= 32 KiB", f->rss_per_peer_kib <= 32);
        snprintf(name, sizeof name, "GetUser p50 at %u peers", n);
        snprintf(v, sizeof v, "%.0f us", f->load_p50);
        snprintf(b, sizeof b, "%.0f us", f->base_p50);
        bench_print_row(&t, name, v, "", b, f->load_p50 / f->base_p50, "-", -1);
        snprintf(name, sizeof name, "GetUser p99 at %u peers (baseline 1 peer)", n);
        snprintf(v, sizeof v, "%.0f us", f->load_p99);
        snprintf(b, sizeof b, "%.0f us", f->base_p99);
        bench_print_row(&t, name, v, "", b, f->load_p99 / f->base_p99, "<= 2", f->load_p99 <= 2 * f->base_p99);
        snprintf(v, sizeof v, "%.0f %%", f->load_cpu * 100);
        bench_print_row(&t, "listener CPU under that load", v, "", "-", 0, "-", -1);
        snprintf(v, sizeof v, "%.1f s", f->storm_sec);
        snprintf(name, sizeof name, "restart: %u/%u sites back", f->storm_up, n);
        bench_print_row(&t, name, v, "", "-", 0, "<= 30 s", f->storm_up == n && f->storm_sec <= 30);
        snprintf(v, sizeof v, "%u", f->storm_refused);
        bench_print_row(&t, "restart: connection attempts that failed", v, "", "-", 0, "0", f->storm_refused == 0);
}

static void parse_options(int argc, char **argv) {
        static const struct option options[] = {
                { "sites", required_argument, NULL, 's' },
                { "rate", required_argument, NULL, 'r' },
                { "baseline-sec", required_argument, NULL, 'b' },
                { "load-sec", required_argument, NULL, 'l' },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 's': opt_sites = strtoul(optarg, NULL, 10); break;
                case 'r': opt_rate = strtod(optarg, NULL); break;
                case 'b': opt_baseline_sec = strtoul(optarg, NULL, 10); break;
                case 'l': opt_load_sec = strtoul(optarg, NULL, 10); break;
                default:
                        fprintf(stderr, "usage: bench-sites [--sites=N] [--rate=CALLS_PER_SEC] "
                                "[--baseline-sec=S] [--load-sec=S]\n");
                        exit(2);
                }
        if (opt_sites == 0 || !(opt_rate > 0) || opt_baseline_sec == 0 || opt_load_sec == 0)
                bench_die("--sites, --rate, --baseline-sec and --load-sec must be positive");
}

int main(int argc, char **argv) {
        Gen g = { .rate = 0 };
        Figures f = {};

        bench_init("bench-sites");
        parse_options(argc, argv);
        g.rate = opt_rate;
        g.n_sites = opt_sites;
        g.sites = calloc(opt_sites, sizeof(Site));
        if (!g.sites || sd_event_new(&g.event) < 0)
                bench_die("out of memory");
        for (unsigned i = 0; i < opt_sites; i++)
                g.sites[i] = (Site) { .gen = &g, .index = i };

        setup(&g);
        run(&g, &f);
        print_figures(&f, opt_sites);

        g.reconnect = false;
        for (unsigned i = 0; i < opt_sites; i++)
                site_close(&g.sites[i]);
        admin = sd_bus_flush_close_unref(admin);
        (void) bench_stop(&listener_pid, "the listener");
        (void) bench_stop(&daemon_pid, "outpostd");
        (void) bench_stop(&bus_pid, "the bus");
        bench_remove_dir(workdir);
        return 0;
}
