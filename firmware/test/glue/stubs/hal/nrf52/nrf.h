// Stub of <nrf.h> for the nRF52840 (ArduinoCore-mbed 4.1.1, nrfx/mdk/nrf52840.h and CMSIS 5
// core_cm4.h): the factory information registers' DEVICEID and the system reset.
#ifndef TINYSHIP_STUB_NRF_H
#define TINYSHIP_STUB_NRF_H

#include <stdint.h>

#define __I volatile const

typedef struct {
  __I uint32_t DEVICEID[2]; /* real: at offset 0x060 of NRF_FICR_Type, among other fields */
} NRF_FICR_Type;

#ifdef __cplusplus
extern "C" {
#endif
extern NRF_FICR_Type stub_nrf_ficr; /* real: ((NRF_FICR_Type *) NRF_FICR_BASE), 0x10000000 */
/* real: __NO_RETURN __STATIC_INLINE void __NVIC_SystemReset(void) */
__attribute__((noreturn)) void __NVIC_SystemReset(void);
#ifdef __cplusplus
}
#endif

#define NRF_FICR (&stub_nrf_ficr)
#define NVIC_SystemReset __NVIC_SystemReset

#endif
