/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpost-bridge processes for the tests: certificates made once per test
 * program, free ports, and bridges started and stopped with their logs
 * checked like outpostd's. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static void child_setup(gpointer data) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static char *certs_dir;

static void remove_certs(void) {
        g_autofree char *cmd = NULL;

        if (!certs_dir)
                return;
        cmd = g_strdup_printf("rm -rf '%s'", certs_dir);
        (void) system(cmd);
}

void test_make_certs(void) {
        g_autoptr(GError) error = NULL;
        g_autofree char *script = g_build_filename(SRCDIR, "tests", "common", "make-test-certs.sh", NULL);
        g_autofree char *out = NULL, *err = NULL;
        int status;

        if (certs_dir)
                return;
        certs_dir = g_dir_make_tmp("outpost-certs-XXXXXX", &error);
        g_assert_no_error(error);
        const char *cmd[] = { "/bin/sh", script, certs_dir, NULL };
        g_spawn_sync(NULL, (char **) cmd, NULL, 0, NULL, NULL, &out, &err, &status, &error);
        g_assert_no_error(error);
        if (!g_spawn_check_wait_status(status, NULL))
                g_error("make-test-certs.sh failed: %s", err);
        atexit(remove_certs);
}

const char *test_certs_dir(void) {
        return certs_dir;
}

/* A port nobody else will take: the socket that found it stays bound (not
 * listening) until the test program ends. Autobinding skips a bound port,
 * here and in every other program; the bridge, which binds its listening
 * socket with SO_REUSEADDR, can still bind it. Closing the socket at once
 * let the next call, or a test running beside this one, get the same port
 * again: two bridges then raced for it and the loser exited at start with
 * status 1, which showed only when the test stopped it. */
unsigned free_port(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(bind(fd, (struct sockaddr *) &sa, sizeof sa), ==, 0);
        g_assert_cmpint(getsockname(fd, (struct sockaddr *) &sa, &len), ==, 0);
        /* Only now: an autobind with SO_REUSEADDR could pick a port that
         * such a socket holds. */
        g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), ==, 0);
        return ntohs(sa.sin_port);      /* fd stays open: the reservation */
}

static void spawn(BridgeProcess *p) {
        g_autoptr(GError) error = NULL;
        int fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

        g_assert_cmpint(fd, >=, 0);
        g_spawn_async_with_fds(NULL, p->argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, child_setup, NULL, &p->pid,
                               -1, -1, fd, &error);
        close(fd);
        g_assert_no_error(error);
}

void bridge_process_start(BridgeProcess *p, TestBus *bus, const char *listen, const char *upstream,
                          const char *const *extra) {
        bridge_process_start_in(p, NULL, bus, listen, upstream, extra);
}

void bridge_process_start_in(BridgeProcess *p, const char *netns, TestBus *bus, const char *listen,
                             const char *upstream, const char *const *extra) {
        const char *wrapper[] = { "/usr/sbin/ip", "netns", "exec", netns, NULL };

        bridge_process_start_wrapped(p, netns ? wrapper : NULL, bus, listen, upstream, extra);
}

void bridge_process_start_wrapped(BridgeProcess *p, const char *const *wrapper, TestBus *bus, const char *listen,
                                  const char *upstream, const char *const *extra) {
        g_autoptr(GPtrArray) argv = g_ptr_array_new();
        const char *bridge = g_getenv("OUTPOST_BRIDGE_PATH") ?: BUILDDIR "/outpost-bridge";
        g_autofree char *name = g_strdup_printf("bridge-%s%s%s", listen ? "listen" : "",
                                                listen && upstream ? "-" : "", upstream ? "import" : "");

        p->bus = bus;
        p->log_path = g_strdup_printf("%s/%s.log", bus->tmpdir, name);
        for (size_t i = 0; wrapper && wrapper[i]; i++)
                g_ptr_array_add(argv, g_strdup(wrapper[i]));
        g_ptr_array_add(argv, g_strdup(bridge));
        g_ptr_array_add(argv, g_strconcat("--address=", bus->address, NULL));
        g_ptr_array_add(argv, g_strdup_printf("--config=%s/none.conf", bus->tmpdir));
        g_ptr_array_add(argv, g_strdup_printf("--tls-ca=%s/ca.pem", certs_dir));
        g_ptr_array_add(argv, g_strdup_printf("--tls-cert=%s/server.pem", certs_dir));
        g_ptr_array_add(argv, g_strdup_printf("--tls-key=%s/server.key", certs_dir));
        g_ptr_array_add(argv, g_strdup("--reconnect-min-ms=100"));
        g_ptr_array_add(argv, g_strdup("--reconnect-max-ms=400"));
        g_ptr_array_add(argv, g_strdup("--heartbeat-ms=200"));
        g_ptr_array_add(argv, g_strdup("--heartbeat-timeout-ms=1500"));
        g_ptr_array_add(argv, g_strdup("--log-level=debug"));
        if (listen)
                g_ptr_array_add(argv, g_strconcat("--listen=", listen, NULL));
        if (upstream)
                g_ptr_array_add(argv, g_strconcat("--upstream=", upstream, NULL));
        for (size_t i = 0; extra && extra[i]; i++)
                g_ptr_array_add(argv, g_strdup(extra[i]));
        g_ptr_array_add(argv, NULL);
        p->argv = (char **) g_ptr_array_free(g_steal_pointer(&argv), FALSE);
        spawn(p);
}

/* Show what the bridge logged; fail on an error-level line unless the
 * test expects failures (links cut on purpose log warnings, not errors). */
