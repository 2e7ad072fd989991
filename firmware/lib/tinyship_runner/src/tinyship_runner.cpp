// tinyship_runner.cpp - TFLM model runner (see tinyship_runner.h for the API
// versions it relies on).
#include "tinyship_runner.h"

#include <new>
#include <string.h>

// Each env's TFLM library, included by its own header: PlatformIO's library finder builds
// a library only when a source includes one of its headers (`__has_include(<...>)` alone
// does not pull it in), and the TFLM headers below are common to every TFLM library.
#if defined(ARDUINO_ARCH_MBED)
// nano33ble and nanorp2040connect: Chirale_TensorFlowLite (lib_deps). Its umbrella header
// includes the mbed core's Arduino.h, which defines a function-like abs(x) macro; TFLM
// headers that call std::abs (micro_utils.h, quantization_util.h) do not compile after it.
#include <Chirale_TensorFlowLite.h>
#undef abs
#elif defined(ESP_PLATFORM)
// esp32s3: esp-tflite-micro is an ESP-IDF component (src/idf_component.yml), linked by the
// IDF build; it has no umbrella header.
#endif

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

// Generated per model version (copied by firmware/scripts/select_model.py).
#include "tinyship_model_data.h"
#include "tinyship_model_ops.h"

static_assert(TINYSHIP_MODEL_ARENA_BYTES % 16 == 0, "arena size must be a multiple of 16");
static_assert(TINYSHIP_MODEL_OP_COUNT > 0, "model uses no operators?");

namespace tinyship {
namespace {

using Resolver = tflite::MicroMutableOpResolver<TINYSHIP_MODEL_OP_COUNT>;

alignas(16) uint8_t g_arena[TINYSHIP_MODEL_ARENA_BYTES];
// Static storage for objects built in begin(): no heap, no global constructors
// running before the Arduino core is up.
alignas(Resolver) uint8_t g_resolver_storage[sizeof(Resolver)];
alignas(tflite::MicroInterpreter) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];

tflite::MicroInterpreter *interp(void *p) { return static_cast<tflite::MicroInterpreter *>(p); }

}  // namespace

const char *runner_status_str(RunnerStatus status) {
  switch (status) {
    case RunnerStatus::kOk: return "ok";
    case RunnerStatus::kNotStarted: return "not started";
    case RunnerStatus::kCrcMismatch: return "model crc mismatch";
    case RunnerStatus::kSchemaMismatch: return "model schema version unsupported";
    case RunnerStatus::kOpRegistration: return "operator registration failed";
    case RunnerStatus::kAllocateFailed: return "AllocateTensors failed (arena too small?)";
    case RunnerStatus::kTensorMismatch: return "tensor type or size differs from the header";
    case RunnerStatus::kWrongSize: return "wrong buffer size";
    case RunnerStatus::kInvokeFailed: return "Invoke failed";
  }
  return "?";
}

uint32_t model_crc32(const uint8_t *data, size_t len) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < len; i++) {
    crc ^= data[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

RunnerStatus ModelRunner::begin() {
  if (interpreter_ != nullptr) return status_;  // already built
  computed_crc_ = model_crc32(tinyship_model_data, tinyship_model_data_len);
  crc_ok_ = computed_crc_ == static_cast<uint32_t>(TINYSHIP_MODEL_CRC32);
  if (!crc_ok_) return status_ = RunnerStatus::kCrcMismatch;

  const tflite::Model *model = tflite::GetModel(tinyship_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) return status_ = RunnerStatus::kSchemaMismatch;

  Resolver *resolver = new (g_resolver_storage) Resolver();
  failed_op_ = tinyship_register_ops(*resolver);
  if (failed_op_ != 0) return status_ = RunnerStatus::kOpRegistration;

  tflite::MicroInterpreter *it = new (g_interpreter_storage)
      tflite::MicroInterpreter(model, *resolver, g_arena, sizeof(g_arena));
  interpreter_ = it;
  if (it->AllocateTensors() != kTfLiteOk) return status_ = RunnerStatus::kAllocateFailed;

  const TfLiteTensor *in = it->input(0);
  const TfLiteTensor *out = it->output(0);
  if (in == nullptr || out == nullptr || in->type != kTfLiteInt8 || out->type != kTfLiteInt8 ||
      in->bytes != static_cast<size_t>(TINYSHIP_MODEL_INPUT_SIZE) ||
      out->bytes != static_cast<size_t>(TINYSHIP_MODEL_OUTPUT_SIZE)) {
    return status_ = RunnerStatus::kTensorMismatch;
  }
  return status_ = RunnerStatus::kOk;
}

RunnerStatus ModelRunner::infer(const int8_t *input, size_t input_len, int8_t *output,
                                size_t output_len) {
  if (status_ != RunnerStatus::kOk) return RunnerStatus::kNotStarted;
  if (input == nullptr || output == nullptr ||
      input_len != static_cast<size_t>(TINYSHIP_MODEL_INPUT_SIZE) ||
      output_len != static_cast<size_t>(TINYSHIP_MODEL_OUTPUT_SIZE)) {
    return RunnerStatus::kWrongSize;
  }
  tflite::MicroInterpreter *it = interp(interpreter_);
  TfLiteTensor *in = it->input(0);
  memcpy(in->data.int8, input, input_len);
  if (it->Invoke() != kTfLiteOk) return RunnerStatus::kInvokeFailed;
  memcpy(output, it->output(0)->data.int8, output_len);
  return RunnerStatus::kOk;
}

size_t ModelRunner::arena_used_bytes() const {
  return interpreter_ != nullptr ? interp(interpreter_)->arena_used_bytes() : 0;
}

size_t ModelRunner::arena_size() const { return sizeof(g_arena); }

}  // namespace tinyship
