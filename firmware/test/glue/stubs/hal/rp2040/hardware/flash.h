// Stub of pico-sdk hardware/flash.h as bundled with ArduinoCore-mbed 4.0.2
// (cores/arduino/mbed/targets/TARGET_RASPBERRYPI/TARGET_RP2040/pico-sdk/rp2_common/
// hardware_flash/include/hardware/flash.h): what flash_rp2040.cpp and board_system.cpp use.
// Offsets count from the start of flash (not XIP addresses). Unsafe while code runs from
// flash: interrupts off, one core.
#ifndef _HARDWARE_FLASH_H
#define _HARDWARE_FLASH_H

#include <stddef.h>
#include <stdint.h>

#define FLASH_PAGE_SIZE (1u << 8)
#define FLASH_SECTOR_SIZE (1u << 12)
#define FLASH_BLOCK_SIZE (1u << 16)

#define FLASH_UNIQUE_ID_SIZE_BYTES 8

#ifdef __cplusplus
extern "C" {
#endif

void flash_range_erase(uint32_t flash_offs, size_t count);
void flash_range_program(uint32_t flash_offs, const uint8_t *data, size_t count);
void flash_get_unique_id(uint8_t *id_out);

#ifdef __cplusplus
}
#endif

#endif
