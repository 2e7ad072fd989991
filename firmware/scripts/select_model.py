"""PlatformIO pre-build step: choose the registry model version to embed.

Run by PlatformIO (``extra_scripts = pre:firmware/scripts/select_model.py``) and,
for tests, imported as a plain module: every decision lives in a function that
takes its inputs as arguments; only :func:`_run_in_scons` at the bottom touches
SCons.

* model version: env ``TINYSHIP_MODEL`` (a version such as ``v0003``, an alias
  name or ``latest``), else the registry's ``production`` alias, else the newest version;
* registry: env ``TINYSHIP_REGISTRY``, default ``models/`` at the project root;
* the env's TFLM library (``lib_deps``, or ``espressif/esp-tflite-micro`` in the
  ESP-IDF manifest ``idf_component.yml``) must be a release in the table of checked
  libraries (``host/tinyship/tflm_libraries.py``, loaded by path: :func:`check_library`),
  pinned exactly, checked on the env's board, and run at least the profile
  ``custom_tinyship_profile`` claims;
* the env's ``custom_tinyship_profile`` must accept the model's profile
  (``tflm-arduino-2023`` envs accept only ``tflm-arduino-2023`` models,
  ``tflm-current`` envs accept both);
* the three generated model files are checked against the manifest's SHA-256
  (its ``artifacts`` map), copied into ``<build>/tinyship_generated/``
  and ``tinyship_version.h`` is written next to them;
* MLPerf model name (``profile%`` answers ``m-model-[NAME]``): env
  ``TINYSHIP_MLPERF_MODEL`` (``tinyship build`` sets it from the config), else
  ``[board] mlperf_model`` of the project's ``tinyship.toml``, else ``ad01``;
* the op resolver (``tinyship_runner_config.h``): the operators of every model family
  tinyship trains, or the env's ``custom_tinyship_ops`` list, plus the embedded model's,
  minus none the env's profile excludes (refused instead), their TFLite operator ids, and
  the tensor arena (the model's, or ``custom_tinyship_arena_bytes`` when larger);
* model slots (``tinyship_slots_config.h``): ``custom_tinyship_slot_bytes`` per env, refused
  when the board has no flash HAL, the board's flash (its firmware region, or the ESP32
  partition ``tsslots`` of ``board_build.partitions``) cannot hold two slots, or the
  embedded model's slot image does not fit one slot (firmware/README.md, "Model slots on
  the boards").
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

try:  # Python >= 3.11; PlatformIO may run an older interpreter
    import tomllib
except ImportError:  # pragma: no cover
    tomllib = None  # type: ignore[assignment]

PROTOCOL_VERSION = 2
PROFILE_ARDUINO_2023 = "tflm-arduino-2023"
PROFILE_CURRENT = "tflm-current"
#: env profile -> model profiles its TFLM library computes correctly.
COMPATIBLE_PROFILES: Mapping[str, frozenset[str]] = {
    PROFILE_ARDUINO_2023: frozenset({PROFILE_ARDUINO_2023}),
    PROFILE_CURRENT: frozenset({PROFILE_ARDUINO_2023, PROFILE_CURRENT}),
}
PROFILE_REASONS: Mapping[str, str] = {
    PROFILE_ARDUINO_2023: (
        "its FullyConnected kernel reads one weight scale per tensor (TFLM synced up to"
        " 2023-01, esp-tflite-micro before 1.3.4), so per-channel quantized Dense"
        " (FullyConnected) layers are silently miscomputed"
    ),
    PROFILE_CURRENT: "its FullyConnected kernel supports per-channel quantized Dense layers",
}
MODEL_FILES = ("tinyship_model_data.h", "tinyship_model_data.cc", "tinyship_model_ops.h")
VERSION_HEADER = "tinyship_version.h"
GENERATED_DIR = "tinyship_generated"
DEFAULT_ALIAS = "production"
_VERSION_RE = re.compile(r"^v\d{4,}$")
_SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
)
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
#: ``TS_MLPERF_MODEL_DEFAULT`` of the core and ``BoardSection.mlperf_model``'s default.
DEFAULT_MLPERF_MODEL = "ad01"
#: Names the core accepts (``tinyship.config.MLPERF_MODEL_PATTERN``; tests check they agree).
MLPERF_MODEL_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
PROJECT_CONFIG = "tinyship.toml"


class SelectModelError(Exception):
    """A build-stopping problem, with a message meant for the person building."""


class ModelVersion(NamedTuple):
    """One registry version as the firmware build needs it."""

    version: str
    directory: Path
    profile: str
    sha256: str
    crc32: int
    arena_bytes: int
    #: relative path -> SHA-256 from the manifest; None for a hand-written manifest without one
    artifacts: Mapping[str, str] | None = None
    #: manifest ``model.ops`` (builtin operator names); None when the manifest has none
    ops: tuple[str, ...] | None = None


class BuildSelection(NamedTuple):
    """What the pre-build step chose and wrote."""

    model: ModelVersion
    generated_dir: Path
    files: tuple[Path, ...]
    version_header: Path
    #: ``tinyship_runner_config.h`` (op resolver, arena) and ``tinyship_slots_config.h``
    runner_config: Path | None = None
    slots_config: Path | None = None
    #: the operators the op resolver registers, in registration order
    ops: tuple[str, ...] = ()
    #: bytes of one model slot; 0 without slots
    slot_bytes: int = 0


def registry_dir(project_dir: Path, environ: Mapping[str, str]) -> Path:
    """Registry directory: ``TINYSHIP_REGISTRY`` (relative to the project) or ``models/``."""
    value = environ.get("TINYSHIP_REGISTRY", "").strip()
    path = Path(value) if value else Path("models")
    return path if path.is_absolute() else project_dir / path


def list_versions(registry: Path) -> list[str]:
    """Version directories (``vNNNN``) with a manifest, oldest first."""
    if not registry.is_dir():
        return []
    found = [
        p.name
        for p in registry.iterdir()
        if p.is_dir() and _VERSION_RE.match(p.name) and (p / "manifest.json").is_file()
    ]
    return sorted(found, key=lambda name: int(name[1:]))


def read_aliases(registry: Path) -> dict[str, str]:
    """``aliases.json`` as a dict; empty when the file is absent."""
    path = registry / "aliases.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SelectModelError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise SelectModelError(f"{path} must map alias names to version strings")
    return dict(data)


def resolve_version(registry: Path, requested: str | None) -> str:
    """Choose the version as ``Registry.resolve`` does: ``requested`` (version, alias or
    ``latest``), else the production alias, else the newest version."""
    versions = list_versions(registry)
    if not versions:
        raise SelectModelError(
            f"no model versions in registry {registry} (expected {registry}/vNNNN/manifest.json);"
            " train one with `tinyship train` or set TINYSHIP_REGISTRY"
        )
    aliases = read_aliases(registry)
    wanted = (requested or "").strip()
    if wanted == "latest":
        return versions[-1]
    if wanted:
        version = aliases.get(wanted, wanted)
        source = f"TINYSHIP_MODEL={wanted}"
    elif DEFAULT_ALIAS in aliases:
        version = aliases[DEFAULT_ALIAS]
        source = f"alias '{DEFAULT_ALIAS}'"
    else:
        return versions[-1]
    if version not in versions:
        raise SelectModelError(
            f"{source} names model version '{version}', which is not in registry {registry}"
            f" (available: {', '.join(versions)}; aliases: {', '.join(sorted(aliases)) or 'none'})"
        )
    return version


def load_model(registry: Path, version: str) -> ModelVersion:
    """Read and check ``<registry>/<version>/manifest.json``."""
    directory = registry / version
    path = directory / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SelectModelError(f"cannot read {path}: {exc}") from exc
    try:
        model = manifest["model"]
        profile = manifest["profile"]
        sha256 = model["sha256"]
        crc32 = model["crc32"]
        arena = model["arena_bytes"]
        declared = manifest["version"]
    except (KeyError, TypeError) as exc:
        raise SelectModelError(f"{path} lacks required key {exc}") from exc
    if declared != version:
        raise SelectModelError(f"{path} says version '{declared}' but lives in '{version}/'")
    if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
        raise SelectModelError(f"{path}: model.sha256 must be 64 lowercase hex characters")
    if isinstance(crc32, str):
        try:
            crc32 = int(crc32, 0)
        except ValueError as exc:
            raise SelectModelError(f"{path}: model.crc32 is not an integer") from exc
    if not isinstance(crc32, int) or isinstance(crc32, bool) or not 0 <= crc32 <= 0xFFFFFFFF:
        raise SelectModelError(f"{path}: model.crc32 must be a 32-bit unsigned integer")
    if not isinstance(arena, int) or isinstance(arena, bool) or arena <= 0:
        raise SelectModelError(f"{path}: model.arena_bytes must be a positive integer")
    if not isinstance(profile, str):
        raise SelectModelError(f"{path}: profile must be a string")
    artifacts = manifest.get("artifacts")
    if artifacts is not None and not isinstance(artifacts, dict):
        raise SelectModelError(f"{path}: artifacts must map file names to SHA-256 digests")
    ops = model.get("ops") if isinstance(model, dict) else None
    if ops is not None and (not isinstance(ops, list)
                            or not all(isinstance(o, str) for o in ops)):
        raise SelectModelError(f"{path}: model.ops must be a list of operator names")
    return ModelVersion(version, directory, profile, sha256, crc32, arena, artifacts,
                        tuple(ops) if ops is not None else None)


def check_sha256(model: ModelVersion, path: Path, data: bytes) -> None:
    """Refuse a file whose bytes differ from the manifest's SHA-256, so a damaged registry
    version never reaches a board (this script cannot import tinyship to do it)."""
    if model.artifacts is None:
        return
    rel = path.relative_to(model.directory).as_posix()
    expected, got = model.artifacts.get(rel), hashlib.sha256(data).hexdigest()
    if expected is None:
        raise SelectModelError(
            f"{model.version}/{rel} is not listed in {model.version}/manifest.json; restore"
            " the version from a backup or retrain")
    if expected != got:
        raise SelectModelError(
            f"{model.version}/{rel} is damaged: SHA-256 mismatch (expected {expected}, got"
            f" {got}); restore it from a backup or retrain"
        )


# --------------------------------------------------------------- TFLM libraries --
#: tinyship's table of TFLM library releases and the check (standard library only).
LIBRARY_TABLE = "host/tinyship/tflm_libraries.py"


def library_table(project_dir: Path) -> Any:
    """``host/tinyship/tflm_libraries.py``, loaded by path: this script runs in PlatformIO's
    Python, which cannot import tinyship, and that module needs only the standard library,
    so the build and ``tinyship build`` share one table and one check."""
    path = project_dir / LIBRARY_TABLE
    name = "tinyship_tflm_libraries"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SelectModelError(f"cannot load the TFLM library table {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def check_library(project_dir: Path, env_spec: Any) -> str:
    """Run the table's check on the env; returns the pinned release's label for messages."""
    libs = library_table(project_dir)
    try:
        libs.check_env(env_spec)
    except libs.LibraryCheckError as exc:
        raise SelectModelError(str(exc)) from None
    return str(libs.env_pins(env_spec)[0].label)


def check_profile(
    env_name: str, env_profile: str, model: ModelVersion, library: str | None = None
) -> None:
    """Refuse a model quantized for a profile the env's TFLM library (``library``, its
    release as :func:`check_library` found it, named in the message) cannot run correctly."""
    if env_profile not in COMPATIBLE_PROFILES:
        raise SelectModelError(
            f"env '{env_name}': custom_tinyship_profile = '{env_profile}' is not a known profile"
            f" (known: {', '.join(sorted(COMPATIBLE_PROFILES))})"
        )
    if model.profile not in COMPATIBLE_PROFILES:
        raise SelectModelError(
            f"model {model.version} has unknown profile '{model.profile}'"
            f" (known: {', '.join(sorted(COMPATIBLE_PROFILES))})"
        )
    if model.profile not in COMPATIBLE_PROFILES[env_profile]:
        raise SelectModelError(
            f"refusing to build env '{env_name}' with model {model.version}: the model was"
            f" quantized for profile '{model.profile}' but this env's TFLM library"
            f"{f' ({library})' if library else ''} has profile"
            f" '{env_profile}' ({PROFILE_REASONS[env_profile]}). Build a board env with profile"
            f" '{model.profile}', or train a model with profile '{env_profile}'"
            f" (tinyship train --profile {env_profile})."
        )


def _header_string(header: str, name: str) -> str | None:
    match = re.search(rf'^\s*#define\s+{name}\s+"([^"]*)"', header, re.MULTILINE)
    return match.group(1) if match else None


def check_model_files(model: ModelVersion) -> tuple[Path, ...]:
    """The three generated files exist and agree with the manifest."""
    firmware_dir = model.directory / "firmware"
    paths = tuple(firmware_dir / name for name in MODEL_FILES)
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise SelectModelError(
            f"model {model.version} lacks generated firmware files {', '.join(missing)}"
            f" in {firmware_dir}"
        )
    header = paths[0].read_text(encoding="utf-8", errors="replace")
    for macro, expected in (
        ("TINYSHIP_MODEL_VERSION", model.version),
        ("TINYSHIP_MODEL_SHA256", model.sha256),
        ("TINYSHIP_MODEL_PROFILE", model.profile),
    ):
        found = _header_string(header, macro)
        if found is not None and found != expected:
            raise SelectModelError(
                f'{paths[0]} defines {macro} "{found}" but the manifest says "{expected}":'
                " the generated files are stale; regenerate the model version"
            )
    return paths


# ------------------------------------------------------------------ op resolver --
#: TFLite builtin operator -> its MicroMutableOpResolver method: the operators the
#: generated files can register (``tinyship.convert.carray.RESOLVER_METHODS``; this script
#: cannot import tinyship, tests/test_slot_build.py keeps the two equal).
RESOLVER_METHODS: Mapping[str, str] = {
    "FULLY_CONNECTED": "AddFullyConnected",
    "CONV_2D": "AddConv2D",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "RESHAPE": "AddReshape",
    "EXPAND_DIMS": "AddExpandDims",
    "SQUEEZE": "AddSqueeze",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "TANH": "AddTanh",
    "LOGISTIC": "AddLogistic",
    "SOFTMAX": "AddSoftmax",
    "QUANTIZE": "AddQuantize",
    "DEQUANTIZE": "AddDequantize",
    "MAX_POOL_2D": "AddMaxPool2D",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "MEAN": "AddMean",
    "ADD": "AddAdd",
    "MUL": "AddMul",
}
#: TFLite ``BuiltinOperator`` numbers (schema.fbs) of those operators: the ids the firmware
#: reports (``ts_config_t.ops``) and a slot image lists (``tinyship.device.slot_image.OP_IDS``;
#: tests keep them equal).
OP_IDS: Mapping[str, int] = {
    "ADD": 0, "AVERAGE_POOL_2D": 1, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 4, "DEQUANTIZE": 6,
    "FULLY_CONNECTED": 9, "LOGISTIC": 14, "MAX_POOL_2D": 17, "MUL": 18, "RELU": 19,
    "RELU6": 21, "RESHAPE": 22, "SOFTMAX": 25, "TANH": 28, "MEAN": 40, "SQUEEZE": 43,
    "EXPAND_DIMS": 70, "QUANTIZE": 114,
}
#: Operators a profile's TFLM libraries compute differently from the host reference, so a
#: board of that profile must not register them (``tinyship.profiles``: the operators its
#: ``supported_ops`` leaves out; tests keep them equal).
PROFILE_EXCLUDED_OPS: Mapping[str, frozenset[str]] = {
    PROFILE_ARDUINO_2023: frozenset({"MEAN"}),
    PROFILE_CURRENT: frozenset(),
}
#: The operators of every model family tinyship trains (``tinyship.train.model``: ``mlp``
#: and ``conv1d``, activation relu/relu6/tanh, a linear regression output or a softmax
#: classifier), so a retrained model of any family installs into a slot without a
#: firmware rebuild. Measured with TensorFlow's converter (tests/test_slot_build.py converts
#: each family and activation): mlp gives FULLY_CONNECTED (+ TANH, + SOFTMAX), conv1d
#: RESHAPE, CONV_2D, FULLY_CONNECTED (+ TANH, + SOFTMAX); relu and relu6 are fused. RELU,
#: RELU6 (an activation the converter leaves unfused), EXPAND_DIMS and SQUEEZE (the
#: Conv1D lowering of other TensorFlow releases) are registered too: a few hundred bytes
#: of kernel each.
FAMILY_OPS: tuple[str, ...] = (
    "FULLY_CONNECTED", "CONV_2D", "RESHAPE", "EXPAND_DIMS", "SQUEEZE", "RELU", "RELU6",
    "TANH", "SOFTMAX",
)
#: ``custom_tinyship_ops``: op names and/or this word (FAMILY_OPS); unset means this word.
OPS_OPTION = "custom_tinyship_ops"
OPS_FAMILIES = "families"
#: ``custom_tinyship_arena_bytes``: the tensor arena when larger than the embedded model's.
ARENA_OPTION = "custom_tinyship_arena_bytes"
RUNNER_CONFIG = "tinyship_runner_config.h"
_METHOD_CALL_RE = re.compile(r"resolver\.(Add\w+)\(\)")


def model_ops(model: ModelVersion, ops_header: Path) -> tuple[str, ...]:
    """The embedded model's operators: manifest ``model.ops``, else the ``Add*`` calls of
    its generated ``tinyship_model_ops.h`` (hand-written versions)."""
    if model.ops is not None:
        return model.ops
    by_method = {method: name for name, method in RESOLVER_METHODS.items()}
    text = ops_header.read_text(encoding="utf-8", errors="replace")
    found = []
    for method in _METHOD_CALL_RE.findall(text):
        if method not in by_method:
            raise SelectModelError(f"{ops_header} calls resolver.{method}(), an operator this"
                                   " firmware cannot register")
        if by_method[method] not in found:
            found.append(by_method[method])
    return tuple(found)


def resolver_ops(env_name: str, env_profile: str, option: str | None,
                 model: ModelVersion, embedded: Sequence[str]) -> tuple[str, ...]:
    """The operators the op resolver registers: the embedded model's (first, in its order),
    then ``option``'s (comma or space separated names, ``families`` for FAMILY_OPS; unset:
    ``families``). An unknown name, or one the env's profile excludes, is refused."""
    words = [w for w in re.split(r"[\s,]+", option or "") if w] or [OPS_FAMILIES]
    wanted: list[str] = []
    for word in words:
        names = FAMILY_OPS if word.lower() == OPS_FAMILIES else (word.upper(),)
        for name in names:
            if name not in RESOLVER_METHODS:
                raise SelectModelError(
                    f"env '{env_name}': {OPS_OPTION} names '{word}', not an operator the"
                    f" firmware can register (known: {OPS_FAMILIES},"
                    f" {', '.join(sorted(RESOLVER_METHODS))})")
            wanted.append(name)
    excluded = PROFILE_EXCLUDED_OPS.get(env_profile, frozenset())
    for name in embedded:
        if name not in RESOLVER_METHODS:
            raise SelectModelError(f"model {model.version} uses operator {name}, which this"
                                   " firmware cannot register")
        if name in excluded:
            raise SelectModelError(f"model {model.version} uses {name}, which env '{env_name}'"
                                   f" (profile '{env_profile}') cannot run bit-exactly")
    for name in wanted:
        if name in excluded:
            raise SelectModelError(
                f"env '{env_name}': {OPS_OPTION} lists {name}, which profile '{env_profile}'"
                " excludes: its TFLM libraries' int8 kernel rounds differently from the host"
                " reference (tinyship.profiles); remove it from the list")
    ops: list[str] = []
    for name in [*embedded, *wanted]:
        if name not in ops:
            ops.append(name)
    return tuple(ops)


