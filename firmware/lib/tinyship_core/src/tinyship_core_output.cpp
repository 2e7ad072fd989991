// tinyship_core_output.cpp - buffered output through platform->write and the number
// formatting of the text, MLPerf and banner lines (no printf: newlib-nano friendly).
// See tinyship_core_internal.h for the other files of the core.
#include "tinyship_core_internal.h"

using namespace ts_internal;

namespace ts_internal {

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

}  // namespace ts_internal
