"""The host's slot image encoder (tinyship.device.slot_image) and the firmware's parser
(ts_slot_image.cpp, compiled here into a shared object and called through ctypes) agree:
every field of Python-built images as the C code reads it, and every corruption refused
with the same status code by both sides (firmware/SLOTS.md, "Slot image").

Skips with a reason when a host C++ compiler is missing.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tinyship.device.slot_image import (
    BEGIN_HEADER_MAX,
    CRC_OFFSET,
    FIXED_LEN,
    MAX_OPS,
    OP_IDS,
    FirmwareLimits,
    SlotHeader,
    SlotImageError,
    SlotImageStatus,
    build_slot_image,
    check_slot_header,
    header_len_for,
    max_golden_for,
    max_golden_for_begin,
    parse_slot_image,
    verify_body,
)

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "firmware" / "lib" / "tinyship_core" / "src"

S = SlotImageStatus


class CHeader(ctypes.Structure):
    """ts_slot_header_t (checked against the C sizeof below)."""

    _fields_ = [
        ("format_version", ctypes.c_uint16),
        ("header_len", ctypes.c_uint16),
        ("sequence", ctypes.c_uint32),
        ("model_len", ctypes.c_uint32),
        ("model_crc32", ctypes.c_uint32),
        ("sha256", ctypes.c_uint8 * 32),
        ("model_version", ctypes.c_char * 17),
        ("profile", ctypes.c_char * 33),
        ("arena_bytes", ctypes.c_uint32),
        ("input_bytes", ctypes.c_uint32),
        ("output_bytes", ctypes.c_uint32),
        ("input_scale", ctypes.c_float),
        ("input_zero_point", ctypes.c_int32),
        ("output_scale", ctypes.c_float),
        ("output_zero_point", ctypes.c_int32),
        ("target_mean", ctypes.c_float),
        ("target_scale", ctypes.c_float),
        ("n_ops", ctypes.c_uint16),
        ("n_golden", ctypes.c_uint16),
        ("header_crc32", ctypes.c_uint32),
        ("ops", ctypes.c_uint16 * MAX_OPS),
        ("golden", ctypes.c_void_p),
        ("body", ctypes.c_void_p),
    ]


class CLimits(ctypes.Structure):
    """ts_slot_limits_t."""

    _fields_ = [
        ("profile", ctypes.c_char_p),
        ("ops", ctypes.POINTER(ctypes.c_uint16)),
        ("n_ops", ctypes.c_size_t),
        ("arena_bytes", ctypes.c_uint32),
        ("input_bytes", ctypes.c_uint32),
        ("output_bytes", ctypes.c_uint32),
        ("slot_bytes", ctypes.c_uint32),
    ]


_SIZES = """
#include "ts_slot_image.h"
extern "C" size_t test_header_size(void) { return sizeof(ts_slot_header_t); }
extern "C" size_t test_limits_size(void) { return sizeof(ts_slot_limits_t); }
"""


@pytest.fixture(scope="module")
def clib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        pytest.skip("a host C++ compiler is not installed")
    d = tmp_path_factory.mktemp("slot_image")
    (d / "sizes.cpp").write_text(_SIZES)
    so = d / "libslot_image.so"
    # ts_crc32 lives in the core's framing file; the rest of the core (all of src/, so
    # whatever the core itself links, e.g. the slot store, comes along) is linked too.
    srcs = sorted(str(p) for p in CORE.glob("*.cpp"))
    proc = subprocess.run(
        [cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wconversion",
         "-fno-exceptions", "-fno-rtti", "-fPIC", "-shared", f"-I{CORE}", *srcs,
         str(d / "sizes.cpp"), "-o", str(so)],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    lib = ctypes.CDLL(str(so))
    lib.test_header_size.restype = ctypes.c_size_t
    lib.test_limits_size.restype = ctypes.c_size_t
    assert lib.test_header_size() == ctypes.sizeof(CHeader)
    assert lib.test_limits_size() == ctypes.sizeof(CLimits)
    for fn in ("ts_slot_image_parse", "ts_slot_image_parse_header"):
        getattr(lib, fn).argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(CHeader)]
        getattr(lib, fn).restype = ctypes.c_int
    lib.ts_slot_image_verify_body.argtypes = [ctypes.POINTER(CHeader)]
    lib.ts_slot_image_verify_body.restype = ctypes.c_int
    lib.ts_slot_image_check.argtypes = [ctypes.POINTER(CHeader), ctypes.POINTER(CLimits)]
    lib.ts_slot_image_check.restype = ctypes.c_int
    lib.ts_slot_image_status_str.argtypes = [ctypes.c_int]
    lib.ts_slot_image_status_str.restype = ctypes.c_char_p
    return lib


def c_parse(lib: ctypes.CDLL, data: bytes, *, header_only: bool = False
            ) -> tuple[int, CHeader, ctypes.Array[ctypes.c_char]]:
    """Status, header and the buffer the header points into (kept alive by the caller)."""
    buf = ctypes.create_string_buffer(data, len(data))
    h = CHeader()
    fn = lib.ts_slot_image_parse_header if header_only else lib.ts_slot_image_parse
    return fn(buf, len(data), ctypes.byref(h)), h, buf


def py_status(data: bytes, *, header_only: bool = False) -> int:
    try:
        parse_slot_image(data, header_only=header_only)
    except SlotImageError as e:
        assert e.status is not None
        return int(e.status)
    return int(S.OK)


def manifest_for(model: bytes, **over: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "version": "v0042",
        "profile": "tflm-arduino-2023",
        "model": {
            "sha256": hashlib.sha256(model).hexdigest(),
            "crc32": zlib.crc32(model),
            "bytes": len(model),
            "arena_bytes": 2432,
            "ops": ["FULLY_CONNECTED", "RESHAPE", "SOFTMAX"],
            "input": {"shape": [1, 8], "dtype": "int8", "scale": 0.0307913, "zero_point": -50},
            "output": {"shape": [1, 3], "dtype": "int8", "scale": 0.00390625,
                       "zero_point": -128},
        },
    }
    m.update(over)
    return m


def regression_manifest(model: bytes, mean: float = 1234.5678901234,
                        scale: float = -0.0123456789012) -> dict[str, Any]:
    """A regression model's manifest: one output in standardized units, and the target
    units (values not exact in float32, so the header's rounding shows)."""
    m = manifest_for(model)
    m["model"]["ops"] = ["FULLY_CONNECTED", "RELU"]
    m["model"]["output"] = {"shape": [1, 1], "dtype": "int8", "scale": 0.0243, "zero_point": 3,
                            "target_mean": mean, "target_scale": scale}
    return m


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


MODEL = bytes((i * 31 + 5) & 0xFF for i in range(300))
GOLD_IN = [bytes(range(i, i + 8)) for i in range(3)]
GOLD_OUT = [bytes([i, 0x80, 0x7F]) for i in range(3)]


def good_image() -> bytes:
    return build_slot_image(MODEL, manifest_for(MODEL), 7, golden_inputs=GOLD_IN,
                            golden_outputs=GOLD_OUT)


def assert_same(c: CHeader, p: SlotHeader, buf: ctypes.Array[ctypes.c_char]) -> None:
    base = ctypes.addressof(buf)
    assert c.format_version == p.format_version
    assert c.header_len == p.header_len
    assert c.sequence == p.sequence
    assert c.model_len == p.model_len
    assert c.model_crc32 == p.model_crc32
    assert bytes(c.sha256) == p.sha256
    assert c.model_version.decode() == p.model_version
    assert c.profile.decode() == p.profile
    assert c.arena_bytes == p.arena_bytes
    assert c.input_bytes == p.input_bytes
    assert c.output_bytes == p.output_bytes
    assert c.input_scale == p.input_scale  # both are the same f32
    assert c.input_zero_point == p.input_zero_point
    assert c.output_scale == p.output_scale
    assert c.output_zero_point == p.output_zero_point
    assert c.target_mean == p.target_mean and c.target_scale == p.target_scale
    assert c.n_ops == len(p.ops) and tuple(c.ops[: c.n_ops]) == p.ops
    assert c.n_golden == len(p.golden_inputs) == len(p.golden_outputs)
    assert c.header_crc32 == p.header_crc32
    assert c.golden == base + FIXED_LEN + 2 * c.n_ops
    n_in = c.n_golden * c.input_bytes
    golden = ctypes.string_at(c.golden, n_in + c.n_golden * c.output_bytes)
    assert golden[:n_in] == b"".join(p.golden_inputs)
    assert golden[n_in:] == b"".join(p.golden_outputs)
    assert c.body == base + c.header_len and (c.body - base) % 16 == 0
    assert ctypes.string_at(c.body, c.model_len) == p.body


def _cases() -> list[tuple[bytes, dict[str, Any], int, int]]:
    """(model, manifest, sequence, golden count) covering the fields' ranges."""
    big = bytes(random.Random(3).randrange(256) for _ in range(5000))
    many_ops = manifest_for(big)
    many_ops["model"]["ops"] = sorted(OP_IDS)
    many_ops["model"]["input"] = {"shape": [1, 96, 96, 3], "dtype": "int8", "scale": 1.0,
                                  "zero_point": 0}
    wide = manifest_for(MODEL, version="v000000000000001",
                        profile="p0123456789012345678901234567890")
    wide["model"]["output"] = {"shape": [2, 5], "dtype": "float32", "scale": 0.0,
                               "zero_point": 0, "target_mean": -3.4028234663852886e38,
                               "target_scale": 1e-45}  # float32 extremes: finite, non-zero
    return [
        (MODEL, manifest_for(MODEL), 7, 3),
        (MODEL[:1], manifest_for(MODEL[:1]), 0, 0),
        (big, many_ops, 0xFFFFFFFF, 1),
        (MODEL, wide, 12345, 2),
        (MODEL, regression_manifest(MODEL), 9, 2),
    ]


@pytest.mark.parametrize("case", range(5))
def test_python_built_images_parse_identically_in_c(clib: ctypes.CDLL, case: int) -> None:
    model, manifest, seq, n_golden = _cases()[case]
    m = manifest["model"]
    in_b = _elems(m["input"]["shape"]) * (4 if m["input"]["dtype"] == "float32" else 1)
    out_b = _elems(m["output"]["shape"]) * (4 if m["output"]["dtype"] == "float32" else 1)
    rng = random.Random(case)
    gin = [bytes(rng.randrange(256) for _ in range(in_b)) for _ in range(n_golden)]
    gout = [bytes(rng.randrange(256) for _ in range(out_b)) for _ in range(n_golden)]
    img = build_slot_image(model, manifest, seq, golden_inputs=gin, golden_outputs=gout)
    status, c, buf = c_parse(clib, img)
    assert status == S.OK, clib.ts_slot_image_status_str(status)
    p = parse_slot_image(img)
    assert_same(c, p, buf)
    assert p.body == model and p.sequence == seq and p.header_len % 16 == 0
    assert p.model_version == manifest["version"] and p.profile == manifest["profile"]
    assert [OP_IDS[o] for o in m["ops"]] == list(p.ops)
    assert p.golden_inputs == tuple(gin) and p.golden_outputs == tuple(gout)
    assert clib.ts_slot_image_verify_body(ctypes.byref(c)) == S.OK
    verify_body(p)
    # The header alone (the installer's "begin"): the same fields, no body.
    status, ch, _hbuf = c_parse(clib, img[: p.header_len], header_only=True)
    assert status == S.OK and ch.body is None and ch.model_len == len(model)
    assert parse_slot_image(img[: p.header_len], header_only=True).body == b""


def _elems(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def test_registry_manifest_image(clib: ctypes.CDLL, trained_registry: tuple[Any, str]) -> None:
    """An image built from a real registry version (the session's trained one)."""
    cfg, version = trained_registry
    vdir = cfg.registry_path / version
    manifest = json.loads((vdir / "manifest.json").read_text())
    model = (vdir / "model_int8.tflite").read_bytes()
    img = build_slot_image(model, manifest, 1)
    status, c, buf = c_parse(clib, img)
    assert status == S.OK
    p = parse_slot_image(img)
    assert_same(c, p, buf)
    assert p.sha256.hex() == manifest["model"]["sha256"]
    assert p.arena_bytes == manifest["model"]["arena_bytes"]
    assert p.input_zero_point == manifest["model"]["input"]["zero_point"]
    assert p.input_scale == f32(manifest["model"]["input"]["scale"])
    # The session's model is a regression: its target units are in the header.
    out = manifest["model"]["output"]
    assert p.target_mean == f32(out.get("target_mean", 0.0))
    assert p.target_scale == f32(out.get("target_scale", 1.0))


def test_regression_target_units_round_trip_exactly(clib: ctypes.CDLL) -> None:
    """A regression manifest's target_mean / target_scale come back as exactly their
    float32 values, the same on the C and the Python side; older manifests without them
    (and classifiers) get the identity 0.0 / 1.0."""
    for mean, scale in [(1234.5678901234, -0.0123456789012), (-0.1, 3.0e38),
                        (1e-40, 7.0), (0.0, 1.0)]:
        img = build_slot_image(MODEL, regression_manifest(MODEL, mean, scale), 3)
        status, c, buf = c_parse(clib, img)
        assert status == S.OK
        p = parse_slot_image(img)
        assert_same(c, p, buf)
        assert p.target_mean == f32(mean) and p.target_scale == f32(scale)
        assert struct.unpack_from("<ff", img, 132) == (p.target_mean, p.target_scale)
        assert c.target_mean == f32(mean) and c.target_scale == f32(scale)
        # The header alone (SLOT_BEGIN) carries them too.
        status, ch, _hbuf = c_parse(clib, img[: p.header_len], header_only=True)
        assert status == S.OK and (ch.target_mean, ch.target_scale) == (c.target_mean,
                                                                       c.target_scale)
    old = manifest_for(MODEL)
    assert "target_mean" not in old["model"]["output"]
    img = build_slot_image(MODEL, old, 1)
    status, c, _buf = c_parse(clib, img)
    p = parse_slot_image(img)
    assert status == S.OK and (c.target_mean, c.target_scale) == (0.0, 1.0)
    assert (p.target_mean, p.target_scale) == (0.0, 1.0)


@pytest.mark.parametrize(("field", "value"), [
    ("target_scale", 0.0), ("target_scale", -0.0), ("target_scale", math.nan),
    ("target_scale", math.inf), ("target_scale", 1e-50), ("target_scale", 1e39),
    ("target_mean", math.nan), ("target_mean", -math.inf), ("target_mean", -1e39),
])
def test_bad_target_units_refused_by_both_sides(clib: ctypes.CDLL, field: str,
                                                value: float) -> None:
    """The core's rule (ts_core_init): finite mean, finite non-zero scale, as float32 (1e-50
    rounds to 0, 1e39 overflows). The encoder refuses such a manifest, and a header that
    carries such a value anyway is refused by the C and the Python parser alike."""
    manifest = regression_manifest(MODEL)
    manifest["model"]["output"][field] = value
    with pytest.raises(SlotImageError, match="target_mean") as e:
        build_slot_image(MODEL, manifest, 1)
    assert e.value.status == S.FIELD
    good = build_slot_image(MODEL, regression_manifest(MODEL), 1)
    try:  # the float32 the value would be: 1e-50 -> 0, 1e39 -> inf
        raw = struct.pack("<f", value)
    except OverflowError:
        raw = struct.pack("<f", math.copysign(math.inf, value))
    bad = _fix_crc(_patch(132 if field == "target_mean" else 136, raw)(good))
    hlen = parse_slot_image(good).header_len
    for header_only, data in ((False, bad), (True, bad[:hlen])):
        status, h, _buf = c_parse(clib, data, header_only=header_only)
        assert status == S.FIELD
        assert bytes(h) == bytes(ctypes.sizeof(CHeader))
        assert py_status(data, header_only=header_only) == S.FIELD


def test_max_golden_keeps_the_first_vectors() -> None:
    gin = [bytes([i] * 8) for i in range(5)]
    gout = [bytes([i] * 3) for i in range(5)]
    for n, want in ((None, 5), (0, 0), (2, 2), (5, 5), (99, 5)):
        img = build_slot_image(MODEL, manifest_for(MODEL), 1, golden_inputs=gin,
                               golden_outputs=gout, max_golden=n)
        p = parse_slot_image(img)
        assert p.golden_inputs == tuple(gin[:want]) and p.golden_outputs == tuple(gout[:want])
        assert p.header_len == header_len_for(3, want, 8, 3)
    with pytest.raises(SlotImageError, match="negative"):
        build_slot_image(MODEL, manifest_for(MODEL), 1, golden_inputs=gin,
                         golden_outputs=gout, max_golden=-1)
    with pytest.raises(SlotImageError, match="pair up"):  # pairing is checked before the cut
        build_slot_image(MODEL, manifest_for(MODEL), 1, golden_inputs=gin,
                         golden_outputs=gout[:4], max_golden=1)


@pytest.mark.parametrize(("n_ops", "in_b", "out_b", "limit"), [
    (3, 8, 3, 1024), (0, 1, 1, 1024), (64, 4, 4, 1024), (1, 27648, 12, 1024),
    (2, 490, 0, 1024), (3, 8, 3, 1000), (3, 8, 3, 144 + 16), (0, 0, 0, 1024),
])
def test_max_golden_for_fits_the_limit(n_ops: int, in_b: int, out_b: int, limit: int) -> None:
    n = max_golden_for(n_ops, in_b, out_b, limit=limit)
    assert 0 <= n <= 0xFFFF
    assert header_len_for(n_ops, n, in_b, out_b) <= limit
    if n < 0xFFFF:  # one more would not fit
        assert header_len_for(n_ops, n + 1, in_b, out_b) > limit


def test_max_golden_for_begin_from_a_manifest(clib: ctypes.CDLL) -> None:
    assert BEGIN_HEADER_MAX == 1024  # SLOT_BEGIN's payload (firmware/PROTOCOL.md)
    assert max_golden_for(3, 8, 3) == 79  # 144 + 6 + 79 x 11 = 1019 -> 1024
    with pytest.raises(SlotImageError) as e:  # 144 + 128 = 272 > 256: not even no golden
        max_golden_for(64, 1, 1, limit=256)
    assert e.value.status == S.HEADER_LEN
    manifest = manifest_for(MODEL)
    n = max_golden_for_begin(manifest)
    assert n == 79 and max_golden_for_begin(manifest, limit=512) == 32
    gin = [bytes([i & 0xFF] * 8) for i in range(200)]
    gout = [bytes([i & 0xFF] * 3) for i in range(200)]
    img = build_slot_image(MODEL, manifest, 2, golden_inputs=gin, golden_outputs=gout,
                           max_golden=n)
    p = parse_slot_image(img)
    assert p.header_len == BEGIN_HEADER_MAX and len(p.golden_inputs) == n
    status, c, _buf = c_parse(clib, img[:BEGIN_HEADER_MAX], header_only=True)
    assert status == S.OK and c.n_golden == n
    too_many = build_slot_image(MODEL, manifest, 2, golden_inputs=gin, golden_outputs=gout,
                                max_golden=n + 1)
    assert parse_slot_image(too_many).header_len > BEGIN_HEADER_MAX
    with pytest.raises(SlotImageError, match="lacks 'ops'"):
        del manifest["model"]["ops"]
        max_golden_for_begin(manifest)


def _set16(off: int, v: int, crc: bool = False) -> Callable[[bytes], bytes]:
    return _patch(off, struct.pack("<H", v), crc)


def _set32(off: int, v: int, crc: bool = False) -> Callable[[bytes], bytes]:
    return _patch(off, struct.pack("<I", v), crc)


def _patch(off: int, raw: bytes, crc: bool = False) -> Callable[[bytes], bytes]:
    def f(b: bytes) -> bytes:
        out = b[:off] + raw + b[off + len(raw):]
        return _fix_crc(out) if crc else out
    return f


def _fix_crc(b: bytes) -> bytes:
    (hlen,) = struct.unpack_from("<H", b, 6)
    if hlen < FIXED_LEN or hlen > len(b):
        return b
    c = zlib.crc32(b[FIXED_LEN:hlen], zlib.crc32(b[:CRC_OFFSET]))
    return b[:CRC_OFFSET] + struct.pack("<I", c) + b[CRC_OFFSET + 4:]


def _setf(off: int, v: float, crc: bool = True) -> Callable[[bytes], bytes]:
    return _patch(off, struct.pack("<f", v), crc)


# good_image(): 144 fixed + 3 ops x 2 + 3 golden x (8 + 3) = 183 -> header length 192.
CORRUPTIONS: dict[str, tuple[Callable[[bytes], bytes], SlotImageStatus]] = {
    "empty": (lambda b: b"", S.TRUNCATED),
    "fixed part cut": (lambda b: b[:FIXED_LEN - 1], S.TRUNCATED),
    "variable part cut": (lambda b: b[:170], S.TRUNCATED),
    "magic": (_patch(0, b"TSMX"), S.MAGIC),
    "magic zeroed": (_patch(0, bytes(4)), S.MAGIC),
    "erased flash": (lambda b: b"\xff" * len(b), S.MAGIC),
    "format version 2": (_set16(4, 2), S.VERSION),
    "format version 0": (_set16(4, 0), S.VERSION),
    "header length odd": (_set16(6, 177), S.HEADER_LEN),
    "header length below fixed": (_set16(6, 128), S.HEADER_LEN),
    "header length past buffer": (_set16(6, 0xFFF0), S.TRUNCATED),
    "header length vs counts": (_set16(6, 208, crc=True), S.HEADER_LEN),
    "op count vs header length": (_set16(128, 12, crc=True), S.HEADER_LEN),
    "golden count vs header length": (_set16(130, 0xFFFF, crc=True), S.HEADER_LEN),
    "io bytes overflow": (_patch(104, b"\xff" * 8, crc=True), S.HEADER_LEN),
    "header crc field": (_set32(CRC_OFFSET, 0), S.HEADER_CRC),
    "sequence": (_set32(8, 8), S.HEADER_CRC),
    "model crc field": (_set32(16, 1), S.HEADER_CRC),
    "sha256": (_patch(20, b"\0"), S.HEADER_CRC),
    "profile byte": (_patch(68, b"x"), S.HEADER_CRC),
    "arena": (_set32(100, 1), S.HEADER_CRC),
    "target mean": (_setf(132, 2.0, crc=False), S.HEADER_CRC),
    "target scale": (_setf(136, 2.0, crc=False), S.HEADER_CRC),
    "op id": (_set16(FIXED_LEN, 3), S.HEADER_CRC),
    "golden byte": (_patch(FIXED_LEN + 6, b"\x99"), S.HEADER_CRC),
    "padding byte": (_patch(190, b"\x01"), S.HEADER_CRC),
    "model length zero": (_set32(12, 0, crc=True), S.FIELD),
    "version not NUL-padded": (_patch(52 + 10, b"x", crc=True), S.FIELD),
    "profile not NUL-padded": (_patch(68 + 31, b"x", crc=True), S.FIELD),
    "target scale zero": (_setf(136, 0.0), S.FIELD),
    "target scale -0": (_setf(136, -0.0), S.FIELD),
    "target scale NaN": (_setf(136, math.nan), S.FIELD),
    "target scale inf": (_setf(136, math.inf), S.FIELD),
    "target scale -inf": (_setf(136, -math.inf), S.FIELD),
    "target scale signalling NaN": (_set32(136, 0x7F800001, crc=True), S.FIELD),
    "target mean NaN": (_setf(132, math.nan), S.FIELD),
    "target mean inf": (_setf(132, math.inf), S.FIELD),
    "target mean -inf": (_setf(132, -math.inf), S.FIELD),
    "model cut": (lambda b: b[:-1], S.BODY_LEN),
    "model length past buffer": (_set32(12, 301, crc=True), S.BODY_LEN),
    "model length huge": (_set32(12, 0xFFFFFFFF, crc=True), S.BODY_LEN),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_refused_with_the_same_status(clib: ctypes.CDLL, name: str) -> None:
    good = good_image()
    assert len(good) == 192 + len(MODEL)
    mutate, expected = CORRUPTIONS[name]
    bad = mutate(good)
    status, h, _ = c_parse(clib, bad)
    assert status == expected, clib.ts_slot_image_status_str(status)
    assert bytes(h) == bytes(ctypes.sizeof(CHeader))  # zeroed on error
    with pytest.raises(SlotImageError) as e:
        parse_slot_image(bad)
    assert e.value.status == expected


def test_too_many_ops_refused_by_both(clib: ctypes.CDLL) -> None:
    # The encoder refuses it, so build it by hand: 65 ops, consistent length and CRC.
    good = good_image()
    hlen = -(-(FIXED_LEN + 2 * (MAX_OPS + 1) + 3 * 11) // 16) * 16
    var = struct.pack(f"<{MAX_OPS + 1}H", *([9] * (MAX_OPS + 1))) + good[
        FIXED_LEN + 6:FIXED_LEN + 6 + 3 * 11]
    img = bytearray(good[:FIXED_LEN] + var.ljust(hlen - FIXED_LEN, b"\0") + MODEL)
    struct.pack_into("<H", img, 6, hlen)
    struct.pack_into("<H", img, 128, MAX_OPS + 1)
    data = _fix_crc(bytes(img))
    assert c_parse(clib, data)[0] == S.FIELD
    assert py_status(data) == S.FIELD
    with pytest.raises(SlotImageError) as e:
        many = manifest_for(MODEL)
        many["model"]["ops"] = ["ADD"] * (MAX_OPS + 1)
        build_slot_image(MODEL, many, 1)
    assert e.value.status == S.FIELD


def test_body_crc_refused_by_both(clib: ctypes.CDLL) -> None:
    good = bytearray(good_image())
    good[200] ^= 1
    status, c, _buf = c_parse(clib, bytes(good))
    assert status == S.OK  # the header is intact; the body check is separate
    assert clib.ts_slot_image_verify_body(ctypes.byref(c)) == S.MODEL_CRC
    with pytest.raises(SlotImageError) as e:
        verify_body(parse_slot_image(bytes(good)))
    assert e.value.status == S.MODEL_CRC


FW = FirmwareLimits(profile="tflm-arduino-2023", ops=frozenset({3, 4, 9, 14, 22, 25, 114}),
                    arena_bytes=2432, input_bytes=8, output_bytes=3, slot_bytes=192 + 300)
REFUSALS: dict[str, tuple[dict[str, Any], SlotImageStatus]] = {
    "fits exactly": ({}, S.OK),
    "profile": ({"profile": "tflm-current"}, S.PROFILE),
    "profile prefix": ({"profile": "tflm-arduino-202"}, S.PROFILE),
    "op": ({"ops": frozenset({9, 22})}, S.OP),
    "no ops": ({"ops": frozenset()}, S.OP),
    "arena": ({"arena_bytes": 2431}, S.ARENA),
    "input": ({"input_bytes": 7}, S.INPUT),
    "output": ({"output_bytes": 2}, S.OUTPUT),
    "slot": ({"slot_bytes": 491}, S.SLOT_SIZE),
    "first refusal wins": ({"arena_bytes": 0, "input_bytes": 0, "slot_bytes": 0}, S.ARENA),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_compatibility_refusals_agree(clib: ctypes.CDLL, name: str) -> None:
    over, expected = REFUSALS[name]
    fw = FirmwareLimits(**{**FW.__dict__, **over})
    img = good_image()
    status, c, _buf = c_parse(clib, img)
    assert status == S.OK
    ops = sorted(fw.ops)
    arr = (ctypes.c_uint16 * max(1, len(ops)))(*ops)
    lim = CLimits(fw.profile.encode(), arr, len(ops), fw.arena_bytes, fw.input_bytes,
                  fw.output_bytes, fw.slot_bytes)
    assert clib.ts_slot_image_check(ctypes.byref(c), ctypes.byref(lim)) == expected
    if expected == S.OK:
        check_slot_header(parse_slot_image(img), fw)
    else:
        with pytest.raises(SlotImageError) as e:
            check_slot_header(parse_slot_image(img), fw)
        assert e.value.status == expected


def test_status_codes_and_messages_agree(clib: ctypes.CDLL) -> None:
    msgs = [clib.ts_slot_image_status_str(int(s)).decode() for s in S]
    assert len(set(msgs)) == len(msgs) and "unknown status" not in msgs
    assert clib.ts_slot_image_status_str(len(S)).decode() == "unknown status"
    assert "arena" in msgs[S.ARENA] and "op resolver" in msgs[S.OP]
    doc = (ROOT / "firmware" / "SLOTS.md").read_text()
    for s in S:  # every status is in SLOTS.md's table with its number
        assert f"| {int(s)} | `TS_IMG_{'OK' if s == S.OK else 'ERR_' + s.name}` |" in doc


def test_random_mutations_same_status_both_sides(clib: ctypes.CDLL) -> None:
    rng = random.Random(11)
    good = good_image()
    seen: set[int] = set()
    for i in range(3000):
        b = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        data = bytes(b)
        if i % 2:
            data = _fix_crc(data)
        if i % 5 == 0:
            data = data[: rng.randrange(len(data) + 1)]
        header_only = i % 7 == 0
        c_status = c_parse(clib, data, header_only=header_only)[0]
        assert c_status == py_status(data, header_only=header_only), (i, data.hex())
        seen.add(c_status)
    assert {S.OK, S.MAGIC, S.HEADER_CRC, S.HEADER_LEN, S.TRUNCATED} <= seen


def test_slots_md_documents_the_layout_and_op_ids() -> None:
    doc = (ROOT / "firmware" / "SLOTS.md").read_text()
    section = doc[doc.index("## Slot image"):doc.index("## Trailer")]
    # Fixed-part rows: offset, size; consecutive, ending at the variable part.
    rows = [(int(o), int(n)) for o, n in re.findall(r"^\| (\d+) \| (\d+) \| ", section, re.M)]
    fixed = [r for r in rows if r[0] < FIXED_LEN]
    assert fixed[0] == (0, 4) and fixed[-1] == (CRC_OFFSET, 4)
    assert all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(fixed))
    op_table = section[section.index("### Operator ids"):section.index("### Status codes")]
    documented = {name: int(i) for i, name in re.findall(r"\| (\d+) \| ([A-Z][A-Z0-9_]+) ",
                                                         op_table)}
    assert documented == OP_IDS


@pytest.mark.parametrize("change", [
    {"sha256": "00" * 32}, {"crc32": 1}, {"bytes": 299}, {"ops": ["FULLY_CONNECTED", "GELU"]},
    {"arena_bytes": -1}, {"arena_bytes": 1 << 32}, {"input": {"shape": [1], "dtype": "bf16"}},
    {"output": {"shape": [1], "dtype": "int8", "scale": 1.0, "zero_point": 1 << 31}},
    {"sha256": "not hex"}, {"input": None},
])
def test_encoder_refuses_a_manifest_that_does_not_fit(change: dict[str, Any]) -> None:
    manifest = manifest_for(MODEL)
    manifest["model"].update(change)
    with pytest.raises(SlotImageError):
        build_slot_image(MODEL, manifest, 1)


@pytest.mark.parametrize("over", [{"version": "v" * 17}, {"profile": "p" * 33},
                                  {"profile": ""}, {"version": "vé"}])
def test_encoder_refuses_strings_that_do_not_fit(over: dict[str, Any]) -> None:
    with pytest.raises(SlotImageError, match="ASCII characters"):
        build_slot_image(MODEL, manifest_for(MODEL, **over), 1)
    with pytest.raises(SlotImageError, match="out of range"):
        build_slot_image(MODEL, manifest_for(MODEL), 1 << 32)
    with pytest.raises(SlotImageError, match="lacks 'profile'"):
        m = manifest_for(MODEL)
        del m["profile"]
        build_slot_image(MODEL, m, 1)
