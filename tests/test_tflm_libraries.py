"""The table of TFLM library releases -> profiles, and the check every firmware build runs.

`tinyship.tflm_libraries` is used by `tinyship build` and, loaded by path, by
`firmware/scripts/select_model.py` (PlatformIO's pre-build step, which cannot import
tinyship). It refuses a library not checked on the board, a pin that is not exact, a release
that needs another ESP-IDF than the platform's, or a `custom_tinyship_profile` that claims
more than the library computes correctly (a per-channel model silently wrong on the board).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tinyship import tflm_libraries as tl
from tinyship.errors import BuildError
from tinyship.firmware.build import build, env_spec
from tinyship.registry import Registry

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"
INI = REPO / "platformio.ini"
RUNNER = FIRMWARE / "lib/tinyship_runner/src/tinyship_runner.cpp"
STUBS = FIRMWARE / "test/glue/stubs"
CHIRALE = "https://github.com/spaziochirale/Chirale_TensorFlowLite.git#" \
    "46da2f989205a9216229d38cd3d1c657d79d6781"
OFFICIAL = "https://github.com/tensorflow/tflite-micro-arduino-examples.git#" \
    "0b8e7c15c7e50811121825817a88f023a575f46a"
ESP_PLATFORM = "platformio/espressif32 @ 6.9.0"


@pytest.fixture(scope="module")
def sm() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "tinyship_select_model_libs", FIRMWARE / "scripts/select_model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _esp(version_spec: str, profile: str = "tflm-current", **kw: Any) -> dict[str, Any]:
    fields: dict[str, Any] = dict(
        name="esp32s3", board="esp32-s3-devkitc-1", platform=ESP_PLATFORM,
        frameworks=("arduino", "espidf"), profile=profile, lib_deps=(),
        idf_manifest=f'dependencies:\n  espressif/esp-tflite-micro: "{version_spec}"\n',
        idf_manifest_path="firmware/src/idf_component.yml")
    return {**fields, **kw}


def _mbed(lib: str, board: str = "nanorp2040connect", profile: str = "tflm-arduino-2023",
          **kw: Any) -> dict[str, Any]:
    fields: dict[str, Any] = dict(
        name=board, board=board, platform="platformio/raspberrypi @ 1.9.0",
        frameworks=("arduino",), profile=profile, lib_deps=(lib,))
    return {**fields, **kw}


def _both(sm: ModuleType, fields: dict[str, Any]) -> tuple[str, str]:
    """Run the check as `tinyship build` and as the pre-build script run it: both accept with
    the same row (returns its profile) or both refuse with the same message."""
    try:
        row = tl.check_env(tl.EnvSpec(**fields))
    except tl.LibraryCheckError as e:
        with pytest.raises(sm.SelectModelError) as script:
            sm.check_library(REPO, tl.EnvSpec(**fields))
        assert str(script.value) == str(e)
        return "refused", str(e)
    assert sm.check_library(REPO, tl.EnvSpec(**fields)) == tl.env_pins(
        tl.EnvSpec(**fields))[0].label
    return "ok", row.profile


def test_the_pre_build_script_loads_the_one_table(sm: ModuleType) -> None:
    """No copy to keep in step: the script loads host/tinyship/tflm_libraries.py by path,
    and that file imports nothing from tinyship (PlatformIO's Python cannot)."""
    libs = sm.library_table(REPO)
    assert [dataclasses.astuple(r) for r in libs.LIBRARY_RELEASES] == \
        [dataclasses.astuple(r) for r in tl.LIBRARY_RELEASES]
    source = (REPO / sm.LIBRARY_TABLE).read_text()
    assert not re.search(r"^\s*(from|import) tinyship", source, re.M)
    script = (FIRMWARE / "scripts/select_model.py").read_text()
    assert "LIBRARY_RELEASES" not in script and "def check_env" not in script
    from tinyship.profiles import PROFILES

    assert {n: p.accepts for n, p in PROFILES.items()} == tl.PROFILE_ACCEPTS


def test_a_missing_table_is_a_clear_error(sm: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(sm.SelectModelError, match="cannot load the TFLM library table"):
        sm.library_table(tmp_path)


def _row_env(row: tl.LibraryRelease, profile: str) -> dict[str, Any]:
    """An env pinning `row` exactly (by commit, else its first version) on a checked board."""
    if row.library == "esp-tflite-micro":
        assert row.versions
        return _esp(f"=={row.versions[0]}", profile)
    pin = (f"https://github.com/x/{row.library}.git#{row.commits[0]}" if row.commits
           else f"owner/{row.library} @ {row.versions[0] if row.versions else ''}")
    return _mbed(pin, board=sorted(row.boards)[0], profile=profile)


@pytest.mark.parametrize("row", tl.LIBRARY_RELEASES, ids=lambda r: f"{r.library}-{r.profile}")
def test_each_row(sm: ModuleType, row: tl.LibraryRelease) -> None:
    fields = _row_env(row, row.profile)
    if row.min_idf is not None and tl.version_key(row.min_idf) > (4, 4, 7):
        # No espressif32 platform in the table builds Arduino on ESP-IDF 5: refused.
        outcome, message = _both(sm, fields)
        assert outcome == "refused"
        assert f"requires ESP-IDF >= {row.min_idf}" in message and "4.4.7" in message
        return
    assert _both(sm, fields) == ("ok", row.profile)
    # Claiming more than the row runs is refused, naming env, release and both profiles.
    if row.profile == tl.ARDUINO_2023:
        outcome, message = _both(sm, _row_env(row, tl.CURRENT))
        assert outcome == "refused"
        for needle in (f"env '{fields['name']}'", row.library, "custom_tinyship_profile = "
                       "'tflm-current'", "runs profile 'tflm-arduino-2023'"):
            assert needle in message
    # A board the release was not compiled for is refused.
    if row.boards:
        outcome, message = _both(sm, {**fields, "board": "uno"})
        assert outcome == "refused" and "not checked on board 'uno'" in message


def test_esp_tflite_micro_below_1_3_4_is_refused_for_tflm_current(sm: ModuleType) -> None:
    """Releases 1.3.0-1.3.3.1 ignore per-channel scales in the ESP-NN FullyConnected kernel."""
    for old in ("1.3.0", "1.3.3", "1.3.3.1"):
        outcome, message = _both(sm, _esp(f"=={old}"))
        assert outcome == "refused", old
        for needle in ("env 'esp32s3'", f"esp-tflite-micro {old}", "'tflm-current'",
                       "'tflm-arduino-2023'", "per-channel"):
            assert needle in message, (old, needle)
        assert _both(sm, _esp(f"=={old}", "tflm-arduino-2023")) == ("ok", tl.ARDUINO_2023)
    assert _both(sm, _esp("==1.3.4")) == ("ok", tl.CURRENT)
    # 1.3.5 needs ESP-IDF 5; espressif32 6.9.0 builds Arduino + ESP-IDF with 4.4.7.
    outcome, message = _both(sm, _esp("==1.3.5"))
    assert outcome == "refused" and "ESP-IDF >= 5.0" in message and "4.4.7" in message
    outcome, message = _both(sm, _esp("==1.3.4", platform="platformio/espressif32 @ 7.0.0"))
    assert outcome == "refused" and "not in the table" in message


def test_the_official_arduino_library_is_refused_on_the_rp2040(sm: ModuleType) -> None:
    outcome, message = _both(sm, _mbed(OFFICIAL))
    assert outcome == "refused"
    assert "not checked on board 'nanorp2040connect'" in message and "#error" in message
    assert _both(sm, _mbed(OFFICIAL, board="nano33ble")) == ("ok", tl.ARDUINO_2023)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        (_mbed("spaziochirale/Chirale_TensorFLowLite@^2.0.0"), "exact version or git commit"),
        (_mbed("https://github.com/spaziochirale/Chirale_TensorFlowLite.git"), "exact version"),
        (_mbed("https://github.com/spaziochirale/Chirale_TensorFlowLite.git#v2.0.0"), "exact"),
        (_mbed("spaziochirale/Chirale_TensorFLowLite @ 1.1.1"), "not in the table"),
        (_mbed(CHIRALE[:-1] + "0"), "not in the table"),
        (_mbed("bblanchon/ArduinoJson @ 7.0.0"), "pins no known TFLM library"),
        (_mbed(CHIRALE, lib_deps=(CHIRALE, OFFICIAL)), "pins 2 TFLM libraries"),
        (_mbed(CHIRALE, profile="tflm-1999"), "not a known profile"),
        (_esp("^1.3.4"), "exact version or git commit"),
        (_esp(">=1.3.4"), "exact version"),
        (_esp("==1.2.0"), "not in the table"),
        (_esp("==1.3.4", idf_manifest=None), "pins no known TFLM library in lib_deps or"),
    ],
)
def test_pins_that_are_not_exact_known_or_single_are_refused(
    sm: ModuleType, fields: dict[str, Any], needle: str
) -> None:
    outcome, message = _both(sm, fields)
    assert outcome == "refused" and needle in message
    assert f"env '{fields['name']}'" in message


