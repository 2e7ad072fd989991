// flash_hal_test.cpp - host test of one board's flash HAL, device id and reset
// (firmware/src/flash_<board>.cpp, slot_region.cpp, board_system.cpp) against fake vendor
// functions (fake_<board>.cpp, hal_fake.h). `make flash-hal` builds it once per board.
//
//   flash_hal_<board> [scenario]
//     ok (default)  the ts_flash_t contract (ts_flash.h): geometry, mapped views, erase to
//                   0xFF, program of whole units, refusals of misaligned or out-of-slot
//                   requests without touching flash, slots independent; no breach of the
//                   strict NOR rules the fake enforces; device id; reset does not return.
//     other         a set-up failure the fake simulates: board_flash() must return nullptr
//                   and say why.
#include <stdio.h>
#include <string.h>

#include "hal_fake.h"
#include "tinyship_board.h"
#include "tinyship_core.h"
#include "tinyship_slots_config.h"

namespace {

int g_failures = 0;

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);               \
      g_failures++;                                                        \
    }                                                                      \
  } while (0)

bool all_ff(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != 0xFFu) return false;
  }
  return true;
}

// A const table (in .rodata, i.e. flash on a board) as the source of a program.
const uint8_t kPattern[768] = {
#define TS_ROW(b) b, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7
    TS_ROW(1), TS_ROW(9), TS_ROW(17), TS_ROW(25), TS_ROW(33), TS_ROW(41), TS_ROW(49),
    TS_ROW(57)};

void test_contract(const ts_flash_t *f) {
  const uint32_t unit = kFakeProgramUnit;
  CHECK(f->sector_size == 4096u);
  CHECK(f->program_unit == unit);
  CHECK(f->slot_size == static_cast<uint32_t>(TINYSHIP_SLOT_BYTES));
  CHECK(f->erase_sector_us > 0u && f->program_chunk_us > 0u);
  CHECK(f->erase != nullptr && f->program != nullptr && f->map != nullptr);
  const uint8_t *a = f->map(f->user, 0);
  const uint8_t *b = f->map(f->user, 1);
  CHECK(a != nullptr && b != nullptr && f->map(f->user, 2) == nullptr);
  if (a == nullptr || b == nullptr) return;
  CHECK(reinterpret_cast<uintptr_t>(a) % 16u == 0u && reinterpret_cast<uintptr_t>(b) % 16u == 0u);
  CHECK(b == a + f->slot_size);
  CHECK(all_ff(a, 2u * f->slot_size));  // a fresh image / partition: erased, empty slots

  // Erase, then program the first 768 bytes (3 RP2040 pages) from a const table.
  CHECK(f->erase(f->user, 0, 0) == 0);
  CHECK(f->program(f->user, 0, 0, kPattern, sizeof(kPattern)) == 0);
  CHECK(memcmp(a, kPattern, sizeof(kPattern)) == 0);
  CHECK(all_ff(a + sizeof(kPattern), f->sector_size - sizeof(kPattern)));
  // The next unit, separately (idempotent chunks are written once each).
  uint8_t chunk[256];
  memset(chunk, 0x5A, sizeof(chunk));
  CHECK(f->program(f->user, 0, 768, chunk, 256) == 0);
  CHECK(memcmp(a + 768, chunk, 256) == 0);
  // Slot B's last sector (the trailer) and its first unit: slot A untouched.
  CHECK(f->erase(f->user, 1, f->slot_size - f->sector_size) == 0);
  CHECK(f->program(f->user, 1, f->slot_size - f->sector_size, chunk, unit) == 0);
  CHECK(b[f->slot_size - f->sector_size] == 0x5A);
  CHECK(memcmp(a, kPattern, sizeof(kPattern)) == 0);
  const unsigned erases = g_fake.erases, programs = g_fake.programs;

  // Refusals: nothing reaches the flash.
  CHECK(f->erase(f->user, 2, 0) != 0);                           // no slot C
  CHECK(f->erase(f->user, 0, f->slot_size) != 0);                // past the slot
  CHECK(f->erase(f->user, 0, f->sector_size / 2u) != 0);         // not a sector start
  CHECK(f->program(f->user, 2, 0, chunk, unit) != 0);
  CHECK(f->program(f->user, 0, f->slot_size, chunk, unit) != 0);           // at the end
  CHECK(f->program(f->user, 0, f->slot_size - unit, chunk, 2u * unit) != 0);  // across it
  CHECK(f->program(f->user, 0, 4096u, nullptr, unit) != 0);
  CHECK(f->program(f->user, 0, 4096u, chunk, 0) != 0);
  if (unit > 1u) {
    CHECK(f->program(f->user, 0, 4096u + unit / 2u, chunk, unit) != 0);  // misaligned offset
    CHECK(f->program(f->user, 0, 4096u, chunk, unit + unit / 2u) != 0);  // partial unit
  }
  CHECK(g_fake.erases == erases && g_fake.programs == programs);

  // Erase brings a programmed sector back to 0xFF.
  CHECK(f->erase(f->user, 0, 0) == 0);
  CHECK(all_ff(a, f->sector_size));
  CHECK(g_fake.violations == 0u);
  CHECK(g_fake.irq_on_during_op == 0u);
#if defined(TINYSHIP_BOARD_RP2040)
  // The ROM routine must never read the caller's buffer (a const table is in flash).
  CHECK(g_fake.last_source != nullptr && g_fake.last_source != chunk);
#endif
}

void test_device_id() {
  uint8_t id[TS_MAX_DEVICE_ID + 1];
  memset(id, 0, sizeof(id));
  CHECK(tinyship::board_device_id(id, sizeof(id)) == kFakeDeviceIdLen);
  CHECK(memcmp(id, kFakeDeviceId, kFakeDeviceIdLen) == 0);
  CHECK(kFakeDeviceIdLen <= TS_MAX_DEVICE_ID);
  CHECK(tinyship::board_device_id(id, kFakeDeviceIdLen - 1u) == 0u);  // does not fit: none
  CHECK(tinyship::board_device_id(nullptr, 16) == 0u);
}

void test_reset() {
  if (setjmp(g_fake.reset_jump) == 0) {
    tinyship::board_reset();
    CHECK(false);  // unreachable: the fake reset jumps back
  }
  CHECK(g_fake.resets == 1u);
  CHECK(g_fake.violations == 0u);
  CHECK(tinyship::kBoardCanReset);
}

}  // namespace

int main(int argc, char **argv) {
  if (argc > 1) g_fake_scenario = argv[1];
  const char *why = "unset";
  const ts_flash_t *f = tinyship::board_flash(&why);
  if (strcmp(g_fake_scenario, "ok") == 0) {
    CHECK(f != nullptr && why == nullptr);
    if (f != nullptr) {
      CHECK(tinyship::board_flash(nullptr) == f);  // set up once
      test_contract(f);
    }
    test_device_id();
    test_reset();
  } else {
    CHECK(f == nullptr && why != nullptr);
    printf("scenario %s: %s\n", g_fake_scenario, why != nullptr ? why : "(no reason)");
  }
  printf("%s flash HAL (%s): %s\n", TINYSHIP_HAL_NAME, g_fake_scenario,
         g_failures == 0 ? "ok" : "FAILED");
  return g_failures == 0 ? 0 : 1;
}
