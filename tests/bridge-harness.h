/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "harness.h"

/* A deployment of DESIGN.md §5 on one machine: the central bus with
 * outpostd and a listening bridge, a site bus with a bridge that imports
 * from central and listens, and a machine bus with a bridge that imports
 * from the site; links are TLS on loopback with certificates made for the
 * test run. */

#define OUTPOST_BRIDGE "/org/outpost/Outpost1/bridge"
#define IFACE_BRIDGE   "org.outpost.Outpost1.Bridge"

typedef struct BridgeProcess {
        TestBus *bus;           /* the bus it serves (borrowed) */
        GPid pid;
        char **argv;
        char *log_path;
        gsize log_offset;
} BridgeProcess;

typedef struct Deployment {
        char *certs;
        TestBus *central, *site, *machine;
        unsigned central_port, site_port;
        BridgeProcess central_listener, site_bridge, machine_bridge;
} Deployment;

/* Make the certificates once per test program (tests/make-test-certs.sh). */
void bridge_test_init(int *argc, char ***argv);
const char *bridge_test_certs(void);

/* A free TCP port on 127.0.0.1. */
unsigned free_port(void);

/* Start outpost-bridge on BUS with the given --listen/--upstream (either
 * may be NULL) and EXTRA options; fast reconnect and heartbeat settings. */
void bridge_process_start(BridgeProcess *p, TestBus *bus, const char *listen, const char *upstream,
                          const char *const *extra);
/* The same, run inside the network namespace NETNS (ip netns exec). */
void bridge_process_start_in(BridgeProcess *p, const char *netns, TestBus *bus, const char *listen,
                             const char *upstream, const char *const *extra);
/* SIGTERM (checking a clean exit) or SIGKILL. */
void bridge_process_stop(BridgeProcess *p, int signal);
void bridge_process_restart(BridgeProcess *p);

/* Central, site and machine, started and connected end to end.
 * CENTRAL_CONFIG is outpostd's config (may be NULL). */
Deployment *deployment_new(const char *central_config);
void deployment_free(Deployment *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Deployment, deployment_free)

/* The bridge's State on the bus of C, read now. */
char *bridge_state(GDBusConnection *c);
/* Wait until the bridge's State on the bus of C is STATE. */
void wait_bridge_state(GDBusConnection *c, const char *state, int timeout_ms);
