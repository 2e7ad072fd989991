// tinyship_core_stats.cpp - the 64-bit clock, timed inference with its latency
// statistics, the golden-vector self-test, and the statistics / self-test API.
// See tinyship_core_internal.h for the other files of the core.
#include "tinyship_core_internal.h"

using namespace ts_internal;

namespace {

void record_latency(ts_core *c, uint32_t us) {
  if (c->infer_count == 0 || us < c->lat_min) c->lat_min = us;
  if (us > c->lat_max) c->lat_max = us;
  c->lat_sum += us;
  c->infer_count++;
}

}  // namespace

namespace ts_internal {

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

}  // namespace ts_internal

// ------------------------------------------------------------------- API --

extern "C" {

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

}  // extern "C"
