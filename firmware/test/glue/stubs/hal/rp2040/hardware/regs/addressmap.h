// Stub of pico-sdk hardware/regs/addressmap.h (ArduinoCore-mbed 4.0.2's copy): the XIP base
// address flash is memory-mapped at. The host test overrides it (-DXIP_BASE=0u).
#ifndef _ADDRESSMAP_H_
#define _ADDRESSMAP_H_

#ifndef _u
#define _u(x) x##u
#endif

#ifndef XIP_BASE
#define XIP_BASE _u(0x10000000)
#endif

#endif
