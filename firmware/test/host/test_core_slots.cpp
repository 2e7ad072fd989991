// Model slots through the core's protocol (make slot-core-test): a core configured with
// slots over the NOR simulator (nor_sim.h, strict write-once: every erase/program the core
// does is checked) and a fake model runtime (slot_support.h), driven by frames, against
// firmware/PROTOCOL.md section 9 and firmware/SLOTS.md: SLOT_INFO layout, install, every
// refusal with the flash unchanged, retried chunks, trial boot / confirm / revert, health
// check at the trial boot, the factory model, INFO tags 0x1F-0x21, flash failures and a
// power-cut sweep (before and torn, at every operation of install, trial boot, confirm
// and revert, plus random cuts). Each scenario runs with the three boards' program units
// (4 nRF52840, 256 RP2040, 1 ESP32-S3).
//
// Prints "test_core_slots: N checks, F failures (P power cuts)" for
// tests/test_slot_firmware.py.
//
// Two tests state spec rules the core did not meet when they were written (reported to the
// core's owner, not worked around here): test_confirmed_slot_not_revoked_by_boot (a
// confirmed slot whose model fails to load once is revoked by the boot code) and
// test_revert_never_runs_stale_pending (after a reverted trial an older, never-confirmed
// pending slot runs as a trial instead of the previous confirmed slot or the factory model).
#include <cmath>

#include "slot_support.h"

using namespace slots;

