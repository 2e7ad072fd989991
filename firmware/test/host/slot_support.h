// slot_support.h - host test support for the core's model slots (test_core_slots.cpp,
// fuzz_core.cpp): a fake model runtime behind ts_platform_t.load_model/infer, a slot image
// encoder (firmware/SLOTS.md "Slot image"; the parser is ts_slot_image.cpp), and a board
// (core + NOR simulator + fake runtime) that can be rebooted on the same flash.
//
// The fake model: a "model" is a small descriptor at the start of the body bytes
// ("FAKEMODL", key, input bytes, output bytes, flags) and filler. load_model parses it from
// the bytes it is given (in place, from the simulated flash for a slot model), reports
// shapes {1, in} and {1, out}; infer computes out[j] = model_fn(key, in, j), so the output
// of an INFER tells which model runs, and golden vectors built with model_fn pass the
// self-test. Flags make a model fail its load, report a wrong shape, or fail inference.
// Every infer checks that the loaded model's bytes did not change since the load (a slot
// erased or programmed under a running model is counted in `model_changed`).
#ifndef TINYSHIP_SLOT_SUPPORT_H
#define TINYSHIP_SLOT_SUPPORT_H

#include <stdint.h>
#include <string.h>

#include <string>
#include <vector>

#include "host_support.h"
#include "nor_sim.h"
#include "ts_slot_image.h"
#include "ts_slot_state.h"
#include "ts_slot_store.h"

