// Host stub of tensorflow/lite/schema/schema_generated.h: what tinyship_runner.cpp uses,
// as in the pinned libraries: `inline const tflite::Model *GetModel(const void *buf)` and
// `uint32_t Model::version() const`.
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
