// Unit tests of the portable core, built and run on the host (make test).
#include <cmath>

#include "host_support.h"

namespace {

struct Rig {
  Fake fake;
  CoreMem mem;
  ts_config_t cfg;
  ts_platform_t plat;
  ts_core_t *core = nullptr;
  ts_status_t init_status = TS_OK;

  explicit Rig(bool storage = false, void (*tweak)(ts_config_t &, Fake &) = nullptr) {
    cfg = default_config();
    if (tweak != nullptr) tweak(cfg, fake);
    plat = fake_platform(&fake, storage);
    init_status = ts_core_init(mem.bytes, sizeof(mem.bytes), &cfg, &plat, &core);
  }
  // Send raw bytes, return what the core wrote in response.
  Parsed send(const std::vector<uint8_t> &bytes) {
    fake.out.clear();
    feed(core, bytes);
    return parse_output(fake.out);
  }
  Parsed text(const char *s) {
    fake.out.clear();
    feed_str(core, s);
    return parse_output(fake.out);
  }
  Parsed request(uint8_t cmd, uint16_t seq, const std::vector<uint8_t> &pl) {
    return send(make_frame(cmd, seq, pl));
  }
};

std::vector<uint8_t> infer_payload(const std::vector<std::vector<int8_t>> &vecs) {
  std::vector<uint8_t> p = {static_cast<uint8_t>(vecs.size()), static_cast<uint8_t>(vecs.size() >> 8)};
  for (const auto &v : vecs)
    for (int8_t x : v) p.push_back(static_cast<uint8_t>(x));
  return p;
}

void check_error(const Parsed &r, ts_status_t code, uint8_t req_cmd, uint16_t seq) {
  CHECK_EQ(r.frames.size(), 1u);
  if (r.frames.size() != 1) return;
  const Frame &f = r.frames[0];
  CHECK_EQ(f.status, TS_OK);
  CHECK_EQ(f.cmd, TS_CMD_ERROR);
  CHECK_EQ(f.seq, seq);
  CHECK(f.payload.size() >= 2);
  if (f.payload.size() < 2) return;
  CHECK_EQ(f.payload[0], code);
  CHECK_EQ(f.payload[1], req_cmd);
  const std::string reason(f.payload.begin() + 2, f.payload.end());
  CHECK(reason == ts_status_str(code));
}

// ------------------------------------------------------------------ codec --

void test_crc32() {
  const uint8_t check[] = {'1', '2', '3', '4', '5', '6', '7', '8', '9'};
  CHECK_EQ(ts_crc32(0, check, 9), 0xCBF43926u);
  // incremental
  CHECK_EQ(ts_crc32(ts_crc32(0, check, 4), check + 4, 5), 0xCBF43926u);
  CHECK_EQ(ts_crc32(0, nullptr, 0), 0u);
}

void test_cobs_round_trip() {
  srand(7);
  const size_t lens[] = {0, 1, 2, 253, 254, 255, 256, 507, 508, 509, 1033};
  for (size_t len : lens) {
    for (int pattern = 0; pattern < 4; pattern++) {
      std::vector<uint8_t> in(len);
      for (size_t i = 0; i < len; i++) {
        in[i] = pattern == 0 ? 0 : pattern == 1 ? 0x11 : pattern == 2 ? static_cast<uint8_t>(i % 7 ? 5 : 0)
                                                                       : static_cast<uint8_t>(rand());
      }
      std::vector<uint8_t> enc(TS_COBS_MAX_ENCODED(len));
      size_t n = 0;
      CHECK_EQ(ts_cobs_encode(in.data(), len, enc.data(), enc.size(), &n), TS_OK);
      CHECK(n <= TS_COBS_MAX_ENCODED(len));
      for (size_t i = 0; i < n; i++) CHECK(enc[i] != 0);
      std::vector<uint8_t> dec(len + 1);
      size_t m = 99;
      CHECK_EQ(ts_cobs_decode(enc.data(), n, dec.data(), dec.size(), &m), TS_OK);
      CHECK_EQ(m, len);
      CHECK(len == 0 || memcmp(dec.data(), in.data(), len) == 0);
      if (n > 0) {
        size_t small = 0;
        CHECK_EQ(ts_cobs_encode(in.data(), len, enc.data(), n - 1, &small), TS_ERR_BUFFER_TOO_SMALL);
      }
    }
  }
  // The textbook example.
  const uint8_t in[] = {0x11, 0x22, 0x00, 0x33};
  const uint8_t want[] = {0x03, 0x11, 0x22, 0x02, 0x33};
  uint8_t enc[8];
  size_t n = 0;
  CHECK_EQ(ts_cobs_encode(in, 4, enc, sizeof(enc), &n), TS_OK);
  CHECK_EQ(n, 5u);
  CHECK(memcmp(enc, want, 5) == 0);
}

void test_cobs_decode_errors() {
  uint8_t out[16];
  size_t n = 0;
  const uint8_t truncated[] = {0x05, 0x01, 0x02};
  CHECK_EQ(ts_cobs_decode(truncated, 3, out, sizeof(out), &n), TS_ERR_BAD_FRAMING);
  const uint8_t with_zero[] = {0x02, 0x00, 0x01};
  CHECK_EQ(ts_cobs_decode(with_zero, 3, out, sizeof(out), &n), TS_ERR_BAD_FRAMING);
  const uint8_t ok[] = {0x03, 0x11, 0x22, 0x02, 0x33};
  CHECK_EQ(ts_cobs_decode(ok, 5, out, 3, &n), TS_ERR_BUFFER_TOO_SMALL);
  CHECK_EQ(ts_cobs_decode(nullptr, 3, out, sizeof(out), &n), TS_ERR_INVALID_ARGUMENT);
  CHECK_EQ(ts_cobs_decode(ok, 5, out, sizeof(out), nullptr), TS_ERR_INVALID_ARGUMENT);
  CHECK_EQ(ts_cobs_encode(ok, 5, nullptr, 4, &n), TS_ERR_INVALID_ARGUMENT);
}

void test_frame_codec() {
  // The PING example of PROTOCOL.md section 5, byte for byte.
  const uint8_t want[] = {0x00, 0x03, 0x01, 0x01, 0x02, 0x02, 0x07, 0x68,
                          0x69, 0xB7, 0xF7, 0x04, 0xC3, 0x00};
  const std::vector<uint8_t> got = make_frame(TS_CMD_PING, 1, {'h', 'i'});
  CHECK_EQ(got.size(), sizeof(want));
  CHECK(memcmp(got.data(), want, sizeof(want)) == 0);

  uint8_t cmd = 0;
  uint16_t seq = 0;
  uint8_t pl[TS_MAX_PAYLOAD];
  size_t n = 0;
  CHECK_EQ(ts_frame_decode(want + 1, sizeof(want) - 2, &cmd, &seq, pl, sizeof(pl), &n), TS_OK);
  CHECK_EQ(cmd, 1);
  CHECK_EQ(seq, 1);
  CHECK_EQ(n, 2u);
  CHECK(pl[0] == 'h' && pl[1] == 'i');
  CHECK_EQ(ts_frame_decode(want + 1, sizeof(want) - 2, &cmd, &seq, pl, 1, &n), TS_ERR_BUFFER_TOO_SMALL);

  // Max payload round trip; one more byte is refused.
  std::vector<uint8_t> big(TS_MAX_PAYLOAD);
  for (size_t i = 0; i < big.size(); i++) big[i] = static_cast<uint8_t>(i);
  const std::vector<uint8_t> fb = make_frame(0x03, 0xBEEF, big);
  CHECK(fb.size() <= TS_MAX_WIRE_FRAME);
  CHECK_EQ(ts_frame_decode(fb.data() + 1, fb.size() - 2, &cmd, &seq, pl, sizeof(pl), &n), TS_OK);
  CHECK_EQ(seq, 0xBEEF);
  CHECK_EQ(n, TS_MAX_PAYLOAD);
  CHECK(memcmp(pl, big.data(), n) == 0);
  std::vector<uint8_t> out(TS_MAX_WIRE_FRAME + 16);
  big.push_back(1);
  CHECK_EQ(ts_frame_encode(3, 1, big.data(), big.size(), out.data(), out.size(), &n), TS_ERR_BAD_LENGTH);
  CHECK_EQ(ts_frame_encode(3, 1, big.data(), 10, out.data(), 5, &n), TS_ERR_BUFFER_TOO_SMALL);
  CHECK_EQ(ts_frame_encode(3, 1, nullptr, 10, out.data(), out.size(), &n), TS_ERR_INVALID_ARGUMENT);

  // Corrupted CRC, truncated packet, COBS error.
  std::vector<uint8_t> bad = make_frame(TS_CMD_PING, 1, {'h', 'i'});
  bad[7] ^= 0x01;
  CHECK_EQ(ts_frame_decode(bad.data() + 1, bad.size() - 2, &cmd, &seq, pl, sizeof(pl), &n), TS_ERR_BAD_CRC);
  const uint8_t shortpkt[] = {0x04, 0x01, 0x01, 0x01};
  CHECK_EQ(ts_frame_decode(shortpkt, 4, &cmd, &seq, pl, sizeof(pl), &n), TS_ERR_BAD_LENGTH);
  const uint8_t badcobs[] = {0x09, 0x01};
  CHECK_EQ(ts_frame_decode(badcobs, 2, &cmd, &seq, pl, sizeof(pl), &n), TS_ERR_BAD_FRAMING);
}

void test_status_tables() {
  CHECK(strcmp(ts_status_str(TS_OK), "ok") == 0);
  CHECK(strcmp(ts_status_str(TS_ERR_BAD_CRC), "bad crc") == 0);
  CHECK(strcmp(ts_status_name(TS_ERR_STORAGE), "TS_ERR_STORAGE") == 0);
  CHECK(strcmp(ts_status_str(static_cast<ts_status_t>(TS_STATUS_COUNT)), "?") == 0);
  CHECK(strcmp(ts_status_name(static_cast<ts_status_t>(g_checks + 1000)), "?") == 0);
  for (unsigned i = 0; i < TS_STATUS_COUNT; i++) {
    const char *r = ts_status_str(static_cast<ts_status_t>(i));
    CHECK(strlen(r) > 0 && strlen(r) <= TS_MAX_REASON);
    CHECK(strncmp(ts_status_name(static_cast<ts_status_t>(i)), "TS_", 3) == 0);
  }
  CHECK(strcmp(ts_command_name(TS_CMD_INFER), "infer") == 0);
  CHECK(strcmp(ts_command_name(0x42), "?") == 0);
}

// ------------------------------------------------------------------- init --

void test_init_banner_and_preconditions() {
  Rig r;
  CHECK_EQ(r.init_status, TS_OK);
  CHECK(r.core != nullptr);
  const Parsed p = parse_output(r.fake.out);
  CHECK(p.frames.empty());
  CHECK(p.text == "tinyship ready proto=2 fw=0.1.0 model=v0003 board=nano33ble selftest=pass\r\n");
  CHECK(ts_core_size() <= sizeof(CoreMem));
  r.fake.out.clear();
  CHECK_EQ(ts_core_write_banner(r.core), TS_OK);
  CHECK(parse_output(r.fake.out).text == p.text);
  r.fake.fail_write = true;
  CHECK_EQ(ts_core_write_banner(r.core), TS_ERR_IO);
  r.fake.fail_write = false;
  CHECK_EQ(ts_core_write_banner(nullptr), TS_ERR_INVALID_ARGUMENT);

  Fake f;
  ts_config_t c = default_config();
  ts_platform_t pl = fake_platform(&f);
  CoreMem m;
  ts_core_t *core = nullptr;
  CHECK_EQ(ts_core_init(nullptr, sizeof(m.bytes), &c, &pl, &core), TS_ERR_INVALID_ARGUMENT);
  CHECK_EQ(ts_core_init(m.bytes + 1, sizeof(m.bytes) - 8, &c, &pl, &core), TS_ERR_INVALID_ARGUMENT);
  CHECK_EQ(ts_core_init(m.bytes, ts_core_size() - 1, &c, &pl, &core), TS_ERR_INVALID_ARGUMENT);
  CHECK_EQ(ts_core_init(m.bytes, sizeof(m.bytes), nullptr, &pl, &core), TS_ERR_INVALID_ARGUMENT);
  CHECK_EQ(ts_core_init(m.bytes, sizeof(m.bytes), &c, nullptr, &core), TS_ERR_INVALID_ARGUMENT);
  CHECK_EQ(ts_core_init(m.bytes, sizeof(m.bytes), &c, &pl, nullptr), TS_ERR_INVALID_ARGUMENT);
  CHECK(core == nullptr);

  struct Bad {
    void (*apply)(ts_config_t &, ts_platform_t &);
  };
  const Bad bads[] = {
      {[](ts_config_t &, ts_platform_t &pl) { pl.write = nullptr; }},
      {[](ts_config_t &, ts_platform_t &pl) { pl.micros = nullptr; }},
      {[](ts_config_t &, ts_platform_t &pl) { pl.infer = nullptr; }},
      {[](ts_config_t &, ts_platform_t &pl) { pl.storage_read = fake_storage_read; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.firmware_version = nullptr; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.model_sha256 = nullptr; }},
      {[](ts_config_t &c2, ts_platform_t &) {
        c2.board = "0123456789012345678901234567890123456789012345678901234567890123456789";
      }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.input_size = 0; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.input_size = TS_MAX_INPUT_BYTES + 1; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.output_size = TS_MAX_PAYLOAD - 5; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.input_rank = 9; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.output_shape = nullptr; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.golden_outputs = nullptr; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.model_crc_check = 3; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.reset_reason = 9; }},
      // target units: a config that never set them (zero scale) or non-finite values
      {[](ts_config_t &c2, ts_platform_t &) { c2.target_scale = 0.0f; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.target_scale = NAN; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.target_scale = -INFINITY; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.target_mean = INFINITY; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.target_mean = NAN; }},
      // MLPerf model names the runner's m-model-\[([^]]+)] could not read back whole
      {[](ts_config_t &c2, ts_platform_t &) { c2.mlperf_model = ""; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.mlperf_model = "ad]01"; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.mlperf_model = "ad 01"; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.mlperf_model = "ad01%"; }},
      {[](ts_config_t &c2, ts_platform_t &) { c2.mlperf_model = "ad01\r\n"; }},
      {[](ts_config_t &c2, ts_platform_t &) {
        c2.mlperf_model = "a123456789012345678901234567890123456789012345678901234567890123456789";
      }},
  };
  for (const Bad &b : bads) {
    ts_config_t c2 = default_config();
    ts_platform_t p2 = fake_platform(&f);
    b.apply(c2, p2);
    core = reinterpret_cast<ts_core_t *>(1);
    CHECK_EQ(ts_core_init(m.bytes, sizeof(m.bytes), &c2, &p2, &core), TS_ERR_INVALID_ARGUMENT);
    CHECK(core == nullptr);
  }
  // API calls on a core that was never initialised are refused.
  CoreMem junk;
  memset(junk.bytes, 0, sizeof(junk.bytes));
  ts_core_t *j = reinterpret_cast<ts_core_t *>(junk.bytes);
  ts_stats_t s;
  CHECK_EQ(ts_core_feed(j, nullptr, 0), TS_ERR_INVALID_ARGUMENT);
  CHECK_EQ(ts_core_get_stats(j, &s), TS_ERR_INVALID_ARGUMENT);
  CHECK_EQ(ts_core_feed(r.core, nullptr, 3), TS_ERR_INVALID_ARGUMENT);
  CHECK_EQ(ts_core_get_stats(r.core, nullptr), TS_ERR_INVALID_ARGUMENT);
  CHECK_EQ(ts_core_feed(r.core, nullptr, 0), TS_OK);
}

