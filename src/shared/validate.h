/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Limits of the bus contract (DESIGN.md §3). */
#define USER_NAME_MAX            64
#define USER_DISPLAY_NAME_MAX    256   /* characters */
#define USER_EMAIL_MAX           254   /* characters */
#define USER_ATTRIBUTES_MAX      64
#define USER_ATTRIBUTE_KEY_MAX   64    /* bytes */
#define USER_ATTRIBUTE_VALUE_MAX 4096  /* bytes */
#define TOPIC_MAX                255
#define LIST_LIMIT_MAX           1000

/* ^[a-z_][a-z0-9_.-]{0,63}$ */
bool user_name_is_valid(const char *s);

/* A server-assigned id or tag: a lower-case UUID in its 36-character form. */
bool uuid_string_is_valid(const char *s);

/* A new random id or tag in that form. */
char *uuid_string_new(void);

/* 1–255 characters of [A-Za-z0-9_.-] in '/'-separated, non-empty segments. */
bool topic_is_valid(const char *s);

/* A copy of S cut to at most MAX characters, with "…" when cut, for error
 * messages that quote what the caller sent. */
char *quote_for_error(const char *s, size_t max);