namespace {

const uint32_t kUnits[] = {4, 256, 1};
uint32_t g_cuts = 0;
bool g_expect_failures = false;  // the power-cut script: refused commands are expected

// ------------------------------------------------------------- helpers --

bool one_frame(const Parsed &p, Frame *out, const char *what) {
  if (p.frames.size() != 1 || p.frames[0].status != TS_OK) {
    fprintf(stderr, "  %s: expected one good reply, got %zu frame(s)\n", what, p.frames.size());
    return false;
  }
  *out = p.frames[0];
  return true;
}

// A normal reply to `cmd` (payload in *pl). Prints the error code otherwise.
bool ok_reply(Board &b, uint8_t cmd, const Bytes &req, Bytes *pl = nullptr) {
  const Parsed p = b.request(cmd, req);
  Frame f;
  if (!one_frame(p, &f, ts_command_name(cmd))) return false;
  if (f.cmd != (cmd | TS_RESPONSE_FLAG) || f.seq != b.seq) {
    if (g_expect_failures) return false;
    fprintf(stderr, "  %s: reply cmd 0x%02x code %d (%s)\n", ts_command_name(cmd), f.cmd,
            f.payload.empty() ? -1 : f.payload[0],
            f.payload.empty() ? "" : ts_status_name(static_cast<ts_status_t>(f.payload[0])));
    return false;
  }
  if (pl != nullptr) *pl = f.payload;
  return true;
}

// An error reply with `code` to `cmd`, with the status reason string.
bool err_reply(Board &b, uint8_t cmd, const Bytes &req, ts_status_t code) {
  const Parsed p = b.request(cmd, req);
  Frame f;
  if (!one_frame(p, &f, ts_command_name(cmd))) return false;
  if (f.cmd != TS_CMD_ERROR || f.seq != b.seq || f.payload.size() < 2 || f.payload[0] != code ||
      f.payload[1] != cmd ||
      std::string(f.payload.begin() + 2, f.payload.end()) != ts_status_str(code)) {
    fprintf(stderr, "  %s: expected %s, got cmd 0x%02x code %d\n", ts_command_name(cmd),
            ts_status_name(code), f.cmd, f.payload.empty() ? -1 : f.payload[0]);
    return false;
  }
  return true;
}

// A refusal that must leave the flash exactly as it was, with no flash operation at all.
bool refused_untouched(Board &b, uint8_t cmd, const Bytes &req, ts_status_t code) {
  const Bytes before = b.nor.snapshot();
  const uint64_t ops = b.nor.ops;
  const bool r = err_reply(b, cmd, req, code);
  const bool same = b.nor.snapshot() == before && b.nor.ops == ops;
  if (!same) fprintf(stderr, "  %s refused with %s but the flash changed (%llu ops)\n",
                     ts_command_name(cmd), ts_status_name(code),
                     static_cast<unsigned long long>(b.nor.ops - ops));
  return r && same;
}

Tlvs hello(Board &b) {
  Bytes p;
  if (!ok_reply(b, TS_CMD_HELLO, {}, &p)) {
    Tlvs t;
    t.well_formed = false;
    return t;
  }
  return parse_tlv(p);
}

std::string str(const Bytes &v) { return std::string(v.begin(), v.end()); }

struct SlotRec {
  uint8_t state = 0, commit = 0, tried = 0, confirmed = 0, revoked = 0, crc_ok = 0, status = 0,
          zero = 0;
  uint32_t seq = 0, model_len = 0, crc = 0;
  Bytes sha;
  std::string version;  // NUL padding stripped
  Bytes raw;            // the 68 bytes
};

struct SlotInfo {
  bool ok = false;
  uint8_t running = 0, mode = 0, installing = 0, inst_slot = 0;
  uint32_t capacity = 0, sector = 0, erase_us = 0, prog_us = 0, inst_len = 0, inst_next = 0,
           arena = 0, in_buf = 0, out_buf = 0;
  uint16_t unit = 0, max_chunk = 0;
  SlotRec rec[2];
  std::string profile;
  std::vector<uint16_t> ops;
};

SlotInfo slot_info(Board &b) {
  SlotInfo s;
  Bytes p;
  if (!ok_reply(b, TS_CMD_SLOT_INFO, {}, &p)) return s;
  // 180 + 1 + P + 1 + 2n bytes, exactly
  if (p.size() < 182 || p.size() < 182u + p[180] ||
      p.size() != 180u + 1u + p[180] + 1u + 2u * p[181u + p[180]]) {
    fprintf(stderr, "  SLOT_INFO: %zu bytes, not 180 + 1 + P + 1 + 2n\n", p.size());
    return s;
  }
  s.running = p[0];
  s.mode = p[1];
  s.installing = p[2];
  s.inst_slot = p[3];
  s.capacity = get32(&p[4]);
  s.sector = get32(&p[8]);
  s.unit = get16(&p[12]);
  s.max_chunk = get16(&p[14]);
  s.erase_us = get32(&p[16]);
  s.prog_us = get32(&p[20]);
  s.inst_len = get32(&p[24]);
  s.inst_next = get32(&p[28]);
  s.arena = get32(&p[32]);
  s.in_buf = get32(&p[36]);
  s.out_buf = get32(&p[40]);
  for (int k = 0; k < 2; k++) {
    const uint8_t *r = &p[44 + 68 * static_cast<size_t>(k)];
    SlotRec &x = s.rec[k];
    x.raw.assign(r, r + 68);
    x.state = r[0];
    x.commit = r[1];
    x.tried = r[2];
    x.confirmed = r[3];
    x.revoked = r[4];
    x.crc_ok = r[5];
    x.status = r[6];
    x.zero = r[7];
    x.seq = get32(r + 8);
    x.model_len = get32(r + 12);
    x.crc = get32(r + 16);
    x.sha.assign(r + 20, r + 52);
    x.version = std::string(reinterpret_cast<const char *>(r + 52), strnlen(reinterpret_cast<const char *>(r + 52), 16));
  }
  const size_t plen = p[180];
  s.profile.assign(reinterpret_cast<const char *>(&p[181]), plen);
  const size_t n = p[181 + plen];
  for (size_t i = 0; i < n; i++) s.ops.push_back(get16(&p[182 + plen + 2 * i]));
  s.ok = true;
  return s;
}

// The record is consistent: state is the class of its flags (or EMPTY), fields 8..67
// zero without a parsed header.
bool record_consistent(const SlotRec &r) {
  bool ok = r.zero == 0 && r.commit <= 2 && r.tried <= 2 && r.confirmed <= 2 && r.revoked <= 2 &&
            r.crc_ok <= 1 && r.state <= TS_SLOT_TRIAL;
  if (r.status != 0) {
    for (size_t i = 8; i < 68; i++) ok = ok && r.raw[i] == 0;
  }
  if (r.state == TS_SLOT_TRIAL) {  // the running trial: its flags say "tried, not confirmed"
    ts_slot_flags fl{r.commit, r.crc_ok, r.tried, r.confirmed, r.revoked, r.seq};
    ok = ok && ts_slot_classify(&fl) == TS_SLOT_FAILED;
  } else if (r.state != TS_SLOT_EMPTY) {
    ts_slot_flags fl{r.commit, r.crc_ok, r.tried, r.confirmed, r.revoked, r.seq};
    ok = ok && ts_slot_classify(&fl) == r.state;
  }
  return ok;
}

Bytes begin_payload(const Bytes &img) { return header_of(img); }

// BEGIN, WRITE chunks of `chunk` bytes, END: all answered normally. *slot_out: BEGIN's slot.
bool install(Board &b, const Bytes &img, uint32_t chunk = TS_SLOT_MAX_CHUNK, int *slot_out = nullptr) {
  Bytes pl;
  if (!ok_reply(b, TS_CMD_SLOT_BEGIN, begin_payload(img), &pl) || pl.size() != 5 ||
      get32(&pl[1]) != img.size()) {
    return false;
  }
  const uint8_t slot = pl[0];
  if (slot_out != nullptr) *slot_out = slot;
  for (size_t off = 0; off < img.size(); off += chunk) {
    const size_t n = img.size() - off < chunk ? img.size() - off : chunk;
    if (!ok_reply(b, TS_CMD_SLOT_WRITE, write_payload(static_cast<uint32_t>(off), &img[off], n), &pl) ||
        pl.size() != 4 || get32(pl.data()) != off + n) {
      return false;
    }
  }
  if (!ok_reply(b, TS_CMD_SLOT_END, {}, &pl) || pl.size() != 5 || pl[0] != slot ||
      get32(&pl[1]) != get32(&img[8])) {
    return false;
  }
  return memcmp(b.nor.slot_mem(slot), img.data(), img.size()) == 0 &&
         flag_of(b.nor, slot, 0) == TS_FLAG_SET;
}

// REBOOT: empty reply, the reset hook called once after the reply was written and
// flushed, then the board boots again.
bool reboot(Board &b) {
  const uint32_t resets = b.hw.resets;
  const uint32_t flushes = b.hw.flush_calls;
  Bytes pl;
  bool ok = ok_reply(b, TS_CMD_REBOOT, {}, &pl) && pl.empty() && b.hw.resets == resets + 1;
  ok = ok && b.hw.out_at_reset == b.hw.out.size() && b.hw.flushes_at_reset > flushes;
  return b.boot() == TS_OK && ok;
}

bool running(Board &b, uint32_t source, uint32_t mode, const std::string &version) {
  const Tlvs t = hello(b);
  const bool ok = t.well_formed && t.v[TS_TLV_RUNNING] == Bytes{static_cast<uint8_t>(source), static_cast<uint8_t>(mode)} &&
                  str(t.v[TS_TLV_MODEL_VERSION]) == version && b.running_source() == source &&
                  b.running_mode() == mode;
  if (!ok) {
    fprintf(stderr, "  expected running %u/%u %s, INFO says %d/%d %s\n", source, mode, version.c_str(),
            t.v[TS_TLV_RUNNING].size() == 2 ? t.v[TS_TLV_RUNNING][0] : -1,
            t.v[TS_TLV_RUNNING].size() == 2 ? t.v[TS_TLV_RUNNING][1] : -1,
            str(t.v[TS_TLV_MODEL_VERSION]).c_str());
  }
  return ok;
}

// One INFER of a fixed input; true when the output is model `key`'s (so that model runs).
bool infers_as(Board &b, uint8_t key, uint32_t in, uint32_t out) {
  Bytes req = {1, 0};
  std::vector<int8_t> x(in);
  for (uint32_t i = 0; i < in; i++) x[i] = static_cast<int8_t>(i * 5 + 1);
  for (int8_t v : x) req.push_back(static_cast<uint8_t>(v));
  Bytes pl;
  if (!ok_reply(b, TS_CMD_INFER, req, &pl) || pl.size() != 6u + out) return false;
  for (uint32_t j = 0; j < out; j++) {
    if (static_cast<int8_t>(pl[6 + j]) != model_fn(key, x.data(), in, j)) return false;
  }
  return true;
}

bool self_test_passed(Board &b) {
  ts_self_test_t st;
  return ts_core_get_self_test(b.core, &st) == TS_OK && st.status == TS_SELF_TEST_PASS;
}

ImageSpec spec(uint32_t seq, uint8_t key, const char *version) {
  ImageSpec s;
  s.seq = seq;
  s.key = key;
  s.version = version;
  return s;
}

// Board with slot A confirmed (v0001, key 1, seq 1).
bool setup_a_confirmed(Board &b) {
  Bytes pl;
  return b.boot() == TS_OK && install(b, encode_image(spec(1, 1, "v0001"))) && reboot(b) &&
         ok_reply(b, TS_CMD_SLOT_CONFIRM, {}, &pl) && reboot(b) &&
         running(b, TS_RUNNING_SLOT_A, TS_RUNNING_CONFIRMED, "v0001");
}

bool clean(Board &b) {
  if (b.nor.violations != 0) fprintf(stderr, "  %s\n", b.nor.first_violation.c_str());
  if (b.hw.model_changed != 0) fprintf(stderr, "  a running model's bytes changed in flash\n");
  return b.nor.violations == 0 && b.hw.model_changed == 0 && b.hw.bad_io == 0;
}

// -------------------------------------------------------------- tests --

void test_config_checks() {
  NorSim nor(4096, 4, 4 * 4096);
  SlotHw hw;
  hw.nor = &nor;
  ts_platform_t plat = make_platform(&hw);
  void *mem = malloc(ts_core_size());
  ts_core_t *core = nullptr;
  auto init = [&](const ts_config_t &c, const ts_platform_t &p) {
    return ts_core_init(mem, ts_core_size(), &c, &p, &core);
  };
  ts_config_t c = make_config(&nor);
  CHECK_EQ(init(c, plat), TS_OK);
  ts_platform_t p2 = plat;
  p2.load_model = nullptr;  // required with slots
  CHECK_EQ(init(c, p2), TS_ERR_INVALID_ARGUMENT);
  c.factory_model = nullptr;
  CHECK_EQ(init(c, plat), TS_ERR_INVALID_ARGUMENT);
  c = make_config(&nor);
  c.factory_model_len = 0;
  CHECK_EQ(init(c, plat), TS_ERR_INVALID_ARGUMENT);
  c = make_config(&nor);
  c.ops = nullptr;
  CHECK_EQ(init(c, plat), TS_ERR_INVALID_ARGUMENT);
  c.n_ops = 0;  // no operator registered: allowed (every image needing one is refused)
  CHECK_EQ(init(c, plat), TS_OK);
  c = make_config(&nor);
  c.n_ops = 256;  // SLOT_INFO lists at most 255
  CHECK_EQ(init(c, plat), TS_ERR_INVALID_ARGUMENT);
  c = make_config(&nor);
  c.device_id_len = TS_MAX_DEVICE_ID + 1;
  CHECK_EQ(init(c, plat), TS_ERR_INVALID_ARGUMENT);
  c.device_id_len = 4;
  c.device_id = nullptr;
  CHECK_EQ(init(c, plat), TS_ERR_INVALID_ARGUMENT);
  // Geometries the store cannot use.
  struct Geo { uint32_t sector, unit, slot; };
  const Geo bad[] = {{4096, 3, 4 * 4096},  {4096, 512, 4 * 4096}, {3000, 4, 4 * 3000},
                     {4096, 4, 4096},      {4096, 4, 4096 * 3 + 100}, {128, 4, 4 * 128},
                     {4096, 0, 4 * 4096}};
  for (const Geo &g : bad) {
    NorSim n2(g.sector, g.unit, g.slot);
    SlotHw h2;
    h2.nor = &n2;
    ts_platform_t p3 = make_platform(&h2);
    ts_config_t c3 = make_config(&n2);
    CHECK_EQ(init(c3, p3), TS_ERR_INVALID_ARGUMENT);
  }
  // No flash: no slots, device id still reported.
  c = make_config(nullptr);
  CHECK_EQ(init(c, plat), TS_OK);
  CHECK_EQ(nor.ops, 0u);
  free(mem);
}

void test_fresh_board(uint32_t unit) {
  Board b(unit);
  CHECK_EQ(b.boot(), TS_OK);
  CHECK_EQ(b.nor.ops, 0u);  // nothing to write on erased flash
  CHECK_EQ(b.hw.loads.size(), 1u);
  CHECK(b.hw.loads.size() == 1 && b.hw.loads[0].source == 0 && b.hw.loads[0].ok);
  CHECK(self_test_passed(b));
  CHECK_CONTAINS(parse_output(b.hw.out).text, "proto=2");
  const Tlvs t = hello(b);
  CHECK(t.well_formed);
  CHECK((t.v[TS_TLV_PROTOCOL_VERSION] == Bytes{2}));
  CHECK((t.v[TS_TLV_DEVICE_ID] == Bytes(kDeviceId, kDeviceId + 8)));
  CHECK((t.v[TS_TLV_RUNNING] == Bytes{0, 0}));
  CHECK_EQ(t.v[TS_TLV_SLOT_CAPACITY].size(), 4u);
  CHECK_EQ(get32(t.v[TS_TLV_SLOT_CAPACITY].data()), 3u * 4096u);
  CHECK(str(t.v[TS_TLV_MODEL_VERSION]) == "v0003");
  CHECK((t.v[TS_TLV_MODEL_CRC_OK] == Bytes{TS_CRC_OK}));
  CHECK(infers_as(b, 0, 4, 2));

  const SlotInfo s = slot_info(b);
  CHECK(s.ok);
  CHECK_EQ(s.running, 0);
  CHECK_EQ(s.mode, 0);
  CHECK_EQ(s.installing, 0);
  CHECK_EQ(s.inst_slot, 0xFF);
  CHECK_EQ(s.capacity, 3u * 4096u);
  CHECK_EQ(s.sector, 4096u);
  CHECK_EQ(s.unit, unit);
  CHECK_EQ(s.max_chunk, 768);
  CHECK_EQ(s.erase_us, 85000u);
  CHECK_EQ(s.prog_us, 7872u);
  CHECK_EQ(s.inst_len, 0u);
  CHECK_EQ(s.inst_next, 0u);
  CHECK_EQ(s.arena, kArena);
  CHECK_EQ(s.in_buf, TS_MAX_INPUT_BYTES);
  CHECK_EQ(s.out_buf, TS_MAX_PAYLOAD - 6u);
  for (const SlotRec &r : s.rec) {
    CHECK_EQ(r.state, TS_SLOT_EMPTY);
    CHECK(r.commit == 0 && r.tried == 0 && r.confirmed == 0 && r.revoked == 0 && r.crc_ok == 0);
    CHECK_EQ(r.status, TS_IMG_ERR_MAGIC);  // erased flash: no "TSMH"
    CHECK(record_consistent(r));
  }
  CHECK(s.profile == kProfile);
  CHECK((s.ops == std::vector<uint16_t>(std::begin(kFwOps), std::end(kFwOps))));
  // Confirm / revert with the factory model running: not allowed, nothing written.
  CHECK(refused_untouched(b, TS_CMD_SLOT_CONFIRM, {}, TS_ERR_SLOT_STATE));
  CHECK(refused_untouched(b, TS_CMD_SLOT_REVERT, {}, TS_ERR_SLOT_STATE));
  CHECK_EQ(b.hw.resets, 0u);
  // Without an install: WRITE and END are refused.
  const uint8_t chunk[256] = {};
  CHECK(refused_untouched(b, TS_CMD_SLOT_WRITE, write_payload(0, chunk, 256), TS_ERR_SLOT_STATE));
  CHECK(refused_untouched(b, TS_CMD_SLOT_END, {}, TS_ERR_SLOT_STATE));
  CHECK(clean(b));
}

void test_board_without_slots() {
  SlotHw hw;
  NorSim nor(4096, 4, 4 * 4096);
  hw.nor = &nor;
  ts_config_t c = make_config(nullptr);
  ts_platform_t p = make_platform(&hw);
  p.load_model = nullptr;  // not needed without slots
  void *mem = malloc(ts_core_size());
  ts_core_t *core = nullptr;
  CHECK_EQ(ts_core_init(mem, ts_core_size(), &c, &p, &core), TS_OK);
  hw.out.clear();
  feed(core, make_frame(TS_CMD_HELLO, 1, {}));
  Parsed r = parse_output(hw.out);
  CHECK_EQ(r.frames.size(), 1u);
  if (r.frames.size() == 1) {
    const Bytes &pl = r.frames[0].payload;
    bool dev = false, run = false, cap = false;
    for (size_t i = 0; i + 2 <= pl.size(); i += 2u + pl[i + 1]) {
      dev = dev || (pl[i] == TS_TLV_DEVICE_ID && pl[i + 1] == 8 && memcmp(&pl[i + 2], kDeviceId, 8) == 0);
      run = run || pl[i] == TS_TLV_RUNNING;
      cap = cap || pl[i] == TS_TLV_SLOT_CAPACITY;
    }
    CHECK(dev && !run && !cap);
  }
  const uint8_t cmds[] = {0x10, 0x11, 0x12, 0x13, 0x15, 0x16};
  for (uint8_t cmd : cmds) {
    hw.out.clear();
    feed(core, make_frame(cmd, 7, {1, 2, 3}));
    r = parse_output(hw.out);
    CHECK(r.frames.size() == 1 && r.frames[0].cmd == TS_CMD_ERROR &&
          r.frames[0].payload.size() >= 2 && r.frames[0].payload[0] == TS_ERR_NO_SLOTS &&
          r.frames[0].payload[1] == cmd);
  }
  // REBOOT works without slots when the glue can reset.
  hw.out.clear();
  feed(core, make_frame(TS_CMD_REBOOT, 8, {}));
  r = parse_output(hw.out);
  CHECK(r.frames.size() == 1 && r.frames[0].cmd == (TS_CMD_REBOOT | 0x80) && r.frames[0].payload.empty());
  CHECK_EQ(hw.resets, 1u);
  // No device id: tag 0x1F absent.
  c.device_id = nullptr;
  c.device_id_len = 0;
  CHECK_EQ(ts_core_init(mem, ts_core_size(), &c, &p, &core), TS_OK);
  hw.out.clear();
  feed(core, make_frame(TS_CMD_HELLO, 2, {}));
  r = parse_output(hw.out);
  if (r.frames.size() == 1) {
    const Bytes &pl = r.frames[0].payload;
    for (size_t i = 0; i + 2 <= pl.size(); i += 2u + pl[i + 1]) CHECK(pl[i] != TS_TLV_DEVICE_ID);
  }
  free(mem);
}

void test_install_trial_confirm(uint32_t unit) {
  Board b(unit);
  CHECK_EQ(b.boot(), TS_OK);
  ImageSpec sp = spec(1, 1, "v0001");
  sp.body_len = 5000;  // 2 sectors with the header
  const Bytes img = encode_image(sp);
  const uint32_t len = static_cast<uint32_t>(img.size());

  // BEGIN: slot A, the trailer sector erased first, then the image's sectors; nothing else.
  b.nor.log.clear();
  Bytes pl;
  CHECK(ok_reply(b, TS_CMD_SLOT_BEGIN, begin_payload(img), &pl));
  CHECK((pl.size() == 5 && pl[0] == 0 && get32(&pl[1]) == len));
  CHECK_EQ(b.nor.log.size(), 3u);
  if (b.nor.log.size() == 3) {
    CHECK(b.nor.log[0].kind == 'E' && b.nor.log[0].slot == 0 && b.nor.log[0].offset == 3u * 4096u);
    CHECK(b.nor.log[1].kind == 'E' && b.nor.log[1].offset == 0);
    CHECK(b.nor.log[2].kind == 'E' && b.nor.log[2].offset == 4096u);
  }
  SlotInfo s = slot_info(b);
  CHECK(s.ok && s.installing == 1 && s.inst_slot == 0 && s.inst_len == len && s.inst_next == 0);
  CHECK(s.rec[0].state == TS_SLOT_EMPTY);

  // WRITE: chunks of 768, then the rest; each reply is `next`.
  b.nor.log.clear();
  for (uint32_t off = 0; off < len; off += 768) {
    const uint32_t n = len - off < 768 ? len - off : 768;
    CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, write_payload(off, &img[off], n), &pl));
    CHECK(pl.size() == 4 && get32(pl.data()) == off + n);
    if (off == 0) {
      s = slot_info(b);
      CHECK(s.ok && s.installing == 1 && s.inst_next == 768);
      CHECK(s.rec[0].state == TS_SLOT_INVALID && s.rec[0].status == 0 && s.rec[0].seq == 1 &&
            s.rec[0].commit == 0 && s.rec[0].crc_ok == 0);
    }
  }
  for (const NorOp &o : b.nor.log) CHECK(o.kind == 'P' && o.slot == 0 && o.offset < len && o.ok);
  CHECK(memcmp(b.nor.slot_mem(0), img.data(), len) == 0);
  CHECK_EQ(flag_of(b.nor, 0, 0), TS_FLAG_UNSET);

  // END: the commit marker, last and alone; the slot is pending; the factory still runs.
  b.nor.log.clear();
  CHECK(ok_reply(b, TS_CMD_SLOT_END, {}, &pl));
  CHECK((pl.size() == 5 && pl[0] == 0 && get32(&pl[1]) == 1));
  CHECK_EQ(b.nor.log.size(), 1u);
  if (!b.nor.log.empty()) {
    CHECK(b.nor.log[0].kind == 'P' && b.nor.log[0].offset == unit_off(b.nor, 0) &&
          b.nor.log[0].len == trailer_unit(b.nor));
  }
  CHECK(memcmp(b.nor.slot_mem(0) + unit_off(b.nor, 0), ts_commit_magic, 8) == 0);
  CHECK_EQ(flag_of(b.nor, 0, 0), TS_FLAG_SET);
  for (uint32_t u = 1; u < 4; u++) CHECK_EQ(flag_of(b.nor, 0, u), TS_FLAG_UNSET);
  s = slot_info(b);
  CHECK(s.ok && s.installing == 0 && s.inst_slot == 0xFF && s.inst_len == 0 && s.inst_next == 0);
  const SlotRec &a = s.rec[0];
  CHECK(a.state == TS_SLOT_PENDING && a.commit == 1 && a.tried == 0 && a.confirmed == 0 &&
        a.revoked == 0 && a.crc_ok == 1 && a.status == 0);
  CHECK(a.seq == 1 && a.model_len == 5000 && a.crc == get32(&img[16]));
  CHECK((a.sha == Bytes(img.begin() + 20, img.begin() + 52)));
  CHECK(a.version == "v0001");
  CHECK((a.raw[52 + 5] == 0 && a.raw[67] == 0));  // NUL-padded
  CHECK(record_consistent(a) && record_consistent(s.rec[1]));
  CHECK(s.rec[1].state == TS_SLOT_EMPTY);
  CHECK(running(b, 0, 0, "v0003"));
  CHECK(infers_as(b, 0, 4, 2));

  // REBOOT: trial of slot A, `tried` programmed before the model was loaded.
  b.hw.loads.clear();
  b.nor.log.clear();
  CHECK(reboot(b));
  CHECK_EQ(b.nor.log.size(), 1u);
  if (!b.nor.log.empty()) CHECK(b.nor.log[0].kind == 'P' && b.nor.log[0].offset == unit_off(b.nor, 1));
  CHECK_EQ(b.hw.loads.size(), 1u);
  if (!b.hw.loads.empty()) {
    CHECK(b.hw.loads[0].source == 1 && b.hw.loads[0].tried == TS_FLAG_SET && b.hw.loads[0].key == 1);
  }
  CHECK(running(b, TS_RUNNING_SLOT_A, TS_RUNNING_TRIAL, "v0001"));
  CHECK(self_test_passed(b));
  CHECK(infers_as(b, 1, 4, 2));
  s = slot_info(b);
  CHECK(s.ok && s.running == 1 && s.mode == 1 && s.rec[0].tried == 1 && s.rec[0].confirmed == 0);
  CHECK(record_consistent(s.rec[0]));

  // CONFIRM: programs `confirmed`; again is a no-op answered normally.
  b.nor.log.clear();
  CHECK(ok_reply(b, TS_CMD_SLOT_CONFIRM, {}, &pl));
  CHECK((pl == Bytes{1}));
  CHECK_EQ(b.nor.log.size(), 1u);
  CHECK_EQ(flag_of(b.nor, 0, 2), TS_FLAG_SET);
  CHECK(running(b, TS_RUNNING_SLOT_A, TS_RUNNING_CONFIRMED, "v0001"));
  CHECK(ok_reply(b, TS_CMD_SLOT_CONFIRM, {}, &pl));
  CHECK((pl == Bytes{1}));
  CHECK_EQ(b.nor.log.size(), 1u);
  s = slot_info(b);
  CHECK(s.ok && s.rec[0].state == TS_SLOT_CONFIRMED && s.mode == 0);

  // Kept across reboots, with no flash writes at boot.
  for (int i = 0; i < 3; i++) {
    const uint64_t ops = b.nor.ops;
    CHECK(reboot(b));
    CHECK_EQ(b.nor.ops, ops);
    CHECK(running(b, TS_RUNNING_SLOT_A, TS_RUNNING_CONFIRMED, "v0001"));
    CHECK(infers_as(b, 1, 4, 2));
  }
  // A power-on (no REBOOT command) is the same.
  CHECK_EQ(b.boot(), TS_OK);
  CHECK(running(b, TS_RUNNING_SLOT_A, TS_RUNNING_CONFIRMED, "v0001"));
  CHECK(clean(b));
}

