// tinyship_core_slots.cpp - model slots in the core: which model runs at boot (factory,
// slot A or B; trial or confirmed) with its health check, and the slot commands 0x10-0x16
// (PROTOCOL.md section 9). Flash layout: ts_slot_store; the boot rule: ts_slot_state;
// the image header: ts_slot_image; write order and power-loss argument: firmware/SLOTS.md.
#include "tinyship_core_internal.h"

using namespace ts_internal;

namespace {

constexpr uint32_t kBootAttempts = 3;  // each failed attempt revokes a slot: 2 slots + factory
constexpr uint8_t kNoSlot = 0xFFu;
constexpr size_t kSlotRecordBytes = 68;
constexpr size_t kSlotInfoFixed = 44 + 2 * kSlotRecordBytes;

const ts_flash_t &flash(const ts_core *c) { return *c->cfg.flash; }

const char kHex[] = "0123456789abcdef";

// ------------------------------------------------------------------ boot --

// The running model's metadata comes from the slot header (strings copied into the core,
// golden vectors read in place from flash).
void use_slot_config(ts_core *c, const ts_slot_header_t &h) {
  ts_config_t &f = c->cfg;
  memcpy(c->run_version, h.model_version, sizeof(c->run_version));
  for (size_t i = 0; i < TS_SLOT_SHA256_LEN; ++i) {
    c->run_sha[2 * i] = kHex[h.sha256[i] >> 4];
    c->run_sha[2 * i + 1] = kHex[h.sha256[i] & 15u];
  }
  c->run_sha[2 * TS_SLOT_SHA256_LEN] = '\0';
  c->run_seq = h.sequence;
  f.model_version = c->run_version;
  f.model_sha256 = c->run_sha;
  f.model_crc32 = h.model_crc32;
  f.model_crc_check = TS_CRC_OK;  // checked by ts_store_read before the slot was chosen
  f.input_size = h.input_bytes;
  f.output_size = h.output_bytes;
  f.input_scale = h.input_scale;
  f.input_zero_point = h.input_zero_point;
  f.output_scale = h.output_scale;
  f.output_zero_point = h.output_zero_point;
  f.target_mean = h.target_mean;
  f.target_scale = h.target_scale;
  f.golden_count = h.n_golden;
  f.golden_inputs = reinterpret_cast<const int8_t *>(h.golden);
  f.golden_outputs =
      reinterpret_cast<const int8_t *>(h.golden + static_cast<size_t>(h.n_golden) * h.input_bytes);
  f.arena_used = 0;
}

bool shape_matches(const int32_t *dims, uint32_t rank, uint32_t bytes) {
  if (rank == 0 || rank > kMaxRank) return false;
  uint64_t n = 1;
  for (uint32_t i = 0; i < rank; ++i) {
    if (dims[i] <= 0) return false;
    n *= static_cast<uint64_t>(dims[i]);
  }
  return n == bytes;
}

// Load the model of `slot` (read into c->rec) and run its self-test. False when the health
// check fails: the model does not load, its shapes are not the header's, or (trial) a
// golden vector differs.
bool run_slot(ts_core *c, uint32_t slot, uint8_t mode) {
  const ts_slot_header_t &h = c->rec.header;
  use_slot_config(c, h);
  ts_model_io_t io{};
  if (c->plat.load_model(c->plat.user, h.body, h.model_len, &io) != TS_OK ||
      !shape_matches(io.input_shape, io.input_rank, h.input_bytes) ||
      !shape_matches(io.output_shape, io.output_rank, h.output_bytes)) {
    return false;
  }
  memcpy(c->run_in_shape, io.input_shape, sizeof(c->run_in_shape));
  memcpy(c->run_out_shape, io.output_shape, sizeof(c->run_out_shape));
  c->cfg.input_shape = c->run_in_shape;
  c->cfg.output_shape = c->run_out_shape;
  c->cfg.input_rank = io.input_rank;
  c->cfg.output_rank = io.output_rank;
  c->cfg.arena_used = io.arena_used;
  run_self_test(c);
  if (mode == TS_BOOT_TRIAL && (c->self_test.status == TS_SELF_TEST_FAIL ||
                                c->self_test.status == TS_SELF_TEST_INFER_ERROR)) {
    return false;
  }
  c->running_source = static_cast<uint8_t>(slot + 1u);
  c->running_mode = mode;
  return true;
}

void run_factory(ts_core *c) {
  c->cfg = c->factory_cfg;
  c->running_source = TS_RUNNING_FACTORY;
  c->running_mode = TS_RUNNING_CONFIRMED;
  ts_model_io_t io{};
  if (c->plat.load_model(c->plat.user, c->cfg.factory_model, c->cfg.factory_model_len, &io) !=
      TS_OK) {
    c->cfg.model_crc_check = TS_CRC_MISMATCH;  // nothing can run: INFER is refused
  } else if (io.arena_used != 0u) {
    c->cfg.arena_used = io.arena_used;
  }
  run_self_test(c);
}

// One boot decision over both slots, with its flag writes done in order. Returns the
// decision; *tried_ok is false when a trial's `tried` write failed (the trial must not run).
// Slots in `skip` (bit per slot) failed to load in this boot although confirmed: they
// count as invalid for the rest of it, without a write (they are tried again next boot).
ts_boot_decision decide(ts_core *c, uint32_t skip, bool *tried_ok) {
  ts_slot_flags fl[TS_FLASH_SLOTS];
  for (uint32_t s = 0; s < TS_FLASH_SLOTS; ++s) {
    if (ts_store_read(c->cfg.flash, s, &c->limits, &c->rec) == 0) {
      fl[s] = c->rec.flags;
    } else {
      fl[s] = ts_slot_flags{};  // unmapped: commit UNSET, never booted
    }
    if ((skip >> s) & 1u) fl[s].crc_ok = 0;
  }
  ts_boot_decision d{};
  *tried_ok = true;
  if (ts_boot_decide(&fl[0], &fl[1], &d) != TS_SLOT_OK) {
    d = ts_boot_decision{};  // cannot happen with decoded flags: factory
    return d;
  }
  for (uint32_t i = 0; i < d.n_actions; ++i) {
    const ts_slot_action &a = d.actions[i];
    const ts_trailer_unit u = a.kind == TS_ACT_MARK_TRIED ? TS_UNIT_TRIED : TS_UNIT_REVOKED;
    if (ts_store_set(c->cfg.flash, a.slot, u) != 0 && u == TS_UNIT_TRIED) *tried_ok = false;
  }
  return d;
}

}  // namespace

