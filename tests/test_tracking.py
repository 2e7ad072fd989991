"""Optional MLflow tracking (tinyship.tracking): a run is mirrored to local `file:` and
`sqlite:` stores with its params, metrics, tags and artifacts; without a URI MLflow is
never imported; a broken store is a warning, never an error.

No training here: the result is built by hand from the committed fixture version.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURE_REGISTRY, REPO
from tinyship.config import Config, parse_config, with_overrides
from tinyship.errors import ConfigError
from tinyship.pipeline import PipelineResult
from tinyship.tracking import flatten_numbers, log_training, resolve_uri, tracking_uri

FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"
BASE_CONFIG: dict[str, Any] = {
    "project": {"name": "battery-soh", "registry": "models"},
    "data": {"path": "bundled:battery_soh.csv", "features": ["a", "b"], "target": "y"},
    "model": {"hidden": [32, 16]},
    "training": {"seed": 42},
}


def _config(base_dir: Path, **project: str) -> Config:
    """The test config with `[project]` tracking keys; before config.py declares them,
    they are set on the parsed config (tracking reads them with getattr)."""
    cfg = parse_config(BASE_CONFIG, base_dir=base_dir, source="test config")
    if not project:
        return cfg
    try:
        return with_overrides(cfg, "test config", project=dict(project))
    except ConfigError:
        return cfg.model_copy(update={"project": cfg.project.model_copy(update=project)})


@pytest.fixture
def version_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "models" / "v0001"
    shutil.copytree(FIXTURE_REGISTRY / "v0001", dst)
    return dst


@pytest.fixture
def manifest(version_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((version_dir / "manifest.json").read_text())
    return data


@pytest.fixture
def result(manifest: dict[str, Any], version_dir: Path) -> PipelineResult:
    model = manifest["model"]
    return PipelineResult(
        version="v0001", registry=str(version_dir.parent), metrics=manifest["metrics"],
        gates=manifest["gates"], passed=True, model_bytes=model["bytes"],
        arena_bytes=model["arena_bytes"], arena_min_bytes=model["arena_min_bytes"],
        data={**manifest["data"], "features": manifest["features"], "dropped_features": []},
        timings_s={"data": 0.1, "train": 12.5, "nan": math.nan},
    )


@pytest.fixture
def mlflow() -> Any:
    return pytest.importorskip("mlflow", reason="the tracking extra is not installed")


def test_resolve_uri(tmp_path: Path) -> None:
    base = tmp_path / "proj"
    assert resolve_uri("file:mlruns", base) == (base / "mlruns").as_uri()
    assert resolve_uri("file:./a/mlruns", base) == (base / "a" / "mlruns").as_uri()
    assert resolve_uri("mlruns", base) == (base / "mlruns").as_uri()
    assert resolve_uri(f"file://{tmp_path}/x", base) == (tmp_path / "x").as_uri()
    assert resolve_uri("sqlite:///mlflow.db", base) == f"sqlite:///{base}/mlflow.db"
    assert resolve_uri(f"sqlite:///{tmp_path}/m.db?timeout=5", base) == (
        f"sqlite:///{tmp_path}/m.db?timeout=5")
    for unchanged in ("http://mlflow:5000", "postgresql://u@db/mlflow", "sqlite://"):
        assert resolve_uri(unchanged, base) == unchanged
    assert tracking_uri(_config(tmp_path)) is None


def test_flatten_numbers_keeps_finite_numbers_only() -> None:
    import numpy as np

    flat = flatten_numbers({
        "mae": 1.5, "rows": np.int64(3), "r2": np.float32(0.5), "ok": True, "slice": "x",
        "rows_list": [1, 2], "bad": math.inf, "nan": math.nan,
        "long_tail": {"mae": 2.0, "inner": {"n": 1}},
    })
    assert flat == {"mae": 1.5, "rows": 3.0, "r2": 0.5, "long_tail.mae": 2.0,
                    "long_tail.inner.n": 1.0}


@pytest.mark.parametrize("store", ["file-relative", "sqlite-absolute", "sqlite-relative"])
def test_run_is_logged(
    mlflow: Any, store: str, tmp_path: Path, version_dir: Path, manifest: dict[str, Any],
    result: PipelineResult, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(FILE_STORE_ENV, raising=False)
    monkeypatch.chdir(tmp_path / "models")  # nothing may land in the working folder
    uri, read_uri = {
        "file-relative": ("file:mlruns", (tmp_path / "mlruns").as_uri()),
        "sqlite-absolute": (f"sqlite:///{tmp_path}/mlflow.db",
                            f"sqlite:///{tmp_path}/mlflow.db"),
        "sqlite-relative": ("sqlite:///track/mlflow.db",
                            f"sqlite:///{tmp_path}/track/mlflow.db"),
    }[store]
    cfg = _config(tmp_path, mlflow_tracking_uri=uri, mlflow_experiment="soh-tests")

    run_id = log_training(cfg, result, version="v0001", version_dir=version_dir,
                          tags={"trigger": "drift"})

    assert run_id is not None
    assert FILE_STORE_ENV not in os.environ  # only set while logging
    assert sorted(os.listdir(tmp_path / "models")) == ["v0001"]
    monkeypatch.setenv(FILE_STORE_ENV, "true")
    client = mlflow.tracking.MlflowClient(tracking_uri=read_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "v0001"
    assert client.get_experiment(run.info.experiment_id).name == "soh-tests"

    params = run.data.params
    assert params["model.hidden"] == "[32, 16]"
    assert params["training.seed"] == "42"
    assert params["quantization.profile"] == "tflm-arduino-2023"
    assert params["data.sha256"] == manifest["data"]["sha256"]
    assert params["data.rows"] == str(manifest["data"]["rows"])
    assert params["data.features"] == "8"
    assert params["task"] == "regression"
    assert params["tinyship_version"] == manifest["tinyship_version"]

    metrics = run.data.metrics
    m = manifest["metrics"]
    assert metrics["float.mae"] == pytest.approx(m["float"]["mae"])
    assert metrics["int8.mae"] == pytest.approx(m["int8"]["mae"])
    assert metrics["int8.long_tail.mae"] == pytest.approx(m["int8"]["long_tail"]["mae"])
    assert metrics["int8_degradation"] == pytest.approx(m["int8_degradation"])
    assert metrics["parity_max_lsb"] == m["parity_max_lsb"]
    assert metrics["parity.output_max_lsb"] == m["parity"]["output_max_lsb"]
    assert metrics["train_seconds"] == pytest.approx(m["train_seconds"])
    assert metrics["model_bytes"] == manifest["model"]["bytes"]
    assert metrics["arena_bytes"] == manifest["model"]["arena_bytes"]
    assert metrics["timings_s.train"] == 12.5
    assert "timings_s.nan" not in metrics
    assert all(math.isfinite(v) for v in metrics.values())

    tags = run.data.tags
    assert tags["tinyship.registry_version"] == "v0001"
    assert tags["tinyship.training_key"] == manifest["training_key"]
    assert tags["mlflow.source.git.commit"] == manifest["git_commit"]
    assert tags["trigger"] == "drift"

    names = {a.path for a in client.list_artifacts(run_id)}
    assert names == {"manifest.json", "MODEL_CARD.md", "model_int8.tflite"}
    local = client.download_artifacts(run_id, "model_int8.tflite", str(tmp_path / "dl"))
    assert Path(local).read_bytes() == (version_dir / "model_int8.tflite").read_bytes()
    if store.startswith("sqlite"):  # artifacts beside the database
        db_dir = Path(read_uri.removeprefix("sqlite:///")).parent
        assert (db_dir / "mlartifacts").is_dir()


def test_without_version_dir_logs_no_artifacts(
    mlflow: Any, tmp_path: Path, result: PipelineResult,
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = _config(tmp_path, mlflow_tracking_uri=uri)
    run_id = log_training(cfg, result, version=None, version_dir=None, run_name="trial")
    assert run_id is not None
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.run_name == "trial"
    assert client.get_experiment(run.info.experiment_id).name == "battery-soh"
    assert client.list_artifacts(run_id) == []
    # Without the manifest the training key is computed from the config and the data.
    assert len(run.data.tags["tinyship.training_key"]) == 64
    assert run.data.tags["tinyship.registry_version"] == "v0001"  # from the result


def test_no_uri_returns_none_without_importing_mlflow(tmp_path: Path) -> None:
    script = f"""
