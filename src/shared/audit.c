/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <syslog.h>
#include <unistd.h>
#include <systemd/sd-journal.h>

#include "audit.h"
#include "bus-caller.h"
#include "bus-methods.h"
#include "log.h"
#include "macro.h"
#include "validate.h"

#define RESULT_VALUES_MAX 4

struct Audit {
        BusCallers *callers;
        bool journal;
};

int audit_new(BusCallers *callers, Audit **ret) {
        Audit *a = g_new0(Audit, 1);

        a->callers = callers;
        a->journal = log_stderr_is_journal();
        *ret = a;
        return 0;
}

Audit *audit_free(Audit *a) {
        if (!a)
                return NULL;
        g_free(a);
        return NULL;
}

/* Who sent M, as the bus saw it; NULL for a call that came over a link
 * (it has no sender: its caller is the peer) or when the bus could not
 * say. */
static const BusCaller *caller_of(Audit *a, sd_bus_message *m) {
        const BusCaller *c;

        if (!a->callers || bus_callers_get(a->callers, m, &c) < 0)
                return NULL;
        return c;
}

/* The basic values at the top level of REPLY, as text, at most MAX. */
static char **result_values(sd_bus_message *reply, unsigned max) {
        g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
        char type;
        const char *contents;

        if (sd_bus_message_rewind(reply, true) < 0)
                return NULL;
        while (values->len < max && sd_bus_message_peek_type(reply, &type, &contents) > 0) {
                union { const char *s; uint64_t t; int64_t x; uint32_t u; int32_t i; int b; } v;

                if (!strchr("stxuib", type) || sd_bus_message_read_basic(reply, type, &v) < 0)
                        break;
                g_ptr_array_add(values, type == 's' ? g_strdup(v.s) :
                                        type == 't' ? g_strdup_printf("%" PRIu64, v.t) :
                                        type == 'x' ? g_strdup_printf("%" PRIi64, v.x) :
                                        type == 'u' ? g_strdup_printf("%" PRIu32, v.u) :
                                        type == 'i' ? g_strdup_printf("%" PRIi32, v.i) :
                                        g_strdup(v.b ? "true" : "false"));
        }
        (void) sd_bus_message_rewind(reply, true);
        g_ptr_array_add(values, NULL);
        return (char **) g_ptr_array_free(g_steal_pointer(&values), false);
}

char **audit_results_of_reply(sd_bus_message *reply) {
        return result_values(reply, RESULT_VALUES_MAX);
}

/* What the change was about, when its first argument says it: the user
 * id of SaveUser, DeleteUser and GoOnline, the topic of Publish, the
 * recipient of Send. */
static char *subject_of(sd_bus_message *call) {
        const char *s = NULL;
        char type;

        if (sd_bus_message_rewind(call, true) < 0)
                return NULL;
        if (sd_bus_message_peek_type(call, &type, NULL) > 0 && type == 's')
                (void) sd_bus_message_read_basic(call, 's', &s);
        /* A failed call's argument was never validated: keep the log
         * line one line, and short. */
        g_autofree char *copy = s ? g_strndup(s, 200) : NULL;
        (void) sd_bus_message_rewind(call, true);
        return copy ? g_strescape(copy, NULL) : NULL;
}

/* The peers a SendWithOptions says it came through (relayed-by), as the
 * text of the log line: its names escaped and cut, as the subject's. */
static char **relayed_by_of(sd_bus_message *call) {
        g_auto(GStrv) names = NULL;
        g_autoptr(GStrvBuilder) builder = NULL;

        if (bus_send_relayed_by(call, &names) <= 0 || !names)
                return NULL;
        builder = g_strv_builder_new();
        for (size_t i = 0; names[i] && i < RELAYED_BY_MAX; i++) {
                g_autofree char *copy = g_strndup(names[i], PEER_NAME_MAX);
                g_autofree char *escaped = g_strescape(copy, NULL);

                g_strv_builder_add(builder, escaped);
        }
        return g_strv_builder_end(builder);
}