// --------------------------------------------------------------- commands --

void test_ping() {
  Rig r;
  Parsed p = r.request(TS_CMD_PING, 0x1234, {1, 0, 2, 0xFF});
  CHECK_EQ(p.frames.size(), 1u);
  CHECK(p.text.empty());
  CHECK_EQ(p.frames[0].status, TS_OK);
  CHECK_EQ(p.frames[0].cmd, 0x81);
  CHECK_EQ(p.frames[0].seq, 0x1234);
  CHECK((p.frames[0].payload == std::vector<uint8_t>{1, 0, 2, 0xFF}));
  p = r.request(TS_CMD_PING, 7, {});
  CHECK_EQ(p.frames.size(), 1u);
  CHECK(p.frames[0].payload.empty());
  std::vector<uint8_t> big(TS_MAX_PAYLOAD, 0);
  p = r.request(TS_CMD_PING, 8, big);
  CHECK_EQ(p.frames.size(), 1u);
  CHECK(p.frames[0].payload == big);
  // Doc example reply.
  r.fake.out.clear();
  feed(r.core, make_frame(TS_CMD_PING, 1, {'h', 'i'}));
  const uint8_t want[] = {0x00, 0x03, 0x81, 0x01, 0x02, 0x02, 0x07, 0x68,
                          0x69, 0x45, 0x1D, 0x12, 0x4B, 0x00};
  CHECK_EQ(r.fake.out.size(), sizeof(want));
  CHECK(memcmp(r.fake.out.data(), want, sizeof(want)) == 0);
}

std::string s(const std::vector<uint8_t> &v) { return std::string(v.begin(), v.end()); }

