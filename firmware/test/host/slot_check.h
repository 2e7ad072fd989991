// CHECK for the slot tests (test_slot_state.cpp, test_slot_image.cpp): counts checks and
// failures, prints the first 30 failures (the exhaustive sweeps would print millions).
// Each test's main prints "<name>: N checks, F failures" for tests/test_slot_firmware.py.
#ifndef TINYSHIP_SLOT_CHECK_H
#define TINYSHIP_SLOT_CHECK_H

#include <cstdio>

namespace slot_check {
inline int failures = 0;
inline int checks = 0;
}  // namespace slot_check

#define CHECK(cond)                                                             \
  do {                                                                          \
    ++slot_check::checks;                                                       \
    if (!(cond)) {                                                              \
      if (slot_check::failures < 30)                                            \
        std::printf("%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);    \
      ++slot_check::failures;                                                   \
    }                                                                           \
  } while (0)

#endif  // TINYSHIP_SLOT_CHECK_H
