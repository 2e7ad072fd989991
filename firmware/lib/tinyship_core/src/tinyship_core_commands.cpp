// tinyship_core_commands.cpp - the binary protocol's command handlers (PING, HELLO/INFO
// with its TLV record, INFER, STATS, RESET_STATS) and their dispatch (PROTOCOL.md).
// See tinyship_core_internal.h for the other files of the core.
#include "tinyship_core_internal.h"

using namespace ts_internal;

namespace {

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
  if (f.device_id_len != 0u) t.put(TS_TLV_DEVICE_ID, f.device_id, f.device_id_len);
  if (c->slots_on) {
    const uint8_t run[2] = {c->running_source, c->running_mode};
    t.put(TS_TLV_RUNNING, run, sizeof(run));
    t.u32(TS_TLV_SLOT_CAPACITY, c->limits.slot_bytes);
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

}  // namespace

namespace ts_internal {

// --------------------------------------------------------------- dispatch --

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
      if (!dispatch_slot_command(c, req)) send_error(c, TS_ERR_UNKNOWN_COMMAND, req.cmd, req.seq);
      break;
  }
}

}  // namespace ts_internal
