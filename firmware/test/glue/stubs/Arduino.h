// Host stand-in for the few Arduino APIs firmware/src/main.cpp uses, so the
// glue can be compiled and exercised on the host (firmware/test/glue).
#ifndef TINYSHIP_STUB_ARDUINO_H
#define TINYSHIP_STUB_ARDUINO_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <deque>
#include <string>

extern uint32_t g_stub_micros;

inline uint32_t micros() { return g_stub_micros; }
inline uint32_t millis() { return g_stub_micros / 1000u; }
// The virtual clock advances instead of sleeping (main.cpp waits before a reset).
inline void delay(unsigned long ms) { g_stub_micros += static_cast<uint32_t>(ms * 1000u); }

class StubSerial {
 public:
  std::deque<uint8_t> rx;
  std::string tx;
  bool open = true;
  unsigned flushes = 0;  // flush() calls (the core's flush hook before MLPerf timestamps)
  void begin(unsigned long) {}
  void flush() { flushes++; }
  explicit operator bool() const { return open; }
  size_t write(const uint8_t *data, size_t len) {
    tx.append(reinterpret_cast<const char *>(data), len);
    return len;
  }
  int available() const { return static_cast<int>(rx.size()); }
  int read() {
    if (rx.empty()) return -1;
    const int c = rx.front();
    rx.pop_front();
    return c;
  }
  size_t print(const char *s) { return write(reinterpret_cast<const uint8_t *>(s), strlen(s)); }
  size_t println(const char *s) { return print(s) + print("\r\n"); }
};

extern StubSerial Serial;

void setup();
void loop();
#endif