// The running slot model's metadata in INFO and INFER follow its header and its runtime.
void test_slot_model_metadata(uint32_t unit) {
  Board b(unit);
  CHECK_EQ(b.boot(), TS_OK);
  ImageSpec sp = spec(3, 7, "v0007-long-name");  // 15 characters
  sp.in = 6;
  sp.out = 3;
  sp.n_golden = 3;
  sp.in_scale = 0.125f;
  sp.out_scale = 0.0625f;
  sp.in_zero = -11;
  sp.out_zero = 12;
  sp.target_mean = 2.5f;
  sp.target_scale = -3.0f;
  const Bytes img = encode_image(sp);
  CHECK(install(b, img, 512));
  CHECK(reboot(b));
  CHECK(running(b, 1, 1, "v0007-long-name"));
  const Tlvs t = hello(b);
  CHECK((t.v[TS_TLV_MODEL_CRC_OK] == Bytes{TS_CRC_OK}));
  CHECK_EQ(get32(t.v[TS_TLV_MODEL_CRC32].data()), get32(&img[16]));
  std::string hex;
  for (size_t i = 0; i < 32; i++) {
    char h[3];
    snprintf(h, sizeof h, "%02x", img[20 + i]);
    hex += h;
  }
  CHECK(str(t.v[TS_TLV_MODEL_SHA256]) == hex);
  CHECK_EQ(get32(t.v[TS_TLV_INPUT_SIZE].data()), 6u);
  CHECK_EQ(get32(t.v[TS_TLV_OUTPUT_SIZE].data()), 3u);
  CHECK((t.v[TS_TLV_INPUT_SHAPE].size() == 8 && get32(&t.v[TS_TLV_INPUT_SHAPE][4]) == 6));
  CHECK((t.v[TS_TLV_OUTPUT_SHAPE].size() == 8 && get32(&t.v[TS_TLV_OUTPUT_SHAPE][4]) == 3));
  CHECK_EQ(get32(t.v[TS_TLV_ARENA_USED].data()), 1007u);
  CHECK_EQ(get32(t.v[TS_TLV_ARENA_SIZE].data()), kArena);
  float f;
  uint32_t bits = get32(t.v[TS_TLV_INPUT_SCALE].data());
  memcpy(&f, &bits, 4);
  CHECK(f == 0.125f);
  bits = get32(t.v[TS_TLV_OUTPUT_SCALE].data());
  memcpy(&f, &bits, 4);
  CHECK(f == 0.0625f);
  CHECK_EQ(static_cast<int32_t>(get32(t.v[TS_TLV_INPUT_ZERO_POINT].data())), -11);
  CHECK_EQ(static_cast<int32_t>(get32(t.v[TS_TLV_OUTPUT_ZERO_POINT].data())), 12);
  bits = get32(t.v[TS_TLV_TARGET_MEAN].data());
  memcpy(&f, &bits, 4);
  CHECK(f == 2.5f);
  bits = get32(t.v[TS_TLV_TARGET_SCALE].data());
  memcpy(&f, &bits, 4);
  CHECK(f == -3.0f);
  CHECK((t.v[TS_TLV_SELF_TEST] == Bytes{TS_SELF_TEST_PASS, 3, 0, 0xFF, 0xFF, 0}));
  CHECK(infers_as(b, 7, 6, 3));
  CHECK(err_reply(b, TS_CMD_INFER, {1, 0, 1, 2, 3, 4}, TS_ERR_WRONG_INPUT_SIZE));  // 4 != 6
  // The board's own strings are unchanged.
  CHECK(str(t.v[TS_TLV_PROFILE]) == kProfile && str(t.v[TS_TLV_BOARD]) == "nano33ble");
  // Reverting to the factory model brings its metadata back.
  Bytes pl;
  CHECK(ok_reply(b, TS_CMD_SLOT_REVERT, {}, &pl));
  CHECK(b.boot() == TS_OK);
  const Tlvs u = hello(b);
  CHECK(str(u.v[TS_TLV_MODEL_VERSION]) == "v0003");
  CHECK_EQ(get32(u.v[TS_TLV_MODEL_CRC32].data()), 0xDEADBEEFu);
  CHECK_EQ(get32(u.v[TS_TLV_INPUT_SIZE].data()), 4u);
  CHECK(infers_as(b, 0, 4, 2));
  CHECK(clean(b));
}

