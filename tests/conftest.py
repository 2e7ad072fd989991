"""Shared fixtures: small datasets, configs, and one trained registry per test session.

Training is real (TensorFlow, seconds on a CPU); it happens once per session and the
resulting registry version is copied for tests that modify a registry.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tinyship.config import Config, parse_config
from tinyship.device import protocol as P

REPO = Path(__file__).resolve().parents[1]


def make_regression_csv(path: Path, n: int = 600, seed: int = 0) -> Path:
    """A small smooth regression problem (4 features) that a tiny MLP learns well."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 4))
    y = 50 + 20 * np.sin(1.5 * x[:, 0]) + 10 * x[:, 1] * x[:, 2] - 8 * x[:, 3] ** 2
    y += rng.normal(0, 0.5, size=n)
    df = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    df["target"] = y
    df.to_csv(path, index=False)
    return path


def make_classification_csv(path: Path, n: int = 600, seed: int = 1) -> Path:
    """Three well-separated classes with string labels."""
    rng = np.random.default_rng(seed)
    centers = np.array([[2, 0, 0], [-2, 1, 0], [0, -2, 2]])
    labels = rng.integers(0, 3, size=n)
    x = centers[labels] + rng.normal(0, 0.6, size=(n, 3))
    df = pd.DataFrame(x, columns=["f1", "f2", "f3"])
    df["label"] = np.array(["healthy", "worn", "faulty"])[labels]
    df.to_csv(path, index=False)
    return path


def small_config(
    tmp: Path, csv: Path, *, task: str = "regression", **overrides: dict[str, Any]
) -> Config:
    """A fast config (few epochs) for a CSV made by the helpers above."""
    if task == "regression":
        data: dict[str, Any] = {"path": str(csv), "features": ["a", "b", "c", "d"],
                                "target": "target", "task": "regression", "min_rows": 50}
        gates: dict[str, Any] = {"min_r2": 0.8, "max_int8_degradation": 0.5}
    else:
        data = {"path": str(csv), "features": ["f1", "f2", "f3"], "target": "label",
                "task": "classification", "min_rows": 50}
        gates = {"min_accuracy": 0.9, "max_int8_degradation": 0.05}
    raw: dict[str, Any] = {
        "project": {"name": "test", "registry": str(tmp / "models")},
        "data": data,
        "model": {"hidden": [16, 8]},
        "training": {"epochs": 60, "patience": 10, "batch_size": 32, "learning_rate": 0.01},
        "quantization": {"representative_samples": 100},
        "gates": gates,
    }
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    return parse_config(raw, base_dir=tmp, source="test config")


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, str]:
    """One real pipeline run on small regression data; returns (config, version)."""
    from tinyship.pipeline import run_pipeline

    tmp = tmp_path_factory.mktemp("trained")
    cfg = small_config(tmp, make_regression_csv(tmp / "data.csv"))
    result = run_pipeline(cfg)
    assert result.version is not None
    return cfg, result.version


@pytest.fixture
def registry_copy(
    trained_registry: tuple[Config, str], tmp_path: Path
) -> Callable[[], tuple[Path, str]]:
    """A private copy of the trained registry, for tests that change it."""

    def make() -> tuple[Path, str]:
        cfg, version = trained_registry
        dst = tmp_path / "models"
        shutil.copytree(cfg.registry_path, dst)
        return dst, version

    return make


class FakeSerial:
    """The pyserial surface tinyship's transport uses, over an `rx` buffer of bytes to
    deliver: a test double at the serial-port boundary. Subclasses implement `write`."""

    def __init__(self, banner: bytes) -> None:
        self.reader = P.FrameReader()
        self.rx = bytearray(banner)
        self.baudrate = self.timeout = self.write_timeout = self.dtr = self.rts = None

    def open(self) -> None: ...

    def close(self) -> None: ...

    @property
    def in_waiting(self) -> int:
        return len(self.rx)

    def read(self, n: int) -> bytes:
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out
