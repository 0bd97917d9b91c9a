/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <systemd/sd-bus.h>

/* Cleanup helpers in the style of systemd's, which are not public API. */
#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

/* Hand ownership out of a cleanup-annotated variable. */
#define TAKE_PTR(p)                                    \
        ({                                             \
                __typeof__(p) _ptr_ = (p);             \
                (p) = NULL;                            \
                _ptr_;                                 \
        })

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define _unused_ __attribute__((unused))

/* True when X equals one of the following values. */
#define IN_SET(x, ...)                                                  \
        ({                                                              \
                const __typeof__(x) _set_[] = { __VA_ARGS__ };          \
                bool _found_ = false;                                   \
                for (size_t _i_ = 0; _i_ < ELEMENTSOF(_set_); _i_++)    \
                        if (_set_[_i_] == (x)) {                        \
                                _found_ = true;                         \
                                break;                                  \
                        }                                               \
                _found_;                                                \
        })
