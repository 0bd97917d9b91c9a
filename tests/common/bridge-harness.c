/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bridge-harness.h"

void bridge_test_init(int *argc, char ***argv) {
        test_init(argc, argv);
        test_make_certs();
}

const char *bridge_test_certs(void) {
        return test_certs_dir();
}

Deployment *deployment_new(const char *central_config) {
        return deployment_new_with(central_config, NULL);
}

Deployment *deployment_new_with(const char *central_config, const char *const *site_extra) {
        Deployment *d = g_new0(Deployment, 1);
        g_autofree char *central_listen = NULL, *site_listen = NULL;

        d->central = test_bus_new();
        d->site = test_bus_new();
        d->machine = test_bus_new();
        test_bus_start_daemon(d->central, central_config);

        d->central_port = free_port();
        d->site_port = free_port();
        central_listen = g_strdup_printf("tls:host=127.0.0.1,port=%u", d->central_port);
        site_listen = g_strdup_printf("tls:host=127.0.0.1,port=%u", d->site_port);
        bridge_process_start(&d->central_listener, d->central, central_listen, NULL, NULL);
        bridge_process_start(&d->site_bridge, d->site, site_listen, central_listen, site_extra);
        bridge_process_start(&d->machine_bridge, d->machine, NULL, site_listen, NULL);

        wait_bridge_state(d->site->conn, "connected", 20000);
        wait_bridge_state(d->machine->conn, "connected", 20000);
        return d;
}

void deployment_free(Deployment *d) {
        if (!d)
                return;
        bridge_process_clear(&d->machine_bridge);
        bridge_process_clear(&d->site_bridge);
        bridge_process_clear(&d->central_listener);
        test_bus_free(d->machine);
        test_bus_free(d->site);
        test_bus_free(d->central);
        g_free(d->certs);
        g_free(d);
}