void test_hello() {
  Rig r(false, [](ts_config_t &c, Fake &) {
    c.reset_reason = TS_RESET_WATCHDOG;
    c.boot_count = 0;
  });
  r.fake.clock += 5000;
  const Parsed p = r.request(TS_CMD_HELLO, 2, {});
  CHECK_EQ(p.frames.size(), 1u);
  CHECK_EQ(p.frames[0].cmd, 0x82);
  const Tlvs t = parse_tlv(p.frames[0].payload);
  CHECK(t.well_formed);
  CHECK((t.v[TS_TLV_PROTOCOL_VERSION] == std::vector<uint8_t>{TS_PROTOCOL_VERSION}));
  CHECK(s(t.v[TS_TLV_FIRMWARE_VERSION]) == "0.1.0");
  CHECK(s(t.v[TS_TLV_MODEL_VERSION]) == "v0003");
  CHECK_EQ(t.v[TS_TLV_MODEL_SHA256].size(), 64u);
  CHECK((t.v[TS_TLV_MODEL_CRC_OK] == std::vector<uint8_t>{TS_CRC_OK}));
  CHECK_EQ(le32(t.v[TS_TLV_MODEL_CRC32].data()), 0xDEADBEEFu);
  CHECK(s(t.v[TS_TLV_PROFILE]) == "tflm-arduino-2023");
  CHECK(s(t.v[TS_TLV_BOARD]) == "nano33ble");
  CHECK_EQ(le32(t.v[TS_TLV_ARENA_USED].data()), 1234);
  CHECK_EQ(le32(t.v[TS_TLV_ARENA_SIZE].data()), 4096);
  CHECK_EQ(t.v[TS_TLV_INPUT_SHAPE].size(), 8u);
  CHECK_EQ(le32(t.v[TS_TLV_INPUT_SHAPE].data() + 4), 4);
  CHECK_EQ(le32(t.v[TS_TLV_OUTPUT_SHAPE].data() + 4), 2);
  CHECK((t.v[TS_TLV_INPUT_DTYPE] == std::vector<uint8_t>{TS_DTYPE_INT8}));
  CHECK((t.v[TS_TLV_OUTPUT_DTYPE] == std::vector<uint8_t>{TS_DTYPE_INT8}));
  float f;
  uint32_t bits = le32(t.v[TS_TLV_INPUT_SCALE].data());
  memcpy(&f, &bits, 4);
  CHECK(f == 0.5f);
  bits = le32(t.v[TS_TLV_OUTPUT_SCALE].data());
  memcpy(&f, &bits, 4);
  CHECK(f == 0.25f);
  CHECK_EQ(static_cast<int32_t>(le32(t.v[TS_TLV_INPUT_ZERO_POINT].data())), -128);
  CHECK_EQ(static_cast<int32_t>(le32(t.v[TS_TLV_OUTPUT_ZERO_POINT].data())), 10);
  CHECK_EQ(t.v[TS_TLV_UPTIME_US].size(), 8u);
  CHECK(le32(t.v[TS_TLV_UPTIME_US].data()) >= 5000);
  CHECK(!t.present[TS_TLV_BOOT_COUNT]);
  CHECK((t.v[TS_TLV_RESET_REASON] == std::vector<uint8_t>{TS_RESET_WATCHDOG}));
  CHECK((t.v[TS_TLV_SELF_TEST] == std::vector<uint8_t>{TS_SELF_TEST_PASS, 3, 0, 0xFF, 0xFF, 0}));
  CHECK((t.v[TS_TLV_MAX_PAYLOAD] == std::vector<uint8_t>{0x00, 0x04}));
  CHECK(s(t.v[TS_TLV_GIT_COMMIT]) == "abc1234");
  CHECK(s(t.v[TS_TLV_BUILD_TIME]) == "2026-01-02T03:04:05Z");
  CHECK_EQ(le32(t.v[TS_TLV_INPUT_SIZE].data()), 4);
  CHECK_EQ(le32(t.v[TS_TLV_OUTPUT_SIZE].data()), 2);
  CHECK_EQ(t.v[TS_TLV_TARGET_MEAN].size(), 4u);
  bits = le32(t.v[TS_TLV_TARGET_MEAN].data());
  memcpy(&f, &bits, 4);
  CHECK(f == 0.0f);
  bits = le32(t.v[TS_TLV_TARGET_SCALE].data());
  memcpy(&f, &bits, 4);
  CHECK(f == 1.0f);

  // Arena used is updated after the runner allocated; unknown tags absent.
  CHECK_EQ(ts_core_set_arena_used(r.core, 2000), TS_OK);
  const Parsed p2 = r.request(TS_CMD_HELLO, 3, {});
  const Tlvs t2 = parse_tlv(p2.frames[0].payload);
  CHECK_EQ(le32(t2.v[TS_TLV_ARENA_USED].data()), 2000);
  CHECK(!t2.present[0x00] && !t2.present[0x7F]);

  // Boot count present when configured; optional strings absent when NULL.
  Rig r2(false, [](ts_config_t &c, Fake &) {
    c.boot_count = 42;
    c.git_commit = nullptr;
    c.build_time = nullptr;
  });
  const Tlvs t3 = parse_tlv(r2.request(TS_CMD_HELLO, 1, {}).frames[0].payload);
  CHECK_EQ(le32(t3.v[TS_TLV_BOOT_COUNT].data()), 42);
  CHECK(!t3.present[TS_TLV_RESET_REASON]);
  CHECK(!t3.present[TS_TLV_GIT_COMMIT]);
  CHECK(!t3.present[TS_TLV_BUILD_TIME]);
}

void test_infer() {
  Rig r;
  Parsed p = r.request(TS_CMD_INFER, 3, infer_payload({{1, 2, 3, 4}}));
  CHECK_EQ(p.frames.size(), 1u);
  const Frame &f = p.frames[0];
  CHECK_EQ(f.cmd, 0x83);
  CHECK_EQ(f.seq, 3);
  CHECK_EQ(f.payload.size(), 2u + 4u + 2u);
  CHECK_EQ(f.payload[0], 1);
  CHECK_EQ(f.payload[1], 0);
  CHECK_EQ(le32(f.payload.data() + 2), 100);  // fake latency
  CHECK_EQ(static_cast<int8_t>(f.payload[6]), 10);
  CHECK_EQ(static_cast<int8_t>(f.payload[7]), 1);

  // Batch of 3 with distinct latencies.
  std::vector<std::vector<int8_t>> vecs = {{-128, 0, 0, 0}, {5, 5, 5, 5}, {100, 100, 0, 0}};
  p = r.request(TS_CMD_INFER, 4, infer_payload(vecs));
  CHECK_EQ(p.frames.size(), 1u);
  CHECK_EQ(p.frames[0].payload.size(), 2u + 3u * 6u);
  for (size_t v = 0; v < 3; v++) {
    int8_t want[2];
    fake_model(vecs[v].data(), 4, want, 2);
    const uint8_t *e = p.frames[0].payload.data() + 2 + v * 6;
    CHECK_EQ(le32(e), 100);
    CHECK_EQ(static_cast<int8_t>(e[4]), want[0]);
    CHECK_EQ(static_cast<int8_t>(e[5]), want[1]);
  }
  ts_stats_t st;
  CHECK_EQ(ts_core_get_stats(r.core, &st), TS_OK);
  CHECK_EQ(st.inference_count, 4);
  CHECK_EQ(st.frames_ok, 2);

  // Errors.
  check_error(r.request(TS_CMD_INFER, 5, {1, 0, 1, 2, 3}), TS_ERR_WRONG_INPUT_SIZE, TS_CMD_INFER, 5);
  check_error(r.request(TS_CMD_INFER, 6, infer_payload({{1, 2, 3, 4}, {1, 2, 3}})), TS_ERR_WRONG_INPUT_SIZE,
              TS_CMD_INFER, 6);
  check_error(r.request(TS_CMD_INFER, 7, {1}), TS_ERR_BAD_PAYLOAD, TS_CMD_INFER, 7);
  check_error(r.request(TS_CMD_INFER, 8, {0, 0}), TS_ERR_BAD_PAYLOAD, TS_CMD_INFER, 8);
  // 170 vectors of 4: request 682 bytes fits, reply 2 + 170 * 6 = 1022 fits; 171 does not fit either way.
  std::vector<std::vector<int8_t>> many(170, std::vector<int8_t>{1, 1, 1, 1});
  p = r.request(TS_CMD_INFER, 9, infer_payload(many));
  CHECK_EQ(p.frames.size(), 1u);
  CHECK_EQ(p.frames[0].cmd, 0x83);
  CHECK_EQ(p.frames[0].payload.size(), 1022u);
  many.push_back({1, 1, 1, 1});
  check_error(r.request(TS_CMD_INFER, 10, infer_payload(many)), TS_ERR_BATCH_TOO_LARGE, TS_CMD_INFER, 10);
  // Inference failure on the second vector of a batch.
  check_error(r.request(TS_CMD_INFER, 11, infer_payload({{1, 1, 1, 1}, {99, 0, 0, 0}})),
              TS_ERR_INFERENCE_FAILED, TS_CMD_INFER, 11);
}