void test_update_and_revert(uint32_t unit) {
  Board b(unit);
  CHECK(setup_a_confirmed(b));
  Bytes pl;
  // v2 into B (the slot not running); trial; an unconfirmed reboot reverts to A.
  int slot = -1;
  CHECK(install(b, encode_image(spec(2, 2, "v0002")), 768, &slot));
  CHECK_EQ(slot, 1);
  CHECK(running(b, 1, 0, "v0001"));  // nothing changes before a reset
  CHECK(reboot(b));
  CHECK(running(b, TS_RUNNING_SLOT_B, TS_RUNNING_TRIAL, "v0002"));
  CHECK(infers_as(b, 2, 4, 2));
  CHECK(b.boot() == TS_OK);  // a reset before SLOT_CONFIRM (power cut, watchdog)
  CHECK(running(b, TS_RUNNING_SLOT_A, TS_RUNNING_CONFIRMED, "v0001"));
  CHECK(infers_as(b, 1, 4, 2));
  CHECK_EQ(flag_of(b.nor, 1, 3), TS_FLAG_SET);  // B revoked by the boot code
  CHECK_EQ(flag_of(b.nor, 0, 3), TS_FLAG_UNSET);
  SlotInfo s = slot_info(b);
  CHECK(s.ok && s.rec[1].state == TS_SLOT_REVOKED && s.rec[0].state == TS_SLOT_CONFIRMED);
  uint64_t ops = b.nor.ops;
  CHECK(reboot(b));  // settled: no more writes
  CHECK_EQ(b.nor.ops, ops);
  CHECK(running(b, 1, 0, "v0001"));
  // The same with REBOOT instead of a power cut: the trial is reverted.
  CHECK(install(b, encode_image(spec(3, 8, "v0008")), 768, &slot));
  CHECK(reboot(b));
  CHECK(running(b, 2, 1, "v0008"));
  CHECK(reboot(b));
  CHECK(running(b, 1, 0, "v0001"));
  CHECK_EQ(flag_of(b.nor, 1, 3), TS_FLAG_SET);

  // v3 into B again (A runs); trial; SLOT_REVERT: revoked, the board resets, A runs.
  CHECK(install(b, encode_image(spec(4, 3, "v0003b")), 768, &slot));
  CHECK_EQ(slot, 1);
  CHECK(reboot(b));
  CHECK(running(b, 2, 1, "v0003b"));
  const uint32_t resets = b.hw.resets;
  CHECK(ok_reply(b, TS_CMD_SLOT_REVERT, {}, &pl));
  CHECK((pl == Bytes{2, 1}));
  CHECK_EQ(b.hw.resets, resets + 1);
  CHECK_EQ(b.hw.out_at_reset, b.hw.out.size());  // the reply was out before the reset
  CHECK_EQ(flag_of(b.nor, 1, 3), TS_FLAG_SET);
  CHECK(b.boot() == TS_OK);
  CHECK(running(b, 1, 0, "v0001"));

  // v4 into B, confirmed; reverting the confirmed B brings back the previous confirmed A.
  CHECK(install(b, encode_image(spec(5, 4, "v0004")), 768, &slot));
  CHECK(reboot(b));
  CHECK(ok_reply(b, TS_CMD_SLOT_CONFIRM, {}, &pl));
  CHECK((pl == Bytes{2}));
  CHECK(reboot(b));
  CHECK(running(b, 2, 0, "v0004"));
  s = slot_info(b);
  CHECK(s.ok && s.rec[0].state == TS_SLOT_CONFIRMED && s.rec[1].state == TS_SLOT_CONFIRMED);
  CHECK(ok_reply(b, TS_CMD_SLOT_REVERT, {}, &pl));
  CHECK((pl == Bytes{2, 1}));
  CHECK(b.boot() == TS_OK);
  CHECK(running(b, 1, 0, "v0001"));
  CHECK(infers_as(b, 1, 4, 2));

  // Reverting the last confirmed slot: the factory model.
  CHECK(ok_reply(b, TS_CMD_SLOT_REVERT, {}, &pl));
  CHECK((pl == Bytes{1, 1}));
  CHECK(b.boot() == TS_OK);
  CHECK(running(b, 0, 0, "v0003"));
  CHECK(infers_as(b, 0, 4, 2));
  CHECK(refused_untouched(b, TS_CMD_SLOT_CONFIRM, {}, TS_ERR_SLOT_STATE));
  CHECK(refused_untouched(b, TS_CMD_SLOT_REVERT, {}, TS_ERR_SLOT_STATE));

  // From the factory model with both slots revoked: the older slot (A, seq 1) is reused.
  CHECK(install(b, encode_image(spec(6, 5, "v0005")), 768, &slot));
  CHECK_EQ(slot, 0);
  CHECK(reboot(b));
  CHECK(running(b, 1, 1, "v0005"));
  CHECK(clean(b));
}

// Which slot an install erases (PROTOCOL.md SLOT_BEGIN): never the running one.
void test_install_target(uint32_t unit) {
  Board b(unit);
  CHECK_EQ(b.boot(), TS_OK);
  int slot = -1;
  // factory, both empty: A; factory, A pending: B; factory, both pending: the older (A).
  CHECK(install(b, encode_image(spec(1, 1, "v0001")), 768, &slot));
  CHECK_EQ(slot, 0);
  CHECK(install(b, encode_image(spec(2, 2, "v0002")), 768, &slot));
  CHECK_EQ(slot, 1);
  Bytes pl;
  CHECK(ok_reply(b, TS_CMD_SLOT_BEGIN, begin_payload(encode_image(spec(3, 3, "v0003x"))), &pl));
  CHECK((pl.size() == 5 && pl[0] == 0));
  // A reset abandons the install; the newest pending (B, seq 2) boots as a trial.
  CHECK(reboot(b));
  CHECK(running(b, 2, 1, "v0002"));
  const uint8_t chunk[256] = {};
  CHECK(refused_untouched(b, TS_CMD_SLOT_WRITE, write_payload(0, chunk, 256), TS_ERR_SLOT_STATE));
  CHECK(ok_reply(b, TS_CMD_SLOT_CONFIRM, {}, &pl));
  // B runs: the install goes to A, and B's bytes are never touched.
  const Bytes b_before(b.nor.slot_mem(1), b.nor.slot_mem(1) + b.nor.slot_size());
  CHECK(install(b, encode_image(spec(4, 4, "v0004")), 768, &slot));
  CHECK_EQ(slot, 0);
  CHECK((Bytes(b.nor.slot_mem(1), b.nor.slot_mem(1) + b.nor.slot_size()) == b_before));
  CHECK(reboot(b));
  CHECK(running(b, 1, 1, "v0004"));
  CHECK(ok_reply(b, TS_CMD_SLOT_CONFIRM, {}, &pl));
  // A runs: the install goes to B.
  CHECK(install(b, encode_image(spec(5, 5, "v0005")), 768, &slot));
  CHECK_EQ(slot, 1);
  // A new BEGIN abandons an install in progress and starts over (same target, erased again).
  const Bytes img6 = encode_image(spec(6, 6, "v0006"));
  CHECK(ok_reply(b, TS_CMD_SLOT_BEGIN, begin_payload(img6), &pl));
  CHECK((pl.size() == 5 && pl[0] == 1));
  CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, write_payload(0, img6.data(), 768), &pl));
  const Bytes img7 = encode_image(spec(7, 7, "v0007"));
  CHECK(install(b, img7, 768, &slot));
  CHECK_EQ(slot, 1);
  CHECK(reboot(b));
  CHECK(running(b, 2, 1, "v0007"));
  CHECK(clean(b));
}

void test_health_check_at_trial(uint32_t unit) {
  struct Case {
    const char *name;
    uint8_t flags;
    bool bad_golden;
  };
  const Case cases[] = {{"self-test fails", 0, true},
                        {"model does not load", kFailLoad, false},
                        {"shape differs from the header", kWrongShape, false},
                        {"inference fails", kFailInfer, false}};
  for (const Case &c : cases) {
    // Over a confirmed A: B's trial fails at its boot; A runs at once, B is revoked.
    Board b(unit);
    CHECK(setup_a_confirmed(b));
    ImageSpec sp = spec(2, 2, "v0002");
    sp.flags = c.flags;
    sp.bad_golden = c.bad_golden;
    CHECK(install(b, encode_image(sp)));
    b.hw.loads.clear();
    CHECK(reboot(b));
    if (!running(b, 1, 0, "v0001")) fprintf(stderr, "  case: %s\n", c.name);
    CHECK(infers_as(b, 1, 4, 2));
    CHECK(self_test_passed(b));
    CHECK_EQ(flag_of(b.nor, 1, 1), TS_FLAG_SET);
    CHECK_EQ(flag_of(b.nor, 1, 3), TS_FLAG_SET);
    CHECK_EQ(b.hw.loads.size(), 2u);
    if (b.hw.loads.size() == 2) {
      CHECK(b.hw.loads[0].source == 2 && b.hw.loads[0].tried == TS_FLAG_SET);
      CHECK(b.hw.loads[1].source == 1 && b.hw.loads[1].ok);
    }
    const uint64_t ops = b.nor.ops;
    CHECK(reboot(b));
    CHECK_EQ(b.nor.ops, ops);
    CHECK(running(b, 1, 0, "v0001"));
    CHECK(clean(b));

    // Over the factory model alone: the factory model.
    Board f(unit);
    CHECK_EQ(f.boot(), TS_OK);
    CHECK(install(f, encode_image(sp)));
    CHECK(reboot(f));
    CHECK(running(f, 0, 0, "v0003"));
    CHECK(infers_as(f, 0, 4, 2));
    CHECK(self_test_passed(f));
    CHECK_EQ(flag_of(f.nor, 0, 3), TS_FLAG_SET);
    CHECK(clean(f));
  }
  // No golden vectors: nothing to fail, the trial runs.
  Board b(unit);
  CHECK_EQ(b.boot(), TS_OK);
  ImageSpec sp = spec(1, 1, "v0001");
  sp.n_golden = 0;
  CHECK(install(b, encode_image(sp)));
  CHECK(reboot(b));
  CHECK(running(b, 1, 1, "v0001"));
  ts_self_test_t st;
  CHECK(ts_core_get_self_test(b.core, &st) == TS_OK && st.status == TS_SELF_TEST_NOT_RUN);
  CHECK(clean(b));
}

