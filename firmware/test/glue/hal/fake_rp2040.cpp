// fake_rp2040.cpp - fake pico-sdk flash and watchdog for the RP2040 flash HAL test
// (hal_fake.h). Flash offsets are host addresses (-DXIP_BASE=0u, -no-pie); the fake checks
// what the real routines need: interrupts off (nothing may run from flash), sector / page
// alignment, the range within PICO_FLASH_SIZE_BYTES and the slots, and a source buffer that
// is not itself in flash (the ROM routine reads it with XIP off).
#include <string.h>

#include "hal_fake.h"
#include "hardware/flash.h"
#include "hardware/regs/addressmap.h"
#include "hardware/sync.h"
#include "hardware/watchdog.h"
#include "slot_region.h"

const uint8_t kFakeDeviceId[8] = {0xe6, 0x60, 0x38, 0xb7, 0x13, 0x2f, 0x2a, 0x2c};
const size_t kFakeDeviceIdLen = 8;
const uint32_t kFakeProgramUnit = 256;
volatile uint32_t stub_irq_disabled = 0;

namespace {

uint8_t *flash_at(uint32_t offs, size_t len) {
  if (stub_irq_disabled == 0u) g_fake.irq_on_during_op++;
  const uintptr_t base = reinterpret_cast<uintptr_t>(tinyship_slot_region);
  const uintptr_t end = base + 2u * TINYSHIP_SLOT_BYTES;
  const uintptr_t at = static_cast<uintptr_t>(XIP_BASE) + offs;
  if (static_cast<uint64_t>(offs) + len > static_cast<uint64_t>(PICO_FLASH_SIZE_BYTES) ||
      at < base || at > end || len > end - at) {
    g_fake.violations++;
    return nullptr;
  }
  return const_cast<uint8_t *>(tinyship_slot_region) + (at - base);
}

}  // namespace

extern "C" void flash_range_erase(uint32_t flash_offs, size_t count) {
  if (flash_offs % FLASH_SECTOR_SIZE != 0u || count % FLASH_SECTOR_SIZE != 0u) {
    g_fake.violations++;  // the real one asserts (invalid_params_if)
    return;
  }
  uint8_t *p = flash_at(flash_offs, count);
  if (p != nullptr) fake_erase(p, count);
}

extern "C" void flash_range_program(uint32_t flash_offs, const uint8_t *data, size_t count) {
  if (flash_offs % FLASH_PAGE_SIZE != 0u || count % FLASH_PAGE_SIZE != 0u) {
    g_fake.violations++;
    return;
  }
  const uintptr_t base = reinterpret_cast<uintptr_t>(tinyship_slot_region);
  const uintptr_t src = reinterpret_cast<uintptr_t>(data);
  if (src + count > base && src < base + 2u * TINYSHIP_SLOT_BYTES) g_fake.violations++;
  g_fake.last_source = data;
  uint8_t *p = flash_at(flash_offs, count);
  if (p != nullptr) fake_program(p, data, count);
}

extern "C" void flash_get_unique_id(uint8_t *id_out) {
  if (stub_irq_disabled == 0u) g_fake.irq_on_during_op++;  // it leaves XIP
  memcpy(id_out, kFakeDeviceId, FLASH_UNIQUE_ID_SIZE_BYTES);
}

extern "C" void watchdog_reboot(uint32_t pc, uint32_t sp, uint32_t delay_ms) {
  if (pc != 0u || sp != 0u || delay_ms != 0u) g_fake.violations++;  // a normal boot, now
  g_fake.resets++;
  longjmp(g_fake.reset_jump, 1);
}
