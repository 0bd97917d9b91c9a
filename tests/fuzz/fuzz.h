/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Every fuzz target of tests/fuzz defines this, as libFuzzer wants it.
 * Built with --enable-fuzzing (clang) it is driven by libFuzzer; otherwise
 * fuzz-main.c runs it over the target's corpus, tests/fuzz/<target>/, in
 * make check, so that every seed and every crash once found stays a
 * regression test. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
