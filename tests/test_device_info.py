"""`tinyship device info`, the technician's first command, on the virtual board: what the
board reports compared with the registry (known version, production, a newer production,
SHA-256), exit 9 for a failed self-test, a bad model CRC or a tampered model, offline use
without a registry, and its start-up time against `import tensorflow` (measured, not
asserted; the no-TensorFlow rule is asserted).

Registries are copies of the committed fixture (tests/fixtures/registry, v0001), never the
local `models/` folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tinyship.cli import main
from tinyship.device import report as R
from tinyship.device.virtual import VirtualBoard, parse_faults
from tinyship.errors import ExitCode

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "registry"


def _add_version(root: Path, name: str, *, golden_shift: int = 0) -> None:
    """A copy of v0001 as `name` (same model), its golden outputs shifted by `golden_shift`
    LSB (so a board built from it fails its self-test); artifact digests kept right."""
    dst = root / name
    shutil.copytree(root / "v0001", dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["version"] = name
    if golden_shift:
        cc = dst / "firmware" / "tinyship_model_data.cc"

        def shift(m: re.Match[str]) -> str:
            values = [(int(v) + golden_shift + 128) % 256 - 128 for v in m.group(2).split(",")
                      if v.strip()]
            return m.group(1) + ", ".join(map(str, values)) + "}"

        text = re.sub(r"(tinyship_golden_outputs\[[^\]]*\]\s*=\s*\{)([^}]*)\}", shift,
                      cc.read_text())
        cc.write_text(text)
        manifest["artifacts"]["firmware/tinyship_model_data.cc"] = hashlib.sha256(
            cc.read_bytes()).hexdigest()
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _set_production(root: Path, version: str) -> None:
    (root / "aliases.json").write_text(json.dumps({"production": version}))


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    dst = tmp_path / "registry"
    shutil.copytree(FIXTURE, dst)
    return dst


@pytest.fixture
def board(registry: Path) -> Iterator[VirtualBoard]:
    with VirtualBoard(registry, "v0001", baud=0, reset_on_open=False) as vb:
        yield vb


def _info(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    """Run `tinyship device info ... --json`; (exit code, the one JSON document)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["device", "info", *args, "--json"])
    return int(e.value.code or 0), json.loads(capsys.readouterr().out)


def _text(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["device", "info", *args])
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out + out.err


