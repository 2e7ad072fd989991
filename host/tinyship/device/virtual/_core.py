"""ctypes bindings to the firmware's portable core (`firmware/lib/tinyship_core`).

The virtual board runs the very C++ the boards run, compiled for the host as a shared
library; nothing of the protocol is re-implemented in Python. The library is found in this
order:

1. `$TINYSHIP_CORE_LIB` (a path to a built `libtinyship_core.so`);
2. a cache folder keyed by the SHA-256 of the core's sources,
   `$TINYSHIP_CACHE_DIR` or `$XDG_CACHE_HOME/tinyship` or `~/.cache/tinyship`, then
   `core-<hash16>/libtinyship_core.so`; built there on demand with the system C++ compiler
   (`$CXX`, else `c++`) and the flags of `firmware/Makefile`'s `lib` target.

A cache keyed by the sources' hash never serves a stale library after the core changes, and
does not touch `firmware/build/` (which `make` owns).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tinyship.errors import BuildError, DeviceError

# --- constants from tinyship_core.h (tests check them against the header) -------------------
TS_MAX_PAYLOAD = 1024
TS_HEADER_SIZE = 5
TS_CRC_SIZE = 4
TS_MAX_PACKET = TS_HEADER_SIZE + TS_MAX_PAYLOAD + TS_CRC_SIZE
TS_MAX_WIRE_FRAME = TS_MAX_PACKET + TS_MAX_PACKET // 254 + 1 + 2
TS_SEQ_UNKNOWN = 0xFFFF
TS_OK = 0
TS_ERR_BAD_CRC = 1
TS_ERR_INFERENCE_FAILED = 6
TS_ERR_STORAGE = 15
TS_CRC_MISMATCH = 0
TS_CRC_OK = 1
TS_STORAGE_KEY_BOOT_COUNT = 1
TS_RESET_POWER_ON = 1
TS_RESET_PIN = 2
TS_RESET_WATCHDOG = 3
TS_RESET_SOFTWARE = 4
TS_RESET_BROWNOUT = 5
TS_ERR_MODEL_INVALID = 10
TS_RUNNING_FACTORY = 0
TS_RUNNING_SLOT_A = 1
TS_RUNNING_SLOT_B = 2
TS_RUNNING_CONFIRMED = 0
TS_RUNNING_TRIAL = 1
#: The virtual board's TS_MAX_INPUT_BYTES (a build setting of the core): the board envs'
#: value in platformio.ini, the MLPerf vision input 96x96x3 (tests check they agree).
TS_MAX_INPUT_BYTES = 27648

#: The core's translation units (firmware/Makefile's CORE_FILES; tests check they agree) and
#: its headers: all compiled into one library, all hashed into the cache key.
CORE_CPP = (
    "tinyship_core.cpp", "tinyship_core_output.cpp", "tinyship_core_framing.cpp",
    "tinyship_core_commands.cpp", "tinyship_core_text.cpp", "tinyship_core_mlperf.cpp",
    "tinyship_core_stats.cpp", "tinyship_core_slots.cpp", "ts_slot_store.cpp",
    "ts_slot_state.cpp", "ts_slot_image.cpp",
)
CORE_HEADERS = ("tinyship_core.h", "tinyship_core_internal.h", "ts_flash.h", "ts_slot_store.h",
                "ts_slot_state.h", "ts_slot_image.h")
_SOURCES = (*CORE_CPP, *CORE_HEADERS)
_CXX_FLAGS = (
    "-std=c++17", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wconversion",
    "-fno-exceptions", "-fno-rtti", "-O2", "-fPIC", "-shared",
    f"-DTS_MAX_INPUT_BYTES={TS_MAX_INPUT_BYTES}u",
)
LIB_NAME = "libtinyship_core.so"


def repo_root() -> Path:
    """The checkout this package lives in (host/tinyship/device/virtual -> repo)."""
    return Path(__file__).resolve().parents[4]


def core_source_dir() -> Path:
    return repo_root() / "firmware" / "lib" / "tinyship_core" / "src"


def cache_dir() -> Path:
    env = os.environ.get("TINYSHIP_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tinyship"


def sources_hash(src_dir: Path | None = None) -> str:
    """SHA-256 over the core's sources (names and contents) and the compile flags."""
    src_dir = src_dir or core_source_dir()
    h = hashlib.sha256()
    for name in _SOURCES:
        p = src_dir / name
        if not p.is_file():
            raise BuildError(
                f"firmware core source missing: {p}",
                hint="the virtual board needs firmware/lib/tinyship_core/src from this checkout",
            )
        h.update(name.encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(" ".join(_CXX_FLAGS).encode())
    return h.hexdigest()


def build_core_lib(src_dir: Path | None = None, out_dir: Path | None = None) -> Path:
    """Path of a host build of the core for the current sources, compiling it if needed.

    Concurrent callers (pytest-xdist, several emulators) serialise on a lock file; the
    library is compiled to a temporary name and renamed into place, so a reader never loads
    a half-written file.
    """
    src_dir = src_dir or core_source_dir()
    digest = sources_hash(src_dir)
    out_dir = out_dir or cache_dir() / f"core-{digest[:16]}"
    lib = out_dir / LIB_NAME
    if lib.is_file():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    cxx = os.environ.get("CXX") or "c++"
    if shutil.which(cxx) is None:
        raise BuildError(
            f"no C++ compiler '{cxx}' to build the firmware core for the virtual board",
            hint="install g++ (apt-get install g++) or set $TINYSHIP_CORE_LIB to a built "
            "libtinyship_core.so (make -C firmware lib)",
        )
    with (out_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if lib.is_file():
            return lib
        fd, tmp = tempfile.mkstemp(prefix=f".{LIB_NAME}.", dir=out_dir)
        os.close(fd)
        cmd = [cxx, *_CXX_FLAGS, *(str(src_dir / name) for name in CORE_CPP), "-o", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise BuildError(
                    f"compiling the firmware core failed ({' '.join(cmd)}):\n"
                    f"{proc.stderr.strip()[-2000:]}"
                )
            os.replace(tmp, lib)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return lib


def find_core_lib() -> Path:
    env = os.environ.get("TINYSHIP_CORE_LIB")
    if env:
        p = Path(env)
        if not p.is_file():
            raise BuildError(f"$TINYSHIP_CORE_LIB points to a missing file: {p}")
        return p
    return build_core_lib()


# --- C types --------------------------------------------------------------------------------
WriteFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8),
                           ctypes.c_size_t)
MicrosFn = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)
InferFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int8),
                           ctypes.c_size_t, ctypes.POINTER(ctypes.c_int8), ctypes.c_size_t)
StorageReadFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32,
                                 ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t)
StorageWriteFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32,
                                  ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t)
FlushFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class ModelIO(ctypes.Structure):
    """`ts_model_io_t` (platform.load_model fills it)."""

    _fields_ = [
        ("input_shape", ctypes.c_int32 * 8),
        ("output_shape", ctypes.c_int32 * 8),
        ("input_rank", ctypes.c_uint32),
        ("output_rank", ctypes.c_uint32),
        ("arena_used", ctypes.c_uint32),
    ]


LoadModelFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8),
                               ctypes.c_size_t, ctypes.POINTER(ModelIO))
ResetFn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
FlashEraseFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32)
FlashProgramFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32,
                                  ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint8),
                                  ctypes.c_uint32)
FlashMapFn = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32)


class Flash(ctypes.Structure):
    """`ts_flash_t` (ts_flash.h)."""

    _fields_ = [
        ("user", ctypes.c_void_p),
        ("sector_size", ctypes.c_uint32),
        ("program_unit", ctypes.c_uint32),
        ("slot_size", ctypes.c_uint32),
        ("erase_sector_us", ctypes.c_uint32),
        ("program_chunk_us", ctypes.c_uint32),
        ("erase", FlashEraseFn),
        ("program", FlashProgramFn),
        ("map", FlashMapFn),
    ]


