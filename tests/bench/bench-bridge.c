/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-bridge: what one bridge hop costs, against baselines measured in
 * the same run (issue 4):
 *   - GetUser through one hop over TLS, against GetUser made directly to
 *     the central bus over dbus-daemon's own tcp: transport (target ≤ 3×);
 *   - the same hop over TLS against plain TCP (target ≤ 1.3×);
 *   - a cached property Get at the site against a Get at central (≤ 1.2×);
 *   - with 20 ms added each way by a delay proxy: a cached Get at the site
 *     (< 1 ms), and what the relay adds to a GetUser beyond the round trip
 *     (≤ 1 ms), against GetUser over dbus-daemon's tcp: through the same
 *     kind of proxy;
 *   - event throughput to 10 subscribers at the site against 10 at central
 *     (≥ 0.5×), with 64 Publish calls in flight.
 * Everything runs on loopback: a central bus (unix and tcp:) with outpostd
 * and three listeners (TLS, plain, TLS behind the delay proxy), and three
 * site buses, each with an importer. Prints one line per figure: median
 * and p99 in µs (or a rate), the baseline, the ratio and the target. A
 * MISS is a finding, not a failure. */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define MAX_CHILDREN 16
#define STARTUP_TIMEOUT_USEC (20ULL * 1000000ULL)
#define CPU_CALLS 4000

static pid_t children[MAX_CHILDREN];
static unsigned n_children;
static pid_t main_pid;
static char *workdir;

static void cleanup(void) {
        /* A forked delay proxy that dies must not take the run with it. */
        if (getpid() != main_pid)
                return;
        for (unsigned i = 0; i < n_children; i++)
                (void) bench_stop(&children[i], "a child");
        bench_remove_dir(workdir);
        free(workdir);
}

/* Ctrl-C or SIGTERM: end through the clean-up, which stops the children
 * and removes the directory. */
static void check_interrupted(void) {
        if (bench_interrupted)
                bench_die("interrupted");
}

static void add_child(pid_t pid) {
        if (n_children == MAX_CHILDREN)
                bench_die("more than %u children", MAX_CHILDREN);
        children[n_children++] = pid;
}

/* Before the others: the importers that are not measured any more. */
static void stop_child(pid_t pid, const char *what) {
        for (unsigned i = 0; i < n_children; i++)
                if (children[i] == pid)
                        (void) bench_stop(&children[i], what);
}

/* Start ARGV with its output in NAME.log. */
static pid_t spawn(const char *name, char *const argv[]) {
        pid_t pid;
        int fd, r;

        r = bench_open_log(workdir, name, &fd);
        if (r >= 0) {
                r = bench_spawn(argv, -1, fd, &pid);
                close(fd);
        }
        if (r < 0)
                bench_die("cannot start %s", argv[0]);
        add_child(pid);
        return pid;
}

/* A system-like bus; with TCP_PORT > 0 it also listens on tcp: with
 * ANONYMOUS authentication, for the baseline. */
static char *start_bus(const char *name, unsigned tcp_port) {
        char tcp[200] = "", *address;
        pid_t pid;

        if (tcp_port)
                snprintf(tcp, sizeof tcp,
                         "  <listen>tcp:host=127.0.0.1,port=%u</listen>\n"
                         "  <auth>ANONYMOUS</auth>\n"
                         "  <allow_anonymous/>\n", tcp_port);
        if (bench_start_bus(workdir, name, tcp, &pid, &address) < 0)
                exit(EXIT_FAILURE);
        add_child(pid);
        return address;
}

static sd_bus *connect_to(const char *address, bool anonymous) {
        sd_bus *bus;

        if (bench_connect(address, anonymous, &bus) < 0)
                exit(EXIT_FAILURE);
        return bus;
}

static char *bridge_state(sd_bus *bus) {
        char *state = NULL;

        if (sd_bus_get_property_string(bus, "org.outpost.Outpost1", "/org/outpost/Outpost1/bridge",
                                       "org.outpost.Outpost1.Bridge", "State", NULL, &state) < 0)
                return NULL;
        return state;
}

/* Until the importer on BUS has its upstream: it owns the name before. */
static void wait_connected(sd_bus *bus) {
        for (int i = 0; i < 1000; i++) {
                char *state = bridge_state(bus);
                bool up = state && strcmp(state, "connected") == 0;

                free(state);
                if (up)
                        return;
                check_interrupted();
                usleep(20000);
        }
        bench_die("the importer did not connect");
}