def test_known_production_version(board: VirtualBoard, registry: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    _set_production(registry, "v0001")
    code, doc = _info(capsys, "--device", board.url, "--registry", str(registry))
    assert code == 0 and doc["ok"] is True and doc["problems"] == []
    reg = doc["registry"]
    assert reg["available"] is True and reg["known"] is True
    assert reg["is_production"] is True and reg["aliases"] == ["production"]
    assert reg["newer_production"] is None and reg["sha256_match"] is True
    assert reg["running"] == {"source": "factory", "slot": None, "mode": "confirmed",
                              "trial": False}
    code, text = _text(capsys, "--device", board.url, "--registry", str(registry))
    assert code == 0
    assert "  version v0001: known (production)" in text
    assert "  production: yes (v0001)" in text
    assert "  sha256: matches the registry" in text


def test_newer_production_available(board: VirtualBoard, registry: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    _add_version(registry, "v0002")
    _set_production(registry, "v0002")
    code, doc = _info(capsys, "--device", board.url, "--registry", str(registry))
    assert code == 0 and doc["ok"] is True
    reg = doc["registry"]
    assert reg["known"] is True and reg["is_production"] is False
    assert reg["production"] == "v0002" and reg["newer_production"] == "v0002"
    code, text = _text(capsys, "--device", board.url, "--registry", str(registry))
    assert "  production: NEWER production available: v0002" in text


def test_unknown_version_is_reported_not_failed(registry: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with VirtualBoard(registry, "v0001", baud=0, reset_on_open=False,
                      faults=parse_faults("wrong_version")) as vb:
        code, doc = _info(capsys, "--device", vb.url, "--registry", str(registry))
        assert code == 0 and doc["ok"] is True
        reg = doc["registry"]
        assert reg["model_version"] == "v0001-wrong" and reg["known"] is False
        assert reg["sha256_match"] is None and reg["same_model_as"] == ["v0001"]
        code, text = _text(capsys, "--device", vb.url, "--registry", str(registry))
        assert "version v0001-wrong: NOT in the registry (its SHA-256 is that of v0001)" in text


def test_sha256_mismatch_of_a_known_version_exits_9(
        registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with VirtualBoard(registry, "v0001", baud=0, reset_on_open=False,
                      faults=parse_faults("wrong_hash")) as vb:
        code, doc = _info(capsys, "--device", vb.url, "--registry", str(registry))
        assert code == ExitCode.VALIDATION
        assert doc["ok"] is False and doc["registry"]["tampered"] is True
        assert doc["error"]["exit_code"] == ExitCode.VALIDATION
        assert "tampered or unknown build" in doc["error"]["message"]
        assert doc["device"]["model_version"] == "v0001"  # the report is still all there
        code, text = _text(capsys, "--device", vb.url, "--registry", str(registry))
        assert code == ExitCode.VALIDATION and "sha256: MISMATCH" in text
        # --expect keeps working and gives its own reason too
        code, doc = _info(capsys, "--device", vb.url, "--registry", str(registry),
                          "--expect", "v0001")
        assert code == ExitCode.VALIDATION and doc["expected"]["version"] == "v0001"
        assert any("differs from the registry's" in p for p in doc["problems"])


def test_bad_model_crc_exits_9(registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with VirtualBoard(registry, "v0001", baud=0, reset_on_open=False,
                      faults=parse_faults("bad_model_crc")) as vb:
        code, doc = _info(capsys, "--device", vb.url, "--no-registry")
        assert code == ExitCode.VALIDATION and doc["ok"] is False
        assert doc["device"]["model_crc_check"] == "mismatch"
        assert any("CRC check failed" in p for p in doc["problems"])


def test_failed_self_test_exits_9_even_with_expect(
        registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _add_version(registry, "v0002", golden_shift=7)
    with VirtualBoard(registry, "v0002", baud=0, reset_on_open=False) as vb:
        code, doc = _info(capsys, "--device", vb.url, "--registry", str(registry),
                          "--expect", "v0002")
        assert doc["device"]["self_test"]["status_name"] == "fail"
        assert code == ExitCode.VALIDATION and doc["ok"] is False  # was ok: true before
        assert doc["registry"]["known"] is True and doc["registry"]["sha256_match"] is True
        assert any(p.startswith("self-test failed") for p in doc["problems"])
        code, text = _text(capsys, "--device", vb.url, "--no-registry")
        assert code == ExitCode.VALIDATION and "FAIL: self-test failed" in text


def test_offline_without_a_registry(board: VirtualBoard, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path / "registry" / "v0001")  # no tinyship.toml, no ./models
    code, doc = _info(capsys, "--device", board.url)
    assert code == 0 and doc["ok"] is True
    assert doc["registry"]["available"] is False and "models" in doc["registry"]["reason"]
    code, text = _text(capsys, "--device", board.url)
    assert code == 0 and "registry: not available" in text
    assert "model_version      v0001" in text
    code, doc = _info(capsys, "--device", board.url, "--no-registry")
    assert code == 0 and doc["registry"] is None
    # an unreadable registry is not available either, and not an error
    code, doc = _info(capsys, "--device", board.url, "--registry", str(tmp_path / "nope"))
    assert code == 0 and doc["registry"]["available"] is False


# --- the comparison itself (pure) ------------------------------------------------------------


def _facts(**aliases: str) -> R.RegistryFacts:
    return R.RegistryFacts(root="reg", versions=["v0001", "v0002"], aliases=aliases,
                           sha256={"v0001": "aa" * 32, "v0002": "bb" * 32})


def test_compare_slot_trial_and_versions() -> None:
    info = {"model_version": "v0002", "model_sha256": "BB" * 32,
            "running": {"source_name": "slot B", "mode_name": "trial"}}
    c = R.compare(info, _facts(production="v0001"))
    assert c.known and c.sha256_match is True and not c.is_production
    assert c.newer_production is None  # production is older than the board's
    assert c.running == R.RunningModel(source="slot B", slot="B", mode="trial")
    assert c.running is not None and "slot B, trial" in c.running.describe()
    older = R.compare({"model_version": "v0001", "model_sha256": "aa" * 32},
                      _facts(production="v0002"))
    assert older.newer_production == "v0002" and older.running is None
    tampered = R.compare({"model_version": "v0001", "model_sha256": "bb" * 32}, _facts())
    assert tampered.tampered and tampered.same_model_as == ["v0002"]
    assert "tampered or unknown build" in tampered.problems()[0]
    assert R.board_problems({"self_test": {"status_name": "infer-error"}})
    assert R.board_problems({"self_test": {"status_name": "not-run"},
                             "model_crc_check": "ok"}) == []


# --- speed: measured against `import tensorflow`, not asserted -------------------------------


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    return time.perf_counter() - t0, r


def test_bench_device_info_vs_import_tensorflow(benchmark: Any, registry: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "host")}
    with VirtualBoard(registry, "v0001", baud=0, reset_on_open=False) as vb:
        cmd = [sys.executable, "-m", "tinyship", "device", "info", "--device", vb.url,
               "--json", "--registry", str(registry)]

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)

        t0 = time.perf_counter()
        r = benchmark.pedantic(run, rounds=1, iterations=1)
        info_s = time.perf_counter() - t0
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["registry"]["sha256_match"] is True
        # the same command under -X importtime: which modules it imports
        _, traced = _timed([sys.executable, "-X", "importtime", *cmd[1:]], env)
        assert traced.returncode == 0, traced.stderr
    imported = {line.split("|")[-1].strip().split(".")[0]
                for line in traced.stderr.splitlines() if line.startswith("import time:")}
    assert imported, "no -X importtime output"
    assert not imported & {"tensorflow", "keras", "sklearn"}
    tf_s, tf = _timed([sys.executable, "-c", "import tensorflow"], env)
    benchmark.extra_info["device_info_wall_s"] = round(info_s, 3)
    benchmark.extra_info["import_tensorflow_wall_s"] = round(tf_s, 3) if tf.returncode == 0 \
        else None
    benchmark.extra_info["imports_numpy"] = "numpy" in imported
    benchmark.extra_info["imports_pydantic"] = "pydantic" in imported
    print(f"device info {info_s:.3f} s wall; import tensorflow {tf_s:.3f} s "
          f"(rc {tf.returncode})")
