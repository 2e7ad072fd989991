// fake_nor.cpp - strict NOR writes over host memory for the flash HAL fakes (hal_fake.h).
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hal_fake.h"

FakeFlash g_fake;
const char *g_fake_scenario = "ok";

namespace {

// The slot region of the mbed boards lives in .rodata: make its pages writable for a moment.
void set_writable(uint8_t *dst, size_t n, bool writable) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(dst) & ~(page - 1u);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(dst) + n + page - 1u) & ~(page - 1u);
  if (mprotect(reinterpret_cast<void *>(lo), hi - lo,
               writable ? PROT_READ | PROT_WRITE : PROT_READ) != 0) {
    g_fake.violations++;
  }
}

}  // namespace

void fake_erase(uint8_t *dst, size_t n) {
  set_writable(dst, n, true);
  memset(dst, 0xFF, n);
  set_writable(dst, n, false);
  g_fake.erases++;
}

void fake_program(uint8_t *dst, const uint8_t *src, size_t n) {
  set_writable(dst, n, true);
  for (size_t i = 0; i < n; i++) {
    if (dst[i] != 0xFFu) g_fake.violations++;  // a unit programmed twice between erases
    dst[i] = static_cast<uint8_t>(dst[i] & src[i]);
  }
  set_writable(dst, n, false);
  g_fake.programs++;
}
