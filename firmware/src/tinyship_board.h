// tinyship_board.h - what main.cpp needs from the board beyond Arduino: the model slots'
// flash HAL (ts_flash.h), a hardware-unique device id and a reset. One implementation per
// board, chosen by the macros below (firmware/README.md, "Model slots on the boards"):
//
//   board      flash HAL (slots)                         device id               reset
//   nano33ble  flash_nrf52.cpp: mbed::FlashIAP over a     FICR DEVICEID[0..1]     NVIC_SystemReset
//              const region of the image (slot_region)
//   rp2040     flash_rp2040.cpp: pico-sdk                 QSPI flash unique id    watchdog_reboot
//              flash_range_erase/program, IRQs off,
//              over the same kind of region
//   esp32s3    flash_esp32.cpp: esp_partition_* on the    efuse base MAC          esp_restart
//              data partition "tsslots" (partitions.csv)
//
// Device id and reset: board_system.cpp. Any other target (the host build of the glue,
// firmware/test/glue) gets the inline fallbacks at the bottom: no slots, no id, no reset.
#ifndef TINYSHIP_BOARD_H
#define TINYSHIP_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "ts_flash.h"

#if defined(TINYSHIP_GLUE_FAKE_BOARD)
// The host build of the glue (make glue GLUE_DEFS=-DTINYSHIP_GLUE_FAKE_BOARD): a board with
// slots in RAM, defined by firmware/test/glue/glue_main.cpp.
#elif defined(ARDUINO_ARCH_MBED) && defined(NRF52840_XXAA)
#define TINYSHIP_BOARD_NRF52 1  // nano33ble (the mbed core's NRF52840 target)
#elif defined(ARDUINO_ARCH_MBED) && defined(TARGET_RP2040)
#define TINYSHIP_BOARD_RP2040 1  // nanorp2040connect (the mbed core's RP2040 target)
#elif defined(ESP_PLATFORM)
#define TINYSHIP_BOARD_ESP32 1  // esp32s3 (Arduino as an ESP-IDF component)
#endif

#if defined(TINYSHIP_BOARD_NRF52) || defined(TINYSHIP_BOARD_RP2040) || \
    defined(TINYSHIP_BOARD_ESP32) || defined(TINYSHIP_GLUE_FAKE_BOARD)
#define TINYSHIP_BOARD_KNOWN 1
#endif

namespace tinyship {

#if defined(TINYSHIP_BOARD_KNOWN)

// The flash HAL of this board's two model slots, set up on the first call; nullptr when the
// board has none: the env sets no slot size (custom_tinyship_slot_bytes), or the flash is
// not as expected (*why, if non-null, says what; a static string). Same table every call.
const ts_flash_t *board_flash(const char **why);
// Copy the hardware-unique device id into out (at most cap bytes); returns its length
// (0: none). nRF52840: 8 bytes, RP2040: 8, ESP32-S3: 6.
size_t board_device_id(uint8_t *out, size_t cap);
// Reset the whole chip (USB boards re-enumerate); does not return.
[[noreturn]] void board_reset();
constexpr bool kBoardCanReset = true;

#else  // no board support: the factory model only

inline const ts_flash_t *board_flash(const char **why) {
  if (why != nullptr) *why = nullptr;  // nothing to report: this target has no slots
  return nullptr;
}
inline size_t board_device_id(uint8_t *, size_t) { return 0; }
inline void board_reset() {}
constexpr bool kBoardCanReset = false;

#endif

}  // namespace tinyship

#endif  // TINYSHIP_BOARD_H
