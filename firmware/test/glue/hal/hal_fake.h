// hal_fake.h - what the fake vendor functions (fake_<board>.cpp) record for the flash HAL
// test (flash_hal_test.cpp, `make flash-hal`). The fakes model NOR flash strictly: erase sets
// 0xFF, a program may only target erased bytes (as the slot store requires), and every
// access must stay inside the slot storage; each breach is counted, never silently allowed.
#ifndef TINYSHIP_HAL_FAKE_H
#define TINYSHIP_HAL_FAKE_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

struct FakeFlash {
  unsigned erases = 0;
  unsigned programs = 0;
  unsigned violations = 0;       // program of a non-erased byte, access outside the slots
  unsigned irq_on_during_op = 0; // RP2040: a flash operation ran with interrupts enabled
  const uint8_t *last_source = nullptr;  // data pointer of the last program call
  unsigned resets = 0;
  jmp_buf reset_jump;            // a reset call longjmps here (it must not return)
};

extern FakeFlash g_fake;

// Scenario of this run (argv[1] of the test): "ok", or a failure the fake simulates at
// set-up ("init-fails", "geometry", "missing", "small", "encrypted", "mmap-fails").
extern const char *g_fake_scenario;

// The id the fake hardware reports, and its length for this board.
extern const uint8_t kFakeDeviceId[8];
extern const size_t kFakeDeviceIdLen;
// Program unit the HAL must report for this board.
extern const uint32_t kFakeProgramUnit;

// NOR write helpers over host memory (the mbed boards' region is read-only data: the helpers
// lift the page protection around each write).
void fake_erase(uint8_t *dst, size_t n);
void fake_program(uint8_t *dst, const uint8_t *src, size_t n);

#endif
