// Host stub of the TFLM schema header (only what tinyship_runner uses).
#ifndef TINYSHIP_STUB_SCHEMA_H
#define TINYSHIP_STUB_SCHEMA_H
#include <stdint.h>
namespace tflite {
struct Model {
  uint32_t version() const { return 3; }
};
inline const Model *GetModel(const void *) {
  static const Model m;
  return &m;
}
}  // namespace tflite
#endif
