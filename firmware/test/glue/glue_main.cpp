// Host run of the real Arduino glue (src/main.cpp) + runner + core against the
// stub Arduino/TFLM headers in stubs/ and a generated model directory
// (make glue GLUE_GEN=<dir>). Prints what the board said, for
// tests/test_firmware.py to check:
//   BOOTLOG <diagnostic line before the banner> (zero or more)
//   BANNER <boot banner line>
//   PING <ok|fail>
//   INFER cmd=<hex> out=<int8,...>
//   HELLO model=<v> board=<b> crc_ok=<n> arena_used=<n> arena_size=<n> selftest=<n>
//   TARGET mean=<f> scale=<f>            (INFO target-unit TLVs, %g)
//   LINK <kind=.. baud=.. rx_window=..|none>  (INFO link TLV)
//   RESULTS <m-results-[...] line>        (MLPerf infer on inputs 1..N)
//   FLUSHES <Serial.flush() calls during that infer>
//   PROFILE <m-model-[...] line>          (MLPerf profile%)
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

#include "Arduino.h"
#include "tinyship_core.h"
#include "tinyship_model_data.h"

uint32_t g_stub_micros = 1000;
StubSerial Serial;
size_t g_stub_input_bytes = TINYSHIP_MODEL_INPUT_SIZE;
size_t g_stub_output_bytes = TINYSHIP_MODEL_OUTPUT_SIZE;
bool g_stub_invoke_fails = false;

