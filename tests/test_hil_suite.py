"""`pytest hil` itself: it passes on a healthy virtual board and fails, naming the check, on a
board that computes wrong answers, so CI proves the acceptance suite a HIL rig runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from tinyship.config import Config
from tinyship.device.virtual import Faults, VirtualBoard


def _pytest_hil(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "hil"), "-q", "-p", "no:cacheprovider",
         "--baud", "0", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO / "host")},
    )


def test_hil_suite_passes_on_virtual_board(
    trained_registry: tuple[Config, str], tmp_path: Path
) -> None:
    cfg, version = trained_registry
    r = _pytest_hil("--registry", str(cfg.registry_path), "--model", version, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:]
    assert " passed" in r.stdout and "failed" not in r.stdout


def test_hil_suite_fails_on_wrong_predictions(
    trained_registry: tuple[Config, str], tmp_path: Path
) -> None:
    cfg, version = trained_registry
    faults = Faults(wrong_prediction=0.2, seed=3)
    with VirtualBoard(cfg.registry_path, version, baud=0, faults=faults) as vb:
        r = _pytest_hil("--device", vb.url, "--registry", str(cfg.registry_path),
                        "--model", version, cwd=tmp_path)
    assert r.returncode == 1, r.stdout[-3000:]
    assert "test_parity" in r.stdout and "failed" in r.stdout
    assert "vectors differ" in r.stdout


def test_hil_suite_fails_on_wrong_model_version(
    trained_registry: tuple[Config, str], tmp_path: Path
) -> None:
    cfg, version = trained_registry
    with VirtualBoard(cfg.registry_path, version, baud=0,
                      faults=Faults(wrong_version="v9999")) as vb:
        r = _pytest_hil("--device", vb.url, "--registry", str(cfg.registry_path),
                        "--model", version, cwd=tmp_path)
    assert r.returncode == 1
    assert "v9999" in r.stdout
