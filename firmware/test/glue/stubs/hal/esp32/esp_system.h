// Stub of ESP-IDF v4.4.7 components/esp_system/include/esp_system.h: the restart call.
#ifndef TINYSHIP_STUB_ESP_SYSTEM_H
#define TINYSHIP_STUB_ESP_SYSTEM_H

#ifdef __cplusplus
extern "C" {
#endif

void esp_restart(void) __attribute__((noreturn));

#ifdef __cplusplus
}
#endif

#endif