namespace ts_internal {

bool slots_config_ok(const ts_config_t &f, const ts_platform_t &p) {
  if (f.device_id_len > TS_MAX_DEVICE_ID || (f.device_id_len != 0u && f.device_id == nullptr)) {
    return false;
  }
  if (f.flash == nullptr) return true;
  return ts_store_geometry_ok(f.flash) != 0 && p.load_model != nullptr &&
         f.factory_model != nullptr && f.factory_model_len != 0u &&
         (f.ops != nullptr || f.n_ops == 0u) && f.n_ops <= 0xFFu;
}

void boot_model(ts_core *c) {
  c->running_source = TS_RUNNING_FACTORY;
  c->running_mode = TS_RUNNING_CONFIRMED;
  c->inst_active = false;
  c->inst_slot = kNoSlot;
  if (c->cfg.flash == nullptr) {  // a board without slots: the factory model, as loaded
    run_self_test(c);
    return;
  }
  c->slots_on = true;
  c->factory_cfg = c->cfg;
  c->limits.profile = c->cfg.profile;
  c->limits.ops = c->cfg.ops;
  c->limits.n_ops = c->cfg.n_ops;
  c->limits.arena_bytes = c->cfg.arena_size;
  c->limits.input_bytes = TS_MAX_INPUT_BYTES;
  c->limits.output_bytes = TS_MAX_PAYLOAD - 6u;
  c->limits.slot_bytes = ts_store_capacity(c->cfg.flash);
  // Each failed attempt takes its slot out of the next decision: a trial is revoked (never
  // run again), a confirmed slot is only skipped for this boot (the boot code never revokes
  // a confirmed slot, so the last confirmed model survives a transient failure).
  uint32_t skip = 0;
  for (uint32_t attempt = 0; attempt < kBootAttempts; ++attempt) {
    bool tried_ok = true;
    const ts_boot_decision d = decide(c, skip, &tried_ok);
    if (d.source == TS_BOOT_FACTORY) break;
    const uint32_t slot = d.source == TS_BOOT_SLOT_A ? TS_SLOT_A : TS_SLOT_B;
    // decide() checked this slot's model CRC (only a bootable slot is chosen) and only
    // flags were written since: parse its header again, not the whole body's CRC.
    const uint8_t *base = c->cfg.flash->map(c->cfg.flash->user, slot);
    if (tried_ok && base != nullptr &&
        ts_slot_image_parse(base, c->limits.slot_bytes, &c->rec.header) == TS_IMG_OK &&
        run_slot(c, slot, d.mode)) {
      return;
    }
    skip |= 1u << slot;
    // A trial that could not be recorded, or failed its health check: never run it again.
    if (d.mode == TS_BOOT_TRIAL) (void)ts_store_set(c->cfg.flash, slot, TS_UNIT_REVOKED);
    c->cfg = c->factory_cfg;
  }
  run_factory(c);
}

}  // namespace ts_internal

