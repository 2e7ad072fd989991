// Stub of pico-sdk hardware/sync.h (ArduinoCore-mbed 4.0.2's copy): the two inline
// functions flash_rp2040.cpp uses. The real ones read PRIMASK and execute cpsid i /
// restore PRIMASK; here they keep the state in stub_irq_disabled for the fakes to check.
#ifndef _HARDWARE_SYNC_H
#define _HARDWARE_SYNC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
extern volatile uint32_t stub_irq_disabled;
#ifdef __cplusplus
}
#endif

/* real: __force_inline static uint32_t save_and_disable_interrupts(void) */
static inline uint32_t save_and_disable_interrupts(void) {
  const uint32_t status = stub_irq_disabled;
  stub_irq_disabled = 1u;
  return status;
}

/* real: __force_inline static void restore_interrupts(uint32_t status) */
static inline void restore_interrupts(uint32_t status) { stub_irq_disabled = status; }

#endif
