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
// Built with GLUE_DEFS=-DTINYSHIP_GLUE_FAKE_BOARD, the board has model slots in RAM (a
// strict NOR model, nRF52 geometry; tinyship_board.h implemented below) and it also prints
//   SLOTS running=<src>/<mode> device_id=<hex> capacity=<n>   (HELLO tags 0x1F-0x21)
//   SLOTINFO ops=<id,...> a=<state> b=<state>                  (SLOT_INFO)
// and, when the environment variable TINYSHIP_GLUE_SLOT_IMAGE names a slot image file,
// installs it (SLOT_BEGIN / SLOT_WRITE / SLOT_END), reboots (the reset callback jumps back
// here and setup() runs again, as after a reset), confirms and reboots again:
//   INSTALL begin=<cmd>:<byte0> writes=<n ok>/<n> end=<cmd>:<byte0>
//   BOOT<k> <banner> | running=<src>/<mode> model=<v> selftest=<n> infer=<out,...>
//   CONFIRM <cmd>:<byte0>
//   FAKE nor_violations=<n> resets=<n> loads=<interpreters built>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "Arduino.h"
#include "../../src/tinyship_board.h"  // not on the glue build's include path
#include "tinyship_core.h"
#include "tinyship_model_data.h"

uint32_t g_stub_micros = 1000;
StubSerial Serial;
size_t g_stub_input_bytes = TINYSHIP_MODEL_INPUT_SIZE;
size_t g_stub_output_bytes = TINYSHIP_MODEL_OUTPUT_SIZE;
bool g_stub_invoke_fails = false;
bool g_stub_allocate_fails = false;
unsigned g_stub_loaded_models = 0;

#if defined(TINYSHIP_GLUE_FAKE_BOARD)
// --------------------------------------------------- fake board with slots --
namespace {

constexpr uint32_t kSector = 4096;
constexpr uint32_t kUnit = 4;
constexpr uint32_t kSlot = 4 * kSector;
alignas(16) uint8_t g_flash_mem[2 * kSlot];
unsigned g_nor_violations = 0;
unsigned g_resets = 0;
jmp_buf g_reset_jump;

bool fake_in_slot(uint32_t slot, uint32_t offset, uint32_t len) {
  return slot < 2u && offset <= kSlot && len <= kSlot - offset;
}

int fake_erase(void *, uint32_t slot, uint32_t offset) {
  if (!fake_in_slot(slot, offset, kSector) || offset % kSector != 0u) return -1;
  memset(g_flash_mem + slot * kSlot + offset, 0xFF, kSector);
  return 0;
}

int fake_program(void *, uint32_t slot, uint32_t offset, const uint8_t *data, uint32_t len) {
  if (data == nullptr || !fake_in_slot(slot, offset, len) || offset % kUnit || len % kUnit) {
    return -1;
  }
  uint8_t *p = g_flash_mem + slot * kSlot + offset;
  for (uint32_t i = 0; i < len; i++) {
    if (p[i] != 0xFFu) g_nor_violations++;  // programmed twice between erases
    p[i] = static_cast<uint8_t>(p[i] & data[i]);
  }
  return 0;
}

const uint8_t *fake_map(void *, uint32_t slot) {
  return slot < 2u ? g_flash_mem + slot * kSlot : nullptr;
}

const ts_flash_t g_fake_flash = {nullptr, kSector, kUnit, kSlot, 85000u, 7872u,
                                 fake_erase,  fake_program, fake_map};

}  // namespace

namespace tinyship {
const ts_flash_t *board_flash(const char **why) {
  if (why != nullptr) *why = nullptr;
  return &g_fake_flash;
}
size_t board_device_id(uint8_t *out, size_t cap) {
  static const uint8_t kId[8] = {0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04};
  if (out == nullptr || cap < sizeof(kId)) return 0;
  memcpy(out, kId, sizeof(kId));
  return sizeof(kId);
}
void board_reset() {
  g_resets++;
  longjmp(g_reset_jump, 1);
}
}  // namespace tinyship
#endif

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

#if defined(TINYSHIP_GLUE_FAKE_BOARD)
void put_le32(std::vector<uint8_t> *v, uint32_t x) {
  for (int i = 0; i < 4; i++) v->push_back(static_cast<uint8_t>(x >> (8 * i)));
}

std::string reply_str(uint8_t cmd, const std::vector<uint8_t> &pl) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%02x:%d", cmd, pl.empty() ? -1 : static_cast<int>(pl[0]));
  return buf;
}

