// ts_slot_store.cpp - read and write the model slots' flash (see ts_slot_store.h and
// firmware/SLOTS.md "Trailer"). No allocation; every flash access goes through ts_flash_t.
#include "ts_slot_store.h"

#include <string.h>

namespace {

bool pow2(uint32_t v) { return v != 0u && (v & (v - 1u)) == 0u; }

uint32_t trailer_offset(const ts_flash_t *f) { return f->slot_size - f->sector_size; }

uint32_t unit_offset(const ts_flash_t *f, ts_trailer_unit u) {
  return trailer_offset(f) + static_cast<uint32_t>(u) * ts_store_unit(f);
}

bool all_erased(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0xFFu) return false;
  }
  return true;
}

}  // namespace

extern "C" {

int ts_store_geometry_ok(const ts_flash_t *f) {
  if (f == nullptr || f->erase == nullptr || f->program == nullptr || f->map == nullptr) return 0;
  if (!pow2(f->sector_size) || !pow2(f->program_unit) ||
      f->program_unit > TS_SLOT_CHUNK_ALIGN || f->sector_size < TS_SLOT_CHUNK_ALIGN) {
    return 0;
  }
  // Four units must fit the trailer sector (RP2040: 4 x 256 bytes in 4 KiB).
  if (4u * ts_store_unit(f) > f->sector_size) return 0;
  return f->slot_size % f->sector_size == 0u && f->slot_size / f->sector_size >= 2u;
}

uint32_t ts_store_unit(const ts_flash_t *f) {
  return f->program_unit > TS_COMMIT_MAGIC_LEN ? f->program_unit : TS_COMMIT_MAGIC_LEN;
}

uint32_t ts_store_capacity(const ts_flash_t *f) { return trailer_offset(f); }

int ts_store_read(const ts_flash_t *f, uint32_t slot, const ts_slot_limits_t *limits,
                  ts_slot_record *out) {
  *out = ts_slot_record{};
  const uint8_t *base = f->map(f->user, slot);
  if (base == nullptr) return -1;
  const uint32_t u = ts_store_unit(f);
  ts_slot_flags &fl = out->flags;
  fl.commit = static_cast<uint8_t>(ts_commit_decode(base + unit_offset(f, TS_UNIT_COMMIT), u));
  fl.tried = static_cast<uint8_t>(ts_flag_decode(base + unit_offset(f, TS_UNIT_TRIED), u));
  fl.confirmed = static_cast<uint8_t>(ts_flag_decode(base + unit_offset(f, TS_UNIT_CONFIRMED), u));
  fl.revoked = static_cast<uint8_t>(ts_flag_decode(base + unit_offset(f, TS_UNIT_REVOKED), u));
  fl.crc_ok = 0;
  const uint32_t cap = ts_store_capacity(f);
  out->header_status = static_cast<uint8_t>(ts_slot_image_parse(base, cap, &out->header));
  if (out->header_status == TS_IMG_OK) {
    fl.seq = out->header.sequence;
    out->compatible =
        limits == nullptr || ts_slot_image_check(&out->header, limits) == TS_IMG_OK ? 1u : 0u;
    // The body is read only behind a commit marker: before it, nothing is trusted.
    if (fl.commit == TS_FLAG_SET && out->compatible != 0u &&
        ts_slot_image_verify_body(&out->header) == TS_IMG_OK) {
      fl.crc_ok = 1;
    }
  }
  out->state = static_cast<uint8_t>(ts_slot_classify(&fl));
  if (fl.commit == TS_FLAG_UNSET && all_erased(base, TS_SLOT_IMAGE_MAGIC_LEN)) {
    out->state = TS_SLOT_EMPTY;
  }
  return 0;
}

int ts_store_set(const ts_flash_t *f, uint32_t slot, ts_trailer_unit unit) {
  const uint8_t *base = f->map(f->user, slot);
  if (base == nullptr) return -1;
  const uint32_t u = ts_store_unit(f);
  const uint32_t off = unit_offset(f, unit);
  if (!all_erased(base + off, u)) return -1;  // write-once: never program a unit twice
  // The unit: the pattern, the rest erased (TS_SLOT_CHUNK_ALIGN >= every unit).
  uint8_t buf[TS_SLOT_CHUNK_ALIGN];
  memset(buf, 0xFF, u);
  if (unit == TS_UNIT_COMMIT) {
    memcpy(buf, ts_commit_magic, TS_COMMIT_MAGIC_LEN);
  } else {
    buf[0] = TS_FLAG_SET_BYTE;
  }
  return f->program(f->user, slot, off, buf, u) == 0 ? 0 : -1;
}

int ts_store_erase_for(const ts_flash_t *f, uint32_t slot, uint32_t image_len) {
  if (f->erase(f->user, slot, trailer_offset(f)) != 0) return -1;
  const uint32_t sectors = (image_len + f->sector_size - 1u) / f->sector_size;
  for (uint32_t s = 0; s < sectors && s * f->sector_size < trailer_offset(f); ++s) {
    if (f->erase(f->user, slot, s * f->sector_size) != 0) return -1;
  }
  return 0;
}

}  // extern "C"
