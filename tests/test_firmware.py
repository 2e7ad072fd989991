"""Firmware: host unit tests and fuzzing of the C++ core, the shared library used by
the virtual board, the Cortex-M4 size check, the PlatformIO project, the model
selection pre-build script, the Arduino glue run on the host against stub headers,
and the protocol spec kept in step with the core's header.

Toolchain tests skip with a reason when a tool is missing; TINYSHIP_REQUIRE_ARM=1 /
TINYSHIP_REQUIRE_PIO=1 turn those skips into failures (CI sets them).
"""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# The ctypes mirror of the core's structs is the virtual board's (one copy, checked
# against the header in tests/test_protocol_codec.py).
from tinyship.device.virtual._core import (
    CORE_CPP,
    CORE_HEADERS,
    Config,
    InferFn,
    MicrosFn,
    Platform,
    WriteFn,
)

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"
CORE_DIR = FIRMWARE / "lib/tinyship_core/src"
HEADER = CORE_DIR / "tinyship_core.h"
PROTOCOL = FIRMWARE / "PROTOCOL.md"
SELECT_MODEL = FIRMWARE / "scripts/select_model.py"
LIB = FIRMWARE / "build/host/libtinyship_core.so"


def _make(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None or shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("make or a host C++ compiler is not installed")
    return subprocess.run(
        ["make", "-C", str(FIRMWARE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


# --------------------------------------------------------------- header parsing --


def _x_list(name: str) -> list[tuple[str, int, str]]:
    """Entries X(NAME, code, "text") of the X-macro list `name` in the core header."""
    text = HEADER.read_text()
    start = text.index(f"#define {name}(X)")
    block = []
    for line in text[start:].splitlines():
        block.append(line)
        if not line.rstrip().endswith("\\"):
            break
    entries = re.findall(r'X\((\w+),\s*(0x[0-9A-Fa-f]+|\d+),\s*"([^"]*)"\)', "\n".join(block))
    return [(n, int(c, 0), t) for n, c, t in entries]


def _doc_rows(prefix: str) -> dict[str, tuple[int, list[str]]]:
    """Table rows `| code | `PREFIX...` | ... |` of PROTOCOL.md: name -> (code, cells)."""
    rows: dict[str, tuple[int, list[str]]] = {}
    for line in PROTOCOL.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"0x[0-9A-Fa-f]+|\d+", cells[0]):
            m = re.fullmatch(rf"`({prefix}\w*)`", cells[1])
            if m:
                rows[m.group(1)] = (int(cells[0], 0), cells)
    return rows


def test_header_lists_are_parsed() -> None:
    # Guards the drift test below against a parser that silently finds nothing.
    assert len(_x_list("TS_STATUS_LIST")) >= 8
    assert ("TS_CMD_PING", 1, "ping") in _x_list("TS_COMMAND_LIST")
    assert ("TS_TLV_PROTOCOL_VERSION", 1, "u8") in _x_list("TS_TLV_LIST")


@pytest.mark.parametrize(
    ("x_list", "prefix"),
    [
        ("TS_STATUS_LIST", "TS_(?:OK|ERR_)"),
        ("TS_COMMAND_LIST", "TS_CMD_"),
        ("TS_TLV_LIST", "TS_TLV_"),
    ],
)
def test_protocol_md_documents_every_code_in_the_header(x_list: str, prefix: str) -> None:
    code_side = {name: code for name, code, _ in _x_list(x_list)}
    doc_side = {name: code for name, (code, _) in _doc_rows(prefix).items()}
    only_header = sorted(set(code_side) - set(doc_side))
    only_doc = sorted(set(doc_side) - set(code_side))
    differ = sorted(n for n in code_side.keys() & doc_side.keys() if code_side[n] != doc_side[n])
    assert code_side == doc_side, (
        f"PROTOCOL.md and tinyship_core.h disagree: only in header {only_header}, "
        f"only in doc {only_doc}, different codes {differ}"
    )


def test_protocol_md_error_reasons_match_the_string_table() -> None:
    rows = _doc_rows("TS_(?:OK|ERR_)")
    for name, _code, reason in _x_list("TS_STATUS_LIST"):
        assert rows[name][1][2] == f"`{reason}`", f"reason of {name} differs in PROTOCOL.md"
    codes = sorted(code for _n, code, _r in _x_list("TS_STATUS_LIST"))
    assert codes == list(range(len(codes))), "status codes must be dense (string table index)"
    count = re.search(r"#define TS_STATUS_COUNT (\d+)u", HEADER.read_text())
    assert count and int(count.group(1)) == len(codes)


# ------------------------------------------------------------ host C++ tests --


def test_every_build_of_the_core_compiles_the_same_sources() -> None:
    # The core is split by concern (tinyship_core_internal.h says which file does what).
    # PlatformIO builds every .cpp of lib/tinyship_core/src; firmware/Makefile (CORE_FILES)
    # and the virtual board (_core.CORE_CPP) list the files, so both lists must name them all.
    make = (FIRMWARE / "Makefile").read_text()
    m = re.search(r"^CORE_FILES := ((?:.*\\\n)*.*)$", make, re.MULTILINE)
    assert m, "CORE_FILES not found in firmware/Makefile"
    assert m.group(1).replace("\\\n", " ").split() == list(CORE_CPP)
    assert all((CORE_DIR / name).is_file() for name in (*CORE_CPP, *CORE_HEADERS))
    assert {p.name for p in CORE_DIR.glob("tinyship_core*.cpp")} <= set(CORE_CPP)
    assert {p.name for p in CORE_DIR.glob("tinyship_core*.h")} <= set(CORE_HEADERS)
    manifest = CORE_DIR.parent / "library.json"  # would restrict what PlatformIO builds
    assert not manifest.exists() or "srcFilter" not in manifest.read_text()


def test_core_host_unit_tests() -> None:
    out = _ok(_make("test"))
    # Two builds: the default TS_MAX_INPUT_BYTES and the board envs' (MLPerf vision input).
    runs = re.findall(r"(\d+) checks, (\d+) failures", out)
    assert len(runs) == 2, out
    assert all(int(checks) > 1000 and failures == "0" for checks, failures in runs)


def test_core_fuzz_200k_frames() -> None:
    out = _ok(_make("fuzz", "FUZZ_ITERS=200000", "FUZZ_SEED=7", timeout=600))
    m = re.search(r"fuzz: (\d+) iterations, (\d+) clean requests answered", out)
    assert m, out
    assert int(m.group(1)) == 200000 and int(m.group(2)) > 50000
    # Then a core with model slots over the NOR simulator: >= 10^5 frames of 0x10-0x16.
    s = re.search(r"fuzz slots: (\d+) iterations, (\d+) slot frames \((\d+) clean requests\)", out)
    assert s, out
    assert int(s.group(1)) == 200000 and int(s.group(2)) >= 100_000 and int(s.group(3)) > 50000


# ------------------------------------------------------ shared library (ctypes) --


def _py_cobs(data: bytes) -> bytes:
    out, block = bytearray(), bytearray()
    for b in data:
        if b == 0:
            out += bytes([len(block) + 1]) + block
            block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out += b"\xff" + block
                block = bytearray()
    out += bytes([len(block) + 1]) + block
    return bytes(out)


def _py_frame(cmd: int, seq: int, payload: bytes) -> bytes:
    packet = struct.pack("<BHH", cmd, seq, len(payload)) + payload
    packet += struct.pack("<I", zlib.crc32(packet))
    return b"\x00" + _py_cobs(packet) + b"\x00"


@pytest.fixture(scope="module")
def core_lib() -> ctypes.CDLL:
    _ok(_make("lib"))
    assert LIB.is_file()
    lib = ctypes.CDLL(str(LIB))
    lib.ts_status_str.restype = ctypes.c_char_p
    lib.ts_status_name.restype = ctypes.c_char_p
    lib.ts_crc32.restype = ctypes.c_uint32
    lib.ts_crc32.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
    lib.ts_core_size.restype = ctypes.c_size_t
    lib.ts_frame_encode.argtypes = [
        ctypes.c_uint8,
        ctypes.c_uint16,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_size_t),
    ]
    lib.ts_frame_decode.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_uint8),
        ctypes.POINTER(ctypes.c_uint16),
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_size_t),
    ]
    lib.ts_core_init.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.POINTER(Config),
        ctypes.POINTER(Platform),
        ctypes.POINTER(ctypes.c_void_p),
    ]
    lib.ts_core_feed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    return lib


