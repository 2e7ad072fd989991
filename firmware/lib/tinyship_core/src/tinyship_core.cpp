// tinyship_core.cpp - portable device core (see tinyship_core.h, PROTOCOL.md):
// the lifecycle API (init, feed, banner, link, arena), the configuration checks,
// the receive router (binary frame or text line) and the status / command name
// tables. The other concerns live in tinyship_core_*.cpp, listed with their jobs
// in tinyship_core_internal.h.
//
// C++17, no dynamic allocation, no exceptions, no RTTI, no stdio.
#include "tinyship_core_internal.h"

#include <cmath>

using namespace ts_internal;

// ---------------------------------------------------------------- tables --

#define TS_X_REASON(name, code, text) text,
#define TS_X_NAME(name, code, text) #name,
namespace ts_internal {
const char *const kStatusReason[] = {TS_STATUS_LIST(TS_X_REASON)};
}  // namespace ts_internal

namespace {

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

}  // namespace

static_assert(sizeof(ts_core) <= TS_CORE_MEM_BYTES, "raise TS_CORE_MEM_BYTES");
// A positive size well below parse_int's saturation (1e9), so `db load N` compares exactly.
static_assert(TS_MAX_INPUT_BYTES >= 1u && TS_MAX_INPUT_BYTES <= 100000000u,
              "TS_MAX_INPUT_BYTES out of range");

namespace {

// ---------------------------------------------------------------- receive --

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

// ------------------------------------------------------------ banner, config --

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
  if (!slots_config_ok(f, p)) return TS_ERR_INVALID_ARGUMENT;
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

  boot_model(c);  // which model runs (factory or a slot), its health check, self-test
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