static void check_log(BridgeProcess *p) {
        g_autofree char *contents = NULL;
        gsize length = 0;
        g_auto(GStrv) lines = NULL;

        if (!g_file_get_contents(p->log_path, &contents, &length, NULL) || length <= p->log_offset)
                return;
        const char *bad = NULL;

        lines = g_strsplit(contents + p->log_offset, "\n", -1);
        p->log_offset = length;
        for (size_t i = 0; lines[i]; i++) {
                if (!lines[i][0])
                        continue;
                g_printerr("%s: %s\n", strrchr(p->log_path, '/') + 1, lines[i]);
                if (!bad && (strstr(lines[i], "Sanitizer") || strstr(lines[i], "runtime error")))
                        bad = lines[i];
        }
        if (bad)
                g_error("outpost-bridge: %s", bad);
}

void bridge_process_stop(BridgeProcess *p, int signal) {
        int status = 0;

        if (p->pid <= 0)
                return;
        kill(p->pid, signal);
        g_assert_cmpint(waitpid(p->pid, &status, 0), ==, p->pid);
        g_spawn_close_pid(p->pid);
        p->pid = 0;
        check_log(p);
        if (signal == SIGTERM && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                g_error("outpost-bridge did not exit cleanly on SIGTERM (wait status 0x%x)", status);
}

int bridge_process_wait_exit(BridgeProcess *p, int timeout_ms) {
        gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;
        int status = 0;

        g_assert_cmpint(p->pid, >, 0);
        while (waitpid(p->pid, &status, WNOHANG) == 0) {
                if (g_get_monotonic_time() > deadline)
                        g_error("outpost-bridge did not exit within %d ms", timeout_ms);
                g_usleep(10000);
        }
        g_spawn_close_pid(p->pid);
        p->pid = 0;
        check_log(p);
        return status;
}

gboolean bridge_process_logged(BridgeProcess *p, const char *text) {
        g_autofree char *contents = NULL;

        return g_file_get_contents(p->log_path, &contents, NULL, NULL) && strstr(contents, text);
}

void bridge_process_restart(BridgeProcess *p) {
        g_assert_cmpint(p->pid, ==, 0);
        spawn(p);
}

void bridge_process_clear(BridgeProcess *p) {
        bridge_process_stop(p, SIGTERM);
        g_strfreev(p->argv);
        g_free(p->log_path);
}


char *bridge_state(GDBusConnection *c) {
        g_autoptr(GVariant) r = NULL, v = NULL;

        r = g_dbus_connection_call_sync(c, OUTPOST_NAME, OUTPOST_BRIDGE_PATH, "org.freedesktop.DBus.Properties", "Get",
                                        g_variant_new("(ss)", IFACE_BRIDGE, "State"), G_VARIANT_TYPE("(v)"),
                                        G_DBUS_CALL_FLAGS_NO_AUTO_START, 2000, NULL, NULL);
        if (!r)
                return NULL;
        g_variant_get(r, "(v)", &v);
        return g_variant_dup_string(v, NULL);
}

void wait_bridge_state(GDBusConnection *c, const char *state, int timeout_ms) {
        gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;

        for (;;) {
                g_autofree char *now = bridge_state(c);

                if (g_strcmp0(now, state) == 0)
                        return;
                if (g_get_monotonic_time() > deadline)
                        g_error("bridge State is '%s', not '%s', after %d ms", now ?: "(no bridge)", state, timeout_ms);
                g_main_context_iteration(NULL, FALSE);
                g_usleep(10000);
        }
}


/* Bridged mode: the TestBus the test talks to is the machine bus of a
 * central/site/machine deployment, so that the daemon's own tests run
 * unchanged two hops away (issue 4). */

gboolean test_bridged(void) {
        return g_strcmp0(g_getenv("OUTPOST_TEST_BRIDGED"), "1") == 0;
}

void test_bridged_setup(TestBus *machine, TestBus *(*new_bus)(void)) {
        test_make_certs();
        machine->central = new_bus();
        machine->site = new_bus();
        /* What tests read of the daemon's files is central's. */
        g_free(machine->state_dir);
        machine->state_dir = g_strdup(machine->central->state_dir);
        g_free(machine->config_path);
        machine->config_path = g_strdup(machine->central->config_path);
}

static gboolean bridged_started(TestBus *machine) {
        return machine->bridges[0].argv != NULL;
}

void test_bridged_connect(TestBus *machine) {
        if (!bridged_started(machine)) {
                g_autofree char *central_listen = g_strdup_printf("tls:host=127.0.0.1,port=%u", free_port());
                g_autofree char *site_listen = g_strdup_printf("tls:host=127.0.0.1,port=%u", free_port());

                bridge_process_start(&machine->bridges[0], machine->central, central_listen, NULL, NULL);
                bridge_process_start(&machine->bridges[1], machine->site, site_listen, central_listen, NULL);
                bridge_process_start(&machine->bridges[2], machine, NULL, site_listen, NULL);
        }
        wait_bridge_state(machine->conn, "connected", 20000);
}

/* After the daemon stopped, wait until the machine has seen the outage,
 * so that a restart is not mistaken for the old link being up. */
void test_bridged_wait_outage(TestBus *machine) {
        gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

        for (;;) {
                g_autofree char *state = bridge_state(machine->conn);

                if (g_strcmp0(state, "connected") != 0)
                        return;
                if (g_get_monotonic_time() > deadline)
                        g_error("the machine's bridge did not notice the daemon stopping");
                g_usleep(5000);
        }
}

void test_bridged_free(TestBus *machine) {
        for (int i = 2; i >= 0; i--)
                if (machine->bridges[i].argv)
                        bridge_process_clear(&machine->bridges[i]);
}