def test_registry_name_and_manifest_forms(sm: ModuleType) -> None:
    # The registry spells the library Chirale_TensorFLowLite (its library.properties name).
    registry = "spaziochirale/Chirale_TensorFLowLite @ 2.0.0"
    assert _both(sm, _mbed(registry)) == _both(sm, _mbed(CHIRALE)) == ("ok", tl.ARDUINO_2023)
    mapping = ("dependencies:\n  idf: \">=4.4\"\n  espressif/esp-tflite-micro:\n"
               "    version: \"==1.3.3\"  # pinned\n  espressif/esp-nn: \"==1.1.2\"\n")
    pins = tl.parse_idf_manifest(mapping, "m.yml")
    assert [(p.library, p.version) for p in pins] == [("esp-tflite-micro", "1.3.3")]
    no_version = "dependencies:\n  espressif/esp-tflite-micro:\n    rules: []\n" \
        "  espressif/esp-nn:\n    version: \"==1.1.2\"\n"
    assert [p.version for p in tl.parse_idf_manifest(no_version, "m.yml")] == [None]


def test_the_shipped_envs_pass_and_claim_what_their_library_runs(sm: ModuleType) -> None:
    """platformio.ini + firmware/src/idf_component.yml as shipped: every env's library is a
    checked release for its board and platform, and each env claims exactly its profile."""
    import configparser

    ini = configparser.ConfigParser(interpolation=None, strict=False)
    ini.read(INI, encoding="utf-8")
    envs = [s.split(":", 1)[1] for s in ini.sections() if s.startswith("env:")]
    assert {"nano33ble", "nanorp2040connect", "esp32s3"} <= set(envs)
    for name in envs:
        spec = env_spec(INI, name)
        outcome, profile = _both(sm, dataclasses.asdict(spec))
        assert outcome == "ok", profile
        assert spec.profile == profile, f"{name} claims less than its library runs"
    esp = env_spec(INI, "esp32s3")
    assert [p.label for p in tl.env_pins(esp)] == ["esp-tflite-micro 1.3.4"]
    assert tl.platform_idf(esp.platform, esp.frameworks) == "4.4.7"


