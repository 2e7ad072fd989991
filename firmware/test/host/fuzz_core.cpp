// Fuzz-style robustness test (make fuzz): feeds random, valid and mutated
// frames and random text to one core and asserts that it never crashes
// (ASan/UBSan), never hangs, only ever writes well-formed frames, answers every
// clean request with exactly one reply carrying its seq, and stays usable.
//
// Then the same number of iterations against a core with model slots (commands
// 0x10-0x16) over the NOR simulator (nor_sim.h: strict write-once, every violation
// fails the run) with the fake model runtime (slot_support.h): valid headers, headers
// with one mutated field (CRC fixed or not), chunks in order, retried, misplaced or
// random, END / CONFIRM / REVERT / REBOOT / SLOT_INFO, random payloads and mutated
// frames, with flash failures, power cuts (before and torn) and spontaneous resets. After
// every boot the running model must be a committed slot with a good CRC (or the factory
// model), a trial must have its `tried` flag written before its model was loaded, and no
// running model's bytes may change in flash.
//
// usage: fuzz_core [iterations=200000] [seed=1]
#include <stdlib.h>

#include "host_support.h"
#include "slot_support.h"

namespace {

uint64_t g_rng = 1;
uint32_t rnd() {  // xorshift64*
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return static_cast<uint32_t>((g_rng * 2685821657736338717ull) >> 32);
}
uint32_t below(uint32_t n) { return n == 0 ? 0 : rnd() % n; }

const uint8_t kCmds[] = {TS_CMD_PING, TS_CMD_HELLO, TS_CMD_INFER, TS_CMD_STATS, TS_CMD_RESET_STATS,
                         0x00,        0x10,         0x42,         0x83,         0xFF};

std::vector<uint8_t> random_payload(uint8_t cmd) {
  std::vector<uint8_t> p;
  if (cmd == TS_CMD_INFER && below(3) != 0) {
    const uint32_t count = below(4) == 0 ? below(300) : 1 + below(8);
    p.push_back(static_cast<uint8_t>(count));
    p.push_back(static_cast<uint8_t>(count >> 8));
    uint32_t n = count * kIn;
    if (below(4) == 0) n = below(n + 3);  // wrong sizes too
    if (n > TS_MAX_PAYLOAD - 2) n = TS_MAX_PAYLOAD - 2;
    for (uint32_t i = 0; i < n; i++) p.push_back(static_cast<uint8_t>(rnd()));
    return p;
  }
  const uint32_t n = below(8) == 0 ? below(TS_MAX_PAYLOAD + 1) : below(40);
  for (uint32_t i = 0; i < n; i++) p.push_back(static_cast<uint8_t>(rnd()));
  return p;
}

void mutate(std::vector<uint8_t> &f) {
  const uint32_t edits = 1 + below(4);
  for (uint32_t e = 0; e < edits && !f.empty(); e++) {
    const size_t at = below(static_cast<uint32_t>(f.size()));
    switch (below(6)) {
      case 0: f[at] = static_cast<uint8_t>(f[at] ^ (1u << below(8))); break;
      case 1: f.erase(f.begin() + static_cast<long>(at)); break;
      case 2: f.insert(f.begin() + static_cast<long>(at), static_cast<uint8_t>(rnd())); break;
      case 3: f.resize(at); break;
      case 4: f.insert(f.begin() + static_cast<long>(at), 0); break;
      default: f.insert(f.end(), f.begin(), f.begin() + static_cast<long>(at)); break;
    }
  }
}

const char *const kWords[] = {"db", "load", "print", "infer", "results", "name", "profile",
                              "timestamp", "help", "info", "ping", "stats", "0a0b0c0d", "ff",
                              "zz", "4", "0", "-1", "3", "%", "%", "\n", "\r", " ", " "};

std::vector<uint8_t> random_text() {
  std::vector<uint8_t> t;
  const uint32_t words = below(12);
  for (uint32_t w = 0; w < words; w++) {
    const char *s = kWords[below(sizeof(kWords) / sizeof(kWords[0]))];
    t.insert(t.end(), s, s + strlen(s));
    if (below(3) == 0) t.push_back(' ');
  }
  if (below(20) == 0) t.insert(t.end(), TS_MAX_LINE + below(40), 'q');
  return t;
}

int fail(const char *what, uint32_t iter) {
  fprintf(stderr, "fuzz: %s at iteration %u (seed %llu)\n", what, iter,
          static_cast<unsigned long long>(g_rng));
  return 1;
}

bool frames_well_formed(const Parsed &p) {
  for (const Frame &f : p.frames) {
    if (f.status != TS_OK) return false;
    if (f.cmd != TS_CMD_ERROR && (f.cmd & TS_RESPONSE_FLAG) == 0) return false;
  }
  return true;
}

}  // namespace

