/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <glib.h>

/* Limits of the bus contract (DESIGN.md §3). Clients are written against
 * them: outpostd.conf's [Limits] may lower the ones marked (*), never
 * raise them. */
#define USER_NAME_MAX            64
#define USER_DISPLAY_NAME_MAX    256   /* characters (*) */
#define USER_EMAIL_MAX           254   /* characters */
#define USER_ATTRIBUTES_MAX      64    /* (*) */
#define USER_ATTRIBUTE_KEY_MAX   64    /* bytes (*) */
#define USER_ATTRIBUTE_VALUE_MAX 4096  /* bytes (*) */
#define TOPIC_MAX                255
#define LIST_LIMIT_MAX           1000  /* users per ListUsers page (*) */
#define EVENT_DATA_SIZE_MAX      65536 /* bytes of Publish's data, serialized and on the bus (*) */
/* (The nesting limit of event data is in bus-gvariant.h.) */
/* The one key of the data FetchSince delivers in place of stored data no
 * bus message could carry (stored before Publish refused it): a string
 * saying why. */
#define EVENT_WITHHELD_KEY       "org.outpost.withheld"
#define FETCH_LIMIT_MAX          10000 /* events per FetchSince page (*) */
#define FETCH_PREFIXES_MAX       64    /* topic prefixes of FetchSince (*) */
#define MESSAGE_BODY_MAX         65536 /* bytes (*) */
#define MESSAGE_RECIPIENTS_MAX   1000  /* recipients of Send (*) */
/* A client-chosen request id that makes a retried Publish or Send safe
 * (DESIGN.md §4 rule 5): 1-128 characters of printable ASCII, no space,
 * given as this key of Publish's data or this option of SendWithOptions. */
#define REQUEST_ID_MAX           128
#define PUBLISH_REQUEST_ID_KEY   "org.outpost.request-id"
#define SEND_OPTION_REQUEST_ID   "request-id"
/* The option of SendWithOptions that names the bridge peers a Send came
 * through, by their certificates' names, where it entered the bridges
 * first: only callers authorized for org.outpost.Outpost1.relay-for-peers
 * (the bridges) may give it, and the message's events carry it as
 * MESSAGE_SENDER_PEERS_KEY. At most RELAYED_BY_MAX names of
 * 1-PEER_NAME_MAX bytes, none with control or invisible characters. */
#define SEND_OPTION_RELAYED_BY   "relayed-by"
#define MESSAGE_SENDER_PEERS_KEY "sender-peers"
#define RELAYED_BY_MAX           16
#define PEER_NAME_MAX            255

/* ^[a-z_][a-z0-9_.-]{0,63}$ */
bool user_name_is_valid(const char *s);

/* A server-assigned id or tag: a lower-case UUID in its 36-character form. */
bool uuid_string_is_valid(const char *s);

/* A new random id or tag in that form. */
char *uuid_string_new(void);

/* 1–255 characters of [A-Za-z0-9_.-] in '/'-separated, non-empty segments. */
bool topic_is_valid(const char *s);

/* The events of messages/<user id> topics are private: only callers
 * authorized for org.outpost.Outpost1.read-messages see them, and only
 * the Messages manager's MessageReceived signal, whose reception the bus
 * policy restricts, carries them (DESIGN.md §3, Messages). */
#define MESSAGES_TOPIC_PREFIX    "messages/"
bool topic_is_message(const char *topic);
/* Whether FetchSince with PREFIXES (NULL-terminated; NULL or empty: every
 * topic) may return events of messages/ topics. */
bool topic_prefixes_reach_messages(char **prefixes);

/* The index (in characters) of the first character of the UTF-8 string S
 * that changes how text around it is shown without being seen itself,
 * with the character in *RET, or -1. Those are the format characters
 * (Unicode's Cf: the bidirectional controls U+202A-U+202E, U+2066-U+2069
 * and U+061C, zero-width U+200B-U+200F and U+2060-U+2064, U+FEFF, the soft
 * hyphen, ...) and the line and paragraph separators: in a name shown to
 * people, they make one name look like another. */
glong find_invisible_char(const char *s, gunichar *ret);

/* Whether S may stand in SEND_OPTION_RELAYED_BY as a peer's name. */
bool peer_name_is_valid(const char *s);

/* A copy of S cut to at most MAX characters, with "…" when cut, for error
 * messages that quote what the caller sent. */
char *quote_for_error(const char *s, size_t max);