static pid_t start_bridge(const char *name, const char *bus_address, const char *role_args[]) {
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
        return spawn(name, argv);
}

typedef struct Figure {
        const char *name;
        double median, p99;
} Figure;

typedef int (*CallFunc)(sd_bus *bus, void *userdata);

/* Time N calls, interleaving the figures round by round so that a burst of
 * load elsewhere hits a figure and its baseline alike. */
static void measure(unsigned rounds, unsigned per_round, unsigned n_figures, Figure *figures, sd_bus **buses,
                    CallFunc *calls, void **userdata) {
        BenchSamples samples[8] = {};

        for (unsigned f = 0; f < n_figures; f++) {
                for (unsigned i = 0; i < 100; i++)     /* warm up */
                        (void) calls[f](buses[f], userdata[f]);
        }
        for (unsigned r = 0; r < rounds; r++)
                for (unsigned f = 0; f < n_figures; f++)
                        for (unsigned i = 0; i < per_round; i++) {
                                uint64_t t0;

                                check_interrupted();
                                t0 = bench_now_nsec();
                                if (calls[f](buses[f], userdata[f]) < 0)
                                        bench_die("%s failed", figures[f].name);
                                if (bench_samples_add(&samples[f], bench_now_nsec() - t0) < 0)
                                        bench_die("out of memory");
                        }
        for (unsigned f = 0; f < n_figures; f++) {
                bench_samples_stats(&samples[f], 0.99, &figures[f].median, &figures[f].p99);
                figures[f].median /= 1000;
                figures[f].p99 /= 1000;
                bench_samples_free(&samples[f]);
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

/* ---- the delay proxy: a WAN on loopback --------------------------------- */

#define PROXY_PAIRS     8
#define PROXY_CHUNKS    1024

typedef struct Chunk {
        uint64_t due;           /* CLOCK_MONOTONIC ns */
        size_t len, done;
        char data[16384];
} Chunk;

/* Bytes read from one socket, each chunk held until its due time before
 * it is written to the other, in the order read. */
typedef struct Direction {
        int from, to;
        Chunk *ring[PROXY_CHUNKS];
        unsigned head, n;
} Direction;

/* Where a proxy connects: a TCP port on loopback, or a unix socket. */
typedef struct ProxyTarget {
        unsigned port;
        const char *path;
} ProxyTarget;

static int tcp_socket_to(unsigned port) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd >= 0 && connect(fd, (struct sockaddr *) &sin, sizeof sin) < 0) {
                close(fd);
                return -1;
        }
        if (fd >= 0)
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return fd;
}

static int socket_to(const ProxyTarget *target) {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        int fd;

        if (!target->path)
                return tcp_socket_to(target->port);
        if (strlen(target->path) >= sizeof sun.sun_path)
                return -1;
        strcpy(sun.sun_path, target->path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *) &sun, sizeof sun) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

static int tcp_listen_on(unsigned port) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                bench_die("socket: %s", strerror(errno));
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &sin, sizeof sin) < 0 || listen(fd, 16) < 0)
                bench_die("cannot listen on port %u: %s", port, strerror(errno));
        return fd;
}

/* What FROM has, into a new chunk due after DELAY; false at the end. */
static bool direction_read(Direction *d, uint64_t delay) {
        Chunk *c;
        ssize_t k;

        if (d->n == PROXY_CHUNKS)
                return true;    /* full: TCP holds the rest meanwhile */
        c = malloc(sizeof *c);
        if (!c)
                bench_die("out of memory");
        k = read(d->from, c->data, sizeof c->data);
        if (k <= 0) {
                free(c);
                return false;
        }
        c->due = bench_now_nsec() + delay;
        c->len = (size_t) k;
        c->done = 0;
        d->ring[(d->head + d->n++) % PROXY_CHUNKS] = c;
        return true;
}

/* Write out the chunks that are due (the sockets block: traffic here is
 * light); returns the ns until the next one is, or UINT64_MAX. */
static uint64_t direction_write_due(Direction *d) {
        while (d->n > 0) {
                Chunk *c = d->ring[d->head];
                uint64_t now = bench_now_nsec();
                ssize_t k;

                if (c->due > now)
                        return c->due - now;
                k = write(d->to, c->data + c->done, c->len - c->done);
                if (k <= 0)
                        return UINT64_MAX;      /* gone: the read side sees the end */
                c->done += (size_t) k;
                if (c->done < c->len)
                        continue;
                free(c);
                d->head = (d->head + 1) % PROXY_CHUNKS;
                d->n--;
        }
        return UINT64_MAX;
}

