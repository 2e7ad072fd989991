// Host test support: assertion macros, a fake platform and a parser for the
// byte stream the core writes (text interleaved with 0x00-delimited frames).
#ifndef TINYSHIP_HOST_SUPPORT_H
#define TINYSHIP_HOST_SUPPORT_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "tinyship_core.h"

[[maybe_unused]] static int g_checks = 0;
[[maybe_unused]] static int g_failures = 0;

#define CHECK(cond)                                                        \
  do {                                                                     \
    g_checks++;                                                            \
    if (!(cond)) {                                                         \
      g_failures++;                                                        \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                      \
  } while (0)

#define CHECK_EQ(a, b)                                                     \
  do {                                                                     \
    g_checks++;                                                            \
    const long long va_ = static_cast<long long>(a);                       \
    const long long vb_ = static_cast<long long>(b);                       \
    if (va_ != vb_) {                                                      \
      g_failures++;                                                        \
      fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n", \
              __FILE__, __LINE__, #a, #b, va_, vb_);                       \
    }                                                                      \
  } while (0)

#define CHECK_CONTAINS(hay, needle)                                        \
  do {                                                                     \
    g_checks++;                                                            \
    const std::string h_ = (hay);                                          \
    if (h_.find(needle) == std::string::npos) {                            \
      g_failures++;                                                        \
      fprintf(stderr, "%s:%d: expected \"%s\" in:\n%s\n", __FILE__,        \
              __LINE__, needle, h_.c_str());                               \
    }                                                                      \
  } while (0)

// ------------------------------------------------------------ fake board --

struct Fake {
  std::vector<uint8_t> out;        // everything the core wrote
  uint32_t clock = 1000;           // micros() value
  uint32_t clock_step = 0;         // added on every micros() call
  uint32_t infer_step = 100;       // added by every inference (latency)
  bool fail_write = false;
  uint32_t write_us_per_byte = 0;  // a blocking UART write: the clock runs while it sends
  uint32_t flush_calls = 0;        // platform flush hook
  bool fail_flush = false;
  bool fail_infer = false;
  int8_t fail_on_first_input = 99; // inference fails when input[0] == this
  int golden_corrupt_lsb = 0;      // added to out[0] (self-test failures)
  uint32_t infer_calls = 0;
  // storage
  bool has_storage_value = false;
  uint8_t storage[4] = {0, 0, 0, 0};
  bool fail_storage_write = false;
  // re-entrancy probe
  ts_core_t *reenter = nullptr;
  ts_status_t reenter_status = TS_OK;
};

// The fake model: out[0] = clamp(sum(in)), out[1] = in[0], out[k] = k.
[[maybe_unused]] static void fake_model(const int8_t *in, size_t in_n, int8_t *out, size_t out_n) {
  int sum = 0;
  for (size_t i = 0; i < in_n; i++) sum += in[i];
  if (sum > 127) sum = 127;
  if (sum < -128) sum = -128;
  for (size_t k = 0; k < out_n; k++) out[k] = static_cast<int8_t>(k);
  out[0] = static_cast<int8_t>(sum);
  if (out_n > 1) out[1] = in[0];
}

[[maybe_unused]] static ts_status_t fake_write(void *user, const uint8_t *data, size_t len) {
  Fake *f = static_cast<Fake *>(user);
  if (f->reenter != nullptr) {
    const uint8_t b = 'x';
    f->reenter_status = ts_core_feed(f->reenter, &b, 1);
  }
  if (f->fail_write) return TS_ERR_IO;
  f->out.insert(f->out.end(), data, data + len);
  f->clock += f->write_us_per_byte * static_cast<uint32_t>(len);
  return TS_OK;
}

// Writes are blocking (see fake_write), so there is nothing left to wait for.
[[maybe_unused]] static ts_status_t fake_flush(void *user) {
  Fake *f = static_cast<Fake *>(user);
  f->flush_calls++;
  return f->fail_flush ? TS_ERR_IO : TS_OK;
}

[[maybe_unused]] static uint32_t fake_micros(void *user) {
  Fake *f = static_cast<Fake *>(user);
  f->clock += f->clock_step;
  return f->clock;
}

[[maybe_unused]] static ts_status_t fake_infer(void *user, const int8_t *in, size_t in_n, int8_t *out,
                              size_t out_n) {
  Fake *f = static_cast<Fake *>(user);
  f->infer_calls++;
  if (f->fail_infer || in[0] == f->fail_on_first_input) return TS_ERR_INFERENCE_FAILED;
  fake_model(in, in_n, out, out_n);
  int corrupted = out[0] + f->golden_corrupt_lsb;  // saturating, like int8 kernels
  if (corrupted > 127) corrupted = 127;
  out[0] = static_cast<int8_t>(corrupted);
  f->clock += f->infer_step;
  return TS_OK;
}

[[maybe_unused]] static ts_status_t fake_storage_read(void *user, uint32_t key, uint8_t *data, size_t len) {
  Fake *f = static_cast<Fake *>(user);
  if (key != TS_STORAGE_KEY_BOOT_COUNT || len != 4 || !f->has_storage_value) return TS_ERR_STORAGE;
  memcpy(data, f->storage, 4);
  return TS_OK;
}

[[maybe_unused]] static ts_status_t fake_storage_write(void *user, uint32_t key, const uint8_t *data,
                                      size_t len) {
  Fake *f = static_cast<Fake *>(user);
  if (key != TS_STORAGE_KEY_BOOT_COUNT || len != 4 || f->fail_storage_write) return TS_ERR_STORAGE;
  memcpy(f->storage, data, 4);
  f->has_storage_value = true;
  return TS_OK;
}

static const int32_t kInShape[2] = {1, 4};
static const int32_t kOutShape[2] = {1, 2};
enum { kIn = 4, kOut = 2 };

static const int8_t kGoldenIn[3 * kIn] = {1, 2, 3, 4, -5, 0, 0, 0, 100, 100, -1, 7};
static int8_t g_golden_out[3 * kOut];

[[maybe_unused]] static ts_config_t default_config() {
  for (int g = 0; g < 3; g++) fake_model(kGoldenIn + g * kIn, kIn, g_golden_out + g * kOut, kOut);
  ts_config_t c;
  memset(&c, 0, sizeof(c));
  c.firmware_version = "0.1.0";
  c.model_version = "v0003";
  c.model_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  c.profile = "tflm-arduino-2023";
  c.board = "nano33ble";
  c.git_commit = "abc1234";
  c.build_time = "2026-01-02T03:04:05Z";
  c.input_size = kIn;
  c.output_size = kOut;
  c.input_shape = kInShape;
  c.output_shape = kOutShape;
  c.input_rank = 2;
  c.output_rank = 2;
  c.input_scale = 0.5f;
  c.output_scale = 0.25f;
  c.input_zero_point = -128;
  c.output_zero_point = 10;
  c.target_mean = 0.0f;  // identity: results% prints (q - zero_point) * scale
  c.target_scale = 1.0f;
  c.arena_size = 4096;
  c.arena_used = 1234;
  c.model_crc32 = 0xDEADBEEFu;
  c.model_crc_check = TS_CRC_OK;
  c.golden_inputs = kGoldenIn;
  c.golden_outputs = g_golden_out;
  c.golden_count = 3;
  c.golden_tolerance_lsb = 1;
  return c;
}

[[maybe_unused]] static ts_platform_t fake_platform(Fake *f, bool storage = false) {
  ts_platform_t p;
  memset(&p, 0, sizeof(p));
  p.user = f;
  p.write = fake_write;
  p.micros = fake_micros;
  p.infer = fake_infer;
  p.flush = fake_flush;
  if (storage) {
    p.storage_read = fake_storage_read;
    p.storage_write = fake_storage_write;
  }
  return p;
}

// Core memory: 8-byte aligned, as large as this build's bound.
struct CoreMem {
  alignas(16) uint8_t bytes[TS_CORE_MEM_BYTES];
};

// ------------------------------------------------------ output parsing --

struct Frame {
  ts_status_t status;  // ts_frame_decode result
  uint8_t cmd;
  uint16_t seq;
  std::vector<uint8_t> payload;
};

struct Parsed {
  std::string text;
  std::vector<Frame> frames;
};

// Split the device output into text and frames. The device writes frames as
// 0x00 COBS 0x00, so delimiters come in pairs.
[[maybe_unused]] static Parsed parse_output(const std::vector<uint8_t> &out) {
  Parsed p;
  size_t i = 0;
  while (i < out.size()) {
    if (out[i] != 0) {
      p.text.push_back(static_cast<char>(out[i++]));
      continue;
    }
    size_t j = i + 1;
    while (j < out.size() && out[j] != 0) j++;
    Frame f;
    f.cmd = 0;
    f.seq = 0;
    std::vector<uint8_t> buf(TS_MAX_PAYLOAD);
    size_t n = 0;
    f.status = ts_frame_decode(out.data() + i + 1, j - i - 1, &f.cmd, &f.seq, buf.data(),
                               buf.size(), &n);
    f.payload.assign(buf.begin(), buf.begin() + static_cast<long>(n));
    p.frames.push_back(f);
    i = j + 1;
  }
  return p;
}

[[maybe_unused]] static std::vector<uint8_t> make_frame(uint8_t cmd, uint16_t seq, const std::vector<uint8_t> &pl) {
  std::vector<uint8_t> buf(TS_MAX_WIRE_FRAME + 16);
  size_t n = 0;
  const ts_status_t st =
      ts_frame_encode(cmd, seq, pl.empty() ? nullptr : pl.data(), pl.size(), buf.data(), buf.size(), &n);
  if (st != TS_OK) {
    fprintf(stderr, "make_frame failed: %s\n", ts_status_str(st));
    abort();
  }
  buf.resize(n);
  return buf;
}

[[maybe_unused]] static void feed(ts_core_t *core, const std::vector<uint8_t> &bytes) {
  (void)ts_core_feed(core, bytes.data(), bytes.size());
}

[[maybe_unused]] static void feed_str(ts_core_t *core, const char *s) {
  (void)ts_core_feed(core, reinterpret_cast<const uint8_t *>(s), strlen(s));
}

[[maybe_unused]] static uint32_t le32(const uint8_t *p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// An INFO record as TLVs: tag -> value; `well_formed` is false when one runs past the end.
struct Tlvs {
  std::vector<std::vector<uint8_t>> v = std::vector<std::vector<uint8_t>>(256);
  std::vector<bool> present = std::vector<bool>(256, false);
  bool well_formed = true;
};

[[maybe_unused]] static Tlvs parse_tlv(const std::vector<uint8_t> &p) {
  Tlvs t;
  size_t i = 0;
  while (i < p.size()) {
    if (i + 2 > p.size() || i + 2 + p[i + 1] > p.size()) {
      t.well_formed = false;
      break;
    }
    t.present[p[i]] = true;
    t.v[p[i]].assign(p.begin() + static_cast<long>(i) + 2, p.begin() + static_cast<long>(i) + 2 + p[i + 1]);
    i += 2u + p[i + 1];
  }
  return t;
}

#endif