namespace {

// --------------------------------------------------------------- commands --

void put_slot_record(uint8_t *p, const ts_slot_record &r) {
  memset(p, 0, kSlotRecordBytes);
  p[0] = r.state;
  p[1] = r.flags.commit;
  p[2] = r.flags.tried;
  p[3] = r.flags.confirmed;
  p[4] = r.flags.revoked;
  p[5] = r.flags.crc_ok;
  p[6] = r.header_status;
  if (r.header_status != TS_IMG_OK) return;
  put_le32(p + 8, r.header.sequence);
  put_le32(p + 12, r.header.model_len);
  put_le32(p + 16, r.header.model_crc32);
  memcpy(p + 20, r.header.sha256, TS_SLOT_SHA256_LEN);
  memcpy(p + 52, r.header.model_version, TS_SLOT_VERSION_LEN);  // NUL-padded
}

void handle_slot_info(ts_core *c, const Packet &req) {
  const ts_flash_t &f = flash(c);
  uint8_t *pl = c->tx + TS_HEADER_SIZE;
  pl[0] = c->running_source;
  pl[1] = c->running_mode;
  pl[2] = c->inst_active ? 1u : 0u;
  pl[3] = c->inst_active ? c->inst_slot : kNoSlot;
  put_le32(pl + 4, c->limits.slot_bytes);
  put_le32(pl + 8, f.sector_size);
  put_le16(pl + 12, static_cast<uint16_t>(f.program_unit));
  put_le16(pl + 14, static_cast<uint16_t>(TS_SLOT_MAX_CHUNK));
  put_le32(pl + 16, f.erase_sector_us);
  put_le32(pl + 20, f.program_chunk_us);
  put_le32(pl + 24, c->inst_active ? c->inst_len : 0u);
  put_le32(pl + 28, c->inst_active ? c->inst_next : 0u);
  put_le32(pl + 32, c->limits.arena_bytes);
  put_le32(pl + 36, c->limits.input_bytes);
  put_le32(pl + 40, c->limits.output_bytes);
  for (uint32_t s = 0; s < TS_FLASH_SLOTS; ++s) {
    if (ts_store_read(&f, s, &c->limits, &c->rec) != 0) c->rec = ts_slot_record{};
    // The running trial's flags read "tried, not confirmed" (class FAILED, which is what
    // the next boot will make of them): report what it is now.
    if (c->running_mode == TS_RUNNING_TRIAL && c->running_source == s + 1u &&
        c->rec.state == TS_SLOT_FAILED) {
      c->rec.state = TS_SLOT_TRIAL;
    }
    put_slot_record(pl + 44 + s * kSlotRecordBytes, c->rec);
  }
  size_t n = kSlotInfoFixed;
  const size_t plen = bounded_strlen(c->limits.profile, kMaxString);
  pl[n++] = static_cast<uint8_t>(plen);
  memcpy(pl + n, c->limits.profile, plen);
  n += plen;
  // At most 255 operator ids (checked at init): 2 + 64 + 2 * 255 fits the payload.
  pl[n++] = static_cast<uint8_t>(c->limits.n_ops);
  for (size_t i = 0; i < c->limits.n_ops; ++i, n += 2) put_le16(pl + n, c->limits.ops[i]);
  send_response(c, req, n);
}

ts_status_t image_refusal(ts_slot_image_status st) {
  switch (st) {
    case TS_IMG_OK: return TS_OK;
    case TS_IMG_ERR_PROFILE: return TS_ERR_SLOT_PROFILE;
    case TS_IMG_ERR_OP: return TS_ERR_SLOT_OP;
    case TS_IMG_ERR_ARENA: return TS_ERR_SLOT_ARENA;
    case TS_IMG_ERR_INPUT:
    case TS_IMG_ERR_OUTPUT: return TS_ERR_SLOT_SHAPE;
    case TS_IMG_ERR_SLOT_SIZE: return TS_ERR_SLOT_SIZE;
    default: return TS_ERR_SLOT_HEADER;
  }
}

// The slot an install may erase: the one not running. With the factory model running
// (e.g. a confirmed slot failed to load in this boot), never a confirmed slot while the
// other is not confirmed (the last confirmed model survives), else one that is not
// pending, else the older one.
uint32_t install_target(ts_core *c, const uint8_t state[2], const uint32_t seq[2]) {
  if (c->running_source == TS_RUNNING_SLOT_A) return TS_SLOT_B;
  if (c->running_source == TS_RUNNING_SLOT_B) return TS_SLOT_A;
  const bool conf_a = state[0] == TS_SLOT_CONFIRMED, conf_b = state[1] == TS_SLOT_CONFIRMED;
  if (conf_a != conf_b) return conf_a ? TS_SLOT_B : TS_SLOT_A;
  const bool pend_a = state[0] == TS_SLOT_PENDING, pend_b = state[1] == TS_SLOT_PENDING;
  if (pend_a != pend_b) return pend_a ? TS_SLOT_B : TS_SLOT_A;
  return seq[1] < seq[0] ? TS_SLOT_B : TS_SLOT_A;
}

void handle_begin(ts_core *c, const Packet &req) {
  ts_slot_header_t &h = c->rec.header;
  // The payload is the header, or its first TS_MAX_PAYLOAD bytes when it is longer (many
  // or large golden vectors): then its CRC is checked when SLOT_END reads it back.
  if (ts_slot_image_parse_prefix(req.payload, req.len, &h) != TS_IMG_OK ||
      req.len != (h.header_len < TS_MAX_PAYLOAD ? h.header_len : TS_MAX_PAYLOAD)) {
    send_error(c, TS_ERR_SLOT_HEADER, req.cmd, req.seq);
    return;
  }
  ts_status_t refusal = image_refusal(ts_slot_image_check(&h, &c->limits));
  if (refusal == TS_OK && (h.input_bytes == 0u || h.output_bytes == 0u)) {
    refusal = TS_ERR_SLOT_SHAPE;  // no tensor: the health check could never pass
  }
  if (refusal != TS_OK) {
    send_error(c, refusal, req.cmd, req.seq);
    return;
  }
  if (c->running_mode == TS_RUNNING_TRIAL) {  // the other slot may be the last confirmed one
    send_error(c, TS_ERR_SLOT_STATE, req.cmd, req.seq);
    return;
  }
  const uint32_t seq = h.sequence;
  const uint32_t image_len = static_cast<uint32_t>(h.header_len) + h.model_len;
  const uint32_t header_crc = h.header_crc32;
  uint8_t state[TS_FLASH_SLOTS];
  uint32_t seqs[TS_FLASH_SLOTS];
  for (uint32_t s = 0; s < TS_FLASH_SLOTS; ++s) {
    if (ts_store_read(c->cfg.flash, s, nullptr, &c->rec) != 0) c->rec = ts_slot_record{};
    state[s] = c->rec.state;
    seqs[s] = c->rec.header_status == TS_IMG_OK ? c->rec.header.sequence : 0u;
    if (c->rec.flags.commit == TS_FLAG_SET && c->rec.header_status == TS_IMG_OK &&
        seq <= c->rec.header.sequence) {
      send_error(c, TS_ERR_SLOT_SEQUENCE, req.cmd, req.seq);
      return;
    }
  }
  const uint32_t slot = install_target(c, state, seqs);
  c->inst_active = false;  // a new BEGIN abandons the install in progress
  if (ts_store_erase_for(c->cfg.flash, slot, image_len) != 0) {
    send_error(c, TS_ERR_FLASH, req.cmd, req.seq);
    return;
  }
  c->inst_active = true;
  c->inst_slot = static_cast<uint8_t>(slot);
  c->inst_len = image_len;
  c->inst_next = 0;
  c->inst_header_crc = header_crc;
  c->inst_seq = seq;
  uint8_t *pl = c->tx + TS_HEADER_SIZE;
  pl[0] = static_cast<uint8_t>(slot);
  put_le32(pl + 1, image_len);
  send_response(c, req, 5);
}

void handle_write(ts_core *c, const Packet &req) {
  if (!c->inst_active) {
    send_error(c, TS_ERR_SLOT_STATE, req.cmd, req.seq);
    return;
  }
  const ts_flash_t &f = flash(c);
  const size_t n = req.len >= 4u ? req.len - 4u : 0u;
  const uint32_t off = req.len >= 4u ? get_le32(req.payload) : 0u;
  const uint8_t *data = req.payload + 4;
  const bool ends_image = static_cast<uint64_t>(off) + n == c->inst_len;
  if (n == 0 || n > TS_SLOT_MAX_CHUNK || off % TS_SLOT_CHUNK_ALIGN != 0u ||
      (n % TS_SLOT_CHUNK_ALIGN != 0u && !ends_image)) {
    send_error(c, TS_ERR_BAD_PAYLOAD, req.cmd, req.seq);
    return;
  }
  if (static_cast<uint64_t>(off) + n > c->inst_len) {
    send_error(c, TS_ERR_SLOT_RANGE, req.cmd, req.seq);
    return;
  }
  const uint8_t *base = f.map(f.user, c->inst_slot);
  if (off != c->inst_next) {
    // Below `next` with the same bytes: a retried frame, answered without writing.
    const bool retry = off < c->inst_next && off + n <= c->inst_next && base != nullptr &&
                       memcmp(base + off, data, n) == 0;
    if (!retry) {
      send_error(c, TS_ERR_SLOT_ORDER, req.cmd, req.seq);
      return;
    }
  } else {
    // Whole program units straight from the payload; a final partial unit padded with
    // 0xFF in the transmit buffer (free until the reply is built).
    const uint32_t unit = f.program_unit;
    const uint32_t whole = static_cast<uint32_t>(n) / unit * unit;
    bool ok = whole == 0u || f.program(f.user, c->inst_slot, off, data, whole) == 0;
    if (ok && whole < n) {
      uint8_t *pad = c->tx + TS_HEADER_SIZE;
      memset(pad, 0xFF, unit);
      memcpy(pad, data + whole, n - whole);
      ok = f.program(f.user, c->inst_slot, off + whole, pad, unit) == 0;
    }
    if (!ok) {
      c->inst_active = false;
      send_error(c, TS_ERR_FLASH, req.cmd, req.seq);
      return;
    }
    c->inst_next = off + static_cast<uint32_t>(n);
  }
  put_le32(c->tx + TS_HEADER_SIZE, c->inst_next);
  send_response(c, req, 4);
}

void handle_end(ts_core *c, const Packet &req) {
  if (!c->inst_active) {
    send_error(c, TS_ERR_SLOT_STATE, req.cmd, req.seq);
    return;
  }
  if (c->inst_next != c->inst_len) {
    send_error(c, TS_ERR_SLOT_ORDER, req.cmd, req.seq);
    return;
  }
  const ts_flash_t &f = flash(c);
  const uint8_t *base = f.map(f.user, c->inst_slot);
  ts_slot_header_t &h = c->rec.header;
  c->inst_active = false;
  // Read back: the header BEGIN carried, a model with the header's CRC-32.
  if (base == nullptr || ts_slot_image_parse(base, c->limits.slot_bytes, &h) != TS_IMG_OK ||
      h.header_crc32 != c->inst_header_crc || ts_slot_image_verify_body(&h) != TS_IMG_OK) {
    send_error(c, TS_ERR_SLOT_VERIFY, req.cmd, req.seq);
    return;
  }
  if (ts_store_set(&f, c->inst_slot, TS_UNIT_COMMIT) != 0) {  // the commit point
    send_error(c, TS_ERR_FLASH, req.cmd, req.seq);
    return;
  }
  // The new model supersedes an untried one in the other slot: revoke it, so that reverting
  // the new model brings back the previous *confirmed* model (or the factory model), never
  // an older one as a trial. Best effort: after a power cut right here both are pending and
  // the newer one still boots first.
  const uint32_t other = 1u - c->inst_slot;
  if (ts_store_read(&f, other, nullptr, &c->rec) == 0 && c->rec.state == TS_SLOT_PENDING) {
    (void)ts_store_set(&f, other, TS_UNIT_REVOKED);
  }
  uint8_t *pl = c->tx + TS_HEADER_SIZE;
  pl[0] = c->inst_slot;
  put_le32(pl + 1, c->inst_seq);
  send_response(c, req, 5);
}

// Reply, push it onto the wire, then reset (a board does not come back from reset()).
void reply_then_reset(ts_core *c, const Packet &req, size_t len) {
  send_response(c, req, len);
  flush(c);
  if (c->plat.flush != nullptr) (void)c->plat.flush(c->plat.user);
  if (c->plat.reset != nullptr) c->plat.reset(c->plat.user);
}

void handle_confirm(ts_core *c, const Packet &req) {
  if (req.len != 0u && req.len != 4u) {
    send_error(c, TS_ERR_BAD_PAYLOAD, req.cmd, req.seq);
    return;
  }
  // With a sequence number, only the model the host means is confirmed: after an
  // unnoticed reset another model may run.
  if (c->running_source == TS_RUNNING_FACTORY ||
      (req.len == 4u && get_le32(req.payload) != c->run_seq)) {
    send_error(c, TS_ERR_SLOT_STATE, req.cmd, req.seq);
    return;
  }
  if (c->running_mode == TS_RUNNING_TRIAL) {
    const uint32_t slot = c->running_source - 1u;
    if (ts_store_set(c->cfg.flash, slot, TS_UNIT_CONFIRMED) != 0) {
      send_error(c, TS_ERR_FLASH, req.cmd, req.seq);
      return;
    }
    c->running_mode = TS_RUNNING_CONFIRMED;
  }
  c->tx[TS_HEADER_SIZE] = c->running_source;
  send_response(c, req, 1);
}

void handle_revert(ts_core *c, const Packet &req) {
  if (c->running_source == TS_RUNNING_FACTORY) {
    send_error(c, TS_ERR_SLOT_STATE, req.cmd, req.seq);
    return;
  }
  const uint32_t slot = c->running_source - 1u;
  // A pending model in the other slot goes too (first: a power cut in between leaves the
  // running model as it was): a revert brings back the previous *confirmed* model, or the
  // factory model, never a new trial.
  const uint32_t other = 1u - slot;
  if (ts_store_read(c->cfg.flash, other, nullptr, &c->rec) == 0 &&
      c->rec.state == TS_SLOT_PENDING && ts_store_set(c->cfg.flash, other, TS_UNIT_REVOKED) != 0) {
    send_error(c, TS_ERR_FLASH, req.cmd, req.seq);
    return;
  }
  if (ts_store_read(c->cfg.flash, slot, nullptr, &c->rec) != 0 ||
      (c->rec.flags.revoked == TS_FLAG_UNSET &&
       ts_store_set(c->cfg.flash, slot, TS_UNIT_REVOKED) != 0)) {
    send_error(c, TS_ERR_FLASH, req.cmd, req.seq);
    return;
  }
  c->inst_active = false;
  uint8_t *pl = c->tx + TS_HEADER_SIZE;
  pl[0] = c->running_source;
  pl[1] = c->plat.reset != nullptr ? 1u : 0u;
  reply_then_reset(c, req, 2);
}

}  // namespace