def test_shared_library_exports_the_status_table(core_lib: ctypes.CDLL) -> None:
    for name, code, reason in _x_list("TS_STATUS_LIST"):
        assert core_lib.ts_status_str(code).decode() == reason
        assert core_lib.ts_status_name(code).decode() == name
    assert core_lib.ts_crc32(0, b"123456789", 9) == 0xCBF43926


@pytest.mark.parametrize("size", [0, 1, 2, 253, 254, 255, 600, 1024])
def test_shared_library_frames_match_a_python_reference(core_lib: ctypes.CDLL, size: int) -> None:
    payload = bytes((i * 7) % 256 for i in range(size))  # includes zeros
    out = ctypes.create_string_buffer(2048)
    n = ctypes.c_size_t()
    assert core_lib.ts_frame_encode(0x03, 0xBEEF, payload, size, out, 2048, ctypes.byref(n)) == 0
    wire = out.raw[: n.value]
    assert wire == _py_frame(0x03, 0xBEEF, payload)
    cmd, seq, plen = ctypes.c_uint8(), ctypes.c_uint16(), ctypes.c_size_t()
    buf = ctypes.create_string_buffer(1024)
    body = wire[1:-1]
    assert (
        core_lib.ts_frame_decode(
            body, len(body), ctypes.byref(cmd), ctypes.byref(seq), buf, 1024, ctypes.byref(plen)
        )
        == 0
    )
    assert (cmd.value, seq.value, buf.raw[: plen.value]) == (3, 0xBEEF, payload)


def test_protocol_md_wire_examples_decode(core_lib: ctypes.CDLL) -> None:
    examples = re.findall(r"(?:wire|reply)\s+((?:[0-9A-F]{2} )+00)", PROTOCOL.read_text())
    assert len(examples) >= 4
    for hexes in examples:
        wire = bytes.fromhex(hexes)
        body = wire[1:-1]
        cmd, seq, plen = ctypes.c_uint8(), ctypes.c_uint16(), ctypes.c_size_t()
        buf = ctypes.create_string_buffer(1024)
        status = core_lib.ts_frame_decode(
            body, len(body), ctypes.byref(cmd), ctypes.byref(seq), buf, 1024, ctypes.byref(plen)
        )
        assert status == 0, f"example {hexes} does not decode"


