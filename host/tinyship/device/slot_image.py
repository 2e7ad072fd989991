"""The model slot image: a header, then the `.tflite` flatbuffer (firmware/SLOTS.md,
"Slot image"). The firmware parses it with `ts_slot_image_parse`
(firmware/lib/tinyship_core/src/ts_slot_image.cpp); tests/test_slot_image_codec.py proves
both sides agree field by field and refuse the same corruptions with the same status.

No TensorFlow: the fields come from the registry manifest (`model.*`, `profile`, `version`).

Errors are `SlotImageError`, a `ValueError` carrying the firmware's status code. Why not a
`DeviceError`: this is a pure codec of bytes, used on images built from the registry (a
model problem) as well as on headers read back from a board (a device problem); the
caller knows which, and wraps it into `ModelError` or `DeviceError` with the right hint.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

MAGIC = b"TSMH"
FORMAT_VERSION = 1
FIXED_LEN = 144
CRC_OFFSET = 140
ALIGN = 16
VERSION_LEN = 16
PROFILE_LEN = 32
MAX_OPS = 64
MAX_HEADER_LEN = 0xFFF0  # the largest multiple of ALIGN a u16 header length holds
#: The largest header a `SLOT_BEGIN` frame carries: the whole header goes in one payload
#: (firmware/PROTOCOL.md), so an image to install holds only the golden vectors that fit.
BEGIN_HEADER_MAX = 1024

#: The fixed part before the header CRC (offsets 0..139), little-endian.
_FIXED = struct.Struct("<4sHHIII32s16s32sIIIfifiHHff")
assert _FIXED.size == CRC_OFFSET

#: Operator ids: TFLite `BuiltinOperator` numbers (schema.fbs), stable across TFLite
#: releases. Only operators listed here can go into a slot image; the firmware registers
#: its op resolver's operators by the same numbers (firmware/SLOTS.md, "Operator ids").
OP_IDS: dict[str, int] = {
    "ADD": 0,
    "AVERAGE_POOL_2D": 1,
    "CONCATENATION": 2,
    "CONV_2D": 3,
    "DEPTHWISE_CONV_2D": 4,
    "DEQUANTIZE": 6,
    "FULLY_CONNECTED": 9,
    "LOGISTIC": 14,
    "MAX_POOL_2D": 17,
    "MUL": 18,
    "RELU": 19,
    "RELU6": 21,
    "RESHAPE": 22,
    "SOFTMAX": 25,
    "TANH": 28,
    "PAD": 34,
    "MEAN": 40,
    "SUB": 41,
    "SQUEEZE": 43,
    "STRIDED_SLICE": 45,
    "EXPAND_DIMS": 70,
    "LEAKY_RELU": 98,
    "QUANTIZE": 114,
    "HARD_SWISH": 117,
}
OP_NAMES: dict[int, str] = {v: k for k, v in OP_IDS.items()}

#: The operators of every model family tinyship trains, which a board's op resolver
#: registers by default besides its factory model's (`firmware/scripts/select_model.py`
#: FAMILY_OPS, where they were measured; tests keep the two equal). The virtual board
#: registers the same.
FAMILY_OPS: tuple[str, ...] = (
    "FULLY_CONNECTED", "CONV_2D", "RESHAPE", "EXPAND_DIMS", "SQUEEZE", "RELU", "RELU6",
    "TANH", "SOFTMAX",
)

#: Bytes per element of the manifest's tensor dtypes.
_DTYPE_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "float32": 4}


class SlotImageStatus(IntEnum):
    """`ts_slot_image_status` of ts_slot_image.h, same numbers."""

    OK = 0
    NULL = 1
    TRUNCATED = 2
    MAGIC = 3
    VERSION = 4
    HEADER_LEN = 5
    HEADER_CRC = 6
    FIELD = 7
    BODY_LEN = 8
    MODEL_CRC = 9
    PROFILE = 10
    OP = 11
    ARENA = 12
    INPUT = 13
    OUTPUT = 14
    SLOT_SIZE = 15


class SlotImageError(ValueError):
    """A slot image that cannot be built, parsed or installed; `status` is the firmware's
    code for the same refusal (None when the firmware has no equivalent, e.g. a manifest
    that does not describe the model bytes)."""

    def __init__(self, message: str, status: SlotImageStatus | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SlotHeader:
    """A parsed slot image header; `body` is the model (empty for `header_only`)."""

    format_version: int
    header_len: int
    sequence: int
    model_len: int
    model_crc32: int
    sha256: bytes
    model_version: str
    profile: str
    arena_bytes: int
    input_bytes: int
    output_bytes: int
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    target_mean: float
    target_scale: float
    ops: tuple[int, ...]
    golden_inputs: tuple[bytes, ...]
    golden_outputs: tuple[bytes, ...]
    header_crc32: int
    body: bytes


@dataclass(frozen=True)
class FirmwareLimits:
    """What a firmware can run (`ts_slot_limits_t`)."""

    profile: str
    ops: frozenset[int]
    arena_bytes: int
    input_bytes: int
    output_bytes: int
    slot_bytes: int


def header_len_for(n_ops: int, n_golden: int, input_bytes: int, output_bytes: int) -> int:
    """The header length (= body offset) a header with these counts has."""
    raw = FIXED_LEN + 2 * n_ops + n_golden * (input_bytes + output_bytes)
    return -(-raw // ALIGN) * ALIGN


def max_golden_for(n_ops: int, input_bytes: int, output_bytes: int, *,
                   limit: int = BEGIN_HEADER_MAX) -> int:
    """The most golden vectors a header with these sizes holds while its whole length
    (`header_len_for`, padding included) stays at most `limit` bytes; at most 65535.
    SlotImageError (HEADER_LEN) when not even a header without golden vectors fits."""
    # align16(raw) <= limit  <=>  raw <= limit rounded down to 16.
    room = min(limit, MAX_HEADER_LEN) // ALIGN * ALIGN - FIXED_LEN - 2 * n_ops
    if room < 0:
        raise SlotImageError(f"a header with {n_ops} operators does not fit in {limit} bytes",
                             SlotImageStatus.HEADER_LEN)
    per = input_bytes + output_bytes
    return 0xFFFF if per == 0 else min(0xFFFF, room // per)


def max_golden_for_begin(manifest: Mapping[str, Any], *,
                         limit: int = BEGIN_HEADER_MAX) -> int:
    """`max_golden_for` the model of a registry manifest: how many golden vectors an image
    can carry so its header fits one `SLOT_BEGIN` payload (pass it to `build_slot_image`
    as `max_golden`). SlotImageError when the manifest does not describe a model."""
    f = _model_fields(manifest)
    return max_golden_for(len(f.ops), f.in_bytes, f.out_bytes, limit=limit)


def _tensor_bytes(t: object, what: str) -> int:
    if not isinstance(t, Mapping):
        raise SlotImageError(f"manifest model.{what} is not an object")
    dtype = t.get("dtype")
    if dtype not in _DTYPE_BYTES:
        raise SlotImageError(f"manifest model.{what}.dtype {dtype!r} is not one of "
                             f"{', '.join(sorted(_DTYPE_BYTES))}")
    n = 1
    for d in t.get("shape", []):
        n *= int(d)
    return n * _DTYPE_BYTES[str(dtype)]


def _str_field(value: str, size: int, what: str) -> bytes:
    raw = value.encode("ascii") if value.isascii() else b""
    if not raw or len(raw) > size or b"\0" in raw:
        raise SlotImageError(f"{what} {value!r} must be 1..{size} ASCII characters")
    return raw.ljust(size, b"\0")


def _f32(x: float) -> float:
    """`x` rounded to float32, as the header stores it (inf when out of its range)."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


