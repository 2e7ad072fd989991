"""`tinyship build`: profile refusal, the pio command line, and where outputs are stored.

PlatformIO cannot fetch board platforms here, so these tests use a fake `pio` executable
(a test double at the process boundary) that records its arguments and environment and
writes a firmware image where PlatformIO would.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tinyship.errors import BuildError
from tinyship.firmware.build import build, env_profile
from tinyship.registry import Registry

INI = """
[platformio]
src_dir = firmware/src

[env]
framework = arduino

[env:oldlib]
board = nano33ble
custom_tinyship_profile = tflm-arduino-2023
lib_deps =
    https://github.com/spaziochirale/Chirale_TensorFlowLite.git#46da2f989205a9216229d38cd3d1c657d79d6781

[env:newlib]
platform = platformio/espressif32 @ 6.9.0
board = esp32-s3-devkitc-1
framework = arduino, espidf
custom_tinyship_profile = tflm-current

[env:broken]
custom_tinyship_profile = tflm-1999
"""


def _fake_pio(tmp: Path, exit_code: int = 0, say: str = "Building") -> list[str]:
    script = tmp / "fake_pio.py"
    script.write_text(f"""#!/usr/bin/env python3
import json, os, sys, pathlib
args = sys.argv[1:]
env = args[args.index("-e") + 1]
proj = pathlib.Path(args[args.index("-d") + 1])
record = {{"args": args, "model": os.environ.get("TINYSHIP_MODEL"),
          "registry": os.environ.get("TINYSHIP_REGISTRY"),
          "mlperf": os.environ.get("TINYSHIP_MLPERF_MODEL")}}
(proj / "pio_call.json").write_text(json.dumps(record))
out = proj / ".pio" / "build" / env
out.mkdir(parents=True, exist_ok=True)
(out / "firmware.bin").write_bytes(b"\\x7fFIRMWARE" + env.encode())
print({say!r}, env)
sys.exit({exit_code})
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return [str(script)]


@pytest.fixture
def project(registry_copy: Callable[[], tuple[Path, str]], tmp_path: Path) -> tuple[Path, str]:
    root, version = registry_copy()
    (tmp_path / "platformio.ini").write_text(INI)
    (tmp_path / "firmware/src").mkdir(parents=True)  # newlib's ESP-IDF component manifest
    (tmp_path / "firmware/src/idf_component.yml").write_text(
        'dependencies:\n  espressif/esp-tflite-micro: "==1.3.4"\n')
    return root, version


def test_build_passes_model_and_stores_outputs_with_version(
    project: tuple[Path, str], tmp_path: Path
) -> None:
    root, version = project
    reg = Registry(root)
    result = build(tmp_path, reg, "oldlib", version, pio=_fake_pio(tmp_path),
                   upload=True, upload_port="/dev/ttyACM0")
    call = json.loads((tmp_path / "pio_call.json").read_text())
    assert call["model"] == version
    assert Path(call["registry"]) == root.resolve()
    assert call["args"][:3] == ["run", "-e", "oldlib"]
    assert call["args"][-4:] == ["-t", "upload", "--upload-port", "/dev/ttyACM0"]
    out = Path(result.output_dir)
    assert out == root / "builds" / version / "oldlib"
    assert (out / "firmware.bin").read_bytes() == b"\x7fFIRMWAREoldlib"
    info = json.loads((out / "build.json").read_text())
    assert info["model_sha256"] == reg.manifest(version)["model"]["sha256"]
    assert reg.verify(version) == []  # the version folder itself is untouched


def test_newer_runtime_accepts_older_scheme(project: tuple[Path, str], tmp_path: Path) -> None:
    root, version = project
    result = build(tmp_path, Registry(root), "newlib", version, pio=_fake_pio(tmp_path))
    assert result.profile == "tflm-current"


def test_incompatible_profile_refused_before_building(
    project: tuple[Path, str], tmp_path: Path
) -> None:
    root, version = project
    manifest = root / version / "manifest.json"
    data = json.loads(manifest.read_text())
    data["profile"] = "tflm-current"
    manifest.write_text(json.dumps(data))
    with pytest.raises(BuildError, match="mis-computes per-channel"):
        build(tmp_path, Registry(root), "oldlib", version, pio=_fake_pio(tmp_path))
    assert not (tmp_path / "pio_call.json").exists()


def test_unknown_env_and_profile_named(tmp_path: Path) -> None:
    (tmp_path / "platformio.ini").write_text(INI)
    with pytest.raises(BuildError, match=r"no environment 'uno'.*newlib"):
        env_profile(tmp_path / "platformio.ini", "uno")
    with pytest.raises(BuildError, match="tflm-1999"):
        env_profile(tmp_path / "platformio.ini", "broken")


def test_failed_pio_run_reports_output_and_stores_nothing(
    project: tuple[Path, str], tmp_path: Path
) -> None:
    root, version = project
    with pytest.raises(BuildError, match="exit 3"):
        build(tmp_path, Registry(root), "oldlib", version, pio=_fake_pio(tmp_path, 3))
    assert not (root / "builds").exists()
    # PlatformIO's own words when it cannot download a platform (as on an offline machine).
    with pytest.raises(BuildError) as exc:
        build(tmp_path, Registry(root), "oldlib", version,
              pio=_fake_pio(tmp_path, 1, say="HTTPClientError:"))
    assert exc.value.hint is not None and "network access" in exc.value.hint
    with pytest.raises(BuildError) as exc:
        build(tmp_path, Registry(root), "oldlib", version, pio=_fake_pio(tmp_path, 1))
    assert exc.value.hint is None


def test_build_command_line(
    project: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tinyship build` end to end through click, with the fake pio (a process-boundary double)."""
    from click.testing import CliRunner

    from tinyship.cli import cli, main

    root, version = project
    pio = _fake_pio(tmp_path)[0]
    args = ["build", "--env", "oldlib", "--model", version, "--registry", str(root),
            "--project-dir", str(tmp_path), "--pio", pio]
    res = CliRunner().invoke(cli, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["version"] == version and out["env"] == "oldlib"
    assert Path(out["output_dir"]) == root / "builds" / version / "oldlib"
    # No config sets [board] mlperf_model: the pre-build script decides (project config,
    # else its default), so the variable is not set.
    assert json.loads((tmp_path / "pio_call.json").read_text())["mlperf"] is None

    # A config's [board] mlperf_model reaches the pre-build script (profile% m-model-[...]).
    config = tmp_path / "mlperf.toml"
    config.write_text('[data]\npath = "x.csv"\nfeatures = ["a"]\ntarget = "y"\n'
                      '[board]\nmlperf_model = "vww01"\n')
    res = CliRunner().invoke(cli, [*args, "--config", str(config), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "pio_call.json").read_text())["mlperf"] == "vww01"

    # Profile refusal reaches the user as a build error (exit 10) naming both profiles.
    manifest = root / version / "manifest.json"
    data = json.loads(manifest.read_text())
    data["profile"] = "tflm-current"
    manifest.write_text(json.dumps(data))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 10
    err = capsys.readouterr().err
    assert "error: model" in err and "'tflm-current'" in err and "'tflm-arduino-2023'" in err
