"""Conversion stage: Keras -> int8 TFLite -> TFLite Micro C array, with host TFLM checks.

Submodules that need TensorFlow (`quantize`) import it lazily inside functions.
"""
