"""Keras -> float and full-integer int8 TFLite, with the scheme set by the target profile.

Imports TensorFlow lazily: only training/conversion pays for it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tinyship.errors import ModelError
from tinyship.profiles import get_profile


def quiet_tensorflow() -> Any:
    """Import TensorFlow with its start-up chatter turned down; return the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        import tensorflow as tf
    except ImportError as e:  # pragma: no cover - depends on install
        raise ModelError(
            "TensorFlow is not installed: install the ml extra (pip install 'tinyship[ml]')"
        ) from e
    tf.get_logger().setLevel("ERROR")
    return tf


def _converter(model: Any) -> Any:
    """A TFLiteConverter for a Keras model, via a quiet SavedModel export (Keras 3's
    `from_keras_model` prints the whole signature to stdout).

    The signature fixes the batch size at 1: a dynamic batch makes the converter emit
    SHAPE/STRIDED_SLICE/PACK around reshapes, ops a microcontroller runtime need not carry.
    """
    import tempfile

    tf = quiet_tensorflow()
    tmp = tempfile.mkdtemp(prefix="tinyship-export-")
    spec = [tf.TensorSpec([1, *model.inputs[0].shape[1:]], tf.float32)]
    try:
        model.export(tmp, format="tf_saved_model", verbose=False, input_signature=spec)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
    except (AttributeError, TypeError):  # Keras 2 / tf.keras: no export(verbose=)
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv._tinyship_tmp = tmp
    return conv


@contextlib.contextmanager
def _native_output_captured() -> Iterator[Callable[[], str]]:
    """Send what native code writes to fd 1/2 (the MLIR converter's chatter) to a temp file;
    yields a function returning it, so a failure can still show the converter's words."""
    import sys
    import tempfile

    with tempfile.TemporaryFile(mode="w+b") as sink:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.flush()
        saved = []
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
        except OSError:  # no real fds (embedded interpreter): leave output alone
            pass

        def text() -> str:
            sink.seek(0)
            return sink.read().decode("utf-8", "replace")

        try:
            yield text
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


def _convert(conv: Any) -> bytes:
    import shutil
    import warnings

    try:
        with warnings.catch_warnings(), _native_output_captured() as captured:
            # "Statistics for quantized inputs were expected": we quantize inputs ourselves.
            warnings.simplefilter("ignore", UserWarning)
            try:
                return bytes(conv.convert())
            except Exception as e:
                tail = "\n".join(captured().strip().splitlines()[-10:])
                raise ModelError(f"TFLite conversion failed: {e}\n{tail}".rstrip()) from e
    finally:
        shutil.rmtree(getattr(conv, "_tinyship_tmp", ""), ignore_errors=True)


def to_float_tflite(model: Any) -> bytes:
    """Convert a Keras model to a float32 TFLite flatbuffer (the degradation baseline)."""
    return _convert(_converter(model))


def to_int8_tflite(model: Any, representative: np.ndarray, profile: str) -> bytes:
    """Full-integer int8 conversion (int8 input and output) for a TFLM target profile.

    `representative` are float model inputs drawn from the training data; they fix the
    activation ranges, so they must cover what the device will see.
    """
    tf = quiet_tensorflow()
    prof = get_profile(profile)
    rep = np.asarray(representative, dtype=np.float32)
    if rep.ndim < 2 or len(rep) == 0:
        raise ModelError("representative dataset is empty")

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(rep)):
            yield [rep[i : i + 1]]

    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if not prof.per_channel_dense:
        # Older TFLM (the Arduino library) reads Dense weights as per tensor.
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    return _convert(conv)