def test_shared_library_runs_a_core_through_ctypes(core_lib: ctypes.CDLL) -> None:
    written = bytearray()
    clock = [1000]

    @WriteFn
    def write(_user: Any, data: Any, length: int) -> int:
        written.extend(ctypes.string_at(data, length))
        return 0

    @MicrosFn
    def micros(_user: Any) -> int:
        clock[0] += 25
        return clock[0]

    @InferFn
    def infer(_user: Any, inp: Any, n_in: int, out: Any, n_out: int) -> int:
        total = sum(inp[i] for i in range(n_in))
        for k in range(n_out):
            out[k] = max(-128, min(127, total + k))
        return 0

    shape_in = (ctypes.c_int32 * 2)(1, 3)
    shape_out = (ctypes.c_int32 * 2)(1, 2)
    golden_in = (ctypes.c_int8 * 3)(1, 2, 3)
    golden_out = (ctypes.c_int8 * 2)(6, 7)
    cfg = Config(
        b"0.1.0",
        b"v0001",
        b"a" * 64,
        b"tflm-current",
        b"virtual",
        None,
        None,
        3,
        2,
        shape_in,
        shape_out,
        2,
        2,
        0.5,
        0.25,
        0,
        0,
        0.0,  # target_mean
        1.0,  # target_scale (0 would be refused)
        1024,
        100,
        0x1234,
        1,
        0,
        0,
        golden_in,
        golden_out,
        1,
        0,
    )
    platform = Platform(None, write, micros, infer)  # storage callbacks left NULL
    mem = ctypes.create_string_buffer(core_lib.ts_core_size())
    core = ctypes.c_void_p()
    assert (
        core_lib.ts_core_init(
            mem, len(mem), ctypes.byref(cfg), ctypes.byref(platform), ctypes.byref(core)
        )
        == 0
    )
    assert (
        bytes(written)
        == b"tinyship ready proto=2 fw=0.1.0 model=v0001 board=virtual selftest=pass\r\n"
    )
    written.clear()
    request = _py_frame(0x03, 9, struct.pack("<H", 2) + bytes([1, 2, 3, 0xFF, 0xFF, 0xFF]))
    assert core_lib.ts_core_feed(core, request, len(request)) == 0
    assert written[0] == 0 and written[-1] == 0
    cmd, seq, plen = ctypes.c_uint8(), ctypes.c_uint16(), ctypes.c_size_t()
    buf = ctypes.create_string_buffer(1024)
    body = bytes(written[1:-1])
    assert (
        core_lib.ts_frame_decode(
            body, len(body), ctypes.byref(cmd), ctypes.byref(seq), buf, 1024, ctypes.byref(plen)
        )
        == 0
    )
    assert (cmd.value, seq.value) == (0x83, 9)
    count, lat0, o0, o1, lat1, o2, o3 = struct.unpack("<HIbbIbb", buf.raw[: plen.value])
    assert count == 2 and (o0, o1, o2, o3) == (6, 7, -3, -2)
    assert lat0 == lat1 == 25  # the core reads the clock around each inference
    written.clear()
    assert core_lib.ts_core_feed(core, b"ping\n", 5) == 0
    assert bytes(written) == b"pong\r\n"


def _core_config(**overrides: Any) -> tuple[Config, list[Any]]:
    """A valid ts_config_t for a 3-in, 2-out model (and the arrays it points to)."""
    keep: list[Any] = [(ctypes.c_int32 * 2)(1, 3), (ctypes.c_int32 * 2)(1, 2)]
    fields: dict[str, Any] = dict(
        firmware_version=b"0.1.0", model_version=b"v0001", model_sha256=b"a" * 64,
        profile=b"tflm-current", board=b"virtual", input_size=3, output_size=2,
        input_shape=keep[0], output_shape=keep[1], input_rank=2, output_rank=2,
        input_scale=0.5, output_scale=0.25, target_mean=0.0, target_scale=1.0,
        arena_size=1024, model_crc32=1, model_crc_check=1,
    )
    fields.update(overrides)
    return Config(**fields), keep


def _run_core(core_lib: ctypes.CDLL, cfg: Config, feed: bytes = b"") -> tuple[int, bytes]:
    """ts_core_init with `cfg` (a stub platform), then feed bytes: (init status, output)."""
    written = bytearray()

    @WriteFn
    def write(_user: Any, data: Any, length: int) -> int:
        written.extend(ctypes.string_at(data, length))
        return 0

    @MicrosFn
    def micros(_user: Any) -> int:
        return 0

    @InferFn
    def infer(_user: Any, inp: Any, n_in: int, out: Any, n_out: int) -> int:
        return 0

    platform = Platform(None, write, micros, infer)
    mem = ctypes.create_string_buffer(core_lib.ts_core_size() + 8)
    core = ctypes.c_void_p()
    st = core_lib.ts_core_init(mem, core_lib.ts_core_size(), ctypes.byref(cfg),
                               ctypes.byref(platform), ctypes.byref(core))
    if st == 0 and feed:
        assert core_lib.ts_core_feed(core, feed, len(feed)) == 0
    return int(st), bytes(written)


def test_mlperf_model_name_agrees_across_core_config_and_build(core_lib: ctypes.CDLL) -> None:
    """profile% reports the configured benchmark name; the core, the config schema and the
    pre-build script accept the same names and have the same default."""
    from pydantic import ValidationError

    from tinyship.config import MLPERF_MODEL_DEFAULT, BoardSection

    sm = _load_select_model()
    header = re.search(r'#define TS_MLPERF_MODEL_DEFAULT "([^"]+)"', HEADER.read_text())
    assert header and header.group(1) == MLPERF_MODEL_DEFAULT == sm.DEFAULT_MLPERF_MODEL
    assert BoardSection().mlperf_model == MLPERF_MODEL_DEFAULT
    cfg, _keep = _core_config()  # mlperf_model NULL: the core's default
    st, out = _run_core(core_lib, cfg, b"profile%")
    assert st == 0 and b"m-model-[ad01]\r\nm-ready" in out
    names = ["ad01", "ic01", "kws01", "vww01", "tab-01_v1.2", "x" * 64,
             "", "x" * 65, "ad]01", "ad 01", "ad01%", "ad01\n", "künstlich"]
    for name in names:
        cfg, _keep = _core_config(mlperf_model=name.encode())
        st, out = _run_core(core_lib, cfg, b"profile%")
        core_ok = st == 0
        try:
            BoardSection.model_validate({"mlperf_model": name})
            config_ok = True
        except ValidationError:
            config_ok = False
        try:  # an empty TINYSHIP_MLPERF_MODEL means unset (the default), not the name ""
            build_ok = sm.mlperf_model(REPO, {"TINYSHIP_MLPERF_MODEL": name}) == name
        except sm.SelectModelError:
            build_ok = False
        assert core_ok == config_ok == build_ok, name
        if core_ok:
            assert f"m-model-[{name}]\r\nm-ready".encode() in out, name


