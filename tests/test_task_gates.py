"""Gates that fit the task: per-task keys, a default metric gate, a trivial baseline every
model must beat, operator-level runtime parity, the output step, duplicate runs.

Datasets are scikit-learn's bundled ones (wine, breast cancer): real data the pipeline was
not designed around, shipped inside the package (no download)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import REPO
from tinyship.cli import cli
from tinyship.config import Config, load_config, parse_config
from tinyship.errors import ConfigError, ExitCode
from tinyship.gates import GateInputs, evaluate
from tinyship.registry import Registry


def _snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _sklearn_csv(tmp: Path, name: str, *, shuffle_labels: bool = False) -> tuple[Path, list[str]]:
    from sklearn import datasets

    loader = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}[name]
    frame = loader(as_frame=True).frame
    frame.columns = [c.replace(" ", "_").replace("/", "_") for c in frame.columns]
    if shuffle_labels:
        frame["target"] = np.random.default_rng(0).permutation(frame["target"].to_numpy())
    frame["target"] = "class_" + frame["target"].astype(str)
    path = tmp / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path, [c for c in frame.columns if c != "target"]


def _readme_classification_config(tmp: Path, csv: Path, features: list[str]) -> Path:
    """What README's "Use your own CSV" says: copy tinyship.toml, point data.path at the CSV,
    list features and target, set the task, and keep only the gates of that task."""
    text = (REPO / "tinyship.toml").read_text()
    text = text.replace('registry = "models"', f'registry = "{tmp / "models"}"')
    head, _, rest = text.partition("[data]")
    _, _, rest = rest.partition("[model]")
    data = (f'[data]\npath = "{csv}"\nfeatures = {json.dumps(features)}\ntarget = "target"\n'
            'task = "classification"\nmin_rows = 100\nmax_outlier_fraction = 0.1\n\n')
    gates_start = rest.index("[gates]")
    board_start = rest.index("[board]")
    rest = (rest[:gates_start] + "[gates]\nmax_int8_degradation = 0.05\n\n"
            + rest[board_start:])
    path = tmp / "tinyship.toml"
    path.write_text(head + data + "[model]" + rest.replace("epochs = 300", "epochs = 80"))
    return path


# --- config: keys of the other task are an error ------------------------------------------

def test_copied_regression_config_with_classification_task_names_the_keys(tmp_path: Path) -> None:
    text = (REPO / "tinyship.toml").read_text().replace(
        'task = "regression"', 'task = "classification"')
    path = tmp_path / "tinyship.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    for key in ("gates.min_r2", "gates.max_mae", "gates.output_range", "data.long_tail"):
        assert f"'{key}'" in msg
    assert "classification" in msg
    assert exc.value.hint is not None and "gates.min_accuracy" in exc.value.hint
    assert exc.value.exit_code == ExitCode.CONFIG


def test_classification_gate_on_a_regression_task_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'gates\.min_accuracy'"):
        parse_config({"data": {"path": "d.csv", "features": ["a"], "target": "y"},
                      "gates": {"min_accuracy": 0.9}}, base_dir=tmp_path)


def test_cli_reports_wrong_task_gates_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tinyship.cli import main

    text = (REPO / "tinyship.toml").read_text().replace(
        'task = "regression"', 'task = "classification"')
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", str(tmp_path / "c.toml")])
    assert exc.value.code == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert "gates.min_r2" in err and "Traceback" not in err


# --- gates evaluated for the task ----------------------------------------------------------

def _inputs(task: str, **kw: Any) -> GateInputs:
    base: dict[str, Any] = dict(
        task=task, metrics_int8={}, metrics_float={}, metrics_baseline={}, degradation=0.0,
        parity_lsb=0, parity_detail="", pred_min=None, pred_max=None, output_step=None,
        model_bytes=1000, arena_bytes=1000, train_seconds=1.0, profile_problems=[])
    base.update(kw)
    return GateInputs(**base)


def _cfg(tmp: Path, task: str, gates: dict[str, Any] | None = None) -> Config:
    return parse_config({"data": {"path": "d.csv", "features": ["a"], "target": "y",
                                  "task": task}, "gates": gates or {}}, base_dir=tmp)


def test_classifier_without_metric_gates_gets_the_default_one(tmp_path: Path) -> None:
    m = {"accuracy": 0.36, "macro_f1": 0.30, "confusion_matrix": []}
    gates = {g.name: g for g in evaluate(_cfg(tmp_path, "classification"), _inputs(
        "classification", metrics_int8=m, metrics_float=m,
        metrics_baseline={"strategy": "most_frequent", "accuracy": 0.40, "macro_f1": 0.19}))}
    assert gates["macro_f1_int8"].threshold == 0.5
    assert not gates["macro_f1_int8"].passed and "default" in gates["macro_f1_int8"].detail
    assert not gates["baseline_skill"].passed
    assert float(gates["baseline_skill"].value) < 0  # type: ignore[arg-type]
    assert "most_frequent" in gates["baseline_skill"].detail
    assert "r2_int8" not in gates and "output_step" not in gates


def test_regression_default_gate_and_output_step(tmp_path: Path) -> None:
    m = {"mae": 1.0, "rmse": 1.2, "r2": 0.95}
    common = dict(metrics_int8=m, metrics_float=m, output_step=0.6,
                  metrics_baseline={"strategy": "mean", "mae": 4.0, "rmse": 5.0, "r2": 0.0})
    gates = {g.name: g for g in evaluate(_cfg(tmp_path, "regression"),
                                         _inputs("regression", **common))}
    assert gates["r2_int8"].passed and gates["r2_int8"].threshold == 0.5
    assert gates["baseline_skill"].value == pytest.approx(0.75)
    assert not gates["output_step"].passed  # 0.6 > 0.5 x MAE 1.0
    gates = {g.name: g for g in evaluate(
        _cfg(tmp_path, "regression", {"max_mae": 2.0, "max_output_step_mae_ratio": 0.7}),
        _inputs("regression", **common))}
    assert "r2_int8" not in gates and gates["mae_int8"].passed and gates["output_step"].passed


# --- end to end on real data ---------------------------------------------------------------

@pytest.mark.slow
def test_readme_classification_config_cannot_register_shuffled_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tinyship.cli import main

    csv, features = _sklearn_csv(tmp_path, "wine", shuffle_labels=True)
    cfg_path = _readme_classification_config(tmp_path, csv, features)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", str(cfg_path), "--json"])
    assert exc.value.code == ExitCode.GATE
    out = json.loads(capsys.readouterr().out)
    assert out["error"]["type"] == "GateError" and "baseline_skill" in out["error"]["message"]
    gates = {g["name"]: g for g in out["gates"]}
    assert not gates["baseline_skill"]["passed"]
    assert not gates["macro_f1_int8"]["passed"]
    assert out["metrics"]["baseline"]["strategy"] == "most_frequent"
    assert Registry(tmp_path / "models").versions() == []


@pytest.mark.slow
def test_readme_classification_config_registers_with_baseline(tmp_path: Path) -> None:
    csv, features = _sklearn_csv(tmp_path, "wine")
    cfg_path = _readme_classification_config(tmp_path, csv, features)
    res = CliRunner().invoke(cli, ["train", "--config", str(cfg_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    gates = {g["name"]: g for g in out["gates"]}
    assert gates["macro_f1_int8"]["passed"] and gates["baseline_skill"]["passed"]
    m = Registry(tmp_path / "models").manifest(out["version"])
    assert m["metrics"]["baseline"]["accuracy"] < m["metrics"]["int8"]["accuracy"]
    assert m["model"]["output"]["target_mean"] == 0.0
    assert m["model"]["output"]["target_scale"] == 1.0


@pytest.fixture(scope="module")
def breast_cancer_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, str]:
    tmp = tmp_path_factory.mktemp("bc")
    csv, features = _sklearn_csv(tmp, "breast_cancer")
    cfg = parse_config({
        "project": {"registry": str(tmp / "models")},
        "data": {"path": str(csv), "features": features, "target": "target",
                 "task": "classification", "max_outlier_fraction": 0.2},
        "training": {"epochs": 60, "seed": 1},
        "gates": {"min_accuracy": 0.85},
    }, base_dir=tmp, source="test")
    from tinyship.pipeline import run_pipeline

    result = run_pipeline(cfg)
    assert result.version is not None
    return cfg, result.version


@pytest.mark.slow
def test_softmax_amplification_is_not_a_parity_failure(
    breast_cancer_model: tuple[Config, str],
) -> None:
    """30 features, binary softmax: TFLite and TFLM round a few logits 1 LSB apart; near
    p = 0.5 the softmax turns that into many output LSB. Operator by operator on identical
    inputs they agree within 1 LSB, and the SOFTMAX operator itself agrees exactly."""
    from tinyship.convert import runtimes

    cfg, version = breast_cancer_model
    reg = Registry(cfg.registry_path)
    model = (reg.path(version) / "model_int8.tflite").read_bytes()
    ts = np.load(reg.path(version) / "test_set.npz")
    rng = np.random.default_rng(0)
    base = ts["x_int8"][rng.integers(0, len(ts["x_int8"]), 20000)].astype(int)
    xq = np.clip(base + rng.integers(-6, 7, base.shape), -128, 127).astype(np.int8)
    arena = reg.manifest(version)["model"]["arena_bytes"]
    end_to_end = np.abs(runtimes.run_tflite(model, xq).astype(int)
                        - runtimes.run_tflm(model, xq, arena).astype(int)).max()
    assert end_to_end > 1  # what the old end-to-end gate measured, and failed on
    layers = runtimes.layer_parity(model, xq)
    assert [r["op"] for r in layers][-1] == "SOFTMAX"
    assert max(r["max_lsb"] for r in layers) <= 1
    assert layers[-1]["max_lsb"] == 0
    gate = {g["name"]: g for g in reg.manifest(version)["gates"]}["tflite_tflm_parity_lsb"]
    assert gate["passed"] and "operator" in gate["detail"]


@pytest.mark.slow
def test_bundled_data_output_step_and_conv1d_pass_default_gates(tmp_path: Path) -> None:
    """The bundled SoH model predicts the standardized target: one int8 step is a fraction
    of the MAE (it was 0.39 %SoH, over half the MAE, when the int8 range had to include 0),
    and the conv1d model offered in the README passes every gate of tinyship.toml."""
    from tinyship.pipeline import run_pipeline

    base = load_config(REPO / "tinyship.toml")
    for kind in ("mlp", "conv1d"):
        raw = base.model_dump(exclude={"base_dir"}, exclude_unset=True)
        raw["project"] = {"name": kind, "registry": str(tmp_path / kind)}
        raw["model"] = {**raw["model"], "type": kind}
        cfg = parse_config(raw, base_dir=REPO, source=kind)
        result = run_pipeline(cfg)  # raises GateError naming the gate if one fails
        gates = {g["name"]: g for g in result.gates}
        step = result.metrics["output_step"]
        assert step == gates["output_step"]["value"] or step == pytest.approx(
            gates["output_step"]["value"], abs=1e-6)
        assert step < 0.25 * result.metrics["float"]["mae"] + 0.1
        out = Registry(cfg.registry_path).manifest(result.version)["model"]["output"]
        assert out["target_scale"] > 1 and 60 < out["target_mean"] < 100
        assert step == pytest.approx(out["scale"] * out["target_scale"], rel=1e-6)


# --- the same run twice --------------------------------------------------------------------

def test_identical_run_points_at_the_existing_version(
    trained_registry: tuple[Config, str], registry_copy: Callable[[], tuple[Path, str]]
) -> None:
    from tinyship.pipeline import run_pipeline

    cfg, version = trained_registry
    before = _snapshot(cfg.registry_path)
    again = run_pipeline(cfg)
    assert again.duplicate_of == version and again.version == version
    assert again.to_dict()["registered"] is False
    assert _snapshot(cfg.registry_path) == before
    root, _ = registry_copy()
    raw = cfg.model_dump(exclude={"base_dir"}, exclude_unset=True)
    raw["project"] = {**raw["project"], "registry": str(root)}
    copy_cfg = parse_config(raw, base_dir=cfg.base_dir)
    assert run_pipeline(copy_cfg).duplicate_of == version  # the registry path is not identity
    changed = parse_config({**raw, "training": {**raw["training"], "seed": 7}},
                           base_dir=cfg.base_dir)
    assert run_pipeline(changed).version != version
    forced = run_pipeline(copy_cfg, force=True)
    assert forced.duplicate_of is None and forced.version not in (None, version)


def test_cli_says_already_registered(trained_registry: tuple[Config, str], tmp_path: Path
                                     ) -> None:
    cfg, version = trained_registry
    raw = cfg.model_dump(mode="json", exclude={"base_dir"}, exclude_unset=True)
    path = tmp_path / "t.toml"
    path.write_text(_toml(raw))
    res = CliRunner().invoke(cli, ["train", "--config", str(path)])
    assert res.exit_code == 0, res.output
    assert "already registered" in res.output and version in res.output
    assert "--force" in res.output


def _toml(raw: dict[str, Any]) -> str:
    """A flat two-level config as TOML (JSON scalars and lists are valid TOML values)."""
    lines = []
    for section, values in raw.items():
        assert not any(isinstance(v, dict) for v in values.values()), section
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


def test_regression_fixture_model_reports_target_units(trained_registry: tuple[Config, str]
                                                       ) -> None:
    from tinyship.convert.runtimes import to_target_units

    cfg, version = trained_registry
    reg = Registry(cfg.registry_path)
    m = reg.manifest(version)
    ts = np.load(reg.path(version) / "test_set.npz")
    pred = to_target_units(ts["reference_int8"], m["model"]["output"]).reshape(-1)
    mae = float(np.mean(np.abs(pred - ts["y"])))
    assert mae == pytest.approx(m["metrics"]["int8"]["mae"], rel=1e-6)
    assert abs(m["model"]["output"]["target_mean"] - float(np.mean(ts["y"]))) < 10

