// Stub of ESP-IDF v4.4.7 components/esp_hw_support/include/esp_mac.h: the factory MAC.
#ifndef TINYSHIP_STUB_ESP_MAC_H
#define TINYSHIP_STUB_ESP_MAC_H

#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The base MAC programmed in efuse by Espressif (6 bytes). */
esp_err_t esp_efuse_mac_get_default(uint8_t *mac);

#ifdef __cplusplus
}
#endif

#endif
