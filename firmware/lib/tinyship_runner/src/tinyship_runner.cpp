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

// Generated per build by firmware/scripts/select_model.py: the embedded model's data and
// the op resolver / arena of this env.
#include "tinyship_model_data.h"
#include "tinyship_runner_config.h"

static_assert(TINYSHIP_RUNNER_ARENA_BYTES % 16 == 0, "arena size must be a multiple of 16");
static_assert(TINYSHIP_RUNNER_ARENA_BYTES >= TINYSHIP_MODEL_ARENA_BYTES,
              "the arena must hold the embedded model");
static_assert(TINYSHIP_RESOLVER_OP_COUNT > 0, "the op resolver registers no operators?");

namespace tinyship {
namespace {

using Resolver = tflite::MicroMutableOpResolver<TINYSHIP_RESOLVER_OP_COUNT>;

alignas(16) uint8_t g_arena[TINYSHIP_RUNNER_ARENA_BYTES];
// Static storage for objects built at run time: no heap, no global constructors running
// before the Arduino core is up.
alignas(Resolver) uint8_t g_resolver_storage[sizeof(Resolver)];
alignas(tflite::MicroInterpreter) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];
const uint16_t g_op_ids[TINYSHIP_RESOLVER_OP_COUNT] = TINYSHIP_RESOLVER_OP_IDS;

tflite::MicroInterpreter *interp(void *p) { return static_cast<tflite::MicroInterpreter *>(p); }

size_t tensor_dims(const TfLiteTensor *t, int32_t *dims, size_t cap) {
  if (t == nullptr || t->dims == nullptr || t->dims->size <= 0 ||
      static_cast<size_t>(t->dims->size) > cap || dims == nullptr) {
    return 0;
  }
  const size_t rank = static_cast<size_t>(t->dims->size);
  for (size_t i = 0; i < rank; i++) dims[i] = static_cast<int32_t>(t->dims->data[i]);
  return rank;
}

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
    case RunnerStatus::kMisaligned: return "model not 16-byte aligned";
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

RunnerStatus ModelRunner::check_crc() {
  if (!crc_checked_) {
    computed_crc_ = model_crc32(tinyship_model_data, tinyship_model_data_len);
    crc_ok_ = computed_crc_ == static_cast<uint32_t>(TINYSHIP_MODEL_CRC32);
    crc_checked_ = true;
  }
  return crc_ok_ ? RunnerStatus::kOk : RunnerStatus::kCrcMismatch;
}

RunnerStatus ModelRunner::register_ops() {
  if (resolver_ != nullptr) return RunnerStatus::kOk;
  Resolver *resolver = new (g_resolver_storage) Resolver();
  failed_op_ = tinyship_register_resolver_ops(*resolver);
  if (failed_op_ != 0) return RunnerStatus::kOpRegistration;
  resolver_ = resolver;
  return RunnerStatus::kOk;
}

RunnerStatus ModelRunner::begin() {
  if (interpreter_ != nullptr) return status_;  // already built
  if (check_crc() != RunnerStatus::kOk) return status_ = RunnerStatus::kCrcMismatch;
  return load(tinyship_model_data, tinyship_model_data_len,
              static_cast<size_t>(TINYSHIP_MODEL_INPUT_SIZE),
              static_cast<size_t>(TINYSHIP_MODEL_OUTPUT_SIZE));
}

RunnerStatus ModelRunner::prepare() {
  const RunnerStatus ops = register_ops();
  if (ops != RunnerStatus::kOk) return status_ = ops;
  return check_crc();  // status_ stays kNotStarted until load()
}

RunnerStatus ModelRunner::load(const uint8_t *model, size_t len, size_t input_bytes,
                               size_t output_bytes) {
  if (interpreter_ != nullptr) {  // drop the running model (frees its kernels' state)
    interp(interpreter_)->~MicroInterpreter();
    interpreter_ = nullptr;
  }
  input_bytes_ = output_bytes_ = 0;
  if (model == nullptr || len == 0) return status_ = RunnerStatus::kNotStarted;
  if (reinterpret_cast<uintptr_t>(model) % 16u != 0u) return status_ = RunnerStatus::kMisaligned;
  const RunnerStatus ops = register_ops();
  if (ops != RunnerStatus::kOk) return status_ = ops;

  const tflite::Model *m = tflite::GetModel(model);
  if (m->version() != TFLITE_SCHEMA_VERSION) return status_ = RunnerStatus::kSchemaMismatch;

  tflite::MicroInterpreter *it = new (g_interpreter_storage)
      tflite::MicroInterpreter(m, *static_cast<Resolver *>(resolver_), g_arena, sizeof(g_arena));
  interpreter_ = it;
  if (it->AllocateTensors() != kTfLiteOk) return status_ = RunnerStatus::kAllocateFailed;

  const TfLiteTensor *in = it->input(0);
  const TfLiteTensor *out = it->output(0);
  if (in == nullptr || out == nullptr || in->type != kTfLiteInt8 || out->type != kTfLiteInt8 ||
      (input_bytes != 0 && in->bytes != input_bytes) ||
      (output_bytes != 0 && out->bytes != output_bytes)) {
    return status_ = RunnerStatus::kTensorMismatch;
  }
  input_bytes_ = in->bytes;
  output_bytes_ = out->bytes;
  return status_ = RunnerStatus::kOk;
}

RunnerStatus ModelRunner::infer(const int8_t *input, size_t input_len, int8_t *output,
                                size_t output_len) {
  if (status_ != RunnerStatus::kOk) return RunnerStatus::kNotStarted;
  if (input == nullptr || output == nullptr || input_len != input_bytes_ ||
      output_len != output_bytes_) {
    return RunnerStatus::kWrongSize;
  }
  tflite::MicroInterpreter *it = interp(interpreter_);
  TfLiteTensor *in = it->input(0);
  memcpy(in->data.int8, input, input_len);
  if (it->Invoke() != kTfLiteOk) return RunnerStatus::kInvokeFailed;
  memcpy(output, it->output(0)->data.int8, output_len);
  return RunnerStatus::kOk;
}

size_t ModelRunner::input_dims(int32_t *dims, size_t cap) const {
  return status_ == RunnerStatus::kOk ? tensor_dims(interp(interpreter_)->input(0), dims, cap)
                                      : 0;
}

size_t ModelRunner::output_dims(int32_t *dims, size_t cap) const {
  return status_ == RunnerStatus::kOk ? tensor_dims(interp(interpreter_)->output(0), dims, cap)
                                      : 0;
}

size_t ModelRunner::arena_used_bytes() const {
  return interpreter_ != nullptr ? interp(interpreter_)->arena_used_bytes() : 0;
}

size_t ModelRunner::arena_size() const { return sizeof(g_arena); }

const uint16_t *ModelRunner::op_ids() const { return g_op_ids; }

size_t ModelRunner::op_count() const { return TINYSHIP_RESOLVER_OP_COUNT; }

}  // namespace tinyship