// A confirmed slot whose model fails to load at one boot (AllocateTensors failed: a
// transient fault, or a glue problem fixed by the next firmware): the board runs the
// factory model for this boot, but the confirmed slot must survive. SLOTS.md, invariants:
// "`REVOKE` targets exactly the `FAILED` slots: a confirmed slot is never revoked or erased
// by the boot code, so the last confirmed slot survives"; PROTOCOL.md reverts only on "a
// failed health check at the trial boot". (The core does keep a confirmed slot whose
// self-test fails; only a failed load revokes it.)
void test_confirmed_slot_not_revoked_by_boot(uint32_t unit) {
  Board b(unit);
  CHECK(setup_a_confirmed(b));
  b.hw.fail_slot_loads = true;
  const uint64_t ops = b.nor.ops;
  CHECK_EQ(b.boot(), TS_OK);
  CHECK(running(b, 0, 0, "v0003"));
  CHECK_EQ(flag_of(b.nor, 0, 3), TS_FLAG_UNSET);  // the confirmed slot is kept
  CHECK_EQ(b.nor.ops, ops);                       // the boot code wrote nothing
  b.hw.fail_slot_loads = false;
  CHECK_EQ(b.boot(), TS_OK);
  CHECK(running(b, 1, 0, "v0001"));
  // For comparison: a confirmed slot whose self-test fails keeps running, confirmed.
  Board c(unit);
  CHECK(setup_a_confirmed(c));
  c.hw.fail_infer = true;
  CHECK_EQ(c.boot(), TS_OK);
  CHECK_EQ(c.running_source(), 1u);
  CHECK_EQ(flag_of(c.nor, 0, 3), TS_FLAG_UNSET);
  c.hw.fail_infer = false;
  CHECK(clean(b) && clean(c));
}

void test_factory_when_slots_invalid(uint32_t unit) {
  Board b(unit);
  CHECK_EQ(b.boot(), TS_OK);
  const Bytes img1 = encode_image(spec(1, 1, "v0001"));
  CHECK(install(b, img1));  // A pending
  // Damage A's model (a bit cleared in flash): its CRC fails, it is never booted.
  const uint32_t at = get16(&img1[6]) + 100u;
  b.nor.poke(0, at, static_cast<uint8_t>(b.nor.slot_mem(0)[at] ^ 0x01));
  // B: an install abandoned halfway (header and a chunk, no commit marker).
  const Bytes img2 = encode_image(spec(2, 2, "v0002"));
  Bytes pl;
  CHECK(ok_reply(b, TS_CMD_SLOT_BEGIN, begin_payload(img2), &pl));
  CHECK((pl.size() == 5 && pl[0] == 1));
  CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, write_payload(0, img2.data(), 768), &pl));
  const uint64_t ops = b.nor.ops;
  CHECK(reboot(b));
  CHECK_EQ(b.nor.ops, ops);  // nothing to revoke: invalid slots get no writes
  CHECK(running(b, 0, 0, "v0003"));
  CHECK(infers_as(b, 0, 4, 2));
  CHECK(self_test_passed(b));
  const Tlvs t = hello(b);
  CHECK((t.v[TS_TLV_RUNNING] == Bytes{0, 0}));
  CHECK((t.v[TS_TLV_DEVICE_ID] == Bytes(kDeviceId, kDeviceId + 8)));
  CHECK_EQ(get32(t.v[TS_TLV_SLOT_CAPACITY].data()), 3u * 4096u);
  SlotInfo s = slot_info(b);
  CHECK(s.ok);
  CHECK(s.rec[0].state == TS_SLOT_INVALID && s.rec[0].commit == 1 && s.rec[0].crc_ok == 0 &&
        s.rec[0].status == 0 && s.rec[0].seq == 1);
  CHECK(s.rec[1].state == TS_SLOT_INVALID && s.rec[1].commit == 0 && s.rec[1].status == 0 &&
        s.rec[1].seq == 2);
  CHECK(record_consistent(s.rec[0]) && record_consistent(s.rec[1]));

  // A damaged header: header status is the parser's, fields 8..67 zero.
  b.nor.poke(0, 60, static_cast<uint8_t>(b.nor.slot_mem(0)[60] ^ 0x10));
  s = slot_info(b);
  CHECK(s.ok && s.rec[0].status == TS_IMG_ERR_HEADER_CRC && s.rec[0].state == TS_SLOT_INVALID);
  CHECK(record_consistent(s.rec[0]));
  CHECK(b.boot() == TS_OK);
  CHECK(running(b, 0, 0, "v0003"));

  // A slot that cannot be mapped is never booted (and reported as all zero).
  Board m(unit);
  CHECK(setup_a_confirmed(m));
  m.nor.map_null[0] = true;
  CHECK(m.boot() == TS_OK);
  CHECK(running(m, 0, 0, "v0003"));
  s = slot_info(m);
  CHECK(s.ok && s.rec[0].state == 0 && s.rec[0].commit == 0 && s.rec[0].seq == 0);
  m.nor.map_null[0] = false;
  CHECK(m.boot() == TS_OK);
  CHECK(running(m, 1, 0, "v0001"));
  CHECK(clean(m));

  // A firmware whose arena shrank below a confirmed slot's need: the slot is not booted
  // (nor revoked); the old firmware would run it again.
  Board r(unit);
  CHECK_EQ(r.boot(), TS_OK);
  ImageSpec big = spec(1, 1, "v0001");
  big.arena = 4000;
  CHECK(install(r, encode_image(big)));
  CHECK(reboot(r));
  CHECK(ok_reply(r, TS_CMD_SLOT_CONFIRM, {}, &pl));
  r.cfg.arena_size = 3000;
  const uint64_t ops2 = r.nor.ops;
  CHECK(r.boot() == TS_OK);
  CHECK(running(r, 0, 0, "v0003"));
  CHECK_EQ(r.nor.ops, ops2);
  r.cfg.arena_size = kArena;
  CHECK(r.boot() == TS_OK);
  CHECK(running(r, 1, 0, "v0001"));
  CHECK(clean(b) && clean(r));
}

