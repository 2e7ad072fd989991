"""Shared fixtures: small datasets, configs, and one trained registry per test session.

Training is real (TensorFlow, seconds on a CPU); it happens once per session and the
resulting registry version is copied for tests that modify a registry.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tinyship.config import Config, parse_config
from tinyship.device import protocol as P

REPO = Path(__file__).resolve().parents[1]
#: The committed registry (a copy of the bundled version): tests needing exact model bytes.
FIXTURE_REGISTRY = REPO / "tests" / "fixtures" / "registry"


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


# --- the command line, in-process --------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`tinyship ARGS` in-process as a user runs it: (exit code, stdout, stderr)."""
    from tinyship.cli import main

    capsys.readouterr()
    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def run_cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    """`tinyship ARGS --json` as a script runs it: (exit code, the one JSON document)."""
    code, out, _ = run_cli(capsys, *args, "--json")
    doc: dict[str, Any] = json.loads(out)
    return code, doc


# --- a registry with several versions (model slots, flash, fleets) ---------------------------


def add_version(root: Path, name: str, *, model: bytes | None = None,
                golden_outputs: tuple[bytes, ...] | None = None, **model_fields: Any) -> None:
    """A copy of v0001 as version `name`, with another model (its test set's host reference
    outputs recomputed with TFLM, so a HIL check of it passes), golden outputs or manifest
    model fields; artifact digests kept right so the registry trusts it."""
    dst = root / name
    shutil.copytree(root / "v0001", dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["version"] = name
    arts = manifest["artifacts"]
    if model is not None:
        (dst / "model_int8.tflite").write_bytes(model)
        sha = hashlib.sha256(model).hexdigest()
        manifest["model"].update(sha256=sha, crc32=zlib.crc32(model), bytes=len(model))
        arts["model_int8.tflite"] = sha
        arts["test_set.npz"] = _rereference(dst / "test_set.npz", model,
                                            int(manifest["model"].get("arena_bytes") or 0))
    if golden_outputs is not None:
        cc = dst / "firmware" / "tinyship_model_data.cc"
        values = ", ".join(str(b - 256 if b > 127 else b) for g in golden_outputs for b in g)
        text = re.sub(r"(tinyship_golden_outputs\[[^\]]*\]\s*=\s*\{)[^}]*\}",
                      lambda m: m.group(1) + values + "}", cc.read_text())
        cc.write_text(text)
        arts["firmware/tinyship_model_data.cc"] = hashlib.sha256(cc.read_bytes()).hexdigest()
    manifest["model"].update(model_fields)
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _rereference(path: Path, model: bytes, arena: int) -> str:
    """Recompute a test set's `reference_int8` for `model`; returns the file's SHA-256."""
    import io

    from tinyship.convert.runtimes import TflmRunner

    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    runner = TflmRunner(model, arena or 16 * 1024)
    x = arrays["x_int8"].reshape(len(arrays["x_int8"]), -1)
    ref = np.stack([runner.invoke(row).astype(np.int8) for row in x])
    arrays["reference_int8"] = ref.reshape(arrays["reference_int8"].shape)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


@pytest.fixture(scope="session")
def variant() -> Any:
    """Another model of the bundled family (perturbed weights), golden outputs its own."""
    from tinyship.device.virtual.board import load_firmware
    from tinyship.device.virtual.powerloss import variant_model

    return variant_model(load_firmware(FIXTURE_REGISTRY, "v0001"), "v0003", seed=5)


@pytest.fixture
def versions_registry(tmp_path: Path, variant: Any) -> Path:
    """v0001 (the factory model), v0002 (the same model, a new version), v0003 (a distinct
    model), v0004 (v0003's model with v0001's golden outputs: its self-test fails), v0005
    (needs a 99,999-byte arena: incompatible)."""
    from tinyship.registry import Registry

    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(FIXTURE_REGISTRY / "v0001", root / "v0001")
    add_version(root, "v0002")
    add_version(root, "v0003", model=variant.model, golden_outputs=variant.golden_outputs)
    add_version(root, "v0004", model=variant.model)
    add_version(root, "v0005", arena_bytes=99_999)
    assert Registry(root).verify_all() == {v: [] for v in Registry(root).versions()}
    return root


# --- stored full images and fake uploaders ---------------------------------------------------

FILES = {
    "nano33ble": ("firmware.bin", "firmware.hex", "firmware.elf"),
    "nanorp2040connect": ("firmware.bin", "firmware.elf", "firmware.uf2"),
    "esp32s3": ("firmware.bin", "firmware.elf", "bootloader.bin", "partitions.bin"),
}


def store_image(root: Path, version: str, env: str, names: tuple[str, ...] | None = None
                ) -> Path:
    """A stored full image of `version` for `env` in registry `root`, as `tinyship build`
    leaves it (files named by content, a build.json with their SHA-256s)."""
    out = root / "builds" / version / env
    out.mkdir(parents=True)
    artifacts = {}
    for name in names or FILES[env]:
        data = f"{env}:{name}".encode()
        (out / name).write_bytes(data)
        artifacts[name] = hashlib.sha256(data).hexdigest()
    info = {"env": env, "version": version, "artifacts": artifacts}
    (out / "build.json").write_text(json.dumps(info))
    return out


class FakeTool:
    """The fake uploaders (bossac, rp2040load, esptool.py) in tmp/bin, alone on PATH: a test
    double at the process boundary that records its argv and cwd and exits with the code
    and output `set` gives it."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.record = tmp / "calls.json"
        self.control = tmp / "control.json"
        self.set()
        for name in ("bossac", "rp2040load", "esptool.py"):
            self.install(name)
        monkeypatch.setenv("PATH", f"{self.bin}")

    def install(self, name: str) -> None:
        script = self.bin / name
        script.write_text(f"""#!{sys.executable}
import json, os, pathlib, sys
rec = pathlib.Path({str(self.record)!r})
calls = json.loads(rec.read_text()) if rec.exists() else []
calls.append({{"tool": {name!r}, "argv": sys.argv[1:], "cwd": os.getcwd()}})
rec.write_text(json.dumps(calls))
ctl = json.loads(pathlib.Path({str(self.control)!r}).read_text())
print(ctl["output"], flush=True)
sys.exit(ctl["code"])
""")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)

    def set(self, code: int = 0, output: str = "ok") -> None:
        self.control.write_text(json.dumps({"code": code, "output": output}))

    def calls(self) -> list[dict[str, object]]:
        if not self.record.exists():
            return []
        calls: list[dict[str, object]] = json.loads(self.record.read_text())
        return calls
