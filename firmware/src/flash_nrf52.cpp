// flash_nrf52.cpp - model slot flash HAL of the nano33ble (nRF52840, Arduino mbed core):
// mbed::FlashIAP over the slot region of the firmware image (slot_region.h).
//
// Checked against ArduinoCore-mbed 4.1.1 (the framework-arduino-mbed ~4.1.1 of
// platformio/nordicnrf52 @ 10.4.0): cores/arduino/mbed/drivers/include/drivers/FlashIAP.h
// (absolute addresses; program() wants a page-aligned address, erase() sector-aligned ones),
// variants/ARDUINO_NANO33BLE/defines.txt (DEVICE_FLASH=1, COMPONENT_FLASHIAP=1, no
// SoftDevice) and linker_script.ld (FLASH 0x10000-0x100000, *(.rodata*) in .text); mbed-os
// drivers/source/FlashIAP.cpp and targets/.../TARGET_NRF52/flash_api.c (nrf_fstorage over
// the NVMC: 4-byte page (word) writes, 4 KiB sectors, flash from address 0). FlashIAPBlockDevice
// is not used: its default base/size (MBED_CONF_FLASHIAP_BLOCK_DEVICE_*) are 0xFFFFFFFF / 0,
// and this HAL passes every address explicitly instead.
#include "tinyship_board.h"

#if defined(TINYSHIP_BOARD_NRF52)
#include "drivers/FlashIAP.h"
#include "slot_region.h"

namespace tinyship {

#if TINYSHIP_SLOT_BYTES > 0
namespace {

constexpr uint32_t kSlotBytes = TINYSHIP_SLOT_BYTES;
constexpr uint32_t kSector = 4096;  // nRF52840 flash page: the erase unit
constexpr uint32_t kWord = 4;       // NVMC write unit (flash_get_page_size of the mbed HAL)
// Worst-case times, nRF52840 Product Specification (NVMC electrical specification, max):
// page erase tERASEPAGE 85 ms, word write tWRITE 41 us (firmware/SLOTS.md).
constexpr uint32_t kEraseUs = 85000u;
constexpr uint32_t kChunkUs = TS_SLOT_MAX_CHUNK / kWord * 41u;  // 7,872 us

mbed::FlashIAP g_iap;  // constexpr constructor: no static-initialisation order issue
ts_flash_t g_flash = {};
bool g_started = false;
const char *g_why = nullptr;

uint32_t region_base() {
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(tinyship_slot_region));
}

bool in_slot(uint32_t slot, uint32_t offset, uint32_t len) {
  return slot < TS_FLASH_SLOTS && offset <= kSlotBytes && len <= kSlotBytes - offset;
}

int erase_cb(void *, uint32_t slot, uint32_t offset) {
  if (!in_slot(slot, offset, kSector) || offset % kSector != 0u) return -1;
  return g_iap.erase(region_base() + slot * kSlotBytes + offset, kSector) == 0 ? 0 : -1;
}

// FlashIAP::program retries a failed page write up to 16 times, which would write a word
// twice; the NVMC backend (no SoftDevice) is synchronous and never reports a failure for
// an in-range, aligned write, so the retry cannot happen here.
int program_cb(void *, uint32_t slot, uint32_t offset, const uint8_t *data, uint32_t len) {
  if (data == nullptr || len == 0u || !in_slot(slot, offset, len) || offset % kWord != 0u ||
      len % kWord != 0u) {
    return -1;
  }
  return g_iap.program(data, region_base() + slot * kSlotBytes + offset, len) == 0 ? 0 : -1;
}

// Flash is memory-mapped from address 0 on the nRF52840: the region is its own view.
const uint8_t *map_cb(void *, uint32_t slot) {
  return slot < TS_FLASH_SLOTS ? tinyship_slot_region + slot * kSlotBytes : nullptr;
}

const char *start() {
  if (g_iap.init() != 0) return "FlashIAP init failed";
  const uint32_t base = region_base();
  const uint32_t first = g_iap.get_flash_start();
  const uint32_t size = g_iap.get_flash_size();
  if (base % kSector != 0u || base < first || base - first > size ||
      2u * kSlotBytes > size - (base - first)) {
    return "slot region is not sector-aligned flash";
  }
  if (g_iap.get_sector_size(base) != kSector || g_iap.get_page_size() != kWord ||
      g_iap.get_erase_value() != 0xFFu) {
    return "flash geometry is not 4 KiB pages, 4-byte words, erased 0xFF";
  }
  g_flash.user = nullptr;
  g_flash.sector_size = kSector;
  g_flash.program_unit = kWord;
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

#endif  // TINYSHIP_BOARD_NRF52