void test_begin_refusals(uint32_t unit) {
  Board b(unit);
  CHECK(setup_a_confirmed(b));
  Bytes pl;
  const ImageSpec base = spec(5, 5, "v0005");
  const Bytes good = encode_image(base);
  const Bytes gh = header_of(good);
  auto refused = [&](const Bytes &payload, ts_status_t code) {
    return refused_untouched(b, TS_CMD_SLOT_BEGIN, payload, code);
  };
  auto with = [&](void (*edit)(ImageSpec &)) {
    ImageSpec s = base;
    edit(s);
    return header_of(encode_image(s));
  };

  // TS_ERR_SLOT_HEADER: not exactly one well-formed header with a good CRC.
  CHECK(refused({}, TS_ERR_SLOT_HEADER));
  CHECK(refused(Bytes(gh.begin(), gh.begin() + 143), TS_ERR_SLOT_HEADER));
  CHECK(refused(Bytes(gh.begin(), gh.end() - 16), TS_ERR_SLOT_HEADER));
  Bytes h = gh;
  h.insert(h.end(), 16, 0);  // a header and 16 more bytes
  CHECK(refused(h, TS_ERR_SLOT_HEADER));
  h = gh;
  h.push_back(0);
  CHECK(refused(h, TS_ERR_SLOT_HEADER));
  {
    ImageSpec s = base;
    s.body_len = 100;  // header + model in one payload: still not just the header
    const Bytes whole = encode_image(s);
    CHECK(whole.size() <= TS_MAX_PAYLOAD);
    CHECK(refused(whole, TS_ERR_SLOT_HEADER));
  }
  h = gh;
  h[0] = 'X';
  fix_crc(h);
  CHECK(refused(h, TS_ERR_SLOT_HEADER));  // magic
  h = gh;
  put16(&h[4], 2);
  fix_crc(h);
  CHECK(refused(h, TS_ERR_SLOT_HEADER));  // format version
  h = gh;
  h[70] ^= 1;
  CHECK(refused(h, TS_ERR_SLOT_HEADER));  // header CRC
  h = gh;
  put32(&h[12], 0);
  fix_crc(h);
  CHECK(refused(h, TS_ERR_SLOT_HEADER));  // model length 0
  h = gh;
  put16(&h[130], 5);  // 144 + 6 + 5 * 6 = 180 -> 192, not 176
  fix_crc(h);
  CHECK(refused(h, TS_ERR_SLOT_HEADER));  // header length not what the counts need
  h = gh;
  put16(&h[130], 3);  // 168 -> 176: the same length, so only the golden bytes move
  fix_crc(h);
  CHECK(ok_reply(b, TS_CMD_SLOT_BEGIN, h, &pl));  // well-formed (and harmless: abandoned)
  h = gh;
  putf(&h[136], 0.0f);
  fix_crc(h);
  CHECK(refused(h, TS_ERR_SLOT_HEADER));  // target scale 0
  h = gh;
  h[52 + 6] = 'x';  // a byte after the version's NUL
  fix_crc(h);
  CHECK(refused(h, TS_ERR_SLOT_HEADER));
  CHECK(refused(Bytes(1024, 0xFF), TS_ERR_SLOT_HEADER));  // erased flash, 1024 bytes

  // Each compatibility refusal, with its own code.
  CHECK(refused(with([](ImageSpec &s) { s.profile = "tflm-arduino-2024"; }), TS_ERR_SLOT_PROFILE));
  CHECK(refused(with([](ImageSpec &s) { s.profile = "tflm-arduino-202"; }), TS_ERR_SLOT_PROFILE));
  CHECK(refused(with([](ImageSpec &s) { s.profile = ""; }), TS_ERR_SLOT_PROFILE));
  CHECK(refused(with([](ImageSpec &s) { s.ops = {3, 17}; }), TS_ERR_SLOT_OP));
  CHECK(refused(with([](ImageSpec &s) { s.ops = {0xFFFF}; }), TS_ERR_SLOT_OP));
  CHECK(refused(with([](ImageSpec &s) { s.arena = kArena + 1; }), TS_ERR_SLOT_ARENA));
  CHECK(refused(with([](ImageSpec &s) { s.arena = 0xFFFFFFFFu; }), TS_ERR_SLOT_ARENA));
  CHECK(refused(with([](ImageSpec &s) { s.in = TS_MAX_INPUT_BYTES + 1; s.n_golden = 0; }), TS_ERR_SLOT_SHAPE));
  CHECK(refused(with([](ImageSpec &s) { s.out = TS_MAX_PAYLOAD - 5; s.n_golden = 0; }), TS_ERR_SLOT_SHAPE));
  CHECK(refused(with([](ImageSpec &s) { s.body_len = 3 * 4096 - 176 + 1; }), TS_ERR_SLOT_SIZE));
  {
    Bytes big = gh;
    put32(&big[12], 0xFFFFFFF0u);  // a length near 2^32 (no wrap)
    fix_crc(big);
    CHECK(refused(big, TS_ERR_SLOT_SIZE));
  }
  // Checked in the documented order: the first refusal wins.
  CHECK(refused(with([](ImageSpec &s) { s.profile = "x"; s.ops = {17}; s.arena = 1u << 30; }), TS_ERR_SLOT_PROFILE));
  CHECK(refused(with([](ImageSpec &s) { s.ops = {17}; s.arena = 1u << 30; }), TS_ERR_SLOT_OP));
  CHECK(refused(with([](ImageSpec &s) { s.arena = 1u << 30; s.in = 2000; s.n_golden = 0; }), TS_ERR_SLOT_ARENA));
  CHECK(refused(with([](ImageSpec &s) { s.in = 2000; s.n_golden = 0; s.body_len = 20000; }), TS_ERR_SLOT_SHAPE));
  CHECK(refused(with([](ImageSpec &s) { s.body_len = 20000; s.seq = 1; }), TS_ERR_SLOT_SIZE));

  // TS_ERR_SLOT_SEQUENCE: not larger than every committed slot's (A: 1).
  CHECK(refused(with([](ImageSpec &s) { s.seq = 1; }), TS_ERR_SLOT_SEQUENCE));
  CHECK(refused(with([](ImageSpec &s) { s.seq = 0; }), TS_ERR_SLOT_SEQUENCE));
  // An uncommitted slot's sequence does not count: abandon an install of seq 9 ...
  CHECK(ok_reply(b, TS_CMD_SLOT_BEGIN, with([](ImageSpec &s) { s.seq = 9; }), &pl));
  const Bytes img9 = encode_image([&] { ImageSpec s = base; s.seq = 9; return s; }());
  CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, write_payload(0, img9.data(), 768), &pl));
  // ... then seq 2 is accepted (and replaces it).
  CHECK(install(b, encode_image([&] { ImageSpec s = base; s.seq = 2; return s; }())));
  CHECK(refused(with([](ImageSpec &s) { s.seq = 2; }), TS_ERR_SLOT_SEQUENCE));  // B: 2
  CHECK(refused(with([](ImageSpec &s) { s.seq = 1; }), TS_ERR_SLOT_SEQUENCE));

  // TS_ERR_SLOT_STATE: a trial runs (B, seq 2). After SIZE, before SEQUENCE.
  CHECK(reboot(b));
  CHECK(running(b, 2, 1, "v0005"));
  CHECK(refused(with([](ImageSpec &s) { s.seq = 3; }), TS_ERR_SLOT_STATE));
  CHECK(refused(with([](ImageSpec &s) { s.seq = 1; }), TS_ERR_SLOT_STATE));
  CHECK(refused(with([](ImageSpec &s) { s.body_len = 20000; s.seq = 3; }), TS_ERR_SLOT_SIZE));
  CHECK(ok_reply(b, TS_CMD_SLOT_CONFIRM, {}, &pl));

  // Boundaries that are accepted: arena = the firmware's, image = the slot's capacity,
  // input = TS_MAX_INPUT_BYTES, output = TS_MAX_PAYLOAD - 6.
  CHECK(ok_reply(b, TS_CMD_SLOT_BEGIN, with([](ImageSpec &s) { s.seq = 10; s.arena = kArena; }), &pl));
  {
    ImageSpec s = base;
    s.seq = 11;
    s.body_len = 3 * 4096 - 176;
    const Bytes full = encode_image(s);
    CHECK_EQ(full.size(), 3u * 4096u);
    int slot = -1;
    CHECK(install(b, full, 768, &slot));
    CHECK_EQ(slot, 0);
    CHECK(reboot(b));
    CHECK(running(b, 1, 1, "v0005"));
    CHECK(ok_reply(b, TS_CMD_SLOT_CONFIRM, {}, &pl));
  }
  CHECK(ok_reply(b, TS_CMD_SLOT_BEGIN, with([](ImageSpec &s) { s.seq = 12; s.in = TS_MAX_INPUT_BYTES; s.n_golden = 0; }), &pl));
  CHECK(ok_reply(b, TS_CMD_SLOT_BEGIN, with([](ImageSpec &s) { s.seq = 12; s.out = TS_MAX_PAYLOAD - 6; s.n_golden = 0; }), &pl));
  CHECK(clean(b));
}

void test_write_and_end_refusals(uint32_t unit) {
  Board b(unit);
  CHECK(setup_a_confirmed(b));
  ImageSpec sp = spec(2, 2, "v0002");
  sp.body_len = 2000;
  const Bytes img = encode_image(sp);
  const uint32_t len = static_cast<uint32_t>(img.size());  // 2176
  Bytes pl;
  CHECK(ok_reply(b, TS_CMD_SLOT_BEGIN, begin_payload(img), &pl));
  Bytes padded = img;  // the image, then bytes past its end for the refused chunks
  padded.resize(4096, 0x5A);
  auto w = [&](uint32_t off, size_t n) { return write_payload(off, &padded[off], n); };
  auto refused = [&](const Bytes &payload, ts_status_t code) {
    return refused_untouched(b, TS_CMD_SLOT_WRITE, payload, code);
  };
  // TS_ERR_BAD_PAYLOAD: under 5 bytes, over 768 data bytes, offset not a multiple of
  // 256, a length not a multiple of 256 that does not end the image.
  CHECK(refused({}, TS_ERR_BAD_PAYLOAD));
  CHECK(refused({0}, TS_ERR_BAD_PAYLOAD));
  CHECK(refused({0, 0, 0, 0}, TS_ERR_BAD_PAYLOAD));
  CHECK(refused(w(0, 769), TS_ERR_BAD_PAYLOAD));
  CHECK(refused(w(0, 1020), TS_ERR_BAD_PAYLOAD));
  CHECK(refused(w(128, 256), TS_ERR_BAD_PAYLOAD));
  CHECK(refused(w(1, 256), TS_ERR_BAD_PAYLOAD));
  CHECK(refused(w(0, 100), TS_ERR_BAD_PAYLOAD));
  CHECK(refused(w(0, 257), TS_ERR_BAD_PAYLOAD));
  // TS_ERR_SLOT_RANGE: past the image length.
  CHECK(refused(w(2048, 256), TS_ERR_SLOT_RANGE));  // 2048 + 256 > 2176
  CHECK(refused(write_payload(4096, img.data(), 256), TS_ERR_SLOT_RANGE));
  CHECK(refused(write_payload(0xFFFFFF00u, img.data(), 256), TS_ERR_SLOT_RANGE));
  // TS_ERR_SLOT_ORDER: beyond next.
  CHECK(refused(w(256, 256), TS_ERR_SLOT_ORDER));
  CHECK(refused(w(2048, len - 2048), TS_ERR_SLOT_ORDER));  // the image's end, out of order
  // END before all bytes.
  CHECK(refused_untouched(b, TS_CMD_SLOT_END, {}, TS_ERR_SLOT_ORDER));

  // In order, with a retried frame in between.
  CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, w(0, 768), &pl));
  CHECK(get32(pl.data()) == 768u);
  uint64_t ops = b.nor.ops;
  CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, w(0, 768), &pl));  // the same frame again
  CHECK(get32(pl.data()) == 768u);
  CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, w(256, 256), &pl));  // a part of it, below next
  CHECK(get32(pl.data()) == 768u);
  CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, w(512, 256), &pl));
  CHECK_EQ(b.nor.ops, ops);  // answered without writing
  // Below next with other bytes; straddling next.
  Bytes other = w(0, 256);
  other[4 + 10] ^= 0x55;
  CHECK(refused(other, TS_ERR_SLOT_ORDER));
  CHECK(refused(w(512, 512), TS_ERR_SLOT_ORDER));
  CHECK(refused(w(1536, 256), TS_ERR_SLOT_ORDER));
  CHECK(refused_untouched(b, TS_CMD_SLOT_END, {}, TS_ERR_SLOT_ORDER));
  SlotInfo s = slot_info(b);
  CHECK(s.ok && s.installing == 1 && s.inst_slot == 1 && s.inst_len == len && s.inst_next == 768);
  CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, w(768, 768), &pl));
  CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, w(1536, 512), &pl));
  CHECK(get32(pl.data()) == 2048u);
  // The image's last chunk, not a whole number of program units on every board.
  CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, w(2048, len - 2048), &pl));
  CHECK(get32(pl.data()) == len);
  ops = b.nor.ops;
  CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, w(2048, len - 2048), &pl));  // retried
  CHECK(get32(pl.data()) == len);
  CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, w(1536, 640), &pl));  // below next, ends the image
  CHECK_EQ(b.nor.ops, ops);
  CHECK(refused(w(2048, 256), TS_ERR_SLOT_RANGE));
  CHECK(refused(w(2304, 256), TS_ERR_SLOT_RANGE));
  // Bytes after the image in its last program unit stay erased.
  CHECK(memcmp(b.nor.slot_mem(1), img.data(), len) == 0);
  for (uint32_t i = len; i < 3u * 4096u; i++) {
    if (b.nor.slot_mem(1)[i] != 0xFF) {
      CHECK(false);
      break;
    }
  }
  CHECK(ok_reply(b, TS_CMD_SLOT_END, {}, &pl));
  CHECK((pl.size() == 5 && pl[0] == 1 && get32(&pl[1]) == 2));
  // After END: no install.
  CHECK(refused(w(0, 768), TS_ERR_SLOT_STATE));
  CHECK(refused_untouched(b, TS_CMD_SLOT_END, {}, TS_ERR_SLOT_STATE));
  CHECK(reboot(b));
  CHECK(running(b, 2, 1, "v0002"));
  CHECK(clean(b));

  // Chunks of 256 and 512 are fine too.
  for (uint32_t chunk : {256u, 512u}) {
    Board c(unit);
    CHECK(c.boot() == TS_OK);
    CHECK(install(c, img, chunk));
  }
}

