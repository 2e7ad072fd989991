// Host stub of MicroMutableOpResolver: records how many ops were added.
#ifndef TINYSHIP_STUB_RESOLVER_H
#define TINYSHIP_STUB_RESOLVER_H
#include "tensorflow/lite/micro/micro_interpreter.h"
namespace tflite {
class MicroOpResolver {
 public:
  unsigned added = 0;
};
template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
  TfLiteStatus Add() { return added < tOpCount ? (added++, kTfLiteOk) : kTfLiteError; }
  TfLiteStatus AddFullyConnected() { return Add(); }
  TfLiteStatus AddRelu() { return Add(); }
  TfLiteStatus AddSoftmax() { return Add(); }
  TfLiteStatus AddLogistic() { return Add(); }
  TfLiteStatus AddReshape() { return Add(); }
  TfLiteStatus AddQuantize() { return Add(); }
  TfLiteStatus AddDequantize() { return Add(); }
};
}  // namespace tflite
#endif
