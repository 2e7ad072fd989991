// Fuzz-style robustness test (make fuzz): feeds random, valid and mutated
// frames and random text to one core and asserts that it never crashes
// (ASan/UBSan), never hangs, only ever writes well-formed frames, answers every
// clean request with exactly one reply carrying its seq, and stays usable.
//
// usage: fuzz_core [iterations=200000] [seed=1]
#include <stdlib.h>

#include "host_support.h"

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
  return 0;
}