namespace slots {

using Bytes = std::vector<uint8_t>;

// ------------------------------------------------------------- fake model --

enum ModelFlags : uint8_t {
  kFailLoad = 1,     // load_model answers TS_ERR_MODEL_INVALID (AllocateTensors failed)
  kWrongShape = 2,   // load_model reports one more input element than the header says
  kFailInfer = 4,    // every inference fails (self-test: TS_SELF_TEST_INFER_ERROR)
};

constexpr size_t kDescLen = 20;  // "FAKEMODL" key:u8 in:u32 out:u32 flags:u8 pad:u16

inline int8_t model_fn(uint8_t key, const int8_t *in, size_t in_n, size_t j) {
  int32_t acc = key;
  for (size_t i = 0; i < in_n; i++) acc += static_cast<int32_t>(i + 1) * in[i];
  acc = acc * (2 * key + 1) + 31 * static_cast<int32_t>(j);
  return static_cast<int8_t>(static_cast<uint8_t>(acc & 0xFF));
}

inline void put16(uint8_t *p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void putf(uint8_t *p, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  put32(p, u);
}
inline uint16_t get16(const uint8_t *p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t get32(const uint8_t *p) { return le32(p); }

// Model body bytes: descriptor then a key-dependent filler to `len` bytes (>= kDescLen).
inline Bytes model_body(uint8_t key, uint32_t in, uint32_t out, uint8_t flags, uint32_t len) {
  Bytes b(len < kDescLen ? kDescLen : len);
  memcpy(b.data(), "FAKEMODL", 8);
  b[8] = key;
  put32(&b[9], in);
  put32(&b[13], out);
  b[17] = flags;
  b[18] = b[19] = 0;
  for (size_t i = kDescLen; i < b.size(); i++) b[i] = static_cast<uint8_t>(i * 131u + key * 7u + 3u);
  return b;
}

struct LoadEvent {
  int source;        // 0 factory, 1 slot A, 2 slot B, -1 elsewhere
  uint8_t tried;     // ts_flag of the slot's `tried` unit at load time (slots only)
  uint8_t confirmed; // ts_flag of its `confirmed` unit
  uint8_t key;
  bool ok;
};

// The fake board: host_support's Fake (write, micros, flush) plus the model runtime,
// the reset hook and a view of the flash (to see which slot a model comes from).
struct SlotHw : Fake {
  NorSim *nor = nullptr;
  const uint8_t *factory = nullptr;
  uint32_t factory_len = 0;
  // the loaded model
  bool loaded = false;
  const uint8_t *model = nullptr;
  size_t model_len = 0;
  uint32_t model_crc = 0;
  uint8_t key = 0, flags = 0;
  uint32_t n_in = 0, n_out = 0;  // the loaded model's input/output bytes
  // observations
  std::vector<LoadEvent> loads;
  uint32_t resets = 0;
  size_t out_at_reset = 0;
  uint32_t flushes_at_reset = 0;
  uint32_t model_changed = 0;  // a loaded model's bytes changed under it (core bug)
  uint32_t bad_io = 0;         // infer called with other sizes than the loaded model's
  bool fail_slot_loads = false; // every load of a slot's model fails (not the factory's)

  int source_of(const uint8_t *p) const {
    if (factory != nullptr && p == factory) return 0;
    for (uint32_t s = 0; s < TS_FLASH_SLOTS; s++) {
      const uint8_t *b = nor->slot_mem(s);
      if (p >= b && p < b + nor->slot_size()) return static_cast<int>(s) + 1;
    }
    return -1;
  }
};

inline SlotHw *hw_of(void *user) { return static_cast<SlotHw *>(static_cast<Fake *>(user)); }

inline uint32_t trailer_unit(const NorSim &n) { return n.unit() > 8u ? n.unit() : 8u; }
inline uint32_t unit_off(const NorSim &n, uint32_t u) {
  return n.slot_size() - n.sector() + u * trailer_unit(n);
}
// ts_flag of trailer unit u (0 commit, 1 tried, 2 confirmed, 3 revoked) of a slot.
inline uint8_t flag_of(const NorSim &n, uint32_t slot, uint32_t u) {
  const uint8_t *p = n.slot_mem(slot) + unit_off(n, u);
  return static_cast<uint8_t>(u == 0 ? ts_commit_decode(p, trailer_unit(n))
                                     : ts_flag_decode(p, trailer_unit(n)));
}

inline ts_status_t hw_load(void *user, const uint8_t *model, size_t len, ts_model_io_t *io) {
  SlotHw *h = hw_of(user);
  LoadEvent ev{h->source_of(model), 0, 0, 0, false};
  if (ev.source > 0) {
    ev.tried = flag_of(*h->nor, static_cast<uint32_t>(ev.source - 1), 1);
    ev.confirmed = flag_of(*h->nor, static_cast<uint32_t>(ev.source - 1), 2);
  }
  h->loaded = false;
  if (model == nullptr || io == nullptr || len < kDescLen || memcmp(model, "FAKEMODL", 8) != 0 ||
      (reinterpret_cast<uintptr_t>(model) & 15u) != 0 || (h->fail_slot_loads && ev.source > 0) ||
      (model[17] & kFailLoad) != 0) {
    h->loads.push_back(ev);
    return TS_ERR_MODEL_INVALID;
  }
  h->key = model[8];
  h->n_in = get32(model + 9);
  h->n_out = get32(model + 13);
  h->flags = model[17];
  h->model = model;
  h->model_len = len;
  h->model_crc = ts_crc32(0, model, len);
  h->loaded = true;
  memset(io, 0, sizeof(*io));
  io->input_rank = 2;
  io->output_rank = 2;
  io->input_shape[0] = 1;
  io->input_shape[1] = static_cast<int32_t>(h->n_in + ((h->flags & kWrongShape) != 0 ? 1u : 0u));
  io->output_shape[0] = 1;
  io->output_shape[1] = static_cast<int32_t>(h->n_out);
  io->arena_used = 1000u + h->key;
  ev.key = h->key;
  ev.ok = true;
  h->loads.push_back(ev);
  return TS_OK;
}

inline ts_status_t hw_infer(void *user, const int8_t *in, size_t in_n, int8_t *out, size_t out_n) {
  SlotHw *h = hw_of(user);
  h->infer_calls++;
  if (!h->loaded) return TS_ERR_INFERENCE_FAILED;
  if (ts_crc32(0, h->model, h->model_len) != h->model_crc) h->model_changed++;
  if (in_n != h->n_in || out_n != h->n_out) {
    h->bad_io++;
    return TS_ERR_INFERENCE_FAILED;
  }
  if ((h->flags & kFailInfer) != 0 || h->fail_infer) return TS_ERR_INFERENCE_FAILED;
  for (size_t j = 0; j < out_n; j++) out[j] = model_fn(h->key, in, in_n, j);
  h->clock += h->infer_step;
  return TS_OK;
}

// The reset hook: counts, and records what had reached the wire (and how many flushes)
// when it was called: the reply must be out before the board resets.
inline void hw_reset(void *user) {
  SlotHw *h = hw_of(user);
  h->resets++;
  h->out_at_reset = h->out.size();
  h->flushes_at_reset = h->flush_calls;
}

// ------------------------------------------------------------ slot image --

// The firmware these tests build: profile, op resolver, arena (see make_config).
constexpr const char *kProfile = "tflm-arduino-2023";
constexpr uint16_t kFwOps[] = {3, 4, 9, 22, 25, 114};
constexpr uint32_t kArena = 4096;

struct ImageSpec {
  uint32_t seq = 1;
  std::string version = "v0100";
  std::string profile = kProfile;
  uint8_t key = 1;
  uint8_t flags = 0;           // ModelFlags of the fake model
  uint32_t body_len = 1500;    // model bytes
  uint32_t arena = 2048;
  uint32_t in = 4, out = 2;    // header input/output bytes (also the fake model's)
  std::vector<uint16_t> ops = {3, 9, 25};
  uint16_t n_golden = 2;
  bool bad_golden = false;     // golden outputs off by 50: the self-test fails
  float in_scale = 0.5f, out_scale = 0.25f;
  int32_t in_zero = -3, out_zero = 7;
  float target_mean = 0.0f, target_scale = 1.0f;
};

inline size_t header_len_for(size_t n_ops, size_t n_golden, size_t in, size_t out) {
  const size_t raw = TS_SLOT_IMAGE_FIXED_LEN + 2 * n_ops + n_golden * (in + out);
  return (raw + 15) / 16 * 16;
}

inline uint32_t header_crc(const Bytes &img) {
  const size_t hlen = get16(&img[6]);
  uint32_t crc = ts_crc32(0, img.data(), TS_SLOT_IMAGE_CRC_OFFSET);
  return ts_crc32(crc, img.data() + TS_SLOT_IMAGE_FIXED_LEN, hlen - TS_SLOT_IMAGE_FIXED_LEN);
}
// Recompute the header CRC after a test changed a field (header length must be sane).
inline void fix_crc(Bytes &img) {
  const size_t hlen = img.size() >= 8 ? get16(&img[6]) : 0;
  if (hlen < TS_SLOT_IMAGE_FIXED_LEN || hlen > img.size()) return;
  put32(&img[TS_SLOT_IMAGE_CRC_OFFSET], header_crc(img));
}

inline void golden_input(uint8_t key, size_t g, size_t in, int8_t *dst) {
  for (size_t i = 0; i < in; i++) dst[i] = static_cast<int8_t>(static_cast<uint8_t>(g * 37u + i * 11u + key));
}

// The whole image: header, then the fake model body.
inline Bytes encode_image(const ImageSpec &s) {
  const size_t hlen = header_len_for(s.ops.size(), s.n_golden, s.in, s.out);
  const Bytes body = model_body(s.key, s.in, s.out, s.flags, s.body_len);
  Bytes b(hlen + body.size(), 0);
  memcpy(b.data(), "TSMH", 4);
  put16(&b[4], TS_SLOT_IMAGE_VERSION);
  put16(&b[6], static_cast<uint32_t>(hlen));
  put32(&b[8], s.seq);
  put32(&b[12], static_cast<uint32_t>(body.size()));
  put32(&b[16], ts_crc32(0, body.data(), body.size()));
  for (size_t i = 0; i < 32; i++) b[20 + i] = static_cast<uint8_t>(s.key * 13u + i);
  memcpy(&b[52], s.version.data(), s.version.size() < 16 ? s.version.size() : 16);
  memcpy(&b[68], s.profile.data(), s.profile.size() < 32 ? s.profile.size() : 32);
  put32(&b[100], s.arena);
  put32(&b[104], s.in);
  put32(&b[108], s.out);
  putf(&b[112], s.in_scale);
  put32(&b[116], static_cast<uint32_t>(s.in_zero));
  putf(&b[120], s.out_scale);
  put32(&b[124], static_cast<uint32_t>(s.out_zero));
  put16(&b[128], static_cast<uint32_t>(s.ops.size()));
  put16(&b[130], s.n_golden);
  putf(&b[132], s.target_mean);
  putf(&b[136], s.target_scale);
  size_t p = TS_SLOT_IMAGE_FIXED_LEN;
  for (uint16_t op : s.ops) {
    put16(&b[p], op);
    p += 2;
  }
  for (size_t g = 0; g < s.n_golden; g++) {
    golden_input(s.key, g, s.in, reinterpret_cast<int8_t *>(&b[p + g * s.in]));
  }
  const size_t outs = p + s.n_golden * static_cast<size_t>(s.in);
  for (size_t g = 0; g < s.n_golden; g++) {
    const int8_t *x = reinterpret_cast<const int8_t *>(&b[p + g * s.in]);
    for (size_t j = 0; j < s.out; j++) {
      int8_t y = model_fn(s.key, x, s.in, j);
      if (s.bad_golden && j == 0) y = static_cast<int8_t>(static_cast<uint8_t>(y + 50));
      b[outs + g * s.out + j] = static_cast<uint8_t>(y);
    }
  }
  memcpy(b.data() + hlen, body.data(), body.size());
  fix_crc(b);
  return b;
}

inline Bytes header_of(const Bytes &img) {
  return Bytes(img.begin(), img.begin() + static_cast<long>(get16(&img[6])));
}

// ----------------------------------------------------------------- board --

// The factory model, compiled in: key 0, 4 inputs, 2 outputs (16-byte aligned).
alignas(16) inline uint8_t g_factory[256];
inline int8_t g_factory_golden_in[3 * 4];
inline int8_t g_factory_golden_out[3 * 2];
inline const int32_t kFactoryIn[2] = {1, 4};
inline const int32_t kFactoryOut[2] = {1, 2};
inline const uint8_t kDeviceId[8] = {0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04};

inline ts_config_t make_config(const NorSim *nor) {
  const Bytes f = model_body(0, 4, 2, 0, sizeof(g_factory));
  memcpy(g_factory, f.data(), f.size());
  for (size_t g = 0; g < 3; g++) {
    golden_input(0, g, 4, g_factory_golden_in + g * 4);
    for (size_t j = 0; j < 2; j++) g_factory_golden_out[g * 2 + j] = model_fn(0, g_factory_golden_in + g * 4, 4, j);
  }
  ts_config_t c = default_config();
  c.model_version = "v0003";
  c.input_shape = kFactoryIn;
  c.output_shape = kFactoryOut;
  c.golden_inputs = g_factory_golden_in;
  c.golden_outputs = g_factory_golden_out;
  c.golden_count = 3;
  c.arena_size = kArena;
  c.profile = kProfile;
  c.device_id = kDeviceId;
  c.device_id_len = sizeof(kDeviceId);
  c.flash = nor != nullptr ? nor->flash() : nullptr;
  c.factory_model = g_factory;
  c.factory_model_len = sizeof(g_factory);
  c.ops = kFwOps;
  c.n_ops = sizeof(kFwOps) / sizeof(kFwOps[0]);
  return c;
}

inline ts_platform_t make_platform(SlotHw *h) {
  ts_platform_t p = fake_platform(h, false);
  p.user = static_cast<Fake *>(h);
  p.infer = hw_infer;
  p.load_model = hw_load;
  p.reset = hw_reset;
  return p;
}

// A board: the core over a NOR simulator and the fake runtime. boot() is a power-on or
// reset (ts_core_init again on the same flash); the core's memory is a fresh heap block
// of exactly ts_core_size() bytes each time, so ASan sees any access past it.
struct Board {
  NorSim nor;
  SlotHw hw;
  ts_config_t cfg;
  ts_platform_t plat;
  ts_core_t *core = nullptr;
  void *mem = nullptr;
  ts_status_t init_status = TS_OK;
  uint16_t seq = 1;

  Board(uint32_t unit, uint32_t sectors_per_slot = 4, uint32_t sector = 4096)
      : nor(sector, unit, sector * sectors_per_slot) {
    hw.nor = &nor;
    cfg = make_config(&nor);
    hw.factory = g_factory;
    hw.factory_len = sizeof(g_factory);
    plat = make_platform(&hw);
  }
  ~Board() { free(mem); }
  Board(const Board &) = delete;
  Board &operator=(const Board &) = delete;

  ts_status_t boot() {
    free(mem);
    mem = malloc(ts_core_size());
    hw.loaded = false;
    hw.out.clear();
    core = nullptr;
    init_status = ts_core_init(mem, ts_core_size(), &cfg, &plat, &core);
    return init_status;
  }
  Parsed send(const Bytes &bytes) {
    hw.out.clear();
    if (core != nullptr) feed(core, bytes);
    return parse_output(hw.out);
  }
  Parsed request(uint8_t cmd, const Bytes &pl) {
    seq = static_cast<uint16_t>(seq == 0xFFFEu ? 1u : seq + 1u);
    return send(make_frame(cmd, seq, pl));
  }
  uint32_t running_source() const {
    uint32_t s = 9, m = 9;
    (void)ts_core_get_running(core, &s, &m);
    return s;
  }
  uint32_t running_mode() const {
    uint32_t s = 9, m = 9;
    (void)ts_core_get_running(core, &s, &m);
    return m;
  }
};

inline Bytes write_payload(uint32_t off, const uint8_t *data, size_t n) {
  Bytes p(4 + n);
  put32(p.data(), off);
  if (n != 0) memcpy(p.data() + 4, data, n);
  return p;
}

}  // namespace slots

#endif  // TINYSHIP_SLOT_SUPPORT_H
