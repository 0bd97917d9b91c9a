/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A fuzz target without libFuzzer: runs LLVMFuzzerTestOneInput on every
 * file of the corpus directories (or files) given, default
 * SRCDIR/tests/fuzz/<target>/, and says so in TAP. A crash is the test
 * failing. */
#include "config.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "fuzz.h"

static int run_file(const char *path, unsigned *n) {
        g_autofree char *contents = NULL;
        g_autoptr(GError) error = NULL;
        gsize length;

        if (!g_file_get_contents(path, &contents, &length, &error)) {
                printf("not ok %u - %s: %s\n", ++*n, path, error->message);
                return 1;
        }
        (void) LLVMFuzzerTestOneInput((const uint8_t *) contents, length);
        printf("ok %u - %s\n", ++*n, path);
        fflush(stdout);
        return 0;
}

static int compare_names(gconstpointer a, gconstpointer b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static int run_path(const char *path, unsigned *n) {
        g_autoptr(GDir) dir = NULL;
        g_autoptr(GPtrArray) names = NULL;
        const char *name;
        int failed = 0;

        if (!g_file_test(path, G_FILE_TEST_IS_DIR))
                return run_file(path, n);
        dir = g_dir_open(path, 0, NULL);
        if (!dir) {
                printf("not ok %u - cannot open %s\n", ++*n, path);
                return 1;
        }
        names = g_ptr_array_new_with_free_func(g_free);
        while ((name = g_dir_read_name(dir)))
                if (name[0] != '.')
                        g_ptr_array_add(names, g_build_filename(path, name, NULL));
        g_ptr_array_sort(names, compare_names);      /* a stable order */
        for (guint i = 0; i < names->len; i++)
                failed += run_file(names->pdata[i], n);
        return failed;
}

int main(int argc, char **argv) {
        g_autofree char *self = g_path_get_basename(argv[0]);
        const char *target = g_str_has_prefix(self, "lt-") ? self + 3 : self;
        unsigned n = 0;
        int failed = 0, n_paths = 0;

        for (int i = 1; i < argc; i++)
                if (strcmp(argv[i], "--tap") != 0) {
                        failed += run_path(argv[i], &n);
                        n_paths++;
                }
        if (n_paths == 0) {
                /* fuzz-user-record → tests/fuzz/user-record */
                g_autofree char *dir = g_build_filename(SRCDIR, "tests", "fuzz",
                                                        g_str_has_prefix(target, "fuzz-") ? target + 5 : target, NULL);
                failed += run_path(dir, &n);
        }
        printf("1..%u\n", n);
        return failed ? 1 : 0;
}
