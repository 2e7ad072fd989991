// tinyship_runner.h - runs the embedded model with TensorFlow Lite Micro.
//
// Includes only TFLM headers (no Arduino, no tinyship core): builds a
// tflite::MicroInterpreter from tinyship_model_data[] with the generated op
// resolver (tinyship_register_ops on a MicroMutableOpResolver<TINYSHIP_MODEL_OP_COUNT>)
// and a static, 16-byte aligned arena of TINYSHIP_MODEL_ARENA_BYTES; checks the
// model's CRC-32 against TINYSHIP_MODEL_CRC32 before touching the flatbuffer;
// runs int8 inference.
//
// TFLM library per env (pinned in platformio.ini / src/idf_component.yml; checked by the
// table in host/tinyship/tflm_libraries.py, evidence in firmware/README.md):
//   nano33ble, nanorp2040connect  Chirale_TensorFlowLite 2.0.0 (TFLM of 2023-01-14)
//   esp32s3                       esp-tflite-micro 1.3.4 (TFLM of 2025-09-01)
// tinyship_runner.cpp includes each env's library header by name (see there).
//
// TFLM API relied on (see tinyship_runner.cpp), present in every pinned library:
//   MicroInterpreter(const Model*, const MicroOpResolver&, uint8_t* arena,
//                    size_t arena_size)   -- the 4-argument form.
// Chirale_TensorFlowLite 2.0.0 and esp-tflite-micro 1.3.4 have only the ErrorReporter-free
// constructors (optional resource_variables and profiler arguments follow; 1.3.4 adds
// preserve_all_tensors). The official Arduino library at 0b8e7c15 (TFLM of 2022-09-20, Nano
// 33 BLE only) has the same form next to a deprecated ErrorReporter* overload; TFLM from
// before 2022-09, which required the ErrorReporter*, is not supported.
// Also: AllocateTensors(), Invoke(), input(0)/output(0) (TfLiteTensor: type, bytes,
// data.int8), arena_used_bytes(), MicroMutableOpResolver<N>() and its Add* methods named
// in tinyship_model_ops.h, GetModel(), Model::version(), TFLITE_SCHEMA_VERSION.
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