void test_infer_bigger_input_refused_when_model_invalid() {
  Rig r(false, [](ts_config_t &c, Fake &) { c.model_crc_check = TS_CRC_MISMATCH; });
  CHECK_CONTAINS(parse_output(r.fake.out).text, "selftest=not-run");
  ts_self_test_t st;
  CHECK_EQ(ts_core_get_self_test(r.core, &st), TS_OK);
  CHECK_EQ(st.status, TS_SELF_TEST_NOT_RUN);
  CHECK_EQ(r.fake.infer_calls, 0u);
  check_error(r.request(TS_CMD_INFER, 1, infer_payload({{1, 2, 3, 4}})), TS_ERR_MODEL_INVALID, TS_CMD_INFER, 1);
  CHECK_CONTAINS(r.text("info\n").text, "crc=MISMATCH");
  CHECK_CONTAINS(r.text("db load 4%db 01020304%infer 1 0%").text, "e-[Model invalid]");
  CHECK_EQ(r.fake.infer_calls, 0u);
}

void test_stats_and_reset() {
  Rig r;
  r.fake.infer_step = 50;
  (void)r.request(TS_CMD_INFER, 1, infer_payload({{1, 2, 3, 4}}));
  r.fake.infer_step = 150;
  (void)r.request(TS_CMD_INFER, 2, infer_payload({{1, 2, 3, 4}, {0, 0, 0, 0}}));
  (void)r.request(0x42, 3, {});
  (void)r.request(0x42, 4, {});
  std::vector<uint8_t> bad = make_frame(TS_CMD_PING, 5, {1});
  bad[3] ^= 0x40;
  (void)r.send(bad);
  Parsed p = r.request(TS_CMD_STATS, 6, {});
  CHECK_EQ(p.frames.size(), 1u);
  const std::vector<uint8_t> &pl = p.frames[0].payload;
  CHECK_EQ(pl.size(), 21u + 4u * TS_STATUS_COUNT);
  CHECK_EQ(le32(&pl[0]), 3);
  CHECK_EQ(le32(&pl[4]), 50);
  CHECK_EQ(le32(&pl[8]), (50 + 150 + 150) / 3);
  CHECK_EQ(le32(&pl[12]), 150);
  CHECK_EQ(le32(&pl[16]), 2);
  CHECK_EQ(pl[20], TS_STATUS_COUNT);
  CHECK_EQ(le32(&pl[21 + 4 * TS_ERR_UNKNOWN_COMMAND]), 2);
  CHECK_EQ(le32(&pl[21 + 4 * TS_ERR_BAD_CRC]), 1);
  CHECK_EQ(le32(&pl[21 + 4 * TS_ERR_BAD_LENGTH]), 0);
  CHECK_CONTAINS(r.text("stats\n").text, "inferences=3 latency_us min=50 mean=116 max=150 frames_ok=3");
  CHECK_CONTAINS(r.text("stats\n").text, "errors code=4 (unknown command) count=2");

  p = r.request(TS_CMD_RESET_STATS, 7, {});
  CHECK_EQ(p.frames.size(), 1u);
  CHECK_EQ(p.frames[0].cmd, 0x85);
  CHECK(p.frames[0].payload.empty());
  ts_stats_t st;
  CHECK_EQ(ts_core_get_stats(r.core, &st), TS_OK);
  CHECK_EQ(st.inference_count, 0);
  CHECK_EQ(st.latency_min_us, 0);
  CHECK_EQ(st.latency_max_us, 0);
  CHECK_EQ(st.frames_ok, 0);
  for (unsigned i = 0; i < TS_STATUS_COUNT; i++) CHECK_EQ(st.errors[i], 0);
  p = r.request(TS_CMD_STATS, 8, {});
  CHECK_EQ(le32(&p.frames[0].payload[16]), 0);  // the STATS reply itself is counted after
}

void test_unknown_and_reserved_commands() {
  Rig r;
  const uint8_t cmds[] = {0x00, 0x06, 0x17, 0x1F, 0x20, 0x42, 0x7F, 0x81, 0xFE, 0xFF};
  for (uint8_t c : cmds) check_error(r.request(c, 0x0102, {1, 2}), TS_ERR_UNKNOWN_COMMAND, c, 0x0102);
  // A board without model slots: the slot commands say so; REBOOT without a reset hook
  // is not implemented.
  const uint8_t slot_cmds[] = {0x10, 0x11, 0x12, 0x13, 0x15, 0x16};
  for (uint8_t c : slot_cmds) check_error(r.request(c, 0x0103, {}), TS_ERR_NO_SLOTS, c, 0x0103);
  check_error(r.request(TS_CMD_REBOOT, 0x0104, {}), TS_ERR_UNKNOWN_COMMAND, TS_CMD_REBOOT, 0x0104);
  // Doc example: unknown command 0x42 seq 6.
  r.fake.out.clear();
  feed(r.core, make_frame(0x42, 6, {}));
  const uint8_t want[] = {0x00, 0x03, 0xFF, 0x06, 0x02, 0x11, 0x16, 0x04, 0x42, 0x75, 0x6E,
                          0x6B, 0x6E, 0x6F, 0x77, 0x6E, 0x20, 0x63, 0x6F, 0x6D, 0x6D, 0x61,
                          0x6E, 0x64, 0x58, 0xCC, 0x3F, 0xCB, 0x00};
  CHECK_EQ(r.fake.out.size(), sizeof(want));
  CHECK(memcmp(r.fake.out.data(), want, sizeof(want)) == 0);
}

// -------------------------------------------------------- framing errors --

void test_bad_crc_every_byte() {
  Rig r;
  const std::vector<uint8_t> good = make_frame(TS_CMD_PING, 9, {'a', 'b', 'c'});
  // Flip one bit in every encoded byte (but never create or remove a 0x00).
  for (size_t i = 1; i + 1 < good.size(); i++) {
    for (uint8_t bit = 1; bit != 0; bit = static_cast<uint8_t>(bit << 1)) {
      std::vector<uint8_t> bad = good;
      bad[i] = static_cast<uint8_t>(bad[i] ^ bit);
      if (bad[i] == 0) continue;
      const Parsed p = r.send(bad);
      CHECK_EQ(p.frames.size(), 1u);
      if (p.frames.size() != 1) continue;
      CHECK_EQ(p.frames[0].cmd, TS_CMD_ERROR);
      CHECK_EQ(p.frames[0].seq, TS_SEQ_UNKNOWN);
      const uint8_t code = p.frames[0].payload[0];
      CHECK(code == TS_ERR_BAD_CRC || code == TS_ERR_BAD_FRAMING || code == TS_ERR_BAD_LENGTH);
      CHECK_EQ(p.frames[0].payload[1], 0);
    }
  }
  // Doc example: bad CRC reply.
  std::vector<uint8_t> bad = good;
  bad[8] ^= 0x01;
  r.fake.out.clear();
  feed(r.core, bad);
  const uint8_t want[] = {0x00, 0x05, 0xFF, 0xFF, 0xFF, 0x09, 0x02, 0x01, 0x0C, 0x62, 0x61,
                          0x64, 0x20, 0x63, 0x72, 0x63, 0xFC, 0xE7, 0xD0, 0x19, 0x00};
  CHECK_EQ(r.fake.out.size(), sizeof(want));
  CHECK(memcmp(r.fake.out.data(), want, sizeof(want)) == 0);
  // The device is still in sync afterwards.
  const Parsed ok = r.request(TS_CMD_PING, 10, {'z'});
  CHECK_EQ(ok.frames.size(), 1u);
  CHECK_EQ(ok.frames[0].cmd, 0x81);
}

