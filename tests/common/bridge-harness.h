/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "harness.h"

/* A deployment of DESIGN.md §5 on one machine: the central bus with
 * outpostd and a listening bridge, a site bus with a bridge that imports
 * from central and listens, and a machine bus with a bridge that imports
 * from the site; links are TLS on loopback with certificates made for the
 * test run. */


typedef struct Deployment {
        char *certs;
        TestBus *central, *site, *machine;
        unsigned central_port, site_port;
        BridgeProcess central_listener, site_bridge, machine_bridge;
} Deployment;

/* Make the certificates once per test program (tests/common/make-test-certs.sh). */
void bridge_test_init(int *argc, char ***argv);
const char *bridge_test_certs(void);

/* Central, site and machine, started and connected end to end.
 * CENTRAL_CONFIG is outpostd's config (may be NULL). */
Deployment *deployment_new(const char *central_config);
/* The same, with SITE_EXTRA (may be NULL) on the site bridge's command line. */
Deployment *deployment_new_with(const char *central_config, const char *const *site_extra);
void deployment_free(Deployment *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Deployment, deployment_free)


