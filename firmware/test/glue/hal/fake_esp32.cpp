// fake_esp32.cpp - fake ESP-IDF partition, MAC and restart calls for the ESP32 flash HAL
// test (hal_fake.h): one partition "tsslots" of type 0x40 over a page-aligned host buffer,
// with the checks of ESP-IDF v4.4.7 (erase in whole 4 KiB sectors, bounds) and strict NOR.
#include <string.h>

#include "esp_mac.h"
#include "esp_partition.h"
#include "esp_system.h"
#include "hal_fake.h"
#include "tinyship_slots_config.h"

const uint8_t kFakeDeviceId[8] = {0x7c, 0xdf, 0xa1, 0x0b, 0x2c, 0x44, 0, 0};
const size_t kFakeDeviceIdLen = 6;
const uint32_t kFakeProgramUnit = 1;

namespace {

constexpr uint32_t kPartBytes = 2u * TINYSHIP_SLOT_BYTES + 4096u;  // a sector to spare
alignas(65536) uint8_t g_part_flash[65536];
static_assert(kPartBytes <= sizeof(g_part_flash), "fake partition too small");
esp_partition_t g_part = {};
bool g_ready = false;

bool in_part(const esp_partition_t *p, size_t offset, size_t size) {
  if (p != &g_part || offset > g_part.size || size > g_part.size - offset) {
    g_fake.violations++;
    return false;
  }
  return true;
}

}  // namespace

extern "C" const esp_partition_t *esp_partition_find_first(esp_partition_type_t type,
                                                           esp_partition_subtype_t subtype,
                                                           const char *label) {
  if (strcmp(g_fake_scenario, "missing") == 0 || static_cast<int>(type) != 0x40 ||
      subtype != ESP_PARTITION_SUBTYPE_ANY || label == nullptr || strcmp(label, "tsslots") != 0) {
    return nullptr;
  }
  if (!g_ready) {
    g_ready = true;
    fake_erase(g_part_flash, sizeof(g_part_flash));
    g_part.type = type;
    g_part.subtype = static_cast<esp_partition_subtype_t>(0);
    g_part.address = 0x310000u;
    g_part.size = strcmp(g_fake_scenario, "small") == 0 ? 2u * TINYSHIP_SLOT_BYTES - 4096u
                                                         : kPartBytes;
    strcpy(g_part.label, "tsslots");
    g_part.encrypted = strcmp(g_fake_scenario, "encrypted") == 0;
  }
  return &g_part;
}

extern "C" esp_err_t esp_partition_erase_range(const esp_partition_t *partition, size_t offset,
                                               size_t size) {
  if (offset % 4096u != 0u || size % 4096u != 0u) return ESP_FAIL;  // ESP_ERR_INVALID_ARG
  if (!in_part(partition, offset, size)) return ESP_FAIL;
  fake_erase(g_part_flash + offset, size);
  return ESP_OK;
}

extern "C" esp_err_t esp_partition_write(const esp_partition_t *partition, size_t dst_offset,
                                         const void *src, size_t size) {
  if (src == nullptr || !in_part(partition, dst_offset, size)) return ESP_FAIL;
  g_fake.last_source = static_cast<const uint8_t *>(src);
  fake_program(g_part_flash + dst_offset, static_cast<const uint8_t *>(src), size);
  return ESP_OK;
}

extern "C" esp_err_t esp_partition_mmap(const esp_partition_t *partition, size_t offset,
                                        size_t size, spi_flash_mmap_memory_t memory,
                                        const void **out_ptr,
                                        spi_flash_mmap_handle_t *out_handle) {
  if (strcmp(g_fake_scenario, "mmap-fails") == 0 || memory != SPI_FLASH_MMAP_DATA ||
      out_ptr == nullptr || out_handle == nullptr || !in_part(partition, offset, size)) {
    return ESP_FAIL;
  }
  *out_ptr = g_part_flash + offset;  // real: partition address rounded down to 64 KiB, re-added
  *out_handle = 1;
  return ESP_OK;
}

extern "C" esp_err_t esp_efuse_mac_get_default(uint8_t *mac) {
  memcpy(mac, kFakeDeviceId, 6);
  return ESP_OK;
}

extern "C" void esp_restart(void) {
  g_fake.resets++;
  longjmp(g_fake.reset_jump, 1);
}