namespace {

void send(uint8_t cmd, uint16_t seq, const std::vector<uint8_t> &payload) {
  uint8_t buf[TS_MAX_WIRE_FRAME];
  size_t n = 0;
  if (ts_frame_encode(cmd, seq, payload.data(), payload.size(), buf, sizeof(buf), &n) != TS_OK) return;
  for (size_t i = 0; i < n; i++) Serial.rx.push_back(buf[i]);
}

// Run loop() until the input is consumed, then return the first frame written.
bool reply(uint8_t *cmd, std::vector<uint8_t> *payload) {
  Serial.tx.clear();
  for (int i = 0; i < 200 && !Serial.rx.empty(); i++) {
    g_stub_micros += 10;
    loop();
  }
  const std::string &t = Serial.tx;
  const size_t a = t.find('\0');
  const size_t b = a == std::string::npos ? a : t.find('\0', a + 1);
  if (b == std::string::npos) return false;
  uint16_t seq = 0;
  payload->assign(TS_MAX_PAYLOAD, 0);
  size_t n = 0;
  const ts_status_t st = ts_frame_decode(reinterpret_cast<const uint8_t *>(t.data()) + a + 1, b - a - 1,
                                         cmd, &seq, payload->data(), payload->size(), &n);
  payload->resize(n);
  return st == TS_OK;
}

// Feed a text command and run loop() until it is consumed; returns what the board wrote.
std::string text(const std::string &cmd) {
  Serial.tx.clear();
  for (char ch : cmd) Serial.rx.push_back(static_cast<uint8_t>(ch));
  for (int i = 0; i < 200 && !Serial.rx.empty(); i++) {
    g_stub_micros += 10;
    loop();
  }
  return Serial.tx;
}

float f32(const uint8_t *p) {
  const uint32_t bits = static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                        (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

uint32_t le32(const uint8_t *p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

}  // namespace

int main() {
  setup();
  // Boot output: optional runner diagnostics, then the banner line.
  const std::string boot = Serial.tx;
  for (size_t at = 0; at < boot.size();) {
    size_t end = boot.find("\r\n", at);
    if (end == std::string::npos) end = boot.size();
    const std::string line = boot.substr(at, end - at);
    printf("%s %s\n", line.rfind("tinyship ready", 0) == 0 ? "BANNER" : "BOOTLOG", line.c_str());
    at = end + 2;
  }
  fflush(stdout);

  uint8_t cmd = 0;
  std::vector<uint8_t> pl;
  send(TS_CMD_PING, 1, {1, 2, 3});
  const bool ping_ok = reply(&cmd, &pl) && cmd == 0x81 && pl == std::vector<uint8_t>{1, 2, 3};
  printf("PING %s\n", ping_ok ? "ok" : "fail");

  std::vector<uint8_t> req = {1, 0};
  for (size_t i = 0; i < TINYSHIP_MODEL_INPUT_SIZE; i++) req.push_back(static_cast<uint8_t>(i + 1));
  send(TS_CMD_INFER, 2, req);
  if (reply(&cmd, &pl)) {
    printf("INFER cmd=%02x out=", cmd);
    for (size_t i = 6; cmd == 0x83 && i < pl.size(); i++)
      printf("%s%d", i > 6 ? "," : "", static_cast<int8_t>(pl[i]));
    printf("\n");
  } else {
    printf("INFER none\n");
  }

  send(TS_CMD_HELLO, 3, {});
  if (reply(&cmd, &pl) && cmd == 0x82) {
    std::string model, board;
    unsigned crc_ok = 99, selftest = 99;
    uint32_t used = 0, size = 0;
    float tmean = -1.0f, tscale = -1.0f;
    char link[64] = "none";
    for (size_t i = 0; i + 2 <= pl.size() && i + 2 + pl[i + 1] <= pl.size(); i += 2u + pl[i + 1]) {
      const uint8_t *v = pl.data() + i + 2;
      const std::string s(reinterpret_cast<const char *>(v), pl[i + 1]);
      switch (pl[i]) {
        case TS_TLV_MODEL_VERSION: model = s; break;
        case TS_TLV_BOARD: board = s; break;
        case TS_TLV_MODEL_CRC_OK: crc_ok = v[0]; break;
        case TS_TLV_ARENA_USED: used = le32(v); break;
        case TS_TLV_ARENA_SIZE: size = le32(v); break;
        case TS_TLV_SELF_TEST: selftest = v[0]; break;
        case TS_TLV_TARGET_MEAN: tmean = f32(v); break;
        case TS_TLV_TARGET_SCALE: tscale = f32(v); break;
        case TS_TLV_LINK:
          if (pl[i + 1] == 9) {
            snprintf(link, sizeof(link), "kind=%u baud=%u rx_window=%u", static_cast<unsigned>(v[0]),
                     static_cast<unsigned>(le32(v + 1)), static_cast<unsigned>(le32(v + 5)));
          }
          break;
        default: break;
      }
    }
    printf("HELLO model=%s board=%s crc_ok=%u arena_used=%u arena_size=%u selftest=%u\n", model.c_str(),
           board.c_str(), crc_ok, used, size, selftest);
    printf("TARGET mean=%g scale=%g\n", static_cast<double>(tmean), static_cast<double>(tscale));
    printf("LINK %s\n", link);
  } else {
    printf("HELLO none\n");
  }

  // MLPerf path: the same input as INFER above, results% in target units.
  std::string load = "db load " + std::to_string(TINYSHIP_MODEL_INPUT_SIZE) + "%db ";
  for (size_t i = 0; i < TINYSHIP_MODEL_INPUT_SIZE; i++) {
    char hex[3];
    snprintf(hex, sizeof(hex), "%02x", static_cast<unsigned>((i + 1) & 0xFFu));
    load += hex;
  }
  (void)text(load + "%");
  const unsigned flushes = Serial.flushes;
  const std::string res = text("infer 1 0%");
  const size_t at = res.find("m-results-[");
  printf("RESULTS %s\n", at == std::string::npos ? "none" : res.substr(at, res.find("\r", at) - at).c_str());
  printf("FLUSHES %u\n", Serial.flushes - flushes);
  const std::string prof = text("profile%");
  const size_t pm = prof.find("m-model-[");
  printf("PROFILE %s\n", pm == std::string::npos ? "none" : prof.substr(pm, prof.find("\r", pm) - pm).c_str());
  return 0;
}