static char *method_name(sd_bus_message *call) {
        const char *iface = sd_bus_message_get_interface(call) ?: "";
        const char *dot = strrchr(iface, '.');

        return g_strdup_printf("%s.%s", dot ? dot + 1 : iface, sd_bus_message_get_member(call) ?: "");
}

static void add_field(GPtrArray *fields, const char *format, ...) G_GNUC_PRINTF(2, 3);
static void add_field(GPtrArray *fields, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        g_ptr_array_add(fields, g_strdup_vprintf(format, ap));
        va_end(ap);
}

static void send_to_journal(GPtrArray *fields) {
        g_autofree struct iovec *iov = g_new(struct iovec, fields->len);

        for (guint i = 0; i < fields->len; i++)
                iov[i] = (struct iovec) { .iov_base = fields->pdata[i], .iov_len = strlen(fields->pdata[i]) };
        (void) sd_journal_sendv(iov, (int) fields->len);
}

void audit_change(Audit *a, sd_bus_message *call, const char *peer, const char *error_name,
                  char *const *results) {
        g_autoptr(GPtrArray) fields = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *method = method_name(call);
        g_autofree char *subject = subject_of(call);
        g_auto(GStrv) relayed_by = relayed_by_of(call);
        const BusCaller *c = caller_of(a, call);
        g_autoptr(GString) line = g_string_new(NULL);

        g_string_append_printf(line, "audit: %s", method);
        if (subject)
                g_string_append_printf(line, "('%s')", subject);
        if (relayed_by) {
                g_autofree char *chain = g_strjoinv("', '", relayed_by);
                g_string_append_printf(line, " relayed by ['%s']", chain);
        }
        if (peer)
                g_string_append_printf(line, " from peer '%s'", peer);
        if (c)
                g_string_append_printf(line, " by uid=%d pid=%d unit=%s", (int) c->uid, (int) c->pid,
                                       c->unit ?: "-");
        if (error_name)
                g_string_append_printf(line, ": failed, %s", error_name);
        else {
                g_string_append(line, ":");
                for (char *const *r = results; r && *r; r++)
                        g_string_append_printf(line, " %s", *r);
        }

        if (!a->journal) {
                log_info("%s", line->str);
                return;
        }
        add_field(fields, "MESSAGE=%s", line->str);
        add_field(fields, "PRIORITY=%d", LOG_INFO);
        add_field(fields, "SYSLOG_IDENTIFIER=%s", program_invocation_short_name);
        add_field(fields, "OUTPOST_METHOD=%s", method);
        if (subject)
                add_field(fields, "OUTPOST_SUBJECT=%s", subject);
        for (char **n = relayed_by; n && *n; n++)
                add_field(fields, "OUTPOST_RELAYED_BY=%s", *n);
        if (peer)
                add_field(fields, "OUTPOST_PEER=%s", peer);
        if (c) {
                add_field(fields, "OUTPOST_CALLER_UID=%d", (int) c->uid);
                add_field(fields, "OUTPOST_CALLER_PID=%d", (int) c->pid);
                if (c->unit)
                        add_field(fields, "OUTPOST_CALLER_UNIT=%s", c->unit);
        }
        if (error_name)
                add_field(fields, "OUTPOST_ERROR=%s", error_name);
        for (char *const *r = results; r && *r; r++)
                add_field(fields, "OUTPOST_RESULT=%s", *r);
        send_to_journal(fields);
}

void audit_relayed_change(Audit *a, sd_bus_message *call, const char *peer, sd_bus_message *reply) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        g_auto(GStrv) results = NULL;

        if (!a || !bus_change_method_of(call))
                return;
        if (!e)
                results = audit_results_of_reply(reply);
        audit_change(a, call, peer, e ? e->name : NULL, results);
}