class Platform(ctypes.Structure):
    _fields_ = [
        ("user", ctypes.c_void_p),
        ("write", WriteFn),
        ("micros", MicrosFn),
        ("infer", InferFn),
        ("storage_read", StorageReadFn),
        ("storage_write", StorageWriteFn),
        ("flush", FlushFn),
        ("load_model", LoadModelFn),
        ("reset", ResetFn),
    ]


class Config(ctypes.Structure):
    _fields_ = [
        ("firmware_version", ctypes.c_char_p),
        ("model_version", ctypes.c_char_p),
        ("model_sha256", ctypes.c_char_p),
        ("profile", ctypes.c_char_p),
        ("board", ctypes.c_char_p),
        ("git_commit", ctypes.c_char_p),
        ("build_time", ctypes.c_char_p),
        ("input_size", ctypes.c_uint32),
        ("output_size", ctypes.c_uint32),
        ("input_shape", ctypes.POINTER(ctypes.c_int32)),
        ("output_shape", ctypes.POINTER(ctypes.c_int32)),
        ("input_rank", ctypes.c_uint32),
        ("output_rank", ctypes.c_uint32),
        ("input_scale", ctypes.c_float),
        ("output_scale", ctypes.c_float),
        ("input_zero_point", ctypes.c_int32),
        ("output_zero_point", ctypes.c_int32),
        ("target_mean", ctypes.c_float),
        ("target_scale", ctypes.c_float),
        ("arena_size", ctypes.c_uint32),
        ("arena_used", ctypes.c_uint32),
        ("model_crc32", ctypes.c_uint32),
        ("model_crc_check", ctypes.c_uint32),
        ("boot_count", ctypes.c_uint32),
        ("reset_reason", ctypes.c_uint32),
        ("golden_inputs", ctypes.POINTER(ctypes.c_int8)),
        ("golden_outputs", ctypes.POINTER(ctypes.c_int8)),
        ("golden_count", ctypes.c_uint32),
        ("golden_tolerance_lsb", ctypes.c_uint32),
        ("mlperf_model", ctypes.c_char_p),
        ("device_id", ctypes.POINTER(ctypes.c_uint8)),
        ("device_id_len", ctypes.c_uint32),
        ("flash", ctypes.POINTER(Flash)),
        ("factory_model", ctypes.POINTER(ctypes.c_uint8)),
        ("factory_model_len", ctypes.c_uint32),
        ("ops", ctypes.POINTER(ctypes.c_uint16)),
        ("n_ops", ctypes.c_uint32),
    ]


class Link(ctypes.Structure):
    """`ts_link_t` (ts_core_set_link)."""

    _fields_ = [
        ("kind", ctypes.c_uint32),
        ("baud", ctypes.c_uint32),
        ("rx_window", ctypes.c_uint32),
    ]


class SelfTest(ctypes.Structure):
    _fields_ = [
        ("status", ctypes.c_uint32),
        ("vectors", ctypes.c_uint32),
        ("failed_vector", ctypes.c_uint32),
        ("max_diff_lsb", ctypes.c_uint32),
    ]


class Stats(ctypes.Structure):
    _fields_ = [
        ("inference_count", ctypes.c_uint32),
        ("latency_min_us", ctypes.c_uint32),
        ("latency_mean_us", ctypes.c_uint32),
        ("latency_max_us", ctypes.c_uint32),
        ("frames_ok", ctypes.c_uint32),
        ("errors", ctypes.c_uint32 * 16),
    ]


_LIB: ctypes.CDLL | None = None