void test_bad_framing_truncated_and_length() {
  Rig r;
  check_error(r.send({0x00, 0x09, 0x01, 0x02, 0x00}), TS_ERR_BAD_FRAMING, 0, TS_SEQ_UNKNOWN);
  // Truncated: 4 decoded bytes.
  check_error(r.send({0x00, 0x05, 0x01, 0x01, 0x01, 0x01, 0x00}), TS_ERR_BAD_LENGTH, 0, TS_SEQ_UNKNOWN);
  // Truncated valid frame (tail lost) followed by a good frame: one error, one reply.
  std::vector<uint8_t> cut = make_frame(TS_CMD_PING, 1, {1, 2, 3, 4, 5, 6});
  cut.resize(cut.size() - 4);
  std::vector<uint8_t> both = cut;
  const std::vector<uint8_t> good = make_frame(TS_CMD_PING, 2, {7});
  both.insert(both.end(), good.begin(), good.end());
  Parsed p = r.send(both);
  CHECK_EQ(p.frames.size(), 2u);
  CHECK_EQ(p.frames[0].cmd, TS_CMD_ERROR);
  CHECK_EQ(p.frames[0].seq, TS_SEQ_UNKNOWN);
  CHECK_EQ(p.frames[1].cmd, 0x81);
  CHECK_EQ(p.frames[1].seq, 2);
  // Good CRC but the len field disagrees with the payload: seq and cmd echoed.
  uint8_t pkt[5 + 2 + 4] = {TS_CMD_PING, 0x34, 0x12, 3, 0, 'h', 'i'};
  const uint32_t crc = ts_crc32(0, pkt, 7);
  for (int i = 0; i < 4; i++) pkt[7 + i] = static_cast<uint8_t>(crc >> (8 * i));
  std::vector<uint8_t> enc(32);
  size_t n = 0;
  CHECK_EQ(ts_cobs_encode(pkt, sizeof(pkt), enc.data(), enc.size(), &n), TS_OK);
  enc.resize(n);
  enc.insert(enc.begin(), 0);
  enc.push_back(0);
  check_error(r.send(enc), TS_ERR_BAD_LENGTH, TS_CMD_PING, 0x1234);
  // Oversized: 5000 non-zero bytes, answered once at the delimiter.
  std::vector<uint8_t> huge(5002, 0x41);
  huge.front() = 0;
  huge.back() = 0;
  check_error(r.send(huge), TS_ERR_BAD_LENGTH, 0, TS_SEQ_UNKNOWN);
  // Declared length larger than TS_MAX_PAYLOAD within a valid-size packet.
  uint8_t pkt2[9] = {TS_CMD_PING, 1, 0, 0xFF, 0xFF};
  const uint32_t crc2 = ts_crc32(0, pkt2, 5);
  for (int i = 0; i < 4; i++) pkt2[5 + i] = static_cast<uint8_t>(crc2 >> (8 * i));
  std::vector<uint8_t> enc2(32);
  CHECK_EQ(ts_cobs_encode(pkt2, sizeof(pkt2), enc2.data(), enc2.size(), &n), TS_OK);
  enc2.resize(n);
  enc2.insert(enc2.begin(), 0);
  enc2.push_back(0);
  check_error(r.send(enc2), TS_ERR_BAD_LENGTH, TS_CMD_PING, 1);
  ts_stats_t st;
  CHECK_EQ(ts_core_get_stats(r.core, &st), TS_OK);
  // framing: the explicit case and the cut frame (its last COBS block is incomplete)
  CHECK_EQ(st.errors[TS_ERR_BAD_FRAMING], 2);
  CHECK_EQ(st.errors[TS_ERR_BAD_LENGTH], 4);
}

void test_garbage_between_frames_and_split_feeding() {
  Rig r;
  std::vector<uint8_t> stream;
  const char *noise = "hello world \x01\x02\xff";  // text garbage, no newline
  stream.insert(stream.end(), noise, noise + strlen(noise));
  std::vector<uint8_t> a = make_frame(TS_CMD_PING, 1, {'a'});
  stream.insert(stream.end(), a.begin(), a.end());
  const uint8_t junk[] = {0x00, 0x07, 0x33, 0x44, 0x00};  // framed junk
  stream.insert(stream.end(), junk, junk + sizeof(junk));
  std::vector<uint8_t> b = make_frame(TS_CMD_PING, 2, {'b'});
  stream.insert(stream.end(), b.begin(), b.end());
  stream.push_back(0);  // extra delimiters are harmless
  stream.push_back(0);
  std::vector<uint8_t> c = make_frame(TS_CMD_PING, 3, {'c'});
  stream.insert(stream.end(), c.begin(), c.end());

  const Parsed whole = r.send(stream);
  CHECK(whole.text.empty());
  CHECK_EQ(whole.frames.size(), 4u);
  if (whole.frames.size() == 4) {
    CHECK_EQ(whole.frames[0].seq, 1);
    CHECK_EQ(whole.frames[1].cmd, TS_CMD_ERROR);
    CHECK_EQ(whole.frames[2].seq, 2);
    CHECK_EQ(whole.frames[3].seq, 3);
  }
  // Byte-at-a-time feeding produces identical output.
  Rig r2;
  r2.fake.out.clear();
  for (uint8_t x : stream) (void)ts_core_feed(r2.core, &x, 1);
  const std::vector<uint8_t> whole_bytes = r.fake.out;
  CHECK(r2.fake.out == whole_bytes);
}

void test_frame_timeout() {
  Rig r;
  std::vector<uint8_t> part = make_frame(TS_CMD_PING, 1, {1, 2, 3});
  part.resize(part.size() / 2);
  Parsed p = r.send(part);
  CHECK(p.frames.empty());
  r.fake.clock += TS_FRAME_TIMEOUT_US + 1;
  p = r.send({});
  check_error(p, TS_ERR_FRAME_TIMEOUT, 0, TS_SEQ_UNKNOWN);
  CHECK(r.text("ping\n").text == "pong\r\n");
  // Within the timeout a slow frame is still fine.
  std::vector<uint8_t> f = make_frame(TS_CMD_PING, 2, {9});
  std::vector<uint8_t> h1(f.begin(), f.begin() + 4), h2(f.begin() + 4, f.end());
  (void)r.send(h1);
  r.fake.clock += TS_FRAME_TIMEOUT_US - 10;
  p = r.send(h2);
  CHECK_EQ(p.frames.size(), 1u);
  CHECK_EQ(p.frames[0].cmd, 0x81);
  // After a bad frame the device waits for a frame; text is taken after the timeout.
  (void)r.send({0x00, 0x09, 0x00});
  CHECK(r.text("ping\n").frames.empty());
  r.fake.clock += TS_FRAME_TIMEOUT_US + 1;
  p = r.text("ping\n");
  CHECK(p.text == "pong\r\n");
}

// -------------------------------------------------------------- text mode --

void test_text_mode() {
  Rig r;
  CHECK(r.text("ping\n").text == "pong\r\n");
  CHECK(r.text("  ping  \r\n").text == "pong\r\n");
  CHECK(r.text("\r\n\n").text.empty());
  CHECK_CONTAINS(r.text("help\r").text, "info");
  CHECK(r.text("nope\n").text == "error: unknown command 'nope' (try help)\r\n");
  std::string info = r.text("info\n").text;
  CHECK_CONTAINS(info, "tinyship proto=2 fw=0.1.0 board=nano33ble\r\n");
  CHECK_CONTAINS(info, "model=v0003 profile=tflm-arduino-2023 crc32=0xdeadbeef crc=ok\r\n");
  CHECK_CONTAINS(info, "sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n");
  CHECK_CONTAINS(info, "arena used=1234 size=4096\r\n");
  CHECK_CONTAINS(info, "input size=4 shape=[1,4] dtype=int8 scale=0.500000 zero_point=-128\r\n");
  CHECK_CONTAINS(info, "output size=2 shape=[1,2] dtype=int8 scale=0.250000 zero_point=10\r\n");
  CHECK_CONTAINS(info, "target mean=0.000000 scale=1.000000\r\n");
  CHECK_CONTAINS(info, "boot_count=unknown reset=unknown\r\n");
  CHECK_CONTAINS(info, "git=abc1234 built=2026-01-02T03:04:05Z\r\n");
  CHECK_CONTAINS(info, "selftest=pass vectors=3 max_diff_lsb=0\r\n");
  // Over-long line.
  std::string longline(TS_MAX_LINE + 10, 'a');
  longline += "\n";
  CHECK(r.text(longline.c_str()).text == "error: line too long\r\n");
  CHECK(r.text("ping\n").text == "pong\r\n");
  // A 0x00 drops the partial line and enters frame state.
  std::vector<uint8_t> mix = {'i', 'n', 'f'};
  std::vector<uint8_t> f = make_frame(TS_CMD_PING, 4, {});
  mix.insert(mix.end(), f.begin(), f.end());
  const char *tail = "ping\n";
  mix.insert(mix.end(), tail, tail + 5);
  const Parsed p = r.send(mix);
  CHECK_EQ(p.frames.size(), 1u);
  CHECK(p.text == "pong\r\n");
}

// ------------------------------------------------------------- MLPerf mode --

