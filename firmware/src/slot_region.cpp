// slot_region.cpp - emits the mbed boards' slot region (slot_region.h) into the image.
//
// An assembler block rather than a C++ array: `.fill` writes 2 x TINYSHIP_SLOT_BYTES bytes
// of 0xFF without a huge initializer, and C++ code sees only an extern declaration, so no
// read of the (changing) flash contents can be constant-folded. The section name starts
// with .rodata: the nano33ble linker script takes it with *(.rodata*) into .text (FLASH),
// the RP2040 one places it like every other .rodata.* input section of the sketch (FLASH).
// It is referenced by the flash HAL, so --gc-sections keeps it.
#include "tinyship_board.h"

#if defined(TINYSHIP_BOARD_NRF52) || defined(TINYSHIP_BOARD_RP2040)
#include "slot_region.h"

#if TINYSHIP_SLOT_BYTES > 0
#define TINYSHIP_STR2(x) #x
#define TINYSHIP_STR(x) TINYSHIP_STR2(x)

__asm__(
    ".pushsection .rodata.tinyship_slots,\"a\",%progbits\n"
    ".balign " TINYSHIP_STR(TINYSHIP_SLOT_REGION_ALIGN) "\n"
    ".global tinyship_slot_region\n"
    ".type tinyship_slot_region, %object\n"
    ".size tinyship_slot_region, 2*" TINYSHIP_STR(TINYSHIP_SLOT_BYTES) "\n"
    "tinyship_slot_region:\n"
    ".fill 2*" TINYSHIP_STR(TINYSHIP_SLOT_BYTES) ", 1, 0xff\n"
    ".popsection\n");

#endif  // TINYSHIP_SLOT_BYTES > 0
#endif  // mbed boards