static void direction_clear(Direction *d) {
        for (; d->n > 0; d->n--, d->head = (d->head + 1) % PROXY_CHUNKS)
                free(d->ring[d->head]);
        *d = (Direction) {};
}

/* Pair I: directions 2I (client to target) and 2I + 1 (back). */
static void proxy_accept(int listen_fd, const ProxyTarget *target, Direction *dirs, bool *used) {
        int client = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC), fd, one = 1;
        unsigned i;

        if (client < 0)
                return;
        fd = socket_to(target);
        for (i = 0; i < PROXY_PAIRS && used[i]; i++)
                ;
        if (fd < 0 || i == PROXY_PAIRS) {
                close(client);
                if (fd >= 0)
                        close(fd);
                return;
        }
        (void) setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        dirs[2 * i] = (Direction) { .from = client, .to = fd };
        dirs[2 * i + 1] = (Direction) { .from = fd, .to = client };
        used[i] = true;
}

static void proxy_close_pair(Direction *dirs, bool *used, unsigned i) {
        close(dirs[2 * i].from);
        close(dirs[2 * i].to);
        direction_clear(&dirs[2 * i]);
        direction_clear(&dirs[2 * i + 1]);
        used[i] = false;
}

_Noreturn static void delay_proxy_run(int listen_fd, const ProxyTarget *target, uint64_t delay) {
        static Direction dirs[2 * PROXY_PAIRS];
        bool used[PROXY_PAIRS] = {};

        for (;;) {
                struct pollfd pfd[1 + 2 * PROXY_PAIRS] = { { .fd = listen_fd, .events = POLLIN } };
                unsigned which[1 + 2 * PROXY_PAIRS], n = 1;
                uint64_t wait = UINT64_MAX;
                struct timespec ts;

                for (unsigned j = 0; j < 2 * PROXY_PAIRS; j++)
                        if (used[j / 2]) {
                                uint64_t w = direction_write_due(&dirs[j]);
                                wait = w < wait ? w : wait;
                                pfd[n] = (struct pollfd) { .fd = dirs[j].from, .events = POLLIN };
                                which[n++] = j;
                        }
                ts = (struct timespec) { .tv_sec = (time_t) (wait / 1000000000ULL),
                                         .tv_nsec = (long) (wait % 1000000000ULL) };
                if (ppoll(pfd, n, wait == UINT64_MAX ? NULL : &ts, NULL) < 0 && errno != EINTR)
                        _exit(1);
                if (pfd[0].revents & POLLIN)
                        proxy_accept(listen_fd, target, dirs, used);
                for (unsigned k = 1; k < n; k++)
                        if (pfd[k].revents && used[which[k] / 2] && !direction_read(&dirs[which[k]], delay))
                                proxy_close_pair(dirs, used, which[k] / 2);
        }
}

/* A proxy on PORT to TARGET that holds every byte DELAY_MS, each way. */
static void start_delay_proxy(unsigned port, ProxyTarget target, unsigned delay_ms) {
        int fd = tcp_listen_on(port);
        pid_t pid = bench_fork();

        if (pid < 0)
                bench_die("fork: %s", strerror(-pid));
        if (pid == 0) {
                /* A peer that goes away must end its pair, not the proxy. */
                signal(SIGPIPE, SIG_IGN);
                delay_proxy_run(fd, &target, (uint64_t) delay_ms * 1000000ULL);
        }
        close(fd);
        add_child(pid);
}

/* ---- the shape of the path alone: a relay that only relays -------------- */

/* To tell what the bridges cost from what the path's shape costs: a hop
 * with as many processes between the site bus and central's bus as the
 * real one, doing the least they can. One process owns the name on its
 * site bus and copies each call, as it is, onto its connection to
 * central's bus over TCP; a second forwards those bytes to central's unix
 * socket, like the delay proxy with no delay, where the listener would
 * connect. No TLS, no socketpair, no checks, no cache. */