void test_verify_failures(uint32_t unit) {
  ImageSpec sp = spec(2, 2, "v0002");
  sp.body_len = 2000;
  const Bytes img = encode_image(sp);
  const uint32_t len = static_cast<uint32_t>(img.size());
  const uint32_t hlen = get16(&img[6]);
  enum { kBody, kHeader, kOtherHeader, kGarbage };
  for (int kind = kBody; kind <= kGarbage; kind++) {
    Board b(unit);
    CHECK(setup_a_confirmed(b));
    Bytes pl;
    CHECK(ok_reply(b, TS_CMD_SLOT_BEGIN, begin_payload(img), &pl));
    Bytes data = img;
    if (kind == kOtherHeader) {  // a different valid header of the same length
      ImageSpec o = sp;
      o.seq = 3;
      const Bytes oh = header_of(encode_image(o));
      std::copy(oh.begin(), oh.end(), data.begin());
    } else if (kind == kGarbage) {
      for (uint32_t i = 768; i < 1536; i++) data[i] = static_cast<uint8_t>(i * 7);
    }
    for (uint32_t off = 0; off < len; off += 768) {
      const uint32_t n = len - off < 768 ? len - off : 768;
      CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, write_payload(off, &data[off], n), &pl));
    }
    if (kind == kBody) {  // damage after programming: a bit cleared
      const uint8_t v = b.nor.slot_mem(1)[hlen + 1000];
      b.nor.poke(1, hlen + 1000, static_cast<uint8_t>(v == 0 ? 1 : v & (v - 1)));
    } else if (kind == kHeader) {
      const uint8_t v = b.nor.slot_mem(1)[100];
      b.nor.poke(1, 100, static_cast<uint8_t>(v ^ 0x04));
    }
    CHECK(refused_untouched(b, TS_CMD_SLOT_END, {}, TS_ERR_SLOT_VERIFY));
    CHECK_EQ(flag_of(b.nor, 1, 0), TS_FLAG_UNSET);  // never committed
    SlotInfo s = slot_info(b);
    CHECK(s.ok && s.installing == 0 && s.inst_slot == 0xFF && s.rec[1].commit == 0);
    CHECK(s.rec[1].state == TS_SLOT_INVALID);
    CHECK(refused_untouched(b, TS_CMD_SLOT_END, {}, TS_ERR_SLOT_STATE));  // the install ended
    CHECK(refused_untouched(b, TS_CMD_SLOT_WRITE, write_payload(0, img.data(), 256), TS_ERR_SLOT_STATE));
    const uint64_t ops = b.nor.ops;
    CHECK(reboot(b));
    CHECK_EQ(b.nor.ops, ops);
    CHECK(running(b, 1, 0, "v0001"));
    // Starting over works.
    CHECK(install(b, img));
    CHECK(reboot(b));
    CHECK(running(b, 2, 1, "v0002"));
    CHECK(clean(b));
  }
}

// fail_op: one erase/program fails (and nothing of it happens).
void test_flash_failures(uint32_t unit) {
  const Bytes img = encode_image(spec(2, 2, "v0002"));
  Bytes pl;
  {  // BEGIN: the trailer erase, then an image sector erase
    for (uint64_t n = 1; n <= 2; n++) {
      Board b(unit);
      CHECK(setup_a_confirmed(b));
      b.nor.fail_in(n);
      CHECK(err_reply(b, TS_CMD_SLOT_BEGIN, begin_payload(img), TS_ERR_FLASH));
      const SlotInfo s = slot_info(b);
      CHECK(s.ok && s.installing == 0);
      CHECK(err_reply(b, TS_CMD_SLOT_WRITE, write_payload(0, img.data(), 768), TS_ERR_SLOT_STATE));
      CHECK(install(b, img));  // the host starts over
      CHECK(clean(b));
    }
  }
  {  // WRITE: a failed program ends the install
    Board b(unit);
    CHECK(setup_a_confirmed(b));
    CHECK(ok_reply(b, TS_CMD_SLOT_BEGIN, begin_payload(img), &pl));
    CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, write_payload(0, img.data(), 768), &pl));
    b.nor.fail_in(1);
    CHECK(err_reply(b, TS_CMD_SLOT_WRITE, write_payload(768, &img[768], 768), TS_ERR_FLASH));
    const SlotInfo s = slot_info(b);
    CHECK(s.ok && s.installing == 0);
    CHECK(err_reply(b, TS_CMD_SLOT_WRITE, write_payload(768, &img[768], 768), TS_ERR_SLOT_STATE));
    CHECK(err_reply(b, TS_CMD_SLOT_END, {}, TS_ERR_SLOT_STATE));
    CHECK(install(b, img));
    CHECK(clean(b));
  }
  {  // END: the commit marker fails; the slot stays uncommitted
    Board b(unit);
    CHECK(setup_a_confirmed(b));
    CHECK(ok_reply(b, TS_CMD_SLOT_BEGIN, begin_payload(img), &pl));
    for (uint32_t off = 0; off < img.size(); off += 768) {
      const size_t n = img.size() - off < 768 ? img.size() - off : 768;
      CHECK(ok_reply(b, TS_CMD_SLOT_WRITE, write_payload(off, &img[off], n), &pl));
    }
    b.nor.fail_in(1);
    CHECK(err_reply(b, TS_CMD_SLOT_END, {}, TS_ERR_FLASH));
    CHECK_EQ(flag_of(b.nor, 1, 0), TS_FLAG_UNSET);
    CHECK(reboot(b));
    CHECK(running(b, 1, 0, "v0001"));
    CHECK(clean(b));
  }
  {  // CONFIRM fails: still a trial; a reset reverts
    Board b(unit);
    CHECK(setup_a_confirmed(b));
    CHECK(install(b, img));
    CHECK(reboot(b));
    b.nor.fail_in(1);
    CHECK(err_reply(b, TS_CMD_SLOT_CONFIRM, {}, TS_ERR_FLASH));
    CHECK(running(b, 2, 1, "v0002"));
    CHECK(b.boot() == TS_OK);
    CHECK(running(b, 1, 0, "v0001"));
    CHECK(clean(b));
  }
  {  // REVERT fails: answered with the error, no reset
    Board b(unit);
    CHECK(setup_a_confirmed(b));
    CHECK(install(b, img));
    CHECK(reboot(b));
    const uint32_t resets = b.hw.resets;
    b.nor.fail_in(1);
    CHECK(err_reply(b, TS_CMD_SLOT_REVERT, {}, TS_ERR_FLASH));
    CHECK_EQ(b.hw.resets, resets);
    CHECK(running(b, 2, 1, "v0002"));
    CHECK(ok_reply(b, TS_CMD_SLOT_REVERT, {}, &pl));  // again: it works
    CHECK((pl == Bytes{2, 1}));
    CHECK(b.boot() == TS_OK);
    CHECK(running(b, 1, 0, "v0001"));
    CHECK(clean(b));
  }
  {  // the trial boot cannot write `tried`: the trial does not run
    Board b(unit);
    CHECK(setup_a_confirmed(b));
    CHECK(install(b, img));
    b.nor.fail_in(1);
    b.hw.loads.clear();
    CHECK(reboot(b));
    CHECK(running(b, 1, 0, "v0001"));
    for (const LoadEvent &e : b.hw.loads) CHECK(e.source != 2);
    CHECK(b.boot() == TS_OK);
    CHECK(running(b, 1, 0, "v0001"));
    CHECK(clean(b));
  }
}

// A board whose glue cannot reset (platform.reset NULL): REBOOT is an unknown command,
// SLOT_REVERT still revokes and says it does not reboot (rebooting = 0).
void test_board_without_reset(uint32_t unit) {
  Board b(unit);
  b.plat.reset = nullptr;
  CHECK(b.boot() == TS_OK);
  CHECK(install(b, encode_image(spec(1, 1, "v0001"))));
  CHECK(refused_untouched(b, TS_CMD_REBOOT, {}, TS_ERR_UNKNOWN_COMMAND));
  CHECK(b.boot() == TS_OK);  // a power cycle
  CHECK(running(b, 1, 1, "v0001"));
  Bytes pl;
  CHECK(ok_reply(b, TS_CMD_SLOT_REVERT, {}, &pl));
  CHECK((pl == Bytes{1, 0}));
  CHECK_EQ(flag_of(b.nor, 0, 3), TS_FLAG_SET);
  CHECK(b.boot() == TS_OK);
  CHECK(running(b, 0, 0, "v0003"));
  CHECK(clean(b));
}

// PROTOCOL.md section 9: "A reset before SLOT_CONFIRM ... or a failed health check at the
// trial boot ... reverts: the board runs the previous confirmed slot, else the factory
// model", and SLOT_REVERT: "the board then runs the previous confirmed slot, else the
// factory model" (issue 11 says the same). Two installs without a reboot in between leave
// an older, never-run model *pending* in the other slot (SLOT_BEGIN keeps a pending slot);
// after the newer trial is reverted that model must not start a trial of its own.
void test_revert_never_runs_stale_pending(uint32_t unit) {
  for (int how = 0; how < 3; how++) {  // SLOT_REVERT of the trial, a reset, a failed self-test
    Board b(unit);
    CHECK(b.boot() == TS_OK);
    CHECK(install(b, encode_image(spec(1, 1, "v0001"))));  // A: pending, never run
    ImageSpec newer = spec(2, 2, "v0002");
    newer.bad_golden = how == 2;
    CHECK(install(b, encode_image(newer)));                 // B: pending, newer
    CHECK(reboot(b));
    if (how == 0) {
      CHECK(running(b, 2, 1, "v0002"));
      Bytes pl;
      CHECK(ok_reply(b, TS_CMD_SLOT_REVERT, {}, &pl));
      CHECK(b.boot() == TS_OK);
    } else if (how == 1) {
      CHECK(running(b, 2, 1, "v0002"));
      CHECK(b.boot() == TS_OK);
    }
    if (!running(b, 0, 0, "v0003")) {
      fprintf(stderr, "  (%s of the trial of B ran the never-confirmed A)\n",
              how == 0 ? "SLOT_REVERT" : how == 1 ? "a reset" : "a failed self-test");
      CHECK(false);
    }
    CHECK(clean(b));
  }
  // The same for SLOT_REVERT of a *confirmed* slot with a stale pending one beside it.
  Board b(unit);
  CHECK(b.boot() == TS_OK);
  CHECK(install(b, encode_image(spec(1, 1, "v0001"))));
  CHECK(install(b, encode_image(spec(2, 2, "v0002"))));
  CHECK(reboot(b));
  Bytes pl;
  CHECK(ok_reply(b, TS_CMD_SLOT_CONFIRM, {}, &pl));
  CHECK(reboot(b));
  CHECK(running(b, 2, 0, "v0002"));
  CHECK(ok_reply(b, TS_CMD_SLOT_REVERT, {}, &pl));
  CHECK(b.boot() == TS_OK);
  if (!running(b, 0, 0, "v0003")) {
    fprintf(stderr, "  (SLOT_REVERT of the confirmed B ran the never-confirmed A)\n");
    CHECK(false);
  }
  CHECK(clean(b));
}

