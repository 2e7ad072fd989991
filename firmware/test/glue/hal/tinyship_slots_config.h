/* tinyship_slots_config.h for the host test of the flash HALs (make flash-hal): what
 * firmware/scripts/select_model.py generates, with small slots (4 sectors each). */
#ifndef TINYSHIP_SLOTS_CONFIG_H
#define TINYSHIP_SLOTS_CONFIG_H
#define TINYSHIP_SLOT_BYTES 16384
#define TINYSHIP_SLOT_PARTITION_LABEL "tsslots"
#define TINYSHIP_SLOT_PARTITION_TYPE 0x40
#endif
