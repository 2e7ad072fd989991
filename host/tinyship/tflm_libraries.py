"""TFLM library releases a board env may pin, and the target-runtime profile each runs.

What a firmware build may embed depends on the TFLM library the env links, not on what
`custom_tinyship_profile` claims. This module is the table of (library, version range or
commit) -> profile, read from each library's sources (firmware/README.md, "TFLM libraries",
records how each row was checked), and the check `tinyship build` and the PlatformIO
pre-build step run on an env before building it:

* the env pins exactly one known TFLM library, to an exact version or a git commit
  (`lib_deps`, or `espressif/esp-tflite-micro` in the ESP-IDF component manifest);
* that release is a row of the table and was checked on the env's board;
* an ESP-IDF component release accepts the ESP-IDF the env's platform builds with;
* `custom_tinyship_profile` claims no more than the release runs (a `tflm-current` model
  on a library that reads Dense weights per tensor would be silently wrong).

`firmware/scripts/select_model.py` runs in PlatformIO's Python, which cannot import tinyship:
it loads this file by path, so this module uses the standard library only and raises its own
`LibraryCheckError` (`tinyship build` turns it into a BuildError). One table, one check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

ARDUINO_2023 = "tflm-arduino-2023"
CURRENT = "tflm-current"
#: Which models' profiles a runtime of each profile computes correctly (a newer runtime
#: runs the older scheme). tinyship.profiles takes its `accepts` from here.
PROFILE_ACCEPTS: dict[str, frozenset[str]] = {
    ARDUINO_2023: frozenset({ARDUINO_2023}),
    CURRENT: frozenset({ARDUINO_2023, CURRENT}),
}
#: The check's error messages name the file that holds the table.
TABLE_FILES = "host/tinyship/tflm_libraries.py"


class LibraryCheckError(ValueError):
    """An env's TFLM library pin fails the check; the message names env, release, profile."""


@dataclass(frozen=True)
class LibraryRelease:
    """One row: releases of a TFLM library and the profile they compute correctly."""

    library: str
    #: Git commits (40 hex digits) of the row, for a pin by commit.
    commits: tuple[str, ...]
    #: Versions [first, end) of the row; None when the row is matched by commit only.
    versions: tuple[str, str] | None
    profile: str
    #: Date of the TFLM sources the release bundles (its last sync from tflite-micro).
    tflm_date: str
    #: PlatformIO boards the release was compiled for; empty: any board of its platform.
    boards: frozenset[str]
    #: ESP-IDF components: the lowest ESP-IDF its idf_component.yml accepts.
    min_idf: str | None
    #: Header a source must include for PlatformIO's library finder to build the library.
    header: str | None
    #: Why the row has its profile (or its limits), for error messages.
    why: str


LIBRARY_RELEASES: tuple[LibraryRelease, ...] = (
    LibraryRelease(
        library="tflite-micro-arduino-examples",
        commits=("0b8e7c15c7e50811121825817a88f023a575f46a",),
        versions=None,
        profile=ARDUINO_2023,
        tflm_date="2022-09-20",
        boards=frozenset({"nano33ble"}),
        min_idf=None,
        header="TensorFlowLite.h",
        why="its FullyConnected reads one weight scale per tensor; peripherals.h #errors and "
        "DebugLog is undefined on every board but the Nano 33 BLE",
    ),
    LibraryRelease(
        library="Chirale_TensorFlowLite",
        commits=("46da2f989205a9216229d38cd3d1c657d79d6781",),
        versions=("2.0.0", "2.0.1"),
        profile=ARDUINO_2023,
        tflm_date="2023-01-14",
        boards=frozenset({"nano33ble", "nanorp2040connect"}),
        min_idf=None,
        header="Chirale_TensorFlowLite.h",
        why="TFLM of 2023-01-14: its FullyConnected reads one weight scale per tensor",
    ),
    LibraryRelease(
        library="esp-tflite-micro",
        commits=(),
        versions=("1.3.0", "1.3.4"),
        profile=ARDUINO_2023,
        tflm_date="2024-05-08 to 2025-01-20",
        boards=frozenset(),
        min_idf="4.4",
        header=None,
        why="before 1.3.4 its ESP-NN FullyConnected kernel ignores per-channel weight scales",
    ),
    LibraryRelease(
        library="esp-tflite-micro",
        commits=(),
        versions=("1.3.4", "1.3.5"),
        profile=CURRENT,
        tflm_date="2025-09-01",
        boards=frozenset(),
        min_idf="4.4",
        header=None,
        why="1.3.4 added per-channel FullyConnected to its ESP-NN kernel and accepts ESP-IDF 4.4",
    ),
    LibraryRelease(
        library="esp-tflite-micro",
        commits=(),
        versions=("1.3.5", "1.3.9"),
        profile=CURRENT,
        tflm_date="2025-11-17 to 2026-08-13",
        boards=frozenset(),
        min_idf="5.0",
        header=None,
        why="per-channel FullyConnected; from 1.3.5 its manifest requires ESP-IDF >= 5.0",
    ),
)