def arena_bytes(env_name: str, model: ModelVersion, option: int | None) -> int:
    """The tensor arena: the embedded model's, or ``option`` when larger; a multiple of 16."""
    if option is not None and option <= 0:
        raise SelectModelError(f"env '{env_name}': {ARENA_OPTION} must be a positive integer")
    size = max(model.arena_bytes, option or 0)
    return -(-size // 16) * 16


def render_runner_config(*, env_name: str, model: ModelVersion, ops: Sequence[str],
                         option: str | None, arena: int) -> str:
    """Text of ``tinyship_runner_config.h``: the op resolver and the arena size."""
    regs = "\n".join(
        f"  if (static_cast<int>(resolver.{RESOLVER_METHODS[op]}()) != 0) return {i};"
        for i, op in enumerate(ops, start=1))
    source = f"{OPS_OPTION} = {option.strip()}" if option and option.strip() else \
        f"{OPS_OPTION} unset: {OPS_FAMILIES}"
    lines = [
        "/* tinyship_runner_config.h - autogenerated by firmware/scripts/select_model.py,"
        " do not edit. */",
        "#ifndef TINYSHIP_RUNNER_CONFIG_H",
        "#define TINYSHIP_RUNNER_CONFIG_H",
        "",
        f"/* Op resolver of env '{env_name}': the operators of model {model.version},"
        f" then {source}. */",
        f"/* {', '.join(ops)} */",
        f"#define TINYSHIP_RESOLVER_OP_COUNT {len(ops)}",
        "/* Their TFLite BuiltinOperator numbers, in registration order (ts_config_t.ops). */",
        "#define TINYSHIP_RESOLVER_OP_IDS {" + ", ".join(f"{OP_IDS[op]}u" for op in ops) + "}",
        f"/* Tensor arena bytes: model {model.version} needs {model.arena_bytes}"
        f" ({ARENA_OPTION} raises it). */",
        f"#define TINYSHIP_RUNNER_ARENA_BYTES {arena}",
        "",
        "/* Registers those operators; 0, else the 1-based index of the one that failed. */",
        "template <typename Resolver>",
        "inline int tinyship_register_resolver_ops(Resolver &resolver) {",
        regs,
        "  return 0;",
        "}",
        "",
        "#endif /* TINYSHIP_RUNNER_CONFIG_H */",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ model slots --
#: ``custom_tinyship_slot_bytes``: bytes of each of the two model slots (unset or 0: none).
SLOT_OPTION = "custom_tinyship_slot_bytes"
SLOTS_CONFIG = "tinyship_slots_config.h"
#: The ESP32 slot partition (firmware/esp32s3/partitions.csv): its label and its type, an
#: application-defined partition type (ESP-IDF reserves 0x00-0x3F, apps use 0x40-0xFE).
SLOT_PARTITION_LABEL = "tsslots"
SLOT_PARTITION_TYPE = 0x40
#: The core's headers the slot image size comes from (firmware/SLOTS.md, "Slot image").
CORE_SRC_DIR = "firmware/lib/tinyship_core/src"


class SlotBoard(NamedTuple):
    """A board with a flash HAL (firmware/src/flash_*.cpp): where its slots live."""

    sector_bytes: int
    program_unit: int
    #: "image": a const region in the firmware image (mbed boards); "partition": the
    #: ESP-IDF data partition SLOT_PARTITION_LABEL
    where: str
    #: image: bytes the firmware image may take; partition: the board's flash bytes
    limit_bytes: int
    limit_source: str


#: PlatformIO board -> its slot storage (firmware/README.md, "Model slots on the boards").
SLOT_BOARDS: Mapping[str, SlotBoard] = {
    "nano33ble": SlotBoard(
        4096, 4, "image", 0xF0000,
        "the sketch region of the Nano 33 BLE (0x10000-0x100000: the mbed core's linker"
        " script, PlatformIO's upload.maximum_size)"),
    "nanorp2040connect": SlotBoard(
        4096, 256, "image", 2 * 1024 * 1024,
        "PlatformIO's upload.maximum_size for the Nano RP2040 Connect (2 MiB; the board's"
        " flash and the core's linker script have 16 MiB)"),
    "esp32-s3-devkitc-1": SlotBoard(
        4096, 1, "partition", 8 * 1024 * 1024, "the 8 MiB flash of the ESP32-S3-DevKitC-1-N8"),
}


class Partition(NamedTuple):
    name: str
    type: str
    offset: int
    size: int


def _int_value(text: str) -> int:
    text = text.strip()
    scale = 1
    if text[-1:].upper() in ("K", "M"):
        scale = 1024 if text[-1].upper() == "K" else 1024 * 1024
        text = text[:-1]
    return int(text, 0) * scale


def read_partitions(path: Path) -> list[Partition]:
    """The rows of an ESP-IDF partition CSV (name, type, subtype, offset, size, flags). Rows
    without an offset follow the previous one (aligned as gen_esp32part.py does: 64 KiB
    for app partitions, 4 KiB otherwise)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SelectModelError(f"cannot read the partition table {path}: {exc}") from exc
    rows: list[Partition] = []
    cursor = 0x9000  # after the partition table at 0x8000 (CONFIG_PARTITION_TABLE_OFFSET)
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in (line + ",,,,").split(",")]
        try:
            align = 0x10000 if fields[1] == "app" else 0x1000
            offset = _int_value(fields[3]) if fields[3] else -(-cursor // align) * align
            size = _int_value(fields[4])
        except (ValueError, IndexError) as exc:
            raise SelectModelError(f"{path}:{number}: cannot read offset/size ({exc})") from exc
        rows.append(Partition(fields[0], fields[1], offset, size))
        cursor = offset + size
    return rows


def _core_define(project_dir: Path, header: str, name: str) -> int:
    path = project_dir / CORE_SRC_DIR / header
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SelectModelError(f"cannot read {path}: {exc}") from exc
    match = re.search(rf"^\s*#define\s+{name}\s+(\d+)u?\b", text, re.MULTILINE)
    if not match:
        raise SelectModelError(f"{path} does not define {name}")
    return int(match.group(1))


def _header_int(text: str, pattern: str, what: str, path: Path) -> int:
    match = re.search(pattern, text, re.MULTILINE)
    if not match:
        raise SelectModelError(f"{path} does not give {what}")
    return int(match.group(1))


def slot_image_bytes(project_dir: Path, model: ModelVersion, ops: Sequence[str],
                     data_h: Path, data_cc: Path) -> tuple[int, int]:
    """(header bytes, model bytes) of the embedded model's slot image as an installer builds
    it: the header of SLOTS.md (fixed part, 2 bytes per model operator, the golden vectors
    that fit one SLOT_BEGIN payload, padded to 16) then the flatbuffer."""
    fixed = _core_define(project_dir, "ts_slot_image.h", "TS_SLOT_IMAGE_FIXED_LEN")
    begin_max = _core_define(project_dir, "tinyship_core.h", "TS_MAX_PAYLOAD")
    header = data_h.read_text(encoding="utf-8", errors="replace")
    in_bytes = _header_int(header, r"^#define TINYSHIP_MODEL_INPUT_SIZE (\d+)", "the input size",
                           data_h)
    out_bytes = _header_int(header, r"^#define TINYSHIP_MODEL_OUTPUT_SIZE (\d+)",
                            "the output size", data_h)
    golden = _header_int(header, r"^#define TINYSHIP_GOLDEN_COUNT (\d+)", "the golden count",
                         data_h)
    body = _header_int(data_cc.read_text(encoding="utf-8", errors="replace"),
                       r"tinyship_model_data_len\s*=\s*(\d+)", "the model length", data_cc)
    room = begin_max // 16 * 16 - fixed - 2 * len(ops)
    per = in_bytes + out_bytes
    fits = golden if per == 0 else max(0, min(golden, room // per))
    return -(-(fixed + 2 * len(ops) + fits * per) // 16) * 16, body


def check_slots(*, env_name: str, board: str, slot_bytes: int | None, model: ModelVersion,
                image: tuple[int, int] | None, partitions: Path | None) -> int:
    """Refuse slots the board cannot hold; returns the slot bytes (0: no slots). ``image`` is
    (header, model) bytes of the embedded model's slot image (:func:`slot_image_bytes`)."""
    if not slot_bytes:
        return 0
    spec = SLOT_BOARDS.get(board)
    if spec is None:
        raise SelectModelError(
            f"env '{env_name}': {SLOT_OPTION} = {slot_bytes}, but board '{board}' has no flash"
            f" HAL for model slots (boards with one: {', '.join(sorted(SLOT_BOARDS))});"
            f" remove {SLOT_OPTION}")
    sector = spec.sector_bytes
    if slot_bytes < 2 * sector or slot_bytes % sector:
        raise SelectModelError(
            f"env '{env_name}': {SLOT_OPTION} = {slot_bytes} must be a multiple of the"
            f" board's {sector}-byte flash sector and at least two sectors (the last one holds"
            " the slot's trailer flags)")
    need = 2 * slot_bytes
    if spec.where == "image":
        body = image[1] if image else 0
        if need + body > spec.limit_bytes:
            raise SelectModelError(
                f"env '{env_name}': two model slots of {slot_bytes} bytes ({need} bytes) and the"
                f" embedded model ({body} bytes) do not fit {spec.limit_source}:"
                f" {spec.limit_bytes} bytes, before the firmware's own code; lower"
                f" {SLOT_OPTION}")
    else:
        if partitions is None:
            raise SelectModelError(
                f"env '{env_name}': {SLOT_OPTION} needs board_build.partitions naming a"
                f" partition table with a '{SLOT_PARTITION_LABEL}' partition of type"
                f" 0x{SLOT_PARTITION_TYPE:02x} (firmware/esp32s3/partitions.csv)")
        rows = read_partitions(partitions)
        for row in rows:
            if row.offset + row.size > spec.limit_bytes:
                raise SelectModelError(
                    f"{partitions}: partition '{row.name}' ends at 0x{row.offset + row.size:x},"
                    f" beyond {spec.limit_source} ({spec.limit_bytes} bytes)")
        slots = [r for r in rows if r.name == SLOT_PARTITION_LABEL]
        if not slots:
            raise SelectModelError(
                f"{partitions} has no '{SLOT_PARTITION_LABEL}' partition for the model slots of"
                f" env '{env_name}'")
        row = slots[0]
        try:
            ptype = int(row.type, 0)
        except ValueError:
            ptype = -1
        if ptype != SLOT_PARTITION_TYPE or row.offset % sector:
            raise SelectModelError(
                f"{partitions}: partition '{row.name}' must have type"
                f" 0x{SLOT_PARTITION_TYPE:02x} and an offset on a {sector}-byte sector"
                f" (type {row.type}, offset 0x{row.offset:x})")
        if row.size < need:
            raise SelectModelError(
                f"env '{env_name}': two model slots of {slot_bytes} bytes ({need} bytes) do not"
                f" fit partition '{row.name}' of {partitions} ({row.size} bytes); enlarge it"
                f" or lower {SLOT_OPTION}")
    if image is not None:
        capacity = slot_bytes - sector
        header, body = image
        if header + body > capacity:
            raise SelectModelError(
                f"env '{env_name}': the embedded model {model.version} does not fit a model"
                f" slot: its slot image is {header + body} bytes (header {header} + model"
                f" {body}), a slot of {slot_bytes} bytes holds {capacity} (one {sector}-byte"
                f" sector is the trailer); raise {SLOT_OPTION} to at least"
                f" {-(-(header + body) // sector) * sector + sector}")
    return slot_bytes


def render_slots_config(*, env_name: str, board: str, slot_bytes: int) -> str:
    """Text of ``tinyship_slots_config.h``, read by the board's flash HAL."""
    lines = [
        "/* tinyship_slots_config.h - autogenerated by firmware/scripts/select_model.py,"
        " do not edit. */",
        "#ifndef TINYSHIP_SLOTS_CONFIG_H",
        "#define TINYSHIP_SLOTS_CONFIG_H",
        "",
        f"/* Bytes of each of the two model slots of env '{env_name}' (board '{board}',"
        f" {SLOT_OPTION}); 0: no slots. A plain number: the mbed boards' slot region is"
        " emitted by the assembler. */",
        f"#define TINYSHIP_SLOT_BYTES {slot_bytes}",
        "/* The ESP32 slot partition (board_build.partitions). */",
        f'#define TINYSHIP_SLOT_PARTITION_LABEL "{SLOT_PARTITION_LABEL}"',
        f"#define TINYSHIP_SLOT_PARTITION_TYPE 0x{SLOT_PARTITION_TYPE:02x}",
        "",
        "#endif /* TINYSHIP_SLOTS_CONFIG_H */",
        "",
    ]
    return "\n".join(lines)


class EnvOptions(NamedTuple):
    """The env's slot and op-resolver settings, as platformio.ini gives them."""

    board: str = ""
    slot_bytes: int | None = None
    ops: str | None = None
    arena_bytes: int | None = None
    partitions: Path | None = None


def _option_int(env_name: str, name: str, value: object) -> int | None:
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    try:
        return _int_value(text)
    except ValueError:
        raise SelectModelError(f"env '{env_name}': {name} = '{text}' is not an integer"
                               " (bytes, e.g. 131072, 0x20000 or 128K)") from None


def env_options(env_name: str, options: Mapping[str, object], project_dir: Path) -> EnvOptions:
    """:class:`EnvOptions` from the env's raw options (names as in platformio.ini)."""
    partitions = str(options.get("board_build.partitions") or "").strip()
    ops = options.get(OPS_OPTION)
    if isinstance(ops, (list, tuple)):
        ops = ",".join(str(o) for o in ops)
    return EnvOptions(
        board=str(options.get("board") or "").strip(),
        slot_bytes=_option_int(env_name, SLOT_OPTION, options.get(SLOT_OPTION)),
        ops=None if ops is None else str(ops),
        arena_bytes=_option_int(env_name, ARENA_OPTION, options.get(ARENA_OPTION)),
        partitions=(project_dir / partitions) if partitions else None,
    )


def _pyproject_version(text: str) -> str:
    """``[project].version`` of a pyproject.toml text (ValueError/KeyError if absent)."""
    if tomllib is not None:
        return str(tomllib.loads(text)["project"]["version"])
    section = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    match = section and re.search(r'^version\s*=\s*"([^"]+)"', section.group(1), re.MULTILINE)
    if not match:
        raise KeyError("project.version")
    return match.group(1)


def firmware_version(project_dir: Path, environ: Mapping[str, str]) -> str:
    """Semver from ``TINYSHIP_FIRMWARE_VERSION`` or ``pyproject.toml`` ``[project].version``."""
    value = environ.get("TINYSHIP_FIRMWARE_VERSION", "").strip()
    source = "TINYSHIP_FIRMWARE_VERSION"
    if not value:
        path = project_dir / "pyproject.toml"
        source = str(path)
        try:
            value = _pyproject_version(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SelectModelError(
                f"cannot read [project] version from {path} ({exc}); set TINYSHIP_FIRMWARE_VERSION"
            ) from exc
    if not _SEMVER_RE.match(value):
        raise SelectModelError(f"firmware version '{value}' from {source} is not semver")
    return value


def _config_mlperf_model(text: str) -> str | None:
    """``[board] mlperf_model`` of a tinyship.toml text, or None."""
    if tomllib is not None:
        value = tomllib.loads(text).get("board", {}).get("mlperf_model")
        return None if value is None else str(value)
    section = re.search(r"^\[board\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    match = section and re.search(r'^mlperf_model\s*=\s*"([^"]*)"', section.group(1),
                                  re.MULTILINE)
    return match.group(1) if match else None


def mlperf_model(project_dir: Path, environ: Mapping[str, str]) -> str:
    """MLPerf benchmark name for ``profile%``: ``TINYSHIP_MLPERF_MODEL``, else ``[board]
    mlperf_model`` of ``<project>/tinyship.toml``, else ``ad01``."""
    value = environ.get("TINYSHIP_MLPERF_MODEL", "")
    source = "TINYSHIP_MLPERF_MODEL"
    if not value:
        path = project_dir / PROJECT_CONFIG
        source = f"{path} [board] mlperf_model"
        try:
            found = _config_mlperf_model(path.read_text(encoding="utf-8")) \
                if path.is_file() else None
        except (OSError, ValueError) as exc:
            raise SelectModelError(f"cannot read {path}: {exc}") from exc
        value = found if found is not None else DEFAULT_MLPERF_MODEL
    if not MLPERF_MODEL_RE.fullmatch(value):
        raise SelectModelError(
            f"MLPerf model name '{value}' from {source} is not 1-64 characters of"
            " [A-Za-z0-9_.-] (the runner expects ad01, ic01, kws01 or vww01)"
        )
    return value


def git_commit(project_dir: Path) -> str:
    """Short commit of the project checkout, ``-dirty`` when modified; ``unknown`` without git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit or "unknown"


def _c_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    if any(ord(ch) < 0x20 or ord(ch) > 0x7E for ch in escaped):
        raise SelectModelError(f"cannot embed non-printable text {value!r} in a C string")
    return f'"{escaped}"'


def render_version_header(
    *,
    firmware: str,
    model: ModelVersion,
    env_name: str,
    env_profile: str,
    commit: str,
    build_time: _dt.datetime,
    mlperf: str = DEFAULT_MLPERF_MODEL,
) -> str:
    """Text of ``tinyship_version.h``."""
    when = build_time.astimezone(_dt.timezone.utc)  # noqa: UP017 (PlatformIO may run Python < 3.11).replace(microsecond=0)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        "/* tinyship_version.h - autogenerated by firmware/scripts/select_model.py,"
        " do not edit. */",
        "#ifndef TINYSHIP_VERSION_H",
        "#define TINYSHIP_VERSION_H",
        "",
        f"#define TINYSHIP_FIRMWARE_VERSION {_c_string(firmware)}",
        f"#define TINYSHIP_BUILD_MODEL_VERSION {_c_string(model.version)}",
        f"#define TINYSHIP_BUILD_MODEL_SHA256 {_c_string(model.sha256)}",
        f"#define TINYSHIP_BUILD_MODEL_CRC32 0x{model.crc32:08x}u",
        f"#define TINYSHIP_BUILD_MODEL_PROFILE {_c_string(model.profile)}",
        f"#define TINYSHIP_BUILD_MODEL_ARENA_BYTES {model.arena_bytes}",
        f"#define TINYSHIP_BUILD_ENV_PROFILE {_c_string(env_profile)}",
        f"#define TINYSHIP_BUILD_BOARD {_c_string(env_name)}",
        f"#define TINYSHIP_GIT_COMMIT {_c_string(commit)}",
        f"#define TINYSHIP_BUILD_TIME_UTC {_c_string(stamp)}",
        f"#define TINYSHIP_BUILD_PROTOCOL_VERSION {PROTOCOL_VERSION}",
        f"#define TINYSHIP_MLPERF_MODEL {_c_string(mlperf)}",
        "",
        "#endif /* TINYSHIP_VERSION_H */",
        "",
    ]
    return "\n".join(lines)


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write only when the content differs, so unchanged builds stay incremental."""
    if path.is_file() and path.read_bytes() == data:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def prepare_build(
    *,
    project_dir: Path,
    build_dir: Path,
    env_name: str,
    env_profile: str,
    environ: Mapping[str, str],
    now: _dt.datetime | None = None,
    env_spec: Any = None,
    options: EnvOptions | None = None,
) -> BuildSelection:
    """Everything the pre-build step does, without SCons. ``env_spec`` (the env as
    platformio.ini declares it, a ``tflm_libraries.EnvSpec``; PlatformIO builds always pass
    it) has its TFLM library checked first (:func:`check_library`). ``options``: the env's
    slot and op-resolver settings (:func:`env_options`; unset: no slots, the op resolver
    of :data:`FAMILY_OPS`, the model's arena)."""
    library = None
    if env_spec is not None:
        library = check_library(project_dir, env_spec)
    opts = options or EnvOptions()
    board = opts.board or (str(env_spec.board) if env_spec is not None else "")
    registry = registry_dir(project_dir, environ)
    version = resolve_version(registry, environ.get("TINYSHIP_MODEL"))
    model = load_model(registry, version)
    check_profile(env_name, env_profile, model, library)
    sources = check_model_files(model)
    embedded = model_ops(model, sources[2])
    ops = resolver_ops(env_name, env_profile, opts.ops, model, embedded)
    arena = arena_bytes(env_name, model, opts.arena_bytes)
    image = None
    if opts.slot_bytes:
        image = slot_image_bytes(project_dir, model, embedded, sources[0], sources[1])
    slot_bytes = check_slots(env_name=env_name, board=board, slot_bytes=opts.slot_bytes,
                             model=model, image=image, partitions=opts.partitions)
    firmware = firmware_version(project_dir, environ)
    mlperf = mlperf_model(project_dir, environ)
    out_dir = build_dir / GENERATED_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in sources:
        dst = out_dir / src.name
        data = src.read_bytes()
        check_sha256(model, src, data)
        _write_if_changed(dst, data)
        copied.append(dst)
    header = out_dir / VERSION_HEADER
    text = render_version_header(
        firmware=firmware,
        model=model,
        env_name=env_name,
        env_profile=env_profile,
        commit=git_commit(project_dir),
        mlperf=mlperf,
        build_time=now or _dt.datetime.now(_dt.timezone.utc),  # noqa: UP017 (PlatformIO may run Python < 3.11),
    )
    _write_if_changed(header, text.encode("ascii"))
    runner = out_dir / RUNNER_CONFIG
    _write_if_changed(runner, render_runner_config(
        env_name=env_name, model=model, ops=ops, option=opts.ops, arena=arena).encode("ascii"))
    slots = out_dir / SLOTS_CONFIG
    _write_if_changed(slots, render_slots_config(
        env_name=env_name, board=board, slot_bytes=slot_bytes).encode("ascii"))
    return BuildSelection(model, out_dir, tuple(copied), header, runner, slots, ops, slot_bytes)


def _run_in_scons() -> None:  # pragma: no cover - needs PlatformIO
    Import("env")  # type: ignore[name-defined]  # noqa: F821  (SCons builtin)
    env = globals()["env"]
    env_name = env["PIOENV"]

    def option(name: str, default: object) -> object:
        try:
            return env.GetProjectOption(name)
        except Exception:
            return default

    def values(value: object) -> tuple[str, ...]:
        items = value if isinstance(value, (list, tuple)) else re.split(r"[,\n]", str(value))
        return tuple(str(v).strip() for v in items if str(v).strip())

    profile = str(option("custom_tinyship_profile", "")).strip()
    frameworks = values(option("framework", []))
    manifest = Path(env.subst("$PROJECT_SRC_DIR")) / "idf_component.yml"
    project_dir = Path(env.subst("$PROJECT_DIR"))
    try:
        libs = library_table(project_dir)
    except SelectModelError as exc:
        sys.stderr.write(f"tinyship: error: {exc}\n")
        env.Exit(1)
        return
    spec = libs.EnvSpec(
        name=env_name,
        board=str(option("board", "")).strip(),
        platform=str(option("platform", "")).strip(),
        frameworks=frameworks,
        profile=profile,
        lib_deps=values(option("lib_deps", [])),
        idf_manifest=manifest.read_text(encoding="utf-8")
        if "espidf" in frameworks and manifest.is_file() else None,
        idf_manifest_path=str(manifest),
    )
    try:
        options = env_options(env_name, {
            name: option(name, None)
            for name in ("board", SLOT_OPTION, OPS_OPTION, ARENA_OPTION, "board_build.partitions")
        }, project_dir)
        selection = prepare_build(
            project_dir=project_dir,
            build_dir=Path(env.subst("$BUILD_DIR")),
            env_name=env_name,
            env_profile=profile,
            environ=os.environ,
            env_spec=spec,
            options=options,
        )
    except SelectModelError as exc:
        sys.stderr.write(f"tinyship: error: {exc}\n")
        env.Exit(1)
        return
    gen = str(selection.generated_dir)
    env.Append(CPPPATH=[gen])
    env.BuildSources(os.path.join("$BUILD_DIR", "tinyship_model"), gen)
    print(
        f"tinyship: env {env_name} ({profile}) embeds model {selection.model.version}"
        f" ({selection.model.profile}, sha256 {selection.model.sha256[:12]}...); op resolver:"
        f" {', '.join(selection.ops)}; model slots:"
        f" {f'2 x {selection.slot_bytes} bytes' if selection.slot_bytes else 'none'}"
    )


if "Import" in globals():  # executed by PlatformIO's SCons, not imported
    _run_in_scons()
