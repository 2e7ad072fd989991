// Stub of the mbed FlashIAP driver (ArduinoCore-mbed 4.1.1,
// cores/arduino/mbed/drivers/include/drivers/FlashIAP.h): the members flash_nrf52.cpp uses,
// with their real signatures. Addresses are absolute; program() needs a page-aligned
// address, erase() sector-aligned address and size; 0 on success, negative on failure.
#ifndef TINYSHIP_STUB_MBED_FLASHIAP_H
#define TINYSHIP_STUB_MBED_FLASHIAP_H

#if DEVICE_FLASH || defined(DOXYGEN_ONLY)

#include <stdint.h>

namespace mbed {

class FlashIAP {
 public:
  constexpr FlashIAP() {}  // real: constexpr FlashIAP() : _flash(), _page_buf(nullptr)
  int init();
  int program(const void *buffer, uint32_t addr, uint32_t size);
  int erase(uint32_t addr, uint32_t size);
  uint32_t get_sector_size(uint32_t addr) const;
  uint32_t get_flash_start() const;
  uint32_t get_flash_size() const;
  uint32_t get_page_size() const;
  uint8_t get_erase_value() const;
};

}  // namespace mbed

#endif /* DEVICE_FLASH */

#endif
