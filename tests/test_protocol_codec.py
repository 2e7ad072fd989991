"""The host codec (`tinyship.device.protocol`) and the firmware core agree byte for byte.

* the hex examples of firmware/PROTOCOL.md decode and encode identically;
* host-encoded frames fed to the real C core (ctypes, `ts_core_feed`) get the right replies;
* core-encoded frames (`ts_frame_encode`) decode on the host and vice versa;
* random round trips (property style, seeded);
* constants, commands, error codes and TLV tags parsed from the C header equal the Python ones.

The core library is found the way the virtual board finds it (`$TINYSHIP_CORE_LIB`, else a
build of the current sources cached under their hash), so the test never runs a stale build.
"""

from __future__ import annotations

import ctypes as C
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tinyship.device import protocol as P
from tinyship.device.virtual._core import (
    Config,
    InferFn,
    Link,
    MicrosFn,
    Platform,
    StorageReadFn,
    StorageWriteFn,
    WriteFn,
)
from tinyship.errors import ProtocolError

REPO = Path(__file__).resolve().parents[1]
CORE_DIR = REPO / "firmware" / "lib" / "tinyship_core" / "src"
HEADER = CORE_DIR / "tinyship_core.h"
PROTOCOL_MD = REPO / "firmware" / "PROTOCOL.md"