// --------------------------------------------------------- power cuts --

// After a power cut and power-on: the board boots, runs a model whose CRC and self-test
// pass, that is `old_v` or `new_v` (never a mix: INFO's version is the one in the running
// slot's header, INFER answers as that model), and INFO says which.
bool booted_sane(Board &b, const std::string &old_v, uint8_t old_key, const std::string &new_v,
                 uint8_t new_key, std::string *which) {
  if (b.boot() != TS_OK || !self_test_passed(b)) return false;
  const Tlvs t = hello(b);
  const std::string v = str(t.v[TS_TLV_MODEL_VERSION]);
  if (t.v[TS_TLV_MODEL_CRC_OK] != Bytes{TS_CRC_OK} || t.v[TS_TLV_RUNNING].size() != 2) return false;
  const uint32_t src = t.v[TS_TLV_RUNNING][0];
  if (src != b.running_source()) return false;
  if (src != 0) {
    const uint8_t *m = b.nor.slot_mem(src - 1);
    ts_slot_header_t h;
    if (ts_slot_image_parse(m, 3u * 4096u, &h) != TS_IMG_OK || ts_slot_image_verify_body(&h) != TS_IMG_OK ||
        v != h.model_version || flag_of(b.nor, src - 1, 0) != TS_FLAG_SET) {
      return false;
    }
  }
  *which = v;
  if (v == old_v) return infers_as(b, old_key, 4, 2);
  if (v == new_v) return infers_as(b, new_key, 4, 2);
  return false;
}

// Highest sequence number in SLOT_INFO (a host's max + 1 rule).
uint32_t max_seq(Board &b) {
  const SlotInfo s = slot_info(b);
  return s.rec[0].seq > s.rec[1].seq ? s.rec[0].seq : s.rec[1].seq;
}

bool cut(Board &b) { return b.nor.powered_off(); }

// Install v2 over a confirmed v1 (B holding a revoked older model), reboot into the trial,
// confirm: cut before (or tearing) operation k of it. Returns the number of operations
// the whole sequence takes when nothing is cut (k = 0).
uint64_t sweep_install_once(uint32_t unit, uint64_t k, bool torn, uint64_t seed, uint32_t *old_runs) {
  Board b(unit);
  b.nor.keep_log = false;
  CHECK(setup_a_confirmed(b));
  // B: a model whose trial was reset (revoked, committed, seq 2): the install erases it.
  CHECK(install(b, encode_image(spec(2, 9, "v0009"))));
  CHECK(reboot(b));
  CHECK(b.boot() == TS_OK);
  CHECK(running(b, 1, 0, "v0001"));
  const Bytes img = encode_image(spec(3, 2, "v0002"));
  const uint64_t start = b.nor.ops;
  if (k != 0) {
    b.nor.cut_in(k, torn);
    b.nor.torn_seed = seed;
  }
  Bytes pl;
  // The script, stopped by the first failure (a dead board answers nothing useful).
  g_expect_failures = k != 0;
  bool ok = ok_reply(b, TS_CMD_SLOT_BEGIN, begin_payload(img), &pl);
  for (uint32_t off = 0; ok && !cut(b) && off < img.size(); off += 768) {
    const size_t n = img.size() - off < 768 ? img.size() - off : 768;
    ok = ok_reply(b, TS_CMD_SLOT_WRITE, write_payload(off, &img[off], n), &pl);
  }
  ok = ok && !cut(b) && ok_reply(b, TS_CMD_SLOT_END, {}, &pl);
  ok = ok && !cut(b) && reboot(b);
  ok = ok && !cut(b) && ok_reply(b, TS_CMD_SLOT_CONFIRM, {}, &pl);
  g_expect_failures = false;
  const uint64_t total = b.nor.ops - start;
  if (k == 0) {
    CHECK(ok && running(b, 2, 0, "v0002"));
    return total;
  }
  CHECK(cut(b));
  g_cuts++;
  b.nor.power_on();
  std::string which;
  const bool sane = booted_sane(b, "v0001", 1, "v0002", 2, &which);
  CHECK(sane);
  if (!sane) fprintf(stderr, "  install sweep: unit %u, cut at %llu%s\n", unit,
                     static_cast<unsigned long long>(k), torn ? " (torn)" : "");
  if (which == "v0001") {
    (*old_runs)++;
    CHECK(b.running_source() == 1 && b.running_mode() == 0);
  }
  // The repeated operation completes.
  if (which == "v0001") {
    ImageSpec again = spec(max_seq(b) + 1, 2, "v0002");
    CHECK(install(b, encode_image(again)));
    CHECK(reboot(b));
  }
  if (b.running_mode() == TS_RUNNING_TRIAL) CHECK(ok_reply(b, TS_CMD_SLOT_CONFIRM, {}, &pl));
  CHECK(reboot(b));
  CHECK(running(b, b.running_source(), 0, "v0002") && b.running_source() != 0);
  CHECK(infers_as(b, 2, 4, 2));
  CHECK(clean(b));
  return total;
}

// A trial v2 (B) over a confirmed v1 (A), then one of: SLOT_REVERT and the reset; SLOT_CONFIRM
// then REBOOT; a reset before confirmation (the boot revokes B); or a trial boot whose
// self-test fails (the boot writes `tried`, then revokes B). Cut at operation k. After
// power-on v1 runs, or v2 once `confirmed` was written whole; a cut confirm is repeated.
enum TrialOp { kRevert, kConfirm, kResetTrial, kBadTrialBoot };

uint64_t sweep_trial_once(uint32_t unit, TrialOp op, uint64_t k, bool torn, uint64_t seed) {
  Board b(unit);
  b.nor.keep_log = false;
  CHECK(setup_a_confirmed(b));
  ImageSpec sp = spec(2, 2, "v0002");
  sp.bad_golden = op == kBadTrialBoot;
  CHECK(install(b, encode_image(sp)));
  if (op != kBadTrialBoot) {
    CHECK(reboot(b));
    CHECK(running(b, 2, 1, "v0002"));
  }
  const uint64_t start = b.nor.ops;
  if (k != 0) {
    b.nor.cut_in(k, torn);
    b.nor.torn_seed = seed;
  }
  Bytes pl;
  g_expect_failures = k != 0;
  bool ok = true;
  if (op == kRevert) ok = ok_reply(b, TS_CMD_SLOT_REVERT, {}, &pl);
  if (op == kConfirm) ok = ok_reply(b, TS_CMD_SLOT_CONFIRM, {}, &pl);
  ok = ok && !cut(b) && (op == kConfirm ? reboot(b) : b.boot() == TS_OK);
  g_expect_failures = false;
  const uint64_t total = b.nor.ops - start;
  const bool new_wins = op == kConfirm;
  if (k == 0) {
    CHECK(ok);
    CHECK(new_wins ? running(b, 2, 0, "v0002") : running(b, 1, 0, "v0001"));
    return total;
  }
  CHECK(cut(b));
  g_cuts++;
  b.nor.power_on();
  std::string which;
  CHECK(booted_sane(b, "v0001", 1, "v0002", 2, &which));
  if (!new_wins) {
    CHECK(which == "v0001");
  } else if (which == "v0001") {  // the confirm was cut: repeat the update
    CHECK(install(b, encode_image(spec(max_seq(b) + 1, 2, "v0002"))));
    CHECK(reboot(b));
    CHECK(ok_reply(b, TS_CMD_SLOT_CONFIRM, {}, &pl));
  }
  CHECK(b.running_mode() == TS_RUNNING_CONFIRMED);
  CHECK(reboot(b));
  CHECK(running(b, b.running_source(), 0, new_wins ? "v0002" : "v0001"));
  CHECK(clean(b));
  return total;
}

void test_power_cut_sweep() {
  for (uint32_t unit : kUnits) {
    uint32_t old_runs = 0;
    const uint64_t n = sweep_install_once(unit, 0, false, 0, &old_runs);
    CHECK(n >= 6);
    for (uint64_t k = 1; k <= n; k++) {
      for (int torn = 0; torn < 2; torn++) sweep_install_once(unit, k, torn != 0, 1000 * k + unit, &old_runs);
    }
    CHECK(old_runs > 0 && old_runs < 2 * n);  // cuts early keep v1, the confirm's tear too
    for (TrialOp op : {kRevert, kConfirm, kResetTrial, kBadTrialBoot}) {
      const uint64_t m = sweep_trial_once(unit, op, 0, false, 0);
      CHECK(m >= 1);
      for (uint64_t k = 1; k <= m; k++) {
        for (int torn = 0; torn < 2; torn++) sweep_trial_once(unit, op, k, torn != 0, 77 * k + unit);
      }
    }
  }
  // Random cuts: any unit, operation and tear, another torn pattern each time.
  uint64_t rng = 0x9E3779B97F4A7C15ull;
  auto next = [&rng] {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return static_cast<uint32_t>((rng * 2685821657736338717ull) >> 32);
  };
  uint64_t totals[3];
  uint32_t unused = 0;
  for (int i = 0; i < 3; i++) totals[i] = sweep_install_once(kUnits[i], 0, false, 0, &unused);
  for (int i = 0; i < 1000; i++) {
    const int u = static_cast<int>(next() % 3);
    if (totals[u] == 0) continue;  // (the dry run failed: reported above)
    sweep_install_once(kUnits[u], 1 + next() % totals[u], next() % 2 == 0, next() | 1u, &unused);
  }
}

}  // namespace

int main() {
  test_config_checks();
  test_board_without_slots();
  for (uint32_t unit : kUnits) {
    test_fresh_board(unit);
    test_install_trial_confirm(unit);
    test_slot_model_metadata(unit);
    test_update_and_revert(unit);
    test_install_target(unit);
    test_health_check_at_trial(unit);
    test_confirmed_slot_not_revoked_by_boot(unit);
    test_factory_when_slots_invalid(unit);
    test_begin_refusals(unit);
    test_write_and_end_refusals(unit);
    test_verify_failures(unit);
    test_flash_failures(unit);
    test_board_without_reset(unit);
    test_revert_never_runs_stale_pending(unit);
  }
  test_power_cut_sweep();
  printf("test_core_slots: %d checks, %d failures (%u power cuts)\n", g_checks, g_failures, g_cuts);
  return g_failures == 0 ? 0 : 1;
}
