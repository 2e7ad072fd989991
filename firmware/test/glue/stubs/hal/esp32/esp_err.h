// Stub of ESP-IDF v4.4.7 components/esp_common/include/esp_err.h: the error type.
#ifndef TINYSHIP_STUB_ESP_ERR_H
#define TINYSHIP_STUB_ESP_ERR_H

typedef int esp_err_t;

#define ESP_OK 0
#define ESP_FAIL -1

#endif
