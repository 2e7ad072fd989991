// Tests of the slot image header (ts_slot_image): every field, every refusal, truncated and
// garbage headers, and random / mutated bytes that must never crash (make slot-image-test,
// under ASan/UBSan when available). Every parse gets an exact-size heap copy, so reading
// one byte past the buffer is an ASan error.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "tinyship_core.h"
#include "ts_slot_image.h"
#include "slot_check.h"

namespace {

using Bytes = std::vector<uint8_t>;

void put16(Bytes& b, size_t off, uint32_t v) {
  b[off] = static_cast<uint8_t>(v);
  b[off + 1] = static_cast<uint8_t>(v >> 8);
}
void put32(Bytes& b, size_t off, uint32_t v) {
  for (size_t i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
void putf(Bytes& b, size_t off, float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  put32(b, off, u);
}

// What the builder writes (a valid image unless a test changes it).
struct Spec {
  uint32_t sequence = 7;
  std::vector<uint8_t> model = Bytes(300, 0);
  const char* version = "v0042";
  const char* profile = "tflm-arduino-2023";
  uint32_t arena = 2432, in_bytes = 8, out_bytes = 2;
  float in_scale = 0.0307913f, out_scale = 0.0233259f;
  int32_t in_zero = -50, out_zero = 60;
  float target_mean = 23.456789f, target_scale = -7.891f;  // regression target units
  std::vector<uint16_t> ops = {9, 22, 25};
  uint16_t n_golden = 2;
};

size_t needed_len(const Spec& s) {
  const size_t raw = TS_SLOT_IMAGE_FIXED_LEN + 2 * s.ops.size() +
                     s.n_golden * (static_cast<size_t>(s.in_bytes) + s.out_bytes);
  return (raw + 15) / 16 * 16;
}

void fix_crc(Bytes& b) {
  const size_t hlen = static_cast<size_t>(b[6] | (b[7] << 8));
  if (b.size() < TS_SLOT_IMAGE_FIXED_LEN || hlen < TS_SLOT_IMAGE_FIXED_LEN || hlen > b.size()) return;
  uint32_t crc = ts_crc32(0, b.data(), TS_SLOT_IMAGE_CRC_OFFSET);
  crc = ts_crc32(crc, b.data() + TS_SLOT_IMAGE_FIXED_LEN, hlen - TS_SLOT_IMAGE_FIXED_LEN);
  put32(b, TS_SLOT_IMAGE_CRC_OFFSET, crc);
}

Bytes build(const Spec& s) {
  const size_t hlen = needed_len(s);
  Bytes b(hlen + s.model.size(), 0);
  std::memcpy(b.data(), "TSMH", 4);
  put16(b, 4, TS_SLOT_IMAGE_VERSION);
  put16(b, 6, static_cast<uint32_t>(hlen));
  put32(b, 8, s.sequence);
  put32(b, 12, static_cast<uint32_t>(s.model.size()));
  put32(b, 16, ts_crc32(0, s.model.data(), s.model.size()));
  for (size_t i = 0; i < 32; ++i) b[20 + i] = static_cast<uint8_t>(0xA0 + i);
  std::memcpy(&b[52], s.version, std::strlen(s.version));
  std::memcpy(&b[68], s.profile, std::strlen(s.profile));
  put32(b, 100, s.arena);
  put32(b, 104, s.in_bytes);
  put32(b, 108, s.out_bytes);
  putf(b, 112, s.in_scale);
  put32(b, 116, static_cast<uint32_t>(s.in_zero));
  putf(b, 120, s.out_scale);
  put32(b, 124, static_cast<uint32_t>(s.out_zero));
  putf(b, 132, s.target_mean);
  putf(b, 136, s.target_scale);
  put16(b, 128, static_cast<uint32_t>(s.ops.size()));
  put16(b, 130, s.n_golden);
  size_t p = TS_SLOT_IMAGE_FIXED_LEN;
  for (uint16_t op : s.ops) { put16(b, p, op); p += 2; }
  const size_t golden_len = s.n_golden * (static_cast<size_t>(s.in_bytes) + s.out_bytes);
  for (size_t i = 0; i < golden_len; ++i) b[p + i] = static_cast<uint8_t>(i * 7 + 1);
  std::memcpy(b.data() + hlen, s.model.data(), s.model.size());
  fix_crc(b);
  return b;
}

Spec default_spec() {
  Spec s;
  for (size_t i = 0; i < s.model.size(); ++i) s.model[i] = static_cast<uint8_t>(i * 31 + 5);
  return s;
}

// Parse an exact-size heap copy of b[0..len).
ts_slot_image_status parse(const Bytes& b, size_t len, ts_slot_header_t* h, bool header_only = false) {
  uint8_t* copy = new uint8_t[len == 0 ? 1 : len];
  if (len) std::memcpy(copy, b.data(), len);
  const ts_slot_image_status st =
      header_only ? ts_slot_image_parse_header(copy, len, h) : ts_slot_image_parse(copy, len, h);
  if (st == TS_IMG_OK) {
    CHECK(h->header_len % 16u == 0u && h->header_len <= len);
    CHECK(h->n_ops <= TS_SLOT_MAX_OPS);
    CHECK(h->model_version[TS_SLOT_VERSION_LEN] == '\0' && h->profile[TS_SLOT_PROFILE_LEN] == '\0');
    if (!header_only) {
      CHECK(h->body == copy + h->header_len);
      CHECK(static_cast<size_t>(h->header_len) + h->model_len <= len);
      (void)ts_slot_image_verify_body(h);  // reads the whole body: ASan checks the bound
    }
  }
  delete[] copy;
  if (st == TS_IMG_OK) { h->body = nullptr; h->golden = nullptr; }  // dangling now
  return st;
}
ts_slot_image_status parse(const Bytes& b) {
  ts_slot_header_t h;
  return parse(b, b.size(), &h);
}

bool zeroed(const ts_slot_header_t& h) {
  const ts_slot_header_t z{};
  return std::memcmp(&h, &z, sizeof h) == 0;
}

void test_fields() {
  const Spec s = default_spec();
  const Bytes b = build(s);
  ts_slot_header_t h;
  CHECK(ts_slot_image_parse(b.data(), b.size(), &h) == TS_IMG_OK);
  CHECK(h.format_version == 1);
  CHECK(h.header_len == needed_len(s) && h.header_len == 176);
  CHECK(h.sequence == 7);
  CHECK(h.model_len == 300);
  CHECK(h.model_crc32 == ts_crc32(0, s.model.data(), s.model.size()));
  for (size_t i = 0; i < 32; ++i) CHECK(h.sha256[i] == 0xA0 + i);
  CHECK(std::strcmp(h.model_version, "v0042") == 0);
  CHECK(std::strcmp(h.profile, "tflm-arduino-2023") == 0);
  CHECK(h.arena_bytes == 2432 && h.input_bytes == 8 && h.output_bytes == 2);
  CHECK(h.input_scale == 0.0307913f && h.output_scale == 0.0233259f);
  CHECK(h.input_zero_point == -50 && h.output_zero_point == 60);
  CHECK(h.target_mean == 23.456789f && h.target_scale == -7.891f);
  CHECK(h.n_ops == 3 && h.ops[0] == 9 && h.ops[1] == 22 && h.ops[2] == 25);
  CHECK(h.n_golden == 2);
  CHECK(h.golden == b.data() + TS_SLOT_IMAGE_FIXED_LEN + 6);
  CHECK(h.golden[0] == 1 && h.golden[19] == static_cast<uint8_t>(19 * 7 + 1));
  CHECK(h.body == b.data() + 176);
  CHECK(TS_SLOT_IMAGE_FIXED_LEN == 144u && TS_SLOT_IMAGE_CRC_OFFSET == 140u);
  CHECK(h.header_crc32 == static_cast<uint32_t>(b[140] | (b[141] << 8) | (b[142] << 16) |
                                                (static_cast<uint32_t>(b[143]) << 24)));
  CHECK(ts_slot_image_verify_body(&h) == TS_IMG_OK);
  // Body 16-byte aligned when the buffer is (flash sector start).
  CHECK(h.header_len % TS_SLOT_IMAGE_ALIGN == 0u);

  // Header only: the installer's "begin" frame.
  ts_slot_header_t hh;
  CHECK(parse(b, h.header_len, &hh, true) == TS_IMG_OK && hh.body == nullptr);
  CHECK(ts_slot_image_parse_header(b.data(), h.header_len, &hh) == TS_IMG_OK);
  CHECK(hh.body == nullptr && hh.model_len == 300 && hh.sequence == 7);
  CHECK(ts_slot_image_verify_body(&hh) == TS_IMG_ERR_NULL);

  // Full-length strings (no NUL inside the field), no ops, no golden vectors, extreme values.
  Spec t = default_spec();
  t.version = "v000000000000001";           // 16 chars
  t.profile = "p0123456789012345678901234567890"; // 32 chars
  t.ops.clear();
  t.n_golden = 0;
  t.sequence = 0xFFFFFFFFu;
  t.in_zero = INT32_MIN;
  t.out_zero = INT32_MAX;
  t.target_mean = -std::numeric_limits<float>::max();  // finite extremes are fine
  t.target_scale = std::numeric_limits<float>::denorm_min();
  t.model = Bytes(1, 0x5A);
  const Bytes c = build(t);
  CHECK(ts_slot_image_parse(c.data(), c.size(), &h) == TS_IMG_OK);
  CHECK(std::strcmp(h.model_version, "v000000000000001") == 0);
  CHECK(std::strcmp(h.profile, "p0123456789012345678901234567890") == 0);
  CHECK(h.header_len == 144 && h.n_ops == 0 && h.n_golden == 0 && h.model_len == 1);
  CHECK(h.sequence == 0xFFFFFFFFu && h.input_zero_point == INT32_MIN && h.output_zero_point == INT32_MAX);
  CHECK(h.target_mean == -std::numeric_limits<float>::max() &&
        h.target_scale == std::numeric_limits<float>::denorm_min());
  // Identity target units (a classifier, or a manifest from before they existed).
  t = default_spec();
  t.target_mean = 0.0f;
  t.target_scale = 1.0f;
  const Bytes e = build(t);
  CHECK(ts_slot_image_parse(e.data(), e.size(), &h) == TS_IMG_OK);
  CHECK(h.target_mean == 0.0f && h.target_scale == 1.0f);
  t = default_spec();
  // The maximum operator count.
  t.ops.assign(TS_SLOT_MAX_OPS, 3);
  CHECK(parse(build(t)) == TS_IMG_OK);
  // Trailing bytes after the model (the rest of a slot) are allowed.
  Bytes d = build(default_spec());
  d.resize(d.size() + 100, 0xFF);
  CHECK(parse(d) == TS_IMG_OK);
}

void test_parse_refusals() {
  ts_slot_header_t h;
  const Bytes good = build(default_spec());
  CHECK(ts_slot_image_parse(nullptr, 10, &h) == TS_IMG_ERR_NULL && zeroed(h));
  CHECK(ts_slot_image_parse(good.data(), good.size(), nullptr) == TS_IMG_ERR_NULL);
  CHECK(ts_slot_image_parse_header(nullptr, 10, &h) == TS_IMG_ERR_NULL);
  CHECK(ts_slot_image_verify_body(nullptr) == TS_IMG_ERR_NULL);

  // Every truncation: inside the header -> TRUNCATED; inside the model -> BODY_LEN.
  for (size_t n = 0; n < good.size(); ++n) {
    const ts_slot_image_status st = parse(good, n, &h);
    CHECK(st == (n < 176 ? TS_IMG_ERR_TRUNCATED : TS_IMG_ERR_BODY_LEN));
    CHECK(zeroed(h));
    CHECK(parse(good, n, &h, true) == (n < 176 ? TS_IMG_ERR_TRUNCATED : TS_IMG_OK));
  }

  Bytes b = good;
  b[0] = 'X';
  CHECK(parse(b) == TS_IMG_ERR_MAGIC);
  b = good;
  put16(b, 4, 2);
  CHECK(parse(b) == TS_IMG_ERR_VERSION);
  put16(b, 4, 0);
  CHECK(parse(b) == TS_IMG_ERR_VERSION);

  // Header length: not a multiple of 16, below the fixed part, past the buffer, or not
  // what the counts need (re-CRC'd, so it is the length check that refuses).
  b = good;
  put16(b, 6, 177);
  CHECK(parse(b) == TS_IMG_ERR_HEADER_LEN);
  put16(b, 6, 128);
  CHECK(parse(b) == TS_IMG_ERR_HEADER_LEN);
  put16(b, 6, 0);
  CHECK(parse(b) == TS_IMG_ERR_HEADER_LEN);
  put16(b, 6, 0xFFF0);
  CHECK(parse(b) == TS_IMG_ERR_TRUNCATED);
  b = good;
  put16(b, 6, 192);
  b.insert(b.begin() + 176, 16, 0);
  fix_crc(b);
  CHECK(parse(b) == TS_IMG_ERR_HEADER_LEN);  // the counts need 176
  b = good;
  put16(b, 128, 12);  // 12 ops: 144 + 24 + 20 = 188 -> 192 != 176
  fix_crc(b);
  CHECK(parse(b) == TS_IMG_ERR_HEADER_LEN);
  b = good;
  put16(b, 130, 0xFFFF);  // golden vectors far beyond the header
  fix_crc(b);
  CHECK(parse(b) == TS_IMG_ERR_HEADER_LEN);
  b = good;
  put32(b, 104, 0xFFFFFFFFu);  // input bytes that would overflow 32-bit arithmetic
  put32(b, 108, 0xFFFFFFFFu);
  fix_crc(b);
  CHECK(parse(b) == TS_IMG_ERR_HEADER_LEN);

  // Header CRC: every byte of the header except magic/version/length flips to a CRC error.
  for (size_t i = 8; i < 176; ++i) {
    b = good;
    b[i] ^= 0x10;
    CHECK(parse(b) == TS_IMG_ERR_HEADER_CRC);
  }

  // Field range (CRC fixed up, so the field check refuses).
  b = good;
  put32(b, 12, 0);
  fix_crc(b);
  CHECK(parse(b) == TS_IMG_ERR_FIELD);
  Spec s = default_spec();
  s.ops.assign(TS_SLOT_MAX_OPS + 1, 9);
  CHECK(parse(build(s)) == TS_IMG_ERR_FIELD);
  b = good;
  b[52 + 10] = 'x';  // a byte after the version's NUL
  fix_crc(b);
  CHECK(parse(b) == TS_IMG_ERR_FIELD);
  b = good;
  b[68 + 31] = 'x';  // a byte after the profile's NUL
  fix_crc(b);
  CHECK(parse(b) == TS_IMG_ERR_FIELD);
  // Target units: the core's rule (finite mean; finite, non-zero scale), refused by parse
  // and parse_header alike; the header is zeroed.
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float bad_scales[] = {0.0f, -0.0f, nan, -nan, inf, -inf};
  for (float v : bad_scales) {
    Spec u = default_spec();
    u.target_scale = v;
    b = build(u);
    CHECK(parse(b, b.size(), &h) == TS_IMG_ERR_FIELD && zeroed(h));
    CHECK(parse(b, 176, &h, true) == TS_IMG_ERR_FIELD && zeroed(h));
  }
  const float bad_means[] = {nan, inf, -inf};
  for (float v : bad_means) {
    Spec u = default_spec();
    u.target_mean = v;
    b = build(u);
    CHECK(parse(b) == TS_IMG_ERR_FIELD);
    CHECK(parse(b, 176, &h, true) == TS_IMG_ERR_FIELD);
  }
  b = good;  // a signalling NaN bit pattern, and the CRC still checked first
  put32(b, 136, 0x7F800001u);
  CHECK(parse(b) == TS_IMG_ERR_HEADER_CRC);
  fix_crc(b);
  CHECK(parse(b) == TS_IMG_ERR_FIELD);

  // Model longer than the buffer.
  b = good;
  put32(b, 12, 301);
  fix_crc(b);
  CHECK(parse(b) == TS_IMG_ERR_BODY_LEN);
  CHECK(parse(b, 176, &h, true) == TS_IMG_OK);  // the header alone is fine
  put32(b, 12, 0xFFFFFFFFu);
  fix_crc(b);
  CHECK(parse(b) == TS_IMG_ERR_BODY_LEN);

  // Body CRC.
  b = good;
  CHECK(ts_slot_image_parse(b.data(), b.size(), &h) == TS_IMG_OK);
  for (size_t i = 176; i < b.size(); i += 37) {
    b[i] ^= 1;
    CHECK(ts_slot_image_verify_body(&h) == TS_IMG_ERR_MODEL_CRC);
    b[i] ^= 1;
    CHECK(ts_slot_image_verify_body(&h) == TS_IMG_OK);
  }
}

const uint16_t kFwOps[] = {3, 4, 9, 14, 22, 25, 114};

ts_slot_limits_t limits() {
  ts_slot_limits_t fw{};
  fw.profile = "tflm-arduino-2023";
  fw.ops = kFwOps;
  fw.n_ops = sizeof kFwOps / sizeof kFwOps[0];
  fw.arena_bytes = 2432;
  fw.input_bytes = 8;
  fw.output_bytes = 2;
  fw.slot_bytes = 476;  // header 176 + model 300 exactly
  return fw;
}

void test_check() {
  const Bytes b = build(default_spec());
  ts_slot_header_t h;
  CHECK(ts_slot_image_parse(b.data(), b.size(), &h) == TS_IMG_OK);
  ts_slot_limits_t fw = limits();
  CHECK(ts_slot_image_check(&h, &fw) == TS_IMG_OK);  // every limit met exactly
  CHECK(ts_slot_image_check(nullptr, &fw) == TS_IMG_ERR_NULL);
  CHECK(ts_slot_image_check(&h, nullptr) == TS_IMG_ERR_NULL);
  fw.profile = nullptr;
  CHECK(ts_slot_image_check(&h, &fw) == TS_IMG_ERR_NULL);
  fw = limits();
  fw.ops = nullptr;
  CHECK(ts_slot_image_check(&h, &fw) == TS_IMG_ERR_NULL);

  fw = limits();
  fw.profile = "tflm-current";
  CHECK(ts_slot_image_check(&h, &fw) == TS_IMG_ERR_PROFILE);
  fw.profile = "tflm-arduino-2023x";  // a prefix match is not a match
  CHECK(ts_slot_image_check(&h, &fw) == TS_IMG_ERR_PROFILE);
  fw.profile = "tflm-arduino-202";
  CHECK(ts_slot_image_check(&h, &fw) == TS_IMG_ERR_PROFILE);

  fw = limits();
  fw.n_ops = 2;  // lacks 22 and 25
  CHECK(ts_slot_image_check(&h, &fw) == TS_IMG_ERR_OP);
  fw.n_ops = 0;
  fw.ops = nullptr;
  CHECK(ts_slot_image_check(&h, &fw) == TS_IMG_ERR_OP);
  ts_slot_header_t h2 = h;  // each of the image's ops missing in turn
  for (unsigned i = 0; i < h.n_ops; ++i) {
    h2 = h;
    h2.ops[i] = 200;
    fw = limits();
    CHECK(ts_slot_image_check(&h2, &fw) == TS_IMG_ERR_OP);
  }

  fw = limits();
  fw.arena_bytes = 2431;
  CHECK(ts_slot_image_check(&h, &fw) == TS_IMG_ERR_ARENA);
  fw = limits();
  fw.input_bytes = 7;
  CHECK(ts_slot_image_check(&h, &fw) == TS_IMG_ERR_INPUT);
  fw = limits();
  fw.output_bytes = 1;
  CHECK(ts_slot_image_check(&h, &fw) == TS_IMG_ERR_OUTPUT);
  fw = limits();
  fw.slot_bytes = 475;
  CHECK(ts_slot_image_check(&h, &fw) == TS_IMG_ERR_SLOT_SIZE);
  h2 = h;
  h2.model_len = 0xFFFFFFFFu;  // no 32-bit wrap in header + model
  fw.slot_bytes = 0xFFFFFFFFu;
  CHECK(ts_slot_image_check(&h2, &fw) == TS_IMG_ERR_SLOT_SIZE);

  // Order: the first refusal wins (profile, op, arena, input, output, slot).
  ts_slot_limits_t none{};
  none.profile = "other";
  CHECK(ts_slot_image_check(&h, &none) == TS_IMG_ERR_PROFILE);
  none.profile = "tflm-arduino-2023";
  CHECK(ts_slot_image_check(&h, &none) == TS_IMG_ERR_OP);
  none.ops = kFwOps;
  none.n_ops = sizeof kFwOps / sizeof kFwOps[0];
  CHECK(ts_slot_image_check(&h, &none) == TS_IMG_ERR_ARENA);
  none.arena_bytes = 1u << 20;
  CHECK(ts_slot_image_check(&h, &none) == TS_IMG_ERR_INPUT);
  none.input_bytes = 1u << 20;
  CHECK(ts_slot_image_check(&h, &none) == TS_IMG_ERR_OUTPUT);
  none.output_bytes = 1u << 20;
  CHECK(ts_slot_image_check(&h, &none) == TS_IMG_ERR_SLOT_SIZE);
  none.slot_bytes = 1u << 20;
  CHECK(ts_slot_image_check(&h, &none) == TS_IMG_OK);
}

void test_messages() {
  for (int i = 0; i < TS_IMG_STATUS_COUNT; ++i) {
    const char* m = ts_slot_image_status_str(static_cast<ts_slot_image_status>(i));
    CHECK(m != nullptr && m[0] != '\0' && std::strcmp(m, "unknown status") != 0);
    for (int j = 0; j < i; ++j)
      CHECK(std::strcmp(m, ts_slot_image_status_str(static_cast<ts_slot_image_status>(j))) != 0);
  }
  CHECK(std::strcmp(ts_slot_image_status_str(TS_IMG_STATUS_COUNT), "unknown status") == 0);
  CHECK(std::strstr(ts_slot_image_status_str(TS_IMG_ERR_ARENA), "arena") != nullptr);
  CHECK(std::strstr(ts_slot_image_status_str(TS_IMG_ERR_OP), "op resolver") != nullptr);
}

// Random bytes, random bytes behind a valid magic/version, and mutated valid images (with
// the CRC fixed up half the time so the later checks are reached): never a crash, and
// whatever parses OK satisfies the invariants checked in parse().
void test_fuzz(unsigned iters, unsigned seed) {
  std::mt19937 gen(seed);
  auto rng = [&gen]() { return static_cast<uint32_t>(gen()); };
  const Bytes good = build(default_spec());
  unsigned ok = 0;
  for (unsigned it = 0; it < iters; ++it) {
    Bytes b;
    const unsigned mode = it % 3u;
    if (mode == 0u) {
      b.resize(rng() % 400u);
      for (auto& x : b) x = static_cast<uint8_t>(rng());
    } else if (mode == 1u) {
      b.resize(TS_SLOT_IMAGE_FIXED_LEN + rng() % 400u);
      for (auto& x : b) x = static_cast<uint8_t>(rng());
      std::memcpy(b.data(), "TSMH", 4);
      put16(b, 4, 1);
      put16(b, 6, static_cast<uint32_t>((rng() % 30u) * 16u));
      if (rng() % 2u) put16(b, 128, rng() % 80u);
      if (rng() % 2u) put16(b, 130, rng() % 4u);
      fix_crc(b);
    } else {
      b = good;
      const unsigned flips = 1u + rng() % 4u;
      for (unsigned k = 0; k < flips; ++k) b[rng() % b.size()] ^= static_cast<uint8_t>(1u << (rng() % 8u));
      if (rng() % 2u) fix_crc(b);
      b.resize(rng() % 4u == 0u ? rng() % (b.size() + 1u) : b.size());
    }
    ts_slot_header_t h;
    const ts_slot_image_status st = parse(b, b.size(), &h);
    CHECK(static_cast<int>(st) >= 0 && st < TS_IMG_STATUS_COUNT);
    if (st == TS_IMG_OK) {
      ++ok;
      ts_slot_limits_t fw = limits();
      (void)ts_slot_image_check(&h, &fw);
    } else {
      CHECK(zeroed(h));
    }
  }
  CHECK(ok > 0u);  // the mutated-image mode reaches the OK path
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned iters = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : 100000u;
  const unsigned seed = argc > 2 ? static_cast<unsigned>(std::strtoul(argv[2], nullptr, 10)) : 1u;
  test_fields();
  test_parse_refusals();
  test_check();
  test_messages();
  test_fuzz(iters, seed);
  std::printf("test_slot_image: %d checks, %d failures (%u fuzz inputs, seed %u)\n", slot_check::checks,
              slot_check::failures, iters, seed);
  return slot_check::failures == 0 ? 0 : 1;
}