#: Names a TFLM library goes by in lib_deps and manifests (lower case) -> the table's name.
LIBRARY_NAMES: dict[str, str] = {
    "tflite-micro-arduino-examples": "tflite-micro-arduino-examples",
    "arduino_tensorflowlite": "tflite-micro-arduino-examples",
    "chirale_tensorflowlite": "Chirale_TensorFlowLite",  # registry: Chirale_TensorFLowLite
    "esp-tflite-micro": "esp-tflite-micro",
}

#: ESP-IDF that platform-espressif32 builds `framework = arduino, espidf` with: its
#: platform.py pins framework-espidf ~3.40407.0 (4.4.7) for mixed projects (read at each).
ESPRESSIF32_ARDUINO_IDF: dict[str, str] = {
    "6.9.0": "4.4.7",
    "6.10.0": "4.4.7",
    "6.11.0": "4.4.7",
    "6.12.0": "4.4.7",
    "6.13.0": "4.4.7",
}

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_VERSION_RE = re.compile(r"^\d+(?:\.\d+)*$")
_GIT_RE = re.compile(r"^(?:git\+)?(?:https?|ssh|git)://\S*?/([^/#\s]+?)(?:\.git)?/?(?:#(\S*))?$")
_REGISTRY_RE = re.compile(r"^(?:[\w.-]+/)?([\w.+-]+)\s*(?:@\s*(\S+))?$")
_IDF_DEP_RE = re.compile(r"^([ \t]*)[\"']?(?:[\w.-]+/)?esp-tflite-micro[\"']?\s*:(.*)$")
_IDF_VERSION_RE = re.compile(r"^[ \t]+version\s*:(.*)$")
_PLATFORM_RE = re.compile(r"^(?:[\w.-]+/)?espressif32\s*@\s*(\S+)$")


@dataclass(frozen=True)
class LibraryPin:
    """A TFLM library as an env pins it."""

    library: str
    #: The exact version pinned, or None.
    version: str | None
    #: The exact git commit pinned, or None.
    commit: str | None
    #: The pin as written and where (`lib_deps` or the manifest's path), for messages.
    spec: str
    source: str

    @property
    def label(self) -> str:
        if self.version is not None:
            return f"{self.library} {self.version}"
        if self.commit is not None:
            return f"{self.library} @ commit {self.commit[:8]}"
        return f"{self.library} (unpinned: {self.spec})"


@dataclass(frozen=True)
class EnvSpec:
    """What the check needs from one `[env:NAME]` of platformio.ini."""

    name: str
    board: str
    platform: str
    frameworks: tuple[str, ...]
    profile: str
    lib_deps: tuple[str, ...]
    #: Text of the env's ESP-IDF component manifest (framework espidf), else None.
    idf_manifest: str | None = None
    idf_manifest_path: str = "idf_component.yml"


def version_key(version: str) -> tuple[int, ...]:
    """`1.3.3.1` -> (1, 3, 3, 1); trailing zeros do not matter (1.3 == 1.3.0)."""
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def canonical_library(name: str) -> str | None:
    return LIBRARY_NAMES.get(name.strip().lower())


def parse_lib_dep(spec: str) -> LibraryPin | None:
    """A `lib_deps` line as a pin of a known TFLM library; None for any other library."""
    text = spec.strip()
    git = _GIT_RE.match(text)
    if git:
        library = canonical_library(git.group(1))
        if library is None:
            return None
        ref = git.group(2) or ""
        commit = ref.lower() if _COMMIT_RE.match(ref.lower()) else None
        return LibraryPin(library, None, commit, text, "lib_deps")
    reg = _REGISTRY_RE.match(text)
    if reg is None:
        return None
    library = canonical_library(reg.group(1))
    if library is None:
        return None
    requested = (reg.group(2) or "").strip()
    version = requested.lstrip("=") if _VERSION_RE.match(requested.lstrip("=")) else None
    return LibraryPin(library, version, None, text, "lib_deps")


def parse_idf_manifest(text: str, source: str) -> list[LibraryPin]:
    """`espressif/esp-tflite-micro` in an idf_component.yml, inline (`name: "==1.3.4"`) or
    as a mapping with a `version:` key. Only `==X.Y.Z` counts as an exact pin."""
    pins = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        dep = _IDF_DEP_RE.match(line.split("#", 1)[0].rstrip())
        if dep is None:
            continue
        spec = dep.group(2).strip()
        for child in lines[i + 1:] if not spec else []:  # the mapping form
            if child.strip() and len(child) - len(child.lstrip()) <= len(dep.group(1)):
                break
            key = _IDF_VERSION_RE.match(child.split("#", 1)[0].rstrip())
            if key:
                spec = key.group(1).strip()
                break
        spec = spec.strip("\"'").strip()
        exact = spec[2:].strip() if spec.startswith("==") else ""
        version = exact if _VERSION_RE.match(exact) else None
        pins.append(LibraryPin("esp-tflite-micro", version, None,
                               f"esp-tflite-micro: {spec or '(no version)'}", source))
    return pins


