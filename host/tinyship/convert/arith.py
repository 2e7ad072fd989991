"""The fixed-point multipliers a TFLM runtime derives from a model's scales, and an export
step that makes every runtime of a profile derive the same ones.

A FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D layer rescales its int32 accumulator by
input_scale * filter_scale / output_scale, turned into a 31-bit multiplier and a shift by
`QuantizeMultiplier`. The runtimes compute that real number two ways (read in the sources):

* float product, `static_cast<double>(input->params.scale * filter->params.scale)` /
  output_scale (`GetQuantizedConvolutionMultipler`, tensorflow/lite/kernels/kernel_util.cc):
  the per-tensor FULLY_CONNECTED path (`CalculateOpDataFullyConnected`) of the Arduino
  library (tflite-micro-arduino-examples 0b8e7c15), Chirale_TensorFlowLite v2.0.0,
  esp-tflite-micro v1.3.4 and TFLM's own sources up to 90b983c2 (2026-08-20);
* double product, `static_cast<double>(input_scale) * filter_scale / output_scale`
  (`PopulateConvolutionQuantizationParams`, the per-channel FULLY_CONNECTED path): every
  CONV_2D and DEPTHWISE_CONV_2D, per-channel FULLY_CONNECTED, and, measured, the per-tensor
  FULLY_CONNECTED of the `tflite-micro` wheel (0.dev20261023, g8f6596d) the host and the
  virtual board run.

The float product is rounded to 24 bits, so the two multipliers differ by up to ~128 units
and a layer's output differs by 1 LSB on rare inputs. Every other operator tinyship exports
(softmax, logistic, tanh, add, mul, mean, quantize, relu) computes its multipliers with one
formula, identical in all those sources. `harmonize_scales` nudges the private filter
scales (a few float32 ulps, int8 weights untouched) until both formulas give the same
(multiplier, shift) for every channel of every such layer; then all runtimes compute the
same integers, whichever formula they use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tinyship.convert.tflite_info import _op_names, _schema
from tinyship.errors import ModelError

#: Layers whose requantization multiplier is derived from input_scale * filter_scale.
SCALED_LAYERS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")

#: Largest filter-scale nudge, in float32 ulps: a relative change of at most 2^-13
#: (1.2e-4), a gain change of 0.016 LSB on a full-scale output. Measured on random scales,
#: half the channels need <= 40 ulps and 99 % <= 700.
MAX_FILTER_ULPS = 1024

#: Fallback when no filter nudge works (~1 % of channels: the input scale's mantissa makes
#: the product's rounding error cycle slowly): nudge the layer's input activation scale by
#: up to this many ulps (same 1.2e-4 bound), which changes the cycle; the layer producing
#: that activation is harmonized again for its new output scale.
MAX_INPUT_ULPS = 1024

# Operators that pass int8 data through unchanged: their input and output must keep one
# scale, so a nudge moves all tensors they link together.
_LINK_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "MAX_POOL_2D", "AVERAGE_POOL_2D"})
# Operators whose int8 output scale is fixed by the kernel (1/256, 1/128): never nudged.
_FIXED_SCALE_OUTPUTS = frozenset({"LOGISTIC", "TANH", "SOFTMAX"})


# --- QuantizeMultiplier, as tensorflow/lite/kernels/internal/quantization_util.cc ----------


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(multiplier, shift) as C++ `QuantizeMultiplier` (double-rounding build) computes them:
    frexp, round half away from zero, the 2^31 carry, and flush to 0 below shift -31."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    v = q * 2.0**31  # exact: a power-of-two scaling
    fixed = math.floor(v)
    if v - fixed >= 0.5:
        fixed += 1
    if fixed == 2**31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(fixed), shift


def _quantize_multiplier_array(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`quantize_multiplier` over an array of non-negative doubles (same rules)."""
    q, e = np.frexp(np.asarray(real, dtype=np.float64))
    v = q * 2.0**31
    floor = np.floor(v)
    fixed = floor.astype(np.int64) + (v - floor >= 0.5)
    shift = e.astype(np.int64)
    carry = fixed == 2**31
    fixed = np.where(carry, fixed // 2, fixed)
    shift = shift + carry
    flush = shift < -31
    return np.where(flush, 0, fixed), np.where(flush, 0, shift)


def float_product_multiplier(input_scale: float, filter_scale: float,
                             output_scale: float) -> tuple[int, int]:
    """`static_cast<double>(input_scale * filter_scale) / output_scale`: the product rounded
    to float32 first (the per-tensor FULLY_CONNECTED path of the 2022-25 libraries)."""
    product = np.float32(input_scale) * np.float32(filter_scale)
    return quantize_multiplier(float(product) / float(np.float32(output_scale)))


def double_product_multiplier(input_scale: float, filter_scale: float,
                              output_scale: float) -> tuple[int, int]:
    """`double(input_scale) * double(filter_scale) / double(output_scale)`: the per-channel
    and convolution path, and the tflite-micro wheel's FULLY_CONNECTED."""
    si, sw, so = (float(np.float32(v)) for v in (input_scale, filter_scale, output_scale))
    return quantize_multiplier(si * sw / so)


def _agree(input_scale: np.float32, filters: np.ndarray, output_scale: np.float32) -> np.ndarray:
    """Element-wise: do both formulas give the same (multiplier, shift) for these filter
    scales (float32 array, any shape)?"""
    so = np.float64(output_scale)
    fm, fs = _quantize_multiplier_array((input_scale * filters).astype(np.float64) / so)
    dm, ds = _quantize_multiplier_array(np.float64(input_scale) * filters.astype(np.float64) / so)
    agree: np.ndarray = (fm == dm) & (fs == ds)
    return agree


# --- the model's layers ---------------------------------------------------------------------


@dataclass(frozen=True)
class LayerArith:
    """One output channel of a scaled layer: its scales and both formulas' results."""

    op_index: int
    op: str
    channel: int  # 0 for a per-tensor layer
    per_channel: bool
    input_scale: float
    filter_scale: float
    output_scale: float
    float_product: tuple[int, int]  # (multiplier, shift)
    double_product: tuple[int, int]

    @property
    def agree(self) -> bool:
        return self.float_product == self.double_product


@dataclass(frozen=True)
class _Layer:
    index: int
    op: str
    input: int
    filter: int
    bias: int | None
    output: int


class _Flatbuffer:
    """The tensors' scales of a TFLite flatbuffer, with the byte offset of each scale vector
    so the scales can be rewritten in place (nothing else in the file moves)."""

    def __init__(self, model: bytes) -> None:
        schema = _schema()
        if len(model) < 8 or model[4:8] != b"TFL3":
            raise ModelError("not a TFLite flatbuffer (missing 'TFL3' identifier)")
        self.data = bytearray(model)
        try:
            m = schema.Model.GetRootAs(self.data, 0)
            if m.SubgraphsLength() != 1:
                raise ModelError("expected exactly one subgraph in the TFLite model")
            g = m.Subgraphs(0)
            names = _op_names(schema)
            self.scales: dict[int, np.ndarray] = {}
            self._offsets: dict[int, int] = {}
            for t in range(g.TensorsLength()):
                q = g.Tensors(t).Quantization()
                if q is None or q.ScaleLength() == 0:
                    continue
                self.scales[t] = np.array(q.ScaleAsNumpy(), dtype=np.float32)
                # generated accessors expose no offset; field 2 (scale) is vtable slot 8
                self._offsets[t] = int(q._tab.Vector(q._tab.Offset(8)))
            self.layers: list[_Layer] = []
            self.producers: dict[int, str] = {}
            self.links: list[tuple[int, int]] = []
            for k in range(g.OperatorsLength()):
                op = g.Operators(k)
                code = m.OperatorCodes(op.OpcodeIndex())
                name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
                ins = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
                outs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
                for o in outs:
                    self.producers[o] = name
                if name in SCALED_LAYERS and len(ins) >= 2 and outs:
                    bias = ins[2] if len(ins) > 2 and ins[2] >= 0 else None
                    self.layers.append(_Layer(k, name, ins[0], ins[1], bias, outs[0]))
                elif name in _LINK_OPS and ins and outs:
                    self.links.append((ins[0], outs[0]))
        except ModelError:
            raise
        except Exception as e:  # flatbuffers raises assorted errors on garbage
            raise ModelError(f"corrupt TFLite flatbuffer: {e}") from None
        for layer in self.layers:
            for t in (layer.input, layer.filter, layer.output):
                if t not in self.scales:
                    raise ModelError(f"{layer.op} (operator {layer.index}) has an "
                                     f"unquantized tensor {t}: not a full-integer model")

    def write(self, new_scales: dict[int, np.ndarray]) -> bytes:
        """The model with these tensors' scales replaced (same lengths), nothing else."""
        targets = {self._offsets[t] for t in new_scales}
        shared = [t for t, off in self._offsets.items()
                  if off in targets and t not in new_scales]
        if shared:  # a writer that deduplicates vectors would make the patch leak
            raise ModelError(f"tensors {shared} share a scale vector with a nudged tensor; "
                             "cannot rewrite scales in place")
        out = bytearray(self.data)
        for t, values in new_scales.items():
            v = np.asarray(values, dtype="<f4")
            if v.shape != self.scales[t].shape:
                raise ModelError(f"tensor {t}: {v.size} scales for {self.scales[t].size}")
            off = self._offsets[t]
            out[off : off + v.nbytes] = v.tobytes()
        return bytes(out)


def multiplier_report(model: bytes) -> list[LayerArith]:
    """Both formulas' (multiplier, shift) for every channel of every FULLY_CONNECTED,
    CONV_2D and DEPTHWISE_CONV_2D layer, in operator order."""
    fb = _Flatbuffer(model)
    rows: list[LayerArith] = []
    for layer in fb.layers:
        si = float(fb.scales[layer.input][0])
        so = float(fb.scales[layer.output][0])
        filters = fb.scales[layer.filter]
        for c, sw in enumerate(filters):
            rows.append(LayerArith(
                op_index=layer.index, op=layer.op, channel=c, per_channel=len(filters) > 1,
                input_scale=si, filter_scale=float(sw), output_scale=so,
                float_product=float_product_multiplier(si, float(sw), so),
                double_product=double_product_multiplier(si, float(sw), so),
            ))
    return rows


# --- harmonizing ----------------------------------------------------------------------------


def _steps(max_ulps: int) -> np.ndarray:
    """0, +1, -1, +2, -2, ... +max, -max: candidates by distance, the larger scale first."""
    k = np.arange(1, max_ulps + 1, dtype=np.int64)
    return np.concatenate([[0], np.stack([k, -k], axis=1).reshape(-1)])


def _input_steps(max_ulps: int) -> np.ndarray:
    """Input-scale nudges to try: +-1..8 ulps, then every 16 ulps up to `max_ulps`. A
    product whose rounding error cycles slowly keeps doing so for small input nudges; the
    coarse steps change the cycle."""
    near = _steps(min(8, max_ulps))[1:]
    k = np.arange(16, max_ulps + 1, 16, dtype=np.int64)
    return np.concatenate([near, np.stack([k, -k], axis=1).reshape(-1)])


def _nudged(scale: np.float32, steps: np.ndarray) -> np.ndarray:
    """float32 values `steps` ulps away from a positive normal `scale`."""
    bits = np.int64(np.array(scale, dtype=np.float32).view(np.uint32))
    out: np.ndarray = (bits + steps).astype(np.uint32).view(np.float32)
    return out


def _search_filters(filters: np.ndarray, constraints: Iterable[tuple[np.float32, np.float32]],
                    max_ulps: int) -> np.ndarray | None:
    """The nearest filter scales (per channel) for which both formulas agree under every
    (input_scale, output_scale) the filter tensor is used with; None if a channel has none
    within `max_ulps`."""
    steps = _steps(max_ulps)
    out = np.array(filters, dtype=np.float32)
    cons = list(constraints)
    for c, sw in enumerate(filters):
        if not np.isfinite(sw) or sw <= 0:
            continue  # a zero scale gives (0, 0) both ways
        cands = _nudged(sw, steps)
        ok = np.isfinite(cands) & (cands > 0)
        for si, so in cons:
            ok &= _agree(si, cands, so)
        if not ok.any():
            return None
        out[c] = cands[int(np.argmax(ok))]
    return out


class _Classes:
    """Tensors that must share a scale (joined by pass-through operators)."""

    def __init__(self, links: list[tuple[int, int]]) -> None:
        self._parent: dict[int, int] = {}
        for a, b in links:
            self._parent[self.find(a)] = self.find(b)

    def find(self, t: int) -> int:
        while self._parent.get(t, t) != t:
            t = self._parent[t]
        return t

    def members(self, root: int, tensors: Iterable[int]) -> list[int]:
        return [t for t in tensors if self.find(t) == root]


def harmonize_scales(model: bytes, *, max_filter_ulps: int = MAX_FILTER_ULPS,
                     max_input_ulps: int = MAX_INPUT_ULPS) -> bytes:
    """The model with every scaled layer's filter scales nudged so that the float-product
    and double-product formulas give the same (multiplier, shift) for every channel; each
    bias scale is kept at float32(input_scale * filter_scale), as the converter writes it.

    Only scale bytes change (int8 weights, int32 biases and the layout stay), so model
    behaviour changes by at most a 1.2e-4 relative gain. If a layer has no such filter
    scale within `max_filter_ulps`, its input activation scale (and every tensor linked to
    it by reshapes and pools) is nudged by up to `max_input_ulps` as well. ModelError if
    that fails too (not seen in 1,200 models with random scales; retraining gives new
    scales).
    """
    fb = _Flatbuffer(model)
    if not fb.layers:
        return model
    classes = _Classes(fb.links)
    all_tensors = list(fb.scales)

    def act_scale(t: int, nudges: dict[int, int]) -> np.float32:
        s = np.float32(fb.scales[t][0])
        j = nudges.get(classes.find(t), 0)
        return np.float32(_nudged(s, np.array([j]))[0]) if j else s

    users: dict[int, list[_Layer]] = {}
    for layer in fb.layers:
        users.setdefault(layer.filter, []).append(layer)

    def solve(filters: Iterable[int], nudges: dict[int, int]) -> tuple[
            dict[int, np.ndarray], _Layer | None]:
        found: dict[int, np.ndarray] = {}
        for f in filters:
            cons = [(act_scale(ly.input, nudges), act_scale(ly.output, nudges))
                    for ly in users[f]]
            new = _search_filters(fb.scales[f], cons, max_filter_ulps)
            if new is None:
                return found, users[f][0]
            found[f] = new
        return found, None

    nudges: dict[int, int] = {}
    while True:
        filters, failed = solve(users, nudges)
        if failed is None:
            break
        root = classes.find(failed.input)
        fixed = [t for t in classes.members(root, all_tensors)
                 if fb.producers.get(t) in _FIXED_SCALE_OUTPUTS]
        why = None
        if root in nudges:
            why = "its input scale was already nudged for another layer"
        elif fixed:
            why = "its input scale is fixed by the operator that produces it"
        else:
            touching = [ly.filter for ly in fb.layers
                        if root in (classes.find(ly.input), classes.find(ly.output))]
            for j in _input_steps(max_input_ulps):
                trial = {**nudges, root: int(j)}
                if solve(touching, trial)[1] is None:
                    nudges = trial
                    break
            else:
                why = f"nor with its input scale nudged by up to {max_input_ulps} ulps"
        if why is not None:
            raise ModelError(
                f"cannot make {failed.op} (operator {failed.index}) compute the same "
                f"fixed-point multiplier on every runtime: no filter scale within "
                f"{max_filter_ulps} float32 ulps agrees, {why}",
                hint="train again (another seed or representative sample gives new scales)",
            )

    new_scales: dict[int, np.ndarray] = {}
    for root, j in nudges.items():
        for t in classes.members(root, all_tensors):
            new_scales[t] = _nudged(np.float32(fb.scales[t][0]), np.array([j]))
    for f, values in filters.items():
        if not np.array_equal(values.view(np.uint32), fb.scales[f].view(np.uint32)):
            new_scales[f] = values
    for layer in fb.layers:
        if layer.bias is None or layer.bias not in fb.scales:
            continue
        bias = fb.scales[layer.bias]
        si = act_scale(layer.input, nudges)
        product = (si * filters[layer.filter]).astype(np.float32)
        if len(product) == len(bias):
            want = product
        elif len(product) == 1:
            want = np.full(bias.shape, product[0], dtype=np.float32)
        else:  # per-channel filter, one bias scale: the runtimes read channel 0's
            want = product[:1]
        if not np.array_equal(want.view(np.uint32), bias.view(np.uint32)):
            new_scales[layer.bias] = want
    out = fb.write(new_scales) if new_scales else model
    bad = [r for r in multiplier_report(out) if not r.agree]
    if bad:  # the search is exact, so this is a bug, not a property of the model
        raise ModelError(f"harmonizing left {len(bad)} channel(s) disagreeing, first: {bad[0]}")
    return out