def op_ids(names: Sequence[str]) -> list[int]:
    """Operator names (manifest `model.ops`) to ids; SlotImageError names unknown ones."""
    unknown = [n for n in names if n not in OP_IDS]
    if unknown:
        raise SlotImageError(
            f"operators without a slot image id: {', '.join(unknown)} "
            f"(add them to OP_IDS and firmware/SLOTS.md)", SlotImageStatus.OP)
    return [OP_IDS[n] for n in names]


@dataclass(frozen=True)
class _ModelFields:
    """The header fields a registry manifest gives (see `build_slot_image`)."""

    sha256: bytes
    crc32: int
    size: int
    in_bytes: int
    out_bytes: int
    in_scale: float
    in_zero: int
    out_scale: float
    out_zero: int
    target_mean: float
    target_scale: float
    ops: list[int]
    arena: int
    version: bytes
    profile: bytes


def _model_fields(manifest: Mapping[str, Any]) -> _ModelFields:
    m = manifest.get("model")
    if not isinstance(m, Mapping):
        raise SlotImageError("manifest has no 'model' object")
    try:
        inp, out = m["input"], m["output"]
        in_bytes, out_bytes = _tensor_bytes(inp, "input"), _tensor_bytes(out, "output")
        return _ModelFields(
            sha256=bytes.fromhex(str(m["sha256"])), crc32=int(m["crc32"]),
            size=int(m["bytes"]), in_bytes=in_bytes, out_bytes=out_bytes,
            in_scale=float(inp["scale"]), in_zero=int(inp["zero_point"]),
            out_scale=float(out["scale"]), out_zero=int(out["zero_point"]),
            # Regression target units; absent in older manifests: identity.
            target_mean=float(out.get("target_mean", 0.0)),
            target_scale=float(out.get("target_scale", 1.0)),
            ops=op_ids(list(m["ops"])), arena=int(m["arena_bytes"]),
            version=_str_field(str(manifest["version"]), VERSION_LEN, "model version"),
            profile=_str_field(str(manifest["profile"]), PROFILE_LEN, "profile"))
    except SlotImageError:
        raise
    except KeyError as e:
        raise SlotImageError(f"manifest lacks {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise SlotImageError(f"manifest model fields are malformed: {e}") from None


def build_slot_image(
    model: bytes,
    manifest: Mapping[str, Any],
    sequence: int,
    *,
    golden_inputs: Sequence[bytes] = (),
    golden_outputs: Sequence[bytes] = (),
    max_golden: int | None = None,
) -> bytes:
    """Header + `model`, with fields from a registry manifest. The model's SHA-256, CRC-32
    and length must match the manifest's (SlotImageError otherwise), so a slot never
    carries a model its manifest does not describe. Golden vectors are optional pairs of
    raw input / output tensors (input_bytes / output_bytes each); with `max_golden`, only
    the first `max_golden` pairs go into the header (`max_golden_for_begin` gives the
    count whose header fits a `SLOT_BEGIN` frame). `model.output.target_mean` /
    `target_scale` default to 0.0 / 1.0 and must be finite (the scale non-zero) as
    float32, as the firmware requires (status FIELD)."""
    f = _model_fields(manifest)
    if hashlib.sha256(model).digest() != f.sha256:
        raise SlotImageError("model bytes do not match manifest model.sha256")
    if zlib.crc32(model) != f.crc32 or len(model) != f.size:
        raise SlotImageError("model bytes do not match manifest model.crc32 / model.bytes")
    if not model:
        raise SlotImageError("empty model", SlotImageStatus.FIELD)
    if len(f.ops) > MAX_OPS:
        raise SlotImageError(f"{len(f.ops)} operators; a slot image holds at most {MAX_OPS}",
                             SlotImageStatus.FIELD)
    t_mean, t_scale = _f32(f.target_mean), _f32(f.target_scale)
    if not math.isfinite(t_mean) or not math.isfinite(t_scale) or t_scale == 0.0:
        raise SlotImageError(
            f"manifest model.output target_mean {f.target_mean!r} / target_scale "
            f"{f.target_scale!r}: both must be finite float32 values and the scale non-zero",
            SlotImageStatus.FIELD)
    if len(golden_inputs) != len(golden_outputs):
        raise SlotImageError("golden inputs and outputs must pair up")
    if any(len(g) != f.in_bytes for g in golden_inputs) or any(
            len(g) != f.out_bytes for g in golden_outputs):
        raise SlotImageError(f"golden vectors must be {f.in_bytes} input / {f.out_bytes} "
                             "output bytes each")
    if max_golden is not None and max_golden < 0:
        raise SlotImageError(f"max_golden {max_golden} is negative")
    n_golden = len(golden_inputs) if max_golden is None else min(max_golden,
                                                                 len(golden_inputs))
    if n_golden > 0xFFFF:
        raise SlotImageError(f"{n_golden} golden vectors; a slot image holds at most 65535")
    gin, gout = golden_inputs[:n_golden], golden_outputs[:n_golden]
    hlen = header_len_for(len(f.ops), n_golden, f.in_bytes, f.out_bytes)
    if hlen > 0xFFFF:
        raise SlotImageError(f"header of {hlen} bytes exceeds 65535 (fewer golden vectors)",
                             SlotImageStatus.HEADER_LEN)
    try:
        fixed = _FIXED.pack(MAGIC, FORMAT_VERSION, hlen, sequence, len(model), f.crc32,
                            f.sha256, f.version, f.profile, f.arena, f.in_bytes, f.out_bytes,
                            f.in_scale, f.in_zero, f.out_scale, f.out_zero, len(f.ops),
                            n_golden, t_mean, t_scale)
    except (struct.error, OverflowError) as e:  # outside its field's u32 / i32 / f32 range
        raise SlotImageError(f"a header field is out of range: {e}") from None
    var = struct.pack(f"<{len(f.ops)}H", *f.ops) + b"".join(gin) + b"".join(gout)
    var = var.ljust(hlen - FIXED_LEN, b"\0")
    hcrc = zlib.crc32(var, zlib.crc32(fixed))
    return fixed + struct.pack("<I", hcrc) + var + model


def _str(raw: bytes) -> str | None:
    s = raw.rstrip(b"\0")
    return None if b"\0" in s else s.decode("latin-1")


def parse_slot_image(data: bytes, *, header_only: bool = False) -> SlotHeader:
    """Parse and validate a slot image, with the firmware's checks in the firmware's order
    (`ts_slot_image_parse`, or `ts_slot_image_parse_header` when `header_only`). Does not
    check the body's CRC: see `verify_body`."""
    def bad(status: SlotImageStatus, msg: str) -> SlotImageError:
        return SlotImageError(msg, status)

    if len(data) < FIXED_LEN:
        raise bad(SlotImageStatus.TRUNCATED, f"{len(data)} bytes: shorter than the "
                  f"{FIXED_LEN}-byte fixed header")
    f = _FIXED.unpack_from(data)
    (magic, version, hlen, seq, model_len, model_crc, sha, ver_b, prof_b, arena, in_b, out_b,
     in_scale, in_zero, out_scale, out_zero, n_ops, n_golden, t_mean, t_scale) = f
    if magic != MAGIC:
        raise bad(SlotImageStatus.MAGIC, f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise bad(SlotImageStatus.VERSION, f"format version {version}, this host reads "
                  f"{FORMAT_VERSION}")
    if hlen % ALIGN or hlen < FIXED_LEN:
        raise bad(SlotImageStatus.HEADER_LEN, f"header length {hlen}: not a multiple of "
                  f"{ALIGN} of at least {FIXED_LEN}")
    if hlen > len(data):
        raise bad(SlotImageStatus.TRUNCATED, f"header length {hlen} > {len(data)} bytes")
    (hcrc,) = struct.unpack_from("<I", data, CRC_OFFSET)
    got = zlib.crc32(data[FIXED_LEN:hlen], zlib.crc32(data[:CRC_OFFSET]))
    if got != hcrc:
        raise bad(SlotImageStatus.HEADER_CRC, f"header CRC-32 {got:#010x}, header says "
                  f"{hcrc:#010x}")
    if header_len_for(n_ops, n_golden, in_b, out_b) != hlen:
        raise bad(SlotImageStatus.HEADER_LEN, f"header length {hlen} does not match "
                  f"{n_ops} operators and {n_golden} golden vectors")
    model_version, profile = _str(ver_b), _str(prof_b)
    if (model_len == 0 or n_ops > MAX_OPS or model_version is None or profile is None
            or not math.isfinite(t_mean) or not math.isfinite(t_scale) or t_scale == 0.0):
        raise bad(SlotImageStatus.FIELD, "header field out of range (model length, "
                  "operator count, a string or target units)")
    body = b""
    if not header_only:
        if model_len > len(data) - hlen:
            raise bad(SlotImageStatus.BODY_LEN, f"model of {model_len} bytes runs past the "
                      f"end of the {len(data)}-byte image")
        body = bytes(data[hlen:hlen + model_len])
    ops = struct.unpack_from(f"<{n_ops}H", data, FIXED_LEN)
    g = FIXED_LEN + 2 * n_ops
    gin = tuple(bytes(data[g + i * in_b:g + (i + 1) * in_b]) for i in range(n_golden))
    g += n_golden * in_b
    gout = tuple(bytes(data[g + i * out_b:g + (i + 1) * out_b]) for i in range(n_golden))
    return SlotHeader(
        format_version=version, header_len=hlen, sequence=seq, model_len=model_len,
        model_crc32=model_crc, sha256=sha, model_version=model_version, profile=profile,
        arena_bytes=arena, input_bytes=in_b, output_bytes=out_b, input_scale=in_scale,
        input_zero_point=in_zero, output_scale=out_scale, output_zero_point=out_zero,
        target_mean=t_mean, target_scale=t_scale, ops=tuple(ops), golden_inputs=gin,
        golden_outputs=gout, header_crc32=hcrc, body=body)


def verify_body(h: SlotHeader) -> None:
    """`ts_slot_image_verify_body`: the body's CRC-32 and (host only) SHA-256."""
    if zlib.crc32(h.body) != h.model_crc32:
        raise SlotImageError("model CRC-32 mismatch", SlotImageStatus.MODEL_CRC)
    if hashlib.sha256(h.body).digest() != h.sha256:
        raise SlotImageError("model SHA-256 mismatch", SlotImageStatus.MODEL_CRC)


def check_slot_header(h: SlotHeader, fw: FirmwareLimits) -> None:
    """`ts_slot_image_check`: refuse an image the firmware cannot run, in the firmware's
    order (profile, operators, arena, input, output, slot size), naming the limit."""
    S = SlotImageStatus
    if h.profile != fw.profile:
        raise SlotImageError(f"profile {h.profile!r} differs from the firmware's "
                             f"{fw.profile!r}", S.PROFILE)
    missing = [o for o in h.ops if o not in fw.ops]
    if missing:
        names = ", ".join(OP_NAMES.get(o, str(o)) for o in missing)
        raise SlotImageError(f"operators not registered in the firmware: {names}", S.OP)
    for status, need, limit, what in (
        (S.ARENA, h.arena_bytes, fw.arena_bytes, "arena"),
        (S.INPUT, h.input_bytes, fw.input_bytes, "input buffer"),
        (S.OUTPUT, h.output_bytes, fw.output_bytes, "output buffer"),
        (S.SLOT_SIZE, h.header_len + h.model_len, fw.slot_bytes, "slot"),
    ):
        if need > limit:
            raise SlotImageError(f"needs {need} bytes; the firmware's {what} is {limit} bytes",
                                 status)