static int on_null_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        sd_bus_message *call = userdata, *m = NULL;
        int r;

        if (sd_bus_message_is_method_error(reply, NULL))
                r = sd_bus_reply_method_error(call, sd_bus_message_get_error(reply));
        else {
                r = sd_bus_message_new_method_return(call, &m);
                if (r >= 0)
                        r = sd_bus_message_copy(m, reply, true);
                if (r >= 0)
                        r = sd_bus_send(NULL, m, NULL);
                sd_bus_message_unref(m);
        }
        sd_bus_message_unref(call);
        if (r < 0)
                bench_die("the null relay cannot reply: %s", strerror(-r));
        return 1;
}

static int on_null_call(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        sd_bus *central = userdata;
        sd_bus_message *call = NULL;
        int r;

        if (!sd_bus_message_is_method_call(m, NULL, NULL))
                return 0;
        r = sd_bus_message_new_method_call(central, &call, BENCH_OUTPOST_NAME, sd_bus_message_get_path(m),
                                           sd_bus_message_get_interface(m), sd_bus_message_get_member(m));
        if (r >= 0)
                r = sd_bus_message_copy(call, m, true);
        if (r >= 0)
                r = sd_bus_call_async(central, NULL, call, on_null_reply, sd_bus_message_ref(m), 0);
        sd_bus_message_unref(call);
        if (r < 0)
                bench_die("the null relay cannot call central: %s", strerror(-r));
        return 1;
}

