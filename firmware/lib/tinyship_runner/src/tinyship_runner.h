// tinyship_runner.h - runs the embedded model with TensorFlow Lite Micro.
//
// Includes only TFLM headers (no Arduino, no tinyship core): builds a
// tflite::MicroInterpreter from tinyship_model_data[] with the generated op
// resolver (tinyship_register_ops on a MicroMutableOpResolver<TINYSHIP_MODEL_OP_COUNT>)
// and a static, 16-byte aligned arena of TINYSHIP_MODEL_ARENA_BYTES; checks the
// model's CRC-32 against TINYSHIP_MODEL_CRC32 before touching the flatbuffer;
// runs int8 inference.
//
// TFLM API relied on (see tinyship_runner.cpp):
//   MicroInterpreter(const Model*, const MicroOpResolver&, uint8_t* arena,
//                    size_t arena_size)   -- the 4-argument form.
// It exists in the official Arduino library (tflite-micro-arduino-examples) at
// the commit platformio.ini pins (0b8e7c15, 2023 sync), next to a deprecated
// ErrorReporter* overload; older commits of that library (e.g. e07de445) only
// have the form with a mandatory ErrorReporter* and will not compile. Current
// TFLM and Espressif esp-tflite-micro 1.3.x have it too (ErrorReporter overload
// removed; optional resource_variables, profiler and preserve_all_tensors
// arguments follow), so one call site serves both profiles.
// arena_used_bytes() exists in all supported versions.
#ifndef TINYSHIP_RUNNER_H
#define TINYSHIP_RUNNER_H

#include <stddef.h>
#include <stdint.h>

namespace tinyship {

enum class RunnerStatus : uint8_t {
  kOk = 0,
  kNotStarted,        // begin() not called or failed
  kCrcMismatch,       // model bytes do not match TINYSHIP_MODEL_CRC32
  kSchemaMismatch,    // flatbuffer schema version unsupported by this TFLM
  kOpRegistration,    // tinyship_register_ops failed (op index in failed_op())
  kAllocateFailed,    // AllocateTensors failed (arena too small?)
  kTensorMismatch,    // input/output type or size differs from the generated header
  kWrongSize,         // caller buffers do not match the model
  kInvokeFailed,      // Invoke() returned an error
};

const char *runner_status_str(RunnerStatus status);

// CRC-32 IEEE 802.3 (zlib), the checksum TINYSHIP_MODEL_CRC32 is computed with.
uint32_t model_crc32(const uint8_t *data, size_t len);

class ModelRunner {
 public:
  // Verify the CRC, build the interpreter, allocate tensors, check shapes.
  // Safe to call once at boot; no dynamic allocation.
  RunnerStatus begin();
  // One int8 inference.
  RunnerStatus infer(const int8_t *input, size_t input_len, int8_t *output, size_t output_len);

  bool crc_ok() const { return crc_ok_; }
  uint32_t computed_crc() const { return computed_crc_; }
  size_t arena_used_bytes() const;
  size_t arena_size() const;
  int failed_op() const { return failed_op_; }
  RunnerStatus status() const { return status_; }

 private:
  RunnerStatus status_ = RunnerStatus::kNotStarted;
  bool crc_ok_ = false;
  uint32_t computed_crc_ = 0;
  int failed_op_ = 0;
  void *interpreter_ = nullptr;  // tflite::MicroInterpreter in static storage
};

}  // namespace tinyship

#endif  // TINYSHIP_RUNNER_H