def env_pins(env: EnvSpec) -> list[LibraryPin]:
    """Every known TFLM library the env pins (lib_deps, then the ESP-IDF manifest)."""
    pins = [p for p in (parse_lib_dep(d) for d in env.lib_deps) if p is not None]
    if "espidf" in env.frameworks and env.idf_manifest is not None:
        pins += parse_idf_manifest(env.idf_manifest, env.idf_manifest_path)
    return pins


def release_of(pin: LibraryPin) -> LibraryRelease | None:
    """The table row a pin falls in, or None."""
    for row in LIBRARY_RELEASES:
        if row.library != pin.library:
            continue
        if pin.commit is not None and pin.commit in row.commits:
            return row
        if pin.version is not None and row.versions is not None:
            first, end = (version_key(v) for v in row.versions)
            if first <= version_key(pin.version) < end:
                return row
    return None


def platform_idf(platform: str, frameworks: Sequence[str]) -> str | None:
    """ESP-IDF version an espressif32 platform pin builds `framework = arduino, espidf` with."""
    match = _PLATFORM_RE.match(platform.strip())
    if match is None or not {"arduino", "espidf"} <= set(frameworks):
        return None
    return ESPRESSIF32_ARDUINO_IDF.get(match.group(1))


def _describe(row: LibraryRelease) -> str:
    if row.versions is not None:
        return f"{row.library} {row.versions[0]} to before {row.versions[1]}"
    return f"{row.library} @ commit {row.commits[0][:8]}"


def _choices(library: str) -> str:
    return "; ".join(f"{_describe(r)}: {r.profile}" for r in LIBRARY_RELEASES
                     if r.library == library)


def check_env(env: EnvSpec) -> LibraryRelease:
    """The table row of the TFLM library `env` pins, after every check in the module
    docstring; LibraryCheckError names the env, the library release and the profile."""
    pins = env_pins(env)
    if not pins:
        where = "lib_deps" + (f" or {env.idf_manifest_path}" if "espidf" in env.frameworks
                              else "")
        raise LibraryCheckError(
            f"env '{env.name}' pins no known TFLM library in {where} (known: "
            f"{', '.join(sorted(set(LIBRARY_NAMES.values())))})")
    if len(pins) > 1:
        raise LibraryCheckError(
            f"env '{env.name}' pins {len(pins)} TFLM libraries "
            f"({', '.join(p.label for p in pins)}); link exactly one")
    pin = pins[0]
    if pin.version is None and pin.commit is None:
        raise LibraryCheckError(
            f"env '{env.name}': '{pin.spec}' ({pin.source}) does not pin {pin.library} to an "
            f"exact version or git commit; pin a checked release ({_choices(pin.library)})")
    row = release_of(pin)
    if row is None:
        raise LibraryCheckError(
            f"env '{env.name}' pins {pin.label} ({pin.source}), which is not in the table of "
            f"checked TFLM library releases ({TABLE_FILES}): read its FullyConnected kernel "
            f"and compile it for the board, then add a row (checked: {_choices(pin.library)})")
    if row.boards and env.board not in row.boards:
        raise LibraryCheckError(
            f"env '{env.name}': {pin.label} was not checked on board '{env.board}' (checked on "
            f"{', '.join(sorted(row.boards))}; {row.why})")
    if row.min_idf is not None:
        idf = platform_idf(env.platform, env.frameworks)
        if idf is None:
            raise LibraryCheckError(
                f"env '{env.name}': the ESP-IDF that platform '{env.platform}' builds "
                f"framework = {', '.join(env.frameworks)} with is not in the table "
                f"({TABLE_FILES}), so {pin.label} (needs ESP-IDF >= {row.min_idf}) cannot be "
                "checked; read the platform's platform.py and add it")
        if version_key(idf) < version_key(row.min_idf):
            raise LibraryCheckError(
                f"env '{env.name}': {pin.label} requires ESP-IDF >= {row.min_idf}, but platform "
                f"'{env.platform}' builds framework = arduino, espidf with ESP-IDF {idf}; pin "
                f"a release that accepts ESP-IDF {idf} ({_choices(pin.library)})")
    claimed = PROFILE_ACCEPTS.get(env.profile)
    if claimed is None:
        raise LibraryCheckError(
            f"env '{env.name}': custom_tinyship_profile = '{env.profile}' is not a known "
            f"profile ({', '.join(sorted(PROFILE_ACCEPTS))})")
    if not claimed <= PROFILE_ACCEPTS[row.profile]:
        raise LibraryCheckError(
            f"env '{env.name}' sets custom_tinyship_profile = '{env.profile}', but its TFLM "
            f"library {pin.label} runs profile '{row.profile}' ({row.why}); set "
            f"custom_tinyship_profile = {row.profile}, or pin a release that runs "
            f"'{env.profile}' ({_choices(pin.library)})")
    return row
