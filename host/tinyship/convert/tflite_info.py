"""Read a `.tflite` flatbuffer without TensorFlow: operators, tensors, quantization.

Used to generate the op resolver, check a model against its target-runtime profile, and
record input/output quantization in the manifest. Uses LiteRT's generated schema module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tinyship.errors import ModelError

# TFLite TensorType enum values we care about.
_DTYPES = {0: "float32", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8", 10: "float16"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: list[int]
    dtype: str
    scale: float
    zero_point: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelInfo:
    ops: list[str]  # builtin operator names in first-use order, unique
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    #: FULLY_CONNECTED ops whose weights carry more than one scale (per-channel).
    per_channel_dense: int
    size_bytes: int
    macs: int  # multiply-accumulates per inference (FC + conv), for latency models


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - depends on installed runtime
        try:
            from tflite_micro.tensorflow.lite.micro.python import (
                schema_py_generated as schema,
            )
        except ImportError as e:
            raise ModelError(
                "cannot read .tflite files: install the ml extra (ai-edge-litert)"
            ) from e
    return schema


def _op_names(schema: Any) -> dict[int, str]:
    return {
        v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")
    }


def inspect_model(model: bytes) -> ModelInfo:
    """Parse the flatbuffer; ModelError if it is not a single-subgraph TFLite model."""
    schema = _schema()
    if len(model) < 8 or model[4:8] != b"TFL3":
        raise ModelError("not a TFLite flatbuffer (missing 'TFL3' identifier)")
    try:
        m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    except Exception as e:  # flatbuffers raises assorted errors on garbage
        raise ModelError(f"corrupt TFLite flatbuffer: {e}") from None
    if not m.subgraphs or len(m.subgraphs) != 1:
        raise ModelError("expected exactly one subgraph in the TFLite model")
    names = _op_names(schema)
    g = m.subgraphs[0]

    def tinfo(idx: int) -> TensorInfo:
        t = g.tensors[idx]
        q = t.quantization
        has_q = q is not None and q.scale is not None and len(q.scale) > 0
        scale = float(q.scale[0]) if has_q else 0.0
        zp = int(q.zeroPoint[0]) if has_q and q.zeroPoint is not None else 0
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        return TensorInfo(name, shape, _DTYPES.get(t.type, f"type{t.type}"), scale, zp)

    ops: list[str] = []
    per_channel = 0
    macs = 0
    for op in g.operators or []:
        code = m.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        if name not in ops:
            ops.append(name)
        if name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
            w = g.tensors[op.inputs[1]]
            wq = w.quantization
            if (
                name == "FULLY_CONNECTED"
                and wq is not None
                and wq.scale is not None
                and len(wq.scale) > 1
            ):
                per_channel += 1
            out_shape = g.tensors[op.outputs[0]].shape
            out_elems = int(np.prod(out_shape)) if out_shape is not None else 0
            w_shape = list(w.shape) if w.shape is not None else [0]
            if name == "FULLY_CONNECTED":
                macs += out_elems * int(w_shape[-1])
            elif name == "CONV_2D":
                macs += out_elems * int(np.prod(w_shape[1:]))
            else:
                macs += out_elems * int(np.prod(w_shape[1:3]))
    return ModelInfo(
        ops=ops,
        inputs=[tinfo(i) for i in g.inputs],
        outputs=[tinfo(i) for i in g.outputs],
        per_channel_dense=per_channel,
        size_bytes=len(model),
        macs=macs,
    )


def check_profile(info: ModelInfo, profile_name: str) -> list[str]:
    """Problems that make the model unsafe on the profile's runtime; empty if none."""
    from tinyship.profiles import get_profile

    profile = get_profile(profile_name)
    problems: list[str] = []
    unsupported = [op for op in info.ops if op not in profile.supported_ops]
    if unsupported:
        problems.append(f"operators not supported by {profile.name}: {', '.join(unsupported)}")
    if info.per_channel_dense and not profile.per_channel_dense:
        problems.append(
            f"{info.per_channel_dense} FULLY_CONNECTED layer(s) are per-channel quantized; "
            f"{profile.name} computes them wrong (use per-tensor Dense quantization)"
        )
    for t in (*info.inputs, *info.outputs):
        if t.dtype != "int8":
            problems.append(f"tensor '{t.name}' is {t.dtype}, expected int8")
    return problems



@dataclass(frozen=True)
class SingleOp:
    """One operator of a model, cut out as a model of its own (see `single_op_models`)."""

    index: int  # position in the model's operator list
    name: str  # builtin operator name
    inputs: list[int]  # the full model's tensor indices fed to the cut-out's inputs, in order
    output: int  # the full model's tensor index of its (first) output
    model: bytes


def _constant(m: Any, tensor: Any) -> bool:
    """A tensor with data in the flatbuffer (weights, biases, shapes), not an activation."""
    buf = m.buffers[tensor.buffer] if m.buffers else None
    return buf is not None and (
        (buf.data is not None and len(buf.data) > 0) or bool(getattr(buf, "offset", 0)))


def single_op_models(model: bytes) -> list[SingleOp]:
    """Every operator as a one-operator model with the same tensors, quantization and
    constant buffers; its inputs are the operator's non-constant inputs.

    Why: to compare two runtimes operator by operator on identical inputs. End to end, a
    1-LSB rounding tie in one layer propagates and grows (2 LSB after three Dense layers,
    10 LSB after a softmax near p = 0.5), which says nothing about whether the runtimes
    compute each operator alike.
    """
    import flatbuffers

    schema = _schema()
    names = _op_names(schema)
    count = len(schema.ModelT.InitFromPackedBuf(bytearray(model), 0).subgraphs[0].operators or [])
    out: list[SingleOp] = []
    for k in range(count):
        m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)  # a fresh copy to cut
        g = m.subgraphs[0]
        op = g.operators[k]
        code = m.operatorCodes[op.opcodeIndex]
        ins = [int(i) for i in op.inputs if i >= 0 and not _constant(m, g.tensors[int(i)])]
        g.inputs = np.array(ins, dtype=np.int32)
        g.outputs = np.array([op.outputs[0]], dtype=np.int32)
        g.operators = [op]
        builder = flatbuffers.Builder(len(model) + 1024)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        out.append(SingleOp(k, name, ins, int(op.outputs[0]), bytes(builder.Output())))
    return out