// ------------------------------------------------------------ model slots --

namespace {

using slots::Board;
using slots::Bytes;
using slots::ImageSpec;

struct SlotFuzz {
  uint32_t iterations = 0;
  uint32_t slot_frames = 0;   // frames with a slot command (0x10-0x16), clean or mutated
  uint32_t clean = 0;
  uint32_t ok[8] = {};        // normal replies to 0x10 + i
  uint32_t errors[TS_STATUS_COUNT] = {};  // error replies to slot commands, by code
  uint32_t boots = 0, trials = 0, reverted_at_boot = 0, confirmed_trials = 0;
  uint32_t cuts = 0, fails = 0, pokes = 0;
};

// What the fuzzer believes is being installed (a heuristic to send useful chunks; a
// mutated frame may make it wrong, which only makes the chunks less useful).
struct View {
  bool active = false;
  Bytes img;
  uint32_t next = 0;
  uint32_t next_seq = 1;
};

ImageSpec random_spec(uint32_t seq) {
  ImageSpec s;
  s.seq = seq;
  s.key = static_cast<uint8_t>(rnd());
  char v[16];
  snprintf(v, sizeof v, "v%04u", static_cast<unsigned>(below(10000)));
  s.version = v;
  s.in = 1 + below(8);
  s.out = 1 + below(6);
  s.n_golden = static_cast<uint16_t>(below(4));
  s.body_len = below(10) == 0 ? 20 + below(12000) : 20 + below(2500);
  s.arena = below(slots::kArena + 1);
  s.ops.clear();
  const uint32_t n_ops = below(5);
  for (uint32_t i = 0; i < n_ops; i++) s.ops.push_back(slots::kFwOps[below(6)]);
  const uint32_t r = below(100);
  if (r < 6) s.flags = slots::kFailLoad;
  else if (r < 9) s.flags = slots::kWrongShape;
  else if (r < 11) s.flags = slots::kFailInfer;
  else if (r < 16) s.bad_golden = true;
  // Incompatible now and then (each refusal).
  switch (below(40)) {
    case 0: s.profile = "tflm-arduino-2024"; break;
    case 1: s.ops.push_back(17); break;
    case 2: s.arena = slots::kArena + 1 + below(100000); break;
    case 3: s.in = TS_MAX_INPUT_BYTES + 1 + below(100); s.n_golden = 0; break;
    case 4: s.out = TS_MAX_PAYLOAD - 5 + below(100); s.n_golden = 0; break;
    case 5: s.body_len = 3 * 4096 - 100 + below(400); break;
    default: break;
  }
  s.target_mean = below(4) == 0 ? static_cast<float>(below(100)) : 0.0f;
  s.target_scale = below(4) == 0 ? 0.5f : 1.0f;
  return s;
}

// One field of a valid header set to a random value; the header CRC fixed (mostly).
void mutate_field(Bytes &h) {
  static const size_t kFields[] = {0, 4, 6, 8, 12, 16, 20, 52, 60, 68, 84, 100, 104, 108,
                                   112, 116, 120, 124, 128, 130, 132, 136, 140, 144, 146};
  const size_t at = kFields[below(sizeof(kFields) / sizeof(kFields[0]))];
  const uint32_t width = 1 + below(4);
  for (uint32_t i = 0; i < width && at + i < h.size(); i++) {
    h[at + i] = below(3) == 0 ? static_cast<uint8_t>(h[at + i] ^ (1u << below(8))) : static_cast<uint8_t>(rnd());
  }
  if (below(5) != 0) slots::fix_crc(h);
}

Bytes chunk_at(const View &v, uint32_t off, uint32_t n) {
  if (off >= v.img.size()) return slots::write_payload(off, v.img.data(), 0);
  if (n > v.img.size() - off) n = static_cast<uint32_t>(v.img.size() - off);
  return slots::write_payload(off, &v.img[off], n);
}

// The request of one iteration; for BEGIN, *img is the image it starts (its header as
// sent, then the model body).
uint8_t slot_request(const View &v, Bytes *pl, Bytes *img_out) {
  const uint32_t a = below(100);
  pl->clear();
  if (a < 18) {  // BEGIN: a valid header, or one with a mutated field, or garbage around it
    const uint32_t seq = below(10) == 0 ? below(v.next_seq + 2) : v.next_seq;
    const Bytes img = slots::encode_image(random_spec(seq));
    const size_t hlen = slots::get16(&img[6]);
    Bytes h = slots::header_of(img);
    const uint32_t m = below(10);
    if (m < 3) mutate_field(h);
    else if (m == 3) h.resize(below(static_cast<uint32_t>(h.size()) + 20), 0);
    *pl = h;
    *img_out = h;
    img_out->insert(img_out->end(), img.begin() + static_cast<long>(hlen), img.end());
    return TS_CMD_SLOT_BEGIN;
  }
  if (a < 56) {  // WRITE
    const uint32_t sizes[] = {256, 512, 768, 768, 768};
    uint32_t n = sizes[below(5)];
    if (v.active && below(10) < 8) {
      *pl = chunk_at(v, v.next, n);
      if (below(30) == 0 && pl->size() > 8) (*pl)[4 + below(static_cast<uint32_t>(pl->size()) - 4)] ^= 0x20;  // wrong bytes at next
      return TS_CMD_SLOT_WRITE;
    }
    if (v.active && v.next >= 256 && below(2) == 0) {  // a retried earlier chunk
      const uint32_t off = below(v.next / 256) * 256;
      *pl = chunk_at(v, off, n);
      return TS_CMD_SLOT_WRITE;
    }
    uint32_t off = below(4) == 0 ? rnd() : below(16) * (below(2) ? 256 : 100);
    if (below(3) == 0) n = below(800);
    pl->resize(4 + n);
    slots::put32(pl->data(), off);
    for (uint32_t i = 0; i < n; i++) (*pl)[4 + i] = static_cast<uint8_t>(below(4) == 0 ? 0xFF : rnd());
    if (below(20) == 0) pl->resize(below(5));
    return TS_CMD_SLOT_WRITE;
  }
  if (a < 63) return TS_CMD_SLOT_END;
  if (a < 67) return TS_CMD_SLOT_CONFIRM;
  if (a < 69) return TS_CMD_SLOT_REVERT;
  if (a < 72) return TS_CMD_REBOOT;
  if (a < 80) return TS_CMD_SLOT_INFO;
  if (a < 84) return TS_CMD_HELLO;
  if (a < 88) {  // INFER with 1..8 inputs (matches the running model's size now and then)
    const uint32_t n = 1 + below(8);
    pl->push_back(1);
    pl->push_back(0);
    for (uint32_t i = 0; i < n; i++) pl->push_back(static_cast<uint8_t>(rnd()));
    return TS_CMD_INFER;
  }
  // Any slot command with random bytes.
  const uint8_t cmd = static_cast<uint8_t>(TS_CMD_SLOT_INFO + below(7));
  const uint32_t n = below(8) == 0 ? below(TS_MAX_PAYLOAD + 1) : below(40);
  for (uint32_t i = 0; i < n; i++) pl->push_back(static_cast<uint8_t>(rnd()));
  return cmd;
}

// Trials that ran: (slot, erases of that slot so far). An install erases its slot, so a
// pair seen twice is the same image run as a trial twice.
std::vector<std::pair<uint32_t, uint64_t>> g_trials;

// After a (fault-free) boot: what runs is the factory model only when no slot is
// confirmed or pending (the core's own limits), else a committed slot with a good CRC,
// the newest bootable one; a trial wrote `tried` before its model was loaded and never
// ran before.
bool boot_sane(Board &b, SlotFuzz &z) {
  if (b.init_status != TS_OK || b.core == nullptr) return false;
  z.boots++;
  uint32_t src = 9, mode = 9;
  if (ts_core_get_running(b.core, &src, &mode) != TS_OK || src > 2 || mode > 1) return false;
  ts_slot_limits_t lim{slots::kProfile, slots::kFwOps, sizeof(slots::kFwOps) / sizeof(slots::kFwOps[0]),
                       slots::kArena, TS_MAX_INPUT_BYTES, TS_MAX_PAYLOAD - 6u,
                       b.nor.slot_size() - b.nor.sector()};
  ts_slot_record rec[2];
  for (uint32_t s = 0; s < 2; s++) {
    if (ts_store_read(b.nor.flash(), s, &lim, &rec[s]) != 0) return false;
  }
  auto bootable = [&](uint32_t s) {
    return rec[s].state == TS_SLOT_CONFIRMED || rec[s].state == TS_SLOT_PENDING;
  };
  if (src == 0) return mode == 0 && !bootable(0) && !bootable(1);
  const uint32_t slot = src - 1;
  const uint32_t other = 1 - slot;
  if (bootable(other) && rec[other].flags.seq > rec[slot].flags.seq) return false;
  if (mode == 0 && rec[slot].state != TS_SLOT_CONFIRMED) return false;
  if (mode == 1) {
    const std::pair<uint32_t, uint64_t> id{slot, b.nor.slot_erases[slot]};
    for (const auto &t : g_trials) {
      if (t == id) return false;  // the same image's second trial
    }
    g_trials.push_back(id);
  }
  ts_slot_header_t h;
  if (slots::flag_of(b.nor, slot, 0) != TS_FLAG_SET ||
      ts_slot_image_parse(b.nor.slot_mem(slot), b.nor.slot_size() - b.nor.sector(), &h) != TS_IMG_OK ||
      ts_slot_image_verify_body(&h) != TS_IMG_OK) {
    return false;
  }
  if (b.hw.loads.empty() || b.hw.loads.back().source != static_cast<int>(src) || !b.hw.loads.back().ok) return false;
  if (mode == 1) {
    z.trials++;
    ts_self_test_t st;
    if (b.hw.loads.back().tried != TS_FLAG_SET || ts_core_get_self_test(b.core, &st) != TS_OK ||
        (st.status != TS_SELF_TEST_PASS && st.status != TS_SELF_TEST_NOT_RUN)) {
      return false;
    }
  }
  return true;
}

bool install_in_progress(Board &b) {
  b.hw.out.clear();
  feed(b.core, make_frame(TS_CMD_SLOT_INFO, 1, {}));
  const Parsed p = parse_output(b.hw.out);
  return p.frames.size() != 1 || p.frames[0].payload.size() < 3 || p.frames[0].payload[2] != 0;
}

int slot_fail(const char *what, uint32_t iter, const Board &b) {
  fprintf(stderr, "fuzz slots: %s at iteration %u (rng %llu)%s%s\n", what, iter,
          static_cast<unsigned long long>(g_rng), b.nor.violations ? ": " : "",
          b.nor.first_violation.c_str());
  return 1;
}

int fuzz_slots(uint32_t iters) {
  SlotFuzz z;
  const uint32_t units[] = {4, 256, 1};
  for (uint32_t part = 0; part < 3; part++) {
    g_trials.clear();
    Board b(units[part]);
    b.nor.keep_log = false;
    b.nor.quiet = true;
    View v;
    if (b.boot() != TS_OK || !boot_sane(b, z)) return slot_fail("first boot", 0, b);
    const uint32_t n_iter = iters / 3 + (part == 0 ? iters % 3 : 0);
    for (uint32_t it = 0; it < n_iter; it++, z.iterations++) {
      b.hw.loads.clear();
      // A full re-upload (bossac erases the whole flash) now and then, and when a mutated
      // header committed a sequence number so large that nothing newer fits.
      if (v.next_seq > 1000000u || below(20000) == 0) {
        b.nor.erase_all();
        b.hw.loads.clear();
        if (b.boot() != TS_OK || !boot_sane(b, z)) return slot_fail("boot after erase", it, b);
        v = View{};
      }
      Bytes pl, img;
      const uint8_t cmd = slot_request(v, &pl, &img);
      const bool trial_before = b.running_mode() == TS_RUNNING_TRIAL;
      uint16_t seq = static_cast<uint16_t>(rnd());
      if (seq == TS_SEQ_UNKNOWN) seq = 0;
      Bytes bytes = {0};
      const Bytes f = make_frame(cmd, seq, pl);
      bytes.insert(bytes.end(), f.begin(), f.end());
      const bool clean = below(10) != 0;
      if (!clean) mutate(bytes);
      if (cmd >= TS_CMD_SLOT_INFO && cmd <= TS_CMD_SLOT_REVERT) z.slot_frames++;
      // Flash faults now and then: a failing operation, a power cut (before or torn).
      const uint32_t fault = below(200);
      if (fault < 2) {
        b.nor.cut_in(1 + below(10), below(2) == 0);
        b.nor.torn_seed = (static_cast<uint64_t>(rnd()) << 32) | rnd() | 1u;
      } else if (fault < 4) {
        b.nor.fail_in(1 + below(6));
        z.fails++;
      }
      const uint32_t resets = b.hw.resets;
      b.hw.out.clear();
      size_t off = 0;
      while (off < bytes.size()) {
        size_t chunk = 1 + below(below(2) ? 16 : 1200);
        if (chunk > bytes.size() - off) chunk = bytes.size() - off;
        if (ts_core_feed(b.core, bytes.data() + off, chunk) != TS_OK) return slot_fail("feed status", it, b);
        off += chunk;
      }
      const Parsed p = parse_output(b.hw.out);
      if (!frames_well_formed(p)) return slot_fail("malformed frame written", it, b);
      for (const Frame &fr : p.frames) {
        if (fr.cmd == TS_CMD_ERROR) {
          if (fr.payload.size() < 2 || fr.payload[0] == 0 || fr.payload[0] >= TS_STATUS_COUNT) {
            return slot_fail("error reply with an invalid code", it, b);
          }
          if (fr.payload[1] >= TS_CMD_SLOT_INFO && fr.payload[1] <= TS_CMD_SLOT_REVERT) z.errors[fr.payload[0]]++;
        } else if (fr.cmd >= (TS_CMD_SLOT_INFO | 0x80) && fr.cmd <= (TS_CMD_SLOT_REVERT | 0x80)) {
          z.ok[fr.cmd - (TS_CMD_SLOT_INFO | 0x80)]++;
        }
      }
      if (clean) {
        z.clean++;
        if (p.frames.empty()) return slot_fail("clean request not answered", it, b);
        const Frame &last = p.frames.back();
        if (last.seq != seq) return slot_fail("reply seq", it, b);
        const bool ok_reply = last.cmd == static_cast<uint8_t>(cmd | TS_RESPONSE_FLAG);
        if (!ok_reply && !(last.cmd == TS_CMD_ERROR && last.payload.size() >= 2 && last.payload[1] == cmd)) {
          return slot_fail("reply cmd", it, b);
        }
        if (p.frames.size() > 2) return slot_fail("too many replies", it, b);
        // Follow the install (heuristic view).
        if (cmd == TS_CMD_SLOT_BEGIN && ok_reply) {
          v.active = true;
          v.next = 0;
          v.img = img;
          ts_slot_header_t h;
          if (ts_slot_image_parse_header(pl.data(), pl.size(), &h) == TS_IMG_OK && h.sequence >= v.next_seq) {
            v.next_seq = h.sequence + 1;
          }
        } else if (cmd == TS_CMD_SLOT_WRITE && ok_reply && last.payload.size() == 4) {
          v.next = le32(last.payload.data());
        } else if (cmd == TS_CMD_SLOT_WRITE && !ok_reply && last.payload[0] == TS_ERR_FLASH) {
          v.active = false;
        } else if (cmd == TS_CMD_SLOT_END && (ok_reply || last.payload[0] != TS_ERR_SLOT_ORDER)) {
          v.active = false;
        } else if (cmd == TS_CMD_SLOT_INFO && ok_reply) {
          const Bytes &q = last.payload;
          if (q.size() < 182 || q.size() != 182u + q[180] + 2u * q[181u + q[180]]) {
            return slot_fail("SLOT_INFO length is not 180 + 1 + P + 1 + 2n", it, b);
          }
          for (int k = 0; k < 2; k++) {
            const uint8_t *r = &q[44 + 68 * k];
            if (r[0] > TS_SLOT_TRIAL || r[7] != 0) return slot_fail("SLOT_INFO record", it, b);
            const uint32_t sq = le32(r + 8);
            if (sq != 0xFFFFFFFFu && sq >= v.next_seq) v.next_seq = sq + 1;
          }
          v.active = q[2] == 1;
          if (v.active && le32(&q[28]) != v.next) v.next = le32(&q[28]);
        } else if (cmd == TS_CMD_INFER && ok_reply && b.hw.loaded) {
          const size_t n = pl.size() - 2;
          for (size_t j = 0; j + 6 < last.payload.size(); j++) {
            if (static_cast<int8_t>(last.payload[6 + j]) !=
                slots::model_fn(b.hw.key, reinterpret_cast<const int8_t *>(&pl[2]), n, j)) {
              return slot_fail("INFER output is not the running model's", it, b);
            }
          }
        }
      }
      if (b.nor.violations != 0) return slot_fail("flash write-once/alignment violation", it, b);
      if (b.hw.model_changed != 0) return slot_fail("a running model's bytes changed in flash", it, b);
      if (b.hw.bad_io != 0) return slot_fail("inference with sizes that are not the model's", it, b);
      // Resets: asked by REBOOT / REVERT, a power cut, or spontaneous.
      if (trial_before && cmd == TS_CMD_SLOT_CONFIRM && clean &&
          p.frames.back().cmd == (TS_CMD_SLOT_CONFIRM | 0x80)) {
        z.confirmed_trials++;
      }
      const bool powered_off = b.nor.powered_off();
      if (powered_off) z.cuts++;
      if (b.hw.resets != resets || powered_off || below(400) == 0) {
        b.nor.power_on();
        b.hw.loads.clear();
        if (b.boot() != TS_OK || !boot_sane(b, z)) return slot_fail("boot", it, b);
        for (size_t i = 0; i + 1 < b.hw.loads.size(); i++) {
          if (b.hw.loads[i].source > 0 && b.hw.loads[i].tried == TS_FLAG_SET) z.reverted_at_boot++;
        }
        v.active = false;
      } else {
        b.nor.fail_op = 0;  // a failure is for this request; a cut stays armed until it trips
      }
      // Damage now and then: a byte of a slot that is not running, with no install in
      // progress (asked with SLOT_INFO: a damaged erased byte ahead of `next` would make
      // the installer's next program a write-once violation that the fuzzer caused).
      if (below(500) == 0 && !install_in_progress(b)) {
        const uint32_t src = b.running_source();
        const uint32_t slot = src == 1 ? 1u : src == 2 ? 0u : below(2);
        const uint32_t at = below(b.nor.slot_size());
        b.nor.poke(slot, at, static_cast<uint8_t>(rnd()));
        z.pokes++;
      }
    }
  }
  printf("fuzz slots: %u iterations, %u slot frames (%u clean requests), boots %u (trial %u, "
         "reverted at boot %u, confirmed trials %u), power cuts %u, failed ops %u, damage %u, replies ok:",
         z.iterations, z.slot_frames, z.clean, z.boots, z.trials, z.reverted_at_boot,
         z.confirmed_trials, z.cuts, z.fails, z.pokes);
  for (uint32_t i = 0; i < 7; i++) printf(" %s=%u", ts_command_name(static_cast<uint8_t>(TS_CMD_SLOT_INFO + i)), z.ok[i]);
  printf(" errors:");
  for (unsigned code = 1; code < TS_STATUS_COUNT; code++) {
    if (z.errors[code] != 0) printf(" %s=%u", ts_status_name(static_cast<ts_status_t>(code)), z.errors[code]);
  }
  printf("\n");
  if (iters >= 100000) {
    for (uint32_t i = 0; i < 7; i++) {
      if (z.ok[i] == 0) {
        fprintf(stderr, "fuzz slots: %s never answered normally\n", ts_command_name(static_cast<uint8_t>(TS_CMD_SLOT_INFO + i)));
        return 1;
      }
    }
    const ts_status_t want[] = {TS_ERR_BAD_PAYLOAD,   TS_ERR_SLOT_HEADER, TS_ERR_SLOT_PROFILE,
                                TS_ERR_SLOT_OP,       TS_ERR_SLOT_ARENA,  TS_ERR_SLOT_SHAPE,
                                TS_ERR_SLOT_SIZE,     TS_ERR_SLOT_SEQUENCE, TS_ERR_SLOT_ORDER,
                                TS_ERR_SLOT_RANGE,    TS_ERR_SLOT_VERIFY, TS_ERR_SLOT_STATE,
                                TS_ERR_FLASH};
    for (ts_status_t code : want) {
      if (z.errors[code] == 0) {
        fprintf(stderr, "fuzz slots: never produced %s\n", ts_status_name(code));
        return 1;
      }
    }
    if (z.trials == 0 || z.reverted_at_boot == 0 || z.confirmed_trials == 0 || z.cuts == 0) {
      fprintf(stderr, "fuzz slots: no trial boot, revert at boot, confirmed trial or power cut\n");
      return 1;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  const uint32_t iters = argc > 1 ? static_cast<uint32_t>(strtoul(argv[1], nullptr, 10)) : 200000u;
  const uint64_t seed = argc > 2 ? strtoull(argv[2], nullptr, 10) : 1u;
  g_rng = seed * 0x9E3779B97F4A7C15ull + 1u;

  Fake fake;
  ts_config_t cfg = default_config();
  cfg.target_mean = 60.0f;  // results% in target units on every MLPerf path
  cfg.target_scale = 8.0f;
  ts_platform_t plat = fake_platform(&fake, true);
  // Exact-size heap block so ASan sees any write past the core's memory.
  void *mem = malloc(ts_core_size());
  ts_core_t *core = nullptr;
  if (ts_core_init(mem, ts_core_size(), &cfg, &plat, &core) != TS_OK) return fail("init", 0);

  uint32_t clean_requests = 0;
  uint32_t ok_replies = 0;
  uint32_t error_replies[TS_STATUS_COUNT] = {};
  for (uint32_t it = 0; it < iters; it++) {
    fake.out.clear();
    std::vector<uint8_t> bytes;
    const uint32_t kind = below(10);
    bool clean = false;
    uint16_t seq = static_cast<uint16_t>(rnd());
    if (seq == TS_SEQ_UNKNOWN) seq = 0;
    uint8_t cmd = kCmds[below(sizeof(kCmds))];
    if (kind < 3) {  // clean request after a resync byte
      bytes.push_back(0);
      const std::vector<uint8_t> f = make_frame(cmd, seq, random_payload(cmd));
      bytes.insert(bytes.end(), f.begin(), f.end());
      clean = true;
    } else if (kind < 7) {  // mutated request
      bytes = make_frame(cmd, seq, random_payload(cmd));
      mutate(bytes);
    } else if (kind < 9) {  // text, MLPerf commands and noise
      bytes = random_text();
    } else {  // raw random bytes
      const uint32_t n = below(2000);
      for (uint32_t i = 0; i < n; i++) bytes.push_back(below(8) == 0 ? 0 : static_cast<uint8_t>(rnd()));
    }
    if (below(50) == 0) fake.clock += TS_FRAME_TIMEOUT_US + below(1000000);
    fake.fail_infer = below(100) == 0;

    size_t off = 0;
    while (off < bytes.size()) {
      size_t chunk = 1 + below(below(2) ? 8 : 600);
      if (chunk > bytes.size() - off) chunk = bytes.size() - off;
      if (ts_core_feed(core, bytes.data() + off, chunk) != TS_OK) return fail("feed status", it);
      off += chunk;
    }
    if (fake.out.size() > 64 * 1024) return fail("runaway output", it);
    const Parsed p = parse_output(fake.out);
    if (!frames_well_formed(p)) return fail("malformed frame written", it);
    for (const Frame &f : p.frames) {
      if (f.cmd != TS_CMD_ERROR) {
        ok_replies++;
      } else if (f.payload.empty() || f.payload[0] == 0 || f.payload[0] >= TS_STATUS_COUNT) {
        return fail("error reply with an invalid code", it);
      } else {
        error_replies[f.payload[0]]++;
      }
    }
    if (clean) {
      clean_requests++;
      if (p.frames.empty()) return fail("clean request not answered", it);
      const Frame &last = p.frames.back();
      if (last.seq != seq) return fail("reply seq", it);
      const bool ok_reply = last.cmd == static_cast<uint8_t>(cmd | TS_RESPONSE_FLAG);
      const bool err_reply = last.cmd == TS_CMD_ERROR && last.payload.size() >= 2 && last.payload[1] == cmd;
      if (!ok_reply && !err_reply) return fail("reply cmd", it);
      if (p.frames.size() > 2) return fail("too many replies", it);
    }
    // Every so often: the core must still answer correctly.
    if (it % 1000 == 999) {
      fake.fail_infer = false;
      fake.out.clear();
      std::vector<uint8_t> probe = {0};
      const std::vector<uint8_t> f = make_frame(TS_CMD_INFER, 77, {1, 0, 1, 2, 3, 4});
      probe.insert(probe.end(), f.begin(), f.end());
      (void)ts_core_feed(core, probe.data(), probe.size());
      const Parsed q = parse_output(fake.out);
      if (q.frames.empty() || q.frames.back().cmd != 0x83 || q.frames.back().seq != 77 ||
          q.frames.back().payload.size() != 8 || q.frames.back().payload[6] != 10) {
        return fail("core no longer answers INFER correctly", it);
      }
    }
  }
  printf("fuzz: %u iterations, %u clean requests answered, replies ok=%u", iters, clean_requests,
         ok_replies);
  for (unsigned code = 1; code < TS_STATUS_COUNT; code++) {
    if (error_replies[code] != 0) printf(" %s=%u", ts_status_name(static_cast<ts_status_t>(code)), error_replies[code]);
  }
  printf("\n");
  // With enough iterations every wire error path must have been reached.
  if (iters >= 100000) {
    const ts_status_t wire[] = {TS_ERR_BAD_CRC,          TS_ERR_BAD_LENGTH,      TS_ERR_BAD_FRAMING,
                                TS_ERR_UNKNOWN_COMMAND,  TS_ERR_WRONG_INPUT_SIZE, TS_ERR_INFERENCE_FAILED,
                                TS_ERR_BAD_PAYLOAD,      TS_ERR_BATCH_TOO_LARGE, TS_ERR_FRAME_TIMEOUT};
    for (ts_status_t code : wire) {
      if (error_replies[code] == 0) {
        fprintf(stderr, "fuzz: never produced %s\n", ts_status_name(code));
        return 1;
      }
    }
  }
  free(mem);
  return fuzz_slots(iters);
}
