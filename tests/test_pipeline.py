"""End to end: the model half on small data, its failure modes, and the CLI around it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import REPO, make_classification_csv, make_regression_csv, small_config
from tinyship.cli import cli, main
from tinyship.config import Config
from tinyship.errors import DataError, ExitCode, GateError
from tinyship.pipeline import run_pipeline
from tinyship.registry import Registry


def _snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_registered_version_is_complete(trained_registry: tuple[Config, str]) -> None:
    cfg, version = trained_registry
    reg = Registry(cfg.registry_path)
    vdir = reg.path(version)
    for name in ("manifest.json", "MODEL_CARD.md", "model.keras", "model_float.tflite",
                 "model_int8.tflite", "test_set.npz", "firmware/tinyship_model_data.h",
                 "firmware/tinyship_model_data.cc", "firmware/tinyship_model_ops.h"):
        assert (vdir / name).is_file(), name
    m = reg.manifest(version)
    assert m["data"]["rows"] == 600 and len(m["data"]["sha256"]) == 64
    assert all(g["passed"] for g in m["gates"])
    assert {g["name"] for g in m["gates"]} >= {"int8_degradation", "tflite_tflm_parity_lsb",
                                               "model_bytes", "arena_bytes", "train_seconds"}
    assert m["metrics"]["int8"]["r2"] > 0.8
    assert "long_tail" in m["metrics"]["int8"]
    assert m["config"]["data"]["target"] == "target"
    card = (vdir / "MODEL_CARD.md").read_text()
    assert "## Limitations" in card and "long-tail" in card


def test_test_set_reference_matches_tflm(trained_registry: tuple[Config, str]) -> None:
    from tinyship.convert.runtimes import run_tflm

    cfg, version = trained_registry
    reg = Registry(cfg.registry_path)
    ts = np.load(reg.path(version) / "test_set.npz")
    model = (reg.path(version) / "model_int8.tflite").read_bytes()
    out = run_tflm(model, ts["x_int8"][:20], reg.manifest(version)["model"]["arena_bytes"])
    assert np.array_equal(out, ts["reference_int8"][:20])


def test_gate_failure_registers_nothing(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, make_regression_csv(tmp_path / "d.csv"),
                       gates={"min_r2": 0.9999}, training={"epochs": 3})
    with pytest.raises(GateError, match="r2_int8") as exc:
        run_pipeline(cfg)
    assert exc.value.exit_code == ExitCode.GATE
    gates = {g["name"]: g for g in exc.value.result["gates"]}  # type: ignore[index]
    assert gates["r2_int8"]["passed"] is False
    assert gates["r2_int8"]["threshold"] == 0.9999
    assert Registry(cfg.registry_path).versions() == []
    assert [p for p in _snapshot(cfg.registry_path) if p != ".lock"] == []


@pytest.mark.slow
def test_cli_train_json_gate_failure_is_one_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script reading `train --json` gets one JSON document: the run's result (gates and
    metrics) with the error in it; the message goes to stderr."""
    csv = make_regression_csv(tmp_path / "d.csv")
    cfg_path = tmp_path / "tinyship.toml"
    cfg_path.write_text(f"""
[data]
path = "{csv.name}"
features = ["a", "b", "c", "d"]
target = "target"
min_rows = 50
[model]
hidden = [8]
[training]
epochs = 3
[gates]
min_r2 = 0.9999
""")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", str(cfg_path), "--json"])
    out, err = capsys.readouterr()
    assert exc.value.code == ExitCode.GATE
    doc = json.loads(out)
    assert doc["ok"] is False and doc["passed"] is False and doc["version"] is None
    assert (doc["error"]["type"], doc["error"]["exit_code"]) == ("GateError", 5)
    assert "r2_int8" in doc["error"]["message"]
    gates = {g["name"]: g for g in doc["gates"]}
    assert gates["r2_int8"]["passed"] is False and gates["r2_int8"]["threshold"] == 0.9999
    assert "r2_int8" in err and "Traceback" not in err
    assert not (tmp_path / "models").exists() or Registry(tmp_path / "models").versions() == []


