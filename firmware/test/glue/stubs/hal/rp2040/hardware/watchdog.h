// Stub of pico-sdk hardware/watchdog.h (ArduinoCore-mbed 4.0.2's copy): the reboot call of
// board_system.cpp. pc = 0: a normal boot; delay_ms = 0: trigger the watchdog now (pico-sdk
// 1.3.0 watchdog.c sets WATCHDOG_CTRL_TRIGGER; the PSM resets everything but the oscillators).
#ifndef _HARDWARE_WATCHDOG_H
#define _HARDWARE_WATCHDOG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void watchdog_reboot(uint32_t pc, uint32_t sp, uint32_t delay_ms);

#ifdef __cplusplus
}
#endif

#endif