def test_the_runner_includes_each_mbed_env_library_by_name() -> None:
    """PlatformIO builds a library only when a source includes one of its headers; the
    runner names it in the branch the env compiles (not behind __has_include), then undoes
    the mbed core's abs macro."""
    source = RUNNER.read_text()
    assert not re.search(r"^\s*#.*__has_include", source, re.MULTILINE)
    for name in ("nano33ble", "nanorp2040connect"):
        row = tl.check_env(env_spec(INI, name))
        assert row.header is not None
        include = f"#include <{row.header}>"
        mbed = source[source.index("#if defined(ARDUINO_ARCH_MBED)"):source.index("#elif")]
        assert include in mbed and mbed.index("#undef abs") > mbed.index(include)
        assert (STUBS / row.header).is_file(), "the glue build needs a stub of it"


def test_stub_resolver_declares_every_operator_the_generator_emits() -> None:
    from tinyship.convert.carray import RESOLVER_METHODS

    stub = (STUBS / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    declared = re.findall(r"TfLiteStatus (Add\w+)\(\)", stub)
    assert sorted(declared) == sorted(set(RESOLVER_METHODS.values()))


def test_glue_builds_the_mbed_branch_of_the_runner(sm: ModuleType, tmp_path: Path) -> None:
    """main.cpp + runner + core with -DARDUINO_ARCH_MBED: the runner includes the (stubbed)
    Chirale_TensorFlowLite.h, whose Arduino.h abs macro must not reach the TFLM headers."""
    if shutil.which("make") is None or shutil.which("g++") is None:
        pytest.skip("make or g++ is not installed")
    from test_firmware import _write_version

    reg = tmp_path / "models"
    _write_version(reg, "v0001", "tflm-arduino-2023")
    fields = dataclasses.asdict(env_spec(INI, "nanorp2040connect"))
    sel = sm.prepare_build(
        project_dir=REPO, build_dir=tmp_path / "build", env_name="nanorp2040connect",
        env_profile="tflm-arduino-2023", environ={"TINYSHIP_REGISTRY": str(reg)},
        env_spec=tl.EnvSpec(**fields))
    proc = subprocess.run(
        ["make", "-C", str(FIRMWARE), "glue", f"GLUE_GEN={sel.generated_dir}",
         "GLUE_DEFS=-DARDUINO_ARCH_MBED"],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ("BANNER tinyship ready proto=2 fw=0.1.0 model=v0001 board=nanorp2040connect "
            "selftest=pass") in proc.stdout


def test_pre_build_refuses_a_downgraded_library_before_writing(
    sm: ModuleType, tmp_path: Path
) -> None:
    from test_firmware import _write_version

    reg = tmp_path / "models"
    _write_version(reg, "v0001", "tflm-current")
    build_dir = tmp_path / "build"
    with pytest.raises(sm.SelectModelError, match=r"esp-tflite-micro 1\.3\.3"):
        sm.prepare_build(
            project_dir=REPO, build_dir=build_dir, env_name="esp32s3",
            env_profile="tflm-current", environ={"TINYSHIP_REGISTRY": str(reg)},
            env_spec=tl.EnvSpec(**_esp("==1.3.3")))
    assert not (build_dir / sm.GENERATED_DIR).exists()
    # A tflm-arduino-2023 env refuses the per-channel model and names its library.
    with pytest.raises(sm.SelectModelError) as err:
        sm.prepare_build(
            project_dir=REPO, build_dir=build_dir, env_name="esp32s3",
            env_profile="tflm-arduino-2023", environ={"TINYSHIP_REGISTRY": str(reg)},
            env_spec=tl.EnvSpec(**_esp("==1.3.3", "tflm-arduino-2023")))
    assert "esp-tflite-micro 1.3.3" in str(err.value) and "v0001" in str(err.value)


def _fake_pio(tmp: Path) -> list[str]:
    script = tmp / "fake_pio.py"
    script.write_text("#!/usr/bin/env python3\nimport pathlib, sys\n"
                      "pathlib.Path(sys.argv[0]).with_name('pio_called').write_text('1')\n"
                      "sys.exit(1)\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return [str(script)]


def test_tinyship_build_refuses_a_downgrade_before_running_pio(
    registry_copy: Callable[[], tuple[Path, str]], tmp_path: Path
) -> None:
    root, version = registry_copy()
    manifest = root / version / "manifest.json"
    data = json.loads(manifest.read_text())
    data["profile"] = "tflm-current"
    manifest.write_text(json.dumps(data))
    project = tmp_path / "project"
    (project / "firmware/src").mkdir(parents=True)
    shutil.copy(INI, project / "platformio.ini")
    shipped = (FIRMWARE / "src/idf_component.yml").read_text()
    assert '"==1.3.4"' in shipped
    (project / "firmware/src/idf_component.yml").write_text(
        shipped.replace('"==1.3.4"', '"==1.3.3"'))
    with pytest.raises(BuildError) as err:
        build(project, Registry(root), "esp32s3", version, pio=_fake_pio(tmp_path))
    for needle in ("env 'esp32s3'", "esp-tflite-micro 1.3.3", "'tflm-current'",
                   "'tflm-arduino-2023'"):
        assert needle in str(err.value)
    assert not (tmp_path / "pio_called").exists()


class _FakeSConsEnv:
    """The few SCons construction-environment calls select_model.py's PlatformIO entry point
    makes, with option values shaped as PlatformIO returns them (`pio project config`)."""

    def __init__(self, options: dict[str, Any], paths: dict[str, Path]) -> None:
        self.options, self.paths = options, paths
        self.exit_code: int | None = None
        self.appended: list[Any] = []

    def __getitem__(self, key: str) -> str:
        assert key == "PIOENV"
        return str(self.options["env"])

    def GetProjectOption(self, name: str) -> Any:  # the SCons API names
        if name not in self.options:
            raise KeyError(name)
        return self.options[name]

    def subst(self, text: str) -> str:
        return str(self.paths[text.lstrip("$")])

    def Exit(self, code: int) -> None:
        self.exit_code = code

    def Append(self, **kw: Any) -> None:
        self.appended.append(kw)

    def BuildSources(self, *args: Any) -> None:
        self.appended.append(args)


def _run_pre_build_script(env: _FakeSConsEnv) -> None:
    spec = importlib.util.spec_from_file_location(
        "tinyship_select_model_scons", FIRMWARE / "scripts/select_model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)

    def scons_import(name: str) -> None:
        assert name == "env"
        module.__dict__["env"] = env

    module.__dict__["Import"] = scons_import
    spec.loader.exec_module(module)  # runs _run_in_scons(), as under PlatformIO


@pytest.mark.parametrize(("pin", "refused"), [("==1.3.4", False), ("==1.3.3", True)])
def test_the_platformio_entry_point_checks_the_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    pin: str, refused: bool,
) -> None:
    from test_firmware import _write_version

    reg = tmp_path / "models"
    _write_version(reg, "v0001", "tflm-current")
    monkeypatch.setenv("TINYSHIP_REGISTRY", str(reg))
    monkeypatch.delenv("TINYSHIP_MODEL", raising=False)
    src = tmp_path / "src"
    src.mkdir()
    (src / "idf_component.yml").write_text(
        f'dependencies:\n  espressif/esp-tflite-micro: "{pin}"\n')
    env = _FakeSConsEnv(
        {"env": "esp32s3", "platform": ESP_PLATFORM, "board": "esp32-s3-devkitc-1",
         "framework": ["arduino", "espidf"], "custom_tinyship_profile": "tflm-current"},
        {"PROJECT_DIR": REPO, "BUILD_DIR": tmp_path / "build", "PROJECT_SRC_DIR": src})
    _run_pre_build_script(env)
    err = capsys.readouterr().err
    if refused:
        assert env.exit_code == 1 and not env.appended
        assert "tinyship: error: env 'esp32s3'" in err and "esp-tflite-micro 1.3.3" in err
    else:
        assert env.exit_code is None and env.appended, err


def test_2023_profile_refuses_mean_which_its_libraries_round_differently() -> None:
    """The 2022-23 libraries' int8 MEAN differs from the tflite-micro package by up to 3 LSB,
    so the virtual board could not predict such a board: the profile gate refuses MEAN."""
    from tinyship.convert.tflite_info import ModelInfo, TensorInfo, check_profile

    t = TensorInfo("x", [1, 8], "int8", 0.1, 0)
    info = ModelInfo(ops=["CONV_2D", "MEAN", "FULLY_CONNECTED"], inputs=[t], outputs=[t],
                     per_channel_dense=0, size_bytes=1000, macs=100)
    problems = check_profile(info, "tflm-arduino-2023")
    assert any("MEAN" in p for p in problems)
    assert check_profile(info, "tflm-current") == []
