// ts_slot_image.cpp - parse and check a model slot image header (see ts_slot_image.h and
// firmware/SLOTS.md "Slot image"). Pure: no flash access, no allocation, no globals written.
#include "ts_slot_image.h"

#include <string.h>

#include <cmath>

#include "tinyship_core.h"  // ts_crc32

extern "C" const uint8_t ts_slot_image_magic[TS_SLOT_IMAGE_MAGIC_LEN] = {'T', 'S', 'M', 'H'};

namespace {

// Field offsets of the fixed part (little-endian throughout).
constexpr size_t kOffVersion = 4, kOffHeaderLen = 6, kOffSequence = 8, kOffModelLen = 12,
                 kOffModelCrc = 16, kOffSha = 20, kOffModelVersion = 52, kOffProfile = 68,
                 kOffArena = 100, kOffInput = 104, kOffOutput = 108, kOffInScale = 112,
                 kOffInZero = 116, kOffOutScale = 120, kOffOutZero = 124, kOffNOps = 128,
                 kOffNGolden = 130, kOffTargetMean = 132, kOffTargetScale = 136;

uint16_t le16(const uint8_t *p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t *p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
float lef32(const uint8_t *p) {
  const uint32_t u = le32(p);
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

// A NUL-padded string field: once a NUL is seen, every following byte is NUL too.
bool copy_str(const uint8_t *p, size_t n, char *dst) {
  bool ended = false;
  for (size_t i = 0; i < n; ++i) {
    if (p[i] == 0u) ended = true;
    else if (ended) return false;
    dst[i] = static_cast<char>(p[i]);
  }
  dst[n] = '\0';
  return true;
}

// The header length the variable part needs: fixed part, operator ids, golden vectors,
// padded to 16. 64-bit so no field value can overflow it.
uint64_t needed_header_len(uint16_t n_ops, uint16_t n_golden, uint32_t in, uint32_t out) {
  const uint64_t raw = TS_SLOT_IMAGE_FIXED_LEN + 2u * static_cast<uint64_t>(n_ops) +
                       static_cast<uint64_t>(n_golden) * (static_cast<uint64_t>(in) + out);
  return (raw + (TS_SLOT_IMAGE_ALIGN - 1u)) / TS_SLOT_IMAGE_ALIGN * TS_SLOT_IMAGE_ALIGN;
}

bool has_op(const ts_slot_limits_t *fw, uint16_t op) {
  for (size_t i = 0; i < fw->n_ops; ++i) {
    if (fw->ops[i] == op) return true;
  }
  return false;
}

// One table: status -> message (indexed by the enum value; checked by the tests).
const char *const kMessages[TS_IMG_STATUS_COUNT] = {
    "ok",
    "null argument",
    "truncated header: the buffer ends inside the slot image header",
    "bad magic: not a slot image (expected \"TSMH\")",
    "unsupported slot image format version",
    "bad header length: not a multiple of 16 or not what its fields need",
    "header CRC-32 mismatch",
    "header field out of range (model length, operator count, a string or target units)",
    "model runs past the end of the image",
    "model CRC-32 mismatch",
    "profile differs from the firmware's target-runtime profile",
    "operator not registered in the firmware's op resolver",
    "arena need exceeds the firmware's tensor arena",
    "input bytes exceed the firmware's input buffer",
    "output bytes exceed the firmware's output buffer",
    "model larger than a slot",
};

}  // namespace

extern "C" {

}  // extern "C"

namespace {

// Parse the header in buf[0..len). `prefix`: buf may end inside the header after its
// operator ids (SLOT_BEGIN of a header larger than one payload): the header CRC is then
// taken from its field, unchecked, and `golden` is NULL; the full header is checked later.
ts_slot_image_status parse_header(const uint8_t *buf, size_t len, ts_slot_header_t *out,
                                  bool prefix) {
  if (out == nullptr) return TS_IMG_ERR_NULL;
  *out = ts_slot_header_t{};
  if (buf == nullptr) return TS_IMG_ERR_NULL;
  if (len < TS_SLOT_IMAGE_FIXED_LEN) return TS_IMG_ERR_TRUNCATED;
  if (memcmp(buf, ts_slot_image_magic, TS_SLOT_IMAGE_MAGIC_LEN) != 0) return TS_IMG_ERR_MAGIC;
  if (le16(buf + kOffVersion) != TS_SLOT_IMAGE_VERSION) return TS_IMG_ERR_VERSION;
  const uint16_t hlen = le16(buf + kOffHeaderLen);
  if (hlen % TS_SLOT_IMAGE_ALIGN != 0u || hlen < TS_SLOT_IMAGE_FIXED_LEN) {
    return TS_IMG_ERR_HEADER_LEN;
  }
  const bool whole = hlen <= len;
  if (!whole && !prefix) return TS_IMG_ERR_TRUNCATED;
  // CRC-32 over the header without its CRC field: bytes 0..139, then 144..hlen-1.
  uint32_t crc = le32(buf + TS_SLOT_IMAGE_CRC_OFFSET);
  if (whole) {
    uint32_t computed = ts_crc32(0, buf, TS_SLOT_IMAGE_CRC_OFFSET);
    computed = ts_crc32(computed, buf + TS_SLOT_IMAGE_FIXED_LEN, hlen - TS_SLOT_IMAGE_FIXED_LEN);
    if (computed != crc) return TS_IMG_ERR_HEADER_CRC;
  }

  ts_slot_header_t h{};
  h.format_version = TS_SLOT_IMAGE_VERSION;
  h.header_len = hlen;
  h.sequence = le32(buf + kOffSequence);
  h.model_len = le32(buf + kOffModelLen);
  h.model_crc32 = le32(buf + kOffModelCrc);
  memcpy(h.sha256, buf + kOffSha, TS_SLOT_SHA256_LEN);
  h.arena_bytes = le32(buf + kOffArena);
  h.input_bytes = le32(buf + kOffInput);
  h.output_bytes = le32(buf + kOffOutput);
  h.input_scale = lef32(buf + kOffInScale);
  h.input_zero_point = static_cast<int32_t>(le32(buf + kOffInZero));
  h.output_scale = lef32(buf + kOffOutScale);
  h.output_zero_point = static_cast<int32_t>(le32(buf + kOffOutZero));
  h.target_mean = lef32(buf + kOffTargetMean);
  h.target_scale = lef32(buf + kOffTargetScale);
  h.n_ops = le16(buf + kOffNOps);
  h.n_golden = le16(buf + kOffNGolden);
  h.header_crc32 = crc;
  if (needed_header_len(h.n_ops, h.n_golden, h.input_bytes, h.output_bytes) != hlen) {
    return TS_IMG_ERR_HEADER_LEN;
  }
  if (h.model_len == 0u || h.n_ops > TS_SLOT_MAX_OPS ||
      !copy_str(buf + kOffModelVersion, TS_SLOT_VERSION_LEN, h.model_version) ||
      !copy_str(buf + kOffProfile, TS_SLOT_PROFILE_LEN, h.profile) ||
      // The core's rule for its config (ts_core_init): a zero scale would report every
      // result as the mean.
      !std::isfinite(h.target_mean) || !std::isfinite(h.target_scale) ||
      h.target_scale == 0.0f) {
    return TS_IMG_ERR_FIELD;
  }
  if (TS_SLOT_IMAGE_FIXED_LEN + 2u * static_cast<size_t>(h.n_ops) > len) {
    return TS_IMG_ERR_TRUNCATED;  // a prefix must hold the operator ids
  }
  for (size_t i = 0; i < h.n_ops; ++i) {
    h.ops[i] = le16(buf + TS_SLOT_IMAGE_FIXED_LEN + 2u * i);
  }
  h.golden = whole ? buf + TS_SLOT_IMAGE_FIXED_LEN + 2u * static_cast<size_t>(h.n_ops) : nullptr;
  *out = h;
  return TS_IMG_OK;
}

}  // namespace

ts_slot_image_status ts_slot_image_parse_header(const uint8_t *buf, size_t len,
                                                ts_slot_header_t *out) {
  return parse_header(buf, len, out, false);
}

ts_slot_image_status ts_slot_image_parse_prefix(const uint8_t *buf, size_t len,
                                                ts_slot_header_t *out) {
  return parse_header(buf, len, out, true);
}


extern "C" {

ts_slot_image_status ts_slot_image_parse(const uint8_t *buf, size_t len,
                                         ts_slot_header_t *out) {
  const ts_slot_image_status st = ts_slot_image_parse_header(buf, len, out);
  if (st != TS_IMG_OK) return st;
  // header_len <= len here, so the subtraction cannot wrap.
  if (out->model_len > len - out->header_len) {
    *out = ts_slot_header_t{};
    return TS_IMG_ERR_BODY_LEN;
  }
  out->body = buf + out->header_len;
  return TS_IMG_OK;
}

ts_slot_image_status ts_slot_image_verify_body(const ts_slot_header_t *h) {
  if (h == nullptr || h->body == nullptr) return TS_IMG_ERR_NULL;
  return ts_crc32(0, h->body, h->model_len) == h->model_crc32 ? TS_IMG_OK
                                                                : TS_IMG_ERR_MODEL_CRC;
}

ts_slot_image_status ts_slot_image_check(const ts_slot_header_t *h, const ts_slot_limits_t *fw) {
  if (h == nullptr || fw == nullptr || fw->profile == nullptr ||
      (fw->ops == nullptr && fw->n_ops != 0u)) {
    return TS_IMG_ERR_NULL;
  }
  if (strncmp(h->profile, fw->profile, TS_SLOT_PROFILE_LEN + 1u) != 0) return TS_IMG_ERR_PROFILE;
  const size_t n_ops = h->n_ops < TS_SLOT_MAX_OPS ? h->n_ops : TS_SLOT_MAX_OPS;
  for (size_t i = 0; i < n_ops; ++i) {
    if (!has_op(fw, h->ops[i])) return TS_IMG_ERR_OP;
  }
  if (h->arena_bytes > fw->arena_bytes) return TS_IMG_ERR_ARENA;
  if (h->input_bytes > fw->input_bytes) return TS_IMG_ERR_INPUT;
  if (h->output_bytes > fw->output_bytes) return TS_IMG_ERR_OUTPUT;
  if (static_cast<uint64_t>(h->header_len) + h->model_len > fw->slot_bytes) {
    return TS_IMG_ERR_SLOT_SIZE;
  }
  return TS_IMG_OK;
}

const char *ts_slot_image_status_str(ts_slot_image_status s) {
  const unsigned i = static_cast<unsigned>(s);
  return i < static_cast<unsigned>(TS_IMG_STATUS_COUNT) ? kMessages[i] : "unknown status";
}

}  // extern "C"