_Noreturn static void null_relay_run(const char *site, const char *central_address) {
        sd_bus *local, *central;
        sd_event *event;
        int r;

        if (bench_connect(site, false, &local) < 0 || bench_connect(central_address, false, &central) < 0)
                _exit(EXIT_FAILURE);
        r = sd_event_new(&event);
        if (r >= 0)
                r = sd_bus_attach_event(local, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_bus_attach_event(central, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_bus_add_fallback(local, NULL, "/org/outpost/Outpost1", on_null_call, central);
        if (r >= 0)
                r = sd_bus_request_name(local, BENCH_OUTPOST_NAME, 0);
        if (r >= 0)
                r = sd_event_loop(event);
        bench_log_errno(r, "the null relay failed");
        _exit(EXIT_FAILURE);
}

/* The relay on SITE and its proxy on PORT to central's unix socket
 * CENTRAL (an address "unix:path=…"). The relay authenticates with
 * EXTERNAL, which central's bus checks against the proxy's uid: both are
 * the benchmark's. */
static void start_null_hop(const char *site, unsigned port, const char *central) {
        char central_address[96];
        pid_t pid;

        if (strncmp(central, "unix:path=", strlen("unix:path=")) != 0)
                bench_die("not a unix socket address: %s", central);
        start_delay_proxy(port, (ProxyTarget) { .path = central + strlen("unix:path=") }, 0);
        snprintf(central_address, sizeof central_address, "tcp:host=127.0.0.1,port=%u", port);
        pid = bench_fork();
        if (pid < 0)
                bench_die("fork: %s", strerror(-pid));
        if (pid == 0)
                null_relay_run(site, central_address);
        add_child(pid);
}

/* ---- event fan-out ------------------------------------------------------ */

#define FANOUT_SUBSCRIBERS      10
#define FANOUT_IN_FLIGHT        64

typedef struct FanOut {
        sd_bus *publisher;
        const char *topic;
        unsigned total, sent, in_flight, failed;
        unsigned got[FANOUT_SUBSCRIBERS];
} FanOut;

static void fanout_publish_more(FanOut *f);

static int on_published(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        FanOut *f = userdata;

        f->in_flight--;
        if (sd_bus_message_is_method_error(m, NULL))
                f->failed++;
        fanout_publish_more(f);
        return 0;
}

static void fanout_publish_more(FanOut *f) {
        while (f->in_flight < FANOUT_IN_FLIGHT && f->sent < f->total) {
                if (sd_bus_call_method_async(f->publisher, NULL, "org.outpost.Outpost1", "/org/outpost/Outpost1/events",
                                             "org.outpost.Outpost1.Events", "Publish", on_published, f,
                                             "sa{sv}", f->topic, 1, "n", "u", f->sent) < 0)
                        bench_die("cannot publish");
                f->sent++;
                f->in_flight++;
        }
}

static int on_fanout_event(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        (*(unsigned *) userdata)++;
        return 0;
}

static bool fanout_done(const FanOut *f) {
        for (unsigned i = 0; i < FANOUT_SUBSCRIBERS; i++)
                if (f->got[i] < f->total)
                        return false;
        return f->in_flight == 0;
}

/* Publish TOTAL events at central, 64 in flight, until each of 10 new
 * subscribers on the bus at ADDRESS (central's or a site's) has them all:
 * deliveries/s. The subscribers exist only for the run, so that a run at
 * central does not also feed subscribers at the site. */
static double fanout_run(sd_bus *publisher, const char *address, const char *topic, unsigned total) {
        FanOut f = { .publisher = publisher, .topic = topic, .total = total };
        sd_bus *subs[FANOUT_SUBSCRIBERS];
        sd_event *event = NULL;
        uint64_t t0, deadline;

        if (sd_event_new(&event) < 0 || sd_bus_attach_event(publisher, event, 0) < 0)
                bench_die("cannot set up the fan-out loop");
        for (unsigned i = 0; i < FANOUT_SUBSCRIBERS; i++) {
                subs[i] = connect_to(address, false);
                if (sd_bus_match_signal(subs[i], NULL, NULL, "/org/outpost/Outpost1/events",
                                        "org.outpost.Outpost1.Events", "Event", on_fanout_event, &f.got[i]) < 0 ||
                    sd_bus_attach_event(subs[i], event, 0) < 0)
                        bench_die("cannot subscribe");
        }
        t0 = bench_now_nsec();
        deadline = t0 + 120ULL * 1000000000ULL;
        fanout_publish_more(&f);
        while (!fanout_done(&f)) {
                check_interrupted();
                if (bench_now_nsec() > deadline || f.failed)
                        bench_die("fan-out: %u of %u published (%u failed, %u in flight), first subscriber got %u",
                            f.sent, total, f.failed, f.in_flight, f.got[0]);
                if (sd_event_run(event, 1000000) < 0)
                        bench_die("fan-out loop failed");
        }
        t0 = bench_now_nsec() - t0;
        for (unsigned i = 0; i < FANOUT_SUBSCRIBERS; i++)
                sd_bus_flush_close_unref(subs[i]);
        sd_bus_detach_event(publisher);
        sd_event_unref(event);
        return (double) total * FANOUT_SUBSCRIBERS / ((double) t0 / 1e9);
}

static const BenchTable table = { .name = 26, .value = 10, .baseline = 24, .target = 7 };

/* A figure with no target of its own: a baseline, or part of one. */
static void print_plain(const Figure *f) {
        char m[32], p[32];

        snprintf(m, sizeof m, "%.1f", f->median);
        snprintf(p, sizeof p, "%.1f", f->p99);
        bench_print_row(&table, f->name, m, p, NULL, 0, NULL, -1);
}

/* F against BASE, at most TARGET times its median (no target: 0). NAME
 * is F's, or that of a second comparison of the figure on the row above. */
static void print_ratio(const char *name, const Figure *f, const Figure *base, double target) {
        double ratio = f->median / base->median;
        char m[32] = "", p[32] = "", t[32];

        if (name == f->name) {
                snprintf(m, sizeof m, "%.1f", f->median);
                snprintf(p, sizeof p, "%.1f", f->p99);
        }
        snprintf(t, sizeof t, "<=%.1f", target);
        bench_print_row(&table, name, m, p, base->name, ratio, target > 0 ? t : NULL,
                        target > 0 ? ratio <= target : -1);
}

static void print_absolute(const Figure *f, double target_us) {
        char m[32], p[32], t[32];

        snprintf(m, sizeof m, "%.1f", f->median);
        snprintf(p, sizeof p, "%.1f", f->p99);
        snprintf(t, sizeof t, "<%.0fus", target_us);
        bench_print_row(&table, f->name, m, p, NULL, 0, t, f->median < target_us);
}

/* What FIGURE adds to BASE, in µs, against an absolute target. */
static void print_added(const char *name, const Figure *f, const Figure *base, double target_us) {
        double added = f->median - base->median;
        char a[32], t[32];

        snprintf(a, sizeof a, "%.1f", added);
        snprintf(t, sizeof t, "<=%.0fus", target_us);
        bench_print_row(&table, name, a, "-", base->name, 0, t, added <= target_us);
}

/* Where a GetUser's time goes: the CPU each process on the path uses per
 * call, directly over tcp: and through the TLS hop. A figure's ratio says
 * how much slower; this says which process pays for it. */
typedef struct CpuUser {
        const char *name;
        pid_t pid;
        double usec[2];         /* per call: direct, through the hop */
} CpuUser;

/* CPU time PID has used so far, in µs: to the nanosecond from
 * /proc/PID/sched where the kernel keeps it, in clock ticks from
 * /proc/PID/stat otherwise. */
static double cpu_used_usec(pid_t pid) {
        char path[64], line[512];
        unsigned long utime, stime;
        double ms = -1;
        const char *p;
        FILE *f;

        snprintf(path, sizeof path, "/proc/%d/sched", (int) pid);
        f = fopen(path, "re");
        if (f) {
                while (ms < 0 && fgets(line, sizeof line, f))
                        if (sscanf(line, "se.sum_exec_runtime : %lf", &ms) != 1)
                                ms = -1;
                fclose(f);
                if (ms >= 0)
                        return ms * 1000;
        }
        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f || !fgets(line, sizeof line, f))
                bench_die("cannot read %s", path);
        fclose(f);
        /* utime and stime: fields 14 and 15, the comm in parentheses may hold spaces */
        p = strrchr(line, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
                bench_die("cannot parse %s", path);
        return (utime + stime) * 1e6 / (double) sysconf(_SC_CLK_TCK);
}

static void measure_cpu(sd_bus *buses[2], const char *id, CpuUser *users, unsigned n_users, unsigned calls) {
        double before[8];

        if (n_users > ELEMENTSOF(before))
                bench_die("at most %zu processes", ELEMENTSOF(before));
        for (unsigned b = 0; b < 2; b++) {
                for (unsigned i = 0; i < 100; i++)
                        (void) call_get_user(buses[b], (void *) id);
                for (unsigned u = 0; u < n_users; u++)
                        before[u] = cpu_used_usec(users[u].pid);
                for (unsigned i = 0; i < calls; i++) {
                        check_interrupted();
                        if (call_get_user(buses[b], (void *) id) < 0)
                                bench_die("GetUser failed");
                }
                for (unsigned u = 0; u < n_users; u++)
                        users[u].usec[b] = (cpu_used_usec(users[u].pid) - before[u]) / calls;
        }
}

static void print_cpu(const CpuUser *users, unsigned n_users, unsigned n_bridges) {
        double total[2] = {}, outside = 0;

        printf("%-26s %10s %10s\n", "process", "direct_us", "1hop_us");
        for (unsigned u = 0; u < n_users; u++) {
                printf("%-26s %10.1f %10.1f\n", users[u].name, users[u].usec[0], users[u].usec[1]);
                total[0] += users[u].usec[0];
                total[1] += users[u].usec[1];
        }
        printf("%-26s %10.1f %10.1f\n", "all", total[0], total[1]);
        for (unsigned u = n_bridges; u < n_users; u++)
                outside += users[u].usec[1];
        printf("# through the hop, the processes other than the two bridges use %.2f times the CPU of the whole "
               "direct call\n", outside / total[0]);
}

/* Deliveries/s to 10 subscribers at the site against 10 at central, the
 * median of 3 alternating rounds of TOTAL events each. */
static void measure_fanout(sd_bus *publisher, const char *central, const char *site, unsigned total) {
        double direct[3], relayed[3], rate_direct, rate_relayed, ratio;
        char d[32], s[32];

        (void) fanout_run(publisher, central, "bench/warm", total / 5);
        (void) fanout_run(publisher, site, "bench/warm", total / 5);
        for (unsigned r = 0; r < 3; r++) {
                direct[r] = fanout_run(publisher, central, "bench/central", total);
                relayed[r] = fanout_run(publisher, site, "bench/site", total);
        }
        rate_direct = bench_median(direct, 3);
        rate_relayed = bench_median(relayed, 3);
        ratio = rate_relayed / rate_direct;
        snprintf(d, sizeof d, "%.0f", rate_direct);
        snprintf(s, sizeof s, "%.0f", rate_relayed);
        bench_print_row(&table, "events-10-subs-central/s", d, "-", NULL, 0, NULL, -1);
        bench_print_row(&table, "events-10-subs-site/s", s, "-", "events-10-subs-central/s", ratio, ">=0.5",
                        ratio >= 0.5);
}

int main(int argc, char **argv) {
        unsigned base = 20000 + (unsigned) (getpid() % 20000);
        unsigned tcp_port = base, tls_port = base + 1, plain_port = base + 2;
        unsigned wan_tls_port = base + 3, wan_tcp_port = base + 4, null_port = base + 5;
        unsigned rounds = 10, per_round = 200;
        char *cmd, tls_listen[96], plain_listen[96], tls_up[96], plain_up[96], wan_up[96], *id = NULL;
        const char *outpostd = bench_env_or("OUTPOSTD", "./outpostd");
        const char *certs_script = bench_env_or("MAKE_TEST_CERTS", "tests/common/make-test-certs.sh");
        char *central, *site_tls, *site_plain, *site_wan, *site_null, central_tcp[96], central_tcp_wan[96];
        sd_bus *c_unix, *c_tcp, *s_tls, *s_plain, *c_tcp_wan, *s_wan, *s_null;
        pid_t plain_importer, wan_importer;
        sd_bus_message *reply = NULL;
        /* The two bridges first: print_cpu() adds up the others. */
        CpuUser cpu_users[] = {
                { "cpu-listener" }, { "cpu-importer" }, { "cpu-central-bus" }, { "cpu-site-bus" },
                { "cpu-outpostd" }, { "cpu-client", getpid() },
        };
        int r;

        bench_init("bench-bridge");
        main_pid = getpid();
        if (bench_make_dir("outpost-bench-bridge", &workdir) < 0)
                return EXIT_FAILURE;
        atexit(cleanup);

        if (asprintf(&cmd, "sh '%s' '%s/certs' >/dev/null", certs_script, workdir) < 0)
                bench_die("out of memory");
        if (system(cmd) != 0)
                bench_die("cannot make certificates with %s", certs_script);
        free(cmd);

        central = start_bus("central", tcp_port);
        cpu_users[2].pid = children[n_children - 1];
        site_tls = start_bus("site-tls", 0);
        cpu_users[3].pid = children[n_children - 1];
        site_plain = start_bus("site-plain", 0);
        site_wan = start_bus("site-wan", 0);
        site_null = start_bus("site-null", 0);
        {
                char a[600], s[600], c[600];
                snprintf(a, sizeof a, "--address=%s", central);
                snprintf(s, sizeof s, "--state-dir=%s/state", workdir);
                snprintf(c, sizeof c, "--config=%s/none.conf", workdir);
                char *daemon_argv[] = { (char *) outpostd, a, s, c, NULL };
                cpu_users[4].pid = spawn("outpostd", daemon_argv);
        }
        c_unix = connect_to(central, false);
        if (bench_wait_for_name(c_unix, NULL, STARTUP_TIMEOUT_USEC) < 0)
                return EXIT_FAILURE;

        snprintf(tls_listen, sizeof tls_listen, "--listen=tls:host=127.0.0.1,port=%u", tls_port);
        snprintf(plain_listen, sizeof plain_listen, "--listen=tcp:host=127.0.0.1,port=%u", plain_port);
        snprintf(tls_up, sizeof tls_up, "--upstream=tls:host=127.0.0.1,port=%u", tls_port);
        snprintf(plain_up, sizeof plain_up, "--upstream=tcp:host=127.0.0.1,port=%u", plain_port);
        cpu_users[0].pid = start_bridge("listener-tls", central, (const char *[]) { tls_listen, NULL });
        start_bridge("listener-plain", central, (const char *[]) { plain_listen, "--insecure-plaintext", NULL });
        cpu_users[1].pid = start_bridge("site-tls", site_tls, (const char *[]) { tls_up, NULL });
        plain_importer = start_bridge("site-plain", site_plain, (const char *[]) { plain_up, "--insecure-plaintext", NULL });
        /* 20 ms each way between the WAN site and central, and between the
         * baseline's client and central's tcp: */
        start_delay_proxy(wan_tls_port, (ProxyTarget) { .port = tls_port }, 20);
        start_delay_proxy(wan_tcp_port, (ProxyTarget) { .port = tcp_port }, 20);
        snprintf(wan_up, sizeof wan_up, "--upstream=tls:host=127.0.0.1,port=%u", wan_tls_port);
        wan_importer = start_bridge("site-wan", site_wan, (const char *[]) { wan_up, NULL });

        snprintf(central_tcp, sizeof central_tcp, "tcp:host=127.0.0.1,port=%u", tcp_port);
        c_tcp = connect_to(central_tcp, true);
        s_tls = connect_to(site_tls, false);
        s_plain = connect_to(site_plain, false);
        s_wan = connect_to(site_wan, false);
        snprintf(central_tcp_wan, sizeof central_tcp_wan, "tcp:host=127.0.0.1,port=%u", wan_tcp_port);
        c_tcp_wan = connect_to(central_tcp_wan, true);
        wait_connected(s_tls);
        wait_connected(s_plain);
        wait_connected(s_wan);
        start_null_hop(site_null, null_port, central);
        s_null = connect_to(site_null, false);
        if (bench_wait_for_name(s_null, NULL, STARTUP_TIMEOUT_USEC) < 0)
                return EXIT_FAILURE;

        r = sd_bus_call_method(c_unix, "org.outpost.Outpost1", "/org/outpost/Outpost1/users",
                               "org.outpost.Outpost1.Users", "CreateUser", NULL, &reply, "a{sv}", 1, "name", "s", "bench");
        if (r < 0 || sd_bus_message_read(reply, "ss", &id, NULL) < 0)
                bench_die("cannot create a user: %s", strerror(-r));
        id = strdup(id);
        sd_bus_message_unref(reply);

        if (argc > 1)
                rounds = (unsigned) atoi(argv[1]);

        Figure f[6] = {
                { "get-user-direct-tcp" }, { "get-user-1hop-tls" }, { "get-user-1hop-plain" },
                { "get-central" }, { "get-cached-site-tls" }, { "get-user-null-hop" },
        };
        sd_bus *buses[6] = { c_tcp, s_tls, s_plain, c_unix, s_tls, s_null };
        CallFunc calls[6] = { call_get_user, call_get_user, call_get_user, call_get_property, call_get_property,
                              call_get_user };
        void *data[6] = { id, id, id, NULL, NULL, id };

        measure(rounds, per_round, 6, f, buses, calls, data);

        printf("# %u calls per figure in %u interleaved rounds, loopback, 2 CPUs shared with the bus and daemons\n",
               rounds * per_round, rounds);
        bench_print_header(&table, "median_us", "p99_us");
        print_plain(&f[0]);
        print_plain(&f[2]);
        print_plain(&f[3]);
        print_ratio(f[1].name, &f[1], &f[0], 3.0);
        /* The same figure's second target: a row of its own name would
         * read as a second, different measurement. */
        print_ratio("  (tls vs plain)", &f[1], &f[2], 1.3);
        print_ratio(f[4].name, &f[4], &f[3], 1.2);
        print_ratio(f[5].name, &f[5], &f[0], 0);
        fflush(stdout);

        printf("# CPU time per GetUser by process, %u calls directly over tcp: and %u through the TLS hop\n",
               CPU_CALLS, CPU_CALLS);
        measure_cpu((sd_bus *[]) { c_tcp, s_tls }, id, cpu_users, ELEMENTSOF(cpu_users), CPU_CALLS);
        print_cpu(cpu_users, ELEMENTSOF(cpu_users), 2);
        fflush(stdout);

        /* 40 ms a round trip: fewer samples. */
        Figure w[3] = { { "get-user-direct-tcp-wan" }, { "get-user-1hop-tls-wan" }, { "get-cached-site-wan" } };
        sd_bus *wan_buses[3] = { c_tcp_wan, s_wan, s_wan };
        CallFunc wan_calls[3] = { call_get_user, call_get_user, call_get_property };
        void *wan_data[3] = { id, id, NULL };

        measure(5, 20, 3, w, wan_buses, wan_calls, wan_data);
        printf("# with 20 ms each way between site and central (a delay proxy), %u calls per figure\n", 5 * 20);
        print_plain(&w[0]);
        print_plain(&w[1]);
        print_added("relay-added-wan", &w[1], &w[0], 1000);
        print_absolute(&w[2], 1000);
        fflush(stdout);

        /* Only the TLS site now: the other importers would relay every
         * event too, and load the two CPUs. */
        sd_bus_flush_close_unref(s_wan);
        sd_bus_flush_close_unref(c_tcp_wan);
        stop_child(plain_importer, "the plain importer");
        stop_child(wan_importer, "the WAN importer");
        printf("# 10 subscribers at central or at the TLS site, events published at central, %u in flight\n",
               FANOUT_IN_FLIGHT);
        measure_fanout(c_unix, central, site_tls, 3000);

        sd_bus_flush_close_unref(c_tcp);
        sd_bus_flush_close_unref(s_tls);
        sd_bus_flush_close_unref(s_plain);
        sd_bus_flush_close_unref(s_null);
        sd_bus_flush_close_unref(c_unix);
        free(id);
        free(central);
        free(site_tls);
        free(site_plain);
        free(site_wan);
        free(site_null);
        return EXIT_SUCCESS;
}