def load_core() -> ctypes.CDLL:
    """The core library, loaded once per process with argument types declared."""
    global _LIB
    if _LIB is not None:
        return _LIB
    path = find_core_lib()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise BuildError(f"cannot load the firmware core {path}: {e}") from e
    u8p = ctypes.POINTER(ctypes.c_uint8)
    sz = ctypes.c_size_t
    lib.ts_core_size.restype = sz
    lib.ts_core_size.argtypes = []
    lib.ts_core_init.restype = ctypes.c_int
    lib.ts_core_init.argtypes = [ctypes.c_void_p, sz, ctypes.POINTER(Config),
                                 ctypes.POINTER(Platform), ctypes.POINTER(ctypes.c_void_p)]
    lib.ts_core_feed.restype = ctypes.c_int
    lib.ts_core_feed.argtypes = [ctypes.c_void_p, u8p, sz]
    lib.ts_core_get_stats.restype = ctypes.c_int
    lib.ts_core_get_stats.argtypes = [ctypes.c_void_p, ctypes.POINTER(Stats)]
    lib.ts_core_get_self_test.restype = ctypes.c_int
    lib.ts_core_get_self_test.argtypes = [ctypes.c_void_p, ctypes.POINTER(SelfTest)]
    lib.ts_core_set_arena_used.restype = ctypes.c_int
    lib.ts_core_set_arena_used.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.ts_core_set_link.restype = ctypes.c_int
    lib.ts_core_set_link.argtypes = [ctypes.c_void_p, ctypes.POINTER(Link)]
    lib.ts_core_get_running.restype = ctypes.c_int
    lib.ts_core_get_running.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32),
                                        ctypes.POINTER(ctypes.c_uint32)]
    lib.ts_status_str.restype = ctypes.c_char_p
    lib.ts_status_str.argtypes = [ctypes.c_int]
    lib.ts_crc32.restype = ctypes.c_uint32
    lib.ts_crc32.argtypes = [ctypes.c_uint32, u8p, sz]
    lib.ts_frame_encode.restype = ctypes.c_int
    lib.ts_frame_encode.argtypes = [ctypes.c_uint8, ctypes.c_uint16, u8p, sz, u8p, sz,
                                    ctypes.POINTER(sz)]
    lib.ts_frame_decode.restype = ctypes.c_int
    lib.ts_frame_decode.argtypes = [u8p, sz, ctypes.POINTER(ctypes.c_uint8),
                                    ctypes.POINTER(ctypes.c_uint16), u8p, sz,
                                    ctypes.POINTER(sz)]
    _LIB = lib
    return lib


def _buf(data: bytes) -> Any:
    return (ctypes.c_uint8 * max(1, len(data))).from_buffer_copy(data or b"\0")


def status_str(code: int) -> str:
    raw: bytes = load_core().ts_status_str(code)
    return raw.decode()


def crc32(data: bytes) -> int:
    """CRC-32 (zlib) computed by the core's own implementation."""
    return int(load_core().ts_crc32(0, _buf(data), len(data)))


def frame_encode(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    """A complete wire frame `00 COBS(packet) 00`, built by the core's codec."""
    out = (ctypes.c_uint8 * TS_MAX_WIRE_FRAME)()
    n = ctypes.c_size_t(0)
    st = load_core().ts_frame_encode(cmd, seq, _buf(payload), len(payload), out,
                                     TS_MAX_WIRE_FRAME, ctypes.byref(n))
    if st != TS_OK:
        raise DeviceError(f"ts_frame_encode failed: {status_str(st)}")
    return bytes(out[: n.value])


def frame_decode(body: bytes) -> tuple[int, int, int, bytes]:
    """Decode the bytes between two 0x00 delimiters: (status, cmd, seq, payload)."""
    cmd = ctypes.c_uint8(0)
    seq = ctypes.c_uint16(0)
    out = (ctypes.c_uint8 * TS_MAX_PAYLOAD)()
    n = ctypes.c_size_t(0)
    st = load_core().ts_frame_decode(_buf(body), len(body), ctypes.byref(cmd),
                                     ctypes.byref(seq), out, TS_MAX_PAYLOAD, ctypes.byref(n))
    return int(st), int(cmd.value), int(seq.value), bytes(out[: n.value])