import sys
from pathlib import Path
from tinyship.config import parse_config
from tinyship.pipeline import PipelineResult
from tinyship.tracking import log_training

cfg = parse_config({BASE_CONFIG!r}, base_dir=Path({str(tmp_path)!r}))
result = PipelineResult(version="v0001", registry="models", metrics={{}}, gates=[],
                        passed=True, model_bytes=1, arena_bytes=1, arena_min_bytes=1,
                        data={{}})
assert log_training(cfg, result, version="v0001", version_dir=None) is None
print("mlflow" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("broken", ["scheme", "file-store-on-a-file", "sqlite-on-a-file"])
def test_broken_store_warns_and_returns_none(
    broken: str, tmp_path: Path, version_dir: Path, result: PipelineResult,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Runs with or without MLflow installed: a missing MLflow is the same warning."""
    monkeypatch.delenv(FILE_STORE_ENV, raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    uri = {"scheme": "nosuchscheme://nowhere/mlflow",
           "file-store-on-a-file": f"file:{blocker}/mlruns",
           "sqlite-on-a-file": f"sqlite:///{blocker}/mlflow.db"}[broken]
    cfg = _config(tmp_path, mlflow_tracking_uri=uri)
    before = sorted(p.name for p in version_dir.iterdir())

    with caplog.at_level(logging.WARNING, logger="tinyship.tracking"):
        assert log_training(cfg, result, version="v0001", version_dir=version_dir) is None

    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1
    assert "MLflow tracking to" in warning[0].getMessage()
    assert "registry version is unaffected" in warning[0].getMessage()
    assert sorted(p.name for p in version_dir.iterdir()) == before
    assert FILE_STORE_ENV not in os.environ


def test_missing_mlflow_is_a_warning_with_the_extra_to_install(
    tmp_path: Path, result: PipelineResult, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("mlflow", "mlflow.tracking", "mlflow.entities"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    cfg = _config(tmp_path, mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    with caplog.at_level(logging.WARNING, logger="tinyship.tracking"):
        assert log_training(cfg, result, version="v0001", version_dir=None) is None
    assert "tinyship[tracking]" in caplog.text
