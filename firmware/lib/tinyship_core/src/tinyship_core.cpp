// tinyship_core.cpp - portable device core (see tinyship_core.h, PROTOCOL.md).
//
// C++17, no dynamic allocation, no exceptions, no RTTI, no stdio: all output is
// formatted by the small helpers below so the core links on newlib-nano
// without printf/float support.
#include "tinyship_core.h"

#include <stdint.h>
#include <string.h>

#include <cmath>

namespace {

// ---------------------------------------------------------------- tables --

#define TS_X_REASON(name, code, text) text,
#define TS_X_NAME(name, code, text) #name,
const char *const kStatusReason[] = {TS_STATUS_LIST(TS_X_REASON)};
const char *const kStatusName[] = {TS_STATUS_LIST(TS_X_NAME)};
#undef TS_X_REASON
#undef TS_X_NAME

// The list must be dense 0..N-1 so the tables can be indexed by code.
#define TS_X_CHECK(name, code, text) static_assert(name == code, #name);
TS_STATUS_LIST(TS_X_CHECK)
#undef TS_X_CHECK
static_assert(TS_STATUS_COUNT_ == TS_STATUS_COUNT, "TS_STATUS_COUNT out of date");
static_assert(sizeof(kStatusReason) / sizeof(kStatusReason[0]) == TS_STATUS_COUNT,
              "status table size");

struct CommandEntry {
  uint8_t code;
  const char *name;
};
#define TS_X_CMD(name, code, text) {code, text},
const CommandEntry kCommands[] = {TS_COMMAND_LIST(TS_X_CMD)};
#undef TS_X_CMD

constexpr uint32_t kMagic = 0x54534331u;  // "TSC1"
constexpr size_t kOutBuf = 256;
constexpr uint32_t kMaxString = 64;  // longest config string (INFO TLV budget)
constexpr uint32_t kMaxRank = 8;
constexpr size_t kMinPacket = TS_HEADER_SIZE + TS_CRC_SIZE;

enum RxMode : uint8_t { kModeText = 0, kModeFrame = 1 };

// Incremental COBS decoder shared by the receive path and ts_cobs_decode.
struct CobsDecoder {
  uint8_t remaining;  // data bytes left in the current block
  uint8_t last_code;
  bool started;       // at least one code byte seen