// HELLO's slot tags, or the running model after a (simulated) reboot.
void print_running(const char *label) {
  uint8_t cmd = 0;
  std::vector<uint8_t> pl;
  send(TS_CMD_HELLO, 40, {});
  if (!reply(&cmd, &pl) || cmd != 0x82) {
    printf("%s none\n", label);
    return;
  }
  std::string running = "none", id, model;
  uint32_t capacity = 0;
  unsigned selftest = 99;
  for (size_t i = 0; i + 2 <= pl.size() && i + 2 + pl[i + 1] <= pl.size(); i += 2u + pl[i + 1]) {
    const uint8_t *v = pl.data() + i + 2;
    const uint8_t n = pl[i + 1];
    switch (pl[i]) {
      case TS_TLV_RUNNING:
        if (n == 2) running = std::to_string(v[0]) + "/" + std::to_string(v[1]);
        break;
      case TS_TLV_DEVICE_ID:
        for (uint8_t k = 0; k < n; k++) {
          char hex[3];
          snprintf(hex, sizeof(hex), "%02x", static_cast<unsigned>(v[k]));
          id += hex;
        }
        break;
      case TS_TLV_SLOT_CAPACITY: capacity = le32(v); break;
      case TS_TLV_MODEL_VERSION: model.assign(reinterpret_cast<const char *>(v), n); break;
      case TS_TLV_SELF_TEST: selftest = v[0]; break;
      default: break;
    }
  }
  printf("%s running=%s device_id=%s capacity=%u model=%s selftest=%u\n", label,
         running.c_str(), id.c_str(), static_cast<unsigned>(capacity), model.c_str(), selftest);
}

void print_slot_info() {
  uint8_t cmd = 0;
  std::vector<uint8_t> pl;
  send(TS_CMD_SLOT_INFO, 41, {});
  if (!reply(&cmd, &pl) || cmd != (TS_CMD_SLOT_INFO | TS_RESPONSE_FLAG) || pl.size() < 181) {
    printf("SLOTINFO none %s\n", reply_str(cmd, pl).c_str());
    return;
  }
  std::string ops;
  const size_t p = pl[180];
  if (pl.size() >= 182 + p) {
    const size_t n = pl[181 + p];
    for (size_t k = 0; k < n && 182 + p + 2 * k + 1 < pl.size(); k++) {
      const unsigned id = pl[182 + p + 2 * k] | (pl[183 + p + 2 * k] << 8);
      ops += (k ? "," : "") + std::to_string(id);
    }
  }
  printf("SLOTINFO ops=%s a=%u b=%u\n", ops.c_str(), static_cast<unsigned>(pl[44]),
         static_cast<unsigned>(pl[112]));
}

// REBOOT: the core answers, main.cpp's reset callback calls board_reset(), which jumps back
// here; setup() runs again on the same flash, as after a reset.
void reboot(int k) {
  if (setjmp(g_reset_jump) == 0) {
    send(TS_CMD_REBOOT, 50, {});
    for (int i = 0; i < 200 && !Serial.rx.empty(); i++) {
      g_stub_micros += 10;
      loop();
    }
    printf("BOOT%d no reset\n", k);
    return;
  }
  Serial.rx.clear();
  Serial.tx.clear();
  setup();
  const std::string boot = Serial.tx;
  printf("BOOT%d %s\n", k, boot.substr(0, boot.find("\r\n")).c_str());
}

void slot_install(const char *path) {
  std::vector<uint8_t> image;
  if (FILE *f = fopen(path, "rb")) {
    int c;
    while ((c = fgetc(f)) != EOF) image.push_back(static_cast<uint8_t>(c));
    fclose(f);
  }
  if (image.size() < 8) {
    printf("INSTALL no image %s\n", path);
    return;
  }
  const size_t hlen = image[6] | (image[7] << 8);
  uint8_t cmd = 0;
  std::vector<uint8_t> pl;
  send(TS_CMD_SLOT_BEGIN, 60, std::vector<uint8_t>(image.begin(), image.begin() + hlen));
  const std::string begin = reply(&cmd, &pl) ? reply_str(cmd, pl) : "none";
  unsigned ok = 0, total = 0;
  for (size_t off = 0; off < image.size(); off += TS_SLOT_MAX_CHUNK, total++) {
    std::vector<uint8_t> req;
    put_le32(&req, static_cast<uint32_t>(off));
    const size_t n = image.size() - off < TS_SLOT_MAX_CHUNK ? image.size() - off : TS_SLOT_MAX_CHUNK;
    req.insert(req.end(), image.begin() + off, image.begin() + off + n);
    send(TS_CMD_SLOT_WRITE, static_cast<uint16_t>(61 + total), req);
    if (reply(&cmd, &pl) && cmd == (TS_CMD_SLOT_WRITE | TS_RESPONSE_FLAG)) ok++;
  }
  send(TS_CMD_SLOT_END, 90, {});
  const std::string end = reply(&cmd, &pl) ? reply_str(cmd, pl) : "none";
  printf("INSTALL begin=%s writes=%u/%u end=%s\n", begin.c_str(), ok, total, end.c_str());

  reboot(1);
  print_running("RUN1");
  send(TS_CMD_SLOT_CONFIRM, 91, {});
  printf("CONFIRM %s\n", reply(&cmd, &pl) ? reply_str(cmd, pl).c_str() : "none");
  reboot(2);
  print_running("RUN2");
}

void fake_board_checks() {
  print_running("SLOTS");
  print_slot_info();
  if (const char *path = getenv("TINYSHIP_GLUE_SLOT_IMAGE")) slot_install(path);
  printf("FAKE nor_violations=%u resets=%u loads=%u\n", g_nor_violations, g_resets,
         g_stub_loaded_models);
}
#endif

}  // namespace

int main() {
#if defined(TINYSHIP_GLUE_FAKE_BOARD)
  memset(g_flash_mem, 0xFF, sizeof(g_flash_mem));  // erased, empty slots
#endif
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
#if defined(TINYSHIP_GLUE_FAKE_BOARD)
  fake_board_checks();
#endif
  return 0;
}
