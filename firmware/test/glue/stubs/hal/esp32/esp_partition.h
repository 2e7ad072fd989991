// Stub of ESP-IDF v4.4.7 components/spi_flash/include/esp_partition.h: what flash_esp32.cpp
// uses, with the real signatures (the mmap types come from esp_spi_flash.h, which the real
// header includes). Partition types 0x40-0xFE are the application's; erase offsets and sizes
// are whole 4 KiB sectors; mmap returns the pointer of the requested offset.
#ifndef TINYSHIP_STUB_ESP_PARTITION_H
#define TINYSHIP_STUB_ESP_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct esp_flash_t esp_flash_t; /* esp_flash.h */

typedef enum {
  ESP_PARTITION_TYPE_APP = 0x00,
  ESP_PARTITION_TYPE_DATA = 0x01,
  ESP_PARTITION_TYPE_ANY = 0xff,
} esp_partition_type_t;

typedef enum {
  ESP_PARTITION_SUBTYPE_APP_FACTORY = 0x00,
  ESP_PARTITION_SUBTYPE_DATA_UNDEFINED = 0x06,
  ESP_PARTITION_SUBTYPE_ANY = 0xff,
} esp_partition_subtype_t; /* real: every IDF subtype; these are the ones referenced */

typedef struct {
  esp_flash_t *flash_chip;
  esp_partition_type_t type;
  esp_partition_subtype_t subtype;
  uint32_t address;
  uint32_t size;
  char label[17];
  bool encrypted;
} esp_partition_t;

/* esp_spi_flash.h */
typedef enum {
  SPI_FLASH_MMAP_DATA,
  SPI_FLASH_MMAP_INST,
} spi_flash_mmap_memory_t;
typedef uint32_t spi_flash_mmap_handle_t;

const esp_partition_t *esp_partition_find_first(esp_partition_type_t type,
                                                esp_partition_subtype_t subtype,
                                                const char *label);
esp_err_t esp_partition_write(const esp_partition_t *partition, size_t dst_offset,
                              const void *src, size_t size);
esp_err_t esp_partition_erase_range(const esp_partition_t *partition, size_t offset,
                                    size_t size);
esp_err_t esp_partition_mmap(const esp_partition_t *partition, size_t offset, size_t size,
                             spi_flash_mmap_memory_t memory, const void **out_ptr,
                             spi_flash_mmap_handle_t *out_handle);

#ifdef __cplusplus
}
#endif

#endif