def hx(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


# --- the C core through ctypes ------------------------------------------------------------


@pytest.fixture(scope="session")
def core_lib() -> C.CDLL:
    # The same lookup the virtual board uses: $TINYSHIP_CORE_LIB, else a build cached under
    # the hash of the core's sources, so a stale firmware/build/ never stands in for them.
    from tinyship.device.virtual._core import find_core_lib

    path = find_core_lib()
    lib = C.CDLL(str(path))
    lib.ts_crc32.restype = C.c_uint32
    lib.ts_crc32.argtypes = [C.c_uint32, C.c_char_p, C.c_size_t]
    sz = C.POINTER(C.c_size_t)
    lib.ts_cobs_encode.argtypes = [C.c_char_p, C.c_size_t, C.c_char_p, C.c_size_t, sz]
    lib.ts_cobs_decode.argtypes = [C.c_char_p, C.c_size_t, C.c_char_p, C.c_size_t, sz]
    lib.ts_frame_encode.argtypes = [C.c_uint8, C.c_uint16, C.c_char_p, C.c_size_t,
                                    C.c_char_p, C.c_size_t, sz]
    lib.ts_frame_decode.argtypes = [C.c_char_p, C.c_size_t, C.POINTER(C.c_uint8),
                                    C.POINTER(C.c_uint16), C.c_char_p, C.c_size_t, sz]
    lib.ts_status_str.restype = C.c_char_p
    lib.ts_status_name.restype = C.c_char_p
    lib.ts_command_name.restype = C.c_char_p
    lib.ts_core_size.restype = C.c_size_t
    lib.ts_core_feed.argtypes = [C.c_void_p, C.c_char_p, C.c_size_t]
    return lib


# One ctypes mirror of the core's structs, shared with the virtual board.
WRITE, MICROS, INFER = WriteFn, MicrosFn, InferFn


IN_SIZE, OUT_SIZE = 4, 2
SHA = "ab" * 32


def toy_model(x: np.ndarray) -> np.ndarray:
    """The fake inference both the core callback and the tests use."""
    x = np.asarray(x, dtype=np.int32).reshape(-1, IN_SIZE)
    a = np.clip(x.sum(axis=1) // 2, -128, 127)
    b = np.clip(x[:, 0] - x[:, 3], -128, 127)
    return np.stack([a, b], axis=1).astype(np.int8)


class Core:
    """One `ts_core_t` driven in-process: feed bytes in, collect the bytes it writes."""

    LATENCY_US = 412

    def __init__(self, lib: C.CDLL, *, crc_check: int = 1, target_mean: float = 0.0,
                 target_scale: float = 1.0) -> None:
        self.lib = lib
        self.out = bytearray()
        self.clock = 0
        self.fail_infer = False
        self._write = WRITE(self._on_write)
        self._micros = MICROS(self._on_micros)
        self._infer = INFER(self._on_infer)
        self._platform = Platform(None, self._write, self._micros, self._infer,
                                  StorageReadFn(), StorageWriteFn())
        self._in_shape = (C.c_int32 * 2)(1, IN_SIZE)
        self._out_shape = (C.c_int32 * 2)(1, OUT_SIZE)
        gin = np.array([[1, 2, 3, 4], [-5, 6, 7, -8]], dtype=np.int8)
        gout = toy_model(gin)
        self._gin = (C.c_int8 * gin.size)(*gin.reshape(-1).tolist())
        self._gout = (C.c_int8 * gout.size)(*gout.reshape(-1).tolist())
        self._cfg = Config(
            b"0.1.0", b"v0003", SHA.encode(), b"tflm-current", b"nano33ble", b"abc1234", None,
            IN_SIZE, OUT_SIZE, self._in_shape, self._out_shape, 2, 2, 0.5, 0.25, -1, 3,
            target_mean, target_scale, 8192, 2048, 0xDEADBEEF, crc_check, 7, 1, self._gin,
            self._gout, 2, 0)
        self._mem = C.create_string_buffer(lib.ts_core_size() + 8)
        self._core = C.c_void_p()
        st = lib.ts_core_init(self._mem, lib.ts_core_size(), C.byref(self._cfg),
                              C.byref(self._platform), C.byref(self._core))
        assert st == 0, lib.ts_status_name(st)

    def _on_write(self, _u: object, data: C.Array[C.c_uint8], n: int) -> int:
        self.out += C.string_at(data, n)
        return 0

    def _on_micros(self, _u: object) -> int:
        self.clock = (self.clock + self.LATENCY_US) & 0xFFFFFFFF
        return self.clock

    def _on_infer(self, _u: object, inp: C.Array[C.c_int8], n_in: int,
                  out: C.Array[C.c_int8], n_out: int) -> int:
        if self.fail_infer:
            return 6
        x = np.frombuffer(C.string_at(inp, n_in), dtype=np.int8)
        y = toy_model(x).reshape(-1)
        for i in range(n_out):
            out[i] = int(y[i])
        return 0

    def feed(self, data: bytes) -> bytes:
        """Feed bytes, return (and clear) what the core wrote in response."""
        self.out.clear()
        assert self.lib.ts_core_feed(self._core, data, len(data)) == 0
        return bytes(self.out)

    def request(self, cmd: int, seq: int, payload: bytes = b"") -> P.Frame:
        reader = P.FrameReader()
        frames = reader.feed(self.feed(P.encode_frame(cmd, seq, payload)))
        assert len(frames) == 1, frames
        return frames[0]


@pytest.fixture
def core(core_lib: C.CDLL) -> Iterator[Core]:
    c = Core(core_lib)
    yield c


# --- PROTOCOL.md examples -----------------------------------------------------------------

EXAMPLES = [
    # (cmd, seq, payload, wire) from firmware/PROTOCOL.md section 5
    (0x01, 1, b"hi", "00 03 01 01 02 02 07 68 69 B7 F7 04 C3 00"),
    (0x81, 1, b"hi", "00 03 81 01 02 02 07 68 69 45 1D 12 4B 00"),
    (0x02, 2, b"", "00 03 02 02 01 01 05 F6 6C EB 16 00"),
    (0x03, 3, hx("01 00 80 00 7F 10"), "00 03 03 03 02 06 02 01 02 80 07 7F 10 AA 75 28 4C 00"),
    (0x83, 3, hx("01 00 9C 01 00 00 85 7B"),
     "00 03 83 03 02 08 02 01 03 9C 01 01 07 85 7B F3 A6 D0 6C 00"),
    (0x04, 4, b"", "00 03 04 04 01 01 05 8A C6 C0 BC 00"),
    (0x05, 5, b"", "00 03 05 05 01 01 05 5F 88 1C 39 00"),
    (0x85, 5, b"", "00 03 85 05 01 01 05 CD 38 FA 88 00"),
    (0xFF, 6, b"\x04\x42unknown command",
     "00 03 FF 06 02 11 16 04 42 75 6E 6B 6E 6F 77 6E 20 63 6F 6D 6D 61 6E 64 58 CC 3F CB 00"),
    (0xFF, 0xFFFF, b"\x01\x00bad crc",
     "00 05 FF FF FF 09 02 01 0C 62 61 64 20 63 72 63 FC E7 D0 19 00"),
]


def test_examples_are_the_ones_in_protocol_md() -> None:
    text = PROTOCOL_MD.read_text(encoding="utf-8").upper()
    for *_, wire in EXAMPLES:
        assert wire.upper() in " ".join(text.split()), f"example {wire} not in PROTOCOL.md"
    assert "01 01 00 02 00 68 69 B7 F7 04 C3" in text


@pytest.mark.parametrize(("cmd", "seq", "payload", "wire"), EXAMPLES)
def test_protocol_md_examples(cmd: int, seq: int, payload: bytes, wire: str) -> None:
    assert P.encode_frame(cmd, seq, payload) == hx(wire)
    frame = P.decode_frame(hx(wire)[1:-1])
    assert (frame.cmd, frame.seq, frame.payload) == (cmd, seq, payload)


def test_example_payloads_parse() -> None:
    out, lat = P.parse_infer_reply(hx("01 00 9C 01 00 00 85 7B"), 2, expected_count=1)
    assert lat.tolist() == [412] and out.tolist() == [[-123, 123]]
    assert P.encode_infer(np.array([[-128, 0, 127, 16]], np.int8)) == hx("01 00 80 00 7F 10")
    err = P.parse_error(b"\x04\x42unknown command")
    assert (err.code, err.request_cmd, err.reason, err.name) == (
        4, 0x42, "unknown command", "TS_ERR_UNKNOWN_COMMAND")
    assert not err.transient and P.parse_error(b"\x01\x00bad crc").transient


# --- header constants ---------------------------------------------------------------------


def _x_list(text: str, name: str) -> dict[str, tuple[int, str]]:
    m = re.search(rf"#define {name}\(X\)(.*?)\n\n", text, re.S)
    assert m, name
    return {n: (int(c, 0), t) for n, c, t in
            re.findall(r'X\((\w+),\s*(0x[0-9A-Fa-f]+|\d+),\s*"([^"]*)"\)', m.group(1))}


def test_constants_match_header() -> None:
    h = HEADER.read_text(encoding="utf-8")
    defines = {k: int(v, 0) for k, v in
               re.findall(r"#define (TS_\w+) (0x[0-9A-Fa-f]+|\d+)u?\b", h)}
    assert defines["TS_PROTOCOL_VERSION"] == P.PROTOCOL_VERSION
    assert defines["TS_MAX_PAYLOAD"] == P.MAX_PAYLOAD
    assert defines["TS_HEADER_SIZE"] == P.HEADER_SIZE
    assert defines["TS_CRC_SIZE"] == P.CRC_SIZE
    assert defines["TS_SEQ_UNKNOWN"] == P.SEQ_UNKNOWN
    assert defines["TS_RESPONSE_FLAG"] == P.RESPONSE_FLAG
    assert defines["TS_FRAME_TIMEOUT_US"] == P.FRAME_TIMEOUT_US
    assert defines["TS_MAX_LINE"] == P.MAX_LINE
    assert defines["TS_MAX_REASON"] == P.MAX_REASON
    assert defines["TS_STATUS_COUNT"] == P.STATUS_COUNT == len(P.Status)
    # TS_MAX_WIRE_FRAME = TS_COBS_MAX_ENCODED(TS_MAX_PACKET) + 2, computed like the macro
    # (PROTOCOL.md's prose says 1039; the macro, which the firmware uses, gives 1040).
    assert P.MAX_PACKET == 1033
    assert P.MAX_WIRE_FRAME == 1033 + 1033 // 254 + 1 + 2

    cmds = _x_list(h, "TS_COMMAND_LIST")
    assert {n: c for n, (c, _) in cmds.items()} == {f"TS_CMD_{c.name}": int(c) for c in P.Command}
    statuses = _x_list(h, "TS_STATUS_LIST")
    assert {n: c for n, (c, _) in statuses.items()} == {P.status_name(s): int(s) for s in P.Status}
    assert {c: t for _, (c, t) in statuses.items()} == {int(s): r for s, r in
                                                       P.STATUS_REASONS.items()}
    tlvs = _x_list(h, "TS_TLV_LIST")
    assert {n: (c, t) for n, (c, t) in tlvs.items()} == {
        f"TS_TLV_{t.name}": (int(t), P.TAG_TYPES[t]) for t in P.Tag}
    for enum, prefix in ((P.CrcCheck, "TS_CRC_"), (P.SelfTestStatus, "TS_SELF_TEST_"),
                         (P.LinkKind, "TS_LINK_")):
        for member in enum:
            name = prefix + member.name
            assert re.search(rf"\b{name} = {int(member)}\b", h), name
    assert re.search(rf"TS_DTYPE_INT8 = {P.DTYPE_INT8}\b", h)


def test_names_match_core_tables(core_lib: C.CDLL) -> None:
    for s in P.Status:
        assert core_lib.ts_status_name(int(s)).decode() == P.status_name(s)
        assert core_lib.ts_status_str(int(s)).decode() == P.STATUS_REASONS[s]
    assert core_lib.ts_status_name(99).decode() == P.status_name(99) == "?"
    for c in P.Command:
        assert core_lib.ts_command_name(int(c)).decode() == c.name.lower()


# --- codec properties ---------------------------------------------------------------------


def _c_cobs(lib: C.CDLL, fn: str, data: bytes) -> bytes:
    out = C.create_string_buffer(len(data) + len(data) // 254 + 8)
    n = C.c_size_t()
    assert getattr(lib, fn)(data, len(data), out, len(out), C.byref(n)) == 0
    return out.raw[: n.value]


def _random_payloads(seed: int, n: int) -> Iterator[bytes]:
    rng = np.random.default_rng(seed)
    for i in range(n):
        size = int(rng.choice([0, 1, 2, 253, 254, 255, 508, 1024])) if i % 4 == 0 else int(
            rng.integers(0, P.MAX_PAYLOAD + 1))
        kind = i % 3
        if kind == 0:
            yield rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        elif kind == 1:  # many zeros
            yield (rng.random(size) < 0.5).astype(np.uint8).tobytes()
        else:  # no zeros (long COBS blocks)
            yield rng.integers(1, 256, size, dtype=np.uint8).tobytes()


def test_crc_and_cobs_agree_with_core(core_lib: C.CDLL) -> None:
    for data in _random_payloads(1, 200):
        assert P.crc32(data) == zlib.crc32(data) == core_lib.ts_crc32(0, data, len(data))
        enc = P.cobs_encode(data)
        assert 0 not in enc and len(enc) <= P.cobs_max_encoded(len(data))
        assert enc == _c_cobs(core_lib, "ts_cobs_encode", data)
        assert P.cobs_decode(enc) == data == _c_cobs(core_lib, "ts_cobs_decode", enc)


def test_frames_round_trip_both_ways(core_lib: C.CDLL) -> None:
    rng = np.random.default_rng(2)
    for data in _random_payloads(3, 200):
        cmd, seq = int(rng.integers(0, 256)), int(rng.integers(0, 0x10000))
        wire = P.encode_frame(cmd, seq, data)
        out = C.create_string_buffer(P.MAX_WIRE_FRAME)
        n = C.c_size_t()
        assert core_lib.ts_frame_encode(cmd, seq, data, len(data), out, len(out),
                                        C.byref(n)) == 0
        assert out.raw[: n.value] == wire
        body = wire[1:-1]
        ccmd, cseq = C.c_uint8(), C.c_uint16()
        pay = C.create_string_buffer(P.MAX_PAYLOAD)
        assert core_lib.ts_frame_decode(body, len(body), C.byref(ccmd), C.byref(cseq), pay,
                                        len(pay), C.byref(n)) == 0
        assert (ccmd.value, cseq.value, pay.raw[: n.value]) == (cmd, seq, data)
        assert P.decode_frame(body) == P.Frame(cmd, seq, data)


def test_damaged_frames_fail_the_same_way_on_both_sides(core_lib: C.CDLL) -> None:
    rng = np.random.default_rng(4)
    for data in _random_payloads(5, 150):
        body = bytearray(P.encode_frame(0x01, 7, data)[1:-1])
        mode = int(rng.integers(0, 3))
        if mode == 0:
            body[int(rng.integers(0, len(body)))] ^= int(rng.integers(1, 256))
        elif mode == 1:
            del body[int(rng.integers(1, len(body))):]
        else:
            body += bytes([int(rng.integers(1, 256))])
        body_b = bytes(body)
        ccmd, cseq, n = C.c_uint8(), C.c_uint16(), C.c_size_t()
        pay = C.create_string_buffer(P.MAX_PAYLOAD)
        st = core_lib.ts_frame_decode(body_b, len(body_b), C.byref(ccmd), C.byref(cseq), pay,
                                      len(pay), C.byref(n))
        try:
            P.decode_frame(body_b)
            host = 0
        except P.FrameError as e:
            host = int(e.status)
        if 0 in body_b:  # a flipped byte became a delimiter: not a single body any more
            continue
        assert host == st, (body_b.hex(), host, st)


def test_infer_payload_round_trip() -> None:
    rng = np.random.default_rng(6)
    for _ in range(50):
        n_in, n_out = int(rng.integers(1, 40)), int(rng.integers(1, 20))
        count = int(rng.integers(1, P.max_batch(n_in, n_out) + 1))
        x = rng.integers(-128, 128, (count, n_in), dtype=np.int8)
        pay = P.encode_infer(x)
        assert len(pay) <= P.MAX_PAYLOAD and pay[2:] == x.tobytes()
        y = rng.integers(-128, 128, (count, n_out), dtype=np.int8)
        lat = rng.integers(0, 2**32, count, dtype=np.uint64).astype(np.uint32)
        reply = struct.pack("<H", count) + b"".join(
            struct.pack("<I", int(lat[i])) + y[i].tobytes() for i in range(count))
        assert len(reply) <= P.MAX_PAYLOAD
        out, got_lat = P.parse_infer_reply(reply, n_out, expected_count=count)
        assert np.array_equal(out, y) and np.array_equal(got_lat, lat)
    with pytest.raises(ProtocolError):
        P.parse_infer_reply(b"\x02\x00" + b"\x00" * 5, 1)


def test_info_skips_unknown_tags_and_rejects_truncation() -> None:
    rec = P.encode_info([(0x01, b"\x01"), (0x7E, b"future"), (0x03, b"v0009"),
                         (0x16, struct.pack("<BHHB", 1, 8, 3, 2)), (0x0F, struct.pack("<f", 0.5)),
                         (0x0B, struct.pack("<2i", 1, 4))])
    info = P.parse_info(rec)
    assert info.protocol_version == 1 and info.model_version == "v0009"
    assert info.unknown == {0x7E: b"future"} and info.input_shape == [1, 4]
    assert info.self_test is not None and info.self_test.status_name == "fail"
    assert info.self_test.failed_vector == 3 and info.input_scale == 0.5
    assert info.to_dict()["unknown"] == {"0x7E": b"future".hex()}
    with pytest.raises(ProtocolError):
        P.parse_info(rec[:-1])


def test_frame_reader_splits_text_garbage_and_frames() -> None:
    f1, f2 = P.encode_frame(0x81, 1, b"hi"), P.encode_frame(0x82, 2, b"\x00\x00x")
    bad = bytearray(P.encode_frame(0x81, 3, b"zz"))
    bad[4] ^= 0x55
    stream = (b"tinyship ready proto=1 fw=0.1.0\r\n" + f1 + b"\xfe\xfd\x13garbage" + bytes(bad)
              + f2 + b"\x00\x00\x00")
    rng = np.random.default_rng(7)
    for _ in range(30):  # any split of the stream gives the same result
        reader = P.FrameReader()
        cuts = sorted(rng.integers(0, len(stream), 5).tolist())
        frames: list[P.Frame] = []
        for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            frames += reader.feed(stream[a:b])
        assert [f.seq for f in frames] == [1, 2]
        assert reader.take_lines() == ["tinyship ready proto=1 fw=0.1.0"]
        assert reader.bad_frames >= 1


# --- the real core answering host frames --------------------------------------------------


def test_core_banner_and_hello(core: Core) -> None:
    core.out.clear()
    hello = core.request(P.Command.HELLO, 2)
    assert hello.cmd == P.Command.HELLO | P.RESPONSE_FLAG and hello.seq == 2
    info = P.parse_info(hello.payload)
    assert info.protocol_version == P.PROTOCOL_VERSION
    assert (info.model_version, info.model_sha256, info.board) == ("v0003", SHA, "nano33ble")
    assert (info.input_size, info.output_size, info.max_payload) == (4, 2, P.MAX_PAYLOAD)
    assert info.input_shape == [1, 4] and info.output_shape == [1, 2]
    assert (info.input_scale, info.input_zero_point) == (0.5, -1)
    assert (info.output_scale, info.output_zero_point) == (0.25, 3)
    assert info.model_crc_ok == P.CrcCheck.OK and info.model_crc32 == 0xDEADBEEF
    assert info.self_test is not None and info.self_test.passed
    assert info.self_test.vectors == 2 and info.self_test.failed_vector == 0xFFFF
    assert info.input_dtype == info.output_dtype == P.DTYPE_INT8
    assert (info.target_mean, info.target_scale) == (0.0, 1.0)
    assert info.unknown == {}  # every tag the core sends is known to the codec


# Output record of the Core above, as the manifest's model.output would hold it.
OUT_RECORD = {"scale": 0.25, "zero_point": 3}


@pytest.mark.parametrize(("mean", "tscale"), [(0.0, 1.0), (60.0, 8.0), (-3.25, 0.125),
                                              (81.5, -2.5)])
def test_core_target_units_agree_with_host(core_lib: C.CDLL, mean: float, tscale: float) -> None:
    """INFO carries the target units and MLPerf results% prints what `to_target_units`
    computes on the host from the same int8 output (3 decimals, float32 on the device)."""
    from tinyship.convert.runtimes import to_target_units

    c = Core(core_lib, target_mean=mean, target_scale=tscale)
    info = P.parse_info(c.request(P.Command.HELLO, 1).payload)
    assert (info.target_mean, info.target_scale) == (mean, tscale)  # exact in float32
    assert info.to_dict()["target_mean"] == mean and not info.unknown
    record = {**OUT_RECORD, "target_mean": mean, "target_scale": tscale}
    for x in ([1, 2, 3, 4], [-128, -128, -128, 127], [127, 127, 127, -128], [0, 0, 0, 0]):
        vec = np.array(x, dtype=np.int8)
        text = c.feed(f"db load {IN_SIZE}%db {vec.tobytes().hex()}%infer 1 0%".encode())
        m = re.search(rb"m-results-\[([^\]]*)\]", text)
        assert m, text
        device = [float(v) for v in m.group(1).split(b",")]
        host = to_target_units(toy_model(vec), record).reshape(-1)
        np.testing.assert_allclose(device, host, atol=1e-3, rtol=1e-6)
    # a zero target scale (a config that never set it) is refused at init
    with pytest.raises(AssertionError, match="TS_ERR_INVALID_ARGUMENT"):
        Core(core_lib, target_mean=mean, target_scale=0.0)


@pytest.mark.parametrize("link", [P.LinkInfo(P.LinkKind.UART, 115200, 256),
                                  P.LinkInfo(P.LinkKind.USB_CDC, 0, 0),
                                  P.LinkInfo(P.LinkKind.STREAM, 0, 0)])
def test_core_link_tag_parses_on_the_host(core: Core, link: P.LinkInfo) -> None:
    """What the glue tells the core (ts_core_set_link) reaches the host's LinkInfo; until it
    does, the tag is absent and the host knows nothing of the link."""
    assert P.parse_info(core.request(P.Command.HELLO, 1).payload).link is None
    st = core.lib.ts_core_set_link(core._core, C.byref(Link(link.kind, link.baud,
                                                             link.rx_window)))
    assert st == 0
    payload = core.request(P.Command.HELLO, 2).payload
    info = P.parse_info(payload)
    assert info.link == link and not info.unknown
    assert P.encode_link(link) in payload
    assert info.to_dict()["link"]["kind_name"] == link.kind_name
    assert info.link.physical == (link.kind == P.LinkKind.UART)
    # a UART without a baud rate is refused and the last good link stays
    assert core.lib.ts_core_set_link(core._core, C.byref(Link(P.LinkKind.UART, 0, 64))) == 12
    assert P.parse_info(core.request(P.Command.HELLO, 3).payload).link == link


def test_info_link_tag_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ProtocolError, match="LINK"):
        P.parse_info(P.encode_info([(int(P.Tag.LINK), b"\x01\x00\xc2\x01\x00")]))


def test_info_without_target_tags_is_older_firmware() -> None:
    info = P.parse_info(P.encode_info([(0x01, b"\x01"), (0x11, struct.pack("<f", 0.25))]))
    assert info.target_mean is None and info.target_scale is None
    info = P.parse_info(P.encode_info([(0x1C, struct.pack("<f", 60.0)),
                                       (0x1D, struct.pack("<f", 8.0))]))
    assert (info.target_mean, info.target_scale) == (60.0, 8.0)
    with pytest.raises(ProtocolError, match="TARGET_SCALE"):
        P.parse_info(P.encode_info([(0x1D, b"\x00\x00")]))


def test_core_ping_infer_stats(core: Core) -> None:
    assert core.request(P.Command.PING, 1, b"hi").payload == b"hi"
    x = np.random.default_rng(8).integers(-128, 128, (P.max_batch(IN_SIZE, OUT_SIZE), IN_SIZE),
                                          dtype=np.int8)
    core.request(P.Command.RESET_STATS, 9)
    r = core.request(P.Command.INFER, 10, P.encode_infer(x))
    assert r.cmd == P.Command.INFER | P.RESPONSE_FLAG and r.seq == 10
    out, lat = P.parse_infer_reply(r.payload, OUT_SIZE, expected_count=len(x))
    assert np.array_equal(out, toy_model(x)) and (lat == Core.LATENCY_US).all()
    stats = P.parse_stats(core.request(P.Command.STATS, 11).payload)
    assert stats.inference_count == len(x) and stats.latency_max_us == Core.LATENCY_US
    assert stats.frames_ok == 1 and stats.errors == {}


@pytest.mark.parametrize(("payload", "code"), [
    (b"", P.Status.BAD_PAYLOAD),
    (b"\x00\x00", P.Status.BAD_PAYLOAD),
    (b"\x01\x00\x01\x02\x03", P.Status.WRONG_INPUT_SIZE),
    (struct.pack("<H", 200) + bytes(800), P.Status.BATCH_TOO_LARGE),
])
def test_core_infer_errors(core: Core, payload: bytes, code: P.Status) -> None:
    r = core.request(P.Command.INFER, 12, payload)
    assert r.is_error and r.seq == 12
    err = P.parse_error(r.payload)
    assert (err.code, err.request_cmd, err.reason) == (code, P.Command.INFER,
                                                       P.STATUS_REASONS[code])


def test_core_error_replies_for_damaged_frames(core: Core) -> None:
    wire = bytearray(P.encode_frame(P.Command.PING, 5, b"hello"))
    wire[8] ^= 0x01  # a payload byte ('e'), not a COBS code byte
    frames = P.FrameReader().feed(core.feed(bytes(wire)))
    assert [(f.cmd, f.seq) for f in frames] == [(0xFF, P.SEQ_UNKNOWN)]
    assert P.parse_error(frames[0].payload).code == P.Status.BAD_CRC
    r = core.request(P.Command.PING, 6, b"ok")  # survives and answers the next frame
    assert (r.cmd, r.seq, r.payload) == (0x81, 6, b"ok")
    unknown = core.request(0x42, 6)
    assert P.parse_error(unknown.payload).code == P.Status.UNKNOWN_COMMAND
    # garbage then a frame without a fresh leading 0x00 still works (leading-0x00 resync)
    frames = P.FrameReader().feed(core.feed(b"\x00\x17\x99junk" + P.encode_frame(1, 8, b"x")))
    assert frames[-1] == P.Frame(0x81, 8, b"x")
    stats = P.parse_stats(core.request(P.Command.STATS, 9).payload)
    assert stats.errors.get("TS_ERR_BAD_CRC") == 1
    assert stats.errors.get("TS_ERR_UNKNOWN_COMMAND") == 1


def test_core_refuses_inference_when_model_crc_failed(core_lib: C.CDLL) -> None:
    c = Core(core_lib, crc_check=0)
    info = P.parse_info(c.request(P.Command.HELLO, 1).payload)
    assert info.model_crc_ok == P.CrcCheck.MISMATCH
    r = c.request(P.Command.INFER, 2, P.encode_infer(np.zeros((1, IN_SIZE), np.int8)))
    assert P.parse_error(r.payload).code == P.Status.MODEL_INVALID


def test_ctypes_mirror_matches_the_c_structs() -> None:
    """The Python mirror of ts_config_t / ts_platform_t lists the header's fields in order."""
    header = HEADER.read_text()

    def fields(struct: str) -> list[str]:
        pattern = r"typedef struct " + struct + r" \{(.*?)\} " + struct + r"_t;"
        body = re.search(pattern, header, re.S)
        assert body, struct
        text = re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.S)
        names = re.findall(r"\(\s*\*\s*(\w+)\s*\)\s*\(|(\w+)\s*;", text)
        return [a or b for a, b in names]

    assert fields("ts_config") == [f[0] for f in Config._fields_]
    assert fields("ts_link") == [f[0] for f in Link._fields_]
    assert fields("ts_platform") == [f[0] for f in Platform._fields_]


@pytest.mark.parametrize("cmd", [c for c in P.Command if 0x10 <= c <= 0x16])
def test_core_without_slots_answers_slot_commands_as_the_codec_expects(core: Core,
                                                                       cmd: P.Command) -> None:
    """A core built without model slots (no `flash` in its config) answers every slot
    command with TS_ERR_NO_SLOTS, and REBOOT, which needs the glue's reset, as an unknown
    command; its INFO has no slot tags, so the host sees a board without slots."""
    r = core.request(cmd, 0x30, b"\x00" * 8 if cmd == P.Command.SLOT_WRITE else b"")
    err = P.parse_error(r.payload)
    want = P.Status.UNKNOWN_COMMAND if cmd == P.Command.REBOOT else P.Status.NO_SLOTS
    assert (r.cmd, r.seq, err.code, err.request_cmd, err.reason) == (
        P.Command.ERROR, 0x30, want, cmd, P.STATUS_REASONS[want])
    info = P.parse_info(core.request(P.Command.HELLO, 0x31).payload)
    assert not info.has_slots and info.running is None and info.device_id is None
