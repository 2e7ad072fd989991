/*
 * ts_slot_store.h - the two model slots in flash, over the board's ts_flash_t.
 *
 * Layout of a slot (firmware/SLOTS.md): the image (header then model) from offset 0,
 * the trailer in the slot's last sector: four write-once units (commit marker, tried,
 * confirmed, revoked), each `ts_store_unit(flash)` bytes apart. This file reads a
 * slot's state, programs one trailer unit, and erases a slot for an install; the
 * decisions live in ts_slot_state (which slot boots) and the core (the protocol).
 */
#ifndef TS_SLOT_STORE_H
#define TS_SLOT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "ts_flash.h"
#include "ts_slot_image.h"
#include "ts_slot_state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reported state of a slot: a ts_slot_class, or this for an erased slot (no header
 * magic, no commit marker). */
#define TS_SLOT_EMPTY 5u
/* ... and in SLOT_INFO, for the slot running now as a trial (its flags read "tried, not
 * confirmed", the FAILED class the next boot would give it). */
#define TS_SLOT_TRIAL 6u

/* Trailer units, in trailer order. */
typedef enum {
  TS_UNIT_COMMIT = 0,
  TS_UNIT_TRIED = 1,
  TS_UNIT_CONFIRMED = 2,
  TS_UNIT_REVOKED = 3
} ts_trailer_unit;

/* What a slot holds, read from flash. */
typedef struct {
  uint8_t state;          /* ts_slot_class, or TS_SLOT_EMPTY */
  uint8_t header_status;  /* ts_slot_image_status of the stored header (0: ok) */
  uint8_t compatible;     /* 1: the firmware can run it (ts_slot_image_check passed) */
  ts_slot_flags flags;    /* commit, crc_ok, tried, confirmed, revoked, seq */
  ts_slot_header_t header; /* valid when header_status == 0 (body points into flash) */
} ts_slot_record;

/* True when the geometry is one the store can use (see ts_flash.h). */
int ts_store_geometry_ok(const ts_flash_t *f);
/* Bytes between trailer units: max(8, program unit). */
uint32_t ts_store_unit(const ts_flash_t *f);
/* Image bytes a slot holds (everything before the trailer sector). */
uint32_t ts_store_capacity(const ts_flash_t *f);

/* Read slot `slot`: trailer flags, header, body CRC (only behind a commit marker),
 * compatibility with `limits` (NULL: not checked). A committed slot whose header does
 * not parse, whose CRC fails or that the firmware cannot run counts as crc_ok = 0,
 * i.e. INVALID: never booted. 0, or -1 when the slot cannot be mapped. */
int ts_store_read(const ts_flash_t *f, uint32_t slot, const ts_slot_limits_t *limits,
                  ts_slot_record *out);

/* Program one trailer unit of `slot` (the commit magic, or the "set" pattern). Each
 * unit is programmed at most once between erases; a unit that is not erased is
 * left alone and reported as failure (-1). 0 on success. */
int ts_store_set(const ts_flash_t *f, uint32_t slot, ts_trailer_unit unit);

/* Erase what an install of `image_len` bytes into `slot` needs: the trailer sector
 * first (the old commit marker goes before anything else), then the image's sectors
 * from offset 0. 0, or -1 on the first failing erase. */
int ts_store_erase_for(const ts_flash_t *f, uint32_t slot, uint32_t image_len);

#ifdef __cplusplus
}
#endif

#endif /* TS_SLOT_STORE_H */
