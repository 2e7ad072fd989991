// fake_nrf52.cpp - fake mbed::FlashIAP and FICR for the nRF52 flash HAL test (hal_fake.h):
// FlashIAP over the HAL's slot region itself (absolute addresses: the test links with
// -no-pie, so the region's address fits the 32-bit API, as on the board), with the nRF52840
// mbed HAL's geometry: flash from 0, 4 KiB sectors, 4-byte pages, erased 0xFF.
#include <string.h>

#include "drivers/FlashIAP.h"
#include "hal_fake.h"
#include "nrf.h"
#include "slot_region.h"

const uint8_t kFakeDeviceId[8] = {0x78, 0x56, 0x34, 0x12, 0xf0, 0xde, 0xbc, 0x9a};
const size_t kFakeDeviceIdLen = 8;
const uint32_t kFakeProgramUnit = 4;
NRF_FICR_Type stub_nrf_ficr = {{0x12345678u, 0x9abcdef0u}};

namespace {

bool g_init = false;

uint8_t *region_at(uint32_t addr, uint32_t len) {
  const uintptr_t base = reinterpret_cast<uintptr_t>(tinyship_slot_region);
  const uintptr_t end = base + 2u * TINYSHIP_SLOT_BYTES;
  if (!g_init || addr < base || len > end - addr || addr > end) {
    g_fake.violations++;
    return nullptr;
  }
  return const_cast<uint8_t *>(tinyship_slot_region) + (addr - base);
}

}  // namespace

namespace mbed {

int FlashIAP::init() {
  if (strcmp(g_fake_scenario, "init-fails") == 0) return -1;
  g_init = true;
  return 0;
}

int FlashIAP::erase(uint32_t addr, uint32_t size) {
  if (addr % 4096u != 0u || size % 4096u != 0u || size == 0u) return -1;
  uint8_t *p = region_at(addr, size);
  if (p == nullptr) return -1;
  fake_erase(p, size);
  return 0;
}

int FlashIAP::program(const void *buffer, uint32_t addr, uint32_t size) {
  if (buffer == nullptr || addr % 4u != 0u) return -1;
  uint8_t *p = region_at(addr, size);
  if (p == nullptr) return -1;
  g_fake.last_source = static_cast<const uint8_t *>(buffer);
  fake_program(p, static_cast<const uint8_t *>(buffer), size);
  return 0;
}

uint32_t FlashIAP::get_sector_size(uint32_t) const {
  return strcmp(g_fake_scenario, "geometry") == 0 ? 2048u : 4096u;
}
uint32_t FlashIAP::get_flash_start() const { return 0; }
uint32_t FlashIAP::get_flash_size() const { return 0x1000000u; }  // the host test's low 16 MiB
uint32_t FlashIAP::get_page_size() const { return 4; }
uint8_t FlashIAP::get_erase_value() const { return 0xFF; }

}  // namespace mbed

extern "C" void __NVIC_SystemReset(void) {
  g_fake.resets++;
  longjmp(g_fake.reset_jump, 1);
}
