"""Run an int8 model on the host: TFLite interpreter (LiteRT) and TensorFlow Lite Micro.

TFLM here is the real runtime with reference kernels (the `tflite-micro` package), so its
outputs are what a board with reference kernels computes; the parity gate compares the two.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
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


def to_target_units(q: np.ndarray, output: Mapping[str, Any]) -> np.ndarray:
    """int8 model outputs -> the target's own units, as every consumer must read them.

    A regression model predicts the standardized target, so its int8 range spans the data
    instead of [0, max] (TFLite ranges always include 0); `output` is the manifest's
    `model.output` record: `scale`, `zero_point` and, for such models, `target_mean` and
    `target_scale` (absent in older versions: identity). value = mean + tscale * (q - zp) * s.
    """
    deq = (np.asarray(q, dtype=np.float64) - float(output["zero_point"])) * float(
        output["scale"]
    )
    mean = float(output.get("target_mean", 0.0))
    tscale = float(output.get("target_scale", 1.0))
    result: np.ndarray = mean + tscale * deq
    return result


def run_tflite(model: bytes, x: np.ndarray, *, reference_kernels: bool = True) -> np.ndarray:
    """Run every row of `x` (already in the input dtype) through the LiteRT interpreter.

    With `reference_kernels` (the default) LiteRT uses its builtin reference kernels, the
    ones TFLM's are derived from; the default optimized path (XNNPACK) rounds differently
    by up to an LSB, which would hide a real TFLM discrepancy in noise.
    """
    Interpreter, OpResolverType = _litert()
    resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
    interp: Any = Interpreter(
        model_content=model, num_threads=1, experimental_op_resolver_type=resolver
    )
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


def _litert() -> tuple[Any, Any]:
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # pragma: no cover
        try:
            from tflite_runtime.interpreter import Interpreter, OpResolverType
        except ImportError as e:
            raise ModelError("no TFLite interpreter: install the ml extra") from e
    return Interpreter, OpResolverType


def layer_parity(model: bytes, x: np.ndarray) -> list[dict[str, Any]]:
    """Operator by operator, |TFLite - TFLM| in output LSB when TFLM is given exactly the
    inputs TFLite gave that operator: a runtime mismatch shows at the operator that has it,
    undiluted and not inflated by how later layers amplify an earlier 1-LSB rounding tie.

    Returns one record per operator: index, op, max_lsb, and the rows where it differs.
    """
    from tflite_micro.python.tflite_micro import runtime

    from tinyship.convert.tflite_info import single_op_models

    interpreter, resolver = _litert()
    interp: Any = interpreter(
        model_content=model, num_threads=1,
        experimental_op_resolver_type=resolver.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    shape = tuple(int(d) for d in inp["shape"])
    ops = single_op_models(model)
    wanted = sorted({t for op in ops for t in (*op.inputs, op.output)})
    seen: dict[int, list[np.ndarray]] = {t: [] for t in wanted}
    for row in np.asarray(x):
        interp.set_tensor(inp["index"], np.asarray(row, dtype=inp["dtype"]).reshape(shape))
        interp.invoke()
        for t in wanted:
            seen[t].append(np.array(interp.get_tensor(t)))
    records = []
    for op in ops:
        arena = 16 * 1024 + 8 * sum(seen[t][0].size for t in (*op.inputs, op.output))
        try:
            micro: Any = runtime.Interpreter.from_bytes(op.model, arena_size=arena)
        except RuntimeError as e:
            raise ModelError(f"TFLM could not run operator {op.index} ({op.name}) alone: {e}"
                             ) from e
        worst = np.zeros(len(x), dtype=np.int64)
        for r in range(len(x)):
            for j, t in enumerate(op.inputs):
                micro.set_input(seen[t][r], j)
            micro.invoke()
            got = np.array(micro.get_output(0)).astype(np.int64).reshape(-1)
            want = seen[op.output][r].astype(np.int64).reshape(-1)
            worst[r] = int(np.abs(got - want).max()) if got.size else 0
        records.append({"index": op.index, "op": op.name, "max_lsb": int(worst.max(initial=0)),
                        "rows": np.flatnonzero(worst).tolist()})
    return records


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
# so probes run in a child interpreter that answers one size per line and is restarted
# if it dies.

_PROBE = r"""
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
model = open(sys.argv[1], 'rb').read()
for line in sys.stdin:
    size = int(line)
    try:
        it = runtime.Interpreter.from_bytes(model, arena_size=size)
        d = it.get_input_details(0)
        it.set_input(np.zeros(tuple(d['shape']), d['dtype']), 0)
        it.invoke()
        print("ok", flush=True)
    except RuntimeError:
        print("fail", flush=True)
"""


class _ArenaProber:
    def __init__(self, model_path: str) -> None:
        self._path = model_path
        self._proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", _PROBE, self._path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def fits(self, size: int) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(f"{size}\n")
            self._proc.stdin.flush()
            answer = self._proc.stdout.readline().strip()
        except BrokenPipeError:
            answer = ""
        if answer == "ok":
            return True
        if answer != "fail":  # the child crashed on this size
            self._proc.wait()
            self._proc = None
        return False

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=30)


def find_min_arena(model: bytes, *, granularity: int = 16) -> int:
    """Smallest tensor arena (bytes, multiple of `granularity`) TFLM needs for this model.

    Found by bisection on the real TFLM allocator, in a child process.
    """
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
        f.write(model)
        path = f.name
    prober = _ArenaProber(path)
    try:
        hi = max(2048, len(model) // 4)
        hi = -(-hi // granularity) * granularity
        lo = 0  # largest size known (or assumed) not to fit
        while not prober.fits(hi):
            lo, hi = hi, hi * 2
            if hi > 64 * 1024 * 1024:
                raise ModelError("TFLM could not run the model even with a 64 MiB arena")
        while hi - lo > granularity:
            mid = (lo + hi) // 2 // granularity * granularity
            if mid <= lo:
                break
            if prober.fits(mid):
                hi = mid
            else:
                lo = mid
        return hi
    finally:
        prober.close()
        os.unlink(path)


def device_arena_bytes(min_arena: int, *, margin: float = 0.25) -> int:
    """Arena to allocate on the device: the host minimum plus a margin, 16-byte aligned.

    The host build is 64-bit (larger structs), so its minimum is not below a 32-bit MCU's;
    the margin covers allocator differences between TFLM versions.
    """
    size = int(min_arena * (1.0 + margin))
    return -(-size // 16) * 16
