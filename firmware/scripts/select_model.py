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
  ``[board] mlperf_model`` of the project's ``tinyship.toml``, else ``ad01``.
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

try:  # Python >= 3.11; PlatformIO may run an older interpreter
    import tomllib
except ImportError:  # pragma: no cover
    tomllib = None  # type: ignore[assignment]

PROTOCOL_VERSION = 1
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


class BuildSelection(NamedTuple):
    """What the pre-build step chose and wrote."""

    model: ModelVersion
    generated_dir: Path
    files: tuple[Path, ...]
    version_header: Path


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
    return ModelVersion(version, directory, profile, sha256, crc32, arena, artifacts)


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
) -> BuildSelection:
    """Everything the pre-build step does, without SCons. ``env_spec`` (the env as
    platformio.ini declares it, a ``tflm_libraries.EnvSpec``; PlatformIO builds always pass
    it) has its TFLM library checked first (:func:`check_library`)."""
    library = None
    if env_spec is not None:
        library = check_library(project_dir, env_spec)
    registry = registry_dir(project_dir, environ)
    version = resolve_version(registry, environ.get("TINYSHIP_MODEL"))
    model = load_model(registry, version)
    check_profile(env_name, env_profile, model, library)
    sources = check_model_files(model)
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
    return BuildSelection(model, out_dir, tuple(copied), header)


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
        selection = prepare_build(
            project_dir=project_dir,
            build_dir=Path(env.subst("$BUILD_DIR")),
            env_name=env_name,
            env_profile=profile,
            environ=os.environ,
            env_spec=spec,
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
        f" ({selection.model.profile}, sha256 {selection.model.sha256[:12]}...)"
    )


if "Import" in globals():  # executed by PlatformIO's SCons, not imported
    _run_in_scons()
