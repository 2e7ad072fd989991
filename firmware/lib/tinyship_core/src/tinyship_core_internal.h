// tinyship_core_internal.h - definitions shared by the core's source files; not
// part of the API (that is tinyship_core.h, unchanged by the split).
//
// The core is one library split by concern, each file with one job:
//   tinyship_core.cpp          lifecycle API: init/feed, config checks, banner,
//                              status and command name tables
//   tinyship_core_output.cpp   buffered output and number formatting
//   tinyship_core_framing.cpp  CRC-32, COBS, packet parsing, frame reader/writer
//   tinyship_core_commands.cpp binary commands (PING, HELLO/INFO TLVs, INFER, STATS)
//   tinyship_core_text.cpp     text console (help, info, stats, ping), line reader
//   tinyship_core_mlperf.cpp   MLPerf Tiny DUT mode (name%, profile%, db%, infer%, ...)
//   tinyship_core_stats.cpp    clock, timed inference, statistics, golden self-test
// The flash-slot commands (0x10-0x1F, issue 11) get their own file the same way; a
// new file is added to CORE_FILES in firmware/Makefile and to CORE_CPP in
// host/tinyship/device/virtual/_core.py (PlatformIO builds every .cpp here).
// Besides struct ts_core (the API's opaque type), everything here lives in namespace
// ts_internal (names used by more than one file); what one file alone uses stays in
// that file's anonymous namespace.
//
// C++17, no dynamic allocation, no exceptions, no RTTI, no stdio: all output is
// formatted by the small helpers in tinyship_core_output.cpp so the core links on
// newlib-nano without printf/float support.
#ifndef TINYSHIP_CORE_INTERNAL_H
#define TINYSHIP_CORE_INTERNAL_H

#include "tinyship_core.h"
#include "ts_flash.h"
#include "ts_slot_store.h"

#include <stdint.h>
#include <string.h>

namespace ts_internal {

// ------------------------------------------------------------- constants --

constexpr uint32_t kMagic = 0x54534331u;  // "TSC1"
constexpr size_t kOutBuf = 256;
constexpr uint32_t kMaxString = 64;  // longest config string (INFO TLV budget)
constexpr uint32_t kMaxRank = 8;
constexpr size_t kMinPacket = TS_HEADER_SIZE + TS_CRC_SIZE;

enum RxMode : uint8_t { kModeText = 0, kModeFrame = 1 };

// Status reasons by code ("bad crc"), TS_STATUS_COUNT entries (tinyship_core.cpp).
extern const char *const kStatusReason[];

// ------------------------------------------------------------------ COBS --

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

// ------------------------------------------------------------ byte helpers --

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

inline size_t bounded_strlen(const char *s, size_t max) {
  size_t n = 0;
  while (n <= max && s[n] != '\0') n++;
  return n;
}

inline bool streq(const char *a, const char *b) { return strcmp(a, b) == 0; }

// Parsed packet view into a decoded buffer.
struct Packet {
  uint8_t cmd;
  uint16_t seq;
  const uint8_t *payload;
  size_t len;
};

}  // namespace ts_internal

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
  ts_internal::CobsDecoder cobs;
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

  // model slots (tinyship_core_slots.cpp); slots_on when cfg.flash is set
  bool slots_on;
  uint8_t running_source;  // ts_running_source_t
  uint8_t running_mode;    // ts_running_mode_t
  ts_config_t factory_cfg; // the config as given: the factory model
  ts_slot_limits_t limits; // what a slot image may need of this firmware
  ts_slot_record rec;      // scratch: one slot read from flash
  char run_version[TS_SLOT_VERSION_LEN + 1u];  // the running slot's strings and shapes
  char run_sha[2u * TS_SLOT_SHA256_LEN + 1u];
  int32_t run_in_shape[8];
  int32_t run_out_shape[8];
  uint32_t run_seq;  // the running slot's sequence number (SLOT_CONFIRM checks it)
  // an install in progress (SLOT_BEGIN .. SLOT_END)
  bool inst_active;
  uint8_t inst_slot;
  uint32_t inst_len;
  uint32_t inst_next;
  uint32_t inst_header_crc;
  uint32_t inst_seq;

  // buffered output
  size_t out_len;
  uint8_t out[ts_internal::kOutBuf];

  // Last member, so that an overrun of the receive buffer leaves the block
  // (the fuzz test allocates exactly ts_core_size() bytes for ASan).
  uint8_t rx[TS_MAX_PACKET];
};

namespace ts_internal {

// tinyship_core_output.cpp: buffered output (written by flush) and formatting.
void flush(ts_core *c);
void out_bytes(ts_core *c, const uint8_t *p, size_t n);
void out_str(ts_core *c, const char *s);
void out_char(ts_core *c, char ch);
void out_u64(ts_core *c, uint64_t v);
void out_i64(ts_core *c, int64_t v);
void out_hex8(ts_core *c, uint8_t v);
void out_hex32(ts_core *c, uint32_t v);
void out_fixed(ts_core *c, float v, unsigned decimals);
void out_crlf(ts_core *c);

// tinyship_core_stats.cpp: clock, timed inference, self-test.
uint64_t tick(ts_core *c);
uint64_t tick_after_flush(ts_core *c);
ts_status_t timed_infer(ts_core *c, const int8_t *in, int8_t *out, uint32_t *latency);
void run_self_test(ts_core *c);
const char *self_test_word(uint32_t status);

// tinyship_core_framing.cpp: packet parsing, frame reader and writer.
ts_status_t parse_packet(const uint8_t *buf, size_t n, Packet *pkt);
void send_packet(ts_core *c, uint8_t cmd, uint16_t seq, size_t len);
void send_error(ts_core *c, ts_status_t code, uint8_t req_cmd, uint16_t seq);
void send_response(ts_core *c, const Packet &req, size_t len);
void rx_reset(ts_core *c);
void end_frame(ts_core *c);

// tinyship_core_commands.cpp: binary command dispatch.
void dispatch_packet(ts_core *c, const Packet &req);

// tinyship_core_text.cpp: line parsing and the line reader (text and MLPerf).
size_t tokenize(char *s, char **tok, size_t max);
int32_t parse_int(const char *s);
void end_line(ts_core *c, bool mlperf);

// tinyship_core_mlperf.cpp: one MLPerf command line (without its '%').
void mlperf_command(ts_core *c, char *line);

// model slots (tinyship_core_slots.cpp)
bool slots_config_ok(const ts_config_t &f, const ts_platform_t &p);
void boot_model(ts_core *c);
bool dispatch_slot_command(ts_core *c, const Packet &req);

}  // namespace ts_internal

#endif  // TINYSHIP_CORE_INTERNAL_H
