/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static int max_level = LOG_INFO;
static const char *program_name = NULL;

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

/* journald names the program of each line itself (SYSLOG_IDENTIFIER):
 * the prefix is for a terminal and a log file only. */
void log_set_program_name(const char *name) {
        program_name = log_stderr_is_journal() ? NULL : name;
}

bool log_stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

int log_level_from_string(const char *s) {
        static const char *const names[] = {
                [LOG_EMERG] = "emerg",     [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
                [LOG_ERR] = "err",         [LOG_WARNING] = "warning",
                [LOG_NOTICE] = "notice",   [LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
        };

        for (int i = 0; i < (int) (sizeof(names) / sizeof(names[0])); i++)
                if (strcasecmp(s, names[i]) == 0)
                        return i;
        if (strcasecmp(s, "error") == 0)
                return LOG_ERR;
        return -EINVAL;
}

int log_set_max_level_from_string(const char *s) {
        int level = log_level_from_string(s);

        if (level < 0) {
                log_error("Unknown log level '%s'", s);
                return level;
        }
        log_set_max_level(level);
        return 0;
}

static void log_write(int level, const char *format, va_list ap, const char *suffix) __attribute__((format(printf, 2, 0)));
static void log_write(int level, const char *format, va_list ap, const char *suffix) {
        char buf[2048];
        int saved = errno;

        vsnprintf(buf, sizeof buf, format, ap);
        /* Under journald the prefix becomes the priority; on a terminal
         * it is still readable. One fprintf so lines do not interleave. */
        fprintf(stderr, "<%d>%s%s%s%s%s\n", level,
                program_name ?: "", program_name ? ": " : "",
                buf, suffix ? ": " : "", suffix ?: "");
        errno = saved;
}

void log_internal(int level, const char *format, ...) {
        va_list ap;

        if (level > max_level)
                return;
        va_start(ap, format);
        log_write(level, format, ap, NULL);
        va_end(ap);
}

int log_errno_internal(int level, int err, const char *format, ...) {
        va_list ap;

        err = err < 0 ? -err : err;
        if (level <= max_level) {
                va_start(ap, format);
                log_write(level, format, ap, strerror(err));
                va_end(ap);
        }
        return -err;
}