def test_data_check_failure_registers_nothing(
    registry_copy: Callable[[], tuple[Path, str]], tmp_path: Path
) -> None:
    root, _ = registry_copy()
    before = _snapshot(root)
    csv = make_regression_csv(tmp_path / "bad.csv")
    df = pd.read_csv(csv)
    df.loc[5, "b"] = np.nan
    df.to_csv(csv, index=False)
    cfg = small_config(tmp_path, csv, project={"registry": str(root)})
    with pytest.raises(DataError, match="column 'b'"):
        run_pipeline(cfg)
    assert _snapshot(root) == before


def test_classification_end_to_end(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, make_classification_csv(tmp_path / "c.csv"),
                       task="classification")
    result = run_pipeline(cfg)
    assert result.version == "v0001"
    i8 = result.metrics["int8"]
    assert i8["accuracy"] >= 0.9
    assert np.array(i8["confusion_matrix"]).sum() == result.metrics["test_rows"]
    m = Registry(cfg.registry_path).manifest("v0001")
    assert m["classes"] == ["faulty", "healthy", "worn"]
    assert m["model"]["output"]["shape"] == [1, 3]


def test_conv1d_model_converts_and_runs_in_tflm(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, make_regression_csv(tmp_path / "d.csv"),
                       model={"type": "conv1d", "hidden": [8]}, gates={"min_r2": 0.5})
    result = run_pipeline(cfg)
    ops = Registry(cfg.registry_path).manifest(result.version)["model"]["ops"]
    assert "CONV_2D" in ops and "FULLY_CONNECTED" in ops


def test_current_profile_allows_per_channel_dense(tmp_path: Path) -> None:
    from tinyship.convert import tflite_info

    cfg = small_config(tmp_path, make_regression_csv(tmp_path / "d.csv"),
                       quantization={"profile": "tflm-current"}, training={"epochs": 5},
                       gates={"min_r2": -100.0, "max_int8_degradation": 100.0,
                              "min_baseline_skill": -100.0,
                              "max_output_step_mae_ratio": 100.0})
    result = run_pipeline(cfg)
    model = (Registry(cfg.registry_path).path(result.version) / "model_int8.tflite").read_bytes()
    info = tflite_info.inspect_model(model)
    assert info.per_channel_dense > 0  # the converter's default scheme
    problems = tflite_info.check_profile(info, "tflm-arduino-2023")
    assert any("per-channel" in p for p in problems)


