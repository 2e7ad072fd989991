/*
 * ts_flash.h - the model slots' flash interface (one small HAL per board).
 *
 * The core reaches a board's internal flash only through this table: erase one
 * sector, program whole program units, and a memory-mapped view of each slot (TFLM
 * runs a slot's model in place from it). Each board's glue implements it
 * (firmware/src/flash_*.cpp: mbed::FlashIAP on nano33ble, pico-sdk flash_range_*
 * with interrupts off on the RP2040 env, esp_partition_* on esp32s3); the virtual board implements it over its NOR
 * simulation. Layout and write order: firmware/SLOTS.md.
 */
#ifndef TS_FLASH_H
#define TS_FLASH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Slot A and slot B (the `slot` argument below). */
#define TS_FLASH_SLOTS 2u
/* Write chunks start at a multiple of this (the largest program unit of the three
 * boards, the RP2040's 256-byte page), so every board programs whole units. */
#define TS_SLOT_CHUNK_ALIGN 256u
/* Largest data bytes of one SLOT_WRITE: 3 pages, so offset + data fit one payload. */
#define TS_SLOT_MAX_CHUNK 768u

typedef struct ts_flash {
  void *user; /* passed back to every callback */
  /* Erase unit in bytes (4096 on all three boards); a power of two. */
  uint32_t sector_size;
  /* Program unit in bytes: 4 (nRF52840 word), 256 (RP2040 page), 1 (ESP32-S3).
   * A power of two dividing TS_SLOT_CHUNK_ALIGN. */
  uint32_t program_unit;
  /* Bytes of each slot: a multiple of sector_size, at least 2 sectors (the last
   * sector holds the slot's trailer flags). */
  uint32_t slot_size;
  /* Nominal worst-case times, reported in SLOT_INFO so a host can pace chunks and
   * size its timeouts (0 = unknown): erase of one sector, programming of
   * TS_SLOT_MAX_CHUNK bytes. */
  uint32_t erase_sector_us;
  uint32_t program_chunk_us;
  /* Erase the sector of slot `slot` at byte `offset` (a multiple of sector_size).
   * TS_OK (0) or non-zero on failure. */
  int (*erase)(void *user, uint32_t slot, uint32_t offset);
  /* Program `len` bytes at `offset` of slot `slot`; offset and len are multiples of
   * program_unit and every target byte is erased (0xFF): a unit is written at most
   * once between erases. TS_OK (0) or non-zero on failure. */
  int (*program)(void *user, uint32_t slot, uint32_t offset, const uint8_t *data,
                 uint32_t len);
  /* Memory-mapped, readable view of the whole slot, 16-byte aligned (TFLM runs the
   * model in place from it); NULL when the slot cannot be mapped. Reads see every
   * completed erase and program. */
  const uint8_t *(*map)(void *user, uint32_t slot);
} ts_flash_t;

#ifdef __cplusplus
}
#endif

#endif /* TS_FLASH_H */