def test_input_buffer_is_a_per_env_build_setting_matching_the_virtual_board() -> None:
    """TS_MAX_INPUT_BYTES: a default in the header, set per board env in platformio.ini (each
    env's build_flags), the same value for the virtual board's library and `make lib`, and
    the RAM cost documented."""
    import configparser

    from tinyship.device.virtual import _core

    header = HEADER.read_text()
    default = re.search(r"#ifndef TS_MAX_INPUT_BYTES\n#define TS_MAX_INPUT_BYTES (\d+)u", header)
    assert default and int(default.group(1)) == 1024 - 2  # one vector per binary INFER
    assert "#define TS_CORE_MEM_BYTES ((6144u + TS_MAX_INPUT_BYTES + 7u) & ~7u)" in header
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(REPO / "platformio.ini")
    envs = [s for s in ini.sections() if s.startswith("env:")]
    assert len(envs) >= 3
    for env in envs:
        flags = ini[env].get("build_flags", "")
        assert "${env.build_flags}" in flags, f"{env} drops the common build_flags"
        m = re.search(r"-DTS_MAX_INPUT_BYTES=(\d+)u?\b", flags)
        assert m, f"{env}: no TS_MAX_INPUT_BYTES in build_flags"
        assert int(m.group(1)) == _core.TS_MAX_INPUT_BYTES == 96 * 96 * 3, env
    make = (FIRMWARE / "Makefile").read_text()
    assert f"MLPERF_INPUT_BYTES := {_core.TS_MAX_INPUT_BYTES}" in make
    for doc in (PROTOCOL, FIRMWARE / "README.md"):
        text = doc.read_text()
        assert "TS_MAX_INPUT_BYTES" in text and "27,648" in text and "6,144" in text, doc


def test_protocol_md_says_energy_mode_is_not_supported() -> None:
    text = " ".join(PROTOCOL.read_text().split())
    assert "Energy mode" in text and "not supported" in text
    assert "timestamp pin" in text and "9600" in text


# ------------------------------------------------------------ Cortex-M4 build --


def test_core_compiles_for_cortex_m4_and_m0plus_and_reports_size() -> None:
    if shutil.which("arm-none-eabi-g++") is None:
        if os.environ.get("TINYSHIP_REQUIRE_ARM") == "1":
            pytest.fail("TINYSHIP_REQUIRE_ARM=1 but arm-none-eabi-g++ is not installed")
        pytest.skip("arm-none-eabi-g++ not installed (apt-get install gcc-arm-none-eabi)")
    out = _ok(_make("arm"))
    m = re.search(
        r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+[0-9a-f]+\s+\S*tinyship_core\.o", out, re.MULTILINE
    )
    assert m, out
    text, data, bss = (int(v) for v in m.groups())
    assert 0 < text < 32 * 1024, "core code should stay small"
    assert data == 0 and bss == 0, "the core keeps no static state (caller-owned memory)"
    # The same core, slots included, for the RP2040's Cortex-M0+.
    m0 = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+[0-9a-f]+\s+\S*tinyship_core_m0plus\.o",
                   out, re.MULTILINE)
    assert m0, out
    assert 0 < int(m0.group(1)) < 32 * 1024 and int(m0.group(2)) == int(m0.group(3)) == 0


# ------------------------------------------------------------- PlatformIO --


def _pio() -> str | None:
    found = shutil.which("pio") or shutil.which("platformio")
    if found:
        return found
    local = Path(sys.executable).parent / "pio"
    return str(local) if local.is_file() else None


