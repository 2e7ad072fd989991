// Host stub of tensorflow/lite/micro/micro_interpreter.h: exactly what tinyship_runner.cpp
// uses, with the signatures of the pinned libraries (Chirale_TensorFlowLite 2.0.0,
// esp-tflite-micro 1.3.4; checked against their headers, see firmware/README.md):
//   MicroInterpreter(const Model*, const MicroOpResolver&, uint8_t*, size_t, ...)  (the
//     real ones add defaulted resource_variables/profiler[/preserve_all_tensors] arguments)
//   ~MicroInterpreter() (the runner destroys one before loading another model)
//   TfLiteStatus AllocateTensors(); TfLiteStatus Invoke();
//   TfLiteTensor* input(size_t); TfLiteTensor* output(size_t);
//   size_t arena_used_bytes() const;
//   TFLITE_SCHEMA_VERSION (defined in this header in TFLM), TfLiteStatus, TfLiteType and
//   TfLiteTensor's type, data.int8, bytes and dims (TfLiteIntArray*: size, data[];
//   tensorflow/lite/core/c/common.h in Chirale_TensorFlowLite 2.0.0).
// The "model" it runs: out[k] = clamp(sum(in) + k), which the glue test's fake registry
// uses for its golden vectors; its tensors have shape [1, bytes]. g_stub_allocate_fails
// makes AllocateTensors fail; g_stub_loaded_models counts interpreters constructed.
#ifndef TINYSHIP_STUB_INTERPRETER_H
#define TINYSHIP_STUB_INTERPRETER_H
#ifdef abs
#error "abs is a macro here: the mbed core's Arduino.h defines it and TFLM headers that call std::abs (micro_utils.h, quantization_util.h) fail; #undef abs after the library header"
#endif
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef enum { kTfLiteNoType = 0, kTfLiteFloat32 = 1, kTfLiteInt8 = 9 } TfLiteType;
typedef union {
  int8_t *int8;
  float *f;
} TfLitePtrUnion;
// The real one ends in a flexible array member (int data[]); two dims are enough here.
typedef struct TfLiteIntArray {
  int size;
  int data[2];
} TfLiteIntArray;
typedef struct {
  TfLiteType type;
  TfLitePtrUnion data;
  TfLiteIntArray *dims;
  size_t bytes;
} TfLiteTensor;
#define TFLITE_SCHEMA_VERSION (3)

extern size_t g_stub_input_bytes;   // set by the test to the model's sizes
extern size_t g_stub_output_bytes;
extern bool g_stub_invoke_fails;
extern bool g_stub_allocate_fails;
extern unsigned g_stub_loaded_models;

namespace tflite {
struct Model;
class MicroOpResolver;
class MicroInterpreter {
 public:
  MicroInterpreter(const Model *model, const MicroOpResolver &resolver, uint8_t *arena,
                   size_t arena_size)
      : arena_(arena), arena_size_(arena_size) {
    (void)model;
    (void)resolver;
    g_stub_loaded_models++;
  }
  ~MicroInterpreter() {}
  TfLiteStatus AllocateTensors() {
    if (g_stub_allocate_fails) return kTfLiteError;
    if (g_stub_input_bytes + g_stub_output_bytes > arena_size_) return kTfLiteError;
    in_dims_ = TfLiteIntArray{2, {1, static_cast<int>(g_stub_input_bytes)}};
    out_dims_ = TfLiteIntArray{2, {1, static_cast<int>(g_stub_output_bytes)}};
    in_.type = kTfLiteInt8;
    in_.bytes = g_stub_input_bytes;
    in_.dims = &in_dims_;
    in_.data.int8 = reinterpret_cast<int8_t *>(arena_);
    out_.type = kTfLiteInt8;
    out_.bytes = g_stub_output_bytes;
    out_.dims = &out_dims_;
    out_.data.int8 = reinterpret_cast<int8_t *>(arena_ + g_stub_input_bytes);
    used_ = g_stub_input_bytes + g_stub_output_bytes;
    return kTfLiteOk;
  }
  TfLiteStatus Invoke() {
    if (g_stub_invoke_fails) return kTfLiteError;
    int sum = 0;
    for (size_t i = 0; i < in_.bytes; i++) sum += in_.data.int8[i];
    for (size_t k = 0; k < out_.bytes; k++) {
      int v = sum + static_cast<int>(k);
      out_.data.int8[k] = static_cast<int8_t>(v > 127 ? 127 : v < -128 ? -128 : v);
    }
    return kTfLiteOk;
  }
  TfLiteTensor *input(size_t) { return &in_; }
  TfLiteTensor *output(size_t) { return &out_; }
  size_t arena_used_bytes() const { return used_; }

 private:
  uint8_t *arena_;
  size_t arena_size_;
  size_t used_ = 0;
  TfLiteIntArray in_dims_{};
  TfLiteIntArray out_dims_{};
  TfLiteTensor in_{};
  TfLiteTensor out_{};
};
}  // namespace tflite
#endif
