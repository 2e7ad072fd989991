// Host stub of Chirale_TensorFlowLite.h, the umbrella header the runner includes on the
// mbed boards (nano33ble, nanorp2040connect; glue built with -DARDUINO_ARCH_MBED). The real
// one (Chirale_TensorFlowLite 2.0.0, commit 46da2f98) declares nothing itself: it includes
// peripherals/peripherals.h, i.e. <Arduino.h> and <Wire.h>. The mbed core's Arduino.h
// (ArduinoCore-mbed cores/arduino/Arduino.h) then defines a function-like abs macro, which
// breaks TFLM headers that call std::abs; this stub defines the same macro so the glue
// build checks that the runner #undefs it before its TFLM includes.
#ifndef TINYSHIP_STUB_CHIRALE_TENSORFLOWLITE_H
#define TINYSHIP_STUB_CHIRALE_TENSORFLOWLITE_H
#include "Arduino.h"
#ifdef abs
#undef abs
#endif
#define abs(x) ((x) > 0 ? (x) : -(x))
#endif
