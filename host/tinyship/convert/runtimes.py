"""Run an int8 model on the host: TFLite interpreter (LiteRT) and TensorFlow Lite Micro.

TFLM here is the real runtime with reference kernels (the `tflite-micro` package), so its
outputs are what a board with reference kernels computes; the parity gate compares the two.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np

from tinyship.convert.tflite_info import TensorInfo
from tinyship.errors import ModelError


def quantize(x: np.ndarray, t: TensorInfo) -> np.ndarray:
    """Float -> int8 with the tensor's scale and zero point (round half away, clamp)."""
    q = np.round(np.asarray(x, dtype=np.float64) / t.scale) + t.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, t: TensorInfo) -> np.ndarray:
    """int8 -> float: (q - zero_point) * scale."""
    return (np.asarray(q, dtype=np.float32) - t.zero_point) * np.float32(t.scale)


def run_tflite(model: bytes, x: np.ndarray) -> np.ndarray:
    """Run every row of `x` (already in the input dtype) through the LiteRT interpreter."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as e:
            raise ModelError("no TFLite interpreter: install the ml extra") from e
    interp: Any = Interpreter(model_content=model, num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    shape = tuple(int(d) for d in inp["shape"])
    results = []
    for row in np.asarray(x):
        interp.set_tensor(inp["index"], np.asarray(row, dtype=inp["dtype"]).reshape(shape))
        interp.invoke()
        results.append(np.array(interp.get_tensor(out["index"])).reshape(-1))
    return np.stack(results) if results else np.zeros((0, 0))


class TflmRunner:
    """A TFLM interpreter for one model, reused across calls (the virtual board uses it too)."""

    def __init__(self, model: bytes, arena_size: int) -> None:
        try:
            from tflite_micro.python.tflite_micro import runtime
        except ImportError as e:  # pragma: no cover
            raise ModelError("TFLite Micro runtime missing: install the ml extra") from e
        try:
            self._interp: Any = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
        except RuntimeError as e:
            raise ModelError(f"TFLM could not allocate the model in {arena_size} bytes: {e}") from e
        d = self._interp.get_input_details(0)
        self._in_shape = tuple(int(v) for v in d["shape"])
        self._in_dtype = d["dtype"]

    def invoke(self, row: np.ndarray) -> np.ndarray:
        """One inference; `row` holds the input tensor's elements in its dtype."""
        self._interp.set_input(np.asarray(row, dtype=self._in_dtype).reshape(self._in_shape), 0)
        self._interp.invoke()
        return np.array(self._interp.get_output(0)).reshape(-1)

    def run(self, x: np.ndarray) -> np.ndarray:
        out = [self.invoke(r) for r in np.asarray(x)]
        return np.stack(out) if out else np.zeros((0, 0))


def run_tflm(model: bytes, x: np.ndarray, arena_size: int) -> np.ndarray:
    """Run every row of `x` through TFLite Micro."""
    return TflmRunner(model, arena_size).run(x)


# --- arena sizing -------------------------------------------------------------------------
# TFLM's Python binding can crash the process (not raise) when the arena is far too small,
# so each probe runs in a child interpreter.

_PROBE = r"""
import sys, json
import numpy as np
from tflite_micro.python.tflite_micro import runtime
model = open(sys.argv[1], 'rb').read()
size = int(sys.argv[2])
it = runtime.Interpreter.from_bytes(model, arena_size=size)
d = it.get_input_details(0)
it.set_input(np.zeros(tuple(d['shape']), d['dtype']), 0)
it.invoke()
print(json.dumps({"ok": True}))
"""


def _probe(model_path: str, size: int) -> bool:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, model_path, str(size)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode == 0 and '"ok": true' in proc.stdout


def find_min_arena(model: bytes, *, granularity: int = 16, start: int | None = None) -> int:
    """Smallest tensor arena (bytes, multiple of `granularity`) TFLM needs for this model.

    Found by bisection on the real TFLM allocator, each probe in a child process.
    """
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
        f.write(model)
        path = f.name
    try:
        hi = max(start or 0, 2048, len(model) // 4)
        hi = -(-hi // granularity) * granularity
        while not _probe(path, hi):
            hi *= 2
            if hi > 64 * 1024 * 1024:
                raise ModelError("TFLM could not run the model even with a 64 MiB arena")
        lo = 0  # known to fail (or untested lower bound)
        while hi - lo > granularity:
            mid = (lo + hi) // 2 // granularity * granularity
            if mid <= lo:
                break
            if _probe(path, mid):
                hi = mid
            else:
                lo = mid
        return hi
    finally:
        os.unlink(path)


def device_arena_bytes(min_arena: int, *, margin: float = 0.25) -> int:
    """Arena to allocate on the device: the host minimum plus a margin, 16-byte aligned.

    The host build is 64-bit (larger structs), so its minimum is not below a 32-bit MCU's;
    the margin covers allocator differences between TFLM versions.
    """
    size = int(min_arena * (1.0 + margin))
    return -(-size // 16) * 16
