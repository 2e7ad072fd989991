// tinyship_core_mlperf.cpp - MLPerf Tiny DUT mode: the `%`-terminated commands of the
// EEMBC runner (name, timestamp, profile, help, db, infer, results; PROTOCOL.md).
// See tinyship_core_internal.h for the other files of the core.
#include "tinyship_core_internal.h"

using namespace ts_internal;

namespace {

// ------------------------------------------------------------- MLPerf mode --

int hex_digit(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

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

}  // namespace

namespace ts_internal {

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

}  // namespace ts_internal