  void reset() {
    remaining = 0;
    last_code = 0;
    started = false;
  }
  // Feed one non-zero byte. Returns false when `out` is full.
  bool push(uint8_t b, uint8_t *out, size_t cap, size_t *len) {
    if (remaining == 0) {
      if (started && last_code != 0xFFu) {
        if (*len >= cap) return false;
        out[(*len)++] = 0;
      }
      started = true;
      last_code = b;
      remaining = static_cast<uint8_t>(b - 1u);
      return true;
    }
    if (*len >= cap) return false;
    out[(*len)++] = b;
    remaining--;
    return true;
  }
  // True when the data seen so far ends on a block boundary.
  bool complete() const { return remaining == 0; }
};

// COBS encoder writing into any sink with put(const uint8_t*, size_t) -> bool.
template <typename Sink>
bool cobs_encode_to(const uint8_t *in, size_t n, Sink &sink) {
  size_t i = 0;
  for (;;) {
    size_t run = 0;
    while (i + run < n && in[i + run] != 0 && run < 254u) run++;
    const uint8_t code = static_cast<uint8_t>(run + 1u);
    if (!sink.put(&code, 1) || !sink.put(in + i, run)) return false;
    i += run;
    if (i >= n) return true;
    if (run == 254u) continue;  // 0xFF block: no zero consumed
    i++;                        // the zero the block stands for
    if (i == n) {
      const uint8_t last = 1;
      return sink.put(&last, 1);
    }
  }
}

struct BufferSink {
  uint8_t *out;
  size_t cap;
  size_t len;
  bool put(const uint8_t *p, size_t n) {
    if (n > cap - len) return false;
    if (n != 0) memcpy(out + len, p, n);
    len += n;
    return true;
  }
};

inline void put_le16(uint8_t *p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint16_t get_le16(const uint8_t *p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
inline uint32_t get_le32(const uint8_t *p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

size_t bounded_strlen(const char *s, size_t max) {
  size_t n = 0;
  while (n <= max && s[n] != '\0') n++;
  return n;
}

bool streq(const char *a, const char *b) { return strcmp(a, b) == 0; }

// Parsed packet view into a decoded buffer.
struct Packet {
  uint8_t cmd;
  uint16_t seq;
  const uint8_t *payload;
  size_t len;
};

// Steps 3-5 of the receiver rules on a decoded packet.
ts_status_t parse_packet(const uint8_t *buf, size_t n, Packet *pkt) {
  if (n < kMinPacket) return TS_ERR_BAD_LENGTH;
  const size_t body = n - TS_CRC_SIZE;
  if (ts_crc32(0, buf, body) != get_le32(buf + body)) return TS_ERR_BAD_CRC;
  pkt->cmd = buf[0];
  pkt->seq = get_le16(buf + 1);
  pkt->payload = buf + TS_HEADER_SIZE;
  pkt->len = body - TS_HEADER_SIZE;
  const uint16_t declared = get_le16(buf + 3);
  if (declared != pkt->len || declared > TS_MAX_PAYLOAD) return TS_ERR_BAD_LENGTH;
  return TS_OK;
}

}  // namespace

// ------------------------------------------------------------ core state --

struct ts_core {
  uint32_t magic;
  ts_config_t cfg;
  ts_platform_t plat;
  ts_self_test_t self_test;

  // statistics
  uint32_t infer_count;
  uint32_t lat_min;
  uint32_t lat_max;
  uint64_t lat_sum;
  uint32_t frames_ok;
  uint32_t errors[TS_STATUS_COUNT];

  // clock, extended to 64 bits
  uint32_t clock_last;
  uint64_t uptime_us;
  uint64_t last_rx_us;

  uint32_t boot_count;
  bool boot_count_known;
  bool busy;
  bool io_error;

  // serial link reported in INFO (ts_core_set_link; kind 0 = not reported)
  ts_link_t link;

  // binary receive
  uint8_t mode;
  bool rx_overflow;
  CobsDecoder cobs;
  size_t rx_len;
  uint8_t tx[TS_MAX_PACKET];

  // text receive
  size_t line_len;
  bool line_overflow;
  char line[TS_MAX_LINE + 1];

  // MLPerf db buffer (the model input, up to TS_MAX_INPUT_BYTES) and last output
  size_t db_size;
  size_t db_pos;
  int8_t db[TS_MAX_INPUT_BYTES];
  int8_t last_out[TS_MAX_PAYLOAD];

  // buffered output
  size_t out_len;
  uint8_t out[kOutBuf];

  // Last member, so that an overrun of the receive buffer leaves the block
  // (the fuzz test allocates exactly ts_core_size() bytes for ASan).
  uint8_t rx[TS_MAX_PACKET];
};

static_assert(sizeof(ts_core) <= TS_CORE_MEM_BYTES, "raise TS_CORE_MEM_BYTES");
// A positive size well below parse_int's saturation (1e9), so `db load N` compares exactly.
static_assert(TS_MAX_INPUT_BYTES >= 1u && TS_MAX_INPUT_BYTES <= 100000000u,
              "TS_MAX_INPUT_BYTES out of range");

namespace {

// ----------------------------------------------------------------- output --

void flush(ts_core *c) {
  if (c->out_len == 0) return;
  if (c->plat.write(c->plat.user, c->out, c->out_len) != TS_OK) c->io_error = true;
  c->out_len = 0;
}

void out_bytes(ts_core *c, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (c->out_len == kOutBuf) flush(c);
    size_t chunk = kOutBuf - c->out_len;
    if (chunk > n) chunk = n;
    memcpy(c->out + c->out_len, p, chunk);
    c->out_len += chunk;
    p += chunk;
    n -= chunk;
  }
}

void out_str(ts_core *c, const char *s) {
  out_bytes(c, reinterpret_cast<const uint8_t *>(s), strlen(s));
}

void out_char(ts_core *c, char ch) {
  const uint8_t b = static_cast<uint8_t>(ch);
  out_bytes(c, &b, 1);
}

void out_u64(ts_core *c, uint64_t v) {
  char buf[21];
  size_t i = sizeof(buf);
  buf[--i] = '\0';
  do {
    buf[--i] = static_cast<char>('0' + v % 10u);
    v /= 10u;
  } while (v != 0);
  out_str(c, buf + i);
}

void out_i64(ts_core *c, int64_t v) {
  if (v < 0) {
    out_char(c, '-');
    out_u64(c, static_cast<uint64_t>(-(v + 1)) + 1u);
  } else {
    out_u64(c, static_cast<uint64_t>(v));
  }
}

void out_hex8(ts_core *c, uint8_t v) {
  static const char kHex[] = "0123456789abcdef";
  out_char(c, kHex[v >> 4]);
  out_char(c, kHex[v & 0xFu]);
}

void out_hex32(ts_core *c, uint32_t v) {
  out_str(c, "0x");
  for (int s = 24; s >= 0; s -= 8) out_hex8(c, static_cast<uint8_t>(v >> s));
}

// Fixed-point decimal with `decimals` digits (no printf %f on newlib-nano).
void out_fixed(ts_core *c, float v, unsigned decimals) {
  uint32_t mul = 1;
  for (unsigned i = 0; i < decimals; i++) mul *= 10u;
  float scaled = v * static_cast<float>(mul);
  if (!(scaled == scaled)) {  // NaN
    out_str(c, "nan");
    return;
  }
  if (scaled > 9.0e15f || scaled < -9.0e15f) {
    out_str(c, scaled > 0 ? "inf" : "-inf");
    return;
  }
  int64_t r = static_cast<int64_t>(scaled + (scaled >= 0 ? 0.5f : -0.5f));
  if (r < 0) {
    out_char(c, '-');
    r = -r;
  }
  out_u64(c, static_cast<uint64_t>(r) / mul);
  if (decimals == 0) return;
  out_char(c, '.');
  uint64_t frac = static_cast<uint64_t>(r) % mul;
  for (uint32_t d = mul / 10u; d > 0; d /= 10u) {
    out_char(c, static_cast<char>('0' + (frac / d) % 10u));
  }
}

void out_crlf(ts_core *c) { out_str(c, "\r\n"); }

// ------------------------------------------------------------------ clock --

uint64_t tick(ts_core *c) {
  const uint32_t now = c->plat.micros(c->plat.user);
  c->uptime_us += static_cast<uint32_t>(now - c->clock_last);
  c->clock_last = now;
  return c->uptime_us;
}

// The clock, read once everything queued so far has left the device: the core's
// buffer is written and the platform's transmitter drained (platform flush), so
// transmit time is never counted in an MLPerf measurement.
uint64_t tick_after_flush(ts_core *c) {
  flush(c);
  if (c->plat.flush != nullptr && c->plat.flush(c->plat.user) != TS_OK) c->io_error = true;
  return tick(c);
}

// ------------------------------------------------------------- inference --

void record_latency(ts_core *c, uint32_t us) {
  if (c->infer_count == 0 || us < c->lat_min) c->lat_min = us;
  if (us > c->lat_max) c->lat_max = us;
  c->lat_sum += us;
  c->infer_count++;
}

// One timed inference; counted in the statistics.
ts_status_t timed_infer(ts_core *c, const int8_t *in, int8_t *out, uint32_t *latency) {
  const uint32_t t0 = c->plat.micros(c->plat.user);
  const ts_status_t st = c->plat.infer(c->plat.user, in, c->cfg.input_size, out,
                                       c->cfg.output_size);
  const uint32_t t1 = c->plat.micros(c->plat.user);
  if (st != TS_OK) return TS_ERR_INFERENCE_FAILED;
  const uint32_t us = static_cast<uint32_t>(t1 - t0);
  record_latency(c, us);
  if (latency != nullptr) *latency = us;
  return TS_OK;
}

void run_self_test(ts_core *c) {
  ts_self_test_t &r = c->self_test;
  r.vectors = c->cfg.golden_count;
  r.failed_vector = 0xFFFFu;
  r.max_diff_lsb = 0;
  if (c->cfg.golden_count == 0 || c->cfg.model_crc_check == TS_CRC_MISMATCH) {
    r.status = TS_SELF_TEST_NOT_RUN;
    return;
  }
  r.status = TS_SELF_TEST_PASS;
  const size_t in_n = c->cfg.input_size;
  const size_t out_n = c->cfg.output_size;
  for (uint32_t g = 0; g < c->cfg.golden_count; g++) {
    int8_t *out = c->last_out;
    const ts_status_t st = c->plat.infer(c->plat.user, c->cfg.golden_inputs + g * in_n,
                                         in_n, out, out_n);
    if (st != TS_OK) {
      r.status = TS_SELF_TEST_INFER_ERROR;
      r.failed_vector = g;
      return;
    }
    const int8_t *want = c->cfg.golden_outputs + g * out_n;
    for (size_t i = 0; i < out_n; i++) {
      int d = static_cast<int>(out[i]) - static_cast<int>(want[i]);
      if (d < 0) d = -d;
      if (static_cast<uint32_t>(d) > r.max_diff_lsb) r.max_diff_lsb = static_cast<uint32_t>(d);
      if (static_cast<uint32_t>(d) > c->cfg.golden_tolerance_lsb &&
          r.status == TS_SELF_TEST_PASS) {
        r.status = TS_SELF_TEST_FAIL;
        r.failed_vector = g;
      }
    }
  }
  memset(c->last_out, 0, sizeof(c->last_out));
}

const char *self_test_word(uint32_t status) {
  switch (status) {
    case TS_SELF_TEST_PASS: return "pass";
    case TS_SELF_TEST_FAIL: return "fail";
    case TS_SELF_TEST_NOT_RUN: return "not-run";
    default: return "error";
  }
}

const char *reset_word(uint32_t reason) {
  static const char *const kWords[] = {"unknown", "power-on", "pin",     "watchdog", "software",
                                       "brownout", "lockup",  "wake-up", "other"};
  return reason < sizeof(kWords) / sizeof(kWords[0]) ? kWords[reason] : "unknown";
}

// ------------------------------------------------------------ binary send --

struct CoreSink {
  ts_core *c;
  bool put(const uint8_t *p, size_t n) {
    out_bytes(c, p, n);
    return true;
  }
};

// Send the packet whose payload (len bytes) is already in c->tx + header.
void send_packet(ts_core *c, uint8_t cmd, uint16_t seq, size_t len) {
  uint8_t *p = c->tx;
  p[0] = cmd;
  put_le16(p + 1, seq);
  put_le16(p + 3, static_cast<uint16_t>(len));
  const size_t body = TS_HEADER_SIZE + len;
  put_le32(p + body, ts_crc32(0, p, body));
  const uint8_t zero = 0;
  out_bytes(c, &zero, 1);
  CoreSink sink{c};
  (void)cobs_encode_to(p, body + TS_CRC_SIZE, sink);
  out_bytes(c, &zero, 1);
  flush(c);
}

void send_error(ts_core *c, ts_status_t code, uint8_t req_cmd, uint16_t seq) {
  const char *reason = ts_status_str(code);
  size_t n = bounded_strlen(reason, TS_MAX_REASON);
  if (n > TS_MAX_REASON) n = TS_MAX_REASON;
  uint8_t *pl = c->tx + TS_HEADER_SIZE;
  pl[0] = static_cast<uint8_t>(code);
  pl[1] = req_cmd;
  memcpy(pl + 2, reason, n);
  if (static_cast<unsigned>(code) < TS_STATUS_COUNT) c->errors[code]++;
  send_packet(c, TS_CMD_ERROR, seq, 2 + n);
}

void send_response(ts_core *c, const Packet &req, size_t len) {
  c->frames_ok++;
  send_packet(c, static_cast<uint8_t>(req.cmd | TS_RESPONSE_FLAG), req.seq, len);
}

// TLV writer over the tx payload area.
struct Tlv {
  uint8_t *p;
  size_t len;
  bool ok;
  void put(uint8_t tag, const void *v, size_t n) {
    if (!ok || n > 255u || len + 2u + n > TS_MAX_PAYLOAD) {
      ok = false;
      return;
    }
    p[len++] = tag;
    p[len++] = static_cast<uint8_t>(n);
    if (n != 0) memcpy(p + len, v, n);
    len += n;
  }
  void u8(uint8_t tag, uint32_t v) {
    const uint8_t b = static_cast<uint8_t>(v);
    put(tag, &b, 1);
  }
  void u16(uint8_t tag, uint32_t v) {
    uint8_t b[2];
    put_le16(b, static_cast<uint16_t>(v));
    put(tag, b, 2);
  }
  void u32(uint8_t tag, uint32_t v) {
    uint8_t b[4];
    put_le32(b, v);
    put(tag, b, 4);
  }
  void u64(uint8_t tag, uint64_t v) {
    uint8_t b[8];
    put_le32(b, static_cast<uint32_t>(v));
    put_le32(b + 4, static_cast<uint32_t>(v >> 32));
    put(tag, b, 8);
  }
  void f32(uint8_t tag, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    u32(tag, bits);
  }
  void str(uint8_t tag, const char *s) {
    if (s != nullptr) put(tag, s, strlen(s));
  }
  void shape(uint8_t tag, const int32_t *dims, uint32_t rank) {
    uint8_t b[4 * kMaxRank];
    for (uint32_t i = 0; i < rank; i++) put_le32(b + 4 * i, static_cast<uint32_t>(dims[i]));
    put(tag, b, 4u * rank);
  }
};

void handle_hello(ts_core *c, const Packet &req) {
  const ts_config_t &f = c->cfg;
  Tlv t{c->tx + TS_HEADER_SIZE, 0, true};
  t.u8(TS_TLV_PROTOCOL_VERSION, TS_PROTOCOL_VERSION);
  t.str(TS_TLV_FIRMWARE_VERSION, f.firmware_version);
  t.str(TS_TLV_MODEL_VERSION, f.model_version);
  t.str(TS_TLV_MODEL_SHA256, f.model_sha256);
  t.u8(TS_TLV_MODEL_CRC_OK, f.model_crc_check);
  t.u32(TS_TLV_MODEL_CRC32, f.model_crc32);
  t.str(TS_TLV_PROFILE, f.profile);
  t.str(TS_TLV_BOARD, f.board);
  t.u32(TS_TLV_ARENA_USED, f.arena_used);
  t.u32(TS_TLV_ARENA_SIZE, f.arena_size);
  t.shape(TS_TLV_INPUT_SHAPE, f.input_shape, f.input_rank);
  t.shape(TS_TLV_OUTPUT_SHAPE, f.output_shape, f.output_rank);
  t.u8(TS_TLV_INPUT_DTYPE, TS_DTYPE_INT8);
  t.u8(TS_TLV_OUTPUT_DTYPE, TS_DTYPE_INT8);
  t.f32(TS_TLV_INPUT_SCALE, f.input_scale);
  t.u32(TS_TLV_INPUT_ZERO_POINT, static_cast<uint32_t>(f.input_zero_point));
  t.f32(TS_TLV_OUTPUT_SCALE, f.output_scale);
  t.u32(TS_TLV_OUTPUT_ZERO_POINT, static_cast<uint32_t>(f.output_zero_point));
  t.u64(TS_TLV_UPTIME_US, c->uptime_us);
  if (c->boot_count_known) t.u32(TS_TLV_BOOT_COUNT, c->boot_count);
  if (f.reset_reason != TS_RESET_UNKNOWN) t.u8(TS_TLV_RESET_REASON, f.reset_reason);
  uint8_t st[6];
  st[0] = static_cast<uint8_t>(c->self_test.status);
  put_le16(st + 1, static_cast<uint16_t>(c->self_test.vectors));
  put_le16(st + 3, static_cast<uint16_t>(c->self_test.failed_vector));
  st[5] = static_cast<uint8_t>(c->self_test.max_diff_lsb > 255u ? 255u : c->self_test.max_diff_lsb);
  t.put(TS_TLV_SELF_TEST, st, sizeof(st));
  t.u16(TS_TLV_MAX_PAYLOAD, TS_MAX_PAYLOAD);
  t.str(TS_TLV_GIT_COMMIT, f.git_commit);
  t.str(TS_TLV_BUILD_TIME, f.build_time);
  t.u32(TS_TLV_INPUT_SIZE, f.input_size);
  t.u32(TS_TLV_OUTPUT_SIZE, f.output_size);
  t.f32(TS_TLV_TARGET_MEAN, f.target_mean);
  t.f32(TS_TLV_TARGET_SCALE, f.target_scale);
  if (c->link.kind != TS_LINK_UNKNOWN) {
    uint8_t ln[9];
    ln[0] = static_cast<uint8_t>(c->link.kind);
    put_le32(ln + 1, c->link.baud);
    put_le32(ln + 5, c->link.rx_window);
    t.put(TS_TLV_LINK, ln, sizeof(ln));
  }
  if (!t.ok) {  // cannot happen with the string limits enforced at init
    send_error(c, TS_ERR_BUFFER_TOO_SMALL, req.cmd, req.seq);
    return;
  }
  send_response(c, req, t.len);
}

void handle_infer(ts_core *c, const Packet &req) {
  if (req.len < 2) {
    send_error(c, TS_ERR_BAD_PAYLOAD, req.cmd, req.seq);
    return;
  }
  const size_t count = get_le16(req.payload);
  if (count == 0) {
    send_error(c, TS_ERR_BAD_PAYLOAD, req.cmd, req.seq);
    return;
  }
  const size_t in_n = c->cfg.input_size;
  const size_t out_n = c->cfg.output_size;
  // 64-bit: count * input_size may exceed a 32-bit size_t when TS_MAX_INPUT_BYTES is large.
  if (static_cast<uint64_t>(req.len) != 2u + static_cast<uint64_t>(count) * in_n) {
    send_error(c, TS_ERR_WRONG_INPUT_SIZE, req.cmd, req.seq);
    return;
  }
  if (2u + count * (4u + out_n) > TS_MAX_PAYLOAD) {
    send_error(c, TS_ERR_BATCH_TOO_LARGE, req.cmd, req.seq);
    return;
  }
  if (c->cfg.model_crc_check == TS_CRC_MISMATCH) {
    send_error(c, TS_ERR_MODEL_INVALID, req.cmd, req.seq);
    return;
  }
  uint8_t *pl = c->tx + TS_HEADER_SIZE;
  put_le16(pl, static_cast<uint16_t>(count));
  size_t off = 2;
  const int8_t *in = reinterpret_cast<const int8_t *>(req.payload + 2);
  for (size_t v = 0; v < count; v++) {
    uint32_t us = 0;
    int8_t *out = reinterpret_cast<int8_t *>(pl + off + 4);
    if (timed_infer(c, in + v * in_n, out, &us) != TS_OK) {
      send_error(c, TS_ERR_INFERENCE_FAILED, req.cmd, req.seq);
      return;
    }
    memcpy(c->last_out, out, out_n);
    put_le32(pl + off, us);
    off += 4 + out_n;
  }
  send_response(c, req, off);
}

void handle_stats(ts_core *c, const Packet &req) {
  ts_stats_t s;
  (void)ts_core_get_stats(c, &s);
  uint8_t *pl = c->tx + TS_HEADER_SIZE;
  put_le32(pl + 0, s.inference_count);
  put_le32(pl + 4, s.latency_min_us);
  put_le32(pl + 8, s.latency_mean_us);
  put_le32(pl + 12, s.latency_max_us);
  put_le32(pl + 16, s.frames_ok);
  pl[20] = TS_STATUS_COUNT;
  for (uint32_t i = 0; i < TS_STATUS_COUNT; i++) put_le32(pl + 21 + 4 * i, s.errors[i]);
  send_response(c, req, 21 + 4 * TS_STATUS_COUNT);
}

void dispatch_packet(ts_core *c, const Packet &req) {
  switch (req.cmd) {
    case TS_CMD_PING:
      memcpy(c->tx + TS_HEADER_SIZE, req.payload, req.len);
      send_response(c, req, req.len);
      break;
    case TS_CMD_HELLO:
      tick(c);
      handle_hello(c, req);
      break;
    case TS_CMD_INFER:
      handle_infer(c, req);
      break;
    case TS_CMD_STATS:
      handle_stats(c, req);
      break;
    case TS_CMD_RESET_STATS:
      (void)ts_core_reset_stats(c);
      send_packet(c, static_cast<uint8_t>(req.cmd | TS_RESPONSE_FLAG), req.seq, 0);
      break;
    default:
      send_error(c, TS_ERR_UNKNOWN_COMMAND, req.cmd, req.seq);
      break;
  }
}

void rx_reset(ts_core *c) {
  c->rx_len = 0;
  c->rx_overflow = false;
  c->cobs.reset();
}

// A 0x00 closed a frame: check it, answer it, choose the next mode.
void end_frame(ts_core *c) {
  if (!c->cobs.started && !c->rx_overflow) return;  // empty frame: resync only
  ts_status_t st = TS_OK;
  Packet pkt{};
  if (c->rx_overflow) {
    st = TS_ERR_BAD_LENGTH;
  } else if (!c->cobs.complete()) {
    st = TS_ERR_BAD_FRAMING;
  } else {
    st = parse_packet(c->rx, c->rx_len, &pkt);
  }
  rx_reset(c);  // pkt still points into c->rx, which is left untouched
  if (st == TS_OK) {
    c->mode = kModeText;
    dispatch_packet(c, pkt);
    return;
  }
  // After a good CRC (length mismatch) the header is trusted: echo it, and the
  // stream is in sync. Otherwise stay in frame state: the closing 0x00 may open
  // the next frame.
  const bool trusted = (pkt.payload != nullptr);
  send_error(c, st, trusted ? pkt.cmd : 0, trusted ? pkt.seq : static_cast<uint16_t>(TS_SEQ_UNKNOWN));
  c->mode = trusted ? kModeText : kModeFrame;
}

// --------------------------------------------------------------- text mode --

// Split `s` in place into at most `max` space-separated tokens.
size_t tokenize(char *s, char **tok, size_t max) {
  size_t n = 0;
  while (*s != '\0' && n < max) {
    while (*s == ' ' || *s == '\t') *s++ = '\0';
    if (*s == '\0') break;
    tok[n++] = s;
    while (*s != '\0' && *s != ' ' && *s != '\t') s++;
  }
  return n;
}

// atoi-like: optional sign, leading digits; saturates at +-1e9.
int32_t parse_int(const char *s) {
  int32_t sign = 1;
  if (*s == '-' || *s == '+') {
    if (*s == '-') sign = -1;
    s++;
  }
  int32_t v = 0;
  while (*s >= '0' && *s <= '9') {
    if (v < 100000000) v = v * 10 + (*s - '0');
    else v = 1000000000;
    s++;
  }
  return sign * v;
}

int hex_digit(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

void out_shape(ts_core *c, const int32_t *dims, uint32_t rank) {
  out_char(c, '[');
  for (uint32_t i = 0; i < rank; i++) {
    if (i) out_char(c, ',');
    out_i64(c, dims[i]);
  }
  out_char(c, ']');
}

void text_info(ts_core *c) {
  const ts_config_t &f = c->cfg;
  tick(c);
  out_str(c, "tinyship proto=");
  out_u64(c, TS_PROTOCOL_VERSION);
  out_str(c, " fw=");
  out_str(c, f.firmware_version);
  out_str(c, " board=");
  out_str(c, f.board);
  out_crlf(c);
  out_str(c, "model=");
  out_str(c, f.model_version);
  out_str(c, " profile=");
  out_str(c, f.profile);
  out_str(c, " crc32=");
  out_hex32(c, f.model_crc32);
  out_str(c, " crc=");
  out_str(c, f.model_crc_check == TS_CRC_OK ? "ok"
             : f.model_crc_check == TS_CRC_MISMATCH ? "MISMATCH" : "not-checked");
  out_crlf(c);
  out_str(c, "sha256=");
  out_str(c, f.model_sha256);
  out_crlf(c);
  out_str(c, "arena used=");
  out_u64(c, f.arena_used);
  out_str(c, " size=");
  out_u64(c, f.arena_size);
  out_crlf(c);
  for (int which = 0; which < 2; which++) {
    const bool in = which == 0;
    out_str(c, in ? "input size=" : "output size=");
    out_u64(c, in ? f.input_size : f.output_size);
    out_str(c, " shape=");
    out_shape(c, in ? f.input_shape : f.output_shape, in ? f.input_rank : f.output_rank);
    out_str(c, " dtype=int8 scale=");
    out_fixed(c, in ? f.input_scale : f.output_scale, 6);
    out_str(c, " zero_point=");
    out_i64(c, in ? f.input_zero_point : f.output_zero_point);
    out_crlf(c);
  }
  out_str(c, "target mean=");
  out_fixed(c, f.target_mean, 6);
  out_str(c, " scale=");
  out_fixed(c, f.target_scale, 6);
  out_crlf(c);
  out_str(c, "uptime_us=");
  out_u64(c, c->uptime_us);
  out_str(c, " boot_count=");
  if (c->boot_count_known) out_u64(c, c->boot_count);
  else out_str(c, "unknown");
  out_str(c, " reset=");
  out_str(c, reset_word(f.reset_reason));
  out_crlf(c);
  if (f.git_commit != nullptr || f.build_time != nullptr) {
    out_str(c, "git=");
    out_str(c, f.git_commit != nullptr ? f.git_commit : "unknown");
    out_str(c, " built=");
    out_str(c, f.build_time != nullptr ? f.build_time : "unknown");
    out_crlf(c);
  }
  if (c->link.kind != TS_LINK_UNKNOWN) {
    out_str(c, "link=");
    out_str(c, c->link.kind == TS_LINK_UART      ? "uart"
               : c->link.kind == TS_LINK_USB_CDC ? "usb-cdc"
                                                 : "stream");
    out_str(c, " baud=");
    out_u64(c, c->link.baud);
    out_str(c, " rx_window=");
    out_u64(c, c->link.rx_window);
    out_crlf(c);
  }
  out_str(c, "selftest=");
  out_str(c, self_test_word(c->self_test.status));
  out_str(c, " vectors=");
  out_u64(c, c->self_test.vectors);
  if (c->self_test.failed_vector != 0xFFFFu) {
    out_str(c, " failed_vector=");
    out_u64(c, c->self_test.failed_vector);
  }
  out_str(c, " max_diff_lsb=");
  out_u64(c, c->self_test.max_diff_lsb);
  out_crlf(c);
}

void text_stats(ts_core *c) {
  ts_stats_t s;
  (void)ts_core_get_stats(c, &s);
  out_str(c, "inferences=");
  out_u64(c, s.inference_count);
  out_str(c, " latency_us min=");
  out_u64(c, s.latency_min_us);
  out_str(c, " mean=");
  out_u64(c, s.latency_mean_us);
  out_str(c, " max=");
  out_u64(c, s.latency_max_us);
  out_str(c, " frames_ok=");
  out_u64(c, s.frames_ok);
  out_crlf(c);
  for (uint32_t i = 1; i < TS_STATUS_COUNT; i++) {
    if (s.errors[i] == 0) continue;
    out_str(c, "errors code=");
    out_u64(c, i);
    out_str(c, " (");
    out_str(c, kStatusReason[i]);
    out_str(c, ") count=");
    out_u64(c, s.errors[i]);
    out_crlf(c);
  }
}

void text_command(ts_core *c, char *line) {
  char *tok[4];
  const size_t n = tokenize(line, tok, 4);
  if (n == 0) return;
  if (streq(tok[0], "help")) {
    out_str(c,
            "tinyship commands (end with Enter):\r\n"
            "  help   this list\r\n"
            "  info   versions, model, arena, shapes, uptime, self-test\r\n"
            "  stats  inference count, latency, error counters\r\n"
            "  ping   answers pong\r\n"
            "MLPerf Tiny commands end with '%' (name% profile% ...);\r\n"
            "binary frames start with 0x00, see firmware/PROTOCOL.md\r\n");
  } else if (streq(tok[0], "ping")) {
    out_str(c, "pong\r\n");
  } else if (streq(tok[0], "info")) {
    text_info(c);
  } else if (streq(tok[0], "stats")) {
    text_stats(c);
  } else {
    out_str(c, "error: unknown command '");
    out_str(c, tok[0]);
    out_str(c, "' (try help)\r\n");
  }
}

// ------------------------------------------------------------- MLPerf mode --

void mlperf_results(ts_core *c) {
  out_str(c, "m-results-[");
  for (size_t i = 0; i < c->cfg.output_size; i++) {
    if (i) out_char(c, ',');
    // In target units, so the runner compares predictions in the data's own units.
    const float z = static_cast<float>(static_cast<int32_t>(c->last_out[i]) -
                                       c->cfg.output_zero_point) * c->cfg.output_scale;
    out_fixed(c, c->cfg.target_mean + c->cfg.target_scale * z, 3);
  }
  out_str(c, "]\r\n");
}

void mlperf_lap(ts_core *c, uint64_t us) {
  out_str(c, "m-lap-us-");
  out_u64(c, us);
  out_crlf(c);
}

void mlperf_infer(ts_core *c, char **tok, size_t n) {
  int32_t iters = 1;
  int32_t warmup = 10;
  if (n > 1) {
    iters = parse_int(tok[1]);
    if (iters <= 0) {
      out_str(c, "e-[Inference iterations must be >0]\r\n");
      return;
    }
    if (n > 2) {
      warmup = parse_int(tok[2]);
      if (warmup < 0) {
        out_str(c, "e-[Inference warmup must be >=0]\r\n");
        return;
      }
    }
  }
  if (c->db_pos != c->cfg.input_size) {
    out_str(c, "e-[Input db has ");
    out_u64(c, c->db_pos);
    out_str(c, " bytes, expected ");
    out_u64(c, c->cfg.input_size);
    out_str(c, "]\r\n");
    return;
  }
  if (c->cfg.model_crc_check == TS_CRC_MISMATCH) {
    out_str(c, "e-[Model invalid]\r\n");
    return;
  }
  out_str(c, "m-warmup-start-");
  out_u64(c, static_cast<uint32_t>(warmup));
  out_crlf(c);
  flush(c);
  bool failed = false;
  for (int32_t i = 0; i < warmup && !failed; i++) {
    failed = c->plat.infer(c->plat.user, c->db, c->cfg.input_size, c->last_out,
                           c->cfg.output_size) != TS_OK;
  }
  out_str(c, "m-warmup-done\r\n");
  out_str(c, "m-infer-start-");
  out_u64(c, static_cast<uint32_t>(iters));
  out_crlf(c);
  // Nothing is transmitted between the two timestamps: the lines above are sent
  // before the first, and both m-lap-us lines are printed after the second.
  const uint64_t t0 = tick_after_flush(c);
  for (int32_t i = 0; i < iters && !failed; i++) {
    failed = timed_infer(c, c->db, c->last_out, nullptr) != TS_OK;
  }
  const uint64_t t1 = tick_after_flush(c);
  mlperf_lap(c, t0);
  mlperf_lap(c, t1);
  if (failed) {
    out_str(c, "e-[Inference failed]\r\n");
    return;
  }
  out_str(c, "m-infer-done\r\n");
  mlperf_results(c);
}

void mlperf_db(ts_core *c, char **tok, size_t n) {
  if (n < 2) {
    out_str(c, "e-[Command 'db' requires a subcommand]\r\n");
  } else if (streq(tok[1], "load")) {
    if (n < 3) {
      out_str(c, "e-[Command 'db load' requires the # of bytes]\r\n");
      return;
    }
    const int32_t size = parse_int(tok[2]);
    if (size <= 0) {
      out_str(c, "e-[Command 'db load' must be >0 bytes]\r\n");
      return;
    }
    c->db_pos = 0;
    if (static_cast<uint32_t>(size) > c->cfg.input_size) {
      c->db_size = 0;
      out_str(c, "e-[Supplied buffer size ");
      out_u64(c, static_cast<uint32_t>(size));
      out_str(c, " exceeds maximum of ");
      out_u64(c, c->cfg.input_size);
      out_str(c, "]\r\n");
      return;
    }
    c->db_size = static_cast<size_t>(size);
    out_str(c, "m-[Expecting ");
    out_u64(c, c->db_size);
    out_str(c, " bytes]\r\n");
  } else if (streq(tok[1], "print")) {
    for (size_t i = 0; i < c->db_size; i++) {
      if (i % 8u == 0) out_str(c, "m-buffer-");
      out_hex8(c, static_cast<uint8_t>(c->db[i]));
      if ((i + 1) % 8u == 0 || i + 1 == c->db_size) out_crlf(c);
      else out_char(c, '-');
    }
  } else {
    const char *hex = tok[1];
    const size_t len = strlen(hex);
    if (len & 1u) {
      out_str(c, "e-[Insufficent number of hex digits]\r\n");
      return;
    }
    if (c->db_size == 0) {
      out_str(c, "e-[Command 'db load' first]\r\n");
      return;
    }
    for (size_t i = 0; i < len && c->db_pos < c->db_size; i += 2) {
      const int hi = hex_digit(hex[i]);
      const int lo = hex_digit(hex[i + 1]);
      if (hi < 0 || lo < 0) {
        out_str(c, "e-[Invalid hex digit '");
        out_char(c, hex[i]);
        out_char(c, hex[i + 1]);
        out_str(c, "']\r\n");
        return;
      }
      c->db[c->db_pos++] = static_cast<int8_t>(static_cast<uint8_t>(hi * 16 + lo));
      if (c->db_pos == c->db_size) {
        out_str(c, "m-load-done\r\n");
        return;
      }
    }
  }
}

void mlperf_command(ts_core *c, char *line) {
  char *tok[4];
  const size_t n = tokenize(line, tok, 4);
  if (n == 0) {
    out_str(c, "e-[Unknown command: ]\r\n");
  } else if (streq(tok[0], "name")) {
    out_str(c, "m-name-dut-[tinyship]\r\n");
  } else if (streq(tok[0], "timestamp")) {
    mlperf_lap(c, tick_after_flush(c));
  } else if (streq(tok[0], "profile")) {
    // The benchmark name (the runner picks its test script by it), not the registry
    // version: that is in the banner and INFO.
    out_str(c, "m-profile-[ULPMark for tinyML Firmware V0.0.1]\r\n");
    out_str(c, "m-model-[");
    out_str(c, c->cfg.mlperf_model != nullptr ? c->cfg.mlperf_model : TS_MLPERF_MODEL_DEFAULT);
    out_str(c, "]\r\n");
  } else if (streq(tok[0], "help")) {
    out_str(c,
            "ULPMark for tinyML Firmware V0.0.1\r\n\r\n"
            "help         : Print this information\r\n"
            "name         : Print the name of the device\r\n"
            "timestsamp   : Generate a timetsamp\r\n"
            "db SUBCMD    : Manipulate a generic byte buffer\r\n"
            "  load N     : Allocate N bytes and set load counter\r\n"
            "  db HH[HH]* : Load 8-bit hex byte(s) until N bytes\r\n"
            "  print [N=16] [offset=0]\r\n"
            "             : Print N bytes at offset as hex\r\n"
            "infer N [W=0]: Load input, execute N inferences after W warmup loops\r\n"
            "results      : Return the result fp32 vector\r\n");
  } else if (streq(tok[0], "db")) {
    mlperf_db(c, tok, n);
  } else if (streq(tok[0], "infer")) {
    mlperf_infer(c, tok, n);
  } else if (streq(tok[0], "results")) {
    mlperf_results(c);
  } else {
    out_str(c, "e-[Unknown command: ");
    out_str(c, tok[0]);
    out_str(c, "]\r\n");
  }
  out_str(c, "m-ready\r\n");
}

void end_line(ts_core *c, bool mlperf) {
  c->line[c->line_len] = '\0';
  const bool overflow = c->line_overflow;
  c->line_len = 0;
  c->line_overflow = false;
  if (overflow) {
    out_str(c, mlperf ? "e-[Command too long]\r\nm-ready\r\n" : "error: line too long\r\n");
  } else if (mlperf) {
    mlperf_command(c, c->line);
  } else {
    text_command(c, c->line);
  }
  flush(c);
}

void feed_byte(ts_core *c, uint8_t b) {
  if (c->mode == kModeFrame) {
    if (b == 0) {
      end_frame(c);
    } else if (!c->rx_overflow &&
               !c->cobs.push(b, c->rx, sizeof(c->rx), &c->rx_len)) {
      c->rx_overflow = true;
    }
    return;
  }
  if (b == 0) {  // text state: a frame starts, the partial line is dropped
    c->line_len = 0;
    c->line_overflow = false;
    rx_reset(c);
    c->mode = kModeFrame;
  } else if (b == '%') {
    end_line(c, true);
  } else if (b == '\n' || b == '\r') {
    if (c->line_len > 0 || c->line_overflow) end_line(c, false);
  } else if (c->line_len < TS_MAX_LINE) {
    c->line[c->line_len++] = static_cast<char>(b);
  } else {
    c->line_overflow = true;
  }
}

void write_banner(ts_core *c) {
  out_str(c, "tinyship ready proto=");
  out_u64(c, TS_PROTOCOL_VERSION);
  out_str(c, " fw=");
  out_str(c, c->cfg.firmware_version);
  out_str(c, " model=");
  out_str(c, c->cfg.model_version);
  out_str(c, " board=");
  out_str(c, c->cfg.board);
  out_str(c, " selftest=");
  out_str(c, self_test_word(c->self_test.status));
  out_crlf(c);
  flush(c);
}

bool valid_string(const char *s, bool required) {
  if (s == nullptr) return !required;
  return bounded_strlen(s, kMaxString) <= kMaxString;
}

// An MLPerf model name the runner's `m-model-\[([^]]+)]` reads back whole: not empty,
// and no ']', '%', space or line end.
bool valid_mlperf_model(const char *s) {
  if (s == nullptr) return true;
  const size_t n = bounded_strlen(s, kMaxString);
  if (n == 0 || n > kMaxString) return false;
  for (size_t i = 0; i < n; i++) {
    const char ch = s[i];
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '_' || ch == '.' || ch == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

// ------------------------------------------------------------------- API --

extern "C" {

const char *ts_status_str(ts_status_t status) {
  const unsigned i = static_cast<unsigned>(status);
  return i < TS_STATUS_COUNT ? kStatusReason[i] : "?";
}

const char *ts_status_name(ts_status_t status) {
  const unsigned i = static_cast<unsigned>(status);
  return i < TS_STATUS_COUNT ? kStatusName[i] : "?";
}

const char *ts_command_name(uint8_t cmd) {
  for (const CommandEntry &e : kCommands) {
    if (e.code == cmd) return e.name;
  }
  return "?";
}

uint32_t ts_crc32(uint32_t crc, const uint8_t *data, size_t len) {
  if (data == nullptr) return crc;
  crc = ~crc;
  for (size_t i = 0; i < len; i++) {
    crc ^= data[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

ts_status_t ts_cobs_encode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                           size_t *out_len) {
  if ((in == nullptr && in_len != 0) || out == nullptr || out_len == nullptr) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  *out_len = 0;
  BufferSink sink{out, out_cap, 0};
  if (!cobs_encode_to(in, in_len, sink)) return TS_ERR_BUFFER_TOO_SMALL;
  *out_len = sink.len;
  return TS_OK;
}

ts_status_t ts_cobs_decode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                           size_t *out_len) {
  if ((in == nullptr && in_len != 0) || (out == nullptr && out_cap != 0) ||
      out_len == nullptr) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  *out_len = 0;
  CobsDecoder dec;
  dec.reset();
  size_t n = 0;
  for (size_t i = 0; i < in_len; i++) {
    if (in[i] == 0) return TS_ERR_BAD_FRAMING;
    if (!dec.push(in[i], out, out_cap, &n)) return TS_ERR_BUFFER_TOO_SMALL;
  }
  if (!dec.complete()) return TS_ERR_BAD_FRAMING;
  *out_len = n;
  return TS_OK;
}

ts_status_t ts_frame_encode(uint8_t cmd, uint16_t seq, const uint8_t *payload,
                            size_t payload_len, uint8_t *out, size_t out_cap,
                            size_t *out_len) {
  if ((payload == nullptr && payload_len != 0) || out == nullptr || out_len == nullptr) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  *out_len = 0;
  if (payload_len > TS_MAX_PAYLOAD) return TS_ERR_BAD_LENGTH;
  uint8_t pkt[TS_MAX_PACKET];
  pkt[0] = cmd;
  put_le16(pkt + 1, seq);
  put_le16(pkt + 3, static_cast<uint16_t>(payload_len));
  if (payload_len != 0) memcpy(pkt + TS_HEADER_SIZE, payload, payload_len);
  const size_t body = TS_HEADER_SIZE + payload_len;
  put_le32(pkt + body, ts_crc32(0, pkt, body));
  BufferSink sink{out, out_cap, 0};
  const uint8_t zero = 0;
  if (!sink.put(&zero, 1) || !cobs_encode_to(pkt, body + TS_CRC_SIZE, sink) ||
      !sink.put(&zero, 1)) {
    return TS_ERR_BUFFER_TOO_SMALL;
  }
  *out_len = sink.len;
  return TS_OK;
}

ts_status_t ts_frame_decode(const uint8_t *body, size_t body_len, uint8_t *cmd, uint16_t *seq,
                            uint8_t *payload, size_t payload_cap, size_t *payload_len) {
  if ((body == nullptr && body_len != 0) || cmd == nullptr || seq == nullptr ||
      (payload == nullptr && payload_cap != 0) || payload_len == nullptr) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  *payload_len = 0;
  uint8_t pkt[TS_MAX_PACKET];
  CobsDecoder dec;
  dec.reset();
  size_t n = 0;
  for (size_t i = 0; i < body_len; i++) {
    if (body[i] == 0) return TS_ERR_BAD_FRAMING;
    if (!dec.push(body[i], pkt, sizeof(pkt), &n)) return TS_ERR_BAD_LENGTH;
  }
  if (!dec.complete()) return TS_ERR_BAD_FRAMING;
  Packet p{};
  const ts_status_t st = parse_packet(pkt, n, &p);
  if (p.payload != nullptr) {
    *cmd = p.cmd;
    *seq = p.seq;
  }
  if (st != TS_OK) return st;
  if (p.len > payload_cap) return TS_ERR_BUFFER_TOO_SMALL;
  if (p.len != 0) memcpy(payload, p.payload, p.len);
  *payload_len = p.len;
  return TS_OK;
}

size_t ts_core_size(void) { return sizeof(ts_core); }

ts_status_t ts_core_init(void *mem, size_t mem_len, const ts_config_t *config,
                         const ts_platform_t *platform, ts_core_t **out_core) {
  if (out_core != nullptr) *out_core = nullptr;
  if (mem == nullptr || out_core == nullptr || config == nullptr || platform == nullptr ||
      mem_len < sizeof(ts_core) || (reinterpret_cast<uintptr_t>(mem) & 7u) != 0) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  const ts_platform_t &p = *platform;
  const ts_config_t &f = *config;
  if (p.write == nullptr || p.micros == nullptr || p.infer == nullptr ||
      (p.storage_read == nullptr) != (p.storage_write == nullptr)) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  if (!valid_string(f.firmware_version, true) || !valid_string(f.model_version, true) ||
      !valid_string(f.model_sha256, true) || !valid_string(f.profile, true) ||
      !valid_string(f.board, true) || !valid_string(f.git_commit, false) ||
      !valid_string(f.build_time, false) || !valid_mlperf_model(f.mlperf_model)) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  if (f.input_size == 0 || f.input_size > TS_MAX_INPUT_BYTES || f.output_size == 0 ||
      f.output_size > TS_MAX_PAYLOAD - 6u || f.input_rank > kMaxRank ||
      f.output_rank > kMaxRank || (f.input_rank != 0 && f.input_shape == nullptr) ||
      (f.output_rank != 0 && f.output_shape == nullptr) || f.model_crc_check > TS_CRC_NOT_CHECKED ||
      f.reset_reason > TS_RESET_OTHER || f.golden_count > 0xFFFEu ||
      (f.golden_count != 0 && (f.golden_inputs == nullptr || f.golden_outputs == nullptr))) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  // A zero target_scale (a config that never set it) would print every result as the mean.
  if (!std::isfinite(f.target_mean) || !std::isfinite(f.target_scale) || f.target_scale == 0.0f) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  ts_core *c = static_cast<ts_core *>(mem);
  memset(c, 0, sizeof(*c));
  c->cfg = f;
  c->plat = p;
  c->mode = kModeText;
  c->cobs.reset();
  c->clock_last = p.micros(p.user);
  c->uptime_us = 0;

  ts_status_t result = TS_OK;
  if (p.storage_read != nullptr) {
    uint8_t b[4] = {0, 0, 0, 0};
    uint32_t count = 0;
    if (p.storage_read(p.user, TS_STORAGE_KEY_BOOT_COUNT, b, 4) == TS_OK) {
      count = get_le32(b);
      if (count == 0xFFFFFFFFu) count = 0;  // erased flash
    }
    count++;
    put_le32(b, count);
    if (p.storage_write(p.user, TS_STORAGE_KEY_BOOT_COUNT, b, 4) == TS_OK) {
      c->boot_count = count;
      c->boot_count_known = true;
    } else {
      result = TS_ERR_STORAGE;  // reported, but the core is usable
    }
  } else if (f.boot_count != 0) {
    c->boot_count = f.boot_count;
    c->boot_count_known = true;
  }

  run_self_test(c);
  c->magic = kMagic;

  write_banner(c);
  c->io_error = false;  // the banner is best effort (USB serial may be closed)
  *out_core = c;
  return result;
}

ts_status_t ts_core_feed(ts_core_t *core, const uint8_t *data, size_t len) {
  if (core == nullptr || core->magic != kMagic || (data == nullptr && len != 0)) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  if (core->busy) return TS_ERR_BUSY;
  core->busy = true;
  core->io_error = false;
  const uint64_t now = tick(core);
  if (core->mode == kModeFrame && now - core->last_rx_us > TS_FRAME_TIMEOUT_US) {
    const bool partial = core->cobs.started || core->rx_overflow;
    rx_reset(core);
    core->mode = kModeText;
    if (partial) send_error(core, TS_ERR_FRAME_TIMEOUT, 0, TS_SEQ_UNKNOWN);
  }
  if (len != 0) core->last_rx_us = now;
  for (size_t i = 0; i < len; i++) feed_byte(core, data[i]);
  flush(core);
  core->busy = false;
  return core->io_error ? TS_ERR_IO : TS_OK;
}

ts_status_t ts_core_get_stats(const ts_core_t *core, ts_stats_t *out) {
  if (core == nullptr || core->magic != kMagic || out == nullptr) return TS_ERR_INVALID_ARGUMENT;
  memset(out, 0, sizeof(*out));
  out->inference_count = core->infer_count;
  if (core->infer_count != 0) {
    out->latency_min_us = core->lat_min;
    out->latency_max_us = core->lat_max;
    out->latency_mean_us = static_cast<uint32_t>(core->lat_sum / core->infer_count);
  }
  out->frames_ok = core->frames_ok;
  memcpy(out->errors, core->errors, sizeof(out->errors));
  return TS_OK;
}

ts_status_t ts_core_reset_stats(ts_core_t *core) {
  if (core == nullptr || core->magic != kMagic) return TS_ERR_INVALID_ARGUMENT;
  core->infer_count = 0;
  core->lat_min = 0;
  core->lat_max = 0;
  core->lat_sum = 0;
  core->frames_ok = 0;
  memset(core->errors, 0, sizeof(core->errors));
  return TS_OK;
}

ts_status_t ts_core_get_self_test(const ts_core_t *core, ts_self_test_t *out) {
  if (core == nullptr || core->magic != kMagic || out == nullptr) return TS_ERR_INVALID_ARGUMENT;
  *out = core->self_test;
  return TS_OK;
}

ts_status_t ts_core_write_banner(ts_core_t *core) {
  if (core == nullptr || core->magic != kMagic) return TS_ERR_INVALID_ARGUMENT;
  if (core->busy) return TS_ERR_BUSY;
  core->io_error = false;
  write_banner(core);
  return core->io_error ? TS_ERR_IO : TS_OK;
}

ts_status_t ts_core_set_arena_used(ts_core_t *core, uint32_t arena_used) {
  if (core == nullptr || core->magic != kMagic) return TS_ERR_INVALID_ARGUMENT;
  core->cfg.arena_used = arena_used;
  return TS_OK;
}

ts_status_t ts_core_set_link(ts_core_t *core, const ts_link_t *link) {
  if (core == nullptr || core->magic != kMagic || link == nullptr ||
      link->kind > TS_LINK_STREAM || (link->kind == TS_LINK_UART) != (link->baud != 0)) {
    return TS_ERR_INVALID_ARGUMENT;
  }
  core->link = *link;
  return TS_OK;
}

}  // extern "C"
