// Host stub of tensorflow/lite/micro/micro_mutable_op_resolver.h: the default constructor
// and every Add* method tinyship_model_ops.h can call (tinyship.convert.carray's operator
// table; tests/test_tflm_libraries.py keeps the two lists equal). Each exists, returning
// TfLiteStatus with a defaulted registration argument, in Chirale_TensorFlowLite 2.0.0,
// esp-tflite-micro 1.3.4 and the official Arduino library at 0b8e7c15. Records how many
// operators were added.
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
  MicroMutableOpResolver() {}
  TfLiteStatus AddAdd() { return Add(); }
  TfLiteStatus AddAveragePool2D() { return Add(); }
  TfLiteStatus AddConv2D() { return Add(); }
  TfLiteStatus AddDepthwiseConv2D() { return Add(); }
  TfLiteStatus AddDequantize() { return Add(); }
  TfLiteStatus AddExpandDims() { return Add(); }
  TfLiteStatus AddFullyConnected() { return Add(); }
  TfLiteStatus AddLogistic() { return Add(); }
  TfLiteStatus AddMaxPool2D() { return Add(); }
  TfLiteStatus AddMean() { return Add(); }
  TfLiteStatus AddMul() { return Add(); }
  TfLiteStatus AddQuantize() { return Add(); }
  TfLiteStatus AddRelu() { return Add(); }
  TfLiteStatus AddRelu6() { return Add(); }
  TfLiteStatus AddReshape() { return Add(); }
  TfLiteStatus AddSoftmax() { return Add(); }
  TfLiteStatus AddSqueeze() { return Add(); }
  TfLiteStatus AddTanh() { return Add(); }

 private:
  TfLiteStatus Add() { return added < tOpCount ? (added++, kTfLiteOk) : kTfLiteError; }
};
}  // namespace tflite
#endif