def test_cli_train_json_and_registry_commands(tmp_path: Path) -> None:
    csv = make_regression_csv(tmp_path / "d.csv")
    cfg_path = tmp_path / "tinyship.toml"
    cfg_path.write_text(f"""
[project]
registry = "reg"
[data]
path = "{csv.name}"
features = ["a", "b", "c", "d"]
target = "target"
min_rows = 50
[model]
hidden = [16]
[training]
epochs = 40
patience = 5
learning_rate = 0.01
[gates]
min_r2 = 0.5
max_int8_degradation = 0.5
""")
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "--config", str(cfg_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["version"] == "v0001"
    for key in ("metrics", "gates", "model_bytes", "arena_bytes"):
        assert key in out
    assert all({"name", "value", "threshold", "passed"} <= set(g) for g in out["gates"])

    res = runner.invoke(cli, ["registry", "list", "--config", str(cfg_path), "--json"])
    listing = json.loads(res.stdout)
    assert [v["version"] for v in listing["versions"]] == ["v0001"]
    res = runner.invoke(cli, ["registry", "show", "v0001", "--registry",
                              str(tmp_path / "reg"), "--json"])
    assert json.loads(res.stdout)["model"]["sha256"] == out.get("model_sha256", json.loads(
        res.stdout)["model"]["sha256"])
    res = runner.invoke(cli, ["registry", "promote", "v0001", "--registry", str(tmp_path / "reg")])
    assert "production -> v0001" in res.output
    res = runner.invoke(cli, ["registry", "verify", "--registry", str(tmp_path / "reg")])
    assert res.exit_code == 0 and "all artifacts match" in res.output

    # --profile overrides quantization.profile for one run and is recorded in the manifest.
    res = runner.invoke(cli, ["train", "--config", str(cfg_path), "--profile", "tflm-current",
                              "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["version"] == "v0002"
    manifest = Registry(tmp_path / "reg").manifest("v0002")
    assert manifest["profile"] == "tflm-current"
    assert manifest["config"]["quantization"]["profile"] == "tflm-current"
    assert Registry(tmp_path / "reg").manifest("v0001")["profile"] == "tflm-arduino-2023"
    res = runner.invoke(cli, ["train", "--config", str(cfg_path), "--profile", "tflm-1999"])
    assert res.exit_code == 2 and "tflm-1999" in res.output


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tinyship", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO / "host")})


def test_cli_exit_codes_for_bad_input(tmp_path: Path) -> None:
    cfg_path = tmp_path / "tinyship.toml"
    cfg_path.write_text('[data]\npath = "x.csv"\nfeatures = ["a"]\ntarget = "y"\nepoch = 3\n')
    r = _run_cli("train", "--config", str(cfg_path), cwd=tmp_path)
    assert r.returncode == ExitCode.CONFIG
    assert "unknown key 'data.epoch'" in r.stderr
    cfg_path.write_text('[data]\npath = "missing.csv"\nfeatures = ["a"]\ntarget = "y"\n')
    r = _run_cli("train", "--config", str(cfg_path), cwd=tmp_path)
    assert r.returncode == ExitCode.DATA
    assert "missing.csv" in r.stderr
    r = _run_cli("registry", "show", "v0042", "--registry", str(tmp_path / "none"), cwd=tmp_path)
    assert r.returncode == ExitCode.REGISTRY
    assert "v0042" in r.stderr
    assert "Traceback" not in r.stderr


def test_device_side_commands_do_not_import_tensorflow_or_sklearn() -> None:
    code = (
        "import sys, tinyship, tinyship.cli, tinyship.registry, tinyship.config, "
        "tinyship.cli.registry_cmd, tinyship.convert.tflite_info, tinyship.convert.runtimes, "
        "tinyship.device.slots, tinyship.device.slot_image\n"
        "from tinyship.cli import cli\n"
        "for name in list(__import__('tinyship.cli', fromlist=['COMMANDS']).COMMANDS):\n"
        "    if name != 'train':\n"
        "        cli.get_command(None, name)\n"
        "bad = [m for m in sys.modules\n"
        "       if m.split('.')[0] in ('tensorflow', 'keras', 'sklearn')]\n"
        "print(','.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(REPO / "host")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def _mutate(kind: str, df: pd.DataFrame) -> pd.DataFrame:
    if kind == "missing_column":
        return df.drop(columns=["c"])
    if kind == "non_numeric":
        df["b"] = df["b"].astype(object)
        df.loc[3, "b"] = "n/a"
        return df
    if kind == "infinite":
        df.loc[7, "d"] = np.inf
        return df
    if kind == "duplicates":
        return pd.concat([df, df.iloc[:60]], ignore_index=True)
    if kind == "too_few_rows":
        return df.iloc[:20]
    if kind == "constant_target":
        df["target"] = 5.0
        return df
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing_column", "missing configured column(s) 'c'"),
        ("non_numeric", "column 'b'"),
        ("infinite", "column 'd'"),
        ("duplicates", "duplicate"),
        ("too_few_rows", "rows"),
        ("constant_target", "column 'target'"),
    ],
)
def test_bad_data_stops_before_training_and_keeps_registry(
    kind: str, message: str, registry_copy: Callable[[], tuple[Path, str]], tmp_path: Path
) -> None:
    root, _ = registry_copy()
    before = _snapshot(root)
    csv = make_regression_csv(tmp_path / f"{kind}.csv")
    _mutate(kind, pd.read_csv(csv)).to_csv(csv, index=False)
    cfg = small_config(tmp_path, csv, project={"registry": str(root)})
    with pytest.raises(DataError) as exc:
        run_pipeline(cfg)
    assert message in str(exc.value)
    assert exc.value.exit_code == ExitCode.DATA
    assert _snapshot(root) == before


def test_small_class_rejected_by_name(tmp_path: Path) -> None:
    csv = make_classification_csv(tmp_path / "c.csv")
    df = pd.read_csv(csv)
    rare = df[df["label"] == "faulty"].index[3:]
    df.drop(index=rare).to_csv(csv, index=False)
    cfg = small_config(tmp_path, csv, task="classification")
    with pytest.raises(DataError, match="faulty"):
        run_pipeline(cfg)
    assert not Registry(cfg.registry_path).versions()