void test_mlperf() {
  Rig r;
  CHECK(r.text("name%").text == "m-name-dut-[tinyship]\r\nm-ready\r\n");
  // m-model is the benchmark name the runner selects its script by (default ad01),
  // never the registry version.
  CHECK(r.text("profile%").text ==
        "m-profile-[ULPMark for tinyML Firmware V0.0.1]\r\nm-model-[ad01]\r\nm-ready\r\n");
  Rig named(false, [](ts_config_t &c, Fake &) { c.mlperf_model = "kws01"; });
  CHECK_EQ(named.init_status, TS_OK);
  CHECK(named.text("profile%").text ==
        "m-profile-[ULPMark for tinyML Firmware V0.0.1]\r\nm-model-[kws01]\r\nm-ready\r\n");
  CHECK_CONTAINS(named.text("info\n").text, "model=v0003 ");  // the registry version stays in INFO
  r.fake.clock += 777;
  const uint32_t flushes = r.fake.flush_calls;
  const std::string ts = r.text("timestamp%").text;
  CHECK_EQ(r.fake.flush_calls - flushes, 1u);  // the platform drained its transmitter first
  CHECK(ts.rfind("m-lap-us-", 0) == 0);
  CHECK_CONTAINS(ts, "\r\nm-ready\r\n");
  CHECK_EQ(strtoull(ts.c_str() + 9, nullptr, 10), 777u + 3u * 100u);  // + 3 self-test inferences
  CHECK(r.text("bogus%").text == "e-[Unknown command: bogus]\r\nm-ready\r\n");
  CHECK_CONTAINS(r.text("help%").text, "infer N [W=0]");
  // db errors
  CHECK(r.text("db%").text == "e-[Command 'db' requires a subcommand]\r\nm-ready\r\n");
  CHECK(r.text("db load%").text == "e-[Command 'db load' requires the # of bytes]\r\nm-ready\r\n");
  CHECK(r.text("db load 0%").text == "e-[Command 'db load' must be >0 bytes]\r\nm-ready\r\n");
  CHECK(r.text("db 0102%").text == "e-[Command 'db load' first]\r\nm-ready\r\n");
  CHECK(r.text("db load 5%").text == "e-[Supplied buffer size 5 exceeds maximum of 4]\r\nm-ready\r\n");
  CHECK(r.text("infer 1 0%").text == "e-[Input db has 0 bytes, expected 4]\r\nm-ready\r\n");
  CHECK(r.text("db load 4%").text == "m-[Expecting 4 bytes]\r\nm-ready\r\n");
  CHECK(r.text("db 010%").text == "e-[Insufficent number of hex digits]\r\nm-ready\r\n");
  CHECK(r.text("db 01zz%").text == "e-[Invalid hex digit 'zz']\r\nm-ready\r\n");
  CHECK(r.text("db load 4%").text == "m-[Expecting 4 bytes]\r\nm-ready\r\n");
  CHECK(r.text("db 0a0B%").text == "m-ready\r\n");
  CHECK(r.text("db fe0c0d%").text == "m-load-done\r\nm-ready\r\n");
  CHECK(r.text("db print%").text == "m-buffer-0a-0b-fe-0c\r\nm-ready\r\n");
  CHECK(r.text("infer 0%").text == "e-[Inference iterations must be >0]\r\nm-ready\r\n");
  CHECK(r.text("infer 2 -1%").text == "e-[Inference warmup must be >=0]\r\nm-ready\r\n");
  const uint32_t calls = r.fake.infer_calls;
  r.fake.infer_step = 1000;
  const std::string inf = r.text("infer 3 2%").text;
  CHECK_EQ(r.fake.infer_calls - calls, 5u);
  // out[0] = 10 + 11 - 2 + 12 = 31, out[1] = 10; dequantized (q - 10) * 0.25
  const char *want_prefix = "m-warmup-start-2\r\nm-warmup-done\r\nm-infer-start-3\r\nm-lap-us-";
  CHECK(inf.rfind(want_prefix, 0) == 0);
  CHECK_CONTAINS(inf, "m-infer-done\r\nm-results-[5.250,0.000]\r\nm-ready\r\n");
  unsigned long long t0 = 0, t1 = 0;
  const char *l0 = strstr(inf.c_str(), "m-lap-us-");
  const char *l1 = l0 != nullptr ? strstr(l0 + 1, "m-lap-us-") : nullptr;
  CHECK(l0 != nullptr && l1 != nullptr);
  if (l0 != nullptr && l1 != nullptr) {
    t0 = strtoull(l0 + 9, nullptr, 10);
    t1 = strtoull(l1 + 9, nullptr, 10);
    CHECK_EQ(t1 - t0, 3000u);
  }
  CHECK(r.text("results%").text == "m-results-[5.250,0.000]\r\nm-ready\r\n");
  // Default N = 1, W = 10 as upstream.
  const uint32_t before = r.fake.infer_calls;
  CHECK_CONTAINS(r.text("infer%").text, "m-warmup-start-10\r\n");
  CHECK_EQ(r.fake.infer_calls - before, 11u);
  // Negative outputs and the stats include MLPerf inferences.
  ts_stats_t st;
  CHECK_EQ(ts_core_get_stats(r.core, &st), TS_OK);
  CHECK_EQ(st.inference_count, 4u);
  CHECK(r.text("db load 4%db 80808080%infer 1 0%").text.find("m-results-[-34.500,-34.500]") !=
        std::string::npos);
  // Failure during infer.
  r.fake.fail_infer = true;
  CHECK_CONTAINS(r.text("infer 1 0%").text, "e-[Inference failed]\r\nm-ready\r\n");
  // Over-long MLPerf command.
  std::string longcmd(TS_MAX_LINE + 1, 'd');
  longcmd += "%";
  CHECK(r.text(longcmd.c_str()).text == "e-[Command too long]\r\nm-ready\r\n");
}

// A regression model predicting the standardized target: results% in target units,
// target_mean + target_scale * (q - zero_point) * scale; INFO and info report both.
void test_target_units() {
  Rig r(false, [](ts_config_t &c, Fake &) {
    c.target_mean = 60.0f;
    c.target_scale = 8.0f;
  });
  CHECK_EQ(r.init_status, TS_OK);
  // out[0] = 1 + 2 + 3 + 4 = 10 -> (10 - 10) * 0.25 = 0 -> 60; out[1] = 1 -> -2.25 -> 42
  CHECK_CONTAINS(r.text("db load 4%db 01020304%").text, "m-load-done\r\nm-ready\r\n");
  CHECK_CONTAINS(r.text("infer 1 0%").text, "m-infer-done\r\nm-results-[60.000,42.000]\r\n");
  CHECK(r.text("results%").text == "m-results-[60.000,42.000]\r\nm-ready\r\n");
  // 0x80 x 4: out = -128, -128 -> (-138) * 0.25 = -34.5 -> 60 - 276 = -216
  CHECK_CONTAINS(r.text("db load 4%db 80808080%infer 1 0%").text, "m-results-[-216.000,-216.000]");
  CHECK_CONTAINS(r.text("info\n").text, "target mean=60.000000 scale=8.000000\r\n");
  const Tlvs t = parse_tlv(r.request(TS_CMD_HELLO, 1, {}).frames[0].payload);
  float f;
  uint32_t bits = le32(t.v[TS_TLV_TARGET_MEAN].data());
  memcpy(&f, &bits, 4);
  CHECK(f == 60.0f);
  bits = le32(t.v[TS_TLV_TARGET_SCALE].data());
  memcpy(&f, &bits, 4);
  CHECK(f == 8.0f);
  // A negative scale is valid (a target predicted with flipped sign).
  Rig neg(false, [](ts_config_t &c, Fake &) {
    c.target_mean = 1.5f;
    c.target_scale = -2.0f;
  });
  CHECK_EQ(neg.init_status, TS_OK);
  CHECK_CONTAINS(neg.text("db load 4%db 01020304%infer 1 0%").text, "m-results-[1.500,6.000]");
}

// --------------------------------------------------------------- self-test --

void test_self_test() {
  {
    Rig r;
    ts_self_test_t st;
    CHECK_EQ(ts_core_get_self_test(r.core, &st), TS_OK);
    CHECK_EQ(st.status, TS_SELF_TEST_PASS);
    CHECK_EQ(st.vectors, 3u);
    CHECK_EQ(st.failed_vector, 0xFFFFu);
    CHECK_EQ(r.fake.infer_calls, 3u);
    ts_stats_t s;
    CHECK_EQ(ts_core_get_stats(r.core, &s), TS_OK);
    CHECK_EQ(s.inference_count, 0u);  // the self-test is not counted
  }
  {  // within tolerance: pass, max diff reported
    Rig r(false, [](ts_config_t &, Fake &f) { f.golden_corrupt_lsb = 1; });
    ts_self_test_t st;
    CHECK_EQ(ts_core_get_self_test(r.core, &st), TS_OK);
    CHECK_EQ(st.status, TS_SELF_TEST_PASS);
    CHECK_EQ(st.max_diff_lsb, 1u);
  }
  {  // off by 3 LSB on every vector: fail at vector 0
    Rig r(false, [](ts_config_t &, Fake &f) { f.golden_corrupt_lsb = 3; });
    ts_self_test_t st;
    CHECK_EQ(ts_core_get_self_test(r.core, &st), TS_OK);
    CHECK_EQ(st.status, TS_SELF_TEST_FAIL);
    CHECK_EQ(st.failed_vector, 0u);
    CHECK_EQ(st.max_diff_lsb, 3u);
    CHECK_CONTAINS(parse_output(r.fake.out).text, "selftest=fail");
    CHECK_CONTAINS(r.text("info\n").text, "selftest=fail vectors=3 failed_vector=0 max_diff_lsb=3");
    const Tlvs t = parse_tlv(r.request(TS_CMD_HELLO, 1, {}).frames[0].payload);
    CHECK((t.v[TS_TLV_SELF_TEST] == std::vector<uint8_t>{TS_SELF_TEST_FAIL, 3, 0, 0, 0, 3}));
  }
  {  // only the third golden vector wrong
    static int8_t outs[3 * kOut];
    Rig r(false, [](ts_config_t &c, Fake &) {
      memcpy(outs, g_golden_out, sizeof(outs));
      outs[2 * kOut + 1] = static_cast<int8_t>(outs[2 * kOut + 1] + 5);
      c.golden_outputs = outs;
    });
    ts_self_test_t st;
    CHECK_EQ(ts_core_get_self_test(r.core, &st), TS_OK);
    CHECK_EQ(st.status, TS_SELF_TEST_FAIL);
    CHECK_EQ(st.failed_vector, 2u);
    CHECK_EQ(st.max_diff_lsb, 5u);
  }
  {  // inference error
    Rig r(false, [](ts_config_t &, Fake &f) { f.fail_infer = true; });
    ts_self_test_t st;
    CHECK_EQ(ts_core_get_self_test(r.core, &st), TS_OK);
    CHECK_EQ(st.status, TS_SELF_TEST_INFER_ERROR);
    CHECK_EQ(st.failed_vector, 0u);
    CHECK_CONTAINS(parse_output(r.fake.out).text, "selftest=error");
  }
  {  // no golden vectors
    Rig r(false, [](ts_config_t &c, Fake &) {
      c.golden_count = 0;
      c.golden_inputs = nullptr;
      c.golden_outputs = nullptr;
    });
    CHECK_EQ(r.init_status, TS_OK);
    ts_self_test_t st;
    CHECK_EQ(ts_core_get_self_test(r.core, &st), TS_OK);
    CHECK_EQ(st.status, TS_SELF_TEST_NOT_RUN);
    CHECK_EQ(r.fake.infer_calls, 0u);
  }
}

