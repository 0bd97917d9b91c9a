/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <syslog.h>

/* Logging to stderr with sd-daemon(3) level prefixes ("<3>"), which
 * journald turns into priorities when the program runs under systemd. */

void log_set_max_level(int level);
int log_get_max_level(void);
int log_level_from_string(const char *s);
/* --log-level=: sets the level named S, or logs why not and returns -EINVAL. */
int log_set_max_level_from_string(const char *s);
void log_set_program_name(const char *name);
/* Whether stderr is a stream to journald (JOURNAL_STREAM names it, as
 * systemd sets it for a service's stderr). */
bool log_stderr_is_journal(void);

void log_internal(int level, const char *format, ...) __attribute__((format(printf, 2, 3)));

#define log_crit(...)    log_internal(LOG_CRIT, __VA_ARGS__)
#define log_error(...)   log_internal(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_internal(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  log_internal(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    log_internal(LOG_INFO, __VA_ARGS__)
#define log_debug(...)   log_internal(LOG_DEBUG, __VA_ARGS__)

/* Log at LEVEL and return -abs(ERR), for "return log_error_errno(r, ...)". */
int log_errno_internal(int level, int err, const char *format, ...) __attribute__((format(printf, 3, 4)));
#define log_error_errno(err, ...)   log_errno_internal(LOG_ERR, (err), __VA_ARGS__)
#define log_warning_errno(err, ...) log_errno_internal(LOG_WARNING, (err), __VA_ARGS__)
