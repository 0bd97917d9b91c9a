/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* liboutpost through GObject Introspection: tests/liboutpost/test-gi.py run
 * by the system's Python (with python3-gi) against the real outpostd. */
#include "config.h"

#include <sys/wait.h>

#include "harness.h"

static void test_python(void) {
        g_autoptr(TestBus) tb = NULL;
        g_autoptr(GError) error = NULL;
        g_auto(GStrv) env = g_get_environ();
        g_autofree char *out = NULL, *err = NULL;
        const char *python = g_getenv("PYTHON3") ?: "/usr/bin/python3";
        const char *argv[] = { python, SRCDIR "/tests/liboutpost/test-gi.py", NULL };
        int status;

#if defined(__SANITIZE_ADDRESS__)
        g_test_skip("A library built with ASan cannot be loaded into Python");
        return;
#endif
        tb = test_bus_new();
        test_bus_start_daemon(tb, NULL);
        env = g_environ_setenv(env, "OUTPOST_ADDRESS", tb->address, TRUE);
        env = g_environ_setenv(env, "GI_TYPELIB_PATH", BUILDDIR, TRUE);
        env = g_environ_setenv(env, "LD_LIBRARY_PATH", BUILDDIR "/.libs", TRUE);
        g_spawn_sync(NULL, (char **) argv, env, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, &error);
        g_assert_no_error(error);
        if (!g_spawn_check_wait_status(status, NULL))
                g_error("%s failed:\n%s%s", argv[1], out, err);
        g_assert_cmpstr(out, ==, "ok\n");
}

int main(int argc, char **argv) {
        test_init(&argc, &argv);
        g_test_add_func("/liboutpost/python", test_python);
        return g_test_run();
}