// --------------------------------------------------- platform edge cases --

void test_busy_io_storage_and_clock_wrap() {
  {  // re-entrant feed from the write callback is refused
    Rig r;
    r.fake.reenter = r.core;
    (void)r.request(TS_CMD_PING, 1, {});
    CHECK_EQ(r.fake.reenter_status, TS_ERR_BUSY);
    r.fake.reenter = nullptr;
    CHECK(r.text("ping\n").text == "pong\r\n");
  }
  {  // write failures are reported
    Rig r;
    r.fake.fail_write = true;
    const std::vector<uint8_t> f = make_frame(TS_CMD_PING, 1, {});
    CHECK_EQ(ts_core_feed(r.core, f.data(), f.size()), TS_ERR_IO);
    r.fake.fail_write = false;
    CHECK_EQ(ts_core_feed(r.core, f.data(), f.size()), TS_OK);
  }
  {  // boot count persisted across boots; erased flash counts as zero
    Fake f;
    f.has_storage_value = true;
    memset(f.storage, 0xFF, 4);
    ts_config_t c = default_config();
    ts_platform_t p = fake_platform(&f, true);
    CoreMem m;
    ts_core_t *core = nullptr;
    CHECK_EQ(ts_core_init(m.bytes, sizeof(m.bytes), &c, &p, &core), TS_OK);
    CHECK_EQ(le32(f.storage), 1u);
    CHECK_EQ(ts_core_init(m.bytes, sizeof(m.bytes), &c, &p, &core), TS_OK);
    CHECK_EQ(le32(f.storage), 2u);
    f.out.clear();
    feed_str(core, "info\n");
    CHECK_CONTAINS(parse_output(f.out).text, "boot_count=2 ");
    f.fail_storage_write = true;
    CHECK_EQ(ts_core_init(m.bytes, sizeof(m.bytes), &c, &p, &core), TS_ERR_STORAGE);
    CHECK(core != nullptr);  // usable, boot count unknown
    f.out.clear();
    feed_str(core, "info\n");
    CHECK_CONTAINS(parse_output(f.out).text, "boot_count=unknown");
  }
  {  // the 32-bit clock wraps; uptime keeps counting and latency stays right
    Rig r(false, [](ts_config_t &, Fake &f) { f.clock = 0xFFFFFF00u; });
    r.fake.infer_step = 0x200;
    const Parsed p = r.request(TS_CMD_INFER, 1, infer_payload({{1, 2, 3, 4}}));
    CHECK_EQ(le32(p.frames[0].payload.data() + 2), 0x200u);
    r.fake.clock += 0xF0000000u;
    (void)r.send({});
    r.fake.clock += 0xF0000000u;
    const Tlvs t = parse_tlv(r.request(TS_CMD_HELLO, 2, {}).frames[0].payload);
    uint64_t up = le32(t.v[TS_TLV_UPTIME_US].data()) |
                  (static_cast<uint64_t>(le32(t.v[TS_TLV_UPTIME_US].data() + 4)) << 32);
    CHECK(up >= 0x1E0000000ull);
  }
}

void test_largest_model_sizes() {
  // input_size = 1022 and output_size = 1018 are the largest a single INFER can
  // carry; request and reply are then exactly TS_MAX_PAYLOAD bytes.
  static int8_t big_in[TS_MAX_PAYLOAD - 2];
  static int8_t big_out[TS_MAX_PAYLOAD - 6];
  static const int32_t in_shape[1] = {TS_MAX_PAYLOAD - 2};
  static const int32_t out_shape[1] = {TS_MAX_PAYLOAD - 6};
  for (size_t i = 0; i < sizeof(big_in); i++) big_in[i] = static_cast<int8_t>(i % 3 == 0 ? 1 : 0);
  fake_model(big_in, sizeof(big_in), big_out, sizeof(big_out));
  Rig r(false, [](ts_config_t &c, Fake &) {
    c.input_size = TS_MAX_PAYLOAD - 2;
    c.output_size = TS_MAX_PAYLOAD - 6;
    c.input_shape = in_shape;
    c.output_shape = out_shape;
    c.input_rank = 1;
    c.output_rank = 1;
    c.golden_inputs = big_in;
    c.golden_outputs = big_out;
    c.golden_count = 1;
  });
  CHECK_EQ(r.init_status, TS_OK);
  ts_self_test_t st;
  CHECK_EQ(ts_core_get_self_test(r.core, &st), TS_OK);
  CHECK_EQ(st.status, TS_SELF_TEST_PASS);
  std::vector<uint8_t> pl = {1, 0};
  for (int8_t x : big_in) pl.push_back(static_cast<uint8_t>(x));
  CHECK_EQ(pl.size(), TS_MAX_PAYLOAD);
  Parsed p = r.request(TS_CMD_INFER, 1, pl);
  CHECK_EQ(p.frames.size(), 1u);
  CHECK_EQ(p.frames[0].cmd, 0x83);
  CHECK_EQ(p.frames[0].payload.size(), TS_MAX_PAYLOAD);
  CHECK(memcmp(p.frames[0].payload.data() + 6, big_out, sizeof(big_out)) == 0);
  const Tlvs t = parse_tlv(r.request(TS_CMD_HELLO, 2, {}).frames[0].payload);
  CHECK(t.well_formed);
  CHECK_EQ(le32(t.v[TS_TLV_INPUT_SIZE].data()), TS_MAX_PAYLOAD - 2);
  // MLPerf db buffer at full size; results line lists every output.
  std::string cmd = "db load 1022%db ";
  for (size_t i = 0; i < sizeof(big_in); i++) cmd += big_in[i] ? "01" : "00";
  cmd += "%";
  CHECK_CONTAINS(r.text(cmd.c_str()).text, "e-[Command too long]");  // 2044 hex digits > TS_MAX_LINE
  std::string load = "db load 1022%";
  CHECK(r.text(load.c_str()).text == "m-[Expecting 1022 bytes]\r\nm-ready\r\n");
  std::string out;
  for (size_t off = 0; off < sizeof(big_in); off += 100) {
    std::string chunk = "db ";
    for (size_t i = off; i < off + 100 && i < sizeof(big_in); i++) chunk += big_in[i] ? "01" : "00";
    chunk += "%";
    out += r.text(chunk.c_str()).text;
  }
  CHECK_CONTAINS(out, "m-load-done");
  const std::string res = r.text("infer 1 0%").text;
  CHECK_CONTAINS(res, "m-infer-done");
  size_t commas = 0;
  for (char ch : res) commas += ch == ',';
  CHECK_EQ(commas, TS_MAX_PAYLOAD - 7);
}

// The two m-lap-us values of an `infer` reply (0, 0 when absent).
void lap_pair(const std::string &reply, unsigned long long *t0, unsigned long long *t1) {
  *t0 = *t1 = 0;
  const char *l0 = strstr(reply.c_str(), "m-lap-us-");
  const char *l1 = l0 != nullptr ? strstr(l0 + 1, "m-lap-us-") : nullptr;
  CHECK(l0 != nullptr && l1 != nullptr);
  if (l0 == nullptr || l1 == nullptr) return;
  *t0 = strtoull(l0 + 9, nullptr, 10);
  *t1 = strtoull(l1 + 9, nullptr, 10);
}