def test_platformio_ini_parses_with_three_pinned_board_envs() -> None:
    pio = _pio()
    if pio is None:
        if os.environ.get("TINYSHIP_REQUIRE_PIO") == "1":
            pytest.fail("TINYSHIP_REQUIRE_PIO=1 but pio is not installed")
        pytest.skip("PlatformIO (pio) not installed")
    proc = subprocess.run(
        [pio, "project", "config", "--json-output"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    sections = {name: dict(opts) for name, opts in json.loads(proc.stdout)}
    project = sections["platformio"]
    for key in ("src_dir", "lib_dir", "include_dir", "test_dir"):
        assert Path(project[key]).resolve().is_relative_to(FIRMWARE.resolve()), key
    envs = {name[4:]: opts for name, opts in sections.items() if name.startswith("env:")}
    assert {"nano33ble", "esp32s3"} <= set(envs)
    assert len(envs) >= 3
    boards = set()
    for name, opts in envs.items():
        boards.add(opts["board"])
        assert re.search(r"@\s*\d+\.\d+\.\d+$", opts["platform"]), (
            f"{name}: platform version not pinned"
        )
        assert opts["custom_tinyship_profile"] in ("tflm-arduino-2023", "tflm-current")
        deps = opts.get("lib_deps", [])
        if "espidf" in opts.get("framework", sections["env"].get("framework", [])):
            manifest = (FIRMWARE / "src/idf_component.yml").read_text()
            assert re.search(r'esp-tflite-micro:\s*"==\d+\.\d+\.\d+"', manifest), (
                "esp-tflite-micro not pinned"
            )
        else:
            assert deps and all(re.search(r"#[0-9a-f]{40}$|@\s*\d+\.\d+\.\d+$", d) for d in deps), (
                f"{name}: TFLM library not pinned to a commit or exact version: {deps}"
            )
    assert len(boards) >= 3
    assert envs["nano33ble"]["custom_tinyship_profile"] == "tflm-arduino-2023"
    assert envs["esp32s3"]["custom_tinyship_profile"] == "tflm-current"
    assert "pre:firmware/scripts/select_model.py" in sections["env"]["extra_scripts"]


# ------------------------------------------------ pre-build model selection --


def _load_select_model() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tinyship_select_model", SELECT_MODEL)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def sm() -> ModuleType:
    return _load_select_model()


IN_SIZE, OUT_SIZE = 4, 3
GOLDEN_IN = [[1, 2, 3, 4], [-10, 0, 5, 5], [100, 100, 0, 0]]


def _stub_model(values: list[int]) -> list[int]:
    """What the stub interpreter in firmware/test/glue computes."""
    total = sum(values)
    return [max(-128, min(127, total + k)) for k in range(OUT_SIZE)]


def _write_version(
    registry: Path,
    version: str,
    profile: str,
    *,
    data: bytes | None = None,
    header_version: str | None = None,
) -> None:
    data = data if data is not None else bytes(range(1, 97))
    sha, crc = hashlib.sha256(data).hexdigest(), zlib.crc32(data)
    vdir = registry / version
    (vdir / "firmware").mkdir(parents=True)
    (vdir / "manifest.json").write_text(
        json.dumps(
            {
                "version": version,
                "profile": profile,
                "model": {"sha256": sha, "crc32": crc, "arena_bytes": 2048},
            }
        )
    )
    golden_out = [v for row in GOLDEN_IN for v in _stub_model(row)]
    golden_in = [v for row in GOLDEN_IN for v in row]
    (vdir / "firmware/tinyship_model_data.h").write_text(f"""/* autogenerated, do not edit */
#ifndef TINYSHIP_MODEL_DATA_H
#define TINYSHIP_MODEL_DATA_H
#include <stddef.h>
#include <stdint.h>
#define TINYSHIP_MODEL_VERSION "{header_version or version}"
#define TINYSHIP_MODEL_SHA256 "{sha}"
#define TINYSHIP_MODEL_CRC32 0x{crc:08x}u
#define TINYSHIP_MODEL_PROFILE "{profile}"
#define TINYSHIP_MODEL_ARENA_BYTES 2048
#define TINYSHIP_MODEL_INPUT_SIZE {IN_SIZE}
#define TINYSHIP_MODEL_OUTPUT_SIZE {OUT_SIZE}
#define TINYSHIP_MODEL_INPUT_SCALE 0.5f
#define TINYSHIP_MODEL_OUTPUT_SCALE 0.25f
#define TINYSHIP_MODEL_INPUT_ZERO_POINT -1
#define TINYSHIP_MODEL_OUTPUT_ZERO_POINT 2
#define TINYSHIP_MODEL_INPUT_RANK 2
#define TINYSHIP_MODEL_OUTPUT_RANK 2
#define TINYSHIP_GOLDEN_COUNT {len(GOLDEN_IN)}
#ifdef __cplusplus
extern "C" {{
#endif
extern const int32_t tinyship_model_input_shape[];
extern const int32_t tinyship_model_output_shape[];
extern const unsigned char tinyship_model_data[];
extern const unsigned int tinyship_model_data_len;
extern const int8_t tinyship_golden_inputs[];
extern const int8_t tinyship_golden_outputs[];
#ifdef __cplusplus
}}
#endif
#endif
""")
    (vdir / "firmware/tinyship_model_data.cc").write_text(f"""/* autogenerated, do not edit */
#include "tinyship_model_data.h"
const int32_t tinyship_model_input_shape[] = {{1, {IN_SIZE}}};
const int32_t tinyship_model_output_shape[] = {{1, {OUT_SIZE}}};
alignas(16) const unsigned char tinyship_model_data[] = {{{", ".join(str(b) for b in data)}}};
const unsigned int tinyship_model_data_len = {len(data)};
const int8_t tinyship_golden_inputs[] = {{{", ".join(map(str, golden_in))}}};
const int8_t tinyship_golden_outputs[] = {{{", ".join(map(str, golden_out))}}};
""")
    (vdir / "firmware/tinyship_model_ops.h").write_text("""/* autogenerated, do not edit */
#ifndef TINYSHIP_MODEL_OPS_H
#define TINYSHIP_MODEL_OPS_H
#define TINYSHIP_MODEL_OP_COUNT 2
template <typename Resolver>
inline int tinyship_register_ops(Resolver& resolver) {
  if (static_cast<int>(resolver.AddFullyConnected()) != 0) return 1;
  if (static_cast<int>(resolver.AddRelu()) != 0) return 2;
  return 0;
}
#endif
""")


@pytest.fixture()
def registry(tmp_path: Path) -> Path:
    reg = tmp_path / "models"
    _write_version(reg, "v0001", "tflm-arduino-2023")
    _write_version(reg, "v0002", "tflm-arduino-2023")
    _write_version(reg, "v0010", "tflm-current")
    return reg


def test_resolve_newest_without_aliases(sm: ModuleType, registry: Path) -> None:
    assert sm.list_versions(registry) == ["v0001", "v0002", "v0010"]  # numeric, not lexical
    assert sm.resolve_version(registry, None) == "v0010"
    assert sm.resolve_version(registry, "") == "v0010"


def test_resolve_production_alias_then_explicit_and_alias_names(
    sm: ModuleType, registry: Path
) -> None:
    (registry / "aliases.json").write_text(
        json.dumps({"production": "v0002", "last_known_good": "v0001"})
    )
    assert sm.resolve_version(registry, None) == "v0002"
    assert sm.resolve_version(registry, "v0010") == "v0010"
    assert sm.resolve_version(registry, "last_known_good") == "v0001"


def test_resolve_agrees_with_the_registry(sm: ModuleType, registry: Path) -> None:
    """The pre-build script cannot import tinyship, so it repeats `Registry.resolve`: keep
    them in step for every kind of reference, with and without a production alias."""
    from tinyship.registry import Registry

    reg = Registry(registry)
    refs = [None, "latest", "v0001", "v0010"]
    assert [sm.resolve_version(registry, r) for r in refs] == [reg.resolve(r) for r in refs]
    (registry / "aliases.json").write_text(
        json.dumps({"production": "v0002", "last_known_good": "v0001"})
    )
    reg = Registry(registry)
    refs += ["production", "last_known_good"]
    assert [sm.resolve_version(registry, r) for r in refs] == [reg.resolve(r) for r in refs]


def test_resolve_errors_name_what_exists(sm: ModuleType, registry: Path, tmp_path: Path) -> None:
    with pytest.raises(sm.SelectModelError, match=r"v0099.*available: v0001, v0002, v0010"):
        sm.resolve_version(registry, "v0099")
    (registry / "aliases.json").write_text(json.dumps({"production": "v0042"}))
    with pytest.raises(sm.SelectModelError, match=r"alias 'production'.*v0042"):
        sm.resolve_version(registry, None)
    with pytest.raises(sm.SelectModelError, match="no model versions"):
        sm.resolve_version(tmp_path / "empty", None)
    (registry / "aliases.json").write_text("[1, 2]")
    with pytest.raises(sm.SelectModelError, match="alias names"):
        sm.resolve_version(registry, None)


def test_registry_dir_from_environment(sm: ModuleType, tmp_path: Path) -> None:
    assert sm.registry_dir(tmp_path, {}) == tmp_path / "models"
    assert sm.registry_dir(tmp_path, {"TINYSHIP_REGISTRY": "reg"}) == tmp_path / "reg"
    assert sm.registry_dir(tmp_path, {"TINYSHIP_REGISTRY": "/abs/reg"}) == Path("/abs/reg")


def test_profile_compatibility_rule(sm: ModuleType, registry: Path) -> None:
    old = sm.load_model(registry, "v0001")
    new = sm.load_model(registry, "v0010")
    sm.check_profile("nano33ble", "tflm-arduino-2023", old)
    sm.check_profile("esp32s3", "tflm-current", old)
    sm.check_profile("esp32s3", "tflm-current", new)
    with pytest.raises(sm.SelectModelError) as err:
        sm.check_profile("nano33ble", "tflm-arduino-2023", new)
    message = str(err.value)
    for needle in ("nano33ble", "v0010", "tflm-current", "tflm-arduino-2023", "per-channel"):
        assert needle in message
    with pytest.raises(sm.SelectModelError, match="not a known profile"):
        sm.check_profile("x", "tflm-1999", old)
    with pytest.raises(sm.SelectModelError, match="not a known profile"):
        sm.check_profile("x", "", old)


def test_prepare_build_refuses_incompatible_model_before_writing(
    sm: ModuleType, registry: Path, tmp_path: Path
) -> None:
    build = tmp_path / "build"
    with pytest.raises(
        sm.SelectModelError, match="refusing to build env 'nano33ble' with model v0010"
    ):
        sm.prepare_build(
            project_dir=REPO,
            build_dir=build,
            env_name="nano33ble",
            env_profile="tflm-arduino-2023",
            environ={"TINYSHIP_REGISTRY": str(registry), "TINYSHIP_MODEL": "v0010"},
        )
    assert not (build / sm.GENERATED_DIR / sm.VERSION_HEADER).exists()


def test_manifest_and_generated_files_are_checked(sm: ModuleType, tmp_path: Path) -> None:
    reg = tmp_path / "models"
    _write_version(reg, "v0001", "tflm-current", header_version="v0007")
    model = sm.load_model(reg, "v0001")
    with pytest.raises(sm.SelectModelError, match="stale"):
        sm.check_model_files(model)
    (reg / "v0001/firmware/tinyship_model_ops.h").unlink()
    with pytest.raises(sm.SelectModelError, match=r"tinyship_model_ops\.h"):
        sm.check_model_files(model)
    manifest = json.loads((reg / "v0001/manifest.json").read_text())
    del manifest["model"]["crc32"]
    (reg / "v0001/manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(sm.SelectModelError, match="crc32"):
        sm.load_model(reg, "v0001")


def test_mlperf_model_from_environment_then_project_config(sm: ModuleType,
                                                           tmp_path: Path) -> None:
    assert sm.mlperf_model(tmp_path, {}) == "ad01"  # no tinyship.toml: the default
    (tmp_path / "tinyship.toml").write_text('[project]\nname = "x"\n[board]\nname = "esp32s3"\n')
    assert sm.mlperf_model(tmp_path, {}) == "ad01"  # [board] without the key
    (tmp_path / "tinyship.toml").write_text(
        '[board]\nname = "esp32s3"\nmlperf_model = "vww01"\n[gates]\nmin_r2 = 0.5\n')
    assert sm.mlperf_model(tmp_path, {}) == "vww01"
    assert sm.mlperf_model(tmp_path, {"TINYSHIP_MLPERF_MODEL": "kws01"}) == "kws01"
    sm.tomllib = None  # the fallback parser used on Python < 3.11
    assert sm.mlperf_model(tmp_path, {}) == "vww01"
    with pytest.raises(sm.SelectModelError, match=r"ad 01.*TINYSHIP_MLPERF_MODEL"):
        sm.mlperf_model(tmp_path, {"TINYSHIP_MLPERF_MODEL": "ad 01"})


def test_firmware_version_from_pyproject_or_environment(sm: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.x]\nversion = "9.9.9"\n[project]\nname = "t"\nversion = "1.2.3"\n'
    )
    assert sm.firmware_version(tmp_path, {}) == "1.2.3"
    assert (
        sm.firmware_version(tmp_path, {"TINYSHIP_FIRMWARE_VERSION": "2.0.0-rc.1"}) == "2.0.0-rc.1"
    )
    with pytest.raises(sm.SelectModelError, match="not semver"):
        sm.firmware_version(tmp_path, {"TINYSHIP_FIRMWARE_VERSION": "v2"})
    sm.tomllib = None  # the fallback parser used on Python < 3.11
    assert sm.firmware_version(tmp_path, {}) == "1.2.3"
    with pytest.raises(sm.SelectModelError, match="TINYSHIP_FIRMWARE_VERSION"):
        sm.firmware_version(tmp_path / "nowhere", {})


def test_prepare_build_copies_files_and_writes_version_header(
    sm: ModuleType, registry: Path, tmp_path: Path
) -> None:
    (registry / "aliases.json").write_text(json.dumps({"production": "v0002"}))
    build = tmp_path / "build"
    when = dt.datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=dt.UTC)
    sel = sm.prepare_build(
        project_dir=REPO,
        build_dir=build,
        env_name="nano33ble",
        env_profile="tflm-arduino-2023",
        environ={"TINYSHIP_REGISTRY": str(registry)},
        now=when,
    )
    assert sel.model.version == "v0002"
    gen = build / sm.GENERATED_DIR
    for name in sm.MODEL_FILES:
        assert (gen / name).read_bytes() == (registry / "v0002/firmware" / name).read_bytes()
    header = (gen / sm.VERSION_HEADER).read_text()
    macros = dict(re.findall(r"^#define (\w+) (.+)$", header, re.MULTILINE))
    assert macros["TINYSHIP_FIRMWARE_VERSION"] == '"0.1.0"'  # this repository's pyproject.toml
    assert macros["TINYSHIP_BUILD_MODEL_VERSION"] == '"v0002"'
    assert macros["TINYSHIP_BUILD_MODEL_SHA256"] == f'"{sel.model.sha256}"'
    assert macros["TINYSHIP_BUILD_MODEL_CRC32"] == f"0x{sel.model.crc32:08x}u"
    assert macros["TINYSHIP_BUILD_MODEL_PROFILE"] == '"tflm-arduino-2023"'
    assert macros["TINYSHIP_BUILD_BOARD"] == '"nano33ble"'
    assert macros["TINYSHIP_BUILD_TIME_UTC"] == '"2026-03-04T05:06:07Z"'
    assert macros["TINYSHIP_BUILD_PROTOCOL_VERSION"] == "2"
    assert macros["TINYSHIP_MLPERF_MODEL"] == '"ad01"'  # this repository's tinyship.toml: unset
    assert re.fullmatch(r'"([0-9a-f]{12}(-dirty)?|unknown)"', macros["TINYSHIP_GIT_COMMIT"])
    assert "#ifndef TINYSHIP_VERSION_H" in header and "do not edit" in header
    # Unchanged inputs leave the files untouched (incremental builds).
    stamp = (gen / "tinyship_model_data.cc").stat().st_mtime_ns
    sm.prepare_build(
        project_dir=REPO,
        build_dir=build,
        env_name="nano33ble",
        env_profile="tflm-arduino-2023",
        environ={"TINYSHIP_REGISTRY": str(registry)},
        now=when,
    )
    assert (gen / "tinyship_model_data.cc").stat().st_mtime_ns == stamp


# ------------------------------------------- Arduino glue on the host (stubs) --


def _run_glue(sm: ModuleType, registry: Path, build: Path, version: str,
              **environ: str) -> dict[str, str]:
    sel = sm.prepare_build(
        project_dir=REPO,
        build_dir=build,
        env_name="esp32s3",
        env_profile="tflm-current",
        environ={"TINYSHIP_REGISTRY": str(registry), "TINYSHIP_MODEL": version, **environ},
    )
    out = _ok(_make("glue", f"GLUE_GEN={sel.generated_dir}"))
    return dict(
        line.split(" ", 1)
        for line in out.splitlines()
        if line[:5] in ("BANNE", "BOOTL", "PING ", "INFER", "HELLO", "TARGE", "RESUL", "FLUSH",
                        "PROFI", "LINK ")
    )


def _results(values: list[int], zero_point: int, scale: float, mean: float, tscale: float) -> str:
    """The `m-results-[...]` line the core prints for int8 `values` (target units, 3 dp)."""
    return "m-results-[" + ",".join(
        f"{mean + tscale * (v - zero_point) * scale:.3f}" for v in values) + "]"


def test_arduino_glue_runs_generated_model_through_runner_and_core(
    sm: ModuleType, registry: Path, tmp_path: Path
) -> None:
    lines = _run_glue(sm, registry, tmp_path / "build", "v0010")
    assert (
        lines["BANNER"] == "tinyship ready proto=2 fw=0.1.0 model=v0010 board=esp32s3 selftest=pass"
    )
    assert "BOOTLOG" not in lines
    assert lines["PING"] == "ok"
    assert lines["INFER"] == "cmd=83 out=" + ",".join(map(str, _stub_model([1, 2, 3, 4])))
    assert lines["HELLO"] == (
        f"model=v0010 board=esp32s3 crc_ok=1 arena_used={IN_SIZE + OUT_SIZE} "
        "arena_size=2048 selftest=0"
    )
    # Model files without target-unit macros (generated before them): identity.
    assert lines["TARGET"] == "mean=0 scale=1"
    # The stub Arduino is neither the mbed core (USB CDC) nor an ESP32 (UART0): main.cpp
    # cannot tell what Serial is, so INFO carries no link tag.
    assert lines["LINK"] == "none"
    assert lines["RESULTS"] == _results(_stub_model([1, 2, 3, 4]), 2, 0.25, 0.0, 1.0)
    # main.cpp gives the core Serial.flush(): called before each of the two timestamps.
    assert lines["FLUSHES"] == "2"
    assert lines["PROFILE"] == "m-model-[ad01]"


def test_arduino_glue_reports_the_configured_mlperf_model(
    sm: ModuleType, registry: Path, tmp_path: Path
) -> None:
    lines = _run_glue(sm, registry, tmp_path / "build", "v0010", TINYSHIP_MLPERF_MODEL="vww01")
    assert lines["PROFILE"] == "m-model-[vww01]"
    assert lines["BANNER"].startswith("tinyship ready proto=2 fw=0.1.0 model=v0010 ")


def test_arduino_glue_refuses_inference_when_model_crc_is_wrong(
    sm: ModuleType, tmp_path: Path
) -> None:
    reg = tmp_path / "models"
    _write_version(reg, "v0001", "tflm-current")
    data_cc = reg / "v0001/firmware/tinyship_model_data.cc"
    data_cc.write_text(data_cc.read_text().replace("{1, 2, 3,", "{1, 2, 4,", 1))  # flash corruption
    lines = _run_glue(sm, reg, tmp_path / "build", "v0001")
    assert lines["BOOTLOG"] == "tinyship: model runner: model crc mismatch"
    assert lines["BANNER"].endswith("selftest=not-run")
    assert lines["INFER"] == "cmd=ff out="
    assert "crc_ok=0" in lines["HELLO"]


def test_arduino_glue_compiles_and_runs_files_from_the_host_generator(
    sm: ModuleType, tmp_path: Path
) -> None:
    """Contract check: files rendered by tinyship.convert.carray (GENERATED_MODEL_FILES.md)
    build with select_model.py, the runner and main.cpp, and pass the boot self-test."""
    carray = pytest.importorskip("tinyship.convert.carray")
    info_mod = pytest.importorskip("tinyship.convert.tflite_info")
    import numpy as np

    model = bytes(range(256)) * 3
    tin = info_mod.TensorInfo("in", [1, IN_SIZE], "int8", 0.5, -1)
    tout = info_mod.TensorInfo("out", [1, OUT_SIZE], "int8", 0.25, 2)
    info = info_mod.ModelInfo(
        ops=["FULLY_CONNECTED", "RELU"],
        inputs=[tin],
        outputs=[tout],
        per_channel_dense=0,
        size_bytes=len(model),
        macs=0,
    )
    export = carray.ExportInputs(
        version="v0005",
        profile="tflm-arduino-2023",
        arena_bytes=2048,
        feature_mean=[0.0] * IN_SIZE,
        feature_std=[1.0] * IN_SIZE,
        golden_inputs=np.array(GOLDEN_IN, dtype=np.int8),
        golden_outputs=np.array([_stub_model(row) for row in GOLDEN_IN], dtype=np.int8),
        target_mean=60.0,
        target_scale=8.0,
    )
    reg = tmp_path / "models"
    vdir = reg / "v0005"
    carray.write_c_files(vdir / "firmware", model, info, export)
    (vdir / "manifest.json").write_text(
        json.dumps(
            {
                "version": "v0005",
                "profile": "tflm-arduino-2023",
                "model": {
                    "sha256": hashlib.sha256(model).hexdigest(),
                    "crc32": zlib.crc32(model),
                    "arena_bytes": 2048,
                },
            }
        )
    )
    lines = _run_glue(sm, reg, tmp_path / "build", "v0005")
    assert lines["BANNER"] == (
        "tinyship ready proto=2 fw=0.1.0 model=v0005 board=esp32s3 selftest=pass"
    )
    assert "crc_ok=1" in lines["HELLO"] and "selftest=0" in lines["HELLO"]
    # main.cpp passes the header's target units to the core: INFO and MLPerf results%.
    assert lines["TARGET"] == "mean=60 scale=8"
    assert lines["RESULTS"] == _results(_stub_model([1, 2, 3, 4]), 2, 0.25, 60.0, 8.0)


def test_protocol_md_documents_every_mlperf_and_text_error_line() -> None:
    source = "\n".join((CORE_DIR / name).read_text() for name in CORE_CPP)
    doc = PROTOCOL.read_text()
    literals = re.findall(r'"((?:e|m)-[^"\\]*)', source)
    assert len(literals) > 20
    for literal in literals:
        stem = literal.split("\\r")[0]
        if stem in ("m-", "e-"):
            continue
        assert stem in doc, f"MLPerf line {stem!r} is not documented in PROTOCOL.md"
