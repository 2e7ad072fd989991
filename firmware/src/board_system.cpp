// board_system.cpp - the board's hardware-unique device id (INFO, TS_TLV_DEVICE_ID) and a
// whole-chip reset (REBOOT, SLOT_REVERT), per board (tinyship_board.h).
//
//   nano33ble  FICR DEVICEID[0], DEVICEID[1] (64-bit factory id), little endian;
//              NVIC_SystemReset (SYSRESETREQ resets the whole nRF52840, USB included).
//              Checked: ArduinoCore-mbed 4.1.1 nrfx/mdk/nrf52840.h (NRF_FICR_Type DEVICEID[2])
//              and CMSIS core_cm4.h (__NVIC_SystemReset).
//   rp2040     the QSPI flash's 64-bit unique id (flash_get_unique_id, RUID command 0x4B; it
//              leaves XIP, so interrupts are off around it); watchdog_reboot(0, 0, 0):
//              SYSRESETREQ would reset only the cores, the watchdog resets the chip, USB
//              included. Checked: the mbed core 4.0.2's pico-sdk hardware/flash.h,
//              hardware/watchdog.h and its libmbed.a; pico-sdk 1.3.0 watchdog.c.
//   esp32s3    the factory base MAC in efuse (esp_efuse_mac_get_default, 6 bytes);
//              esp_restart. Checked: ESP-IDF v4.4.7 esp_hw_support/include/esp_mac.h,
//              esp_system/include/esp_system.h.
#include "tinyship_board.h"

#if defined(TINYSHIP_BOARD_NRF52) || defined(TINYSHIP_BOARD_RP2040) || \
    defined(TINYSHIP_BOARD_ESP32)
#include <string.h>

#if defined(TINYSHIP_BOARD_NRF52)
#include <nrf.h>
#elif defined(TINYSHIP_BOARD_RP2040)
#include "hardware/flash.h"
#include "hardware/sync.h"
#include "hardware/watchdog.h"
#elif defined(TINYSHIP_BOARD_ESP32)
#include "esp_err.h"
#include "esp_mac.h"
#include "esp_system.h"
#endif

namespace tinyship {

size_t board_device_id(uint8_t *out, size_t cap) {
  uint8_t id[8] = {};
  size_t n = 0;
#if defined(TINYSHIP_BOARD_NRF52)
  for (uint32_t w = 0; w < 2u; ++w) {
    const uint32_t word = NRF_FICR->DEVICEID[w];
    for (uint32_t b = 0; b < 4u; ++b) id[4u * w + b] = static_cast<uint8_t>(word >> (8u * b));
  }
  n = 8;
#elif defined(TINYSHIP_BOARD_RP2040)
  static_assert(FLASH_UNIQUE_ID_SIZE_BYTES == 8, "RP2040 flash unique id: 8 bytes");
  const uint32_t irq = save_and_disable_interrupts();
  flash_get_unique_id(id);
  restore_interrupts(irq);
  n = FLASH_UNIQUE_ID_SIZE_BYTES;
#elif defined(TINYSHIP_BOARD_ESP32)
  if (esp_efuse_mac_get_default(id) != ESP_OK) return 0;
  n = 6;
#endif
  if (out == nullptr || cap < n) return 0;
  memcpy(out, id, n);
  return n;
}

void board_reset() {
#if defined(TINYSHIP_BOARD_NRF52)
  NVIC_SystemReset();
#elif defined(TINYSHIP_BOARD_RP2040)
  watchdog_reboot(0, 0, 0);  // pc 0: a normal boot; delay 0: trigger now
  for (;;) {
  }
#elif defined(TINYSHIP_BOARD_ESP32)
  esp_restart();
#endif
}

}  // namespace tinyship

#endif  // a board with support
