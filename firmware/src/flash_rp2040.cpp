// flash_rp2040.cpp - model slot flash HAL of the nanorp2040connect (RP2040, Arduino mbed
// core): pico-sdk flash_range_erase / flash_range_program over the slot region of the
// firmware image (slot_region.h), each with interrupts off.
//
// Checked against ArduinoCore-mbed 4.0.2 (the framework-arduino-mbed ~4.0.2 of
// platformio/raspberrypi @ 1.9.0): its pico-sdk headers rp2_common/hardware_flash/include/
// hardware/flash.h (offsets from the start of flash, 4 KiB sectors, 256-byte pages,
// flash_get_unique_id) and hardware_sync (save_and_disable_interrupts), the functions in
// variants/NANO_RP2040_CONNECT/libs/libmbed.a (flash_range_erase/program in .time_critical,
// i.e. RAM; -DPICO_FLASH_SIZE_BYTES=16*1024*1024 in defines.txt, hard_assert-ed by both),
// and pico-sdk 1.3.0 src/rp2_common/hardware_flash/flash.c (XIP is off while the ROM
// routine runs, the cache is flushed after it). The core's own FlashIAP (patches 0033-0054:
// flash_api.c, the same two calls in a critical section) hands the caller's buffer to
// flash_range_program unchanged and allocates its page buffer with new[] in init(); this
// HAL calls pico-sdk directly to copy each page to RAM first.
//
// Why interrupts off is enough: the flash is not readable while erasing or programming, so
// nothing may execute from it: the two routines run from RAM, no interrupt handler runs,
// and the mbed core never starts the second core.
#include "tinyship_board.h"

#if defined(TINYSHIP_BOARD_RP2040)
#include <string.h>

#include "hardware/flash.h"
#include "hardware/regs/addressmap.h"
#include "hardware/sync.h"
#include "slot_region.h"

namespace tinyship {

#if TINYSHIP_SLOT_BYTES > 0
namespace {

constexpr uint32_t kSlotBytes = TINYSHIP_SLOT_BYTES;
constexpr uint32_t kSector = FLASH_SECTOR_SIZE;  // 4096
constexpr uint32_t kPage = FLASH_PAGE_SIZE;      // 256: the program unit
static_assert(kSector == 4096u && kPage == 256u,
              "RP2040 QSPI flash: 4 KiB sectors, 256-byte pages");
static_assert(TS_SLOT_CHUNK_ALIGN % kPage == 0u, "write chunks must be whole pages");
// Nominal worst-case times, conservative: the board's AT25SF128A states 70 ms per 4 KiB
// erase and 0.6 ms per page as typical figures (datasheet features list); its maximum was
// not checked, so ESP-IDF's generic sector-erase timeout (600 ms, spi_flash_chip_generic.c)
// and 3 ms per page program (the usual QSPI NOR maximum) are reported.
constexpr uint32_t kEraseUs = 600000u;
constexpr uint32_t kChunkUs = TS_SLOT_MAX_CHUNK / kPage * 3000u;  // 9 ms

// Bytes of flash (flash_range_erase/program hard_assert that they stay below it): the
// core's PICO_FLASH_SIZE_BYTES (16 MiB, defines.txt), else the 16 MiB XIP window.
#ifdef PICO_FLASH_SIZE_BYTES
constexpr uintptr_t kFlashBytes = PICO_FLASH_SIZE_BYTES;
#else
constexpr uintptr_t kFlashBytes = 16u * 1024u * 1024u;
#endif

// RAM copy of the page being programmed: the ROM routine reads its source with XIP off, so
// a source in flash (a const table) would read garbage.
alignas(4) uint8_t g_page[FLASH_PAGE_SIZE];
ts_flash_t g_flash = {};
bool g_started = false;
const char *g_why = nullptr;

// Offset of the region from the start of flash (XIP_BASE = 0x10000000).
uint32_t region_offset() {
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(tinyship_slot_region) -
                               static_cast<uintptr_t>(XIP_BASE));
}

bool in_slot(uint32_t slot, uint32_t offset, uint32_t len) {
  return slot < TS_FLASH_SLOTS && offset <= kSlotBytes && len <= kSlotBytes - offset;
}

const uint8_t *slot_view(uint32_t slot) { return tinyship_slot_region + slot * kSlotBytes; }

// flash_range_erase/program report nothing: each checks what it wrote through the XIP view
// (the ROM routine flushed the cache).
int erase_cb(void *, uint32_t slot, uint32_t offset) {
  if (!in_slot(slot, offset, kSector) || offset % kSector != 0u) return -1;
  const uint32_t irq = save_and_disable_interrupts();
  flash_range_erase(region_offset() + slot * kSlotBytes + offset, kSector);
  restore_interrupts(irq);
  const uint8_t *p = slot_view(slot) + offset;
  for (uint32_t i = 0; i < kSector; ++i) {
    if (p[i] != 0xFFu) return -1;
  }
  return 0;
}

int program_cb(void *, uint32_t slot, uint32_t offset, const uint8_t *data, uint32_t len) {
  if (data == nullptr || len == 0u || !in_slot(slot, offset, len) || offset % kPage != 0u ||
      len % kPage != 0u) {
    return -1;
  }
  for (uint32_t done = 0; done < len; done += kPage) {
    memcpy(g_page, data + done, kPage);
    const uint32_t irq = save_and_disable_interrupts();
    flash_range_program(region_offset() + slot * kSlotBytes + offset + done, g_page, kPage);
    restore_interrupts(irq);
    if (memcmp(slot_view(slot) + offset + done, g_page, kPage) != 0) return -1;
  }
  return 0;
}

// The region's XIP address is its memory-mapped view (cached; flushed by every erase and
// program above).
const uint8_t *map_cb(void *, uint32_t slot) {
  return slot < TS_FLASH_SLOTS ? slot_view(slot) : nullptr;
}

const char *start() {
  // A region below XIP_BASE wraps to a huge offset: refused by the size check too.
  const uintptr_t offset =
      reinterpret_cast<uintptr_t>(tinyship_slot_region) - static_cast<uintptr_t>(XIP_BASE);
  if (offset % kSector != 0u || offset > kFlashBytes || 2u * kSlotBytes > kFlashBytes - offset) {
    return "slot region is not sector-aligned flash within PICO_FLASH_SIZE_BYTES";
  }
  g_flash.user = nullptr;
  g_flash.sector_size = kSector;
  g_flash.program_unit = kPage;
  g_flash.slot_size = kSlotBytes;
  g_flash.erase_sector_us = kEraseUs;
  g_flash.program_chunk_us = kChunkUs;
  g_flash.erase = erase_cb;
  g_flash.program = program_cb;
  g_flash.map = map_cb;
  return nullptr;
}

}  // namespace

const ts_flash_t *board_flash(const char **why) {
  if (!g_started) {
    g_started = true;
    g_why = start();
  }
  if (why != nullptr) *why = g_why;
  return g_why == nullptr ? &g_flash : nullptr;
}

#else  // the env sets no slot size: the factory model only

const ts_flash_t *board_flash(const char **why) {
  if (why != nullptr) *why = nullptr;
  return nullptr;
}

#endif

}  // namespace tinyship

#endif  // TINYSHIP_BOARD_RP2040