// MLPerf timestamps bracket the inferences only: the lines before the first are
// written and the platform's transmitter drained before the clock is read, and
// both m-lap-us lines are printed after the second. With a blocking UART write at
// 115200 baud (87 us per byte) the measured time is the inference time alone.
void test_mlperf_timestamps_exclude_transmit_time() {
  Rig r;
  CHECK_CONTAINS(r.text("db load 4%db 01020304%").text, "m-load-done");
  r.fake.infer_step = 1000;
  r.fake.write_us_per_byte = 87;
  const uint32_t flushes = r.fake.flush_calls;
  const std::string out = r.text("infer 3 2%").text;
  CHECK_EQ(r.fake.flush_calls - flushes, 2u);  // before each timestamp
  unsigned long long t0 = 0, t1 = 0;
  lap_pair(out, &t0, &t1);
  CHECK_EQ(t1 - t0, 3000u);
  CHECK_CONTAINS(out, "m-warmup-done\r\nm-infer-start-3\r\nm-lap-us-");  // upstream order
  CHECK_CONTAINS(out, "\r\nm-infer-done\r\nm-results-[");

  // Without a flush hook the core still writes its own buffer before reading the clock.
  Fake f;
  f.infer_step = 1000;
  ts_config_t c = default_config();
  ts_platform_t pl = fake_platform(&f);
  pl.flush = nullptr;
  CoreMem m;
  ts_core_t *core = nullptr;
  CHECK_EQ(ts_core_init(m.bytes, sizeof(m.bytes), &c, &pl, &core), TS_OK);
  feed_str(core, "db load 4%db 01020304%");
  f.write_us_per_byte = 87;
  f.out.clear();
  feed_str(core, "infer 2 0%");
  lap_pair(parse_output(f.out).text, &t0, &t1);
  CHECK_EQ(t1 - t0, 2000u);

  // A failing flush hook is an I/O error, like a failing write.
  r.fake.fail_flush = true;
  CHECK_EQ(ts_core_feed(r.core, reinterpret_cast<const uint8_t *>("timestamp%"), 10), TS_ERR_IO);
  r.fake.fail_flush = false;
  CHECK_EQ(ts_core_feed(r.core, reinterpret_cast<const uint8_t *>("timestamp%"), 10), TS_OK);
}

// The model input (MLPerf db buffer) is capped by the build setting TS_MAX_INPUT_BYTES;
// a binary INFER carries at most TS_MAX_PAYLOAD - 2 input bytes whatever it is. `make
// test` runs this file twice: with the default cap and with the MLPerf vision input.
void test_input_buffer_build_setting() {
  enum { kImage = 96 * 96 * 3 };  // MLPerf vww01 input, 27,648 bytes
  CHECK(ts_core_size() <= TS_CORE_MEM_BYTES);
  CHECK(TS_CORE_MEM_BYTES <= 6144u + TS_MAX_INPUT_BYTES + 7u);  // the documented RAM cost
  static const int32_t shape[4] = {1, 96, 96, 3};
  auto image_model = [](ts_config_t &c, Fake &) {
    c.input_size = kImage;
    c.input_shape = shape;
    c.input_rank = 4;
    c.golden_count = 0;
    c.golden_inputs = nullptr;
    c.golden_outputs = nullptr;
  };
#if TS_MAX_INPUT_BYTES >= 96 * 96 * 3
  static int8_t img[kImage];
  for (size_t i = 0; i < kImage; i++) img[i] = static_cast<int8_t>(static_cast<uint8_t>(i * 7u));
  Rig r(false, image_model);
  CHECK_EQ(r.init_status, TS_OK);
  const Tlvs t = parse_tlv(r.request(TS_CMD_HELLO, 1, {}).frames[0].payload);
  CHECK_EQ(le32(t.v[TS_TLV_INPUT_SIZE].data()), kImage);
  // Binary INFER: one vector does not fit a payload.
  std::vector<uint8_t> pl = {1, 0};
  pl.resize(TS_MAX_PAYLOAD, 0);
  check_error(r.request(TS_CMD_INFER, 2, pl), TS_ERR_WRONG_INPUT_SIZE, TS_CMD_INFER, 2);
  CHECK(r.text("db load 27649%").text ==
        "e-[Supplied buffer size 27649 exceeds maximum of 27648]\r\nm-ready\r\n");
  CHECK(r.text("db load 27648%").text == "m-[Expecting 27648 bytes]\r\nm-ready\r\n");
  // As the MLCommons runner loads it: 31 bytes (62 hex digits) per `db` command.
  size_t ready = 0, done = 0;
  static const char kHex[] = "0123456789abcdef";
  for (size_t off = 0; off < kImage; off += 31) {
    std::string cmd = "db ";
    for (size_t i = off; i < off + 31 && i < kImage; i++) {
      const uint8_t b = static_cast<uint8_t>(img[i]);
      cmd += kHex[b >> 4];
      cmd += kHex[b & 0xFu];
    }
    cmd += "%";
    const std::string reply = r.text(cmd.c_str()).text;
    ready += reply.find("m-ready") != std::string::npos;
    done += reply.find("m-load-done") != std::string::npos;
  }
  CHECK_EQ(ready, (kImage + 30) / 31);
  CHECK_EQ(done, 1u);
  CHECK(r.text("db print%").text.rfind("m-buffer-00-07-0e-15-1c-23-2a-31\r\n", 0) == 0);
  // out[0] = clamp(sum) = -128 (108 periods of all int8 values), out[1] = in[0] = 0
  CHECK_CONTAINS(r.text("infer 1 0%").text, "m-infer-done\r\nm-results-[-34.500,-2.500]\r\n");
#else
  Rig r(false, image_model);
  CHECK_EQ(r.init_status, TS_ERR_INVALID_ARGUMENT);  // raise TS_MAX_INPUT_BYTES for this model
#endif
}

}  // namespace

// ------------------------------------------------------------ serial link --

void test_link() {
  Rig r;
  // Not reported until the glue says what its Serial is.
  CHECK(!parse_tlv(r.request(TS_CMD_HELLO, 1, {}).frames[0].payload).present[TS_TLV_LINK]);
  CHECK(r.text("info\n").text.find("link=") == std::string::npos);

  const ts_link_t uart = {TS_LINK_UART, 115200u, 256u};
  CHECK_EQ(ts_core_set_link(r.core, &uart), TS_OK);
  Tlvs t = parse_tlv(r.request(TS_CMD_HELLO, 2, {}).frames[0].payload);
  CHECK(t.well_formed);
  CHECK((t.v[TS_TLV_LINK] == std::vector<uint8_t>{TS_LINK_UART, 0x00, 0xC2, 0x01, 0x00, 0x00, 0x01,
                                                  0x00, 0x00}));
  CHECK_CONTAINS(r.text("info\n").text, "link=uart baud=115200 rx_window=256\r\n");

  const ts_link_t usb = {TS_LINK_USB_CDC, 0u, 0u};
  CHECK_EQ(ts_core_set_link(r.core, &usb), TS_OK);
  t = parse_tlv(r.request(TS_CMD_HELLO, 3, {}).frames[0].payload);
  CHECK((t.v[TS_TLV_LINK] == std::vector<uint8_t>{TS_LINK_USB_CDC, 0, 0, 0, 0, 0, 0, 0, 0}));
  CHECK_CONTAINS(r.text("info\n").text, "link=usb-cdc baud=0 rx_window=0\r\n");

  // A UART without a baud rate, a baud rate on USB, an unknown kind: refused, unchanged.
  const ts_link_t bad[] = {{TS_LINK_UART, 0u, 256u}, {TS_LINK_USB_CDC, 9600u, 0u}, {7u, 0u, 0u},
                           {TS_LINK_UNKNOWN, 115200u, 0u}};
  for (const ts_link_t &b : bad) CHECK_EQ(ts_core_set_link(r.core, &b), TS_ERR_INVALID_ARGUMENT);
  CHECK_EQ(ts_core_set_link(r.core, nullptr), TS_ERR_INVALID_ARGUMENT);
  CHECK_EQ(ts_core_set_link(nullptr, &uart), TS_ERR_INVALID_ARGUMENT);
  t = parse_tlv(r.request(TS_CMD_HELLO, 4, {}).frames[0].payload);
  CHECK_EQ(t.v[TS_TLV_LINK].size(), 9u);
  CHECK_EQ(t.v[TS_TLV_LINK][0], TS_LINK_USB_CDC);

  // Unknown again: the tag disappears.
  const ts_link_t unknown = {TS_LINK_UNKNOWN, 0u, 0u};
  CHECK_EQ(ts_core_set_link(r.core, &unknown), TS_OK);
  CHECK(!parse_tlv(r.request(TS_CMD_HELLO, 5, {}).frames[0].payload).present[TS_TLV_LINK]);
}

int main() {
  test_crc32();
  test_cobs_round_trip();
  test_cobs_decode_errors();
  test_frame_codec();
  test_status_tables();
  test_init_banner_and_preconditions();
  test_ping();
  test_hello();
  test_infer();
  test_infer_bigger_input_refused_when_model_invalid();
  test_stats_and_reset();
  test_unknown_and_reserved_commands();
  test_bad_crc_every_byte();
  test_bad_framing_truncated_and_length();
  test_garbage_between_frames_and_split_feeding();
  test_frame_timeout();
  test_text_mode();
  test_mlperf();
  test_target_units();
  test_self_test();
  test_busy_io_storage_and_clock_wrap();
  test_largest_model_sizes();
  test_mlperf_timestamps_exclude_transmit_time();
  test_input_buffer_build_setting();
  test_link();
  printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
