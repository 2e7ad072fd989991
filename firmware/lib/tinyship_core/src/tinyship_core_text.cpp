// tinyship_core_text.cpp - the text console (help, info, stats, ping), the tokenizer
// shared with MLPerf mode, and the line reader that hands a line to either.
// See tinyship_core_internal.h for the other files of the core.
#include "tinyship_core_internal.h"

using namespace ts_internal;

namespace {

// --------------------------------------------------------------- text mode --

const char *reset_word(uint32_t reason) {
  static const char *const kWords[] = {"unknown", "power-on", "pin",     "watchdog", "software",
                                       "brownout", "lockup",  "wake-up", "other"};
  return reason < sizeof(kWords) / sizeof(kWords[0]) ? kWords[reason] : "unknown";
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

}  // namespace

namespace ts_internal {

// ---------------------------------------------------------------- parsing --

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

// ------------------------------------------------------------ line reader --

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

}  // namespace ts_internal