namespace ts_internal {

bool dispatch_slot_command(ts_core *c, const Packet &req) {
  switch (req.cmd) {
    case TS_CMD_REBOOT:
      if (c->plat.reset == nullptr) return false;  // this glue cannot reset: unknown
      c->inst_active = false;
      reply_then_reset(c, req, 0);
      return true;
    case TS_CMD_SLOT_INFO:
    case TS_CMD_SLOT_BEGIN:
    case TS_CMD_SLOT_WRITE:
    case TS_CMD_SLOT_END:
    case TS_CMD_SLOT_CONFIRM:
    case TS_CMD_SLOT_REVERT:
      break;
    default:
      return false;
  }
  if (!c->slots_on) {
    send_error(c, TS_ERR_NO_SLOTS, req.cmd, req.seq);
    return true;
  }
  switch (req.cmd) {
    case TS_CMD_SLOT_INFO: handle_slot_info(c, req); break;
    case TS_CMD_SLOT_BEGIN: handle_begin(c, req); break;
    case TS_CMD_SLOT_WRITE: handle_write(c, req); break;
    case TS_CMD_SLOT_END: handle_end(c, req); break;
    case TS_CMD_SLOT_CONFIRM: handle_confirm(c, req); break;
    default: handle_revert(c, req); break;
  }
  return true;
}

}  // namespace ts_internal

extern "C" ts_status_t ts_core_get_running(const ts_core_t *core, uint32_t *source,
                                           uint32_t *mode) {
  if (core == nullptr || source == nullptr || mode == nullptr) return TS_ERR_INVALID_ARGUMENT;
  *source = core->running_source;
  *mode = core->running_mode;
  return TS_OK;
}
