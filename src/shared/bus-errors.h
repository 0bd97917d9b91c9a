/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Error names of the bus contract (DESIGN.md §2). */
#define BUS_ERROR_PREFIX              "org.outpost.Outpost1.Error."
#define BUS_ERROR_SAVE_CONFLICT       BUS_ERROR_PREFIX "SaveConflict"
#define BUS_ERROR_NOT_FOUND           BUS_ERROR_PREFIX "NotFound"
#define BUS_ERROR_ALREADY_EXISTS      BUS_ERROR_PREFIX "AlreadyExists"
#define BUS_ERROR_INVALID_ARGUMENT    BUS_ERROR_PREFIX "InvalidArgument"
#define BUS_ERROR_LIMIT_EXCEEDED      BUS_ERROR_PREFIX "LimitExceeded"
#define BUS_ERROR_DISCONNECTED        BUS_ERROR_PREFIX "Disconnected"
#define BUS_ERROR_HISTORY_TRUNCATED   BUS_ERROR_PREFIX "HistoryTruncated"
#define BUS_ERROR_HISTORY_RESET       BUS_ERROR_PREFIX "HistoryReset"
#define BUS_ERROR_STORE_FULL          BUS_ERROR_PREFIX "StoreFull"
